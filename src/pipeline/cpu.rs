//! The CPU backend: libavformat demuxes the segment from memory, libavcodec
//! decodes its video once, and each rendition's worker thread scales
//! (swscale) and encodes (libx264) the shared frames; the renditions are
//! muxed (MPEG-TS or MP4) in memory with the source's audio copied in.
//!
//! Timestamps are the source's all the way through (the encoders work in the
//! source stream's time base), so renditions line up for HLS switching;
//! where the source's are missing or go backwards they are repaired
//! ([`super::timestamps`]) before the encoder and before the muxer.

use std::io::{Cursor, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, Once};

use bytes::Bytes;
use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::{Dictionary, Packet, codec, encoder, format, frame, media, picture};
use ffmpeg_next as ffmpeg;

use super::encoders::{SoftwareEncoder, software_encoder};
use super::ladder::{FrameDecimator, output_frame_rate, output_size};
use super::signature::SignatureSink;
use super::timestamps::{MonotonicDts, PictureClock};
use super::{
    Backend, Clip, EncoderSettings, Gop, H264Profile, Rational, Rendition, RenditionSpec,
    SegmentOptions, TranscodeError, Transcoded, VideoCodec,
};

/// Frames in flight between the decoder and each profile's worker.
const FRAME_QUEUE: usize = 8;
/// Pictures larger than this (8K UHD) are refused rather than decoded.
const MAX_PIXELS: u64 = 7680 * 4320;

pub(crate) fn init_ffmpeg() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // Registration cannot fail in FFmpeg ≥ 4; keep going if it says otherwise.
        let _ = ffmpeg::init();
        // Our own errors say what went wrong; FFmpeg's stderr chatter about a
        // bad segment would only be noise in the node's log.
        // LPGPU_FFMPEG_LOG=error|warning|info|debug lets it speak, to chase
        // a muxer's or decoder's refusal.
        use ffmpeg::util::log::Level;
        let level = match std::env::var("LPGPU_FFMPEG_LOG").as_deref() {
            Ok("error") => Level::Error,
            Ok("warning") => Level::Warning,
            Ok("info") => Level::Info,
            Ok("debug") => Level::Debug,
            _ => Level::Fatal,
        };
        ffmpeg::util::log::set_level(level);
    });
}

pub(super) fn to_ff(r: Rational) -> ffmpeg::Rational {
    ffmpeg::Rational::new(r.num, r.den)
}

pub(super) fn from_ff(r: ffmpeg::Rational) -> Rational {
    Rational::new(r.numerator(), r.denominator())
}

pub(super) fn internal(context: &str) -> impl Fn(ffmpeg::Error) -> TranscodeError + '_ {
    move |e| TranscodeError::Internal(format!("{context}: {e}"))
}

/// libavcodec, swscale and libx264 on the CPU.
#[derive(Debug, Clone)]
pub struct CpuBackend {
    settings: EncoderSettings,
}

impl CpuBackend {
    pub fn new(settings: EncoderSettings) -> Self {
        init_ffmpeg();
        Self { settings }
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn device(&self) -> String {
        cpu_model().unwrap_or_else(|| "cpu".into())
    }

    fn transcode(
        &self,
        segment: Bytes,
        renditions: &[RenditionSpec],
        options: &SegmentOptions,
    ) -> Result<Transcoded, TranscodeError> {
        init_ffmpeg();
        transcode_segment(segment, renditions, options, &self.settings)
    }
}

/// The CPU model from /proc/cpuinfo, when there is one.
pub fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|m| m.trim().to_string())
}

/// A seekable `Write` into shared memory, so a muxer (MP4's seeks back to
/// finish its header) can write where we can read it back.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedBuffer(Arc<Mutex<Cursor<Vec<u8>>>>);

impl SharedBuffer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Cursor<Vec<u8>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn take(&self) -> Vec<u8> {
        std::mem::take(self.lock().get_mut())
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.lock().write(bytes)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::io::Seek for SharedBuffer {
    fn seek(&mut self, position: std::io::SeekFrom) -> std::io::Result<u64> {
        self.lock().seek(position)
    }
}

/// What a rendition's worker needs to know, as plain values.
#[derive(Debug, Clone)]
pub(super) struct RungPlan {
    pub spec: RenditionSpec,
    pub time_base: Rational,
    pub source_rate: Option<Rational>,
    pub settings: EncoderSettings,
    /// Also make the rendition's perceptual hash (capability 14).
    pub perceptual_hash: bool,
}

impl RungPlan {
    /// The rendition's frame rate: the spec's ceiling, never above the source's.
    pub fn output_rate(&self) -> Rational {
        output_frame_rate(self.source_rate, self.spec.max_frame_rate)
    }

    /// One output frame in the stream's time base.
    pub fn frame_ticks(&self) -> i64 {
        (1.0 / (self.output_rate().as_f64() * self.time_base.as_f64()))
            .round()
            .max(1.0) as i64
    }

    /// The encoded size for a source picture of this size and aspect.
    pub fn output_size(&self, width: u32, height: u32, sar: Rational) -> (u32, u32) {
        output_size(width, height, sar, self.spec.width, self.spec.height)
    }

    pub fn decimator(&self) -> FrameDecimator {
        FrameDecimator::new(self.source_rate, self.output_rate(), self.time_base)
    }
}

/// A worker's result: the encoder's stream parameters and its packets.
pub(super) struct EncodedRung {
    pub spec: RenditionSpec,
    pub parameters: codec::Parameters,
    /// The packets' time base: the source video stream's.
    pub time_base: ffmpeg::Rational,
    /// One output picture in `time_base`: the duration of a packet the
    /// encoder left without one (MP4 ends its track, and its edit list,
    /// with the last sample's duration).
    pub frame_ticks: i64,
    pub packets: Vec<Packet>,
    pub width: u32,
    pub height: u32,
    pub frames: u64,
    pub encode_seconds: f64,
    pub perceptual_hash: Option<Bytes>,
}

/// The audio track copied into every rendition.
pub(super) struct AudioTrack {
    parameters: codec::Parameters,
    time_base: ffmpeg::Rational,
    pub packets: Vec<Packet>,
}

impl AudioTrack {
    /// AAC in ADTS frames (what MPEG-TS carries), without the
    /// AudioSpecificConfig that MP4 and Matroska need in their header.
    fn is_adts(&self) -> bool {
        self.parameters.id() == codec::Id::AAC
            && self
                .packets
                .iter()
                .find_map(|p| p.data())
                .is_some_and(|data| data.len() > 2 && data[0] == 0xFF && data[1] & 0xF0 == 0xF0)
    }

    /// The same audio as raw AAC with its AudioSpecificConfig
    /// (libavcodec's `aac_adtstoasc`, as go-livepeer's muxer applies it).
    fn with_audio_specific_config(&self) -> Result<AudioTrack, TranscodeError> {
        let (parameters, packets) = super::ffglue::filter_all(
            "aac_adtstoasc",
            &self.parameters,
            self.time_base,
            &self.packets,
        )?;
        Ok(AudioTrack {
            parameters,
            time_base: self.time_base,
            packets,
        })
    }
}

/// What a segment is, read from its container without decoding a picture.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmentFacts {
    /// Seconds of media (the container's estimate; 0 when it has none).
    pub seconds: f64,
    pub width: u32,
    pub height: u32,
    pub sample_aspect: Rational,
}

/// Reads a segment's duration and picture size from its headers and
/// timestamps (no decoding: a millisecond or so for a 2 s segment).
pub fn probe_segment(segment: Bytes) -> Result<SegmentFacts, TranscodeError> {
    init_ffmpeg();
    let source = SourceSegment::open(segment)?;
    let duration = source.input.duration();
    let seconds = if duration > 0 {
        duration as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE)
    } else {
        0.0
    };
    let decoder = codec::context::Context::from_parameters(source.parameters.clone())
        .and_then(|c| c.decoder().video())
        .map_err(|e| TranscodeError::Undecodable(format!("reading the video parameters: {e}")))?;
    let sar = decoder.aspect_ratio();
    Ok(SegmentFacts {
        seconds,
        width: decoder.width(),
        height: decoder.height(),
        sample_aspect: Rational::new(sar.numerator(), sar.denominator()),
    })
}

/// A rendition's video as a broadcaster checks it: pictures (one per packet
/// of the video stream), width and height.
pub fn count_video_frames(rendition: Bytes) -> Result<(u64, u32, u32), TranscodeError> {
    init_ffmpeg();
    // Opened once: the size from the stream's parameters, then its packets.
    let mut source = SourceSegment::open(rendition)?;
    let decoder = codec::context::Context::from_parameters(source.parameters.clone())
        .and_then(|c| c.decoder().video())
        .map_err(|e| TranscodeError::Undecodable(format!("reading the video parameters: {e}")))?;
    let (width, height) = (decoder.width(), decoder.height());
    let video = source.video_index;
    let frames = source
        .input
        .packets()
        .filter(|(stream, _)| stream.index() == video)
        .count() as u64;
    Ok((frames, width, height))
}

/// A segment opened for reading: its video stream's facts and, once the
/// packets are read, its audio.
pub(super) struct SourceSegment {
    pub input: format::context::Input,
    pub video_index: usize,
    pub time_base: Rational,
    /// The video stream's first timestamp, when the container says.
    pub start_pts: Option<i64>,
    pub source_rate: Option<Rational>,
    pub codec: codec::Id,
    pub parameters: codec::Parameters,
    pub audio: Option<AudioTrack>,
    pub audio_index: Option<usize>,
}

impl SourceSegment {
    pub fn open(segment: Bytes) -> Result<Self, TranscodeError> {
        if segment.is_empty() {
            return Err(TranscodeError::Undecodable("the segment is empty".into()));
        }
        let io = format::context::StreamIo::from_read_seek(Cursor::new(segment))
            .map_err(internal("setting up in-memory input"))?;
        let input = format::input_from_stream(io, None, None).map_err(|e| {
            TranscodeError::Undecodable(format!("not a container FFmpeg reads: {e}"))
        })?;
        let video = input
            .streams()
            .best(media::Type::Video)
            .ok_or_else(|| TranscodeError::Undecodable("the segment has no video stream".into()))?;
        let video_index = video.index();
        let time_base = from_ff(video.time_base());
        let start_pts = Some(video.start_time()).filter(|&t| t != ffmpeg::ffi::AV_NOPTS_VALUE);
        let source_rate = [video.avg_frame_rate(), video.rate()]
            .into_iter()
            .map(from_ff)
            .find(|r| r.num > 0 && r.den > 0 && r.as_f64() < 1000.0);
        let parameters = video.parameters();
        let codec = parameters.id();
        let audio = input
            .streams()
            .best(media::Type::Audio)
            .map(|s| AudioTrack {
                parameters: s.parameters(),
                time_base: s.time_base(),
                packets: Vec::new(),
            });
        let audio_index = input.streams().best(media::Type::Audio).map(|s| s.index());
        Ok(Self {
            input,
            video_index,
            time_base,
            start_pts,
            source_rate,
            codec,
            parameters,
            audio,
            audio_index,
        })
    }

    /// The plans of the renditions asked for.
    pub fn plans(
        &self,
        specs: &[RenditionSpec],
        settings: &EncoderSettings,
        perceptual_hash: bool,
    ) -> Vec<RungPlan> {
        specs
            .iter()
            .map(|spec| RungPlan {
                spec: spec.clone(),
                time_base: self.time_base,
                source_rate: self.source_rate,
                settings: settings.clone(),
                perceptual_hash,
            })
            .collect()
    }

    /// Seconds of video between the first and last picture, plus one frame.
    pub fn seconds(&self, first_last: (Option<i64>, Option<i64>), frames: u64) -> f64 {
        let frame_seconds = self.source_rate.map_or(0.0, |r| 1.0 / r.as_f64());
        match first_last {
            (Some(first), Some(last)) => {
                (last - first) as f64 * self.time_base.as_f64() + frame_seconds
            }
            _ => frames as f64 * frame_seconds,
        }
    }

    /// Muxes each rung with this segment's audio.
    pub fn mux_all(
        &self,
        encoded: Vec<Result<EncodedRung, TranscodeError>>,
    ) -> Result<Vec<Rendition>, TranscodeError> {
        let mut renditions = Vec::with_capacity(encoded.len());
        // The audio as MP4 and Matroska want it, made once per segment.
        let mut headed: Option<AudioTrack> = None;
        for rung in encoded {
            let rung = rung?;
            let audio = match (&self.audio, rung.spec.container.seeks()) {
                (Some(track), true) if track.is_adts() => {
                    if headed.is_none() {
                        headed = Some(track.with_audio_specific_config()?);
                    }
                    headed.as_ref()
                }
                (track, _) => track.as_ref(),
            };
            renditions.push(mux_rendition(rung, audio)?);
        }
        Ok(renditions)
    }
}

/// Which pictures and audio packets a [`Clip`] keeps: offsets from the
/// video's first timestamp.
#[derive(Debug, Clone, Copy)]
pub(super) struct ClipWindow {
    clip: Clip,
    /// The video's start in seconds, once known.
    start_seconds: Option<f64>,
}

impl ClipWindow {
    pub fn new(clip: Clip, source: &SourceSegment) -> Self {
        Self {
            clip,
            start_seconds: source
                .start_pts
                .map(|pts| pts as f64 * source.time_base.as_f64()),
        }
    }

    /// Whether a timestamp (in `time_base`) is inside the clip; the first
    /// timestamp seen starts the segment when the container did not say.
    pub fn keeps(&mut self, pts: Option<i64>, time_base: Rational) -> bool {
        let Some(pts) = pts else {
            // Untimed pictures are placed by their neighbours: keep them
            // when the clip has begun.
            return self.start_seconds.is_some();
        };
        let seconds = pts as f64 * time_base.as_f64();
        let start = *self.start_seconds.get_or_insert(seconds);
        self.clip.keeps((seconds - start) * 1000.0)
    }
}

/// Checks what no backend makes: boxes outside 2..=8192 or above 8K's
/// pixels, non-positive frame-rate ceilings.
pub(crate) fn check_specs(specs: &[RenditionSpec]) -> Result<(), TranscodeError> {
    if specs.is_empty() {
        return Err(TranscodeError::Unsupported(
            "no renditions asked for".into(),
        ));
    }
    // A thread per rendition: the count is bounded for every caller.
    crate::protocol::limits::check_renditions(specs.len()).map_err(TranscodeError::Unsupported)?;
    for spec in specs {
        software_encoder(spec.codec)?;
        if !spec.container.carries(spec.codec) {
            return Err(TranscodeError::Unsupported(format!(
                "{}: {} cannot carry {}",
                spec.name,
                spec.container.muxer(),
                spec.codec.name()
            )));
        }
        let in_range = |v: u32| (2..=8192).contains(&v);
        if !in_range(spec.width) || !in_range(spec.height) || spec.box_pixels() > MAX_PIXELS {
            return Err(TranscodeError::Unsupported(format!(
                "{}: a {}x{} picture is outside 2x2..8192x8192 (at most 8K's pixels)",
                spec.name, spec.width, spec.height
            )));
        }
        if let Some(rate) = spec.max_frame_rate
            && (rate.num <= 0 || rate.den <= 0 || rate.as_f64() > 480.0)
        {
            return Err(TranscodeError::Unsupported(format!(
                "{}: frame rate {}/{} is outside (0, 480]",
                spec.name, rate.num, rate.den
            )));
        }
        if let Gop::Millis(0) = spec.gop {
            return Err(TranscodeError::Unsupported(format!(
                "{}: a GOP of 0 ms",
                spec.name
            )));
        }
    }
    Ok(())
}

fn transcode_segment(
    segment: Bytes,
    specs: &[RenditionSpec],
    options: &SegmentOptions,
    settings: &EncoderSettings,
) -> Result<Transcoded, TranscodeError> {
    check_specs(specs)?;
    let mut source = SourceSegment::open(segment)?;
    let mut decoder_context =
        codec::context::Context::from_parameters(source.parameters.clone())
            .map_err(|e| TranscodeError::Undecodable(format!("video stream parameters: {e}")))?;
    decoder_context.set_threading(codec::threading::Config {
        count: settings.threads,
        ..codec::threading::Config::kind(codec::threading::Type::Frame)
    });
    let mut decoder = decoder_context.decoder().video().map_err(|e| {
        TranscodeError::Undecodable(format!("no decoder for this video codec: {e}"))
    })?;
    let (video_index, audio_index) = (source.video_index, source.audio_index);

    let plans = source.plans(specs, settings, options.perceptual_hash);
    let mut clip = options.clip.map(|clip| ClipWindow::new(clip, &source));
    let mut audio_clip = clip;
    let (video_base, audio_base) = (
        source.time_base,
        source.audio.as_ref().map(|a| from_ff(a.time_base)),
    );

    let mut decoded_frames = 0u64;
    let mut decoded_pixels = 0u64;
    let mut keyframes = 0u64;
    let mut first_pts: Option<i64> = None;
    let mut last_pts: Option<i64> = None;
    let results = std::thread::scope(|scope| {
        let mut senders: Vec<Option<SyncSender<Arc<frame::Video>>>> = Vec::new();
        let mut workers = Vec::new();
        for plan in plans {
            let (sender, receiver) = sync_channel::<Arc<frame::Video>>(FRAME_QUEUE);
            senders.push(Some(sender));
            workers.push(scope.spawn(move || encode_rung(plan, receiver)));
        }
        let mut fan_out = |frame: frame::Video| -> Result<(), TranscodeError> {
            if u64::from(frame.width()) * u64::from(frame.height()) > MAX_PIXELS {
                return Err(TranscodeError::Undecodable(format!(
                    "a {}x{} picture is larger than 8K",
                    frame.width(),
                    frame.height()
                )));
            }
            if let Some(window) = clip.as_mut()
                && !window.keeps(frame.pts(), video_base)
            {
                return Ok(());
            }
            decoded_frames += 1;
            decoded_pixels += u64::from(frame.width()) * u64::from(frame.height());
            if let Some(pts) = frame.timestamp() {
                first_pts = Some(first_pts.map_or(pts, |p| p.min(pts)));
                last_pts = Some(last_pts.map_or(pts, |p| p.max(pts)));
            }
            let frame = Arc::new(frame);
            for slot in senders.iter_mut() {
                // A worker that failed has hung up: stop feeding it; its error
                // comes back when it is joined.
                if let Some(sender) = slot
                    && sender.send(frame.clone()).is_err()
                {
                    *slot = None;
                }
            }
            Ok(())
        };

        let mut decode_result = Ok(());
        let mut packets = source.input.packets();
        for (stream, packet) in &mut packets {
            if let Err(cancelled) = options.cancel.check() {
                decode_result = Err(cancelled);
                break;
            }
            if stream.index() == video_index {
                keyframes += u64::from(packet.is_key());
                // A corrupt packet is skipped; a segment in which nothing
                // decodes is refused below.
                if decoder.send_packet(&packet).is_ok() {
                    decode_result = drain_decoder(&mut decoder, &mut fan_out);
                }
            } else if Some(stream.index()) == audio_index
                && let Some(track) = source.audio.as_mut()
            {
                let kept = match (audio_clip.as_mut(), audio_base) {
                    (Some(window), Some(base)) => window.keeps(packet.pts(), base),
                    _ => true,
                };
                if kept {
                    track.packets.push(packet);
                }
            }
            if decode_result.is_err() {
                break;
            }
        }
        if decode_result.is_ok() && decoder.send_eof().is_ok() {
            decode_result = drain_decoder(&mut decoder, &mut fan_out);
        }
        // Hanging up tells each worker the segment is over (the closure
        // borrowed the senders; its last use is above).
        drop(senders);
        let encoded: Vec<_> = workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| {
                    Err(TranscodeError::Internal(
                        "an encoder thread panicked".into(),
                    ))
                })
            })
            .collect();
        (decode_result, encoded)
    });
    let (decode_result, encoded) = results;
    decode_result?;
    if keyframes == 0 && decoded_frames > 0 {
        return Err(TranscodeError::NoKeyframes);
    }
    if decoded_frames == 0 {
        return Err(TranscodeError::Undecodable(
            "no picture in the segment decodes".into(),
        ));
    }

    let renditions = source.mux_all(encoded)?;
    Ok(Transcoded {
        renditions,
        source_seconds: source.seconds((first_pts, last_pts), decoded_frames),
        source_frames: decoded_frames,
        source_pixels: decoded_pixels,
        backend: "cpu",
        fallback: None,
    })
}

/// Receives every frame the decoder has ready ("needs more input" ends the loop).
fn drain_decoder(
    decoder: &mut ffmpeg::decoder::Video,
    sink: &mut impl FnMut(frame::Video) -> Result<(), TranscodeError>,
) -> Result<(), TranscodeError> {
    loop {
        let mut frame = frame::Video::empty();
        match decoder.receive_frame(&mut frame) {
            // A picture the decoder had to conceal (missing slices, a cut-off
            // segment) is garbage: drop it like a corrupt packet.
            Ok(()) if frame.is_corrupt() || frame.has_decode_errors() => continue,
            Ok(()) => {
                let pts = frame.timestamp();
                frame.set_pts(pts);
                sink(frame)?;
            }
            Err(ffmpeg::Error::Other {
                errno: ffmpeg::util::error::EAGAIN,
            })
            | Err(ffmpeg::Error::Eof) => {
                return Ok(());
            }
            // A picture that fails to decode is dropped, like a corrupt packet.
            Err(_) => continue,
        }
    }
}

/// One rendition's libx264 encoder: frames in (any size-matching pixel
/// format the encoder was opened with), packets collected. Shared by the CPU
/// backend and the GPU backend's hybrid path, so both encode alike.
pub(super) struct RungEncoder {
    plan: RungPlan,
    encoder: encoder::Video,
    packets: Vec<Packet>,
    width: u32,
    height: u32,
    frames: u64,
    clock: PictureClock,
    busy: std::time::Duration,
    /// The perceptual hash's filter, when the plan asks for one.
    signature: Option<SignatureSink>,
}

impl RungEncoder {
    pub fn open(
        plan: RungPlan,
        width: u32,
        height: u32,
        format: Pixel,
    ) -> Result<Self, TranscodeError> {
        let out_rate = plan.output_rate();
        let encoder = open_encoder(&plan, width, height, out_rate, format)?;
        let clock = PictureClock::new(plan.frame_ticks());
        let signature = if plan.perceptual_hash {
            Some(SignatureSink::open(width, height, format, plan.time_base)?)
        } else {
            None
        };
        Ok(Self {
            plan,
            encoder,
            packets: Vec::new(),
            width,
            height,
            frames: 0,
            clock,
            busy: std::time::Duration::ZERO,
            signature,
        })
    }

    /// Encodes one picture of the encoder's size and format; `pts` is the
    /// source's timestamp (invented from the frame rate where it has none,
    /// nudged forward where it does not increase).
    pub fn encode(
        &mut self,
        picture: &mut frame::Video,
        pts: Option<i64>,
    ) -> Result<(), TranscodeError> {
        let started = std::time::Instant::now();
        let pts = self.clock.stamp(pts);
        picture.set_pts(Some(pts));
        // The first picture opens the rendition with a keyframe; after it the
        // encoder's GOP decides. A decoded picture carries its source's type,
        // and x264 honours it: an all-intra source would stay all-intra.
        picture.set_kind(if self.frames == 0 {
            picture::Type::I
        } else {
            picture::Type::None
        });
        self.frames += 1;
        // Hashed as LPMS hashes: the picture exactly as the encoder gets it.
        if let Some(signature) = self.signature.as_mut() {
            signature.push(picture)?;
        }
        self.encoder
            .send_frame(picture)
            .map_err(internal("encoding"))?;
        drain_encoder(&mut self.encoder, &mut self.packets)?;
        self.busy += started.elapsed();
        Ok(())
    }

    /// Flushes the encoder; `extra_seconds` is work done for this rung
    /// elsewhere (scaling), counted in its encode time.
    pub fn finish(mut self, extra_seconds: f64) -> Result<EncodedRung, TranscodeError> {
        self.encoder
            .send_eof()
            .map_err(internal("flushing the encoder"))?;
        drain_encoder(&mut self.encoder, &mut self.packets)?;
        let parameters = codec::Parameters::from(&self.encoder);
        let frame_ticks = self.plan.frame_ticks();
        let perceptual_hash = self.signature.take().map(|s| s.finish()).transpose()?;
        Ok(EncodedRung {
            spec: self.plan.spec,
            parameters,
            time_base: to_ff(self.plan.time_base),
            frame_ticks,
            packets: self.packets,
            width: self.width,
            height: self.height,
            frames: self.frames,
            encode_seconds: self.busy.as_secs_f64() + extra_seconds,
            perceptual_hash,
        })
    }
}

/// No frame reached a worker: the decoder failed first, and says why.
pub(super) fn nothing_decoded() -> TranscodeError {
    TranscodeError::Undecodable("no picture in the segment decodes".into())
}

/// One profile's worker: scale, drop frames down to the profile's rate, encode.
fn encode_rung(
    plan: RungPlan,
    frames: Receiver<Arc<frame::Video>>,
) -> Result<EncodedRung, TranscodeError> {
    let mut decimator = plan.decimator();
    let mut state: Option<(RungEncoder, scaling::Context, (Pixel, u32, u32))> = None;
    let mut scaling_time = std::time::Duration::ZERO;
    for source in frames {
        if !decimator.keep(source.pts()) {
            continue;
        }
        let shape = (source.format(), source.width(), source.height());
        if state.is_none() {
            let (w, h) = plan.output_size(
                source.width(),
                source.height(),
                from_ff(source.aspect_ratio()),
            );
            let encoder = RungEncoder::open(plan.clone(), w, h, Pixel::YUV420P)?;
            let scaler = new_scaler(shape, w, h)?;
            state = Some((encoder, scaler, shape));
        }
        let Some((encoder, scaler, scaler_shape)) = state.as_mut() else {
            return Err(TranscodeError::Internal("a rung lost its encoder".into()));
        };
        let started = std::time::Instant::now();
        if *scaler_shape != shape {
            // The picture changed size or format mid-segment: rescale to the same output.
            *scaler = new_scaler(shape, encoder.width, encoder.height)?;
            *scaler_shape = shape;
        }
        let mut scaled = frame::Video::empty();
        scaler
            .run(&source, &mut scaled)
            .map_err(internal("scaling"))?;
        scaling_time += started.elapsed();
        // Keep the source's timestamps; invent them only where it has none.
        encoder.encode(&mut scaled, source.pts())?;
    }
    let Some((encoder, _, _)) = state else {
        return Err(nothing_decoded());
    };
    encoder.finish(scaling_time.as_secs_f64())
}

fn new_scaler(
    shape: (Pixel, u32, u32),
    width: u32,
    height: u32,
) -> Result<scaling::Context, TranscodeError> {
    let (format, w, h) = shape;
    scaling::Context::get(
        format,
        w,
        h,
        Pixel::YUV420P,
        width,
        height,
        scaling::Flags::BICUBIC,
    )
    .map_err(|e| {
        TranscodeError::Undecodable(format!("cannot scale {format:?} {w}x{h} pictures: {e}"))
    })
}

/// How an encoder is set up for one rendition, as plain values.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct EncoderSetup {
    /// The average bitrate given to the encoder (0 for CRF).
    pub bit_rate: usize,
    pub gop_frames: u32,
    pub max_b_frames: Option<usize>,
    pub options: Vec<(&'static str, String)>,
}

impl RungPlan {
    /// Keyframe interval in frames at `rate`.
    pub fn gop_frames(&self, rate: Rational) -> u32 {
        let frames = |seconds: f64| (seconds * rate.as_f64()).round().max(1.0) as u32;
        match self.spec.gop {
            Gop::Default => frames(self.settings.gop_seconds),
            Gop::IntraOnly => 1,
            Gop::Millis(ms) => frames(f64::from(ms) / 1000.0),
        }
    }

    /// libx264's settings: the preset, the rate control (average bitrate
    /// capped by VBV, or CRF `quality` — clamped to x264's 0..=51 — with the
    /// bitrate as its cap), the H.264 profile, the GOP.
    /// The setup of `encoder` for this rendition at `rate`, mapped as LPMS
    /// maps a profile: the bitrate as the average with a VBV cap
    /// (`--bufsize-factor`), `quality` as CRF, the GOP, the encoder's speed
    /// from `--x264-preset` (libx265 takes the same names; libvpx runs in
    /// real-time mode).
    pub fn encoder_setup(&self, encoder: SoftwareEncoder, rate: Rational) -> EncoderSetup {
        match encoder {
            SoftwareEncoder::X264 => self.x264_setup(rate),
            SoftwareEncoder::X265 => self.x265_setup(rate),
            SoftwareEncoder::Vp8 | SoftwareEncoder::Vp9 => self.vpx_setup(encoder, rate),
        }
    }

    /// libx265: the preset, `x265-params` with the VBV cap, the keyframe
    /// interval and no scene-cut keyframes beyond it, CRF for `quality`.
    fn x265_setup(&self, rate: Rational) -> EncoderSetup {
        let settings = &self.settings;
        let spec = &self.spec;
        let kbps = spec.bitrate_bps / 1000;
        let gop_frames = self.gop_frames(rate);
        let mut params = vec![
            format!("keyint={gop_frames}"),
            format!("min-keyint={}", gop_frames.min(2)),
            "repeat-headers=1".to_string(),
            "log-level=error".to_string(),
        ];
        if kbps > 0 {
            let bufsize = (f64::from(kbps) * settings.bufsize_factor).round().max(1.0) as u32;
            params.push(format!("vbv-maxrate={kbps}:vbv-bufsize={bufsize}"));
        }
        if gop_frames == 1 {
            params.push("bframes=0".to_string());
        }
        let mut options = vec![
            ("preset", settings.preset.clone()),
            ("forced-idr", "1".to_string()),
        ];
        let bit_rate = match spec.quality {
            Some(quality) => {
                options.push(("crf", quality.min(51).to_string()));
                0
            }
            None => spec.bitrate_bps as usize,
        };
        if settings.threads > 0 {
            params.push(format!("pools={}", settings.threads));
        }
        options.push(("x265-params", params.join(":")));
        EncoderSetup {
            bit_rate,
            gop_frames,
            max_b_frames: (gop_frames == 1).then_some(0),
            options,
        }
    }

    /// libvpx (VP8) and libvpx-vp9: real-time deadline and speed, the
    /// bitrate as target with `maxrate`/`bufsize` as its cap (CRF with the
    /// bitrate as cap for `quality`), no look-ahead past the GOP.
    fn vpx_setup(&self, encoder: SoftwareEncoder, rate: Rational) -> EncoderSetup {
        let settings = &self.settings;
        let spec = &self.spec;
        let gop_frames = self.gop_frames(rate);
        let mut options = vec![
            ("deadline", "realtime".to_string()),
            ("cpu-used", "8".to_string()),
            ("lag-in-frames", "0".to_string()),
            ("threads", settings.threads.max(1).to_string()),
        ];
        if encoder == SoftwareEncoder::Vp9 {
            options.push(("row-mt", "1".to_string()));
        }
        if spec.bitrate_bps > 0 {
            let bufsize = (f64::from(spec.bitrate_bps) * settings.bufsize_factor)
                .round()
                .max(1.0) as u64;
            options.push(("maxrate", spec.bitrate_bps.to_string()));
            options.push(("bufsize", bufsize.to_string()));
        }
        let bit_rate = match spec.quality {
            Some(quality) => {
                // libvpx's quantizer range is 0..=63.
                options.push(("crf", quality.min(63).to_string()));
                spec.bitrate_bps as usize
            }
            None => spec.bitrate_bps as usize,
        };
        EncoderSetup {
            bit_rate,
            gop_frames,
            max_b_frames: None,
            options,
        }
    }

    pub fn x264_setup(&self, rate: Rational) -> EncoderSetup {
        let settings = &self.settings;
        let spec = &self.spec;
        let kbps = spec.bitrate_bps / 1000;
        let mut options = vec![
            ("preset", settings.preset.clone()),
            ("forced-idr", "1".to_string()),
            ("threads", settings.threads.to_string()),
        ];
        if kbps > 0 {
            let bufsize = (f64::from(kbps) * settings.bufsize_factor).round().max(1.0) as u32;
            options.push((
                "x264-params",
                format!("vbv-maxrate={kbps}:vbv-bufsize={bufsize}"),
            ));
        }
        let bit_rate = match spec.quality {
            Some(quality) => {
                options.push(("crf", quality.min(51).to_string()));
                0
            }
            None => spec.bitrate_bps as usize,
        };
        let profile = match spec.codec {
            VideoCodec::H264(profile) => profile,
            _ => H264Profile::EncoderDefault,
        };
        if let Some(name) = profile.x264_name() {
            options.push(("profile", name.to_string()));
        }
        let gop_frames = self.gop_frames(rate);
        // Intra-only and B-frame-free profiles have no B-frames; a GOP of one
        // picture has no room for them either.
        let max_b_frames = (!profile.allows_b_frames() || gop_frames == 1).then_some(0);
        EncoderSetup {
            bit_rate,
            gop_frames,
            max_b_frames,
            options,
        }
    }
}

/// The ffmpeg CLI's output options that encode `spec` exactly as this
/// backend sets up its encoder (the same [`RungPlan::encoder_setup`]):
/// the encoder, bitrate, GOP, B-frames and every private option, 8-bit
/// 4:2:0, and the container's muxer; with the frame rate the rendition
/// gets from a source of `source_rate` (for an `fps` filter where it is
/// below the source's). For baselines that compare like with like.
pub fn cli_encoder_args(
    spec: &RenditionSpec,
    settings: &EncoderSettings,
    source_rate: Option<Rational>,
) -> Result<(Rational, Vec<String>), TranscodeError> {
    let plan = RungPlan {
        spec: spec.clone(),
        time_base: Rational::new(1, 90_000),
        source_rate,
        settings: settings.clone(),
        perceptual_hash: false,
    };
    let rate = plan.output_rate();
    let chosen = software_encoder(spec.codec)?;
    let setup = plan.encoder_setup(chosen, rate);
    let mut args = vec!["-c:v".to_string(), chosen.ffmpeg_name().to_string()];
    if setup.bit_rate > 0 {
        args.extend(["-b:v".to_string(), setup.bit_rate.to_string()]);
    }
    args.extend(["-g".to_string(), setup.gop_frames.to_string()]);
    if let Some(b_frames) = setup.max_b_frames {
        args.extend(["-bf".to_string(), b_frames.to_string()]);
    }
    for (key, value) in setup.options {
        args.extend([format!("-{key}"), value]);
    }
    args.extend([
        "-pix_fmt".to_string(),
        "yuv420p".to_string(),
        "-f".to_string(),
        spec.container.muxer().to_string(),
    ]);
    Ok((rate, args))
}

fn open_encoder(
    plan: &RungPlan,
    width: u32,
    height: u32,
    rate: Rational,
    format: Pixel,
) -> Result<encoder::Video, TranscodeError> {
    let chosen = software_encoder(plan.spec.codec)?;
    let codec = encoder::find_by_name(chosen.ffmpeg_name()).ok_or_else(|| {
        TranscodeError::Internal(format!(
            "this FFmpeg has no {} encoder",
            chosen.ffmpeg_name()
        ))
    })?;
    let mut encoder = codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(internal("creating the encoder"))?;
    let setup = plan.encoder_setup(chosen, rate);
    encoder.set_width(width);
    encoder.set_height(height);
    encoder.set_format(format);
    encoder.set_aspect_ratio(ffmpeg::Rational::new(1, 1));
    encoder.set_time_base(to_ff(plan.time_base));
    encoder.set_frame_rate(Some(to_ff(rate)));
    encoder.set_bit_rate(setup.bit_rate);
    encoder.set_gop(setup.gop_frames);
    if let Some(b_frames) = setup.max_b_frames {
        encoder.set_max_b_frames(b_frames);
    }
    let mut options = Dictionary::new();
    for (key, value) in &setup.options {
        options.set(key, value);
    }
    encoder.open_with(options).map_err(|e| {
        TranscodeError::Internal(format!(
            "opening {} ({width}x{height}, preset {}): {e}",
            chosen.ffmpeg_name(),
            plan.settings.preset
        ))
    })
}

fn drain_encoder(
    encoder: &mut encoder::Video,
    packets: &mut Vec<Packet>,
) -> Result<(), TranscodeError> {
    loop {
        let mut packet = Packet::empty();
        match encoder.receive_packet(&mut packet) {
            Ok(()) => packets.push(packet),
            Err(ffmpeg::Error::Other {
                errno: ffmpeg::util::error::EAGAIN,
            })
            | Err(ffmpeg::Error::Eof) => {
                return Ok(());
            }
            Err(e) => return Err(TranscodeError::Internal(format!("encoding: {e}"))),
        }
    }
}

/// Muxes one rung's packets, with the audio, into its container in memory.
/// Interleaving sorts video and audio by decoding time; DTS are repaired in
/// the muxer's time base (where rescaling may have made neighbours equal).
pub(super) fn mux_rendition(
    rung: EncodedRung,
    audio: Option<&AudioTrack>,
) -> Result<Rendition, TranscodeError> {
    let container = rung.spec.container;
    let buffer = SharedBuffer::default();
    // MP4 and Matroska seek back to write their index.
    let io = if container.seeks() {
        format::context::StreamIo::from_write_seek(buffer.clone())
    } else {
        format::context::StreamIo::from_write(buffer.clone())
    }
    .map_err(internal("setting up in-memory output"))?;
    let mut output = format::output_to_stream(io, None, Some(container.muxer()))
        .map_err(internal("creating the muxer"))?;
    // The stream's codec is the encoder's own.
    output
        .add_stream(encoder::find(rung.parameters.id()))
        .map_err(internal("adding video"))?
        .set_parameters(rung.parameters.clone());
    if let Some(track) = audio {
        // Copied as it came, but for its container's tag: each muxer sets
        // its own.
        let mut parameters = track.parameters.clone();
        super::ffglue::clear_codec_tag(&mut parameters);
        output
            .add_stream(encoder::find(codec::Id::None))
            .map_err(internal("adding audio"))?
            .set_parameters(parameters);
    }
    output
        .write_header()
        .map_err(internal("writing the container header"))?;

    let video_out = output
        .stream(0)
        .ok_or_else(|| TranscodeError::Internal("the muxer lost its video stream".into()))?
        .time_base();
    let mut video_dts = MonotonicDts::new();
    for mut packet in rung.packets {
        if packet.duration() <= 0 {
            packet.set_duration(rung.frame_ticks);
        }
        packet.rescale_ts(rung.time_base, video_out);
        repair(&mut packet, &mut video_dts);
        packet.set_stream(0);
        packet
            .write_interleaved(&mut output)
            .map_err(internal("muxing video"))?;
    }
    if let Some(track) = audio {
        let audio_out = output
            .stream(1)
            .ok_or_else(|| TranscodeError::Internal("the muxer lost its audio stream".into()))?
            .time_base();
        let mut audio_dts = MonotonicDts::new();
        for packet in &track.packets {
            let mut packet = packet.clone();
            packet.rescale_ts(track.time_base, audio_out);
            repair(&mut packet, &mut audio_dts);
            packet.set_stream(1);
            packet.set_position(-1);
            packet
                .write_interleaved(&mut output)
                .map_err(internal("muxing audio"))?;
        }
    }
    output
        .write_trailer()
        .map_err(internal("finishing the container"))?;
    drop(output);
    Ok(Rendition {
        spec: rung.spec,
        width: rung.width,
        height: rung.height,
        frames: rung.frames,
        encode_seconds: rung.encode_seconds,
        data: Bytes::from(buffer.take()),
        perceptual_hash: rung.perceptual_hash,
    })
}

fn repair(packet: &mut Packet, dts: &mut MonotonicDts) {
    let (pts, fixed) = dts.fix(packet.pts(), packet.dts(), packet.duration());
    packet.set_pts(Some(pts));
    packet.set_dts(Some(fixed));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::H264Profile;
    use crate::protocol::parse_profile_list;

    fn plan(spec: RenditionSpec) -> RungPlan {
        RungPlan {
            spec,
            time_base: Rational::new(1, 90_000),
            source_rate: Some(Rational::new(30, 1)),
            settings: EncoderSettings::default(),
            perceptual_hash: false,
        }
    }

    fn spec() -> RenditionSpec {
        RenditionSpec::from(parse_profile_list("P360p30fps16x9").unwrap()[0])
    }

    fn option<'a>(setup: &'a EncoderSetup, key: &str) -> Option<&'a str> {
        setup
            .options
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_v2_profile_is_average_bitrate_capped_by_vbv_with_a_two_second_gop() {
        let setup = plan(spec()).x264_setup(Rational::new(30, 1));
        assert_eq!(setup.bit_rate, 1_200_000);
        assert_eq!(setup.gop_frames, 60);
        assert_eq!(setup.max_b_frames, None);
        assert_eq!(
            option(&setup, "x264-params"),
            Some("vbv-maxrate=1200:vbv-bufsize=2400")
        );
        assert_eq!(option(&setup, "profile"), None);
        assert_eq!(option(&setup, "crf"), None);
    }

    #[test]
    fn gop_profile_and_quality_reach_libx264() {
        let mut s = spec();
        s.gop = Gop::Millis(1000);
        s.codec = VideoCodec::H264(H264Profile::ConstrainedHigh);
        s.quality = Some(70);
        let setup = plan(s.clone()).x264_setup(Rational::new(30000, 1001));
        assert_eq!(setup.gop_frames, 30);
        assert_eq!(setup.max_b_frames, Some(0));
        assert_eq!(option(&setup, "profile"), Some("high"));
        // CRF, clamped to x264's range, with the bitrate as the VBV cap.
        assert_eq!(option(&setup, "crf"), Some("51"));
        assert_eq!(setup.bit_rate, 0);
        assert!(option(&setup, "x264-params").is_some());
        s.gop = Gop::IntraOnly;
        s.codec = VideoCodec::H264(H264Profile::Main);
        s.bitrate_bps = 0;
        s.quality = None;
        let setup = plan(s).x264_setup(Rational::new(30, 1));
        assert_eq!((setup.gop_frames, setup.max_b_frames), (1, Some(0)));
        assert_eq!(option(&setup, "x264-params"), None);
        assert_eq!(setup.bit_rate, 0);
    }

    #[test]
    fn specs_outside_what_libx264_takes_are_unsupported() {
        let mut s = spec();
        assert!(check_specs(std::slice::from_ref(&s)).is_ok());
        s.width = 250;
        s.height = 62_500;
        assert!(matches!(
            check_specs(std::slice::from_ref(&s)),
            Err(TranscodeError::Unsupported(_))
        ));
        let mut s = spec();
        s.max_frame_rate = Some(Rational::new(0, 1));
        assert!(check_specs(&[s]).is_err());
        assert!(check_specs(&[]).is_err());
    }
}
