//! [`Engine`]: the store's RocksDB and its column families.
//!
//! Region snapshots (consistent reads, SST export and ingestion) are in the
//! child module [`sst`].

mod sst;

pub use sst::EngineSnapshot;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rocksdb::{BlockBasedOptions, ColumnFamilyDescriptor, DB, DBCompressionType, IteratorMode, Options, ReadOptions, WriteOptions};

use super::cf::{CF_DEFAULT, CF_META, CF_RAFT_LOG, CF_RAFT_STATE, CF_REGION_META, CfConfig, CfOptions, Compression, INTERNAL_CFS};

/// A failure of the storage engine. Always the system's fault, never the client's.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("rocksdb: {0}")]
    RocksDb(#[from] rocksdb::Error),
    #[error("column family {0:?} does not exist")]
    NoSuchCf(String),
}

/// A key and its value.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// Up to `limit` pairs that `for_each` visits, in its order.
fn collect(
    limit: usize,
    for_each: impl FnOnce(&mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), EngineError>,
) -> Result<Vec<KvPair>, EngineError> {
    let mut out = Vec::new();
    for_each(&mut |k, v| {
        if out.len() >= limit {
            return false;
        }
        out.push((k.to_vec(), v.to_vec()));
        true
    })?;
    Ok(out)
}

/// One RocksDB instance with the store's user and internal column families.
pub struct Engine {
    db: DB,
    user_cfs: Vec<String>,
    /// Every column family's options, for SST files written for it.
    cf_options: HashMap<String, CfOptions>,
    /// The slow-disk failpoint: microseconds every synced write waits before
    /// it is written (0: off). Set only through [`Engine::set_sync_delay`].
    sync_delay_us: AtomicU64,
    /// The options the DB was opened with: they hold its statistics (tickers).
    db_opts: Options,
}

/// One column family's numbers, read from RocksDB's properties.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CfStats {
    pub name: String,
    /// Bytes in live SST files.
    pub sst_bytes: u64,
    /// Bytes in memtables (active and immutable).
    pub memtable_bytes: u64,
    /// Bytes compaction estimates it has to rewrite to bring levels in shape.
    pub pending_compaction_bytes: u64,
    /// SST files at each level, L0 first.
    pub files_per_level: Vec<u64>,
    /// Bytes of block cache this column family's table reader holds.
    pub block_cache_bytes: u64,
}

/// The engine's health at one moment: what `/metrics` shows as `shoal_engine_*`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub cfs: Vec<CfStats>,
    /// Writes stopped (too many L0 files, memtables or pending compaction bytes).
    pub write_stopped: bool,
    /// The rate writes are slowed to while delayed (0: not delayed).
    pub delayed_write_rate: u64,
    /// Cumulative, since the engine opened.
    pub block_cache_hits: u64,
    pub block_cache_misses: u64,
    pub stall_micros: u64,
    /// Bytes compactions have written, since the engine opened.
    pub compaction_write_bytes: u64,
    /// Compactions running now.
    pub running_compactions: u64,
}

/// Levels RocksDB has by default (L0..L6).
const LEVELS: usize = 7;
/// Age a bottommost file must reach before RocksDB rewrites it only to drop
/// what released snapshots protected.
const BOTTOMMOST_FILE_COMPACTION_DELAY: Duration = Duration::from_secs(3600);

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("path", &self.db.path()).field("user_cfs", &self.user_cfs).finish()
    }
}

fn rocks_options(opts: &CfOptions) -> Options {
    let mut o = Options::default();
    o.set_compression_type(match opts.compression {
        Compression::None => DBCompressionType::None,
        Compression::Snappy => DBCompressionType::Snappy,
        Compression::Lz4 => DBCompressionType::Lz4,
        Compression::Zstd => DBCompressionType::Zstd,
    });
    o.set_write_buffer_size(opts.write_buffer_size);
    let mut table = BlockBasedOptions::default();
    table.set_block_size(opts.block_size);
    if opts.bloom_bits_per_key > 0.0 {
        table.set_bloom_filter(opts.bloom_bits_per_key, false);
    }
    o.set_block_based_table_factory(&table);
    o
}

impl Engine {
    /// Opens (or creates) the database at `path` with `default`, the given user
    /// column families and the internal ones. User column families that exist on
    /// disk but are no longer configured stay open with default options, so that
    /// removing one from the configuration never hides or loses data.
    pub fn open(path: &Path, user_cfs: &[CfConfig]) -> Result<Engine, EngineError> {
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_max_background_jobs(2);
        db_opts.set_keep_log_file_num(4);
        // Tickers only (block cache hits, stalls): no timers on the write path.
        db_opts.enable_statistics();
        db_opts.set_statistics_level(rocksdb::statistics::StatsLevel::ExceptHistogramOrTimers);

        let mut configured: Vec<CfConfig> = user_cfs.to_vec();
        if !configured.iter().any(|c| c.name == CF_DEFAULT) {
            configured.insert(0, CfConfig { name: CF_DEFAULT.into(), options: CfOptions::default() });
        }
        let existing: BTreeSet<String> = DB::list_cf(&db_opts, path).unwrap_or_default().into_iter().collect();
        for name in &existing {
            if !INTERNAL_CFS.contains(&name.as_str()) && !configured.iter().any(|c| &c.name == name) {
                tracing::warn!(cf = %name, "column family exists on disk but is not configured; keeping it with default options");
                configured.push(CfConfig { name: name.clone(), options: CfOptions::default() });
            }
        }

        let mut cf_options: HashMap<String, CfOptions> = configured.iter().map(|c| (c.name.clone(), c.options.clone())).collect();
        let raft_log = CfOptions { compression: Compression::Lz4, bloom_bits_per_key: 0.0, ..CfOptions::default() };
        cf_options.insert(CF_RAFT_LOG.into(), raft_log);
        let small = CfOptions { write_buffer_size: 8 << 20, ..CfOptions::default() };
        for cf in [CF_RAFT_STATE, CF_REGION_META, CF_META] {
            cf_options.insert(cf.into(), small.clone());
        }
        let descriptors: Vec<ColumnFamilyDescriptor> = configured
            .iter()
            .map(|c| c.name.as_str())
            .chain(INTERNAL_CFS)
            .filter_map(|name| cf_options.get(name).map(|o| ColumnFamilyDescriptor::new(name, rocks_options(o))))
            .collect();

        let db = DB::open_cf_descriptors(&db_opts, path, descriptors)?;
        // Once a snapshot is released (a region snapshot generated, a scan
        // done), RocksDB rewrites every bottommost file written while it was
        // held, to zero its sequence numbers and drop what only the snapshot
        // still needed (deleted log entries): a store that had just taken
        // writes rewrote all its data and much of its log while it seeded a
        // new store. With the delay only files an hour old are rewritten so;
        // younger ones mostly meet an ordinary compaction first.
        let delay = BOTTOMMOST_FILE_COMPACTION_DELAY.as_secs().to_string();
        for name in configured.iter().map(|c| c.name.as_str()).chain(INTERNAL_CFS) {
            if let Some(h) = db.cf_handle(name) {
                db.set_options_cf(h, &[("bottommost_file_compaction_delay", delay.as_str())])?;
            }
        }
        Ok(Engine { db, user_cfs: configured.into_iter().map(|c| c.name).collect(), cf_options, sync_delay_us: AtomicU64::new(0), db_opts })
    }

    /// The user column families, `default` first.
    pub fn user_cfs(&self) -> &[String] {
        &self.user_cfs
    }

    /// Whether `name` is a user column family clients may read and write.
    pub fn is_user_cf(&self, name: &str) -> bool {
        self.user_cfs.iter().any(|c| c == name)
    }

    fn handle(&self, cf: &str) -> Result<&rocksdb::ColumnFamily, EngineError> {
        self.db.cf_handle(cf).ok_or_else(|| EngineError::NoSuchCf(cf.to_string()))
    }

    /// Reads one key.
    pub fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.db.get_cf(self.handle(cf)?, key)?)
    }

    /// Reads up to `limit` pairs of `[start, end)` in key order; an empty `end`
    /// means the end of the key space.
    pub fn scan(&self, cf: &str, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<KvPair>, EngineError> {
        collect(limit, |f| self.for_each(cf, start, end, f))
    }

    /// Calls `f` for each pair of `[start, end)` in key order until it returns false.
    pub fn for_each(&self, cf: &str, start: &[u8], end: &[u8], mut f: impl FnMut(&[u8], &[u8]) -> bool) -> Result<(), EngineError> {
        let mut ro = ReadOptions::default();
        if !end.is_empty() {
            ro.set_iterate_upper_bound(end.to_vec());
        }
        let iter = self.db.iterator_cf_opt(self.handle(cf)?, ro, IteratorMode::From(start, rocksdb::Direction::Forward));
        for item in iter {
            let (k, v) = item?;
            if !f(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    /// Bytes in SST files and memtables across every column family (approximate).
    pub fn approximate_used_bytes(&self) -> u64 {
        let mut total = 0;
        for cf in self.user_cfs.iter().map(String::as_str).chain(INTERNAL_CFS) {
            if let Ok(h) = self.handle(cf) {
                for prop in ["rocksdb.total-sst-files-size", "rocksdb.cur-size-all-mem-tables"] {
                    total += self.db.property_int_value_cf(h, prop).ok().flatten().unwrap_or(0);
                }
            }
        }
        total
    }

    /// Every column family's sizes and file counts, and the DB's write
    /// stalls and block cache counters (a few property reads per family).
    pub fn stats(&self) -> EngineStats {
        let int = |h: &rocksdb::ColumnFamily, prop: &str| self.db.property_int_value_cf(h, prop).ok().flatten().unwrap_or(0);
        let mut cfs = Vec::new();
        for name in self.user_cfs.iter().map(String::as_str).chain(INTERNAL_CFS) {
            let Ok(h) = self.handle(name) else { continue };
            cfs.push(CfStats {
                name: name.to_string(),
                sst_bytes: int(h, "rocksdb.total-sst-files-size"),
                memtable_bytes: int(h, "rocksdb.cur-size-all-mem-tables"),
                pending_compaction_bytes: int(h, "rocksdb.estimate-pending-compaction-bytes"),
                files_per_level: (0..LEVELS).map(|l| int(h, &format!("rocksdb.num-files-at-level{l}"))).collect(),
                block_cache_bytes: int(h, "rocksdb.block-cache-usage"),
            });
        }
        let db_int = |prop: &str| self.db.property_int_value(prop).ok().flatten().unwrap_or(0);
        use rocksdb::statistics::Ticker;
        EngineStats {
            cfs,
            write_stopped: db_int("rocksdb.is-write-stopped") != 0,
            delayed_write_rate: db_int("rocksdb.actual-delayed-write-rate"),
            block_cache_hits: self.db_opts.get_ticker_count(Ticker::BlockCacheHit),
            block_cache_misses: self.db_opts.get_ticker_count(Ticker::BlockCacheMiss),
            stall_micros: self.db_opts.get_ticker_count(Ticker::StallMicros),
            compaction_write_bytes: self.db_opts.get_ticker_count(Ticker::CompactWriteBytes),
            running_compactions: db_int("rocksdb.num-running-compactions"),
        }
    }

    /// Starts an empty batch of writes against this engine.
    pub fn batch(&self) -> WriteBatch<'_> {
        WriteBatch { engine: self, inner: rocksdb::WriteBatch::default() }
    }

    /// Writes `batch` atomically; with `sync` it is on disk when this returns.
    pub fn write(&self, batch: WriteBatch<'_>, sync: bool) -> Result<(), EngineError> {
        if sync {
            let delay = self.sync_delay_us.load(Ordering::Relaxed);
            if delay > 0 {
                std::thread::sleep(Duration::from_micros(delay));
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(batch.inner, &wo)?;
        Ok(())
    }

    /// The slow-disk failpoint (a fault test's, through the node's
    /// `--enable-failpoints`): every synced write — the Raft log's fsync among
    /// them — first waits `delay`; zero turns it off.
    pub fn set_sync_delay(&self, delay: Duration) {
        self.sync_delay_us.store(delay.as_micros() as u64, Ordering::Relaxed);
    }

    /// Flushes memtables and the WAL; used on graceful shutdown.
    pub fn flush(&self) -> Result<(), EngineError> {
        self.db.flush_wal(true)?;
        Ok(())
    }
}

/// Writes across column families that land atomically, or not at all.
pub struct WriteBatch<'a> {
    engine: &'a Engine,
    inner: rocksdb::WriteBatch,
}

impl WriteBatch<'_> {
    pub fn put(&mut self, cf: &str, key: &[u8], value: &[u8]) -> Result<(), EngineError> {
        self.inner.put_cf(self.engine.handle(cf)?, key, value);
        Ok(())
    }

    pub fn delete(&mut self, cf: &str, key: &[u8]) -> Result<(), EngineError> {
        self.inner.delete_cf(self.engine.handle(cf)?, key);
        Ok(())
    }

    /// Deletes every key of `[start, end)`.
    pub fn delete_range(&mut self, cf: &str, start: &[u8], end: &[u8]) -> Result<(), EngineError> {
        self.inner.delete_range_cf(self.engine.handle(cf)?, start, end);
        Ok(())
    }

    /// Deletes every key of `[start, end)`, where an empty `end` means the end of
    /// the key space (user keys are at most [`crate::keys::MAX_KEY_LEN`] bytes, so a
    /// longer all-`0xff` key bounds them all).
    pub fn delete_range_unbounded(&mut self, cf: &str, start: &[u8], end: &[u8]) -> Result<(), EngineError> {
        if end.is_empty() {
            let bound = vec![0xff; crate::keys::MAX_KEY_LEN + 1];
            return self.delete_range(cf, start, &bound);
        }
        self.delete_range(cf, start, end)
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Whether the engine has column family `cf`.
    pub fn has_cf(&self, cf: &str) -> bool {
        self.engine.db.cf_handle(cf).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cf(spec: &str) -> CfConfig {
        spec.parse().unwrap()
    }

    #[test]
    fn bottommost_rewrites_are_delayed_on_every_open() {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..2 {
            drop(Engine::open(dir.path(), &[cf("users")]).unwrap());
            // RocksDB writes the options in force to a new OPTIONS-* file on
            // each open and change; the newest one has the highest number.
            let newest = std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter_map(|n| Some((n.strip_prefix("OPTIONS-")?.parse::<u64>().ok()?, n)))
                .max()
                .unwrap()
                .1;
            let text = std::fs::read_to_string(dir.path().join(newest)).unwrap();
            let delays: Vec<(&str, &str)> = text
                .split("[CFOptions \"")
                .skip(1)
                .map(|section| {
                    let name = section.split('"').next().unwrap();
                    let delay = section.lines().find_map(|l| l.trim().strip_prefix("bottommost_file_compaction_delay=")).unwrap();
                    (name, delay)
                })
                .collect();
            for (name, delay) in &delays {
                assert_eq!(*delay, "3600", "{name}: {delays:?}");
            }
            assert_eq!(delays.len(), 2 + INTERNAL_CFS.len(), "{delays:?}");
        }
    }

    #[test]
    fn user_cfs_are_separate_and_batches_are_atomic_across_them() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path(), &[cf("users:compression=zstd")]).unwrap();
        assert_eq!(engine.user_cfs(), &["default".to_string(), "users".to_string()]);
        assert!(engine.is_user_cf("users") && !engine.is_user_cf(CF_RAFT_LOG));

        let mut wb = engine.batch();
        wb.put("default", b"k", b"in-default").unwrap();
        wb.put("users", b"k", b"in-users").unwrap();
        engine.write(wb, true).unwrap();
        assert_eq!(engine.get("default", b"k").unwrap().as_deref(), Some(&b"in-default"[..]));
        assert_eq!(engine.get("users", b"k").unwrap().as_deref(), Some(&b"in-users"[..]));
        assert!(matches!(engine.batch().put("nope", b"k", b"v"), Err(EngineError::NoSuchCf(_))));
    }

    #[test]
    fn scan_respects_bounds_and_limit_and_range_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path(), &[]).unwrap();
        let mut wb = engine.batch();
        for k in ["a", "b", "c", "d", "e"] {
            wb.put("default", k.as_bytes(), b"v").unwrap();
        }
        engine.write(wb, false).unwrap();
        let keys = |v: Vec<(Vec<u8>, Vec<u8>)>| v.into_iter().map(|(k, _)| String::from_utf8(k).unwrap()).collect::<Vec<_>>();
        assert_eq!(keys(engine.scan("default", b"b", b"d", 10).unwrap()), ["b", "c"]);
        assert_eq!(keys(engine.scan("default", b"", b"", 2).unwrap()), ["a", "b"]);
        assert_eq!(keys(engine.scan("default", b"c", b"", 10).unwrap()), ["c", "d", "e"]);

        let mut wb = engine.batch();
        wb.delete_range("default", b"b", b"e").unwrap();
        engine.write(wb, true).unwrap();
        assert_eq!(keys(engine.scan("default", b"", b"", 10).unwrap()), ["a", "e"]);
    }

    #[test]
    fn reopening_keeps_data_and_unconfigured_cfs() {
        let dir = tempfile::tempdir().unwrap();
        {
            let engine = Engine::open(dir.path(), &[cf("extra")]).unwrap();
            let mut wb = engine.batch();
            wb.put("extra", b"k", b"v").unwrap();
            engine.write(wb, true).unwrap();
        }
        let engine = Engine::open(dir.path(), &[]).unwrap();
        assert!(engine.is_user_cf("extra"));
        assert_eq!(engine.get("extra", b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }
}
