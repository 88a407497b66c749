//! `lpgpu transcoder --orch-addr` (dial-out mode) driven by an independent
//! go-livepeer-style orchestrator: `tests/interop/ot_orchestrator.py`,
//! written in Python from `spec/ot-protocol.md` alone (h2 for one TLS port
//! carrying gRPC and `/transcodeResults`, grpcio-tools for the messages),
//! sharing no code with lpgpu. Real TLS and HTTP/2 on loopback, separate
//! processes; every rendition is checked with ffprobe and every `Pixels`
//! recounted from the decoded output.

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const SECRET: &str = "orchestrator secret";

fn python() -> PathBuf {
    let python = std::env::var_os("LPGPU_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3"));
    let check = Command::new(&python)
        .args(["-c", "import grpc, grpc_tools, h2"])
        .output();
    match check {
        Ok(out) if out.status.success() => python,
        _ => panic!(
            "{} cannot import grpcio/h2: run .ci/setup (or set LPGPU_PYTHON) first",
            python.display()
        ),
    }
}

fn interop(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus/lpms")
        .join(name)
}

/// The independent orchestrator, driven by JSON lines.
struct Orchestrator {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    port: u16,
}

impl Orchestrator {
    fn start(dir: &Path, port: u16) -> Self {
        Self::start_with(dir, port, SECRET, &[])
    }

    /// One with its own secret that places sessions as go-livepeer does
    /// (`--enforce-capacity`: never more sessions on a registration than
    /// it carries; a task with nowhere to go is counted in `no_capacity`).
    fn start_with_secret(dir: &Path, port: u16, secret: &str) -> Self {
        Self::start_with(dir, port, secret, &["--enforce-capacity"])
    }

    /// Its results in its own folder of `dir`.
    fn start_with(dir: &Path, port: u16, secret: &str, extra: &[&str]) -> Self {
        let results = dir.join("results");
        std::fs::create_dir_all(&results).unwrap();
        let results = tempfile::tempdir_in(&results).unwrap().keep();
        let mut child = Command::new(python())
            .arg(interop("ot_orchestrator.py"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--secret", secret])
            .args(extra)
            .arg("--results-dir")
            .arg(&results)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting ot_orchestrator.py");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let port = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Self {
            child,
            stdin,
            stdout,
            port,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn cmd(&mut self, command: Value) -> Value {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("bad answer {line:?} to {command}"))
    }

    fn ok(&mut self, command: Value) -> Value {
        let answer = self.cmd(command.clone());
        assert_eq!(answer["ok"], true, "{command} -> {answer}");
        answer
    }

    fn wait_registration(&mut self, count: u64, timeout: u64) -> Value {
        self.ok(json!({"cmd": "wait_registration", "count": count, "timeout": timeout}))
    }

    fn send(&mut self, task: Value) -> i64 {
        let mut command = json!({"cmd": "send_task"});
        command
            .as_object_mut()
            .unwrap()
            .extend(task.as_object().unwrap().clone());
        self.ok(command)["task_id"].as_i64().unwrap()
    }

    fn result(&mut self, task_id: i64) -> Value {
        self.ok(json!({"cmd": "wait_result", "task_id": task_id, "timeout": 60}))
    }

    fn posted(&mut self) -> u64 {
        self.ok(json!({"cmd": "results_count"}))["posted"]
            .as_u64()
            .unwrap()
    }

    /// No task found its orchestrator without room for its session.
    fn assert_never_without_capacity(&mut self) {
        let placement = self.ok(json!({"cmd": "placement"}));
        assert_eq!(placement["no_capacity"], 0, "{placement}");
    }

    fn assert_no_violations(&mut self) {
        let answer = self.ok(json!({"cmd": "violations"}));
        assert_eq!(answer["violations"], json!([]), "protocol violations");
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Orchestrator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `lpgpu transcoder --orch-addr …` as its own process.
struct RemoteTranscoder {
    child: Child,
    metrics: String,
    /// Everything it wrote to stderr so far.
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl RemoteTranscoder {
    fn start(orchestrator: &str, secret: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lpgpu"))
            .args([
                "transcoder",
                "--orch-addr",
                orchestrator,
                "--orch-secret",
                secret,
            ])
            // The CPU backend unless the test names another.
            .args(if extra.contains(&"--backend") {
                &[][..]
            } else {
                &["--backend", "cpu"][..]
            })
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("LPGPU_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting lpgpu transcoder");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        // "lpgpu transcoder dialling HOST:PORT metrics on ADDR"
        let metrics = line
            .split_whitespace()
            .last()
            .unwrap_or_else(|| panic!("no start line: {line:?}"))
            .to_string();
        // Keep stderr flowing into the test's output, and keep a copy.
        let mut stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let copy = log.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                let _ = std::io::stderr().write_all(&buffer[..n]);
                copy.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Self {
            child,
            metrics,
            log,
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.metrics, path)
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the transcoder did not exit in {within:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RemoteTranscoder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET on loopback: (status, body).
fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What ffprobe decodes of a file's video: (codec, profile, width, height,
/// frames, average frame rate).
fn probe(path: &Path) -> (String, String, u64, u64, u64, f64) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,profile,width,height,nb_read_frames,avg_frame_rate",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe {}", path.display());
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &json["streams"][0];
    let num = |v: &Value| v.as_str().and_then(|t| t.parse().ok()).unwrap_or(0u64);
    let rate = s["avg_frame_rate"]
        .as_str()
        .and_then(|r| r.split_once('/'))
        .map(|(n, d)| n.parse::<f64>().unwrap_or(0.0) / d.parse::<f64>().unwrap_or(1.0).max(1.0))
        .unwrap_or(0.0);
    (
        s["codec_name"].as_str().unwrap_or("").to_string(),
        s["profile"].as_str().unwrap_or("").to_string(),
        s["width"].as_u64().unwrap_or(0),
        s["height"].as_u64().unwrap_or(0),
        num(&s["nb_read_frames"]),
        rate,
    )
}

/// Decoded pixels of a file's video (Σ width × height), as ffprobe counts.
fn decoded_pixels(path: &Path) -> u64 {
    let (_, _, w, h, frames, _) = probe(path);
    w * h * frames
}

/// Checks a renditions result: part count, content types, ffprobe-readable
/// H.264 and exact Pixels per part; returns each part's probe.
fn check_renditions(
    result: &Value,
    source: &Path,
    content_types: &[&str],
) -> Vec<(String, String, u64, u64, u64, f64)> {
    assert_eq!(result["kind"], "renditions", "{result}");
    assert_eq!(result["http_version"], "2", "results go over HTTP/2");
    assert_eq!(
        result["pixels"].as_u64().unwrap(),
        decoded_pixels(source),
        "the task's Pixels are the decoded input's"
    );
    let parts = result["parts"].as_array().unwrap();
    assert_eq!(parts.len(), content_types.len(), "{result}");
    parts
        .iter()
        .zip(content_types)
        .map(|(part, content_type)| {
            assert_eq!(part["content_type"], *content_type);
            assert_eq!(part["content_length"], part["length"]);
            let path = PathBuf::from(part["path"].as_str().unwrap());
            let probed = probe(&path);
            assert_eq!(probed.0, "h264", "{}", path.display());
            assert_eq!(
                part["pixels"].as_u64().unwrap(),
                probed.2 * probed.3 * probed.4,
                "Pixels of {} recounted from the decoded rendition",
                path.display()
            );
            probed
        })
        .collect()
}

fn p(name: &str, w: u32, h: u32, bitrate: u32, fps: u32) -> Value {
    json!({"name": name, "width": w, "height": h, "bitrate": bitrate, "fps": fps})
}

/// go-livepeer's orchestrator sends a session's next task the instant the
/// previous result is answered. With capacity 2 and two sessions doing that
/// hundreds of times, with error results in between (a segment URL that
/// answers 404), no task may be refused as busy: a session's slot is free
/// no later than the moment its result is answered. The echo backend does
/// no work, so the answers come back to back as fast as they can.
#[test]
fn back_to_back_tasks_at_capacity_are_never_refused_as_busy() {
    let dir = tempfile::tempdir().unwrap();
    let mut orch = Orchestrator::start(dir.path(), 0);
    let transcoder = RemoteTranscoder::start(
        &orch.addr(),
        SECRET,
        &["--backend", "echo", "--max-sessions", "2"],
    );
    orch.wait_registration(1, 30);
    const ROUNDS: u64 = 300;
    const ERROR_EVERY: u64 = 7;
    let answer = orch.ok(json!({
        "cmd": "back_to_back",
        "sessions": ["race0001", "race0002"],
        "rounds": ROUNDS,
        "segment_file": corpus(SHORT),
        "profiles": [p("P144p30fps16x9", 256, 144, 400_000, 30)],
        "duration_ms": 1250,
        "error_every": ERROR_EVERY,
        "timeout": 240,
    }));
    println!("back to back: {answer}");
    assert_eq!(answer["busy"], 0, "{answer}");
    assert_eq!(answer["results"], 2 * ROUNDS, "{answer}");
    assert_eq!(
        answer["expected_errors"],
        2 * (ROUNDS / ERROR_EVERY),
        "{answer}"
    );
    assert_eq!(answer["unexpected_errors"], json!([]), "{answer}");
    assert_eq!(answer["incomplete"], json!([]), "{answer}");
    orch.assert_no_violations();
    let (_, metrics) = transcoder.get("/metrics");
    assert!(
        !metrics.contains("lpgpu_remote_tasks_total{result=\"busy\"}"),
        "{metrics}"
    );
}

const SAMPLE: &str = "go-livepeer/sample_0_69_2875.ts"; // 1024x432 24 fps, 69 frames
const SHORT: &str = "go-livepeer/sample_2_30_1250.ts"; // 30 frames

#[test]
fn an_independent_orchestrator_drives_every_task_form_with_exact_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let mut orch = Orchestrator::start(dir.path(), 0);
    let transcoder = RemoteTranscoder::start(&orch.addr(), SECRET, &["--max-sessions", "2"]);
    let registration = orch.wait_registration(1, 20);
    assert_eq!(registration["capacity"], 2);
    assert_eq!(registration["version"], "0.9.1");
    let caps: Vec<u64> = registration["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    for needed in [0, 1, 2, 3, 11, 12, 26] {
        assert!(caps.contains(&needed), "capability {needed} in {caps:?}");
    }
    assert!(caps.contains(&14), "perceptual hashes are offered");
    wait_until("/readyz ready", Duration::from_secs(10), || {
        transcoder.get("/readyz").0 == 200
    });

    let sample = corpus(SAMPLE);
    let file = sample.to_str().unwrap();
    // One profile through fullProfiles (the oldest field).
    let one = orch.send(
        json!({"segment_file": file, "session": "aaaa0001", "seq": 0,
        "duration_ms": 2875, "profiles_field": "fullProfiles",
        "profiles": [p("P144p30fps16x9", 256, 144, 400_000, 30)]}),
    );
    let result = orch.result(one);
    let probed = check_renditions(&result, &sample, &["video/mp2t"]);
    // 24 fps source, 30 fps ceiling: every frame kept, 1024x432 fitted in 256x144.
    assert_eq!((probed[0].2, probed[0].3, probed[0].4), (256, 108, 69));

    // Three profiles through fullProfiles2: sizes and bitrates of no preset.
    let three = [
        p("net_a", 1000, 500, 900_000, 30),
        p("net_b", 480, 270, 350_000, 15),
        p("net_c", 300, 200, 150_000, 24),
    ];
    let two = orch.send(
        json!({"segment_file": file, "session": "aaaa0001", "seq": 1,
        "duration_ms": 2875, "profiles_field": "fullProfiles2", "profiles": three}),
    );
    let probed = check_renditions(&orch.result(two), &sample, &["video/mp2t"; 3]);
    assert!(probed[0].2 <= 1000 && probed[0].3 <= 500);
    // 15 fps from a 24 fps source: about 15/24 of the frames.
    assert!((40..=46).contains(&probed[1].4), "{:?}", probed[1]);
    assert_eq!(probed[2].4, 69);

    // fullProfiles3: MP4, passthrough fps, fractional fps, intra-only GOP,
    // H.264 profiles and CRF quality.
    let fancy = [
        json!({"name": "mp4-main", "width": 640, "height": 360, "bitrate": 800_000, "fps": 0,
               "format": "MP4", "profile": "H264_MAIN", "gop": 1000}),
        json!({"name": "ntsc", "width": 426, "height": 240, "bitrate": 500_000,
               "fps": 24000, "fpsDen": 1001, "profile": "H264_BASELINE"}),
        json!({"name": "intra", "width": 256, "height": 144, "bitrate": 0, "quality": 30,
               "fps": 12, "gop": -1, "profile": "H264_CONSTRAINED_HIGH"}),
    ];
    let three_id = orch.send(
        json!({"segment_file": file, "session": "aaaa0001", "seq": 2,
        "duration_ms": 2875, "profiles_field": "fullProfiles3", "profiles": fancy}),
    );
    let probed = check_renditions(
        &orch.result(three_id),
        &sample,
        &["video/mp4", "video/mp2t", "video/mp2t"],
    );
    assert_eq!(probed[0].1, "Main");
    assert_eq!(probed[0].4, 69, "fps 0 keeps every source frame");
    assert!(probed[1].1.contains("Baseline"), "{:?}", probed[1]);
    // 23.976 from 24: a frame or so dropped at most.
    assert!((67..=69).contains(&probed[1].4), "{:?}", probed[1]);
    assert!(
        (33..=36).contains(&probed[2].4),
        "12 of 24 fps: {:?}",
        probed[2]
    );
    let intra = orch.ok(json!({"cmd": "wait_result", "task_id": three_id}))["parts"][2]["path"]
        .as_str()
        .unwrap()
        .to_string();
    let keyframes = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=key_frame",
        ])
        .args(["-of", "csv=p=0", &intra])
        .output()
        .unwrap();
    let flags = String::from_utf8_lossy(&keyframes.stdout);
    let flags: Vec<&str> = flags
        .lines()
        .filter_map(|l| l.split(',').next().map(str::trim))
        .filter(|f| !f.is_empty())
        .collect();
    assert!(
        !flags.is_empty() && flags.iter().all(|f| *f == "1"),
        "GOP -1 is intra only: {flags:?}"
    );

    // Two sessions at capacity 2, at once.
    let short = corpus(SHORT);
    let short_file = short.to_str().unwrap();
    let profile = [p("P144p30fps16x9", 256, 144, 400_000, 30)];
    let a = orch.send(
        json!({"segment_file": file, "session": "bbbb0001", "seq": 0,
        "duration_ms": 2875, "profiles": profile}),
    );
    let b = orch.send(
        json!({"segment_file": short_file, "session": "cccc0001", "seq": 0,
        "duration_ms": 1250, "profiles": profile}),
    );
    check_renditions(&orch.result(a), &sample, &["video/mp2t"]);
    check_renditions(&orch.result(b), &short, &["video/mp2t"]);

    // Teardown: nothing is posted.
    let posted = orch.posted();
    orch.ok(json!({"cmd": "teardown", "session": "bbbb0001"}));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(orch.posted(), posted, "a teardown posts nothing");

    // A 404 url, a garbage segment, a bad duration, an incompatible job:
    // error results; then a good task succeeds.
    let garbage = dir.path().join("garbage.ts");
    std::fs::write(
        &garbage,
        (0..200_000u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let missing_url = format!("https://{}/stream/nobody/9.tempfile", orch.addr());
    let failures = [
        (
            json!({"segment_file": file, "session": "dddd0001", "url": missing_url, "profiles": profile}),
            "404 Not Found",
        ),
        (
            json!({"segment_file": garbage.to_str().unwrap(), "session": "dddd0001", "seq": 1, "profiles": profile}),
            "segment does not decode",
        ),
        (
            json!({"segment_file": file, "session": "dddd0001", "seq": 2, "duration_ms": 300_001, "profiles": profile}),
            "invalid duration",
        ),
        (
            json!({"segment_file": file, "session": "dddd0001", "seq": 3, "capabilities": [0, 1, 5], "profiles": profile}),
            "incompatible segment capabilities",
        ),
        (
            json!({"segment_file": file, "session": "dddd0001", "seq": 5, "profiles": [{"name": "x", "width": 256, "height": 144, "bitrate": 1, "format": 9}]}),
            "unrecognized profile output format",
        ),
        (
            json!({"segment_file": corpus("kryp-2.ts").to_str().unwrap(), "session": "dddd0001", "seq": 6, "profiles": profile}),
            "No keyframes in input",
        ),
    ];
    for (task, text) in failures {
        let id = orch.send(task);
        let result = orch.result(id);
        assert_eq!(result["kind"], "error", "{result}");
        assert_eq!(result["error_text"], text, "{result}");
        assert_eq!(result["pixels"], 0);
    }
    let good = orch.send(
        json!({"segment_file": short_file, "session": "dddd0001", "seq": 7,
        "duration_ms": 1250, "profiles": profile}),
    );
    check_renditions(&orch.result(good), &short, &["video/mp2t"]);

    // A perceptual hash (capability 14), as go-livepeer's transcoder sends
    // it: an octet-stream part without Pixels after its rendition, an
    // MPEG-7 signature of every picture in it.
    let hashed = orch.send(
        json!({"segment_file": short_file, "session": "dddd0001", "seq": 8,
        "duration_ms": 1250, "capabilities": [0, 1, 12, 14], "calc_perceptual_hash": true,
        "profiles": [profile[0].clone(), p("P240p30fps16x9", 426, 240, 600_000, 30)]}),
    );
    let result = orch.result(hashed);
    assert_eq!(result["kind"], "renditions", "{result}");
    let parts = result["parts"].as_array().unwrap();
    let kinds: Vec<&str> = parts
        .iter()
        .map(|p| p["content_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "video/mp2t",
            "application/octet-stream",
            "video/mp2t",
            "application/octet-stream"
        ]
    );
    for pair in parts.chunks(2) {
        let (video, hash) = (&pair[0], &pair[1]);
        assert!(hash["pixels"].is_null(), "no Pixels on a hash: {hash}");
        let probed = probe(&PathBuf::from(video["path"].as_str().unwrap()));
        let bytes = std::fs::read(hash["path"].as_str().unwrap()).unwrap();
        let signature = lpgpu::protocol::signature::VideoSignature::parse(&bytes).unwrap();
        assert_eq!(
            (signature.width as u64, signature.height as u64),
            (probed.2, probed.3)
        );
        assert_eq!(signature.frames.len() as u64, probed.4, "one per picture");
    }

    // More tasks at once than the capacity: the excess gets a busy error.
    let long = corpus("go-livepeer/sample_1_360_15000.ts");
    let ladder = [
        p("P360p30fps16x9", 640, 360, 1_200_000, 30),
        p("P240p30fps16x9", 426, 240, 600_000, 30),
    ];
    let ids: Vec<i64> = (0..3)
        .map(|i| {
            orch.send(
                json!({"segment_file": long.to_str().unwrap(), "session": format!("eeee000{i}"),
                "duration_ms": 15_000, "profiles": ladder}),
            )
        })
        .collect();
    let kinds: Vec<(String, String)> = ids
        .iter()
        .map(|&id| {
            let r = orch.result(id);
            (
                r["kind"].as_str().unwrap().to_string(),
                r["error_text"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        kinds.iter().filter(|(k, _)| k == "renditions").count(),
        2,
        "{kinds:?}"
    );
    assert!(
        kinds
            .iter()
            .any(|(k, t)| k == "error" && t.starts_with("transcoder busy")),
        "{kinds:?}"
    );

    orch.assert_no_violations();
    let (_, metrics) = transcoder.get("/metrics");
    for line in [
        "lpgpu_remote_registered 1",
        "lpgpu_remote_capacity 2",
        "lpgpu_remote_tasks_total{result=\"busy\"} 1",
        "lpgpu_remote_teardowns_total 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    assert!(metrics.contains("lpgpu_remote_tasks_total{result=\"ok\"}"));
    assert!(metrics.contains("lpgpu_remote_task_seconds_bucket{phase=\"download\""));
    let log = transcoder.log.lock().unwrap().clone();
    assert!(log.contains("registered with the orchestrator"));
    assert!(
        log.contains("result=\"ok\"") || log.contains("result=ok"),
        "one line per task"
    );
    assert!(!log.contains(SECRET), "the secret is never logged");
}

#[test]
fn the_link_comes_back_after_the_stream_ends_and_after_a_restart_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut orch = Orchestrator::start(dir.path(), 0);
    let port = orch.port;
    let mut transcoder = RemoteTranscoder::start(&orch.addr(), SECRET, &["--max-sessions", "1"]);
    orch.wait_registration(1, 20);

    // The orchestrator ends the stream: registered again within 10 s.
    orch.ok(json!({"cmd": "end_stream"}));
    orch.wait_registration(2, 10);

    // The orchestrator dies: /readyz says why, then it comes back on the
    // same port and the transcoder registers with it.
    orch.kill();
    wait_until("/readyz not ready", Duration::from_secs(10), || {
        let (status, body) = transcoder.get("/readyz");
        status == 503 && body.contains("backing off")
    });
    std::thread::sleep(Duration::from_secs(2));
    let mut orch = Orchestrator::start(dir.path(), port);
    orch.wait_registration(1, 20);
    wait_until("/readyz ready", Duration::from_secs(10), || {
        transcoder.get("/readyz").0 == 200
    });
    let (_, metrics) = transcoder.get("/metrics");
    let reconnects: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("lpgpu_remote_reconnects_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    // At least the restart's; the stream-end's too unless the orchestrator
    // died within the second in which a silent call counts as registered.
    assert!(reconnects >= 1, "{metrics}");

    // SIGTERM with a task in flight: its result is posted, then exit 0.
    let long = corpus("go-livepeer/sample_1_360_15000.ts");
    let task = orch.send(
        json!({"segment_file": long.to_str().unwrap(), "session": "ffff0001",
        "duration_ms": 15_000, "profiles": [p("P360p30fps16x9", 640, 360, 1_200_000, 30),
                                             p("P240p30fps16x9", 426, 240, 600_000, 30)]}),
    );
    std::thread::sleep(Duration::from_millis(700));
    transcoder.signal("-TERM");
    let result = orch.result(task);
    check_renditions(&result, &long, &["video/mp2t", "video/mp2t"]);
    let status = transcoder.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "exit after draining: {status}");
    orch.assert_no_violations();
}

#[test]
fn a_wrong_secret_is_fatal_and_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let mut orch = Orchestrator::start(dir.path(), 0);
    let mut transcoder = RemoteTranscoder::start(&orch.addr(), "not the secret", &[]);
    let status = transcoder.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(3), "a refused registration exits 3");
    assert!(transcoder.log.lock().unwrap().contains("invalid secret"));
    std::thread::sleep(Duration::from_secs(2));
    let registrations = orch.ok(json!({"cmd": "registrations"}));
    assert_eq!(registrations["attempts"], 1, "{registrations}");
    assert_eq!(registrations["accepted"], 0);

    // The secret may be a file whose first line is it.
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("  {SECRET}  \nignored second line\n")).unwrap();
    let _transcoder = RemoteTranscoder::start(&orch.addr(), secret_file.to_str().unwrap(), &[]);
    orch.wait_registration(1, 20);
}

#[test]
fn the_documented_config_file_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut orch = Orchestrator::start(dir.path(), 0);
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/transcoder.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lpgpu"))
        .arg("--config")
        .arg(&config)
        .args([
            "transcoder",
            "--orch-addr",
            &orch.addr(),
            "--orch-secret",
            SECRET,
        ])
        .args(["--metrics-listen", "127.0.0.1:0", "--backend", "cpu"])
        .env_remove("LPGPU_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let registration = orch.wait_registration(1, 30);
    let _ = child.kill();
    let _ = child.wait();
    // The file's keys apply where the command line leaves them alone.
    assert_eq!(registration["capacity"], 16, "max-sessions from the file");
}

#[test]
fn a_pinned_certificate_is_required_when_given() {
    let dir = tempfile::tempdir().unwrap();
    let mut orch = Orchestrator::start(dir.path(), 0);
    let fingerprint = orch.ok(json!({"cmd": "cert"}))["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let wrong = RemoteTranscoder::start(
        &orch.addr(),
        SECRET,
        &["--orch-cert-sha256", &"ab".repeat(32)],
    );
    wait_until("a wrong pin backs off", Duration::from_secs(10), || {
        let (status, body) = wrong.get("/readyz");
        status == 503 && body.contains("backing off")
    });
    assert_eq!(orch.ok(json!({"cmd": "registrations"}))["accepted"], 0);
    drop(wrong);
    let _right =
        RemoteTranscoder::start(&orch.addr(), SECRET, &["--orch-cert-sha256", &fingerprint]);
    orch.wait_registration(1, 20);
}

#[test]
fn a_frozen_orchestrator_is_noticed_by_http2_pings() {
    let dir = tempfile::tempdir().unwrap();
    let mut orch = Orchestrator::start(dir.path(), 0);
    let transcoder = RemoteTranscoder::start(&orch.addr(), SECRET, &["--orch-ping-seconds", "1"]);
    orch.wait_registration(1, 20);
    wait_until("/readyz ready", Duration::from_secs(10), || {
        transcoder.get("/readyz").0 == 200
    });
    let stopped = Instant::now();
    let pid = orch.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    // The process holds its sockets open and answers nothing: only a PING
    // that goes unanswered can tell.
    wait_until(
        "the frozen orchestrator is noticed",
        Duration::from_secs(25),
        || transcoder.get("/readyz").0 == 503,
    );
    println!("noticed after {:?}", stopped.elapsed());
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn the_lpms_corpus_as_tasks_meets_its_expectations_and_the_transcoder_keeps_serving() {
    let expectations: Value =
        serde_json::from_str(&std::fs::read_to_string(corpus("expectations.json")).unwrap())
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut orch = Orchestrator::start(dir.path(), 0);
    let transcoder = RemoteTranscoder::start(&orch.addr(), SECRET, &["--max-sessions", "1"]);
    orch.wait_registration(1, 20);
    let files = expectations["files"].as_array().unwrap();
    for (seq, entry) in files.iter().enumerate() {
        let name = entry["file"].as_str().unwrap();
        let expect = entry["lpms_expectation"].as_str().unwrap();
        let task = orch.send(json!({"segment_file": corpus(name).to_str().unwrap(),
            "session": "corpus01", "seq": seq, "duration_ms": 2000,
            "profiles": [p("P144p30fps16x9", 256, 144, 400_000, 30)]}));
        let result = orch.result(task);
        // vertical-sample.ts fails in lpms only for a contrived profile;
        // with a standard one it transcodes.
        let expect = if name == "vertical-sample.ts" {
            "ok"
        } else {
            expect
        };
        match expect {
            "ok" => {
                check_renditions(&result, &corpus(name), &["video/mp2t"]);
            }
            _ => assert_eq!(result["kind"], "error", "{name}: {result}"),
        }
        println!("{name}: {} {}", result["kind"], result["error_text"]);
    }
    assert_eq!(
        transcoder.get("/readyz").0,
        200,
        "still registered and serving"
    );
    orch.assert_no_violations();
}

#[test]
fn each_mode_asks_for_its_own_flags() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_lpgpu"))
            .arg("transcoder")
            .args(args)
            .env_remove("LPGPU_CONFIG")
            .output()
            .unwrap()
    };
    let neither = run(&[]);
    assert!(!neither.status.success());
    let text = String::from_utf8_lossy(&neither.stderr);
    assert!(
        text.contains("--hostname") || text.contains("--orch-addr"),
        "{text}"
    );
    let no_secret = run(&["--orch-addr", "127.0.0.1:1"]);
    assert!(!no_secret.status.success());
    assert!(String::from_utf8_lossy(&no_secret.stderr).contains("--orch-secret"));
    let both = run(&[
        "--orch-addr",
        "127.0.0.1:1",
        "--orch-secret",
        "s",
        "--hostname",
        "h",
    ]);
    assert!(!both.status.success(), "the modes' flags do not mix");
    for (args, message) in [
        (&["--orch-cert-sha256", "abc"][..], "--orch-cert-sha256"),
        (&["--orch-version", "latest"][..], "--orch-version"),
        (&["--max-sessions", "0"][..], "--max-sessions"),
        (&["--name", "rig 7"][..], "--name"),
        (&["--name", "a\"label"][..], "--name"),
    ] {
        let mut all = vec![
            "--orch-addr",
            "127.0.0.1:1",
            "--orch-secret",
            "s",
            "--backend",
            "cpu",
        ];
        all.extend_from_slice(args);
        let out = run(&all);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(message),
            "{args:?}"
        );
    }
    let help = String::from_utf8_lossy(&run(&["--help"]).stdout).to_string();
    assert!(
        help.contains("Dial-out mode") && help.contains("Listen mode"),
        "{help}"
    );
}

#[test]
fn the_independent_peers_pass_their_own_self_tests() {
    for script in ["ot_orchestrator_selftest.py", "ot_transcoder_selftest.py"] {
        let out = Command::new(python())
            .arg(interop(script))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The codec of a file's first audio stream, as ffprobe reads it.
fn audio_codec(path: &Path) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a:0"])
        .args(["-show_entries", "stream=codec_name", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe {}", path.display());
    // MPEG-TS lists the stream again under its program: the first line.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

/// What the independent orchestrator found failing: one MP4 and one
/// MPEG-TS profile (fullProfiles2) on a 2 s 720p30 H.264 + AAC (ADTS)
/// MPEG-TS segment. Both renditions come back, ffprobe reads them, and the
/// AAC is in both (in MP4 without its ADTS headers).
#[test]
fn mp4_and_mpegts_renditions_of_a_segment_with_aac_audio() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("aac_720p.ts");
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y"])
        .args(
            "-f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 \
             -c:v libx264 -preset ultrafast -g 60 -c:a aac -f mpegts"
                .split_whitespace(),
        )
        .arg(&source)
        .status()
        .unwrap();
    assert!(status.success());
    let mut orch = Orchestrator::start(dir.path(), 0);
    let _transcoder = RemoteTranscoder::start(&orch.addr(), SECRET, &["--max-sessions", "1"]);
    orch.wait_registration(1, 30);
    let mp4 = json!({"name": "P240p-mp4", "width": 426, "height": 240, "bitrate": 600_000,
        "fps": 30, "format": "MP4"});
    let id = orch.send(
        json!({"segment_file": source, "session": "aac00001", "seq": 0,
        "duration_ms": 2000, "profiles_field": "fullProfiles2",
        "profiles": [mp4, p("P144p30fps16x9", 256, 144, 400_000, 30)]}),
    );
    let result = orch.result(id);
    check_renditions(&result, &source, &["video/mp4", "video/mp2t"]);
    for part in result["parts"].as_array().unwrap() {
        let path = PathBuf::from(part["path"].as_str().unwrap());
        assert_eq!(audio_codec(&path), "aac", "{}", path.display());
    }
    orch.assert_no_violations();
}

/// A failed task: the orchestrator gets the short stable text, the
/// operator's log line the stage and the whole cause.
#[test]
fn a_failed_task_logs_its_cause_while_the_wire_keeps_the_stable_text() {
    let dir = tempfile::tempdir().unwrap();
    let audio_only = dir.path().join("audio_only.ts");
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y"])
        .args(
            "-f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 -c:a aac -f mpegts"
                .split_whitespace(),
        )
        .arg(&audio_only)
        .status()
        .unwrap();
    assert!(status.success());
    let mut orch = Orchestrator::start(dir.path(), 0);
    let transcoder = RemoteTranscoder::start(&orch.addr(), SECRET, &["--max-sessions", "1"]);
    orch.wait_registration(1, 30);
    let id = orch.send(
        json!({"segment_file": audio_only, "session": "cause001", "seq": 0,
        "duration_ms": 2000, "profiles": [p("P144p30fps16x9", 256, 144, 400_000, 30)]}),
    );
    let result = orch.result(id);
    assert_eq!(result["kind"], "error", "{result}");
    assert_eq!(result["error_text"], "segment does not decode", "{result}");
    wait_until("the task's log line", Duration::from_secs(10), || {
        transcoder.log.lock().unwrap().contains("cause")
    });
    let log = transcoder.log.lock().unwrap().clone();
    let line = log
        .lines()
        .find(|l| l.contains("task=") && l.contains("cause"))
        .unwrap_or_else(|| panic!("no task line with a cause in\n{log}"));
    assert!(
        line.contains("transcode: segment does not decode: the segment has no video stream"),
        "{line}"
    );
    assert!(line.contains("P144p30fps16x9"), "{line}");
}

/// Every codec in and out through the spec-written orchestrator. The
/// registration offers bits 15–25 (HEVC, VP8 and VP9 decode and encode,
/// H.264 4:4:4 / 4:2:2 8-bit and 4:2:0 / 4:2:2 / 4:4:4 10-bit decode) and
/// 14 (perceptual hashes); a task asking H.265, VP9, VP8 and H.264 renditions gets each one
/// (the part labelled `video/mp2t` by its profile's format, as go-livepeer
/// labels it), and tasks whose sources are HEVC, VP9, VP8 and H.264 10-bit
/// 4:2:2 and 4:4:4, each asking the bit its source needs, are served. Every
/// rendition is read by ffprobe with exact Pixels.
#[test]
fn every_codec_in_and_out_from_a_go_livepeer_style_orchestrator() {
    let dir = tempfile::tempdir().unwrap();
    let make = |name: &str, encode: &str| {
        let path = dir.path().join(name);
        let status = Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y"])
            .args(
                "-f lavfi -i testsrc2=size=640x360:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2"
                    .split_whitespace(),
            )
            .args(encode.split_whitespace())
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success(), "making {name}");
        path
    };
    let h264 = make(
        "h264.ts",
        "-c:v libx264 -preset ultrafast -g 60 -c:a aac -f mpegts",
    );
    let mut orch = Orchestrator::start(dir.path(), 0);
    let _transcoder = RemoteTranscoder::start(&orch.addr(), SECRET, &["--max-sessions", "1"]);
    let registration = orch.wait_registration(1, 30);
    let caps: Vec<u64> = registration["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    for bit in 15..=25 {
        assert!(caps.contains(&bit), "capability {bit} offered: {caps:?}");
    }
    assert!(caps.contains(&14), "{caps:?}");
    let check = |result: &Value, codecs: &[&str]| {
        assert_eq!(result["kind"], "renditions", "{result}");
        let parts = result["parts"].as_array().unwrap();
        assert_eq!(parts.len(), codecs.len(), "{result}");
        for (part, codec) in parts.iter().zip(codecs) {
            assert_eq!(part["content_type"], "video/mp2t");
            let path = PathBuf::from(part["path"].as_str().unwrap());
            let probed = probe(&path);
            assert_eq!(&probed.0, codec, "{}", path.display());
            assert_eq!(
                part["pixels"].as_u64().unwrap(),
                probed.2 * probed.3 * probed.4,
                "Pixels of {}",
                path.display()
            );
        }
    };
    let codec = |name: &str, encoder: &str, w: u32, h: u32| json!({"name": name, "width": w, "height": h, "bitrate": 300_000, "fps": 30, "encoder": encoder});
    let id = orch.send(json!({"segment_file": h264, "session": "codec001", "seq": 0,
        "duration_ms": 2000, "profiles_field": "fullProfiles3", "capabilities": [0, 1, 12, 16, 19, 20],
        "profiles": [codec("hevc", "H265", 426, 240), codec("vp9", "VP9", 320, 180),
                     codec("vp8", "VP8", 256, 144), p("P144p30fps16x9", 256, 144, 400_000, 30)]}));
    check(&orch.result(id), &["hevc", "vp9", "vp8", "h264"]);

    for (index, (name, encode, bit)) in [
        (
            "hevc.ts",
            "-c:v libx265 -x265-params log-level=error -g 60 -c:a aac -f mpegts",
            15,
        ),
        (
            "vp8.webm",
            "-c:v libvpx -b:v 500k -g 60 -c:a libopus -f webm",
            17,
        ),
        (
            "vp9.webm",
            "-c:v libvpx-vp9 -b:v 500k -g 60 -c:a libopus -f webm",
            18,
        ),
        (
            "h264_444_10bit.ts",
            "-c:v libx264 -preset ultrafast -pix_fmt yuv444p10le -g 60 -f mpegts",
            23,
        ),
        (
            "h264_422_10bit.ts",
            "-c:v libx264 -preset ultrafast -pix_fmt yuv422p10le -g 60 -f mpegts",
            24,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let source = make(name, encode);
        let id = orch.send(
            json!({"segment_file": source, "session": format!("input00{index}"),
            "seq": 0, "duration_ms": 2000, "capabilities": [0, 1, 12, bit],
            "profiles": [p("P144p30fps16x9", 256, 144, 400_000, 30)]}),
        );
        let result = orch.result(id);
        check(&result, &["h264"]);
    }
    orch.assert_no_violations();
}

/// The `details` of the rig's `/status`: each orchestrator's link.
fn links(transcoder: &RemoteTranscoder) -> Vec<Value> {
    let (status, body) = transcoder.get("/status");
    assert_eq!(status, 200, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    status["details"]["links"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The link to `orch` in `/status`.
fn link(transcoder: &RemoteTranscoder, orch: &Orchestrator) -> Value {
    links(transcoder)
        .into_iter()
        .find(|l| l["orchestrator"] == orch.addr())
        .unwrap_or_else(|| panic!("no link to {}", orch.addr()))
}

/// A counter's value in a Prometheus text page (0 when absent).
fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The capacity of `orch`'s latest registration, once it is `capacity`.
fn wait_share(orch: &mut Orchestrator, capacity: u64, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let latest = orch.cmd(json!({"cmd": "wait_registration", "count": 1, "timeout": 1}));
        if latest["ok"] == true && latest["capacity"] == capacity && latest["connected"] == true {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{} did not get a registration of {capacity} within {within:?}: {latest}",
            orch.addr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Tasks of distinct sessions sent at once, then every result: none busy.
fn serve_sessions(orch: &mut Orchestrator, sessions: &[&str], seq: i64) {
    let short = corpus(SHORT);
    let ids: Vec<i64> = sessions
        .iter()
        .map(|session| {
            orch.send(json!({"segment_file": short.to_str().unwrap(), "session": session,
                "seq": seq, "duration_ms": 1250, "profiles": [p("P144p30fps16x9", 256, 144, 400_000, 30)]}))
        })
        .collect();
    for id in ids {
        let result = orch.result(id);
        assert_eq!(
            result["kind"],
            "renditions",
            "task {id} on {}: {result}",
            orch.addr()
        );
    }
}

/// The "done when": `--orch-addr A,B --max-sessions 4` registers 2
/// and 2 with two independent go-livepeer-style orchestrators (each with
/// its own secret) and serves both; A is killed with -9 while a task of
/// its is running, and B's registration carries 4 within 15 s and serves
/// four sessions at once; when A returns on the same port it gets its 2
/// back and B goes back to 2, once B's live sessions fit in 2 (two end).
/// No task is refused as busy throughout.
#[test]
fn a_rig_splits_between_two_orchestrators_fails_over_and_takes_the_share_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Orchestrator::start_with_secret(dir.path(), 0, "secret of a");
    let mut b = Orchestrator::start_with_secret(dir.path(), 0, "secret of b");
    let a_port = a.port;
    let secrets = format!("{}=secret of a,{}=secret of b", a.addr(), b.addr());
    let transcoder = RemoteTranscoder::start(
        &format!("{},{}", a.addr(), b.addr()),
        &secrets,
        &["--max-sessions", "4"],
    );
    assert_eq!(a.wait_registration(1, 30)["capacity"], 2);
    assert_eq!(b.wait_registration(1, 30)["capacity"], 2);
    serve_sessions(&mut a, &["a0000001", "a0000002"], 0);
    serve_sessions(&mut b, &["b0000001", "b0000002"], 0);
    let shares: Vec<(Value, Value)> = links(&transcoder)
        .iter()
        .map(|l| (l["share"].clone(), l["state"].clone()))
        .collect();
    assert_eq!(
        shares,
        [
            (json!(2), json!("registered")),
            (json!(2), json!("registered"))
        ]
    );

    // A dies with a 15 s segment in its rig's hands.
    let long = corpus("go-livepeer/sample_1_360_15000.ts");
    a.send(
        json!({"segment_file": long.to_str().unwrap(), "session": "a0000001", "seq": 1,
        "duration_ms": 15_000, "profiles": [p("P240p30fps16x9", 426, 240, 600_000, 30)]}),
    );
    std::thread::sleep(Duration::from_millis(300));
    let a_label = a.addr();
    a.kill();
    let took = wait_share(&mut b, 4, Duration::from_secs(15));
    println!("B carries 4 {took:?} after A was killed");
    serve_sessions(&mut b, &["b0000001", "b0000002", "b0000003", "b0000004"], 1);
    wait_until("A's link reported down", Duration::from_secs(10), || {
        let links = links(&transcoder);
        links[0]["state"] == "backing_off" && links[0]["share"] == 0 && links[1]["share"] == 4
    });
    // The killed task's result had nowhere to go: counted, not lost silently.
    wait_until(
        "the killed orchestrator's task counted",
        Duration::from_secs(30),
        || {
            let (_, metrics) = transcoder.get("/metrics");
            counter(
                &metrics,
                &format!(
                    "lpgpu_remote_orchestrator_tasks_total{{orchestrator=\"{a_label}\",result=\"upload_failed\"}}"
                ),
            ) == 1
        },
    );

    // A comes back on the same port while B has four live sessions: B
    // keeps its four until they fit the smaller share, and A waits.
    let mut a = Orchestrator::start_with_secret(dir.path(), a_port, "secret of a");
    // The rig dials A again on go-livepeer's backoff, which grows while A
    // is away: on a loaded machine that can be tens of seconds.
    wait_until("A waits for capacity", Duration::from_secs(90), || {
        let links = links(&transcoder);
        links[0]["state"] == "standby" && links[0]["target"] == 2
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        link(&transcoder, &b)["share"],
        4,
        "B's sessions are not stranded"
    );
    // Two of B's streams end: the other two fit, B gives back 2, A has 2.
    for session in ["b0000003", "b0000004"] {
        b.ok(json!({"cmd": "teardown", "session": session}));
    }
    let took = wait_share(&mut a, 2, Duration::from_secs(30));
    println!("A has its share back {took:?} after its restart");
    wait_share(&mut b, 2, Duration::from_secs(10));
    serve_sessions(&mut a, &["a0000004", "a0000005"], 0);
    serve_sessions(&mut b, &["b0000001", "b0000002"], 2);
    let (_, metrics) = transcoder.get("/metrics");
    assert!(!metrics.contains("result=\"busy\""), "{metrics}");
    let b_label = b.addr();
    assert!(
        counter(
            &metrics,
            &format!("lpgpu_remote_orchestrator_moves_total{{orchestrator=\"{b_label}\"}}")
        ) >= 2,
        "{metrics}"
    );
    assert_eq!(
        counter(&metrics, "lpgpu_remote_capacity"),
        4,
        "the registered total is the capacity"
    );
    let log = transcoder.log.lock().unwrap().clone();
    assert!(log.contains("share moved"), "one log line per move");
    // What each move cost, for docs/BENCHMARKS.md (not asserted: timing).
    for line in metrics.lines() {
        if line.starts_with("lpgpu_remote_move_seconds_sum")
            || line.starts_with("lpgpu_remote_move_seconds_count")
        {
            println!("{line}");
        }
    }
    a.assert_no_violations();
    b.assert_no_violations();
    a.assert_never_without_capacity();
    b.assert_never_without_capacity();
}

/// Weights, secrets from a file, and an orchestrator that refuses the
/// secret: it is tried once, reported in `/status`, and its share goes to
/// the others, which keep working.
#[test]
fn weights_and_a_refusing_orchestrator_among_three() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Orchestrator::start_with_secret(dir.path(), 0, "alpha");
    let mut b = Orchestrator::start_with_secret(dir.path(), 0, "beta");
    let mut c = Orchestrator::start_with_secret(dir.path(), 0, "gamma");
    let secrets = dir.path().join("secrets");
    std::fs::write(
        &secrets,
        format!(
            "# one line per orchestrator\n{}=alpha\n{}=beta\n\n{}=not gamma\n",
            a.addr(),
            b.addr(),
            c.addr()
        ),
    )
    .unwrap();
    let transcoder = RemoteTranscoder::start(
        &format!("{},{},{}", a.addr(), b.addr(), c.addr()),
        secrets.to_str().unwrap(),
        &[
            "--backend",
            "echo",
            "--max-sessions",
            "4",
            "--orch-weight",
            &format!("{}=3", a.addr()),
        ],
    );
    // 3:1:1 over 4 slots is 2,1,1; without C it is 3,1.
    wait_share(&mut a, 3, Duration::from_secs(20));
    wait_share(&mut b, 1, Duration::from_secs(20));
    wait_until("C reported as refused", Duration::from_secs(10), || {
        let c_link = link(&transcoder, &c);
        c_link["state"] == "refused"
            && c_link["why"]
                .as_str()
                .unwrap_or("")
                .contains("invalid secret")
    });
    std::thread::sleep(Duration::from_secs(2));
    let tried = c.ok(json!({"cmd": "registrations"}));
    assert_eq!(tried["attempts"], 1, "a refusal is not retried: {tried}");
    assert_eq!(tried["accepted"], 0);
    assert_eq!(transcoder.get("/readyz").0, 200, "the others serve");
    serve_sessions(&mut a, &["a0000001", "a0000002", "a0000003"], 0);
    serve_sessions(&mut b, &["b0000001"], 0);
    let (_, metrics) = transcoder.get("/metrics");
    assert!(!metrics.contains("result=\"busy\""), "{metrics}");
    a.assert_no_violations();
    b.assert_no_violations();
    a.assert_never_without_capacity();
    b.assert_never_without_capacity();
}

/// `--orch-rebalance`: A's two sessions fill its share while B's share
/// idles; the next rebalance moves a slot to A (3 and 1), re-registering
/// both at a quiet moment, and no task runs late or is refused.
#[test]
fn shares_follow_demand_with_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Orchestrator::start_with_secret(dir.path(), 0, SECRET);
    let mut b = Orchestrator::start_with_secret(dir.path(), 0, SECRET);
    let transcoder = RemoteTranscoder::start(
        &format!("{},{}", a.addr(), b.addr()),
        SECRET,
        &[
            "--backend",
            "echo",
            "--max-sessions",
            "4",
            "--orch-rebalance",
            "10",
        ],
    );
    assert_eq!(a.wait_registration(1, 30)["capacity"], 2);
    assert_eq!(b.wait_registration(1, 30)["capacity"], 2);
    serve_sessions(&mut a, &["a0000001", "a0000002"], 0);
    wait_share(&mut a, 3, Duration::from_secs(30));
    wait_share(&mut b, 1, Duration::from_secs(10));
    serve_sessions(&mut a, &["a0000001", "a0000002", "a0000003"], 1);
    serve_sessions(&mut b, &["b0000001"], 0);
    let (_, metrics) = transcoder.get("/metrics");
    assert!(!metrics.contains("result=\"busy\""), "{metrics}");
    for orch in [&mut a, &mut b] {
        orch.assert_no_violations();
        orch.assert_never_without_capacity();
    }
}

/// One slot, two orchestrators: the first registers, the second waits as a
/// standby (not even a registration attempt) and takes the slot when the
/// first is gone; when the first returns, the standby steps back.
#[test]
fn with_fewer_slots_than_orchestrators_the_rest_wait_as_standbys() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Orchestrator::start_with_secret(dir.path(), 0, SECRET);
    let mut b = Orchestrator::start_with_secret(dir.path(), 0, SECRET);
    let a_port = a.port;
    let transcoder = RemoteTranscoder::start(
        &format!("{},{}", a.addr(), b.addr()),
        SECRET,
        &["--backend", "echo", "--max-sessions", "1"],
    );
    assert_eq!(a.wait_registration(1, 30)["capacity"], 1);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(b.ok(json!({"cmd": "registrations"}))["attempts"], 0);
    assert_eq!(link(&transcoder, &b)["state"], "standby");
    a.kill();
    wait_share(&mut b, 1, Duration::from_secs(15));
    serve_sessions(&mut b, &["b0000001"], 0);
    b.ok(json!({"cmd": "teardown", "session": "b0000001"}));
    let mut a = Orchestrator::start_with_secret(dir.path(), a_port, SECRET);
    wait_share(&mut a, 1, Duration::from_secs(90));
    wait_until("B steps back", Duration::from_secs(10), || {
        b.ok(json!({"cmd": "registrations"}))["open"] == 0
    });
    serve_sessions(&mut a, &["a0000001"], 0);
    assert_eq!(link(&transcoder, &b)["state"], "standby");
    a.assert_never_without_capacity();
    b.assert_never_without_capacity();
}
