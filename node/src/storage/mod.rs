//! The storage engine: one RocksDB per store, with user and internal column families.
//!
//! This is the only module that names RocksDB types. [`Engine`] opens the database
//! with every column family's options, and offers point reads, range scans and
//! atomic [`WriteBatch`]es across column families. [`cf`] holds the column family
//! names and the per-CF options users can set.

pub mod cf;
mod engine;

pub use engine::{CfStats, Engine, EngineError, EngineSnapshot, EngineStats, WriteBatch};
