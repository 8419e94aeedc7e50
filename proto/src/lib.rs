//! Shoal's gRPC protocol, generated from `proto/shoal.proto`.
//!
//! Three services: `Kv` (client reads and writes), `Raft` (store-to-store message
//! stream) and `Status` (regions and leaders). Raft messages are carried as opaque
//! bytes in raft-rs's own protobuf encoding, so this crate does not depend on raft.

#![allow(clippy::all)]

pub mod v1 {
    tonic::include_proto!("shoal.v1");
}

pub use v1::*;
