//! The CPU ladder against the ffmpeg CLI, side by side in one run, and the
//! protocol's overhead as a fraction of transcode time.
//!
//!     cargo bench --bench ladder [-- ROUNDS]
//!
//! Source: 2 s of 1080p30 H.264 + AAC with moving noise (made by the ffmpeg
//! CLI). Ladder: P720p30fps16x9, P360p30fps16x9, P240p30fps16x9. Both sides use
//! libx264 `veryfast`, bitrate = maxrate = the profile's, bufsize 2×, GOP 2 s,
//! bicubic scaling, audio copied; ffmpeg decodes once and `split`s. Rounds
//! alternate between the two so machine noise hits both alike; medians are
//! reported, and the ratio is ffmpeg time ÷ lpgpu time (above 1: lpgpu faster).

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lpgpu::bench::ffmpeg_ladder_args;
use lpgpu::eth::{Keccak256Hasher, PrivateKey, keccak256};
use lpgpu::pipeline::cpu::{CpuBackend, cpu_model};
use lpgpu::pipeline::{Backend, EncoderSettings};
use lpgpu::protocol::{Profile, SegmentHeader, encode_segment_header, mint_credentials};
use lpgpu::transcoder::verify::{SegmentHeaders, authenticate, authorize};

const LADDER: [&str; 3] = ["P720p30fps16x9", "P360p30fps16x9", "P240p30fps16x9"];

fn ffmpeg(args: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y"])
        .args(args)
        .status()
        .expect("ffmpeg CLI");
    assert!(status.success(), "ffmpeg {args:?}");
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ffmpeg_ladder(source: &Path, out: &Path, profiles: &[Profile]) {
    let specs = lpgpu::pipeline::rendition::from_profiles(profiles);
    let args = ffmpeg_ladder_args(source, out, &specs, &EncoderSettings::default(), None).unwrap();
    let status = Command::new("ffmpeg")
        .args(&args)
        .status()
        .expect("ffmpeg CLI");
    assert!(status.success(), "ffmpeg {args:?}");
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` does not, and then one round
    // checks that the benchmark still works. A number given is the round count.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(if benchmarking { 5 } else { 1 });
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("src1080.ts");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1920x1080:rate=30,noise=alls=12:allf=t+u",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
        "-t",
        "2",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-b:v",
        "6000k",
        "-g",
        "60",
        "-c:a",
        "aac",
        "-f",
        "mpegts",
        source.to_str().unwrap(),
    ]);
    let segment = Bytes::from(std::fs::read(&source).unwrap());
    let profiles: Vec<Profile> = LADDER
        .iter()
        .map(|n| Profile::by_name(n).unwrap())
        .collect();
    let backend = CpuBackend::new(EncoderSettings::default());

    // One warm-up each.
    let specs = lpgpu::pipeline::rendition::from_profiles(&profiles);
    backend
        .transcode(segment.clone(), &specs, &Default::default())
        .unwrap();
    ffmpeg_ladder(&source, dir.path(), &profiles);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let started = Instant::now();
        let transcoded = backend
            .transcode(segment.clone(), &specs, &Default::default())
            .unwrap();
        ours.push(started.elapsed());
        assert_eq!(transcoded.renditions.len(), 3);
        let started = Instant::now();
        ffmpeg_ladder(&source, dir.path(), &profiles);
        theirs.push(started.elapsed());
    }
    let (ours, theirs) = (median(ours), median(theirs));

    // Protocol overhead: header verification and the streaming hash of 2 MB.
    let orchestrator = PrivateKey::random();
    let broadcaster = PrivateKey::random();
    let body = vec![0x47u8; 2 * 1024 * 1024];
    let job = lpgpu::chain::Job {
        id: 1,
        stream_id: format!("{}P720p30fps16x9", "ab".repeat(32)),
        transcoding_options: lpgpu::protocol::encode_transcoding_options(&profiles),
        broadcaster: broadcaster.address(),
        transcoder: orchestrator.address(),
        creation_block: 0,
        end_block: 100,
    };
    let credentials = mint_credentials(&orchestrator, 1);
    let segment_header = encode_segment_header(&SegmentHeader::sign(
        &broadcaster,
        &job.stream_id,
        1,
        keccak256(&body),
    ));
    let headers = SegmentHeaders {
        authorization: Some("Livepeer-Eth-1"),
        credentials: Some(&credentials),
        segment: Some(&segment_header),
        content_type: Some("video/MP2T"),
    };
    let overhead = median(
        (0..20)
            .map(|_| {
                let started = Instant::now();
                let job_id = authenticate(&headers, orchestrator.address()).unwrap();
                let verified = authorize(&headers, job_id, Some(job.clone()), 50).unwrap();
                let mut hasher = Keccak256Hasher::new();
                for chunk in body.chunks(16 * 1024) {
                    hasher.update(chunk);
                }
                assert_eq!(hasher.finalize(), verified.segment.hash);
                started.elapsed()
            })
            .collect(),
    );

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "machine: {} ({cores} cores)",
        cpu_model().unwrap_or_else(|| "unknown CPU".into())
    );
    println!("ladder: 2 s 1080p30 -> {}", LADDER.join(", "));
    println!(
        "lpgpu cpu backend   median {:>7.3} s   real-time ratio {:.2}",
        ours.as_secs_f64(),
        ours.as_secs_f64() / 2.0
    );
    println!(
        "ffmpeg CLI (split)  median {:>7.3} s   real-time ratio {:.2}",
        theirs.as_secs_f64(),
        theirs.as_secs_f64() / 2.0
    );
    println!(
        "speed ratio (ffmpeg / lpgpu): {:.2}",
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
    println!(
        "protocol overhead (verify + streaming keccak256 of 2 MB): {:.2} ms = {:.2}% of transcode time",
        overhead.as_secs_f64() * 1000.0,
        100.0 * overhead.as_secs_f64() / ours.as_secs_f64()
    );
}
