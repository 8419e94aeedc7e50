//! Calls to the `Meta` service: the region directory, the store registry and
//! the id allocator.
//!
//! Every node serves Meta, but only the meta Raft group's leader answers; the
//! others say `not_leader`, with the leader's address when they know it. The
//! client follows that hint, remembers the leader, and otherwise tries the
//! configured endpoints in turn, with the same backoff and deadline as Kv calls.

use std::collections::HashSet;
use std::error::Error as _;
use std::future::Future;
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use shoal_proto::meta_client::MetaClient;
use shoal_proto::{
    AllocIdRequest, AllocIdResponse, GetRegionByKeyRequest, GetRegionByKeyResponse, GetStoreRequest, GetStoreResponse, ListStoresRequest,
    ListStoresResponse, MetaHeader, RegionError, RegionInfo, RegisterStoreResponse, ScanRegionsRequest, ScanRegionsResponse, StoreDetail,
    StoreMeta, StoreStatusResponse,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::route::{CallState, Kind, Verdict, classify, with_timeout};
use crate::{Client, ClientError, Result, lock};

/// After every configured endpoint has answered `UNIMPLEMENTED` to Meta, key
/// routing skips Meta (and uses the endpoints directly) for this long.
pub const META_RETRY_AFTER: Duration = Duration::from_secs(10);

/// A region as the directory knows it, and the stores of its peers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RegionLocation {
    pub info: RegionInfo,
    pub stores: Vec<StoreMeta>,
}

#[derive(Default)]
pub(crate) struct MetaState {
    /// The address that last answered a Meta call, or the leader a hint named.
    leader: Mutex<Option<String>>,
    /// Until when routing does not ask Meta (no endpoint serves it).
    unsupported_until: Mutex<Option<Instant>>,
    /// Where the next call starts among the endpoints.
    next: AtomicUsize,
}

impl MetaState {
    /// Whether key routing should ask Meta.
    pub(crate) fn usable(&self) -> bool {
        lock(&self.unsupported_until).is_none_or(|until| Instant::now() >= until)
    }

    fn mark_unsupported(&self) {
        *lock(&self.unsupported_until) = Some(Instant::now() + META_RETRY_AFTER);
    }

    fn forget_leader(&self, addr: &str) {
        let mut leader = lock(&self.leader);
        if leader.as_deref() == Some(addr) {
            *leader = None;
        }
    }
}

/// A Meta (or Admin) response, whose header may carry a region error (`not_leader`).
pub(crate) trait MetaAnswer {
    fn take_region_error(&mut self) -> Option<RegionError>;
}

macro_rules! meta_answer {
    ($($t:ty),*) => {$(
        impl MetaAnswer for $t {
            fn take_region_error(&mut self) -> Option<RegionError> {
                self.header.take().and_then(|h: MetaHeader| h.region_error)
            }
        }
    )*};
}
meta_answer!(
    GetRegionByKeyResponse,
    ScanRegionsResponse,
    GetStoreResponse,
    ListStoresResponse,
    AllocIdResponse,
    RegisterStoreResponse,
    StoreStatusResponse
);

/// How hard one Meta call tries.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Budget {
    /// Until the deadline, backing off between tries.
    Full,
    /// Each endpoint about once (plus one leader hint), without sleeping: for
    /// lookups inside a Kv call, which has its own retry loop and a fallback.
    OnePass,
}

impl Client {
    /// Sends `req` (made by `call`) to the Meta leader. All Meta calls are safe
    /// to repeat (an `AllocId` whose answer is lost only wastes ids), so every
    /// failure but a bad request or a server fault is retried.
    async fn meta_call<Req, Resp, F, Fut>(&self, req: &Req, deadline: Instant, budget: Budget, call: F) -> Result<Resp>
    where
        Req: Clone,
        Resp: MetaAnswer,
        F: Fn(MetaClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let make = |ch: Channel| MetaClient::new(ch).max_decoding_message_size(usize::MAX);
        self.leader_call("Meta", req, deadline, budget, make, call).await
    }

    /// Sends `req` to the meta leader through the client `make` builds (for
    /// `service`, which the meta leader serves: Meta or Admin), following
    /// `not_leader` hints. `FAILED_PRECONDITION` and `NOT_FOUND` are the
    /// server's answer and are returned at once.
    pub(crate) async fn leader_call<C, Req, Resp, F, Fut>(
        &self,
        service: &str,
        req: &Req,
        deadline: Instant,
        budget: Budget,
        make: impl Fn(Channel) -> C,
        call: F,
    ) -> Result<Resp>
    where
        Req: Clone,
        Resp: MetaAnswer,
        F: Fn(C, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let mut st = CallState::until(deadline);
        let n = self.endpoints.len();
        let first = self.meta.next.fetch_add(1, Ordering::Relaxed);
        let mut turn = 0usize;
        let mut hint: Option<String> = None;
        let mut unimplemented: HashSet<String> = HashSet::new();
        // Whether any endpoint answered anything but UNIMPLEMENTED.
        let mut other_answer = false;
        loop {
            let remaining = st.deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() || (budget == Budget::OnePass && st.attempts as usize > n) {
                if budget == Budget::OnePass && service == "Meta" && !unimplemented.is_empty() && !other_answer {
                    // Whoever answered has no Meta service; the rest did not answer.
                    self.meta.mark_unsupported();
                }
                return Err(st.unavailable());
            }
            let leader = lock(&self.meta.leader).clone();
            let addr = hint.take().or(leader).unwrap_or_else(|| {
                turn += 1;
                self.endpoints[(first + turn - 1) % n].clone()
            });
            st.attempts += 1;
            let client = match self.channel(&addr) {
                Ok(c) => make(c),
                Err(e) => {
                    st.last = e.to_string();
                    self.meta.forget_leader(&addr);
                    continue;
                }
            };
            let timeout = self.opts.attempt_timeout.min(remaining);
            let mut r = tonic::Request::new(req.clone());
            r.set_timeout(timeout);
            let now = match with_timeout(timeout, call(client, r)).await.map(tonic::Response::into_inner) {
                Ok(mut resp) => match resp.take_region_error() {
                    None => {
                        *lock(&self.meta.leader) = Some(addr);
                        return Ok(resp);
                    }
                    Some(err) => {
                        other_answer = true;
                        st.last = format!("{addr}: {service}: {}", err.message);
                        self.meta.forget_leader(&addr);
                        hint = err.not_leader.map(|nl| nl.leader_addr).filter(|a| !a.is_empty() && *a != addr);
                        hint.is_some()
                    }
                },
                Err(status) if status.source().is_none() && matches!(status.code(), Code::FailedPrecondition | Code::NotFound) => {
                    // The leader answered: the request is refused, or names nothing.
                    *lock(&self.meta.leader) = Some(addr);
                    let message = status.message().to_string();
                    return Err(if status.code() == Code::NotFound {
                        ClientError::NotFound(message)
                    } else {
                        ClientError::FailedPrecondition(message)
                    });
                }
                Err(status) => {
                    st.last = format!("{addr}: {service}: {:?}: {}", status.code(), status.message());
                    self.meta.forget_leader(&addr);
                    if status.code() == Code::Unimplemented && status.source().is_none() {
                        // This node has no Meta service; maybe another has.
                        unimplemented.insert(addr);
                        if self.endpoints.iter().all(|e| unimplemented.contains(e)) {
                            if service == "Meta" {
                                self.meta.mark_unsupported();
                            }
                            return Err(ClientError::Server(format!("no endpoint serves the {service} service ({})", st.last)));
                        }
                        true
                    } else {
                        // A status the server sent (not a transport failure) is an answer.
                        other_answer |= status.source().is_none();
                        match classify(&status, Kind::Read) {
                            Verdict::Invalid => return Err(ClientError::InvalidArgument(status.message().to_string())),
                            Verdict::Fatal => return Err(ClientError::Server(st.last.clone())),
                            Verdict::Ambiguous | Verdict::Retry => false,
                        }
                    }
                }
            };
            if budget == Budget::Full {
                st.pace(now).await;
            }
        }
    }

    pub(crate) fn meta_deadline(&self) -> Instant {
        Instant::now() + self.opts.deadline
    }

    fn remember_location(&self, loc: &RegionLocation) {
        let mut cache = self.cache();
        for s in &loc.stores {
            cache.put_store_meta(s);
        }
        if let Some(region) = loc.info.region.clone() {
            cache.insert(region, loc.info.leader_store_id);
        }
    }

    async fn locate(&self, key: &[u8], deadline: Instant, budget: Budget) -> Result<RegionLocation> {
        let req = GetRegionByKeyRequest { key: key.to_vec() };
        let resp = self.meta_call(&req, deadline, budget, |mut c, r| async move { c.get_region_by_key(r).await }).await?;
        let loc = RegionLocation { info: resp.region.unwrap_or_default(), stores: resp.stores };
        if loc.info.region.is_none() {
            return Err(ClientError::Server(format!("the region directory has no region for key {key:?}")));
        }
        self.remember_location(&loc);
        Ok(loc)
    }

    /// One quick lookup of `key`'s region for routing (caching the answer): each
    /// endpoint about once, within one attempt's time, leaving the rest of the
    /// call's time to the fallback.
    pub(crate) async fn locate_once(&self, key: &[u8], deadline: Instant) -> Result<RegionLocation> {
        let deadline = deadline.min(Instant::now() + self.opts.attempt_timeout);
        self.locate(key, deadline, Budget::OnePass).await
    }

    /// The region holding `key`, its leader as last reported, and the stores of
    /// its peers (cached for routing).
    pub async fn region_by_key(&self, key: &[u8]) -> Result<RegionLocation> {
        self.locate(key, self.meta_deadline(), Budget::Full).await
    }

    /// The regions overlapping `[start, end)` in key order (an empty `end` is
    /// unbounded), at most `limit` of them (0: all). They are cached too.
    pub async fn scan_regions(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<RegionInfo>> {
        let req = ScanRegionsRequest { start_key: start.to_vec(), end_key: end.to_vec(), limit: limit.min(u32::MAX as usize) as u32 };
        let resp = self.meta_call(&req, self.meta_deadline(), Budget::Full, |mut c, r| async move { c.scan_regions(r).await }).await?;
        let mut cache = self.cache();
        for info in &resp.regions {
            if let Some(region) = info.region.clone() {
                cache.insert(region, info.leader_store_id);
            }
        }
        Ok(resp.regions)
    }

    /// Fills the region cache with every region and store Meta knows, in pages
    /// of `page` regions; returns how many regions were cached. A long-running
    /// client learns them one miss at a time; this is how a benchmark starts
    /// from that steady state instead of from a cold cache.
    pub async fn warm_region_cache(&self, page: usize) -> Result<usize> {
        self.list_stores().await?;
        let (mut start, mut count) = (Vec::new(), 0);
        loop {
            let regions = self.scan_regions(&start, b"", page.max(1)).await?;
            count += regions.len();
            match regions.last().and_then(|r| r.region.as_ref()) {
                Some(last) if !last.end_key.is_empty() && regions.len() >= page.max(1) => start = last.end_key.clone(),
                _ => return Ok(count),
            }
        }
    }

    /// Every store in the registry, with its last reported stats.
    pub async fn list_stores(&self) -> Result<Vec<StoreDetail>> {
        let resp = self
            .meta_call(&ListStoresRequest {}, self.meta_deadline(), Budget::Full, |mut c, r| async move { c.list_stores(r).await })
            .await?;
        let mut cache = self.cache();
        for s in resp.stores.iter().filter_map(|d| d.store.as_ref()) {
            cache.put_store_meta(s);
        }
        Ok(resp.stores)
    }

    /// The store `store_id`, or `None` if the registry does not have it.
    pub async fn get_store(&self, store_id: u64) -> Result<Option<StoreDetail>> {
        let req = GetStoreRequest { store_id };
        let resp = self
            .meta_call(&req, self.meta_deadline(), Budget::Full, |mut c, r| async move {
                match c.get_store(r).await {
                    Err(s) if s.code() == Code::NotFound && s.source().is_none() => Ok(tonic::Response::new(GetStoreResponse::default())),
                    other => other,
                }
            })
            .await?;
        let store = resp.store.filter(|d| d.store.as_ref().is_some_and(|s| s.id != 0));
        if let Some(s) = store.as_ref().and_then(|d| d.store.as_ref()) {
            self.cache().put_store_meta(s);
        }
        Ok(store)
    }

    /// Allocates `count` cluster-unique ids (0 counts as 1) and returns them.
    pub async fn alloc_id(&self, count: u32) -> Result<Range<u64>> {
        let req = AllocIdRequest { count };
        let resp = self.meta_call(&req, self.meta_deadline(), Budget::Full, |mut c, r| async move { c.alloc_id(r).await }).await?;
        Ok(resp.first_id..resp.first_id + u64::from(resp.count))
    }
}
