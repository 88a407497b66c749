use super::*;
use crate::proto::OrchestratorRequest;

fn orchestrator(max_sessions: usize, signer: Option<Arc<PrivateKey>>) -> Arc<TodayOrchestrator> {
    TodayOrchestrator::new(
        TodayConfig {
            service_uri: "https://o.example:8935".into(),
            max_sessions,
            capabilities: CapabilitySet::lpgpu(),
            version: "0.9.1".into(),
            signer,
            payments: None,
        },
        None,
        Metrics::new(),
    )
}

fn offchain_request() -> OrchestratorRequest {
    OrchestratorRequest {
        address: vec![0; 20],
        ..Default::default()
    }
}

#[test]
fn offchain_info_is_filled_as_go_livepeer_fills_it() {
    let o = orchestrator(2, None);
    let before = unix_now();
    let info = o.get_orchestrator(&offchain_request()).unwrap();
    assert_eq!(info.transcoder, "https://o.example:8935");
    assert_eq!(info.address, vec![0; 20]);
    assert!(info.ticket_params.is_none() && info.price_info.is_none());
    let caps = info.capabilities.unwrap();
    assert_eq!(caps.version, "0.9.1");
    assert_eq!(caps.bitstring, CapabilitySet::lpgpu().to_bitstring());
    let token = info.auth_token.unwrap();
    assert!(o.tokens().is_ours(&token));
    assert!((before + 1800..=unix_now() + 1800).contains(&token.expiration));
    // livepeer-gateway's client sends an empty address offchain.
    assert!(o.get_orchestrator(&OrchestratorRequest::default()).is_ok());
    assert!(o.ping(b"value").is_empty());
}

#[test]
fn open_sessions_cap_get_orchestrator_until_one_ends() {
    let o = orchestrator(1, None);
    let token = o
        .get_orchestrator(&offchain_request())
        .unwrap()
        .auth_token
        .unwrap();
    // Offers do not count; open sessions do.
    assert!(o.get_orchestrator(&offchain_request()).is_ok());
    o.sessions()
        .open(&token.session_id, Instant::now())
        .unwrap();
    assert_eq!(
        o.get_orchestrator(&offchain_request()).unwrap_err(),
        "Invalid orchestrator request: OrchestratorCapped"
    );
    assert_eq!(o.end_session(None), Err(EndRefusal::Missing));
    let forged = TaskAuthToken {
        token: vec![1; 32],
        ..token.clone()
    };
    assert_eq!(o.end_session(Some(&forged)), Err(EndRefusal::Invalid));
    assert_eq!(o.end_session(Some(&token)), Ok(true));
    assert_eq!(o.end_session(Some(&token)), Ok(false));
    assert!(o.get_orchestrator(&offchain_request()).is_ok());
}

#[test]
fn a_broadcaster_with_an_account_must_sign_its_address() {
    let key = Arc::new(PrivateKey::random());
    let o = orchestrator(2, Some(key.clone()));
    let broadcaster = PrivateKey::random();
    let address = broadcaster.address();
    let signed = OrchestratorRequest {
        address: address.0.to_vec(),
        sig: broadcaster.sign(address.to_checksum().as_bytes()).to_vec(),
        ..Default::default()
    };
    let info = o.get_orchestrator(&signed).unwrap();
    assert_eq!(info.address, key.address().0.to_vec());
    let forged = OrchestratorRequest {
        sig: PrivateKey::random()
            .sign(address.to_checksum().as_bytes())
            .to_vec(),
        ..signed.clone()
    };
    assert_eq!(
        o.get_orchestrator(&forged).unwrap_err(),
        "Invalid orchestrator request: orchestrator req sig check failed"
    );
    let pong = o.ping(b"value");
    assert_eq!(Signature::recover(b"value", &pong).unwrap(), key.address());
}
