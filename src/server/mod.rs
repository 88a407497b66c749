//! One TLS listener for a whole node: HTTP/2 requests whose content type starts
//! with `application/grpc` go to the gRPC router, everything else to the HTTP
//! router (as go-livepeer did). HTTP/2 and HTTP/1.1 are both served, with
//! bounded headers and a bounded number of connections
//! (`server::connections`); shutdown stops accepting and lets requests in flight
//! finish.

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

mod connections;

use self::connections::{Admitted, ConnId, Table};
pub use crate::node::NodeRoutes;
use crate::protocol::limits;
pub use crate::segment::Readiness;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long requests in flight get to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 PINGs to every client connection, and how long an answer may take.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Warns when the process may open fewer files than `max_connections`
/// needs (its soft `RLIMIT_NOFILE`, read from `/proc/self/limits`): past
/// it `accept` fails and new clients wait however idle the others are.
pub fn check_open_files(max_connections: usize) {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return;
    };
    let soft = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse::<usize>().ok());
    // Listeners, the chain client, the metrics port, logs: room to spare.
    const RESERVE: usize = 256;
    if let Some(soft) = soft
        && soft < max_connections.saturating_add(RESERVE)
    {
        tracing::warn!(
            open_files = soft,
            max_connections,
            "the open-files limit (ulimit -n) is below --max-connections plus {RESERVE}: raise it, or lower --max-connections"
        );
    }
}

/// `https://host:port`, with an IPv6 host in brackets.
pub fn service_uri(hostname: &str, port: u16) -> String {
    if hostname.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("https://[{hostname}]:{port}")
    } else {
        format!("https://{hostname}:{port}")
    }
}

fn is_grpc<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// What one server accepts.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Connections open at once (`--max-connections`); 0 takes
    /// [`limits::DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// Where the connection gauges and counters go.
    pub metrics: Option<crate::metrics::Metrics>,
}

/// Serves `routes` over TLS on `listener` until `shutdown` completes, then
/// drains connections for up to 30 s.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    routes: NodeRoutes,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(listener, tls, routes, ServeOptions::default(), shutdown).await
}

type Evict = Arc<tokio::sync::Notify>;

/// The connection table, shared by the accept loop and the connections.
#[derive(Clone)]
struct Tracker {
    table: Arc<Mutex<Table<Evict>>>,
    metrics: Option<crate::metrics::Metrics>,
}

impl Tracker {
    fn lock(&self) -> MutexGuard<'_, Table<Evict>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self) {
        let Some(metrics) = &self.metrics else { return };
        let counts = self.lock().counts();
        for (state, n) in [
            ("handshaking", counts.handshaking),
            ("idle", counts.idle),
            ("busy", counts.busy),
            ("closing", counts.closing),
        ] {
            metrics
                .connections
                .with_label_values(&[state])
                .set(n as i64);
        }
    }

    fn count(&self, outcome: &str) {
        if let Some(metrics) = &self.metrics {
            metrics
                .connections_limited
                .with_label_values(&[outcome])
                .inc();
        }
    }
}

/// Removes a connection from the table when its task ends.
struct Registered {
    tracker: Tracker,
    id: ConnId,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.tracker.lock().remove(self.id);
        self.tracker.publish();
    }
}

/// Marks a request of a connection finished when its handler is done.
struct InFlight {
    tracker: Tracker,
    id: ConnId,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.tracker
            .lock()
            .request_ended(self.id, std::time::Instant::now());
    }
}

/// [`serve`] with explicit limits. At most `max_connections` connections
/// are open: past it a new connection takes the place of the oldest one
/// still in its TLS handshake, or of the one idle the longest (told to
/// close gracefully); when every connection has a request in flight the new
/// one is closed at once. So idle or half-open connections cannot keep
/// clients out, and file descriptors stay bounded.
pub async fn serve_with(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    routes: NodeRoutes,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let limit = match options.max_connections {
        0 => limits::DEFAULT_MAX_CONNECTIONS,
        n => n,
    };
    let tracker = Tracker {
        table: Arc::new(Mutex::new(Table::new(limit))),
        metrics: options.metrics,
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A member of the pool that vanished (power cut, cable) sends no FIN: the
    // server's own HTTP/2 pings find it within half a minute.
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_header_list_size(limits::MAX_HEADER_BYTES as u32)
        .keep_alive_interval(Some(KEEPALIVE_INTERVAL))
        .keep_alive_timeout(KEEPALIVE_TIMEOUT);
    // An HTTP/1.1 client gets as long as hyper's default to send its head.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_buf_size(limits::MAX_HEADER_BYTES);
    let service = tower::service_fn(move |request: Request<Incoming>| {
        let router = if is_grpc(&request) {
            routes.grpc.clone()
        } else {
            routes.http.clone()
        };
        async move {
            Ok::<_, Infallible>(
                router
                    .oneshot(request)
                    .await
                    .unwrap_or_else(|never| match never {}),
            )
        }
    });
    // Every connection task holds a sender; when all are gone, all closed.
    let (alive, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!("accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let evict: Evict = Arc::new(tokio::sync::Notify::new());
        let admitted = tracker.lock().admit(evict.clone());
        let id = match admitted {
            Admitted::Accepted(id) => id,
            Admitted::Replacing { id, victim } => {
                victim.notify_one();
                tracker.count("replaced");
                id
            }
            Admitted::Refused => {
                tracing::warn!(%peer, limit, "connection refused: every connection has a request in flight");
                tracker.count("refused");
                continue;
            }
        };
        tracker.publish();
        let registered = Registered {
            tracker: tracker.clone(),
            id,
        };
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let service = service.clone();
        let alive = alive.clone();
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let _alive = alive;
            let tracker = registered.tracker.clone();
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
            let tls = tokio::select! {
                done = handshake => match done {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, "TLS handshake failed: {error}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
                _ = evict.notified() => {
                    tracing::debug!(%peer, "closed in its TLS handshake to make room");
                    return;
                }
                _ = stopping.wait_for(|stop| *stop) => return,
            };
            tracker.lock().established(id, std::time::Instant::now());
            tracker.publish();
            // tonic's `remote_addr()` reads the peer from here.
            let connected = tonic::transport::server::TcpConnectInfo {
                local_addr: None,
                remote_addr: Some(peer),
            };
            let counting = tracker.clone();
            let service = tower::service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(connected.clone());
                counting.lock().request_started(id);
                let in_flight = InFlight {
                    tracker: counting.clone(),
                    id,
                };
                let service = service.clone();
                async move {
                    let _in_flight = in_flight;
                    service.oneshot(request).await
                }
            });
            let connection =
                builder.serve_connection(TokioIo::new(tls), TowerToHyperService::new(service));
            tokio::pin!(connection);
            let mut closing = false;
            let outcome = loop {
                tokio::select! {
                    outcome = connection.as_mut() => break outcome,
                    _ = evict.notified(), if !closing => {
                        tracing::debug!(%peer, "idle connection closed to make room");
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    _ = stopping.wait_for(|stop| *stop), if !closing => {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            };
            if let Err(error) = outcome {
                tracing::debug!(%peer, "connection ended with an error: {error}");
            }
            drop(registered);
        });
    }
    drop(listener);
    tracing::info!("shutting down: draining connections");
    let _ = stop.send(true);
    drop(alive);
    if tokio::time::timeout(DRAIN_TIMEOUT, all_closed.recv())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!("cannot listen for SIGTERM: {error}");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT received"),
        _ = terminate => tracing::info!("SIGTERM received"),
    }
}

/// Serves `/metrics` (Prometheus text format), `/healthz`, `/readyz`, and
/// for people `/status` (JSON) and `/` (a page over it) on plain HTTP on its
/// own listener, until `shutdown` completes. Without a
/// `readiness`, `/readyz` is `/healthz`.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: crate::metrics::Metrics,
    role: &'static str,
    readiness: Option<Arc<dyn Readiness>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let board = crate::status::StatusBoard::new(role, metrics.clone());
    board.sample();
    board.start_sampler();
    let render = move || {
        let metrics = metrics.clone();
        async move {
            (
                [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                metrics.render(),
            )
        }
    };
    let ready = readiness.clone();
    let status = move || {
        let board = board.clone();
        let ready = ready.clone();
        async move {
            let verdict = ready.as_ref().map_or(Ok(()), |r| r.readiness());
            let mut status = board.status(verdict);
            if let (Some(details), Some(fields)) = (
                ready.as_ref().and_then(|r| r.details()),
                status.as_object_mut(),
            ) {
                fields.insert("details".into(), details);
            }
            (
                [(http::header::CACHE_CONTROL, "no-store")],
                axum::Json(status),
            )
        }
    };
    let page = || async {
        (
            [(http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
            crate::status::PAGE,
        )
    };
    let router = Router::new()
        .route("/metrics", axum::routing::get(render))
        .route("/status", axum::routing::get(status))
        .route("/", axum::routing::get(page));
    let router = router.route(
        "/healthz",
        axum::routing::get(crate::segment::http::healthz),
    );
    let router = match readiness {
        Some(readiness) => router.route(
            "/readyz",
            axum::routing::get(move || {
                let readiness = readiness.clone();
                async move { crate::segment::http::readiness_response(readiness.as_ref()) }
            }),
        ),
        None => router.route("/readyz", axum::routing::get(crate::segment::http::healthz)),
    };
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The content type of a file the demo's folder holds.
fn folder_content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "m3u8" => "application/vnd.apple.mpegurl",
        "ts" => "video/mp2t",
        "mp4" => "video/mp4",
        "js" => "text/javascript; charset=utf-8",
        "map" | "json" => "application/json",
        _ => "application/octet-stream",
    }
}

/// Whether `name` is a plain file name in the folder (no path, no dot file).
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// Serves the files directly inside `dir` over plain HTTP (`GET /NAME`;
/// `/` is `index.html`) until `shutdown` completes: the demo's ladder for a
/// browser. Nothing outside `dir`, no listings.
pub async fn serve_folder(
    listener: TcpListener,
    dir: std::path::PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let dir = Arc::new(dir);
    let file = move |axum::extract::Path(name): axum::extract::Path<String>| {
        let dir = dir.clone();
        async move { folder_file(&dir, &name).await }
    };
    let router = Router::new()
        .route(
            "/",
            axum::routing::get(|| async { axum::response::Redirect::temporary("/index.html") }),
        )
        .route("/{name}", axum::routing::get(file));
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn folder_file(dir: &std::path::Path, name: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !is_plain_file_name(name) {
        return (http::StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    match tokio::fs::read(dir.join(name)).await {
        Ok(data) => (
            [
                (http::header::CONTENT_TYPE, folder_content_type(name)),
                (http::header::CACHE_CONTROL, "no-cache"),
            ],
            data,
        )
            .into_response(),
        Err(_) => (http::StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

#[cfg(test)]
mod folder_tests {
    use super::*;

    #[test]
    fn only_plain_names_in_the_folder_are_served() {
        assert!(is_plain_file_name("index.html"));
        assert!(is_plain_file_name("abc_3.ts"));
        for bad in ["", ".git", "../etc", "a/b", "%2e%2e", "x y"] {
            assert!(!is_plain_file_name(bad), "{bad}");
        }
        assert_eq!(
            folder_content_type("a.m3u8"),
            "application/vnd.apple.mpegurl"
        );
        assert_eq!(folder_content_type("a.ts"), "video/mp2t");
    }
}
