//! Today's `POST /segment` (`spec/bo-protocol.md`), a thin adapter over the
//! segment core: go-livepeer's checks 1–16 in order (plain code in
//! [`crate::protocol::today`]), each refusal with its exact status and text
//! body; then **200 at once**, and the protobuf `TranscodeResult` follows in
//! the body when the session's turn has come and its segment is transcoded.
//! Renditions wait in the node's store at
//! `/stream/<session>/<profile>/<seq>.ts` (the 12 latest per profile).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use bytes::{Bytes, BytesMut};
use prost::Message;

use super::payments::PaymentRefusal;
use super::sessions::Full;
use super::{TodayOrchestrator, unix_now};
use crate::eth::{Signature, keccak256};
use crate::pipeline::{RenditionSpec, Transcoded};
use crate::proto::{
    SegmentTranscodeData, SegmentTranscodeResult, TaskAuthToken, TranscodedRendition,
    segment_transcode_result,
};
use crate::protocol::today::{
    self, MAX_BODY_BYTES, MAX_URI_BYTES, PAYMENT_HEADER, PHASH_SUFFIX, RENDITIONS_KEPT, Refusal,
    SEGMENT_HEADER, SegmentRequest, URI_CONTENT_TYPE, URI_GET_TIMEOUT, URI_TOTAL_TIMEOUT,
};
use crate::protocol::video_profile;
use crate::segment::{self, Handled, Outcome, SegmentBody, SegmentCore, SegmentJob, Wire};
use crate::session::StreamKey;

/// A rendition under this many bytes is no rendition (go-livepeer's
/// `ZeroSegments`).
const MIN_RENDITION_BYTES: usize = 25;

/// Today's `/segment`.
#[derive(Debug)]
pub struct TodayWire {
    orchestrator: Arc<TodayOrchestrator>,
    /// Downloads `application/vnd+livepeer.uri` bodies.
    downloads: reqwest::Client,
}

impl TodayWire {
    pub fn new(orchestrator: Arc<TodayOrchestrator>) -> Result<Self, String> {
        crate::tls::install_crypto_provider();
        // A broadcaster's object storage, as go-livepeer's default client
        // reaches it: lpgpu has no root store, so certificates are not
        // checked (the body's keccak256 is, against the signed hash).
        let tls = crate::tls::unverified_client_config(None, &[b"h2", b"http/1.1"]);
        let downloads = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(URI_GET_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .no_proxy()
            .build()
            .map_err(|e| format!("building the segment download client: {e}"))?;
        Ok(Self {
            orchestrator,
            downloads,
        })
    }

    fn refuse(refusal: &Refusal, why: Option<String>) -> Handled {
        let response = (
            refusal.status(),
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{refusal}\n"),
        )
            .into_response();
        Handled::done(
            response,
            Outcome::Rejected {
                code: refusal.code(),
                why: why.unwrap_or_else(|| refusal.to_string()),
            },
        )
    }

    /// Checks 1–10 over the headers.
    fn verify(&self, headers: &HeaderMap) -> Result<(SegmentRequest, TaskAuthToken), Refusal> {
        let value = |name: &str| headers.get(name).map(|v| v.as_bytes());
        let request = today::parse_headers(value(PAYMENT_HEADER), value(SEGMENT_HEADER))?;
        let segment = &request.segment;
        // 5: with an account, the segment is the payer's.
        if !request.payment.sender.is_empty() {
            let preimage = today::segment_preimage(
                &segment.manifest_id,
                segment.seq,
                &segment.hash,
                &request.names(),
            );
            let signed = Signature::recover(&preimage, &segment.sig)
                .is_ok_and(|signer| signer.0.as_slice() == request.payment.sender.as_slice());
            if !signed {
                return Err(Refusal::SegmentSignature);
            }
        }
        let config = self.orchestrator.config();
        today::check_capabilities(
            segment.capabilities.as_ref(),
            &config.capabilities,
            &config.version,
        )?;
        let token = self
            .orchestrator
            .tokens()
            .check(segment.auth_token.as_ref(), unix_now())?
            .clone();
        let sessions = self.orchestrator.sessions();
        if !sessions.is_open(&token.session_id) && !sessions.has_room() {
            return Err(Refusal::Capped);
        }
        drop(sessions);
        Ok((request, token))
    }

    /// Checks 14–16: the segment, from the body or the URL it holds.
    async fn receive(
        &self,
        core: &SegmentCore,
        headers: &HeaderMap,
        body: &mut SegmentBody,
        expected_hash: &[u8],
    ) -> Result<Bytes, (Refusal, String)> {
        let limit = core.limits().max_segment_bytes.min(MAX_BODY_BYTES);
        let timeout = core.limits().request_timeout;
        let is_uri = headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes() == URI_CONTENT_TYPE.as_bytes());
        let (segment, hash) = if is_uri {
            let (url, _) = body
                .read(MAX_URI_BYTES as u64, timeout)
                .await
                .map_err(|e| (Refusal::BadUri, format!("reading the URL body: {e}")))?;
            let segment = self
                .download(&url, limit)
                .await
                .map_err(|why| (Refusal::BadUri, why))?;
            let hashed = segment.clone();
            let hash = tokio::task::spawn_blocking(move || keccak256(&hashed))
                .await
                .map_err(|e| (Refusal::BodyRead, format!("hashing: {e}")))?;
            (segment, hash)
        } else {
            body.read(limit, timeout).await.map_err(|e| match e {
                segment::Error::BodyTooLarge { .. } => (Refusal::BodyTooLarge, e.to_string()),
                other => (Refusal::BodyRead, other.to_string()),
            })?
        };
        if hash.as_slice() != expected_hash {
            return Err((
                Refusal::HashMismatch,
                "keccak256 of the segment does not match SegData.hash".into(),
            ));
        }
        core.metrics()
            .segment_bytes
            .with_label_values(&["in"])
            .inc_by(segment.len() as u64);
        Ok(segment)
    }

    /// Check 15: GET the URL (4 s for the answer, 8 s in all, 200, within
    /// `limit` bytes).
    async fn download(&self, url: &[u8], limit: u64) -> Result<Bytes, String> {
        let text = std::str::from_utf8(url).map_err(|_| "the URL is not UTF-8".to_string())?;
        let url = reqwest::Url::parse(text.trim()).map_err(|e| format!("bad URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("URL scheme {:?} is not http(s)", url.scheme()));
        }
        let fetch = async {
            let response = tokio::time::timeout(URI_GET_TIMEOUT, self.downloads.get(url).send())
                .await
                .map_err(|_| "no answer within 4 s".to_string())?
                .map_err(|e| format!("GET failed: {e}"))?;
            if response.status() != reqwest::StatusCode::OK {
                return Err(format!("GET answered {}", response.status()));
            }
            if response.content_length().is_some_and(|n| n > limit) {
                return Err(format!("the segment is over {limit} bytes"));
            }
            let mut response = response;
            let mut data = BytesMut::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| format!("reading the segment: {e}"))?
            {
                if (data.len() + chunk.len()) as u64 > limit {
                    return Err(format!("the segment is over {limit} bytes"));
                }
                data.extend_from_slice(&chunk);
            }
            Ok(data.freeze())
        };
        tokio::time::timeout(URI_TOTAL_TIMEOUT, fetch)
            .await
            .map_err(|_| "the download took over 8 s".to_string())?
    }
}

#[async_trait::async_trait]
impl Wire for TodayWire {
    fn name(&self) -> &'static str {
        "today"
    }

    /// Today's requests carry `Livepeer-Payment` (empty offchain) and never
    /// the 2018 `Credentials`.
    fn claims(&self, headers: &HeaderMap) -> bool {
        !headers.contains_key("credentials")
            && (headers.contains_key(PAYMENT_HEADER) || headers.contains_key(SEGMENT_HEADER))
    }

    async fn handle(
        &self,
        core: &SegmentCore,
        headers: &HeaderMap,
        body: &mut SegmentBody,
    ) -> Handled {
        let (request, token) = match self.verify(headers) {
            Ok(verified) => verified,
            Err(refusal) => return Self::refuse(&refusal, None),
        };
        // 11–13 on a paid node: the sender's next ticket parameters (for
        // the result's info), the payment credited, enough balance.
        let mut paid = None;
        if let Some(payments) = &self.orchestrator.config().payments {
            let named = (request.payment.sender.len() == 20).then(|| {
                let mut address = [0u8; 20];
                address.copy_from_slice(&request.payment.sender);
                crate::eth::Address(address)
            });
            let params = match named {
                Some(sender) => match payments.quote_for(sender).await {
                    Ok(params) => params,
                    Err(why) => return Self::refuse(&Refusal::PaymentUnavailable, Some(why)),
                },
                None => None,
            };
            match payments.process(&request.payment, &token.session_id).await {
                Ok(sender) => paid = Some((sender, params)),
                Err(PaymentRefusal::Chain(why)) => {
                    return Self::refuse(&Refusal::PaymentUnavailable, Some(why));
                }
                Err(refusal) => {
                    return Self::refuse(&Refusal::Payment(refusal.to_string()), None);
                }
            }
        }
        // 14: a declared length over the limit, before any byte is read.
        let limit = core.limits().max_segment_bytes.min(MAX_BODY_BYTES);
        if body.declared_length().is_some_and(|n| n > limit) {
            let why = format!("the body is over {limit} bytes");
            return Self::refuse(&Refusal::BodyTooLarge, Some(why));
        }
        let segment = match self
            .receive(core, headers, body, &request.segment.hash)
            .await
        {
            Ok(segment) => segment,
            Err((refusal, why)) => return Self::refuse(&refusal, Some(why)),
        };
        // The upload is done: 200 now, the result when it is ready.
        let (result_tx, result_rx) = tokio::sync::oneshot::channel::<Bytes>();
        let (outcome_tx, outcome_rx) = tokio::sync::oneshot::channel::<Outcome>();
        let work = Work {
            orchestrator: self.orchestrator.clone(),
            request,
            paid,
            token,
            segment,
            received: Instant::now(),
        };
        tokio::spawn(async move {
            let (result, outcome) = work.run().await;
            let _ = result_tx.send(Bytes::from(result.encode_to_vec()));
            let _ = outcome_tx.send(outcome);
        });
        let result = futures_util::stream::once(async move {
            result_rx
                .await
                .map_err(|_| std::io::Error::other("the transcode task ended without a result"))
        });
        let response = (StatusCode::OK, Body::from_stream(result)).into_response();
        Handled {
            response,
            outcome: Outcome::Failed {
                code: "internal",
                why: "the result was lost".into(),
            },
            finished: Some(outcome_rx),
        }
    }
}

/// One accepted segment, from its place in the session's queue to its
/// `TranscodeResult`.
struct Work {
    orchestrator: Arc<TodayOrchestrator>,
    request: SegmentRequest,
    /// On a paid node: who pays for it, and the ticket parameters its
    /// result's info quotes.
    paid: Option<(
        Option<crate::eth::Address>,
        Option<crate::proto::TicketParams>,
    )>,
    token: TaskAuthToken,
    segment: Bytes,
    received: Instant,
}

/// A result error in go-livepeer's words, with the log's cause.
struct Failure {
    text: &'static str,
    code: &'static str,
    why: String,
}

impl Failure {
    fn new(text: &'static str, code: &'static str, why: impl Into<String>) -> Self {
        Self {
            text,
            code,
            why: why.into(),
        }
    }
}

/// The words a go-livepeer broadcaster knows for a failure of the segment
/// path: the input's faults in lpms's words (not retried), the node's in
/// words it retries elsewhere.
fn failure_of(error: &segment::Error) -> Failure {
    use segment::Error::*;
    let why = error.to_string();
    match error {
        NoKeyframes => Failure::new("No keyframes in input", "no_keyframes", why),
        Undecodable(_) => Failure::new("TranscoderInvalidVideo", "undecodable_segment", why),
        Unsupported(_) => Failure::new("TranscoderUnrecognizedProfile", "unsupported_profile", why),
        TranscodeTimeout(_) => {
            Failure::new("Remote transcoder took too long", "transcode_timeout", why)
        }
        Busy { .. } | StreamBusy { .. } | StreamWaitTimedOut(_) => {
            Failure::new("OrchestratorBusy", "busy", why)
        }
        ShuttingDown => Failure::new("ErrTranscoderUnavailable", "busy", why),
        BodyTooLarge { .. } | BodyTimeout(_) | BodyRead(_) | HashMismatch | Internal(_) => {
            Failure::new("TranscoderError", "internal", why)
        }
    }
}

impl Work {
    async fn run(self) -> (SegmentTranscodeResult, Outcome) {
        let seq = self.request.segment.seq;
        let id = self.token.session_id.clone();
        let outcome = self.transcode().await;
        let orchestrator = &self.orchestrator;
        let (result, outcome) = match outcome {
            Ok((data, renditions)) => {
                tracing::info!(session = %id, seq, renditions, elapsed_ms = self.received.elapsed().as_millis() as u64,
                    "segment transcoded");
                (
                    segment_transcode_result::Result::Data(data),
                    Outcome::Transcoded,
                )
            }
            Err(failure) => (
                segment_transcode_result::Result::Error(failure.text.to_string()),
                Outcome::Failed {
                    code: failure.code,
                    why: format!("session {id} seq {seq}: {}: {}", failure.text, failure.why),
                },
            ),
        };
        let result = SegmentTranscodeResult {
            seq,
            result: Some(result),
            info: Some(orchestrator.info_for(
                self.token.clone(),
                self.paid.as_ref().and_then(|(_, params)| params.clone()),
            )),
        };
        (result, outcome)
    }

    async fn transcode(&self) -> Result<(SegmentTranscodeData, usize), Failure> {
        let orchestrator = &self.orchestrator;
        let Some(core) = orchestrator.core() else {
            return Err(Failure::new(
                "ErrTranscoderUnavailable",
                "internal",
                "no segment path",
            ));
        };
        let id = &self.token.session_id;
        let turn = orchestrator.sessions().enqueue(id, Instant::now());
        let turn = match turn {
            Ok(turn) => turn,
            Err(Full::Busy) => {
                return Err(Failure::new(
                    "OrchestratorBusy",
                    "busy",
                    "4 segments already wait",
                ));
            }
            Err(Full::Capped) => {
                return Err(Failure::new(
                    "OrchestratorCapped",
                    "capped",
                    "every session slot is held",
                ));
            }
        };
        let names = self.request.names();
        let result = async {
            // One segment of a session at a time, in arrival order.
            let _turn = turn.lock().await;
            self.execute(core).await
        }
        .await;
        let kept: Vec<String> = if result.is_ok() { names } else { Vec::new() };
        orchestrator.sessions().finish(id, &kept, Instant::now());
        let transcoded = result?;
        let specs: Vec<RenditionSpec> = transcoded
            .renditions
            .iter()
            .map(|r| r.spec.clone())
            .collect();
        if transcoded.renditions.len() != self.request.profiles.len() {
            return Err(Failure::new(
                "MismatchedSegments",
                "internal",
                "rendition count",
            ));
        }
        if transcoded
            .renditions
            .iter()
            .any(|r| r.data.len() < MIN_RENDITION_BYTES)
        {
            return Err(Failure::new(
                "ZeroSegments",
                "internal",
                "an empty rendition",
            ));
        }
        let base = &orchestrator.config().service_uri;
        let seq = self.request.segment.seq;
        let mut segments = Vec::with_capacity(specs.len());
        for rendition in &transcoded.renditions {
            // .ts and .mp4 as go-livepeer names them; .mkv for Matroska.
            let extension = rendition.spec.container.extension();
            let profile = &rendition.spec.name;
            let name = format!("{id}/{profile}/{seq}.{extension}");
            if seq >= RENDITIONS_KEPT as i64 {
                let old = format!(
                    "{id}/{profile}/{}.{extension}",
                    seq - RENDITIONS_KEPT as i64
                );
                core.store().remove(&format!("{old}{PHASH_SUFFIX}"));
                core.store().remove(&old);
            }
            core.store().insert(name.clone(), rendition.data.clone());
            let url = format!("{base}/stream/{name}");
            // go-livepeer serves the hash beside its rendition, at url + ".phash".
            let perceptual_hash_url = match &rendition.perceptual_hash {
                Some(hash) if self.request.segment.calc_perceptual_hash => {
                    core.store()
                        .insert(format!("{name}{PHASH_SUFFIX}"), hash.clone());
                    format!("{url}{PHASH_SUFFIX}")
                }
                _ => String::new(),
            };
            let pixels =
                rendition.frames * u64::from(rendition.width) * u64::from(rendition.height);
            segments.push(TranscodedRendition {
                url,
                pixels: i64::try_from(pixels).unwrap_or(i64::MAX),
                perceptual_hash_url,
            });
        }
        core.metrics()
            .segment_bytes
            .with_label_values(&["out"])
            .inc_by(
                transcoded
                    .renditions
                    .iter()
                    .map(|r| r.data.len() as u64)
                    .sum(),
            );
        // The pixels made, at this node's price (beyond go-livepeer, which
        // takes the price the broadcaster states).
        if let (Some(payments), Some((Some(sender), _))) =
            (&orchestrator.config().payments, &self.paid)
        {
            let pixels = transcoded.renditions.iter().map(|r| r.pixels()).sum();
            payments.debit(*sender, id, pixels);
        }
        let sig = sign_renditions(orchestrator, transcoded).await;
        Ok((SegmentTranscodeData { segments, sig }, specs.len()))
    }

    async fn execute(&self, core: &SegmentCore) -> Result<Transcoded, Failure> {
        let renditions = self
            .request
            .profiles
            .iter()
            .map(video_profile::to_rendition)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                Failure::new(
                    "TranscoderUnrecognizedProfile",
                    "unsupported_profile",
                    e.to_string(),
                )
            })?;
        let deadline = self.received + crate::protocol::task_deadline(self.request.duration);
        let job = SegmentJob {
            stream: StreamKey::new(&self.token.session_id),
            seq: u64::try_from(self.request.segment.seq).unwrap_or(0),
            renditions,
            expected_hash: None,
            deadline: Some(deadline),
            perceptual_hash: self.request.segment.calc_perceptual_hash,
        };
        let admission = core.admit(&job).await.map_err(|e| failure_of(&e))?;
        core.execute(admission, &job, self.segment.clone())
            .await
            .map_err(|e| failure_of(&e))
    }
}

/// `TranscodeData.sig` by the node's key ([`today::rendition_signature`]);
/// empty offchain. CPU work, off the executor.
async fn sign_renditions(orchestrator: &TodayOrchestrator, transcoded: Transcoded) -> Vec<u8> {
    let Some(key) = orchestrator.config().signer.clone() else {
        return Vec::new();
    };
    tokio::task::spawn_blocking(move || {
        today::rendition_signature(&key, transcoded.renditions.iter().map(|r| &r.data[..]))
    })
    .await
    .unwrap_or_default()
}
