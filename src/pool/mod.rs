//! The orchestrator's pool of transcoders (`spec/ot-protocol.md`): remote
//! transcoders (lpgpu's or go-livepeer's) that dialled in and registered
//! with `--orch-secret`, and the node's own backend as one more member.
//! A v2 `/segment`, once verified, is placed here: one segment at a time per
//! stream, the stream pinned to a member while it lives, new streams to the
//! least-loaded compatible member; a remote member is pushed a
//! `NotifySegment`, GETs the segment from this node's bounded store and
//! POSTs its result to `/transcodeResults`.
//!
//! Failure without loss: a member that disconnects, misses its deadline or
//! fails a task for a reason that is not the input's has the task retried
//! once on another member (or locally) inside the broadcaster's budget; its
//! streams move at their next segment; it is evicted when gone or late
//! twice in a row. A result for a task already retried is dropped.
//!
//! The rules are plain code beside this file ([`placement`], [`relay`]);
//! this module is the state and the waiting, [`service`] the gRPC edge and
//! [`http`] the HTTP edge.

pub mod http;
pub mod metrics;
pub mod placement;
pub mod relay;
pub mod service;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

pub use self::metrics::PoolMetrics;
use self::placement::{
    IdleEnd, JobNeeds, Lateness, MemberId, MemberInfo, PlaceError, Placed, Placement,
};
use self::relay::{ResultError, TaskRequest, notify_segment, read_error_text, read_renditions};
use crate::metrics::Metrics;
use crate::pipeline::cpu::{SegmentFacts, probe_segment};
use crate::pipeline::ladder::output_size;
use crate::pipeline::workers::{Job, RunError, Workers, record_transcoded};
use crate::pipeline::{RenditionSpec, TranscodeError, Transcoded};
use crate::proto::NotifySegment;
use crate::protocol::results::Part;
use crate::protocol::task_deadline;
use crate::session::{EndReason, SESSION_IDLE, Sessions, StreamKey};
use crate::store::StreamStore;

/// Notifications queued per member beyond its capacity (teardowns, a retry).
const LINK_QUEUE_SLACK: usize = 16;
/// How often idle streams are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Room kept in the broadcaster's budget for the answer's trip back.
const ANSWER_MARGIN: Duration = Duration::from_millis(500);

/// How a pool is set up.
#[derive(Debug)]
pub struct PoolConfig {
    /// `--orch-secret`: what registrations and result uploads must carry.
    pub secret: Zeroizing<String>,
    /// This node's `https://host:port`: the base of the segment URLs.
    pub service_uri: String,
    /// The orchestrator's address, sent as `orchId`.
    pub orch_id: String,
    /// The longest a result body may take to arrive.
    pub upload_timeout: Duration,
}

/// The node's own backend as a member: its executor, whose slots are the
/// streams it takes at once (`--max-sessions`).
#[derive(Debug, Clone)]
pub struct LocalMember {
    pub workers: Workers,
    /// The longest one local transcode may take.
    pub transcode_timeout: Duration,
}

/// Why a segment is not served by the pool; the edge maps these once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("every member of the pool is at capacity")]
    Busy,
    #[error("this stream already has a segment being transcoded")]
    StreamBusy,
}

/// A member's link: where its notifications go.
#[derive(Debug)]
struct Link {
    sender: mpsc::Sender<Result<NotifySegment, tonic::Status>>,
    /// Dropped with the link: tells the link's watcher to let go too, so the
    /// member's stream ends.
    _evicted: oneshot::Sender<()>,
}

/// What a member posted for a task.
#[derive(Debug)]
pub enum Delivered {
    Renditions { parts: Vec<Part> },
    Error(String),
}

#[derive(Debug)]
struct PendingTask {
    member: MemberId,
    reply: oneshot::Sender<Delivered>,
}

#[derive(Debug, Default)]
struct State {
    placement: Placement,
    links: HashMap<MemberId, Link>,
    tasks: HashMap<i64, PendingTask>,
}

/// Why a member lost its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// Its link closed.
    Disconnected,
    /// Late twice in a row.
    Late,
    /// The node is shutting down.
    Shutdown,
}

impl Eviction {
    fn label(self) -> &'static str {
        match self {
            Eviction::Disconnected => "disconnected",
            Eviction::Late => "late",
            Eviction::Shutdown => "shutdown",
        }
    }
}

/// The pool.
#[derive(Debug)]
pub struct Pool {
    config: PoolConfig,
    local: Option<(MemberId, LocalMember)>,
    state: Mutex<State>,
    /// The node's one `/stream` store: source segments wait there for
    /// their member as `<session>/<seq>.tempfile`.
    segments: Arc<StreamStore>,
    metrics: Metrics,
    /// The pool's own `lpgpu_pool_*` metrics.
    pool_metrics: PoolMetrics,
    next_task: AtomicI64,
    /// Woken whenever a stream's segment is done.
    finished: tokio::sync::Notify,
    /// The streams' sessions: one ending for idleness unpins its stream.
    sessions: Arc<Sessions>,
}

/// How one attempt ended, when it did not give renditions.
#[derive(Debug)]
enum AttemptError {
    /// The input's fault: final.
    Input(TranscodeError),
    /// The member's: retry elsewhere.
    Member(String),
    /// The member is gone.
    Disconnected,
    /// No result by the deadline.
    Late,
}

impl Pool {
    /// A pool, with the node's own backend as a member when it has one,
    /// keeping source segments in the node's `store`.
    pub fn new(
        config: PoolConfig,
        local: Option<LocalMember>,
        store: Arc<StreamStore>,
        metrics: Metrics,
    ) -> Result<Arc<Self>, prometheus::Error> {
        let pool_metrics = PoolMetrics::register(&metrics)?;
        let mut state = State::default();
        let local = local.map(|member| {
            let id = state.placement.add(MemberInfo {
                name: "local".into(),
                capacity: member.workers.slots(),
                capabilities: member.workers.backend().capabilities(),
                version: crate::protocol::capabilities::GO_LIVEPEER_VERSION.into(),
                local: true,
            });
            (id, member)
        });
        let pool = Arc::new(Self {
            segments: store,
            config,
            local,
            state: Mutex::new(state),
            metrics,
            pool_metrics,
            next_task: AtomicI64::new(1),
            finished: tokio::sync::Notify::new(),
            sessions: Sessions::new(SESSION_IDLE),
        });
        let weak = Arc::downgrade(&pool);
        pool.sessions
            .on_end(Arc::new(move |stream: &StreamKey, reason: EndReason| {
                if let (EndReason::Idle, Some(pool)) = (reason, weak.upgrade()) {
                    pool.end_idle_stream(stream);
                }
            }));
        pool.publish_members();
        Ok(pool)
    }

    /// Ends idle streams every few seconds while the pool lives.
    pub fn start_sweeper(self: &Arc<Self>) {
        self.sessions.start_sweeper(SWEEP_INTERVAL);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn secret(&self) -> &str {
        &self.config.secret
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn pool_metrics(&self) -> &PoolMetrics {
        &self.pool_metrics
    }

    /// Streams the pool (and the local member) take at once.
    pub fn capacity(&self) -> usize {
        self.lock()
            .placement
            .members()
            .map(|(_, info, _)| info.capacity)
            .sum()
    }

    /// Whether a new stream would find room.
    pub fn has_room(&self) -> bool {
        self.lock().placement.has_room()
    }

    /// Registered remote members.
    pub fn remote_members(&self) -> usize {
        self.lock()
            .placement
            .members()
            .filter(|(_, info, _)| !info.local)
            .count()
    }

    /// A source segment waiting for its member: `<session>/<seq>.tempfile`.
    pub fn segment(&self, name: &str) -> Option<Bytes> {
        self.segments.get(name)
    }

    /// Adds a registered transcoder; its notifications go to `sender`.
    pub fn join(
        &self,
        info: MemberInfo,
        sender: mpsc::Sender<Result<NotifySegment, tonic::Status>>,
        evicted: oneshot::Sender<()>,
    ) -> MemberId {
        let name = info.name.clone();
        let (capacity, version) = (info.capacity, info.version.clone());
        let id = {
            let mut state = self.lock();
            let id = state.placement.add(info);
            state.links.insert(
                id,
                Link {
                    sender,
                    _evicted: evicted,
                },
            );
            id
        };
        tracing::info!(member = %name, capacity, %version, "transcoder registered");
        self.pool_metrics.registrations.inc();
        self.publish_members();
        id
    }

    /// The queue a member's link needs: its capacity plus slack.
    pub fn link_queue(capacity: usize) -> usize {
        capacity.saturating_add(LINK_QUEUE_SLACK)
    }

    /// Removes a member (idempotent): its streams move at their next
    /// segment, its tasks in flight fail over, its link is closed.
    pub fn evict(&self, id: MemberId, why: Eviction) {
        let (name, moved) = {
            let mut state = self.lock();
            let Some(name) = state.placement.info(id).map(|i| i.name.clone()) else {
                return;
            };
            let moved = state.placement.remove(id);
            state.links.remove(&id);
            // Dropping the reply senders fails the waiting attempts over.
            state.tasks.retain(|_, task| task.member != id);
            (name, moved)
        };
        tracing::warn!(member = %name, reason = why.label(), streams = moved.len(),
            "transcoder left the pool; its streams move at their next segment");
        self.pool_metrics
            .evictions
            .with_label_values(&[why.label()])
            .inc();
        let _ = self.pool_metrics.capacity.remove_label_values(&[&name]);
        let _ = self.pool_metrics.load.remove_label_values(&[&name]);
        self.publish_members();
    }

    /// Waits up to `grace` for the tasks in flight, then closes every link.
    pub async fn close_when_idle(&self, grace: Duration) {
        let until = Instant::now() + grace;
        while !self.lock().tasks.is_empty() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.close();
    }

    /// Closes every remote link (shutdown): members see their stream end.
    pub fn close(&self) {
        let ids: Vec<MemberId> = self.lock().links.keys().copied().collect();
        for id in ids {
            self.evict(id, Eviction::Shutdown);
        }
    }

    fn publish_members(&self) {
        let state = self.lock();
        let remote = state
            .placement
            .members()
            .filter(|(_, i, _)| !i.local)
            .count();
        self.pool_metrics.members.set(remote as i64);
        // A pool's slots are its members' streams.
        let capacity: usize = state.placement.members().map(|(_, i, _)| i.capacity).sum();
        self.metrics.transcode_slots.set(capacity as i64);
        for (_, info, streams) in state.placement.members() {
            let pool = &self.pool_metrics;
            pool.capacity
                .with_label_values(&[&info.name])
                .set(info.capacity as i64);
            pool.load
                .with_label_values(&[&info.name])
                .set(streams as i64);
        }
    }

    /// One member's load gauge (per segment, so it costs the same with
    /// 10,000 members; membership changes publish everything).
    fn publish_load(&self, member: MemberId) {
        let state = self.lock();
        if let Some((info, streams)) = state.placement.member(member) {
            self.pool_metrics
                .load
                .with_label_values(&[&info.name])
                .set(streams as i64);
        }
    }

    /// The broadcaster ended `stream` (today's `EndTranscodingSession`):
    /// ended as an idle stream is, at once.
    pub fn end_stream(&self, stream: &StreamKey) {
        if self.sessions.end(stream, EndReason::Teardown) {
            self.end_idle_stream(stream);
        }
    }

    /// The session registry ended `stream` for idleness: unpinned unless a
    /// segment of it is in flight (then it lives on), and its member's
    /// session ends: a teardown for a remote member, the backend's own
    /// placement for the local one.
    fn end_idle_stream(&self, stream: &StreamKey) {
        let ended = self.lock().placement.end_idle(stream.as_str());
        match ended {
            IdleEnd::Busy => {
                self.sessions.segment(stream, false);
            }
            IdleEnd::Unknown => {}
            IdleEnd::Unpinned(member, session) => {
                match &self.local {
                    Some((id, local)) if *id == member => {
                        local.workers.backend().end_stream(stream.as_str());
                    }
                    _ => {
                        let sender = self.lock().links.get(&member).map(|l| l.sender.clone());
                        if let Some(sender) = sender {
                            tracing::debug!(%session, "stream idle for 70 s: teardown sent");
                            let _ = sender.try_send(Ok(relay::teardown(&session)));
                        }
                    }
                }
                self.publish_members();
            }
        }
    }

    /// A result upload for `task_id`: delivered to the waiting attempt, or
    /// false when no attempt waits (unknown, late, or retried elsewhere).
    pub fn deliver(&self, task_id: i64, delivered: Delivered) -> bool {
        let Some(task) = self.lock().tasks.remove(&task_id) else {
            return false;
        };
        task.reply.send(delivered).is_ok()
    }

    /// Whether an attempt waits for `task_id` (so its body is worth reading).
    pub fn is_waiting(&self, task_id: i64) -> bool {
        self.lock().tasks.contains_key(&task_id)
    }

    /// Claims a place for the next segment of `stream` before its body is
    /// read: a full pool answers at once. A segment of a stream that has one
    /// in flight waits for it, up to `patience` (one segment at a time per
    /// stream, as go-livepeer sends them; a broadcaster that pipelines its
    /// uploads is served in order rather than refused).
    pub async fn reserve(
        self: &Arc<Self>,
        stream: &str,
        needs: JobNeeds,
        patience: Duration,
    ) -> Result<Reservation, PoolError> {
        // Pins, sessions and the backend know the stream by one bounded key.
        let key = StreamKey::new(stream);
        let stream = key.as_str();
        let until = tokio::time::Instant::now() + patience;
        let placed = loop {
            // Registered before the attempt, so a finish in between is seen.
            let finished = self.finished.notified();
            tokio::pin!(finished);
            finished.as_mut().enable();
            match self.place(stream, &needs, &[]) {
                Err(PoolError::StreamBusy) => {
                    if tokio::time::timeout_at(until, finished).await.is_err() {
                        return Err(PoolError::StreamBusy);
                    }
                }
                other => break other?,
            }
        };
        self.publish_load(placed.member);
        self.sessions.segment(&key, false);
        Ok(Reservation {
            pool: self.clone(),
            stream: stream.to_string(),
            needs,
            placed: Some(placed),
        })
    }

    fn place(
        &self,
        stream: &str,
        needs: &JobNeeds,
        exclude: &[MemberId],
    ) -> Result<Placed, PoolError> {
        self.lock()
            .placement
            .place(stream, needs, exclude, new_session_id)
            .map_err(|e| match e {
                PlaceError::NoRoom => PoolError::Busy,
                PlaceError::StreamBusy => PoolError::StreamBusy,
            })
    }

    fn member_name(&self, id: MemberId) -> String {
        self.lock()
            .placement
            .info(id)
            .map_or_else(|| format!("member {}", id.0), |i| i.name.clone())
    }

    async fn attempt(
        &self,
        placed: &Placed,
        job: &SegmentJob<'_>,
        deadline: Duration,
    ) -> Result<Transcoded, AttemptError> {
        let SegmentJob {
            segment,
            specs,
            facts,
            stream,
            seq,
            perceptual_hash,
        } = *job;
        if let Some((id, local)) = &self.local
            && *id == placed.member
        {
            return run_local(
                local,
                segment.clone(),
                specs,
                perceptual_hash,
                stream,
                placed.new_session,
                deadline,
            )
            .await;
        }
        let task_id = self.next_task.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}/{seq}.tempfile", placed.session);
        let Some(sender) = self
            .lock()
            .links
            .get(&placed.member)
            .map(|link| link.sender.clone())
        else {
            return Err(AttemptError::Disconnected);
        };
        if !self.segments.insert(name.clone(), segment.clone()) {
            return Err(AttemptError::Member(
                "the segment is larger than the whole segment store".into(),
            ));
        }
        let (reply, answer) = oneshot::channel();
        {
            let mut state = self.lock();
            state.tasks.insert(
                task_id,
                PendingTask {
                    member: placed.member,
                    reply,
                },
            );
        }
        let duration = Duration::from_secs_f64(facts.seconds.clamp(0.0, 300.0));
        let notify = notify_segment(&TaskRequest {
            task_id,
            url: format!("{}/stream/{name}", self.config.service_uri),
            session: &placed.session,
            manifest_id: stream,
            seq: i64::try_from(seq).unwrap_or(i64::MAX),
            duration,
            specs,
            force_session_reinit: false,
            perceptual_hash,
            orch_id: &self.config.orch_id,
        });
        if let Err(error) = sender.try_send(Ok(notify)) {
            self.lock().tasks.remove(&task_id);
            self.segments.remove(&name);
            return Err(match error {
                mpsc::error::TrySendError::Closed(_) => AttemptError::Disconnected,
                // Its queue is full: it is behind, not gone.
                mpsc::error::TrySendError::Full(_) => {
                    AttemptError::Member("the member's notification queue is full".into())
                }
            });
        }
        let sent = Instant::now();
        let outcome = tokio::time::timeout(deadline, answer).await;
        // Whatever happened, no later upload for this task is accepted, and
        // the segment is no longer offered.
        self.lock().tasks.remove(&task_id);
        self.segments.remove(&name);
        match outcome {
            Err(_) => Err(AttemptError::Late),
            Ok(Err(_)) => Err(AttemptError::Disconnected),
            Ok(Ok(Delivered::Error(text))) => Err(match read_error_text(&text) {
                ResultError::Input(error) => AttemptError::Input(error),
                ResultError::Member(text) => AttemptError::Member(text),
            }),
            Ok(Ok(Delivered::Renditions { parts })) => {
                let size_of = |spec: &RenditionSpec| {
                    output_size(
                        facts.width,
                        facts.height,
                        facts.sample_aspect,
                        spec.width,
                        spec.height,
                    )
                };
                let renditions = read_renditions(parts, specs, perceptual_hash, size_of).map_err(
                    |e| match e {
                        ResultError::Input(error) => AttemptError::Input(error),
                        ResultError::Member(text) => AttemptError::Member(text),
                    },
                )?;
                self.lock().placement.on_time(placed.member);
                let transcoded = Transcoded {
                    renditions,
                    source_seconds: facts.seconds,
                    source_frames: 0,
                    source_pixels: 0,
                    backend: "pool",
                    fallback: None,
                };
                // Counted as the executor counts local work.
                record_transcoded(&self.metrics, &transcoded, sent.elapsed());
                Ok(transcoded)
            }
        }
    }

    /// Counts a failed attempt against its member; evicts it when gone or
    /// late twice in a row.
    fn blame(&self, member: MemberId, error: &AttemptError) {
        // The node's own backend cannot leave: a slow or failed local
        // transcode is retried elsewhere, but the member stays.
        if self.local.as_ref().is_some_and(|(id, _)| *id == member) {
            return;
        }
        match error {
            AttemptError::Late => {
                let verdict = self.lock().placement.late(member);
                if verdict == Lateness::Evict {
                    self.evict(member, Eviction::Late);
                }
            }
            AttemptError::Disconnected => self.evict(member, Eviction::Disconnected),
            AttemptError::Member(_) | AttemptError::Input(_) => {}
        }
    }
}

/// One segment's work, as every attempt at it sees it.
#[derive(Debug, Clone, Copy)]
struct SegmentJob<'a> {
    segment: &'a Bytes,
    specs: &'a [RenditionSpec],
    facts: &'a SegmentFacts,
    stream: &'a str,
    seq: u64,
    perceptual_hash: bool,
}

/// A member's session id for a newly pinned stream: 128 random bits, since
/// the stream's source segments are fetched by URLs naming it.
fn new_session_id() -> String {
    crate::session::SessionId::random().to_string()
}

/// One attempt on the node's own backend, through its executor: a slot
/// still held by a transcode that timed out is busy, not shared.
async fn run_local(
    local: &LocalMember,
    segment: Bytes,
    specs: &[RenditionSpec],
    perceptual_hash: bool,
    stream: &str,
    new_session: bool,
    deadline: Duration,
) -> Result<Transcoded, AttemptError> {
    if new_session {
        local.workers.backend().end_stream(stream);
    }
    let ticket = local
        .workers
        .admit(&StreamKey::new(stream))
        .map_err(|refusal| AttemptError::Member(format!("the local backend is busy: {refusal}")))?;
    let job = Job {
        segment,
        renditions: specs.to_vec(),
        clip: None,
        perceptual_hash,
        deadline: Instant::now() + deadline.min(local.transcode_timeout),
    };
    match ticket.run(job).await {
        Ok(transcoded) => Ok(transcoded),
        Err(RunError::Transcode(
            error @ (TranscodeError::Internal(_) | TranscodeError::Cancelled),
        )) => Err(AttemptError::Member(error.to_string())),
        Err(RunError::Transcode(error)) => Err(AttemptError::Input(error)),
        Err(RunError::TimedOut(_) | RunError::WaitedTooLong(_)) => Err(AttemptError::Late),
        Err(error @ RunError::Closed) => Err(AttemptError::Member(error.to_string())),
    }
}

/// A place claimed for one segment of a stream; dropping it frees the
/// stream for its next segment.
#[derive(Debug)]
pub struct Reservation {
    pool: Arc<Pool>,
    stream: String,
    needs: JobNeeds,
    placed: Option<Placed>,
}

impl Reservation {
    /// Transcodes `segment` to `specs` (with their perceptual hashes when
    /// asked) on the reserved member, retrying once elsewhere when that
    /// member fails it, all within `budget` (the broadcaster's patience).
    pub async fn run(
        mut self,
        segment: Bytes,
        specs: Vec<RenditionSpec>,
        perceptual_hash: bool,
        seq: u64,
        budget: Duration,
    ) -> Result<Transcoded, TranscodeError> {
        let started = Instant::now();
        let pool = self.pool.clone();
        let probed = {
            let segment = segment.clone();
            tokio::task::spawn_blocking(move || probe_segment(segment)).await
        };
        let facts = match probed {
            Ok(Ok(facts)) => facts,
            Ok(Err(error)) => return Err(error),
            Err(join) => return Err(TranscodeError::Internal(format!("probing failed: {join}"))),
        };
        let seconds = if facts.seconds > 0.0 {
            facts.seconds
        } else {
            2.0
        };
        let budget = budget.min(task_deadline(Duration::from_secs_f64(seconds.min(300.0))));
        let Some(mut placed) = self.placed.take() else {
            return Err(TranscodeError::Internal(
                "a pool reservation was run twice".into(),
            ));
        };
        let mut tried: Vec<MemberId> = Vec::new();
        loop {
            let member = placed.member;
            let retry_possible = tried.is_empty()
                && pool
                    .lock()
                    .placement
                    .has_room_excluding(&self.needs, &[member]);
            let left = budget.saturating_sub(started.elapsed() + ANSWER_MARGIN);
            // A first attempt leaves half the budget for a retry, when
            // another member could take one; else it gets all of it.
            let deadline = if retry_possible { left / 2 } else { left };
            // Named now: a failed member may be gone after the attempt.
            let name = pool.member_name(member);
            let attempt_started = Instant::now();
            let job = SegmentJob {
                segment: &segment,
                specs: &specs,
                facts: &facts,
                stream: &self.stream,
                seq,
                perceptual_hash,
            };
            let outcome = pool.attempt(&placed, &job, deadline).await;
            let result = match &outcome {
                Ok(_) => "ok",
                Err(AttemptError::Input(_)) => "input_error",
                Err(AttemptError::Member(_)) => "member_error",
                Err(AttemptError::Disconnected) => "disconnected",
                Err(AttemptError::Late) => "late",
            };
            pool.pool_metrics.tasks.with_label_values(&[result]).inc();
            let error = match outcome {
                Ok(transcoded) => {
                    pool.pool_metrics
                        .relay_seconds
                        .observe(attempt_started.elapsed().as_secs_f64());
                    self.placed = Some(placed);
                    return Ok(transcoded);
                }
                Err(AttemptError::Input(error)) => {
                    self.placed = Some(placed);
                    return Err(error);
                }
                Err(error) => error,
            };
            tried.push(member);
            pool.blame(member, &error);
            {
                let mut state = pool.lock();
                state.placement.finish(&self.stream);
                state.placement.unpin(&self.stream);
            }
            if tried.len() > 1 {
                return Err(TranscodeError::Internal(format!(
                    "two members failed the segment; the last: {}",
                    describe(&error)
                )));
            }
            match pool.place(&self.stream, &self.needs, &tried) {
                Ok(next) => {
                    let next_name = pool.member_name(next.member);
                    tracing::warn!(stream = %self.stream, seq, from = %name, to = %next_name,
                        "retrying a segment on another member: {}", describe(&error));
                    pool.pool_metrics.retries.inc();
                    pool.publish_members();
                    placed = next;
                }
                Err(_) => {
                    return Err(TranscodeError::Internal(format!(
                        "no other member has room for a retry after: {}",
                        describe(&error)
                    )));
                }
            }
        }
    }
}

fn describe(error: &AttemptError) -> String {
    match error {
        AttemptError::Input(e) => e.to_string(),
        AttemptError::Member(text) => text.clone(),
        AttemptError::Disconnected => "the member disconnected".into(),
        AttemptError::Late => "the member missed the deadline".into(),
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // The stream may send its next segment (to the same member); it
        // was active until now.
        self.pool.lock().placement.finish(&self.stream);
        self.pool
            .sessions
            .segment(&StreamKey::new(&self.stream), false);
        self.pool.finished.notify_waiters();
        if let Some(placed) = &self.placed {
            self.pool.publish_load(placed.member);
        }
    }
}
