//! Every codec's CPU ladder against the ffmpeg CLI with the same settings,
//! side by side in one run.
//!
//!     cargo bench --bench codecs [-- ROUNDS]
//!
//! Source: 2 s of 1080p30 H.264 + AAC with moving noise (made by the ffmpeg
//! CLI). For each of H.264 (libx264), HEVC (libx265), VP8 (libvpx) and VP9
//! (libvpx-vp9), a two-rung ladder, 1280×720 at 3 Mb/s and 640×360 at
//! 1 Mb/s, 30 fps, in the container LPMS's mapping gives it (MPEG-TS, or
//! Matroska for VP8/VP9). The ffmpeg CLI gets the encoder options lpgpu
//! sets, from the same code (`lpgpu::bench::ffmpeg_ladder_args` over
//! `lpgpu::pipeline::cpu::cli_encoder_args`), decodes once and `split`s,
//! scales bicubic, copies the audio. Rounds
//! alternate between the two sides so machine noise hits both alike;
//! medians are reported, and the ratio is ffmpeg time ÷ lpgpu time (above
//! 1: lpgpu faster). Under `cargo test` one round of a 360p source checks
//! that the benchmark still works.

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lpgpu::bench::ffmpeg_ladder_args;
use lpgpu::pipeline::cpu::{CpuBackend, cpu_model};
use lpgpu::pipeline::{
    Backend, Container, EncoderSettings, H264Profile, RenditionSpec, VideoCodec,
};
use lpgpu::protocol::parse_profile_list;

fn ffmpeg(args: &[String]) {
    let status = Command::new("ffmpeg")
        .args(args)
        .status()
        .expect("ffmpeg CLI");
    assert!(status.success(), "ffmpeg {args:?}");
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The ladder of one codec: (width, height, bits per second) per rung.
fn ladder(codec: VideoCodec, rungs: &[(u32, u32, u32)]) -> Vec<RenditionSpec> {
    let base = RenditionSpec::from(parse_profile_list("P360p30fps16x9").unwrap()[0]);
    let container = match codec {
        VideoCodec::Vp8 | VideoCodec::Vp9 => Container::Matroska,
        _ => Container::MpegTs,
    };
    rungs
        .iter()
        .map(|&(width, height, bitrate_bps)| RenditionSpec {
            name: format!("{width}x{height}"),
            width,
            height,
            bitrate_bps,
            codec,
            container,
            ..base.clone()
        })
        .collect()
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(if benchmarking { 3 } else { 1 });
    let (size, rungs): (&str, &[(u32, u32, u32)]) = if benchmarking {
        (
            "1920x1080",
            &[(1280, 720, 3_000_000), (640, 360, 1_000_000)],
        )
    } else {
        ("640x360", &[(426, 240, 600_000), (256, 144, 300_000)])
    };
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.ts");
    ffmpeg(
        &[
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={size}:rate=30,noise=alls=12:allf=t+u"),
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
        ]
        .map(String::from),
    );
    let segment = Bytes::from(std::fs::read(&source).unwrap());
    let backend = CpuBackend::new(EncoderSettings::default());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "machine: {} ({cores} cores)",
        cpu_model().unwrap_or_else(|| "unknown CPU".into())
    );
    println!(
        "source: 2 s {size} 30 fps H.264 + AAC; ladder per codec: {}; {rounds} round(s), medians",
        rungs
            .iter()
            .map(|(w, h, b)| format!("{w}x{h} {} kb/s", b / 1000))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("codec   lpgpu s   ffmpeg s   ratio (ffmpeg / lpgpu)");
    for (name, codec) in [
        ("H.264", VideoCodec::H264(H264Profile::EncoderDefault)),
        ("HEVC", VideoCodec::Hevc),
        ("VP8", VideoCodec::Vp8),
        ("VP9", VideoCodec::Vp9),
    ] {
        let specs = ladder(codec, rungs);
        let args = ffmpeg_ladder_args(
            &source,
            dir.path(),
            &specs,
            &EncoderSettings::default(),
            Some(30.0),
        )
        .unwrap();
        // One warm-up each.
        backend
            .transcode(segment.clone(), &specs, &Default::default())
            .unwrap();
        ffmpeg(&args);
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let started = Instant::now();
            let transcoded = backend
                .transcode(segment.clone(), &specs, &Default::default())
                .unwrap();
            ours.push(started.elapsed());
            assert_eq!(transcoded.renditions.len(), specs.len());
            assert!(transcoded.renditions.iter().all(|r| r.frames == 60));
            let started = Instant::now();
            ffmpeg(&args);
            theirs.push(started.elapsed());
        }
        let (ours, theirs) = (median(ours), median(theirs));
        println!(
            "{name:<6} {:>8.3}   {:>8.3}   {:.2}",
            ours.as_secs_f64(),
            theirs.as_secs_f64(),
            theirs.as_secs_f64() / ours.as_secs_f64()
        );
    }
}
