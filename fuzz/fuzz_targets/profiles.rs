//! `transcodingOptions` and profile-list parsing: any text gives profiles
//! or a typed error; parsed options re-encode to a parse of themselves.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpgpu::protocol::{encode_transcoding_options, parse_profile_list, parse_transcoding_options};

fuzz_target!(|text: &str| {
    if let Ok(profiles) = parse_transcoding_options(text) {
        let encoded = encode_transcoding_options(&profiles);
        assert!(parse_transcoding_options(&encoded).is_ok());
    }
    let _ = parse_profile_list(text);
});
