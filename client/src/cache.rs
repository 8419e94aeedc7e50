//! The client's picture of the cluster: which region holds which keys, which
//! store leads each region, and where each store listens.
//!
//! Pure bookkeeping, no I/O: [`crate::Client`] fills it from Meta answers and
//! from the region errors stores send back, and asks it where to send a key.
//!
//! Invariant: cached regions never overlap, and each region id is cached at most
//! once. Inserting a region removes every cached region it overlaps (and any
//! older copy of itself), unless the new one is provably older than one of them:
//!
//! - same region id: its epoch `version` or `conf_ver` is lower than the cached one's;
//! - another region id: its `version` is lower. Every split or merge gives the
//!   regions it creates a `version` above those it replaces, so along any one key
//!   versions only grow; a region that overlaps a cached one with a higher
//!   version is an ancestor of it (say, the parent of a split whose halves we
//!   already know, reported by a Meta leader that has not heard of the split yet).

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use shoal_proto::{Region, RegionEpoch, StoreMeta};

/// A cached region and the store of its leader (0 while unknown).
#[derive(Clone, Debug, PartialEq)]
pub struct CachedRegion {
    pub region: Region,
    pub leader_store_id: u64,
}

impl CachedRegion {
    /// Whether `key` is in `[start_key, end_key)`; an empty end is unbounded.
    pub fn contains(&self, key: &[u8]) -> bool {
        contains(&self.region, key)
    }
}

/// Where to send a request for a key, according to the cache.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedTarget {
    pub region_id: u64,
    /// The region as cached.
    pub region: Region,
    pub store_id: u64,
    pub addr: String,
    /// True when `store_id` is the known leader, false for a guessed peer.
    pub is_leader: bool,
}

#[derive(Debug, Default)]
pub struct RegionCache {
    /// Regions by start key.
    regions: BTreeMap<Vec<u8>, CachedRegion>,
    /// Region id → start key, to find a region by id.
    by_id: HashMap<u64, Vec<u8>>,
    /// Store id → client address.
    stores: HashMap<u64, String>,
}

fn contains(region: &Region, key: &[u8]) -> bool {
    region.start_key.as_slice() <= key && (region.end_key.is_empty() || key < region.end_key.as_slice())
}

fn epoch(region: &Region) -> RegionEpoch {
    region.epoch.unwrap_or_default()
}

/// Whether `new` is older than `cached`, which overlaps it (or has its id).
fn is_stale(new: &Region, cached: &Region) -> bool {
    let (n, c) = (epoch(new), epoch(cached));
    if new.id == cached.id { n.version < c.version || n.conf_ver < c.conf_ver } else { n.version < c.version }
}

impl RegionCache {
    pub fn new() -> RegionCache {
        RegionCache::default()
    }

    pub fn len(&self) -> usize {
        self.regions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// The cached regions in key order.
    pub fn regions(&self) -> impl Iterator<Item = &CachedRegion> {
        self.regions.values()
    }

    /// The cached region whose range holds `key`.
    pub fn lookup(&self, key: &[u8]) -> Option<&CachedRegion> {
        self.regions.range::<[u8], _>((Bound::Unbounded, Bound::Included(key))).next_back().map(|(_, r)| r).filter(|r| r.contains(key))
    }

    pub fn get(&self, region_id: u64) -> Option<&CachedRegion> {
        self.by_id.get(&region_id).and_then(|start| self.regions.get(start))
    }

    fn get_mut(&mut self, region_id: u64) -> Option<&mut CachedRegion> {
        let start = self.by_id.get(&region_id)?;
        self.regions.get_mut(start)
    }

    /// Start keys of the cached regions overlapping `region`'s range.
    fn overlapping(&self, region: &Region) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        // The region starting at or before the new start, if it reaches past it...
        if let Some((start, r)) =
            self.regions.range::<[u8], _>((Bound::Unbounded, Bound::Included(region.start_key.as_slice()))).next_back()
            && (r.region.end_key.is_empty() || r.region.end_key > region.start_key)
        {
            out.push(start.clone());
        }
        // ...and every region starting inside the new range.
        let upper = if region.end_key.is_empty() { Bound::Unbounded } else { Bound::Excluded(region.end_key.as_slice()) };
        out.extend(self.regions.range::<[u8], _>((Bound::Excluded(region.start_key.as_slice()), upper)).map(|(k, _)| k.clone()));
        out
    }

    /// Caches `region` with its leader's store (0 if unknown), replacing every
    /// cached region it overlaps. Returns false, changing nothing, when the
    /// region is malformed (id 0, or an end not after its start) or older than
    /// a cached region it would replace (see the module docs).
    ///
    /// With no leader given, a leader known for an older copy of the same region
    /// is kept if that store still has a peer of it.
    pub fn insert(&mut self, region: Region, leader_store_id: u64) -> bool {
        if region.id == 0 || (!region.end_key.is_empty() && region.end_key <= region.start_key) {
            return false;
        }
        let mut doomed = self.overlapping(&region);
        if let Some(start) = self.by_id.get(&region.id)
            && !doomed.contains(start)
        {
            doomed.push(start.clone());
        }
        if doomed.iter().any(|start| is_stale(&region, &self.regions[start].region)) {
            return false;
        }
        let mut leader = leader_store_id;
        for start in doomed {
            if let Some(old) = self.regions.remove(&start) {
                self.by_id.remove(&old.region.id);
                if leader == 0
                    && old.region.id == region.id
                    && old.leader_store_id != 0
                    && region.peers.iter().any(|p| p.store_id == old.leader_store_id)
                {
                    leader = old.leader_store_id;
                }
            }
        }
        self.by_id.insert(region.id, region.start_key.clone());
        self.regions.insert(region.start_key.clone(), CachedRegion { region, leader_store_id: leader });
        true
    }

    /// Records that `store_id` leads the region (0: the leader is unknown).
    /// Returns false if the region is not cached.
    pub fn update_leader(&mut self, region_id: u64, store_id: u64) -> bool {
        match self.get_mut(region_id) {
            Some(r) => {
                r.leader_store_id = store_id;
                true
            }
            None => false,
        }
    }

    /// Forgets the leader of the region if it is `store_id` (which just failed).
    pub fn forget_leader(&mut self, region_id: u64, store_id: u64) {
        if let Some(r) = self.get_mut(region_id)
            && r.leader_store_id == store_id
        {
            r.leader_store_id = 0;
        }
    }

    /// Drops the region from the cache. Returns whether it was cached.
    pub fn invalidate(&mut self, region_id: u64) -> bool {
        match self.by_id.remove(&region_id) {
            Some(start) => self.regions.remove(&start).is_some(),
            None => false,
        }
    }

    /// Takes in the regions an `EpochNotMatch` says the store now has for the
    /// range (after a split, both halves). Returns how many were cached.
    pub fn on_epoch_not_match(&mut self, current_regions: &[Region]) -> usize {
        // Leaders known before: inserting one region may evict another of the
        // answer's regions (the right half evicts the unsplit left one).
        let leaders: HashMap<u64, u64> =
            current_regions.iter().filter_map(|r| self.get(r.id).map(|c| (r.id, c.leader_store_id))).filter(|&(_, l)| l != 0).collect();
        // Newest first, so a stale region in the answer cannot displace a fresh one.
        let mut regions: Vec<&Region> = current_regions.iter().collect();
        regions.sort_by_key(|r| std::cmp::Reverse(epoch(r).version));
        regions
            .into_iter()
            .filter(|r| {
                let leader = leaders.get(&r.id).copied().filter(|l| r.peers.iter().any(|p| p.store_id == *l)).unwrap_or(0);
                self.insert((*r).clone(), leader)
            })
            .count()
    }

    /// Takes in a `KeyNotInRegion`: the store says region `routed.id` now spans
    /// only `[start, end)`. If that is narrower than `routed` (the region as the
    /// request was routed by), the region split and we missed it: cache it with
    /// the new bounds and an epoch `version` one above `routed`'s (the least the
    /// split gave it, so the real region replaces it when we learn of it, and
    /// `routed`'s own, older, copy can no longer replace it), keeping its peers
    /// and known leader. Otherwise just drop the region. Returns whether the
    /// narrowed region was cached.
    pub fn on_key_not_in_region(&mut self, routed: &Region, start: &[u8], end: &[u8]) -> bool {
        let within_start = start >= routed.start_key.as_slice();
        let within_end = routed.end_key.is_empty() || (!end.is_empty() && end <= routed.end_key.as_slice());
        let narrower = start != routed.start_key.as_slice() || end != routed.end_key.as_slice();
        if !(within_start && within_end && narrower) {
            self.invalidate(routed.id);
            return false;
        }
        let mut region = routed.clone();
        region.start_key = start.to_vec();
        region.end_key = end.to_vec();
        let e = epoch(routed);
        region.epoch = Some(RegionEpoch { conf_ver: e.conf_ver, version: e.version + 1 });
        let leader = self.get(routed.id).map_or(0, |c| c.leader_store_id);
        self.insert(region, leader)
    }

    pub fn put_store(&mut self, store_id: u64, addr: &str) {
        if store_id != 0 && !addr.is_empty() {
            self.stores.insert(store_id, addr.to_string());
        }
    }

    /// A store as meta lists it: clients route to its client port when it has one.
    pub fn put_store_meta(&mut self, s: &StoreMeta) {
        let addr = if s.client_address.is_empty() { &s.address } else { &s.client_address };
        self.put_store(s.id, addr);
    }

    pub fn forget_store(&mut self, store_id: u64) {
        self.stores.remove(&store_id);
    }

    pub fn store_addr(&self, store_id: u64) -> Option<&str> {
        self.stores.get(&store_id).map(String::as_str)
    }

    /// Where to send a request for `key`: the leader's store if it and its
    /// address are known, else one of the region's peers (voters before
    /// learners) with a known address, the `rotation`-th of them, so that
    /// successive tries visit different stores. `None` when the key's region
    /// is not cached or no peer's address is known.
    pub fn target(&self, key: &[u8], rotation: usize) -> Option<CachedTarget> {
        let r = self.lookup(key)?;
        let make = |store_id: u64, addr: &str, is_leader| CachedTarget {
            region_id: r.region.id,
            region: r.region.clone(),
            store_id,
            addr: addr.to_string(),
            is_leader,
        };
        if r.leader_store_id != 0
            && let Some(addr) = self.store_addr(r.leader_store_id)
        {
            return Some(make(r.leader_store_id, addr, true));
        }
        let reachable = |learner: bool| -> Vec<(u64, &str)> {
            r.region
                .peers
                .iter()
                .filter(|p| p.is_learner == learner)
                .filter_map(|p| self.store_addr(p.store_id).map(|a| (p.store_id, a)))
                .collect()
        };
        let mut candidates = reachable(false);
        if candidates.is_empty() {
            candidates = reachable(true);
        }
        if candidates.is_empty() {
            return None;
        }
        let (store_id, addr) = candidates[rotation % candidates.len()];
        Some(make(store_id, addr, false))
    }
}

#[cfg(test)]
mod tests {
    use shoal_proto::Peer;

    use super::*;

    fn region(id: u64, start: &str, end: &str, conf_ver: u64, version: u64) -> Region {
        Region {
            id,
            start_key: start.as_bytes().to_vec(),
            end_key: end.as_bytes().to_vec(),
            epoch: Some(RegionEpoch { conf_ver, version }),
            peers: (1..=3).map(|s| Peer { id: id * 10 + s, store_id: s, is_learner: false }).collect(),
        }
    }

    /// (id, start, end) of every cached region, in key order.
    fn ranges(c: &RegionCache) -> Vec<(u64, String, String)> {
        c.regions()
            .map(|r| (r.region.id, String::from_utf8_lossy(&r.region.start_key).into(), String::from_utf8_lossy(&r.region.end_key).into()))
            .collect()
    }

    fn id_at(c: &RegionCache, key: &str) -> Option<u64> {
        c.lookup(key.as_bytes()).map(|r| r.region.id)
    }

    fn r(id: u64, s: &str, e: &str) -> (u64, String, String) {
        (id, s.into(), e.into())
    }

    #[test]
    fn lookup_respects_inclusive_start_and_exclusive_end() {
        let mut c = RegionCache::new();
        assert!(c.insert(region(1, "b", "d", 1, 1), 0));
        assert_eq!(id_at(&c, "a"), None, "before the first region");
        assert_eq!(id_at(&c, "b"), Some(1), "the start key is in the region");
        assert_eq!(id_at(&c, "c"), Some(1));
        assert_eq!(id_at(&c, "czzz"), Some(1));
        assert_eq!(id_at(&c, "d"), None, "the end key is not");
        assert_eq!(id_at(&c, "e"), None);
        assert!(c.insert(region(2, "d", "f", 1, 1), 0));
        assert_eq!(id_at(&c, "d"), Some(2), "the next region's start key is in the next region");
        assert_eq!(id_at(&c, "c\u{ff}"), Some(1));
    }

    #[test]
    fn lookup_with_a_gap_between_regions_misses() {
        let mut c = RegionCache::new();
        c.insert(region(1, "a", "c", 1, 1), 0);
        c.insert(region(3, "m", "p", 1, 1), 0);
        // "d" is after region 1's end: the region before it must not answer.
        assert_eq!(id_at(&c, "d"), None);
        assert_eq!(id_at(&c, "l"), None);
        assert_eq!(id_at(&c, "m"), Some(3));
    }

    #[test]
    fn empty_keys_mean_unbounded() {
        let mut c = RegionCache::new();
        c.insert(region(1, "", "m", 1, 1), 0);
        c.insert(region(2, "m", "", 1, 1), 0);
        assert_eq!(id_at(&c, ""), Some(1), "the empty key is the first key");
        assert_eq!(id_at(&c, "\0"), Some(1));
        assert_eq!(id_at(&c, "lzzz"), Some(1));
        assert_eq!(id_at(&c, "m"), Some(2));
        assert_eq!(id_at(&c, "\u{10ffff}\u{10ffff}"), Some(2), "an empty end key is unbounded");
        let mut whole = RegionCache::new();
        whole.insert(region(1, "", "", 1, 1), 0);
        for k in ["", "a", "zzzz"] {
            assert_eq!(id_at(&whole, k), Some(1), "{k:?}");
        }
    }

    #[test]
    fn split_halves_replace_the_parent() {
        let mut c = RegionCache::new();
        c.insert(region(1, "", "", 1, 1), 2);
        // The left half keeps the id; the new right half comes first here.
        assert!(c.insert(region(2, "m", "", 1, 2), 0));
        assert_eq!(ranges(&c), vec![r(2, "m", "")], "the parent overlapped the right half and is gone");
        assert_eq!(id_at(&c, "a"), None, "so its left part is unknown until the left half arrives");
        assert!(c.insert(region(1, "", "m", 1, 2), 0));
        assert_eq!(ranges(&c), vec![r(1, "", "m"), r(2, "m", "")]);
        assert_eq!(id_at(&c, "l"), Some(1));
        assert_eq!(id_at(&c, "m"), Some(2));
    }

    #[test]
    fn a_merged_region_removes_every_region_it_covers() {
        let mut c = RegionCache::new();
        c.insert(region(1, "", "c", 1, 3), 0);
        c.insert(region(2, "c", "f", 1, 3), 0);
        c.insert(region(3, "f", "k", 1, 3), 0);
        c.insert(region(4, "k", "", 1, 3), 0);
        // Covers part of 1, all of 2 and 3, none of 4 (its end is 4's start).
        assert!(c.insert(region(9, "b", "k", 1, 4), 0));
        assert_eq!(ranges(&c), vec![r(9, "b", "k"), r(4, "k", "")]);
        assert_eq!(c.get(1), None);
        assert_eq!(c.get(2), None);
        assert_eq!(c.get(3), None);
        assert_eq!(id_at(&c, "a"), None);
        assert_eq!(id_at(&c, "k"), Some(4));
    }

    #[test]
    fn touching_regions_are_not_overlapping() {
        let mut c = RegionCache::new();
        c.insert(region(1, "a", "c", 1, 1), 0);
        c.insert(region(3, "e", "g", 1, 1), 0);
        assert!(c.insert(region(2, "c", "e", 1, 1), 0));
        assert_eq!(ranges(&c), vec![r(1, "a", "c"), r(2, "c", "e"), r(3, "e", "g")]);
    }

    #[test]
    fn an_unbounded_region_overlaps_everything_after_its_start() {
        let mut c = RegionCache::new();
        c.insert(region(1, "a", "c", 1, 1), 0);
        c.insert(region(2, "x", "y", 1, 1), 0);
        c.insert(region(3, "y", "", 1, 1), 0);
        assert!(c.insert(region(4, "b", "", 1, 2), 0));
        assert_eq!(ranges(&c), vec![r(4, "b", "")]);
    }

    #[test]
    fn a_region_with_an_unbounded_end_is_replaced_by_one_starting_inside_it() {
        let mut c = RegionCache::new();
        c.insert(region(1, "", "", 1, 1), 0);
        assert!(c.insert(region(2, "q", "r", 1, 2), 0));
        assert_eq!(ranges(&c), vec![r(2, "q", "r")]);
    }

    #[test]
    fn stale_insert_of_the_same_region_is_ignored() {
        let mut c = RegionCache::new();
        c.insert(region(1, "", "m", 2, 5), 3);
        // The parent before the split (older version) would cover "m".."": refused.
        assert!(!c.insert(region(1, "", "", 2, 4), 1));
        // Older conf_ver, even with the same version: refused.
        assert!(!c.insert(region(1, "", "m", 1, 5), 1));
        assert_eq!(ranges(&c), vec![r(1, "", "m")]);
        assert_eq!(c.get(1).map(|r| r.leader_store_id), Some(3), "nothing changed");
        assert_eq!(id_at(&c, "x"), None);
        // Same epoch: accepted (it may bring a leader).
        assert!(c.insert(region(1, "", "m", 2, 5), 2));
        assert_eq!(c.get(1).map(|r| r.leader_store_id), Some(2));
        // Newer: accepted.
        assert!(c.insert(region(1, "", "m", 3, 5), 0));
    }

    #[test]
    fn a_parent_older_than_a_cached_half_is_ignored() {
        let mut c = RegionCache::new();
        // We learned the right half of a split from a store...
        c.insert(region(2, "m", "", 1, 2), 0);
        // ...then a lagging Meta leader reports the parent, with the old version.
        assert!(!c.insert(region(1, "", "", 1, 1), 0));
        assert_eq!(ranges(&c), vec![r(2, "m", "")]);
    }

    #[test]
    fn a_moved_region_id_is_cached_once() {
        let mut c = RegionCache::new();
        c.insert(region(5, "m", "p", 1, 1), 0);
        // Region 5 now covers another range that does not overlap its old one.
        assert!(c.insert(region(5, "a", "c", 1, 2), 0));
        assert_eq!(ranges(&c), vec![r(5, "a", "c")]);
        assert_eq!(id_at(&c, "n"), None);
        assert!(c.invalidate(5));
        assert!(c.is_empty());
    }

    #[test]
    fn malformed_regions_are_refused() {
        let mut c = RegionCache::new();
        assert!(!c.insert(region(0, "a", "b", 1, 1), 0), "id 0");
        assert!(!c.insert(region(1, "b", "a", 1, 1), 0), "end before start");
        assert!(!c.insert(region(1, "b", "b", 1, 1), 0), "empty range");
        assert!(c.is_empty());
    }

    #[test]
    fn update_leader_and_invalidate() {
        let mut c = RegionCache::new();
        c.insert(region(1, "", "m", 1, 1), 0);
        c.insert(region(2, "m", "", 1, 1), 0);
        assert!(c.update_leader(2, 3));
        assert!(!c.update_leader(7, 3), "unknown region");
        assert_eq!(c.get(2).map(|r| r.leader_store_id), Some(3));
        assert_eq!(c.get(1).map(|r| r.leader_store_id), Some(0));
        c.forget_leader(2, 1);
        assert_eq!(c.get(2).map(|r| r.leader_store_id), Some(3), "store 1 was not the leader");
        c.forget_leader(2, 3);
        assert_eq!(c.get(2).map(|r| r.leader_store_id), Some(0));
        assert!(c.invalidate(1));
        assert!(!c.invalidate(1));
        assert_eq!(id_at(&c, "a"), None);
        assert_eq!(id_at(&c, "z"), Some(2));
        // The id index follows: re-inserting region 1 elsewhere works.
        assert!(c.insert(region(1, "a", "b", 1, 1), 0));
        assert_eq!(ranges(&c), vec![r(1, "a", "b"), r(2, "m", "")]);
    }

    #[test]
    fn epoch_not_match_caches_both_halves_and_keeps_the_leader() {
        let mut c = RegionCache::new();
        c.insert(region(1, "", "", 1, 1), 2);
        let left = region(1, "", "m", 1, 2);
        let right = region(8, "m", "", 1, 2);
        assert_eq!(c.on_epoch_not_match(&[right, left]), 2);
        assert_eq!(ranges(&c), vec![r(1, "", "m"), r(8, "m", "")]);
        assert_eq!(c.get(1).map(|r| r.leader_store_id), Some(2), "the leader of the same region on a store it still has a peer on");
        assert_eq!(c.get(8).map(|r| r.leader_store_id), Some(0), "the new region's leader is unknown");
    }

    #[test]
    fn epoch_not_match_with_a_stale_region_in_the_answer_keeps_the_fresh_one() {
        let mut c = RegionCache::new();
        // The answer lists an old copy of the parent and both fresh halves, oldest first.
        let n = c.on_epoch_not_match(&[region(1, "", "", 1, 1), region(1, "", "m", 1, 2), region(8, "m", "", 1, 2)]);
        assert_eq!(n, 2);
        assert_eq!(ranges(&c), vec![r(1, "", "m"), r(8, "m", "")]);
    }

    #[test]
    fn leader_not_kept_when_its_store_lost_the_peer() {
        let mut c = RegionCache::new();
        c.insert(region(1, "", "", 1, 1), 3);
        let mut moved = region(1, "", "", 2, 1);
        moved.peers.retain(|p| p.store_id != 3);
        assert!(c.insert(moved, 0));
        assert_eq!(c.get(1).map(|r| r.leader_store_id), Some(0));
    }

    #[test]
    fn key_not_in_region_narrows_a_region_that_split_unseen() {
        let mut c = RegionCache::new();
        let routed = region(1, "", "", 1, 4);
        c.insert(routed.clone(), 2);
        // The store says region 1 is now ["", "m"): it split.
        assert!(c.on_key_not_in_region(&routed, b"", b"m"));
        assert_eq!(ranges(&c), vec![r(1, "", "m")]);
        let cached = c.get(1).cloned().expect("cached");
        assert_eq!(cached.region.epoch, Some(RegionEpoch { conf_ver: 1, version: 5 }));
        assert_eq!(cached.leader_store_id, 2, "the leader is kept");
        assert_eq!(id_at(&c, "x"), None, "the rest is unknown");
        // A lagging Meta's copy of the unsplit region no longer displaces it...
        assert!(!c.insert(routed.clone(), 2));
        // ...but the real region does, whatever its exact version.
        assert!(c.insert(region(1, "", "m", 1, 5), 0));
        assert!(c.insert(region(1, "", "k", 1, 6), 0));
        assert_eq!(ranges(&c), vec![r(1, "", "k")]);
    }

    #[test]
    fn key_not_in_region_with_bounds_that_do_not_narrow_drops_the_region() {
        let mut c = RegionCache::new();
        let routed = region(1, "c", "m", 1, 4);
        c.insert(routed.clone(), 2);
        assert!(!c.on_key_not_in_region(&routed, b"a", b"m"), "wider: the store is behind, or we are");
        assert!(c.is_empty());
        c.insert(routed.clone(), 2);
        assert!(!c.on_key_not_in_region(&routed, b"c", b""), "wider at the end");
        assert!(c.is_empty());
        c.insert(routed.clone(), 2);
        assert!(!c.on_key_not_in_region(&routed, b"c", b"m"), "the same bounds");
        assert!(c.is_empty());
        // Narrower at either end is a split.
        c.insert(routed.clone(), 2);
        assert!(c.on_key_not_in_region(&routed, b"f", b"m"));
        assert_eq!(ranges(&c), vec![r(1, "f", "m")]);
    }

    #[test]
    fn target_prefers_the_leader_then_rotates_over_voters() {
        let mut c = RegionCache::new();
        let mut reg = region(1, "", "", 1, 1);
        reg.peers[2].is_learner = true; // store 3
        c.insert(reg, 0);
        c.put_store(1, "s1:1");
        c.put_store(2, "s2:1");
        c.put_store(3, "s3:1");
        let stores: Vec<u64> = (0..4).map(|i| c.target(b"k", i).map(|t| t.store_id).unwrap_or(0)).collect();
        assert_eq!(stores, vec![1, 2, 1, 2], "voters only, in turn");
        assert!(!c.target(b"k", 0).map(|t| t.is_leader).unwrap_or(true));
        c.update_leader(1, 2);
        let t = c.target(b"k", 0).expect("target");
        assert_eq!((t.store_id, t.addr.as_str(), t.is_leader, t.region_id), (2, "s2:1", true, 1));
        // A leader whose address is unknown is skipped in favour of known peers.
        c.update_leader(1, 9);
        assert_eq!(c.target(b"k", 0).map(|t| t.store_id), Some(1));
        // With no voter reachable, a learner is better than nothing.
        c.forget_store(1);
        c.forget_store(2);
        assert_eq!(c.target(b"k", 0).map(|t| t.store_id), Some(3));
        c.forget_store(3);
        assert_eq!(c.target(b"k", 0), None);
        assert_eq!(c.target(b"k", 0), None);
    }

    #[test]
    fn target_misses_outside_cached_regions() {
        let mut c = RegionCache::new();
        c.insert(region(1, "a", "b", 1, 1), 1);
        c.put_store(1, "s1:1");
        assert_eq!(c.target(b"b", 0), None);
        assert_eq!(c.target(b"a", 0).map(|t| t.region_id), Some(1));
    }

    #[test]
    fn put_store_ignores_empty_addresses_and_id_zero() {
        let mut c = RegionCache::new();
        c.put_store(0, "x:1");
        c.put_store(1, "");
        assert_eq!(c.store_addr(0), None);
        assert_eq!(c.store_addr(1), None);
        c.put_store(1, "a:1");
        c.put_store(1, "b:1");
        assert_eq!(c.store_addr(1), Some("b:1"));
    }

    #[test]
    fn a_store_with_a_client_port_is_routed_there() {
        let mut c = RegionCache::new();
        c.put_store_meta(&StoreMeta { id: 1, address: "peer:1".into(), ..Default::default() });
        assert_eq!(c.store_addr(1), Some("peer:1"));
        c.put_store_meta(&StoreMeta { id: 1, address: "peer:1".into(), client_address: "client:2".into(), ..Default::default() });
        assert_eq!(c.store_addr(1), Some("client:2"));
    }
}
