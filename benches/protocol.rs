//! The protocol's per-segment costs: decoding and verifying the headers, the
//! keccak256 of a 2 MB body, and signature recovery.

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

use lpgpu::eth::{PrivateKey, Signature, keccak256};
use lpgpu::protocol::{
    SegmentHeader, decode_credentials, decode_segment_header, encode_segment_header,
    mint_credentials,
};

fn protocol(c: &mut Criterion) {
    let broadcaster = PrivateKey::random();
    let orchestrator = PrivateKey::random();
    let stream_id = format!("{}P720p30fps16x9", "ab".repeat(32));
    let body = vec![0x47u8; 2 * 1024 * 1024];
    let hash = keccak256(&body);
    let header = encode_segment_header(&SegmentHeader::sign(&broadcaster, &stream_id, 7, hash));
    let credentials = mint_credentials(&orchestrator, 42);
    let signature = broadcaster.sign(b"42").to_vec();

    let mut group = c.benchmark_group("keccak256");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("2MB segment", |b| b.iter(|| keccak256(black_box(&body))));
    group.finish();

    c.bench_function("signature recovery", |b| {
        b.iter(|| Signature::recover(b"42", black_box(&signature)))
    });
    c.bench_function("segment header decode + verify", |b| {
        b.iter(|| {
            let segment = decode_segment_header(black_box(&header)).unwrap();
            segment.verify(&stream_id, broadcaster.address()).unwrap();
        })
    });
    c.bench_function("credentials decode + verify", |b| {
        b.iter(|| decode_credentials(black_box(&credentials), orchestrator.address()).unwrap())
    });
}

criterion_group!(benches, protocol);
criterion_main!(benches);
