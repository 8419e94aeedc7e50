//! [`Store`]: every region peer on this store, and the Ready round that drives them.
//!
//! The store is a plain state machine with no threads or sockets: the store loop
//! ([`super::store_loop`]) — or a test — feeds it Raft messages, client requests and
//! ticks, then calls [`Store::run_round`], which hands it the Raft messages to
//! send (a leader's before the round's write, the rest after). Messages are
//! routed to peers by region id; client requests by key, over
//! the data regions' ranges (the meta group has none: it is reached by id).
//!
//! A split is applied by the parent's peer ([`Peer`]); once the round's batches
//! are written, the store creates its peer of the new region and routes the right
//! half's keys to it. The store that led the parent makes its new peer campaign at
//! once; a store that has not applied the split yet when that first vote request
//! arrives keeps it ([`Store::on_raft_message`]) and hands it to its new peer
//! once it has one, so the election does not wait for a timeout.
//!
//! Membership: a message from a region's leader (append, heartbeat, snapshot)
//! for a region this store does not hold creates an *uninitialized* peer, which
//! answers so that the leader sends it a snapshot. A snapshot is stepped only
//! if its files arrived and its range overlaps no other region here, nor a
//! snapshot stepped earlier in the same drain (a store that has not applied a
//! split yet refuses the new half's snapshot until it has). A peer removed from its region — by a change it applied, or by meta's
//! order for a peer that missed its removal — is destroyed: its data, log and
//! state are deleted and a tombstone keeps late messages from recreating it.
//! A leader's message to a newer peer id of a region than the one this store
//! holds also destroys the old one: it was removed, and the region is back.
//!
//! Idle regions cost nothing: a round visits only the peers handed something
//! since the last one (the ready set), and a tick only the awake ones; an idle
//! region hibernates (see the `hibernate` module of [`super::peer`]) and
//! [`StoreLiveness`] wakes it if a store it has a peer on falls silent.
//!
//! Log GC runs every [`GC_INTERVAL_TICKS`] ticks over the awake peers
//! ([`Peer::maybe_compact_log`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use prometheus::IntGauge;
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use shoal_proto::{
    BackupFenceCmd, ChangePeersCmd, MetaCmd, Mutation, PeerState, RaftCmd, RaftMessage, Region, RegionEpoch, RegionLocalState, SplitCmd,
};
use tokio::sync::Notify;

use super::liveness::StoreLiveness;
use super::peer::{Completions, Peer, ReadCallback, RegionRead, SnapshotDone, SplitDone, WriteCallback};
use super::peer_storage::{PeerStorage, RAFT_INIT_LOG_TERM};
use super::snap_applier::SnapApplier;
use crate::error::{Error, Result};
use crate::keys;
use crate::meta::state::MetaState;
use crate::meta::{META_REGION_ID, SharedMeta};
use crate::metrics::Metrics;
use crate::snap::{self, SnapManager};
use crate::storage::Engine;
use crate::storage::cf::{CF_RAFT_LOG, CF_RAFT_STATE, CF_REGION_META};

/// First vote requests kept for regions this store does not hold yet; the oldest
/// are dropped past this many.
const MAX_PENDING_VOTES: usize = 256;
/// Ticks between two log GC passes over the awake peers.
pub const GC_INTERVAL_TICKS: u64 = 10;
/// Ticks between two recomputations of the neighbouring stores (besides
/// those after peers came or went).
const NEIGHBOURS_TICKS: u64 = 100;

/// One region's series of the per-region gauges, looked up once (labelling
/// them costs a string and a hash per series; an asleep region's are set as it
/// falls asleep, a thousand times a second under writes spread thin).
struct RegionGauges {
    commit_index: IntGauge,
    applied_index: IntGauge,
    term: IntGauge,
    is_leader: IntGauge,
}

impl RegionGauges {
    fn new(m: &Metrics, region_id: u64) -> RegionGauges {
        let region = region_id.to_string();
        RegionGauges {
            commit_index: m.region_commit_index.with_label_values(&[&region]),
            applied_index: m.region_applied_index.with_label_values(&[&region]),
            term: m.region_term.with_label_values(&[&region]),
            is_leader: m.region_is_leader.with_label_values(&[&region]),
        }
    }

    /// Sets them to what `peer` knows now.
    fn refresh(&self, peer: &Peer) {
        self.commit_index.set(peer.commit_index() as i64);
        self.applied_index.set(peer.applied_index() as i64);
        self.term.set(peer.term() as i64);
        self.is_leader.set(peer.is_leader() as i64);
    }
}

/// Sets the per-region gauges of `peer` to what it knows now.
fn refresh_gauges(gauges: &mut HashMap<u64, RegionGauges>, m: &Metrics, peer: &Peer) {
    gauges.entry(peer.region_id()).or_insert_with(|| RegionGauges::new(m, peer.region_id())).refresh(peer);
}

/// Drops the per-region series of a region whose peer left this store (a
/// stale `shoal_region_is_leader` of 1 would hide a region without a leader).
fn forget_gauges(gauges: &mut HashMap<u64, RegionGauges>, m: &Metrics, region_id: u64) {
    gauges.remove(&region_id);
    let region = region_id.to_string();
    for g in [&m.region_commit_index, &m.region_applied_index, &m.region_term, &m.region_is_leader] {
        let _ = g.remove_label_values(&[&region]);
    }
}

/// Settings of a store's Raft core.
#[derive(Clone)]
pub struct StoreConfig {
    pub raft: raft::Config,
    /// A region's log is truncated once it holds more entries than this…
    pub log_gc_count_limit: u64,
    /// …or more bytes than this.
    pub log_gc_size_limit: u64,
    /// A follower that hears from no leader for this many ticks is reported to
    /// meta as idle (perhaps removed while away).
    pub idle_ticks: u64,
}

impl StoreConfig {
    pub fn new(raft: raft::Config) -> StoreConfig {
        let idle_ticks = raft.election_tick as u64 * 10;
        StoreConfig { raft, log_gc_count_limit: 10_000, log_gc_size_limit: 64 << 20, idle_ticks }
    }
}

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
    /// Asleep: the region was idle and this peer stopped ticking.
    pub hibernated: bool,
}

/// What a region's leader tells meta about the region by heartbeat.
#[derive(Clone, Debug)]
pub struct LeaderReport {
    pub region: Region,
    pub term: u64,
    /// Bytes and keys written since the previous report.
    pub written_bytes: u64,
    pub written_keys: u64,
    /// Peers not caught up (see [`Peer::pending_peers`]).
    pub pending_peers: Vec<u64>,
}

pub struct Store {
    store_id: u64,
    engine: Arc<Engine>,
    /// Region id → this store's peer of it.
    peers: BTreeMap<u64, Peer>,
    /// Regions whose peer was handed something since the last round: the
    /// round visits only these (idle regions cost nothing).
    touched: BTreeSet<u64>,
    /// Regions whose peer here is not asleep: the ones ticked.
    awake: BTreeSet<u64>,
    /// Regions whose peer here leads.
    leading: BTreeSet<u64>,
    /// Which neighbouring stores are alive, for the hibernated regions.
    liveness: StoreLiveness,
    /// Peers came or went since the neighbours were last computed.
    neighbours_dirty: bool,
    /// This tick's store pings, sent with the next round's first messages.
    pings: Vec<RaftMessage>,
    /// Region start key → region id, to find the region serving a key.
    ranges: BTreeMap<Vec<u8>, u64>,
    /// The meta state machine: empty until this store holds a meta peer.
    meta: SharedMeta,
    snap: Arc<SnapManager>,
    /// Applies received snapshots' data off the store thread.
    applier: SnapApplier,
    /// Ranges of the snapshots stepped since the last round: their peers are
    /// not initialized until the round, and a second snapshot stepped in the
    /// same drain must not overlap them either.
    stepped_snapshots: HashMap<u64, Region>,
    /// Snapshot messages of the last rounds, for the snapshot sender.
    snap_out: Vec<RaftMessage>,
    /// Region id → the last peer id this store destroyed of it: messages to that
    /// peer (or older ones) never recreate it.
    tombstones: HashMap<u64, u64>,
    ticks: u64,
    /// First vote requests of regions this store does not hold: most likely the
    /// new half of a split this store has not applied yet. Handed to the region's
    /// peer when a split creates it.
    pending_votes: VecDeque<RaftMessage>,
    cfg: StoreConfig,
    logger: slog::Logger,
    metrics: Arc<Metrics>,
    /// Wakes the heartbeat task early: a peer reported pending caught up.
    heartbeat_wanted: Arc<Notify>,
    /// Each region's per-region gauges.
    gauges: HashMap<u64, RegionGauges>,
}

impl Store {
    /// Loads every region peer this store holds from the engine.
    pub fn open(
        engine: Arc<Engine>,
        store_id: u64,
        cfg: &StoreConfig,
        snap: Arc<SnapManager>,
        metrics: Arc<Metrics>,
        logger: &slog::Logger,
    ) -> Result<Store> {
        let mut store = Store {
            store_id,
            engine: engine.clone(),
            peers: BTreeMap::new(),
            touched: BTreeSet::new(),
            awake: BTreeSet::new(),
            leading: BTreeSet::new(),
            neighbours_dirty: true,
            liveness: StoreLiveness::new(store_id, cfg.raft.election_tick as u64),
            pings: Vec::new(),
            ranges: BTreeMap::new(),
            meta: Arc::new(RwLock::new(MetaState::default())),
            applier: SnapApplier::start(snap.clone(), store_id),
            stepped_snapshots: HashMap::new(),
            snap,
            snap_out: Vec::new(),
            tombstones: HashMap::new(),
            ticks: 0,
            pending_votes: VecDeque::new(),
            cfg: cfg.clone(),
            logger: logger.clone(),
            metrics,
            heartbeat_wanted: Arc::new(Notify::new()),
            gauges: HashMap::new(),
        };
        let (start, end) = keys::region_state_range();
        let mut region_ids = Vec::new();
        let mut tombstones = Vec::new();
        engine.for_each(CF_REGION_META, &start, &end, |_, v| {
            if let Ok(state @ RegionLocalState { region: Some(_), .. }) = <RegionLocalState as prost::Message>::decode(v) {
                let r = state.region.as_ref().map_or(0, |r| r.id);
                if state.state() == PeerState::TombstonePeer {
                    let mine = state.region.iter().flat_map(|r| &r.peers).filter(|p| p.store_id == store_id).map(|p| p.id).max();
                    tombstones.push((r, mine.unwrap_or(0)));
                } else {
                    region_ids.push(r);
                }
            }
            true
        })?;
        store.tombstones.extend(tombstones);
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

    pub fn snap_manager(&self) -> &Arc<SnapManager> {
        &self.snap
    }

    /// Notified when placement should hear from this store before the next
    /// heartbeat is due: a peer it reported pending (a learner being seeded, a
    /// follower being caught up) has caught up.
    pub fn heartbeat_wanted(&self) -> Arc<Notify> {
        self.heartbeat_wanted.clone()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The meta state machine (empty while this store holds no meta peer).
    pub fn meta(&self) -> SharedMeta {
        self.meta.clone()
    }

    /// Snapshot messages produced since the last call, for the snapshot sender.
    pub fn take_snapshot_messages(&mut self) -> Vec<RaftMessage> {
        std::mem::take(&mut self.snap_out)
    }

    /// Re-reads the meta state machine from the engine (the meta peer appeared,
    /// or was seeded by a snapshot).
    fn reload_meta(&mut self) -> Result<()> {
        let state = MetaState::load(&self.engine)?;
        *self.meta.write().unwrap_or_else(|p| p.into_inner()) = state;
        Ok(())
    }

    /// Loads this store's peer of `region_id` from the engine and starts routing
    /// to it (replacing an uninitialized peer of it); the meta group's peer gets
    /// the meta state machine.
    fn add_peer(&mut self, region_id: u64, campaign: bool) -> Result<()> {
        if self.peers.get(&region_id).is_some_and(|p| p.is_initialized()) {
            return Ok(());
        }
        let storage = PeerStorage::load(self.engine.clone(), self.snap.clone(), region_id)?;
        if !storage.region().peers.iter().any(|p| p.store_id == self.store_id) {
            // Its removal was applied but the store stopped before destroying it.
            let region = storage.region().clone();
            tracing::info!(region = region_id, "this store has no peer in the region any more; destroying what is left of it");
            return self.clear_peer(&region, 0, true);
        }
        let meta = if region_id == META_REGION_ID {
            self.reload_meta()?;
            Some(self.meta.clone())
        } else {
            None
        };
        let mut peer = Peer::new(self.store_id, 0, storage, meta, &self.cfg.raft, &self.logger)?;
        if campaign {
            peer.campaign()?;
        }
        if region_id != META_REGION_ID {
            self.ranges.insert(peer.region().start_key.clone(), region_id);
        }
        peer.set_clock(self.ticks, |_| false);
        self.peers.insert(region_id, peer);
        self.peer_added(region_id);
        self.metrics.region_count.set(self.peers.len() as i64);
        Ok(())
    }

    /// Creates an uninitialized peer `peer_id` of `region_id`, which waits for
    /// its leader's snapshot.
    fn create_uninitialized(&mut self, region_id: u64, peer_id: u64) -> Result<()> {
        let storage = PeerStorage::uninitialized(self.engine.clone(), self.snap.clone(), region_id)?;
        let meta = (region_id == META_REGION_ID).then(|| self.meta.clone());
        let mut peer = Peer::new(self.store_id, peer_id, storage, meta, &self.cfg.raft, &self.logger)?;
        tracing::info!(region = region_id, peer = peer_id, "created an uninitialized peer; waiting for a snapshot");
        peer.set_clock(self.ticks, |_| false);
        self.peers.insert(region_id, peer);
        self.peer_added(region_id);
        self.metrics.region_count.set(self.peers.len() as i64);
        Ok(())
    }

    /// Routes the range of regions seeded by snapshot this round to their
    /// peers, and hands the data of those not applied yet to the applier (the
    /// round that recorded them `APPLYING` is written).
    fn finish_snapshots(&mut self, snapshots: Vec<SnapshotDone>) -> Result<()> {
        for s in snapshots {
            if s.applied {
                if let Some(key) = &s.data.key {
                    self.snap.release_received(key);
                }
            } else {
                self.applier.submit(s.region_id, s.data.clone())?;
            }
            if s.region_id == META_REGION_ID {
                // Its state machine was reloaded when the snapshot was applied.
                continue;
            }
            if let Some(old) = s.old_start_key
                && self.ranges.get(&old) == Some(&s.region_id)
            {
                self.ranges.remove(&old);
            }
            if let Some(r) = s.data.region {
                self.ranges.insert(r.start_key, r.id);
            }
        }
        Ok(())
    }

    /// Destroys this store's peer `peer_id` of `region_id`: it was removed from
    /// the region. Its data, log and state are deleted; a tombstone stays so that
    /// late messages do not recreate it. Does nothing if the store's peer of the
    /// region is another (newer) one.
    pub fn destroy_peer(&mut self, region_id: u64, peer_id: u64) -> Result<()> {
        if self.peers.get(&region_id).is_none_or(|p| p.peer_id() != peer_id) {
            return Ok(());
        }
        let Some(mut peer) = self.peers.remove(&region_id) else { return Ok(()) };
        self.peer_removed(region_id);
        if peer.is_applying() {
            // Its data must not be deleted under the applier's feet.
            self.applier.wait_for(region_id)?;
        }
        peer.fail_all("the region's peer on this store was removed");
        let region = peer.region().clone();
        self.clear_peer(&region, peer_id, peer.is_initialized())?;
        self.metrics.region_count.set(self.peers.len() as i64);
        tracing::info!(region = region_id, peer = peer_id, "destroyed a peer removed from its region");
        Ok(())
    }

    /// Deletes the data, log and state of this store's peer `peer_id` (0: not
    /// known) of `region`, leaves a tombstone, and stops routing to it.
    fn clear_peer(&mut self, region: &Region, peer_id: u64, initialized: bool) -> Result<()> {
        let region_id = region.id;
        let mut wb = self.engine.batch();
        if initialized {
            for (cf, start, end) in snap::data_ranges(&self.engine, region) {
                wb.delete_range_unbounded(&cf, &start, &end)?;
            }
        }
        wb.delete_range(CF_RAFT_LOG, &keys::raft_log_key(region_id, 0), &keys::raft_log_key(region_id, u64::MAX))?;
        wb.delete(CF_RAFT_STATE, &keys::raft_state_key(region_id))?;
        wb.delete(CF_REGION_META, &keys::apply_state_key(region_id))?;
        let mut tombstone_region = region.clone();
        if peer_id != 0 && !tombstone_region.peers.iter().any(|p| p.id == peer_id) {
            tombstone_region.peers.push(shoal_proto::Peer { id: peer_id, store_id: self.store_id, is_learner: true });
        }
        let state = RegionLocalState { region: Some(tombstone_region), state: PeerState::TombstonePeer as i32, ..Default::default() };
        wb.put(CF_REGION_META, &keys::region_state_key(region_id), &prost::Message::encode_to_vec(&state))?;
        self.engine.write(wb, true)?;
        if self.ranges.get(&region.start_key) == Some(&region_id) {
            self.ranges.remove(&region.start_key);
        }
        if region_id == META_REGION_ID {
            *self.meta.write().unwrap_or_else(|p| p.into_inner()) = MetaState::default();
        }
        let dead = self.tombstones.entry(region_id).or_insert(0);
        *dead = (*dead).max(peer_id);
        Ok(())
    }

    /// The region a snapshot message carries, if it may be stepped: its files
    /// are here and its range overlaps no other region this store serves nor
    /// a snapshot stepped earlier in this drain.
    fn acceptable_snapshot(&self, region_id: u64, m: &Message) -> Option<Region> {
        let data = match <shoal_proto::SnapshotData as prost::Message>::decode(m.get_snapshot().get_data()) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(region = region_id, error = %e, "dropping a snapshot with undecodable data");
                return None;
            }
        };
        let Some(region) = data.region.as_ref().filter(|r| r.id == region_id) else {
            tracing::warn!(region = region_id, "dropping a snapshot of another region");
            return None;
        };
        if !self.snap.has_received(&data) {
            tracing::warn!(region = region_id, "dropping a snapshot whose files have not arrived");
            return None;
        }
        if region_id == META_REGION_ID {
            return Some(region.clone());
        }
        let overlap = self.peers.values().find(|p| {
            p.region_id() != region_id
                && p.region_id() != META_REGION_ID
                && p.is_initialized()
                && keys::ranges_overlap(&p.region().start_key, &p.region().end_key, &region.start_key, &region.end_key)
        });
        let overlap = overlap.map(|p| p.region_id()).or_else(|| {
            self.stepped_snapshots
                .values()
                .find(|r| r.id != region_id && keys::ranges_overlap(&r.start_key, &r.end_key, &region.start_key, &region.end_key))
                .map(|r| r.id)
        });
        if let Some(other) = overlap {
            tracing::info!(
                region = region_id,
                overlaps = other,
                "refusing a snapshot that overlaps a region here (a split not applied yet?)"
            );
            return None;
        }
        Some(region.clone())
    }

    /// Creates the peers of regions split off this round.
    fn finish_splits(&mut self, splits: Vec<SplitDone>) -> Result<()> {
        for split in splits {
            if let Some(dead) = self.tombstones.get(&split.right.id) {
                // This store's peer of the new region was created (by its
                // leader's messages, before this store applied the split),
                // then removed from it: the right half is not served here.
                tracing::info!(region = split.right.id, dead, "not creating the right half of a split: its peer here was removed");
                continue;
            }
            if self.peers.get(&split.right.id).is_some_and(|p| !p.is_initialized()) {
                // Its uninitialized peer persisted its own raft state this round,
                // over the split's initial one.
                PeerStorage::merge_split_raft_state(&self.engine, split.right.id)?;
            }
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

    /// A peer was just added: it starts awake, in the next round.
    fn peer_added(&mut self, region_id: u64) {
        self.touched.insert(region_id);
        self.awake.insert(region_id);
        self.neighbours_dirty = true;
    }

    fn peer_removed(&mut self, region_id: u64) {
        self.touched.remove(&region_id);
        self.awake.remove(&region_id);
        self.leading.remove(&region_id);
        self.neighbours_dirty = true;
        forget_gauges(&mut self.gauges, &self.metrics, region_id);
    }

    /// This store's peer of `region_id`, about to be handed something: it joins
    /// the next round, with its clock set to the store's.
    fn peer_mut(&mut self, region_id: u64) -> Option<&mut Peer> {
        let peer = self.peers.get_mut(&region_id)?;
        let (liveness, now) = (&self.liveness, self.ticks);
        peer.set_clock(now, |store| liveness.is_alive(store, now));
        self.touched.insert(region_id);
        Some(peer)
    }

    /// The peer of the region whose range holds `key`.
    fn peer_for_key(&mut self, key: &[u8]) -> Result<&mut Peer> {
        let id = self
            .ranges
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
            .map(|(_, id)| *id)
            .ok_or_else(|| Error::RegionNotFound(key.to_vec()))?;
        let peer = self.peer_mut(id).ok_or_else(|| Error::RegionNotFound(key.to_vec()))?;
        if peer.is_applying() {
            return Err(Error::Unavailable(format!("region {id} is applying a snapshot on this store")));
        }
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
    ///
    /// A message from a leader for a region this store does not hold creates an
    /// uninitialized peer (unless that peer was destroyed here). Uninitialized
    /// peers never vote: they hold no log, and a vote cast before a split
    /// creates the real peer could be cast twice.
    pub fn on_raft_message(&mut self, msg: RaftMessage) {
        self.liveness.heard(msg.from_store_id, self.ticks);
        if StoreLiveness::is_ping(&msg) {
            self.liveness.pinged(&msg);
            return;
        }
        let m = match Message::parse_from_bytes(&msg.message) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(from = msg.from_store_id, error = %e, "dropping undecodable raft message");
                return;
            }
        };
        let region_id = msg.region_id;
        if m.get_msg_type() == MessageType::MsgTimeoutNow && self.liveness.is_leaving(self.store_id) {
            tracing::info!(region = region_id, from = msg.from_store_id, "a stopping store takes no leadership; refusing a transfer");
            return;
        }
        let is_vote = matches!(m.get_msg_type(), MessageType::MsgRequestPreVote | MessageType::MsgRequestVote);
        let from_leader = matches!(m.get_msg_type(), MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot);
        // A leader addressing a newer peer id of this region here means this
        // store's peer was removed and the region came back under a new id (a
        // store holds one peer per region): the old one is stale, destroy it.
        if from_leader && let Some(stale) = self.peers.get(&region_id).map(|p| p.peer_id()).filter(|id| *id < m.to) {
            tracing::info!(region = region_id, stale, new = m.to, "a newer peer of the region is addressed here; destroying the stale one");
            if let Err(e) = self.destroy_peer(region_id, stale) {
                tracing::error!(region = region_id, error = %e, "cannot destroy a stale peer");
                return;
            }
        }
        let initialized = self.peers.get(&region_id).map(|p| p.is_initialized());
        if initialized != Some(true) && is_vote {
            if m.term == RAFT_INIT_LOG_TERM + 1 {
                if self.pending_votes.len() >= MAX_PENDING_VOTES {
                    self.pending_votes.pop_front();
                }
                self.pending_votes.push_back(msg);
            }
            return;
        }
        if initialized.is_none() {
            let tombstoned = self.tombstones.get(&region_id).is_some_and(|dead| m.to <= *dead);
            if !from_leader || tombstoned || m.to == 0 {
                tracing::debug!(region = region_id, from = msg.from_store_id, "message for a region this store does not hold");
                return;
            }
            if let Err(e) = self.create_uninitialized(region_id, m.to) {
                tracing::error!(region = region_id, error = %e, "cannot create a peer");
                return;
            }
        }
        let stepped = if m.get_msg_type() == MessageType::MsgSnapshot {
            match self.acceptable_snapshot(region_id, &m) {
                Some(region) => Some(region),
                None => return,
            }
        } else {
            None
        };
        let Some(peer) = self.peer_mut(region_id) else { return };
        if m.to != peer.peer_id() {
            tracing::debug!(region = region_id, to = m.to, mine = peer.peer_id(), "message for another peer of the region");
            return;
        }
        match peer.step(m, msg.from_store_id, msg.hibernate) {
            Ok(()) => {
                // The meta group's range is the whole key space, kept apart.
                if let Some(r) = stepped.filter(|_| region_id != META_REGION_ID) {
                    self.stepped_snapshots.insert(region_id, r);
                }
            }
            Err(e) => tracing::debug!(region = region_id, error = %e, "raft refused a message"),
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
        // Applying it would refuse it too; this only saves the log entry.
        if let Some(refusal) = peer.refusal_while_fenced().filter(|_| peer.is_leader()) {
            metrics.raft_proposals.with_label_values(&["refused"]).inc();
            let _ = cb.send(Err(refusal));
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
        let Some(peer) = self.peer_mut(region_id).filter(|_| region_id != META_REGION_ID) else {
            let _ = cb.send(Err(Error::RegionNotFound(vec![])));
            return;
        };
        if peer.in_joint() {
            let _ = cb.send(Err(Error::Unavailable(format!(
                "region {region_id}: a membership change is in progress; split it once the change completes"
            ))));
            return;
        }
        if let Some(refusal) = peer.refusal_while_fenced() {
            let _ = cb.send(Err(refusal));
            return;
        }
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

    /// Proposes setting or lifting a backup fence on data region `region_id`
    /// ([`super::peer`]'s `fence` module); `cb` is answered once it is applied.
    pub fn propose_backup_fence(&mut self, region_id: u64, fence: BackupFenceCmd, cb: WriteCallback) {
        let Some(peer) = self.peer_mut(region_id).filter(|_| region_id != META_REGION_ID) else {
            let _ = cb.send(Err(Error::RegionNotFound(vec![])));
            return;
        };
        let region = peer.region();
        let cmd = RaftCmd { region_id, epoch: region.epoch, backup_fence: Some(fence), ..Default::default() };
        peer.propose(&cmd, cb);
    }

    /// Proposes a command to the meta group; refused unless this store's meta
    /// peer leads.
    pub fn propose_meta(&mut self, cmd: MetaCmd, cb: WriteCallback) {
        let Some(peer) = self.peer_mut(META_REGION_ID) else {
            let _ = cb.send(Err(Error::RegionNotFound(vec![])));
            return;
        };
        let cmd = RaftCmd { region_id: META_REGION_ID, epoch: peer.region().epoch, meta: Some(cmd), ..Default::default() };
        peer.propose(&cmd, cb);
    }

    /// Proposes the membership change `cmd` to its region; `cb` is answered once
    /// it is applied, or at once with the reason it is refused.
    pub fn propose_conf_change(&mut self, cmd: ChangePeersCmd, cb: WriteCallback) {
        match self.peer_mut(cmd.region_id) {
            Some(peer) => peer.propose_conf_change(cmd, cb),
            None => {
                let _ = cb.send(Err(Error::RegionNotFound(vec![])));
            }
        }
    }

    /// A snapshot of `region_id` was generated: its leader sends it to the
    /// followers waiting for one now, not at their next heartbeat answer.
    pub fn snapshot_generated(&mut self, region_id: u64) {
        if let Some(peer) = self.peer_mut(region_id) {
            peer.send_waiting_snapshots();
        }
    }

    /// Tells the region's peer how sending a snapshot to `to_peer` ended.
    pub fn report_snapshot(&mut self, region_id: u64, to_peer: u64, ok: bool) {
        if let Some(peer) = self.peer_mut(region_id) {
            peer.report_snapshot(to_peer, ok);
        }
    }

    /// Initialized peers that heard from no leader for a while: meta decides
    /// whether they were removed while away. Uninitialized idle peers hold
    /// nothing and are dropped from memory only: no tombstone, so that their
    /// leader's next message creates them again (a learner may wait a long time
    /// for its snapshot); what they persisted (a vote) stays.
    pub fn idle_peers(&mut self) -> Vec<(Region, u64)> {
        let idle_ticks = self.cfg.idle_ticks;
        let (idle, empty): (Vec<_>, Vec<_>) = self
            .peers
            .values()
            .filter(|p| p.is_idle(idle_ticks))
            .map(|p| (p.region().clone(), p.peer_id(), p.is_initialized()))
            .partition(|p| p.2);
        for (region, peer_id, _) in empty {
            if let Some(mut peer) = self.peers.remove(&region.id) {
                self.peer_removed(region.id);
                peer.fail_all("an idle uninitialized peer was dropped");
                tracing::info!(region = region.id, peer = peer_id, "dropped an idle uninitialized peer");
            }
        }
        self.metrics.region_count.set(self.peers.len() as i64);
        idle.into_iter().map(|(r, id, _)| (r, id)).collect()
    }

    /// Queues a linearizable read of a whole region, by id (the meta group's reads).
    pub fn read_region(&mut self, region_id: u64, cb: ReadCallback) {
        match self.peer_mut(region_id) {
            Some(peer) => peer.read(cb),
            None => {
                let _ = cb.send(Err(Error::RegionNotFound(vec![])));
            }
        }
    }

    /// This store is stopping: it takes no leadership from now on, and tells
    /// its neighbours, which offer it none. They hear it at once: the pings go
    /// with the next round's first messages, not at the next tick.
    pub fn set_leaving(&mut self) {
        tracing::info!("stopping: taking no leadership from now on");
        self.liveness.set_leaving();
        self.pings = self.liveness.pings();
    }

    /// The neighbouring stores that cannot take a region's leadership:
    /// stopping (their pings said so), or silent for an election timeout.
    pub fn unavailable_stores(&self) -> BTreeSet<u64> {
        self.liveness.unavailable(self.ticks)
    }

    /// Moves leadership of `region_id` to its peer `to_peer`, if the region still
    /// has `epoch`, this store leads it, and `to_peer`'s store can lead (not
    /// stopping, not silent: meta may order a transfer to a store that died
    /// since its last heartbeat); otherwise does nothing.
    pub fn transfer_leader(&mut self, region_id: u64, epoch: Option<RegionEpoch>, to_peer: u64) {
        let target = self.peers.get(&region_id).and_then(|p| p.region().peers.iter().find(|p| p.id == to_peer && !p.is_learner));
        let Some(store) = target.map(|t| t.store_id) else { return };
        if !self.liveness.can_lead(store, self.ticks) {
            tracing::info!(region = region_id, to_peer, store, "not transferring leadership to a store that is stopping or silent");
            return;
        }
        if let Some(peer) = self.peer_mut(region_id)
            && peer.region().epoch == epoch
        {
            tracing::info!(region = region_id, to_peer, "transferring leadership");
            peer.transfer_leader(to_peer);
        }
    }

    /// Every region this store leads (the meta group included), with what was
    /// written since the last call.
    pub fn leader_reports(&mut self) -> Vec<LeaderReport> {
        self.peers
            .values_mut()
            .filter(|p| p.is_leader())
            .map(|p| {
                let (written_bytes, written_keys) = p.take_written();
                let pending_peers = p.report_pending_peers();
                LeaderReport { region: p.region().clone(), term: p.term(), written_bytes, written_keys, pending_peers }
            })
            .collect()
    }

    /// The region this store serves `key` from (a seeded peer of it) and the
    /// engine as of now, for stale reads.
    pub fn local_region(&mut self, key: &[u8]) -> Result<RegionRead> {
        self.peer_for_key(key).map(|p| p.local_read())
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

    /// One tick of the store's clock: every awake peer ticks (and joins the
    /// next round), asleep ones stand still; neighbours are pinged, and the
    /// asleep peers that a store falling silent concerns are woken
    /// (`Store::wake_peers_with_store`). Every [`GC_INTERVAL_TICKS`], the awake peers truncate logs that
    /// grew past the limits and refresh their region's gauges; the neighbours
    /// are recomputed when peers came or went, a membership change or a
    /// snapshot was applied, and every [`NEIGHBOURS_TICKS`].
    pub fn tick(&mut self) -> Result<()> {
        self.ticks += 1;
        let now = self.ticks;
        if std::mem::take(&mut self.neighbours_dirty) || now.is_multiple_of(NEIGHBOURS_TICKS) {
            let neighbours = self.peers.values().flat_map(|p| p.region().peers.iter().map(|m| m.store_id)).collect();
            self.liveness.set_neighbours(neighbours, now);
        }
        self.pings = self.liveness.pings();
        for silent in self.liveness.newly_silent(now) {
            self.wake_peers_with_store(silent);
        }
        let liveness = &self.liveness;
        for id in &self.awake {
            if let Some(peer) = self.peers.get_mut(id) {
                peer.tick(now, |store| liveness.is_alive(store, now));
                self.touched.insert(*id);
            }
        }
        if now.is_multiple_of(GC_INTERVAL_TICKS) {
            self.gc_and_gauges()?;
        }
        Ok(())
    }

    /// Log GC and gauges, over the awake peers: an asleep one changes
    /// nothing (its gauges were refreshed as it fell asleep; a log that grew
    /// past the limits just before is truncated once the region wakes).
    fn gc_and_gauges(&mut self) -> Result<()> {
        let engine = self.engine.clone();
        let mut wb = engine.batch();
        let (count, size) = (self.cfg.log_gc_count_limit, self.cfg.log_gc_size_limit);
        let mut compacted = 0;
        let m = &self.metrics;
        for id in &self.awake {
            let Some(peer) = self.peers.get_mut(id) else { continue };
            compacted += peer.maybe_compact_log(count, size, &mut wb)? as u64;
            refresh_gauges(&mut self.gauges, m, peer);
        }
        if compacted > 0 {
            // Only applied entries go: losing this batch in a crash loses nothing.
            engine.write(wb, false)?;
            self.metrics.raft_log_gc.inc_by(compacted);
        }
        m.leader_count.set(self.leading.len() as i64);
        m.meta_leader.set(self.leading.contains(&META_REGION_ID) as i64);
        let me = self.store_id;
        let learners = self.peers.values().filter(|p| p.region().peers.iter().any(|x| x.store_id == me && x.is_learner)).count();
        m.learner_count.set(learners as i64);
        m.asleep_regions.set((self.peers.len() - self.awake.len()) as i64);
        Ok(())
    }

    /// Wakes this store's asleep peers that `store` falling silent concerns
    /// ([`Peer::wakes_for_silent_store`]): leaders of regions with a peer
    /// there, and followers whose leader was there (they must elect another).
    fn wake_peers_with_store(&mut self, store: u64) {
        let sleeping: Vec<u64> =
            self.peers.iter().filter(|(_, p)| !p.is_awake() && p.wakes_for_silent_store(store)).map(|(id, _)| *id).collect();
        for id in &sleeping {
            if let Some(peer) = self.peer_mut(*id) {
                peer.wake();
            }
            self.awake.insert(*id);
        }
        tracing::info!(
            silent_store = store,
            woken = sleeping.len(),
            "a neighbouring store fell silent; woke the leaders with a peer there and the followers whose leader was there"
        );
    }

    /// Counts the writes a round answered, by outcome.
    fn count_answered(&self, (applied, failed): (u64, u64)) {
        self.metrics.raft_proposals.with_label_values(&["applied"]).inc_by(applied);
        self.metrics.raft_proposals.with_label_values(&["failed"]).inc_by(failed);
    }

    /// Makes this store's peer of `region_id` campaign (tests, or a first leader).
    pub fn campaign(&mut self, region_id: u64) -> Result<()> {
        self.peer_mut(region_id).ok_or_else(|| Error::RegionNotFound(vec![]))?.campaign()
    }

    /// One round of the Ready loop (see [`Self::run_round`]), returning every
    /// message to send, those a leader may send before persisting first. For
    /// tests and the simulation, which deliver messages between rounds.
    pub fn handle_readies(&mut self) -> Result<Vec<RaftMessage>> {
        let mut early = Vec::new();
        let out = self.run_round(&mut |msgs| early.extend(msgs))?;
        early.extend(out);
        Ok(early)
    }

    /// One round of the Ready loop for every peer of the ready set that has a
    /// Ready, in raft-rs's documented order, with group commit: the new entries
    /// and hard states of all peers go to disk in one batch. What a leader's
    /// committed entries write goes in a batch written just before it,
    /// unsynced, and their writers are answered then: those entries are on
    /// this store's disk already, and need not wait for this round's fsync.
    /// A follower's committed entries are applied after that write, once its
    /// answers to the leader (the persisted messages) have been handed to
    /// `send_now`: nobody waits on a follower's apply, and the leader waits on
    /// those answers to commit.
    ///
    /// The messages a leader may send before persisting (appends, heartbeats)
    /// are handed to `send_now` before that batch is written, so a follower
    /// writes an entry while its leader does (Raft thesis §10.2.1): commit
    /// waits for the slower of the two fsyncs, not for both in a row. The
    /// batch is synced only when it holds what Raft needs durable before the
    /// round's other messages go out (new entries, a term or vote, a snapshot);
    /// a round that only learns a commit index and applies entries is written
    /// without a sync — its entries are durable in a quorum's logs and are
    /// applied again after a crash. Returns the messages to send once written.
    pub fn run_round(&mut self, send_now: &mut dyn FnMut(Vec<RaftMessage>)) -> Result<Vec<RaftMessage>> {
        let round_started = Instant::now();
        // Time spent applying committed entries this round (steps 4 and 8).
        let mut apply_time = Duration::ZERO;
        let engine = self.engine.clone();
        let mut out = Vec::new();
        let mut done = Completions::default();
        let mut wb = engine.batch();
        // What the Readies' committed entries write (see below).
        let mut applied_wb = engine.batch();
        let mut applied_done = Completions::default();
        // Each peer's Ready, with a follower's committed entries to apply
        // after the round's write (step 4).
        let mut readies = Vec::new();
        let mut snaps = std::mem::take(&mut self.snap_out);
        // Whether the batch must be synced (see above). A finished snapshot
        // must be: its received files are released once the batch is written.
        let mut sync = false;

        // Store pings leave with the first messages (see [`StoreLiveness`]).
        let mut early = std::mem::take(&mut self.pings);

        // Snapshots whose data the applier has put in place: their peers go on.
        // Their entries that waited are applied into `wb`: what they commit
        // this round must follow them there (see below).
        let mut finished = BTreeSet::new();
        for (region_id, result) in self.applier.finished() {
            result?; // the engine failed: this store cannot go on
            if let Some(peer) = self.peer_mut(region_id) {
                sync |= peer.is_applying();
                peer.finish_snapshot(&mut wb, &mut done)?;
                finished.insert(region_id);
            }
        }
        // Only the peers handed something since the last round (the ready set).
        let round: Vec<u64> = std::mem::take(&mut self.touched).into_iter().collect();
        for id in &round {
            let Some(peer) = self.peers.get_mut(id) else { continue };
            peer.flush_reads();
            if !peer.has_ready() {
                continue;
            }
            let mut rd = peer.ready();
            if !rd.snapshot().is_empty() && peer.is_applying() {
                // A newer snapshot while the last one's data is still going in
                // (rare): that one finishes first.
                self.applier.wait_for(*id)?;
                peer.finish_snapshot(&mut wb, &mut done)?;
                finished.insert(*id);
                sync = true;
            }
            peer.send_messages(rd.take_messages(), &mut early, &mut snaps); // 1. a leader's messages, sent before persisting
            sync |= !rd.snapshot().is_empty();
            peer.apply_snapshot(&rd, &mut wb, &mut done)?; // 2. snapshot
            if rd.ss().is_some_and(|ss| ss.raft_state == raft::StateRole::Candidate) {
                self.metrics.elections.inc();
            }
            peer.handle_soft_state_and_reads(&mut rd); // 3. role changes, read states
            let mut deferred = None;
            if rd.snapshot().is_empty() && !finished.contains(id) {
                if peer.is_leader() {
                    let applying = Instant::now();
                    peer.apply_committed(rd.take_committed_entries(), &mut applied_wb, &mut applied_done)?; // 4. committed entries
                    apply_time += applying.elapsed();
                } else {
                    // A follower has no writer waiting: its entries are applied
                    // after the round's write and once its answers to the
                    // leader are on their way, off the path of the next commit.
                    deferred = Some(rd.take_committed_entries());
                }
            } else {
                // After a snapshot (or the entries that waited for one) in
                // `wb`: in the same batch, which they must follow.
                peer.apply_committed(rd.take_committed_entries(), &mut wb, &mut done)?;
            }
            sync |= peer.persist(&rd, &mut wb)?; // 5. entries and hard state
            readies.push((*id, rd, deferred));
        }
        if !early.is_empty() {
            send_now(early);
        }
        // Committed entries are in this store's log already (raft-rs hands out
        // only persisted ones): their effects need not wait for this round's
        // fsync. Written first, unsynced (re-applied from the log after a
        // crash), and their writers answered now.
        let mut applied_any = !applied_wb.is_empty();
        if applied_any {
            let writing = Instant::now();
            engine.write(applied_wb, false)?;
            apply_time += writing.elapsed();
        }
        self.count_answered(applied_done.answer());
        done.absorb(applied_done);
        // New stores to ping and watch, or old ones to stop watching.
        self.neighbours_dirty |= std::mem::take(&mut done.membership_changed);
        if readies.is_empty() && wb.is_empty() {
            self.snap_out = snaps;
            self.stepped_snapshots.clear();
            self.count_answered(done.fire());
            self.finish_round(&round);
            if applied_any {
                self.metrics.apply_duration.observe(apply_time.as_secs_f64());
            }
            return Ok(out);
        }
        self.metrics.ready_peers_per_round.observe(readies.len() as f64);
        let started = Instant::now();
        if !wb.is_empty() {
            engine.write(wb, sync)?; // at most one fsync for every peer of the round
        }
        if sync {
            self.metrics.wal_sync_duration.observe(started.elapsed().as_secs_f64());
        }

        // 6. messages that needed the persist (a follower's answers), sent now.
        let mut persisted = Vec::new();
        for (id, rd, _) in &mut readies {
            if let Some(peer) = self.peers.get_mut(id) {
                peer.send_messages(rd.take_persisted_messages(), &mut persisted, &mut snaps);
            }
        }
        if !persisted.is_empty() {
            send_now(persisted);
        }
        let mut apply_wb = engine.batch();
        let applying = Instant::now();
        for (id, rd, deferred) in readies {
            let Some(peer) = self.peers.get_mut(&id) else { continue };
            if let Some(entries) = deferred {
                peer.apply_committed(entries, &mut apply_wb, &mut done)?; // 4, for a follower
            }
            let light = peer.advance(rd); // 7. advance
            peer.handle_light_ready(light, &mut apply_wb, &mut out, &mut snaps, &mut done)?; // 8. light ready
        }
        // Applies learned from the light ready need no sync: the entries are
        // durable in the log and are applied again after a crash.
        if !apply_wb.is_empty() {
            engine.write(apply_wb, false)?;
            applied_any = true;
        }
        apply_time += applying.elapsed();
        if applied_any {
            self.metrics.apply_duration.observe(apply_time.as_secs_f64());
        }
        self.snap_out = snaps;
        let splits = std::mem::take(&mut done.splits);
        let snapshots = std::mem::take(&mut done.snapshots);
        let destroys = std::mem::take(&mut done.destroys);
        // So do a follower's (applied after the write), and a snapshot, which
        // brings its region's descriptor.
        self.neighbours_dirty |= done.membership_changed || !snapshots.is_empty();
        for key in std::mem::take(&mut done.released) {
            self.snap.release_received(&key);
        }
        self.count_answered(done.fire());
        self.finish_round(&round);
        self.finish_snapshots(snapshots)?;
        self.stepped_snapshots.clear();
        self.finish_splits(splits)?;
        for (region_id, peer_id) in destroys {
            self.destroy_peer(region_id, peer_id)?;
        }
        self.metrics.round_duration.observe(round_started.elapsed().as_secs_f64());
        Ok(out)
    }

    /// After a round, for the peers it visited: reads whose index is applied
    /// are answered, a peer that still has a Ready stays in the ready set, and
    /// the awake and leading sets follow what the round changed.
    fn finish_round(&mut self, round: &[u64]) {
        for id in round {
            if let Some(peer) = self.peers.get_mut(id) {
                peer.finish_reads();
                if peer.has_ready() {
                    self.touched.insert(*id);
                }
                // A peer changes role or falls asleep only when handed something.
                // Its gauges are refreshed then too (and every GC interval
                // while awake), so that an asleep region's stay true.
                let fell_asleep = if peer.is_asleep() {
                    self.awake.remove(id)
                } else {
                    self.awake.insert(*id);
                    false
                };
                let role_changed = if peer.is_leader() { self.leading.insert(*id) } else { self.leading.remove(id) };
                if fell_asleep || role_changed {
                    refresh_gauges(&mut self.gauges, &self.metrics, peer);
                }
                if role_changed && peer.is_leader() {
                    self.metrics.leader_changes.inc();
                }
                if peer.caught_up_since_report() {
                    self.heartbeat_wanted.notify_one();
                }
            }
        }
    }

    /// This store's peer of `region_id` and, if it leads, its view of the
    /// followers (see [`Peer::progress_summary`]); `None` without the region.
    pub fn progress_summary(&self, region_id: u64) -> Option<String> {
        self.peers.get(&region_id).map(Peer::progress_summary)
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
                hibernated: p.is_asleep(),
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
