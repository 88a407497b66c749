//! The transcoding pipeline: a segment in, one rendition (H.264, HEVC, VP8
//! or VP9; MPEG-TS, MP4 or Matroska) per [`RenditionSpec`] out, each with
//! its perceptual hash when asked ([`signature`]).
//!
//! [`Backend`] is the one interface, with two implementations:
//! [`cpu::CpuBackend`] (ffmpeg-next: libavformat, libavcodec, swscale,
//! libx264) and [`gpu::GpuBackend`] (NVDEC, CUDA resize kernels, NVENC or
//! libx264), chosen at run time by [`select_backend`] (and, for benchmarks
//! of the relay only, [`echo::EchoBackend`], which does no work). Backends run on the
//! caller's thread (and threads of their own): callers keep them off the
//! async executor. [`ladder`] holds the plain arithmetic, [`rendition`] what
//! a rendition must be.

pub mod cpu;
pub mod echo;
pub mod encoders;
pub mod ffglue;
pub mod gpu;
pub mod ladder;
pub mod rendition;
pub mod segmenter;
pub mod signature;
pub mod testclip;
pub mod timestamps;
pub mod workers;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

pub use rendition::{
    Cancel, Clip, Container, Gop, H264Profile, Rational, RenditionSpec, SegmentOptions, VideoCodec,
};

/// One rung of the ladder, muxed as its spec's container says.
#[derive(Clone)]
pub struct Rendition {
    pub spec: RenditionSpec,
    /// The encoded picture size.
    pub width: u32,
    pub height: u32,
    /// Pictures encoded.
    pub frames: u64,
    /// Seconds this rung spent scaling and encoding (its own thread's work).
    pub encode_seconds: f64,
    pub data: Bytes,
    /// Its perceptual hash (an MPEG-7 video signature, FFmpeg's binary
    /// format), when the segment asked for one.
    pub perceptual_hash: Option<Bytes>,
}

impl fmt::Debug for Rendition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rendition")
            .field("spec", &self.spec.name)
            .field("size", &format_args!("{}x{}", self.width, self.height))
            .field("frames", &self.frames)
            .field("bytes", &self.data.len())
            .finish()
    }
}

impl Rendition {
    /// Pictures encoded × encoded width × height: what the orchestrator
    /// bills and broadcasters recount.
    pub fn pixels(&self) -> u64 {
        self.frames * u64::from(self.width) * u64::from(self.height)
    }
}

/// The renditions of one segment, in the order of the specs asked for, and
/// what the source was.
#[derive(Debug, Clone)]
pub struct Transcoded {
    pub renditions: Vec<Rendition>,
    /// Seconds of video in the source segment (0 when unknown).
    pub source_seconds: f64,
    /// Pictures decoded from the source.
    pub source_frames: u64,
    /// Σ width × height over the decoded source pictures.
    pub source_pixels: u64,
    /// The backend that made these renditions (`gpu`, or `cpu` when the GPU
    /// backend handed the segment to the CPU).
    pub backend: &'static str,
    /// Why the GPU backend handed this segment to the CPU, when it did.
    pub fallback: Option<String>,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TranscodeError {
    /// The input is at fault: not a container, no video, nothing decodes.
    #[error("segment does not decode: {0}")]
    Undecodable(String),
    /// No video packet is a keyframe: the segment does not start a GOP.
    /// Refused as lpms does (libavcodec would decode it from a recovery
    /// point), in lpms's words, which go-livepeer's broadcasters recognise.
    #[error("No keyframes in input")]
    NoKeyframes,
    /// The rendition asked for is one lpgpu does not make (a size out of
    /// bounds, say): the request is at fault, not the segment.
    #[error("unsupported rendition: {0}")]
    Unsupported(String),
    /// We are at fault: an encoder or muxer failed.
    #[error("transcoding failed: {0}")]
    Internal(String),
    /// Stopped before it finished: nobody waited for the result any more
    /// (its deadline passed).
    #[error("transcoding was stopped: its deadline passed")]
    Cancelled,
}

/// x264 settings shared by every rendition; the defaults are lpgpu's.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderSettings {
    /// x264 preset (`veryfast` by default).
    pub preset: String,
    /// Keyframe interval in seconds (2 by default).
    pub gop_seconds: f64,
    /// VBV buffer as a multiple of the profile bitrate (2 by default); the
    /// maximum rate is the profile bitrate.
    pub bufsize_factor: f64,
    /// Threads per decoder and encoder; 0 lets FFmpeg choose.
    pub threads: usize,
}

impl Default for EncoderSettings {
    fn default() -> Self {
        Self {
            preset: "veryfast".into(),
            gop_seconds: 2.0,
            bufsize_factor: 2.0,
            threads: 0,
        }
    }
}

/// Turns one segment into its renditions. Implementations block: call them
/// from a dedicated thread or `spawn_blocking`, never on the async executor.
pub trait Backend: Send + Sync + fmt::Debug {
    /// A short name for logs and metrics (`cpu`, `gpu`).
    fn name(&self) -> &'static str;
    /// The device it runs on, for `lpgpu_backend_info` (e.g. the CPU model).
    fn device(&self) -> String;
    fn transcode(
        &self,
        segment: Bytes,
        renditions: &[RenditionSpec],
        options: &SegmentOptions,
    ) -> Result<Transcoded, TranscodeError>;
    /// Segments it is sized to transcode at once, when it knows (the GPU
    /// backend: GPUs × `--max-sessions-per-gpu`); the default of
    /// `--max-sessions` follows it.
    fn capacity(&self) -> Option<usize> {
        None
    }
    /// The stream `key` has ended: forget whatever was kept for it (the GPU
    /// rig's placement). Backends without per-stream state ignore it.
    fn end_stream(&self, _key: &str) {}
    /// What it really does, as today's wires' capability bits: the one
    /// source of what a node or rig advertises (registration,
    /// `GetOrchestrator`, the pool's placement). By default what the CPU
    /// encoders and decoders do.
    fn capabilities(&self) -> crate::protocol::capabilities::CapabilitySet {
        encoders::software_capabilities()
    }
}

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// The GPU when a usable one is found, else the CPU (and the log says why).
    Auto,
    Gpu,
    Cpu,
    /// No work: renditions are the source (for benchmarking the relay).
    #[value(hide = true)]
    Echo,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("--backend gpu: no GPU backend is available: {0}")]
    GpuUnavailable(String),
}

/// The GPU flags (`--gpus`, `--max-sessions-per-gpu`, `--gpu-self-test`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuOptions {
    /// Device ordinals to use; all when None.
    pub gpus: Option<Vec<usize>>,
    /// Segments transcoded at once on one GPU.
    pub max_sessions_per_gpu: usize,
    /// Transcode a built-in clip on each GPU at start-up and refuse a GPU
    /// that fails.
    pub self_test: bool,
}

impl Default for GpuOptions {
    fn default() -> Self {
        Self {
            gpus: None,
            max_sessions_per_gpu: gpu::DEFAULT_SESSIONS_PER_GPU,
            self_test: true,
        }
    }
}

/// Picks the backend for `--backend`: `gpu` fails saying what is missing,
/// `auto` falls back to the CPU and logs why.
pub fn select_backend(
    choice: BackendChoice,
    settings: EncoderSettings,
    gpu_options: &GpuOptions,
) -> Result<Arc<dyn Backend>, BackendError> {
    match choice {
        BackendChoice::Cpu => {
            tracing::info!("backend: CPU, as --backend cpu asks");
            Ok(Arc::new(cpu::CpuBackend::new(settings)))
        }
        BackendChoice::Echo => {
            tracing::warn!(
                "backend: echo (no transcoding; renditions are the source), as --backend echo asks"
            );
            Ok(Arc::new(echo::EchoBackend))
        }
        BackendChoice::Gpu => match gpu::GpuBackend::open(settings, gpu_options) {
            Ok(backend) => Ok(Arc::new(backend)),
            Err(e) => Err(BackendError::GpuUnavailable(e.to_string())),
        },
        BackendChoice::Auto => match gpu::GpuBackend::open(settings.clone(), gpu_options) {
            Ok(backend) => Ok(Arc::new(backend)),
            Err(e) => {
                tracing::info!("backend: using the CPU because the GPU is not usable: {e}");
                Ok(Arc::new(cpu::CpuBackend::new(settings)))
            }
        },
    }
}
