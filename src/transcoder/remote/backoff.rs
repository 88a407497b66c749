//! Reconnection backoff, plain: go-livepeer's schedule (0.5 s × 1.5ⁿ, ±50 %
//! jitter, at most 60 s), except that a link that stayed registered for a
//! healthy period starts again from the first step, so one blip after a
//! day of service does not cost a minute of work.

use std::time::Duration;

/// The schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    pub first: Duration,
    pub factor: f64,
    pub max: Duration,
    /// ± this fraction of each wait, at random.
    pub jitter: f64,
    /// Registered at least this long: the next failure starts over.
    pub healthy_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            first: Duration::from_millis(500),
            factor: 1.5,
            max: Duration::from_secs(60),
            jitter: 0.5,
            healthy_after: Duration::from_secs(30),
        }
    }
}

/// Where the schedule is.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            failures: 0,
        }
    }

    /// The wait before the next attempt; `unit` in [0, 1) picks the jitter.
    pub fn next_wait(&mut self, unit: f64) -> Duration {
        let base =
            self.policy.first.as_secs_f64() * self.policy.factor.powi(self.failures.min(64) as i32);
        let base = base.min(self.policy.max.as_secs_f64());
        self.failures = self.failures.saturating_add(1);
        let jitter = 1.0 + self.policy.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        Duration::from_secs_f64((base * jitter).min(self.policy.max.as_secs_f64()))
    }

    /// A registration ended after lasting `registered_for`: reset the
    /// schedule when that was a healthy stretch.
    pub fn ended_after(&mut self, registered_for: Duration) {
        if registered_for >= self.policy.healthy_after {
            self.failures = 0;
        }
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_by_half_each_time_up_to_the_cap() {
        let mut b = Backoff::new(BackoffPolicy::default());
        // unit 0.5 = no jitter.
        let waits: Vec<f64> = (0..4).map(|_| b.next_wait(0.5).as_secs_f64()).collect();
        assert_eq!(waits, [0.5, 0.75, 1.125, 1.6875]);
        for _ in 0..40 {
            b.next_wait(0.5);
        }
        assert_eq!(b.next_wait(0.5), Duration::from_secs(60));
        assert_eq!(b.next_wait(1.0), Duration::from_secs(60));
    }

    #[test]
    fn jitter_spreads_half_either_way() {
        let mut low = Backoff::new(BackoffPolicy::default());
        let mut high = Backoff::new(BackoffPolicy::default());
        assert_eq!(low.next_wait(0.0), Duration::from_millis(250));
        assert_eq!(high.next_wait(1.0), Duration::from_millis(750));
    }

    #[test]
    fn a_healthy_registration_resets_the_schedule_and_a_short_one_does_not() {
        let mut b = Backoff::new(BackoffPolicy::default());
        for _ in 0..5 {
            b.next_wait(0.5);
        }
        b.ended_after(Duration::from_secs(3));
        assert_eq!(b.failures(), 5);
        b.ended_after(Duration::from_secs(30));
        assert_eq!(b.failures(), 0);
        assert_eq!(b.next_wait(0.5), Duration::from_millis(500));
    }
}
