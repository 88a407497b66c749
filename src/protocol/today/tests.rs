use prost::Message;

use super::*;
use crate::eth::Signature;
use crate::proto::VideoProfile;
use crate::test_vectors::{bo_vectors, hex_bytes};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn auth_tokens_reproduce_the_vectors() {
    for case in bo_vectors()["auth_token"]["cases"].as_array().unwrap() {
        let key: [u8; 32] = hex_bytes(&case["secret"]).try_into().unwrap();
        let tokens = AuthTokens::new(key);
        let session = case["session_id"].as_str().unwrap();
        let expiration = case["expiration"].as_i64().unwrap();
        let mut message = session.as_bytes().to_vec();
        message.extend(minimal_be(expiration as u64));
        assert_eq!(message, hex_bytes(&case["message_hex"]));
        let token = tokens.token(session, expiration);
        assert_eq!(token.to_vec(), hex_bytes(&case["token"]));
        let message = TaskAuthToken {
            token: token.to_vec(),
            session_id: session.into(),
            expiration,
        };
        assert!(tokens.is_ours(&message));
        if let Some(encoded) = case.get("AuthToken_protobuf_hex") {
            assert_eq!(message.encode_to_vec(), hex_bytes(encoded));
        }
    }
}

#[test]
fn tokens_are_checked_present_ours_then_unexpired() {
    let tokens = AuthTokens::random();
    let now = 1_800_000_000;
    let token = tokens.mint(now);
    assert_eq!(token.session_id.len(), 32);
    assert_eq!(token.expiration, now + 1800);
    assert_ne!(tokens.mint(now).session_id, token.session_id);
    assert!(tokens.check(Some(&token), now + 1800).is_ok());
    assert_eq!(
        tokens.check(Some(&token), now + 1801),
        Err(Refusal::ExpiredAuthToken)
    );
    assert_eq!(tokens.check(None, now), Err(Refusal::MissingAuthToken));
    for tamper in [
        TaskAuthToken {
            session_id: "0".repeat(32),
            ..token.clone()
        },
        TaskAuthToken {
            expiration: token.expiration + 1,
            ..token.clone()
        },
        TaskAuthToken {
            token: vec![0; 32],
            ..token.clone()
        },
        TaskAuthToken {
            token: Vec::new(),
            ..token.clone()
        },
    ] {
        assert_eq!(
            tokens.check(Some(&tamper), now),
            Err(Refusal::InvalidAuthToken)
        );
    }
    // Another process's key (a restart) refuses the token.
    assert_eq!(
        AuthTokens::random().check(Some(&token), now),
        Err(Refusal::InvalidAuthToken)
    );
}

#[test]
fn segment_preimages_and_headers_reproduce_the_vectors() {
    let broadcaster = bo_vectors()["keys"]["broadcaster"]["address"]
        .as_str()
        .unwrap()
        .to_lowercase();
    for case in bo_vectors()["segdata_sig"]["segments"].as_array().unwrap() {
        let names: Vec<String> = case["profile_names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect();
        let hash = hex_bytes(&case["hash_keccak256_body"]);
        assert_eq!(
            keccak256(hex_bytes(&case["segment_body_hex"])).to_vec(),
            hash
        );
        let manifest = case["manifestId_ascii"].as_str().unwrap().as_bytes();
        let seq = case["seq"].as_i64().unwrap();
        let preimage = segment_preimage(manifest, seq, &hash, &names);
        assert_eq!(
            preimage,
            hex_bytes(&case["preimage_hex"]),
            "{}",
            case["label"]
        );
        let signer = Signature::recover(&preimage, &hex_bytes(&case["sig"])).unwrap();
        assert_eq!(signer.to_string().to_lowercase(), broadcaster);

        // The header parses; the orchestrator rebuilds the same preimage
        // from the names it read.
        let header = case["Livepeer-Segment_header"].as_str().unwrap();
        let request = parse_headers(Some(b""), Some(header.as_bytes())).unwrap();
        assert_eq!(request.names(), names);
        assert_eq!(request.duration, Duration::from_millis(2000));
        assert_eq!(
            segment_preimage(
                &request.segment.manifest_id,
                request.segment.seq,
                &request.segment.hash,
                &request.names()
            ),
            preimage
        );
        let (key, _) = case
            .as_object()
            .unwrap()
            .iter()
            .find(|(k, _)| k.starts_with("SegData_protobuf_hex"))
            .unwrap();
        assert_eq!(
            request.segment.encode_to_vec(),
            hex_bytes(&case[key.as_str()])
        );
    }
}

fn segdata(change: impl FnOnce(&mut TaskSegData)) -> String {
    let mut segment = TaskSegData {
        manifest_id: b"stream".to_vec(),
        seq: 3,
        hash: vec![7; 32],
        duration: 2000,
        full_profiles: vec![VideoProfile {
            name: "P240p30fps16x9".into(),
            width: 426,
            height: 240,
            bitrate: 600_000,
            fps: 30,
            ..Default::default()
        }],
        ..Default::default()
    };
    change(&mut segment);
    b64(&segment.encode_to_vec())
}

#[test]
fn header_checks_refuse_in_go_livepeers_order() {
    let good = segdata(|_| {});
    let parse = |payment: &str, segment: &str| {
        parse_headers(Some(payment.as_bytes()), Some(segment.as_bytes()))
    };
    assert!(parse("", &good).is_ok());
    assert!(parse_headers(None, Some(good.as_bytes())).is_ok());
    // 1: the payment first, even when the segment header is bad too.
    assert!(matches!(
        parse("%%%", "%%%"),
        Err(Refusal::PaymentBase64(_))
    ));
    let not_protobuf = b64(&[0xff, 0xff, 0xff]);
    let refusal = parse(&not_protobuf, &good).unwrap_err();
    assert!(matches!(refusal, Refusal::PaymentProtobuf(_)));
    assert_eq!(refusal.status(), StatusCode::PAYMENT_REQUIRED);
    assert!(
        refusal
            .to_string()
            .starts_with("protobuf unmarshal error: ")
    );
    // 2, 3.
    assert_eq!(
        parse("", "not base64!").unwrap_err(),
        Refusal::SegmentEncoding
    );
    assert_eq!(
        parse("", "not base64!").unwrap_err().to_string(),
        "ErrorSegEncoding"
    );
    assert!(matches!(
        parse("", &not_protobuf),
        Err(Refusal::SegmentProtobuf(_))
    ));
    // 4: format, encoder profile, codec, in that order; then the duration.
    let bad = |f: fn(&mut VideoProfile)| {
        segdata(|s| {
            f(&mut s.full_profiles[0]);
            s.duration = -1;
        })
    };
    assert_eq!(
        parse(
            "",
            &bad(|p| {
                p.format = 9;
                p.profile = 9;
                p.encoder = 9;
            })
        )
        .unwrap_err(),
        Refusal::UnrecognizedFormat
    );
    assert_eq!(
        parse(
            "",
            &bad(|p| {
                p.profile = 9;
                p.encoder = 9;
            })
        )
        .unwrap_err(),
        Refusal::UnrecognizedEncoderProfile
    );
    assert_eq!(
        parse("", &bad(|p| p.encoder = 9)).unwrap_err(),
        Refusal::UnrecognizedCodec
    );
    assert_eq!(
        parse("", &bad(|_| {})).unwrap_err(),
        Refusal::InvalidDuration
    );
    assert_eq!(
        parse("", &segdata(|s| s.duration = MAX_DURATION_MS + 1)).unwrap_err(),
        Refusal::InvalidDuration
    );
    let longest = parse("", &segdata(|s| s.duration = MAX_DURATION_MS)).unwrap();
    assert_eq!(longest.duration, Duration::from_secs(300));
    let default = parse("", &segdata(|s| s.duration = 0)).unwrap();
    assert_eq!(default.duration, DEFAULT_DURATION);
    for refusal in [Refusal::InvalidDuration, Refusal::UnrecognizedCodec] {
        assert_eq!(refusal.status(), StatusCode::FORBIDDEN);
    }
}

#[test]
fn the_newest_profile_field_wins_and_nameless_profiles_get_go_livepeers_name() {
    let header = segdata(|s| {
        s.full_profiles2 = vec![VideoProfile {
            width: 640,
            height: 360,
            bitrate: 900_000,
            format: 1,
            ..Default::default()
        }];
    });
    let request = parse_headers(None, Some(header.as_bytes())).unwrap();
    assert_eq!(request.names(), ["net_640x360_900000"]);
    let header = segdata(|s| {
        s.full_profiles3 = vec![VideoProfile {
            name: "three".into(),
            ..Default::default()
        }];
    });
    let request = parse_headers(None, Some(header.as_bytes())).unwrap();
    assert_eq!(request.names(), ["three"]);
    let many = segdata(|s| s.full_profiles = vec![s.full_profiles[0].clone(); 17]);
    assert_eq!(
        parse_headers(None, Some(many.as_bytes())).unwrap_err(),
        Refusal::TooManyRenditions
    );
}

#[test]
fn capabilities_must_fit_the_orchestrators() {
    let offered = CapabilitySet::lpgpu();
    let job = |bits: &[u32], min: &str| Capabilities {
        bitstring: CapabilitySet::new(bits.iter().copied()).to_bitstring(),
        constraints: Some(crate::proto::capabilities::Constraints {
            min_version: min.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(check_capabilities(None, &offered, "0.9.1").is_ok());
    assert!(check_capabilities(Some(&job(&[0, 1], "")), &offered, "0.9.1").is_ok());
    assert!(check_capabilities(Some(&job(&[0, 1], "0.9.0")), &offered, "0.9.1").is_ok());
    for (bits, min) in [(&[0, 1, 63][..], ""), (&[0, 1], "0.9.2")] {
        assert_eq!(
            check_capabilities(Some(&job(bits, min)), &offered, "0.9.1"),
            Err(Refusal::IncompatibleCapabilities)
        );
    }
}

#[test]
fn results_are_signed_and_encoded_as_the_vectors_say() {
    let vector = &bo_vectors()["transcode_result_sig"];
    let key = crate::eth::PrivateKey::from_hex(
        bo_vectors()["keys"]["orchestrator"]["private_key"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let renditions: Vec<Vec<u8>> = vector["renditions_hex"]
        .as_array()
        .unwrap()
        .iter()
        .map(hex_bytes)
        .collect();
    let sig = rendition_signature(&key, renditions.iter().map(Vec::as_slice));
    assert_eq!(sig, hex_bytes(&vector["sig"]));
    let (name, encoded) = vector
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.starts_with("TranscodeResult_protobuf_hex"))
        .unwrap();
    let encoded = hex_bytes(encoded);
    let result = crate::proto::SegmentTranscodeResult::decode(encoded.as_slice()).unwrap();
    assert_eq!(result.seq, 7, "{name}");
    let Some(crate::proto::segment_transcode_result::Result::Data(data)) = &result.result else {
        panic!("{name}: no data");
    };
    assert_eq!(data.sig, sig);
    assert_eq!(data.segments.len(), 2);
    assert!(data.segments.iter().all(|s| s.pixels > 0));
    assert_eq!(result.encode_to_vec(), encoded);
}
