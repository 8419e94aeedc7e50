//! What region snapshots need from the engine.
//!
//! - [`Engine::snapshot`] gives an [`EngineSnapshot`]: reads of every column
//!   family at one consistent point (a RocksDB snapshot), and
//!   [`EngineSnapshot::export_sst`], which writes a key range of one column
//!   family into an SST file (RocksDB's `SstFileWriter`, with that column
//!   family's options).
//! - [`Engine::ingest`] adds received SST files to a column family
//!   (`IngestExternalFile`, moving the given files into the database).
//! - [`Engine::delete_ranges`] removes key ranges with range tombstones in one
//!   synced batch; an open (empty) end is bounded by the column family's last key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{IngestExternalFileOptions, IteratorMode, ReadOptions, SstFileWriter};

use super::{Engine, EngineError, rocks_options};

/// Reads of the whole engine as of one moment. It owns a reference to the
/// engine, so it can be handed to another thread (a read taken on the store
/// thread, served by a gRPC handler). Data deleted or ingested after it was
/// taken (a snapshot applied, a peer destroyed) stays invisible to it.
pub struct EngineSnapshot {
    // Declared before `engine`: fields drop in order, the snapshot first.
    snap: rocksdb::Snapshot<'static>,
    engine: Arc<Engine>,
}

impl Engine {
    /// A consistent view of every column family as of now.
    #[allow(unsafe_code)]
    pub fn snapshot(self: &Arc<Self>) -> EngineSnapshot {
        let snap = self.db.snapshot();
        // SAFETY: the snapshot borrows `self.db`, which lives as long as the
        // engine; the `Arc` stored next to it keeps the engine alive for as
        // long as the snapshot, and the snapshot field is dropped first.
        let snap = unsafe { std::mem::transmute::<rocksdb::Snapshot<'_>, rocksdb::Snapshot<'static>>(snap) };
        EngineSnapshot { snap, engine: self.clone() }
    }

    /// Whether column family `cf` exists (user or internal).
    pub fn has_cf(&self, cf: &str) -> bool {
        self.db.cf_handle(cf).is_some()
    }

    /// The largest key of `cf`, if it has any.
    pub fn last_key(&self, cf: &str) -> Result<Option<Vec<u8>>, EngineError> {
        let mut iter = self.db.iterator_cf(self.handle(cf)?, IteratorMode::End);
        match iter.next() {
            Some(item) => Ok(Some(item?.0.to_vec())),
            None => Ok(None),
        }
    }

    /// Deletes every key of each `(cf, start, end)` range (an empty `end` means
    /// unbounded), in one synced write. A range without keys gets no
    /// tombstone: in the memtable it would overlap a file ingested into that
    /// range next (a snapshot applied on a store that never held the region),
    /// force a flush, and send both files to level 0 to be compacted.
    pub fn delete_ranges(&self, ranges: &[(String, Vec<u8>, Vec<u8>)]) -> Result<(), EngineError> {
        let mut wb = self.batch();
        for (cf, start, end) in ranges {
            let end = if end.is_empty() {
                // No key is larger than every other: end just past the last one.
                match self.last_key(cf)? {
                    Some(mut last) if last >= *start => {
                        last.push(0);
                        last
                    }
                    _ => continue,
                }
            } else if self.scan(cf, start, end, 1)?.is_empty() {
                continue;
            } else {
                end.clone()
            };
            if *start < end {
                wb.delete_range(cf, start, &end)?;
            }
        }
        if wb.is_empty() {
            return Ok(());
        }
        self.write(wb, true)
    }

    /// Ingests the SST files `files` into `cf`. The files are moved (hard-linked,
    /// then unlinked) into the database; their keys overwrite anything older.
    pub fn ingest(&self, cf: &str, files: &[PathBuf]) -> Result<(), EngineError> {
        if files.is_empty() {
            return Ok(());
        }
        let mut opts = IngestExternalFileOptions::default();
        opts.set_move_files(true);
        self.db.ingest_external_file_cf_opts(self.handle(cf)?, &opts, files.to_vec())?;
        Ok(())
    }
}

impl EngineSnapshot {
    fn read_options(&self, end: &[u8]) -> ReadOptions {
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&self.snap);
        if !end.is_empty() {
            ro.set_iterate_upper_bound(end.to_vec());
        }
        ro
    }

    /// Reads one key as of the snapshot.
    pub fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.snap.get_cf(self.engine.handle(cf)?, key)?)
    }

    /// Calls `f` for each pair of `[start, end)` (empty `end`: unbounded) in key
    /// order, as of the snapshot, until it returns false.
    pub fn for_each(&self, cf: &str, start: &[u8], end: &[u8], mut f: impl FnMut(&[u8], &[u8]) -> bool) -> Result<(), EngineError> {
        let handle = self.engine.handle(cf)?;
        let iter = self.engine.db.iterator_cf_opt(handle, self.read_options(end), IteratorMode::From(start, rocksdb::Direction::Forward));
        for item in iter {
            let (k, v) = item?;
            if !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    /// Reads up to `limit` pairs of `[start, end)` (empty `end`: unbounded) in
    /// key order, as of the snapshot.
    pub fn scan(&self, cf: &str, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<super::KvPair>, EngineError> {
        super::collect(limit, |f| self.for_each(cf, start, end, f))
    }

    /// Writes every pair of `[start, end)` of `cf` into a new SST file at `path`,
    /// with the column family's options. Returns how many keys it holds; with
    /// none, no file is created (RocksDB refuses empty SST files).
    pub fn export_sst(&self, cf: &str, start: &[u8], end: &[u8], path: &Path) -> Result<u64, EngineError> {
        let options = rocks_options(&self.engine.cf_options.get(cf).cloned().unwrap_or_default());
        let mut writer = SstFileWriter::create(&options);
        let mut keys = 0u64;
        let mut failure = None;
        self.for_each(cf, start, end, |k, v| {
            let step = if keys == 0 { writer.open(path).and_then(|()| writer.put(k, v)) } else { writer.put(k, v) };
            match step {
                Ok(()) => {
                    keys += 1;
                    true
                }
                Err(e) => {
                    failure = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e.into());
        }
        if keys > 0 {
            writer.finish()?;
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(engine: &Engine, cf: &str, pairs: &[(&str, &str)]) {
        let mut wb = engine.batch();
        for (k, v) in pairs {
            wb.put(cf, k.as_bytes(), v.as_bytes()).unwrap();
        }
        engine.write(wb, false).unwrap();
    }

    fn keys(engine: &Engine, cf: &str) -> Vec<String> {
        engine.scan(cf, b"", b"", 100).unwrap().into_iter().map(|(k, _)| String::from_utf8(k).unwrap()).collect()
    }

    #[test]
    fn snapshot_reads_ignore_later_writes_and_export_a_range() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Arc::new(Engine::open(&dir.path().join("db"), &[]).unwrap());
        put(&engine, "default", &[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]);
        let snap = engine.snapshot();
        put(&engine, "default", &[("b", "changed"), ("bb", "new")]);
        assert_eq!(snap.get("default", b"b").unwrap().as_deref(), Some(&b"2"[..]));
        let sst = dir.path().join("x.sst");
        assert_eq!(snap.export_sst("default", b"b", b"d", &sst).unwrap(), 2);
        assert_eq!(snap.export_sst("default", b"x", b"", &dir.path().join("empty.sst")).unwrap(), 0);
        assert!(!dir.path().join("empty.sst").exists());
        drop(snap);

        let other = Engine::open(&dir.path().join("db2"), &[]).unwrap();
        put(&other, "default", &[("b", "stale"), ("zz", "keep")]);
        other.delete_ranges(&[("default".into(), b"b".to_vec(), b"d".to_vec())]).unwrap();
        other.ingest("default", std::slice::from_ref(&sst)).unwrap();
        assert!(!sst.exists(), "ingestion moves the file");
        assert_eq!(keys(&other, "default"), ["b", "c", "zz"]);
        assert_eq!(other.get("default", b"b").unwrap().as_deref(), Some(&b"2"[..]));
    }

    #[test]
    fn a_snapshot_ingested_into_an_empty_range_skips_level_0() {
        // A store receiving a region it never held: no key of the range is
        // there, so no tombstone is written. One in the memtable would overlap
        // the ingested file, force a flush and put both files in level 0,
        // where compaction rewrites them.
        let dir = tempfile::tempdir().unwrap();
        let source = Arc::new(Engine::open(&dir.path().join("src"), &[]).unwrap());
        put(&source, "default", &[("b", "1"), ("c", "2")]);
        let sst = dir.path().join("x.sst");
        assert_eq!(source.snapshot().export_sst("default", b"b", b"d", &sst).unwrap(), 2);

        let target = Engine::open(&dir.path().join("dst"), &[]).unwrap();
        put(&target, "default", &[("a", "other region"), ("zz", "other region")]);
        target.delete_ranges(&[("default".into(), b"b".to_vec(), b"d".to_vec()), ("default".into(), b"zzz".to_vec(), vec![])]).unwrap();
        target.ingest("default", std::slice::from_ref(&sst)).unwrap();
        let stats = target.stats();
        let default = stats.cfs.iter().find(|c| c.name == "default").unwrap();
        assert_eq!(default.files_per_level[0], 0, "files per level: {:?}", default.files_per_level);
        assert_eq!(default.files_per_level.iter().sum::<u64>(), 1, "files per level: {:?}", default.files_per_level);
        assert_eq!(keys(&target, "default"), ["a", "b", "c", "zz"]);
    }

    #[test]
    fn delete_ranges_with_an_open_end_reach_the_last_key() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path(), &[]).unwrap();
        put(&engine, "default", &[("a", "1"), ("m", "2"), ("\u{7f}\u{7f}", "3"), ("zzzz", "4")]);
        let mut wb = engine.batch();
        wb.put("default", &[0xff, 0xff, 0xff, 0xff, 0xff], b"5").unwrap();
        engine.write(wb, false).unwrap();
        engine.delete_ranges(&[("default".into(), b"m".to_vec(), vec![])]).unwrap();
        assert_eq!(keys(&engine, "default"), ["a"]);
        assert_eq!(engine.last_key("default").unwrap().as_deref(), Some(&b"a"[..]));
        // A start past the last key deletes nothing.
        engine.delete_ranges(&[("default".into(), b"b".to_vec(), vec![])]).unwrap();
        assert_eq!(keys(&engine, "default"), ["a"]);
    }
}
