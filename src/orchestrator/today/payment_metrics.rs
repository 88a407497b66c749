//! A paid orchestrator's metrics (`lpgpu_tickets_*`, `lpgpu_payment_*`),
//! registered in the node's registry when payments are on.

#![allow(
    clippy::expect_used,
    reason = "metric definitions are constants: a bad one fails every test"
)]

use prometheus::{CounterVec, GaugeVec, IntCounterVec, IntGauge, Opts};

use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct PaymentMetrics {
    /// Tickets by outcome: received, winning, redeemed, failed (a
    /// redemption that reverted or was dropped), used (already redeemed).
    pub tickets: IntCounterVec,
    /// Wei by outcome: received (expected value credited), debited (pixels
    /// at this node's price), redeemed (face value paid out).
    pub wei: CounterVec,
    /// Refused payments by reason (go-livepeer's check, as a label).
    pub errors: IntCounterVec,
    /// Winning tickets written down and not yet redeemed.
    pub pending: IntGauge,
    /// Each sender's credit left over its open sessions, in wei (negative:
    /// it owes).
    pub balance: GaugeVec,
}

impl PaymentMetrics {
    pub fn register(metrics: &Metrics) -> Result<Self, prometheus::Error> {
        let r = &mut metrics.registering();
        Ok(Self {
            tickets: r.counter(
                "lpgpu_tickets_total",
                "PM tickets by outcome: received, winning, redeemed, failed, used.",
                &["outcome"],
            )?,
            wei: r.add(
                "lpgpu_ticket_wei_total",
                CounterVec::new(
                    Opts::new(
                        "lpgpu_ticket_wei_total",
                        "Wei by outcome: received (expected value credited), debited (pixels at the node's price), redeemed (face value paid).",
                    ),
                    &["outcome"],
                )
                .expect("valid metric"),
            )?,
            errors: r.counter(
                "lpgpu_payment_errors_total",
                "Refused payments by reason.",
                &["reason"],
            )?,
            balance: r.add(
                "lpgpu_payment_balance_wei",
                GaugeVec::new(
                    Opts::new(
                        "lpgpu_payment_balance_wei",
                        "Each sender's credit left over its open sessions, in wei.",
                    ),
                    &["sender"],
                )
                .expect("valid metric"),
            )?,
            pending: r.add(
                "lpgpu_tickets_pending_redemption",
                IntGauge::new(
                    "lpgpu_tickets_pending_redemption",
                    "Winning tickets written down and not yet redeemed.",
                )
                .expect("valid metric"),
            )?,
        })
    }
}
