//! CPU pipeline costs: swscale bicubic 1080p → each rung, and the transcode of
//! one 2 s 1080p30 segment per profile.

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use ffmpeg_next::format::Pixel;
use ffmpeg_next::software::scaling;
use ffmpeg_next::util::frame::Video;
use lpgpu::pipeline::cpu::CpuBackend;
use lpgpu::pipeline::{Backend, EncoderSettings};
use lpgpu::protocol::Profile;

const RUNGS: [&str; 3] = ["P720p30fps16x9", "P360p30fps16x9", "P240p30fps16x9"];

fn source_segment() -> Bytes {
    let path = std::env::temp_dir().join(format!("lpgpu-bench-1080p-{}.ts", std::process::id()));
    let status = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=1920x1080:rate=30,noise=alls=12:allf=t+u")
        .args([
            "-t", "2", "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-f", "mpegts",
        ])
        .arg(&path)
        .status()
        .expect("ffmpeg CLI");
    assert!(status.success());
    let data = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).ok();
    Bytes::from(data)
}

fn scaling(c: &mut Criterion) {
    ffmpeg_next::init().unwrap();
    let mut source = Video::new(Pixel::YUV420P, 1920, 1080);
    for plane in 0..3 {
        for (i, byte) in source.data_mut(plane).iter_mut().enumerate() {
            *byte = (i * 7 % 251) as u8;
        }
    }
    let mut group = c.benchmark_group("swscale bicubic 1080p");
    for name in RUNGS {
        let p = Profile::by_name(name).unwrap();
        let mut scaler = scaling::Context::get(
            Pixel::YUV420P,
            1920,
            1080,
            Pixel::YUV420P,
            p.width,
            p.height,
            scaling::Flags::BICUBIC,
        )
        .unwrap();
        let mut out = Video::empty();
        group.bench_function(name, |b| {
            b.iter(|| scaler.run(black_box(&source), &mut out).unwrap())
        });
    }
    group.finish();
}

fn transcode(c: &mut Criterion) {
    let segment = source_segment();
    let backend = CpuBackend::new(EncoderSettings::default());
    let mut group = c.benchmark_group("cpu transcode 2 s 1080p30");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15));
    for name in RUNGS {
        let profiles = [Profile::by_name(name).unwrap().into()];
        group.bench_function(name, |b| {
            b.iter(|| {
                backend
                    .transcode(segment.clone(), &profiles, &Default::default())
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, scaling, transcode);
criterion_main!(benches);
