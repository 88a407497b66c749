//! Who may use a transcode slot, as plain state: slots are shared by
//! streams; each stream is a lane that holds up to
//! [`Policy::slots_per_stream`] slots and queues up to [`Policy::depth`]
//! more segments behind itself. A segment is admitted onto a free slot, or
//! queued behind its own stream when that stream holds a slot, or refused
//! at once, saying which of the two limits it met. A slot is handed to the
//! next segment of the same stream when its holder releases it, so a busy
//! stream keeps its place. No clocks, no threads; `W` is whatever wakes a
//! queued segment (the executor's oneshot sender).

use std::collections::{HashMap, VecDeque};

use crate::session::StreamKey;

/// How a wire shares slots between streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Slots one stream may hold at once: 1 where capacity counts streams
    /// (today's wires), unbounded where it counts segments (2018).
    pub slots_per_stream: usize,
    /// Segments a stream may queue behind the slots it holds.
    pub depth: usize,
}

impl Policy {
    /// Capacity counts segments; a full node refuses at once (the 2018
    /// wire: its broadcasters retry after `Retry-After`).
    pub const SEGMENTS: Policy = Policy {
        slots_per_stream: usize::MAX,
        depth: 0,
    };

    /// Capacity counts streams; a stream's next segments wait for its slot.
    pub const fn streams(depth: usize) -> Policy {
        Policy {
            slots_per_stream: 1,
            depth,
        }
    }
}

/// A segment's claim, identified by a number unique within the lanes.
pub type TicketId = u64;

/// How a segment was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// It holds a slot now.
    Slot(TicketId),
    /// It waits behind its stream; [`Lanes::release`] hands it a slot.
    Queued(TicketId),
}

/// Why a segment was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("all {slots} transcode slots are in use")]
    AllSlotsBusy { slots: usize },
    #[error("this stream already has {queued} segments waiting for its slot")]
    StreamQueueFull { queued: usize },
}

#[derive(Debug)]
struct Lane<W> {
    holding: usize,
    queued: VecDeque<(TicketId, W)>,
}

/// The slots and the streams' lanes.
#[derive(Debug)]
pub struct Lanes<W> {
    slots: usize,
    policy: Policy,
    in_use: usize,
    lanes: HashMap<StreamKey, Lane<W>>,
    next_ticket: TicketId,
}

impl<W> Lanes<W> {
    pub fn new(slots: usize, policy: Policy) -> Self {
        Self {
            slots: slots.max(1),
            policy,
            in_use: 0,
            lanes: HashMap::new(),
            next_ticket: 0,
        }
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Slots held now (by running or admitted segments).
    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// Whether a segment of a new stream would get a slot now.
    pub fn has_free_slot(&self) -> bool {
        self.in_use < self.slots
    }

    /// Streams with a lane (holding or waiting for a slot).
    pub fn streams(&self) -> usize {
        self.lanes.len()
    }

    fn ticket(&mut self) -> TicketId {
        self.next_ticket += 1;
        self.next_ticket
    }

    /// Admits a segment of `stream`: a free slot if the stream may take
    /// another, else a place behind the stream's own slot, else a refusal.
    /// `waker` is kept while the segment is queued.
    pub fn admit(&mut self, stream: &StreamKey, waker: W) -> Result<Admitted, Refusal> {
        let holding = self.lanes.get(stream).map_or(0, |l| l.holding);
        if self.in_use < self.slots && holding < self.policy.slots_per_stream {
            let id = self.ticket();
            self.in_use += 1;
            self.lanes
                .entry(stream.clone())
                .or_insert_with(|| Lane {
                    holding: 0,
                    queued: VecDeque::new(),
                })
                .holding += 1;
            return Ok(Admitted::Slot(id));
        }
        let queued = self.lanes.get(stream).map_or(0, |l| l.queued.len());
        if holding > 0 && queued < self.policy.depth {
            let id = self.ticket();
            if let Some(lane) = self.lanes.get_mut(stream) {
                lane.queued.push_back((id, waker));
            }
            return Ok(Admitted::Queued(id));
        }
        if holding > 0 && self.policy.depth > 0 {
            Err(Refusal::StreamQueueFull { queued })
        } else {
            Err(Refusal::AllSlotsBusy { slots: self.slots })
        }
    }

    /// A slot of `stream` is given back (its segment ran, or gave up before
    /// running). The stream's first queued segment takes it over: its id
    /// and waker are returned for the caller to wake. Else the slot is free.
    pub fn release(&mut self, stream: &StreamKey) -> Option<(TicketId, W)> {
        let lane = self.lanes.get_mut(stream)?;
        if let Some(next) = lane.queued.pop_front() {
            return Some(next);
        }
        lane.holding = lane.holding.saturating_sub(1);
        self.in_use = self.in_use.saturating_sub(1);
        if lane.holding == 0 {
            self.lanes.remove(stream);
        }
        None
    }

    /// A queued segment gives up. True when it was still queued; false
    /// when it had been handed a slot already (the caller must then
    /// [`Lanes::release`] that slot).
    pub fn withdraw(&mut self, stream: &StreamKey, ticket: TicketId) -> bool {
        let Some(lane) = self.lanes.get_mut(stream) else {
            return false;
        };
        let before = lane.queued.len();
        lane.queued.retain(|(id, _)| *id != ticket);
        lane.queued.len() != before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> StreamKey {
        StreamKey::new(name)
    }

    #[test]
    fn segments_policy_refuses_at_once_when_every_slot_is_held() {
        let mut lanes = Lanes::<()>::new(2, Policy::SEGMENTS);
        let a = key("a");
        assert!(matches!(lanes.admit(&a, ()), Ok(Admitted::Slot(_))));
        // The same stream may take the second slot: capacity counts segments.
        assert!(matches!(lanes.admit(&a, ()), Ok(Admitted::Slot(_))));
        assert_eq!(lanes.admit(&a, ()), Err(Refusal::AllSlotsBusy { slots: 2 }));
        assert_eq!(
            lanes.admit(&key("b"), ()),
            Err(Refusal::AllSlotsBusy { slots: 2 })
        );
        assert!(lanes.release(&a).is_none());
        assert!(matches!(lanes.admit(&key("b"), ()), Ok(Admitted::Slot(_))));
    }

    #[test]
    fn a_stream_holding_its_slot_queues_behind_itself_and_never_takes_two() {
        let mut lanes = Lanes::<&'static str>::new(2, Policy::streams(2));
        let (a, b, c) = (key("a"), key("b"), key("c"));
        assert!(matches!(lanes.admit(&a, "a1"), Ok(Admitted::Slot(_))));
        // A second slot is free, but a stream holds one: a's next waits.
        let Ok(Admitted::Queued(a2)) = lanes.admit(&a, "a2") else {
            panic!("queued")
        };
        assert!(matches!(lanes.admit(&a, "a3"), Ok(Admitted::Queued(_))));
        assert_eq!(
            lanes.admit(&a, "a4"),
            Err(Refusal::StreamQueueFull { queued: 2 })
        );
        // The free slot is b's: capacity counts streams.
        assert!(matches!(lanes.admit(&b, "b1"), Ok(Admitted::Slot(_))));
        assert_eq!(
            lanes.admit(&c, "c1"),
            Err(Refusal::AllSlotsBusy { slots: 2 })
        );
        // a's slot passes to a2, then a3; only then is it free.
        assert_eq!(lanes.release(&a), Some((a2, "a2")));
        assert_eq!(lanes.in_use(), 2);
        assert!(matches!(lanes.release(&a), Some((_, "a3"))));
        assert!(lanes.release(&a).is_none());
        assert_eq!(lanes.in_use(), 1);
        assert!(matches!(lanes.admit(&c, "c1"), Ok(Admitted::Slot(_))));
    }

    #[test]
    fn a_withdrawn_segment_leaves_the_queue_and_a_handed_over_one_must_release() {
        let mut lanes = Lanes::<u8>::new(1, Policy::streams(1));
        let a = key("a");
        assert!(matches!(lanes.admit(&a, 0), Ok(Admitted::Slot(_))));
        let Ok(Admitted::Queued(second)) = lanes.admit(&a, 1) else {
            panic!("queued")
        };
        assert!(lanes.withdraw(&a, second));
        assert!(!lanes.withdraw(&a, second));
        assert!(lanes.release(&a).is_none());
        assert_eq!((lanes.in_use(), lanes.streams()), (0, 0));

        assert!(matches!(lanes.admit(&a, 0), Ok(Admitted::Slot(_))));
        let Ok(Admitted::Queued(second)) = lanes.admit(&a, 1) else {
            panic!("queued")
        };
        assert_eq!(lanes.release(&a), Some((second, 1)));
        // Handed the slot before it could withdraw: it holds the slot now.
        assert!(!lanes.withdraw(&a, second));
        assert!(lanes.release(&a).is_none());
        assert_eq!(lanes.in_use(), 0);
    }

    #[test]
    fn without_depth_a_stream_holding_its_slot_is_refused_as_all_busy() {
        let mut lanes = Lanes::<()>::new(1, Policy::streams(0));
        let a = key("a");
        assert!(matches!(lanes.admit(&a, ()), Ok(Admitted::Slot(_))));
        assert_eq!(lanes.admit(&a, ()), Err(Refusal::AllSlotsBusy { slots: 1 }));
    }
}
