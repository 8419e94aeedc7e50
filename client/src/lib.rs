//! `shoal-client`: a client for a Shoal cluster.
//!
//! [`Client`] holds one lazily connected gRPC channel per endpoint and the
//! endpoint it believes leads. Every call retries until its deadline:
//! - a `NotLeader` answer with a leader address sends the next try there;
//! - `NotLeader` without a hint, `Unavailable`, or a broken connection tries the
//!   next endpoint after a backoff (20 ms doubling to 500 ms, with jitter);
//! - `InvalidArgument` and internal errors are returned at once.
//!
//! Writes are retried only when the answer proves nothing was applied (a region
//! error, `UNAVAILABLE`, a refused connection). When a write's fate is unknown —
//! it timed out, or the connection broke after it was sent — the call returns
//! [`ClientError::OutcomeUnknown`] rather than retrying, since a blind retry could
//! overwrite a later write of another client. Reads are always retried.
//! `BatchWrite` is atomic: all of its mutations are applied, or none.
//! Reads are linearizable unless [`ReadConsistency::Stale`] is asked for.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use shoal_proto::kv_client::KvClient;
use shoal_proto::status_client::StatusClient;
use shoal_proto::{BatchWriteRequest, DeleteRequest, GetRequest, PutRequest, RegionError, ScanRequest, StatusRequest};
pub use shoal_proto::{Mutation, ReadConsistency, StatusResponse, mutation};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request is wrong (unknown column family, empty or oversized key...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
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
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Total time one call may take, retries included.
    pub deadline: Duration,
    /// Time one attempt may take.
    pub attempt_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        // An attempt outlasts the server's own request timeout (5 s), so that the
        // server, which knows whether a write was proposed, answers first.
        ClientOptions {
            deadline: Duration::from_secs(20),
            attempt_timeout: Duration::from_secs(8),
            connect_timeout: Duration::from_secs(1),
        }
    }
}

/// One key and its value.
pub type Pair = (Vec<u8>, Vec<u8>);

/// Whether a request may be sent again when its first answer was lost.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
}

/// What one attempt tells the retry loop.
enum Attempt<T> {
    Done(T),
    Region(RegionError),
}

pub struct Client {
    endpoints: Vec<String>,
    opts: ClientOptions,
    channels: Mutex<HashMap<String, Channel>>,
    /// The endpoint to try first: the last one that answered, or a leader hint.
    preferred: Mutex<Option<String>>,
}

impl Client {
    /// A client for the cluster reachable at `endpoints` (`HOST:PORT`). Connects
    /// lazily, on first use (which must be inside a Tokio runtime).
    pub fn new(endpoints: &[String], opts: ClientOptions) -> Result<Client> {
        let endpoints: Vec<String> =
            endpoints.iter().map(|e| e.trim().trim_start_matches("http://").to_string()).filter(|e| !e.is_empty()).collect();
        if endpoints.is_empty() {
            return Err(ClientError::BadEndpoint(String::new(), "no endpoints given".into()));
        }
        let client = Client { endpoints, opts, channels: Mutex::new(HashMap::new()), preferred: Mutex::new(None) };
        for e in &client.endpoints {
            Endpoint::from_shared(format!("http://{e}")).map_err(|err| ClientError::BadEndpoint(e.clone(), err.to_string()))?;
        }
        Ok(client)
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    fn channel(&self, addr: &str) -> Result<Channel> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let ep = Endpoint::from_shared(format!("http://{addr}")).map_err(|e| ClientError::BadEndpoint(addr.into(), e.to_string()))?;
        let channel = ep.connect_timeout(self.opts.connect_timeout).tcp_nodelay(true).connect_lazy();
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    fn kv(&self, addr: &str) -> Result<KvClient<Channel>> {
        Ok(KvClient::new(self.channel(addr)?).max_decoding_message_size(usize::MAX).max_encoding_message_size(usize::MAX))
    }

    fn set_preferred(&self, addr: Option<String>) {
        *self.preferred.lock().unwrap_or_else(|p| p.into_inner()) = addr;
    }

    /// Runs `op` against some endpoint until it succeeds, fails for good, or the
    /// deadline passes.
    async fn retry<T, F, Fut>(&self, kind: Kind, mut op: F) -> Result<T>
    where
        F: FnMut(KvClient<Channel>, Duration) -> Fut,
        Fut: Future<Output = Result<Attempt<T>, Status>>,
    {
        let started = Instant::now();
        let mut attempts = 0u32;
        let mut backoff = Duration::from_millis(20);
        let mut next = 0usize;
        let mut last = String::from("no attempt made");
        let mut followed_hint = false;
        loop {
            let elapsed = started.elapsed();
            if elapsed >= self.opts.deadline {
                return Err(ClientError::Unavailable { attempts, elapsed, last });
            }
            let preferred = self.preferred.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let addr = preferred.unwrap_or_else(|| {
                next += 1;
                self.endpoints[next % self.endpoints.len()].clone()
            });
            attempts += 1;
            let timeout = self.opts.attempt_timeout.min(self.opts.deadline - elapsed);
            let mut wait = true;
            let kv = match self.kv(&addr) {
                Ok(kv) => kv,
                Err(e) => {
                    // A leader hint that is not a usable address: forget it, go on.
                    last = e.to_string();
                    self.set_preferred(None);
                    continue;
                }
            };
            match op(kv, timeout).await {
                Ok(Attempt::Done(v)) => {
                    self.set_preferred(Some(addr));
                    return Ok(v);
                }
                Ok(Attempt::Region(err)) => {
                    last = format!("{addr}: {}", err.message);
                    let hint = err.not_leader.map(|n| n.leader_addr).filter(|a| !a.is_empty() && *a != addr);
                    // A fresh leader hint is worth trying at once, but only once in a
                    // row: two stores naming each other must not spin.
                    wait = hint.is_none() || followed_hint;
                    followed_hint = hint.is_some() && !followed_hint;
                    self.set_preferred(hint);
                }
                Err(status) => {
                    last = format!("{addr}: {:?}: {}", status.code(), status.message());
                    match status.code() {
                        Code::InvalidArgument => return Err(ClientError::InvalidArgument(status.message().to_string())),
                        Code::Internal
                        | Code::Unimplemented
                        | Code::OutOfRange
                        | Code::ResourceExhausted
                        | Code::PermissionDenied
                        | Code::Unauthenticated => {
                            return Err(ClientError::Server(last));
                        }
                        Code::Unknown | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted | Code::DataLoss
                            if kind == Kind::Write =>
                        {
                            self.set_preferred(None);
                            return Err(ClientError::OutcomeUnknown(last));
                        }
                        _ => self.set_preferred(None), // nothing was done, or a read: try elsewhere
                    }
                }
            }
            if wait {
                let jitter = rand::rng().random_range(0..=backoff.as_millis() as u64 / 2);
                tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
    }

    /// Reads `key` from `cf`; `None` when it does not exist.
    pub async fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_with(cf, key, ReadConsistency::Linearizable).await
    }

    pub async fn get_with(&self, cf: &str, key: &[u8], consistency: ReadConsistency) -> Result<Option<Vec<u8>>> {
        let req = GetRequest { cf: cf.to_string(), key: key.to_vec(), consistency: consistency as i32 };
        self.retry(Kind::Read, |mut kv, timeout| {
            let mut r = tonic::Request::new(req.clone());
            r.set_timeout(timeout);
            async move {
                let resp = kv.get(r).await?.into_inner();
                Ok(match resp.header.and_then(|h| h.region_error) {
                    Some(e) => Attempt::Region(e),
                    None => Attempt::Done(resp.found.then_some(resp.value)),
                })
            }
        })
        .await
    }

    pub async fn put(&self, cf: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let req = PutRequest { cf: cf.to_string(), key: key.to_vec(), value: value.to_vec() };
        self.retry(Kind::Write, |mut kv, timeout| {
            let mut r = tonic::Request::new(req.clone());
            r.set_timeout(timeout);
            async move {
                let resp = kv.put(r).await?.into_inner();
                Ok(resp.header.and_then(|h| h.region_error).map_or(Attempt::Done(()), Attempt::Region))
            }
        })
        .await
    }

    pub async fn delete(&self, cf: &str, key: &[u8]) -> Result<()> {
        let req = DeleteRequest { cf: cf.to_string(), key: key.to_vec() };
        self.retry(Kind::Write, |mut kv, timeout| {
            let mut r = tonic::Request::new(req.clone());
            r.set_timeout(timeout);
            async move {
                let resp = kv.delete(r).await?.into_inner();
                Ok(resp.header.and_then(|h| h.region_error).map_or(Attempt::Done(()), Attempt::Region))
            }
        })
        .await
    }

    /// Applies `mutations` atomically: all of them, or none.
    pub async fn batch_write(&self, mutations: Vec<Mutation>) -> Result<()> {
        let req = BatchWriteRequest { mutations };
        self.retry(Kind::Write, |mut kv, timeout| {
            let mut r = tonic::Request::new(req.clone());
            r.set_timeout(timeout);
            async move {
                let resp = kv.batch_write(r).await?.into_inner();
                Ok(resp.header.and_then(|h| h.region_error).map_or(Attempt::Done(()), Attempt::Region))
            }
        })
        .await
    }

    /// Reads up to `limit` pairs of `[start, end)` in key order (an empty `end` is
    /// unbounded; `limit` 0 means no limit), following the server's resume keys.
    pub async fn scan(&self, cf: &str, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Pair>> {
        let mut out = Vec::new();
        let mut from = start.to_vec();
        loop {
            let want = if limit == 0 { 0 } else { (limit - out.len()).min(u32::MAX as usize) as u32 };
            let req = ScanRequest {
                cf: cf.to_string(),
                start_key: from.clone(),
                end_key: end.to_vec(),
                limit: want,
                consistency: ReadConsistency::Linearizable as i32,
            };
            let resp = self
                .retry(Kind::Read, |mut kv, timeout| {
                    let mut r = tonic::Request::new(req.clone());
                    r.set_timeout(timeout);
                    async move {
                        let resp = kv.scan(r).await?.into_inner();
                        Ok(match resp.header.clone().and_then(|h| h.region_error) {
                            Some(e) => Attempt::Region(e),
                            None => Attempt::Done(resp),
                        })
                    }
                })
                .await?;
            out.extend(resp.pairs.into_iter().map(|p| (p.key, p.value)));
            if resp.resume_key.is_empty() || (limit != 0 && out.len() >= limit) || (!end.is_empty() && resp.resume_key.as_slice() >= end) {
                return Ok(out);
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
