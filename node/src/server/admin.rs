//! The `Admin` gRPC service: the store lifecycle, served by the meta leader
//! (like `Meta`, every call first waits for a ReadIndex on the meta group, so
//! anyone else answers `NotLeader` with the leader's address).
//!
//! ```text
//! PENDING --JoinStore--> JOINING --(seeded, by placement)--> UP
//! UP/JOINING --DrainStore--> DRAINING --CancelDrain--> UP
//! DRAINING (or PENDING) holding no peers --RemoveStore--> TOMBSTONE
//! ```
//!
//! Refusals are `FAILED_PRECONDITION` with the reason, and change nothing:
//! draining a store when fewer than the replication factor of stores would
//! stay UP or JOINING (and heard from), removing a store that still holds
//! peers (the meta region's included), or a transition its state does not
//! allow. Asking for the state a store is already in is a no-op that succeeds.
//! State changes are compare-and-set commands of the meta group, and admin
//! calls are served one at a time, so two drains cannot both pass the check.
//!
//! `RegisterStore` (a joining store) is by name and instance: only the same
//! name and the same non-empty instance get a live store's id back; anything
//! else is a new store, PENDING (rule in [`crate::meta::state`]).
//!
//! With `--admin-allowed-cn` (mutual TLS), the operator's calls (join, drain,
//! cancel-drain, remove, status, labels) are served only to a client certificate whose
//! Common Name is on the list; anyone else gets `PERMISSION_DENIED`, counted in
//! `shoal_admin_denied_total`. `RegisterStore` stays open to every certificate
//! the handshake accepted: stores register themselves, and a registered store
//! is PENDING until an allowed caller joins it.
//!
//! `SetStoreLabels` replaces a store's topology labels (the operator's call,
//! under the same check); placement reads `zone` from them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use shoal_proto::admin_server::Admin;
use shoal_proto::{
    RegionInfo, RegisterStoreRequest, RegisterStoreResponse, StoreLabels, StoreMeta, StoreRequest, StoreState, StoreStatus,
    StoreStatusResponse, meta_cmd,
};
use tonic::{Request, Response, Status};

use super::meta::{MetaService, holding, state_label, stored_state, with_header};
use super::tls;
use crate::error::{Error, Result};
use crate::meta::SharedMeta;
use crate::meta::state::MetaResult;
use crate::metrics::Metrics;

with_header!(RegisterStoreResponse, StoreStatusResponse);

#[derive(Clone)]
pub struct AdminService {
    /// The Meta service whose state (meta copy, leader view) this one shares.
    pub meta: MetaService,
    /// This cluster's id (the store's `StoreIdent.cluster_id`), told to new stores.
    pub cluster_id: u64,
    /// Admin calls are served one at a time.
    pub lock: Arc<tokio::sync::Mutex<()>>,
    /// Common Names allowed the operator's calls; `None`: no check.
    pub allowed_cns: Option<Arc<Vec<String>>>,
    pub metrics: Arc<Metrics>,
}

fn state_name(s: StoreState) -> String {
    state_label(s).to_uppercase()
}

/// What placement still has to move for a store, approximately: everything it
/// holds when DRAINING; its share of all data (replicas over the good stores)
/// minus what it holds when JOINING; nothing otherwise.
pub fn bytes_to_move(state: StoreState, held: u64, total: u64, replication_factor: usize, good_stores: usize) -> u64 {
    match state {
        StoreState::Draining => held,
        StoreState::Joining if good_stores > 0 => {
            let share = total.saturating_mul(replication_factor.min(good_stores) as u64) / good_stores as u64;
            share.saturating_sub(held)
        }
        _ => 0,
    }
}

impl AdminService {
    async fn leader(&self) -> Result<&SharedMeta> {
        self.meta.leader_state().await
    }

    fn find(&self, meta: &SharedMeta, id: u64) -> Result<StoreMeta> {
        MetaService::read(meta, |st| st.store(id).cloned()).ok_or_else(|| Error::NotFound(format!("no store {id}")))
    }

    fn status(&self, meta: &SharedMeta, store: &StoreMeta) -> StoreStatus {
        let (regions, stores): (Vec<RegionInfo>, Vec<StoreMeta>) =
            MetaService::read(meta, |st| (st.all_regions().cloned().collect(), st.stores().cloned().collect()));
        let shown = self.meta.shown_state(store);
        let held = holding(&regions, store.id);
        let size = |r: &RegionInfo| {
            let id = r.region.as_ref().map_or(0, |r| r.id);
            self.meta.view().region_sizes(id).map_or(r.approximate_size, |(s, _, _)| s)
        };
        let sizes: HashMap<u64, u64> = regions.iter().map(|r| (r.region.as_ref().map_or(0, |r| r.id), size(r))).collect();
        let held_bytes: u64 = held.iter().map(|id| sizes.get(id).copied().unwrap_or(0)).sum();
        let total: u64 = sizes.values().sum();
        let good = stores.iter().filter(|s| matches!(self.meta.shown_state(s), StoreState::Up | StoreState::Joining)).count();
        let learner_count = regions
            .iter()
            .filter_map(|r| r.region.as_ref())
            .filter(|r| r.peers.iter().any(|p| p.store_id == store.id && p.is_learner))
            .count() as u64;
        let mut stats = self.meta.view().stats(store.id).unwrap_or_default();
        stats.region_count = held.len() as u64;
        stats.leader_count = regions.iter().filter(|r| r.leader_store_id == store.id).count() as u64;
        StoreStatus {
            store: Some(store.clone()),
            state: shown as i32,
            region_count: stats.region_count,
            leader_count: stats.leader_count,
            learner_count,
            bytes_to_move: bytes_to_move(shown, held_bytes, total, self.meta.placement.replication_factor, good),
            last_heartbeat_ms: stats.last_heartbeat_ms,
            stats: Some(stats),
        }
    }

    fn respond(&self, meta: &SharedMeta, store: &StoreMeta) -> StoreStatusResponse {
        StoreStatusResponse { header: None, status: Some(self.status(meta, store)) }
    }

    /// Moves store `id` from one of `from` to `to`, or fails with `refusal`;
    /// being in `to` already is fine.
    async fn transition(&self, meta: &SharedMeta, id: u64, from: &[StoreState], to: StoreState) -> Result<StoreStatusResponse> {
        let store = self.find(meta, id)?;
        let now = stored_state(&store);
        if now == to {
            return Ok(self.respond(meta, &store));
        }
        if !from.contains(&now) {
            let allowed: Vec<String> = from.iter().map(|s| state_name(*s)).collect();
            return Err(Error::FailedPrecondition(format!(
                "store {id} is {}; only a store that is {} can become {}",
                state_name(now),
                allowed.join(" or "),
                state_name(to)
            )));
        }
        let after = self.meta.set_state(id, from, to).await?;
        if stored_state(&after) != to {
            return Err(Error::FailedPrecondition(format!("store {id} became {} meanwhile", state_name(stored_state(&after)))));
        }
        tracing::info!(store = id, from = ?now, to = ?to, "store state changed");
        Ok(self.respond(meta, &after))
    }

    async fn register_inner(&self, req: RegisterStoreRequest) -> Result<RegisterStoreResponse> {
        if req.name.trim().is_empty() || req.address.trim().is_empty() {
            return Err(Error::InvalidArgument("a store registers with a name and an address".into()));
        }
        let _serial = self.lock.lock().await;
        self.leader().await?;
        let cmd = StoreMeta {
            id: 0,
            name: req.name,
            address: req.address,
            state: StoreState::Pending as i32,
            instance: req.instance,
            ..Default::default()
        };
        match self.meta.propose(meta_cmd::Cmd::RegisterStore(cmd)).await? {
            MetaResult::Store(s) => {
                tracing::info!(store = s.id, name = %s.name, address = %s.address, instance = %s.instance, state = ?stored_state(&s), "store registered");
                Ok(RegisterStoreResponse { header: None, cluster_id: self.cluster_id, store_id: s.id, state: s.state })
            }
            other => Err(Error::Internal(format!("registration answered with {other:?}"))),
        }
    }

    async fn join_inner(&self, req: StoreRequest) -> Result<StoreStatusResponse> {
        let _serial = self.lock.lock().await;
        let meta = self.leader().await?;
        let store = self.find(meta, req.store_id)?;
        if stored_state(&store) == StoreState::Up {
            return Ok(self.respond(meta, &store));
        }
        self.transition(meta, req.store_id, &[StoreState::Pending], StoreState::Joining).await
    }

    async fn drain_inner(&self, req: StoreRequest) -> Result<StoreStatusResponse> {
        let _serial = self.lock.lock().await;
        let meta = self.leader().await?;
        let store = self.find(meta, req.store_id)?;
        let from = [StoreState::Up, StoreState::Joining];
        if from.contains(&stored_state(&store)) {
            let stores: Vec<StoreMeta> = MetaService::read(meta, |st| st.stores().cloned().collect());
            let remaining = stores
                .iter()
                .filter(|s| s.id != store.id && matches!(self.meta.shown_state(s), StoreState::Up | StoreState::Joining))
                .count();
            let rf = self.meta.placement.replication_factor;
            if remaining < rf {
                return Err(Error::FailedPrecondition(format!(
                    "draining store {} would leave {remaining} stores up or joining, fewer than the replication factor {rf}",
                    store.id
                )));
            }
        }
        self.transition(meta, req.store_id, &from, StoreState::Draining).await
    }

    async fn cancel_drain_inner(&self, req: StoreRequest) -> Result<StoreStatusResponse> {
        let _serial = self.lock.lock().await;
        let meta = self.leader().await?;
        self.transition(meta, req.store_id, &[StoreState::Draining], StoreState::Up).await
    }

    async fn remove_inner(&self, req: StoreRequest) -> Result<StoreStatusResponse> {
        let _serial = self.lock.lock().await;
        let meta = self.leader().await?;
        let store = self.find(meta, req.store_id)?;
        let (peers, leaders) = MetaService::read(meta, |st| {
            let regions: Vec<RegionInfo> = st.all_regions().cloned().collect();
            (holding(&regions, store.id).len(), regions.iter().filter(|r| r.leader_store_id == store.id).count())
        });
        if stored_state(&store) != StoreState::Tombstone && (peers > 0 || leaders > 0) {
            return Err(Error::FailedPrecondition(format!(
                "store {} still holds {peers} peers ({leaders} leaders); drain it until it holds none",
                store.id
            )));
        }
        self.transition(meta, req.store_id, &[StoreState::Draining, StoreState::Pending], StoreState::Tombstone).await
    }

    async fn set_labels_inner(&self, req: StoreLabels) -> Result<StoreStatusResponse> {
        let labels = req.labels;
        check_labels(&labels)?;
        let _serial = self.lock.lock().await;
        let meta = self.leader().await?;
        let store = self.find(meta, req.store_id)?;
        if store.labels == labels {
            return Ok(self.respond(meta, &store));
        }
        let after = self.meta.set_labels(req.store_id, labels).await?;
        tracing::info!(store = req.store_id, labels = ?after.labels, "store labels changed");
        Ok(self.respond(meta, &after))
    }

    async fn store_status_inner(&self, req: StoreRequest) -> Result<StoreStatusResponse> {
        let meta = self.leader().await?;
        let store = self.find(meta, req.store_id)?;
        Ok(self.respond(meta, &store))
    }
}

impl AdminService {
    /// Whether the caller of `request` may make the operator's calls.
    fn authorize<T>(&self, request: &Request<T>) -> Result<()> {
        authorize(self.allowed_cns.as_deref().map(Vec::as_slice), &self.metrics, request)
    }
}

/// The operator-only check of Admin and Backup calls: with `allowed` set,
/// the client certificate's Common Name must be on it (else
/// `PERMISSION_DENIED`, counted in `shoal_admin_denied_total`).
pub fn authorize<T>(allowed: Option<&[String]>, metrics: &Metrics, request: &Request<T>) -> Result<()> {
    let Some(allowed) = allowed else { return Ok(()) };
    let certs = request.peer_certs();
    let cn = tls::admin_identity(certs.as_deref().map(Vec::as_slice));
    if cn.as_ref().is_some_and(|cn| allowed.contains(cn)) {
        return Ok(());
    }
    metrics.admin_denied.inc();
    let who = cn.map_or("a caller without a certificate Common Name".to_string(), |cn| format!("CN={cn}"));
    Err(Error::PermissionDenied(format!("admin calls are allowed to certificates with CN in {allowed:?}, not to {who}")))
}

/// Labels as `SetStoreLabels` documents them: at most 16; keys and values at
/// most 63 bytes of `[A-Za-z0-9._-]`, keys not empty.
fn check_labels(labels: &BTreeMap<String, String>) -> Result<()> {
    if labels.len() > 16 {
        return Err(Error::InvalidArgument(format!("at most 16 labels, got {}", labels.len())));
    }
    let ok = |s: &str| s.len() <= 63 && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    for (k, v) in labels {
        if k.is_empty() || !ok(k) || !ok(v) {
            return Err(Error::InvalidArgument(format!(
                "label {k:?}={v:?}: keys and values are at most 63 bytes of [A-Za-z0-9._-], keys not empty"
            )));
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn set_store_labels(&self, request: Request<StoreLabels>) -> Result<Response<StoreStatusResponse>, Status> {
        let allowed = self.authorize(&request);
        self.meta.serve("SetStoreLabels", async { self.set_labels_inner(allowed.map(|()| request.into_inner())?).await }).await
    }

    async fn register_store(&self, request: Request<RegisterStoreRequest>) -> Result<Response<RegisterStoreResponse>, Status> {
        self.meta.serve("RegisterStore", self.register_inner(request.into_inner())).await
    }

    async fn join_store(&self, request: Request<StoreRequest>) -> Result<Response<StoreStatusResponse>, Status> {
        let allowed = self.authorize(&request);
        self.meta.serve("JoinStore", async { self.join_inner(allowed.map(|()| request.into_inner())?).await }).await
    }

    async fn drain_store(&self, request: Request<StoreRequest>) -> Result<Response<StoreStatusResponse>, Status> {
        let allowed = self.authorize(&request);
        self.meta.serve("DrainStore", async { self.drain_inner(allowed.map(|()| request.into_inner())?).await }).await
    }

    async fn cancel_drain(&self, request: Request<StoreRequest>) -> Result<Response<StoreStatusResponse>, Status> {
        let allowed = self.authorize(&request);
        self.meta.serve("CancelDrain", async { self.cancel_drain_inner(allowed.map(|()| request.into_inner())?).await }).await
    }

    async fn remove_store(&self, request: Request<StoreRequest>) -> Result<Response<StoreStatusResponse>, Status> {
        let allowed = self.authorize(&request);
        self.meta.serve("RemoveStore", async { self.remove_inner(allowed.map(|()| request.into_inner())?).await }).await
    }

    async fn store_status(&self, request: Request<StoreRequest>) -> Result<Response<StoreStatusResponse>, Status> {
        let allowed = self.authorize(&request);
        self.meta.serve("StoreStatus", async { self.store_status_inner(allowed.map(|()| request.into_inner())?).await }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_checked() {
        let one = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert!(check_labels(&one("zone", "eu-west-1a")).is_ok());
        assert!(check_labels(&one("zone", "")).is_ok(), "an empty value clears nothing but is allowed");
        assert!(check_labels(&one("", "a")).is_err());
        assert!(check_labels(&one("zone", "a b")).is_err());
        assert!(check_labels(&one("zone", &"x".repeat(64))).is_err());
        let many: BTreeMap<String, String> = (0..17).map(|i| (format!("k{i}"), "v".to_string())).collect();
        assert!(check_labels(&many).is_err());
    }

    #[test]
    fn bytes_to_move_off_a_draining_store_and_onto_a_joining_one() {
        assert_eq!(bytes_to_move(StoreState::Draining, 700, 3000, 3, 3), 700);
        // 3000 bytes × 3 replicas over 4 stores: a share of 2250.
        assert_eq!(bytes_to_move(StoreState::Joining, 250, 3000, 3, 4), 2000);
        assert_eq!(bytes_to_move(StoreState::Joining, 5000, 3000, 3, 4), 0);
        assert_eq!(bytes_to_move(StoreState::Joining, 0, 3000, 3, 2), 3000, "never more replicas than stores");
        assert_eq!(bytes_to_move(StoreState::Up, 10, 3000, 3, 4), 0);
    }
}
