//! The pool's side of one task on the wire, as plain code: the
//! `NotifySegment` for a segment (its renditions as `VideoProfile`s, the
//! job's capabilities, the session, the duration), the deadline, and what a
//! result upload means — renditions matched to profiles by position, with
//! go-livepeer's checks (one rendition per profile, each at least 25 bytes),
//! or an error text sorted into the input's fault (final) and the member's
//! (retried elsewhere). No I/O.

use std::time::Duration;

use bytes::Bytes;

use crate::pipeline::{Rendition, RenditionSpec, TranscodeError};
use crate::proto::{Capabilities, NotifySegment, TaskAuthToken, TaskSegData, capabilities};
use crate::protocol::capabilities::GO_LIVEPEER_VERSION;
use crate::protocol::results::Part;
use crate::protocol::signature::VideoSignature;
use crate::protocol::video_profile::{needs, to_video_profile};

/// The smallest rendition go-livepeer's orchestrator accepts.
pub const MIN_RENDITION_BYTES: usize = 25;
/// The legacy `profiles` bytes, always this text.
const LEGACY_PROFILES: &[u8] = b"invalid";

/// One task to send.
#[derive(Debug, Clone)]
pub struct TaskRequest<'a> {
    pub task_id: i64,
    /// Where the member GETs the segment.
    pub url: String,
    pub session: &'a str,
    pub manifest_id: &'a str,
    pub seq: i64,
    pub duration: Duration,
    pub specs: &'a [RenditionSpec],
    pub force_session_reinit: bool,
    /// Ask for each rendition's perceptual hash (capability 14).
    pub perceptual_hash: bool,
    /// The orchestrator's address, or `offchain`.
    pub orch_id: &'a str,
}

/// The notification for a task, as go-livepeer's orchestrator fills it.
pub fn notify_segment(task: &TaskRequest<'_>) -> NotifySegment {
    let mut needed = needs(task.specs);
    if task.perceptual_hash {
        needed.insert(crate::protocol::capabilities::MPEG7_VIDEO_SIGNATURE);
    }
    NotifySegment {
        url: task.url.clone(),
        seg_data: Some(TaskSegData {
            manifest_id: task.manifest_id.as_bytes().to_vec(),
            seq: task.seq,
            hash: vec![0; 32],
            profiles: LEGACY_PROFILES.to_vec(),
            duration: i32::try_from(task.duration.as_millis()).unwrap_or(i32::MAX),
            capabilities: Some(Capabilities {
                bitstring: needed.to_bitstring(),
                version: GO_LIVEPEER_VERSION.into(),
                constraints: Some(capabilities::Constraints::default()),
                ..Default::default()
            }),
            auth_token: Some(TaskAuthToken {
                session_id: task.session.to_string(),
                ..Default::default()
            }),
            full_profiles3: task.specs.iter().map(to_video_profile).collect(),
            force_session_reinit: task.force_session_reinit,
            calc_perceptual_hash: task.perceptual_hash,
            ..Default::default()
        }),
        task_id: task.task_id,
        profiles: LEGACY_PROFILES.to_vec(),
        orch_id: task.orch_id.to_string(),
    }
}

/// The teardown of a session: an empty url naming it.
pub fn teardown(session: &str) -> NotifySegment {
    NotifySegment {
        seg_data: Some(TaskSegData {
            auth_token: Some(TaskAuthToken {
                session_id: session.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        profiles: LEGACY_PROFILES.to_vec(),
        ..Default::default()
    }
}

/// Why a member's result does not give the renditions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResultError {
    /// The member says the input is at fault: no other member will do better.
    #[error("{0}")]
    Input(TranscodeError),
    /// The member failed (busy, download, its own error, a malformed
    /// result): another member may succeed.
    #[error("{0}")]
    Member(String),
}

/// An error result's text, sorted: the input's fault (final) or the member's.
/// The texts are go-livepeer's and lpms's, and lpgpu's stable ones.
pub fn read_error_text(text: &str) -> ResultError {
    let text = text.trim();
    let lower = text.to_ascii_lowercase();
    let input = |e| ResultError::Input(e);
    if lower.starts_with("no keyframes in input") {
        return input(TranscodeError::NoKeyframes);
    }
    let undecodable = [
        "segment does not decode",
        "invalid data found when processing input",
        "no video stream",
        "zero byte segment",
    ];
    if undecodable.iter().any(|p| lower.contains(p)) {
        return input(TranscodeError::Undecodable(text.to_string()));
    }
    let refused = [
        "unsupported profile",
        "unrecognized profile output format",
        "invalid duration",
        "invalid segment parameters",
        "no profiles",
    ];
    if refused.iter().any(|p| lower.starts_with(p)) {
        return input(TranscodeError::Unsupported(text.to_string()));
    }
    ResultError::Member(if text.is_empty() {
        "an empty error result".to_string()
    } else {
        text.chars().take(200).collect()
    })
}

/// The renditions of a multipart result: parts matched to `specs` by
/// position, each at least [`MIN_RENDITION_BYTES`]. A part of type
/// `application/octet-stream` is the perceptual hash of the rendition before
/// it, as go-livepeer reads it; with `perceptual_hash` asked, every
/// rendition must have one that is an MPEG-7 signature (else the member is
/// at fault), otherwise hashes are dropped. `size_of`
/// gives the picture size a spec's rendition has, so frames can be
/// recounted from its `Pixels`.
pub fn read_renditions(
    parts: Vec<Part>,
    specs: &[RenditionSpec],
    perceptual_hash: bool,
    size_of: impl Fn(&RenditionSpec) -> (u32, u32),
) -> Result<Vec<Rendition>, ResultError> {
    let mut renditions: Vec<(Part, Option<Bytes>)> = Vec::with_capacity(specs.len());
    for part in parts {
        let is_hash = part
            .header("content-type")
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/octet-stream"));
        if !is_hash {
            renditions.push((part, None));
            continue;
        }
        match renditions.last_mut() {
            Some((_, hash @ None)) => *hash = Some(Bytes::clone(&part.data)),
            Some((_, Some(_))) => {
                return Err(ResultError::Member(
                    "two perceptual hashes for one rendition".into(),
                ));
            }
            None => {
                return Err(ResultError::Member(
                    "a perceptual hash before any rendition".into(),
                ));
            }
        }
    }
    if renditions.len() != specs.len() {
        return Err(ResultError::Member(format!(
            "{} renditions for {} profiles",
            renditions.len(),
            specs.len()
        )));
    }
    renditions
        .into_iter()
        .zip(specs)
        .map(|((part, hash), spec)| {
            if part.data.len() < MIN_RENDITION_BYTES {
                return Err(ResultError::Member(format!(
                    "rendition {} is {} bytes",
                    spec.name,
                    part.data.len()
                )));
            }
            let (width, height) = size_of(spec);
            let picture = u64::from(width) * u64::from(height);
            let pixels = part
                .header("pixels")
                .and_then(|p| p.trim().parse::<u64>().ok())
                .unwrap_or(0);
            let frames = if picture > 0 && pixels % picture == 0 {
                pixels / picture
            } else {
                0
            };
            let perceptual_hash = if perceptual_hash {
                Some(check_hash(hash, spec)?)
            } else {
                None
            };
            Ok(Rendition {
                spec: spec.clone(),
                width,
                height,
                frames,
                encode_seconds: 0.0,
                data: Bytes::clone(&part.data),
                perceptual_hash,
            })
        })
        .collect()
}

/// A member's perceptual hash for `spec`: present, and a video signature.
fn check_hash(hash: Option<Bytes>, spec: &RenditionSpec) -> Result<Bytes, ResultError> {
    let hash = hash.ok_or_else(|| {
        ResultError::Member(format!("no perceptual hash for rendition {}", spec.name))
    })?;
    VideoSignature::parse(&hash)
        .map_err(|e| ResultError::Member(format!("rendition {}: {e}", spec.name)))?;
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> RenditionSpec {
        let profile = crate::protocol::parse_profile_list(name).unwrap()[0];
        RenditionSpec::from(profile)
    }

    #[test]
    fn the_notification_carries_what_go_livepeer_sends() {
        let specs = [spec("P240p30fps16x9")];
        let n = notify_segment(&TaskRequest {
            task_id: 7,
            url: "https://o:8935/stream/ab12cd34/3.tempfile".into(),
            session: "ab12cd34",
            manifest_id: "stream-1",
            seq: 3,
            duration: Duration::from_millis(2000),
            specs: &specs,
            force_session_reinit: false,
            perceptual_hash: false,
            orch_id: "offchain",
        });
        assert_eq!(n.profiles, b"invalid");
        let data = n.seg_data.unwrap();
        assert_eq!(data.hash, [0; 32]);
        assert_eq!(data.duration, 2000);
        assert_eq!(data.auth_token.unwrap().session_id, "ab12cd34");
        assert_eq!(data.full_profiles3.len(), 1);
        assert!(data.full_profiles.is_empty() && data.full_profiles2.is_empty());
        let needed = crate::protocol::capabilities::CapabilitySet::from_bitstring(
            &data.capabilities.unwrap().bitstring,
        );
        assert!(needed.is_subset(&crate::protocol::capabilities::CapabilitySet::lpgpu()));
        let down = teardown("ab12cd34");
        assert!(down.url.is_empty());
    }

    #[test]
    fn error_texts_split_into_the_inputs_fault_and_the_members() {
        assert_eq!(
            read_error_text("No keyframes in input"),
            ResultError::Input(TranscodeError::NoKeyframes)
        );
        assert!(matches!(
            read_error_text("segment does not decode"),
            ResultError::Input(TranscodeError::Undecodable(_))
        ));
        assert!(matches!(
            read_error_text("unsupported profile: x: size 1x1"),
            ResultError::Input(TranscodeError::Unsupported(_))
        ));
        for member in [
            "busy",
            "404 Not Found",
            "download failed: timeout",
            "transcoding failed",
            "",
        ] {
            assert!(
                matches!(read_error_text(member), ResultError::Member(_)),
                "{member}"
            );
        }
    }

    #[test]
    fn parts_match_profiles_by_position_with_go_livepeers_checks() {
        let specs = [spec("P240p30fps16x9"), spec("P144p30fps16x9")];
        let part = |bytes: usize, pixels: &str| Part {
            headers: vec![
                ("content-type".into(), "video/mp2t".into()),
                ("pixels".into(), pixels.into()),
            ],
            data: Bytes::from(vec![0x47; bytes]),
        };
        let hash = Part {
            headers: vec![("content-type".into(), "application/octet-stream".into())],
            data: Bytes::from_static(b"hash"),
        };
        let size = |s: &RenditionSpec| (s.width, s.height);
        let got = read_renditions(
            vec![
                part(100, &(426 * 240 * 60).to_string()),
                hash,
                part(50, "7"),
            ],
            &specs,
            false,
            size,
        )
        .unwrap();
        assert_eq!(got[0].spec.name, "P240p30fps16x9");
        // Not asked for: dropped.
        assert!(got[0].perceptual_hash.is_none());
        assert_eq!(got[0].frames, 60);
        // Pixels that are not whole pictures count no frames.
        assert_eq!(got[1].frames, 0);
        assert!(matches!(
            read_renditions(vec![part(100, "0")], &specs, false, size),
            Err(ResultError::Member(_))
        ));
        assert!(matches!(
            read_renditions(vec![part(100, "0"), part(24, "0")], &specs, false, size),
            Err(ResultError::Member(_))
        ));
    }

    #[test]
    fn asked_for_hashes_follow_their_renditions_and_must_be_signatures() {
        let specs = [spec("P240p30fps16x9"), spec("P144p30fps16x9")];
        let part = |kind: &str, data: Vec<u8>| Part {
            headers: vec![("content-type".into(), kind.into())],
            data: Bytes::from(data),
        };
        let video = || part("video/mp2t", vec![0x47; 100]);
        let signature = crate::protocol::signature::sample(426, 240, 3);
        let hash = || part("application/octet-stream", signature.clone());
        let size = |s: &RenditionSpec| (s.width, s.height);
        let got =
            read_renditions(vec![video(), hash(), video(), hash()], &specs, true, size).unwrap();
        assert_eq!(got[1].perceptual_hash.as_deref(), Some(&signature[..]));
        let member_error = |parts: Vec<Part>| {
            matches!(
                read_renditions(parts, &specs, true, size),
                Err(ResultError::Member(_))
            )
        };
        // Missing, first, twice, or not a signature: the member's fault.
        assert!(member_error(vec![video(), hash(), video()]));
        assert!(member_error(vec![hash(), video(), video(), hash()]));
        assert!(member_error(vec![video(), hash(), hash(), video(), hash()]));
        assert!(member_error(vec![
            video(),
            hash(),
            video(),
            part("application/octet-stream", b"hash".to_vec()),
        ]));
        // The notification asks for them, and needs capability 14.
        let n = notify_segment(&TaskRequest {
            task_id: 1,
            url: "https://o/stream/s/1.tempfile".into(),
            session: "s",
            manifest_id: "m",
            seq: 1,
            duration: Duration::from_secs(2),
            specs: &specs,
            force_session_reinit: false,
            perceptual_hash: true,
            orch_id: "offchain",
        });
        let data = n.seg_data.unwrap();
        assert!(data.calc_perceptual_hash);
        let needs = crate::protocol::capabilities::CapabilitySet::from_bitstring(
            &data.capabilities.unwrap().bitstring,
        );
        assert!(needs.contains(crate::protocol::capabilities::MPEG7_VIDEO_SIGNATURE));
    }
}
