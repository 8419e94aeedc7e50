//! Shoal's gRPC protocol, generated from `proto/shoal.proto`.
//!
//! Five services: `Kv` (client reads and writes), `Raft` (store-to-store message
//! and snapshot streams), `Status` (regions and leaders), `Meta` (store
//! registry, region directory, ids, heartbeats) and `Admin` (store lifecycle). Raft messages are carried as opaque
//! bytes in raft-rs's own protobuf encoding, so this crate does not depend on raft.

#![allow(clippy::all)]

pub mod v1 {
    tonic::include_proto!("shoal.v1");
}

pub use v1::*;
