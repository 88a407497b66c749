//! The transcoding pipeline: MPEG-TS segment in, one H.264 MPEG-TS rendition
//! per profile out.
//!
//! [`Backend`] is the one interface; [`cpu::CpuBackend`] (ffmpeg-next:
//! libavformat, libavcodec, swscale, libx264) is the backend built so far.
//! Backends run on the caller's thread (and threads of their own): callers keep
//! them off the async executor. [`ladder`] holds the plain arithmetic.

pub mod cpu;
pub mod ladder;
pub mod segmenter;
pub mod testclip;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::protocol::Profile;

/// A frame rate or time base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rational {
    pub num: i32,
    pub den: i32,
}

impl Rational {
    pub const fn new(num: i32, den: i32) -> Self {
        Self { num, den }
    }

    pub fn as_f64(&self) -> f64 {
        if self.den == 0 {
            0.0
        } else {
            f64::from(self.num) / f64::from(self.den)
        }
    }
}

/// One rung of the ladder, muxed as MPEG-TS.
#[derive(Clone)]
pub struct Rendition {
    pub profile: Profile,
    pub width: u32,
    pub height: u32,
    pub frames: u64,
    /// Seconds this rung spent scaling and encoding (its own thread's work).
    pub encode_seconds: f64,
    pub data: Bytes,
}

impl fmt::Debug for Rendition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rendition")
            .field("profile", &self.profile.name)
            .field("size", &format_args!("{}x{}", self.width, self.height))
            .field("frames", &self.frames)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// The renditions of one segment, in the order of the profiles asked for, and
/// what the source was.
#[derive(Debug, Clone)]
pub struct Transcoded {
    pub renditions: Vec<Rendition>,
    /// Seconds of video in the source segment (0 when unknown).
    pub source_seconds: f64,
    pub source_frames: u64,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TranscodeError {
    /// The input is at fault: not a container, no video, nothing decodes.
    #[error("segment does not decode: {0}")]
    Undecodable(String),
    /// We are at fault: an encoder or muxer failed.
    #[error("transcoding failed: {0}")]
    Internal(String),
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
    fn transcode(&self, segment: Bytes, profiles: &[Profile])
    -> Result<Transcoded, TranscodeError>;
}

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// The GPU when a usable one is found, else the CPU (and the log says why).
    Auto,
    Gpu,
    Cpu,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("--backend gpu: no GPU backend is available: {0}")]
    GpuUnavailable(String),
}

/// Why there is no GPU backend on this build.
const GPU_NOT_BUILT: &str = "the GPU pipeline (NVDEC, CUDA scaling, NVENC) is not built yet";

/// Picks the backend for `--backend`.
pub fn select_backend(
    choice: BackendChoice,
    settings: EncoderSettings,
) -> Result<Arc<dyn Backend>, BackendError> {
    match choice {
        BackendChoice::Gpu => Err(BackendError::GpuUnavailable(GPU_NOT_BUILT.into())),
        BackendChoice::Auto => {
            tracing::info!("backend: using the CPU because {GPU_NOT_BUILT}");
            Ok(Arc::new(cpu::CpuBackend::new(settings)))
        }
        BackendChoice::Cpu => {
            tracing::info!("backend: CPU, as --backend cpu asks");
            Ok(Arc::new(cpu::CpuBackend::new(settings)))
        }
    }
}
