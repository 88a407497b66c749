//! How one rig's capacity is split between several orchestrators
//! (`lpgpu transcoder --orch-addr A,B,…`), as plain state: the split by
//! weight, standbys when there are fewer slots than orchestrators, what a
//! link may register now without the rig's total ever passing its
//! capacity, and the demand-following moves of `--orch-rebalance`. No I/O:
//! the links report what happened and read their targets from here.

/// Whether an orchestrator can take a share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Not tried yet: planned for, so the first split is the configured one.
    Unknown,
    /// Reachable (connected, or registered).
    Up,
    /// Unreachable or its stream was lost: its share goes to the others.
    Down,
    /// It refused the secret (or the capacity): never planned for again.
    Refused,
}

impl Availability {
    fn planned(self) -> bool {
        matches!(self, Availability::Unknown | Availability::Up)
    }
}

/// One orchestrator's line in the book.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    weight: u32,
    availability: Availability,
    /// The capacity its live registration carries (0: not registered).
    registered: usize,
    /// Sessions it has sent that are still live (its load as it sees it).
    live_sessions: usize,
}

/// The split, kept current as links come and go.
#[derive(Debug, Clone)]
pub struct ShareBook {
    total: usize,
    lines: Vec<Line>,
    /// The split by weight over the planned links.
    base: Vec<usize>,
    /// Moves made by [`ShareBook::rebalance`] on top of `base`.
    targets: Vec<usize>,
}

impl ShareBook {
    /// `total` slots (at least 1) between orchestrators of these weights
    /// (each at least 1), in `--orch-addr` order.
    pub fn new(total: usize, weights: &[u32]) -> Self {
        let lines = weights
            .iter()
            .map(|&weight| Line {
                weight: weight.max(1),
                availability: Availability::Unknown,
                registered: 0,
                live_sessions: 0,
            })
            .collect();
        let mut book = Self {
            total: total.max(1),
            lines,
            base: Vec::new(),
            targets: Vec::new(),
        };
        book.replan();
        book
    }

    pub fn total(&self) -> usize {
        self.total
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The share link `i` should carry (0: down, refused or standby).
    pub fn target(&self, i: usize) -> usize {
        self.targets.get(i).copied().unwrap_or(0)
    }

    pub fn registered(&self, i: usize) -> usize {
        self.lines.get(i).map_or(0, |l| l.registered)
    }

    pub fn availability(&self, i: usize) -> Availability {
        self.lines
            .get(i)
            .map_or(Availability::Refused, |l| l.availability)
    }

    /// Σ of the registered capacities: never above the total.
    pub fn registered_total(&self) -> usize {
        self.lines.iter().map(|l| l.registered).sum()
    }

    /// What link `i` may register now: its target, less whatever the others
    /// still hold above their own (they give it back at a quiet moment).
    pub fn allowance(&self, i: usize) -> usize {
        let others: usize = self
            .lines
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, l)| l.registered)
            .sum();
        self.target(i).min(self.total.saturating_sub(others))
    }

    /// A link's availability changed; true when the split changed with it.
    pub fn set_availability(&mut self, i: usize, availability: Availability) -> bool {
        let Some(line) = self.lines.get_mut(i) else {
            return false;
        };
        if line.availability == availability {
            return false;
        }
        let was_planned = line.availability.planned();
        line.availability = availability;
        if !availability.planned() {
            line.registered = 0;
            line.live_sessions = 0;
        }
        if was_planned == availability.planned() {
            return false;
        }
        let before = self.targets.clone();
        self.replan();
        before != self.targets
    }

    /// Link `i` now carries `capacity` (0: its registration ended).
    pub fn set_registered(&mut self, i: usize, capacity: usize) {
        if let Some(line) = self.lines.get_mut(i) {
            line.registered = capacity;
        }
    }

    /// Link `i`'s live sessions, for `--orch-rebalance`.
    pub fn set_live_sessions(&mut self, i: usize, sessions: usize) {
        if let Some(line) = self.lines.get_mut(i) {
            line.live_sessions = sessions;
        }
    }

    /// One step of `--orch-rebalance`: a slot moves from the planned link
    /// with the most idle share (keeping at least one) to a registered link
    /// whose share is full. Returns `(from, to)` when a slot moved.
    pub fn rebalance(&mut self) -> Option<(usize, usize)> {
        let full = |i: usize| {
            let line = &self.lines[i];
            line.availability == Availability::Up
                && line.registered > 0
                && line.registered == self.targets[i]
                && line.live_sessions >= self.targets[i]
        };
        let receiver = (0..self.lines.len())
            .filter(|&i| full(i))
            .max_by_key(|&i| (self.lines[i].weight, std::cmp::Reverse(i)))?;
        let spare = |i: usize| self.targets[i].saturating_sub(self.lines[i].live_sessions);
        let donor = (0..self.lines.len())
            .filter(|&i| {
                i != receiver
                    && self.lines[i].availability.planned()
                    && self.targets[i] >= 2
                    && spare(i) >= 1
            })
            .max_by_key(|&i| (spare(i), std::cmp::Reverse(i)))?;
        self.targets[donor] -= 1;
        self.targets[receiver] += 1;
        Some((donor, receiver))
    }

    /// The split by weight over the planned links; moves are forgotten.
    fn replan(&mut self) {
        let weights: Vec<Option<u32>> = self
            .lines
            .iter()
            .map(|l| l.availability.planned().then_some(l.weight))
            .collect();
        self.base = split(self.total, &weights);
        self.targets = self.base.clone();
    }
}

/// `total` slots between the links with a weight (None: not planned).
/// The shares follow the weights (largest remainder, ties to the earlier
/// link), and every planned link gets at least one while there are enough.
/// With fewer slots than links, the heaviest (then the earliest) get one
/// each and the others get none: they wait as standbys.
pub fn split(total: usize, weights: &[Option<u32>]) -> Vec<usize> {
    let mut shares = vec![0usize; weights.len()];
    let mut planned: Vec<usize> = (0..weights.len())
        .filter(|&i| weights[i].is_some())
        .collect();
    if planned.is_empty() || total == 0 {
        return shares;
    }
    let weight = |i: usize| u64::from(weights[i].unwrap_or(0).max(1));
    if total < planned.len() {
        planned.sort_by_key(|&i| (std::cmp::Reverse(weight(i)), i));
        for &i in planned.iter().take(total) {
            shares[i] = 1;
        }
        return shares;
    }
    // In proportion to weight; a link whose proportion is under one slot
    // gets exactly one, and the rest is shared again among the others.
    let mut fixed = vec![false; weights.len()];
    loop {
        let free: Vec<usize> = planned.iter().copied().filter(|&i| !fixed[i]).collect();
        let left = (total - planned.iter().filter(|&&i| fixed[i]).count()) as u64;
        let sum: u64 = free.iter().map(|&i| weight(i)).sum();
        let small: Vec<usize> = free
            .iter()
            .copied()
            .filter(|&i| left * weight(i) < sum)
            .collect();
        if !small.is_empty() && small.len() < free.len() {
            for i in small {
                fixed[i] = true;
                shares[i] = 1;
            }
            continue;
        }
        if !small.is_empty() {
            // Every one is under a slot: one each (there are enough).
            for i in free {
                shares[i] = 1;
            }
            return shares;
        }
        let mut handed = 0u64;
        let mut remainders = Vec::with_capacity(free.len());
        for &i in &free {
            let exact = left * weight(i);
            shares[i] = (exact / sum) as usize;
            handed += exact / sum;
            remainders.push((exact % sum, i));
        }
        remainders.sort_by_key(|&(remainder, i)| (std::cmp::Reverse(remainder), i));
        for &(_, i) in remainders.iter().take((left - handed) as usize) {
            shares[i] += 1;
        }
        return shares;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(weights: &[u32]) -> Vec<Option<u32>> {
        weights.iter().map(|&w| Some(w)).collect()
    }

    #[test]
    fn equal_weights_split_evenly_with_the_odd_slot_first() {
        assert_eq!(split(4, &all(&[1, 1])), vec![2, 2]);
        assert_eq!(split(5, &all(&[1, 1])), vec![3, 2]);
        assert_eq!(split(7, &all(&[1, 1, 1])), vec![3, 2, 2]);
    }

    #[test]
    fn weights_set_the_shares_and_nobody_gets_none() {
        assert_eq!(split(4, &all(&[3, 1])), vec![3, 1]);
        assert_eq!(split(10, &all(&[2, 1])), vec![7, 3]);
        // Nobody is starved by a heavy neighbour.
        assert_eq!(split(3, &all(&[100, 1, 1])), vec![1, 1, 1]);
        assert_eq!(split(6, &all(&[100, 1, 1])), vec![4, 1, 1]);
        for total in 1..40 {
            let shares = split(total, &all(&[5, 3, 2, 1]));
            assert_eq!(shares.iter().sum::<usize>(), total, "{total}: {shares:?}");
        }
    }

    #[test]
    fn fewer_slots_than_orchestrators_leave_standbys() {
        assert_eq!(split(1, &all(&[1, 1, 1])), vec![1, 0, 0]);
        assert_eq!(split(2, &all(&[1, 3, 2])), vec![0, 1, 1]);
    }

    #[test]
    fn unplanned_links_get_nothing() {
        assert_eq!(split(4, &[Some(1), None, Some(1)]), vec![2, 0, 2]);
        assert_eq!(split(4, &[None, None]), vec![0, 0]);
    }

    #[test]
    fn a_lost_link_gives_its_share_to_the_others_and_gets_it_back() {
        let mut book = ShareBook::new(4, &[1, 1]);
        assert_eq!((book.target(0), book.target(1)), (2, 2));
        book.set_availability(0, Availability::Up);
        book.set_availability(1, Availability::Up);
        book.set_registered(0, 2);
        book.set_registered(1, 2);
        assert!(book.set_availability(0, Availability::Down));
        assert_eq!(book.registered(0), 0, "a lost link holds nothing");
        assert_eq!(book.target(1), 4);
        assert_eq!(book.allowance(1), 4);
        book.set_registered(1, 4);
        // It comes back: it may register only what B has given back.
        assert!(book.set_availability(0, Availability::Up));
        assert_eq!((book.target(0), book.target(1)), (2, 2));
        assert_eq!(book.allowance(0), 0, "B still holds 4");
        book.set_registered(1, 2);
        assert_eq!(book.allowance(0), 2);
        book.set_registered(0, 2);
        assert_eq!(book.registered_total(), 4);
    }

    #[test]
    fn the_registered_total_never_passes_the_capacity() {
        let mut book = ShareBook::new(4, &[1, 1, 1]);
        for i in 0..3 {
            book.set_availability(i, Availability::Up);
        }
        // Registrations in every order, each taking its allowance.
        for order in [[0, 1, 2], [2, 1, 0], [1, 0, 2]] {
            for i in 0..3 {
                book.set_registered(i, 0);
            }
            for &i in &order {
                let grant = book.allowance(i);
                book.set_registered(i, grant);
                assert!(book.registered_total() <= 4);
            }
            assert_eq!(book.registered_total(), 4);
        }
    }

    #[test]
    fn a_refusal_is_final_and_its_share_is_spread() {
        let mut book = ShareBook::new(4, &[3, 1, 1]);
        assert_eq!(
            (0..3).map(|i| book.target(i)).collect::<Vec<_>>(),
            [2, 1, 1]
        );
        book.set_availability(2, Availability::Refused);
        assert_eq!(
            (0..3).map(|i| book.target(i)).collect::<Vec<_>>(),
            [3, 1, 0]
        );
        assert_eq!(book.allowance(2), 0);
    }

    #[test]
    fn a_standby_takes_over_when_a_registered_link_goes() {
        let mut book = ShareBook::new(1, &[1, 1]);
        assert_eq!((book.target(0), book.target(1)), (1, 0));
        book.set_availability(0, Availability::Down);
        assert_eq!((book.target(0), book.target(1)), (0, 1));
    }

    #[test]
    fn rebalance_moves_one_idle_slot_to_a_full_link() {
        let mut book = ShareBook::new(4, &[1, 1]);
        for i in 0..2 {
            book.set_availability(i, Availability::Up);
            book.set_registered(i, 2);
        }
        book.set_live_sessions(0, 2);
        book.set_live_sessions(1, 0);
        assert_eq!(book.rebalance(), Some((1, 0)));
        assert_eq!((book.target(0), book.target(1)), (3, 1));
        // A's registration has not grown yet: no further move until it has.
        assert_eq!(book.rebalance(), None);
        book.set_registered(1, 1);
        book.set_registered(0, 3);
        book.set_live_sessions(0, 3);
        // B keeps its last slot.
        assert_eq!(book.rebalance(), None);
        // Demand turns: B fills its one slot, A has idle slots.
        book.set_live_sessions(0, 1);
        book.set_live_sessions(1, 1);
        assert_eq!(book.rebalance(), Some((0, 1)));
        assert_eq!((book.target(0), book.target(1)), (2, 2));
    }

    #[test]
    fn no_move_when_nobody_is_full_or_nobody_has_room() {
        let mut book = ShareBook::new(4, &[1, 1]);
        for i in 0..2 {
            book.set_availability(i, Availability::Up);
            book.set_registered(i, 2);
        }
        book.set_live_sessions(0, 1);
        assert_eq!(book.rebalance(), None);
        book.set_live_sessions(0, 2);
        book.set_live_sessions(1, 2);
        assert_eq!(book.rebalance(), None);
    }
}
