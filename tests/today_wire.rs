//! Today's broadcaster ↔ orchestrator wire (`spec/bo-protocol.md`) on a
//! real `lpgpu node --chain offchain`, judged by peers lpgpu did not write:
//! a go-livepeer-style gateway written from the spec alone
//! (`tests/interop/bo_gateway.py`: every refusal, their order, capacity,
//! URI bodies, a 2 MB early refusal over HTTP/2 and HTTP/1.1, back-to-back
//! and concurrent segments), and Livepeer's own generated messages and
//! `GetOrchestrator` client from PyPI's livepeer-gateway with curl.

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

mod common;

use std::process::{Command, Stdio};

use common::{Killed, first_line, today};

/// `lpgpu node --chain offchain --backend cpu` on loopback: no keystore,
/// no chain. Returns the process and its port.
fn offchain_node(max_sessions: &str) -> (Killed, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lpgpu"))
        .args(["node", "--chain", "offchain", "--hostname", "127.0.0.1"])
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .args(["--backend", "cpu", "--max-sessions", max_sessions])
        .env_remove("LPGPU_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting lpgpu node");
    let line = first_line(&mut child);
    assert!(line.contains("listening on"), "{line:?}");
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    (Killed(child), port)
}

#[test]
fn an_independent_gateway_passes_every_check_against_an_offchain_node() {
    let (_node, port) = offchain_node("2");
    let segment = common::clip("h264_720p.ts");
    let out = Command::new(today::python())
        .arg(today::script("bo_gateway.py"))
        .args(["checks", "--orch", &format!("127.0.0.1:{port}")])
        .arg("--segment")
        .arg(&segment)
        .args(["--max-sessions", "2"])
        .output()
        .expect("running bo_gateway.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success() && !stdout.contains("FAIL"),
        "bo_gateway.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.lines().filter(|l| l.starts_with("PASS")).count() >= 40);
}

#[test]
fn livepeers_own_code_discovers_the_node_and_reads_what_it_writes() {
    let (_node, port) = offchain_node("2");
    let (info, _) = today::round_trip(port, &common::clip("h264_720p.ts"));
    let message = &info["message"];
    assert_eq!(message["address"], "00".repeat(20));
    assert!(message.get("ticket_params").is_none(), "{info}");
    assert_eq!(message["capabilities"]["version"], "0.9.1");
    // livepeer-gateway's own discovery client (trust on first use).
    let found = today::livepeer_json(&["orch-info", "--orch", &format!("127.0.0.1:{port}")]);
    assert_eq!(
        found["message"]["transcoder"],
        format!("https://127.0.0.1:{port}")
    );
}

#[test]
fn an_offchain_node_refuses_the_2018_protocol_clearly() {
    let (_node, port) = offchain_node("1");
    let python = today::python();
    // GetTranscoder: UNAVAILABLE, saying why, from an independent client.
    let script = r#"
import grpc, ssl, sys
port = int(sys.argv[1])
cert = ssl.get_server_certificate(("127.0.0.1", port)).encode()
creds = grpc.ssl_channel_credentials(root_certificates=cert)
channel = grpc.secure_channel(f"127.0.0.1:{port}", creds, options=[("grpc.ssl_target_name_override", "127.0.0.1")])
call = channel.unary_unary("/net.Orchestrator/GetTranscoder", request_serializer=lambda b: b, response_deserializer=lambda b: b)
try:
    call(b"\x08\x01", timeout=10)
    print("answered")
except grpc.RpcError as e:
    print(e.code().name, e.details())
"#;
    let out = Command::new(&python)
        .args(["-c", script, &port.to_string()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with("UNAVAILABLE") && said.contains("offchain"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn lpgpu_bench_measures_a_remote_orchestrator_on_todays_wire() {
    let (_node, port) = offchain_node("2");
    let output = Command::new(env!("CARGO_BIN_EXE_lpgpu"))
        .args(["bench", "--orch-addr", &format!("127.0.0.1:{port}")])
        .arg("--input")
        .arg(common::clip("h264_360p_6s.ts"))
        .args(["--profiles", "P240p30fps16x9,P144p30fps16x9"])
        .args(["--segments", "3", "--concurrency", "2", "--json"])
        .env_remove("LPGPU_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["segments"], 6, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert!(report["realtime_ratio"].as_f64().unwrap() > 0.0);
    assert!(report["p95_ms"].as_f64().unwrap() >= report["p50_ms"].as_f64().unwrap());
}
