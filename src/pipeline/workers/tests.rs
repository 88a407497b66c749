use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// A backend that counts transcodes running at once and blocks each one
/// until the gate opens or it is cancelled (checking as a real backend does,
/// between pictures).
#[derive(Debug, Default)]
struct Gated {
    running: AtomicUsize,
    most: AtomicUsize,
    started: AtomicUsize,
    open: std::sync::atomic::AtomicBool,
    /// How long a cancelled transcode takes to notice.
    stop_delay_ms: u64,
    panic_on: Option<&'static [u8]>,
}

impl Backend for Gated {
    fn name(&self) -> &'static str {
        "gated"
    }

    fn device(&self) -> String {
        "test".into()
    }

    fn transcode(
        &self,
        segment: Bytes,
        renditions: &[RenditionSpec],
        options: &SegmentOptions,
    ) -> Result<Transcoded, TranscodeError> {
        if self.panic_on == Some(&segment[..]) {
            panic!("boom");
        }
        self.started.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        let outcome = loop {
            if self.open.load(Ordering::SeqCst) {
                break Ok(Transcoded {
                    renditions: Vec::new(),
                    source_seconds: renditions.len() as f64,
                    source_frames: 0,
                    source_pixels: 0,
                    backend: "gated",
                    fallback: None,
                });
            }
            if options.cancel.is_cancelled() {
                std::thread::sleep(Duration::from_millis(self.stop_delay_ms));
                break Err(TranscodeError::Cancelled);
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        outcome
    }
}

fn job(data: &'static [u8], within: Duration) -> Job {
    Job {
        segment: Bytes::from_static(data),
        renditions: Vec::new(),
        clip: None,
        perceptual_hash: false,
        deadline: Instant::now() + within,
    }
}

fn workers(backend: Arc<Gated>, slots: usize, policy: Policy) -> Workers {
    Workers::new(backend, slots, policy, Metrics::new()).unwrap()
}

#[tokio::test]
async fn after_a_timeout_no_second_transcode_runs_on_that_slot_until_the_first_stops() {
    let backend = Arc::new(Gated {
        stop_delay_ms: 300,
        ..Default::default()
    });
    let pool = workers(backend.clone(), 1, Policy::SEGMENTS);
    let a = StreamKey::new("a");
    let outcome = pool
        .execute(&a, job(b"slow", Duration::from_millis(100)))
        .await;
    assert!(
        matches!(outcome, Err(ExecuteError::Run(RunError::TimedOut(_)))),
        "{outcome:?}"
    );
    // The cancelled transcode is still stopping: its slot is not free.
    assert!(matches!(
        pool.admit(&StreamKey::new("b")),
        Err(Refusal::AllSlotsBusy { slots: 1 })
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    backend.open.store(true, Ordering::SeqCst);
    let second = pool
        .execute(&StreamKey::new("b"), job(b"next", Duration::from_secs(5)))
        .await;
    assert!(second.is_ok(), "{second:?}");
    assert_eq!(
        backend.most.load(Ordering::SeqCst),
        1,
        "two at once on one slot"
    );
}

#[tokio::test]
async fn the_slot_is_free_when_the_result_is_seen_hundreds_of_times() {
    let backend = Arc::new(Gated::default());
    backend.open.store(true, Ordering::SeqCst);
    let pool = workers(backend.clone(), 2, Policy::streams(2));
    let (a, b) = (StreamKey::new("a"), StreamKey::new("b"));
    let b_runner = {
        let pool = pool.clone();
        tokio::spawn(async move {
            for _ in 0..500 {
                pool.execute(&b, job(b"b", Duration::from_secs(5)))
                    .await
                    .unwrap();
            }
        })
    };
    for i in 0..500 {
        // The next segment goes out the instant the previous answer is in.
        let outcome = pool.execute(&a, job(b"a", Duration::from_secs(5))).await;
        assert!(outcome.is_ok(), "segment {i}: {outcome:?}");
    }
    b_runner.await.unwrap();
    assert!(backend.most.load(Ordering::SeqCst) <= 2);
}

#[tokio::test]
async fn a_streams_next_segment_waits_behind_it_and_runs_after_it() {
    let backend = Arc::new(Gated::default());
    let pool = workers(backend.clone(), 2, Policy::streams(1));
    let a = StreamKey::new("a");
    let first = pool.admit(&a).unwrap();
    let second = pool.admit(&a).unwrap();
    assert!(!first.is_queued() && second.is_queued());
    // A third is refused for the stream's queue, not for the slots.
    assert!(matches!(
        pool.admit(&a),
        Err(Refusal::StreamQueueFull { queued: 1 })
    ));
    // The free slot goes to another stream.
    let other = pool.admit(&StreamKey::new("b")).unwrap();
    drop(other);
    let second_run = tokio::spawn(second.run(job(b"2", Duration::from_secs(5))));
    let first_run = tokio::spawn(first.run(job(b"1", Duration::from_secs(5))));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(backend.running.load(Ordering::SeqCst), 1, "one at a time");
    backend.open.store(true, Ordering::SeqCst);
    first_run.await.unwrap().unwrap();
    second_run.await.unwrap().unwrap();
    assert_eq!(backend.most.load(Ordering::SeqCst), 1);
    assert_eq!(pool.shared().lanes().in_use(), 0);
}

#[tokio::test]
async fn a_segment_whose_deadline_passes_in_the_queue_never_runs() {
    let backend = Arc::new(Gated::default());
    let pool = workers(backend.clone(), 1, Policy::streams(1));
    let a = StreamKey::new("a");
    let first = pool.admit(&a).unwrap();
    let second = pool.admit(&a).unwrap();
    let first_run = tokio::spawn(first.run(job(b"1", Duration::from_secs(5))));
    let waited = second.run(job(b"2", Duration::from_millis(100))).await;
    assert!(
        matches!(waited, Err(RunError::WaitedTooLong(_))),
        "{waited:?}"
    );
    backend.open.store(true, Ordering::SeqCst);
    first_run.await.unwrap().unwrap();
    assert_eq!(backend.started.load(Ordering::SeqCst), 1);
    assert_eq!(pool.shared().lanes().in_use(), 0);
    assert!(pool.has_free_slot());
}

#[tokio::test]
async fn dropped_tickets_give_their_slot_back_and_a_panic_is_an_error() {
    let backend = Arc::new(Gated {
        panic_on: Some(b"panic"),
        ..Default::default()
    });
    backend.open.store(true, Ordering::SeqCst);
    let pool = workers(backend.clone(), 1, Policy::streams(1));
    let a = StreamKey::new("a");
    let held = pool.admit(&a).unwrap();
    let queued = pool.admit(&a).unwrap();
    drop(held);
    // The queued ticket was handed the slot; dropping it frees the slot.
    drop(queued);
    assert!(pool.has_free_slot());
    let outcome = pool
        .execute(&a, job(b"panic", Duration::from_secs(5)))
        .await;
    assert!(
        matches!(
            outcome,
            Err(ExecuteError::Run(RunError::Transcode(
                TranscodeError::Internal(_)
            )))
        ),
        "{outcome:?}"
    );
    assert!(
        pool.execute(&a, job(b"ok", Duration::from_secs(5)))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_waiter_that_goes_away_cancels_its_work() {
    let backend = Arc::new(Gated::default());
    let pool = workers(backend.clone(), 1, Policy::SEGMENTS);
    let a = StreamKey::new("a");
    let running = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.execute(&a, job(b"x", Duration::from_secs(60))).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(backend.running.load(Ordering::SeqCst), 1);
    running.abort();
    let _ = running.await;
    for _ in 0..100 {
        if pool.has_free_slot() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(pool.has_free_slot(), "the abandoned work was not cancelled");
}
