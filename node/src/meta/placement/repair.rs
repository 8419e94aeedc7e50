//! Repairs of one region: learners promoted or dropped, leaders moved off
//! draining stores, voters on bad stores replaced, missing voters added, extra
//! voters removed, and voters sharing a zone spread out when a good store in
//! an unused zone exists (a learner there; its promotion removes one of the
//! voters sharing a zone). At most one order per region; the region's voters
//! never drop below the replication factor and its leader is never removed.

use std::collections::{HashMap, HashSet};

use shoal_proto::{Peer, RegionInfo};

use super::model::Model;
use super::{Change, Cooldown, PlacementConfig};

/// What a region needs next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Action {
    Transfer(Peer),
    Change(Vec<Change>),
}

/// The next order for `info` (whose leader is known), or `None` when it needs
/// nothing or must wait (a learner still being seeded, no target available).
pub(super) fn repair(m: &Model, info: &RegionInfo, pending: Option<&HashSet<u64>>, cfg: &PlacementConfig) -> Option<Action> {
    let r = info.region.as_ref()?;
    let leader = info.leader_store_id;
    let voters: Vec<Peer> = r.peers.iter().filter(|p| !p.is_learner).copied().collect();
    let learners: Vec<Peer> = r.peers.iter().filter(|p| p.is_learner).copied().collect();
    let rf = cfg.replication_factor;

    if !learners.is_empty() {
        if let Some(l) = learners.iter().find(|l| !m.good(l.store_id)) {
            return Some(Action::Change(vec![Change::Remove(*l)]));
        }
        let ready = learners.iter().find(|l| !pending.is_some_and(|p| p.contains(&l.id)))?;
        let mut changes = vec![Change::Promote(*ready)];
        if voters.len() + 1 > rf {
            // The removal the model counted already, unless it cannot be made now.
            let projected = m.removals.get(&r.id).copied().filter(|v| v.store_id != leader && voters.contains(v));
            match projected.or_else(|| removal_candidate(m, &voters, Some(ready), leader)) {
                Some(v) => changes.push(Change::Remove(v)),
                // Only the leader could go: move leadership first, then promote.
                None => {
                    if let Some(to) = leadership_target(m, &voters, leader) {
                        return Some(Action::Transfer(to));
                    }
                }
            }
        }
        return Some(Action::Change(changes));
    }

    if !m.good(leader)
        && let Some(to) = leadership_target(m, &voters, leader)
    {
        return Some(Action::Transfer(to));
    }
    let good_voters = voters.iter().filter(|v| m.good(v.store_id)).count();
    if good_voters < rf {
        let store_id = m.best_target(&r.peers, cfg.max_snapshots_per_store)?;
        return Some(Action::Change(vec![Change::AddLearner { store_id }]));
    }
    // Enough good voters: drop one on a bad store, else one too many.
    if let Some(bad) = voters.iter().find(|v| !m.good(v.store_id) && v.store_id != leader) {
        return Some(Action::Change(vec![Change::Remove(*bad)]));
    }
    if voters.len() > rf {
        return match removal_candidate(m, &voters, None, leader) {
            Some(v) => Some(Action::Change(vec![Change::Remove(v)])),
            None => leadership_target(m, &voters, leader).map(Action::Transfer),
        };
    }
    // Healthy, but two voters share a zone while a store in another one could take one.
    if m.shares_domain(&voters)
        && let Some(store_id) = m.new_domain_target(&r.peers, cfg.max_snapshots_per_store)
    {
        return Some(Action::Change(vec![Change::AddLearner { store_id }]));
    }
    None
}

/// Counts in `m` the voter each region's promotion will remove: regions with
/// a learner on a good store (reported, or ordered as `cooling` says) and
/// already `rf` voters. Each is the voter [`removal_candidate`] picks at that
/// point; [`repair`] removes that one when the learner is promoted.
pub(super) fn project_removals(m: &mut Model, regions: &[RegionInfo], cooling: &HashMap<u64, Cooldown>, rf: usize) {
    for info in regions {
        let Some(r) = info.region.as_ref() else { continue };
        if info.leader_store_id == 0 {
            continue;
        }
        // Most regions have no learner and none ordered: nothing to project.
        let ordered = cooling.get(&r.id).and_then(|c| c.adds_learner_on).map(|store_id| Peer { id: 0, store_id, is_learner: true });
        let Some(joining) = r.peers.iter().copied().find(|p| p.is_learner).or(ordered).filter(|l| m.good(l.store_id)) else { continue };
        let voters: Vec<Peer> = r.peers.iter().filter(|p| !p.is_learner).copied().collect();
        if voters.len() < rf {
            continue;
        }
        if let Some(v) = removal_candidate(m, &voters, Some(&joining), info.leader_store_id) {
            m.project_removal(r.id, v);
        }
    }
}

/// The voter to remove when one must go (`joining`: the learner promoted in
/// the same change, which stays): one on a bad store first, else one sharing
/// its zone with another voter or with `joining`, else the one on the store
/// with the most regions; never the leader (`None` if only the leader
/// qualifies: the caller moves leadership first). Removing by region count
/// while a zone is shared would leave the region with two replicas in one zone.
fn removal_candidate(m: &Model, voters: &[Peer], joining: Option<&Peer>, leader: u64) -> Option<Peer> {
    let bad: Vec<&Peer> = voters.iter().filter(|v| !m.good(v.store_id)).collect();
    if !bad.is_empty() {
        return bad.iter().find(|v| v.store_id != leader).map(|v| **v);
    }
    let staying: Vec<&Peer> = voters.iter().chain(joining).collect();
    let shared = |v: &Peer| staying.iter().filter(|w| m.domain(w.store_id) == m.domain(v.store_id)).count() > 1;
    let sharing: Vec<&Peer> = voters.iter().filter(|v| shared(v)).collect();
    if !sharing.is_empty() {
        return sharing.into_iter().filter(|v| v.store_id != leader).max_by_key(|v| (m.count(v.store_id), v.store_id)).copied();
    }
    voters.iter().filter(|v| v.store_id != leader).max_by_key(|v| (m.count(v.store_id), v.store_id)).copied()
}

/// A voter on a good store other than the leader's, on the store leading fewest.
pub(super) fn leadership_target(m: &Model, voters: &[Peer], leader: u64) -> Option<Peer> {
    voters.iter().filter(|v| v.store_id != leader && m.good(v.store_id)).min_by_key(|v| (m.leader_count(v.store_id), v.store_id)).copied()
}
