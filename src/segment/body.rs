//! A segment's request body: read once, bounded in bytes and time, hashed
//! with keccak256 on a blocking thread as its chunks arrive; whatever is
//! left of it when the answer was decided early is drained in the
//! background, so the client gets the whole answer.

use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use super::Error;
use crate::eth::Keccak256Hasher;
use crate::metrics::Metrics;

/// The body of one `POST /segment`, until it is read.
#[derive(Debug)]
pub struct SegmentBody {
    body: Option<Body>,
    /// `Content-Length`, when the client sent one.
    declared: Option<u64>,
}

impl SegmentBody {
    pub fn new(body: Body, declared: Option<u64>) -> Self {
        Self {
            body: Some(body),
            declared,
        }
    }

    pub fn declared_length(&self) -> Option<u64> {
        self.declared
    }

    /// Reads the whole body up to `limit` bytes within `timeout`, with its
    /// keccak256. Read once: a second call is an internal error.
    pub async fn read(
        &mut self,
        limit: u64,
        timeout: Duration,
    ) -> Result<(Bytes, [u8; 32]), Error> {
        if self.declared.is_some_and(|length| length > limit) {
            return Err(Error::BodyTooLarge { limit });
        }
        let Some(body) = self.body.as_mut() else {
            return Err(Error::Internal("the body was already read".into()));
        };
        let read = tokio::time::timeout(timeout, read_and_hash(body, limit))
            .await
            .map_err(|_| Error::BodyTimeout(timeout.as_secs()))??;
        // Read to its end: nothing is left to drain.
        self.body = None;
        Ok(read)
    }

    /// Reads and discards what is left of a body whose answer was decided
    /// before it arrived. Answering and then resetting the stream (what
    /// dropping the body does) loses the answer for real clients: curl and
    /// httpx report no status when a server resets a stream they are still
    /// sending on, even after a complete response. So the answer goes out
    /// whole and the body is read to its end in the background, returning
    /// HTTP/2 flow-control credit (or keeping the HTTP/1.1 connection in
    /// step), without buffering it and without a slot. Bounded: at most
    /// `limit` bytes and `timeout`; past either the stream (or connection)
    /// is ended.
    pub fn drain(mut self, limit: u64, timeout: Duration, metrics: &Metrics) {
        let Some(mut body) = self.body.take() else {
            return;
        };
        let drained = metrics.drained_bytes.clone();
        tokio::spawn(async move {
            let mut total = 0u64;
            let outcome = tokio::time::timeout(timeout, async {
                while let Some(frame) = body.frame().await {
                    let Ok(frame) = frame else {
                        return "the client's stream failed";
                    };
                    if let Some(data) = frame.data_ref() {
                        total += data.len() as u64;
                        drained.inc_by(data.len() as u64);
                        if total > limit {
                            return "the drain limit was reached";
                        }
                    }
                }
                "done"
            })
            .await
            .unwrap_or("the request timeout passed");
            if outcome != "done" {
                tracing::debug!(bytes = total, "stopped draining a rejected body: {outcome}");
            }
        });
    }
}

/// Reads the body up to `limit` bytes, hashing it on a blocking thread as the
/// chunks arrive (one pass, off the executor).
async fn read_and_hash(body: &mut Body, limit: u64) -> Result<(Bytes, [u8; 32]), Error> {
    let (chunks, mut receiver) = tokio::sync::mpsc::channel::<Bytes>(32);
    let hasher = tokio::task::spawn_blocking(move || {
        let mut hasher = Keccak256Hasher::new();
        while let Some(chunk) = receiver.blocking_recv() {
            hasher.update(&chunk);
        }
        hasher.finalize()
    });
    let mut collected = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::BodyRead(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if collected.len() as u64 + data.len() as u64 > limit {
            return Err(Error::BodyTooLarge { limit });
        }
        collected.extend_from_slice(&data);
        if chunks.send(data).await.is_err() {
            return Err(Error::Internal("the hashing thread stopped".into()));
        }
    }
    drop(chunks);
    let hash = hasher
        .await
        .map_err(|e| Error::Internal(format!("hashing failed: {e}")))?;
    Ok((collected.freeze(), hash))
}
