//! The store's heartbeat task: reports to meta, checks for splits, and carries
//! out placement orders.
//!
//! Every `--heartbeat-interval-ms`, and sooner when something placement waits
//! for has happened (a membership change it ordered was applied, or a peer
//! reported pending caught up: [`Heartbeat::wanted`], at most every twentieth
//! of the interval), it asks the store loop for the regions this store leads
//! (with the bytes written since the last round), then:
//!
//! 1. split check — a region is measured ([`split_check::check`], off the store
//!    thread) when it is new to this task, its epoch changed, or enough was
//!    written since its last check; if it is over `--region-split-size` or
//!    `--region-split-keys`, the task takes a region id and one peer id per peer
//!    from meta's allocator and proposes the split through Raft, waiting at most
//!    [`SPLIT_DEADLINE`] for it (a region without quorum never applies it);
//! 2. heartbeat — the store (address, capacity, used bytes, counts) and its led
//!    regions (descriptor, term, approximate size and keys, bytes written,
//!    pending peers) go to the meta leader in one `Heartbeat` call: every region
//!    the first time this store reports to a meta leadership and every
//!    [`FULL_REPORT_INTERVAL`], otherwise only the regions whose report
//!    differs from the last one meta acknowledged ([`Baseline`]; an idle store
//!    with thousands of regions sends none). An answer with
//!    `full_report_wanted` (a new meta leader) drops the baseline;
//! 3. orders — each `TransferLeader` or `ChangePeers` in the answer goes to the
//!    store loop, which obeys it only if the region still has the epoch it was
//!    planned for; a `DestroyPeer` removes a peer this store reported idle that
//!    meta knows was removed from its region. The answer's store list updates
//!    the registry (stores that joined later, new addresses), kept on disk too.
//!
//! The meta group's region is reported like any other (placement moves its
//! peers too) but is never split.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_proto::{
    HeartbeatRequest, IdlePeer, Operator, Region, RegionEpoch, RegionReport, SplitCmd, StoreInfo, StoreMeta, StoreStats, operator,
};
use tokio::sync::Notify;

use super::meta_client::MetaClient;
use super::registry::StoreRegistry;
use crate::error::{Error, Result};
use crate::meta::META_REGION_ID;
use crate::metrics::Metrics;
use crate::raftstore::bootstrap;
use crate::raftstore::split_check::{self, SplitConfig};
use crate::raftstore::store_loop::StoreHandle;
use crate::storage::Engine;

/// The shortest time between two heartbeats, however often one is asked for
/// early: a twentieth of the interval.
fn min_gap(interval: Duration) -> Duration {
    interval / 20
}

/// Longest wait for a proposed split to apply: a region without quorum never
/// applies it, and the store's heartbeats must go on.
const SPLIT_DEADLINE: Duration = Duration::from_secs(10);
/// Most regions measured in one round, so a heartbeat is never late for long.
const MAX_CHECKS_PER_ROUND: usize = 8;
/// How often all led regions are reported, changed or not (a safety net:
/// a new meta leadership asks for them anyway).
pub const FULL_REPORT_INTERVAL: Duration = Duration::from_secs(300);

pub struct Heartbeat {
    pub store: StoreHandle,
    pub engine: Arc<Engine>,
    pub me: StoreMeta,
    pub meta: MetaClient,
    pub interval: Duration,
    /// Asks for a heartbeat before the interval is up (see [`min_gap`]).
    pub wanted: Arc<Notify>,
    pub split: SplitConfig,
    pub metrics: Arc<Metrics>,
    pub data_dir: PathBuf,
    pub registry: StoreRegistry,
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

/// The region reports a meta leadership (`epoch`) acknowledged last, by region.
#[derive(Debug)]
struct Baseline {
    epoch: u64,
    reports: HashMap<u64, RegionReport>,
    /// When the last full report was sent.
    full_at: Instant,
}

/// The regions to report out of `current`: all of them (`partial` false)
/// without a baseline or when a full report is due, else those whose report
/// differs from the baseline's. Returns (reports, partial, epoch).
fn to_report(baseline: Option<&Baseline>, current: &[RegionReport], now: Instant) -> (Vec<RegionReport>, bool, u64) {
    match baseline {
        Some(b) if now.saturating_duration_since(b.full_at) < FULL_REPORT_INTERVAL => {
            let changed = current.iter().filter(|r| r.region.as_ref().is_none_or(|g| b.reports.get(&g.id) != Some(*r))).cloned().collect();
            (changed, true, b.epoch)
        }
        _ => (current.to_vec(), false, 0),
    }
}

/// The baseline once meta has answered a report of `current` (`partial` or
/// full, sent at `sent_at`): none when meta wants everything next time or
/// takes only full reports (no epoch).
fn acknowledged(
    previous: Option<Baseline>,
    current: Vec<RegionReport>,
    partial: bool,
    sent_at: Instant,
    epoch: u64,
    full_report_wanted: bool,
) -> Option<Baseline> {
    if full_report_wanted || epoch == 0 {
        return None;
    }
    let full_at = match previous {
        Some(b) if partial => b.full_at,
        _ => sent_at,
    };
    Some(Baseline { epoch, reports: current.into_iter().filter_map(|r| Some((r.region.as_ref()?.id, r))).collect(), full_at })
}

impl Heartbeat {
    /// Runs until the store loop stops.
    pub async fn run(self) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut estimates: HashMap<u64, Estimate> = HashMap::new();
        let mut baseline: Option<Baseline> = None;
        let mut last = Instant::now();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = self.wanted.notified() => tokio::time::sleep_until((last + min_gap(self.interval)).into()).await,
            }
            let Ok(info) = self.store.leader_reports().await else { return };
            let reports = info.leaders;
            let led: HashSet<u64> = reports.iter().map(|r| r.region.id).collect();
            estimates.retain(|id, _| led.contains(id));

            let mut checks = 0;
            for r in reports.iter().filter(|r| r.region.id != META_REGION_ID) {
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
            let current: Vec<RegionReport> = reports
                .iter()
                .map(|r| {
                    let e = estimates.get(&r.region.id);
                    RegionReport {
                        region: Some(r.region.clone()),
                        term: r.term,
                        approximate_size: e.map_or(0, |e| e.size + e.dirty),
                        approximate_keys: e.map_or(0, |e| e.keys),
                        written_bytes: r.written_bytes,
                        pending_peers: r.pending_peers.clone(),
                    }
                })
                .collect();
            let idle_peers = info.idle.into_iter().map(|(region, peer_id)| IdlePeer { region: Some(region), peer_id }).collect();
            let sent_at = Instant::now();
            let (regions, partial, report_epoch) = to_report(baseline.as_ref(), &current, sent_at);
            let req = HeartbeatRequest {
                store: Some(self.me.clone()),
                stats: Some(self.stats(reports.len())),
                regions,
                interval_ms,
                idle_peers,
                partial,
                report_epoch,
            };
            match self.meta.heartbeat(req).await {
                Ok(resp) => {
                    self.metrics.heartbeats.with_label_values(&["ok"]).inc();
                    baseline = acknowledged(baseline, current, partial, sent_at, resp.report_epoch, resp.full_report_wanted);
                    for op in resp.operators {
                        self.obey(op);
                    }
                    self.learn_stores(resp.stores);
                }
                Err(e) => {
                    self.metrics.heartbeats.with_label_values(&["error"]).inc();
                    tracing::debug!(error = %e, "heartbeat to meta failed");
                }
            }
        }
    }

    /// Carries out one placement order. Membership changes run as tasks of
    /// their own: each waits until its change is applied (or refused).
    fn obey(&self, op: Operator) {
        match op.kind {
            Some(operator::Kind::TransferLeader(t)) => {
                if let Some(to) = t.to {
                    let _ = self.store.transfer_leader(op.region_id, op.epoch, to.id);
                }
            }
            Some(operator::Kind::ChangePeers(changes)) => {
                let (store, metrics, wanted) = (self.store.clone(), self.metrics.clone(), self.wanted.clone());
                tokio::spawn(async move {
                    let outcome = store.change_peers(op.region_id, op.epoch, changes.clone()).await;
                    let label = match &outcome {
                        Ok(_) => "applied",
                        Err(Error::EpochNotMatch(..)) | Err(Error::NotLeader { .. }) => "stale",
                        Err(_) => "refused",
                    };
                    metrics.conf_changes.with_label_values(&[label]).inc();
                    if outcome.is_ok() {
                        wanted.notify_one();
                    }
                    match outcome {
                        Ok(_) => tracing::info!(region = op.region_id, ?changes, "membership change applied"),
                        Err(e) => tracing::info!(region = op.region_id, error = %e, "membership change not done"),
                    }
                });
            }
            Some(operator::Kind::DestroyPeer(d)) => {
                let _ = self.store.destroy_peer(op.region_id, d.peer_id);
            }
            None => {}
        }
    }

    /// Adds stores meta knows to the registry (and to disk, for restarts).
    fn learn_stores(&self, stores: Vec<StoreMeta>) {
        let infos: Vec<StoreInfo> = stores.into_iter().map(StoreRegistry::info_of).collect();
        if self.registry.update(infos)
            && let Err(e) = bootstrap::save_stores(&self.engine, &self.registry.all())
        {
            tracing::warn!(error = %e, "cannot record the store registry");
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
            let split = SplitCmd { split_key: key.clone(), new_region_id: first, new_peer_ids };
            self.store.split(region.id, epoch, split, SPLIT_DEADLINE).await
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
        let used = self.engine.approximate_used_bytes();
        self.metrics.capacity_bytes.set(capacity as i64);
        self.metrics.available_bytes.set(available as i64);
        self.metrics.used_bytes.set(used as i64);
        StoreStats {
            capacity_bytes: capacity,
            available_bytes: available,
            used_bytes: used,
            region_count: 0, // meta counts regions from its directory
            leader_count: leaders as u64,
            last_heartbeat_ms: 0,
            requests_total: self.metrics.requests_total(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: u64, size: u64) -> RegionReport {
        RegionReport { region: Some(Region { id, ..Default::default() }), term: 5, approximate_size: size, ..Default::default() }
    }

    fn ids(reports: &[RegionReport]) -> Vec<u64> {
        reports.iter().map(|r| r.region.as_ref().unwrap().id).collect()
    }

    #[test]
    fn only_changed_regions_are_reported_to_the_leadership_that_saw_the_rest() {
        let now = Instant::now();
        let current = vec![report(1, 10), report(2, 20), report(3, 30)];
        let (sent, partial, epoch) = to_report(None, &current, now);
        assert_eq!((ids(&sent), partial, epoch), (vec![1, 2, 3], false, 0), "no baseline: everything");

        let base =
            Baseline { epoch: 7, reports: current.iter().map(|r| (r.region.as_ref().unwrap().id, r.clone())).collect(), full_at: now };
        let next = vec![report(1, 10), report(2, 25), report(3, 30), report(4, 0)];
        let (sent, partial, epoch) = to_report(Some(&base), &next, now);
        assert_eq!((ids(&sent), partial, epoch), (vec![2, 4], true, 7), "a grown region and a newly led one");
        let (sent, _, _) = to_report(Some(&base), &current, now + Duration::from_secs(1));
        assert!(sent.is_empty(), "nothing changed: nothing sent");

        let (sent, partial, epoch) = to_report(Some(&base), &current, now + FULL_REPORT_INTERVAL);
        assert_eq!((ids(&sent), partial, epoch), (vec![1, 2, 3], false, 0), "a full report is due");
    }

    #[test]
    fn a_meta_leader_asking_for_everything_or_without_an_epoch_gets_a_full_report_next() {
        let t0 = Instant::now();
        let current = vec![report(1, 10), report(2, 20)];
        let first = acknowledged(None, current.clone(), false, t0, 7, false).expect("a baseline");
        assert_eq!((first.epoch, first.full_at, first.reports.len()), (7, t0, 2));
        let t1 = t0 + Duration::from_secs(1);
        let next = acknowledged(Some(first), vec![report(1, 11), report(2, 20)], true, t1, 7, false).expect("a baseline");
        assert_eq!((next.full_at, next.reports[&1].approximate_size), (t0, 11), "a partial report keeps the time of the last full one");
        assert!(acknowledged(Some(next), current.clone(), true, t1, 8, true).is_none(), "a new leadership wants everything");
        assert!(acknowledged(None, current, false, t1, 0, false).is_none(), "a meta leader without partial reports");
    }
}
