//! The client port (`--client-listen-addr`) with real processes. A running
//! 3-node cluster is restarted node by node with a client port each (adding
//! the port to a live cluster); meta then lists every store's client address,
//! and every store learns them from its heartbeats' answers.
//! On a client port, `Kv` and `Meta`'s lookups are served and `NotLeader`
//! hints name client addresses, while `Raft`, `Admin` and the stores' own
//! `Meta` calls (`Heartbeat`, `AllocId`) are refused; the peer port still
//! serves everything with peer addresses in its hints. A client given only
//! client ports reads what was written before, writes, and keeps writing
//! while the data region's leader is stopped and started again.

use std::collections::BTreeMap;
use std::time::Duration;

use shoal_client::{Client, ClientOptions};
use shoal_proto::admin_client::AdminClient;
use shoal_proto::kv_client::KvClient;
use shoal_proto::meta_client::MetaClient;
use shoal_proto::raft_client::RaftClient;
use shoal_proto::{
    AllocIdRequest, GetRegionByKeyRequest, HeartbeatRequest, PutRequest, RaftMessage, RaftMessageBatch, StoreMeta, StoreRequest,
};
use shoal_tests::{Cluster, free_ports, wait_until};
use tonic::Code;
use tonic::transport::Channel;

async fn channel(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}")).expect("endpoint").connect().await.expect("connect")
}

/// The `NotLeader` hint a Put to `addr` gets, if the store there does not lead the key's region.
async fn put_hint(addr: &str, key: &[u8]) -> Option<String> {
    let resp = KvClient::new(channel(addr).await)
        .put(PutRequest { cf: "default".into(), key: key.to_vec(), value: b"v".to_vec() })
        .await
        .expect("a Put answer")
        .into_inner();
    resp.header.and_then(|h| h.region_error).and_then(|e| e.not_leader).map(|nl| nl.leader_addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_port_serves_clients_only_and_names_client_addresses() {
    let mut cluster = Cluster::start(3, &["--heartbeat-interval-ms", "300"]).await;
    let before = cluster.client();
    for i in 0..50 {
        before.put("default", format!("before/{i:02}").as_bytes(), b"1").await.expect("a write before the client ports");
    }

    // A client port on each node, one restart at a time.
    let client_addrs: Vec<String> = free_ports(3).into_iter().map(|p| format!("127.0.0.1:{p}")).collect();
    for (i, addr) in client_addrs.iter().enumerate() {
        assert!(cluster.terminate(i, Duration::from_secs(30)), "n{} stops on SIGTERM", i + 1);
        cluster.restart_with(i, &["--client-listen-addr", addr]);
        cluster.wait_serving(i, Duration::from_secs(60)).await;
    }
    let peer_addrs = cluster.endpoints();
    let by_id: BTreeMap<u64, String> = (0..3).map(|i| (cluster.store_id(i), client_addrs[i].clone())).collect();
    wait_until(Duration::from_secs(30), Duration::from_millis(200), "meta lists every client address", || async {
        let stores = before.list_stores().await.map_err(|e| e.to_string())?;
        let listed: BTreeMap<u64, String> = stores.into_iter().filter_map(|d| d.store).map(|s| (s.id, s.client_address)).collect();
        if listed != by_id {
            return Err(format!("meta lists {listed:?}"));
        }
        // Each store learns them from its heartbeats' answers (for its hints).
        for i in 0..3 {
            let known: BTreeMap<u64, String> = cluster.status(i).await?.stores.into_iter().map(|s| (s.id, s.client_address)).collect();
            if known != by_id {
                return Err(format!("n{} knows {known:?}", i + 1));
            }
        }
        Ok(())
    })
    .await;

    // Hints: client addresses on client ports, peer addresses on peer ports.
    for (port, addrs, other) in [("client", &client_addrs, &peer_addrs), ("peer", &peer_addrs, &client_addrs)] {
        let mut hints = Vec::new();
        for addr in addrs.iter() {
            if let Some(hint) = put_hint(addr, b"hinted").await {
                hints.push(hint);
            }
        }
        assert!(!hints.is_empty(), "no follower answered NotLeader on the {port} ports");
        for hint in &hints {
            assert!(addrs.contains(hint) && !other.contains(hint), "a hint on a {port} port names {hint}, not a {port} address");
        }
    }

    // Meta's lookups on the client ports: the leader answers with client
    // addresses; the others point at it by its client address.
    let mut answered = 0;
    for addr in &client_addrs {
        let resp = MetaClient::new(channel(addr).await)
            .get_region_by_key(GetRegionByKeyRequest { key: b"before/00".to_vec() })
            .await
            .expect("GetRegionByKey on a client port")
            .into_inner();
        match resp.header.and_then(|h| h.region_error) {
            Some(e) => {
                let hint = e.not_leader.map(|nl| nl.leader_addr).unwrap_or_default();
                assert!(client_addrs.contains(&hint), "meta's hint on a client port: {hint:?}");
            }
            None => {
                answered += 1;
                assert!(!resp.stores.is_empty());
                for s in &resp.stores {
                    assert_eq!(Some(&s.client_address), by_id.get(&s.id), "{s:?}");
                }
            }
        }
    }
    assert_eq!(answered, 1, "one meta leader answers");

    // What only stores and the operator call is not served on a client port.
    let to = &client_addrs[0];
    let raft = RaftClient::new(channel(to).await)
        .send(futures::stream::iter(vec![RaftMessageBatch { messages: vec![RaftMessage::default()] }]))
        .await
        .expect_err("Raft.Send on a client port");
    assert_eq!(raft.code(), Code::Unimplemented, "{raft}");
    let admin = AdminClient::new(channel(to).await)
        .drain_store(StoreRequest { store_id: cluster.store_id(2) })
        .await
        .expect_err("Admin.DrainStore on a client port");
    assert_eq!(admin.code(), Code::Unimplemented, "{admin}");
    for addr in &client_addrs {
        let mut meta = MetaClient::new(channel(addr).await);
        let forged = StoreMeta { id: 99, name: "forged".into(), address: "127.0.0.1:1".into(), ..Default::default() };
        let hb = meta.heartbeat(HeartbeatRequest { store: Some(forged), ..Default::default() }).await.expect_err("a heartbeat");
        assert_eq!(hb.code(), Code::PermissionDenied, "{hb}");
        let ids = meta.alloc_id(AllocIdRequest { count: 1 }).await.expect_err("AllocId");
        assert_eq!(ids.code(), Code::PermissionDenied, "{ids}");
    }
    let stores = before.list_stores().await.expect("list stores");
    assert!(stores.iter().all(|d| d.store.as_ref().is_some_and(|s| s.id != 99)), "the forged heartbeat registered a store");
    assert!(before.status_of(&client_addrs[1]).await.is_ok(), "Status on a client port");

    // A client that knows only the client ports.
    let opts = ClientOptions { deadline: Duration::from_secs(20), ..ClientOptions::default() };
    let app = Client::new(&client_addrs, opts).expect("client");
    for i in 0..50 {
        assert_eq!(app.get("default", format!("before/{i:02}").as_bytes()).await.expect("read"), Some(b"1".to_vec()));
    }
    let leader = cluster.wait_leader(Duration::from_secs(30)).await;
    assert!(cluster.terminate(leader, Duration::from_secs(30)), "the leader stops on SIGTERM");
    for i in 0..50 {
        app.put("default", format!("during/{i:02}").as_bytes(), b"2").await.expect("a write while the leader is away");
    }
    cluster.restart(leader);
    cluster.wait_serving(leader, Duration::from_secs(60)).await;
    for i in 0..50 {
        app.put("default", format!("after/{i:02}").as_bytes(), b"3").await.expect("a write after");
    }
    let all = app.scan("default", b"", b"", 1000).await.expect("scan");
    assert_eq!(all.len(), 150 + 1, "before, during, after and the hinted key: {}", all.len());
}
