//! The cluster as one plan sees it: each store's effective state and how many
//! peers, learners being seeded and leaders it holds — updated as the plan
//! orders changes, so that later decisions of the same plan see earlier ones.

use std::collections::{BTreeMap, HashMap};

use shoal_proto::{Peer, RegionInfo, StoreState};

use super::{Change, Cooldown};

#[derive(Clone, Debug, Default)]
pub(super) struct Model {
    states: BTreeMap<u64, StoreState>,
    /// Peers (voters and learners) per store, the meta region's included.
    pub regions: HashMap<u64, usize>,
    /// Learners per store: peers still being seeded, or about to be.
    pub learners: HashMap<u64, usize>,
    pub leaders: HashMap<u64, usize>,
}

impl Model {
    pub fn new(stores: &BTreeMap<u64, StoreState>, regions: &[RegionInfo], cooling: &HashMap<u64, Cooldown>) -> Model {
        let mut m = Model { states: stores.clone(), ..Default::default() };
        for info in regions {
            let Some(r) = info.region.as_ref() else { continue };
            for p in &r.peers {
                *m.regions.entry(p.store_id).or_default() += 1;
                if p.is_learner {
                    *m.learners.entry(p.store_id).or_default() += 1;
                }
            }
            if info.leader_store_id != 0 {
                *m.leaders.entry(info.leader_store_id).or_default() += 1;
            }
            // A learner ordered recently and not in the directory yet.
            if let Some(store) = cooling.get(&r.id).and_then(|c| c.adds_learner_on)
                && !r.peers.iter().any(|p| p.store_id == store)
            {
                *m.regions.entry(store).or_default() += 1;
                *m.learners.entry(store).or_default() += 1;
            }
        }
        m
    }

    pub fn state(&self, store: u64) -> StoreState {
        self.states.get(&store).copied().unwrap_or(StoreState::Unknown)
    }

    /// A store that may receive peers and keep them: UP or JOINING.
    pub fn good(&self, store: u64) -> bool {
        matches!(self.state(store), StoreState::Up | StoreState::Joining)
    }

    /// Stores that still serve (not down, not removed): their voters count.
    pub fn live(&self, store: u64) -> bool {
        matches!(self.state(store), StoreState::Up | StoreState::Joining | StoreState::Draining)
    }

    pub fn good_stores(&self) -> impl Iterator<Item = u64> + '_ {
        self.states.keys().copied().filter(|s| self.good(*s))
    }

    pub fn stores_in(&self, state: StoreState) -> impl Iterator<Item = u64> + '_ {
        self.states.iter().filter(move |(_, st)| **st == state).map(|(id, _)| *id)
    }

    pub fn count(&self, store: u64) -> usize {
        self.regions.get(&store).copied().unwrap_or(0)
    }

    pub fn seeding(&self, store: u64) -> usize {
        self.learners.get(&store).copied().unwrap_or(0)
    }

    pub fn leader_count(&self, store: u64) -> usize {
        self.leaders.get(&store).copied().unwrap_or(0)
    }

    /// The good store that should get a new peer of a region on `taken`: not
    /// holding it, under its limit of learners being seeded, fewest regions.
    pub fn best_target(&self, taken: &[Peer], max_snapshots: usize) -> Option<u64> {
        self.good_stores()
            .filter(|s| !taken.iter().any(|p| p.store_id == *s) && self.seeding(*s) < max_snapshots)
            .min_by_key(|s| (self.count(*s), *s))
    }

    pub fn apply(&mut self, changes: &[Change]) {
        for c in changes {
            match c {
                Change::AddLearner { store_id } => {
                    *self.regions.entry(*store_id).or_default() += 1;
                    *self.learners.entry(*store_id).or_default() += 1;
                }
                Change::Promote(p) => dec(&mut self.learners, p.store_id),
                Change::Remove(p) => {
                    dec(&mut self.regions, p.store_id);
                    if p.is_learner {
                        dec(&mut self.learners, p.store_id);
                    }
                }
            }
        }
    }

    pub fn move_leader(&mut self, from: u64, to: u64) {
        dec(&mut self.leaders, from);
        *self.leaders.entry(to).or_default() += 1;
    }
}

fn dec(map: &mut HashMap<u64, usize>, key: u64) {
    if let Some(n) = map.get_mut(&key) {
        *n = n.saturating_sub(1);
    }
}
