//! The in-memory cluster harness shared by the Raft integration tests: real
//! `Store`s (real RocksDB in temp dirs, real raft-rs) wired by a network that the
//! test drives. No threads, no sleeps, no sockets: time is ticks, and the network
//! delivers, drops (seeded, so every run loses the same messages) or partitions
//! messages on command. Every test built on it is deterministic.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Arc;

use shoal_node::error::Error;
use shoal_node::metrics::Metrics;
use shoal_node::raftstore::bootstrap::{InitialMember, bootstrap_or_load};
use shoal_node::raftstore::logger::raft_logger;
use shoal_node::raftstore::peer::{CmdResult, RegionRead};
use shoal_node::raftstore::raft_config;
use shoal_node::raftstore::store::{PeerStatus, Store, StoreConfig};
use shoal_node::snap::SnapManager;
use shoal_node::storage::Engine;
use shoal_proto::{Mutation, RaftMessage, Region, SnapshotData, mutation};
use tokio::sync::oneshot;

pub const CFS: &[&str] = &["users"];

/// The answer to a proposed command.
pub type Answer = oneshot::Receiver<Result<CmdResult, Error>>;
/// The answer to a linearizable read: the region it may be served from, and
/// the engine snapshot to serve it from.
pub type ReadAnswer = oneshot::Receiver<Result<RegionRead, Error>>;

pub struct Cluster {
    pub dirs: Vec<tempfile::TempDir>,
    /// Index i holds store id i+1; `None` while that store is down.
    pub stores: Vec<Option<Store>>,
    /// Stores cut off from every other store.
    pub isolated: HashSet<u64>,
    /// Links cut between two stores, both ways (`Cluster::cut`).
    pub cut_links: HashSet<(u64, u64)>,
    /// Stores whose incoming messages the network holds back (in order) until
    /// [`Cluster::deliver_held`]: a store that is slow to take its mail. A
    /// snapshot's files arrive (and its sender hears so) but its message waits.
    pub held_for: HashSet<u64>,
    pub held: Vec<RaftMessage>,
    /// Heartbeats still reach the stores of `held_for` (so that they answer,
    /// and their leader sends what follows a snapshot).
    pub pass_heartbeats: bool,
    /// Stores that start holding their mail (join `held_for`) when a snapshot
    /// is sent to them: the snapshot and what follows it wait together.
    pub hold_from_snapshot: HashSet<u64>,
    /// Percentage of messages the network loses, decided by a seeded generator.
    pub loss_percent: u64,
    /// Percentage of messages delivered twice.
    pub dup_percent: u64,
    /// Percentage of messages held back for 1 to 4 rounds (so they overtake
    /// one another).
    pub delay_percent: u64,
    /// Delayed messages and the round they are due in.
    delayed: Vec<(u64, RaftMessage)>,
    rounds: u64,
    rng: u64,
    /// Stores started empty (joined), which bootstrap nothing on restart.
    pub empty: HashSet<u64>,
    pub cfg: StoreConfig,
    /// Snapshot messages delivered (their files copied) so far.
    pub snapshots_delivered: usize,
    /// The network loses every heartbeat that asks a region to sleep.
    pub lose_hibernate: bool,
    /// Raft messages sent so far, by region (store pings are region 0).
    pub raft_messages_sent: std::collections::BTreeMap<u64, u64>,
    /// Where the stores' directories go (default: the system's temp dir).
    dir_base: Option<std::path::PathBuf>,
}

fn is_heartbeat(m: &RaftMessage) -> bool {
    <raft::prelude::Message as protobuf::Message>::parse_from_bytes(&m.message)
        .is_ok_and(|m| m.get_msg_type() == raft::prelude::MessageType::MsgHeartbeat)
}

/// A new temp dir under `base` (or the system's temp dir).
fn temp_dir(base: &Option<std::path::PathBuf>) -> tempfile::TempDir {
    match base {
        Some(b) => tempfile::tempdir_in(b).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

pub fn members(n: usize) -> Vec<InitialMember> {
    (1..=n).map(|i| InitialMember { name: format!("s{i}"), addr: format!("mem:{i}") }).collect()
}

pub fn store_config() -> StoreConfig {
    StoreConfig::new(raft_config(10, 2))
}

pub fn open_store(dir: &std::path::Path, id: u64, n: usize) -> Store {
    open_store_with(dir, id, n, &store_config(), false)
}

/// Opens store `id`; a store of the initial `n` bootstraps, an `empty` one
/// (joined later) starts holding nothing.
pub fn open_store_with(dir: &std::path::Path, id: u64, n: usize, cfg: &StoreConfig, empty: bool) -> Store {
    let cfs: Vec<_> = CFS.iter().map(|c| c.parse().unwrap()).collect();
    // A crashed store's snapshot threads may still hold its engine for a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let engine = loop {
        match Engine::open(dir, &cfs) {
            Ok(e) => break Arc::new(e),
            Err(e) if e.to_string().contains("lock") && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("opening the engine: {e}"),
        }
    };
    if !empty {
        let ident = bootstrap_or_load(&engine, &format!("s{id}"), &members(n)).unwrap();
        assert_eq!(ident.store_id, id);
    }
    let metrics = Arc::new(Metrics::new().unwrap());
    let snap = SnapManager::open(&dir.join("snap"), engine.clone(), metrics.clone()).unwrap();
    Store::open(engine, id, cfg, snap, metrics, &raft_logger()).unwrap()
}

/// The store's peer of `region_id`, if it holds one.
pub fn try_status_of(store: &Store, region_id: u64) -> Option<PeerStatus> {
    store.status().into_iter().find(|p| p.region.id == region_id)
}

pub fn status_of(store: &Store, region_id: u64) -> PeerStatus {
    try_status_of(store, region_id).expect("store holds the region")
}

pub fn put(key: &str, value: &str) -> Vec<Mutation> {
    vec![Mutation { op: mutation::Op::Put as i32, cf: "users".into(), key: key.into(), value: value.into() }]
}

/// Asserts that a write was answered and applied.
pub fn ok(mut rx: Answer) {
    match rx.try_recv() {
        Ok(Ok(CmdResult::Written)) => {}
        other => panic!("write did not succeed: {other:?}"),
    }
}

impl Cluster {
    pub fn new(n: usize) -> Cluster {
        let dirs: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
        let stores = dirs.iter().enumerate().map(|(i, d)| Some(open_store(d.path(), i as u64 + 1, n))).collect();
        Cluster {
            dirs,
            stores,
            isolated: HashSet::new(),
            cut_links: HashSet::new(),
            held_for: HashSet::new(),
            held: Vec::new(),
            pass_heartbeats: false,
            hold_from_snapshot: HashSet::new(),
            loss_percent: 0,
            dup_percent: 0,
            delay_percent: 0,
            delayed: Vec::new(),
            rounds: 0,
            rng: 0x2545_f491_4f6c_dd1d,
            empty: HashSet::new(),
            cfg: store_config(),
            snapshots_delivered: 0,
            raft_messages_sent: Default::default(),
            lose_hibernate: false,
            dir_base: None,
        }
    }

    /// A cluster of `n` stores with their logs truncated past `gc_count_limit` entries.
    pub fn with_log_gc(n: usize, gc_count_limit: u64) -> Cluster {
        Cluster::with_log_gc_in(n, gc_count_limit, None)
    }

    /// As [`Cluster::with_log_gc`], with the stores' directories under `base`
    /// (the simulation puts them in /dev/shm: fsyncs cost nothing there).
    pub fn with_log_gc_in(n: usize, gc_count_limit: u64, base: Option<std::path::PathBuf>) -> Cluster {
        let mut cfg = store_config();
        cfg.log_gc_count_limit = gc_count_limit;
        let mut c = Cluster::new(0);
        c.cfg = cfg;
        c.dir_base = base;
        for i in 0..n {
            let dir = temp_dir(&c.dir_base);
            c.stores.push(Some(open_store_with(dir.path(), i as u64 + 1, n, &c.cfg, false)));
            c.dirs.push(dir);
        }
        c
    }

    /// Adds a store that holds nothing (as one started with `--join`); returns its id.
    pub fn add_empty_store(&mut self) -> u64 {
        let id = self.stores.len() as u64 + 1;
        let dir = temp_dir(&self.dir_base);
        self.stores.push(Some(open_store_with(dir.path(), id, 0, &self.cfg, true)));
        self.dirs.push(dir);
        self.empty.insert(id);
        id
    }

    pub fn store(&mut self, id: u64) -> &mut Store {
        self.stores[id as usize - 1].as_mut().expect("store is up")
    }

    /// Ids of the stores that are up.
    pub fn up(&self) -> Vec<u64> {
        self.stores.iter().flatten().map(|s| s.store_id()).collect()
    }

    /// One Ready round on every store that is up, then delivery of what it sent.
    /// Returns whether anything was sent.
    pub fn step(&mut self) -> bool {
        self.rounds += 1;
        let mut msgs: Vec<RaftMessage> = Vec::new();
        let mut snaps: Vec<RaftMessage> = Vec::new();
        for s in self.stores.iter_mut().flatten() {
            let out = s.handle_readies().unwrap();
            for m in &out {
                *self.raft_messages_sent.entry(m.region_id).or_default() += 1;
            }
            msgs.extend(out);
            snaps.extend(s.take_snapshot_messages());
        }
        for m in snaps {
            self.deliver_snapshot(m);
        }
        let rounds = self.rounds;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delayed).into_iter().partition(|(at, _)| *at <= rounds);
        self.delayed = later;
        if msgs.is_empty() && due.is_empty() {
            return !self.delayed.is_empty();
        }
        for m in due.into_iter().map(|(_, m)| m).chain(msgs) {
            if !self.linked(m.from_store_id, m.to_store_id) || self.lose() {
                continue;
            }
            if self.lose_hibernate && m.hibernate {
                continue;
            }
            if self.held_for.contains(&m.to_store_id) && !(self.pass_heartbeats && is_heartbeat(&m)) {
                self.held.push(m);
                continue;
            }
            if self.delay_percent > 0 && self.roll() < self.delay_percent {
                let at = rounds + 1 + self.roll() % 4;
                self.delayed.push((at, m));
                continue;
            }
            if self.dup_percent > 0 && self.roll() < self.dup_percent {
                self.deliver(m.clone());
            }
            self.deliver(m);
        }
        true
    }

    /// Cuts the link between stores `a` and `b`, both ways; each still
    /// reaches every other store.
    pub fn cut(&mut self, a: u64, b: u64) {
        self.cut_links.insert((a.min(b), a.max(b)));
    }

    /// Whether a message from store `from` reaches store `to`: neither is
    /// isolated and their link is not cut.
    fn linked(&self, from: u64, to: u64) -> bool {
        !self.isolated.contains(&from) && !self.isolated.contains(&to) && !self.cut_links.contains(&(from.min(to), from.max(to)))
    }

    /// Seeds the network's generator (losses, duplicates, delays).
    pub fn seed(&mut self, seed: u64) {
        self.rng = seed | 1;
    }

    /// A number in 0..100 from the network's generator.
    fn roll(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % 100
    }

    /// Copies a snapshot's files to its receiver (as the snapshot stream would),
    /// hands it the message, and tells the sender how it went.
    fn deliver_snapshot(&mut self, m: RaftMessage) {
        let (from, to) = (m.from_store_id, m.to_store_id);
        let raft_msg = <raft::prelude::Message as protobuf::Message>::parse_from_bytes(&m.message).unwrap();
        let data = <SnapshotData as prost::Message>::decode(raft_msg.get_snapshot().get_data()).unwrap();
        let reachable = self.linked(from, to) && self.stores[to as usize - 1].is_some();
        let ok = reachable && {
            let sender = self.stores[from as usize - 1].as_ref().unwrap().snap_manager().clone();
            let receiver = self.stores[to as usize - 1].as_ref().unwrap().snap_manager().clone();
            sender.transfer_local(&receiver, &data).is_ok()
        };
        if ok {
            self.snapshots_delivered += 1;
            if self.hold_from_snapshot.remove(&to) {
                self.held_for.insert(to);
            }
            if self.held_for.contains(&to) {
                self.held.push(m.clone());
            } else {
                self.deliver(m.clone());
            }
        }
        if let Some(Some(s)) = self.stores.get_mut(from as usize - 1) {
            s.report_snapshot(m.region_id, raft_msg.to, ok);
        }
    }

    fn deliver(&mut self, m: RaftMessage) {
        if let Some(Some(to)) = self.stores.get_mut(m.to_store_id as usize - 1) {
            to.on_raft_message(m);
        }
    }

    /// Stops holding messages back and hands every held one to its store, in the
    /// order sent, all before the stores' next Ready round.
    pub fn deliver_held(&mut self) {
        self.held_for.clear();
        for m in std::mem::take(&mut self.held) {
            self.deliver(m);
        }
    }

    /// Runs Ready rounds and delivers messages until the network is quiet.
    pub fn settle(&mut self) {
        for _ in 0..1000 {
            if !self.step() {
                return;
            }
        }
        panic!("network never went quiet");
    }

    /// Whether to lose the next message (xorshift, so every run loses the same ones).
    fn lose(&mut self) -> bool {
        self.loss_percent > 0 && self.roll() < self.loss_percent
    }

    pub fn tick(&mut self, times: usize) {
        for _ in 0..times {
            for s in self.stores.iter_mut().flatten() {
                s.tick().unwrap();
            }
            self.settle();
        }
    }

    /// Store ids whose peer of `region_id` believes it leads.
    pub fn leaders(&self, region_id: u64) -> Vec<u64> {
        self.stores.iter().flatten().filter(|s| try_status_of(s, region_id).is_some_and(|p| p.is_leader)).map(|s| s.store_id()).collect()
    }

    /// Ticks until exactly one store outside `isolated` leads `region_id`; returns it.
    pub fn wait_leader(&mut self, region_id: u64) -> u64 {
        for _ in 0..200 {
            self.tick(1);
            let leaders: Vec<u64> = self.leaders(region_id).into_iter().filter(|l| !self.isolated.contains(l)).collect();
            if leaders.len() == 1 {
                return leaders[0];
            }
        }
        panic!("no leader elected for region {region_id}");
    }

    /// Proposes `muts` on store `on` without running any round.
    pub fn propose(&mut self, on: u64, muts: Vec<Mutation>) -> Answer {
        let (tx, rx) = oneshot::channel();
        self.store(on).propose_write(muts, tx);
        rx
    }

    /// Proposes `muts` on store `on` and settles the network.
    pub fn write(&mut self, on: u64, muts: Vec<Mutation>) -> Answer {
        let rx = self.propose(on, muts);
        self.settle();
        rx
    }

    /// Queues a linearizable read of `key`'s region on store `on`, without running any round.
    pub fn read(&mut self, on: u64, key: &str) -> ReadAnswer {
        let (tx, rx) = oneshot::channel();
        self.store(on).read(key.as_bytes(), tx);
        rx
    }

    pub fn value(&mut self, on: u64, key: &str) -> Option<String> {
        self.store(on).engine().get("users", key.as_bytes()).unwrap().map(|v| String::from_utf8(v).unwrap())
    }

    pub fn applied(&mut self, on: u64, region_id: u64) -> u64 {
        status_of(self.store(on), region_id).applied_index
    }

    /// Store `on`'s descriptor of `region_id`, if it holds the region.
    pub fn region(&mut self, on: u64, region_id: u64) -> Option<Region> {
        try_status_of(self.store(on), region_id).map(|p| p.region)
    }

    pub fn crash(&mut self, id: u64) {
        self.stores[id as usize - 1] = None;
    }

    pub fn restart(&mut self, id: u64) {
        let n = self.stores.len() - self.empty.len();
        let empty = self.empty.contains(&id);
        self.stores[id as usize - 1] = Some(open_store_with(self.dirs[id as usize - 1].path(), id, n, &self.cfg, empty));
    }

    /// Ticks (one round at a time) until `done` holds, within a real-time
    /// deadline: snapshots are generated on a background thread.
    pub fn tick_until(&mut self, what: &str, mut done: impl FnMut(&mut Cluster) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !done(self) {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
            self.tick(1);
            std::thread::yield_now();
        }
    }
}

/// A membership change of `kind` for peer `id` on `store_id`.
pub fn change(kind: shoal_proto::PeerChangeType, id: u64, store_id: u64) -> shoal_proto::PeerChange {
    shoal_proto::PeerChange { change_type: kind as i32, peer: Some(shoal_proto::Peer { id, store_id, is_learner: false }) }
}

/// Proposes `changes` to the first data region on store `on`, under the epoch
/// that store has.
pub fn propose_change(c: &mut Cluster, on: u64, changes: Vec<shoal_proto::PeerChange>) -> Answer {
    let region_id = shoal_node::raftstore::bootstrap::FIRST_REGION_ID;
    let epoch = c.region(on, region_id).unwrap().epoch;
    let (tx, rx) = oneshot::channel();
    c.store(on).propose_conf_change(shoal_proto::ChangePeersCmd { region_id, epoch, changes }, tx);
    rx
}

/// The answer to a command, which must have come.
pub fn answer(mut rx: Answer) -> Result<CmdResult, Error> {
    rx.try_recv().expect("answered")
}

/// Writes `k00000`… = `v0`… for each number of `range` through `leader`.
pub fn write_keys(c: &mut Cluster, leader: u64, range: std::ops::Range<usize>) {
    for i in range {
        ok(c.write(leader, put(&format!("k{i:05}"), &format!("v{i}"))));
    }
}
