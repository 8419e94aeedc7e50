//! End-to-end tests against a real Kubernetes control plane (DESIGN testing
//! level 4): [`ControlPlane`] (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler from the Kubernetes Go modules, on loopback), and
//! [`NodeAgent`], our own small kubelet whose pods are real `shoal-node` and
//! `shoal-operator` processes. Only the agent is ours: admission, CEL, RBAC,
//! server-side apply, the StatefulSet and Deployment controllers, garbage
//! collection, PVC protection and scheduling are the real ones.
//!
//! [`run`] wraps a test: it enters a network namespace of its own, where
//! the pods' addresses live, and a mount namespace whose `/etc/hosts` is the
//! cluster's ([`hosts`]), starts the control plane and the agent, and hands
//! the test an [`Env`].

pub mod agent;
pub mod control_plane;
pub mod hosts;
pub mod time;

use std::future::Future;
use std::process::Output;

pub use agent::{NodeAgent, TestNode};
pub use control_plane::{ControlPlane, repo_root};

/// The node the agent registers.
pub const NODE: &str = "shoal-test-node";

/// What a test gets: the control plane, the node agent, an admin client.
pub struct Env {
    pub client: kube::Client,
    // Field order is drop order: the pods stop before the control plane does.
    pub agent: NodeAgent,
    pub control_plane: ControlPlane,
    _hosts_dir: tempfile::TempDir,
}

impl Env {
    /// `kubectl ARGS` (blocking, in the test's mount namespace: fine from async code for short commands).
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.control_plane.kubectl(args)
    }

    /// `kubectl ARGS`, which must succeed; its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        ok(self.kubectl(args), &format!("kubectl {}", args.join(" ")))
    }

    /// `helm ARGS`, which must succeed; its stdout.
    pub fn helm_ok(&self, args: &[&str]) -> String {
        ok(self.control_plane.helm(args), &format!("helm {}", args.join(" ")))
    }
}

fn ok(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{what} failed ({}):\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    stdout
}

/// Runs `test` in a fresh control plane with one node, [`NODE`]. Call it
/// from a plain `#[test]` (it builds its own runtime: the mount namespace
/// must be entered before any runtime thread exists).
pub fn run<F, Fut>(test: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()>,
{
    run_on(vec![TestNode::new(NODE)], test)
}

/// Like [`run`], with the agent running `nodes`.
pub fn run_on<F, Fut>(nodes: Vec<TestNode>, test: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()>,
{
    let hosts_dir = tempfile::Builder::new().prefix("shoal-hosts-").tempdir().expect("temp dir");
    let hosts = hosts::HostsFile::create(&hosts_dir.path().join("hosts")).expect("the cluster's hosts file");
    hosts::enter_private_namespaces(hosts.path()).expect("enter private network and mount namespaces (the k8s tests need root)");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("a runtime");
    runtime.block_on(async move {
        let control_plane = tokio::task::spawn_blocking(ControlPlane::start).await.expect("start the control plane");
        let client = control_plane.client().await;
        let apiserver = control_plane.apiserver.clone();
        let agent = NodeAgent::start(client.clone(), nodes, crate::bin_dir(), hosts, apiserver).await;
        test(Env { client, agent, control_plane, _hosts_dir: hosts_dir }).await;
    });
}
