//! The orchestrator of today's go-livepeer broadcaster ↔ orchestrator wire
//! (`spec/bo-protocol.md`), offchain: `GetOrchestrator` (a session and its
//! auth token), `EndTranscodingSession`, `Ping`, and [`wire::TodayWire`],
//! today's `POST /segment` as a thin adapter over the node's segment core.
//! Its messages and checks are plain code in [`crate::protocol::today`]; the
//! sessions are [`sessions::SessionTable`]. The 2018 `GetTranscoder` is the
//! parent module's; both are served on one port by one gRPC service.
//! Payments (tickets, balances) are not here yet: an lpgpu node serves
//! today's wire free, as `-network offchain` does.

pub mod payment_metrics;
pub mod payments;
pub mod redeemer;
pub mod sessions;
pub mod wire;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::eth::{PrivateKey, Signature};
use crate::metrics::Metrics;
use crate::proto::{Capabilities, OrchestratorInfo, OrchestratorRequest, TaskAuthToken};
use crate::protocol::capabilities::CapabilitySet;
use crate::protocol::today::{AuthTokens, OFFCHAIN_ADDRESS};
use crate::segment::SegmentCore;
use crate::session::StreamKey;
use sessions::{Ended, SessionTable};

/// How often idle sessions are looked for.
const SWEEP: Duration = Duration::from_secs(5);

/// What a node's orchestrator of today's wire is.
#[derive(Debug, Clone)]
pub struct TodayConfig {
    /// `OrchestratorInfo.transcoder`: where broadcasters post segments.
    pub service_uri: String,
    /// Sessions open at once (go-livepeer's `-maxSessions`).
    pub max_sessions: usize,
    /// What this node's backend or pool does: advertised, and what jobs
    /// must fit.
    pub capabilities: CapabilitySet,
    /// The go-livepeer version reported.
    pub version: String,
    /// On a chain: the node's key (its address in `OrchestratorInfo`, the
    /// signer of results and `Ping`). Offchain: none.
    pub signer: Option<Arc<PrivateKey>>,
    /// Paid: ticket parameters and a price in every `OrchestratorInfo`, and
    /// every segment's payment checked. None: free, as `-network offchain`.
    pub payments: Option<Arc<payments::Payments>>,
}

/// Why `EndTranscodingSession` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndRefusal {
    #[error("missing auth token")]
    Missing,
    #[error("Invalid auth token")]
    Invalid,
}

/// The orchestrator side of today's wire.
#[derive(Debug)]
pub struct TodayOrchestrator {
    config: TodayConfig,
    tokens: AuthTokens,
    sessions: Mutex<SessionTable>,
    /// Where segments go; `None` only in tests of the gRPC side.
    core: Option<Arc<SegmentCore>>,
    metrics: Metrics,
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl TodayOrchestrator {
    pub fn new(config: TodayConfig, core: Option<Arc<SegmentCore>>, metrics: Metrics) -> Arc<Self> {
        let sessions = Mutex::new(SessionTable::new(
            config.max_sessions,
            sessions::SESSION_IDLE,
        ));
        Arc::new(Self {
            config,
            tokens: AuthTokens::random(),
            sessions,
            core,
            metrics,
        })
    }

    pub fn config(&self) -> &TodayConfig {
        &self.config
    }

    pub fn tokens(&self) -> &AuthTokens {
        &self.tokens
    }

    pub(crate) fn sessions(&self) -> MutexGuard<'_, SessionTable> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn core(&self) -> Option<&Arc<SegmentCore>> {
        self.core.as_ref()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Ends idle sessions every few seconds while the orchestrator lives.
    pub fn start_sweeper(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SWEEP);
            loop {
                every.tick().await;
                let Some(orchestrator) = weak.upgrade() else {
                    return;
                };
                let ended = orchestrator.sessions().expire(Instant::now());
                for session in ended {
                    tracing::info!(session = %session.id, "session idle for 70 s: ended");
                    orchestrator.release(&session);
                }
            }
        });
    }

    /// What an ended session leaves: its renditions and what the backend or
    /// the pool keeps for its stream.
    fn release(&self, session: &Ended) {
        if let Some(core) = &self.core {
            core.store().remove_prefix(&format!("{}/", session.id));
            core.end_stream(&StreamKey::new(&session.id));
        }
    }

    /// `OrchestratorInfo` for a session with `token`.
    pub fn info(&self, token: TaskAuthToken) -> OrchestratorInfo {
        self.info_for(token, None)
    }

    /// `OrchestratorInfo` with `token`, and on a paid node the price and
    /// `ticket_params` (quoted for the session's sender).
    pub fn info_for(
        &self,
        token: TaskAuthToken,
        ticket_params: Option<crate::proto::TicketParams>,
    ) -> OrchestratorInfo {
        let mut info = self.plain_info(token);
        if let Some(payments) = &self.config.payments {
            info.price_info = Some(payments.price_info());
            info.ticket_params = ticket_params;
        }
        info
    }

    fn plain_info(&self, token: TaskAuthToken) -> OrchestratorInfo {
        let address = self
            .config
            .signer
            .as_ref()
            .map_or(OFFCHAIN_ADDRESS.to_vec(), |key| key.address().0.to_vec());
        OrchestratorInfo {
            transcoder: self.config.service_uri.clone(),
            address,
            capabilities: Some(Capabilities {
                bitstring: self.config.capabilities.to_bitstring(),
                version: self.config.version.clone(),
                ..Default::default()
            }),
            auth_token: Some(token),
            ..Default::default()
        }
    }

    /// `GetOrchestrator`'s checks in go-livepeer's order, then a new
    /// session with, on a paid node, ticket parameters quoted for the
    /// sender. The error is go-livepeer's text (gRPC UNKNOWN).
    pub async fn get_orchestrator_quoted(
        &self,
        request: &OrchestratorRequest,
    ) -> Result<OrchestratorInfo, String> {
        let (token, sender) = self.check_request(request)?;
        let params = match (&self.config.payments, sender) {
            (Some(payments), Some(sender)) => payments.quote_for(sender).await?,
            _ => None,
        };
        Ok(self.info_for(token, params))
    }

    /// [`Self::get_orchestrator_quoted`] without a quote (free nodes, tests).
    pub fn get_orchestrator(
        &self,
        request: &OrchestratorRequest,
    ) -> Result<OrchestratorInfo, String> {
        let (token, _) = self.check_request(request)?;
        Ok(self.info_for(token, None))
    }

    /// The checks, then a new session's token and the sender, if any.
    fn check_request(
        &self,
        request: &OrchestratorRequest,
    ) -> Result<(TaskAuthToken, Option<crate::eth::Address>), String> {
        // A broadcaster with an account signs its address; one without
        // (offchain) sends zeros and no signature.
        let offchain = request.address.iter().all(|&b| b == 0);
        // A paid node takes only broadcasters with an account (go-livepeer's
        // on-chain orchestrator refuses an offchain one).
        if offchain && self.config.payments.is_some() {
            return Err("Invalid orchestrator request: orchestrator req sig check failed".into());
        }
        if !offchain {
            let signed_by_it = <[u8; 20]>::try_from(request.address.as_slice())
                .map(crate::eth::Address)
                .is_ok_and(|address| {
                    Signature::recover(address.to_checksum().as_bytes(), &request.sig)
                        .is_ok_and(|signer| signer == address)
                });
            if !signed_by_it {
                return Err(
                    "Invalid orchestrator request: orchestrator req sig check failed".into(),
                );
            }
        }
        if !self.sessions().has_room() {
            return Err("Invalid orchestrator request: OrchestratorCapped".into());
        }
        let sender = <[u8; 20]>::try_from(request.address.as_slice())
            .ok()
            .filter(|_| !offchain)
            .map(crate::eth::Address);
        Ok((self.tokens.mint(unix_now()), sender))
    }

    /// `EndTranscodingSession`: the token must be ours (its expiry is not
    /// checked); the session ends at once.
    pub fn end_session(&self, token: Option<&TaskAuthToken>) -> Result<bool, EndRefusal> {
        let token = token.ok_or(EndRefusal::Missing)?;
        if !self.tokens.is_ours(token) {
            return Err(EndRefusal::Invalid);
        }
        let ended = self.sessions().end(&token.session_id);
        match ended {
            Some(session) => {
                self.release(&session);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// `Ping`: `Sign(value)` with the node's key; empty offchain.
    pub fn ping(&self, value: &[u8]) -> Vec<u8> {
        self.config
            .signer
            .as_ref()
            .map_or_else(Vec::new, |key| key.sign(value).to_vec())
    }
}

#[cfg(test)]
mod tests;
