//! One orchestrator's link: connect, register with the share the
//! [`ShareBook`](super::shares::ShareBook) grants, serve the notification
//! stream, move the share when the book says so, back off when the link is
//! lost, drain on shutdown.
//!
//! A share moves **make-before-break at a quiet moment**: once the link has
//! no task in flight, a second `RegisterTranscoder` call with the new
//! capacity goes out on the same HTTP/2 connection, and the old call is
//! cancelled as soon as the new one is accepted and no task is running on
//! either. The orchestrator sees both registrations for that moment (its
//! answer, or a 250 ms grace when it sends no headers until its first
//! notification, as grpc-go does); the old registration's sessions move to
//! the new one at their next segment, as go-livepeer moves the sessions of
//! any transcoder that disconnects. A task notified on the old call in that
//! moment is served, and the old call is cancelled only after it posts.
//! Growth is registered only out of capacity the others have given back,
//! so the registered total never passes the rig's capacity.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tokio::task::JoinSet;
use tonic::transport::Endpoint;
use zeroize::Zeroizing;

use super::backoff::Backoff;
use super::shares::Availability;
use super::{
    LinkEnd, LinkState, OrchAddr, OrchestratorConfig, REGISTRATION_GRACE, RemoteTranscoder,
    SESSION_SWEEP, TCP_KEEPALIVE, describe_transport_error, far_future, finish_all,
};
use crate::proto::transcoder_client::TranscoderClient;
use crate::proto::{Capabilities, NotifySegment, RegisterRequest, capabilities};
use crate::session::SESSION_IDLE;

/// A move's new registration, not refused within this long, stands: the
/// secret was accepted on this connection already, and HTTP/2 delivers the
/// new call before the old one's cancellation, so this only covers the
/// orchestrator's own processing (an orchestrator that answers at once,
/// or sends a task on it, ends the wait sooner).
const MOVE_GRACE: Duration = Duration::from_millis(250);

/// How long a smaller share waits for the orchestrator's live sessions to
/// fit it: past 70 s without a segment a session has ended anyway.
const SHRINK_PATIENCE: Duration = Duration::from_secs(90);

type Client = TranscoderClient<tonic::transport::Channel>;
type Notifications = tonic::Streaming<NotifySegment>;
type Registering = Pin<Box<dyn Future<Output = Result<Notifications, tonic::Status>> + Send>>;

/// One orchestrator: where, its secret, and what runs on its link now.
pub(super) struct Link {
    pub index: usize,
    pub addr: OrchAddr,
    pub secret: Zeroizing<String>,
    /// `host:port`, the `orchestrator` label of its metrics.
    pub label: String,
    /// Whether sessions are keyed by orchestrator (several `--orch-addr`).
    keyed: bool,
    state: Mutex<LinkState>,
    /// Tasks notified on this link and not yet posted.
    in_flight: AtomicUsize,
    /// Woken when `in_flight` drops to 0.
    quiet: tokio::sync::Notify,
    /// Its sessions and when each last had a task (its load as it sees it).
    sessions: Mutex<HashMap<String, Instant>>,
}

impl Link {
    pub fn new(index: usize, config: &OrchestratorConfig, keyed: bool) -> Self {
        Self {
            index,
            addr: config.addr.clone(),
            secret: config.secret.clone(),
            label: config.addr.authority(),
            keyed,
            state: Mutex::new(LinkState::Starting),
            in_flight: AtomicUsize::new(0),
            quiet: tokio::sync::Notify::new(),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    pub fn state(&self) -> LinkState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_state(&self, state: LinkState) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }

    /// The rig-wide key of one of this orchestrator's sessions: two
    /// orchestrators may use the same session id.
    pub fn session_key(&self, session: &str) -> String {
        if self.keyed {
            format!("{}/{session}", self.label)
        } else {
            session.to_string()
        }
    }

    pub fn task_started(&self, session: &str) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        if !session.is_empty() {
            self.lock_sessions()
                .insert(session.to_string(), Instant::now());
        }
    }

    pub fn task_done(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.quiet.notify_one();
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn session_ended(&self, session: &str) {
        self.lock_sessions().remove(session);
    }

    /// Sessions with a task in the last 70 s (the orchestrator's idle bound).
    pub fn live_sessions(&self, now: Instant) -> usize {
        let mut sessions = self.lock_sessions();
        sessions.retain(|_, last| now.duration_since(*last) < SESSION_IDLE);
        sessions.len()
    }

    /// Forgets (and returns) every session: the orchestrator is gone.
    pub fn take_sessions(&self) -> Vec<String> {
        self.lock_sessions().drain().map(|(s, _)| s).collect()
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RemoteTranscoder {
    /// One orchestrator's link until shutdown; `Some(why)` when it refused
    /// the registration (never retried: its share goes to the others).
    pub(super) async fn run_link(
        self: Arc<Self>,
        index: usize,
        mut stopped: tokio::sync::watch::Receiver<bool>,
    ) -> Option<String> {
        let link = &self.links[index];
        let mut backoff = Backoff::new(self.config.backoff);
        let mut tasks = JoinSet::new();
        let mut registrations = 0u64;
        loop {
            self.set_state(link, LinkState::Connecting);
            let end = self
                .clone()
                .serve_link(index, &mut tasks, &mut stopped, &mut registrations)
                .await;
            match end {
                LinkEnd::Shutdown => {
                    self.update_book(|book| book.set_registered(index, 0));
                    return None;
                }
                LinkEnd::Demoted => continue,
                LinkEnd::Refused(message) => {
                    tracing::error!(orchestrator = %link.addr, "the orchestrator refused the registration: {message}");
                    self.set_state(link, LinkState::Refused(message.clone()));
                    self.set_share(link, 0);
                    self.update_book(|book| {
                        book.set_availability(index, Availability::Refused);
                    });
                    self.release_while_running(index, &mut tasks).await;
                    return Some(format!("{}: {message}", link.addr));
                }
                LinkEnd::Lost {
                    reason,
                    registered_for,
                } => {
                    backoff.ended_after(registered_for);
                    let wait = backoff.next_wait(rand::random::<f64>());
                    tracing::warn!(orchestrator = %link.addr, retry_in_seconds = wait.as_secs_f64(),
                        "not registered: {reason}");
                    self.set_state(link, LinkState::BackingOff(reason));
                    self.set_share(link, 0);
                    // Its sessions are gone with it: they move to other
                    // transcoders at their next segment.
                    for session in link.take_sessions() {
                        self.end_session(link, &session, crate::session::EndReason::Teardown);
                    }
                    self.update_book(|book| {
                        book.set_availability(index, Availability::Down);
                    });
                    // go-livepeer finishes the running tasks before it dials
                    // again; their slots stay counted against this link
                    // until they post, so the others never get more than
                    // the rig holds.
                    self.release_while_running(index, &mut tasks).await;
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = until_stopped(&mut stopped) => {
                            tracing::info!(orchestrator = %link.addr, "stopped while backing off");
                            return None;
                        }
                    }
                }
            }
        }
    }

    /// Waits for a lost link's running tasks, holding as much of the
    /// capacity as they still use.
    async fn release_while_running(&self, index: usize, tasks: &mut JoinSet<()>) {
        self.update_book(|book| book.set_registered(index, tasks.len()));
        while tasks.join_next().await.is_some() {
            let running = tasks.len();
            self.update_book(|book| book.set_registered(index, running));
        }
    }

    fn set_share(&self, link: &Link, capacity: usize) {
        self.remote_metrics
            .orchestrator_share
            .with_label_values(&[&link.label])
            .set(capacity as i64);
    }

    /// What link `index` should register now: its target, or, to grow,
    /// what the others have given back. `current` is what it holds.
    fn wanted(&self, index: usize, current: usize) -> usize {
        let book = self.book();
        let target = book.target(index);
        if target > current {
            book.allowance(index).max(current)
        } else {
            target
        }
    }

    /// What link `index` may grow to from `current`, claimed at once (set
    /// as registered under one lock, before the call goes out, so no other
    /// link can count on it meanwhile); `current` when there is no room.
    fn claim(&self, index: usize, current: usize) -> usize {
        let claimed = {
            let mut book = self.book();
            let to = book.allowance(index).max(current);
            if to > current {
                book.set_registered(index, to);
            }
            to
        };
        if claimed > current {
            self.update_book(|_| {});
        }
        claimed
    }

    /// One connection: connect, wait for a share, register, serve until the
    /// stream ends, the share goes to 0, or `stopped` (then drain with the
    /// stream open, so the orchestrator keeps waiting for the results).
    async fn serve_link(
        self: Arc<Self>,
        index: usize,
        tasks: &mut JoinSet<()>,
        stopped: &mut tokio::sync::watch::Receiver<bool>,
        registrations: &mut u64,
    ) -> LinkEnd {
        let link = &self.links[index];
        let lost = |reason: String| LinkEnd::Lost {
            reason,
            registered_for: Duration::ZERO,
        };
        let client = tokio::select! {
            connected = self.connect(link) => match connected {
                Ok(client) => client,
                Err(reason) => return lost(reason),
            },
            _ = until_stopped(stopped) => return LinkEnd::Shutdown,
        };
        self.update_book(|book| {
            book.set_availability(index, Availability::Up);
        });
        // A share: at once, or once the others have given it back.
        let mut changes = self.book_changed.subscribe();
        let mut current = loop {
            let grant = self.claim(index, 0);
            if grant > 0 {
                break grant;
            }
            let why = if self.book().target(index) == 0 {
                "a standby: fewer slots than orchestrators, or shares moved away"
            } else {
                "waiting for capacity another orchestrator is giving back"
            };
            if !matches!(link.state(), LinkState::Standby(_)) {
                tracing::info!(orchestrator = %link.addr, "not registering yet: {why}");
            }
            self.set_state(link, LinkState::Standby(why.into()));
            tokio::select! {
                _ = changes.changed() => {}
                _ = until_stopped(stopped) => return LinkEnd::Shutdown,
            }
        };
        let mut registering = self.register(link, &client, current);
        // An orchestrator may send no headers until its first task: a call
        // not refused within the grace is registered, and its answer is
        // read with its first notification.
        let mut stream = tokio::select! {
            response = &mut registering => match response {
                Ok(stream) => Registration::Open(Box::new(stream)),
                Err(status) => return classify(status, Duration::ZERO),
            },
            _ = tokio::time::sleep(REGISTRATION_GRACE) => Registration::Pending(registering),
            _ = until_stopped(stopped) => return LinkEnd::Shutdown,
        };
        self.registered(link, current, registrations);
        let since = Instant::now();
        let mut sweep = tokio::time::interval(SESSION_SWEEP);
        let mut drain_deadline: Option<tokio::time::Instant> = None;
        // A move under way: the new registration, its capacity, and when
        // it stands without an answer (the acceptance grace).
        let mut moving: Option<(Registration, usize, tokio::time::Instant)> = None;
        // The registration a move replaced, kept until no task runs.
        let mut replaced: Option<Registration> = None;
        // When a smaller share was first wanted (it waits for sessions to end).
        let mut shrink_since: Option<Instant> = None;
        let mut shrink_announced = false;
        let mut shrink_overdue = false;
        // When a different share was first wanted while tasks ran.
        let mut wanted_since: Option<Instant> = None;
        // When the latest move's registration went out, and so when the
        // orchestrator began to see two (until the replaced one closes).
        let mut move_started = Instant::now();
        let mut replaced_since = move_started;
        loop {
            if drain_deadline.is_some() && tasks.is_empty() {
                // Dropping the stream unregisters (the call is cancelled).
                return LinkEnd::Shutdown;
            }
            if replaced.is_some() && link.in_flight() == 0 {
                replaced = None;
                let overlap = replaced_since.elapsed();
                self.observe_move("overlap", overlap);
                tracing::info!(orchestrator = %link.addr, overlap_ms = overlap.as_millis() as u64,
                    "the replaced registration is closed");
                self.update_book(|book| book.set_registered(index, current));
            }
            if moving.is_none() && replaced.is_none() && drain_deadline.is_none() {
                let mut wanted = self.wanted(index, current);
                if wanted < current {
                    // A smaller share must not strand the orchestrator's
                    // live sessions (go-livepeer would have nowhere to put
                    // them): wait for them to end, within reason.
                    let live = link.live_sessions(Instant::now());
                    let since = *shrink_since.get_or_insert_with(Instant::now);
                    if live > wanted && since.elapsed() < SHRINK_PATIENCE {
                        if !shrink_announced {
                            shrink_announced = true;
                            tracing::info!(orchestrator = %link.addr, live, from = current, to = wanted,
                                "giving back capacity once its sessions fit the smaller share");
                        }
                        wanted = current;
                    } else if live > wanted && !shrink_overdue {
                        shrink_overdue = true;
                        tracing::warn!(orchestrator = %link.addr, live, from = current, to = wanted,
                            "sessions still live after {} s: the smaller share is registered anyway; they move at their next segment",
                            SHRINK_PATIENCE.as_secs());
                    }
                } else {
                    shrink_since = None;
                    shrink_announced = false;
                    shrink_overdue = false;
                }
                if wanted == current {
                    wanted_since = None;
                } else if link.in_flight() > 0 {
                    // Waits for a quiet moment; how long is measured.
                    wanted_since.get_or_insert_with(Instant::now);
                }
                if wanted != current && link.in_flight() == 0 {
                    let waited = wanted_since
                        .take()
                        .map_or(Duration::ZERO, |at| at.elapsed());
                    self.observe_move("wait", waited);
                }
                if wanted == 0 && link.in_flight() == 0 {
                    tracing::info!(orchestrator = %link.addr, from = current, to = 0,
                        "share moved: this orchestrator becomes a standby");
                    self.count_move(link);
                    self.set_share(link, 0);
                    self.update_book(|book| book.set_registered(index, 0));
                    return LinkEnd::Demoted;
                }
                // Growth is claimed under the book's lock, so two links
                // never both count on the same free slot.
                if wanted > current && link.in_flight() == 0 {
                    wanted = self.claim(index, current);
                }
                if wanted > 0 && wanted != current && link.in_flight() == 0 {
                    let call = Registration::Pending(self.register(link, &client, wanted));
                    let grace = tokio::time::Instant::now() + MOVE_GRACE;
                    moving = Some((call, wanted, grace));
                    move_started = Instant::now();
                    shrink_since = None;
                    shrink_announced = false;
                    shrink_overdue = false;
                }
            }
            let deadline = drain_deadline.unwrap_or_else(far_future);
            let grace = moving
                .as_ref()
                .map_or_else(far_future, |(_, _, grace)| *grace);
            tokio::select! {
                message = stream.next() => match message {
                    Ok(Some(notify)) => self.dispatch(link, notify, tasks),
                    Ok(None) if drain_deadline.is_some() => {
                        finish_all(tasks).await;
                        return LinkEnd::Shutdown;
                    }
                    Ok(None) => return LinkEnd::Lost {
                        reason: "the orchestrator ended the stream".into(),
                        registered_for: since.elapsed(),
                    },
                    Err(status) if drain_deadline.is_some() => {
                        tracing::warn!(orchestrator = %link.addr, "the stream ended while draining: {}", status.message());
                        finish_all(tasks).await;
                        return LinkEnd::Shutdown;
                    }
                    Err(status) => return classify(status, since.elapsed()),
                },
                message = next_of(&mut replaced) => match message {
                    Some(notify) => self.dispatch(link, notify, tasks),
                    // The old registration ended by itself: nothing to cancel.
                    None => {
                        replaced = None;
                        self.update_book(|book| book.set_registered(index, current));
                    }
                },
                message = next_of_move(&mut moving) => {
                    let Some((registration, to, _)) = moving.take() else { continue };
                    match message {
                        Ok(Some(notify)) => {
                            // Its first task: the new registration stands.
                            self.moved(link, current, to);
                            replaced = Some(std::mem::replace(&mut stream, registration));
                            replaced_since = move_started;
                            current = to;
                            self.dispatch(link, notify, tasks);
                        }
                        Ok(None) => return LinkEnd::Lost {
                            reason: "the orchestrator ended the stream".into(),
                            registered_for: since.elapsed(),
                        },
                        Err(status) => return classify(status, since.elapsed()),
                    }
                }
                // No refusal within the grace: the new registration stands.
                _ = tokio::time::sleep_until(grace), if moving.is_some() => {
                    if let Some((registration, to, _)) = moving.take() {
                        self.moved(link, current, to);
                        replaced = Some(std::mem::replace(&mut stream, registration));
                        replaced_since = move_started;
                        current = to;
                    }
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = link.quiet.notified() => {}
                _ = changes.changed() => {}
                _ = sweep.tick() => {
                    self.end_idle_sessions();
                    let live = link.live_sessions(Instant::now());
                    self.book().set_live_sessions(index, live);
                }
                _ = until_stopped(stopped), if drain_deadline.is_none() => {
                    tracing::info!(orchestrator = %link.addr, running = tasks.len(), "shutting down: no new tasks; finishing the running ones");
                    self.draining.store(true, Ordering::Release);
                    self.set_state(link, LinkState::Draining);
                    drain_deadline = Some(tokio::time::Instant::now() + self.config.drain_timeout);
                }
                _ = tokio::time::sleep_until(deadline), if drain_deadline.is_some() => {
                    tracing::warn!(orchestrator = %link.addr, running = tasks.len(), "drain bound reached; abandoning the running tasks");
                    tasks.abort_all();
                    return LinkEnd::Shutdown;
                }
            }
        }
    }

    fn observe_move(&self, phase: &str, took: Duration) {
        self.remote_metrics
            .move_seconds
            .with_label_values(&[phase])
            .observe(took.as_secs_f64());
    }

    fn count_move(&self, link: &Link) {
        self.remote_metrics
            .orchestrator_moves
            .with_label_values(&[&link.label])
            .inc();
    }

    /// A move's new registration stands: one log line, the metrics.
    fn moved(&self, link: &Link, from: usize, to: usize) {
        tracing::info!(orchestrator = %link.addr, from, to, "share moved: registered again with the new capacity");
        self.count_move(link);
        self.set_share(link, to);
    }

    fn registered(&self, link: &Link, capacity: usize, registrations: &mut u64) {
        *registrations += 1;
        if *registrations > 1 {
            self.remote_metrics.reconnects.inc();
            self.remote_metrics
                .orchestrator_reconnects
                .with_label_values(&[&link.label])
                .inc();
        }
        tracing::info!(orchestrator = %link.addr, capacity,
            version = %self.config.version, capabilities = %self.config.capabilities, "registered with the orchestrator");
        self.set_share(link, capacity);
        self.set_state(link, LinkState::Registered);
        self.update_book(|_| {});
    }

    /// The `RegisterTranscoder` call for `capacity` (a future: it resolves
    /// when the orchestrator answers, which may be at its first task).
    fn register(&self, link: &Link, client: &Client, capacity: usize) -> Registering {
        let mut request = tonic::Request::new(self.register_request(link, capacity));
        if let Some(name) = self.config.name.as_deref()
            && let Ok(value) = name.parse()
        {
            request
                .metadata_mut()
                .insert(crate::pool::service::MEMBER_NAME_METADATA, value);
        }
        let mut client = client.clone();
        Box::pin(async move {
            client
                .register_transcoder(request)
                .await
                .map(|response| response.into_inner())
        })
    }

    fn register_request(&self, link: &Link, capacity: usize) -> RegisterRequest {
        let bits = self.config.capabilities.to_bitstring();
        RegisterRequest {
            secret: link.secret.to_string(),
            capacity: capacity as i64,
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
    async fn connect(&self, link: &Link) -> Result<Client, String> {
        let orchestrator = link.addr.clone();
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
        let endpoint = Endpoint::from_shared(format!("http://{}", link.addr))
            .map_err(|e| format!("--orch-addr {}: {e}", link.addr))?
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
}

/// A gRPC status that ended a registration: fatal or not.
fn classify(status: tonic::Status, registered_for: Duration) -> LinkEnd {
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

/// A registration: its call still unanswered (an orchestrator may send no
/// headers until its first task), or its notification stream.
enum Registration {
    Pending(Registering),
    Open(Box<Notifications>),
}

impl Registration {
    /// The next notification; cancel-safe (the call is kept in `self`).
    async fn next(&mut self) -> Result<Option<NotifySegment>, tonic::Status> {
        loop {
            match self {
                Registration::Open(stream) => return stream.message().await,
                Registration::Pending(call) => {
                    let stream = call.await?;
                    *self = Registration::Open(Box::new(stream));
                }
            }
        }
    }
}

/// The next notification on the replaced registration (pending forever
/// when there is none; None when it ended or failed).
async fn next_of(replaced: &mut Option<Registration>) -> Option<NotifySegment> {
    match replaced {
        Some(registration) => registration.next().await.ok().flatten(),
        None => std::future::pending().await,
    }
}

/// The next notification on a move's new registration (pending forever
/// when no move is under way).
async fn next_of_move(
    moving: &mut Option<(Registration, usize, tokio::time::Instant)>,
) -> Result<Option<NotifySegment>, tonic::Status> {
    match moving {
        Some((registration, _, _)) => registration.next().await,
        None => std::future::pending().await,
    }
}

/// Resolves once shutdown has begun (the guard never crosses an await).
pub(super) async fn until_stopped(stopped: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}
