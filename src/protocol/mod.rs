//! The protocol's rules over plain values: profiles and `transcodingOptions`,
//! stream ids, the `flatten` message that segment signatures cover, the
//! `Livepeer-Segment` and `Credentials` header encodings, and the stable error
//! codes of `/segment` rejections; and the capabilities of today's
//! orchestrator ↔ transcoder protocol ([`capabilities`], [`results`],
//! [`task_deadline`]); today's broadcaster ↔ orchestrator wire ([`today`]).
//! No I/O.

pub mod capabilities;
mod headers;
pub mod limits;
pub mod payment;
pub mod pm;
mod profiles;
pub mod rendition;
pub mod results;
pub mod signature;
mod stream_id;
pub mod today;
pub mod transcoding_options;
pub mod video_profile;

pub use headers::{
    AUTH_TYPE_ETH, CredentialsError, HeaderError, SegmentHeader, decode_credentials,
    decode_segment_header, encode_credentials, encode_segment_header, flatten, mint_credentials,
};
pub use profiles::{
    PROFILES, Profile, ProfileError, encode_transcoding_options, parse_profile_list,
    parse_transcoding_options,
};
pub use stream_id::{ManifestId, StreamIdError, rendition_stream_ids};

/// How long an orchestrator waits for the result of a task on a segment of
/// `duration`: `max(8 s, 4 × duration)` (`spec/ot-protocol.md`); go-livepeer
/// evicts a transcoder whose task is later.
pub fn task_deadline(duration: std::time::Duration) -> std::time::Duration {
    (duration * 4).max(std::time::Duration::from_secs(8))
}
