//! The `Livepeer-Segment` and `Credentials` header decoders: any text gives
//! a value or a typed error, and what decodes re-encodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpgpu::eth::Address;
use lpgpu::protocol::{decode_credentials, decode_segment_header, encode_segment_header};

fuzz_target!(|text: &str| {
    if let Ok(header) = decode_segment_header(text) {
        let again = decode_segment_header(&encode_segment_header(&header))
            .expect("a decoded header re-encodes");
        assert_eq!(again, header);
    }
    let _ = decode_credentials(text, Address([7; 20]));
});
