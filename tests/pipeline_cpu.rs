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

/// ffprobe's streams of a file: (codec_type, codec_name) in order.
fn streams(data: &[u8], extension: &str) -> Vec<(String, String)> {
    let path = std::env::temp_dir().join(format!(
        "lpgpu-streams-{}-{}.{extension}",
        std::process::id(),
        data.len()
    ));
    std::fs::write(&path, data).unwrap();
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name",
        ])
        .args(["-of", "json"])
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).ok();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["codec_type"].as_str().unwrap().to_string(),
                s["codec_name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every output container × every audio layout real segments carry: AAC in
/// ADTS, MP3, AC-3, Opus, two audio tracks, none. Each gives renditions
/// ffprobe reads, the video as H.264 and the (first) audio copied as it
/// came, in MPEG-TS and in MP4 (where AAC must lose its ADTS headers and
/// every stream its MPEG-TS tag).
#[test]
fn every_container_takes_every_audio_layout() {
    use lpgpu::pipeline::{Container, RenditionSpec};
    let dir = tempfile::tempdir().unwrap();
    let video = "-f lavfi -i testsrc2=size=320x180:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 2";
    let layouts: [(&str, &str, Option<&str>); 6] = [
        ("aac", "-map 0:v -map 1:a -c:a aac", Some("aac")),
        ("mp3", "-map 0:v -map 1:a -c:a libmp3lame", Some("mp3")),
        ("ac3", "-map 0:v -map 1:a -c:a ac3", Some("ac3")),
        ("opus", "-map 0:v -map 1:a -c:a libopus", Some("opus")),
        ("two", "-map 0:v -map 1:a -map 1:a -c:a aac", Some("aac")),
        ("none", "-map 0:v -an", None),
    ];
    let backend = CpuBackend::new(EncoderSettings::default());
    for (name, audio, codec) in layouts {
        let path = dir.path().join(format!("{name}.ts"));
        let status = std::process::Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y"])
            .args(video.split_whitespace())
            .args("-c:v libx264 -preset ultrafast -g 60".split_whitespace())
            .args(audio.split_whitespace())
            .args(["-f", "mpegts"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success(), "making {name}");
        let segment = Bytes::from(std::fs::read(&path).unwrap());
        let mut specs = Vec::new();
        for container in [Container::MpegTs, Container::Mp4] {
            let mut spec = RenditionSpec::from(parse_profile_list("P144p30fps16x9").unwrap()[0]);
            spec.name = format!("{name}-{}", container.extension());
            spec.container = container;
            specs.push(spec);
        }
        let out = backend
            .transcode(segment, &specs, &Default::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for rendition in &out.renditions {
            let found = streams(&rendition.data, rendition.spec.container.extension());
            let mut expected = vec![("video".to_string(), "h264".to_string())];
            if let Some(codec) = codec {
                expected.push(("audio".to_string(), codec.to_string()));
            }
            assert_eq!(found, expected, "{}", rendition.spec.name);
        }
    }
}

/// HEVC, VP8 and VP9 renditions in the containers LPMS writes (MPEG-TS for
/// HEVC, Matroska for VP8/VP9) and in MP4 where it carries them: ffprobe
/// reads the codec asked for at the rendition's size, every picture there,
/// the AAC audio copied.
#[test]
fn hevc_vp8_and_vp9_renditions_are_what_ffprobe_says() {
    use lpgpu::pipeline::{Container, RenditionSpec, VideoCodec};
    let backend = CpuBackend::new(EncoderSettings::default());
    let segment = Bytes::from(std::fs::read(clip("h264_720p.ts")).unwrap());
    let cases = [
        (VideoCodec::Hevc, Container::MpegTs, "hevc"),
        (VideoCodec::Hevc, Container::Mp4, "hevc"),
        (VideoCodec::Vp8, Container::Matroska, "vp8"),
        (VideoCodec::Vp9, Container::Matroska, "vp9"),
        (VideoCodec::Vp9, Container::Mp4, "vp9"),
    ];
    let specs: Vec<RenditionSpec> = cases
        .iter()
        .map(|(codec, container, name)| {
            let mut spec = RenditionSpec::from(parse_profile_list("P240p30fps16x9").unwrap()[0]);
            spec.name = format!("{name}-{}", container.extension());
            spec.codec = *codec;
            spec.container = *container;
            spec
        })
        .collect();
    let out = backend
        .transcode(segment, &specs, &Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.renditions.len(), cases.len());
    for (rendition, (_, container, codec)) in out.renditions.iter().zip(cases) {
        let found = streams(&rendition.data, container.extension());
        assert_eq!(
            found,
            [
                ("video".to_string(), codec.to_string()),
                ("audio".to_string(), "aac".to_string())
            ],
            "{}",
            rendition.spec.name
        );
        let (probed, width, height, _) = probe(&rendition.data);
        assert_eq!(probed, codec);
        assert_eq!((width, height), (426, 240), "{}", rendition.spec.name);
        assert_eq!(rendition.frames, 60, "{}", rendition.spec.name);
        assert_eq!((rendition.width, rendition.height), (426, 240));
    }
}

/// The codecs issue's "done when", on the command line: `lpgpu transcode`
/// with a go-livepeer `-transcodingOptions` file asking H.264, HEVC, VP9 and
/// VP8 renditions turns H.264, HEVC, VP8, VP9 and H.264 4:2:2, 4:4:4 and
/// 10-bit inputs into renditions of the asked codec and size, 8-bit 4:2:0
/// as LPMS makes them, every picture there (ffprobe).
#[test]
fn a_transcoding_options_file_turns_every_input_codec_into_every_output_codec() {
    let dir = tempfile::tempdir().unwrap();
    let source = "-f lavfi -i testsrc2=size=480x270:rate=25 -t 1";
    let inputs = [
        ("h264.ts", "-c:v libx264 -preset ultrafast -g 25 -f mpegts"),
        (
            "hevc.ts",
            "-c:v libx265 -x265-params log-level=error -g 25 -f mpegts",
        ),
        ("vp9.webm", "-c:v libvpx-vp9 -b:v 300k -g 25 -f webm"),
        ("vp8.webm", "-c:v libvpx -b:v 300k -g 25 -f webm"),
        (
            "h264_422.ts",
            "-c:v libx264 -preset ultrafast -pix_fmt yuv422p -g 25 -f mpegts",
        ),
        (
            "h264_444.ts",
            "-c:v libx264 -preset ultrafast -pix_fmt yuv444p -g 25 -f mpegts",
        ),
        (
            "h264_420_10bit.ts",
            "-c:v libx264 -preset ultrafast -pix_fmt yuv420p10le -g 25 -f mpegts",
        ),
        (
            "h264_422_10bit.ts",
            "-c:v libx264 -preset ultrafast -pix_fmt yuv422p10le -g 25 -f mpegts",
        ),
        (
            "h264_444_10bit.ts",
            "-c:v libx264 -preset ultrafast -pix_fmt yuv444p10le -g 25 -f mpegts",
        ),
    ];
    let ladder = dir.path().join("transcodingOptions.json");
    std::fs::write(
        &ladder,
        r#"[
          {"name": "h264", "width": 320, "height": 180, "bitrate": 400000, "fps": 25, "profile": "H264Main", "gop": "1"},
          {"name": "hevc", "width": 256, "height": 144, "bitrate": 200000, "encoder": "HEVC"},
          {"name": "vp9", "width": 192, "height": 108, "bitrate": 150000, "encoder": "VP9", "gop": "intra"},
          {"width": 160, "height": 90, "bitrate": 100000, "encoder": "VP8"}
        ]"#,
    )
    .unwrap();
    for (input, encode) in inputs {
        let path = dir.path().join(input);
        let status = std::process::Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y"])
            .args(source.split_whitespace())
            .args(encode.split_whitespace())
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success(), "making {input}");
        let out = dir.path().join(format!("out-{input}"));
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_lpgpu"))
            .arg("transcode")
            .arg(&path)
            .arg("--profiles")
            .arg(&ladder)
            .arg("--out")
            .arg(&out)
            .args(["--backend", "cpu"])
            .env_remove("LPGPU_CONFIG")
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{input}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        for (file, codec, width, height) in [
            ("h264.ts", "h264", 320, 180),
            ("hevc.ts", "hevc", 256, 144),
            ("vp9.mkv", "vp9", 192, 108),
            ("custom_160x90_100000.mkv", "vp8", 160, 90),
        ] {
            let rendition = out.join(file);
            let probed = std::process::Command::new("ffprobe")
                .args(["-v", "error", "-select_streams", "v:0", "-count_frames"])
                .args([
                    "-show_entries",
                    "stream=codec_name,width,height,pix_fmt,nb_read_frames",
                    "-of",
                    "csv=p=0",
                ])
                .arg(&rendition)
                .output()
                .unwrap();
            // MPEG-TS lists the stream under its program too: the first line.
            let text = String::from_utf8_lossy(&probed.stdout).to_string();
            let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            assert_eq!(
                line,
                format!("{codec},{width},{height},yuv420p,25"),
                "{input} -> {file}"
            );
        }
    }
}

/// The ffmpeg CLI's own `signature` of a rendition's video (binary format).
fn cli_signature(data: &[u8], extension: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join(format!("rendition.{extension}"));
    let output = dir.path().join("cli.bin");
    std::fs::write(&input, data).unwrap();
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&input)
        .args(["-map", "0:v:0", "-vf"])
        .arg(format!(
            "signature=format=binary:filename={}",
            output.display()
        ))
        .args(["-f", "null", "-"])
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(output).unwrap()
}

/// Capability 14: each rendition's perceptual hash is the MPEG-7 signature
/// of the pictures its encoder got (as LPMS makes it), and matches what the
/// ffmpeg CLI's `signature` filter computes from the rendition itself, frame
/// for frame; a rendition of other pictures does not match.
#[test]
fn perceptual_hashes_match_the_ffmpeg_clis_signature_of_each_rendition() {
    use lpgpu::pipeline::{Container, RenditionSpec, SegmentOptions, VideoCodec};
    use lpgpu::protocol::signature::{MAX_FRAME_DISTANCE, VideoSignature};
    let backend = CpuBackend::new(EncoderSettings::default());
    let mut specs = from_profiles(&parse_profile_list("P360p30fps16x9,P144p30fps16x9").unwrap());
    let mut vp9 = RenditionSpec::from(parse_profile_list("P240p30fps16x9").unwrap()[0]);
    vp9.name = "vp9".into();
    vp9.codec = VideoCodec::Vp9;
    vp9.container = Container::Matroska;
    specs.push(vp9);
    let options = SegmentOptions {
        perceptual_hash: true,
        ..Default::default()
    };
    let hashed = |path: &std::path::Path| {
        backend
            .transcode(Bytes::from(std::fs::read(path).unwrap()), &specs, &options)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let out = hashed(&clip("h264_720p.ts"));
    // Other pictures: the same test pattern's shapes would come close.
    let dir = tempfile::tempdir().unwrap();
    let mandelbrot = dir.path().join("mandelbrot.ts");
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "mandelbrot=size=640x360:rate=30",
        ])
        .args([
            "-t",
            "2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-f",
            "mpegts",
        ])
        .arg(&mandelbrot)
        .status()
        .unwrap();
    assert!(status.success());
    let other = hashed(&mandelbrot);
    for (rendition, unrelated) in out.renditions.iter().zip(&other.renditions) {
        let name = &rendition.spec.name;
        let ours = VideoSignature::parse(rendition.perceptual_hash.as_ref().expect("a hash"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (ours.width, ours.height),
            (rendition.width, rendition.height)
        );
        assert_eq!(ours.frames.len() as u64, rendition.frames, "{name}");
        let cli = VideoSignature::parse(&cli_signature(
            &rendition.data,
            rendition.spec.container.extension(),
        ))
        .unwrap();
        assert_eq!(cli.frames.len(), ours.frames.len(), "{name}");
        assert_eq!((cli.width, cli.height), (ours.width, ours.height));
        let matched = ours.mean_frame_distance(&cli).unwrap();
        let control = VideoSignature::parse(unrelated.perceptual_hash.as_ref().unwrap())
            .unwrap()
            .mean_frame_distance(&cli)
            .unwrap();
        println!(
            "{name}: mean frame distance {matched:.1} to the CLI's, {control:.1} to other pictures"
        );
        // Out of 760: the same pictures before and after a lossy encode stay
        // within a few percent; other pictures are near random (~340).
        assert!(matched < 40.0, "{name}: {matched}");
        assert!(
            control > 150.0 && control > 5.0 * matched,
            "{name}: {control}"
        );
        assert!(control < f64::from(MAX_FRAME_DISTANCE));
    }
    // Not asked for, not made.
    let plain = transcode("h264_720p.ts", "P144p30fps16x9").unwrap();
    assert!(plain.renditions[0].perceptual_hash.is_none());
}
