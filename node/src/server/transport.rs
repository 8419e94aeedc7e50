//! The Raft transport: store-to-store message streams.
//!
//! Sending: the store loop hands each round's messages to [`run_transport`] as
//! one batch; it splits them by destination store and feeds one long-lived
//! client stream (`Raft.Send`) per store, opened lazily and reopened with backoff
//! when it breaks. Messages for an unreachable store are dropped and counted —
//! Raft retransmits what matters. Receiving: [`RaftService`] hands every batch to
//! the store loop, and serves `Raft.Snapshot` with [`super::snapshot::receive`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use shoal_proto::raft_client::RaftClient;
use shoal_proto::raft_server::Raft;
use shoal_proto::{RaftDone, RaftMessage, RaftMessageBatch};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::registry::StoreRegistry;
use super::snapshot;
use super::tls::PeerGuard;
use crate::metrics::Metrics;
use crate::raftstore::store_loop::StoreHandle;
use crate::snap::SnapManager;

/// Largest Raft batch on the wire.
pub const MAX_RAFT_BATCH_BYTES: usize = 256 << 20;
/// Target size of one frame on a stream; a single larger message gets a frame of its own.
const FRAME_BYTES: usize = 32 << 20;
/// Batches queued for one store before newer ones are dropped.
const QUEUE_PER_STORE: usize = 1024;

/// Receives Raft message batches from other stores.
pub struct RaftService {
    pub store: StoreHandle,
    pub store_id: u64,
    /// Turns true when the node shuts down: open streams end so that the gRPC
    /// server's graceful shutdown does not wait on them forever.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Where received snapshot files go.
    pub snap: Arc<SnapManager>,
    pub metrics: Arc<Metrics>,
    /// Who may open these streams (`--peer-allowed-cn`).
    pub guard: PeerGuard,
}

impl RaftService {
    /// Refuses a caller whose certificate is not a store's.
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let certs = request.peer_certs();
        self.guard.check(certs.as_deref().map(Vec::as_slice)).map_err(|why| {
            self.metrics.peer_denied.inc();
            Status::permission_denied(why)
        })
    }
}

#[tonic::async_trait]
impl Raft for RaftService {
    async fn send(&self, request: Request<Streaming<RaftMessageBatch>>) -> Result<Response<RaftDone>, Status> {
        self.authorize(&request)?;
        let mut stream = request.into_inner();
        let mut shutdown = self.shutdown.clone();
        loop {
            let batch = tokio::select! {
                next = stream.next() => match next {
                    Some(batch) => batch?,
                    None => break,
                },
                _ = shutdown.wait_for(|down| *down) => break,
            };
            let (mine, misrouted): (Vec<_>, Vec<_>) = batch.messages.into_iter().partition(|m| m.to_store_id == self.store_id);
            let received = &self.metrics.raft_messages_received;
            if !misrouted.is_empty() {
                received.with_label_values(&["misrouted"]).inc_by(misrouted.len() as u64);
                tracing::warn!(count = misrouted.len(), to = misrouted[0].to_store_id, "dropping raft messages meant for another store");
            }
            let count = mine.len() as u64;
            if let Err(e) = self.store.raft_messages(mine) {
                received.with_label_values(&["refused"]).inc_by(count);
                return Err(Status::unavailable(e.to_string()));
            }
            received.with_label_values(&["received"]).inc_by(count);
        }
        Ok(Response::new(RaftDone {}))
    }

    type SnapshotStream = snapshot::AckStream;

    async fn snapshot(&self, request: Request<Streaming<shoal_proto::SnapshotChunk>>) -> Result<Response<Self::SnapshotStream>, Status> {
        self.authorize(&request)?;
        let sink: Arc<dyn snapshot::SnapshotSink> = Arc::new(self.store.clone());
        let acks = snapshot::receive(request.into_inner(), self.snap.clone(), sink, self.store_id, self.shutdown.clone()).await?;
        Ok(Response::new(acks))
    }
}

/// Routes every round's messages to per-store connections until `outbox` closes.
pub async fn run_transport(mut outbox: mpsc::UnboundedReceiver<Vec<RaftMessage>>, registry: StoreRegistry, metrics: Arc<Metrics>) {
    let mut conns: HashMap<u64, mpsc::Sender<RaftMessageBatch>> = HashMap::new();
    while let Some(msgs) = outbox.recv().await {
        // Split by destination, and into frames well under the wire limit.
        let mut frames: Vec<(u64, Vec<RaftMessage>, usize)> = Vec::new();
        for m in msgs {
            let size = m.message.len();
            match frames.iter_mut().rev().find(|(to, _, _)| *to == m.to_store_id) {
                Some((_, batch, bytes)) if *bytes + size <= FRAME_BYTES => {
                    *bytes += size;
                    batch.push(m);
                }
                _ => frames.push((m.to_store_id, vec![m], size)),
            }
        }
        for (store_id, messages, _) in frames {
            let count = messages.len() as u64;
            let tx = conns.entry(store_id).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(QUEUE_PER_STORE);
                tokio::spawn(connection(store_id, registry.clone(), rx, metrics.clone()));
                tx
            });
            let outcome = match tx.try_send(RaftMessageBatch { messages }) {
                Ok(()) => "sent",
                Err(_) => "dropped",
            };
            metrics.raft_messages.with_label_values(&[outcome]).inc_by(count);
        }
    }
}

/// Keeps one stream open to `store_id` and feeds it batches from `rx`.
async fn connection(store_id: u64, registry: StoreRegistry, mut rx: mpsc::Receiver<RaftMessageBatch>, metrics: Arc<Metrics>) {
    let mut backoff = Duration::from_millis(50);
    while let Some(first) = rx.recv().await {
        let Some(addr) = registry.address(store_id) else {
            tracing::warn!(store_id, "no address for store; dropping raft messages");
            continue;
        };
        let channel = match registry.endpoint(&addr) {
            // Keepalive pings find a vanished peer in seconds, not at TCP's pace.
            Ok(ep) => {
                ep.connect_timeout(Duration::from_secs(1))
                    .tcp_nodelay(true)
                    .tcp_keepalive(Some(Duration::from_secs(10)))
                    .http2_keep_alive_interval(Duration::from_secs(3))
                    .keep_alive_timeout(Duration::from_secs(3))
                    .keep_alive_while_idle(true)
                    .connect()
                    .await
            }
            Err(e) => {
                tracing::error!(store_id, %addr, error = %e, "bad store address");
                continue;
            }
        };
        let channel = match channel {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(store_id, %addr, error = %e, "cannot reach store");
                metrics.raft_messages.with_label_values(&["dropped"]).inc_by(first.messages.len() as u64);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                // Messages queued while down are stale by now; Raft resends what it needs.
                while let Ok(stale) = rx.try_recv() {
                    metrics.raft_messages.with_label_values(&["dropped"]).inc_by(stale.messages.len() as u64);
                }
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        tracing::info!(store_id, %addr, "raft stream connected");
        let (tx, stream_rx) = mpsc::channel(QUEUE_PER_STORE);
        if tx.send(first).await.is_err() {
            continue;
        }
        let mut client = RaftClient::new(channel).max_encoding_message_size(MAX_RAFT_BATCH_BYTES);
        let call = client.send(ReceiverStream::new(stream_rx));
        tokio::pin!(call);
        loop {
            tokio::select! {
                res = &mut call => {
                    tracing::info!(store_id, result = ?res.err(), "raft stream closed");
                    break;
                }
                next = rx.recv() => match next {
                    // Never wait on a stalled stream: drop, and let Raft resend.
                    Some(batch) => match tx.try_send(batch) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(b)) => {
                            metrics.raft_messages.with_label_values(&["dropped"]).inc_by(b.messages.len() as u64);
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => break,
                    },
                    None => return,
                },
            }
        }
    }
}
