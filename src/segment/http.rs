//! The HTTP edge of the segment path: one `POST /segment` for every wire
//! generation (each [`Wire`] says which requests are its own by their
//! headers; the first wire is the default), the node's `/stream/…` store,
//! `/healthz` and `/readyz`. The metrics of a `/segment` request are
//! recorded here, once, whichever wire answered it.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::{SegmentBody, SegmentCore};
use crate::metrics::Metrics;

/// How a `/segment` request ended, for the metrics and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Renditions made.
    Transcoded,
    /// Refused before transcoding (a check, admission, the body).
    Rejected { code: &'static str, why: String },
    /// Transcoding failed.
    Failed { code: &'static str, why: String },
}

/// A wire's answer to one request.
#[derive(Debug)]
pub struct Handled {
    pub response: Response,
    pub outcome: Outcome,
    /// When the response went out before the work was done (today's wire
    /// answers 200 at once and the result follows in the body): how the
    /// work ends. `outcome` is then recorded only if this is dropped.
    pub finished: Option<tokio::sync::oneshot::Receiver<Outcome>>,
}

impl Handled {
    /// An answer whose outcome is known.
    pub fn done(response: Response, outcome: Outcome) -> Self {
        Self {
            response,
            outcome,
            finished: None,
        }
    }
}

/// One wire generation's `/segment`: plain verification and rendering
/// around [`SegmentCore::process`].
#[async_trait::async_trait]
pub trait Wire: Send + Sync + std::fmt::Debug {
    /// For logs: `v2`, …
    fn name(&self) -> &'static str;
    /// Whether a request with these headers is this wire's.
    fn claims(&self, headers: &HeaderMap) -> bool;
    async fn handle(
        &self,
        core: &SegmentCore,
        headers: &HeaderMap,
        body: &mut SegmentBody,
    ) -> Handled;
}

/// Whether a process is ready for work: Ok, or why not (`/readyz`).
pub trait Readiness: Send + Sync + std::fmt::Debug {
    fn readiness(&self) -> Result<(), String>;

    /// More for `/status` (its `details` field), where the part has any.
    fn details(&self) -> Option<serde_json::Value> {
        None
    }
}

impl Readiness for SegmentCore {
    fn readiness(&self) -> Result<(), String> {
        if self.is_ready() {
            return Ok(());
        }
        Err(match self.pool() {
            None => "draining or every slot busy".into(),
            Some(pool) if pool.remote_members() == 0 && pool.capacity() == 0 => {
                "no transcoder has registered".into()
            }
            Some(_) => "draining or every member of the pool at capacity".into(),
        })
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

/// Alive: the process answers.
pub async fn healthz() -> &'static str {
    "ok\n"
}

#[derive(Debug)]
struct Segments {
    core: Arc<SegmentCore>,
    /// The first is the default for requests no wire claims.
    wires: Vec<Arc<dyn Wire>>,
}

/// The HTTP routes of a node: `/healthz`, and with a segment path
/// `/segment` (dispatched to `wires`), `/stream/…` and `/readyz`.
pub fn router(core: Option<Arc<SegmentCore>>, wires: Vec<Arc<dyn Wire>>) -> Router {
    let router = Router::new().route("/healthz", get(healthz));
    let Some(core) = core.filter(|_| !wires.is_empty()) else {
        return router.route("/readyz", get(healthz));
    };
    let store = crate::store::router(core.store().clone());
    let segments = Arc::new(Segments {
        core: core.clone(),
        wires,
    });
    router
        .merge(store)
        .route("/segment", post(post_segment).with_state(segments))
        .route(
            "/readyz",
            get(move || {
                let core = core.clone();
                async move { readiness_response(core.as_ref()) }
            }),
        )
}

async fn post_segment(
    State(segments): State<Arc<Segments>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let core = &segments.core;
    let metrics = core.metrics();
    metrics.inflight_segments.inc();
    let wire = segments
        .wires
        .iter()
        .find(|w| w.claims(&headers))
        .unwrap_or(&segments.wires[0]);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let mut body = SegmentBody::new(body, declared);
    let Handled {
        response,
        outcome,
        finished,
    } = wire.handle(core, &headers, &mut body).await;
    // What is left of a body answered early is read to its end, bounded.
    let limits = core.limits();
    body.drain(
        limits.max_segment_bytes.saturating_mul(2),
        limits.request_timeout,
        metrics,
    );
    let status = response.status().as_u16();
    let name = wire.name();
    match finished {
        None => record(metrics, name, status, &outcome, started),
        Some(finished) => {
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let outcome = finished.await.unwrap_or(outcome);
                record(&metrics, name, status, &outcome, started);
            });
        }
    }
    response
}

/// The metrics and log line of one `/segment` request, once it ended.
fn record(metrics: &Metrics, wire: &'static str, status: u16, outcome: &Outcome, started: Instant) {
    match outcome {
        Outcome::Transcoded => metrics.segments.with_label_values(&["ok"]).inc(),
        Outcome::Rejected { code, why } => {
            tracing::warn!(wire, code, status, "segment rejected: {why}");
            metrics.rejections.with_label_values(&[code]).inc();
            metrics.segments.with_label_values(&["rejected"]).inc();
        }
        Outcome::Failed { code, why } => {
            tracing::warn!(wire, code, "transcode failed: {why}");
            metrics.rejections.with_label_values(&[code]).inc();
            metrics.segments.with_label_values(&["failed"]).inc();
        }
    }
    metrics.inflight_segments.dec();
    metrics
        .segment_seconds
        .observe(started.elapsed().as_secs_f64());
}
