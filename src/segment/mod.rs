//! The generation-neutral path of one segment, below every wire: admit
//! (a slot of the node's executor, or a place in its pool) → read and hash
//! the body → execute → keep renditions in the node's one [`StreamStore`].
//! Each wire is a thin adapter over it ([`Wire`]: the 2018 `/segment` in
//! `transcoder`; today's broadcaster wire next): it verifies its own headers
//! with plain functions, hands a [`SegmentJob`] here, and renders the
//! outcome or the one [`Error`] in its own form. [`http`] is the HTTP edge:
//! one dispatcher on `POST /segment` choosing the wire by its headers,
//! `/healthz` and `/readyz`.

pub mod body;
mod error;
pub mod http;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use self::body::SegmentBody;
pub use self::error::{Blame, Error, Stage};
pub use self::http::{Handled, Outcome, Readiness, Wire};
use crate::metrics::Metrics;
use crate::pipeline::workers::{Job, Ticket, Workers};
use crate::pipeline::{RenditionSpec, Transcoded};
use crate::pool::placement::JobNeeds;
use crate::pool::{Pool, PoolError, Reservation};
use crate::session::{SESSION_IDLE, Sessions, StreamKey};
use crate::store::StreamStore;

/// One segment, as every wire hands it to the core.
#[derive(Debug, Clone)]
pub struct SegmentJob {
    pub stream: StreamKey,
    pub seq: u64,
    pub renditions: Vec<RenditionSpec>,
    /// The keccak256 the body must have, when the wire signs one.
    pub expected_hash: Option<[u8; 32]>,
    /// The latest moment the renditions are still of use (a broadcaster's
    /// patience), when the wire knows one; the transcode also stops at
    /// `--transcode-timeout-seconds` after it starts, whichever is first.
    pub deadline: Option<Instant>,
    /// Also make each rendition's perceptual hash (capability 14; today's
    /// `calc_perceptual_hash`).
    pub perceptual_hash: bool,
}

impl SegmentJob {
    /// The capabilities this segment needs of whoever transcodes it.
    pub fn needs(&self) -> crate::protocol::capabilities::CapabilitySet {
        let mut needs = crate::protocol::video_profile::needs(&self.renditions);
        if self.perceptual_hash {
            needs.insert(crate::protocol::capabilities::MPEG7_VIDEO_SIGNATURE);
        }
        needs
    }
}

/// Limits of the segment path (the upload and slot flags).
#[derive(Debug, Clone, Copy)]
pub struct SegmentLimits {
    /// Largest body accepted (`--max-segment-bytes`).
    pub max_segment_bytes: u64,
    /// Time allowed for the body to arrive; also how long a segment waits
    /// behind its stream in a pool.
    pub request_timeout: Duration,
    /// Time allowed for one transcode.
    pub transcode_timeout: Duration,
}

/// What executes segments.
#[derive(Debug, Clone)]
pub enum Engine {
    /// This process's backend, behind its executor's slots.
    Local(Workers),
    /// The pool of registered transcoders (and the node's own backend as a
    /// member, when it has one).
    Pool(Arc<Pool>),
}

/// A segment's claim on what will execute it, taken before its body is read.
#[derive(Debug)]
pub enum Admission {
    Local(Ticket),
    Pool(Reservation),
}

/// How often idle sessions of local streams are looked for.
const SESSION_SWEEP: Duration = Duration::from_secs(5);

/// The segment path of a node.
#[derive(Debug)]
pub struct SegmentCore {
    engine: Engine,
    /// The sessions of streams transcoded here (a pool keeps its own): one
    /// that ends releases what the backend keeps for it.
    sessions: Option<Arc<Sessions>>,
    store: Arc<StreamStore>,
    limits: SegmentLimits,
    metrics: Metrics,
    draining: AtomicBool,
}

impl SegmentCore {
    pub fn new(
        engine: Engine,
        store: Arc<StreamStore>,
        limits: SegmentLimits,
        metrics: Metrics,
    ) -> Self {
        if let Engine::Pool(_) = &engine {
            metrics
                .backend_info
                .with_label_values(&["pool", "remote transcoders"])
                .set(1);
        }
        let sessions = match &engine {
            Engine::Local(workers) => {
                let sessions = Sessions::new(SESSION_IDLE);
                let backend = workers.backend().clone();
                sessions.on_end(Arc::new(move |stream: &StreamKey, _| {
                    backend.end_stream(stream.as_str());
                }));
                sessions.start_sweeper(SESSION_SWEEP);
                Some(sessions)
            }
            Engine::Pool(_) => None,
        };
        Self {
            engine,
            sessions,
            store,
            limits,
            metrics,
            draining: AtomicBool::new(false),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The pool, when segments go to one.
    pub fn pool(&self) -> Option<&Arc<Pool>> {
        match &self.engine {
            Engine::Pool(pool) => Some(pool),
            Engine::Local(_) => None,
        }
    }

    pub fn store(&self) -> &Arc<StreamStore> {
        &self.store
    }

    pub fn limits(&self) -> &SegmentLimits {
        &self.limits
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn has_room(&self) -> bool {
        match &self.engine {
            Engine::Local(workers) => workers.has_free_slot(),
            Engine::Pool(pool) => pool.has_room(),
        }
    }

    /// The broadcaster ended `stream`: what the backend or the pool keeps
    /// for it goes now, not after it idles out.
    pub fn end_stream(&self, stream: &StreamKey) {
        match &self.engine {
            Engine::Local(_) => {
                if let Some(sessions) = &self.sessions {
                    sessions.end(stream, crate::session::EndReason::Teardown);
                }
            }
            Engine::Pool(pool) => pool.end_stream(stream),
        }
    }

    /// Ready for segments: not shutting down, and a slot is free.
    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed) && self.has_room()
    }

    /// From now on `/readyz` says no: the node is shutting down.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Claims a slot (or a place in the pool) before the body is read: a
    /// full node answers at once.
    pub async fn admit(&self, job: &SegmentJob) -> Result<Admission, Error> {
        match &self.engine {
            Engine::Local(workers) => {
                let ticket = workers.admit(&job.stream)?;
                if let Some(sessions) = &self.sessions {
                    sessions.segment(&job.stream, false);
                }
                Ok(Admission::Local(ticket))
            }
            Engine::Pool(pool) => {
                let needs = JobNeeds {
                    capabilities: job.needs(),
                    min_version: None,
                };
                // A segment of a stream already in flight waits its turn,
                // within the time its body may take.
                let patience = self.limits.request_timeout;
                let started = Instant::now();
                match pool.reserve(job.stream.as_str(), needs, patience).await {
                    Ok(reservation) => Ok(Admission::Pool(reservation)),
                    Err(PoolError::Busy) => Err(Error::Busy {
                        slots: pool.capacity(),
                    }),
                    Err(PoolError::StreamBusy) => Err(Error::StreamWaitTimedOut(started.elapsed())),
                }
            }
        }
    }

    /// Reads the body within the limits and checks its hash.
    pub async fn receive(&self, job: &SegmentJob, body: &mut SegmentBody) -> Result<Bytes, Error> {
        let (segment, hash) = body
            .read(self.limits.max_segment_bytes, self.limits.request_timeout)
            .await?;
        if job.expected_hash.is_some_and(|expected| expected != hash) {
            return Err(Error::HashMismatch);
        }
        self.metrics
            .segment_bytes
            .with_label_values(&["in"])
            .inc_by(segment.len() as u64);
        Ok(segment)
    }

    /// Transcodes an admitted segment within `--transcode-timeout-seconds`.
    pub async fn execute(
        &self,
        admission: Admission,
        job: &SegmentJob,
        segment: Bytes,
    ) -> Result<Transcoded, Error> {
        let now = Instant::now();
        let limit = now + self.limits.transcode_timeout;
        let deadline = job.deadline.map_or(limit, |d| d.min(limit));
        let timeout = deadline.saturating_duration_since(now);
        match admission {
            Admission::Local(ticket) => {
                let work = Job {
                    segment,
                    renditions: job.renditions.clone(),
                    clip: None,
                    perceptual_hash: job.perceptual_hash,
                    deadline,
                };
                ticket
                    .run(work)
                    .await
                    .map_err(|e| Error::from_run(e, timeout))
            }
            Admission::Pool(reservation) => {
                // The broadcaster waits max(8 s, 4 × duration): the pool
                // reads the duration from the segment and keeps inside it.
                let budget = Duration::from_secs(300);
                let run = reservation.run(
                    segment,
                    job.renditions.clone(),
                    job.perceptual_hash,
                    job.seq,
                    budget,
                );
                match tokio::time::timeout(timeout, run).await {
                    Ok(result) => result.map_err(Error::from),
                    Err(_) => Err(Error::TranscodeTimeout(timeout.as_secs())),
                }
            }
        }
    }

    /// Admit, receive, execute: the whole path of one segment.
    pub async fn process(
        &self,
        job: &SegmentJob,
        body: &mut SegmentBody,
    ) -> Result<Transcoded, Error> {
        if self.draining.load(Ordering::Relaxed) {
            // Requests already accepted finish; a node that is shutting down
            // takes no new work it might not finish.
            return Err(Error::ShuttingDown);
        }
        // A declared length over the limit is refused before a slot is
        // claimed: a full node still says what is wrong with the request.
        let limit = self.limits.max_segment_bytes;
        if body.declared_length().is_some_and(|length| length > limit) {
            return Err(Error::BodyTooLarge { limit });
        }
        let admission = self.admit(job).await?;
        let segment = self.receive(job, body).await?;
        self.execute(admission, job, segment).await
    }
}

#[cfg(test)]
mod tests;
