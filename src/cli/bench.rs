//! `lpgpu bench`: the throughput benchmark, as a table, CSV lines or JSON.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use super::transcode::PipelineArgs;
use crate::bench::{
    BenchConfig, BenchReport, ConcurrencyRange, SIZING_RATIO, SweepStep, load_segments, machine,
    run, run_ffmpeg_baseline, sweep_limit,
};
use crate::pipeline::Backend;
use crate::pipeline::segmenter::Segment;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum BaselineTool {
    /// The ffmpeg CLI doing the same ladder with the same x264 settings.
    Ffmpeg,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// A segment, or a longer file (MPEG-TS, MP4, MKV) cut into segments in-process.
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// Comma-separated profile names, or go-livepeer's -transcodingOptions
    /// JSON file (with --orch-addr too: sent as its VideoProfiles).
    #[arg(
        long,
        value_name = "LIST|FILE",
        default_value = "P720p30fps16x9,P360p30fps16x9,P240p30fps16x9"
    )]
    profiles: String,
    /// Segments each session transcodes (cycling through the input's).
    #[arg(long, value_name = "N", default_value_t = 10)]
    segments: usize,
    /// Sessions transcoding side by side; A..B sweeps them and reports the
    /// largest that keeps the real-time ratio at or below 0.8.
    #[arg(long, value_name = "N|A..B", default_value = "1")]
    concurrency: ConcurrencyRange,
    /// Pace each session's segments at the source's rate, as a live stream arrives.
    #[arg(long)]
    live: bool,
    /// Segment length when the input is cut.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    segment_seconds: f64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Print one CSV line per segment (timestamp,session,segment,seg_dur,transcode_time,frames).
    #[arg(long)]
    csv: bool,
    /// Also run the same workload through this tool and report the ratio
    /// (in a sweep: at every step, drawn with --plot).
    #[arg(long, value_enum, value_name = "TOOL")]
    baseline: Option<BaselineTool>,
    /// Measure a remote orchestrator on today's wire instead (as a
    /// go-livepeer gateway with -orchAddr): HOST[:PORT], comma-separated.
    #[arg(long, value_name = "HOST:PORT[,…]", conflicts_with_all = ["baseline", "plot", "csv"])]
    orch_addr: Option<String>,
    /// With --concurrency A..B: draw the real-time ratio against sessions,
    /// the 0.8 line and the chosen count, to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    #[command(flatten)]
    pipeline: PipelineArgs,
}

pub(crate) fn run_bench(args: BenchArgs) -> Result<()> {
    anyhow::ensure!(args.segments >= 1, "--segments must be at least 1");
    anyhow::ensure!(
        args.segment_seconds.is_finite() && (0.5..=60.0).contains(&args.segment_seconds),
        "--segment-seconds must be between 0.5 and 60"
    );
    if let Some(list) = &args.orch_addr {
        return run_remote_bench(&args, list);
    }
    let settings = args.pipeline.settings()?;
    let config = BenchConfig {
        input: args.input.clone(),
        profiles: crate::cli::transcode::renditions_of(&args.profiles)?,
        segments: args.segments,
        concurrency: args.concurrency.from,
        live: args.live,
        segment_seconds: args.segment_seconds,
        settings: settings.clone(),
    };
    let backend = args.pipeline.backend()?;
    let segments = load_segments(&config.input, config.segment_seconds)?;
    tracing::info!(segments = segments.len(), input = %config.input.display(), "input segmented");
    if args.concurrency.from != args.concurrency.to {
        anyhow::ensure!(!args.csv, "a sweep takes no --csv");
        return sweep(
            backend,
            config,
            &segments,
            args.concurrency,
            args.json,
            args.baseline.is_some(),
            args.plot.as_deref(),
        );
    }
    anyhow::ensure!(
        args.plot.is_none(),
        "--plot draws a sweep: give --concurrency A..B"
    );

    let total = config.segments * config.concurrency;
    let done = AtomicUsize::new(0);
    let progress = std::io::stderr().is_terminal() && !args.json;
    let stdout = Mutex::new(std::io::stdout());
    if args.csv {
        println!("{}", BenchReport::csv_header());
    }
    let on_segment = |timing: &crate::bench::SegmentTiming| {
        let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
        if args.csv {
            let _ = writeln!(
                stdout.lock().unwrap_or_else(|p| p.into_inner()),
                "{}",
                timing.csv()
            );
        }
        if progress {
            let width = 30;
            let filled = finished * width / total;
            eprint!(
                "\r[{}{}] {finished}/{total} segments, last {:.0} ms ",
                "#".repeat(filled),
                " ".repeat(width - filled),
                timing.transcode_time * 1000.0
            );
        }
    };
    let mut report = run(backend, &config, &segments, &on_segment)?;
    if progress {
        eprintln!();
    }
    if args.baseline.is_some() {
        tracing::info!("running the same workload through the ffmpeg CLI");
        report.add_baseline(run_ffmpeg_baseline(&config, &segments)?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !args.csv {
        print!("{}", report.table());
    }
    Ok(())
}

/// Runs the workload at each concurrency of `range`, stopping once the ratio
/// passes the sizing rule (more sessions only get slower); with `baseline`,
/// the ffmpeg CLI at each step too.
fn sweep(
    backend: std::sync::Arc<dyn Backend>,
    mut config: BenchConfig,
    segments: &[Segment],
    range: ConcurrencyRange,
    json: bool,
    baseline: bool,
    plot: Option<&std::path::Path>,
) -> Result<()> {
    let mut steps = Vec::new();
    let mut baseline_steps: Vec<(usize, f64)> = Vec::new();
    for concurrency in range.from..=range.to {
        config.concurrency = concurrency;
        let mut report = run(backend.clone(), &config, segments, &|_| {})?;
        let step = SweepStep {
            concurrency,
            realtime_ratio: report.realtime_ratio,
            segments_per_second: report.segments_per_second,
            p50_ms: report.p50_ms,
            p95_ms: report.p95_ms,
        };
        let baseline_ratio = if baseline {
            report.add_baseline(run_ffmpeg_baseline(&config, segments)?);
            report.baseline.as_ref().map(|b| b.realtime_ratio)
        } else {
            None
        };
        if let Some(ratio) = baseline_ratio {
            baseline_steps.push((concurrency, ratio));
        }
        if !json {
            let against = baseline_ratio
                .map(|r| format!(" (ffmpeg CLI {r:.3})"))
                .unwrap_or_default();
            println!(
                "concurrency {:>3}: real-time ratio {:.3}{against}, {:.2} segments/s, p95 {:.0} ms",
                step.concurrency, step.realtime_ratio, step.segments_per_second, step.p95_ms
            );
        }
        let over = step.realtime_ratio > SIZING_RATIO;
        steps.push(step);
        if over {
            break;
        }
    }
    let limit = sweep_limit(&steps);
    if json {
        let report = serde_json::json!({
            "backend": backend.name(),
            "device": backend.device(),
            "profiles": config.profiles.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            "sizing_ratio": SIZING_RATIO,
            "max_concurrency": limit,
            "sweep": steps,
            "baseline_sweep": baseline_steps
                .iter()
                .map(|(c, r)| serde_json::json!({ "concurrency": c, "realtime_ratio": r }))
                .collect::<Vec<_>>(),
            "machine": machine(),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        match limit {
            Some(n) => {
                println!("largest concurrency within a real-time ratio of {SIZING_RATIO}: {n}")
            }
            None => println!(
                "even one session exceeds a real-time ratio of {SIZING_RATIO} on this machine"
            ),
        }
    }
    if let Some(path) = plot {
        let m = machine();
        let title = format!(
            "lpgpu bench: {} backend on {} ({} cores)",
            backend.name(),
            m.cpu,
            m.cores
        );
        let points: Vec<(usize, f64)> = steps
            .iter()
            .map(|s| (s.concurrency, s.realtime_ratio))
            .collect();
        let svg = crate::plot::SizingPlot {
            title: &title,
            lpgpu: crate::plot::Curve {
                label: "lpgpu",
                points: &points,
            },
            baseline: (!baseline_steps.is_empty()).then_some(crate::plot::Curve {
                label: "ffmpeg CLI (same ladder)",
                points: &baseline_steps,
            }),
            rule: SIZING_RATIO,
            chosen: limit,
        }
        .svg();
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
        if !json {
            println!("plot: {}", path.display());
        }
    }
    Ok(())
}

/// `--orch-addr`: the same workload through a remote orchestrator.
fn run_remote_bench(args: &BenchArgs, list: &str) -> Result<()> {
    anyhow::ensure!(
        args.concurrency.from == args.concurrency.to,
        "--orch-addr takes one --concurrency N"
    );
    let orchestrators =
        crate::broadcaster::today::parse_orch_addrs(list).map_err(anyhow::Error::msg)?;
    let profiles = crate::cli::transcode::renditions_of(&args.profiles)?;
    let segments = load_segments(&args.input, args.segment_seconds)?;
    anyhow::ensure!(
        !segments.is_empty(),
        "{} has no segment",
        args.input.display()
    );
    let report = super::runtime()?.block_on(crate::bench::remote::run_remote(
        orchestrators,
        profiles,
        std::sync::Arc::new(segments),
        args.concurrency.from,
        args.segments,
        args.live,
    ));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    anyhow::ensure!(report.failed == 0, "{} segments failed", report.failed);
    Ok(())
}
