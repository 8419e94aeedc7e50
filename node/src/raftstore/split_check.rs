//! Split check: how big a region is, and where to cut it once it is too big.
//!
//! A region's size is the bytes of its keys and values in every user column
//! family of its range (RocksDB keys are the user keys, so the range is the same
//! in each). When it passes `split_size` bytes or `split_keys` keys, the split key
//! is the key halfway through the biggest column family — by bytes, or by keys
//! when only the key count is over — so both halves start about equal. The
//! leader's heartbeat task runs the check off the store thread and proposes the
//! split ([`crate::server::heartbeat`]).

use shoal_proto::Region;

use crate::error::Result;
use crate::storage::Engine;

#[derive(Clone, Copy, Debug)]
pub struct SplitConfig {
    pub split_size: u64,
    pub split_keys: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SplitCheck {
    pub size: u64,
    pub keys: u64,
    /// Where to split, when the region is over a limit and has a key to cut at.
    pub split_key: Option<Vec<u8>>,
}

/// Measures `region` on `engine` and picks a split key if it is too big.
pub fn check(engine: &Engine, region: &Region, cfg: SplitConfig) -> Result<SplitCheck> {
    let mut out = SplitCheck::default();
    let mut biggest: Option<(&str, u64, u64)> = None;
    for cf in engine.user_cfs() {
        let (mut size, mut keys) = (0u64, 0u64);
        engine.for_each(cf, &region.start_key, &region.end_key, |k, v| {
            size += (k.len() + v.len()) as u64;
            keys += 1;
            true
        })?;
        out.size += size;
        out.keys += keys;
        if biggest.is_none_or(|(_, s, _)| size > s) {
            biggest = Some((cf, size, keys));
        }
    }
    let by_size = out.size > cfg.split_size;
    if !by_size && out.keys <= cfg.split_keys {
        return Ok(out);
    }
    let Some((cf, size, keys)) = biggest else { return Ok(out) };
    let (mut seen_size, mut seen_keys) = (0u64, 0u64);
    let mut split_key = None;
    engine.for_each(cf, &region.start_key, &region.end_key, |k, v| {
        let past_half = if by_size { seen_size >= size / 2 } else { seen_keys >= keys / 2 };
        // Never cut at the region's first key: the left half would be empty.
        if past_half && k > region.start_key.as_slice() {
            split_key = Some(k.to_vec());
            return false;
        }
        seen_size += (k.len() + v.len()) as u64;
        seen_keys += 1;
        true
    })?;
    out.split_key = split_key;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine_with(keys: std::ops::Range<u32>, value_len: usize) -> (tempfile::TempDir, Engine) {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path(), &[]).unwrap();
        let mut wb = engine.batch();
        for i in keys {
            wb.put("default", format!("k{i:04}").as_bytes(), &vec![b'v'; value_len]).unwrap();
        }
        engine.write(wb, false).unwrap();
        (dir, engine)
    }

    fn region(start: &str, end: &str) -> Region {
        Region { id: 2, start_key: start.into(), end_key: end.into(), ..Default::default() }
    }

    #[test]
    fn small_regions_are_measured_but_not_split() {
        let (_d, engine) = engine_with(0..100, 95);
        let c = check(&engine, &region("", ""), SplitConfig { split_size: 1 << 20, split_keys: 1000 }).unwrap();
        assert_eq!(c, SplitCheck { size: 100 * (5 + 95), keys: 100, split_key: None });
        // Only the region's own range counts.
        let c = check(&engine, &region("k0010", "k0020"), SplitConfig { split_size: 1 << 20, split_keys: 1000 }).unwrap();
        assert_eq!((c.size, c.keys), (1000, 10));
    }

    #[test]
    fn a_big_region_is_cut_in_the_middle_of_its_own_range() {
        let (_d, engine) = engine_with(0..1000, 95);
        let c = check(&engine, &region("k0200", "k0600"), SplitConfig { split_size: 10_000, split_keys: 1_000_000 }).unwrap();
        assert_eq!(c.keys, 400);
        assert_eq!(c.split_key.as_deref(), Some(&b"k0400"[..]));
        // By key count alone.
        let c = check(&engine, &region("", ""), SplitConfig { split_size: u64::MAX, split_keys: 10 }).unwrap();
        assert_eq!(c.split_key.as_deref(), Some(&b"k0500"[..]));
    }

    #[test]
    fn never_splits_at_the_region_start() {
        // One huge key at the start: half the bytes are in it; the cut must come after.
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path(), &[]).unwrap();
        let mut wb = engine.batch();
        wb.put("default", b"a", &vec![0u8; 10_000]).unwrap();
        wb.put("default", b"b", b"x").unwrap();
        engine.write(wb, false).unwrap();
        let c = check(&engine, &region("a", ""), SplitConfig { split_size: 100, split_keys: 1000 }).unwrap();
        assert_eq!(c.split_key.as_deref(), Some(&b"b"[..]));
        let single = check(&engine, &region("b", ""), SplitConfig { split_size: 0, split_keys: 0 }).unwrap();
        assert_eq!(single.split_key, None, "one key cannot be split");
    }
}
