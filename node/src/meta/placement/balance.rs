//! Region-count balance: while a good store (UP or JOINING) holds more than
//! `tolerance` regions above the least loaded good one, a region of the first
//! gets a learner on the second; its promotion later removes the extra voter
//! from the most loaded store (see `repair`). This is also how a JOINING store
//! is seeded, a few learners at a time (`max_snapshots_per_store`). While the
//! least loaded stores are at that limit, nothing moves to a store more loaded
//! than they are: the others do not trade regions among themselves while a
//! joining store is seeded.

use std::collections::HashSet;

use shoal_proto::{RegionInfo, StoreState};

use super::model::Model;
use super::{Change, PlacementConfig};

/// One move the balance found: a learner for `region` on store `to`, to take
/// the place of a peer on store `from`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Move {
    pub region: usize,
    pub from: u64,
    pub to: u64,
}

/// The next move, or `None` when balanced (or nothing movable). `skip` holds
/// regions (by index) that may not be ordered now.
pub(super) fn next_move(m: &Model, regions: &[RegionInfo], skip: &HashSet<usize>, cfg: &PlacementConfig) -> Option<Move> {
    let mut high: Vec<u64> = m.good_stores().collect();
    high.sort_by_key(|s| (std::cmp::Reverse(m.count(*s)), *s));
    let mut low: Vec<u64> = m.good_stores().collect();
    low.sort_by_key(|s| (m.count(*s), *s));
    // A store at its learner limit stops the list: moving a region to a store
    // more loaded than it would only trade regions among the others while it
    // is seeded (and later move them back).
    if let Some(busy) = low.iter().position(|s| m.seeding(*s) >= cfg.max_snapshots_per_store) {
        low.truncate(busy);
    }
    for &from in &high {
        for &to in &low {
            if m.count(from) <= m.count(to) + cfg.tolerance {
                break;
            }
            if let Some(region) = movable(m, regions, skip, from, to, cfg) {
                return Some(Move { region, from, to });
            }
        }
    }
    None
}

/// A healthy region on `from` and not on `to`, whose other peers are not in
/// `to`'s zone (a move never makes two replicas share a zone); one `from` does
/// not lead first, so that the later removal needs no leader transfer.
fn movable(m: &Model, regions: &[RegionInfo], skip: &HashSet<usize>, from: u64, to: u64, cfg: &PlacementConfig) -> Option<usize> {
    let candidates = regions.iter().enumerate().filter(|(i, info)| {
        let Some(r) = info.region.as_ref() else { return false };
        !skip.contains(i)
            && info.leader_store_id != 0
            && r.peers.iter().any(|p| p.store_id == from)
            && !r.peers.iter().any(|p| p.store_id == to)
            && r.peers.iter().all(|p| !p.is_learner && m.good(p.store_id))
            && r.peers.len() == cfg.replication_factor
            && !r.peers.iter().any(|p| p.store_id != from && m.domain(p.store_id) == m.domain(to))
    });
    let mut fallback = None;
    for (i, info) in candidates {
        if info.leader_store_id != from {
            return Some(i);
        }
        fallback.get_or_insert(i);
    }
    fallback
}

/// The model after `mv` is done: a learner on `to`, and (once promoted) one
/// peer fewer on `from`.
pub(super) fn apply(m: &mut Model, mv: Move) -> Vec<Change> {
    let changes = vec![Change::AddLearner { store_id: mv.to }];
    m.apply(&changes);
    if let Some(n) = m.regions.get_mut(&mv.from) {
        *n = n.saturating_sub(1);
    }
    changes
}

/// JOINING stores that are seeded: no learner on them (in the directory or
/// ordered), nothing ordered for them in this plan, and no region balance
/// could still move onto them (from a good store holding more than
/// `tolerance` regions above them, zones allowing: a store in a crowded zone
/// may stay below the others for good).
pub(super) fn seeded(m: &Model, directory: &Model, regions: &[RegionInfo], touched: &HashSet<u64>, cfg: &PlacementConfig) -> Vec<u64> {
    let none = HashSet::new();
    let more_to_receive = |s: u64| {
        m.good_stores().any(|from| m.count(from) > m.count(s) + cfg.tolerance && movable(m, regions, &none, from, s, cfg).is_some())
    };
    m.stores_in(StoreState::Joining)
        .filter(|s| directory.seeding(*s) == 0 && m.seeding(*s) == 0 && !touched.contains(s) && !more_to_receive(*s))
        .collect()
}
