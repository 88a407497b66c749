//! `lpgpu demo`, as a newcomer runs it: it finishes, leaves a playable HLS
//! ladder in its output directory and nothing behind in the temp directory.

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

use std::process::Command;

#[test]
fn the_demo_leaves_a_playable_ladder() {
    let dir = tempfile::tempdir().unwrap();
    // A temp directory of its own, so another demo running beside it (the
    // player test) is not taken for leftovers.
    let temp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lpgpu"))
        .args(["demo", "--profiles", "P360p30fps16x9,P240p30fps16x9"])
        .current_dir(dir.path())
        .env("TMPDIR", temp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("3 segments, 0 failed, 6 renditions"),
        "{stdout}"
    );
    let master = std::fs::read_dir(dir.path().join("demo-out"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name().unwrap().len() == 64 + 5 && p.extension().is_some_and(|e| e == "m3u8")
        })
        .expect("a master playlist");
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration,nb_programs",
            "-of",
            "csv=p=0",
        ])
        .arg(&master)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&probe.stdout);
    let (programs, duration) = text.trim().split_once(',').expect("programs,duration");
    assert_eq!(programs, "2");
    assert!(
        (duration.parse::<f64>().unwrap() - 6.0).abs() < 0.2,
        "{duration}"
    );
    // The demo's scratch directory (keys, ledger, clip) is gone.
    let left: Vec<_> = std::fs::read_dir(temp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("lpgpu-demo-"))
        .collect();
    assert!(left.is_empty(), "the demo left {left:?}");
}

/// `lpgpu demo --serve`: the folder's player page plays every rendition in
/// headless Chromium (hls.js from the folder), with no console errors.
#[test]
fn the_demo_serves_a_player_page_that_plays_every_rendition() {
    use std::io::{BufRead, BufReader};
    let browser = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser.join("node_modules/playwright-core").exists()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Debian's chromium and tests/browser's playwright-core: run .ci/setup"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_lpgpu"))
        .args(["demo", "--profiles", "P360p30fps16x9,P240p30fps16x9"])
        .args(["--serve", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env("TMPDIR", dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = demo.stdout.take().unwrap();
    let _demo = Killed(demo);
    let mut said = Vec::new();
    let url = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            said.push(line.clone());
            line.strip_prefix("serving ")
                .and_then(|rest| rest.split_whitespace().nth(2).map(str::to_string))
        })
        .unwrap_or_else(|| panic!("no serving line: {said:#?}"));
    let out = dir.path().join("demo-out");
    for name in ["index.html", "index.m3u8", "hls.min.js"] {
        assert!(out.join(name).is_file(), "{name} is missing");
    }
    let shot = dir.path().join("player.png");
    let run = Command::new("node")
        .arg(browser.join("player_page.mjs"))
        .arg(&url)
        .arg(&shot)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    println!("{seen}");
    assert_eq!(seen["hls"], true, "hls.js loaded from the folder: {seen}");
    let played = seen["played"].as_array().unwrap();
    assert_eq!(played.len(), 2, "{seen}");
    let sizes: Vec<(u64, u64)> = played
        .iter()
        .map(|p| {
            assert!(p["time"].as_f64().unwrap() > 1.0, "{seen}");
            (p["width"].as_u64().unwrap(), p["height"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(sizes, [(640, 360), (426, 240)], "{seen}");
    let table = seen["table"].as_array().unwrap();
    assert_eq!(
        table[0],
        serde_json::json!(["P360p30fps16x9", "640×360", "1200 kbit/s", "3"])
    );
    assert_eq!(seen["console_errors"], serde_json::json!([]), "{seen}");
    assert!(
        seen["screenshot_bytes"].as_u64().unwrap() > 20_000,
        "{seen}"
    );
    if let Some(keep) = std::env::var_os("LPGPU_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}

#[test]
fn serve_refuses_an_address_off_loopback_before_the_demo_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lpgpu"))
        .args(["demo", "--serve", "0.0.0.0:8080"])
        .current_dir(dir.path())
        .env("TMPDIR", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("loopback only"), "{stderr}");
    // Nothing ran: no ladder was written.
    assert!(!dir.path().join("demo-out").exists());
}
