//! The optional `monitoring.coreos.com/v1` ServiceMonitor (Prometheus
//! Operator) scraping every store's `/metrics` once: it selects only the peer
//! Service (label [`SERVICE_LABEL`](super::names::SERVICE_LABEL)` = peer`), which lists every pod, ready or
//! not; the client Service carries the same app labels and, selected too, would
//! scrape each store twice. Its targets get `job="shoal"` (the Services'
//! `app.kubernetes.io/name`), the job the alert rules and dashboard in
//! `monitoring/` expect. There is no Rust type for it in k8s-openapi, so it is
//! built as JSON.

use serde_json::{Value, json};

use super::{BuildInput, meta};

pub const API_VERSION: &str = "monitoring.coreos.com/v1";
pub const KIND: &str = "ServiceMonitor";

/// `None` unless `spec.monitoring.serviceMonitor.enabled`.
pub fn service_monitor(input: &BuildInput<'_>) -> Option<Value> {
    let sm = input.kvc.spec.monitoring.as_ref()?.service_monitor.as_ref().filter(|s| s.enabled)?;
    let mut labels = input.names.labels();
    labels.extend(sm.labels.clone());
    let metadata = meta(input, input.names.client_service(), labels);
    let mut endpoint = json!({ "port": "status", "path": "/metrics", "scheme": "http" });
    if let Some(interval) = &sm.interval {
        endpoint["interval"] = json!(interval);
    }
    Some(json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": {
            "jobLabel": "app.kubernetes.io/name",
            "selector": { "matchLabels": input.names.service_labels("peer") },
            "namespaceSelector": { "matchNames": [input.names.namespace] },
            "endpoints": [endpoint],
        },
    }))
}
