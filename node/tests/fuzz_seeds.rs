//! The committed seeds of the fuzz targets (`fuzz/seeds/`, written by `cargo
//! run -p shoal-node --example fuzz_seeds`) still reach the deep end of each
//! target's path: a message or layout change that made them bounce off the
//! first decoder would leave the fuzzers mutating from nothing. Each seed is
//! taken apart as its target takes it, and the path must succeed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message as _;
use raft::Storage;
use shoal_node::config::{NodeArgs, NodeConfig};
use shoal_node::keys;
use shoal_node::metrics::Metrics;
use shoal_node::raftstore::peer_storage::PeerStorage;
use shoal_node::server::snapshot::receive::check_header;
use shoal_node::server::snapshot::{MAX_CHUNK_SIZE, chunk};
use shoal_node::server::validate::{self, Limits};
use shoal_node::snap::SnapManager;
use shoal_node::storage::Engine;
use shoal_node::storage::cf::{CF_RAFT_LOG, CF_RAFT_STATE, CF_REGION_META, CfConfig};
use shoal_proto::{BatchWriteRequest, PutRequest, RaftMessageBatch, SnapshotChunk, SnapshotData};

fn seed(target: &str, name: &str) -> Vec<u8> {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds").join(target).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Length-prefixed pieces, as the fuzz targets split their input.
fn pieces(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = data.split_first() {
        let n = usize::from(len).min(rest.len());
        out.push(rest[..n].to_vec());
        data = &rest[n..];
    }
    out
}

fn store() -> (tempfile::TempDir, Arc<Engine>, Arc<SnapManager>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let users: CfConfig = "users".parse().expect("a column family");
    let engine = Arc::new(Engine::open(&dir.path().join("db"), &[users]).expect("engine"));
    let snap = SnapManager::open(&dir.path().join("snap"), engine.clone(), Arc::new(Metrics::new().expect("metrics"))).expect("snap");
    (dir, engine, snap)
}

#[test]
fn every_seed_reaches_the_end_of_its_targets_path() {
    let (_dir, engine, snap) = store();
    let limits = Limits::from_config(&NodeConfig::default());

    let put = PutRequest::decode(&seed("kv_request", "put")[1..]).expect("put");
    validate::cf(&engine, &put.cf).expect("the put's column family");
    let batch = BatchWriteRequest::decode(&seed("kv_request", "batch")[1..]).expect("batch");
    assert_eq!(validate::mutations(&engine, &limits, batch.mutations).expect("the batch passes").len(), 2);

    let messages = RaftMessageBatch::decode(seed("raft_message", "snapshot-and-heartbeat").as_slice()).expect("batch").messages;
    let header = messages.into_iter().next().expect("a message");
    let to = header.to_store_id;
    check_header(&SnapshotChunk { header: Some(header), ..Default::default() }, to).expect("the snapshot header passes");

    let parts = pieces(&seed("snapshot_stream", "complete"));
    let data = SnapshotData::decode(parts[0].as_slice()).expect("snapshot data");
    let mut rx = snap.start_receive(7, &data).expect("the snapshot is accepted");
    let c = SnapshotChunk::decode(parts[1].as_slice()).expect("chunk");
    rx.write(c.file_index, c.offset, &chunk::decode(&c, MAX_CHUNK_SIZE).expect("the chunk decodes")).expect("written");
    rx.finish().expect("the stream completes");

    let parts = pieces(&seed("peer_storage", "one-entry"));
    let mut wb = engine.batch();
    wb.put(CF_REGION_META, &keys::region_state_key(9), &parts[0]).expect("put");
    wb.put(CF_RAFT_STATE, &keys::raft_state_key(9), &parts[1]).expect("put");
    wb.put(CF_REGION_META, &keys::apply_state_key(9), &parts[2]).expect("put");
    wb.put(CF_RAFT_LOG, &keys::raft_log_key(9, u64::from(parts[4][0])), &parts[3]).expect("put");
    engine.write(wb, false).expect("write");
    let storage = PeerStorage::load(engine.clone(), snap.clone(), 9).expect("the region loads");
    assert_eq!(storage.last_index().expect("last index"), 5);
    assert_eq!(storage.term(5).expect("term"), 6);

    assert!(keys::decode_raft_log_key(&seed("keys", "raft-log-key")).is_some());

    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), seed("config_file", "operator")).expect("write");
    let path = file.path().to_str().expect("UTF-8");
    let args = clap::Parser::try_parse_from(["shoal-node", "--name", "n1", "--config", path]).map(|a: NodeArgs| a).expect("args");
    let cfg = NodeConfig::from_args(args).expect("the operator's file is a valid configuration");
    assert_eq!(cfg.raft_log_gc_count_limit, 20_000);
}
