//! `lpgpu bench --orch-addr`: a remote orchestrator's throughput on today's
//! wire, measured as a go-livepeer gateway would feel it — any Livepeer
//! orchestrator, go-livepeer's or lpgpu's. N sessions side by side each send
//! a run of segments one after another (or paced at the source's rate),
//! each through [`TodayBroadcaster`] (discovery, retries, renditions fetched
//! and their pixels checked); reported: segments per second, the real-time
//! ratio, latency per segment, failures.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::{Machine, machine, percentile};
use crate::broadcaster::today::TodayBroadcaster;
use crate::broadcaster::{BroadcastOptions, Uploader};
use crate::pipeline::RenditionSpec;
use crate::pipeline::segmenter::Segment;

#[derive(Debug, Clone, Serialize)]
pub struct RemoteReport {
    pub machine: Machine,
    pub orchestrators: Vec<String>,
    pub profiles: Vec<String>,
    pub sessions: usize,
    pub segments: usize,
    pub failed: usize,
    /// Why segments failed (the first few).
    pub failures: Vec<String>,
    pub wall_seconds: f64,
    /// Seconds of video one session covered.
    pub video_seconds: f64,
    /// Wall time ÷ one session's video: at or below 1 the orchestrator kept up.
    pub realtime_ratio: f64,
    pub segments_per_second: f64,
    /// Whole segment round trips: upload, transcode, renditions fetched.
    pub p50_ms: f64,
    pub p95_ms: f64,
}

impl RemoteReport {
    pub fn table(&self) -> String {
        format!(
            "orchestrators: {}\nprofiles: {}\nsessions: {}, segments: {} ({} failed)\n\
             wall {:.1} s for {:.1} s of video per session: real-time ratio {:.3}\n\
             {:.2} segments/s; round trip p50 {:.0} ms, p95 {:.0} ms\n{}",
            self.orchestrators.join(", "),
            self.profiles.join(", "),
            self.sessions,
            self.segments,
            self.failed,
            self.wall_seconds,
            self.video_seconds,
            self.realtime_ratio,
            self.segments_per_second,
            self.p50_ms,
            self.p95_ms,
            self.failures
                .iter()
                .map(|f| format!("failed: {f}\n"))
                .collect::<String>()
        )
    }
}

/// Runs `sessions` streams of `per_session` segments (cycling through
/// `segments`) against `orchestrators`.
pub async fn run_remote(
    orchestrators: Vec<String>,
    profiles: Vec<RenditionSpec>,
    segments: Arc<Vec<Segment>>,
    sessions: usize,
    per_session: usize,
    live: bool,
) -> RemoteReport {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..sessions.max(1) {
        let uploader = TodayBroadcaster::new(
            orchestrators.clone(),
            profiles.clone(),
            BroadcastOptions {
                max_in_flight: 1,
                ..Default::default()
            },
        );
        let segments = segments.clone();
        tasks.push(tokio::spawn(async move {
            let begun = Instant::now();
            let mut latencies = Vec::new();
            let mut failures = Vec::new();
            let mut video = 0.0;
            for i in 0..per_session {
                let segment = &segments[i % segments.len()];
                if live {
                    // The next segment arrives when the source has played.
                    let due = begun + std::time::Duration::from_secs_f64(video);
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent = Instant::now();
                let (_, result) = uploader.upload(i as u64, segment).await;
                latencies.push(sent.elapsed().as_secs_f64());
                if let Err(e) = result {
                    failures.push(format!("segment {i}: {e}"));
                }
                video += segment.seconds;
            }
            uploader.finish().await;
            (latencies, failures, video)
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    let mut video_seconds: f64 = 0.0;
    for task in tasks {
        match task.await {
            Ok((mut l, mut f, video)) => {
                latencies.append(&mut l);
                failures.append(&mut f);
                video_seconds = video_seconds.max(video);
            }
            Err(e) => failures.push(format!("a session task failed: {e}")),
        }
    }
    let wall_seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let failed = failures.len();
    failures.truncate(5);
    RemoteReport {
        machine: machine(),
        orchestrators,
        profiles: profiles.iter().map(|p| p.name.to_string()).collect(),
        sessions,
        segments: latencies.len(),
        failed,
        failures,
        wall_seconds,
        video_seconds,
        realtime_ratio: wall_seconds / video_seconds.max(f64::EPSILON),
        segments_per_second: latencies.len() as f64 / wall_seconds.max(f64::EPSILON),
        p50_ms: percentile(&latencies, 50.0) * 1e3,
        p95_ms: percentile(&latencies, 95.0) * 1e3,
    }
}
