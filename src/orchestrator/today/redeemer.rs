//! Winning tickets, from the payment that won them to TicketBroker's
//! `redeemWinningTicket`: written durably ([`Redeemer::keep`] returns once
//! the file is on disk, before the segment is answered), read back at
//! start, and redeemed in the background as go-livepeer does: only once
//! the chain's block has reached the ticket's `expiration_block`, while the
//! node is active, for creation rounds within the validity window, not
//! when `usedTickets` says it is already used, and not while the gas price
//! is over `--max-gas-price`. A redemption the contract refuses is logged
//! with the contract's reason and dropped, not retried forever.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use alloy::primitives::{Address as EthAddress, Bytes, FixedBytes, U256};
use alloy::providers::{DynProvider, Provider};
use serde::{Deserialize, Serialize};

use super::payment_metrics::PaymentMetrics;
use crate::chain::livepeer::abi;
use crate::eth::Address;
use crate::protocol::payment::{ChainView, WinningTicket};
use crate::protocol::pm::Ticket;

/// How often pending tickets are looked at.
const REDEEM_EVERY: Duration = Duration::from_secs(2);
/// Rounds a ticket stays redeemable after its creation round (the
/// deployment's `ticketValidityPeriod`).
const VALIDITY_ROUNDS: u64 = 2;

/// A winning ticket as it is written down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTicket {
    pub recipient: String,
    pub sender: String,
    pub face_value: String,
    pub win_prob: String,
    pub sender_nonce: u64,
    pub recipient_rand_hash: String,
    pub aux_data: String,
    pub signature: String,
    pub recipient_rand: String,
    pub expiration_block: u64,
    pub creation_round: u64,
}

impl StoredTicket {
    pub fn of(won: &WinningTicket) -> Self {
        let t = &won.ticket;
        Self {
            recipient: t.recipient.to_checksum(),
            sender: t.sender.to_checksum(),
            face_value: t.face_value.to_string(),
            win_prob: t.win_prob.to_string(),
            sender_nonce: t.sender_nonce,
            recipient_rand_hash: hex::encode(t.recipient_rand_hash),
            aux_data: hex::encode(&t.aux_data),
            signature: hex::encode(&won.signature),
            recipient_rand: won.recipient_rand.to_string(),
            expiration_block: won.expiration_block,
            creation_round: won.creation_round,
        }
    }

    /// The ticket back, or why the stored text is not one.
    pub fn ticket(&self) -> Result<(Ticket, Vec<u8>, U256), String> {
        let address = |text: &str| text.parse::<Address>().map_err(|e| e.to_string());
        let uint = |text: &str| text.parse::<U256>().map_err(|e| e.to_string());
        let bytes = |text: &str| hex::decode(text).map_err(|e| e.to_string());
        let rand_hash: [u8; 32] = bytes(&self.recipient_rand_hash)?
            .try_into()
            .map_err(|_| "recipientRandHash is not 32 bytes".to_string())?;
        Ok((
            Ticket {
                recipient: address(&self.recipient)?,
                sender: address(&self.sender)?,
                face_value: uint(&self.face_value)?,
                win_prob: uint(&self.win_prob)?,
                sender_nonce: self.sender_nonce,
                recipient_rand_hash: rand_hash,
                aux_data: bytes(&self.aux_data)?,
            },
            bytes(&self.signature)?,
            uint(&self.recipient_rand)?,
        ))
    }
}

#[derive(Debug, Default)]
struct View {
    chain: Option<ChainView>,
    active: bool,
}

/// The node's winning tickets and their redemption.
#[derive(Debug)]
pub struct Redeemer {
    path: PathBuf,
    pending: Mutex<Vec<StoredTicket>>,
    /// One writer of the file at a time, in order.
    writing: tokio::sync::Mutex<()>,
    view: Mutex<View>,
    provider: DynProvider,
    broker: EthAddress,
    max_gas_price: Option<U256>,
    metrics: PaymentMetrics,
}

fn write_atomically(path: &Path, tickets: &[StoredTicket]) -> std::io::Result<()> {
    use std::io::Write;
    let text = serde_json::to_vec_pretty(tickets).map_err(std::io::Error::other)?;
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(&text)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename itself is durable once the directory is synced.
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl Redeemer {
    /// Opens the store at `path` (created when missing): tickets left by a
    /// previous run are redeemed like new ones. `provider` signs the
    /// redemptions.
    pub fn open(
        path: PathBuf,
        provider: DynProvider,
        broker: EthAddress,
        max_gas_price: Option<U256>,
        metrics: PaymentMetrics,
    ) -> Result<Arc<Self>, String> {
        let pending: Vec<StoredTicket> = match std::fs::read(&path) {
            Ok(text) => serde_json::from_slice(&text)
                .map_err(|e| format!("{}: not a winning-ticket store: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        if !pending.is_empty() {
            tracing::info!(tickets = pending.len(), path = %path.display(),
                "winning tickets from a previous run will be redeemed");
        }
        metrics.pending.set(pending.len() as i64);
        Ok(Arc::new(Self {
            path,
            pending: Mutex::new(pending),
            writing: tokio::sync::Mutex::new(()),
            view: Mutex::default(),
            provider,
            broker,
            max_gas_price,
            metrics,
        }))
    }

    fn pending(&self) -> MutexGuard<'_, Vec<StoredTicket>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn view(&self) -> MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn metrics(&self) -> &PaymentMetrics {
        &self.metrics
    }

    /// The chain as the payments last read it.
    pub fn set_view(&self, chain: ChainView, active: bool) {
        let mut view = self.view();
        view.chain = Some(chain);
        view.active = active;
    }

    /// Tickets waiting for redemption.
    pub fn pending_count(&self) -> usize {
        self.pending().len()
    }

    async fn persist(&self) -> Result<(), String> {
        let _turn = self.writing.lock().await;
        let snapshot = self.pending().clone();
        self.metrics.pending.set(snapshot.len() as i64);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &snapshot))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{}: {e}", self.path.display()))
    }

    /// Writes `tickets` down; returns once they are on disk.
    pub async fn keep(&self, tickets: Vec<WinningTicket>) -> Result<(), String> {
        {
            let mut pending = self.pending();
            for won in &tickets {
                let stored = StoredTicket::of(won);
                if !pending.contains(&stored) {
                    pending.push(stored);
                }
            }
        }
        self.persist().await
    }

    /// Redeems what is due every few seconds while this lives.
    pub fn start(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(REDEEM_EVERY);
            loop {
                every.tick().await;
                let Some(redeemer) = weak.upgrade() else {
                    return;
                };
                redeemer.redeem_due().await;
            }
        });
    }

    /// One pass over the pending tickets.
    pub async fn redeem_due(&self) {
        let (chain, active) = {
            let view = self.view();
            (view.chain, view.active)
        };
        let Some(chain) = chain else { return };
        if !active {
            return;
        }
        if let Some(limit) = self.max_gas_price {
            match self.provider.get_gas_price().await {
                Ok(price) if U256::from(price) > limit => {
                    tracing::info!(%price, %limit, "gas price over --max-gas-price: redemptions wait");
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("gas price unreadable ({e}): redemptions wait");
                    return;
                }
            }
        }
        let due: Vec<StoredTicket> = self
            .pending()
            .iter()
            .filter(|t| chain.last_l1_block >= t.expiration_block)
            .cloned()
            .collect();
        for stored in due {
            let outcome = self.redeem(&stored, &chain).await;
            let done = match outcome {
                Ok(Some(outcome)) => {
                    self.metrics.tickets.with_label_values(&[outcome]).inc();
                    true
                }
                // Try again next pass (the node could not reach the chain).
                Ok(None) => false,
                Err(reason) => {
                    tracing::warn!(sender = %stored.sender, nonce = stored.sender_nonce, %reason,
                        "winning ticket not redeemed: dropped");
                    self.metrics.tickets.with_label_values(&["failed"]).inc();
                    true
                }
            };
            if done {
                self.pending().retain(|t| t != &stored);
                if let Err(e) = self.persist().await {
                    tracing::error!("the winning-ticket store could not be written: {e}");
                }
            }
        }
    }

    /// `Ok(Some(outcome))` when finished (redeemed, used), `Ok(None)` to
    /// retry later, `Err(reason)` when the contract refuses it.
    async fn redeem(
        &self,
        stored: &StoredTicket,
        chain: &ChainView,
    ) -> Result<Option<&'static str>, String> {
        let (ticket, signature, rand) = stored.ticket()?;
        if stored.creation_round + VALIDITY_ROUNDS < chain.last_initialized_round {
            return Err(format!(
                "ticket is expired (created in round {}, now {})",
                stored.creation_round, chain.last_initialized_round
            ));
        }
        let broker = abi::TicketBroker::new(self.broker, &self.provider);
        let hash = FixedBytes::from(ticket.hash());
        match broker.usedTickets(hash).call().await {
            Ok(true) => return Ok(Some("used")),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!("usedTickets unreadable ({e}); retrying");
                return Ok(None);
            }
        }
        let call = broker.redeemWinningTicket(
            abi::TicketBroker::Ticket {
                recipient: EthAddress::from(ticket.recipient.0),
                sender: EthAddress::from(ticket.sender.0),
                faceValue: ticket.face_value,
                winProb: ticket.win_prob,
                senderNonce: U256::from(ticket.sender_nonce),
                recipientRandHash: FixedBytes::from(ticket.recipient_rand_hash),
                auxData: Bytes::from(ticket.aux_data.clone()),
            },
            Bytes::from(signature),
            rand,
        );
        // A dry run first: a revert comes back with the contract's reason.
        if let Err(e) = call.call().await {
            let text = e.to_string();
            // A round not yet initialized (or a pause) passes: try again.
            let passing = ["current round is not initialized", "system is paused"];
            if text.contains("revert") && !passing.iter().any(|p| text.contains(p)) {
                return Err(text);
            }
            tracing::warn!("redemption could not be tried ({text}); retrying");
            return Ok(None);
        }
        let pending = match call.send().await {
            Ok(pending) => pending,
            Err(e) => {
                tracing::warn!("redemption not sent ({e}); retrying");
                return Ok(None);
            }
        };
        let receipt = match pending.get_receipt().await {
            Ok(receipt) => receipt,
            Err(e) => {
                tracing::warn!("redemption receipt unread ({e}); retrying");
                return Ok(None);
            }
        };
        if !receipt.status() {
            return Err(format!(
                "the transaction {} reverted",
                receipt.transaction_hash
            ));
        }
        tracing::info!(sender = %stored.sender, nonce = stored.sender_nonce, face_value = %stored.face_value,
            tx = %receipt.transaction_hash, "winning ticket redeemed");
        let face = ticket.face_value.to_string().parse::<f64>().unwrap_or(0.0);
        self.metrics
            .wei
            .with_label_values(&["redeemed"])
            .inc_by(face);
        Ok(Some("redeemed"))
    }
}
