//! The core over a real executor and a backend that echoes, with real
//! HTTP bodies: the order of its steps and the error each step gives.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;

use super::*;
use crate::eth::keccak256;
use crate::pipeline::echo::EchoBackend;
use crate::pipeline::workers::Policy;
use crate::store::StoreLimits;

fn core(slots: usize, max_segment_bytes: u64) -> SegmentCore {
    let metrics = Metrics::new();
    let workers = Workers::new(
        Arc::new(EchoBackend),
        slots,
        Policy::SEGMENTS,
        metrics.clone(),
    )
    .unwrap();
    let store = Arc::new(StreamStore::new(StoreLimits {
        max_bytes: 1 << 20,
        retention: Duration::from_secs(60),
    }));
    SegmentCore::new(
        Engine::Local(workers),
        store,
        SegmentLimits {
            max_segment_bytes,
            request_timeout: Duration::from_secs(5),
            transcode_timeout: Duration::from_secs(5),
        },
        metrics,
    )
}

fn job(data: &[u8]) -> SegmentJob {
    SegmentJob {
        stream: StreamKey::new("stream"),
        seq: 1,
        renditions: crate::pipeline::rendition::from_profiles(
            &crate::protocol::parse_profile_list("P144p30fps16x9").unwrap(),
        ),
        expected_hash: Some(keccak256(data)),
        deadline: None,
        perceptual_hash: false,
    }
}

fn body(data: &'static [u8], declared: Option<u64>) -> SegmentBody {
    SegmentBody::new(Body::from(Bytes::from_static(data)), declared)
}

#[tokio::test]
async fn a_good_segment_goes_through_every_step() {
    let core = core(1, 1024);
    let out = core
        .process(&job(b"segment"), &mut body(b"segment", Some(7)))
        .await
        .unwrap();
    assert_eq!(out.renditions.len(), 1);
    assert_eq!(out.renditions[0].data, "segment");
    assert!(
        core.metrics()
            .render()
            .contains("lpgpu_segment_bytes_total{direction=\"in\"} 7")
    );
}

#[tokio::test]
async fn the_body_is_checked_against_its_signed_hash_and_its_limit() {
    let core = core(1, 8);
    let tampered = core
        .process(&job(b"segment"), &mut body(b"tampere", None))
        .await;
    assert_eq!(tampered.unwrap_err(), Error::HashMismatch);
    // Streamed past the limit without a Content-Length.
    let long = core
        .process(&job(b"0123456789"), &mut body(b"0123456789", None))
        .await;
    assert_eq!(long.unwrap_err(), Error::BodyTooLarge { limit: 8 });
    // A slot was never lost: the next good one runs.
    assert!(
        core.process(&job(b"ok"), &mut body(b"ok", None))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_even_on_a_full_node() {
    let core = core(1, 8);
    let Engine::Local(workers) = core.engine() else {
        unreachable!()
    };
    let _held = workers.admit(&StreamKey::new("other")).unwrap();
    let refused = core
        .process(&job(b"x"), &mut body(b"x", Some(9)))
        .await
        .unwrap_err();
    assert_eq!(refused, Error::BodyTooLarge { limit: 8 });
    let busy = core
        .process(&job(b"x"), &mut body(b"x", Some(1)))
        .await
        .unwrap_err();
    assert_eq!(busy, Error::Busy { slots: 1 });
    assert_eq!(busy.retry_after(), Some(Duration::from_secs(1)));
    assert!(!core.is_ready());
}

#[tokio::test]
async fn a_draining_node_takes_no_new_segment() {
    let core = core(1, 8);
    core.start_draining();
    let refused = core
        .process(&job(b"x"), &mut body(b"x", None))
        .await
        .unwrap_err();
    assert_eq!(refused, Error::ShuttingDown);
}
