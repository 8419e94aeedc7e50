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
//! `Heartbeat`: a store reports itself and the regions it leads: all of them
//! the first time it reports to a leadership, then only those whose report
//! changed (`partial`, relative to the leadership's
//! [`LeaderView::report_epoch`]; a partial report naming another epoch gets
//! `full_report_wanted`). What changed in the directory (a new epoch, a new
//! leader or term) is proposed as one `PutRegions` command; sizes and write
//! rates are kept in the leader's memory ([`LeaderView`]) and rebuilt from
//! heartbeats after a meta leader change.
//! The meta region (region 1) is reported too and kept in its own slot. The
//! response carries [`placement`] orders for regions the reporting store leads
//! (ids for new learners come from the allocator), `DestroyPeer` orders for
//! its idle peers that their region has left behind ([`crate::meta::idle`]),
//! and every store that is not tombstoned. A JOINING store that placement has
//! finished seeding is made UP. A tombstoned store's heartbeat is refused.
//!
//! A store without a meta peer (a cluster with more stores than replicas)
//! answers `NotLeader` naming the meta leader its own heartbeats reach.
//!
//! Behind a client port (`--client-listen-addr`, [`MetaService::for_clients`])
//! only the lookups are served (regions and stores; hints name client
//! addresses): `Heartbeat` and `AllocId`, which only stores make, answer
//! PERMISSION_DENIED there.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shoal_proto::meta_server::Meta;
use shoal_proto::{
    AllocIdRequest, AllocIdResponse, ChangePeers, DestroyPeer, GetRegionByKeyRequest, GetRegionByKeyResponse, GetStoreRequest,
    GetStoreResponse, HeartbeatRequest, HeartbeatResponse, ListStoresRequest, ListStoresResponse, MetaCmd, MetaHeader, MetaRegions,
    Operator, PeerChange, PeerChangeType, RegionInfo, ScanRegionsRequest, ScanRegionsResponse, SetStoreState, StoreDetail, StoreLabels,
    StoreMeta, StoreState, TransferLeader, meta_cmd, operator,
};
use tonic::{Request, Response, Status};

use super::directory_cache::{DirectoryCache, QuietInputs};
use super::errors::{Reply, serve_request};
pub use super::leader_view::LeaderView;
use super::registry::StoreRegistry;
use crate::error::{Error, Result};
use crate::meta::idle::stale_peers;
use crate::meta::placement::{self, Change, Cluster, Cooldown, PlacementConfig};
use crate::meta::state::{MetaResult, MetaState};
use crate::meta::{META_REGION_ID, SharedMeta};
use crate::metrics::Metrics;
use crate::raftstore::peer::CmdResult;
use crate::raftstore::store_loop::StoreHandle;

/// The store label placement spreads a region's replicas over.
pub const ZONE_LABEL: &str = "zone";

/// Every state a store can be shown in, for the `shoal_stores{state}` gauge.
const STATES: [StoreState; 6] =
    [StoreState::Up, StoreState::Pending, StoreState::Joining, StoreState::Draining, StoreState::Tombstone, StoreState::Down];

#[derive(Clone)]
pub struct MetaService {
    pub store: StoreHandle,
    /// This store's copy of the meta state; `None` when it holds no meta peer.
    pub meta: Option<SharedMeta>,
    pub registry: StoreRegistry,
    pub metrics: Arc<Metrics>,
    pub timeout: Duration,
    pub placement: PlacementConfig,
    /// A store not heard from for longer than this is DOWN: its peers are replaced.
    pub max_store_down_time: Duration,
    pub view: Arc<Mutex<LeaderView>>,
    pub directory: DirectoryCache,
    /// Serves `Heartbeat` and `AllocId` (false behind the client port).
    pub store_calls: bool,
    /// The meta leader's address as this store's heartbeats last found it:
    /// where a store without a meta peer points callers.
    pub meta_leader: Arc<Mutex<Option<String>>>,
}

/// A response type with a `MetaHeader`.
pub(super) trait WithHeader: Default {
    fn set_header(&mut self, header: MetaHeader);
}

macro_rules! with_header {
    ($($t:ty),*) => {$(
        impl $crate::server::meta::WithHeader for $t {
            fn set_header(&mut self, header: shoal_proto::MetaHeader) { self.header = Some(header); }
        }
    )*};
}
pub(super) use with_header;
with_header!(GetRegionByKeyResponse, ScanRegionsResponse, GetStoreResponse, ListStoresResponse, AllocIdResponse, HeartbeatResponse);

pub(super) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub(super) fn stored_state(s: &StoreMeta) -> StoreState {
    StoreState::try_from(s.state).unwrap_or(StoreState::Unknown)
}

fn peer_change(change_type: PeerChangeType, peer: shoal_proto::Peer) -> PeerChange {
    PeerChange { change_type: change_type as i32, peer: Some(peer) }
}

impl MetaService {
    /// The same service behind the client port: lookups only, client addresses in hints.
    pub fn for_clients(&self) -> MetaService {
        MetaService { registry: self.registry.for_clients(), store_calls: false, ..self.clone() }
    }

    /// Refuses a store's call on the client port.
    fn store_call(&self, method: &str) -> Result<()> {
        if self.store_calls {
            Ok(())
        } else {
            Err(Error::PermissionDenied(format!("Meta.{method} is served on the peer port only (stores call it), not on the client port")))
        }
    }

    pub(super) async fn serve<T: WithHeader>(&self, method: &str, work: impl Future<Output = Result<T>>) -> Result<Response<T>, Status> {
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
    pub(super) async fn leader_state(&self) -> Result<&SharedMeta> {
        let meta = self.meta.as_ref().ok_or_else(|| Error::Unavailable("this store holds no meta peer".into()))?;
        match self.store.read_region(META_REGION_ID).await {
            // No meta peer here (more stores than replicas): point at the
            // leader this store's heartbeats reach, so that a client that
            // knows only this store finds it.
            Err(Error::RegionNotFound(key)) => return Err(self.elsewhere().unwrap_or(Error::RegionNotFound(key))),
            other => drop(other?),
        }
        self.view().served(Instant::now());
        Ok(meta)
    }

    /// `NotLeader` naming the meta leader's store, if this store knows it.
    fn elsewhere(&self) -> Option<Error> {
        let addr = self.meta_leader.lock().unwrap_or_else(|p| p.into_inner()).clone()?;
        let store_id = self.registry.all().into_iter().find(|s| s.address == addr)?.id;
        Some(Error::NotLeader { region_id: META_REGION_ID, leader: Some(shoal_proto::Peer { id: 0, store_id, is_learner: false }) })
    }

    pub(super) fn read<T>(meta: &SharedMeta, f: impl FnOnce(&MetaState) -> T) -> T {
        f(&meta.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub(super) fn view(&self) -> std::sync::MutexGuard<'_, LeaderView> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `info` with the sizes and rate the leader heard by heartbeat.
    pub(super) fn with_stats(&self, mut info: RegionInfo) -> RegionInfo {
        let id = info.region.as_ref().map_or(0, |r| r.id);
        if let Some((size, keys, rate)) = self.view().region_sizes(id) {
            info.approximate_size = size;
            info.approximate_keys = keys;
            info.written_bytes_per_sec = rate;
        }
        info
    }

    /// The state to show for `store`: the stored one, or DOWN.
    pub(super) fn shown_state(&self, store: &StoreMeta) -> StoreState {
        self.view().state(store.id, stored_state(store), Instant::now(), self.max_store_down_time)
    }

    /// A store with its shown state and stats; counts are of data regions (from
    /// the directory, which survives a meta leader change).
    fn detail(&self, state: &MetaState, store: &StoreMeta) -> StoreDetail {
        let mut stats = self.view().stats(store.id).unwrap_or_default();
        stats.region_count =
            state.regions().filter(|r| r.region.as_ref().is_some_and(|r| r.peers.iter().any(|p| p.store_id == store.id))).count() as u64;
        stats.leader_count = state.regions().filter(|r| r.leader_store_id == store.id).count() as u64;
        let shown = StoreMeta { state: self.shown_state(store) as i32, ..store.clone() };
        StoreDetail { store: Some(shown), stats: Some(stats) }
    }

    pub(super) async fn propose(&self, cmd: meta_cmd::Cmd) -> Result<MetaResult> {
        match self.store.meta(MetaCmd { cmd: Some(cmd) }).await? {
            CmdResult::Meta(r) => Ok(r),
            other => Err(Error::Internal(format!("meta command answered with {other:?}"))),
        }
    }

    /// Moves store `id` to `to` if it is in one of `from`; returns the store after.
    pub(super) async fn set_state(&self, id: u64, from: &[StoreState], to: StoreState) -> Result<StoreMeta> {
        let cmd = SetStoreState { store_id: id, from: from.iter().map(|s| *s as i32).collect(), to: to as i32 };
        match self.propose(meta_cmd::Cmd::SetStoreState(cmd)).await? {
            MetaResult::Store(s) => Ok(s),
            MetaResult::NoSuchStore(id) => Err(Error::NotFound(format!("no store {id}"))),
            other => Err(Error::Internal(format!("store state change answered with {other:?}"))),
        }
    }

    pub(super) async fn set_labels(&self, id: u64, labels: BTreeMap<String, String>) -> Result<StoreMeta> {
        let cmd = StoreLabels { store_id: id, labels };
        match self.propose(meta_cmd::Cmd::SetStoreLabels(cmd)).await? {
            MetaResult::Store(s) => Ok(s),
            MetaResult::NoSuchStore(id) => Err(Error::NotFound(format!("no store {id}"))),
            other => Err(Error::Internal(format!("store label change answered with {other:?}"))),
        }
    }

    pub(super) async fn alloc_ids(&self, count: u32) -> Result<u64> {
        match self.propose(meta_cmd::Cmd::AllocIds(count)).await? {
            MetaResult::Ids { first, .. } => Ok(first),
            other => Err(Error::Internal(format!("alloc answered with {other:?}"))),
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
        let known = Self::read(meta, |st| st.store(me.id).cloned());
        if known.as_ref().is_some_and(|k| k.state == StoreState::Tombstone as i32) {
            return Err(Error::FailedPrecondition(format!("store {} is tombstoned", me.id)));
        }
        let interval_ms = req.interval_ms.max(1);
        let (report_epoch, full_report_wanted) = {
            let mut view = self.view();
            // A partial report is relative to what some leadership acknowledged:
            // unless that is this one, what changed meanwhile is missing here.
            let epoch = view.report_epoch();
            let full_report_wanted = req.partial && req.report_epoch != epoch;
            let mut stats = req.stats.unwrap_or_default();
            stats.last_heartbeat_ms = now_ms();
            view.heard(me.id, stats, Instant::now());
            for r in &req.regions {
                if let Some(region) = &r.region {
                    let rate = r.written_bytes.saturating_mul(1000) / interval_ms;
                    view.region_report(
                        region.id,
                        (r.approximate_size, r.approximate_keys, rate),
                        r.pending_peers.iter().copied().collect(),
                    );
                }
            }
            (epoch, full_report_wanted)
        };
        // Registry: a new address (a rescheduled pod, a client port added) or a store meta never saw.
        if known.as_ref().is_none_or(|k| k.address != me.address || k.client_address != me.client_address) {
            let state = known.map_or(StoreState::Up as i32, |k| k.state);
            self.propose(meta_cmd::Cmd::PutStore(StoreMeta { state, ..me.clone() })).await?;
        }
        // Directory (and the meta slot): only what changed goes through Raft.
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
        let mut operators = self.plan_for(meta, me.id).await?;
        let (destroy, stores) = Self::read(meta, |st| {
            let destroy = stale_peers(&req.idle_peers, |id| st.region(id).and_then(|r| r.region.as_ref()));
            let stores: Vec<StoreMeta> = st.stores().filter(|s| s.state != StoreState::Tombstone as i32).cloned().collect();
            (destroy, stores)
        });
        for d in destroy {
            self.metrics.placement_operators.with_label_values(&["destroy_peer"]).inc();
            operators.push(Operator {
                region_id: d.region_id,
                epoch: Some(d.epoch),
                kind: Some(operator::Kind::DestroyPeer(DestroyPeer { peer_id: d.peer_id })),
            });
        }
        Ok(HeartbeatResponse { header: None, operators, stores, report_epoch, full_report_wanted })
    }

    /// Runs placement; returns the orders for the regions store `store_id`
    /// leads (new learners get ids from the allocator) and makes seeded
    /// JOINING stores UP.
    async fn plan_for(&self, meta: &SharedMeta, store_id: u64) -> Result<Vec<Operator>> {
        let (generation, stored, regions) = self.directory.get(meta);
        let now = Instant::now();
        let (plan, mine_changes, mine_transfers) = {
            let mut view = self.view();
            let stores: BTreeMap<u64, StoreState> =
                stored.iter().map(|s| (s.id, view.state(s.id, stored_state(s), now, self.max_store_down_time))).collect();
            for state in STATES {
                let n = stores.values().filter(|s| **s == state).count();
                self.metrics.stores.with_label_values(&[state_label(state)]).set(n as i64);
            }
            let current = |id: u64| {
                regions.iter().find_map(|r| {
                    let region = r.region.as_ref().filter(|region| region.id == id)?;
                    Some((region.epoch?, r.leader_store_id))
                })
            };
            let cooling = view.cooling(now, current);
            let zones: BTreeMap<u64, String> = stored.iter().filter_map(|s| Some((s.id, s.labels.get(ZONE_LABEL)?.clone()))).collect();
            // Nothing cooling or pending: if nothing else changed since a plan
            // that ordered nothing, this one would order nothing either.
            let settled = cooling.is_empty() && view.pending().values().all(HashSet::is_empty);
            if settled && let Some(under_replicated) = self.directory.quiet(generation, &stores, &zones) {
                self.metrics.under_replicated_regions.set(under_replicated as i64);
                return Ok(Vec::new());
            }
            let cluster = Cluster { stores: &stores, zones: &zones, regions: &regions, pending: view.pending(), cooling: &cooling };
            let plan = placement::plan(&cluster, &self.placement);
            if settled && plan.is_empty() && plan.seeded.is_empty() {
                let under_replicated = plan.under_replicated.len();
                self.directory.set_quiet(generation, QuietInputs { states: stores, zones, under_replicated });
            }
            let changes: Vec<_> = plan.changes.iter().filter(|c| c.leader_store == store_id).cloned().collect();
            let transfers: Vec<_> = plan.transfers.iter().filter(|t| t.from_store == store_id).cloned().collect();
            // Cool before the ids are allocated, so that a concurrent plan does
            // not order the same region or overfill a store with learners.
            for c in &changes {
                let adds_learner_on = c.changes.iter().find_map(|ch| match ch {
                    Change::AddLearner { store_id } => Some(*store_id),
                    _ => None,
                });
                view.cool(c.region_id, c.epoch, c.leader_store, Cooldown { adds_learner_on, ..Cooldown::default() }, now);
            }
            for t in &transfers {
                view.cool(t.region_id, t.epoch, t.from_store, Cooldown { leads_to: Some(t.to.store_id), ..Cooldown::default() }, now);
            }
            (plan, changes, transfers)
        };
        self.metrics.under_replicated_regions.set(plan.under_replicated.len() as i64);
        for id in &plan.seeded {
            let s = self.set_state(*id, &[StoreState::Joining], StoreState::Up).await?;
            tracing::info!(store = id, state = ?stored_state(&s), "joining store seeded");
        }

        let mut ops = Vec::new();
        for t in mine_transfers {
            self.metrics.placement_operators.with_label_values(&["transfer_leader"]).inc();
            ops.push(Operator {
                region_id: t.region_id,
                epoch: Some(t.epoch),
                kind: Some(operator::Kind::TransferLeader(TransferLeader { to: Some(t.to) })),
            });
        }
        let adds = mine_changes.iter().flat_map(|c| &c.changes).filter(|c| matches!(c, Change::AddLearner { .. })).count();
        let mut next_id = if adds > 0 { self.alloc_ids(adds as u32).await? } else { 0 };
        for order in mine_changes {
            let mut changes = Vec::new();
            for c in order.changes {
                let (kind, label, peer) = match c {
                    Change::AddLearner { store_id } => {
                        next_id += 1;
                        let peer = shoal_proto::Peer { id: next_id - 1, store_id, is_learner: true };
                        (PeerChangeType::AddLearner, "add_learner", peer)
                    }
                    Change::Promote(p) => (PeerChangeType::PromoteLearner, "promote_learner", p),
                    Change::Remove(p) => (PeerChangeType::RemovePeer, "remove_peer", p),
                };
                self.metrics.placement_operators.with_label_values(&[label]).inc();
                changes.push(peer_change(kind, peer));
            }
            ops.push(Operator {
                region_id: order.region_id,
                epoch: Some(order.epoch),
                kind: Some(operator::Kind::ChangePeers(ChangePeers { changes })),
            });
        }
        Ok(ops)
    }
}

/// The lowercase name of a store state (metrics, CLI).
pub fn state_label(s: StoreState) -> &'static str {
    match s {
        StoreState::Up => "up",
        StoreState::Pending => "pending",
        StoreState::Joining => "joining",
        StoreState::Draining => "draining",
        StoreState::Tombstone => "tombstone",
        StoreState::Down => "down",
        StoreState::Unknown => "unknown",
    }
}

/// Regions (by id) whose peers include store `store_id`, among `regions`.
pub(super) fn holding(regions: &[RegionInfo], store_id: u64) -> HashSet<u64> {
    regions.iter().filter_map(|r| r.region.as_ref()).filter(|r| r.peers.iter().any(|p| p.store_id == store_id)).map(|r| r.id).collect()
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
        self.serve("AllocId", async {
            self.store_call("AllocId")?;
            self.alloc_id_inner(request.into_inner()).await
        })
        .await
    }

    async fn heartbeat(&self, request: Request<HeartbeatRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        self.serve("Heartbeat", async {
            self.store_call("Heartbeat")?;
            self.heartbeat_inner(request.into_inner()).await
        })
        .await
    }
}
