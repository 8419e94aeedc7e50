//! [`PeerStorage`]: raft-rs's `Storage` for one region peer, kept in RocksDB.
//!
//! The log lives in the `raft_log` CF, the hard state in `raft_state`, the region
//! descriptor and apply state in `region_meta` (layouts in [`crate::keys`]). The
//! struct also keeps the small parts in memory (hard state, last index and term,
//! apply state) so that raft-rs's frequent `first_index`/`last_index`/`term` calls
//! do not touch the disk.
//!
//! Writes never go to the engine directly: [`PeerStorage::append`],
//! [`PeerStorage::set_hard_state`] and [`PeerStorage::set_applied`] add to a
//! [`WriteBatch`] that the store loop writes once for all peers (group commit).
//! The in-memory state moves at the same time; the store loop writes the batch
//! before it calls anything that reads it back (`advance`), and aborts on failure.

use std::sync::Arc;

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use shoal_proto::{RaftApplyState, RaftLocalState, Region, RegionLocalState};

use crate::error::{Error, Result};
use crate::keys;
use crate::storage::cf::{CF_RAFT_LOG, CF_RAFT_STATE, CF_REGION_META};
use crate::storage::{Engine, WriteBatch};

/// Index and term a bootstrapped region's log starts after. A peer created later
/// by a leader's message starts at 0 and must be seeded by snapshot.
pub const RAFT_INIT_LOG_INDEX: u64 = 5;
pub const RAFT_INIT_LOG_TERM: u64 = 5;

pub struct PeerStorage {
    engine: Arc<Engine>,
    region: Region,
    raft_state: RaftLocalState,
    apply_state: RaftApplyState,
    last_term: u64,
}

fn decode<M: prost::Message + Default>(bytes: &[u8], what: &str) -> Result<M> {
    M::decode(bytes).map_err(|e| Error::Internal(format!("corrupt {what}: {e}")))
}

fn storage_err(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(e.to_string().into()))
}

impl PeerStorage {
    /// Loads the peer of `region_id` that this store holds.
    pub fn load(engine: Arc<Engine>, region_id: u64) -> Result<PeerStorage> {
        let region_state: RegionLocalState = match engine.get(CF_REGION_META, &keys::region_state_key(region_id))? {
            Some(b) => decode(&b, "region state")?,
            None => return Err(Error::Internal(format!("region {region_id} has no descriptor"))),
        };
        let region = region_state.region.ok_or_else(|| Error::Internal(format!("region {region_id} descriptor is empty")))?;
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
        let mut storage = PeerStorage { engine, region, raft_state, apply_state, last_term: 0 };
        storage.last_term = if storage.raft_state.last_index == storage.apply_state.truncated_index {
            storage.apply_state.truncated_term
        } else {
            storage.read_entry(storage.raft_state.last_index)?.term
        };
        Ok(storage)
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
        for e in entries {
            let bytes = e.write_to_bytes().map_err(|e| Error::Internal(e.to_string()))?;
            wb.put(CF_RAFT_LOG, &keys::raft_log_key(self.region.id, e.index), &bytes)?;
        }
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

    /// Records a new hard state (term, vote, commit).
    pub fn set_hard_state(&mut self, hs: &HardState, wb: &mut WriteBatch<'_>) -> Result<()> {
        self.raft_state.term = hs.term;
        self.raft_state.vote = hs.vote;
        self.raft_state.commit = hs.commit;
        self.write_raft_state(wb)
    }

    /// Records a new commit index learned after persisting (raft-rs's light ready).
    pub fn set_commit(&mut self, commit: u64, wb: &mut WriteBatch<'_>) -> Result<()> {
        self.raft_state.commit = commit;
        self.write_raft_state(wb)
    }

    fn write_raft_state(&self, wb: &mut WriteBatch<'_>) -> Result<()> {
        wb.put(CF_RAFT_STATE, &keys::raft_state_key(self.region.id), &self.raft_state.encode_to_vec())?;
        Ok(())
    }

    /// Replaces the region descriptor (a split changed its range and epoch); goes in
    /// the same batch as the apply index of the command that changed it.
    pub fn set_region(&mut self, region: Region, wb: &mut WriteBatch<'_>) -> Result<()> {
        let state = RegionLocalState { region: Some(region.clone()), ..Default::default() };
        wb.put(CF_REGION_META, &keys::region_state_key(region.id), &state.encode_to_vec())?;
        self.region = region;
        Ok(())
    }

    /// Records that entries up to `index` are applied; goes in the same batch as
    /// the data those entries wrote.
    pub fn set_applied(&mut self, index: u64, wb: &mut WriteBatch<'_>) -> Result<()> {
        self.apply_state.applied_index = index;
        wb.put(CF_REGION_META, &keys::apply_state_key(self.region.id), &self.apply_state.encode_to_vec())?;
        Ok(())
    }

    fn conf_state(&self) -> ConfState {
        let mut cs = ConfState::default();
        for p in &self.region.peers {
            if p.is_learner {
                cs.learners.push(p.id);
            } else {
                cs.voters.push(p.id);
            }
        }
        cs
    }
}

impl raft::Storage for PeerStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let hs = HardState { term: self.raft_state.term, vote: self.raft_state.vote, commit: self.raft_state.commit, ..Default::default() };
        Ok(RaftState::new(hs, self.conf_state()))
    }

    fn entries(&self, low: u64, high: u64, max_size: impl Into<Option<u64>>, _ctx: GetEntriesContext) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.raft_state.last_index + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max_size = max_size.into().unwrap_or(u64::MAX);
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
        self.read_entry(idx).map(|e| e.term).map_err(storage_err)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.raft_state.last_index)
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // Logs are never truncated yet, so a follower never needs one; snapshots
        // (generation, streaming, ingestion) arrive with log GC.
        Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable))
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

    fn append(s: &mut PeerStorage, entries: &[Entry]) {
        let engine = s.engine().clone();
        let mut wb = engine.batch();
        s.append(entries, &mut wb).unwrap();
        engine.write(wb, true).unwrap();
    }

    #[test]
    fn a_bootstrapped_peer_starts_after_the_initial_index() {
        let (_dir, engine) = setup();
        let s = PeerStorage::load(engine, 1).unwrap();
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
        let mut s = PeerStorage::load(engine, 1).unwrap();
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
        let mut s = PeerStorage::load(engine.clone(), 1).unwrap();
        append(&mut s, &[entry(6, 6), entry(7, 6), entry(8, 6), entry(9, 6)]);
        append(&mut s, &[entry(7, 8)]);
        assert_eq!(s.last_index().unwrap(), 7);
        let reloaded = PeerStorage::load(engine.clone(), 1).unwrap();
        assert_eq!(reloaded.last_index().unwrap(), 7);
        assert_eq!(reloaded.term(7).unwrap(), 8);
        assert_eq!(engine.get(CF_RAFT_LOG, &keys::raft_log_key(1, 8)).unwrap(), None);
    }

    #[test]
    fn hard_state_and_applied_index_persist() {
        let (_dir, engine) = setup();
        let mut s = PeerStorage::load(engine.clone(), 1).unwrap();
        append(&mut s, &[entry(6, 6), entry(7, 6)]);
        let hs = HardState { term: 6, vote: 1, commit: 6, ..Default::default() };
        let mut wb = engine.batch();
        s.set_hard_state(&hs, &mut wb).unwrap();
        s.set_applied(7, &mut wb).unwrap();
        engine.write(wb, true).unwrap();
        let reloaded = PeerStorage::load(engine, 1).unwrap();
        let st = reloaded.initial_state().unwrap();
        assert_eq!((st.hard_state.term, st.hard_state.vote), (6, 1));
        // An apply that got ahead of the persisted commit raises the commit.
        assert_eq!(st.hard_state.commit, 7);
        assert_eq!(reloaded.applied_index(), 7);
    }
}
