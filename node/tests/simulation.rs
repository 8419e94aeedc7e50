//! Randomized simulation of the multi-Raft store over the in-memory harness
//! of `common` (real `Store`s, real RocksDB in /dev/shm, real raft-rs; the
//! network, the clock and the faults are the test's).
//!
//! One seed gives one schedule: client writes and linearizable reads, ticks
//! and partial rounds, message loss, duplication and delay (so messages
//! overtake one another), partitions of one store, crashes with a restart
//! from the engine, log GC (a small limit, so snapshots are frequent) and
//! splits. After every action the invariants are checked:
//!
//! - at most one leader per region and term, over the whole run;
//! - on every store, the ranges of its initialized regions are disjoint;
//! - a write answered as failed is never seen, a read never returns a value
//!   older than the last write acknowledged before it was issued, nor nothing
//!   after one (writes with an unknown outcome may be seen at any time);
//!
//! and once every fault is healed and the cluster has settled:
//!
//! - the regions' leaders cover the key space with disjoint ranges, and every
//!   replica of a region has its leader's descriptor and the same data;
//! - every acknowledged write is there (or a later one).
//!
//! A failure names its seed. A seed whose cluster does not settle within a
//! minute after healing is reported, and fails the run past 2 % of the seeds
//! (about 0.1 % do under this much chaos: a liveness gap still open).
//!
//! The harness is deterministic but for the snapshot threads (generation,
//! apply), which run in real time: a seed
//! replays the same schedule of actions, not always the same interleaving.
//! CI runs 500 seeds (five tests of 100); `scripts/simulate.sh --seeds N`
//! runs more.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use common::*;
use shoal_node::error::Error;
use shoal_node::keys::in_range;
use shoal_node::meta::META_REGION_ID;
use shoal_node::raftstore::peer::CmdResult;
use shoal_proto::{RegionEpoch, SplitCmd};
use tokio::sync::oneshot;

const KEYS: usize = 8;
const ACTIONS: usize = 150;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fate {
    Pending,
    Acked,
    Failed,
    Unknown,
}

fn key(k: usize) -> String {
    format!("key{k}")
}

fn value(k: usize, seq: usize) -> String {
    format!("key{k}-{seq}")
}

/// The write sequence number a stored value carries.
fn seq_of(v: &[u8]) -> Option<usize> {
    std::str::from_utf8(v).ok()?.rsplit_once('-')?.1.parse().ok()
}

struct Sim {
    c: Cluster,
    rng: Rng,
    seed: u64,
    /// Per key, the fate of each write in the order they were proposed (one at a time).
    writes: Vec<Vec<Fate>>,
    pending_writes: Vec<(usize, usize, Answer)>,
    /// (key, last acknowledged write when issued, answer)
    pending_reads: Vec<(usize, Option<usize>, ReadAnswer)>,
    leaders: HashMap<(u64, u64), u64>,
    next_region_id: u64,
    down: Option<u64>,
    acked: usize,
}

impl Sim {
    fn fail(&self, what: String) -> String {
        format!("seed {}: {what}", self.seed)
    }

    /// The store that leads the region holding `key`, if one does (else any up store).
    fn leader_for(&mut self, key: &[u8]) -> u64 {
        let up = self.c.up();
        for s in &up {
            if self
                .c
                .store(*s)
                .status()
                .iter()
                .any(|p| p.is_leader && p.region.id != META_REGION_ID && in_range(key, &p.region.start_key, &p.region.end_key))
            {
                return *s;
            }
        }
        up[self.rng.below(up.len() as u64) as usize]
    }

    fn last_acked(&self, k: usize) -> Option<usize> {
        self.writes[k].iter().rposition(|f| *f == Fate::Acked)
    }

    fn act(&mut self) {
        match self.rng.below(100) {
            0..30 => {
                let k = self.rng.below(KEYS as u64) as usize;
                if self.pending_writes.iter().any(|(pk, _, _)| *pk == k) {
                    return;
                }
                let seq = self.writes[k].len();
                let on = self.leader_for(key(k).as_bytes());
                let rx = self.c.propose(on, put(&key(k), &value(k, seq)));
                self.writes[k].push(Fate::Pending);
                self.pending_writes.push((k, seq, rx));
            }
            30..45 => {
                let k = self.rng.below(KEYS as u64) as usize;
                let on = self.leader_for(key(k).as_bytes());
                let floor = self.last_acked(k);
                let rx = self.c.read(on, &key(k));
                self.pending_reads.push((k, floor, rx));
            }
            45..70 => self.c.tick(1),
            70..80 => {
                self.c.step();
            }
            80..84 => match self.down {
                None => {
                    let s = self.rng.below(3) + 1;
                    self.c.crash(s);
                    self.down = Some(s);
                }
                Some(s) => {
                    self.c.restart(s);
                    self.down = None;
                }
            },
            84..88 => {
                if self.c.isolated.is_empty() {
                    self.c.isolated.insert(self.rng.below(3) + 1);
                } else {
                    self.c.isolated.clear();
                }
            }
            88..92 => self.split(),
            92..96 => {
                self.c.loss_percent = self.rng.below(10);
                self.c.dup_percent = self.rng.below(10);
                self.c.delay_percent = self.rng.below(20);
            }
            _ => self.c.tick(3),
        }
    }

    /// Splits a region some store leads at the boundary of a random key.
    fn split(&mut self) {
        let k = 1 + self.rng.below(KEYS as u64 - 1) as usize;
        let at = key(k).into_bytes();
        let on = self.leader_for(&at);
        let Some(p) = self
            .c
            .store(on)
            .status()
            .into_iter()
            .find(|p| p.is_leader && p.region.id != META_REGION_ID && in_range(&at, &p.region.start_key, &p.region.end_key))
        else {
            return;
        };
        if p.region.start_key == at {
            return;
        }
        let id = self.next_region_id;
        self.next_region_id += 10;
        let cmd = SplitCmd { split_key: at, new_region_id: id, new_peer_ids: (1..=p.region.peers.len() as u64).map(|i| id + i).collect() };
        let (tx, _rx) = oneshot::channel();
        self.c.store(on).propose_split(p.region.id, p.region.epoch.unwrap_or(RegionEpoch::default()), cmd, tx);
    }

    /// Collects answers and checks what must hold after every action.
    fn check(&mut self) -> Result<(), String> {
        let mut still = Vec::new();
        for (k, seq, mut rx) in std::mem::take(&mut self.pending_writes) {
            let fate = match rx.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => {
                    still.push((k, seq, rx));
                    continue;
                }
                Err(oneshot::error::TryRecvError::Closed) => Fate::Unknown,
                Ok(Ok(CmdResult::Written)) => Fate::Acked,
                Ok(Ok(other)) => return Err(self.fail(format!("a write answered {other:?}"))),
                Ok(Err(Error::OutcomeUnknown(_))) => Fate::Unknown,
                Ok(Err(_)) => Fate::Failed,
            };
            if fate == Fate::Acked {
                self.acked += 1;
            }
            self.writes[k][seq] = fate;
        }
        self.pending_writes = still;

        let mut still = Vec::new();
        for (k, floor, mut rx) in std::mem::take(&mut self.pending_reads) {
            match rx.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => still.push((k, floor, rx)),
                Ok(Ok(read)) => {
                    let got = read.snapshot.get("users", key(k).as_bytes()).unwrap();
                    self.check_value(k, floor, got.as_deref(), "a linearizable read")?;
                }
                _ => {}
            }
        }
        self.pending_reads = still;

        for s in self.c.up() {
            let mut ranges = Vec::new();
            for p in self.c.store(s).status() {
                if p.is_leader
                    && let Some(other) = self.leaders.insert((p.region.id, p.term), s)
                    && other != s
                {
                    return Err(self.fail(format!("region {} has two leaders in term {}: stores {other} and {s}", p.region.id, p.term)));
                }
                if p.region.id != META_REGION_ID && p.region.epoch.is_some() {
                    ranges.push((p.region.start_key.clone(), p.region.end_key.clone(), p.region.id));
                }
            }
            ranges.sort();
            for w in ranges.windows(2) {
                if w[0].1.is_empty() || w[0].1 > w[1].0 {
                    return Err(self.fail(format!("store {s}: regions {} and {} overlap: {ranges:?}", w[0].2, w[1].2)));
                }
            }
        }
        Ok(())
    }

    /// `got` for key `k` must not be a failed write's, nor older than `floor`
    /// (unless its write's outcome is unknown), nor missing after `floor`.
    fn check_value(&self, k: usize, floor: Option<usize>, got: Option<&[u8]>, what: &str) -> Result<(), String> {
        let seen = match got {
            None if floor.is_some() => {
                return Err(self.fail(format!("{what} of {} found nothing after write {floor:?} was acknowledged", key(k))));
            }
            None => return Ok(()),
            Some(v) => seq_of(v).ok_or_else(|| self.fail(format!("{what} of {} returned {v:?}", key(k))))?,
        };
        match self.writes[k].get(seen) {
            None => Err(self.fail(format!("{what} of {} returned write {seen}, never proposed", key(k)))),
            Some(Fate::Failed) => Err(self.fail(format!("{what} of {} returned write {seen}, answered as not applied", key(k)))),
            Some(Fate::Unknown) => Ok(()),
            Some(_) if floor.is_some_and(|f| seen < f) => {
                Err(self.fail(format!("{what} of {} returned write {seen}, older than acknowledged write {floor:?}", key(k))))
            }
            Some(_) => Ok(()),
        }
    }

    /// Heals every fault, lets the cluster settle, and checks the end state.
    fn finish(&mut self) -> Result<(), String> {
        if let Some(s) = self.down.take() {
            self.c.restart(s);
        }
        self.c.isolated.clear();
        self.c.loss_percent = 0;
        self.c.dup_percent = 0;
        self.c.delay_percent = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            self.c.tick(1);
            self.check()?;
            let settled = self.converged();
            if self.pending_reads.is_empty() && settled.is_ok() {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(self.fail(format!(
                    "never settled: {} reads unanswered; {}",
                    self.pending_reads.len(),
                    settled.err().unwrap_or_default()
                )));
            }
            std::thread::yield_now();
        }
        // A write still unanswered is one whose leader was deposed before its
        // index was applied: the gRPC layer would answer it OutcomeUnknown
        // when its deadline passed.
        for (k, seq, _) in std::mem::take(&mut self.pending_writes) {
            self.writes[k][seq] = Fate::Unknown;
        }
        // The leaders' regions cover the key space, disjoint.
        let mut led = self.led_regions();
        led.sort_by(|a, b| a.1.start_key.cmp(&b.1.start_key));
        let mut at: Vec<u8> = vec![];
        for (_, r) in &led {
            if r.start_key != at {
                return Err(self.fail(format!("the leaders' regions do not cover the key space: {led:?}")));
            }
            at = r.end_key.clone();
            if at.is_empty() {
                break;
            }
        }
        if !at.is_empty() || led.last().is_some_and(|(_, r)| !r.end_key.is_empty()) {
            return Err(self.fail(format!("the key space is not covered to its end: {led:?}")));
        }
        // Every replica agrees with its leader; every acknowledged write is there.
        for (leader, region) in &led {
            let rows = |c: &mut Cluster, s: u64| c.store(s).engine().scan("users", &region.start_key, &region.end_key, 1000).unwrap();
            let expected = rows(&mut self.c, *leader);
            for s in self.c.up() {
                let Some(p) = try_status_of(self.c.store(s), region.id) else { continue };
                if p.region.epoch.is_none() || !region.peers.iter().any(|q| q.store_id == s) {
                    continue;
                }
                if p.region != *region {
                    return Err(self.fail(format!("store {s} has region {:?}, its leader {:?}", p.region, region)));
                }
                if rows(&mut self.c, s) != expected {
                    return Err(self.fail(format!("store {s}'s copy of region {} differs from its leader's", region.id)));
                }
            }
        }
        for k in 0..KEYS {
            let on = self.leader_for(key(k).as_bytes());
            let got = self.c.value(on, &key(k));
            self.check_value(k, self.last_acked(k), got.as_deref().map(str::as_bytes), "the final state")?;
        }
        Ok(())
    }

    fn led_regions(&mut self) -> Vec<(u64, shoal_proto::Region)> {
        let mut out = Vec::new();
        for s in self.c.up() {
            for p in self.c.store(s).status() {
                if p.is_leader && p.region.id != META_REGION_ID {
                    out.push((s, p.region));
                }
            }
        }
        out
    }

    /// One leader per region, the leaders' regions covering the key space,
    /// and every member caught up with its leader; or what is not yet so.
    fn converged(&mut self) -> Result<(), String> {
        let mut led = self.led_regions();
        led.sort_by(|a, b| a.1.start_key.cmp(&b.1.start_key));
        let brief: Vec<String> = led
            .iter()
            .map(|(s, r)| format!("{}@{s}[{}..{})", r.id, String::from_utf8_lossy(&r.start_key), String::from_utf8_lossy(&r.end_key)))
            .collect();
        let mut at: Vec<u8> = vec![];
        for (i, (_, r)) in led.iter().enumerate() {
            if r.start_key != at || (r.end_key.is_empty() && i + 1 != led.len()) {
                return Err(format!("leaders do not cover the key space once: {brief:?}"));
            }
            at = r.end_key.clone();
        }
        if led.is_empty() || !at.is_empty() {
            return Err(format!("leaders do not reach the end of the key space: {brief:?}"));
        }
        for (leader, region) in &led {
            let applied = status_of(self.c.store(*leader), region.id).applied_index;
            for p in &region.peers {
                match try_status_of(self.c.store(p.store_id), region.id) {
                    Some(s) if s.applied_index == applied && s.region == *region => {}
                    Some(s) => {
                        let held: Vec<String> = self
                            .c
                            .store(p.store_id)
                            .status()
                            .iter()
                            .map(|q| {
                                let r = &q.region;
                                format!(
                                    "{}[{}..{}) v{:?} applied {}",
                                    r.id,
                                    String::from_utf8_lossy(&r.start_key),
                                    String::from_utf8_lossy(&r.end_key),
                                    r.epoch.map(|e| e.version),
                                    q.applied_index
                                )
                            })
                            .collect();
                        let progress = self.c.store(*leader).progress_summary(region.id).unwrap_or_default();
                        let lagging = self.c.store(p.store_id).progress_summary(region.id).unwrap_or_default();
                        return Err(format!(
                            "region {} on store {}: applied {} of {applied}, descriptor {:?} (leader's {:?}); leader: {progress}; lagging: {lagging}; leaders {brief:?}; store {} holds {held:?}",
                            region.id, p.store_id, s.applied_index, s.region.epoch, region.epoch, p.store_id
                        ));
                    }
                    None => return Err(format!("region {} has no peer on store {}; leaders {brief:?}", region.id, p.store_id)),
                }
            }
        }
        Ok(())
    }
}

fn shm() -> Option<std::path::PathBuf> {
    let p = std::path::PathBuf::from("/dev/shm");
    p.is_dir().then_some(p)
}

/// Runs one seed; `Err` says what broke, with the seed.
fn simulate(seed: u64) -> Result<usize, String> {
    let mut c = Cluster::with_log_gc_in(3, 30, shm());
    c.seed(seed);
    let mut sim = Sim {
        c,
        rng: Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
        seed,
        writes: vec![Vec::new(); KEYS],
        pending_writes: Vec::new(),
        pending_reads: Vec::new(),
        leaders: HashMap::new(),
        next_region_id: 1000,
        down: None,
        acked: 0,
    };
    sim.c.wait_leader(shoal_node::raftstore::bootstrap::FIRST_REGION_ID);
    for _ in 0..ACTIONS {
        sim.act();
        sim.check()?;
    }
    sim.finish()?;
    Ok(sim.acked)
}

/// With `SHOAL_SIM_LOG` set (a `tracing` filter such as `debug`), each
/// seed's log is kept in memory and written to `/tmp/shoal-sim-SEED.log` only
/// if the seed fails or does not settle.
mod seed_log {
    use std::io::Write;
    use std::sync::{Mutex, Once};

    static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

    struct Buffer;

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            LOG.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    pub fn enabled() -> bool {
        std::env::var_os("SHOAL_SIM_LOG").is_some()
    }

    /// Starts a seed's log (installing the subscriber the first time).
    pub fn start() {
        static INIT: Once = Once::new();
        INIT.call_once(|| {
            let filter = tracing_subscriber::EnvFilter::new(std::env::var("SHOAL_SIM_LOG").unwrap_or_default());
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(|| Buffer).try_init();
        });
        LOG.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Writes the seed's log out; returns where.
    pub fn keep(seed: u64) -> String {
        let path = format!("/tmp/shoal-sim-{seed}.log");
        let log = LOG.lock().unwrap_or_else(|p| p.into_inner());
        match std::fs::write(&path, &*log) {
            Ok(()) => path,
            Err(e) => format!("(log not written: {e})"),
        }
    }
}

/// Runs `seeds`: any safety violation fails the test; seeds whose cluster did
/// not settle within a minute after healing (a liveness gap, see
/// docs/RELIABILITY.md) are printed, and fail it past 2 %.
fn run_seeds(seeds: std::ops::Range<u64>) {
    let mut acked = 0;
    let (mut failures, mut unsettled) = (Vec::new(), Vec::new());
    let logging = seed_log::enabled();
    for seed in seeds.clone() {
        if logging {
            seed_log::start();
        }
        let mut outcome = match std::panic::catch_unwind(|| simulate(seed)) {
            Ok(Ok(n)) => {
                acked += n;
                continue;
            }
            Ok(Err(e)) => e,
            Err(p) => format!("seed {seed}: panicked: {}", p.downcast_ref::<String>().cloned().unwrap_or_default()),
        };
        if logging {
            outcome += &format!(" (log: {})", seed_log::keep(seed));
        }
        if outcome.contains("never settled") { unsettled.push(outcome) } else { failures.push(outcome) }
    }
    let total = seeds.end - seeds.start;
    println!("seeds {seeds:?}: {} failed, {} unsettled, {acked} writes acknowledged", failures.len(), unsettled.len());
    for u in &unsettled {
        println!("{u}");
    }
    assert!(failures.is_empty(), "{} of {total} seeds failed:\n{}", failures.len(), failures.join("\n"));
    assert!(unsettled.len() as u64 * 50 <= total, "{} of {total} seeds never settled:\n{}", unsettled.len(), unsettled.join("\n"));
    assert!(acked > 0, "no write was ever acknowledged");
}

#[test]
fn seeds_0000_0099() {
    run_seeds(0..100);
}

#[test]
fn seeds_0100_0199() {
    run_seeds(100..200);
}

#[test]
fn seeds_0200_0299() {
    run_seeds(200..300);
}

#[test]
fn seeds_0300_0399() {
    run_seeds(300..400);
}

#[test]
fn seeds_0400_0499() {
    run_seeds(400..500);
}

/// `scripts/simulate.sh --seeds N [--first S]`: seeds S..S+N.
#[test]
#[ignore = "run by scripts/simulate.sh"]
fn seeds_from_env() {
    let var = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let first = var("SHOAL_SIM_FIRST", 10_000);
    run_seeds(first..first + var("SHOAL_SIM_SEEDS", 1_000));
}
