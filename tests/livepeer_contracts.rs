//! Livepeer's own protocol contracts (npm `@livepeer/sdk@1.0.1-alpha.10`'s
//! compiled artifacts) deployed on anvil by `lpgpu chain init --livepeer`,
//! then judged by their own code: the Controller names every contract and
//! is unpaused, the parameters are set, the deployer holds its development
//! LPT, and TicketBroker's `getTicketHash` gives the shared vectors' hashes.

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use alloy::primitives::{Address, Bytes, FixedBytes, U256};
use common::anvil::{Anvil, DEPLOYER};
use lpgpu::chain::livepeer::{DEV_LPT, abi, lookup};
use lpgpu::chain::{EthSpec, Ethereum};

fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(lpgpu::chain::livepeer::DEFAULT_ARTIFACTS)
}

fn lpgpu(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lpgpu"))
        .args(args)
        .current_dir(dir)
        .env("LPGPU_PASSWORD", "pw")
        .env_remove("LPGPU_CONFIG")
        .env_remove("LPGPU_LIVEPEER_ABIS")
        .output()
        .expect("running lpgpu")
}

fn vectors() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors/bo-vectors.json");
    serde_json::from_slice(&std::fs::read(&path).expect("../shared/vectors")).unwrap()
}

fn uint(value: &serde_json::Value) -> U256 {
    match value {
        serde_json::Value::String(text) => text.parse().unwrap(),
        number => U256::from(number.as_u64().unwrap()),
    }
}

#[test]
fn chain_init_deploys_livepeers_contracts_which_hash_tickets_as_the_vectors_do() {
    let mut anvil = Anvil::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("deployer.hex"), DEPLOYER).unwrap();
    let imported = lpgpu(
        dir.path(),
        &[
            "keys",
            "import",
            "--keystore",
            "deployer",
            "--private-key-file",
            "deployer.hex",
            "--light-kdf",
        ],
    );
    assert!(imported.status.success());
    let chain = format!("eth:{}", anvil.url);
    let abis = artifacts();
    let init = lpgpu(
        dir.path(),
        &[
            "chain",
            "init",
            "--chain",
            &chain,
            "--keystore",
            "deployer",
            "--livepeer",
            "--livepeer-abis",
            abis.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&init.stderr);
    assert!(init.status.success(), "{stderr}");
    let spec = String::from_utf8(init.stdout).unwrap().trim().to_string();
    assert!(
        spec.starts_with(&format!("{chain}?controller=0x")),
        "{spec}"
    );
    let parsed = EthSpec::parse(spec.strip_prefix("eth:").unwrap()).unwrap();
    let controller = Address::from(parsed.controller.unwrap().0);
    let deployer = Address::from(
        lpgpu::eth::PrivateKey::from_hex(DEPLOYER)
            .unwrap()
            .address()
            .0,
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let ethereum = Ethereum::new(parsed).unwrap();
        let provider = ethereum.provider().clone();
        let found = lookup(&provider, controller).await.unwrap();
        let registry = abi::Controller::new(controller, provider.clone());
        assert!(!registry.paused().call().await.unwrap(), "unpaused");
        assert_eq!(registry.owner().call().await.unwrap(), deployer);
        // The Minter takes ETH only from JobsManager: the broker is both.
        assert_eq!(
            registry
                .getContract(lpgpu::chain::livepeer::contract_id("JobsManager"))
                .call()
                .await
                .unwrap(),
            found.ticket_broker
        );
        assert_ne!(
            registry
                .getContract(lpgpu::chain::livepeer::contract_id("L2LPTDataCache"))
                .call()
                .await
                .unwrap(),
            Address::ZERO
        );
        let lpt = abi::LivepeerToken::new(found.token, provider.clone());
        assert_eq!(
            lpt.balanceOf(deployer).call().await.unwrap(),
            U256::from(DEV_LPT) * U256::from(10u64).pow(U256::from(18u64))
        );
        let rounds = abi::RoundsManager::new(found.rounds_manager, provider.clone());
        assert_eq!(rounds.roundLength().call().await.unwrap(), U256::from(50));
        let broker = abi::TicketBroker::new(found.ticket_broker, provider.clone());
        assert_eq!(
            broker.ticketValidityPeriod().call().await.unwrap(),
            U256::from(2)
        );
        // Livepeer's own getTicketHash judges the vectors' tickets.
        let vectors = vectors();
        let tickets = vectors["tickets"]["tickets"].as_array().unwrap();
        assert!(tickets.len() >= 3);
        for case in tickets {
            let t = &case["ticket"];
            let hex = |v: &serde_json::Value| {
                hex::decode(v.as_str().unwrap().trim_start_matches("0x")).unwrap()
            };
            let ticket = abi::TicketBroker::Ticket {
                recipient: t["recipient"].as_str().unwrap().parse().unwrap(),
                sender: t["sender"].as_str().unwrap().parse().unwrap(),
                faceValue: uint(&t["faceValue"]),
                winProb: uint(&t["winProb"]),
                senderNonce: uint(&t["senderNonce"]),
                recipientRandHash: FixedBytes::from_slice(&hex(&t["recipientRandHash"])),
                auxData: Bytes::from(hex(&t["auxData"])),
            };
            let hash = broker.getTicketHash(ticket).call().await.unwrap();
            assert_eq!(
                hash.as_slice(),
                hex(&case["ticket_hash"]).as_slice(),
                "{}",
                case["label"]
            );
        }
    });

    // Without the artifacts: a clear error naming the way to get them.
    let missing = lpgpu(
        dir.path(),
        &[
            "chain",
            "init",
            "--chain",
            &chain,
            "--keystore",
            "deployer",
            "--livepeer",
            "--livepeer-abis",
            "/nonexistent",
        ],
    );
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(stderr.contains(".ci/setup"), "{stderr}");
    anvil.stop();
}

/// Mines until the chain's head is the first block of the next round of
/// `round_length` (views read the head; transactions land after it).
fn mine_to_next_round(url: &str, round_length: u64) {
    use alloy::providers::Provider;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let provider = Ethereum::new(EthSpec::parse(url).unwrap())
            .unwrap()
            .provider()
            .clone();
        let head = provider.get_block_number().await.unwrap();
        let blocks = round_length - head % round_length;
        let _: serde_json::Value = provider
            .raw_request("anvil_mine".into(), (format!("0x{blocks:x}"),))
            .await
            .unwrap();
    });
}

/// The operator commands on Livepeer's contracts: each refusal said in
/// words before anything is sent (round not initialized, not enough LPT,
/// nothing to fund), then an orchestrator bonds and registers, a
/// broadcaster funds its deposit and reserve, and `status` reads back what
/// the contracts hold: active from the next round, the stake, the service
/// URI, the deposit and reserve.
#[test]
fn an_orchestrator_activates_and_a_sender_funds_with_the_protocol_commands() {
    let mut anvil = Anvil::start();
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = lpgpu(dir.path(), args);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let ok = |args: &[&str]| {
        let (success, stdout, stderr) = run(args);
        assert!(success, "{args:?}: {stderr}");
        stdout
    };
    let refused = |args: &[&str], says: &str| {
        let (success, _, stderr) = run(args);
        assert!(!success, "{args:?} was accepted");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    };
    for (name, key) in [
        ("orchestrator", DEPLOYER),
        ("broadcaster", common::anvil::BROADCASTER),
    ] {
        std::fs::write(dir.path().join(format!("{name}.hex")), key).unwrap();
        ok(&[
            "keys",
            "import",
            "--keystore",
            name,
            "--private-key-file",
            &format!("{name}.hex"),
            "--light-kdf",
        ]);
    }
    let abis = artifacts();
    let chain = ok(&[
        "chain",
        "init",
        "--chain",
        &format!("eth:{}", anvil.url),
        "--keystore",
        "orchestrator",
        "--livepeer",
        "--livepeer-abis",
        abis.to_str().unwrap(),
    ]);
    let as_orchestrator = |command: &str, extra: &[&str]| -> Vec<String> {
        [
            "protocol",
            command,
            "--chain",
            &chain,
            "--keystore",
            "orchestrator",
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
    };
    let activate = |stake: &str| {
        as_orchestrator(
            "activate",
            &["--service-uri", "https://127.0.0.1:8935", "--stake", stake],
        )
    };
    fn borrow(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    mine_to_next_round(&anvil.url, 50);
    refused(
        &borrow(&activate("100")),
        "run `lpgpu protocol round` first",
    );
    assert_eq!(
        ok(&borrow(&as_orchestrator("round", &[]))),
        "round 1 initialized"
    );
    assert_eq!(
        ok(&borrow(&as_orchestrator("round", &[]))),
        "round 1 was already initialized"
    );
    refused(&borrow(&activate("100000")), "not enough LPT");
    refused(&borrow(&activate("abc")), "--stake");
    ok(&borrow(&activate("100")));
    let fund = |extra: &[&str]| {
        let mut args = vec![
            "protocol",
            "fund",
            "--chain",
            &chain,
            "--keystore",
            "broadcaster",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let (funded, _, stderr) = fund(&[]);
    assert!(!funded && stderr.contains("nothing to fund"), "{stderr}");
    let (funded, _, stderr) = fund(&["--deposit", "1", "--reserve", "0.5"]);
    assert!(funded, "{stderr}");

    // Active from the round after registering.
    let status = |keystore: &str| -> serde_json::Value {
        serde_json::from_str(&ok(&[
            "protocol",
            "status",
            "--chain",
            &chain,
            "--keystore",
            keystore,
        ]))
        .unwrap()
    };
    let before = status("orchestrator");
    assert_eq!(before["registered"], true, "{before}");
    assert_eq!(before["active"], false, "{before}");
    mine_to_next_round(&anvil.url, 50);
    ok(&borrow(&as_orchestrator("round", &[])));
    let orchestrator = status("orchestrator");
    assert_eq!(orchestrator["active"], true, "{orchestrator}");
    assert_eq!(orchestrator["stake"], "100000000000000000000");
    assert_eq!(orchestrator["service_uri"], "https://127.0.0.1:8935");
    assert_eq!(orchestrator["round"]["current_round"], 2);
    let broadcaster = status("broadcaster");
    assert_eq!(
        broadcaster["deposit"], "1000000000000000000",
        "{broadcaster}"
    );
    assert_eq!(
        broadcaster["reserve"], "500000000000000000",
        "{broadcaster}"
    );
    assert_eq!(broadcaster["withdraw_round"], 0);
    anvil.stop();
}
