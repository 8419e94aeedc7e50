//! The kubelet's rounds. Each round, under the state lock: reap exited
//! processes, stop pods whose Pod object went, restart crashed ones (with
//! back-off), bring each StatefulSet towards `.spec.replicas` (scale down
//! highest ordinal first, one at a time; roll pods of an old template;
//! create missing pods in order or in parallel), and drop the directories of
//! deleted PVCs. Then, without the lock, the readiness probes; then, under
//! the lock again, the Pod and StatefulSet statuses (written only when they
//! change).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::launch::{PodContext, plan};
use super::objects::{ContainerView, SetCounts, claim_templates, pod, pod_status, pvc, revision, sts_status};
use super::process::PodProcess;
use super::rewrite::split_pod_name;
use super::{PodKey, PodRt, Shared, State};
use crate::kube::api::Part;
use crate::kube::api::meta::{meta_str, now_rfc3339};
use crate::kube::api::resources::{PERSISTENTVOLUMECLAIMS, PODS, STATEFULSETS};

/// How long a SIGTERMed pod gets before SIGKILL.
pub const TERMINATION_GRACE: Duration = Duration::from_secs(10);
/// How often readiness is probed.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);

fn backoff(restarts: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << restarts.min(5))).min(Duration::from_secs(5))
}

/// A readiness probe to run: (pod, incarnation, address, path).
pub struct Probe {
    key: PodKey,
    incarnation: u64,
    addr: String,
    path: String,
}

fn note(rt: &PodRt, what: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&rt.log) {
        let _ = writeln!(f, "==== kube stand-in: {} {what}", now_rfc3339());
    }
}

/// The readiness probe of the pod's first container: (path, port).
fn readiness_probe(spec: &Value) -> Option<(String, u16)> {
    let c = spec.pointer("/containers/0")?;
    let get = c.pointer("/readinessProbe/httpGet")?;
    let path = get.get("path").and_then(Value::as_str).unwrap_or("/").to_string();
    let port = match get.get("port")? {
        Value::Number(n) => n.as_u64()? as u16,
        Value::String(name) => match name.parse::<u16>() {
            Ok(p) => p,
            Err(_) => c
                .get("ports")?
                .as_array()?
                .iter()
                .find(|p| p.get("name").and_then(Value::as_str) == Some(name))?
                .get("containerPort")?
                .as_u64()? as u16,
        },
        _ => return None,
    };
    Some((path, port))
}

fn claims_of(spec: &Value) -> Vec<String> {
    spec.get("volumes")
        .and_then(Value::as_array)
        .map(|v| v.iter().filter_map(|v| v.pointer("/persistentVolumeClaim/claimName")?.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

impl Shared {
    pub(super) fn pvc_dir(&self, ns: &str, claim: &str) -> PathBuf {
        self.root.path().join("pvc").join(ns).join(claim)
    }

    pub(super) fn log_path(&self, ns: &str, pod: &str) -> PathBuf {
        self.root.path().join("logs").join(format!("{ns}_{pod}.log"))
    }

    /// Starts (or restarts) the pod's process; on failure, schedules a retry.
    fn launch(&self, st: &mut State, key: &PodKey, rt: &mut PodRt) {
        let (ns, name) = key;
        let pvc_dir = |claim: &str| self.pvc_dir(ns, claim);
        let ctx = PodContext {
            ns,
            pod: name,
            ip: rt.ip,
            store: &self.store,
            bin_dir: &self.bin_dir,
            pod_dir: self.root.path().join("pods").join(ns).join(name),
            pvc_dir: &pvc_dir,
        };
        st.next_incarnation += 1;
        rt.incarnation = st.next_incarnation;
        match plan(&rt.spec, &ctx, &mut st.ips).and_then(|p| PodProcess::spawn(&p, &rt.log)) {
            Ok(p) => {
                rt.process = Some(p);
                rt.restart_at = None;
                rt.last_error = None;
            }
            Err(e) => {
                note(rt, &format!("cannot start: {e}"));
                rt.restarts += 1;
                rt.restart_at = Some(Instant::now() + backoff(rt.restarts));
                rt.last_error = Some(e);
            }
        }
    }

    /// Stops `rt`'s process in the background (SIGTERM, grace, SIGKILL); then,
    /// if `delete_object`, deletes its Pod object.
    fn terminate(self: &Arc<Self>, st: &mut State, key: PodKey, mut rt: PodRt, delete_object: bool) {
        let shared = self.clone();
        let process = rt.process.take();
        note(&rt, "terminating");
        let task_key = key.clone();
        let claims = rt.claims.clone();
        let task = tokio::spawn(async move {
            if let Some(p) = process {
                p.terminate(TERMINATION_GRACE).await;
            }
            if delete_object {
                let options = json!({ "preconditions": { "uid": rt.uid } });
                let _ = shared.store.delete(&PODS, &task_key.0, &task_key.1, &options);
            }
            note(&rt, "terminated");
            shared.state.lock().expect("kubelet state").terminating.remove(&task_key);
        });
        st.terminating.insert(key, (claims, task.abort_handle()));
    }

    /// Creates pod `ordinal` of `sts`: its PVCs and directories, the Pod object, the process.
    fn create_pod(&self, st: &mut State, sts: &Value, ordinal: u32) {
        let ns = meta_str(sts, "namespace").unwrap_or("").to_string();
        let sts_name = meta_str(sts, "name").unwrap_or("").to_string();
        let name = format!("{sts_name}-{ordinal}");
        for t in claim_templates(sts) {
            let claim = pvc(sts, &t, &name);
            let claim_name = meta_str(&claim, "name").unwrap_or("").to_string();
            if self.store.get(&PERSISTENTVOLUMECLAIMS, &ns, &claim_name).is_none()
                && let Err(e) = self.store.create(&PERSISTENTVOLUMECLAIMS, &ns, claim)
            {
                eprintln!("kube stand-in kubelet: create pvc {ns}/{claim_name}: {e}");
            }
            let dir = self.pvc_dir(&ns, &claim_name);
            if let Err(e) = std::fs::create_dir_all(&dir) {
                eprintln!("kube stand-in kubelet: create {}: {e}", dir.display());
            }
        }
        if let Some(old) = self.store.get(&PODS, &ns, &name) {
            let options = json!({ "preconditions": { "uid": meta_str(&old, "uid") } });
            let _ = self.store.delete(&PODS, &ns, &name, &options);
        }
        let obj = match self.store.create(&PODS, &ns, pod(sts, ordinal)) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("kube stand-in kubelet: create pod {ns}/{name}: {e}");
                return;
            }
        };
        let spec = obj.get("spec").cloned().unwrap_or(json!({}));
        let key = (ns.clone(), name.clone());
        let mut rt = PodRt {
            sts: sts_name.clone(),
            ordinal,
            ip: st.ips.ip(&ns, &sts_name, ordinal),
            uid: meta_str(&obj, "uid").unwrap_or("").to_string(),
            revision: revision(sts),
            container: spec.pointer("/containers/0/name").and_then(Value::as_str).unwrap_or("main").to_string(),
            image: spec.pointer("/containers/0/image").and_then(Value::as_str).unwrap_or("").to_string(),
            probe: readiness_probe(&spec),
            claims: claims_of(&spec),
            spec,
            process: None,
            incarnation: 0,
            restarts: 0,
            restart_at: None,
            last_error: None,
            ready: false,
            created_at: now_rfc3339(),
            ready_since: now_rfc3339(),
            log: self.log_path(&ns, &name),
        };
        self.launch(st, &key, &mut rt);
        st.pods.insert(key, rt);
    }

    /// Scale, roll and create the pods of one StatefulSet.
    fn sync_set(self: &Arc<Self>, st: &mut State, sts: &Value) {
        let ns = meta_str(sts, "namespace").unwrap_or("").to_string();
        let name = meta_str(sts, "name").unwrap_or("").to_string();
        if sts.pointer("/metadata/deletionTimestamp").is_some() {
            return;
        }
        let replicas = sts.pointer("/spec/replicas").and_then(Value::as_u64).unwrap_or(1) as u32;
        let parallel = sts.pointer("/spec/podManagementPolicy").and_then(Value::as_str) == Some("Parallel");
        let on_delete = sts.pointer("/spec/updateStrategy/type").and_then(Value::as_str) == Some("OnDelete");
        let rev = revision(sts);
        let mine = |k: &PodKey| k.0 == ns && split_pod_name(&k.1).is_some_and(|(s, _)| s == name);
        let mut busy = st.terminating.keys().any(mine);
        let present: Vec<(PodKey, u32, bool, bool)> = st
            .pods
            .iter()
            .filter(|(k, rt)| mine(k) && rt.sts == name)
            .map(|(k, rt)| (k.clone(), rt.ordinal, rt.ready, rt.revision == rev))
            .collect();
        if !busy {
            let extra = present.iter().filter(|p| p.1 >= replicas).max_by_key(|p| p.1);
            let all_ready = (0..replicas).all(|i| present.iter().any(|p| p.1 == i && p.2));
            let stale = present.iter().filter(|p| !p.3 && p.1 < replicas).max_by_key(|p| p.1);
            let victim = extra.or(if all_ready && !on_delete { stale } else { None });
            if let Some((key, _, _, _)) = victim
                && let Some(rt) = st.pods.remove(key)
            {
                self.terminate(st, key.clone(), rt, true);
                busy = true;
            }
        }
        if busy && !parallel {
            return;
        }
        for i in 0..replicas {
            let key = (ns.clone(), format!("{name}-{i}"));
            if st.pods.contains_key(&key) || st.terminating.contains_key(&key) {
                continue;
            }
            if !parallel && !(0..i).all(|j| st.pods.get(&(ns.clone(), format!("{name}-{j}"))).is_some_and(|rt| rt.ready)) {
                break;
            }
            self.create_pod(st, sts, i);
            if !parallel {
                break;
            }
        }
    }

    /// The locked part of a round before the probes; returns the probes to run.
    pub(super) fn step(self: &Arc<Self>, probe: bool) -> Vec<Probe> {
        let mut guard = self.state.lock().expect("kubelet state");
        let st = &mut *guard;
        let now = Instant::now();
        for rt in st.pods.values_mut() {
            if let Some(status) = rt.process.as_mut().and_then(PodProcess::exited) {
                note(rt, &format!("exited: {status}"));
                rt.process = None;
                rt.restarts += 1;
                rt.restart_at = Some(now + backoff(rt.restarts));
                rt.last_error = Some(format!("exited: {status}"));
            }
        }
        let gone: Vec<PodKey> = st
            .pods
            .iter()
            .filter(|((ns, name), rt)| match self.store.get(&PODS, ns, name) {
                None => true,
                Some(p) => meta_str(&p, "uid") != Some(&rt.uid) || p.pointer("/metadata/deletionTimestamp").is_some(),
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            if let Some(rt) = st.pods.remove(&key) {
                self.terminate(st, key, rt, false);
            }
        }
        let due: Vec<PodKey> = st
            .pods
            .iter()
            .filter(|(_, rt)| rt.process.is_none() && rt.restart_at.is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if let Some(mut rt) = st.pods.remove(&key) {
                note(&rt, &format!("restarting (restart {})", rt.restarts));
                self.launch(st, &key, &mut rt);
                st.pods.insert(key, rt);
            }
        }
        let sets = self.store.list(&STATEFULSETS, None);
        for sts in &sets {
            self.sync_set(st, sts);
        }
        let live: HashSet<(String, String)> = sets
            .iter()
            .map(|s| (meta_str(s, "namespace").unwrap_or("").to_string(), meta_str(s, "name").unwrap_or("").to_string()))
            .collect();
        let orphans: Vec<PodKey> =
            st.pods.iter().filter(|(k, rt)| !live.contains(&(k.0.clone(), rt.sts.clone()))).map(|(k, _)| k.clone()).collect();
        for key in orphans {
            if let Some(rt) = st.pods.remove(&key) {
                self.terminate(st, key, rt, true);
            }
        }
        self.drop_deleted_pvc_dirs(st);
        if !probe {
            return Vec::new();
        }
        st.pods
            .iter()
            .filter(|(_, rt)| rt.process.is_some())
            .filter_map(|(k, rt)| {
                let (path, port) = rt.probe.clone()?;
                Some(Probe { key: k.clone(), incarnation: rt.incarnation, addr: format!("{}:{port}", rt.ip), path })
            })
            .collect()
    }

    /// Removes PVC directories whose PVC object is gone and no pod uses.
    fn drop_deleted_pvc_dirs(&self, st: &State) {
        let in_use: HashSet<(String, String)> = st
            .pods
            .iter()
            .flat_map(|((ns, _), rt)| rt.claims.iter().map(move |c| (ns.clone(), c.clone())))
            .chain(st.terminating.iter().flat_map(|((ns, _), (claims, _))| claims.iter().map(move |c| (ns.clone(), c.clone()))))
            .collect();
        let Ok(namespaces) = std::fs::read_dir(self.root.path().join("pvc")) else { return };
        for ns_dir in namespaces.flatten() {
            let ns = ns_dir.file_name().to_string_lossy().into_owned();
            for claim_dir in std::fs::read_dir(ns_dir.path()).into_iter().flatten().flatten() {
                let claim = claim_dir.file_name().to_string_lossy().into_owned();
                if !in_use.contains(&(ns.clone(), claim.clone())) && self.store.get(&PERSISTENTVOLUMECLAIMS, &ns, &claim).is_none() {
                    let _ = std::fs::remove_dir_all(claim_dir.path());
                }
            }
        }
    }

    /// The locked part after the probes: readiness, then statuses.
    pub(super) fn finish(&self, results: Vec<(Probe, bool)>) {
        let mut guard = self.state.lock().expect("kubelet state");
        let st = &mut *guard;
        let probed: Vec<(PodKey, u64, bool)> = results.into_iter().map(|(p, ok)| (p.key, p.incarnation, ok)).collect();
        for (key, rt) in st.pods.iter_mut() {
            let ready = if rt.process.is_none() {
                false
            } else if rt.probe.is_none() {
                true
            } else {
                match probed.iter().find(|(k, inc, _)| k == key && *inc == rt.incarnation) {
                    Some((_, _, ok)) => *ok,
                    None => rt.ready,
                }
            };
            if ready != rt.ready {
                rt.ready = ready;
                rt.ready_since = now_rfc3339();
            }
        }
        for ((ns, name), rt) in &st.pods {
            let status = pod_status(&ContainerView {
                name: &rt.container,
                image: &rt.image,
                ip: rt.ip,
                created_at: &rt.created_at,
                running: rt.process.is_some(),
                pid: rt.process.as_ref().and_then(PodProcess::pid),
                started_at: rt.process.as_ref().map_or("", |p| p.started_at.as_str()),
                ready: rt.ready,
                ready_since: &rt.ready_since,
                restarts: rt.restarts,
                last_error: rt.last_error.as_deref(),
            });
            let uid = rt.uid.clone();
            let _ = self.store.update(&PODS, ns, name, Part::Status, |o| {
                if meta_str(o, "uid") == Some(&uid) {
                    o["status"] = status;
                }
                Ok(())
            });
        }
        for sts in self.store.list(&STATEFULSETS, None) {
            let ns = meta_str(&sts, "namespace").unwrap_or("").to_string();
            let name = meta_str(&sts, "name").unwrap_or("").to_string();
            let rev = revision(&sts);
            let pods: Vec<&PodRt> = st.pods.iter().filter(|(k, rt)| k.0 == ns && rt.sts == name).map(|(_, rt)| rt).collect();
            let counts = SetCounts {
                replicas: pods.len() as u32,
                ready: pods.iter().filter(|rt| rt.ready).count() as u32,
                updated: pods.iter().filter(|rt| rt.revision == rev).count() as u32,
            };
            let status = sts_status(&sts, &counts);
            let _ = self.store.update(&STATEFULSETS, &ns, &name, Part::Status, |o| {
                o["status"] = status;
                Ok(())
            });
        }
    }
}

/// The round loop; runs until the kubelet is dropped.
pub(super) async fn run(shared: Arc<Shared>) {
    let mut changes = shared.store.subscribe();
    let mut last_probe = Instant::now() - PROBE_EVERY;
    loop {
        changes.borrow_and_update();
        let probe = last_probe.elapsed() >= PROBE_EVERY;
        if probe {
            last_probe = Instant::now();
        }
        let probes = shared.step(probe);
        let results = futures::future::join_all(probes.into_iter().map(|p| async move {
            let ok =
                matches!(crate::try_http_get(&p.addr, &p.path, Duration::from_secs(1)).await, Ok((code, _)) if (200..400).contains(&code));
            (p, ok)
        }))
        .await;
        shared.finish(results);
        let wait = PROBE_EVERY.saturating_sub(last_probe.elapsed()).max(Duration::from_millis(20));
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
