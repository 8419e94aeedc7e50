//! The cluster's names, from the real EndpointSlices, as cluster DNS serves
//! them: for a Service `svc` in `ns`, `<svc>.<ns>.svc` resolves to a ready
//! endpoint, and each ready endpoint with a hostname (a StatefulSet pod under
//! its governing headless Service) is `<hostname>.<svc>.<ns>.svc` — both also
//! under `.cluster.local`. An endpoint is ready as the EndpointSlice
//! controller says: a Ready pod, or any pod with an IP behind a Service that
//! publishes not-ready addresses. `kubernetes.default.svc` is the API server.
//!
//! There is no kube-proxy: a ClusterIP Service's name resolves to one of its
//! endpoints rather than to its ClusterIP, so a client reaches the pod on the
//! Service's target port (Shoal's Services use the same number for both).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::ListParams;

use super::{Shared, TICK};

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Every name the cluster serves, with its address.
fn names(slices: &[EndpointSlice], apiserver: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut add = |name: String, addr: &str| {
        for suffix in ["svc", "svc.cluster.local"] {
            out.entry(format!("{name}.{suffix}")).or_insert_with(|| addr.to_string());
        }
    };
    add("kubernetes.default".into(), apiserver);
    for slice in slices {
        let Some(svc) = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) else { continue };
        let ns = slice.metadata.namespace.as_deref().unwrap_or("default");
        let mut endpoints: Vec<_> = slice.endpoints.iter().filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false)).collect();
        endpoints.sort_by_key(|e| e.hostname.clone());
        for e in endpoints {
            let Some(addr) = e.addresses.first() else { continue };
            add(format!("{svc}.{ns}"), addr);
            if let Some(host) = &e.hostname {
                add(format!("{host}.{svc}.{ns}"), addr);
            }
        }
    }
    out
}

pub async fn run(shared: Arc<Shared>) {
    let api: Api<EndpointSlice> = Api::all(shared.client.clone());
    loop {
        match api.list(&ListParams::default()).await {
            Ok(list) => {
                let names = names(&list.items, &shared.apiserver.0);
                if let Err(e) = shared.hosts.lock().expect("hosts file").set(&names) {
                    eprintln!("node agent: write the hosts file: {e}");
                }
            }
            Err(e) => eprintln!("node agent: list EndpointSlices: {e}"),
        }
        tokio::time::sleep(TICK).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_endpoints_get_names() {
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "demo-peer-x", "namespace": "default", "labels": { SERVICE_NAME_LABEL: "demo-peer" } },
            "addressType": "IPv4",
            "endpoints": [
                { "addresses": ["127.9.9.3"], "hostname": "demo-1", "conditions": { "ready": true } },
                { "addresses": ["127.9.9.2"], "hostname": "demo-0", "conditions": { "ready": true } },
                { "addresses": ["127.9.9.4"], "hostname": "demo-2", "conditions": { "ready": false } }
            ]
        }))
        .expect("an EndpointSlice");
        let n = names(&[slice], "127.0.0.1");
        assert_eq!(n["demo-0.demo-peer.default.svc"], "127.9.9.2");
        assert_eq!(n["demo-1.demo-peer.default.svc.cluster.local"], "127.9.9.3");
        assert!(!n.contains_key("demo-2.demo-peer.default.svc"), "not ready: no name");
        assert_eq!(n["demo-peer.default.svc"], "127.9.9.2", "the service name: the first ready endpoint");
        assert_eq!(n["kubernetes.default.svc"], "127.0.0.1");
    }
}
