//! A `NotifySegment` from an orchestrator, decoded from arbitrary bytes,
//! read as a task, and its `VideoProfile`s mapped onto the ladder for an
//! arbitrary source picture: sizes, frame rates and decimation never panic,
//! and every size that comes out is even and inside the box.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpgpu::pipeline::Rational;
use lpgpu::pipeline::ladder::{FrameDecimator, output_frame_rate, output_size};
use lpgpu::proto::NotifySegment;
use lpgpu::protocol::capabilities::{CapabilitySet, GO_LIVEPEER_VERSION};
use lpgpu::transcoder::remote::task::{Notification, read_notification};
use prost::Message;

fuzz_target!(|input: (&[u8], u16, u16, i32, i32, i32, i32)| {
    let (bytes, width, height, sar_num, sar_den, rate_num, rate_den) = input;
    let Ok(notify) = NotifySegment::decode(bytes) else {
        return;
    };
    let Notification::Task(task) =
        read_notification(&notify, &CapabilitySet::lpgpu(), GO_LIVEPEER_VERSION)
    else {
        return;
    };
    let (width, height) = (u32::from(width).max(1), u32::from(height).max(1));
    let source_rate = Some(Rational::new(rate_num, rate_den));
    for spec in &task.renditions {
        if spec.width == 0 || spec.height == 0 || spec.width > 16384 || spec.height > 16384 {
            continue;
        }
        let (w, h) = output_size(width, height, Rational::new(sar_num, sar_den), spec.width, spec.height);
        assert!(w % 2 == 0 && h % 2 == 0 && w >= 2 && h >= 2, "{w}x{h}");
        assert!(w.max(h) <= spec.width.max(spec.height).max(2), "{w}x{h} for {spec:?}");
        let rate = output_frame_rate(source_rate, spec.max_frame_rate);
        let mut decimator = FrameDecimator::new(source_rate, rate, Rational::new(1, 90_000));
        for pts in [Some(0), None, Some(3000), Some(i64::MAX / 2), Some(-5)] {
            let _ = decimator.keep(pts);
        }
    }
});
