//! Every key layout the store writes, in one place.
//!
//! User data lives in the user column families under the user's own key, unchanged:
//! a region owns the range `[start_key, end_key)` of every user CF at once.
//!
//! Internal column families (names in [`crate::storage::cf`]):
//!
//! | CF            | key                                   | value                      |
//! |---------------|---------------------------------------|----------------------------|
//! | `raft_log`    | `region_id:be64 ‖ index:be64`         | raft `Entry` (protobuf)    |
//! | `raft_state`  | `region_id:be64`                      | `RaftLocalState` (prost)   |
//! | `region_meta` | `0x01 ‖ region_id:be64`               | `RegionLocalState` (prost) |
//! | `region_meta` | `0x02 ‖ region_id:be64`               | `RaftApplyState` (prost)   |
//! | `region_meta` | `0x03 ‖ store_id:be64`                | `StoreInfo` (prost)        |
//! | `region_meta` | `0x00 ‖ "store_ident"`                | `StoreIdent` (prost)       |
//! | `region_meta` | `0x00 ‖ "join_token"`                 | instance token (hex text)  |
//! | `meta`        | `0x01`                                | `MetaIdState` (prost)      |
//! | `meta`        | `0x02 ‖ store_id:be64`                | `StoreMeta` (prost)        |
//! | `meta`        | `0x03 ‖ region_id:be64`               | `RegionInfo` (prost)       |
//!
//! The `meta` CF is written only by the meta Raft group's state machine
//! ([`crate::meta`]), identically on every store that holds a meta peer.
//!
//! Big-endian integers make RocksDB's byte order equal to numeric order, so a
//! region's log is one contiguous, index-ordered range.

/// The longest user key any configuration accepts (`--max-key-size` is capped here).
pub const MAX_KEY_LEN: usize = 64 << 10;

const REGION_STATE_PREFIX: u8 = 0x01;
const APPLY_STATE_PREFIX: u8 = 0x02;
const STORE_INFO_PREFIX: u8 = 0x03;

/// The key of this store's identity record (store id, cluster id).
pub const STORE_IDENT_KEY: &[u8] = b"\x00store_ident";

/// The key of the random instance token a joining store registers with, kept
/// so that a registration retried after a crash gets the same store id.
pub const JOIN_TOKEN_KEY: &[u8] = b"\x00join_token";

/// Key of entry `index` of `region_id`'s Raft log.
pub fn raft_log_key(region_id: u64, index: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&region_id.to_be_bytes());
    key[8..].copy_from_slice(&index.to_be_bytes());
    key
}

/// Splits a Raft log key back into `(region_id, index)`.
pub fn decode_raft_log_key(key: &[u8]) -> Option<(u64, u64)> {
    if key.len() != 16 {
        return None;
    }
    let region_id = u64::from_be_bytes(key[..8].try_into().ok()?);
    let index = u64::from_be_bytes(key[8..].try_into().ok()?);
    Some((region_id, index))
}

/// Key of the persisted Raft hard state of `region_id`.
pub fn raft_state_key(region_id: u64) -> [u8; 8] {
    region_id.to_be_bytes()
}

fn prefixed(prefix: u8, id: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = prefix;
    key[1..].copy_from_slice(&id.to_be_bytes());
    key
}

/// Key of the region descriptor of `region_id`.
pub fn region_state_key(region_id: u64) -> [u8; 9] {
    prefixed(REGION_STATE_PREFIX, region_id)
}

/// The range `[start, end)` that holds every region descriptor.
pub fn region_state_range() -> ([u8; 1], [u8; 1]) {
    ([REGION_STATE_PREFIX], [REGION_STATE_PREFIX + 1])
}

/// Key of the apply state (applied index, truncated log position) of `region_id`.
pub fn apply_state_key(region_id: u64) -> [u8; 9] {
    prefixed(APPLY_STATE_PREFIX, region_id)
}

/// Key of the registry entry of `store_id` (its name and address).
pub fn store_info_key(store_id: u64) -> [u8; 9] {
    prefixed(STORE_INFO_PREFIX, store_id)
}

/// The range `[start, end)` that holds every store registry entry.
pub fn store_info_range() -> ([u8; 1], [u8; 1]) {
    ([STORE_INFO_PREFIX], [STORE_INFO_PREFIX + 1])
}

const META_STORE_PREFIX: u8 = 0x02;
const META_REGION_PREFIX: u8 = 0x03;

/// Key of the meta group's id allocator state.
pub const META_ID_KEY: &[u8] = b"\x01";

/// Key of store `store_id` in the cluster's store registry (meta CF).
pub fn meta_store_key(store_id: u64) -> [u8; 9] {
    prefixed(META_STORE_PREFIX, store_id)
}

/// The range `[start, end)` of every store in the registry (meta CF).
pub fn meta_store_range() -> ([u8; 1], [u8; 1]) {
    ([META_STORE_PREFIX], [META_STORE_PREFIX + 1])
}

/// Key of region `region_id` in the region directory (meta CF).
pub fn meta_region_key(region_id: u64) -> [u8; 9] {
    prefixed(META_REGION_PREFIX, region_id)
}

/// The range `[start, end)` of the whole region directory (meta CF).
pub fn meta_region_range() -> ([u8; 1], [u8; 1]) {
    ([META_REGION_PREFIX], [META_REGION_PREFIX + 1])
}

/// Whether the ranges `[a_start, a_end)` and `[b_start, b_end)` share a key
/// (empty ends are unbounded).
pub fn ranges_overlap(a_start: &[u8], a_end: &[u8], b_start: &[u8], b_end: &[u8]) -> bool {
    (a_end.is_empty() || b_start < a_end) && (b_end.is_empty() || a_start < b_end)
}

/// Whether `key` lies in `[start, end)`, where an empty `end` means unbounded.
pub fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    key >= start && (end.is_empty() || key < end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_log_keys_sort_by_region_then_index() {
        let mut keys = [raft_log_key(2, 1), raft_log_key(1, 256), raft_log_key(1, 2), raft_log_key(1, u64::MAX), raft_log_key(256, 0)];
        keys.sort();
        let decoded: Vec<_> = keys.iter().map(|k| decode_raft_log_key(k).unwrap()).collect();
        assert_eq!(decoded, vec![(1, 2), (1, 256), (1, u64::MAX), (2, 1), (256, 0)]);
    }

    #[test]
    fn raft_log_key_round_trips_and_rejects_bad_length() {
        assert_eq!(decode_raft_log_key(&raft_log_key(7, 42)), Some((7, 42)));
        assert_eq!(decode_raft_log_key(b"short"), None);
    }

    #[test]
    fn meta_keys_do_not_collide_and_stay_in_their_ranges() {
        let (rs, re) = region_state_range();
        let (ss, se) = store_info_range();
        let region = region_state_key(u64::MAX);
        assert!(region.as_slice() >= rs.as_slice() && region.as_slice() < re.as_slice());
        let apply = apply_state_key(1);
        assert!(!(apply.as_slice() >= rs.as_slice() && apply.as_slice() < re.as_slice()));
        let store = store_info_key(3);
        assert!(store.as_slice() >= ss.as_slice() && store.as_slice() < se.as_slice());
        assert!(STORE_IDENT_KEY < rs.as_slice());
        assert!(JOIN_TOKEN_KEY < rs.as_slice() && JOIN_TOKEN_KEY != STORE_IDENT_KEY);
    }

    #[test]
    fn overlap_handles_unbounded_ends_and_touching_ranges() {
        assert!(ranges_overlap(b"", b"", b"m", b"n"));
        assert!(ranges_overlap(b"a", b"m", b"l", b""));
        assert!(!ranges_overlap(b"a", b"m", b"m", b""), "[a,m) and [m,..) only touch");
        assert!(!ranges_overlap(b"m", b"", b"a", b"m"));
        assert!(ranges_overlap(b"m", b"", b"a", b"n"));
    }

    #[test]
    fn in_range_treats_empty_end_as_unbounded() {
        assert!(in_range(b"a", b"", b""));
        assert!(in_range(b"zzz", b"m", b""));
        assert!(!in_range(b"a", b"m", b""));
        assert!(in_range(b"m", b"m", b"n"));
        assert!(!in_range(b"n", b"m", b"n"));
    }
}
