//! Placement over a simulated cluster: each plan's orders are applied to a
//! model of the regions (a learner is seeded `seed_rounds` rounds after it is
//! added, one unless a test says otherwise), and
//! the invariants are checked after every round until placement has nothing
//! left to do.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shoal_proto::{Peer, Region, RegionEpoch, RegionInfo, StoreState};

use super::*;
use crate::meta::META_REGION_ID;

struct Sim {
    stores: BTreeMap<u64, StoreState>,
    zones: BTreeMap<u64, String>,
    regions: Vec<RegionInfo>,
    pending: HashMap<u64, HashSet<u64>>,
    cfg: PlacementConfig,
    next_peer: u64,
    rounds: usize,
    /// Rounds a learner stays pending (being seeded) after it is added.
    seed_rounds: usize,
    /// The round each learner was added in, by peer id.
    added: HashMap<u64, usize>,
}

fn region(id: u64, leader: u64, stores: &[u64]) -> RegionInfo {
    RegionInfo {
        region: Some(Region {
            id,
            start_key: if id == META_REGION_ID { vec![] } else { vec![id as u8] },
            end_key: vec![],
            epoch: Some(RegionEpoch { conf_ver: 1, version: 1 }),
            peers: stores.iter().map(|s| Peer { id: id * 100 + s, store_id: *s, is_learner: false }).collect(),
        }),
        leader_store_id: leader,
        ..Default::default()
    }
}

impl Sim {
    fn new(stores: &[(u64, StoreState)], regions: Vec<RegionInfo>, cfg: PlacementConfig) -> Sim {
        Sim {
            stores: stores.iter().copied().collect(),
            zones: BTreeMap::new(),
            regions,
            pending: HashMap::new(),
            cfg,
            next_peer: 100_000,
            rounds: 0,
            seed_rounds: 1,
            added: HashMap::new(),
        }
    }

    fn plan(&self) -> Plan {
        let cluster =
            Cluster { stores: &self.stores, zones: &self.zones, regions: &self.regions, pending: &self.pending, cooling: &HashMap::new() };
        plan(&cluster, &self.cfg)
    }

    fn region_mut(&mut self, id: u64) -> &mut RegionInfo {
        self.regions.iter_mut().find(|r| r.region.as_ref().unwrap().id == id).unwrap()
    }

    fn voters(info: &RegionInfo) -> usize {
        info.region.as_ref().unwrap().peers.iter().filter(|p| !p.is_learner).count()
    }

    /// One round: plan, check, apply. Returns the plan.
    fn step(&mut self) -> Plan {
        self.rounds += 1;
        let p = self.plan();
        let mut ordered = HashSet::new();
        for id in p.changes.iter().map(|c| c.region_id).chain(p.transfers.iter().map(|t| t.region_id)) {
            assert!(ordered.insert(id), "two orders for region {id} in one plan: {p:?}");
        }
        // Learners added `seed_rounds` rounds ago are caught up now.
        let (rounds, seed_rounds, added) = (self.rounds, self.seed_rounds, &self.added);
        for peers in self.pending.values_mut() {
            peers.retain(|p| added.get(p).is_some_and(|at| at + seed_rounds > rounds));
        }
        self.pending.retain(|_, peers| !peers.is_empty());
        for t in &p.transfers {
            let info = self.region_mut(t.region_id);
            assert_eq!(info.leader_store_id, t.from_store);
            let to = info.region.as_ref().unwrap().peers.iter().find(|x| x.id == t.to.id).copied();
            assert!(to.is_some_and(|x| !x.is_learner), "leadership to a voter of the region: {t:?}");
            info.leader_store_id = t.to.store_id;
        }
        for order in &p.changes {
            let mut next = self.next_peer;
            let info = self.region_mut(order.region_id);
            assert_eq!(info.leader_store_id, order.leader_store);
            let before = Self::voters(info);
            let leader = info.leader_store_id;
            let r = info.region.as_mut().unwrap();
            let mut added = None;
            for c in &order.changes {
                match c {
                    Change::AddLearner { store_id } => {
                        assert!(!r.peers.iter().any(|x| x.store_id == *store_id), "two peers of region {} on store {store_id}", r.id);
                        r.peers.push(Peer { id: next, store_id: *store_id, is_learner: true });
                        added = Some(next);
                        next += 1;
                    }
                    Change::Promote(x) => {
                        let peer = r.peers.iter_mut().find(|y| y.id == x.id).expect("promoted peer exists");
                        assert!(peer.is_learner);
                        peer.is_learner = false;
                    }
                    Change::Remove(x) => {
                        assert_ne!(x.store_id, leader, "the leader is never removed: {order:?}");
                        r.peers.retain(|y| y.id != x.id);
                    }
                }
            }
            r.epoch.as_mut().unwrap().conf_ver += 1;
            let after = Self::voters(info);
            assert!(after >= before.min(self.cfg.replication_factor), "region {} went from {before} to {after} voters", order.region_id);
            self.next_peer = next;
            if let Some(id) = added {
                self.pending.entry(order.region_id).or_default().insert(id);
                self.added.insert(id, self.rounds);
            }
        }
        for s in &p.seeded {
            assert_eq!(self.stores[s], StoreState::Joining);
            self.stores.insert(*s, StoreState::Up);
        }
        self.check_learner_limit();
        p
    }

    fn check_learner_limit(&self) {
        let mut learners: HashMap<u64, usize> = HashMap::new();
        for info in &self.regions {
            for x in info.region.as_ref().unwrap().peers.iter().filter(|x| x.is_learner) {
                *learners.entry(x.store_id).or_default() += 1;
            }
        }
        for (s, n) in learners {
            assert!(n <= self.cfg.max_snapshots_per_store, "{n} learners seeded at once on store {s}");
        }
    }

    /// Steps until a plan orders nothing; panics if that takes too long.
    fn settle(&mut self) {
        for _ in 0..500 {
            // Done when nothing is ordered and no learner is waiting to be seeded.
            let waiting = !self.pending.is_empty();
            if self.step().is_empty() && !waiting {
                return;
            }
        }
        panic!("placement never settled: {:?}", self.plan());
    }

    fn count(&self, store: u64) -> usize {
        self.regions.iter().filter(|r| r.region.as_ref().unwrap().peers.iter().any(|x| x.store_id == store)).count()
    }

    fn leaders(&self, store: u64) -> usize {
        self.regions.iter().filter(|r| r.leader_store_id == store).count()
    }

    fn assert_healthy(&self) {
        for info in &self.regions {
            let r = info.region.as_ref().unwrap();
            assert!(r.peers.iter().all(|x| !x.is_learner), "learner left in region {}", r.id);
            assert_eq!(r.peers.len(), self.cfg.replication_factor, "region {} has {:?}", r.id, r.peers);
            assert!(r.peers.iter().all(|x| self.stores[&x.store_id] == StoreState::Up), "region {} on a store not up: {:?}", r.id, r.peers);
            assert!(r.peers.iter().any(|x| x.store_id == info.leader_store_id));
        }
    }

    fn assert_balanced(&self) {
        let counts: Vec<usize> = self.stores.iter().filter(|(_, st)| **st == StoreState::Up).map(|(s, _)| self.count(*s)).collect();
        let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(hi - lo <= self.cfg.tolerance, "region counts {counts:?}");
    }
}

/// The meta region and `n` data regions over stores 1..=3, all led by store 1.
fn three_store_regions(n: u64) -> Vec<RegionInfo> {
    std::iter::once(region(META_REGION_ID, 1, &[1, 2, 3])).chain((2..n + 2).map(|id| region(id, 1, &[1, 2, 3]))).collect()
}

fn up(ids: &[u64]) -> Vec<(u64, StoreState)> {
    ids.iter().map(|s| (*s, StoreState::Up)).collect()
}

#[test]
fn a_joining_store_is_seeded_a_few_at_a_time_up_to_its_share_then_marked_done() {
    let mut stores = up(&[1, 2, 3]);
    stores.push((4, StoreState::Joining));
    let cfg = PlacementConfig { max_snapshots_per_store: 4, ..Default::default() };
    let mut sim = Sim::new(&stores, three_store_regions(11), cfg);
    let first = sim.step();
    let adds: Vec<&PeerOrder> = first.changes.iter().filter(|c| matches!(c.changes[..], [Change::AddLearner { store_id: 4 }])).collect();
    assert_eq!(adds.len(), 4, "max_snapshots_per_store learners at once: {first:?}");
    assert!(first.seeded.is_empty());
    let mut seeded_at = None;
    for _ in 0..200 {
        let p = sim.step();
        let elsewhere: Vec<&PeerOrder> =
            p.changes.iter().filter(|c| c.changes.iter().any(|x| matches!(x, Change::AddLearner { store_id } if *store_id != 4))).collect();
        assert!(elsewhere.is_empty(), "the old stores trade no regions while store 4 is seeded: {elsewhere:?}");
        if !p.seeded.is_empty() {
            assert_eq!(p.seeded, vec![4]);
            seeded_at = Some(sim.rounds);
        }
        if p.is_empty() && seeded_at.is_some() {
            break;
        }
    }
    assert!(seeded_at.is_some(), "store 4 was never marked seeded");
    assert_eq!(sim.stores[&4], StoreState::Up);
    sim.assert_healthy();
    sim.assert_balanced();
    assert_eq!(sim.count(4), 9, "36 peers over 4 stores");
}

#[test]
fn a_joining_store_seeded_slowly_many_at_a_time_gets_its_share_and_no_more() {
    // Leaders spread over the three stores, eight learners seeded at once,
    // each for four rounds: meanwhile the stores giving regions up must count
    // as having given them up, or the new store is sent more than its share
    // and the surplus moves on again.
    let mut stores = up(&[1, 2, 3]);
    stores.push((4, StoreState::Joining));
    let regions =
        std::iter::once(region(META_REGION_ID, 1, &[1, 2, 3])).chain((2..20).map(|id| region(id, 1 + id % 3, &[1, 2, 3]))).collect();
    let mut sim = Sim::new(&stores, regions, PlacementConfig { max_snapshots_per_store: 8, ..Default::default() });
    sim.seed_rounds = 4;
    let mut learners = Vec::new();
    for _ in 0..200 {
        let waiting = !sim.pending.is_empty();
        let p = sim.step();
        for order in &p.changes {
            for c in &order.changes {
                if let Change::AddLearner { store_id } = c {
                    learners.push((order.region_id, *store_id));
                }
            }
        }
        if p.is_empty() && !waiting {
            break;
        }
    }
    sim.assert_healthy();
    sim.assert_balanced();
    assert_eq!(sim.stores[&4], StoreState::Up);
    assert!(learners.iter().all(|(_, s)| *s == 4), "learners only on the new store: {learners:?}");
    assert_eq!(learners.len(), sim.count(4), "every learner stays where it went: {learners:?}");
    assert_eq!(sim.count(4), 14, "57 peers over 4 stores");
}

#[test]
fn draining_moves_every_peer_and_leader_off_without_losing_voters() {
    let mut stores = up(&[1, 2, 3, 4]);
    stores[0].1 = StoreState::Draining;
    let mut regions = three_store_regions(9);
    // Store 1 leads everything, the meta region included.
    for (i, info) in regions.iter_mut().enumerate().skip(1) {
        if i % 2 == 0 {
            *info = region(info.region.as_ref().unwrap().id, 1, &[1, 2, 4]);
        }
    }
    let mut sim = Sim::new(&stores, regions, PlacementConfig::default());
    let first = sim.step();
    assert!(first.transfers.iter().all(|t| t.from_store == 1 && t.to.store_id != 1), "{first:?}");
    assert!(!first.transfers.is_empty(), "leaders move off the draining store first");
    sim.settle();
    assert_eq!(sim.count(1), 0, "the drained store holds nothing");
    assert_eq!(sim.leaders(1), 0);
    for info in &sim.regions {
        assert_eq!(Sim::voters(info), 3);
    }
    assert!(
        sim.regions
            .iter()
            .any(|r| r.region.as_ref().unwrap().id == META_REGION_ID && !r.region.as_ref().unwrap().peers.iter().any(|x| x.store_id == 1)),
        "the meta region moved too"
    );
}

#[test]
fn a_down_store_is_replaced_only_once_it_counts_as_down() {
    let regions = three_store_regions(6);
    let mut stores = up(&[1, 2, 3, 4]);
    // Store 3 stopped heartbeating but is not past the down time: still UP.
    let sim = Sim::new(&stores, regions.clone(), PlacementConfig::default());
    let p = sim.plan();
    assert!(
        p.changes.iter().flat_map(|c| &c.changes).all(|c| !matches!(c, Change::Remove(x) if x.store_id == 3)),
        "nothing is taken from a store before it is down: {p:?}"
    );
    assert!(p.under_replicated.is_empty());
    stores[2].1 = StoreState::Down;
    let cfg = PlacementConfig { max_snapshots_per_store: 4, ..Default::default() };
    let mut sim = Sim::new(&stores, regions, cfg);
    let p = sim.plan();
    assert_eq!(p.under_replicated.len(), 7, "every region lost a live voter");
    assert!(p.changes.iter().all(|c| c.changes == vec![Change::AddLearner { store_id: 4 }]), "{p:?}");
    assert_eq!(p.changes.len(), 4, "at most max_snapshots_per_store on store 4 at once");
    sim.settle();
    assert_eq!(sim.count(3), 0);
    for info in &sim.regions {
        let r = info.region.as_ref().unwrap();
        assert_eq!(r.peers.iter().map(|x| x.store_id).collect::<BTreeSet<_>>(), BTreeSet::from([1, 2, 4]));
    }
}

#[test]
fn one_order_per_region_cooling_respected_and_the_op_limit_holds() {
    let mut stores = up(&[1, 2, 3]);
    stores.push((4, StoreState::Joining));
    stores.push((5, StoreState::Joining));
    let regions = three_store_regions(20);
    let cfg = PlacementConfig { max_snapshots_per_store: 10, ..Default::default() };
    let cooling: HashMap<u64, Cooldown> =
        (2..12).map(|id| (id, Cooldown { adds_learner_on: if id < 4 { Some(4) } else { None }, ..Default::default() })).collect();
    let stores: BTreeMap<u64, StoreState> = stores.into_iter().collect();
    let p =
        plan(&Cluster { stores: &stores, zones: &BTreeMap::new(), regions: &regions, pending: &HashMap::new(), cooling: &cooling }, &cfg);
    assert_eq!(p.changes.len(), cfg.max_ops, "{p:?}");
    assert!(p.changes.iter().all(|c| !(2..12).contains(&c.region_id)), "cooling regions left alone");
    let to4 = p.changes.iter().filter(|c| c.changes == vec![Change::AddLearner { store_id: 4 }]).count();
    let to5 = p.changes.iter().filter(|c| c.changes == vec![Change::AddLearner { store_id: 5 }]).count();
    assert!(to5 > to4, "learners already ordered onto store 4 count: {to4} vs {to5}");
    let mut seen = HashSet::new();
    assert!(p.changes.iter().map(|c| c.region_id).chain(p.transfers.iter().map(|t| t.region_id)).all(|id| seen.insert(id)));
}

#[test]
fn a_pending_learner_waits_and_a_promotion_removes_the_most_loaded_voter_never_the_leader() {
    let stores: BTreeMap<u64, StoreState> = up(&[1, 2, 3, 4]).into_iter().collect();
    let mut r = region(7, 2, &[1, 2, 3]);
    r.region.as_mut().unwrap().peers.push(Peer { id: 99, store_id: 4, is_learner: true });
    // Stores 2 (the leader) and 3 hold the most regions.
    let mut regions = vec![r];
    regions.extend((10..14).map(|id| region(id, 1, &[2, 3, 1])));
    regions.push(region(20, 1, &[2, 3, 4]));
    let pending: HashMap<u64, HashSet<u64>> = [(7, HashSet::from([99]))].into();
    let cfg = PlacementConfig::default();
    let p =
        plan(&Cluster { stores: &stores, zones: &BTreeMap::new(), regions: &regions, pending: &pending, cooling: &HashMap::new() }, &cfg);
    assert!(p.changes.iter().all(|c| c.region_id != 7), "a pending learner waits: {p:?}");
    let p = plan(
        &Cluster { stores: &stores, zones: &BTreeMap::new(), regions: &regions, pending: &HashMap::new(), cooling: &HashMap::new() },
        &cfg,
    );
    let order = p.changes.iter().find(|c| c.region_id == 7).expect("an order for region 7");
    assert_eq!(
        order.changes,
        vec![
            Change::Promote(Peer { id: 99, store_id: 4, is_learner: true }),
            Change::Remove(Peer { id: 703, store_id: 3, is_learner: false })
        ]
    );
}

#[test]
fn when_only_the_leader_could_go_leadership_moves_first() {
    let mut stores: BTreeMap<u64, StoreState> = up(&[1, 2, 3, 4]).into_iter().collect();
    stores.insert(1, StoreState::Draining);
    let mut r = region(7, 1, &[1, 2, 3]);
    r.region.as_mut().unwrap().peers.push(Peer { id: 99, store_id: 4, is_learner: true });
    let regions = vec![r];
    let p = plan(
        &Cluster { stores: &stores, zones: &BTreeMap::new(), regions: &regions, pending: &HashMap::new(), cooling: &HashMap::new() },
        &PlacementConfig::default(),
    );
    assert!(p.changes.is_empty(), "{p:?}");
    assert_eq!(p.transfers.len(), 1);
    assert_eq!((p.transfers[0].from_store, p.transfers[0].to.store_id), (1, 2));
}

#[test]
fn random_layouts_settle_without_ever_losing_a_voter() {
    for seed in 0..40u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let n_stores = rng.random_range(3..7u64);
        let rf = 3;
        let mut stores: Vec<(u64, StoreState)> = (1..=n_stores).map(|s| (s, StoreState::Up)).collect();
        let mut regions = Vec::new();
        for id in 1..rng.random_range(3..30u64) {
            let mut on: Vec<u64> = (1..=n_stores).collect();
            while on.len() > rf {
                on.remove(rng.random_range(0..on.len()));
            }
            // A down store leads nothing: the others elected a new leader.
            let electable: Vec<u64> = on.iter().copied().filter(|s| n_stores < 5 || *s != 2).collect();
            let leader = electable[rng.random_range(0..electable.len())];
            regions.push(region(id, leader, &on));
        }
        // A new store joins; with 4+ stores, one drains; with 5+, another is down.
        stores.push((n_stores + 1, StoreState::Joining));
        if n_stores >= 4 {
            stores[0].1 = StoreState::Draining;
        }
        if n_stores >= 5 {
            stores[1].1 = StoreState::Down;
        }
        let cfg =
            PlacementConfig { max_snapshots_per_store: rng.random_range(1..4), max_ops: rng.random_range(1..10), ..Default::default() };
        let mut sim = Sim::new(&stores, regions, cfg);
        sim.settle();
        for (s, st) in &stores {
            if *st != StoreState::Up && *st != StoreState::Joining {
                assert_eq!(sim.count(*s), 0, "seed {seed}: store {s} ({st:?}) still holds peers");
            }
        }
        sim.assert_healthy();
        sim.assert_balanced();
        assert_eq!(sim.stores[&(n_stores + 1)], StoreState::Up, "seed {seed}: the joining store was seeded");
    }
}

impl Sim {
    /// Every region's voters in `want` distinct zones (learners aside).
    fn assert_voters_spread(&self, want: usize, what: &str) {
        for info in &self.regions {
            let r = info.region.as_ref().unwrap();
            let zones: BTreeSet<&String> = r.peers.iter().filter(|p| !p.is_learner).filter_map(|p| self.zones.get(&p.store_id)).collect();
            assert_eq!(zones.len(), want, "{what}: region {} voters {:?} span zones {zones:?}", r.id, r.peers);
        }
    }

    /// Every region's replicas in `want` distinct zones (a store without a
    /// zone is one of its own).
    fn assert_spread(&self, want: usize, what: &str) {
        for info in &self.regions {
            let r = info.region.as_ref().unwrap();
            let zones: BTreeSet<String> =
                r.peers.iter().map(|p| self.zones.get(&p.store_id).cloned().unwrap_or_else(|| format!("store-{}", p.store_id))).collect();
            assert_eq!(zones.len(), want, "{what}: region {} on {:?} spans zones {zones:?}", r.id, r.peers);
        }
    }
}

#[test]
fn replicas_spread_over_zones_and_never_share_one_while_enough_exist() {
    // Six stores in three zones, every region starting on stores 1-3, two of
    // which share zone a.
    let zones = [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")];
    let mut sim = Sim::new(&up(&[1, 2, 3, 4, 5, 6]), three_store_regions(17), PlacementConfig::default());
    sim.zones = zones.iter().map(|(s, z)| (*s, z.to_string())).collect();
    sim.settle();
    sim.assert_healthy();
    sim.assert_spread(3, "six stores in three zones");
    sim.assert_balanced();

    // Zone c lost (both stores down): two zones left, regions keep three
    // replicas (two share a zone), and spread again once c is back as new stores.
    sim.stores.insert(5, StoreState::Down);
    sim.stores.insert(6, StoreState::Down);
    sim.settle();
    assert_eq!(sim.count(5) + sim.count(6), 0);
    sim.assert_spread(2, "two zones left");
    sim.stores.insert(7, StoreState::Joining);
    sim.stores.insert(8, StoreState::Joining);
    sim.zones.insert(7, "c".into());
    sim.zones.insert(8, "c".into());
    sim.settle();
    sim.assert_spread(3, "zone c back");
    assert_eq!(sim.stores[&7], StoreState::Up);
    assert_eq!(sim.stores[&8], StoreState::Up);
}

#[test]
fn a_store_alone_in_its_zone_holds_every_region_and_the_others_are_still_seeded() {
    // Zone a: stores 1 and 4 (joining); zones b and c: one store each. Every
    // region keeps a replica on 2 and on 3; zone a's two stores share the
    // third, and the joining one is marked seeded though it holds fewer.
    let mut stores = up(&[1, 2, 3]);
    stores.push((4, StoreState::Joining));
    let mut sim = Sim::new(&stores, three_store_regions(11), PlacementConfig::default());
    sim.zones = [(1, "a"), (4, "a"), (2, "b"), (3, "c")].iter().map(|(s, z)| (*s, z.to_string())).collect();
    // Spread from the start, so never two voters in one zone on the way: a
    // move from 1 to 4 removes the voter on 1, whatever the region counts say.
    for round in 0.. {
        assert!(round < 500, "never settled");
        let waiting = !sim.pending.is_empty();
        let done = sim.step().is_empty() && !waiting;
        sim.assert_voters_spread(3, &format!("round {round}"));
        if done {
            break;
        }
    }
    sim.assert_healthy();
    sim.assert_spread(3, "three zones");
    assert_eq!(sim.stores[&4], StoreState::Up, "store 4 was marked seeded");
    assert_eq!((sim.count(2), sim.count(3)), (12, 12));
    assert!(sim.count(1).abs_diff(sim.count(4)) <= 1, "zone a's stores share its replicas: {} and {}", sim.count(1), sim.count(4));
}

#[test]
fn random_zoned_layouts_settle_spread_over_zones() {
    for seed in 0..40u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let n_stores = rng.random_range(3..8u64);
        let mut stores: Vec<(u64, StoreState)> = (1..=n_stores).map(|s| (s, StoreState::Up)).collect();
        // Stores 1-3 in zones a, b, c; the rest anywhere.
        let names = ["a", "b", "c"];
        let zones: BTreeMap<u64, String> =
            (1..=n_stores).map(|s| (s, names[if s <= 3 { s as usize - 1 } else { rng.random_range(0..3) }].to_string())).collect();
        let mut regions = Vec::new();
        for id in 1..rng.random_range(3..30u64) {
            let mut on: Vec<u64> = (1..=n_stores).collect();
            while on.len() > 3 {
                on.remove(rng.random_range(0..on.len()));
            }
            regions.push(region(id, on[rng.random_range(0..on.len())], &on));
        }
        stores.push((n_stores + 1, StoreState::Joining));
        let mut zones = zones;
        zones.insert(n_stores + 1, names[rng.random_range(0..3)].to_string());
        let cfg =
            PlacementConfig { max_snapshots_per_store: rng.random_range(1..4), max_ops: rng.random_range(1..10), ..Default::default() };
        let mut sim = Sim::new(&stores, regions, cfg);
        sim.zones = zones;
        sim.settle();
        sim.assert_healthy();
        sim.assert_spread(3, &format!("seed {seed}"));
        assert_eq!(sim.stores[&(n_stores + 1)], StoreState::Up, "seed {seed}: the joining store was seeded");
    }
}
