//! The node's HTTP side over real TLS, in HTTP/1.1 and HTTP/2, beside gRPC on
//! the same port.

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

mod common;

use bytes::Bytes;
use common::{RunningNode, World, https_request};
use http_body_util::Full;

fn get(path: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(format!("https://localhost{path}"))
        .body(Full::default())
        .unwrap()
}

#[tokio::test]
async fn healthz_answers_in_both_http_versions() {
    let world = World::new(1.0);
    let node = RunningNode::start(&world, "localhost").await;
    for alpn in [&b"h2"[..], &b"http/1.1"[..]] {
        let (status, _, body) = https_request(node.addr, "localhost", alpn, get("/healthz")).await;
        assert_eq!(status, 200);
        assert_eq!(&body[..], b"ok\n");
        let (status, _, _) = https_request(node.addr, "localhost", alpn, get("/nope")).await;
        assert_eq!(status, 404);
    }
    node.stop().await;
}

#[tokio::test]
async fn requests_go_to_grpc_by_content_type_only() {
    let world = World::new(1.0);
    let node = RunningNode::start(&world, "localhost").await;
    // A gRPC-typed request for an unknown method reaches tonic, not axum.
    let request = http::Request::post("https://localhost/net.Orchestrator/Nope")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let (status, headers, _) = https_request(node.addr, "localhost", b"h2", request).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("grpc-status").map(|v| v.to_str().unwrap()),
        Some("12")
    ); // UNIMPLEMENTED
    // The gRPC path without the gRPC content type is an ordinary HTTP 404.
    let request = http::Request::post("https://localhost/net.Orchestrator/GetTranscoder")
        .body(Full::default())
        .unwrap();
    let (status, _, _) = https_request(node.addr, "localhost", b"h2", request).await;
    assert_eq!(status, 404);
    node.stop().await;
}

#[tokio::test]
async fn stream_names_that_were_never_stored_are_404() {
    let world = World::new(1.0);
    let node = RunningNode::start(&world, "localhost").await;
    let (status, _, body) =
        https_request(node.addr, "localhost", b"h2", get("/stream/nope_1.ts")).await;
    assert_eq!(status, 404);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"], "not_found");
    node.stop().await;
}
