//! Which encoder makes a codec: chosen here, in one place, for every backend
//! that encodes on the CPU (the CPU backend, and the GPU backend's hybrid
//! path). A codec without an encoder here is refused before any work, as an
//! unsupported rendition; what a backend advertises
//! ([`super::Backend::capabilities`]) follows the same table.

use super::{TranscodeError, VideoCodec};
use crate::protocol::capabilities::{self as caps, CapabilitySet};

/// A software encoder lpgpu drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftwareEncoder {
    X264,
}

impl SoftwareEncoder {
    /// libavcodec's name for it.
    pub fn ffmpeg_name(self) -> &'static str {
        match self {
            SoftwareEncoder::X264 => "libx264",
        }
    }
}

/// The encoder of `codec`, or why there is none. HEVC, VP8 and VP9
/// renditions are mapped and carried on every wire already; their encoders
/// (libx265, libvpx) are not wired here yet.
pub fn software_encoder(codec: VideoCodec) -> Result<SoftwareEncoder, TranscodeError> {
    match codec {
        VideoCodec::H264(_) => Ok(SoftwareEncoder::X264),
        other => Err(TranscodeError::Unsupported(format!(
            "{} encoding is not available on this transcoder",
            other.name()
        ))),
    }
}

/// What the CPU encoders make and its decoders read, as capability bits:
/// H.264 out (every profile), MPEG-TS and MP4, fractional rates, GOPs,
/// direct storage, auth tokens, HEVC and H.264 4:2:2 / 4:4:4 decode,
/// segment slicing. Derived from [`software_encoder`]: a codec gets its
/// encode bit only when it has an encoder.
pub fn software_capabilities() -> CapabilitySet {
    let mut set: Vec<caps::Capability> = caps::LPGPU_CAPABILITIES
        .iter()
        .copied()
        .filter(|&c| {
            let codec = match c {
                caps::H264 => VideoCodec::default(),
                caps::HEVC_ENCODE => VideoCodec::Hevc,
                caps::VP8_ENCODE => VideoCodec::Vp8,
                caps::VP9_ENCODE => VideoCodec::Vp9,
                _ => return true,
            };
            software_encoder(codec).is_ok()
        })
        .collect();
    for (bit, codec) in [
        (caps::HEVC_ENCODE, VideoCodec::Hevc),
        (caps::VP8_ENCODE, VideoCodec::Vp8),
        (caps::VP9_ENCODE, VideoCodec::Vp9),
    ] {
        if software_encoder(codec).is_ok() {
            set.push(bit);
        }
    }
    CapabilitySet::new(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_encode_bits_are_exactly_the_encoders_there_are() {
        let set = software_capabilities();
        assert_eq!(set, CapabilitySet::lpgpu());
        assert!(set.contains(caps::H264));
        for (bit, codec) in [
            (caps::HEVC_ENCODE, VideoCodec::Hevc),
            (caps::VP8_ENCODE, VideoCodec::Vp8),
            (caps::VP9_ENCODE, VideoCodec::Vp9),
        ] {
            assert_eq!(set.contains(bit), software_encoder(codec).is_ok());
        }
        assert_eq!(
            software_encoder(VideoCodec::Vp9).unwrap_err().to_string(),
            "unsupported rendition: VP9 encoding is not available on this transcoder"
        );
    }
}
