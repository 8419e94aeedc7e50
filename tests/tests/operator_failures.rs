//! The real `shoal-operator` against the Kubernetes API stand-in when things
//! go wrong (DESIGN testing level 4; the happy path is `operator.rs`):
//!
//! - a storage pod that crashes comes back on its volume as the same store,
//!   and a pod that loses its volume is replaced: its new, empty store is
//!   joined, the old one drained and tombstoned, and no key is lost;
//! - of two operator replicas only the Lease holder reconciles, and when it
//!   dies the other takes the Lease over and carries on;
//! - a spec the CRD would have refused (the stand-in does not run its CEL
//!   rules) is reported as `Degraded`/`InvalidSpec` and changes nothing;
//! - a `KvCluster` deleted and re-created over its kept volumes comes back
//!   with the same stores and every key (and, re-created larger, joins the
//!   extra stores to them): it is never bootstrapped a second time.
//!
//! Each test has its own stand-in, kubelet and operator(s); every process is
//! killed when the test ends, however it ends.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use shoal_client::{Client, ClientOptions, Mutation, ReadConsistency};
use shoal_operator::crd::{KvCluster, KvClusterStatus};
use shoal_proto::{StoreState, mutation};
use shoal_tests::kube::{KubeApiServer, Kubelet, resources};
use shoal_tests::kvcluster::{condition, count, demo_cluster, event_reasons, key, settled, summary, value, wait_status};
use shoal_tests::operator::Operator;
use shoal_tests::wait_until;

const NS: &str = "default";
const KEYS: usize = 2_000;

/// The stand-in, its kubelet and the kubeconfig the operators use.
struct Env {
    server: KubeApiServer,
    kubelet: Kubelet,
    dir: tempfile::TempDir,
    client: kube::Client,
    kvcs: Api<KvCluster>,
}

impl Env {
    async fn start() -> Env {
        let server = KubeApiServer::start().await;
        let kubelet = Kubelet::start(&server);
        let dir = tempfile::tempdir().expect("tempdir");
        server.write_kubeconfig(&dir.path().join("kubeconfig"));
        let client = server.client().await;
        let kvcs = Api::namespaced(client.clone(), NS);
        Env { server, kubelet, dir, client, kvcs }
    }

    fn operator(&self, identity: &str, extra: &[&str]) -> Operator {
        let log = self.dir.path().join(format!("{identity}.log"));
        Operator::start(&self.dir.path().join("kubeconfig"), log, identity, extra)
    }

    /// Applies the 3-replica cluster and waits until it has bootstrapped and settled.
    async fn apply_and_settle(&self) -> KvClusterStatus {
        let kvc: KvCluster = demo_cluster();
        self.kvcs.create(&PostParams::default(), &kvc).await.expect("create the KvCluster");
        let mut phases = BTreeSet::new();
        let st = wait_status(&self.kvcs, Duration::from_secs(180), "3 stores up", &mut phases, |s| settled(s, 3)).await;
        eprintln!("bootstrapped: {}", summary(&st));
        assert!(st.bootstrapped, "{}", summary(&st));
        st
    }

    /// A client of the Shoal cluster at the addresses of pods `demo-<pods>`.
    fn kv(&self, pods: std::ops::Range<usize>) -> Client {
        let endpoints: Vec<String> = pods.map(|i| self.kubelet.pod_addr(NS, &format!("demo-{i}"), 20160)).collect();
        Client::new(&endpoints, ClientOptions::default()).expect("client")
    }

    /// The reason of every Event, once per occurrence (kube's recorder folds a
    /// repeated reason into one Event with a `series.count`).
    fn event_reasons(&self) -> Vec<String> {
        event_reasons(&self.server, None)
    }

    async fn sts_replicas(&self) -> Option<i32> {
        let sts = Api::<StatefulSet>::namespaced(self.client.clone(), NS).get("demo").await.expect("sts");
        sts.spec.and_then(|s| s.replicas)
    }
}

async fn write_keys(kv: &Client) {
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(500) {
        let muts =
            chunk.iter().map(|&i| Mutation { op: mutation::Op::Put as i32, cf: "users".into(), key: key(i), value: value(i) }).collect();
        kv.batch_write(muts).await.expect("write keys");
    }
}

/// Every key reads back with a linearizable read.
async fn check_keys(kv: &Client, when: &str) {
    let mut missing = Vec::new();
    for i in 0..KEYS {
        match kv.get_with("users", &key(i), ReadConsistency::Linearizable).await {
            Ok(Some(v)) if v == value(i) => {}
            other => missing.push((i, format!("{other:?}"))),
        }
    }
    assert!(missing.is_empty(), "{when}: {} of {KEYS} keys lost or wrong, first {:?}", missing.len(), &missing[..missing.len().min(5)]);
}

/// (id, name, state) of every store the cluster knows, tombstones included.
async fn cluster_stores(kv: &Client) -> Result<Vec<(u64, String, StoreState)>, String> {
    let list = kv.list_stores().await.map_err(|e| e.to_string())?;
    let mut out: Vec<_> = list.into_iter().filter_map(|d| d.store).map(|m| (m.id, m.name.clone(), m.state())).collect();
    out.sort();
    Ok(out)
}

fn store_ids(s: &KvClusterStatus) -> Vec<(String, u64)> {
    s.stores.iter().map(|e| (e.pod.clone(), e.store_id)).collect()
}

/// A pod whose process dies keeps its volume and so its store; a pod whose
/// volume is lost comes back empty as a new store, which the operator joins
/// before it drains and removes the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_pod_keeps_its_store_and_a_lost_volume_is_replaced() {
    let env = Env::start().await;
    let operator = env.operator("operator-a", &["--lease-namespace=default"]);
    let before = env.apply_and_settle().await;
    let ids_before = store_ids(&before);
    let kv = env.kv(0..3);
    write_keys(&kv).await;
    let stores_before = cluster_stores(&kv).await.expect("list stores");
    assert_eq!(stores_before.len(), 3, "{stores_before:?}");

    // (a) SIGKILL demo-1: the kubelet restarts it on the same volume.
    assert_eq!(env.kubelet.restart_count(NS, "demo-1"), Some(0));
    assert!(env.kubelet.kill_pod(NS, "demo-1"), "demo-1 has a process");
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
    // The restart count and readiness from one Pod object, so that "Ready"
    // is the restarted process's (the kubelet writes both in one status).
    wait_until(Duration::from_secs(60), Duration::from_millis(200), "demo-1 restarted and Ready", || async {
        let status = pods.get("demo-1").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        let restarts = status.container_statuses.as_deref().unwrap_or_default().first().map_or(0, |c| c.restart_count);
        let ready = status.conditions.unwrap_or_default().iter().any(|c| c.type_ == "Ready" && c.status == "True");
        if restarts >= 1 && ready { Ok(()) } else { Err(format!("restarts {restarts}, ready {ready}")) }
    })
    .await;
    assert!(env.kubelet.restart_count(NS, "demo-1").is_some_and(|n| n >= 1));
    let mut phases = BTreeSet::new();
    let st = wait_status(&env.kvcs, Duration::from_secs(120), "settled after demo-1's restart", &mut phases, |s| settled(s, 3)).await;
    assert_eq!(store_ids(&st), ids_before, "same volume, same store: {}", summary(&st));
    // The cluster itself saw no new store register: the restarted node found
    // its identity on its volume.
    let after_restart = wait_until(Duration::from_secs(60), Duration::from_millis(500), "3 stores Up after the restart", || async {
        let stores = cluster_stores(&kv).await?;
        if stores.iter().all(|s| s.2 == StoreState::Up) { Ok(stores) } else { Err(format!("{stores:?}")) }
    })
    .await;
    assert_eq!(after_restart, stores_before, "the restart changed the cluster's stores");
    let reasons = env.event_reasons();
    assert_eq!(count(&reasons, "JoinStore"), 0, "nothing to join after a restart: {reasons:?}");
    check_keys(&kv, "after demo-1's restart").await;

    // (b) demo-2 loses its volume: it comes back empty and registers a new
    // store under the same pod name; the operator joins it, then drains and
    // removes the old one.
    let old = before.stores.iter().find(|e| e.pod == "demo-2").expect("demo-2's store").store_id;
    assert!(env.kubelet.delete_pod_and_pvc(NS, "demo-2"), "the kubelet had demo-2");
    let mut phases = BTreeSet::new();
    let st = wait_status(&env.kvcs, Duration::from_secs(240), "demo-2 replaced by a new store", &mut phases, |s| {
        settled(s, 3) && s.stores.iter().find(|e| e.pod == "demo-2").is_some_and(|e| e.store_id != old)
    })
    .await;
    eprintln!("replaced: {} (phases {phases:?})", summary(&st));
    assert!(phases.contains("Replacing"), "phases seen: {phases:?}");
    let new = st.stores.iter().find(|e| e.pod == "demo-2").expect("demo-2").store_id;
    assert!(!stores_before.iter().any(|s| s.0 == new), "store {new} is not new: {stores_before:?}");
    for pod in ["demo-0", "demo-1"] {
        assert!(store_ids(&st).contains(&(pod.to_string(), ids_before.iter().find(|p| p.0 == pod).expect("id").1)), "{pod} kept its store");
    }
    let kv = env.kv(0..3);
    let stores =
        wait_until(Duration::from_secs(60), Duration::from_millis(500), "the cluster lists its stores", || cluster_stores(&kv)).await;
    let old_state = stores.iter().find(|s| s.0 == old).map(|s| s.2);
    assert_eq!(old_state, Some(StoreState::Tombstone), "the old store of demo-2: {stores:?}");
    let live: Vec<_> = stores.iter().filter(|s| s.2 != StoreState::Tombstone).collect();
    assert_eq!(live.len(), 3, "{stores:?}");
    assert!(live.iter().all(|s| s.2 == StoreState::Up), "{stores:?}");

    // One join, one drain, one removal, and no volume deleted.
    let reasons = env.event_reasons();
    for (reason, n) in [("JoinStore", 1), ("DrainStore", 1), ("RemoveStore", 1), ("DeleteVolume", 0)] {
        assert_eq!(count(&reasons, reason), n, "{reason}: {reasons:?}");
    }
    for op in ["join", "drain", "remove"] {
        let n = operator.metric("shoal_operator_membership_operations_total", &[("operation", op), ("outcome", "ok")]).await;
        assert_eq!(n, Some(1.0), "{op} operations");
    }
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), NS);
    let claims: BTreeSet<String> =
        pvcs.list(&Default::default()).await.expect("pvcs").items.into_iter().filter_map(|p| p.metadata.name).collect();
    let want: BTreeSet<String> = (0..3).map(|i| format!("data-demo-{i}")).collect();
    assert_eq!(claims, want, "volumes");
    for claim in &want {
        assert!(env.kubelet.pvc_dir(NS, claim).exists(), "{claim}'s directory");
    }
    check_keys(&kv, "after demo-2's replacement").await;
}

/// Two operator replicas: one holds the Lease and reconciles, the other
/// waits; when the leader is killed (no release of the Lease), the other
/// takes it once it expires and drives the cluster from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_operator_takes_over_when_the_leader_dies() {
    let env = Env::start().await;
    let extra = ["--lease-namespace=default", "--lease-duration-secs=4"];
    let mut ops: Vec<Option<Operator>> = vec![Some(env.operator("op-a", &extra)), Some(env.operator("op-b", &extra))];
    let identities = ["op-a", "op-b"];

    let leader = wait_until(Duration::from_secs(60), Duration::from_millis(200), "exactly one leader", || async {
        let mut flags = Vec::new();
        for op in ops.iter().flatten() {
            flags.push(op.metric("shoal_operator_leader", &[]).await);
        }
        match flags.as_slice() {
            [Some(a), Some(b)] if *a == 1.0 && *b == 0.0 => Ok(0),
            [Some(a), Some(b)] if *a == 0.0 && *b == 1.0 => Ok(1),
            other => Err(format!("leader gauges {other:?}")),
        }
    })
    .await;
    let follower = 1 - leader;
    eprintln!("{} leads", identities[leader]);
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), NS);
    let holder = |l: &Lease| l.spec.as_ref().and_then(|s| s.holder_identity.clone());
    assert_eq!(holder(&leases.get("shoal-operator").await.expect("lease")).as_deref(), Some(identities[leader]));

    env.apply_and_settle().await;
    // The follower did not reconcile at all while it waited for the Lease.
    let f = ops[follower].as_ref().expect("follower");
    assert_eq!(f.metric("shoal_operator_reconciles_total", &[]).await.unwrap_or(0.0), 0.0, "the follower reconciled");
    assert_eq!(f.metric("shoal_operator_leader", &[]).await, Some(0.0));
    assert!(ops[leader].as_mut().expect("leader").is_running(), "the leader lost its Lease by itself");

    // SIGKILL the leader (dropping it kills it): the Lease is not released,
    // so the follower must wait for it to expire and then take it.
    drop(ops[leader].take());
    let f = ops[follower].as_ref().expect("follower");
    wait_until(Duration::from_secs(20), Duration::from_millis(200), "the follower takes the Lease over", || async {
        let gauge = f.metric("shoal_operator_leader", &[]).await;
        let lease = leases.get("shoal-operator").await.map_err(|e| e.to_string())?;
        let h = holder(&lease);
        if gauge == Some(1.0) && h.as_deref() == Some(identities[follower]) {
            Ok(())
        } else {
            Err(format!("gauge {gauge:?}, holder {h:?}"))
        }
    })
    .await;
    let lease = leases.get("shoal-operator").await.expect("lease");
    let spec = lease.spec.expect("lease spec");
    assert_eq!(spec.lease_transitions, Some(1), "one change of holder: {spec:?}");
    assert_eq!(spec.lease_duration_seconds, Some(4));

    // The new leader does the work: scale to 4.
    env.kvcs.patch_scale("demo", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 4 } }))).await.expect("scale to 4");
    let mut phases = BTreeSet::new();
    let st = wait_status(&env.kvcs, Duration::from_secs(240), "4 stores up", &mut phases, |s| settled(s, 4)).await;
    eprintln!("scaled out by the new leader: {}", summary(&st));
    assert!(phases.contains("ScalingOut"), "phases seen: {phases:?}");
    assert_eq!(env.sts_replicas().await, Some(4));
    let f = ops[follower].as_mut().expect("follower");
    assert_eq!(f.metric("shoal_operator_membership_operations_total", &[("operation", "join"), ("outcome", "ok")]).await, Some(1.0));
    assert!(f.is_running(), "the new leader exited");
    assert_eq!(count(&env.event_reasons(), "JoinStore"), 1);
}

/// `spec.replicas` below the replication factor, which the CRD's CEL rule
/// would refuse but an old CRD or `--validate=false` lets through: the
/// operator reports it and leaves the cluster alone until the spec is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invalid_spec_is_reported_and_changes_nothing() {
    let env = Env::start().await;
    let operator = env.operator("operator-a", &["--lease-namespace=default"]);
    env.apply_and_settle().await;
    let kv = env.kv(0..3);
    let stores_before = cluster_stores(&kv).await.expect("list stores");

    let patched = env
        .kvcs
        .patch("demo", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 2 } })))
        .await
        .expect("patch replicas to 2");
    let generation = patched.metadata.generation;
    let mut phases = BTreeSet::new();
    // 20 s: less than the 30 s a settled cluster waits between rounds, so the
    // change itself must have woken the operator.
    let st = wait_status(&env.kvcs, Duration::from_secs(20), "Degraded/InvalidSpec", &mut phases, |s| {
        s.phase.as_deref() == Some("Degraded")
            && condition(s, "Degraded").is_some_and(|c| c.0 == "True" && c.1 == "InvalidSpec")
            && s.observed_generation == generation
    })
    .await;
    let (_, _, message) = condition(&st, "Degraded").expect("Degraded");
    assert!(message.contains("replicas") && message.contains("replicationFactor"), "message: {message}");
    assert!(st.scaling.is_none(), "an invalid spec started a scaling: {}", summary(&st));

    // Nothing changes. This checks for the absence of an action, which no
    // wait can observe: look five times, a second apart.
    for i in 0..5 {
        assert_eq!(env.sts_replicas().await, Some(3), "observation {i}: the StatefulSet was resized");
        let stores = cluster_stores(&kv).await.expect("list stores");
        assert_eq!(stores, stores_before, "observation {i}: the stores changed");
        for p in 0..3 {
            assert!(env.kubelet.is_running(NS, &format!("demo-{p}")), "observation {i}: demo-{p} stopped");
        }
        let s = env.kvcs.get("demo").await.expect("get").status.unwrap_or_default();
        assert!(s.phase.as_deref() == Some("Degraded") && s.scaling.is_none(), "observation {i}: {}", summary(&s));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let reasons = env.event_reasons();
    assert!(count(&reasons, "InvalidSpec") >= 1, "{reasons:?}");
    let warned = env.server.store().list(&resources::EVENTS, Some(NS)).iter().any(|e| {
        e["reason"] == "InvalidSpec"
            && e["type"] == "Warning"
            && e["note"].as_str().or(e["message"].as_str()).is_some_and(|m| m.contains("replicationFactor"))
    });
    assert!(warned, "no Warning Event InvalidSpec naming replicationFactor: {reasons:?}");
    assert_eq!(count(&reasons, "DrainStore") + count(&reasons, "ScalingStarted"), 0, "{reasons:?}");
    let errors = operator.metric("shoal_operator_reconcile_errors_total", &[("reason", "invalid_spec")]).await;
    assert!(errors.unwrap_or(0.0) >= 1.0, "invalid_spec errors: {errors:?}");

    // Fixed: Degraded goes back to False and the cluster is as it was.
    let patched = env
        .kvcs
        .patch("demo", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 3 } })))
        .await
        .expect("patch replicas back to 3");
    let generation = patched.metadata.generation;
    let st = wait_status(&env.kvcs, Duration::from_secs(20), "Degraded back to False", &mut phases, |s| {
        condition(s, "Degraded").is_some_and(|c| c.0 == "False") && s.observed_generation == generation
    })
    .await;
    eprintln!("fixed: {}", summary(&st));
    wait_status(&env.kvcs, Duration::from_secs(60), "settled at 3", &mut phases, |s| settled(s, 3)).await;
    assert_eq!(cluster_stores(&kv).await.expect("list stores"), stores_before);
    assert_eq!(env.sts_replicas().await, Some(3));
}

/// Deletes the KvCluster `demo` (uid `uid`) and waits until it and every
/// child are gone and no pod process runs; its `pods` volumes must be kept.
async fn delete_and_wait_gone(env: &Env, uid: &str, pods: usize) {
    use shoal_tests::kube::resources::{CONFIGMAPS, PODDISRUPTIONBUDGETS, PODS, SERVICES, STATEFULSETS};
    env.kvcs.delete("demo", &Default::default()).await.expect("delete the KvCluster");
    let store = env.server.store();
    wait_until(Duration::from_secs(60), Duration::from_millis(200), "the KvCluster, its children and pods gone", || async {
        let kvc = env.kvcs.get_opt("demo").await.map_err(|e| e.to_string())?;
        let mut left: Vec<String> = Vec::new();
        if let Some(k) = kvc {
            left.push(format!("KvCluster (finalizers {:?}, deleting {:?})", k.metadata.finalizers, k.metadata.deletion_timestamp));
        }
        for (res, name) in [
            (&STATEFULSETS, "demo"),
            (&SERVICES, "demo"),
            (&SERVICES, "demo-peer"),
            (&CONFIGMAPS, "demo-config"),
            (&PODDISRUPTIONBUDGETS, "demo"),
        ] {
            if store.get(res, NS, name).is_some() {
                left.push(format!("{} {name}", res.kind));
            }
        }
        for p in store.list(&PODS, Some(NS)) {
            left.push(format!("Pod {}", p["metadata"]["name"]));
        }
        for i in 0..pods {
            if env.kubelet.is_running(NS, &format!("demo-{i}")) {
                left.push(format!("process of demo-{i}"));
            }
        }
        if left.is_empty() { Ok(()) } else { Err(format!("still there: {left:?}")) }
    })
    .await;
    // Nothing owned by the deleted KvCluster is left anywhere in the namespace.
    for res in [&STATEFULSETS, &SERVICES, &CONFIGMAPS, &PODDISRUPTIONBUDGETS] {
        for obj in store.list(res, Some(NS)) {
            let owned = obj["metadata"]["ownerReferences"].as_array().is_some_and(|o| o.iter().any(|r| r["uid"] == uid));
            assert!(!owned, "{} {} still owned by the deleted KvCluster", res.kind, obj["metadata"]["name"]);
        }
    }
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), NS);
    let claims: BTreeSet<String> =
        pvcs.list(&Default::default()).await.expect("pvcs").items.into_iter().filter_map(|p| p.metadata.name).collect();
    let want: BTreeSet<String> = (0..pods).map(|i| format!("data-demo-{i}")).collect();
    assert_eq!(claims, want, "the volumes are kept");
    for claim in &want {
        assert!(env.kubelet.pvc_dir(NS, claim).exists(), "{claim}'s directory");
    }
    let reasons = event_reasons(&env.server, Some(uid));
    assert!(count(&reasons, "Deleting") >= 1, "no Deleting Event for the deleted KvCluster: {reasons:?}");
}

/// Creates `demo` with `replicas` and returns its uid.
async fn create_cluster(env: &Env, replicas: i32) -> String {
    let mut kvc: KvCluster = demo_cluster();
    kvc.spec.replicas = replicas;
    let created = env.kvcs.create(&PostParams::default(), &kvc).await.expect("re-create the KvCluster");
    created.metadata.uid.expect("uid")
}

/// Deleting a KvCluster keeps its volumes; a KvCluster of the same name
/// created over them restarts the same cluster (the same stores, none
/// bootstrapped anew, every key there), and one with more replicas brings
/// the kept stores back and joins new ones for the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_recreated_over_its_kept_volumes_comes_back_whole() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let env = Env::start().await;
    let _operator = env.operator("operator-a", &["--lease-namespace=default"]);

    // 1. A formed cluster with data.
    let before = env.apply_and_settle().await;
    let ids_before = store_ids(&before);
    let first_uid = env.kvcs.get("demo").await.expect("get").metadata.uid.expect("uid");
    write_keys(&env.kv(0..3)).await;
    let stores_before = cluster_stores(&env.kv(0..3)).await.expect("list stores");
    assert_eq!(stores_before.len(), 3, "{stores_before:?}");
    assert!(stores_before.iter().all(|s| s.2 == StoreState::Up), "{stores_before:?}");

    // 2. Delete it: the finalizer lets it go after a Deleting Event, the
    // children and pods go with it, the volumes stay.
    delete_and_wait_gone(&env, &first_uid, 3).await;

    // 3. The same KvCluster again: the same three stores come back.
    let uid = create_cluster(&env, 3).await;
    assert_ne!(uid, first_uid, "a new object");
    let mut phases = BTreeSet::new();
    let st = wait_status(&env.kvcs, Duration::from_secs(180), "re-created and settled at 3", &mut phases, |s| settled(s, 3)).await;
    eprintln!("re-created: {} (phases {phases:?})", summary(&st));
    assert_eq!(store_ids(&st), ids_before, "the kept volumes' stores: {}", summary(&st));
    assert!(st.bootstrapped, "{}", summary(&st));
    assert!(!phases.contains("Bootstrapping"), "a formed cluster was bootstrapped again: phases {phases:?}");
    let cm = Api::<ConfigMap>::namespaced(env.client.clone(), NS).get("demo-config").await.expect("config map");
    assert_eq!(cm.data.as_ref().map(|d| d["initial-cluster-state"].as_str()), Some("existing"));
    assert_eq!(env.sts_replicas().await, Some(3));
    let kv = env.kv(0..3);
    let stores = wait_until(Duration::from_secs(60), Duration::from_millis(500), "the 3 kept stores Up", || async {
        let stores = cluster_stores(&kv).await?;
        if stores.iter().all(|s| s.2 == StoreState::Up) { Ok(stores) } else { Err(format!("{stores:?}")) }
    })
    .await;
    assert_eq!(stores, stores_before, "the cluster's stores after the re-creation");
    let reasons = event_reasons(&env.server, Some(&uid));
    eprintln!("events of the re-created KvCluster: {reasons:?}");
    assert!(count(&reasons, "RecreateStatefulSet") >= 1, "{reasons:?}");
    for reason in ["Bootstrap", "JoinStore", "DrainStore", "RemoveStore", "DeleteVolume"] {
        assert_eq!(count(&reasons, reason), 0, "{reason}: {reasons:?}");
    }
    check_keys(&kv, "after the re-creation").await;

    // 4. Delete it again and re-create it with 5 replicas over the 3 kept
    // volumes: the 3 stores come back, 2 new ones are joined.
    delete_and_wait_gone(&env, &uid, 3).await;
    let uid5 = create_cluster(&env, 5).await;
    let mut phases = BTreeSet::new();
    let st = wait_status(&env.kvcs, Duration::from_secs(240), "re-created and settled at 5", &mut phases, |s| settled(s, 5)).await;
    eprintln!("re-created with 5: {} (phases {phases:?})", summary(&st));
    assert!(!phases.contains("Bootstrapping"), "phases {phases:?}");
    let ids5 = store_ids(&st);
    assert_eq!(&ids5[..3], &ids_before[..], "the kept stores: {}", summary(&st));
    let new: Vec<u64> = ids5[3..].iter().map(|p| p.1).collect();
    assert!(new.iter().all(|id| !stores_before.iter().any(|s| s.0 == *id)), "new stores {new:?} vs {stores_before:?}");
    assert_eq!(env.sts_replicas().await, Some(5));
    let kv = env.kv(0..5);
    let stores = wait_until(Duration::from_secs(60), Duration::from_millis(500), "5 stores Up", || async {
        let stores = cluster_stores(&kv).await?;
        if stores.len() == 5 && stores.iter().all(|s| s.2 == StoreState::Up) { Ok(stores) } else { Err(format!("{stores:?}")) }
    })
    .await;
    let listed: BTreeSet<u64> = stores.iter().map(|s| s.0).collect();
    let want: BTreeSet<u64> = ids5.iter().map(|p| p.1).collect();
    assert_eq!(listed, want, "{stores:?}");
    let reasons = event_reasons(&env.server, Some(&uid5));
    eprintln!("events of the KvCluster re-created with 5: {reasons:?}");
    assert!(count(&reasons, "RecreateStatefulSet") >= 1, "{reasons:?}");
    assert_eq!(count(&reasons, "Bootstrap"), 0, "{reasons:?}");
    assert_eq!(count(&reasons, "JoinStore"), 2, "one join per new store: {reasons:?}");
    for reason in ["DrainStore", "RemoveStore", "DeleteVolume"] {
        assert_eq!(count(&reasons, reason), 0, "{reason}: {reasons:?}");
    }
    check_keys(&kv, "after the re-creation with 5").await;
}
