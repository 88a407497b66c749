//! Checks and measurements of one GPU's parts, for the device check
//! (`tests/gpu.rs`, `benches/gpu.rs`): the resize kernels against their CPU
//! reference, NVDEC against the CPU decoder, decode throughput across
//! sessions, and the kernels' bandwidth next to a plain device copy.
//!
//! Safe code over `cuda` and `nvdec`; nothing here runs in the server.
#![allow(
    clippy::expect_used,
    reason = "a diagnostics tool over lpgpu's own clips, not the server"
)]

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};

use super::cuda::{DeviceNv12, DeviceScaler, cuda_error};
use super::nvdec::{Codec, Parser};
use super::resize::Nv12Image;
use super::{Device, GpuError, sys};
use crate::pipeline::cpu::SourceSegment;

/// Opens GPU `ordinal` (driver, context, kernels) for checks.
pub fn open_device(ordinal: usize) -> Result<Device, GpuError> {
    super::cuda::probe_driver()?;
    super::nvdec::library()?;
    super::cpu_init();
    Device::open(ordinal, false)
}

/// A device pointer of a buffer, for kernels that take raw addresses.
fn address(slice: &CudaSlice<u8>, stream: &Arc<CudaStream>) -> u64 {
    let (pointer, _sync) = slice.device_ptr(stream);
    pointer
}

impl Device {
    pub fn name(&self) -> &str {
        &self.runtime.name
    }

    /// Uploads `image`, resizes it on the device to `output` and brings the
    /// result back. The output buffer is poisoned first, so a sample the
    /// kernels never wrote shows up.
    pub fn resize_image(
        &self,
        image: &Nv12Image,
        output: (u32, u32),
    ) -> Result<Nv12Image, GpuError> {
        self.runtime.bind()?;
        let stream = self.runtime.new_stream()?;
        let source = stream
            .clone_htod(&image.data)
            .map_err(|e| cuda_error("uploading", e))?;
        let mut scaler = self
            .runtime
            .scaler(&stream, (image.width, image.height), output)?;
        poison(&stream, &mut scaler)?;
        let luma = address(&source, &stream);
        let picture = DeviceNv12 {
            luma,
            chroma: luma + u64::from(image.width) * u64::from(image.height),
            pitch: image.width,
        };
        self.runtime.resize(&stream, picture, &mut scaler)?;
        let data = stream
            .clone_dtoh(scaler.picture())
            .map_err(|e| cuda_error("downloading", e))?;
        Ok(Nv12Image {
            width: output.0,
            height: output.1,
            data,
        })
    }

    /// Decodes a segment on NVDEC and returns every clean picture, packed
    /// NV12, in display order (copied off the surface by an identity resize,
    /// which the resize tests show to be exact).
    pub fn decode_to_host(&self, segment: Bytes) -> Result<Vec<Nv12Image>, GpuError> {
        let mut pictures = Vec::new();
        self.decode_with(segment, |frame, stream, runtime, scaler| {
            let size = (frame.width, frame.height);
            if scaler.as_ref().map(|s: &DeviceScaler| s.source) != Some(size) {
                *scaler = Some(runtime.scaler(stream, size, size)?);
            }
            let scaler = scaler.as_mut().expect("made above");
            let source = DeviceNv12 {
                luma: frame.pointer,
                chroma: frame.chroma_pointer(),
                pitch: frame.pitch,
            };
            runtime.resize(stream, source, scaler)?;
            let data = stream
                .clone_dtoh(scaler.picture())
                .map_err(|e| cuda_error("downloading", e))?;
            pictures.push(Nv12Image {
                width: size.0,
                height: size.1,
                data,
            });
            Ok(())
        })?;
        Ok(pictures)
    }

    /// Decodes a segment and counts its pictures; each is mapped and
    /// unmapped as the pipeline does, nothing is copied.
    pub fn decode_count(&self, segment: Bytes) -> Result<u64, GpuError> {
        let mut count = 0;
        self.decode_with(segment, |_, stream, _, _| {
            stream
                .synchronize()
                .map_err(|e| cuda_error("waiting for the decoder", e))?;
            count += 1;
            Ok(())
        })?;
        Ok(count)
    }

    fn decode_with(
        &self,
        segment: Bytes,
        mut on_picture: impl FnMut(
            &super::nvdec::MappedFrame<'_>,
            &Arc<CudaStream>,
            &super::cuda::DeviceRuntime,
            &mut Option<DeviceScaler>,
        ) -> Result<(), GpuError>,
    ) -> Result<(), GpuError> {
        let mut source =
            SourceSegment::open(segment).map_err(|e| GpuError::Nvdec(format!("demuxing: {e}")))?;
        let codec = match source.codec {
            ffmpeg_next::codec::Id::H264 => Codec::H264,
            ffmpeg_next::codec::Id::HEVC => Codec::Hevc,
            other => return Err(GpuError::NvdecUnsupported(format!("{other:?}"))),
        };
        self.runtime.bind()?;
        let stream = self.runtime.new_stream()?;
        let mut parser = Parser::new(codec, &self.decoders)?;
        let mut scaler = None;
        let video_index = source.video_index;
        let mut drain = |parser: &mut Parser<'_>| -> Result<(), GpuError> {
            while let Some(picture) = parser.next_displayed() {
                if !parser.decoded_cleanly(&picture) {
                    continue;
                }
                let frame = parser.map(&picture, stream.cu_stream() as sys::CUstream)?;
                on_picture(&frame, &stream, &self.runtime, &mut scaler)?;
                stream
                    .synchronize()
                    .map_err(|e| cuda_error("synchronising", e))?;
            }
            Ok(())
        };
        for (stream_of, packet) in source.input.packets() {
            if stream_of.index() == video_index
                && let Some(data) = packet.data()
            {
                parser.feed(data, packet.pts())?;
                drain(&mut parser)?;
            }
        }
        parser.finish()?;
        drain(&mut parser)
    }

    /// Seconds per resize of a `source`-sized picture to `output`, the median
    /// of `rounds` rounds of 20 after a warm-up, and the fewest bytes one
    /// resize must move (the source read once, the output written once).
    pub fn time_resize(
        &self,
        source: (u32, u32),
        output: (u32, u32),
        rounds: usize,
    ) -> Result<(f64, usize), GpuError> {
        self.runtime.bind()?;
        let stream = self.runtime.new_stream()?;
        let noise = Nv12Image::noise(source.0, source.1, 0x9e37_79b9_7f4a_7c15);
        let input = stream
            .clone_htod(&noise.data)
            .map_err(|e| cuda_error("uploading", e))?;
        let luma = address(&input, &stream);
        let picture = DeviceNv12 {
            luma,
            chroma: luma + u64::from(source.0) * u64::from(source.1),
            pitch: source.0,
        };
        let mut scaler = self.runtime.scaler(&stream, source, output)?;
        let per_round = 20;
        let mut times = Vec::with_capacity(rounds);
        for round in 0..=rounds {
            stream.synchronize().map_err(|e| cuda_error("sync", e))?;
            let started = Instant::now();
            for _ in 0..per_round {
                self.runtime.resize(&stream, picture, &mut scaler)?;
            }
            stream.synchronize().map_err(|e| cuda_error("sync", e))?;
            if round > 0 {
                times.push(started.elapsed().as_secs_f64() / per_round as f64);
            }
        }
        times.sort_by(f64::total_cmp);
        let bytes = Nv12Image::len_for(source.0, source.1) + Nv12Image::len_for(output.0, output.1);
        Ok((times[times.len() / 2], bytes))
    }

    /// Device-to-device copy bandwidth in bytes per second (read + write
    /// counted), the ceiling the resize is measured against.
    pub fn copy_bandwidth(&self, bytes: usize, rounds: usize) -> Result<f64, GpuError> {
        self.runtime.bind()?;
        let stream = self.runtime.new_stream()?;
        let from = stream
            .alloc_zeros::<u8>(bytes)
            .map_err(|e| cuda_error("allocating", e))?;
        let mut to = stream
            .alloc_zeros::<u8>(bytes)
            .map_err(|e| cuda_error("allocating", e))?;
        let mut times = Vec::with_capacity(rounds);
        for round in 0..=rounds {
            stream.synchronize().map_err(|e| cuda_error("sync", e))?;
            let started = Instant::now();
            stream
                .memcpy_dtod(&from, &mut to)
                .map_err(|e| cuda_error("copying", e))?;
            stream.synchronize().map_err(|e| cuda_error("sync", e))?;
            if round > 0 {
                times.push(started.elapsed().as_secs_f64());
            }
        }
        times.sort_by(f64::total_cmp);
        Ok(2.0 * bytes as f64 / times[times.len() / 2])
    }
}

fn poison(stream: &Arc<CudaStream>, scaler: &mut DeviceScaler) -> Result<(), GpuError> {
    let len = scaler.picture().len();
    stream
        .memcpy_htod(&vec![0xa5u8; len], scaler.picture_mut())
        .map_err(|e| cuda_error("poisoning the output", e))
}
