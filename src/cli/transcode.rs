//! `lpgpu transcode`: the pipeline offline, one segment to `DIR/<profile>.ts`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use crate::pipeline::{
    BackendChoice, EncoderSettings, GpuOptions, RenditionSpec, SegmentOptions, select_backend,
};
use crate::protocol::parse_profile_list;

/// The pipeline flags shared by `node`, `transcoder`, `transcode` and `bench`.
#[derive(Debug, Args, Clone)]
pub(crate) struct PipelineArgs {
    /// Which backend transcodes: auto picks the GPU when one is usable.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// Threads per decoder and encoder (0: FFmpeg chooses).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
    /// x264 preset of every rendition.
    #[arg(long, value_name = "PRESET", default_value = "veryfast")]
    pub x264_preset: String,
    /// Keyframe interval in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    pub gop_seconds: f64,
    /// VBV buffer size as a multiple of the profile bitrate (maxrate = bitrate).
    #[arg(long, value_name = "FACTOR", default_value_t = 2.0)]
    pub bufsize_factor: f64,
    /// GPUs to use, by CUDA ordinal (e.g. 0,1); all of them by default.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub gpus: Option<Vec<usize>>,
    /// Segments transcoded at once on each GPU.
    #[arg(long, value_name = "N", default_value_t = crate::pipeline::gpu::DEFAULT_SESSIONS_PER_GPU)]
    pub max_sessions_per_gpu: usize,
    /// Transcode a built-in clip on each GPU at start-up and refuse a GPU
    /// that fails it.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub gpu_self_test: bool,
}

impl PipelineArgs {
    /// The backend these flags ask for (`--backend gpu` fails saying what
    /// is missing; `auto` falls back to the CPU and logs why).
    pub fn backend(&self) -> Result<std::sync::Arc<dyn crate::pipeline::Backend>> {
        Ok(select_backend(
            self.backend,
            self.settings()?,
            &self.gpu_options()?,
        )?)
    }

    pub fn gpu_options(&self) -> Result<GpuOptions> {
        anyhow::ensure!(
            self.max_sessions_per_gpu >= 1,
            "--max-sessions-per-gpu must be at least 1"
        );
        Ok(GpuOptions {
            gpus: self.gpus.clone(),
            max_sessions_per_gpu: self.max_sessions_per_gpu,
            self_test: self.gpu_self_test,
        })
    }

    pub fn settings(&self) -> Result<EncoderSettings> {
        anyhow::ensure!(
            self.gop_seconds.is_finite() && (0.1..=60.0).contains(&self.gop_seconds),
            "--gop-seconds must be between 0.1 and 60"
        );
        anyhow::ensure!(
            self.bufsize_factor.is_finite() && (0.1..=20.0).contains(&self.bufsize_factor),
            "--bufsize-factor must be between 0.1 and 20"
        );
        const PRESETS: [&str; 10] = [
            "ultrafast",
            "superfast",
            "veryfast",
            "faster",
            "fast",
            "medium",
            "slow",
            "slower",
            "veryslow",
            "placebo",
        ];
        anyhow::ensure!(
            PRESETS.contains(&self.x264_preset.as_str()),
            "--x264-preset must be one of {PRESETS:?}"
        );
        Ok(EncoderSettings {
            preset: self.x264_preset.clone(),
            gop_seconds: self.gop_seconds,
            bufsize_factor: self.bufsize_factor,
            threads: self.threads,
        })
    }
}

#[derive(Debug, Args)]
pub(crate) struct TranscodeArgs {
    /// A segment: MPEG-TS, or any container libavformat recognises.
    input: PathBuf,
    /// Comma-separated profile names, or go-livepeer's -transcodingOptions
    /// JSON file (any size, bitrate, codec: H.264, HEVC, VP8, VP9).
    #[arg(long, value_name = "LIST|FILE")]
    profiles: String,
    /// Directory for the renditions (`<profile>.ts`; `.mp4` for MP4, `.mkv`
    /// for VP8 and VP9).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[command(flatten)]
    pipeline: PipelineArgs,
}

pub(crate) fn run(args: TranscodeArgs) -> Result<()> {
    let specs = renditions_of(&args.profiles)?;
    let backend = args.pipeline.backend()?;
    let segment =
        std::fs::read(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let started = Instant::now();
    let transcoded = backend.transcode(segment.into(), &specs, &SegmentOptions::default())?;
    let elapsed = started.elapsed().as_secs_f64();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    for rendition in &transcoded.renditions {
        let path = args.out.join(format!(
            "{}.{}",
            rendition.spec.file_stem(),
            rendition.spec.container.extension()
        ));
        std::fs::write(&path, &rendition.data)
            .with_context(|| format!("writing {}", path.display()))?;
        println!(
            "{} {}x{} {} frames {} bytes -> {}",
            rendition.spec.name,
            rendition.width,
            rendition.height,
            rendition.frames,
            rendition.data.len(),
            path.display()
        );
    }
    println!(
        "{:.2} s of video ({} frames) in {elapsed:.2} s on {}: real-time ratio {:.2}",
        transcoded.source_seconds,
        transcoded.source_frames,
        backend.name(),
        elapsed / transcoded.source_seconds.max(f64::EPSILON)
    );
    Ok(())
}

/// `--profiles LIST|FILE` where only the protocol's nine profiles can go (a
/// 2018 job's on-chain options name them by id): a `transcodingOptions`
/// file's entries must each be one of them, exactly.
pub(crate) fn named_profiles_of(value: &str) -> Result<Vec<crate::protocol::Profile>> {
    renditions_of(value)?
        .iter()
        .map(|spec| {
            crate::protocol::PROFILES
                .iter()
                .find(|profile| RenditionSpec::from(**profile) == *spec)
                .copied()
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--profiles {value}: {} ({}x{}, {} bit/s, {}) is not one of the \
                         protocol's nine profiles, the only ones a 2018 job can name",
                        spec.name,
                        spec.width,
                        spec.height,
                        spec.bitrate_bps,
                        spec.codec.name()
                    )
                })
        })
        .collect()
}

/// `--profiles LIST|FILE`: a file is go-livepeer's `-transcodingOptions`
/// JSON (as go-livepeer decides: a readable, non-empty file), else the
/// list names the protocol's profiles.
pub(crate) fn renditions_of(value: &str) -> Result<Vec<RenditionSpec>> {
    let path = std::path::Path::new(value);
    if path.is_file() {
        let length = path
            .metadata()
            .with_context(|| format!("reading the --profiles file {value}"))?
            .len();
        anyhow::ensure!(
            length <= crate::protocol::transcoding_options::MAX_BYTES as u64,
            "--profiles {value}: {length} bytes is not a transcodingOptions file (at most {} bytes)",
            crate::protocol::transcoding_options::MAX_BYTES
        );
    }
    let file = path
        .is_file()
        .then(|| std::fs::read(path))
        .transpose()
        .with_context(|| format!("reading the --profiles file {value}"))?
        .filter(|content| !content.is_empty());
    let Some(content) = file else {
        let profiles =
            parse_profile_list(value).with_context(|| format!("--profiles {value:?}"))?;
        return Ok(crate::pipeline::rendition::from_profiles(&profiles));
    };
    let profiles = crate::protocol::transcoding_options::parse(&content)
        .with_context(|| format!("--profiles {value}"))?;
    let specs = profiles
        .iter()
        .map(|profile| {
            crate::protocol::video_profile::to_rendition(profile)
                .with_context(|| format!("--profiles {value}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut stems = std::collections::HashSet::new();
    for spec in &specs {
        anyhow::ensure!(
            stems.insert(spec.file_stem()),
            "--profiles {value}: two renditions are named {:?}",
            spec.name
        );
    }
    Ok(specs)
}

#[derive(Debug, Args)]
pub(crate) struct TestClipArgs {
    /// Where to write the clip.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Length in seconds.
    #[arg(long, value_name = "N", default_value_t = 10)]
    seconds: u32,
    /// Picture size.
    #[arg(long, value_name = "WxH", default_value = "1920x1080")]
    size: String,
}

pub(crate) fn write_test_clip(args: TestClipArgs) -> Result<()> {
    let (width, height) = args
        .size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .filter(|&(w, h)| {
            (16..=7680).contains(&w) && (16..=4320).contains(&h) && w % 2 == 0 && h % 2 == 0
        })
        .context("--size must be WxH with even sides between 16x16 and 7680x4320")?;
    anyhow::ensure!(
        (1..=600).contains(&args.seconds),
        "--seconds must be between 1 and 600"
    );
    let clip = crate::pipeline::testclip::make_test_clip(args.seconds, width, height)?;
    std::fs::write(&args.out, &clip).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "wrote {} ({} s of {width}x{height}, {} bytes)",
        args.out.display(),
        args.seconds,
        clip.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_2018_job_takes_a_file_only_of_the_nine_profiles() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("options.json");
        std::fs::write(
            &file,
            r#"[{"name":"P240p30fps16x9","width":426,"height":240,"bitrate":600000,"fps":30}]"#,
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let named = named_profiles_of(path).unwrap();
        assert_eq!(named.len(), 1);
        assert_eq!(named[0].name, "P240p30fps16x9");
        assert_eq!(
            named_profiles_of("P144p30fps16x9,P360p30fps16x9")
                .unwrap()
                .len(),
            2
        );
        for other in [
            r#"[{"name":"P240p30fps16x9","width":426,"height":240,"bitrate":500000,"fps":30}]"#,
            r#"[{"name":"custom","width":426,"height":240,"bitrate":600000,"fps":30}]"#,
            r#"[{"name":"P240p30fps16x9","width":426,"height":240,"bitrate":600000,"fps":30,"encoder":"HEVC"}]"#,
        ] {
            std::fs::write(&file, other).unwrap();
            let error = format!("{:#}", named_profiles_of(path).unwrap_err());
            assert!(error.contains("nine profiles"), "{error}");
        }
    }
}
