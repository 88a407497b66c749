//! A farm: one `lpgpu orchestrator --orch-secret` and remote transcoders that
//! dial in (`lpgpu transcoder --orch-addr`, and a go-livepeer-style fake
//! written in Python from the spec), each its own process, serving v2
//! broadcasts (`lpgpu broadcast`). One transcoder is `kill -9`ed mid-stream:
//! no segment is lost. The farm's hosts are network namespaces of the
//! test's own where that is permitted (root), else loopback, said in the
//! output.

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::netns::Hosts;
use common::{Killed as Process, World, first_line, free_port};

const PROFILES: &str = "P240p30fps16x9,P144p30fps16x9";
const PASSWORD: &str = "pw";
const SECRET: &str = "farm-secret";

fn series(metrics: &str, name: &str) -> u64 {
    common::metric(metrics, name) as u64
}

struct Orchestrator<'h> {
    _process: Process,
    hosts: &'h Hosts,
    host: usize,
    port: u16,
    metrics: String,
}

impl<'h> Orchestrator<'h> {
    fn start(world: &World, hosts: &'h Hosts, host: usize) -> Self {
        Self::start_with(world, hosts, host, &["--orch-secret", SECRET])
    }

    fn start_with(world: &World, hosts: &'h Hosts, host: usize, mode: &[&str]) -> Self {
        let keystore = common::keystore(world, "orchestrator", &world.orchestrator, PASSWORD);
        let chain = format!("ledger:{}", world.ledger_path().display());
        let mut args = vec!["--keystore".to_string(), keystore.display().to_string()];
        args.extend(["--chain".to_string(), chain]);
        Self::spawn(hosts, host, &args, mode)
    }

    /// `lpgpu orchestrator --chain offchain --orch-secret`: today's wire
    /// only, no keystore.
    fn start_offchain(hosts: &'h Hosts, host: usize) -> Self {
        let args = ["--chain".to_string(), "offchain".to_string()];
        Self::spawn(hosts, host, &args, &["--orch-secret", SECRET])
    }

    fn spawn(hosts: &'h Hosts, host: usize, chain: &[String], mode: &[&str]) -> Self {
        let metrics = format!("127.0.0.1:{}", free_port());
        let address = hosts.address(host);
        let mut child = hosts
            .command(host, env!("CARGO_BIN_EXE_lpgpu"))
            .args(["orchestrator", "--hostname", address])
            .args([
                "--listen",
                &format!("{address}:0"),
                "--metrics-listen",
                &metrics,
            ])
            .args(chain)
            .args(mode)
            .env("LPGPU_PASSWORD", PASSWORD)
            .env_remove("LPGPU_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting lpgpu orchestrator");
        let line = first_line(&mut child);
        assert!(line.contains("listening on"), "{line:?}");
        let port = line
            .split_whitespace()
            .last()
            .and_then(|uri| uri.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap();
        Self {
            _process: Process(child),
            hosts,
            host,
            port,
            metrics,
        }
    }

    fn addr(&self) -> String {
        format!("{}:{}", self.hosts.address(self.host), self.port)
    }

    fn uri(&self) -> String {
        format!("https://{}", self.addr())
    }

    fn metrics(&self) -> String {
        self.hosts.http_get(self.host, &self.metrics, "/metrics")
    }

    fn readyz(&self) -> String {
        self.hosts.http_get(self.host, &self.metrics, "/readyz")
    }

    /// Waits until `members` transcoders are registered.
    fn wait_for_members(&self, members: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while series(&self.metrics(), "lpgpu_pool_members ") != members {
            assert!(Instant::now() < deadline, "{}", self.metrics());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

struct RemoteTranscoder<'h> {
    process: Process,
    hosts: &'h Hosts,
    host: usize,
    metrics: String,
}

impl<'h> RemoteTranscoder<'h> {
    fn start(
        orchestrator: &Orchestrator,
        hosts: &'h Hosts,
        host: usize,
        secret: &str,
        sessions: u32,
    ) -> Self {
        let metrics = format!("127.0.0.1:{}", free_port());
        let mut child = hosts
            .command(host, env!("CARGO_BIN_EXE_lpgpu"))
            .args(["transcoder", "--backend", "cpu"])
            .args(["--orch-addr", &orchestrator.addr()])
            .args(["--orch-secret", secret])
            .args(["--max-sessions", &sessions.to_string()])
            .args(["--name", &format!("rig-{host}")])
            .args(["--metrics-listen", &metrics])
            .env_remove("LPGPU_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting lpgpu transcoder");
        let line = first_line(&mut child);
        assert!(line.contains("dialling"), "{line:?}");
        Self {
            process: Process(child),
            hosts,
            host,
            metrics,
        }
    }

    fn tasks_in_flight(&self) -> u64 {
        series(
            &self.hosts.http_get(self.host, &self.metrics, "/metrics"),
            "lpgpu_remote_tasks_in_flight ",
        )
    }
}

fn make_clip(path: &Path, seconds: u32) {
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=320x180:rate=30")
        .args(["-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "60"])
        .args(["-f", "mpegts"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

fn broadcast(
    world: &World,
    hosts: &Hosts,
    host: usize,
    job: u64,
    uri: &str,
    input: &Path,
    out: &Path,
) -> Child {
    let keystore = common::keystore(world, "broadcaster", &world.broadcaster, PASSWORD);
    hosts
        .command(host, env!("CARGO_BIN_EXE_lpgpu"))
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
        // Two uploads in flight (the default): the pool serves a stream's
        // segments one at a time, the second waiting for the first.
        .args(["--max-in-flight", "2"])
        .env("LPGPU_PASSWORD", PASSWORD)
        .env_remove("LPGPU_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Every rendition of `out` lists `segments` segments, each a file ffprobe
/// reads as H.264 of the rendition's size.
fn check_renditions(out: &Path, segments: usize) {
    let mut media = 0;
    for entry in std::fs::read_dir(out).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if path.extension().is_some_and(|e| e == "m3u8") && !text.contains("#EXT-X-STREAM-INF") {
            media += 1;
            assert_eq!(text.matches("#EXTINF").count(), segments, "{text}");
            assert!(text.trim_end().ends_with("#EXT-X-ENDLIST"), "{text}");
            for line in text
                .lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
            {
                let data = std::fs::read(path.parent().unwrap().join(line)).unwrap();
                let (codec, width, height, _) = common::probe(&data);
                assert_eq!(codec, "h264", "{line}");
                assert!(width > 0 && height > 0, "{line}");
            }
        }
    }
    assert_eq!(media, 2, "two renditions in {}", out.display());
}

const ORCHESTRATOR_HOST: usize = 0;
const RIGS: [usize; 3] = [1, 2, 3];
const STUDIO: usize = 4;

/// The independent broadcaster of `tests/interop` (grpcio + httpx, from
/// the spec): one segment in each response form, every rendition ffprobed,
/// the orchestrator's signature checked.
fn independent_broadcaster(world: &World, hosts: &Hosts, orchestrator: &Orchestrator) -> Child {
    let job = world.job("P360p30fps16x9,P240p30fps16x9", 1_000_000);
    let stream_id = world.ledger.job_blocking(job).unwrap().unwrap().stream_id;
    common::keystore(world, "broadcaster", &world.broadcaster, PASSWORD);
    let keyfile = std::fs::read_dir(world.dir.path().join("broadcaster"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let address = hosts.address(ORCHESTRATOR_HOST);
    let spec = serde_json::json!({
        "proto_dir": Path::new(env!("CARGO_MANIFEST_DIR")).join("proto"),
        "host": address, "port": orchestrator.port, "hostname": address,
        "broadcaster_keyfile": keyfile, "password": PASSWORD,
        "broadcaster": world.broadcaster.address().to_string(),
        "orchestrator": world.orchestrator.address().to_string(), "job_id": job,
        "profiles": ["P360p30fps16x9", "P240p30fps16x9"],
        "segment": common::clip("h264_720p.ts"), "stream_id": stream_id, "source_frames": 60,
    });
    let spec_path = world.dir.path().join("interop-spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    hosts
        .command(STUDIO, python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/post_segment.py"))
        .arg(&spec_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn three_transcoders_on_three_hosts_serve_six_streams_and_losing_one_loses_no_segment() {
    let hosts = Hosts::new(5);
    println!(
        "hosts: {} ({})",
        (0..5)
            .map(|h| hosts.address(h))
            .collect::<Vec<_>>()
            .join(", "),
        if hosts.isolated() {
            "network namespaces"
        } else {
            "loopback: namespaces not permitted here"
        }
    );
    let world = World::new(1.0);
    let orchestrator = Orchestrator::start(&world, &hosts, ORCHESTRATOR_HOST);
    let mut members: Vec<RemoteTranscoder> = RIGS
        .iter()
        .map(|&rig| RemoteTranscoder::start(&orchestrator, &hosts, rig, SECRET, 3))
        .collect();
    orchestrator.wait_for_members(3);
    let metrics = orchestrator.metrics();
    assert_eq!(series(&metrics, "lpgpu_pool_registrations_total "), 3);
    // Members are named by their --name and address.
    for rig in RIGS {
        let label = format!(
            "lpgpu_pool_member_capacity{{member=\"rig-{rig}@{}:",
            hosts.address(rig)
        );
        assert!(metrics.contains(&label), "{label} in {metrics}");
    }
    assert!(orchestrator.readyz().starts_with("ready"));

    // Six streams at once from the studio: five `lpgpu broadcast`s of 16 s
    // (8 segments each) and the independent broadcaster.
    let input = world.dir.path().join("clip.ts");
    make_clip(&input, 16);
    let interop = independent_broadcaster(&world, &hosts, &orchestrator);
    let streams: Vec<(PathBuf, Child)> = (0..5)
        .map(|i| {
            let job = world.job(PROFILES, 1_000_000);
            let out = world.dir.path().join(format!("hls-{i}"));
            let child = broadcast(
                &world,
                &hosts,
                STUDIO,
                job,
                &orchestrator.uri(),
                &input,
                &out,
            );
            (out, child)
        })
        .collect();

    // Kill -9 a rig while it is working on a segment.
    let deadline = Instant::now() + Duration::from_secs(60);
    let victim = loop {
        if series(
            &orchestrator.metrics(),
            "lpgpu_pool_tasks_total{result=\"ok\"}",
        ) >= 6
            && let Some(i) = members.iter().position(|m| m.tasks_in_flight() > 0)
        {
            break i;
        }
        assert!(Instant::now() < deadline, "no member got to work");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut dead = members.remove(victim);
    // Frozen first: whatever it was working on stays unanswered, and its
    // pinned streams' next segments are placed on it too, so the kill lands
    // with attempts waiting on it (a task it finished between the check
    // above and the kill would otherwise leave nothing to retry).
    let pid = dead.process.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(1500));
    dead.process.0.kill().unwrap();
    dead.process.0.wait().unwrap();

    for (out, child) in streams {
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}");
        assert!(stdout.contains("8 segments, 0 failed"), "{stdout}");
        check_renditions(&out, 8);
    }
    let interop = interop.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&interop.stdout);
    assert!(
        interop.status.success() && said.contains("segments: all checks passed"),
        "{said}\n{}",
        String::from_utf8_lossy(&interop.stderr)
    );
    let metrics = orchestrator.metrics();
    println!("{metrics}");
    assert_eq!(series(&metrics, "lpgpu_pool_members "), 2, "{metrics}");
    assert_eq!(
        series(
            &metrics,
            "lpgpu_pool_evictions_total{reason=\"disconnected\"}"
        ),
        1
    );
    assert!(
        series(&metrics, "lpgpu_pool_retries_total ") >= 1,
        "{metrics}"
    );
    assert!(series(&metrics, "lpgpu_pool_tasks_total{result=\"ok\"}") >= 42);
    drop(members);
}

#[test]
fn a_wrong_secret_is_refused_as_go_livepeer_refuses_it() {
    let hosts = Hosts::loopback(1);
    let world = World::new(1.0);
    let orchestrator = Orchestrator::start(&world, &hosts, 0);
    let mut member = RemoteTranscoder::start(&orchestrator, &hosts, 0, "not-the-secret", 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = member.process.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the transcoder kept running");
        std::thread::sleep(Duration::from_millis(50));
    };
    // lpgpu's transcoder exits 3 when the registration is refused.
    assert_eq!(status.code(), Some(3));
    let metrics = orchestrator.metrics();
    assert_eq!(
        series(
            &metrics,
            "lpgpu_pool_registrations_refused_total{reason=\"secret\"}"
        ),
        1
    );
    assert_eq!(series(&metrics, "lpgpu_pool_members "), 0);
    // With no member, the orchestrator is not ready, and says why.
    let ready = orchestrator.readyz();
    assert!(ready.starts_with("not ready"), "{ready}");
}

fn python() -> PathBuf {
    let python = std::env::var_os("LPGPU_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3"));
    let check = Command::new(&python)
        .args(["-c", "import grpc, grpc_tools, httpx, h2"])
        .output();
    match check {
        Ok(out) if out.status.success() => python,
        _ => panic!(
            "{} cannot import grpcio/httpx: run .ci/setup (or set LPGPU_PYTHON) first",
            python.display()
        ),
    }
}

#[test]
fn a_transcoder_written_from_the_spec_joins_and_serves_a_stream() {
    let hosts = Hosts::loopback(1);
    let world = World::new(1.0);
    let orchestrator = Orchestrator::start(&world, &hosts, 0);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/ot_transcoder.py");
    let mut fake = Command::new(python())
        .arg(script)
        .args(["--orch-addr", &orchestrator.addr()])
        .args(["--secret", SECRET, "--capacity", "2", "--name", "spec-fake"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = fake.stdout.take().unwrap();
    let fake = Process(fake);
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let collected = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            collected.lock().unwrap().push(line);
        }
    });
    orchestrator.wait_for_members(1);

    let input = world.dir.path().join("clip.ts");
    make_clip(&input, 6);
    let job = world.job(PROFILES, 1_000_000);
    let out = world.dir.path().join("hls");
    let output = broadcast(&world, &hosts, 0, job, &orchestrator.uri(), &input, &out)
        .wait_with_output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("3 segments, 0 failed"), "{stdout}");
    check_renditions(&out, 3);
    let lines = lines.lock().unwrap().clone();
    assert!(
        lines.iter().any(|l| l.starts_with("registered")),
        "{lines:?}"
    );
    let ok = lines
        .iter()
        .filter(|l| l.starts_with("task ") && l.contains("result=ok"))
        .count();
    // Each segment once (more only if the fake was so slow under load that
    // the broadcaster sent a segment again).
    assert!(ok >= 3, "{lines:?}");
    drop(fake);
}

/// Perceptual hashes through the pool: today's wire asks for them
/// (`calc_perceptual_hash`, made with Livepeer's own messages), the
/// orchestrator asks its remote transcoder, a spec-written one that hashes
/// with the ffmpeg CLI, and serves each hash part at the rendition's url +
/// `.phash`.
#[test]
fn perceptual_hashes_come_back_from_a_spec_written_transcoder_through_the_pool() {
    let hosts = Hosts::loopback(1);
    let world = World::new(1.0);
    let orchestrator = Orchestrator::start(&world, &hosts, 0);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/ot_transcoder.py");
    let fake = Command::new(python())
        .arg(script)
        .args(["--orch-addr", &orchestrator.addr()])
        .args(["--secret", SECRET, "--capacity", "1", "--perceptual-hash"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let _fake = Process(fake);
    orchestrator.wait_for_members(1);
    assert_eq!(hosts.address(0), "127.0.0.1");
    common::today::round_trip_with(orchestrator.port, &common::clip("h264_720p.ts"), true);
}

#[test]
fn the_orchestrator_side_meets_an_independent_checker_written_from_the_spec() {
    let hosts = Hosts::loopback(1);
    let world = World::new(1.0);
    let orchestrator = Orchestrator::start(&world, &hosts, 0);
    let without_pool = Orchestrator::start_with(
        &world,
        &hosts,
        0,
        &["--transcoder-uri", "https://localhost:9"],
    );
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/ot_orchestrator_checks.py");
    let mut checker = Command::new(python())
        .arg(script)
        .args(["--orch-addr", &orchestrator.addr()])
        .args(["--secret", SECRET, "--no-pool-addr", &without_pool.addr()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(checker.stdout.take().unwrap()).lines();
    let checker = Process(checker);
    let mut said = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        said.push(line.clone());
        assert!(!line.starts_with("FAIL"), "{said:#?}");
        if line == "waiting for a task" {
            break;
        }
    }
    assert_eq!(
        said.last().map(String::as_str),
        Some("waiting for a task"),
        "{said:#?}"
    );
    // One segment for the checker, which answers it with a broken body.
    let input = world.dir.path().join("clip.ts");
    make_clip(&input, 2);
    let job = world.job(PROFILES, 1_000_000);
    let out = world.dir.path().join("hls");
    let broadcaster = Process(broadcast(
        &world,
        &hosts,
        0,
        job,
        &orchestrator.uri(),
        &input,
        &out,
    ));
    for line in lines {
        let line = line.unwrap();
        said.push(line.clone());
        assert!(!line.starts_with("FAIL"), "{said:#?}");
    }
    println!("{}", said.join("\n"));
    assert_eq!(
        said.last().map(String::as_str),
        Some("orchestrator checks passed"),
        "{said:#?}"
    );
    let metrics = orchestrator.metrics();
    assert!(
        series(&metrics, "lpgpu_pool_tasks_total{result=\"member_error\"}") >= 1,
        "{metrics}"
    );
    assert!(
        series(
            &metrics,
            "lpgpu_pool_registrations_refused_total{reason=\"secret\"}"
        ) >= 2
    );
    drop((broadcaster, checker));
}

/// `/status` as a client reads it: the fields and their types.
fn check_status_schema(status: &serde_json::Value) {
    let object = |v: &serde_json::Value, what: &str| {
        assert!(v.is_object(), "{what} is not an object: {status}");
    };
    object(status, "the document");
    for (key, kind) in [
        ("role", "string"),
        ("version", "string"),
        ("ready", "bool"),
        ("backends", "array"),
        ("slots", "object"),
        ("gpus", "array"),
        ("last_minute", "object"),
        ("totals", "object"),
        ("realtime_ratio", "number"),
    ] {
        let v = &status[key];
        let ok = match kind {
            "string" => v.is_string(),
            "bool" => v.is_boolean(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            _ => v.is_number(),
        };
        assert!(ok, "{key} is not a {kind}: {status}");
    }
    for key in ["in_use", "total"] {
        assert!(status["slots"][key].is_number(), "slots.{key}: {status}");
    }
    for key in ["segments", "rejections"] {
        assert!(
            status["last_minute"][key].is_number(),
            "last_minute.{key}: {status}"
        );
    }
    assert!(status["last_minute"]["errors_by_code"].is_object());
}

#[test]
fn the_status_page_shows_the_pool_in_headless_chromium() {
    let hosts = Hosts::loopback(1);
    let world = World::new(1.0);
    let orchestrator = Orchestrator::start(&world, &hosts, 0);
    let _member = RemoteTranscoder::start(&orchestrator, &hosts, 0, SECRET, 2);
    orchestrator.wait_for_members(1);
    let status: serde_json::Value =
        serde_json::from_str(&hosts.http_get(0, &orchestrator.metrics, "/status")).unwrap();
    check_status_schema(&status);
    assert_eq!(status["role"], "orchestrator");
    assert_eq!(status["ready"], true);
    assert_eq!(status["pool"]["members"], 1.0);
    let member = status["pool"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["member"].as_str().unwrap().starts_with("rig-0@"))
        .unwrap_or_else(|| panic!("no rig-0 in {status}"));
    assert_eq!(member["capacity"], 2.0);

    let browser = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser.join("node_modules/playwright-core").exists()
            && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Debian's chromium and tests/browser's playwright-core: run .ci/setup"
    );
    let shot = world.dir.path().join("status.png");
    let out = Command::new("node")
        .arg(browser.join("status_page.mjs"))
        .arg(format!("http://{}/", orchestrator.metrics))
        .arg(&shot)
        .arg("rig-0@")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(said.trim()).unwrap();
    println!("{seen}");
    assert_eq!(seen["role"], "orchestrator");
    assert_eq!(seen["ready"], "ready");
    assert!(seen["pool"].as_str().unwrap().contains("rig-0@"), "{seen}");
    assert_eq!(seen["console_errors"], serde_json::json!([]), "{seen}");
    // A page with its cards drawn is tens of kilobytes; a blank one a few.
    assert!(
        seen["screenshot_bytes"].as_u64().unwrap() > 20_000,
        "{seen}"
    );
    assert!(std::fs::metadata(&shot).unwrap().len() > 20_000);
    if let Some(keep) = std::env::var_os("LPGPU_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}

/// Today's wire end to end on the farm: `lpgpu broadcast --orch-addr` (as a
/// go-livepeer gateway) → `lpgpu orchestrator --chain offchain
/// --orch-secret` → two `lpgpu transcoder` rigs, each on its own host; one
/// rig dies mid-stream and every segment of every stream still arrives.
#[test]
fn todays_wire_through_an_offchain_pool_loses_no_segment_when_a_rig_dies() {
    const RIGS: [usize; 2] = [1, 2];
    const STUDIO: usize = 3;
    let hosts = Hosts::new(4);
    println!(
        "hosts: {}",
        if hosts.isolated() {
            "network namespaces"
        } else {
            "loopback: namespaces not permitted here"
        }
    );
    let world = World::new(1.0);
    let orchestrator = Orchestrator::start_offchain(&hosts, ORCHESTRATOR_HOST);
    let mut members: Vec<RemoteTranscoder> = RIGS
        .iter()
        // Each rig can hold every stream: losing one leaves room for all.
        .map(|&rig| RemoteTranscoder::start(&orchestrator, &hosts, rig, SECRET, 3))
        .collect();
    orchestrator.wait_for_members(2);
    let input = world.dir.path().join("clip.ts");
    make_clip(&input, 16);
    let streams: Vec<(PathBuf, Child)> = (0..3)
        .map(|i| {
            let out = world.dir.path().join(format!("today-{i}"));
            let child = hosts
                .command(STUDIO, env!("CARGO_BIN_EXE_lpgpu"))
                .args(["broadcast", "--orch-addr", &orchestrator.addr()])
                .args(["--profiles", PROFILES, "--input"])
                .arg(&input)
                .arg("--out")
                .arg(&out)
                .env_remove("LPGPU_CONFIG")
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
            (out, child)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let victim = loop {
        if series(
            &orchestrator.metrics(),
            "lpgpu_pool_tasks_total{result=\"ok\"}",
        ) >= 3
            && let Some(i) = members.iter().position(|m| m.tasks_in_flight() > 0)
        {
            break i;
        }
        assert!(Instant::now() < deadline, "no member got to work");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut dead = members.remove(victim);
    let pid = dead.process.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(1000));
    dead.process.0.kill().unwrap();
    dead.process.0.wait().unwrap();
    for (out, child) in streams {
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}");
        assert!(stdout.contains("8 segments, 0 failed"), "{stdout}");
        check_renditions(&out, 8);
    }
    let metrics = orchestrator.metrics();
    assert_eq!(series(&metrics, "lpgpu_pool_members "), 1, "{metrics}");
    assert!(
        series(&metrics, "lpgpu_get_orchestrator_total{result=\"ok\"}") >= 3,
        "{metrics}"
    );
    assert!(series(&metrics, "lpgpu_pool_tasks_total{result=\"ok\"}") >= 24);
    assert!(
        series(&metrics, "lpgpu_pool_retries_total ") >= 1,
        "{metrics}"
    );
    drop(members);
}
