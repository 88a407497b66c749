//! The one bounded in-memory store behind `GET /stream/…`, shared by every
//! wire of a node under one budget (`--stream-store-mib`): the renditions of
//! protobuf-mode answers wait there for their broadcaster
//! (`<rendition stream id>_<seq>.ts`), and the pool's source segments for
//! their remote transcoder (`<session>/<seq>.tempfile`). The oldest are
//! evicted first when the byte limit is reached, and none outlive the
//! retention time. [`router`] serves it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    pub max_bytes: u64,
    pub retention: Duration,
}

/// The most entries the store holds, whatever their size: a flood of tiny
/// renditions cannot grow its index without bound.
pub const MAX_ENTRIES: usize = 16_384;

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, (Instant, Bytes)>,
    order: VecDeque<(Instant, String)>,
    bytes: u64,
}

#[derive(Debug)]
pub struct StreamStore {
    limits: StoreLimits,
    inner: Mutex<Inner>,
}

impl Inner {
    fn remove(&mut self, name: &str) {
        if let Some((_, data)) = self.entries.remove(name) {
            self.bytes -= data.len() as u64;
        }
    }

    /// The oldest live entry, dropping queue entries whose name was replaced
    /// or removed since they were queued.
    fn oldest(&mut self) -> Option<(Instant, String)> {
        while let Some((at, name)) = self.order.front() {
            if self
                .entries
                .get(name)
                .is_some_and(|(stored_at, _)| stored_at == at)
            {
                return Some((*at, name.clone()));
            }
            self.order.pop_front();
        }
        None
    }
}

impl StreamStore {
    pub fn new(limits: StoreLimits) -> Self {
        Self {
            limits,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Stores `data` under `name`, evicting expired and then the oldest entries
    /// to make room. Returns false when `data` alone exceeds the limit.
    pub fn insert(&self, name: String, data: Bytes) -> bool {
        let size = data.len() as u64;
        if size > self.limits.max_bytes {
            return false;
        }
        let now = Instant::now();
        let mut inner = self.lock();
        inner.remove(&name);
        while let Some((at, oldest)) = inner.oldest() {
            let expired = now.duration_since(at) > self.limits.retention;
            let full = inner.entries.len() >= MAX_ENTRIES;
            if !expired && !full && inner.bytes + size <= self.limits.max_bytes {
                break;
            }
            inner.order.pop_front();
            inner.remove(&oldest);
        }
        inner.bytes += size;
        inner.entries.insert(name.clone(), (now, data));
        inner.order.push_back((now, name));
        true
    }

    pub fn get(&self, name: &str) -> Option<Bytes> {
        let inner = self.lock();
        let (at, data) = inner.entries.get(name)?;
        (at.elapsed() <= self.limits.retention).then(|| data.clone())
    }

    /// Forgets `name` (its bytes are free at once).
    pub fn remove(&self, name: &str) {
        self.lock().remove(name);
    }

    /// Forgets every entry whose name starts with `prefix` (a session's).
    pub fn remove_prefix(&self, prefix: &str) {
        let mut inner = self.lock();
        let names: Vec<String> = inner
            .entries
            .keys()
            .filter(|name| name.starts_with(prefix))
            .cloned()
            .collect();
        for name in names {
            inner.remove(&name);
        }
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }
}

/// `GET /stream/{*name}`: what the store holds under `name`, or 404.
pub fn router(store: Arc<StreamStore>) -> Router {
    Router::new()
        .route("/stream/{*name}", axum::routing::get(get_stream))
        .with_state(store)
}

/// The content type of a stored name: MPEG-TS for renditions and source
/// segments alike, MP4 where the name says so.
fn content_type(name: &str) -> &'static str {
    if name.ends_with(".mp4") {
        "video/mp4"
    } else {
        "video/MP2T"
    }
}

async fn get_stream(State(store): State<Arc<StreamStore>>, Path(name): Path<String>) -> Response {
    match store.get(&name) {
        Some(data) => ([(header::CONTENT_TYPE, content_type(&name))], data).into_response(),
        None => {
            let body = serde_json::json!({
                "error": "not_found",
                "detail": "no such rendition or segment (or it has expired)",
            });
            (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(max_bytes: u64, retention_ms: u64) -> StreamStore {
        StreamStore::new(StoreLimits {
            max_bytes,
            retention: Duration::from_millis(retention_ms),
        })
    }

    #[test]
    fn evicts_oldest_first_and_respects_the_byte_limit() {
        let s = store(10, 60_000);
        assert!(s.insert("a".into(), Bytes::from_static(b"1234")));
        assert!(s.insert("b".into(), Bytes::from_static(b"1234")));
        assert!(s.insert("c".into(), Bytes::from_static(b"1234")));
        assert_eq!(s.get("a"), None);
        assert_eq!(s.get("b").as_deref(), Some(&b"1234"[..]));
        assert_eq!(s.bytes(), 8);
        assert!(!s.insert("huge".into(), Bytes::from(vec![0; 11])));
        // Replacing a name does not count it twice.
        assert!(s.insert("b".into(), Bytes::from_static(b"12")));
        assert_eq!(s.bytes(), 6);
        assert!(s.insert("d".into(), Bytes::from_static(b"1234")));
        assert_eq!(s.bytes(), 10);
        assert!(s.get("c").is_some() && s.get("b").is_some() && s.get("d").is_some());
    }

    #[test]
    fn entries_expire() {
        let s = store(100, 20);
        s.insert("a".into(), Bytes::from_static(b"x"));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(s.get("a"), None);
        s.insert("b".into(), Bytes::from_static(b"y"));
        assert_eq!(s.bytes(), 1);
    }
}
