//! [`Store`]: every region peer on this store, and the Ready round that drives them.
//!
//! The store is a plain state machine with no threads or sockets: the store loop
//! ([`super::store_loop`]) — or a test — feeds it Raft messages, client requests and
//! ticks, then calls [`Store::handle_readies`], which returns the Raft messages to
//! send. Messages are routed to peers by region id; client requests by key, over
//! the data regions' ranges (the meta group has none: it is reached by id).
//!
//! A split is applied by the parent's peer ([`Peer`]); once the round's batches
//! are written, the store creates its peer of the new region and routes the right
//! half's keys to it. The store that led the parent makes its new peer campaign at
//! once; a store that has not applied the split yet when that first vote request
//! arrives keeps it ([`Store::on_raft_message`]) and hands it to its new peer
//! once it has one, so the election does not wait for a timeout.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use shoal_proto::{MetaCmd, Mutation, RaftCmd, RaftMessage, Region, RegionEpoch, RegionLocalState, SplitCmd};

use super::peer::{Completions, Peer, ReadCallback, SplitDone, WriteCallback};
use super::peer_storage::{PeerStorage, RAFT_INIT_LOG_TERM};
use crate::error::{Error, Result};
use crate::keys;
use crate::meta::state::MetaState;
use crate::meta::{META_REGION_ID, SharedMeta};
use crate::metrics::Metrics;
use crate::storage::Engine;
use crate::storage::cf::CF_REGION_META;

/// First vote requests kept for regions this store does not hold yet; the oldest
/// are dropped past this many.
const MAX_PENDING_VOTES: usize = 256;

/// What a store reports about one of its peers.
#[derive(Clone, Debug)]
pub struct PeerStatus {
    pub region: Region,
    pub peer_id: u64,
    pub leader: Option<shoal_proto::Peer>,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub is_leader: bool,
}

/// What a region's leader tells meta about the region by heartbeat.
#[derive(Clone, Debug)]
pub struct LeaderReport {
    pub region: Region,
    pub term: u64,
    /// Bytes and keys written since the previous report.
    pub written_bytes: u64,
    pub written_keys: u64,
}

pub struct Store {
    store_id: u64,
    engine: Arc<Engine>,
    /// Region id → this store's peer of it.
    peers: BTreeMap<u64, Peer>,
    /// Region start key → region id, to find the region serving a key.
    ranges: BTreeMap<Vec<u8>, u64>,
    /// The meta state machine, when this store holds a meta peer.
    meta: Option<SharedMeta>,
    /// First vote requests of regions this store does not hold: most likely the
    /// new half of a split this store has not applied yet. Handed to the region's
    /// peer when a split creates it.
    pending_votes: VecDeque<RaftMessage>,
    raft_cfg: raft::Config,
    logger: slog::Logger,
    metrics: Arc<Metrics>,
}

impl Store {
    /// Loads every region peer this store holds from the engine.
    pub fn open(
        engine: Arc<Engine>,
        store_id: u64,
        raft_cfg: &raft::Config,
        metrics: Arc<Metrics>,
        logger: &slog::Logger,
    ) -> Result<Store> {
        let mut store = Store {
            store_id,
            engine: engine.clone(),
            peers: BTreeMap::new(),
            ranges: BTreeMap::new(),
            meta: None,
            pending_votes: VecDeque::new(),
            raft_cfg: raft_cfg.clone(),
            logger: logger.clone(),
            metrics,
        };
        let (start, end) = keys::region_state_range();
        let mut region_ids = Vec::new();
        engine.for_each(CF_REGION_META, &start, &end, |_, v| {
            if let Ok(RegionLocalState { region: Some(r), .. }) = prost::Message::decode(v) {
                region_ids.push(r.id);
            }
            true
        })?;
        for id in region_ids {
            store.add_peer(id, false)?;
        }
        store.metrics.region_count.set(store.peers.len() as i64);
        Ok(store)
    }

    pub fn store_id(&self) -> u64 {
        self.store_id
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The meta state machine, when this store holds a meta peer.
    pub fn meta(&self) -> Option<SharedMeta> {
        self.meta.clone()
    }

    /// Loads this store's peer of `region_id` from the engine and starts routing
    /// to it; the meta group's peer gets the meta state machine.
    fn add_peer(&mut self, region_id: u64, campaign: bool) -> Result<()> {
        if self.peers.contains_key(&region_id) {
            return Ok(());
        }
        let storage = PeerStorage::load(self.engine.clone(), region_id)?;
        let meta = if region_id == META_REGION_ID {
            let state: SharedMeta = Arc::new(RwLock::new(MetaState::load(&self.engine)?));
            self.meta = Some(state.clone());
            Some(state)
        } else {
            None
        };
        let mut peer = Peer::new(self.store_id, storage, meta, &self.raft_cfg, &self.logger)?;
        if campaign {
            peer.campaign()?;
        }
        if region_id != META_REGION_ID {
            self.ranges.insert(peer.region().start_key.clone(), region_id);
        }
        self.peers.insert(region_id, peer);
        self.metrics.region_count.set(self.peers.len() as i64);
        Ok(())
    }

    /// Creates the peers of regions split off this round.
    fn finish_splits(&mut self, splits: Vec<SplitDone>) -> Result<()> {
        for split in splits {
            self.add_peer(split.right.id, split.campaign)?;
            // The right half's start now routes to it, even if the peer existed.
            self.ranges.insert(split.right.start_key.clone(), split.right.id);
            let (votes, rest): (VecDeque<_>, VecDeque<_>) =
                std::mem::take(&mut self.pending_votes).into_iter().partition(|m| m.region_id == split.right.id);
            self.pending_votes = rest;
            for m in votes {
                self.on_raft_message(m);
            }
        }
        Ok(())
    }

    /// The peer of the region whose range holds `key`.
    fn peer_for_key(&mut self, key: &[u8]) -> Result<&mut Peer> {
        let id = self
            .ranges
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
            .map(|(_, id)| *id)
            .ok_or_else(|| Error::RegionNotFound(key.to_vec()))?;
        let peer = self.peers.get_mut(&id).ok_or_else(|| Error::RegionNotFound(key.to_vec()))?;
        // A stale range entry (never expected) must not route a key elsewhere.
        let r = peer.region();
        if !keys::in_range(key, &r.start_key, &r.end_key) {
            return Err(Error::RegionNotFound(key.to_vec()));
        }
        Ok(peer)
    }

    /// Hands a Raft message from another store to the peer of its region.
    ///
    /// A region's first vote request (from a peer at the term a split's new
    /// region starts with) for a region this store does not hold is kept: the
    /// store that led the parent campaigns as soon as it applied the split, and
    /// this store has likely not applied it yet. Dropping the request would leave
    /// the new region without a leader for an election timeout.
    pub fn on_raft_message(&mut self, msg: RaftMessage) {
        let m = match Message::parse_from_bytes(&msg.message) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(from = msg.from_store_id, error = %e, "dropping undecodable raft message");
                return;
            }
        };
        let Some(peer) = self.peers.get_mut(&msg.region_id) else {
            let first_vote = matches!(m.get_msg_type(), MessageType::MsgRequestPreVote | MessageType::MsgRequestVote)
                && m.term == RAFT_INIT_LOG_TERM + 1;
            if first_vote {
                if self.pending_votes.len() >= MAX_PENDING_VOTES {
                    self.pending_votes.pop_front();
                }
                self.pending_votes.push_back(msg);
            } else {
                tracing::debug!(region = msg.region_id, from = msg.from_store_id, "message for a region this store does not hold");
            }
            return;
        };
        if let Err(e) = peer.step(m) {
            tracing::debug!(region = msg.region_id, error = %e, "raft refused a message");
        }
    }

    /// Proposes `mutations`, which must all fall in one region; `cb` is answered
    /// once they are applied, or at once with the reason they cannot be.
    pub fn propose_write(&mut self, mutations: Vec<Mutation>, cb: WriteCallback) {
        let Some(first) = mutations.first() else {
            let _ = cb.send(Err(Error::InvalidArgument("a write needs at least one mutation".into())));
            return;
        };
        let metrics = self.metrics.clone();
        let peer = match self.peer_for_key(&first.key.clone()) {
            Ok(p) => p,
            Err(e) => {
                metrics.raft_proposals.with_label_values(&["refused"]).inc();
                let _ = cb.send(Err(e));
                return;
            }
        };
        let region = peer.region();
        if let Some(m) = mutations.iter().find(|m| !keys::in_range(&m.key, &region.start_key, &region.end_key)) {
            let _ = cb.send(Err(Error::KeyNotInRegion { key: m.key.clone(), region_id: region.id }));
            return;
        }
        let cmd = RaftCmd { region_id: region.id, epoch: region.epoch, mutations, ..Default::default() };
        metrics.raft_proposals.with_label_values(&["proposed"]).inc();
        peer.propose(&cmd, cb);
    }

    /// Proposes splitting `region_id` at `split_key`, if the region still has
    /// `epoch` (a split check made on an older epoch is refused with
    /// `EpochNotMatch`); `cb` is answered once the split is applied.
    pub fn propose_split(&mut self, region_id: u64, epoch: RegionEpoch, split: SplitCmd, cb: WriteCallback) {
        let Some(peer) = self.peers.get_mut(&region_id).filter(|_| region_id != META_REGION_ID) else {
            let _ = cb.send(Err(Error::RegionNotFound(vec![])));
            return;
        };
        let region = peer.region();
        if region.epoch != Some(epoch) {
            let _ = cb.send(Err(Error::EpochNotMatch(
                format!("split planned under {epoch:?}, region has {:?}", region.epoch),
                vec![region.clone()],
            )));
            return;
        }
        let cmd = RaftCmd { region_id, epoch: Some(epoch), split: Some(split), ..Default::default() };
        peer.propose(&cmd, cb);
    }

    /// Proposes a command to the meta group; refused unless this store's meta
    /// peer leads.
    pub fn propose_meta(&mut self, cmd: MetaCmd, cb: WriteCallback) {
        let Some(peer) = self.peers.get_mut(&META_REGION_ID) else {
            let _ = cb.send(Err(Error::RegionNotFound(vec![])));
            return;
        };
        let cmd = RaftCmd { region_id: META_REGION_ID, epoch: peer.region().epoch, meta: Some(cmd), ..Default::default() };
        peer.propose(&cmd, cb);
    }

    /// Queues a linearizable read of a whole region, by id (the meta group's reads).
    pub fn read_region(&mut self, region_id: u64, cb: ReadCallback) {
        match self.peers.get_mut(&region_id) {
            Some(peer) => peer.read(cb),
            None => {
                let _ = cb.send(Err(Error::RegionNotFound(vec![])));
            }
        }
    }

    /// Moves leadership of `region_id` to its peer `to_peer`, if the region still
    /// has `epoch` and this store leads it; otherwise does nothing.
    pub fn transfer_leader(&mut self, region_id: u64, epoch: Option<RegionEpoch>, to_peer: u64) {
        if let Some(peer) = self.peers.get_mut(&region_id)
            && peer.region().epoch == epoch
            && peer.region().peers.iter().any(|p| p.id == to_peer && !p.is_learner)
        {
            tracing::info!(region = region_id, to_peer, "transferring leadership");
            peer.transfer_leader(to_peer);
        }
    }

    /// Every data region this store leads, with what was written since the last call.
    pub fn leader_reports(&mut self) -> Vec<LeaderReport> {
        self.peers
            .values_mut()
            .filter(|p| p.is_leader() && p.region_id() != META_REGION_ID)
            .map(|p| {
                let (written_bytes, written_keys) = p.take_written();
                LeaderReport { region: p.region().clone(), term: p.term(), written_bytes, written_keys }
            })
            .collect()
    }

    /// Queues a linearizable read of the region holding `key`.
    pub fn read(&mut self, key: &[u8], cb: ReadCallback) {
        match self.peer_for_key(key) {
            Ok(peer) => peer.read(cb),
            Err(e) => {
                let _ = cb.send(Err(e));
            }
        }
    }

    /// One tick of every peer's logical clock; refreshes the per-region gauges.
    pub fn tick(&mut self) {
        let mut leaders = 0;
        for peer in self.peers.values_mut() {
            peer.tick();
            let region = peer.region_id().to_string();
            let m = &self.metrics;
            m.region_commit_index.with_label_values(&[&region]).set(peer.commit_index() as i64);
            m.region_applied_index.with_label_values(&[&region]).set(peer.applied_index() as i64);
            m.region_term.with_label_values(&[&region]).set(peer.term() as i64);
            m.region_is_leader.with_label_values(&[&region]).set(peer.is_leader() as i64);
            leaders += peer.is_leader() as i64;
        }
        self.metrics.leader_count.set(leaders);
    }

    /// Makes this store's peer of `region_id` campaign (tests, or a first leader).
    pub fn campaign(&mut self, region_id: u64) -> Result<()> {
        self.peers.get_mut(&region_id).ok_or_else(|| Error::RegionNotFound(vec![]))?.campaign()
    }

    /// One round of the Ready loop for every peer that has a Ready, in raft-rs's
    /// documented order, with group commit: the new entries and hard states of all
    /// peers, and what their committed entries write, go to disk in one synced
    /// batch. Returns the Raft messages to send to other stores.
    pub fn handle_readies(&mut self) -> Result<Vec<RaftMessage>> {
        let engine = self.engine.clone();
        let mut out = Vec::new();
        let mut done = Completions::default();
        let mut wb = engine.batch();
        let mut readies = Vec::new();

        for (id, peer) in self.peers.iter_mut() {
            peer.flush_reads();
            if !peer.has_ready() {
                continue;
            }
            let mut rd = peer.ready();
            peer.send_messages(rd.take_messages(), &mut out); // 1. leader's messages go out before persisting
            peer.check_snapshot(&rd)?; // 2. snapshot
            peer.handle_soft_state_and_reads(&mut rd); // 3. role changes, read states
            peer.apply_committed(rd.take_committed_entries(), &mut wb, &mut done)?; // 4. committed entries
            peer.persist(&rd, &mut wb)?; // 5. entries and hard state
            readies.push((*id, rd));
        }
        if readies.is_empty() {
            return Ok(out);
        }
        self.metrics.ready_peers_per_round.observe(readies.len() as f64);
        let started = Instant::now();
        engine.write(wb, true)?; // one fsync for every peer of the round
        self.metrics.wal_sync_duration.observe(started.elapsed().as_secs_f64());

        let mut apply_wb = engine.batch();
        for (id, rd) in readies {
            let Some(peer) = self.peers.get_mut(&id) else { continue };
            let mut rd = rd;
            peer.send_messages(rd.take_persisted_messages(), &mut out); // 6. messages that needed the persist
            let light = peer.advance(rd); // 7. advance
            peer.handle_light_ready(light, &mut apply_wb, &mut out, &mut done)?; // 8. light ready
        }
        // Applies learned from the light ready need no sync: the entries are
        // durable in the log and are applied again after a crash.
        if !apply_wb.is_empty() {
            engine.write(apply_wb, false)?;
        }
        let splits = std::mem::take(&mut done.splits);
        let (applied, failed) = done.fire();
        self.metrics.raft_proposals.with_label_values(&["applied"]).inc_by(applied);
        self.metrics.raft_proposals.with_label_values(&["failed"]).inc_by(failed);
        for peer in self.peers.values_mut() {
            peer.finish_reads();
        }
        self.finish_splits(splits)?;
        Ok(out)
    }

    /// The state of every peer on this store.
    pub fn status(&self) -> Vec<PeerStatus> {
        self.peers
            .values()
            .map(|p| PeerStatus {
                region: p.region().clone(),
                peer_id: p.peer_id(),
                leader: p.leader(),
                term: p.term(),
                commit_index: p.commit_index(),
                applied_index: p.applied_index(),
                is_leader: p.is_leader(),
            })
            .collect()
    }

    /// Fails every waiting client request; the store is stopping.
    pub fn shutdown(&mut self) {
        for peer in self.peers.values_mut() {
            peer.fail_all("store is shutting down");
        }
    }
}
