//! A `NotifySegment` read as plain values: the teardown form, or a task with
//! its renditions mapped from `VideoProfile`s, its duration, clip and
//! session, checked against what this transcoder offers. Every refusal is a
//! [`TaskError`] whose text is the short, stable error the orchestrator is
//! sent (go-livepeer's wording where it has one). No I/O.

use std::time::Duration;

use crate::pipeline::{Clip, RenditionSpec, VideoCodec};
use crate::proto::{NotifySegment, TaskSegData, VideoProfile};
use crate::protocol::capabilities::{
    self as caps, CapabilitySet, Incompatible, check_bitstring, job_fits,
};
use crate::protocol::limits;
pub use crate::protocol::task_deadline as deadline_for;
use crate::protocol::video_profile::{self, ProfileRefusal};

/// Durations above this are refused (`spec/ot-protocol.md`: up to 5 minutes).
pub const MAX_DURATION_MS: i32 = 300_000;
/// A duration of 0 means this.
pub const DEFAULT_DURATION_MS: i32 = 2_000;

/// What a notification asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Notification {
    /// End this session; nothing is posted.
    Teardown { session: String },
    /// Transcode a segment and post one result.
    Task(Task),
    /// A task that cannot be done: post this error for it.
    Refused { task_id: i64, error: TaskError },
}

/// One segment to transcode.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub task_id: i64,
    /// `auth_token.session_id` (empty when the orchestrator sent none).
    pub session: String,
    pub manifest_id: String,
    pub seq: i64,
    pub url: String,
    pub duration: Duration,
    pub renditions: Vec<RenditionSpec>,
    pub clip: Option<Clip>,
    pub force_session_reinit: bool,
    /// `calc_perceptual_hash`: each rendition's hash goes in the part after it.
    pub perceptual_hash: bool,
}

impl Task {
    /// How long the orchestrator waits for this task's result:
    /// `max(8 s, 4 × duration)`; one task past it evicts the transcoder.
    pub fn deadline(&self) -> Duration {
        deadline_for(self.duration)
    }
}

/// Why a task is refused; the `Display` text goes to the orchestrator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    #[error("invalid duration")]
    InvalidDuration,
    #[error("incompatible segment capabilities")]
    IncompatibleCapabilities(Incompatible),
    #[error("unrecognized profile output format")]
    UnrecognizedFormat,
    #[error("unsupported profile: {0}")]
    UnsupportedProfile(String),
    #[error("no profiles")]
    NoProfiles,
    #[error("perceptual hashes are not supported by this transcoder")]
    PerceptualHash,
    #[error("invalid segment parameters")]
    InvalidClip,
    #[error("missing segment data")]
    MissingSegData,
    /// A list or field past `protocol::limits`.
    #[error("task too large: {0}")]
    TooLarge(String),
}

/// Reads a notification. `offered`/`version` are what this transcoder
/// registered with; a job needing more is refused as go-livepeer does.
pub fn read_notification(
    notify: &NotifySegment,
    offered: &CapabilitySet,
    version: &str,
) -> Notification {
    let task_id = notify.task_id;
    let Some(data) = notify.seg_data.as_ref() else {
        if notify.url.is_empty() {
            // A teardown without a session names nothing to end.
            return Notification::Teardown {
                session: String::new(),
            };
        }
        return Notification::Refused {
            task_id,
            error: TaskError::MissingSegData,
        };
    };
    let session = data
        .auth_token
        .as_ref()
        .map(|t| t.session_id.clone())
        .unwrap_or_default();
    if notify.url.is_empty() {
        return Notification::Teardown { session };
    }
    match read_task(notify, data, session, offered, version) {
        Ok(task) => Notification::Task(task),
        Err(error) => Notification::Refused { task_id, error },
    }
}

fn read_task(
    notify: &NotifySegment,
    data: &TaskSegData,
    session: String,
    offered: &CapabilitySet,
    version: &str,
) -> Result<Task, TaskError> {
    let duration_ms = match data.duration {
        0 => DEFAULT_DURATION_MS,
        d if !(0..=MAX_DURATION_MS).contains(&d) => return Err(TaskError::InvalidDuration),
        d => d,
    };
    if let Some(job) = &data.capabilities {
        check_bitstring(&job.bitstring).map_err(TaskError::TooLarge)?;
        let needed = CapabilitySet::from_bitstring(&job.bitstring);
        let min_version = job.constraints.as_ref().map(|c| c.min_version.as_str());
        job_fits(&needed, min_version, offered, version)
            .map_err(TaskError::IncompatibleCapabilities)?;
    }
    if data.calc_perceptual_hash && !offered.contains(caps::MPEG7_VIDEO_SIGNATURE) {
        return Err(TaskError::PerceptualHash);
    }
    // fullProfiles3, then 2, then 1: exactly one is filled.
    let profiles = [
        &data.full_profiles3,
        &data.full_profiles2,
        &data.full_profiles,
    ]
    .into_iter()
    .find(|list| !list.is_empty())
    .ok_or(TaskError::NoProfiles)?;
    limits::check_renditions(profiles.len()).map_err(TaskError::TooLarge)?;
    let renditions = profiles
        .iter()
        .map(|profile| rendition_of(profile, offered))
        .collect::<Result<Vec<_>, _>>()?;
    let clip = match &data.segment_parameters {
        None => None,
        Some(p) if p.from == 0 && p.to == 0 => None,
        Some(p) if p.to != 0 && p.to <= p.from => return Err(TaskError::InvalidClip),
        Some(p) => Some(Clip {
            from_ms: p.from,
            to_ms: p.to,
        }),
    };
    Ok(Task {
        task_id: notify.task_id,
        session,
        manifest_id: String::from_utf8_lossy(&data.manifest_id).into_owned(),
        seq: data.seq,
        url: notify.url.clone(),
        duration: Duration::from_millis(duration_ms as u64),
        renditions,
        clip,
        force_session_reinit: data.force_session_reinit,
        perceptual_hash: data.calc_perceptual_hash,
    })
}

/// A `VideoProfile` as a rendition this transcoder makes: mapped by
/// [`video_profile::to_rendition`] (both directions live there), and
/// refused in go-livepeer's words when it is no rendition at all, or needs
/// what `offered` (the backend's own capabilities) lacks.
pub fn rendition_of(
    profile: &VideoProfile,
    offered: &CapabilitySet,
) -> Result<RenditionSpec, TaskError> {
    let spec = video_profile::to_rendition(profile).map_err(|refusal| match refusal {
        ProfileRefusal::UnrecognizedFormat => TaskError::UnrecognizedFormat,
        ProfileRefusal::Unsupported(why) => TaskError::UnsupportedProfile(why),
    })?;
    let missing = video_profile::needs(std::slice::from_ref(&spec)).missing_from(offered);
    if !missing.is_empty() {
        let codec_bit = match spec.codec {
            VideoCodec::H264(_) => caps::H264,
            VideoCodec::Hevc => caps::HEVC_ENCODE,
            VideoCodec::Vp8 => caps::VP8_ENCODE,
            VideoCodec::Vp9 => caps::VP9_ENCODE,
        };
        let why = if missing.contains(&codec_bit) {
            format!("{} encoding", spec.codec.name())
        } else {
            format!("needs capabilities {missing:?}")
        };
        return Err(TaskError::UnsupportedProfile(format!(
            "{}: {why}",
            spec.name
        )));
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Container, Gop, H264Profile, Rational};
    use crate::proto::{Capabilities, SegParameters, TaskAuthToken, capabilities, video_profile};
    use crate::protocol::capabilities::{GO_LIVEPEER_VERSION, STORAGE_S3};

    /// The pool sends what this module reads back unchanged.
    #[test]
    fn a_rendition_survives_the_trip_through_a_video_profile() {
        let mut custom =
            RenditionSpec::from(crate::protocol::parse_profile_list("P360p30fps16x9").unwrap()[0]);
        custom.gop = Gop::Millis(2000);
        custom.codec = VideoCodec::H264(H264Profile::Main);
        custom.container = Container::Mp4;
        custom.quality = Some(27);
        custom.max_frame_rate = Some(crate::pipeline::Rational::new(30000, 1001));
        for original in [
            RenditionSpec::from(crate::protocol::parse_profile_list("P240p30fps16x9").unwrap()[0]),
            custom,
        ] {
            let back = rendition_of(
                &crate::protocol::video_profile::to_video_profile(&original),
                &CapabilitySet::lpgpu(),
            )
            .unwrap();
            assert_eq!(back, original);
        }
    }

    fn rendition_of_lpgpu(profile: &VideoProfile) -> Result<RenditionSpec, TaskError> {
        rendition_of(profile, &CapabilitySet::lpgpu())
    }

    fn profile(name: &str, w: i32, h: i32, bitrate: i32) -> VideoProfile {
        VideoProfile {
            name: name.into(),
            width: w,
            height: h,
            bitrate,
            fps: 30,
            ..Default::default()
        }
    }

    fn notify(data: TaskSegData) -> NotifySegment {
        NotifySegment {
            url: "https://orch:8935/stream/abcd1234/3.tempfile".into(),
            seg_data: Some(data),
            task_id: 42,
            profiles: b"invalid".to_vec(),
            orch_id: "offchain".into(),
        }
    }

    fn data() -> TaskSegData {
        TaskSegData {
            manifest_id: b"manifest".to_vec(),
            seq: 3,
            hash: vec![0; 32],
            auth_token: Some(TaskAuthToken {
                token: b"opaque".to_vec(),
                session_id: "abcd1234".into(),
                expiration: 0,
            }),
            full_profiles: vec![profile("P240p30fps16x9", 426, 240, 600_000)],
            ..Default::default()
        }
    }

    fn read(notify: &NotifySegment) -> Notification {
        read_notification(notify, &CapabilitySet::lpgpu(), GO_LIVEPEER_VERSION)
    }

    fn task(notify: &NotifySegment) -> Task {
        match read(notify) {
            Notification::Task(task) => task,
            other => panic!("not a task: {other:?}"),
        }
    }

    fn refusal(notify: &NotifySegment) -> TaskError {
        match read(notify) {
            Notification::Refused { task_id, error } => {
                assert_eq!(task_id, 42);
                error
            }
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_task_carries_session_seq_url_and_renditions() {
        let task = task(&notify(data()));
        assert_eq!(task.task_id, 42);
        assert_eq!(task.session, "abcd1234");
        assert_eq!(task.seq, 3);
        assert_eq!(task.manifest_id, "manifest");
        assert_eq!(task.duration, Duration::from_secs(2));
        assert_eq!(task.deadline(), Duration::from_secs(8));
        assert_eq!(task.renditions.len(), 1);
        let r = &task.renditions[0];
        assert_eq!((r.width, r.height, r.bitrate_bps), (426, 240, 600_000));
        assert_eq!(r.max_frame_rate, Some(Rational::new(30, 1)));
        assert_eq!(r.container, Container::MpegTs);
        assert!(task.clip.is_none() && !task.force_session_reinit);
    }

    #[test]
    fn the_empty_url_is_a_teardown_of_the_session() {
        let mut n = notify(data());
        n.url.clear();
        assert_eq!(
            read(&n),
            Notification::Teardown {
                session: "abcd1234".into()
            }
        );
    }

    #[test]
    fn profiles_are_read_from_3_then_2_then_1() {
        let mut d = data();
        d.full_profiles2 = vec![profile("two", 640, 360, 1_000_000)];
        assert_eq!(task(&notify(d.clone())).renditions[0].name, "two");
        d.full_profiles3 = vec![
            profile("three-a", 1280, 720, 3_000_000),
            profile("three-b", 256, 144, 200_000),
        ];
        let names: Vec<_> = task(&notify(d.clone()))
            .renditions
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["three-a", "three-b"]);
        d.full_profiles.clear();
        d.full_profiles2.clear();
        d.full_profiles3.clear();
        assert_eq!(refusal(&notify(d)), TaskError::NoProfiles);
    }

    #[test]
    fn every_video_profile_field_maps() {
        let p = VideoProfile {
            name: String::new(),
            width: 1000,
            height: 562,
            bitrate: 1_234_567,
            fps: 30000,
            fps_den: 1001,
            format: video_profile::Format::Mp4 as i32,
            profile: video_profile::Profile::H264ConstrainedHigh as i32,
            gop: 1500,
            encoder: 0,
            color_depth: 10,
            chroma_format: 2,
            quality: 27,
        };
        let r = rendition_of(&p, &CapabilitySet::lpgpu()).unwrap();
        assert_eq!(r.name, "net_1000x562_1234567");
        assert_eq!((r.width, r.height, r.bitrate_bps), (1000, 562, 1_234_567));
        assert_eq!(r.max_frame_rate, Some(Rational::new(30000, 1001)));
        assert_eq!(r.container, Container::Mp4);
        assert_eq!(r.codec, VideoCodec::H264(H264Profile::ConstrainedHigh));
        assert_eq!(r.gop, Gop::Millis(1500));
        assert_eq!(r.quality, Some(27));
        // fps 0 keeps the source rate; fpsDen 0 is 1; GOP -1 is intra only.
        let keep = rendition_of_lpgpu(&VideoProfile {
            fps: 0,
            gop: -1,
            ..p.clone()
        })
        .unwrap();
        assert_eq!(keep.max_frame_rate, None);
        assert_eq!(keep.gop, Gop::IntraOnly);
        let den0 = rendition_of_lpgpu(&VideoProfile {
            fps: 24,
            fps_den: 0,
            gop: 0,
            ..p
        })
        .unwrap();
        assert_eq!(den0.max_frame_rate, Some(Rational::new(24, 1)));
        assert_eq!(den0.gop, Gop::Default);
    }

    #[test]
    fn bad_profiles_are_refused_with_stable_texts() {
        let base = profile("p", 640, 360, 1_000_000);
        let bad = |p: VideoProfile| rendition_of(&p, &CapabilitySet::lpgpu()).unwrap_err();
        assert_eq!(
            bad(VideoProfile {
                format: 7,
                ..base.clone()
            })
            .to_string(),
            "unrecognized profile output format"
        );
        for p in [
            VideoProfile {
                encoder: 9,
                ..base.clone()
            },
            VideoProfile {
                width: 0,
                ..base.clone()
            },
            VideoProfile {
                height: -5,
                ..base.clone()
            },
            VideoProfile {
                bitrate: -1,
                ..base.clone()
            },
            VideoProfile {
                gop: -2,
                ..base.clone()
            },
            VideoProfile {
                profile: 9,
                ..base.clone()
            },
            VideoProfile {
                fps: u32::MAX,
                ..base.clone()
            },
        ] {
            let error = bad(p);
            assert!(
                matches!(error, TaskError::UnsupportedProfile(_)),
                "{error:?}"
            );
            assert!(error.to_string().starts_with("unsupported profile: p: "));
        }
    }

    #[test]
    fn durations_follow_the_spec() {
        let with = |duration| {
            let mut d = data();
            d.duration = duration;
            notify(d)
        };
        assert_eq!(task(&with(0)).duration, Duration::from_secs(2));
        assert_eq!(task(&with(300_000)).deadline(), Duration::from_secs(1200));
        assert_eq!(task(&with(1500)).deadline(), Duration::from_secs(8));
        for bad in [-1, 300_001, i32::MIN, i32::MAX] {
            assert_eq!(refusal(&with(bad)), TaskError::InvalidDuration);
            assert_eq!(refusal(&with(bad)).to_string(), "invalid duration");
        }
    }

    #[test]
    fn jobs_needing_more_than_we_offer_are_incompatible() {
        let mut d = data();
        d.capabilities = Some(Capabilities {
            bitstring: CapabilitySet::new([0, 1, 12]).to_bitstring(),
            ..Default::default()
        });
        assert!(matches!(read(&notify(d.clone())), Notification::Task(_)));
        d.capabilities = Some(Capabilities {
            bitstring: CapabilitySet::new([0, 1, STORAGE_S3]).to_bitstring(),
            ..Default::default()
        });
        assert_eq!(
            refusal(&notify(d.clone())).to_string(),
            "incompatible segment capabilities"
        );
        d.capabilities = Some(Capabilities {
            bitstring: vec![1],
            constraints: Some(capabilities::Constraints {
                min_version: "9.0.0".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(matches!(
            refusal(&notify(d)),
            TaskError::IncompatibleCapabilities(Incompatible::Version { .. })
        ));
    }

    #[test]
    fn clips_hashes_and_reinit_are_read() {
        let mut d = data();
        d.segment_parameters = Some(SegParameters {
            from: 500,
            to: 1500,
        });
        d.force_session_reinit = true;
        let t = task(&notify(d.clone()));
        assert_eq!(
            t.clip,
            Some(Clip {
                from_ms: 500,
                to_ms: 1500
            })
        );
        assert!(t.force_session_reinit);
        d.segment_parameters = Some(SegParameters { from: 0, to: 0 });
        assert_eq!(task(&notify(d.clone())).clip, None);
        d.segment_parameters = Some(SegParameters { from: 900, to: 100 });
        assert_eq!(refusal(&notify(d.clone())), TaskError::InvalidClip);
        d.segment_parameters = None;
        d.calc_perceptual_hash = true;
        assert!(task(&notify(d.clone())).perceptual_hash);
        // A transcoder whose FFmpeg has no signature filter refuses them.
        let without: CapabilitySet = CapabilitySet::new(
            CapabilitySet::lpgpu()
                .iter()
                .filter(|&c| c != caps::MPEG7_VIDEO_SIGNATURE),
        );
        match read_notification(&notify(d), &without, GO_LIVEPEER_VERSION) {
            Notification::Refused { error, .. } => assert_eq!(error, TaskError::PerceptualHash),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_task_without_segment_data_is_refused() {
        let mut n = notify(data());
        n.seg_data = None;
        assert_eq!(refusal(&n), TaskError::MissingSegData);
        n.url.clear();
        assert!(matches!(read(&n), Notification::Teardown { .. }));
    }
}
