//! Today's broadcaster ↔ orchestrator wire as Livepeer's own generated code
//! speaks it: `tests/interop/livepeer_gateway_check.py` loads `lp_rpc_pb2.py`
//! and `orch_info` from PyPI's livepeer-gateway (unpacked by .ci/setup), and
//! curl posts the segment over HTTP/2.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The venv's Python (with grpcio), or a panic saying to run .ci/setup.
pub fn python() -> PathBuf {
    let python = std::env::var_os("LPGPU_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3"));
    assert!(
        python.exists(),
        "{} is missing: run .ci/setup (or set LPGPU_PYTHON)",
        python.display()
    );
    python
}

pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

/// `livepeer_gateway_check.py ARGS…`: must exit 0; its stdout.
pub fn livepeer(args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(script("livepeer_gateway_check.py"))
        .args(args)
        .output()
        .expect("running livepeer_gateway_check.py");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "livepeer_gateway_check.py {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

pub fn livepeer_json(args: &[&str]) -> Value {
    let text = livepeer(args);
    let value: Value = serde_json::from_str(&text).expect("JSON from livepeer_gateway_check.py");
    assert_eq!(value["unknown"], serde_json::json!([]), "{value}");
    value
}

/// Frames of the first video stream, as ffprobe counts them.
pub fn frames(data: &[u8]) -> u64 {
    let path = std::env::temp_dir().join(format!(
        "lpgpu-frames-{}-{}.bin",
        std::process::id(),
        lpgpu::session::SessionId::random()
    ));
    std::fs::write(&path, data).unwrap();
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(&path)
        .output()
        .expect("ffprobe (run .ci/setup)");
    let _ = std::fs::remove_file(&path);
    // MPEG-TS lists the stream under its program too: the first line.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| l.trim().trim_end_matches(',').parse().ok())
        .expect("a frame count")
}

/// One segment through today's wire, every message made and read by
/// Livepeer's own code: `GetOrchestrator`, a `SegData` header, curl's
/// HTTP/2 `POST /segment`, the `TranscodeResult` decoded, each rendition
/// fetched by curl and its `pixels` checked against ffprobe's frame count.
/// Returns the decoded `OrchestratorInfo` and `TranscodeResult`.
pub fn round_trip(port: u16, segment: &Path) -> (Value, Value) {
    round_trip_with(port, segment, false)
}

/// [`round_trip`], with `calc_perceptual_hash` when `hashes`: each
/// rendition's `perceptual_hash_url` is then its url + `.phash`, fetched by
/// curl and checked to be an MPEG-7 signature of the rendition's size and
/// frame count.
pub fn round_trip_with(port: u16, segment: &Path, hashes: bool) -> (Value, Value) {
    let orch = format!("127.0.0.1:{port}");
    let info = livepeer_json(&["get-orchestrator", "--orch", &orch]);
    let token = &info["message"]["auth_token"];
    let body = std::fs::read(segment).unwrap();
    let hash = hex::encode(lpgpu::eth::keccak256(&body));
    let expiration = token["expiration"].to_string();
    let mut args = vec![
        "encode-segdata",
        "--manifest",
        "today-stream",
        "--seq",
        "4",
        "--hash",
        &hash,
        "--token",
        token["token"].as_str().unwrap(),
        "--session",
        token["session_id"].as_str().unwrap(),
        "--expiration",
        &expiration,
        "--profile",
        "P240p30fps16x9:426x240:600000:30",
        "--profile",
        "P144p30fps16x9:256x144:400000:30",
    ];
    if hashes {
        args.extend(["--calc-perceptual-hash", "--capability", "14"]);
        args.extend([
            "--capability",
            "0",
            "--capability",
            "1",
            "--capability",
            "12",
        ]);
    }
    let header = livepeer(&args);
    let dir = tempfile::tempdir().unwrap();
    let result_path = dir.path().join("result.bin");
    let out = Command::new("curl")
        .args(["--http2", "-k", "-sS", "--max-time", "60"])
        .args(["-o"])
        .arg(&result_path)
        .args(["-w", "%{http_code} %{http_version}"])
        .args(["-H", &format!("Livepeer-Segment: {}", header.trim())])
        .args(["-H", "Livepeer-Payment: ", "-H", "Content-Type: video/MP2T"])
        .arg("--data-binary")
        .arg(format!("@{}", segment.display()))
        .arg(format!("https://{orch}/segment"))
        .output()
        .expect("curl (run .ci/setup)");
    let status = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(status, "200 2", "{}", String::from_utf8_lossy(&out.stderr));
    let result = livepeer_json(&["decode-result", result_path.to_str().unwrap()]);
    let message = &result["message"];
    assert_eq!(message["seq"], 4, "{result}");
    assert_eq!(
        message["info"]["auth_token"]["session_id"], token["session_id"],
        "{result}"
    );
    let segments = message["data"]["segments"].as_array().expect("data");
    assert_eq!(segments.len(), 2, "{result}");
    let transcoder = info["message"]["transcoder"].as_str().unwrap();
    let session = token["session_id"].as_str().unwrap();
    for (rendition, name) in segments.iter().zip(["P240p30fps16x9", "P144p30fps16x9"]) {
        let url = rendition["url"].as_str().unwrap();
        assert_eq!(url, format!("{transcoder}/stream/{session}/{name}/4.ts"));
        let fetched = Command::new("curl")
            .args(["--http2", "-k", "-sS", "--fail", url])
            .output()
            .unwrap();
        assert!(fetched.status.success(), "GET {url}");
        let (codec, width, height, _) = super::probe(&fetched.stdout);
        assert_eq!(codec, "h264");
        let pixels = frames(&fetched.stdout) * u64::from(width) * u64::from(height);
        assert_eq!(rendition["pixels"].as_u64(), Some(pixels), "{rendition}");
        let hash_url = rendition["perceptual_hash_url"].as_str().unwrap_or("");
        if !hashes {
            assert_eq!(hash_url, "", "{rendition}");
            continue;
        }
        assert_eq!(hash_url, format!("{url}.phash"));
        let hash = Command::new("curl")
            .args(["--http2", "-k", "-sS", "--fail", hash_url])
            .output()
            .unwrap();
        assert!(hash.status.success(), "GET {hash_url}");
        let signature = lpgpu::protocol::signature::VideoSignature::parse(&hash.stdout)
            .unwrap_or_else(|e| panic!("{hash_url}: {e}"));
        assert_eq!((signature.width, signature.height), (width, height));
        assert_eq!(signature.frames.len() as u64, frames(&fetched.stdout));
    }
    (info, result)
}
