//! The perceptual hash of a rendition (capability 14): an MPEG-7 video
//! signature in FFmpeg's `signature` filter binary format, what LPMS writes
//! to `<rendition>.bin` and go-livepeer sends as the `application/octet-stream`
//! part after each rendition (O–T) and serves at `perceptual_hash_url` (B–O).
//!
//! Plain code over bytes from peers: [`VideoSignature::parse`] reads the
//! whole layout (header, coarse segment signatures, one fine signature per
//! frame) and refuses anything that does not fit it exactly, so a
//! transcoder's hash part is checked before it is stored and served;
//! [`VideoSignature::mean_frame_distance`] compares two signatures frame by
//! frame (the L1 distance of their 380-element ternary frame signatures),
//! the fine-grained half of MPEG-7 matching.

/// Elements of a frame signature, each 0, 1 or 2.
pub const FRAME_ELEMENTS: usize = 380;
/// The largest L1 distance between two frame signatures.
pub const MAX_FRAME_DISTANCE: u32 = 2 * FRAME_ELEMENTS as u32;
/// Frames a segment signature (coarse) covers in FFmpeg's filter.
const FRAMES_PER_SEGMENT: u64 = 45;
/// Bits of one coarse segment signature and one frame signature.
const SEGMENT_BITS: u64 = 32 + 32 + 1 + 32 + 32 + 5 * 243;
const FRAME_BITS: u64 = 1 + 32 + 8 + 5 * 8 + 76 * 8;
const HEADER_BITS: u64 = 32 + 1 + 32 + 16 + 16 + 32 + 32 + 16 + 1 + 32 + 32 + 32;

/// One frame's fine signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSignature {
    /// The frame's timestamp in the signature's time unit (low 32 bits).
    pub pts: u32,
    pub confidence: u8,
    pub words: [u8; 5],
    /// 380 ternary elements, 0..=2.
    pub elements: Vec<u8>,
}

impl FrameSignature {
    /// The L1 distance to another frame's signature (0 ..= 760).
    pub fn distance(&self, other: &FrameSignature) -> u32 {
        self.elements
            .iter()
            .zip(&other.elements)
            .map(|(a, b)| u32::from(a.abs_diff(*b)))
            .sum()
    }
}

/// A parsed MPEG-7 video signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoSignature {
    pub width: u32,
    pub height: u32,
    /// Ticks per second of the frames' timestamps (the time base's den/num,
    /// cut to 16 bits as FFmpeg writes it).
    pub time_unit: u16,
    pub segments: u32,
    pub frames: Vec<FrameSignature>,
}

/// Why bytes are not a video signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("perceptual hash truncated: {needed} bits needed, {had} present")]
    Truncated { needed: u64, had: u64 },
    #[error("perceptual hash has {0} bytes after its end")]
    TrailingBytes(u64),
    #[error("perceptual hash is not FFmpeg's binary signature: {0}")]
    Malformed(&'static str),
}

struct BitReader<'a> {
    bytes: &'a [u8],
    position: u64,
}

impl BitReader<'_> {
    fn read(&mut self, bits: u32) -> u32 {
        // Callers checked the length first: a short read is a bug, not input.
        let mut value = 0u32;
        for _ in 0..bits {
            let byte = self.bytes[(self.position / 8) as usize];
            let bit = (byte >> (7 - (self.position % 8))) & 1;
            value = (value << 1) | u32::from(bit);
            self.position += 1;
        }
        value
    }

    fn skip(&mut self, bits: u64) {
        self.position += bits;
    }
}

impl VideoSignature {
    /// Reads FFmpeg's binary signature: exactly one spatial region covering
    /// the picture, the segment count and frame count it declares, nothing
    /// after the padding to a byte.
    pub fn parse(bytes: &[u8]) -> Result<Self, SignatureError> {
        let had = bytes.len() as u64 * 8;
        let need = |needed: u64| {
            if needed > had {
                Err(SignatureError::Truncated { needed, had })
            } else {
                Ok(())
            }
        };
        need(HEADER_BITS)?;
        let mut reader = BitReader { bytes, position: 0 };
        if reader.read(32) != 1 {
            return Err(SignatureError::Malformed("not one spatial region"));
        }
        reader.skip(1 + 32);
        let width = reader.read(16) + 1;
        let height = reader.read(16) + 1;
        reader.skip(32);
        let frame_count = u64::from(reader.read(32));
        let time_unit = reader.read(16) as u16;
        reader.skip(1 + 32 + 32);
        let segments = reader.read(32);
        if u64::from(segments) != frame_count.div_ceil(FRAMES_PER_SEGMENT) {
            return Err(SignatureError::Malformed(
                "segment count does not follow the frame count",
            ));
        }
        // Sized before anything is allocated: a declared count must fit the
        // bytes actually there.
        let total = HEADER_BITS + u64::from(segments) * SEGMENT_BITS + 1 + frame_count * FRAME_BITS;
        need(total)?;
        let padded = total.div_ceil(8) * 8;
        if had > padded {
            return Err(SignatureError::TrailingBytes((had - padded) / 8));
        }
        reader.skip(u64::from(segments) * SEGMENT_BITS);
        if reader.read(1) != 0 {
            return Err(SignatureError::Malformed("compressed fine signatures"));
        }
        let mut frames = Vec::with_capacity(frame_count as usize);
        for _ in 0..frame_count {
            reader.skip(1);
            let pts = reader.read(32);
            let confidence = reader.read(8) as u8;
            let mut words = [0u8; 5];
            for word in &mut words {
                *word = reader.read(8) as u8;
            }
            let mut elements = Vec::with_capacity(FRAME_ELEMENTS);
            for _ in 0..FRAME_ELEMENTS / 5 {
                let packed = reader.read(8);
                if packed >= 243 {
                    return Err(SignatureError::Malformed("a frame element is not ternary"));
                }
                for power in [81, 27, 9, 3, 1] {
                    elements.push((packed / power % 3) as u8);
                }
            }
            frames.push(FrameSignature {
                pts,
                confidence,
                words,
                elements,
            });
        }
        Ok(Self {
            width,
            height,
            time_unit,
            segments,
            frames,
        })
    }

    /// The mean L1 distance between frames of the same index, over the
    /// frames both have; None when either has none. Two signatures of the
    /// same pictures (before and after a lossy encode) stay far below
    /// [`MAX_FRAME_DISTANCE`]; unrelated pictures do not.
    pub fn mean_frame_distance(&self, other: &VideoSignature) -> Option<f64> {
        let pairs = self.frames.len().min(other.frames.len());
        if pairs == 0 {
            return None;
        }
        let sum: u64 = self
            .frames
            .iter()
            .zip(&other.frames)
            .map(|(a, b)| u64::from(a.distance(b)))
            .sum();
        Some(sum as f64 / pairs as f64)
    }
}

/// A well-formed signature of `frames` frames, for other modules' tests.
#[cfg(test)]
pub(crate) fn sample(width: u32, height: u32, frames: u32) -> Vec<u8> {
    let frames: Vec<_> = (0..frames)
        .map(|i| (i * 3000, vec![(i % 3) as u8; FRAME_ELEMENTS]))
        .collect();
    tests::write(width, height, &frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signature written bit by bit as FFmpeg's `binary_export` does.
    pub(super) fn write(width: u32, height: u32, frames: &[(u32, Vec<u8>)]) -> Vec<u8> {
        let mut bits: Vec<bool> = Vec::new();
        let put = |bits: &mut Vec<bool>, n: u32, value: u64| {
            for i in (0..n).rev() {
                bits.push((value >> i) & 1 == 1);
            }
        };
        let count = frames.len() as u64;
        let segments = count.div_ceil(FRAMES_PER_SEGMENT);
        put(&mut bits, 32, 1);
        put(&mut bits, 1, 1);
        put(&mut bits, 32, 0);
        put(&mut bits, 16, u64::from(width - 1));
        put(&mut bits, 16, u64::from(height - 1));
        put(&mut bits, 32, 0);
        put(&mut bits, 32, count);
        put(&mut bits, 16, 90_000 & 0xFFFF);
        put(&mut bits, 1, 1);
        put(&mut bits, 32, 0);
        put(&mut bits, 32, 1234);
        put(&mut bits, 32, segments);
        bits.extend(std::iter::repeat_n(
            false,
            (segments * SEGMENT_BITS) as usize,
        ));
        put(&mut bits, 1, 0);
        for (pts, elements) in frames {
            put(&mut bits, 1, 1);
            put(&mut bits, 32, u64::from(*pts));
            put(&mut bits, 8, 7);
            for w in 0..5 {
                put(&mut bits, 8, w);
            }
            for five in elements.chunks(5) {
                let packed = five.iter().fold(0u64, |acc, e| acc * 3 + u64::from(*e));
                put(&mut bits, 8, packed);
            }
        }
        while !bits.len().is_multiple_of(8) {
            bits.push(false);
        }
        bits.chunks(8)
            .map(|byte| byte.iter().fold(0u8, |acc, b| (acc << 1) | u8::from(*b)))
            .collect()
    }

    fn elements(seed: u8) -> Vec<u8> {
        (0..FRAME_ELEMENTS)
            .map(|i| ((i as u8) ^ seed) % 3)
            .collect()
    }

    #[test]
    fn a_written_signature_reads_back_whole() {
        let frames: Vec<_> = (0..50).map(|i| (i * 3000, elements(i as u8))).collect();
        let bytes = write(640, 360, &frames);
        let signature = VideoSignature::parse(&bytes).unwrap();
        assert_eq!((signature.width, signature.height), (640, 360));
        assert_eq!(signature.segments, 2);
        assert_eq!(signature.frames.len(), 50);
        assert_eq!(signature.frames[3].pts, 9000);
        assert_eq!(signature.frames[3].elements, elements(3));
        assert_eq!(signature.frames[3].words, [0, 1, 2, 3, 4]);
        assert_eq!(signature.mean_frame_distance(&signature), Some(0.0));
    }

    #[test]
    fn distance_counts_each_element_difference() {
        let a = FrameSignature {
            pts: 0,
            confidence: 0,
            words: [0; 5],
            elements: vec![0; FRAME_ELEMENTS],
        };
        let mut b = a.clone();
        b.elements[0] = 2;
        b.elements[379] = 1;
        assert_eq!(a.distance(&b), 3);
        b.elements = vec![2; FRAME_ELEMENTS];
        assert_eq!(a.distance(&b), MAX_FRAME_DISTANCE);
    }

    #[test]
    fn anything_else_is_refused_with_a_reason() {
        let bytes = write(320, 240, &[(0, elements(1)), (1, elements(2))]);
        for cut in [0, 10, bytes.len() - 1] {
            assert!(
                matches!(
                    VideoSignature::parse(&bytes[..cut]),
                    Err(SignatureError::Truncated { .. })
                ),
                "{cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            VideoSignature::parse(&longer),
            Err(SignatureError::TrailingBytes(1))
        );
        let mut regions = bytes.clone();
        regions[3] = 2;
        assert!(matches!(
            VideoSignature::parse(&regions),
            Err(SignatureError::Malformed(_))
        ));
        // A frame count the bytes cannot hold is refused before allocating.
        let mut huge = bytes.clone();
        // NumOfFrames is bits 129..161: set its high bits.
        huge[16] |= 0x7F;
        assert!(VideoSignature::parse(&huge).is_err());
        assert!(VideoSignature::parse(b"not a signature at all").is_err());
    }
}
