//! A region's state as a store reads it back from disk at start: the region
//! descriptor, the Raft hard state, the apply state and a log entry, each
//! bytes under its key (length-prefixed pieces of the input), then
//! `PeerStorage::load` and the raft-rs `Storage` calls a peer makes first.
//! Corrupt records must give an error, never a panic.

#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use raft::{GetEntriesContext, Storage};
use shoal_node::keys;
use shoal_node::raftstore::peer_storage::PeerStorage;
use shoal_node::storage::cf::{CF_RAFT_LOG, CF_RAFT_STATE, CF_REGION_META};

const REGION: u64 = 9;

fuzz_target!(|data: &[u8]| {
    let f = &*common::FIXTURE;
    let pieces = common::pieces(data);
    let mut wb = f.engine.batch();
    let index = pieces.get(4).and_then(|p| p.first()).map_or(5, |b| u64::from(*b));
    let records = [
        (CF_REGION_META, keys::region_state_key(REGION).to_vec()),
        (CF_RAFT_STATE, keys::raft_state_key(REGION).to_vec()),
        (CF_REGION_META, keys::apply_state_key(REGION).to_vec()),
        (CF_RAFT_LOG, keys::raft_log_key(REGION, index).to_vec()),
    ];
    for ((cf, key), value) in records.iter().zip(pieces.iter()) {
        wb.put(cf, key, value).expect("batch");
    }
    f.engine.write(wb, false).expect("write");
    if let Ok(storage) = PeerStorage::load(f.engine.clone(), f.snap.clone(), REGION) {
        if let Ok(state) = storage.initial_state() {
            let _ = state.hard_state.commit;
        }
        let (first, last) = (storage.first_index(), storage.last_index());
        if let (Ok(first), Ok(last)) = (first, last) {
            let _ = storage.term(last);
            if first <= last && last - first < 64 {
                let _ = storage.entries(first, last + 1, Some(1 << 20), GetEntriesContext::empty(false));
            }
        }
    }
    let mut wb = f.engine.batch();
    for (cf, key) in &records {
        wb.delete(cf, key).expect("batch");
    }
    f.engine.write(wb, false).expect("clean up");
});
