//! GPU parts on their own, against the card's own ceilings, in one run:
//!
//!     cargo bench --bench gpu            (or the shipped binary, in the device check)
//!
//! - the resize kernels: time per 1080p picture to each rung, and the
//!   bandwidth that implies (the fewest bytes a resize must move: the source
//!   read once, the output written once) as a fraction of a device-to-device
//!   copy measured in the same run;
//! - NVDEC: 1080p30 H.264 decode rate with 1, 7 and 14 concurrent sessions
//!   (an H100 has 7 engines, about 770 fps each by NVIDIA's figures).
//!
//! Without a GPU it says so and exits 0 (CI builds and runs it that way).
//! Lines start with RESULT so the device check can collect them.

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

use std::sync::Arc;
use std::time::Instant;

use lpgpu::pipeline::gpu::cuda;
use lpgpu::pipeline::gpu::diagnostics::open_device;
use lpgpu::pipeline::testclip::make_test_clip;

fn main() {
    if let Err(why) = cuda::probe_driver() {
        println!("gpu bench: no GPU here ({why}); nothing to measure");
        return;
    }
    let device = Arc::new(open_device(0).expect("opening GPU 0"));
    println!("RESULT device {}", device.name());

    let copy = device
        .copy_bandwidth(512 << 20, 20)
        .expect("copy bandwidth");
    println!("RESULT copy_bandwidth_gbps {:.0}", copy / 1e9);
    for output in [(1280, 720), (640, 360), (426, 240)] {
        let (seconds, bytes) = device
            .time_resize((1920, 1080), output, 30)
            .expect("timing the resize");
        let bandwidth = bytes as f64 / seconds;
        println!(
            "RESULT resize 1920x1080->{}x{} us={:.1} gbps={:.0} of_copy={:.2}",
            output.0,
            output.1,
            seconds * 1e6,
            bandwidth / 1e9,
            bandwidth / copy
        );
    }

    let clip = make_test_clip(4, 1920, 1080).expect("making the 1080p clip");
    let frames = device.decode_count(clip.clone()).expect("decoding once");
    println!("RESULT nvdec_clip frames={frames}");
    for sessions in [1usize, 7, 14] {
        let repeats = 3;
        let started = Instant::now();
        let decoded: u64 = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..sessions)
                .map(|_| {
                    let (device, clip) = (device.clone(), clip.clone());
                    scope.spawn(move || {
                        (0..repeats)
                            .map(|_| device.decode_count(clip.clone()).expect("decoding"))
                            .sum::<u64>()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        let fps = decoded as f64 / started.elapsed().as_secs_f64();
        println!(
            "RESULT nvdec_1080p sessions={sessions} fps={fps:.0} of_7x770={:.2}",
            fps / (7.0 * 770.0)
        );
    }
}
