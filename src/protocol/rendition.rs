//! What one output rendition must be, as plain values: the box it fits in,
//! its bitrate or quality, frame-rate ceiling, keyframe interval, codec
//! (with its profile) and container. Every wire maps onto it: a 2018 job's
//! named [`Profile`]s, and the arbitrary `VideoProfile`s of today's wires
//! ([`super::video_profile`], both directions). Backends read nothing else;
//! which codecs a backend makes is its own [`capabilities`].
//!
//! [`capabilities`]: super::capabilities

use std::fmt;

use super::Profile;

/// A frame rate or time base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rational {
    pub num: i32,
    pub den: i32,
}

impl Rational {
    pub const fn new(num: i32, den: i32) -> Self {
        Self { num, den }
    }

    pub fn as_f64(&self) -> f64 {
        if self.den == 0 {
            0.0
        } else {
            f64::from(self.num) / f64::from(self.den)
        }
    }
}

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

/// The video codec of a rendition, with the codec's own profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    H264(H264Profile),
    Hevc,
    Vp8,
    Vp9,
}

impl Default for VideoCodec {
    fn default() -> Self {
        VideoCodec::H264(H264Profile::EncoderDefault)
    }
}

impl VideoCodec {
    /// The name go-livepeer's `-transcodingOptions` and logs use.
    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::H264(_) => "H.264",
            VideoCodec::Hevc => "HEVC",
            VideoCodec::Vp8 => "VP8",
            VideoCodec::Vp9 => "VP9",
        }
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
    /// Where LPMS writes VP8 and VP9.
    Matroska,
    WebM,
}

impl Container {
    /// The MIME type of a rendition in this container (the O–T wire's
    /// spelling; each wire renders its own).
    pub fn mime_type(self) -> &'static str {
        match self {
            Container::MpegTs => "video/mp2t",
            Container::Mp4 => "video/mp4",
            Container::Matroska => "video/x-matroska",
            Container::WebM => "video/webm",
        }
    }

    /// The libavformat muxer.
    pub fn muxer(self) -> &'static str {
        match self {
            Container::MpegTs => "mpegts",
            Container::Mp4 => "mp4",
            Container::Matroska => "matroska",
            Container::WebM => "webm",
        }
    }

    /// File name extension.
    pub fn extension(self) -> &'static str {
        match self {
            Container::MpegTs => "ts",
            Container::Mp4 => "mp4",
            Container::Matroska => "mkv",
            Container::WebM => "webm",
        }
    }

    /// Whether the container can carry the codec: MPEG-TS carries H.264
    /// and HEVC, MP4 those and VP9, WebM only VP8 and VP9, Matroska all.
    pub fn carries(self, codec: VideoCodec) -> bool {
        use VideoCodec::*;
        match self {
            Container::MpegTs => matches!(codec, H264(_) | Hevc),
            Container::Mp4 => matches!(codec, H264(_) | Hevc | Vp9),
            Container::WebM => matches!(codec, Vp8 | Vp9),
            Container::Matroska => true,
        }
    }

    /// Whether the muxer writes to a seekable output (to finish its
    /// index); MPEG-TS is written straight through.
    pub fn seeks(self) -> bool {
        !matches!(self, Container::MpegTs)
    }
}

/// One rendition to make.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RenditionSpec {
    /// For logs, metrics and file names.
    pub name: String,
    /// The box the picture is fitted into (source aspect kept; see
    /// [`crate::pipeline::ladder::output_size`]).
    pub width: u32,
    pub height: u32,
    /// Target (and maximum) bitrate in bits per second; 0 leaves the rate to
    /// `quality` (or libx264's default CRF).
    pub bitrate_bps: u32,
    /// The highest frame rate kept; `None` keeps the source's. Never raised
    /// above the source's.
    pub max_frame_rate: Option<Rational>,
    pub gop: Gop,
    pub codec: VideoCodec,
    pub container: Container,
    /// A CRF-style quality (lower is better), with the bitrate as the cap.
    pub quality: Option<u32>,
}

impl RenditionSpec {
    /// The name as a file name: anything but ASCII letters, digits, `-`,
    /// `_` and `.` becomes `_`, and no leading dots (a profile's name comes
    /// from a file or a peer).
    pub fn file_stem(&self) -> String {
        let stem: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        match stem.trim_start_matches('.') {
            "" => "rendition".to_string(),
            stem => stem.to_string(),
        }
    }

    /// The pixels of the box, for sizing and limits.
    pub fn box_pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
}

impl From<Profile> for RenditionSpec {
    /// A v2 profile: its box, bitrate and frame rate (as a ceiling), H.264
    /// with the encoder's profile in MPEG-TS, lpgpu's own GOP.
    fn from(profile: Profile) -> Self {
        Self {
            name: profile.name.to_string(),
            width: profile.width,
            height: profile.height,
            bitrate_bps: profile.bitrate_bps,
            max_frame_rate: Some(Rational::new(profile.fps as i32, 1)),
            gop: Gop::Default,
            codec: VideoCodec::default(),
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
        assert_eq!(spec.codec, VideoCodec::H264(H264Profile::EncoderDefault));
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
    fn containers_carry_the_codecs_lpms_puts_in_them() {
        let h264 = VideoCodec::default();
        assert!(Container::MpegTs.carries(h264) && Container::MpegTs.carries(VideoCodec::Hevc));
        assert!(!Container::MpegTs.carries(VideoCodec::Vp9));
        assert!(Container::WebM.carries(VideoCodec::Vp8) && !Container::WebM.carries(h264));
        assert!(Container::Matroska.carries(VideoCodec::Vp8));
        assert!(
            Container::Mp4.carries(VideoCodec::Vp9) && !Container::Mp4.carries(VideoCodec::Vp8)
        );
        assert!(!Container::MpegTs.seeks() && Container::Matroska.seeks());
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
