//! The objects the kubelet writes: Pods and PVCs of a StatefulSet, and their
//! (and the StatefulSet's) status.

use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;

use serde_json::{Map, Value, json};

use crate::kube::api::meta::meta_str;

/// `<sts>-<hash of .spec.template>`: the revision a pod was made from.
pub fn revision(sts: &Value) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&sts.pointer("/spec/template")).unwrap_or_default().hash(&mut h);
    format!("{}-{:010x}", meta_str(sts, "name").unwrap_or(""), h.finish() & 0xff_ffff_ffff)
}

fn labels_of(v: Option<&Value>) -> Map<String, Value> {
    v.and_then(Value::as_object).cloned().unwrap_or_default()
}

/// The claim templates' names.
pub fn claim_templates(sts: &Value) -> Vec<Value> {
    sts.pointer("/spec/volumeClaimTemplates").and_then(Value::as_array).cloned().unwrap_or_default()
}

/// The PVC of claim template `t` for pod `pod`.
pub fn pvc(sts: &Value, t: &Value, pod: &str) -> Value {
    let mut labels = labels_of(t.pointer("/metadata/labels"));
    labels.extend(labels_of(sts.pointer("/spec/selector/matchLabels")));
    let name = format!("{}-{pod}", meta_str(t, "name").unwrap_or("data"));
    let spec = t.get("spec").cloned().unwrap_or(json!({}));
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": { "name": name, "labels": labels },
        "spec": spec,
        "status": {
            "phase": "Bound",
            "accessModes": spec.get("accessModes").cloned().unwrap_or(json!(["ReadWriteOnce"])),
            "capacity": spec.pointer("/resources/requests").cloned().unwrap_or(json!({})),
        },
    })
}

/// Pod `ordinal` of `sts` (no status yet).
pub fn pod(sts: &Value, ordinal: u32) -> Value {
    let sts_name = meta_str(sts, "name").unwrap_or("");
    let name = format!("{sts_name}-{ordinal}");
    let template = sts.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let mut labels = labels_of(template.pointer("/metadata/labels"));
    labels.insert("statefulset.kubernetes.io/pod-name".into(), json!(name));
    labels.insert("apps.kubernetes.io/pod-index".into(), json!(ordinal.to_string()));
    labels.insert("controller-revision-hash".into(), json!(revision(sts)));
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    spec["hostname"] = json!(name);
    if let Some(svc) = sts.pointer("/spec/serviceName").and_then(Value::as_str) {
        spec["subdomain"] = json!(svc);
    }
    spec["nodeName"] = json!("shoal-standin-node");
    let mut volumes = spec.get("volumes").and_then(Value::as_array).cloned().unwrap_or_default();
    for t in claim_templates(sts) {
        let claim = meta_str(&t, "name").unwrap_or("data").to_string();
        volumes.retain(|v| v.get("name").and_then(Value::as_str) != Some(&claim));
        volumes.push(json!({ "name": claim, "persistentVolumeClaim": { "claimName": format!("{claim}-{name}") } }));
    }
    spec["volumes"] = json!(volumes);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": template.pointer("/metadata/annotations").cloned().unwrap_or(json!({})),
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "name": sts_name,
                "uid": meta_str(sts, "uid"),
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": spec,
    })
}

/// What the kubelet knows of a pod's container, for its status.
pub struct ContainerView<'a> {
    pub name: &'a str,
    pub image: &'a str,
    pub ip: Ipv4Addr,
    pub created_at: &'a str,
    pub running: bool,
    pub pid: Option<u32>,
    pub started_at: &'a str,
    pub ready: bool,
    pub ready_since: &'a str,
    pub restarts: u32,
    pub last_error: Option<&'a str>,
}

pub fn pod_status(c: &ContainerView<'_>) -> Value {
    let flag = |b: bool| if b { "True" } else { "False" };
    let state = if c.running {
        json!({ "running": { "startedAt": c.started_at } })
    } else {
        json!({ "waiting": { "reason": "CrashLoopBackOff", "message": c.last_error.unwrap_or("back-off restarting the container") } })
    };
    let condition = |t: &str, b: bool, since: &str| json!({ "type": t, "status": flag(b), "lastTransitionTime": since });
    json!({
        "phase": "Running",
        "hostIP": "127.0.0.1",
        "podIP": c.ip.to_string(),
        "podIPs": [{ "ip": c.ip.to_string() }],
        "startTime": c.created_at,
        "conditions": [
            condition("PodScheduled", true, c.created_at),
            condition("Initialized", true, c.created_at),
            condition("ContainersReady", c.ready, c.ready_since),
            condition("Ready", c.ready, c.ready_since),
        ],
        "containerStatuses": [{
            "name": c.name,
            "image": c.image,
            "imageID": "",
            "containerID": c.pid.map(|p| format!("standin://{p}")),
            "ready": c.ready,
            "started": c.running,
            "restartCount": c.restarts,
            "state": state,
        }],
    })
}

/// Counts for a StatefulSet's status.
pub struct SetCounts {
    pub replicas: u32,
    pub ready: u32,
    pub updated: u32,
}

pub fn sts_status(sts: &Value, counts: &SetCounts) -> Value {
    let rev = revision(sts);
    json!({
        "observedGeneration": sts.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0),
        "replicas": counts.replicas,
        "readyReplicas": counts.ready,
        "currentReplicas": counts.updated,
        "updatedReplicas": counts.updated,
        "availableReplicas": counts.ready,
        "currentRevision": rev,
        "updateRevision": rev,
        "collisionCount": 0,
    })
}
