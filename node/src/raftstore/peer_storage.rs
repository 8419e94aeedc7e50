//! [`PeerStorage`]: raft-rs's `Storage` for one region peer, kept in RocksDB.
//!
//! The log lives in the `raft_log` CF, the hard state in `raft_state`, the region
//! descriptor and apply state in `region_meta` (layouts in [`crate::keys`]). The
//! struct also keeps the small parts in memory (hard state, last index and term,
//! apply state) so that raft-rs's frequent `first_index`/`last_index`/`term` calls
//! do not touch the disk, and the log's unapplied tail ([`EntryCache`]), from
//! which raft-rs's reads of recent entries are served.
//!
//! Writes never go to the engine directly: [`PeerStorage::append`],
//! [`PeerStorage::set_hard_state`] and [`PeerStorage::set_applied`] add to a
//! [`WriteBatch`] that the store loop writes once for all peers (group commit).
//! The in-memory state moves at the same time; the store loop writes the batch
//! before it calls anything that reads it back (`advance`), and aborts on failure.
//!
//! Log GC: [`PeerStorage::compact_to`] deletes applied entries (one range delete)
//! and moves the log's start (`truncated_index`). A follower that needs entries
//! from before it gets a snapshot: [`raft::Storage::snapshot`] asks the
//! [`SnapManager`] for one generated off the store thread, and answers
//! `SnapshotTemporarilyUnavailable` (raft asks again later) until it is ready.
//!
//! Receiving a snapshot ([`PeerStorage::apply_snapshot`]) first records the
//! peer as `APPLYING` with the snapshot's log position (synced), then replaces
//! the region's data with the snapshot's files, then records it `NORMAL` in the
//! round's batch. A crash in between finds `APPLYING` at start and redoes the
//! data part from the kept files ([`PeerStorage::load`]), so a half-applied
//! snapshot is never served.
//!
//! A peer created by a message from its region's leader, before any snapshot,
//! is *uninitialized*: it has no range and no log and holds nothing; nothing of
//! it is written but its hard state.

use std::sync::Arc;

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use shoal_proto::{PeerState, RaftApplyState, RaftLocalState, Region, RegionLocalState, SnapshotData};

use super::entry_cache::EntryCache;
use crate::error::{Error, Result};
use crate::keys;
use crate::snap::SnapManager;
use crate::storage::cf::{CF_RAFT_LOG, CF_RAFT_STATE, CF_REGION_META};
use crate::storage::{Engine, WriteBatch};

/// Index and term a bootstrapped region's log starts after. A peer created later
/// by a leader's message starts at 0 and must be seeded by snapshot.
pub const RAFT_INIT_LOG_INDEX: u64 = 5;
pub const RAFT_INIT_LOG_TERM: u64 = 5;

pub struct PeerStorage {
    engine: Arc<Engine>,
    snap: Arc<SnapManager>,
    region: Region,
    /// Raft's membership as of the applied index (joint while a change is in progress).
    conf_state: ConfState,
    raft_state: RaftLocalState,
    apply_state: RaftApplyState,
    last_term: u64,
    /// Approximate bytes of the entries in the log (since the last truncation).
    log_bytes: u64,
    /// The unapplied tail of the log, so that raft-rs rarely reads it back.
    cache: EntryCache,
    /// The backup whose fence the region holds as of the applied index; empty: none.
    backup_fence: String,
}

fn decode<M: prost::Message + Default>(bytes: &[u8], what: &str) -> Result<M> {
    M::decode(bytes).map_err(|e| Error::Internal(format!("corrupt {what}: {e}")))
}

fn storage_err(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(e.to_string().into()))
}

impl PeerStorage {
    /// Reads region `region_id`'s local state (descriptor, peer state), if any.
    pub fn region_state(engine: &Engine, region_id: u64) -> Result<Option<RegionLocalState>> {
        match engine.get(CF_REGION_META, &keys::region_state_key(region_id))? {
            Some(b) => Ok(Some(decode(&b, "region state")?)),
            None => Ok(None),
        }
    }

    /// Loads the peer of `region_id` that this store holds. A peer found
    /// `APPLYING` (a crash during a snapshot's apply) finishes the apply first.
    pub fn load(engine: Arc<Engine>, snap: Arc<SnapManager>, region_id: u64) -> Result<PeerStorage> {
        let Some(mut region_state) = Self::region_state(&engine, region_id)? else {
            return Err(Error::Internal(format!("region {region_id} has no descriptor")));
        };
        let region = region_state.region.clone().ok_or_else(|| Error::Internal(format!("region {region_id} descriptor is empty")))?;
        if region_state.state() == PeerState::Applying {
            let data = region_state.applying.take().ok_or_else(|| Error::Internal(format!("region {region_id}: applying no snapshot")))?;
            tracing::warn!(region = region_id, "finishing a snapshot apply interrupted by a crash");
            snap.apply(&data)?;
            region_state.set_state(PeerState::Normal);
            let mut wb = engine.batch();
            wb.put(CF_REGION_META, &keys::region_state_key(region_id), &region_state.encode_to_vec())?;
            engine.write(wb, true)?;
            if let Some(key) = &data.key {
                snap.release_received(key);
            }
        }
        let mut raft_state: RaftLocalState = match engine.get(CF_RAFT_STATE, &keys::raft_state_key(region_id))? {
            Some(b) => decode(&b, "raft state")?,
            None => RaftLocalState::default(),
        };
        let apply_state: RaftApplyState = match engine.get(CF_REGION_META, &keys::apply_state_key(region_id))? {
            Some(b) => decode(&b, "apply state")?,
            None => RaftApplyState::default(),
        };
        // Applied entries were committed; an unsynced apply can be ahead of the
        // commit index persisted in the hard state, never the other way round.
        raft_state.commit = raft_state.commit.max(apply_state.applied_index);
        let conf_state = crate::snap::conf_state_of(&region_state, &region)?;
        let mut storage = PeerStorage {
            engine,
            snap,
            region,
            conf_state,
            raft_state,
            apply_state,
            last_term: 0,
            log_bytes: 0,
            cache: EntryCache::default(),
            backup_fence: region_state.backup_fence,
        };
        storage.last_term = if storage.raft_state.last_index == storage.apply_state.truncated_index {
            storage.apply_state.truncated_term
        } else {
            storage.read_entry(storage.raft_state.last_index)?.term
        };
        Ok(storage)
    }

    /// An uninitialized peer of `region_id`: no range, no log, nothing applied —
    /// it waits for a snapshot. Keeps a hard state written earlier, if any.
    pub fn uninitialized(engine: Arc<Engine>, snap: Arc<SnapManager>, region_id: u64) -> Result<PeerStorage> {
        let mut raft_state: RaftLocalState = match engine.get(CF_RAFT_STATE, &keys::raft_state_key(region_id))? {
            Some(b) => decode(&b, "raft state")?,
            None => RaftLocalState::default(),
        };
        raft_state.last_index = 0;
        raft_state.commit = 0;
        Ok(PeerStorage {
            engine,
            snap,
            region: Region { id: region_id, ..Default::default() },
            conf_state: ConfState::default(),
            raft_state,
            apply_state: RaftApplyState::default(),
            last_term: 0,
            log_bytes: 0,
            cache: EntryCache::default(),
            backup_fence: String::new(),
        })
    }

    /// Whether the peer holds the region's data (it was bootstrapped, split off
    /// or seeded by a snapshot).
    pub fn is_initialized(&self) -> bool {
        self.region.epoch.is_some()
    }

    /// The raft state a split's right half starts with on a store that already
    /// had an uninitialized peer of it (created by the new leader's messages
    /// before this store applied the split): the split's initial log position,
    /// with the term and vote that peer may have persisted meanwhile (a vote
    /// must never be forgotten). Written synced.
    pub fn merge_split_raft_state(engine: &Engine, region_id: u64) -> Result<()> {
        let mut state: RaftLocalState = match engine.get(CF_RAFT_STATE, &keys::raft_state_key(region_id))? {
            Some(b) => decode(&b, "raft state")?,
            None => RaftLocalState::default(),
        };
        if state.term <= RAFT_INIT_LOG_TERM {
            state.term = RAFT_INIT_LOG_TERM;
            state.vote = 0;
        }
        state.commit = state.commit.max(RAFT_INIT_LOG_INDEX);
        state.last_index = state.last_index.max(RAFT_INIT_LOG_INDEX);
        let mut wb = engine.batch();
        wb.put(CF_RAFT_STATE, &keys::raft_state_key(region_id), &state.encode_to_vec())?;
        engine.write(wb, true)?;
        Ok(())
    }

    /// Adds everything a brand-new bootstrapped peer of `region` needs on disk.
    pub fn write_initial_state(wb: &mut WriteBatch<'_>, region: &Region) -> Result<()> {
        let region_state = RegionLocalState { region: Some(region.clone()), ..Default::default() };
        wb.put(CF_REGION_META, &keys::region_state_key(region.id), &region_state.encode_to_vec())?;
        let raft_state = RaftLocalState { term: RAFT_INIT_LOG_TERM, vote: 0, commit: RAFT_INIT_LOG_INDEX, last_index: RAFT_INIT_LOG_INDEX };
        wb.put(CF_RAFT_STATE, &keys::raft_state_key(region.id), &raft_state.encode_to_vec())?;
        let apply_state =
            RaftApplyState { applied_index: RAFT_INIT_LOG_INDEX, truncated_index: RAFT_INIT_LOG_INDEX, truncated_term: RAFT_INIT_LOG_TERM };
        wb.put(CF_REGION_META, &keys::apply_state_key(region.id), &apply_state.encode_to_vec())?;
        Ok(())
    }

    pub fn region(&self) -> &Region {
        &self.region
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Index of the last entry removed from the log (the log starts after it).
    pub fn truncated_index(&self) -> u64 {
        self.apply_state.truncated_index
    }

    /// Entries in the log and their approximate bytes.
    pub fn log_size(&self) -> (u64, u64) {
        (self.raft_state.last_index.saturating_sub(self.apply_state.truncated_index), self.log_bytes)
    }

    pub fn snap_manager(&self) -> &Arc<SnapManager> {
        &self.snap
    }

    pub fn applied_index(&self) -> u64 {
        self.apply_state.applied_index
    }

    pub fn commit_index(&self) -> u64 {
        self.raft_state.commit
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    fn first(&self) -> u64 {
        self.apply_state.truncated_index + 1
    }

    fn read_entry(&self, index: u64) -> Result<Entry> {
        let bytes = self
            .engine
            .get(CF_RAFT_LOG, &keys::raft_log_key(self.region.id, index))?
            .ok_or_else(|| Error::Internal(format!("region {}: log entry {index} missing", self.region.id)))?;
        Entry::parse_from_bytes(&bytes).map_err(|e| Error::Internal(format!("corrupt log entry {index}: {e}")))
    }

    /// Adds `entries` to the log, replacing any conflicting suffix.
    pub fn append(&mut self, entries: &[Entry], wb: &mut WriteBatch<'_>) -> Result<()> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        if first.index <= self.apply_state.truncated_index {
            return Err(Error::Internal(format!("append at {} before the log start {}", first.index, self.first())));
        }
        let mut sizes = Vec::with_capacity(entries.len());
        for e in entries {
            let bytes = e.write_to_bytes().map_err(|e| Error::Internal(e.to_string()))?;
            wb.put(CF_RAFT_LOG, &keys::raft_log_key(self.region.id, e.index), &bytes)?;
            self.log_bytes += bytes.len() as u64;
            sizes.push(bytes.len() as u64);
        }
        self.cache.append(entries, &sizes);
        if last.index < self.raft_state.last_index {
            // A new leader overwrote our tail: drop what is beyond its log.
            let from = keys::raft_log_key(self.region.id, last.index + 1);
            let to = keys::raft_log_key(self.region.id, self.raft_state.last_index + 1);
            wb.delete_range(CF_RAFT_LOG, &from, &to)?;
        }
        self.raft_state.last_index = last.index;
        self.last_term = last.term;
        self.write_raft_state(wb)
    }

    /// Records a new hard state. Only a new term or vote is written: the
    /// commit index is kept in memory and goes to disk with the next write of
    /// the raft state (entries appended, a term or vote), as the commit index
    /// is recoverable ([`Self::set_commit`]).
    pub fn set_hard_state(&mut self, hs: &HardState, wb: &mut WriteBatch<'_>) -> Result<()> {
        let changed = (hs.term, hs.vote) != (self.raft_state.term, self.raft_state.vote);
        self.raft_state.term = hs.term;
        self.raft_state.vote = hs.vote;
        self.raft_state.commit = hs.commit;
        if changed { self.write_raft_state(wb) } else { Ok(()) }
    }

    /// The persisted hard state's term and vote.
    pub fn term_and_vote(&self) -> (u64, u64) {
        (self.raft_state.term, self.raft_state.vote)
    }

    /// Records a new commit index learned after persisting (raft-rs's light
    /// ready), in memory only. A commit index on disk behind the real one
    /// loses nothing: after a restart the leader's next message brings the
    /// rest, and [`Self::load`] raises it to the applied index (what was
    /// applied was committed), which raft-rs requires. So a write that only
    /// commits and applies costs no raft-state write (one key fewer per
    /// region and round on the leader, and on each follower).
    pub fn set_commit(&mut self, commit: u64) {
        self.raft_state.commit = commit;
    }

    fn write_raft_state(&self, wb: &mut WriteBatch<'_>) -> Result<()> {
        wb.put(CF_RAFT_STATE, &keys::raft_state_key(self.region.id), &self.raft_state.encode_to_vec())?;
        Ok(())
    }

    /// Replaces the region descriptor (a split changed its range and epoch); goes in
    /// the same batch as the apply index of the command that changed it.
    pub fn set_region(&mut self, region: Region, wb: &mut WriteBatch<'_>) -> Result<()> {
        self.region = region;
        self.write_region_state(PeerState::Normal, None, wb)
    }

    /// Replaces the descriptor and Raft's membership (an applied conf change).
    pub fn set_region_and_conf(&mut self, region: Region, conf_state: ConfState, wb: &mut WriteBatch<'_>) -> Result<()> {
        self.conf_state = conf_state;
        self.set_region(region, wb)
    }

    /// The backup whose fence the region holds (empty: none).
    pub fn backup_fence(&self) -> &str {
        &self.backup_fence
    }

    /// Sets (or, with an empty id, lifts) the region's backup fence; goes in the
    /// same batch as the apply index of the command that did it.
    pub fn set_backup_fence(&mut self, backup_id: String, wb: &mut WriteBatch<'_>) -> Result<()> {
        self.backup_fence = backup_id;
        self.write_region_state(PeerState::Normal, None, wb)
    }

    fn write_region_state(&self, state: PeerState, applying: Option<SnapshotData>, wb: &mut WriteBatch<'_>) -> Result<()> {
        let conf_state = self.conf_state.write_to_bytes().map_err(|e| Error::Internal(e.to_string()))?;
        let local = RegionLocalState {
            region: Some(self.region.clone()),
            state: state as i32,
            conf_state,
            applying,
            backup_fence: self.backup_fence.clone(),
        };
        wb.put(CF_REGION_META, &keys::region_state_key(self.region.id), &local.encode_to_vec())?;
        Ok(())
    }

    /// Removes applied entries up to and including `index` from the log (a range
    /// delete), keeping the term of `index` as the log's new start.
    pub fn compact_to(&mut self, index: u64, wb: &mut WriteBatch<'_>) -> Result<()> {
        let first = self.first();
        if index < first || index > self.apply_state.applied_index {
            return Ok(());
        }
        let term = if index == self.raft_state.last_index { self.last_term } else { self.read_entry(index)?.term };
        let (count, _) = self.log_size();
        wb.delete_range(CF_RAFT_LOG, &keys::raft_log_key(self.region.id, first), &keys::raft_log_key(self.region.id, index + 1))?;
        let removed = index + 1 - first;
        self.log_bytes = self.log_bytes.saturating_sub(self.log_bytes.saturating_mul(removed) / count.max(1));
        self.apply_state.truncated_index = index;
        self.apply_state.truncated_term = term;
        self.cache.compact_to(index);
        wb.put(CF_REGION_META, &keys::apply_state_key(self.region.id), &self.apply_state.encode_to_vec())?;
        Ok(())
    }

    /// Makes this peer's state the snapshot's: its log position, membership and
    /// descriptor, in memory and in `wb`, recorded `APPLYING` with the
    /// snapshot's payload; the old log and the data of the old range that the
    /// new one does not cover are deleted in `wb` too. The data itself is not
    /// touched: once `wb` is durable, [`SnapManager::apply`] replaces it (off
    /// the store thread, for data regions), then [`Self::finish_snapshot`]
    /// records `NORMAL`. A crash in between redoes the apply on load.
    pub fn begin_snapshot(&mut self, snap: &Snapshot, wb: &mut WriteBatch<'_>) -> Result<SnapshotData> {
        let data = SnapshotData::decode(snap.get_data()).map_err(|e| Error::Internal(format!("undecodable snapshot data: {e}")))?;
        let region = data.region.clone().ok_or_else(|| Error::Internal("snapshot without a region".into()))?;
        if region.id != self.region.id {
            return Err(Error::Internal(format!("snapshot of region {} given to region {}", region.id, self.region.id)));
        }
        let meta = snap.get_metadata();
        let old_first = self.first();
        let old_last = self.raft_state.last_index;
        let old_region = std::mem::replace(&mut self.region, region);
        self.conf_state = meta.get_conf_state().clone();
        self.raft_state.last_index = meta.index;
        self.raft_state.commit = self.raft_state.commit.max(meta.index);
        self.raft_state.term = self.raft_state.term.max(meta.term);
        self.last_term = meta.term;
        self.cache.clear();
        self.log_bytes = 0;
        self.apply_state = RaftApplyState { applied_index: meta.index, truncated_index: meta.index, truncated_term: meta.term };
        self.backup_fence = data.backup_fence.clone();

        if old_last >= old_first {
            let (from, to) = (keys::raft_log_key(self.region.id, old_first), keys::raft_log_key(self.region.id, old_last + 1));
            wb.delete_range(CF_RAFT_LOG, &from, &to)?;
        }
        // Data of the old range that the new one no longer covers is not ours any more.
        if old_region.epoch.is_some() {
            for (cf, start, end) in crate::snap::data_ranges(&self.engine, &old_region) {
                wb.delete_range_unbounded(&cf, &start, &end)?;
            }
        }
        self.write_region_state(PeerState::Applying, Some(data.clone()), wb)?;
        self.write_raft_state(wb)?;
        wb.put(CF_REGION_META, &keys::apply_state_key(self.region.id), &self.apply_state.encode_to_vec())?;
        Ok(data)
    }

    /// Records, in `wb`, that the snapshot begun by [`Self::begin_snapshot`] is
    /// applied (its files are released once `wb` is written).
    pub fn finish_snapshot(&mut self, wb: &mut WriteBatch<'_>) -> Result<()> {
        self.write_region_state(PeerState::Normal, None, wb)
    }

    /// The whole apply on the calling thread: the `APPLYING` record synced, the
    /// data replaced, the `NORMAL` record in `wb` (the meta group's snapshots,
    /// which are small and must be in place before the next entry applies).
    pub fn apply_snapshot(&mut self, snap: &Snapshot, wb: &mut WriteBatch<'_>) -> Result<SnapshotData> {
        let engine = self.engine.clone();
        let mut marker = engine.batch();
        let data = self.begin_snapshot(snap, &mut marker)?;
        engine.write(marker, true)?;
        self.snap.apply(&data)?;
        self.finish_snapshot(wb)?;
        Ok(data)
    }

    /// Records that entries up to `index` are applied; goes in the same batch as
    /// the data those entries wrote.
    pub fn set_applied(&mut self, index: u64, wb: &mut WriteBatch<'_>) -> Result<()> {
        self.apply_state.applied_index = index;
        self.cache.compact_to(index);
        wb.put(CF_REGION_META, &keys::apply_state_key(self.region.id), &self.apply_state.encode_to_vec())?;
        Ok(())
    }
}

impl raft::Storage for PeerStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let hs = HardState { term: self.raft_state.term, vote: self.raft_state.vote, commit: self.raft_state.commit, ..Default::default() };
        Ok(RaftState::new(hs, self.conf_state.clone()))
    }

    fn entries(&self, low: u64, high: u64, max_size: impl Into<Option<u64>>, _ctx: GetEntriesContext) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.raft_state.last_index + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max_size = max_size.into().unwrap_or(u64::MAX);
        if let Some(cached) = self.cache.entries(low, high, max_size) {
            return Ok(cached);
        }
        let start = keys::raft_log_key(self.region.id, low);
        let end = keys::raft_log_key(self.region.id, high);
        let mut entries = Vec::with_capacity((high - low) as usize);
        let mut size = 0u64;
        let mut failure = None;
        self.engine
            .for_each(CF_RAFT_LOG, &start, &end, |_, v| match Entry::parse_from_bytes(v) {
                Ok(e) => {
                    size += v.len() as u64;
                    // Always return at least one entry, as raft-rs expects.
                    if !entries.is_empty() && size > max_size {
                        return false;
                    }
                    entries.push(e);
                    true
                }
                Err(e) => {
                    failure = Some(storage_err(e));
                    false
                }
            })
            .map_err(storage_err)?;
        if let Some(e) = failure {
            return Err(e);
        }
        let contiguous = entries.iter().enumerate().all(|(i, e)| e.index == low + i as u64);
        if !contiguous || (entries.len() as u64) < (high - low) && size <= max_size {
            return Err(storage_err(format!("region {}: log has a hole in [{low}, {high})", self.region.id)));
        }
        Ok(entries)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.apply_state.truncated_index {
            return Ok(self.apply_state.truncated_term);
        }
        if idx < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.raft_state.last_index {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        if idx == self.raft_state.last_index {
            return Ok(self.last_term);
        }
        if let Some(term) = self.cache.term(idx) {
            return Ok(term);
        }
        self.read_entry(idx).map(|e| e.term).map_err(storage_err)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.raft_state.last_index)
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        // A snapshot at or after the log's start will do (the follower goes on
        // with entries the log still has) if its configuration includes `to`:
        // raft refuses to restore one that does not. One taken before `to` was
        // added does not, so ask for one at least as new as what is applied now
        // (the leader applied that change before it started sending to `to`).
        let min_index = request_index.max(self.apply_state.truncated_index);
        let unavailable = || raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable);
        let snap = self.snap.request(self.region.id, min_index, self.region.epoch).ok_or_else(unavailable)?;
        let cs = snap.get_metadata().get_conf_state();
        let includes = |ids: &[u64]| ids.contains(&to);
        if includes(&cs.voters) || includes(&cs.learners) || includes(&cs.voters_outgoing) || includes(&cs.learners_next) {
            return Ok(snap);
        }
        self.snap.request(self.region.id, min_index.max(self.apply_state.applied_index), self.region.epoch).ok_or_else(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;
    use shoal_proto::{Peer, RegionEpoch};

    fn region() -> Region {
        Region {
            id: 1,
            start_key: vec![],
            end_key: vec![],
            epoch: Some(RegionEpoch { conf_ver: 1, version: 1 }),
            peers: vec![Peer { id: 1, store_id: 1, is_learner: false }, Peer { id: 2, store_id: 2, is_learner: true }],
        }
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry { index, term, data: vec![index as u8; 10].into(), ..Default::default() }
    }

    fn setup() -> (tempfile::TempDir, Arc<Engine>) {
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(Engine::open(dir.path(), &[]).unwrap());
        let mut wb = engine.batch();
        PeerStorage::write_initial_state(&mut wb, &region()).unwrap();
        engine.write(wb, true).unwrap();
        (dir, engine)
    }

    fn load(engine: Arc<Engine>) -> Result<PeerStorage> {
        let dir = tempfile::tempdir().unwrap();
        let snap = SnapManager::open(&dir.path().join("snap"), engine.clone(), Arc::new(crate::metrics::Metrics::new().unwrap())).unwrap();
        std::mem::forget(dir);
        PeerStorage::load(engine, snap, 1)
    }

    fn append(s: &mut PeerStorage, entries: &[Entry]) {
        let engine = s.engine().clone();
        let mut wb = engine.batch();
        s.append(entries, &mut wb).unwrap();
        engine.write(wb, true).unwrap();
    }

    #[test]
    fn a_bootstrapped_peer_starts_after_the_initial_index() {
        let (_dir, engine) = setup();
        let s = load(engine).unwrap();
        assert_eq!(s.first_index().unwrap(), RAFT_INIT_LOG_INDEX + 1);
        assert_eq!(s.last_index().unwrap(), RAFT_INIT_LOG_INDEX);
        assert_eq!(s.term(RAFT_INIT_LOG_INDEX).unwrap(), RAFT_INIT_LOG_TERM);
        let st = s.initial_state().unwrap();
        assert_eq!(st.conf_state.voters, vec![1]);
        assert_eq!(st.conf_state.learners, vec![2]);
        assert_eq!(st.hard_state.commit, RAFT_INIT_LOG_INDEX);
    }

    #[test]
    fn entries_terms_and_bounds() {
        let (_dir, engine) = setup();
        let mut s = load(engine).unwrap();
        append(&mut s, &[entry(6, 6), entry(7, 6), entry(8, 7)]);
        assert_eq!(s.last_index().unwrap(), 8);
        assert_eq!(s.term(7).unwrap(), 6);
        assert_eq!(s.term(8).unwrap(), 7);
        let got = s.entries(6, 9, None, GetEntriesContext::empty(false)).unwrap();
        assert_eq!(got.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>(), vec![(6, 6), (7, 6), (8, 7)]);
        // Size limit: at least one entry, then stop before exceeding it.
        assert_eq!(s.entries(6, 9, 1, GetEntriesContext::empty(false)).unwrap().len(), 1);
        assert!(matches!(s.entries(4, 7, None, GetEntriesContext::empty(false)), Err(raft::Error::Store(StorageError::Compacted))));
        assert!(matches!(s.entries(6, 10, None, GetEntriesContext::empty(false)), Err(raft::Error::Store(StorageError::Unavailable))));
        assert!(matches!(s.term(4), Err(raft::Error::Store(StorageError::Compacted))));
        assert!(matches!(s.term(9), Err(raft::Error::Store(StorageError::Unavailable))));
    }

    #[test]
    fn a_conflicting_append_replaces_the_tail_and_survives_reload() {
        let (_dir, engine) = setup();
        let mut s = load(engine.clone()).unwrap();
        append(&mut s, &[entry(6, 6), entry(7, 6), entry(8, 6), entry(9, 6)]);
        append(&mut s, &[entry(7, 8)]);
        assert_eq!(s.last_index().unwrap(), 7);
        let reloaded = load(engine.clone()).unwrap();
        assert_eq!(reloaded.last_index().unwrap(), 7);
        assert_eq!(reloaded.term(7).unwrap(), 8);
        assert_eq!(engine.get(CF_RAFT_LOG, &keys::raft_log_key(1, 8)).unwrap(), None);
    }

    #[test]
    fn a_new_commit_index_alone_is_not_written_and_reloads_as_the_applied_index() {
        let (_dir, engine) = setup();
        let mut s = load(engine.clone()).unwrap();
        append(&mut s, &[entry(6, 6), entry(7, 6), entry(8, 6)]);
        let mut wb = engine.batch();
        s.set_hard_state(&HardState { term: 6, vote: 1, commit: 5, ..Default::default() }, &mut wb).unwrap();
        engine.write(wb, true).unwrap();
        // Commit 8, apply 7: nothing but the apply state reaches the disk.
        let mut wb = engine.batch();
        s.set_hard_state(&HardState { term: 6, vote: 1, commit: 8, ..Default::default() }, &mut wb).unwrap();
        s.set_commit(8);
        assert!(wb.is_empty(), "a commit-only hard state wrote the raft state");
        s.set_applied(7, &mut wb).unwrap();
        engine.write(wb, true).unwrap();
        assert_eq!(s.commit_index(), 8);
        let st = load(engine.clone()).unwrap().initial_state().unwrap();
        assert_eq!((st.hard_state.term, st.hard_state.vote, st.hard_state.commit), (6, 1, 7));
        // The next append carries the commit index known then.
        append(&mut s, &[entry(9, 6)]);
        assert_eq!(load(engine).unwrap().initial_state().unwrap().hard_state.commit, 8);
    }

    #[test]
    fn hard_state_and_applied_index_persist() {
        let (_dir, engine) = setup();
        let mut s = load(engine.clone()).unwrap();
        append(&mut s, &[entry(6, 6), entry(7, 6)]);
        let hs = HardState { term: 6, vote: 1, commit: 6, ..Default::default() };
        let mut wb = engine.batch();
        s.set_hard_state(&hs, &mut wb).unwrap();
        s.set_applied(7, &mut wb).unwrap();
        engine.write(wb, true).unwrap();
        let reloaded = load(engine).unwrap();
        let st = reloaded.initial_state().unwrap();
        assert_eq!((st.hard_state.term, st.hard_state.vote), (6, 1));
        // An apply that got ahead of the persisted commit raises the commit.
        assert_eq!(st.hard_state.commit, 7);
        assert_eq!(reloaded.applied_index(), 7);
    }
}
