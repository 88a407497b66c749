//! `POST /segment` over real TLS and HTTP/2 against a node on loopback: every
//! kind of bad input gets its clear, typed error, and afterwards good segments
//! still transcode, in both response forms, into renditions ffprobe accepts.

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{RunningNode, World, clip, https_request, parse_multipart, probe};
use http_body_util::{Full, StreamBody};
use lpgpu::eth::{PrivateKey, keccak256};
use lpgpu::proto::{TranscodeResult, transcode_result};
use lpgpu::protocol::{SegmentHeader, encode_segment_header, mint_credentials};
use prost::Message;

const PROFILES: &str = "P360p30fps16x9,P240p30fps16x9";

/// What a broadcaster sends; tests spoil one field at a time.
#[derive(Clone)]
struct Upload {
    authorization: Option<String>,
    credentials: Option<String>,
    segment: Option<String>,
    content_type: Option<String>,
    accept: Option<String>,
    body: Bytes,
}

impl Upload {
    fn new(world: &World, node: &RunningNode, job: u64, seq: u64, body: Bytes) -> Self {
        let stream_id = world.ledger.job_blocking(job).unwrap().unwrap().stream_id;
        let header = SegmentHeader::sign(&world.broadcaster, &stream_id, seq, keccak256(&body));
        let _ = node;
        Self {
            authorization: Some("Livepeer-Eth-1".into()),
            credentials: Some(mint_credentials(&world.orchestrator, job)),
            segment: Some(encode_segment_header(&header)),
            content_type: Some("video/MP2T".into()),
            accept: None,
            body,
        }
    }

    fn multipart(mut self) -> Self {
        self.accept = Some("multipart/mixed".into());
        self
    }

    fn request(&self) -> http::Request<Full<Bytes>> {
        let mut builder = http::Request::post("https://localhost/segment");
        for (name, value) in [
            ("authorization", &self.authorization),
            ("credentials", &self.credentials),
            ("livepeer-segment", &self.segment),
            ("content-type", &self.content_type),
            ("accept", &self.accept),
        ] {
            if let Some(value) = value {
                builder = builder.header(name, value);
            }
        }
        builder.body(Full::new(self.body.clone())).unwrap()
    }

    async fn send(&self, node: &RunningNode) -> (http::StatusCode, http::HeaderMap, Bytes) {
        https_request(node.addr, "localhost", b"h2", self.request()).await
    }
}

async fn expect_error(node: &RunningNode, upload: &Upload, status: u16, code: &str) {
    let (got, headers, body) = upload.send(node).await;
    let json: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| panic!("{code}: not JSON: {}", String::from_utf8_lossy(&body)));
    assert_eq!(
        (got.as_u16(), json["error"].as_str().unwrap()),
        (status, code),
        "{json}"
    );
    assert!(!json["detail"].as_str().unwrap().is_empty());
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
}

fn check_renditions(source_seconds: f64, renditions: &[(String, Vec<u8>)]) {
    let expected = [("P360p30fps16x9", 640, 360), ("P240p30fps16x9", 426, 240)];
    assert_eq!(renditions.len(), expected.len());
    for ((name, data), (profile, width, height)) in renditions.iter().zip(expected) {
        assert_eq!(name, profile);
        let (codec, w, h, seconds) = probe(data);
        assert_eq!((codec.as_str(), w, h), ("h264", width, height), "{name}");
        assert!(
            (seconds - source_seconds).abs() <= source_seconds * 0.1,
            "{name}: {seconds} s"
        );
    }
}

#[tokio::test]
async fn bad_input_gets_typed_errors_and_good_segments_still_transcode() {
    let world = World::new(0.05);
    let job = world.job(PROFILES, 1_000_000);
    let expiring = world.job(PROFILES, 1);
    let node =
        RunningNode::start_with(&world, "localhost", |c| c.max_segment_bytes = 4 << 20).await;
    let good_ts = Bytes::from(std::fs::read(clip("h264_720p.ts")).unwrap());
    let good = Upload::new(&world, &node, job, 1, good_ts.clone());
    let stranger = PrivateKey::random();
    let stream_id = world.ledger.job_blocking(job).unwrap().unwrap().stream_id;

    // One header spoilt at a time.
    let by_stranger = SegmentHeader::sign(&stranger, &stream_id, 1, keccak256(&good_ts));
    let mut other_seq = SegmentHeader::sign(&world.broadcaster, &stream_id, 2, keccak256(&good_ts));
    other_seq.seq = 1;
    let mut tampered = good_ts.to_vec();
    tampered[5000] ^= 0xff;
    let cases: Vec<(Upload, u16, &str)> = vec![
        (
            Upload {
                authorization: None,
                ..good.clone()
            },
            400,
            "missing_header",
        ),
        (
            Upload {
                authorization: Some("Bearer abc".into()),
                ..good.clone()
            },
            401,
            "bad_auth_type",
        ),
        (
            Upload {
                credentials: None,
                ..good.clone()
            },
            400,
            "missing_header",
        ),
        (
            Upload {
                credentials: Some("***".into()),
                ..good.clone()
            },
            400,
            "bad_credentials",
        ),
        (
            Upload {
                credentials: Some("//79".into()),
                ..good.clone()
            },
            400,
            "bad_credentials",
        ),
        (
            Upload {
                credentials: Some(mint_credentials(&stranger, job)),
                ..good.clone()
            },
            403,
            "bad_credentials",
        ),
        (
            Upload {
                segment: None,
                ..good.clone()
            },
            400,
            "missing_header",
        ),
        (
            Upload {
                segment: Some("!!".into()),
                ..good.clone()
            },
            400,
            "bad_segment_header",
        ),
        (
            Upload {
                segment: Some(encode_segment_header(&by_stranger)),
                ..good.clone()
            },
            403,
            "bad_segment_signature",
        ),
        (
            Upload {
                segment: Some(encode_segment_header(&other_seq)),
                ..good.clone()
            },
            403,
            "bad_segment_signature",
        ),
        (
            Upload {
                body: tampered.into(),
                ..good.clone()
            },
            403,
            "hash_mismatch",
        ),
        (
            Upload {
                content_type: Some("application/octet-stream".into()),
                ..good.clone()
            },
            415,
            "unsupported_media",
        ),
    ];
    for (upload, status, code) in &cases {
        expect_error(&node, upload, *status, code).await;
    }
    // Over the limit.
    let big = Bytes::from(vec![0x47u8; 5 << 20]);
    expect_error(
        &node,
        &Upload::new(&world, &node, job, 1, big),
        413,
        "body_too_large",
    )
    .await;
    // Correctly signed but not video: empty, random bytes, truncated, audio only.
    for (seq, body) in [
        (3, Bytes::new()),
        (
            4,
            Bytes::from(
                (0..100_000u32)
                    .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                    .collect::<Vec<_>>(),
            ),
        ),
        (5, Bytes::from(std::fs::read(clip("truncated.ts")).unwrap())),
        (
            6,
            Bytes::from(std::fs::read(clip("audio_only.ts")).unwrap()),
        ),
    ] {
        let upload = Upload::new(&world, &node, job, seq, body).multipart();
        expect_error(&node, &upload, 422, "undecodable_segment").await;
        // The protobuf form reports it inside a 200, as go-livepeer did.
        let (status, _, body) = Upload {
            accept: None,
            ..upload
        }
        .send(&node)
        .await;
        assert_eq!(status, 200);
        let result = TranscodeResult::decode(body).unwrap();
        assert_eq!(
            result.result,
            Some(transcode_result::Result::Error(
                "undecodable_segment".into()
            ))
        );
    }
    // An expired job.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stale = Upload::new(&world, &node, expiring, 1, good_ts.clone());
    expect_error(&node, &stale, 403, "job_expired").await;

    // After all of that, a good segment transcodes: inline renditions...
    let (status, headers, body) = good.clone().multipart().send(&node).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let content_type = headers
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(content_type.starts_with("multipart/mixed; boundary="));
    let parts: Vec<(String, Vec<u8>)> = parse_multipart(&content_type, &body)
        .into_iter()
        .map(|(headers, data)| {
            assert!(headers.contains(&("content-type".into(), "video/MP2T".into())));
            (
                headers
                    .iter()
                    .find(|(n, _)| n == "rendition-name")
                    .unwrap()
                    .1
                    .clone(),
                data,
            )
        })
        .collect();
    check_renditions(2.0, &parts);

    // ...and go-livepeer's protobuf answer, whose URLs serve the same renditions.
    let (status, headers, body) = Upload::new(&world, &node, job, 9, good_ts.clone())
        .send(&node)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("content-type").unwrap(),
        "application/x-protobuf"
    );
    let result = TranscodeResult::decode(body).unwrap();
    assert_eq!(result.seq, 9);
    let Some(transcode_result::Result::Data(data)) = result.result else {
        panic!("{result:?}")
    };
    let mut fetched = Vec::new();
    let mut hashes = Vec::new();
    for (segment, name) in data
        .segments
        .iter()
        .zip(["P360p30fps16x9", "P240p30fps16x9"])
    {
        let path = segment
            .url
            .strip_prefix(&node.uri)
            .expect("a URL on this node");
        assert_eq!(path, format!("/stream/{}{name}_9.ts", &stream_id[..64]));
        let request = http::Request::get(format!("https://localhost{path}"))
            .body(Full::default())
            .unwrap();
        let (status, _, rendition) =
            https_request(node.addr, "localhost", b"http/1.1", request).await;
        assert_eq!(status, 200);
        hashes.extend(keccak256(&rendition));
        fetched.push((name.to_string(), rendition.to_vec()));
    }
    check_renditions(2.0, &fetched);
    // TranscodeData.sig is the node's signature over the renditions' hashes.
    assert_eq!(
        lpgpu::eth::Signature::recover(&hashes, &data.sig),
        Ok(world.orchestrator.address())
    );

    // MPEG-2 video is accepted too (any codec libavcodec decodes).
    let mpeg2 = Bytes::from(std::fs::read(clip("mpeg2_720p.ts")).unwrap());
    let (status, headers, body) = Upload::new(&world, &node, job, 10, mpeg2)
        .multipart()
        .send(&node)
        .await;
    assert_eq!(status, 200);
    let content_type = headers.get("content-type").unwrap().to_str().unwrap();
    assert_eq!(probe(&parse_multipart(content_type, &body)[0].1).0, "h264");

    // Every rejection was counted by code.
    let metrics = node.transcoder.metrics().render();
    for needle in [
        "lpgpu_rejections_total{code=\"bad_credentials\"} 3",
        "lpgpu_rejections_total{code=\"hash_mismatch\"} 1",
        "lpgpu_rejections_total{code=\"undecodable_segment\"} 8",
        "lpgpu_segments_total{result=\"ok\"} 3",
    ] {
        assert!(metrics.contains(needle), "{needle} not in\n{metrics}");
    }
    node.stop().await;
}

#[tokio::test]
async fn a_full_node_answers_busy_at_once_and_streams_are_limited_while_read() {
    let world = World::new(1.0);
    let job = world.job(PROFILES, 1_000_000);
    let node = RunningNode::start_with(&world, "localhost", |c| {
        c.max_sessions = 1;
        c.max_segment_bytes = 3 << 20;
    })
    .await;
    let good_ts = Bytes::from(std::fs::read(clip("h264_720p.ts")).unwrap());
    let upload = Upload::new(&world, &node, job, 1, good_ts.clone());

    // A client that sends its headers and then stalls holds the only slot.
    let (sender, receiver) =
        tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::convert::Infallible>>(1);
    let mut stalled = http::Request::post("https://localhost/segment");
    for (name, value) in upload.request().headers() {
        stalled = stalled.header(name, value);
    }
    let stalled = stalled
        .body(StreamBody::new(
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

    let started = std::time::Instant::now();
    let (status, headers, body) = upload.send(&node).await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers.get("retry-after").unwrap(), "1");
    assert!(started.elapsed() < Duration::from_secs(5));
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"], "busy");

    // The stalled client now streams past the limit (no Content-Length on
    // HTTP/2 streams): it is cut off with 413 and the slot is freed.
    for _ in 0..20 {
        if sender
            .send(Ok(http_body::Frame::data(Bytes::from(vec![
                0x47u8;
                188 * 1000
            ]))))
            .await
            .is_err()
        {
            break;
        }
    }
    drop(sender);
    let (status, _, body) = holder.await.unwrap();
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = upload.clone().multipart().send(&node).await;
    assert_eq!(status, 200);
    node.stop().await;
}

/// Without `--expose-errors` no library's error text leaves the node (only
/// lpgpu's stable codes and its own words); with it, the detail is there.
#[tokio::test]
async fn internal_error_text_leaves_the_node_only_with_expose_errors() {
    let world = World::new(1.0);
    let job = world.job(PROFILES, 1_000_000);
    let garbage = Bytes::from(vec![0x47u8; 188 * 40]);
    for expose in [false, true] {
        let node = RunningNode::start_with(&world, "localhost", |c| c.expose_errors = expose).await;
        let upload = Upload::new(&world, &node, job, 1, garbage.clone());

        // A Credentials header that is base64 but not protobuf: prost's text.
        let (status, _, body) = Upload {
            credentials: Some("//79".into()),
            ..upload.clone()
        }
        .send(&node)
        .await;
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (status.as_u16(), json["error"].as_str()),
            (400, Some("bad_credentials"))
        );
        let detail = json["detail"].as_str().unwrap();
        if expose {
            assert!(detail.contains("protobuf"), "{detail}");
        } else {
            assert_eq!(detail, "the Credentials header is malformed");
        }

        // An undecodable segment, in both answer forms: FFmpeg's verdict
        // only with --expose-errors.
        let (status, _, body) = upload.clone().multipart().send(&node).await;
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (status.as_u16(), json["error"].as_str()),
            (422, Some("undecodable_segment"))
        );
        let detail = json["detail"].as_str().unwrap();
        assert_eq!(detail == "the segment does not decode", !expose, "{detail}");
        let (status, _, body) = upload.send(&node).await;
        assert_eq!(status, 200);
        let result = TranscodeResult::decode(body).unwrap();
        let Some(transcode_result::Result::Error(text)) = result.result else {
            panic!("not an error: {result:?}");
        };
        if expose {
            assert!(
                text.starts_with("undecodable_segment: ") && text.len() > 30,
                "{text}"
            );
        } else {
            assert_eq!(text, "undecodable_segment");
        }
        node.stop().await;
    }
}

/// A backend that runs the real CPU transcode only once its gate opens,
/// and, cancelled before that, takes a while to notice (as a backend does
/// between pictures). It counts transcodes running at once.
#[derive(Debug)]
struct SlowToStop {
    cpu: lpgpu::pipeline::cpu::CpuBackend,
    open: std::sync::atomic::AtomicBool,
    running: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

impl lpgpu::pipeline::Backend for SlowToStop {
    fn name(&self) -> &'static str {
        "slow"
    }

    fn device(&self) -> String {
        "test".into()
    }

    fn transcode(
        &self,
        segment: Bytes,
        renditions: &[lpgpu::pipeline::RenditionSpec],
        options: &lpgpu::pipeline::SegmentOptions,
    ) -> Result<lpgpu::pipeline::Transcoded, lpgpu::pipeline::TranscodeError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        let outcome = loop {
            if self.open.load(SeqCst) {
                break self.cpu.transcode(segment, renditions, options);
            }
            if options.cancel.is_cancelled() {
                std::thread::sleep(Duration::from_millis(1500));
                break Err(lpgpu::pipeline::TranscodeError::Cancelled);
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        self.running.fetch_sub(1, SeqCst);
        outcome
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_transcode_timeout_no_second_transcode_runs_on_that_slot() {
    use std::sync::atomic::Ordering::SeqCst;
    let world = World::new(1.0);
    let job = world.job(PROFILES, 1_000_000);
    let backend = std::sync::Arc::new(SlowToStop {
        cpu: lpgpu::pipeline::cpu::CpuBackend::new(Default::default()),
        open: false.into(),
        running: 0.into(),
        most: 0.into(),
    });
    let chain: std::sync::Arc<dyn lpgpu::chain::Chain> = std::sync::Arc::new(world.ledger.clone());
    let node = RunningNode::start_with_backend(
        chain,
        world.orchestrator.clone(),
        "localhost",
        |c| {
            c.max_sessions = 1;
            c.transcode_timeout = Duration::from_secs(1);
            c.expose_errors = true;
        },
        backend.clone(),
    )
    .await;
    let segment = Bytes::from(std::fs::read(clip("h264_720p.ts")).unwrap());

    // The first segment times out; its transcode is told to stop.
    let first = Upload::new(&world, &node, job, 1, segment.clone()).multipart();
    expect_error(&node, &first, 500, "internal").await;
    // It is still stopping: its slot is not another segment's yet.
    let second = Upload::new(&world, &node, job, 2, segment.clone()).multipart();
    expect_error(&node, &second, 503, "busy").await;
    assert_eq!(backend.running.load(SeqCst), 1);

    // Once it has stopped, the slot is free again and segments transcode.
    backend.open.store(true, SeqCst);
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let third = Upload::new(&world, &node, job, 3, segment).multipart();
    let (status, _, body) = third.send(&node).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        backend.most.load(SeqCst),
        1,
        "two transcodes ran on one slot"
    );
    node.stop().await;
}
