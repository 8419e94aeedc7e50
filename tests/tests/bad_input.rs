//! Malformed, oversized and garbage input gets a clear error and the node keeps
//! serving; `/metrics` passes `promtool check metrics`.

use std::time::Duration;

use shoal_proto::kv_client::KvClient;
use shoal_proto::{BatchWriteRequest, GetRequest, Mutation, PutRequest, ScanRequest, mutation};
use shoal_tests::{Cluster, http_get};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

async fn raw_client(addr: &str) -> KvClient<tonic::transport::Channel> {
    KvClient::connect(format!("http://{addr}")).await.expect("connect").max_encoding_message_size(64 << 20)
}

fn put(cf: &str, key: Vec<u8>, value: Vec<u8>) -> PutRequest {
    PutRequest { cf: cf.into(), key, value }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_invalid_argument_and_the_node_keeps_serving() {
    let mut cluster = Cluster::start(3, &["--column-family", "users"]).await;
    let leader = cluster.leader().await;
    let addr = cluster.nodes[leader].grpc.clone();
    let mut kv = raw_client(&addr).await;

    let cases: Vec<(&str, PutRequest)> = vec![
        ("empty key", put("default", vec![], b"v".to_vec())),
        ("key over 4 KiB", put("default", vec![b'k'; 4097], b"v".to_vec())),
        ("value over 8 MiB", put("default", b"k".to_vec(), vec![0; (8 << 20) + 1])),
        ("unknown column family", put("nope", b"k".to_vec(), b"v".to_vec())),
        ("internal column family", put("raft_log", b"k".to_vec(), b"v".to_vec())),
    ];
    for (what, req) in cases {
        let err = kv.put(req).await.expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(!err.message().is_empty(), "{what} explains itself");
    }
    // The limits are exact: the largest allowed key and value are accepted.
    kv.put(put("default", vec![b'k'; 4096], vec![7; 8 << 20])).await.expect("key of 4 KiB and value of 8 MiB are allowed");

    let err = kv.get(GetRequest { cf: "users".into(), key: vec![], consistency: 0 }).await.expect_err("empty key");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = kv.get(GetRequest { cf: "users".into(), key: b"k".to_vec(), consistency: 42 }).await.expect_err("bad consistency");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = kv.scan(ScanRequest { cf: "nope".into(), ..Default::default() }).await.expect_err("unknown cf");
    assert_eq!(err.code(), Code::InvalidArgument);
    let bad_op = Mutation { op: 9, cf: "default".into(), key: b"a".to_vec(), value: vec![] };
    let good = Mutation { op: mutation::Op::Put as i32, cf: "users".into(), key: b"atomic".to_vec(), value: b"x".to_vec() };
    let err = kv.batch_write(BatchWriteRequest { mutations: vec![good, bad_op] }).await.expect_err("bad op");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = kv.batch_write(BatchWriteRequest { mutations: vec![] }).await.expect_err("empty batch");
    assert_eq!(err.code(), Code::InvalidArgument);

    // Garbage on the gRPC and status ports: the connection fails, the node does not.
    for port_addr in [addr.clone(), cluster.nodes[leader].status.clone()] {
        let mut s = tokio::net::TcpStream::connect(&port_addr).await.expect("connect");
        s.write_all(b"\x16\x03\x01garbage that is neither HTTP/2 nor HTTP/1\r\n\r\n\x00\xff\xfe").await.expect("write");
        // The server answers (an HTTP/2 GOAWAY, or an HTTP 400) and closes the connection.
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buf = vec![0; 1024];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "{port_addr} closed the garbage connection");
    }

    // Nothing of the refused batch was applied, and the node still serves.
    let client = cluster.client();
    assert_eq!(client.get("users", b"atomic").await.expect("get"), None);
    client.put("users", b"after", b"fine").await.expect("put after bad input");
    assert_eq!(client.get("users", b"after").await.expect("get").as_deref(), Some(&b"fine"[..]));
    for i in 0..3 {
        assert!(cluster.nodes[i].is_running(), "node {i} survived");
    }

    let (code, metrics) = cluster.http_get(leader, "/metrics").await;
    assert_eq!(code, 200);
    let invalid: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("shoal_grpc_requests_total{") && l.contains("code=\"InvalidArgument\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(invalid >= 10.0, "InvalidArgument requests are counted ({invalid})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_endpoints_and_metrics_are_valid() {
    let mut cluster = Cluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    cluster.client().put("default", b"k", b"v").await.expect("put");
    for i in 0..3 {
        assert_eq!(cluster.http_get(i, "/healthz").await.0, 200);
        assert_eq!(cluster.http_get(i, "/readyz").await.0, 200);
    }
    assert_eq!(cluster.http_get(0, "/nope").await.0, 404);
    // Failpoints exist only on a node started with --enable-failpoints.
    let status = cluster.nodes[0].status.clone();
    let (code, body) = shoal_tests::try_http("PUT", &status, "/failpoints/slow-sync?ms=100", Duration::from_secs(10)).await.unwrap();
    assert_eq!((code, body.as_str()), (404, "failpoints are off: start the node with --enable-failpoints\n"));
    // Per-region gauges refresh when a peer changes role or falls asleep, and
    // every 10 Raft ticks (1 s) while it is awake.
    let status_addr = cluster.nodes[leader].status.clone();
    let metrics = shoal_tests::wait_for(Duration::from_secs(10), "leader gauges on /metrics", || {
        let addr = status_addr.clone();
        async move {
            let (_, m) = http_get(&addr, "/metrics").await;
            m.contains("shoal_region_is_leader{region=\"2\"} 1").then_some(m)
        }
    })
    .await;
    for name in [
        "shoal_grpc_requests_total",
        "shoal_grpc_request_duration_seconds_bucket",
        "shoal_raft_proposals_total",
        "shoal_region_commit_index",
        "shoal_region_applied_index",
        "shoal_store_leaders ",
        "shoal_store_regions 2", // the meta group and the first data region
        "shoal_wal_sync_duration_seconds_count",
    ] {
        assert!(metrics.contains(name), "/metrics has {name}");
    }

    shoal_tests::promtool_check(&metrics).unwrap_or_else(|e| panic!("{e}"));

    // Read when scraped: the engine's column families and levels, the process.
    for name in [
        "shoal_engine_sst_files{cf=\"default\",level=\"6\"}",
        "shoal_engine_sst_bytes{cf=\"raft_log\"}",
        "shoal_engine_pending_compaction_bytes{cf=\"default\"}",
        "shoal_engine_write_stopped 0",
        "shoal_store_round_duration_seconds_count",
        "shoal_apply_duration_seconds_count",
        "shoal_store_learners 0",
        "shoal_engine_block_cache_hits_total",
        "process_start_time_seconds",
    ] {
        assert!(metrics.contains(name), "/metrics has {name}");
    }
    let memtable = cluster.metric(leader, "shoal_engine_memtable_bytes", &[("cf", "default")]).await.expect("memtable bytes");
    assert!(memtable > 0.0, "the put is in the default CF's memtable ({memtable} B)");
    let rss = cluster.metric(leader, "process_resident_memory_bytes", &[]).await.expect("rss");
    assert!(rss > 10e6, "a node's resident memory is read from /proc ({rss} B)");
    assert!(cluster.metric(leader, "process_open_fds", &[]).await.expect("fds") >= 10.0, "RocksDB's files and sockets are open");
    // Set at each heartbeat; the meta leader alone reports the stores.
    let capacity = shoal_tests::wait_for(Duration::from_secs(10), "capacity on /metrics", || async {
        cluster.metric(leader, "shoal_store_capacity_bytes", &[]).await.filter(|c| *c > 0.0)
    })
    .await;
    let available = cluster.metric(leader, "shoal_store_available_bytes", &[]).await.expect("available");
    assert!(available > 0.0 && available <= capacity, "available {available} of {capacity}");
    let meta = cluster.meta_leader().await;
    let up = shoal_tests::wait_for(Duration::from_secs(10), "stores on the meta leader's /metrics", || async {
        cluster.metric(meta, "shoal_stores", &[("state", "up")]).await.filter(|n| *n == 3.0)
    })
    .await;
    assert_eq!(up, 3.0);
    let mut meta_leaders = 0.0;
    let mut elected = 0.0;
    for i in 0..3 {
        meta_leaders += cluster.metric_or_zero(i, "shoal_meta_leader", &[]).await;
        elected += cluster.metric_or_zero(i, "shoal_raft_leader_changes_total", &[]).await;
        if i != meta {
            assert_eq!(cluster.metric(i, "shoal_stores", &[]).await, None, "node {i} does not lead meta: no store counts");
        }
    }
    assert_eq!(meta_leaders, 1.0, "one store leads meta");
    let follower = (0..3).find(|&i| i != leader).expect("a follower");
    let received = cluster.metric_or_zero(follower, "shoal_raft_messages_received_total", &[("outcome", "received")]).await;
    assert!(received > 0.0, "a follower counts the Raft messages it received ({received})");
    assert!(elected >= 2.0, "the meta region and region 2 each elected a leader ({elected})");

    // A node that lost its peers is not ready, but still healthy.
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    for &i in &others {
        cluster.nodes[i].kill9();
    }
    shoal_tests::wait_for(Duration::from_secs(30), "the isolated node to report not ready", || {
        let status = cluster.nodes[leader].status.clone();
        async move { (http_get(&status, "/readyz").await.0 == 503).then_some(()) }
    })
    .await;
    assert_eq!(cluster.http_get(leader, "/healthz").await.0, 200);
}
