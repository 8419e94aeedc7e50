//! The pod sync loop. Every [`super::TICK`]: list the pods bound to the
//! agent's live nodes; start the new ones (a fresh IP each, then [`launch::plan`] and
//! [`PodProcess::spawn`]); stop those being deleted (SIGTERM, the pod's
//! grace period, SIGKILL, then delete the Pod object for good, as the
//! kubelet confirms a deletion); forget those gone; reap exited processes and
//! restart them with back-off (restartPolicy Always); run the probes that are
//! due; write each pod's status when it changed. Apart from that loop,
//! [`refresh`] rewrites running pods' Secret and ConfigMap volumes whose
//! objects changed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use serde_json::json;

use super::launch::{self, PodContext};
use super::probes::{self, Kind, ProbeState, Verdict};
use super::process::PodProcess;
use super::status::pod_status;
use super::{PodRt, Shared, TICK};
use crate::k8s::time::now_rfc3339;

fn backoff(restarts: i32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << restarts.clamp(0, 5))).min(Duration::from_secs(10))
}

fn note(log: &std::path::Path, what: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
        let _ = writeln!(f, "==== node agent: {} {what}", now_rfc3339());
    }
}

pub async fn run(shared: Arc<Shared>) {
    loop {
        if let Err(e) = sync(&shared).await {
            eprintln!("node agent: pod sync: {e}");
        }
        tokio::time::sleep(TICK).await;
    }
}

/// How often running pods' Secret and ConfigMap volumes are refreshed (the
/// kubelet's sync period is a minute; a test waits less).
const REFRESH: Duration = Duration::from_secs(2);

/// Keeps the running pods' Secret and ConfigMap volumes current.
pub async fn refresh(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(REFRESH).await;
        let running: Vec<(String, Pod, String)> = shared
            .state()
            .pods
            .iter()
            .filter(|(_, rt)| rt.process.is_some() && !rt.terminating)
            .map(|(uid, rt)| (uid.clone(), rt.pod.clone(), rt.ip.clone()))
            .collect();
        for (uid, pod, ip) in running {
            if let Err(e) = launch::refresh_volumes(&pod_context(&shared, &uid, &pod, ip)).await {
                eprintln!("node agent: refreshing the volumes of {}: {e}", pod.metadata.name.as_deref().unwrap_or_default());
            }
        }
    }
}

async fn sync(shared: &Arc<Shared>) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let live = shared.live_nodes();
    let listed = api.list(&ListParams::default()).await?;
    let mut seen = HashSet::new();
    let ours = |pod: &Pod| pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some_and(|n| live.contains(n));
    for pod in listed.items.into_iter().filter(ours) {
        let Some(uid) = pod.metadata.uid.clone() else { continue };
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        seen.insert(uid.clone());
        let deleting = pod.metadata.deletion_timestamp.is_some();
        let known = shared.state().pods.contains_key(&uid);
        match (known, deleting) {
            (false, false) => start_pod(shared, pod).await,
            (false, true) => {
                // Never started here (or already stopped): confirm the deletion.
                tokio::spawn(confirm_deletion(shared.clone(), pod));
            }
            (true, true) => begin_termination(shared, &uid, &pod),
            (true, false) => {
                if let Some(rt) = shared.state().pods.get_mut(&uid) {
                    rt.pod = pod;
                }
            }
        }
    }
    // Pods deleted for good (force-deleted) while they ran: stop at once.
    let gone: Vec<PodRt> = {
        let mut st = shared.state();
        let uids: Vec<String> = st.pods.keys().filter(|u| !seen.contains(*u)).cloned().collect();
        uids.iter().filter_map(|u| st.pods.remove(u)).collect()
    };
    for mut rt in gone {
        if let Some(p) = rt.process.as_mut() {
            p.kill();
        }
        note(&rt.log, "the Pod object is gone: killed");
    }
    reap_and_restart(shared).await;
    run_probes(shared).await;
    write_statuses(shared).await;
    Ok(())
}

async fn start_pod(shared: &Arc<Shared>, pod: Pod) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let log = shared.log_path(&ns, &name);
    note(&log, &format!("pod {uid} assigned to this node"));
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
    let rt = PodRt {
        ns,
        name,
        node,
        ip: shared.next_ip(),
        pod,
        process: None,
        started_at: None,
        restarts: 0,
        restart_at: None,
        waiting: None,
        last_exit: None,
        probes: Vec::new(),
        started: false,
        ready: false,
        terminating: false,
        log,
        written: None,
    };
    shared.state().pods.insert(uid.clone(), rt);
    launch_container(shared, &uid).await;
}

/// Where pod `uid` runs on this node (its directory is `pods/<uid>`).
fn pod_context<'a>(shared: &'a Shared, uid: &str, pod: &'a Pod, ip: String) -> PodContext<'a> {
    PodContext {
        client: &shared.client,
        pod,
        ip,
        node: pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or_default(),
        apiserver: (&shared.apiserver.0, shared.apiserver.1),
        bin_dir: &shared.bin_dir,
        pod_dir: shared.root.path().join("pods").join(uid),
    }
}

/// Starts the pod's container; on failure, schedules a retry.
async fn launch_container(shared: &Arc<Shared>, uid: &str) {
    let Some((pod, ip, log)) = shared.state().pods.get(uid).map(|rt| (rt.pod.clone(), rt.ip.clone(), rt.log.clone())) else { return };
    let planned = launch::plan(&pod_context(shared, uid, &pod, ip)).await;
    let mut st = shared.state();
    let Some(rt) = st.pods.get_mut(uid) else { return };
    if rt.terminating {
        return;
    }
    match planned.and_then(|plan| PodProcess::spawn(&plan, &log)) {
        Ok(p) => {
            let now = Instant::now();
            rt.process = Some(p);
            rt.started_at = Some((now_rfc3339(), now));
            rt.restart_at = None;
            rt.waiting = None;
            let container = rt.pod.spec.as_ref().and_then(|s| s.containers.first().cloned()).unwrap_or_default();
            rt.probes = ProbeState::of(&container, now);
            rt.started = !rt.probes.iter().any(|p| p.kind == Kind::Startup);
            rt.ready = !rt.probes.iter().any(|p| p.kind == Kind::Readiness);
        }
        Err(e) => {
            note(&log, &format!("cannot start the container: {e}"));
            rt.waiting = Some(("CreateContainerConfigError".into(), e));
            rt.restart_at = Some(Instant::now() + backoff(rt.restarts));
        }
    }
}

/// Marks the pod terminating and stops it in the background.
fn begin_termination(shared: &Arc<Shared>, uid: &str, pod: &Pod) {
    let mut st = shared.state();
    let Some(rt) = st.pods.get_mut(uid) else { return };
    if rt.terminating {
        return;
    }
    rt.terminating = true;
    rt.ready = false;
    rt.pod = pod.clone();
    let process = rt.process.take();
    let grace = pod
        .metadata
        .deletion_grace_period_seconds
        .or(pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30)
        .max(0) as u64;
    note(&rt.log, &format!("terminating (grace period {grace} s)"));
    let (shared, uid, pod) = (shared.clone(), uid.to_string(), pod.clone());
    tokio::spawn(async move {
        if let Some(p) = process {
            let clean = p.terminate(Duration::from_secs(grace)).await;
            if let Some(rt) = shared.state().pods.get(&uid) {
                note(&rt.log, if clean { "exited after SIGTERM" } else { "SIGKILLed after the grace period" });
            }
        }
        confirm_deletion(shared.clone(), pod).await;
        shared.state().pods.remove(&uid);
    });
}

/// Deletes the Pod object for good (grace period 0, this uid only).
async fn confirm_deletion(shared: Arc<Shared>, pod: Pod) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &ns);
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }),
        ..Default::default()
    };
    match api.delete(&name, &dp).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => eprintln!("node agent: delete pod {ns}/{name}: {e}"),
    }
}

/// Reaps exited processes; restarts those whose back-off has passed.
async fn reap_and_restart(shared: &Arc<Shared>) {
    let now = Instant::now();
    let mut due = Vec::new();
    {
        let mut st = shared.state();
        for (uid, rt) in st.pods.iter_mut().filter(|(_, rt)| !rt.terminating) {
            if let Some(status) = rt.process.as_mut().and_then(PodProcess::exited) {
                use std::os::unix::process::ExitStatusExt;
                let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
                let reason = if code == 0 { "Completed" } else { "Error" };
                note(&rt.log, &format!("the container exited: {status}"));
                rt.process = None;
                rt.last_exit = Some((code, reason.into(), now_rfc3339()));
                rt.restarts += 1;
                rt.started = false;
                rt.ready = false;
                rt.restart_at = Some(now + backoff(rt.restarts));
            }
            if rt.process.is_none() && rt.restart_at.is_some_and(|t| t <= now) {
                rt.restart_at = None;
                due.push(uid.clone());
            }
        }
    }
    for uid in due {
        launch_container(shared, &uid).await;
    }
}

/// Runs the due probes of every running container, all at once.
async fn run_probes(shared: &Arc<Shared>) {
    let now = Instant::now();
    let mut checks = Vec::new();
    {
        let mut st = shared.state();
        for (uid, rt) in st.pods.iter_mut().filter(|(_, rt)| rt.process.is_some() && !rt.terminating) {
            let container = rt.pod.spec.as_ref().and_then(|s| s.containers.first().cloned()).unwrap_or_default();
            let started = rt.started;
            for (i, p) in rt.probes.iter_mut().enumerate() {
                // The startup probe runs until it passes; the others only after.
                if (p.kind == Kind::Startup) == started {
                    continue;
                }
                if let Some(check) = p.due(now, &rt.ip, &container) {
                    checks.push((uid.clone(), i, check));
                }
            }
        }
    }
    let results = futures::future::join_all(checks.into_iter().map(|(uid, i, check)| async move {
        let result = match check {
            Ok(c) => probes::run(c).await,
            Err(e) => Err(e),
        };
        (uid, i, result)
    }))
    .await;
    let mut st = shared.state();
    for (uid, i, result) in results {
        let Some(rt) = st.pods.get_mut(&uid) else { continue };
        let Some(p) = rt.probes.get_mut(i) else { continue };
        let kind = p.kind;
        match (kind, p.record(result)) {
            (Kind::Startup, Verdict::Passed) => rt.started = true,
            (Kind::Readiness, Verdict::Passed) => rt.ready = true,
            (Kind::Readiness, Verdict::Failed) => rt.ready = false,
            (Kind::Startup | Kind::Liveness, Verdict::Failed) => {
                let why = p.last_error.clone().unwrap_or_default();
                note(&rt.log, &format!("{kind:?} probe failed ({why}): restarting the container"));
                if let Some(proc) = rt.process.as_ref() {
                    proc.signal(libc::SIGKILL);
                }
            }
            _ => {}
        }
    }
}

/// Writes the status of every pod whose status changed.
async fn write_statuses(shared: &Arc<Shared>) {
    let pending: Vec<(String, String, String, serde_json::Value)> = {
        let st = shared.state();
        st.pods
            .iter()
            .filter(|(_, rt)| !rt.terminating)
            .filter_map(|(uid, rt)| {
                let since = rt.pod.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_else(now_rfc3339);
                let status = pod_status(rt, &since);
                (rt.written.as_ref() != Some(&status)).then(|| (uid.clone(), rt.ns.clone(), rt.name.clone(), status))
            })
            .collect()
    };
    for (uid, ns, name, status) in pending {
        let api: Api<Pod> = Api::namespaced(shared.client.clone(), &ns);
        match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({ "metadata": { "uid": uid }, "status": status }))).await
        {
            Ok(_) => {
                if let Some(rt) = shared.state().pods.get_mut(&uid) {
                    rt.written = Some(status);
                }
            }
            Err(e) => eprintln!("node agent: status of pod {ns}/{name}: {e}"),
        }
    }
}
