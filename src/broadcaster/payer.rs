//! A paying broadcaster's tickets on today's wire, as go-livepeer's sender
//! makes them (`spec/bo-protocol.md`, "PM tickets", "Balances" B, "B's
//! limits"): the orchestrator's price checked against `--max-price-per-unit`
//! and its `ticket_params.recipient` against the address it names (beyond:
//! nothing in `OrchestratorInfo` is signed), the fee of each segment
//! estimated, as many tickets as the balance lacks, signed, with nonces
//! restarting at 1 for each new set of params, and the balance settled
//! from the pixels the result carries. Plain code; the broadcaster sends.

use alloy::primitives::U256;

use crate::eth::{Address, PrivateKey};
use crate::proto::{
    OrchestratorInfo, Payment, PriceInfo, TicketExpirationParams, TicketParams, TicketSenderParams,
};
use crate::protocol::pm::{Ticket, aux_data, sender, sign_ticket};

/// go-livepeer's `-maxTicketEV` (3×10¹² wei).
pub const MAX_TICKET_EV_WEI: u64 = 3_000_000_000_000;
/// go-livepeer's `-maxTotalEV` (2×10¹³ wei) per payment.
pub const MAX_TOTAL_EV_WEI: u64 = 20_000_000_000_000;

/// Who pays, and the most it pays per pixel.
#[derive(Debug, Clone)]
pub struct Payer {
    pub key: std::sync::Arc<PrivateKey>,
    /// Wei per pixel, as a fraction; None accepts any price.
    pub max_price: Option<(u64, u64)>,
}

/// One session's payment state.
#[derive(Debug, Clone)]
pub struct PayState {
    params: Option<TicketParams>,
    expiration: Option<TicketExpirationParams>,
    price: PriceInfo,
    recipient: Address,
    next_nonce: u32,
    /// Credit left with the orchestrator, in wei × 2³².
    balance: i128,
}

/// A payment sent and not yet settled.
#[derive(Debug, Clone, Copy)]
pub struct Staged {
    existing: i128,
    sent: i128,
}

fn address(bytes: &[u8]) -> Option<Address> {
    <[u8; 20]>::try_from(bytes).ok().map(Address)
}

fn uint(bytes: &[u8]) -> U256 {
    if bytes.len() > 32 {
        return U256::MAX;
    }
    let mut padded = [0u8; 32];
    padded[32 - bytes.len()..].copy_from_slice(bytes);
    U256::from_be_bytes(padded)
}

/// A price as a wei-per-pixel fraction.
fn price_of(info: &PriceInfo) -> Option<(u64, u64)> {
    let num = u64::try_from(info.price_per_unit).ok()?;
    let den = u64::try_from(info.pixels_per_unit)
        .ok()
        .filter(|d| *d > 0)?;
    Some((num, den))
}

impl PayState {
    /// The session's state from the orchestrator's first answer, or why
    /// this broadcaster will not pay it.
    pub fn from_info(info: &OrchestratorInfo, payer: &Payer) -> Result<Self, String> {
        let price = info.price_info.unwrap_or_default();
        if let Some(params) = &info.ticket_params {
            let price = price_of(&price).ok_or("the orchestrator's price is not a price")?;
            if let Some(max) = payer.max_price
                && u128::from(price.0) * u128::from(max.1) > u128::from(max.0) * u128::from(price.1)
            {
                return Err(format!(
                    "its price {}/{} wei per pixel is over --max-price-per-unit",
                    price.0, price.1
                ));
            }
            let named = address(&info.address).filter(|a| a.0 != [0; 20]);
            let recipient = address(&params.recipient).ok_or("ticket params name no recipient")?;
            if named.is_some_and(|named| named != recipient) {
                return Err(format!(
                    "its ticket params pay {recipient}, not the address it names"
                ));
            }
            check_params(params)?;
        }
        Ok(Self {
            params: info.ticket_params.clone(),
            expiration: info
                .ticket_params
                .as_ref()
                .and_then(|p| p.expiration_params.clone()),
            price,
            recipient: info
                .ticket_params
                .as_ref()
                .and_then(|p| address(&p.recipient))
                .unwrap_or(Address([0; 20])),
            next_nonce: 1,
            balance: 0,
        })
    }

    /// New params from a result's refreshed info: nonces restart at 1.
    pub fn update(&mut self, info: &OrchestratorInfo) {
        if let Some(params) = &info.ticket_params
            && check_params(params).is_ok()
            && self.params.as_ref() != Some(params)
        {
            self.expiration = params.expiration_params.clone();
            self.params = Some(params.clone());
            self.next_nonce = 1;
        }
        if let Some(price) = info.price_info {
            self.price = price;
        }
    }

    /// The `Livepeer-Payment` for a segment of `out_pixels` estimated
    /// pixels, signed by `key`; the balance is taken until [`Self::settle`].
    pub fn payment(
        &mut self,
        key: &PrivateKey,
        out_pixels: u64,
    ) -> Result<(Payment, Staged), String> {
        let sender_address = key.address();
        let Some(params) = self.params.clone() else {
            // Free: no tickets, the sender and the price.
            return Ok((
                Payment {
                    sender: sender_address.0.to_vec(),
                    expected_price: Some(self.price),
                    ..Default::default()
                },
                Staged {
                    existing: 0,
                    sent: 0,
                },
            ));
        };
        let price = price_of(&self.price).unwrap_or((0, 1));
        let face_value = uint(&params.face_value);
        let win_prob = uint(&params.win_prob);
        let ev = sender::ticket_ev(face_value, win_prob);
        let fee = sender::fee(out_pixels, price);
        let existing = std::mem::take(&mut self.balance);
        let count = if price.0 == 0 {
            0
        } else {
            sender::tickets_needed(fee, ev, existing)
        };
        let total = ev.saturating_mul(i128::from(count));
        if sender::wei(total) > i128::from(MAX_TOTAL_EV_WEI) {
            self.balance = existing;
            return Err(format!(
                "{count} tickets of EV {} wei are over the total EV limit",
                sender::wei(ev)
            ));
        }
        let expiration = self.expiration.clone().unwrap_or_default();
        let aux = aux_data(u64::try_from(expiration.creation_round).unwrap_or(0), &{
            let mut hash = [0u8; 32];
            let bytes = &expiration.creation_round_block_hash;
            let take = bytes.len().min(32);
            hash[32 - take..].copy_from_slice(&bytes[bytes.len() - take..]);
            hash
        });
        let mut rand_hash = [0u8; 32];
        let bytes = &params.recipient_rand_hash;
        let take = bytes.len().min(32);
        rand_hash[32 - take..].copy_from_slice(&bytes[bytes.len() - take..]);
        let mut tickets = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let nonce = self.next_nonce;
            self.next_nonce = self.next_nonce.saturating_add(1);
            let ticket = Ticket {
                recipient: self.recipient,
                sender: sender_address,
                face_value,
                win_prob,
                sender_nonce: u64::from(nonce),
                recipient_rand_hash: rand_hash,
                aux_data: aux.clone(),
            };
            tickets.push(TicketSenderParams {
                sender_nonce: nonce,
                sig: sign_ticket(key, &ticket.hash()).to_vec(),
            });
        }
        let payment = Payment {
            ticket_params: (count > 0).then_some(TicketParams {
                expiration_params: None,
                ..params
            }),
            sender: sender_address.0.to_vec(),
            expiration_params: (count > 0).then_some(expiration),
            ticket_sender_params: tickets,
            expected_price: Some(self.price),
        };
        Ok((
            payment,
            Staged {
                existing,
                sent: total,
            },
        ))
    }

    /// After the answer: on a result with data, the balance is what was
    /// there, plus the tickets, less the pixels at the price; on a failure
    /// before anything was sent, what was there comes back; after, nothing.
    pub fn settle(&mut self, staged: Staged, outcome: Settled) {
        match outcome {
            Settled::Paid { pixels } => {
                let price = price_of(&self.price).unwrap_or((0, 1));
                // pixels × price, scaled, exactly as the fee (less the 1.02).
                let cost = (i128::from(pixels) << sender::SCALE_BITS)
                    .saturating_mul(i128::from(price.0))
                    / i128::from(price.1.max(1));
                self.balance += staged.existing + staged.sent - cost;
            }
            Settled::NotSent => self.balance += staged.existing,
            Settled::Lost => {}
        }
    }

    /// The credit left, in whole wei.
    pub fn balance_wei(&self) -> i128 {
        sender::wei(self.balance)
    }
}

/// How a staged payment ended.
#[derive(Debug, Clone, Copy)]
pub enum Settled {
    Paid { pixels: u64 },
    NotSent,
    Lost,
}

/// go-livepeer's sender's limits on params it will pay with, but one: it
/// refuses EV ≥ face value, which leaves an orchestrator that quotes face
/// value = EV (`-maxFaceValue` = `-ticketEV`: every ticket a certain win,
/// which TicketBroker redeems) unusable; lpgpu pays such tickets and
/// refuses only EV > face value.
fn check_params(params: &TicketParams) -> Result<(), String> {
    if uint(&params.expiration_block).is_zero() {
        return Err("ticketParams expiration block is 0".into());
    }
    let face_value = uint(&params.face_value);
    let ev = sender::ticket_ev(face_value, uint(&params.win_prob));
    if ev <= 0 {
        return Ok(());
    }
    let face_scaled = sender::ticket_ev(face_value, U256::MAX);
    if ev > face_scaled {
        return Err(format!("ticket faceValue too low faceValue={face_value}"));
    }
    if sender::wei(ev) > i128::from(MAX_TICKET_EV_WEI) {
        return Err(format!(
            "ticket EV {} > max ticket EV {MAX_TICKET_EV_WEI}",
            sender::wei(ev)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::payment::{ChainView, Recipient, SenderInfo};
    use crate::protocol::pm::{face_value, win_prob};
    use crate::test_vectors::bo_vectors;

    fn key(name: &str) -> PrivateKey {
        PrivateKey::from_hex(bo_vectors()["keys"][name]["private_key"].as_str().unwrap()).unwrap()
    }

    /// An orchestrator's quote, as `OrchestratorInfo`.
    fn quote(recipient: &mut Recipient, sender: Address, view: &ChainView) -> OrchestratorInfo {
        let ev = U256::from(1_000_000_000_000u64);
        let face = face_value(ev, 1, U256::ZERO, None, Some(ev * U256::from(2u64))).unwrap();
        let price = PriceInfo {
            price_per_unit: 50_000,
            pixels_per_unit: 1,
        };
        OrchestratorInfo {
            address: recipient.address().0.to_vec(),
            ticket_params: Some(recipient.quote(
                sender,
                &price,
                face,
                win_prob(ev, face),
                U256::from(7u64),
                view,
            )),
            price_info: Some(price),
            ..Default::default()
        }
    }

    #[test]
    fn our_tickets_are_accepted_by_the_orchestrators_checks_and_the_balance_settles() {
        let o = key("orchestrator");
        let b = key("broadcaster");
        let mut recipient = Recipient::new(o.address(), [5; 32]);
        let view = ChainView {
            last_l1_block: 100,
            last_initialized_round: 2,
            round_block_hash: [3; 32],
        };
        let payer = Payer {
            key: std::sync::Arc::new(b.clone()),
            max_price: Some((100_000, 1)),
        };
        let info = quote(&mut recipient, b.address(), &view);
        let mut state = PayState::from_info(&info, &payer).unwrap();
        let pixels = 1280 * 720 * 30 * 2;
        let (payment, staged) = state.payment(&b, pixels).unwrap();
        // 1.02 × 55 296 000 px × 50 000 wei ≈ 2.8e12 wei: 3 tickets of 1e12.
        assert_eq!(payment.ticket_sender_params.len(), 3);
        let nonces: Vec<u32> = payment
            .ticket_sender_params
            .iter()
            .map(|t| t.sender_nonce)
            .collect();
        assert_eq!(nonces, [1, 2, 3]);
        let funded = Ok(SenderInfo {
            deposit: U256::from(10u64).pow(U256::from(18u64)),
            reserve: U256::from(10u64).pow(U256::from(18u64)),
            withdraw_round: 0,
            claimed_in_round: U256::ZERO,
        });
        let received = recipient.receive(&payment, true, funded.clone(), &view);
        assert_eq!(received.error, None, "{received:?}");
        assert_eq!(received.tickets_credited, 3);
        state.settle(staged, Settled::Paid { pixels: pixels / 2 });
        // 3e12 sent, half the estimate used at 50 000 wei per pixel.
        assert_eq!(state.balance_wei(), 3_000_000_000_000 - 1_382_400_000_000);
        // The next segment needs fewer tickets; nonces go on.
        let (next, _) = state.payment(&b, pixels).unwrap();
        assert_eq!(next.ticket_sender_params[0].sender_nonce, 4);
        assert_eq!(next.ticket_sender_params.len(), 2);
        assert_eq!(recipient.receive(&next, true, funded, &view).error, None);
    }

    #[test]
    fn a_price_over_the_limit_or_a_foreign_recipient_is_refused() {
        let o = key("orchestrator");
        let b = key("broadcaster");
        let mut recipient = Recipient::new(o.address(), [5; 32]);
        let view = ChainView {
            last_l1_block: 100,
            last_initialized_round: 2,
            round_block_hash: [3; 32],
        };
        let info = quote(&mut recipient, b.address(), &view);
        let cheap = Payer {
            key: std::sync::Arc::new(b.clone()),
            max_price: Some((10, 1)),
        };
        assert!(
            PayState::from_info(&info, &cheap)
                .unwrap_err()
                .contains("over --max-price-per-unit")
        );
        let payer = Payer {
            max_price: None,
            ..cheap
        };
        let mut foreign = info.clone();
        foreign.address = vec![9; 20];
        assert!(
            PayState::from_info(&foreign, &payer)
                .unwrap_err()
                .contains("not the address")
        );
        // Face value = EV (a certain win) is paid, unlike go-livepeer's
        // sender; an EV over 3e12 wei is not.
        let mut certain = info;
        certain.ticket_params.as_mut().unwrap().win_prob = vec![0xff; 32];
        assert!(PayState::from_info(&certain, &payer).is_ok());
        let mut dear = certain;
        dear.ticket_params.as_mut().unwrap().face_value =
            crate::protocol::pm::minimal_bytes(U256::from(4_000_000_000_000u64));
        assert!(
            PayState::from_info(&dear, &payer)
                .unwrap_err()
                .contains("max ticket EV")
        );
    }
}
