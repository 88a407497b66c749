//! Stream ids: a job's `streamId` is a 64-hex-character manifest id followed by
//! the source profile name; each rendition's is the manifest id followed by its
//! profile name.

use std::collections::HashMap;
use std::fmt;

use rand::RngCore;

use super::Profile;

/// 32 random bytes naming one broadcast; written as 64 lowercase hex characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ManifestId([u8; 32]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StreamIdError {
    #[error("a stream id starts with 64 lowercase hex characters (the manifest id)")]
    BadManifestId,
}

impl ManifestId {
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The manifest id at the start of a stream id.
    pub fn of_stream_id(stream_id: &str) -> Result<Self, StreamIdError> {
        let prefix = stream_id.get(..64).ok_or(StreamIdError::BadManifestId)?;
        if !prefix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(StreamIdError::BadManifestId);
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(prefix, &mut bytes).map_err(|_| StreamIdError::BadManifestId)?;
        Ok(Self(bytes))
    }

    pub fn stream_id(&self, profile: &Profile) -> String {
        format!("{self}{}", profile.name)
    }
}

impl fmt::Display for ManifestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// `TranscoderInfo.streamIds`: rendition stream id → profile name.
pub fn rendition_stream_ids(
    job_stream_id: &str,
    profiles: &[Profile],
) -> Result<HashMap<String, String>, StreamIdError> {
    let manifest = ManifestId::of_stream_id(job_stream_id)?;
    Ok(profiles
        .iter()
        .map(|p| (manifest.stream_id(p), p.name.to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_vectors::vectors;

    #[test]
    fn stream_ids_match_the_vectors() {
        let v = &vectors()["stream_ids"];
        let job = v["job_stream_id"].as_str().unwrap();
        let manifest = ManifestId::of_stream_id(job).unwrap();
        assert_eq!(manifest.to_string(), v["manifest_id"].as_str().unwrap());
        assert_eq!(
            manifest.stream_id(&Profile::by_name("P720p30fps16x9").unwrap()),
            job
        );
        let profiles = [
            Profile::by_name("P360p30fps16x9").unwrap(),
            Profile::by_name("P240p30fps16x9").unwrap(),
        ];
        let ids = rendition_stream_ids(job, &profiles).unwrap();
        assert_eq!(ids.len(), 2);
        for p in profiles {
            let id = v[p.name].as_str().unwrap();
            assert_eq!(ids[id], p.name);
        }
    }

    #[test]
    fn bad_stream_ids_are_refused() {
        assert_eq!(
            ManifestId::of_stream_id("abc"),
            Err(StreamIdError::BadManifestId)
        );
        let upper = format!("{}P720p30fps16x9", "AB".repeat(32));
        assert_eq!(
            ManifestId::of_stream_id(&upper),
            Err(StreamIdError::BadManifestId)
        );
        let multibyte = format!("{}é", "a".repeat(63));
        assert_eq!(
            ManifestId::of_stream_id(&multibyte),
            Err(StreamIdError::BadManifestId)
        );
        assert_ne!(ManifestId::random(), ManifestId::random());
    }
}
