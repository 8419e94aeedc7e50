//! The operator's Prometheus metrics, served on `/metrics`:
//!
//! | metric | what |
//! |---|---|
//! | `shoal_operator_reconciles_total{result}` | reconcile rounds, `ok` or `error` |
//! | `shoal_operator_reconcile_errors_total{reason}` | failed rounds by reason (`invalid_spec`, `kube_api`, `conflict`, `cluster`, `refused`, ...) |
//! | `shoal_operator_reconcile_duration_seconds` | how long a round took |
//! | `shoal_operator_membership_operations_total{operation,outcome}` | join, drain, remove, delete_volume: `ok`, `refused` or `error` |
//! | `shoal_operator_leader` | 1 while this replica holds the leader Lease |

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

pub struct Metrics {
    registry: Registry,
    pub reconciles: IntCounterVec,
    pub errors: IntCounterVec,
    pub duration: Histogram,
    pub operations: IntCounterVec,
    pub leader: IntGauge,
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
        Ok(Metrics { registry, reconciles, errors, duration, operations, leader })
    }

    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            return format!("# encoding failed: {e}\n");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
