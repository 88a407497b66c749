//! The orchestrator's side of `Livepeer-Payment`, as plain code
//! (`spec/bo-protocol.md`, "The O's payment checks"): the ticket parameters
//! it quotes ([`Recipient::quote`]), and a payment's checks in go-livepeer's
//! order with its texts ([`Recipient::receive`]): the sender named, the
//! recipient active, the expected price; per ticket the sender's on-chain
//! record, recipient, sender and recipientRand (these abort), then the
//! signature, the nonce and the params' expiry (these let later tickets
//! run). Tickets are credited at their expected value until one fails; a
//! winning ticket is kept for redemption whatever else failed.
//!
//! Nothing is stored per quote: `recipientRand` is recomputed from what the
//! payment carries (HMAC over the seed, sender, face value, win probability,
//! expiration, price and aux data), so any field changed since the quote
//! fails the hash check. The nonce book is bounded (600 per recipientRand)
//! and forgets a recipientRand once its expiration block has passed.

use std::collections::{HashMap, HashSet};

use alloy::primitives::U256;

use super::pm::{
    RandInputs, Ratio, Ticket, U512, aux_data, expected_value, is_winning, minimal_bytes,
    recipient_rand, recipient_rand_hash, reduced_price, ticket_signer,
};
use crate::eth::Address;
use crate::proto::{Payment, PriceInfo, TicketExpirationParams, TicketParams};

/// Blocks a quote stays valid: expiration = last seen L1 block + this.
pub const PARAMS_EXPIRATION_BLOCKS: u64 = 40;
/// Nonces remembered per recipientRand (go-livepeer's `maxSenderNonces`).
pub const MAX_SENDER_NONCES: usize = 600;
/// recipientRands remembered at once: a bound go-livepeer lacks; past it the
/// oldest expiring are forgotten first.
pub const MAX_RANDS: usize = 100_000;

/// What the chain says, as the edge last read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainView {
    pub last_l1_block: u64,
    pub last_initialized_round: u64,
    /// The block hash of the last initialized round (zero if unknown).
    pub round_block_hash: [u8; 32],
}

/// A sender's funds on the TicketBroker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    pub deposit: U256,
    pub reserve: U256,
    pub withdraw_round: u64,
    /// Reserve already claimed this round (by any recipient).
    pub claimed_in_round: U256,
}

impl SenderInfo {
    /// The most one recipient may be paid from the reserve this round:
    /// `(reserve + claimed this round) ÷ active pool size`.
    pub fn max_float(&self, pool_size: u64) -> U256 {
        self.reserve
            .saturating_add(self.claimed_in_round)
            .checked_div(U256::from(pool_size.max(1)))
            .unwrap_or(U256::ZERO)
    }
}

/// Why a payment is refused: go-livepeer's texts (the `/segment` 400 body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    #[error("Could not find Sender for payment: ticket params without a sender")]
    NoSender,
    #[error("orchestrator {recipient} is inactive in round {round}, cannot process payments")]
    Inactive { recipient: Address, round: u64 },
    #[error("invalid expected price sent with payment err={0:?}")]
    BadPrice(&'static str),
    #[error("missing ticket expiration params")]
    NoExpirationParams,
    #[error("could not get sender info for {sender}: {why}")]
    SenderInfo { sender: Address, why: String },
    #[error("deposit and reserve for sender {0} is set to unlock soon")]
    UnlockSoon(Address),
    #[error("invalid ticket recipient")]
    Recipient,
    #[error("invalid ticket sender")]
    Sender,
    #[error("invalid recipientRand for ticket recipientRandHash")]
    RecipientRand,
    #[error("invalid ticket signature")]
    Signature,
    #[error("invalid ticket senderNonce: already seen sender={sender} nonce={nonce}")]
    NonceSeen { sender: Address, nonce: u32 },
    #[error("invalid ticket senderNonce: too many values sender={sender} nonce={nonce}")]
    TooManyNonces { sender: Address, nonce: u32 },
    #[error("TicketParams expired")]
    Expired,
}

impl PaymentError {
    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            PaymentError::NoSender => "no_sender",
            PaymentError::Inactive { .. } => "inactive",
            PaymentError::BadPrice(_) => "bad_price",
            PaymentError::NoExpirationParams => "no_expiration_params",
            PaymentError::SenderInfo { .. } => "sender_info",
            PaymentError::UnlockSoon(_) => "unlock_soon",
            PaymentError::Recipient => "recipient",
            PaymentError::Sender => "sender",
            PaymentError::RecipientRand => "recipient_rand",
            PaymentError::Signature => "signature",
            PaymentError::NonceSeen { .. } => "nonce_seen",
            PaymentError::TooManyNonces { .. } => "too_many_nonces",
            PaymentError::Expired => "expired",
        }
    }
}

/// A winning ticket, with what redeeming it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WinningTicket {
    pub ticket: Ticket,
    pub signature: Vec<u8>,
    pub recipient_rand: U256,
    /// Redeemable once the chain's L1 block has reached it.
    pub expiration_block: u64,
    pub creation_round: u64,
}

/// What a payment gave.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Received {
    pub sender: Option<Address>,
    /// The reduced per-pixel price the sender expects (fixed for the session
    /// at its first payment, by the caller).
    pub expected_price: Option<(u64, u64)>,
    /// Σ expected value of the tickets credited, in wei.
    pub credited: Option<Ratio>,
    pub tickets_credited: u32,
    pub tickets: u32,
    pub winning: Vec<WinningTicket>,
    /// The first failure (the request is then a 400 with its text).
    pub error: Option<PaymentError>,
}

#[derive(Debug, Default)]
struct Nonces {
    expiration_block: u64,
    seen: HashSet<u32>,
}

/// The orchestrator as a ticket recipient: its address and HMAC secret,
/// and the nonces seen.
#[derive(Debug)]
pub struct Recipient {
    address: Address,
    secret: [u8; 32],
    nonces: HashMap<[u8; 32], Nonces>,
}

fn bytes32(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let take = bytes.len().min(32);
    out[32 - take..].copy_from_slice(&bytes[bytes.len() - take..]);
    out
}

fn uint(bytes: &[u8]) -> U256 {
    // Longer than 32 bytes cannot be a uint256: read as the low 32 (the
    // recipientRand check then fails, as it would in go-livepeer).
    U256::from_be_bytes(bytes32(bytes))
}

fn address_of(bytes: &[u8]) -> Address {
    let mut out = [0u8; 20];
    let take = bytes.len().min(20);
    out[20 - take..].copy_from_slice(&bytes[bytes.len() - take..]);
    Address(out)
}

impl Recipient {
    pub fn new(address: Address, secret: [u8; 32]) -> Self {
        Self {
            address,
            secret,
            nonces: HashMap::new(),
        }
    }

    pub fn address(&self) -> Address {
        self.address
    }

    /// The expiration params a quote carries: the last initialized round and
    /// its block hash.
    fn expiration_params(view: &ChainView) -> TicketExpirationParams {
        TicketExpirationParams {
            creation_round: i64::try_from(view.last_initialized_round).unwrap_or(i64::MAX),
            creation_round_block_hash: view.round_block_hash.to_vec(),
        }
    }

    /// Ticket parameters for `sender` at `price` (wei per pixel, reduced
    /// inside), with `face_value` and `win_prob` already chosen
    /// ([`super::pm::face_value`], [`super::pm::win_prob`]) and a fresh
    /// random `seed`.
    pub fn quote(
        &self,
        sender: Address,
        price: &PriceInfo,
        face_value: U256,
        win_prob: U256,
        seed: U256,
        view: &ChainView,
    ) -> TicketParams {
        let expiration_block = view.last_l1_block.saturating_add(PARAMS_EXPIRATION_BLOCKS);
        let expiration = Self::expiration_params(view);
        let reduced = reduced_price(
            u64::try_from(price.price_per_unit).unwrap_or(0),
            u64::try_from(price.pixels_per_unit).unwrap_or(1),
        );
        let rand = recipient_rand(
            &self.secret,
            &RandInputs {
                seed,
                sender,
                face_value,
                win_prob,
                expiration_block: U256::from(expiration_block),
                price: reduced,
                aux_data: aux_data(view.last_initialized_round, &view.round_block_hash),
            },
        );
        TicketParams {
            recipient: self.address.0.to_vec(),
            face_value: minimal_bytes(face_value),
            win_prob: minimal_bytes(win_prob),
            recipient_rand_hash: recipient_rand_hash(rand).to_vec(),
            seed: minimal_bytes(seed),
            expiration_block: minimal_bytes(U256::from(expiration_block)),
            expiration_params: Some(expiration),
        }
    }

    /// Checks `payment` in go-livepeer's order. `recipient_active` is
    /// whether the payment's recipient is active this round; `sender_info`
    /// the sender's funds (or why they could not be read).
    pub fn receive(
        &mut self,
        payment: &Payment,
        recipient_active: bool,
        sender_info: Result<SenderInfo, String>,
        view: &ChainView,
    ) -> Received {
        let mut received = Received::default();
        let Some(params) = payment.ticket_params.as_ref() else {
            // No params: the price is 0 for this session.
            received.sender = (!payment.sender.is_empty()).then(|| address_of(&payment.sender));
            received.expected_price = Some((0, 1));
            return received;
        };
        let fail = |mut received: Received, error| {
            received.error = Some(error);
            received
        };
        if payment.sender.is_empty() {
            return fail(received, PaymentError::NoSender);
        }
        let sender = address_of(&payment.sender);
        received.sender = Some(sender);
        let recipient = address_of(&params.recipient);
        if !recipient_active {
            return fail(
                received,
                PaymentError::Inactive {
                    recipient,
                    round: view.last_initialized_round,
                },
            );
        }
        let price = match payment.expected_price.as_ref() {
            None => return fail(received, PaymentError::BadPrice("expected price is nil")),
            Some(p) if p.pixels_per_unit == 0 => {
                return fail(received, PaymentError::BadPrice("pixels per unit is 0"));
            }
            Some(p) if p.price_per_unit < 0 || p.pixels_per_unit < 0 => {
                return fail(received, PaymentError::BadPrice("price is negative"));
            }
            Some(p) => reduced_price(p.price_per_unit as u64, p.pixels_per_unit as u64),
        };
        received.expected_price = Some(price);
        let Some(expiration) = payment.expiration_params.as_ref() else {
            return fail(received, PaymentError::NoExpirationParams);
        };
        let creation_round = u64::try_from(expiration.creation_round).unwrap_or(0);
        let aux = aux_data(
            creation_round,
            &bytes32(&expiration.creation_round_block_hash),
        );
        let face_value = uint(&params.face_value);
        let win_prob = uint(&params.win_prob);
        let expiration_block = uint(&params.expiration_block);
        let rand = recipient_rand(
            &self.secret,
            &RandInputs {
                seed: uint(&params.seed),
                sender,
                face_value,
                win_prob,
                expiration_block,
                price,
                aux_data: aux.clone(),
            },
        );
        let rand_hash = bytes32(&params.recipient_rand_hash);
        let ev = expected_value(face_value, win_prob);
        let mut credited = Ratio::new(U512::ZERO, ev.denominator);
        let expiration_block = u64::try_from(expiration_block).unwrap_or(u64::MAX);
        for ticket_params in &payment.ticket_sender_params {
            received.tickets += 1;
            let ticket = Ticket {
                recipient,
                sender,
                face_value,
                win_prob,
                sender_nonce: u64::from(ticket_params.sender_nonce),
                recipient_rand_hash: rand_hash,
                aux_data: aux.clone(),
            };
            // The four checks that abort the whole payment.
            let info = match &sender_info {
                Ok(info) => *info,
                Err(why) => {
                    return fail(
                        received,
                        PaymentError::SenderInfo {
                            sender,
                            why: why.clone(),
                        },
                    );
                }
            };
            if info.withdraw_round != 0
                && info.withdraw_round <= view.last_initialized_round.saturating_add(1)
            {
                return fail(received, PaymentError::UnlockSoon(sender));
            }
            if recipient != self.address {
                return fail(received, PaymentError::Recipient);
            }
            if sender == Address([0; 20]) {
                return fail(received, PaymentError::Sender);
            }
            if recipient_rand_hash(rand) != rand_hash {
                return fail(received, PaymentError::RecipientRand);
            }
            let hash = ticket.hash();
            let signature = &ticket_params.sig;
            let error = if ticket_signer(&hash, signature) != Ok(sender) {
                Some(PaymentError::Signature)
            } else {
                // Drawn before the nonce and expiry checks: a win goes to
                // redemption even when those fail (the chain refuses a
                // ticket used twice).
                if is_winning(signature, rand, win_prob) {
                    received.winning.push(WinningTicket {
                        ticket: ticket.clone(),
                        signature: signature.clone(),
                        recipient_rand: rand,
                        expiration_block,
                        creation_round,
                    });
                }
                self.note_nonce(
                    rand_hash,
                    sender,
                    ticket_params.sender_nonce,
                    expiration_block,
                )
                .err()
                .or_else(|| {
                    (expiration_block <= view.last_l1_block).then_some(PaymentError::Expired)
                })
            };
            match (error, received.error.is_none()) {
                (Some(error), true) => received.error = Some(error),
                (None, true) => {
                    credited.numerator = credited.numerator.saturating_add(ev.numerator);
                    received.tickets_credited += 1;
                }
                // After a failure: nothing more is credited.
                (_, false) => {}
            }
        }
        if received.tickets_credited > 0 {
            received.credited = Some(credited);
        }
        received
    }

    fn note_nonce(
        &mut self,
        rand_hash: [u8; 32],
        sender: Address,
        nonce: u32,
        expiration_block: u64,
    ) -> Result<(), PaymentError> {
        if !self.nonces.contains_key(&rand_hash) && self.nonces.len() >= MAX_RANDS {
            // Full: forget the one expiring first.
            if let Some(oldest) = self
                .nonces
                .iter()
                .min_by_key(|(_, n)| n.expiration_block)
                .map(|(k, _)| *k)
            {
                self.nonces.remove(&oldest);
            }
        }
        let entry = self.nonces.entry(rand_hash).or_insert_with(|| Nonces {
            expiration_block,
            seen: HashSet::new(),
        });
        if entry.seen.contains(&nonce) {
            return Err(PaymentError::NonceSeen { sender, nonce });
        }
        if entry.seen.len() >= MAX_SENDER_NONCES {
            return Err(PaymentError::TooManyNonces { sender, nonce });
        }
        entry.seen.insert(nonce);
        Ok(())
    }

    /// Forgets the nonces of params that expired before `last_l1_block`.
    pub fn forget_expired(&mut self, last_l1_block: u64) {
        self.nonces
            .retain(|_, n| n.expiration_block > last_l1_block);
    }

    /// recipientRands remembered now.
    pub fn remembered(&self) -> usize {
        self.nonces.len()
    }
}

#[cfg(test)]
mod tests;
