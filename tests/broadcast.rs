//! `lpgpu broadcast` end to end: a real node on loopback, the real binary
//! broadcasting, the HLS ladder checked with ffprobe; and delivery that waits
//! out a busy node.

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::{RunningNode, World, clip, probe};
use lpgpu::eth::keystore::{KdfStrength, KeystoreDir};

const PROFILES: &str = "P240p30fps16x9,P144p30fps16x9";

fn broadcaster_keystore(world: &World) -> std::path::PathBuf {
    let dir = world.dir.path().join("broadcaster");
    if !dir.exists() {
        KeystoreDir::new(&dir)
            .create(&world.broadcaster, b"pw", KdfStrength::Light)
            .unwrap();
    }
    dir
}

/// `lpgpu broadcast` for our broadcaster's job, reaching the orchestrator by `target`.
fn broadcast_command(world: &World, job: u64, target: &[&str], input: &str, out: &Path) -> Command {
    let keystore = broadcaster_keystore(world);
    let ledger = format!("ledger:{}", world.ledger_path().display());
    let mut command = Command::new(env!("CARGO_BIN_EXE_lpgpu"));
    command
        .args([
            "broadcast",
            "--job",
            &job.to_string(),
            "--keystore",
            keystore.to_str().unwrap(),
            "--chain",
            &ledger,
        ])
        .args(target)
        .args(["--input", input, "--out", out.to_str().unwrap()])
        .env("LPGPU_PASSWORD", "pw");
    command
}

fn broadcast(world: &World, job: u64, target: &[&str], out: &Path) -> std::process::Output {
    broadcast_command(
        world,
        job,
        target,
        clip("h264_360p_6s.ts").to_str().unwrap(),
        out,
    )
    .output()
    .unwrap()
}

fn check_ladder(out: &Path, stream_id: &str) {
    let manifest = &stream_id[..64];
    let master = std::fs::read_to_string(out.join(format!("{manifest}.m3u8"))).unwrap();
    assert_eq!(master.matches("#EXT-X-STREAM-INF").count(), 2, "{master}");
    assert!(
        master.contains("RESOLUTION=426x240") && master.contains("RESOLUTION=256x144"),
        "{master}"
    );
    for (profile, width, height) in [("P240p30fps16x9", 426, 240), ("P144p30fps16x9", 256, 144)] {
        let media = std::fs::read_to_string(out.join(format!("{manifest}{profile}.m3u8"))).unwrap();
        assert!(media.trim_end().ends_with("#EXT-X-ENDLIST"), "{media}");
        let entries: Vec<(f64, &str)> = media
            .lines()
            .zip(media.lines().skip(1))
            .filter_map(|(tag, uri)| {
                tag.strip_prefix("#EXTINF:")
                    .map(|d| (d.trim_end_matches(',').parse().unwrap(), uri))
            })
            .collect();
        assert_eq!(entries.len(), 3, "three segments per rendition:\n{media}");
        let mut total = 0.0;
        for (seq, (seconds, uri)) in entries.iter().enumerate() {
            assert_eq!(*uri, format!("{manifest}{profile}_{seq}.ts"));
            assert!((seconds - 2.0).abs() < 0.05, "{seconds}");
            let (codec, w, h, probed) = probe(&std::fs::read(out.join(uri)).unwrap());
            assert_eq!((codec.as_str(), w, h), ("h264", width, height));
            total += probed;
        }
        assert!((total - 6.0).abs() < 0.3, "{profile}: {total} s");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_6_second_file_becomes_three_segments_per_rendition() {
    let world = World::new(1.0);
    let job = world.job(PROFILES, 1_000_000);
    let node = RunningNode::start(&world, "localhost").await;
    // Found through the service registry, as the spec's broadcaster does.
    world
        .ledger
        .set_service_uri_blocking(world.orchestrator.address(), &node.uri)
        .unwrap();
    let out = world.dir.path().join("hls");
    let address = world.orchestrator.address().to_string();
    let output = tokio::task::block_in_place(|| {
        broadcast(&world, job, &["--orchestrator-address", &address], &out)
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("3 segments, 0 failed, 6 renditions"),
        "{stdout}"
    );
    check_ladder(
        &out,
        &world.ledger.job_blocking(job).unwrap().unwrap().stream_id,
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delivery_waits_out_a_busy_node_and_recovers() {
    let world = World::new(1.0);
    let job = world.job(PROFILES, 1_000_000);
    let node = RunningNode::start_with(&world, "localhost", |c| c.max_sessions = 1).await;

    // Another client holds the only slot with a body that stalls for 2 s.
    let stream_id = world.ledger.job_blocking(job).unwrap().unwrap().stream_id;
    let header = lpgpu::protocol::encode_segment_header(&lpgpu::protocol::SegmentHeader::sign(
        &world.broadcaster,
        &stream_id,
        99,
        lpgpu::eth::keccak256(b"never sent"),
    ));
    let (sender, receiver) =
        tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::convert::Infallible>>(1);
    let stalled = http::Request::post("https://localhost/segment")
        .header("authorization", "Livepeer-Eth-1")
        .header(
            "credentials",
            lpgpu::protocol::mint_credentials(&world.orchestrator, job),
        )
        .header("livepeer-segment", header)
        .header("content-type", "video/MP2T")
        .body(http_body_util::StreamBody::new(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        ))
        .unwrap();
    let addr = node.addr;
    let holder =
        tokio::spawn(async move { common::https_request(addr, "localhost", b"h2", stalled).await });
    sender
        .send(Ok(http_body::Frame::data(Bytes::from_static(&[0x47; 188]))))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(sender);
    });

    let out = world.dir.path().join("hls");
    let uri = node.uri.clone();
    let output =
        tokio::task::block_in_place(|| broadcast(&world, job, &["--orchestrator", &uri], &out));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("3 segments, 0 failed"), "{stdout}");
    release.await.unwrap();
    assert_eq!(holder.await.unwrap().0, 403); // the stalled body never matched its hash
    let metrics = node.transcoder.metrics().render();
    assert!(
        metrics.contains("lpgpu_rejections_total{code=\"busy\"}"),
        "the node was busy at first:\n{metrics}"
    );
    check_ladder(&out, &stream_id);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_segment_that_fails_for_good_is_reported_and_skipped() {
    let world = World::new(1.0);
    let job = world.job(PROFILES, 1_000_000);
    let node = RunningNode::start(&world, "localhost").await;
    // An m3u8 input whose middle segment has no video.
    let input = world.dir.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    for (name, source) in [
        ("a.ts", "h264_720p.ts"),
        ("b.ts", "audio_only.ts"),
        ("c.ts", "h264_720p.ts"),
    ] {
        std::fs::copy(clip(source), input.join(name)).unwrap();
    }
    std::fs::write(
        input.join("in.m3u8"),
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\na.ts\n#EXTINF:2.0,\nb.ts\n#EXTINF:2.0,\nc.ts\n#EXT-X-ENDLIST\n",
    )
    .unwrap();
    let out = world.dir.path().join("hls");
    let playlist = input.join("in.m3u8");
    let output = tokio::task::block_in_place(|| {
        broadcast_command(
            &world,
            job,
            &["--orchestrator", &node.uri],
            playlist.to_str().unwrap(),
            &out,
        )
        .output()
        .unwrap()
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !output.status.success(),
        "a lost segment must fail the command"
    );
    assert!(
        stdout.contains("3 segments, 1 failed, 4 renditions"),
        "{stdout}"
    );
    assert!(
        stdout.contains("segment 1 failed: 422 undecodable_segment"),
        "{stdout}"
    );
    let stream_id = world.ledger.job_blocking(job).unwrap().unwrap().stream_id;
    let media =
        std::fs::read_to_string(out.join(format!("{}P240p30fps16x9.m3u8", &stream_id[..64])))
            .unwrap();
    assert_eq!(media.matches("#EXTINF").count(), 2);
    assert!(
        media.contains("#EXT-X-DISCONTINUITY\n#EXTINF:2.000,\n"),
        "{media}"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_piped_live_stream_is_segmented_as_it_arrives() {
    use std::io::Write;
    let world = World::new(1.0);
    let job = world.job(PROFILES, 1_000_000);
    let node = RunningNode::start(&world, "localhost").await;
    let out = world.dir.path().join("live");
    let mut child = broadcast_command(&world, job, &["--orchestrator", &node.uri], "-", &out)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Feed the 6 s stream in pieces, about twice real time, as a live source would.
    let stream = std::fs::read(clip("h264_360p_6s.ts")).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let output = tokio::task::block_in_place(move || {
        for chunk in stream.chunks(188 * 200) {
            stdin.write_all(chunk).unwrap();
            std::thread::sleep(Duration::from_millis(
                3000 * chunk.len() as u64 / stream.len() as u64,
            ));
        }
        drop(stdin);
        child.wait_with_output().unwrap()
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("3 segments, 0 failed, 6 renditions"),
        "{stdout}"
    );
    let stream_id = world.ledger.job_blocking(job).unwrap().unwrap().stream_id;
    let media =
        std::fs::read_to_string(out.join(format!("{}P240p30fps16x9.m3u8", &stream_id[..64])))
            .unwrap();
    assert_eq!(media.matches("#EXTINF").count(), 3, "{media}");
    assert!(
        !media.contains("PLAYLIST-TYPE:VOD"),
        "a live playlist is not VOD:\n{media}"
    );
    check_ladder(&out, &stream_id);
    node.stop().await;
}

/// An orchestrator that answers `GetTranscoder` with a control character in
/// `authType` (and a line break in its credentials): peer data that cannot
/// be a header.
#[derive(Debug)]
struct Misbehaving {
    transcoder: String,
}

#[tonic::async_trait]
impl lpgpu::proto::orchestrator_server::Orchestrator for Misbehaving {
    async fn get_transcoder(
        &self,
        _: tonic::Request<lpgpu::proto::TranscoderRequest>,
    ) -> Result<tonic::Response<lpgpu::proto::TranscoderInfo>, tonic::Status> {
        Ok(tonic::Response::new(lpgpu::proto::TranscoderInfo {
            transcoder: self.transcoder.clone(),
            auth_type: "Livepeer-Eth-1\u{1}".into(),
            credentials: "abc\r\nX-Injected: 1".into(),
            ..Default::default()
        }))
    }

    async fn get_orchestrator(
        &self,
        _: tonic::Request<lpgpu::proto::OrchestratorRequest>,
    ) -> Result<tonic::Response<lpgpu::proto::OrchestratorInfo>, tonic::Status> {
        Err(tonic::Status::unimplemented("2018 only"))
    }

    async fn end_transcoding_session(
        &self,
        _: tonic::Request<lpgpu::proto::EndTranscodingSessionRequest>,
    ) -> Result<tonic::Response<lpgpu::proto::EndTranscodingSessionResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("2018 only"))
    }

    async fn ping(
        &self,
        _: tonic::Request<lpgpu::proto::PingPong>,
    ) -> Result<tonic::Response<lpgpu::proto::PingPong>, tonic::Status> {
        Err(tonic::Status::unimplemented("2018 only"))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_control_character_from_the_orchestrator_is_a_clear_error_not_a_panic() {
    let world = World::new(1.0);
    let job = world.job(PROFILES, 1_000_000);
    let cert = lpgpu::tls::SelfSignedCert::generate("localhost").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    let grpc = tonic::service::Routes::new(
        lpgpu::proto::orchestrator_server::OrchestratorServer::new(Misbehaving {
            transcoder: uri.clone(),
        }),
    )
    .into_axum_router();
    let routes = lpgpu::server::NodeRoutes {
        grpc,
        http: Default::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(lpgpu::server::serve(
        listener,
        cert.server_config().unwrap(),
        routes,
        async {
            let _ = stopped.await;
        },
    ));
    let out = world.dir.path().join("hls");
    let output =
        tokio::task::block_in_place(|| broadcast(&world, job, &["--orchestrator", &uri], &out));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("authType is not a valid HTTP header value"),
        "{stderr}"
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
