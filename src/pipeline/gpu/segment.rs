//! One segment on one GPU: demux on the CPU (libavformat), decode on NVDEC,
//! resize every rung with the CUDA kernels, then encode each rung either on
//! NVENC, straight from the device picture, where the GPU has it and a
//! session is free, or on the hybrid path: the rung's NV12 picture comes back
//! through a pinned host buffer (queued as an async copy behind its kernels,
//! one synchronisation per source picture) and goes to that rung's libx264
//! thread, with the CPU backend's settings.
//!
//! Decoded pictures never leave the GPU; only scaled ones do, and only for
//! an encoder on the CPU.

use std::sync::Arc;
use std::sync::mpsc::{SyncSender, sync_channel};

use bytes::Bytes;
use cudarc::driver::{CudaStream, PinnedHostSlice};
use ffmpeg::format::Pixel;
use ffmpeg::{codec, frame};
use ffmpeg_next as ffmpeg;

use super::GpuError;
use super::cuda::{DeviceNv12, DeviceScaler, cuda_error};
use super::nvdec::{Codec, Displayed, Parser};
use super::nvenc::{EncoderSessions, NvencEncoder, NvencSettings};
use super::{Device, sys};
use crate::pipeline::cpu::{
    EncodedRung, RungEncoder, RungPlan, SourceSegment, from_ff, nothing_decoded, to_ff,
};
use crate::pipeline::ladder::FrameDecimator;
use crate::pipeline::{
    Cancel, EncoderSettings, Rational, RenditionSpec, TranscodeError, Transcoded,
};

/// Scaled pictures in flight between the GPU thread and each encoder.
const PICTURE_QUEUE: usize = 4;

/// Why a segment did not come out of the GPU.
#[derive(Debug)]
pub enum SegmentFailure {
    /// The input is at fault (the CPU would refuse it too).
    Input(TranscodeError),
    /// The GPU side failed: the caller retries the segment on the CPU.
    Gpu(GpuError),
}

impl From<GpuError> for SegmentFailure {
    fn from(e: GpuError) -> Self {
        SegmentFailure::Gpu(e)
    }
}

fn gpu_codec(id: codec::Id) -> Result<Codec, GpuError> {
    match id {
        codec::Id::H264 => Ok(Codec::H264),
        codec::Id::HEVC => Ok(Codec::Hevc),
        other => Err(GpuError::NvdecUnsupported(format!(
            "{other:?} is not decoded on the GPU"
        ))),
    }
}

/// The sample aspect ratio the container or bitstream declares.
fn sample_aspect(source: &SourceSegment) -> Rational {
    codec::context::Context::from_parameters(source.parameters.clone())
        .ok()
        .and_then(|c| c.decoder().video().ok())
        .map(|d| from_ff(d.aspect_ratio()))
        .unwrap_or(Rational::new(1, 1))
}

/// One rung on the GPU side: its frame-rate decimator, its scaler (made at
/// the first picture, remade if the picture size changes), and its encoder:
/// an NVENC session, or a pinned download buffer and the channel to its
/// libx264 thread.
struct GpuRung {
    plan: RungPlan,
    decimator: FrameDecimator,
    scaler: Option<DeviceScaler>,
    download: Option<PinnedHostSlice<u8>>,
    sender: Option<SyncSender<(frame::Video, Option<i64>)>>,
    nvenc: Option<NvencEncoder>,
    output: (u32, u32),
    busy: std::time::Duration,
}

/// Transcodes one segment on `device`; renditions go to NVENC when
/// `nvenc` (the GPU's session count) is given and a session is free.
pub fn transcode(
    device: &Device,
    segment: Bytes,
    specs: &[RenditionSpec],
    settings: &EncoderSettings,
    nvenc: Option<&std::sync::Arc<EncoderSessions>>,
    perceptual_hash: bool,
    cancel: &Cancel,
) -> Result<Transcoded, SegmentFailure> {
    let mut source = SourceSegment::open(segment).map_err(SegmentFailure::Input)?;
    let codec = gpu_codec(source.codec)?;
    let aspect = sample_aspect(&source);
    device.runtime.bind()?;
    let stream = device.runtime.new_stream()?;
    let mut parser = Parser::new(codec, &device.decoders)?;

    let plans = source.plans(specs, settings, perceptual_hash);
    let (video_index, audio_index) = (source.video_index, source.audio_index);
    let mut decoded = 0u64;
    let mut decoded_pixels = 0u64;
    let mut keyframes = 0u64;
    let mut span: (Option<i64>, Option<i64>) = (None, None);

    let (gpu_result, encoded) = std::thread::scope(|scope| {
        let mut rungs = Vec::with_capacity(plans.len());
        let mut workers = Vec::with_capacity(plans.len());
        for plan in plans {
            let (sender, receiver) = sync_channel::<(frame::Video, Option<i64>)>(PICTURE_QUEUE);
            let worker_plan = plan.clone();
            // A rung on NVENC sends its worker nothing: the worker then
            // answers None.
            workers.push(
                scope.spawn(move || -> Result<Option<EncodedRung>, TranscodeError> {
                    let mut encoder: Option<RungEncoder> = None;
                    for (mut picture, pts) in receiver {
                        let rung = match encoder.as_mut() {
                            Some(rung) => rung,
                            None => encoder.insert(RungEncoder::open(
                                worker_plan.clone(),
                                picture.width(),
                                picture.height(),
                                Pixel::NV12,
                            )?),
                        };
                        rung.encode(&mut picture, pts)?;
                    }
                    encoder.map(|e| e.finish(0.0)).transpose()
                }),
            );
            rungs.push(GpuRung {
                decimator: plan.decimator(),
                plan,
                scaler: None,
                download: None,
                sender: Some(sender),
                nvenc: None,
                output: (0, 0),
                busy: std::time::Duration::ZERO,
            });
        }

        let mut run = || -> Result<(), GpuError> {
            let mut packets = source.input.packets();
            for (stream_of, packet) in &mut packets {
                if cancel.is_cancelled() {
                    return Err(GpuError::Cancelled);
                }
                if stream_of.index() == video_index {
                    keyframes += u64::from(packet.is_key());
                    if let Some(data) = packet.data() {
                        parser.feed(data, packet.pts())?;
                    }
                } else if Some(stream_of.index()) == audio_index
                    && let Some(track) = source.audio.as_mut()
                {
                    track.packets.push(packet);
                    continue;
                }
                while let Some(picture) = parser.next_displayed() {
                    if scale_and_send(
                        device, &stream, &parser, &picture, &mut rungs, aspect, nvenc,
                    )? {
                        count(&mut decoded, &mut span, picture.pts);
                        decoded_pixels += displayed_pixels(&parser);
                    }
                }
            }
            parser.finish()?;
            while let Some(picture) = parser.next_displayed() {
                if scale_and_send(
                    device, &stream, &parser, &picture, &mut rungs, aspect, nvenc,
                )? {
                    count(&mut decoded, &mut span, picture.pts);
                    decoded_pixels += displayed_pixels(&parser);
                }
            }
            Ok(())
        };
        let mut result = run();
        // Hanging up ends each libx264 worker's loop; NVENC sessions end here.
        let mut on_nvenc = Vec::with_capacity(rungs.len());
        for rung in &mut rungs {
            rung.sender = None;
            on_nvenc.push(match rung.nvenc.take() {
                Some(encoder) if result.is_ok() => {
                    match finish_nvenc(&rung.plan, encoder, rung.busy) {
                        Ok(encoded) => Some(encoded),
                        Err(e) => {
                            result = Err(e);
                            None
                        }
                    }
                }
                _ => None,
            });
        }
        let encoded: Vec<_> = workers
            .into_iter()
            .zip(on_nvenc)
            .map(|(worker, nvenc)| {
                let on_cpu = worker.join().unwrap_or_else(|_| {
                    Err(TranscodeError::Internal(
                        "an encoder thread panicked".into(),
                    ))
                });
                match (nvenc, on_cpu) {
                    (Some(encoded), _) => Ok(encoded),
                    (None, Ok(Some(encoded))) => Ok(encoded),
                    (None, Ok(None)) => Err(nothing_decoded()),
                    (None, Err(e)) => Err(e),
                }
            })
            .collect();
        (result, encoded)
    });
    gpu_result?;
    if keyframes == 0 && decoded > 0 {
        return Err(SegmentFailure::Input(TranscodeError::NoKeyframes));
    }
    if decoded == 0 {
        // Let the CPU decoder give its verdict on a segment NVDEC made nothing of.
        return Err(SegmentFailure::Gpu(GpuError::Nvdec(
            "NVDEC decoded no picture of this segment".into(),
        )));
    }
    let renditions = source.mux_all(encoded).map_err(SegmentFailure::Input)?;
    Ok(Transcoded {
        renditions,
        source_seconds: source.seconds(span, decoded),
        source_frames: decoded,
        source_pixels: decoded_pixels,
        backend: "gpu",
        fallback: None,
    })
}

/// Width × height of the pictures the parser's decoder shows.
fn displayed_pixels(parser: &Parser<'_>) -> u64 {
    parser.decoder_shape().map_or(0, |shape| {
        let (w, h) = shape.display_size();
        u64::from(w) * u64::from(h)
    })
}

fn count(decoded: &mut u64, span: &mut (Option<i64>, Option<i64>), pts: Option<i64>) {
    *decoded += 1;
    if let Some(pts) = pts {
        span.0 = Some(span.0.map_or(pts, |p| p.min(pts)));
        span.1 = Some(span.1.map_or(pts, |p| p.max(pts)));
    }
}

/// Resizes one decoded picture for every rung that keeps it, downloads the
/// results and hands them to the encoders. Returns whether the picture
/// counted as decoded (concealed pictures are dropped, as on the CPU).
fn scale_and_send(
    device: &Device,
    stream: &Arc<CudaStream>,
    parser: &Parser<'_>,
    picture: &Displayed,
    rungs: &mut [GpuRung],
    aspect: Rational,
    nvenc: Option<&Arc<EncoderSessions>>,
) -> Result<bool, GpuError> {
    if !parser.decoded_cleanly(picture) {
        return Ok(false);
    }
    let keep: Vec<bool> = rungs
        .iter_mut()
        .map(|r| r.decimator.keep(picture.pts))
        .collect();
    if !keep.iter().any(|&k| k) {
        return Ok(true);
    }
    let mapped = parser.map(picture, stream.cu_stream() as sys::CUstream)?;
    let source = DeviceNv12 {
        luma: mapped.pointer,
        chroma: mapped.chroma_pointer(),
        pitch: mapped.pitch,
    };
    let size = (mapped.width, mapped.height);
    for (rung, _) in rungs.iter_mut().zip(&keep).filter(|(_, k)| **k) {
        if rung.scaler.as_ref().map(|s| s.source) != Some(size) {
            let output = rung.plan.output_size(size.0, size.1, aspect);
            // The encoder is opened at the first picture's size; later
            // pictures of another source size still come out at it.
            let first = rung.output == (0, 0);
            let output = if first { output } else { rung.output };
            rung.output = output;
            rung.scaler = Some(device.runtime.scaler(stream, size, output)?);
            if first {
                rung.nvenc =
                    nvenc.and_then(|sessions| open_nvenc(device, sessions, &rung.plan, output));
            }
            if rung.nvenc.is_none() {
                let len = super::resize::Nv12Image::len_for(output.0, output.1);
                rung.download = Some(super::cuda::alloc_pinned(&device.runtime, len)?);
            }
        }
        let Some(scaler) = rung.scaler.as_mut() else {
            return Err(GpuError::Cuda("a rung has no scaler".into()));
        };
        device.runtime.resize(stream, source, scaler)?;
        if let Some(download) = rung.download.as_mut() {
            stream
                .memcpy_dtoh(scaler.picture(), download)
                .map_err(|e| cuda_error("downloading a scaled picture", e))?;
        }
    }
    stream
        .synchronize()
        .map_err(|e| cuda_error("waiting for the resize", e))?;
    // The kernels have read the surface: NVDEC may reuse it.
    drop(mapped);

    for (rung, _) in rungs.iter_mut().zip(&keep).filter(|(_, k)| **k) {
        if let Some(encoder) = rung.nvenc.as_mut() {
            let started = std::time::Instant::now();
            let Some(scaler) = rung.scaler.as_ref() else {
                return Err(GpuError::Cuda("a rung has no scaler".into()));
            };
            encoder.encode(scaler.picture_address(stream), picture.pts.unwrap_or(0))?;
            rung.busy += started.elapsed();
            continue;
        }
        let (w, h) = rung.output;
        let Some(download) = rung.download.as_ref() else {
            return Err(GpuError::Cuda("a rung has no download buffer".into()));
        };
        let host = download
            .as_slice()
            .map_err(|e| cuda_error("reading the pinned buffer", e))?;
        let picture_out = nv12_frame(host, w, h);
        if let Some(sender) = &rung.sender
            && sender.send((picture_out, picture.pts)).is_err()
        {
            // The encoder failed and hung up; its error comes back on join.
            rung.sender = None;
        }
    }
    Ok(true)
}

/// NVENC's settings for a rung: the libx264 path's rate control and GOP.
fn nvenc_settings(
    plan: &RungPlan,
    codec: super::nvenc::NvencCodec,
    (width, height): (u32, u32),
) -> NvencSettings {
    let rate = plan.output_rate();
    NvencSettings {
        codec,
        width,
        height,
        rate: (rate.num.max(1) as u32, rate.den.max(1) as u32),
        bitrate_bps: plan.spec.bitrate_bps,
        gop_frames: plan.gop_frames(rate),
        bufsize_factor: plan.settings.bufsize_factor,
    }
}

/// Whether the NVENC path makes this rendition as asked: it does average
/// bitrate with lpgpu's GOP and B-frame-free High, so a forced H.264 profile
/// other than High, a CRF quality, or a rate-less spec go to libx264.
fn nvenc_can_encode(spec: &RenditionSpec) -> bool {
    spec.quality.is_none()
        && spec.bitrate_bps > 0
        && super::nvenc::NvencCodec::for_codec(spec.codec).is_some()
}

/// An NVENC session for a rung, or None (the rung then takes the hybrid
/// path): the GPU's session limit is reached, or NVENC refused.
fn open_nvenc(
    device: &Device,
    sessions: &Arc<EncoderSessions>,
    plan: &RungPlan,
    (width, height): (u32, u32),
) -> Option<NvencEncoder> {
    let codec = super::nvenc::NvencCodec::for_codec(plan.spec.codec)?;
    if !nvenc_can_encode(&plan.spec) {
        return None;
    }
    let settings = nvenc_settings(plan, codec, (width, height));
    let permit = match sessions.acquire() {
        Ok(permit) => permit,
        Err(e) => {
            tracing::debug!(
                rendition = %plan.spec,
                "{e}; encoding this rendition with libx264"
            );
            return None;
        }
    };
    match NvencEncoder::open(device.runtime.context.cu_ctx().cast(), permit, settings) {
        Ok(encoder) => Some(encoder),
        Err(e) => {
            tracing::warn!(rendition = %plan.spec, error = %e, "NVENC refused; encoding this rendition with libx264");
            None
        }
    }
}

/// An NVENC rung's access units as the muxer's packets and stream parameters.
fn finish_nvenc(
    plan: &RungPlan,
    encoder: NvencEncoder,
    busy: std::time::Duration,
) -> Result<EncodedRung, GpuError> {
    let (width, height) = encoder.size();
    let frames = u64::from(encoder.frames());
    let units = encoder.finish()?;
    // Stream parameters from an (unopened) H.264 codec context of this size.
    let h264 = ffmpeg::encoder::find(codec::Id::H264)
        .ok_or_else(|| GpuError::Nvenc("this FFmpeg knows no H.264 codec".into()))?;
    let mut context = codec::context::Context::new_with_codec(h264)
        .encoder()
        .video()
        .map_err(|e| GpuError::Nvenc(format!("stream parameters: {e}")))?;
    context.set_width(width);
    context.set_height(height);
    context.set_format(Pixel::YUV420P);
    context.set_time_base(to_ff(plan.time_base));
    let parameters = codec::Parameters::from(&context);
    let packets = units
        .into_iter()
        .map(|unit| {
            let mut packet = ffmpeg::Packet::copy(&unit.data);
            // No B-frames: decoding order is display order.
            packet.set_pts(Some(unit.pts));
            packet.set_dts(Some(unit.pts));
            if unit.key {
                packet.set_flags(ffmpeg::packet::Flags::KEY);
            }
            packet
        })
        .collect();
    Ok(EncodedRung {
        spec: plan.spec.clone(),
        parameters,
        time_base: to_ff(plan.time_base),
        frame_ticks: plan.frame_ticks(),
        packets,
        width,
        height,
        frames,
        encode_seconds: busy.as_secs_f64(),
        // Hashing wants the pictures on the host: a segment that asks for
        // hashes never goes to NVENC (see `GpuBackend::transcode`).
        perceptual_hash: None,
    })
}

/// Copies a packed NV12 picture into an FFmpeg frame (whose rows are padded).
fn nv12_frame(packed: &[u8], width: u32, height: u32) -> frame::Video {
    let mut frame = frame::Video::new(Pixel::NV12, width, height);
    let (w, h) = (width as usize, height as usize);
    let chroma_rows = h.div_ceil(2);
    let chroma_row = w.div_ceil(2) * 2;
    let stride = frame.stride(0);
    for (row, line) in packed[..w * h].chunks_exact(w).enumerate() {
        frame.data_mut(0)[row * stride..row * stride + w].copy_from_slice(line);
    }
    let stride = frame.stride(1);
    let chroma = &packed[w * h..w * h + chroma_row * chroma_rows];
    for (row, line) in chroma.chunks_exact(chroma_row).enumerate() {
        frame.data_mut(1)[row * stride..row * stride + chroma_row].copy_from_slice(line);
    }
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_nv12_lands_in_the_frame_planes() {
        crate::pipeline::cpu::init_ffmpeg();
        let (w, h) = (6u32, 4u32);
        let packed: Vec<u8> = (0..super::super::resize::Nv12Image::len_for(w, h) as u32)
            .map(|v| v as u8)
            .collect();
        let frame = nv12_frame(&packed, w, h);
        assert_eq!(&frame.data(0)[..6], &packed[..6]);
        let stride = frame.stride(0);
        assert_eq!(&frame.data(0)[stride * 3..stride * 3 + 6], &packed[18..24]);
        let cstride = frame.stride(1);
        assert_eq!(&frame.data(1)[..6], &packed[24..30]);
        assert_eq!(&frame.data(1)[cstride..cstride + 6], &packed[30..36]);
    }

    #[test]
    fn nvenc_gets_the_x264_paths_rate_control_and_gop() {
        let profile = crate::protocol::parse_profile_list("P360p30fps16x9").unwrap()[0];
        let plan = RungPlan {
            spec: profile.into(),
            time_base: Rational::new(1, 90_000),
            source_rate: Some(Rational::new(60, 1)),
            settings: EncoderSettings::default(),
            perceptual_hash: false,
        };
        let settings = nvenc_settings(&plan, super::super::nvenc::NvencCodec::H264High, (640, 360));
        // The profile's 30 fps (lowered from the source's 60), GOP 2 s.
        assert_eq!(settings.rate, (30, 1));
        assert_eq!(settings.gop_frames, 60);
        assert_eq!(settings.bitrate_bps, profile.bitrate_bps);
        assert_eq!((settings.width, settings.height), (640, 360));
        assert_eq!(settings.bufsize_factor, 2.0);
    }

    #[test]
    fn renditions_nvenc_cannot_make_as_asked_go_to_libx264() {
        let spec: RenditionSpec =
            crate::protocol::parse_profile_list("P360p30fps16x9").unwrap()[0].into();
        assert!(nvenc_can_encode(&spec));
        let mut baseline = spec.clone();
        baseline.codec = crate::pipeline::VideoCodec::H264(crate::pipeline::H264Profile::Baseline);
        assert!(!nvenc_can_encode(&baseline));
        let mut crf = spec.clone();
        crf.quality = Some(23);
        assert!(!nvenc_can_encode(&crf));
    }

    #[test]
    fn only_h264_and_hevc_go_to_nvdec() {
        assert_eq!(gpu_codec(codec::Id::H264), Ok(Codec::H264));
        assert_eq!(gpu_codec(codec::Id::HEVC), Ok(Codec::Hevc));
        assert!(gpu_codec(codec::Id::MPEG2VIDEO).is_err());
    }
}
