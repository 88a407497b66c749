//! The dial-out mode's own metrics (`lpgpu_remote_*`), registered by the
//! mode in the node's registry when it starts.

#![allow(
    clippy::expect_used,
    reason = "metric definitions are constants: a bad one fails every test"
)]

use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use crate::metrics::{Metrics, Registering};

/// Metrics of the dial-out remote-transcoder mode.
#[derive(Debug, Clone)]
pub struct RemoteMetrics {
    /// 1 while registered with at least one orchestrator.
    pub registered: IntGauge,
    /// Registrations after the first (the link came back).
    pub reconnects: IntCounter,
    /// Tasks by result: ok, error (an error result posted), busy (refused
    /// past capacity), upload_failed (no result reached the orchestrator).
    pub tasks: IntCounterVec,
    /// Seconds per task phase: download, transcode, upload, total.
    pub task_seconds: HistogramVec,
    /// The capacity registered.
    pub capacity: IntGauge,
    /// Tasks running now.
    pub tasks_in_flight: IntGauge,
    /// Teardown notifications received.
    pub teardowns: IntCounter,
    /// Per orchestrator (`--orch-addr A,B,…`): 1 while registered.
    pub orchestrator_registered: IntGaugeVec,
    /// Per orchestrator: the capacity its registration carries (its share).
    pub orchestrator_share: IntGaugeVec,
    /// Per orchestrator: tasks by result (as `lpgpu_remote_tasks_total`).
    pub orchestrator_tasks: IntCounterVec,
    /// Per orchestrator: registrations after the first.
    pub orchestrator_reconnects: IntCounterVec,
    /// Per orchestrator: re-registrations that changed its share.
    pub orchestrator_moves: IntCounterVec,
    /// Seconds per move phase: wait (for no task in flight), overlap (both
    /// registrations open).
    pub move_seconds: HistogramVec,
}

impl RemoteMetrics {
    /// Registers this component's metrics in the node's registry (once).
    pub fn register(metrics: &Metrics) -> Result<Self, prometheus::Error> {
        let r = &mut metrics.registering();
        let gauge = |r: &mut Registering<'_>, name: &'static str, help: &str| {
            r.add(name, IntGauge::new(name, help).expect("valid metric"))
        };
        let gauge_vec = |r: &mut Registering<'_>, name: &'static str, help: &str| {
            r.add(
                name,
                IntGaugeVec::new(Opts::new(name, help), &["orchestrator"]).expect("valid metric"),
            )
        };
        let counter = |r: &mut Registering<'_>, name: &'static str, help: &str| {
            r.add(name, IntCounter::new(name, help).expect("valid metric"))
        };
        Ok(Self {
            registered: gauge(
                r,
                "lpgpu_remote_registered",
                "1 while registered with the orchestrator (--orch-addr).",
            )?,
            reconnects: counter(
                r,
                "lpgpu_remote_reconnects_total",
                "Registrations with the orchestrator after the first.",
            )?,
            tasks: r.counter(
                "lpgpu_remote_tasks_total",
                "Tasks from the orchestrator by result (ok, error, busy, upload_failed).",
                &["result"],
            )?,
            task_seconds: r.add(
                "lpgpu_remote_task_seconds",
                HistogramVec::new(
                    Metrics::seconds_opts(
                        "lpgpu_remote_task_seconds",
                        "Seconds per task phase (download, transcode, upload, total).",
                    ),
                    &["phase"],
                )
                .expect("valid metric"),
            )?,
            capacity: gauge(
                r,
                "lpgpu_remote_capacity",
                "Streams registered as this transcoder's capacity.",
            )?,
            tasks_in_flight: gauge(
                r,
                "lpgpu_remote_tasks_in_flight",
                "Tasks being downloaded, transcoded or uploaded.",
            )?,
            teardowns: counter(
                r,
                "lpgpu_remote_teardowns_total",
                "Session teardown notifications received.",
            )?,
            orchestrator_registered: gauge_vec(
                r,
                "lpgpu_remote_orchestrator_registered",
                "1 while registered with this orchestrator.",
            )?,
            orchestrator_share: gauge_vec(
                r,
                "lpgpu_remote_orchestrator_share",
                "The capacity registered with this orchestrator (its share of the rig).",
            )?,
            orchestrator_tasks: r.counter(
                "lpgpu_remote_orchestrator_tasks_total",
                "Tasks by orchestrator and result (ok, error, busy, upload_failed).",
                &["orchestrator", "result"],
            )?,
            orchestrator_reconnects: r.counter(
                "lpgpu_remote_orchestrator_reconnects_total",
                "Registrations with this orchestrator after the first.",
                &["orchestrator"],
            )?,
            orchestrator_moves: r.counter(
                "lpgpu_remote_orchestrator_moves_total",
                "Re-registrations with this orchestrator that changed its share.",
                &["orchestrator"],
            )?,
            move_seconds: r.add(
                "lpgpu_remote_move_seconds",
                HistogramVec::new(
                    Metrics::seconds_opts(
                        "lpgpu_remote_move_seconds",
                        "Seconds per share move phase: wait (for no task in flight), overlap (both registrations open).",
                    ),
                    &["phase"],
                )
                .expect("valid metric"),
            )?,
        })
    }
}
