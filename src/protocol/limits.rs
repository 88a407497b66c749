//! Sizes lpgpu accepts from a peer, in one place: every parser and server
//! refuses (or, where the protocol allows, ignores) what is larger, so no
//! header, message or list from the network grows memory or threads
//! without bound. Today's broadcaster wire takes these from anyone.

/// Renditions one segment may ask for. A CPU transcode runs a thread per
/// rendition; go-livepeer's ladders have a handful.
pub const MAX_RENDITIONS: usize = 16;

/// 64-bit words of a capability bitstring (256 capabilities; go-livepeer
/// numbers fewer than 64 today). Bits beyond are capabilities nobody
/// defines: a longer bitstring is refused.
pub const MAX_CAPABILITY_WORDS: usize = 4;

/// Entries of a capability's per-capability map (`capacities`,
/// `constraints`).
pub const MAX_CAPABILITY_ENTRIES: usize = 256;

/// All request headers of one HTTP request together (HTTP/2 header list,
/// HTTP/1.1 head): the segment and payment headers are a few KiB.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// One encoded header value lpgpu decodes (`Livepeer-Segment`,
/// `Credentials`, `Livepeer-Payment`).
pub const MAX_HEADER_VALUE_BYTES: usize = 32 * 1024;

/// One gRPC message received (requests to the orchestrator, notifications
/// to a dial-out transcoder).
pub const MAX_GRPC_MESSAGE_BYTES: usize = 1024 * 1024;

/// Open connections on a node's TLS port unless `--max-connections` says
/// otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Whether a list of `count` renditions may be transcoded.
pub fn check_renditions(count: usize) -> Result<(), String> {
    if count > MAX_RENDITIONS {
        Err(format!(
            "{count} renditions asked for; at most {MAX_RENDITIONS} per segment"
        ))
    } else {
        Ok(())
    }
}
