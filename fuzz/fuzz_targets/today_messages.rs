//! Today's gRPC requests and replies from arbitrary bytes: an
//! `OrchestratorRequest` answered by an offchain orchestrator (signature
//! recovery on a non-zero address, capacity, a minted token that must
//! verify), an `EndTranscodingSessionRequest`, and a `TranscodeResult` as
//! lpgpu's broadcaster reads one (its error texts classified), and a
//! `Livepeer-Payment` through a paid orchestrator's checks (every ticket
//! hashed, recovered and drawn; the nonce book bounded). Nothing panics.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lpgpu::broadcaster::today::classify;
use lpgpu::metrics::Metrics;
use lpgpu::orchestrator::today::{TodayConfig, TodayOrchestrator};
use lpgpu::proto::{
    EndTranscodingSessionRequest, OrchestratorRequest, SegmentTranscodeResult,
    segment_transcode_result,
};
use lpgpu::protocol::capabilities::CapabilitySet;
use lpgpu::protocol::payment::{ChainView, Recipient, SenderInfo};
use prost::Message;

fn orchestrator() -> &'static TodayOrchestrator {
    static ORCHESTRATOR: OnceLock<std::sync::Arc<TodayOrchestrator>> = OnceLock::new();
    ORCHESTRATOR.get_or_init(|| {
        TodayOrchestrator::new(
            TodayConfig {
                service_uri: "https://o.example:8935".into(),
                max_sessions: 4,
                capabilities: CapabilitySet::lpgpu(),
                version: "0.9.1".into(),
                signer: None,
                payments: None,
            },
            None,
            Metrics::new(),
        )
    })
}

fuzz_target!(|input: (u8, &[u8])| {
    let (which, bytes) = input;
    match which % 4 {
        0 => {
            let Ok(request) = OrchestratorRequest::decode(bytes) else {
                return;
            };
            if let Ok(info) = orchestrator().get_orchestrator(&request) {
                let token = info.auth_token.expect("a session has a token");
                assert!(orchestrator().tokens().is_ours(&token));
            }
        }
        3 => {
            let Ok(payment) = lpgpu::proto::Payment::decode(bytes) else {
                return;
            };
            static RECIPIENT: OnceLock<std::sync::Mutex<Recipient>> = OnceLock::new();
            let recipient = RECIPIENT.get_or_init(|| {
                std::sync::Mutex::new(Recipient::new(lpgpu::eth::Address([7; 20]), [1; 32]))
            });
            let view = ChainView {
                last_l1_block: 1000,
                last_initialized_round: 10,
                round_block_hash: [2; 32],
            };
            let funds = SenderInfo {
                deposit: lpgpu::protocol::pm::U256::from(1u64) << 60,
                reserve: lpgpu::protocol::pm::U256::from(1u64) << 60,
                withdraw_round: 0,
                claimed_in_round: lpgpu::protocol::pm::U256::ZERO,
            };
            let mut recipient = recipient.lock().unwrap_or_else(|p| p.into_inner());
            let received = recipient.receive(&payment, true, Ok(funds), &view);
            assert!(received.tickets as usize <= payment.ticket_sender_params.len());
            assert!(received.tickets_credited <= received.tickets);
            recipient.forget_expired(view.last_l1_block);
        }
        1 => {
            let Ok(request) = EndTranscodingSessionRequest::decode(bytes) else {
                return;
            };
            let _ = orchestrator().end_session(request.auth_token.as_ref());
        }
        _ => {
            let Ok(result) = SegmentTranscodeResult::decode(bytes) else {
                return;
            };
            match result.result {
                Some(segment_transcode_result::Result::Error(text)) => {
                    let _ = classify(&text);
                }
                Some(segment_transcode_result::Result::Data(data)) => {
                    for rendition in &data.segments {
                        let _ = rendition.url.parse::<http::Uri>();
                    }
                }
                None => {}
            }
        }
    }
});
