//! The optional `monitoring.coreos.com/v1` ServiceMonitor (Prometheus
//! Operator) scraping every store's `/metrics` through the client Service.
//! There is no Rust type for it in k8s-openapi, so it is built as JSON.

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
            "selector": { "matchLabels": input.names.labels() },
            "namespaceSelector": { "matchNames": [input.names.namespace] },
            "endpoints": [endpoint],
        },
    }))
}
