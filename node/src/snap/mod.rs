//! Region snapshots on disk: generation, receiving, applying.
//!
//! A snapshot of a region is its data in every column family range it owns
//! ([`data_ranges`]), as SST files, plus the Raft position it was taken at. The
//! flow, with [`SnapManager`] owning the snapshot directory (`<data_dir>/snap`):
//!
//! 1. Leader: raft-rs asks `Storage::snapshot`, which calls
//!    [`SnapManager::request`]; the first call queues a generation on the
//!    manager's thread ([`generate`]: one RocksDB snapshot → region state, apply
//!    state, term, one SST per column family) and answers `None`, a later call
//!    returns the ready `raft::prelude::Snapshot`, whose data is a prost
//!    `SnapshotData` (region, files with sizes and CRC-32s, `SnapshotKey`).
//! 2. The `MsgSnapshot` goes to `crate::server::snapshot`'s sender, which pins
//!    the files ([`SnapManager::hold`]) and streams them to the receiving store.
//! 3. Receiver: `crate::server::snapshot::receive` writes the files through a
//!    [`recv::Receiving`] (resumable partial files, verified, then renamed), then
//!    hands the `MsgSnapshot` to its store loop.
//! 4. The store, in its Ready round, checks [`SnapManager::has_received`] and
//!    records the region `APPLYING`; once that round is written, its snapshot
//!    apply thread calls [`SnapManager::apply`] ([`apply`]: delete the ranges,
//!    ingest the files); the store then records the region `NORMAL` and calls
//!    [`SnapManager::release_received`].
//!
//! File names are in [`files`]; lifetimes of generated and received files in
//! [`manager`]. This module does not depend on the raftstore: the record of a
//! region's membership both read ([`conf_state_of`]) lives here.

mod apply;
mod files;
mod generate;
pub mod manager;
pub mod recv;

pub use manager::{OnGenerated, SnapManager, SnapshotHold};
pub use recv::Receiving;

use protobuf::Message as _;
use raft::prelude::ConfState;
use shoal_proto::{Region, RegionLocalState};

use crate::error::{Error, Result};
use crate::meta::META_REGION_ID;
use crate::storage::Engine;
use crate::storage::cf::CF_META;

/// The `(column family, start, end)` ranges a region's snapshot holds (empty
/// `end`: unbounded): for a data region every user column family over its key
/// range; for the meta group the whole `meta` column family.
pub fn data_ranges(engine: &Engine, region: &Region) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    if region.id == META_REGION_ID {
        return vec![(CF_META.to_string(), Vec::new(), Vec::new())];
    }
    engine.user_cfs().iter().map(|cf| (cf.clone(), region.start_key.clone(), region.end_key.clone())).collect()
}

/// Raft's membership as recorded with the region, or — for a region recorded
/// before conf states were kept — as its descriptor lists it.
pub fn conf_state_of(state: &RegionLocalState, region: &Region) -> Result<ConfState> {
    if !state.conf_state.is_empty() {
        return ConfState::parse_from_bytes(&state.conf_state).map_err(|e| Error::Internal(format!("corrupt conf state: {e}")));
    }
    let mut cs = ConfState::default();
    for p in &region.peers {
        if p.is_learner {
            cs.learners.push(p.id);
        } else {
            cs.voters.push(p.id);
        }
    }
    Ok(cs)
}

#[cfg(test)]
pub(crate) mod tests;
