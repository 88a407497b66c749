//! The CPU backend on real clips, checked by ffprobe: ladder sizes, frame-rate
//! reduction (never an increase), timestamps kept, audio copied.

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

mod common;

use bytes::Bytes;
use common::{clip, probe};
use lpgpu::pipeline::cpu::CpuBackend;
use lpgpu::pipeline::rendition::from_profiles;
use lpgpu::pipeline::{Backend, EncoderSettings, TranscodeError};
use lpgpu::protocol::parse_profile_list;

fn transcode(name: &str, profiles: &str) -> Result<lpgpu::pipeline::Transcoded, TranscodeError> {
    let backend = CpuBackend::new(EncoderSettings::default());
    backend.transcode(
        Bytes::from(std::fs::read(clip(name)).unwrap()),
        &from_profiles(&parse_profile_list(profiles).unwrap()),
        &Default::default(),
    )
}

fn start_times(data: &[u8]) -> Vec<(String, f64)> {
    let path = std::env::temp_dir().join(format!("lpgpu-start-{}.ts", std::process::id()));
    std::fs::write(&path, data).unwrap();
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,start_time",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).ok();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        // ffprobe lists the streams once more under their program: keep the first listing.
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let (kind, start) = l.split_once(',').unwrap();
            (kind.to_string(), start.parse().unwrap())
        })
        .collect()
}

#[test]
fn a_60fps_4x3_source_is_halved_and_letterboxed_into_each_box() {
    let out = transcode(
        "h264_60fps_4x3.ts",
        "P720p30fps16x9,P720p60fps16x9,P240p30fps4x3",
    )
    .unwrap();
    assert_eq!(out.source_frames, 120);
    assert!(
        (out.source_seconds - 2.0).abs() < 0.05,
        "{}",
        out.source_seconds
    );
    let got: Vec<_> = out
        .renditions
        .iter()
        .map(|r| (r.spec.name.as_str(), r.width, r.height, r.frames))
        .collect();
    assert_eq!(
        got,
        [
            ("P720p30fps16x9", 960, 720, 60),
            ("P720p60fps16x9", 960, 720, 120),
            ("P240p30fps4x3", 320, 240, 60)
        ]
    );
    for rendition in &out.renditions {
        let (codec, w, h, seconds) = probe(&rendition.data);
        assert_eq!(
            (codec.as_str(), w, h),
            ("h264", rendition.width, rendition.height)
        );
        assert!(
            (seconds - 2.0).abs() < 0.2,
            "{}: {seconds}",
            rendition.spec.name
        );
    }
}

#[test]
fn a_30fps_source_is_never_raised_to_60() {
    let out = transcode("h264_720p.ts", "P720p60fps16x9").unwrap();
    assert_eq!(out.renditions[0].frames, 60);
}

#[test]
fn timestamps_and_audio_are_kept_from_the_source() {
    let source = std::fs::read(clip("h264_720p.ts")).unwrap();
    let source_starts = start_times(&source);
    let out = transcode("h264_720p.ts", "P360p30fps16x9,P144p30fps16x9").unwrap();
    for rendition in &out.renditions {
        let starts = start_times(&rendition.data);
        assert_eq!(starts.len(), 2, "video and audio: {starts:?}");
        for (kind, start) in &starts {
            let (_, source_start) = source_starts.iter().find(|(k, _)| k == kind).unwrap();
            assert!(
                (start - source_start).abs() < 0.001,
                "{kind}: {start} vs {source_start}"
            );
        }
    }
}

#[test]
fn inputs_without_decodable_video_are_undecodable() {
    for name in ["audio_only.ts", "truncated.ts"] {
        assert!(
            matches!(
                transcode(name, "P240p30fps16x9"),
                Err(TranscodeError::Undecodable(_))
            ),
            "{name}"
        );
    }
    let backend = CpuBackend::new(EncoderSettings::default());
    let profiles = from_profiles(&parse_profile_list("P240p30fps16x9").unwrap());
    for junk in [
        Bytes::new(),
        Bytes::from_static(&[0x47; 188 * 4]),
        Bytes::from(vec![0xabu8; 50_000]),
    ] {
        assert!(matches!(
            backend.transcode(junk, &profiles, &Default::default()),
            Err(TranscodeError::Undecodable(_))
        ));
    }
}
