//! `/transcodeResults` header checks and media-type parsing on arbitrary
//! header values: a verdict with go-livepeer's status, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lpgpu::protocol::results::{ResultHeaders, check_result_headers, parse_media_type};

fuzz_target!(|input: (&str, &str, &str, &str, &str)| {
    let (authorization, credentials, content_type, task_id, pixels) = input;
    let _ = parse_media_type(content_type);
    let headers = ResultHeaders {
        authorization: Some(authorization),
        credentials: Some(credentials),
        content_type: Some(content_type),
        task_id: Some(task_id),
        pixels: Some(pixels),
    };
    if let Err(rejection) = check_result_headers(&headers, "secret") {
        assert!(matches!(rejection.status(), 400 | 401 | 415));
    }
});
