//! The tonic edge of the orchestrator, one `net.Orchestrator` service for
//! both generations ([`OrchestratorGrpc`]): the 2018 `GetTranscoder`
//! ([`OrchestratorService`]: fetches the job and block from the chain, runs
//! [`verify_transcoder_request`], maps the outcome to a gRPC status and
//! `lpgpu_get_transcoder_total{result}`), and today's `GetOrchestrator`,
//! `EndTranscodingSession` and `Ping` ([`TodayOrchestrator`]; failures are
//! go-livepeer's texts with status UNKNOWN, as its Go errors become).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::today::{EndRefusal, TodayOrchestrator};
use super::{GetTranscoderRejection, transcoder_info, verify_transcoder_request};
use crate::chain::{Chain, ChainError};
use crate::eth::PrivateKey;
use crate::metrics::Metrics;
use crate::proto::orchestrator_server::{Orchestrator, OrchestratorServer};
use crate::proto::{
    EndTranscodingSessionRequest, EndTranscodingSessionResponse, OrchestratorInfo,
    OrchestratorRequest, PingPong, TranscoderInfo, TranscoderRequest,
};

/// `net.Orchestrator` over a chain, signing credentials with the orchestrator's key.
#[derive(Debug, Clone)]
pub struct OrchestratorService {
    key: Arc<PrivateKey>,
    chain: Arc<dyn Chain>,
    transcoder_uri: Arc<str>,
    metrics: Metrics,
}

impl OrchestratorService {
    pub fn new(
        key: Arc<PrivateKey>,
        chain: Arc<dyn Chain>,
        transcoder_uri: &str,
        metrics: Metrics,
    ) -> Self {
        Self {
            key,
            chain,
            transcoder_uri: transcoder_uri.into(),
            metrics,
        }
    }

    fn count(&self, result: &str) {
        self.metrics
            .get_transcoder
            .with_label_values(&[result])
            .inc();
    }

    fn chain_status(&self, job_id: u64, what: &str, error: ChainError) -> Status {
        tracing::error!(job_id, "GetTranscoder: reading {what} failed: {error}");
        self.count("chain_error");
        // The chain client's own text (which may name the RPC endpoint)
        // stays in the log.
        if error.is_retryable() {
            Status::unavailable("the chain cannot be read right now")
        } else {
            Status::internal("reading the chain failed")
        }
    }

    fn refuse(
        &self,
        job_id: i64,
        peer: Option<std::net::SocketAddr>,
        rejection: GetTranscoderRejection,
    ) -> Status {
        tracing::warn!(
            job_id,
            ?peer,
            reason = rejection.label(),
            "GetTranscoder refused: {rejection}"
        );
        self.count(rejection.label());
        Status::new(rejection.grpc_code(), rejection.to_string())
    }
}

impl OrchestratorService {
    pub async fn get_transcoder(
        &self,
        request: Request<TranscoderRequest>,
    ) -> Result<Response<TranscoderInfo>, Status> {
        let peer = request.remote_addr();
        let TranscoderRequest {
            job_id: raw_id,
            sig,
        } = request.into_inner();
        let refuse = |rejection| self.refuse(raw_id, peer, rejection);
        let job_id = u64::try_from(raw_id)
            .map_err(|_| refuse(GetTranscoderRejection::NegativeJobId(raw_id)))?;
        let job = self
            .chain
            .job(job_id)
            .await
            .map_err(|e| self.chain_status(job_id, "the job", e))?;
        let block = self
            .chain
            .current_block()
            .await
            .map_err(|e| self.chain_status(job_id, "the block number", e))?;
        let verified = verify_transcoder_request(job_id, &sig, job, block, self.key.address())
            .map_err(refuse)?;
        let info = transcoder_info(&verified, &self.key, &self.transcoder_uri).map_err(refuse)?;
        tracing::info!(job_id, ?peer, broadcaster = %verified.job.broadcaster, "GetTranscoder: credentials issued");
        self.count("ok");
        Ok(Response::new(info))
    }
}

/// `net.Orchestrator` as a node serves it: whichever generations it has.
#[derive(Debug, Clone)]
pub struct OrchestratorGrpc {
    pub v2: Option<OrchestratorService>,
    pub today: Option<Arc<TodayOrchestrator>>,
}

impl OrchestratorGrpc {
    /// The gRPC routes, ready to merge into the node's router.
    pub fn into_server(self) -> OrchestratorServer<Self> {
        OrchestratorServer::new(self)
            .max_decoding_message_size(crate::protocol::limits::MAX_GRPC_MESSAGE_BYTES)
    }

    fn today(&self, method: &str) -> Result<&Arc<TodayOrchestrator>, Status> {
        self.today.as_ref().ok_or_else(|| {
            Status::unimplemented(format!(
                "{method}: this node serves only the 2018 protocol (GetTranscoder)"
            ))
        })
    }
}

#[tonic::async_trait]
impl Orchestrator for OrchestratorGrpc {
    async fn get_transcoder(
        &self,
        request: Request<TranscoderRequest>,
    ) -> Result<Response<TranscoderInfo>, Status> {
        match &self.v2 {
            Some(v2) => v2.get_transcoder(request).await,
            None => Err(Status::unavailable(
                "GetTranscoder: this node is offchain (--chain offchain) and serves only \
                 today's wire (GetOrchestrator); the 2018 protocol needs a chain",
            )),
        }
    }

    async fn get_orchestrator(
        &self,
        request: Request<OrchestratorRequest>,
    ) -> Result<Response<OrchestratorInfo>, Status> {
        let today = self.today("GetOrchestrator")?;
        let peer = request.remote_addr();
        let count = |result: &str| {
            today
                .metrics()
                .get_orchestrator
                .with_label_values(&[result])
                .inc()
        };
        match today.get_orchestrator_quoted(request.get_ref()).await {
            Ok(info) => {
                count("ok");
                let session = info.auth_token.as_ref().map(|t| t.session_id.clone());
                tracing::info!(?peer, session, "GetOrchestrator: session offered");
                Ok(Response::new(info))
            }
            Err(why) => {
                count(if why.contains("Capped") {
                    "capped"
                } else {
                    "bad_signature"
                });
                tracing::warn!(?peer, "GetOrchestrator refused: {why}");
                Err(Status::unknown(why))
            }
        }
    }

    async fn end_transcoding_session(
        &self,
        request: Request<EndTranscodingSessionRequest>,
    ) -> Result<Response<EndTranscodingSessionResponse>, Status> {
        let today = self.today("EndTranscodingSession")?;
        let token = request.get_ref().auth_token.as_ref();
        match today.end_session(token) {
            Ok(ended) => {
                tracing::info!(
                    session = token.map(|t| t.session_id.as_str()),
                    ended,
                    "EndTranscodingSession"
                );
                Ok(Response::new(EndTranscodingSessionResponse {}))
            }
            Err(EndRefusal::Missing) => Err(Status::invalid_argument(
                "EndTranscodingSession needs auth_token",
            )),
            Err(refusal @ EndRefusal::Invalid) => {
                tracing::warn!("EndTranscodingSession refused: {refusal}");
                Err(Status::unknown(refusal.to_string()))
            }
        }
    }

    async fn ping(&self, request: Request<PingPong>) -> Result<Response<PingPong>, Status> {
        let today = self.today("Ping")?;
        let value = today.ping(&request.get_ref().value);
        Ok(Response::new(PingPong { value }))
    }
}
