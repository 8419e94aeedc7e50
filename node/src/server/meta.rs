//! The `Meta` gRPC service: the cluster's metadata, served by the meta group's
//! leader.
//!
//! Every store with a meta peer serves it, but only the leader answers: each
//! call first waits for a ReadIndex on the meta group ([`META_REGION_ID`]),
//! which answers `NotLeader` (with the leader's address) anywhere else — so reads
//! are linearizable and a deposed leader never serves stale metadata. Writes
//! (`AllocId`, directory and registry updates) are proposed to the meta group
//! and answered once applied.
//!
//! `Heartbeat`: a store reports itself and every region it leads. What changed
//! in the directory (a new epoch, a new leader or term) is proposed as one
//! `PutRegions` command; sizes and write rates are kept in the leader's memory
//! ([`LeaderView`]) and rebuilt from heartbeats after a meta leader change.
//! The response carries [`placement`] orders for regions the reporting store
//! leads.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shoal_proto::meta_server::Meta;
use shoal_proto::{
    AllocIdRequest, AllocIdResponse, GetRegionByKeyRequest, GetRegionByKeyResponse, GetStoreRequest, GetStoreResponse, HeartbeatRequest,
    HeartbeatResponse, ListStoresRequest, ListStoresResponse, MetaCmd, MetaHeader, MetaRegions, Operator, RegionInfo, ScanRegionsRequest,
    ScanRegionsResponse, StoreDetail, StoreMeta, StoreState, StoreStats, TransferLeader, meta_cmd, operator,
};
use tonic::{Request, Response, Status};

use super::errors::{Reply, serve_request};
use super::registry::StoreRegistry;
use crate::error::{Error, Result};
use crate::meta::placement::{self, PlacementConfig};
use crate::meta::state::{MetaResult, MetaState};
use crate::meta::{META_REGION_ID, SharedMeta};
use crate::metrics::Metrics;
use crate::raftstore::peer::CmdResult;
use crate::raftstore::store_loop::StoreHandle;

/// How long a region that was just ordered to move is left alone.
const COOLDOWN: Duration = Duration::from_secs(10);

/// What the meta leader knows from heartbeats and keeps only in memory.
#[derive(Default)]
pub struct LeaderView {
    stores: HashMap<u64, StoreStats>,
    /// Region id → (approximate size, approximate keys, written bytes per second).
    regions: HashMap<u64, (u64, u64, u64)>,
    /// Regions ordered to move, and when.
    cooling: HashMap<u64, Instant>,
}

#[derive(Clone)]
pub struct MetaService {
    pub store: StoreHandle,
    /// This store's copy of the meta state; `None` when it holds no meta peer.
    pub meta: Option<SharedMeta>,
    pub registry: StoreRegistry,
    pub metrics: Arc<Metrics>,
    pub timeout: Duration,
    pub placement: PlacementConfig,
    pub view: Arc<Mutex<LeaderView>>,
}

/// A response type with a `MetaHeader`.
trait WithHeader: Default {
    fn set_header(&mut self, header: MetaHeader);
}

macro_rules! with_header {
    ($($t:ty),*) => {$(
        impl WithHeader for $t {
            fn set_header(&mut self, header: MetaHeader) { self.header = Some(header); }
        }
    )*};
}
with_header!(GetRegionByKeyResponse, ScanRegionsResponse, GetStoreResponse, ListStoresResponse, AllocIdResponse, HeartbeatResponse);

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl MetaService {
    async fn serve<T: WithHeader>(&self, method: &str, work: impl Future<Output = Result<T>>) -> Result<Response<T>, Status> {
        match serve_request(&self.metrics, &self.registry, method, self.timeout, "meta did not answer", work).await {
            Ok(v) => Ok(Response::new(v)),
            Err(Reply::Region(region_error)) => {
                let mut resp = T::default();
                resp.set_header(MetaHeader { region_error: Some(*region_error) });
                Ok(Response::new(resp))
            }
            Err(Reply::Status(status)) => Err(status),
        }
    }

    /// Waits until this store's meta peer may answer as leader; returns the state.
    async fn leader_state(&self) -> Result<&SharedMeta> {
        let meta = self.meta.as_ref().ok_or_else(|| Error::Unavailable("this store holds no meta peer".into()))?;
        self.store.read_region(META_REGION_ID).await?;
        Ok(meta)
    }

    fn read<T>(meta: &SharedMeta, f: impl FnOnce(&MetaState) -> T) -> T {
        f(&meta.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn view(&self) -> std::sync::MutexGuard<'_, LeaderView> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `info` with the sizes and rate the leader heard by heartbeat.
    fn with_stats(&self, mut info: RegionInfo) -> RegionInfo {
        let id = info.region.as_ref().map_or(0, |r| r.id);
        if let Some((size, keys, rate)) = self.view().regions.get(&id) {
            info.approximate_size = *size;
            info.approximate_keys = *keys;
            info.written_bytes_per_sec = *rate;
        }
        info
    }

    fn detail(&self, state: &MetaState, store: &StoreMeta) -> StoreDetail {
        let mut stats = self.view().stores.get(&store.id).cloned().unwrap_or_default();
        // Counts from the directory, which survives a meta leader change.
        stats.region_count =
            state.regions().filter(|r| r.region.as_ref().is_some_and(|r| r.peers.iter().any(|p| p.store_id == store.id))).count() as u64;
        stats.leader_count = state.regions().filter(|r| r.leader_store_id == store.id).count() as u64;
        StoreDetail { store: Some(store.clone()), stats: Some(stats) }
    }

    async fn propose(&self, cmd: meta_cmd::Cmd) -> Result<MetaResult> {
        match self.store.meta(MetaCmd { cmd: Some(cmd) }).await? {
            CmdResult::Meta(r) => Ok(r),
            other => Err(Error::Internal(format!("meta command answered with {other:?}"))),
        }
    }

    async fn get_region_by_key_inner(&self, req: GetRegionByKeyRequest) -> Result<GetRegionByKeyResponse> {
        let meta = self.leader_state().await?;
        let (region, stores) = Self::read(meta, |st| {
            let info = st.region_by_key(&req.key).cloned();
            let stores = info
                .as_ref()
                .and_then(|i| i.region.as_ref())
                .map(|r| r.peers.iter().filter_map(|p| st.store(p.store_id).cloned()).collect())
                .unwrap_or_default();
            (info, stores)
        });
        Ok(GetRegionByKeyResponse { header: None, region: region.map(|r| self.with_stats(r)), stores })
    }

    async fn scan_regions_inner(&self, req: ScanRegionsRequest) -> Result<ScanRegionsResponse> {
        let meta = self.leader_state().await?;
        let regions = Self::read(meta, |st| st.scan_regions(&req.start_key, &req.end_key, req.limit as usize));
        Ok(ScanRegionsResponse { header: None, regions: regions.into_iter().map(|r| self.with_stats(r)).collect() })
    }

    async fn get_store_inner(&self, req: GetStoreRequest) -> Result<GetStoreResponse> {
        let meta = self.leader_state().await?;
        let store = Self::read(meta, |st| st.store(req.store_id).map(|s| self.detail(st, s)));
        match store {
            Some(s) => Ok(GetStoreResponse { header: None, store: Some(s) }),
            None => Err(Error::InvalidArgument(format!("no store {}", req.store_id))),
        }
    }

    async fn list_stores_inner(&self) -> Result<ListStoresResponse> {
        let meta = self.leader_state().await?;
        let stores = Self::read(meta, |st| st.stores().map(|s| self.detail(st, s)).collect());
        Ok(ListStoresResponse { header: None, stores })
    }

    async fn alloc_id_inner(&self, req: AllocIdRequest) -> Result<AllocIdResponse> {
        if req.count > 10_000 {
            return Err(Error::InvalidArgument("at most 10000 ids per call".into()));
        }
        self.leader_state().await?;
        match self.propose(meta_cmd::Cmd::AllocIds(req.count)).await? {
            MetaResult::Ids { first, count } => Ok(AllocIdResponse { header: None, first_id: first, count: count as u32 }),
            other => Err(Error::Internal(format!("alloc answered with {other:?}"))),
        }
    }

    async fn heartbeat_inner(&self, req: HeartbeatRequest) -> Result<HeartbeatResponse> {
        let Some(me) = req.store.clone().filter(|s| s.id != 0) else {
            return Err(Error::InvalidArgument("a heartbeat names its store".into()));
        };
        let meta = self.leader_state().await?;
        let interval_ms = req.interval_ms.max(1);
        {
            let mut view = self.view();
            let mut stats = req.stats.unwrap_or_default();
            stats.last_heartbeat_ms = now_ms();
            view.stores.insert(me.id, stats);
            for r in &req.regions {
                if let Some(region) = &r.region {
                    let rate = r.written_bytes.saturating_mul(1000) / interval_ms;
                    view.regions.insert(region.id, (r.approximate_size, r.approximate_keys, rate));
                }
            }
        }
        // Registry: a new address (a rescheduled pod) or a store meta never saw.
        let known = Self::read(meta, |st| st.store(me.id).cloned());
        if known.as_ref().is_none_or(|k| k.address != me.address) {
            let state = known.map_or(StoreState::Up as i32, |k| k.state);
            self.propose(meta_cmd::Cmd::PutStore(StoreMeta { state, ..me.clone() })).await?;
        }
        // Directory: only what changed goes through Raft.
        let changed: Vec<RegionInfo> = Self::read(meta, |st| {
            req.regions
                .iter()
                .filter_map(|r| {
                    let region = r.region.clone()?;
                    let known = st.region(region.id);
                    let same =
                        known.is_some_and(|k| k.region.as_ref() == Some(&region) && k.leader_store_id == me.id && k.leader_term == r.term);
                    (!same).then_some(RegionInfo {
                        region: Some(region),
                        leader_store_id: me.id,
                        leader_term: r.term,
                        approximate_size: r.approximate_size,
                        approximate_keys: r.approximate_keys,
                        written_bytes_per_sec: 0,
                    })
                })
                .collect()
        });
        if !changed.is_empty() {
            self.propose(meta_cmd::Cmd::PutRegions(MetaRegions { regions: changed })).await?;
        }
        Ok(HeartbeatResponse { header: None, operators: self.plan_for(meta, me.id), stores: vec![] })
    }

    /// Placement orders for the regions store `store_id` leads, rate-limited.
    fn plan_for(&self, meta: &SharedMeta, store_id: u64) -> Vec<Operator> {
        let (stores, regions) = Self::read(meta, |st| {
            let up: BTreeSet<u64> = st.stores().filter(|s| s.state == StoreState::Up as i32).map(|s| s.id).collect();
            (up, st.regions().cloned().collect::<Vec<_>>())
        });
        let mut view = self.view();
        view.cooling.retain(|_, at| at.elapsed() < COOLDOWN);
        let cooling: HashSet<u64> = view.cooling.keys().copied().collect();
        let plan = placement::plan(&stores, &regions, &cooling, &self.placement);
        self.metrics.under_replicated_regions.set(plan.under_replicated.len() as i64);
        let mut ops = Vec::new();
        for t in plan.transfers.into_iter().filter(|t| t.from_store == store_id) {
            let epoch = regions.iter().find_map(|r| r.region.as_ref().filter(|r| r.id == t.region_id).and_then(|r| r.epoch));
            view.cooling.insert(t.region_id, Instant::now());
            self.metrics.placement_operators.with_label_values(&["transfer_leader"]).inc();
            ops.push(Operator {
                region_id: t.region_id,
                epoch,
                kind: Some(operator::Kind::TransferLeader(TransferLeader { to: Some(t.to) })),
            });
        }
        ops
    }
}

#[tonic::async_trait]
impl Meta for MetaService {
    async fn get_region_by_key(&self, request: Request<GetRegionByKeyRequest>) -> Result<Response<GetRegionByKeyResponse>, Status> {
        self.serve("GetRegionByKey", self.get_region_by_key_inner(request.into_inner())).await
    }

    async fn scan_regions(&self, request: Request<ScanRegionsRequest>) -> Result<Response<ScanRegionsResponse>, Status> {
        self.serve("ScanRegions", self.scan_regions_inner(request.into_inner())).await
    }

    async fn get_store(&self, request: Request<GetStoreRequest>) -> Result<Response<GetStoreResponse>, Status> {
        self.serve("GetStore", self.get_store_inner(request.into_inner())).await
    }

    async fn list_stores(&self, _request: Request<ListStoresRequest>) -> Result<Response<ListStoresResponse>, Status> {
        self.serve("ListStores", self.list_stores_inner()).await
    }

    async fn alloc_id(&self, request: Request<AllocIdRequest>) -> Result<Response<AllocIdResponse>, Status> {
        self.serve("AllocId", self.alloc_id_inner(request.into_inner())).await
    }

    async fn heartbeat(&self, request: Request<HeartbeatRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        self.serve("Heartbeat", self.heartbeat_inner(request.into_inner())).await
    }
}
