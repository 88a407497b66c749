//! The GPU backend. Without a GPU (CI, development machines) the tests that
//! run check the fallback: `--backend gpu` fails naming what is missing and
//! `--backend auto` transcodes on the CPU saying why. The `#[ignore]`d tests
//! need an NVIDIA GPU and run in the device check (`.ci/device/run-check`,
//! `--ignored`): the kernels against their CPU reference, NVDEC against the
//! CPU decoder, and whole ladders through the GPU backend.
//!
//! Fixtures are made in-process (libavfilter), since the GPU machine has no
//! ffmpeg CLI; outputs are checked by decoding them with libavcodec.

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

use std::process::Command;

use bytes::Bytes;
use ffmpeg_next as ffmpeg;
use lpgpu::pipeline::gpu::diagnostics::open_device;
use lpgpu::pipeline::gpu::resize::{Nv12Image, Nv12Plan};
use lpgpu::pipeline::gpu::{GpuBackend, cuda};
use lpgpu::pipeline::rendition::from_profiles;
use lpgpu::pipeline::testclip::make_test_clip;
use lpgpu::pipeline::{Backend, EncoderSettings, GpuOptions, TranscodeError};
use lpgpu::protocol::parse_profile_list;

fn has_gpu() -> bool {
    cuda::probe_driver().is_ok()
}

fn lpgpu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lpgpu"))
}

fn clip_file(seconds: u32, width: u32, height: u32) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.ts");
    std::fs::write(&path, make_test_clip(seconds, width, height).unwrap()).unwrap();
    (dir, path)
}

#[test]
fn backend_gpu_without_a_gpu_names_what_is_missing() {
    if has_gpu() {
        return;
    }
    let (dir, input) = clip_file(1, 320, 180);
    let out = lpgpu()
        .arg("transcode")
        .arg(&input)
        .args(["--profiles", "P240p30fps16x9", "--backend", "gpu", "--out"])
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--backend gpu: no GPU backend is available")
            && (stderr.contains("libcuda") || stderr.contains("libnvcuvid")),
        "{stderr}"
    );
}

#[test]
fn backend_auto_without_a_gpu_transcodes_on_the_cpu_and_says_why() {
    if has_gpu() {
        return;
    }
    let (dir, input) = clip_file(1, 320, 180);
    let out_dir = dir.path().join("out");
    let out = lpgpu()
        .arg("transcode")
        .arg(&input)
        .args(["--profiles", "P240p30fps16x9", "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("using the CPU because the GPU is not usable")
            && stderr.contains("libcuda"),
        "{stderr}"
    );
    let rendition = std::fs::read(out_dir.join("P240p30fps16x9.ts")).unwrap();
    let summary = decode_summary(&rendition);
    assert_eq!((summary.width, summary.height), (426, 240));
    assert_eq!(summary.frames, 30);
}

#[test]
fn gpu_flags_are_checked_before_anything_runs() {
    let (dir, input) = clip_file(1, 320, 180);
    let out = lpgpu()
        .arg("transcode")
        .arg(&input)
        .args([
            "--profiles",
            "P240p30fps16x9",
            "--max-sessions-per-gpu",
            "0",
            "--out",
        ])
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--max-sessions-per-gpu must be at least 1")
    );
}

/// What libavcodec makes of a rendition's video.
#[derive(Debug)]
struct Summary {
    codec: ffmpeg::codec::Id,
    width: u32,
    height: u32,
    frames: u64,
}

fn decode_summary(data: &[u8]) -> Summary {
    let frames = decode_nv12(data);
    let input = open_input(data);
    let stream = input.streams().best(ffmpeg::media::Type::Video).unwrap();
    let codec = stream.parameters().id();
    let (width, height) = frames.first().map_or((0, 0), |f| (f.width, f.height));
    Summary {
        codec,
        width,
        height,
        frames: frames.len() as u64,
    }
}

fn open_input(data: &[u8]) -> ffmpeg::format::context::Input {
    lpgpu::pipeline::cpu::CpuBackend::new(EncoderSettings::default());
    let io = ffmpeg::format::context::StreamIo::from_read_seek(std::io::Cursor::new(data.to_vec()))
        .unwrap();
    ffmpeg::format::input_from_stream(io, None, None).unwrap()
}

/// Every picture of the first video stream, decoded on the CPU, as packed NV12.
fn decode_nv12(data: &[u8]) -> Vec<Nv12Image> {
    let mut input = open_input(data);
    let stream = input.streams().best(ffmpeg::media::Type::Video).unwrap();
    let index = stream.index();
    let mut decoder = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
        .unwrap()
        .decoder()
        .video()
        .unwrap();
    let mut pictures = Vec::new();
    let take = |decoder: &mut ffmpeg::decoder::Video, pictures: &mut Vec<Nv12Image>| {
        let mut frame = ffmpeg::frame::Video::empty();
        while decoder.receive_frame(&mut frame).is_ok() {
            pictures.push(to_nv12(&frame));
        }
    };
    for (s, packet) in input.packets() {
        if s.index() == index {
            decoder.send_packet(&packet).unwrap();
            take(&mut decoder, &mut pictures);
        }
    }
    decoder.send_eof().unwrap();
    take(&mut decoder, &mut pictures);
    pictures
}

/// A decoded picture (YUV 4:2:0 planar or NV12) as packed NV12.
fn to_nv12(frame: &ffmpeg::frame::Video) -> Nv12Image {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let mut data = Vec::with_capacity(Nv12Image::len_for(w as u32, h as u32));
    for row in 0..h {
        let stride = frame.stride(0);
        data.extend_from_slice(&frame.data(0)[row * stride..row * stride + w]);
    }
    match frame.format() {
        ffmpeg::format::Pixel::NV12 => {
            for row in 0..ch {
                let stride = frame.stride(1);
                data.extend_from_slice(&frame.data(1)[row * stride..row * stride + 2 * cw]);
            }
        }
        ffmpeg::format::Pixel::YUV420P => {
            for row in 0..ch {
                let (su, sv) = (frame.stride(1), frame.stride(2));
                for x in 0..cw {
                    data.push(frame.data(1)[row * su + x]);
                    data.push(frame.data(2)[row * sv + x]);
                }
            }
        }
        other => panic!("unexpected decoded format {other:?}"),
    }
    Nv12Image {
        width: w as u32,
        height: h as u32,
        data,
    }
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64.powi(2) / mse).log10()
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU (the device check runs it)"]
fn gpu_resize_kernel_matches_the_cpu_reference() {
    let device = open_device(0).unwrap();
    let cases = [
        ((1920, 1080), (1280, 720)),
        ((1920, 1080), (640, 360)),
        ((1920, 1080), (426, 240)),
        ((1280, 720), (854, 480)),
        ((640, 360), (1280, 720)),
        ((1918, 1078), (1280, 720)),
        ((34, 18), (8, 4)),
    ];
    for (i, (source, output)) in cases.into_iter().enumerate() {
        // Fresh random samples for every case.
        let image = Nv12Image::noise(source.0, source.1, 0x5eed + i as u64);
        let reference = image.resize_reference(&Nv12Plan::new(source, output));
        let gpu = device.resize_image(&image, output).unwrap();
        let worst = gpu
            .data
            .iter()
            .zip(&reference.data)
            .map(|(&a, &b)| (i16::from(a) - i16::from(b)).abs())
            .max()
            .unwrap();
        let exact = gpu.data == reference.data;
        println!(
            "RESULT kernel_vs_reference {source:?}->{output:?} max_diff={worst} exact={exact}"
        );
        assert!(worst <= 1, "{source:?} -> {output:?}: off by {worst}");
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU (the device check runs it)"]
fn nvdec_pictures_match_the_cpu_decoder() {
    let device = open_device(0).unwrap();
    let clip = make_test_clip(2, 1280, 720).unwrap();
    let cpu = decode_nv12(&clip);
    let gpu = device.decode_to_host(clip.clone()).unwrap();
    assert_eq!(gpu.len(), cpu.len(), "picture count");
    let mut worst = f64::INFINITY;
    for (g, c) in gpu.iter().zip(&cpu) {
        assert_eq!((g.width, g.height), (c.width, c.height));
        worst = worst.min(psnr(&g.data, &c.data));
    }
    let exact = gpu == cpu;
    println!(
        "RESULT nvdec_vs_cpu pictures={} min_psnr_db={worst:.1} exact={exact}",
        gpu.len()
    );
    assert!(
        worst >= 50.0,
        "NVDEC differs from libavcodec: {worst:.1} dB"
    );
}

fn gpu_backend() -> GpuBackend {
    GpuBackend::open(
        EncoderSettings::default(),
        &GpuOptions {
            gpus: Some(vec![0]),
            ..GpuOptions::default()
        },
    )
    .unwrap()
}

#[test]
#[ignore = "needs an NVIDIA GPU (the device check runs it)"]
fn gpu_backend_transcodes_a_ladder() {
    let backend = gpu_backend();
    let clip = make_test_clip(2, 1920, 1080).unwrap();
    let profiles =
        from_profiles(&parse_profile_list("P720p30fps16x9,P360p30fps16x9,P240p30fps16x9").unwrap());
    let transcoded = backend
        .transcode(clip, &profiles, &Default::default())
        .unwrap();
    assert_eq!(
        transcoded.backend, "gpu",
        "fell back: {:?}",
        transcoded.fallback
    );
    assert_eq!(transcoded.source_frames, 60);
    let sizes: Vec<_> = transcoded
        .renditions
        .iter()
        .map(|r| {
            let s = decode_summary(&r.data);
            assert_eq!(s.codec, ffmpeg::codec::Id::H264);
            assert_eq!(s.frames, 60, "{}", r.spec.name);
            (s.width, s.height)
        })
        .collect();
    assert_eq!(sizes, [(1280, 720), (640, 360), (426, 240)]);
    println!("RESULT gpu_ladder renditions=3 frames=60 sizes={sizes:?}");
}

#[test]
#[ignore = "needs an NVIDIA GPU (the device check runs it)"]
fn gpu_ladder_looks_like_the_cpu_ladder() {
    // The two backends use different scalers (lpgpu's kernel, swscale) and
    // the same encoder settings: their renditions must look alike.
    let backend = gpu_backend();
    let cpu = lpgpu::pipeline::cpu::CpuBackend::new(EncoderSettings::default());
    let clip = make_test_clip(1, 1280, 720).unwrap();
    let profiles = from_profiles(&parse_profile_list("P360p30fps16x9").unwrap());
    let on_gpu = decode_nv12(
        &backend
            .transcode(clip.clone(), &profiles, &Default::default())
            .unwrap()
            .renditions[0]
            .data,
    );
    let on_cpu = decode_nv12(
        &cpu.transcode(clip, &profiles, &Default::default())
            .unwrap()
            .renditions[0]
            .data,
    );
    assert_eq!(on_gpu.len(), on_cpu.len());
    let mean = on_gpu
        .iter()
        .zip(&on_cpu)
        .map(|(g, c)| psnr(&g.data, &c.data).min(99.0))
        .sum::<f64>()
        / on_gpu.len() as f64;
    println!("RESULT gpu_vs_cpu_rendition mean_psnr_db={mean:.1}");
    assert!(mean > 30.0, "{mean:.1} dB");
}

#[test]
#[ignore = "needs an NVIDIA GPU (the device check runs it)"]
fn bad_segments_never_take_the_gpu_backend_down() {
    let backend = gpu_backend();
    let profiles = from_profiles(&parse_profile_list("P240p30fps16x9").unwrap());
    let clip = make_test_clip(1, 640, 360).unwrap();
    // Garbage, a truncated segment, and bytes flipped in the middle.
    let mut flipped = clip.to_vec();
    for b in flipped[clip.len() / 3..clip.len() / 3 + 4000].iter_mut() {
        *b ^= 0x5a;
    }
    let bad = [
        Bytes::from(vec![0x47u8; 188 * 50]),
        clip.slice(..clip.len() / 5),
        Bytes::from(flipped),
    ];
    for segment in bad {
        match backend.transcode(segment, &profiles, &Default::default()) {
            Ok(t) => println!(
                "RESULT bad_segment handled backend={} fallback={:?}",
                t.backend, t.fallback
            ),
            Err(TranscodeError::Undecodable(why)) => println!("RESULT bad_segment refused {why}"),
            Err(e) => panic!("a bad segment is the client's fault, not ours: {e}"),
        }
    }
    let good = backend
        .transcode(clip, &profiles, &Default::default())
        .unwrap();
    assert_eq!(good.backend, "gpu");
}

#[test]
#[ignore = "needs an NVIDIA GPU (the device check runs it)"]
fn nvenc_detection_and_rig_description() {
    let backend = gpu_backend();
    for line in backend.describe() {
        println!("RESULT gpu {line}");
    }
    assert_eq!(
        backend.capacity(),
        Some(lpgpu::pipeline::gpu::DEFAULT_SESSIONS_PER_GPU)
    );
}
