//! Placement: where peers and leaders should be. A pure function of the region
//! directory and the live stores, run by the meta leader on every heartbeat; its
//! orders travel back to region leaders in heartbeat responses.
//!
//! Today it balances leaders: while the store with the most leaders has more
//! than `tolerance` above the one with the fewest, it moves one leader from the
//! first to the second (a region whose peer on the target is a voter), at most
//! `max_transfers` per plan, skipping regions moved recently. It also reports
//! regions that have fewer voters than the replication factor or two peers on one
//! store; repairing them needs membership changes (learner → snapshot → voter),
//! which are not built yet.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use shoal_proto::{Peer, RegionInfo};

#[derive(Clone, Debug)]
pub struct PlacementConfig {
    pub replication_factor: usize,
    /// Most leader transfers one plan may order.
    pub max_transfers: usize,
    /// Leader counts may differ by this much before a transfer is worth it.
    pub tolerance: usize,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        PlacementConfig { replication_factor: 3, max_transfers: 4, tolerance: 1 }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub region_id: u64,
    pub from_store: u64,
    pub to: Peer,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub transfers: Vec<Transfer>,
    /// Regions short of voters on distinct live stores.
    pub under_replicated: Vec<u64>,
}

/// Plans the next moves for `regions` over the live `stores`. Regions in `cooling`
/// were moved recently and are left alone.
pub fn plan(stores: &BTreeSet<u64>, regions: &[RegionInfo], cooling: &HashSet<u64>, cfg: &PlacementConfig) -> Plan {
    let mut out = Plan::default();
    let mut leaders: BTreeMap<u64, usize> = stores.iter().map(|s| (*s, 0)).collect();
    for info in regions {
        let Some(r) = info.region.as_ref() else { continue };
        let voter_stores: BTreeSet<u64> =
            r.peers.iter().filter(|p| !p.is_learner && stores.contains(&p.store_id)).map(|p| p.store_id).collect();
        let voters = r.peers.iter().filter(|p| !p.is_learner).count();
        if voter_stores.len() < cfg.replication_factor.min(stores.len()) || voter_stores.len() < voters {
            out.under_replicated.push(r.id);
        }
        if let Some(n) = leaders.get_mut(&info.leader_store_id) {
            *n += 1;
        }
    }
    let mut moved: HashSet<u64> = HashSet::new();
    while out.transfers.len() < cfg.max_transfers {
        let Some((&hi, &hi_count)) = leaders.iter().max_by_key(|(id, n)| (**n, std::cmp::Reverse(**id))) else { break };
        // Targets from the fewest leaders up; the first one some region can move to.
        let mut targets: Vec<(u64, usize)> = leaders.iter().filter(|(id, _)| **id != hi).map(|(id, n)| (*id, *n)).collect();
        targets.sort_by_key(|(id, n)| (*n, *id));
        let mut chosen = None;
        for (lo, lo_count) in targets {
            if hi_count <= lo_count + cfg.tolerance {
                break;
            }
            let candidate = regions.iter().find_map(|info| {
                let r = info.region.as_ref()?;
                if info.leader_store_id != hi || cooling.contains(&r.id) || moved.contains(&r.id) {
                    return None;
                }
                let to = r.peers.iter().find(|p| p.store_id == lo && !p.is_learner)?;
                Some(Transfer { region_id: r.id, from_store: hi, to: *to })
            });
            if let Some(t) = candidate {
                chosen = Some((lo, t));
                break;
            }
        }
        let Some((lo, t)) = chosen else { break };
        moved.insert(t.region_id);
        *leaders.entry(hi).or_default() -= 1;
        *leaders.entry(lo).or_default() += 1;
        out.transfers.push(t);
    }
    out
}

#[cfg(test)]
mod tests {
    use shoal_proto::{Region, RegionEpoch};

    use super::*;

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
        let p = plan(&stores, &regions, &cooling, &PlacementConfig::default());
        assert_eq!(p.transfers.len(), 4, "max_transfers caps one plan");
        assert!(p.transfers.iter().all(|t| t.region_id != 2), "cooling region moved");
        assert!(!p.transfers.iter().any(|t| t.region_id == 1 && t.to.store_id == 2), "learner chosen as leader");
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
