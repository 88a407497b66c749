//! A segment through the CPU pipeline: in-memory demux, decode, one rung
//! scaled and encoded with libx264, muxed. Any bytes give renditions or a
//! typed error; never a crash or a hang (libFuzzer's -timeout catches those).
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use lpgpu::pipeline::cpu::CpuBackend;
use lpgpu::pipeline::{Backend, EncoderSettings, RenditionSpec, SegmentOptions};

fn backend() -> &'static (CpuBackend, Vec<RenditionSpec>) {
    static BACKEND: OnceLock<(CpuBackend, Vec<RenditionSpec>)> = OnceLock::new();
    BACKEND.get_or_init(|| {
        let settings = EncoderSettings {
            preset: "ultrafast".into(),
            threads: 1,
            ..EncoderSettings::default()
        };
        let mut spec: RenditionSpec =
            lpgpu::protocol::parse_profile_list("P144p30fps16x9").unwrap()[0].into();
        (spec.width, spec.height) = (128, 72);
        (CpuBackend::new(settings), vec![spec])
    })
}

fuzz_target!(|data: &[u8]| {
    let (backend, specs) = backend();
    if let Ok(transcoded) = backend.transcode(Bytes::copy_from_slice(data), specs, &SegmentOptions::default()) {
        assert_eq!(transcoded.renditions.len(), 1);
        let rendition = &transcoded.renditions[0];
        assert!(rendition.frames > 0 && !rendition.data.is_empty());
    }
});
