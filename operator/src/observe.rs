//! Dereference: what exists for one cluster — its StatefulSet, ConfigMap, pods
//! and data volumes in Kubernetes, and its stores as the cluster reports them — turned
//! into the driver's [`Observed`].

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
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
    let endpoints: Vec<String> = live_pods
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .filter(|ip| !ip.is_empty())
        .map(|ip| if ip.contains(':') { format!("[{ip}]:{GRPC_PORT}") } else { format!("{ip}:{GRPC_PORT}") })
        .collect();

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
            stores,
            formed,
            now,
        },
        sts_status,
        endpoints,
        sts_storage,
    })
}

/// The size a StatefulSet's (first) volume claim template asks for.
pub fn claim_template_storage(sts: &StatefulSet) -> Option<String> {
    let template = sts.spec.as_ref()?.volume_claim_templates.as_ref()?.first()?;
    template.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?.get("storage").map(|q| q.0.clone())
}
