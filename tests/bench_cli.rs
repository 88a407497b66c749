//! `lpgpu bench` as operators run it: JSON with the documented fields, CSV
//! lines, an input cut into segments in-process, and the ffmpeg baseline.

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

mod common;

use std::process::Command;

fn bench(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_lpgpu"))
        .arg("bench")
        .args(args)
        .args([
            "--backend",
            "cpu",
            "--profiles",
            "P240p30fps16x9,P144p30fps16x9",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn json_reports_the_documented_fields_and_the_baseline() {
    let clip = common::clip("h264_720p.ts");
    let json: serde_json::Value = serde_json::from_str(&bench(&[
        "--input",
        clip.to_str().unwrap(),
        "--segments",
        "2",
        "--concurrency",
        "2",
        "--json",
        "--baseline",
        "ffmpeg",
    ]))
    .unwrap();
    assert_eq!(json["segments"], 4);
    assert_eq!(json["backend"], "cpu");
    let source = json["source_seconds"].as_f64().unwrap();
    assert!((source - 8.0).abs() < 0.2, "{source}");
    let wall = json["transcode_seconds"].as_f64().unwrap();
    let ratio = json["realtime_ratio"].as_f64().unwrap();
    assert!(
        (ratio - wall / 4.0).abs() < 1e-6,
        "ratio {ratio} = wall {wall} / 4 s per session"
    );
    assert!(json["segments_per_second"].as_f64().unwrap() > 0.0);
    assert!(json["p95_ms"].as_f64().unwrap() >= json["p50_ms"].as_f64().unwrap());
    assert_eq!(json["per_profile"].as_array().unwrap().len(), 2);
    assert!(json["machine"]["cores"].as_u64().unwrap() >= 1);
    assert!(json["baseline"]["speedup"].as_f64().unwrap() > 0.0);
}

#[test]
fn csv_has_one_line_per_segment_of_a_cut_input() {
    // 2 s of 60 fps with a keyframe each second, cut at 1 s: two segments.
    let clip = common::clip("h264_60fps_4x3.ts");
    let out = bench(&[
        "--input",
        clip.to_str().unwrap(),
        "--segments",
        "3",
        "--segment-seconds",
        "1",
        "--csv",
    ]);
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("timestamp,session,segment,seg_dur,transcode_time,frames")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 3);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.len(), 6);
        assert_eq!(row[2], i.to_string());
        let seg_dur: f64 = row[3].parse().unwrap();
        assert!((seg_dur - 1.0).abs() < 0.05, "{seg_dur}");
        assert_eq!(row[5], "60");
    }
}

#[test]
fn a_sweep_finds_the_largest_concurrency_within_the_sizing_rule() {
    let clip = common::clip("h264_360p_6s.ts");
    let json: serde_json::Value = serde_json::from_str(&bench(&[
        "--input",
        clip.to_str().unwrap(),
        "--segments",
        "1",
        "--concurrency",
        "1..2",
        "--json",
    ]))
    .unwrap();
    let steps = json["sweep"].as_array().unwrap();
    assert!(!steps.is_empty() && steps.len() <= 2);
    assert_eq!(steps[0]["concurrency"], 1);
    // The limit is the last step at or under 0.8, consistent with the steps.
    let within: Vec<u64> = steps
        .iter()
        .take_while(|s| s["realtime_ratio"].as_f64().unwrap() <= 0.8)
        .map(|s| s["concurrency"].as_u64().unwrap())
        .collect();
    assert_eq!(json["max_concurrency"].as_u64(), within.last().copied());
    assert_eq!(json["sizing_ratio"], 0.8);
}

#[test]
fn test_clip_writes_a_clip_bench_can_use_and_refuses_bad_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.ts");
    let test_clip = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_lpgpu"))
            .arg("test-clip")
            .arg("--out")
            .arg(&path)
            .args(args)
            .output()
            .unwrap()
    };
    for (args, complaint) in [
        (&["--size", "640"][..], "--size must be WxH"),
        (&["--size", "641x360"][..], "--size must be WxH"),
        (&["--size", "8x8"][..], "--size must be WxH"),
        (&["--size", "axb"][..], "--size must be WxH"),
        (
            &["--seconds", "0"][..],
            "--seconds must be between 1 and 600",
        ),
    ] {
        let out = test_clip(args);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(complaint),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!path.exists(), "{args:?} wrote a file");
    }
    let out = test_clip(&["--seconds", "2", "--size", "320x180"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (codec, width, height, seconds) = common::probe(&std::fs::read(&path).unwrap());
    assert_eq!((codec.as_str(), width, height), ("h264", 320, 180));
    assert!((seconds - 2.0).abs() < 0.1, "{seconds}");
}

#[test]
fn a_sweep_draws_its_sizing_plot_as_svg_with_the_baseline() {
    let clip = common::clip("h264_360p_6s.ts");
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("sizing.svg");
    let json: serde_json::Value = serde_json::from_str(&bench(&[
        "--input",
        clip.to_str().unwrap(),
        "--segments",
        "1",
        "--concurrency",
        "1..2",
        "--baseline",
        "ffmpeg",
        "--json",
        "--plot",
        plot.to_str().unwrap(),
    ]))
    .unwrap();
    let svg = std::fs::read_to_string(&plot).unwrap();
    // An XML parser nobody here wrote must take it as an SVG document.
    let parsed = Command::new("python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as ET; r = ET.parse(sys.argv[1]).getroot(); \
             print(r.tag, len(r.findall('.//{http://www.w3.org/2000/svg}polyline')))",
        ])
        .arg(&plot)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&parsed.stdout);
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    // Two curves: lpgpu's and the ffmpeg CLI's.
    assert_eq!(said.trim(), "{http://www.w3.org/2000/svg}svg 2", "{svg}");
    assert!(svg.contains("sizing rule 0.8"));
    assert_eq!(
        json["baseline_sweep"].as_array().unwrap().len(),
        json["sweep"].as_array().unwrap().len()
    );
    match json["max_concurrency"].as_u64() {
        Some(n) => assert!(svg.contains(&format!("chosen: {n} sessions")), "{svg}"),
        None => assert!(svg.contains("no session count stays within 0.8"), "{svg}"),
    }
}

#[test]
fn plot_needs_a_sweep() {
    let clip = common::clip("h264_360p_6s.ts");
    let out = Command::new(env!("CARGO_BIN_EXE_lpgpu"))
        .args(["bench", "--backend", "cpu", "--input"])
        .arg(&clip)
        .args(["--plot", "/tmp/never.svg"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--plot draws a sweep"));
}

/// `--profiles FILE`: a go-livepeer `-transcodingOptions` ladder of HEVC
/// and VP9 renditions is benched, and the ffmpeg baseline encodes the same
/// codecs with the same options.
#[test]
fn a_transcoding_options_ladder_is_benched_with_its_codecs() {
    let clip = common::clip("h264_720p.ts");
    let dir = tempfile::tempdir().unwrap();
    let ladder = dir.path().join("ladder.json");
    std::fs::write(
        &ladder,
        r#"[{"name": "hevc-240", "width": 426, "height": 240, "bitrate": 400000, "encoder": "HEVC"},
            {"name": "vp9-144", "width": 256, "height": 144, "bitrate": 200000, "encoder": "VP9"}]"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lpgpu"))
        .arg("bench")
        .args(["--backend", "cpu", "--input", clip.to_str().unwrap()])
        .arg("--profiles")
        .arg(&ladder)
        .args(["--segments", "1", "--json", "--baseline", "ffmpeg"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["profiles"], serde_json::json!(["hevc-240", "vp9-144"]));
    assert_eq!(json["per_profile"].as_array().unwrap().len(), 2);
    assert!(json["baseline"]["speedup"].as_f64().unwrap() > 0.0);
}
