//! [`MetaState`]: the meta Raft group's state machine — the store registry, the
//! region directory and the id allocator.
//!
//! Every store that holds a meta peer applies the same committed [`MetaCmd`]s
//! in the same order, so every copy is identical. Each command writes its effect
//! into the round's `WriteBatch` (the `meta` CF, layouts in [`crate::keys`]) and
//! into memory at once; the in-memory copy is rebuilt from the CF on start.
//!
//! Directory merge rule (as PD's): a report with an older epoch than the region
//! has in the directory is ignored; one with a newer epoch replaces it and drops
//! every region it overlaps whose epoch is older (the parent of a split, say); a
//! report overlapped by a region with a *newer* version is stale and ignored.
//! A leader reported in an older term never overrides a newer one.
//!
//! The meta group's own region ([`META_REGION_ID`]) is reported like any other
//! but kept apart, in its own slot: its range is the whole key space, so in the
//! directory it would displace every data region. It is merged by the same epoch
//! and term rules and stored under the same key layout.
//!
//! Store states change only through [`meta_cmd::Cmd::SetStoreState`], a
//! compare-and-set checked when applied, so an address update or a concurrent
//! admin call can never undo another's state change.
//!
//! Registration ([`meta_cmd::Cmd::RegisterStore`]) is by name *and instance* (a
//! random token the joining store keeps in its data directory): a store that is
//! not tombstoned with the same name and the same non-empty instance gets its
//! id and state back, so a retried registration is idempotent; anything else —
//! a new name, an empty data directory under a known name (a lost volume), the
//! name of a tombstoned store reused — gets the next id from the allocator,
//! PENDING, when applied. Names are therefore not unique: the older store of a
//! name stays registered, for an admin to drain and remove. Every other command
//! finds stores by id.

use std::collections::BTreeMap;
use std::ops::Bound;

use prost::Message as _;
use shoal_proto::{MetaCmd, MetaIdState, RegionEpoch, RegionInfo, SetStoreState, StoreLabels, StoreMeta, StoreState, meta_cmd};

use super::META_REGION_ID;
use crate::error::{Error, Result};
use crate::keys;
use crate::storage::cf::CF_META;
use crate::storage::{Engine, WriteBatch};

/// What applying a meta command returns to its proposer.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaResult {
    Done,
    /// Ids `first .. first + count` were handed out.
    Ids {
        first: u64,
        count: u64,
    },
    /// The store as it is after the command (registered, or its state changed
    /// or left alone because it was not in an expected state).
    Store(StoreMeta),
    /// The command named a store the registry does not have.
    NoSuchStore(u64),
}

#[derive(Clone, Debug, Default)]
pub struct MetaState {
    next_id: u64,
    stores: BTreeMap<u64, StoreMeta>,
    regions: BTreeMap<u64, RegionInfo>,
    /// Start key → region id, for lookups by key.
    by_start: BTreeMap<Vec<u8>, u64>,
    /// The meta group's own region, kept out of the directory.
    meta_region: Option<RegionInfo>,
    /// Unique to this state's contents: a new one at every load and apply
    /// (see [`MetaState::generation`]).
    generation: u64,
}

/// Generations are unique across every `MetaState` of the process, so that a
/// state reloaded from a snapshot never reuses one.
static NEXT_GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_generation() -> u64 {
    NEXT_GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn epoch(r: &RegionInfo) -> RegionEpoch {
    r.region.as_ref().and_then(|r| r.epoch).unwrap_or_default()
}

/// `report` merged over `old` (the same region): `None` if its epoch is older;
/// a leader from an older term does not replace a newer one.
fn merge_same(old: &RegionInfo, report: &RegionInfo) -> Option<RegionInfo> {
    let (old_epoch, new_epoch) = (epoch(old), epoch(report));
    if new_epoch.version < old_epoch.version || new_epoch.conf_ver < old_epoch.conf_ver {
        return None;
    }
    let mut merged = report.clone();
    if report.leader_term < old.leader_term {
        merged.leader_store_id = old.leader_store_id;
        merged.leader_term = old.leader_term;
    }
    Some(merged)
}

fn corrupt(what: &str, e: prost::DecodeError) -> Error {
    Error::Internal(format!("corrupt meta {what}: {e}"))
}

impl MetaState {
    /// Writes the state a new cluster's meta group starts with (bootstrap).
    pub fn write_initial(wb: &mut WriteBatch<'_>, stores: &[StoreMeta], regions: &[RegionInfo], next_id: u64) -> Result<()> {
        wb.put(CF_META, keys::META_ID_KEY, &MetaIdState { next_id }.encode_to_vec())?;
        for s in stores {
            wb.put(CF_META, &keys::meta_store_key(s.id), &s.encode_to_vec())?;
        }
        for r in regions {
            let id = r.region.as_ref().map_or(0, |r| r.id);
            wb.put(CF_META, &keys::meta_region_key(id), &r.encode_to_vec())?;
        }
        Ok(())
    }

    /// Reads the state this store has applied.
    pub fn load(engine: &Engine) -> Result<MetaState> {
        let mut state = MetaState { generation: next_generation(), ..MetaState::default() };
        if let Some(b) = engine.get(CF_META, keys::META_ID_KEY)? {
            state.next_id = MetaIdState::decode(b.as_slice()).map_err(|e| corrupt("id state", e))?.next_id;
        }
        let mut bad = None;
        let (start, end) = keys::meta_store_range();
        engine.for_each(CF_META, &start, &end, |_, v| match StoreMeta::decode(v) {
            Ok(s) => {
                state.stores.insert(s.id, s);
                true
            }
            Err(e) => {
                bad = Some(corrupt("store", e));
                false
            }
        })?;
        let (start, end) = keys::meta_region_range();
        engine.for_each(CF_META, &start, &end, |_, v| match RegionInfo::decode(v) {
            Ok(r) => {
                if r.region.as_ref().is_some_and(|r| r.id == META_REGION_ID) {
                    state.meta_region = Some(r);
                } else {
                    state.insert_region(r);
                }
                true
            }
            Err(e) => {
                bad = Some(corrupt("region", e));
                false
            }
        })?;
        match bad {
            Some(e) => Err(e),
            None => Ok(state),
        }
    }

    /// Applies one committed command: into `wb` and into memory.
    pub fn apply(&mut self, cmd: &MetaCmd, wb: &mut WriteBatch<'_>) -> Result<MetaResult> {
        self.generation = next_generation();
        match &cmd.cmd {
            Some(meta_cmd::Cmd::AllocIds(count)) => {
                let count = (*count).max(1) as u64;
                let first = self.next_id;
                self.next_id += count;
                wb.put(CF_META, keys::META_ID_KEY, &MetaIdState { next_id: self.next_id }.encode_to_vec())?;
                Ok(MetaResult::Ids { first, count })
            }
            Some(meta_cmd::Cmd::PutRegions(list)) => {
                for report in &list.regions {
                    for (id, merged) in self.merge_region(report) {
                        match merged {
                            Some(info) => wb.put(CF_META, &keys::meta_region_key(id), &info.encode_to_vec())?,
                            None => wb.delete(CF_META, &keys::meta_region_key(id))?,
                        }
                    }
                }
                Ok(MetaResult::Done)
            }
            Some(meta_cmd::Cmd::PutStore(store)) => {
                let mut store = store.clone();
                if let Some(known) = self.stores.get(&store.id) {
                    store.state = known.state;
                    store.instance = known.instance.clone();
                    store.labels = known.labels.clone();
                }
                self.put_store(store, wb)?;
                Ok(MetaResult::Done)
            }
            Some(meta_cmd::Cmd::RegisterStore(req)) => Ok(MetaResult::Store(self.register_store(req, wb)?)),
            Some(meta_cmd::Cmd::SetStoreState(SetStoreState { store_id, from, to })) => {
                let Some(known) = self.stores.get(store_id).cloned() else { return Ok(MetaResult::NoSuchStore(*store_id)) };
                if !from.contains(&known.state) {
                    return Ok(MetaResult::Store(known));
                }
                let updated = StoreMeta { state: *to, ..known };
                self.put_store(updated.clone(), wb)?;
                Ok(MetaResult::Store(updated))
            }
            Some(meta_cmd::Cmd::SetStoreLabels(StoreLabels { store_id, labels })) => {
                let Some(known) = self.stores.get(store_id).cloned() else { return Ok(MetaResult::NoSuchStore(*store_id)) };
                let updated = StoreMeta { labels: labels.clone(), ..known };
                self.put_store(updated.clone(), wb)?;
                Ok(MetaResult::Store(updated))
            }
            None => Ok(MetaResult::Done),
        }
    }

    /// `RegisterStore`: the same store again (name and non-empty instance of a
    /// store not tombstoned) keeps its id and state, with the new address;
    /// anything else is a new store, PENDING, under the next id.
    fn register_store(&mut self, req: &StoreMeta, wb: &mut WriteBatch<'_>) -> Result<StoreMeta> {
        if let Some(known) = self.registered(&req.name, &req.instance).cloned() {
            let updated = StoreMeta { address: req.address.clone(), ..known };
            self.put_store(updated.clone(), wb)?;
            return Ok(updated);
        }
        let store = StoreMeta {
            id: self.next_id,
            name: req.name.clone(),
            address: req.address.clone(),
            state: StoreState::Pending as i32,
            instance: req.instance.clone(),
            client_address: String::new(),
            labels: Default::default(),
        };
        self.put_store(store.clone(), wb)?;
        wb.put(CF_META, keys::META_ID_KEY, &MetaIdState { next_id: self.next_id }.encode_to_vec())?;
        Ok(store)
    }

    /// The live store registered earlier by the same data directory (`name`
    /// and a non-empty `instance`), if any.
    fn registered(&self, name: &str, instance: &str) -> Option<&StoreMeta> {
        if instance.is_empty() {
            return None;
        }
        self.stores.values().find(|s| s.name == name && s.instance == instance && s.state != StoreState::Tombstone as i32)
    }

    fn put_store(&mut self, store: StoreMeta, wb: &mut WriteBatch<'_>) -> Result<()> {
        wb.put(CF_META, &keys::meta_store_key(store.id), &store.encode_to_vec())?;
        self.next_id = self.next_id.max(store.id + 1);
        self.stores.insert(store.id, store);
        Ok(())
    }

    /// Merges one region report into the directory (or the meta slot). Returns
    /// what changed: region id → its new entry, or `None` for a region dropped.
    fn merge_region(&mut self, report: &RegionInfo) -> Vec<(u64, Option<RegionInfo>)> {
        let Some(region) = report.region.as_ref() else { return vec![] };
        if region.id == META_REGION_ID {
            let merged = match self.meta_region.as_ref() {
                Some(old) => match merge_same(old, report) {
                    Some(m) => m,
                    None => return vec![],
                },
                None => report.clone(),
            };
            self.meta_region = Some(merged.clone());
            return vec![(region.id, Some(merged))];
        }
        let new_epoch = epoch(report);
        let overlapping = self.overlapping(&region.start_key, &region.end_key);
        // A region we know with a newer version covers part of this range: stale.
        if overlapping.iter().any(|id| *id != region.id && self.regions.get(id).is_some_and(|r| epoch(r).version > new_epoch.version)) {
            return vec![];
        }
        let merged = match self.regions.get(&region.id) {
            Some(old) => match merge_same(old, report) {
                Some(m) => m,
                None => return vec![],
            },
            None => report.clone(),
        };
        let mut changes = Vec::new();
        for id in overlapping {
            if id != region.id {
                self.remove_region(id);
                changes.push((id, None));
            }
        }
        self.remove_region(region.id);
        self.insert_region(merged.clone());
        changes.push((region.id, Some(merged)));
        changes
    }

    fn overlapping(&self, start: &[u8], end: &[u8]) -> Vec<u64> {
        // The region holding `start` (it may begin before it), then every region
        // beginning inside the range.
        let first = self.by_start.range::<[u8], _>((Bound::Unbounded, Bound::Included(start))).next_back().map(|(_, id)| *id);
        let rest = self
            .by_start
            .range::<[u8], _>((Bound::Excluded(start), Bound::Unbounded))
            .take_while(|(s, _)| end.is_empty() || s.as_slice() < end)
            .map(|(_, id)| *id);
        first
            .into_iter()
            .chain(rest)
            .filter(|id| {
                self.regions
                    .get(id)
                    .and_then(|r| r.region.as_ref())
                    .is_some_and(|r| keys::ranges_overlap(&r.start_key, &r.end_key, start, end))
            })
            .collect()
    }

    fn insert_region(&mut self, info: RegionInfo) {
        let Some(region) = info.region.as_ref() else { return };
        self.by_start.insert(region.start_key.clone(), region.id);
        self.regions.insert(region.id, info);
    }

    fn remove_region(&mut self, id: u64) {
        if let Some(old) = self.regions.remove(&id)
            && let Some(r) = old.region
            && self.by_start.get(&r.start_key) == Some(&id)
        {
            self.by_start.remove(&r.start_key);
        }
    }

    /// The region whose range holds `key`.
    pub fn region_by_key(&self, key: &[u8]) -> Option<&RegionInfo> {
        let (_, id) = self.by_start.range::<[u8], _>((Bound::Unbounded, Bound::Included(key))).next_back()?;
        let info = self.regions.get(id)?;
        let r = info.region.as_ref()?;
        keys::in_range(key, &r.start_key, &r.end_key).then_some(info)
    }

    /// Regions overlapping `[start, end)` in key order, at most `limit` (0: all).
    pub fn scan_regions(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<RegionInfo> {
        let ids = self.overlapping(start, end);
        let mut out: Vec<RegionInfo> = ids.into_iter().filter_map(|id| self.regions.get(&id).cloned()).collect();
        if limit > 0 {
            out.truncate(limit);
        }
        out
    }

    pub fn regions(&self) -> impl Iterator<Item = &RegionInfo> {
        self.regions.values()
    }

    /// A data region of the directory, or the meta group's region.
    pub fn region(&self, id: u64) -> Option<&RegionInfo> {
        if id == META_REGION_ID { self.meta_region.as_ref() } else { self.regions.get(&id) }
    }

    /// The meta group's own region, once its leader has reported it.
    pub fn meta_region(&self) -> Option<&RegionInfo> {
        self.meta_region.as_ref()
    }

    /// Every region placement manages: the data regions and the meta region.
    pub fn all_regions(&self) -> impl Iterator<Item = &RegionInfo> {
        self.meta_region.iter().chain(self.regions.values())
    }

    pub fn stores(&self) -> impl Iterator<Item = &StoreMeta> {
        self.stores.values()
    }

    pub fn store(&self, id: u64) -> Option<&StoreMeta> {
        self.stores.get(&id)
    }

    /// Changes whenever the state may have: equal generations mean equal
    /// contents (what the meta leader's plans cache on).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn next_id(&self) -> u64 {
        self.next_id
    }
}

#[cfg(test)]
mod tests {
    use shoal_proto::{MetaRegions, Peer, Region};

    use super::*;

    fn info(id: u64, start: &str, end: &str, version: u64, leader: u64, term: u64) -> RegionInfo {
        RegionInfo {
            region: Some(Region {
                id,
                start_key: start.into(),
                end_key: end.into(),
                epoch: Some(RegionEpoch { conf_ver: 1, version }),
                peers: vec![Peer { id: id * 10, store_id: 1, is_learner: false }],
            }),
            leader_store_id: leader,
            leader_term: term,
            ..Default::default()
        }
    }

    fn put(regions: Vec<RegionInfo>) -> MetaCmd {
        MetaCmd { cmd: Some(meta_cmd::Cmd::PutRegions(MetaRegions { regions })) }
    }

    fn ids(state: &MetaState) -> Vec<u64> {
        state.scan_regions(b"", b"", 0).iter().map(|r| r.region.as_ref().unwrap().id).collect()
    }

    fn setup() -> (tempfile::TempDir, Engine) {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path(), &[]).unwrap();
        (dir, engine)
    }

    /// Bootstraps a directory of one region (2, the whole key space) in `engine`.
    fn write_one_region(engine: &Engine) {
        let mut wb = engine.batch();
        MetaState::write_initial(&mut wb, &[], &[info(2, "", "", 1, 1, 5)], 100).unwrap();
        engine.write(wb, true).unwrap();
    }

    #[test]
    fn a_split_replaces_its_parent_and_survives_a_reload() {
        let (_dir, engine) = setup();
        write_one_region(&engine);
        let mut state = MetaState::load(&engine).unwrap();
        assert_eq!(state.region_by_key(b"anything").unwrap().region.as_ref().unwrap().id, 2);

        // The right half reports first: the parent (older version) is dropped,
        // leaving a hole until the left half reports.
        let mut wb = engine.batch();
        state.apply(&put(vec![info(7, "m", "", 2, 2, 5)]), &mut wb).unwrap();
        assert_eq!(ids(&state), vec![7]);
        assert!(state.region_by_key(b"a").is_none());
        state.apply(&put(vec![info(2, "", "m", 2, 1, 5)]), &mut wb).unwrap();
        engine.write(wb, true).unwrap();
        assert_eq!(ids(&state), vec![2, 7]);
        assert_eq!(state.region_by_key(b"l").unwrap().region.as_ref().unwrap().id, 2);
        assert_eq!(state.region_by_key(b"m").unwrap().region.as_ref().unwrap().id, 7);

        let reloaded = MetaState::load(&engine).unwrap();
        assert_eq!(ids(&reloaded), vec![2, 7]);
        assert_eq!(reloaded.region_by_key(b"m").unwrap().leader_store_id, 2);
    }

    #[test]
    fn every_load_and_apply_gives_the_state_a_new_generation() {
        let (_dir, engine) = setup();
        write_one_region(&engine);
        let mut state = MetaState::load(&engine).unwrap();
        let loaded = state.generation();
        assert_ne!(MetaState::load(&engine).unwrap().generation(), loaded, "a reload (a snapshot) is a new generation");
        let mut wb = engine.batch();
        state.apply(&put(vec![info(7, "m", "", 2, 2, 5)]), &mut wb).unwrap();
        assert_ne!(state.generation(), loaded, "an apply is a new generation");
        let applied = state.generation();
        assert_eq!(state.clone().generation(), applied, "the same contents keep theirs");
    }

    #[test]
    fn stale_reports_change_nothing() {
        let (_dir, engine) = setup();
        let mut state = MetaState::default();
        let mut wb = engine.batch();
        state.apply(&put(vec![info(2, "", "m", 2, 1, 6), info(7, "m", "", 2, 1, 6)]), &mut wb).unwrap();
        // The unsplit parent, reported late by a lagging store: older version.
        state.apply(&put(vec![info(2, "", "", 1, 3, 9)]), &mut wb).unwrap();
        assert_eq!(ids(&state), vec![2, 7]);
        assert_eq!(state.region(2).unwrap().region.as_ref().unwrap().end_key, b"m");
        // A leader from an older term does not override the known one.
        state.apply(&put(vec![info(7, "m", "", 2, 3, 5)]), &mut wb).unwrap();
        assert_eq!(state.region(7).unwrap().leader_store_id, 1);
        // A newer term does.
        state.apply(&put(vec![info(7, "m", "", 2, 3, 7)]), &mut wb).unwrap();
        assert_eq!(state.region(7).unwrap().leader_store_id, 3);
    }

    #[test]
    fn ids_are_never_handed_out_twice_even_after_reload() {
        let (_dir, engine) = setup();
        let mut wb = engine.batch();
        MetaState::write_initial(&mut wb, &[], &[], 10).unwrap();
        engine.write(wb, true).unwrap();
        let mut state = MetaState::load(&engine).unwrap();
        let mut wb = engine.batch();
        let alloc = MetaCmd { cmd: Some(meta_cmd::Cmd::AllocIds(3)) };
        assert_eq!(state.apply(&alloc, &mut wb).unwrap(), MetaResult::Ids { first: 10, count: 3 });
        assert_eq!(state.apply(&alloc, &mut wb).unwrap(), MetaResult::Ids { first: 13, count: 3 });
        engine.write(wb, true).unwrap();
        let mut state = MetaState::load(&engine).unwrap();
        let mut wb = engine.batch();
        let zero = MetaCmd { cmd: Some(meta_cmd::Cmd::AllocIds(0)) };
        assert_eq!(state.apply(&zero, &mut wb).unwrap(), MetaResult::Ids { first: 16, count: 1 });
    }

    #[test]
    fn scan_regions_starts_at_the_region_holding_start_and_respects_limits() {
        let mut state = MetaState::default();
        let (_dir, engine) = setup();
        let mut wb = engine.batch();
        state
            .apply(
                &put(vec![info(1, "", "c", 2, 1, 1), info(2, "c", "f", 2, 1, 1), info(3, "f", "k", 2, 1, 1), info(4, "k", "", 2, 1, 1)]),
                &mut wb,
            )
            .unwrap();
        let got: Vec<u64> = state.scan_regions(b"d", b"k", 0).iter().map(|r| r.region.as_ref().unwrap().id).collect();
        assert_eq!(got, vec![2, 3], "[d,k) overlaps [c,f) and [f,k) only");
        assert_eq!(state.scan_regions(b"", b"", 2).len(), 2);
        assert_eq!(state.region_by_key(b"zzz").unwrap().region.as_ref().unwrap().id, 4);
    }

    fn cmd(c: meta_cmd::Cmd) -> MetaCmd {
        MetaCmd { cmd: Some(c) }
    }

    #[test]
    fn the_meta_region_has_its_own_slot_and_never_displaces_data_regions() {
        let (_dir, engine) = setup();
        let mut state = MetaState::default();
        let mut wb = engine.batch();
        state.apply(&put(vec![info(2, "", "m", 2, 1, 5), info(7, "m", "", 2, 1, 5)]), &mut wb).unwrap();
        let mut meta = info(META_REGION_ID, "", "", 0, 1, 5);
        meta.region.as_mut().unwrap().epoch = Some(RegionEpoch { conf_ver: 3, version: 0 });
        state.apply(&put(vec![meta.clone()]), &mut wb).unwrap();
        assert_eq!(ids(&state), vec![2, 7], "the directory is untouched");
        assert_eq!(state.region(META_REGION_ID).unwrap().leader_store_id, 1);
        assert_eq!(state.all_regions().count(), 3);
        // An older conf_ver is ignored; a newer term moves the leader.
        let mut old = meta.clone();
        old.region.as_mut().unwrap().epoch = Some(RegionEpoch { conf_ver: 2, version: 0 });
        old.leader_store_id = 9;
        old.leader_term = 50;
        state.apply(&put(vec![old]), &mut wb).unwrap();
        assert_eq!(state.meta_region().unwrap().leader_store_id, 1);
        meta.leader_store_id = 2;
        meta.leader_term = 6;
        state.apply(&put(vec![meta]), &mut wb).unwrap();
        engine.write(wb, true).unwrap();
        let reloaded = MetaState::load(&engine).unwrap();
        assert_eq!(ids(&reloaded), vec![2, 7]);
        assert_eq!(reloaded.meta_region().unwrap().leader_store_id, 2);
        assert_eq!(reloaded.region_by_key(b"a").unwrap().region.as_ref().unwrap().id, 2);
    }

    fn reg(name: &str, addr: &str, instance: &str) -> MetaCmd {
        cmd(meta_cmd::Cmd::RegisterStore(StoreMeta {
            name: name.into(),
            address: addr.into(),
            instance: instance.into(),
            ..Default::default()
        }))
    }

    fn set(id: u64, from: &[StoreState], to: StoreState) -> MetaCmd {
        cmd(meta_cmd::Cmd::SetStoreState(SetStoreState { store_id: id, from: from.iter().map(|s| *s as i32).collect(), to: to as i32 }))
    }

    /// A meta state holding store 1 (`n1`, UP, bootstrapped: no instance), ids from 10.
    fn one_store() -> (tempfile::TempDir, Engine, MetaState) {
        let (dir, engine) = setup();
        let mut wb = engine.batch();
        let up = StoreMeta { id: 1, name: "n1".into(), address: "a1".into(), state: StoreState::Up as i32, ..Default::default() };
        MetaState::write_initial(&mut wb, std::slice::from_ref(&up), &[], 10).unwrap();
        engine.write(wb, true).unwrap();
        let state = MetaState::load(&engine).unwrap();
        (dir, engine, state)
    }

    fn registered(state: &mut MetaState, wb: &mut WriteBatch<'_>, c: &MetaCmd) -> StoreMeta {
        match state.apply(c, wb).unwrap() {
            MetaResult::Store(s) => s,
            other => panic!("registration answered {other:?}"),
        }
    }

    #[test]
    fn registration_by_name_and_instance_and_state_changes_as_compare_and_set() {
        let (_dir, engine, mut state) = one_store();
        let mut wb = engine.batch();
        let s4 = registered(&mut state, &mut wb, &reg("n4", "a4", "i4"));
        assert_eq!((s4.id, s4.state, s4.instance.as_str()), (10, StoreState::Pending as i32, "i4"));
        // The same name and instance again (a retry): the same id and state, the new address.
        let again = registered(&mut state, &mut wb, &reg("n4", "b4", "i4"));
        assert_eq!((again.id, again.state, again.address.as_str()), (10, StoreState::Pending as i32, "b4"));
        let MetaResult::Store(j) = state.apply(&set(10, &[StoreState::Pending], StoreState::Joining), &mut wb).unwrap() else { panic!() };
        assert_eq!(j.state, StoreState::Joining as i32);
        // Not in an expected state: left alone.
        let MetaResult::Store(j) = state.apply(&set(10, &[StoreState::Draining], StoreState::Up), &mut wb).unwrap() else { panic!() };
        assert_eq!(j.state, StoreState::Joining as i32);
        assert_eq!(state.apply(&set(77, &[StoreState::Up], StoreState::Draining), &mut wb).unwrap(), MetaResult::NoSuchStore(77));
        // An address update (a heartbeat, which knows no instance) keeps the state and the instance.
        let beat = StoreMeta { state: StoreState::Up as i32, address: "c4".into(), instance: String::new(), ..j };
        state.apply(&cmd(meta_cmd::Cmd::PutStore(beat)), &mut wb).unwrap();
        assert_eq!((state.store(10).unwrap().state, state.store(10).unwrap().instance.as_str()), (StoreState::Joining as i32, "i4"));
        engine.write(wb, true).unwrap();
        let mut reloaded = MetaState::load(&engine).unwrap();
        assert_eq!((reloaded.store(10).unwrap().address.as_str(), reloaded.store(10).unwrap().instance.as_str()), ("c4", "i4"));
        // The instance survives the reload: a retry still finds the store.
        let mut wb = engine.batch();
        assert_eq!(registered(&mut reloaded, &mut wb, &reg("n4", "c4", "i4")).id, 10);
        let mut wb = engine.batch();
        let alloc = cmd(meta_cmd::Cmd::AllocIds(1));
        assert_eq!(
            reloaded.apply(&alloc, &mut wb).unwrap(),
            MetaResult::Ids { first: 11, count: 1 },
            "the store id is never handed out again"
        );
    }

    #[test]
    fn a_new_instance_under_a_known_name_is_a_new_store_and_leaves_the_old_one_alone() {
        let (_dir, engine, mut state) = one_store();
        let mut wb = engine.batch();
        let first = registered(&mut state, &mut wb, &reg("n4", "a4", "i4"));
        state.apply(&set(first.id, &[StoreState::Pending], StoreState::Joining), &mut wb).unwrap();
        let before = state.store(first.id).cloned().unwrap();
        // The same name from an empty data directory (its volume was lost).
        let second = registered(&mut state, &mut wb, &reg("n4", "a4", "j4"));
        assert_eq!((second.id, second.state, second.instance.as_str()), (11, StoreState::Pending as i32, "j4"));
        assert_eq!(state.store(first.id), Some(&before), "the old store stays as it was, for an admin to drain and remove");
        // Each instance keeps its own id when it retries.
        assert_eq!(registered(&mut state, &mut wb, &reg("n4", "a4", "i4")).id, first.id);
        assert_eq!(registered(&mut state, &mut wb, &reg("n4", "a4", "j4")).id, second.id);
        // A bootstrapped store (no instance) is never matched, nor an empty instance.
        assert_eq!(registered(&mut state, &mut wb, &reg("n1", "a1", "")).id, 12);
        assert_eq!(registered(&mut state, &mut wb, &reg("n1", "a1", "")).id, 13, "an empty instance is a new store every time");
        assert_eq!(state.store(1).unwrap().state, StoreState::Up as i32);
        assert_eq!(state.stores().filter(|s| s.name == "n4").count(), 2);
    }

    #[test]
    fn the_name_of_a_tombstoned_store_registers_anew() {
        let (_dir, engine, mut state) = one_store();
        let mut wb = engine.batch();
        let old = registered(&mut state, &mut wb, &reg("n4", "a4", "i4"));
        state.apply(&set(old.id, &[StoreState::Pending], StoreState::Tombstone), &mut wb).unwrap();
        // A scale-out reusing the name, with a fresh volume.
        let new = registered(&mut state, &mut wb, &reg("n4", "a4", "k4"));
        assert_eq!((new.id, new.state), (11, StoreState::Pending as i32));
        // Even the removed store's own instance gets a new id: a tombstone is never revived.
        let revived = registered(&mut state, &mut wb, &reg("n4", "a4", "i4"));
        assert_eq!((revived.id, revived.state), (12, StoreState::Pending as i32));
        assert_eq!(state.store(old.id).unwrap().state, StoreState::Tombstone as i32);
    }
}
