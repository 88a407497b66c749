//! The real binary driven as a user would (keys, ledger, jobs, registry, node),
//! checked by an independent client: Python grpcio + eth-account
//! (`tests/interop/`, installed into `.venv` by `.ci/setup`).

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const PASSWORD: &str = "interop password";

fn lpgpu(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lpgpu"))
        .args(args)
        .current_dir(dir)
        .env("LPGPU_PASSWORD", PASSWORD)
        .env_remove("LPGPU_CONFIG")
        .output()
        .expect("running lpgpu")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = lpgpu(dir, args);
    assert!(
        out.status.success(),
        "lpgpu {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn python() -> PathBuf {
    let python = std::env::var_os("LPGPU_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3"));
    let check = Command::new(&python)
        .args(["-c", "import grpc, grpc_tools, eth_account"])
        .output();
    match check {
        Ok(out) if out.status.success() => python,
        _ => panic!(
            "{} cannot import grpcio/eth-account: run .ci/setup (or set LPGPU_PYTHON) first",
            python.display()
        ),
    }
}

/// Runs an interop client script on `spec` and checks it reports `passed`.
fn run_client(python: &Path, name: &str, spec: &Path, passed: &str) {
    let out = Command::new(python)
        .arg(script(name))
        .arg(spec)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains(passed),
        "{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

struct Node(Child);

impl Node {
    /// Starts `lpgpu node` on port 0 and reads the port from its stdout line.
    fn start(dir: &Path, hostname: &str) -> (Self, u16, String) {
        Self::spawn(
            dir,
            &["node", "--hostname", hostname, "--keystore", "orchestrator"],
        )
    }

    /// Starts `lpgpu ARGS… --listen 127.0.0.1:0 --chain ledger:ledger.json`.
    fn spawn(dir: &Path, args: &[&str]) -> (Self, u16, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lpgpu"))
            .args(args)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--chain",
                "ledger:ledger.json",
            ])
            .current_dir(dir)
            .env("LPGPU_PASSWORD", PASSWORD)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting lpgpu node");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "lpgpu node listening on 127.0.0.1:PORT as https://HOST:PORT"
        let uri = line
            .split_whitespace()
            .last()
            .expect("a listening line")
            .to_string();
        let port = uri.rsplit(':').next().unwrap().parse().expect("a port");
        (Self(child), port, uri)
    }

    /// SIGTERM, then the node must exit 0 (graceful shutdown).
    fn stop(mut self) {
        let pid = self.0.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = self.0.wait().unwrap();
        assert!(status.success(), "node exited with {status}");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

#[test]
fn an_independent_client_gets_credentials_and_is_refused_for_bad_requests() {
    let python = python();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let orchestrator = ok(
        dir,
        &["keys", "new", "--keystore", "orchestrator", "--light-kdf"],
    );
    let broadcaster = ok(
        dir,
        &["keys", "new", "--keystore", "broadcaster", "--light-kdf"],
    );
    assert_eq!(
        ok(dir, &["keys", "show", "--keystore", "orchestrator"]),
        orchestrator
    );
    assert_eq!(
        ok(
            dir,
            &[
                "chain",
                "init",
                "--chain",
                "ledger:ledger.json",
                "--block-seconds",
                "0.1"
            ]
        ),
        "ledger:ledger.json"
    );
    let new_job = |profiles: &str, blocks: &str| {
        ok(
            dir,
            &[
                "job",
                "new",
                "--chain",
                "ledger:ledger.json",
                "--keystore",
                "broadcaster",
                "--transcoder",
                &orchestrator,
                "--profiles",
                profiles,
                "--blocks",
                blocks,
            ],
        )
    };
    let good: u64 = new_job("P360p30fps16x9,P240p30fps16x9", "1000000")
        .parse()
        .unwrap();
    let expired: u64 = new_job("P240p30fps16x9", "1").parse().unwrap();
    let shown: serde_json::Value = serde_json::from_str(&ok(
        dir,
        &[
            "job",
            "show",
            "--chain",
            "ledger:ledger.json",
            &good.to_string(),
        ],
    ))
    .unwrap();
    assert_eq!(shown["id"], good);
    assert_eq!(shown["broadcaster"], broadcaster.as_str());
    assert_eq!(shown["transcoder"], orchestrator.as_str());
    assert_eq!(shown["transcodingOptions"], "93c717e7c0a6517a");
    assert_eq!(
        shown["profiles"],
        serde_json::json!(["P360p30fps16x9", "P240p30fps16x9"])
    );
    let stream_id = shown["streamId"].as_str().unwrap().to_string();

    let (node, port, uri) = Node::start(dir, "localhost");
    assert_eq!(uri, format!("https://localhost:{port}"));
    ok(
        dir,
        &[
            "registry",
            "set",
            "--chain",
            "ledger:ledger.json",
            "--keystore",
            "orchestrator",
            "--uri",
            &uri,
        ],
    );
    assert_eq!(
        ok(
            dir,
            &[
                "registry",
                "get",
                "--chain",
                "ledger:ledger.json",
                &orchestrator
            ]
        ),
        uri
    );
    std::thread::sleep(Duration::from_millis(300)); // let the one-block job expire

    let keyfile = std::fs::read_dir(dir.join("broadcaster"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let spec = serde_json::json!({
        "proto_dir": Path::new(env!("CARGO_MANIFEST_DIR")).join("proto"),
        "host": "127.0.0.1", "port": port, "hostname": "localhost", "service_uri": uri,
        "broadcaster_keyfile": keyfile, "password": PASSWORD, "broadcaster": broadcaster,
        "orchestrator": orchestrator, "job_id": good, "expired_job_id": expired, "unknown_job_id": 4242,
        "profiles": ["P360p30fps16x9", "P240p30fps16x9"], "manifest_id": &stream_id[..64],
    });
    let spec_path = dir.join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    run_client(
        &python,
        "get_transcoder.py",
        &spec_path,
        "interop: all checks passed",
    );

    // The same independent client posts a real segment over HTTP/2.
    let mut spec = spec;
    spec["segment"] = serde_json::json!(common::clip("h264_720p.ts"));
    spec["stream_id"] = serde_json::json!(stream_id);
    spec["source_frames"] = serde_json::json!(60);
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    run_client(
        &python,
        "post_segment.py",
        &spec_path,
        "segments: all checks passed",
    );

    // One node, one port, both generations: today's wire on the same node,
    // every message made and read by Livepeer's own code. On a chain the
    // node names its own address.
    let (info, result) = common::today::round_trip(port, &common::clip("h264_720p.ts"));
    assert_eq!(
        info["message"]["address"],
        orchestrator.trim_start_matches("0x").to_lowercase()
    );
    assert_eq!(
        result["message"]["data"]["sig"].as_str().map(str::len),
        Some(130),
        "results are signed on a chain: {result}"
    );
    node.stop();
}

#[test]
fn orchestrator_and_transcoder_run_as_separate_processes() {
    let python = python();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let orchestrator = ok(
        dir,
        &["keys", "new", "--keystore", "orchestrator", "--light-kdf"],
    );
    let broadcaster = ok(
        dir,
        &["keys", "new", "--keystore", "broadcaster", "--light-kdf"],
    );
    ok(dir, &["chain", "init", "--chain", "ledger:ledger.json"]);
    let job = ok(
        dir,
        &[
            "job",
            "new",
            "--chain",
            "ledger:ledger.json",
            "--keystore",
            "broadcaster",
            "--transcoder",
            &orchestrator,
            "--profiles",
            "P360p30fps16x9",
        ],
    );
    let stream_id = serde_json::from_str::<serde_json::Value>(&ok(
        dir,
        &["job", "show", "--chain", "ledger:ledger.json", &job],
    ))
    .unwrap()["streamId"]
        .as_str()
        .unwrap()
        .to_string();
    // The transcoder holds no key of the orchestrator's: it checks credentials
    // against the orchestrator's address and signs nothing.
    let (transcoder, _, transcoder_uri) = Node::spawn(
        dir,
        &[
            "transcoder",
            "--hostname",
            "localhost",
            "--orchestrator-address",
            &orchestrator,
        ],
    );
    let (orchestrator_process, port, _) = Node::spawn(
        dir,
        &[
            "orchestrator",
            "--hostname",
            "localhost",
            "--keystore",
            "orchestrator",
            "--transcoder-uri",
            &transcoder_uri,
        ],
    );
    let keyfile = std::fs::read_dir(dir.join("broadcaster"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let spec = serde_json::json!({
        "proto_dir": Path::new(env!("CARGO_MANIFEST_DIR")).join("proto"),
        "host": "127.0.0.1", "port": port, "hostname": "localhost",
        "broadcaster_keyfile": keyfile, "password": PASSWORD, "broadcaster": broadcaster,
        "orchestrator": orchestrator, "job_id": job.parse::<u64>().unwrap(), "profiles": ["P360p30fps16x9"],
        "segment": common::clip("h264_720p.ts"), "stream_id": stream_id, "source_frames": 60,
        "unsigned_results": true,
    });
    let spec_path = dir.join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    run_client(
        &python,
        "post_segment.py",
        &spec_path,
        "segments: all checks passed",
    );
    orchestrator_process.stop();
    transcoder.stop();
}

#[test]
fn keystores_written_by_eth_account_unlock() {
    let python = python();
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(&python)
        .arg(script("make_keystores.py"))
        .arg(tmp.path())
        .arg(PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addresses: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for kdf in ["scrypt", "pbkdf2"] {
        // With the password: decrypts (scrypt n=2^18 r=1 p=8, pbkdf2 c=1000000).
        let shown = ok(tmp.path(), &["keys", "show", "--keystore", kdf]);
        assert_eq!(shown, addresses[kdf].as_str().unwrap(), "{kdf}");
        let wrong = Command::new(env!("CARGO_BIN_EXE_lpgpu"))
            .args(["keys", "show", "--keystore", kdf])
            .current_dir(tmp.path())
            .env("LPGPU_PASSWORD", "wrong")
            .output()
            .unwrap();
        assert!(!wrong.status.success());
        assert!(String::from_utf8_lossy(&wrong.stderr).contains("wrong password"));
    }
}

#[test]
fn imported_keys_keep_their_address_and_bad_input_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The vectors' key, whose address is known independently.
    std::fs::write(
        dir.join("key.hex"),
        "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318\n",
    )
    .unwrap();
    let address = ok(
        dir,
        &[
            "keys",
            "import",
            "--keystore",
            "k",
            "--private-key-file",
            "key.hex",
            "--light-kdf",
        ],
    );
    assert_eq!(address, "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23");
    std::fs::write(dir.join("pw"), format!("{PASSWORD}\n")).unwrap();
    let shown = Command::new(env!("CARGO_BIN_EXE_lpgpu"))
        .args(["keys", "show", "--keystore", "k", "--password-file", "pw"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&shown.stdout).trim(), address);
    // The private key never reaches stdout or stderr.
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&shown.stdout),
        String::from_utf8_lossy(&shown.stderr)
    );
    assert!(!all.contains("4c0883a6"), "{all}");

    let fails = |args: &[&str], needle: &str| {
        let out = lpgpu(dir, args);
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    };
    fails(
        &["job", "show", "--chain", "ledger:missing.json", "0"],
        "does not exist",
    );
    std::fs::write(dir.join("corrupt.json"), "{\"format\": 1").unwrap();
    fails(
        &["job", "show", "--chain", "ledger:corrupt.json", "0"],
        "corrupt",
    );
    fails(
        &["keys", "show", "--keystore", "nothing-here"],
        "no keystore file",
    );
    fails(
        &[
            "job",
            "new",
            "--chain",
            "ledger:corrupt.json",
            "--keystore",
            "k",
            "--transcoder",
            &address,
            "--profiles",
            "P9",
        ],
        "unknown profile",
    );
    fails(
        &[
            "node",
            "--hostname",
            "bad host",
            "--keystore",
            "k",
            "--listen",
            "127.0.0.1:0",
        ],
        "hostname",
    );
    fails(
        &["chain", "init", "--chain", "eth:http://127.0.0.1:1"],
        "give --keystore",
    );
    std::fs::write(dir.join("c.toml"), "[node]\nlisten_typo = 1\n").unwrap();
    fails(&["--config", "c.toml", "node"], "not a flag");
}
