//! Per-stream sessions of the remote-transcoder mode, keyed by
//! `auth_token.session_id`, as plain state over an injected clock: a session
//! starts with its first segment, is renewed by `ForceSessionReinit`, and
//! ends on teardown, on an error for that stream, or after 70 s without a
//! segment. What a session holds on the backend (the GPU rig's placement) is
//! ended through `Backend::end_stream` by the caller, for every key this
//! table reports ended.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A session ends after this long without a segment (go-livepeer's rule).
pub const SESSION_IDLE: Duration = Duration::from_secs(70);

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

#[derive(Debug, Clone)]
struct Session {
    last_segment: Instant,
    segments: u64,
}

/// The live sessions.
#[derive(Debug, Default)]
pub struct SessionTable {
    sessions: HashMap<String, Session>,
}

impl SessionTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// A segment of `key` arrived at `now`.
    pub fn segment(&mut self, key: &str, force_reinit: bool, now: Instant) -> SessionEvent {
        match self.sessions.get_mut(key) {
            Some(session) if !force_reinit => {
                session.last_segment = now;
                session.segments += 1;
                SessionEvent::Continued
            }
            existing => {
                let renewed = existing.is_some();
                self.sessions.insert(
                    key.to_string(),
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

    /// Ends `key` (teardown, or an error for that stream); whether it was live.
    pub fn end(&mut self, key: &str) -> bool {
        self.sessions.remove(key).is_some()
    }

    /// Ends every session idle for [`SESSION_IDLE`] at `now`; their keys.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let idle: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_segment) >= SESSION_IDLE)
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
    pub fn segments(&self, key: &str) -> Option<u64> {
        self.sessions.get(key).map(|s| s.segments)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_start_continue_and_renew() {
        let t0 = Instant::now();
        let mut table = SessionTable::new();
        assert_eq!(table.segment("a", false, t0), SessionEvent::Started);
        assert_eq!(table.segment("a", false, t0), SessionEvent::Continued);
        assert_eq!(table.segments("a"), Some(2));
        assert_eq!(table.segment("a", true, t0), SessionEvent::Renewed);
        assert_eq!(table.segments("a"), Some(1));
        // ForceSessionReinit on a session we never saw just starts it.
        assert_eq!(table.segment("b", true, t0), SessionEvent::Started);
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn teardown_and_errors_end_a_session() {
        let t0 = Instant::now();
        let mut table = SessionTable::new();
        table.segment("a", false, t0);
        assert!(table.end("a"));
        assert!(!table.end("a"));
        assert_eq!(table.segment("a", false, t0), SessionEvent::Started);
    }

    #[test]
    fn seventy_idle_seconds_end_a_session() {
        let t0 = Instant::now();
        let mut table = SessionTable::new();
        table.segment("old", false, t0);
        table.segment("busy", false, t0);
        table.segment("busy", false, t0 + Duration::from_secs(60));
        assert!(table.expire(t0 + Duration::from_secs(69)).is_empty());
        assert_eq!(table.expire(t0 + SESSION_IDLE), ["old"]);
        assert_eq!(table.len(), 1);
        assert_eq!(table.expire(t0 + Duration::from_secs(130)), ["busy"]);
        assert!(table.is_empty());
    }
}
