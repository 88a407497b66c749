//! The broadcaster's reader of a transcoder's `multipart/mixed` answer, and
//! the orchestrator's streaming reader of `/transcodeResults` bodies: any
//! bytes give parts or a typed error, and the streaming reader gives the
//! same answer however the body is cut into chunks; a part (or the whole
//! body) read as a perceptual hash (an MPEG-7 signature) gives one or a
//! typed error.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use lpgpu::protocol::results::{MultipartReader, parse_multipart};
use lpgpu::protocol::signature::VideoSignature;

fuzz_target!(|input: (&str, Vec<u8>, Vec<u8>)| {
    let (boundary, body, cuts) = input;
    let _ = VideoSignature::parse(&body);
    let body_bytes = Bytes::from(body.clone());
    let _ = lpgpu::broadcaster::upload::parse_multipart(
        &format!("multipart/mixed; boundary={boundary}"),
        &body_bytes,
    );
    if boundary.is_empty() || boundary.len() > 70 {
        return;
    }
    let whole = parse_multipart(boundary, &body);
    if let Ok(parts) = &whole {
        for part in parts {
            let _ = VideoSignature::parse(&part.data);
        }
    }
    // The same body in chunks whose sizes the fuzzer picks.
    let mut reader = MultipartReader::new(boundary);
    let mut rest = body.as_slice();
    let mut chunked = Ok(());
    for cut in cuts.iter().map(|c| usize::from(*c) + 1) {
        if rest.is_empty() || chunked.is_err() {
            break;
        }
        let (chunk, tail) = rest.split_at(cut.min(rest.len()));
        chunked = reader.push(chunk);
        rest = tail;
    }
    if chunked.is_ok() && !rest.is_empty() {
        chunked = reader.push(rest);
    }
    let chunked = chunked.and_then(|()| reader.finish());
    assert_eq!(whole, chunked, "chunking changed the outcome");
});
