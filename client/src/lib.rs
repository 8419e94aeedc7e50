//! `shoal-client`: a client for a multi-region Shoal cluster.
//!
//! # Routing
//!
//! The key space is split into regions, each its own Raft group; a store serves
//! a key only if it hosts the leader of the key's region. [`Client`] keeps a
//! [`cache::RegionCache`] of regions (by start key, with their epochs, peers and
//! leader's store) and of store addresses. A key-based call:
//!
//! 1. looks the key up in the cache; on a miss it asks the `Meta` service
//!    (`GetRegionByKey`, which also gives the addresses of the region's stores)
//!    and caches the answer;
//! 2. sends the request to the leader's store, or, while the leader is unknown,
//!    to the region's peers' stores in turn;
//! 3. acts on the region error in the answer, if any — every region error means
//!    the request was not executed, so writes are retried after one too:
//!    - `not_leader`: record the new leader (when the error is about the region
//!      the request was routed to; if it names another region, the cached one
//!      is stale and is dropped) and retry at once on the leader's address; at
//!      most one immediate retry in a row, so two stores naming each other
//!      cannot make the client spin; with no leader named, back off and try
//!      another peer;
//!    - `epoch_not_match`: cache the `current_regions` the store sent (after a
//!      split, both halves) and retry (a batch group is regrouped first);
//!    - `region_not_found`: drop the region from the cache, look it up again,
//!      retry;
//!    - `key_not_in_region` (a batch spanning regions): if the bounds the store
//!      gives are narrower than the cached region's, the region split unseen:
//!      cache it with those bounds (see
//!      [`cache::RegionCache::on_key_not_in_region`]); else drop it; regroup the
//!      batch and retry;
//!    - `server_is_busy`: back off, retry;
//! 4. on `UNAVAILABLE` or a transport error, forgets that store as leader, backs
//!    off and retries (the next try goes to another peer) — unless the call is a
//!    write whose outcome is unknown (below).
//!
//! Meta calls (and the store lifecycle calls of the `Admin` service, see
//! [`Client::drain_store`]) go to the configured endpoints; any node serves them, and one that
//! does not lead the meta Raft group answers `not_leader` with the leader's
//! address, which the client follows (and remembers). A lookup made while
//! routing tries each endpoint about once, within one attempt's time; if it
//! finds no region (a node without the Meta service, no meta leader yet), that
//! try goes to the configured endpoints in turn, preferring the last one that
//! answered, and follows `not_leader` hints from there: a key still gets served.
//! After every endpoint has answered `UNIMPLEMENTED` to Meta, the client goes
//! straight to that fallback for [`META_RETRY_AFTER`] before asking Meta again.
//!
//! Backoff is 20 ms doubling to 500 ms, plus up to 50 % jitter. One call (one
//! request of a scan, see [`Client::scan`]) retries until
//! [`ClientOptions::deadline`]; each try is cut off after
//! [`ClientOptions::attempt_timeout`] (sent to the server as the gRPC timeout;
//! the client itself waits half a second more).
//!
//! # Errors and retries
//!
//! `INVALID_ARGUMENT` and server-side failures (`INTERNAL`, `UNIMPLEMENTED`...)
//! are returned at once. Writes are retried only when the answer proves nothing
//! was applied (a region error, `UNAVAILABLE` from the server, a refused
//! connection). When a write's fate is unknown — the server said `UNKNOWN`, the
//! try timed out, was cancelled or aborted, or the connection broke after the
//! request was sent — the call returns [`ClientError::OutcomeUnknown`] rather
//! than retrying, since a blind retry could overwrite a later write of another
//! client. Reads are always retried.
//!
//! # Atomicity
//!
//! `put`, `delete` and a `batch_write` whose keys lie in one region are atomic.
//! A `batch_write` spanning regions is split into one `BatchWrite` per region,
//! each atomic on its own; see [`Client::batch_write`].
//!
//! Reads are linearizable unless [`ReadConsistency::Stale`] is asked for.

mod admin;
pub mod backup;
mod batch;
pub mod cache;
mod meta;
pub mod pki;
mod route;

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use shoal_proto::kv_client::KvClient;
use shoal_proto::status_client::StatusClient;
use shoal_proto::{BatchWriteRequest, DeleteRequest, GetRequest, PutRequest, ScanRequest, StatusRequest};
pub use shoal_proto::{
    Mutation, Peer, ReadConsistency, Region, RegionEpoch, RegionInfo, RegisterStoreResponse, StatusResponse, StoreDetail, StoreMeta,
    StoreState, StoreStats, StoreStatus, mutation,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use cache::RegionCache;
pub use meta::{META_RETRY_AFTER, RegionLocation};
use route::{CallState, Kind, Routed};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request is wrong (unknown column family, empty or oversized key...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The cluster refused the request in its current state (an admin call:
    /// draining below the replication factor, removing a store that still
    /// holds peers...); nothing was changed. The server's reason.
    #[error("{0}")]
    FailedPrecondition(String),
    /// What the request names (a store) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// No endpoint could serve the request before the deadline.
    #[error("unavailable after {attempts} attempts in {elapsed:?}: {last}")]
    Unavailable { attempts: u32, elapsed: Duration, last: String },
    /// The server failed in a way retrying will not fix.
    #[error("server error: {0}")]
    Server(String),
    /// A write may or may not have been applied; read the key to find out.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    #[error("bad endpoint {0:?}: {1}")]
    BadEndpoint(String, String),
    /// The TLS files could not be read or used.
    #[error("TLS: {0}")]
    Tls(String),
    /// A [`Client::batch_write`] spanning regions stopped part way: the
    /// mutations in `applied` were applied, the group in `failed` failed with
    /// `error` (applied or not as that error says: with
    /// [`ClientError::OutcomeUnknown`] it may have been), and those in
    /// `not_sent` were not sent, so not applied.
    #[error(
        "batch write incomplete: {} mutations applied, {} failed, {} not sent: {error}",
        applied.len(),
        failed.len(),
        not_sent.len()
    )]
    BatchIncomplete { applied: Vec<Mutation>, failed: Vec<Mutation>, not_sent: Vec<Mutation>, error: Box<ClientError> },
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Total time one call may take, retries included.
    pub deadline: Duration,
    /// Time one attempt may take.
    pub attempt_timeout: Duration,
    pub connect_timeout: Duration,
    /// TLS towards every store (`None`: plaintext).
    pub tls: Option<ClientTls>,
}

/// TLS settings of a client: the CA that signed the stores' certificates and,
/// for mutual TLS, the client's own certificate and key (PEM).
#[derive(Clone)]
pub struct ClientTls {
    ca_pem: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    server_name: Option<String>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("client_certificate", &self.identity.is_some()).finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Reads the CA file and, if given, the client certificate and key files
    /// (both or neither).
    pub fn from_files(ca: &std::path::Path, cert: Option<&std::path::Path>, key: Option<&std::path::Path>) -> Result<ClientTls> {
        let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| ClientError::Tls(format!("cannot read {}: {e}", p.display())));
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
            (None, None) => None,
            _ => return Err(ClientError::Tls("a client certificate needs its key, and a key its certificate".into())),
        };
        Ok(ClientTls { ca_pem: read(ca)?, identity, server_name: None })
    }

    /// The same from PEM held in memory (e.g. read from a Kubernetes Secret).
    pub fn from_pem(ca: &[u8], identity: Option<(&[u8], &[u8])>) -> ClientTls {
        ClientTls { ca_pem: ca.to_vec(), identity: identity.map(|(c, k)| (c.to_vec(), k.to_vec())), server_name: None }
    }

    /// Checks every store's certificate for `name` rather than for the host
    /// dialled: for a client that dials addresses (pod IPs) that its stores'
    /// certificates do not name.
    pub fn with_server_name(mut self, name: &str) -> ClientTls {
        self.server_name = Some(name.into());
        self
    }

    fn config(&self) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if let Some(name) = &self.server_name {
            config = config.domain_name(name.as_str());
        }
        match &self.identity {
            Some((cert, key)) => config.identity(Identity::from_pem(cert, key)),
            None => config,
        }
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        // An attempt outlasts the server's own request timeout (5 s), so that the
        // server, which knows whether a write was proposed, answers first.
        ClientOptions {
            deadline: Duration::from_secs(20),
            attempt_timeout: Duration::from_secs(8),
            connect_timeout: Duration::from_secs(1),
            tls: None,
        }
    }
}

/// One key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

pub struct Client {
    endpoints: Vec<String>,
    opts: ClientOptions,
    channels: Mutex<HashMap<String, Channel>>,
    /// Regions, their leaders, store addresses.
    cache: Mutex<RegionCache>,
    /// Where the Meta leader is, and whether the cluster serves Meta at all.
    meta: meta::MetaState,
    /// Fallback routing (no region known): the endpoint to try first, the last
    /// one that answered or a leader hint.
    preferred: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Client {
    /// A client for the cluster reachable at `endpoints` (`HOST:PORT`). Connects
    /// lazily, on first use (which must be inside a Tokio runtime).
    pub fn new(endpoints: &[String], opts: ClientOptions) -> Result<Client> {
        let endpoints: Vec<String> = endpoints
            .iter()
            .map(|e| e.trim().trim_start_matches("http://").trim_start_matches("https://").to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Err(ClientError::BadEndpoint(String::new(), "no endpoints given".into()));
        }
        for e in &endpoints {
            Endpoint::from_shared(format!("http://{e}")).map_err(|err| ClientError::BadEndpoint(e.clone(), err.to_string()))?;
        }
        Ok(Client {
            endpoints,
            opts,
            channels: Mutex::new(HashMap::new()),
            cache: Mutex::new(RegionCache::new()),
            meta: meta::MetaState::default(),
            preferred: Mutex::new(None),
        })
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    pub(crate) fn channel(&self, addr: &str) -> Result<Channel> {
        let mut channels = lock(&self.channels);
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let bad = |e: tonic::transport::Error| ClientError::BadEndpoint(addr.into(), e.to_string());
        let ep = match &self.opts.tls {
            None => Endpoint::from_shared(format!("http://{addr}")).map_err(bad)?,
            Some(tls) => Endpoint::from_shared(format!("https://{addr}")).and_then(|ep| ep.tls_config(tls.config())).map_err(bad)?,
        };
        let channel = ep.connect_timeout(self.opts.connect_timeout).tcp_nodelay(true).connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    fn kv(&self, addr: &str) -> Result<KvClient<Channel>> {
        Ok(KvClient::new(self.channel(addr)?).max_decoding_message_size(usize::MAX).max_encoding_message_size(usize::MAX))
    }

    fn cache(&self) -> MutexGuard<'_, RegionCache> {
        lock(&self.cache)
    }

    /// Reads `key` from `cf`; `None` when it does not exist.
    pub async fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_with(cf, key, ReadConsistency::Linearizable).await
    }

    pub async fn get_with(&self, cf: &str, key: &[u8], consistency: ReadConsistency) -> Result<Option<Vec<u8>>> {
        let req = GetRequest { cf: cf.to_string(), key: key.to_vec(), consistency: consistency as i32 };
        let kind = if consistency == ReadConsistency::Stale { Kind::StaleRead } else { Kind::Read };
        let resp = self.send(&mut self.call_state(), kind, key, false, &req, |mut kv, r| async move { kv.get(r).await }).await?;
        let resp = resp.done()?;
        Ok(resp.found.then_some(resp.value))
    }

    pub async fn put(&self, cf: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let req = PutRequest { cf: cf.to_string(), key: key.to_vec(), value: value.to_vec() };
        self.send(&mut self.call_state(), Kind::Write, key, false, &req, |mut kv, r| async move { kv.put(r).await }).await?.done()?;
        Ok(())
    }

    pub async fn delete(&self, cf: &str, key: &[u8]) -> Result<()> {
        let req = DeleteRequest { cf: cf.to_string(), key: key.to_vec() };
        self.send(&mut self.call_state(), Kind::Write, key, false, &req, |mut kv, r| async move { kv.delete(r).await }).await?.done()?;
        Ok(())
    }

    /// Applies `mutations`, atomically **per region only**.
    ///
    /// The mutations are grouped by the region of their key (as the client
    /// knows regions) and each group goes to its region as one `BatchWrite`,
    /// which the store applies all or nothing. Groups are sent one at a time, in
    /// key order, and mutations of one key stay in one group, in their order.
    /// So a batch within one region is atomic, but one that spans regions may
    /// partly apply: if a group fails after others were applied, the call returns
    /// [`ClientError::BatchIncomplete`], which lists the applied mutations, the
    /// failed group, and those not sent. (A batch that was one group fails with
    /// the group's own error.) A group that meets a region error (the region
    /// split or moved: nothing of it was applied) is regrouped by the new
    /// regions and retried.
    ///
    /// Before sending anything the batch is checked for what would surely be
    /// refused (no mutations, an empty key, an unknown op, a delete with a
    /// value); anything else the server refuses (such as an unknown column
    /// family) fails only the group it is in. The whole call, regroupings
    /// included, takes at most [`ClientOptions::deadline`].
    pub async fn batch_write(&self, mutations: Vec<Mutation>) -> Result<()> {
        batch::check(&mutations).map_err(ClientError::InvalidArgument)?;
        let mut st = self.call_state();
        let mut queue: VecDeque<Vec<Mutation>> = self.plan_batch(mutations, &mut st).await.into();
        let mut applied: Vec<Mutation> = Vec::new();
        while let Some(group) = queue.pop_front() {
            let key = group[0].key.clone();
            let req = BatchWriteRequest { mutations: group };
            match self.send(&mut st, Kind::Write, &key, true, &req, |mut kv, r| async move { kv.batch_write(r).await }).await {
                Ok(Routed::Done(_)) => applied.extend(req.mutations),
                Ok(Routed::Regroup) => {
                    for g in self.plan_batch(req.mutations, &mut st).await.into_iter().rev() {
                        queue.push_front(g);
                    }
                }
                Err(error) => {
                    let not_sent: Vec<Mutation> = queue.into_iter().flatten().collect();
                    if applied.is_empty() && not_sent.is_empty() {
                        return Err(error);
                    }
                    return Err(ClientError::BatchIncomplete { applied, failed: req.mutations, not_sent, error: Box::new(error) });
                }
            }
        }
        Ok(())
    }

    /// Groups `mutations` by region, first looking up (in Meta) the regions of
    /// keys the cache does not know. Keys whose region stays unknown form the
    /// last group, routed by its first key.
    async fn plan_batch(&self, mutations: Vec<Mutation>, st: &mut CallState) -> Vec<Vec<Mutation>> {
        let mut i = 0;
        while i < mutations.len() && !st.expired() && self.meta.usable() {
            if self.cache().lookup(&mutations[i].key).is_some() {
                i += 1;
                continue;
            }
            let key = mutations[i].key.clone();
            match self.locate_once(&key, st.deadline).await {
                Ok(_) if self.cache().lookup(&key).is_some() => i += 1,
                Ok(_) => break, // Meta's answer was older than what the cache has
                Err(e) => {
                    st.last = format!("region lookup: {e}");
                    break;
                }
            }
        }
        let cache = self.cache();
        batch::group_by_region(&cache, mutations).into_iter().map(|g| g.mutations).collect()
    }

    /// Reads up to `limit` pairs of `[start, end)` in key order (an empty `end` is
    /// unbounded; `limit` 0 means no limit). A store's answer stops at the end of
    /// its region; the scan goes on from there (from the `resume_key`), routing
    /// each continuation by its start key, until `end`, the limit, or the last
    /// region. Each continuation is one call with its own deadline.
    pub async fn scan(&self, cf: &str, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Pair>> {
        let mut out: Vec<Pair> = Vec::new();
        let mut from = start.to_vec();
        loop {
            if !end.is_empty() && from.as_slice() >= end {
                return Ok(out);
            }
            let want = if limit == 0 { 0 } else { (limit - out.len()).min(u32::MAX as usize) as u32 };
            let req = ScanRequest {
                cf: cf.to_string(),
                start_key: from.clone(),
                end_key: end.to_vec(),
                limit: want,
                consistency: ReadConsistency::Linearizable as i32,
            };
            let resp = self
                .send(&mut self.call_state(), Kind::Read, &from, false, &req, |mut kv, r| async move { kv.scan(r).await })
                .await?
                .done()?;
            for p in resp.pairs {
                // Keep to [from, end), strictly increasing: each key once, in order.
                let in_range = p.key >= from && (end.is_empty() || p.key.as_slice() < end);
                if in_range && out.last().is_none_or(|(last, _)| p.key > *last) {
                    out.push((p.key, p.value));
                }
            }
            if limit != 0 && out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
            if resp.resume_key.is_empty() {
                return Ok(out);
            }
            if resp.resume_key <= from {
                return Err(ClientError::Server(format!("scan did not advance: resume key {:?} is not after {:?}", resp.resume_key, from)));
            }
            from = resp.resume_key;
        }
    }

    /// Asks one endpoint for its status.
    pub async fn status_of(&self, addr: &str) -> Result<StatusResponse> {
        let mut client = StatusClient::new(self.channel(addr)?);
        let mut req = tonic::Request::new(StatusRequest {});
        req.set_timeout(self.opts.attempt_timeout);
        client.status(req).await.map(|r| r.into_inner()).map_err(|s| ClientError::Unavailable {
            attempts: 1,
            elapsed: Duration::ZERO,
            last: format!("{addr}: {:?}: {}", s.code(), s.message()),
        })
    }
}
