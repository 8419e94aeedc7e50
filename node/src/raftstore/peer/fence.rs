//! Backup fences: how a data region holds still for a backup's cut.
//!
//! A `BackupFenceCmd` goes through the log like any command. Applying a fence
//! records the backup's id with the region's state (`RegionLocalState`, in the
//! same batch as the applied index, and in every snapshot of the region);
//! from then on every replica refuses the region's writes and splits when it
//! applies them ([`Peer::refusal_while_fenced`]: `ServerIsBusy`, which clients
//! retry), so the data stays exactly as it was at the fence's index until a
//! lift is applied. Refusing by log position, not by clock, keeps replicas
//! identical; the leader also refuses new writes before proposing them
//! (`Store::propose_write`), which only saves log space.
//!
//! A fence is a lease: a coordinator that dies must not leave its regions
//! read-only. A leader that has seen its region fenced by one backup for
//! [`FENCE_LEASE_ELECTIONS`] election timeouts proposes the lift itself
//! ([`Peer::maybe_lift_stale_fence`]); a fenced leader never hibernates, so
//! its ticks go on. A lift answers whether the backup's fence was still in
//! place ([`CmdResult::FenceLifted`]): a coordinator whose fence was lifted by
//! its lease before it lifted it itself knows its cut may be broken, and
//! fails the backup.

use shoal_proto::{BackupFenceCmd, RaftCmd};

use super::Peer;
use super::apply::CmdResult;
use crate::error::{Error, Result};
use crate::storage::WriteBatch;

/// Election timeouts a leader lets a fence stand before lifting it: 30 s at
/// the default tick (100 ms) and election timeout (10 ticks).
pub const FENCE_LEASE_ELECTIONS: u64 = 30;

impl Peer {
    /// The backup whose fence this region holds (empty: none).
    pub fn backup_fence(&self) -> &str {
        self.raw_node.store().backup_fence()
    }

    /// Why a write or split must be refused now; `None` when the region holds no fence.
    pub fn refusal_while_fenced(&self) -> Option<Error> {
        let fence = self.backup_fence();
        (!fence.is_empty())
            .then(|| Error::ServerIsBusy(format!("region {} is fenced for backup {fence}; writes resume in moments", self.region_id())))
    }

    /// Applies a fence or a lift into `wb` (see the module header).
    pub(super) fn apply_backup_fence(&mut self, cmd: &BackupFenceCmd, wb: &mut WriteBatch<'_>) -> Result<Result<CmdResult>> {
        let current = self.backup_fence().to_string();
        if cmd.backup_id.is_empty() {
            return Ok(Err(Error::InvalidArgument("a backup fence needs a backup id".into())));
        }
        if cmd.lift {
            let held = current == cmd.backup_id;
            if held {
                self.raw_node.mut_store().set_backup_fence(String::new(), wb)?;
                tracing::info!(region = self.region_id(), backup = %cmd.backup_id, "backup fence lifted");
            }
            return Ok(Ok(CmdResult::FenceLifted { held }));
        }
        if current == cmd.backup_id {
            return Ok(Ok(CmdResult::Written));
        }
        if !current.is_empty() {
            return Ok(Err(Error::FailedPrecondition(format!(
                "region {} is fenced for backup {current}; one backup at a time",
                self.region_id()
            ))));
        }
        self.raw_node.mut_store().set_backup_fence(cmd.backup_id.clone(), wb)?;
        tracing::info!(region = self.region_id(), backup = %cmd.backup_id, "backup fence set");
        Ok(Ok(CmdResult::Written))
    }

    /// On a tick: a leader whose region has been fenced for the lease proposes
    /// the lift, and proposes it again every two election timeouts until it is
    /// applied.
    pub(super) fn maybe_lift_stale_fence(&mut self) {
        if !self.is_leader() || self.backup_fence().is_empty() {
            self.fence_seen_at = None;
            return;
        }
        let lease = self.election_ticks * FENCE_LEASE_ELECTIONS;
        let backup_id = self.backup_fence().to_string();
        if self.fence_seen_at.as_ref().is_none_or(|(id, _)| *id != backup_id) {
            self.fence_seen_at = Some((backup_id.clone(), self.ticks));
        }
        let seen = self.fence_seen_at.as_ref().map_or(self.ticks, |(_, at)| *at);
        if self.ticks.saturating_sub(seen) < lease {
            return;
        }
        tracing::warn!(region = self.region_id(), backup = %backup_id, "lifting a backup fence nobody lifted within its lease");
        let region = self.region();
        let cmd = RaftCmd {
            region_id: region.id,
            epoch: region.epoch,
            backup_fence: Some(BackupFenceCmd { backup_id, lift: true }),
            ..Default::default()
        };
        let (cb, _answer) = tokio::sync::oneshot::channel();
        self.propose(&cmd, cb);
        let retry_from = self.ticks + 2 * self.election_ticks - lease;
        if let Some((_, at)) = self.fence_seen_at.as_mut() {
            *at = retry_from;
        }
    }
}
