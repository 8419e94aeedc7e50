//! Multi-Raft end to end, with real processes and a small split size: regions
//! split under load, the meta group knows every region, clients route by
//! themselves across regions, placement spreads leaders, and the meta group
//! survives losing its leader.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shoal_client::{Client, ClientError};
use shoal_proto::HeartbeatRequest;
use shoal_proto::meta_client::MetaClient;
use shoal_tests::{Cluster, bin_dir, wait_for};

/// Key `i` as `shoalctl bench load` writes it.
fn bench_key(i: u64) -> Vec<u8> {
    format!("bench/{i:010}").into_bytes()
}

/// Number of data regions meta knows, once the directory tiles the key space.
async fn region_count(client: &Client) -> Option<usize> {
    let regions = client.scan_regions(b"", b"", 0).await.ok()?;
    // The directory must cover the key space without holes or overlaps.
    let mut expect_start: Vec<u8> = Vec::new();
    for r in &regions {
        let r = r.region.as_ref()?;
        if r.start_key != expect_start {
            return None;
        }
        expect_start = r.end_key.clone();
        if expect_start.is_empty() {
            break;
        }
    }
    expect_start.is_empty().then_some(regions.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_loaded_cluster_splits_scans_in_order_and_balances_leaders() {
    const KEYS: u64 = 200_000;
    let cluster = Cluster::start(3, &["--region-split-size", "4194304", "--heartbeat-interval-ms", "500"]).await;
    let eps = cluster.endpoints().join(",");

    let load = Command::new(bin_dir().join("shoalctl"))
        .args(["--endpoints", &eps, "bench", "load", "--keys", &KEYS.to_string(), "--value-size", "1024", "--concurrency", "64"])
        .output()
        .expect("run shoalctl bench load");
    assert!(load.status.success(), "bench load failed: {}{}", String::from_utf8_lossy(&load.stdout), String::from_utf8_lossy(&load.stderr));

    let client = cluster.client();
    let regions = wait_for(Duration::from_secs(120), "at least 16 regions tiling the key space", || async {
        region_count(&client).await.filter(|n| *n >= 16)
    })
    .await;
    eprintln!("{regions} regions after loading {KEYS} keys");

    // A full scan crosses every region: each key once, in order, nothing else.
    let mut next = 0u64;
    let mut from = Vec::new();
    loop {
        let page = client.scan("default", &from, b"", 10_000).await.expect("scan");
        if page.is_empty() {
            break;
        }
        for (k, v) in &page {
            assert_eq!(k, &bench_key(next), "key {next} of the scan");
            assert_eq!(v.len(), 1024);
            next += 1;
        }
        from = page.last().map(|(k, _)| [k.as_slice(), &[0]].concat()).unwrap_or_default();
    }
    assert_eq!(next, KEYS, "the scan returned every loaded key");

    // Placement spreads leaders: nobody leads more than ⌈regions/3⌉ + 2.
    let spread = wait_for(Duration::from_secs(90), "leaders balanced across stores", || async {
        let n = region_count(&client).await?;
        let stores = client.list_stores().await.ok()?;
        let leaders: Vec<u64> = stores.iter().map(|s| s.stats.as_ref().map_or(0, |st| st.leader_count)).collect();
        let total: u64 = leaders.iter().sum();
        let cap = (n as u64).div_ceil(3) + 2;
        (total == n as u64 && leaders.iter().all(|l| *l <= cap)).then_some((n, leaders))
    })
    .await;
    eprintln!("leaders per store once balanced: {spread:?}");

    // `shoalctl region list --output json` shows the same regions.
    let out = Command::new(bin_dir().join("shoalctl"))
        .args(["--endpoints", &eps, "--output", "json", "region", "list"])
        .output()
        .expect("run shoalctl region list");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("region list json");
    let list = list.as_array().expect("a JSON array");
    assert!(list.len() >= 16, "{} regions listed", list.len());
    for field in ["id", "start_key", "end_key", "epoch", "peers", "leader_store_id"] {
        assert!(list.iter().all(|r| r.get(field).is_some()), "every region has {field}");
    }
    assert!(list.iter().all(|r| r["peers"].as_array().map(Vec::len) == Some(3)), "3 replicas each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_during_splits_are_neither_lost_nor_duplicated() {
    let cluster = Cluster::start(3, &["--region-split-size", "262144", "--heartbeat-interval-ms", "200"]).await;
    let client = Arc::new(cluster.client());
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..16u32 {
        let (client, stop) = (client.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            // Every key is written once, with a value naming it: a lost write or
            // one applied twice (to a stale range) shows up on read-back.
            let mut outcomes: BTreeMap<Vec<u8>, bool> = BTreeMap::new();
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                // Writers interleave over the key space, so every region takes writes.
                let key = format!("w/{:05}/{w:02}", i).into_bytes();
                let value = [key.as_slice(), &[b'='; 1000]].concat();
                match client.put("default", &key, &value).await {
                    Ok(()) => {
                        outcomes.insert(key, true);
                    }
                    Err(ClientError::OutcomeUnknown(_)) => {
                        outcomes.insert(key, false);
                    }
                    Err(e) => panic!("write {} failed: {e}", String::from_utf8_lossy(&key)),
                }
                i += 1;
            }
            outcomes
        }));
    }
    // Run until the data has split several times.
    let regions = wait_for(Duration::from_secs(120), "8 regions from splits under write load", || async {
        region_count(&client).await.filter(|n| *n >= 8)
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut outcomes: BTreeMap<Vec<u8>, bool> = BTreeMap::new();
    for w in writers {
        outcomes.extend(w.await.expect("writer"));
    }
    let acked = outcomes.values().filter(|a| **a).count();
    eprintln!("{regions} regions; {acked} writes acknowledged, {} unknown", outcomes.len() - acked);
    assert!(acked > 1000, "writers made progress ({acked})");

    let all = client.scan("default", b"", b"", 0).await.expect("full scan");
    let mut seen = std::collections::BTreeSet::new();
    for (k, v) in &all {
        assert!(seen.insert(k.clone()), "key {} appears twice", String::from_utf8_lossy(k));
        assert!(outcomes.contains_key(k), "key {} was never written", String::from_utf8_lossy(k));
        assert!(v.starts_with(k), "value of {} is another key's", String::from_utf8_lossy(k));
    }
    for (k, was_acked) in &outcomes {
        if *was_acked {
            assert!(seen.contains(k), "acknowledged write {} is lost", String::from_utf8_lossy(k));
            let v = client.get("default", k).await.expect("get").expect("acknowledged key exists");
            assert!(v.starts_with(k));
        }
    }
}

/// Each region's (leader store, leader term, approximate size), once two
/// `region list`s a second apart agree and there are at least four regions.
async fn settled_sizes(cluster: &Cluster, within: Duration, what: &str) -> BTreeMap<u64, (u64, u64, u64)> {
    let list = || async {
        let regions = cluster.region_list().await.ok()?;
        let sizes: BTreeMap<u64, (u64, u64, u64)> = regions
            .iter()
            .map(|r| {
                let n = |k: &str| r[k].as_u64().unwrap_or(0);
                (n("id"), (n("leader_store_id"), n("leader_term"), n("approximate_size")))
            })
            .collect();
        (sizes.len() >= 4 && sizes.values().all(|(_, _, size)| *size > 0)).then_some(sizes)
    };
    wait_for(within, what, || async {
        let first = list().await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        (list().await? == first).then_some(first)
    })
    .await
}

/// Besides the metadata itself, the new meta leader shows every region's
/// current size: stores report only the regions that changed to a
/// leadership that saw the rest, and everything to a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metadata_stays_available_after_the_meta_leader_is_killed() {
    let mut cluster = Cluster::start(3, &["--heartbeat-interval-ms", "200", "--region-split-size", "262144"]).await;
    let client = cluster.client();
    client.put("default", b"before", b"1").await.expect("put");
    for i in 0..1_200u32 {
        client.put("default", format!("bulk/{i:05}").as_bytes(), &[b'v'; 1024]).await.expect("put");
    }
    settled_sizes(&cluster, Duration::from_secs(60), "four regions or more, settled").await;
    // Every region grows after its last split.
    for i in (0..1_200u32).step_by(4) {
        client.put("default", format!("bulk/{i:05}").as_bytes(), &[b'w'; 2048]).await.expect("put");
    }
    let before = settled_sizes(&cluster, Duration::from_secs(60), "the grown regions, settled").await;
    let first = client.alloc_id(1).await.expect("alloc id").start;
    let meta_leader = cluster.meta_leader().await;
    cluster.nodes[meta_leader].kill9();

    let survivors: Vec<String> = (0..3).filter(|i| *i != meta_leader).map(|i| cluster.nodes[i].grpc.clone()).collect();
    let client = Client::new(&survivors, Default::default()).expect("client");
    let stores = wait_for(Duration::from_secs(30), "meta answers after re-election", || async { client.list_stores().await.ok() }).await;
    assert_eq!(stores.len(), 3, "the registry still lists every store");
    let region = client.region_by_key(b"before").await.expect("region by key");
    assert!(region.info.region.is_some(), "the directory still knows the region");
    let next = client.alloc_id(1).await.expect("alloc id after failover").start;
    assert!(next > first, "ids keep increasing across a meta leader change ({first} then {next})");
    // Regions whose leader stayed report what they reported before, well
    // before the stores' periodic full report (every 5 minutes).
    let kept = wait_for(Duration::from_secs(20), "the sizes of regions that kept their leader", || async {
        let after = settled_sizes(&cluster, Duration::from_secs(10), "regions after the kill").await;
        let kept: Vec<u64> = before
            .iter()
            .filter(|(id, (l, t, _))| after.get(id).is_some_and(|(l2, t2, _)| l == l2 && t == t2))
            .map(|(id, _)| *id)
            .collect();
        kept.iter().all(|id| after[id] == before[id]).then_some(kept)
    })
    .await;
    assert!(!kept.is_empty(), "some region kept its leader: {before:?}");
    // Data still serves through the new routing.
    client.put("default", b"after", b"2").await.expect("put after failover");
    assert_eq!(client.get("default", b"before").await.expect("get").as_deref(), Some(&b"1"[..]));

    cluster.restart(meta_leader);
    let back = Client::new(&[cluster.nodes[meta_leader].grpc.clone()], Default::default()).expect("client");
    wait_for(Duration::from_secs(30), "the restarted store serves again", || async { back.get("default", b"after").await.ok().flatten() })
        .await;
}

/// The meta side of partial heartbeats: a partial report relative to a
/// leadership that is not this one gets `full_report_wanted`; one relative to
/// this leadership's `report_epoch`, or a full one, does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_heartbeat_to_another_meta_leadership_asks_for_a_full_one() {
    let cluster = Cluster::start(1, &[]).await;
    let client = cluster.client();
    let store = wait_for(Duration::from_secs(30), "the store registered", || async {
        client.list_stores().await.ok()?.into_iter().find_map(|d| d.store.filter(|s| s.id == cluster.store_id(0)))
    })
    .await;
    let mut meta = MetaClient::connect(format!("http://{}", cluster.nodes[0].grpc)).await.expect("connect");
    let beat = |partial: bool, report_epoch: u64| {
        let req = HeartbeatRequest { store: Some(store.clone()), partial, report_epoch, ..Default::default() };
        let mut meta = meta.clone();
        async move { meta.heartbeat(req).await.expect("heartbeat").into_inner() }
    };
    let full = beat(false, 0).await;
    assert!(full.report_epoch != 0 && !full.full_report_wanted, "a full report: {full:?}");
    let stranger = beat(true, full.report_epoch ^ 0x5a5a).await;
    assert!(stranger.full_report_wanted, "partial, relative to another leadership: {stranger:?}");
    assert_eq!(stranger.report_epoch, full.report_epoch);
    let known = beat(true, full.report_epoch).await;
    assert!(!known.full_report_wanted, "partial, relative to this leadership: {known:?}");
    drop(meta.heartbeat(HeartbeatRequest::default()).await.expect_err("a heartbeat names its store"));
}

/// Four stores, three replicas: one store ends up without a peer of the meta
/// group. A client that knows only that store still reaches meta: the store
/// answers `NotLeader` with the meta leader its own heartbeats reach (it used
/// to answer "no region on this store serves key []", and the client, with
/// no other address, retried it until its deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_without_a_meta_peer_points_clients_to_the_meta_leader() {
    let cluster = Cluster::start(4, &["--heartbeat-interval-ms", "300"]).await;
    let lonely = wait_for(Duration::from_secs(60), "a store without a meta peer", || async {
        for i in 0..4 {
            let status = cluster.status(i).await.ok()?;
            if !status.regions.iter().any(|r| r.region.as_ref().is_some_and(|r| r.id == shoal_tests::META_REGION_ID)) {
                return Some(i);
            }
        }
        None
    })
    .await;
    let opts = shoal_client::ClientOptions { deadline: Duration::from_secs(10), ..cluster.client_options() };
    let client = Client::new(&[cluster.nodes[lonely].grpc.clone()], opts).expect("client");
    let stores = client.list_stores().await.expect("meta through a store without a meta peer");
    assert_eq!(stores.len(), 4);
    client.put("default", b"through-the-lonely-store", b"1").await.expect("a write routed from there");
    assert_eq!(client.get("default", b"through-the-lonely-store").await.expect("read"), Some(b"1".to_vec()));
}
