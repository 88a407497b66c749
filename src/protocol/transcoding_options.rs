//! go-livepeer's `-transcodingOptions` JSON file: an array of
//! `{name, width, height, bitrate, fps, fpsDen, profile, gop, encoder,
//! colorDepth, chromaFormat, quality}`, read with LPMS's rules
//! (`ffmpeg.ParseProfiles`) and error texts, into today's wire's
//! `VideoProfile`s as go-livepeer converts them
//! (`common.FFmpegProfiletoNetProfile`). Plain code: the caller reads the
//! file.
//!
//! The rules: keys match case-insensitively and unknown keys are ignored
//! (Go's `encoding/json`); a missing name is `custom_WxH_bitrate`; `gop` is
//! a string, `"intra"` (every picture a keyframe, -1 on the wire) or
//! seconds ≥ 0 (milliseconds on the wire, truncated); `profile` is one of
//! `""`, `none`, `h264baseline`, `h264main`, `h264high`,
//! `h264constrainedhigh` in any case; `encoder` is `""` (H.264), `H.264`,
//! `HEVC`, `VP8` or `VP9`, exactly; `chromaFormat` 0, 1, 2 is 4:2:0,
//! 4:2:2, 4:4:4; the format is MPEG-TS (the file has no format key).

use serde_json::Value;

use crate::proto::{VideoProfile, video_profile};

/// Why a transcodingOptions file was refused: LPMS's and go-livepeer's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranscodingOptionsError {
    #[error("unable to unmarshal the passed transcoding option: {0}")]
    Json(String),
    #[error("cannot parse the GOP value in the transcoding options: {0}")]
    Gop(String),
    #[error("invalid gop value {0}. Please set it to a positive value")]
    NegativeGop(String),
    #[error("unable to parse the H264 encoder profile: unknown VideoProfile profile name")]
    Profile,
    #[error("Unable to parse encoder profile, unknown encoder: {0} unknown codec name")]
    Encoder(String),
    #[error("unknown VideoProfile ChromaFormat {0}")]
    ChromaFormat(i64),
    #[error("No transcoding profiles found")]
    Empty,
}

/// The largest file read (a ladder is a few hundred bytes).
pub const MAX_BYTES: usize = 1 << 20;

/// Parses a transcodingOptions file's text.
pub fn parse(text: &[u8]) -> Result<Vec<VideoProfile>, TranscodingOptionsError> {
    let json = |why: String| TranscodingOptionsError::Json(why);
    if text.len() > MAX_BYTES {
        return Err(json(format!("larger than {MAX_BYTES} bytes")));
    }
    let value: Value = serde_json::from_slice(text).map_err(|e| json(e.to_string()))?;
    let entries = match value {
        Value::Array(entries) => entries,
        other => {
            return Err(json(format!(
                "json: cannot unmarshal {} into Go value of type []ffmpeg.JsonProfile",
                go_kind(&other)
            )));
        }
    };
    let mut profiles = Vec::with_capacity(entries.len());
    for entry in &entries {
        profiles.push(parse_entry(entry)?);
    }
    if profiles.is_empty() {
        return Err(TranscodingOptionsError::Empty);
    }
    Ok(profiles)
}

/// What Go's decoder calls a JSON value's kind in its errors.
fn go_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// One field of an entry, found as Go finds it: the exact key first, else
/// a key equal ignoring ASCII case (a file that spells one field two ways
/// gets one of them).
fn field<'v>(entry: &'v serde_json::Map<String, Value>, name: &str) -> Option<&'v Value> {
    entry.get(name).or_else(|| {
        entry
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
            .next_back()
    })
}

fn mismatch(value: &Value, name: &str, go_type: &str) -> TranscodingOptionsError {
    TranscodingOptionsError::Json(format!(
        "json: cannot unmarshal {} into Go struct field JsonProfile.{name} of type {go_type}",
        go_kind(value)
    ))
}

/// A signed integer field (null or absent: 0), within `min..=max`.
fn integer(
    entry: &serde_json::Map<String, Value>,
    name: &str,
    go_type: &str,
    range: (i64, i64),
) -> Result<i64, TranscodingOptionsError> {
    match field(entry, name) {
        None | Some(Value::Null) => Ok(0),
        Some(value @ Value::Number(number)) => number
            .as_i64()
            .filter(|n| (range.0..=range.1).contains(n))
            .ok_or_else(|| mismatch(value, name, go_type)),
        Some(value) => Err(mismatch(value, name, go_type)),
    }
}

fn text<'v>(
    entry: &'v serde_json::Map<String, Value>,
    name: &str,
) -> Result<&'v str, TranscodingOptionsError> {
    match field(entry, name) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(text)) => Ok(text),
        Some(value) => Err(mismatch(value, name, "string")),
    }
}

fn parse_entry(entry: &Value) -> Result<VideoProfile, TranscodingOptionsError> {
    let Value::Object(entry) = entry else {
        if entry.is_null() {
            // Go decodes null into a zero JsonProfile.
            return parse_entry(&Value::Object(Default::default()));
        }
        return Err(TranscodingOptionsError::Json(format!(
            "json: cannot unmarshal {} into Go value of type ffmpeg.JsonProfile",
            go_kind(entry)
        )));
    };
    // The wire's fields are 32-bit: go-livepeer truncates, lpgpu refuses.
    let i32_range = (i64::from(i32::MIN), i64::from(i32::MAX));
    let u32_range = (0, i64::from(u32::MAX));
    let width = integer(entry, "width", "int", i32_range)?;
    let height = integer(entry, "height", "int", i32_range)?;
    let bitrate = integer(entry, "bitrate", "int", i32_range)?;
    let fps = integer(entry, "fps", "uint", u32_range)?;
    let fps_den = integer(entry, "fpsDen", "uint", u32_range)?;
    let quality = integer(entry, "quality", "uint", u32_range)?;
    let color_depth = integer(entry, "colorDepth", "ffmpeg.ColorDepthBits", i32_range)?;
    let chroma = integer(entry, "chromaFormat", "ffmpeg.ChromaSubsampling", i32_range)?;
    let name = match text(entry, "name")? {
        "" => format!("custom_{width}x{height}_{bitrate}"),
        name => name.to_string(),
    };
    let gop = match text(entry, "gop")? {
        "" => 0,
        "intra" => -1,
        gop => {
            let seconds: f64 = gop.trim().parse().map_err(|_| {
                TranscodingOptionsError::Gop(format!(
                    "strconv.ParseFloat: parsing {gop:?}: invalid syntax"
                ))
            })?;
            if !seconds.is_finite() {
                return Err(TranscodingOptionsError::Gop(format!(
                    "strconv.ParseFloat: parsing {gop:?}: value out of range"
                )));
            }
            if seconds < 0.0 {
                return Err(TranscodingOptionsError::NegativeGop(format!(
                    "{seconds:.6}"
                )));
            }
            // Milliseconds, truncated, as time.Duration.Milliseconds().
            let ms = (seconds * 1000.0).trunc();
            if ms > f64::from(i32::MAX) {
                return Err(TranscodingOptionsError::Gop(format!(
                    "{gop:?} seconds does not fit the wire"
                )));
            }
            ms as i32
        }
    };
    let profile = match text(entry, "profile")?.to_ascii_lowercase().as_str() {
        "" | "none" => video_profile::Profile::EncoderDefault,
        "h264baseline" => video_profile::Profile::H264Baseline,
        "h264main" => video_profile::Profile::H264Main,
        "h264high" => video_profile::Profile::H264High,
        "h264constrainedhigh" => video_profile::Profile::H264ConstrainedHigh,
        _ => return Err(TranscodingOptionsError::Profile),
    };
    let encoder = match text(entry, "encoder")? {
        "" | "H.264" => video_profile::VideoCodec::H264,
        "HEVC" => video_profile::VideoCodec::H265,
        "VP8" => video_profile::VideoCodec::Vp8,
        "VP9" => video_profile::VideoCodec::Vp9,
        other => return Err(TranscodingOptionsError::Encoder(other.to_string())),
    };
    let chroma_format = match chroma {
        0 => video_profile::ChromaSubsampling::Chroma420,
        1 => video_profile::ChromaSubsampling::Chroma422,
        2 => video_profile::ChromaSubsampling::Chroma444,
        other => return Err(TranscodingOptionsError::ChromaFormat(other)),
    };
    Ok(VideoProfile {
        name,
        width: width as i32,
        height: height as i32,
        bitrate: bitrate as i32,
        fps: fps as u32,
        fps_den: fps_den as u32,
        format: video_profile::Format::Mpegts as i32,
        profile: profile as i32,
        gop,
        encoder: encoder as i32,
        color_depth: color_depth as i32,
        chroma_format: chroma_format as i32,
        quality: quality as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(json: &str) -> Result<VideoProfile, TranscodingOptionsError> {
        parse(json.as_bytes()).map(|mut p| p.remove(0))
    }

    #[test]
    fn a_full_ladder_reads_as_go_livepeer_sends_it() {
        let profiles = parse(
            br#"[
              {"name": "h264", "width": 1280, "height": 720, "bitrate": 3000000, "fps": 30,
               "fpsDen": 1, "profile": "H264ConstrainedHigh", "gop": "2.5", "encoder": "H.264"},
              {"width": 640, "height": 360, "bitrate": 800000, "encoder": "HEVC", "gop": "intra"},
              {"name": "vp9", "width": 426, "height": 240, "bitrate": 400000, "encoder": "VP9",
               "quality": 30, "colorDepth": 2, "chromaFormat": 1, "unknown": true},
              {"name": "vp8", "Width": 256, "HEIGHT": 144, "bitrate": 200000, "encoder": "VP8"}
            ]"#,
        )
        .unwrap();
        assert_eq!(profiles.len(), 4);
        assert_eq!(profiles[0].name, "h264");
        assert_eq!(profiles[0].gop, 2500);
        assert_eq!(
            profiles[0].profile,
            video_profile::Profile::H264ConstrainedHigh as i32
        );
        assert_eq!(profiles[1].name, "custom_640x360_800000");
        assert_eq!(profiles[1].gop, -1);
        assert_eq!(profiles[1].encoder, video_profile::VideoCodec::H265 as i32);
        assert_eq!(profiles[2].quality, 30);
        assert_eq!(profiles[2].color_depth, 2);
        assert_eq!(
            profiles[2].chroma_format,
            video_profile::ChromaSubsampling::Chroma422 as i32
        );
        assert_eq!((profiles[3].width, profiles[3].height), (256, 144));
        assert_eq!(profiles[3].encoder, video_profile::VideoCodec::Vp8 as i32);
        assert!(
            profiles
                .iter()
                .all(|p| p.format == video_profile::Format::Mpegts as i32)
        );
    }

    #[test]
    fn lpms_words_for_each_mistake() {
        let error = |json: &str| one(json).unwrap_err().to_string();
        assert_eq!(
            error(r#"[{"encoder": "h264"}]"#),
            "Unable to parse encoder profile, unknown encoder: h264 unknown codec name"
        );
        assert_eq!(
            error(r#"[{"profile": "high"}]"#),
            "unable to parse the H264 encoder profile: unknown VideoProfile profile name"
        );
        assert_eq!(
            error(r#"[{"gop": "-1"}]"#),
            "invalid gop value -1.000000. Please set it to a positive value"
        );
        assert!(error(r#"[{"gop": "two"}]"#).starts_with("cannot parse the GOP value"));
        assert!(error(r#"[{"gop": 2}]"#).contains("JsonProfile.gop of type string"));
        assert!(error(r#"[{"fps": -1}]"#).contains("JsonProfile.fps of type uint"));
        assert!(error(r#"[{"width": 1.5}]"#).contains("JsonProfile.width of type int"));
        assert!(error(r#"{"profiles": []}"#).contains("cannot unmarshal object"));
        assert!(error("[{").starts_with("unable to unmarshal"));
        assert_eq!(error("[]"), "No transcoding profiles found");
        assert!(error(r#"[{"chromaFormat": 3}]"#).contains("ChromaFormat 3"));
    }

    #[test]
    fn a_zero_gop_and_null_fields_are_the_defaults() {
        let profile = one(r#"[{"name": null, "gop": "0", "width": 10, "height": 10}]"#).unwrap();
        assert_eq!(profile.gop, 0);
        assert_eq!(profile.name, "custom_10x10_0");
        assert_eq!(profile.encoder, video_profile::VideoCodec::H264 as i32);
    }
}
