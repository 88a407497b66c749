//! The orchestrator's pool alone, in one run:
//!
//!     cargo bench --bench pool [-- SECONDS]
//!
//! 1. Placement cost (plain code): placing a new stream and the next
//!    segment of a pinned one, with 1, 100 and 10,000 members.
//! 2. Relay: `lpgpu orchestrator --orch-secret` (release build) with
//!    MEMBERS `lpgpu transcoder --orch-addr --backend echo` processes,
//!    members that answer at once (no transcoding: every rendition is the
//!    source), and STREAMS concurrent v2 broadcasters in this process, each
//!    on its own HTTP/2 connection, posting signed 2 s segments one after
//!    the other for SECONDS (default 10). Reported: segments relayed per
//!    second, the orchestrator's own CPU (from /proc) per relayed segment,
//!    latency p50/p95, and the bytes through it per segment (the source in,
//!    out to the member, the renditions back, the answer out).
//! 3. The same relay on today's wire, against the same orchestrator (it
//!    serves both generations): a session per stream, the early 200 and the
//!    `TranscodeResult`, the renditions fetched from `/stream/…`; and the
//!    ratio of the orchestrator's CPU per MB, today's over 2018's.
//!
//! Under `cargo test` (no `--bench`), a one-second run checks that it works.

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Killed, first_line, free_port, metric as series};

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use lpgpu::eth::keccak256;
use lpgpu::pool::placement::{JobNeeds, MemberInfo, Placement};
use lpgpu::protocol::capabilities::CapabilitySet;
use lpgpu::protocol::{SegmentHeader, encode_segment_header, mint_credentials};

const PROFILES: &str = "P240p30fps16x9,P144p30fps16x9";
const SECRET: &str = "bench-secret";
const MEMBERS: usize = 4;
const STREAMS: usize = 8;

fn placement_cost(members: usize) -> (f64, f64) {
    let mut placement = Placement::new();
    for i in 0..members {
        placement.add(MemberInfo {
            name: format!("m{i}"),
            capacity: 8,
            capabilities: CapabilitySet::lpgpu(),
            version: "0.9.1".into(),
            local: false,
        });
    }
    let needs = JobNeeds::default();
    let rounds = (200_000 / members).clamp(200, 100_000);
    // New streams: placed, then ended (the member scan is the cost).
    let started = Instant::now();
    for i in 0..rounds {
        let stream = format!("s{i}");
        placement
            .place(&stream, &needs, &[], || "cafe".into())
            .unwrap();
        placement.unpin(&stream);
    }
    let new_stream = started.elapsed().as_secs_f64() / rounds as f64;
    // Pinned streams: the next segment of one of 1,000 live streams.
    for i in 0..1000 {
        let stream = format!("live{i}");
        if placement
            .place(&stream, &needs, &[], || "cafe".into())
            .is_ok()
        {
            placement.finish(&stream);
        }
    }
    let streams: Vec<String> = (0..1000.min(members * 8))
        .map(|i| format!("live{i}"))
        .collect();
    let started = Instant::now();
    for i in 0..100_000 {
        let stream = &streams[i % streams.len()];
        placement
            .place(stream, &needs, &[], || "cafe".into())
            .unwrap();
        placement.finish(stream);
    }
    let pinned = started.elapsed().as_secs_f64() / 100_000.0;
    (new_stream, pinned)
}

fn release_binary() -> std::path::PathBuf {
    // Benches build in release; the binary sits beside the bench's target dir.
    let path = std::path::PathBuf::from(env!("CARGO_BIN_EXE_lpgpu"));
    assert!(path.exists(), "{} is missing", path.display());
    path
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis: utime is the 12th, stime the 13th.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

struct Relay {
    segments: usize,
    seconds: f64,
    orchestrator_cpu: f64,
    latencies: Vec<f64>,
    /// Today's wire: from the request to the 200 (the gateway gives up
    /// after max(2 s, 0.5 × duration)); empty for the 2018 wire.
    to_200: Vec<f64>,
    /// Bytes through the orchestrator per segment.
    through: usize,
}

/// One orchestrator serving both wire generations, with its echo members.
struct Farm {
    world: Arc<common::World>,
    orchestrator: Killed,
    _members: Vec<Killed>,
    port: u16,
}

/// A farm on the embedded ledger (both generations; results signed), or
/// offchain (today's wire only, unsigned).
async fn farm(offchain: bool) -> Farm {
    let world = common::World::new(1.0);
    let keystore = common::keystore(&world, "orchestrator", &world.orchestrator, "pw");
    let metrics = format!("127.0.0.1:{}", free_port());
    let chain = if offchain {
        vec!["--chain".to_string(), "offchain".to_string()]
    } else {
        vec![
            "--keystore".to_string(),
            keystore.display().to_string(),
            "--chain".to_string(),
            format!("ledger:{}", world.ledger_path().display()),
        ]
    };
    let mut child = Command::new(release_binary())
        .args(["orchestrator", "--hostname", "localhost"])
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", &metrics])
        .args(&chain)
        .args(["--orch-secret", SECRET])
        .env("LPGPU_PASSWORD", "pw")
        .env("RUST_LOG", "warn")
        .env_remove("LPGPU_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let line = first_line(&mut child);
    let port: u16 = line
        .split_whitespace()
        .last()
        .and_then(|uri| uri.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("the orchestrator's port");
    let orchestrator = Killed(child);
    let members: Vec<Killed> = (0..MEMBERS)
        .map(|_| {
            let mut member = Command::new(release_binary())
                .args(["transcoder", "--backend", "echo", "--max-sessions", "8"])
                .args(["--orch-addr", &format!("127.0.0.1:{port}")])
                .args(["--orch-secret", SECRET])
                .args(["--metrics-listen", "127.0.0.1:0"])
                .env("RUST_LOG", "warn")
                .env_remove("LPGPU_CONFIG")
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
            first_line(&mut member);
            Killed(member)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while series(&http_get(&metrics, "/metrics"), "lpgpu_pool_members ") < MEMBERS as f64 {
        assert!(Instant::now() < deadline, "the members did not register");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    Farm {
        world: Arc::new(world),
        orchestrator,
        _members: members,
        port,
    }
}

/// The 2018 wire: signed segments with credentials, multipart answers.
async fn relay_v2(farm: &Farm, seconds: f64) -> Relay {
    let (world, orchestrator, port) = (&farm.world, &farm.orchestrator, farm.port);
    let segment = Bytes::from(std::fs::read(common::clip("h264_720p.ts")).unwrap());
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cpu_before = cpu_seconds(orchestrator.0.id());
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        let world = world.clone();
        let segment = segment.clone();
        streams.push(tokio::spawn(async move {
            let job = world.job(PROFILES, 1_000_000);
            let stream_id = world.ledger.job_blocking(job).unwrap().unwrap().stream_id;
            let credentials = mint_credentials(&world.orchestrator, job);
            let mut sender = connect(addr).await;
            let mut latencies = Vec::new();
            let mut answer_bytes = 0;
            let mut seq = 0u64;
            while Instant::now() < until {
                let header =
                    SegmentHeader::sign(&world.broadcaster, &stream_id, seq, keccak256(&segment));
                let request = http::Request::post("https://localhost/segment")
                    .header("authorization", "Livepeer-Eth-1")
                    .header("credentials", &credentials)
                    .header("livepeer-segment", encode_segment_header(&header))
                    .header("content-type", "video/MP2T")
                    .header("accept", "multipart/mixed")
                    .body(Full::new(segment.clone()))
                    .unwrap();
                let sent = Instant::now();
                let response = sender.send_request(request).await.unwrap();
                let status = response.status();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(
                    status,
                    200,
                    "{}",
                    String::from_utf8_lossy(&body[..body.len().min(300)])
                );
                latencies.push(sent.elapsed().as_secs_f64());
                answer_bytes = body.len();
                seq += 1;
            }
            (latencies, answer_bytes)
        }));
    }
    let mut latencies = Vec::new();
    let mut answer_bytes = 0;
    for stream in streams {
        let (mut l, bytes) = stream.await.unwrap();
        latencies.append(&mut l);
        answer_bytes = bytes;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(orchestrator.0.id()) - cpu_before;
    latencies.sort_by(f64::total_cmp);
    Relay {
        segments: latencies.len(),
        seconds: elapsed,
        orchestrator_cpu: cpu,
        latencies,
        to_200: Vec::new(),
        // The source in and out to the member, the renditions back from the
        // member and out to the broadcaster.
        through: 2 * segment.len() + 2 * answer_bytes,
    }
}

/// Today's wire, offchain: a session per stream (`GetOrchestrator`), the
/// early 200 and the `TranscodeResult`, then the renditions fetched from
/// `/stream/…` as a gateway does.
async fn relay_today(farm: &Farm, seconds: f64) -> Relay {
    use lpgpu::proto::{
        OrchestratorRequest, SegmentTranscodeResult, TaskSegData, segment_transcode_result,
    };
    use prost::Message;
    let (orchestrator, port) = (&farm.orchestrator, farm.port);
    let segment = Bytes::from(std::fs::read(common::clip("h264_720p.ts")).unwrap());
    let hash = keccak256(&segment);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let profiles: Vec<lpgpu::proto::VideoProfile> = lpgpu::protocol::parse_profile_list(PROFILES)
        .unwrap()
        .into_iter()
        .map(|p| lpgpu::protocol::video_profile::to_video_profile(&p.into()))
        .collect();
    let cpu_before = cpu_seconds(orchestrator.0.id());
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        let profiles = profiles.clone();
        let segment = segment.clone();
        streams.push(tokio::spawn(async move {
            let mut client =
                lpgpu::orchestrator::client::connect(&format!("https://localhost:{port}"))
                    .await
                    .unwrap();
            let info = client
                .get_orchestrator(OrchestratorRequest::default())
                .await
                .unwrap()
                .into_inner();
            let token = info.auth_token.unwrap();
            let mut sender = connect(addr).await;
            let mut latencies = Vec::new();
            let mut to_200 = Vec::new();
            let mut answer_bytes = 0;
            let mut seq = 0i64;
            while Instant::now() < until {
                let header = TaskSegData {
                    manifest_id: b"bench".to_vec(),
                    seq,
                    hash: hash.to_vec(),
                    duration: 2000,
                    auth_token: Some(token.clone()),
                    full_profiles: profiles.clone(),
                    ..Default::default()
                };
                use base64::Engine as _;
                let header =
                    base64::engine::general_purpose::STANDARD.encode(header.encode_to_vec());
                let request = http::Request::post("https://localhost/segment")
                    .header("livepeer-segment", header)
                    .header("livepeer-payment", "")
                    .header("content-type", "video/MP2T")
                    .body(Full::new(segment.clone()))
                    .unwrap();
                let sent = Instant::now();
                let response = sender.send_request(request).await.unwrap();
                to_200.push(sent.elapsed().as_secs_f64());
                let status = response.status();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                let result = SegmentTranscodeResult::decode(body.as_ref()).unwrap();
                let Some(segment_transcode_result::Result::Data(data)) = result.result else {
                    panic!("{result:?}");
                };
                let mut renditions = 0;
                for rendition in &data.segments {
                    let path = rendition.url.split_once("/stream/").unwrap().1;
                    let request = http::Request::get(format!("https://localhost/stream/{path}"))
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    let response = sender.send_request(request).await.unwrap();
                    assert_eq!(response.status(), 200);
                    renditions += response
                        .into_body()
                        .collect()
                        .await
                        .unwrap()
                        .to_bytes()
                        .len();
                }
                latencies.push(sent.elapsed().as_secs_f64());
                answer_bytes = renditions;
                seq += 1;
            }
            (latencies, to_200, answer_bytes)
        }));
    }
    let mut latencies = Vec::new();
    let mut to_200 = Vec::new();
    let mut answer_bytes = 0;
    for stream in streams {
        let (mut l, mut t, bytes) = stream.await.unwrap();
        latencies.append(&mut l);
        to_200.append(&mut t);
        answer_bytes = bytes;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(orchestrator.0.id()) - cpu_before;
    latencies.sort_by(f64::total_cmp);
    to_200.sort_by(f64::total_cmp);
    Relay {
        segments: latencies.len(),
        seconds: elapsed,
        orchestrator_cpu: cpu,
        latencies,
        to_200,
        through: 2 * segment.len() + 2 * answer_bytes,
    }
}

async fn connect(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let config = lpgpu::tls::client_config(&[b"h2"]);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let seconds: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(if benchmarking { 10.0 } else { 1.0 });

    println!("placement (plain code), per operation:");
    for members in [1, 100, 10_000] {
        let (new_stream, pinned) = placement_cost(members);
        println!(
            "  {members:>6} members: new stream {:>9.2} µs, next segment of a pinned stream {:>6.2} µs",
            new_stream * 1e6,
            pinned * 1e6
        );
    }

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (v2, signed) = {
        let farm = runtime.block_on(farm(false));
        let v2 = runtime.block_on(relay_v2(&farm, seconds));
        report("2018 wire (v2, multipart answers)", &v2);
        let signed = runtime.block_on(relay_today(&farm, seconds));
        report("today's wire on a chain (results signed)", &signed);
        (v2, signed)
    };
    let offchain = {
        let farm = runtime.block_on(farm(true));
        let offchain = runtime.block_on(relay_today(&farm, seconds));
        report("today's wire offchain (--chain offchain)", &offchain);
        offchain
    };
    let per_mb =
        |r: &Relay| r.orchestrator_cpu / r.segments.max(1) as f64 / (r.through as f64 / 1e6);
    if per_mb(&v2) > 0.0 {
        println!(
            "orchestrator CPU per MB against the 2018 wire's: today's signed {:.2}, today's offchain {:.2}",
            per_mb(&signed) / per_mb(&v2),
            per_mb(&offchain) / per_mb(&v2)
        );
    }
}

fn report(wire: &str, relay: &Relay) {
    let rate = relay.segments as f64 / relay.seconds;
    let cpu_per_segment = relay.orchestrator_cpu / relay.segments.max(1) as f64;
    println!(
        "relay, {wire}: {STREAMS} streams, {MEMBERS} echo members, {:.1} s: {} segments, {rate:.1} segments/s",
        relay.seconds, relay.segments
    );
    println!(
        "  orchestrator CPU: {:.2} ms per relayed segment ({:.0} % of one core), {:.2} ms per MB through it",
        cpu_per_segment * 1e3,
        100.0 * relay.orchestrator_cpu / relay.seconds,
        cpu_per_segment * 1e3 / (relay.through as f64 / 1e6)
    );
    println!(
        "  latency p50 {:.1} ms, p95 {:.1} ms; {} bytes through the orchestrator per segment",
        percentile(&relay.latencies, 0.5) * 1e3,
        percentile(&relay.latencies, 0.95) * 1e3,
        relay.through,
    );
    if !relay.to_200.is_empty() {
        println!(
            "  to the 200: p50 {:.1} ms, p95 {:.1} ms (a gateway waits up to 2 s for it, 8 s for the whole answer)",
            percentile(&relay.to_200, 0.5) * 1e3,
            percentile(&relay.to_200, 0.95) * 1e3,
        );
    }
    if cpu_per_segment > 0.0 {
        println!(
            "  one core relays {:.0} segments/s: {:.0} streams of 2 s segments",
            1.0 / cpu_per_segment,
            2.0 / cpu_per_segment
        );
    }
    assert!(relay.segments > 0);
}
