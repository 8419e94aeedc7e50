//! A pod's status as a kubelet reports it: phase, host and pod IPs, the
//! conditions (PodScheduled, PodReadyToStartContainers, Initialized,
//! ContainersReady, Ready), and the container's state (running, waiting with
//! a reason, the last termination), readiness, startup and restart count.

use serde_json::{Value, json};

use super::PodRt;
use crate::k8s::hosts::NODE_IP;

fn condition(type_: &str, ok: bool, since: &str) -> Value {
    json!({ "type": type_, "status": if ok { "True" } else { "False" }, "lastTransitionTime": since })
}

/// The whole `status` of the pod.
pub fn pod_status(rt: &PodRt, since: &str) -> Value {
    let container = rt.pod.spec.as_ref().and_then(|s| s.containers.first());
    let name = container.map(|c| c.name.clone()).unwrap_or_default();
    let image = container.and_then(|c| c.image.clone()).unwrap_or_default();
    let running = rt.process.is_some();
    let ready = running && rt.started && rt.ready;
    let state = match (&rt.process, &rt.started_at, &rt.waiting) {
        (Some(_), Some((at, _)), _) => json!({ "running": { "startedAt": at } }),
        (_, _, Some((reason, message))) => json!({ "waiting": { "reason": reason, "message": message } }),
        _ if rt.restarts > 0 => {
            json!({ "waiting": { "reason": "CrashLoopBackOff", "message": "back-off restarting the failed container" } })
        }
        _ => json!({ "waiting": { "reason": "ContainerCreating" } }),
    };
    let last_state = match &rt.last_exit {
        Some((code, reason, at)) => json!({ "terminated": { "exitCode": code, "reason": reason, "finishedAt": at } }),
        None => json!({}),
    };
    let mut container_status = json!({
        "name": name,
        "image": image,
        "imageID": "",
        "ready": ready,
        "started": running && rt.started,
        "restartCount": rt.restarts,
        "state": state,
        "lastState": last_state,
    });
    if let Some(pid) = rt.process.as_ref().and_then(|p| p.pid()) {
        container_status["containerID"] = json!(format!("process://{pid}"));
    }
    let phase = if rt.started_at.is_some() || rt.restarts > 0 { "Running" } else { "Pending" };
    json!({
        "phase": phase,
        "hostIP": NODE_IP,
        "hostIPs": [{ "ip": NODE_IP }],
        "podIP": rt.ip,
        "podIPs": [{ "ip": rt.ip }],
        "startTime": since,
        "conditions": [
            condition("PodScheduled", true, since),
            condition("PodReadyToStartContainers", true, since),
            condition("Initialized", true, since),
            condition("ContainersReady", ready, since),
            condition("Ready", ready, since),
        ],
        "containerStatuses": [container_status],
    })
}
