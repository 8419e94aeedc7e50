//! The Helm chart and the example, checked with the real tools.
//!
//! - `helm lint --strict` of `charts/shoal-operator`;
//! - `helm template` with default and non-default values, every rendered manifest
//!   validated by `kubernetes-validate --strict` against Kubernetes 1.33's own
//!   OpenAPI schemas (the ServiceMonitor, a Prometheus Operator custom resource
//!   those schemas lack, is checked by shape instead);
//! - `values.schema.json` rejects values of the wrong type and unknown keys;
//! - the RBAC grants exactly what the operator uses, no wildcard;
//! - `examples/kvcluster.yaml` validates against the KvCluster CRD's
//!   `openAPIV3Schema` (with `openapi-schema-validator`, refusing unknown fields
//!   like the API server's strict field validation), and broken copies do not;
//!   `examples/kvbackup.yaml` likewise against the KvBackup CRD.
//!
//! The tools come from `scripts/setup.sh` (which `.ci/run` calls): Helm at
//! `$SHOAL_HELM`, `~/.cache/shoal-tools/bin/helm` or on `PATH`; the Python
//! packages `kubernetes-validate` and `openapi-schema-validator` for `python3`
//! (or `$SHOAL_PYTHON`). A missing tool fails the test with what to run; nothing
//! is skipped. YAML is turned into JSON by PyYAML, which kubernetes-validate
//! depends on.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::{Value, json};
use shoal_tests::helm;

const RELEASE: &str = "shoal-operator";
const RELEASE_NS: &str = "shoal-system";
const KUBERNETES_VERSION: &str = "1.33";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> PathBuf {
    root().join("charts/shoal-operator")
}

/// `python3` (or `$SHOAL_PYTHON`), checked once to import the modules the tests use.
fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let py = std::env::var("SHOAL_PYTHON").unwrap_or_else(|_| "python3".into());
        let out = Command::new(&py)
            .args(["-c", "import yaml, kubernetes_validate, openapi_schema_validator"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {py} ({e}): install Python 3, then run scripts/setup.sh"));
        assert!(
            out.status.success(),
            "{py} lacks kubernetes-validate / openapi-schema-validator (and PyYAML): run scripts/setup.sh \
             (`{py} -m pip install kubernetes-validate openapi-schema-validator`)\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        py
    })
}

fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
    let what = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input).unwrap_or_else(|e| panic!("writing to {what}: {e}"));
    }
    child.wait_with_output().unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
}

fn text(out: &Output) -> String {
    format!("--- stdout\n{}--- stderr\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `helm template` of the chart with CRDs and `--set` values; the raw output, or the failure.
fn try_template(sets: &[&str]) -> Result<String, Output> {
    let mut cmd = Command::new(helm());
    cmd.args(["template", RELEASE]).arg(chart()).args(["--namespace", RELEASE_NS, "--include-crds"]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = run(&mut cmd, None);
    if out.status.success() { Ok(String::from_utf8(out.stdout).expect("helm output is UTF-8")) } else { Err(out) }
}

fn template(sets: &[&str]) -> String {
    try_template(sets).unwrap_or_else(|out| panic!("helm template with {sets:?} failed:\n{}", text(&out)))
}

/// Every non-empty YAML document of `yaml`, as JSON.
fn yaml_docs(yaml: &str) -> Vec<Value> {
    const TO_JSON: &str = "import json, sys, yaml\n\
        print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d is not None]))";
    let out = run(Command::new(python()).args(["-c", TO_JSON]), Some(yaml.as_bytes()));
    assert!(out.status.success(), "cannot parse YAML:\n{}\n{yaml}", text(&out));
    match serde_json::from_slice(&out.stdout).expect("JSON from python") {
        Value::Array(docs) => docs,
        other => panic!("expected a list of documents, got {other}"),
    }
}

fn yaml_file(path: &Path) -> Vec<Value> {
    let yaml = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    yaml_docs(&yaml)
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_else(|| panic!("document without kind: {doc}"))
}

fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or_else(|| panic!("document without metadata.name: {doc}"))
}

fn of_kind<'a>(docs: &'a [Value], k: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| kind(d) == k).collect()
}

fn one_of_kind<'a>(docs: &'a [Value], k: &str) -> &'a Value {
    let found = of_kind(docs, k);
    assert_eq!(found.len(), 1, "expected exactly one {k}, got {}: {:?}", found.len(), found.iter().map(|d| name(d)).collect::<Vec<_>>());
    found[0]
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().map(|a| a.iter().map(|s| s.as_str().unwrap_or_else(|| panic!("not a string: {s}"))).collect()).unwrap_or_default()
}

const VALUE_SETS: [&[&str]; 2] = [
    &[],
    &[
        "watchNamespace=apps",
        "serviceMonitor.enabled=true",
        "prometheusRule.enabled=true",
        "grafanaDashboard.enabled=true",
        "networkPolicy.enabled=true",
        "replicaCount=2",
    ],
];

/// Kinds of the Prometheus Operator (custom resources, not in kubernetes-validate's schemas).
const MONITORING_KINDS: [&str; 2] = ["ServiceMonitor", "PrometheusRule"];

#[test]
fn helm_lint_strict_passes() {
    for sets in VALUE_SETS {
        let mut cmd = Command::new(helm());
        cmd.args(["lint", "--strict"]).arg(chart());
        for s in sets {
            cmd.args(["--set", s]);
        }
        let out = run(&mut cmd, None);
        let t = text(&out);
        assert!(out.status.success(), "helm lint --strict with {sets:?} failed:\n{t}");
        assert!(t.contains("1 chart(s) linted, 0 chart(s) failed"), "unexpected helm lint output:\n{t}");
        assert!(!t.contains("[WARNING]") && !t.contains("[ERROR]"), "helm lint reported problems:\n{t}");
    }
}

/// Renders with `sets`, validates every manifest but the ServiceMonitor with
/// kubernetes-validate, and returns the documents.
fn render_and_validate(sets: &[&str]) -> Vec<Value> {
    let rendered = template(sets);
    let docs = yaml_docs(&rendered);
    let (monitors, builtin): (Vec<&Value>, Vec<&Value>) = docs.iter().partition(|d| MONITORING_KINDS.contains(&kind(d)));
    for m in &monitors {
        assert_eq!(m["apiVersion"], "monitoring.coreos.com/v1", "{} apiVersion", kind(m));
    }
    // JSON is YAML: one JSON document per `---`.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("rendered.yaml");
    let body: String = builtin.iter().map(|d| format!("---\n{d}\n")).collect();
    std::fs::write(&file, body).expect("write rendered manifests");
    let out = run(
        Command::new(python()).args(["-m", "kubernetes_validate", "--strict", "--kubernetes-version", KUBERNETES_VERSION]).arg(&file),
        None,
    );
    let t = text(&out);
    assert!(
        out.status.success(),
        "kubernetes-validate --strict (Kubernetes {KUBERNETES_VERSION}) refused the chart rendered with {sets:?}:\n{t}"
    );
    let passed = t.lines().filter(|l| l.contains(" passed for resource ")).count();
    assert_eq!(passed, builtin.len(), "kubernetes-validate passed {passed} of {} manifests:\n{t}", builtin.len());
    assert!(!t.contains("WARN") && !t.contains("ERROR"), "kubernetes-validate warned:\n{t}");
    docs
}

#[test]
fn rendered_manifests_pass_kubernetes_validate() {
    // Default values: all namespaces, no ServiceMonitor.
    let docs = render_and_validate(VALUE_SETS[0]);
    let kinds: BTreeSet<&str> = docs.iter().map(kind).collect();
    let want: BTreeSet<&str> =
        ["CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service", "Deployment"]
            .into();
    assert_eq!(kinds, want, "kinds rendered with default values");
    let crds: BTreeSet<&str> = of_kind(&docs, "CustomResourceDefinition").into_iter().map(name).collect();
    assert_eq!(crds, BTreeSet::from(["kvbackups.shoal.dev", "kvclusters.shoal.dev"]));

    let deploy = one_of_kind(&docs, "Deployment");
    assert_eq!(deploy["spec"]["replicas"], 1);
    let pod = &deploy["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let args = strings(&c["args"]);
    assert_eq!(args[0], "run", "the container runs `shoal-operator run`: {args:?}");
    assert!(args.contains(&"--metrics-addr=0.0.0.0:8080") && args.contains(&"--leader-election=true"), "{args:?}");
    assert!(!args.iter().any(|a| a.starts_with("--namespace")), "default values watch all namespaces: {args:?}");
    for (var, path) in [("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")] {
        let env = c["env"].as_array().expect("env").iter().find(|e| e["name"] == var).unwrap_or_else(|| panic!("no {var} in {}", c["env"]));
        assert_eq!(env["valueFrom"]["fieldRef"]["fieldPath"], path, "{var}");
    }
    assert_eq!(c["livenessProbe"]["httpGet"], json!({"path": "/healthz", "port": "metrics"}));
    assert_eq!(c["readinessProbe"]["httpGet"], json!({"path": "/readyz", "port": "metrics"}));
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert!(c["resources"]["requests"].is_object(), "resources come from values: {}", c["resources"]);
    assert_eq!(pod["serviceAccountName"], name(one_of_kind(&docs, "ServiceAccount")));
    for d in &docs {
        if kind(d) == "CustomResourceDefinition" {
            continue;
        }
        let labels = &d["metadata"]["labels"];
        for l in [
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ] {
            assert!(labels[l].is_string(), "{} {} lacks label {l}: {labels}", kind(d), name(d));
        }
    }

    // One namespace, a ServiceMonitor, two replicas.
    let docs = render_and_validate(VALUE_SETS[1]);
    // Cluster-wide only the read-only Nodes/PersistentVolumes grant.
    let cluster_wide: Vec<&str> = of_kind(&docs, "ClusterRole").into_iter().chain(of_kind(&docs, "ClusterRoleBinding")).map(name).collect();
    assert!(cluster_wide.len() == 2 && cluster_wide.iter().all(|n| n.ends_with("-nodes")), "{cluster_wide:?}");
    let deploy = one_of_kind(&docs, "Deployment");
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert!(strings(&deploy["spec"]["template"]["spec"]["containers"][0]["args"]).contains(&"--namespace=apps"));
    let sm = one_of_kind(&docs, "ServiceMonitor");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    let svc = one_of_kind(&docs, "Service");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], svc["spec"]["ports"][0]["name"], "the ServiceMonitor scrapes the Service's named port");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(sm["spec"]["namespaceSelector"]["matchNames"], json!([RELEASE_NS]));
    let selector = sm["spec"]["selector"]["matchLabels"].as_object().expect("ServiceMonitor selector");
    assert!(!selector.is_empty());
    for (k, v) in selector {
        assert_eq!(&svc["metadata"]["labels"][k], v, "the ServiceMonitor selects the metrics Service by {k}");
    }
    assert_eq!(sm["spec"]["jobLabel"], "app.kubernetes.io/name");
    assert_eq!(svc["metadata"]["labels"]["app.kubernetes.io/name"], "shoal-operator", "job=\"shoal-operator\", as the alerts expect");
    // The PrometheusRule carries monitoring/alerts.yaml's groups, unchanged
    // (Helm does not expand the rules' own {{ $labels }} templates).
    let rule = one_of_kind(&docs, "PrometheusRule");
    let alerts = yaml_file(&root().join("monitoring/alerts.yaml"));
    assert_eq!(rule["spec"]["groups"], alerts[0]["groups"], "the PrometheusRule's groups are monitoring/alerts.yaml's");
    assert!(rule["spec"]["groups"][0]["rules"][0]["annotations"]["summary"].as_str().is_some_and(|s| s.contains("{{ $labels.instance }}")));
    // The dashboard ConfigMap, labelled for the Grafana sidecar, holds monitoring/dashboard.json.
    let dashboard = one_of_kind(&docs, "ConfigMap");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: Value = serde_json::from_str(dashboard["data"]["shoal.json"].as_str().expect("shoal.json")).expect("the dashboard is JSON");
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("monitoring/dashboard.json")).expect("dashboard.json")).expect("JSON");
    assert_eq!(json, file, "the ConfigMap's dashboard is monitoring/dashboard.json");
}

#[test]
fn values_schema_rejects_bad_values() {
    for (set, want) in [
        ("replicaCount=notanumber", "replicaCount"),
        ("bogusTopLevelKey=1", "bogusTopLevelKey"),
        ("serviceMonitor.enabled=maybe", "serviceMonitor.enabled"),
        ("image.pullPolicy=Sometimes", "image.pullPolicy"),
        ("watchNamespace=Not_A_Namespace", "watchNamespace"),
        ("metrics.port=70000", "metrics.port"),
        ("scratchSize=lots", "scratchSize"),
    ] {
        match try_template(&[set]) {
            Ok(rendered) => panic!("helm template --set {set} rendered although values.schema.json should refuse it:\n{rendered}"),
            Err(out) => {
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(
                    err.contains("values don't meet the specifications of the schema") && err.contains(want),
                    "helm template --set {set} failed, but not with a schema error about {want}:\n{}",
                    text(&out)
                );
            }
        }
    }
    // Two active operators without leader election: refused by the template itself.
    let out =
        try_template(&["replicaCount=2", "leaderElection.enabled=false"]).expect_err("replicaCount=2 without leader election must fail");
    assert!(String::from_utf8_lossy(&out.stderr).contains("leaderElection.enabled=true"), "{}", text(&out));
}

type Grant = (String, String, String);

fn grants(role: &Value) -> Vec<Grant> {
    let mut all = Vec::new();
    for rule in role["rules"].as_array().unwrap_or_else(|| panic!("{} has no rules", name(role))) {
        let obj = rule.as_object().expect("rule is an object");
        for key in obj.keys() {
            assert!(["apiGroups", "resources", "verbs"].contains(&key.as_str()), "{}: unexpected rule field {key} in {rule}", name(role));
        }
        for field in ["apiGroups", "resources", "verbs"] {
            assert!(!strings(&rule[field]).iter().any(|s| s.contains('*')), "{}: wildcard in {field}: {rule}", name(role));
        }
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                for v in strings(&rule["verbs"]) {
                    all.push((g.to_string(), r.to_string(), v.to_string()));
                }
            }
        }
    }
    all
}

fn expand(spec: &[(&str, &[&str], &[&str])]) -> BTreeSet<Grant> {
    let mut set = BTreeSet::new();
    for (g, resources, verbs) in spec {
        for r in *resources {
            for v in *verbs {
                set.insert((g.to_string(), r.to_string(), v.to_string()));
            }
        }
    }
    set
}

fn assert_exact(role: &Value, want: &BTreeSet<Grant>) {
    let got = grants(role);
    let set: BTreeSet<Grant> = got.iter().cloned().collect();
    assert_eq!(set.len(), got.len(), "{} {} grants something twice: {got:?}", kind(role), name(role));
    let extra: Vec<_> = set.difference(want).collect();
    let missing: Vec<_> = want.difference(&set).collect();
    assert!(extra.is_empty() && missing.is_empty(), "{} {}: grants not asked for {extra:?}; missing {missing:?}", kind(role), name(role));
}

fn assert_binds(binding: &Value, role: &Value, sa: &Value) {
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": kind(role), "name": name(role)}),
        "{}",
        name(binding)
    );
    assert_eq!(binding["subjects"], json!([{"kind": "ServiceAccount", "name": name(sa), "namespace": RELEASE_NS}]), "{}", name(binding));
    assert_eq!(binding["metadata"]["namespace"], role["metadata"]["namespace"], "{} is in its Role's namespace", name(binding));
}

#[test]
fn rbac_is_exactly_what_the_operator_uses() {
    const ALL: &[&str] = &["get", "list", "watch", "create", "patch", "update", "delete"];
    let operator = expand(&[
        ("shoal.dev", &["kvclusters"], &["get", "list", "watch", "patch", "update"]),
        ("shoal.dev", &["kvclusters/status"], &["get", "patch", "update"]),
        ("shoal.dev", &["kvclusters/finalizers"], &["update"]),
        // KvBackup: watched, its status written.
        ("shoal.dev", &["kvbackups"], &["get", "list", "watch"]),
        ("shoal.dev", &["kvbackups/status"], &["get", "patch", "update"]),
        ("apps", &["statefulsets"], ALL),
        ("", &["services", "configmaps"], ALL),
        ("policy", &["poddisruptionbudgets"], ALL),
        // delete: a pod stranded by a lost node gets a new volume.
        ("", &["pods"], &["get", "list", "watch", "delete"]),
        ("", &["persistentvolumeclaims"], &["get", "list", "watch", "patch", "delete"]),
        ("events.k8s.io", &["events"], &["create", "patch"]),
        ("", &["events"], &["create", "patch"]),
        ("monitoring.coreos.com", &["servicemonitors"], ALL),
        ("networking.k8s.io", &["networkpolicies"], &["create", "patch", "delete"]),
        // spec.tls: read by name, never listed; created (the CA) or applied.
        // Also the S3 settings of KvBackup and restoreFrom (read by name).
        ("", &["secrets"], &["get", "create", "patch"]),
        ("cert-manager.io", &["certificates"], &["create", "patch"]),
    ]);
    let leases = expand(&[("coordination.k8s.io", &["leases"], &["get", "create", "update", "patch"])]);
    // Cluster-wide in both modes, read-only: is a stranded pod's node gone?
    let nodes = expand(&[("", &["nodes", "persistentvolumes"], &["get"]), ("", &["nodes"], &["list"])]);
    let nodes_role = |docs: &[Value]| -> Value {
        let roles = of_kind(docs, "ClusterRole");
        let role = roles.into_iter().find(|r| name(r).ends_with("-nodes")).expect("the nodes ClusterRole").clone();
        assert_exact(&role, &nodes);
        let binding = of_kind(docs, "ClusterRoleBinding")
            .into_iter()
            .find(|b| b["roleRef"]["name"] == role["metadata"]["name"])
            .expect("a ClusterRoleBinding for the nodes ClusterRole")
            .clone();
        assert_binds(&binding, &role, one_of_kind(docs, "ServiceAccount"));
        role
    };

    // All namespaces: a ClusterRole, and a Role for the Lease in the release namespace.
    let docs = template(&[]);
    let docs = yaml_docs(&docs);
    let sa = one_of_kind(&docs, "ServiceAccount");
    assert_eq!(sa["metadata"]["namespace"], RELEASE_NS);
    nodes_role(&docs);
    let crs = of_kind(&docs, "ClusterRole");
    assert_eq!(crs.len(), 2, "the operator's ClusterRole and the nodes one");
    let cr = crs.into_iter().find(|r| !name(r).ends_with("-nodes")).expect("the operator's ClusterRole");
    assert_exact(cr, &operator);
    let binding =
        of_kind(&docs, "ClusterRoleBinding").into_iter().find(|b| b["roleRef"]["name"] == cr["metadata"]["name"]).expect("binding");
    assert_binds(binding, cr, sa);
    let role = one_of_kind(&docs, "Role");
    assert_eq!(role["metadata"]["namespace"], RELEASE_NS, "the Lease Role lives in the release namespace");
    assert_exact(role, &leases);
    assert_binds(one_of_kind(&docs, "RoleBinding"), role, sa);

    // One namespace: the same grants in a Role there, nothing cluster-wide.
    let docs = yaml_docs(&template(&["watchNamespace=apps"]));
    nodes_role(&docs);
    assert!(
        of_kind(&docs, "ClusterRole").len() == 1 && of_kind(&docs, "ClusterRoleBinding").len() == 1,
        "watchNamespace set: nothing cluster-wide but reading Nodes and PersistentVolumes"
    );
    let sa = one_of_kind(&docs, "ServiceAccount");
    let roles = of_kind(&docs, "Role");
    assert_eq!(roles.len(), 2, "an operator Role and a Lease Role");
    let watched = roles.iter().find(|r| r["metadata"]["namespace"] == "apps").expect("a Role in namespace apps");
    assert_exact(watched, &operator);
    let lease_role = roles.iter().find(|r| r["metadata"]["namespace"] == RELEASE_NS).expect("a Role in the release namespace");
    assert_exact(lease_role, &leases);
    for role in [watched, lease_role] {
        let binding = of_kind(&docs, "RoleBinding")
            .into_iter()
            .find(|b| b["roleRef"]["name"] == role["metadata"]["name"])
            .unwrap_or_else(|| panic!("no RoleBinding for Role {}", name(role)));
        assert_binds(binding, role, sa);
    }

    // No leader election: no Lease grant at all.
    let docs = yaml_docs(&template(&["leaderElection.enabled=false"]));
    assert!(of_kind(&docs, "Role").is_empty() && of_kind(&docs, "RoleBinding").is_empty(), "leaderElection.enabled=false: no Lease Role");
}

/// Validates `instance` against the KvCluster CRD `crd` (its served version's
/// `openAPIV3Schema`) with openapi-schema-validator: Ok, or the errors it printed.
/// Objects with `properties` refuse unknown fields, as the API server's strict
/// field validation does (unless they say `x-kubernetes-preserve-unknown-fields`).
/// CEL rules (`x-kubernetes-validations`) are not evaluated here.
fn validate_against_crd(crd: &Value, instance: &Value) -> Result<(), String> {
    const VALIDATE: &str = r#"
import json, sys
from openapi_schema_validator import OAS30Validator, oas30_format_checker

crd, obj = json.load(sys.stdin)
version = obj["apiVersion"].split("/")[-1]
group = crd["spec"]["group"]
errors = []
if obj["apiVersion"] != group + "/" + version:
    errors.append("apiVersion %s is not of group %s" % (obj["apiVersion"], group))
if obj.get("kind") != crd["spec"]["names"]["kind"]:
    errors.append("kind %s is not %s" % (obj.get("kind"), crd["spec"]["names"]["kind"]))
served = [v for v in crd["spec"]["versions"] if v["name"] == version and v.get("served")]
if not served:
    errors.append("version %s is not served by the CRD" % version)
    schema = {}
else:
    schema = served[0]["schema"]["openAPIV3Schema"]

def strict(s):
    if isinstance(s, dict):
        if "properties" in s and "additionalProperties" not in s and not s.get("x-kubernetes-preserve-unknown-fields"):
            s["additionalProperties"] = False
        for v in s.values():
            strict(v)
    elif isinstance(s, list):
        for v in s:
            strict(v)

strict(schema)
# apiVersion, kind and metadata are the API server's own (checked above or by it),
# always allowed at the root whatever the schema says.
for k in ("apiVersion", "kind", "metadata"):
    schema.get("properties", {}).pop(k, None)
obj = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
for e in OAS30Validator(schema, format_checker=oas30_format_checker).iter_errors(obj):
    errors.append("%s: %s" % ("/".join(str(p) for p in e.absolute_path) or "(root)", e.message))
for e in errors:
    print(e)
sys.exit(1 if errors else 0)
"#;
    let input = serde_json::to_vec(&json!([crd, instance])).expect("JSON");
    let out = run(Command::new(python()).args(["-c", VALIDATE]), Some(&input));
    match out.status.code() {
        Some(0) => Ok(()),
        Some(1) => Err(String::from_utf8_lossy(&out.stdout).into_owned()),
        _ => panic!("the CRD schema validator crashed:\n{}", text(&out)),
    }
}

#[test]
fn example_validates_against_the_crd_schema() {
    let example = yaml_file(&root().join("examples/kvcluster.yaml"));
    assert_eq!(example.len(), 1, "examples/kvcluster.yaml holds one KvCluster");
    let example = &example[0];
    assert_eq!(example["apiVersion"], "shoal.dev/v1alpha1");
    assert_eq!(example["kind"], "KvCluster");
    assert_eq!(name(example), "demo");
    let spec = &example["spec"];
    assert_eq!(spec["replicas"], 3);
    assert_eq!(spec["replicationFactor"], 3);
    assert_eq!(spec["image"], "shoal/shoal-node:0.1.0");
    assert_eq!(spec["storage"]["size"], "10Gi");
    assert_eq!(
        spec["columnFamilies"],
        json!([{"name": "users", "options": {"compression": "zstd", "blockSize": 32768, "bloomBitsPerKey": 10}}])
    );
    assert!(spec["resources"]["requests"].is_object());
    assert_eq!(spec["monitoring"]["serviceMonitor"]["enabled"], false);

    // The chart's copy always; the generated crds/kvcluster.yaml too once it exists
    // (the operator's tests check the two equal `shoal-operator crd`).
    let chart_crd = chart().join("crds/kvcluster.yaml");
    assert!(chart_crd.exists(), "{} is missing", chart_crd.display());
    let mut crd_files = vec![chart_crd];
    let generated = root().join("crds/kvcluster.yaml");
    if generated.exists() {
        crd_files.push(generated);
    }
    for file in crd_files {
        let docs = yaml_file(&file);
        let crd = one_of_kind(&docs, "CustomResourceDefinition");
        assert_eq!(name(crd), "kvclusters.shoal.dev", "{}", file.display());
        let what = format!("examples/kvcluster.yaml against {}", file.display());
        validate_against_crd(crd, example).unwrap_or_else(|e| panic!("{what}:\n{e}"));

        // Broken copies must fail, each with an error naming what is wrong.
        type Breaker = fn(&mut Value);
        let broken: [(&str, Breaker, &str); 4] = [
            ("replicas: \"three\"", |v| v["spec"]["replicas"] = json!("three"), "replicas"),
            ("an unknown field", |v| v["spec"]["columnFamilies"][0]["options"]["blocksize"] = json!(4096), "blocksize"),
            ("compression: brotli", |v| v["spec"]["columnFamilies"][0]["options"]["compression"] = json!("brotli"), "brotli"),
            ("no replicas", |v| _ = v["spec"].as_object_mut().expect("spec").remove("replicas"), "replicas"),
        ];
        for (desc, breaker, want) in broken {
            let mut copy = example.clone();
            breaker(&mut copy);
            match validate_against_crd(crd, &copy) {
                Ok(()) => panic!("{what}: a copy with {desc} validated, the schema should refuse it"),
                Err(e) => assert!(e.contains(want), "{what}: a copy with {desc} failed, but the errors do not mention {want}:\n{e}"),
            }
        }
    }
    // examples/kvbackup.yaml against the chart's KvBackup CRD.
    let backup_crd_docs = yaml_file(&chart().join("crds/kvbackup.yaml"));
    let backup_crd = one_of_kind(&backup_crd_docs, "CustomResourceDefinition");
    assert_eq!(name(backup_crd), "kvbackups.shoal.dev");
    let kvb = yaml_file(&root().join("examples/kvbackup.yaml"));
    validate_against_crd(backup_crd, &kvb[0]).unwrap_or_else(|e| panic!("examples/kvbackup.yaml against the KvBackup CRD:\n{e}"));
    let mut no_cluster = kvb[0].clone();
    _ = no_cluster["spec"].as_object_mut().expect("spec").remove("cluster");
    assert!(validate_against_crd(backup_crd, &no_cluster).is_err_and(|e| e.contains("cluster")), "a KvBackup without a cluster validated");
}
