//! The transcoder: `POST /segment` (verify, stream and hash the body, transcode,
//! answer with renditions), `GET /stream/<name>.ts` for protobuf-mode results,
//! and `GET /healthz`.
//!
//! Verification is [`verify`]'s plain functions; this module adapts HTTP to
//! them, keeps CPU work off the async executor (hashing on a blocking thread
//! while the body streams in, transcoding on `spawn_blocking` behind a
//! semaphore of `--max-sessions` slots), and maps every outcome to a status
//! once.

pub mod remote;
/// The `/stream/` store ([`crate::store`]), where it always lived.
pub use crate::store;
pub mod verify;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use prost::Message;
use tokio::sync::Semaphore;

use crate::chain::{Chain, ChainError};
use crate::eth::{Address, Keccak256Hasher, PrivateKey, keccak256};
use crate::metrics::Metrics;
use crate::pipeline::{Backend, SegmentOptions, TranscodeError, Transcoded};
use crate::pool::Pool;
use crate::pool::placement::JobNeeds;
use crate::proto::{TranscodeData, TranscodeResult, TranscodedSegmentData, transcode_result};
use store::{SegmentStore, StoreLimits};
use verify::{
    Rejection, SegmentHeaders, VerifiedSegment, authenticate, authorize, check_body_hash,
};

/// Limits and identity of a transcoder.
#[derive(Debug, Clone)]
pub struct TranscoderConfig {
    /// Credentials must be signed by this orchestrator.
    pub orchestrator: Address,
    /// This transcoder's `https://host:port`, the base of `/stream/` URLs.
    pub service_uri: String,
    /// Signs `TranscodeData.sig`; without one the signature is empty.
    pub signer: Option<Arc<PrivateKey>>,
    pub max_segment_bytes: u64,
    pub max_sessions: usize,
    /// Time allowed for the body to arrive.
    pub request_timeout: Duration,
    /// Time allowed for one transcode before the request fails.
    pub transcode_timeout: Duration,
    /// Put internal error text in responses (`--expose-errors`).
    pub expose_errors: bool,
    pub store: StoreLimits,
}

impl TranscoderConfig {
    pub const DEFAULT_MAX_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
}

/// What transcodes the segments a node accepts.
#[derive(Debug)]
enum Work {
    /// This process's backend, behind `--max-sessions` slots.
    Local {
        backend: Arc<dyn Backend>,
        slots: Arc<Semaphore>,
    },
    /// The pool of registered transcoders (and the node's own backend as a
    /// member, when it has one).
    Pool(Arc<Pool>),
}

/// A segment's claim on what will transcode it, taken before its body is read.
enum Admission {
    Slot(tokio::sync::OwnedSemaphorePermit),
    Pool(crate::pool::Reservation),
}

/// Everything `POST /segment` needs; shared by the handlers.
#[derive(Debug)]
pub struct Transcoder {
    config: TranscoderConfig,
    chain: Arc<dyn Chain>,
    work: Work,
    store: SegmentStore,
    metrics: Metrics,
    draining: std::sync::atomic::AtomicBool,
}

impl Transcoder {
    pub fn new(
        config: TranscoderConfig,
        chain: Arc<dyn Chain>,
        backend: Arc<dyn Backend>,
        metrics: Metrics,
    ) -> Self {
        let slots = Arc::new(Semaphore::new(config.max_sessions.max(1)));
        metrics
            .transcode_slots
            .set(config.max_sessions.max(1) as i64);
        metrics
            .backend_info
            .with_label_values(&[backend.name(), &backend.device()])
            .set(1);
        let store = SegmentStore::new(config.store);
        Self {
            config,
            chain,
            work: Work::Local { backend, slots },
            store,
            metrics,
            draining: Default::default(),
        }
    }

    /// A node whose segments are served by `pool` (which holds the node's
    /// own backend as a member, when it has one).
    pub fn with_pool(
        config: TranscoderConfig,
        chain: Arc<dyn Chain>,
        pool: Arc<Pool>,
        metrics: Metrics,
    ) -> Self {
        metrics.transcode_slots.set(pool.capacity() as i64);
        metrics
            .backend_info
            .with_label_values(&["pool", "remote transcoders"])
            .set(1);
        let store = SegmentStore::new(config.store);
        Self {
            config,
            chain,
            work: Work::Pool(pool),
            store,
            metrics,
            draining: Default::default(),
        }
    }

    /// The pool, when segments go to one.
    pub fn pool(&self) -> Option<&Arc<Pool>> {
        match &self.work {
            Work::Pool(pool) => Some(pool),
            Work::Local { .. } => None,
        }
    }

    fn has_room(&self) -> bool {
        match &self.work {
            Work::Local { slots, .. } => slots.available_permits() > 0,
            Work::Pool(pool) => pool.has_room(),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Ready for segments: not shutting down, and a transcode slot is free.
    pub fn is_ready(&self) -> bool {
        !self.draining.load(std::sync::atomic::Ordering::Relaxed) && self.has_room()
    }

    /// From now on `/readyz` says no: the node is shutting down.
    pub fn start_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Whether a process is ready for work: Ok, or why not (`/readyz`).
pub trait Readiness: Send + Sync + std::fmt::Debug {
    fn readiness(&self) -> Result<(), String>;
}

impl Readiness for Transcoder {
    fn readiness(&self) -> Result<(), String> {
        if self.is_ready() {
            Ok(())
        } else {
            Err(match &self.work {
                Work::Local { .. } => "draining or every slot busy".into(),
                Work::Pool(pool) if pool.remote_members() == 0 && pool.capacity() == 0 => {
                    "no transcoder has registered".into()
                }
                Work::Pool(_) => "draining or every member of the pool at capacity".into(),
            })
        }
    }
}

impl Readiness for remote::RemoteTranscoder {
    fn readiness(&self) -> Result<(), String> {
        remote::RemoteTranscoder::readiness(self)
    }
}

/// `/readyz` of anything [`Readiness`]: 200 `ready`, or 503 `not ready: why`.
pub fn readiness_response(readiness: &dyn Readiness) -> Response {
    match readiness.readiness() {
        Ok(()) => "ready\n".into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

/// The HTTP routes of a node: `/healthz`, and `/segment`, `/stream/…` and
/// `/readyz` when it transcodes.
pub fn http_router(transcoder: Option<Arc<Transcoder>>) -> Router {
    let router = Router::new().route("/healthz", get(healthz));
    match transcoder {
        Some(transcoder) => router.merge(
            Router::new()
                .route("/segment", post(post_segment))
                .route("/stream/{name}", get(get_stream))
                .route("/readyz", get(readyz))
                .with_state(transcoder),
        ),
        None => router.route("/readyz", get(healthz)),
    }
}

/// Alive: the process answers.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready to take segments: not draining and a slot is free.
pub async fn readyz(State(transcoder): State<Arc<Transcoder>>) -> Response {
    readiness_response(transcoder.as_ref())
}

fn json_error(status: StatusCode, code: &str, detail: &str) -> Response {
    let body = serde_json::json!({ "error": code, "detail": detail });
    (status, axum::Json(body)).into_response()
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

async fn post_segment(
    State(transcoder): State<Arc<Transcoder>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let metrics = &transcoder.metrics;
    metrics.inflight_segments.inc();
    // The body stays here until it is read; whatever is left of it when the
    // answer is decided early is drained in the background, so the client
    // gets the whole answer (see `drain`).
    let mut body = Some(body);
    let response = match transcoder.handle_segment(&headers, &mut body).await {
        Ok(response) => response,
        Err(rejection) => {
            tracing::warn!(
                code = rejection.code(),
                status = rejection.status().as_u16(),
                "segment rejected: {rejection}"
            );
            metrics
                .rejections
                .with_label_values(&[rejection.code()])
                .inc();
            metrics.segments.with_label_values(&["rejected"]).inc();
            transcoder.rejection_response(&rejection)
        }
    };
    if let Some(rest) = body {
        transcoder.drain(rest);
    }
    metrics.inflight_segments.dec();
    metrics
        .segment_seconds
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn get_stream(
    State(transcoder): State<Arc<Transcoder>>,
    Path(name): Path<String>,
) -> Response {
    match transcoder.store.get(&name) {
        Some(data) => ([(header::CONTENT_TYPE, "video/MP2T")], data).into_response(),
        None => json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such rendition (or it has expired)",
        ),
    }
}

impl Transcoder {
    fn rejection_response(&self, rejection: &Rejection) -> Response {
        let detail = if self.config.expose_errors {
            rejection.to_string()
        } else {
            rejection.public_detail()
        };
        let mut response = json_error(rejection.status(), rejection.code(), &detail);
        if rejection.status() == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }

    fn chain_rejection(&self, error: ChainError) -> Rejection {
        tracing::error!("reading the chain failed: {error}");
        Rejection::ChainUnavailable(error.to_string())
    }

    /// Reads and discards the rest of a body whose answer was decided before
    /// it arrived. Answering and then resetting the stream (what dropping the
    /// body does) loses the answer for real clients: curl and httpx report
    /// no status when a server resets a stream they are still sending on,
    /// even after a complete response. So the answer goes out whole and the
    /// body is read to its end, returning HTTP/2 flow-control credit (or
    /// keeping the HTTP/1.1 connection in step), without buffering it and
    /// without a transcode slot. Bounded: at most twice `--max-segment-bytes`
    /// and `--request-timeout-seconds`; past either the stream (or
    /// connection) is ended.
    fn drain(&self, body: Body) {
        let limit = self.config.max_segment_bytes.saturating_mul(2);
        let timeout = self.config.request_timeout;
        let drained = self.metrics.drained_bytes.clone();
        tokio::spawn(async move {
            let mut body = body;
            let mut total = 0u64;
            let outcome = tokio::time::timeout(timeout, async {
                while let Some(frame) = body.frame().await {
                    let Ok(frame) = frame else {
                        return "the client's stream failed";
                    };
                    if let Some(data) = frame.data_ref() {
                        total += data.len() as u64;
                        drained.inc_by(data.len() as u64);
                        if total > limit {
                            return "the drain limit was reached";
                        }
                    }
                }
                "done"
            })
            .await
            .unwrap_or("the request timeout passed");
            if outcome != "done" {
                tracing::debug!(bytes = total, "stopped draining a rejected body: {outcome}");
            }
        });
    }

    async fn handle_segment(
        &self,
        headers: &HeaderMap,
        body: &mut Option<Body>,
    ) -> Result<Response, Rejection> {
        let request = SegmentHeaders {
            authorization: header_text(headers, "authorization"),
            credentials: header_text(headers, "credentials"),
            segment: header_text(headers, "livepeer-segment"),
            content_type: header_text(headers, "content-type"),
        };
        let job_id = authenticate(&request, self.config.orchestrator)?;
        let job = self
            .chain
            .job(job_id)
            .await
            .map_err(|e| self.chain_rejection(e))?;
        let block = self
            .chain
            .current_block()
            .await
            .map_err(|e| self.chain_rejection(e))?;
        let verified = authorize(&request, job_id, job, block)?;

        let limit = self.config.max_segment_bytes;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit) {
            return Err(Rejection::BodyTooLarge { limit });
        }
        // Claim a slot (or a place in the pool) before reading the body: a
        // full node answers at once.
        let specs = crate::pipeline::rendition::from_profiles(&verified.profiles);
        let stream = verified.job.stream_id.clone();
        let admission = match &self.work {
            Work::Local { slots, .. } => Admission::Slot(
                slots
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| Rejection::Busy(self.config.max_sessions))?,
            ),
            Work::Pool(pool) => {
                let needs = JobNeeds {
                    capabilities: crate::pool::relay::job_capabilities(&specs),
                    min_version: None,
                };
                // A segment of a stream already in flight waits its turn,
                // within the time its body may take.
                let patience = self.config.request_timeout;
                Admission::Pool(
                    pool.reserve(&stream, needs, patience)
                        .await
                        .map_err(|_| Rejection::Busy(pool.capacity()))?,
                )
            }
        };

        let timeout = self.config.request_timeout;
        let reading = body.as_mut().expect("the body is read once, here");
        let (segment, hash) = tokio::time::timeout(timeout, read_and_hash(reading, limit))
            .await
            .map_err(|_| Rejection::Timeout(timeout.as_secs()))??;
        // Read to its end: nothing is left to drain.
        *body = None;
        check_body_hash(&verified, &hash)?;
        self.metrics
            .segment_bytes
            .with_label_values(&["in"])
            .inc_by(segment.len() as u64);

        let signer = self.config.signer.clone();
        let work = match admission {
            Admission::Slot(permit) => {
                let Work::Local { backend, .. } = &self.work else {
                    unreachable!("slots are local")
                };
                let backend = backend.clone();
                let options = SegmentOptions {
                    clip: None,
                    stream: Some(stream),
                };
                tokio::task::spawn_blocking(move || {
                    let _slot = permit;
                    let started = Instant::now();
                    let result = backend.transcode(segment, &specs, &options);
                    let elapsed = started.elapsed();
                    let signature = sign_renditions(&result, signer);
                    (result, elapsed, signature)
                })
            }
            Admission::Pool(reservation) => {
                // The broadcaster's patience for this segment.
                // The broadcaster waits max(8 s, 4 × duration): the pool
                // reads the duration from the segment and keeps inside it.
                let budget = Duration::from_secs(300);
                let seq = verified.segment.seq;
                tokio::spawn(async move {
                    let started = Instant::now();
                    let result = reservation.run(segment, specs, seq, budget).await;
                    let elapsed = started.elapsed();
                    let (result, signature) = tokio::task::spawn_blocking(move || {
                        let signature = sign_renditions(&result, signer);
                        (result, signature)
                    })
                    .await
                    .unwrap_or_else(|e| {
                        (
                            Err(TranscodeError::Internal(format!("signing failed: {e}"))),
                            Vec::new(),
                        )
                    });
                    (result, elapsed, signature)
                })
            }
        };
        let multipart = wants_multipart(headers);
        let seq = verified.segment.seq;
        let outcome = match tokio::time::timeout(self.config.transcode_timeout, work).await {
            Ok(Ok((result, elapsed, signature))) => {
                let backend = result.as_ref().map_or(self.backend_name(), |t| t.backend);
                self.metrics
                    .transcode_seconds
                    .with_label_values(&[backend])
                    .observe(elapsed.as_secs_f64());
                if let Ok(Transcoded {
                    fallback: Some(why),
                    ..
                }) = &result
                {
                    tracing::warn!(job = verified.job.id, seq = verified.segment.seq, %why,
                        "segment transcoded on the CPU after the GPU failed");
                    self.metrics.gpu_fallbacks.inc();
                }
                result.map(|t| (t, signature))
            }
            Ok(Err(join_error)) => Err(TranscodeError::Internal(format!(
                "the transcode task failed: {join_error}"
            ))),
            Err(_) => Err(TranscodeError::Internal(format!(
                "transcoding took longer than {} s",
                self.config.transcode_timeout.as_secs()
            ))),
        };
        Ok(match outcome {
            Ok((transcoded, signature)) => {
                tracing::info!(
                    job = verified.job.id,
                    seq,
                    renditions = transcoded.renditions.len(),
                    source_seconds = transcoded.source_seconds,
                    "segment transcoded"
                );
                self.count_success(&transcoded);
                if multipart {
                    multipart_response(&transcoded)
                } else {
                    self.protobuf_response(&verified, transcoded, signature)
                }
            }
            Err(error) => {
                let code = match error {
                    TranscodeError::Undecodable(_) | TranscodeError::NoKeyframes => {
                        "undecodable_segment"
                    }
                    TranscodeError::Unsupported(_) => "unsupported_profile",
                    TranscodeError::Internal(_) => "internal",
                };
                tracing::warn!(
                    job = verified.job.id,
                    seq,
                    code,
                    "transcode failed: {error}"
                );
                self.metrics.segments.with_label_values(&["failed"]).inc();
                self.metrics.rejections.with_label_values(&[code]).inc();
                self.failure_response(&error, code, seq, multipart)
            }
        })
    }

    fn backend_name(&self) -> &'static str {
        match &self.work {
            Work::Local { backend, .. } => backend.name(),
            Work::Pool(_) => "pool",
        }
    }

    fn count_success(&self, transcoded: &Transcoded) {
        self.metrics.segments.with_label_values(&["ok"]).inc();
        self.metrics.record_transcoded(transcoded.source_seconds);
        for rendition in &transcoded.renditions {
            self.metrics
                .renditions
                .with_label_values(&[&rendition.spec.name])
                .inc();
            self.metrics
                .segment_bytes
                .with_label_values(&["out"])
                .inc_by(rendition.data.len() as u64);
        }
    }

    fn failure_response(
        &self,
        error: &TranscodeError,
        code: &str,
        seq: u64,
        multipart: bool,
    ) -> Response {
        let detail = if self.config.expose_errors {
            error.to_string()
        } else {
            match error {
                TranscodeError::Undecodable(_) => "the segment does not decode".to_string(),
                TranscodeError::NoKeyframes => "the segment has no keyframe".to_string(),
                TranscodeError::Unsupported(_) => {
                    "a profile of this job is not supported".to_string()
                }
                TranscodeError::Internal(_) => "transcoding failed on this node".to_string(),
            }
        };
        if multipart {
            let status = match error {
                TranscodeError::Undecodable(_)
                | TranscodeError::NoKeyframes
                | TranscodeError::Unsupported(_) => StatusCode::UNPROCESSABLE_ENTITY,
                TranscodeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            return json_error(status, code, &detail);
        }
        let text = if self.config.expose_errors {
            format!("{code}: {detail}")
        } else {
            code.to_string()
        };
        let result = TranscodeResult {
            seq: seq as i64,
            result: Some(transcode_result::Result::Error(text)),
        };
        protobuf(result)
    }

    /// go-livepeer's answer: URLs of the renditions, which wait in the store.
    fn protobuf_response(
        &self,
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
            if !self.store.insert(name.clone(), rendition.data) {
                tracing::warn!(%name, "rendition larger than the whole stream store; it cannot be fetched");
            }
            segments.push(TranscodedSegmentData {
                url: format!("{}/stream/{name}", self.config.service_uri),
            });
        }
        let data = TranscodeData {
            segments,
            sig: signature,
        };
        protobuf(TranscodeResult {
            seq: seq as i64,
            result: Some(transcode_result::Result::Data(data)),
        })
    }
}

/// The orchestrator's signature over the renditions' hashes (CPU work: run
/// it on a blocking thread); empty without a key or renditions.
fn sign_renditions(
    result: &Result<Transcoded, TranscodeError>,
    signer: Option<Arc<PrivateKey>>,
) -> Vec<u8> {
    match (result, signer) {
        (Ok(transcoded), Some(key)) => {
            let hashes: Vec<u8> = transcoded
                .renditions
                .iter()
                .flat_map(|r| keccak256(&r.data))
                .collect();
            key.sign(&hashes).to_vec()
        }
        _ => Vec::new(),
    }
}

fn protobuf(result: TranscodeResult) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        result.encode_to_vec(),
    )
        .into_response()
}

/// lpgpu's inline answer: one `video/MP2T` part per rendition, in job order.
/// The body streams the renditions' own buffers: no rendition is copied.
fn multipart_response(transcoded: &Transcoded) -> Response {
    let boundary = hex::encode(rand::random::<[u8; 12]>());
    let mut chunks: Vec<Bytes> = Vec::with_capacity(3 * transcoded.renditions.len() + 1);
    for rendition in &transcoded.renditions {
        chunks.push(Bytes::from(format!(
            "--{boundary}\r\nContent-Type: video/MP2T\r\nRendition-Name: {}\r\nContent-Length: {}\r\n\r\n",
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

/// Reads the body up to `limit` bytes, hashing it on a blocking thread as the
/// chunks arrive (one pass, off the executor).
async fn read_and_hash(body: &mut Body, limit: u64) -> Result<(Bytes, [u8; 32]), Rejection> {
    let (chunks, mut receiver) = tokio::sync::mpsc::channel::<Bytes>(32);
    let hasher = tokio::task::spawn_blocking(move || {
        let mut hasher = Keccak256Hasher::new();
        while let Some(chunk) = receiver.blocking_recv() {
            hasher.update(&chunk);
        }
        hasher.finalize()
    });
    let mut collected = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Rejection::BodyRead(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if collected.len() as u64 + data.len() as u64 > limit {
            return Err(Rejection::BodyTooLarge { limit });
        }
        collected.extend_from_slice(&data);
        if chunks.send(data).await.is_err() {
            return Err(Rejection::BodyRead("the hashing thread stopped".into()));
        }
    }
    drop(chunks);
    let hash = hasher
        .await
        .map_err(|e| Rejection::BodyRead(format!("hashing failed: {e}")))?;
    Ok((collected.freeze(), hash))
}
