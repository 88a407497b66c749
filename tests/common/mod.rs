//! Shared set-up for the integration tests: keys, a ledger with jobs, and a
//! real node (TLS on loopback, port 0) running in-process.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use lpgpu::chain::{Chain, Ledger, NewJob};
use lpgpu::eth::PrivateKey;
use lpgpu::orchestrator::OrchestratorService;
use lpgpu::protocol::{ManifestId, Profile, encode_transcoding_options, parse_profile_list};
use lpgpu::server::{NodeRoutes, serve, service_uri};
use lpgpu::tls::SelfSignedCert;
use tokio::sync::oneshot;

pub struct World {
    pub dir: tempfile::TempDir,
    pub orchestrator: PrivateKey,
    pub broadcaster: PrivateKey,
    pub ledger: Ledger,
}

impl World {
    pub fn new(block_seconds: f64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::init(dir.path().join("ledger.json"), block_seconds).unwrap();
        Self {
            dir,
            orchestrator: PrivateKey::random(),
            broadcaster: PrivateKey::random(),
            ledger,
        }
    }

    pub fn ledger_path(&self) -> PathBuf {
        self.ledger.path().to_path_buf()
    }

    /// A job of our broadcaster for `transcoder`, ending `blocks` from now.
    pub fn job_for(&self, transcoder: &PrivateKey, profiles: &str, blocks: u64) -> u64 {
        let profiles: Vec<Profile> = parse_profile_list(profiles).unwrap();
        let job = NewJob {
            stream_id: ManifestId::random().stream_id(&Profile::by_name("P720p30fps16x9").unwrap()),
            transcoding_options: encode_transcoding_options(&profiles),
            transcoder: transcoder.address(),
            blocks,
        };
        self.ledger
            .create_job_blocking(self.broadcaster.address(), job)
            .unwrap()
    }

    pub fn job(&self, profiles: &str, blocks: u64) -> u64 {
        self.job_for(&self.orchestrator, profiles, blocks)
    }
}

pub struct RunningNode {
    pub addr: SocketAddr,
    pub uri: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl RunningNode {
    /// Starts a node for `hostname` on 127.0.0.1, port 0.
    pub async fn start(world: &World, hostname: &str) -> Self {
        let cert = SelfSignedCert::generate(hostname).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let uri = service_uri(hostname, addr.port());
        let chain: Arc<dyn Chain> = Arc::new(world.ledger.clone());
        let service = OrchestratorService::new(Arc::new(world.orchestrator.clone()), chain, &uri);
        let routes = NodeRoutes::new(Some(service), true);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            listener,
            cert.server_config().unwrap(),
            routes,
            async {
                let _ = stopped.await;
            },
        ));
        Self {
            addr,
            uri,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the node and checks it shut down cleanly.
    pub async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

/// Sends one request over a fresh TLS connection speaking `alpn` ("h2" or
/// "http/1.1"), checking the certificate names `hostname`.
pub async fn https_request(
    addr: SocketAddr,
    hostname: &str,
    alpn: &'static [u8],
    request: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> (http::StatusCode, http::HeaderMap, bytes::Bytes) {
    use http_body_util::BodyExt;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let config = lpgpu::tls::client_config(&[alpn]);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(hostname.to_string()).unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
    let io = TokioIo::new(tls);
    let response = if alpn == b"h2" {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(connection);
        sender.send_request(request).await.unwrap()
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(connection);
        sender.send_request(request).await.unwrap()
    };
    let (parts, body) = response.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}
