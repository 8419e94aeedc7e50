//! The Node objects: each registered once with a Ready status, then kept
//! alive as a kubelet keeps it — its Lease in `kube-node-lease` renewed every
//! few seconds and its status (conditions' heartbeat times) every
//! [`STATUS_EVERY`], so that the node lifecycle controller never marks it
//! NotReady and evicts its pods — until the test loses it ([`delete`]).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::{Shared, TestNode};
use crate::k8s::hosts::NODE_IP;
use crate::k8s::time::{now_micro, now_rfc3339};

const LEASE_SECONDS: i32 = 40;
const RENEW_EVERY: Duration = Duration::from_secs(5);
const STATUS_EVERY: Duration = Duration::from_secs(20);

fn status(node: &str) -> serde_json::Value {
    let now = now_rfc3339();
    let cond = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({ "type": type_, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": now })
    };
    let resources = json!({ "cpu": "16", "memory": "64Gi", "pods": "110", "ephemeral-storage": "100Gi" });
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            cond("Ready", "True", "KubeletReady", "the shoal test node agent is running"),
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ],
        "addresses": [{ "type": "InternalIP", "address": NODE_IP }, { "type": "Hostname", "address": node }],
        "daemonEndpoints": { "kubeletEndpoint": { "Port": 10250 } },
        "nodeInfo": {
            "machineID": "shoal-test", "systemUUID": "shoal-test", "bootID": "shoal-test",
            "kernelVersion": "", "osImage": "shoal test node agent", "containerRuntimeVersion": "shoal-processes://1",
            "kubeletVersion": "v1.34.4", "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"
        }
    })
}

/// Creates the Node (or takes over one of that name) and marks it Ready.
pub async fn register(shared: &Shared, spec: &TestNode) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": spec.name, "labels": spec.labels() },
        "spec": {},
    }))
    .expect("a Node");
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e),
    }
    nodes.patch_status(&spec.name, &PatchParams::default(), &Patch::Merge(json!({ "status": status(&spec.name) }))).await?;
    renew_lease(shared, &spec.name).await
}

/// Deletes a lost node's Node object and Lease.
pub async fn delete(shared: &Shared, node: &str) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(shared.client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(shared.client.clone());
    for result in
        [leases.delete(node, &DeleteParams::default()).await.map(drop), nodes.delete(node, &DeleteParams::default()).await.map(drop)]
    {
        match result {
            Ok(()) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn renew_lease(shared: &Shared, node: &str) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(shared.client.clone(), "kube-node-lease");
    let now = now_micro();
    let patch = json!({ "spec": { "renewTime": now } });
    match leases.patch(node, &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let lease: Lease = serde_json::from_value(json!({
                "metadata": { "name": node, "namespace": "kube-node-lease" },
                "spec": { "holderIdentity": node, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now }
            }))
            .expect("a Lease");
            leases.create(&PostParams::default(), &lease).await.map(drop)
        }
        Err(e) => Err(e),
    }
}

/// Renews the live nodes' Leases and statuses until aborted.
pub async fn heartbeat(shared: Arc<Shared>) {
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let mut last_status = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let status_due = last_status.elapsed() >= STATUS_EVERY;
        if status_due {
            last_status = tokio::time::Instant::now();
        }
        for node in shared.live_nodes() {
            if let Err(e) = renew_lease(&shared, &node).await {
                eprintln!("node agent: renew the Lease of {node}: {e}");
            }
            if status_due {
                let patch = Patch::Merge(json!({ "status": status(&node) }));
                if let Err(e) = nodes.patch_status(&node, &PatchParams::default(), &patch).await {
                    eprintln!("node agent: update the status of {node}: {e}");
                }
            }
        }
    }
}
