//! [`MetaClient`]: how a store reaches the meta leader — for heartbeats and ids.
//!
//! It tries the leader it last found, else every store in the registry in turn;
//! a `NotLeader` answer naming the leader's address is followed at once. Calls
//! are few (one heartbeat a second, ids per split), so channels are made lazily
//! and kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_proto::admin_client::AdminClient;
use shoal_proto::meta_client::MetaClient as MetaGrpc;
use shoal_proto::{
    AllocIdRequest, HeartbeatRequest, HeartbeatResponse, ListStoresRequest, MetaHeader, RegisterStoreRequest, RegisterStoreResponse,
    StoreMeta,
};
use tonic::transport::Channel;

use super::registry::StoreRegistry;
use crate::error::{Error, Result};

pub struct MetaClient {
    registry: StoreRegistry,
    /// Addresses to try besides the registry's (`--join`).
    seeds: Vec<String>,
    timeout: Duration,
    channels: Mutex<HashMap<String, Channel>>,
    /// The meta leader's address as last found (shared with the store's Meta
    /// service, which points callers there when it holds no meta peer).
    leader: Arc<Mutex<Option<String>>>,
}

/// What one attempt against one store gave.
enum Answer<T> {
    Done(T),
    /// Not the leader; the leader's address when it knows it.
    Redirect(Option<String>),
}

fn answer<T>(header: Option<MetaHeader>, value: T) -> Answer<T> {
    match header.and_then(|h| h.region_error) {
        None => Answer::Done(value),
        Some(e) => Answer::Redirect(e.not_leader.map(|n| n.leader_addr).filter(|a| !a.is_empty())),
    }
}

impl MetaClient {
    pub fn new(registry: StoreRegistry, seeds: Vec<String>, timeout: Duration) -> MetaClient {
        MetaClient::sharing_leader(registry, seeds, timeout, Arc::default())
    }

    /// Like [`MetaClient::new`], keeping the leader it finds in `leader`.
    pub fn sharing_leader(
        registry: StoreRegistry,
        seeds: Vec<String>,
        timeout: Duration,
        leader: Arc<Mutex<Option<String>>>,
    ) -> MetaClient {
        MetaClient { registry, seeds, timeout, channels: Mutex::new(HashMap::new()), leader }
    }

    fn client(&self, addr: &str) -> Result<Channel> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let channel = self
            .registry
            .endpoint(addr)
            .map_err(|e| Error::InvalidArgument(format!("bad store address {addr:?}: {e}")))?
            .connect_timeout(Duration::from_secs(1))
            .timeout(self.timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// Runs `call` against the meta leader, wherever it is.
    async fn call<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T>
    where
        F: FnMut(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<Answer<T>, tonic::Status>>,
    {
        let leader = self.leader.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut candidates: Vec<String> = leader.into_iter().collect();
        candidates.extend(self.registry.all().into_iter().map(|s| s.address));
        candidates.extend(self.seeds.iter().cloned());
        let mut last = String::from("no store to ask");
        let mut i = 0;
        // Every candidate once, plus a few redirects.
        while i < candidates.len() && i < 16 {
            let addr = candidates[i].clone();
            i += 1;
            match call(self.client(&addr)?).await {
                Ok(Answer::Done(v)) => {
                    *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
                    return Ok(v);
                }
                Ok(Answer::Redirect(hint)) => {
                    last = format!("{addr}: not the meta leader");
                    if let Some(h) = hint.filter(|h| *h != addr) {
                        candidates.insert(i, h);
                    }
                }
                Err(s) => last = format!("{addr}: {:?}: {}", s.code(), s.message()),
            }
        }
        *self.leader.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Err(Error::Unavailable(format!("{what}: no meta leader answered ({last})")))
    }

    pub async fn heartbeat(&self, req: HeartbeatRequest) -> Result<HeartbeatResponse> {
        self.call("heartbeat", |c| {
            let req = req.clone();
            async move {
                let resp = MetaGrpc::new(c).heartbeat(req).await?.into_inner();
                Ok(answer(resp.header.clone(), resp))
            }
        })
        .await
    }

    /// `count` fresh ids: `first .. first + count`.
    pub async fn alloc_ids(&self, count: u32) -> Result<u64> {
        let resp = self
            .call("alloc ids", |c| async move {
                let resp = MetaGrpc::new(c).alloc_id(AllocIdRequest { count }).await?.into_inner();
                Ok(answer(resp.header.clone(), resp))
            })
            .await?;
        if resp.count < count.max(1) || resp.first_id == 0 {
            return Err(Error::Internal(format!("meta handed out {} ids from {}, asked for {count}", resp.count, resp.first_id)));
        }
        Ok(resp.first_id)
    }

    /// Registers a joining store from the data directory whose instance
    /// token is `instance`: its id and the cluster's, and its state.
    pub async fn register_store(&self, name: &str, address: &str, instance: &str) -> Result<RegisterStoreResponse> {
        let req = RegisterStoreRequest { name: name.to_string(), address: address.to_string(), instance: instance.to_string() };
        self.call("register store", |c| {
            let req = req.clone();
            async move {
                let resp = AdminClient::new(c).register_store(req).await?.into_inner();
                Ok(answer(resp.header.clone(), resp))
            }
        })
        .await
    }

    /// Every store meta knows.
    pub async fn list_stores(&self) -> Result<Vec<StoreMeta>> {
        let resp = self
            .call("list stores", |c| async move {
                let resp = MetaGrpc::new(c).list_stores(ListStoresRequest {}).await?.into_inner();
                Ok(answer(resp.header.clone(), resp))
            })
            .await?;
        Ok(resp.stores.into_iter().filter_map(|d| d.store).collect())
    }
}
