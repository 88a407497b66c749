//! Today's wires' `VideoProfile` ↔ lpgpu's [`RenditionSpec`], both
//! directions in one place (the pool sends what a dial-out transcoder reads
//! back unchanged), and the capability bits a set of renditions needs of a
//! transcoder. Plain values; whether a transcoder can make a rendition is
//! its capabilities' say, not this mapping's.

use super::capabilities::{self as caps, CapabilitySet};
use super::rendition::{Container, Gop, H264Profile, Rational, RenditionSpec, VideoCodec};
use crate::proto::{VideoProfile, video_profile};

/// Why a `VideoProfile` is not a rendition at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileRefusal {
    /// go-livepeer's words for a format it does not know.
    #[error("unrecognized profile output format")]
    UnrecognizedFormat,
    /// A field out of range: `label: what`.
    #[error("{0}")]
    Unsupported(String),
}

/// The profile's label: its name, or go-livepeer's `net_WxH_bitrate`.
pub fn label(profile: &VideoProfile) -> String {
    if profile.name.is_empty() {
        format!(
            "net_{}x{}_{}",
            profile.width, profile.height, profile.bitrate
        )
    } else {
        profile.name.clone()
    }
}

/// A `VideoProfile` as a rendition: any size and bitrate, fps 0 = the
/// source's rate (fpsDen 0 = 1), GOP in ms (0 = lpgpu's, -1 = intra only),
/// the codec with its profile, the container (VP8 and VP9 go in Matroska
/// where MPEG-TS was asked, as LPMS writes them), quality as CRF.
/// colorDepth and chromaFormat are ignored, as go-livepeer's transcoder does.
pub fn to_rendition(profile: &VideoProfile) -> Result<RenditionSpec, ProfileRefusal> {
    let label = label(profile);
    let unsupported = |why: String| ProfileRefusal::Unsupported(format!("{label}: {why}"));
    let format = video_profile::Format::try_from(profile.format)
        .map_err(|_| ProfileRefusal::UnrecognizedFormat)?;
    let h264_profile = match video_profile::Profile::try_from(profile.profile) {
        Ok(video_profile::Profile::EncoderDefault) => H264Profile::EncoderDefault,
        Ok(video_profile::Profile::H264Baseline) => H264Profile::Baseline,
        Ok(video_profile::Profile::H264Main) => H264Profile::Main,
        Ok(video_profile::Profile::H264High) => H264Profile::High,
        Ok(video_profile::Profile::H264ConstrainedHigh) => H264Profile::ConstrainedHigh,
        Err(_) => return Err(unsupported(format!("H.264 profile {}", profile.profile))),
    };
    let codec = match video_profile::VideoCodec::try_from(profile.encoder) {
        Ok(video_profile::VideoCodec::H264) => VideoCodec::H264(h264_profile),
        Ok(video_profile::VideoCodec::H265) => VideoCodec::Hevc,
        Ok(video_profile::VideoCodec::Vp8) => VideoCodec::Vp8,
        Ok(video_profile::VideoCodec::Vp9) => VideoCodec::Vp9,
        Err(_) => return Err(unsupported(format!("encoder {}", profile.encoder))),
    };
    let container = match (format, codec) {
        (video_profile::Format::Mpegts, VideoCodec::Vp8 | VideoCodec::Vp9) => Container::Matroska,
        (video_profile::Format::Mpegts, _) => Container::MpegTs,
        (video_profile::Format::Mp4, _) => Container::Mp4,
    };
    if !container.carries(codec) {
        return Err(unsupported(format!(
            "{} in {}",
            codec.name(),
            container.muxer()
        )));
    }
    if profile.width <= 0 || profile.height <= 0 {
        return Err(unsupported(format!(
            "size {}x{}",
            profile.width, profile.height
        )));
    }
    if profile.bitrate < 0 {
        return Err(unsupported(format!("bitrate {}", profile.bitrate)));
    }
    let gop = match profile.gop {
        0 => Gop::Default,
        -1 => Gop::IntraOnly,
        ms if ms > 0 => Gop::Millis(ms.unsigned_abs()),
        other => return Err(unsupported(format!("GOP {other}"))),
    };
    let max_frame_rate = match (profile.fps, profile.fps_den) {
        (0, _) => None,
        (fps, den) => {
            let den = den.max(1);
            match (i32::try_from(fps), i32::try_from(den)) {
                (Ok(num), Ok(den)) => Some(Rational::new(num, den)),
                _ => return Err(unsupported(format!("frame rate {fps}/{den}"))),
            }
        }
    };
    Ok(RenditionSpec {
        name: label,
        width: profile.width.unsigned_abs(),
        height: profile.height.unsigned_abs(),
        bitrate_bps: profile.bitrate.unsigned_abs(),
        max_frame_rate,
        gop,
        codec,
        container,
        quality: (profile.quality > 0).then_some(profile.quality),
    })
}

/// The wire's format of a container: the wire has MPEG-TS and MP4, and
/// Matroska and WebM are what MPEG-TS means for VP8 and VP9.
pub fn wire_format(container: Container) -> video_profile::Format {
    match container {
        Container::Mp4 => video_profile::Format::Mp4,
        Container::MpegTs | Container::Matroska | Container::WebM => video_profile::Format::Mpegts,
    }
}

/// A rendition as a `VideoProfile`: its box, bitrate, frame-rate ceiling,
/// GOP, codec and profile, container and quality.
pub fn to_video_profile(spec: &RenditionSpec) -> VideoProfile {
    let (fps, fps_den) = spec
        .max_frame_rate
        .filter(|r| r.num > 0 && r.den > 0)
        .map_or((0, 0), |r| (r.num.unsigned_abs(), r.den.unsigned_abs()));
    let gop = match spec.gop {
        Gop::Default => 0,
        Gop::IntraOnly => -1,
        Gop::Millis(ms) => i32::try_from(ms).unwrap_or(i32::MAX),
    };
    let (encoder, profile) = match spec.codec {
        VideoCodec::H264(profile) => (
            video_profile::VideoCodec::H264,
            match profile {
                H264Profile::EncoderDefault => video_profile::Profile::EncoderDefault,
                H264Profile::Baseline => video_profile::Profile::H264Baseline,
                H264Profile::Main => video_profile::Profile::H264Main,
                H264Profile::High => video_profile::Profile::H264High,
                H264Profile::ConstrainedHigh => video_profile::Profile::H264ConstrainedHigh,
            },
        ),
        VideoCodec::Hevc => (
            video_profile::VideoCodec::H265,
            video_profile::Profile::EncoderDefault,
        ),
        VideoCodec::Vp8 => (
            video_profile::VideoCodec::Vp8,
            video_profile::Profile::EncoderDefault,
        ),
        VideoCodec::Vp9 => (
            video_profile::VideoCodec::Vp9,
            video_profile::Profile::EncoderDefault,
        ),
    };
    let format = wire_format(spec.container);
    VideoProfile {
        name: spec.name.clone(),
        width: i32::try_from(spec.width).unwrap_or(i32::MAX),
        height: i32::try_from(spec.height).unwrap_or(i32::MAX),
        bitrate: i32::try_from(spec.bitrate_bps).unwrap_or(i32::MAX),
        fps,
        fps_den,
        format: format as i32,
        profile: profile as i32,
        gop,
        encoder: encoder as i32,
        quality: spec.quality.unwrap_or(0),
        ..Default::default()
    }
}

/// What a set of renditions needs of a transcoder: its codecs' encode bits,
/// the containers, fractional rates, the H.264 profiles and GOPs used, auth
/// tokens.
pub fn needs(specs: &[RenditionSpec]) -> CapabilitySet {
    let mut needed = vec![caps::AUTH_TOKEN];
    for spec in specs {
        needed.push(match spec.codec {
            VideoCodec::H264(_) => caps::H264,
            VideoCodec::Hevc => caps::HEVC_ENCODE,
            VideoCodec::Vp8 => caps::VP8_ENCODE,
            VideoCodec::Vp9 => caps::VP9_ENCODE,
        });
        // As go-livepeer sets a job's bits: by the profile's format.
        needed.push(match wire_format(spec.container) {
            video_profile::Format::Mpegts => caps::MPEGTS,
            video_profile::Format::Mp4 => caps::MP4,
        });
        if spec.max_frame_rate.is_some_and(|r| r.den > 1) {
            needed.push(caps::FRACTIONAL_FRAMERATES);
        }
        if let VideoCodec::H264(profile) = spec.codec {
            match profile {
                H264Profile::EncoderDefault => {}
                H264Profile::Baseline => needed.push(caps::PROFILE_H264_BASELINE),
                H264Profile::Main => needed.push(caps::PROFILE_H264_MAIN),
                H264Profile::High => needed.push(caps::PROFILE_H264_HIGH),
                H264Profile::ConstrainedHigh => needed.push(caps::PROFILE_H264_CONSTRAINED_HIGH),
            }
        }
        if spec.gop != Gop::Default {
            needed.push(caps::GOP);
        }
    }
    CapabilitySet::new(needed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_profile_list;

    #[test]
    fn every_codec_survives_the_trip_both_ways() {
        let base = RenditionSpec::from(parse_profile_list("P360p30fps16x9").unwrap()[0]);
        let mut custom = base.clone();
        custom.gop = Gop::Millis(2000);
        custom.codec = VideoCodec::H264(H264Profile::Main);
        custom.container = Container::Mp4;
        custom.quality = Some(27);
        custom.max_frame_rate = Some(Rational::new(30000, 1001));
        let hevc = RenditionSpec {
            codec: VideoCodec::Hevc,
            ..base.clone()
        };
        let vp9 = RenditionSpec {
            codec: VideoCodec::Vp9,
            container: Container::Matroska,
            ..base.clone()
        };
        for original in [base, custom, hevc, vp9] {
            let back = to_rendition(&to_video_profile(&original)).unwrap();
            assert_eq!(back, original);
        }
    }

    #[test]
    fn what_a_rendition_needs_follows_its_codec_and_container() {
        let base = RenditionSpec::from(parse_profile_list("P240p30fps16x9").unwrap()[0]);
        let h264 = needs(std::slice::from_ref(&base));
        assert!(h264.contains(caps::H264) && h264.contains(caps::MPEGTS));
        let vp8 = needs(&[RenditionSpec {
            codec: VideoCodec::Vp8,
            container: Container::WebM,
            ..base.clone()
        }]);
        assert!(vp8.contains(caps::VP8_ENCODE) && !vp8.contains(caps::H264));
        assert!(vp8.contains(caps::MPEGTS), "the wire's format of WebM");
        assert!(vp8.is_subset(&CapabilitySet::lpgpu()));
        let stored = CapabilitySet::new([caps::STORAGE_S3]);
        assert!(!stored.is_subset(&CapabilitySet::lpgpu()));
        assert!(h264.is_subset(&CapabilitySet::lpgpu()));
    }

    #[test]
    fn a_codec_its_container_cannot_carry_is_refused() {
        let vp8_in_mp4 = VideoProfile {
            name: "p".into(),
            width: 640,
            height: 360,
            encoder: video_profile::VideoCodec::Vp8 as i32,
            format: video_profile::Format::Mp4 as i32,
            ..Default::default()
        };
        assert_eq!(
            to_rendition(&vp8_in_mp4).unwrap_err().to_string(),
            "p: VP8 in mp4"
        );
    }
}
