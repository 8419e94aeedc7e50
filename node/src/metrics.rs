//! Prometheus metrics of one store, in a registry of its own (so several stores
//! can live in one test process). Served as text on the status address.
//!
//! [`Metrics`] holds what the store's code updates as it works; two collectors
//! read the rest when scraped: [`engine::EngineCollector`] (`shoal_engine_*`,
//! RocksDB's sizes, files, stalls and block cache) and
//! [`process::ProcessCollector`] (`process_*`). Gauges that only the meta
//! leader knows (`shoal_stores`, `shoal_placement_under_replicated_regions`)
//! are cleared on every other store when scraped, so that a sum or max over
//! the cluster sees one current value. `docs/OPERATIONS.md` lists them all.

pub mod engine;
pub mod process;

use std::sync::Arc;

use crate::storage::Engine;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// gRPC requests by method and status code.
    pub grpc_requests: IntCounterVec,
    /// gRPC request latency by method.
    pub grpc_duration: HistogramVec,
    /// Raft proposals by outcome: `proposed` (handed to a peer), `refused` (no
    /// region for the key), then `applied` or `failed` (dropped, stale, refused at apply).
    pub raft_proposals: IntCounterVec,
    /// Raft messages sent to other stores, and dropped for lack of a connection.
    pub raft_messages: IntCounterVec,
    pub region_commit_index: IntGaugeVec,
    pub region_applied_index: IntGaugeVec,
    pub region_term: IntGaugeVec,
    /// 1 on the store whose peer leads the region.
    pub region_is_leader: IntGaugeVec,
    pub leader_count: IntGauge,
    /// Region peers on this store that are learners (being seeded).
    pub learner_count: IntGauge,
    pub asleep_regions: IntGauge,
    pub region_count: IntGauge,
    /// Region logs truncated by log GC.
    pub raft_log_gc: IntCounter,
    /// Membership changes this store proposed as a region leader, by outcome.
    pub conf_changes: IntCounterVec,
    /// Duration of the store loop's synced write (group commit) per round.
    pub wal_sync_duration: Histogram,
    /// Duration of a store loop round that had Readies to handle (persist,
    /// send, apply, advance), the synced write included.
    pub round_duration: Histogram,
    /// Time a round spent applying committed entries (steps 4 and 8 of the
    /// Ready round, their engine writes included); rounds that applied nothing
    /// are not observed.
    pub apply_duration: Histogram,
    /// Raft messages received from other stores, by outcome: `received`
    /// (handed to the store loop), `misrouted` (meant for another store),
    /// `refused` (the store loop has stopped).
    pub raft_messages_received: IntCounterVec,
    /// How many peers had a Ready in one store loop round.
    pub ready_peers_per_round: Histogram,
    /// Splits this store proposed as a region leader, by outcome.
    pub region_splits: IntCounterVec,
    /// Heartbeats to meta, by outcome.
    pub heartbeats: IntCounterVec,
    /// Placement orders issued by this store while it led meta, by kind:
    /// transfer_leader, add_learner, promote_learner, remove_peer, destroy_peer.
    pub placement_operators: IntCounterVec,
    /// Regions short of replicas, as the meta leader last planned.
    pub under_replicated_regions: IntGauge,
    /// Snapshots by event: `generated`, `sent`, `received`, `applied`, `failed`.
    pub snapshots: IntCounterVec,
    /// Snapshot bytes on the wire (compressed chunk payloads), by direction: `sent`, `received`.
    pub snapshot_bytes: IntCounterVec,
    /// Snapshots being sent or received now, by stage: `send`, `receive`.
    pub snapshots_in_flight: IntGaugeVec,
    /// Snapshot durations by stage: `generate`, `send`, `receive`, `apply`.
    pub snapshot_duration: HistogramVec,
    /// Stores by shown state (DOWN included), as the meta leader last planned.
    pub stores: IntGaugeVec,
    /// TLS certificate reloads, by outcome: `ok`, `error` (old files kept).
    pub tls_reloads: IntCounterVec,
    /// TLS handshakes that failed or timed out on the gRPC port.
    pub tls_handshake_failures: IntCounter,
    /// Admin calls refused because the caller's certificate is not on
    /// `--admin-allowed-cn`.
    pub admin_denied: IntCounter,
    /// Raft and snapshot streams refused because the caller's certificate
    /// is not a store's (`--peer-allowed-cn`).
    pub peer_denied: IntCounter,
    /// 1 on the store whose peer leads the meta region (placement runs there).
    pub meta_leader: IntGauge,
    /// Times a region peer on this store became leader.
    pub leader_changes: IntCounter,
    /// Elections started by region peers on this store (became candidate).
    pub elections: IntCounter,
    /// The data directory's file system, as of the last heartbeat.
    pub capacity_bytes: IntGauge,
    pub available_bytes: IntGauge,
    /// Bytes the engine holds (SST files and memtables), as of the last heartbeat.
    pub used_bytes: IntGauge,
}

fn latency_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.000_05, 2.0, 18).unwrap_or_default()
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let m = Metrics {
            grpc_requests: IntCounterVec::new(
                Opts::new("shoal_grpc_requests_total", "gRPC requests handled, by method and status code"),
                &["method", "code"],
            )?,
            grpc_duration: HistogramVec::new(
                HistogramOpts::new("shoal_grpc_request_duration_seconds", "gRPC request latency, by method").buckets(latency_buckets()),
                &["method"],
            )?,
            raft_proposals: IntCounterVec::new(Opts::new("shoal_raft_proposals_total", "Raft proposals, by outcome"), &["outcome"])?,
            raft_messages: IntCounterVec::new(
                Opts::new("shoal_raft_messages_total", "Raft messages to other stores, by outcome"),
                &["outcome"],
            )?,
            region_commit_index: IntGaugeVec::new(
                Opts::new("shoal_region_commit_index", "Raft commit index of each region peer on this store"),
                &["region"],
            )?,
            region_applied_index: IntGaugeVec::new(
                Opts::new("shoal_region_applied_index", "Applied index of each region peer on this store"),
                &["region"],
            )?,
            region_term: IntGaugeVec::new(Opts::new("shoal_region_term", "Raft term of each region peer on this store"), &["region"])?,
            region_is_leader: IntGaugeVec::new(
                Opts::new("shoal_region_is_leader", "1 if this store's peer leads the region"),
                &["region"],
            )?,
            leader_count: IntGauge::new("shoal_store_leaders", "Regions whose leader is on this store")?,
            learner_count: IntGauge::new("shoal_store_learners", "Region peers on this store that are learners (being seeded)")?,
            asleep_regions: IntGauge::new(
                "shoal_store_hibernated_regions",
                "Regions whose peer on this store is asleep (hibernated: not ticking)",
            )?,
            region_count: IntGauge::new("shoal_store_regions", "Region peers on this store")?,
            raft_log_gc: IntCounter::new("shoal_raft_log_gc_total", "Region logs truncated by log GC")?,
            conf_changes: IntCounterVec::new(
                Opts::new("shoal_conf_changes_total", "Membership changes proposed by this store as region leader, by outcome"),
                &["outcome"],
            )?,
            wal_sync_duration: Histogram::with_opts(
                HistogramOpts::new("shoal_wal_sync_duration_seconds", "Duration of the store loop's synced RocksDB write per round")
                    .buckets(latency_buckets()),
            )?,
            round_duration: Histogram::with_opts(
                HistogramOpts::new("shoal_store_round_duration_seconds", "Duration of a store loop round that handled Readies")
                    .buckets(latency_buckets()),
            )?,
            apply_duration: Histogram::with_opts(
                HistogramOpts::new("shoal_apply_duration_seconds", "Time a store loop round spent applying committed entries")
                    .buckets(latency_buckets()),
            )?,
            raft_messages_received: IntCounterVec::new(
                Opts::new("shoal_raft_messages_received_total", "Raft messages received from other stores, by outcome"),
                &["outcome"],
            )?,
            ready_peers_per_round: Histogram::with_opts(
                HistogramOpts::new("shoal_store_ready_peers_per_round", "Peers with a Ready per store loop round")
                    .buckets(prometheus::exponential_buckets(1.0, 2.0, 12)?),
            )?,
            region_splits: IntCounterVec::new(
                Opts::new("shoal_region_splits_total", "Region splits proposed by this store, by outcome"),
                &["outcome"],
            )?,
            heartbeats: IntCounterVec::new(Opts::new("shoal_meta_heartbeats_total", "Heartbeats sent to meta, by outcome"), &["outcome"])?,
            placement_operators: IntCounterVec::new(
                Opts::new("shoal_placement_operators_total", "Placement orders issued by this store as meta leader, by kind"),
                &["kind"],
            )?,
            under_replicated_regions: IntGauge::new(
                "shoal_placement_under_replicated_regions",
                "Regions short of voters, as the meta leader last planned",
            )?,
            snapshots: IntCounterVec::new(Opts::new("shoal_snapshots_total", "Region snapshots, by event"), &["event"])?,
            snapshot_bytes: IntCounterVec::new(
                Opts::new("shoal_snapshot_bytes_total", "Snapshot bytes on the wire, by direction"),
                &["direction"],
            )?,
            snapshots_in_flight: IntGaugeVec::new(
                Opts::new("shoal_snapshots_in_flight", "Snapshots being sent or received now, by stage"),
                &["stage"],
            )?,
            snapshot_duration: HistogramVec::new(
                HistogramOpts::new("shoal_snapshot_duration_seconds", "Duration of snapshot stages, by stage")
                    .buckets(prometheus::exponential_buckets(0.001, 2.0, 20)?),
                &["stage"],
            )?,
            stores: IntGaugeVec::new(Opts::new("shoal_stores", "Stores by state, as the meta leader last planned"), &["state"])?,
            tls_reloads: IntCounterVec::new(Opts::new("shoal_tls_reloads_total", "TLS certificate reloads, by outcome"), &["outcome"])?,
            tls_handshake_failures: IntCounter::new(
                "shoal_tls_handshake_failures_total",
                "TLS handshakes on the gRPC (or, with --status-tls, status) port that failed or timed out",
            )?,
            admin_denied: IntCounter::new(
                "shoal_admin_denied_total",
                "Admin calls refused: the caller's certificate is not on --admin-allowed-cn",
            )?,
            peer_denied: IntCounter::new(
                "shoal_peer_denied_total",
                "Raft and snapshot streams refused: the caller's certificate is not a store's (--peer-allowed-cn)",
            )?,
            meta_leader: IntGauge::new("shoal_meta_leader", "1 on the store that leads the meta region (and runs placement)")?,
            leader_changes: IntCounter::new("shoal_raft_leader_changes_total", "Times a region peer on this store became leader")?,
            elections: IntCounter::new("shoal_raft_elections_total", "Elections started by region peers on this store")?,
            capacity_bytes: IntGauge::new("shoal_store_capacity_bytes", "Size of the data directory's file system")?,
            available_bytes: IntGauge::new("shoal_store_available_bytes", "Bytes free for the store on the data directory's file system")?,
            used_bytes: IntGauge::new("shoal_store_used_bytes", "Bytes the store's engine holds (SST files and memtables)")?,
            registry,
        };
        m.registry.register(Box::new(m.grpc_requests.clone()))?;
        m.registry.register(Box::new(m.grpc_duration.clone()))?;
        m.registry.register(Box::new(m.raft_proposals.clone()))?;
        m.registry.register(Box::new(m.raft_messages.clone()))?;
        m.registry.register(Box::new(m.region_commit_index.clone()))?;
        m.registry.register(Box::new(m.region_applied_index.clone()))?;
        m.registry.register(Box::new(m.region_term.clone()))?;
        m.registry.register(Box::new(m.region_is_leader.clone()))?;
        m.registry.register(Box::new(m.leader_count.clone()))?;
        m.registry.register(Box::new(m.learner_count.clone()))?;
        m.registry.register(Box::new(m.asleep_regions.clone()))?;
        m.registry.register(Box::new(m.region_count.clone()))?;
        m.registry.register(Box::new(m.raft_log_gc.clone()))?;
        m.registry.register(Box::new(m.conf_changes.clone()))?;
        m.registry.register(Box::new(m.wal_sync_duration.clone()))?;
        m.registry.register(Box::new(m.round_duration.clone()))?;
        m.registry.register(Box::new(m.raft_messages_received.clone()))?;
        m.registry.register(Box::new(m.apply_duration.clone()))?;
        m.registry.register(Box::new(m.ready_peers_per_round.clone()))?;
        m.registry.register(Box::new(m.region_splits.clone()))?;
        m.registry.register(Box::new(m.heartbeats.clone()))?;
        m.registry.register(Box::new(m.placement_operators.clone()))?;
        m.registry.register(Box::new(m.under_replicated_regions.clone()))?;
        m.registry.register(Box::new(m.snapshots.clone()))?;
        m.registry.register(Box::new(m.snapshot_bytes.clone()))?;
        m.registry.register(Box::new(m.snapshots_in_flight.clone()))?;
        m.registry.register(Box::new(m.snapshot_duration.clone()))?;
        m.registry.register(Box::new(m.stores.clone()))?;
        m.registry.register(Box::new(m.tls_reloads.clone()))?;
        m.registry.register(Box::new(m.tls_handshake_failures.clone()))?;
        m.registry.register(Box::new(m.admin_denied.clone()))?;
        m.registry.register(Box::new(m.peer_denied.clone()))?;
        m.registry.register(Box::new(m.meta_leader.clone()))?;
        m.registry.register(Box::new(m.leader_changes.clone()))?;
        m.registry.register(Box::new(m.elections.clone()))?;
        m.registry.register(Box::new(m.capacity_bytes.clone()))?;
        m.registry.register(Box::new(m.available_bytes.clone()))?;
        m.registry.register(Box::new(m.used_bytes.clone()))?;
        m.registry.register(Box::new(process::ProcessCollector::new()?))?;
        Ok(m)
    }

    /// gRPC requests served since start, every method and code together.
    pub fn requests_total(&self) -> u64 {
        use prometheus::core::Collector as _;
        let families = self.grpc_requests.collect();
        families.iter().flat_map(|f| f.get_metric()).map(|m| m.get_counter().get_value() as u64).sum()
    }

    /// Adds the engine's `shoal_engine_*` metrics, read when scraped.
    pub fn watch_engine(&self, engine: Arc<Engine>) -> Result<(), prometheus::Error> {
        self.registry.register(Box::new(engine::EngineCollector::new(engine)?))
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        if self.meta_leader.get() != 1 {
            self.stores.reset();
            self.under_replicated_regions.set(0);
        }
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
