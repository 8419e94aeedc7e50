//! The StatefulSet: one pod per store, each with its own volume.
//!
//! Every pod runs the same arguments; what tells them apart is `$(POD_NAME)`.
//! The members of `--initial-cluster` are the first `initialMembers` pods;
//! `--initial-cluster-state` comes from the ConfigMap (`new`, then `existing`
//! once they have all come up), so an empty pod bootstraps only while the
//! cluster is being formed and joins an existing cluster otherwise (a pod
//! added by scale-out, or one whose volume was lost). A pod that restarts
//! with its volume finds its store identity there and rejoins as the same
//! store.
//!
//! With `spec.tls` on, the stores' certificate Secret is mounted at
//! `/etc/shoal-tls` and every store serves mutual TLS, reloading the files
//! when the kubelet updates them after a renewal; only the operator's
//! certificate may make the membership calls (`--admin-allowed-cn`).
//!
//! Pods start in parallel: the initial members must be up together to elect
//! the leaders that make each of them ready. Scaling in is driven by the
//! operator (drain, then shrink), never by the StatefulSet controller alone;
//! volumes are retained when the StatefulSet shrinks, and the operator
//! deletes a volume only after its store was tombstoned.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapKeySelector, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, SeccompProfile, SecretVolumeSource, SecurityContext, TopologySpreadConstraint, Volume, VolumeMount,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::config::node_toml;
use super::names::{
    CLIENT_PORT, CLUSTER_STATE_KEY, CONFIG_FILE_KEY, CONFIG_MOUNT, DATA_DIR, DATA_MOUNT, DATA_VOLUME, GRPC_PORT, OPERATOR_CN, STATUS_PORT,
    TLS_MOUNT,
};
use super::tls::{CA_KEY, CERT_KEY, KEY_KEY};
use super::{BuildInput, meta};

/// User and group the node runs as (the image's non-root user).
pub const RUN_AS: i64 = 10001;
/// Annotation with a hash of the node configuration file: a changed file rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "shoal.dev/config-hash";

pub fn statefulset(input: &BuildInput<'_>) -> StatefulSet {
    let names = &input.names;
    let spec = &input.kvc.spec;
    let mut pod_labels = spec.pod.labels.clone();
    pod_labels.extend(names.labels());
    let mut annotations = spec.pod.annotations.clone();
    annotations.insert(CONFIG_HASH_ANNOTATION.into(), format!("{:016x}", fnv1a(node_toml(spec).as_bytes())));
    let mut claim_requests = BTreeMap::new();
    claim_requests.insert("storage".to_string(), Quantity(spec.storage.size.clone()));

    StatefulSet {
        metadata: meta(input, names.statefulset(), names.labels()),
        spec: Some(StatefulSetSpec {
            replicas: Some(input.sts_replicas),
            service_name: Some(names.peer_service()),
            selector: LabelSelector { match_labels: Some(names.selector_labels()), ..Default::default() },
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy { type_: Some("RollingUpdate".into()), ..Default::default() }),
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some("Retain".into()),
                when_scaled: Some("Retain".into()),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels), annotations: Some(annotations), ..Default::default() }),
                spec: Some(pod_spec(input)),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta { name: Some(DATA_VOLUME.into()), labels: Some(names.labels()), ..Default::default() },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: spec.storage.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements { requests: Some(claim_requests), ..Default::default() }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod_spec(input: &BuildInput<'_>) -> PodSpec {
    let spec = &input.kvc.spec;
    PodSpec {
        containers: vec![container(input)],
        affinity: Some(spec.pod.affinity.clone().unwrap_or_else(|| default_affinity(input))),
        tolerations: non_empty(spec.pod.tolerations.clone()),
        node_selector: (!spec.pod.node_selector.is_empty()).then(|| spec.pod.node_selector.clone()),
        topology_spread_constraints: Some(if spec.pod.topology_spread_constraints.is_empty() {
            default_spread(input)
        } else {
            spec.pod.topology_spread_constraints.clone()
        }),
        priority_class_name: spec.pod.priority_class_name.clone(),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            fs_group: Some(RUN_AS),
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
            ..Default::default()
        }),
        // Long enough for a store to finish its in-flight Raft round and flush.
        termination_grace_period_seconds: Some(60),
        automount_service_account_token: Some(false),
        volumes: Some(volumes(input)),
        ..Default::default()
    }
}

fn volumes(input: &BuildInput<'_>) -> Vec<Volume> {
    let mut out = vec![Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource { name: input.names.config_map(), ..Default::default() }),
        ..Default::default()
    }];
    if super::tls::enabled(input.kvc).is_some() {
        out.push(Volume {
            name: "tls".into(),
            secret: Some(SecretVolumeSource { secret_name: Some(input.names.tls_secret()), ..Default::default() }),
            ..Default::default()
        });
    }
    out
}

fn container(input: &BuildInput<'_>) -> Container {
    let names = &input.names;
    let spec = &input.kvc.spec;
    let initial_cluster =
        (0..input.initial_members).map(|i| format!("{}={}", names.pod(i), names.peer_addr(i))).collect::<Vec<_>>().join(",");
    let tls = super::tls::enabled(input.kvc).is_some();
    let mut args = vec![
        "--name=$(POD_NAME)".to_string(),
        format!("--data-dir={DATA_DIR}"),
        format!("--config={CONFIG_MOUNT}/{CONFIG_FILE_KEY}"),
        format!("--listen-addr=0.0.0.0:{GRPC_PORT}"),
        format!("--advertise-addr=$(POD_NAME).{}.$(POD_NAMESPACE).svc:{GRPC_PORT}", names.peer_service()),
        format!("--client-listen-addr=0.0.0.0:{CLIENT_PORT}"),
        format!("--client-advertise-addr=$(POD_NAME).{}.$(POD_NAMESPACE).svc:{CLIENT_PORT}", names.peer_service()),
        format!("--status-addr=0.0.0.0:{STATUS_PORT}"),
        format!("--initial-cluster={initial_cluster}"),
        "--initial-cluster-state=$(SHOAL_INITIAL_CLUSTER_STATE)".to_string(),
        // An empty pod that does not bootstrap joins through the client
        // Service (any ready store answers, and points at the meta leader).
        format!("--join={}", names.client_addr()),
        format!("--replication-factor={}", spec.replication_factor),
    ];
    if tls {
        args.extend([
            format!("--cert-file={TLS_MOUNT}/{CERT_KEY}"),
            format!("--key-file={TLS_MOUNT}/{KEY_KEY}"),
            format!("--trusted-ca-file={TLS_MOUNT}/{CA_KEY}"),
            "--client-cert-auth".to_string(),
            format!("--admin-allowed-cn={OPERATOR_CN}"),
        ]);
    }
    let mut mounts = vec![
        VolumeMount { name: DATA_VOLUME.into(), mount_path: DATA_MOUNT.into(), ..Default::default() },
        VolumeMount { name: "config".into(), mount_path: CONFIG_MOUNT.into(), read_only: Some(true), ..Default::default() },
    ];
    if tls {
        mounts.push(VolumeMount { name: "tls".into(), mount_path: TLS_MOUNT.into(), read_only: Some(true), ..Default::default() });
    }
    let field_env = |name: &str, path: &str| EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.into(), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction { path: Some(path.into()), port: IntOrString::String("status".into()), ..Default::default() }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failures),
        ..Default::default()
    };
    Container {
        name: "shoal-node".into(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.image_pull_policy.clone(),
        command: Some(vec!["shoal-node".into()]),
        args: Some(args),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            EnvVar {
                name: "SHOAL_INITIAL_CLUSTER_STATE".into(),
                value_from: Some(EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: names.config_map(),
                        key: CLUSTER_STATE_KEY.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            EnvVar { name: "RUST_LOG".into(), value: Some("info".into()), ..Default::default() },
        ]),
        ports: Some(vec![
            ContainerPort { name: Some("grpc".into()), container_port: GRPC_PORT, protocol: Some("TCP".into()), ..Default::default() },
            ContainerPort { name: Some("client".into()), container_port: CLIENT_PORT, protocol: Some("TCP".into()), ..Default::default() },
            ContainerPort { name: Some("status".into()), container_port: STATUS_PORT, protocol: Some("TCP".into()), ..Default::default() },
        ]),
        // Opening RocksDB or applying a large snapshot can take a while: the
        // startup probe gives it 10 minutes before liveness applies.
        startup_probe: Some(probe("/healthz", 5, 120)),
        liveness_probe: Some(probe("/healthz", 10, 6)),
        readiness_probe: Some(probe("/readyz", 5, 3)),
        resources: spec.resources.clone(),
        security_context: Some(SecurityContext {
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

/// Prefer one store per Kubernetes node: losing a node then loses one replica.
fn default_affinity(input: &BuildInput<'_>) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: PodAffinityTerm {
                    label_selector: Some(LabelSelector { match_labels: Some(input.names.selector_labels()), ..Default::default() }),
                    topology_key: "kubernetes.io/hostname".into(),
                    ..Default::default()
                },
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One store per Kubernetes node while there are enough nodes, and never
/// more than one above even (`DoNotSchedule`, counting only nodes whose
/// taints the pod tolerates: a cordoned or lost node does not hold the others
/// back); spread over zones as well as they allow (`ScheduleAnyway`).
fn default_spread(input: &BuildInput<'_>) -> Vec<TopologySpreadConstraint> {
    let spread = |key: &str, when: &str| TopologySpreadConstraint {
        max_skew: 1,
        topology_key: key.into(),
        when_unsatisfiable: when.into(),
        label_selector: Some(LabelSelector { match_labels: Some(input.names.selector_labels()), ..Default::default() }),
        node_taints_policy: Some("Honor".into()),
        ..Default::default()
    };
    vec![spread("kubernetes.io/hostname", "DoNotSchedule"), spread("topology.kubernetes.io/zone", "ScheduleAnyway")]
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// FNV-1a: a stable hash (unlike `DefaultHasher`, the same across builds).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}
