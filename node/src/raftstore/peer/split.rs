//! Applying a split. Every replica applies a committed `SplitCmd` the same
//! way: this peer keeps the left half, the right half's first state goes into
//! the same batch, and once the batch is written the store creates its peer of
//! the right half ([`SplitDone`]).

use shoal_proto::{Peer as PeerMeta, Region, SplitCmd};

use super::{CmdResult, Completions, Peer};
use crate::error::{Error, Result};
use crate::keys;
use crate::meta::META_REGION_ID;
use crate::raftstore::peer_storage::PeerStorage;
use crate::storage::WriteBatch;
use crate::storage::cf::CF_REGION_META;

/// A split this store applied: once the round's batches are written, the store
/// creates its peer of `right` (and makes it campaign if it led the parent, so
/// the new region gets a leader without waiting for an election timeout).
#[derive(Clone, Debug)]
pub struct SplitDone {
    pub right: Region,
    pub campaign: bool,
}

impl Peer {
    /// Splits this region at `split.split_key`: this peer keeps the left half and
    /// the right half's initial state goes into `wb`, so both descriptors and the
    /// apply index land in one batch. Refused (on every replica) when the key is
    /// not strictly inside the region or the ids do not fit: the new region needs
    /// an id other than this region's and the meta group's (reusing one would route
    /// the right half's keys to a region that does not hold them), and one distinct
    /// nonzero peer id per peer (two stores must never be the same Raft peer).
    pub(super) fn apply_split(&mut self, split: &SplitCmd, wb: &mut WriteBatch<'_>, done: &mut Completions) -> Result<Result<CmdResult>> {
        let region = self.region().clone();
        let key = &split.split_key;
        // In a joint configuration the two halves could not both follow the
        // membership change to its end; every replica refuses alike (the
        // configuration at this entry is the same everywhere).
        if !self.raw_node.store().conf_state().voters_outgoing.is_empty() {
            return Ok(Err(Error::Unavailable(format!(
                "region {}: a membership change is in progress; split it once the change completes",
                region.id
            ))));
        }
        if key.is_empty() || *key == region.start_key || !keys::in_range(key, &region.start_key, &region.end_key) {
            return Ok(Err(Error::InvalidArgument(format!("split key {key:?} is not inside region {}", region.id))));
        }
        let mut peer_ids = split.new_peer_ids.clone();
        peer_ids.sort_unstable();
        peer_ids.dedup();
        if [0, region.id, META_REGION_ID].contains(&split.new_region_id)
            || split.new_peer_ids.len() != region.peers.len()
            || peer_ids.len() != split.new_peer_ids.len()
            || split.new_peer_ids.contains(&0)
        {
            return Ok(Err(Error::InvalidArgument(format!(
                "split of region {} needs a new region id and {} distinct peer ids",
                region.id,
                region.peers.len()
            ))));
        }
        let mut epoch = region.epoch.unwrap_or_default();
        epoch.version += 1;
        let mut left = region.clone();
        left.end_key = key.clone();
        left.epoch = Some(epoch);
        let right = Region {
            id: split.new_region_id,
            start_key: key.clone(),
            end_key: region.end_key.clone(),
            epoch: Some(epoch),
            peers: region
                .peers
                .iter()
                .zip(&split.new_peer_ids)
                .map(|(p, id)| PeerMeta { id: *id, store_id: p.store_id, is_learner: p.is_learner })
                .collect(),
        };
        // A split applied again after a crash must not reset a right half that
        // has made progress since.
        if self.raw_node.store().engine().get(CF_REGION_META, &keys::region_state_key(right.id))?.is_none() {
            PeerStorage::write_initial_state(wb, &right)?;
        }
        self.raw_node.mut_store().set_region(left.clone(), wb)?;
        done.splits.push(SplitDone { right: right.clone(), campaign: self.is_leader() });
        tracing::info!(region = region.id, new_region = right.id, split_key = ?String::from_utf8_lossy(key), "region split");
        Ok(Ok(CmdResult::Split { left, right }))
    }
}
