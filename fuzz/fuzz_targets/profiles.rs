//! Profile parsing from text: the 2018 `transcodingOptions` ids and profile
//! lists, and go-livepeer's `-transcodingOptions` JSON (LPMS's rules) with
//! each parsed profile mapped onto a rendition. Any text gives profiles or
//! a typed error; parsed options re-encode to a parse of themselves.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpgpu::protocol::video_profile::to_rendition;
use lpgpu::protocol::{encode_transcoding_options, parse_profile_list, parse_transcoding_options};

fuzz_target!(|data: &[u8]| {
    if let Ok(profiles) = lpgpu::protocol::transcoding_options::parse(data) {
        assert!(!profiles.is_empty());
        for profile in &profiles {
            let _ = to_rendition(profile);
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(profiles) = parse_transcoding_options(text) {
        let encoded = encode_transcoding_options(&profiles);
        assert!(parse_transcoding_options(&encoded).is_ok());
    }
    let _ = parse_profile_list(text);
});
