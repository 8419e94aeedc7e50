//! Dereference: what exists for one cluster — its StatefulSet, ConfigMap, pods
//! and data volumes in Kubernetes, and its stores as the cluster reports them — turned
//! into the driver's [`Observed`].
//!
//! A pod that cannot be scheduled is looked at further ([`stranded`]): if its
//! volume is a PersistentVolume pinned to nodes by hostname and no Node with
//! such a `kubernetes.io/hostname` label exists any more, the volume is gone
//! with its node. That takes `get` on PersistentVolumes and Nodes and `list`
//! on Nodes (cluster-wide; the chart grants it); without it the pod is not
//! counted as stranded. Each running pod's Node also gives
//! its zone (`topology.kubernetes.io/zone`), which the store is labelled with.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::ListParams;
use kube::{Api, Client};
use shoal_client::ClientTls;

use crate::build::Names;
use crate::build::names::{CLUSTER_STATE_KEY, GRPC_PORT};
use crate::cluster;
use crate::error::Result;
use crate::membership::Observed;

/// Everything reconcile looked at this round.
#[derive(Clone, Debug)]
pub struct World {
    pub observed: Observed,
    /// The StatefulSet's `status.replicas` and `status.readyReplicas`.
    pub sts_status: (i32, i32),
    /// Where the cluster was asked (pod IPs), empty when no pod has one.
    pub endpoints: Vec<String>,
    /// The size the StatefulSet's volume claim template asks for.
    pub sts_storage: Option<String>,
}

pub async fn observe(client: &Client, names: &Names, now: i64, tls: Option<&ClientTls>) -> Result<World> {
    let ns = names.namespace.as_str();
    let sts = Api::<StatefulSet>::namespaced(client.clone(), ns).get_opt(&names.statefulset()).await?;
    let config = Api::<ConfigMap>::namespaced(client.clone(), ns).get_opt(&names.config_map()).await?;
    let formed = config.and_then(|c| c.data).is_some_and(|d| d.get(CLUSTER_STATE_KEY).is_some_and(|v| v == "existing"));
    let selector = ListParams::default().labels(&names.selector_string());
    let pods = Api::<Pod>::namespaced(client.clone(), ns).list(&selector).await?.items;
    let pvcs = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns).list(&selector).await?.items;

    let live_pods: Vec<&Pod> = pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
    let mut pod_ordinals: Vec<i32> = pods.iter().filter_map(|p| names.ordinal_of(p.metadata.name.as_deref()?)).collect();
    pod_ordinals.sort_unstable();
    let mut pvc_ordinals: Vec<i32> = pvcs
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let name = p.metadata.name.as_deref()?;
            let pod = name.strip_prefix("data-")?;
            names.ordinal_of(pod)
        })
        .collect();
    pvc_ordinals.sort_unstable();
    let endpoints = pod_endpoints(&live_pods);

    let stores = if endpoints.is_empty() {
        Err("no pod has an address yet".to_string())
    } else {
        match cluster::client(&endpoints, tls) {
            Ok(c) => cluster::stores(&c).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    };
    let sts_storage = sts.as_ref().and_then(claim_template_storage);
    let sts_status = sts.as_ref().and_then(|s| s.status.as_ref()).map(|s| (s.replicas, s.ready_replicas.unwrap_or(0))).unwrap_or((0, 0));
    Ok(World {
        observed: Observed {
            sts_replicas: sts.as_ref().map(|s| s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)),
            pods: pod_ordinals,
            pvcs: pvc_ordinals,
            stranded: stranded(client, names, &pods, &pvcs).await,
            pod_zones: pod_zones(client, names, &live_pods).await,
            stores,
            formed,
            now,
        },
        sts_status,
        endpoints,
        sts_storage,
    })
}

/// The gRPC (peer port) addresses of `pods` that have an IP.
pub fn pod_endpoints(pods: &[&Pod]) -> Vec<String> {
    pods.iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .filter(|ip| !ip.is_empty())
        .map(|ip| if ip.contains(':') { format!("[{ip}]:{GRPC_PORT}") } else { format!("{ip}:{GRPC_PORT}") })
        .collect()
}

/// Where a cluster's stores are reached now: its live pods' gRPC addresses.
pub async fn endpoints(client: &Client, names: &Names) -> Result<Vec<String>> {
    let selector = ListParams::default().labels(&names.selector_string());
    let pods = Api::<Pod>::namespaced(client.clone(), &names.namespace).list(&selector).await?.items;
    let live: Vec<&Pod> = pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
    Ok(pod_endpoints(&live))
}

/// Ordinals of pods that the scheduler cannot place because their volume is
/// pinned to nodes that no longer exist.
async fn stranded(client: &Client, names: &Names, pods: &[Pod], pvcs: &[PersistentVolumeClaim]) -> Vec<i32> {
    let mut out = Vec::new();
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none() && unschedulable(p)) {
        let Some(o) = pod.metadata.name.as_deref().and_then(|n| names.ordinal_of(n)) else { continue };
        let claim =
            pvcs.iter().find(|c| c.metadata.name.as_deref() == Some(names.pvc(o).as_str()) && c.metadata.deletion_timestamp.is_none());
        let Some(volume) = claim.and_then(|c| c.spec.as_ref()?.volume_name.clone()) else { continue };
        match volume_node_gone(client, &volume).await {
            Ok(true) => out.push(o),
            Ok(false) => {}
            Err(e) => tracing::warn!(pod = ?pod.metadata.name, %volume, error = %e, "cannot tell whether the volume's node is gone"),
        }
    }
    out
}

/// The Node label a pod's zone is read from.
pub const NODE_ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// The zone of each live pod's Node (pods not scheduled yet, and Nodes without
/// the label, are left out; a Node that cannot be read is logged and left out).
async fn pod_zones(client: &Client, names: &Names, pods: &[&Pod]) -> BTreeMap<i32, String> {
    let nodes = Api::<Node>::all(client.clone());
    let mut zone_of: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for pod in pods {
        let (Some(o), Some(node)) =
            (pod.metadata.name.as_deref().and_then(|n| names.ordinal_of(n)), pod.spec.as_ref().and_then(|s| s.node_name.clone()))
        else {
            continue;
        };
        if !zone_of.contains_key(&node) {
            let zone = match nodes.get_opt(&node).await {
                Ok(n) => n.and_then(|n| n.metadata.labels?.get(NODE_ZONE_LABEL).cloned()),
                Err(e) => {
                    tracing::warn!(%node, error = %e, "cannot read the Node's zone");
                    None
                }
            };
            zone_of.insert(node.clone(), zone);
        }
        if let Some(zone) = zone_of[&node].clone() {
            out.insert(o, zone);
        }
    }
    out
}

/// Pending, and the scheduler said it cannot place it.
fn unschedulable(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else { return false };
    status.phase.as_deref() == Some("Pending")
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
}

/// Whether PersistentVolume `name` is pinned by hostname to nodes none of
/// which exists. Nodes are found by their `kubernetes.io/hostname` label,
/// which is what the volume names (it differs from the Node's name where the
/// kubelet overrides its hostname).
async fn volume_node_gone(client: &Client, name: &str) -> std::result::Result<bool, kube::Error> {
    let Some(pv) = Api::<PersistentVolume>::all(client.clone()).get_opt(name).await? else { return Ok(false) };
    let hosts = pinned_hosts(&pv);
    if hosts.is_empty() || hosts.iter().any(|h| h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))) {
        return Ok(false);
    }
    let selector = format!("kubernetes.io/hostname in ({})", hosts.join(","));
    let nodes = Api::<Node>::all(client.clone()).list_metadata(&ListParams::default().labels(&selector)).await?;
    Ok(nodes.items.is_empty())
}

/// The hostnames a volume's required node affinity pins it to; empty unless
/// every term is a `kubernetes.io/hostname In (...)` (a local volume).
pub fn pinned_hosts(pv: &PersistentVolume) -> Vec<String> {
    let terms = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .map(|r| r.node_selector_terms.clone())
        .unwrap_or_default();
    let mut hosts = Vec::new();
    for term in &terms {
        let exprs = term.match_expressions.clone().unwrap_or_default();
        let pinned = !exprs.is_empty() && exprs.iter().all(|e| e.key == "kubernetes.io/hostname" && e.operator == "In");
        if !pinned || term.match_fields.as_ref().is_some_and(|f| !f.is_empty()) {
            return Vec::new();
        }
        hosts.extend(exprs.into_iter().flat_map(|e| e.values.unwrap_or_default()));
    }
    hosts
}

/// The size a StatefulSet's (first) volume claim template asks for.
pub fn claim_template_storage(sts: &StatefulSet) -> Option<String> {
    let template = sts.spec.as_ref()?.volume_claim_templates.as_ref()?.first()?;
    template.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?.get("storage").map(|q| q.0.clone())
}
