//! The Prometheus registry and the metrics whose names are part of the
//! contract (`design.md`, "Metrics"). Each part updates its own; nothing here
//! does I/O except rendering the text format.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

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
    pub rejections: IntCounterVec,
    pub get_transcoder: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let segments = counter(
            "lpgpu_segments_total",
            "Segments by result (ok, rejected, failed).",
            &["result"],
        );
        let segment_bytes = counter(
            "lpgpu_segment_bytes_total",
            "Segment bytes in and rendition bytes out.",
            &["direction"],
        );
        let renditions = counter(
            "lpgpu_renditions_total",
            "Renditions produced, by profile.",
            &["profile"],
        );
        let rejections = counter(
            "lpgpu_rejections_total",
            "Rejected /segment requests, by error code.",
            &["code"],
        );
        let get_transcoder = counter(
            "lpgpu_get_transcoder_total",
            "GetTranscoder calls, by result.",
            &["result"],
        );
        let segment_seconds = Histogram::with_opts(
            HistogramOpts::new("lpgpu_segment_seconds", "Whole /segment request time.")
                .buckets(SEGMENT_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        registry
            .register(Box::new(segment_seconds.clone()))
            .expect("unique metric");
        let transcode_seconds = HistogramVec::new(
            HistogramOpts::new(
                "lpgpu_transcode_seconds",
                "Transcode time of one segment, by backend.",
            )
            .buckets(SEGMENT_BUCKETS.to_vec()),
            &["backend"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(transcode_seconds.clone()))
            .expect("unique metric");
        let inflight_segments = IntGauge::new(
            "lpgpu_inflight_segments",
            "Segments being received or transcoded.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(inflight_segments.clone()))
            .expect("unique metric");
        Self {
            registry,
            segments,
            segment_seconds,
            transcode_seconds,
            segment_bytes,
            renditions,
            inflight_segments,
            rejections,
            get_transcoder,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
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
        let text = metrics.render();
        for name in [
            "lpgpu_rejections_total{code=\"hash_mismatch\"} 1",
            "lpgpu_segments_total{result=\"ok\"} 1",
            "lpgpu_segment_seconds_bucket",
            "lpgpu_transcode_seconds_bucket{backend=\"cpu\"",
            "lpgpu_inflight_segments 0",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
