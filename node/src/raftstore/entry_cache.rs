//! [`EntryCache`]: the unapplied tail of a region's Raft log, kept in memory.
//!
//! raft-rs asks its storage for the entries a Ready commits and for those a
//! leader sends, and those are nearly always the ones appended a round or two
//! earlier. Reading them back from RocksDB (an iterator per call) was a tenth of
//! a busy store's CPU with thousands of active regions, so
//! [`super::peer_storage::PeerStorage`] keeps them here too: appended entries go
//! in, applied or truncated ones go out, and the cache stays a contiguous run
//! ending at the log's last index, at most [`MAX_ENTRIES`] entries and
//! [`MAX_BYTES`] bytes (older ones are read from disk). An idle region's cache
//! is empty.

use std::collections::VecDeque;

use raft::prelude::Entry;

/// Most entries cached per region.
pub const MAX_ENTRIES: usize = 1024;
/// Most bytes (encoded) cached per region.
pub const MAX_BYTES: u64 = 4 << 20;

#[derive(Default)]
pub struct EntryCache {
    /// Entries with consecutive indexes, and each one's encoded size.
    entries: VecDeque<(Entry, u64)>,
    bytes: u64,
}

impl EntryCache {
    /// Adds entries just appended to the log (`sizes`: their encoded sizes),
    /// replacing any cached suffix they overwrite.
    pub fn append(&mut self, entries: &[Entry], sizes: &[u64]) {
        let Some(first) = entries.first().map(|e| e.index) else { return };
        while self.entries.back().is_some_and(|(e, _)| e.index >= first) {
            self.pop_back();
        }
        if self.entries.back().is_some_and(|(e, _)| e.index + 1 != first) {
            self.clear(); // not contiguous with what it holds
        }
        for (e, size) in entries.iter().zip(sizes) {
            self.entries.push_back((e.clone(), *size));
            self.bytes += size;
        }
        while self.entries.len() > MAX_ENTRIES || (self.bytes > MAX_BYTES && self.entries.len() > 1) {
            self.pop_front();
        }
    }

    /// Drops the entries up to `index` (applied, or truncated from the log).
    pub fn compact_to(&mut self, index: u64) {
        while self.entries.front().is_some_and(|(e, _)| e.index <= index) {
            self.pop_front();
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Entries `[low, high)` if all of them are cached: at least one, then as
    /// many as fit in `max_size` bytes.
    pub fn entries(&self, low: u64, high: u64, max_size: u64) -> Option<Vec<Entry>> {
        let first = self.entries.front()?.0.index;
        let last = self.entries.back()?.0.index;
        if low < first || high > last + 1 || low >= high {
            return None;
        }
        let mut out = Vec::with_capacity((high - low) as usize);
        let mut size = 0;
        for (e, s) in self.entries.range((low - first) as usize..(high - first) as usize) {
            size += s;
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(e.clone());
        }
        Some(out)
    }

    /// The term of entry `index`, if cached.
    pub fn term(&self, index: u64) -> Option<u64> {
        let first = self.entries.front()?.0.index;
        self.entries.get(index.checked_sub(first)? as usize).map(|(e, _)| e.term)
    }

    fn pop_front(&mut self) {
        if let Some((_, s)) = self.entries.pop_front() {
            self.bytes -= s;
        }
    }

    fn pop_back(&mut self) {
        if let Some((_, s)) = self.entries.pop_back() {
            self.bytes -= s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(index: u64, term: u64) -> Entry {
        Entry { index, term, ..Default::default() }
    }

    fn indexes(v: Option<Vec<Entry>>) -> Option<Vec<(u64, u64)>> {
        v.map(|v| v.iter().map(|e| (e.index, e.term)).collect())
    }

    #[test]
    fn serves_what_it_holds_and_nothing_else() {
        let mut c = EntryCache::default();
        c.append(&[e(5, 1), e(6, 1), e(7, 2)], &[10, 10, 10]);
        assert_eq!(indexes(c.entries(5, 8, u64::MAX)), Some(vec![(5, 1), (6, 1), (7, 2)]));
        assert_eq!(indexes(c.entries(6, 7, u64::MAX)), Some(vec![(6, 1)]));
        assert_eq!(c.entries(4, 6, u64::MAX), None, "entry 4 is not cached");
        assert_eq!(c.entries(6, 9, u64::MAX), None, "entry 8 does not exist");
        assert_eq!(indexes(c.entries(5, 8, 15)), Some(vec![(5, 1)]), "at most max_size bytes, at least one entry");
        assert_eq!((c.term(7), c.term(4), c.term(8)), (Some(2), None, None));
    }

    #[test]
    fn an_overwriting_append_replaces_the_tail_and_a_gap_starts_afresh() {
        let mut c = EntryCache::default();
        c.append(&[e(5, 1), e(6, 1), e(7, 1)], &[1, 1, 1]);
        c.append(&[e(6, 3)], &[1]);
        assert_eq!(indexes(c.entries(5, 7, u64::MAX)), Some(vec![(5, 1), (6, 3)]), "a new leader's entry 6 replaced 6 and 7");
        assert_eq!(c.term(7), None);
        c.append(&[e(9, 3)], &[1]);
        assert_eq!((c.term(5), c.term(9)), (None, Some(3)), "not contiguous: only the new entry stays");
    }

    #[test]
    fn applied_entries_leave_and_the_size_is_bounded() {
        let mut c = EntryCache::default();
        c.append(&[e(1, 1), e(2, 1), e(3, 1)], &[1, 1, 1]);
        c.compact_to(2);
        assert_eq!((c.term(2), c.term(3)), (None, Some(1)));
        let many: Vec<Entry> = (4..4 + MAX_ENTRIES as u64 + 10).map(|i| e(i, 1)).collect();
        c.append(&many, &vec![1; many.len()]);
        assert_eq!(c.entries.len(), MAX_ENTRIES);
        assert_eq!(c.term(3 + MAX_ENTRIES as u64 + 10), Some(1), "the newest stay");
        c.append(&[e(4 + MAX_ENTRIES as u64 + 10, 1)], &[MAX_BYTES + 1]);
        assert_eq!(c.entries.len(), 1, "past the byte limit only the newest entry stays");
        c.clear();
        assert_eq!(c.entries(1, 2, u64::MAX), None);
    }
}
