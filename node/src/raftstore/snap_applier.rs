//! [`SnapApplier`]: applies received snapshots' data on its own thread.
//!
//! Replacing a region's data (range deletes, then ingesting the snapshot's SST
//! files: [`SnapManager::apply`]) takes as long as the files are big. On the
//! store thread it would stall every region of the store for that long; here
//! the store thread only hands the job over and goes on. The store records
//! the peer `APPLYING` first (in the round's synced batch); until the job is
//! reported finished ([`SnapApplier::finished`], polled at the start of every
//! round) the peer takes part in Raft but applies no entry, serves no read and
//! proposes nothing; then the store records `NORMAL` and applies the entries
//! that waited.
//!
//! Jobs run one at a time, in the order given. A crash mid-job is harmless:
//! the peer is still `APPLYING` on disk and is applied again when it loads.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use shoal_proto::SnapshotData;

use crate::error::{Error, Result};
use crate::snap::SnapManager;

/// A finished job: the region, and whether its data is in place.
pub type Finished = (u64, Result<()>);

pub struct SnapApplier {
    jobs: Option<Sender<(u64, SnapshotData)>>,
    finished: Receiver<Finished>,
    /// Jobs seen finished while [`SnapApplier::wait_for`] waited for another.
    early: VecDeque<Finished>,
    thread: Option<JoinHandle<()>>,
}

impl SnapApplier {
    pub fn start(snap: Arc<SnapManager>, store_id: u64) -> SnapApplier {
        let (jobs, queue) = mpsc::channel::<(u64, SnapshotData)>();
        let (done, finished) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("snap-apply-{store_id}"))
            .spawn(move || {
                for (region_id, data) in queue {
                    if done.send((region_id, snap.apply(&data))).is_err() {
                        return;
                    }
                }
            })
            .expect("spawning the snapshot apply thread");
        SnapApplier { jobs: Some(jobs), finished, early: VecDeque::new(), thread: Some(thread) }
    }

    /// Queues the apply of `data` to `region_id`'s range.
    pub fn submit(&mut self, region_id: u64, data: SnapshotData) -> Result<()> {
        let jobs = self.jobs.as_ref().ok_or_else(|| Error::Internal("the snapshot apply thread has stopped".into()))?;
        jobs.send((region_id, data)).map_err(|_| Error::Internal("the snapshot apply thread has stopped".into()))
    }

    /// Jobs finished since the last call; never waits.
    pub fn finished(&mut self) -> Vec<Finished> {
        let mut out: Vec<Finished> = self.early.drain(..).collect();
        out.extend(std::iter::from_fn(|| self.finished.try_recv().ok()));
        out
    }

    /// Waits until `region_id`'s job (queued earlier) has finished; returns
    /// its result. Other jobs finishing meanwhile are kept for
    /// [`SnapApplier::finished`].
    pub fn wait_for(&mut self, region_id: u64) -> Result<()> {
        if let Some(at) = self.early.iter().position(|(id, _)| *id == region_id) {
            return self.early.remove(at).map_or(Ok(()), |(_, r)| r);
        }
        loop {
            match self.finished.recv() {
                Ok((id, result)) if id == region_id => return result,
                Ok(other) => self.early.push_back(other),
                Err(_) => return Err(Error::Internal("the snapshot apply thread has stopped".into())),
            }
        }
    }
}

impl Drop for SnapApplier {
    /// Lets the job under way finish (a store stopping mid-ingest would redo
    /// it on its next start anyway) and stops the thread.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
