//! Shoal's storage node.
//!
//! - [`storage`]: RocksDB with user and internal column families (the only RocksDB user).
//! - [`keys`]: every key layout.
//! - [`raftstore`]: regions replicated with raft-rs; the store loop.
//! - [`meta`]: the meta group's state machine and placement.
//! - [`server`]: gRPC services (`Kv`, `Raft`, `Status`, `Meta`, `Admin`), the Raft
//!   transport, the HTTP status endpoint, and the wiring that starts a node.
//! - [`snap`]: region snapshots on disk (generate, receive, apply by SST ingestion).
//! - [`config`]: flags and TOML configuration.
//! - [`metrics`]: Prometheus metrics.

pub mod config;
pub mod error;
pub mod keys;
pub mod meta;
pub mod metrics;
pub mod raftstore;
pub mod server;
pub mod snap;
pub mod storage;

pub use error::{Error, Result};
