//! The node's error type. Each variant knows whose fault it is: the client's
//! (`InvalidArgument`, `NotFound`, `FailedPrecondition`: the cluster is not in a
//! state that allows the request, and nothing was changed), a routing answer the client acts on (`NotLeader`,
//! `RegionNotFound`, `KeyNotInRegion`, `EpochNotMatch`, `ServerIsBusy`), a transient state
//! (`Unavailable`: nothing was done, retry), an ambiguous write
//! (`OutcomeUnknown`: it may or may not have been applied), or the system's
//! (`Engine`, `Raft`, `Internal`).

use shoal_proto::{Peer, Region};

use crate::storage::EngineError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request itself is wrong; retrying it unchanged cannot succeed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The thing the request names (a store, say) does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The cluster's state does not allow the request now (draining below the
    /// replication factor, removing a store that still holds peers); nothing changed.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// The caller may not make this call (an Admin call from a certificate
    /// not on `--admin-allowed-cn`).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// This store's peer is not the region's leader; `leader` is the last known one.
    #[error("region {region_id}: not leader")]
    NotLeader { region_id: u64, leader: Option<Peer> },
    #[error("no region on this store serves key {0:?}")]
    RegionNotFound(Vec<u8>),
    #[error("key {key:?} is not in region {region_id}")]
    KeyNotInRegion { key: Vec<u8>, region_id: u64 },
    /// The command was proposed under an older region epoch than the region has now.
    #[error("region epoch changed: {0}")]
    EpochNotMatch(String, Vec<Region>),
    /// Too many requests wait already; nothing was done, back off and retry.
    #[error("server is busy: {0}")]
    ServerIsBusy(String),
    /// Temporarily unable to serve (no leader yet, shutting down); retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A proposal was overwritten by another leader's entry; it was not applied.
    #[error("command dropped: {0}")]
    StaleCommand(String),
    /// A write was proposed but its fate is not known (timed out, or the store
    /// stopped while it waited): it may still be committed. Never retried blindly.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    #[error("storage: {0}")]
    Engine(#[from] EngineError),
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("internal: {0}")]
    Internal(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}
