//! `lpgpu demo`, as a newcomer runs it: it finishes, leaves a playable HLS
//! ladder in its output directory and nothing behind in the temp directory.

use std::process::Command;

#[test]
fn the_demo_leaves_a_playable_ladder() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lpgpu"))
        .args(["demo", "--profiles", "P360p30fps16x9,P240p30fps16x9"])
        .current_dir(dir.path())
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
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("lpgpu-demo-"))
        .collect();
    assert!(left.is_empty(), "the demo left {left:?}");
}
