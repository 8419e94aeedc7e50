//! Building a region snapshot from the engine.
//!
//! Everything comes from one RocksDB snapshot, so the data and the Raft position
//! agree (applies write both in one batch): the region descriptor
//! (`RegionLocalState`, whose backup fence the snapshot carries), the apply
//! state, the term of the applied entry, and one
//! SST file per column family range of [`super::data_ranges`] that has keys.
//! The result is a [`Generated`]: the Raft snapshot (metadata + `SnapshotData`)
//! and the paths of its files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{Entry, Snapshot, SnapshotMetadata};
use shoal_proto::{PeerState, RaftApplyState, RegionEpoch, RegionLocalState, SnapshotData, SnapshotFile, SnapshotKey};

use super::{data_ranges, files};
use crate::error::{Error, Result};
use crate::keys;
use crate::storage::cf::{CF_RAFT_LOG, CF_REGION_META};
use crate::storage::{Engine, EngineSnapshot};

/// A snapshot generated on this store.
pub(crate) struct Generated {
    pub key: SnapshotKey,
    /// The region's epoch at the snapshot's index.
    pub epoch: Option<RegionEpoch>,
    pub snapshot: Snapshot,
    pub files: Vec<PathBuf>,
}

fn decode<M: prost::Message + Default>(bytes: &[u8], what: &str) -> Result<M> {
    M::decode(bytes).map_err(|e| Error::Internal(format!("corrupt {what}: {e}")))
}

fn term_of(snap: &EngineSnapshot, region_id: u64, apply: &RaftApplyState) -> Result<u64> {
    if apply.applied_index == apply.truncated_index {
        return Ok(apply.truncated_term);
    }
    let bytes = snap
        .get(CF_RAFT_LOG, &keys::raft_log_key(region_id, apply.applied_index))?
        .ok_or_else(|| Error::Internal(format!("region {region_id}: applied entry {} is not in the log", apply.applied_index)))?;
    let entry = Entry::parse_from_bytes(&bytes).map_err(|e| Error::Internal(format!("corrupt log entry: {e}")))?;
    Ok(entry.term)
}

/// Generates a snapshot of `region_id` into `dir`; `seq` makes its file names unique.
pub(crate) fn generate(engine: &Arc<Engine>, dir: &Path, region_id: u64, seq: u64) -> Result<Generated> {
    let snap = engine.snapshot();
    let state: RegionLocalState = match snap.get(CF_REGION_META, &keys::region_state_key(region_id))? {
        Some(b) => decode(&b, "region state")?,
        None => return Err(Error::Internal(format!("region {region_id} has no descriptor on this store"))),
    };
    if state.state != PeerState::Normal as i32 {
        return Err(Error::Unavailable(format!("region {region_id} is not in a state to snapshot ({:?})", state.state())));
    }
    let region = state.region.clone().ok_or_else(|| Error::Internal(format!("region {region_id} descriptor is empty")))?;
    let apply: RaftApplyState = match snap.get(CF_REGION_META, &keys::apply_state_key(region_id))? {
        Some(b) => decode(&b, "apply state")?,
        None => return Err(Error::Internal(format!("region {region_id} has no apply state"))),
    };
    let term = term_of(&snap, region_id, &apply)?;
    let key = SnapshotKey { region_id, term, index: apply.applied_index };

    let mut files_meta = Vec::new();
    let mut paths = Vec::new();
    let result = (|| -> Result<()> {
        for (cf, start, end) in data_ranges(engine, &region) {
            let path = files::generated(dir, &key, seq, files_meta.len());
            let tmp = files::temp(&path);
            let keys = snap.export_sst(&cf, &start, &end, &tmp)?;
            if keys == 0 {
                continue;
            }
            let (size, hasher) = files::checksum(&tmp, None)?;
            std::fs::rename(&tmp, &path)?;
            paths.push(path);
            files_meta.push(SnapshotFile { cf, size, checksum: hasher.finalize(), keys });
        }
        files::sync_dir(dir)?;
        Ok(())
    })();
    if let Err(e) = result {
        for p in &paths {
            let _ = std::fs::remove_file(p);
        }
        return Err(e);
    }

    let data = SnapshotData { region: Some(region.clone()), files: files_meta, key: Some(key), backup_fence: state.backup_fence.clone() };
    let mut metadata = SnapshotMetadata { index: key.index, term: key.term, ..Default::default() };
    metadata.set_conf_state(super::conf_state_of(&state, &region)?);
    let mut snapshot = Snapshot::default();
    snapshot.set_metadata(metadata);
    snapshot.data = data.encode_to_vec().into();
    Ok(Generated { key, epoch: region.epoch, snapshot, files: paths })
}
