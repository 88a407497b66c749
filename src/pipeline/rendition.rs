//! What one output rendition must be, as plain values: the box it fits in,
//! its bitrate or quality, frame-rate ceiling, keyframe interval, H.264
//! profile and container. Both protocols map onto it: a v2 job's named
//! [`Profile`]s, and the arbitrary `VideoProfile`s of today's orchestrators
//! (`transcoder::remote`). Backends read nothing else.

use std::fmt;

use super::Rational;
use crate::protocol::Profile;

/// The H.264 profile asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum H264Profile {
    /// libx264's choice (High for 4:2:0 8-bit).
    #[default]
    EncoderDefault,
    Baseline,
    Main,
    High,
    /// High without B-frames.
    ConstrainedHigh,
}

impl H264Profile {
    /// libx264's `profile` option, when one is forced.
    pub fn x264_name(self) -> Option<&'static str> {
        match self {
            H264Profile::EncoderDefault => None,
            H264Profile::Baseline => Some("baseline"),
            H264Profile::Main => Some("main"),
            H264Profile::High | H264Profile::ConstrainedHigh => Some("high"),
        }
    }

    /// Whether B-frames are allowed.
    pub fn allows_b_frames(self) -> bool {
        !matches!(self, H264Profile::Baseline | H264Profile::ConstrainedHigh)
    }
}

/// The keyframe interval asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Gop {
    /// lpgpu's `--gop-seconds`.
    #[default]
    Default,
    /// Every picture a keyframe.
    IntraOnly,
    /// A keyframe every so many milliseconds.
    Millis(u32),
}

/// The rendition's container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Container {
    #[default]
    MpegTs,
    Mp4,
}

impl Container {
    /// The MIME type of a rendition in this container.
    pub fn mime_type(self) -> &'static str {
        match self {
            Container::MpegTs => "video/mp2t",
            Container::Mp4 => "video/mp4",
        }
    }

    /// The libavformat muxer.
    pub fn muxer(self) -> &'static str {
        match self {
            Container::MpegTs => "mpegts",
            Container::Mp4 => "mp4",
        }
    }

    /// File name extension.
    pub fn extension(self) -> &'static str {
        match self {
            Container::MpegTs => "ts",
            Container::Mp4 => "mp4",
        }
    }
}

/// One rendition to make.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RenditionSpec {
    /// For logs, metrics and file names.
    pub name: String,
    /// The box the picture is fitted into (source aspect kept; see
    /// [`super::ladder::output_size`]).
    pub width: u32,
    pub height: u32,
    /// Target (and maximum) bitrate in bits per second; 0 leaves the rate to
    /// `quality` (or libx264's default CRF).
    pub bitrate_bps: u32,
    /// The highest frame rate kept; `None` keeps the source's. Never raised
    /// above the source's.
    pub max_frame_rate: Option<Rational>,
    pub gop: Gop,
    pub h264_profile: H264Profile,
    pub container: Container,
    /// A CRF-style quality (lower is better), with the bitrate as the cap.
    pub quality: Option<u32>,
}

impl RenditionSpec {
    /// The pixels of the box, for sizing and limits.
    pub fn box_pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
}

impl From<Profile> for RenditionSpec {
    /// A v2 profile: its box, bitrate and frame rate (as a ceiling), MPEG-TS,
    /// lpgpu's own GOP and libx264's profile.
    fn from(profile: Profile) -> Self {
        Self {
            name: profile.name.to_string(),
            width: profile.width,
            height: profile.height,
            bitrate_bps: profile.bitrate_bps,
            max_frame_rate: Some(Rational::new(profile.fps as i32, 1)),
            gop: Gop::Default,
            h264_profile: H264Profile::EncoderDefault,
            container: Container::MpegTs,
            quality: None,
        }
    }
}

impl fmt::Display for RenditionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// The renditions of a list of v2 profiles, in order.
pub fn from_profiles(profiles: &[Profile]) -> Vec<RenditionSpec> {
    profiles.iter().copied().map(RenditionSpec::from).collect()
}

/// A clip of the segment (`segment_parameters`): milliseconds from the
/// segment's first picture; pictures and audio outside `[from, to)` are
/// dropped. `to` of 0 means "to the end".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Clip {
    pub from_ms: u64,
    pub to_ms: u64,
}

impl Clip {
    /// Whether a timestamp `offset_ms` after the segment's start is kept.
    pub fn keeps(&self, offset_ms: f64) -> bool {
        offset_ms + 1e-6 >= self.from_ms as f64
            && (self.to_ms == 0 || offset_ms < self.to_ms as f64)
    }
}

/// How one segment is to be handled, beyond its renditions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentOptions {
    /// Keep only part of the segment.
    pub clip: Option<Clip>,
    /// The stream this segment belongs to, so a backend with per-stream
    /// placement (the GPU rig) keeps a stream on one device.
    pub stream: Option<String>,
    /// Set when nobody waits for the result any more: backends stop at the
    /// next picture and return [`super::TranscodeError::Cancelled`].
    pub cancel: Cancel,
    /// When the result is due; a backend that would wait for a device
    /// place past it gives up instead.
    pub deadline: Option<std::time::Instant>,
}

/// A flag that stops a transcode early; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Cancel(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops the work sharing this flag, at its next check.
    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }

    /// `Err(Cancelled)` once cancelled: for `?` in a backend's loops.
    pub fn check(&self) -> Result<(), super::TranscodeError> {
        if self.is_cancelled() {
            Err(super::TranscodeError::Cancelled)
        } else {
            Ok(())
        }
    }
}

impl PartialEq for Cancel {
    /// Two flags are equal when they are the same flag.
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Cancel {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_profile_list;

    #[test]
    fn a_v2_profile_is_an_mpeg_ts_rendition_with_a_frame_rate_ceiling() {
        let p = parse_profile_list("P720p60fps16x9").unwrap()[0];
        let spec = RenditionSpec::from(p);
        assert_eq!(
            (spec.width, spec.height, spec.bitrate_bps),
            (1280, 720, 6_000_000)
        );
        assert_eq!(spec.max_frame_rate, Some(Rational::new(60, 1)));
        assert_eq!(spec.container, Container::MpegTs);
        assert_eq!(spec.gop, Gop::Default);
        assert_eq!(spec.name, "P720p60fps16x9");
    }

    #[test]
    fn profiles_say_what_libx264_is_told() {
        assert_eq!(H264Profile::EncoderDefault.x264_name(), None);
        assert_eq!(H264Profile::ConstrainedHigh.x264_name(), Some("high"));
        assert!(!H264Profile::ConstrainedHigh.allows_b_frames());
        assert!(!H264Profile::Baseline.allows_b_frames());
        assert!(H264Profile::Main.allows_b_frames());
        assert_eq!(Container::Mp4.mime_type(), "video/mp4");
        assert_eq!(Container::MpegTs.muxer(), "mpegts");
    }

    #[test]
    fn a_clip_keeps_from_inclusive_to_exclusive() {
        let clip = Clip {
            from_ms: 500,
            to_ms: 1500,
        };
        assert!(!clip.keeps(499.0));
        assert!(clip.keeps(500.0));
        assert!(clip.keeps(1499.9));
        assert!(!clip.keeps(1500.0));
        let open = Clip {
            from_ms: 1000,
            to_ms: 0,
        };
        assert!(open.keeps(1e9) && !open.keeps(999.0));
    }
}
