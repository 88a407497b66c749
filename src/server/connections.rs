//! A bound on a server's connections, as plain state over the clock it is
//! given. At most `limit` connections are open (or closing). A new one past
//! the limit takes the place of the oldest connection still in its TLS
//! handshake, else of the established one idle the longest (no request in
//! flight); only when every connection is busy is the new one refused. So a
//! flood of idle or half-open connections cannot keep a real client out,
//! and file descriptors stay bounded. `H` is what closes a connection (the
//! server's eviction signal).

use std::collections::BTreeMap;
use std::time::Instant;

/// A connection's number, in accept order.
pub type ConnId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshaking,
    Idle {
        since: Instant,
    },
    Busy {
        requests: usize,
    },
    /// Told to close; it still holds its socket until it has.
    Closing,
}

#[derive(Debug)]
struct Conn<H> {
    phase: Phase,
    handle: H,
}

/// What happened to a new connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Admitted<H> {
    /// Taken, with room to spare.
    Accepted(ConnId),
    /// Taken in place of another, whose handle is returned to close it.
    Replacing { id: ConnId, victim: H },
    /// Every connection is busy: close the new one.
    Refused,
}

/// How many connections are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub handshaking: usize,
    pub idle: usize,
    pub busy: usize,
    pub closing: usize,
}

#[derive(Debug)]
pub struct Table<H> {
    limit: usize,
    next: ConnId,
    conns: BTreeMap<ConnId, Conn<H>>,
}

impl<H> Table<H> {
    pub fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            next: 0,
            conns: BTreeMap::new(),
        }
    }

    /// Connections holding a socket (open or closing).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for conn in self.conns.values() {
            match conn.phase {
                Phase::Handshaking => counts.handshaking += 1,
                Phase::Idle { .. } => counts.idle += 1,
                Phase::Busy { .. } => counts.busy += 1,
                Phase::Closing => counts.closing += 1,
            }
        }
        counts
    }

    /// The connection to close for a new one: the oldest still
    /// handshaking, else the one idle the longest.
    fn victim(&self) -> Option<ConnId> {
        let handshaking = self
            .conns
            .iter()
            .find(|(_, c)| c.phase == Phase::Handshaking)
            .map(|(id, _)| *id);
        handshaking.or_else(|| {
            self.conns
                .iter()
                .filter_map(|(id, c)| match c.phase {
                    Phase::Idle { since } => Some((since, *id)),
                    _ => None,
                })
                .min()
                .map(|(_, id)| id)
        })
    }

    /// A new connection, handshaking from now.
    pub fn admit(&mut self, handle: H) -> Admitted<H>
    where
        H: Clone,
    {
        let open = self
            .conns
            .values()
            .filter(|c| c.phase != Phase::Closing)
            .count();
        let mut replaced = None;
        if open >= self.limit {
            let Some(victim) = self.victim() else {
                return Admitted::Refused;
            };
            if let Some(conn) = self.conns.get_mut(&victim) {
                conn.phase = Phase::Closing;
                replaced = Some(conn.handle.clone());
            }
        }
        self.next += 1;
        let id = self.next;
        self.conns.insert(
            id,
            Conn {
                phase: Phase::Handshaking,
                handle,
            },
        );
        match replaced {
            Some(victim) => Admitted::Replacing { id, victim },
            None => Admitted::Accepted(id),
        }
    }

    fn set(&mut self, id: ConnId, change: impl FnOnce(Phase) -> Phase) {
        if let Some(conn) = self.conns.get_mut(&id)
            && conn.phase != Phase::Closing
        {
            conn.phase = change(conn.phase);
        }
    }

    /// Its TLS handshake is done.
    pub fn established(&mut self, id: ConnId, now: Instant) {
        self.set(id, |_| Phase::Idle { since: now });
    }

    pub fn request_started(&mut self, id: ConnId) {
        self.set(id, |phase| match phase {
            Phase::Busy { requests } => Phase::Busy {
                requests: requests + 1,
            },
            _ => Phase::Busy { requests: 1 },
        });
    }

    pub fn request_ended(&mut self, id: ConnId, now: Instant) {
        self.set(id, |phase| match phase {
            Phase::Busy { requests } if requests > 1 => Phase::Busy {
                requests: requests - 1,
            },
            _ => Phase::Idle { since: now },
        });
    }

    /// The connection's socket is closed.
    pub fn remove(&mut self, id: ConnId) {
        self.conns.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn past_the_limit_the_oldest_handshake_goes_first_then_the_longest_idle() {
        let mut table = Table::<&'static str>::new(3);
        let t0 = Instant::now();
        let Admitted::Accepted(a) = table.admit("a") else {
            panic!()
        };
        let Admitted::Accepted(b) = table.admit("b") else {
            panic!()
        };
        let Admitted::Accepted(c) = table.admit("c") else {
            panic!()
        };
        table.established(a, t0);
        table.established(b, t0 + Duration::from_secs(1));
        // c still handshakes: it goes first, although it is the newest.
        let Admitted::Replacing { id: d, victim } = table.admit("d") else {
            panic!()
        };
        assert_eq!(victim, "c");
        // While d handshakes, the next one takes d's place.
        let Admitted::Replacing { id: e, victim } = table.admit("e") else {
            panic!()
        };
        assert_eq!(victim, "d");
        table.established(e, t0 + Duration::from_secs(2));
        // Then the connection idle the longest: a.
        let Admitted::Replacing { id: f, victim } = table.admit("f") else {
            panic!()
        };
        assert_eq!(victim, "a");
        // Closing connections hold their socket until they are removed.
        assert_eq!(table.len(), 6);
        for gone in [c, d, a] {
            table.remove(gone);
        }
        assert_eq!(table.len(), 3);
        table.request_started(b);
        assert_eq!(
            table.counts(),
            Counts {
                handshaking: 1,
                idle: 1,
                busy: 1,
                closing: 0
            }
        );
        assert!(table.conns.contains_key(&f));
    }

    #[test]
    fn busy_connections_are_never_replaced() {
        let mut table = Table::<u8>::new(2);
        let now = Instant::now();
        let Admitted::Accepted(a) = table.admit(1) else {
            panic!()
        };
        let Admitted::Accepted(b) = table.admit(2) else {
            panic!()
        };
        for id in [a, b] {
            table.established(id, now);
            table.request_started(id);
        }
        table.request_started(a);
        assert_eq!(table.admit(3), Admitted::Refused);
        table.request_ended(a, now);
        assert_eq!(table.admit(3), Admitted::Refused, "a still has a request");
        table.request_ended(a, now);
        assert!(matches!(
            table.admit(3),
            Admitted::Replacing { victim: 1, .. }
        ));
    }
}
