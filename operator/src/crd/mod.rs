//! The `KvCluster` custom resource (`shoal.dev/v1alpha1`, short name `kvc`).
//!
//! [`KvClusterSpec`] is what a user asks for: how many stores, the replication
//! factor, the image, storage, column families and node tunables, and the pod
//! essentials a platform team needs (labels, affinity, tolerations, ...), and
//! TLS ([`TlsSpec`]: off, operator-managed or cert-manager certificates) and
//! a NetworkPolicy ([`NetworkPolicySpec`]).
//! [`KvClusterStatus`] is what the operator observed and is doing: ready
//! replicas, one entry per store ([`StoreEntry`]), the conditions `Available`,
//! `Progressing` and `Degraded`, and the scaling operation in progress
//! ([`ScalingStatus`]).
//!
//! The schema carries the checks the API server can make itself, so a bad spec
//! is refused at `kubectl apply` time: CEL rules reject `replicas <
//! replicationFactor`, invalid or reserved column family names, duplicate
//! column families, a changed `replicationFactor`, `storage.storageClassName`
//! or `tls.mode`, a shrunk `storage.size`, and cert-manager TLS without an
//! issuer. Every string a rule reads has a `maxLength`, which keeps the rules' estimated
//! cost within the API server's budget. The operator checks the
//! same again ([`crate::validate`]) for objects that bypassed the schema.
//!
//! `spec.restoreFrom` ([`RestoreFromSpec`]) loads a backup into a new
//! cluster (`status.restore`); the `KvBackup` resource that takes backups is
//! in [`backup`]'s types ([`KvBackup`]).
//!
//! `crds/kvcluster.yaml` is generated from these types by `shoal-operator crd`
//! ([`crd_yaml`]), `crds/kvbackup.yaml` by `shoal-operator crd --kind
//! KvBackup` ([`backup_crd_yaml`]); a test fails when a committed file drifts.

mod backup;

pub use backup::{BackupRecord, KvBackup, KvBackupSpec, KvBackupStatus};

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration, TopologySpreadConstraint};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The CRD's API group.
pub const GROUP: &str = "shoal.dev";

/// A Shoal cluster: `replicas` storage nodes in one StatefulSet, each a store
/// holding Raft replicas ("peers") of the cluster's regions.
// clippy reads the printcolumn(...) list as repeated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "shoal.dev",
    version = "v1alpha1",
    kind = "KvCluster",
    plural = "kvclusters",
    shortname = "kvc",
    namespaced,
    status = "KvClusterStatus",
    derive = "PartialEq",
    doc = "A Shoal cluster: a StatefulSet of storage nodes whose membership the operator drives",
    scale(spec_replicas_path = ".spec.replicas", status_replicas_path = ".status.replicas", label_selector_path = ".status.selector"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas", description = "Stores asked for"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas", description = "Pods ready"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self.replicas >= self.replicationFactor").message("replicas must be at least replicationFactor"))]
#[x_kube(validation = Rule::new("(has(self.tls) ? self.tls.mode : 'Disabled') == (has(oldSelf.tls) ? oldSelf.tls.mode : 'Disabled')").message("tls.mode cannot be changed; it is chosen when the cluster is created"))]
#[serde(rename_all = "camelCase")]
pub struct KvClusterSpec {
    /// Number of stores (pods). Scaling in drains the highest ordinals first.
    #[schemars(range(min = 1, max = 99))]
    pub replicas: i32,
    /// Replicas kept of every region (1..7, odd numbers make sense). Fixed at creation.
    #[serde(default = "default_replication_factor")]
    #[schemars(range(min = 1, max = 7))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("replicationFactor cannot be changed"))]
    pub replication_factor: i32,
    /// Image of `shoal-node`.
    #[serde(default = "default_image")]
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Pull policy of the image (Always, IfNotPresent, Never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Each store's persistent volume. `size` may grow (every PVC is
    /// expanded, where the StorageClass allows it); the class is fixed.
    #[serde(default)]
    pub storage: StorageSpec,
    /// CPU and memory of the storage container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// User column families (besides `default`), each with its storage options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.all(c, self.exists_one(d, d.name == c.name))").message("column family names must be unique"))]
    pub column_families: Vec<ColumnFamilySpec>,
    /// Node tunables; anything left out keeps the node's default.
    #[serde(default, skip_serializing_if = "NodeConfigOverrides::is_empty")]
    pub config: NodeConfigOverrides,
    /// Pod essentials: labels, annotations and scheduling.
    #[serde(default, skip_serializing_if = "PodOverrides::is_empty")]
    pub pod: PodOverrides,
    /// Prometheus Operator integration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<MonitoringSpec>,
    /// Stops every change the operator makes to this cluster (no object
    /// applied, no store joined, drained or removed) while the status keeps
    /// being updated: for maintenance by hand. A step under way stays where it
    /// is and goes on when this is unset.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// TLS on the stores' gRPC ports (client and peer: clients, Raft and the
    /// Admin API, with mutual TLS). Chosen at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// A NetworkPolicy in front of the stores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<NetworkPolicySpec>,
    /// A backup to load into the new cluster once its first stores are up
    /// (`status.restore` says how it went). Cannot be changed once set; a
    /// cluster that holds keys already is not restored into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("restoreFrom cannot be changed"))]
    pub restore_from: Option<RestoreFromSpec>,
}

/// Where a new cluster's data comes from: a backup taken by `shoalctl backup
/// create` or a `KvBackup`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestoreFromSpec {
    /// The backup's URL: `s3://BUCKET/PREFIX/NAME` or `file:///DIR/NAME`
    /// (a `KvBackup`'s `status.lastBackup.url`).
    #[schemars(length(min = 6, max = 1024))]
    #[x_kube(validation = Rule::new("self.startsWith('s3://') || self.startsWith('file:///')").message("restoreFrom.source must be s3://... or file:///..."))]
    pub source: String,
    /// A Secret in this namespace with the S3 settings (`AWS_*` keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub credentials_secret: Option<String>,
}

fn default_replication_factor() -> i32 {
    3
}

fn default_image() -> String {
    format!("shoal/shoal-node:{}", env!("CARGO_PKG_VERSION"))
}

/// A store's persistent volume claim.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.storageClassName) == has(oldSelf.storageClassName)").message("storage.storageClassName cannot be changed"))]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Requested size, a Kubernetes quantity such as `10Gi`.
    #[serde(default = "default_storage_size")]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]+(\\\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$')").message("size must be a quantity such as 10Gi"))]
    #[x_kube(validation = Rule::new("!self.matches('^[0-9]+(\\\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$') || !oldSelf.matches('^[0-9]+(\\\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$') || quantity(self).compareTo(quantity(oldSelf)) >= 0").message("storage.size can grow, not shrink"))]
    pub size: String,
    /// Storage class of the claims; the cluster's default when left out. Fixed at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("storage.storageClassName cannot be changed"))]
    pub storage_class_name: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec { size: default_storage_size(), storage_class_name: None }
    }
}

fn default_storage_size() -> String {
    "10Gi".into()
}

/// A user column family and its RocksDB options.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ColumnFamilySpec {
    /// 1-64 characters of `[a-z0-9_-]`; `raft_log`, `raft_state`, `region_meta` and `meta` are reserved.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9_-]{1,64}$')").message("column family names are 1-64 characters of [a-z0-9_-]"))]
    #[x_kube(validation = Rule::new("!(self in ['raft_log', 'raft_state', 'region_meta', 'meta'])").message("this column family name is reserved"))]
    pub name: String,
    #[serde(default, skip_serializing_if = "ColumnFamilyOptions::is_empty")]
    pub options: ColumnFamilyOptions,
}

/// RocksDB options of one column family; each left out keeps the node's default.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ColumnFamilyOptions {
    /// Block compression: none, snappy, lz4 or zstd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "compression_schema")]
    pub compression: Option<Compression>,
    /// Uncompressed data block size in bytes (1 KiB..1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1024, max = 1048576))]
    pub block_size: Option<u32>,
    /// Bloom filter bits per key; 0 disables it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 64))]
    pub bloom_bits_per_key: Option<f64>,
    /// Memtable size in bytes (at least 1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1048576))]
    pub write_buffer_size: Option<u64>,
}

/// A plain string enum: the derived schema of an `Option<enum>` lists `null`
/// among the values, which API servers do not all accept.
fn compression_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Block compression: none, snappy, lz4 or zstd.",
        "type": "string",
        "enum": ["none", "snappy", "lz4", "zstd"],
    })
}

impl ColumnFamilyOptions {
    fn is_empty(&self) -> bool {
        self == &ColumnFamilyOptions::default()
    }
}

/// Block compression of a column family.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Node tunables passed to every `shoal-node` through its config file. The
/// operator owns the identity and addressing settings (name, addresses, data
/// directory, initial cluster, replication factor); these are the rest.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeConfigOverrides {
    /// Largest key accepted, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_key_size: Option<u64>,
    /// Largest value accepted, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_value_size: Option<u64>,
    /// Raft tick, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub raft_tick_ms: Option<u64>,
    /// Ticks without a leader before a follower campaigns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 3, max = 10000))]
    pub raft_election_ticks: Option<u64>,
    /// A region larger than this many bytes splits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 65536))]
    pub region_split_size: Option<u64>,
    /// A region holding more keys than this splits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 16))]
    pub region_split_keys: Option<u64>,
    /// How often a store heartbeats meta, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 600000))]
    pub heartbeat_interval_ms: Option<u64>,
    /// A region's log is truncated past this many entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 16))]
    pub raft_log_gc_count_limit: Option<u64>,
    /// ... or past this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 65536))]
    pub raft_log_gc_size_limit: Option<u64>,
    /// Snapshot bytes per chunk on the wire (1 MiB..4 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1048576, max = 4194304))]
    pub snapshot_chunk_size: Option<u64>,
    /// Snapshot send rate limit per store, bytes per second (0 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_max_bytes_per_sec: Option<u64>,
    /// A store unheard of this long is DOWN and its regions re-replicated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_store_down_time_secs: Option<u64>,
    /// Most learners seeded on one store at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub placement_max_snapshots_per_store: Option<u64>,
    /// How long a request waits for Raft, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 600000))]
    pub request_timeout_ms: Option<u64>,
}

impl NodeConfigOverrides {
    fn is_empty(&self) -> bool {
        self == &NodeConfigOverrides::default()
    }
}

/// Labels, annotations and scheduling of the storage pods.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Replaces the default (preferred anti-affinity across nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Replace the default: at most one store above even per node
    /// (`DoNotSchedule`: one per node while there are enough nodes) and per
    /// zone (`ScheduleAnyway`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Priority class of the storage pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

impl PodOverrides {
    fn is_empty(&self) -> bool {
        self == &PodOverrides::default()
    }
}

/// Prometheus Operator integration.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_monitor: Option<ServiceMonitorSpec>,
}

/// A `monitoring.coreos.com/v1` ServiceMonitor scraping every store's `/metrics`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    #[serde(default)]
    pub enabled: bool,
    /// Scrape interval, such as `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Extra labels, for a Prometheus that selects monitors by label.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// TLS on the gRPC port. With it on, every store serves TLS and requires a
/// client certificate signed by the cluster's CA (mutual TLS); only the
/// operator's certificate (Common Name `shoal-operator`) may make the Admin
/// calls that change membership. The certificates live in Secrets: `<name>-tls`
/// (the stores', mounted into every pod), `<name>-operator-tls` (the
/// operator's) and `<name>-client-tls` (for applications, Common Name
/// `shoal-client`), each with `tls.crt`, `tls.key` and `ca.crt`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.mode != 'CertManager' || has(self.issuerRef)").message("tls.mode CertManager needs tls.issuerRef"))]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// `Disabled` (plaintext), `OperatorManaged` (the operator keeps a CA in
    /// Secret `<name>-ca` and issues and renews the certificates) or
    /// `CertManager` (the operator asks cert-manager for them, signed by
    /// `issuerRef`).
    #[schemars(schema_with = "tls_mode_schema")]
    pub mode: TlsMode,
    /// The cert-manager Issuer or ClusterIssuer that signs (mode `CertManager`).
    /// It must fill in `ca.crt` (a CA issuer does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
    /// Lifetime of the certificates, in hours (default 2160: 90 days). They are
    /// renewed when a third of it is left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 87600))]
    pub certificate_lifetime_hours: Option<u32>,
}

impl TlsSpec {
    /// The certificates' lifetime, in seconds.
    pub fn lifetime_secs(&self) -> u64 {
        u64::from(self.certificate_lifetime_hours.unwrap_or(2160)) * 3600
    }
}

/// Who issues the certificates.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    Disabled,
    OperatorManaged,
    CertManager,
}

fn tls_mode_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Disabled, OperatorManaged or CertManager.",
        "type": "string",
        "enum": ["Disabled", "OperatorManaged", "CertManager"],
    })
}

/// A cert-manager issuer.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `Issuer` (default, in the cluster's namespace) or `ClusterIssuer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub kind: Option<String>,
    /// API group of the issuer (default `cert-manager.io`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub group: Option<String>,
}

/// A NetworkPolicy `<name>` that lets only the cluster's own stores and the
/// operator reach the stores' peer port (20160: Raft, snapshots, Admin), the
/// listed clients only their client port (20161: Kv, region and store
/// lookups, Status), and the listed scrapers the status port. Enforced only
/// where the cluster's network plugin enforces policies.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    #[serde(default)]
    pub enabled: bool,
    /// Who else may reach the client port (NetworkPolicy peers); left out:
    /// every pod of the cluster's namespace; `[]`: nobody else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients: Option<Vec<NetworkPolicyPeer>>,
    /// Who may reach the status port (metrics, health); left out: anyone
    /// (the kubelet's probes and Prometheus need it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<NetworkPolicyPeer>>,
}

/// What the operator observed and is doing.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KvClusterStatus {
    /// Pods the StatefulSet has (the scale subresource's status.replicas).
    #[serde(default)]
    pub replicas: i32,
    /// Pods ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the storage pods (for the scale subresource).
    #[serde(default)]
    pub selector: String,
    /// Pending, Bootstrapping, Running, ScalingOut, ScalingIn, Degraded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Every store the cluster knows, with the pod it belongs to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stores: Vec<StoreEntry>,
    /// The pods that formed the cluster (ordinals 0..initialMembers); fixed once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_members: Option<i32>,
    /// True once every initial member has come up: from then on an empty pod joins.
    #[serde(default)]
    pub bootstrapped: bool,
    /// The scaling operation in progress; a new `replicas` waits until it is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ScalingStatus>,
    /// The drain in progress (scale-in, or a store replaced after its volume was lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<StoreProgressStatus>,
    /// The join in progress (a new store being seeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<StoreProgressStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The restore of `spec.restoreFrom`, once begun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreStatus>,
}

/// How the restore of `spec.restoreFrom` went.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    pub source: String,
    /// Running, Succeeded or Failed.
    pub phase: String,
    #[serde(default)]
    pub keys: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it finished (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
}

/// One store of the cluster as meta reports it.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StoreEntry {
    /// The pod the store runs in (its registered name).
    pub pod: String,
    pub store_id: u64,
    /// Up, Pending, Joining, Draining, Tombstone or Down.
    pub state: String,
    pub regions: u64,
    pub leaders: u64,
}

/// A scaling operation: from how many stores to how many, and its current step.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScalingStatus {
    pub from: i32,
    pub to: i32,
    /// The current step, in words ("joining store 4 (demo-3)").
    #[serde(default)]
    pub step: String,
}

/// A drain or join the operator is waiting on, and when it last made
/// progress: a drain whose region count stops falling, or a join whose count
/// stops rising, for too long sets `Degraded`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StoreProgressStatus {
    pub store_id: u64,
    pub pod: String,
    /// Regions (peers) the store held at the last progress.
    pub regions: u64,
    /// When the region count last moved (RFC 3339).
    pub since: String,
}

/// The `KvCluster` CRD as YAML, as committed in `crds/kvcluster.yaml`.
pub fn crd_yaml() -> String {
    let body = serde_saphyr::to_string(&KvCluster::crd()).unwrap_or_else(|e| format!("# cannot serialize the CRD: {e}\n"));
    format!("# Generated by `shoal-operator crd` from operator/src/crd/mod.rs; do not edit.\n---\n{body}")
}

/// The `KvBackup` CRD as YAML, as committed in `crds/kvbackup.yaml`.
pub fn backup_crd_yaml() -> String {
    let body = serde_saphyr::to_string(&KvBackup::crd()).unwrap_or_else(|e| format!("# cannot serialize the CRD: {e}\n"));
    format!("# Generated by `shoal-operator crd --kind KvBackup` from operator/src/crd/backup.rs; do not edit.\n---\n{body}")
}
