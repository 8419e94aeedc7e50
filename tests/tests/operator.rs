//! The real `shoal-operator` against the Kubernetes API stand-in, whose
//! StatefulSet pods are real `shoal-node` processes (DESIGN testing level 4).
//!
//! Apply a 3-replica `KvCluster` → the cluster bootstraps and serves; write
//! 10,000 keys; scale to 5 through the scale subresource (as `kubectl scale`
//! does) → 5 stores Up, each holding regions; scale to 3 → the two highest
//! ordinals are drained, tombstoned, stopped and their volumes deleted; every
//! key still reads back; status, conditions and Events are right at each step.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use shoal_client::{Client, ClientOptions, Mutation, ReadConsistency};
use shoal_operator::crd::KvCluster;
use shoal_proto::mutation;
use shoal_tests::kube::{KubeApiServer, Kubelet};
use shoal_tests::kvcluster::{count, demo_cluster, event_reasons, key, settled, summary, value, wait_status};
use shoal_tests::operator::Operator;
use shoal_tests::wait_until;

const NS: &str = "default";
const KEYS: usize = 10_000;

fn client_for(kubelet: &Kubelet, pods: std::ops::Range<usize>) -> Client {
    let endpoints: Vec<String> = pods.map(|i| kubelet.pod_addr(NS, &format!("demo-{i}"), 20160)).collect();
    Client::new(&endpoints, ClientOptions::default()).expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apply_scale_out_and_in_keeps_every_key() {
    let server = KubeApiServer::start().await;
    let kubelet = Kubelet::start(&server);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig);
    let operator = Operator::start(&kubeconfig, dir.path().join("operator.log"), "operator-a", &["--lease-namespace=default"]);
    let client = server.client().await;
    let kvcs: Api<KvCluster> = Api::namespaced(client.clone(), NS);
    let mut phases = BTreeSet::new();

    // 1. Apply a 3-replica cluster: it bootstraps and serves.
    let kvc: KvCluster = demo_cluster();
    kvcs.create(&PostParams::default(), &kvc).await.expect("create the KvCluster");
    let st = wait_status(&kvcs, Duration::from_secs(120), "3 stores up", &mut phases, |s| settled(s, 3)).await;
    eprintln!("bootstrapped: {}", summary(&st));
    assert!(st.bootstrapped && st.initial_members == Some(3), "{}", summary(&st));
    assert!(phases.contains("Bootstrapping"), "phases seen: {phases:?}");
    assert_eq!(st.selector, "app.kubernetes.io/component=store,app.kubernetes.io/instance=demo,app.kubernetes.io/name=shoal");
    let cm = Api::<ConfigMap>::namespaced(client.clone(), NS).get("demo-config").await.expect("config map");
    assert_eq!(cm.data.as_ref().map(|d| d["initial-cluster-state"].as_str()), Some("existing"), "empty pods join from now on");
    let kvc = kvcs.get("demo").await.expect("get");
    assert_eq!(kvc.metadata.finalizers, Some(vec!["shoal.dev/cleanup".to_string()]));

    // 2. Write 10,000 keys into the spec's column family.
    let kv = client_for(&kubelet, 0..3);
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(500) {
        let muts =
            chunk.iter().map(|&i| Mutation { op: mutation::Op::Put as i32, cf: "users".into(), key: key(i), value: value(i) }).collect();
        kv.batch_write(muts).await.expect("write keys");
    }

    // 3. Scale to 5 through the scale subresource.
    let scale = kvcs.get_scale("demo").await.expect("get scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(3));
    kvcs.patch_scale("demo", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 5 } }))).await.expect("scale to 5");
    let st = wait_status(&kvcs, Duration::from_secs(240), "5 stores up, each holding regions", &mut phases, |s| {
        settled(s, 5) && s.stores.iter().all(|e| e.regions > 0)
    })
    .await;
    eprintln!("scaled out: {}", summary(&st));
    assert!(phases.contains("ScalingOut"), "phases seen: {phases:?}");
    let sts = Api::<StatefulSet>::namespaced(client.clone(), NS).get("demo").await.expect("sts");
    assert_eq!(sts.spec.and_then(|s| s.replicas), Some(5));
    let reasons = event_reasons(&server, None);
    assert_eq!(count(&reasons, "JoinStore"), 2, "one join per new store: {reasons:?}");
    assert!(count(&reasons, "ScalingStarted") >= 1 && count(&reasons, "ScalingDone") >= 1, "{reasons:?}");
    let new_stores: Vec<u64> = st.stores.iter().filter(|e| e.pod == "demo-3" || e.pod == "demo-4").map(|e| e.store_id).collect();
    assert_eq!(new_stores.len(), 2);

    // 4. Scale back to 3: demo-4 and demo-3 are drained, removed, stopped, their volumes deleted.
    kvcs.patch_scale("demo", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "replicas": 3 } }))).await.expect("scale to 3");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let st = wait_status(&kvcs, Duration::from_secs(240), "back to 3 stores, volumes of demo-3 and demo-4 deleted", &mut phases, |s| {
        settled(s, 3) && s.replicas == 3
    })
    .await;
    eprintln!("scaled in: {}", summary(&st));
    assert!(phases.contains("ScalingIn"), "phases seen: {phases:?}");
    wait_until(Duration::from_secs(30), Duration::from_millis(200), "demo-3 and demo-4 gone with their volumes", || async {
        let left: Vec<String> =
            pvcs.list(&Default::default()).await.map_err(|e| e.to_string())?.items.into_iter().filter_map(|p| p.metadata.name).collect();
        let running = kubelet.is_running(NS, "demo-3") || kubelet.is_running(NS, "demo-4");
        if left.iter().any(|n| n == "data-demo-3" || n == "data-demo-4") || running {
            Err(format!("volumes {left:?}, retired pods running: {running}"))
        } else {
            Ok(())
        }
    })
    .await;
    for claim in ["data-demo-3", "data-demo-4"] {
        assert!(!kubelet.pvc_dir(NS, claim).exists(), "{claim}'s directory was not deleted");
    }
    for claim in ["data-demo-0", "data-demo-1", "data-demo-2"] {
        assert!(kubelet.pvc_dir(NS, claim).exists(), "{claim} must be kept");
    }
    let kv = client_for(&kubelet, 0..3);
    let stores = kv.list_stores().await.expect("list stores");
    for id in &new_stores {
        let s = stores.iter().find(|d| d.store.as_ref().is_some_and(|m| m.id == *id)).expect("retired store listed");
        assert_eq!(s.store.as_ref().map(|m| m.state()), Some(shoal_proto::StoreState::Tombstone), "store {id}");
    }
    let reasons = event_reasons(&server, None);
    for (reason, n) in [("DrainStore", 2), ("RemoveStore", 2), ("DeleteVolume", 2)] {
        assert_eq!(count(&reasons, reason), n, "{reason}: {reasons:?}");
    }
    assert!(count(&reasons, "ScaleStatefulSet") >= 2, "{reasons:?}");

    // 5. Every key reads back (linearizable reads).
    let mut missing = Vec::new();
    for i in 0..KEYS {
        match kv.get_with("users", &key(i), ReadConsistency::Linearizable).await {
            Ok(Some(v)) if v == value(i) => {}
            other => missing.push((i, format!("{other:?}"))),
        }
    }
    assert!(missing.is_empty(), "{} of {KEYS} keys lost or wrong, first {:?}", missing.len(), &missing[..missing.len().min(5)]);

    // 6. The operator counted what it did.
    for op in ["join", "drain", "remove", "delete_volume"] {
        let n = operator.metric("shoal_operator_membership_operations_total", &[("operation", op), ("outcome", "ok")]).await;
        assert_eq!(n, Some(2.0), "{op} operations");
    }
    assert_eq!(operator.metric("shoal_operator_leader", &[]).await, Some(1.0));
    let (code, text) = shoal_tests::try_http_get(&operator.metrics_addr, "/metrics", Duration::from_secs(5)).await.expect("scrape");
    assert_eq!(code, 200);
    shoal_tests::promtool_check(&text).unwrap_or_else(|e| panic!("the operator's metrics: {e}"));
    assert!(operator.metric("shoal_operator_reconciles_total", &[("result", "ok")]).await.unwrap_or(0.0) > 10.0);
}
