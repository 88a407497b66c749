//! The `eth:` chain backend on a real Ethereum node: anvil (installed from npm
//! by .ci/setup into contracts/node_modules), one per test, so no two tests
//! share an account's nonce.

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::anvil::Anvil;
use common::{RunningNode, clip};
use lpgpu::broadcaster::{
    BroadcastOptions, Broadcaster, OrchestratorTarget, broadcast, segments_from,
};
use lpgpu::chain::{Chain, ChainAdmin, EthSpec, Ethereum, NewJob};
use lpgpu::eth::PrivateKey;
use lpgpu::orchestrator::client::connect;
use lpgpu::pipeline::segmenter::segment_file;
use lpgpu::proto::TranscoderRequest;
use lpgpu::protocol::{ManifestId, Profile, encode_transcoding_options, parse_profile_list};

use common::anvil::{BROADCASTER, DEPLOYER};

async fn mine(url: &str, blocks: u64) {
    let client = lpgpu_raw_rpc(
        url,
        "anvil_mine",
        serde_json::json!([format!("0x{blocks:x}")]),
    )
    .await;
    assert!(client.get("error").is_none(), "{client}");
}

/// One JSON-RPC call over plain HTTP/1.1 (hyper), independent of alloy.
async fn lpgpu_raw_rpc(url: &str, method: &str, params: serde_json::Value) -> serde_json::Value {
    use http_body_util::{BodyExt, Full};
    let address = url.strip_prefix("http://").unwrap();
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        .to_string();
    let request = http::Request::post("/")
        .header("host", address)
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_protocol_end_to_end_on_anvil() {
    let mut anvil = Anvil::start();
    let orchestrator = PrivateKey::from_hex(DEPLOYER).unwrap();
    let broadcaster = PrivateKey::from_hex(BROADCASTER).unwrap();
    let spec = Ethereum::deploy(&anvil.url, &orchestrator, &Default::default())
        .await
        .unwrap();
    assert!(spec.jobs.is_some() && spec.registry.is_some());
    let chain =
        Arc::new(Ethereum::new(EthSpec::parse(&spec.render()["eth:".len()..]).unwrap()).unwrap());

    let node = RunningNode::start_on(chain.clone(), orchestrator.clone(), "localhost", |c| {
        c.max_sessions = 2
    })
    .await;
    chain
        .set_service_uri(&orchestrator, &node.uri)
        .await
        .unwrap();
    assert_eq!(
        chain
            .service_uri(orchestrator.address())
            .await
            .unwrap()
            .as_deref(),
        Some(node.uri.as_str())
    );
    assert_eq!(
        chain.service_uri(broadcaster.address()).await.unwrap(),
        None
    );

    let profiles: Vec<Profile> = parse_profile_list("P240p30fps16x9,P144p30fps16x9").unwrap();
    let stream_id = ManifestId::random().stream_id(&Profile::by_name("P720p30fps16x9").unwrap());
    let new_job = NewJob {
        stream_id: stream_id.clone(),
        transcoding_options: encode_transcoding_options(&profiles),
        transcoder: orchestrator.address(),
        blocks: 50,
    };
    let job_id = chain.create_job(&broadcaster, new_job).await.unwrap();
    assert_eq!(job_id, 0);
    let job = chain
        .job(job_id)
        .await
        .unwrap()
        .expect("the job is on chain");
    assert_eq!(
        (job.stream_id.as_str(), job.broadcaster, job.transcoder),
        (
            stream_id.as_str(),
            broadcaster.address(),
            orchestrator.address()
        )
    );
    // `job new --blocks 50` means endBlock = the block it read + 50; the
    // transaction itself lands in the next block.
    assert_eq!(job.end_block, job.creation_block - 1 + 50);
    assert_eq!(chain.job(7).await.unwrap(), None);

    // GetTranscoder, then a whole broadcast found through the registry.
    let mut client = connect(&node.uri).await.unwrap();
    let sig = broadcaster.sign(b"0").to_vec();
    client
        .get_transcoder(TranscoderRequest {
            job_id: 0,
            sig: sig.clone(),
        })
        .await
        .unwrap();
    let client_broadcaster = Broadcaster::connect(
        chain.as_ref(),
        job_id,
        Arc::new(broadcaster.clone()),
        OrchestratorTarget::Address(orchestrator.address()),
        BroadcastOptions::default(),
    )
    .await
    .unwrap();
    let segments = segment_file(&clip("h264_360p_6s.ts"), 2.0).unwrap();
    let out = tempfile::tempdir().unwrap();
    let summary = broadcast(
        Arc::new(client_broadcaster),
        segments_from(segments),
        out.path(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!((summary.segments, summary.renditions), (3, 6), "{summary}");
    assert!(summary.all_delivered(), "{summary}");

    // Mined past endBlock: the job has expired.
    mine(&anvil.url, 100).await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // the block number is cached for 1 s
    let status = client
        .get_transcoder(TranscoderRequest {
            job_id: 0,
            sig: sig.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");

    // The RPC node disappears: clear, retryable errors; the node stays up.
    anvil.stop();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let status = client
        .get_transcoder(TranscoderRequest { job_id: 0, sig })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    node.stop().await;
}

#[test]
fn the_chain_commands_work_on_eth_as_on_the_ledger() {
    let anvil = Anvil::start();
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_lpgpu"))
            .args(args)
            .current_dir(dir.path())
            .env("LPGPU_PASSWORD", "pw")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    for (name, key) in [("orchestrator", DEPLOYER), ("broadcaster", BROADCASTER)] {
        std::fs::write(dir.path().join(format!("{name}.hex")), key).unwrap();
        let file = format!("{name}.hex");
        run(&[
            "keys",
            "import",
            "--keystore",
            name,
            "--private-key-file",
            &file,
            "--light-kdf",
        ]);
    }
    let orchestrator = run(&["keys", "show", "--keystore", "orchestrator"]);
    let spec = run(&[
        "chain",
        "init",
        "--chain",
        &format!("eth:{}", anvil.url),
        "--keystore",
        "orchestrator",
    ]);
    assert!(
        spec.starts_with(&format!("eth:{}?jobs=0x", anvil.url)) && spec.contains("&registry=0x"),
        "{spec}"
    );
    run(&[
        "registry",
        "set",
        "--chain",
        &spec,
        "--keystore",
        "orchestrator",
        "--uri",
        "https://node.example:8935",
    ]);
    assert_eq!(
        run(&["registry", "get", "--chain", &spec, &orchestrator]),
        "https://node.example:8935"
    );
    let job = run(&[
        "job",
        "new",
        "--chain",
        &spec,
        "--keystore",
        "broadcaster",
        "--transcoder",
        &orchestrator,
        "--profiles",
        "P360p30fps16x9,P240p30fps16x9",
        "--blocks",
        "100",
    ]);
    assert_eq!(job, "0");
    let shown: serde_json::Value =
        serde_json::from_str(&run(&["job", "show", "--chain", &spec, "0"])).unwrap();
    assert_eq!(shown["transcoder"], orchestrator.as_str());
    assert_eq!(shown["transcodingOptions"], "93c717e7c0a6517a");
    assert_eq!(
        shown["profiles"],
        serde_json::json!(["P360p30fps16x9", "P240p30fps16x9"])
    );
    let (creation, end) = (
        shown["creationBlock"].as_u64().unwrap(),
        shown["endBlock"].as_u64().unwrap(),
    );
    assert_eq!(end + 1, creation + 100);
}

/// A TLS terminator in front of anvil, with a certificate for `localhost`
/// issued by a CA of the test's own: what hosted Ethereum providers look
/// like to lpgpu (HTTPS), with a private CA lpgpu must be told about.
struct TlsTerminator {
    port: u16,
    ca_pem: String,
    task: tokio::task::JoinHandle<()>,
}

impl TlsTerminator {
    async fn start(anvil_url: &str) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "lpgpu test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        lpgpu::tls::install_crypto_provider();
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone(), ca.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let backend = anvil_url.strip_prefix("http://").unwrap().to_string();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let backend = backend.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(&backend).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                });
            }
        });
        Self {
            port,
            ca_pem: ca.pem(),
            task,
        }
    }
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_json_rpc_endpoint_is_trusted_through_the_system_roots_or_rpc_ca() {
    let anvil = Anvil::start();
    let terminator = TlsTerminator::start(&anvil.url).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &terminator.ca_pem).unwrap();
    let https = format!("https://localhost:{}", terminator.port);
    let tls = lpgpu::chain::RpcTls::with_ca_file(&ca_file).unwrap();
    let deployer = PrivateKey::from_hex(DEPLOYER).unwrap();

    // With the CA: deploy, create a job, read it back, all over HTTPS.
    let spec = Ethereum::deploy(&https, &deployer, &tls).await.unwrap();
    assert!(spec.url.starts_with("https://"));
    let chain = Ethereum::with_tls(spec.clone(), &tls).unwrap();
    let job = chain
        .create_job(
            &PrivateKey::from_hex(BROADCASTER).unwrap(),
            NewJob {
                stream_id: ManifestId::random()
                    .stream_id(&Profile::by_name("P720p30fps16x9").unwrap()),
                transcoding_options: encode_transcoding_options(
                    &parse_profile_list("P240p30fps16x9").unwrap(),
                ),
                transcoder: deployer.address(),
                blocks: 100,
            },
        )
        .await
        .unwrap();
    assert!(chain.job(job).await.unwrap().is_some());

    // Through the binary: `--rpc-ca` is a flag of every command with --chain.
    let show = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_lpgpu"))
            .args(["job", "show", "--chain", &spec.render(), &job.to_string()])
            .args(extra)
            .env_remove("LPGPU_CONFIG")
            .output()
            .unwrap()
    };
    let trusted = show(&["--rpc-ca", ca_file.to_str().unwrap()]);
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    assert!(String::from_utf8_lossy(&trusted.stdout).contains("P240p30fps16x9"));
    // Without the CA the system's roots do not know it: a clear error.
    let untrusted = show(&[]);
    assert!(!untrusted.status.success());
    let error = String::from_utf8_lossy(&untrusted.stderr).to_lowercase();
    assert!(
        error.contains("certificate") || error.contains("issuer"),
        "{error}"
    );
    // A file that holds no certificate is refused before anything is dialled.
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate").unwrap();
    let refused = show(&["--rpc-ca", bogus.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--rpc-ca"));
}
