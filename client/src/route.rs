//! The retry loop of key-based Kv calls: where to send each try (cache, Meta,
//! or the configured endpoints), and what to do with each answer.

use std::error::Error as _;
use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;
use shoal_proto::kv_client::KvClient;
use shoal_proto::{BatchWriteResponse, DeleteResponse, GetResponse, PutResponse, Region, RegionError, ResponseHeader, ScanResponse};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::cache::RegionCache;
use crate::{Client, ClientError, Result, lock};

/// How long past its own timeout a try may run before the client gives up on
/// it (the server, told the timeout, should answer first).
const GRACE: Duration = Duration::from_millis(500);

/// What a request does, which decides whether it may be sent again after an
/// answer was lost.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    /// Served by the region's leader only.
    Read,
    /// A read any store may serve (so its success says nothing about leaders).
    StaleRead,
    Write,
}

/// The result of a routed call.
pub(crate) enum Routed<T> {
    Done(T),
    /// Only with `regroup`: the region changed under a batch group; nothing of
    /// it was applied, and the cache now knows better. Regroup and resend.
    Regroup,
}

impl<T> Routed<T> {
    pub(crate) fn done(self) -> Result<T> {
        match self {
            Routed::Done(v) => Ok(v),
            Routed::Regroup => Err(ClientError::Server("internal: regroup asked of a single-key call".into())),
        }
    }
}

/// A Kv response with a header that may carry a region error.
pub(crate) trait Answer {
    fn take_region_error(&mut self) -> Option<RegionError>;
}

macro_rules! answer {
    ($($t:ty),*) => {$(
        impl Answer for $t {
            fn take_region_error(&mut self) -> Option<RegionError> {
                self.header.take().and_then(|h: ResponseHeader| h.region_error)
            }
        }
    )*};
}
answer!(GetResponse, PutResponse, DeleteResponse, ScanResponse, BatchWriteResponse);

/// 20 ms doubling to 500 ms, plus up to half again of jitter.
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(20);
    const MAX: Duration = Duration::from_millis(500);

    pub(crate) fn new() -> Backoff {
        Backoff { next: Backoff::FIRST }
    }

    pub(crate) fn reset(&mut self) {
        self.next = Backoff::FIRST;
    }

    /// Sleeps for the next backoff, but not past `deadline`.
    pub(crate) async fn wait(&mut self, deadline: Instant) {
        let jitter = rand::rng().random_range(0..=self.next.as_millis() as u64 / 2);
        let pause = (self.next + Duration::from_millis(jitter)).min(deadline.saturating_duration_since(Instant::now()));
        tokio::time::sleep(pause).await;
        self.next = (self.next * 2).min(Backoff::MAX);
    }
}

/// Where one try goes.
#[derive(Clone, Debug)]
struct Target {
    addr: String,
    /// The region the request was routed to (0: unknown, routed without one).
    region_id: u64,
    /// That region as cached (or as Meta reported it), when known.
    region: Option<Region>,
    /// The store at `addr` (0: unknown).
    store_id: u64,
    /// Chosen by the fallback (configured endpoints, no region known), or a
    /// hint that followed such a try: success there updates the preferred endpoint.
    fallback: bool,
}

/// The state of one call across its tries (for a batch, across its groups).
pub(crate) struct CallState {
    pub(crate) started: Instant,
    pub(crate) deadline: Instant,
    pub(crate) attempts: u32,
    pub(crate) last: String,
    backoff: Backoff,
    /// The next try's target, from a leader hint.
    hint: Option<Target>,
    /// Whether the previous retry went out without a backoff.
    immediate: bool,
    /// Turns through a region's peers while its leader is unknown.
    rotation: usize,
    /// Turns through the configured endpoints in fallback routing.
    next_endpoint: usize,
}

impl CallState {
    pub(crate) fn new(deadline: Duration) -> CallState {
        CallState::until(Instant::now() + deadline)
    }

    pub(crate) fn until(deadline: Instant) -> CallState {
        CallState {
            started: Instant::now(),
            deadline,
            attempts: 0,
            last: String::from("no attempt made"),
            backoff: Backoff::new(),
            hint: None,
            immediate: false,
            rotation: 0,
            next_endpoint: 0,
        }
    }

    pub(crate) fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }

    pub(crate) fn unavailable(&self) -> ClientError {
        ClientError::Unavailable { attempts: self.attempts, elapsed: self.started.elapsed(), last: self.last.clone() }
    }

    /// Retries at once if `now` is asked and the previous retry did not go at
    /// once; otherwise backs off.
    pub(crate) async fn pace(&mut self, now: bool) {
        if now && !self.immediate {
            self.immediate = true;
        } else {
            self.immediate = false;
            self.backoff.wait(self.deadline).await;
        }
    }

    fn succeeded(&mut self) {
        self.immediate = false;
        self.backoff.reset();
        self.hint = None;
    }
}

/// What a failed try (a gRPC error) means for the call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The caller's fault: return it.
    Invalid,
    /// The server failed; retrying will not help: return it.
    Fatal,
    /// A write may have been applied: return `OutcomeUnknown`.
    Ambiguous,
    /// Nothing was done, or it was a read: try again.
    Retry,
}

/// Whether tonic made `status` up for a failure to connect (so nothing was sent).
fn is_connect_error(status: &Status) -> bool {
    let mut source = status.source();
    while let Some(e) = source {
        if e.downcast_ref::<tonic::ConnectError>().is_some() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Sorts a gRPC error. A status the server sent has no source; one tonic made
/// from a transport failure has: if that failure was not in connecting, the
/// request may have reached the server, so for a write the outcome is unknown.
pub(crate) fn classify(status: &Status, kind: Kind) -> Verdict {
    let write = kind == Kind::Write;
    if status.source().is_some() {
        return if is_connect_error(status) || !write { Verdict::Retry } else { Verdict::Ambiguous };
    }
    match status.code() {
        Code::InvalidArgument => Verdict::Invalid,
        Code::Internal
        | Code::Unimplemented
        | Code::OutOfRange
        | Code::ResourceExhausted
        | Code::PermissionDenied
        | Code::Unauthenticated => Verdict::Fatal,
        Code::Unknown | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted | Code::DataLoss if write => Verdict::Ambiguous,
        _ => Verdict::Retry,
    }
}

/// Runs `fut` for at most `timeout` plus a grace; a try cut off so reads as a
/// `DEADLINE_EXCEEDED` (ambiguous for a write).
pub(crate) async fn with_timeout<T>(timeout: Duration, fut: impl Future<Output = Result<T, Status>>) -> Result<T, Status> {
    match tokio::time::timeout(timeout + GRACE, fut).await {
        Ok(res) => res,
        Err(_) => Err(Status::deadline_exceeded(format!("no answer within {:?}", timeout + GRACE))),
    }
}

/// A target for `key` from the cache.
fn cached_target(cache: &RegionCache, key: &[u8], rotation: &mut usize) -> Option<Target> {
    let t = cache.target(key, *rotation)?;
    if !t.is_leader {
        *rotation += 1;
    }
    Some(Target { addr: t.addr, region_id: t.region_id, region: Some(t.region), store_id: t.store_id, fallback: false })
}

impl Client {
    pub(crate) fn call_state(&self) -> CallState {
        CallState::new(self.opts.deadline)
    }

    fn set_preferred(&self, addr: Option<String>) {
        *lock(&self.preferred) = addr;
    }

    /// Where the next try for `key` goes: a leader hint, else the cache, else
    /// Meta (caching its answer), else the configured endpoints.
    async fn pick_target(&self, key: &[u8], st: &mut CallState) -> Target {
        if let Some(t) = st.hint.take() {
            return t;
        }
        let cached = {
            let mut cache = self.cache();
            let t = cached_target(&cache, key, &mut st.rotation);
            if t.is_none() {
                // A cached region none of whose stores we can reach is no help: refetch it.
                if let Some(id) = cache.lookup(key).map(|r| r.region.id) {
                    cache.invalidate(id);
                }
            }
            t
        };
        if let Some(t) = cached {
            return t;
        }
        if self.meta.usable() {
            match self.locate_once(key, st.deadline).await {
                Ok(loc) => {
                    // Route by Meta's answer itself: the cache may have refused it
                    // as older than what it has, and the store will then tell us.
                    let mut one = RegionCache::new();
                    for s in &loc.stores {
                        one.put_store_meta(s);
                    }
                    if let Some(region) = loc.info.region.clone() {
                        one.insert(region, loc.info.leader_store_id);
                    }
                    if let Some(t) = cached_target(&one, key, &mut st.rotation) {
                        return t;
                    }
                    st.last = format!("region lookup: no reachable store for the region of {key:?}");
                }
                Err(e) => st.last = format!("region lookup: {e}"),
            }
        }
        let preferred = lock(&self.preferred).clone();
        let addr = preferred.unwrap_or_else(|| {
            let addr = self.endpoints[st.next_endpoint % self.endpoints.len()].clone();
            st.next_endpoint += 1;
            addr
        });
        Target { addr, region_id: 0, region: None, store_id: 0, fallback: true }
    }

    /// Sends `req` (made by `call`) for `key` until it succeeds, fails for good,
    /// or the call's deadline passes, routing and rerouting as the module docs of
    /// the crate describe. With `regroup` (a batch group), a region error that
    /// may mean the group's keys are no longer in one region returns
    /// [`Routed::Regroup`] instead of retrying.
    pub(crate) async fn send<Req, Resp, F, Fut>(
        &self,
        st: &mut CallState,
        kind: Kind,
        key: &[u8],
        regroup: bool,
        req: &Req,
        call: F,
    ) -> Result<Routed<Resp>>
    where
        Req: Clone,
        Resp: Answer,
        F: Fn(KvClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        loop {
            if st.expired() {
                return Err(st.unavailable());
            }
            let target = self.pick_target(key, st).await;
            let remaining = st.deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(st.unavailable());
            }
            st.attempts += 1;
            let addr = target.addr.clone();
            let kv = match self.kv(&addr) {
                Ok(kv) => kv,
                Err(e) => {
                    // A store address or hint that is not a usable address: forget it.
                    st.last = e.to_string();
                    self.forget_target(&target);
                    if target.store_id != 0 {
                        self.cache().forget_store(target.store_id);
                    }
                    st.pace(false).await;
                    continue;
                }
            };
            let timeout = self.opts.attempt_timeout.min(remaining);
            let mut r = tonic::Request::new(req.clone());
            r.set_timeout(timeout);
            let answer = with_timeout(timeout, call(kv, r)).await.map(tonic::Response::into_inner);
            let now = match answer {
                Ok(mut resp) => match resp.take_region_error() {
                    None => {
                        self.succeeded(&target, kind);
                        st.succeeded();
                        return Ok(Routed::Done(resp));
                    }
                    Some(err) => {
                        st.last = format!("{addr}: region error: {}", err.message);
                        self.on_region_error(err, &target, key, st)
                    }
                },
                Err(status) => {
                    st.last = format!("{addr}: {:?}: {}", status.code(), status.message());
                    match classify(&status, kind) {
                        Verdict::Invalid => return Err(ClientError::InvalidArgument(status.message().to_string())),
                        Verdict::Fatal => return Err(ClientError::Server(st.last.clone())),
                        Verdict::Ambiguous => {
                            self.forget_target(&target);
                            return Err(ClientError::OutcomeUnknown(st.last.clone()));
                        }
                        Verdict::Retry => {
                            self.forget_target(&target);
                            Next::Later
                        }
                    }
                }
            };
            match now {
                Next::Now => st.pace(true).await,
                Next::Later => st.pace(false).await,
                Next::Rerouted if regroup => {
                    // The batch is regrouped and each group routed afresh.
                    st.hint = None;
                    st.pace(true).await;
                    return Ok(Routed::Regroup);
                }
                Next::Rerouted => st.pace(true).await,
            }
        }
    }

    fn succeeded(&self, target: &Target, kind: Kind) {
        if target.fallback {
            self.set_preferred(Some(target.addr.clone()));
        }
        // Only a region's leader serves a non-stale request.
        if kind != Kind::StaleRead && target.region_id != 0 && target.store_id != 0 {
            self.cache().update_leader(target.region_id, target.store_id);
        }
    }

    /// The target did not answer (or answered UNAVAILABLE): do not go there first again.
    fn forget_target(&self, target: &Target) {
        if target.fallback {
            self.set_preferred(None);
        }
        if target.region_id != 0 && target.store_id != 0 {
            self.cache().forget_leader(target.region_id, target.store_id);
        }
    }

    /// Updates the cache (and the next target) after a region error; says
    /// whether to retry at once or after a backoff.
    fn on_region_error(&self, err: RegionError, target: &Target, key: &[u8], st: &mut CallState) -> Next {
        if let Some(nl) = err.not_leader {
            let leader_store = nl.leader.as_ref().map(|p| p.store_id).unwrap_or(0);
            let same_region = target.region_id != 0 && nl.region_id == target.region_id;
            // The store has the key in another region than we thought.
            let moved = target.region_id != 0 && nl.region_id != 0 && !same_region;
            let hint_addr = {
                let mut cache = self.cache();
                cache.put_store(leader_store, &nl.leader_addr);
                if same_region {
                    cache.update_leader(target.region_id, leader_store);
                } else if moved {
                    cache.invalidate(target.region_id);
                }
                if nl.leader_addr.is_empty() { cache.store_addr(leader_store).map(str::to_string) } else { Some(nl.leader_addr.clone()) }
            };
            match hint_addr.filter(|a| *a != target.addr) {
                Some(addr) => {
                    if target.fallback {
                        self.set_preferred(Some(addr.clone()));
                    }
                    st.hint = Some(Target {
                        addr,
                        region_id: if nl.region_id != 0 { nl.region_id } else { target.region_id },
                        region: if same_region { target.region.clone() } else { None },
                        store_id: leader_store,
                        fallback: target.fallback,
                    });
                }
                // No leader known, or the store named itself: try elsewhere.
                None => self.forget_target(target),
            }
            // A fresh hint is worth trying at once (`pace` allows one in a row).
            // Even for a batch group whose first key moved to another region: if
            // the group now spans regions, the leader will say KeyNotInRegion.
            return if st.hint.is_some() { Next::Now } else { Next::Later };
        }
        if let Some(e) = err.epoch_not_match {
            let mut cache = self.cache();
            cache.on_epoch_not_match(&e.current_regions);
            // If the key still maps to the region and epoch we used, nothing we
            // learned helps: drop it and ask Meta.
            if target.region_id != 0
                && let Some(c) = cache.lookup(key)
                && c.region.id == target.region_id
                && target.region.as_ref().is_some_and(|r| r.epoch == c.region.epoch)
            {
                cache.invalidate(target.region_id);
            }
            return Next::Rerouted;
        }
        if let Some(e) = err.key_not_in_region {
            let mut cache = self.cache();
            match &target.region {
                // The store told us the region's bounds now: if it split, cache the part we know.
                Some(routed) if e.region_id == routed.id => {
                    cache.on_key_not_in_region(routed, &e.start_key, &e.end_key);
                }
                _ => {
                    cache.invalidate(target.region_id);
                    cache.invalidate(e.region_id);
                }
            }
            return Next::Rerouted;
        }
        if let Some(e) = err.region_not_found {
            let mut cache = self.cache();
            cache.invalidate(target.region_id);
            cache.invalidate(e.region_id);
            return Next::Rerouted;
        }
        if err.server_is_busy.is_some() {
            return Next::Later;
        }
        // A region error without details (an older server): the route is
        // suspect, so drop it and look again, after a pause.
        if target.region_id != 0 {
            self.cache().invalidate(target.region_id);
        }
        if target.fallback {
            self.set_preferred(None);
        }
        Next::Later
    }
}

/// When to send the next try.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Next {
    /// At once (unless the previous retry also went at once).
    Now,
    /// After a backoff.
    Later,
    /// The cache learned the key's region changed: retry at once (a batch
    /// group returns `Routed::Regroup` instead).
    Rerouted,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_statuses_are_sorted_by_code() {
        for kind in [Kind::Read, Kind::StaleRead, Kind::Write] {
            assert_eq!(classify(&Status::invalid_argument("x"), kind), Verdict::Invalid);
            assert_eq!(classify(&Status::internal("x"), kind), Verdict::Fatal);
            assert_eq!(classify(&Status::unimplemented("x"), kind), Verdict::Fatal);
            assert_eq!(classify(&Status::unavailable("x"), kind), Verdict::Retry, "UNAVAILABLE promises nothing was done");
            assert_eq!(classify(&Status::failed_precondition("x"), kind), Verdict::Retry);
        }
        for status in
            [Status::unknown("x"), Status::deadline_exceeded("x"), Status::cancelled("x"), Status::aborted("x"), Status::data_loss("x")]
        {
            assert_eq!(classify(&status, Kind::Write), Verdict::Ambiguous, "{status:?}");
            assert_eq!(classify(&status, Kind::Read), Verdict::Retry, "{status:?}");
        }
    }

    #[test]
    fn transport_failures_are_ambiguous_for_writes_unless_nothing_connected() {
        // A connection that broke after sending: tonic attaches the cause as the source.
        let broken = Status::from_error(Box::new(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset")));
        assert!(broken.source().is_some());
        assert_eq!(broken.code(), Code::Unknown);
        assert_eq!(classify(&broken, Kind::Write), Verdict::Ambiguous);
        assert_eq!(classify(&broken, Kind::Read), Verdict::Retry);
        // Even when tonic calls it UNAVAILABLE (a keep-alive timeout, say).
        let mut unavailable = Status::unavailable("keep-alive timed out");
        unavailable.set_source(std::sync::Arc::new(std::io::Error::other("timeout")));
        assert_eq!(classify(&unavailable, Kind::Write), Verdict::Ambiguous);
        // A failure to connect sent nothing.
        let refused = Status::from_error(Box::new(tonic::ConnectError(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        )))));
        assert_eq!(refused.code(), Code::Unavailable);
        assert_eq!(classify(&refused, Kind::Write), Verdict::Retry);
    }

    #[tokio::test]
    async fn a_try_without_an_answer_is_cut_off_as_deadline_exceeded() {
        let never = std::future::pending::<Result<(), Status>>();
        let started = Instant::now();
        let err = with_timeout(Duration::from_millis(10), never).await.expect_err("cut off");
        assert_eq!(err.code(), Code::DeadlineExceeded);
        assert!(started.elapsed() >= Duration::from_millis(10) + GRACE);
        assert_eq!(classify(&err, Kind::Write), Verdict::Ambiguous);
    }

    #[tokio::test]
    async fn pace_allows_one_immediate_retry_in_a_row() {
        let mut st = CallState::new(Duration::from_secs(5));
        let t = Instant::now();
        st.pace(true).await;
        assert!(t.elapsed() < Backoff::FIRST, "first immediate retry goes at once");
        let t = Instant::now();
        st.pace(true).await;
        assert!(t.elapsed() >= Backoff::FIRST, "a second one in a row backs off");
        let t = Instant::now();
        st.pace(true).await;
        assert!(t.elapsed() < Backoff::FIRST, "after a backoff, at once again");
    }

    #[tokio::test]
    async fn backoff_never_sleeps_past_the_deadline() {
        let mut b = Backoff { next: Duration::from_secs(30) };
        let t = Instant::now();
        b.wait(Instant::now() + Duration::from_millis(20)).await;
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
