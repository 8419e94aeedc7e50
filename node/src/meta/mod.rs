//! Meta: the cluster's own metadata, kept in a Raft group of its own.
//!
//! The meta group is region [`META_REGION_ID`]: a Raft group like any other,
//! driven by the same store loop, whose peers live on the initial members of the
//! cluster. Its log carries `MetaCmd`s instead of mutations; [`state::MetaState`]
//! applies them into the `meta` CF — the store registry, the region directory
//! and the id allocator (region, peer and store ids all come from it). It has no
//! key range and never splits.
//!
//! Its leader serves the `Meta` gRPC service (`crate::server::meta`): reads wait
//! for a ReadIndex on the meta group (so they are linearizable), writes are
//! proposed to it. Stores report the regions they lead by heartbeat; the leader
//! merges the reports into the directory and answers with [`placement`] orders.

pub mod idle;
pub mod placement;
pub mod state;

use std::sync::{Arc, RwLock};

/// The Raft group (region id) that holds the cluster's metadata.
pub const META_REGION_ID: u64 = 1;

/// The meta state machine as this store has applied it, shared by the store loop
/// (which applies commands) and the `Meta` service (which reads it).
pub type SharedMeta = Arc<RwLock<state::MetaState>>;
