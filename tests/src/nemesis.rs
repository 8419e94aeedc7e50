//! A nemesis over real processes: faults injected into a running [`Cluster`]
//! while clients record histories that are judged afterwards.
//!
//! Two workloads run side by side. Registers: `clients` tasks, each with its
//! own client, pick one of `keys` keys at random and either write a value no
//! other write uses (`client-counter`) or read the key linearizably. Each
//! operation is recorded with its call and return times; a write that failed
//! in any way is kept with an unknown outcome (it may have been applied), a
//! read that failed is dropped (it observed nothing). The linearizability
//! checker ([`crate::linearizability`]) judges them. A bank ([`crate::bank`]):
//! one writer moves money between accounts by batch writes inside one region,
//! two readers scan the whole bank; every scan must total the opening sum and
//! match what was written for the version it saw, never older than a transfer
//! acknowledged before it.
//!
//! The faults ([`Fault`]), one at a time, each on a node chosen at random and
//! healed before the next: `kill` (SIGKILL, then a restart on the same data),
//! `pause` (SIGSTOP, then SIGCONT — a process that stops answering without
//! closing its connections, like a long GC pause or a frozen VM), `partition`
//! (the node cut off from the other nodes, not from the clients: blackhole
//! routes between network namespaces, [`crate::netns`]) and `slow-disk` (every
//! synced write of the node — its Raft log fsyncs — waits 300 ms first, through
//! the node's `/failpoints/slow-sync`). Never more than one node is faulty, so
//! the cluster keeps its quorum and must keep serving; the run fails if
//! nothing was acknowledged.
//!
//! At the end every fault is healed, each key and the bank are read once
//! more, and the report says how many operations ran, how many faults were
//! injected, how many acknowledged writes are missing from the final state
//! (`lost`: register keys older than their last acknowledged write, or a bank
//! older than its last acknowledged transfer), and how many keys' histories
//! are not linearizable plus how many bank scans broke a rule (`violations`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shoal_client::{Client, ClientOptions};

use crate::linearizability::{self, Op, Operation, Violation};
use crate::rng::Rng;
use crate::{Cluster, bank};

/// One kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Kill,
    Pause,
    /// Needs a cluster from [`Cluster::start_partitionable`].
    Partition,
    /// Needs nodes started with `--enable-failpoints`.
    SlowDisk,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Partition => "partition",
            Fault::SlowDisk => "slow-disk",
        }
    }
}

/// How long a slow disk makes each synced write wait.
pub const SLOW_SYNC_MS: u64 = 300;

/// What to run.
#[derive(Clone, Debug)]
pub struct NemesisSpec {
    pub duration: Duration,
    pub seed: u64,
    pub clients: usize,
    pub keys: usize,
    /// Time between two faults (each lasts about as long).
    pub fault_every: Duration,
    pub cf: String,
    /// The faults to choose from.
    pub faults: Vec<Fault>,
}

impl NemesisSpec {
    /// Every kind of fault: the cluster must be partitionable and its nodes
    /// started with `--enable-failpoints`.
    pub fn new(duration: Duration, seed: u64) -> NemesisSpec {
        NemesisSpec {
            duration,
            seed,
            clients: 6,
            keys: 12,
            fault_every: Duration::from_secs(4),
            cf: "default".into(),
            faults: vec![Fault::Kill, Fault::Pause, Fault::Partition, Fault::SlowDisk],
        }
    }
}

/// What a run found.
#[derive(Debug)]
pub struct Report {
    pub ops: usize,
    pub acked_writes: usize,
    pub unknown_writes: usize,
    /// Bank transfers acknowledged, and bank scans judged.
    pub transfers: usize,
    pub scans: usize,
    pub faults: Vec<String>,
    pub lost: usize,
    pub violations: Vec<Violation>,
    /// Bank rules broken (each counts as a violation).
    pub bank_violations: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ops={} acked_writes={} unknown_writes={} transfers={} scans={} faults={} lost={} violations={}",
            self.ops,
            self.acked_writes,
            self.unknown_writes,
            self.transfers,
            self.scans,
            self.faults.len(),
            self.lost,
            self.violations.len() + self.bank_violations.len()
        )
    }
}

fn key(k: usize) -> Vec<u8> {
    format!("nemesis/{k:04}").into_bytes()
}

/// Microseconds since `start`.
fn now(start: Instant) -> u64 {
    start.elapsed().as_micros() as u64
}

async fn client_task(endpoints: Vec<String>, spec: NemesisSpec, id: usize, start: Instant, stop: Arc<AtomicBool>) -> Vec<Operation> {
    let opts = ClientOptions { deadline: Duration::from_secs(3), ..Default::default() };
    let client = Client::new(&endpoints, opts).expect("client");
    let mut rng = Rng::new(spec.seed ^ (id as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut history = Vec::new();
    let mut counter = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let k = key(rng.below(spec.keys));
        let call = now(start);
        if rng.below(2) == 0 {
            counter += 1;
            let value = format!("{id}-{counter}").into_bytes();
            let ret = client.put(&spec.cf, &k, &value).await.ok().map(|()| now(start));
            history.push(Operation { key: k, op: Op::Write(value), call, ret });
        } else if let Ok(found) = client.get(&spec.cf, &k).await {
            history.push(Operation { key: k, op: Op::Read(found), call, ret: Some(now(start)) });
        }
    }
    history
}

/// Injects one fault of kind `fault` on node `i`, waits `hold`, heals it.
async fn inject(cluster: &mut Cluster, fault: Fault, i: usize, hold: Duration) {
    match fault {
        Fault::Kill => {
            cluster.kill9(i);
            tokio::time::sleep(hold).await;
            cluster.restart(i);
        }
        Fault::Pause => {
            cluster.nodes[i].signal(libc::SIGSTOP);
            tokio::time::sleep(hold).await;
            cluster.nodes[i].signal(libc::SIGCONT);
        }
        Fault::Partition => {
            let net = cluster.network.clone().expect("a partition needs Cluster::start_partitionable");
            net.partition(&[i]).expect("partition");
            tokio::time::sleep(hold).await;
            net.heal().expect("heal the partition");
        }
        Fault::SlowDisk => {
            set_slow_sync(cluster, i, SLOW_SYNC_MS).await;
            tokio::time::sleep(hold).await;
            set_slow_sync(cluster, i, 0).await;
        }
    }
}

async fn set_slow_sync(cluster: &Cluster, i: usize, ms: u64) {
    let path = format!("/failpoints/slow-sync?ms={ms}");
    let (code, body) = crate::try_http("PUT", &cluster.nodes[i].status, &path, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("slow-sync on {}: {e}", cluster.nodes[i].name));
    assert_eq!(code, 200, "slow-sync on {} (is it started with --enable-failpoints?): {body}", cluster.nodes[i].name);
}

/// Runs the workloads and the faults on `cluster` for `spec.duration`, heals
/// everything, reads every key and the bank once more and judges the histories.
pub async fn run(cluster: &mut Cluster, spec: &NemesisSpec) -> Report {
    assert!(!spec.faults.is_empty(), "no kind of fault to inject");
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let endpoints = cluster.endpoints();
    let tasks: Vec<_> =
        (0..spec.clients).map(|id| tokio::spawn(client_task(endpoints.clone(), spec.clone(), id, start, stop.clone()))).collect();
    let bank_writer = tokio::spawn(bank::writer(endpoints.clone(), spec.cf.clone(), spec.seed, start, stop.clone()));
    let bank_readers: Vec<_> =
        (0..2).map(|_| tokio::spawn(bank::reader(endpoints.clone(), spec.cf.clone(), start, stop.clone()))).collect();

    let mut rng = Rng::new(spec.seed);
    let mut faults = Vec::new();
    while start.elapsed() + spec.fault_every * 2 < spec.duration {
        tokio::time::sleep(spec.fault_every).await;
        let i = rng.below(cluster.nodes.len());
        let fault = spec.faults[rng.below(spec.faults.len())];
        faults.push(format!("{:.1}s {} {}", start.elapsed().as_secs_f64(), fault.name(), cluster.nodes[i].name));
        inject(cluster, fault, i, spec.fault_every).await;
        cluster.wait_serving(i, Duration::from_secs(60)).await;
    }
    let left = spec.duration.saturating_sub(start.elapsed());
    tokio::time::sleep(left).await;
    stop.store(true, Ordering::Relaxed);
    let mut history = Vec::new();
    for t in tasks {
        history.extend(t.await.expect("client task"));
    }
    let ledger = bank_writer.await.expect("bank writer");
    let mut scans = Vec::new();
    for r in bank_readers {
        scans.extend(r.await.expect("bank reader"));
    }

    // Healed: every key's final value, read linearizably, and the bank.
    let client = cluster.client();
    let mut finals = Vec::new();
    for k in 0..spec.keys {
        let k = key(k);
        let call = now(start);
        let found = crate::wait_until(Duration::from_secs(60), Duration::from_millis(200), "a final read", || async {
            client.get(&spec.cf, &k).await.map_err(|e| e.to_string())
        })
        .await;
        finals.push((k.clone(), found.clone()));
        history.push(Operation { key: k, op: Op::Read(found), call, ret: Some(now(start)) });
    }
    let call = now(start);
    let bank_final = crate::wait_until(Duration::from_secs(60), Duration::from_millis(200), "a final read of the bank", || async {
        bank::final_reading(&client, &spec.cf).await.ok_or_else(|| "not readable".to_string())
    })
    .await;
    scans.push(bank::Observation { call, reading: bank_final });

    let lost = lost_writes(&history, &finals) + usize::from(bank::lost(&ledger, scans.last().map(|o| &o.reading)));
    let violations = linearizability::check(&history);
    let bank_violations = bank::judge(&ledger, &scans);
    let writes = history.iter().filter(|o| matches!(o.op, Op::Write(_)));
    Report {
        ops: history.len() + scans.len() + ledger.versions.len(),
        acked_writes: writes.clone().filter(|o| o.ret.is_some()).count(),
        unknown_writes: writes.filter(|o| o.ret.is_none()).count(),
        transfers: ledger.versions.values().filter(|(_, at)| at.is_some()).count().saturating_sub(1),
        scans: scans.len(),
        faults,
        lost,
        violations,
        bank_violations,
    }
}

/// Keys whose final value is older than their last acknowledged write: the
/// value read is missing, or was written by a write that returned before the
/// last acknowledged one was called (so it cannot follow it).
fn lost_writes(history: &[Operation], finals: &[(Vec<u8>, Option<Vec<u8>>)]) -> usize {
    finals
        .iter()
        .filter(|(k, found)| {
            let writes: Vec<&Operation> = history.iter().filter(|o| o.key == *k && matches!(o.op, Op::Write(_))).collect();
            let Some(last_acked) = writes.iter().filter(|o| o.ret.is_some()).max_by_key(|o| o.ret) else { return false };
            match found {
                None => true,
                Some(v) => match writes.iter().find(|o| o.op == Op::Write(v.clone())) {
                    None => true,
                    Some(w) => w.ret.is_some_and(|r| r < last_acked.call),
                },
            }
        })
        .count()
}
