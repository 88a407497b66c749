//! The dial-out remote-transcoder mode (`lpgpu transcoder --orch-addr`): a
//! drop-in for go-livepeer's `livepeer -transcoder` (`spec/ot-protocol.md`).
//! It registers with an orchestrator over gRPC (TLS, certificate unchecked
//! or pinned), is pushed `NotifySegment`s on that stream, GETs each
//! segment, transcodes it on the configured backend off the async executor,
//! and POSTs exactly one result to `/transcodeResults` over HTTP/2.
//!
//! The protocol's rules are plain code beside this file: [`task`] reads a
//! notification, [`crate::session`] keeps per-stream state, [`upload`] builds the
//! result request, [`backoff`] schedules reconnection. This module is the
//! I/O around them: the link (connect, register, read the stream, back off,
//! drain on shutdown), the downloads and uploads, and admission (never more
//! tasks at once than the capacity registered; the excess is answered with a
//! busy error at once, since queueing past the orchestrator's deadline would
//! get the whole transcoder evicted).

pub mod backoff;
pub mod metrics;
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
use hyper_util::rt::TokioIo;
use tokio::task::JoinSet;
use tonic::transport::Endpoint;
use zeroize::Zeroizing;

use self::backoff::{Backoff, BackoffPolicy};
pub use self::metrics::RemoteMetrics;
use self::task::{Notification, Task, read_notification};
use self::upload::ResultUpload;
use crate::metrics::Metrics;
use crate::pipeline::workers::{Job, Policy, Refusal, RunError, Ticket, Workers};
use crate::pipeline::{Backend, TranscodeError, Transcoded};
use crate::proto::transcoder_client::TranscoderClient;
use crate::proto::{Capabilities, NotifySegment, RegisterRequest, capabilities};
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

/// Everything the mode needs, validated.
pub struct RemoteConfig {
    pub orchestrator: OrchAddr,
    /// The orchestrator secret; never logged.
    pub secret: Zeroizing<String>,
    /// Streams registered as capacity; also the most tasks run at once.
    pub capacity: usize,
    /// The semver registered as `Capabilities.version`.
    pub version: String,
    pub capabilities: CapabilitySet,
    /// Accept only this certificate (SHA-256 of its DER) from the orchestrator.
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
}

impl fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("orchestrator", &self.orchestrator)
            .field("secret", &"<hidden>")
            .field("capacity", &self.capacity)
            .field("version", &self.version)
            .field("capabilities", &self.capabilities)
            .field("cert_pin", &self.cert_pin.map(hex::encode))
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
            LinkState::BackingOff(why) => Err(format!("not registered, backing off: {why}")),
            LinkState::Refused(why) => Err(format!("refused by the orchestrator: {why}")),
            LinkState::Draining => Err("draining: shutting down".into()),
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
    state: Mutex<LinkState>,
    /// The live sessions; ending one ends its placement on the backend.
    sessions: Arc<Sessions>,
    /// One slot per session registered as capacity.
    workers: Workers,
    draining: AtomicBool,
    /// To the orchestrator: HTTP/2 only, its certificate unchecked or pinned.
    orchestrator_http: reqwest::Client,
    /// To segment URLs: HTTP/2 or 1.1, no certificate check (as go-livepeer).
    download_http: reqwest::Client,
}

impl fmt::Debug for RemoteTranscoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteTranscoder")
            .field("config", &self.config)
            .field("backend", &self.workers.backend().name())
            .field("state", &self.state())
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
        let orchestrator_http = http_client(config.cert_pin, &[b"h2"], Duration::from_secs(5))?;
        let download_http = http_client(None, &[b"h2", b"http/1.1"], DOWNLOAD_TIMEOUT)?;
        let capacity = config.capacity.max(1);
        let remote_metrics = RemoteMetrics::register(&metrics)
            .map_err(|e| RemoteError::Workers(format!("registering its metrics: {e}")))?;
        remote_metrics.capacity.set(capacity as i64);
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
        Ok(Self {
            workers,
            remote_metrics,
            config,
            metrics,
            state: Mutex::new(LinkState::Starting),
            sessions,
            draining: AtomicBool::new(false),
            orchestrator_http,
            download_http,
        })
    }

    pub fn state(&self) -> LinkState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_state(&self, state: LinkState) {
        self.remote_metrics
            .registered
            .set(i64::from(state == LinkState::Registered));
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// Registers, serves tasks, reconnects; returns when `shutdown` completes
    /// (after draining) or the orchestrator refuses the registration.
    pub async fn run(
        self: Arc<Self>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), RemoteError> {
        tokio::pin!(shutdown);
        let mut backoff = Backoff::new(self.config.backoff);
        let mut tasks = JoinSet::new();
        let mut registrations = 0u64;
        loop {
            self.set_state(LinkState::Connecting);
            let end = self
                .clone()
                .serve_link(&mut tasks, &mut shutdown, &mut registrations)
                .await;
            match end {
                LinkEnd::Shutdown => {
                    tracing::info!("stopped: every running task has posted its result");
                    return Ok(());
                }
                LinkEnd::Refused(message) => {
                    finish_all(&mut tasks).await;
                    tracing::error!(orchestrator = %self.config.orchestrator, "the orchestrator refused the registration: {message}");
                    self.set_state(LinkState::Refused(message.clone()));
                    return Err(RemoteError::Refused(message));
                }
                LinkEnd::Lost {
                    reason,
                    registered_for,
                } => {
                    backoff.ended_after(registered_for);
                    // go-livepeer finishes the running tasks before it dials again.
                    finish_all(&mut tasks).await;
                    let wait = backoff.next_wait(rand::random::<f64>());
                    tracing::warn!(orchestrator = %self.config.orchestrator, retry_in_seconds = wait.as_secs_f64(),
                        "not registered: {reason}");
                    self.set_state(LinkState::BackingOff(reason));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = &mut shutdown => {
                            tracing::info!("stopped while backing off");
                            return Ok(());
                        }
                    }
                }
            }
        }
    }

    /// One registration: connect, register, serve its stream until it ends
    /// or `shutdown` completes (then drain with the stream still open, so
    /// the orchestrator keeps waiting for the running tasks' results).
    async fn serve_link(
        self: Arc<Self>,
        tasks: &mut JoinSet<()>,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
        registrations: &mut u64,
    ) -> LinkEnd {
        let lost = |reason: String| LinkEnd::Lost {
            reason,
            registered_for: Duration::ZERO,
        };
        let mut client = tokio::select! {
            connected = self.connect() => match connected {
                Ok(client) => client,
                Err(reason) => return lost(reason),
            },
            _ = &mut *shutdown => return LinkEnd::Shutdown,
        };
        let mut request = tonic::Request::new(self.register_request());
        if let Some(name) = self.config.name.as_deref()
            && let Ok(value) = name.parse()
        {
            request
                .metadata_mut()
                .insert(crate::pool::service::MEMBER_NAME_METADATA, value);
        }
        let call = client.register_transcoder(request);
        tokio::pin!(call);
        let mut announced = false;
        let response = loop {
            tokio::select! {
                response = &mut call => break response,
                _ = tokio::time::sleep(REGISTRATION_GRACE), if !announced => {
                    announced = true;
                    self.registered(registrations);
                }
                _ = &mut *shutdown => return LinkEnd::Shutdown,
            }
        };
        let mut stream = match response {
            Ok(response) => response.into_inner(),
            Err(status) => return self.classify(status, Duration::ZERO),
        };
        if !announced {
            self.registered(registrations);
        }
        let since = Instant::now();
        let mut sweep = tokio::time::interval(SESSION_SWEEP);
        let mut drain_deadline: Option<tokio::time::Instant> = None;
        loop {
            if drain_deadline.is_some() && tasks.is_empty() {
                // Dropping the stream unregisters (the call is cancelled).
                return LinkEnd::Shutdown;
            }
            let deadline = drain_deadline.unwrap_or_else(far_future);
            tokio::select! {
                message = stream.message() => match message {
                    Ok(Some(notify)) => self.dispatch(notify, tasks),
                    Ok(None) if drain_deadline.is_some() => {
                        finish_all(tasks).await;
                        return LinkEnd::Shutdown;
                    }
                    Ok(None) => return LinkEnd::Lost {
                        reason: "the orchestrator ended the stream".into(),
                        registered_for: since.elapsed(),
                    },
                    Err(status) if drain_deadline.is_some() => {
                        tracing::warn!("the stream ended while draining: {}", status.message());
                        finish_all(tasks).await;
                        return LinkEnd::Shutdown;
                    }
                    Err(status) => return self.classify(status, since.elapsed()),
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = sweep.tick() => self.end_idle_sessions(),
                _ = &mut *shutdown, if drain_deadline.is_none() => {
                    tracing::info!(running = tasks.len(), "shutting down: no new tasks; finishing the running ones");
                    self.draining.store(true, Ordering::Release);
                    self.set_state(LinkState::Draining);
                    drain_deadline = Some(tokio::time::Instant::now() + self.config.drain_timeout);
                }
                _ = tokio::time::sleep_until(deadline), if drain_deadline.is_some() => {
                    tracing::warn!(running = tasks.len(), "drain bound reached; abandoning the running tasks");
                    tasks.abort_all();
                    return LinkEnd::Shutdown;
                }
            }
        }
    }

    fn registered(&self, registrations: &mut u64) {
        *registrations += 1;
        if *registrations > 1 {
            self.remote_metrics.reconnects.inc();
        }
        tracing::info!(orchestrator = %self.config.orchestrator, capacity = self.config.capacity,
            version = %self.config.version, capabilities = %self.config.capabilities, "registered with the orchestrator");
        self.set_state(LinkState::Registered);
    }

    /// A gRPC status that ended the registration: fatal or not.
    fn classify(&self, status: tonic::Status, registered_for: Duration) -> LinkEnd {
        let message = status.message().trim().to_string();
        // go-livepeer's transcoder stops on exactly these two messages.
        if message == "invalid secret" || message == "zero capacity" {
            return LinkEnd::Refused(message);
        }
        let reason = if message.is_empty() {
            format!("the stream ended: {:?}", status.code())
        } else {
            format!("the stream ended: {:?}: {message}", status.code())
        };
        LinkEnd::Lost {
            reason,
            registered_for,
        }
    }

    fn register_request(&self) -> RegisterRequest {
        let bits = self.config.capabilities.to_bitstring();
        RegisterRequest {
            secret: self.config.secret.to_string(),
            capacity: self.config.capacity as i64,
            capabilities: Some(Capabilities {
                bitstring: bits,
                mandatories: Vec::new(),
                // As go-livepeer: 1 per capability (not used for scheduling).
                capacities: self.config.capabilities.iter().map(|c| (c, 1)).collect(),
                version: self.config.version.clone(),
                constraints: Some(capabilities::Constraints::default()),
            }),
        }
    }

    /// TCP (with keep-alive) and TLS (ALPN h2) to the orchestrator, and a
    /// gRPC channel over it with HTTP/2 PINGs.
    async fn connect(&self) -> Result<TranscoderClient<tonic::transport::Channel>, String> {
        let orchestrator = self.config.orchestrator.clone();
        let tls = Arc::new(crate::tls::unverified_client_config(
            self.config.cert_pin,
            &[b"h2"],
        ));
        let connector = tower::service_fn(move |_: http::Uri| {
            let orchestrator = orchestrator.clone();
            let tls = tls.clone();
            async move {
                let tcp =
                    tokio::net::TcpStream::connect((orchestrator.host.as_str(), orchestrator.port))
                        .await?;
                tcp.set_nodelay(true)?;
                let (idle, interval, retries) = TCP_KEEPALIVE;
                socket2::SockRef::from(&tcp).set_tcp_keepalive(
                    &socket2::TcpKeepalive::new()
                        .with_time(idle)
                        .with_interval(interval)
                        .with_retries(retries),
                )?;
                let name = rustls::pki_types::ServerName::try_from(orchestrator.host.clone())
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                let tls = tokio_rustls::TlsConnector::from(tls)
                    .connect(name, tcp)
                    .await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        });
        let endpoint = Endpoint::from_shared(format!("http://{}", self.config.orchestrator))
            .map_err(|e| format!("--orch-addr {}: {e}", self.config.orchestrator))?
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(self.config.ping_interval)
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let channel = endpoint
            .connect_with_connector(connector)
            .await
            .map_err(|e| describe_transport_error(&e))?;
        Ok(TranscoderClient::new(channel)
            .max_decoding_message_size(crate::protocol::limits::MAX_GRPC_MESSAGE_BYTES))
    }

    fn dispatch(self: &Arc<Self>, notify: NotifySegment, tasks: &mut JoinSet<()>) {
        match read_notification(&notify, &self.config.capabilities, &self.config.version) {
            Notification::Teardown { session } => {
                self.remote_metrics.teardowns.inc();
                tracing::info!(%session, "session ended by the orchestrator");
                self.end_session(&session, EndReason::Teardown);
            }
            Notification::Refused { task_id, error } => {
                tracing::warn!(task = task_id, "task refused: {error}");
                let this = self.clone();
                tasks.spawn(async move {
                    this.post_error_only(task_id, &error.to_string(), "error")
                        .await;
                });
            }
            Notification::Task(task) => {
                if self.draining.load(Ordering::Acquire) {
                    let this = self.clone();
                    tasks.spawn(async move {
                        this.post_error_only(task.task_id, "transcoder is shutting down", "busy")
                            .await;
                    });
                    return;
                }
                let key = if task.session.is_empty() {
                    StreamKey::unique()
                } else {
                    StreamKey::new(&task.session)
                };
                match self.workers.admit(&key) {
                    Ok(ticket) => {
                        tasks.spawn(self.clone().run_task(task, ticket));
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
                        tracing::warn!(task = task.task_id, session = %task.session, "{text}");
                        let this = self.clone();
                        tasks.spawn(async move {
                            this.post_error_only(task.task_id, &text, "busy").await;
                        });
                    }
                }
            }
        }
    }

    fn end_session(&self, session: &str, reason: EndReason) {
        if session.is_empty() {
            return;
        }
        let key = StreamKey::new(session);
        if !self.sessions.end(&key, reason) {
            // Not live here (never seen, or already ended): whatever the
            // backend may still hold for it goes too.
            self.workers.backend().end_stream(key.as_str());
        }
    }

    fn end_idle_sessions(&self) {
        self.sessions.sweep(Instant::now());
    }

    async fn post_error_only(&self, task_id: i64, text: &str, result: &str) {
        let upload = upload::error(&self.config.secret, task_id, text);
        let outcome = self.post(upload).await;
        let result = if outcome.is_ok() {
            result
        } else {
            "upload_failed"
        };
        self.remote_metrics.tasks.with_label_values(&[result]).inc();
        if let Err(e) = outcome {
            tracing::warn!(task = task_id, "posting the error result failed: {e}");
        }
    }

    async fn run_task(self: Arc<Self>, task: Task, ticket: Ticket) {
        let started = Instant::now();
        self.remote_metrics.tasks_in_flight.inc();
        if !task.session.is_empty() {
            let event = self
                .sessions
                .segment(&StreamKey::new(&task.session), task.force_session_reinit);
            if event == SessionEvent::Renewed {
                tracing::info!(session = %task.session, "ForceSessionReinit: the session starts afresh");
            }
        }
        // The slot is free once the transcode has returned (the ticket is
        // spent or dropped inside): before the result is posted, so the
        // session's next task, sent the instant the orchestrator has this
        // result, always finds it.
        let outcome = self.download_and_transcode(&task, ticket).await;
        let upload = match &outcome {
            Ok(transcoded) => upload::renditions(
                &self.config.secret,
                task.task_id,
                transcoded,
                &upload::random_boundary(),
            ),
            Err(failure) => {
                if failure.ends_session {
                    self.end_session(&task.session, EndReason::Error);
                }
                upload::error(&self.config.secret, task.task_id, &failure.text)
            }
        };
        let upload_started = Instant::now();
        let posted = self.post(upload).await;
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
        self.remote_metrics.tasks.with_label_values(&[result]).inc();
        let late = started.elapsed() > task.deadline();
        match (&outcome, &posted) {
            (_, Err(e)) => {
                tracing::warn!(task = task.task_id, session = %task.session, seq = task.seq,
                profiles = %profiles.join(","), seconds, result, "task result not delivered: {e}")
            }
            (Err(failure), Ok(())) => {
                tracing::info!(task = task.task_id, session = %task.session, seq = task.seq,
                profiles = %profiles.join(","), seconds, result, error = %failure.text,
                cause = %failure.cause, late, "task")
            }
            (Ok(_), Ok(())) => {
                tracing::info!(task = task.task_id, session = %task.session, seq = task.seq,
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
    async fn post(&self, upload: ResultUpload) -> Result<(), String> {
        let url = format!("https://{}/transcodeResults", self.config.orchestrator);
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

    /// Ok while registered and taking tasks, else why not (`/readyz`).
    pub fn readiness(&self) -> Result<(), String> {
        self.state().readiness()
    }
}

impl crate::segment::Readiness for RemoteTranscoder {
    fn readiness(&self) -> Result<(), String> {
        RemoteTranscoder::readiness(self)
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
