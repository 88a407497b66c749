//! The tonic edge of the orchestrator: fetches the job and block from the chain,
//! runs [`verify_transcoder_request`], and maps the outcome to a gRPC status.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{GetTranscoderRejection, transcoder_info, verify_transcoder_request};
use crate::chain::{Chain, ChainError};
use crate::eth::PrivateKey;
use crate::proto::orchestrator_server::{Orchestrator, OrchestratorServer};
use crate::proto::{TranscoderInfo, TranscoderRequest};

/// `net.Orchestrator` over a chain, signing credentials with the orchestrator's key.
#[derive(Debug, Clone)]
pub struct OrchestratorService {
    key: Arc<PrivateKey>,
    chain: Arc<dyn Chain>,
    transcoder_uri: Arc<str>,
}

impl OrchestratorService {
    pub fn new(key: Arc<PrivateKey>, chain: Arc<dyn Chain>, transcoder_uri: &str) -> Self {
        Self {
            key,
            chain,
            transcoder_uri: transcoder_uri.into(),
        }
    }

    /// The gRPC routes, ready to merge into the node's router.
    pub fn into_router(self) -> axum::Router {
        tonic::service::Routes::new(OrchestratorServer::new(self)).into_axum_router()
    }
}

fn chain_status(error: ChainError) -> Status {
    if error.is_retryable() {
        Status::unavailable(format!("chain unavailable: {error}"))
    } else {
        Status::internal(format!("chain error: {error}"))
    }
}

fn rejection_status(rejection: &GetTranscoderRejection) -> Status {
    Status::new(rejection.grpc_code(), rejection.to_string())
}

#[tonic::async_trait]
impl Orchestrator for OrchestratorService {
    async fn get_transcoder(
        &self,
        request: Request<TranscoderRequest>,
    ) -> Result<Response<TranscoderInfo>, Status> {
        let peer = request.remote_addr();
        let TranscoderRequest { job_id, sig } = request.into_inner();
        let refuse = |rejection: GetTranscoderRejection| {
            tracing::warn!(
                job_id,
                ?peer,
                reason = rejection.label(),
                "GetTranscoder refused: {rejection}"
            );
            rejection_status(&rejection)
        };
        let job_id = u64::try_from(job_id)
            .map_err(|_| refuse(GetTranscoderRejection::NegativeJobId(job_id)))?;
        let job = self.chain.job(job_id).await.map_err(|e| {
            tracing::error!(job_id, "GetTranscoder: reading the job failed: {e}");
            chain_status(e)
        })?;
        let block = self.chain.current_block().await.map_err(|e| {
            tracing::error!(
                job_id,
                "GetTranscoder: reading the block number failed: {e}"
            );
            chain_status(e)
        })?;
        let verified = verify_transcoder_request(job_id, &sig, job, block, self.key.address())
            .map_err(refuse)?;
        let info = transcoder_info(&verified, &self.key, &self.transcoder_uri).map_err(refuse)?;
        tracing::info!(job_id, ?peer, broadcaster = %verified.job.broadcaster, "GetTranscoder: credentials issued");
        Ok(Response::new(info))
    }
}
