//! Overload and faults, with the node as its own process (`lpgpu node`):
//! far more uploads than slots; the node killed mid-broadcast and started
//! again; the chain's RPC node gone and back; the broadcaster's disk full.

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{World, clip, free_port, https_request};
use http_body_util::Full;
use lpgpu::eth::keccak256;
use lpgpu::protocol::{SegmentHeader, encode_segment_header, mint_credentials};

const PROFILES: &str = "P240p30fps16x9,P144p30fps16x9";
const PASSWORD: &str = "pw";

fn keystore(world: &World, name: &str, key: &lpgpu::eth::PrivateKey) -> PathBuf {
    common::keystore(world, name, key, PASSWORD)
}

/// `lpgpu node` as its own process on a given port.
struct NodeProcess {
    child: Child,
    port: u16,
    metrics: String,
}

impl NodeProcess {
    fn start(world: &World, chain: &str, port: u16, extra: &[&str]) -> Self {
        let keystore = keystore(world, "orchestrator", &world.orchestrator);
        let metrics_port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_lpgpu"))
            .args(["node", "--hostname", "localhost", "--backend", "cpu"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .arg("--keystore")
            .arg(&keystore)
            .args(["--chain", chain])
            .args(extra)
            .env("LPGPU_PASSWORD", PASSWORD)
            .env_remove("LPGPU_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting lpgpu node");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("listening on"), "{line:?}");
        let port = line
            .split_whitespace()
            .last()
            .and_then(|uri| uri.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap();
        Self {
            child,
            port,
            metrics: format!("127.0.0.1:{metrics_port}"),
        }
    }

    fn uri(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    fn addr(&self) -> std::net::SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().unwrap()
    }

    fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&self.metrics).unwrap();
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    }

    /// Peak and current resident memory (KiB), from /proc.
    fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        (field("VmHWM:"), field("VmRSS:"))
    }

    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn counter(metrics: &str, series: &str) -> u64 {
    common::metric(metrics, series) as u64
}

fn signed_upload(world: &World, job: u64, seq: u64, body: &Bytes) -> http::Request<Full<Bytes>> {
    let stream_id = world.ledger.job_blocking(job).unwrap().unwrap().stream_id;
    let header = SegmentHeader::sign(&world.broadcaster, &stream_id, seq, keccak256(body));
    http::Request::post("https://localhost/segment")
        .header("authorization", "Livepeer-Eth-1")
        .header("credentials", mint_credentials(&world.orchestrator, job))
        .header("livepeer-segment", encode_segment_header(&header))
        .header("content-type", "video/MP2T")
        .header("accept", "multipart/mixed")
        .body(Full::new(body.clone()))
        .unwrap()
}

fn broadcast_command(world: &World, job: u64, uri: &str, input: &Path, out: &Path) -> Command {
    let keystore = keystore(world, "broadcaster", &world.broadcaster);
    let mut command = Command::new(env!("CARGO_BIN_EXE_lpgpu"));
    command
        .args(["broadcast", "--job", &job.to_string(), "--keystore"])
        .arg(&keystore)
        .args([
            "--chain",
            &format!("ledger:{}", world.ledger_path().display()),
        ])
        .args(["--orchestrator", uri, "--input"])
        .arg(input)
        .arg("--out")
        .arg(out)
        .env("LPGPU_PASSWORD", PASSWORD)
        .env_remove("LPGPU_CONFIG");
    command
}

/// Every media playlist of `out` lists `segments` segments and ends.
fn check_playlists(out: &Path, segments: usize) {
    let mut media = 0;
    for entry in std::fs::read_dir(out).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if path.extension().is_some_and(|e| e == "m3u8") && !text.contains("#EXT-X-STREAM-INF") {
            media += 1;
            assert_eq!(
                text.matches("#EXTINF").count(),
                segments,
                "{}:\n{text}",
                path.display()
            );
            assert!(text.trim_end().ends_with("#EXT-X-ENDLIST"), "{text}");
        }
    }
    assert_eq!(media, 2, "two renditions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_times_the_slots_in_concurrent_uploads_get_whole_answers_in_bounded_memory() {
    const SLOTS: usize = 2;
    const UPLOADS: usize = 24 * SLOTS;
    let world = World::new(1.0);
    let job = world.job(PROFILES, 1_000_000);
    let chain = format!("ledger:{}", world.ledger_path().display());
    let node = NodeProcess::start(&world, &chain, 0, &["--max-sessions", &SLOTS.to_string()]);
    let segment = Bytes::from(std::fs::read(clip("h264_720p.ts")).unwrap());

    // Warm up (first transcode's allocations), then note the memory.
    let (status, _, _) = https_request(
        node.addr(),
        "localhost",
        b"h2",
        signed_upload(&world, job, 0, &segment),
    )
    .await;
    assert_eq!(status, 200);
    let (_, baseline) = node.memory_kib();

    let started = Instant::now();
    let uploads: Vec<_> = (0..UPLOADS)
        .map(|i| {
            let request = signed_upload(&world, job, 1 + i as u64, &segment);
            let addr = node.addr();
            tokio::spawn(async move { https_request(addr, "localhost", b"h2", request).await })
        })
        .collect();
    let (mut ok, mut busy) = (0, 0);
    for upload in uploads {
        let (status, headers, body) = upload.await.unwrap();
        match status.as_u16() {
            200 => {
                let content_type = headers.get("content-type").unwrap().to_str().unwrap();
                assert_eq!(common::parse_multipart(content_type, &body).len(), 2);
                ok += 1;
            }
            503 => {
                assert!(
                    headers.get("retry-after").is_some(),
                    "503 without Retry-After"
                );
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(json["error"], "busy", "{json}");
                busy += 1;
            }
            other => panic!("answer {other}: {}", String::from_utf8_lossy(&body)),
        }
    }
    println!(
        "{UPLOADS} uploads in {:?}: {ok} transcoded, {busy} busy",
        started.elapsed()
    );
    assert_eq!(ok + busy, UPLOADS);
    assert!(ok >= SLOTS && busy > 0, "{ok} ok, {busy} busy");

    // Memory: a rejected body is never buffered (it is drained), so the peak
    // is the idle node plus what the transcodes hold. Bound: every upload's
    // body at once (were they all buffered, which they must not be) is
    // 48 x 0.6 MB; the bound allows the slots' segments, their decoders and
    // encoders (2 x 2 renditions of 720p) and a fixed 256 MiB margin.
    let (peak, _) = node.memory_kib();
    let segment_kib = segment.len() as u64 / 1024;
    let bound = baseline + SLOTS as u64 * segment_kib * 4 + 256 * 1024;
    println!("RSS: {baseline} KiB after warm-up, peak {peak} KiB, bound {bound} KiB");
    assert!(
        peak <= bound,
        "peak RSS {peak} KiB over the bound {bound} KiB"
    );

    // Afterwards the node transcodes normally and counted every rejection.
    let (status, _, _) = https_request(
        node.addr(),
        "localhost",
        b"h2",
        signed_upload(&world, job, 1000, &segment),
    )
    .await;
    assert_eq!(status, 200);
    let metrics = node.metrics();
    assert_eq!(
        counter(&metrics, "lpgpu_rejections_total{code=\"busy\"} "),
        busy as u64,
        "{metrics}"
    );

    // A broadcaster under the same overload still delivers every segment.
    let out = world.dir.path().join("hls");
    let broadcaster = broadcast_command(&world, job, &node.uri(), &clip("h264_360p_6s.ts"), &out)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let flood: Vec<_> = (0..UPLOADS)
        .map(|i| {
            let request = signed_upload(&world, job, 2000 + i as u64, &segment);
            let addr = node.addr();
            tokio::spawn(async move { https_request(addr, "localhost", b"h2", request).await.0 })
        })
        .collect();
    for upload in flood {
        let status = upload.await.unwrap().as_u16();
        assert!(status == 200 || status == 503, "{status}");
    }
    let output = tokio::task::block_in_place(|| broadcaster.wait_with_output()).unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("3 segments, 0 failed"), "{stdout}");
    check_playlists(&out, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_killed_mid_broadcast_and_restarted_loses_no_segment() {
    let world = World::new(1.0);
    let job = world.job(PROFILES, 1_000_000);
    let chain = format!("ledger:{}", world.ledger_path().display());
    let node = NodeProcess::start(&world, &chain, 0, &["--max-sessions", "2"]);
    let port = node.port;
    // 20 s of video: 10 segments.
    let input = world.dir.path().join("long.ts");
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=640x360:rate=30")
        .args([
            "-t",
            "20",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "60",
            "-f",
            "mpegts",
        ])
        .arg(&input)
        .status()
        .unwrap();
    assert!(status.success());
    let out = world.dir.path().join("hls");
    let broadcaster = broadcast_command(&world, job, &node.uri(), &input, &out)
        .args(["--max-in-flight", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the node once a few segments are through, start it again on the
    // same port 2 s later.
    let playlist = |out: &Path| -> usize {
        std::fs::read_dir(out)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "ts"))
                    .count()
            })
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while playlist(&out) < 4 {
        assert!(Instant::now() < deadline, "no progress before the kill");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.kill9();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let node = NodeProcess::start(&world, &chain, port, &["--max-sessions", "2"]);
    let output = tokio::task::block_in_place(|| broadcaster.wait_with_output()).unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("10 segments, 0 failed"), "{stdout}");
    check_playlists(&out, 10);
    drop(node);
}

/// A TCP relay standing for the chain's RPC node: it can be taken down
/// (listener closed, connections cut) and brought back on the same port.
struct Relay {
    port: u16,
    backend: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    async fn start(backend: &str) -> Self {
        let mut relay = Self {
            port: free_port(),
            backend: backend.to_string(),
            task: None,
        };
        relay.up().await;
        relay
    }

    async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        let backend = self.backend.clone();
        self.task = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let backend = backend.clone();
                connections.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }));
    }

    fn down(&mut self) {
        // Aborting the task drops the listener and every relayed connection.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn while_the_chain_is_down_requests_are_unavailable_and_they_recover_by_themselves() {
    use lpgpu::chain::{ChainAdmin, EthSpec, Ethereum, NewJob};
    use lpgpu::protocol::{ManifestId, Profile, encode_transcoding_options, parse_profile_list};
    let anvil = common::anvil::Anvil::start();
    let deployer = lpgpu::eth::PrivateKey::from_hex(common::anvil::DEPLOYER).unwrap();
    let broadcaster = lpgpu::eth::PrivateKey::from_hex(common::anvil::BROADCASTER).unwrap();
    let mut relay = Relay::start(anvil.url.strip_prefix("http://").unwrap()).await;
    let relayed = format!("http://127.0.0.1:{}", relay.port);
    let mut spec = Ethereum::deploy(&relayed, &deployer, &Default::default())
        .await
        .unwrap();
    spec.url = relayed;
    let chain = Ethereum::new(EthSpec::parse(&spec.render()["eth:".len()..]).unwrap()).unwrap();
    let job = chain
        .create_job(
            &broadcaster,
            NewJob {
                stream_id: ManifestId::random()
                    .stream_id(&Profile::by_name("P720p30fps16x9").unwrap()),
                transcoding_options: encode_transcoding_options(
                    &parse_profile_list("P144p30fps16x9").unwrap(),
                ),
                transcoder: deployer.address(),
                blocks: 100_000,
            },
        )
        .await
        .unwrap();
    let stream_id = lpgpu::chain::Chain::job(&chain, job)
        .await
        .unwrap()
        .unwrap()
        .stream_id;

    let world = World::new(1.0);
    let orchestrator_keystore = keystore(&world, "deployer", &deployer);
    let mut node = Command::new(env!("CARGO_BIN_EXE_lpgpu"))
        .args([
            "node",
            "--hostname",
            "localhost",
            "--backend",
            "cpu",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--metrics-listen", "127.0.0.1:0", "--keystore"])
        .arg(&orchestrator_keystore)
        .args(["--chain", &spec.render()])
        .env("LPGPU_PASSWORD", PASSWORD)
        .env_remove("LPGPU_CONFIG")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(node.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let uri = line.split_whitespace().last().unwrap().to_string();
    let port: u16 = uri.rsplit(':').next().unwrap().parse().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    let segment = Bytes::from(std::fs::read(clip("h264_720p.ts")).unwrap());
    let upload = |seq: u64| {
        let header = SegmentHeader::sign(&broadcaster, &stream_id, seq, keccak256(&segment));
        http::Request::post("https://localhost/segment")
            .header("authorization", "Livepeer-Eth-1")
            .header("credentials", mint_credentials(&deployer, job))
            .header("livepeer-segment", encode_segment_header(&header))
            .header("content-type", "video/MP2T")
            .header("accept", "multipart/mixed")
            .body(Full::new(segment.clone()))
            .unwrap()
    };
    let get_transcoder = || async {
        let mut client = lpgpu::orchestrator::client::connect(&uri).await.unwrap();
        let sig = broadcaster.sign(job.to_string().as_bytes()).to_vec();
        client
            .get_transcoder(lpgpu::proto::TranscoderRequest {
                job_id: job as i64,
                sig,
            })
            .await
    };
    assert!(get_transcoder().await.is_ok());
    assert_eq!(
        https_request(addr, "localhost", b"h2", upload(0)).await.0,
        200
    );

    // The RPC node goes away (after the 5 s job cache has lapsed).
    relay.down();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let status = get_transcoder().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(status.message(), "the chain cannot be read right now");
    let (status, _, body) = https_request(addr, "localhost", b"h2", upload(1)).await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"], "chain_unavailable");

    // Back: both recover with nobody touching the node.
    relay.up().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if get_transcoder().await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "GetTranscoder did not recover");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        https_request(addr, "localhost", b"h2", upload(2)).await.0,
        200
    );
    let _ = node.kill();
    let _ = node.wait();
    drop(anvil);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_output_disk_is_a_clear_error_and_the_playlists_still_parse() {
    let world = World::new(1.0);
    let job = world.job(PROFILES, 1_000_000);
    let chain = format!("ledger:{}", world.ledger_path().display());
    let node = NodeProcess::start(&world, &chain, 0, &["--max-sessions", "2"]);
    let out = world.dir.path().join("small-disk");
    std::fs::create_dir_all(&out).unwrap();
    // A 600 KiB tmpfs: room for the first segment's renditions, not for all.
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=600k", "tmpfs"])
        .arg(&out)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        println!("mounting a tmpfs is not permitted here: the disk-full test did not run");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(out.clone());
    let input = world.dir.path().join("long.ts");
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=640x360:rate=30,noise=alls=20:allf=t")
        .args([
            "-t",
            "12",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "60",
            "-f",
            "mpegts",
        ])
        .arg(&input)
        .status()
        .unwrap();
    assert!(status.success());
    let output = tokio::task::block_in_place(|| {
        broadcast_command(&world, job, &node.uri(), &input, &out)
            .output()
            .unwrap()
    });
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a full disk is a failure");
    assert!(
        stderr.contains("No space left on device"),
        "the error says why: {stderr}"
    );
    // Whatever playlists were written are whole: each parses, every segment
    // it lists is on disk, and no temporary file is left behind.
    let mut playlists = 0;
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert!(!name.ends_with(".tmp"), "a temporary file was left: {name}");
        if name.ends_with(".m3u8") {
            playlists += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.starts_with("#EXTM3U"), "{name}:\n{text}");
            for uri in text
                .lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
            {
                assert!(
                    out.join(uri).exists(),
                    "{name} lists {uri}, which is not on disk"
                );
            }
            let probe = Command::new("ffprobe")
                .args(["-v", "error"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                probe.status.success(),
                "ffprobe {name}: {}",
                String::from_utf8_lossy(&probe.stderr)
            );
        }
    }
    assert!(playlists > 0, "the first segment's playlists were written");
}

/// Two thousand idle connections (half never start TLS, half finish it and
/// say nothing) from an independent client, against a node limited to 256:
/// a real client still gets its segment transcoded at once, and the node's
/// file descriptors stay near the limit, not near two thousand.
#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_idle_connections_keep_no_client_out_and_descriptors_stay_bounded() {
    const LIMIT: usize = 256;
    let world = World::new(1.0);
    let job = world.job(PROFILES, 1_000_000);
    let chain = format!("ledger:{}", world.ledger_path().display());
    let node = NodeProcess::start(
        &world,
        &chain,
        0,
        &["--max-connections", &LIMIT.to_string()],
    );
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", node.child.id()))
            .unwrap()
            .count()
    };
    let before = fds();

    let mut flood = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/idle_flood.py"))
        .args(["127.0.0.1", &node.port.to_string(), "1000", "1000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let holding = tokio::task::block_in_place(|| common::first_line(&mut flood));
    println!("flood: {holding}");
    let counts: Vec<usize> = holding
        .split_whitespace()
        .skip(1)
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 3, "{holding:?}");
    assert_eq!(counts[0] + counts[1] + counts[2], 2000, "{holding:?}");

    // A real exchange, while the flood holds everything it could open.
    let segment = Bytes::from(std::fs::read(clip("h264_720p.ts")).unwrap());
    let started = Instant::now();
    let (status, _, body) = https_request(
        node.addr(),
        "localhost",
        b"h2",
        signed_upload(&world, job, 0, &segment),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    println!(
        "a segment transcoded in {:?} under the flood",
        started.elapsed()
    );
    let during = fds();
    println!("node descriptors: {before} before, {during} under the flood");
    assert!(
        during <= before + LIMIT + 16,
        "{during} descriptors under the flood ({before} before, limit {LIMIT})"
    );
    let metrics = node.metrics();
    assert!(
        counter(
            &metrics,
            "lpgpu_connections_limited_total{outcome=\"replaced\"} "
        ) > 1000,
        "{metrics}"
    );
    drop(flood.stdin.take());
    let _ = flood.wait();
    node.kill9();
}

/// Flags a node cannot run with are refused by name before anything binds.
#[test]
fn bad_node_flags_are_refused_by_name_before_binding() {
    let world = World::new(1.0);
    let keystore = keystore(&world, "orchestrator", &world.orchestrator);
    let chain = format!("ledger:{}", world.ledger_path().display());
    let port = free_port();
    for (flag, value) in [
        ("--max-connections", "0"),
        ("--max-sessions", "0"),
        ("--stream-store-mib", "0"),
        ("--transcode-timeout-seconds", "0"),
        ("--request-timeout-seconds", "0"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_lpgpu"))
            .args(["node", "--hostname", "localhost", "--backend", "cpu"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", "127.0.0.1:0", "--keystore"])
            .arg(&keystore)
            .args(["--chain", &chain, flag, value])
            .env("LPGPU_PASSWORD", PASSWORD)
            .env_remove("LPGPU_CONFIG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} {value} was accepted");
        assert!(stderr.contains(flag), "{flag}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // Nothing was left bound.
    std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
}

/// The flags of today's wire say what is wrong, by name, before anything
/// is dialled or bound.
#[test]
fn bad_flags_of_todays_wire_are_refused_plainly() {
    let clip = common::clip("h264_720p.ts");
    let clip = clip.to_str().unwrap();
    let cases: [(&[&str], &str); 11] = [
        (
            &[
                "orchestrator",
                "--chain",
                "offchain",
                "--hostname",
                "localhost",
                "--transcoder-uri",
                "https://t.example:8935",
            ],
            "--orch-secret",
        ),
        (
            &[
                "node",
                "--chain",
                "ledger:/nonexistent/ledger.json",
                "--hostname",
                "localhost",
            ],
            "--keystore",
        ),
        (
            &[
                "broadcast",
                "--orch-addr",
                "http://o.example:8935",
                "--input",
                clip,
                "--out",
                "/tmp/x",
            ],
            "https",
        ),
        (
            &[
                "broadcast",
                "--orch-addr",
                " , ",
                "--input",
                clip,
                "--out",
                "/tmp/x",
            ],
            "--orch-addr",
        ),
        (
            &[
                "broadcast",
                "--orch-addr",
                "o.example",
                "--profiles",
                "P999p",
                "--input",
                clip,
                "--out",
                "/tmp/x",
            ],
            "--profiles",
        ),
        (
            &[
                "bench",
                "--orch-addr",
                "o.example",
                "--concurrency",
                "1..3",
                "--input",
                clip,
            ],
            "--concurrency",
        ),
        // Payments: a paid node needs an account; Livepeer's contracts are
        // found through a Controller; amounts are decimals; only a
        // broadcaster on an eth: chain pays.
        (
            &[
                "node",
                "--chain",
                "offchain",
                "--hostname",
                "localhost",
                "--price-per-unit",
                "1",
            ],
            "--price-per-unit",
        ),
        (
            &[
                "protocol",
                "status",
                "--chain",
                "offchain",
                "--address",
                "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            ],
            "controller",
        ),
        (
            &[
                "protocol",
                "status",
                "--chain",
                "eth:http://127.0.0.1:1",
                "--address",
                "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            ],
            "controller=0x",
        ),
        (
            &[
                "protocol",
                "activate",
                "--chain",
                "eth:http://127.0.0.1:1?controller=0x5FbDB2315678afecb367f032d93F642f64180aa3",
                "--keystore",
                "/nonexistent",
                "--service-uri",
                "https://o.example:8935",
                "--stake",
                "1.2.3",
            ],
            "--stake",
        ),
        (
            &[
                "broadcast",
                "--orch-addr",
                "o.example",
                "--max-price-per-unit",
                "5",
                "--input",
                clip,
                "--out",
                "/tmp/x",
            ],
            "only a broadcaster on an eth: chain pays",
        ),
    ];
    for (args, says) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_lpgpu"))
            .args(args)
            .env_remove("LPGPU_CONFIG")
            .env_remove("LPGPU_PASSWORD")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
