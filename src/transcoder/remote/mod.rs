//! The dial-out remote-transcoder mode (`lpgpu transcoder --orch-addr`): a
//! drop-in for go-livepeer's `livepeer -transcoder` (`spec/ot-protocol.md`).
//! It registers with one or several orchestrators over gRPC (TLS,
//! certificates unchecked or pinned), is pushed `NotifySegment`s on those
//! streams, GETs each segment, transcodes it on the configured backend off
//! the async executor, and POSTs exactly one result to the orchestrator
//! that sent it, at `/transcodeResults` over HTTP/2.
//!
//! The protocol's rules are plain code beside this file: [`task`] reads a
//! notification, [`crate::session`] keeps per-stream state, [`upload`] builds the
//! result request, [`backoff`] schedules reconnection, [`flags`] reads the
//! orchestrator list, and [`shares`] splits the capacity between the
//! orchestrators. The `link` module is each orchestrator's link (connect,
//! register with its share, move it, read the stream, back off, drain on
//! shutdown); this module is the rest of the I/O: the downloads and
//! uploads, and admission (never more tasks at once than the capacity; the
//! excess is answered with a busy error at once, since queueing past the
//! orchestrator's deadline would get the whole transcoder evicted).

pub mod backoff;
pub mod flags;
mod link;
pub mod metrics;
pub mod shares;
pub mod task;
pub mod upload;

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::task::JoinSet;
use zeroize::Zeroizing;

use self::backoff::BackoffPolicy;
use self::link::Link;
pub use self::metrics::RemoteMetrics;
use self::shares::ShareBook;
use self::task::{Notification, Task, read_notification};
use self::upload::ResultUpload;
use crate::metrics::Metrics;
use crate::pipeline::workers::{Job, Policy, Refusal, RunError, Ticket, Workers};
use crate::pipeline::{Backend, TranscodeError, Transcoded};
use crate::proto::NotifySegment;
use crate::protocol::capabilities::CapabilitySet;
use crate::session::{EndReason, SESSION_IDLE, SessionEvent, Sessions, StreamKey};

/// go-livepeer's service port, the default of `--orch-addr HOST`.
pub const DEFAULT_ORCHESTRATOR_PORT: u16 = 8935;
/// The whole segment download (`spec/ot-protocol.md`).
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(4);
/// The largest segment downloaded.
pub const MAX_SEGMENT_BYTES: u64 = 300_000_000;
/// How long one result upload may take.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// A registration call the orchestrator has not refused within this long is
/// taken as accepted (an orchestrator may send no headers until the first task).
const REGISTRATION_GRACE: Duration = Duration::from_secs(1);
/// TCP keep-alive on the gRPC link: a host that vanished is noticed in
/// about idle + interval × retries seconds, whatever the HTTP/2 pings do.
const TCP_KEEPALIVE: (Duration, Duration, u32) =
    (Duration::from_secs(5), Duration::from_secs(2), 3);
/// How often idle sessions are looked for.
const SESSION_SWEEP: Duration = Duration::from_secs(5);
/// Tasks of one session that may wait behind its running one. go-livepeer
/// sends a session's next task only after the previous result; an
/// orchestrator that sends sooner is served in order, not refused.
const SESSION_QUEUE_DEPTH: usize = 2;

/// `--orch-addr HOST[:PORT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrchAddr {
    pub host: String,
    pub port: u16,
}

impl OrchAddr {
    /// `host:port`, with an IPv6 host in brackets.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for OrchAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.authority())
    }
}

impl FromStr for OrchAddr {
    type Err = String;

    /// `host`, `host:port`, `[v6]`, `[v6]:port`, optionally after `https://`.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not HOST[:PORT]");
        let rest = text.trim();
        let rest = rest.strip_prefix("https://").unwrap_or(rest);
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains('/') || rest.contains(char::is_whitespace) {
            return Err(bad());
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(bad)?),
            };
            host.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
            (host.to_string(), port)
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) if !host.contains(':') => (host.to_string(), Some(port)),
                Some(_) => return Err(bad()),
                None => (rest.to_string(), None),
            }
        };
        let port = match port {
            None => DEFAULT_ORCHESTRATOR_PORT,
            Some(p) => p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(bad)?,
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Self { host, port })
    }
}

/// One orchestrator the rig dials (`--orch-addr`, with its secret and weight).
pub struct OrchestratorConfig {
    pub addr: OrchAddr,
    /// Its orchestrator secret; never logged.
    pub secret: Zeroizing<String>,
    /// Its weight in the split (`--orch-weight`, at least 1).
    pub weight: u32,
}

impl fmt::Debug for OrchestratorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrchestratorConfig")
            .field("addr", &self.addr)
            .field("secret", &"<hidden>")
            .field("weight", &self.weight)
            .finish()
    }
}

/// Everything the mode needs, validated.
pub struct RemoteConfig {
    /// Every orchestrator, in `--orch-addr` order (at least one).
    pub orchestrators: Vec<OrchestratorConfig>,
    /// The rig's capacity, split between the orchestrators that are up;
    /// also the most tasks run at once.
    pub capacity: usize,
    /// The semver registered as `Capabilities.version`.
    pub version: String,
    pub capabilities: CapabilitySet,
    /// Accept only this certificate (SHA-256 of its DER) from the orchestrators.
    pub cert_pin: Option<[u8; 32]>,
    /// HTTP/2 PINGs on the gRPC link.
    pub ping_interval: Duration,
    /// One transcode may take this long.
    pub transcode_timeout: Duration,
    /// Put internal error text in error results.
    pub expose_errors: bool,
    pub backoff: BackoffPolicy,
    /// After SIGTERM, running tasks get this long to finish and post.
    pub drain_timeout: Duration,
    /// `--name`: sent as the `lpgpu-name` gRPC metadata so an lpgpu
    /// orchestrator names this member by it (go-livepeer ignores it).
    pub name: Option<String>,
    /// `--orch-rebalance`: shares follow demand, one slot per this period
    /// at most (None: the split by weight only).
    pub rebalance: Option<Duration>,
}

impl fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("orchestrators", &self.orchestrators)
            .field("capacity", &self.capacity)
            .field("version", &self.version)
            .field("capabilities", &self.capabilities)
            .field("cert_pin", &self.cert_pin.map(hex::encode))
            .field("rebalance", &self.rebalance)
            .finish_non_exhaustive()
    }
}

/// Why the mode stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// `invalid secret` or `zero capacity`: retrying cannot help.
    #[error("the orchestrator refused the registration: {0}")]
    Refused(String),
    #[error("setting up the HTTP clients failed: {0}")]
    Client(String),
    #[error("starting the transcode workers failed: {0}")]
    Workers(String),
}

/// The link's state, for `/readyz` and the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    Starting,
    Connecting,
    Registered,
    /// Reachable, but holding no share: `why` (a standby, or waiting for
    /// capacity another orchestrator is giving back).
    Standby(String),
    BackingOff(String),
    Refused(String),
    Draining,
}

impl LinkState {
    /// Ok when registered, else why not.
    pub fn readiness(&self) -> Result<(), String> {
        match self {
            LinkState::Registered => Ok(()),
            LinkState::Starting => Err("starting".into()),
            LinkState::Connecting => Err("connecting to the orchestrator".into()),
            LinkState::Standby(why) => Err(format!("not registered: {why}")),
            LinkState::BackingOff(why) => Err(format!("not registered, backing off: {why}")),
            LinkState::Refused(why) => Err(format!("refused by the orchestrator: {why}")),
            LinkState::Draining => Err("draining: shutting down".into()),
        }
    }

    /// One word for `/status`.
    pub fn name(&self) -> &'static str {
        match self {
            LinkState::Starting => "starting",
            LinkState::Connecting => "connecting",
            LinkState::Registered => "registered",
            LinkState::Standby(_) => "standby",
            LinkState::BackingOff(_) => "backing_off",
            LinkState::Refused(_) => "refused",
            LinkState::Draining => "draining",
        }
    }
}

/// How a registration ended.
enum LinkEnd {
    Shutdown,
    Refused(String),
    Lost {
        reason: String,
        registered_for: Duration,
    },
    /// Its share went to 0 (a standby again): wait for one, no backoff.
    Demoted,
}

/// A task's failure: the short text posted to the orchestrator.
struct Failure {
    /// What the orchestrator is told: short and stable.
    text: String,
    /// What the operator's log says: the stage and the whole cause (the
    /// FFmpeg error, the profile), whatever `--expose-errors` says.
    cause: String,
    /// Whether it was the stream's fault (its session ends).
    ends_session: bool,
}

/// The remote transcoder.
pub struct RemoteTranscoder {
    config: RemoteConfig,
    metrics: Metrics,
    /// The mode's own `lpgpu_remote_*` metrics.
    remote_metrics: RemoteMetrics,
    /// One per orchestrator, in `--orch-addr` order.
    links: Vec<Link>,
    /// The split of the capacity between them.
    book: Mutex<ShareBook>,
    /// Bumped whenever the book changes, so every link re-reads its share.
    book_changed: tokio::sync::watch::Sender<u64>,
    /// The live sessions; ending one ends its placement on the backend.
    sessions: Arc<Sessions>,
    /// One slot per session registered as capacity.
    workers: Workers,
    draining: AtomicBool,
    /// To the orchestrators: HTTP/2 only, certificates unchecked or pinned.
    orchestrator_http: reqwest::Client,
    /// To segment URLs: HTTP/2 or 1.1, no certificate check (as go-livepeer).
    download_http: reqwest::Client,
}

impl fmt::Debug for RemoteTranscoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteTranscoder")
            .field("config", &self.config)
            .field("backend", &self.workers.backend().name())
            .finish_non_exhaustive()
    }
}

fn http_client(
    pin: Option<[u8; 32]>,
    alpn: &[&[u8]],
    connect_timeout: Duration,
) -> Result<reqwest::Client, RemoteError> {
    let tls = crate::tls::unverified_client_config(pin, alpn);
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .map_err(|e| RemoteError::Client(e.to_string()))
}

impl RemoteTranscoder {
    pub fn new(
        config: RemoteConfig,
        backend: Arc<dyn Backend>,
        metrics: Metrics,
    ) -> Result<Self, RemoteError> {
        crate::tls::install_crypto_provider();
        if config.orchestrators.is_empty() {
            return Err(RemoteError::Client("no orchestrator to dial".into()));
        }
        let orchestrator_http = http_client(config.cert_pin, &[b"h2"], Duration::from_secs(5))?;
        let download_http = http_client(None, &[b"h2", b"http/1.1"], DOWNLOAD_TIMEOUT)?;
        let capacity = config.capacity.max(1);
        let remote_metrics = RemoteMetrics::register(&metrics)
            .map_err(|e| RemoteError::Workers(format!("registering its metrics: {e}")))?;
        let sessions = Sessions::new(SESSION_IDLE);
        let ends = backend.clone();
        sessions.on_end(Arc::new(move |key: &StreamKey, reason: EndReason| {
            if reason == EndReason::Idle {
                tracing::info!(session = %key, "session ended after 70 s without a segment");
            }
            ends.end_stream(key.as_str());
        }));
        // Capacity counts sessions, as the orchestrator counts it.
        let workers = Workers::new(
            backend.clone(),
            capacity,
            Policy::streams(SESSION_QUEUE_DEPTH),
            metrics.clone(),
        )
        .map_err(|e| RemoteError::Workers(e.to_string()))?;
        let several = config.orchestrators.len() > 1;
        let links: Vec<Link> = config
            .orchestrators
            .iter()
            .enumerate()
            .map(|(index, orchestrator)| Link::new(index, orchestrator, several))
            .collect();
        for link in &links {
            remote_metrics
                .orchestrator_share
                .with_label_values(&[&link.label])
                .set(0);
            remote_metrics
                .orchestrator_registered
                .with_label_values(&[&link.label])
                .set(0);
        }
        let weights: Vec<u32> = config.orchestrators.iter().map(|o| o.weight).collect();
        let book = ShareBook::new(capacity, &weights);
        Ok(Self {
            workers,
            remote_metrics,
            config,
            metrics,
            links,
            book: Mutex::new(book),
            book_changed: tokio::sync::watch::Sender::new(0),
            sessions,
            draining: AtomicBool::new(false),
            orchestrator_http,
            download_http,
        })
    }

    /// The first orchestrator's link state (the only one with one `--orch-addr`).
    pub fn state(&self) -> LinkState {
        self.links[0].state()
    }

    /// Registers with every orchestrator, serves tasks, moves shares and
    /// reconnects; returns when `shutdown` completes (after draining), or
    /// with an error when every orchestrator refused the registration.
    pub async fn run(
        self: Arc<Self>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), RemoteError> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut links = JoinSet::new();
        for index in 0..self.links.len() {
            links.spawn(self.clone().run_link(index, stopped.clone()));
        }
        if let Some(period) = self.config.rebalance {
            let this = self.clone();
            let mut stopped = stopped.clone();
            links.spawn(async move {
                let mut tick = tokio::time::interval(period);
                tick.tick().await;
                loop {
                    tokio::select! {
                        _ = tick.tick() => this.rebalance(),
                        _ = link::until_stopped(&mut stopped) => return None,
                    }
                }
            });
        }
        tokio::pin!(shutdown);
        let mut refusals = Vec::new();
        let mut running = links.len();
        loop {
            tokio::select! {
                _ = &mut shutdown, if !*stop.borrow() => {
                    let _ = stop.send(true);
                }
                ended = links.join_next() => match ended {
                    None => break,
                    Some(Ok(Some(refusal))) => {
                        refusals.push(refusal);
                        running -= 1;
                        if refusals.len() == self.links.len() {
                            let _ = stop.send(true);
                        }
                    }
                    Some(_) => running -= 1,
                },
            }
            if running == 0 {
                break;
            }
        }
        if refusals.len() == self.links.len() {
            return Err(RemoteError::Refused(refusals.join("; ")));
        }
        tracing::info!("stopped: every running task has posted its result");
        Ok(())
    }

    /// One step of `--orch-rebalance`.
    fn rebalance(&self) {
        let moved = {
            let mut book = self.book();
            for link in &self.links {
                book.set_live_sessions(link.index, link.live_sessions(Instant::now()));
            }
            book.rebalance()
        };
        if let Some((from, to)) = moved {
            tracing::info!(from = %self.links[from].addr, to = %self.links[to].addr,
                "rebalancing: one slot moves to the orchestrator whose share is full");
            self.book_changed.send_modify(|generation| *generation += 1);
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, ShareBook> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the book and tells every link.
    fn update_book(&self, change: impl FnOnce(&mut ShareBook)) {
        let total = {
            let mut book = self.book();
            change(&mut book);
            book.registered_total()
        };
        self.remote_metrics.capacity.set(total as i64);
        self.remote_metrics.registered.set(i64::from(
            self.links
                .iter()
                .any(|link| link.state() == LinkState::Registered),
        ));
        self.book_changed.send_modify(|generation| *generation += 1);
    }

    fn set_state(&self, link: &Link, state: LinkState) {
        let registered = state == LinkState::Registered;
        self.remote_metrics
            .orchestrator_registered
            .with_label_values(&[&link.label])
            .set(i64::from(registered));
        link.set_state(state);
        self.remote_metrics.registered.set(i64::from(
            self.links
                .iter()
                .any(|link| link.state() == LinkState::Registered),
        ));
    }

    fn dispatch(self: &Arc<Self>, link: &Link, notify: NotifySegment, tasks: &mut JoinSet<()>) {
        let index = link.index;
        match read_notification(&notify, &self.config.capabilities, &self.config.version) {
            Notification::Teardown { session } => {
                self.remote_metrics.teardowns.inc();
                tracing::info!(orchestrator = %link.addr, %session, "session ended by the orchestrator");
                link.session_ended(&session);
                self.end_session(link, &session, EndReason::Teardown);
            }
            Notification::Refused { task_id, error } => {
                tracing::warn!(orchestrator = %link.addr, task = task_id, "task refused: {error}");
                let this = self.clone();
                link.task_started("");
                tasks.spawn(async move {
                    this.post_error_only(index, task_id, &error.to_string(), "error")
                        .await;
                });
            }
            Notification::Task(task) => {
                link.task_started(&task.session);
                if self.draining.load(Ordering::Acquire) {
                    let this = self.clone();
                    tasks.spawn(async move {
                        this.post_error_only(
                            index,
                            task.task_id,
                            "transcoder is shutting down",
                            "busy",
                        )
                        .await;
                    });
                    return;
                }
                let key = if task.session.is_empty() {
                    StreamKey::unique()
                } else {
                    StreamKey::new(&link.session_key(&task.session))
                };
                match self.workers.admit(&key) {
                    Ok(ticket) => {
                        tasks.spawn(self.clone().run_task(index, task, key, ticket));
                    }
                    Err(refusal) => {
                        let text = match refusal {
                            Refusal::AllSlotsBusy { slots } => {
                                format!("transcoder busy: all {slots} sessions in use")
                            }
                            Refusal::StreamQueueFull { queued } => format!(
                                "transcoder busy: this session already has {queued} tasks waiting"
                            ),
                        };
                        tracing::warn!(orchestrator = %link.addr, task = task.task_id, session = %task.session, "{text}");
                        let this = self.clone();
                        tasks.spawn(async move {
                            this.post_error_only(index, task.task_id, &text, "busy")
                                .await;
                        });
                    }
                }
            }
        }
    }

    fn end_session(&self, link: &Link, session: &str, reason: EndReason) {
        if session.is_empty() {
            return;
        }
        let key = StreamKey::new(&link.session_key(session));
        if !self.sessions.end(&key, reason) {
            // Not live here (never seen, or already ended): whatever the
            // backend may still hold for it goes too.
            self.workers.backend().end_stream(key.as_str());
        }
    }

    fn end_idle_sessions(&self) {
        self.sessions.sweep(Instant::now());
    }

    /// Counts a task's result, rig-wide and for its orchestrator.
    fn count_task(&self, link: &Link, result: &str) {
        self.remote_metrics.tasks.with_label_values(&[result]).inc();
        self.remote_metrics
            .orchestrator_tasks
            .with_label_values(&[&link.label, result])
            .inc();
    }

    async fn post_error_only(&self, index: usize, task_id: i64, text: &str, result: &str) {
        let link = &self.links[index];
        let upload = upload::error(&link.secret, task_id, text);
        let outcome = self.post(link, upload).await;
        let result = if outcome.is_ok() {
            result
        } else {
            "upload_failed"
        };
        self.count_task(link, result);
        link.task_done();
        if let Err(e) = outcome {
            tracing::warn!(orchestrator = %link.addr, task = task_id, "posting the error result failed: {e}");
        }
    }

    async fn run_task(self: Arc<Self>, index: usize, task: Task, key: StreamKey, ticket: Ticket) {
        let link = &self.links[index];
        let started = Instant::now();
        self.remote_metrics.tasks_in_flight.inc();
        if !task.session.is_empty() {
            let event = self.sessions.segment(&key, task.force_session_reinit);
            if event == SessionEvent::Renewed {
                tracing::info!(orchestrator = %link.addr, session = %task.session, "ForceSessionReinit: the session starts afresh");
            }
        }
        // The slot is free once the transcode has returned (the ticket is
        // spent or dropped inside): before the result is posted, so the
        // session's next task, sent the instant the orchestrator has this
        // result, always finds it.
        let outcome = self.download_and_transcode(&task, ticket).await;
        let upload = match &outcome {
            Ok(transcoded) => upload::renditions(
                &link.secret,
                task.task_id,
                transcoded,
                &upload::random_boundary(),
            ),
            Err(failure) => {
                if failure.ends_session {
                    self.end_session(link, &task.session, EndReason::Error);
                }
                upload::error(&link.secret, task.task_id, &failure.text)
            }
        };
        let upload_started = Instant::now();
        let posted = self.post(link, upload).await;
        self.remote_metrics
            .task_seconds
            .with_label_values(&["upload"])
            .observe(upload_started.elapsed().as_secs_f64());
        let seconds = started.elapsed().as_secs_f64();
        self.remote_metrics
            .task_seconds
            .with_label_values(&["total"])
            .observe(seconds);
        self.remote_metrics.tasks_in_flight.dec();
        let profiles: Vec<&str> = task.renditions.iter().map(|r| r.name.as_str()).collect();
        let result = match (&outcome, &posted) {
            (_, Err(_)) => "upload_failed",
            (Ok(_), Ok(())) => "ok",
            (Err(_), Ok(())) => "error",
        };
        self.count_task(link, result);
        link.task_done();
        let late = started.elapsed() > task.deadline();
        let orchestrator = &link.addr;
        match (&outcome, &posted) {
            (_, Err(e)) => {
                tracing::warn!(%orchestrator, task = task.task_id, session = %task.session, seq = task.seq,
                profiles = %profiles.join(","), seconds, result, "task result not delivered: {e}")
            }
            (Err(failure), Ok(())) => {
                tracing::info!(%orchestrator, task = task.task_id, session = %task.session, seq = task.seq,
                profiles = %profiles.join(","), seconds, result, error = %failure.text,
                cause = %failure.cause, late, "task")
            }
            (Ok(_), Ok(())) => {
                tracing::info!(%orchestrator, task = task.task_id, session = %task.session, seq = task.seq,
                profiles = %profiles.join(","), seconds, result, late, "task")
            }
        }
    }

    async fn download_and_transcode(
        &self,
        task: &Task,
        ticket: Ticket,
    ) -> Result<Transcoded, Failure> {
        let download_started = Instant::now();
        // A failed download drops the ticket here, before the error is posted.
        let segment = self.download(&task.url).await.map_err(|text| Failure {
            cause: format!("download: {text}"),
            text,
            ends_session: false,
        })?;
        self.remote_metrics
            .task_seconds
            .with_label_values(&["download"])
            .observe(download_started.elapsed().as_secs_f64());
        self.metrics
            .segment_bytes
            .with_label_values(&["in"])
            .inc_by(segment.len() as u64);

        let job = Job {
            segment,
            renditions: task.renditions.clone(),
            clip: task.clip,
            perceptual_hash: task.perceptual_hash,
            deadline: Instant::now() + self.config.transcode_timeout,
        };
        let transcode_started = Instant::now();
        let outcome = ticket.run(job).await;
        let elapsed = transcode_started.elapsed().as_secs_f64();
        self.remote_metrics
            .task_seconds
            .with_label_values(&["transcode"])
            .observe(elapsed);
        match outcome {
            Ok(transcoded) => Ok(transcoded),
            Err(error @ (RunError::TimedOut(_) | RunError::WaitedTooLong(_))) => Err(Failure {
                text: "transcoding timed out".into(),
                cause: format!("transcode: {error}"),
                ends_session: true,
            }),
            Err(RunError::Closed) => Err(Failure {
                text: "transcoder is shutting down".into(),
                cause: "transcode: the workers have stopped".into(),
                ends_session: false,
            }),
            Err(RunError::Transcode(error)) => Err(Failure {
                text: self.error_text(&error),
                cause: format!("transcode: {error}"),
                ends_session: true,
            }),
        }
    }

    /// The short, stable text of a transcode error; FFmpeg's and lpgpu's
    /// own detail only with `--expose-errors` (a refused profile always says
    /// which and why: that is the request's own data).
    fn error_text(&self, error: &TranscodeError) -> String {
        let (stable, detail) = match error {
            TranscodeError::Undecodable(detail) => ("segment does not decode", detail),
            TranscodeError::Unsupported(detail) => return format!("unsupported profile: {detail}"),
            TranscodeError::NoKeyframes => return error.to_string(),
            TranscodeError::Internal(detail) => ("transcoding failed", detail),
            TranscodeError::Cancelled => return "transcoding timed out".into(),
        };
        if self.config.expose_errors {
            format!("{stable}: {detail}")
        } else {
            stable.to_string()
        }
    }

    /// GETs a segment: status 200, at most 300 MB, 4 s in all.
    async fn download(&self, url: &str) -> Result<Bytes, String> {
        let fetch = async {
            let response = self
                .download_http
                .get(url)
                .send()
                .await
                .map_err(|e| format!("download failed: {}", describe_reqwest_error(&e)))?;
            let status = response.status();
            if status != reqwest::StatusCode::OK {
                // go-livepeer's text for a bad status is the status line.
                return Err(status.to_string());
            }
            if response
                .content_length()
                .is_some_and(|length| length > MAX_SEGMENT_BYTES)
            {
                return Err(format!("segment larger than {MAX_SEGMENT_BYTES} bytes"));
            }
            let mut body = BytesMut::new();
            let mut chunks = response.bytes_stream();
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk
                    .map_err(|e| format!("download failed: {}", describe_reqwest_error(&e)))?;
                if body.len() as u64 + chunk.len() as u64 > MAX_SEGMENT_BYTES {
                    return Err(format!("segment larger than {MAX_SEGMENT_BYTES} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body.freeze())
        };
        tokio::time::timeout(DOWNLOAD_TIMEOUT, fetch)
            .await
            .unwrap_or_else(|_| Err("download failed: timed out after 4 s".into()))
    }

    /// POSTs one result to `https://<orch-addr>/transcodeResults` over HTTP/2.
    async fn post(&self, link: &Link, upload: ResultUpload) -> Result<(), String> {
        let url = format!("https://{}/transcodeResults", link.addr);
        let length = upload.body_len();
        let mut request = self
            .orchestrator_http
            .post(&url)
            .timeout(UPLOAD_TIMEOUT)
            .header(http::header::CONTENT_LENGTH, length);
        for (name, value) in &upload.headers {
            request = request.header(*name, value);
        }
        let chunks = upload
            .body
            .into_iter()
            .map(Ok::<Bytes, std::convert::Infallible>);
        let response = request
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )))
            .send()
            .await
            .map_err(|e| describe_reqwest_error(&e))?;
        let status = response.status();
        // Read the (short) answer so the stream ends cleanly.
        let _ = response.bytes().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the orchestrator answered {status}"))
        }
    }

    /// Ok while registered with at least one orchestrator and taking
    /// tasks, else why not, per orchestrator (`/readyz`).
    pub fn readiness(&self) -> Result<(), String> {
        if self.links.len() == 1 {
            return self.state().readiness();
        }
        let mut why = Vec::new();
        for link in &self.links {
            match link.state().readiness() {
                Ok(()) if !self.draining.load(Ordering::Acquire) => return Ok(()),
                Ok(()) => {}
                Err(reason) => why.push(format!("{}: {reason}", link.addr)),
            }
        }
        if self.draining.load(Ordering::Acquire) {
            return Err("draining: shutting down".into());
        }
        Err(why.join("; "))
    }

    /// Each orchestrator's link for `/status`: state, share, target, weight,
    /// tasks in flight, live sessions.
    pub fn orchestrators(&self) -> serde_json::Value {
        let book = self.book();
        let now = Instant::now();
        let links: Vec<serde_json::Value> = self
            .links
            .iter()
            .map(|link| {
                let state = link.state();
                serde_json::json!({
                    "orchestrator": link.label,
                    "state": state.name(),
                    "why": state.readiness().err(),
                    "share": book.registered(link.index),
                    "target": book.target(link.index),
                    "weight": self.config.orchestrators[link.index].weight,
                    "in_flight": link.in_flight(),
                    "live_sessions": link.live_sessions(now),
                })
            })
            .collect();
        serde_json::json!({
            "capacity": book.total(),
            "registered": book.registered_total(),
            "rebalance_seconds": self.config.rebalance.map(|d| d.as_secs()),
            "links": links,
        })
    }
}

impl crate::segment::Readiness for RemoteTranscoder {
    fn readiness(&self) -> Result<(), String> {
        RemoteTranscoder::readiness(self)
    }

    fn details(&self) -> Option<serde_json::Value> {
        Some(self.orchestrators())
    }
}

/// Waits for every task (each is bounded by its own timeouts).
async fn finish_all(tasks: &mut JoinSet<()>) {
    while tasks.join_next().await.is_some() {}
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}

/// An error with its causes, for one log line or one error result.
fn describe_reqwest_error(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_string()
    } else if error.is_connect() {
        "cannot connect".to_string()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn describe_transport_error(error: &tonic::transport::Error) -> String {
    let mut text = format!("connecting: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orchestrator_addresses_parse_with_the_default_port() {
        let parse = |t: &str| t.parse::<OrchAddr>();
        assert_eq!(
            parse("orch.example").unwrap(),
            OrchAddr {
                host: "orch.example".into(),
                port: 8935
            }
        );
        assert_eq!(parse("10.0.0.1:9000").unwrap().authority(), "10.0.0.1:9000");
        assert_eq!(parse("https://orch.example:8936/").unwrap().port, 8936);
        assert_eq!(parse("[::1]").unwrap().authority(), "[::1]:8935");
        assert_eq!(parse("[::1]:7000").unwrap().port, 7000);
        for bad in [
            "",
            ":8935",
            "host:",
            "host:0",
            "host:99999",
            "a b",
            "::1",
            "[::1",
            "h/x",
            "[zz]:1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn readiness_says_why_not() {
        assert!(LinkState::Registered.readiness().is_ok());
        let why = LinkState::BackingOff("the orchestrator ended the stream".into())
            .readiness()
            .unwrap_err();
        assert!(
            why.contains("backing off") && why.contains("ended the stream"),
            "{why}"
        );
        assert!(
            LinkState::Refused("invalid secret".into())
                .readiness()
                .unwrap_err()
                .contains("invalid secret")
        );
    }
}
