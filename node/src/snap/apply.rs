//! Applying a received snapshot: the region's data becomes exactly the snapshot's.
//!
//! For every range of [`super::data_ranges`] the old keys are deleted (range
//! tombstones, one synced write; none for a range without keys, so that files
//! ingested into a store that never held the region go below level 0), then
//! the received SST files are ingested.
//! Each file is hard-linked to a temporary name first and RocksDB moves that
//! link into the database, so the received file stays until
//! [`SnapManager::release_received`]: after a crash anywhere in between, the
//! same call redoes the same result.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use shoal_proto::SnapshotData;

use super::manager::SnapManager;
use super::{data_ranges, files};
use crate::error::{Error, Result};

/// Longest wait of an apply held by [`SnapManager::hold_applies`].
pub const APPLY_HOLD_LIMIT: Duration = Duration::from_secs(20);

impl SnapManager {
    /// Makes the region's data in this store's engine exactly the snapshot's.
    /// Idempotent. Runs on the snapshot apply thread
    /// ([`crate::raftstore::snap_applier`]), or on the store thread for the
    /// meta group's snapshots and for an apply a crash interrupted.
    pub fn apply(&self, data: &SnapshotData) -> Result<()> {
        let started = Instant::now();
        self.wait_for_gate()?;
        let result = self.apply_files(data);
        match &result {
            Ok(()) => {
                self.metrics.snapshots.with_label_values(&["applied"]).inc();
                self.metrics.snapshot_duration.with_label_values(&["apply"]).observe(started.elapsed().as_secs_f64());
            }
            Err(_) => self.metrics.snapshots.with_label_values(&["failed"]).inc(),
        }
        result
    }

    /// The [`SnapManager::hold_applies`] failpoint: waits while it is held.
    fn wait_for_gate(&self) -> Result<()> {
        let (held, released) = &*self.apply_gate;
        let guard = super::manager::lock(held);
        let (guard, timeout) = released.wait_timeout_while(guard, APPLY_HOLD_LIMIT, |held| *held).unwrap_or_else(|e| e.into_inner());
        drop(guard);
        if timeout.timed_out() {
            return Err(Error::Internal(format!("snapshot apply held by a failpoint for {APPLY_HOLD_LIMIT:?}")));
        }
        Ok(())
    }

    fn apply_files(&self, data: &SnapshotData) -> Result<()> {
        let key = self.validate(data)?;
        let region = data.region.as_ref().ok_or_else(|| Error::InvalidArgument("snapshot data has no region".into()))?;
        let mut by_cf: BTreeMap<&str, Vec<(PathBuf, PathBuf)>> = BTreeMap::new();
        for (n, f) in data.files.iter().enumerate() {
            let received = files::received(&self.dir, &key, n);
            let len = std::fs::metadata(&received).map(|m| m.len()).unwrap_or(0);
            if len != f.size {
                return Err(Error::Internal(format!("snapshot {key:?}: file {n} is not received ({len} of {} bytes)", f.size)));
            }
            by_cf.entry(f.cf.as_str()).or_default().push((received, files::ingest(&self.dir, &key, n)));
        }

        self.engine.delete_ranges(&data_ranges(&self.engine, region))?;
        for (cf, links) in by_cf {
            let mut paths = Vec::with_capacity(links.len());
            for (received, link) in links {
                match std::fs::remove_file(&link) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
                std::fs::hard_link(&received, &link)?;
                paths.push(link);
            }
            self.engine.ingest(cf, &paths)?;
        }
        tracing::info!(region_id = key.region_id, index = key.index, term = key.term, files = data.files.len(), "snapshot applied");
        Ok(())
    }
}
