//! A `Raft.Snapshot` stream as a store receives it, after its header: the
//! snapshot's `SnapshotData` (from the header) is validated against this
//! store, then each chunk is decoded (decompressed, its length and CRC-32
//! checked) and written at its file and offset, and the receive finished.
//! The input is length-prefixed pieces: the first is the `SnapshotData`, the
//! others `SnapshotChunk`s. Bad input must be refused, never panic, and
//! nothing may be written outside the snapshot directory under any other
//! name than a received or partial file's.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use shoal_node::server::snapshot::{MAX_CHUNK_SIZE, chunk};
use shoal_proto::{SnapshotChunk, SnapshotData};

/// Small enough that a fuzzer reaches the ends of files.
const MAX_FILE: u64 = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let f = &*common::FIXTURE;
    let pieces = common::pieces(data);
    let Some((first, rest)) = pieces.split_first() else { return };
    let Ok(snapshot) = SnapshotData::decode(*first) else { return };
    if snapshot.files.iter().any(|file| file.size > MAX_FILE) {
        return;
    }
    if let Ok(mut rx) = f.snap.start_receive(7, &snapshot) {
        for piece in rest {
            let Ok(c) = SnapshotChunk::decode(*piece) else { continue };
            let Ok(raw) = chunk::decode(&c, MAX_CHUNK_SIZE) else { continue };
            if rx.write(c.file_index, c.offset, &raw).is_err() {
                break;
            }
        }
        let _ = rx.finish();
    }
    for entry in std::fs::read_dir(f.snap.dir()).expect("snapshot dir") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(name.starts_with("rcv_"), "unexpected file {name} in the snapshot directory");
        std::fs::remove_file(entry.path()).expect("clean up");
    }
});
