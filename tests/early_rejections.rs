//! Every rejection decided before the body is read (401, 400, 403, 413, 415,
//! 503) reaches the client whole — status, headers, JSON body — although the
//! client is still sending a body larger than the HTTP/2 flow-control window.
//! Checked with four clients, three of which lpgpu did not write: hyper,
//! Python httpx (h2), `curl --http2` (and `--http1.1`) and `nghttp`.

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;
use common::{RunningNode, World, clip, https_request};
use http_body_util::Full;
use lpgpu::eth::{PrivateKey, keccak256};
use lpgpu::pipeline::cpu::CpuBackend;
use lpgpu::pipeline::{
    Backend, EncoderSettings, RenditionSpec, SegmentOptions, TranscodeError, Transcoded,
};
use lpgpu::protocol::{SegmentHeader, encode_segment_header, mint_credentials};
use serde_json::{Value, json};

/// The CPU backend behind a gate the test opens: holds a transcode slot.
#[derive(Debug)]
struct Gated {
    open: Arc<(Mutex<bool>, Condvar)>,
    cpu: CpuBackend,
}

impl Backend for Gated {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn device(&self) -> String {
        "gated cpu".into()
    }

    fn transcode(
        &self,
        segment: Bytes,
        renditions: &[RenditionSpec],
        options: &SegmentOptions,
    ) -> Result<Transcoded, TranscodeError> {
        let (lock, opened) = &*self.open;
        let mut open = lock.lock().unwrap();
        while !*open {
            open = opened.wait(open).unwrap();
        }
        drop(open);
        self.cpu.transcode(segment, renditions, options)
    }
}

/// One early rejection: headers to send, and what must come back.
struct Case {
    name: &'static str,
    headers: Vec<(&'static str, String)>,
    body: PathBuf,
    status: u16,
    code: &'static str,
}

const MAX_SEGMENT: u64 = 3_000_000;

fn noise(dir: &Path, name: &str, len: usize) -> (PathBuf, Bytes) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, &data).unwrap();
    (path, Bytes::from(data))
}

fn cases(world: &World, job: u64, dir: &Path) -> Vec<Case> {
    let stream_id = world.ledger.job_blocking(job).unwrap().unwrap().stream_id;
    let (body, data) = noise(dir, "body.bin", 2_500_000);
    let (too_large, _) = noise(dir, "too_large.bin", 3_500_000);
    let stranger = PrivateKey::random();
    let signed = encode_segment_header(&SegmentHeader::sign(
        &world.broadcaster,
        &stream_id,
        1,
        keccak256(&data),
    ));
    let good = vec![
        ("authorization", "Livepeer-Eth-1".to_string()),
        ("credentials", mint_credentials(&world.orchestrator, job)),
        ("livepeer-segment", signed),
        ("content-type", "video/MP2T".to_string()),
    ];
    let with = |name: &'static str, value: Option<String>| {
        let mut headers: Vec<_> = good.iter().filter(|(n, _)| *n != name).cloned().collect();
        if let Some(value) = value {
            headers.push((name, value));
        }
        headers
    };
    let case = |name, headers, status, code| Case {
        name,
        headers,
        body: body.clone(),
        status,
        code,
    };
    vec![
        case(
            "missing segment header",
            with("livepeer-segment", None),
            400,
            "missing_header",
        ),
        case(
            "wrong auth type",
            with("authorization", Some("Basic eA==".into())),
            401,
            "bad_auth_type",
        ),
        case(
            "malformed credentials",
            with("credentials", Some("%%%".into())),
            400,
            "bad_credentials",
        ),
        case(
            "credentials of a stranger",
            with("credentials", Some(mint_credentials(&stranger, job))),
            403,
            "bad_credentials",
        ),
        case(
            "unknown job",
            with(
                "credentials",
                Some(mint_credentials(&world.orchestrator, 999)),
            ),
            403,
            "job_not_found",
        ),
        case(
            "wrong media type",
            with("content-type", Some("text/plain".into())),
            415,
            "unsupported_media",
        ),
        case(
            "malformed segment header",
            with("livepeer-segment", Some("AAAA!".into())),
            400,
            "bad_segment_header",
        ),
        case(
            "segment signed by a stranger",
            with(
                "livepeer-segment",
                Some(encode_segment_header(&SegmentHeader::sign(
                    &stranger,
                    &stream_id,
                    1,
                    keccak256(&data),
                ))),
            ),
            403,
            "bad_segment_signature",
        ),
        Case {
            name: "body over --max-segment-bytes",
            headers: good.clone(),
            body: too_large,
            status: 413,
            code: "body_too_large",
        },
        // The node's only slot is held by the gated backend.
        case("every slot busy", good.clone(), 503, "busy"),
    ]
}

fn json_code(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("not JSON: {:?}", String::from_utf8_lossy(body)))
}

fn curl(port: u16, case: &Case, version: &str) -> (u16, String, String) {
    let mut command = Command::new("curl");
    command
        .args(["-sS", "-k", version, "-o", "-", "-D", "/dev/stderr"])
        .args(["-w", "\n%{http_code}", "--max-time", "20"])
        .arg("--data-binary")
        .arg(format!("@{}", case.body.display()))
        // Keep curl from waiting for 100-continue on HTTP/1.1: send at once.
        .args(["-H", "Expect:"]);
    for (name, value) in &case.headers {
        command.args(["-H", &format!("{name}: {value}")]);
    }
    let out = command
        .arg(format!("https://localhost:{port}/segment"))
        .output()
        .expect("curl (run .ci/setup)");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    (
        status.trim().parse().unwrap_or(0),
        body.to_string(),
        String::from_utf8_lossy(&out.stderr).to_lowercase(),
    )
}

fn nghttp(port: u16, case: &Case) -> String {
    let mut command = Command::new("nghttp");
    command
        .arg("-v")
        .arg(format!("--data={}", case.body.display()));
    for (name, value) in &case.headers {
        command.arg(format!("--header={name}: {value}"));
    }
    let out = command
        .arg(format!("https://localhost:{port}/segment"))
        .output()
        .expect("nghttp (nghttp2-client; run .ci/setup)");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn early_rejections_reach_every_client_whole_while_the_body_is_still_in_flight() {
    let world = World::new(1.0);
    let job = world.job("P144p30fps16x9", 1_000_000);
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let backend = Arc::new(Gated {
        open: gate.clone(),
        cpu: CpuBackend::new(EncoderSettings::default()),
    });
    let chain: Arc<dyn lpgpu::chain::Chain> = Arc::new(world.ledger.clone());
    let node = RunningNode::start_with_backend(
        chain,
        world.orchestrator.clone(),
        "localhost",
        |c| {
            c.max_sessions = 1;
            c.max_segment_bytes = MAX_SEGMENT;
        },
        backend,
    )
    .await;
    let port = node.addr.port();
    let dir = tempfile::tempdir().unwrap();

    // Hold the only slot with a valid segment that waits at the gate.
    let segment = Bytes::from(std::fs::read(clip("h264_720p.ts")).unwrap());
    let stream_id = world.ledger.job_blocking(job).unwrap().unwrap().stream_id;
    let header = SegmentHeader::sign(&world.broadcaster, &stream_id, 0, keccak256(&segment));
    let held = http::Request::post("https://localhost/segment")
        .header("authorization", "Livepeer-Eth-1")
        .header("credentials", mint_credentials(&world.orchestrator, job))
        .header("livepeer-segment", encode_segment_header(&header))
        .header("content-type", "video/MP2T")
        .header("accept", "multipart/mixed")
        .body(Full::new(segment))
        .unwrap();
    let addr = node.addr;
    let holder = tokio::spawn(async move { https_request(addr, "localhost", b"h2", held).await });
    while node.transcoder.is_ready() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let cases = cases(&world, job, dir.path());
    let mut failures = Vec::new();
    for case in &cases {
        // hyper, over HTTP/2 and HTTP/1.1.
        for alpn in [&b"h2"[..], &b"http/1.1"[..]] {
            let alpn: &'static [u8] = if alpn == b"h2" { b"h2" } else { b"http/1.1" };
            let mut request = http::Request::post("https://localhost/segment");
            for (name, value) in &case.headers {
                request = request.header(*name, value);
            }
            let body = Bytes::from(std::fs::read(&case.body).unwrap());
            let request = request.body(Full::new(body)).unwrap();
            let (status, headers, body) =
                https_request(node.addr, "localhost", alpn, request).await;
            let got = (status.as_u16(), json_code(&body));
            if got != (case.status, case.code.to_string()) {
                failures.push(format!(
                    "hyper {}: {}: {got:?}",
                    String::from_utf8_lossy(alpn),
                    case.name
                ));
            }
            if case.status == 503 && headers.get("retry-after").is_none() {
                failures.push(format!("hyper: {}: no Retry-After", case.name));
            }
        }
        // curl, HTTP/2 and HTTP/1.1.
        for version in ["--http2", "--http1.1"] {
            let (status, body, headers) = tokio::task::block_in_place(|| curl(port, case, version));
            if (status, json_code(body.as_bytes())) != (case.status, case.code.to_string()) {
                failures.push(format!(
                    "curl {version}: {}: status {status}, body {body:?}, headers {headers}",
                    case.name
                ));
            }
            if case.status == 503 && !headers.contains("retry-after") {
                failures.push(format!("curl {version}: {}: no Retry-After", case.name));
            }
        }
        // nghttp: the status, the JSON body, and END_STREAM on the answer.
        let out = tokio::task::block_in_place(|| nghttp(port, case));
        let status_line = format!(":status: {}", case.status);
        let code = format!("\"error\":\"{}\"", case.code);
        if !(out.contains(&status_line) && out.contains(&code) && out.contains("END_STREAM")) {
            failures.push(format!("nghttp: {}:\n{out}", case.name));
        }
    }

    // Python httpx over HTTP/2, from the same cases.
    let spec = json!({
        "url": format!("https://127.0.0.1:{port}/segment"),
        "cases": cases.iter().map(|c| json!({
            "name": c.name,
            "headers": c.headers.iter().map(|(n, v)| (n.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "body_file": c.body,
            "status": c.status,
            "code": c.code,
        })).collect::<Vec<_>>(),
    });
    let spec_path = dir.path().join("cases.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let python = std::env::var_os("LPGPU_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3"));
    let out = tokio::task::block_in_place(|| {
        Command::new(&python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/early_rejections.py"))
            .arg(&spec_path)
            .output()
            .expect("the venv's python (run .ci/setup)")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    if !(out.status.success() && stdout.contains("early rejections passed")) {
        failures.push(format!(
            "httpx:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }

    // The held segment still transcodes once the gate opens.
    {
        let (lock, opened) = &*gate;
        *lock.lock().unwrap() = true;
        opened.notify_all();
    }
    let (status, _, _) = holder.await.unwrap();
    assert_eq!(status, 200);
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let metrics = node.transcoder.metrics().render();
    let drained: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("lpgpu_drained_bytes_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        drained > 10_000_000,
        "rejected bodies were drained: {drained}"
    );
    node.stop().await;
}
