//! The test node agent: our own small kubelet for a real control plane.
//!
//! [`NodeAgent`] registers one or more Nodes ([`TestNode`]: a name and a
//! zone label) and keeps them alive ([`node`]: status and a Lease in
//! `kube-node-lease`), then every [`TICK`] syncs the pods that the real
//! scheduler bound to them ([`pods`]): each pod gets its own IP (local in
//! the test's network namespace, see [`super::hosts`]) and its first container runs as a real local process ([`process`]) — the
//! image name maps to our binaries, `shoal-node` or `shoal-operator` — with
//! the pod's env, args and volumes ([`launch`]), its startup, liveness and
//! readiness probes ([`probes`]), its Secret and ConfigMap volumes kept
//! current, restarts with back-off, and its status
//! (phase, IPs, conditions, container state, restart count) written back
//! ([`status`]). A pod being deleted is stopped as the kubelet stops it —
//! SIGTERM, the grace period, SIGKILL — and then removed from the API.
//!
//! [`NodeAgent::fail_node`] loses a node as a cloud loses a machine: its
//! pods' processes are killed without a word to the API, and the Node object
//! is deleted (as the cloud node controller deletes the Node of a deleted
//! VM), so that the real pod garbage collector removes its pods and volumes
//! pinned to it can no longer be used.
//!
//! It also provisions volumes ([`volumes`]): a default StorageClass
//! `shoal-local` (WaitForFirstConsumer) whose claims, once the scheduler has
//! picked one of its nodes, get a `local` PersistentVolume pinned to that node and backed by a directory,
//! deleted with the directory when the claim is released, as a local-path
//! provisioner does. And it serves the cluster's names ([`dns`]): pod
//! hostnames and Service names from the real EndpointSlices into the hosts
//! file of the test's mount namespace ([`super::hosts`]).
//!
//! Everything else — StatefulSets, ReplicaSets, EndpointSlices, garbage
//! collection, PVC protection, scheduling, admission — is the real control
//! plane's.

mod dns;
mod launch;
mod node;
mod pods;
mod probes;
mod process;
mod status;
mod volumes;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use tokio::task::JoinHandle;

use self::probes::ProbeState;
use self::process::PodProcess;
use super::hosts::HostsFile;

pub use self::launch::expand_vars;
pub use self::volumes::{PROVISIONER, STORAGE_CLASS};

/// How often pods, volumes and names are synced.
pub const TICK: Duration = Duration::from_millis(250);

/// A Node the agent registers and runs pods for.
#[derive(Clone, Debug)]
pub struct TestNode {
    pub name: String,
    /// Its `topology.kubernetes.io/zone` label, if any.
    pub zone: Option<String>,
}

impl TestNode {
    pub fn new(name: &str) -> TestNode {
        TestNode { name: name.to_string(), zone: None }
    }

    pub fn in_zone(name: &str, zone: &str) -> TestNode {
        TestNode { name: name.to_string(), zone: Some(zone.to_string()) }
    }

    /// The Node's labels: hostname, OS, architecture and the zone.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), self.name.clone()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
            ("kubernetes.io/arch".to_string(), "amd64".to_string()),
        ]);
        if let Some(zone) = &self.zone {
            labels.insert("topology.kubernetes.io/zone".to_string(), zone.clone());
        }
        labels
    }
}

/// A pod the agent runs, by uid.
struct PodRt {
    ns: String,
    name: String,
    /// The node it runs on.
    node: String,
    ip: String,
    pod: Pod,
    process: Option<PodProcess>,
    /// When the current process started (RFC 3339 and instant).
    started_at: Option<(String, Instant)>,
    restarts: i32,
    restart_at: Option<Instant>,
    /// Why the container is not running (a start failure), if it is not.
    waiting: Option<(String, String)>,
    /// How the last run ended: (exit code, reason, finished at).
    last_exit: Option<(i32, String, String)>,
    probes: Vec<ProbeState>,
    /// The startup probe passed (or there is none).
    started: bool,
    ready: bool,
    terminating: bool,
    log: PathBuf,
    /// The last status written, not to write it again.
    written: Option<serde_json::Value>,
}

#[derive(Default)]
struct State {
    pods: HashMap<String, PodRt>,
    /// Pod IPs: the next ones of [`super::hosts::POD_CIDR`], a fresh one for every pod uid.
    next_ip: u32,
}

struct Shared {
    client: kube::Client,
    nodes: Vec<TestNode>,
    /// Nodes lost with [`NodeAgent::fail_node`].
    failed: Mutex<HashSet<String>>,
    root: tempfile::TempDir,
    bin_dir: PathBuf,
    /// The API server as pods reach it.
    apiserver: (String, u16),
    hosts: Mutex<HostsFile>,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("node agent state")
    }

    /// Names of the nodes not lost.
    fn live_nodes(&self) -> Vec<String> {
        let failed = self.failed.lock().expect("failed nodes");
        self.nodes.iter().filter(|n| !failed.contains(&n.name)).map(|n| n.name.clone()).collect()
    }

    fn log_path(&self, ns: &str, pod: &str) -> PathBuf {
        self.root.path().join("logs").join(format!("{ns}_{pod}.log"))
    }

    fn next_ip(&self) -> String {
        let mut st = self.state();
        st.next_ip += 1;
        let n = st.next_ip;
        assert!(n < 250 * 250, "the node agent ran out of pod IPs");
        // NODE_IP is 10.244.0.1; pods from 10.244.0.2 on.
        format!("10.244.{}.{}", n / 250, n % 250 + 1)
    }
}

/// The running agent; its pods are killed when it is dropped.
pub struct NodeAgent {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl NodeAgent {
    /// Registers `nodes` through `client` and runs their pods with binaries
    /// from `bin_dir`; `hosts` is the test's hosts file, `apiserver` the
    /// API server's address for in-cluster clients.
    pub async fn start(
        client: kube::Client,
        nodes: Vec<TestNode>,
        bin_dir: PathBuf,
        hosts: HostsFile,
        apiserver: (String, u16),
    ) -> NodeAgent {
        // SHOAL_K8S_KEEP=1 keeps the pods' logs and volumes after the test, to look at.
        let keep = std::env::var_os("SHOAL_K8S_KEEP").is_some();
        let root = tempfile::Builder::new().prefix("shoal-node-agent-").disable_cleanup(keep).tempdir().expect("node agent temp root");
        if keep {
            eprintln!("node agent: pod logs and volumes under {} (kept)", root.path().display());
        }
        for dir in ["logs", "pods", "volumes"] {
            std::fs::create_dir_all(root.path().join(dir)).expect("node agent dirs");
        }
        let shared = Arc::new(Shared {
            client,
            nodes: nodes.clone(),
            failed: Mutex::new(HashSet::new()),
            root,
            bin_dir,
            apiserver,
            hosts: Mutex::new(hosts),
            state: Mutex::new(State::default()),
        });
        for n in &nodes {
            node::register(&shared, n).await.expect("register the Node");
        }
        volumes::ensure_storage_class(&shared).await.expect("create the StorageClass");
        let tasks = vec![
            tokio::spawn(node::heartbeat(shared.clone())),
            tokio::spawn(pods::run(shared.clone())),
            tokio::spawn(pods::refresh(shared.clone())),
            tokio::spawn(volumes::run(shared.clone())),
            tokio::spawn(dns::run(shared.clone())),
        ];
        NodeAgent { shared, tasks }
    }

    /// Loses node `name`: kills its pods' processes (no status written, no
    /// grace period), stops its heartbeats and deletes its Node object and
    /// Lease. Its pods and volumes are left to the control plane.
    pub async fn fail_node(&self, name: &str) {
        self.shared.failed.lock().expect("failed nodes").insert(name.to_string());
        let lost: Vec<PodRt> = {
            let mut st = self.shared.state();
            let uids: Vec<String> = st.pods.iter().filter(|(_, rt)| rt.node == name).map(|(uid, _)| uid.clone()).collect();
            uids.iter().filter_map(|u| st.pods.remove(u)).collect()
        };
        for mut rt in lost {
            if let Some(p) = rt.process.as_mut() {
                p.kill();
            }
        }
        node::delete(&self.shared, name).await.expect("delete the lost Node");
    }

    /// The node pod `ns/pod` runs on, while it runs.
    pub fn pod_node(&self, ns: &str, pod: &str) -> Option<String> {
        self.find(ns, pod, |rt| rt.node.clone())
    }

    /// The temp root: `volumes/<pv>/`, `pods/<uid>/`, `logs/<ns>_<pod>.log`.
    pub fn root(&self) -> &Path {
        self.shared.root.path()
    }

    fn find<T>(&self, ns: &str, pod: &str, f: impl FnOnce(&PodRt) -> T) -> Option<T> {
        let st = self.shared.state();
        st.pods.values().find(|rt| rt.ns == ns && rt.name == pod && !rt.terminating).map(f)
    }

    /// The IP of the running pod `ns/pod`.
    pub fn pod_ip(&self, ns: &str, pod: &str) -> Option<String> {
        self.find(ns, pod, |rt| rt.ip.clone())
    }

    /// The pod's process id, while it runs.
    pub fn pod_pid(&self, ns: &str, pod: &str) -> Option<u32> {
        self.find(ns, pod, |rt| rt.process.as_ref().and_then(PodProcess::pid)).flatten()
    }

    /// Whether the agent has a process for a pod of that name (also while it stops one).
    pub fn is_running(&self, ns: &str, pod: &str) -> bool {
        let st = self.shared.state();
        st.pods.values().any(|rt| rt.ns == ns && rt.name == pod && (rt.process.is_some() || rt.terminating))
    }

    /// SIGKILLs the pod's process (the agent restarts it, as a kubelet
    /// restarts a crashed container); whether it had one.
    pub fn kill_pod(&self, ns: &str, pod: &str) -> bool {
        self.find(ns, pod, |rt| {
            if let Some(p) = rt.process.as_ref() {
                p.signal(libc::SIGKILL);
            }
            rt.process.is_some()
        })
        .unwrap_or(false)
    }

    /// The pod's log file (all its runs, with agent notes between them).
    pub fn pod_log_path(&self, ns: &str, pod: &str) -> PathBuf {
        self.shared.log_path(ns, pod)
    }

    /// The last `n` lines of the pod's log.
    pub fn pod_log_tail(&self, ns: &str, pod: &str, n: usize) -> String {
        let text = std::fs::read_to_string(self.pod_log_path(ns, pod)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Every pod the agent runs: (namespace, name).
    pub fn pods(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self.shared.state().pods.values().map(|rt| (rt.ns.clone(), rt.name.clone())).collect();
        v.sort();
        v
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        let pods: Vec<PodRt> = self.shared.state().pods.drain().map(|(_, rt)| rt).collect();
        let panicking = std::thread::panicking();
        for mut rt in pods {
            if let Some(p) = rt.process.as_mut() {
                p.kill();
            }
            if panicking {
                eprintln!("---- log of pod {}/{} ----\n{}", rt.ns, rt.name, self.pod_log_tail(&rt.ns, &rt.name, 40));
            }
        }
    }
}
