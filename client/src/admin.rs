//! Calls to the `Admin` service: the store lifecycle (join, drain, cancel a
//! drain, remove, status) and the stores' topology labels. Like Meta, it is served by the meta leader; the
//! calls follow its `not_leader` hints the same way ([`Client::leader_call`]).
//!
//! Every call is safe to repeat (asking for the state a store is in already
//! succeeds), so transient failures are retried until the deadline. A refusal
//! (draining below the replication factor, removing a store that still holds
//! peers) is [`ClientError::FailedPrecondition`] with the server's reason; an
//! unknown store is [`ClientError::NotFound`].

use std::future::Future;

use shoal_proto::admin_client::AdminClient;
use shoal_proto::{RegisterStoreRequest, RegisterStoreResponse, StoreLabels, StoreRequest, StoreStatus, StoreStatusResponse};
use tonic::Status;
use tonic::transport::Channel;

use crate::meta::Budget;
use crate::{Client, ClientError, Result};

impl Client {
    async fn admin_call<Req, Resp, F, Fut>(&self, req: Req, call: F) -> Result<Resp>
    where
        Req: Clone,
        Resp: crate::meta::MetaAnswer,
        F: Fn(AdminClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        self.leader_call("Admin", &req, self.meta_deadline(), Budget::Full, AdminClient::new, call).await
    }

    async fn store_call<F, Fut>(&self, store_id: u64, call: F) -> Result<StoreStatus>
    where
        F: Fn(AdminClient<Channel>, tonic::Request<StoreRequest>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<StoreStatusResponse>, Status>>,
    {
        let resp = self.admin_call(StoreRequest { store_id }, call).await?;
        resp.status.ok_or_else(|| ClientError::Server(format!("no status in the answer about store {store_id}")))
    }

    /// Registers a store (what a joining `shoal-node` does) from the data
    /// directory whose random token is `instance`: the name and instance of a
    /// store that is not tombstoned get its id and state back (a retry);
    /// anything else — a new name, or a known name with another or an empty
    /// instance — gets a new id, PENDING.
    pub async fn register_store(&self, name: &str, address: &str, instance: &str) -> Result<RegisterStoreResponse> {
        let req = RegisterStoreRequest { name: name.to_string(), address: address.to_string(), instance: instance.to_string() };
        self.admin_call(req, |mut c, r| async move { c.register_store(r).await }).await
    }

    /// PENDING → JOINING: placement seeds the store until it holds its share (UP).
    pub async fn join_store(&self, store_id: u64) -> Result<StoreStatus> {
        self.store_call(store_id, |mut c, r| async move { c.join_store(r).await }).await
    }

    /// UP/JOINING → DRAINING: placement moves every peer and leader off it.
    pub async fn drain_store(&self, store_id: u64) -> Result<StoreStatus> {
        self.store_call(store_id, |mut c, r| async move { c.drain_store(r).await }).await
    }

    /// DRAINING → UP.
    pub async fn cancel_drain(&self, store_id: u64) -> Result<StoreStatus> {
        self.store_call(store_id, |mut c, r| async move { c.cancel_drain(r).await }).await
    }

    /// A drained store (holding no peers) → TOMBSTONE.
    pub async fn remove_store(&self, store_id: u64) -> Result<StoreStatus> {
        self.store_call(store_id, |mut c, r| async move { c.remove_store(r).await }).await
    }

    /// Replaces the store's topology labels (`zone`: placement spreads each
    /// region's replicas over zones). Bad labels are [`ClientError::InvalidArgument`].
    pub async fn set_store_labels(&self, store_id: u64, labels: &std::collections::BTreeMap<String, String>) -> Result<StoreStatus> {
        let req = StoreLabels { store_id, labels: labels.clone() };
        let resp = self.admin_call(req, |mut c, r| async move { c.set_store_labels(r).await }).await?;
        resp.status.ok_or_else(|| ClientError::Server(format!("no status in the answer about store {store_id}")))
    }

    /// The store's state (DOWN when not heard from), what it holds, and what
    /// placement still has to move.
    pub async fn store_status(&self, store_id: u64) -> Result<StoreStatus> {
        self.store_call(store_id, |mut c, r| async move { c.store_status(r).await }).await
    }
}
