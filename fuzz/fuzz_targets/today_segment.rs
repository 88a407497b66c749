//! Today's `POST /segment` headers from arbitrary bytes: `Livepeer-Payment`
//! (parsed only) and `Livepeer-Segment` through go-livepeer's checks 1–9 in
//! order, the signed preimage rebuilt from what parsed, the token checked,
//! the job's capabilities judged. Nothing panics; every refusal has a
//! 4xx/5xx status and a non-empty text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpgpu::protocol::capabilities::{CapabilitySet, GO_LIVEPEER_VERSION};
use lpgpu::protocol::today::{self, AuthTokens};

fuzz_target!(|input: (&[u8], &[u8], bool)| {
    let (payment, segment, encoded) = input;
    // Half the runs feed the raw bytes as base64 of themselves, so the
    // protobuf parsers see arbitrary messages, not only base64 errors.
    let (payment, segment) = if encoded {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        (b64.encode(payment).into_bytes(), b64.encode(segment).into_bytes())
    } else {
        (payment.to_vec(), segment.to_vec())
    };
    match today::parse_headers(Some(&payment), Some(&segment)) {
        Err(refusal) => {
            assert!(refusal.status().as_u16() >= 400);
            assert!(!refusal.to_string().is_empty());
        }
        Ok(request) => {
            let names = request.names();
            let _ = today::segment_preimage(
                &request.segment.manifest_id,
                request.segment.seq,
                &request.segment.hash,
                &names,
            );
            let tokens = AuthTokens::new([7; 32]);
            let _ = tokens.check(request.segment.auth_token.as_ref(), 1_800_000_000);
            let _ = today::check_capabilities(
                request.segment.capabilities.as_ref(),
                &CapabilitySet::lpgpu(),
                GO_LIVEPEER_VERSION,
            );
            for profile in &request.profiles {
                let _ = lpgpu::protocol::video_profile::to_rendition(profile);
            }
        }
    }
});
