//! One TLS listener for a whole node: HTTP/2 requests whose content type starts
//! with `application/grpc` go to the gRPC router, everything else to the HTTP
//! router (as go-livepeer did). HTTP/2 and HTTP/1.1 are both served; shutdown
//! stops accepting and lets requests in flight finish.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::orchestrator::OrchestratorService;
pub use crate::transcoder::Readiness;
use crate::transcoder::Transcoder;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long requests in flight get to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The node's routers: gRPC and plain HTTP.
#[derive(Debug, Clone)]
pub struct NodeRoutes {
    pub grpc: Router,
    pub http: Router,
}

impl NodeRoutes {
    /// The orchestrator's gRPC service (when given) and the HTTP routes;
    /// `/segment` only when this process transcodes.
    pub fn new(
        orchestrator: Option<OrchestratorService>,
        transcoder: Option<Arc<Transcoder>>,
    ) -> Self {
        Self {
            grpc: orchestrator
                .map(OrchestratorService::into_router)
                .unwrap_or_default(),
            http: crate::transcoder::http_router(transcoder),
        }
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

/// Serves `routes` over TLS on `listener` until `shutdown` completes, then
/// drains connections for up to 30 s.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    routes: NodeRoutes,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
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
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let service = service.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, "TLS handshake failed: {error}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let connection =
                builder.serve_connection(TokioIo::new(tls), TowerToHyperService::new(service));
            if let Err(error) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%peer, "connection ended with an error: {error}");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: draining connections");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
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

/// Serves `/metrics` (Prometheus text format), `/healthz` and `/readyz` over
/// plain HTTP on its own listener, until `shutdown` completes. Without a
/// `readiness`, `/readyz` is `/healthz`.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: crate::metrics::Metrics,
    readiness: Option<Arc<dyn Readiness>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let render = move || {
        let metrics = metrics.clone();
        async move {
            (
                [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                metrics.render(),
            )
        }
    };
    let router = Router::new().route("/metrics", axum::routing::get(render));
    let router = router.route("/healthz", axum::routing::get(crate::transcoder::healthz));
    let router = match readiness {
        Some(readiness) => router.route(
            "/readyz",
            axum::routing::get(move || {
                let readiness = readiness.clone();
                async move { crate::transcoder::readiness_response(readiness.as_ref()) }
            }),
        ),
        None => router.route("/readyz", axum::routing::get(crate::transcoder::healthz)),
    };
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
