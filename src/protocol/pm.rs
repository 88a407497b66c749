//! Probabilistic micropayment tickets as plain code (`spec/bo-protocol.md`,
//! "PM tickets"): the ticket hash TicketBroker's `getTicketHash` computes,
//! the sender's `SignHash32` signature and its strict check, the win check,
//! the orchestrator's `recipientRand` (HMAC-SHA256 of what a payment
//! carries) and its hash, and the ticket parameters' arithmetic (face value,
//! win probability, expected value). Reproduces `bo-vectors.json` byte for
//! byte; Livepeer's own TicketBroker judges the hashes on anvil.

pub use alloy::primitives::U256;
use hmac::{Hmac, Mac};

use crate::eth::{Address, PrivateKey, Signature, SignatureError, keccak256};

/// A ticket as TicketBroker hashes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub recipient: Address,
    pub sender: Address,
    pub face_value: U256,
    pub win_prob: U256,
    pub sender_nonce: u64,
    pub recipient_rand_hash: [u8; 32],
    /// `LeftPad32(creationRound) ‖ creationRoundBlockHash`, or empty.
    pub aux_data: Vec<u8>,
}

impl Ticket {
    /// `keccak256(abi.encodePacked(recipient, sender, faceValue, winProb,
    /// senderNonce, recipientRandHash, auxData))`.
    pub fn hash(&self) -> [u8; 32] {
        let mut packed = Vec::with_capacity(20 + 20 + 32 * 4 + self.aux_data.len());
        packed.extend_from_slice(&self.recipient.0);
        packed.extend_from_slice(&self.sender.0);
        packed.extend_from_slice(&self.face_value.to_be_bytes::<32>());
        packed.extend_from_slice(&self.win_prob.to_be_bytes::<32>());
        packed.extend_from_slice(&U256::from(self.sender_nonce).to_be_bytes::<32>());
        packed.extend_from_slice(&self.recipient_rand_hash);
        packed.extend_from_slice(&self.aux_data);
        keccak256(&packed)
    }
}

/// The digest `SignHash32(h)` signs: `keccak256("\x19Ethereum Signed
/// Message:\n32" ‖ h)`.
pub fn hash32_digest(hash: &[u8; 32]) -> [u8; 32] {
    let mut prefixed = Vec::with_capacity(28 + 32);
    prefixed.extend_from_slice(b"\x19Ethereum Signed Message:\n32");
    prefixed.extend_from_slice(hash);
    keccak256(&prefixed)
}

/// The sender's signature of a ticket hash.
pub fn sign_ticket(key: &PrivateKey, hash: &[u8; 32]) -> Signature {
    key.sign_digest(&hash32_digest(hash))
}

/// Who signed a ticket hash, as go-livepeer and TicketBroker check it: 65
/// bytes, low S, and v ∈ {27, 28} (v ∈ {0, 1} is refused).
pub fn ticket_signer(hash: &[u8; 32], signature: &[u8]) -> Result<Address, SignatureError> {
    if signature.len() == 65 && !matches!(signature[64], 27 | 28) {
        return Err(SignatureError::BadRecoveryByte(signature[64]));
    }
    Signature::recover_digest(&hash32_digest(hash), signature)
}

/// `uint256(keccak256(sig ‖ uint256 recipientRand)) < winProb`, strictly.
pub fn is_winning(signature: &[u8], recipient_rand: U256, win_prob: U256) -> bool {
    win_check_value(signature, recipient_rand) < win_prob
}

/// The number a ticket's win is drawn by.
pub fn win_check_value(signature: &[u8], recipient_rand: U256) -> U256 {
    let mut preimage = Vec::with_capacity(signature.len() + 32);
    preimage.extend_from_slice(signature);
    preimage.extend_from_slice(&recipient_rand.to_be_bytes::<32>());
    U256::from_be_bytes(keccak256(&preimage))
}

/// `keccak256(LeftPad32(recipientRand))`.
pub fn recipient_rand_hash(recipient_rand: U256) -> [u8; 32] {
    keccak256(recipient_rand.to_be_bytes::<32>())
}

/// An integer as the wire and go-livepeer's HMAC carry it: big-endian,
/// minimal (zero is empty).
pub fn minimal_bytes(value: U256) -> Vec<u8> {
    let bytes = value.to_be_bytes::<32>();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(32);
    bytes[first..].to_vec()
}

/// `auxData = LeftPad32(creationRound) ‖ creationRoundBlockHash`; empty when
/// both are zero.
pub fn aux_data(creation_round: u64, block_hash: &[u8; 32]) -> Vec<u8> {
    if creation_round == 0 && block_hash.iter().all(|b| *b == 0) {
        return Vec::new();
    }
    let mut data = U256::from(creation_round).to_be_bytes::<32>().to_vec();
    data.extend_from_slice(block_hash);
    data
}

/// A price as a reduced fraction of wei per pixel.
pub fn reduced_price(price_per_unit: u64, pixels_per_unit: u64) -> (u64, u64) {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    let divisor = gcd(price_per_unit, pixels_per_unit).max(1);
    (price_per_unit / divisor, pixels_per_unit / divisor)
}

/// What the orchestrator's `recipientRand` is drawn from: everything a
/// payment carries back, so a changed field fails the hash check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RandInputs {
    pub seed: U256,
    pub sender: Address,
    pub face_value: U256,
    pub win_prob: U256,
    pub expiration_block: U256,
    /// The reduced per-pixel price.
    pub price: (u64, u64),
    pub aux_data: Vec<u8>,
}

/// `HMAC-SHA256(secret, seed ‖ sender ‖ faceValue ‖ winProb ‖
/// expirationBlock ‖ price.num ‖ price.den ‖ auxData)` read as a uint256,
/// integers minimal big-endian.
pub fn recipient_rand(secret: &[u8; 32], inputs: &RandInputs) -> U256 {
    #[allow(clippy::expect_used, reason = "HMAC takes a key of any length")]
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(&minimal_bytes(inputs.seed));
    mac.update(&inputs.sender.0);
    mac.update(&minimal_bytes(inputs.face_value));
    mac.update(&minimal_bytes(inputs.win_prob));
    mac.update(&minimal_bytes(inputs.expiration_block));
    mac.update(&minimal_bytes(U256::from(inputs.price.0)));
    mac.update(&minimal_bytes(U256::from(inputs.price.1)));
    mac.update(&inputs.aux_data);
    U256::from_be_bytes::<32>(mac.finalize().into_bytes().into())
}

/// The face value the orchestrator asks: `txCost × 100` (`txCost = redeemGas
/// × gasPrice`), or `EV × 100` when that is below EV; capped at
/// `max_float` and `max_face_value`; 0 at EV 0. `None` when the cap leaves
/// it below EV (go-livepeer: `insufficient sender reserve`).
pub fn face_value(
    ev: U256,
    redeem_gas: u64,
    gas_price: U256,
    max_float: Option<U256>,
    max_face_value: Option<U256>,
) -> Option<U256> {
    if ev.is_zero() {
        return Some(U256::ZERO);
    }
    let hundred = U256::from(100u64);
    let tx_cost = U256::from(redeem_gas).saturating_mul(gas_price);
    let mut face = tx_cost.saturating_mul(hundred);
    if face < ev {
        face = ev.saturating_mul(hundred);
    }
    for cap in [max_float, max_face_value].into_iter().flatten() {
        face = face.min(cap);
    }
    (face >= ev).then_some(face)
}

/// `winProb`: 0 at face value 0, 2²⁵⁶−1 when face value = EV, else
/// `EV × (⌊(2²⁵⁶−1) ÷ faceValue⌋ + 1)` (`EV × q` when exact).
pub fn win_prob(ev: U256, face_value: U256) -> U256 {
    if face_value.is_zero() {
        return U256::ZERO;
    }
    if face_value == ev {
        return U256::MAX;
    }
    let (quotient, remainder) = U256::MAX.div_rem(face_value);
    let q = if remainder.is_zero() {
        quotient
    } else {
        quotient + U256::from(1u64)
    };
    ev.saturating_mul(q)
}

/// A ticket's expected value, `faceValue × winProb ÷ (2²⁵⁶−1)`, as an exact
/// fraction `(numerator, denominator)` reduced by nothing: callers compare
/// and add fractions.
pub fn expected_value(face_value: U256, win_prob: U256) -> Ratio {
    Ratio::new(
        widen(face_value).saturating_mul(widen(win_prob)),
        widen(U256::MAX),
    )
}

/// 512-bit unsigned integers, wide enough for a face value × win probability.
pub type U512 = alloy::primitives::ruint::Uint<512, 8>;

fn widen(value: U256) -> U512 {
    U512::from(value)
}

/// A non-negative rational in wei, for balances and expected values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio {
    pub numerator: U512,
    pub denominator: U512,
}

impl Ratio {
    pub fn new(numerator: U512, denominator: U512) -> Self {
        Self {
            numerator,
            denominator: denominator.max(U512::from(1u64)),
        }
    }

    /// The whole wei, rounded down.
    pub fn floor(&self) -> U512 {
        self.numerator / self.denominator
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> &'static serde_json::Value {
        crate::test_vectors::bo_vectors()
    }

    fn uint(value: &serde_json::Value) -> U256 {
        match value {
            serde_json::Value::String(text) if text.starts_with("0x") => {
                U256::from_str_radix(&text[2..], 16).unwrap()
            }
            serde_json::Value::String(text) => text.parse().unwrap(),
            number => U256::from(number.as_u64().unwrap()),
        }
    }

    fn bytes(value: &serde_json::Value) -> Vec<u8> {
        hex::decode(value.as_str().unwrap().trim_start_matches("0x")).unwrap()
    }

    fn address(value: &serde_json::Value) -> Address {
        value.as_str().unwrap().parse().unwrap()
    }

    fn ticket_of(t: &serde_json::Value) -> Ticket {
        Ticket {
            recipient: address(&t["recipient"]),
            sender: address(&t["sender"]),
            face_value: uint(&t["faceValue"]),
            win_prob: uint(&t["winProb"]),
            sender_nonce: t["senderNonce"].as_u64().unwrap(),
            recipient_rand_hash: bytes(&t["recipientRandHash"]).try_into().unwrap(),
            aux_data: bytes(&t["auxData"]),
        }
    }

    #[test]
    fn tickets_hash_sign_and_win_as_the_vectors() {
        let v = vectors();
        let key = PrivateKey::from_hex(v["keys"]["broadcaster"]["private_key"].as_str().unwrap())
            .unwrap();
        for case in v["tickets"]["tickets"].as_array().unwrap() {
            let label = case["label"].as_str().unwrap();
            let ticket = ticket_of(&case["ticket"]);
            let hash = ticket.hash();
            assert_eq!(hash.to_vec(), bytes(&case["ticket_hash"]), "{label}");
            assert_eq!(
                hash32_digest(&hash).to_vec(),
                bytes(&case["eip191_digest"]),
                "{label}"
            );
            let signature = sign_ticket(&key, &hash);
            assert_eq!(signature.to_vec(), bytes(&case["sender_sig"]), "{label}");
            assert_eq!(ticket_signer(&hash, &signature.to_vec()), Ok(ticket.sender));
            let rand = uint(&case["recipientRand"]);
            assert_eq!(
                recipient_rand_hash(rand),
                ticket.recipient_rand_hash,
                "{label}"
            );
            assert_eq!(
                win_check_value(&signature.to_vec(), rand),
                uint(&case["win_check_value"]),
                "{label}"
            );
            assert_eq!(
                is_winning(&signature.to_vec(), rand, ticket.win_prob),
                case["wins"].as_bool().unwrap(),
                "{label}"
            );
        }
        // Strictly below: at the check value itself the ticket loses.
        let first = &v["tickets"]["tickets"][0];
        let check = uint(&first["win_check_value"]);
        let sig = bytes(&first["sender_sig"]);
        let rand = uint(&first["recipientRand"]);
        assert!(!is_winning(&sig, rand, check));
        assert!(is_winning(&sig, rand, check + U256::from(1u64)));
    }

    #[test]
    fn a_signature_with_v_0_or_1_or_by_another_key_is_refused() {
        let v = vectors();
        let case = &v["tickets"]["tickets"][0];
        let hash: [u8; 32] = bytes(&case["ticket_hash"]).try_into().unwrap();
        let mut sig = bytes(&case["sender_sig"]);
        sig[64] -= 27;
        assert!(matches!(
            ticket_signer(&hash, &sig),
            Err(SignatureError::BadRecoveryByte(_))
        ));
        assert!(ticket_signer(&hash, &sig[..64]).is_err());
        let other =
            PrivateKey::from_hex(v["keys"]["orchestrator"]["private_key"].as_str().unwrap())
                .unwrap();
        assert_eq!(
            ticket_signer(&hash, &sign_ticket(&other, &hash).to_vec()),
            Ok(other.address())
        );
    }

    #[test]
    fn recipient_rand_is_the_vectors_hmac() {
        let v = vectors();
        let r = &v["recipient_rand"];
        let i = &r["inputs"];
        let secret: [u8; 32] = bytes(&r["secret"]).try_into().unwrap();
        let price = reduced_price(
            i["PriceInfo"]["pricePerUnit"].as_u64().unwrap(),
            i["PriceInfo"]["pixelsPerUnit"].as_u64().unwrap(),
        );
        assert_eq!(price, (6, 5));
        let block_hash: [u8; 32] = bytes(&i["creationRoundBlockHash"]).try_into().unwrap();
        let aux = aux_data(i["creationRound"].as_u64().unwrap(), &block_hash);
        assert_eq!(aux, bytes(&r["auxData"]));
        let inputs = RandInputs {
            seed: uint(&i["seed"]),
            sender: address(&i["sender"]),
            face_value: uint(&i["faceValue"]),
            win_prob: uint(&i["winProb"]),
            expiration_block: uint(&i["expirationBlock"]),
            price,
            aux_data: aux,
        };
        let rand = recipient_rand(&secret, &inputs);
        assert_eq!(rand, uint(&r["recipientRand"]));
        assert_eq!(
            recipient_rand_hash(rand).to_vec(),
            bytes(&r["recipient_rand_hash"])
        );
        assert!(aux_data(0, &[0; 32]).is_empty());
    }

    #[test]
    fn face_value_and_win_prob_follow_go_livepeers_arithmetic() {
        let v = vectors();
        let m = &v["o_ticket_param_math"];
        let ev = uint(&m["ticketEV_config"]);
        let face = face_value(
            ev,
            m["redeemGas"].as_u64().unwrap(),
            uint(&m["gasPrice"]),
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            face,
            uint(&m["faceValue (before maxFloat / maxFaceValue caps)"])
        );
        let prob = win_prob(ev, face);
        assert_eq!(prob, uint(&m["winProb"]));
        let value = expected_value(face, prob);
        let exact = &m["ticket_EV_exact"];
        let num = U512::from_str_radix(exact["num"].as_str().unwrap(), 10).unwrap();
        let den = U512::from_str_radix(exact["den"].as_str().unwrap(), 10).unwrap();
        assert_eq!(value.numerator * den, num * value.denominator);
        assert_eq!(value.floor(), U512::from(ev));
        // Face value = EV: certain win; caps; EV 0.
        assert_eq!(win_prob(ev, ev), U256::MAX);
        assert_eq!(
            face_value(ev, 0, U256::ZERO, None, None),
            Some(ev * U256::from(100u64))
        );
        assert_eq!(
            face_value(ev, 1_200_000, U256::from(10_000_000u64), None, Some(ev)),
            Some(ev)
        );
        assert_eq!(
            face_value(
                ev,
                1_200_000,
                U256::from(10_000_000u64),
                Some(ev - U256::from(1u64)),
                None
            ),
            None
        );
        assert_eq!(
            face_value(U256::ZERO, 1, U256::from(1u64), None, None),
            Some(U256::ZERO)
        );
        assert_eq!(win_prob(ev, U256::ZERO), U256::ZERO);
    }
}

/// The broadcaster's side: what a segment is estimated to cost and how many
/// tickets pay for it (`spec/bo-protocol.md`, "Balances", B), in wei scaled
/// by 2³² (fractions of a wei kept, exact enough for a running balance).
pub mod sender {
    use super::{U256, U512};

    /// 2³² units per wei.
    pub const SCALE_BITS: u32 = 32;
    /// go-livepeer's `pixelEstimateMultiplier` 1.02, as the binary double
    /// it is: 2296835809958953 / 2251799813685248.
    const MULTIPLIER: (u64, u64) = (2_296_835_809_958_953, 2_251_799_813_685_248);

    /// `Σ w × h × ⌈fps⌉ × ⌈duration s⌉` over the renditions (fps 60 when the
    /// rendition keeps the source's).
    pub fn out_pixels(renditions: &[(u32, u32, Option<f64>)], duration_seconds: f64) -> u64 {
        let seconds = duration_seconds.max(0.0).ceil() as u64;
        renditions
            .iter()
            .map(|&(w, h, fps)| {
                let fps = fps.map_or(60, |f| f.max(0.0).ceil() as u64);
                u64::from(w) * u64::from(h) * fps * seconds
            })
            .sum()
    }

    fn to_scaled(value: U512) -> i128 {
        i128::try_from(value).unwrap_or(i128::MAX)
    }

    /// `outPixels × 1.02 × price`, scaled.
    pub fn fee(out_pixels: u64, price: (u64, u64)) -> i128 {
        let numerator = U512::from(out_pixels)
            * U512::from(MULTIPLIER.0)
            * U512::from(price.0)
            * (U512::from(1u64) << SCALE_BITS as usize);
        let denominator = U512::from(MULTIPLIER.1) * U512::from(price.1.max(1));
        to_scaled(numerator / denominator)
    }

    /// A ticket's expected value, scaled.
    pub fn ticket_ev(face_value: U256, win_prob: U256) -> i128 {
        let numerator = U512::from(face_value)
            * U512::from(win_prob)
            * (U512::from(1u64) << SCALE_BITS as usize);
        to_scaled(numerator / U512::from(U256::MAX))
    }

    /// Tickets to send so that `existing` plus their value reaches
    /// `max(fee, ev)`: `⌈(minCredit − existing) ÷ EV⌉`, or 0.
    pub fn tickets_needed(fee: i128, ev: i128, existing: i128) -> u32 {
        let min_credit = fee.max(ev);
        if existing >= min_credit || ev <= 0 {
            return 0;
        }
        let short = min_credit - existing;
        u32::try_from((short + ev - 1) / ev).unwrap_or(u32::MAX)
    }

    /// Whole wei of a scaled amount (rounded down).
    pub fn wei(scaled: i128) -> i128 {
        scaled >> SCALE_BITS
    }
}

#[cfg(test)]
mod sender_tests {
    use super::sender::*;
    use super::*;

    #[test]
    fn the_fee_estimate_and_ticket_count_are_the_vectors() {
        let v = crate::test_vectors::bo_vectors();
        let case = &v["b_fee_estimate"];
        let pixels = out_pixels(&[(1280, 720, Some(30.0)), (640, 360, Some(30.0))], 2.0);
        assert_eq!(pixels, case["out_pixels_estimate"].as_u64().unwrap());
        let fee = fee(pixels, (6, 5));
        // 84602880 wei (float), exact 23255462575834399125/274877906944.
        assert_eq!(wei(fee), 84_602_880);
        let m = &v["o_ticket_param_math"];
        let face: U256 = m["faceValue (before maxFloat / maxFaceValue caps)"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let prob: U256 = m["winProb"].as_str().unwrap().parse().unwrap();
        let ev = ticket_ev(face, prob);
        assert_eq!(wei(ev), 8_000_000_000);
        assert_eq!(
            tickets_needed(fee, ev, 0),
            case["num_tickets"].as_u64().unwrap() as u32
        );
        assert_eq!(tickets_needed(fee, ev, ev), 0);
        assert_eq!(tickets_needed(10 * ev + 1, ev, 0), 11);
        // Passed-through frame rates count as 60.
        assert_eq!(out_pixels(&[(2, 2, None)], 1.5), 2 * 2 * 60 * 2);
    }
}
