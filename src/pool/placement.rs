//! Where a pool sends each segment, as plain code: members with a capacity in
//! streams, streams pinned to a member while they live, one segment at a
//! time per stream, new streams to the least-loaded compatible member
//! (pinned streams ÷ capacity), and the lateness count that evicts a member
//! (`spec/ot-protocol.md`, "Time limits and capacity"). When a stream is
//! idle is the node's session registry's to say ([`crate::session`]); a
//! stream it ends is unpinned here unless a segment of it is in flight.
//! No I/O, no clocks.

use std::collections::{BTreeMap, HashMap};

use crate::protocol::capabilities::{CapabilitySet, job_fits};

/// A member late this many times in a row is evicted (go-livepeer: once).
pub const LATE_LIMIT: u32 = 2;

/// A member's handle, never reused within a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(pub u64);

/// What a member registered with.
#[derive(Debug, Clone)]
pub struct MemberInfo {
    /// For logs and the metrics' `member` label.
    pub name: String,
    /// Streams it takes at once (> 0).
    pub capacity: usize,
    pub capabilities: CapabilitySet,
    pub version: String,
    /// The node's own backend rather than a registered transcoder.
    pub local: bool,
}

#[derive(Debug)]
struct Member {
    info: MemberInfo,
    /// Streams pinned here.
    streams: usize,
    /// Late tasks in a row.
    late: u32,
}

#[derive(Debug, Clone)]
struct Pin {
    member: MemberId,
    /// The session id the member knows this stream by.
    session: String,
    busy: bool,
}

/// A job's requirements.
#[derive(Debug, Clone, Default)]
pub struct JobNeeds {
    pub capabilities: CapabilitySet,
    pub min_version: Option<String>,
}

/// Where a segment goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub member: MemberId,
    pub session: String,
    /// The stream was (re)pinned for this segment: a new session there.
    pub new_session: bool,
}

/// Why a segment cannot be placed now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    #[error("no member with room for another stream")]
    NoRoom,
    #[error("the stream already has a segment in flight")]
    StreamBusy,
}

/// What ending an idle stream did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdleEnd {
    /// Unpinned from this member, which knew it by this session id.
    Unpinned(MemberId, String),
    /// A segment of it is in flight: it stays.
    Busy,
    /// It was not pinned.
    Unknown,
}

/// What a late task does to its member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lateness {
    /// Counted; the member stays.
    Warned(u32),
    /// Late [`LATE_LIMIT`] times in a row: evict it.
    Evict,
}

/// Members and pinned streams.
#[derive(Debug, Default)]
pub struct Placement {
    members: BTreeMap<MemberId, Member>,
    streams: HashMap<String, Pin>,
    next_member: u64,
}

impl Placement {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, info: MemberInfo) -> MemberId {
        self.next_member += 1;
        let id = MemberId(self.next_member);
        self.members.insert(
            id,
            Member {
                info,
                streams: 0,
                late: 0,
            },
        );
        id
    }

    /// Removes a member; its streams are unpinned and move at their next
    /// segment. Returns the streams it held.
    pub fn remove(&mut self, id: MemberId) -> Vec<String> {
        self.members.remove(&id);
        let moved: Vec<String> = self
            .streams
            .iter()
            .filter(|(_, pin)| pin.member == id)
            .map(|(stream, _)| stream.clone())
            .collect();
        for stream in &moved {
            self.streams.remove(stream);
        }
        moved
    }

    pub fn contains(&self, id: MemberId) -> bool {
        self.members.contains_key(&id)
    }

    pub fn info(&self, id: MemberId) -> Option<&MemberInfo> {
        self.members.get(&id).map(|m| &m.info)
    }

    /// A member's info and pinned streams.
    pub fn member(&self, id: MemberId) -> Option<(&MemberInfo, usize)> {
        self.members.get(&id).map(|m| (&m.info, m.streams))
    }

    /// (id, info, pinned streams) of every member.
    pub fn members(&self) -> impl Iterator<Item = (MemberId, &MemberInfo, usize)> {
        self.members.iter().map(|(id, m)| (*id, &m.info, m.streams))
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Streams pinned now.
    pub fn pinned(&self) -> usize {
        self.streams.len()
    }

    /// Whether a new stream would find room on some member.
    pub fn has_room(&self) -> bool {
        self.members.values().any(|m| m.streams < m.info.capacity)
    }

    /// Whether a new stream needing `needs` would find room on a member
    /// outside `exclude` (where a failed segment could be retried).
    pub fn has_room_excluding(&self, needs: &JobNeeds, exclude: &[MemberId]) -> bool {
        self.candidates(needs, exclude).next().is_some()
    }

    /// Members outside `exclude` with room for a new stream needing `needs`.
    fn candidates<'a>(
        &'a self,
        needs: &'a JobNeeds,
        exclude: &'a [MemberId],
    ) -> impl Iterator<Item = (&'a MemberId, &'a Member)> + 'a {
        self.members.iter().filter(move |(id, m)| {
            !exclude.contains(id)
                && m.streams < m.info.capacity
                && job_fits(
                    &needs.capabilities,
                    needs.min_version.as_deref(),
                    &m.info.capabilities,
                    &m.info.version,
                )
                .is_ok()
        })
    }

    /// Places the next segment of `stream`: on its member while it is pinned
    /// (and not in `exclude`), else on the least-loaded compatible member
    /// with room, ties to the earliest registered. The stream is busy until
    /// [`Placement::finish`]. `new_session` names the session id a newly
    /// pinned stream gets.
    pub fn place(
        &mut self,
        stream: &str,
        needs: &JobNeeds,
        exclude: &[MemberId],
        new_session: impl FnOnce() -> String,
    ) -> Result<Placed, PlaceError> {
        if let Some(pin) = self.streams.get_mut(stream) {
            if pin.busy {
                return Err(PlaceError::StreamBusy);
            }
            if !exclude.contains(&pin.member) {
                pin.busy = true;
                return Ok(Placed {
                    member: pin.member,
                    session: pin.session.clone(),
                    new_session: false,
                });
            }
        }
        // A stream moving off an excluded member gives its slot back first.
        self.unpin(stream);
        let chosen = self
            .candidates(needs, exclude)
            // Least loaded: streams ÷ capacity, compared without division.
            .min_by(|(a_id, a), (b_id, b)| {
                let left = a.streams as u128 * b.info.capacity as u128;
                let right = b.streams as u128 * a.info.capacity as u128;
                left.cmp(&right).then(a_id.cmp(b_id))
            })
            .map(|(id, _)| *id)
            .ok_or(PlaceError::NoRoom)?;
        if let Some(member) = self.members.get_mut(&chosen) {
            member.streams += 1;
        }
        let session = new_session();
        self.streams.insert(
            stream.to_string(),
            Pin {
                member: chosen,
                session: session.clone(),
                busy: true,
            },
        );
        Ok(Placed {
            member: chosen,
            session,
            new_session: true,
        })
    }

    /// The stream's segment is done (whatever its outcome): it may send the next.
    pub fn finish(&mut self, stream: &str) {
        if let Some(pin) = self.streams.get_mut(stream) {
            pin.busy = false;
        }
    }

    /// Unpins a stream (its member failed it, or it ended); returns the
    /// member and session it had.
    pub fn unpin(&mut self, stream: &str) -> Option<(MemberId, String)> {
        let pin = self.streams.remove(stream)?;
        if let Some(member) = self.members.get_mut(&pin.member) {
            member.streams = member.streams.saturating_sub(1);
        }
        Some((pin.member, pin.session))
    }

    /// The session registry ended `stream` for idleness: unpinned (the
    /// member gets a teardown) unless a segment of it is in flight.
    pub fn end_idle(&mut self, stream: &str) -> IdleEnd {
        match self.streams.get(stream) {
            None => IdleEnd::Unknown,
            Some(pin) if pin.busy => IdleEnd::Busy,
            Some(_) => match self.unpin(stream) {
                Some((member, session)) => IdleEnd::Unpinned(member, session),
                None => IdleEnd::Unknown,
            },
        }
    }

    /// A task of `id` came back in time.
    pub fn on_time(&mut self, id: MemberId) {
        if let Some(member) = self.members.get_mut(&id) {
            member.late = 0;
        }
    }

    /// A task of `id` missed its deadline.
    pub fn late(&mut self, id: MemberId) -> Lateness {
        match self.members.get_mut(&id) {
            Some(member) => {
                member.late += 1;
                if member.late >= LATE_LIMIT {
                    Lateness::Evict
                } else {
                    Lateness::Warned(member.late)
                }
            }
            None => Lateness::Evict,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, capacity: usize) -> MemberInfo {
        MemberInfo {
            name: name.into(),
            capacity,
            capabilities: CapabilitySet::lpgpu(),
            version: "0.9.1".into(),
            local: false,
        }
    }

    fn session() -> String {
        "s".into()
    }

    #[test]
    fn new_streams_go_to_the_least_loaded_member_by_load_over_capacity() {
        let mut p = Placement::new();
        let small = p.add(info("small", 1));
        let big = p.add(info("big", 4));
        let needs = JobNeeds::default();
        // 0/1 vs 0/4: a tie goes to the earliest.
        assert_eq!(p.place("a", &needs, &[], session).unwrap().member, small);
        // 1/1 is full: big.
        assert_eq!(p.place("b", &needs, &[], session).unwrap().member, big);
        assert_eq!(p.place("c", &needs, &[], session).unwrap().member, big);
        assert_eq!(p.place("d", &needs, &[], session).unwrap().member, big);
        assert_eq!(p.place("e", &needs, &[], session).unwrap().member, big);
        assert_eq!(p.place("f", &needs, &[], session), Err(PlaceError::NoRoom));
        assert!(!p.has_room());
    }

    #[test]
    fn a_stream_stays_on_its_member_one_segment_at_a_time() {
        let mut p = Placement::new();
        let first = p.add(info("one", 2));
        p.add(info("two", 2));
        let needs = JobNeeds::default();
        let placed = p.place("a", &needs, &[], || "cafe0001".into()).unwrap();
        assert!(placed.new_session);
        assert_eq!(
            p.place("a", &needs, &[], session),
            Err(PlaceError::StreamBusy)
        );
        p.finish("a");
        let again = p.place("a", &needs, &[], session).unwrap();
        assert_eq!((again.member, again.session.as_str()), (first, "cafe0001"));
        assert!(!again.new_session);
    }

    #[test]
    fn an_excluded_member_gives_the_stream_up_to_another() {
        let mut p = Placement::new();
        let first = p.add(info("one", 1));
        let second = p.add(info("two", 1));
        let needs = JobNeeds::default();
        assert_eq!(p.place("a", &needs, &[], session).unwrap().member, first);
        // A retry excludes the member that failed: the stream moves and
        // frees its slot there.
        let moved = p.place("a", &needs, &[first], session);
        assert_eq!(moved.map(|p| p.member), Err(PlaceError::StreamBusy));
        p.finish("a");
        let moved = p.place("a", &needs, &[first], session).unwrap();
        assert_eq!(moved.member, second);
        assert!(moved.new_session);
        assert_eq!(p.place("b", &needs, &[], session).unwrap().member, first);
    }

    #[test]
    fn removing_a_member_unpins_its_streams() {
        let mut p = Placement::new();
        let gone = p.add(info("gone", 2));
        let stays = p.add(info("stays", 2));
        let needs = JobNeeds::default();
        p.place("a", &needs, &[], session).unwrap();
        p.place("b", &needs, &[], session).unwrap();
        let mut moved = p.remove(gone);
        moved.sort();
        assert_eq!(moved, ["a"]);
        p.finish("b");
        assert_eq!(p.place("a", &needs, &[], session).unwrap().member, stays);
    }

    #[test]
    fn incompatible_members_are_skipped() {
        let mut p = Placement::new();
        let mut old = info("old", 4);
        old.version = "0.7.0".into();
        old.capabilities = CapabilitySet::new([0, 1]);
        p.add(old);
        let fits = p.add(info("new", 1));
        let needs = JobNeeds {
            capabilities: CapabilitySet::new([0, 1, 12]),
            min_version: Some("0.8.0".into()),
        };
        assert_eq!(p.place("a", &needs, &[], session).unwrap().member, fits);
        assert_eq!(p.place("b", &needs, &[], session), Err(PlaceError::NoRoom));
        assert!(!p.has_room_excluding(&needs, &[]));
    }

    #[test]
    fn idle_streams_expire_and_late_twice_evicts() {
        let mut p = Placement::new();
        let m = p.add(info("m", 1));
        p.place("a", &JobNeeds::default(), &[], || "f00d".into())
            .unwrap();
        // Busy streams never end for idleness.
        assert_eq!(p.end_idle("a"), IdleEnd::Busy);
        p.finish("a");
        assert_eq!(p.end_idle("a"), IdleEnd::Unpinned(m, "f00d".to_string()));
        assert_eq!(p.end_idle("a"), IdleEnd::Unknown);
        assert_eq!(p.pinned(), 0);
        assert!(p.has_room());

        assert_eq!(p.late(m), Lateness::Warned(1));
        p.on_time(m);
        assert_eq!(p.late(m), Lateness::Warned(1));
        assert_eq!(p.late(m), Lateness::Evict);
    }
}
