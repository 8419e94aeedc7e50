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
use shoal_node::raftstore::peer::CmdResult;
use shoal_node::raftstore::raft_config;
use shoal_node::raftstore::store::{PeerStatus, Store};
use shoal_node::storage::Engine;
use shoal_proto::{Mutation, RaftMessage, Region, mutation};
use tokio::sync::oneshot;

pub const CFS: &[&str] = &["users"];

/// The answer to a proposed command.
pub type Answer = oneshot::Receiver<Result<CmdResult, Error>>;
/// The answer to a linearizable read: the region it may be served from.
pub type ReadAnswer = oneshot::Receiver<Result<Region, Error>>;

pub struct Cluster {
    pub dirs: Vec<tempfile::TempDir>,
    /// Index i holds store id i+1; `None` while that store is down.
    pub stores: Vec<Option<Store>>,
    /// Stores cut off from every other store.
    pub isolated: HashSet<u64>,
    /// Stores whose incoming messages the network holds back (in order) until
    /// [`Cluster::deliver_held`]: a store that is slow to take its mail.
    pub held_for: HashSet<u64>,
    pub held: Vec<RaftMessage>,
    /// Percentage of messages the network loses, decided by a seeded generator.
    pub loss_percent: u64,
    rng: u64,
}

pub fn members(n: usize) -> Vec<InitialMember> {
    (1..=n).map(|i| InitialMember { name: format!("s{i}"), addr: format!("mem:{i}") }).collect()
}

pub fn open_store(dir: &std::path::Path, id: u64, n: usize) -> Store {
    let cfs: Vec<_> = CFS.iter().map(|c| c.parse().unwrap()).collect();
    let engine = Arc::new(Engine::open(dir, &cfs).unwrap());
    let ident = bootstrap_or_load(&engine, &format!("s{id}"), &members(n)).unwrap();
    assert_eq!(ident.store_id, id);
    Store::open(engine, id, &raft_config(10, 2), Arc::new(Metrics::new().unwrap()), &raft_logger()).unwrap()
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
            held_for: HashSet::new(),
            held: Vec::new(),
            loss_percent: 0,
            rng: 0x2545_f491_4f6c_dd1d,
        }
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
        let mut msgs: Vec<RaftMessage> = Vec::new();
        for s in self.stores.iter_mut().flatten() {
            msgs.extend(s.handle_readies().unwrap());
        }
        if msgs.is_empty() {
            return false;
        }
        for m in msgs {
            if self.isolated.contains(&m.from_store_id) || self.isolated.contains(&m.to_store_id) || self.lose() {
                continue;
            }
            if self.held_for.contains(&m.to_store_id) {
                self.held.push(m);
                continue;
            }
            self.deliver(m);
        }
        true
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
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % 100 < self.loss_percent
    }

    pub fn tick(&mut self, times: usize) {
        for _ in 0..times {
            for s in self.stores.iter_mut().flatten() {
                s.tick();
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
        let n = self.stores.len();
        self.stores[id as usize - 1] = Some(open_store(self.dirs[id as usize - 1].path(), id, n));
    }
}
