//! The store's heartbeat task: reports to meta, checks for splits, and carries
//! out placement orders.
//!
//! Every `--heartbeat-interval-ms` it asks the store loop for the data regions
//! this store leads (with the bytes written since the last round), then:
//!
//! 1. split check — a region is measured ([`split_check::check`], off the store
//!    thread) when it is new to this task, its epoch changed, or enough was
//!    written since its last check; if it is over `--region-split-size` or
//!    `--region-split-keys`, the task takes a region id and one peer id per peer
//!    from meta's allocator and proposes the split through Raft;
//! 2. heartbeat — the store (address, capacity, used bytes, counts) and every led
//!    region (descriptor, term, approximate size and keys, bytes written) go to
//!    the meta leader in one `Heartbeat` call;
//! 3. orders — each `TransferLeader` in the answer goes to the store loop, which
//!    obeys it only if the region still has the epoch it was planned for.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_proto::{HeartbeatRequest, Region, RegionEpoch, RegionReport, SplitCmd, StoreMeta, StoreStats, operator};

use super::meta_client::MetaClient;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::raftstore::split_check::{self, SplitConfig};
use crate::raftstore::store_loop::StoreHandle;
use crate::storage::Engine;

/// Most regions measured in one round, so a heartbeat is never late for long.
const MAX_CHECKS_PER_ROUND: usize = 8;

pub struct Heartbeat {
    pub store: StoreHandle,
    pub engine: Arc<Engine>,
    pub me: StoreMeta,
    pub meta: MetaClient,
    pub interval: Duration,
    pub split: SplitConfig,
    pub metrics: Arc<Metrics>,
    pub data_dir: PathBuf,
}

/// What the task last measured of a region it leads.
#[derive(Default)]
struct Estimate {
    epoch: Option<RegionEpoch>,
    size: u64,
    keys: u64,
    /// Bytes written since the last measurement.
    dirty: u64,
}

impl Heartbeat {
    /// Runs until the store loop stops.
    pub async fn run(self) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut estimates: HashMap<u64, Estimate> = HashMap::new();
        let mut last = Instant::now();
        loop {
            ticker.tick().await;
            let Ok(reports) = self.store.leader_reports().await else { return };
            estimates.retain(|id, _| reports.iter().any(|r| r.region.id == *id));

            let mut checks = 0;
            for r in &reports {
                let e = estimates.entry(r.region.id).or_default();
                e.dirty += r.written_bytes;
                let stale = e.epoch != r.region.epoch || e.dirty >= self.split.split_size / 16;
                if !stale || checks >= MAX_CHECKS_PER_ROUND {
                    continue;
                }
                checks += 1;
                match self.check(&r.region).await {
                    Ok(c) => {
                        *e = Estimate { epoch: r.region.epoch, size: c.size, keys: c.keys, dirty: 0 };
                        if let Some(key) = c.split_key {
                            self.split(&r.region, key).await;
                        }
                    }
                    Err(err) => tracing::warn!(region = r.region.id, error = %err, "split check failed"),
                }
            }

            let interval_ms = last.elapsed().as_millis() as u64;
            last = Instant::now();
            let regions = reports
                .iter()
                .map(|r| {
                    let e = estimates.get(&r.region.id);
                    RegionReport {
                        region: Some(r.region.clone()),
                        term: r.term,
                        approximate_size: e.map_or(0, |e| e.size + e.dirty),
                        approximate_keys: e.map_or(0, |e| e.keys),
                        written_bytes: r.written_bytes,
                        pending_peers: vec![],
                    }
                })
                .collect();
            let req = HeartbeatRequest {
                store: Some(self.me.clone()),
                stats: Some(self.stats(reports.len())),
                regions,
                interval_ms,
                idle_peers: vec![],
            };
            match self.meta.heartbeat(req).await {
                Ok(resp) => {
                    self.metrics.heartbeats.with_label_values(&["ok"]).inc();
                    for op in resp.operators {
                        if let Some(operator::Kind::TransferLeader(t)) = op.kind
                            && let Some(to) = t.to
                        {
                            let _ = self.store.transfer_leader(op.region_id, op.epoch, to.id);
                        }
                    }
                }
                Err(e) => {
                    self.metrics.heartbeats.with_label_values(&["error"]).inc();
                    tracing::debug!(error = %e, "heartbeat to meta failed");
                }
            }
        }
    }

    async fn check(&self, region: &Region) -> Result<split_check::SplitCheck> {
        let (engine, region, cfg) = (self.engine.clone(), region.clone(), self.split);
        tokio::task::spawn_blocking(move || split_check::check(&engine, &region, cfg))
            .await
            .map_err(|e| Error::Internal(format!("split check task: {e}")))?
    }

    /// Proposes splitting `region` at `key` with fresh ids from meta.
    async fn split(&self, region: &Region, key: Vec<u8>) {
        let Some(epoch) = region.epoch else { return };
        let outcome = async {
            let first = self.meta.alloc_ids(region.peers.len() as u32 + 1).await?;
            let new_peer_ids = (1..=region.peers.len() as u64).map(|i| first + i).collect();
            self.store.split(region.id, epoch, SplitCmd { split_key: key.clone(), new_region_id: first, new_peer_ids }).await
        }
        .await;
        let label = match &outcome {
            Ok(_) => "ok",
            Err(Error::EpochNotMatch(..)) | Err(Error::NotLeader { .. }) => "stale",
            Err(_) => "error",
        };
        self.metrics.region_splits.with_label_values(&[label]).inc();
        if let Err(e) = outcome {
            tracing::info!(region = region.id, error = %e, "split not done");
        }
    }

    fn stats(&self, leaders: usize) -> StoreStats {
        let (capacity, available) = match rustix::fs::statvfs(&self.data_dir) {
            Ok(s) => (s.f_blocks * s.f_frsize, s.f_bavail * s.f_frsize),
            Err(_) => (0, 0),
        };
        StoreStats {
            capacity_bytes: capacity,
            available_bytes: available,
            used_bytes: self.engine.approximate_used_bytes(),
            region_count: 0, // meta counts regions from its directory
            leader_count: leaders as u64,
            last_heartbeat_ms: 0,
        }
    }
}
