//! Names, labels and addresses of a cluster's objects, in one place.
//!
//! For a `KvCluster` `demo` in namespace `ns`: the StatefulSet, the client
//! Service and the PodDisruptionBudget are `demo`, the headless Service is
//! `demo-peer`, the ConfigMap `demo-config`; pod `i` is `demo-i`, peers and
//! the operator reach it at `demo-i.demo-peer.ns.svc:20160` (the peer port:
//! every service) and clients at `demo-i.demo-peer.ns.svc:20161` (the client
//! port: Kv, Meta's lookups, Status).

use std::collections::BTreeMap;

use crate::crd::KvCluster;

/// gRPC port of a store, its peer port: every service (Kv, Raft, Meta, Admin,
/// Status), for the other stores and the operator.
pub const GRPC_PORT: i32 = 20160;
/// gRPC port for clients only: Kv, Meta's lookups and Status (the node's
/// `--client-listen-addr`); meta hands clients this port's addresses.
pub const CLIENT_PORT: i32 = 20161;
/// HTTP status port (`/metrics`, `/healthz`, `/readyz`).
pub const STATUS_PORT: i32 = 20180;
/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "shoal-operator";
/// Label telling the peer Service (`peer`) from the client one (`client`); the
/// ServiceMonitor selects `peer`, which lists every pod, ready or not, once.
pub const SERVICE_LABEL: &str = "shoal.dev/service";
/// Where a pod's volume is mounted, and the data directory inside it.
pub const DATA_MOUNT: &str = "/var/lib/shoal";
pub const DATA_DIR: &str = "/var/lib/shoal/data";
/// Where the ConfigMap is mounted, and the node configuration file in it.
pub const CONFIG_MOUNT: &str = "/etc/shoal";
pub const CONFIG_FILE_KEY: &str = "shoal.toml";
/// The ConfigMap key holding `new` or `existing` (the node's `--initial-cluster-state`).
pub const CLUSTER_STATE_KEY: &str = "initial-cluster-state";
/// The volume claim template's name; PVC `i` is `data-<sts>-i`.
pub const DATA_VOLUME: &str = "data";
/// Where the stores' TLS Secret is mounted (`tls.crt`, `tls.key`, `ca.crt`).
pub const TLS_MOUNT: &str = "/etc/shoal-tls";
/// Common Name of the operator's client certificate: the only identity the
/// stores allow the Admin calls that change membership.
pub const OPERATOR_CN: &str = "shoal-operator";
/// Common Name of the certificate issued for applications.
pub const CLIENT_CN: &str = "shoal-client";

/// The names of one cluster's objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub cluster: String,
    pub namespace: String,
}

impl Names {
    pub fn of(kvc: &KvCluster) -> Names {
        Names {
            cluster: kvc.metadata.name.clone().unwrap_or_default(),
            namespace: kvc.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
        }
    }

    pub fn statefulset(&self) -> String {
        self.cluster.clone()
    }

    pub fn client_service(&self) -> String {
        self.cluster.clone()
    }

    pub fn peer_service(&self) -> String {
        format!("{}-peer", self.cluster)
    }

    pub fn config_map(&self) -> String {
        format!("{}-config", self.cluster)
    }

    /// The CA of an operator-managed cluster (`ca.crt`, `ca.key`).
    pub fn ca_secret(&self) -> String {
        format!("{}-ca", self.cluster)
    }

    /// The stores' certificate, mounted into every pod.
    pub fn tls_secret(&self) -> String {
        format!("{}-tls", self.cluster)
    }

    /// The operator's client certificate.
    pub fn operator_tls_secret(&self) -> String {
        format!("{}-operator-tls", self.cluster)
    }

    /// A client certificate for applications.
    pub fn client_tls_secret(&self) -> String {
        format!("{}-client-tls", self.cluster)
    }

    /// The name every store's certificate carries and the operator checks it
    /// for (it dials pod IPs, which no certificate names).
    pub fn tls_server_name(&self) -> String {
        format!("{}.{}.svc", self.peer_service(), self.namespace)
    }

    pub fn pdb(&self) -> String {
        self.cluster.clone()
    }

    pub fn pod(&self, ordinal: i32) -> String {
        format!("{}-{ordinal}", self.cluster)
    }

    pub fn pvc(&self, ordinal: i32) -> String {
        format!("{DATA_VOLUME}-{}-{ordinal}", self.cluster)
    }

    /// The ordinal of a pod (or store) name of this cluster: `demo-3` → 3.
    pub fn ordinal_of(&self, pod: &str) -> Option<i32> {
        let rest = pod.strip_prefix(&self.cluster)?.strip_prefix('-')?;
        if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) || (rest.len() > 1 && rest.starts_with('0')) {
            return None;
        }
        rest.parse().ok()
    }

    /// The stable DNS name other stores reach pod `ordinal` at.
    pub fn peer_addr(&self, ordinal: i32) -> String {
        format!("{}.{}.{}.svc:{GRPC_PORT}", self.pod(ordinal), self.peer_service(), self.namespace)
    }

    /// The address clients reach pod `ordinal`'s client port at.
    pub fn client_port_addr(&self, ordinal: i32) -> String {
        format!("{}.{}.{}.svc:{CLIENT_PORT}", self.pod(ordinal), self.peer_service(), self.namespace)
    }

    /// The client Service's address on the peer port: any ready store of the
    /// cluster (joining stores register through it).
    pub fn client_addr(&self) -> String {
        format!("{}.{}.svc:{GRPC_PORT}", self.client_service(), self.namespace)
    }

    /// Labels that select the cluster's storage pods (immutable in a StatefulSet).
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), "shoal".to_string()),
            ("app.kubernetes.io/instance".to_string(), self.cluster.clone()),
            ("app.kubernetes.io/component".to_string(), "store".to_string()),
        ])
    }

    /// The selector as the string the scale subresource reports.
    pub fn selector_string(&self) -> String {
        self.selector_labels().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
    }

    /// Labels of every object the operator makes for this cluster.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.insert("app.kubernetes.io/managed-by".into(), FIELD_MANAGER.into());
        labels
    }

    /// Labels of one of the two Services: `labels()` and [`SERVICE_LABEL`] =
    /// `kind` (`peer` or `client`), so that a selector can tell them apart.
    pub fn service_labels(&self, kind: &str) -> BTreeMap<String, String> {
        let mut labels = self.labels();
        labels.insert(SERVICE_LABEL.into(), kind.into());
        labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_parse_only_this_clusters_pods() {
        let n = Names { cluster: "demo".into(), namespace: "ns".into() };
        assert_eq!(n.ordinal_of("demo-0"), Some(0));
        assert_eq!(n.ordinal_of("demo-12"), Some(12));
        assert_eq!(n.ordinal_of("demo-01"), None);
        assert_eq!(n.ordinal_of("demo-"), None);
        assert_eq!(n.ordinal_of("demo-x"), None);
        assert_eq!(n.ordinal_of("demox-1"), None);
        assert_eq!(n.ordinal_of("other-1"), None);
        assert_eq!(n.peer_addr(2), "demo-2.demo-peer.ns.svc:20160");
        assert_eq!(n.pvc(1), "data-demo-1");
    }
}
