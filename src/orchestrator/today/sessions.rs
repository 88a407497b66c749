//! The sessions of today's wire as go-livepeer counts them, over the clock
//! it is given: a session opens with its first accepted segment, counts
//! against `--max-sessions` until `EndTranscodingSession` or [`SESSION_IDLE`]
//! without a segment, works its segments one at a time with at most
//! [`SESSION_QUEUE`] waiting, and remembers which renditions it left in the
//! store so they go when it ends.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::protocol::today::SESSION_QUEUE;
pub use crate::session::SESSION_IDLE;

/// A session's turn: its segments run one at a time in arrival order.
pub type Turn = Arc<tokio::sync::Mutex<()>>;

#[derive(Debug)]
struct Session {
    last: Instant,
    /// Segments accepted and not finished (the one running included).
    in_flight: usize,
    turn: Turn,
    /// Profile names whose renditions sit in the store.
    profiles: BTreeSet<String>,
}

/// Why a segment was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// Every session slot is held by another session (`OrchestratorCapped`).
    Capped,
    /// This session already has [`SESSION_QUEUE`] segments waiting
    /// (`OrchestratorBusy`).
    Busy,
}

/// A session that ended, with the rendition profiles it left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub id: String,
    pub profiles: Vec<String>,
}

#[derive(Debug)]
pub struct SessionTable {
    max: usize,
    idle: Duration,
    sessions: HashMap<String, Session>,
}

impl SessionTable {
    pub fn new(max: usize, idle: Duration) -> Self {
        Self {
            max: max.max(1),
            idle,
            sessions: HashMap::new(),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Whether a new session could open now (`GetOrchestrator`'s check).
    pub fn has_room(&self) -> bool {
        self.sessions.len() < self.max
    }

    pub fn is_open(&self, id: &str) -> bool {
        self.sessions.contains_key(id)
    }

    /// Check 10: a known session, or room for a new one. Opens it.
    pub fn open(&mut self, id: &str, now: Instant) -> Result<(), Full> {
        if let Some(session) = self.sessions.get_mut(id) {
            session.last = now;
            return Ok(());
        }
        if !self.has_room() {
            return Err(Full::Capped);
        }
        self.sessions.insert(
            id.to_string(),
            Session {
                last: now,
                in_flight: 0,
                turn: Arc::default(),
                profiles: BTreeSet::new(),
            },
        );
        Ok(())
    }

    /// Takes a place in the session's queue: its turn to wait on, or
    /// `Busy` when [`SESSION_QUEUE`] segments already wait behind the one
    /// running. An unknown session is opened (within the cap).
    pub fn enqueue(&mut self, id: &str, now: Instant) -> Result<Turn, Full> {
        self.open(id, now)?;
        let Some(session) = self.sessions.get_mut(id) else {
            return Err(Full::Capped);
        };
        if session.in_flight > SESSION_QUEUE {
            return Err(Full::Busy);
        }
        session.in_flight += 1;
        session.last = now;
        Ok(session.turn.clone())
    }

    /// A segment of `id` is done; `profile` names its renditions kept.
    pub fn finish(&mut self, id: &str, profiles: &[String], now: Instant) {
        if let Some(session) = self.sessions.get_mut(id) {
            session.in_flight = session.in_flight.saturating_sub(1);
            session.last = now;
            session.profiles.extend(profiles.iter().cloned());
        }
    }

    /// `EndTranscodingSession`: gone at once (segments still running
    /// finish, and their renditions are dropped with the session's).
    pub fn end(&mut self, id: &str) -> Option<Ended> {
        self.sessions.remove(id).map(|session| Ended {
            id: id.to_string(),
            profiles: session.profiles.into_iter().collect(),
        })
    }

    /// Sessions without a segment for the idle time, and none in flight.
    pub fn expire(&mut self, now: Instant) -> Vec<Ended> {
        let idle: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.in_flight == 0 && now.duration_since(s.last) > self.idle)
            .map(|(id, _)| id.clone())
            .collect();
        idle.iter().filter_map(|id| self.end(id)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_count_against_the_cap_until_they_end_or_idle_out() {
        let start = Instant::now();
        let mut table = SessionTable::new(2, Duration::from_secs(70));
        assert!(table.has_room());
        table.open("a", start).unwrap();
        table.open("b", start).unwrap();
        assert!(!table.has_room());
        assert_eq!(table.open("c", start), Err(Full::Capped));
        // A known session is never capped.
        table.open("a", start).unwrap();
        assert_eq!(table.end("b").unwrap().id, "b");
        table.open("c", start).unwrap();
        // "a" was seen at start; "c" later.
        let later = start + Duration::from_secs(60);
        table.open("c", later).unwrap();
        let ended = table.expire(start + Duration::from_secs(71));
        assert_eq!(
            ended.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
        assert!(table.is_open("c"));
        assert_eq!(table.end("nope"), None);
    }

    #[test]
    fn a_session_queues_four_behind_the_running_one_and_never_idles_out_busy() {
        let start = Instant::now();
        let mut table = SessionTable::new(1, Duration::from_secs(70));
        let turns: Vec<Turn> = (0..=SESSION_QUEUE)
            .map(|_| table.enqueue("s", start).unwrap())
            .collect();
        assert!(turns.windows(2).all(|w| Arc::ptr_eq(&w[0], &w[1])));
        assert_eq!(table.enqueue("s", start).unwrap_err(), Full::Busy);
        assert_eq!(table.enqueue("t", start).unwrap_err(), Full::Capped);
        assert!(table.expire(start + Duration::from_secs(600)).is_empty());
        for _ in 0..=SESSION_QUEUE {
            table.finish("s", &["P240p".into()], start);
        }
        table.enqueue("s", start).unwrap();
        table.finish("s", &["P144p".into()], start);
        let ended = table.expire(start + Duration::from_secs(71));
        assert_eq!(
            ended,
            [Ended {
                id: "s".into(),
                profiles: vec!["P144p".into(), "P240p".into()]
            }]
        );
    }
}
