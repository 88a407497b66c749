//! What a payment check costs a paid orchestrator per segment, against the
//! transcode it pays for, in one run: `Recipient::receive` of a payment of
//! 4 tickets (each hashed, its signature recovered, its win drawn, its
//! nonce noted) and the CPU transcode of a 2 s 720p segment into the
//! default ladder. Prints both medians and their ratio (docs/BENCHMARKS.md).

#![allow(
    clippy::expect_used,
    reason = "test and build code: a failed expectation is the report"
)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use lpgpu::eth::PrivateKey;
use lpgpu::pipeline::cpu::CpuBackend;
use lpgpu::pipeline::rendition::from_profiles;
use lpgpu::pipeline::{Backend, EncoderSettings, SegmentOptions};
use lpgpu::proto::{Payment, PriceInfo, TicketSenderParams};
use lpgpu::protocol::parse_profile_list;
use lpgpu::protocol::payment::{ChainView, Recipient, SenderInfo};
use lpgpu::protocol::pm::{Ticket, U256, aux_data, face_value, sign_ticket, win_prob};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// A payment of `tickets` tickets on fresh params quoted by `recipient`.
fn payment(recipient: &Recipient, sender: &PrivateKey, view: &ChainView, tickets: u32) -> Payment {
    let ev = U256::from(1_000_000_000_000u64);
    let face = face_value(ev, 1, U256::ZERO, None, Some(ev * U256::from(2u64))).expect("a face");
    let price = PriceInfo {
        price_per_unit: 50_000,
        pixels_per_unit: 1,
    };
    let params = recipient.quote(
        sender.address(),
        &price,
        face,
        win_prob(ev, face),
        U256::from(rand_seed()),
        view,
    );
    let expiration = params.expiration_params.clone().expect("quoted");
    let rand_hash: [u8; 32] = params
        .recipient_rand_hash
        .clone()
        .try_into()
        .expect("32 bytes");
    let ticket_sender_params = (1..=tickets)
        .map(|nonce| {
            let ticket = Ticket {
                recipient: recipient.address(),
                sender: sender.address(),
                face_value: face,
                win_prob: win_prob(ev, face),
                sender_nonce: u64::from(nonce),
                recipient_rand_hash: rand_hash,
                aux_data: aux_data(view.last_initialized_round, &view.round_block_hash),
            };
            TicketSenderParams {
                sender_nonce: nonce,
                sig: sign_ticket(sender, &ticket.hash()).to_vec(),
            }
        })
        .collect();
    Payment {
        ticket_params: Some(lpgpu::proto::TicketParams {
            expiration_params: None,
            ..params
        }),
        sender: sender.address().0.to_vec(),
        expiration_params: Some(expiration),
        ticket_sender_params,
        expected_price: Some(price),
    }
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

fn main() {
    let sender = PrivateKey::random();
    let view = ChainView {
        last_l1_block: 1000,
        last_initialized_round: 20,
        round_block_hash: [3; 32],
    };
    let funds = SenderInfo {
        deposit: U256::from(1u64) << 60,
        reserve: U256::from(1u64) << 60,
        withdraw_round: 0,
        claimed_in_round: U256::ZERO,
    };
    // Payments on fresh params each time, as a stream's segments bring.
    let mut recipient = Recipient::new(PrivateKey::random().address(), [9; 32]);
    let payments: Vec<Payment> = (0..200)
        .map(|_| payment(&recipient, &sender, &view, 4))
        .collect();
    let mut checks = Vec::new();
    for payment in &payments {
        let started = Instant::now();
        let received = recipient.receive(payment, true, Ok(funds), &view);
        checks.push(started.elapsed());
        assert_eq!(received.error, None);
        assert_eq!(received.tickets_credited, 4);
    }
    let check = median(checks);

    let segment: Bytes =
        lpgpu::pipeline::testclip::make_test_clip(2, 1280, 720).expect("the test clip");
    let specs =
        from_profiles(&parse_profile_list("P720p30fps16x9,P360p30fps16x9").expect("profiles"));
    let backend = CpuBackend::new(EncoderSettings::default());
    let mut transcodes = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        backend
            .transcode(segment.clone(), &specs, &SegmentOptions::default())
            .expect("a transcode");
        transcodes.push(started.elapsed());
    }
    let transcode = median(transcodes);
    println!(
        "payment check (4 tickets): {:.3} ms median of {}",
        check.as_secs_f64() * 1e3,
        payments.len()
    );
    println!(
        "CPU transcode (2 s 720p segment, 720p + 360p): {:.1} ms median of 3",
        transcode.as_secs_f64() * 1e3
    );
    println!(
        "ratio payment check / transcode: {:.5}",
        check.as_secs_f64() / transcode.as_secs_f64()
    );
}
