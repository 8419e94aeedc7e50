//! The Kubernetes API stand-in and its StatefulSet kubelet (DESIGN testing
//! level 4), driven through kube-rs exactly as the operator drives a real
//! cluster: typed `Api<T>` calls, server-side apply, subresources, a
//! `kube_runtime` watcher; then StatefulSets whose pods are real processes —
//! `/bin/sleep` for the kubelet's mechanics, `shoal-node` for a real cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use shoal_client::{Client, ClientOptions};
use shoal_tests::kube::{KubeApiServer, Kubelet};
use shoal_tests::wait_until;

const NS: &str = "default";
const POLL: Duration = Duration::from_millis(100);

fn configmap(name: &str, labels: Value, data: Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": name, "labels": labels },
        "data": data,
    }))
    .expect("a ConfigMap")
}

/// The kube error's HTTP code and reason.
fn api_error<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> (u16, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn kvclusters(client: kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("shoal.dev", "v1alpha1", "KvCluster");
    Api::namespaced_with(client, NS, &ApiResource::from_gvk_with_plural(&gvk, "kvclusters"))
}

fn kvcluster(name: &str, replicas: i64) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "shoal.dev/v1alpha1", "kind": "KvCluster",
        "metadata": { "name": name },
        "spec": { "replicas": replicas, "version": "0.1.0" },
        "status": { "phase": "Set by the client: dropped" },
    }))
    .expect("a KvCluster")
}

fn rv(obj: &impl kube::ResourceExt) -> u64 {
    obj.resource_version().expect("a resourceVersion").parse().expect("an integer resourceVersion")
}

#[tokio::test]
async fn typed_crud_selectors_and_errors() {
    let server = KubeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client().await, NS);
    let pp = PostParams::default();
    let a = cms.create(&pp, &configmap("a", json!({"app": "shoal", "tier": "db"}), json!({"k": "1"}))).await.expect("create a");
    cms.create(&pp, &configmap("b", json!({"app": "other"}), json!({}))).await.expect("create b");
    cms.create(&pp, &configmap("c", json!({}), json!({}))).await.expect("create c");
    assert_eq!(a.metadata.namespace.as_deref(), Some(NS));
    assert!(a.metadata.uid.is_some() && a.metadata.creation_timestamp.is_some());
    assert_eq!(a.metadata.generation, Some(1));

    let got = cms.get("a").await.expect("get a");
    assert_eq!(got.data.as_ref().and_then(|d| d.get("k")).map(String::as_str), Some("1"));
    assert_eq!(rv(&got), rv(&a));

    let names = |l: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        l.items.iter().map(|c| c.metadata.name.clone().unwrap_or_default()).collect()
    };
    let list = |sel: &'static str| {
        let cms = cms.clone();
        async move { names(cms.list(&ListParams::default().labels(sel)).await.expect("list")) }
    };
    assert_eq!(list("app=shoal").await, ["a"]);
    assert_eq!(list("app!=shoal").await, ["b", "c"], "!= also selects objects without the label");
    assert_eq!(list("app").await, ["a", "b"]);
    assert_eq!(list("app=shoal,tier=db").await, ["a"]);
    assert_eq!(list("app=shoal,tier=web").await, Vec::<String>::new());
    let by_name = cms.list(&ListParams::default().fields("metadata.name=b")).await.expect("list by field");
    assert_eq!(names(by_name.clone()), ["b"]);
    assert!(by_name.metadata.continue_.as_deref().unwrap_or("").is_empty(), "one page, no continue token");
    assert!(by_name.metadata.resource_version.as_deref().unwrap_or("").parse::<u64>().expect("list rv") >= rv(&a));

    assert_eq!(api_error(cms.get("missing").await), (404, "NotFound".into()));
    assert_eq!(api_error(cms.create(&pp, &configmap("a", json!({}), json!({}))).await), (409, "AlreadyExists".into()));
    // A replace carrying a stale resourceVersion is refused; the current one is accepted.
    let mut stale = a.clone();
    stale.data = Some([("k".to_string(), "stale".to_string())].into());
    cms.replace("a", &pp, &got).await.map(|_| ()).expect("a replace without changes");
    let mut fresh = cms.get("a").await.expect("get a");
    let patched = cms.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "2"}}))).await.expect("merge patch");
    assert!(rv(&patched) > rv(&fresh));
    assert_eq!(api_error(cms.replace("a", &pp, &fresh).await), (409, "Conflict".into()));
    fresh.metadata.resource_version = patched.metadata.resource_version.clone();
    fresh.data = Some([("k".to_string(), "3".to_string())].into());
    let replaced = cms.replace("a", &pp, &fresh).await.expect("replace at the current resourceVersion");
    assert_eq!(replaced.data.as_ref().and_then(|d| d.get("k")).map(String::as_str), Some("3"));
    assert_eq!(replaced.metadata.uid, a.metadata.uid, "a replace keeps the uid");

    // generateName
    let mut gen_cm = configmap("", json!({}), json!({}));
    gen_cm.metadata.name = None;
    gen_cm.metadata.generate_name = Some("gen-".into());
    let generated = cms.create(&pp, &gen_cm).await.expect("create with generateName");
    let gname = generated.metadata.name.expect("a generated name");
    assert!(gname.starts_with("gen-") && gname.len() == 9, "{gname}");

    // Delete returns the object; then it is gone.
    cms.delete("b", &DeleteParams::default()).await.expect("delete b");
    assert_eq!(api_error(cms.get("b").await).0, 404);
    assert_eq!(api_error(cms.delete("b", &DeleteParams::default()).await).0, 404);
}

#[tokio::test]
async fn kubeconfig_file_builds_a_working_client() {
    let server = KubeApiServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig(&path);
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("read the kubeconfig");
    assert_eq!(kubeconfig.current_context.as_deref(), Some("shoal-standin"));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default()).await.expect("config");
    assert_eq!(config.cluster_url.to_string().trim_end_matches('/'), server.url());
    let client = kube::Client::try_from(config).expect("client");
    let v = client.apiserver_version().await.expect("GET /version");
    assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "33"));
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    assert!(cms.list(&ListParams::default()).await.expect("list").items.is_empty());
}

#[tokio::test]
async fn server_side_apply_twice_merges() {
    let server = KubeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client().await, NS);
    let pp = PatchParams::apply("test-manager").force();
    let first = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "applied", "labels": { "a": "1" } },
        "data": { "one": "1", "shared": "first" },
    });
    let created = cms.patch("applied", &pp, &Patch::Apply(&first)).await.expect("apply creates");
    assert_eq!(created.metadata.generation, Some(1));
    let again = cms.patch("applied", &pp, &Patch::Apply(&first)).await.expect("re-apply");
    assert_eq!(rv(&again), rv(&created), "applying the same object again changes nothing");
    let second = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "applied", "labels": { "b": "2" } },
        "data": { "two": "2", "shared": "second" },
    });
    let merged = cms.patch("applied", &pp, &Patch::Apply(&second)).await.expect("second apply");
    let data = merged.data.clone().expect("data");
    assert_eq!(data.get("one").map(String::as_str), Some("1"), "the first apply's keys stay");
    assert_eq!(data.get("two").map(String::as_str), Some("2"));
    assert_eq!(data.get("shared").map(String::as_str), Some("second"));
    let labels = merged.metadata.labels.clone().expect("labels");
    assert_eq!((labels.get("a").map(String::as_str), labels.get("b").map(String::as_str)), (Some("1"), Some("2")));
    assert!(rv(&merged) > rv(&created));
    assert_eq!(merged.metadata.uid, created.metadata.uid);
}

#[tokio::test]
async fn status_subresource_leaves_spec_and_generation_alone() {
    let server = KubeApiServer::start().await;
    let api = kvclusters(server.client().await);
    let created = api.create(&PostParams::default(), &kvcluster("kv", 3)).await.expect("create a KvCluster");
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.data.get("status").is_none(), "status on create is dropped");

    let patched = api
        .patch_status(
            "kv",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Ready", "readyReplicas": 3}, "spec": {"replicas": 9}})),
        )
        .await
        .expect("patch status");
    assert_eq!(patched.data["status"]["phase"], "Ready");
    assert_eq!(patched.data["spec"]["replicas"], 3, "a status write does not change the spec");
    assert_eq!(patched.metadata.generation, Some(1), "nor the generation");
    assert!(rv(&patched) > rv(&created));

    let applied_status = api
        .patch_status(
            "kv",
            &PatchParams::apply("test").force(),
            &Patch::Apply(json!({"apiVersion": "shoal.dev/v1alpha1", "kind": "KvCluster", "status": {"observedGeneration": 1}})),
        )
        .await
        .expect("apply status");
    assert_eq!(applied_status.data["status"]["observedGeneration"], 1);
    assert_eq!(applied_status.data["status"]["phase"], "Ready");

    let main = api
        .patch("kv", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 5}, "status": {"phase": "ignored"}})))
        .await
        .expect("patch the main resource");
    assert_eq!(main.data["spec"]["replicas"], 5);
    assert_eq!(main.metadata.generation, Some(2), "a spec change bumps the generation");
    assert_eq!(main.data["status"]["phase"], "Ready", "the main resource does not write status");

    let labelled =
        api.patch("kv", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}}))).await.expect("label");
    assert_eq!(labelled.metadata.generation, Some(2), "a metadata change does not bump the generation");
    let got = api.get_status("kv").await.expect("get status");
    assert_eq!(got.data["status"]["readyReplicas"], 3);
}

#[tokio::test]
async fn scale_subresource_reads_and_writes_replicas() {
    let server = KubeApiServer::start().await;
    let client = server.client().await;
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let sts: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 3, "serviceName": "web",
            "selector": { "matchLabels": { "app": "web" } },
            "template": { "metadata": { "labels": { "app": "web" } }, "spec": { "containers": [{ "name": "c", "image": "x" }] } },
        },
    }))
    .expect("a StatefulSet");
    sts_api.create(&PostParams::default(), &sts).await.expect("create sts");
    let scale = sts_api.get_scale("web").await.expect("get scale");
    assert_eq!(scale.spec.as_ref().and_then(|s| s.replicas), Some(3));
    assert_eq!(scale.status.as_ref().and_then(|s| s.selector.clone()).as_deref(), Some("app=web"));
    let scaled =
        sts_api.patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 5}}))).await.expect("patch scale");
    assert_eq!(scaled.spec.as_ref().and_then(|s| s.replicas), Some(5));
    let after = sts_api.get("web").await.expect("get sts");
    assert_eq!(after.spec.as_ref().and_then(|s| s.replicas), Some(5));
    assert_eq!(after.metadata.generation, Some(2));

    let kv = kvclusters(client);
    kv.create(&PostParams::default(), &kvcluster("kv", 3)).await.expect("create kv");
    kv.patch_status("kv", &PatchParams::default(), &Patch::Merge(json!({"status": {"replicas": 2, "selector": "app=kv"}})))
        .await
        .expect("status");
    let scale = kv.get_scale("kv").await.expect("kv scale");
    assert_eq!(scale.spec.as_ref().and_then(|s| s.replicas), Some(3));
    let status = scale.status.expect("scale status");
    assert_eq!((status.replicas, status.selector.as_deref()), (2, Some("app=kv")));
    let scaled = kv.patch_scale("kv", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 4}}))).await.expect("scale kv");
    assert_eq!(scaled.spec.and_then(|s| s.replicas), Some(4));
    let got = kv.get("kv").await.expect("get kv");
    assert_eq!(got.data["spec"]["replicas"], 4);
    assert_eq!(got.metadata.generation, Some(2));
    assert_eq!(got.data["status"]["replicas"], 2);
}

#[tokio::test]
async fn watcher_sees_added_modified_deleted_in_order() {
    let server = KubeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client().await, NS);
    cms.create(&PostParams::default(), &configmap("before", json!({"w": "1"}), json!({}))).await.expect("create before");
    cms.create(&PostParams::default(), &configmap("unselected", json!({}), json!({}))).await.expect("create unselected");
    let mut stream = watcher(cms.clone(), watcher::Config::default().labels("w=1")).boxed();
    let mut next = async || -> watcher::Event<ConfigMap> {
        tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("a watch event within 10 s")
            .expect("the stream goes on")
            .expect("no watch error")
    };
    assert!(matches!(next().await, watcher::Event::Init));
    assert!(matches!(next().await, watcher::Event::InitApply(c) if c.metadata.name.as_deref() == Some("before")));
    assert!(matches!(next().await, watcher::Event::InitDone));

    cms.create(&PostParams::default(), &configmap("x", json!({"w": "1"}), json!({}))).await.expect("create x");
    cms.patch("x", &PatchParams::default(), &Patch::Merge(json!({"data": {"v": "2"}}))).await.expect("modify x");
    cms.patch("unselected", &PatchParams::default(), &Patch::Merge(json!({"data": {"v": "2"}}))).await.expect("modify another");
    cms.delete("x", &DeleteParams::default()).await.expect("delete x");
    cms.patch("before", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"w": "0"}}}))).await.expect("unlabel");

    match next().await {
        watcher::Event::Apply(c) => assert_eq!(c.metadata.name.as_deref(), Some("x")),
        other => panic!("expected the creation, got {other:?}"),
    }
    match next().await {
        watcher::Event::Apply(c) => assert_eq!(c.data.and_then(|d| d.get("v").cloned()).as_deref(), Some("2")),
        other => panic!("expected the modification, got {other:?}"),
    }
    assert!(matches!(next().await, watcher::Event::Delete(c) if c.metadata.name.as_deref() == Some("x")));
    assert!(
        matches!(next().await, watcher::Event::Delete(c) if c.metadata.name.as_deref() == Some("before")),
        "leaving the selector is a deletion"
    );
}

#[tokio::test]
async fn raw_watch_sends_bookmarks_and_ends_at_its_timeout() {
    use kube::api::{WatchEvent, WatchParams};
    let server = KubeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client().await, NS);
    let created = cms.create(&PostParams::default(), &configmap("w", json!({}), json!({}))).await.expect("create");
    let list = cms.list(&ListParams::default()).await.expect("list");
    let from = list.metadata.resource_version.expect("list rv");
    cms.patch("w", &PatchParams::default(), &Patch::Merge(json!({"data": {"a": "b"}}))).await.expect("modify");
    let started = std::time::Instant::now();
    let mut stream = cms.watch(&WatchParams::default().timeout(3), &from).await.expect("watch").boxed();
    let mut seen = Vec::new();
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(10), stream.next()).await.expect("the watch ends by itself") {
        seen.push(match ev.expect("a watch event") {
            WatchEvent::Added(c) | WatchEvent::Modified(c) if c.metadata.uid == created.metadata.uid => "change".to_string(),
            WatchEvent::Bookmark(b) => {
                assert!(b.metadata.resource_version.parse::<u64>().expect("bookmark rv") > from.parse::<u64>().expect("rv"));
                "bookmark".to_string()
            }
            other => format!("{other:?}"),
        });
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(6), "timeoutSeconds=3 ended the watch after {elapsed:?}");
    assert_eq!(seen.first().map(String::as_str), Some("change"), "{seen:?}");
    assert!(seen.iter().skip(1).all(|s| s == "bookmark") && seen.len() >= 2, "then only bookmarks: {seen:?}");
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let server = KubeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client().await, NS);
    let mut cm = configmap("held", json!({}), json!({}));
    cm.metadata.finalizers = Some(vec!["shoal.dev/test".into()]);
    cms.create(&PostParams::default(), &cm).await.expect("create");
    let deleted = cms.delete("held", &DeleteParams::default()).await.expect("delete");
    let marked = deleted.left().expect("the object, not a Status");
    assert!(marked.metadata.deletion_timestamp.is_some());
    let still = cms.get("held").await.expect("still there");
    assert!(still.metadata.deletion_timestamp.is_some());
    let patched =
        cms.patch("held", &PatchParams::default(), &Patch::Merge(json!({"data": {"x": "y"}}))).await.expect("may still be written");
    assert!(patched.metadata.deletion_timestamp.is_some(), "writes cannot clear deletionTimestamp");
    cms.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.expect("remove finalizer");
    assert_eq!(api_error(cms.get("held").await).0, 404, "removing the last finalizer deletes the object");
}

#[tokio::test]
async fn owner_references_are_garbage_collected() {
    let server = KubeApiServer::start().await;
    let client = server.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let kv = kvclusters(client);
    let owner = kv.create(&PostParams::default(), &kvcluster("owner", 1)).await.expect("owner");
    let owner_ref = |kind: &str, name: &str, uid: &str, api: &str| json!([{ "apiVersion": api, "kind": kind, "name": name, "uid": uid, "controller": true }]);
    let mut child = configmap("child", json!({}), json!({}));
    child.metadata.owner_references =
        serde_json::from_value(owner_ref("KvCluster", "owner", owner.metadata.uid.as_deref().expect("uid"), "shoal.dev/v1alpha1"))
            .expect("refs");
    let child = cms.create(&PostParams::default(), &child).await.expect("child");
    let mut grandchild = configmap("grandchild", json!({}), json!({}));
    grandchild.metadata.owner_references =
        serde_json::from_value(owner_ref("ConfigMap", "child", child.metadata.uid.as_deref().expect("uid"), "v1")).expect("refs");
    cms.create(&PostParams::default(), &grandchild).await.expect("grandchild");
    cms.create(&PostParams::default(), &configmap("unrelated", json!({}), json!({}))).await.expect("unrelated");

    kv.delete("owner", &DeleteParams::default()).await.expect("delete the owner");
    assert_eq!(api_error(cms.get("child").await).0, 404, "the owned object goes with its owner");
    assert_eq!(api_error(cms.get("grandchild").await).0, 404, "and what it owns");
    cms.get("unrelated").await.expect("an unowned object stays");
}

#[tokio::test]
async fn json_patch_with_failing_test_is_refused() {
    let server = KubeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client().await, NS);
    let created = cms.create(&PostParams::default(), &configmap("j", json!({}), json!({"k": "1"}))).await.expect("create");
    let failing: json_patch::Patch = serde_json::from_value(json!([
        { "op": "test", "path": "/data/k", "value": "2" },
        { "op": "replace", "path": "/data/k", "value": "3" },
    ]))
    .expect("a JSON patch");
    let (code, reason) = api_error(cms.patch("j", &PatchParams::default(), &Patch::<()>::Json(failing)).await);
    assert!(code == 422 || code == 409, "{code} {reason}");
    let after = cms.get("j").await.expect("get");
    assert_eq!(rv(&after), rv(&created), "a refused patch writes nothing");
    let passing: json_patch::Patch = serde_json::from_value(json!([
        { "op": "test", "path": "/data/k", "value": "1" },
        { "op": "replace", "path": "/data/k", "value": "3" },
    ]))
    .expect("a JSON patch");
    let patched = cms.patch("j", &PatchParams::default(), &Patch::<()>::Json(passing)).await.expect("a passing JSON patch");
    assert_eq!(patched.data.and_then(|d| d.get("k").cloned()).as_deref(), Some("3"));
}

#[tokio::test]
async fn raw_http_errors_are_status_objects() {
    let server = KubeApiServer::start().await;
    let addr = server.addr().to_string();
    let (code, body) = shoal_tests::http_get(&addr, "/apis/nope.example/v1/things").await;
    assert_eq!(code, 404);
    let status: Value = serde_json::from_str(&body).expect("a JSON Status");
    assert_eq!(
        (status["kind"].as_str(), status["reason"].as_str(), status["code"].as_u64()),
        (Some("Status"), Some("NotFound"), Some(404))
    );
    let client = server.client().await;
    let req = http::Request::post("/api/v1/namespaces/default/configmaps")
        .header("content-type", "application/json")
        .body(b"{not json".to_vec())
        .expect("request");
    let err = client.request::<Value>(req).await.expect_err("bad JSON is refused");
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 400), "{err:?}");
    let (code, body) = shoal_tests::http_get(&addr, "/apis").await;
    assert_eq!(code, 200);
    assert!(body.contains("shoal.dev/v1alpha1") && body.contains("apps/v1"), "{body}");
}

#[tokio::test]
async fn a_kube_runtime_controller_reconciles() {
    use kube::runtime::controller::{Action, Controller};
    use std::sync::Arc;

    async fn reconcile(parent: Arc<ConfigMap>, cms: Arc<Api<ConfigMap>>) -> Result<Action, kube::Error> {
        let name = parent.metadata.name.clone().unwrap_or_default();
        let child = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": format!("{name}-child"),
                "labels": { "role": "child" },
                "ownerReferences": [{ "apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": parent.metadata.uid, "controller": true }],
            },
            "data": parent.data.clone().unwrap_or_default(),
        });
        cms.patch(&format!("{name}-child"), &PatchParams::apply("test-controller").force(), &Patch::Apply(child)).await?;
        Ok(Action::await_change())
    }
    fn error_policy(_: Arc<ConfigMap>, _: &kube::Error, _: Arc<Api<ConfigMap>>) -> Action {
        Action::requeue(Duration::from_millis(200))
    }

    let server = KubeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client().await, NS);
    let controller = Controller::new(cms.clone(), watcher::Config::default().labels("role=parent"))
        .owns(cms.clone(), watcher::Config::default().labels("role=child"))
        .run(reconcile, error_policy, Arc::new(cms.clone()))
        .for_each(|_| async {});
    let controller = tokio::spawn(controller);

    cms.create(&PostParams::default(), &configmap("p", json!({"role": "parent"}), json!({"v": "1"}))).await.expect("parent");
    let child_value = |cms: Api<ConfigMap>| async move {
        let child = cms.get("p-child").await.map_err(|e| e.to_string())?;
        Ok::<_, String>(child.data.and_then(|d| d.get("v").cloned()).unwrap_or_default())
    };
    wait_until(Duration::from_secs(10), POLL, "the child made", || async {
        child_value(cms.clone()).await.and_then(|v| if v == "1" { Ok(()) } else { Err(v) })
    })
    .await;
    cms.patch("p", &PatchParams::default(), &Patch::Merge(json!({"data": {"v": "2"}}))).await.expect("change the parent");
    wait_until(Duration::from_secs(10), POLL, "the child updated", || async {
        child_value(cms.clone()).await.and_then(|v| if v == "2" { Ok(()) } else { Err(v) })
    })
    .await;
    cms.delete("p", &DeleteParams::default()).await.expect("delete the parent");
    assert_eq!(api_error(cms.get("p-child").await).0, 404, "the child is garbage collected");
    controller.abort();
}

// ---- the kubelet ----

fn sleep_sts(name: &str, replicas: i32, parallel: bool) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": { "name": name, "namespace": NS },
        "spec": {
            "replicas": replicas, "serviceName": format!("{name}-peer"),
            "podManagementPolicy": if parallel { "Parallel" } else { "OrderedReady" },
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{
                    "name": "main", "image": "busybox",
                    "command": ["/bin/sh", "-c"],
                    "args": ["echo name=$(POD_NAME) peer=$(POD_NAME).x.default.svc:1 any=0.0.0.0 dir=$DATA; touch $DATA/started; exec sleep 600"],
                    "env": [
                        { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
                        { "name": "DATA", "value": "/data" },
                    ],
                    "volumeMounts": [{ "name": "data", "mountPath": "/data" }],
                }] },
            },
            "volumeClaimTemplates": [{
                "metadata": { "name": "data" },
                "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } },
            }],
        },
    })
}

async fn ready_replicas(api: &Api<StatefulSet>, name: &str) -> Result<i32, String> {
    let sts = api.get(name).await.map_err(|e| e.to_string())?;
    Ok(sts.status.and_then(|s| s.ready_replicas).unwrap_or(0))
}

fn proc_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn kubelet_runs_orders_restarts_and_scales_pods() {
    let server = KubeApiServer::start().await;
    let kubelet = Kubelet::start_with(server.store(), PathBuf::from("/nonexistent-bin-dir"));
    let client = server.client().await;
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client, NS);
    sts_api.patch("s", &PatchParams::apply("test").force(), &Patch::Apply(sleep_sts("s", 3, false))).await.expect("apply sts");

    wait_until(Duration::from_secs(20), POLL, "3 ready pods", || async {
        ready_replicas(&sts_api, "s").await.and_then(|n| if n == 3 { Ok(()) } else { Err(format!("{n} ready")) })
    })
    .await;
    // OrderedReady: each pod was created after the one before.
    let mut created = Vec::new();
    for i in 0..3 {
        let pod = pods.get(&format!("s-{i}")).await.expect("pod");
        created.push(rv(&pod));
        let status = pod.status.expect("pod status");
        assert_eq!(status.pod_ip.as_deref(), Some(kubelet.pod_ip(NS, &format!("s-{i}")).to_string().as_str()));
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let refs = pod.metadata.owner_references.expect("owner references");
        assert_eq!(refs[0].kind, "StatefulSet");
    }
    let log = kubelet.pod_log_tail(NS, "s-1");
    let ip1 = kubelet.pod_ip(NS, "s-1");
    let dir1 = kubelet.pvc_dir(NS, "data-s-1");
    assert!(log.contains(&format!("name=s-1 peer={ip1}:1 any={ip1} dir={}", dir1.display())), "args rewritten: {log}");
    assert!(dir1.join("started").exists(), "the mount path is the PVC directory");
    let pvc = pvcs.get("data-s-1").await.expect("pvc");
    assert_eq!(pvc.status.and_then(|s| s.phase).as_deref(), Some("Bound"));
    let sts = sts_api.get("s").await.expect("sts");
    let status = sts.status.expect("sts status");
    assert_eq!((status.replicas, status.updated_replicas, status.observed_generation), (3, Some(3), Some(1)));

    // SIGKILL: the kubelet restarts the process and counts it.
    let pid = kubelet.pod_pid(NS, "s-0").expect("s-0 runs");
    assert!(kubelet.kill_pod(NS, "s-0"));
    wait_until(Duration::from_secs(20), POLL, "s-0 restarted", || async {
        let pod = pods.get("s-0").await.map_err(|e| e.to_string())?;
        let cs = pod.status.and_then(|s| s.container_statuses).and_then(|c| c.into_iter().next()).ok_or("no container status")?;
        let new_pid = kubelet.pod_pid(NS, "s-0");
        if cs.restart_count == 1 && cs.ready && new_pid.is_some_and(|p| p != pid) { Ok(()) } else { Err(format!("{cs:?} pid {new_pid:?}")) }
    })
    .await;

    // A lost PVC: the pod comes back on a new, empty directory.
    let old_uid = pods.get("s-2").await.expect("s-2").metadata.uid;
    let old_pvc_uid = pvcs.get("data-s-2").await.expect("pvc").metadata.uid;
    std::fs::write(kubelet.pvc_dir(NS, "data-s-2").join("marker"), "x").expect("write marker");
    assert!(kubelet.delete_pod_and_pvc(NS, "s-2"));
    wait_until(Duration::from_secs(20), POLL, "s-2 recreated on a new PVC", || async {
        let pod = pods.get("s-2").await.map_err(|e| e.to_string())?;
        let pvc = pvcs.get("data-s-2").await.map_err(|e| e.to_string())?;
        let dir = kubelet.pvc_dir(NS, "data-s-2");
        let fresh =
            pod.metadata.uid != old_uid && pvc.metadata.uid != old_pvc_uid && dir.join("started").exists() && !dir.join("marker").exists();
        if fresh && kubelet.is_running(NS, "s-2") {
            Ok(())
        } else {
            Err(format!("pod uid {:?}, pvc uid {:?}", pod.metadata.uid, pvc.metadata.uid))
        }
    })
    .await;

    // Scale down: the highest ordinal goes, its PVC stays.
    let pid2 = kubelet.pod_pid(NS, "s-2").expect("s-2 runs");
    sts_api.patch_scale("s", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 1}}))).await.expect("scale to 1");
    wait_until(Duration::from_secs(30), POLL, "s-1 and s-2 gone", || async {
        let left: Vec<String> = pods
            .list(&ListParams::default().labels("app=s"))
            .await
            .map_err(|e| e.to_string())?
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        if left == ["s-0"] && !kubelet.is_running(NS, "s-1") && !kubelet.is_running(NS, "s-2") {
            Ok(())
        } else {
            Err(format!("pods {left:?}"))
        }
    })
    .await;
    assert!(!proc_alive(pid2), "the process of s-2 is stopped");
    pvcs.get("data-s-2").await.expect("the PVC of a scaled-down pod stays");
    assert!(kubelet.pvc_dir(NS, "data-s-2").exists());

    // Deleting the StatefulSet deletes its pods (garbage collection); deleting a PVC its directory.
    let pid0 = kubelet.pod_pid(NS, "s-0").expect("s-0 runs");
    sts_api.delete("s", &DeleteParams::default()).await.expect("delete sts");
    wait_until(Duration::from_secs(20), POLL, "every pod gone", || async {
        let n = pods.list(&ListParams::default()).await.map_err(|e| e.to_string())?.items.len();
        if n == 0 && !kubelet.is_running(NS, "s-0") && !proc_alive(pid0) { Ok(()) } else { Err(format!("{n} pods")) }
    })
    .await;
    pvcs.delete("data-s-2", &DeleteParams::default()).await.expect("delete pvc");
    wait_until(Duration::from_secs(10), POLL, "the PVC directory removed", || async {
        if kubelet.pvc_dir(NS, "data-s-2").exists() { Err("still there".to_string()) } else { Ok(()) }
    })
    .await;
}

#[tokio::test]
async fn statefulset_of_real_shoal_nodes() {
    let server = KubeApiServer::start().await;
    let kubelet = Kubelet::start(&server);
    let client = server.client().await;
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client, NS);
    let initial =
        "demo-0=demo-0.demo-peer.default.svc:20160,demo-1=demo-1.demo-peer.default.svc:20160,demo-2=demo-2.demo-peer.default.svc:20160";
    let sts = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": { "name": "demo", "namespace": NS },
        "spec": {
            "replicas": 3, "serviceName": "demo-peer", "podManagementPolicy": "Parallel",
            "selector": { "matchLabels": { "app": "demo" } },
            "template": {
                "metadata": { "labels": { "app": "demo" } },
                "spec": { "containers": [{
                    "name": "shoal", "image": "shoal/shoal-node:dev",
                    "command": ["shoal-node"],
                    "args": [
                        "--name=$(POD_NAME)", "--data-dir=/var/lib/shoal/data", "--listen-addr=0.0.0.0:20160",
                        "--advertise-addr=$(POD_NAME).demo-peer.$(POD_NAMESPACE).svc:20160", "--status-addr=0.0.0.0:20180",
                        format!("--initial-cluster={initial}"),
                    ],
                    "env": [
                        { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
                        { "name": "POD_NAMESPACE", "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } },
                    ],
                    "ports": [{ "name": "grpc", "containerPort": 20160 }, { "name": "status", "containerPort": 20180 }],
                    "volumeMounts": [{ "name": "data", "mountPath": "/var/lib/shoal" }],
                    "readinessProbe": { "httpGet": { "path": "/readyz", "port": 20180 } },
                }] },
            },
            "volumeClaimTemplates": [{
                "metadata": { "name": "data" },
                "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } },
            }],
        },
    });
    sts_api.patch("demo", &PatchParams::apply("test").force(), &Patch::Apply(sts)).await.expect("apply the StatefulSet");
    wait_until(Duration::from_secs(90), Duration::from_millis(250), "3 ready shoal-node pods", || async {
        ready_replicas(&sts_api, "demo").await.and_then(|n| if n == 3 { Ok(()) } else { Err(format!("{n} ready")) })
    })
    .await;

    let endpoints: Vec<String> = (0..3).map(|i| kubelet.pod_addr(NS, &format!("demo-{i}"), 20160)).collect();
    let kv = Client::new(&endpoints, ClientOptions::default()).expect("client");
    wait_until(Duration::from_secs(30), Duration::from_millis(250), "a write through the pods", || async {
        kv.put("default", b"hello", b"kube").await.map_err(|e| e.to_string())
    })
    .await;
    assert_eq!(kv.get("default", b"hello").await.expect("read back"), Some(b"kube".to_vec()));

    let pid2 = kubelet.pod_pid(NS, "demo-2").expect("demo-2 runs");
    sts_api.patch_scale("demo", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 2}}))).await.expect("scale to 2");
    wait_until(Duration::from_secs(30), Duration::from_millis(250), "demo-2 gone", || async {
        match pods.get("demo-2").await {
            Err(kube::Error::Api(s)) if s.code == 404 && !kubelet.is_running(NS, "demo-2") => Ok(()),
            other => Err(format!("{:?}", other.map(|p| p.metadata.name))),
        }
    })
    .await;
    assert!(!proc_alive(pid2), "the process of demo-2 is stopped");
    pvcs.get("data-demo-2").await.expect("the PVC of demo-2 stays");
    assert!(kubelet.pvc_dir(NS, "data-demo-2").join("data").exists(), "and its data directory");
    let status = sts_api.get("demo").await.expect("sts").status.expect("status");
    assert_eq!(status.replicas, 2);
    assert!(pods.get("demo-1").await.is_ok() && kubelet.is_running(NS, "demo-1"));
}
