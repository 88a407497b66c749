//! The pool's own metrics (`lpgpu_pool_*`), registered by the pool in the
//! node's registry when it is made.

#![allow(
    clippy::expect_used,
    reason = "metric definitions are constants: a bad one fails every test"
)]

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use crate::metrics::{Metrics, Registering};

/// Metrics of the orchestrator's pool of transcoders (`--orch-secret`).
#[derive(Debug, Clone)]
pub struct PoolMetrics {
    /// Registrations accepted.
    pub registrations: IntCounter,
    /// Registrations refused, by reason (secret, capacity).
    pub refused: IntCounterVec,
    /// Remote members registered now.
    pub members: IntGauge,
    /// Streams each member takes (label: member; `local` is the node's own).
    pub capacity: IntGaugeVec,
    /// Streams pinned on each member now.
    pub load: IntGaugeVec,
    /// Attempts by result: ok, input_error, member_error, disconnected, late.
    pub tasks: IntCounterVec,
    /// Segments retried on another member.
    pub retries: IntCounter,
    /// Members evicted, by reason: disconnected, late, shutdown.
    pub evictions: IntCounterVec,
    /// Seconds from placing a segment to holding its renditions.
    pub relay_seconds: Histogram,
    /// `/transcodeResults` uploads by outcome: renditions, error,
    /// unknown_task, ignored, broken_body, or the refusal's label.
    pub result_uploads: IntCounterVec,
}

impl PoolMetrics {
    /// Registers this component's metrics in the node's registry (once).
    pub fn register(metrics: &Metrics) -> Result<Self, prometheus::Error> {
        let r = &mut metrics.registering();
        let gauge_vec = |r: &mut Registering<'_>, name: &'static str, help: &str| {
            r.add(
                name,
                IntGaugeVec::new(Opts::new(name, help), &["member"]).expect("valid metric"),
            )
        };
        Ok(Self {
            registrations: r.add(
                "lpgpu_pool_registrations_total",
                IntCounter::new(
                    "lpgpu_pool_registrations_total",
                    "Transcoder registrations accepted.",
                )
                .expect("valid metric"),
            )?,
            refused: r.counter(
                "lpgpu_pool_registrations_refused_total",
                "Transcoder registrations refused, by reason (secret, capacity).",
                &["reason"],
            )?,
            members: r.add(
                "lpgpu_pool_members",
                IntGauge::new("lpgpu_pool_members", "Remote transcoders registered now.")
                    .expect("valid metric"),
            )?,
            capacity: gauge_vec(
                r,
                "lpgpu_pool_member_capacity",
                "Streams a pool member takes (member=local is the node's own backend).",
            )?,
            load: gauge_vec(r, "lpgpu_pool_member_load", "Streams pinned on a pool member now.")?,
            tasks: r.counter(
                "lpgpu_pool_tasks_total",
                "Segment attempts on pool members by result (ok, input_error, member_error, disconnected, late).",
                &["result"],
            )?,
            retries: r.add(
                "lpgpu_pool_retries_total",
                IntCounter::new(
                    "lpgpu_pool_retries_total",
                    "Segments retried on another pool member.",
                )
                .expect("valid metric"),
            )?,
            evictions: r.counter(
                "lpgpu_pool_evictions_total",
                "Pool members evicted, by reason (disconnected, late, shutdown).",
                &["reason"],
            )?,
            relay_seconds: r.add(
                "lpgpu_pool_relay_seconds",
                Histogram::with_opts(Metrics::seconds_opts(
                    "lpgpu_pool_relay_seconds",
                    "Seconds from placing a segment on a member to holding its renditions.",
                ))
                .expect("valid metric"),
            )?,
            result_uploads: r.counter(
                "lpgpu_pool_result_uploads_total",
                "/transcodeResults uploads by outcome (renditions, error, unknown_task, ignored, broken_body, bad_authorization, bad_credentials, bad_content_type, bad_task_id, bad_pixels).",
                &["outcome"],
            )?,
        })
    }
}
