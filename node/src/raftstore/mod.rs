//! The raftstore: Raft replication of regions, with no gRPC or RocksDB types.
//!
//! A store holds one [`peer::Peer`] per region it replicates; each peer is a
//! `raft::RawNode` over a [`peer_storage::PeerStorage`]. The [`store::Store`]
//! routes Raft messages and client requests to peers by region id and runs the
//! Ready round for all of them with group commit. The [`store_loop`] owns the
//! store on one thread and is the only way in from the outside: gRPC handlers and
//! the transport talk to it through a [`store_loop::StoreHandle`].
//!
//! A write: handler → `StoreHandle::write` → the region's leader peer proposes a
//! `RaftCmd` → the Ready round sends it to the followers and persists it (one
//! synced batch for all peers) meanwhile → once a quorum has it on disk, it is
//! committed → in the next round, applied into the data CFs with the apply
//! index in an unsynced batch written before that round's fsync → the handler
//! is answered.
//!
//! A linearizable read: handler → `StoreHandle::read_index` → reads of a round
//! share one ReadIndex → the leader confirms it still leads with a heartbeat
//! round → once the peer has applied the read index the handler reads RocksDB.
//!
//! Idle regions hibernate: a quiet region's peers stop ticking and a round
//! visits only the peers with work, so thousands of regions cost little when
//! idle; [`liveness`] wakes a region whose peer's store falls silent. The
//! [`entry_cache`] keeps each log's unapplied tail in memory.
//!
//! [`bootstrap`] writes the first state of a new store.

pub mod bootstrap;
pub mod entry_cache;
pub mod liveness;
pub mod logger;
pub mod peer;
pub mod peer_storage;
pub mod proposals;
pub mod snap_applier;
pub mod split_check;
pub mod store;
pub mod store_loop;

/// raft-rs settings shared by every peer of a store.
pub fn raft_config(election_tick: usize, heartbeat_tick: usize) -> raft::Config {
    raft::Config {
        election_tick,
        heartbeat_tick,
        max_size_per_msg: 1 << 20,
        max_inflight_msgs: 256,
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    }
}
