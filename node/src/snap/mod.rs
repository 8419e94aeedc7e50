//! Placeholder for the snapshot data plane (being built on branch `snap`).
#![allow(dead_code, unused_variables)]

use std::path::Path;
use std::sync::Arc;

use shoal_proto::{Region, SnapshotData, SnapshotKey};

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::storage::Engine;
use crate::storage::cf::CF_META;

pub struct SnapManager {
    engine: Arc<Engine>,
}

impl SnapManager {
    pub fn open(dir: &Path, engine: Arc<Engine>, metrics: Arc<Metrics>) -> Result<Arc<SnapManager>> {
        Ok(Arc::new(SnapManager { engine }))
    }
    pub fn request(&self, region_id: u64, min_index: u64) -> Option<raft::prelude::Snapshot> {
        None
    }
    pub fn generate(&self, region_id: u64) -> Result<raft::prelude::Snapshot> {
        Err(Error::Internal("no snapshots".into()))
    }
    pub fn is_received(&self, data: &SnapshotData) -> bool {
        false
    }
    pub fn apply(&self, data: &SnapshotData) -> Result<()> {
        Err(Error::Internal("no snapshots".into()))
    }
    pub fn release_received(&self, key: &SnapshotKey) {}
    pub fn transfer_local(&self, to: &SnapManager, data: &SnapshotData) -> Result<()> {
        Err(Error::Internal("no snapshots".into()))
    }
}

pub fn data_ranges(engine: &Engine, region: &Region) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    if region.id == crate::meta::META_REGION_ID {
        return vec![(CF_META.to_string(), vec![], vec![])];
    }
    engine.user_cfs().iter().map(|cf| (cf.clone(), region.start_key.clone(), region.end_key.clone())).collect()
}
