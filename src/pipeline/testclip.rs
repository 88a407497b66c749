//! A test clip made in-process with libavfilter: moving, noisy video
//! (`testsrc2` + `noise`) and a tone (`sine`), encoded to H.264 + AAC in
//! MPEG-TS in memory. The demo broadcasts it; nothing is read from disk.
#![allow(
    clippy::expect_used,
    reason = "the filter graph is lpgpu's own, built from constants"
)]

use bytes::Bytes;
use ffmpeg::{ChannelLayout, Dictionary, Packet, codec, encoder, filter, format, frame};
use ffmpeg_next as ffmpeg;

use super::TranscodeError;

fn failed(what: &'static str) -> impl Fn(ffmpeg::Error) -> TranscodeError {
    move |e| TranscodeError::Internal(format!("making the test clip: {what}: {e}"))
}

/// Runs a source-only filter graph into a sink and returns its frames.
fn source_graph(
    spec: &str,
    audio: bool,
) -> Result<(filter::Graph, ffmpeg::Rational), TranscodeError> {
    let mut graph = filter::Graph::new();
    let sink = if audio { "abuffersink" } else { "buffersink" };
    let sink_filter =
        filter::find(sink).ok_or_else(|| TranscodeError::Internal(format!("no {sink} filter")))?;
    graph
        .add(&sink_filter, "out", "")
        .map_err(failed("adding the sink"))?;
    graph
        .input("out", 0)
        .and_then(|p| p.parse(spec))
        .map_err(failed("parsing the filter graph"))?;
    graph
        .validate()
        .map_err(failed("configuring the filter graph"))?;
    if audio {
        graph.get("out").expect("added").sink().set_frame_size(1024);
    }
    let time_base = graph.get("out").expect("added").sink().time_base();
    Ok((graph, time_base))
}

fn drain(encoder: &mut encoder::Encoder, packets: &mut Vec<(usize, Packet)>, stream: usize) {
    let mut packet = Packet::empty();
    while encoder.receive_packet(&mut packet).is_ok() {
        packets.push((stream, packet.clone()));
    }
}

/// `seconds` of `width`×`height` 30 fps video with a 440 Hz tone, as MPEG-TS.
pub fn make_test_clip(seconds: u32, width: u32, height: u32) -> Result<Bytes, TranscodeError> {
    super::cpu::init_ffmpeg();
    let mut packets: Vec<(usize, Packet)> = Vec::new();

    // Video.
    let spec = format!(
        "testsrc2=size={width}x{height}:rate=30:duration={seconds},noise=alls=20:allf=t+u,format=yuv420p"
    );
    let (mut graph, video_time_base) = source_graph(&spec, false)?;
    let codec = encoder::find_by_name("libx264")
        .ok_or_else(|| TranscodeError::Internal("no libx264".into()))?;
    let mut video = codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(failed("video encoder"))?;
    video.set_width(width);
    video.set_height(height);
    video.set_format(ffmpeg::format::Pixel::YUV420P);
    video.set_time_base(video_time_base);
    video.set_frame_rate(Some(ffmpeg::Rational::new(30, 1)));
    video.set_bit_rate(4_000_000);
    video.set_gop(60);
    let mut options = Dictionary::new();
    options.set("preset", "veryfast");
    // A fixed GOP: scene-cut detection would take the noise for cuts.
    options.set("x264-params", "scenecut=0");
    let mut video = video
        .open_with(options)
        .map_err(failed("opening libx264"))?;
    let video_parameters = codec::Parameters::from(&video);
    let mut picture = frame::Video::empty();
    while graph
        .get("out")
        .expect("added")
        .sink()
        .frame(&mut picture)
        .is_ok()
    {
        // lavfi's sources mark every picture as an I frame, and x264 obeys:
        // clear it so the GOP (60, 2 s) decides, as a live encoder's would.
        picture.set_kind(ffmpeg::picture::Type::None);
        video
            .send_frame(&picture)
            .map_err(failed("encoding video"))?;
        drain(&mut video, &mut packets, 0);
    }
    video.send_eof().map_err(failed("flushing video"))?;
    drain(&mut video, &mut packets, 0);

    // Audio.
    let spec = format!(
        "sine=frequency=440:sample_rate=48000:duration={seconds},aformat=sample_fmts=fltp:channel_layouts=mono"
    );
    let (mut graph, audio_time_base) = source_graph(&spec, true)?;
    let codec = encoder::find(codec::Id::AAC)
        .ok_or_else(|| TranscodeError::Internal("no AAC encoder".into()))?;
    let mut audio = codec::context::Context::new_with_codec(codec)
        .encoder()
        .audio()
        .map_err(failed("audio encoder"))?;
    audio.set_rate(48_000);
    audio.set_format(ffmpeg::format::Sample::F32(
        ffmpeg::format::sample::Type::Planar,
    ));
    audio.set_channel_layout(ChannelLayout::MONO);
    audio.set_time_base(audio_time_base);
    audio.set_bit_rate(96_000);
    let mut audio = audio.open().map_err(failed("opening the AAC encoder"))?;
    let audio_parameters = codec::Parameters::from(&audio);
    let mut samples = frame::Audio::empty();
    while graph
        .get("out")
        .expect("added")
        .sink()
        .frame(&mut samples)
        .is_ok()
    {
        audio
            .send_frame(&samples)
            .map_err(failed("encoding audio"))?;
        drain(&mut audio, &mut packets, 1);
    }
    audio.send_eof().map_err(failed("flushing audio"))?;
    drain(&mut audio, &mut packets, 1);

    // Mux.
    let buffer = super::cpu::SharedBuffer::default();
    let io = format::context::StreamIo::from_write(buffer.clone())
        .map_err(failed("in-memory output"))?;
    let mut output =
        format::output_to_stream(io, None, Some("mpegts")).map_err(failed("the muxer"))?;
    for parameters in [video_parameters, audio_parameters] {
        output
            .add_stream(encoder::find(codec::Id::None))
            .map_err(failed("adding a stream"))?
            .set_parameters(parameters);
    }
    output
        .write_header()
        .map_err(failed("the MPEG-TS header"))?;
    let out_time_bases = [
        output.stream(0).expect("added").time_base(),
        output.stream(1).expect("added").time_base(),
    ];
    let in_time_bases = [video_time_base, audio_time_base];
    for (stream, mut packet) in packets {
        packet.rescale_ts(in_time_bases[stream], out_time_bases[stream]);
        packet.set_stream(stream);
        packet
            .write_interleaved(&mut output)
            .map_err(failed("muxing"))?;
    }
    output
        .write_trailer()
        .map_err(failed("finishing the MPEG-TS"))?;
    drop(output);
    Ok(Bytes::from(buffer.take()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Backend;

    #[test]
    fn the_clip_is_real_video_with_audio() {
        let clip = make_test_clip(2, 320, 180).unwrap();
        let specs = crate::pipeline::rendition::from_profiles(
            &crate::protocol::parse_profile_list("P144p30fps16x9").unwrap(),
        );
        let out = crate::pipeline::cpu::CpuBackend::new(Default::default())
            .transcode(clip, &specs, &Default::default())
            .unwrap();
        assert_eq!(out.source_frames, 60);
        assert!(
            (out.source_seconds - 2.0).abs() < 0.05,
            "{}",
            out.source_seconds
        );
        assert_eq!(
            (out.renditions[0].width, out.renditions[0].height),
            (256, 144)
        );
    }
}
