//! A paid lpgpu node on anvil with Livepeer's own contracts (npm
//! `@livepeer/sdk`'s bytecode), paid by an independent sender written from
//! the spec (`tests/interop/pm_sender.py`, eth-account): every segment paid,
//! each bad payment refused with go-livepeer's status and text, winning
//! tickets written down before the answer, and after `kill -9` a restart
//! that redeems them all on the TicketBroker, whose own state shows it (the
//! sender's deposit falls by the face values, the orchestrator's fees rise).

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::anvil::{Anvil, BROADCASTER, DEPLOYER};
use common::{Killed, first_line, free_port, today};

/// A third anvil account's key: never funded.
const UNFUNDED: &str = "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";

fn lpgpu(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_lpgpu"))
        .args(args)
        .current_dir(dir)
        .env("LPGPU_PASSWORD", "pw")
        .env_remove("LPGPU_CONFIG")
        .output()
        .expect("running lpgpu");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn rpc(url: &str, method: &str, params: serde_json::Value) -> serde_json::Value {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let out = Command::new("curl")
        .args(["-s", "-X", "POST", "-H", "content-type: application/json"])
        .arg("--data")
        .arg(body.to_string())
        .arg(url)
        .output()
        .expect("curl");
    serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("a JSON-RPC answer")["result"]
        .clone()
}

fn head(url: &str) -> u64 {
    let hex = rpc(url, "eth_blockNumber", serde_json::json!([]));
    u64::from_str_radix(hex.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// Mines until the head is the first block of a round (of 50 blocks).
fn mine_to_round(url: &str) {
    let blocks = 50 - head(url) % 50;
    rpc(
        url,
        "anvil_mine",
        serde_json::json!([format!("0x{blocks:x}")]),
    );
}

fn status(dir: &Path, chain: &str, keystore: &str) -> serde_json::Value {
    serde_json::from_str(&lpgpu(
        dir,
        &[
            "protocol",
            "status",
            "--chain",
            chain,
            "--keystore",
            keystore,
        ],
    ))
    .unwrap()
}

fn wei(value: &serde_json::Value) -> u128 {
    value.as_str().unwrap().parse().unwrap()
}

/// TicketBroker's own `usedTickets` says each stored ticket was redeemed.
fn assert_all_used(chain: &str, stored: &[serde_json::Value]) {
    use lpgpu::chain::livepeer::{abi, lookup};
    use lpgpu::orchestrator::today::redeemer::StoredTicket;
    let spec = lpgpu::chain::EthSpec::parse(chain.strip_prefix("eth:").unwrap()).unwrap();
    let controller = alloy::primitives::Address::from(spec.controller.unwrap().0);
    let ethereum = lpgpu::chain::Ethereum::new(spec).unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let provider = ethereum.provider().clone();
        let contracts = lookup(&provider, controller).await.unwrap();
        let broker = abi::TicketBroker::new(contracts.ticket_broker, provider);
        for value in stored {
            let ticket: StoredTicket = serde_json::from_value(value.clone()).unwrap();
            let (ticket, _, _) = ticket.ticket().unwrap();
            let hash = alloy::primitives::FixedBytes::from(ticket.hash());
            assert!(
                broker.usedTickets(hash).call().await.unwrap(),
                "ticket {} not used on chain",
                ticket.sender_nonce
            );
        }
    });
}

/// Mines past every stored ticket's expiration block, into a new round the
/// node initializes itself, and waits (at most 60 s) until the node has no
/// ticket left to redeem.
fn redeem_all(url: &str, node: &PaidNode, stored: &[serde_json::Value]) {
    let expiring = stored
        .iter()
        .map(|t| t["expiration_block"].as_u64().unwrap())
        .max()
        .unwrap();
    while head(url) < expiring {
        mine_to_round(url);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while node.metric("lpgpu_tickets_pending_redemption") > 0.0 {
        assert!(
            Instant::now() < deadline,
            "tickets still pending after 60 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

struct PaidNode {
    _process: Killed,
    port: u16,
    metrics: String,
}

impl PaidNode {
    /// A ticket of EV 1e12 wei at face value 2e12: half of them win, and
    /// go-livepeer's sender (which refuses face value = EV) pays them.
    fn start(dir: &Path, chain: &str, store: &Path) -> Self {
        Self::start_with(
            dir,
            chain,
            store,
            &["50000", "1000000000000", "2000000000000"],
        )
    }

    /// `[price per pixel, ticket EV, max face value]`.
    fn start_with(dir: &Path, chain: &str, store: &Path, pricing: &[&str; 3]) -> Self {
        let metrics = format!("127.0.0.1:{}", free_port());
        let mut child = Command::new(env!("CARGO_BIN_EXE_lpgpu"))
            .args(["node", "--chain", chain, "--keystore", "orchestrator"])
            .args(["--hostname", "127.0.0.1", "--listen", "127.0.0.1:0"])
            .args(["--metrics-listen", &metrics])
            .args(["--backend", "cpu", "--max-sessions", "10"])
            .args(["--price-per-unit", pricing[0], "--pixels-per-unit", "1"])
            .args(["--ticket-ev", pricing[1]])
            .args(["--max-face-value", pricing[2]])
            .arg("--initialize-round")
            .arg("--ticket-store")
            .arg(store)
            .current_dir(dir)
            .env("LPGPU_PASSWORD", "pw")
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
        Self {
            _process: Killed(child),
            port,
            metrics,
        }
    }

    fn metric(&self, name: &str) -> f64 {
        let out = Command::new("curl")
            .args(["-s", &format!("http://{}/metrics", self.metrics)])
            .output()
            .unwrap();
        common::metric(&String::from_utf8_lossy(&out.stdout), name)
    }
}

fn sender(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new(today::python())
        .arg(today::script("pm_sender.py"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running pm_sender.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Keys imported (orchestrator, broadcaster, unfunded), Livepeer's contracts
/// deployed, the orchestrator bonded and active, the broadcaster funded (1
/// ETH deposit, 1 ETH reserve): the chain spec and the deposit.
fn paid_chain(d: &Path, anvil: &Anvil) -> (String, u128) {
    for (name, key) in [
        ("orchestrator", DEPLOYER),
        ("broadcaster", BROADCASTER),
        ("unfunded", UNFUNDED),
    ] {
        let key = key.trim_start_matches("0x");
        std::fs::write(d.join(format!("{name}.hex")), key).unwrap();
        lpgpu(
            d,
            &[
                "keys",
                "import",
                "--keystore",
                name,
                "--private-key-file",
                &format!("{name}.hex"),
                "--light-kdf",
            ],
        );
    }
    let abis =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(lpgpu::chain::livepeer::DEFAULT_ARTIFACTS);
    let chain = lpgpu(
        d,
        &[
            "chain",
            "init",
            "--chain",
            &format!("eth:{}", anvil.url),
            "--keystore",
            "orchestrator",
            "--livepeer",
            "--livepeer-abis",
            abis.to_str().unwrap(),
        ],
    );
    let tx = |command: &str, keystore: &str, extra: &[&str]| {
        let mut args = vec![
            "protocol",
            command,
            "--chain",
            &chain,
            "--keystore",
            keystore,
        ];
        args.extend_from_slice(extra);
        lpgpu(d, &args)
    };
    mine_to_round(&anvil.url);
    tx("round", "orchestrator", &[]);
    tx(
        "activate",
        "orchestrator",
        &["--service-uri", "https://127.0.0.1:8935", "--stake", "100"],
    );
    tx("fund", "broadcaster", &["--deposit", "1", "--reserve", "1"]);
    mine_to_round(&anvil.url);
    tx("round", "orchestrator", &[]);
    assert_eq!(status(d, &chain, "orchestrator")["active"], true);
    let deposit_before = wei(&status(d, &chain, "broadcaster")["deposit"]);

    (chain, deposit_before)
}

#[test]
fn an_independent_sender_pays_bad_payments_are_refused_and_wins_survive_a_crash() {
    let mut anvil = Anvil::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (chain, deposit_before) = paid_chain(d, &anvil);
    let store = d.join("lpgpu-tickets.json");
    let node = PaidNode::start(d, &chain, &store);
    let segment = common::clip("h264_720p.ts");
    let orch = format!("127.0.0.1:{}", node.port);
    let (paid, report) = sender(
        &[
            "pay",
            "--orch",
            &orch,
            "--keyfile",
            "broadcaster.hex",
            "--segment",
            segment.to_str().unwrap(),
            "--segments",
            "5",
            "--max-price-per-unit",
            "100000",
        ],
        d,
    );
    assert!(paid, "{report}");
    assert_eq!(
        report.matches("status=200").count(),
        5,
        "every segment paid and answered: {report}"
    );
    let received = node.metric("lpgpu_tickets_total{outcome=\"received\"}");
    let winning = node.metric("lpgpu_tickets_total{outcome=\"winning\"}");
    assert!(received >= 5.0, "{received}");
    assert!(winning >= 1.0, "half of {received} tickets win; none did");
    assert!(node.metric("lpgpu_ticket_wei_total{outcome=\"debited\"}") > 0.0);
    // The sender's credit left, as the node counts it.
    assert!(
        node.metric(
            "lpgpu_payment_balance_wei{sender=\"0x70997970C51812dc3A010C7d01b50e0d17dc79C8\"}"
        ) > 0.0
    );

    let (refused, report) = sender(
        &[
            "bad",
            "--orch",
            &orch,
            "--keyfile",
            "broadcaster.hex",
            "--unfunded-keyfile",
            "unfunded.hex",
            "--segment",
            segment.to_str().unwrap(),
        ],
        d,
    );
    assert!(
        refused,
        "every bad payment gets go-livepeer's answer: {report}"
    );

    // Wins are on disk before they are redeemable (their params expire 40
    // blocks on): kill -9 now, and a restart redeems them.
    let stored: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&store).unwrap()).unwrap();
    assert!(
        stored.len() as f64 >= winning,
        "{} of {winning}",
        stored.len()
    );
    let face_values: u128 = stored.iter().map(|t| wei(&t["face_value"])).sum();
    drop(node);
    // Pending on the node's store, as `protocol status` reads it.
    let pending = status(d, &chain, "orchestrator");
    assert_eq!(
        pending["pending_winning_tickets"],
        stored.len(),
        "{pending}"
    );
    assert_eq!(wei(&pending["pending_face_value"]), face_values);
    let node = PaidNode::start(d, &chain, &store);
    redeem_all(&anvil.url, &node, &stored);
    let redeemed = node.metric("lpgpu_tickets_total{outcome=\"redeemed\"}");
    assert_eq!(redeemed as usize, stored.len(), "every stored win redeemed");
    let broadcaster = status(d, &chain, "broadcaster");
    assert_eq!(
        wei(&broadcaster["deposit"]),
        deposit_before - face_values,
        "the deposit paid each face value"
    );
    let orchestrator = status(d, &chain, "orchestrator");
    assert_eq!(wei(&orchestrator["pending_fees"]), face_values);
    assert_all_used(&chain, &stored);
    assert_eq!(
        status(d, &chain, "orchestrator")["pending_winning_tickets"],
        0
    );
    let left: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&store).unwrap()).unwrap();
    assert!(left.is_empty(), "{left:?}");
    drop(node);
    anvil.stop();
}

/// The "done when": `lpgpu node … --price-per-unit 1
/// --pixels-per-unit 1 --ticket-ev 1000000000000 --max-face-value
/// 1000000000000 --initialize-round` and `lpgpu broadcast --orch-addr …
/// --chain … --keystore … --max-price-per-unit 10` stream 10 s with every
/// segment paid (the node refuses any segment not paid for); every ticket
/// is a certain win (face value = EV), written down and, once past its
/// expiration, redeemed: the broadcaster's deposit on the TicketBroker falls
/// by the face values within a minute. A price over `--max-price-per-unit`
/// is refused before anything is sent.
#[test]
fn lpgpus_broadcaster_pays_every_segment_and_its_deposit_falls() {
    let mut anvil = Anvil::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (chain, deposit_before) = paid_chain(d, &anvil);
    let store = d.join("lpgpu-tickets.json");
    let node = PaidNode::start_with(d, &chain, &store, &["1", "1000000000000", "1000000000000"]);
    let input = d.join("ten.ts");
    let made = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=30",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "10",
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "60",
            "-c:a",
            "aac",
        ])
        .args(["-f", "mpegts"])
        .arg(&input)
        .status()
        .unwrap();
    assert!(made.success());
    let broadcast = |max_price: &str, out: &str| {
        Command::new(env!("CARGO_BIN_EXE_lpgpu"))
            .args([
                "broadcast",
                "--orch-addr",
                &format!("127.0.0.1:{}", node.port),
            ])
            .args(["--chain", &chain, "--keystore", "broadcaster"])
            .args(["--max-price-per-unit", max_price])
            .args(["--profiles", "P720p30fps16x9,P360p30fps16x9"])
            .arg("--input")
            .arg(&input)
            .args(["--out", out])
            .current_dir(d)
            .env("LPGPU_PASSWORD", "pw")
            .env_remove("LPGPU_CONFIG")
            .output()
            .unwrap()
    };
    let refused = broadcast("0", "refused");
    let stdout = String::from_utf8_lossy(&refused.stdout);
    assert!(!refused.status.success(), "{stdout}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("over --max-price-per-unit")
            || stdout.contains("over --max-price-per-unit"),
        "{stdout}{stderr}"
    );
    assert_eq!(
        node.metric("lpgpu_tickets_total{outcome=\"received\"}"),
        0.0
    );

    let paid = broadcast("10", "hls");
    let stdout = String::from_utf8_lossy(&paid.stdout);
    assert!(
        paid.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&paid.stderr)
    );
    assert!(stdout.contains("5 segments, 0 failed"), "{stdout}");
    // 1 wei a pixel: the first ticket (EV 1e12) pays for every segment.
    let received = node.metric("lpgpu_tickets_total{outcome=\"received\"}");
    assert!(received >= 1.0, "{received} tickets for 5 segments");
    assert_eq!(
        node.metric("lpgpu_tickets_total{outcome=\"winning\"}"),
        received,
        "face value = EV: every ticket wins"
    );
    assert_eq!(
        node.metric("lpgpu_payment_errors_total{reason=\"insufficient_balance\"}"),
        0.0
    );
    // /status says the same.
    let out = Command::new("curl")
        .args(["-s", &format!("http://{}/status", node.metrics)])
        .output()
        .unwrap();
    let board: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        board["payments"]["tickets"]["received"].as_f64(),
        Some(received),
        "{board}"
    );
    let stored: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&store).unwrap()).unwrap();
    assert_eq!(stored.len() as f64, received, "every win written down");
    let face_values: u128 = stored.iter().map(|t| wei(&t["face_value"])).sum();
    redeem_all(&anvil.url, &node, &stored);
    assert_eq!(
        wei(&status(d, &chain, "broadcaster")["deposit"]),
        deposit_before - face_values
    );
    drop(node);
    anvil.stop();
}
