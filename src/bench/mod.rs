//! The throughput benchmark behind `lpgpu bench`: N concurrent sessions each
//! transcode a run of segments (optionally paced in real time), timed per
//! segment; optionally the same workload through the ffmpeg CLI as a baseline
//! measured in the same run.
//!
//! The real-time ratio follows livepeer_bench: wall time ÷ the source duration
//! one session covered (sessions run side by side); at or below 1 every
//! session keeps up with live video. Livepeer sizes rigs at ≤ 0.8.
//! [`remote`] measures a remote orchestrator on today's wire the same way.

pub mod remote;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::pipeline::segmenter::{Segment, SegmentError, segment_file};
use crate::pipeline::{
    Backend, EncoderSettings, Rational, RenditionSpec, SegmentOptions, TranscodeError,
};

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub input: PathBuf,
    /// The ladder: the protocol's profiles, or any renditions (a
    /// `-transcodingOptions` file).
    pub profiles: Vec<RenditionSpec>,
    /// Segments each session transcodes (cycling through the input's).
    pub segments: usize,
    pub concurrency: usize,
    /// Pace each session's segments at the source's own rate.
    pub live: bool,
    /// Target segment length when the input is longer than one segment.
    pub segment_seconds: f64,
    pub settings: EncoderSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Input(#[from] SegmentError),
    #[error("segment {segment} of session {session}: {error}")]
    Transcode {
        session: usize,
        segment: usize,
        error: TranscodeError,
    },
    #[error("the ffmpeg baseline failed: {0}")]
    Baseline(String),
}

/// One transcoded segment.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentTiming {
    pub timestamp: f64,
    pub session: usize,
    pub segment: usize,
    pub seg_dur: f64,
    pub transcode_time: f64,
    pub frames: u64,
    /// The GPU backend handed this segment to the CPU.
    #[serde(skip)]
    pub fell_back: bool,
    /// (profile, seconds of its own scale + encode work).
    #[serde(skip)]
    pub profiles: Vec<(String, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProfileTiming {
    pub profile: String,
    pub mean_encode_ms: f64,
    pub p95_encode_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub gpus: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    pub tool: &'static str,
    pub transcode_seconds: f64,
    pub realtime_ratio: f64,
    /// Baseline wall time ÷ lpgpu's: above 1, lpgpu is faster.
    pub speedup: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub backend: String,
    pub device: String,
    pub profiles: Vec<String>,
    pub concurrency: usize,
    pub live: bool,
    pub segments: usize,
    pub source_seconds: f64,
    /// Wall time of the whole run.
    pub transcode_seconds: f64,
    pub realtime_ratio: f64,
    pub segments_per_second: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    /// Segments the GPU backend handed to the CPU (0 on the CPU backend).
    pub cpu_fallbacks: usize,
    pub per_profile: Vec<ProfileTiming>,
    pub machine: Machine,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
    #[serde(skip)]
    pub timings: Vec<SegmentTiming>,
}

pub fn machine() -> Machine {
    Machine {
        cpu: crate::pipeline::cpu::cpu_model().unwrap_or_else(|| "unknown".into()),
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        gpus: Vec::new(),
    }
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Loads and segments the input.
pub fn load_segments(input: &Path, segment_seconds: f64) -> Result<Vec<Segment>, BenchError> {
    Ok(segment_file(input, segment_seconds)?)
}

/// Runs the workload on `backend`; `on_segment` sees each timing as it lands.
pub fn run(
    backend: Arc<dyn Backend>,
    config: &BenchConfig,
    segments: &[Segment],
    on_segment: &(dyn Fn(&SegmentTiming) + Sync),
) -> Result<BenchReport, BenchError> {
    let started = Instant::now();
    let specs = &config.profiles;
    let results: Vec<Result<Vec<SegmentTiming>, BenchError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..config.concurrency)
            .map(|session| {
                let backend = backend.clone();
                scope.spawn(move || {
                    let mut timings = Vec::with_capacity(config.segments);
                    let mut due = Duration::ZERO;
                    for index in 0..config.segments {
                        let segment = &segments[index % segments.len()];
                        if config.live {
                            // A live source delivers segment k after k segments' worth of time.
                            if let Some(wait) = due.checked_sub(started.elapsed()) {
                                std::thread::sleep(wait);
                            }
                            due += Duration::from_secs_f64(segment.seconds);
                        }
                        let begun = Instant::now();
                        let transcoded = backend
                            .transcode(segment.data.clone(), specs, &SegmentOptions::default())
                            .map_err(|error| BenchError::Transcode {
                                session,
                                segment: index,
                                error,
                            })?;
                        let timing = SegmentTiming {
                            timestamp: unix_now(),
                            session,
                            segment: index,
                            seg_dur: segment.seconds,
                            transcode_time: begun.elapsed().as_secs_f64(),
                            frames: transcoded.source_frames,
                            fell_back: transcoded.fallback.is_some(),
                            profiles: transcoded
                                .renditions
                                .iter()
                                .map(|r| (r.spec.name.clone(), r.encode_seconds))
                                .collect(),
                        };
                        on_segment(&timing);
                        timings.push(timing);
                    }
                    Ok(timings)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| {
                    Err(BenchError::Transcode {
                        session: 0,
                        segment: 0,
                        error: TranscodeError::Internal("a bench session panicked".into()),
                    })
                })
            })
            .collect()
    });
    let wall = started.elapsed().as_secs_f64();
    let mut timings = Vec::new();
    for result in results {
        timings.extend(result?);
    }
    Ok(summarise(backend.as_ref(), config, timings, wall))
}

fn summarise(
    backend: &dyn Backend,
    config: &BenchConfig,
    timings: Vec<SegmentTiming>,
    wall: f64,
) -> BenchReport {
    let source_seconds: f64 = timings.iter().map(|t| t.seg_dur).sum();
    let mut latencies: Vec<f64> = timings.iter().map(|t| t.transcode_time * 1000.0).collect();
    latencies.sort_by(f64::total_cmp);
    let per_profile = config
        .profiles
        .iter()
        .map(|profile| {
            let mut encode: Vec<f64> = timings
                .iter()
                .flat_map(|t| {
                    t.profiles
                        .iter()
                        .filter(|(p, _)| *p == profile.name)
                        .map(|(_, s)| s * 1000.0)
                })
                .collect();
            encode.sort_by(f64::total_cmp);
            ProfileTiming {
                profile: profile.name.clone(),
                mean_encode_ms: encode.iter().sum::<f64>() / encode.len().max(1) as f64,
                p95_encode_ms: percentile(&encode, 95.0),
            }
        })
        .collect();
    let per_session_source = source_seconds / config.concurrency.max(1) as f64;
    BenchReport {
        backend: backend.name().to_string(),
        device: backend.device(),
        profiles: config.profiles.iter().map(|p| p.name.clone()).collect(),
        concurrency: config.concurrency,
        live: config.live,
        segments: timings.len(),
        source_seconds,
        transcode_seconds: wall,
        realtime_ratio: wall / per_session_source.max(f64::EPSILON),
        segments_per_second: timings.len() as f64 / wall.max(f64::EPSILON),
        p50_ms: percentile(&latencies, 50.0),
        p95_ms: percentile(&latencies, 95.0),
        cpu_fallbacks: timings.iter().filter(|t| t.fell_back).count(),
        per_profile,
        machine: machine(),
        baseline: None,
        timings,
    }
}

/// The ffmpeg CLI arguments that transcode `input` into `specs` as lpgpu's
/// CPU backend does, in one process: one decode, `split`, bicubic `scale`,
/// each rendition with the encoder options lpgpu sets
/// ([`crate::pipeline::cpu::cli_encoder_args`]: the same code), audio
/// copied, timestamps kept. Frame rates above a rendition's are capped with
/// `fps` where the source's is known (lpgpu's decimator does the same).
pub fn ffmpeg_ladder_args(
    input: &Path,
    out_dir: &Path,
    specs: &[RenditionSpec],
    settings: &EncoderSettings,
    source_fps: Option<f64>,
) -> Result<Vec<String>, TranscodeError> {
    let source_rate = source_fps
        .filter(|fps| fps.is_finite() && *fps > 0.0)
        .map(|fps| Rational::new((fps * 1000.0).round() as i32, 1000));
    let labels: String = (0..specs.len()).map(|i| format!("[s{i}]")).collect();
    let mut graph = format!("[0:v]split={}{labels}", specs.len());
    let mut outputs = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let (rate, encoder) = crate::pipeline::cpu::cli_encoder_args(spec, settings, source_rate)?;
        let fps = match source_rate {
            Some(source) if rate.as_f64() < source.as_f64() => {
                format!(",fps={}/{}", rate.num, rate.den)
            }
            _ => String::new(),
        };
        graph.push_str(&format!(
            ";[s{i}]scale={}:{}:flags=bicubic{fps}[o{i}]",
            spec.width, spec.height
        ));
        outputs.push(encoder);
    }
    let mut args: Vec<String> = ["-loglevel", "error", "-y", "-i"]
        .map(String::from)
        .into_iter()
        .chain([input.display().to_string(), "-filter_complex".into(), graph])
        .collect();
    for (i, (spec, encoder)) in specs.iter().zip(outputs).enumerate() {
        args.extend([
            "-map".to_string(),
            format!("[o{i}]"),
            "-map".into(),
            "0:a?".into(),
        ]);
        args.extend(encoder);
        args.extend(["-c:a", "copy", "-copyts"].map(String::from));
        args.push(
            out_dir
                .join(format!("{i}-{}.{}", spec.name, spec.container.extension()))
                .display()
                .to_string(),
        );
    }
    Ok(args)
}

/// The same workload through the ffmpeg CLI: `concurrency` processes at a time,
/// each session's segments in order. Returns the wall time.
pub fn run_ffmpeg_baseline(config: &BenchConfig, segments: &[Segment]) -> Result<f64, BenchError> {
    let dir = std::env::temp_dir().join(format!("lpgpu-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| BenchError::Baseline(e.to_string()))?;
    let paths: Vec<PathBuf> = segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let path = dir.join(format!("segment-{i}.ts"));
            std::fs::write(&path, &s.data).map(|_| path)
        })
        .collect::<Result<_, _>>()
        .map_err(|e| BenchError::Baseline(e.to_string()))?;
    let started = Instant::now();
    let result: Result<(), BenchError> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..config.concurrency)
            .map(|session| {
                let (paths, dir) = (&paths, &dir);
                scope.spawn(move || {
                    let out = dir.join(format!("out-{session}"));
                    std::fs::create_dir_all(&out)
                        .map_err(|e| BenchError::Baseline(e.to_string()))?;
                    for index in 0..config.segments {
                        let input = &paths[index % paths.len()];
                        let args = ffmpeg_ladder_args(
                            input,
                            &out,
                            &config.profiles,
                            &config.settings,
                            None,
                        )
                        .map_err(|e| BenchError::Baseline(e.to_string()))?;
                        let status = Command::new("ffmpeg")
                            .args(&args)
                            .status()
                            .map_err(|e| BenchError::Baseline(format!("running ffmpeg: {e}")))?;
                        if !status.success() {
                            return Err(BenchError::Baseline(format!(
                                "ffmpeg exited with {status}"
                            )));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .unwrap_or_else(|_| Err(BenchError::Baseline("a baseline session panicked".into())))
        })
    });
    let wall = started.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&dir).ok();
    result.map(|_| wall)
}

impl BenchReport {
    pub fn add_baseline(&mut self, wall: f64) {
        let per_session_source = self.source_seconds / self.concurrency.max(1) as f64;
        self.baseline = Some(Baseline {
            tool: "ffmpeg",
            transcode_seconds: wall,
            realtime_ratio: wall / per_session_source.max(f64::EPSILON),
            speedup: wall / self.transcode_seconds.max(f64::EPSILON),
        });
    }

    /// The human summary.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        out.push_str(&format!(
            "lpgpu bench: {} backend on {} ({} cores; GPUs: {})\n",
            self.backend,
            m.cpu,
            m.cores,
            if m.gpus.is_empty() {
                "none".to_string()
            } else {
                m.gpus.join(", ")
            }
        ));
        out.push_str(&format!(
            "profiles: {}   concurrency: {}{}\n\n",
            self.profiles.join(","),
            self.concurrency,
            if self.live { "   (paced live)" } else { "" }
        ));
        out.push_str("segments  source s  wall s  real-time ratio  segments/s  p50 ms  p95 ms\n");
        out.push_str(&format!(
            "{:>8}  {:>8.2}  {:>6.2}  {:>15.3}  {:>10.2}  {:>6.0}  {:>6.0}\n",
            self.segments,
            self.source_seconds,
            self.transcode_seconds,
            self.realtime_ratio,
            self.segments_per_second,
            self.p50_ms,
            self.p95_ms
        ));
        if self.cpu_fallbacks > 0 {
            out.push_str(&format!(
                "{} segments were handed to the CPU by the GPU backend (see the log)\n",
                self.cpu_fallbacks
            ));
        }
        out.push_str("\nprofile           mean encode ms  p95 encode ms\n");
        for p in &self.per_profile {
            out.push_str(&format!(
                "{:<16}  {:>14.0}  {:>13.0}\n",
                p.profile, p.mean_encode_ms, p.p95_encode_ms
            ));
        }
        if let Some(b) = &self.baseline {
            out.push_str(&format!(
                "\nbaseline {}: wall {:.2} s, real-time ratio {:.3}; lpgpu is {:.2}x its speed\n",
                b.tool, b.transcode_seconds, b.realtime_ratio, b.speedup
            ));
        }
        out
    }

    pub fn csv_header() -> &'static str {
        "timestamp,session,segment,seg_dur,transcode_time,frames"
    }
}

impl SegmentTiming {
    pub fn csv(&self) -> String {
        format!(
            "{:.3},{},{},{:.3},{:.3},{}",
            self.timestamp,
            self.session,
            self.segment,
            self.seg_dur,
            self.transcode_time,
            self.frames
        )
    }
}

/// Livepeer's sizing rule: a rig keeps a real-time ratio at or below this.
pub const SIZING_RATIO: f64 = 0.8;

/// `--concurrency`: one count, or a range `A..B` to sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConcurrencyRange {
    pub from: usize,
    pub to: usize,
}

impl std::str::FromStr for ConcurrencyRange {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let number = |t: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|_| format!("{t:?} is not a count"))
        };
        let (from, to) = match text.split_once("..") {
            Some((a, b)) => (number(a)?, number(b.trim_start_matches('='))?),
            None => (number(text)?, number(text)?),
        };
        if from == 0 || from > to || to > 256 {
            return Err("use N or A..B with 1 <= A <= B <= 256".into());
        }
        Ok(Self { from, to })
    }
}

/// One step of a sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepStep {
    pub concurrency: usize,
    pub realtime_ratio: f64,
    pub segments_per_second: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
}

/// The largest concurrency whose ratio stays within the sizing rule, when
/// every smaller one does too.
pub fn sweep_limit(steps: &[SweepStep]) -> Option<usize> {
    steps
        .iter()
        .take_while(|s| s.realtime_ratio <= SIZING_RATIO)
        .map(|s| s.concurrency)
        .last()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Profile;

    #[test]
    fn concurrency_ranges_parse() {
        assert_eq!("3".parse(), Ok(ConcurrencyRange { from: 3, to: 3 }));
        assert_eq!("1..4".parse(), Ok(ConcurrencyRange { from: 1, to: 4 }));
        assert_eq!("2..=5".parse(), Ok(ConcurrencyRange { from: 2, to: 5 }));
        for bad in ["0", "4..2", "x", "1..x", "1..999", ""] {
            assert!(bad.parse::<ConcurrencyRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_sweep_limit_is_the_last_step_within_the_rule() {
        let step = |concurrency, realtime_ratio| SweepStep {
            concurrency,
            realtime_ratio,
            segments_per_second: 1.0,
            p50_ms: 1.0,
            p95_ms: 1.0,
        };
        assert_eq!(
            sweep_limit(&[step(1, 0.3), step(2, 0.6), step(3, 0.9)]),
            Some(2)
        );
        assert_eq!(sweep_limit(&[step(1, 0.9)]), None);
        assert_eq!(sweep_limit(&[step(1, 0.5), step(2, 0.8)]), Some(2));
    }

    #[test]
    fn percentiles_pick_ranks() {
        let data = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(percentile(&data, 50.0), 6.0);
        assert_eq!(percentile(&data, 95.0), 10.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn ffmpeg_arguments_match_lpgpu_settings() {
        let profiles = [
            Profile::by_name("P720p60fps16x9").unwrap(),
            Profile::by_name("P240p30fps16x9").unwrap(),
        ];
        let specs = crate::pipeline::rendition::from_profiles(&profiles);
        let args = ffmpeg_ladder_args(
            Path::new("in.ts"),
            Path::new("/o"),
            &specs,
            &EncoderSettings::default(),
            Some(60.0),
        )
        .unwrap();
        let text = args.join(" ");
        assert!(
            text.contains("[0:v]split=2[s0][s1];[s0]scale=1280:720:flags=bicubic[o0]"),
            "{text}"
        );
        assert!(
            text.contains("scale=426:240:flags=bicubic,fps=30/1[o1]"),
            "{text}"
        );
        assert!(
            text.contains("-c:v libx264 -b:v 6000000 -g 120 -preset veryfast"),
            "{text}"
        );
        assert!(
            text.contains("-x264-params vbv-maxrate=6000:vbv-bufsize=12000"),
            "{text}"
        );
        assert!(text.contains("-b:v 600000 -g 60"), "{text}");
        assert!(text.contains("-pix_fmt yuv420p -f mpegts"), "{text}");
    }
}
