//! Snapshots over gRPC: the `Raft.Snapshot` stream, both ends.
//!
//! - Sending ([`send`]): [`spawn_sender`] takes each Raft `MsgSnapshot` the store
//!   produces, pins its generated files ([`crate::snap::SnapshotHold`]), opens a
//!   `Raft.Snapshot` stream to the target store, sends the header chunk (the
//!   `RaftMessage` itself), reads the receiver's resume point, streams the files
//!   from there in [`SnapSendConfig::chunk_size`] chunks ([`chunk`]: the raw
//!   length and CRC-32, and zstd when the rate limit rather than the CPU holds
//!   the send back) under a per-store rate limit ([`rate::RateLimiter`]),
//!   waits for the `done` ack, retries a broken stream from the new resume point,
//!   and reports the outcome (the store turns it into raft's `report_snapshot`).
//! - Receiving ([`receive`]): [`receive::receive`] checks the header, resumes or
//!   starts the files through a [`crate::snap::Receiving`], verifies every chunk
//!   and file, and once all are in hands the header to the store loop
//!   ([`SnapshotSink`]) and acks `done`.

pub mod chunk;
pub mod rate;
pub mod receive;
pub mod send;

pub use receive::{AckStream, SnapshotSink, receive};
pub use send::{AttemptStats, SendOutcome, SnapReport, send_snapshot, spawn_sender};

/// Smallest and largest chunk of file bytes (before compression).
pub const MIN_CHUNK_SIZE: usize = 1 << 20;
pub const MAX_CHUNK_SIZE: usize = 4 << 20;

/// How snapshots are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapSendConfig {
    /// File bytes per chunk, [`MIN_CHUNK_SIZE`]..=[`MAX_CHUNK_SIZE`].
    pub chunk_size: usize,
    /// Bytes on the wire per second for all sends of this store together; 0 = unlimited.
    pub max_bytes_per_sec: u64,
}

impl Default for SnapSendConfig {
    fn default() -> Self {
        SnapSendConfig { chunk_size: MIN_CHUNK_SIZE, max_bytes_per_sec: 100 << 20 }
    }
}

#[cfg(test)]
mod tests;
