//! The StatefulSet "kubelet": an in-process task over the stand-in's store
//! that plays both the StatefulSet controller and the kubelet.
//!
//! For each StatefulSet it keeps pods `<sts>-0..<sts>-(N-1)`: PVCs from the
//! volumeClaimTemplates (`<template>-<pod>`, Bound, each a directory under
//! the kubelet's temp root that outlives its pod and goes with its PVC
//! object), the Pod object (owned by the StatefulSet, with podIP, Ready
//! condition and restart count), and the first container run as a real
//! process ([`process`]) with its args rewritten for loopback
//! ([`rewrite`], [`launch`]). Pods start one at a time, each once the one
//! before is Ready (OrderedReady), or all together (`Parallel`); scale-down
//! stops the highest ordinal first, one at a time (SIGTERM, 10 s, SIGKILL)
//! and keeps its PVCs; a pod made from an older `.spec.template` is replaced,
//! highest ordinal first, once all pods are Ready (RollingUpdate; not with
//! `OnDelete`); a process that exits is restarted with back-off; readiness
//! is the container's `readinessProbe.httpGet` on the pod IP every 500 ms.
//! The StatefulSet's `.status` follows. Rounds: [`reconcile`].

mod launch;
mod objects;
mod process;
mod reconcile;
pub mod rewrite;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde_json::Value;
use tokio::task::{AbortHandle, JoinHandle};

use self::process::PodProcess;
use self::rewrite::IpAllocator;
use super::api::resources::{PERSISTENTVOLUMECLAIMS, PODS};
use super::api::{KubeApiServer, Store};

pub use self::process::LaunchPlan;
pub use self::reconcile::{PROBE_EVERY, TERMINATION_GRACE};

/// (namespace, pod name)
type PodKey = (String, String);

/// A pod the kubelet runs.
struct PodRt {
    sts: String,
    ordinal: u32,
    ip: Ipv4Addr,
    uid: String,
    /// The StatefulSet revision it was made from.
    revision: String,
    container: String,
    image: String,
    spec: Value,
    probe: Option<(String, u16)>,
    /// The PVCs it mounts.
    claims: Vec<String>,
    process: Option<PodProcess>,
    /// Bumped at every start, so a probe of an earlier run is not believed.
    incarnation: u64,
    restarts: u32,
    restart_at: Option<Instant>,
    last_error: Option<String>,
    ready: bool,
    created_at: String,
    ready_since: String,
    log: PathBuf,
}

#[derive(Default)]
struct State {
    ips: IpAllocator,
    pods: BTreeMap<PodKey, PodRt>,
    /// Pods being stopped: the PVCs they mount, and the stopping task.
    terminating: HashMap<PodKey, (Vec<String>, AbortHandle)>,
    next_incarnation: u64,
}

struct Shared {
    store: Arc<Store>,
    root: tempfile::TempDir,
    bin_dir: PathBuf,
    state: Mutex<State>,
}

/// The running kubelet; its pods are killed when it is dropped.
pub struct Kubelet {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Kubelet {
    /// Runs StatefulSets of `server`'s store, with binaries from [`crate::bin_dir`].
    pub fn start(server: &KubeApiServer) -> Kubelet {
        Kubelet::start_with(server.store(), crate::bin_dir())
    }

    /// Runs StatefulSets of `store`, with binaries from `bin_dir`.
    pub fn start_with(store: Arc<Store>, bin_dir: PathBuf) -> Kubelet {
        let root = tempfile::Builder::new().prefix("shoal-kubelet-").tempdir().expect("kubelet temp root");
        std::fs::create_dir_all(root.path().join("logs")).expect("kubelet log dir");
        let shared = Arc::new(Shared { store, root, bin_dir, state: Mutex::new(State::default()) });
        let task = tokio::spawn(reconcile::run(shared.clone()));
        Kubelet { shared, task }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().expect("kubelet state")
    }

    /// The temp root: `pvc/<ns>/<claim>/`, `pods/<ns>/<pod>/`, `logs/<ns>_<pod>.log`.
    pub fn root(&self) -> &Path {
        self.shared.root.path()
    }

    /// The loopback IP pod `<sts>-<i>` of `ns` has (or will have).
    pub fn pod_ip(&self, ns: &str, pod: &str) -> Ipv4Addr {
        self.state().ips.pod_ip(ns, pod).unwrap_or_else(|| panic!("{pod} is not a StatefulSet pod name (<sts>-<ordinal>)"))
    }

    /// `IP:port` of the pod.
    pub fn pod_addr(&self, ns: &str, pod: &str, port: u16) -> String {
        format!("{}:{port}", self.pod_ip(ns, pod))
    }

    /// The pod's process id, while it runs.
    pub fn pod_pid(&self, ns: &str, pod: &str) -> Option<u32> {
        self.state().pods.get(&(ns.to_string(), pod.to_string()))?.process.as_ref()?.pid()
    }

    /// Whether the kubelet has the pod with its process started (and not yet
    /// seen to exit), or is still stopping it.
    pub fn is_running(&self, ns: &str, pod: &str) -> bool {
        let key = (ns.to_string(), pod.to_string());
        let st = self.state();
        st.terminating.contains_key(&key) || st.pods.get(&key).is_some_and(|rt| rt.process.is_some())
    }

    /// How often the pod's process has been restarted.
    pub fn restart_count(&self, ns: &str, pod: &str) -> Option<u32> {
        Some(self.state().pods.get(&(ns.to_string(), pod.to_string()))?.restarts)
    }

    /// The directory backing PVC `claim` of `ns`.
    pub fn pvc_dir(&self, ns: &str, claim: &str) -> PathBuf {
        self.shared.pvc_dir(ns, claim)
    }

    /// The pod's log file (all its runs, with kubelet notes between them).
    pub fn pod_log_path(&self, ns: &str, pod: &str) -> PathBuf {
        self.shared.log_path(ns, pod)
    }

    /// The last 40 lines of the pod's log.
    pub fn pod_log_tail(&self, ns: &str, pod: &str) -> String {
        let text = std::fs::read_to_string(self.pod_log_path(ns, pod)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// SIGKILLs the pod's process (the kubelet restarts it); whether it had one.
    pub fn kill_pod(&self, ns: &str, pod: &str) -> bool {
        let st = self.state();
        match st.pods.get(&(ns.to_string(), pod.to_string())).and_then(|rt| rt.process.as_ref()) {
            Some(p) => {
                p.signal(libc::SIGKILL);
                true
            }
            None => false,
        }
    }

    /// A lost volume: kills the pod's process, deletes its PVC objects and
    /// wipes their directories, and deletes the Pod object; its StatefulSet
    /// then recreates the pod on empty PVCs. Whether the kubelet had the pod.
    pub fn delete_pod_and_pvc(&self, ns: &str, pod: &str) -> bool {
        let mut st = self.state();
        let Some(mut rt) = st.pods.remove(&(ns.to_string(), pod.to_string())) else { return false };
        if let Some(p) = rt.process.as_mut() {
            p.kill();
        }
        for claim in &rt.claims {
            let _ = self.shared.store.delete(&PERSISTENTVOLUMECLAIMS, ns, claim, &Value::Null);
            let _ = std::fs::remove_dir_all(self.shared.pvc_dir(ns, claim));
        }
        let _ = self.shared.store.delete(&PODS, ns, pod, &serde_json::json!({ "preconditions": { "uid": rt.uid } }));
        true
    }

    /// Every pod the kubelet runs: (namespace, pod).
    pub fn pods(&self) -> Vec<(String, String)> {
        self.state().pods.keys().cloned().collect()
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
        let pods: Vec<(PodKey, PodRt)> = {
            let mut st = self.state();
            for (_, (_, task)) in st.terminating.drain() {
                task.abort();
            }
            std::mem::take(&mut st.pods).into_iter().collect()
        };
        let panicking = std::thread::panicking();
        for ((ns, name), mut rt) in pods {
            if let Some(p) = rt.process.as_mut() {
                p.kill();
            }
            if panicking {
                eprintln!("---- log of pod {ns}/{name} ----\n{}", self.pod_log_tail(&ns, &name));
            }
        }
    }
}
