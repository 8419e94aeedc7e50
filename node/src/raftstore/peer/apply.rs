//! Applying committed entries. What a committed command does depends on the
//! group: in a data region it writes mutations, splits the region
//! ([`super::split`]) or sets or lifts a backup fence ([`super::fence`]; a
//! fenced region refuses writes and splits); in the meta group it changes the
//! [`crate::meta::state::MetaState`]. Either way a command whose region id or
//! epoch version no longer matches, or whose keys left the region, is refused
//! on every replica alike. Membership changes apply in [`super::conf_change`].
//!
//! Effects go into a write batch with the new applied index; the writers are
//! answered, and new regions, snapshots and peers to destroy are handled by the
//! store, only once that batch is written ([`Completions`]). The store writes the
//! entries a Ready commits in a batch of their own, unsynced, before the round's
//! synced batch of new entries, and answers their writers right then: they are
//! durable in the log already, and must not wait for another round's fsync.

use prost::Message as _;
use raft::prelude::{Entry, EntryType};
use shoal_proto::{RaftCmd, Region, mutation};
use tokio::sync::oneshot;

use super::Peer;
use super::snapshot::SnapshotDone;
use super::split::SplitDone;
use crate::error::{Error, Result};
use crate::keys;
use crate::meta::state::MetaResult;
use crate::raftstore::proposals::Answer;
use crate::storage::WriteBatch;
use shoal_proto::SnapshotKey;

/// What an applied command produced, for its proposer.
#[derive(Clone, Debug, PartialEq)]
pub enum CmdResult {
    Written,
    Split {
        left: Region,
        right: Region,
    },
    Meta(MetaResult),
    /// A membership change was applied; the region as it is now.
    ConfChanged(Region),
    /// A backup fence was lifted; whether that backup's fence was still in
    /// place (not lifted before, by its lease).
    FenceLifted {
        held: bool,
    },
}

/// Answers a command once its entry is applied (or known to be lost).
pub type WriteCallback = oneshot::Sender<Result<CmdResult>>;

/// What waits until the round's batches are on disk: answers, new regions,
/// applied snapshots, and peers to destroy (region id, peer id).
#[derive(Default)]
pub struct Completions {
    pub(super) writes: Vec<Answer>,
    pub splits: Vec<SplitDone>,
    pub snapshots: Vec<SnapshotDone>,
    /// Received snapshots now applied for good, whose files can go.
    pub released: Vec<SnapshotKey>,
    pub destroys: Vec<(u64, u64)>,
    /// A membership change was applied: the stores holding this store's
    /// regions' peers (its liveness neighbours) may have changed.
    pub membership_changed: bool,
}

impl Completions {
    /// Answers every writer; returns how many writes were applied and how many failed.
    pub fn fire(mut self) -> (u64, u64) {
        self.answer()
    }

    /// Answers the writers waiting so far (the rest stays for the store);
    /// returns how many writes were applied and how many failed.
    pub fn answer(&mut self) -> (u64, u64) {
        let (mut applied, mut failed) = (0, 0);
        for (cb, res) in self.writes.drain(..) {
            if res.is_ok() {
                applied += 1
            } else {
                failed += 1
            }
            let _ = cb.send(res);
        }
        (applied, failed)
    }

    /// Takes over what `other` still holds for the store.
    pub fn absorb(&mut self, other: Completions) {
        self.writes.extend(other.writes);
        self.splits.extend(other.splits);
        self.snapshots.extend(other.snapshots);
        self.released.extend(other.released);
        self.destroys.extend(other.destroys);
        self.membership_changed |= other.membership_changed;
    }
}

impl Peer {
    /// Stage: committed entries. Applies them to the data column families, with the
    /// new applied index, in `wb`; their writers are answered once `wb` is written.
    /// raft-rs hands out only entries this store has persisted, so `wb` may be
    /// written before the round's new entries are. The applied index may then
    /// be on disk ahead of the commit index, which loading the peer corrects
    /// (see [`crate::raftstore::peer_storage::PeerStorage::set_commit`]).
    pub fn apply_committed(&mut self, entries: Vec<Entry>, wb: &mut WriteBatch<'_>, done: &mut Completions) -> Result<()> {
        if let Some(a) = self.applying.as_mut() {
            // Their writes must land after the snapshot's data, not under it.
            a.entries.extend(entries);
            return Ok(());
        }
        let Some(last) = entries.last().map(|e| e.index) else {
            return Ok(());
        };
        for entry in &entries {
            let result = match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => Ok(CmdResult::Written), // a new leader's empty entry
                EntryType::EntryNormal => self.apply_command(&entry.data, wb, done)?,
                EntryType::EntryConfChangeV2 => self.apply_conf_change(entry, wb, done)?,
                EntryType::EntryConfChange => {
                    // Only ConfChangeV2 is ever proposed.
                    tracing::error!(region = self.region_id(), index = entry.index, "ignoring a v1 conf change entry");
                    Ok(CmdResult::Written)
                }
            };
            self.proposals.applied(entry.index, entry.term, result, &mut done.writes);
        }
        self.maybe_skip_bcast_commit(last);
        self.raw_node.mut_store().set_applied(last, wb)
    }

    /// Applies one command into `wb`. Returns the outcome for its writer: a
    /// command for another region, an older epoch or a key outside the region is
    /// refused, deterministically on every replica. Only engine failures are `Err`.
    fn apply_command(&mut self, data: &[u8], wb: &mut WriteBatch<'_>, done: &mut Completions) -> Result<Result<CmdResult>> {
        let cmd = match RaftCmd::decode(data) {
            Ok(cmd) => cmd,
            Err(e) => return Ok(Err(Error::Internal(format!("undecodable command: {e}")))),
        };
        let region = self.region();
        if cmd.region_id != region.id {
            return Ok(Err(Error::RegionNotFound(vec![])));
        }
        if cmd.epoch.as_ref().map(|e| e.version) != region.epoch.as_ref().map(|e| e.version) {
            return Ok(Err(Error::EpochNotMatch(
                format!("command epoch {:?}, region epoch {:?}", cmd.epoch, region.epoch),
                vec![region.clone()],
            )));
        }
        if let Some(meta_cmd) = &cmd.meta {
            let Some(meta) = &self.meta else {
                return Ok(Err(Error::InvalidArgument(format!("region {} is not the meta group", region.id))));
            };
            let mut state = meta.write().unwrap_or_else(|p| p.into_inner());
            return Ok(Ok(CmdResult::Meta(state.apply(meta_cmd, wb)?)));
        }
        if self.meta.is_some() {
            return Ok(Err(Error::InvalidArgument("the meta group holds no user data".into())));
        }
        if let Some(fence) = &cmd.backup_fence {
            return self.apply_backup_fence(fence, wb);
        }
        if let Some(refusal) = self.refusal_while_fenced() {
            return Ok(Err(refusal));
        }
        if let Some(split) = &cmd.split {
            return self.apply_split(split, wb, done);
        }
        if let Some(m) = cmd.mutations.iter().find(|m| !keys::in_range(&m.key, &region.start_key, &region.end_key)) {
            return Ok(Err(Error::KeyNotInRegion { key: m.key.clone(), region_id: region.id }));
        }
        // Every store is configured with the same column families. A committed
        // command this store cannot apply in full would make it diverge from the
        // others: stop the store instead (fatal error) and write none of it.
        if let Some(m) = cmd.mutations.iter().find(|m| !wb.has_cf(&m.cf)) {
            return Err(Error::Internal(format!(
                "region {}: committed command writes column family {:?}, which this store does not have; configure it and restart",
                region.id, m.cf
            )));
        }
        for m in &cmd.mutations {
            match m.op() {
                mutation::Op::Put => wb.put(&m.cf, &m.key, &m.value)?,
                mutation::Op::Delete => wb.delete(&m.cf, &m.key)?,
            }
            self.written_bytes += (m.key.len() + m.value.len()) as u64;
            self.written_keys += 1;
        }
        Ok(Ok(CmdResult::Written))
    }
}
