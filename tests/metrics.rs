//! After real traffic, `/metrics` counts what happened and passes
//! `promtool check metrics`; every metric the Grafana dashboard queries exists.

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use bytes::Bytes;
use common::{RunningNode, World, clip, https_request};
use http_body_util::{BodyExt, Full};
use lpgpu::eth::keccak256;
use lpgpu::metrics::Metrics;
use lpgpu::orchestrator::client::connect;
use lpgpu::proto::TranscoderRequest;
use lpgpu::protocol::{SegmentHeader, encode_segment_header, mint_credentials};

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let io = hyper_util::rt::TokioIo::new(tcp);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header("host", "localhost")
        .body(Full::<Bytes>::default())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn metrics_count_real_traffic_and_pass_promtool() {
    let world = World::new(1.0);
    let job = world.job("P240p30fps16x9", 1_000_000);
    let node = RunningNode::start(&world, "localhost").await;

    // Traffic: one GetTranscoder accepted, one refused; one segment
    // transcoded, one refused for its hash.
    let mut client = connect(&node.uri).await.unwrap();
    let sig = world.broadcaster.sign(job.to_string().as_bytes()).to_vec();
    client
        .get_transcoder(TranscoderRequest {
            job_id: job as i64,
            sig: sig.clone(),
        })
        .await
        .unwrap();
    client
        .get_transcoder(TranscoderRequest { job_id: 999, sig })
        .await
        .unwrap_err();
    let body = Bytes::from(std::fs::read(clip("h264_720p.ts")).unwrap());
    let stream_id = world.ledger.job_blocking(job).unwrap().unwrap().stream_id;
    let header = encode_segment_header(&SegmentHeader::sign(
        &world.broadcaster,
        &stream_id,
        0,
        keccak256(&body),
    ));
    for payload in [body.clone(), body.slice(188..)] {
        let request = http::Request::post("https://localhost/segment")
            .header("authorization", "Livepeer-Eth-1")
            .header("credentials", mint_credentials(&world.orchestrator, job))
            .header("livepeer-segment", &header)
            .header("content-type", "video/MP2T")
            .header("accept", "multipart/mixed")
            .body(Full::new(payload))
            .unwrap();
        https_request(node.addr, "localhost", b"h2", request).await;
    }

    // The metrics listener, as `lpgpu node --metrics-listen` runs it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(lpgpu::server::serve_metrics(
        listener,
        node.transcoder.metrics().clone(),
        "node",
        Some(node.transcoder.clone()),
        async {
            let _ = stopped.await;
        },
    ));
    let (status, text) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    for needle in [
        "lpgpu_segments_total{result=\"ok\"} 1",
        "lpgpu_segments_total{result=\"rejected\"} 1",
        "lpgpu_rejections_total{code=\"hash_mismatch\"} 1",
        "lpgpu_get_transcoder_total{result=\"ok\"} 1",
        "lpgpu_get_transcoder_total{result=\"job_not_found\"} 1",
        "lpgpu_renditions_total{profile=\"P240p30fps16x9\"} 1",
        "lpgpu_segment_seconds_count 2",
        "lpgpu_transcode_seconds_count{backend=\"cpu\"} 1",
        "lpgpu_segment_bytes_total{direction=\"in\"}",
        "lpgpu_segment_bytes_total{direction=\"out\"}",
        "lpgpu_inflight_segments 0",
        "lpgpu_transcode_slots 2",
        "lpgpu_backend_info{backend=\"cpu\"",
    ] {
        assert!(text.contains(needle), "{needle} not in\n{text}");
    }
    let ratio: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("lpgpu_realtime_ratio "))
        .expect("the real-time ratio gauge")
        .parse()
        .unwrap();
    assert!((ratio - 2.0 / 60.0).abs() < 0.005, "{ratio}");

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; run .ci/setup)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool: {report}"
    );

    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    assert_eq!(http_get(addr, "/readyz").await.0, 200);
    node.transcoder.start_draining();
    assert_eq!(http_get(addr, "/readyz").await.0, 503);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    node.stop().await;
}

/// A GPU backend whose GPU has gone: every segment is handed to the real CPU
/// backend, as `GpuBackend` does after a CUDA error.
#[derive(Debug)]
struct GpuGone(lpgpu::pipeline::cpu::CpuBackend);

impl lpgpu::pipeline::Backend for GpuGone {
    fn name(&self) -> &'static str {
        "gpu"
    }

    fn device(&self) -> String {
        "a GPU that fell off the bus".into()
    }

    fn transcode(
        &self,
        segment: Bytes,
        renditions: &[lpgpu::pipeline::RenditionSpec],
        options: &lpgpu::pipeline::SegmentOptions,
    ) -> Result<lpgpu::pipeline::Transcoded, lpgpu::pipeline::TranscodeError> {
        let mut transcoded = self.0.transcode(segment, renditions, options)?;
        transcoded.fallback = Some("CUDA: an illegal memory access was encountered".into());
        Ok(transcoded)
    }
}

#[tokio::test]
async fn a_segment_the_gpu_hands_to_the_cpu_is_counted_under_the_cpu() {
    let world = World::new(1.0);
    let job = world.job("P240p30fps16x9", 1_000_000);
    let backend = std::sync::Arc::new(GpuGone(lpgpu::pipeline::cpu::CpuBackend::new(
        lpgpu::pipeline::EncoderSettings::default(),
    )));
    let chain: std::sync::Arc<dyn lpgpu::chain::Chain> = std::sync::Arc::new(world.ledger.clone());
    let node = RunningNode::start_with_backend(
        chain,
        world.orchestrator.clone(),
        "localhost",
        |_| {},
        backend,
    )
    .await;
    let body = Bytes::from(std::fs::read(clip("h264_720p.ts")).unwrap());
    let stream_id = world.ledger.job_blocking(job).unwrap().unwrap().stream_id;
    let header = encode_segment_header(&SegmentHeader::sign(
        &world.broadcaster,
        &stream_id,
        0,
        keccak256(&body),
    ));
    let request = http::Request::post("https://localhost/segment")
        .header("authorization", "Livepeer-Eth-1")
        .header("credentials", mint_credentials(&world.orchestrator, job))
        .header("livepeer-segment", &header)
        .header("content-type", "video/MP2T")
        .body(Full::new(body))
        .unwrap();
    let (status, _, _) = https_request(node.addr, "localhost", b"h2", request).await;
    assert_eq!(status, 200);

    let metrics = node.transcoder.metrics();
    assert_eq!(metrics.gpu_fallbacks.get(), 1);
    let on = |backend: &str| {
        metrics
            .transcode_seconds
            .with_label_values(&[backend])
            .get_sample_count()
    };
    assert_eq!((on("cpu"), on("gpu")), (1, 0));
    node.stop().await;
}

#[test]
fn every_metric_the_dashboard_queries_exists() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/grafana/lpgpu.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    // The contract's metrics and every component's own.
    let metrics = Metrics::new();
    lpgpu::pool::PoolMetrics::register(&metrics).unwrap();
    lpgpu::transcoder::remote::RemoteMetrics::register(&metrics).unwrap();
    let names = metrics.names();
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} queries nothing", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(at) = rest.find("lpgpu_") {
                let tail = &rest[at..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                let metric = &tail[..end];
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| {
                        metric
                            .strip_suffix(suffix)
                            .filter(|base| names.contains(base))
                    })
                    .unwrap_or(metric);
                assert!(
                    names.contains(&family),
                    "{} queries {metric}, which lpgpu does not export",
                    panel["title"]
                );
                queried += 1;
                rest = &tail[end..];
            }
        }
    }
    assert!(queried >= 10);
    for topic in [
        "Segments per second",
        "Real-time ratio",
        "latency",
        "Rejections",
        "In-flight",
        "GPU",
        "Pool",
    ] {
        assert!(
            dashboard["panels"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["title"].as_str().unwrap().contains(topic)),
            "no panel for {topic}"
        );
    }
}
