//! `reconcile` against a mocked API server (kube-rs's "ApiServerVerifier"
//! pattern): the client talks to a `tower_test` mock, and a [`Verifier`] task
//! takes each request in the order reconcile makes it, checks its method, path,
//! query and body, and answers it with a canned response. A request the script
//! does not expect fails the test with its method and URI; a request the
//! script waits for and never gets fails it after a timeout.
//!
//! What is covered: adding the finalizer, the first round of a new cluster
//! (observe, apply every child, the Bootstrap event, the status), an invalid
//! spec (status, event, error policy, metrics), a paused cluster (observed,
//! nothing applied) and deletion (event, then the finalizer removed; volumes
//! kept).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::client::Body;
use kube::core::Status;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};
use shoal_operator::build::network_policy::OperatorPeer;
use shoal_operator::crd::{KvCluster, KvClusterSpec};
use shoal_operator::error::Error;
use shoal_operator::metrics::Metrics;
use shoal_operator::reconcile::{Context, FINALIZER, error_policy, reconcile};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tower_test::mock::{self, Handle, SendResponse};

const NS: &str = "ns";
const NAME: &str = "demo";
const UID: &str = "6f1c2d3e-0000-4000-8000-00000000d3e0";
const SELECTOR: &str = "app.kubernetes.io/component=store,app.kubernetes.io/instance=demo,app.kubernetes.io/name=shoal";
const KVC_PATH: &str = "/apis/shoal.dev/v1alpha1/namespaces/ns/kvclusters/demo";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/ns/events";
const APPLY: &str = "application/apply-patch+yaml";
const MERGE: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";
/// The whole test, reconcile and verifier alike.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the verifier waits for the next request it expects.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// Fixtures

/// `demo` in `ns`: 3 replicas, replication factor 3, one user column family.
fn cluster(replicas: i32, finalizers: &[&str]) -> KvCluster {
    let spec: KvClusterSpec = serde_json::from_value(json!({
        "replicas": replicas,
        "replicationFactor": 3,
        "image": "shoal/shoal-node:test",
        "columnFamilies": [{ "name": "users", "options": { "compression": "zstd", "blockSize": 16384 } }],
    }))
    .expect("a valid KvClusterSpec");
    let mut kvc = KvCluster::new(NAME, spec);
    kvc.metadata.namespace = Some(NS.into());
    kvc.metadata.uid = Some(UID.into());
    kvc.metadata.generation = Some(1);
    kvc.metadata.resource_version = Some("100".into());
    if !finalizers.is_empty() {
        kvc.metadata.finalizers = Some(finalizers.iter().map(|f| f.to_string()).collect());
    }
    kvc
}

fn deleting(mut kvc: KvCluster) -> KvCluster {
    kvc.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    kvc
}

/// The Context as `main.rs` builds it, around a mocked client.
fn context() -> (Arc<Context>, Verifier) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let ctx = Context {
        client: client.clone(),
        recorder: Recorder::new(client, Reporter { controller: "shoal-operator".into(), instance: None }),
        metrics: Arc::new(Metrics::new().expect("metrics register")),
        drain_stall: Duration::from_secs(600),
        join_stall: Duration::from_secs(600),
        failures: Mutex::new(Default::default()),
        operator: OperatorPeer::parse("shoal-system", "app.kubernetes.io/name=shoal-operator").expect("labels"),
        restoring: Default::default(),
    };
    (Arc::new(ctx), Verifier { handle })
}

// ---------------------------------------------------------------------------
// Canned responses

fn respond(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("JSON")))
        .expect("a response")
}

/// A `Status` 404, as the API server answers a GET of something absent.
fn not_found(group: &str, kind: &str, name: &str) -> Response<Body> {
    respond(
        StatusCode::NOT_FOUND,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "reason": "NotFound", "code": 404,
            "message": format!("{kind}.{group} \"{name}\" not found"),
            "details": { "name": name, "group": group, "kind": kind },
        }),
    )
}

/// An empty list of `kind` (`PodList`, ...).
fn empty_list(kind: &str) -> Response<Body> {
    respond(StatusCode::OK, &json!({ "apiVersion": "v1", "kind": kind, "metadata": { "resourceVersion": "7" }, "items": [] }))
}

/// The object sent, as stored: echoed with a resourceVersion.
fn echo(sent: &Value) -> Response<Body> {
    let mut obj = sent.clone();
    obj["metadata"]["resourceVersion"] = json!("101");
    respond(StatusCode::OK, &obj)
}

/// The KvCluster as the API server returns it after a patch.
fn kvc_response(kvc: &KvCluster) -> Response<Body> {
    respond(StatusCode::OK, &serde_json::to_value(kvc).expect("KvCluster serializes"))
}

// ---------------------------------------------------------------------------
// The verifier

/// One request as the mocked API server received it.
struct Seen {
    method: Method,
    uri: String,
    query: BTreeMap<String, String>,
    content_type: Option<String>,
    body: Value,
}

impl Seen {
    fn assert_query(&self, expected: &[(&str, &str)]) {
        let expected: BTreeMap<String, String> = expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(self.query, expected, "query of {} {}", self.method, self.uri);
    }

    fn assert_content_type(&self, expected: &str) {
        assert_eq!(self.content_type.as_deref(), Some(expected), "content-type of {} {}", self.method, self.uri);
    }

    /// A server-side apply by the operator's field manager, forced.
    fn assert_apply(&self, api_version: &str, kind: &str, name: &str) {
        self.assert_content_type(APPLY);
        self.assert_query(&[("fieldManager", "shoal-operator"), ("force", "true")]);
        assert_eq!(self.body["apiVersion"], api_version, "{}", self.uri);
        assert_eq!(self.body["kind"], kind, "{}", self.uri);
        assert_eq!(self.body["metadata"]["name"], name, "{}", self.uri);
        assert_eq!(self.body["metadata"]["namespace"], NS, "{}", self.uri);
        assert_eq!(self.body["metadata"]["labels"]["app.kubernetes.io/managed-by"], "shoal-operator", "{}", self.uri);
        assert_eq!(
            self.body["metadata"]["ownerReferences"],
            json!([{ "apiVersion": "shoal.dev/v1alpha1", "kind": "KvCluster", "name": NAME, "uid": UID, "controller": true }]),
            "owner references of {}",
            self.uri
        );
    }
}

/// Percent-decodes a query component (`+` is a space in form encoding).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ASCII");
                out.push(u8::from_str_radix(hex, 16).expect("a percent escape"));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).expect("UTF-8 query")
}

fn query_of(uri: &http::Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Plays the API server: one method per request reconcile makes.
struct Verifier {
    handle: Handle<Request<Body>, Response<Body>>,
}

impl Verifier {
    /// The next request, which must be `method path`.
    async fn next(&mut self, method: Method, path: &str) -> (Seen, SendResponse<Response<Body>>) {
        let next = timeout(REQUEST_TIMEOUT, self.handle.next_request()).await;
        let (request, send) = match next {
            Ok(Some(r)) => r,
            Ok(None) => panic!("expected {method} {path}, but the client was dropped without sending it"),
            Err(_) => panic!("expected {method} {path}, but no request came within {REQUEST_TIMEOUT:?}"),
        };
        let (parts, body) = request.into_parts();
        if parts.method != method || parts.uri.path() != path {
            panic!("unexpected request {} {} (expected {method} {path})", parts.method, parts.uri);
        }
        let bytes = body.collect_bytes().await.expect("the request body");
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("a JSON request body") };
        let seen = Seen {
            method: parts.method,
            uri: parts.uri.to_string(),
            query: query_of(&parts.uri),
            content_type: parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string),
            body,
        };
        (seen, send)
    }

    /// Nothing else: the client is dropped without another request.
    async fn done(mut self) {
        match timeout(REQUEST_TIMEOUT, self.handle.next_request()).await {
            Ok(None) => {}
            Ok(Some((request, _))) => panic!("unexpected request {} {} (expected nothing more)", request.method(), request.uri()),
            Err(_) => panic!("the client was not dropped within {REQUEST_TIMEOUT:?}"),
        }
    }

    /// JSON patch adding the finalizer; answers with `kvc` carrying it.
    async fn add_finalizer(&mut self, kvc: &KvCluster) -> Seen {
        let (seen, send) = self.next(Method::PATCH, KVC_PATH).await;
        seen.assert_content_type(JSON_PATCH);
        seen.assert_query(&[]);
        let mut after = kvc.clone();
        after.metadata.finalizers.get_or_insert_with(Vec::new).push(FINALIZER.into());
        send.send_response(kvc_response(&after));
        seen
    }

    /// JSON patch removing the finalizer; answers with `kvc` without it.
    async fn remove_finalizer(&mut self, kvc: &KvCluster) -> Seen {
        let (seen, send) = self.next(Method::PATCH, KVC_PATH).await;
        seen.assert_content_type(JSON_PATCH);
        seen.assert_query(&[]);
        let mut after = kvc.clone();
        after.metadata.finalizers.get_or_insert_with(Vec::new).retain(|f| f != FINALIZER);
        send.send_response(kvc_response(&after));
        seen
    }

    /// The observe stage of a cluster with nothing yet: no StatefulSet, no
    /// ConfigMap, no pods, no volume claims.
    async fn observe_empty_cluster(&mut self) {
        self.get_statefulset_missing().await;
        self.get_config_map_missing().await;
        self.list_pods_empty().await;
        self.list_pvcs_empty().await;
    }

    /// GET of the StatefulSet: there is none yet.
    async fn get_statefulset_missing(&mut self) {
        let (seen, send) = self.next(Method::GET, "/apis/apps/v1/namespaces/ns/statefulsets/demo").await;
        seen.assert_query(&[]);
        send.send_response(not_found("apps", "statefulsets", NAME));
    }

    /// GET of the ConfigMap (does it say the cluster is formed?): there is none yet.
    async fn get_config_map_missing(&mut self) {
        let (seen, send) = self.next(Method::GET, "/api/v1/namespaces/ns/configmaps/demo-config").await;
        seen.assert_query(&[]);
        send.send_response(not_found("", "configmaps", "demo-config"));
    }

    /// LIST of the cluster's pods, by its selector: none.
    async fn list_pods_empty(&mut self) {
        let (seen, send) = self.next(Method::GET, "/api/v1/namespaces/ns/pods").await;
        seen.assert_query(&[("labelSelector", SELECTOR)]);
        send.send_response(empty_list("PodList"));
    }

    /// LIST of the cluster's volume claims, by its selector: none.
    async fn list_pvcs_empty(&mut self) {
        let (seen, send) = self.next(Method::GET, "/api/v1/namespaces/ns/persistentvolumeclaims").await;
        seen.assert_query(&[("labelSelector", SELECTOR)]);
        send.send_response(empty_list("PersistentVolumeClaimList"));
    }

    /// Server-side apply of one child at `path`; echoes it back.
    async fn apply(&mut self, path: &str, api_version: &str, kind: &str, name: &str) -> Value {
        let (seen, send) = self.next(Method::PATCH, path).await;
        seen.assert_apply(api_version, kind, name);
        send.send_response(echo(&seen.body));
        seen.body
    }

    async fn apply_config_map(&mut self) -> Value {
        self.apply("/api/v1/namespaces/ns/configmaps/demo-config", "v1", "ConfigMap", "demo-config").await
    }

    async fn apply_peer_service(&mut self) -> Value {
        self.apply("/api/v1/namespaces/ns/services/demo-peer", "v1", "Service", "demo-peer").await
    }

    async fn apply_client_service(&mut self) -> Value {
        self.apply("/api/v1/namespaces/ns/services/demo", "v1", "Service", "demo").await
    }

    async fn apply_pdb(&mut self) -> Value {
        self.apply("/apis/policy/v1/namespaces/ns/poddisruptionbudgets/demo", "policy/v1", "PodDisruptionBudget", "demo").await
    }

    async fn apply_statefulset(&mut self) -> Value {
        self.apply("/apis/apps/v1/namespaces/ns/statefulsets/demo", "apps/v1", "StatefulSet", "demo").await
    }

    /// POST of an events.k8s.io/v1 Event about the KvCluster; echoes it back.
    async fn create_event(&mut self) -> Value {
        let (seen, send) = self.next(Method::POST, EVENTS_PATH).await;
        seen.assert_content_type("application/json");
        let ev = &seen.body;
        assert_eq!(ev["apiVersion"], "events.k8s.io/v1");
        assert_eq!(ev["kind"], "Event");
        assert_eq!(ev["metadata"]["namespace"], NS);
        assert_eq!(ev["reportingController"], "shoal-operator");
        assert_eq!(ev["regarding"]["kind"], "KvCluster");
        assert_eq!(ev["regarding"]["apiVersion"], "shoal.dev/v1alpha1");
        assert_eq!(ev["regarding"]["name"], NAME);
        assert_eq!(ev["regarding"]["namespace"], NS);
        assert_eq!(ev["regarding"]["uid"], UID);
        send.send_response(echo(&seen.body));
        seen.body
    }

    /// Merge patch of the status subresource; answers with `kvc` carrying it.
    async fn patch_status(&mut self, kvc: &KvCluster) -> Value {
        let (seen, send) = self.next(Method::PATCH, &format!("{KVC_PATH}/status")).await;
        seen.assert_content_type(MERGE);
        seen.assert_query(&[]);
        let mut stored = serde_json::to_value(kvc).expect("KvCluster serializes");
        stored["status"] = seen.body["status"].clone();
        send.send_response(respond(StatusCode::OK, &stored));
        seen.body["status"].clone()
    }
}

/// Runs `script` as the API server while reconcile runs, then awaits both:
/// a panic in the script is raised here, with its own message.
async fn run<S, F>(kvc: KvCluster, ctx: &Arc<Context>, verifier: Verifier, script: S) -> (shoal_operator::error::Result<Action>, Verifier)
where
    S: FnOnce(Verifier) -> F,
    F: std::future::Future<Output = Verifier> + Send + 'static,
{
    let server: JoinHandle<Verifier> = tokio::spawn(script(verifier));
    let reconciling = tokio::spawn(reconcile(Arc::new(kvc), ctx.clone()));
    let verifier = join(server, "the verifier").await;
    let result = join(reconciling, "reconcile").await;
    (result, verifier)
}

async fn join<T>(task: JoinHandle<T>, what: &str) -> T {
    match timeout(TEST_TIMEOUT, task).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Ok(Err(e)) => panic!("{what} was cancelled: {e}"),
        Err(_) => panic!("{what} did not finish within {TEST_TIMEOUT:?}"),
    }
}

/// Drops the last client and checks that reconcile sent nothing more.
async fn finish(ctx: Arc<Context>, verifier: Verifier) {
    assert_eq!(Arc::strong_count(&ctx), 1, "reconcile kept the Context");
    drop(ctx);
    verifier.done().await;
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .expect("status.conditions is a list")
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

fn container_args(sts: &Value) -> Vec<String> {
    let containers = sts["spec"]["template"]["spec"]["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "one container");
    containers[0]["args"].as_array().expect("args").iter().map(|a| a.as_str().expect("a string arg").to_string()).collect()
}

// ---------------------------------------------------------------------------
// Tests

/// A new KvCluster: the first round only adds the finalizer, and waits for
/// the change that makes (the next round does the work).
#[tokio::test]
async fn new_cluster_gets_the_finalizer_and_nothing_else() {
    let (ctx, verifier) = context();
    let kvc = cluster(3, &[]);
    let k = kvc.clone();
    let (result, verifier) = run(kvc, &ctx, verifier, |mut v| async move {
        let seen = v.add_finalizer(&k).await;
        assert_eq!(
            seen.body,
            json!([
                { "op": "test", "path": "/metadata/finalizers", "value": null },
                { "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] },
            ])
        );
        v
    })
    .await;
    assert_eq!(result.expect("reconcile succeeds"), Action::await_change());
    assert!(ctx.metrics.encode().contains("shoal_operator_reconciles_total{result=\"ok\"} 1"), "{}", ctx.metrics.encode());
    finish(ctx, verifier).await;
}

/// A KvCluster that already has someone else's finalizer: ours is appended.
#[tokio::test]
async fn finalizer_is_appended_after_others() {
    let (ctx, verifier) = context();
    let kvc = cluster(3, &["example.com/keep"]);
    let k = kvc.clone();
    let (result, verifier) = run(kvc, &ctx, verifier, |mut v| async move {
        let seen = v.add_finalizer(&k).await;
        assert_eq!(
            seen.body,
            json!([
                { "op": "test", "path": "/metadata/finalizers", "value": ["example.com/keep"] },
                { "op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER },
            ])
        );
        v
    })
    .await;
    assert_eq!(result.expect("reconcile succeeds"), Action::await_change());
    finish(ctx, verifier).await;
}

/// The first real round of a new cluster: observe (nothing exists), apply
/// every child in order, record the Bootstrap event, write the status.
#[tokio::test]
async fn first_round_bootstraps_the_cluster() {
    let (ctx, verifier) = context();
    let kvc = cluster(3, &[FINALIZER]);
    let k = kvc.clone();
    let (result, verifier) = run(kvc, &ctx, verifier, |mut v| async move {
        // 1. dereference
        v.observe_empty_cluster().await;

        // 2. apply, in reconcile.rs's order
        let cm = v.apply_config_map().await;
        assert_eq!(cm["data"]["initial-cluster-state"], "new");
        let file = cm["data"]["shoal.toml"].as_str().expect("shoal.toml is a string");
        let file: toml::Value = toml::from_str(file).expect("shoal.toml is TOML");
        let cfs = file["column-families"].as_array().expect("[[column-families]]");
        assert_eq!(cfs.len(), 1, "{file}");
        assert_eq!(cfs[0]["name"].as_str(), Some("users"));
        assert_eq!(cfs[0]["compression"].as_str(), Some("zstd"));
        assert_eq!(cfs[0]["block_size"].as_integer(), Some(16384));

        let peer = v.apply_peer_service().await;
        assert_eq!(peer["spec"]["clusterIP"], "None");
        assert_eq!(peer["spec"]["publishNotReadyAddresses"], true);
        let selector = json!({
            "app.kubernetes.io/component": "store", "app.kubernetes.io/instance": NAME, "app.kubernetes.io/name": "shoal",
        });
        assert_eq!(peer["spec"]["selector"], selector);

        let client = v.apply_client_service().await;
        assert_eq!(client["spec"]["type"], "ClusterIP");
        assert_eq!(client["spec"]["selector"], selector);
        let ports: Vec<(&str, i64)> = client["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| (p["name"].as_str().expect("port name"), p["port"].as_i64().expect("port number")))
            .collect();
        assert_eq!(ports, [("grpc", 20160), ("client", 20161), ("status", 20180)]);

        let pdb = v.apply_pdb().await;
        assert_eq!(pdb["spec"]["maxUnavailable"], 1);
        assert_eq!(pdb["spec"]["selector"]["matchLabels"], selector);

        let sts = v.apply_statefulset().await;
        assert_eq!(sts["spec"]["replicas"], 3, "replicas = spec.replicas");
        assert_eq!(sts["spec"]["podManagementPolicy"], "Parallel");
        assert_eq!(sts["spec"]["serviceName"], "demo-peer");
        assert_eq!(sts["spec"]["selector"]["matchLabels"], selector);
        assert_eq!(sts["spec"]["persistentVolumeClaimRetentionPolicy"], json!({ "whenDeleted": "Retain", "whenScaled": "Retain" }));
        let args = container_args(&sts);
        let initial = "--initial-cluster=demo-0=demo-0.demo-peer.ns.svc:20160,\
                       demo-1=demo-1.demo-peer.ns.svc:20160,\
                       demo-2=demo-2.demo-peer.ns.svc:20160";
        assert!(args.iter().any(|a| a == initial), "{args:?}");
        assert!(args.iter().any(|a| a == "--initial-cluster-state=$(SHOAL_INITIAL_CLUSTER_STATE)"), "{args:?}");
        assert!(args.iter().any(|a| a == "--replication-factor=3"), "{args:?}");

        // 3. announce
        let ev = v.create_event().await;
        assert_eq!(ev["reason"], "Bootstrap");
        assert_eq!(ev["type"], "Normal");
        assert_eq!(ev["action"], "Create");
        assert_eq!(ev["note"], "creating StatefulSet demo with 3 initial members");

        // 4. status
        let st = v.patch_status(&k).await;
        assert_eq!(st["phase"], "Bootstrapping");
        assert_eq!(st["initialMembers"], 3);
        assert_eq!(st["bootstrapped"], false);
        assert_eq!(st["replicas"], 0);
        assert_eq!(st["readyReplicas"], 0);
        assert_eq!(st["selector"], SELECTOR);
        assert_eq!(st["observedGeneration"], 1);
        assert_eq!(st["scaling"], Value::Null, "written as null so that a finished scaling is cleared");
        assert_eq!(st["drain"], Value::Null);
        assert_eq!(st["conditions"].as_array().map(Vec::len), Some(3), "{st}");
        let available = condition(&st, "Available");
        assert_eq!(available["status"], "False");
        assert_eq!(available["reason"], "ClusterUnreachable");
        let progressing = condition(&st, "Progressing");
        assert_eq!(progressing["status"], "True");
        assert_eq!(progressing["reason"], "Bootstrapping");
        assert_eq!(progressing["message"], "creating the StatefulSet with 3 initial members");
        let degraded = condition(&st, "Degraded");
        assert_eq!(degraded["status"], "False");
        assert_eq!(degraded["observedGeneration"], 1);
        v
    })
    .await;
    // Bootstrapping is "busy": look again soon.
    assert_eq!(result.expect("reconcile succeeds"), Action::requeue(Duration::from_secs(3)));
    finish(ctx, verifier).await;
}

/// `spec.paused`: the round observes the cluster and writes the status, but
/// applies no object (the verifier fails the test on any request not in the
/// script) and announces the pause once.
#[tokio::test]
async fn a_paused_cluster_is_observed_but_nothing_is_applied() {
    let (ctx, verifier) = context();
    let mut kvc = cluster(3, &[FINALIZER]);
    kvc.spec.paused = true;
    let k = kvc.clone();
    let (result, verifier) = run(kvc, &ctx, verifier, |mut v| async move {
        v.observe_empty_cluster().await;
        let st = v.patch_status(&k).await;
        assert_eq!(st["phase"], "Paused");
        let progressing = condition(&st, "Progressing");
        assert_eq!(progressing["status"], "False");
        assert_eq!(progressing["reason"], "Paused");
        assert_eq!(condition(&st, "Available")["reason"], "ClusterUnreachable");
        assert_eq!(st["initialMembers"], Value::Null, "the driver's memory is not advanced");
        let ev = v.create_event().await;
        assert_eq!(ev["reason"], "Paused");
        assert_eq!(ev["type"], "Normal");
        v
    })
    .await;
    assert_eq!(result.expect("reconcile succeeds"), Action::requeue(Duration::from_secs(30)));
    finish(ctx, verifier).await;
}

/// An invalid spec that got past the schema: Degraded, a Warning event, an
/// error that waits for the spec to change.
#[tokio::test]
async fn invalid_spec_sets_degraded_and_waits_for_a_change() {
    let (ctx, verifier) = context();
    let kvc = cluster(1, &[FINALIZER]);
    let k = kvc.clone();
    let (result, verifier) = run(kvc.clone(), &ctx, verifier, |mut v| async move {
        let st = v.patch_status(&k).await;
        assert_eq!(st["phase"], "Degraded");
        assert_eq!(st["selector"], SELECTOR);
        assert_eq!(st["observedGeneration"], 1);
        assert_eq!(st["conditions"].as_array().map(Vec::len), Some(1), "{st}");
        let degraded = condition(&st, "Degraded");
        assert_eq!(degraded["status"], "True");
        assert_eq!(degraded["reason"], "InvalidSpec");
        let message = degraded["message"].as_str().expect("a message");
        assert!(message.contains("replicas (1)") && message.contains("replicationFactor (3)"), "{message}");

        let ev = v.create_event().await;
        assert_eq!(ev["reason"], "InvalidSpec");
        assert_eq!(ev["type"], "Warning");
        assert_eq!(ev["action"], "Validate");
        assert_eq!(ev["note"].as_str(), Some(message));
        v
    })
    .await;

    let err = result.expect_err("an invalid spec fails the round");
    assert!(matches!(err, Error::InvalidSpec(_)), "{err:?}");
    assert!(err.to_string().contains("replicationFactor"), "{err}");
    let kvc = Arc::new(kvc);
    assert_eq!(error_policy(kvc.clone(), &err, ctx.clone()), Action::await_change());

    // Anything else is retried, with a doubling backoff.
    let api_error =
        || Error::Kube(kube::Error::Api(Status::failure("etcdserver: request timed out", "InternalError").with_code(500).boxed()));
    assert_eq!(error_policy(kvc.clone(), &api_error(), ctx.clone()), Action::requeue(Duration::from_secs(1)));
    assert_eq!(error_policy(kvc.clone(), &api_error(), ctx.clone()), Action::requeue(Duration::from_secs(2)));
    drop(kvc);

    let metrics = ctx.metrics.encode();
    assert!(metrics.contains("shoal_operator_reconcile_errors_total{reason=\"invalid_spec\"} 1"), "{metrics}");
    assert!(metrics.contains("shoal_operator_reconcile_errors_total{reason=\"kube_api\"} 2"), "{metrics}");
    assert!(metrics.contains("shoal_operator_reconciles_total{result=\"error\"} 1"), "{metrics}");
    finish(ctx, verifier).await;
}

/// Deleting a KvCluster: an event saying the volumes are kept, then the
/// finalizer goes; nothing is deleted by the operator itself.
#[tokio::test]
async fn deletion_keeps_the_volumes_and_removes_the_finalizer() {
    let (ctx, verifier) = context();
    let kvc = deleting(cluster(3, &["example.com/keep", FINALIZER]));
    let k = kvc.clone();
    let (result, verifier) = run(kvc, &ctx, verifier, |mut v| async move {
        let ev = v.create_event().await;
        assert_eq!(ev["reason"], "Deleting");
        assert_eq!(ev["type"], "Normal");
        assert_eq!(ev["action"], "Delete");
        let note = ev["note"].as_str().expect("a note");
        assert!(note.contains("volumes are kept"), "{note}");
        assert!(note.contains(&format!("kubectl delete pvc -n ns -l {SELECTOR}")), "{note}");

        let seen = v.remove_finalizer(&k).await;
        assert_eq!(
            seen.body,
            json!([
                { "op": "test", "path": "/metadata/finalizers/1", "value": FINALIZER },
                { "op": "remove", "path": "/metadata/finalizers/1" },
            ])
        );
        v
    })
    .await;
    assert_eq!(result.expect("cleanup succeeds"), Action::await_change());
    // `done` fails on any further request: no DELETE of a PVC or the StatefulSet.
    finish(ctx, verifier).await;
}
