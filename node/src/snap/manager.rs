//! [`SnapManager`]: the snapshot directory and the snapshots in it.
//!
//! Generation: [`SnapManager::request`] (raft-rs's `Storage::snapshot`, on the
//! store thread) only looks at memory: it returns a ready snapshot that is new
//! enough, or queues the region for the generator threads (at most one job per
//! region) and returns `None`. [`GENERATORS`] threads take jobs from that one
//! queue, so a store seeding several learners builds that many snapshots at
//! once. Each runs [`SnapManager::generate`], tells the store
//! ([`SnapManager::on_generated`]: raft-rs would otherwise ask again only at
//! the follower's next heartbeat answer), then collects garbage; they also
//! wake every [`GC_INTERVAL`] to collect.
//!
//! Lifetime of generated snapshots: a send pins its snapshot with
//! [`SnapManager::hold`] (a [`SnapshotHold`]); unpinned ones are deleted when a
//! newer one of the same region exists (after a short grace, so a snapshot raft
//! has just been handed is not pulled from under its send), or after
//! [`MAX_GENERATED_AGE`]. Nothing generated survives a restart.
//!
//! Received files (see [`super::recv`]) are kept until
//! [`SnapManager::release_received`], so a crash while applying can redo the
//! apply; abandoned partial files go after [`MAX_PARTIAL_IDLE`], and received
//! ones never released after [`MAX_RECEIVED_AGE`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

use raft::prelude::Snapshot;
use shoal_proto::{RegionEpoch, SnapshotData, SnapshotKey};

use super::files;
use super::generate::{Generated, generate};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::storage::Engine;

/// Generated snapshots older than this are deleted once no send holds them.
pub const MAX_GENERATED_AGE: Duration = Duration::from_secs(600);
/// An older snapshot of a region handed out this recently is kept even when a
/// newer one exists: its send may be about to start.
const HANDED_OUT_GRACE: Duration = Duration::from_secs(30);
/// Partial received files untouched this long belong to a stream that is gone.
pub const MAX_PARTIAL_IDLE: Duration = Duration::from_secs(600);
/// Received snapshots never released (raft dropped them as stale) go after this.
pub const MAX_RECEIVED_AGE: Duration = Duration::from_secs(3600);
/// How often the generator threads collect garbage when idle.
const GC_INTERVAL: Duration = Duration::from_secs(60);
/// Snapshots generated at once per store.
pub const GENERATORS: usize = 2;

struct GeneratedSnap {
    key: SnapshotKey,
    /// The region's epoch at the snapshot's index: once the region splits or
    /// changes its peers, the snapshot describes a region that is gone.
    epoch: Option<RegionEpoch>,
    snapshot: Snapshot,
    files: Vec<PathBuf>,
    created: Instant,
    handed_out: Option<Instant>,
    /// Sends holding it.
    holds: usize,
}

/// Called with a region id when its snapshot is ready.
pub type OnGenerated = Box<dyn Fn(u64) + Send + Sync>;

#[derive(Default)]
struct State {
    generated: HashMap<u64, Vec<GeneratedSnap>>,
    /// Regions queued for (or in) generation.
    generating: HashSet<u64>,
}

/// The snapshot directory of a store: generation, sending, receiving and applying.
pub struct SnapManager {
    pub(super) dir: PathBuf,
    pub(super) engine: Arc<Engine>,
    pub(super) metrics: Arc<Metrics>,
    state: Mutex<State>,
    /// Snapshots being received, by (from store, key): one stream at a time each.
    pub(super) receiving: Arc<Mutex<HashSet<(u64, SnapshotKey)>>>,
    jobs: Mutex<Sender<u64>>,
    /// When the received files were last swept (by whichever generator thread).
    last_sweep: Mutex<Instant>,
    seq: std::sync::atomic::AtomicU64,
    /// Failpoint: while set, applies wait (see [`SnapManager::hold_applies`]).
    pub(super) apply_gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
    on_generated: Mutex<Option<OnGenerated>>,
}

/// While alive, snapshot applies on this store wait; dropping it lets them go.
pub struct ApplyHold {
    gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
}

impl Drop for ApplyHold {
    fn drop(&mut self) {
        *lock(&self.gate.0) = false;
        self.gate.1.notify_all();
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Pins a generated snapshot while a send reads its files.
pub struct SnapshotHold {
    mgr: Arc<SnapManager>,
    key: SnapshotKey,
    files: Vec<PathBuf>,
}

impl SnapshotHold {
    /// Path of the `n`-th file of the snapshot's `SnapshotData.files`.
    pub fn file(&self, n: usize) -> Option<&Path> {
        self.files.get(n).map(PathBuf::as_path)
    }
}

impl Drop for SnapshotHold {
    fn drop(&mut self) {
        let mut st = lock(&self.mgr.state);
        if let Some(g) = st.generated.get_mut(&self.key.region_id).and_then(|v| v.iter_mut().find(|g| g.key == self.key)) {
            g.holds = g.holds.saturating_sub(1);
        }
    }
}

impl SnapManager {
    /// Failpoint for tests: a slow snapshot apply. Applies wait until the hold
    /// is dropped, or fail after [`super::apply::APPLY_HOLD_LIMIT`].
    pub fn hold_applies(&self) -> ApplyHold {
        *lock(&self.apply_gate.0) = true;
        ApplyHold { gate: self.apply_gate.clone() }
    }

    /// Opens the snapshot directory `dir` (creating it), removes what an earlier
    /// run left that is never needed again (generated snapshots, partial and
    /// temporary files; received snapshots stay for a redo of their apply), and
    /// starts the generator threads.
    pub fn open(dir: &Path, engine: Arc<Engine>, metrics: Arc<Metrics>) -> Result<Arc<SnapManager>> {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name().to_str().is_some_and(files::is_leftover) {
                std::fs::remove_file(entry.path())?;
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let mgr = Arc::new(SnapManager {
            dir: dir.to_path_buf(),
            engine,
            metrics,
            state: Mutex::new(State::default()),
            receiving: Arc::default(),
            jobs: Mutex::new(tx),
            last_sweep: Mutex::new(Instant::now()),
            seq: Default::default(),
            apply_gate: Arc::default(),
            on_generated: Mutex::new(None),
        });
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..GENERATORS {
            let (weak, rx) = (Arc::downgrade(&mgr), rx.clone());
            std::thread::Builder::new().name("snap-gen".into()).spawn(move || generator(weak, &rx))?;
        }
        Ok(mgr)
    }

    /// Calls `f` with the region id each time a generation succeeds.
    pub fn on_generated(&self, f: OnGenerated) {
        *lock(&self.on_generated) = Some(f);
    }

    /// The snapshot directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store's metrics (snapshot counters live there).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// For raft-rs's `Storage::snapshot`: a generated snapshot of `region_id` at
    /// `min_index` or later, of the region as it is now (`epoch`), if one is
    /// ready (the newest), otherwise `None` after scheduling a generation. A
    /// snapshot from before a split would carry the old, wider range, which a
    /// store holding the split-off region must refuse: such a snapshot is
    /// never handed out again. Never touches the disk.
    pub fn request(&self, region_id: u64, min_index: u64, epoch: Option<RegionEpoch>) -> Option<Snapshot> {
        let mut st = lock(&self.state);
        let ready = st.generated.get_mut(&region_id).and_then(|snaps| {
            snaps
                .iter_mut()
                .filter(|g| g.key.index >= min_index && g.epoch == epoch && g.created.elapsed() < MAX_GENERATED_AGE)
                .max_by_key(|g| g.key.index)
        });
        if let Some(g) = ready {
            g.handed_out = Some(Instant::now());
            return Some(g.snapshot.clone());
        }
        if st.generating.insert(region_id) && lock(&self.jobs).send(region_id).is_err() {
            st.generating.remove(&region_id);
        }
        None
    }

    /// Generates a snapshot of `region_id` now (blocking on I/O) and keeps it
    /// for sending.
    pub fn generate(&self, region_id: u64) -> Result<Snapshot> {
        let started = Instant::now();
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let g: Generated = match generate(&self.engine, &self.dir, region_id, seq) {
            Ok(g) => g,
            Err(e) => {
                self.metrics.snapshots.with_label_values(&["failed"]).inc();
                return Err(e);
            }
        };
        self.metrics.snapshots.with_label_values(&["generated"]).inc();
        self.metrics.snapshot_duration.with_label_values(&["generate"]).observe(started.elapsed().as_secs_f64());
        let mut st = lock(&self.state);
        let snaps = st.generated.entry(region_id).or_default();
        if let Some(existing) = snaps.iter().find(|s| s.key == g.key) {
            // The same point again (nothing applied since): keep the one a send may use.
            let snapshot = existing.snapshot.clone();
            drop(st);
            for f in &g.files {
                let _ = std::fs::remove_file(f);
            }
            return Ok(snapshot);
        }
        tracing::info!(region_id, index = g.key.index, term = g.key.term, files = g.files.len(), "snapshot generated");
        snaps.push(GeneratedSnap {
            key: g.key,
            epoch: g.epoch,
            snapshot: g.snapshot.clone(),
            files: g.files,
            created: Instant::now(),
            handed_out: None,
            holds: 0,
        });
        Ok(g.snapshot)
    }

    /// Pins the generated snapshot `key` for a send; `None` if it is gone.
    pub fn hold(self: &Arc<Self>, key: &SnapshotKey) -> Option<SnapshotHold> {
        let mut st = lock(&self.state);
        let g = st.generated.get_mut(&key.region_id)?.iter_mut().find(|g| g.key == *key)?;
        g.holds += 1;
        Some(SnapshotHold { mgr: self.clone(), key: *key, files: g.files.clone() })
    }

    /// Deletes generated snapshots nobody needs (see the module docs), and with
    /// `sweep` also abandoned partial and old received files.
    pub fn collect_garbage(&self, sweep: bool) {
        let mut doomed: Vec<PathBuf> = Vec::new();
        {
            let mut st = lock(&self.state);
            for snaps in st.generated.values_mut() {
                let newest = snaps.iter().map(|g| g.key.index).max().unwrap_or(0);
                snaps.retain_mut(|g| {
                    let superseded = g.key.index < newest && g.handed_out.is_none_or(|t| t.elapsed() >= HANDED_OUT_GRACE);
                    let expired = g.created.elapsed() >= MAX_GENERATED_AGE;
                    let keep = g.holds > 0 || !(superseded || expired);
                    if !keep {
                        doomed.append(&mut g.files);
                    }
                    keep
                });
            }
            st.generated.retain(|_, v| !v.is_empty());
        }
        for f in doomed {
            if let Err(e) = std::fs::remove_file(&f) {
                tracing::warn!(path = %f.display(), error = %e, "cannot delete snapshot file");
            }
        }
        if sweep && let Err(e) = self.sweep_received() {
            tracing::warn!(error = %e, "cannot sweep the snapshot directory");
        }
    }

    fn sweep_received(&self) -> Result<()> {
        let now = SystemTime::now();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            let max_age = if name.ends_with(".part") {
                MAX_PARTIAL_IDLE
            } else if name.starts_with("rcv_") {
                MAX_RECEIVED_AGE
            } else {
                continue;
            };
            let age = entry.metadata()?.modified().ok().and_then(|m| now.duration_since(m).ok()).unwrap_or_default();
            if age >= max_age && !self.is_receiving(&name) {
                tracing::info!(file = %name, "deleting abandoned snapshot file");
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    fn is_receiving(&self, name: &str) -> bool {
        lock(&self.receiving).iter().any(|(_, key)| name.starts_with(&files::received_prefix(key)))
    }

    /// Whether every file of `data` is here, received whole and verified (reads
    /// the files: costs time in proportion to the snapshot's size).
    pub fn is_received(&self, data: &SnapshotData) -> bool {
        let Some(key) = data.key.as_ref() else { return false };
        data.files.iter().enumerate().all(|(n, f)| files::verify(&files::received(&self.dir, key, n), f.size, f.checksum))
    }

    /// Whether every file of `data` is here with its announced size: a cheap
    /// check (no reading) for the store thread. Files only get their received
    /// name after their checksum was verified, so presence means verified.
    pub fn has_received(&self, data: &SnapshotData) -> bool {
        let Some(key) = data.key.as_ref() else { return false };
        data.files.iter().enumerate().all(|(n, f)| std::fs::metadata(files::received(&self.dir, key, n)).is_ok_and(|m| m.len() == f.size))
    }

    /// Deletes the received files of `key` (once its apply is recorded).
    pub fn release_received(&self, key: &SnapshotKey) {
        let prefix = files::received_prefix(key);
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for entry in entries.flatten() {
            if entry.file_name().to_str().is_some_and(|n| n.starts_with(&prefix))
                && let Err(e) = std::fs::remove_file(entry.path())
            {
                tracing::warn!(path = %entry.path().display(), error = %e, "cannot delete received snapshot file");
            }
        }
    }

    /// Copies the generated files of `data` into `to`'s received area as if they
    /// had been streamed (checksums verified on the way). For tests and loopback.
    pub fn transfer_local(&self, to: &SnapManager, data: &SnapshotData) -> Result<()> {
        let key = data.key.ok_or_else(|| Error::InvalidArgument("snapshot data has no key".into()))?;
        let paths = {
            let st = lock(&self.state);
            st.generated
                .get(&key.region_id)
                .and_then(|v| v.iter().find(|g| g.key == key))
                .map(|g| g.files.clone())
                .ok_or_else(|| Error::Unavailable(format!("snapshot {key:?} is not held here")))?
        };
        let mut rx = to.start_receive(0, data)?;
        let mut buf = vec![0u8; 1 << 20];
        while let Some((n, offset)) = rx.next_needed() {
            use std::io::{Read, Seek, SeekFrom};
            let path = paths.get(n as usize).ok_or_else(|| Error::Internal(format!("snapshot {key:?} has no file {n}")))?;
            let mut f = std::fs::File::open(path)?;
            f.seek(SeekFrom::Start(offset))?;
            let len = f.read(&mut buf)?;
            if len == 0 {
                return Err(Error::Internal(format!("snapshot file {} is shorter than announced", path.display())));
            }
            rx.write(n, offset, &buf[..len])?;
        }
        rx.finish()
    }
}

/// One generator thread: one job at a time from the shared queue, garbage
/// collection in between.
fn generator(mgr: Weak<SnapManager>, jobs: &Mutex<Receiver<u64>>) {
    loop {
        // The lock is held only while waiting: the other threads queue on it.
        let job = lock(jobs).recv_timeout(GC_INTERVAL);
        let Some(mgr) = mgr.upgrade() else { return };
        match job {
            Ok(region_id) => {
                let generated = mgr.generate(region_id);
                lock(&mgr.state).generating.remove(&region_id);
                match generated {
                    Ok(_) => {
                        if let Some(f) = lock(&mgr.on_generated).as_ref() {
                            f(region_id);
                        }
                    }
                    Err(e) => tracing::warn!(region_id, error = %e, "snapshot generation failed"),
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let sweep = {
            let mut last = lock(&mgr.last_sweep);
            let due = last.elapsed() >= GC_INTERVAL;
            if due {
                *last = Instant::now();
            }
            due
        };
        mgr.collect_garbage(sweep);
    }
}
