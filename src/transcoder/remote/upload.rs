//! The `POST /transcodeResults` request as plain values: its headers and a
//! body of chunks that borrow the renditions' own buffers (nothing is
//! copied). Success is `multipart/mixed`, one part per rendition in profile
//! order with `Content-Type`, `Content-Length` and exact `Pixels`; failure is
//! `livepeer/transcoding-error` with the error text as the body.

use bytes::Bytes;

use crate::pipeline::Transcoded;

/// `Authorization` of a result upload.
pub const AUTHORIZATION: &str = "Livepeer-Transcoder-1.0";
/// The content type of an error result.
pub const ERROR_CONTENT_TYPE: &str = "livepeer/transcoding-error";

/// One result, ready to send.
#[derive(Debug, Clone)]
pub struct ResultUpload {
    /// Header name and value, in sending order (`Credentials` holds the
    /// secret: never log these).
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<Bytes>,
}

impl ResultUpload {
    pub fn body_len(&self) -> u64 {
        self.body.iter().map(|c| c.len() as u64).sum()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The whole body in one buffer (tests and small bodies).
    pub fn body_bytes(&self) -> Vec<u8> {
        self.body.concat()
    }
}

fn common_headers(secret: &str, task_id: i64, pixels: u64) -> Vec<(&'static str, String)> {
    vec![
        ("Authorization", AUTHORIZATION.to_string()),
        ("Credentials", secret.to_string()),
        ("TaskId", task_id.to_string()),
        ("Pixels", pixels.to_string()),
    ]
}

/// The renditions of a task, with `boundary` separating the parts; a
/// rendition's perceptual hash, when it has one, in the part after it.
pub fn renditions(
    secret: &str,
    task_id: i64,
    transcoded: &Transcoded,
    boundary: &str,
) -> ResultUpload {
    let mut headers = common_headers(secret, task_id, transcoded.source_pixels);
    headers.push((
        "Content-Type",
        format!("multipart/mixed; boundary={boundary}"),
    ));
    let mut body = Vec::with_capacity(transcoded.renditions.len() * 3 + 1);
    for rendition in &transcoded.renditions {
        body.push(Bytes::from(format!(
            "--{boundary}\r\nContent-Type: {}\r\nContent-Length: {}\r\nPixels: {}\r\n\r\n",
            part_type(rendition.spec.container),
            rendition.data.len(),
            rendition.pixels(),
        )));
        body.push(rendition.data.clone());
        body.push(Bytes::from_static(b"\r\n"));
        // go-livepeer's transcoder: the rendition's perceptual hash, when
        // asked for, in the next part, with no Pixels.
        if let Some(hash) = &rendition.perceptual_hash {
            body.push(Bytes::from(format!(
                "--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                hash.len()
            )));
            body.push(hash.clone());
            body.push(Bytes::from_static(b"\r\n"));
        }
    }
    body.push(Bytes::from(format!("--{boundary}--\r\n")));
    ResultUpload { headers, body }
}

/// A rendition part's `Content-Type`: the profile's format as go-livepeer
/// labels it (`ProfileFormatMimeType`), `video/mp4` for MP4 and
/// `video/mp2t` otherwise, VP8 and VP9 included. Their bytes are Matroska
/// where go-livepeer's LPMS writes them into MPEG-TS as a private-data
/// stream that nothing decodes as video; the label keeps the wire's meaning
/// (the format asked), and a reader probes the bytes.
fn part_type(container: crate::pipeline::Container) -> &'static str {
    match crate::protocol::video_profile::wire_format(container) {
        crate::proto::video_profile::Format::Mp4 => "video/mp4",
        crate::proto::video_profile::Format::Mpegts => "video/mp2t",
    }
}

/// An error result: `Pixels: 0` and the text as the body.
pub fn error(secret: &str, task_id: i64, text: &str) -> ResultUpload {
    let mut headers = common_headers(secret, task_id, 0);
    headers.push(("Content-Type", ERROR_CONTENT_TYPE.to_string()));
    ResultUpload {
        headers,
        body: vec![Bytes::from(text.to_string())],
    }
}

/// A boundary that appears in no rendition with any real chance: 24 random
/// hex digits.
pub fn random_boundary() -> String {
    format!("lpgpu-{}", hex::encode(rand::random::<[u8; 12]>()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{Container, Rendition, RenditionSpec};
    use crate::protocol::parse_profile_list;

    fn rendition(profile: &str, container: Container, frames: u64, data: &[u8]) -> Rendition {
        let mut spec = RenditionSpec::from(parse_profile_list(profile).unwrap()[0]);
        spec.container = container;
        Rendition {
            width: spec.width,
            height: spec.height,
            spec,
            frames,
            encode_seconds: 0.0,
            data: Bytes::copy_from_slice(data),
            perceptual_hash: None,
        }
    }

    #[test]
    fn a_success_is_one_part_per_rendition_with_exact_pixels() {
        let transcoded = Transcoded {
            renditions: vec![
                rendition("P240p30fps16x9", Container::MpegTs, 60, b"first rendition"),
                rendition("P144p30fps16x9", Container::Mp4, 30, b"second"),
            ],
            source_seconds: 2.0,
            source_frames: 60,
            source_pixels: 60 * 1280 * 720,
            backend: "cpu",
            fallback: None,
        };
        let upload = renditions("s3cret", 7, &transcoded, "BOUNDARY");
        assert_eq!(upload.header("authorization"), Some(AUTHORIZATION));
        assert_eq!(upload.header("credentials"), Some("s3cret"));
        assert_eq!(upload.header("taskid"), Some("7"));
        assert_eq!(upload.header("pixels"), Some("55296000"));
        assert_eq!(
            upload.header("content-type"),
            Some("multipart/mixed; boundary=BOUNDARY")
        );
        let body = String::from_utf8(upload.body_bytes()).unwrap();
        assert_eq!(
            body,
            "--BOUNDARY\r\nContent-Type: video/mp2t\r\nContent-Length: 15\r\nPixels: 6134400\r\n\r\n\
             first rendition\r\n\
             --BOUNDARY\r\nContent-Type: video/mp4\r\nContent-Length: 6\r\nPixels: 1105920\r\n\r\n\
             second\r\n--BOUNDARY--\r\n"
        );
        assert_eq!(upload.body_len(), body.len() as u64);
    }

    #[test]
    fn an_error_is_its_text_with_no_pixels() {
        let upload = error("s3cret", 9, "invalid duration");
        assert_eq!(upload.header("content-type"), Some(ERROR_CONTENT_TYPE));
        assert_eq!(upload.header("pixels"), Some("0"));
        assert_eq!(upload.body_bytes(), b"invalid duration");
        assert!(random_boundary() != random_boundary());
    }
}
