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
/// every bit of [`caps::LPGPU_CAPABILITIES`] whose encoder (libx264,
/// libx265, libvpx, libvpx-vp9) or decoder (hevc, vp8, vp9) this build of
/// libavcodec has, and perceptual hashes when libavfilter has the
/// `signature` filter. H.264's high-bit-depth and 4:2:2 / 4:4:4 decoding is
/// part of every libavcodec h264 decoder.
pub fn software_capabilities() -> CapabilitySet {
    let has_decoder = |id: ffmpeg_next::codec::Id| {
        crate::pipeline::cpu::init_ffmpeg();
        ffmpeg_next::decoder::find(id).is_some()
    };
    let has_encoder = |codec: VideoCodec| {
        software_encoder(codec).is_ok_and(|encoder| {
            crate::pipeline::cpu::init_ffmpeg();
            ffmpeg_next::encoder::find_by_name(encoder.ffmpeg_name()).is_some()
        })
    };
    let set: Vec<caps::Capability> = caps::LPGPU_CAPABILITIES
        .iter()
        .copied()
        .filter(|&c| match c {
            caps::H264 => has_encoder(VideoCodec::default()),
            caps::HEVC_ENCODE => has_encoder(VideoCodec::Hevc),
            caps::VP8_ENCODE => has_encoder(VideoCodec::Vp8),
            caps::VP9_ENCODE => has_encoder(VideoCodec::Vp9),
            caps::HEVC_DECODE => has_decoder(ffmpeg_next::codec::Id::HEVC),
            caps::VP8_DECODE => has_decoder(ffmpeg_next::codec::Id::VP8),
            caps::VP9_DECODE => has_decoder(ffmpeg_next::codec::Id::VP9),
            caps::MPEG7_VIDEO_SIGNATURE => super::signature::available(),
            _ => true,
        })
        .collect();
    CapabilitySet::new(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_bits_are_exactly_the_codecs_this_build_has() {
        // Debian's FFmpeg 5.1 (and the device bundle's) has every one.
        let set = software_capabilities();
        assert_eq!(set, CapabilitySet::lpgpu());
        for bit in [
            caps::H264,
            caps::HEVC_ENCODE,
            caps::VP8_ENCODE,
            caps::VP9_ENCODE,
            caps::HEVC_DECODE,
            caps::VP8_DECODE,
            caps::VP9_DECODE,
            caps::H264_DECODE_420_10BIT,
            caps::MPEG7_VIDEO_SIGNATURE,
        ] {
            assert!(set.contains(bit), "{bit}");
        }
    }
}
