//! Which encoder makes a codec: chosen here, in one place, for every backend
//! that encodes on the CPU (the CPU backend, and the GPU backend's hybrid
//! path). A codec without an encoder here is refused before any work, as an
//! unsupported rendition; what a backend advertises
//! ([`super::Backend::capabilities`]) follows the same table.

use super::{TranscodeError, VideoCodec};
use crate::protocol::capabilities::{self as caps, CapabilitySet};

/// A software encoder lpgpu drives: LPMS's choices (libx264, libx265,
/// libvpx, libvpx-vp9), all in Debian's FFmpeg 5.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftwareEncoder {
    X264,
    X265,
    Vp8,
    Vp9,
}

impl SoftwareEncoder {
    /// libavcodec's name for it.
    pub fn ffmpeg_name(self) -> &'static str {
        match self {
            SoftwareEncoder::X264 => "libx264",
            SoftwareEncoder::X265 => "libx265",
            SoftwareEncoder::Vp8 => "libvpx",
            SoftwareEncoder::Vp9 => "libvpx-vp9",
        }
    }
}

/// The encoder of `codec`.
pub fn software_encoder(codec: VideoCodec) -> Result<SoftwareEncoder, TranscodeError> {
    Ok(match codec {
        VideoCodec::H264(_) => SoftwareEncoder::X264,
        VideoCodec::Hevc => SoftwareEncoder::X265,
        VideoCodec::Vp8 => SoftwareEncoder::Vp8,
        VideoCodec::Vp9 => SoftwareEncoder::Vp9,
    })
}

/// What the CPU encoders make and its decoders read, as capability bits:
/// H.264 (every profile) and HEVC out, MPEG-TS and MP4, fractional rates,
/// GOPs, direct storage, auth tokens, HEVC and H.264 4:2:2 / 4:4:4 decode,
/// segment slicing. A codec's encode bit is offered only when it has an
/// encoder here and its rendition has a label on every wire: VP8 and VP9
/// are made (in Matroska) but not offered yet (see
/// [`caps::LPGPU_CAPABILITIES`]).
pub fn software_capabilities() -> CapabilitySet {
    let set: Vec<caps::Capability> = caps::LPGPU_CAPABILITIES
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
    CapabilitySet::new(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_encode_bits_are_exactly_the_encoders_there_are() {
        let set = software_capabilities();
        assert_eq!(set, CapabilitySet::lpgpu());
        assert!(set.contains(caps::H264) && set.contains(caps::HEVC_ENCODE));
        // Made, not yet offered.
        for (bit, codec) in [
            (caps::VP8_ENCODE, VideoCodec::Vp8),
            (caps::VP9_ENCODE, VideoCodec::Vp9),
        ] {
            assert!(software_encoder(codec).is_ok() && !set.contains(bit));
        }
    }
}
