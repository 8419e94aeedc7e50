//! Linearizable reads. A read waits in three steps: *queued* until the next
//! round, when all of them share one ReadIndex request (one heartbeat round
//! answers them all); *in flight* until raft returns a `ReadState` with the
//! commit index; *ready* until this peer has applied that index. Only then is
//! the read answered, with the region and an engine snapshot taken right then
//! ([`RegionRead`]), which the caller reads. A ReadIndex whose heartbeat round
//! was lost is asked again after two election timeouts; a peer that stops
//! leading fails its reads with `NotLeader`.

use std::sync::Arc;

use raft::SoftState;
use raft::StateRole;
use raft::prelude::Ready;
use shoal_proto::Region;
use tokio::sync::oneshot;

use super::Peer;
use crate::error::Result;
use crate::storage::EngineSnapshot;

/// A read this store may serve: the region as it was when the read was
/// checked, so the reader can bound its scan, and the engine as of that same
/// moment, so that a snapshot applied or a peer destroyed afterwards (on the
/// store thread, while the handler reads) cannot show it a range mid-change.
#[derive(Clone)]
pub struct RegionRead {
    pub region: Region,
    pub snapshot: Arc<EngineSnapshot>,
}

impl std::fmt::Debug for RegionRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionRead").field("region", &self.region).finish_non_exhaustive()
    }
}

/// Answers a linearizable read once this peer has applied up to its read index.
pub type ReadCallback = oneshot::Sender<Result<RegionRead>>;

/// Reads sharing one ReadIndex request, and the tick it was issued on.
pub(super) struct ReadBatch {
    issued_at: u64,
    waiters: Vec<ReadCallback>,
}

impl Peer {
    /// A ReadIndex whose heartbeat round was lost (no answer within the read
    /// timeout) is asked again with the next round's.
    pub(super) fn retry_lost_reads(&mut self) {
        let timeout = self.read_timeout_ticks;
        let now = self.ticks;
        let expired: Vec<u64> = self.inflight_reads.iter().filter(|(_, b)| now - b.issued_at > timeout).map(|(id, _)| *id).collect();
        for id in expired {
            if let Some(batch) = self.inflight_reads.remove(&id) {
                self.queued_reads.extend(batch.waiters);
            }
        }
    }

    /// Queues a linearizable read; refused at once when this peer is not the leader.
    pub fn read(&mut self, cb: ReadCallback) {
        if !self.is_leader() {
            let _ = cb.send(Err(self.not_leader()));
            return;
        }
        self.wake();
        self.queued_reads.push(cb);
    }

    /// Sends one ReadIndex request for every read queued since the last round.
    /// A new leader waits until it has committed an entry of its own term, since
    /// raft-rs drops read requests before that.
    pub fn flush_reads(&mut self) {
        if self.queued_reads.is_empty() || !self.raw_node.raft.commit_to_current_term() {
            return;
        }
        let id = self.next_read_id;
        self.next_read_id += 1;
        let waiters = std::mem::take(&mut self.queued_reads);
        self.inflight_reads.insert(id, ReadBatch { issued_at: self.ticks, waiters });
        self.raw_node.read_index(id.to_be_bytes().to_vec());
    }

    /// Stage: soft state and read states. A peer that stops leading fails its
    /// waiting reads with `NotLeader`; read states move reads to "ready".
    pub fn handle_soft_state_and_reads(&mut self, rd: &mut Ready) {
        if let Some(SoftState { raft_state, .. }) = rd.ss()
            && *raft_state != StateRole::Leader
        {
            self.fail_reads();
        }
        for rs in rd.take_read_states() {
            let Ok(id) = <[u8; 8]>::try_from(rs.request_ctx.as_slice()).map(u64::from_be_bytes) else {
                continue;
            };
            if let Some(batch) = self.inflight_reads.remove(&id) {
                self.ready_reads.push((rs.index, batch.waiters));
            }
        }
    }

    pub(super) fn take_reads(&mut self) -> Vec<ReadCallback> {
        let mut waiters: Vec<ReadCallback> = std::mem::take(&mut self.queued_reads);
        waiters.extend(self.inflight_reads.drain().flat_map(|(_, b)| b.waiters));
        waiters.extend(self.ready_reads.drain(..).flat_map(|(_, w)| w));
        waiters
    }

    fn fail_reads(&mut self) {
        for cb in self.take_reads() {
            let _ = cb.send(Err(self.not_leader()));
        }
    }

    /// Answers reads whose index is applied; call after the round's writes landed.
    pub fn finish_reads(&mut self) {
        let applied = self.applied_index();
        if self.ready_reads.is_empty() || self.is_applying() {
            return;
        }
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.ready_reads).into_iter().partition(|(idx, _)| *idx <= applied);
        self.ready_reads = waiting;
        if done.is_empty() {
            return;
        }
        let read = self.local_read();
        for cb in done.into_iter().flat_map(|(_, w)| w) {
            let _ = cb.send(Ok(read.clone()));
        }
    }

    /// The region as it is now and the engine as of now, for reads this peer serves.
    pub fn local_read(&self) -> RegionRead {
        RegionRead { region: self.region().clone(), snapshot: Arc::new(self.raw_node.store().engine().snapshot()) }
    }
}
