//! [`StoreLiveness`]: which neighbouring stores are alive, for hibernated regions.
//!
//! An asleep follower runs no election timer, so it would never notice that
//! its leader's store died ([`super::peer`]'s `hibernate` module). The store
//! notices instead, once for all its regions: each tick it pings every
//! *neighbour* (a store holding a peer of one of its regions) with an empty
//! `RaftMessage` of region 0, and it notes the tick of every message it receives
//! from a store, pings and Raft traffic alike. A neighbour silent for an election
//! timeout is reported once by [`StoreLiveness::newly_silent`]; the store then
//! wakes the asleep leaders of regions with a peer there and the asleep
//! followers whose leader was there (`Peer::wakes_for_silent_store`).
//!
//! The pings also say whether their store is *leaving* (stopping, and handing
//! its leaders away: [`StoreLiveness::set_leaving`]); a leaving store is
//! offered no leadership ([`StoreLiveness::can_lead`]), so that stores
//! stopping together do not hand their regions back and forth; nor is a
//! silent one.
//!
//! Cost: one small message per neighbour per tick, however many regions.
//! Collections are ordered so that a simulation replays exactly.

use std::collections::{BTreeMap, BTreeSet};

use shoal_proto::RaftMessage;

pub struct StoreLiveness {
    store_id: u64,
    /// Ticks of silence after which a neighbour counts as gone.
    silent_after: u64,
    neighbours: BTreeSet<u64>,
    /// Store id → the tick its last message arrived (or it became a neighbour).
    heard_at: BTreeMap<u64, u64>,
    /// Neighbours already reported silent and not heard from since.
    silent: BTreeSet<u64>,
    /// This store is stopping: its pings say so.
    leaving: bool,
    /// Neighbours whose last ping said they are stopping.
    leaving_stores: BTreeSet<u64>,
}

impl StoreLiveness {
    pub fn new(store_id: u64, silent_after: u64) -> StoreLiveness {
        StoreLiveness {
            store_id,
            silent_after,
            neighbours: BTreeSet::new(),
            heard_at: BTreeMap::new(),
            silent: BTreeSet::new(),
            leaving: false,
            leaving_stores: BTreeSet::new(),
        }
    }

    /// This store is stopping: from the next tick its pings say so.
    pub fn set_leaving(&mut self) {
        self.leaving = true;
    }

    /// Whether `store` is stopping: this one once [`Self::set_leaving`], a
    /// neighbour whose last ping said so.
    pub fn is_leaving(&self, store: u64) -> bool {
        if store == self.store_id { self.leaving } else { self.leaving_stores.contains(&store) }
    }

    /// The neighbours that cannot take a region's leadership at tick `now`:
    /// stopping, or silent for an election timeout.
    pub fn unavailable(&self, now: u64) -> BTreeSet<u64> {
        self.neighbours.iter().filter(|s| !self.can_lead(**s, now)).copied().collect()
    }

    /// Whether `store` may be handed a region's leadership at tick `now`: it
    /// is not stopping, and it was heard from within an election timeout (a
    /// transfer to a dead store would hold the region's writes until raft
    /// gives up on it, an election timeout later).
    pub fn can_lead(&self, store: u64, now: u64) -> bool {
        !self.is_leaving(store) && self.is_alive(store, now)
    }

    /// A ping from `ping.from_store_id` arrived: notes whether it is leaving.
    pub fn pinged(&mut self, ping: &RaftMessage) {
        if ping.leaving {
            self.leaving_stores.insert(ping.from_store_id);
        } else {
            self.leaving_stores.remove(&ping.from_store_id);
        }
    }

    /// Whether `msg` is a store ping rather than a region's Raft message.
    pub fn is_ping(msg: &RaftMessage) -> bool {
        msg.region_id == 0
    }

    /// A message from `store` arrived at tick `now`.
    pub fn heard(&mut self, store: u64, now: u64) {
        self.heard_at.insert(store, now);
        self.silent.remove(&store);
    }

    /// Replaces the set of neighbours; a new one counts as heard from now.
    pub fn set_neighbours(&mut self, neighbours: BTreeSet<u64>, now: u64) {
        for s in &neighbours {
            self.heard_at.entry(*s).or_insert(now);
        }
        self.heard_at.retain(|s, _| neighbours.contains(s));
        self.silent.retain(|s| neighbours.contains(s));
        self.neighbours = neighbours;
        self.neighbours.remove(&self.store_id);
    }

    /// Whether `store` (this one, or a neighbour) was heard from within the
    /// last election timeout at tick `now`.
    pub fn is_alive(&self, store: u64, now: u64) -> bool {
        store == self.store_id || self.heard_at.get(&store).is_some_and(|at| now.saturating_sub(*at) <= self.silent_after)
    }

    /// This tick's pings, one per neighbour.
    pub fn pings(&self) -> Vec<RaftMessage> {
        self.neighbours
            .iter()
            .map(|to| RaftMessage {
                region_id: 0,
                from_store_id: self.store_id,
                to_store_id: *to,
                message: Vec::new(),
                hibernate: false,
                leaving: self.leaving,
            })
            .collect()
    }

    /// Neighbours that fell silent at tick `now`, each reported once until heard again.
    pub fn newly_silent(&mut self, now: u64) -> Vec<u64> {
        let gone: Vec<u64> = self
            .neighbours
            .iter()
            .filter(|s| !self.silent.contains(s) && self.heard_at.get(s).is_some_and(|at| now.saturating_sub(*at) > self.silent_after))
            .copied()
            .collect();
        self.silent.extend(&gone);
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_neighbour_is_reported_once_when_silent_and_again_after_it_spoke() {
        let mut l = StoreLiveness::new(1, 10);
        l.set_neighbours([1, 2, 3].into(), 0);
        assert_eq!(l.pings().iter().map(|p| p.to_store_id).collect::<Vec<_>>(), vec![2, 3], "never pings itself");
        assert!(l.pings().iter().all(StoreLiveness::is_ping));
        l.heard(2, 8);
        assert!(l.newly_silent(10).is_empty(), "nobody silent for more than 10 ticks yet");
        assert!(l.is_alive(1, 100) && l.is_alive(3, 10) && !l.is_alive(3, 11) && !l.is_alive(7, 0));
        assert_eq!(l.newly_silent(11), vec![3]);
        assert!(l.newly_silent(12).is_empty(), "store 3 is reported once");
        assert_eq!(l.newly_silent(19), vec![2]);
        l.heard(3, 20);
        assert!(l.newly_silent(30).is_empty());
        assert_eq!(l.newly_silent(31), vec![3], "heard again, then silent again: reported again");
    }

    #[test]
    fn a_new_neighbour_counts_as_heard_when_it_appears() {
        let mut l = StoreLiveness::new(1, 10);
        l.set_neighbours([2].into(), 0);
        l.set_neighbours([2, 4].into(), 50);
        assert_eq!(l.newly_silent(55), vec![2]);
        assert_eq!(l.newly_silent(61), vec![4]);
        l.set_neighbours([4].into(), 62);
        assert_eq!(l.pings().len(), 1);
    }

    #[test]
    fn a_leaving_store_says_so_in_its_pings_and_its_neighbours_remember_until_it_stops_saying_it() {
        let mut one = StoreLiveness::new(1, 10);
        let mut two = StoreLiveness::new(2, 10);
        one.set_neighbours([2].into(), 0);
        assert!(!one.is_leaving(1) && one.pings().iter().all(|p| !p.leaving));
        one.set_leaving();
        assert!(one.is_leaving(1));
        two.set_neighbours([1, 3].into(), 0);
        two.pinged(&one.pings()[0]);
        assert!(two.is_leaving(1) && !two.is_leaving(2) && !two.is_leaving(3));
        assert_eq!(two.unavailable(10), [1].into(), "store 1 is stopping");
        assert_eq!(two.unavailable(11), [1, 3].into(), "store 3 is silent too");
        assert!(!two.can_lead(1, 0), "a stopping store is offered no leadership");
        assert!(two.can_lead(3, 10) && !two.can_lead(3, 11), "nor is one silent for an election timeout");
        assert!(two.can_lead(2, 1_000), "this store can, as long as it is not stopping");
        // Restarted (a new process is not leaving): the next ping clears it.
        let mut one = StoreLiveness::new(1, 10);
        one.set_neighbours([2].into(), 0);
        two.pinged(&one.pings()[0]);
        assert!(!two.is_leaving(1));
    }
}
