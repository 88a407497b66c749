//! The resize filter shared by the CUDA kernels (`cuda/resize_nv12.cu`) and
//! their CPU reference: plain arithmetic, no GPU.
//!
//! The filter is Catmull-Rom bicubic (Keys, a = −0.5), widened by the
//! downscaling ratio so that it averages over the source pixels each output
//! pixel covers (an antialiasing bicubic, as libswscale's and Pillow's
//! downscalers do); it is a plain bicubic when enlarging. It keeps edges
//! sharper than an area filter and, unlike a plain 4-tap bicubic, does not
//! alias at 1080p → 240p. Chroma samples are treated as centre-sited.
//!
//! Weights are computed once per (source size, output size) on the host, in
//! 14-bit fixed point that sums exactly to 1 << 14; taps that fall outside the
//! plane are folded onto its edge, so the kernel reads no sample out of
//! bounds and needs no branch for it. Both passes use integer sums in the
//! same order on the CPU and on the GPU: the reference here is bit-exact
//! with the kernel by construction, and the device test holds it to that.

/// Weights are fixed point with this many fractional bits.
pub const WEIGHT_BITS: u32 = 14;
/// The horizontal pass keeps `WEIGHT_BITS - HORIZONTAL_SHIFT` = 6 extra bits
/// in its 16-bit intermediate (as `LP_HORIZONTAL_SHIFT` in the kernel).
pub const HORIZONTAL_SHIFT: u32 = 8;
/// The vertical pass drops the rest (as `LP_VERTICAL_SHIFT`).
pub const VERTICAL_SHIFT: u32 = 2 * WEIGHT_BITS - HORIZONTAL_SHIFT;

/// The filter along one axis: for output position `i`, taps
/// `offsets[i] .. offsets[i] + taps` of the source with
/// `weights[i * taps ..][..taps]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxisFilter {
    pub source_len: u32,
    pub output_len: u32,
    pub taps: u32,
    pub offsets: Vec<i32>,
    pub weights: Vec<i16>,
}

/// Keys' cubic convolution kernel with a = −0.5 (Catmull-Rom).
fn cubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
    } else {
        0.0
    }
}

impl AxisFilter {
    /// The filter resampling `source_len` samples to `output_len`.
    ///
    /// # Panics
    /// When either length is zero (callers size planes from decoded pictures
    /// and profiles, which are never empty).
    pub fn new(source_len: u32, output_len: u32) -> Self {
        assert!(source_len > 0 && output_len > 0, "empty plane");
        let scale = f64::from(source_len) / f64::from(output_len);
        // Widen the kernel by the downscaling ratio; never narrow it.
        let stretch = scale.max(1.0);
        let support = 2.0 * stretch;
        let taps = ((2.0 * support).ceil() as u32 + 1).min(source_len);
        let last = source_len as i64 - 1;

        let mut offsets = Vec::with_capacity(output_len as usize);
        let mut weights = Vec::with_capacity(output_len as usize * taps as usize);
        let mut real = vec![0.0f64; taps as usize];
        for i in 0..output_len {
            let centre = (f64::from(i) + 0.5) * scale - 0.5;
            // The first tap such that the window [first, first + taps) covers
            // the support, moved inside the plane.
            let window_start = (centre - support).floor() as i64 + 1;
            let first = window_start.clamp(0, source_len as i64 - taps as i64);
            real.iter_mut().for_each(|w| *w = 0.0);
            let mut total = 0.0;
            for position in window_start..=(centre + support).ceil() as i64 {
                let weight = cubic((position as f64 - centre) / stretch);
                if weight == 0.0 {
                    continue;
                }
                // Outside the plane, the edge sample stands in.
                let source = position.clamp(0, last);
                let slot = (source - first).clamp(0, taps as i64 - 1) as usize;
                real[slot] += weight;
                total += weight;
            }
            offsets.push(first as i32);
            push_quantized(&real, total, &mut weights);
        }
        Self {
            source_len,
            output_len,
            taps,
            offsets,
            weights,
        }
    }

    fn weights_of(&self, output: usize) -> &[i16] {
        let taps = self.taps as usize;
        &self.weights[output * taps..(output + 1) * taps]
    }
}

/// Normalises `real` to sum to 1 << WEIGHT_BITS in integers; the rounding
/// remainder goes to the largest tap, so a flat picture stays exactly flat.
fn push_quantized(real: &[f64], total: f64, out: &mut Vec<i16>) {
    let one = f64::from(1u32 << WEIGHT_BITS);
    let start = out.len();
    let mut sum = 0i32;
    for &w in real {
        let q = (w / total * one).round() as i32;
        sum += q;
        out.push(q as i16);
    }
    let largest = (0..real.len())
        .max_by(|&a, &b| real[a].total_cmp(&real[b]))
        .unwrap_or(0);
    let fixed = i32::from(out[start + largest]) + (1 << WEIGHT_BITS) - sum;
    out[start + largest] = fixed as i16;
}

/// One 8-bit plane in memory: `channels` interleaved samples per pixel
/// (1 for luma, 2 for NV12's UV plane), rows `pitch` bytes apart.
#[derive(Debug, Clone, Copy)]
pub struct PlaneRef<'a> {
    pub data: &'a [u8],
    pub width: u32,
    pub height: u32,
    pub pitch: usize,
    pub channels: u32,
}

/// Both axes of one plane's resize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanePlan {
    pub horizontal: AxisFilter,
    pub vertical: AxisFilter,
    pub channels: u32,
}

impl PlanePlan {
    pub fn new(source: (u32, u32), output: (u32, u32), channels: u32) -> Self {
        Self {
            horizontal: AxisFilter::new(source.0, output.0),
            vertical: AxisFilter::new(source.1, output.1),
            channels,
        }
    }

    /// The CPU reference of the two kernels: the same sums in the same
    /// order. Returns the output plane, packed (pitch = width × channels).
    ///
    /// # Panics
    /// When `plane` does not have the size the plan was made for.
    pub fn run_reference(&self, plane: PlaneRef<'_>) -> Vec<u8> {
        assert_eq!(plane.width, self.horizontal.source_len, "plane width");
        assert_eq!(plane.height, self.vertical.source_len, "plane height");
        assert_eq!(plane.channels, self.channels, "plane channels");
        let channels = self.channels as usize;
        let row_samples = self.horizontal.output_len as usize * channels;

        // Pass 1: every source row, to the output width (the kernel's
        // `resize_horizontal`).
        let mut intermediate = vec![0i16; row_samples * plane.height as usize];
        for row in 0..plane.height as usize {
            let line = &plane.data[row * plane.pitch..];
            for sample in 0..row_samples {
                let pixel = sample / channels;
                let channel = sample % channels;
                let first = self.horizontal.offsets[pixel] as usize * channels + channel;
                let sum: i32 = self
                    .horizontal
                    .weights_of(pixel)
                    .iter()
                    .enumerate()
                    .map(|(k, &w)| i32::from(w) * i32::from(line[first + k * channels]))
                    .sum();
                intermediate[row * row_samples + sample] =
                    ((sum + (1 << (HORIZONTAL_SHIFT - 1))) >> HORIZONTAL_SHIFT) as i16;
            }
        }

        // Pass 2: every output row from the intermediate rows
        // (`resize_vertical`).
        let rows = self.vertical.output_len as usize;
        let mut output = vec![0u8; row_samples * rows];
        for row in 0..rows {
            let first = self.vertical.offsets[row] as usize;
            let weights = self.vertical.weights_of(row);
            for sample in 0..row_samples {
                let sum: i32 = weights
                    .iter()
                    .enumerate()
                    .map(|(k, &w)| {
                        i32::from(w) * i32::from(intermediate[(first + k) * row_samples + sample])
                    })
                    .sum();
                let value = (sum + (1 << (VERTICAL_SHIFT - 1))) >> VERTICAL_SHIFT;
                output[row * row_samples + sample] = value.clamp(0, 255) as u8;
            }
        }
        output
    }
}

/// The plans for an NV12 picture: luma, then the half-size interleaved UV
/// plane. Output sizes are even (the ladder makes them so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nv12Plan {
    pub luma: PlanePlan,
    pub chroma: PlanePlan,
}

impl Nv12Plan {
    pub fn new(source: (u32, u32), output: (u32, u32)) -> Self {
        let half = |(w, h): (u32, u32)| (w.div_ceil(2), h.div_ceil(2));
        Self {
            luma: PlanePlan::new(source, output, 1),
            chroma: PlanePlan::new(half(source), half(output), 2),
        }
    }
}

/// An NV12 picture in host memory, packed: the luma plane, then the UV plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nv12Image {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl Nv12Image {
    pub fn luma(&self) -> PlaneRef<'_> {
        PlaneRef {
            data: &self.data[..self.luma_len()],
            width: self.width,
            height: self.height,
            pitch: self.width as usize,
            channels: 1,
        }
    }

    pub fn chroma(&self) -> PlaneRef<'_> {
        PlaneRef {
            data: &self.data[self.luma_len()..],
            width: self.width.div_ceil(2),
            height: self.height.div_ceil(2),
            pitch: self.width.div_ceil(2) as usize * 2,
            channels: 2,
        }
    }

    fn luma_len(&self) -> usize {
        self.width as usize * self.height as usize
    }

    /// A picture of xorshift64 noise: fresh, non-trivial samples for checks
    /// and timings (never zeros, which hide unwritten outputs).
    pub fn noise(width: u32, height: u32, seed: u64) -> Nv12Image {
        let mut state = seed | 1;
        let data = (0..Self::len_for(width, height))
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 56) as u8
            })
            .collect();
        Nv12Image {
            width,
            height,
            data,
        }
    }

    /// Bytes of a packed NV12 picture of this size.
    pub fn len_for(width: u32, height: u32) -> usize {
        width as usize * height as usize
            + width.div_ceil(2) as usize * 2 * height.div_ceil(2) as usize
    }

    /// The CPU reference resize of the whole picture.
    pub fn resize_reference(&self, plan: &Nv12Plan) -> Nv12Image {
        let mut data = plan.luma.run_reference(self.luma());
        data.extend(plan.chroma.run_reference(self.chroma()));
        Nv12Image {
            width: plan.luma.horizontal.output_len,
            height: plan.luma.vertical.output_len,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_of_weights_sums_to_one_and_stays_inside_the_plane() {
        for (source, output) in [
            (1920, 1280),
            (1080, 240),
            (1920, 426),
            (7, 3),
            (3, 10),
            (1, 1),
        ] {
            let filter = AxisFilter::new(source, output);
            for i in 0..output as usize {
                let sum: i32 = filter.weights_of(i).iter().map(|&w| i32::from(w)).sum();
                assert_eq!(sum, 1 << WEIGHT_BITS, "{source}->{output} at {i}");
                let first = filter.offsets[i];
                assert!(first >= 0 && first as u32 + filter.taps <= source);
            }
        }
    }

    #[test]
    fn downscaling_widens_the_filter_and_enlarging_keeps_four_taps() {
        assert_eq!(AxisFilter::new(100, 200).taps, 5);
        assert_eq!(AxisFilter::new(1920, 1920).taps, 5);
        // 1080 → 240 is 4.5×: a support of ±9 source pixels, 19 taps.
        assert_eq!(AxisFilter::new(1080, 240).taps, 19);
    }

    #[test]
    fn a_flat_picture_stays_exactly_flat() {
        let image = Nv12Image {
            width: 64,
            height: 36,
            data: vec![200; Nv12Image::len_for(64, 36)],
        };
        let out = image.resize_reference(&Nv12Plan::new((64, 36), (22, 12)));
        assert!(out.data.iter().all(|&v| v == 200));
        assert_eq!(out.data.len(), Nv12Image::len_for(22, 12));
    }

    #[test]
    fn identity_size_reproduces_the_source() {
        let image = Nv12Image::noise(32, 18, 7);
        let out = image.resize_reference(&Nv12Plan::new((32, 18), (32, 18)));
        assert_eq!(out, image);
    }

    #[test]
    fn downscaling_a_gradient_keeps_it_monotonic_and_in_range() {
        let (w, h) = (320, 180);
        let mut data = vec![0u8; Nv12Image::len_for(w, h)];
        for y in 0..h as usize {
            for x in 0..w as usize {
                data[y * w as usize + x] = (x * 255 / (w as usize - 1)) as u8;
            }
        }
        let image = Nv12Image {
            width: w,
            height: h,
            data,
        };
        let out = image.resize_reference(&Nv12Plan::new((w, h), (64, 36)));
        for row in out.data[..64 * 36].chunks(64) {
            assert!(row.windows(2).all(|p| p[0] <= p[1]), "{row:?}");
            assert!(row[0] < 8 && row[63] > 247);
        }
    }

    #[test]
    fn downscaling_averages_away_a_pattern_finer_than_the_output() {
        // A one-pixel checkerboard is above the output's Nyquist limit: an
        // antialiasing filter turns it to flat grey, point sampling would not.
        let (w, h) = (256, 144);
        let mut data = vec![128u8; Nv12Image::len_for(w, h)];
        for y in 0..h as usize {
            for x in 0..w as usize {
                data[y * w as usize + x] = if (x + y) % 2 == 0 { 16 } else { 235 };
            }
        }
        let image = Nv12Image {
            width: w,
            height: h,
            data,
        };
        let out = image.resize_reference(&Nv12Plan::new((w, h), (56, 32)));
        let luma = &out.data[..56 * 32];
        let (lo, hi) = (luma.iter().min().unwrap(), luma.iter().max().unwrap());
        assert!(*lo >= 115 && *hi <= 140, "range {lo}..{hi}");
    }

    #[test]
    fn chroma_channels_stay_apart() {
        // U = 50 everywhere, V = 220 everywhere: the interleaved pass must not mix them.
        let (w, h) = (64, 32);
        let mut data = vec![100u8; Nv12Image::len_for(w, h)];
        let luma = (w * h) as usize;
        for (i, v) in data[luma..].iter_mut().enumerate() {
            *v = if i % 2 == 0 { 50 } else { 220 };
        }
        let image = Nv12Image {
            width: w,
            height: h,
            data,
        };
        let out = image.resize_reference(&Nv12Plan::new((w, h), (24, 12)));
        let chroma = &out.data[24 * 12..];
        assert_eq!(chroma.len(), 24 * 6);
        for pair in chroma.chunks(2) {
            assert_eq!(pair, [50, 220]);
        }
    }

    #[test]
    fn close_to_swscale_bicubic_on_a_real_picture() {
        // An independent check of the filter's shape: libswscale's bicubic on
        // the same random-but-smooth picture should land within a few levels.
        let (w, h) = (192, 108);
        let mut image = Nv12Image::noise(w, h, 99);
        // Smooth the noise so the two filters' different lobes matter little.
        for _ in 0..4 {
            let copy = image.data.clone();
            for i in 1..image.data.len() - 1 {
                image.data[i] = ((u32::from(copy[i - 1])
                    + 2 * u32::from(copy[i])
                    + u32::from(copy[i + 1]))
                    / 4) as u8;
            }
        }
        let ours = image.resize_reference(&Nv12Plan::new((w, h), (96, 54)));
        let theirs = crate::pipeline::gpu::tests_support::swscale_nv12(&image, 96, 54);
        let mse: f64 = ours.data[..96 * 54]
            .iter()
            .zip(&theirs[..96 * 54])
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum::<f64>()
            / (96.0 * 54.0);
        let psnr = 10.0 * (255.0f64 * 255.0 / mse.max(1e-9)).log10();
        assert!(psnr > 35.0, "PSNR against swscale {psnr:.1} dB");
    }
}
