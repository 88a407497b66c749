//! The remote-transcoder mode's protocol cost, in one run:
//!
//!     cargo bench --bench remote [-- TASKS]
//!
//! `lpgpu transcoder --orch-addr` (release build, CPU backend, capacity 1)
//! registers with the independent test orchestrator of `tests/interop`
//! (Python, h2) on loopback and is sent TASKS tasks (default 10), one after
//! the other, of the same 2 s 1080p30 H.264 + AAC segment to the ladder
//! 720p / 360p / 240p. The transcoder's own phase histograms
//! (`lpgpu_remote_task_seconds{phase}`) give download, transcode and upload
//! (which includes the multipart framing) seconds; the ratio of download +
//! upload to transcode is the protocol's overhead. The orchestrator's clock
//! gives each task's latency from notification to result, reported as a
//! fraction of its deadline (max(8 s, 4 × duration) = 8 s).
//!
//! Under `cargo test` (no `--bench`), two tasks check that it still works.

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

fn python() -> std::path::PathBuf {
    std::env::var_os("LPGPU_PYTHON")
        .map(Into::into)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Sum of a histogram series in Prometheus text.
fn histogram_sum(metrics: &str, phase: &str) -> f64 {
    let prefix = format!("lpgpu_remote_task_seconds_sum{{phase=\"{phase}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let tasks: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(if benchmarking { 10 } else { 2 });
    if Command::new(python())
        .args(["-c", "import h2, grpc_tools"])
        .status()
        .map_or(true, |s| !s.success())
    {
        println!("remote bench: no .venv with h2 and grpcio-tools (run .ci/setup); skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("src1080.ts");
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=1920x1080:rate=30,noise=alls=12:allf=t+u")
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "2",
        ])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-b:v", "6000k", "-g", "60",
        ])
        .args(["-c:a", "aac", "-f", "mpegts"])
        .arg(&source)
        .status()
        .expect("ffmpeg CLI");
    assert!(status.success());

    let results = dir.path().join("results");
    std::fs::create_dir_all(&results).unwrap();
    let mut orchestrator = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/ot_orchestrator.py"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--secret",
            "bench",
            "--results-dir",
        ])
        .arg(&results)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the test orchestrator");
    let mut to_orch = orchestrator.stdin.take().unwrap();
    let mut from_orch = BufReader::new(orchestrator.stdout.take().unwrap());
    let mut line = String::new();
    from_orch.read_line(&mut line).unwrap();
    let port = line.trim().strip_prefix("listening ").unwrap().to_string();
    let mut cmd = |command: Value| -> Value {
        writeln!(to_orch, "{command}").unwrap();
        to_orch.flush().unwrap();
        let mut answer = String::new();
        from_orch.read_line(&mut answer).unwrap();
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["ok"], true, "{command} -> {answer}");
        answer
    };

    let mut transcoder = Command::new(env!("CARGO_BIN_EXE_lpgpu"))
        .args(["transcoder", "--orch-addr", &format!("127.0.0.1:{port}")])
        .args([
            "--orch-secret",
            "bench",
            "--backend",
            "cpu",
            "--max-sessions",
            "1",
        ])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .env("LPGPU_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("lpgpu transcoder");
    let mut start = String::new();
    BufReader::new(transcoder.stdout.take().unwrap())
        .read_line(&mut start)
        .unwrap();
    let metrics_addr = start.split_whitespace().last().unwrap().to_string();
    cmd(json!({"cmd": "wait_registration", "timeout": 30}));

    let ladder = json!([
        {"name": "P720p30fps16x9", "width": 1280, "height": 720, "bitrate": 4_000_000, "fps": 30},
        {"name": "P360p30fps16x9", "width": 640, "height": 360, "bitrate": 1_200_000, "fps": 30},
        {"name": "P240p30fps16x9", "width": 426, "height": 240, "bitrate": 600_000, "fps": 30},
    ]);
    let mut fractions = Vec::with_capacity(tasks);
    let mut latencies = Vec::with_capacity(tasks);
    for seq in 0..tasks {
        let task = cmd(
            json!({"cmd": "send_task", "segment_file": source, "session": "bench001",
            "seq": seq, "duration_ms": 2000, "profiles": ladder}),
        );
        let result = cmd(json!({"cmd": "wait_result", "task_id": task["task_id"], "timeout": 60}));
        assert_eq!(result["kind"], "renditions", "{result}");
        let elapsed = result["elapsed_ms"].as_f64().unwrap() / 1000.0;
        let deadline = result["deadline_ms"].as_f64().unwrap() / 1000.0;
        latencies.push(elapsed);
        fractions.push(elapsed / deadline);
    }
    let metrics = http_get(&metrics_addr, "/metrics");
    let (download, transcode, upload) = (
        histogram_sum(&metrics, "download"),
        histogram_sum(&metrics, "transcode"),
        histogram_sum(&metrics, "upload"),
    );
    let _ = transcoder.kill();
    let _ = orchestrator.kill();
    let _ = transcoder.wait();
    let _ = orchestrator.wait();

    fractions.sort_by(f64::total_cmp);
    latencies.sort_by(f64::total_cmp);
    let n = tasks as f64;
    println!(
        "remote transcoder, {tasks} tasks of 2 s 1080p30 -> 720p/360p/240p, CPU backend, on {}",
        lpgpu::pipeline::cpu::cpu_model().unwrap_or_else(|| "this machine".into())
    );
    println!(
        "  per task: download {:.1} ms, transcode {:.1} ms, upload (with multipart framing) {:.1} ms",
        download / n * 1000.0,
        transcode / n * 1000.0,
        upload / n * 1000.0
    );
    println!(
        "  protocol overhead (download + upload) / transcode: {:.2} %",
        (download + upload) / transcode.max(1e-9) * 100.0
    );
    println!(
        "  latency notification -> result: p50 {:.3} s, p95 {:.3} s = {:.3} / {:.3} of the 8 s deadline",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.95),
        percentile(&fractions, 0.5),
        percentile(&fractions, 0.95)
    );
}
