//! Builders against golden files: the objects built for
//! `tests/fixtures/kvcluster.yaml` must equal `tests/golden/*.yaml`.
//! `SHOAL_UPDATE_GOLDEN=1 cargo test -p shoal-operator --test golden` rewrites
//! them after a deliberate change (then read the diff).

use std::path::PathBuf;

use serde::Serialize;
use shoal_operator::build::network_policy::{OperatorPeer, network_policy};
use shoal_operator::build::{BuildInput, Names, build, tls};
use shoal_operator::crd::{KvCluster, TlsMode};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests")
}

fn fixture() -> KvCluster {
    let text = std::fs::read_to_string(dir().join("fixtures/kvcluster.yaml")).expect("fixture");
    serde_saphyr::from_str(&text).expect("fixture parses as a KvCluster")
}

fn yaml<T: Serialize>(v: &T) -> String {
    serde_saphyr::to_string(v).expect("serializes")
}

/// Compares with the golden file, or rewrites it under SHOAL_UPDATE_GOLDEN.
fn golden(name: &str, actual: &str) {
    let path = dir().join("golden").join(name);
    if std::env::var_os("SHOAL_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (SHOAL_UPDATE_GOLDEN=1 creates it)", path.display()));
    if expected != actual {
        let first = expected.lines().zip(actual.lines()).position(|(a, b)| a != b).unwrap_or(expected.lines().count());
        panic!(
            "{name} differs from its golden file from line {}:\n--- golden\n{}\n--- built\n{}\n(SHOAL_UPDATE_GOLDEN=1 rewrites it)",
            first + 1,
            expected.lines().skip(first).take(8).collect::<Vec<_>>().join("\n"),
            actual.lines().skip(first).take(8).collect::<Vec<_>>().join("\n"),
        );
    }
}

#[test]
fn the_sample_clusters_objects_match_their_golden_files() {
    let kvc = fixture();
    let input = BuildInput { kvc: &kvc, names: Names::of(&kvc), sts_replicas: 5, initial_members: 5, bootstrapped: false };
    let c = build(&input);
    golden("configmap.yaml", &yaml(&c.config_map));
    golden("service-peer.yaml", &yaml(&c.peer_service));
    golden("service-client.yaml", &yaml(&c.client_service));
    golden("statefulset.yaml", &yaml(&c.statefulset));
    golden("pdb.yaml", &yaml(&c.pdb));
    golden("servicemonitor.yaml", &yaml(&c.service_monitor.expect("monitoring is enabled in the fixture")));
    let spec = tls::enabled(&kvc).expect("TLS is on in the fixture");
    let names = Names::of(&kvc);
    let certificates: Vec<serde_json::Value> = tls::certificates(&names, spec)
        .iter()
        .map(|(secret, leaf)| tls::cert_manager_certificate(&kvc, &names, spec, secret, leaf))
        .collect();
    golden("certificates.yaml", &yaml(&certificates));
    let operator = OperatorPeer::parse("shoal-system", "app.kubernetes.io/name=shoal-operator,app.kubernetes.io/instance=shoal-operator")
        .expect("labels");
    golden("networkpolicy.yaml", &yaml(&network_policy(&input, &operator).expect("enabled in the fixture")));
    let mut off = kvc.clone();
    off.spec.network_policy.as_mut().expect("networkPolicy").enabled = false;
    let input = BuildInput { kvc: &off, names: Names::of(&off), sts_replicas: 5, initial_members: 5, bootstrapped: false };
    assert!(network_policy(&input, &operator).is_none());
}

/// The pods mount the stores' Secret and serve mutual TLS, whoever issues
/// the certificates; without `spec.tls` nothing of it.
#[test]
fn tls_reaches_the_pods_only_when_it_is_on() {
    let pod = |kvc: &KvCluster| {
        let c = build(&BuildInput { kvc, names: Names::of(kvc), sts_replicas: 5, initial_members: 5, bootstrapped: false });
        c.statefulset.spec.expect("spec").template.spec.expect("pod spec")
    };
    let kvc = fixture();
    let mut managed = kvc.clone();
    managed.spec.tls.as_mut().expect("tls").mode = TlsMode::OperatorManaged;
    assert_eq!(pod(&kvc), pod(&managed), "the same pods for both issuers");
    let with = pod(&kvc);
    let args = with.containers[0].args.clone().expect("args");
    for flag in [
        "--cert-file=/etc/shoal-tls/tls.crt",
        "--trusted-ca-file=/etc/shoal-tls/ca.crt",
        "--client-cert-auth",
        "--admin-allowed-cn=shoal-operator",
    ] {
        assert!(args.iter().any(|a| a == flag), "{flag} in {args:?}");
    }
    let secret = with.volumes.expect("volumes").iter().find_map(|v| v.secret.clone()).expect("a Secret volume");
    assert_eq!(secret.secret_name.as_deref(), Some("demo-tls"));

    for off in [None, Some(TlsMode::Disabled)] {
        let mut plain = kvc.clone();
        match off {
            None => plain.spec.tls = None,
            Some(m) => plain.spec.tls.as_mut().expect("tls").mode = m,
        }
        let without = pod(&plain);
        assert!(!without.containers[0].args.clone().expect("args").iter().any(|a| a.contains("tls") || a.contains("cert")));
        assert!(without.volumes.expect("volumes").iter().all(|v| v.secret.is_none()));
    }
}

#[test]
fn the_drivers_decisions_reach_the_objects() {
    let kvc = fixture();
    // Bootstrapped, three initial members, scaling in to 4 while 5 pods run.
    let input = BuildInput { kvc: &kvc, names: Names::of(&kvc), sts_replicas: 4, initial_members: 3, bootstrapped: true };
    let c = build(&input);
    let data = c.config_map.data.expect("data");
    assert_eq!(data["initial-cluster-state"], "existing");
    let sts = c.statefulset.spec.expect("spec");
    assert_eq!(sts.replicas, Some(4));
    let args = sts.template.spec.expect("pod spec").containers[0].args.clone().expect("args");
    let initial = args.iter().find(|a| a.starts_with("--initial-cluster=")).expect("--initial-cluster");
    assert_eq!(
        initial,
        "--initial-cluster=demo-0=demo-0.demo-peer.prod.svc:20160,demo-1=demo-1.demo-peer.prod.svc:20160,demo-2=demo-2.demo-peer.prod.svc:20160"
    );
    // Without monitoring there is no ServiceMonitor; without pod affinity the default one.
    let mut plain = kvc.clone();
    plain.spec.monitoring = None;
    let c = build(&BuildInput { kvc: &plain, names: Names::of(&plain), sts_replicas: 5, initial_members: 5, bootstrapped: false });
    assert!(c.service_monitor.is_none());
    let affinity = c.statefulset.spec.and_then(|s| s.template.spec).and_then(|p| p.affinity).expect("default affinity");
    assert!(affinity.pod_anti_affinity.is_some());
}

#[test]
fn a_changed_node_file_changes_the_pod_template() {
    let kvc = fixture();
    let hash = |k: &KvCluster| {
        let c = build(&BuildInput { kvc: k, names: Names::of(k), sts_replicas: 5, initial_members: 5, bootstrapped: false });
        c.statefulset.spec.and_then(|s| s.template.metadata).and_then(|m| m.annotations).expect("annotations")["shoal.dev/config-hash"]
            .clone()
    };
    let mut tuned = kvc.clone();
    tuned.spec.config.raft_log_gc_count_limit = Some(30_000);
    assert_ne!(hash(&kvc), hash(&tuned), "a new node file must roll the pods");
    let mut scaled = kvc.clone();
    scaled.spec.replicas = 7;
    assert_eq!(hash(&kvc), hash(&scaled), "scaling must not roll the pods");
}

/// Prometheus Operator's rule: a ServiceMonitor's `matchLabels` selects every
/// Service carrying all of them; each selected Service's endpoints are scraped.
#[test]
fn the_service_monitor_selects_exactly_one_service_per_store() {
    let kvc = fixture();
    let c = build(&BuildInput { kvc: &kvc, names: Names::of(&kvc), sts_replicas: 5, initial_members: 5, bootstrapped: false });
    let sm = c.service_monitor.expect("monitoring is enabled in the fixture");
    let selector = sm["spec"]["selector"]["matchLabels"].as_object().expect("matchLabels");
    let selected: Vec<&str> = [&c.peer_service, &c.client_service]
        .into_iter()
        .filter(|s| {
            let labels = s.metadata.labels.as_ref().expect("labels");
            selector.iter().all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
        })
        .map(|s| s.metadata.name.as_deref().expect("name"))
        .collect();
    assert_eq!(selected, vec!["demo-peer"], "exactly the peer Service, which lists every pod once");
    let peer = c.peer_service.spec.as_ref().expect("spec");
    assert_eq!(peer.publish_not_ready_addresses, Some(true), "a store that is not ready is scraped too");
    let port = sm["spec"]["endpoints"][0]["port"].as_str().expect("port");
    assert!(peer.ports.as_ref().expect("ports").iter().any(|p| p.name.as_deref() == Some(port)), "the peer Service has the {port} port");
    assert_eq!(sm["spec"]["jobLabel"], "app.kubernetes.io/name");
    assert_eq!(
        c.peer_service.metadata.labels.as_ref().unwrap()["app.kubernetes.io/name"],
        "shoal",
        "job=\"shoal\", as monitoring/ expects"
    );
}

/// Without spread constraints or affinity in the spec, the pods get the
/// defaults: preferred anti-affinity per node, at most one store above even
/// per node (not scheduled otherwise; tainted nodes not counted) and per zone
/// (scheduled anyway).
#[test]
fn the_default_spread_is_one_store_per_node_and_over_zones() {
    let mut kvc = fixture();
    kvc.spec.pod.topology_spread_constraints.clear();
    let input = BuildInput { kvc: &kvc, names: Names::of(&kvc), sts_replicas: 3, initial_members: 3, bootstrapped: false };
    let sts = build(&input).statefulset;
    let pod = sts.spec.and_then(|s| s.template.spec).expect("pod spec");
    let spread: Vec<(String, String, i32, Option<String>)> = pod
        .topology_spread_constraints
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            let selects = c
                .label_selector
                .and_then(|l| l.match_labels)
                .is_some_and(|m| m.get("app.kubernetes.io/instance").map(String::as_str) == Some("demo"));
            assert!(selects, "each constraint counts this cluster's pods");
            (c.topology_key, c.when_unsatisfiable, c.max_skew, c.node_taints_policy)
        })
        .collect();
    assert_eq!(
        spread,
        [
            ("kubernetes.io/hostname".into(), "DoNotSchedule".into(), 1, Some("Honor".into())),
            ("topology.kubernetes.io/zone".into(), "ScheduleAnyway".into(), 1, Some("Honor".into())),
        ]
    );
}
