//! The client's routing against a fake cluster: in-process gRPC stores that
//! serve `Kv` (and `Meta`) the way the protocol describes — each store serves
//! only keys of regions it leads, answers `not_leader` with the leader's address
//! otherwise, stops scans at its region's end — over a shared, scriptable truth
//! (regions, leaders, a possibly lagging Meta directory, injected faults). Each
//! test checks both the results and which store served what.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_client::{Client, ClientError, ClientOptions, Mutation, mutation};
use shoal_proto::kv_server::{Kv, KvServer};
use shoal_proto::meta_server::{Meta, MetaServer};
use shoal_proto::{
    AllocIdRequest, AllocIdResponse, BatchWriteRequest, BatchWriteResponse, DeleteRequest, DeleteResponse, EpochNotMatch,
    GetRegionByKeyRequest, GetRegionByKeyResponse, GetRequest, GetResponse, GetStoreRequest, GetStoreResponse, HeartbeatRequest,
    HeartbeatResponse, KeyNotInRegion, KvPair, ListStoresRequest, ListStoresResponse, MetaHeader, NotLeader, Peer, PutRequest, PutResponse,
    Region, RegionEpoch, RegionError, RegionInfo, ResponseHeader, ScanRegionsRequest, ScanRegionsResponse, ScanRequest, ScanResponse,
    ServerIsBusy, StoreDetail, StoreMeta, StoreState,
};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Busy,
    /// gRPC UNKNOWN: the write may have happened (it does not, here).
    Unknown,
    /// gRPC UNAVAILABLE from the server: nothing was done.
    Unavailable,
    InvalidArgument,
    /// EpochNotMatch with the true regions overlapping the key's old region.
    EpochNotMatch,
    /// NotLeader naming this store as the leader of the key's region.
    NotLeaderPointingAt(u64),
}

/// One Kv request as a store saw it: (store, method, first key, outcome).
type Served = (u64, &'static str, Vec<u8>, String);

#[derive(Default)]
struct Truth {
    /// The regions as they are, with their leader's store.
    regions: Vec<(Region, u64)>,
    /// The regions as Meta reports them (may lag behind `regions`).
    directory: Vec<(Region, u64)>,
    stores: Vec<(u64, String)>,
    meta_leader: u64,
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Faults for the next Kv requests to a store, in order.
    faults: VecDeque<(u64, Fault)>,
    served: Vec<Served>,
    meta_calls: Vec<(u64, &'static str)>,
    next_id: u64,
}

fn contains(r: &Region, key: &[u8]) -> bool {
    r.start_key.as_slice() <= key && (r.end_key.is_empty() || key < r.end_key.as_slice())
}

impl Truth {
    fn addr(&self, store: u64) -> String {
        self.stores.iter().find(|(id, _)| *id == store).map(|(_, a)| a.clone()).unwrap_or_default()
    }

    fn region_of(regions: &[(Region, u64)], key: &[u8]) -> Option<(Region, u64)> {
        regions.iter().find(|(r, _)| contains(r, key)).cloned()
    }

    fn not_leader(&self, region_id: u64, leader: u64) -> RegionError {
        RegionError {
            message: format!("not leader of region {region_id}"),
            not_leader: Some(NotLeader {
                region_id,
                leader: Some(Peer { id: region_id * 100 + leader, store_id: leader, is_learner: false }),
                leader_addr: self.addr(leader),
            }),
            ..Default::default()
        }
    }
}

type Shared = Arc<Mutex<Truth>>;

#[derive(Clone)]
struct FakeStore {
    id: u64,
    truth: Shared,
}

fn header(e: RegionError) -> Option<ResponseHeader> {
    Some(ResponseHeader { region_error: Some(e) })
}

impl FakeStore {
    fn truth(&self) -> std::sync::MutexGuard<'_, Truth> {
        self.truth.lock().expect("truth")
    }

    /// Decides whether this store serves a request for `key`: the region it
    /// serves, or the region error (or gRPC error) to answer with.
    fn route(&self, method: &'static str, key: &[u8]) -> Result<Result<Region, RegionError>, Status> {
        let mut t = self.truth();
        let fault = t.faults.iter().position(|(s, _)| *s == self.id).and_then(|i| t.faults.remove(i)).map(|(_, f)| f);
        let (region, leader) = Truth::region_of(&t.regions, key).expect("the fake's regions cover every key");
        let outcome: Result<Result<Region, RegionError>, Status> = match fault {
            Some(Fault::Busy) => Ok(Err(RegionError {
                message: "busy".into(),
                server_is_busy: Some(ServerIsBusy { reason: "test".into() }),
                ..Default::default()
            })),
            Some(Fault::Unknown) => Err(Status::unknown("the write may or may not have happened")),
            Some(Fault::Unavailable) => Err(Status::unavailable("no leader yet")),
            Some(Fault::InvalidArgument) => Err(Status::invalid_argument("unknown column family")),
            Some(Fault::EpochNotMatch) => Ok(Err(RegionError {
                message: "epoch not match".into(),
                epoch_not_match: Some(EpochNotMatch { current_regions: t.regions.iter().map(|(r, _)| r.clone()).collect() }),
                ..Default::default()
            })),
            Some(Fault::NotLeaderPointingAt(s)) => Ok(Err(t.not_leader(region.id, s))),
            None if leader != self.id => Ok(Err(t.not_leader(region.id, leader))),
            None => Ok(Ok(region)),
        };
        let label = match &outcome {
            Ok(Ok(_)) => "ok".to_string(),
            Ok(Err(e)) if e.not_leader.is_some() => "not_leader".into(),
            Ok(Err(e)) if e.server_is_busy.is_some() => "busy".into(),
            Ok(Err(e)) if e.epoch_not_match.is_some() => "epoch_not_match".into(),
            Ok(Err(_)) => "region_error".into(),
            Err(s) => format!("{:?}", s.code()),
        };
        t.served.push((self.id, method, key.to_vec(), label));
        outcome
    }
}

#[tonic::async_trait]
impl Kv for FakeStore {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let req = request.into_inner();
        Ok(Response::new(match self.route("get", &req.key)? {
            Err(e) => GetResponse { header: header(e), ..Default::default() },
            Ok(_) => {
                let v = self.truth().data.get(&req.key).cloned();
                GetResponse { header: None, found: v.is_some(), value: v.unwrap_or_default() }
            }
        }))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let req = request.into_inner();
        Ok(Response::new(match self.route("put", &req.key)? {
            Err(e) => PutResponse { header: header(e) },
            Ok(_) => {
                self.truth().data.insert(req.key, req.value);
                PutResponse { header: None }
            }
        }))
    }

    async fn delete(&self, request: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        let req = request.into_inner();
        Ok(Response::new(match self.route("delete", &req.key)? {
            Err(e) => DeleteResponse { header: header(e) },
            Ok(_) => {
                self.truth().data.remove(&req.key);
                DeleteResponse { header: None }
            }
        }))
    }

    async fn scan(&self, request: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        let req = request.into_inner();
        let region = match self.route("scan", &req.start_key)? {
            Err(e) => return Ok(Response::new(ScanResponse { header: header(e), ..Default::default() })),
            Ok(r) => r,
        };
        // Stop at the region's end, like a real store.
        let mut end = req.end_key.clone();
        let mut resume = Vec::new();
        if !region.end_key.is_empty() && (end.is_empty() || region.end_key < end) {
            end = region.end_key.clone();
            resume = region.end_key.clone();
        }
        let limit = if req.limit == 0 { 1000 } else { req.limit as usize };
        let t = self.truth();
        let mut pairs: Vec<KvPair> = t
            .data
            .range(req.start_key.clone()..)
            .take_while(|(k, _)| end.is_empty() || **k < end)
            .map(|(k, v)| KvPair { key: k.clone(), value: v.clone() })
            .take(limit + 1)
            .collect();
        if pairs.len() > limit {
            pairs.truncate(limit);
            let mut k = pairs[limit - 1].key.clone();
            k.push(0);
            resume = k;
        }
        Ok(Response::new(ScanResponse { header: None, pairs, resume_key: resume }))
    }

    async fn batch_write(&self, request: Request<BatchWriteRequest>) -> Result<Response<BatchWriteResponse>, Status> {
        let req = request.into_inner();
        let first = req.mutations.first().map(|m| m.key.clone()).unwrap_or_default();
        let region = match self.route("batch_write", &first)? {
            Err(e) => return Ok(Response::new(BatchWriteResponse { header: header(e) })),
            Ok(r) => r,
        };
        if let Some(m) = req.mutations.iter().find(|m| !contains(&region, &m.key)) {
            if let Some(last) = self.truth().served.last_mut() {
                last.3 = "key_not_in_region".into();
            }
            let e = RegionError {
                message: "key not in region".into(),
                key_not_in_region: Some(KeyNotInRegion {
                    key: m.key.clone(),
                    region_id: region.id,
                    start_key: region.start_key.clone(),
                    end_key: region.end_key.clone(),
                }),
                ..Default::default()
            };
            return Ok(Response::new(BatchWriteResponse { header: header(e) }));
        }
        let mut t = self.truth();
        for m in req.mutations {
            if m.op == mutation::Op::Delete as i32 {
                t.data.remove(&m.key);
            } else {
                t.data.insert(m.key, m.value);
            }
        }
        Ok(Response::new(BatchWriteResponse { header: None }))
    }
}

impl FakeStore {
    /// `None` if this store leads the meta group, else the `not_leader` to answer.
    fn meta_gate(&self, method: &'static str) -> Option<MetaHeader> {
        let mut t = self.truth();
        t.meta_calls.push((self.id, method));
        if t.meta_leader == self.id {
            return None;
        }
        let leader = t.meta_leader;
        Some(MetaHeader { region_error: Some(t.not_leader(0, leader)) })
    }

    fn store_meta(t: &Truth, id: u64) -> StoreMeta {
        StoreMeta { id, name: format!("s{id}"), address: t.addr(id), state: StoreState::Up as i32, ..Default::default() }
    }
}

#[tonic::async_trait]
impl Meta for FakeStore {
    async fn get_region_by_key(&self, request: Request<GetRegionByKeyRequest>) -> Result<Response<GetRegionByKeyResponse>, Status> {
        if let Some(h) = self.meta_gate("get_region_by_key") {
            return Ok(Response::new(GetRegionByKeyResponse { header: Some(h), ..Default::default() }));
        }
        let t = self.truth();
        let (region, leader) = Truth::region_of(&t.directory, &request.into_inner().key).expect("directory covers every key");
        let stores = region.peers.iter().map(|p| FakeStore::store_meta(&t, p.store_id)).collect();
        let info = RegionInfo { region: Some(region), leader_store_id: leader, ..Default::default() };
        Ok(Response::new(GetRegionByKeyResponse { header: None, region: Some(info), stores }))
    }

    async fn scan_regions(&self, request: Request<ScanRegionsRequest>) -> Result<Response<ScanRegionsResponse>, Status> {
        if let Some(h) = self.meta_gate("scan_regions") {
            return Ok(Response::new(ScanRegionsResponse { header: Some(h), ..Default::default() }));
        }
        let req = request.into_inner();
        let t = self.truth();
        let mut regions: Vec<RegionInfo> = t
            .directory
            .iter()
            .filter(|(r, _)| (r.end_key.is_empty() || r.end_key > req.start_key) && (req.end_key.is_empty() || r.start_key < req.end_key))
            .map(|(r, l)| RegionInfo { region: Some(r.clone()), leader_store_id: *l, approximate_keys: 1, ..Default::default() })
            .collect();
        if req.limit != 0 {
            regions.truncate(req.limit as usize);
        }
        Ok(Response::new(ScanRegionsResponse { header: None, regions }))
    }

    async fn get_store(&self, request: Request<GetStoreRequest>) -> Result<Response<GetStoreResponse>, Status> {
        if let Some(h) = self.meta_gate("get_store") {
            return Ok(Response::new(GetStoreResponse { header: Some(h), ..Default::default() }));
        }
        let id = request.into_inner().store_id;
        let t = self.truth();
        if !t.stores.iter().any(|(s, _)| *s == id) {
            return Err(Status::not_found(format!("no store {id}")));
        }
        Ok(Response::new(GetStoreResponse {
            header: None,
            store: Some(StoreDetail { store: Some(FakeStore::store_meta(&t, id)), stats: None }),
        }))
    }

    async fn list_stores(&self, _: Request<ListStoresRequest>) -> Result<Response<ListStoresResponse>, Status> {
        if let Some(h) = self.meta_gate("list_stores") {
            return Ok(Response::new(ListStoresResponse { header: Some(h), ..Default::default() }));
        }
        let t = self.truth();
        let stores = t.stores.iter().map(|(id, _)| StoreDetail { store: Some(FakeStore::store_meta(&t, *id)), stats: None }).collect();
        Ok(Response::new(ListStoresResponse { header: None, stores }))
    }

    async fn alloc_id(&self, request: Request<AllocIdRequest>) -> Result<Response<AllocIdResponse>, Status> {
        if let Some(h) = self.meta_gate("alloc_id") {
            return Ok(Response::new(AllocIdResponse { header: Some(h), ..Default::default() }));
        }
        let count = request.into_inner().count.max(1);
        let mut t = self.truth();
        let first = t.next_id;
        t.next_id += u64::from(count);
        Ok(Response::new(AllocIdResponse { header: None, first_id: first, count }))
    }

    async fn heartbeat(&self, _: Request<HeartbeatRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
}

struct FakeCluster {
    truth: Shared,
    addrs: Vec<String>,
}

fn region(id: u64, start: &str, end: &str, version: u64, stores: u64) -> Region {
    Region {
        id,
        start_key: start.into(),
        end_key: end.into(),
        epoch: Some(RegionEpoch { conf_ver: 1, version }),
        peers: (1..=stores).map(|s| Peer { id: id * 100 + s, store_id: s, is_learner: false }).collect(),
    }
}

impl FakeCluster {
    /// `stores` stores (ids 1..), regions given as (start, end, leader store),
    /// ids 1.. in that order; store `meta_leader` leads Meta (0: no store
    /// serves the Meta service at all).
    async fn start(stores: u64, layout: &[(&str, &str, u64)], meta_leader: u64) -> FakeCluster {
        let regions: Vec<(Region, u64)> =
            layout.iter().enumerate().map(|(i, &(s, e, l))| (region(i as u64 + 1, s, e, 1, stores), l)).collect();
        let truth = Arc::new(Mutex::new(Truth { directory: regions.clone(), regions, meta_leader, next_id: 1000, ..Default::default() }));
        let mut addrs = Vec::new();
        for id in 1..=stores {
            let incoming = TcpIncoming::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
            let addr = incoming.local_addr().expect("local addr").to_string();
            truth.lock().expect("truth").stores.push((id, addr.clone()));
            addrs.push(addr);
            let store = FakeStore { id, truth: truth.clone() };
            let mut router = Server::builder().add_service(KvServer::new(store.clone()));
            if meta_leader != 0 {
                router = router.add_service(MetaServer::new(store));
            }
            tokio::spawn(router.serve_with_incoming(incoming));
        }
        FakeCluster { truth, addrs }
    }

    fn client(&self, endpoints: &[usize]) -> Client {
        let eps: Vec<String> = endpoints.iter().map(|&i| self.addrs[i - 1].clone()).collect();
        Client::new(&eps, ClientOptions { deadline: Duration::from_secs(5), attempt_timeout: Duration::from_secs(2), ..Default::default() })
            .expect("client")
    }

    fn t(&self) -> std::sync::MutexGuard<'_, Truth> {
        self.truth.lock().expect("truth")
    }

    /// Splits the region holding `at` there: both halves get version + 1, the
    /// new right half (id `new_id`) is led by `right_leader`. With
    /// `tell_meta`, the directory learns of it too.
    fn split(&self, at: &str, new_id: u64, right_leader: u64, tell_meta: bool) {
        let mut t = self.t();
        let i = t.regions.iter().position(|(r, _)| contains(r, at.as_bytes())).expect("region");
        let (mut left, leader) = t.regions[i].clone();
        let mut right = left.clone();
        let version = left.epoch.map(|e| e.version).unwrap_or(0) + 1;
        left.end_key = at.into();
        left.epoch = Some(RegionEpoch { conf_ver: 1, version });
        right.id = new_id;
        right.start_key = at.into();
        right.epoch = Some(RegionEpoch { conf_ver: 1, version });
        for p in &mut right.peers {
            p.id = new_id * 100 + p.store_id;
        }
        t.regions[i] = (left, leader);
        t.regions.insert(i + 1, (right, right_leader));
        t.regions.sort_by(|a, b| a.0.start_key.cmp(&b.0.start_key));
        if tell_meta {
            t.directory = t.regions.clone();
        }
    }

    fn set_leader(&self, region_id: u64, store: u64, tell_meta: bool) {
        let mut t = self.t();
        for (r, l) in t.regions.iter_mut() {
            if r.id == region_id {
                *l = store;
            }
        }
        if tell_meta {
            t.directory = t.regions.clone();
        }
    }

    fn fault(&self, store: u64, f: Fault) {
        self.t().faults.push_back((store, f));
    }

    /// Forgets what the stores served so far.
    fn take_served(&self) -> Vec<Served> {
        std::mem::take(&mut self.t().served)
    }

    fn value(&self, key: &str) -> Option<String> {
        self.t().data.get(key.as_bytes()).map(|v| String::from_utf8_lossy(v).into_owned())
    }
}

/// (store, method, key, outcome) with the key as text, for assertions.
fn show(served: &[Served]) -> Vec<(u64, &'static str, String, String)> {
    served.iter().map(|(s, m, k, o)| (*s, *m, String::from_utf8_lossy(k).into_owned(), o.clone())).collect()
}

fn ok(store: u64, method: &'static str, key: &str) -> (u64, &'static str, String, String) {
    (store, method, key.to_string(), "ok".to_string())
}

fn put(key: &str, value: &str) -> Mutation {
    Mutation { op: mutation::Op::Put as i32, cf: String::new(), key: key.into(), value: value.into() }
}

const THREE_REGIONS: &[(&str, &str, u64)] = &[("", "g", 1), ("g", "p", 2), ("p", "", 3)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_goes_to_its_regions_leader_found_through_meta() {
    let c = FakeCluster::start(3, THREE_REGIONS, 2).await;
    // Only store 1 is configured; it does not lead Meta and says who does.
    let client = c.client(&[1]);
    for k in ["a", "h", "q", "g", "p"] {
        client.put("default", k.as_bytes(), k.as_bytes()).await.expect("put");
    }
    assert_eq!(
        show(&c.take_served()),
        vec![ok(1, "put", "a"), ok(2, "put", "h"), ok(3, "put", "q"), ok(2, "put", "g"), ok(3, "put", "p")],
        "each write went straight to its leader, boundary keys included"
    );
    let meta = c.t().meta_calls.clone();
    assert_eq!(meta.first(), Some(&(1, "get_region_by_key")), "Meta asked on the configured endpoint first");
    assert!(meta[1..].iter().all(|&(s, _)| s == 2), "then only at the Meta leader it named: {meta:?}");
    assert_eq!(meta.len(), 4, "one redirect, then one lookup per region (the cache serves the rest): {meta:?}");
    for k in ["a", "h", "q"] {
        assert_eq!(client.get("default", k.as_bytes()).await.expect("get").as_deref(), Some(k.as_bytes()));
    }
    assert!(show(&c.take_served()).iter().all(|(_, _, _, o)| o == "ok"));
    assert_eq!(c.t().meta_calls.len(), 4, "reads used the cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_crosses_regions_in_key_order() {
    let c = FakeCluster::start(3, THREE_REGIONS, 1).await;
    let client = c.client(&[1, 2, 3]);
    let letters: Vec<String> = ('a'..='z').map(String::from).collect();
    for k in &letters {
        c.t().data.insert(k.clone().into_bytes(), k.to_uppercase().into_bytes());
    }
    let keys =
        |pairs: Vec<(Vec<u8>, Vec<u8>)>| pairs.into_iter().map(|(k, _)| String::from_utf8_lossy(&k).into_owned()).collect::<Vec<_>>();
    let all = keys(client.scan("default", b"", b"", 0).await.expect("scan"));
    assert_eq!(all, letters, "every key once, in order, across three regions");
    let served = show(&c.take_served());
    assert_eq!(served, vec![ok(1, "scan", ""), ok(2, "scan", "g"), ok(3, "scan", "p")], "one request per region, at its leader");
    assert_eq!(keys(client.scan("default", b"c", b"r", 0).await.expect("scan")), letters[2..17].to_vec());
    assert_eq!(keys(client.scan("default", b"", b"", 10).await.expect("scan")), letters[..10].to_vec(), "limit across a region end");
    assert_eq!(keys(client.scan("default", b"h", b"", 3).await.expect("scan")), vec!["h", "i", "j"]);
    assert_eq!(keys(client.scan("default", b"f", b"g", 0).await.expect("scan")), vec!["f"], "end at a region boundary");
    assert!(keys(client.scan("default", b"zz", b"", 0).await.expect("scan")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_write_sends_one_batch_per_region() {
    let c = FakeCluster::start(3, THREE_REGIONS, 1).await;
    let client = c.client(&[1]);
    client.batch_write(vec![put("z", "1"), put("b", "2"), put("h", "3"), put("a", "4"), put("q", "5")]).await.expect("batch");
    let batches: Vec<_> = show(&c.take_served()).into_iter().filter(|(_, m, _, _)| *m == "batch_write").collect();
    assert_eq!(batches, vec![ok(1, "batch_write", "b"), ok(2, "batch_write", "h"), ok(3, "batch_write", "z")]);
    for (k, v) in [("z", "1"), ("b", "2"), ("h", "3"), ("a", "4"), ("q", "5")] {
        assert_eq!(c.value(k).as_deref(), Some(v));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_after_caching_is_followed() {
    let c = FakeCluster::start(3, &[("", "", 1)], 1).await;
    let client = c.client(&[1]);
    client.put("default", b"a", b"1").await.expect("put");
    client.put("default", b"x", b"1").await.expect("put");
    c.take_served();
    // Region 1 splits at "m"; store 2 leads the new right half. Meta knows.
    c.split("m", 9, 2, true);
    client.put("default", b"x", b"2").await.expect("put after split");
    assert_eq!(
        show(&c.take_served()),
        vec![(1, "put", "x".into(), "not_leader".into()), ok(2, "put", "x")],
        "store 1 names the new region's leader; the client goes there at once"
    );
    client.put("default", b"a", b"2").await.expect("put");
    client.put("default", b"y", b"2").await.expect("put");
    assert_eq!(show(&c.take_served()), vec![ok(1, "put", "a"), ok(2, "put", "y")], "both halves are routed directly now");
    assert_eq!((c.value("a").as_deref(), c.value("x").as_deref()), (Some("2"), Some("2")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_across_a_split_meta_has_not_seen_is_regrouped() {
    let c = FakeCluster::start(3, &[("", "", 1)], 1).await;
    let client = c.client(&[1]);
    client.put("default", b"a", b"0").await.expect("warm the cache");
    // The split happens, but Meta's directory lags: only the stores know.
    c.split("m", 9, 2, false);
    c.fault(1, Fault::EpochNotMatch);
    c.take_served();
    client.batch_write(vec![put("a", "1"), put("x", "1"), put("b", "1")]).await.expect("batch");
    let served = show(&c.take_served());
    assert_eq!(served[0], (1, "batch_write", "a".into(), "epoch_not_match".into()), "{served:?}");
    let oks: Vec<_> = served.iter().filter(|(_, _, _, o)| o == "ok").cloned().collect();
    assert_eq!(oks, vec![ok(1, "batch_write", "a"), ok(2, "batch_write", "x")], "regrouped by the halves the store sent: {served:?}");
    assert!(served.iter().all(|(_, _, _, o)| o != "key_not_in_region"), "the halves were known before regrouping: {served:?}");
    for k in ["a", "x", "b"] {
        assert_eq!(c.value(k).as_deref(), Some("1"), "{k}");
    }
    // A new client learns the unsplit region from the lagging Meta. Its batch
    // goes to store 1 as one group, which refuses it (KeyNotInRegion, with
    // region 1's bounds now); the client narrows region 1 and regroups; "z" is
    // then routed by Meta's stale answer to store 1, which names store 2.
    let fresh = c.client(&[1]);
    fresh.put("default", b"a", b"2").await.expect("put");
    c.take_served();
    fresh.batch_write(vec![put("c", "3"), put("z", "3")]).await.expect("batch");
    assert_eq!((c.value("c").as_deref(), c.value("z").as_deref()), (Some("3"), Some("3")));
    assert_eq!(
        show(&c.take_served()),
        vec![
            (1, "batch_write", "c".into(), "key_not_in_region".into()),
            ok(1, "batch_write", "c"),
            (1, "batch_write", "z".into(), "not_leader".into()),
            ok(2, "batch_write", "z"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_leader_costs_one_redirect() {
    let c = FakeCluster::start(3, THREE_REGIONS, 1).await;
    let client = c.client(&[1]);
    client.get("default", b"h").await.expect("get");
    c.set_leader(2, 3, false);
    c.take_served();
    client.get("default", b"h").await.expect("get");
    client.get("default", b"i").await.expect("get");
    assert_eq!(
        show(&c.take_served()),
        vec![(2, "get", "h".into(), "not_leader".into()), ok(3, "get", "h"), ok(3, "get", "i")],
        "the hint updates the cached leader"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_meta_the_endpoints_and_hints_still_serve() {
    // No store serves Meta (UNIMPLEMENTED); one region led by store 2.
    let c = FakeCluster::start(3, &[("", "", 2)], 0).await;
    let client = c.client(&[1, 2, 3]);
    client.put("default", b"k", b"v").await.expect("put");
    assert_eq!(client.get("default", b"k").await.expect("get").as_deref(), Some(&b"v"[..]));
    client.batch_write(vec![put("a", "1"), put("b", "2")]).await.expect("batch");
    assert_eq!(client.scan("default", b"", b"", 0).await.expect("scan").len(), 3);
    let served = show(&c.take_served());
    assert_eq!(served.iter().filter(|(_, _, _, o)| o == "not_leader").count(), 1, "one redirect, then the leader is preferred: {served:?}");
    assert!(matches!(client.region_by_key(b"k").await, Err(ClientError::Server(m)) if m.contains("Meta")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_and_unavailable_are_retried_an_unknown_write_is_not() {
    let c = FakeCluster::start(3, THREE_REGIONS, 1).await;
    let client = c.client(&[1]);
    client.get("default", b"a").await.expect("warm the cache");
    c.take_served();
    c.fault(1, Fault::Busy);
    c.fault(1, Fault::Busy);
    c.fault(1, Fault::Unavailable);
    client.put("default", b"a", b"1").await.expect("put");
    let outcomes: Vec<String> = show(&c.take_served()).into_iter().map(|(_, _, _, o)| o).collect();
    assert_eq!(outcomes, vec!["busy", "busy", "Unavailable", "ok"]);

    c.fault(1, Fault::Unknown);
    let err = client.put("default", b"a", b"2").await.expect_err("ambiguous");
    assert!(matches!(err, ClientError::OutcomeUnknown(_)), "{err:?}");
    assert_eq!(c.take_served().len(), 1, "an ambiguous write is never retried");

    c.fault(1, Fault::Unknown);
    assert_eq!(client.get("default", b"a").await.expect("a read is retried").as_deref(), Some(&b"1"[..]));

    c.fault(1, Fault::InvalidArgument);
    assert!(matches!(client.put("default", b"a", b"3").await, Err(ClientError::InvalidArgument(_))));
    let puts: Vec<String> = show(&c.take_served()).into_iter().filter(|(_, m, _, _)| *m == "put").map(|(_, _, _, o)| o).collect();
    assert_eq!(puts, vec!["InvalidArgument"], "a refused write is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_group_reports_what_was_applied() {
    let c = FakeCluster::start(3, THREE_REGIONS, 1).await;
    let client = c.client(&[1]);
    c.fault(2, Fault::InvalidArgument);
    let err = client.batch_write(vec![put("a", "1"), put("h", "1"), put("q", "1")]).await.expect_err("second group fails");
    match err {
        ClientError::BatchIncomplete { applied, failed, not_sent, error } => {
            let keys = |ms: &[Mutation]| ms.iter().map(|m| String::from_utf8_lossy(&m.key).into_owned()).collect::<Vec<_>>();
            assert_eq!((keys(&applied), keys(&failed), keys(&not_sent)), (vec!["a".into()], vec!["h".into()], vec!["q".into()]));
            assert!(matches!(*error, ClientError::InvalidArgument(_)));
        }
        other => panic!("expected BatchIncomplete, got {other:?}"),
    }
    assert_eq!((c.value("a").as_deref(), c.value("h"), c.value("q")), (Some("1"), None, None));
    // A batch within one region fails with the plain error.
    c.fault(2, Fault::InvalidArgument);
    assert!(matches!(client.batch_write(vec![put("h", "1"), put("i", "1")]).await, Err(ClientError::InvalidArgument(_))));
    // A plainly malformed batch fails before anything is sent.
    c.take_served();
    assert!(matches!(client.batch_write(vec![put("a", "1"), put("", "1")]).await, Err(ClientError::InvalidArgument(_))));
    assert!(matches!(client.batch_write(vec![]).await, Err(ClientError::InvalidArgument(_))));
    assert!(c.take_served().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_naming_each_other_do_not_make_the_client_spin() {
    let c = FakeCluster::start(3, THREE_REGIONS, 1).await;
    let client =
        Client::new(&[c.addrs[0].clone()], ClientOptions { deadline: Duration::from_millis(400), ..Default::default() }).expect("client");
    client.get("default", b"a").await.expect("warm");
    for _ in 0..200 {
        c.fault(1, Fault::NotLeaderPointingAt(2));
        c.fault(2, Fault::NotLeaderPointingAt(1));
    }
    c.take_served();
    let err = client.get("default", b"a").await.expect_err("no one serves");
    assert!(matches!(err, ClientError::Unavailable { .. }), "{err:?}");
    let tries = c.take_served().len();
    // Every other retry backs off (20 ms, doubling): a handful of tries in 400 ms, not hundreds.
    assert!((4..=24).contains(&tries), "{tries} tries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_calls() {
    let c = FakeCluster::start(3, THREE_REGIONS, 3).await;
    let client = c.client(&[1, 2]);
    let loc = client.region_by_key(b"h").await.expect("region_by_key");
    let r = loc.info.region.clone().expect("region");
    assert_eq!((r.id, r.start_key.as_slice(), r.end_key.as_slice(), loc.info.leader_store_id), (2, &b"g"[..], &b"p"[..], 2));
    assert_eq!(loc.stores.len(), 3);
    let regions = client.scan_regions(b"h", b"", 0).await.expect("scan_regions");
    assert_eq!(regions.iter().map(|i| i.region.as_ref().map_or(0, |r| r.id)).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(client.scan_regions(b"", b"", 1).await.expect("scan_regions").len(), 1);
    let stores = client.list_stores().await.expect("list_stores");
    assert_eq!(stores.len(), 3);
    assert_eq!(client.get_store(2).await.expect("get_store").and_then(|d| d.store).map(|s| s.address), Some(c.addrs[1].clone()));
    assert_eq!(client.get_store(42).await.expect("get_store"), None);
    let a = client.alloc_id(5).await.expect("alloc");
    let b = client.alloc_id(0).await.expect("alloc");
    assert_eq!((a.end - a.start, b.end - b.start), (5, 1));
    assert!(b.start >= a.end, "disjoint");
    // Every call after the first redirect went to the Meta leader (store 3).
    let calls = c.t().meta_calls.clone();
    assert_eq!(calls.iter().filter(|(s, _)| *s != 3).count(), 1, "{calls:?}");
}
