use alloy::primitives::U256;
use prost::Message;

use super::*;
use crate::eth::PrivateKey;
use crate::proto::TicketSenderParams;
use crate::protocol::pm::{sign_ticket, win_prob};
use crate::test_vectors::{bo_vectors, hex_bytes};

fn key(name: &str) -> PrivateKey {
    PrivateKey::from_hex(bo_vectors()["keys"][name]["private_key"].as_str().unwrap()).unwrap()
}

fn secret() -> [u8; 32] {
    hex_bytes(&bo_vectors()["keys"]["orchestrator_recipient_secret"]["value"])
        .try_into()
        .unwrap()
}

fn funded() -> Result<SenderInfo, String> {
    Ok(SenderInfo {
        deposit: U256::from(10u64).pow(U256::from(18u64)),
        reserve: U256::from(10u64).pow(U256::from(18u64)),
        withdraw_round: 0,
        claimed_in_round: U256::ZERO,
    })
}

/// The vectors' payment (two tickets of the recipient_rand params, nonces
/// 1 and 2) at the block before its expiration.
fn vector_payment() -> (Payment, ChainView) {
    let bytes = hex_bytes(&bo_vectors()["payment"]["Payment_protobuf_hex"]);
    let payment = Payment::decode(bytes.as_slice()).unwrap();
    let view = ChainView {
        last_l1_block: 21_000_039,
        last_initialized_round: 3500,
        round_block_hash: [0; 32],
    };
    (payment, view)
}

fn orchestrator() -> Recipient {
    Recipient::new(key("orchestrator").address(), secret())
}

#[test]
fn the_vectors_payment_is_accepted_and_credited_at_its_ev() {
    let (payment, view) = vector_payment();
    let mut recipient = orchestrator();
    let received = recipient.receive(&payment, true, funded(), &view);
    assert_eq!(received.error, None, "{received:?}");
    assert_eq!(received.sender, Some(key("broadcaster").address()));
    assert_eq!(received.expected_price, Some((6, 5)));
    assert_eq!(received.tickets, 2);
    assert_eq!(received.tickets_credited, 2);
    // 2 × EV, EV a little over 8 gwei.
    let credited = received.credited.unwrap();
    assert_eq!(credited.floor(), U512::from(16_000_000_000u64));
    // Replayed: both nonces already seen; nothing credited.
    let again = recipient.receive(&payment, true, funded(), &view);
    assert_eq!(
        again.error.unwrap().to_string(),
        format!(
            "invalid ticket senderNonce: already seen sender={} nonce=1",
            key("broadcaster").address()
        )
    );
    assert_eq!(again.tickets_credited, 0);
    assert!(again.credited.is_none());
    // Forgotten once the params have expired: then refused as expired.
    recipient.forget_expired(21_000_040);
    assert_eq!(recipient.remembered(), 0);
    let late = ChainView {
        last_l1_block: 21_000_040,
        ..view
    };
    assert_eq!(
        recipient.receive(&payment, true, funded(), &late).error,
        Some(PaymentError::Expired)
    );
}

#[test]
fn each_fault_gets_go_livepeers_text_in_its_order() {
    let (payment, view) = vector_payment();
    let check = |payment: &Payment, active: bool, info: Result<SenderInfo, String>| {
        orchestrator()
            .receive(payment, active, info, &view)
            .error
            .map(|e| e.to_string())
    };
    let mut no_sender = payment.clone();
    no_sender.sender.clear();
    assert!(
        check(&no_sender, true, funded())
            .unwrap()
            .starts_with("Could not find Sender for payment")
    );
    assert_eq!(
        check(&payment, false, funded()).unwrap(),
        format!(
            "orchestrator {} is inactive in round 3500, cannot process payments",
            key("orchestrator").address()
        )
    );
    let mut no_price = payment.clone();
    no_price.expected_price = None;
    assert_eq!(
        check(&no_price, true, funded()).unwrap(),
        "invalid expected price sent with payment err=\"expected price is nil\""
    );
    let mut zero_pixels = payment.clone();
    zero_pixels.expected_price.as_mut().unwrap().pixels_per_unit = 0;
    assert_eq!(
        check(&zero_pixels, true, funded()).unwrap(),
        "invalid expected price sent with payment err=\"pixels per unit is 0\""
    );
    let sender = key("broadcaster").address();
    assert_eq!(
        check(&payment, true, Err("connection refused".into())).unwrap(),
        format!("could not get sender info for {sender}: connection refused")
    );
    let unlocking = Ok(SenderInfo {
        withdraw_round: 3501,
        ..funded().unwrap()
    });
    assert_eq!(
        check(&payment, true, unlocking).unwrap(),
        format!("deposit and reserve for sender {sender} is set to unlock soon")
    );
    let mut other_recipient = payment.clone();
    other_recipient.ticket_params.as_mut().unwrap().recipient = vec![7; 20];
    assert_eq!(
        check(&other_recipient, true, funded()).unwrap(),
        "invalid ticket recipient"
    );
    // A changed price, seed or expiration: the recipientRand no longer matches.
    let mut other_price = payment.clone();
    other_price.expected_price.as_mut().unwrap().price_per_unit = 1201;
    assert_eq!(
        check(&other_price, true, funded()).unwrap(),
        "invalid recipientRand for ticket recipientRandHash"
    );
    let mut other_expiry = payment.clone();
    other_expiry
        .ticket_params
        .as_mut()
        .unwrap()
        .expiration_block = vec![1];
    assert_eq!(
        check(&other_expiry, true, funded()).unwrap(),
        "invalid recipientRand for ticket recipientRandHash"
    );
    // A bad signature on the second ticket: the first is still credited.
    let mut bad_second = payment.clone();
    bad_second.ticket_sender_params[1].sig[10] ^= 1;
    let received = orchestrator().receive(&bad_second, true, funded(), &view);
    assert_eq!(received.error, Some(PaymentError::Signature));
    assert_eq!(received.tickets_credited, 1);
    // v = 0/1 is refused as the contract refuses it.
    let mut low_v = payment.clone();
    low_v.ticket_sender_params[0].sig[64] -= 27;
    assert_eq!(
        check(&low_v, true, funded()).unwrap(),
        "invalid ticket signature"
    );
}

#[test]
fn a_quote_is_accepted_back_and_a_certain_win_is_kept_for_redemption() {
    let recipient_key = key("orchestrator");
    let sender_key = key("broadcaster");
    let mut recipient = orchestrator();
    let view = ChainView {
        last_l1_block: 1000,
        last_initialized_round: 20,
        round_block_hash: [9; 32],
    };
    let price = PriceInfo {
        price_per_unit: 1200,
        pixels_per_unit: 1000,
    };
    let ev = U256::from(8_000_000_000u64);
    // Face value = EV: every ticket wins.
    let params = recipient.quote(
        sender_key.address(),
        &price,
        ev,
        win_prob(ev, ev),
        U256::from(42u64),
        &view,
    );
    assert_eq!(params.recipient, recipient_key.address().0.to_vec());
    assert_eq!(uint(&params.expiration_block), U256::from(1040u64));
    let expiration = params.expiration_params.clone().unwrap();
    assert_eq!(expiration.creation_round, 20);
    let ticket = Ticket {
        recipient: recipient_key.address(),
        sender: sender_key.address(),
        face_value: uint(&params.face_value),
        win_prob: uint(&params.win_prob),
        sender_nonce: 1,
        recipient_rand_hash: bytes32(&params.recipient_rand_hash),
        aux_data: aux_data(20, &[9; 32]),
    };
    let sig = sign_ticket(&sender_key, &ticket.hash()).to_vec();
    let payment = Payment {
        ticket_params: Some(TicketParams {
            expiration_params: None,
            ..params
        }),
        sender: sender_key.address().0.to_vec(),
        expiration_params: Some(expiration),
        ticket_sender_params: vec![TicketSenderParams {
            sender_nonce: 1,
            sig: sig.clone(),
        }],
        expected_price: Some(price),
    };
    let received = recipient.receive(&payment, true, funded(), &view);
    assert_eq!(received.error, None);
    assert_eq!(received.winning.len(), 1);
    let won = &received.winning[0];
    assert_eq!(won.ticket, ticket);
    assert_eq!(won.signature, sig);
    assert_eq!(
        recipient_rand_hash(won.recipient_rand),
        ticket.recipient_rand_hash
    );
    assert_eq!((won.expiration_block, won.creation_round), (1040, 20));
    // Replayed: refused, but the win is still handed over (the chain's
    // usedTickets refuses a second redemption).
    let again = recipient.receive(&payment, true, funded(), &view);
    assert!(matches!(again.error, Some(PaymentError::NonceSeen { .. })));
    assert_eq!(again.winning.len(), 1);
}

#[test]
fn no_ticket_params_means_a_free_session() {
    let received = orchestrator().receive(
        &Payment::default(),
        false,
        Err("never read".into()),
        &ChainView {
            last_l1_block: 0,
            last_initialized_round: 0,
            round_block_hash: [0; 32],
        },
    );
    assert_eq!(received.error, None);
    assert_eq!(received.expected_price, Some((0, 1)));
}

#[test]
fn the_nonce_book_stays_bounded() {
    let mut recipient = orchestrator();
    let sender = key("broadcaster").address();
    for nonce in 0..MAX_SENDER_NONCES as u32 {
        recipient.note_nonce([1; 32], sender, nonce, 10).unwrap();
    }
    assert_eq!(
        recipient.note_nonce([1; 32], sender, 9999, 10),
        Err(PaymentError::TooManyNonces {
            sender,
            nonce: 9999
        })
    );
}
