//! Starting a paid node (`lpgpu node --price-per-unit …`): the flags
//! checked before a port is bound, then the chain's contracts found through
//! the Controller, the winning-ticket store opened (tickets left by a crash
//! are redeemed), and the refresher and redeemer started.

use std::sync::Arc;

use anyhow::{Context, Result};

use super::ChainArgs;
use super::serve::PaymentArgs;
use crate::chain::operator::Protocol;
use crate::chain::{ChainSpec, EthSpec, Ethereum};
use crate::eth::PrivateKey;
use crate::metrics::Metrics;
use crate::orchestrator::today::payment_metrics::PaymentMetrics;
use crate::orchestrator::today::payments::{PaymentConfig, Payments};
use crate::orchestrator::today::redeemer::Redeemer;

/// A paid node's checked flags.
#[derive(Debug)]
pub(crate) struct PaidSetup {
    config: PaymentConfig,
    ethereum: Ethereum,
    controller: alloy::primitives::Address,
    key: Arc<PrivateKey>,
    max_gas_price: Option<alloy::primitives::U256>,
    initialize_round: bool,
    ticket_store: std::path::PathBuf,
}

fn wei(flag: &str, text: &str) -> Result<alloy::primitives::U256> {
    text.trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{flag} {text:?}: a whole number of wei"))
}

impl PaidSetup {
    /// Everything that can be wrong with the flags, before a port is bound.
    pub(crate) fn check(
        args: &PaymentArgs,
        chain: &ChainArgs,
        key: Arc<PrivateKey>,
    ) -> Result<Self> {
        let ChainSpec::Ethereum(rest) = &chain.chain else {
            anyhow::bail!(
                "--price-per-unit is paid in tickets on Livepeer's contracts: give --chain \
                 eth:URL?controller=0x… (`lpgpu chain init --livepeer` prints one)"
            );
        };
        let spec = EthSpec::parse(rest)?;
        let controller = spec.controller.with_context(|| {
            format!(
                "--price-per-unit: {} names no controller=0x…",
                spec.render()
            )
        })?;
        anyhow::ensure!(
            args.pixels_per_unit > 0,
            "--pixels-per-unit must be at least 1"
        );
        let ticket_ev = wei("--ticket-ev", &args.ticket_ev)?;
        let price = args.price_per_unit.unwrap_or(0);
        anyhow::ensure!(
            price == 0 || !ticket_ev.is_zero(),
            "--ticket-ev must be above 0 when --price-per-unit is"
        );
        let max_face_value = args
            .max_face_value
            .as_deref()
            .map(|t| wei("--max-face-value", t))
            .transpose()?;
        if let Some(max) = max_face_value {
            anyhow::ensure!(
                max >= ticket_ev,
                "--max-face-value {max} is below --ticket-ev {ticket_ev}: no ticket could be quoted"
            );
        }
        let max_gas_price = args
            .max_gas_price
            .as_deref()
            .map(|t| wei("--max-gas-price", t))
            .transpose()?;
        let ethereum = Ethereum::with_tls(spec, &chain.rpc_tls()?)?;
        Ok(Self {
            config: PaymentConfig {
                price_per_unit: price,
                pixels_per_unit: args.pixels_per_unit,
                ticket_ev,
                max_face_value,
            },
            ethereum,
            controller: alloy::primitives::Address::from(controller.0),
            key,
            max_gas_price,
            initialize_round: args.initialize_round,
            ticket_store: args.ticket_store.clone(),
        })
    }

    /// Finds the contracts, opens the ticket store, starts the background
    /// work.
    pub(crate) async fn start(self, metrics: &Metrics) -> Result<Arc<Payments>> {
        let provider = self.ethereum.signing(&self.key)?;
        let protocol = Protocol::connect(provider.clone(), self.controller)
            .await
            .context("finding Livepeer's contracts through the Controller")?;
        let payment_metrics = PaymentMetrics::register(metrics)?;
        let redeemer = Redeemer::open(
            self.ticket_store.clone(),
            provider,
            protocol.contracts.ticket_broker,
            self.max_gas_price,
            payment_metrics,
        )
        .map_err(anyhow::Error::msg)?;
        let rounds = protocol.clone();
        let payments = Payments::new(self.config, self.key.address(), protocol, redeemer.clone());
        if self.initialize_round {
            start_round_keeper(rounds);
        }
        if let Err(why) = payments.refresh().await {
            tracing::warn!(%why, "the chain could not be read yet; payments wait for it");
        }
        payments.start_refresher();
        redeemer.start();
        tracing::info!(
            price = ?payments.price_info(),
            tickets = %self.ticket_store.display(),
            pending = redeemer.pending_count(),
            "charging in PM tickets"
        );
        Ok(payments)
    }
}

/// `--initialize-round`: initializes each new round as soon as it starts.
fn start_round_keeper(protocol: Protocol) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(crate::orchestrator::today::payments::CHAIN_REFRESH);
        loop {
            every.tick().await;
            match protocol.initialize_round().await {
                Ok(true) => {
                    if let Ok(round) = protocol.round().await {
                        tracing::info!(round = round.current_round, "round initialized");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::debug!("round not initialized: {e}"),
            }
        }
    });
}
