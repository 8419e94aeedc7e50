//! The store lifecycle calls (library and `shoalctl store ...`) against fake
//! in-process stores serving `Admin` and `Meta`: only the meta leader answers,
//! the others name it; refusals come back as FAILED_PRECONDITION with a reason.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_client::{Client, ClientError, ClientOptions, StoreState};
use shoal_proto::admin_server::{Admin, AdminServer};
use shoal_proto::meta_server::{Meta, MetaServer};
use shoal_proto::{
    AllocIdRequest, AllocIdResponse, GetRegionByKeyRequest, GetRegionByKeyResponse, GetStoreRequest, GetStoreResponse, HeartbeatRequest,
    HeartbeatResponse, ListStoresRequest, ListStoresResponse, MetaHeader, NotLeader, Peer, RegionError, RegisterStoreRequest,
    RegisterStoreResponse, ScanRegionsRequest, ScanRegionsResponse, StoreDetail, StoreLabels, StoreMeta, StoreRequest, StoreStats,
    StoreStatus, StoreStatusResponse,
};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

const RF: usize = 3;

#[derive(Default)]
struct Registry {
    /// Store id → (address, state, peers it holds).
    stores: BTreeMap<u64, (String, StoreState, u64)>,
    meta_leader: u64,
    /// (store that answered, method).
    calls: Vec<(u64, &'static str)>,
}

type Shared = Arc<Mutex<Registry>>;

#[derive(Clone)]
struct Fake {
    id: u64,
    reg: Shared,
}

fn status_of(id: u64, addr: &str, state: StoreState, peers: u64) -> StoreStatus {
    StoreStatus {
        store: Some(StoreMeta { id, name: format!("s{id}"), address: addr.to_string(), state: state as i32, ..Default::default() }),
        state: state as i32,
        region_count: peers,
        leader_count: 0,
        learner_count: 0,
        bytes_to_move: if state == StoreState::Draining { peers * 1000 } else { 0 },
        last_heartbeat_ms: 1,
        stats: None,
    }
}

impl Fake {
    fn reg(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.reg.lock().expect("registry")
    }

    /// `None` if this store leads meta, else the header naming the leader.
    fn gate(&self, method: &'static str) -> Option<MetaHeader> {
        let mut r = self.reg();
        r.calls.push((self.id, method));
        if r.meta_leader == self.id {
            return None;
        }
        let leader = r.meta_leader;
        let leader_addr = r.stores[&leader].0.clone();
        Some(MetaHeader {
            region_error: Some(RegionError {
                message: "not leader".into(),
                not_leader: Some(NotLeader {
                    region_id: 1,
                    leader: Some(Peer { id: leader, store_id: leader, is_learner: false }),
                    leader_addr,
                }),
                ..Default::default()
            }),
        })
    }

    /// Moves `id` from one of `from` to `to`, or refuses.
    fn transition(
        &self,
        method: &'static str,
        id: u64,
        from: &[StoreState],
        to: StoreState,
    ) -> Result<Response<StoreStatusResponse>, Status> {
        if let Some(h) = self.gate(method) {
            return Ok(Response::new(StoreStatusResponse { header: Some(h), status: None }));
        }
        let mut r = self.reg();
        let up = r.stores.iter().filter(|(s, (_, st, _))| **s != id && matches!(st, StoreState::Up | StoreState::Joining)).count();
        let Some((addr, state, peers)) = r.stores.get_mut(&id) else { return Err(Status::not_found(format!("no store {id}"))) };
        if to == StoreState::Draining && up < RF {
            return Err(Status::failed_precondition(format!("draining store {id} would leave {up} stores up, fewer than {RF}")));
        }
        if to == StoreState::Tombstone && *peers > 0 {
            return Err(Status::failed_precondition(format!("store {id} still holds {peers} peers (0 leaders)")));
        }
        if *state != to && !from.contains(state) {
            return Err(Status::failed_precondition(format!("store {id} is {state:?}")));
        }
        *state = to;
        Ok(Response::new(StoreStatusResponse { header: None, status: Some(status_of(id, addr, *state, *peers)) }))
    }
}

#[tonic::async_trait]
impl Admin for Fake {
    async fn register_store(&self, _: Request<RegisterStoreRequest>) -> Result<Response<RegisterStoreResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn set_store_labels(&self, _: Request<StoreLabels>) -> Result<Response<StoreStatusResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn join_store(&self, r: Request<StoreRequest>) -> Result<Response<StoreStatusResponse>, Status> {
        self.transition("join", r.into_inner().store_id, &[StoreState::Pending], StoreState::Joining)
    }

    async fn drain_store(&self, r: Request<StoreRequest>) -> Result<Response<StoreStatusResponse>, Status> {
        self.transition("drain", r.into_inner().store_id, &[StoreState::Up, StoreState::Joining], StoreState::Draining)
    }

    async fn cancel_drain(&self, r: Request<StoreRequest>) -> Result<Response<StoreStatusResponse>, Status> {
        self.transition("cancel_drain", r.into_inner().store_id, &[StoreState::Draining], StoreState::Up)
    }

    async fn remove_store(&self, r: Request<StoreRequest>) -> Result<Response<StoreStatusResponse>, Status> {
        self.transition("remove", r.into_inner().store_id, &[StoreState::Draining], StoreState::Tombstone)
    }

    async fn store_status(&self, r: Request<StoreRequest>) -> Result<Response<StoreStatusResponse>, Status> {
        let id = r.into_inner().store_id;
        let now = self.reg().stores.get(&id).map_or(StoreState::Unknown, |s| s.1);
        self.transition("status", id, &[], now)
    }
}

#[tonic::async_trait]
impl Meta for Fake {
    async fn get_region_by_key(&self, _: Request<GetRegionByKeyRequest>) -> Result<Response<GetRegionByKeyResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn scan_regions(&self, _: Request<ScanRegionsRequest>) -> Result<Response<ScanRegionsResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn get_store(&self, _: Request<GetStoreRequest>) -> Result<Response<GetStoreResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn list_stores(&self, _: Request<ListStoresRequest>) -> Result<Response<ListStoresResponse>, Status> {
        if let Some(h) = self.gate("list_stores") {
            return Ok(Response::new(ListStoresResponse { header: Some(h), stores: vec![] }));
        }
        let r = self.reg();
        let stores = r
            .stores
            .iter()
            .map(|(id, (addr, st, peers))| StoreDetail {
                store: Some(StoreMeta { id: *id, name: format!("s{id}"), address: addr.clone(), state: *st as i32, ..Default::default() }),
                stats: Some(StoreStats { region_count: *peers, leader_count: 1, ..Default::default() }),
            })
            .collect();
        Ok(Response::new(ListStoresResponse { header: None, stores }))
    }

    async fn alloc_id(&self, _: Request<AllocIdRequest>) -> Result<Response<AllocIdResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn heartbeat(&self, _: Request<HeartbeatRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
}

struct Cluster {
    reg: Shared,
    addrs: Vec<String>,
}

/// Stores 1..=4 (store 4 PENDING, holding nothing; the others UP with 5
/// peers each); store 2 leads meta.
async fn start() -> Cluster {
    let reg: Shared = Arc::new(Mutex::new(Registry { meta_leader: 2, ..Default::default() }));
    let mut addrs = Vec::new();
    for id in 1..=4u64 {
        let incoming = TcpIncoming::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
        let addr = incoming.local_addr().expect("addr").to_string();
        let (state, peers) = if id == 4 { (StoreState::Pending, 0) } else { (StoreState::Up, 5) };
        reg.lock().expect("registry").stores.insert(id, (addr.clone(), state, peers));
        addrs.push(addr);
        let fake = Fake { id, reg: reg.clone() };
        let router = Server::builder().add_service(AdminServer::new(fake.clone())).add_service(MetaServer::new(fake));
        tokio::spawn(router.serve_with_incoming(incoming));
    }
    Cluster { reg, addrs }
}

impl Cluster {
    fn client(&self) -> Client {
        let opts = ClientOptions { deadline: Duration::from_secs(5), attempt_timeout: Duration::from_secs(2), ..Default::default() };
        Client::new(&[self.addrs[0].clone()], opts).expect("client")
    }

    fn set(&self, id: u64, state: StoreState, peers: u64) {
        let mut r = self.reg.lock().expect("registry");
        let s = r.stores.get_mut(&id).expect("store");
        s.1 = state;
        s.2 = peers;
    }

    /// Runs shoalctl against store 1 (which does not lead meta).
    async fn shoalctl(&self, args: &[&str]) -> (i32, String, String) {
        let mut argv = vec!["--endpoints".to_string(), self.addrs[0].clone()];
        argv.extend(args.iter().map(|a| a.to_string()));
        let out = tokio::task::spawn_blocking(move || Command::new(env!("CARGO_BIN_EXE_shoalctl")).args(&argv).output())
            .await
            .expect("join")
            .expect("run shoalctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_calls_reach_the_meta_leader_and_refusals_are_typed() {
    let c = start().await;
    let client = c.client();
    let s = client.join_store(4).await.expect("join");
    assert_eq!(s.state, StoreState::Joining as i32);
    // Store 4 is seeded (UP now); drain store 3: three stay up.
    c.set(4, StoreState::Up, 5);
    let s = client.drain_store(3).await.expect("drain");
    assert_eq!((s.state, s.bytes_to_move), (StoreState::Draining as i32, 5000));
    // Draining another would leave two: refused, with the server's reason.
    match client.drain_store(1).await {
        Err(ClientError::FailedPrecondition(m)) => assert!(m.contains("fewer than 3"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    match client.remove_store(3).await {
        Err(ClientError::FailedPrecondition(m)) => assert!(m.contains("still holds 5 peers"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(client.cancel_drain(3).await.expect("cancel").state, StoreState::Up as i32);
    client.drain_store(3).await.expect("drain again");
    c.set(3, StoreState::Draining, 0);
    assert_eq!(client.remove_store(3).await.expect("remove").state, StoreState::Tombstone as i32);
    assert_eq!(client.store_status(3).await.expect("status").state, StoreState::Tombstone as i32);
    assert!(matches!(client.store_status(42).await, Err(ClientError::NotFound(m)) if m.contains("no store 42")));
    let calls = c.reg.lock().expect("registry").calls.clone();
    assert_eq!(calls.iter().filter(|(s, _)| *s != 2).count(), 1, "one redirect, then the meta leader only: {calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shoalctl_store_commands() {
    let c = start().await;
    let (code, out, err) = c.shoalctl(&["--output", "json", "store", "join", "4"]).await;
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!((v["id"].as_u64(), v["state"].as_str()), (Some(4), Some("joining")));

    let (code, out, err) = c.shoalctl(&["store", "drain", "3"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("draining") && out.contains("4.9 KiB"), "{out}");

    // Refused: nonzero, with the server's reason, and nothing on stdout.
    let (code, out, err) = c.shoalctl(&["store", "remove", "3"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("store 3 still holds 5 peers"), "{err}");
    assert!(out.is_empty(), "{out}");
    let (code, _, err) = c.shoalctl(&["store", "drain", "1"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("fewer than 3"), "{err}");
    let (code, _, err) = c.shoalctl(&["store", "status", "42"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("no store 42"), "{err}");

    let (code, _, err) = c.shoalctl(&["store", "cancel-drain", "3"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = c.shoalctl(&["--output", "json", "store", "status", "3"]).await;
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!((v["state"].as_str(), v["region_count"].as_u64()), (Some("up"), Some(5)));

    let (code, out, err) = c.shoalctl(&["--output", "json", "store", "list"]).await;
    assert_eq!(code, 0, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).expect("json");
    let list = list.as_array().expect("an array");
    assert_eq!(list.len(), 4);
    for s in list {
        for field in ["id", "address", "state", "region_count", "leader_count"] {
            assert!(s.get(field).is_some(), "{field} in {s}");
        }
    }
    assert_eq!(list[3]["state"], "joining");
}
