//! The operator's Prometheus metrics, served on `/metrics`:
//!
//! | metric | what |
//! |---|---|
//! | `shoal_operator_reconciles_total{result}` | reconcile rounds, `ok` or `error` |
//! | `shoal_operator_reconcile_errors_total{reason}` | failed rounds by reason (`invalid_spec`, `kube_api`, `conflict`, `cluster`, `refused`, ...) |
//! | `shoal_operator_reconcile_duration_seconds` | how long a round took |
//! | `shoal_operator_membership_operations_total{operation,outcome}` | join, drain, cancel_drain, remove, delete_volume: `ok`, `refused` or `error` |
//! | `shoal_operator_leader` | 1 while this replica holds the leader Lease |
//! | `shoal_operator_cluster_desired_stores{namespace,cluster}` | `spec.replicas` |
//! | `shoal_operator_cluster_up_stores{namespace,cluster}` | stores Up, as last observed |
//! | `shoal_operator_cluster_progressing{namespace,cluster}` | 1 while a scaling or roll is under way (condition `Progressing`) |
//! | `shoal_operator_cluster_degraded{namespace,cluster}` | 1 while the condition `Degraded` is true |
//! | `shoal_operator_membership_in_progress{namespace,cluster,operation}` | 1 while a `scale_out`, `scale_in`, `drain` or `join` is under way |
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
    pub in_progress: IntGaugeVec,
}

/// The membership operations `shoal_operator_membership_in_progress` reports.
const OPERATIONS: [&str; 4] = ["scale_out", "scale_in", "drain", "join"];

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
        let in_progress = IntGaugeVec::new(
            Opts::new("shoal_operator_membership_in_progress", "1 while a membership operation of the KvCluster is under way"),
            &["namespace", "cluster", "operation"],
        )?;
        registry.register(Box::new(in_progress.clone()))?;
        Ok(Metrics {
            registry,
            reconciles,
            errors,
            duration,
            operations,
            leader,
            desired_stores,
            up_stores,
            progressing,
            degraded,
            in_progress,
        })
    }

    /// Sets the per-cluster gauges from the status a round wrote.
    pub fn observe_cluster(&self, namespace: &str, cluster: &str, desired: i32, status: &KvClusterStatus) {
        let labels = [namespace, cluster];
        let condition = |t: &str| status.conditions.iter().any(|c| c.type_ == t && c.status == "True") as i64;
        self.desired_stores.with_label_values(&labels).set(desired.into());
        self.up_stores.with_label_values(&labels).set(status.stores.iter().filter(|s| s.state == "Up").count() as i64);
        self.progressing.with_label_values(&labels).set(condition("Progressing"));
        self.degraded.with_label_values(&labels).set(condition("Degraded"));
        let scaling = status.scaling.as_ref();
        for (op, on) in OPERATIONS.into_iter().zip([
            scaling.is_some_and(|s| s.to > s.from),
            scaling.is_some_and(|s| s.to < s.from),
            status.drain.is_some(),
            status.join.is_some(),
        ]) {
            self.in_progress.with_label_values(&[namespace, cluster, op]).set(on.into());
        }
    }

    /// Drops the gauges of a deleted cluster.
    pub fn forget_cluster(&self, namespace: &str, cluster: &str) {
        for g in [&self.desired_stores, &self.up_stores, &self.progressing, &self.degraded] {
            let _ = g.remove_label_values(&[namespace, cluster]);
        }
        for op in OPERATIONS {
            let _ = self.in_progress.remove_label_values(&[namespace, cluster, op]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ScalingStatus, StoreProgressStatus};

    #[test]
    fn cluster_gauges_follow_the_status_and_go_with_the_cluster() {
        let m = Metrics::new().unwrap();
        let mut st = KvClusterStatus {
            scaling: Some(ScalingStatus { from: 5, to: 3, step: "draining store 5".into() }),
            drain: Some(StoreProgressStatus { store_id: 5, pod: "demo-4".into(), regions: 3, since: String::new() }),
            ..Default::default()
        };
        m.observe_cluster("prod", "demo", 3, &st);
        let text = m.encode();
        for line in [
            "shoal_operator_cluster_desired_stores{cluster=\"demo\",namespace=\"prod\"} 3",
            "shoal_operator_membership_in_progress{cluster=\"demo\",namespace=\"prod\",operation=\"scale_in\"} 1",
            "shoal_operator_membership_in_progress{cluster=\"demo\",namespace=\"prod\",operation=\"scale_out\"} 0",
            "shoal_operator_membership_in_progress{cluster=\"demo\",namespace=\"prod\",operation=\"drain\"} 1",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        st.scaling = None;
        st.drain = None;
        m.observe_cluster("prod", "demo", 3, &st);
        assert!(m.encode().contains("operation=\"scale_in\"} 0"), "done: back to 0");
        m.forget_cluster("prod", "demo");
        assert!(!m.encode().contains("cluster=\"demo\""), "a deleted cluster leaves no series");
    }
}
