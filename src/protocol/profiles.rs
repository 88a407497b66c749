//! The nine video profiles of the protocol and the on-chain `transcodingOptions`
//! encoding of a job's profile list.

use std::fmt;
use std::str::FromStr;

use crate::eth::keccak256;

/// A rung of the ladder: a named box, bitrate and frame rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Profile {
    pub name: &'static str,
    pub bitrate_bps: u32,
    pub fps: u32,
    pub width: u32,
    pub height: u32,
    /// Display aspect, as (width, height) of the ratio.
    pub aspect: (u32, u32),
}

/// Every profile the protocol knows, in `spec/wire.md`'s order.
pub const PROFILES: [Profile; 9] = [
    profile("P720p60fps16x9", 6_000_000, 60, 1280, 720, (16, 9)),
    profile("P720p30fps16x9", 4_000_000, 30, 1280, 720, (16, 9)),
    profile("P720p30fps4x3", 3_500_000, 30, 960, 720, (4, 3)),
    profile("P576p30fps16x9", 1_500_000, 30, 1024, 576, (16, 9)),
    profile("P360p30fps16x9", 1_200_000, 30, 640, 360, (16, 9)),
    profile("P360p30fps4x3", 1_000_000, 30, 480, 360, (4, 3)),
    profile("P240p30fps16x9", 600_000, 30, 426, 240, (16, 9)),
    profile("P240p30fps4x3", 600_000, 30, 320, 240, (4, 3)),
    profile("P144p30fps16x9", 400_000, 30, 256, 144, (16, 9)),
];

const fn profile(
    name: &'static str,
    bitrate_bps: u32,
    fps: u32,
    width: u32,
    height: u32,
    aspect: (u32, u32),
) -> Profile {
    Profile {
        name,
        bitrate_bps,
        fps,
        width,
        height,
        aspect,
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum ProfileError {
    #[error("unknown profile {0:?} (known: {known})", known = known_names())]
    UnknownName(String),
    #[error("unknown profile id {0:?} in transcodingOptions")]
    UnknownId(String),
    #[error("transcodingOptions length {0} is not a multiple of 8 hex characters")]
    BadLength(usize),
    #[error("a job needs at least one profile")]
    Empty,
    #[error("profile {0} is listed twice")]
    Duplicate(&'static str),
}

fn known_names() -> String {
    PROFILES
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Profile {
    /// The first 4 bytes of keccak256(name), as 8 lowercase hex characters.
    pub fn id(&self) -> String {
        hex::encode(&keccak256(self.name.as_bytes())[..4])
    }

    pub fn by_name(name: &str) -> Result<Profile, ProfileError> {
        PROFILES
            .iter()
            .find(|p| p.name == name)
            .copied()
            .ok_or_else(|| ProfileError::UnknownName(name.to_string()))
    }

    pub fn by_id(id: &str) -> Result<Profile, ProfileError> {
        PROFILES
            .iter()
            .find(|p| p.id() == id)
            .copied()
            .ok_or_else(|| ProfileError::UnknownId(id.to_string()))
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl FromStr for Profile {
    type Err = ProfileError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Profile::by_name(s)
    }
}

/// Parses a comma-separated profile list (`P720p30fps16x9,P360p30fps16x9`).
/// Spaces around names are ignored; empty lists and repeats are refused.
pub fn parse_profile_list(list: &str) -> Result<Vec<Profile>, ProfileError> {
    let mut profiles = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let profile = Profile::by_name(name)?;
        if profiles.contains(&profile) {
            return Err(ProfileError::Duplicate(profile.name));
        }
        profiles.push(profile);
    }
    if profiles.is_empty() {
        return Err(ProfileError::Empty);
    }
    Ok(profiles)
}

/// The on-chain `transcodingOptions` of a profile set: profile ids sorted by
/// profile name, descending, concatenated. Its order is the job's profile order.
pub fn encode_transcoding_options(profiles: &[Profile]) -> String {
    let mut sorted = profiles.to_vec();
    sorted.sort_by(|a, b| b.name.cmp(a.name));
    sorted.iter().map(Profile::id).collect()
}

/// Splits `transcodingOptions` into 8-character ids, keeping their order.
pub fn parse_transcoding_options(options: &str) -> Result<Vec<Profile>, ProfileError> {
    if options.is_empty() {
        return Err(ProfileError::Empty);
    }
    if !options.len().is_multiple_of(8) || !options.is_ascii() {
        return Err(ProfileError::BadLength(options.len()));
    }
    let mut profiles = Vec::with_capacity(options.len() / 8);
    for chunk in options.as_bytes().chunks(8) {
        let id = std::str::from_utf8(chunk).map_err(|_| ProfileError::BadLength(options.len()))?;
        let profile = Profile::by_id(id)?;
        if profiles.contains(&profile) {
            return Err(ProfileError::Duplicate(profile.name));
        }
        profiles.push(profile);
    }
    Ok(profiles)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_vectors::vectors;

    #[test]
    fn every_profile_matches_the_vectors() {
        let table = vectors()["profiles"].as_object().unwrap().clone();
        assert_eq!(table.len(), PROFILES.len());
        for (name, v) in table {
            let p = Profile::by_name(&name).unwrap();
            assert_eq!(p.id(), v["id"].as_str().unwrap(), "{name}");
            assert_eq!(
                format!("{}k", p.bitrate_bps / 1000),
                v["bitrate"].as_str().unwrap()
            );
            assert_eq!(u64::from(p.fps), v["fps"].as_u64().unwrap());
            assert_eq!(
                format!("{}x{}", p.width, p.height),
                v["resolution"].as_str().unwrap()
            );
            assert_eq!(
                format!("{}:{}", p.aspect.0, p.aspect.1),
                v["aspect"].as_str().unwrap()
            );
            assert_eq!(Profile::by_id(&p.id()).unwrap(), p);
        }
    }

    #[test]
    fn transcoding_options_match_the_vectors() {
        for (list, encoded) in vectors()["transcoding_options"].as_object().unwrap() {
            let profiles = if list == "all nine" {
                PROFILES.to_vec()
            } else {
                parse_profile_list(list).unwrap()
            };
            let encoded = encoded.as_str().unwrap();
            assert_eq!(encode_transcoding_options(&profiles), encoded, "{list}");
            let parsed = parse_transcoding_options(encoded).unwrap();
            assert_eq!(encode_transcoding_options(&parsed), encoded);
        }
    }

    #[test]
    fn parsing_keeps_chunk_order() {
        let parsed = parse_transcoding_options("93c717e7c0a6517a").unwrap();
        assert_eq!(
            parsed.iter().map(|p| p.name).collect::<Vec<_>>(),
            ["P360p30fps16x9", "P240p30fps16x9"]
        );
        let reversed = parse_transcoding_options("c0a6517a93c717e7").unwrap();
        assert_eq!(reversed[0].name, "P240p30fps16x9");
    }

    #[test]
    fn bad_options_and_lists_are_typed_errors() {
        assert_eq!(
            parse_transcoding_options("93c717e"),
            Err(ProfileError::BadLength(7))
        );
        assert_eq!(parse_transcoding_options(""), Err(ProfileError::Empty));
        assert_eq!(
            parse_transcoding_options("deadbeef"),
            Err(ProfileError::UnknownId("deadbeef".into()))
        );
        assert_eq!(
            parse_transcoding_options("93c717e793c717e7"),
            Err(ProfileError::Duplicate("P360p30fps16x9"))
        );
        assert_eq!(
            parse_transcoding_options("93c717é7c"),
            Err(ProfileError::BadLength(10))
        );
        assert_eq!(parse_profile_list(" , "), Err(ProfileError::Empty));
        assert_eq!(
            parse_profile_list("P999p"),
            Err(ProfileError::UnknownName("P999p".into()))
        );
    }
}
