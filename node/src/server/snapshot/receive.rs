//! The receiving end of `Raft.Snapshot`.
//!
//! [`receive`] reads the header chunk and checks it before answering anything
//! (bad input is `INVALID_ARGUMENT` and nothing is written), opens a
//! [`Receiving`] (which finds the resume point) and returns the ack stream,
//! whose first ack is that resume point. A task then takes the chunks: each is
//! decompressed, its length and checksum checked, and written at exactly the
//! next offset (file I/O on the blocking pool). When every file is complete and
//! verified the header goes to the store loop through the [`SnapshotSink`] and
//! the last ack says `done`. A stream that breaks leaves its partial file for
//! the sender's retry; one idle for [`IDLE_TIMEOUT`] is dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use shoal_proto::{RaftMessage, SnapshotAck, SnapshotChunk, SnapshotData};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use super::{MAX_CHUNK_SIZE, chunk};
use crate::error::Error;
use crate::raftstore::store_loop::StoreHandle;
use crate::snap::{Receiving, SnapManager};

/// A sender silent this long is given up on.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The acks of one snapshot stream.
pub type AckStream = Pin<Box<dyn Stream<Item = Result<SnapshotAck, Status>> + Send>>;

/// Where a completely received snapshot's `MsgSnapshot` goes: the store loop.
pub trait SnapshotSink: Send + Sync + 'static {
    fn deliver(&self, header: RaftMessage) -> crate::Result<()>;
}

impl SnapshotSink for StoreHandle {
    fn deliver(&self, header: RaftMessage) -> crate::Result<()> {
        self.raft_messages(vec![header])
    }
}

fn status(e: Error) -> Status {
    match e {
        Error::InvalidArgument(m) => Status::invalid_argument(m),
        Error::Unavailable(m) => Status::unavailable(m),
        other => Status::internal(other.to_string()),
    }
}

/// Checks the header chunk: addressed to this store, a `MsgSnapshot` whose
/// `SnapshotData` decodes and agrees with the Raft metadata and the region.
pub fn check_header(first: &SnapshotChunk, store_id: u64) -> Result<(RaftMessage, SnapshotData), Status> {
    let header = first.header.clone().ok_or_else(|| Status::invalid_argument("the first snapshot chunk carries no header"))?;
    if !first.data.is_empty() {
        return Err(Status::invalid_argument("the header chunk carries file data"));
    }
    if header.to_store_id != store_id {
        return Err(Status::invalid_argument(format!("snapshot for store {}, this is store {store_id}", header.to_store_id)));
    }
    let msg = Message::parse_from_bytes(&header.message).map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))?;
    if msg.get_msg_type() != MessageType::MsgSnapshot {
        return Err(Status::invalid_argument(format!("header is a {:?}, not a MsgSnapshot", msg.get_msg_type())));
    }
    let snapshot = msg.get_snapshot();
    let data = SnapshotData::decode(snapshot.data.as_ref()).map_err(|e| Status::invalid_argument(format!("bad snapshot data: {e}")))?;
    let key = data.key.ok_or_else(|| Status::invalid_argument("snapshot data has no key"))?;
    let meta = snapshot.get_metadata();
    if key.region_id != header.region_id || key.index != meta.index || key.term != meta.term {
        return Err(Status::invalid_argument(format!(
            "snapshot key {key:?} does not match region {} at index {} term {}",
            header.region_id, meta.index, meta.term
        )));
    }
    Ok((header, data))
}

/// Serves one `Raft.Snapshot` stream for store `store_id`; ends early when
/// `shutdown` turns true.
pub async fn receive<S>(
    mut stream: S,
    mgr: Arc<SnapManager>,
    sink: Arc<dyn SnapshotSink>,
    store_id: u64,
    shutdown: watch::Receiver<bool>,
) -> Result<AckStream, Status>
where
    S: Stream<Item = Result<SnapshotChunk, Status>> + Send + Unpin + 'static,
{
    let started = Instant::now();
    let first = match tokio::time::timeout(IDLE_TIMEOUT, stream.next()).await {
        Ok(Some(first)) => first?,
        Ok(None) => return Err(Status::invalid_argument("empty snapshot stream")),
        Err(_) => return Err(Status::deadline_exceeded("no snapshot header")),
    };
    let (header, data) = check_header(&first, store_id)?;
    let from_store = header.from_store_id;
    let opening = mgr.clone();
    let rx = tokio::task::spawn_blocking(move || opening.start_receive(from_store, &data))
        .await
        .map_err(|e| Status::internal(format!("snapshot receive task: {e}")))?
        .map_err(status)?;
    let (resume_file, resume_offset) = rx.resume_point();
    tracing::info!(key = ?rx.key(), from_store, resume_file, resume_offset, bytes = rx.remaining(), "receiving snapshot");

    let (acks, out) = mpsc::channel(2);
    let first_ack = SnapshotAck { resume_file, resume_offset, done: false };
    acks.try_send(Ok(first_ack)).map_err(|_| Status::internal("ack channel"))?;
    tokio::spawn(async move {
        let metrics = mgr.metrics().clone();
        let key = rx.key();
        let in_flight = metrics.snapshots_in_flight.with_label_values(&["receive"]);
        in_flight.inc();
        let result = take_chunks(stream, rx, &mgr, shutdown).await;
        in_flight.dec();
        let result = match result {
            Ok(()) => sink.deliver(header).map_err(|e| Status::unavailable(format!("store loop: {e}"))),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                metrics.snapshots.with_label_values(&["received"]).inc();
                metrics.snapshot_duration.with_label_values(&["receive"]).observe(started.elapsed().as_secs_f64());
                tracing::info!(?key, from_store, "snapshot received");
                let _ = acks.send(Ok(SnapshotAck { done: true, ..Default::default() })).await;
            }
            Err(e) => {
                metrics.snapshots.with_label_values(&["failed"]).inc();
                tracing::warn!(?key, from_store, error = %e, "snapshot receive failed");
                let _ = acks.send(Err(e)).await;
            }
        }
    });
    Ok(Box::pin(ReceiverStream::new(out)))
}

/// Resolves when the node shuts down (never, if nobody can tell it to).
async fn shut_down(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|down| *down).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Writes chunks until every file is complete and verified.
async fn take_chunks<S>(mut stream: S, mut rx: Receiving, mgr: &SnapManager, mut shutdown: watch::Receiver<bool>) -> Result<(), Status>
where
    S: Stream<Item = Result<SnapshotChunk, Status>> + Send + Unpin + 'static,
{
    let bytes = mgr.metrics().snapshot_bytes.with_label_values(&["received"]);
    while rx.next_needed().is_some() {
        let next = tokio::select! {
            next = tokio::time::timeout(IDLE_TIMEOUT, stream.next()) => next,
            _ = shut_down(&mut shutdown) => return Err(Status::unavailable("store is shutting down")),
        };
        let chunk = match next {
            Ok(Some(Ok(chunk))) => chunk,
            Ok(Some(Err(e))) => return Err(Status::aborted(format!("snapshot stream broke: {e}"))),
            Ok(None) => return Err(Status::aborted("snapshot stream ended before every file arrived")),
            Err(_) => return Err(Status::deadline_exceeded("snapshot sender went silent")),
        };
        if chunk.header.is_some() {
            return Err(Status::invalid_argument("a second header in one snapshot stream"));
        }
        bytes.inc_by(chunk.data.len() as u64);
        let (back, res) = tokio::task::spawn_blocking(move || {
            let res = chunk::decode(&chunk, MAX_CHUNK_SIZE).and_then(|raw| rx.write(chunk.file_index, chunk.offset, &raw));
            (rx, res)
        })
        .await
        .map_err(|e| Status::internal(format!("snapshot write task: {e}")))?;
        rx = back;
        res.map_err(status)?;
    }
    tokio::task::spawn_blocking(move || rx.finish())
        .await
        .map_err(|e| Status::internal(format!("snapshot write task: {e}")))?
        .map_err(status)
}
