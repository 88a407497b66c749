//! GetTranscoder over real TLS and real gRPC: a tonic client with the
//! name-checking verifier against a node on loopback.

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

mod common;

use common::{RunningNode, World};
use lpgpu::eth::{PrivateKey, Signature};
use lpgpu::orchestrator::client::connect;
use lpgpu::proto::TranscoderRequest;
use lpgpu::protocol::decode_credentials;

fn request(job_id: i64, sig: Vec<u8>) -> TranscoderRequest {
    TranscoderRequest { job_id, sig }
}

#[tokio::test]
async fn get_transcoder_issues_credentials_and_refuses_each_bad_request() {
    let world = World::new(0.05);
    let job = world.job("P240p30fps16x9,P360p30fps16x9", 1_000_000);
    let expiring = world.job("P240p30fps16x9", 1);
    let stranger = PrivateKey::random();
    let not_ours = world.job_for(&stranger, "P240p30fps16x9", 1_000_000);
    let node = RunningNode::start(&world, "localhost").await;
    let mut client = connect(&node.uri).await.unwrap();

    let sign = |id: u64| world.broadcaster.sign(id.to_string().as_bytes()).to_vec();
    let info = client
        .get_transcoder(request(job as i64, sign(job)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.transcoder, node.uri);
    assert_eq!(info.auth_type, "Livepeer-Eth-1");
    assert_eq!(
        decode_credentials(&info.credentials, world.orchestrator.address()),
        Ok(job)
    );
    let mut profiles: Vec<_> = info.stream_ids.values().cloned().collect();
    profiles.sort();
    assert_eq!(profiles, ["P240p30fps16x9", "P360p30fps16x9"]);
    let stream_job = world.ledger.job_blocking(job).unwrap().unwrap();
    for id in info.stream_ids.keys() {
        assert_eq!(id[..64], stream_job.stream_id[..64]);
    }

    // 2018 nodes wrote v = 0/1: still accepted.
    let mut old_style = sign(job);
    old_style[64] -= 27;
    client
        .get_transcoder(request(job as i64, old_style))
        .await
        .unwrap();

    let refused = |code: tonic::Code, r: Result<tonic::Response<_>, tonic::Status>| {
        let status = r.expect_err("must be refused");
        assert_eq!(status.code(), code, "{status:?}");
        assert!(!status.message().is_empty());
    };
    // A stranger's signature.
    refused(
        tonic::Code::InvalidArgument,
        client
            .get_transcoder(request(
                job as i64,
                stranger.sign(job.to_string().as_bytes()).to_vec(),
            ))
            .await,
    );
    // A plain personal_sign (EIP-191 over the text, without the inner hash).
    let digest = lpgpu::eth::keccak256(
        [
            format!("\x19Ethereum Signed Message:\n{}", job.to_string().len()).as_bytes(),
            job.to_string().as_bytes(),
        ]
        .concat(),
    );
    let plain = world.broadcaster.sign_digest(&digest).to_vec();
    assert!(Signature::recover_digest(&digest, &plain).is_ok());
    refused(
        tonic::Code::InvalidArgument,
        client.get_transcoder(request(job as i64, plain)).await,
    );
    // A short signature, and none at all.
    refused(
        tonic::Code::InvalidArgument,
        client
            .get_transcoder(request(job as i64, sign(job)[..64].to_vec()))
            .await,
    );
    refused(
        tonic::Code::InvalidArgument,
        client.get_transcoder(request(job as i64, vec![])).await,
    );
    // The signature over another job id.
    refused(
        tonic::Code::InvalidArgument,
        client
            .get_transcoder(request(job as i64, sign(job + 1)))
            .await,
    );
    // An unknown job, a negative job id.
    refused(
        tonic::Code::NotFound,
        client.get_transcoder(request(999, sign(999))).await,
    );
    refused(
        tonic::Code::InvalidArgument,
        client.get_transcoder(request(-1, sign(1))).await,
    );
    // Another orchestrator's job.
    refused(
        tonic::Code::PermissionDenied,
        client
            .get_transcoder(request(not_ours as i64, sign(not_ours)))
            .await,
    );
    // A job past its endBlock (one block of 50 ms).
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    refused(
        tonic::Code::FailedPrecondition,
        client
            .get_transcoder(request(expiring as i64, sign(expiring)))
            .await,
    );

    // After all that, a good request still works.
    client
        .get_transcoder(request(job as i64, sign(job)))
        .await
        .unwrap();
    node.stop().await;
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    let world = World::new(1.0);
    let node = RunningNode::start(&world, "node.example").await;
    // Dial 127.0.0.1 (an IP SAN is expected) while the certificate names node.example.
    let wrong = format!("https://127.0.0.1:{}", node.addr.port());
    let error = connect(&wrong).await.expect_err("name mismatch must fail");
    let text = format!("{error:?}");
    assert!(text.contains("NotValidForName"), "{text}");
    node.stop().await;
}

#[tokio::test]
async fn an_ip_hostname_gets_an_ip_certificate() {
    let world = World::new(1.0);
    let job = world.job("P144p30fps16x9", 1000);
    let node = RunningNode::start(&world, "127.0.0.1").await;
    let mut client = connect(&node.uri).await.unwrap();
    let sig = world.broadcaster.sign(job.to_string().as_bytes()).to_vec();
    client
        .get_transcoder(request(job as i64, sig))
        .await
        .unwrap();
    node.stop().await;
}
