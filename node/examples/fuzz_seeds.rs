//! Writes the hand-made seeds of the fuzz targets (`fuzz/`) into
//! `fuzz/seeds/<target>/`: one well-formed input per path a target should
//! reach at once (a put, a batch, a snapshot header that passes the checks, a
//! snapshot stream that completes, a region's state that loads, a node
//! configuration file), from which libFuzzer mutates. Run it after changing
//! a message or a layout:
//!
//! ```sh
//! cargo run -p shoal-node --example fuzz_seeds
//! ```

use std::path::{Path, PathBuf};

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, Message, MessageType, Snapshot};
use shoal_node::server::snapshot::chunk;
use shoal_proto::{
    BatchWriteRequest, Mutation, Peer, PutRequest, RaftApplyState, RaftLocalState, RaftMessage, RaftMessageBatch, Region, RegionEpoch,
    RegionLocalState, ScanRequest, SnapshotData, SnapshotFile, SnapshotKey, mutation,
};

fn dir(target: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds").join(target);
    std::fs::create_dir_all(&d).expect("seed dir");
    d
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    std::fs::write(dir(target).join(name), bytes).expect("write seed");
}

/// Length-prefixed pieces, as `common::pieces` splits them (at most 255 bytes each).
fn pieces(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        assert!(p.len() <= 255, "a piece of {} bytes", p.len());
        out.push(p.len() as u8);
        out.extend_from_slice(p);
    }
    out
}

fn region(id: u64) -> Region {
    Region {
        id,
        start_key: Vec::new(),
        end_key: Vec::new(),
        epoch: Some(RegionEpoch { conf_ver: 1, version: 1 }),
        peers: vec![Peer { id: id * 10 + 1, store_id: 1, is_learner: false }],
    }
}

fn main() {
    // kv_request: first byte picks the request.
    let put = PutRequest { cf: "users".into(), key: b"k".to_vec(), value: b"v".to_vec() };
    write("kv_request", "put", &[&[0u8][..], &put.encode_to_vec()].concat());
    let batch = BatchWriteRequest {
        mutations: vec![
            Mutation { op: mutation::Op::Put as i32, cf: String::new(), key: b"a".to_vec(), value: b"1".to_vec() },
            Mutation { op: mutation::Op::Delete as i32, cf: "users".into(), key: b"b".to_vec(), value: Vec::new() },
        ],
    };
    write("kv_request", "batch", &[&[2u8][..], &batch.encode_to_vec()].concat());
    let scan = ScanRequest { cf: "users".into(), start_key: b"a".to_vec(), end_key: b"z".to_vec(), limit: 10, ..Default::default() };
    write("kv_request", "scan", &[&[4u8][..], &scan.encode_to_vec()].concat());

    // raft_message: a heartbeat and a snapshot header that passes the checks.
    let raw = b"snapshot file bytes".repeat(4);
    let data = SnapshotData {
        region: Some(region(5)),
        files: vec![SnapshotFile { cf: "default".into(), size: raw.len() as u64, checksum: crc32fast::hash(&raw), keys: 1 }],
        key: Some(SnapshotKey { region_id: 5, term: 6, index: 7 }),
        backup_fence: String::new(),
    };
    let mut snap = Snapshot::default();
    snap.mut_metadata().index = 7;
    snap.mut_metadata().term = 6;
    snap.data = data.encode_to_vec().into();
    let mut msg = Message::default();
    msg.set_msg_type(MessageType::MsgSnapshot);
    msg.to = 51;
    msg.term = 6;
    msg.set_snapshot(snap);
    let header = RaftMessage {
        region_id: 5,
        from_store_id: 2,
        to_store_id: 1,
        message: msg.write_to_bytes().expect("encode"),
        hibernate: false,
        leaving: false,
    };
    let mut heartbeat = Message::default();
    heartbeat.set_msg_type(MessageType::MsgHeartbeat);
    heartbeat.to = 51;
    heartbeat.term = 6;
    let beat = RaftMessage {
        region_id: 5,
        from_store_id: 2,
        to_store_id: 1,
        message: heartbeat.write_to_bytes().expect("encode"),
        hibernate: true,
        leaving: false,
    };
    write("raft_message", "snapshot-and-heartbeat", &RaftMessageBatch { messages: vec![header, beat] }.encode_to_vec());

    // snapshot_stream: the data, then the one chunk that completes it.
    let c = chunk::encode(0, 0, &raw, true).expect("chunk");
    write("snapshot_stream", "complete", &pieces(&[data.encode_to_vec(), c.encode_to_vec()]));

    // peer_storage: a region with one applied entry in its log.
    let conf = ConfState { voters: vec![91], ..Default::default() };
    let state = RegionLocalState {
        region: Some(region(9)),
        state: 0,
        conf_state: conf.write_to_bytes().expect("encode"),
        applying: None,
        backup_fence: String::new(),
    };
    let raft_state = RaftLocalState { term: 6, vote: 91, commit: 5, last_index: 5 };
    let apply = RaftApplyState { applied_index: 5, truncated_index: 4, truncated_term: 6 };
    let entry = Entry { term: 6, index: 5, ..Default::default() };
    let parts = [
        state.encode_to_vec(),
        raft_state.encode_to_vec(),
        apply.encode_to_vec(),
        entry.write_to_bytes().expect("encode"),
        vec![5], // the entry's index
    ];
    write("peer_storage", "one-entry", &pieces(&parts));

    // keys: a Raft log key.
    write("keys", "raft-log-key", &shoal_node::keys::raft_log_key(9, 5));

    // config_file: what the operator writes, and a column family.
    write(
        "config_file",
        "operator",
        b"# shoal-node configuration\nmax-store-down-time-secs = 900\nraft-log-gc-count-limit = 20000\nregion-split-size = 100663296\n\n[[column-families]]\nname = \"users\"\ncompression = \"zstd\"\nblock_size = 32768\nbloom_bits_per_key = 10.0\n",
    );
    println!("seeds written under fuzz/seeds/");
}
