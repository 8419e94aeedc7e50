//! Online, consistent backups of a whole cluster, and restores into a new one.
//!
//! # The backup point
//!
//! Shoal has no multi-version timestamps, so a cut across regions is made by
//! holding writes still for a moment. [`create`] (the coordinator):
//!
//! 1. lists the regions (Meta) and asks each region's leader to fence it
//!    (`Backup.FenceRegion`, all at once): once a region's `BackupFenceCmd` is
//!    applied, every replica refuses its writes and splits (`ServerIsBusy`,
//!    which clients retry), and the leader keeps an engine snapshot of the
//!    region as fenced. Regions that split before they were fenced are found
//!    by listing again, until the fenced regions tile the key space;
//! 2. the moment the last fence is applied is the backup point: no region has
//!    taken a write since its own fence, and every region is fenced, so the
//!    snapshots together are the cluster's data at one instant. Every write
//!    acknowledged before fencing began is in the backup, and no write sent
//!    after the last fence was applied is (writes in between may or may not
//!    be, as with any instant between their start and their answer). The
//!    fences are lifted at once (`LiftFence`): writes stall for about one
//!    Raft round (the manifest records how long). If fencing cannot finish in
//!    [`FENCE_WITHIN`], every fence is lifted and the backup fails; a fence a
//!    dead coordinator leaves is lifted by its leader after 30 s;
//! 3. each region's kept snapshot is streamed as SST files
//!    (`Backup.ExportRegion`) and written to the destination with its SHA-256;
//! 4. `manifest.json` ([`manifest::Manifest`]) is written last: the regions as
//!    fenced, their files and checksums, and when fencing began and ended.
//!
//! # Restore
//!
//! [`restore`] reads the manifest (none: the backup is incomplete, refused),
//! downloads every file and checks its size and SHA-256 (any mismatch or
//! missing file: refused, before anything is written), checks that the target
//! cluster holds no keys in the backup's column families, then loads the files
//! into a scratch RocksDB and writes every pair through the cluster's normal
//! write path (`BatchWrite`, several batches in flight), so the new cluster
//! replicates and places the data as usual.
//!
//! Destinations are [`Location`]s (`file:///dir`, `s3://bucket/prefix`); the
//! catalog calls ([`list`], [`read_manifest`], [`delete`]) are in [`catalog`].

pub mod catalog;
mod create;
pub mod location;
pub mod manifest;
mod restore;

pub use catalog::{BackupSummary, delete, list, read_manifest};
pub use create::{FENCE_WITHIN, create};
pub use location::Location;
pub use manifest::Manifest;
pub use restore::{RestoreReport, restore};

use crate::ClientError;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A bad URL, name or option.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The destination (directory or object store) failed.
    #[error("backup storage: {0}")]
    Storage(String),
    #[error(transparent)]
    Cluster(#[from] ClientError),
    /// No manifest, or a file it names is missing: never restored.
    #[error("incomplete backup: {0}")]
    Incomplete(String),
    /// A file or the manifest does not match its checksum or does not parse.
    #[error("damaged backup: {0}")]
    Corrupt(String),
    /// A backup of that name exists already, or there is no backup of that name.
    #[error("{0}")]
    Exists(String),
    #[error("{0}")]
    NotFound(String),
    /// The restore target holds keys already.
    #[error("restore needs an empty cluster: {0}")]
    NotEmpty(String),
    /// The regions could not all be fenced, or one could not be exported.
    #[error("backup failed: {0}")]
    Failed(String),
}

impl From<object_store::Error> for BackupError {
    fn from(e: object_store::Error) -> Self {
        BackupError::Storage(e.to_string())
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
