//! The operator's Prometheus metrics, served on `/metrics`:
//!
//! | metric | what |
//! |---|---|
//! | `shoal_operator_reconciles_total{result}` | reconcile rounds, `ok` or `error` |
//! | `shoal_operator_reconcile_errors_total{reason}` | failed rounds by reason (`invalid_spec`, `kube_api`, `conflict`, `cluster`, `refused`, ...) |
//! | `shoal_operator_reconcile_duration_seconds` | how long a round took |
//! | `shoal_operator_membership_operations_total{operation,outcome}` | join, drain, remove, delete_volume: `ok`, `refused` or `error` |
//! | `shoal_operator_leader` | 1 while this replica holds the leader Lease |
//! | `shoal_operator_cluster_desired_stores{namespace,cluster}` | `spec.replicas` |
//! | `shoal_operator_cluster_up_stores{namespace,cluster}` | stores Up, as last observed |
//! | `shoal_operator_cluster_progressing{namespace,cluster}` | 1 while a scaling or roll is under way (condition `Progressing`) |
//! | `shoal_operator_cluster_degraded{namespace,cluster}` | 1 while the condition `Degraded` is true |
//!
//! The per-cluster gauges are set at the end of every round and dropped when
//! the cluster is deleted.

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::crd::KvClusterStatus;

pub struct Metrics {
    registry: Registry,
    pub reconciles: IntCounterVec,
    pub errors: IntCounterVec,
    pub duration: Histogram,
    pub operations: IntCounterVec,
    pub leader: IntGauge,
    pub desired_stores: IntGaugeVec,
    pub up_stores: IntGaugeVec,
    pub progressing: IntGaugeVec,
    pub degraded: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(Opts::new("shoal_operator_reconciles_total", "Reconcile rounds by result"), &["result"])?;
        let errors =
            IntCounterVec::new(Opts::new("shoal_operator_reconcile_errors_total", "Failed reconcile rounds by reason"), &["reason"])?;
        let duration = Histogram::with_opts(
            HistogramOpts::new("shoal_operator_reconcile_duration_seconds", "Duration of one reconcile round")
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
        )?;
        let operations = IntCounterVec::new(
            Opts::new("shoal_operator_membership_operations_total", "Membership steps carried out, by operation and outcome"),
            &["operation", "outcome"],
        )?;
        let leader = IntGauge::new("shoal_operator_leader", "1 while this replica holds the leader Lease")?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(operations.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        let per_cluster = |name: &str, help: &str| -> Result<IntGaugeVec, prometheus::Error> {
            let g = IntGaugeVec::new(Opts::new(name, help), &["namespace", "cluster"])?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let desired_stores = per_cluster("shoal_operator_cluster_desired_stores", "Stores the KvCluster asks for (spec.replicas)")?;
        let up_stores = per_cluster("shoal_operator_cluster_up_stores", "Stores Up in the KvCluster, as last observed")?;
        let progressing = per_cluster("shoal_operator_cluster_progressing", "1 while the KvCluster's condition Progressing is true")?;
        let degraded = per_cluster("shoal_operator_cluster_degraded", "1 while the KvCluster's condition Degraded is true")?;
        Ok(Metrics { registry, reconciles, errors, duration, operations, leader, desired_stores, up_stores, progressing, degraded })
    }

    /// Sets the per-cluster gauges from the status a round wrote.
    pub fn observe_cluster(&self, namespace: &str, cluster: &str, desired: i32, status: &KvClusterStatus) {
        let labels = [namespace, cluster];
        let condition = |t: &str| status.conditions.iter().any(|c| c.type_ == t && c.status == "True") as i64;
        self.desired_stores.with_label_values(&labels).set(desired.into());
        self.up_stores.with_label_values(&labels).set(status.stores.iter().filter(|s| s.state == "Up").count() as i64);
        self.progressing.with_label_values(&labels).set(condition("Progressing"));
        self.degraded.with_label_values(&labels).set(condition("Degraded"));
    }

    /// Drops the gauges of a deleted cluster.
    pub fn forget_cluster(&self, namespace: &str, cluster: &str) {
        for g in [&self.desired_stores, &self.up_stores, &self.progressing, &self.degraded] {
            let _ = g.remove_label_values(&[namespace, cluster]);
        }
    }

    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            return format!("# encoding failed: {e}\n");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
