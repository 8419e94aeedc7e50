//! What the meta leader knows only from heartbeats and keeps in memory: store
//! stats and when each store was last heard from, region sizes, pending peers,
//! and regions ordered recently (cooling). Rebuilt from heartbeats after a meta
//! leader change.
//!
//! Down stores: a store not heard from for longer than the down time is shown
//! DOWN. A store that becomes meta leader (again) has not heard anyone while it
//! was not leading, so it counts every store as last heard when it became
//! leader: a meta leader change never marks stores down. Leadership is seen
//! from the requests it serves: every store heartbeats the leader, so a gap of
//! [`LeaderView::leader_gap`] without any means this store was not leading.
//!
//! Each leadership has a [`LeaderView::report_epoch`], a random number: stores
//! send only the region reports that changed since the last one this
//! leadership acknowledged, and a full report to a leadership they have not
//! reported to (a partial one naming another epoch is answered with a request
//! for everything).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use shoal_proto::{RegionEpoch, StoreState, StoreStats};

use crate::meta::placement::Cooldown;

/// How long a region that was just ordered to move is left alone (unless its
/// epoch or its leader changes first).
pub const COOLDOWN: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug)]
struct Cooling {
    at: Instant,
    epoch: RegionEpoch,
    /// The store that led the region when it was ordered.
    leader_store: u64,
    cooldown: Cooldown,
}

#[derive(Debug)]
pub struct LeaderView {
    /// A silence this long between served requests means leadership was lost.
    pub leader_gap: Duration,
    stores: HashMap<u64, StoreStats>,
    seen: HashMap<u64, Instant>,
    /// Region id → (approximate size, approximate keys, written bytes per second).
    regions: HashMap<u64, (u64, u64, u64)>,
    pending: HashMap<u64, HashSet<u64>>,
    cooling: HashMap<u64, Cooling>,
    last_served: Option<Instant>,
    leader_since: Instant,
    report_epoch: u64,
}

impl Default for LeaderView {
    fn default() -> Self {
        LeaderView::new(Duration::from_secs(10))
    }
}

fn new_report_epoch() -> u64 {
    rand::random::<u64>() | 1
}

/// The state to show for a store stored as `stored`, last heard at `last_seen`.
pub fn effective_state(stored: StoreState, last_seen: Instant, now: Instant, max_down: Duration) -> StoreState {
    match stored {
        StoreState::Up | StoreState::Joining | StoreState::Draining if now.saturating_duration_since(last_seen) > max_down => {
            StoreState::Down
        }
        other => other,
    }
}

impl LeaderView {
    pub fn new(leader_gap: Duration) -> LeaderView {
        LeaderView {
            leader_gap,
            stores: HashMap::new(),
            seen: HashMap::new(),
            regions: HashMap::new(),
            pending: HashMap::new(),
            cooling: HashMap::new(),
            last_served: None,
            leader_since: Instant::now(),
            report_epoch: new_report_epoch(),
        }
    }

    /// This leadership's epoch for partial region reports (never 0).
    pub fn report_epoch(&self) -> u64 {
        self.report_epoch
    }

    /// Called for each request served as meta leader.
    pub fn served(&mut self, now: Instant) {
        if self.last_served.is_none_or(|t| now.saturating_duration_since(t) > self.leader_gap) {
            self.leader_since = now;
            self.report_epoch = new_report_epoch();
            self.seen.clear();
            self.cooling.clear();
        }
        self.last_served = Some(now);
    }

    pub fn heard(&mut self, store_id: u64, stats: StoreStats, now: Instant) {
        self.stores.insert(store_id, stats);
        self.seen.insert(store_id, now);
    }

    pub fn stats(&self, store_id: u64) -> Option<StoreStats> {
        self.stores.get(&store_id).copied()
    }

    /// When `store_id` was last heard from, as this leader counts it.
    pub fn last_seen(&self, store_id: u64) -> Instant {
        self.seen.get(&store_id).copied().unwrap_or(self.leader_since).max(self.leader_since)
    }

    pub fn state(&self, store_id: u64, stored: StoreState, now: Instant, max_down: Duration) -> StoreState {
        effective_state(stored, self.last_seen(store_id), now, max_down)
    }

    pub fn region_report(&mut self, region_id: u64, sizes: (u64, u64, u64), pending: HashSet<u64>) {
        self.regions.insert(region_id, sizes);
        self.pending.insert(region_id, pending);
    }

    pub fn region_sizes(&self, region_id: u64) -> Option<(u64, u64, u64)> {
        self.regions.get(&region_id).copied()
    }

    pub fn pending(&self) -> &HashMap<u64, HashSet<u64>> {
        &self.pending
    }

    /// Leaves `region_id`, ordered under `epoch` while `leader_store` led it,
    /// alone for a while.
    pub fn cool(&mut self, region_id: u64, epoch: RegionEpoch, leader_store: u64, cooldown: Cooldown, now: Instant) {
        self.cooling.insert(region_id, Cooling { at: now, epoch, leader_store, cooldown });
    }

    /// Regions still cooling: ordered less than [`COOLDOWN`] ago, with the
    /// epoch and the leader they were ordered under (`current` gives the
    /// directory's). A leader change ends it: a transfer is done, and a
    /// membership order to the old leader can no longer be carried out.
    pub fn cooling(&mut self, now: Instant, current: impl Fn(u64) -> Option<(RegionEpoch, u64)>) -> HashMap<u64, Cooldown> {
        self.cooling.retain(|id, c| now.saturating_duration_since(c.at) < COOLDOWN && current(*id) == Some((c.epoch, c.leader_store)));
        self.cooling.iter().map(|(id, c)| (*id, c.cooldown)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_is_down_only_after_the_down_time_and_a_new_leader_restarts_the_clock() {
        let max_down = Duration::from_secs(60);
        let t0 = Instant::now();
        let mut v = LeaderView::new(Duration::from_secs(5));
        v.served(t0);
        v.heard(1, StoreStats::default(), t0);
        let later = t0 + Duration::from_secs(61);
        assert_eq!(v.state(1, StoreState::Up, t0 + Duration::from_secs(59), max_down), StoreState::Up);
        assert_eq!(v.state(1, StoreState::Up, later, max_down), StoreState::Down);
        assert_eq!(v.state(2, StoreState::Draining, later, max_down), StoreState::Down, "never heard since leading");
        assert_eq!(v.state(3, StoreState::Pending, later, max_down), StoreState::Pending);
        assert_eq!(v.state(4, StoreState::Tombstone, later, max_down), StoreState::Tombstone);
        // Served without a gap: still the same leadership.
        let epoch = v.report_epoch();
        v.served(t0 + Duration::from_secs(4));
        assert_eq!(v.state(1, StoreState::Up, later, max_down), StoreState::Down);
        assert_eq!(v.report_epoch(), epoch, "partial reports stay valid");
        // A gap: this store was not leading; every store counts as heard now.
        let back = t0 + Duration::from_secs(30);
        v.served(back);
        assert_eq!(v.state(1, StoreState::Up, later, max_down), StoreState::Up);
        assert_ne!(v.report_epoch(), epoch, "a new leadership wants full reports");
        assert_ne!(v.report_epoch(), 0);
        assert_eq!(v.state(1, StoreState::Up, back + Duration::from_secs(61), max_down), StoreState::Down);
    }

    #[test]
    fn cooling_ends_with_time_a_new_epoch_or_a_new_leader() {
        let t0 = Instant::now();
        let mut v = LeaderView::default();
        let e1 = RegionEpoch { conf_ver: 1, version: 1 };
        let e2 = RegionEpoch { conf_ver: 2, version: 1 };
        v.cool(5, e1, 1, Cooldown { adds_learner_on: Some(4), ..Default::default() }, t0);
        v.cool(6, e1, 1, Cooldown::default(), t0);
        v.cool(7, e1, 1, Cooldown::default(), t0);
        let epochs = |id: u64| {
            Some(match id {
                5 => (e1, 1),
                6 => (e2, 1),
                _ => (e1, 2),
            })
        };
        let c = v.cooling(t0 + Duration::from_secs(1), epochs);
        assert_eq!(c.keys().copied().collect::<Vec<_>>(), vec![5], "region 6 changed epoch, region 7 leader");
        assert_eq!(c[&5].adds_learner_on, Some(4));
        assert!(v.cooling(t0 + COOLDOWN, epochs).is_empty());
    }
}
