//! Log GC: truncating entries every replica has applied, without forcing a
//! snapshot on a follower that is only a little behind.

use raft::ProgressState;

use super::Peer;
use crate::error::Result;
use crate::storage::WriteBatch;

impl Peer {
    /// Log GC: once the log holds more than `count_limit` entries or `size_limit`
    /// bytes, removes applied entries. A leader keeps what its recently active
    /// followers still need unless the log is past twice the limits, and what
    /// follows a snapshot it is sending unless past eight times; a follower that
    /// falls behind the log's start is sent a snapshot.
    pub fn maybe_compact_log(&mut self, count_limit: u64, size_limit: u64, wb: &mut WriteBatch<'_>) -> Result<bool> {
        if !self.is_initialized() {
            return Ok(false);
        }
        let (count, bytes) = self.raw_node.store().log_size();
        let applied = self.applied_index();
        let truncated = self.raw_node.store().truncated_index();
        if (count <= count_limit && bytes <= size_limit) || applied <= truncated {
            return Ok(false);
        }
        let mut target = applied;
        if self.is_leader() {
            let me = self.peer_id();
            let prs = self.raw_node.raft.prs();
            if count <= 2 * count_limit && bytes <= 2 * size_limit {
                let slowest = prs.iter().filter(|(id, pr)| **id != me && pr.recent_active).map(|(_, pr)| pr.matched).min();
                if let Some(m) = slowest {
                    target = target.min(m);
                }
            }
            // Never past a snapshot being sent (up to a hard cap): the receiver
            // goes on from its index by log, or it would need another snapshot
            // when this one lands, and another, for as long as writes outpace it.
            if count <= 8 * count_limit && bytes <= 8 * size_limit {
                let sending = prs
                    .iter()
                    .filter(|(id, pr)| **id != me && pr.state == ProgressState::Snapshot)
                    .map(|(_, pr)| pr.pending_snapshot)
                    .min();
                if let Some(index) = sending {
                    target = target.min(index);
                }
            }
        }
        if target <= truncated {
            return Ok(false);
        }
        self.raw_node.mut_store().compact_to(target, wb)?;
        Ok(true)
    }
}
