//! The HTTP status server: `/metrics` (Prometheus text), `/healthz` (the store
//! loop answers) and `/readyz` ([`readiness`]: the store is serving and caught
//! up — every region on it knows its leader, has its data, and applies no more
//! than [`READY_APPLY_LAG`] entries behind what it knows committed).
//!
//! With `--status-tls` it speaks HTTPS with the gRPC port's certificate
//! (reloaded with it) and asks no client certificate: probes and scrapers
//! present none.
//!
//! With `--enable-failpoints` (fault tests only) it also serves
//! `PUT /failpoints/slow-sync?ms=N`: every synced engine write (the Raft log's
//! fsync among them) first waits N ms, a slow disk; `ms=0` heals it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::tls::{HANDSHAKE_TIMEOUT, Tls};
use crate::metrics::Metrics;
use crate::raftstore::store::PeerStatus;
use crate::raftstore::store_loop::StoreHandle;
use crate::storage::Engine;

#[derive(Clone)]
pub struct StatusHttp {
    pub store: StoreHandle,
    pub metrics: Arc<Metrics>,
    /// The engine whose failpoints `/failpoints/…` sets; `None` unless the
    /// node runs with `--enable-failpoints`.
    pub failpoints: Option<Arc<Engine>>,
}

fn reply(code: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = code;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

/// A region peer further behind than this (entries committed, not applied)
/// makes the store not ready (the same bound as the `ShoalCommitApplyLag` alert).
pub const READY_APPLY_LAG: u64 = 1_000;

/// Whether a store with these peers is ready to serve: `Ok` with a summary, or
/// `Err` with the first reason it is not (a region without a leader, one
/// waiting for its snapshot, one applying far behind).
pub fn readiness(peers: &[PeerStatus]) -> Result<String, String> {
    for p in peers {
        let id = p.region.id;
        if p.leader.is_none() {
            return Err(format!("region {id} has no leader"));
        }
        if p.applied_index == 0 {
            return Err(format!("region {id} waits for its snapshot"));
        }
        let behind = p.commit_index.saturating_sub(p.applied_index);
        if behind > READY_APPLY_LAG {
            return Err(format!("region {id} applies {behind} entries behind its commit index"));
        }
    }
    Ok(format!("ok: {} regions, all with a leader and caught up", peers.len()))
}

impl StatusHttp {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let status = || tokio::time::timeout(Duration::from_secs(2), self.store.status());
        match req.uri().path() {
            "/metrics" => reply(StatusCode::OK, "text/plain; version=0.0.4", self.metrics.encode()),
            "/healthz" => match status().await {
                Ok(Ok(_)) => reply(StatusCode::OK, "text/plain", "ok\n".into()),
                _ => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "store loop is not answering\n".into()),
            },
            "/readyz" => match status().await {
                Ok(Ok(peers)) => match readiness(&peers) {
                    Ok(ok) => reply(StatusCode::OK, "text/plain", format!("{ok}\n")),
                    Err(why) => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", format!("{why}\n")),
                },
                _ => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "store loop is not answering\n".into()),
            },
            "/failpoints/slow-sync" => self.slow_sync(&req),
            _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found: try /metrics, /healthz, /readyz\n".into()),
        }
    }

    /// `PUT /failpoints/slow-sync?ms=N`.
    fn slow_sync(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let Some(engine) = &self.failpoints else {
            return reply(StatusCode::NOT_FOUND, "text/plain", "failpoints are off: start the node with --enable-failpoints\n".into());
        };
        if req.method() != hyper::Method::PUT {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "use PUT /failpoints/slow-sync?ms=N\n".into());
        }
        let ms = req.uri().query().and_then(|q| q.strip_prefix("ms=")).and_then(|v| v.parse::<u64>().ok());
        match ms {
            Some(ms) if ms <= 60_000 => {
                engine.set_sync_delay(Duration::from_millis(ms));
                tracing::warn!(ms, "failpoint slow-sync set");
                reply(StatusCode::OK, "text/plain", format!("slow-sync: {ms} ms\n"))
            }
            _ => reply(StatusCode::BAD_REQUEST, "text/plain", "expected ?ms=N with N at most 60000\n".into()),
        }
    }

    /// Serves until the task is dropped; over TLS (no client certificate
    /// asked: probes and scrapers have none) with `tls`.
    pub async fn serve(self, listener: TcpListener, tls: Option<Arc<Tls>>) {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "status server accept failed");
                    continue;
                }
            };
            let this = self.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let metrics = this.metrics.clone();
                let svc = hyper::service::service_fn(move |req| {
                    let this = this.clone();
                    async move { Ok::<_, Infallible>(this.handle(req).await) }
                });
                let http = hyper::server::conn::http1::Builder::new();
                let served = match tls {
                    None => http.serve_connection(TokioIo::new(stream), svc).await,
                    Some(tls) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(tls.status_config());
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => http.serve_connection(TokioIo::new(stream), svc).await,
                            _ => {
                                metrics.tls_handshake_failures.inc();
                                return;
                            }
                        }
                    }
                };
                if let Err(e) = served {
                    tracing::debug!(error = %e, "status connection ended with an error");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u64, leader: bool, commit: u64, applied: u64) -> PeerStatus {
        PeerStatus {
            region: shoal_proto::Region { id, ..Default::default() },
            peer_id: id * 10,
            leader: leader.then_some(shoal_proto::Peer { id: 1, store_id: 1, is_learner: false }),
            term: 6,
            commit_index: commit,
            applied_index: applied,
            is_leader: false,
            hibernated: false,
        }
    }

    #[test]
    fn a_store_is_ready_when_every_region_has_a_leader_its_data_and_applies_close_behind() {
        assert!(readiness(&[]).is_ok(), "a store holding nothing (pending) serves what it can: nothing to wait for");
        assert!(readiness(&[peer(1, true, 20, 20), peer(2, true, 1_005, 5)]).is_ok());
        assert_eq!(readiness(&[peer(1, true, 20, 20), peer(2, false, 20, 20)]), Err("region 2 has no leader".into()));
        assert_eq!(readiness(&[peer(3, true, 0, 0)]), Err("region 3 waits for its snapshot".into()));
        assert_eq!(readiness(&[peer(4, true, 5_000, 3_000)]), Err("region 4 applies 2000 entries behind its commit index".into()));
    }
}
