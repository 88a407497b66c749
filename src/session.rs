//! Streams and their sessions, for every wire: [`StreamKey`] names a
//! stream inside this process (a 2018 job's stream id, a dial-out task's
//! `auth_token.session_id`, a pool's stream), [`SessionId`] is a fresh,
//! unguessable 128-bit id that lpgpu hands out (the pool's sessions, whose
//! source segments are fetched by URL), and [`Registry`] is the one table
//! of live sessions: a session starts with its first segment, is renewed by
//! `ForceSessionReinit`, and ends on teardown, on an error for its stream,
//! or after [`SESSION_IDLE`] without a segment (go-livepeer's rule).
//! [`Sessions`] shares a registry and runs the end hooks of whoever keeps
//! state for a stream (a backend's placement, a pool's pin, later a
//! balance), so every per-stream table ends with its session.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::RngCore;

/// A session ends after this long without a segment (go-livepeer's rule).
pub const SESSION_IDLE: Duration = Duration::from_secs(70);

/// The most bytes a stream key may have: longer keys from a peer are cut to
/// a digest of themselves so a map keyed on them stays bounded.
pub const MAX_STREAM_KEY_BYTES: usize = 256;

/// The name of a stream in this process. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey(Arc<str>);

impl StreamKey {
    /// The key of a stream named `name` by a peer. A name longer than
    /// [`MAX_STREAM_KEY_BYTES`] is kept as a prefix and the keccak256 of the
    /// whole, so two long names never collide and no key grows unbounded.
    pub fn new(name: &str) -> Self {
        if name.len() <= MAX_STREAM_KEY_BYTES {
            return Self(Arc::from(name));
        }
        let mut cut = 64;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        let digest = hex::encode(crate::eth::keccak256(name.as_bytes()));
        Self(Arc::from(format!("{}…{digest}", &name[..cut])))
    }

    /// A key no other stream has: for work that belongs to no stream (a
    /// dial-out task without a session id).
    pub fn unique() -> Self {
        Self(Arc::from(format!("anonymous-{}", SessionId::random())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for StreamKey {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

/// A session id lpgpu makes: 128 random bits from the operating system,
/// written as 32 lower-case hex digits. Anything that can be fetched by a
/// URL naming it (the pool's source segments) is as hard to guess as a key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; 16]);

impl SessionId {
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

/// What a segment did to its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    /// The first segment of a new session.
    Started,
    /// Another segment of a live session.
    Continued,
    /// `ForceSessionReinit`: the old session ended and a new one started.
    Renewed,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The peer said so (a teardown).
    Teardown,
    /// A segment of the stream failed for the stream's own reason.
    Error,
    /// No segment for [`SESSION_IDLE`].
    Idle,
    /// `ForceSessionReinit`: a new session of the same stream follows.
    Renewed,
}

#[derive(Debug, Clone)]
struct Session {
    last_segment: Instant,
    segments: u64,
}

/// The live sessions, as plain state over the clock it is given.
#[derive(Debug)]
pub struct Registry {
    idle: Duration,
    sessions: HashMap<StreamKey, Session>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new(SESSION_IDLE)
    }
}

impl Registry {
    /// Sessions end after `idle` without a segment.
    pub fn new(idle: Duration) -> Self {
        Self {
            idle,
            sessions: HashMap::new(),
        }
    }

    /// A segment of `key` arrived (or finished) at `now`.
    pub fn segment(&mut self, key: &StreamKey, force_reinit: bool, now: Instant) -> SessionEvent {
        match self.sessions.get_mut(key) {
            Some(session) if !force_reinit => {
                session.last_segment = now;
                session.segments += 1;
                SessionEvent::Continued
            }
            existing => {
                let renewed = existing.is_some();
                self.sessions.insert(
                    key.clone(),
                    Session {
                        last_segment: now,
                        segments: 1,
                    },
                );
                if renewed {
                    SessionEvent::Renewed
                } else {
                    SessionEvent::Started
                }
            }
        }
    }

    /// Ends `key`; whether it was live.
    pub fn end(&mut self, key: &StreamKey) -> bool {
        self.sessions.remove(key).is_some()
    }

    /// Ends every session idle at `now`; their keys.
    pub fn expire(&mut self, now: Instant) -> Vec<StreamKey> {
        let idle: Vec<StreamKey> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_segment) >= self.idle)
            .map(|(key, _)| key.clone())
            .collect();
        for key in &idle {
            self.sessions.remove(key);
        }
        idle
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Segments seen in `key`'s current session.
    pub fn segments(&self, key: &StreamKey) -> Option<u64> {
        self.sessions.get(key).map(|s| s.segments)
    }
}

/// What runs when a session ends: it forgets the stream's state.
pub type EndHook = Arc<dyn Fn(&StreamKey, EndReason) + Send + Sync>;

/// A shared [`Registry`] with the hooks that run when a session ends.
pub struct Sessions {
    registry: Mutex<Registry>,
    hooks: Mutex<Vec<EndHook>>,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("live", &self.len())
            .finish_non_exhaustive()
    }
}

impl Sessions {
    pub fn new(idle: Duration) -> Arc<Self> {
        Arc::new(Self {
            registry: Mutex::new(Registry::new(idle)),
            hooks: Mutex::new(Vec::new()),
        })
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a hook run for every session that ends from now on.
    pub fn on_end(&self, hook: EndHook) {
        self.hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(hook);
    }

    fn ended(&self, key: &StreamKey, reason: EndReason) {
        let hooks = self.hooks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for hook in hooks {
            hook(key, reason);
        }
    }

    /// A segment of `key` now; a renewal runs the end hooks first.
    pub fn segment(&self, key: &StreamKey, force_reinit: bool) -> SessionEvent {
        let event = self.registry().segment(key, force_reinit, Instant::now());
        if event == SessionEvent::Renewed {
            self.ended(key, EndReason::Renewed);
        }
        event
    }

    /// Ends `key` (its hooks run when it was live); whether it was.
    pub fn end(&self, key: &StreamKey, reason: EndReason) -> bool {
        let was_live = self.registry().end(key);
        if was_live {
            self.ended(key, reason);
        }
        was_live
    }

    /// Ends the sessions idle at `now`; their keys.
    pub fn sweep(&self, now: Instant) -> Vec<StreamKey> {
        let idle = self.registry().expire(now);
        for key in &idle {
            tracing::debug!(stream = %key, "session ended after {SESSION_IDLE:?} without a segment");
            self.ended(key, EndReason::Idle);
        }
        idle
    }

    /// Sweeps every `every` while anything holds the sessions (on the
    /// current tokio runtime; without one, sessions end only when told).
    pub fn start_sweeper(self: &Arc<Self>, every: Duration) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no async runtime: idle sessions are not swept");
            return;
        };
        let weak = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(sessions) = weak.upgrade() else {
                    return;
                };
                sessions.sweep(Instant::now());
            }
        });
    }

    pub fn len(&self) -> usize {
        self.registry().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> StreamKey {
        StreamKey::new(name)
    }

    #[test]
    fn sessions_start_continue_and_renew() {
        let t0 = Instant::now();
        let mut table = Registry::default();
        assert_eq!(table.segment(&key("a"), false, t0), SessionEvent::Started);
        assert_eq!(table.segment(&key("a"), false, t0), SessionEvent::Continued);
        assert_eq!(table.segments(&key("a")), Some(2));
        assert_eq!(table.segment(&key("a"), true, t0), SessionEvent::Renewed);
        assert_eq!(table.segments(&key("a")), Some(1));
        // ForceSessionReinit on a session we never saw just starts it.
        assert_eq!(table.segment(&key("b"), true, t0), SessionEvent::Started);
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn teardown_and_errors_end_a_session() {
        let t0 = Instant::now();
        let mut table = Registry::default();
        table.segment(&key("a"), false, t0);
        assert!(table.end(&key("a")));
        assert!(!table.end(&key("a")));
        assert_eq!(table.segment(&key("a"), false, t0), SessionEvent::Started);
    }

    #[test]
    fn seventy_idle_seconds_end_a_session() {
        let t0 = Instant::now();
        let mut table = Registry::default();
        table.segment(&key("old"), false, t0);
        table.segment(&key("busy"), false, t0);
        table.segment(&key("busy"), false, t0 + Duration::from_secs(60));
        assert!(table.expire(t0 + Duration::from_secs(69)).is_empty());
        assert_eq!(table.expire(t0 + SESSION_IDLE), [key("old")]);
        assert_eq!(table.len(), 1);
        assert_eq!(table.expire(t0 + Duration::from_secs(130)), [key("busy")]);
        assert!(table.is_empty());
    }

    #[test]
    fn every_end_runs_the_hooks_once_with_its_reason() {
        let sessions = Sessions::new(Duration::from_millis(10));
        let ended = Arc::new(Mutex::new(Vec::new()));
        let seen = ended.clone();
        sessions.on_end(Arc::new(move |key: &StreamKey, reason| {
            seen.lock().unwrap().push((key.to_string(), reason));
        }));
        sessions.segment(&key("a"), false);
        sessions.segment(&key("b"), false);
        sessions.segment(&key("c"), false);
        assert_eq!(sessions.segment(&key("a"), true), SessionEvent::Renewed);
        assert!(sessions.end(&key("b"), EndReason::Error));
        assert!(!sessions.end(&key("b"), EndReason::Teardown));
        let mut idle = sessions.sweep(Instant::now() + Duration::from_secs(1));
        idle.sort();
        assert_eq!(idle, [key("a"), key("c")]);
        let mut ended = ended.lock().unwrap().clone();
        ended.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            ended,
            [
                ("a".to_string(), EndReason::Renewed),
                ("a".to_string(), EndReason::Idle),
                ("b".to_string(), EndReason::Error),
                ("c".to_string(), EndReason::Idle),
            ]
        );
        assert!(sessions.is_empty());
    }

    #[test]
    fn session_ids_are_128_bit_hex_and_differ() {
        let a = SessionId::random().to_string();
        let b = SessionId::random().to_string();
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn long_stream_names_are_bounded_and_distinct() {
        let short = StreamKey::new("abc");
        assert_eq!(short.as_str(), "abc");
        let long_a = "é".repeat(1000);
        let long_b = format!("{}x", "é".repeat(999));
        let (a, b) = (StreamKey::new(&long_a), StreamKey::new(&long_b));
        assert!(a.as_str().len() <= MAX_STREAM_KEY_BYTES);
        assert_ne!(a, b);
        assert_eq!(a, StreamKey::new(&long_a));
        assert_ne!(StreamKey::unique(), StreamKey::unique());
    }
}
