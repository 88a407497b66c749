//! The 2018 wire's `POST /segment` (`spec/livepeer-networking-v2.md`), a
//! thin adapter over the segment core: [`verify`]'s plain checks of the
//! headers (with the job and block read from the chain), a
//! [`SegmentJob`] for [`SegmentCore::process`], and the answer rendered
//! once: go-livepeer's protobuf `TranscodeResult` with `/stream/…` URLs, or
//! inline `multipart/mixed` renditions; JSON `{error, detail}` rejections
//! with the stable codes of `design.md`.
//!
//! [`remote`] is the dial-out mode (`lpgpu transcoder --orch-addr`), today's
//! orchestrator ↔ transcoder wire: a sibling adapter over the same executor.

pub mod remote;
pub mod verify;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use prost::Message;

use crate::chain::Chain;
use crate::eth::{Address, PrivateKey, keccak256};
use crate::pipeline::Transcoded;
use crate::proto::{TranscodeData, TranscodeResult, TranscodedSegmentData, transcode_result};
use crate::protocol::AUTH_TYPE_ETH;
use crate::segment::{self, Handled, Outcome, SegmentBody, SegmentCore, SegmentJob, Stage, Wire};
use crate::session::StreamKey;
use verify::{Rejection, SegmentHeaders, VerifiedSegment, authenticate, authorize};

/// Who the 2018 wire answers for.
#[derive(Debug, Clone)]
pub struct V2Config {
    /// Credentials must be signed by this orchestrator.
    pub orchestrator: Address,
    /// This node's `https://host:port`, the base of `/stream/` URLs.
    pub service_uri: String,
    /// Signs `TranscodeData.sig`; without one the signature is empty.
    pub signer: Option<Arc<PrivateKey>>,
    /// Put internal error text in responses (`--expose-errors`).
    pub expose_errors: bool,
}

/// The 2018 `/segment`.
#[derive(Debug)]
pub struct V2Wire {
    config: V2Config,
    chain: Arc<dyn Chain>,
}

impl V2Wire {
    pub fn new(config: V2Config, chain: Arc<dyn Chain>) -> Self {
        Self { config, chain }
    }

    /// The spec's header checks, in its order, with the job and the block
    /// read from the chain between them.
    async fn verify(&self, headers: &SegmentHeaders<'_>) -> Result<VerifiedSegment, Rejection> {
        let job_id = authenticate(headers, self.config.orchestrator)?;
        let job = self.chain.job(job_id).await.map_err(chain_rejection)?;
        let block = self.chain.current_block().await.map_err(chain_rejection)?;
        authorize(headers, job_id, job, block)
    }

    fn rejection(&self, rejection: &Rejection) -> Handled {
        let detail = if self.config.expose_errors {
            rejection.to_string()
        } else {
            rejection.public_detail()
        };
        Handled {
            finished: None,
            response: json_error(rejection.status(), rejection.code(), &detail, None),
            outcome: Outcome::Rejected {
                code: rejection.code(),
                why: rejection.to_string(),
            },
        }
    }

    /// A core error: JSON, except a transcode failure in protobuf mode,
    /// which is go-livepeer's `TranscodeResult.error` (the code, or
    /// `code: detail` under `--expose-errors`).
    fn failure(&self, error: &segment::Error, seq: u64, multipart: bool) -> Handled {
        let code = error.code();
        let detail = error.detail(self.config.expose_errors);
        let transcoding = error.stage() == Stage::Transcode;
        let response = if transcoding && !multipart {
            let text = if self.config.expose_errors {
                format!("{code}: {detail}")
            } else {
                code.to_string()
            };
            protobuf(TranscodeResult {
                seq: seq as i64,
                result: Some(transcode_result::Result::Error(text)),
            })
        } else {
            json_error(error.status(), code, &detail, error.retry_after())
        };
        let why = error.to_string();
        Handled {
            finished: None,
            response,
            outcome: if transcoding {
                Outcome::Failed { code, why }
            } else {
                Outcome::Rejected { code, why }
            },
        }
    }

    /// go-livepeer's answer: URLs of the renditions, which wait in the store.
    fn protobuf_response(
        &self,
        core: &SegmentCore,
        verified: &VerifiedSegment,
        transcoded: Transcoded,
        signature: Vec<u8>,
    ) -> Response {
        let seq = verified.segment.seq;
        let mut segments = Vec::with_capacity(transcoded.renditions.len());
        for (rendition, stream_id) in transcoded
            .renditions
            .into_iter()
            .zip(&verified.rendition_stream_ids)
        {
            let name = format!("{stream_id}_{seq}.ts");
            if !core.store().insert(name.clone(), rendition.data) {
                tracing::warn!(%name, "rendition larger than the whole stream store; it cannot be fetched");
            }
            segments.push(TranscodedSegmentData {
                url: format!("{}/stream/{name}", self.config.service_uri),
            });
        }
        protobuf(TranscodeResult {
            seq: seq as i64,
            result: Some(transcode_result::Result::Data(TranscodeData {
                segments,
                sig: signature,
            })),
        })
    }
}

#[async_trait::async_trait]
impl Wire for V2Wire {
    fn name(&self) -> &'static str {
        "v2"
    }

    /// The 2018 form carries `Credentials` and `Authorization: Livepeer-Eth-1`.
    fn claims(&self, headers: &HeaderMap) -> bool {
        headers.contains_key("credentials")
            || header_text(headers, "authorization").is_some_and(|a| a.trim() == AUTH_TYPE_ETH)
    }

    async fn handle(
        &self,
        core: &SegmentCore,
        headers: &HeaderMap,
        body: &mut SegmentBody,
    ) -> Handled {
        let request = SegmentHeaders {
            authorization: header_text(headers, "authorization"),
            credentials: header_text(headers, "credentials"),
            segment: header_text(headers, "livepeer-segment"),
            content_type: header_text(headers, "content-type"),
        };
        let verified = match self.verify(&request).await {
            Ok(verified) => verified,
            Err(rejection) => return self.rejection(&rejection),
        };
        let seq = verified.segment.seq;
        let job = SegmentJob {
            // The 2018 wire has no perceptual hashes.
            perceptual_hash: false,
            stream: StreamKey::new(&verified.job.stream_id),
            seq,
            renditions: crate::pipeline::rendition::from_profiles(&verified.profiles),
            expected_hash: Some(verified.segment.hash),
            // The 2018 broadcaster's patience is not on the wire.
            deadline: None,
        };
        let multipart = wants_multipart(headers);
        let transcoded = match core.process(&job, body).await {
            Ok(transcoded) => transcoded,
            Err(error) => return self.failure(&error, seq, multipart),
        };
        tracing::info!(
            job = verified.job.id,
            seq,
            renditions = transcoded.renditions.len(),
            source_seconds = transcoded.source_seconds,
            "segment transcoded"
        );
        let response = if multipart {
            multipart_response(&transcoded)
        } else {
            // The orchestrator's signature over the renditions' hashes: CPU
            // work, off the executor.
            let signer = self.config.signer.clone();
            let signed = tokio::task::spawn_blocking(move || {
                let signature = sign_renditions(&transcoded, signer);
                (transcoded, signature)
            })
            .await;
            match signed {
                Ok((transcoded, signature)) => {
                    self.protobuf_response(core, &verified, transcoded, signature)
                }
                Err(e) => {
                    let error = segment::Error::Internal(format!("signing failed: {e}"));
                    return self.failure(&error, seq, multipart);
                }
            }
        };
        Handled::done(response, Outcome::Transcoded)
    }
}

fn chain_rejection(error: crate::chain::ChainError) -> Rejection {
    tracing::error!("reading the chain failed: {error}");
    Rejection::ChainUnavailable(error.to_string())
}

/// `{"error": code, "detail": detail}`, with `Retry-After` when given.
fn json_error(
    status: StatusCode,
    code: &str,
    detail: &str,
    retry_after: Option<std::time::Duration>,
) -> Response {
    let body = serde_json::json!({ "error": code, "detail": detail });
    let mut response = (status, axum::Json(body)).into_response();
    let retry_after = retry_after
        .or((status == StatusCode::SERVICE_UNAVAILABLE)
            .then_some(std::time::Duration::from_secs(1)));
    if let Some(wait) = retry_after
        && let Ok(value) = HeaderValue::from_str(&wait.as_secs().max(1).to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// A header's text; absent, empty and non-text headers are `None`/garbage that
/// the decoders refuse with their own codes.
fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap_or("\u{fffd}"))
        .filter(|text| !text.trim().is_empty())
}

fn wants_multipart(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|accept| {
            accept
                .split(',')
                .any(|t| t.trim().to_ascii_lowercase().starts_with("multipart/mixed"))
        })
}

/// The orchestrator's signature over the renditions' hashes (CPU work: run
/// it on a blocking thread); empty without a key.
fn sign_renditions(transcoded: &Transcoded, signer: Option<Arc<PrivateKey>>) -> Vec<u8> {
    match signer {
        Some(key) => {
            let hashes: Vec<u8> = transcoded
                .renditions
                .iter()
                .flat_map(|r| keccak256(&r.data))
                .collect();
            key.sign(&hashes).to_vec()
        }
        None => Vec::new(),
    }
}

fn protobuf(result: TranscodeResult) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        result.encode_to_vec(),
    )
        .into_response()
}

/// A rendition part's type as the 2018 wire spells it (`spec/wire.md`):
/// `video/MP2T`; the dial-out wire writes go-livepeer's `video/mp2t`.
fn v2_part_type(container: crate::pipeline::Container) -> &'static str {
    match container {
        crate::pipeline::Container::MpegTs => "video/MP2T",
        other => other.mime_type(),
    }
}

/// lpgpu's inline answer: one part per rendition, in job order, typed by
/// its container. The body streams the renditions' own buffers: no
/// rendition is copied.
fn multipart_response(transcoded: &Transcoded) -> Response {
    let boundary = hex::encode(rand::random::<[u8; 12]>());
    let mut chunks: Vec<Bytes> = Vec::with_capacity(3 * transcoded.renditions.len() + 1);
    for rendition in &transcoded.renditions {
        chunks.push(Bytes::from(format!(
            "--{boundary}\r\nContent-Type: {}\r\nRendition-Name: {}\r\nContent-Length: {}\r\n\r\n",
            v2_part_type(rendition.spec.container),
            rendition.spec.name,
            rendition.data.len()
        )));
        chunks.push(rendition.data.clone());
        chunks.push(Bytes::from_static(b"\r\n"));
    }
    chunks.push(Bytes::from(format!("--{boundary}--\r\n")));
    let body = Body::from_stream(futures_util::stream::iter(
        chunks.into_iter().map(Ok::<_, std::convert::Infallible>),
    ));
    let content_type = format!("multipart/mixed; boundary={boundary}");
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code the 2018 `/segment` can answer: its own rejections and the
    /// core's errors.
    fn every_v2_code() -> Vec<&'static str> {
        use crate::eth::SignatureError;
        use crate::protocol::HeaderError;
        let rejections = [
            Rejection::MissingHeader("Authorization"),
            Rejection::BadAuthType,
            Rejection::MalformedCredentials(HeaderError::NotBase64),
            Rejection::BadCredentials(SignatureError::HighS),
            Rejection::JobNotFound(1),
            Rejection::UnusableJob {
                job: 1,
                reason: "x".into(),
            },
            Rejection::JobExpired {
                job: 1,
                end: 1,
                current: 2,
            },
            Rejection::UnsupportedMedia("x".into()),
            Rejection::MalformedSegmentHeader(HeaderError::NotBase64),
            Rejection::BadSegmentSignature(SignatureError::HighS),
            Rejection::ChainUnavailable("x".into()),
        ];
        let errors = [
            segment::Error::Busy { slots: 1 },
            segment::Error::StreamBusy { queued: 1 },
            segment::Error::StreamWaitTimedOut(std::time::Duration::from_secs(1)),
            segment::Error::ShuttingDown,
            segment::Error::BodyTooLarge { limit: 1 },
            segment::Error::BodyTimeout(1),
            segment::Error::BodyRead("x".into()),
            segment::Error::HashMismatch,
            segment::Error::Undecodable("x".into()),
            segment::Error::NoKeyframes,
            segment::Error::Unsupported("x".into()),
            segment::Error::TranscodeTimeout(1),
            segment::Error::Internal("x".into()),
        ];
        rejections
            .iter()
            .map(Rejection::code)
            .chain(errors.iter().map(segment::Error::code))
            .collect()
    }

    /// The codes of a Markdown text: every `` `lower_snake` `` in it.
    fn documented(text: &str) -> Vec<String> {
        text.split('`')
            .skip(1)
            .step_by(2)
            .filter(|word| {
                !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            })
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn every_code_on_the_2018_wire_is_in_the_contract_or_documented_as_an_addition() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let design = std::fs::read_to_string(root.join("../shared/design.md"))
            .expect("../shared/design.md (the contract)");
        let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
        // design.md's list of stable codes, and the README's table of
        // rejections, where lpgpu's additions are marked as such.
        let contract = documented(
            design
                .split("with these stable codes:")
                .nth(1)
                .and_then(|rest| rest.split('\n').next())
                .expect("design.md lists the stable codes"),
        );
        let table = readme
            .split("Rejections are JSON")
            .nth(1)
            .expect("README has the table of rejections");
        let additions: Vec<String> = table
            .lines()
            .filter(|line| line.contains("lpgpu's addition"))
            .flat_map(documented)
            .collect();
        for code in every_v2_code() {
            assert!(
                contract.iter().any(|c| c == code) || additions.iter().any(|c| c == code),
                "{code} is neither in design.md's list nor a documented addition"
            );
        }
    }
}
