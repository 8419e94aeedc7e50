//! A snapshot in a Ready becomes the peer's state before anything else of
//! that Ready ([`PeerStorage::begin_snapshot`]); a data region's data is then
//! replaced off the store thread, and meanwhile the peer takes part in Raft
//! but applies no entry (they wait), serves no read and proposes nothing,
//! until [`Peer::finish_snapshot`]. The meta group's small snapshots are
//! applied at once, with its state machine reloaded before the next entry.
//! Writes waiting on entries the snapshot covers get an unknown outcome.
//!
//! [`PeerStorage::begin_snapshot`]: crate::raftstore::peer_storage::PeerStorage::begin_snapshot

use raft::prelude::{Entry, Ready};
use shoal_proto::SnapshotData;

use super::{Completions, Peer};
use crate::error::Result;
use crate::meta::state::MetaState;
use crate::storage::WriteBatch;

/// A snapshot this store began to apply: once the round's batches are
/// written, the store routes the region's (new) range to it and, unless
/// `applied`, hands its data to the [`super::snap_applier::SnapApplier`].
#[derive(Clone, Debug)]
pub struct SnapshotDone {
    pub region_id: u64,
    /// The range the peer served before (none if it was uninitialized).
    pub old_start_key: Option<Vec<u8>>,
    pub data: SnapshotData,
    /// Whether the data is in place already (the meta group's snapshots).
    pub applied: bool,
}

/// A data region's snapshot whose data is being applied off the store thread.
/// Meanwhile the peer goes on with Raft (its log and hard state are the
/// snapshot's, durable), but entries committed after it wait here for the data
/// to be in place, and no read is served.
pub(super) struct ApplyingSnapshot {
    data: SnapshotData,
    pub(super) entries: Vec<Entry>,
    /// What was applied before: reported until the snapshot's data is in.
    pub(super) applied_before: u64,
}

impl Peer {
    /// Stage: snapshot. Makes the snapshot this peer's state before the Ready's
    /// entries are persisted; the store re-routes the range afterwards. A data
    /// region's data is replaced off the store thread once the round is
    /// written ([`Self::is_applying`] until [`Self::finish_snapshot`]); the
    /// meta group's at once, and its state machine reloaded, so that the
    /// entries after the snapshot apply to the snapshot's state.
    pub fn apply_snapshot(&mut self, rd: &Ready, wb: &mut WriteBatch<'_>, done: &mut Completions) -> Result<()> {
        if rd.snapshot().is_empty() {
            return Ok(());
        }
        let old_start_key = self.is_initialized().then(|| self.region().start_key.clone());
        let index = rd.snapshot().get_metadata().index;
        self.proposals.covered_by_snapshot(index, &mut done.writes);
        let applied = self.meta.is_some();
        let data = if let Some(meta) = &self.meta {
            let data = self.raw_node.mut_store().apply_snapshot(rd.snapshot(), wb)?;
            *meta.write().unwrap_or_else(|p| p.into_inner()) = MetaState::load(self.raw_node.store().engine())?;
            tracing::info!(region = self.region_id(), index, "applied a snapshot");
            data
        } else {
            let applied_before = self.applied_index();
            let data = self.raw_node.mut_store().begin_snapshot(rd.snapshot(), wb)?;
            self.applying = Some(ApplyingSnapshot { data: data.clone(), entries: Vec::new(), applied_before });
            tracing::info!(region = self.region_id(), index, "applying a snapshot");
            data
        };
        let peers = self.region().peers.clone();
        self.peer_stores.extend(peers.iter().map(|p| (p.id, p.store_id)));
        done.snapshots.push(SnapshotDone { region_id: self.region_id(), old_start_key, data, applied });
        Ok(())
    }

    /// Whether this peer's snapshot data is being applied off the store thread:
    /// until it is, committed entries wait and no read is served.
    pub fn is_applying(&self) -> bool {
        self.applying.is_some()
    }

    /// The snapshot's data is in place: records the peer `NORMAL` and applies
    /// the entries that waited, in `wb`.
    pub fn finish_snapshot(&mut self, wb: &mut WriteBatch<'_>, done: &mut Completions) -> Result<()> {
        let Some(ApplyingSnapshot { data, entries, .. }) = self.applying.take() else { return Ok(()) };
        self.raw_node.mut_store().finish_snapshot(wb)?;
        tracing::info!(region = self.region_id(), index = self.applied_index(), "applied a snapshot");
        done.released.extend(data.key);
        self.apply_committed(entries, wb, done)
    }
}
