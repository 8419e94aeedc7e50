//! The sending end of `Raft.Snapshot`.
//!
//! [`spawn_sender`] runs a task that takes `MsgSnapshot`s and sends each in a
//! task of its own, at most [`MAX_CONCURRENT_SENDS`] at once, then calls the
//! report callback. [`send_snapshot`] is one send with its retries: each
//! attempt opens a fresh stream, sends the header, reads the resume point, and
//! streams the rest from a producer task while it waits for the final ack. A
//! broken attempt is retried (up to [`MAX_ATTEMPTS`], with backoff) and resumes
//! where the receiver's ack says; a refusal (`INVALID_ARGUMENT`,
//! `FAILED_PRECONDITION`) or a snapshot no longer held here is not.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use shoal_proto::raft_client::RaftClient;
use shoal_proto::{RaftMessage, SnapshotAck, SnapshotChunk, SnapshotData};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use super::rate::RateLimiter;
use super::{MAX_CHUNK_SIZE, SnapSendConfig, chunk};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::server::registry::StoreRegistry;
use crate::snap::{SnapManager, SnapshotHold};

/// Sends running at once per store.
pub const MAX_CONCURRENT_SENDS: usize = 4;
/// Attempts per snapshot (the first and the retries).
pub const MAX_ATTEMPTS: usize = 4;
/// How long one chunk may wait for the stream, and the final ack for the receiver.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// `report(region_id, to_peer_id, ok)`: how a send ended.
pub type SnapReport = Arc<dyn Fn(u64, u64, bool) + Send + Sync>;

/// What one successful send did, attempt by attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendOutcome {
    pub attempts: Vec<AttemptStats>,
}

/// One attempt of a send.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttemptStats {
    /// The resume point the receiver gave (file, offset), if it got that far.
    pub resume: Option<(u32, u64)>,
    /// File bytes (uncompressed) handed to the stream.
    pub bytes: u64,
    /// Why it failed; `None` for the one that succeeded.
    pub error: Option<String>,
}

/// Why an attempt failed, and whether another may succeed.
struct Failed {
    error: Error,
    retry: bool,
}

impl Failed {
    fn retry(error: Error) -> Failed {
        Failed { error, retry: true }
    }
    fn fatal(error: Error) -> Failed {
        Failed { error, retry: false }
    }
    fn status(s: tonic::Status) -> Failed {
        let retry = !matches!(s.code(), Code::InvalidArgument | Code::FailedPrecondition);
        Failed { error: Error::Unavailable(format!("receiver answered {:?}: {}", s.code(), s.message())), retry }
    }
}

/// Starts the sender; every `RaftMessage` given to it must carry a `MsgSnapshot`.
pub fn spawn_sender(
    mgr: Arc<SnapManager>,
    registry: StoreRegistry,
    metrics: Arc<Metrics>,
    cfg: SnapSendConfig,
    report: SnapReport,
) -> mpsc::UnboundedSender<RaftMessage> {
    let (tx, mut rx) = mpsc::unbounded_channel::<RaftMessage>();
    let burst = (cfg.max_bytes_per_sec / 10).max(cfg.chunk_size as u64);
    let limiter = Arc::new(RateLimiter::new(cfg.max_bytes_per_sec, burst));
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_SENDS));
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let (mgr, registry, metrics, limiter, permits, report) =
                (mgr.clone(), registry.clone(), metrics.clone(), limiter.clone(), permits.clone(), report.clone());
            tokio::spawn(async move {
                let Ok(_permit) = permits.acquire_owned().await else { return };
                let region_id = msg.region_id;
                let to_peer = Message::parse_from_bytes(&msg.message).map(|m| m.to).unwrap_or(0);
                let ok = send_snapshot(&mgr, &registry, &metrics, cfg, &limiter, msg).await.is_ok();
                report(region_id, to_peer, ok);
            });
        }
    });
    tx
}

/// Sends one snapshot (`msg` is its `MsgSnapshot`), retrying broken streams.
pub async fn send_snapshot(
    mgr: &Arc<SnapManager>,
    registry: &StoreRegistry,
    metrics: &Metrics,
    cfg: SnapSendConfig,
    limiter: &Arc<RateLimiter>,
    msg: RaftMessage,
) -> Result<SendOutcome> {
    let started = Instant::now();
    let in_flight = metrics.snapshots_in_flight.with_label_values(&["send"]);
    in_flight.inc();
    let result = send_with_retries(mgr, registry, metrics, cfg, limiter, &msg).await;
    in_flight.dec();
    match &result {
        Ok(outcome) => {
            metrics.snapshots.with_label_values(&["sent"]).inc();
            metrics.snapshot_duration.with_label_values(&["send"]).observe(started.elapsed().as_secs_f64());
            tracing::info!(region_id = msg.region_id, to_store = msg.to_store_id, attempts = outcome.attempts.len(), "snapshot sent");
        }
        Err(e) => {
            metrics.snapshots.with_label_values(&["failed"]).inc();
            tracing::warn!(region_id = msg.region_id, to_store = msg.to_store_id, error = %e, "snapshot send failed");
        }
    }
    result
}

async fn send_with_retries(
    mgr: &Arc<SnapManager>,
    registry: &StoreRegistry,
    metrics: &Metrics,
    cfg: SnapSendConfig,
    limiter: &Arc<RateLimiter>,
    msg: &RaftMessage,
) -> Result<SendOutcome> {
    let raft_msg = Message::parse_from_bytes(&msg.message).map_err(|e| Error::InvalidArgument(format!("bad raft message: {e}")))?;
    if raft_msg.get_msg_type() != MessageType::MsgSnapshot {
        return Err(Error::InvalidArgument(format!("not a snapshot message: {:?}", raft_msg.get_msg_type())));
    }
    let data = SnapshotData::decode(raft_msg.get_snapshot().data.as_ref())
        .map_err(|e| Error::InvalidArgument(format!("bad snapshot data: {e}")))?;
    let key = data.key.ok_or_else(|| Error::InvalidArgument("snapshot data has no key".into()))?;
    let hold = Arc::new(mgr.hold(&key).ok_or_else(|| Error::Unavailable(format!("snapshot {key:?} is no longer held here")))?);
    let chunk_size = cfg.chunk_size.clamp(1, MAX_CHUNK_SIZE);

    let mut outcome = SendOutcome::default();
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut stats = AttemptStats::default();
        let streamed = Arc::new(AtomicU64::new(0));
        let result = attempt(registry, metrics, msg, &data, &hold, chunk_size, limiter, &mut stats, &streamed).await;
        stats.bytes = streamed.load(Ordering::Relaxed);
        match result {
            Ok(()) => {
                outcome.attempts.push(stats);
                return Ok(outcome);
            }
            Err(Failed { error, retry }) => {
                stats.error = Some(error.to_string());
                outcome.attempts.push(stats);
                if !retry || outcome.attempts.len() >= MAX_ATTEMPTS {
                    return Err(error);
                }
                tracing::info!(region_id = msg.region_id, to_store = msg.to_store_id, error = %error, "snapshot stream broke; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// One stream: header, resume point, files from there, final ack.
#[allow(clippy::too_many_arguments)]
async fn attempt(
    registry: &StoreRegistry,
    metrics: &Metrics,
    msg: &RaftMessage,
    data: &SnapshotData,
    hold: &Arc<SnapshotHold>,
    chunk_size: usize,
    limiter: &Arc<RateLimiter>,
    stats: &mut AttemptStats,
    streamed: &Arc<AtomicU64>,
) -> std::result::Result<(), Failed> {
    let addr = registry
        .address(msg.to_store_id)
        .ok_or_else(|| Failed::retry(Error::Unavailable(format!("no address for store {}", msg.to_store_id))))?;
    let channel = registry
        .endpoint(&addr)
        .map_err(|e| Failed::fatal(Error::InvalidArgument(format!("bad address {addr}: {e}"))))?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(3))
        .keep_alive_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| Failed::retry(Error::Unavailable(format!("cannot reach store {} at {addr}: {e}", msg.to_store_id))))?;
    let mut client = RaftClient::new(channel).max_encoding_message_size(2 * MAX_CHUNK_SIZE).max_decoding_message_size(1 << 20);

    let (tx, rx) = mpsc::channel::<SnapshotChunk>(2);
    let header = SnapshotChunk { header: Some(msg.clone()), ..Default::default() };
    tx.send(header).await.map_err(|_| Failed::retry(Error::Internal("snapshot stream closed".into())))?;
    let mut acks = client.snapshot(ReceiverStream::new(rx)).await.map_err(Failed::status)?.into_inner();
    let first = match tokio::time::timeout(STALL_TIMEOUT, acks.message()).await {
        Ok(Ok(Some(ack))) => ack,
        Ok(Ok(None)) => return Err(Failed::retry(Error::Unavailable("receiver closed the stream before its first ack".into()))),
        Ok(Err(s)) => return Err(Failed::status(s)),
        Err(_) => return Err(Failed::retry(Error::Unavailable("no first ack from the receiver".into()))),
    };
    let start = resume_point(data, &first).map_err(Failed::fatal)?;
    stats.resume = Some(start);

    let sizes: Vec<u64> = data.files.iter().map(|f| f.size).collect();
    let bytes = metrics.snapshot_bytes.with_label_values(&["sent"]);
    let source = Source { hold: hold.clone(), sizes, chunk_size, limiter: limiter.clone(), wire_bytes: bytes, streamed: streamed.clone() };
    let mut producer = tokio::spawn(produce(tx, source, start));
    // Wait for the final ack; once everything is sent, for at most STALL_TIMEOUT.
    let done = loop {
        if producer.is_finished() {
            break tokio::time::timeout(STALL_TIMEOUT, acks.message()).await;
        }
        tokio::select! {
            ack = acks.message() => break Ok(ack),
            sent = &mut producer => match sent {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(Failed::retry(e)),
                Err(e) => return Err(Failed::retry(Error::Internal(format!("snapshot producer: {e}")))),
            },
        }
    };
    producer.abort();
    match done {
        Ok(Ok(Some(SnapshotAck { done: true, .. }))) => {}
        Ok(Ok(Some(_))) => return Err(Failed::fatal(Error::Internal("receiver sent an ack that is neither first nor done".into()))),
        Ok(Ok(None)) => return Err(Failed::retry(Error::Unavailable("receiver closed the stream without done".into()))),
        Ok(Err(s)) => return Err(Failed::status(s)),
        Err(_) => return Err(Failed::retry(Error::Unavailable("receiver did not confirm the snapshot".into()))),
    }
    Ok(())
}

/// Checks the receiver's resume point against the files.
fn resume_point(data: &SnapshotData, ack: &SnapshotAck) -> Result<(u32, u64)> {
    let (file, offset) = (ack.resume_file, ack.resume_offset);
    let ok = match data.files.get(file as usize) {
        Some(f) => offset < f.size,
        None => file as usize == data.files.len() && offset == 0,
    };
    if !ok || ack.done {
        return Err(Error::Internal(format!("receiver asked to resume at file {file} offset {offset}, which this snapshot does not have")));
    }
    Ok((file, offset))
}

/// What a producer streams from, and where it counts.
struct Source {
    hold: Arc<SnapshotHold>,
    sizes: Vec<u64>,
    chunk_size: usize,
    limiter: Arc<RateLimiter>,
    wire_bytes: prometheus::IntCounter,
    /// File bytes handed to the stream so far.
    streamed: Arc<AtomicU64>,
}

/// Streams the files from `start` in chunks.
async fn produce(tx: mpsc::Sender<SnapshotChunk>, src: Source, start: (u32, u64)) -> Result<()> {
    let Source { hold, sizes, chunk_size, limiter, wire_bytes, streamed } = src;
    for (n, &size) in sizes.iter().enumerate().skip(start.0 as usize) {
        let path = hold.file(n).ok_or_else(|| Error::Internal(format!("snapshot has no file {n}")))?.to_path_buf();
        let mut file = Some(std::fs::File::open(&path)?);
        let mut offset = if n == start.0 as usize { start.1 } else { 0 };
        while offset < size {
            let len = chunk_size.min((size - offset) as usize);
            let f = file.take().ok_or_else(|| Error::Internal("snapshot file handle lost".into()))?;
            // Compress only when the rate limit, not the CPU, holds the send back.
            let compress = !limiter.has_room(len as u64, Instant::now());
            let (f, chunk) = tokio::task::spawn_blocking(move || {
                let res = read_chunk(&f, n as u32, offset, len, compress);
                (f, res)
            })
            .await
            .map_err(|e| Error::Internal(format!("snapshot read task: {e}")))?;
            file = Some(f);
            let chunk = chunk?;
            let wire = chunk.data.len() as u64;
            limiter.acquire(wire).await;
            match tokio::time::timeout(STALL_TIMEOUT, tx.send(chunk)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::Unavailable("snapshot stream closed".into())),
                Err(_) => return Err(Error::Unavailable("snapshot stream stalled".into())),
            }
            wire_bytes.inc_by(wire);
            streamed.fetch_add(len as u64, Ordering::Relaxed);
            offset += len as u64;
        }
    }
    Ok(())
}

fn read_chunk(file: &std::fs::File, n: u32, offset: u64, len: usize, compress: bool) -> Result<SnapshotChunk> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, offset)?;
    chunk::encode(n, offset, &buf, compress)
}
