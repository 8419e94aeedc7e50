//! The NetworkPolicy `<name>` (with `spec.networkPolicy.enabled`): ingress to
//! the stores only from
//!
//! - the cluster's own stores, on the peer and client ports (Raft, snapshots,
//!   joins, heartbeats);
//! - the operator's pods, on the peer and client ports (its Admin and Meta
//!   calls): the namespace and labels it runs with ([`OperatorPeer`]);
//! - `clients`, on the client port only (default: every pod of the
//!   namespace), which serves Kv, Meta's lookups and Status but not Raft,
//!   snapshots, Admin or the stores' own Meta calls;
//! - `metrics`, on the status port (default: anyone: probes and scrapers).
//!
//! Egress is not restricted. With `spec.tls`, mutual TLS and the per-service
//! Common Name checks guard the peer port as well.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec as PolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::names::{CLIENT_PORT, GRPC_PORT, STATUS_PORT};
use super::{BuildInput, meta};

/// Where the operator runs: its namespace and its pods' labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorPeer {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

impl OperatorPeer {
    /// `labels` as `k=v,k=v` (the chart passes its selector labels so).
    pub fn parse(namespace: &str, labels: &str) -> Result<OperatorPeer, String> {
        let mut out = BTreeMap::new();
        for pair in labels.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| format!("operator pod label {pair:?} is not key=value"))?;
            out.insert(k.trim().to_string(), v.trim().to_string());
        }
        if out.is_empty() {
            return Err("the operator's pod labels are empty".into());
        }
        Ok(OperatorPeer { namespace: namespace.to_string(), labels: out })
    }
}

fn port(n: i32) -> NetworkPolicyPort {
    NetworkPolicyPort { port: Some(IntOrString::Int(n)), protocol: Some("TCP".into()), ..Default::default() }
}

fn pods(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector { match_labels: Some(labels), ..Default::default() }
}

/// The policy, when the spec asks for one.
pub fn network_policy(input: &BuildInput<'_>, operator: &OperatorPeer) -> Option<NetworkPolicy> {
    let spec = input.kvc.spec.network_policy.as_ref().filter(|n| n.enabled)?;
    let names = &input.names;
    let stores = NetworkPolicyPeer { pod_selector: Some(pods(names.selector_labels())), ..Default::default() };
    let the_operator = NetworkPolicyPeer {
        namespace_selector: Some(pods(BTreeMap::from([("kubernetes.io/metadata.name".to_string(), operator.namespace.clone())]))),
        pod_selector: Some(pods(operator.labels.clone())),
        ..Default::default()
    };
    let namespace = NetworkPolicyPeer { pod_selector: Some(LabelSelector::default()), ..Default::default() };
    let clients = spec.clients.clone().unwrap_or_else(|| vec![namespace]);
    let ingress = vec![
        NetworkPolicyIngressRule { from: Some(vec![stores, the_operator]), ports: Some(vec![port(GRPC_PORT), port(CLIENT_PORT)]) },
        NetworkPolicyIngressRule { from: Some(clients), ports: Some(vec![port(CLIENT_PORT)]) },
        // `from` left out: any source.
        NetworkPolicyIngressRule { from: spec.metrics.clone(), ports: Some(vec![port(STATUS_PORT)]) },
    ];
    Some(NetworkPolicy {
        metadata: meta(input, names.statefulset(), names.labels()),
        spec: Some(PolicySpec {
            pod_selector: Some(pods(names.selector_labels())),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(ingress),
            ..Default::default()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_labels_parse_from_the_charts_form() {
        let op =
            OperatorPeer::parse("shoal-system", "app.kubernetes.io/name=shoal-operator, app.kubernetes.io/instance=r").expect("labels");
        assert_eq!(op.labels.len(), 2);
        assert_eq!(op.labels["app.kubernetes.io/instance"], "r");
        assert!(OperatorPeer::parse("ns", "").is_err());
        assert!(OperatorPeer::parse("ns", "novalue").is_err());
    }
}
