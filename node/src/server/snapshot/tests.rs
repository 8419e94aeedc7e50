//! The snapshot stream over real gRPC on loopback: a receiving store served by
//! a test `Raft` service that runs [`receive`] (and can cut a stream short),
//! a sending store using [`send_snapshot`] / [`spawn_sender`].

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protobuf::Message as _;
use raft::prelude::{Message, MessageType};
use shoal_proto::raft_client::RaftClient;
use shoal_proto::raft_server::{Raft, RaftServer};
use shoal_proto::{RaftDone, RaftMessage, RaftMessageBatch, SnapshotChunk, SnapshotData, StoreInfo};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Request, Response, Status, Streaming};

use super::rate::RateLimiter;
use super::*;
use crate::server::registry::StoreRegistry;
use crate::snap::SnapManager;
use crate::snap::tests::{Node, data_of, dump, node, node_with, put_region, region};

const SENDER: u64 = 1;
const RECEIVER: u64 = 2;

#[derive(Default)]
struct Delivered(Mutex<Vec<RaftMessage>>);

impl SnapshotSink for Delivered {
    fn deliver(&self, header: RaftMessage) -> crate::Result<()> {
        self.0.lock().unwrap().push(header);
        Ok(())
    }
}

struct TestRaft {
    node: Arc<SnapManager>,
    delivered: Arc<Delivered>,
    /// When non-zero, the next stream is cut after this many chunks (header included).
    cut_after: Arc<AtomicUsize>,
    shutdown: watch::Receiver<bool>,
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<SnapshotChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Raft for TestRaft {
    async fn send(&self, _: Request<Streaming<RaftMessageBatch>>) -> Result<Response<RaftDone>, Status> {
        Err(Status::unimplemented("test"))
    }

    type SnapshotStream = AckStream;

    async fn snapshot(&self, request: Request<Streaming<SnapshotChunk>>) -> Result<Response<AckStream>, Status> {
        let stream = request.into_inner();
        let stream: ChunkStream = match self.cut_after.swap(0, Ordering::SeqCst) {
            0 => Box::pin(stream),
            n => Box::pin(stream.take(n)),
        };
        let sink: Arc<dyn SnapshotSink> = self.delivered.clone();
        Ok(Response::new(receive(stream, self.node.clone(), sink, RECEIVER, self.shutdown.clone()).await?))
    }
}

struct Receiver {
    node: Node,
    delivered: Arc<Delivered>,
    cut_after: Arc<AtomicUsize>,
    addr: String,
    _shutdown: watch::Sender<bool>,
}

async fn serve(node: Node) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (shutdown_tx, shutdown) = watch::channel(false);
    let delivered = Arc::new(Delivered::default());
    let cut_after = Arc::new(AtomicUsize::new(0));
    let svc = TestRaft { node: node.snap.clone(), delivered: delivered.clone(), cut_after: cut_after.clone(), shutdown };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(RaftServer::new(svc).max_decoding_message_size(16 << 20))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    Receiver { node, delivered, cut_after, addr, _shutdown: shutdown_tx }
}

fn registry(addr: &str) -> StoreRegistry {
    StoreRegistry::new(vec![StoreInfo { id: RECEIVER, name: "r".into(), address: addr.to_string(), ..Default::default() }])
}

/// A deterministic byte stream that does not compress.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Region 2 over everything, with `noisy` bytes of incompressible values in
/// `default` and `plain` bytes of repetitive ones in `users`.
fn source(noisy: usize, plain: usize) -> (Node, SnapshotData, RaftMessage) {
    let src = node_with("users:compression=none");
    put_region(&src.engine, &region(2, "", ""), 7, 6, vec![]);
    const VALUE: usize = 16 << 10;
    for (cf, total, compressible) in [("default", noisy, false), ("users", plain, true)] {
        let mut wb = src.engine.batch();
        for i in 0..total / VALUE {
            let v = if compressible { format!("value {i} ").repeat(VALUE / 12).into_bytes() } else { noise(i as u64, VALUE) };
            wb.put(cf, format!("key{i:06}").as_bytes(), &v).unwrap();
        }
        src.engine.write(wb, false).unwrap();
    }
    let snapshot = src.snap.generate(2).unwrap();
    let data = data_of(&snapshot);
    let mut msg = Message::default();
    msg.set_msg_type(MessageType::MsgSnapshot);
    msg.from = 11;
    msg.to = 12;
    msg.term = 6;
    msg.set_snapshot(snapshot);
    let header = RaftMessage {
        region_id: 2,
        from_store_id: SENDER,
        to_store_id: RECEIVER,
        message: msg.write_to_bytes().unwrap(),
        hibernate: false,
        leaving: false,
    };
    (src, data, header)
}

fn total_size(data: &SnapshotData) -> u64 {
    data.files.iter().map(|f| f.size).sum()
}

fn assert_same_region_data(a: &Node, b: &Node) {
    for cf in ["default", "users"] {
        assert!(dump(&a.engine, cf) == dump(&b.engine, cf), "column family {cf} differs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_snapshot_streams_in_chunks_and_applies() {
    let (src, data, header) = source(16 << 20, 8 << 20);
    let total = total_size(&data);
    assert!(total > 20 << 20, "snapshot of {total} bytes");
    let rcv = serve(node_with("users:compression=none")).await;

    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let report: SnapReport = Arc::new(move |region, peer, ok| {
        let _ = done_tx.send((region, peer, ok));
    });
    let cfg = SnapSendConfig { chunk_size: 1 << 20, max_bytes_per_sec: 0 };
    let sender = spawn_sender(src.snap.clone(), registry(&rcv.addr), src.metrics.clone(), cfg, report);
    sender.send(header.clone()).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(120), done_rx.recv()).await.expect("no report in time");
    assert_eq!(outcome, Some((2, 12, true)));

    assert_eq!(rcv.delivered.0.lock().unwrap().as_slice(), &[header], "the MsgSnapshot reaches the store once, after the files");
    assert!(rcv.node.snap.is_received(&data));
    let wire = src.metrics.snapshot_bytes.with_label_values(&["sent"]).get();
    let received = rcv.node.metrics.snapshot_bytes.with_label_values(&["received"]).get();
    println!("snapshot: {total} bytes in {} files, {wire} bytes on the wire", data.files.len());
    assert_eq!(wire, received);
    // Nothing holds the send back, so nothing is compressed: that would only
    // cost both ends CPU, however well the repetitive file compresses.
    assert_eq!(wire, total);
    assert_eq!(src.metrics.snapshots.with_label_values(&["sent"]).get(), 1);
    assert_eq!(rcv.node.metrics.snapshots.with_label_values(&["received"]).get(), 1);

    rcv.node.snap.apply(&data).unwrap();
    assert_same_region_data(&src, &rcv.node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_held_back_by_the_rate_limit_goes_out_compressed() {
    let (src, data, header) = source(0, 4 << 20);
    let total = total_size(&data);
    let rcv = serve(node_with("users:compression=none")).await;
    // An empty bucket that takes 4 s to refill a chunk: every chunk would
    // wait for the wire, so each is compressed, and waits only for its
    // compressed bytes.
    const RATE: u64 = 256 << 10;
    let cfg = SnapSendConfig { chunk_size: 1 << 20, max_bytes_per_sec: RATE };
    let limiter = Arc::new(RateLimiter::new(RATE, 1 << 20));
    limiter.reserve(1 << 20, std::time::Instant::now());
    send_snapshot(&src.snap, &registry(&rcv.addr), &src.metrics, cfg, &limiter, header).await.unwrap();
    let wire = src.metrics.snapshot_bytes.with_label_values(&["sent"]).get();
    println!("snapshot: {total} bytes, {wire} bytes on the wire");
    assert!(wire < total / 4, "compressed: {wire} of {total} bytes on the wire");
    rcv.node.snap.apply(&data).unwrap();
    assert_same_region_data(&src, &rcv.node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_stream_resumes_from_the_acked_offset() {
    let (src, data, header) = source(6 << 20, 0);
    let total = total_size(&data);
    assert_eq!(data.files.len(), 1);
    let rcv = serve(node_with("users:compression=none")).await;
    // The header and two 1 MiB chunks get through, then the stream breaks.
    rcv.cut_after.store(3, Ordering::SeqCst);

    let cfg = SnapSendConfig { chunk_size: 1 << 20, max_bytes_per_sec: 0 };
    let limiter = Arc::new(RateLimiter::new(0, 0));
    let outcome = send_snapshot(&src.snap, &registry(&rcv.addr), &src.metrics, cfg, &limiter, header).await.unwrap();
    println!("attempts: {:?}", outcome.attempts);
    assert_eq!(outcome.attempts.len(), 2);
    assert_eq!(outcome.attempts[0].resume, Some((0, 0)));
    assert!(outcome.attempts[0].error.is_some());
    assert_eq!(outcome.attempts[1].resume, Some((0, 2 << 20)), "resumes after the two chunks written");
    assert_eq!(outcome.attempts[1].bytes, total - (2 << 20));
    assert!(outcome.attempts[1].bytes < total);
    assert!(rcv.node.snap.is_received(&data));
    assert_eq!(rcv.delivered.0.lock().unwrap().len(), 1);
    rcv.node.snap.apply(&data).unwrap();
    assert_same_region_data(&src, &rcv.node);
    assert_eq!(rcv.node.metrics.snapshots.with_label_values(&["failed"]).get(), 1, "the broken stream");
}

async fn client(addr: &str) -> RaftClient<tonic::transport::Channel> {
    RaftClient::connect(format!("http://{addr}")).await.unwrap().max_encoding_message_size(16 << 20)
}

/// Opens a snapshot stream with `first`; returns the error of the call or of
/// its first ack.
async fn open_with(addr: &str, first: SnapshotChunk) -> Status {
    let (tx, rx) = mpsc::channel(4);
    tx.send(first).await.unwrap();
    match client(addr).await.snapshot(ReceiverStream::new(rx)).await {
        Err(s) => s,
        Ok(resp) => match resp.into_inner().message().await {
            Err(s) => s,
            Ok(ack) => panic!("accepted: {ack:?}"),
        },
    }
}

#[tokio::test]
async fn garbage_headers_are_refused_and_nothing_is_received() {
    let (_src, data, header) = source(64 << 10, 0);
    let rcv = serve(node()).await;
    let chunk = |h: Option<RaftMessage>| SnapshotChunk { header: h, ..Default::default() };

    let no_header = open_with(&rcv.addr, chunk(None)).await;
    let garbage = open_with(&rcv.addr, chunk(Some(RaftMessage { message: vec![0xff; 40], ..header.clone() }))).await;
    let elsewhere = open_with(&rcv.addr, chunk(Some(RaftMessage { to_store_id: 9, ..header.clone() }))).await;
    let mut heartbeat = Message::default();
    heartbeat.set_msg_type(MessageType::MsgHeartbeat);
    let not_snapshot =
        open_with(&rcv.addr, chunk(Some(RaftMessage { message: heartbeat.write_to_bytes().unwrap(), ..header.clone() }))).await;
    let mut lying = Message::parse_from_bytes(&header.message).unwrap();
    lying.mut_snapshot().data = vec![0x0a, 0xff, 0xff].into();
    let bad_data = open_with(&rcv.addr, chunk(Some(RaftMessage { message: lying.write_to_bytes().unwrap(), ..header.clone() }))).await;
    for (what, s) in
        [("no header", no_header), ("garbage", garbage), ("elsewhere", elsewhere), ("heartbeat", not_snapshot), ("bad data", bad_data)]
    {
        println!("{what}: {:?} {}", s.code(), s.message());
        assert_eq!(s.code(), Code::InvalidArgument, "{what}: {s:?}");
    }
    assert!(rcv.delivered.0.lock().unwrap().is_empty());
    assert!(!rcv.node.snap.is_received(&data));
    assert_eq!(std::fs::read_dir(rcv.node.snap.dir()).unwrap().count(), 0, "nothing written");
}

#[tokio::test]
async fn a_chunk_with_a_bad_checksum_fails_the_stream_and_nothing_is_received() {
    let (src, data, header) = source(256 << 10, 0);
    let rcv = serve(node()).await;
    let hold = src.snap.hold(&data.key.unwrap()).unwrap();
    let bytes = std::fs::read(hold.file(0).unwrap()).unwrap();

    let (tx, rx) = mpsc::channel(4);
    tx.send(SnapshotChunk { header: Some(header), ..Default::default() }).await.unwrap();
    let mut acks = client(&rcv.addr).await.snapshot(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let first = acks.message().await.unwrap().unwrap();
    assert_eq!((first.resume_file, first.resume_offset, first.done), (0, 0, false));
    let mut bad = chunk::encode(0, 0, &bytes[..4096], true).unwrap();
    bad.checksum ^= 0x8000_0000;
    tx.send(bad).await.unwrap();
    let err = acks.message().await.unwrap_err();
    println!("bad checksum: {:?} {}", err.code(), err.message());
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("checksum"), "{err:?}");
    assert!(rcv.delivered.0.lock().unwrap().is_empty());
    assert!(!rcv.node.snap.is_received(&data));
}
