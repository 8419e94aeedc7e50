//! Membership end to end, with real processes: a store joins (`--join`, then
//! `store join`) and is seeded by snapshots until its peers are voters; a store
//! drains and is removed; a follower that fell behind log truncation catches up
//! by snapshot; a joining store killed in the middle of receiving a snapshot
//! comes back and finishes without ever serving partial data; refused lifecycle
//! commands change nothing; a member that lost its data directory comes back
//! as a new store, and the old one is drained and removed.
//!
//! In every scenario 8 client tasks write throughout ([`Writers`]); at the end
//! every acknowledged write reads back with its last acknowledged value, and
//! writes whose outcome was unknown may read either way.

use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shoal_tests::ctl::{brief, peers_on_store, placement};
use shoal_tests::writers::{Found, Ledger, WriterSpec, Writers, node_kv, stale_get};
use shoal_tests::{Cluster, StoreView, wait_until};

/// How often placement hears from stores in these tests.
const HEARTBEAT_MS: &str = "500";
/// Deadline of one membership phase (seeding a store, draining one) on a
/// 2-core machine running debug builds.
const PHASE: Duration = Duration::from_secs(300);

/// Progress lines with the time since the test began.
struct Progress(Instant);

impl Progress {
    fn new(test: &str) -> Progress {
        eprintln!("[   0.0s] {test}");
        Progress(Instant::now())
    }

    fn say(&self, msg: impl Display) {
        eprintln!("[{:>6.1}s] {msg}", self.0.elapsed().as_secs_f64());
    }
}

/// The snapshot counters of one node (0 for counters not yet incremented).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Snap {
    generated: f64,
    sent: f64,
    received: f64,
    applied: f64,
    failed: f64,
    bytes_sent: f64,
    bytes_received: f64,
}

impl Display for Snap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "gen {} sent {} recv {} applied {} failed {}, {:.1} MiB out, {:.1} MiB in",
            self.generated,
            self.sent,
            self.received,
            self.applied,
            self.failed,
            self.bytes_sent / 1048576.0,
            self.bytes_received / 1048576.0
        )
    }
}

async fn snap(cluster: &Cluster, i: usize) -> Snap {
    let event = |e: &'static str| async move { cluster.metric_or_zero(i, "shoal_snapshots_total", &[("event", e)]).await };
    let bytes = |d: &'static str| async move { cluster.metric_or_zero(i, "shoal_snapshot_bytes_total", &[("direction", d)]).await };
    Snap {
        generated: event("generated").await,
        sent: event("sent").await,
        received: event("received").await,
        applied: event("applied").await,
        failed: event("failed").await,
        bytes_sent: bytes("sent").await,
        bytes_received: bytes("received").await,
    }
}

/// Snapshot counters of every started node, for progress lines.
async fn snaps(cluster: &Cluster) -> String {
    let mut out = Vec::new();
    for i in 0..cluster.nodes.len() {
        if cluster.nodes[i].is_started() {
            out.push(format!("{}: {}", cluster.nodes[i].name, snap(cluster, i).await));
        }
    }
    out.join("; ")
}

fn find(stores: &[StoreView], id: u64) -> Result<&StoreView, String> {
    stores.iter().find(|s| s.id == id).ok_or_else(|| format!("store {id} is not listed: {}", brief(stores)))
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Waits until every `up` store has sent a heartbeat more than `ms` after now:
/// placement has seen the cluster since (a condition, not a sleep).
async fn wait_heartbeats_after(cluster: &Cluster, ms: u64) {
    let after = now_ms() + ms;
    wait_until(Duration::from_secs(60), Duration::from_millis(500), "every up store to send another heartbeat", || async {
        let stores = cluster.store_list().await?;
        let beats: Vec<(u64, u64)> =
            stores.iter().filter(|s| s.state == "up").map(|s| (s.id, s.raw["last_heartbeat_ms"].as_u64().unwrap_or(0))).collect();
        if !beats.is_empty() && beats.iter().all(|(_, t)| *t > after) { Ok(()) } else { Err(format!("{beats:?}, want > {after}")) }
    })
    .await;
}

/// Every `bench load` key is there with a value of `size` bytes.
async fn check_bench_keys(cluster: &Cluster, count: u64, size: usize) {
    let client = cluster.live_client();
    let mut from = b"bench/".to_vec();
    let mut n = 0u64;
    loop {
        let page = client.scan("default", &from, b"bench0", 10_000).await.expect("scan bench keys");
        let Some((last, _)) = page.last() else { break };
        for (k, v) in &page {
            assert_eq!(k, format!("bench/{n:010}").as_bytes(), "bench key {n}");
            assert_eq!(v.len(), size, "value of bench key {n}");
            n += 1;
        }
        from = [last.as_slice(), &[0]].concat();
    }
    assert_eq!(n, count, "every loaded key reads back");
}

/// Waits until node `i` has registered; checks it is `pending` and holds nothing.
async fn register(cluster: &mut Cluster, i: usize, p: &Progress) -> u64 {
    let view = cluster.wait_registered(i, Duration::from_secs(60)).await;
    p.say(format!("{} registered as store {} ({}): {}", cluster.nodes[i].name, view.id, view.address, view.brief()));
    assert_eq!(view.state, "pending", "a store started with --join waits to be admitted: {:?}", view.raw);
    assert_eq!(view.region_count, 0, "a pending store holds nothing: {:?}", view.raw);
    view.id
}

/// Runs `store join ID` and waits until the store is `up` with voters only,
/// its peers seeded by snapshot. Returns the region count it got.
async fn admit(cluster: &Cluster, store: u64, new_node: usize, p: &Progress) -> u64 {
    let out = cluster.store_cmd("join", store).await;
    let joined = out.expect_json();
    p.say(format!("store join {store}: {joined}"));
    let seeded = wait_until(PHASE, Duration::from_secs(2), &format!("store {store} seeded and up"), || async {
        let stores = cluster.store_list().await?;
        let s = find(&stores, store)?.clone();
        let regions = cluster.region_list().await?;
        let (voters, learners) = peers_on_store(&regions, store);
        let senders: f64 = {
            let mut sent = 0.0;
            for i in (0..cluster.nodes.len()).filter(|i| *i != new_node && cluster.nodes[*i].is_started()) {
                sent += cluster.metric_or_zero(i, "shoal_snapshots_total", &[("event", "sent")]).await;
            }
            sent
        };
        let applied = cluster.metric_or_zero(new_node, "shoal_snapshots_total", &[("event", "applied")]).await;
        let state = format!(
            "{}; store {store}: {voters} voters, {learners} learners; snapshots sent by others {senders}, applied by it {applied}",
            brief(&stores)
        );
        // The store's own count is checked in the same round: under write load
        // regions keep splitting and the scheduler keeps adding learners to the
        // new store, so a count read after the wait could be a later one.
        let status = cluster.store_status(store).await?;
        let own_learners = status["learner_count"].as_u64();
        if s.state == "up" && s.region_count > 0 && voters > 0 && learners == 0 && own_learners == Some(0) && senders > 0.0 && applied > 0.0
        {
            Ok((s, voters))
        } else {
            Err(format!("{state}; status {status}"))
        }
    })
    .await;
    p.say(format!("store {store} is up with {} voters: {}", seeded.1, snaps(cluster).await));
    let status = cluster.store_status(store).await.expect("store status");
    p.say(format!("store status {store}: {status}"));
    assert_eq!(status["id"], store, "{status}");
    assert_eq!(status["address"], cluster.nodes[new_node].grpc.as_str(), "{status}");
    assert_eq!(status["state"], "up", "{status}");
    assert!(status["learner_count"].as_u64().is_some(), "{status}");
    assert!(status["region_count"].as_u64().is_some_and(|n| n > 0), "{status}");
    assert!(status["leader_count"].as_u64().is_some(), "{status}");
    assert!(status["bytes_to_move"].as_u64().is_some(), "{status}");
    seeded.0.region_count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn join_then_drain_and_remove() {
    const KEYS: u64 = 100_000;
    let p = Progress::new("join_then_drain_and_remove");
    let mut cluster = Cluster::start(3, &["--region-split-size", "1048576", "--heartbeat-interval-ms", HEARTBEAT_MS]).await;
    let writers = Writers::start(Arc::new(cluster.client()), WriterSpec { keys_per_writer: 2_000, ..WriterSpec::new("live", 100) });
    p.say("3 nodes up; 8 writers started");

    let load = cluster
        .ctl_with_timeout(
            &["--output", "json", "bench", "load", "--keys", &KEYS.to_string(), "--value-size", "100", "--concurrency", "32"],
            Duration::from_secs(600),
        )
        .await
        .expect_json();
    assert_eq!(load["count"], KEYS, "{load}");
    let regions = wait_until(Duration::from_secs(120), Duration::from_secs(1), "at least 8 regions", || async {
        let n = cluster.region_list().await?.len();
        if n >= 8 { Ok(n) } else { Err(format!("{n} regions")) }
    })
    .await;
    p.say(format!("loaded {KEYS} keys of 100 B: {regions} regions; {}", writers.progress()));

    // A fourth node joins: registered, pending, holding nothing until admitted.
    let n4 = cluster.join_node(&[]);
    let s4 = register(&mut cluster, n4, &p).await;
    wait_heartbeats_after(&cluster, 1_000).await;
    let stores = cluster.store_list().await.expect("store list");
    assert_eq!(find(&stores, s4).expect("new store").state, "pending", "nothing admits a store but `store join`: {}", brief(&stores));
    assert_eq!(peers_on_store(&cluster.region_list().await.expect("region list"), s4), (0, 0), "no peer on a pending store");
    assert_eq!(snap(&cluster, n4).await.applied, 0.0, "a pending store applies no snapshot");

    let got = admit(&cluster, s4, n4, &p).await;
    p.say(format!("store {s4} holds {got} regions; {}", writers.progress()));

    // Drain store 1 until it holds nothing, then remove it.
    let out = cluster.store_cmd("drain", 1).await;
    p.say(format!("store drain 1: {}", out.expect_json()));
    // Drained means what `store remove` checks: no peer at all, the meta
    // region's included (`store status` counts it; `store list` and the
    // region directory show data regions only).
    wait_until(PHASE, Duration::from_secs(2), "store 1 drained", || async {
        let stores = cluster.store_list().await?;
        let s1 = find(&stores, 1)?.clone();
        let (voters, learners) = peers_on_store(&cluster.region_list().await?, 1);
        let status = cluster.store_status(1).await?;
        if s1.region_count == 0 && s1.leader_count == 0 && voters + learners == 0 && status["region_count"] == 0 {
            Ok(())
        } else {
            Err(format!("{}; store 1 has {voters} voters, {learners} learners in the directory; status {status}", brief(&stores)))
        }
    })
    .await;
    p.say(format!("store 1 drained: {}; {}", brief(&cluster.store_list().await.expect("store list")), snaps(&cluster).await));
    let removed = cluster.store_cmd("remove", 1).await.expect_json();
    p.say(format!("store remove 1: {removed}"));
    let stores = cluster.store_list().await.expect("store list");
    assert_eq!(find(&stores, 1).expect("store 1 stays listed").state, "tombstone", "{}", brief(&stores));

    // Node 1 goes away; three stores keep serving.
    assert!(cluster.terminate(0, Duration::from_secs(30)), "n1 exits 0 on SIGTERM");
    writers.wait_acked_more(500, Duration::from_secs(120), "after n1 stopped").await;
    let stores = cluster.store_list().await.expect("store list on three nodes");
    p.say(format!("n1 stopped; {}; {}", brief(&stores), writers.progress()));
    assert_eq!(find(&stores, 1).expect("store 1").state, "tombstone", "a removed store stays removed when it stops");
    for id in [2, 3, s4] {
        assert_eq!(find(&stores, id).expect("a live store").state, "up", "{}", brief(&stores));
    }

    let ledger = writers.stop().await;
    let client = cluster.live_client();
    ledger.verify(&client, 2_000).await;
    check_bench_keys(&cluster, KEYS, 100).await;
    p.say(format!("every acknowledged write reads back from the three remaining stores; {}", ledger.summary()));
}

/// Region id → applied index on node `i`, for the regions it leads (`leading`) or all it holds.
async fn applied_indexes(cluster: &Cluster, i: usize, leading: bool) -> Result<Vec<(u64, u64)>, String> {
    let s = cluster.status(i).await?;
    Ok(s.regions.iter().filter(|r| !leading || r.is_leader).map(|r| (r.region.as_ref().map_or(0, |x| x.id), r.applied_index)).collect())
}

/// The highest applied index any running node other than `except` reports
/// as leader, by region.
async fn leaders_applied(cluster: &Cluster, except: usize) -> Result<Vec<(u64, u64)>, String> {
    let mut out = Vec::new();
    for i in (0..cluster.nodes.len()).filter(|i| *i != except && cluster.nodes[*i].is_started()) {
        out.extend(applied_indexes(cluster, i, true).await?);
    }
    out.sort();
    Ok(out)
}

/// Waits until node `i` has applied, for every region, at least what the
/// leaders had applied when the wait began.
async fn wait_caught_up(cluster: &Cluster, i: usize, timeout: Duration) -> Vec<(u64, u64)> {
    let target = wait_until(Duration::from_secs(30), Duration::from_millis(500), "leaders' applied indexes", || async {
        leaders_applied(cluster, i).await.and_then(|t| if t.is_empty() { Err("no leader".into()) } else { Ok(t) })
    })
    .await;
    wait_until(timeout, Duration::from_millis(500), &format!("{} to apply up to {target:?}", cluster.nodes[i].name), || async {
        let mine = applied_indexes(cluster, i, false).await?;
        let behind: Vec<String> = target
            .iter()
            .filter(|(r, idx)| mine.iter().find(|(m, _)| m == r).is_none_or(|(_, a)| a < idx))
            .map(|(r, idx)| format!("region {r}: {:?} < {idx}", mine.iter().find(|(m, _)| m == r).map(|x| x.1)))
            .collect();
        if behind.is_empty() { Ok(()) } else { Err(format!("{}; {}", behind.join(", "), snap(cluster, i).await)) }
    })
    .await;
    target
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lagging_follower_catches_up_by_snapshot() {
    const WHILE_DOWN: u64 = 50_000;
    let p = Progress::new("lagging_follower_catches_up_by_snapshot");
    let mut cluster = Cluster::start(3, &["--raft-log-gc-count-limit", "1000", "--heartbeat-interval-ms", HEARTBEAT_MS]).await;
    let client = Arc::new(cluster.client());
    let writers = Writers::start(client.clone(), WriterSpec { keys_per_writer: 10_000, ..WriterSpec::new("lag", 256) });
    writers.wait_acked_more(2_000, Duration::from_secs(60), "with three nodes").await;

    // A follower of the data and of the meta group goes down (SIGKILL).
    let data_leader = cluster.leader().await;
    let meta_leader = cluster.meta_leader().await;
    let f = (0..3).find(|i| *i != data_leader && *i != meta_leader).expect("a node that leads neither group");
    let before = snap(&cluster, f).await;
    cluster.kill9(f);
    p.say(format!("SIGKILLed follower {} ({before}); {}", cluster.nodes[f].name, writers.progress()));

    writers.wait_acked_more(WHILE_DOWN, PHASE, "while the follower is down").await;
    let truncated_at = leaders_applied(&cluster, f).await.expect("leaders' status");
    p.say(format!("{WHILE_DOWN} more writes acknowledged on two nodes; leaders applied {truncated_at:?}; {}", writers.progress()));

    cluster.restart(f);
    let target = wait_caught_up(&cluster, f, PHASE).await;
    let after = snap(&cluster, f).await;
    p.say(format!("{} restarted and caught up to {target:?}: {after}; {}", cluster.nodes[f].name, writers.progress()));
    assert!(after.applied > 0.0, "the restarted follower was seeded by a snapshot (the log was truncated): {after}");
    let mut sent = 0.0;
    for i in (0..3).filter(|i| *i != f) {
        sent += snap(&cluster, i).await.sent;
    }
    assert!(sent > 0.0, "the leaders sent the snapshot");

    writers.wait_acked_more(1_000, Duration::from_secs(60), "with all three nodes").await;
    let ledger = writers.stop().await;
    ledger.verify(&cluster.client(), 2_000).await;

    // The follower's own copy holds the acknowledged writes, including those
    // that reached it by snapshot.
    wait_caught_up(&cluster, f, Duration::from_secs(60)).await;
    let mut kv = node_kv(&cluster.nodes[f].grpc);
    let mut checked = 0;
    for (key, _) in ledger.acked_keys().step_by(20) {
        let got = stale_get(&mut kv, &ledger.spec.cf, key).await.unwrap_or_else(|e| panic!("stale read on the follower: {e}"));
        ledger.check(key, got.as_deref()).unwrap_or_else(|e| panic!("the follower's copy: {e}"));
        checked += 1;
    }
    p.say(format!("{checked} keys read from the follower's own copy; {}", ledger.summary()));
}

/// Stale reads of the bulk keys from one node's own replicas while it joins:
/// it must never answer for a key with anything but the acknowledged value.
struct Prober {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<(u64, u64, Vec<String>)>,
}

impl Prober {
    fn start(addr: String, ledger: Arc<Ledger>) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let served = Arc::new(AtomicU64::new(0));
        let served_so_far = served.clone();
        let task = tokio::spawn(async move {
            let keys: Vec<Vec<u8>> = ledger.keys.keys().cloned().collect();
            let mut kv = node_kv(&addr);
            let (mut served, mut refused, mut wrong) = (0u64, 0u64, Vec::new());
            // Keys visited in a stride that spreads over the whole key space
            // each pass (the store holds only some regions): a prime stride
            // larger than the key count is coprime to it.
            let mut i = 0usize;
            while !flag.load(Ordering::Relaxed) {
                let key = &keys[i.wrapping_mul(7919) % keys.len()];
                i += 1;
                match stale_get(&mut kv, &ledger.spec.cf, key).await {
                    Ok(got) => match ledger.check(key, got.as_deref()) {
                        Ok(_) => {
                            served += 1;
                            served_so_far.store(served, Ordering::Relaxed);
                        }
                        Err(e) => wrong.push(e),
                    },
                    Err(_) => refused += 1,
                }
                // About 50 reads a second: enough to catch a window, cheap on 2 cores.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (served, refused, wrong)
        });
        Prober { stop, served, task }
    }

    /// Stale reads answered from the node's own copy so far.
    fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    async fn stop(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("prober")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshot_receiver_killed_mid_stream() {
    let p = Progress::new("snapshot_receiver_killed_mid_stream");
    let mut cluster = Cluster::start(
        3,
        &[
            "--region-split-size",
            "67108864",
            "--snapshot-max-bytes-per-sec",
            "16777216",
            "--raft-log-gc-count-limit",
            "1000",
            "--heartbeat-interval-ms",
            HEARTBEAT_MS,
        ],
    )
    .await;
    let client = Arc::new(cluster.client());
    let live = Writers::start(client.clone(), WriterSpec { keys_per_writer: 500, ..WriterSpec::new("live", 1024) });
    // About 200 MiB in a few big regions: 3,200 values of 64 KiB, each written once.
    let bulk = Writers::start(
        client.clone(),
        WriterSpec { keys_per_writer: 400, writes_per_writer: Some(400), ..WriterSpec::new("bulk", 64 << 10) },
    );
    let bulk = Arc::new(bulk.finish(Duration::from_secs(600)).await);
    assert!(bulk.acked >= 3_000, "the bulk load went through: {}", bulk.summary());
    // The directory has heard of it all (sizes come with heartbeats): a few big regions.
    let sizes = wait_until(Duration::from_secs(120), Duration::from_secs(1), "a few regions of 16 MiB or more", || async {
        let sizes: Vec<u64> = cluster.region_list().await?.iter().map(|r| r["approximate_size"].as_u64().unwrap_or(0)).collect();
        let total: u64 = sizes.iter().sum();
        let mib: Vec<u64> = sizes.iter().map(|s| s >> 20).collect();
        if total >= 180 << 20 && sizes.len() <= 8 && sizes.iter().all(|s| *s >= 16 << 20) { Ok(sizes) } else { Err(format!("{mib:?} MiB")) }
    })
    .await;
    let smallest_region = sizes.iter().copied().min().unwrap_or(0);
    p.say(format!(
        "loaded {}; regions (MiB): {:?}; {}",
        bulk.summary(),
        sizes.iter().map(|s| s >> 20).collect::<Vec<_>>(),
        live.progress()
    ));

    let n4 = cluster.join_node(&[]);
    let s4 = register(&mut cluster, n4, &p).await;
    let prober = Prober::start(cluster.nodes[n4].grpc.clone(), bulk.clone());
    let out = cluster.store_cmd("join", s4).await;
    p.say(format!("store join {s4}: {}", out.expect_json()));

    // Kill it in the middle of a data region's snapshot: once 4 MiB have
    // arrived. Every data region holds far more (tens of MiB, sent at 16 MiB/s
    // at most), so none of their snapshots is complete yet; a tiny one (the
    // meta group's, should placement move it) may be.
    let at_kill = wait_until(PHASE, Duration::from_millis(100), "4 MiB of snapshots arriving at the new store", || async {
        let s = snap(&cluster, n4).await;
        if s.bytes_received >= 4.0 * 1048576.0 { Ok(s) } else { Err(s.to_string()) }
    })
    .await;
    cluster.kill9(n4);
    p.say(format!("SIGKILLed {} mid-stream: {at_kill}", cluster.nodes[n4].name));
    assert!(
        at_kill.bytes_received < smallest_region as f64,
        "the kill came after a whole data region could have arrived ({at_kill}; smallest region {smallest_region} B): lower --snapshot-max-bytes-per-sec"
    );

    cluster.restart(n4);
    p.say(format!("restarted {} on its data directory", cluster.nodes[n4].name));
    let got = admit_after_restart(&cluster, s4, n4, &p).await;
    p.say(format!("store {s4} up with {got} regions: {}; {}", snaps(&cluster).await, live.progress()));

    // Its own copy of every bulk key it holds is complete.
    let held = wait_until(Duration::from_secs(120), Duration::from_secs(1), "the new store's copy of the bulk keys", || async {
        let mut kv = node_kv(&cluster.nodes[n4].grpc);
        let (mut held, mut problems) = (0, Vec::new());
        for (key, _) in bulk.acked_keys() {
            // An error: the key's region has no replica on this store.
            if let Ok(got) = stale_get(&mut kv, &bulk.spec.cf, key).await {
                match bulk.check(key, got.as_deref()) {
                    Ok(Found::Acked) => held += 1,
                    other => problems.push(format!("{}: {other:?}", String::from_utf8_lossy(key))),
                }
            }
        }
        if problems.is_empty() && held > 0 { Ok(held) } else { Err(format!("{held} keys held; {:?}", &problems[..problems.len().min(5)])) }
    })
    .await;
    p.say(format!("store {s4} holds {held} of {} bulk keys, each complete", bulk.acked));

    // Its own copy served reads all along (the prober's stale reads): never a
    // partial or missing value, before, during or after the kill. The prober
    // runs until its reads have reached the regions this store holds.
    wait_until(Duration::from_secs(120), Duration::from_millis(500), "stale reads served by the new store", || async {
        match prober.served() {
            0 => Err("none yet".to_string()),
            n => Ok(n),
        }
    })
    .await;
    let (served, refused, wrong) = prober.stop().await;
    p.say(format!("stale reads on the new store while it joined: {served} served, {refused} refused, {} wrong", wrong.len()));
    assert!(wrong.is_empty(), "the new store served partial data: {:?}", &wrong[..wrong.len().min(10)]);

    let live = live.stop().await;
    let client = cluster.live_client();
    bulk.verify(&client, 500).await;
    live.verify(&client, 1_000).await;
    p.say("every acknowledged write reads back");
}

/// After the kill and restart: the store comes back `up`, seeded, with voters
/// only and a snapshot applied by the new process.
async fn admit_after_restart(cluster: &Cluster, store: u64, node: usize, p: &Progress) -> u64 {
    let view = wait_until(PHASE, Duration::from_secs(2), &format!("store {store} seeded and up after its restart"), || async {
        let stores = cluster.store_list().await?;
        let s = find(&stores, store)?.clone();
        let (voters, learners) = peers_on_store(&cluster.region_list().await?, store);
        let mine = snap(cluster, node).await;
        if s.state == "up" && s.region_count > 0 && voters > 0 && learners == 0 && mine.applied > 0.0 {
            Ok(s)
        } else {
            let status = cluster.store_status(store).await.map(|v| v.to_string()).unwrap_or_else(|e| e);
            Err(format!("{}; {voters} voters, {learners} learners; {mine}; status {status}", brief(&stores)))
        }
    })
    .await;
    p.say(format!("store {store}: {}", view.brief()));
    view.region_count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_change_nothing() {
    let p = Progress::new("refusals_change_nothing");
    let cluster = Cluster::start(3, &["--heartbeat-interval-ms", HEARTBEAT_MS]).await;
    let writers = Writers::start(Arc::new(cluster.client()), WriterSpec::new("refuse", 256));
    writers.wait_acked_more(1_000, Duration::from_secs(60), "before the refusals").await;
    // Every store has reported since the writes began.
    wait_heartbeats_after(&cluster, 0).await;
    let stores = cluster.store_list().await.expect("store list");
    let regions = placement(&cluster.region_list().await.expect("region list"));
    p.say(format!("stores {}; regions {regions:?}; {}", brief(&stores), writers.progress()));
    let identity = |s: &[StoreView]| {
        let mut v: Vec<_> = s.iter().map(|s| (s.id, s.address.clone(), s.state.clone(), s.region_count)).collect();
        v.sort();
        v
    };
    assert!(stores.iter().all(|s| s.state == "up") && stores.len() == 3, "{}", brief(&stores));

    let remove = cluster.store_cmd("remove", 1).await;
    p.say(format!("store remove 1: exit {:?}: {}", remove.code, remove.stderr.trim()));
    assert!(!remove.success(), "removing a store that holds peers is refused: {}", remove.stdout);
    assert!(remove.stderr.to_lowercase().contains("holds"), "the refusal says the store holds peers: {}", remove.stderr);

    let drain = cluster.store_cmd("drain", 1).await;
    p.say(format!("store drain 1: exit {:?}: {}", drain.code, drain.stderr.trim()));
    assert!(!drain.success(), "draining below the replication factor is refused: {}", drain.stdout);
    assert!(drain.stderr.to_lowercase().contains("replication factor"), "the refusal names the replication factor: {}", drain.stderr);

    let unknown = cluster.store_cmd("remove", 999).await;
    p.say(format!("store remove 999: exit {:?}: {}", unknown.code, unknown.stderr.trim()));
    assert!(!unknown.success(), "removing a store that does not exist fails");

    // Placement has had two heartbeat rounds to act on anything: nothing changed.
    wait_heartbeats_after(&cluster, 1_000).await;
    let after = cluster.store_list().await.expect("store list");
    assert_eq!(identity(&after), identity(&stores), "the store list is unchanged: ids, addresses, states, region counts");
    assert_eq!(placement(&cluster.region_list().await.expect("region list")), regions, "every region keeps its peers");
    let status = cluster.store_status(1).await.expect("store status 1");
    assert_eq!(status["state"], "up", "{status}");
    p.say(format!("unchanged: {}; store status 1: {status}", brief(&after)));

    writers.wait_acked_more(500, Duration::from_secs(60), "after the refusals").await;
    let ledger = writers.stop().await;
    ledger.verify(&cluster.client(), 2_000).await;
    p.say(ledger.summary());
}

/// A store down longer than `--max-store-down-time-secs` has its regions (the
/// meta region's included) re-replicated on the others; when it comes back, the peers it still holds of
/// regions that moved on without it are removed (idle peer → `DestroyPeer`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_down_too_long_is_replaced_and_its_stale_peers_removed_on_return() {
    let p = Progress::new("a_store_down_too_long_is_replaced_and_its_stale_peers_removed_on_return");
    let mut cluster =
        Cluster::start(3, &["--region-split-size", "262144", "--heartbeat-interval-ms", HEARTBEAT_MS, "--max-store-down-time-secs", "8"])
            .await;
    let writers = Writers::start(Arc::new(cluster.client()), WriterSpec { keys_per_writer: 1_000, ..WriterSpec::new("down", 512) });
    writers.wait_acked_more(4_000, Duration::from_secs(120), "before the fourth store joins").await;
    let n4 = cluster.join_node(&[]);
    let s4 = register(&mut cluster, n4, &p).await;
    admit(&cluster, s4, n4, &p).await;

    // Stop a store that does not lead meta (the test asks meta throughout).
    let meta = cluster.meta_leader().await;
    let victim = (0..3).find(|i| *i != meta).expect("a store other than the meta leader");
    let victim_store = cluster.store_id(victim);
    let before: Vec<(u64, u64)> =
        cluster.status(victim).await.expect("status").regions.iter().map(|r| (r.region.as_ref().map_or(0, |x| x.id), r.peer_id)).collect();
    cluster.kill9(victim);
    p.say(format!("SIGKILLed {} (store {victim_store}, {} peers); {}", cluster.nodes[victim].name, before.len(), writers.progress()));

    // The region list shows data regions only; the store's status counts the
    // meta region too, which must have moved as well before the store returns
    // (else its meta peer is still a member, not stale).
    wait_until(PHASE, Duration::from_secs(2), "the down store's regions re-replicated elsewhere", || async {
        let stores = cluster.store_list().await?;
        let state = find(&stores, victim_store)?.state.clone();
        let (voters, learners) = peers_on_store(&cluster.region_list().await?, victim_store);
        let held = cluster.store_status(victim_store).await?["region_count"].as_u64();
        if state == "down" && voters + learners == 0 && held == Some(0) {
            Ok(())
        } else {
            Err(format!(
                "{}; store {victim_store}: {state}, {voters} voters, {learners} learners, {held:?} regions with the meta region",
                brief(&stores)
            ))
        }
    })
    .await;
    p.say(format!(
        "store {victim_store} is down and holds no peer in the directory: {}",
        brief(&cluster.store_list().await.expect("store list"))
    ));

    cluster.restart(victim);
    let remaining = wait_until(PHASE, Duration::from_secs(2), "the returned store's stale peers to be removed", || async {
        let held: Vec<(u64, u64)> =
            cluster.status(victim).await?.regions.iter().map(|r| (r.region.as_ref().map_or(0, |x| x.id), r.peer_id)).collect();
        let stale: Vec<&(u64, u64)> = held.iter().filter(|h| before.contains(h)).collect();
        if stale.is_empty() { Ok(held.len()) } else { Err(format!("still holds {} old peers: {stale:?}", stale.len())) }
    })
    .await;
    let stores = cluster.store_list().await.expect("store list");
    p.say(format!("store {victim_store} back: no stale peer left, {remaining} peers now; {}", brief(&stores)));
    assert_eq!(find(&stores, victim_store).expect("the returned store").state, "up", "{}", brief(&stores));

    let ledger = writers.stop().await;
    ledger.verify(&cluster.live_client(), 1_000).await;
    p.say(format!("every acknowledged write reads back; {}", ledger.summary()));
}

/// The store list as `id:name:state:instance`, for progress lines.
fn named(stores: &[StoreView]) -> String {
    let text = |s: &StoreView, k: &str| s.raw[k].as_str().unwrap_or("?").to_string();
    let shown: Vec<String> =
        stores.iter().map(|s| format!("{}:{}:{}:{:.8}", s.id, text(s, "name"), s.state, text(s, "instance"))).collect();
    shown.join(" ")
}

/// A member whose data directory is lost comes back empty under its name with
/// the operator's arguments (`--initial-cluster-state existing`): it registers
/// as a new store (a new instance, so a new id, PENDING) instead of taking the
/// old id whose data is gone; it keeps that id across restarts. The old store
/// stays registered until it is drained (its peers move to the new one once
/// admitted) and removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_that_lost_its_data_comes_back_as_a_new_store() {
    let p = Progress::new("a_member_that_lost_its_data_comes_back_as_a_new_store");
    let mut cluster = Cluster::start(3, &["--heartbeat-interval-ms", HEARTBEAT_MS]).await;
    let writers = Writers::start(Arc::new(cluster.client()), WriterSpec { keys_per_writer: 500, ..WriterSpec::new("lost", 256) });
    writers.wait_acked_more(1_000, Duration::from_secs(60), "before the volume is lost").await;
    // Lose the data of a member that does not lead meta (the test asks meta throughout).
    let meta = cluster.meta_leader().await;
    let victim = (0..3).find(|i| *i != meta).expect("a store other than the meta leader");
    let (old, name, addr) = (cluster.store_id(victim), cluster.nodes[victim].name.clone(), cluster.nodes[victim].grpc.clone());
    cluster.restart_empty(victim, &["--initial-cluster-state", "existing"]);
    p.say(format!("{name} (store {old}) restarted on an empty data directory; {}", writers.progress()));

    let new = wait_until(Duration::from_secs(60), Duration::from_millis(500), &format!("{name} registered anew"), || async {
        let stores = cluster.store_list().await?;
        match stores.iter().find(|s| s.address == addr && s.id != old) {
            Some(s) => Ok(s.clone()),
            None => Err(named(&stores)),
        }
    })
    .await;
    cluster.nodes[victim].store_id = Some(new.id);
    let stores = cluster.store_list().await.expect("store list");
    p.say(format!("{name} registered as store {}: {}", new.id, named(&stores)));
    assert!(new.id > 3, "a new id from the allocator: {}", named(&stores));
    assert_eq!((new.state.as_str(), new.region_count), ("pending", 0), "a new store waits to be admitted: {:?}", new.raw);
    assert_eq!(new.raw["name"], name.as_str(), "{:?}", new.raw);
    assert!(new.raw["instance"].as_str().is_some_and(|i| i.len() == 32), "a joined store has an instance: {:?}", new.raw);
    let stale = find(&stores, old).expect("the old store stays registered");
    assert_ne!(stale.state, "tombstone", "{}", named(&stores));
    assert_eq!(stale.raw["instance"], "", "a bootstrapped store has no instance: {:?}", stale.raw);

    // Restarted on its new data directory, it is the same store.
    cluster.kill9(victim);
    cluster.restart(victim);
    cluster.wait_serving(victim, Duration::from_secs(60)).await;
    let status = cluster.status(victim).await.expect("status");
    assert_eq!(status.store.as_ref().map(|s| s.id), Some(new.id), "the identity survives a restart");
    let stores = cluster.store_list().await.expect("store list");
    assert_eq!(stores.iter().filter(|s| s.raw["name"] == name.as_str()).count(), 2, "no third store of that name: {}", named(&stores));

    // The operator's cleanup: admit the new store, drain the old one (its
    // peers move to the new store), remove it.
    p.say(format!("store join {}: {}", new.id, cluster.store_cmd("join", new.id).await.expect_json()));
    let out = cluster.store_cmd("drain", old).await;
    p.say(format!("store drain {old}: {}", out.expect_json()));
    // Store status counts the meta region too, as removal does.
    wait_until(PHASE, Duration::from_secs(2), &format!("store {old} drained"), || async {
        let status = cluster.store_status(old).await?;
        let (voters, learners) = peers_on_store(&cluster.region_list().await?, old);
        if status["region_count"] == 0 && status["leader_count"] == 0 && voters + learners == 0 {
            Ok(())
        } else {
            Err(format!("store {old}: {voters} voters, {learners} learners; status {status}; {}", snaps(&cluster).await))
        }
    })
    .await;
    let removed = cluster.store_cmd("remove", old).await.expect_json();
    p.say(format!("store remove {old}: {removed}"));
    let stores = cluster.store_list().await.expect("store list");
    assert_eq!(find(&stores, old).expect("the old store").state, "tombstone", "{}", named(&stores));
    wait_until(PHASE, Duration::from_secs(2), &format!("store {} up with voters", new.id), || async {
        let stores = cluster.store_list().await?;
        let (voters, learners) = peers_on_store(&cluster.region_list().await?, new.id);
        let state = find(&stores, new.id)?.state.clone();
        if state == "up" && voters > 0 && learners == 0 {
            Ok(())
        } else {
            Err(format!("{}; {voters} voters, {learners} learners", named(&stores)))
        }
    })
    .await;
    p.say(format!("store {} took {name}'s place: {}", new.id, named(&cluster.store_list().await.expect("store list"))));

    let ledger = writers.stop().await;
    ledger.verify(&cluster.client(), 2_000).await;
    p.say(format!("every acknowledged write reads back; {}", ledger.summary()));
}
