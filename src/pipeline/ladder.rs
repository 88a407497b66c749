//! Ladder arithmetic, plain and unit-tested: the output size of a rung and the
//! frames it keeps.

use super::Rational;

/// The encoded size of a rung: the source fitted into the box, with the box
/// turned to the source's orientation first (a portrait source and a
/// landscape box such as 640×360 give 360×640 at most, as lpms does), so a
/// portrait stream is not shrunk to a sliver.
pub fn output_size(src_w: u32, src_h: u32, sar: Rational, box_w: u32, box_h: u32) -> (u32, u32) {
    let sar = if sar.num > 0 && sar.den > 0 {
        sar
    } else {
        Rational::new(1, 1)
    };
    let display_w = u64::from(src_w) * sar.num as u64;
    let display_h = u64::from(src_h) * sar.den as u64;
    let source_portrait = display_h > display_w;
    let box_portrait = box_h > box_w;
    let (box_w, box_h) = if source_portrait != box_portrait && box_w != box_h {
        (box_h, box_w)
    } else {
        (box_w, box_h)
    };
    fit_in_box(src_w, src_h, sar, box_w, box_h)
}

/// The largest even-sized picture inside `box_w`×`box_h` with the source's
/// display aspect (`src_w`×`src_h` pixels of aspect `sar`). A source with the
/// box's aspect gets exactly the box.
pub fn fit_in_box(src_w: u32, src_h: u32, sar: Rational, box_w: u32, box_h: u32) -> (u32, u32) {
    let sar = if sar.num > 0 && sar.den > 0 {
        sar
    } else {
        Rational::new(1, 1)
    };
    // Display aspect as a fraction: (src_w * sar.num) / (src_h * sar.den).
    let aspect_num = u64::from(src_w) * sar.num as u64;
    let aspect_den = u64::from(src_h.max(1)) * sar.den as u64;
    let (w, h) = if aspect_num * u64::from(box_h) >= aspect_den * u64::from(box_w) {
        // Wider than (or as wide as) the box: full width.
        let h = (u64::from(box_w) * aspect_den + aspect_num / 2) / aspect_num.max(1);
        (u64::from(box_w), h)
    } else {
        let w = (u64::from(box_h) * aspect_num + aspect_den / 2) / aspect_den;
        (w, u64::from(box_h))
    };
    (
        round_even(w).min(even_floor(box_w)),
        round_even(h).min(even_floor(box_h)),
    )
}

fn round_even(value: u64) -> u32 {
    let even = value.div_ceil(2) * 2;
    even.clamp(2, u64::from(u32::MAX - 1)) as u32
}

fn even_floor(value: u32) -> u32 {
    (value / 2 * 2).max(2)
}

/// The rate assumed for a source that declares none and a rendition that
/// keeps the source's rate.
pub const FALLBACK_FRAME_RATE: Rational = Rational::new(30, 1);

/// The output frame rate of a rung: the ceiling when lower than the source's,
/// else the source's (never raised); without a ceiling, the source's. An
/// unknown source rate counts as the ceiling (or 30 fps).
pub fn output_frame_rate(source: Option<Rational>, ceiling: Option<Rational>) -> Rational {
    let source = source.filter(|r| r.num > 0 && r.den > 0);
    let ceiling = ceiling.filter(|r| r.num > 0 && r.den > 0);
    match (source, ceiling) {
        (Some(source), Some(ceiling)) if source.as_f64() < ceiling.as_f64() => source,
        (_, Some(ceiling)) => ceiling,
        (Some(source), None) => source,
        (None, None) => FALLBACK_FRAME_RATE,
    }
}

/// Drops frames to bring a stream down to a lower frame rate, keeping the
/// frame at or just after each output tick (as ffmpeg's `fps` filter does,
/// without ever duplicating a frame).
#[derive(Debug, Clone)]
pub struct FrameDecimator {
    /// Output frame interval in timestamp units; `None` keeps every frame.
    step: Option<f64>,
    next: Option<f64>,
}

impl FrameDecimator {
    /// `source` and `output` rates in frames per second; `time_base` in seconds.
    pub fn new(source: Option<Rational>, output: Rational, time_base: Rational) -> Self {
        let reduce = match source {
            Some(source) if source.num > 0 && source.den > 0 => {
                output.as_f64() < source.as_f64() * 0.999
            }
            _ => false,
        };
        let step =
            (reduce && time_base.num > 0).then(|| 1.0 / (output.as_f64() * time_base.as_f64()));
        Self { step, next: None }
    }

    /// Whether to keep the frame with this timestamp. Timestamps must not go
    /// backwards; a frame without one is kept.
    pub fn keep(&mut self, pts: Option<i64>) -> bool {
        let (Some(step), Some(pts)) = (self.step, pts) else {
            return true;
        };
        let pts = pts as f64;
        match self.next {
            None => {
                self.next = Some(pts + step);
                true
            }
            // A quarter-step of tolerance absorbs rounding of 90 kHz timestamps.
            Some(next) if pts >= next - step / 4.0 => {
                let mut next = next + step;
                while next <= pts {
                    next += step;
                }
                self.next = Some(next);
                true
            }
            Some(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(num: i32, den: i32) -> Rational {
        Rational::new(num, den)
    }

    #[test]
    fn same_aspect_gives_exactly_the_profile_size() {
        for (bw, bh) in [(1280, 720), (640, 360), (426, 240), (256, 144), (1024, 576)] {
            assert_eq!(
                fit_in_box(1920, 1080, r(1, 1), bw, bh),
                (bw / 2 * 2, bh),
                "{bw}x{bh}"
            );
        }
        assert_eq!(fit_in_box(1280, 720, r(1, 1), 426, 240), (426, 240));
        assert_eq!(fit_in_box(640, 480, r(1, 1), 320, 240), (320, 240));
    }

    #[test]
    fn other_aspects_fit_inside_the_box_with_even_sizes() {
        // 4:3 into a 16:9 box: full height, narrower.
        assert_eq!(fit_in_box(640, 480, r(1, 1), 1280, 720), (960, 720));
        // 16:9 into a 4:3 box: full width, shorter.
        assert_eq!(fit_in_box(1920, 1080, r(1, 1), 480, 360), (480, 270));
        // Portrait video.
        assert_eq!(fit_in_box(1080, 1920, r(1, 1), 640, 360), (204, 360));
        // Anamorphic: 720x576 with SAR 64:45 displays as 16:9.
        assert_eq!(fit_in_box(720, 576, r(64, 45), 1280, 720), (1280, 720));
        for (w, h) in [(1000, 1001), (3, 3), (4096, 10), (10, 4096)] {
            let (ow, oh) = fit_in_box(w, h, r(1, 1), 426, 240);
            assert!(
                ow % 2 == 0 && oh % 2 == 0 && ow <= 426 && oh <= 240 && ow >= 2 && oh >= 2,
                "{w}x{h}"
            );
        }
    }

    #[test]
    fn frame_rate_is_lowered_never_raised() {
        let at_most = |fps| Some(r(fps, 1));
        assert_eq!(output_frame_rate(Some(r(60, 1)), at_most(30)), r(30, 1));
        assert_eq!(
            output_frame_rate(Some(r(24000, 1001)), at_most(30)),
            r(24000, 1001)
        );
        assert_eq!(output_frame_rate(Some(r(30, 1)), at_most(60)), r(30, 1));
        assert_eq!(output_frame_rate(None, at_most(30)), r(30, 1));
        assert_eq!(output_frame_rate(Some(r(0, 1)), at_most(30)), r(30, 1));
        // Fractional ceilings, and none at all (keep the source's rate).
        assert_eq!(
            output_frame_rate(Some(r(60, 1)), Some(r(30000, 1001))),
            r(30000, 1001)
        );
        assert_eq!(output_frame_rate(Some(r(25, 1)), None), r(25, 1));
        assert_eq!(output_frame_rate(None, None), FALLBACK_FRAME_RATE);
    }

    #[test]
    fn the_box_turns_to_the_source_orientation() {
        // Portrait source, landscape box: 360x640 at most.
        assert_eq!(output_size(720, 1280, r(1, 1), 640, 360), (360, 640));
        // Landscape source, portrait box.
        assert_eq!(output_size(1280, 720, r(1, 1), 360, 640), (640, 360));
        // Same orientation: as fit_in_box.
        assert_eq!(output_size(1920, 1080, r(1, 1), 426, 240), (426, 240));
        // Square boxes and square sources stay.
        assert_eq!(output_size(1080, 1920, r(1, 1), 146, 146), (82, 146));
        assert_eq!(output_size(500, 500, r(1, 1), 640, 360), (360, 360));
        // A tall strip (vertical-sample.ts, 16x4000) into a 240p box.
        let (w, h) = output_size(16, 4000, r(1, 1), 426, 240);
        assert!(h == 426 && w == 2, "{w}x{h}");
    }

    #[test]
    fn decimation_halves_60_to_30() {
        let mut d = FrameDecimator::new(Some(r(60, 1)), r(30, 1), r(1, 90_000));
        let kept = (0..120)
            .filter(|i| d.keep(Some(126_000 + i * 1500)))
            .count();
        assert_eq!(kept, 60);
    }

    #[test]
    fn decimation_handles_ntsc_rates_and_keeps_all_when_not_reducing() {
        let mut d = FrameDecimator::new(Some(r(60000, 1001)), r(30, 1), r(1, 90_000));
        let kept = (0..600)
            .filter(|i| d.keep(Some(i * 1501 + (i % 2))))
            .count();
        assert!((299..=301).contains(&kept), "{kept}");
        let mut all = FrameDecimator::new(Some(r(30, 1)), r(30, 1), r(1, 90_000));
        assert!((0..60).all(|i| all.keep(Some(i * 3000))));
        assert!(all.keep(None));
    }
}
