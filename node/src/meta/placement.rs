//! Placement: where peers and leaders should be. A pure function of the stores
//! (with their effective states), the regions (the meta region included, with
//! their leaders and pending peers) and the regions ordered recently, run by
//! the meta leader on every heartbeat (unless its inputs are those of a plan
//! that ordered nothing: `crate::server::directory_cache`); its orders travel
//! back to region leaders in heartbeat responses.
//!
//! One plan gives at most one order per region, skips regions in cooling (an
//! order was made for them and their epoch has not changed since), and, in turn:
//!
//! 1. repairs each region ([`repair`]): a learner on a store that is no good
//!    target any more (draining, down, removed) is removed; a caught-up learner
//!    is promoted, and if the region would then have more voters than the
//!    replication factor, the same joint change removes one (on a bad store
//!    first, else one sharing its zone with another voter, else on the most
//!    loaded store; never the leader — if only the leader could go,
//!    leadership moves first); a leader on a draining store
//!    moves to a voter on a good store; voters on bad stores or missing voters
//!    get a learner on the best target (UP or JOINING, not holding the region,
//!    in a zone the region's other replicas are not in if there is one, then
//!    fewest regions, fewer than `max_snapshots_per_store` learners being
//!    seeded); extra voters are removed; a healthy region two of whose voters
//!    share a zone gets a learner in an unused zone when a store there can
//!    take it;
//! 2. balances region counts across good stores ([`balance`]), which also seeds
//!    JOINING stores up to their share, never moving a replica into a zone
//!    another replica of the region is in;
//! 3. balances leaders: while the store with the most leaders has more than
//!    `tolerance` above the one with the fewest, it moves one of its regions'
//!    leadership to a voter on the other, at most `max_transfers` per plan;
//!    never of a region with a learner or a pending peer (a new leader would
//!    generate and send its snapshot again). A region ordered to move counts
//!    as led by its target while it cools ([`Cooldown::leads_to`]).
//!
//! Before any of this, each region with a learner (reported, or ordered while
//! it cools) counts the voter its promotion will remove as gone
//! (`repair::project_removals`), and that promotion removes that voter: while
//! many learners are seeded at once, the stores giving regions up already
//! count as having done so, so balance neither sends a joining store more
//! than its share nor trades regions among the others.
//!
//! Repairs and region moves together make at most `max_ops` orders per plan.
//! New peer ids are not chosen here: an [`Change::AddLearner`] names the store,
//! and the caller allocates the id. A JOINING store with no learners on it and
//! nothing more to receive is listed in [`Plan::seeded`].
//!
//! Zones come from the stores' `zone` labels (`Admin.SetStoreLabels`); a
//! store without one is a zone of its own. With at least as many zones as the
//! replication factor, every region ends with its replicas in distinct zones.
//!
//! A region's voters never drop below the replication factor through these
//! orders: voters are removed only in the same change that promotes a learner,
//! or when more than enough good voters remain.

mod balance;
mod model;
mod repair;
#[cfg(test)]
mod sim_tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use shoal_proto::{Peer, RegionEpoch, RegionInfo, StoreState};

use model::Model;
use repair::Action;

#[derive(Clone, Debug)]
pub struct PlacementConfig {
    pub replication_factor: usize,
    /// Most leader transfers one plan may order (leader balance).
    pub max_transfers: usize,
    /// Leader (and region) counts may differ by this much before a move is worth it.
    pub tolerance: usize,
    /// Most repair and region-move orders one plan may make.
    pub max_ops: usize,
    /// Most learners being seeded (by snapshot) on one store at once.
    pub max_snapshots_per_store: usize,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        PlacementConfig { replication_factor: 3, max_transfers: 64, tolerance: 1, max_ops: 8, max_snapshots_per_store: 16 }
    }
}

/// What is known of a region ordered recently (and so left alone).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cooldown {
    /// The store the order adds a learner on, which counts as being seeded
    /// until the region reports it.
    pub adds_learner_on: Option<u64>,
    /// The store the order moves leadership to, which counts as leading the
    /// region until the region reports its new leader (so that the plans made
    /// meanwhile do not move more leaders than the imbalance asks).
    pub leads_to: Option<u64>,
}

/// What one plan looks at.
#[derive(Clone, Copy, Debug)]
pub struct Cluster<'a> {
    /// Every store with its effective state (DOWN for one not heard from for
    /// too long).
    pub stores: &'a BTreeMap<u64, StoreState>,
    /// The `zone` label of each store that has one.
    pub zones: &'a BTreeMap<u64, String>,
    /// Every region placement manages, the meta region included.
    pub regions: &'a [RegionInfo],
    /// Region id → its peers (ids) that are not caught up with the leader.
    pub pending: &'a HashMap<u64, HashSet<u64>>,
    /// Regions ordered recently: no new order for them.
    pub cooling: &'a HashMap<u64, Cooldown>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub region_id: u64,
    pub epoch: RegionEpoch,
    pub from_store: u64,
    pub to: Peer,
}

/// One membership change; several in one order are applied together (joint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A learner on `store_id`, with a peer id the caller allocates.
    AddLearner {
        store_id: u64,
    },
    Promote(Peer),
    Remove(Peer),
}

/// Membership changes for one region, for its leader (on `leader_store`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerOrder {
    pub region_id: u64,
    pub epoch: RegionEpoch,
    pub leader_store: u64,
    pub changes: Vec<Change>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub transfers: Vec<Transfer>,
    pub changes: Vec<PeerOrder>,
    /// Regions short of voters on distinct live stores.
    pub under_replicated: Vec<u64>,
    /// JOINING stores that hold their share: ready to be UP.
    pub seeded: Vec<u64>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.transfers.is_empty() && self.changes.is_empty()
    }
}

fn region_epoch(info: &RegionInfo) -> RegionEpoch {
    info.region.as_ref().and_then(|r| r.epoch).unwrap_or_default()
}

/// Plans the next orders for `cluster`.
pub fn plan(cluster: &Cluster<'_>, cfg: &PlacementConfig) -> Plan {
    let regions = cluster.regions;
    let mut directory = Model::new(cluster.stores, cluster.zones, regions, cluster.cooling);
    repair::project_removals(&mut directory, regions, cluster.cooling, cfg.replication_factor);
    let mut m = directory.clone();
    let mut out = Plan::default();
    // Regions (by index) that got an order in this plan or may not get one.
    let mut skip: HashSet<usize> = HashSet::new();
    // Stores some order of this plan adds a peer on or promotes one on.
    let mut touched: HashSet<u64> = HashSet::new();
    let mut ops = 0;

    for (i, info) in regions.iter().enumerate() {
        let Some(r) = info.region.as_ref() else {
            skip.insert(i);
            continue;
        };
        let voter_stores: BTreeSet<u64> = r.peers.iter().filter(|p| !p.is_learner && m.live(p.store_id)).map(|p| p.store_id).collect();
        let voters = r.peers.iter().filter(|p| !p.is_learner).count();
        let live = m.good_stores().count() + m.stores_in(StoreState::Draining).count();
        if voter_stores.len() < cfg.replication_factor.min(live) || voter_stores.len() < voters {
            out.under_replicated.push(r.id);
        }
        if info.leader_store_id == 0 || cluster.cooling.contains_key(&r.id) {
            skip.insert(i);
            continue;
        }
        if ops >= cfg.max_ops {
            continue;
        }
        let Some(action) = repair::repair(&m, info, cluster.pending.get(&r.id), cfg) else { continue };
        skip.insert(i);
        ops += 1;
        match action {
            Action::Transfer(to) => {
                m.move_leader(info.leader_store_id, to.store_id);
                out.transfers.push(Transfer { region_id: r.id, epoch: region_epoch(info), from_store: info.leader_store_id, to });
            }
            Action::Change(changes) => {
                m.unproject(r.id);
                m.apply(&changes);
                touched.extend(changes.iter().filter_map(|c| match c {
                    Change::AddLearner { store_id } => Some(*store_id),
                    Change::Promote(p) => Some(p.store_id),
                    Change::Remove(_) => None,
                }));
                out.changes.push(PeerOrder { region_id: r.id, epoch: region_epoch(info), leader_store: info.leader_store_id, changes });
            }
        }
    }

    while ops < cfg.max_ops {
        let Some(mv) = balance::next_move(&m, regions, &skip, cfg) else { break };
        let info = &regions[mv.region];
        let changes = balance::apply(&mut m, mv);
        skip.insert(mv.region);
        touched.insert(mv.to);
        ops += 1;
        let region_id = info.region.as_ref().map_or(0, |r| r.id);
        out.changes.push(PeerOrder { region_id, epoch: region_epoch(info), leader_store: info.leader_store_id, changes });
    }

    balance_leaders(&mut m, regions, cluster.pending, &skip, cfg, &mut out);
    out.seeded = balance::seeded(&m, &directory, regions, &touched, cfg);
    out
}

/// Whether a region is in the middle of seeding or catching up a peer: a
/// learner, or a peer its leader reports pending. Its leadership stays put: a
/// new leader would generate and send the snapshot again.
fn catching_up(info: &RegionInfo, pending: &HashMap<u64, HashSet<u64>>) -> bool {
    let Some(r) = info.region.as_ref() else { return false };
    r.peers.iter().any(|p| p.is_learner) || pending.get(&r.id).is_some_and(|p| !p.is_empty())
}

/// Leader balance over good stores, for regions not otherwise ordered and not
/// catching a peer up.
fn balance_leaders(
    m: &mut Model,
    regions: &[RegionInfo],
    pending: &HashMap<u64, HashSet<u64>>,
    skip: &HashSet<usize>,
    cfg: &PlacementConfig,
    out: &mut Plan,
) {
    let mut leaders: BTreeMap<u64, usize> = m.good_stores().map(|s| (s, m.leader_count(s))).collect();
    let mut moved: HashSet<usize> = HashSet::new();
    let mut made = 0;
    while made < cfg.max_transfers {
        // Sources from the most leaders down, targets from the fewest up: the
        // first pair some region can move between (the busiest store may hold
        // no region the idlest one has a voter of; the next busiest may).
        // A store below the floor of the mean also takes a leader from any store
        // with more, so that a store whose regions are all led by stores just
        // one above it is not left with none (the spread alone would not move).
        let floor_mean = leaders.values().sum::<usize>() / leaders.len().max(1);
        let mut sources: Vec<(u64, usize)> = leaders.iter().map(|(id, n)| (*id, *n)).collect();
        sources.sort_by_key(|(id, n)| (std::cmp::Reverse(*n), *id));
        let mut chosen = None;
        'sources: for (hi, hi_count) in sources {
            let mut targets: Vec<(u64, usize)> = leaders.iter().filter(|(id, _)| **id != hi).map(|(id, n)| (*id, *n)).collect();
            targets.sort_by_key(|(id, n)| (*n, *id));
            for (lo, lo_count) in targets {
                let below_mean = lo_count < floor_mean && hi_count > lo_count;
                if hi_count <= lo_count + cfg.tolerance && !below_mean {
                    break;
                }
                let candidate = regions.iter().enumerate().find_map(|(i, info)| {
                    let r = info.region.as_ref()?;
                    if info.leader_store_id != hi || skip.contains(&i) || moved.contains(&i) || catching_up(info, pending) {
                        return None;
                    }
                    let to = r.peers.iter().find(|p| p.store_id == lo && !p.is_learner)?;
                    Some((i, Transfer { region_id: r.id, epoch: region_epoch(info), from_store: hi, to: *to }))
                });
                if let Some(t) = candidate {
                    chosen = Some((hi, lo, t));
                    break 'sources;
                }
            }
        }
        let Some((hi, lo, (i, t))) = chosen else { break };
        moved.insert(i);
        *leaders.entry(hi).or_default() -= 1;
        *leaders.entry(lo).or_default() += 1;
        m.move_leader(hi, lo);
        out.transfers.push(t);
        made += 1;
    }
}

#[cfg(test)]
mod tests {
    use shoal_proto::Region;

    use super::*;

    /// The plan over `stores`, all UP, nothing pending.
    fn plan(stores: &BTreeSet<u64>, regions: &[RegionInfo], cooling: &HashSet<u64>, cfg: &PlacementConfig) -> Plan {
        let stores: BTreeMap<u64, StoreState> = stores.iter().map(|s| (*s, StoreState::Up)).collect();
        let cooling: HashMap<u64, Cooldown> = cooling.iter().map(|r| (*r, Cooldown::default())).collect();
        super::plan(&Cluster { stores: &stores, zones: &BTreeMap::new(), regions, pending: &HashMap::new(), cooling: &cooling }, cfg)
    }

    fn region(id: u64, leader: u64, stores: &[u64]) -> RegionInfo {
        RegionInfo {
            region: Some(Region {
                id,
                start_key: vec![id as u8],
                end_key: vec![id as u8 + 1],
                epoch: Some(RegionEpoch { conf_ver: 1, version: 1 }),
                peers: stores.iter().map(|s| Peer { id: id * 100 + s, store_id: *s, is_learner: false }).collect(),
            }),
            leader_store_id: leader,
            ..Default::default()
        }
    }

    fn leader_counts(regions: &[RegionInfo], transfers: &[Transfer]) -> BTreeMap<u64, usize> {
        let mut counts = BTreeMap::new();
        for r in regions {
            let id = r.region.as_ref().unwrap().id;
            let leader = transfers.iter().find(|t| t.region_id == id).map_or(r.leader_store_id, |t| t.to.store_id);
            *counts.entry(leader).or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn moves_leaders_from_the_busiest_store_until_balanced() {
        let stores: BTreeSet<u64> = [1, 2, 3].into();
        let regions: Vec<RegionInfo> = (1..=12).map(|id| region(id, 1, &[1, 2, 3])).collect();
        let cfg = PlacementConfig { max_transfers: 100, ..Default::default() };
        let p = plan(&stores, &regions, &HashSet::new(), &cfg);
        let counts = leader_counts(&regions, &p.transfers);
        assert_eq!(counts.values().copied().collect::<Vec<_>>(), vec![4, 4, 4], "{counts:?}");
        assert!(p.transfers.iter().all(|t| t.from_store == 1 && t.to.id == t.region_id * 100 + t.to.store_id));
        assert!(p.under_replicated.is_empty());
        // Once balanced, the next plan orders nothing.
        let after: Vec<RegionInfo> = regions
            .iter()
            .map(|r| {
                let mut r = r.clone();
                let id = r.region.as_ref().unwrap().id;
                if let Some(t) = p.transfers.iter().find(|t| t.region_id == id) {
                    r.leader_store_id = t.to.store_id;
                }
                r
            })
            .collect();
        assert_eq!(plan(&stores, &after, &HashSet::new(), &cfg).transfers, vec![]);
    }

    #[test]
    fn respects_the_rate_limit_cooling_regions_and_voter_only_targets() {
        let stores: BTreeSet<u64> = [1, 2, 3].into();
        let mut regions: Vec<RegionInfo> = (1..=9).map(|id| region(id, 1, &[1, 2, 3])).collect();
        // Region 1's peer on store 2 is a learner: it can never lead.
        regions[0].region.as_mut().unwrap().peers[1].is_learner = true;
        let cooling: HashSet<u64> = [2].into();
        let p = plan(&stores, &regions, &cooling, &PlacementConfig { max_transfers: 4, ..Default::default() });
        assert_eq!(p.transfers.len(), 4, "max_transfers caps one plan");
        assert!(p.transfers.iter().all(|t| t.region_id != 2), "cooling region moved");
        assert!(!p.transfers.iter().any(|t| t.region_id == 1 && t.to.store_id == 2), "learner chosen as leader");
    }

    #[test]
    fn a_leader_ordered_to_move_counts_where_it_goes_until_the_region_reports() {
        // The directory still shows store 1 leading all six; regions 1 and 2
        // were ordered to stores 2 and 3 a moment ago: two more moves balance.
        let stores: BTreeMap<u64, StoreState> = [1, 2, 3].into_iter().map(|s| (s, StoreState::Up)).collect();
        let regions: Vec<RegionInfo> = (1..=6).map(|id| region(id, 1, &[1, 2, 3])).collect();
        let cooling: HashMap<u64, Cooldown> =
            [(1, Cooldown { leads_to: Some(2), ..Default::default() }), (2, Cooldown { leads_to: Some(3), ..Default::default() })].into();
        let cluster = Cluster { stores: &stores, zones: &BTreeMap::new(), regions: &regions, pending: &HashMap::new(), cooling: &cooling };
        let p = super::plan(&cluster, &PlacementConfig::default());
        let to: Vec<u64> = p.transfers.iter().map(|t| t.to.store_id).collect();
        assert_eq!(to, vec![2, 3], "{p:?}");
        assert!(p.transfers.iter().all(|t| t.region_id > 2 && t.from_store == 1), "{p:?}");
    }

    #[test]
    fn leadership_of_a_region_catching_a_peer_up_stays_put() {
        // Store 1 leads all six; regions 1-3 have a learner or a pending peer.
        let stores: BTreeMap<u64, StoreState> = [1, 2, 3, 4].into_iter().map(|s| (s, StoreState::Up)).collect();
        let mut regions: Vec<RegionInfo> = (1..=6).map(|id| region(id, 1, &[1, 2, 3])).collect();
        regions[0].region.as_mut().unwrap().peers.push(Peer { id: 104, store_id: 4, is_learner: true });
        let pending: HashMap<u64, HashSet<u64>> = [(2, [202].into()), (3, [303].into()), (4, HashSet::new())].into();
        // Leader moves only (no repair or region move may take a region first).
        let cfg = PlacementConfig { max_transfers: 100, max_ops: 0, ..Default::default() };
        let p = super::plan(
            &Cluster { stores: &stores, zones: &BTreeMap::new(), regions: &regions, pending: &pending, cooling: &HashMap::new() },
            &cfg,
        );
        let moved: BTreeSet<u64> = p.transfers.iter().map(|t| t.region_id).collect();
        assert!(!moved.is_empty() && moved.iter().all(|r| *r >= 4), "moved {moved:?}");
    }

    #[test]
    fn when_the_busiest_store_has_nothing_to_give_the_next_busiest_gives() {
        // Store 4 holds a voter of regions 3 and 4 only; store 1 leads regions 1
        // and 2 (not on store 4), store 3 leads regions 3 and 4.
        let stores: BTreeSet<u64> = [1, 2, 3, 4].into();
        let regions = vec![
            region(1, 1, &[1, 2, 3]),
            region(2, 1, &[1, 2, 3]),
            region(3, 3, &[2, 3, 4]),
            region(4, 3, &[1, 3, 4]),
            region(5, 2, &[1, 2, 3]),
        ];
        let p = plan(&stores, &regions, &HashSet::new(), &PlacementConfig::default());
        assert!(p.transfers.iter().any(|t| t.from_store == 3 && t.to.store_id == 4), "{:?}", p.transfers);
    }

    #[test]
    fn a_store_without_leaders_gets_one_even_from_a_store_just_above_it() {
        // 5 leaders over 4 stores: 2, 2, 1, 0. Store 4 only shares regions led
        // by store 3; the spread (2 - 0) is over the tolerance, but no region of
        // stores 1 and 2 can go to store 4: store 3 gives it one.
        let stores: BTreeSet<u64> = [1, 2, 3, 4].into();
        let regions = vec![
            region(1, 1, &[1, 2, 3]),
            region(2, 1, &[1, 2, 3]),
            region(3, 2, &[1, 2, 3]),
            region(4, 2, &[1, 2, 3]),
            region(5, 3, &[2, 3, 4]),
        ];
        let p = plan(&stores, &regions, &HashSet::new(), &PlacementConfig::default());
        assert!(p.transfers.iter().any(|t| t.region_id == 5 && t.to.store_id == 4), "{:?}", p.transfers);
    }

    #[test]
    fn reports_under_replicated_regions_and_ignores_unknown_leaders() {
        let stores: BTreeSet<u64> = [1, 2, 3].into();
        let regions = vec![region(1, 0, &[1, 2, 3]), region(2, 1, &[1, 2]), region(3, 2, &[1, 2, 9])];
        let p = plan(&stores, &regions, &HashSet::new(), &PlacementConfig::default());
        assert_eq!(p.under_replicated, vec![2, 3], "store 9 is not a live store");
        assert!(p.transfers.is_empty(), "one leader each on stores 1 and 2 is balanced");
    }
}
