//! The cluster as one plan sees it: each store's effective state, its zone,
//! and how many peers, learners being seeded and leaders it holds — updated as
//! the plan orders changes, so that later decisions of the same plan see
//! earlier ones. A voter that a promotion under way will remove already counts
//! as gone ([`Model::removals`], see `repair::project_removals`): otherwise
//! the stores giving up regions to a store being seeded look loaded until the
//! promotions land, and balance sends it more than its share.
//!
//! Zones: a store's *domain* is its `zone` label, or the store itself when it
//! has none (an unlabeled store shares a failure domain with no other). A
//! region's replicas should sit in distinct domains while enough domains
//! have good stores.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use shoal_proto::{Peer, RegionInfo, StoreState};

use super::{Change, Cooldown};

#[derive(Clone, Debug, Default)]
pub(super) struct Model {
    states: BTreeMap<u64, StoreState>,
    /// Each labeled store's zone.
    zones: BTreeMap<u64, String>,
    /// Peers (voters and learners) per store, the meta region's included.
    pub regions: HashMap<u64, usize>,
    /// Learners per store: peers still being seeded, or about to be.
    pub learners: HashMap<u64, usize>,
    pub leaders: HashMap<u64, usize>,
    /// By region: the voter its learner's promotion will remove, already
    /// subtracted from `regions`.
    pub removals: HashMap<u64, Peer>,
}

impl Model {
    pub fn new(
        stores: &BTreeMap<u64, StoreState>,
        zones: &BTreeMap<u64, String>,
        regions: &[RegionInfo],
        cooling: &HashMap<u64, Cooldown>,
    ) -> Model {
        let zones = zones.iter().filter(|(_, z)| !z.is_empty()).map(|(s, z)| (*s, z.clone())).collect();
        let mut m = Model { states: stores.clone(), zones, ..Default::default() };
        for info in regions {
            let Some(r) = info.region.as_ref() else { continue };
            for p in &r.peers {
                *m.regions.entry(p.store_id).or_default() += 1;
                if p.is_learner {
                    *m.learners.entry(p.store_id).or_default() += 1;
                }
            }
            let cooldown = cooling.get(&r.id);
            // A leader ordered to move recently counts where it goes.
            let leader = match cooldown.and_then(|c| c.leads_to) {
                Some(to) if info.leader_store_id != 0 => to,
                _ => info.leader_store_id,
            };
            if leader != 0 {
                *m.leaders.entry(leader).or_default() += 1;
            }
            // A learner ordered recently and not in the directory yet.
            if let Some(store) = cooldown.and_then(|c| c.adds_learner_on)
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

    /// The failure domain of `store`: its zone, or the store itself.
    pub fn domain(&self, store: u64) -> String {
        self.zones.get(&store).cloned().unwrap_or_else(|| format!("store-{store}"))
    }

    /// The domains of the peers in `peers` on good stores.
    pub fn domains_of<'a>(&self, peers: impl Iterator<Item = &'a Peer>) -> BTreeSet<String> {
        peers.filter(|p| self.good(p.store_id)).map(|p| self.domain(p.store_id)).collect()
    }

    /// Whether two of `voters` (on good stores) share a domain.
    pub fn shares_domain(&self, voters: &[Peer]) -> bool {
        let good: Vec<&Peer> = voters.iter().filter(|v| self.good(v.store_id)).collect();
        self.domains_of(good.iter().copied()).len() < good.len()
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
    /// holding it, under its limit of learners being seeded; in a domain none
    /// of `taken`'s good peers is in if there is one, then fewest regions.
    pub fn best_target(&self, taken: &[Peer], max_snapshots: usize) -> Option<u64> {
        let used = self.domains_of(taken.iter());
        self.good_stores()
            .filter(|s| !taken.iter().any(|p| p.store_id == *s) && self.seeding(*s) < max_snapshots)
            .min_by_key(|s| (used.contains(&self.domain(*s)), self.count(*s), *s))
    }

    /// A good store for a region on `taken` in a domain none of its good
    /// peers is in (to spread it over zones), if any.
    pub fn new_domain_target(&self, taken: &[Peer], max_snapshots: usize) -> Option<u64> {
        let used = self.domains_of(taken.iter());
        self.best_target(taken, max_snapshots).filter(|s| !used.contains(&self.domain(*s)))
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

    /// Counts `region`'s voter that its promotion would remove as gone.
    pub fn project_removal(&mut self, region: u64, voter: Peer) {
        dec(&mut self.regions, voter.store_id);
        self.removals.insert(region, voter);
    }

    /// Undoes `region`'s projected removal, before an order for it is applied.
    pub fn unproject(&mut self, region: u64) {
        if let Some(v) = self.removals.remove(&region) {
            *self.regions.entry(v.store_id).or_default() += 1;
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
