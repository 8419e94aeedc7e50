//! Builders: pure functions from a `KvCluster` (and what the membership driver
//! decided) to the objects the operator applies. No client, no I/O: each is
//! tested from golden YAML files (`operator/tests/golden/`).
//!
//! | object | builder |
//! |---|---|
//! | headless Service `<name>-peer` (peer DNS) | [`services::peer_service`] |
//! | client Service `<name>` | [`services::client_service`] |
//! | ConfigMap `<name>-config` (node file, cluster state) | [`config::config_map`] |
//! | StatefulSet `<name>` | [`statefulset::statefulset`] |
//! | PodDisruptionBudget `<name>` (maxUnavailable 1) | [`pdb::pdb`] |
//! | ServiceMonitor `<name>` (optional) | [`monitor::service_monitor`] |
//! | TLS Secrets or cert-manager `Certificate`s (with `spec.tls`) | [`tls`] |
//! | NetworkPolicy `<name>` (optional) | [`network_policy::network_policy`] |
//!
//! Every object carries the cluster's labels ([`names::Names::labels`]) and a
//! controller owner reference to the `KvCluster`, so deleting the cluster
//! deletes them (volumes excepted: they outlive it, like a StatefulSet's).

pub mod config;
pub mod monitor;
pub mod names;
pub mod network_policy;
pub mod pdb;
pub mod services;
pub mod statefulset;
pub mod tls;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

use crate::crd::KvCluster;
pub use names::Names;

/// What the builders need besides the `KvCluster`: the driver's decisions.
#[derive(Clone, Debug)]
pub struct BuildInput<'a> {
    pub kvc: &'a KvCluster,
    pub names: Names,
    /// Pods the StatefulSet should have now (not always `spec.replicas`: a
    /// scale-in shrinks it only after the stores were drained).
    pub sts_replicas: i32,
    /// The pods that form the cluster: ordinals `0..initial_members`.
    pub initial_members: i32,
    /// Whether the initial members have all come up (cluster state `existing`).
    pub bootstrapped: bool,
}

/// Every object of one cluster.
#[derive(Clone, Debug)]
pub struct Children {
    pub peer_service: Service,
    pub client_service: Service,
    pub config_map: ConfigMap,
    pub statefulset: StatefulSet,
    pub pdb: PodDisruptionBudget,
    pub service_monitor: Option<serde_json::Value>,
}

pub fn build(input: &BuildInput<'_>) -> Children {
    Children {
        peer_service: services::peer_service(input),
        client_service: services::client_service(input),
        config_map: config::config_map(input),
        statefulset: statefulset::statefulset(input),
        pdb: pdb::pdb(input),
        service_monitor: monitor::service_monitor(input),
    }
}

/// Metadata of a child object: name, namespace, labels, owner reference.
fn meta(input: &BuildInput<'_>, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    owned_meta(input.kvc, &input.names, name, labels)
}

fn owned_meta(kvc: &KvCluster, names: &Names, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(names.namespace.clone()),
        labels: Some(labels),
        owner_references: kvc.controller_owner_ref(&()).map(|r| vec![r]),
        ..Default::default()
    }
}
