//! The gRPC edge of the pool: `/net.Transcoder/RegisterTranscoder`. A
//! registration with the right secret and a capacity joins the pool and
//! keeps its stream open for notifications; go-livepeer's refusals are
//! answered with its status and text (UNKNOWN `invalid secret`, UNKNOWN
//! `zero capacity`). Without `--orch-secret` the service answers
//! UNIMPLEMENTED and says how to enable it.

use std::sync::Arc;

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::placement::MemberInfo;
use super::{Eviction, Pool};
use crate::proto::transcoder_server::{Transcoder, TranscoderServer};
use crate::proto::{NotifySegment, RegisterRequest};
use crate::protocol::capabilities::{CapabilitySet, check_bitstring};

/// What go-livepeer's transcoder sends when it sends no capabilities.
const GO_LIVEPEER_DEFAULT_CAPABILITIES: [u64; 1] = [0x4005FFF];

/// `net.Transcoder` for a pool, or refusing every call without one.
#[derive(Debug, Clone)]
pub struct RegistrationService {
    pool: Option<Arc<Pool>>,
}

impl RegistrationService {
    pub fn new(pool: Option<Arc<Pool>>) -> Self {
        Self { pool }
    }

    /// The gRPC routes, ready to merge into the node's router.
    pub fn into_router(self) -> axum::Router {
        tonic::service::Routes::new(TranscoderServer::new(self)).into_axum_router()
    }
}

/// The metadata key a member's name travels in (`lpgpu transcoder --name`).
pub const MEMBER_NAME_METADATA: &str = "lpgpu-name";

/// A name a member may report: 1–64 of letters, digits, `.`, `-`, `_`
/// (it becomes a metrics label and a log field).
pub fn valid_member_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Whether `given` is the secret, in time that does not depend on where
/// they differ.
fn secret_matches(given: &str, secret: &str) -> bool {
    let difference = given
        .bytes()
        .zip(secret.bytes())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    given.len() == secret.len() && difference == 0
}

#[tonic::async_trait]
impl Transcoder for RegistrationService {
    type RegisterTranscoderStream = ReceiverStream<Result<NotifySegment, Status>>;

    async fn register_transcoder(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<Self::RegisterTranscoderStream>, Status> {
        let Some(pool) = &self.pool else {
            return Err(Status::unimplemented(
                "this node takes no remote transcoders: start it with --orch-secret SECRET|FILE",
            ));
        };
        let address = request
            .remote_addr()
            .map_or_else(|| "unknown peer".to_string(), |a| a.to_string());
        // A reported name comes with the address: names need not be unique.
        let peer = match request
            .metadata()
            .get(MEMBER_NAME_METADATA)
            .and_then(|v| v.to_str().ok())
            .filter(|name| valid_member_name(name))
        {
            Some(name) => format!("{name}@{address}"),
            None => address,
        };
        let register = request.into_inner();
        if !secret_matches(&register.secret, pool.secret()) {
            tracing::warn!(%peer, "transcoder registration refused: invalid secret");
            pool.pool_metrics()
                .refused
                .with_label_values(&["secret"])
                .inc();
            return Err(Status::unknown("invalid secret"));
        }
        if register.capacity <= 0 {
            tracing::warn!(%peer, capacity = register.capacity, "transcoder registration refused: zero capacity");
            pool.pool_metrics()
                .refused
                .with_label_values(&["capacity"])
                .inc();
            return Err(Status::unknown("zero capacity"));
        }
        if let Some(Err(why)) = register
            .capabilities
            .as_ref()
            .map(|c| check_bitstring(&c.bitstring))
        {
            tracing::warn!(%peer, "transcoder registration refused: {why}");
            pool.pool_metrics()
                .refused
                .with_label_values(&["capabilities"])
                .inc();
            return Err(Status::invalid_argument(why));
        }
        let (capabilities, version) = match &register.capabilities {
            Some(c) => (
                CapabilitySet::from_bitstring(&c.bitstring),
                c.version.clone(),
            ),
            None => (
                CapabilitySet::from_bitstring(&GO_LIVEPEER_DEFAULT_CAPABILITIES),
                String::new(),
            ),
        };
        // A capacity past what any machine holds is someone's typo: cap it.
        let capacity = usize::try_from(register.capacity.min(4096)).unwrap_or(4096);
        let (sender, receiver) = tokio::sync::mpsc::channel(Pool::link_queue(capacity));
        let closed = sender.clone();
        let (evicted, on_eviction) = tokio::sync::oneshot::channel::<()>();
        let id = pool.join(
            MemberInfo {
                name: peer,
                capacity,
                capabilities,
                version,
                local: false,
            },
            sender,
            evicted,
        );
        // When the member's stream goes (it hung up, its connection died,
        // or tonic dropped the response), it leaves the pool.
        let watcher = Arc::downgrade(pool);
        // When the pool lets it go first, this last sender is dropped too and
        // the member's stream ends.
        tokio::spawn(async move {
            tokio::select! {
                () = closed.closed() => {
                    if let Some(pool) = watcher.upgrade() {
                        pool.evict(id, Eviction::Disconnected);
                    }
                }
                _ = on_eviction => {}
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_are_label_safe() {
        assert!(valid_member_name("rig-7.room_b"));
        assert!(!valid_member_name(""));
        assert!(!valid_member_name("a b"));
        assert!(!valid_member_name("quote\""));
        assert!(!valid_member_name(&"x".repeat(65)));
    }

    #[test]
    fn secrets_match_only_exactly() {
        assert!(secret_matches("s3cret", "s3cret"));
        assert!(!secret_matches("s3cre", "s3cret"));
        assert!(!secret_matches("s3cret ", "s3cret"));
        assert!(!secret_matches("", "s3cret"));
    }
}
