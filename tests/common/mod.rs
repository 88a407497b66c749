//! Shared set-up for the integration tests: keys, a ledger with jobs, and a
//! real node (TLS on loopback, port 0) running in-process.

#![allow(dead_code)]

pub mod anvil;
pub mod netns;
pub mod today;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use lpgpu::chain::{Chain, Ledger, NewJob};
use lpgpu::eth::PrivateKey;
use lpgpu::metrics::Metrics;
use lpgpu::node::{Node, NodeConfig};
use lpgpu::pipeline::cpu::CpuBackend;
use lpgpu::pipeline::{Backend, EncoderSettings};
use lpgpu::protocol::{ManifestId, Profile, encode_transcoding_options, parse_profile_list};
use lpgpu::segment::SegmentCore;
use lpgpu::server::{serve, service_uri};
use lpgpu::store::StoreLimits;
use lpgpu::tls::SelfSignedCert;
use std::time::Duration;
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
    /// The node's segment path (its metrics, readiness, draining).
    pub transcoder: Arc<SegmentCore>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl RunningNode {
    /// Starts a node for `hostname` on 127.0.0.1, port 0.
    pub async fn start(world: &World, hostname: &str) -> Self {
        Self::start_with(world, hostname, |_| {}).await
    }

    /// Starts a node whose transcoder settings `adjust` may change.
    pub async fn start_with(
        world: &World,
        hostname: &str,
        adjust: impl FnOnce(&mut NodeConfig),
    ) -> Self {
        let chain: Arc<dyn Chain> = Arc::new(world.ledger.clone());
        Self::start_on(chain, world.orchestrator.clone(), hostname, adjust).await
    }

    /// Starts a node on any chain, as `orchestrator`.
    pub async fn start_on(
        chain: Arc<dyn Chain>,
        orchestrator: PrivateKey,
        hostname: &str,
        adjust: impl FnOnce(&mut NodeConfig),
    ) -> Self {
        let backend = Arc::new(CpuBackend::new(EncoderSettings::default()));
        Self::start_with_backend(chain, orchestrator, hostname, adjust, backend).await
    }

    /// Starts a node that transcodes with `backend`.
    #[allow(dead_code)] // not every test binary uses every helper
    pub async fn start_with_backend(
        chain: Arc<dyn Chain>,
        orchestrator: PrivateKey,
        hostname: &str,
        adjust: impl FnOnce(&mut NodeConfig),
        backend: Arc<dyn Backend>,
    ) -> Self {
        let cert = SelfSignedCert::generate(hostname).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let uri = service_uri(hostname, addr.port());
        let key = Arc::new(orchestrator);
        let metrics = Metrics::new();
        let mut config = NodeConfig::orchestrator(uri.clone(), key);
        config.backend = Some(backend);
        config.max_sessions = 2;
        config.transcode_timeout = Duration::from_secs(120);
        config.store = StoreLimits {
            max_bytes: 64 << 20,
            retention: Duration::from_secs(60),
        };
        adjust(&mut config);
        let node = Node::build(config, chain, metrics).unwrap();
        let transcoder = node.core().unwrap().clone();
        let routes = node.routes();
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
            transcoder,
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
pub async fn https_request<B>(
    addr: SocketAddr,
    hostname: &str,
    alpn: &'static [u8],
    request: http::Request<B>,
) -> (http::StatusCode, http::HeaderMap, bytes::Bytes)
where
    B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
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

/// Test clips made once per test binary with the ffmpeg CLI (installed by
/// .ci/setup): real H.264/AAC MPEG-TS and friends.
pub fn clip(name: &str) -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("lpgpu-clips-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let make = |file: &str, args: &str| {
            let status = std::process::Command::new("ffmpeg")
                .args(["-loglevel", "error", "-y"])
                .args(args.split_whitespace())
                .arg(dir.join(file))
                .status()
                .expect("ffmpeg CLI (run .ci/setup)");
            assert!(status.success(), "making {file}");
        };
        let video = "-f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2";
        make("h264_720p.ts", &format!("{video} -c:v libx264 -preset ultrafast -g 60 -c:a aac -f mpegts"));
        make("mpeg2_720p.ts", &format!("{video} -c:v mpeg2video -q:v 5 -c:a mp2 -f mpegts"));
        make("audio_only.ts", "-f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:a aac -f mpegts");
        make(
            "h264_60fps_4x3.ts",
            "-f lavfi -i testsrc2=size=640x480:rate=60 -t 2 -c:v libx264 -preset ultrafast -g 60 -f mpegts",
        );
        make(
            "h264_360p_6s.ts",
            "-f lavfi -i testsrc2=size=640x360:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 6 \
             -c:v libx264 -preset ultrafast -g 60 -c:a aac -f mpegts",
        );
        let good = std::fs::read(dir.join("h264_720p.ts")).unwrap();
        std::fs::write(dir.join("truncated.ts"), &good[..188 * 12]).unwrap();
        dir
    });
    dir.join(name)
}

/// ffprobe's view of the first video stream: (codec, width, height, duration s).
pub fn probe(data: &[u8]) -> (String, u32, u32, f64) {
    let path = std::env::temp_dir().join(format!(
        "lpgpu-probe-{}-{}.ts",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::write(&path, data).unwrap();
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_frames"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames,r_frame_rate",
            "-of",
            "json",
        ])
        .arg(&path)
        .output()
        .expect("ffprobe (run .ci/setup)");
    std::fs::remove_file(&path).ok();
    assert!(
        out.status.success(),
        "ffprobe refused the rendition: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stream = &json["streams"][0];
    let frames: f64 = stream["nb_read_frames"].as_str().unwrap().parse().unwrap();
    let rate: Vec<f64> = stream["r_frame_rate"]
        .as_str()
        .unwrap()
        .split('/')
        .map(|x| x.parse().unwrap())
        .collect();
    (
        stream["codec_name"].as_str().unwrap().to_string(),
        stream["width"].as_u64().unwrap() as u32,
        stream["height"].as_u64().unwrap() as u32,
        frames * rate[1] / rate[0],
    )
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// One part of a `multipart/mixed` body: lower-cased header names and values, and the data.
pub type Part = (Vec<(String, String)>, Vec<u8>);

/// Splits a `multipart/mixed` body into its parts.
pub fn parse_multipart(content_type: &str, body: &[u8]) -> Vec<Part> {
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .expect("a boundary")
        .trim();
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = body;
    loop {
        let start = find(rest, delimiter.as_bytes()).expect("a delimiter");
        rest = &rest[start + delimiter.len()..];
        if rest.starts_with(b"--") {
            return parts;
        }
        rest = &rest[2..]; // CRLF after the delimiter
        let header_end = find(rest, b"\r\n\r\n").expect("end of part headers");
        let headers: Vec<(String, String)> = String::from_utf8(rest[..header_end].to_vec())
            .unwrap()
            .split("\r\n")
            .map(|line| {
                let (name, value) = line.split_once(':').expect("name: value");
                (name.trim().to_ascii_lowercase(), value.trim().to_string())
            })
            .collect();
        rest = &rest[header_end + 4..];
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .unwrap()
            .1
            .parse()
            .unwrap();
        parts.push((headers, rest[..length].to_vec()));
        rest = &rest[length..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---- Separate processes: ports, keystores, their output, their metrics ----

/// A port that was free a moment ago on 127.0.0.1, for a child process to
/// bind.
///
/// Never one the kernel hands out for `:0` binds (Linux's ephemeral range
/// starts at 32768): a port taken from that range and released can be given
/// to any other socket before the child binds it, which made a CI run fail
/// with "Address already in use". Ports below the range are handed out once
/// per test process, from a start that differs between processes.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 10_000;
    const SPAN: u32 = 22_000; // up to 31_999
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let start = std::process::id().wrapping_mul(2_654_435_761).wrapping_add(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0),
    ) % SPAN;
    let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range")
}

/// `world.dir/name`: a keystore of `key` (light KDF), made once.
pub fn keystore(world: &World, name: &str, key: &PrivateKey, password: &str) -> PathBuf {
    let dir = world.dir.path().join(name);
    if !dir.exists() {
        lpgpu::eth::keystore::KeystoreDir::new(&dir)
            .create(
                key,
                password.as_bytes(),
                lpgpu::eth::keystore::KdfStrength::Light,
            )
            .unwrap();
    }
    dir
}

/// The first line a child prints on stdout (its stdout is taken).
pub fn first_line(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line
}

/// The value of the series `name` (with its labels, e.g.
/// `lpgpu_pool_members ` or `x_total{a="b"}`) in Prometheus text; 0 if absent.
pub fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A child process killed (and reaped) when dropped.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
