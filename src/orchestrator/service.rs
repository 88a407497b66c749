//! The tonic edge of the orchestrator: fetches the job and block from the chain,
//! runs [`verify_transcoder_request`], and maps the outcome to a gRPC status
//! (and `lpgpu_get_transcoder_total{result}`).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{GetTranscoderRejection, transcoder_info, verify_transcoder_request};
use crate::chain::{Chain, ChainError};
use crate::eth::PrivateKey;
use crate::metrics::Metrics;
use crate::proto::orchestrator_server::{Orchestrator, OrchestratorServer};
use crate::proto::{TranscoderInfo, TranscoderRequest};

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

    /// The gRPC routes, ready to merge into the node's router.
    pub fn into_router(self) -> axum::Router {
        tonic::service::Routes::new(OrchestratorServer::new(self)).into_axum_router()
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

#[tonic::async_trait]
impl Orchestrator for OrchestratorService {
    async fn get_transcoder(
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
