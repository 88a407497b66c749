//! What a running process is doing, for people rather than Prometheus:
//! `GET /status` on the metrics port (JSON, read from the metrics registry
//! and a minute of counter samples) and `GET /` (a self-contained HTML page,
//! no external assets, that refreshes itself from `/status`). The summary is
//! plain code over gathered metric families; only the sampling clock and the
//! handlers are at the edge.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::proto::{MetricFamily, MetricType};
use serde_json::{Value, json};

use crate::metrics::Metrics;

/// The window of the "last minute" figures.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How often counters are sampled for the window.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// The counters the window is computed from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// `lpgpu_segments_total` by result.
    pub segments: BTreeMap<String, f64>,
    /// `lpgpu_rejections_total` by code.
    pub rejections: BTreeMap<String, f64>,
}

fn label<'a>(metric: &'a prometheus::proto::Metric, name: &str) -> Option<&'a str> {
    metric
        .get_label()
        .iter()
        .find(|l| l.name() == name)
        .map(|l| l.value())
}

/// A counter's or gauge's value.
fn value(kind: MetricType, metric: &prometheus::proto::Metric) -> f64 {
    match kind {
        MetricType::COUNTER => metric.get_counter().get_value(),
        MetricType::GAUGE => metric.get_gauge().get_value(),
        _ => 0.0,
    }
}

/// The series of `name`, each with its family's type.
fn series<'a>(
    families: &'a [MetricFamily],
    name: &str,
) -> impl Iterator<Item = (MetricType, &'a prometheus::proto::Metric)> {
    families
        .iter()
        .filter(move |f| f.name() == name)
        .flat_map(|f| f.get_metric().iter().map(move |m| (f.get_field_type(), m)))
}

fn by_label(families: &[MetricFamily], name: &str, key: &str) -> BTreeMap<String, f64> {
    series(families, name)
        .map(|(kind, m)| (label(m, key).unwrap_or("").to_string(), value(kind, m)))
        .collect()
}

fn single(families: &[MetricFamily], name: &str) -> Option<f64> {
    series(families, name)
        .next()
        .map(|(kind, m)| value(kind, m))
}

/// The window's counters, read from gathered families.
pub fn totals(families: &[MetricFamily]) -> Totals {
    Totals {
        segments: by_label(families, "lpgpu_segments_total", "result"),
        rejections: by_label(families, "lpgpu_rejections_total", "code"),
    }
}

/// `now − then` per key (a key missing then counts from 0).
fn rise(now: &BTreeMap<String, f64>, then: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    now.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                (v - then.get(k).copied().unwrap_or(0.0)).max(0.0),
            )
        })
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

/// What `/status` says, from gathered families, the totals a minute ago,
/// the role and readiness.
pub fn summary(
    role: &str,
    families: &[MetricFamily],
    minute_ago: &Totals,
    ready: Result<(), String>,
) -> Value {
    let now = totals(families);
    let segments = rise(&now.segments, &minute_ago.segments);
    let rejections = rise(&now.rejections, &minute_ago.rejections);
    let backends: Vec<Value> = series(families, "lpgpu_backend_info")
        .map(|(_, m)| {
            json!({
                "backend": label(m, "backend").unwrap_or(""),
                "device": label(m, "device").unwrap_or(""),
            })
        })
        .collect();
    let mut gpus: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for (kind, m) in series(families, "lpgpu_gpu_utilization_ratio") {
        gpus.entry(label(m, "gpu").unwrap_or("").to_string())
            .or_default()
            .insert(label(m, "engine").unwrap_or("").to_string(), value(kind, m));
    }
    let gpus: Vec<Value> = gpus
        .into_iter()
        .map(|(gpu, engines)| json!({ "gpu": gpu, "utilization": engines }))
        .collect();
    let capacity = by_label(families, "lpgpu_pool_member_capacity", "member");
    let load = by_label(families, "lpgpu_pool_member_load", "member");
    let pool =
        // No pool (its families are not registered), or one nobody joined.
        if capacity.is_empty()
            && single(families, "lpgpu_pool_registrations_total").is_none_or(|n| n == 0.0)
        {
            Value::Null
        } else {
            json!({
                "members": single(families, "lpgpu_pool_members").unwrap_or(0.0),
                "retries": single(families, "lpgpu_pool_retries_total").unwrap_or(0.0),
                "list": capacity.iter().map(|(member, capacity)| json!({
                    "member": member,
                    "capacity": capacity,
                    "load": load.get(member).copied().unwrap_or(0.0),
                })).collect::<Vec<_>>(),
            })
        };
    let remote = single(families, "lpgpu_remote_capacity")
        .is_some()
        .then(|| {
            json!({
                "registered": single(families, "lpgpu_remote_registered").unwrap_or(0.0) > 0.0,
                "capacity": single(families, "lpgpu_remote_capacity").unwrap_or(0.0),
                "tasks_in_flight": single(families, "lpgpu_remote_tasks_in_flight").unwrap_or(0.0),
            })
        });
    // A paid node: tickets and wei by outcome, refusals, pending wins.
    let payments = single(families, "lpgpu_tickets_pending_redemption")
        .is_some()
        .then(|| {
            json!({
                "tickets": by_label(families, "lpgpu_tickets_total", "outcome"),
                "wei": by_label(families, "lpgpu_ticket_wei_total", "outcome"),
                "refused": by_label(families, "lpgpu_payment_errors_total", "reason"),
                "pending_redemption": single(families, "lpgpu_tickets_pending_redemption").unwrap_or(0.0),
            })
        });
    let (ready, why) = match ready {
        Ok(()) => (true, None),
        Err(why) => (false, Some(why)),
    };
    json!({
        "role": role,
        "version": env!("CARGO_PKG_VERSION"),
        "ready": ready,
        "not_ready_because": why,
        "backends": backends,
        "slots": {
            "in_use": single(families, "lpgpu_inflight_segments").unwrap_or(0.0),
            "total": single(families, "lpgpu_transcode_slots").unwrap_or(0.0),
        },
        "gpus": gpus,
        "last_minute": {
            "segments": segments.values().sum::<f64>(),
            "by_result": segments,
            "rejections": rejections.values().sum::<f64>(),
            // Codes only: the texts stay in the log.
            "errors_by_code": rejections,
        },
        "totals": { "segments": now.segments },
        "realtime_ratio": single(families, "lpgpu_realtime_ratio").unwrap_or(0.0),
        "pool": pool,
        "remote": remote,
        "payments": payments,
    })
}

/// The counter samples of the last minute, and what `/status` needs.
#[derive(Debug)]
pub struct StatusBoard {
    role: &'static str,
    metrics: Metrics,
    samples: Mutex<VecDeque<(Instant, Totals)>>,
}

impl StatusBoard {
    pub fn new(role: &'static str, metrics: Metrics) -> Arc<Self> {
        Arc::new(Self {
            role,
            metrics,
            samples: Mutex::new(VecDeque::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(Instant, Totals)>> {
        self.samples.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the counters now; keeps a minute (and one sample before it).
    pub fn sample(&self) {
        let now = Instant::now();
        let totals = totals(&self.metrics.registry().gather());
        let mut samples = self.lock();
        samples.push_back((now, totals));
        while samples.len() > 2 && now.duration_since(samples[1].0) >= WINDOW {
            samples.pop_front();
        }
    }

    /// Samples every [`SAMPLE_INTERVAL`] while the board lives.
    pub fn start_sampler(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
            loop {
                tick.tick().await;
                let Some(board) = weak.upgrade() else { return };
                board.sample();
            }
        });
    }

    /// The `/status` document.
    pub fn status(&self, ready: Result<(), String>) -> Value {
        let families = self.metrics.registry().gather();
        let now = Instant::now();
        // The oldest sample no older than the window (the process's first
        // sample while it is younger than a minute).
        let minute_ago = self
            .lock()
            .iter()
            .find(|(at, _)| now.duration_since(*at) <= WINDOW + SAMPLE_INTERVAL)
            .map(|(_, t)| t.clone())
            .unwrap_or_default();
        summary(self.role, &families, &minute_ago, ready)
    }
}

/// The page at `/`: plain HTML, CSS and a script that renders `/status`
/// every two seconds. Everything is inline; nothing is fetched but `/status`.
pub const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lpgpu status</title>
<link rel="icon" href="data:,">
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #1d2330; background: #f6f7f9; }
  h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
  .sub { color: #5b6475; margin-bottom: 1rem; }
  .grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(16rem, 1fr)); gap: .8rem; }
  .card { background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: .8rem 1rem; }
  .card h2 { font-size: .8rem; text-transform: uppercase; letter-spacing: .04em; color: #5b6475; margin: 0 0 .4rem; }
  .big { font-size: 1.6rem; font-weight: 600; }
  table { border-collapse: collapse; width: 100%; }
  td, th { text-align: left; padding: .15rem .4rem .15rem 0; }
  .ok { color: #137333; } .bad { color: #b3261e; }
  .bar { height: .5rem; background: #e4e7ec; border-radius: 3px; overflow: hidden; }
  .bar > div { height: 100%; background: #3b6fd8; }
  #error { color: #b3261e; }
</style>
</head>
<body>
<h1>lpgpu <span id="role">…</span></h1>
<div class="sub"><span id="ready">…</span> · version <span id="version">…</span> · <span id="updated">never updated</span> <span id="error"></span></div>
<div class="grid">
  <div class="card"><h2>Backend</h2><div id="backends">…</div></div>
  <div class="card"><h2>Slots in use</h2><div class="big" id="slots">…</div><div class="bar"><div id="slotbar" style="width:0"></div></div></div>
  <div class="card"><h2>Last minute</h2><div class="big"><span id="segments">…</span> segments</div><div><span id="rejections">…</span> rejected</div></div>
  <div class="card"><h2>Real-time ratio</h2><div class="big" id="ratio">…</div><div>seconds of video per second, last minute</div></div>
  <div class="card"><h2>Errors, last minute (codes)</h2><table id="errors"></table></div>
  <div class="card"><h2>GPUs</h2><table id="gpus"></table></div>
  <div class="card" id="poolcard" hidden><h2>Pool</h2><div><span id="members">0</span> members · <span id="retries">0</span> retries</div><table id="pool"></table></div>
  <div class="card" id="paycard" hidden><h2>Payments</h2><div id="pay"></div><table id="refused"></table></div>
  <div class="card" id="remotecard" hidden><h2>Orchestrator links</h2><div id="remote"></div><table id="links"></table></div>
</div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
function text(node, value) { node.textContent = value; }
function rows(table, header, list) {
  table.replaceChildren();
  const head = table.insertRow();
  for (const h of header) { const th = document.createElement("th"); th.textContent = h; head.appendChild(th); }
  for (const cells of list) {
    const row = table.insertRow();
    for (const c of cells) { row.insertCell().textContent = c; }
  }
  if (list.length === 0) {
    const cell = table.insertRow().insertCell();
    cell.colSpan = header.length;
    cell.textContent = "none";
  }
}
function render(s) {
  text($("role"), s.role);
  text($("version"), s.version);
  const ready = $("ready");
  ready.className = s.ready ? "ok" : "bad";
  text(ready, s.ready ? "ready" : "not ready: " + (s.not_ready_because || ""));
  text($("backends"), s.backends.map((b) => b.backend + " (" + b.device + ")").join(", ") || "none");
  text($("slots"), s.slots.in_use + " / " + s.slots.total);
  $("slotbar").style.width = (s.slots.total ? Math.min(100, 100 * s.slots.in_use / s.slots.total) : 0) + "%";
  text($("segments"), s.last_minute.segments);
  text($("rejections"), s.last_minute.rejections);
  text($("ratio"), s.realtime_ratio.toFixed(2));
  rows($("errors"), ["code", "count"], Object.entries(s.last_minute.errors_by_code));
  rows($("gpus"), ["gpu", "sm", "decoder", "encoder"], s.gpus.map((g) => [g.gpu,
    ...["sm", "decoder", "encoder"].map((e) => g.utilization[e] === undefined ? "–" : Math.round(100 * g.utilization[e]) + " %")]));
  $("poolcard").hidden = !s.pool;
  if (s.pool) {
    text($("members"), s.pool.members);
    text($("retries"), s.pool.retries);
    rows($("pool"), ["member", "load", "capacity"], s.pool.list.map((m) => [m.member, m.load, m.capacity]));
  }
  $("paycard").hidden = !s.payments;
  if (s.payments) {
    const t = s.payments.tickets, w = s.payments.wei;
    text($("pay"), (t.received || 0) + " tickets received · " + (t.winning || 0) + " winning · " + (t.redeemed || 0) + " redeemed · "
      + s.payments.pending_redemption + " pending · " + Math.round(w.redeemed || 0) + " wei redeemed");
    rows($("refused"), ["refused payment", "count"], Object.entries(s.payments.refused));
  }
  $("remotecard").hidden = !s.remote;
  if (s.remote) {
    text($("remote"), (s.remote.registered ? "registered" : "not registered") + " · capacity " + s.remote.capacity + " · " + s.remote.tasks_in_flight + " tasks in flight");
    const links = (s.details && s.details.links) || [];
    rows($("links"), ["orchestrator", "state", "share", "target", "in flight", "sessions"],
      links.map((l) => [l.orchestrator, l.why ? l.state + ": " + l.why : l.state, l.share, l.target, l.in_flight, l.live_sessions]));
  }
  text($("updated"), "updated " + new Date().toLocaleTimeString());
  text($("error"), "");
}
async function refresh() {
  try {
    const response = await fetch("/status", { cache: "no-store" });
    if (!response.ok) throw new Error("/status answered " + response.status);
    render(await response.json());
  } catch (e) {
    text($("error"), "(" + e.message + ")");
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_reads_the_registry_and_the_window() {
        let metrics = Metrics::new();
        metrics.segments.with_label_values(&["ok"]).inc_by(5);
        metrics
            .rejections
            .with_label_values(&["bad_signature"])
            .inc_by(2);
        metrics.transcode_slots.set(4);
        metrics.inflight_segments.set(1);
        metrics
            .backend_info
            .with_label_values(&["cpu", "a test CPU"])
            .set(1);
        let before = totals(&metrics.registry().gather());
        metrics.segments.with_label_values(&["ok"]).inc_by(3);
        metrics.segments.with_label_values(&["rejected"]).inc();
        metrics
            .rejections
            .with_label_values(&["bad_signature"])
            .inc();
        let status = summary("node", &metrics.registry().gather(), &before, Ok(()));
        assert_eq!(status["role"], "node");
        assert_eq!(status["ready"], true);
        assert_eq!(status["slots"]["in_use"], 1.0);
        assert_eq!(status["slots"]["total"], 4.0);
        assert_eq!(status["last_minute"]["segments"], 4.0);
        assert_eq!(status["last_minute"]["rejections"], 1.0);
        assert_eq!(
            status["last_minute"]["errors_by_code"]["bad_signature"],
            1.0
        );
        assert_eq!(status["totals"]["segments"]["ok"], 8.0);
        assert_eq!(status["backends"][0]["backend"], "cpu");
        assert!(status["pool"].is_null());
        assert!(status["remote"].is_null());
    }

    #[test]
    fn a_pool_and_its_members_show() {
        let metrics = Metrics::new();
        let pool = crate::pool::PoolMetrics::register(&metrics).unwrap();
        pool.members.set(1);
        pool.capacity
            .with_label_values(&["rig-1@10.0.0.2:4000"])
            .set(3);
        pool.load.with_label_values(&["rig-1@10.0.0.2:4000"]).set(2);
        let status = summary(
            "orchestrator",
            &metrics.registry().gather(),
            &Totals::default(),
            Err("no room".into()),
        );
        assert_eq!(status["ready"], false);
        assert_eq!(status["not_ready_because"], "no room");
        let member = &status["pool"]["list"][0];
        assert_eq!(member["member"], "rig-1@10.0.0.2:4000");
        assert_eq!(
            (member["load"].clone(), member["capacity"].clone()),
            (2.0.into(), 3.0.into())
        );
    }

    #[test]
    fn the_page_needs_nothing_but_status() {
        assert!(PAGE.contains("fetch(\"/status\""));
        for external in ["http://", "https://", "src=", "@import"] {
            assert!(!PAGE.contains(external), "the page loads {external}");
        }
        // Its one link is an empty inline icon (else browsers ask for /favicon.ico).
        assert_eq!(PAGE.matches("<link").count(), 1);
        assert!(PAGE.contains(r#"<link rel="icon" href="data:,">"#));
    }
}
