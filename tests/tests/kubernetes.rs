//! The operator on a real Kubernetes control plane (DESIGN testing level 4):
//! kube-apiserver, kube-controller-manager, kube-scheduler and etcd built
//! from the Kubernetes Go modules, with our node agent as the only kubelet,
//! whose pods are real `shoal-node` and `shoal-operator` processes.
//!
//! `helm install` the chart (the operator runs as a pod of the release, with
//! the chart's ServiceAccount, through real RBAC) → `kubectl apply` the
//! example `KvCluster` (with 128 KiB regions, so that the keys make several) → `kubectl wait --for=condition=Available` → write
//! 10,000 keys → `kubectl scale --replicas=5` (two stores join and are
//! seeded) → `--replicas=3` (two stores drained and tombstoned; their
//! volumes deleted only after that) → every key reads back →
//! `--replicas=2` is refused by the API server's CEL rule.
//!
//! Failures and changes on a running cluster: a pod whose volume claim is
//! deleted comes back as a new store, the old one drained and tombstoned; a
//! rolling change of `spec.image` restarts the pods one at a time, highest
//! ordinal first, while writes run through it (each stopping node hands its
//! leaders over first: the writers see no error, and the longest stall is
//! reported); a SIGKILLed pod comes back as the same store.
//!
//! The operator's own life: with a verb missing from its Role it reports the
//! API server's Forbidden in the status and as an Event; `helm upgrade` (the
//! real chart, two replicas) fixes it; when the Lease holder is killed the
//! other replica takes over and finishes a scaling; a changed CRD applied
//! over the live one keeps the cluster; `helm uninstall` leaves nothing of
//! the release behind.
//!
//! With `spec.tls` (operator-managed) and `spec.networkPolicy`: the
//! NetworkPolicy's operator selector picks the operator's pod; the operator makes the CA and the
//! certificates, drives a scale-out and a scale-in through mutual TLS with its
//! own certificate; the application certificate reads and writes but may not
//! drain; plaintext and foreign clients are refused; the stores' Secret,
//! deleted, is issued again and served by every store without a restart while
//! writes run; the mode is immutable.
//!
//! A scale-in called off half way (4 → 3 → 4 while demo-3 drains, snapshots
//! throttled so that the drain lasts): the drain is cancelled, no store is
//! removed, every key reads back; then `storage.size` 10Gi → 20Gi expands
//! every PVC and re-creates the StatefulSet around the same pods, and a
//! smaller size is refused.
//!
//! On four nodes in three zones: one store per node, each labelled with its
//! node's zone, every region with a replica in each zone; then a node lost
//! for good strands its store's pod (its local volume is pinned there); the
//! operator gives the pod a new volume, it comes back on another node as a new
//! store, and the old store is retired.
//!
//! Backups: a `KvBackup` to S3 (moto on loopback, settings from a Secret),
//! restored into a new `KvCluster` by `spec.restoreFrom` with every key; a
//! scheduled `KvBackup` keeps the newest.
//!
//! Deleting a `KvCluster` lets the real garbage collector take its children
//! and pods but keeps the volumes; the same `KvCluster` applied again comes
//! back as the same stores with every key, never bootstrapped a second time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use shoal_client::pki;
use shoal_client::{Client, ClientError, ClientOptions, ClientTls, Mutation, ReadConsistency};
use shoal_operator::crd::KvCluster;
use shoal_proto::{StoreState, mutation};
use shoal_tests::k8s::{self, Env, repo_root};
use shoal_tests::kvcluster::{condition, event_reasons, key, settled, summary, value, wait_status};
use shoal_tests::wait_until;

const NS: &str = "default";
const KEYS: usize = 10_000;
const OPERATOR_NS: &str = "shoal-system";

/// `helm install` the operator chart and wait for its Deployment.
fn install_operator(env: &Env, extra: &[&str]) {
    helm_operator(env, "install", &repo_root().join("charts/shoal-operator"), extra);
}

/// `helm install|upgrade` the operator chart at `chart` and wait for its Deployment.
fn helm_operator(env: &Env, verb: &str, chart: &std::path::Path, extra: &[&str]) {
    let mut args = vec![
        verb,
        "shoal-operator",
        chart.to_str().expect("a UTF-8 path"),
        "--namespace",
        OPERATOR_NS,
        "--create-namespace",
        "--set",
        "image.tag=test",
        "--set",
        "logLevel=info\\,shoal_operator=debug",
        "--wait",
        "--timeout",
        "180s",
    ];
    args.extend_from_slice(extra);
    env.helm_ok(&args);
}

/// `examples/kvcluster.yaml` with small regions (128 KiB instead of 96 MiB),
/// so that 10,000 keys make several regions and scaling moves some of them;
/// the path of that copy.
fn example(env: &Env) -> String {
    example_with(env, "")
}

/// The same, with `spec_tail` (YAML indented as a field of `spec`) appended:
/// the example ends inside `spec`.
fn example_with(env: &Env, spec_tail: &str) -> String {
    let text = std::fs::read_to_string(repo_root().join("examples/kvcluster.yaml")).expect("the example");
    let big = "regionSplitSize: 100663296";
    assert!(text.contains(big), "the example's regionSplitSize changed: update this test");
    let path = env.control_plane.dir().join("kvcluster.yaml");
    std::fs::write(&path, text.replace(big, "regionSplitSize: 131072") + spec_tail).expect("write the example");
    path.to_str().expect("a UTF-8 path").to_string()
}

/// Who holds each of `pods`' stores: pod → store id, from the status.
fn store_ids(kvc: &KvCluster) -> BTreeMap<String, u64> {
    kvc.status.as_ref().map(|s| s.stores.iter().map(|e| (e.pod.clone(), e.store_id)).collect()).unwrap_or_default()
}

async fn store_state(client: &Client, id: u64) -> Result<Option<StoreState>, String> {
    let stores = client.list_stores().await.map_err(|e| format!("ListStores: {e}"))?;
    Ok(stores.iter().find_map(|d| d.store.as_ref().filter(|m| m.id == id).map(|m| m.state())))
}

#[test]
fn helm_install_apply_scale_out_and_in() {
    k8s::run(|env| async move {
        // 1. helm install; kubectl apply; kubectl wait.
        install_operator(&env, &[]);
        let deploy = Api::<Deployment>::namespaced(env.client.clone(), OPERATOR_NS).get("shoal-operator").await.expect("the Deployment");
        assert_eq!(deploy.status.and_then(|s| s.available_replicas), Some(1), "helm --wait saw the operator available");
        env.kubectl_ok(&["apply", "-n", NS, "-f", &example(&env)]);
        let waited = env.kubectl(&["wait", "-n", NS, "kvcluster/demo", "--for=condition=Available", "--timeout=240s"]);
        let kvcs: Api<KvCluster> = Api::namespaced(env.client.clone(), NS);
        if !waited.status.success() {
            let st = kvcs.get("demo").await.ok().and_then(|k| k.status).unwrap_or_default();
            panic!("kubectl wait: {}\n{}", String::from_utf8_lossy(&waited.stderr), summary(&st));
        }
        let mut phases = BTreeSet::new();
        let st = wait_status(&kvcs, Duration::from_secs(120), "3 stores up", &mut phases, |s| settled(s, 3)).await;
        eprintln!("bootstrapped: {}", summary(&st));
        // The operator's own metrics (its pod's address, the chart's port):
        // valid exposition, and this cluster's gauges as its status says.
        let gauges = [("namespace", NS), ("cluster", "demo")];
        let metrics = wait_until(Duration::from_secs(30), Duration::from_millis(200), "the operator's cluster gauges", || async {
            let text = operator_metrics(&env).await?;
            let up = shoal_tests::parse_metric(&text, "shoal_operator_cluster_up_stores", &gauges);
            if up == Some(3.0) { Ok(text) } else { Err(format!("up stores {up:?}")) }
        })
        .await;
        shoal_tests::promtool_check(&metrics).unwrap_or_else(|e| panic!("operator: {e}"));
        assert_eq!(shoal_tests::parse_metric(&metrics, "shoal_operator_cluster_desired_stores", &gauges), Some(3.0));
        assert_eq!(shoal_tests::parse_metric(&metrics, "shoal_operator_cluster_degraded", &gauges), Some(0.0));
        assert!(shoal_tests::parse_metric(&metrics, "shoal_operator_reconciles_total", &[("result", "ok")]).unwrap_or(0.0) >= 1.0);
        let table = env.kubectl_ok(&["get", "kvc", "-n", NS]);
        let header: Vec<&str> = table.lines().next().unwrap_or("").split_whitespace().collect();
        assert_eq!(header, ["NAME", "REPLICAS", "READY", "PHASE", "AGE"], "kubectl get kvc:\n{table}");
        let row: Vec<&str> = table.lines().nth(1).unwrap_or("").split_whitespace().collect();
        assert_eq!(&row[..4], ["demo", "3", "3", "Running"], "kubectl get kvc:\n{table}");

        // 2. 10,000 keys through the client Service's name and client port;
        // meta hands out every store's client address.
        let kv = demo_client();
        write_keys(&kv).await;
        let listed: BTreeMap<String, String> =
            kv.list_stores().await.expect("list stores").into_iter().filter_map(|d| d.store).map(|s| (s.name, s.client_address)).collect();
        let want: BTreeMap<String, String> =
            (0..3).map(|i| (format!("demo-{i}"), format!("demo-{i}.demo-peer.default.svc:20161"))).collect();
        assert_eq!(listed, want, "the stores' client addresses");

        // 3a. Paused: the scale to 5 is seen (status) but not acted on.
        env.kubectl_ok(&["patch", "-n", NS, "kvc/demo", "--type", "merge", "-p", r#"{"spec":{"paused":true}}"#]);
        env.kubectl_ok(&["scale", "-n", NS, "kvc/demo", "--replicas=5"]);
        let scaled = kvcs.get("demo").await.expect("get").metadata.generation;
        wait_status(&kvcs, Duration::from_secs(60), "the paused cluster observing the scale", &mut phases, |s| {
            s.phase.as_deref() == Some("Paused") && s.observed_generation == scaled
        })
        .await;
        let sts: Api<StatefulSet> = Api::namespaced(env.client.clone(), NS);
        assert_eq!(sts.get("demo").await.expect("sts").spec.and_then(|s| s.replicas), Some(3), "paused: the StatefulSet is left alone");
        let uid = kvcs.get("demo").await.expect("get").metadata.uid;
        wait_until(Duration::from_secs(30), Duration::from_millis(200), "a Paused event", || async {
            let reasons = event_reasons(&env.client, NS, uid.as_deref()).await;
            if reasons.iter().any(|r| r == "Paused") { Ok(()) } else { Err(format!("{reasons:?}")) }
        })
        .await;

        // 3. Unpaused, the scale to 5 goes on: two stores join and are seeded.
        env.kubectl_ok(&["patch", "-n", NS, "kvc/demo", "--type", "merge", "-p", r#"{"spec":{"paused":false}}"#]);
        let st = wait_status(&kvcs, Duration::from_secs(300), "5 stores up", &mut phases, |s| {
            settled(s, 5) && s.stores.iter().filter(|e| e.pod == "demo-3" || e.pod == "demo-4").all(|e| e.regions > 0)
        })
        .await;
        eprintln!("scaled out: {}", summary(&st));
        assert!(phases.contains("ScalingOut"), "phases seen: {phases:?}");
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), NS);
        for claim in ["data-demo-3", "data-demo-4"] {
            let pvc = pvcs.get(claim).await.expect("the new store's volume claim");
            assert_eq!(pvc.status.and_then(|s| s.phase).as_deref(), Some("Bound"), "{claim}");
        }
        let ids = store_ids(&kvcs.get("demo").await.expect("get"));
        let retired: Vec<(String, u64)> = ["demo-3", "demo-4"].iter().map(|p| (format!("data-{p}"), ids[*p])).collect();

        // 4. kubectl scale to 3: drained and tombstoned first, volumes deleted after.
        env.kubectl_ok(&["scale", "-n", NS, "kvc/demo", "--replicas=3"]);
        let gone = std::sync::Mutex::new(BTreeSet::new());
        wait_until(Duration::from_secs(300), Duration::from_millis(200), "demo-3 and demo-4 retired, their volumes deleted", || async {
            for (claim, id) in &retired {
                if gone.lock().expect("gone").contains(claim) {
                    continue;
                }
                if pvcs.get_opt(claim).await.map_err(|e| e.to_string())?.is_none() {
                    let state = store_state(&kv, *id).await;
                    assert_eq!(state, Ok(Some(StoreState::Tombstone)), "{claim} was deleted while store {id} was {state:?}");
                    gone.lock().expect("gone").insert(claim.clone());
                }
            }
            let gone = gone.lock().expect("gone");
            if gone.len() == retired.len() { Ok(()) } else { Err(format!("volumes deleted: {gone:?}")) }
        })
        .await;
        let st = wait_status(&kvcs, Duration::from_secs(120), "back to 3 stores", &mut phases, |s| settled(s, 3) && s.replicas == 3).await;
        eprintln!("scaled in: {}", summary(&st));
        assert!(phases.contains("ScalingIn"), "phases seen: {phases:?}");
        // The released volumes were deleted by the provisioner, directories and all.
        let pvs: Api<PersistentVolume> = Api::all(env.client.clone());
        wait_until(Duration::from_secs(60), Duration::from_millis(200), "the released volumes deleted", || async {
            let left: Vec<String> = pvs
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .into_iter()
                .filter(|pv| {
                    pv.spec
                        .as_ref()
                        .and_then(|s| s.claim_ref.as_ref())
                        .and_then(|c| c.name.clone())
                        .is_some_and(|n| n.ends_with("demo-3") || n.ends_with("demo-4"))
                })
                .filter_map(|pv| pv.metadata.name)
                .collect();
            if left.is_empty() { Ok(()) } else { Err(format!("volumes left: {left:?}")) }
        })
        .await;
        assert!(!env.agent.is_running(NS, "demo-3") && !env.agent.is_running(NS, "demo-4"), "the retired pods still run");

        // 5. Every key reads back.
        check_keys(&kv, "after scaling to 5 and back to 3").await;

        // 6. Below the replication factor: the API server's CEL rule refuses it.
        let out = env.kubectl(&["scale", "-n", NS, "kvc/demo", "--replicas=2"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "scaling to 2 was accepted");
        assert!(stderr.contains("replicas must be at least replicationFactor"), "kubectl scale --replicas=2: {stderr}");
        assert_eq!(kvcs.get("demo").await.expect("get").spec.replicas, 3);
    });
}

/// The operator pod's `/metrics` (port `metrics`, 8080 in the chart).
async fn operator_metrics(env: &Env) -> Result<String, String> {
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), OPERATOR_NS);
    let list = pods.list(&Default::default()).await.map_err(|e| e.to_string())?;
    let ip = list
        .items
        .iter()
        .filter(|p| p.metadata.name.as_deref().is_some_and(|n| n.starts_with("shoal-operator")))
        .find_map(|p| p.status.as_ref()?.pod_ip.clone())
        .ok_or("no operator pod with an address")?;
    let (code, body) = shoal_tests::try_http_get(&format!("{ip}:8080"), "/metrics", Duration::from_secs(5)).await?;
    if code == 200 { Ok(body) } else { Err(format!("operator /metrics: HTTP {code}")) }
}

/// Applies the example cluster and waits until its 3 stores are up.
async fn apply_example(env: &Env) -> Api<KvCluster> {
    apply_example_with(env, "").await
}

async fn apply_example_with(env: &Env, spec_tail: &str) -> Api<KvCluster> {
    env.kubectl_ok(&["apply", "-n", NS, "-f", &example_with(env, spec_tail)]);
    let kvcs: Api<KvCluster> = Api::namespaced(env.client.clone(), NS);
    let mut phases = BTreeSet::new();
    let st = wait_status(&kvcs, Duration::from_secs(300), "3 stores up", &mut phases, |s| settled(s, 3)).await;
    eprintln!("bootstrapped: {}", summary(&st));
    kvcs
}

/// `kubectl apply` the example with 4 replicas and `config_line` added to
/// `spec.config`; waits until the 4 stores are up. The phases seen so far.
async fn apply_four_stores_with(env: &Env, config_line: &str) -> (Api<KvCluster>, BTreeSet<String>) {
    let path = example(env);
    let text = std::fs::read_to_string(&path).expect("the example copy");
    assert!(text.contains("  replicas: 3\n"), "the example's replicas changed: update this test");
    let text = text
        .replace("  replicas: 3\n", "  replicas: 4\n")
        .replace("regionSplitSize: 131072", &format!("regionSplitSize: 131072\n    {config_line}"));
    std::fs::write(&path, text).expect("write");
    env.kubectl_ok(&["apply", "-n", NS, "-f", &path]);
    let kvcs: Api<KvCluster> = Api::namespaced(env.client.clone(), NS);
    let mut phases = BTreeSet::new();
    wait_status(&kvcs, Duration::from_secs(300), "4 stores up", &mut phases, |s| settled(s, 4)).await;
    (kvcs, phases)
}

fn demo_client() -> Client {
    demo_client_with(None)
}

/// An application's client: the client Service's client port, as the docs say.
fn demo_client_with(tls: Option<ClientTls>) -> Client {
    Client::new(&["demo.default.svc:20161".to_string()], ClientOptions { tls, ..ClientOptions::default() }).expect("client")
}

async fn write_keys(kv: &Client) {
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(500) {
        let muts =
            chunk.iter().map(|&i| Mutation { op: mutation::Op::Put as i32, cf: "users".into(), key: key(i), value: value(i) }).collect();
        kv.batch_write(muts).await.expect("write keys");
    }
}

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

/// What writers running through a change saw.
#[derive(Debug, Default)]
struct WriteRun {
    acked: u64,
    errors: Vec<String>,
    /// The longest time one writer went without an acknowledged write.
    longest_stall: Duration,
}

/// `n` writers, each putting keys `roll/<w>/<i>` one at a time until `stop`.
fn start_writers(kv: Arc<Client>, n: usize, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<WriteRun>> {
    (0..n)
        .map(|w| {
            let (kv, stop) = (kv.clone(), stop.clone());
            tokio::spawn(async move {
                let mut run = WriteRun::default();
                let mut last = Instant::now();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("roll/{w}/{:06}", i % 1000);
                    match kv.put("users", key.as_bytes(), format!("v{i}").as_bytes()).await {
                        Ok(()) => {
                            run.acked += 1;
                            run.longest_stall = run.longest_stall.max(last.elapsed());
                            last = Instant::now();
                        }
                        Err(e) => run.errors.push(format!("{key}: {e}")),
                    }
                    i += 1;
                }
                run
            })
        })
        .collect()
}

async fn pod_uids(pods: &Api<Pod>) -> BTreeMap<String, String> {
    let list = pods.list(&kube::api::ListParams::default().labels("app.kubernetes.io/instance=demo")).await.expect("list pods");
    list.items.into_iter().filter_map(|p| Some((p.metadata.name?, p.metadata.uid?))).collect()
}

#[test]
fn rolling_change_kill_and_lost_volume() {
    k8s::run(|env| async move {
        install_operator(&env, &[]);
        let kvcs = apply_example(&env).await;
        let kv = Arc::new(demo_client());
        write_keys(&kv).await;
        let ids_first = store_ids(&kvcs.get("demo").await.expect("get"));
        let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);

        // 1. demo-2 loses its volume: the claim is deleted (PVC protection
        // holds it until the pod is gone), then the pod; the StatefulSet
        // makes both anew, and the empty store joins as a new one.
        let old = ids_first["demo-2"];
        env.kubectl_ok(&["delete", "pvc", "-n", NS, "data-demo-2", "--wait=false"]);
        env.kubectl_ok(&["delete", "pod", "-n", NS, "demo-2", "--wait=false"]);
        let mut phases = BTreeSet::new();
        let st = wait_status(&kvcs, Duration::from_secs(300), "demo-2 replaced by a new store", &mut phases, |s| {
            settled(s, 3) && s.stores.iter().find(|e| e.pod == "demo-2").is_some_and(|e| e.store_id != old)
        })
        .await;
        eprintln!("replaced: {} (phases {phases:?})", summary(&st));
        let new = store_ids(&kvcs.get("demo").await.expect("get"))["demo-2"];
        assert!(!ids_first.values().any(|id| *id == new), "store {new} is not new");
        wait_until(Duration::from_secs(60), Duration::from_millis(500), "the old store tombstoned", || async {
            let state = store_state(&kv, old).await;
            if state == Ok(Some(StoreState::Tombstone)) { Ok(()) } else { Err(format!("store {old}: {state:?}")) }
        })
        .await;
        let claim = pvcs_named(&env, "data-demo-2").await.expect("a new claim for demo-2");
        assert_eq!(claim.status.and_then(|s| s.phase).as_deref(), Some("Bound"));
        check_keys(&kv, "after the lost volume").await;
        let ids_before = store_ids(&kvcs.get("demo").await.expect("get"));

        // 2. A rolling change under writes: a new image tag.
        let stop = Arc::new(AtomicBool::new(false));
        let writers = start_writers(kv.clone(), 4, stop.clone());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let uids_before = pod_uids(&pods).await;
        env.kubectl_ok(&["patch", "-n", NS, "kvc/demo", "--type=merge", "-p", r#"{"spec":{"image":"shoal/shoal-node:0.1.1"}}"#]);
        let sts: Api<StatefulSet> = Api::namespaced(env.client.clone(), NS);
        let order = std::sync::Mutex::new(Vec::<String>::new());
        wait_until(Duration::from_secs(300), Duration::from_millis(100), "every pod replaced by the new template", || async {
            let uids = pod_uids(&pods).await;
            let s = sts.get("demo").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
            let mut order = order.lock().expect("order");
            for (pod, uid) in &uids_before {
                if uids.get(pod).is_some_and(|u| u != uid) && !order.contains(pod) {
                    order.push(pod.clone());
                }
            }
            let done =
                order.len() == 3 && s.updated_replicas == Some(3) && s.ready_replicas == Some(3) && s.current_revision == s.update_revision;
            if done { Ok(()) } else { Err(format!("replaced so far {order:?}, sts {s:?}")) }
        })
        .await;
        assert_eq!(*order.lock().expect("order"), ["demo-2", "demo-1", "demo-0"], "highest ordinal first");
        let mut phases = BTreeSet::new();
        wait_status(&kvcs, Duration::from_secs(120), "settled after the roll", &mut phases, |s| settled(s, 3)).await;
        stop.store(true, Ordering::Relaxed);
        let mut total = WriteRun::default();
        for w in writers {
            let run = w.await.expect("writer");
            total.acked += run.acked;
            total.errors.extend(run.errors);
            total.longest_stall = total.longest_stall.max(run.longest_stall);
        }
        eprintln!("rolling change: {} writes acknowledged, longest write stall {:?}", total.acked, total.longest_stall);
        assert!(total.errors.is_empty(), "writes failed during the roll: {:?}", &total.errors[..total.errors.len().min(5)]);
        assert!(total.acked > 0);
        // Each stopped node handed its leaders over before it stopped serving.
        for pod in ["demo-0", "demo-1", "demo-2"] {
            let log = std::fs::read_to_string(env.agent.pod_log_path(NS, pod)).unwrap_or_default();
            assert!(
                log.contains("no region led here any more"),
                "{pod} stopped while leading regions:\n{}",
                env.agent.pod_log_tail(NS, pod, 30)
            );
        }
        let after_roll = kvcs.get("demo").await.expect("get");
        assert_eq!(store_ids(&after_roll), ids_before, "a restart keeps every store");

        // 3. SIGKILL demo-1: the agent restarts it on its volume, as the same store.
        assert!(env.agent.kill_pod(NS, "demo-1"), "demo-1 has a process");
        wait_until(Duration::from_secs(120), Duration::from_millis(200), "demo-1 restarted and Ready", || async {
            let status = pods.get("demo-1").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
            let restarts = status.container_statuses.as_deref().unwrap_or_default().first().map_or(0, |c| c.restart_count);
            let ready = status.conditions.unwrap_or_default().iter().any(|c| c.type_ == "Ready" && c.status == "True");
            if restarts >= 1 && ready { Ok(()) } else { Err(format!("restarts {restarts}, ready {ready}")) }
        })
        .await;
        let st = wait_status(&kvcs, Duration::from_secs(120), "settled after the kill", &mut phases, |s| settled(s, 3)).await;
        assert_eq!(store_ids(&kvcs.get("demo").await.expect("get")), ids_before, "{}", summary(&st));

        check_keys(&kv, "after the lost volume, the roll and the kill").await;
    });
}

async fn pvcs_named(env: &Env, name: &str) -> Option<PersistentVolumeClaim> {
    Api::<PersistentVolumeClaim>::namespaced(env.client.clone(), NS).get_opt(name).await.expect("get pvc")
}

/// A copy of the chart whose rules lack `patch` on StatefulSets.
fn chart_without_statefulset_patch(dir: &std::path::Path) -> std::path::PathBuf {
    let copy = dir.join("shoal-operator");
    let out = std::process::Command::new("cp").arg("-r").arg(repo_root().join("charts/shoal-operator")).arg(&copy).output().expect("cp");
    assert!(out.status.success(), "copy the chart");
    let helpers = copy.join("templates/_helpers.tpl");
    let text = std::fs::read_to_string(&helpers).expect("read _helpers.tpl");
    let rule = "  resources: [\"statefulsets\"]\n  verbs: [\"get\", \"list\", \"watch\", \"create\", \"patch\", \"update\", \"delete\"]";
    assert!(text.contains(rule), "the chart's StatefulSet rule changed: update this test");
    let limited =
        text.replace(rule, "  resources: [\"statefulsets\"]\n  verbs: [\"get\", \"list\", \"watch\", \"create\", \"update\", \"delete\"]");
    std::fs::write(&helpers, limited).expect("write _helpers.tpl");
    copy
}

#[test]
fn operator_rbac_upgrade_failover_crd_upgrade_and_uninstall() {
    k8s::run(|env| async move {
        // 1. A Role without `patch` on StatefulSets: the API server refuses
        // the operator's server-side apply, and the operator says so.
        let work = tempfile::tempdir().expect("tempdir");
        let limited = chart_without_statefulset_patch(work.path());
        helm_operator(&env, "install", &limited, &[]);
        env.kubectl_ok(&["apply", "-n", NS, "-f", &example(&env)]);
        let kvcs: Api<KvCluster> = Api::namespaced(env.client.clone(), NS);
        let mut phases = BTreeSet::new();
        let st = wait_status(&kvcs, Duration::from_secs(120), "Degraded: Forbidden", &mut phases, |s| {
            condition(s, "Degraded").is_some_and(|c| c.0 == "True" && c.1 == "Forbidden")
        })
        .await;
        let (_, _, message) = condition(&st, "Degraded").expect("Degraded");
        assert!(message.contains("statefulsets") && message.contains("forbidden"), "the condition's message: {message}");
        wait_until(Duration::from_secs(60), Duration::from_millis(500), "a Forbidden Event", || async {
            let reasons = event_reasons(&env.client, NS, None).await;
            if reasons.iter().any(|r| r == "Forbidden") { Ok(()) } else { Err(format!("{reasons:?}")) }
        })
        .await;
        let described = env.kubectl_ok(&["describe", "kvc", "-n", NS, "demo"]);
        assert!(described.contains("Forbidden"), "kubectl describe:\n{described}");
        assert!(
            Api::<StatefulSet>::namespaced(env.client.clone(), NS).get_opt("demo").await.expect("get").is_none(),
            "nothing was built without the verb"
        );

        // 2. helm upgrade to the real chart with two replicas: the cluster forms.
        let chart = repo_root().join("charts/shoal-operator");
        helm_operator(&env, "upgrade", &chart, &["--set", "replicaCount=2", "--set", "extraArgs={--lease-duration-secs=4}"]);
        let deploy = Api::<Deployment>::namespaced(env.client.clone(), OPERATOR_NS).get("shoal-operator").await.expect("deployment");
        assert_eq!(deploy.status.and_then(|s| s.ready_replicas), Some(2));
        let st = wait_status(&kvcs, Duration::from_secs(300), "3 stores up", &mut phases, |s| settled(s, 3)).await;
        eprintln!("formed after the upgrade: {}", summary(&st));

        // 3. Kill the Lease holder: the other replica takes the Lease and finishes a scaling.
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(env.client.clone(), OPERATOR_NS);
        let holder = |l: &k8s_openapi::api::coordination::v1::Lease| l.spec.as_ref().and_then(|s| s.holder_identity.clone());
        // (The upgrade rolled the operator pods: the old holder may have just released it.)
        let leader = wait_until(Duration::from_secs(60), Duration::from_millis(200), "a running operator pod holds the Lease", || async {
            match holder(&leases.get("shoal-operator").await.map_err(|e| e.to_string())?) {
                Some(h) if env.agent.pod_ip(OPERATOR_NS, &h).is_some() => Ok(h),
                other => Err(format!("holder {other:?}, pods {:?}", env.agent.pods())),
            }
        })
        .await;
        env.kubectl_ok(&["scale", "-n", NS, "kvc/demo", "--replicas=4"]);
        env.kubectl_ok(&["delete", "pod", "-n", OPERATOR_NS, &leader, "--grace-period=0", "--force"]);
        let new_leader = wait_until(Duration::from_secs(60), Duration::from_millis(200), "another operator holds the Lease", || async {
            let h = holder(&leases.get("shoal-operator").await.map_err(|e| e.to_string())?);
            match h {
                Some(h) if h != leader => Ok(h),
                other => Err(format!("holder {other:?}")),
            }
        })
        .await;
        eprintln!("the Lease moved from {leader} to {new_leader}");
        let st = wait_status(&kvcs, Duration::from_secs(300), "4 stores up", &mut phases, |s| settled(s, 4)).await;
        eprintln!("scaled by the new leader: {}", summary(&st));

        // 4. A changed CRD (one more printer column) applied over the live one.
        let crd = std::fs::read_to_string(repo_root().join("crds/kvcluster.yaml")).expect("the CRD");
        let anchor = "    - jsonPath: .status.phase\n      name: Phase\n      type: string\n";
        assert!(crd.contains(anchor), "the CRD's Phase column moved: update this test");
        let changed = crd.replacen(
            anchor,
            &format!("{anchor}    - jsonPath: .status.bootstrapped\n      name: Bootstrapped\n      type: boolean\n"),
            1,
        );
        let changed_path = work.path().join("kvcluster-crd.yaml");
        std::fs::write(&changed_path, changed).expect("write the changed CRD");
        env.kubectl_ok(&["apply", "--server-side", "--force-conflicts", "-f", changed_path.to_str().expect("path")]);
        let table = wait_until(Duration::from_secs(30), Duration::from_millis(500), "the new column served", || async {
            let t = env.kubectl_ok(&["get", "kvc", "-n", NS]);
            if t.contains("BOOTSTRAPPED") { Ok(t) } else { Err(t) }
        })
        .await;
        assert!(table.lines().nth(1).is_some_and(|l| l.contains("true")), "{table}");
        let kvc = kvcs.get("demo").await.expect("the KvCluster survives the CRD upgrade");
        assert_eq!(kvc.spec.replicas, 4);
        wait_status(&kvcs, Duration::from_secs(60), "still settled", &mut phases, |s| settled(s, 4)).await;

        // 5. helm uninstall: nothing of the release is left.
        env.helm_ok(&["uninstall", "shoal-operator", "--namespace", OPERATOR_NS, "--wait", "--timeout", "120s"]);
        let selector = "app.kubernetes.io/instance=shoal-operator";
        wait_until(Duration::from_secs(120), Duration::from_millis(500), "no object of the release left", || async {
            let left = env.kubectl_ok(&[
                "get",
                "deployments,replicasets,pods,services,serviceaccounts,roles,rolebindings,clusterroles,clusterrolebindings,configmaps,secrets",
                "-A",
                "-l",
                selector,
                "-o",
                "name",
            ]);
            let secrets = env.kubectl_ok(&["get", "secrets", "-n", OPERATOR_NS, "-o", "name"]);
            let releases: Vec<&str> = secrets.lines().filter(|l| l.contains("sh.helm.release")).collect();
            let running: Vec<_> = env.agent.pods().into_iter().filter(|(ns, _)| ns == OPERATOR_NS).collect();
            if left.trim().is_empty() && releases.is_empty() && running.is_empty() {
                Ok(())
            } else {
                Err(format!("left: {left} {releases:?}, operator processes {running:?}"))
            }
        })
        .await;
        // What the user made stays: the CRD (Helm never deletes crds/) and the cluster.
        assert_eq!(kvcs.get("demo").await.expect("the KvCluster stays").spec.replicas, 4);
    });
}

#[test]
fn a_cluster_recreated_over_its_kept_volumes_comes_back_whole() {
    k8s::run(|env| async move {
        install_operator(&env, &[]);
        let kvcs = apply_example(&env).await;
        let kv = demo_client();
        write_keys(&kv).await;
        let ids_before = store_ids(&kvcs.get("demo").await.expect("get"));

        // Delete it: the finalizer lets it go after a Deleting Event; the
        // garbage collector takes the children and pods; the volumes stay.
        env.kubectl_ok(&["delete", "kvc", "-n", NS, "demo", "--wait=true", "--timeout=120s"]);
        wait_until(Duration::from_secs(180), Duration::from_millis(500), "the children and pods gone", || async {
            let left = env.kubectl_ok(&[
                "get",
                "statefulsets,services,configmaps,poddisruptionbudgets,pods",
                "-n",
                NS,
                "-l",
                "app.kubernetes.io/instance=demo",
                "-o",
                "name",
            ]);
            let running: Vec<_> = (0..3).filter(|i| env.agent.is_running(NS, &format!("demo-{i}"))).collect();
            if left.trim().is_empty() && running.is_empty() { Ok(()) } else { Err(format!("left: {left}, processes of {running:?}")) }
        })
        .await;
        let claims = env.kubectl_ok(&["get", "pvc", "-n", NS, "-o", "name"]);
        let claims: BTreeSet<&str> = claims.lines().collect();
        assert_eq!(
            claims,
            BTreeSet::from(["persistentvolumeclaim/data-demo-0", "persistentvolumeclaim/data-demo-1", "persistentvolumeclaim/data-demo-2"])
        );
        let reasons = event_reasons(&env.client, NS, None).await;
        assert!(reasons.iter().any(|r| r == "Deleting"), "{reasons:?}");

        // The same KvCluster again: the same stores, every key, no bootstrap.
        env.kubectl_ok(&["apply", "-n", NS, "-f", &example(&env)]);
        let mut phases = BTreeSet::new();
        let st = wait_status(&kvcs, Duration::from_secs(300), "re-created and settled", &mut phases, |s| settled(s, 3)).await;
        eprintln!("re-created: {} (phases {phases:?})", summary(&st));
        assert!(!phases.contains("Bootstrapping"), "a formed cluster was bootstrapped again: {phases:?}");
        assert_eq!(store_ids(&kvcs.get("demo").await.expect("get")), ids_before, "the kept volumes' stores");
        let uid = kvcs.get("demo").await.expect("get").metadata.uid.expect("uid");
        let reasons = event_reasons(&env.client, NS, Some(&uid)).await;
        assert!(reasons.iter().any(|r| r == "RecreateStatefulSet"), "{reasons:?}");
        assert!(!reasons.iter().any(|r| r == "Bootstrap" || r == "JoinStore"), "{reasons:?}");
        check_keys(&demo_client(), "after the re-creation").await;
    });
}

/// A TLS Secret's `ca.crt`, `tls.crt` and `tls.key`.
async fn tls_secret(env: &Env, name: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let secret = Api::<Secret>::namespaced(env.client.clone(), NS).get(name).await.unwrap_or_else(|e| panic!("Secret {name}: {e}"));
    let data = secret.data.unwrap_or_default();
    let field = |k: &str| data.get(k).map(|v| v.0.clone()).unwrap_or_else(|| panic!("Secret {name} has no {k}"));
    (field("ca.crt"), field("tls.crt"), field("tls.key"))
}

/// `spec.tls.mode: OperatorManaged`: the operator makes a CA and the
/// certificates, the stores serve mutual TLS, the operator's own certificate
/// drives a scale-out and a scale-in, the application certificate it issued
/// reads and writes but may not drain a store, and strangers are refused.
#[test]
fn an_operator_managed_tls_cluster_scales_and_refuses_strangers() {
    k8s::run(|env| async move {
        install_operator(&env, &[]);
        let kvcs = apply_example_with(&env, "  tls:\n    mode: OperatorManaged\n  networkPolicy:\n    enabled: true\n").await;
        // The NetworkPolicy lets in the operator's pods as the chart labels them.
        let policy = Api::<NetworkPolicy>::namespaced(env.client.clone(), NS).get("demo").await.expect("the NetworkPolicy");
        let from = policy.spec.and_then(|s| s.ingress).and_then(|i| i.into_iter().next()).and_then(|r| r.from).expect("gRPC sources");
        let operator = from.iter().find(|p| p.namespace_selector.is_some()).expect("the operator's pods");
        let labels = operator.pod_selector.as_ref().and_then(|s| s.match_labels.clone()).unwrap_or_default();
        let operator_pods = env.kubectl_ok(&[
            "get",
            "pods",
            "-n",
            OPERATOR_NS,
            "-l",
            &labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
            "-o",
            "name",
        ]);
        assert_eq!(operator_pods.lines().count(), 1, "the policy's operator selector picks the operator pod: {labels:?}");
        let uid = kvcs.get("demo").await.expect("get").metadata.uid.expect("uid");
        let reasons = event_reasons(&env.client, NS, Some(&uid)).await;
        assert!(reasons.iter().any(|r| r == "CaCreated") && reasons.iter().any(|r| r == "CertificatesIssued"), "{reasons:?}");

        // The stores' Secret is what the pods mount, signed by the CA in demo-ca.
        let (ca, _, _) = tls_secret(&env, "demo-tls").await;
        let ca_secret = Api::<Secret>::namespaced(env.client.clone(), NS).get("demo-ca").await.expect("the CA's Secret");
        assert_eq!(ca_secret.data.unwrap_or_default().get("ca.crt").map(|v| v.0.clone()), Some(ca.clone()));
        let (app_ca, app_cert, app_key) = tls_secret(&env, "demo-client-tls").await;
        assert_eq!(app_ca, ca);
        let app_tls = ClientTls::from_pem(&ca, Some((&app_cert, &app_key)));
        let app = demo_client_with(Some(app_tls.clone()));
        write_keys(&app).await;

        // Refused at the handshake: plaintext, no certificate, another CA's.
        let rogue_ca = pki::Ca::generate("rogue", Duration::from_secs(3600)).expect("CA");
        let rogue = rogue_ca.issue(&pki::LeafSpec::client("shoal-operator", Duration::from_secs(3600))).expect("cert");
        let quick = |tls| {
            let opts = ClientOptions { tls, deadline: Duration::from_secs(3), ..ClientOptions::default() };
            Client::new(&["demo.default.svc:20160".to_string()], opts).expect("client")
        };
        for (what, tls) in [
            ("plaintext", None),
            ("no client certificate", Some(ClientTls::from_pem(&ca, None))),
            (
                "another CA",
                Some(ClientTls::from_pem(rogue_ca.cert_pem().as_bytes(), Some((rogue.cert_pem.as_bytes(), rogue.key_pem.as_bytes())))),
            ),
        ] {
            let err = quick(tls).get("users", &key(0)).await.expect_err(what);
            assert!(matches!(err, ClientError::Unavailable { .. }), "{what}: {err}");
        }

        // Admin: not served on the client port at all, and on the peer port
        // the application's certificate may not drain a store.
        let ids = store_ids(&kvcs.get("demo").await.expect("get"));
        let denied = app.drain_store(ids["demo-2"]).await.expect_err("a drain on the client port");
        assert!(denied.to_string().contains("no endpoint serves the Admin service"), "{denied}");
        let app_on_peer_port =
            Client::new(&["demo.default.svc:20160".to_string()], ClientOptions { tls: Some(app_tls.clone()), ..ClientOptions::default() })
                .expect("client");
        let denied = app_on_peer_port.drain_store(ids["demo-2"]).await.expect_err("a drain from CN=shoal-client");
        assert!(denied.to_string().contains("shoal-client"), "{denied}");
        assert_eq!(store_state(&app, ids["demo-2"]).await, Ok(Some(StoreState::Up)), "the refused drain changed nothing");

        // The operator's certificate drives membership: 3 → 4 → 3.
        let mut phases = BTreeSet::new();
        env.kubectl_ok(&["scale", "-n", NS, "kvc/demo", "--replicas=4"]);
        let st = wait_status(&kvcs, Duration::from_secs(300), "4 stores up", &mut phases, |s| settled(s, 4)).await;
        eprintln!("scaled out over TLS: {}", summary(&st));
        env.kubectl_ok(&["scale", "-n", NS, "kvc/demo", "--replicas=3"]);
        let st = wait_status(&kvcs, Duration::from_secs(300), "back to 3 stores", &mut phases, |s| settled(s, 3)).await;
        eprintln!("scaled in over TLS: {} (phases {phases:?})", summary(&st));
        assert!(phases.contains("ScalingOut") && phases.contains("ScalingIn"), "{phases:?}");
        check_keys(&app, "after scaling over TLS").await;

        // Rotation: the stores' Secret deleted → issued again by the operator,
        // rewritten in the pods, reloaded by every store without a restart,
        // while writers run.
        let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
        let restarts = || async {
            let list = pods.list(&kube::api::ListParams::default().labels("app.kubernetes.io/instance=demo")).await.expect("pods");
            list.items
                .iter()
                .map(|p| {
                    let statuses = p.status.as_ref().and_then(|s| s.container_statuses.clone()).unwrap_or_default();
                    (p.metadata.name.clone().unwrap_or_default(), statuses.first().map(|c| c.restart_count).unwrap_or(-1))
                })
                .collect::<BTreeMap<_, _>>()
        };
        let restarts_before = restarts().await;
        let (_, old_cert, _) = tls_secret(&env, "demo-tls").await;
        let stop = Arc::new(AtomicBool::new(false));
        let writers = start_writers(Arc::new(demo_client_with(Some(app_tls.clone()))), 2, stop.clone());
        env.kubectl_ok(&["delete", "secret", "-n", NS, "demo-tls"]);
        let secrets: Api<Secret> = Api::namespaced(env.client.clone(), NS);
        let new_cert = wait_until(Duration::from_secs(90), Duration::from_millis(500), "demo-tls issued again", || async {
            let s = secrets.get_opt("demo-tls").await.map_err(|e| e.to_string())?.ok_or("no demo-tls yet")?;
            let cert = s.data.and_then(|d| d.get("tls.crt").map(|v| v.0.clone())).ok_or("no tls.crt")?;
            if cert != old_cert { Ok(cert) } else { Err("still the old certificate".to_string()) }
        })
        .await;
        let new_der = shoal_tests::pki::pem_to_der(&new_cert).expect("the new certificate");
        wait_until(Duration::from_secs(60), Duration::from_millis(500), "every store serving the new certificate", || async {
            let list =
                pods.list(&kube::api::ListParams::default().labels("app.kubernetes.io/instance=demo")).await.map_err(|e| e.to_string())?;
            for p in &list.items {
                let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone()).ok_or("a pod without an address")?;
                let served =
                    shoal_tests::pki::served_certificate(&format!("{ip}:20160"), "demo-peer.default.svc", &ca, &app_cert, &app_key).await?;
                if served != new_der {
                    return Err(format!("{} still serves the old certificate", p.metadata.name.as_deref().unwrap_or_default()));
                }
            }
            Ok(())
        })
        .await;
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            let run = w.await.expect("writer");
            assert!(run.errors.is_empty() && run.acked > 0, "writes through the rotation: {run:?}");
            eprintln!("writer through the rotation: {} acknowledged, longest stall {:?}", run.acked, run.longest_stall);
        }
        assert_eq!(restarts().await, restarts_before, "no store restarted for the new certificate");
        let reasons = event_reasons(&env.client, NS, Some(&uid)).await;
        assert!(reasons.iter().filter(|r| *r == "CertificatesIssued").count() >= 2, "{reasons:?}");

        // tls.mode is fixed at creation: the API server refuses turning it off.
        let off = env.kubectl(&["patch", "-n", NS, "kvc/demo", "--type=merge", "-p", r#"{"spec":{"tls":{"mode":"Disabled"}}}"#]);
        assert!(!off.status.success(), "turning TLS off was accepted");
        assert!(String::from_utf8_lossy(&off.stderr).contains("tls.mode cannot be changed"), "{}", String::from_utf8_lossy(&off.stderr));
    });
}

/// A scale-in called off half way: 4 stores with throttled snapshots, 10,000
/// keys and 8 MB of random values (so that a drain takes a while), `--replicas=3` → the operator drains
/// demo-3 → `--replicas=4` while it drains → the drain is cancelled
/// (`CancelDrain`, `ScalingCancelled`), demo-3 keeps its store (never
/// removed), the cluster settles at 4 and every key reads back.
#[test]
fn a_scale_in_called_off_half_way_keeps_the_store_then_volumes_grow() {
    k8s::run(|env| async move {
        install_operator(&env, &[]);
        let (kvcs, mut phases) = apply_four_stores_with(&env, "snapshotMaxBytesPerSec: 262144").await;
        let kv = demo_client();
        write_keys(&kv).await;
        // 8 MB that does not compress: moving demo-3's share of it at 256 KiB/s
        // (after the limiter's 1 MiB burst) takes long enough to call it off.
        let mut rng = shoal_tests::rng::Rng::new(7);
        let ballast: Vec<Mutation> = (0..4_000)
            .map(|i| {
                let value: Vec<u8> = (0..256).flat_map(|_| rng.next_u64().to_le_bytes()).collect();
                Mutation { op: mutation::Op::Put as i32, cf: "users".into(), key: format!("ballast/{i:05}").into_bytes(), value }
            })
            .collect();
        for chunk in ballast.chunks(100) {
            kv.batch_write(chunk.to_vec()).await.expect("write the ballast");
        }
        let ids = store_ids(&kvcs.get("demo").await.expect("get"));

        env.kubectl_ok(&["scale", "-n", NS, "kvc/demo", "--replicas=3"]);
        let st = wait_status(&kvcs, Duration::from_secs(120), "demo-3 being drained", &mut phases, |s| {
            s.drain.as_ref().is_some_and(|d| d.pod == "demo-3")
        })
        .await;
        eprintln!("draining: {}", summary(&st));
        env.kubectl_ok(&["scale", "-n", NS, "kvc/demo", "--replicas=4"]);
        let st = wait_status(&kvcs, Duration::from_secs(300), "back at 4 stores", &mut phases, |s| settled(s, 4)).await;
        eprintln!("called off: {} (phases {phases:?})", summary(&st));
        assert_eq!(store_ids(&kvcs.get("demo").await.expect("get")), ids, "every pod kept its store");
        let uid = kvcs.get("demo").await.expect("get").metadata.uid.expect("uid");
        let reasons = event_reasons(&env.client, NS, Some(&uid)).await;
        for want in ["DrainStore", "CancelDrain", "ScalingCancelled"] {
            assert!(reasons.iter().any(|r| r == want), "no {want} Event: {reasons:?}");
        }
        assert!(!reasons.iter().any(|r| r == "RemoveStore"), "a store was removed: {reasons:?}");
        wait_until(Duration::from_secs(30), Duration::from_millis(300), "demo-3's store Up in meta", || async {
            match store_state(&kv, ids["demo-3"]).await {
                Ok(Some(StoreState::Up)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        check_keys(&kv, "after the scale-in was called off").await;

        // Volumes grow: 10Gi → 20Gi expands every PVC and re-creates the
        // StatefulSet around the running pods (none restarted); they never shrink.
        let pods: Api<Pod> = Api::namespaced(env.client.clone(), NS);
        let uids = pod_uids(&pods).await;
        env.kubectl_ok(&["patch", "-n", NS, "kvc/demo", "--type=merge", "-p", r#"{"spec":{"storage":{"size":"20Gi"}}}"#]);
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(env.client.clone(), NS);
        let statefulsets: Api<StatefulSet> = Api::namespaced(env.client.clone(), NS);
        wait_until(Duration::from_secs(120), Duration::from_millis(500), "every volume and the template at 20Gi", || async {
            let list = claims
                .list(&kube::api::ListParams::default().labels("app.kubernetes.io/instance=demo"))
                .await
                .map_err(|e| e.to_string())?;
            let sizes: Vec<(String, Option<String>, Option<String>)> = list
                .items
                .iter()
                .map(|c| {
                    let request =
                        c.spec.as_ref().and_then(|s| s.resources.as_ref()?.requests.as_ref()?.get("storage").map(|q| q.0.clone()));
                    let capacity = c.status.as_ref().and_then(|s| s.capacity.as_ref()?.get("storage").map(|q| q.0.clone()));
                    (c.metadata.name.clone().unwrap_or_default(), request, capacity)
                })
                .collect();
            let template = statefulsets
                .get_opt("demo")
                .await
                .map_err(|e| e.to_string())?
                .and_then(|s| shoal_operator::observe::claim_template_storage(&s));
            let grown = sizes.len() == 4 && sizes.iter().all(|(_, r, c)| r.as_deref() == Some("20Gi") && c.as_deref() == Some("20Gi"));
            if grown && template.as_deref() == Some("20Gi") { Ok(()) } else { Err(format!("claims {sizes:?}, template {template:?}")) }
        })
        .await;
        let st = wait_status(&kvcs, Duration::from_secs(120), "settled after the growth", &mut phases, |s| settled(s, 4)).await;
        eprintln!("grown: {}", summary(&st));
        assert_eq!(pod_uids(&pods).await, uids, "the pods were adopted by the new StatefulSet, not replaced");
        let reasons = event_reasons(&env.client, NS, Some(&uid)).await;
        assert!(reasons.iter().any(|r| r == "ExpandVolumes"), "{reasons:?}");
        let shrink = env.kubectl(&["patch", "-n", NS, "kvc/demo", "--type=merge", "-p", r#"{"spec":{"storage":{"size":"10Gi"}}}"#]);
        assert!(!shrink.status.success(), "shrinking was accepted");
        assert!(String::from_utf8_lossy(&shrink.stderr).contains("can grow, not shrink"), "{}", String::from_utf8_lossy(&shrink.stderr));
        check_keys(&kv, "after the volumes grew").await;
    });
}

/// Zones and a node lost for good, on four nodes: `node-a1` and `node-a2` in
/// zone a, `node-b` in b, `node-c` in c, and four stores. The default spread
/// puts one store on each node; the operator labels each store with its
/// node's zone, and placement moves replicas until every region has one in
/// each zone. Then the agent kills the processes of one store pod's node and
/// its Node object is deleted (as a cloud deletes a machine's): the pod
/// garbage collector removes the pod; the StatefulSet's new pod cannot be
/// scheduled (its local volume is pinned to the gone node); the store is down
/// past `maxStoreDownTime`; the operator replaces the volume
/// (`ReplaceVolume`: claim and pod deleted), the pod comes back on another
/// node as a new store, which joins and is labelled, and the old store is
/// drained and tombstoned. Every key reads back.
#[test]
fn zones_spread_every_region_and_a_store_whose_node_is_gone_is_replaced() {
    let nodes =
        [("a1", "a"), ("a2", "a"), ("b", "b"), ("c", "c")].map(|(n, z)| k8s::TestNode::in_zone(&format!("node-{n}"), &format!("zone-{z}")));
    let zone_by_node: BTreeMap<String, String> = nodes.iter().map(|n| (n.name.clone(), n.zone.clone().unwrap_or_default())).collect();
    k8s::run_on(nodes.to_vec(), |env| async move {
        install_operator(&env, &[]);
        let (kvcs, mut phases) = apply_four_stores_with(&env, "maxStoreDownTimeSecs: 15").await;
        let kv = demo_client();
        write_keys(&kv).await;
        let pod_nodes: BTreeMap<String, String> =
            (0..4).map(|o| format!("demo-{o}")).map(|p| (p.clone(), env.agent.pod_node(NS, &p).expect("a node"))).collect();
        let on: BTreeSet<&String> = pod_nodes.values().collect();
        assert_eq!(on.len(), 4, "one store per node: {pod_nodes:?}");

        // Labelled with their nodes' zones; every region in three zones.
        wait_until(Duration::from_secs(180), Duration::from_millis(500), "every region in three zones", || async {
            let stores = kv.list_stores().await.map_err(|e| e.to_string())?;
            let mut zone_of_store = BTreeMap::new();
            for s in stores.iter().filter_map(|d| d.store.as_ref()) {
                let want = zone_by_node[&pod_nodes[&s.name]].clone();
                if s.labels.get("zone") != Some(&want) {
                    return Err(format!("store {} ({}) has labels {:?}, not zone {want}", s.id, s.name, s.labels));
                }
                zone_of_store.insert(s.id, want);
            }
            let regions = kv.scan_regions(b"", b"", 10_000).await.map_err(|e| e.to_string())?;
            for r in regions.iter().filter_map(|r| r.region.as_ref()) {
                let zones: BTreeSet<&String> = r.peers.iter().filter_map(|p| zone_of_store.get(&p.store_id)).collect();
                if zones.len() != 3 || r.peers.len() != 3 {
                    return Err(format!("region {} on {:?} spans {zones:?}", r.id, r.peers));
                }
            }
            Ok(regions.len())
        })
        .await;
        let ids = store_ids(&kvcs.get("demo").await.expect("get"));

        // A store pod on a node the operator does not run on.
        let operator_pod = env.agent.pods().into_iter().find(|(ns, _)| ns == OPERATOR_NS).expect("the operator's pod").1;
        let operator_node = env.agent.pod_node(OPERATOR_NS, &operator_pod).expect("the operator's node");
        let (victim, node) = pod_nodes
            .iter()
            .find(|(_, n)| **n != operator_node)
            .map(|(p, n)| (p.clone(), n.clone()))
            .expect("a store pod away from the operator");
        let old = ids[&victim];
        eprintln!("losing {node} with {victim} (store {old}); the operator runs on {operator_node}");
        env.agent.fail_node(&node).await;

        let st = wait_status(&kvcs, Duration::from_secs(420), "the pod back as a new store, the old one removed", &mut phases, |s| {
            settled(s, 4) && s.stores.iter().any(|e| e.pod == victim && e.store_id != old)
        })
        .await;
        eprintln!("replaced: {} (phases {phases:?})", summary(&st));
        let new_node = env.agent.pod_node(NS, &victim).expect("the pod runs again");
        assert_ne!(new_node, node, "the pod came back on the lost node");
        let uid = kvcs.get("demo").await.expect("get").metadata.uid;
        let reasons = event_reasons(&env.client, NS, uid.as_deref()).await;
        for want in ["ReplaceVolume", "JoinStore", "RemoveStore", "LabelStore"] {
            assert!(reasons.iter().any(|r| r == want), "no {want} Event: {reasons:?}");
        }
        wait_until(Duration::from_secs(60), Duration::from_millis(500), "the old store tombstoned", || async {
            let state = store_state(&kv, old).await;
            if state == Ok(Some(StoreState::Tombstone)) { Ok(()) } else { Err(format!("store {old}: {state:?}")) }
        })
        .await;
        let claim = pvcs_named(&env, &format!("data-{victim}")).await.expect("a new claim");
        let pv = claim.spec.and_then(|s| s.volume_name).expect("bound");
        let pv = Api::<PersistentVolume>::all(env.client.clone()).get(&pv).await.expect("the new volume");
        assert_eq!(shoal_operator::observe::pinned_hosts(&pv), vec![new_node], "the new volume is on the pod's new node");
        check_keys(&kv, "after the node was lost").await;
    });
}

/// The reasons of the Events about object `name` (any kind) in `ns`.
async fn events_about(client: &kube::Client, ns: &str, name: &str) -> Vec<String> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let list = events.list(&Default::default()).await.expect("list events").items;
    list.into_iter().filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)).filter_map(|e| e.reason).collect()
}

/// Backups through Kubernetes, to a real S3-compatible server (moto, which
/// the pods reach on loopback): a one-shot `KvBackup` of the example cluster
/// (10,000 keys) succeeds with an Event and `status.lastBackup`; a new
/// `KvCluster` with `spec.restoreFrom` that backup's URL comes up, is
/// restored (`status.restore` Succeeded, an Event) and reads every key back;
/// a scheduled `KvBackup` (every minute, keep 1) takes two and deletes the
/// older one.
#[test]
fn a_kvbackup_restores_into_a_new_cluster_and_a_schedule_keeps_the_newest() {
    use shoal_operator::crd::KvBackup;
    k8s::run(|env| async move {
        let s3 = shoal_tests::s3::S3Server::start().await;
        s3.create_bucket("backups").await;
        let mut secret = vec!["create", "secret", "generic", "backup-s3", "-n", NS];
        let literals: Vec<String> = s3.settings().iter().map(|(k, v)| format!("--from-literal={k}={v}")).collect();
        secret.extend(literals.iter().map(String::as_str));
        env.kubectl_ok(&secret);
        install_operator(&env, &[]);
        apply_example(&env).await;
        let kv = demo_client();
        write_keys(&kv).await;
        // A backup of several regions (the 128 KiB regions split after their check).
        wait_until(Duration::from_secs(120), Duration::from_millis(500), "the keys split into regions", || async {
            let n = kv.scan_regions(b"", b"", 0).await.map_err(|e| e.to_string())?.len();
            if n >= 2 { Ok(n) } else { Err(format!("{n} regions")) }
        })
        .await;

        let manifest = env.control_plane.dir().join("kvbackup.yaml");
        let one_shot = "apiVersion: shoal.dev/v1alpha1\nkind: KvBackup\nmetadata:\n  name: once\nspec:\n  cluster: demo\n  destination: s3://backups/demo\n  credentialsSecret: backup-s3\n";
        std::fs::write(&manifest, one_shot).expect("write");
        env.kubectl_ok(&["apply", "-n", NS, "-f", manifest.to_str().expect("UTF-8")]);
        let kvbs: Api<KvBackup> = Api::namespaced(env.client.clone(), NS);
        let record = wait_until(Duration::from_secs(180), Duration::from_millis(500), "the one-shot backup", || async {
            let st = kvbs.get("once").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
            match (st.phase.as_deref(), st.last_backup) {
                (Some("Succeeded"), Some(r)) => Ok(r),
                (Some("Failed"), _) => panic!("the backup failed: {:?}", st.message),
                (phase, _) => Err(format!("{phase:?}: {:?}", st.message)),
            }
        })
        .await;
        eprintln!("backed up: {record:?}");
        assert_eq!(record.keys, KEYS as u64, "{record:?}");
        assert!(record.regions >= 2 && record.url.starts_with("s3://backups/demo/default.once-"), "{record:?}");
        assert!(events_about(&env.client, NS, "once").await.iter().any(|r| r == "BackupSucceeded"));

        // A new cluster from that backup.
        let path = example(&env);
        let text = std::fs::read_to_string(&path).expect("the example copy");
        assert!(text.contains("  name: demo\n"), "the example's name changed: update this test");
        let tail = format!("  restoreFrom:\n    source: {}\n    credentialsSecret: backup-s3\n", record.url);
        std::fs::write(&path, text.replace("  name: demo\n", "  name: restored\n") + &tail).expect("write");
        env.kubectl_ok(&["apply", "-n", NS, "-f", &path]);
        let kvcs: Api<KvCluster> = Api::namespaced(env.client.clone(), NS);
        let restored = wait_until(Duration::from_secs(300), Duration::from_millis(500), "the restore", || async {
            let st = kvcs.get("restored").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
            match st.restore.clone() {
                Some(r) if r.phase == "Succeeded" => Ok(r),
                Some(r) if r.phase == "Failed" => panic!("the restore failed: {:?}", r.message),
                other => Err(format!("{}; restore {other:?}", summary(&st))),
            }
        })
        .await;
        assert_eq!(restored.keys, KEYS as u64, "{restored:?}");
        assert!(events_about(&env.client, NS, "restored").await.iter().any(|r| r == "Restored"));
        let restored_client = Client::new(&["restored.default.svc:20161".to_string()], ClientOptions::default()).expect("client");
        check_keys(&restored_client, "in the restored cluster").await;
        env.kubectl_ok(&["delete", "kvc", "-n", NS, "restored", "--wait=true", "--timeout=120s"]);

        // Every minute, keeping one: the second backup deletes the first.
        let scheduled = "apiVersion: shoal.dev/v1alpha1\nkind: KvBackup\nmetadata:\n  name: minutely\nspec:\n  cluster: demo\n  destination: s3://backups/demo\n  credentialsSecret: backup-s3\n  schedule: \"* * * * *\"\n  keep: 1\n";
        std::fs::write(&manifest, scheduled).expect("write");
        env.kubectl_ok(&["apply", "-n", NS, "-f", manifest.to_str().expect("UTF-8")]);
        let kept = wait_until(Duration::from_secs(240), Duration::from_secs(1), "two scheduled backups, the older deleted", || async {
            let reasons = events_about(&env.client, NS, "minutely").await;
            let st = kvbs.get("minutely").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
            if reasons.iter().any(|r| r == "BackupFailed") {
                panic!("a scheduled backup failed: {:?}", st.message);
            }
            if reasons.iter().any(|r| r == "BackupsPruned") && st.kept.len() == 1 {
                Ok(st.kept)
            } else {
                Err(format!("{reasons:?}, {st:?}"))
            }
        })
        .await;
        let url = format!("s3://backups/demo/{}", kept[0]);
        let listed = shoal_client::backup::list(
            &shoal_client::backup::Location::parse_with(
                "s3://backups/demo",
                &s3.settings().into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Vec<_>>(),
            )
            .expect("location"),
        )
        .await
        .expect("list");
        let names: Vec<&str> = listed.iter().map(|b| b.name.as_str()).collect();
        assert!(
            names.contains(&kept[0].as_str()) && names.iter().filter(|n| n.starts_with("default.minutely-")).count() == 1,
            "{url}: {names:?}"
        );
        assert!(names.iter().any(|n| n.starts_with("default.once-")), "the one-shot backup is not the schedule's to delete: {names:?}");
    });
}
