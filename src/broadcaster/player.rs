//! The ladder's player page, plain: `index.html` beside the master playlist,
//! playing it with hls.js (copied next to the page as `hls.min.js`, so the
//! folder plays without a network) or the browser's own HLS, with a
//! rendition picker and each rendition's size, bitrate and segment count.
//! The page embeds what it lists; it loads nothing but the folder's files.

use std::path::{Path, PathBuf};

/// One rendition as the page lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayerRendition {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub bitrate_bps: u32,
    /// Its media playlist, relative to the page.
    pub playlist: String,
    pub segments: usize,
}

/// The stable name of the master playlist's copy (the real one is named by
/// the 64-character manifest id).
pub const MASTER_ALIAS: &str = "index.m3u8";
/// The page.
pub const PAGE: &str = "index.html";
/// hls.js beside the page.
pub const HLS_JS: &str = "hls.min.js";

/// Where hls.js is taken from: `LPGPU_HLSJS`, else the npm install in the
/// source tree's `web/` (`.ci/setup` runs `npm ci` there).
pub fn hls_js_source() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("LPGPU_HLSJS") {
        return Some(PathBuf::from(path));
    }
    let bundled =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("web/node_modules/hls.js/dist/hls.min.js");
    bundled.is_file().then_some(bundled)
}

/// Text safe inside HTML and inside the page's JSON `<script>` block.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page for `renditions` of the ladder whose master is [`MASTER_ALIAS`].
pub fn page(title: &str, renditions: &[PlayerRendition]) -> String {
    let list = serde_json::to_string(
        &renditions
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name, "width": r.width, "height": r.height,
                    "bitrate": r.bitrate_bps, "playlist": r.playlist, "segments": r.segments,
                })
            })
            .collect::<Vec<_>>(),
    )
    .unwrap_or_else(|_| "[]".into())
    // Nothing in the JSON can close the script element.
    .replace("</", "<\\/");
    let rows: String = renditions
        .iter()
        .enumerate()
        .map(|(i, r)| {
            format!(
                "<tr><td>{}</td><td>{}×{}</td><td>{:.0} kbit/s</td><td>{}</td></tr>",
                escape(&r.name),
                r.width,
                r.height,
                f64::from(r.bitrate_bps) / 1000.0,
                r.segments
            ) + if i + 1 == renditions.len() { "" } else { "\n" }
        })
        .collect();
    PAGE_TEMPLATE
        .replace("{{title}}", &escape(title))
        .replace("{{rows}}", &rows)
        .replace("{{renditions}}", &list)
}

const PAGE_TEMPLATE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}}</title>
<link rel="icon" href="data:,">
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d2330; background: #f6f7f9; }
  h1 { font-size: 1.2rem; margin: 0 0 .8rem; }
  video { width: 100%; max-width: 960px; background: #000; display: block; }
  .bar { margin: .6rem 0; }
  table { border-collapse: collapse; margin-top: .6rem; background: #fff; }
  td, th { border: 1px solid #dde1e8; padding: .25rem .6rem; text-align: left; }
  #state { color: #5b6475; margin-left: .6rem; }
</style>
</head>
<body>
<h1>{{title}}</h1>
<video id="video" controls muted playsinline></video>
<div class="bar">
  <label>Rendition <select id="picker"><option value="auto">all (adaptive)</option></select></label>
  <span id="state">loading…</span>
</div>
<table>
<tr><th>rendition</th><th>size</th><th>bitrate</th><th>segments</th></tr>
{{rows}}
</table>
<script id="renditions" type="application/json">{{renditions}}</script>
<script src="hls.min.js"></script>
<script>
"use strict";
const renditions = JSON.parse(document.getElementById("renditions").textContent);
const video = document.getElementById("video");
const picker = document.getElementById("picker");
const state = document.getElementById("state");
let hls = null;
renditions.forEach((r, i) => {
  const option = document.createElement("option");
  option.value = String(i);
  option.textContent = r.name + " (" + r.width + "×" + r.height + ")";
  picker.appendChild(option);
});
function play(choice) {
  const source = choice === "auto" ? "index.m3u8" : renditions[Number(choice)].playlist;
  if (hls) { hls.destroy(); hls = null; }
  if (window.Hls && Hls.isSupported()) {
    hls = new Hls();
    hls.on(Hls.Events.ERROR, (_, data) => { if (data.fatal) state.textContent = "playback error: " + data.details; });
    hls.loadSource(source);
    hls.attachMedia(video);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = source;
  } else {
    state.textContent = "this browser plays no HLS (hls.min.js missing?): open index.m3u8 with ffplay or VLC";
    return;
  }
  state.textContent = "playing " + (choice === "auto" ? "all renditions" : renditions[Number(choice)].name);
  video.currentTime = 0;
  video.play().catch(() => {});
}
picker.addEventListener("change", () => play(picker.value));
const wanted = new URLSearchParams(location.search).get("rendition");
if (wanted !== null && renditions[Number(wanted)]) picker.value = wanted;
play(picker.value);
</script>
</body>
</html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn rendition(name: &str) -> PlayerRendition {
        PlayerRendition {
            name: name.into(),
            width: 640,
            height: 360,
            bitrate_bps: 1_200_000,
            playlist: format!("{name}.m3u8"),
            segments: 3,
        }
    }

    #[test]
    fn the_page_lists_every_rendition_and_loads_only_the_folder() {
        let html = page(
            "demo <ladder>",
            &[rendition("P360p30fps16x9"), rendition("P240p30fps16x9")],
        );
        assert!(html.contains("<title>demo &lt;ladder&gt;</title>"));
        assert!(
            html.contains("<td>P360p30fps16x9</td><td>640×360</td><td>1200 kbit/s</td><td>3</td>")
        );
        assert!(html.contains(r#""playlist":"P240p30fps16x9.m3u8""#));
        assert!(html.contains(r#"<script src="hls.min.js"></script>"#));
        for external in ["http://", "https://", "//cdn"] {
            assert!(!html.contains(external), "{external}");
        }
    }

    #[test]
    fn names_cannot_break_out_of_the_page() {
        let html = page("t", &[rendition("</script><b>x")]);
        assert!(!html.contains("</script><b>"));
    }
}
