//! [`Peer`]: this store's replica of one region — a `raft::RawNode` over a
//! [`PeerStorage`], plus the client requests waiting on it.
//!
//! Writes wait in [`Proposals`] under the (index, term) their entry got; when that
//! index is applied with the same term the write succeeded, with another term a
//! different leader's entry was committed there and it is answered
//! `StaleCommand`; when a snapshot covers it, its outcome is unknown.
//!
//! Linearizable reads wait in three steps: *queued* until the next round, when all
//! of them share one ReadIndex request (one heartbeat round answers them all);
//! *in flight* until raft returns a `ReadState` with the commit index; *ready*
//! until this peer has applied that index. Only then is the read answered, with
//! the region and an engine snapshot taken right then ([`RegionRead`]), which
//! the caller reads.
//!
//! What a committed command does depends on the group: in a data region it
//! writes mutations or splits the region (the new right half's peer is created by
//! the store once the round is written, see [`SplitDone`]); in the meta group it
//! changes the [`crate::meta::state::MetaState`]. Either way a command whose region
//! id or epoch version no longer matches, or whose keys left the region, is
//! refused on every replica alike.
//!
//! Membership changes are Raft `ConfChangeV2` entries whose context is a
//! [`ChangePeersCmd`]: adding a learner, promoting a learner (through joint
//! consensus, left automatically), removing a peer. The leader refuses one
//! while another is in flight, when its epoch is stale, or when the new
//! configuration could not reach a quorum of peers it hears from; every replica
//! refuses one whose epoch moved on. Applying one updates the descriptor's peers
//! and `conf_ver` and Raft's `ConfState` together. A peer that finds itself out
//! of the configuration asks the store to destroy it ([`Completions::destroys`]).
//!
//! A snapshot in a Ready becomes the peer's state before anything else of that
//! Ready ([`PeerStorage::begin_snapshot`]); a data region's data is then
//! replaced off the store thread, and meanwhile the peer takes part in Raft
//! but applies no entry (they wait), serves no read and proposes nothing,
//! until [`Peer::finish_snapshot`]. The meta group's small snapshots are
//! applied at once, with its state machine reloaded before the next entry.
//!
//! The methods named after the stages of raft-rs's Ready are called by the store
//! loop ([`super::store::Store::handle_readies`]) in that order.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{
    ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType, Message, MessageType, Ready,
};
use raft::{LightReady, ProgressState, RawNode, SnapshotStatus, SoftState, StateRole};
use shoal_proto::{
    ChangePeersCmd, Peer as PeerMeta, PeerChangeType, RaftCmd, RaftMessage, Region, SnapshotData, SnapshotKey, SplitCmd, mutation,
};
use tokio::sync::oneshot;

use super::peer_storage::PeerStorage;
use super::proposals::{Answer, Proposals};
use crate::error::{Error, Result};
use crate::keys;
use crate::meta::state::{MetaResult, MetaState};
use crate::meta::{META_REGION_ID, SharedMeta};
use crate::storage::cf::CF_REGION_META;
use crate::storage::{EngineSnapshot, WriteBatch};

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
}

/// Answers a command once its entry is applied (or known to be lost).
pub type WriteCallback = oneshot::Sender<Result<CmdResult>>;
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

/// A split this store applied: once the round's batches are written, the store
/// creates its peer of `right` (and makes it campaign if it led the parent, so
/// the new region gets a leader without waiting for an election timeout).
#[derive(Clone, Debug)]
pub struct SplitDone {
    pub right: Region,
    pub campaign: bool,
}

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
struct ApplyingSnapshot {
    data: SnapshotData,
    entries: Vec<Entry>,
    /// What was applied before: reported until the snapshot's data is in.
    applied_before: u64,
}

/// What waits until the round's batches are on disk: answers, new regions,
/// applied snapshots, and peers to destroy (region id, peer id).
#[derive(Default)]
pub struct Completions {
    writes: Vec<Answer>,
    pub splits: Vec<SplitDone>,
    pub snapshots: Vec<SnapshotDone>,
    /// Received snapshots now applied for good, whose files can go.
    pub released: Vec<SnapshotKey>,
    pub destroys: Vec<(u64, u64)>,
}

impl Completions {
    /// Answers every writer; returns how many writes were applied and how many failed.
    pub fn fire(self) -> (u64, u64) {
        let (mut applied, mut failed) = (0, 0);
        for (cb, res) in self.writes {
            if res.is_ok() {
                applied += 1
            } else {
                failed += 1
            }
            let _ = cb.send(res);
        }
        (applied, failed)
    }
}

/// Reads sharing one ReadIndex request, and the tick it was issued on.
struct ReadBatch {
    issued_at: u64,
    waiters: Vec<ReadCallback>,
}

pub struct Peer {
    store_id: u64,
    /// Store of every peer this region has had since this peer started, so that
    /// messages still reach a peer leaving in a joint configuration.
    peer_stores: HashMap<u64, u64>,
    /// The tick this peer last heard from a leader of its region.
    heard_leader_at: u64,
    /// The meta state machine, for the meta group's peer; `None` in data regions.
    meta: Option<SharedMeta>,
    /// Bytes and keys written by applied commands since the last heartbeat.
    written_bytes: u64,
    written_keys: u64,
    raw_node: RawNode<PeerStorage>,
    /// A snapshot whose data is being applied off the store thread.
    applying: Option<ApplyingSnapshot>,
    proposals: Proposals,
    queued_reads: Vec<ReadCallback>,
    inflight_reads: HashMap<u64, ReadBatch>,
    ready_reads: Vec<(u64, Vec<ReadCallback>)>,
    next_read_id: u64,
    ticks: u64,
    read_timeout_ticks: u64,
}

impl Peer {
    /// A peer of `storage`'s region; `meta` is the state machine when the region is
    /// the meta group. `peer_id` 0 means this store's peer in the descriptor (an
    /// uninitialized peer has no descriptor yet and must be given its id).
    pub fn new(
        store_id: u64,
        peer_id: u64,
        storage: PeerStorage,
        meta: Option<SharedMeta>,
        cfg: &raft::Config,
        logger: &slog::Logger,
    ) -> Result<Peer> {
        let region = storage.region().clone();
        let id = match peer_id {
            0 => {
                region
                    .peers
                    .iter()
                    .find(|p| p.store_id == store_id)
                    .ok_or_else(|| Error::Internal(format!("region {} has no peer on store {store_id}", region.id)))?
                    .id
            }
            id => id,
        };
        let mut cfg = cfg.clone();
        cfg.id = id;
        cfg.applied = storage.applied_index();
        let logger = logger.new(slog::o!("region" => region.id, "peer" => id));
        let raw_node = RawNode::new(&cfg, storage, &logger)?;
        Ok(Peer {
            store_id,
            peer_stores: region.peers.iter().map(|p| (p.id, p.store_id)).collect(),
            heard_leader_at: 0,
            meta,
            written_bytes: 0,
            written_keys: 0,
            raw_node,
            applying: None,
            proposals: Proposals::default(),
            queued_reads: Vec::new(),
            inflight_reads: HashMap::new(),
            ready_reads: Vec::new(),
            next_read_id: 1,
            ticks: 0,
            read_timeout_ticks: cfg.election_tick as u64 * 2,
        })
    }

    pub fn region(&self) -> &Region {
        self.raw_node.store().region()
    }

    pub fn region_id(&self) -> u64 {
        self.region().id
    }

    pub fn peer_id(&self) -> u64 {
        self.raw_node.raft.id
    }

    pub fn is_leader(&self) -> bool {
        self.raw_node.raft.state == StateRole::Leader
    }

    pub fn term(&self) -> u64 {
        self.raw_node.raft.term
    }

    pub fn commit_index(&self) -> u64 {
        self.raw_node.raft.raft_log.committed
    }

    /// The last index whose effects are in the engine (while a snapshot's
    /// data goes in, what was applied before it).
    pub fn applied_index(&self) -> u64 {
        match &self.applying {
            Some(a) => a.applied_before,
            None => self.raw_node.store().applied_index(),
        }
    }

    /// The leader as this peer knows it.
    pub fn leader(&self) -> Option<PeerMeta> {
        let id = self.raw_node.raft.leader_id;
        self.region().peers.iter().find(|p| p.id == id && id != 0).cloned()
    }

    fn applying_error(&self) -> Error {
        Error::Unavailable(format!("region {} is applying a snapshot on this store", self.region_id()))
    }

    fn not_leader(&self) -> Error {
        Error::NotLeader { region_id: self.region_id(), leader: self.leader() }
    }

    /// Whether the region is in a joint configuration (a membership change
    /// entered it and has not left it yet).
    pub fn in_joint(&self) -> bool {
        !self.raw_node.store().conf_state().voters_outgoing.is_empty()
    }

    pub fn is_initialized(&self) -> bool {
        self.raw_node.store().is_initialized()
    }

    /// Feeds one message from another peer of this region, sent by store `from_store`.
    pub fn step(&mut self, msg: Message, from_store: u64) -> Result<()> {
        self.peer_stores.entry(msg.from).or_insert(from_store);
        if matches!(msg.get_msg_type(), MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot) {
            self.heard_leader_at = self.ticks;
        }
        self.raw_node.step(msg)?;
        Ok(())
    }

    /// Whether this peer has heard from no leader for `ticks` ticks (it may have
    /// been removed from its region while away).
    pub fn is_idle(&self, ticks: u64) -> bool {
        !self.is_leader() && self.ticks.saturating_sub(self.heard_leader_at) > ticks
    }

    /// Tells raft how sending a snapshot to `to_peer` ended.
    pub fn report_snapshot(&mut self, to_peer: u64, ok: bool) {
        let status = if ok { SnapshotStatus::Finish } else { SnapshotStatus::Failure };
        self.raw_node.report_snapshot(to_peer, status);
    }

    /// For diagnostics: this peer's id, term, role, leader and log, then how
    /// it sees each peer of its configuration: `peer:state matched/next` with
    /// `snap@N` while a snapshot is pending, `inactive` when not recently heard
    /// from, `paused` when probing is paused (meaningful on a leader).
    pub fn progress_summary(&self) -> String {
        let r = &self.raw_node.raft;
        let me = format!(
            "peer {} term {} {:?} leader {} vote {} commit {} last {}",
            r.id,
            r.term,
            r.state,
            r.leader_id,
            r.vote,
            r.raft_log.committed,
            r.raft_log.last_index()
        );
        let mut out: Vec<String> = self
            .raw_node
            .raft
            .prs()
            .iter()
            .map(|(id, pr)| {
                let mut s = format!("{id}:{:?} {}/{}", pr.state, pr.matched, pr.next_idx);
                if pr.pending_snapshot != 0 {
                    s += &format!(" snap@{}", pr.pending_snapshot);
                }
                if !pr.recent_active {
                    s += " inactive";
                }
                if pr.is_paused() {
                    s += " paused";
                }
                s
            })
            .collect();
        out.sort();
        format!("{me}: {}", out.join(", "))
    }

    /// Peers (other than this leader) not caught up: waiting for a snapshot,
    /// behind the start of the leader's log, or probing with entries still to
    /// get. (A peer that has matched the whole log may stay probing in an idle
    /// region: raft-rs leaves it so when its answer to a snapshot arrives
    /// before the snapshot's send is reported.) Empty unless leading.
    pub fn pending_peers(&self) -> Vec<u64> {
        if !self.is_leader() {
            return vec![];
        }
        let truncated = self.raw_node.store().truncated_index();
        let last = self.raw_node.raft.raft_log.last_index();
        let me = self.peer_id();
        self.raw_node
            .raft
            .prs()
            .iter()
            .filter(|(id, pr)| {
                **id != me
                    && (pr.state == ProgressState::Snapshot
                        || pr.matched < truncated
                        || (pr.state == ProgressState::Probe && pr.matched < last))
            })
            .map(|(id, _)| *id)
            .collect()
    }

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

    /// Advances the logical clock: elections, heartbeats, read retries.
    pub fn tick(&mut self) {
        self.raw_node.tick();
        self.ticks += 1;
        // A ReadIndex whose heartbeat round was lost is asked again.
        let timeout = self.read_timeout_ticks;
        let now = self.ticks;
        let expired: Vec<u64> = self.inflight_reads.iter().filter(|(_, b)| now - b.issued_at > timeout).map(|(id, _)| *id).collect();
        for id in expired {
            if let Some(batch) = self.inflight_reads.remove(&id) {
                self.queued_reads.extend(batch.waiters);
            }
        }
    }

    /// Asks raft to hand leadership to `to` (a voter of this region); ignored
    /// unless this peer leads.
    pub fn transfer_leader(&mut self, to: u64) {
        if self.is_leader() && to != self.peer_id() {
            self.raw_node.transfer_leader(to);
        }
    }

    /// Bytes and keys written since the last call (for heartbeats).
    pub fn take_written(&mut self) -> (u64, u64) {
        (std::mem::take(&mut self.written_bytes), std::mem::take(&mut self.written_keys))
    }

    /// Starts an election now (tests and leader bootstrap).
    pub fn campaign(&mut self) -> Result<()> {
        self.raw_node.campaign()?;
        Ok(())
    }

    /// Proposes `cmd`; `cb` is answered when it is applied. Refused at once when
    /// this peer is not the leader.
    pub fn propose(&mut self, cmd: &RaftCmd, cb: WriteCallback) {
        if !self.is_leader() {
            let _ = cb.send(Err(self.not_leader()));
            return;
        }
        if self.is_applying() {
            let _ = cb.send(Err(self.applying_error()));
            return;
        }
        match self.raw_node.propose(vec![], cmd.encode_to_vec()) {
            Ok(()) => self.track_proposal(cb),
            Err(raft::Error::ProposalDropped) => {
                let _ = cb.send(Err(Error::Unavailable(format!("region {}: proposal dropped (leader changing)", self.region_id()))));
            }
            Err(e) => {
                let _ = cb.send(Err(e.into()));
            }
        }
    }

    /// Waits on the entry just proposed (the log's last) for `cb`.
    fn track_proposal(&mut self, cb: WriteCallback) {
        let index = self.raw_node.raft.raft_log.last_index();
        let term = self.raw_node.raft.term;
        self.proposals.track(index, term, cb);
    }

    /// Queues a linearizable read; refused at once when this peer is not the leader.
    pub fn read(&mut self, cb: ReadCallback) {
        if !self.is_leader() {
            let _ = cb.send(Err(self.not_leader()));
            return;
        }
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

    pub fn has_ready(&self) -> bool {
        self.raw_node.has_ready()
    }

    pub fn ready(&mut self) -> Ready {
        self.raw_node.ready()
    }

    /// Stage: messages. Wraps raft messages for the transport, addressed by
    /// store; snapshots go to `snaps`, which travel on their own stream.
    pub fn send_messages(&self, msgs: Vec<Message>, out: &mut Vec<RaftMessage>, snaps: &mut Vec<RaftMessage>) {
        for m in msgs {
            let Some(to_store) = self.peer_stores.get(&m.to).copied() else {
                tracing::warn!(region = self.region_id(), to = m.to, "dropping message to a peer not in the region");
                continue;
            };
            let is_snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
            match m.write_to_bytes() {
                Ok(bytes) => {
                    let msg =
                        RaftMessage { region_id: self.region_id(), from_store_id: self.store_id, to_store_id: to_store, message: bytes };
                    if is_snapshot { snaps.push(msg) } else { out.push(msg) }
                }
                Err(e) => tracing::error!(error = %e, "cannot encode raft message"),
            }
        }
    }

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

    fn take_reads(&mut self) -> Vec<ReadCallback> {
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

    /// Stage: committed entries. Applies them to the data column families, with the
    /// new applied index, in `wb`; their writers are answered once `wb` is written.
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

    /// Proposes the membership change `cmd`; `cb` is answered once it is applied.
    /// Refused at once (nothing proposed) when this peer does not lead, another
    /// change is in flight, the epoch is stale, the changes do not fit the
    /// region, or the new configuration could not reach a quorum.
    pub fn propose_conf_change(&mut self, cmd: ChangePeersCmd, cb: WriteCallback) {
        if !self.is_leader() {
            let _ = cb.send(Err(self.not_leader()));
            return;
        }
        if self.is_applying() {
            let _ = cb.send(Err(self.applying_error()));
            return;
        }
        let cc = match self.check_conf_change(&cmd) {
            Ok(cc) => cc,
            Err(e) => {
                let _ = cb.send(Err(e));
                return;
            }
        };
        match self.raw_node.propose_conf_change(cmd.encode_to_vec(), cc) {
            Ok(()) => self.track_proposal(cb),
            Err(e) => {
                let _ = cb.send(Err(Error::Unavailable(format!("region {}: membership change not proposed: {e}", self.region_id()))));
            }
        }
    }

    /// Checks `cmd` against the region and the peers this leader hears from;
    /// returns the Raft change to propose.
    fn check_conf_change(&self, cmd: &ChangePeersCmd) -> Result<ConfChangeV2> {
        let region = self.region();
        if cmd.region_id != region.id {
            return Err(Error::RegionNotFound(vec![]));
        }
        if cmd.epoch != region.epoch {
            return Err(Error::EpochNotMatch(
                format!("membership change planned under {:?}, region has {:?}", cmd.epoch, region.epoch),
                vec![region.clone()],
            ));
        }
        let raft = &self.raw_node.raft;
        let conf = self.raw_node.store().conf_state();
        if raft.has_pending_conf() || !conf.voters_outgoing.is_empty() {
            return Err(Error::Unavailable(format!("region {}: a membership change is already in progress", region.id)));
        }
        if cmd.changes.is_empty() {
            return Err(Error::InvalidArgument("a membership change needs at least one change".into()));
        }
        let mut voters: HashSet<u64> = conf.voters.iter().copied().collect();
        let mut changes = Vec::new();
        let mut seen = HashSet::new();
        for c in &cmd.changes {
            let peer = c.peer.ok_or_else(|| Error::InvalidArgument("a peer change names no peer".into()))?;
            if peer.id == 0 || peer.store_id == 0 || !seen.insert(peer.id) {
                return Err(Error::InvalidArgument(format!("bad peer {peer:?} in a membership change")));
            }
            let existing = region.peers.iter().find(|p| p.id == peer.id);
            let mut single = ConfChangeSingle { node_id: peer.id, ..Default::default() };
            match c.change_type() {
                PeerChangeType::AddLearner => {
                    if existing.is_some() || region.peers.iter().any(|p| p.store_id == peer.store_id) {
                        return Err(Error::InvalidArgument(format!(
                            "store {} already holds a peer of region {}",
                            peer.store_id, region.id
                        )));
                    }
                    single.set_change_type(ConfChangeType::AddLearnerNode);
                }
                PeerChangeType::PromoteLearner => {
                    if !existing.is_some_and(|p| p.is_learner && p.store_id == peer.store_id) {
                        return Err(Error::InvalidArgument(format!("peer {} is not a learner of region {}", peer.id, region.id)));
                    }
                    voters.insert(peer.id);
                    single.set_change_type(ConfChangeType::AddNode);
                }
                PeerChangeType::RemovePeer => {
                    if existing.is_none_or(|p| p.store_id != peer.store_id) {
                        return Err(Error::InvalidArgument(format!("peer {} is not in region {}", peer.id, region.id)));
                    }
                    if peer.id == self.peer_id() {
                        return Err(Error::InvalidArgument(format!(
                            "peer {} leads region {}: transfer leadership before removing it",
                            peer.id, region.id
                        )));
                    }
                    voters.remove(&peer.id);
                    single.set_change_type(ConfChangeType::RemoveNode);
                }
            }
            changes.push(single);
        }
        // The new voters must reach a quorum among peers this leader hears from
        // (itself, and followers active within the last election timeout).
        let me = self.peer_id();
        let healthy = voters.iter().filter(|id| **id == me || raft.prs().get(**id).is_some_and(|pr| pr.recent_active)).count();
        if voters.is_empty() || healthy < voters.len() / 2 + 1 {
            return Err(Error::Unavailable(format!(
                "region {}: refused, the new configuration would have {healthy} reachable voters of {} (quorum {})",
                region.id,
                voters.len(),
                voters.len() / 2 + 1
            )));
        }
        let mut cc = ConfChangeV2::default();
        let joint = changes.len() > 1 || cmd.changes.iter().any(|c| c.change_type() == PeerChangeType::PromoteLearner);
        cc.set_transition(if joint { ConfChangeTransition::Implicit } else { ConfChangeTransition::Auto });
        cc.set_changes(changes.into());
        Ok(cc)
    }

    /// Applies a committed membership change: Raft's configuration, the
    /// descriptor's peers and `conf_ver`, in `wb`. The automatic "leave joint"
    /// entry carries no command. A change whose epoch moved on is refused.
    fn apply_conf_change(&mut self, entry: &Entry, wb: &mut WriteBatch<'_>, done: &mut Completions) -> Result<Result<CmdResult>> {
        let cc = match ConfChangeV2::parse_from_bytes(&entry.data) {
            Ok(cc) => cc,
            Err(e) => return Ok(Err(Error::Internal(format!("undecodable conf change: {e}")))),
        };
        let mut region = self.region().clone();
        // raft-rs carries a proposal's context in the entry, not in the change.
        let context = if entry.context.is_empty() { cc.get_context() } else { &entry.context[..] };
        if !context.is_empty() {
            let cmd = match ChangePeersCmd::decode(context) {
                Ok(cmd) => cmd,
                Err(e) => return Ok(Err(Error::Internal(format!("undecodable membership change: {e}")))),
            };
            if cmd.region_id != region.id || cmd.epoch != region.epoch {
                return Ok(Err(Error::EpochNotMatch(
                    format!("membership change under {:?}, region has {:?}", cmd.epoch, region.epoch),
                    vec![region],
                )));
            }
            for c in &cmd.changes {
                let Some(peer) = c.peer else { continue };
                match c.change_type() {
                    PeerChangeType::AddLearner => region.peers.push(PeerMeta { is_learner: true, ..peer }),
                    PeerChangeType::PromoteLearner => {
                        region.peers.iter_mut().filter(|p| p.id == peer.id).for_each(|p| p.is_learner = false)
                    }
                    PeerChangeType::RemovePeer => region.peers.retain(|p| p.id != peer.id),
                }
                self.peer_stores.insert(peer.id, peer.store_id);
            }
        }
        let conf_state: ConfState = self.raw_node.apply_conf_change(&cc)?;
        // The descriptor lists exactly Raft's members: a voter leaving through
        // joint consensus stays (as a voter) until the joint state is left, so
        // that its store can still load its peer if it restarts meanwhile.
        let in_conf =
            |id: u64| conf_state.voters.contains(&id) || conf_state.voters_outgoing.contains(&id) || conf_state.learners.contains(&id);
        let outgoing: Vec<PeerMeta> =
            self.region().peers.iter().filter(|p| in_conf(p.id) && !region.peers.iter().any(|q| q.id == p.id)).copied().collect();
        region.peers.extend(outgoing);
        region.peers.retain(|p| in_conf(p.id));
        if let Some(epoch) = region.epoch.as_mut() {
            epoch.conf_ver += 1;
        }
        let me = self.peer_id();
        let member = conf_state.voters.contains(&me) || conf_state.voters_outgoing.contains(&me) || conf_state.learners.contains(&me);
        tracing::info!(region = region.id, voters = ?conf_state.voters, outgoing = ?conf_state.voters_outgoing, learners = ?conf_state.learners, "membership changed");
        self.raw_node.mut_store().set_region_and_conf(region.clone(), conf_state, wb)?;
        if !member {
            done.destroys.push((region.id, me));
        }
        Ok(Ok(CmdResult::ConfChanged(region)))
    }

    /// Splits this region at `split.split_key`: this peer keeps the left half and
    /// the right half's initial state goes into `wb`, so both descriptors and the
    /// apply index land in one batch. Refused (on every replica) when the key is
    /// not strictly inside the region or the ids do not fit: the new region needs
    /// an id other than this region's and the meta group's (reusing one would route
    /// the right half's keys to a region that does not hold them), and one distinct
    /// nonzero peer id per peer (two stores must never be the same Raft peer).
    fn apply_split(&mut self, split: &SplitCmd, wb: &mut WriteBatch<'_>, done: &mut Completions) -> Result<Result<CmdResult>> {
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
            super::peer_storage::PeerStorage::write_initial_state(wb, &right)?;
        }
        self.raw_node.mut_store().set_region(left.clone(), wb)?;
        done.splits.push(SplitDone { right: right.clone(), campaign: self.is_leader() });
        tracing::info!(region = region.id, new_region = right.id, split_key = ?String::from_utf8_lossy(key), "region split");
        Ok(Ok(CmdResult::Split { left, right }))
    }

    /// Stage: persist. Adds new entries and the hard state to the round's batch.
    pub fn persist(&mut self, rd: &Ready, wb: &mut WriteBatch<'_>) -> Result<()> {
        self.raw_node.mut_store().append(rd.entries(), wb)?;
        if let Some(hs) = rd.hs() {
            self.raw_node.mut_store().set_hard_state(hs, wb)?;
        }
        Ok(())
    }

    /// Stage: advance. Tells raft the ready is persisted; returns the light ready.
    pub fn advance(&mut self, rd: Ready) -> LightReady {
        self.raw_node.advance(rd)
    }

    /// Stage: light ready — a commit index learned by persisting, its messages,
    /// and entries that became committed; then the apply is acknowledged.
    pub fn handle_light_ready(
        &mut self,
        mut light: LightReady,
        wb: &mut WriteBatch<'_>,
        out: &mut Vec<RaftMessage>,
        snaps: &mut Vec<RaftMessage>,
        done: &mut Completions,
    ) -> Result<()> {
        if let Some(commit) = light.commit_index() {
            self.raw_node.mut_store().set_commit(commit, wb)?;
        }
        self.send_messages(light.take_messages(), out, snaps);
        self.apply_committed(light.take_committed_entries(), wb, done)?;
        self.raw_node.advance_apply();
        Ok(())
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

    /// Fails every waiting request; used at shutdown. Proposed writes may still
    /// be committed by the other replicas, so their outcome is unknown.
    pub fn fail_all(&mut self, why: &str) {
        self.proposals.fail_all(why);
        for cb in self.take_reads() {
            let _ = cb.send(Err(Error::Unavailable(why.to_string())));
        }
    }
}
