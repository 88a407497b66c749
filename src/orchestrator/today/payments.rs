//! A paid orchestrator's edge (`--chain eth:…?controller=…` with
//! `--price-per-unit`): ticket parameters and the price in every
//! `OrchestratorInfo`, each `Livepeer-Payment` checked by
//! [`crate::protocol::payment`] against what the chain says (cached), the
//! balance per sender and session (credited at tickets' expected value,
//! debited by pixels at this node's own price), and winning tickets handed
//! to the [`super::redeemer::Redeemer`], written down before the segment is
//! answered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use alloy::primitives::{Address as EthAddress, U256};
use alloy::providers::Provider;

use super::redeemer::Redeemer;
use crate::chain::livepeer::abi;
use crate::chain::operator::Protocol;
use crate::eth::Address;
use crate::proto::{Payment, PriceInfo, TicketParams};
use crate::protocol::payment::{ChainView, PaymentError, Recipient, SenderInfo};
use crate::protocol::pm::{Ratio, U512, face_value, reduced_price, win_prob};

/// How often the chain's block, round and activity are read.
pub const CHAIN_REFRESH: Duration = Duration::from_secs(2);
/// How long a sender's funds are trusted once read.
const SENDER_CACHE: Duration = Duration::from_secs(5);
/// Senders whose funds are cached at once.
const MAX_SENDERS: usize = 10_000;
/// A balance untouched this long is dropped (go-livepeer: 10 min).
const BALANCE_IDLE: Duration = Duration::from_secs(600);
/// Balances kept at once.
const MAX_BALANCES: usize = 100_000;
/// Gas a redemption takes on Arbitrum (go-livepeer's `redeemGas`).
pub const REDEEM_GAS: u64 = 1_200_000;

/// The flags of a paid orchestrator.
#[derive(Debug, Clone)]
pub struct PaymentConfig {
    /// Wei per `pixels_per_unit` pixels.
    pub price_per_unit: u64,
    pub pixels_per_unit: u64,
    /// The expected value asked of each ticket (`-ticketEV`).
    pub ticket_ev: U256,
    /// The largest face value quoted (`-maxFaceValue`).
    pub max_face_value: Option<U256>,
}

/// Why a payment is refused at `/segment`: check 12 (the payment's error
/// text) or 13.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentRefusal {
    #[error("{0}")]
    Payment(PaymentError),
    #[error("Insufficient balance")]
    InsufficientBalance,
    /// The chain could not be read at all (no view yet).
    #[error("{0}")]
    Chain(String),
}

impl PaymentRefusal {
    pub fn label(&self) -> &'static str {
        match self {
            PaymentRefusal::Payment(e) => e.label(),
            PaymentRefusal::InsufficientBalance => "insufficient_balance",
            PaymentRefusal::Chain(_) => "chain",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Balance {
    /// Σ credited expected value × (2²⁵⁶−1).
    credit: U512,
    /// Σ pixels × price numerator (in wei × price denominator).
    debit: U512,
    touched: Instant,
}

#[derive(Debug, Default)]
struct State {
    view: Option<ChainView>,
    active: bool,
    gas_price: U256,
    pool_size: u64,
    senders: HashMap<Address, (Instant, SenderInfo)>,
    balances: HashMap<(Address, String), Balance>,
}

/// The paid side of a node's today's-wire orchestrator.
#[derive(Debug)]
pub struct Payments {
    config: PaymentConfig,
    price: (u64, u64),
    recipient: Mutex<Recipient>,
    protocol: Protocol,
    state: Mutex<State>,
    redeemer: Arc<Redeemer>,
}

fn eth(address: Address) -> EthAddress {
    EthAddress::from(address.0)
}

impl Payments {
    /// `protocol` reads the chain; `redeemer` keeps and redeems the wins.
    pub fn new(
        config: PaymentConfig,
        address: Address,
        protocol: Protocol,
        redeemer: Arc<Redeemer>,
    ) -> Arc<Self> {
        let mut secret = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
        let price = reduced_price(config.price_per_unit, config.pixels_per_unit.max(1));
        Arc::new(Self {
            config,
            price,
            recipient: Mutex::new(Recipient::new(address, secret)),
            protocol,
            state: Mutex::default(),
            redeemer,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn recipient(&self) -> MutexGuard<'_, Recipient> {
        self.recipient.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The price quoted, as the wire carries it (the reduced fraction).
    pub fn price_info(&self) -> PriceInfo {
        PriceInfo {
            price_per_unit: i64::try_from(self.price.0).unwrap_or(i64::MAX),
            pixels_per_unit: i64::try_from(self.price.1).unwrap_or(i64::MAX),
        }
    }

    pub fn is_free(&self) -> bool {
        self.price.0 == 0
    }

    /// Reads the chain now: block, last initialized round and its hash,
    /// whether this node is active, the gas price.
    pub async fn refresh(&self) -> Result<ChainView, String> {
        let provider = self.protocol.provider();
        let block = provider
            .get_block_number()
            .await
            .map_err(|e| format!("block number: {e}"))?;
        let rounds = abi::RoundsManager::new(self.protocol.contracts.rounds_manager, provider);
        let round = rounds
            .lastInitializedRound()
            .call()
            .await
            .map_err(|e| format!("lastInitializedRound: {e}"))?;
        let hash = rounds
            .blockHashForRound(round)
            .call()
            .await
            .map_err(|e| format!("blockHashForRound: {e}"))?;
        let me = eth(self.recipient().address());
        let active = abi::BondingManager::new(self.protocol.contracts.bonding_manager, provider)
            .isActiveTranscoder(me)
            .call()
            .await
            .map_err(|e| format!("isActiveTranscoder: {e}"))?;
        let gas_price = provider
            .get_gas_price()
            .await
            .map_err(|e| format!("gas price: {e}"))?;
        let pool_size = abi::BondingManager::new(self.protocol.contracts.bonding_manager, provider)
            .getTranscoderPoolSize()
            .call()
            .await
            .map_err(|e| format!("getTranscoderPoolSize: {e}"))?;
        let view = ChainView {
            last_l1_block: block,
            last_initialized_round: u64::try_from(round).unwrap_or(u64::MAX),
            round_block_hash: hash.0,
        };
        let mut state = self.state();
        state.view = Some(view);
        state.active = active;
        state.gas_price = U256::from(gas_price);
        state.pool_size = u64::try_from(pool_size).unwrap_or(u64::MAX);
        let now = Instant::now();
        let before = state.balances.len();
        state
            .balances
            .retain(|_, b| now.duration_since(b.touched) < BALANCE_IDLE);
        if state.balances.len() != before {
            // Idle sessions dropped: the senders' gauges start again.
            self.redeemer.metrics().balance.reset();
            let senders: std::collections::BTreeSet<Address> =
                state.balances.keys().map(|(sender, _)| *sender).collect();
            for sender in senders {
                self.publish_balance(&state, sender);
            }
        }
        drop(state);
        self.recipient().forget_expired(block);
        self.redeemer.set_view(view, active);
        Ok(view)
    }

    /// Refreshes the chain view every [`CHAIN_REFRESH`] while this lives.
    pub fn start_refresher(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(CHAIN_REFRESH);
            let mut failing = false;
            loop {
                every.tick().await;
                let Some(payments) = weak.upgrade() else {
                    return;
                };
                match payments.refresh().await {
                    Ok(_) if failing => {
                        tracing::info!("the chain answers again");
                        failing = false;
                    }
                    Ok(_) => {}
                    Err(why) if !failing => {
                        tracing::warn!(%why, "the chain could not be read; quoting from the last view");
                        failing = true;
                    }
                    Err(_) => {}
                }
            }
        });
    }

    /// Ticket parameters for `sender` (check 11, and every
    /// `OrchestratorInfo`): the face value capped by the sender's max float
    /// and `--max-face-value`; `Ok(None)` when the price is 0. Refused in
    /// go-livepeer's words when the sender's reserve cannot cover a ticket.
    pub async fn quote_for(&self, sender: Address) -> Result<Option<TicketParams>, String> {
        if self.is_free() {
            return Ok(None);
        }
        let cached = self.state().view;
        let view = match cached {
            Some(view) => view,
            None => self.refresh().await?,
        };
        let info = self
            .sender_info(sender)
            .await
            .map_err(|why| format!("could not get sender info for {sender}: {why}"))?;
        let (gas_price, pool_size) = {
            let state = self.state();
            (state.gas_price, state.pool_size)
        };
        let ev = self.config.ticket_ev;
        let face = face_value(
            ev,
            REDEEM_GAS,
            gas_price,
            Some(info.max_float(pool_size)),
            self.config.max_face_value,
        )
        .ok_or_else(|| "insufficient sender reserve".to_string())?;
        let prob = win_prob(ev, face);
        let seed = U256::from_be_bytes(rand::random::<[u8; 32]>());
        Ok(Some(self.recipient().quote(
            sender,
            &self.price_info(),
            face,
            prob,
            seed,
            &view,
        )))
    }

    async fn sender_info(&self, sender: Address) -> Result<SenderInfo, String> {
        if let Some((at, info)) = self.state().senders.get(&sender)
            && at.elapsed() < SENDER_CACHE
        {
            return Ok(*info);
        }
        let broker = abi::TicketBroker::new(
            self.protocol.contracts.ticket_broker,
            self.protocol.provider(),
        );
        let info = broker
            .getSenderInfo(eth(sender))
            .call()
            .await
            .map_err(|e| e.to_string())?;
        let info = SenderInfo {
            deposit: info.deposit,
            reserve: info.fundsRemaining,
            withdraw_round: u64::try_from(info.withdrawRound).unwrap_or(u64::MAX),
            claimed_in_round: info.claimedInCurrentRound,
        };
        let mut state = self.state();
        if state.senders.len() >= MAX_SENDERS {
            state.senders.clear();
        }
        state.senders.insert(sender, (Instant::now(), info));
        Ok(info)
    }

    /// Checks 12 and 13 for a segment of `session`: the payment credited,
    /// its wins written down for redemption, and a balance of at least one
    /// ticket's expected value when this node charges. The sender, when
    /// the payment names one.
    pub async fn process(
        self: &Arc<Self>,
        payment: &Payment,
        session: &str,
    ) -> Result<Option<Address>, PaymentRefusal> {
        let (view, active) = {
            let state = self.state();
            (state.view, state.active)
        };
        let view = match view {
            Some(view) => view,
            None => self.refresh().await.map_err(|why| {
                PaymentRefusal::Chain(format!("the chain could not be read: {why}"))
            })?,
        };
        let sender = (payment.sender.len() == 20).then(|| {
            let mut bytes = [0u8; 20];
            bytes.copy_from_slice(&payment.sender);
            Address(bytes)
        });
        let info = match (sender, payment.ticket_params.is_some()) {
            (Some(sender), true) => self.sender_info(sender).await,
            _ => Err("no sender".into()),
        };
        let recipient_active = payment.ticket_params.as_ref().is_some_and(|p| {
            p.recipient.as_slice() == self.recipient().address().0.as_slice() && active
        });
        // Each ticket's hash, signature recovery and HMAC: CPU work, off
        // the async executor.
        let payments = self.clone();
        let owned = payment.clone();
        let received = tokio::task::spawn_blocking(move || {
            payments
                .recipient()
                .receive(&owned, recipient_active, info, &view)
        })
        .await
        .map_err(|e| PaymentRefusal::Chain(format!("checking the payment: {e}")))?;
        self.redeemer
            .metrics()
            .tickets
            .with_label_values(&["received"])
            .inc_by(u64::from(received.tickets));
        self.redeemer
            .metrics()
            .tickets
            .with_label_values(&["winning"])
            .inc_by(received.winning.len() as u64);
        // Wins are written down before anything is answered.
        if !received.winning.is_empty() {
            self.redeemer
                .keep(received.winning.clone())
                .await
                .map_err(|why| PaymentRefusal::Chain(format!("keeping winning tickets: {why}")))?;
        }
        if let (Some(sender), Some(credit)) = (received.sender, received.credited) {
            self.credit(sender, session, credit);
            let ev_wei = credit.floor();
            self.redeemer
                .metrics()
                .wei
                .with_label_values(&["received"])
                .inc_by(u64::try_from(ev_wei).unwrap_or(u64::MAX) as f64);
        }
        if let Some(error) = received.error {
            self.redeemer
                .metrics()
                .errors
                .with_label_values(&[error.label()])
                .inc();
            tracing::info!(session, %error, "payment refused");
            return Err(PaymentRefusal::Payment(error));
        }
        if !self.is_free() {
            let enough = received
                .sender
                .is_some_and(|sender| self.has_ticket_ev(sender, session));
            if !enough {
                self.redeemer
                    .metrics()
                    .errors
                    .with_label_values(&["insufficient_balance"])
                    .inc();
                return Err(PaymentRefusal::InsufficientBalance);
            }
        }
        Ok(received.sender)
    }

    fn credit(&self, sender: Address, session: &str, credit: Ratio) {
        let mut state = self.state();
        if state.balances.len() >= MAX_BALANCES
            && !state.balances.contains_key(&(sender, session.to_string()))
        {
            // Full: the least recently used goes.
            if let Some(oldest) = state
                .balances
                .iter()
                .min_by_key(|(_, b)| b.touched)
                .map(|(k, _)| k.clone())
            {
                state.balances.remove(&oldest);
            }
        }
        let balance = state
            .balances
            .entry((sender, session.to_string()))
            .or_insert(Balance {
                credit: U512::ZERO,
                debit: U512::ZERO,
                touched: Instant::now(),
            });
        balance.credit = balance.credit.saturating_add(credit.numerator);
        balance.touched = Instant::now();
        self.publish_balance(&state, sender);
    }

    /// Whether the balance is at least one ticket's expected value.
    fn has_ticket_ev(&self, sender: Address, session: &str) -> bool {
        let state = self.state();
        let Some(balance) = state.balances.get(&(sender, session.to_string())) else {
            return false;
        };
        // credit / D − debit / den ≥ EV  ⇔  credit × den ≥ (EV × den + debit) × D
        let d = U512::from(U256::MAX);
        let den = U512::from(self.price.1.max(1));
        let ev = U512::from(self.config.ticket_ev);
        balance.credit.saturating_mul(den)
            >= ev
                .saturating_mul(den)
                .saturating_add(balance.debit)
                .saturating_mul(d)
    }

    /// Publishes `sender`'s credit over its sessions (wei, signed).
    fn publish_balance(&self, state: &State, sender: Address) {
        let d = U512::from(U256::MAX);
        let den = U512::from(self.price.1.max(1));
        let (mut credit, mut debit) = (0f64, 0f64);
        for ((who, _), balance) in &state.balances {
            if *who == sender {
                credit += u128::try_from(balance.credit / d).unwrap_or(u128::MAX) as f64;
                debit += u128::try_from(balance.debit / den).unwrap_or(u128::MAX) as f64;
            }
        }
        self.redeemer
            .metrics()
            .balance
            .with_label_values(&[&sender.to_checksum()])
            .set(credit - debit);
    }

    /// The wei a balance holds, rounded down (negative as 0), for status.
    pub fn balance_wei(&self, sender: Address, session: &str) -> Option<U512> {
        let state = self.state();
        let balance = state.balances.get(&(sender, session.to_string()))?;
        let d = U512::from(U256::MAX);
        let den = U512::from(self.price.1.max(1));
        let credit = balance.credit / d;
        let debit = balance.debit / den;
        Some(credit.saturating_sub(debit))
    }

    /// Debits `pixels` at this node's own price (beyond go-livepeer, which
    /// debits at the price the broadcaster states).
    pub fn debit(&self, sender: Address, session: &str, pixels: u64) {
        if self.is_free() {
            return;
        }
        let mut state = self.state();
        if let Some(balance) = state.balances.get_mut(&(sender, session.to_string())) {
            balance.debit = balance
                .debit
                .saturating_add(U512::from(pixels).saturating_mul(U512::from(self.price.0)));
            balance.touched = Instant::now();
        }
        self.publish_balance(&state, sender);
        self.redeemer
            .metrics()
            .wei
            .with_label_values(&["debited"])
            .inc_by(pixels as f64 * self.price.0 as f64 / self.price.1.max(1) as f64);
    }
}
