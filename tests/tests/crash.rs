//! Crash safety with real processes: every acknowledged write survives SIGKILL of
//! the leader and then of every node, and nothing that was never written appears.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use shoal_client::{Client, ReadConsistency};
use shoal_tests::{Cluster, wait_for};
use tokio::sync::Mutex;

const CFS: [&str; 2] = ["default", "users"];

/// A column family and a key in it.
type CfKey = (String, Vec<u8>);

/// What the writers did: every attempted write (cf, key) → value, and which were acknowledged.
#[derive(Default)]
struct Ledger {
    attempted: BTreeMap<CfKey, Vec<u8>>,
    acked: BTreeSet<CfKey>,
    /// The acknowledged writes in the order their acknowledgements arrived.
    acked_order: Vec<CfKey>,
}

async fn write_keys(client: Arc<Client>, ledger: Arc<Mutex<Ledger>>, prefix: &str, count: usize, writers: usize) -> usize {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (client, ledger, next, prefix) = (client.clone(), ledger.clone(), next.clone(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let mut acked = 0;
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst) as usize;
                if i >= count {
                    return acked;
                }
                let cf = CFS[i % 2].to_string();
                let key = format!("{prefix}/{i:06}").into_bytes();
                let value = format!("value-of-{prefix}-{i}").into_bytes();
                ledger.lock().await.attempted.insert((cf.clone(), key.clone()), value.clone());
                if client.put(&cf, &key, &value).await.is_ok() {
                    let mut l = ledger.lock().await;
                    l.acked.insert((cf.clone(), key.clone()));
                    l.acked_order.push((cf, key));
                    acked += 1;
                }
            }
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("writer task");
    }
    total
}

/// Every acknowledged write reads back with its value; every key present was attempted with that value.
async fn verify(client: &Client, ledger: &Ledger) {
    for ((cf, key), value) in &ledger.attempted {
        if ledger.acked.contains(&(cf.clone(), key.clone())) {
            let got = client.get(cf, key).await.expect("get");
            assert_eq!(got.as_ref(), Some(value), "acknowledged write {cf}/{} lost", String::from_utf8_lossy(key));
        }
    }
    for cf in CFS {
        let all = client.scan(cf, b"", b"", 0).await.expect("scan");
        for (key, value) in &all {
            let attempted = ledger.attempted.get(&(cf.to_string(), key.clone()));
            assert_eq!(attempted, Some(value), "{cf}/{} was never written with this value", String::from_utf8_lossy(key));
        }
        let keys: Vec<_> = all.iter().map(|(k, _)| k.clone()).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "scan of {cf} is in key order");
        let acked_in_cf = ledger.acked.iter().filter(|(c, _)| c == cf).count();
        assert!(all.len() >= acked_in_cf, "{cf}: scan found {} keys, {} were acknowledged", all.len(), acked_in_cf);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_leader_crash_and_full_cluster_crash() {
    let mut cluster = Cluster::start(3, &["--column-family", "users:compression=zstd", "--raft-tick-ms", "50"]).await;
    let client = Arc::new(cluster.client());
    let ledger = Arc::new(Mutex::new(Ledger::default()));

    // 1,000 keys across two column families.
    let acked = write_keys(client.clone(), ledger.clone(), "initial", 1000, 8).await;
    assert_eq!(acked, 1000, "a healthy cluster acknowledges every write");

    // Writers keep going while the leader is SIGKILLed.
    let leader = cluster.leader().await;
    let stop = Arc::new(AtomicBool::new(false));
    let during = {
        let (client, ledger, stop) = (client.clone(), ledger.clone(), stop.clone());
        tokio::spawn(async move {
            let mut round = 0;
            let mut acked = 0;
            while !stop.load(Ordering::SeqCst) {
                acked += write_keys(client.clone(), ledger.clone(), &format!("during-{round}"), 50, 4).await;
                round += 1;
            }
            acked
        })
    };
    wait_for(Duration::from_secs(30), "writes before the kill", || {
        let ledger = ledger.clone();
        async move { (ledger.lock().await.acked.len() > 1100).then_some(()) }
    })
    .await;
    cluster.nodes[leader].kill9();
    let acked_at_kill = ledger.lock().await.acked.len();
    cluster.wait_leader(Duration::from_secs(30)).await;
    wait_for(Duration::from_secs(30), "writes acknowledged after re-election", || {
        let ledger = ledger.clone();
        async move { (ledger.lock().await.acked.len() > acked_at_kill + 200).then_some(()) }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let during_acked = during.await.expect("writer");

    // The old leader comes back and catches up: its own copy (stale reads on it
    // alone) comes to hold every acknowledged write, including those made while
    // it was down.
    cluster.restart(leader);
    let probe = Client::new(&[cluster.nodes[leader].grpc.clone()], Default::default()).expect("client");
    let expected: Vec<(CfKey, Vec<u8>)> = {
        let l = ledger.lock().await;
        l.acked_order.iter().rev().map(|k| (k.clone(), l.attempted[k].clone())).collect()
    };
    wait_for(Duration::from_secs(30), "the restarted node to hold every acknowledged write", || {
        let (probe, expected) = (&probe, &expected);
        async move {
            for ((cf, key), value) in expected {
                let local = probe.get_with(cf, key, ReadConsistency::Stale).await.ok()?;
                if local.as_ref() != Some(value) {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    verify(&client, &*ledger.lock().await).await;

    // SIGKILL all three, restart, and check again.
    for node in &mut cluster.nodes {
        node.kill9();
    }
    for i in 0..3 {
        cluster.restart(i);
    }
    cluster.wait_leader(Duration::from_secs(60)).await;
    let ledger = ledger.lock().await;
    verify(&cluster.client(), &ledger).await;

    // SIGTERM is a clean, prompt exit, and the node comes back with its data.
    for node in &mut cluster.nodes {
        assert!(node.terminate(Duration::from_secs(10)), "{} exits 0 on SIGTERM within 10 s", node.name);
    }
    for i in 0..3 {
        cluster.restart(i);
    }
    cluster.wait_leader(Duration::from_secs(60)).await;
    verify(&cluster.client(), &ledger).await;
    eprintln!(
        "attempted {} writes, {} acknowledged ({during_acked} around the leader's crash), all acknowledged ones read back",
        ledger.attempted.len(),
        ledger.acked.len()
    );
}
