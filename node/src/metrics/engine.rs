//! `shoal_engine_*`: RocksDB's health, read from the engine when scraped
//! ([`Engine::stats`]): bytes in SST files and memtables, pending compaction
//! bytes and SST files per level for each column family, write stops and
//! delays, block cache usage, hits and misses, compactions running and the
//! bytes they wrote.

use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, IntCounter, IntGauge, IntGaugeVec, Opts};

use crate::storage::Engine;

pub struct EngineCollector {
    engine: Arc<Engine>,
    sst_bytes: IntGaugeVec,
    memtable_bytes: IntGaugeVec,
    pending_compaction_bytes: IntGaugeVec,
    sst_files: IntGaugeVec,
    block_cache_bytes: IntGaugeVec,
    write_stopped: IntGauge,
    delayed_write_rate: IntGauge,
    block_cache_hits: IntCounter,
    block_cache_misses: IntCounter,
    stall_seconds: Counter,
    compactions_running: IntGauge,
    compaction_write_bytes: IntCounter,
    /// One scrape at a time: counters are reset and set from RocksDB's totals.
    lock: Mutex<()>,
}

impl EngineCollector {
    pub fn new(engine: Arc<Engine>) -> Result<EngineCollector, prometheus::Error> {
        let per_cf = |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &["cf"]);
        Ok(EngineCollector {
            engine,
            sst_bytes: per_cf("shoal_engine_sst_bytes", "Bytes in live SST files, by column family")?,
            memtable_bytes: per_cf("shoal_engine_memtable_bytes", "Bytes in memtables, by column family")?,
            pending_compaction_bytes: per_cf(
                "shoal_engine_pending_compaction_bytes",
                "Bytes compaction estimates it must rewrite, by column family",
            )?,
            sst_files: IntGaugeVec::new(Opts::new("shoal_engine_sst_files", "SST files, by column family and level"), &["cf", "level"])?,
            block_cache_bytes: per_cf("shoal_engine_block_cache_bytes", "Bytes held in the block cache, by column family")?,
            write_stopped: IntGauge::new(
                "shoal_engine_write_stopped",
                "1 while RocksDB stops writes (too many L0 files, memtables or pending compaction bytes)",
            )?,
            delayed_write_rate: IntGauge::new(
                "shoal_engine_delayed_write_rate_bytes",
                "Bytes per second RocksDB slows writes to while it delays them (0: not delayed)",
            )?,
            block_cache_hits: IntCounter::new("shoal_engine_block_cache_hits_total", "Block cache hits")?,
            block_cache_misses: IntCounter::new("shoal_engine_block_cache_misses_total", "Block cache misses")?,
            stall_seconds: Counter::new("shoal_engine_write_stall_seconds_total", "Time writes spent stalled by RocksDB")?,
            compactions_running: IntGauge::new("shoal_engine_compactions_running", "Compactions RocksDB is running now")?,
            compaction_write_bytes: IntCounter::new("shoal_engine_compaction_write_bytes_total", "Bytes written by compactions")?,
            lock: Mutex::new(()),
        })
    }

    fn collectors(&self) -> [&dyn Collector; 12] {
        [
            &self.sst_bytes,
            &self.memtable_bytes,
            &self.pending_compaction_bytes,
            &self.sst_files,
            &self.block_cache_bytes,
            &self.write_stopped,
            &self.delayed_write_rate,
            &self.block_cache_hits,
            &self.block_cache_misses,
            &self.stall_seconds,
            &self.compactions_running,
            &self.compaction_write_bytes,
        ]
    }
}

fn set_total(c: &IntCounter, total: u64) {
    c.reset();
    c.inc_by(total);
}

impl Collector for EngineCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.collectors().into_iter().flat_map(|c| c.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _one = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let stats = self.engine.stats();
        for cf in &stats.cfs {
            let name = cf.name.as_str();
            self.sst_bytes.with_label_values(&[name]).set(cf.sst_bytes as i64);
            self.memtable_bytes.with_label_values(&[name]).set(cf.memtable_bytes as i64);
            self.pending_compaction_bytes.with_label_values(&[name]).set(cf.pending_compaction_bytes as i64);
            self.block_cache_bytes.with_label_values(&[name]).set(cf.block_cache_bytes as i64);
            for (level, files) in cf.files_per_level.iter().enumerate() {
                self.sst_files.with_label_values(&[name, &level.to_string()]).set(*files as i64);
            }
        }
        self.write_stopped.set(stats.write_stopped as i64);
        self.delayed_write_rate.set(stats.delayed_write_rate as i64);
        set_total(&self.block_cache_hits, stats.block_cache_hits);
        set_total(&self.block_cache_misses, stats.block_cache_misses);
        set_total(&self.compaction_write_bytes, stats.compaction_write_bytes);
        self.compactions_running.set(stats.running_compactions as i64);
        self.stall_seconds.reset();
        self.stall_seconds.inc_by(stats.stall_micros as f64 / 1e6);
        self.collectors().into_iter().flat_map(|c| c.collect()).collect()
    }
}
