//! The orchestrator: the 2018 `GetTranscoder` verification (the spec's four
//! checks, as one plain function) and credential minting; today's wire in
//! [`today`] (sessions, auth tokens, its `/segment`); [`service`] adapts
//! both to one gRPC service.

pub mod client;
pub mod service;
pub mod today;

use std::collections::HashMap;

use crate::chain::Job;
use crate::eth::{Address, PrivateKey, Signature, SignatureError};
use crate::protocol::{AUTH_TYPE_ETH, Profile, mint_credentials, rendition_stream_ids};

pub use service::{OrchestratorGrpc, OrchestratorService};

/// Why a `GetTranscoder` request was refused; each maps to one gRPC code.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum GetTranscoderRejection {
    #[error("job id must not be negative (got {0})")]
    NegativeJobId(i64),
    #[error("job {0} not found")]
    UnknownJob(u64),
    #[error("job {job} is assigned to transcoder {assigned}, not to this orchestrator ({us})")]
    NotAssigned {
        job: u64,
        assigned: Address,
        us: Address,
    },
    #[error("job {job} is valid from block {creation} to {end}; the current block is {current}")]
    OutsideBlockRange {
        job: u64,
        creation: u64,
        end: u64,
        current: u64,
    },
    #[error("signature is not the job's broadcaster's Sign(jobId): {0}")]
    BadSignature(SignatureError),
    #[error("job {job} on chain is unusable: {reason}")]
    BadJob { job: u64, reason: String },
}

impl GetTranscoderRejection {
    pub fn grpc_code(&self) -> tonic::Code {
        use GetTranscoderRejection::*;
        match self {
            NegativeJobId(_) | BadSignature(_) => tonic::Code::InvalidArgument,
            UnknownJob(_) => tonic::Code::NotFound,
            NotAssigned { .. } => tonic::Code::PermissionDenied,
            OutsideBlockRange { .. } | BadJob { .. } => tonic::Code::FailedPrecondition,
        }
    }

    /// A short stable label for logs and metrics.
    pub fn label(&self) -> &'static str {
        use GetTranscoderRejection::*;
        match self {
            NegativeJobId(_) => "negative_job_id",
            UnknownJob(_) => "job_not_found",
            NotAssigned { .. } => "not_assigned",
            OutsideBlockRange { .. } => "outside_block_range",
            BadSignature(_) => "bad_signature",
            BadJob { .. } => "bad_job",
        }
    }
}

/// A request that passed every check, with what the answer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRequest {
    pub job: Job,
    pub profiles: Vec<Profile>,
}

/// The spec's checks in its order: 1 the job exists, 2 it is assigned to `us`,
/// 3 `creationBlock ≤ current_block ≤ endBlock`, 4 `sig` is the broadcaster's
/// `Sign(ascii decimal jobId)`.
pub fn verify_transcoder_request(
    job_id: u64,
    sig: &[u8],
    job: Option<Job>,
    current_block: u64,
    us: Address,
) -> Result<VerifiedRequest, GetTranscoderRejection> {
    use GetTranscoderRejection::*;
    let job = job.ok_or(UnknownJob(job_id))?;
    if job.transcoder != us {
        return Err(NotAssigned {
            job: job_id,
            assigned: job.transcoder,
            us,
        });
    }
    if !(job.creation_block..=job.end_block).contains(&current_block) {
        return Err(OutsideBlockRange {
            job: job_id,
            creation: job.creation_block,
            end: job.end_block,
            current: current_block,
        });
    }
    Signature::verify(job_id.to_string().as_bytes(), sig, job.broadcaster).map_err(BadSignature)?;
    let profiles = job.profiles().map_err(|e| BadJob {
        job: job_id,
        reason: e.to_string(),
    })?;
    Ok(VerifiedRequest { job, profiles })
}

/// `TranscoderInfo` for a verified request: where to send segments, freshly
/// signed credentials, and the rendition stream ids.
pub fn transcoder_info(
    verified: &VerifiedRequest,
    orchestrator: &PrivateKey,
    transcoder_uri: &str,
) -> Result<crate::proto::TranscoderInfo, GetTranscoderRejection> {
    let stream_ids: HashMap<String, String> =
        rendition_stream_ids(&verified.job.stream_id, &verified.profiles).map_err(|e| {
            GetTranscoderRejection::BadJob {
                job: verified.job.id,
                reason: e.to_string(),
            }
        })?;
    Ok(crate::proto::TranscoderInfo {
        transcoder: transcoder_uri.to_string(),
        auth_type: AUTH_TYPE_ETH.to_string(),
        credentials: mint_credentials(orchestrator, verified.job.id),
        stream_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::decode_credentials;

    struct World {
        orchestrator: PrivateKey,
        broadcaster: PrivateKey,
        job: Job,
    }

    fn world() -> World {
        let orchestrator = PrivateKey::random();
        let broadcaster = PrivateKey::random();
        let job = Job {
            id: 42,
            stream_id: format!("{}P720p30fps16x9", "0a".repeat(32)),
            transcoding_options: "93c717e7c0a6517a".into(),
            broadcaster: broadcaster.address(),
            transcoder: orchestrator.address(),
            creation_block: 100,
            end_block: 200,
        };
        World {
            orchestrator,
            broadcaster,
            job,
        }
    }

    fn verify(
        w: &World,
        sig: &[u8],
        block: u64,
    ) -> Result<VerifiedRequest, GetTranscoderRejection> {
        verify_transcoder_request(
            42,
            sig,
            Some(w.job.clone()),
            block,
            w.orchestrator.address(),
        )
    }

    #[test]
    fn a_good_request_gets_credentials_and_stream_ids() {
        let w = world();
        let sig = w.broadcaster.sign(b"42").to_vec();
        for block in [100, 150, 200] {
            verify(&w, &sig, block).unwrap();
        }
        let verified = verify(&w, &sig, 150).unwrap();
        assert_eq!(verified.profiles.len(), 2);
        let info = transcoder_info(&verified, &w.orchestrator, "https://node:8935").unwrap();
        assert_eq!(info.transcoder, "https://node:8935");
        assert_eq!(info.auth_type, "Livepeer-Eth-1");
        assert_eq!(
            decode_credentials(&info.credentials, w.orchestrator.address()),
            Ok(42)
        );
        assert_eq!(info.stream_ids.len(), 2);
        assert_eq!(
            info.stream_ids[&format!("{}P360p30fps16x9", "0a".repeat(32))],
            "P360p30fps16x9"
        );
    }

    #[test]
    fn each_check_has_its_own_rejection_and_code() {
        let w = world();
        let sig = w.broadcaster.sign(b"42").to_vec();
        let us = w.orchestrator.address();

        let unknown = verify_transcoder_request(42, &sig, None, 150, us).unwrap_err();
        assert_eq!(
            (unknown.label(), unknown.grpc_code()),
            ("job_not_found", tonic::Code::NotFound)
        );

        let stranger = PrivateKey::random().address();
        let not_ours =
            verify_transcoder_request(42, &sig, Some(w.job.clone()), 150, stranger).unwrap_err();
        assert_eq!(not_ours.grpc_code(), tonic::Code::PermissionDenied);

        for block in [0, 99, 201, u64::MAX] {
            let outside = verify(&w, &sig, block).unwrap_err();
            assert_eq!(
                outside.grpc_code(),
                tonic::Code::FailedPrecondition,
                "block {block}"
            );
        }

        let by_stranger = PrivateKey::random().sign(b"42").to_vec();
        let other_job = w.broadcaster.sign(b"43").to_vec();
        let short = &sig[..64];
        for bad in [&by_stranger[..], &other_job[..], short, &[]] {
            let rejection = verify(&w, bad, 150).unwrap_err();
            assert_eq!(
                rejection.grpc_code(),
                tonic::Code::InvalidArgument,
                "{rejection}"
            );
        }
    }

    #[test]
    fn checks_run_in_the_spec_order() {
        let w = world();
        // Not assigned and expired and badly signed: the assignment check comes first.
        let stranger = PrivateKey::random().address();
        let rejection =
            verify_transcoder_request(42, &[], Some(w.job.clone()), 999, stranger).unwrap_err();
        assert_eq!(rejection.label(), "not_assigned");
        // Expired and badly signed: the block range comes before the signature.
        assert_eq!(
            verify(&w, &[], 999).unwrap_err().label(),
            "outside_block_range"
        );
    }

    #[test]
    fn a_job_with_unusable_options_is_refused_not_panicked() {
        let mut w = world();
        w.job.transcoding_options = "deadbeef".into();
        let sig = w.broadcaster.sign(b"42").to_vec();
        assert_eq!(verify(&w, &sig, 150).unwrap_err().label(), "bad_job");
    }
}
