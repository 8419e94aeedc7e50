//! Key decoding: a Raft log key read back from RocksDB (`region ‖ index`)
//! decodes only from its exact layout and encodes back to the same bytes; a
//! key is in a range exactly when the range overlaps the key's own one-key
//! range.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_node::keys;

fuzz_target!(|data: &[u8]| {
    if let Some((region, index)) = keys::decode_raft_log_key(data) {
        assert_eq!(keys::raft_log_key(region, index).as_slice(), data);
    } else {
        assert_ne!(data.len(), 16);
    }
    let (key, rest) = data.split_at(data.len().min(8));
    let (start, end) = rest.split_at(rest.len() / 2);
    let next: Vec<u8> = key.iter().copied().chain([0]).collect();
    assert_eq!(keys::in_range(key, start, end), keys::ranges_overlap(start, end, key, &next));
});
