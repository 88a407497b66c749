//! The one executor of transcodes: a fixed set of worker threads, one per
//! transcode slot, each running one segment at a time on the backend, fed
//! through a queue that can never hold more segments than there are slots.
//!
//! Every wire uses it the same way: [`Workers::admit`] claims a slot for a
//! segment of a stream before its body is read (refused at once, with the
//! limit it met, when there is none; see [`lanes`] for the rules), then
//! [`Ticket::run`] hands the segment to a worker and waits for it up to the
//! segment's deadline. Honest slots:
//!
//! - a slot is free only when its worker returns, never when its waiter
//!   stops waiting, so overload cannot feed itself;
//! - a deadline that passes stops the waiting and cancels the work (the
//!   backend stops at its next picture), and a segment whose deadline passed
//!   while queued is never started;
//! - a stream's next segment can wait behind its own slot (where the policy
//!   gives it depth) instead of being refused;
//! - the transcode metrics are recorded here, once, for every wire.

pub mod lanes;

use std::collections::VecDeque;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use self::lanes::{Admitted, Lanes, TicketId};
pub use self::lanes::{Policy, Refusal};
use super::{Backend, Cancel, Clip, RenditionSpec, SegmentOptions, TranscodeError, Transcoded};
use crate::metrics::Metrics;
use crate::session::StreamKey;

/// One segment's work for a worker.
#[derive(Debug, Clone)]
pub struct Job {
    pub segment: Bytes,
    pub renditions: Vec<RenditionSpec>,
    pub clip: Option<Clip>,
    /// Also make each rendition's perceptual hash.
    pub perceptual_hash: bool,
    /// When the result is due: the waiting stops and the work is cancelled.
    pub deadline: Instant,
}

/// Why a segment admitted to the executor gave no renditions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// The backend refused or failed the segment.
    #[error(transparent)]
    Transcode(TranscodeError),
    /// The deadline passed while the backend worked; the work was cancelled
    /// and its slot stays held until the backend has stopped.
    #[error("transcoding took longer than {0:?}")]
    TimedOut(Duration),
    /// The deadline passed while the segment waited behind its stream.
    #[error("the stream's previous segment still held its slot after {0:?}")]
    WaitedTooLong(Duration),
    /// The executor is shutting down.
    #[error("the transcoder is shutting down")]
    Closed,
}

struct Work {
    stream: StreamKey,
    job: Job,
    cancel: Cancel,
    reply: oneshot::Sender<Result<Transcoded, TranscodeError>>,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Work>,
    closed: bool,
}

struct Shared {
    backend: Arc<dyn Backend>,
    lanes: Mutex<Lanes<oneshot::Sender<()>>>,
    queue: Mutex<Queue>,
    ready: Condvar,
    metrics: Metrics,
}

impl Shared {
    fn lanes(&self) -> MutexGuard<'_, Lanes<oneshot::Sender<()>>> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives a slot of `stream` back: to the stream's next queued segment,
    /// or free.
    fn release(&self, stream: &StreamKey) {
        let next = self.lanes().release(stream);
        if let Some((_, waker)) = next {
            // A queued ticket dropped after being handed the slot releases
            // it itself (its withdraw finds it gone from the queue).
            let _ = waker.send(());
        }
        self.publish();
    }

    fn publish(&self) {
        let in_use = self.lanes().in_use();
        self.metrics.slots_in_use.set(in_use as i64);
    }

    /// The transcode metrics, recorded once here for every wire.
    fn record(&self, result: &Result<Transcoded, TranscodeError>, elapsed: Duration) {
        match result {
            Ok(transcoded) => record_transcoded(&self.metrics, transcoded, elapsed),
            Err(_) => {
                self.metrics
                    .transcode_seconds
                    .with_label_values(&[self.backend.name()])
                    .observe(elapsed.as_secs_f64());
            }
        }
    }

    fn work(&self, work: Work) {
        let Work {
            stream,
            job,
            cancel,
            reply,
        } = work;
        let outcome = if cancel.is_cancelled() || Instant::now() >= job.deadline {
            // Nobody waits for it any more: never started.
            Err(TranscodeError::Cancelled)
        } else {
            let options = SegmentOptions {
                clip: job.clip,
                stream: Some(stream.to_string()),
                cancel,
                deadline: Some(job.deadline),
                perceptual_hash: job.perceptual_hash,
            };
            let started = Instant::now();
            let backend = &self.backend;
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                backend.transcode(job.segment, &job.renditions, &options)
            }))
            .unwrap_or_else(|_| {
                Err(TranscodeError::Internal(
                    "the backend panicked on this segment".into(),
                ))
            });
            self.record(&result, started.elapsed());
            result
        };
        // The slot is free before anyone sees the result: whoever answers
        // the result may send the stream's next segment at once.
        self.release(&stream);
        let _ = reply.send(outcome);
    }
}

/// What a transcode made, in the contract's metrics: the time by backend,
/// a GPU fallback, the real-time ratio's seconds, renditions and bytes out.
/// The executor records its own work; the pool records a remote member's.
pub fn record_transcoded(metrics: &Metrics, transcoded: &Transcoded, elapsed: Duration) {
    metrics
        .transcode_seconds
        .with_label_values(&[transcoded.backend])
        .observe(elapsed.as_secs_f64());
    if let Some(why) = &transcoded.fallback {
        tracing::warn!(%why, "segment transcoded on the CPU after the GPU failed");
        metrics.gpu_fallbacks.inc();
    }
    metrics.record_transcoded(transcoded.source_seconds);
    for rendition in &transcoded.renditions {
        metrics
            .renditions
            .with_label_values(&[&rendition.spec.name])
            .inc();
        metrics
            .segment_bytes
            .with_label_values(&["out"])
            .inc_by(rendition.data.len() as u64);
    }
}

fn run_worker(shared: Arc<Shared>) {
    loop {
        let work = {
            let mut queue = shared.queue();
            loop {
                if let Some(work) = queue.items.pop_front() {
                    break work;
                }
                if queue.closed {
                    return;
                }
                queue = shared.ready.wait(queue).unwrap_or_else(|p| p.into_inner());
            }
        };
        shared.work(work);
    }
}

/// Closes the queue when the last handle goes: the workers finish what they
/// hold and exit.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.queue().closed = true;
        self.shared.ready.notify_all();
    }
}

/// The executor: cheap to clone; its threads end when the last clone (and
/// the last ticket) is gone.
#[derive(Clone)]
pub struct Workers {
    handle: Arc<Handle>,
}

impl fmt::Debug for Workers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lanes = self.handle.shared.lanes();
        f.debug_struct("Workers")
            .field("backend", &self.handle.shared.backend.name())
            .field("slots", &lanes.slots())
            .field("in_use", &lanes.in_use())
            .finish()
    }
}

impl Workers {
    /// `slots` worker threads over `backend`, sharing slots by `policy`.
    /// Fails only when the operating system refuses a thread.
    pub fn new(
        backend: Arc<dyn Backend>,
        slots: usize,
        policy: Policy,
        metrics: Metrics,
    ) -> std::io::Result<Self> {
        let slots = slots.max(1);
        metrics.transcode_slots.set(slots as i64);
        metrics
            .backend_info
            .with_label_values(&[backend.name(), &backend.device()])
            .set(1);
        let shared = Arc::new(Shared {
            backend,
            lanes: Mutex::new(Lanes::new(slots, policy)),
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            metrics,
        });
        // Made before the threads: if one cannot start, dropping it stops
        // those that did.
        let handle = Arc::new(Handle {
            shared: shared.clone(),
        });
        for index in 0..slots {
            let shared = shared.clone();
            // Fewer threads than slots would leave admitted segments waiting
            // for a worker that never comes: fail instead.
            std::thread::Builder::new()
                .name(format!("lpgpu-worker-{index}"))
                .spawn(move || run_worker(shared))?;
        }
        Ok(Self { handle })
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.shared().backend
    }

    pub fn slots(&self) -> usize {
        self.shared().lanes().slots()
    }

    /// Whether a segment of a new stream would get a slot now.
    pub fn has_free_slot(&self) -> bool {
        self.shared().lanes().has_free_slot()
    }

    /// Claims a slot (or a place behind `stream`'s own slot) for one
    /// segment, before its body is read. Dropping the ticket gives it back.
    pub fn admit(&self, stream: &StreamKey) -> Result<Ticket, Refusal> {
        let (waker, promoted) = oneshot::channel();
        let admitted = self.shared().lanes().admit(stream, waker)?;
        self.shared().publish();
        let state = match admitted {
            Admitted::Slot(_) => TicketState::Holding,
            Admitted::Queued(id) => TicketState::Queued { id, promoted },
        };
        Ok(Ticket {
            workers: self.clone(),
            stream: stream.clone(),
            state,
        })
    }

    /// Admits and runs one segment (for callers with the body in hand).
    pub async fn execute(&self, stream: &StreamKey, job: Job) -> Result<Transcoded, ExecuteError> {
        let ticket = self.admit(stream).map_err(ExecuteError::Busy)?;
        ticket.run(job).await.map_err(ExecuteError::Run)
    }
}

/// [`Workers::execute`]'s failure: refused, or admitted and failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecuteError {
    #[error(transparent)]
    Busy(Refusal),
    #[error(transparent)]
    Run(RunError),
}

enum TicketState {
    /// Holds a slot.
    Holding,
    /// Waits behind its stream's slot.
    Queued {
        id: TicketId,
        promoted: oneshot::Receiver<()>,
    },
    /// Handed to a worker, which gives the slot back when it returns.
    Spent,
}

/// A segment's claim on a slot.
pub struct Ticket {
    workers: Workers,
    stream: StreamKey,
    state: TicketState,
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("stream", &self.stream)
            .field("queued", &self.is_queued())
            .finish()
    }
}

/// Cancels the work when the waiter goes away without its result (a
/// client that hung up, a timeout).
struct CancelOnDrop(Option<Cancel>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(cancel) = self.0.take() {
            cancel.cancel();
        }
    }
}

impl Ticket {
    /// Whether it waits behind its stream rather than holding a slot.
    pub fn is_queued(&self) -> bool {
        matches!(self.state, TicketState::Queued { .. })
    }

    /// Runs the segment on a worker: first waits for the stream's slot when
    /// queued, then for the result, both until `job.deadline`.
    pub async fn run(mut self, job: Job) -> Result<Transcoded, RunError> {
        let deadline = tokio::time::Instant::from_std(job.deadline);
        let admitted = Instant::now();
        if let TicketState::Queued { promoted, .. } = &mut self.state {
            match tokio::time::timeout_at(deadline, promoted).await {
                Ok(Ok(())) => self.state = TicketState::Holding,
                Ok(Err(_)) => return Err(RunError::Closed),
                // Dropping the ticket withdraws it (or releases the slot it
                // was handed in the meantime).
                Err(_) => return Err(RunError::WaitedTooLong(admitted.elapsed())),
            }
        }
        let cancel = Cancel::new();
        let (reply, result) = oneshot::channel();
        let shared = &self.workers.handle.shared;
        {
            let mut queue = shared.queue();
            if queue.closed {
                return Err(RunError::Closed);
            }
            queue.items.push_back(Work {
                stream: self.stream.clone(),
                job,
                cancel: cancel.clone(),
                reply,
            });
        }
        // From here the worker gives the slot back.
        self.state = TicketState::Spent;
        shared.ready.notify_one();
        let mut guard = CancelOnDrop(Some(cancel));
        let started = Instant::now();
        let outcome = tokio::time::timeout_at(deadline, result).await;
        match outcome {
            Ok(Ok(result)) => {
                guard.0 = None;
                result.map_err(RunError::Transcode)
            }
            Ok(Err(_)) => Err(RunError::Closed),
            // The guard cancels the work; its slot frees when it stops.
            Err(_) => Err(RunError::TimedOut(started.elapsed())),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let shared = &self.workers.handle.shared;
        match std::mem::replace(&mut self.state, TicketState::Spent) {
            TicketState::Holding => shared.release(&self.stream),
            TicketState::Queued { id, .. } => {
                let withdrawn = shared.lanes().withdraw(&self.stream, id);
                if !withdrawn {
                    // It was handed the slot just now: give it on.
                    shared.release(&self.stream);
                } else {
                    shared.publish();
                }
            }
            TicketState::Spent => {}
        }
    }
}

#[cfg(test)]
mod tests;
