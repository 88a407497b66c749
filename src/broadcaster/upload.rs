//! The broadcaster's HTTP/2 connection to a transcoder: one TLS connection
//! (name-checked, self-signed accepted) multiplexing the segments in flight,
//! re-dialled when it breaks.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::tls::DialTarget;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("transcoder URI {0:?} is not https://HOST:PORT")]
    BadUri(String),
    #[error("connecting to {0}: {1}")]
    Connect(String, String),
    #[error("the request failed: {0}")]
    Request(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl UploadError {
    /// Network trouble is worth retrying; a malformed URI is not.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, UploadError::BadUri(_))
    }
}

/// An answer: status, headers and the whole body.
#[derive(Debug)]
pub struct Answer {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

pub struct TranscoderConnection {
    uri: String,
    target: DialTarget,
    sender: tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl TranscoderConnection {
    pub fn new(transcoder_uri: &str) -> Result<Self, UploadError> {
        let target = DialTarget::parse(transcoder_uri)
            .ok_or_else(|| UploadError::BadUri(transcoder_uri.to_string()))?;
        Ok(Self {
            uri: transcoder_uri.trim_end_matches('/').to_string(),
            target,
            sender: tokio::sync::Mutex::new(None),
        })
    }

    /// A connection for today's wire: any certificate accepted, as
    /// go-livepeer's broadcaster accepts an orchestrator's.
    pub fn any_certificate(transcoder_uri: &str) -> Result<Self, UploadError> {
        let mut connection = Self::new(transcoder_uri)?;
        connection.target = connection.target.any_certificate();
        Ok(connection)
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    async fn sender(&self) -> Result<SendRequest<Full<Bytes>>, UploadError> {
        let mut slot = self.sender.lock().await;
        if let Some(sender) = slot.as_ref().filter(|s| !s.is_closed()) {
            return Ok(sender.clone());
        }
        let connect = |e: String| UploadError::Connect(self.uri.clone(), e);
        let tls = self
            .target
            .connect()
            .await
            .map_err(|e| connect(e.to_string()))?;
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(|e| connect(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!("transcoder connection ended: {error}");
            }
        });
        *slot = Some(sender.clone());
        Ok(sender)
    }

    /// Sends `request` (its URI's path is used) and reads the whole answer
    /// within `timeout`.
    pub async fn send(
        &self,
        request: http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Answer, UploadError> {
        let exchange = async {
            let mut sender = self.sender().await?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| UploadError::Request(e.to_string()))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| UploadError::Request(e.to_string()))?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        let result = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| UploadError::Timeout(timeout))?;
        if result.is_err() {
            // Forget a connection that failed; the next attempt dials afresh.
            *self.sender.lock().await = None;
        }
        result
    }
}

impl std::fmt::Debug for TranscoderConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TranscoderConnection")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

/// Splits a `multipart/mixed` answer into (Rendition-Name, data) parts.
pub fn parse_multipart(content_type: &str, body: &Bytes) -> Result<Vec<(String, Bytes)>, String> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
        .ok_or("multipart answer without a boundary")?;
    let delimiter = format!("--{boundary}");
    let find = |haystack: &[u8], needle: &[u8]| memchr::memmem::find(haystack, needle);
    let mut parts = Vec::new();
    let mut at = find(body, delimiter.as_bytes()).ok_or("no first boundary")?;
    loop {
        at += delimiter.len();
        let rest = &body[at..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        let rest = rest
            .strip_prefix(b"\r\n")
            .ok_or("no line break after a boundary")?;
        let header_end = find(rest, b"\r\n\r\n").ok_or("part headers do not end")?;
        let headers =
            std::str::from_utf8(&rest[..header_end]).map_err(|_| "part headers are not text")?;
        let mut name = None;
        let mut length = None;
        for line in headers.split("\r\n") {
            let (key, value) = line
                .split_once(':')
                .ok_or("a part header without a colon")?;
            match key.trim().to_ascii_lowercase().as_str() {
                "rendition-name" => name = Some(value.trim().to_string()),
                "content-length" => length = value.trim().parse::<usize>().ok(),
                _ => {}
            }
        }
        let (name, length) = (
            name.ok_or("a part without Rendition-Name")?,
            length.ok_or("a part without Content-Length")?,
        );
        let start = at + 2 + header_end + 4;
        let end = start
            .checked_add(length)
            .filter(|&e| e <= body.len())
            .ok_or("a part is cut short")?;
        parts.push((name, body.slice(start..end)));
        at = end + find(&body[end..], delimiter.as_bytes()).ok_or("no boundary after a part")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_parts_come_back_in_order() {
        let body = Bytes::from_static(
            b"--xyz\r\nContent-Type: video/MP2T\r\nRendition-Name: A\r\nContent-Length: 3\r\n\r\nabc\r\n\
              --xyz\r\nContent-Type: video/MP2T\r\nRendition-Name: B\r\nContent-Length: 0\r\n\r\n\r\n--xyz--\r\n",
        );
        let parts = parse_multipart("multipart/mixed; boundary=xyz", &body).unwrap();
        assert_eq!(
            parts,
            vec![
                ("A".into(), Bytes::from_static(b"abc")),
                ("B".into(), Bytes::new())
            ]
        );
    }

    #[test]
    fn broken_multipart_is_an_error_not_a_panic() {
        let cut =
            Bytes::from_static(b"--xyz\r\nRendition-Name: A\r\nContent-Length: 99\r\n\r\nabc");
        assert!(parse_multipart("multipart/mixed; boundary=xyz", &cut).is_err());
        assert!(parse_multipart("multipart/mixed", &cut).is_err());
        assert!(
            parse_multipart("multipart/mixed; boundary=q", &Bytes::from_static(b"junk")).is_err()
        );
    }
}
