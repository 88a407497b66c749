//! The GPU backend: NVDEC decodes, lpgpu's CUDA kernels scale every rung on
//! the device, and NVENC encodes them where the GPU has it, libx264 on CPU
//! threads where it does not (the hybrid path).
//!
//! Nothing here is needed to build: the CUDA driver (cudarc, dynamic
//! loading), `libnvcuvid` and `libnvidia-encode` are opened at run time, and
//! whatever is missing is a [`GpuError`] that says so: `--backend gpu` fails
//! with it, `--backend auto` logs it and uses the CPU.
//!
//! Layout: `sys` (bindgen types), `cuda` (driver, kernels), `nvdec`, `nvenc`
//! (the C APIs behind safe owning types; the only modules allowed `unsafe`),
//! `resize` (the filter and its CPU reference, plain code), `segment` (one
//! segment through the GPU), and here the rig: which GPUs, how many
//! segments each, least-loaded placement, the start-up self-test, CPU retry
//! and context rebuilds after CUDA errors.
//!
//! NVENC: each GPU is asked by opening a session. Data-centre cards (H100,
//! H200, A100) answer "unsupported device" and every rendition takes the
//! hybrid path. Where NVENC exists, each rendition takes a session while the
//! GPU's count allows (then libx264 for that rendition); an NVENC failure
//! sends the segment to the CPU and this GPU to the hybrid path for good.
//! The NVENC encode has not run on hardware yet (see the README).

pub mod cuda;
pub mod diagnostics;
pub mod nvdec;
pub mod nvenc;
pub mod resize;
mod segment;
mod sys;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use self::cuda::DeviceRuntime;
use self::nvdec::{Codec, DecoderPool};
use self::nvenc::{EncoderSessions, NvencSupport};
use self::segment::SegmentFailure;
use super::cpu::CpuBackend;
use super::{
    Backend, Cancel, EncoderSettings, GpuOptions, RenditionSpec, SegmentOptions, TranscodeError,
    Transcoded,
};

/// Segments transcoded at once on one GPU unless `--max-sessions-per-gpu`
/// says otherwise: enough to keep several NVDEC engines busy while the
/// encoders work on the CPU.
pub const DEFAULT_SESSIONS_PER_GPU: usize = 8;

/// Encoder sessions lpgpu allows itself per GPU where NVENC exists (consumer
/// drivers cap sessions per system at 8 to 12).
const NVENC_SESSIONS_PER_GPU: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuError {
    #[error("no NVIDIA driver: {0}")]
    DriverMissing(String),
    #[error("NVIDIA driver too old: {0}")]
    DriverTooOld(String),
    #[error("the NVIDIA driver reports no GPU")]
    NoDevice,
    #[error("CUDA: {0}")]
    Cuda(String),
    #[error("CUDA kernels: {0}")]
    Kernel(String),
    #[error("NVDEC unavailable: {0}")]
    NvdecMissing(String),
    #[error("NVDEC: {0}")]
    Nvdec(String),
    #[error("NVDEC cannot decode this stream: {0}")]
    NvdecUnsupported(String),
    #[error("NVENC: {0}")]
    Nvenc(String),
    #[error("encoder session limit reached ({0} per GPU)")]
    EncoderSessionLimit(usize),
    #[error("GPU {ordinal} failed its self-test: {why}")]
    SelfTest { ordinal: usize, why: String },
    #[error("--gpus: {0}")]
    BadSelection(String),
    #[error("no usable GPU: {0}")]
    NoUsableGpu(String),
    /// The segment's waiter gave up: not the GPU's fault.
    #[error("stopped: nobody waits for this segment any more")]
    Cancelled,
}

fn cpu_init() {
    super::cpu::init_ffmpeg();
}

/// A GPU's context with the decoders made in it. Decoders go first: they
/// must be destroyed while their context lives.
pub struct Device {
    decoders: DecoderPool,
    runtime: DeviceRuntime,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("ordinal", &self.runtime.ordinal)
            .field("idle_decoders", &self.decoders.idle())
            .finish()
    }
}

impl Device {
    fn open(ordinal: usize, fresh: bool) -> Result<Self, GpuError> {
        let runtime = DeviceRuntime::open(ordinal, fresh)?;
        runtime.bind()?;
        Ok(Self {
            decoders: DecoderPool::new(runtime.context.cu_ctx().cast())?,
            runtime,
        })
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // nvcuvid frees decoders in the current context.
        let _ = self.runtime.bind();
        self.decoders.clear();
    }
}

/// One GPU of the rig: its device (rebuilt after a context-breaking error),
/// its capacity and what it can do.
#[derive(Debug)]
struct GpuSlot {
    ordinal: usize,
    name: String,
    device: Mutex<Option<Arc<Device>>>,
    in_flight: AtomicUsize,
    capacity: usize,
    usable: AtomicBool,
    nvdec_engines: u32,
    nvenc: NvencSupport,
    /// Set after an NVENC failure: the hybrid path only from then on.
    nvenc_failed: AtomicBool,
    encoder_sessions: Arc<EncoderSessions>,
}

impl GpuSlot {
    /// The GPU's NVENC sessions, when renditions may go to NVENC.
    fn nvenc_sessions(&self) -> Option<&Arc<EncoderSessions>> {
        (self.nvenc == NvencSupport::Available && !self.nvenc_failed.load(Ordering::Acquire))
            .then_some(&self.encoder_sessions)
    }

    /// One segment on this GPU (its device reopened first if need be).
    fn transcode(
        &self,
        segment: Bytes,
        specs: &[RenditionSpec],
        settings: &EncoderSettings,
        perceptual_hash: bool,
        cancel: &Cancel,
    ) -> Result<Transcoded, SegmentFailure> {
        let device = self.device()?;
        // A perceptual hash is made from the pictures libx264 gets on the
        // host (as LPMS's CPU path does): such a segment skips NVENC.
        let nvenc = if perceptual_hash {
            None
        } else {
            self.nvenc_sessions()
        };
        segment::transcode(
            &device,
            segment,
            specs,
            settings,
            nvenc,
            perceptual_hash,
            cancel,
        )
    }

    /// The device, reopened if an error dropped it.
    fn device(&self) -> Result<Arc<Device>, GpuError> {
        let mut device = self.device.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(device) = device.as_ref() {
            return Ok(device.clone());
        }
        tracing::warn!(gpu = self.ordinal, "rebuilding the CUDA context");
        let opened = Arc::new(Device::open(self.ordinal, true)?);
        *device = Some(opened.clone());
        Ok(opened)
    }

    /// After a failed segment: if the context is broken, drop it so the next
    /// segment builds a fresh one; if that cannot be done, stop using the GPU.
    fn after_error(&self, error: &GpuError) {
        let mut device = self.device.lock().unwrap_or_else(|p| p.into_inner());
        let broken = device
            .as_ref()
            .is_none_or(|d| d.runtime.bind().is_err() || !d.runtime.healthy());
        if broken {
            tracing::error!(gpu = self.ordinal, %error, "the CUDA context is broken; it will be rebuilt");
            *device = None;
            drop(device);
            if let Err(e) = self.device() {
                tracing::error!(gpu = self.ordinal, error = %e, "the GPU cannot be reopened; not using it any more");
                self.usable.store(false, Ordering::Release);
            }
        }
    }
}

/// NVDEC + CUDA + libx264 (or NVENC where present), over one or more GPUs.
#[derive(Debug)]
pub struct GpuBackend {
    slots: Vec<Arc<GpuSlot>>,
    settings: EncoderSettings,
    cpu: CpuBackend,
    released: (Mutex<()>, Condvar),
    /// Which GPU each stream's segments go to, and when it last sent one.
    /// Which GPU each stream's segments go to. A stream is forgotten when
    /// its session ends ([`Backend::end_stream`], from the node's session
    /// registry: teardown, error or idleness), not by a clock of its own.
    pinned: Mutex<HashMap<String, usize>>,
}

/// Why a segment got no place on a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NoPlace {
    /// No GPU is usable any more.
    NoGpu,
    /// It was cancelled, or its deadline passed, while every place was taken.
    Gone,
}

/// A segment's place on a GPU; frees it on `Drop`.
struct Placement<'a> {
    backend: &'a GpuBackend,
    slot: Arc<GpuSlot>,
}

impl Drop for Placement<'_> {
    fn drop(&mut self) {
        self.slot.in_flight.fetch_sub(1, Ordering::AcqRel);
        let _guard = self.backend.released.0.lock();
        self.backend.released.1.notify_one();
    }
}

/// Picks the GPU for a segment: the stream's own (`pinned`, an index into
/// `loads`) while it is usable and has room, else the least-loaded.
fn choose(loads: &[(usize, usize, bool)], pinned: Option<usize>) -> Option<usize> {
    match pinned.and_then(|index| loads.get(index).map(|load| (index, load))) {
        Some((index, (in_flight, capacity, true))) if in_flight < capacity => Some(index),
        _ => least_loaded(loads),
    }
}

/// Picks the least-loaded usable GPU with a free place: the index into
/// `loads` of (in flight, capacity, usable), or None when all are full.
fn least_loaded(loads: &[(usize, usize, bool)]) -> Option<usize> {
    loads
        .iter()
        .enumerate()
        .filter(|(_, (in_flight, capacity, usable))| *usable && in_flight < capacity)
        .min_by(|(_, a), (_, b)| {
            // Compare fill ratios: a*cap_b vs b*cap_a, exactly, in integers.
            (a.0 * b.1).cmp(&(b.0 * a.1))
        })
        .map(|(index, _)| index)
}

impl GpuBackend {
    /// Finds the GPUs, opens each, checks NVDEC and NVENC, runs the self-test;
    /// fails saying why no GPU is usable.
    pub fn open(settings: EncoderSettings, options: &GpuOptions) -> Result<Self, GpuError> {
        super::cpu::init_ffmpeg();
        let driver = cuda::probe_driver()?;
        nvdec::library()?;
        let ordinals = match &options.gpus {
            Some(list) if list.is_empty() => {
                return Err(GpuError::BadSelection("the list is empty".into()));
            }
            Some(list) => {
                if let Some(missing) = list.iter().find(|&&o| o >= driver.devices) {
                    return Err(GpuError::BadSelection(format!(
                        "GPU {missing} does not exist (this machine has {})",
                        driver.devices
                    )));
                }
                list.clone()
            }
            None => (0..driver.devices).collect(),
        };
        tracing::info!(
            driver = %cuda::version_text(driver.version),
            devices = driver.devices,
            "CUDA driver found"
        );
        let capacity = options.max_sessions_per_gpu.max(1);
        let mut slots = Vec::new();
        let mut refused = Vec::new();
        for ordinal in ordinals {
            match open_slot(ordinal, capacity) {
                Ok(slot) => slots.push(Arc::new(slot)),
                Err(e) => {
                    tracing::warn!(gpu = ordinal, error = %e, "not using this GPU");
                    refused.push(format!("GPU {ordinal}: {e}"));
                }
            }
        }
        let backend = Self {
            slots,
            cpu: CpuBackend::new(settings.clone()),
            settings,
            released: (Mutex::new(()), Condvar::new()),
            pinned: Mutex::new(HashMap::new()),
        };
        if options.self_test {
            backend.self_test(&mut refused);
        }
        if backend.usable_gpus() == 0 {
            return Err(GpuError::NoUsableGpu(refused.join("; ")));
        }
        Ok(backend)
    }

    fn usable_gpus(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.usable.load(Ordering::Acquire))
            .count()
    }

    /// Transcodes a built-in 1 s clip to 240p on each GPU; a GPU that fails
    /// or falls back is not used.
    #[allow(clippy::expect_used, reason = "start-up, over a built-in profile")]
    fn self_test(&self, refused: &mut Vec<String>) {
        let clip = match super::testclip::make_test_clip(1, 320, 180) {
            Ok(clip) => clip,
            Err(e) => {
                tracing::warn!(error = %e, "could not make the self-test clip; skipping the GPU self-test");
                return;
            }
        };
        let spec = RenditionSpec::from(
            crate::protocol::parse_profile_list("P240p30fps16x9").expect("a built-in profile")[0],
        );
        for slot in &self.slots {
            let outcome = slot.transcode(
                clip.clone(),
                std::slice::from_ref(&spec),
                &self.settings,
                false,
                &Cancel::new(),
            );
            match outcome {
                Ok(t)
                    if t.renditions
                        .iter()
                        .all(|r| r.frames > 0 && !r.data.is_empty()) =>
                {
                    tracing::info!(gpu = slot.ordinal, name = %slot.name, frames = t.source_frames, "GPU self-test passed");
                }
                other => {
                    let why = match other {
                        Ok(_) => "a rendition came out empty".to_string(),
                        Err(SegmentFailure::Gpu(e)) => e.to_string(),
                        Err(SegmentFailure::Input(e)) => e.to_string(),
                    };
                    let error = GpuError::SelfTest {
                        ordinal: slot.ordinal,
                        why,
                    };
                    tracing::error!(%error, "not using this GPU");
                    refused.push(error.to_string());
                    slot.usable.store(false, Ordering::Release);
                }
            }
        }
    }

    /// The slot index a stream is pinned to.
    fn pinned_slot(&self, stream: Option<&str>) -> Option<usize> {
        let stream = stream?;
        self.pinned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(stream)
            .copied()
    }

    fn pin(&self, stream: Option<&str>, index: usize) {
        if let Some(stream) = stream {
            self.pinned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(stream.to_string(), index);
        }
    }

    /// Waits for a place: the stream's own GPU when it has room, else the
    /// least-loaded; `NoGpu` when no GPU is usable, `Gone` when the segment
    /// is cancelled or its deadline passes first (never a wait without end:
    /// the executor's slots are the only queue).
    fn place(
        &self,
        stream: Option<&str>,
        deadline: Option<Instant>,
        cancel: &Cancel,
    ) -> Result<Placement<'_>, NoPlace> {
        let pinned = self.pinned_slot(stream);
        let mut guard = self.released.0.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let loads: Vec<_> = self
                .slots
                .iter()
                .map(|s| {
                    (
                        s.in_flight.load(Ordering::Acquire),
                        s.capacity,
                        s.usable.load(Ordering::Acquire),
                    )
                })
                .collect();
            if !loads.iter().any(|l| l.2) {
                return Err(NoPlace::NoGpu);
            }
            if let Some(index) = choose(&loads, pinned) {
                self.pin(stream, index);
                let slot = self.slots[index].clone();
                slot.in_flight.fetch_add(1, Ordering::AcqRel);
                return Ok(Placement {
                    backend: self,
                    slot,
                });
            }
            if cancel.is_cancelled() || deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(NoPlace::Gone);
            }
            guard = self
                .released
                .1
                .wait_timeout(guard, Duration::from_millis(200))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn on_cpu(
        &self,
        segment: Bytes,
        specs: &[RenditionSpec],
        options: &SegmentOptions,
        why: String,
    ) -> Result<Transcoded, TranscodeError> {
        let mut transcoded = self.cpu.transcode(segment, specs, options)?;
        transcoded.fallback = Some(why);
        Ok(transcoded)
    }
}

fn open_slot(ordinal: usize, capacity: usize) -> Result<GpuSlot, GpuError> {
    let device = Device::open(ordinal, false)?;
    let caps = nvdec::decode_caps(Codec::H264)?;
    if !caps.supported {
        return Err(GpuError::NvdecUnsupported(
            "this GPU's NVDEC does not decode 8-bit H.264".into(),
        ));
    }
    let nvenc = nvenc::detect(device.runtime.context.cu_ctx().cast());
    let (major, minor) = device.runtime.compute_capability;
    tracing::info!(
        gpu = ordinal,
        name = %device.runtime.name,
        memory_gib = device.runtime.memory_bytes as f64 / f64::from(1u32 << 30),
        compute_capability = %format!("{major}.{minor}"),
        nvdec_engines = caps.engines,
        max_sessions = capacity,
        "GPU ready"
    );
    match &nvenc {
        NvencSupport::Available => tracing::info!(
            gpu = ordinal,
            sessions = NVENC_SESSIONS_PER_GPU,
            "NVENC found: renditions are encoded on the GPU while sessions are free"
        ),
        NvencSupport::Unsupported(why) | NvencSupport::Missing(why) => {
            tracing::info!(gpu = ordinal, "hybrid encode (libx264): {why}")
        }
        NvencSupport::SessionLimit => tracing::info!(
            gpu = ordinal,
            "NVENC sessions are all taken; renditions use libx264"
        ),
    }
    Ok(GpuSlot {
        ordinal,
        name: device.runtime.name.clone(),
        device: Mutex::new(Some(Arc::new(device))),
        in_flight: AtomicUsize::new(0),
        capacity,
        usable: AtomicBool::new(true),
        nvdec_engines: caps.engines,
        nvenc,
        nvenc_failed: AtomicBool::new(false),
        encoder_sessions: EncoderSessions::new(NVENC_SESSIONS_PER_GPU),
    })
}

impl Backend for GpuBackend {
    fn name(&self) -> &'static str {
        "gpu"
    }

    fn device(&self) -> String {
        let names: Vec<String> = self
            .slots
            .iter()
            .map(|s| format!("{}:{}", s.ordinal, s.name))
            .collect();
        names.join(", ")
    }

    fn capacity(&self) -> Option<usize> {
        Some(self.slots.iter().map(|s| s.capacity).sum())
    }

    fn end_stream(&self, key: &str) {
        self.pinned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    fn transcode(
        &self,
        segment: Bytes,
        specs: &[RenditionSpec],
        options: &SegmentOptions,
    ) -> Result<Transcoded, TranscodeError> {
        super::cpu::check_specs(specs)?;
        if options.clip.is_some() {
            // Clipping is done where the decoded pictures are timed: on the CPU.
            return self.on_cpu(segment, specs, options, "a clip is made on the CPU".into());
        }
        let placement =
            match self.place(options.stream.as_deref(), options.deadline, &options.cancel) {
                Ok(placement) => placement,
                Err(NoPlace::NoGpu) => {
                    return self.on_cpu(segment, specs, options, "no usable GPU is left".into());
                }
                Err(NoPlace::Gone) => return Err(TranscodeError::Cancelled),
            };
        let slot = &placement.slot;
        let outcome = slot.transcode(
            segment.clone(),
            specs,
            &self.settings,
            options.perceptual_hash,
            &options.cancel,
        );
        match outcome {
            Ok(transcoded) => Ok(transcoded),
            Err(SegmentFailure::Input(e)) => Err(e),
            Err(SegmentFailure::Gpu(GpuError::Cancelled)) => Err(TranscodeError::Cancelled),
            Err(SegmentFailure::Gpu(error)) => {
                if matches!(error, GpuError::Nvenc(_))
                    && !slot.nvenc_failed.swap(true, Ordering::AcqRel)
                {
                    tracing::warn!(gpu = slot.ordinal, %error, "NVENC failed; this GPU encodes with libx264 from now on");
                }
                if let GpuError::NvdecUnsupported(_) = error {
                    // A stream NVDEC does not take (another codec, 10-bit):
                    // expected, and the GPU is fine.
                    tracing::info!(gpu = slot.ordinal, %error, "transcoding this segment on the CPU");
                } else {
                    tracing::warn!(gpu = slot.ordinal, %error, "the GPU could not transcode this segment; retrying on the CPU");
                    slot.after_error(&error);
                }
                drop(placement);
                if let Some(stream) = options.stream.as_deref() {
                    // An error for this stream ends its placement.
                    self.end_stream(stream);
                }
                self.on_cpu(segment, specs, options, error.to_string())
            }
        }
    }
}

impl GpuBackend {
    /// Per GPU: ordinal, name, NVDEC engines, NVENC support, sessions in use.
    pub fn describe(&self) -> Vec<String> {
        self.slots
            .iter()
            .map(|s| {
                format!(
                    "GPU {} {}: {} NVDEC engines, NVENC {:?}, {} of {} places in use, {} NVENC sessions",
                    s.ordinal,
                    s.name,
                    s.nvdec_engines,
                    s.nvenc,
                    s.in_flight.load(Ordering::Acquire),
                    s.capacity,
                    s.encoder_sessions.in_use()
                )
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    //! Helpers shared by the GPU module's tests (CPU-side oracles).

    use ffmpeg::format::Pixel;
    use ffmpeg::software::scaling;
    use ffmpeg::util::frame::Video;
    use ffmpeg_next as ffmpeg;

    use super::resize::Nv12Image;

    /// libswscale's bicubic NV12 → NV12 resize, packed, as an independent
    /// oracle for the filter's shape.
    pub fn swscale_nv12(image: &Nv12Image, width: u32, height: u32) -> Vec<u8> {
        crate::pipeline::cpu::init_ffmpeg();
        let mut source = Video::new(Pixel::NV12, image.width, image.height);
        let (w, h) = (image.width as usize, image.height as usize);
        let stride = source.stride(0);
        for row in 0..h {
            source.data_mut(0)[row * stride..row * stride + w]
                .copy_from_slice(&image.data[row * w..(row + 1) * w]);
        }
        let chroma = image.chroma();
        let row_len = chroma.pitch;
        let stride = source.stride(1);
        for row in 0..chroma.height as usize {
            source.data_mut(1)[row * stride..row * stride + row_len]
                .copy_from_slice(&chroma.data[row * row_len..(row + 1) * row_len]);
        }
        let mut scaler = scaling::Context::get(
            Pixel::NV12,
            image.width,
            image.height,
            Pixel::NV12,
            width,
            height,
            scaling::Flags::BICUBIC | scaling::Flags::ACCURATE_RND | scaling::Flags::FULL_CHR_H_INT,
        )
        .expect("swscale context");
        let mut out = Video::empty();
        scaler.run(&source, &mut out).expect("swscale");
        let mut packed = Vec::with_capacity(Nv12Image::len_for(width, height));
        for row in 0..height as usize {
            let stride = out.stride(0);
            packed.extend_from_slice(&out.data(0)[row * stride..row * stride + width as usize]);
        }
        let chroma_row = width.div_ceil(2) as usize * 2;
        for row in 0..height.div_ceil(2) as usize {
            let stride = out.stride(1);
            packed.extend_from_slice(&out.data(1)[row * stride..row * stride + chroma_row]);
        }
        packed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_prefers_the_least_loaded_usable_gpu() {
        // (in flight, capacity, usable)
        assert_eq!(
            least_loaded(&[(3, 8, true), (1, 8, true), (2, 8, true)]),
            Some(1)
        );
        // Fill ratio, not count: 2 of 4 is fuller than 3 of 8.
        assert_eq!(least_loaded(&[(2, 4, true), (3, 8, true)]), Some(1));
        // A full or unusable GPU is skipped.
        assert_eq!(
            least_loaded(&[(8, 8, true), (0, 8, false), (7, 8, true)]),
            Some(2)
        );
        assert_eq!(least_loaded(&[(8, 8, true), (0, 8, false)]), None);
        assert_eq!(least_loaded(&[]), None);
    }

    #[test]
    fn a_stream_stays_on_its_gpu_while_it_has_room() {
        let loads = [(5, 8, true), (1, 8, true)];
        assert_eq!(choose(&loads, Some(0)), Some(0));
        assert_eq!(choose(&loads, None), Some(1));
        // Full, unusable or gone: the least-loaded instead.
        assert_eq!(choose(&[(8, 8, true), (1, 8, true)], Some(0)), Some(1));
        assert_eq!(choose(&[(0, 8, false), (1, 8, true)], Some(0)), Some(1));
        assert_eq!(choose(&loads, Some(7)), Some(1));
    }

    #[test]
    fn without_a_gpu_the_error_names_what_is_missing() {
        // CI machines have no NVIDIA driver: the error must say so plainly.
        if let Err(e) = GpuBackend::open(EncoderSettings::default(), &GpuOptions::default()) {
            let text = e.to_string();
            assert!(
                text.contains("libcuda") || text.contains("NVDEC") || text.contains("GPU"),
                "{text}"
            );
        }
    }
}
