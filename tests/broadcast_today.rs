//! `lpgpu broadcast --orch-addr` (today's wire, offchain) through a
//! go-livepeer-style orchestrator written from the spec alone
//! (`tests/interop/bo_orchestrator.py`), each its own process: an input
//! error is not retried, a restarted orchestrator (new key, old tokens
//! refused) costs no segment, and every session is ended.

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Killed, first_line, free_port, today};

fn orchestrator(port: u16, log: &Path, extra: &[&str]) -> Killed {
    let mut child = Command::new(today::python())
        .arg(today::script("bo_orchestrator.py"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--log")
        .arg(log)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting bo_orchestrator.py");
    let line = first_line(&mut child);
    assert!(line.starts_with("listening on"), "{line:?}");
    Killed(child)
}

fn events(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn segments_done(log: &Path) -> Vec<(i64, String)> {
    events(log)
        .iter()
        .filter(|e| e["event"] == "segment")
        .map(|e| {
            (
                e["seq"].as_i64().unwrap(),
                e["result"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn broadcast(port: u16, input: &Path, out: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_lpgpu"))
        .args(["broadcast", "--orch-addr", &format!("127.0.0.1:{port}")])
        .args(["--profiles", "P240p30fps16x9,P144p30fps16x9"])
        .arg("--input")
        .arg(input)
        .arg("--out")
        .arg(out)
        .args(["--max-in-flight", "2"])
        .env_remove("LPGPU_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting lpgpu broadcast")
}

#[test]
fn an_input_error_is_not_retried_and_the_rest_of_the_stream_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("orchestrator.log");
    let port = free_port();
    let _orchestrator = orchestrator(port, &log, &["--fail", "1:No keyframes in input"]);
    let out = dir.path().join("out");
    let output = broadcast(port, &common::clip("h264_360p_6s.ts"), &out)
        .wait_with_output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stdout.contains("segment 1 failed: No keyframes in input"),
        "{stdout}"
    );
    assert!(
        stdout.contains("3 segments, 1 failed, 4 renditions"),
        "{stdout}"
    );
    let done = segments_done(&log);
    // Seq 1 was sent once: lpms's input errors are not retried.
    assert_eq!(
        done.iter().filter(|(seq, _)| *seq == 1).count(),
        1,
        "{done:?}"
    );
    for seq in [0, 2] {
        assert!(done.contains(&(seq, "data".into())), "{done:?}");
    }
    // The ladder is written as for the 2018 wire; sessions are ended.
    let playlists = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "m3u8")
        })
        .count();
    assert!(playlists >= 3, "master and two media playlists");
    let ended = events(&log)
        .iter()
        .filter(|e| e["event"] == "end_session" && e["ok"] == true)
        .count();
    assert!(ended >= 1, "{:?}", events(&log));
}

#[test]
fn a_restarted_orchestrator_costs_no_segment() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("long.ts");
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t",
            "20",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "60",
        ])
        .args(["-c:a", "aac", "-f", "mpegts"])
        .arg(&input)
        .status()
        .unwrap();
    assert!(status.success());
    let log = dir.path().join("orchestrator.log");
    let port = free_port();
    let first = orchestrator(port, &log, &[]);
    let out = dir.path().join("out");
    let broadcaster = broadcast(port, &input, &out);
    // Mid-stream, the orchestrator dies and comes back on the same port
    // with a new key: tokens it issued before are refused.
    let deadline = Instant::now() + Duration::from_secs(60);
    while segments_done(&log).len() < 3 {
        assert!(Instant::now() < deadline, "{:?}", events(&log));
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(first);
    let _second = orchestrator(port, &log, &[]);
    let output = broadcaster.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("10 segments, 0 failed, 20 renditions"),
        "{stdout}"
    );
    let sessions: std::collections::BTreeSet<String> = events(&log)
        .iter()
        .filter(|e| e["event"] == "segment" && e["result"] == "data")
        .map(|e| e["session"].as_str().unwrap().to_string())
        .collect();
    assert!(
        sessions.len() >= 2,
        "a new session after the restart: {sessions:?}"
    );
}

/// `--profiles FILE` takes go-livepeer's `-transcodingOptions` JSON: an
/// HEVC rendition and an H.264 one with its own name, profile and GOP go to
/// the orchestrator as `VideoProfile`s, and come back into the HLS ladder
/// under their names (a name that is no file name made one), with the
/// master playlist naming each codec. A VP9 rendition, which HLS cannot
/// carry in MPEG-TS, is refused before anything is sent.
#[test]
fn a_transcoding_options_file_makes_an_hevc_and_h264_ladder() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("orchestrator.log");
    let port = free_port();
    // go-livepeer's default set lacks HEVC encoding (16); the peer has it.
    let _orchestrator = orchestrator(port, &log, &["--extra-capability", "16"]);
    let options = dir.path().join("ladder.json");
    std::fs::write(
        &options,
        r#"[{"name":"hevc-240","width":426,"height":240,"bitrate":300000,"fps":30,"encoder":"HEVC"},
            {"name":"low/144","width":256,"height":144,"bitrate":200000,"fps":30,
             "profile":"H264ConstrainedHigh","gop":"1"}]"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    let output = Command::new(env!("CARGO_BIN_EXE_lpgpu"))
        .args(["broadcast", "--orch-addr", &format!("127.0.0.1:{port}")])
        .arg("--profiles")
        .arg(&options)
        .arg("--input")
        .arg(common::clip("h264_360p_6s.ts"))
        .arg("--out")
        .arg(&out)
        .env_remove("LPGPU_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("3 segments, 0 failed, 6 renditions"),
        "{stdout}"
    );
    let files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let named = |suffix: &str| {
        files
            .iter()
            .find(|f| f.ends_with(suffix))
            .unwrap_or_else(|| panic!("no *{suffix} in {files:?}"))
            .clone()
    };
    let master = named("index.m3u8");
    let master = std::fs::read_to_string(out.join(master)).unwrap();
    assert!(
        master.contains("hvc1.") && master.contains("avc1."),
        "{master}"
    );
    named("_hevc-240.m3u8");
    named("_low_144.m3u8");
    let hevc = std::fs::read(out.join(named("_hevc-240_0.ts"))).unwrap();
    let (codec, width, height, _) = common::probe(&hevc);
    assert_eq!((codec.as_str(), width, height), ("hevc", 426, 240));
    let h264 = std::fs::read(out.join(named("_low_144_2.ts"))).unwrap();
    assert_eq!(common::probe(&h264).0, "h264");

    std::fs::write(
        &options,
        r#"[{"name":"vp9","width":426,"height":240,"bitrate":300000,"fps":30,"encoder":"VP9"}]"#,
    )
    .unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_lpgpu"))
        .args(["broadcast", "--orch-addr", &format!("127.0.0.1:{port}")])
        .arg("--profiles")
        .arg(&options)
        .arg("--input")
        .arg(common::clip("h264_360p_6s.ts"))
        .arg("--out")
        .arg(dir.path().join("refused"))
        .env_remove("LPGPU_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("HLS"), "{stderr}");
}
