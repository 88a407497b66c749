//! Capabilities of today's orchestrator ↔ transcoder protocol
//! (`spec/ot-protocol.md`): the numbered capability bits, their bitstring
//! encoding (capability *k* is bit `k % 64` of word `k / 64`), the semver
//! `version` and `minVersion` rule, and whether a job fits a transcoder.
//! Plain values only; the wire message is `proto::Capabilities`.

use std::collections::BTreeSet;
use std::fmt;

/// A capability number.
pub type Capability = u32;

pub const H264: Capability = 0;
pub const MPEGTS: Capability = 1;
pub const MP4: Capability = 2;
pub const FRACTIONAL_FRAMERATES: Capability = 3;
pub const STORAGE_DIRECT: Capability = 4;
pub const STORAGE_S3: Capability = 5;
pub const STORAGE_GCS: Capability = 6;
pub const PROFILE_H264_BASELINE: Capability = 7;
pub const PROFILE_H264_MAIN: Capability = 8;
pub const PROFILE_H264_HIGH: Capability = 9;
pub const PROFILE_H264_CONSTRAINED_HIGH: Capability = 10;
pub const GOP: Capability = 11;
pub const AUTH_TOKEN: Capability = 12;
pub const MPEG7_VIDEO_SIGNATURE: Capability = 14;
pub const HEVC_DECODE: Capability = 15;
pub const HEVC_ENCODE: Capability = 16;
pub const VP8_DECODE: Capability = 17;
pub const VP9_DECODE: Capability = 18;
pub const VP8_ENCODE: Capability = 19;
pub const VP9_ENCODE: Capability = 20;
pub const H264_DECODE_444_8BIT: Capability = 21;
pub const H264_DECODE_422_8BIT: Capability = 22;
pub const H264_DECODE_444_10BIT: Capability = 23;
pub const H264_DECODE_422_10BIT: Capability = 24;
pub const H264_DECODE_420_10BIT: Capability = 25;
pub const SEGMENT_SLICING: Capability = 26;

/// The go-livepeer release whose O–T wire lpgpu matches; the default
/// `version` lpgpu reports.
pub const GO_LIVEPEER_VERSION: &str = "0.9.1";

/// What lpgpu's transcoder really does, and nothing more: H.264, HEVC, VP8
/// and VP9 out (libx264, libx265, libvpx, libvpx-vp9; VP8 and VP9 in
/// Matroska), MPEG-TS and MP4 out, fractional frame rates, direct storage
/// (segments fetched from and results posted to the orchestrator), the
/// four H.264 profiles, GOP, auth tokens, HEVC, VP8 and VP9 decode
/// (libavcodec, or NVDEC for HEVC), H.264 4:4:4 and 4:2:2 at 8 bits and
/// 4:2:0, 4:2:2 and 4:4:4 at 10 bits decode (libavcodec: NVDEC hands them
/// to the CPU; renditions are 8-bit 4:2:0), and segment slicing
/// (`segment_parameters`), perceptual hashes (14: FFmpeg's `signature`
/// filter). Not: S3/GCS storage, AI pipelines. Each bit has a task or transcode in the tests that exercises
/// it; a backend offers the subset its build really has
/// ([`crate::pipeline::encoders::software_capabilities`]).
pub const LPGPU_CAPABILITIES: [Capability; 24] = [
    H264,
    MPEGTS,
    MP4,
    FRACTIONAL_FRAMERATES,
    STORAGE_DIRECT,
    PROFILE_H264_BASELINE,
    PROFILE_H264_MAIN,
    PROFILE_H264_HIGH,
    PROFILE_H264_CONSTRAINED_HIGH,
    GOP,
    AUTH_TOKEN,
    MPEG7_VIDEO_SIGNATURE,
    HEVC_DECODE,
    HEVC_ENCODE,
    VP8_DECODE,
    VP9_DECODE,
    VP8_ENCODE,
    VP9_ENCODE,
    H264_DECODE_444_8BIT,
    H264_DECODE_422_8BIT,
    H264_DECODE_444_10BIT,
    H264_DECODE_422_10BIT,
    H264_DECODE_420_10BIT,
    SEGMENT_SLICING,
];

/// Whether a peer's bitstring is within
/// [`limits::MAX_CAPABILITY_WORDS`](super::limits::MAX_CAPABILITY_WORDS).
pub fn check_bitstring(words: &[u64]) -> Result<(), String> {
    let max = super::limits::MAX_CAPABILITY_WORDS;
    if words.len() > max {
        Err(format!(
            "a capability bitstring of {} words (at most {max})",
            words.len()
        ))
    } else {
        Ok(())
    }
}

/// A set of capabilities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapabilitySet(BTreeSet<Capability>);

impl CapabilitySet {
    pub fn new(capabilities: impl IntoIterator<Item = Capability>) -> Self {
        Self(capabilities.into_iter().collect())
    }

    /// Adds one capability.
    pub fn insert(&mut self, capability: Capability) {
        self.0.insert(capability);
    }

    /// lpgpu's own set.
    pub fn lpgpu() -> Self {
        Self::new(LPGPU_CAPABILITIES)
    }

    /// From the wire's bitstring words; words past
    /// [`limits::MAX_CAPABILITY_WORDS`](super::limits::MAX_CAPABILITY_WORDS)
    /// are not read (a peer's bitstring never makes a set larger than
    /// that). [`check_bitstring`] says whether a bitstring is too long.
    pub fn from_bitstring(words: &[u64]) -> Self {
        let words = &words[..words.len().min(super::limits::MAX_CAPABILITY_WORDS)];
        let mut set = BTreeSet::new();
        for (word_index, word) in words.iter().enumerate() {
            for bit in 0..64u32 {
                if word >> bit & 1 == 1 {
                    // Orchestrators send a handful of words; a huge index
                    // saturates instead of wrapping.
                    let k = (word_index as u64 * 64 + u64::from(bit)).min(u64::from(u32::MAX));
                    set.insert(k as Capability);
                }
            }
        }
        Self(set)
    }

    /// The wire's bitstring words (as few as hold the highest capability).
    pub fn to_bitstring(&self) -> Vec<u64> {
        let Some(&highest) = self.0.iter().next_back() else {
            return Vec::new();
        };
        let mut words = vec![0u64; highest as usize / 64 + 1];
        for &k in &self.0 {
            words[k as usize / 64] |= 1 << (k % 64);
        }
        words
    }

    pub fn contains(&self, capability: Capability) -> bool {
        self.0.contains(&capability)
    }

    pub fn is_subset(&self, other: &CapabilitySet) -> bool {
        self.0.is_subset(&other.0)
    }

    /// What `self` has that `other` lacks.
    pub fn missing_from(&self, other: &CapabilitySet) -> Vec<Capability> {
        self.0.difference(&other.0).copied().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = Capability> + '_ {
        self.0.iter().copied()
    }
}

impl fmt::Display for CapabilitySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.0.iter().map(u32::to_string).collect();
        write!(f, "{{{}}}", list.join(","))
    }
}

/// A semantic version `MAJOR.MINOR.PATCH[-pre][+build]` (a leading `v`
/// allowed); comparison ignores build metadata and ranks a pre-release
/// before its release (pre-release identifiers compared as text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    core: (u64, u64, u64),
    pre: Option<String>,
}

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        let text = text.trim();
        let text = text.strip_prefix('v').unwrap_or(text);
        let text = text.split('+').next()?;
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) if !pre.is_empty() => (core, Some(pre.to_string())),
            Some(_) => return None,
            None => (text, None),
        };
        let mut numbers = core.split('.').map(|n| {
            (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .then(|| n.parse::<u64>().ok())
                .flatten()
        });
        let major = numbers.next()??;
        let minor = numbers.next()??;
        let patch = numbers.next()??;
        if numbers.next().is_some() {
            return None;
        }
        Some(Version {
            core: (major, minor, patch),
            pre,
        })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering::*;
        self.core
            .cmp(&other.core)
            .then(match (&self.pre, &other.pre) {
                (None, None) => Equal,
                (None, Some(_)) => Greater,
                (Some(_), None) => Less,
                (Some(a), Some(b)) => a.cmp(b),
            })
    }
}

/// Why a job does not fit a transcoder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Incompatible {
    #[error("capabilities {0:?} are not offered")]
    Missing(Vec<Capability>),
    #[error("version {have:?} is below the required {need:?}")]
    Version { have: String, need: String },
}

/// Whether a job needing `job` (with an optional `min_version`) fits a
/// transcoder offering `offered` at `version`: the job's bits a subset of
/// the transcoder's, and the transcoder's version (a semver; empty or not
/// semver fails) at least the minimum.
pub fn job_fits(
    job: &CapabilitySet,
    min_version: Option<&str>,
    offered: &CapabilitySet,
    version: &str,
) -> Result<(), Incompatible> {
    let missing = job.missing_from(offered);
    if !missing.is_empty() {
        return Err(Incompatible::Missing(missing));
    }
    if let Some(need) = min_version.map(str::trim).filter(|v| !v.is_empty()) {
        let too_low = || Incompatible::Version {
            have: version.to_string(),
            need: need.to_string(),
        };
        let have = Version::parse(version).ok_or_else(too_low)?;
        // An unparsable minimum constrains nothing we can check.
        if let Some(need_version) = Version::parse(need)
            && have < need_version
        {
            return Err(too_low());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_livepeers_default_set_is_its_documented_bitstring() {
        let mut default: Vec<Capability> = (0..=12).collect();
        default.extend([MPEG7_VIDEO_SIGNATURE, SEGMENT_SLICING]);
        let set = CapabilitySet::new(default);
        assert_eq!(set.to_bitstring(), [0x4005FFF]);
        assert_eq!(CapabilitySet::from_bitstring(&[0x4005FFF]), set);
    }

    #[test]
    fn bits_past_the_first_word_land_in_the_next() {
        let set = CapabilitySet::new([0, 63, 64, 130]);
        assert_eq!(set.to_bitstring(), [1 | 1 << 63, 1, 1 << 2]);
        assert_eq!(CapabilitySet::from_bitstring(&set.to_bitstring()), set);
        assert_eq!(CapabilitySet::default().to_bitstring(), Vec::<u64>::new());
        // A peer's endless bitstring is cut and refused, never a huge set.
        let endless = vec![u64::MAX; 100_000];
        assert!(check_bitstring(&endless).is_err());
        assert!(check_bitstring(&[1, 2, 3, 4]).is_ok());
        assert_eq!(CapabilitySet::from_bitstring(&endless).iter().count(), 256);
    }

    #[test]
    fn lpgpu_offers_what_it_does_and_not_object_stores() {
        let ours = CapabilitySet::lpgpu();
        for k in [
            H264,
            MPEGTS,
            MP4,
            AUTH_TOKEN,
            GOP,
            SEGMENT_SLICING,
            HEVC_DECODE,
            HEVC_ENCODE,
            VP8_DECODE,
            VP9_DECODE,
            VP8_ENCODE,
            VP9_ENCODE,
            H264_DECODE_420_10BIT,
            H264_DECODE_422_10BIT,
            H264_DECODE_444_10BIT,
            MPEG7_VIDEO_SIGNATURE,
        ] {
            assert!(ours.contains(k), "{k}");
        }
        for k in [STORAGE_S3, STORAGE_GCS] {
            assert!(!ours.contains(k), "{k}");
        }
    }

    #[test]
    fn a_job_fits_when_its_bits_are_ours_and_the_version_is_new_enough() {
        let ours = CapabilitySet::lpgpu();
        let job = CapabilitySet::new([H264, MPEGTS, AUTH_TOKEN]);
        assert_eq!(job_fits(&job, None, &ours, "0.9.1"), Ok(()));
        assert_eq!(job_fits(&job, Some("0.9.0"), &ours, "0.9.1"), Ok(()));
        assert_eq!(job_fits(&job, Some(""), &ours, ""), Ok(()));
        assert!(matches!(
            job_fits(&job, Some("0.9.2"), &ours, "0.9.1"),
            Err(Incompatible::Version { .. })
        ));
        // An empty or non-semver version gets no work that names a minimum.
        assert!(job_fits(&job, Some("0.1.0"), &ours, "").is_err());
        assert!(job_fits(&job, Some("0.1.0"), &ours, "lpgpu").is_err());
        let to_s3 = CapabilitySet::new([H264, STORAGE_S3]);
        assert_eq!(
            job_fits(&to_s3, None, &ours, "0.9.1"),
            Err(Incompatible::Missing(vec![STORAGE_S3]))
        );
    }

    #[test]
    fn versions_compare_as_semver() {
        let v = |t| Version::parse(t).unwrap();
        assert!(v("0.9.1") > v("0.9.0"));
        assert!(v("0.10.0") > v("0.9.9"));
        assert!(v("1.0.0-rc1") < v("1.0.0"));
        assert_eq!(v("v0.9.1"), v("0.9.1+build.5"));
        for bad in ["", "0.9", "0.9.1.2", "a.b.c", "0.9.-1", "1.0.0-"] {
            assert!(Version::parse(bad).is_none(), "{bad:?}");
        }
    }
}
