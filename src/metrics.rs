//! The Prometheus registry and the metrics whose names are part of the
//! contract (`design.md`, "Metrics"). Each part updates its own; nothing here
//! does I/O except rendering the text format.
#![allow(
    clippy::expect_used,
    reason = "metric definitions are constants: a bad one fails every test, never a peer's request"
)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The window of `lpgpu_realtime_ratio`.
const REALTIME_WINDOW: Duration = Duration::from_secs(60);

/// Buckets for 2 s segments: from a fast GPU ladder to a struggling CPU.
const SEGMENT_BUCKETS: [f64; 14] = [
    0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 10.0, 20.0,
];

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub segments: IntCounterVec,
    pub segment_seconds: Histogram,
    pub transcode_seconds: HistogramVec,
    pub segment_bytes: IntCounterVec,
    pub renditions: IntCounterVec,
    pub inflight_segments: IntGauge,
    /// Transcode slots (`--max-sessions`): the ceiling of in-flight transcodes.
    pub transcode_slots: IntGauge,
    /// Slots held now (running, or admitted and receiving their body).
    pub slots_in_use: IntGauge,
    pub rejections: IntCounterVec,
    pub get_transcoder: IntCounterVec,
    /// Today's `GetOrchestrator` calls, by result.
    pub get_orchestrator: IntCounterVec,
    pub backend_info: IntGaugeVec,
    pub gpu_fallbacks: IntCounter,
    /// Bytes of rejected request bodies read and discarded so the answer
    /// reaches the client whole.
    pub drained_bytes: IntCounter,
    /// Connections on the TLS port by state (handshaking, idle, busy, closing).
    pub connections: IntGaugeVec,
    /// Connections past `--max-connections`: replaced (an idle or
    /// handshaking one closed for a new one) or refused (all busy).
    pub connections_limited: IntCounterVec,
    /// Per GPU and engine (sm, decoder, encoder); no series without a GPU.
    pub gpu_utilization: GaugeVec,
    realtime_ratio: Gauge,
    /// (when, seconds of source video) of segments transcoded in the window.
    transcoded: Arc<Mutex<VecDeque<(Instant, f64)>>>,
    /// Every family registered so far, the components' own included.
    names: Arc<Mutex<Vec<&'static str>>>,
}

/// Adds a component's collectors to a node's registry ([`Metrics::registering`]).
#[derive(Debug)]
pub struct Registering<'a> {
    metrics: &'a Metrics,
}

impl Registering<'_> {
    pub fn add<C: prometheus::core::Collector + Clone + 'static>(
        &mut self,
        name: &'static str,
        collector: C,
    ) -> Result<C, prometheus::Error> {
        self.metrics.register(name, collector)
    }

    /// A counter family with `labels`.
    pub fn counter(
        &mut self,
        name: &'static str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, prometheus::Error> {
        self.add(name, IntCounterVec::new(Opts::new(name, help), labels)?)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers collectors and remembers their names.
struct Registrar {
    registry: Registry,
    names: Vec<&'static str>,
}

impl Registrar {
    fn add<C: prometheus::core::Collector + Clone + 'static>(
        &mut self,
        name: &'static str,
        collector: C,
    ) -> C {
        self.registry
            .register(Box::new(collector.clone()))
            .expect("metric names are unique");
        self.names.push(name);
        collector
    }

    fn counter(&mut self, name: &'static str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(
            name,
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
        )
    }

    fn histogram_opts(name: &'static str, help: &str) -> HistogramOpts {
        HistogramOpts::new(name, help).buckets(SEGMENT_BUCKETS.to_vec())
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registrar {
            registry: Registry::new(),
            names: Vec::new(),
        };
        let segments = r.counter(
            "lpgpu_segments_total",
            "Segments by result (ok, rejected, failed).",
            &["result"],
        );
        let segment_bytes = r.counter(
            "lpgpu_segment_bytes_total",
            "Segment bytes in and rendition bytes out.",
            &["direction"],
        );
        let renditions = r.counter(
            "lpgpu_renditions_total",
            "Renditions produced, by profile.",
            &["profile"],
        );
        let rejections = r.counter(
            "lpgpu_rejections_total",
            "Failed /segment requests, by error code.",
            &["code"],
        );
        let get_transcoder = r.counter(
            "lpgpu_get_transcoder_total",
            "GetTranscoder calls, by result.",
            &["result"],
        );
        let get_orchestrator = r.counter(
            "lpgpu_get_orchestrator_total",
            "GetOrchestrator calls (today's wire), by result.",
            &["result"],
        );
        let segment_seconds = r.add(
            "lpgpu_segment_seconds",
            Histogram::with_opts(Registrar::histogram_opts(
                "lpgpu_segment_seconds",
                "Whole /segment request time.",
            ))
            .expect("valid metric"),
        );
        let transcode_seconds = r.add(
            "lpgpu_transcode_seconds",
            HistogramVec::new(
                Registrar::histogram_opts(
                    "lpgpu_transcode_seconds",
                    "Transcode time of one segment, by backend.",
                ),
                &["backend"],
            )
            .expect("valid metric"),
        );
        let inflight_segments = r.add(
            "lpgpu_inflight_segments",
            IntGauge::new(
                "lpgpu_inflight_segments",
                "Segments being received or transcoded.",
            )
            .expect("valid metric"),
        );
        let transcode_slots = r.add(
            "lpgpu_transcode_slots",
            IntGauge::new(
                "lpgpu_transcode_slots",
                "Segments that may be transcoded at once (--max-sessions).",
            )
            .expect("valid metric"),
        );
        let slots_in_use = r.add(
            "lpgpu_transcode_slots_in_use",
            IntGauge::new(
                "lpgpu_transcode_slots_in_use",
                "Transcode slots held now: segments transcoding, or admitted and arriving.",
            )
            .expect("valid metric"),
        );
        let backend_info = r.add(
            "lpgpu_backend_info",
            IntGaugeVec::new(
                Opts::new(
                    "lpgpu_backend_info",
                    "The transcoding backend in use (always 1).",
                ),
                &["backend", "device"],
            )
            .expect("valid metric"),
        );
        let gpu_utilization = r.add(
            "lpgpu_gpu_utilization_ratio",
            GaugeVec::new(
                Opts::new(
                    "lpgpu_gpu_utilization_ratio",
                    "GPU engine utilization, 0 to 1 (NVML).",
                ),
                &["gpu", "engine"],
            )
            .expect("valid metric"),
        );
        let gpu_fallbacks = r.add(
            "lpgpu_gpu_fallbacks_total",
            IntCounter::new(
                "lpgpu_gpu_fallbacks_total",
                "Segments the GPU backend could not transcode and handed to the CPU.",
            )
            .expect("valid metric"),
        );
        let drained_bytes = r.add(
            "lpgpu_drained_bytes_total",
            IntCounter::new(
                "lpgpu_drained_bytes_total",
                "Bytes of rejected request bodies read and discarded after the answer.",
            )
            .expect("valid metric"),
        );
        let connections = r.add(
            "lpgpu_connections",
            IntGaugeVec::new(
                Opts::new(
                    "lpgpu_connections",
                    "Connections on the TLS port by state (handshaking, idle, busy, closing).",
                ),
                &["state"],
            )
            .expect("valid metric"),
        );
        let connections_limited = r.counter(
            "lpgpu_connections_limited_total",
            "Connections past --max-connections: replaced (an idle or handshaking one closed for it) or refused (every connection busy).",
            &["outcome"],
        );
        let realtime_ratio = r.add(
            "lpgpu_realtime_ratio",
            Gauge::new(
                "lpgpu_realtime_ratio",
                "Seconds of source video transcoded per second of wall time over the last minute.",
            )
            .expect("valid metric"),
        );
        Self {
            registry: r.registry,
            segments,
            segment_seconds,
            transcode_seconds,
            segment_bytes,
            renditions,
            inflight_segments,
            transcode_slots,
            slots_in_use,
            rejections,
            get_transcoder,
            get_orchestrator,
            backend_info,
            gpu_fallbacks,
            drained_bytes,
            connections,
            connections_limited,
            gpu_utilization,
            realtime_ratio,
            transcoded: Arc::default(),
            names: Arc::new(Mutex::new(r.names)),
        }
    }

    /// Samples every GPU's SM, decoder and encoder utilization through NVML
    /// into `lpgpu_gpu_utilization_ratio`, every `interval`, on a thread of its
    /// own. NVML is loaded at run time: without an NVIDIA driver this logs why
    /// and returns false, and the metric has no series.
    pub fn start_gpu_sampler(&self, interval: Duration) -> bool {
        let nvml = match nvml_wrapper::Nvml::init() {
            Ok(nvml) => nvml,
            Err(error) => {
                tracing::info!("GPU utilization metrics absent: NVML is not available ({error})");
                return false;
            }
        };
        let gauge = self.gpu_utilization.clone();
        let sampler = move || loop {
            for index in 0..nvml.device_count().unwrap_or(0) {
                let Ok(device) = nvml.device_by_index(index) else {
                    continue;
                };
                let gpu = index.to_string();
                let set = |engine: &str, percent: u32| {
                    gauge
                        .with_label_values(&[gpu.as_str(), engine])
                        .set(f64::from(percent) / 100.0);
                };
                if let Ok(rates) = device.utilization_rates() {
                    set("sm", rates.gpu);
                }
                if let Ok(decoder) = device.decoder_utilization() {
                    set("decoder", decoder.utilization);
                }
                if let Ok(encoder) = device.encoder_utilization() {
                    set("encoder", encoder.utilization);
                }
            }
            std::thread::sleep(interval);
        };
        std::thread::Builder::new()
            .name("lpgpu-nvml".into())
            .spawn(sampler)
            .is_ok()
    }

    /// The names of every metric family registered so far (the contract's,
    /// and those of the components that registered their own).
    pub fn names(&self) -> Vec<&'static str> {
        self.names.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Registers a component's own collector under `name` (once per
    /// registry: a second component of the same kind is an error).
    pub fn register<C: prometheus::core::Collector + Clone + 'static>(
        &self,
        name: &'static str,
        collector: C,
    ) -> Result<C, prometheus::Error> {
        self.registry.register(Box::new(collector.clone()))?;
        self.names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name);
        Ok(collector)
    }

    /// How a component adds its own collectors to this registry.
    pub fn registering(&self) -> Registering<'_> {
        Registering { metrics: self }
    }

    /// The histogram options of a segment-scale duration.
    pub fn seconds_opts(name: &'static str, help: &str) -> HistogramOpts {
        Registrar::histogram_opts(name, help)
    }

    /// Records a transcoded segment of `source_seconds` for the real-time ratio.
    pub fn record_transcoded(&self, source_seconds: f64) {
        let mut window = self.transcoded.lock().unwrap_or_else(|p| p.into_inner());
        window.push_back((Instant::now(), source_seconds));
        Self::trim(&mut window);
    }

    fn trim(window: &mut VecDeque<(Instant, f64)>) {
        while window
            .front()
            .is_some_and(|(at, _)| at.elapsed() > REALTIME_WINDOW)
        {
            window.pop_front();
        }
    }

    fn update_realtime_ratio(&self) {
        let mut window = self.transcoded.lock().unwrap_or_else(|p| p.into_inner());
        Self::trim(&mut window);
        // A fold from +0.0: an empty f64 sum is -0.0, which would render as "-0".
        let seconds = window.iter().fold(0.0, |total, (_, s)| total + s);
        self.realtime_ratio
            .set(seconds / REALTIME_WINDOW.as_secs_f64());
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.update_realtime_ratio();
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_utilization_is_absent_without_nvml() {
        let metrics = Metrics::new();
        if !metrics.start_gpu_sampler(Duration::from_millis(50)) {
            assert!(!metrics.render().contains("lpgpu_gpu_utilization_ratio{"));
        }
    }

    #[test]
    fn contract_names_render() {
        let metrics = Metrics::new();
        metrics
            .rejections
            .with_label_values(&["hash_mismatch"])
            .inc();
        metrics.segments.with_label_values(&["ok"]).inc();
        metrics.segment_seconds.observe(0.4);
        metrics
            .transcode_seconds
            .with_label_values(&["cpu"])
            .observe(0.3);
        metrics.record_transcoded(30.0);
        metrics
            .backend_info
            .with_label_values(&["cpu", "AMD EPYC"])
            .set(1);
        assert!(Metrics::new().render().contains("lpgpu_realtime_ratio 0\n"));
        let text = metrics.render();
        for name in [
            "lpgpu_rejections_total{code=\"hash_mismatch\"} 1",
            "lpgpu_segments_total{result=\"ok\"} 1",
            "lpgpu_segment_seconds_bucket",
            "lpgpu_transcode_seconds_bucket{backend=\"cpu\"",
            "lpgpu_inflight_segments 0",
            "lpgpu_realtime_ratio 0.5",
            "lpgpu_backend_info{backend=\"cpu\",device=\"AMD EPYC\"} 1",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
