//! [`Peer`]: this store's replica of one region — a `raft::RawNode` over a
//! [`PeerStorage`], plus the client requests waiting on it.
//!
//! The store loop ([`super::store::Store::handle_readies`]) drives a peer
//! through the stages of raft-rs's Ready, in this order, one method each:
//! [`Peer::send_messages`] (the messages a leader may send before
//! persisting), [`Peer::apply_snapshot`], [`Peer::handle_soft_state_and_reads`],
//! [`Peer::apply_committed`], [`Peer::persist`]; then, once the round's batch
//! is written, [`Peer::send_messages`] again (those that needed the persist),
//! [`Peer::advance`] and [`Peer::handle_light_ready`]; and once that batch is
//! written too, [`Peer::finish_reads`]. Each job of a peer has its own file:
//!
//! - this file: the peer itself, its clock, proposing writes, and the Ready
//!   stages that only hand data between raft and the store (messages, persist,
//!   advance, light ready);
//! - [`read`]: linearizable reads through one shared ReadIndex per round;
//! - [`apply`]: applying committed entries — data mutations and meta commands —
//!   and [`Completions`], what waits for the round's batch to be on disk;
//! - [`conf_change`]: membership changes, proposed, checked and applied;
//! - [`split`]: applying a split;
//! - [`snapshot`]: a snapshot received in a Ready, until its data is in place;
//! - [`log_gc`]: truncating the applied log;
//! - [`hibernate`]: idle regions stop ticking, and what wakes them;
//! - [`progress`]: how the leader sees its followers (placement, diagnostics).
//!
//! Writes wait in [`Proposals`] under the (index, term) their entry got; when that
//! index is applied with the same term the write succeeded, with another term a
//! different leader's entry was committed there and it is answered
//! `StaleCommand`; when a snapshot covers it, its outcome is unknown.

mod apply;
mod conf_change;
mod fence;
mod hibernate;
mod log_gc;
mod progress;
mod read;
mod snapshot;
mod split;

use std::collections::HashMap;

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{Message, MessageType, Ready};
use raft::{LightReady, RawNode, SnapshotStatus, StateRole};
use shoal_proto::{Peer as PeerMeta, RaftCmd, RaftMessage, Region};

pub use apply::{CmdResult, Completions, WriteCallback};
pub use fence::FENCE_LEASE_ELECTIONS;
use hibernate::Hibernation;
pub use read::{ReadCallback, RegionRead};
pub use snapshot::SnapshotDone;
pub use split::SplitDone;

use super::peer_storage::PeerStorage;
use super::proposals::Proposals;
use crate::error::{Error, Result};
use crate::meta::SharedMeta;
use crate::storage::WriteBatch;
use read::ReadBatch;
use snapshot::ApplyingSnapshot;

pub struct Peer {
    store_id: u64,
    /// Store of every peer this region has had since this peer started, so that
    /// messages still reach a peer leaving in a joint configuration.
    peer_stores: HashMap<u64, u64>,
    /// The tick this peer last heard from a leader of its region.
    heard_leader_at: u64,
    /// The tick of the last message from each peer (by id), for the
    /// reachability check of membership changes ([`Peer::recently_heard`]).
    heard_from_at: HashMap<u64, u64>,
    /// The meta state machine, for the meta group's peer; `None` in data regions.
    meta: Option<SharedMeta>,
    /// Bytes and keys written by applied commands since the last heartbeat.
    written_bytes: u64,
    written_keys: u64,
    /// Peers last reported as not caught up; one that catches up asks for an
    /// early heartbeat ([`Peer::caught_up_since_report`]).
    reported_pending: Vec<u64>,
    raw_node: RawNode<PeerStorage>,
    /// A snapshot whose data is being applied off the store thread.
    applying: Option<ApplyingSnapshot>,
    proposals: Proposals,
    queued_reads: Vec<ReadCallback>,
    inflight_reads: HashMap<u64, ReadBatch>,
    ready_reads: Vec<(u64, Vec<ReadCallback>)>,
    next_read_id: u64,
    /// The store's clock, in ticks, as of this peer's last tick or message
    /// (an asleep peer is not ticked; the store sets its clock when it wakes).
    ticks: u64,
    hibernation: Hibernation,
    /// Whether this round's messages carried the heartbeats that put the region to sleep.
    asked_to_sleep: bool,
    /// A follower whose leader put the region to sleep while this peer still
    /// waited on something: it sleeps at its first tick that waits on nothing
    /// ([`Peer::maybe_sleep_as_told`]).
    told_to_sleep: bool,
    read_timeout_ticks: u64,
    election_ticks: u64,
    /// The index of a split or fence proposed here that is not applied yet,
    /// or 0: commit indexes are broadcast until then
    /// ([`Peer::maybe_skip_bcast_commit`]).
    broadcast_commit_until: u64,
    /// While this peer leads a fenced region: the backup and the tick it first
    /// saw that backup's fence as leader ([`Peer::maybe_lift_stale_fence`]).
    fence_seen_at: Option<(String, u64)>,
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
        // A data region's leader does not send an empty append to tell its
        // followers of each new commit index: the next append, heartbeat or
        // hibernating ping carries it (membership changes, splits and fences
        // are still told at once: `broadcast_commit_until_applied`). Writes
        // are answered by the leader, so only followers' applies wait, and
        // for a region written once in a while this halves its Raft messages. The meta group keeps the broadcast: it is one region that
        // never sleeps, and a follower that takes over should find its copy
        // of the directory current.
        cfg.skip_bcast_commit = meta.is_none();
        let logger = logger.new(slog::o!("region" => region.id, "peer" => id));
        let raw_node = RawNode::new(&cfg, storage, &logger)?;
        Ok(Peer {
            store_id,
            peer_stores: region.peers.iter().map(|p| (p.id, p.store_id)).collect(),
            heard_leader_at: 0,
            heard_from_at: HashMap::new(),
            meta,
            written_bytes: 0,
            written_keys: 0,
            reported_pending: Vec::new(),
            raw_node,
            applying: None,
            proposals: Proposals::default(),
            queued_reads: Vec::new(),
            inflight_reads: HashMap::new(),
            ready_reads: Vec::new(),
            next_read_id: 1,
            ticks: 0,
            hibernation: Hibernation::Awake,
            asked_to_sleep: false,
            told_to_sleep: false,
            read_timeout_ticks: cfg.election_tick as u64 * 2,
            election_ticks: cfg.election_tick as u64,
            fence_seen_at: None,
            broadcast_commit_until: 0,
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

    /// Whether this peer may propose now: it leads, and no snapshot's data is
    /// going in (entries would wait behind it).
    fn check_can_propose(&self) -> Result<()> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        if self.is_applying() {
            return Err(Error::Unavailable(format!("region {} is applying a snapshot on this store", self.region_id())));
        }
        Ok(())
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

    /// Feeds one message from another peer of this region, sent by store
    /// `from_store`; `hibernate` marks a leader's heartbeat that asks the
    /// region to sleep ([`hibernate`]).
    pub fn step(&mut self, msg: Message, from_store: u64, hibernate: bool) -> Result<()> {
        self.peer_stores.entry(msg.from).or_insert(from_store);
        self.heard_from_at.insert(msg.from, self.ticks);
        let (m_type, from) = (msg.get_msg_type(), msg.from);
        if matches!(m_type, MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot) {
            self.heard_leader_at = self.ticks;
        }
        if self.wakes(&msg, hibernate) {
            self.wake();
        }
        self.raw_node.step(msg)?;
        self.after_step(m_type, from, hibernate);
        Ok(())
    }

    /// Sets this peer's clock to the store's (`now`, in ticks): an asleep
    /// peer's clock stood still while the store's went on. While it sleeps,
    /// its region's peers send it nothing, so what it last heard from them is
    /// as old as its sleep: the peers on stores still `alive` count as heard
    /// from now (a store that falls silent wakes the region instead), and so
    /// does the leader that put it to sleep.
    pub fn set_clock(&mut self, now: u64, alive: impl Fn(u64) -> bool) {
        if self.is_asleep() {
            for (peer, store) in &self.peer_stores {
                if alive(*store) {
                    self.heard_from_at.insert(*peer, now);
                }
            }
            // Its leader put it to sleep: the wait for a leader starts now.
            self.heard_leader_at = now;
        }
        self.ticks = self.ticks.max(now);
    }

    /// Whether `peer_id` is this peer, or sent it a message within the last
    /// election timeout. (Not raft-rs's `recent_active`: with check-quorum a
    /// leader clears that flag for every follower at each election timeout,
    /// and it is set again only by their next answers, so right after that
    /// tick every follower looks unreachable.)
    fn recently_heard(&self, peer_id: u64) -> bool {
        peer_id == self.peer_id()
            || self.heard_from_at.get(&peer_id).is_some_and(|at| self.ticks.saturating_sub(*at) <= self.election_ticks)
    }

    /// Whether this peer has heard from no leader for `ticks` ticks (it may have
    /// been removed from its region while away). An asleep peer is not: its
    /// leader put it to sleep.
    pub fn is_idle(&self, ticks: u64) -> bool {
        !self.is_leader() && !self.is_asleep() && self.ticks.saturating_sub(self.heard_leader_at) > ticks
    }

    /// Tells raft how sending a snapshot to `to_peer` ended.
    pub fn report_snapshot(&mut self, to_peer: u64, ok: bool) {
        self.wake();
        let status = if ok { SnapshotStatus::Finish } else { SnapshotStatus::Failure };
        self.raw_node.report_snapshot(to_peer, status);
    }

    /// One tick of the logical clock, the store's tick `now`: elections,
    /// heartbeats, read retries, and hibernation (only while every peer's
    /// store is `alive`). Not called while asleep.
    pub fn tick(&mut self, now: u64, alive: impl Fn(u64) -> bool) {
        // Before the tick adds its own heartbeats.
        let quiet = self.is_quiet() && self.region().peers.iter().all(|p| alive(p.store_id));
        self.raw_node.tick();
        self.ticks = now;
        self.retry_lost_reads();
        self.maybe_lift_stale_fence();
        self.maybe_hibernate(quiet);
        self.maybe_sleep_as_told();
    }

    /// Asks raft to hand leadership to `to` (a voter of this region); ignored
    /// unless this peer leads.
    pub fn transfer_leader(&mut self, to: u64) {
        if self.is_leader() && to != self.peer_id() {
            self.wake();
            self.raw_node.transfer_leader(to);
        }
    }

    /// Bytes and keys written since the last call (for heartbeats).
    pub fn take_written(&mut self) -> (u64, u64) {
        (std::mem::take(&mut self.written_bytes), std::mem::take(&mut self.written_keys))
    }

    /// Starts an election now (tests and leader bootstrap).
    pub fn campaign(&mut self) -> Result<()> {
        self.wake();
        self.raw_node.campaign()?;
        Ok(())
    }

    /// Proposes `cmd`; `cb` is answered when it is applied. Refused at once when
    /// this peer is not the leader.
    pub fn propose(&mut self, cmd: &RaftCmd, cb: WriteCallback) {
        if let Err(e) = self.check_can_propose() {
            let _ = cb.send(Err(e));
            return;
        }
        self.wake();
        match self.raw_node.propose(vec![], cmd.encode_to_vec()) {
            Ok(()) => {
                if cmd.split.is_some() || cmd.backup_fence.is_some() {
                    self.broadcast_commit_until_applied();
                }
                self.track_proposal(cb)
            }
            Err(raft::Error::ProposalDropped) => {
                let _ = cb.send(Err(Error::Unavailable(format!("region {}: proposal dropped (leader changing)", self.region_id()))));
            }
            Err(e) => {
                let _ = cb.send(Err(e.into()));
            }
        }
    }

    /// A split or a fence changes the region on every replica: until the entry
    /// just proposed is applied here, each new commit index is broadcast at
    /// once, so that followers apply it without waiting for a heartbeat (the
    /// right half of a split elects as soon as its leader's store applies it).
    fn broadcast_commit_until_applied(&mut self) {
        self.broadcast_commit_until = self.raw_node.raft.raft_log.last_index();
        self.raw_node.skip_bcast_commit(false);
    }

    /// After applying up to `applied`: a data region goes back to not
    /// broadcasting commit indexes once its split or fence is applied.
    pub(super) fn maybe_skip_bcast_commit(&mut self, applied: u64) {
        if self.broadcast_commit_until != 0 && applied >= self.broadcast_commit_until {
            self.broadcast_commit_until = 0;
            self.raw_node.skip_bcast_commit(true);
        }
    }

    /// Waits on the entry just proposed (the log's last) for `cb`.
    fn track_proposal(&mut self, cb: WriteCallback) {
        let index = self.raw_node.raft.raft_log.last_index();
        let term = self.raw_node.raft.term;
        self.proposals.track(index, term, cb);
    }

    pub fn has_ready(&self) -> bool {
        self.raw_node.has_ready()
    }

    pub fn ready(&mut self) -> Ready {
        self.raw_node.ready()
    }

    /// Stage: messages. Wraps raft messages for the transport, addressed by
    /// store; snapshots go to `snaps`, which travel on their own stream. A
    /// leader asking its region to sleep marks its heartbeats, and sleeps.
    pub fn send_messages(&mut self, msgs: Vec<Message>, out: &mut Vec<RaftMessage>, snaps: &mut Vec<RaftMessage>) {
        for m in msgs {
            let Some(to_store) = self.peer_stores.get(&m.to).copied() else {
                tracing::warn!(region = self.region_id(), to = m.to, "dropping message to a peer not in the region");
                continue;
            };
            if self.answer_unneeded(&m) {
                continue;
            }
            let is_snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
            let hibernate = self.hibernate_flag(&m);
            match m.write_to_bytes() {
                Ok(bytes) => {
                    let (region_id, from_store_id) = (self.region_id(), self.store_id);
                    let msg = RaftMessage { region_id, from_store_id, to_store_id: to_store, message: bytes, hibernate, leaving: false };
                    if is_snapshot { snaps.push(msg) } else { out.push(msg) }
                }
                Err(e) => tracing::error!(error = %e, "cannot encode raft message"),
            }
        }
        self.after_send();
    }

    /// Stage: persist. Adds new entries and a new term or vote to the round's
    /// batch (a new commit index alone is kept in memory: see
    /// [`super::peer_storage::PeerStorage::set_commit`]). Adds them to the round's
    /// batch. Returns whether the batch must be synced before this Ready's
    /// persisted messages go out: it holds entries, or a new term or vote (a
    /// commit index alone can be learned again after a crash).
    pub fn persist(&mut self, rd: &Ready, wb: &mut WriteBatch<'_>) -> Result<bool> {
        let mut sync = !rd.entries().is_empty();
        self.raw_node.mut_store().append(rd.entries(), wb)?;
        if let Some(hs) = rd.hs() {
            let (term, vote) = self.raw_node.store().term_and_vote();
            sync |= (hs.term, hs.vote) != (term, vote);
            self.raw_node.mut_store().set_hard_state(hs, wb)?;
        }
        Ok(sync)
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
            self.raw_node.mut_store().set_commit(commit);
        }
        self.send_messages(light.take_messages(), out, snaps);
        self.apply_committed(light.take_committed_entries(), wb, done)?;
        self.raw_node.advance_apply();
        Ok(())
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
