//! Today's go-livepeer broadcaster ↔ orchestrator wire (`spec/bo-protocol.md`)
//! over plain values: auth tokens (HMAC-SHA256 over the session id and the
//! minimal big-endian expiration), the preimage that `SegData.sig` signs, the
//! `Livepeer-Payment` and `Livepeer-Segment` headers, and the orchestrator's
//! checks 1–9 in go-livepeer's order, each refusal with go-livepeer's exact
//! status and body. No I/O: keys, the clock and the capabilities come from
//! the caller. The 2018 wire's counterparts are in `protocol/headers.rs`.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::StatusCode;
use prost::Message;
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::capabilities::{self as caps, CapabilitySet, Incompatible};
use crate::eth::keccak256;
use crate::proto::{
    Capabilities, Payment, TaskAuthToken, TaskSegData, VideoProfile, video_profile,
};

/// A session's token is good for this long (go-livepeer's 30 min).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// `SegData.duration` above this many ms is refused.
pub const MAX_DURATION_MS: i32 = 300_000;
/// `SegData.duration` 0 means this.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(2);
/// Segments of one session waiting behind the one being transcoded; one
/// more fails with `OrchestratorBusy`.
pub const SESSION_QUEUE: usize = 4;
/// Renditions kept per session and profile (go-livepeer's ring of 12).
pub const RENDITIONS_KEPT: u64 = 12;
/// The body is a URL the orchestrator downloads the segment from.
pub const URI_CONTENT_TYPE: &str = "application/vnd+livepeer.uri";
/// The largest URL body read (a URL, not a segment).
pub const MAX_URI_BYTES: usize = 4096;
/// A URI body's download: 4 s per request, 8 s in all (go-livepeer's).
pub const URI_GET_TIMEOUT: Duration = Duration::from_secs(4);
pub const URI_TOTAL_TIMEOUT: Duration = Duration::from_secs(8);
/// The largest segment go-livepeer reads (check 14); lpgpu's own
/// `--max-segment-bytes` is usually smaller.
pub const MAX_BODY_BYTES: u64 = 300_000_000;
pub const SEGMENT_HEADER: &str = "livepeer-segment";
pub const PAYMENT_HEADER: &str = "livepeer-payment";
/// The most bytes of a base64 header value decoded: a `SegData` with every
/// profile a broadcaster could want is a few KiB.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// The most renditions one segment may ask for.
pub const MAX_RENDITIONS: usize = 16;

/// `OrchestratorInfo.address` and `OrchestratorRequest.address` offchain.
pub const OFFCHAIN_ADDRESS: [u8; 20] = [0; 20];

/// Why the orchestrator refuses a `/segment` request or a session, with
/// go-livepeer's status and body (the body gets a `\n` when sent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("base64 decode error: {0}")]
    PaymentBase64(String),
    #[error("protobuf unmarshal error: {0}")]
    PaymentProtobuf(String),
    #[error("ErrorSegEncoding")]
    SegmentEncoding,
    #[error("{0}")]
    SegmentProtobuf(String),
    #[error("unrecognized profile output format")]
    UnrecognizedFormat,
    #[error("unrecognized encoder profile")]
    UnrecognizedEncoderProfile,
    #[error("unrecognized video codec")]
    UnrecognizedCodec,
    #[error("invalid duration")]
    InvalidDuration,
    /// Check 5: `SegData.sig` is not `Payment.sender`'s.
    #[error("ErrSegSig")]
    SegmentSignature,
    /// lpgpu's bound: more renditions than [`MAX_RENDITIONS`].
    #[error("Too many outputs")]
    TooManyRenditions,
    #[error("incompatible capabilities")]
    IncompatibleCapabilities,
    #[error("missing auth token")]
    MissingAuthToken,
    #[error("invalid auth token")]
    InvalidAuthToken,
    #[error("expired auth token")]
    ExpiredAuthToken,
    #[error("OrchestratorCapped")]
    Capped,
    /// Check 14: the body is over the limit.
    #[error("Internal Server Error")]
    BodyTooLarge,
    /// Check 14: the body could not be read (cut off, too slow).
    #[error("Internal Server Error")]
    BodyRead,
    /// Check 15: a URI body that does not download.
    #[error("BadRequest")]
    BadUri,
    #[error("Forbidden")]
    HashMismatch,
    /// Check 12: the payment's error, in go-livepeer's words; check 13:
    /// `Insufficient balance`.
    #[error("{0}")]
    Payment(String),
    /// Check 11: the chain could not be read to judge the payment.
    #[error("Internal Server Error")]
    PaymentUnavailable,
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        use Refusal::*;
        match self {
            PaymentBase64(_) | PaymentProtobuf(_) => StatusCode::PAYMENT_REQUIRED,
            BodyTooLarge | BodyRead | PaymentUnavailable => StatusCode::INTERNAL_SERVER_ERROR,
            BadUri | Payment(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::FORBIDDEN,
        }
    }

    /// A stable name for metrics and logs.
    pub fn code(&self) -> &'static str {
        use Refusal::*;
        match self {
            PaymentBase64(_) | PaymentProtobuf(_) => "bad_payment_header",
            SegmentEncoding | SegmentProtobuf(_) => "bad_segment_header",
            UnrecognizedFormat | UnrecognizedEncoderProfile | UnrecognizedCodec => {
                "unsupported_profile"
            }
            InvalidDuration => "bad_segment_header",
            TooManyRenditions => "unsupported_profile",
            IncompatibleCapabilities => "incompatible_capabilities",
            MissingAuthToken => "missing_auth_token",
            InvalidAuthToken => "bad_auth_token",
            ExpiredAuthToken => "auth_token_expired",
            Capped => "capped",
            SegmentSignature => "bad_segment_signature",
            BodyTooLarge => "body_too_large",
            BodyRead => "bad_request_body",
            BadUri => "bad_segment_uri",
            HashMismatch => "hash_mismatch",
            Payment(_) => "payment_refused",
            PaymentUnavailable => "chain_unavailable",
        }
    }
}

/// `big.Int.Bytes()` of `n`'s magnitude: no leading zeros, empty for 0.
pub fn minimal_be(n: u64) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes[first..].to_vec()
}

/// The orchestrator's auth tokens: `HMAC-SHA256(key, session_id ‖
/// minimal_be(expiration))`. The key and the session ids come from the
/// OS's CSPRNG (go-livepeer draws both from a non-cryptographic PRNG).
pub struct AuthTokens {
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for AuthTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthTokens(..)")
    }
}

impl AuthTokens {
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            key: Zeroizing::new(key),
        }
    }

    /// A fresh key: tokens die with the process, as go-livepeer's do.
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self::new(key)
    }

    fn mac(&self, session_id: &str, expiration: i64) -> Hmac<Sha256> {
        #[allow(
            clippy::expect_used,
            reason = "HMAC takes a key of any length: a 32-byte key cannot be refused"
        )]
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.key.as_ref()).expect("HMAC takes any key length");
        mac.update(session_id.as_bytes());
        mac.update(&minimal_be(expiration.unsigned_abs()));
        mac
    }

    pub fn token(&self, session_id: &str, expiration: i64) -> [u8; 32] {
        self.mac(session_id, expiration)
            .finalize()
            .into_bytes()
            .into()
    }

    /// A new session: 128 random bits as 32 lowercase hex digits (go-livepeer:
    /// 32 bits), good for [`TOKEN_LIFETIME`] from `now_unix`.
    pub fn mint(&self, now_unix: i64) -> TaskAuthToken {
        let mut id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let session_id = hex::encode(id);
        let expiration = now_unix.saturating_add(TOKEN_LIFETIME.as_secs() as i64);
        TaskAuthToken {
            token: self.token(&session_id, expiration).to_vec(),
            session_id,
            expiration,
        }
    }

    /// Whether `token` is this key's for its session and expiration (in
    /// constant time; the expiration is not judged here).
    pub fn is_ours(&self, token: &TaskAuthToken) -> bool {
        self.mac(&token.session_id, token.expiration)
            .verify_slice(&token.token)
            .is_ok()
    }

    /// Checks 7–9: present, ours, not expired at `now_unix`.
    pub fn check<'t>(
        &self,
        token: Option<&'t TaskAuthToken>,
        now_unix: i64,
    ) -> Result<&'t TaskAuthToken, Refusal> {
        let token = token.ok_or(Refusal::MissingAuthToken)?;
        if !self.is_ours(token) {
            return Err(Refusal::InvalidAuthToken);
        }
        if now_unix > token.expiration {
            return Err(Refusal::ExpiredAuthToken);
        }
        Ok(token)
    }
}

/// The 4-byte tag of a rendition name in the signed preimage: lowercase
/// hex of `keccak256(name)[0..4]`.
pub fn profile_tag(name: &str) -> String {
    hex::encode(&keccak256(name.as_bytes())[..4])
}

/// What `SegData.sig` signs: `manifestId ‖ LeftPad32(minimal_be(seq)) ‖
/// hash ‖ profile_tag(name)…`.
pub fn segment_preimage(manifest_id: &[u8], seq: i64, hash: &[u8], names: &[String]) -> Vec<u8> {
    let mut preimage = Vec::with_capacity(manifest_id.len() + 64 + 8 * names.len());
    preimage.extend_from_slice(manifest_id);
    let seq = minimal_be(seq.unsigned_abs());
    preimage.extend(std::iter::repeat_n(0u8, 32 - seq.len()));
    preimage.extend_from_slice(&seq);
    preimage.extend_from_slice(hash);
    for name in names {
        preimage.extend_from_slice(profile_tag(name).as_bytes());
    }
    preimage
}

/// `TranscodeData.sig`: `SignHash32(keccak256(keccak256(r₀) ‖ keccak256(r₁) ‖ …))`
/// over the renditions' bytes, which is `Sign` of the concatenated hashes.
pub fn rendition_signature<'r>(
    key: &crate::eth::PrivateKey,
    renditions: impl IntoIterator<Item = &'r [u8]>,
) -> Vec<u8> {
    let hashes: Vec<u8> = renditions.into_iter().flat_map(keccak256).collect();
    key.sign(&hashes).to_vec()
}

/// What a rendition's perceptual hash is served as, after the rendition's
/// own name (go-livepeer's `perceptual_hash_url` = url + this).
pub const PHASH_SUFFIX: &str = ".phash";

/// A `/segment` request's headers, parsed and checked (1–4).
#[derive(Debug, Clone)]
pub struct SegmentRequest {
    pub segment: TaskSegData,
    pub payment: Payment,
    /// The renditions asked for: `fullProfiles3`, else 2, else 1.
    pub profiles: Vec<VideoProfile>,
    pub duration: Duration,
}

impl SegmentRequest {
    /// The rendition names as the orchestrator labels them (nameless:
    /// `net_<w>x<h>_<bitrate>`).
    pub fn names(&self) -> Vec<String> {
        self.profiles
            .iter()
            .map(super::video_profile::label)
            .collect()
    }
}

fn base64_decode(value: &[u8]) -> Result<Vec<u8>, String> {
    if value.len() > MAX_HEADER_BYTES * 4 / 3 + 4 {
        return Err(format!(
            "the value is longer than {} bytes",
            MAX_HEADER_BYTES * 4 / 3 + 4
        ));
    }
    base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|e| e.to_string())
}

/// Checks 1–4 in go-livepeer's order: the payment header (absent or empty
/// is an empty `Payment`), the segment header, its profiles, its duration.
pub fn parse_headers(
    payment: Option<&[u8]>,
    segment: Option<&[u8]>,
) -> Result<SegmentRequest, Refusal> {
    let payment = base64_decode(payment.unwrap_or_default()).map_err(Refusal::PaymentBase64)?;
    let payment = Payment::decode(payment.as_slice())
        .map_err(|e| Refusal::PaymentProtobuf(go_proto_error(&e)))?;
    let segment =
        base64_decode(segment.unwrap_or_default()).map_err(|_| Refusal::SegmentEncoding)?;
    let segment = TaskSegData::decode(segment.as_slice())
        .map_err(|e| Refusal::SegmentProtobuf(go_proto_error(&e)))?;
    let profiles = if !segment.full_profiles3.is_empty() {
        segment.full_profiles3.clone()
    } else if !segment.full_profiles2.is_empty() {
        segment.full_profiles2.clone()
    } else {
        segment.full_profiles.clone()
    };
    for profile in &profiles {
        check_profile(profile)?;
    }
    if profiles.len() > MAX_RENDITIONS {
        return Err(Refusal::TooManyRenditions);
    }
    let duration = match segment.duration {
        ms if !(0..=MAX_DURATION_MS).contains(&ms) => return Err(Refusal::InvalidDuration),
        0 => DEFAULT_DURATION,
        ms => Duration::from_millis(ms.unsigned_abs().into()),
    };
    Ok(SegmentRequest {
        segment,
        payment,
        profiles,
        duration,
    })
}

/// go-livepeer's words for a message that is not protobuf (prost's own
/// text goes to the log).
fn go_proto_error(error: &prost::DecodeError) -> String {
    tracing::debug!("protobuf decode: {error}");
    "proto: cannot parse invalid wire-format data".to_string()
}

/// A profile's enums as go-livepeer checks them: format, then encoder
/// profile, then codec.
fn check_profile(profile: &VideoProfile) -> Result<(), Refusal> {
    video_profile::Format::try_from(profile.format).map_err(|_| Refusal::UnrecognizedFormat)?;
    video_profile::Profile::try_from(profile.profile)
        .map_err(|_| Refusal::UnrecognizedEncoderProfile)?;
    video_profile::VideoCodec::try_from(profile.encoder).map_err(|_| Refusal::UnrecognizedCodec)?;
    Ok(())
}

/// Check 6: the job's capabilities within `offered`, the job's minimum
/// version at most `version`. A request without capabilities is a legacy
/// H.264 job, which every lpgpu node does.
pub fn check_capabilities(
    job: Option<&Capabilities>,
    offered: &CapabilitySet,
    version: &str,
) -> Result<(), Refusal> {
    let Some(job) = job else {
        return Ok(());
    };
    if caps::check_bitstring(&job.bitstring).is_err() {
        return Err(Refusal::IncompatibleCapabilities);
    }
    let needed = CapabilitySet::from_bitstring(&job.bitstring);
    let min_version = job.constraints.as_ref().map(|c| c.min_version.as_str());
    match caps::job_fits(&needed, min_version, offered, version) {
        Ok(()) => Ok(()),
        Err(Incompatible::Missing(_) | Incompatible::Version { .. }) => {
            Err(Refusal::IncompatibleCapabilities)
        }
    }
}

#[cfg(test)]
mod tests;
