//! Cuts a media file into MPEG-TS segments in memory by remuxing (no
//! re-encode): a new segment starts at the first video keyframe at least
//! `target` seconds, less a frame and a half, after the current segment
//! began ([`should_cut`]). Timestamps are kept.

use std::path::Path;

use bytes::Bytes;
use ffmpeg::{codec, encoder, format, media};
use ffmpeg_next as ffmpeg;

/// One segment: MPEG-TS bytes and its duration in seconds.
#[derive(Debug, Clone)]
pub struct Segment {
    pub data: Bytes,
    pub seconds: f64,
    /// The source picture: width, height and sample aspect ratio.
    pub picture: (u32, u32, super::Rational),
    pub has_audio: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("{path}: {reason}")]
    Input { path: String, reason: String },
    #[error("segmenting failed: {0}")]
    Mux(String),
}

/// How far before the target a keyframe may come and still start the next
/// segment, in frames. Encoders and 90 kHz timestamps put a "2 s" keyframe a
/// frame early as often as on time (a GOP counted from its first frame,
/// rounding); skipping it would double the segment and the live latency.
/// One and a half frames takes a keyframe one frame early and refuses one two
/// frames early.
pub const CUT_TOLERANCE_FRAMES: f64 = 1.5;

/// Whether a keyframe `elapsed` seconds after the segment's start begins the
/// next segment, for a `target` length and pictures `frame_seconds` apart.
pub fn should_cut(elapsed: f64, target: f64, frame_seconds: f64) -> bool {
    elapsed >= target - CUT_TOLERANCE_FRAMES * frame_seconds.max(0.0) - 1e-6
}

struct Open {
    output: format::context::Output,
    buffer: super::cpu::SharedBuffer,
    start: f64,
}

/// Reads `path` (MPEG-TS, MP4, MKV, … with a video stream) and returns its
/// segments, each starting with a keyframe.
pub fn segment_file(path: &Path, target_seconds: f64) -> Result<Vec<Segment>, SegmentError> {
    super::cpu::init_ffmpeg();
    let name = path.display().to_string();
    let input = format::input(path).map_err(|e| SegmentError::Input {
        path: name.clone(),
        reason: e.to_string(),
    })?;
    let mut segments = Vec::new();
    segment_input(input, &name, target_seconds, &mut |segment| {
        segments.push(segment);
        true
    })?;
    Ok(segments)
}

/// Cuts a stream read from `reader` (a live MPEG-TS on standard input, say)
/// into segments as they complete, handing each to `emit`; `emit` returns
/// false to stop early. Returns the number of segments.
pub fn segment_reader(
    reader: impl std::io::Read + Send + 'static,
    name: &str,
    target_seconds: f64,
    emit: &mut dyn FnMut(Segment) -> bool,
) -> Result<usize, SegmentError> {
    super::cpu::init_ffmpeg();
    let input_error = |reason: String| SegmentError::Input {
        path: name.to_string(),
        reason,
    };
    let io =
        format::context::StreamIo::from_read(reader).map_err(|e| input_error(e.to_string()))?;
    let input =
        format::input_from_stream(io, None, None).map_err(|e| input_error(e.to_string()))?;
    segment_input(input, name, target_seconds, emit)
}

fn segment_input(
    mut input: format::context::Input,
    name: &str,
    target_seconds: f64,
    emit: &mut dyn FnMut(Segment) -> bool,
) -> Result<usize, SegmentError> {
    let input_error = |reason: String| SegmentError::Input {
        path: name.to_string(),
        reason,
    };
    let video = input
        .streams()
        .best(media::Type::Video)
        .ok_or_else(|| input_error("no video stream".into()))?;
    let video_index = video.index();
    // Copy video and the best audio stream; other streams are dropped.
    let audio_index = input.streams().best(media::Type::Audio).map(|s| s.index());
    let copied: Vec<(usize, codec::Parameters)> = input
        .streams()
        .filter(|s| s.index() == video_index || Some(s.index()) == audio_index)
        .map(|s| (s.index(), s.parameters()))
        .collect();
    let video_time_base = video.time_base();
    let frame_seconds = [video.avg_frame_rate(), video.rate()]
        .into_iter()
        .map(f64::from)
        .find(|rate| rate.is_finite() && (1.0..=1000.0).contains(rate))
        .map_or(1.0 / 30.0, |rate| 1.0 / rate);
    let picture = {
        let p = video.parameters();
        // The picture size is read through a (never opened) decoder context.
        let decoder = codec::context::Context::from_parameters(p).and_then(|c| c.decoder().video());
        match decoder {
            Ok(d) => {
                let sar = d.aspect_ratio();
                (
                    d.width(),
                    d.height(),
                    super::Rational::new(sar.numerator(), sar.denominator()),
                )
            }
            Err(_) => (0, 0, super::Rational::new(1, 1)),
        }
    };
    let has_audio = audio_index.is_some();
    let mux = |e: ffmpeg::Error| SegmentError::Mux(e.to_string());

    let open = |start: f64| -> Result<Open, SegmentError> {
        let buffer = super::cpu::SharedBuffer::default();
        let io = format::context::StreamIo::from_write(buffer.clone()).map_err(mux)?;
        let mut output = format::output_to_stream(io, None, Some("mpegts")).map_err(mux)?;
        for (_, parameters) in &copied {
            let mut stream = output
                .add_stream(encoder::find(codec::Id::None))
                .map_err(mux)?;
            stream.set_parameters(parameters.clone());
        }
        output.write_header().map_err(mux)?;
        Ok(Open {
            output,
            buffer,
            start,
        })
    };
    let close = |mut open: Open, end: f64| -> Result<Segment, SegmentError> {
        open.output.write_trailer().map_err(mux)?;
        drop(open.output);
        Ok(Segment {
            data: Bytes::from(open.buffer.take()),
            seconds: (end - open.start).max(0.0),
            picture,
            has_audio,
        })
    };

    let mut count = 0usize;
    let mut current: Option<Open> = None;
    let mut last_video_end = 0.0f64;
    for (stream, mut packet) in input.packets() {
        let Some(out_index) = copied.iter().position(|(i, _)| *i == stream.index()) else {
            continue;
        };
        if stream.index() == video_index {
            let seconds = packet
                .pts()
                .or(packet.dts())
                .map(|t| t as f64 * f64::from(video_time_base))
                .unwrap_or(0.0);
            let cut = match &current {
                None => packet.is_key(),
                Some(open) => {
                    packet.is_key()
                        && should_cut(seconds - open.start, target_seconds, frame_seconds)
                }
            };
            if cut {
                if let Some(open) = current.take() {
                    count += 1;
                    if !emit(close(open, seconds)?) {
                        return Ok(count);
                    }
                }
                current = Some(open(seconds)?);
            }
            let duration = packet.duration() as f64 * f64::from(video_time_base);
            last_video_end = last_video_end.max(seconds + duration);
        }
        // Packets before the first keyframe cannot start a segment: skip them.
        let Some(open) = current.as_mut() else {
            continue;
        };
        let Some(out_stream) = open.output.stream(out_index) else {
            continue;
        };
        let out_time_base = out_stream.time_base();
        packet.rescale_ts(stream.time_base(), out_time_base);
        packet.set_stream(out_index);
        packet.set_position(-1);
        packet.write_interleaved(&mut open.output).map_err(mux)?;
    }
    if let Some(open) = current.take() {
        count += 1;
        emit(close(open, last_video_end)?);
    }
    if count == 0 {
        return Err(input_error("no video keyframe to start a segment".into()));
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: f64 = 1.0 / 30.0;

    #[test]
    fn a_keyframe_one_frame_early_or_late_starts_the_next_segment() {
        assert!(should_cut(2.0 - FRAME, 2.0, FRAME));
        assert!(should_cut(2.0, 2.0, FRAME));
        assert!(should_cut(2.0 + FRAME, 2.0, FRAME));
        // Two frames early is a short GOP, not a 2 s one.
        assert!(!should_cut(2.0 - 2.0 * FRAME, 2.0, FRAME));
        assert!(!should_cut(1.0, 2.0, FRAME));
    }

    /// A clip whose keyframes are `offsets` (frames) from a 2 s GOP, cut at
    /// 2 s: the segment lengths.
    fn cut_clip(dir: &Path, name: &str, keyframes: &[u32], frames: u32) -> Vec<f64> {
        let path = dir.join(name);
        let forced: Vec<String> = keyframes.iter().map(|f| format!("eq(n,{f})")).collect();
        let status = std::process::Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!(
                "testsrc2=size=320x180:rate=30,trim=end_frame={frames}"
            ))
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-x264-params"])
            .arg("keyint=1000:min-keyint=1000:scenecut=0")
            .args(["-force_key_frames"])
            .arg(format!("expr:{}", forced.join("+")))
            .args(["-f", "mpegts"])
            .arg(&path)
            .status()
            .expect("ffmpeg CLI (run .ci/setup)");
        assert!(status.success());
        segment_file(&path, 2.0)
            .unwrap()
            .iter()
            .map(|s| (s.seconds * 30.0).round() / 30.0)
            .collect()
    }

    #[test]
    fn a_two_second_gop_gives_two_second_segments_a_frame_either_way() {
        let dir = tempfile::tempdir().unwrap();
        // Keyframes one frame early: 0, 59, 119 of 180 frames (the clip of
        // the hardening issue: 0, 1.967, 3.967 s).
        let early = cut_clip(dir.path(), "early.ts", &[0, 59, 119, 178], 180);
        assert_eq!(early.len(), 4, "{early:?}");
        assert!(
            early[..3].iter().all(|s| (s - 59.0 / 30.0).abs() < 0.04),
            "{early:?}"
        );
        // One frame late: 0, 61, 122.
        let late = cut_clip(dir.path(), "late.ts", &[0, 61, 122], 180);
        assert_eq!(late.len(), 3, "{late:?}");
        assert!(
            late[..2].iter().all(|s| (s - 61.0 / 30.0).abs() < 0.04),
            "{late:?}"
        );
        // Two frames early is not taken: the next keyframe is.
        let short = cut_clip(dir.path(), "short.ts", &[0, 58, 120], 180);
        assert!((short[0] - 4.0).abs() < 0.04, "{short:?}");
    }
}
