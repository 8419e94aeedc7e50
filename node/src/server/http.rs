//! The HTTP status server: `/metrics` (Prometheus text), `/healthz` (the store
//! loop answers) and `/readyz` (every region on this store knows its leader).
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

use crate::metrics::Metrics;
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
                Ok(Ok(peers)) => match peers.iter().find(|p| p.leader.is_none()) {
                    None => reply(StatusCode::OK, "text/plain", format!("ok: {} regions, all with a leader\n", peers.len())),
                    Some(p) => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", format!("region {} has no leader\n", p.region.id)),
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

    /// Serves until the task is dropped.
    pub async fn serve(self, listener: TcpListener) {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "status server accept failed");
                    continue;
                }
            };
            let this = self.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let this = this.clone();
                    async move { Ok::<_, Infallible>(this.handle(req).await) }
                });
                if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await {
                    tracing::debug!(error = %e, "status connection ended with an error");
                }
            });
        }
    }
}
