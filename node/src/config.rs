//! Node configuration: command-line flags over an optional TOML file over defaults.
//!
//! ```toml
//! name = "n1"
//! data-dir = "/var/lib/shoal"
//! listen-addr = "0.0.0.0:20160"
//! advertise-addr = "shoal-0.shoal:20160"
//! status-addr = "0.0.0.0:20180"
//! initial-cluster = "n1=shoal-0.shoal:20160,n2=shoal-1.shoal:20160,n3=shoal-2.shoal:20160"
//! initial-cluster-state = "new"      # or "existing"
//! # join = "shoal-0.shoal:20160,shoal-1.shoal:20160"
//!
//! [[column-families]]
//! name = "users"
//! compression = "zstd"
//! block_size = 32768
//! bloom_bits_per_key = 10.0
//! ```
//!
//! What a store with an empty data directory does ([`NodeConfig::first_start`]),
//! as etcd does with the same flags — every pod of a StatefulSet can be started
//! with the same `--initial-cluster`:
//!
//! - `initial-cluster-state = "new"` (the default) and `name` a member of
//!   `initial-cluster`: it bootstraps the cluster with the other members. With
//!   neither `initial-cluster` nor `join`, it bootstraps a cluster of one.
//! - otherwise it joins: registers (PENDING) through the addresses of `join`,
//!   or, without `join`, those of the other members of `initial-cluster`.
//!
//! Refused: state `new` without `join` for a name that is not a member (a typo
//! would otherwise wait to join a cluster that is not there); state `existing`
//! with nothing to join (neither `join` nor `initial-cluster`); an unknown
//! state. An empty store that would join through `initial-cluster` alone but is
//! its only member fails to start (there is no one to ask).
//!
//! A store whose data directory has an identity starts from it whatever these
//! say; the addresses of `initial-cluster` still update its store registry (a
//! rescheduled pod may have moved).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::raftstore::bootstrap::InitialMember;
use crate::storage::cf::{CfConfig, validate_user_cf_name};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("bad config file {0}: {1}")]
    Parse(PathBuf, String),
    #[error("{0}")]
    Invalid(String),
}

/// Command-line flags. Every flag left out falls back to the config file, then to
/// the default.
#[derive(Debug, Parser, Default)]
#[command(name = "shoal-node", version, about = "Shoal storage node: replicated key-value regions on RocksDB")]
pub struct NodeArgs {
    /// TOML configuration file; flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// This store's name; a member of --initial-cluster bootstraps it (state new).
    #[arg(long)]
    pub name: Option<String>,
    /// Directory of the store's RocksDB.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address the gRPC server listens on: every service (the peer port, when
    /// --client-listen-addr gives clients a port of their own).
    #[arg(long)]
    pub listen_addr: Option<SocketAddr>,
    /// Address other stores and clients use to reach this one (default: --listen-addr).
    #[arg(long)]
    pub advertise_addr: Option<String>,
    /// A second gRPC port, for clients only: Kv, Meta's lookups and Status
    /// (not Raft, snapshots, Admin, heartbeats or id allocation), so that a
    /// network policy can keep clients off the peer port.
    #[arg(long)]
    pub client_listen_addr: Option<SocketAddr>,
    /// Address clients reach the client port at (default: --client-listen-addr);
    /// meta hands it to clients, which then route there.
    #[arg(long)]
    pub client_advertise_addr: Option<String>,
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long)]
    pub status_addr: Option<SocketAddr>,
    /// The cluster's initial members: NAME=ADDR,... (an empty member store
    /// bootstraps them while --initial-cluster-state is new; their addresses
    /// update the registry on every start).
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// new: the initial members are still forming the cluster (an empty member
    /// bootstraps); existing: the cluster runs already (an empty store joins).
    #[arg(long, value_enum)]
    pub initial_cluster_state: Option<InitialClusterState>,
    /// Addresses of stores of an existing cluster, ADDR,...: an empty store that
    /// does not bootstrap registers through them (state pending).
    #[arg(long)]
    pub join: Option<String>,
    /// A region's log is truncated once it holds more entries than this.
    #[arg(long)]
    pub raft_log_gc_count_limit: Option<u64>,
    /// …or more bytes than this.
    #[arg(long)]
    pub raft_log_gc_size_limit: Option<u64>,
    /// A user column family, NAME[:compression=lz4,block_size=16384,bloom_bits_per_key=10]; repeatable.
    #[arg(long = "column-family", value_name = "SPEC")]
    pub column_families: Vec<CfConfig>,
    /// Largest key accepted, in bytes.
    #[arg(long)]
    pub max_key_size: Option<usize>,
    /// Largest value accepted, in bytes.
    #[arg(long)]
    pub max_value_size: Option<usize>,
    /// Raft tick interval, in milliseconds.
    #[arg(long)]
    pub raft_tick_ms: Option<u64>,
    /// Ticks without a leader before a follower campaigns.
    #[arg(long)]
    pub raft_election_ticks: Option<usize>,
    /// A region whose data grows past this many bytes is split in two.
    #[arg(long)]
    pub region_split_size: Option<u64>,
    /// A region holding more than this many keys is split in two.
    #[arg(long)]
    pub region_split_keys: Option<u64>,
    /// How often a store reports itself and the regions it leads to meta, in milliseconds.
    #[arg(long)]
    pub heartbeat_interval_ms: Option<u64>,
    /// Replicas placement keeps of every region.
    #[arg(long)]
    pub replication_factor: Option<usize>,
    /// Bytes of snapshot file per chunk on the wire (before compression), 1 MiB..4 MiB.
    #[arg(long)]
    pub snapshot_chunk_size: Option<usize>,
    /// Snapshot bytes this store sends per second, all sends together; 0 = unlimited.
    /// Chunks are zstd-compressed only while this limit holds the sends back.
    #[arg(long)]
    pub snapshot_max_bytes_per_sec: Option<u64>,
    /// A store not heard from for this long is DOWN: placement replaces its peers.
    #[arg(long)]
    pub max_store_down_time_secs: Option<u64>,
    /// Most learners placement seeds (by snapshot) on one store at once.
    #[arg(long)]
    pub placement_max_snapshots_per_store: Option<usize>,
    /// TLS certificate (PEM, chain first) of the gRPC port; also this store's
    /// client certificate towards other stores. With --key-file.
    #[arg(long)]
    pub cert_file: Option<PathBuf>,
    /// Private key (PEM) of --cert-file.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// CA certificates (PEM) that sign the other stores' and the clients'
    /// certificates; also used to verify the stores this one connects to.
    #[arg(long)]
    pub trusted_ca_file: Option<PathBuf>,
    /// Refuse, at the TLS handshake, clients without a certificate signed by --trusted-ca-file.
    #[arg(long)]
    pub client_cert_auth: bool,
    /// Common Name of a client certificate allowed to call the Admin service's
    /// operator calls (join, drain, cancel-drain, remove, status); repeatable.
    /// Without it, any client the handshake accepted may.
    #[arg(long = "admin-allowed-cn", value_name = "CN")]
    pub admin_allowed_cn: Vec<String>,
    /// Common Name of a certificate allowed to send Raft messages and
    /// snapshots (the other stores'); repeatable. With --client-cert-auth and
    /// without it: the Common Name of this store's own certificate.
    #[arg(long = "peer-allowed-cn", value_name = "CN")]
    pub peer_allowed_cn: Vec<String>,
    /// Serve the status port (metrics, health) over TLS with --cert-file's
    /// certificate; no client certificate is asked (probes and scrapers).
    #[arg(long)]
    pub status_tls: bool,
    /// Seconds between two checks of the certificate files for a change.
    #[arg(long)]
    pub tls_reload_interval_secs: Option<u64>,
    /// Fault tests only: lets the status port's `/failpoints/…` endpoints slow
    /// the disk down. Never in production.
    #[arg(long)]
    pub enable_failpoints: bool,
}

/// Whether the cluster of `--initial-cluster` is still being formed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum InitialClusterState {
    /// The initial members are bootstrapping it: an empty member bootstraps.
    #[default]
    New,
    /// It runs already: an empty store joins it.
    Existing,
}

/// What a store whose data directory has no identity does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FirstStart {
    /// Bootstrap as a member of this initial cluster.
    Bootstrap(Vec<InitialMember>),
    /// Register with the cluster through these store addresses.
    Join(Vec<String>),
}

/// The resolved configuration of a node.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct NodeConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_addr: SocketAddr,
    pub advertise_addr: Option<String>,
    pub client_listen_addr: Option<SocketAddr>,
    pub client_advertise_addr: Option<String>,
    pub status_addr: SocketAddr,
    pub initial_cluster: String,
    pub initial_cluster_state: InitialClusterState,
    pub join: String,
    pub raft_log_gc_count_limit: u64,
    pub raft_log_gc_size_limit: u64,
    pub column_families: Vec<CfConfig>,
    pub max_key_size: usize,
    pub max_value_size: usize,
    /// Largest total of keys and values in one BatchWrite, in bytes.
    pub max_batch_size: usize,
    /// Most mutations in one BatchWrite.
    pub max_batch_mutations: usize,
    /// Scan limit when a request gives none, and the most one request may ask for.
    pub default_scan_limit: usize,
    pub max_scan_limit: usize,
    pub raft_tick_ms: u64,
    pub raft_election_ticks: usize,
    pub raft_heartbeat_ticks: usize,
    /// How long a request waits for Raft before answering `Unavailable`.
    pub request_timeout_ms: u64,
    pub region_split_size: u64,
    pub region_split_keys: u64,
    pub heartbeat_interval_ms: u64,
    pub replication_factor: usize,
    /// Bytes of snapshot file per chunk (before compression).
    pub snapshot_chunk_size: usize,
    /// Snapshot send rate limit in bytes per second; 0 = unlimited.
    pub snapshot_max_bytes_per_sec: u64,
    pub max_store_down_time_secs: u64,
    pub placement_max_snapshots_per_store: usize,
    /// Serve the status port's `/failpoints/…` endpoints (fault tests only).
    pub enable_failpoints: bool,
    /// TLS on the gRPC port and towards other stores (see `server::tls`).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    pub client_cert_auth: bool,
    pub admin_allowed_cn: Vec<String>,
    pub peer_allowed_cn: Vec<String>,
    /// HTTPS on the status port.
    pub status_tls: bool,
    pub tls_reload_interval_secs: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: String::new(),
            data_dir: PathBuf::from("shoal-data"),
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 20160)),
            advertise_addr: None,
            client_listen_addr: None,
            client_advertise_addr: None,
            status_addr: SocketAddr::from(([127, 0, 0, 1], 20180)),
            initial_cluster: String::new(),
            initial_cluster_state: InitialClusterState::New,
            join: String::new(),
            raft_log_gc_count_limit: 10_000,
            raft_log_gc_size_limit: 64 << 20,
            column_families: Vec::new(),
            max_key_size: 4 << 10,
            max_value_size: 8 << 20,
            max_batch_size: 16 << 20,
            max_batch_mutations: 10_000,
            default_scan_limit: 1_000,
            max_scan_limit: 10_000,
            raft_tick_ms: 100,
            raft_election_ticks: 10,
            raft_heartbeat_ticks: 2,
            request_timeout_ms: 5_000,
            region_split_size: 96 << 20,
            region_split_keys: 960_000,
            heartbeat_interval_ms: 1_000,
            replication_factor: 3,
            snapshot_chunk_size: 1 << 20,
            snapshot_max_bytes_per_sec: 100 << 20,
            max_store_down_time_secs: 1_800,
            placement_max_snapshots_per_store: 16,
            enable_failpoints: false,
            cert_file: None,
            key_file: None,
            trusted_ca_file: None,
            client_cert_auth: false,
            admin_allowed_cn: Vec::new(),
            peer_allowed_cn: Vec::new(),
            status_tls: false,
            tls_reload_interval_secs: 10,
        }
    }
}

impl NodeConfig {
    /// Builds the configuration from flags, reading `--config` if given.
    pub fn from_args(args: NodeArgs) -> Result<NodeConfig, ConfigError> {
        let mut cfg = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.clone(), e))?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse(path.clone(), e.to_string()))?
            }
            None => NodeConfig::default(),
        };
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = args.$field { cfg.$field = v; } )* };
        }
        set!(name, data_dir, listen_addr, status_addr, initial_cluster, max_key_size, max_value_size, raft_tick_ms, raft_election_ticks);
        set!(region_split_size, region_split_keys, heartbeat_interval_ms, replication_factor);
        set!(join, initial_cluster_state, raft_log_gc_count_limit, raft_log_gc_size_limit);
        set!(snapshot_chunk_size, snapshot_max_bytes_per_sec);
        set!(max_store_down_time_secs, placement_max_snapshots_per_store);
        cfg.enable_failpoints |= args.enable_failpoints;
        set!(tls_reload_interval_secs);
        for (field, arg) in
            [(&mut cfg.cert_file, args.cert_file), (&mut cfg.key_file, args.key_file), (&mut cfg.trusted_ca_file, args.trusted_ca_file)]
        {
            if arg.is_some() {
                *field = arg;
            }
        }
        cfg.client_cert_auth |= args.client_cert_auth;
        cfg.status_tls |= args.status_tls;
        cfg.admin_allowed_cn.extend(args.admin_allowed_cn);
        cfg.peer_allowed_cn.extend(args.peer_allowed_cn);
        for (field, arg) in [(&mut cfg.advertise_addr, args.advertise_addr), (&mut cfg.client_advertise_addr, args.client_advertise_addr)] {
            if arg.is_some() {
                *field = arg;
            }
        }
        if args.client_listen_addr.is_some() {
            cfg.client_listen_addr = args.client_listen_addr;
        }
        cfg.column_families.extend(args.column_families);
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |s: String| Err(ConfigError::Invalid(s));
        if self.name.is_empty() {
            return invalid("--name is required".into());
        }
        for (i, cf) in self.column_families.iter().enumerate() {
            validate_user_cf_name(&cf.name).map_err(|e| ConfigError::Invalid(e.to_string()))?;
            if self.column_families[..i].iter().any(|c| c.name == cf.name) {
                return invalid(format!("column family {:?} is configured twice", cf.name));
            }
        }
        let in_range = |name: &str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) { Ok(()) } else { Err(ConfigError::Invalid(format!("{name} must be {lo}..={hi}, got {v}"))) }
        };
        in_range("max-key-size", self.max_key_size as u64, 1, crate::keys::MAX_KEY_LEN as u64)?;
        in_range("max-value-size", self.max_value_size as u64, 1, 256 << 20)?;
        in_range("max-batch-size", self.max_batch_size as u64, 1, 256 << 20)?;
        in_range("max-batch-mutations", self.max_batch_mutations as u64, 1, 1_000_000)?;
        in_range("max-scan-limit", self.max_scan_limit as u64, 1, 1_000_000)?;
        in_range("default-scan-limit", self.default_scan_limit as u64, 1, self.max_scan_limit as u64)?;
        in_range("raft-tick-ms", self.raft_tick_ms, 1, 10_000)?;
        in_range("raft-heartbeat-ticks", self.raft_heartbeat_ticks as u64, 1, 1_000)?;
        in_range("raft-election-ticks", self.raft_election_ticks as u64, self.raft_heartbeat_ticks as u64 + 1, 10_000)?;
        in_range("request-timeout-ms", self.request_timeout_ms, 1, 600_000)?;
        in_range("region-split-size", self.region_split_size, 64 << 10, 64 << 30)?;
        in_range("region-split-keys", self.region_split_keys, 16, 1 << 40)?;
        in_range("heartbeat-interval-ms", self.heartbeat_interval_ms, 10, 600_000)?;
        in_range("replication-factor", self.replication_factor as u64, 1, 7)?;
        in_range("max-store-down-time-secs", self.max_store_down_time_secs, 1, 30 * 24 * 3600)?;
        in_range("placement-max-snapshots-per-store", self.placement_max_snapshots_per_store as u64, 1, 64)?;
        in_range("snapshot-chunk-size", self.snapshot_chunk_size as u64, 1 << 20, 4 << 20)?;
        in_range("raft-log-gc-count-limit", self.raft_log_gc_count_limit, 16, 1 << 32)?;
        in_range("raft-log-gc-size-limit", self.raft_log_gc_size_limit, 64 << 10, 64 << 30)?;
        in_range("tls-reload-interval-secs", self.tls_reload_interval_secs, 1, 3600)?;
        if self.client_advertise_addr.is_some() && self.client_listen_addr.is_none() {
            return invalid("--client-advertise-addr needs --client-listen-addr".into());
        }
        if self.client_listen_addr.is_some_and(|c| c == self.listen_addr || c == self.status_addr) {
            return invalid("--client-listen-addr must differ from --listen-addr and --status-addr".into());
        }
        self.check_tls()?;
        self.check_membership()
    }

    /// The TLS flags make sense together.
    fn check_tls(&self) -> Result<(), ConfigError> {
        let invalid = |s: &str| Err(ConfigError::Invalid(s.into()));
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => return invalid("--cert-file needs --key-file"),
            (None, Some(_)) => return invalid("--key-file needs --cert-file"),
            _ => {}
        }
        let tls = self.cert_file.is_some();
        if !tls && (self.trusted_ca_file.is_some() || self.client_cert_auth || !self.admin_allowed_cn.is_empty()) {
            return invalid("--trusted-ca-file, --client-cert-auth and --admin-allowed-cn need --cert-file and --key-file");
        }
        if self.status_tls && !tls {
            return invalid("--status-tls needs --cert-file and --key-file");
        }
        if self.client_cert_auth && self.trusted_ca_file.is_none() {
            return invalid("--client-cert-auth needs --trusted-ca-file");
        }
        if !self.admin_allowed_cn.is_empty() && !self.client_cert_auth {
            return invalid("--admin-allowed-cn needs --client-cert-auth (callers must present certificates)");
        }
        if !self.peer_allowed_cn.is_empty() && !self.client_cert_auth {
            return invalid("--peer-allowed-cn needs --client-cert-auth (callers must present certificates)");
        }
        if self.admin_allowed_cn.iter().chain(&self.peer_allowed_cn).any(|cn| cn.is_empty()) {
            return invalid("--admin-allowed-cn and --peer-allowed-cn must not be empty");
        }
        Ok(())
    }

    pub fn tls_reload_interval(&self) -> Duration {
        Duration::from_secs(self.tls_reload_interval_secs)
    }

    /// The TLS files, when TLS is on.
    pub fn tls_files(&self) -> Option<crate::server::tls::TlsFiles> {
        Some(crate::server::tls::TlsFiles {
            cert: self.cert_file.clone()?,
            key: self.key_file.clone()?,
            trusted_ca: self.trusted_ca_file.clone(),
            client_cert_auth: self.client_cert_auth,
        })
    }

    /// The membership flags make sense: state `new` without `--join` needs
    /// `--name` among the members; state `existing` needs something to join.
    fn check_membership(&self) -> Result<(), ConfigError> {
        let members = self.listed_members()?;
        let join = !self.join_addrs().is_empty();
        let member = members.iter().any(|m| m.name == self.name);
        match self.initial_cluster_state {
            InitialClusterState::New if !join && !members.is_empty() && !member => Err(ConfigError::Invalid(format!(
                "--name {:?} is not in --initial-cluster (to join the cluster instead, give --join or --initial-cluster-state existing)",
                self.name
            ))),
            InitialClusterState::Existing if !join && members.is_empty() => Err(ConfigError::Invalid(
                "--initial-cluster-state existing: nothing to join (give --join, or the members in --initial-cluster)".into(),
            )),
            _ => Ok(()),
        }
    }

    /// What this store does if its data directory has no identity: bootstrap
    /// (state `new`, and a member of `--initial-cluster`, or neither
    /// `--initial-cluster` nor `--join`: a cluster of one), else join through
    /// the `--join` addresses and then the other members of
    /// `--initial-cluster` (a Service with no ready endpoint behind it yet
    /// must not keep a store from reaching members that are up).
    pub fn first_start(&self) -> Result<FirstStart, ConfigError> {
        self.check_membership()?;
        let members = self.listed_members()?;
        let join = self.join_addrs();
        let member = members.iter().any(|m| m.name == self.name);
        if self.initial_cluster_state == InitialClusterState::New && (member || (members.is_empty() && join.is_empty())) {
            return Ok(FirstStart::Bootstrap(self.initial_members()?));
        }
        let mut others = join;
        for m in members.into_iter().filter(|m| m.name != self.name) {
            if !others.contains(&m.addr) {
                others.push(m.addr);
            }
        }
        if others.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "store {:?} has no data and --initial-cluster-state existing, but --initial-cluster names no other store to join",
                self.name
            )));
        }
        Ok(FirstStart::Join(others))
    }

    /// The address others reach this node at.
    pub fn advertise_addr(&self) -> String {
        self.advertise_addr.clone().unwrap_or_else(|| self.listen_addr.to_string())
    }

    /// The address clients reach the client port at; empty without one.
    pub fn client_advertise_addr(&self) -> String {
        match (&self.client_advertise_addr, self.client_listen_addr) {
            (Some(a), _) => a.clone(),
            (None, Some(l)) => l.to_string(),
            (None, None) => String::new(),
        }
    }

    /// Parses `--initial-cluster`; empty means a one-store cluster of this node.
    pub fn initial_members(&self) -> Result<Vec<InitialMember>, ConfigError> {
        if self.initial_cluster.trim().is_empty() {
            return Ok(vec![InitialMember { name: self.name.clone(), addr: self.advertise_addr() }]);
        }
        self.listed_members()
    }

    /// Parses `--initial-cluster` as given (empty: none).
    pub fn listed_members(&self) -> Result<Vec<InitialMember>, ConfigError> {
        let mut members: Vec<InitialMember> = Vec::new();
        for part in self.initial_cluster.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some((name, addr)) = part.split_once('=') else {
                return Err(ConfigError::Invalid(format!("--initial-cluster entry {part:?} is not NAME=ADDR")));
            };
            if name.is_empty() || addr.is_empty() || members.iter().any(|m| m.name == name) {
                return Err(ConfigError::Invalid(format!("--initial-cluster entry {part:?} is empty or repeats a name")));
            }
            members.push(InitialMember { name: name.to_string(), addr: addr.to_string() });
        }
        Ok(members)
    }

    /// Parses `--join`: addresses of stores of the cluster to join (empty: none).
    pub fn join_addrs(&self) -> Vec<String> {
        self.join.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
    }

    pub fn raft_tick(&self) -> Duration {
        Duration::from_millis(self.raft_tick_ms)
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// How this store sends snapshots.
    pub fn snap_send(&self) -> crate::server::snapshot::SnapSendConfig {
        crate::server::snapshot::SnapSendConfig { chunk_size: self.snapshot_chunk_size, max_bytes_per_sec: self.snapshot_max_bytes_per_sec }
    }

    pub fn max_store_down_time(&self) -> Duration {
        Duration::from_secs(self.max_store_down_time_secs)
    }

    /// How long the meta leader may go without serving a request before it
    /// counts as having lost (and maybe regained) leadership: several
    /// heartbeat intervals, since every store heartbeats it.
    pub fn meta_leader_gap(&self) -> Duration {
        self.heartbeat_interval().saturating_mul(3).max(Duration::from_secs(5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::cf::Compression;

    fn dir_with(toml: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, toml).unwrap();
        (dir, path)
    }

    fn parse(args: &[&str]) -> Result<NodeConfig, ConfigError> {
        let mut argv = vec!["shoal-node"];
        argv.extend_from_slice(args);
        NodeConfig::from_args(NodeArgs::try_parse_from(argv).map_err(|e| ConfigError::Invalid(e.to_string()))?)
    }

    #[test]
    fn flags_alone_make_a_config() {
        let cfg = parse(&["--name", "n2", "--initial-cluster", "n1=h1:1,n2=h2:2", "--column-family", "users:compression=zstd"]).unwrap();
        assert_eq!(cfg.initial_members().unwrap()[1], InitialMember { name: "n2".into(), addr: "h2:2".into() });
        assert_eq!(cfg.column_families[0].options.compression, Compression::Zstd);
        assert_eq!(cfg.max_key_size, 4096);
        assert_eq!(cfg.max_value_size, 8 << 20);
        assert_eq!((cfg.max_store_down_time_secs, cfg.placement_max_snapshots_per_store), (1800, 16));
        let cfg = parse(&["--name", "a", "--max-store-down-time-secs", "5", "--placement-max-snapshots-per-store", "6"]).unwrap();
        assert_eq!((cfg.max_store_down_time(), cfg.placement_max_snapshots_per_store), (Duration::from_secs(5), 6));
        assert!(parse(&["--name", "a", "--max-store-down-time-secs", "0"]).is_err());
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "name = \"a\"\nmax-key-size = 100\nraft-tick-ms = 50\n[[column-families]]\nname = \"logs\"\nblock_size = 4096\n",
        )
        .unwrap();
        let cfg = parse(&["--config", path.to_str().unwrap(), "--max-key-size", "200", "--column-family", "users"]).unwrap();
        assert_eq!(cfg.name, "a");
        assert_eq!(cfg.max_key_size, 200);
        assert_eq!(cfg.raft_tick_ms, 50);
        assert_eq!(cfg.column_families.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["logs", "users"]);
        assert_eq!(cfg.column_families[0].options.block_size, 4096);
        // Without --initial-cluster a node forms a cluster of one.
        assert_eq!(cfg.initial_members().unwrap().len(), 1);
    }

    #[test]
    fn refuses_bad_configs() {
        assert!(parse(&[]).is_err(), "name is required");
        assert!(parse(&["--name", "x", "--initial-cluster", "a=h:1"]).is_err(), "name must be a member");
        assert!(parse(&["--name", "a", "--initial-cluster", "a=h:1,a=h:2"]).is_err(), "repeated member");
        assert!(parse(&["--name", "a", "--initial-cluster", "a"]).is_err(), "entry without address");
        assert!(parse(&["--name", "a", "--column-family", "raft_log"]).is_err(), "reserved CF");
        assert!(parse(&["--name", "a", "--column-family", "u", "--column-family", "u"]).is_err(), "repeated CF");
        assert!(parse(&["--name", "a", "--raft-election-ticks", "1"]).is_err(), "election <= heartbeat");
        assert!(parse(&["--name", "a", "--max-key-size", "18446744073709551615"]).is_err(), "absurd key limit");
        assert!(parse(&["--name", "a", "--raft-election-ticks", "4000000000"]).is_err(), "absurd election ticks");
        let zero_scan = dir_with("name = \"a\"\ndefault-scan-limit = 0\n");
        assert!(parse(&["--config", zero_scan.1.to_str().unwrap()]).is_err(), "a scan limit of 0 would never progress");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "name = \"a\"\nunknown-key = 1\n").unwrap();
        assert!(matches!(parse(&["--config", path.to_str().unwrap()]), Err(ConfigError::Parse(..))));
    }

    fn first(args: &[&str]) -> FirstStart {
        parse(args).unwrap().first_start().unwrap()
    }

    const CLUSTER: &str = "demo-0=h0:1,demo-1=h1:1,demo-2=h2:1";

    fn join_via(addrs: &[&str]) -> FirstStart {
        FirstStart::Join(addrs.iter().map(|a| a.to_string()).collect())
    }

    #[test]
    fn an_empty_store_bootstraps_only_as_a_member_of_a_new_cluster() {
        let cfg = parse(&["--name", "demo-1", "--initial-cluster", CLUSTER]).unwrap();
        assert_eq!(cfg.initial_cluster_state, InitialClusterState::New, "the default");
        let FirstStart::Bootstrap(members) = cfg.first_start().unwrap() else { panic!("a member of a new cluster bootstraps") };
        assert_eq!(members.len(), 3);
        let state_new = ["--name", "demo-1", "--initial-cluster", CLUSTER, "--initial-cluster-state", "new", "--join", "j:1"];
        assert!(matches!(first(&state_new), FirstStart::Bootstrap(_)), "a member bootstraps even with --join");
        assert!(matches!(first(&["--name", "solo"]), FirstStart::Bootstrap(m) if m.len() == 1), "a cluster of one");
        // The same arguments once the cluster runs: an empty member joins
        // through the other members.
        let existing = ["--name", "demo-1", "--initial-cluster", CLUSTER, "--initial-cluster-state", "existing"];
        assert_eq!(first(&existing), join_via(&["h0:1", "h2:1"]));
        let existing_join = ["--name", "demo-1", "--initial-cluster", CLUSTER, "--initial-cluster-state=existing", "--join", "j:1,j:2"];
        assert_eq!(first(&existing_join), join_via(&["j:1", "j:2", "h0:1", "h2:1"]), "--join first, then the other members");
        // A scaled-out pod (not a member) joins in either state, through --join
        // if given, else through the members.
        assert_eq!(first(&["--name", "demo-3", "--initial-cluster", CLUSTER, "--join", "j:1"]), join_via(&["j:1", "h0:1", "h1:1", "h2:1"]));
        let scale_out = ["--name", "demo-3", "--initial-cluster", CLUSTER, "--initial-cluster-state", "existing"];
        assert_eq!(first(&scale_out), join_via(&["h0:1", "h1:1", "h2:1"]));
        assert_eq!(first(&["--name", "n4", "--join", "j:1"]), join_via(&["j:1"]), "--join alone, as before");
        let toml = dir_with(&format!("name = \"demo-0\"\ninitial-cluster = \"{CLUSTER}\"\ninitial-cluster-state = \"existing\"\n"));
        assert_eq!(first(&["--config", toml.1.to_str().unwrap()]), join_via(&["h1:1", "h2:1"]));
        assert!(matches!(first(&["--config", toml.1.to_str().unwrap(), "--initial-cluster-state", "new"]), FirstStart::Bootstrap(_)));
    }

    #[test]
    fn refuses_nonsense_about_the_initial_cluster_state() {
        let not_member = parse(&["--name", "demo-3", "--initial-cluster", CLUSTER, "--initial-cluster-state", "new"]);
        assert!(matches!(not_member, Err(ConfigError::Invalid(_))), "state new, no --join, not a member");
        let nothing = parse(&["--name", "a", "--initial-cluster-state", "existing"]);
        assert!(matches!(nothing, Err(ConfigError::Invalid(m)) if m.contains("nothing to join")));
        // The only member, once its cluster runs: it restarts on its data, but
        // an empty data directory has no other store to join.
        let only_me = parse(&["--name", "a", "--initial-cluster", "a=h:1", "--initial-cluster-state", "existing"]).unwrap();
        assert!(matches!(only_me.first_start(), Err(ConfigError::Invalid(m)) if m.contains("no other store")));
        assert!(parse(&["--name", "a", "--initial-cluster-state", "old"]).is_err(), "unknown state");
        let bad = dir_with("name = \"a\"\ninitial-cluster-state = \"Existing!\"\n");
        assert!(matches!(parse(&["--config", bad.1.to_str().unwrap()]), Err(ConfigError::Parse(..))), "unknown state in the file");
        let bad_entry = parse(&["--name", "a", "--join", "j:1", "--initial-cluster", "a"]);
        assert!(bad_entry.is_err(), "--initial-cluster is checked with --join too");
    }

    #[test]
    fn snapshot_send_flags_have_defaults_and_bounds() {
        let cfg = parse(&["--name", "a"]).unwrap();
        assert_eq!((cfg.snap_send().chunk_size, cfg.snap_send().max_bytes_per_sec), (1 << 20, 100 << 20));
        let cfg = parse(&["--name", "a", "--snapshot-chunk-size", "4194304", "--snapshot-max-bytes-per-sec", "0"]).unwrap();
        assert_eq!((cfg.snapshot_chunk_size, cfg.snapshot_max_bytes_per_sec), (4 << 20, 0));
        assert!(parse(&["--name", "a", "--snapshot-chunk-size", "1048575"]).is_err(), "under 1 MiB");
        assert!(parse(&["--name", "a", "--snapshot-chunk-size", "4194305"]).is_err(), "over 4 MiB");
    }

    #[test]
    fn tls_flags_go_together() {
        let plain = parse(&["--name", "a"]).unwrap();
        assert_eq!(plain.tls_files(), None);
        let tls =
            parse(&["--name", "a", "--cert-file", "c.pem", "--key-file", "k.pem", "--trusted-ca-file", "ca.pem", "--client-cert-auth"])
                .unwrap();
        let files = tls.tls_files().expect("TLS on");
        assert_eq!(
            (files.cert.to_str(), files.trusted_ca.as_deref().and_then(|p| p.to_str()), files.client_cert_auth),
            (Some("c.pem"), Some("ca.pem"), true)
        );
        let admin = [
            "--name",
            "a",
            "--cert-file",
            "c",
            "--key-file",
            "k",
            "--trusted-ca-file",
            "ca",
            "--client-cert-auth",
            "--admin-allowed-cn",
            "shoal-operator",
            "--admin-allowed-cn",
            "ops",
        ];
        assert_eq!(parse(&admin).unwrap().admin_allowed_cn, vec!["shoal-operator", "ops"]);
        let peers = [&admin[..], &["--peer-allowed-cn", "shoal-node"]].concat();
        assert_eq!(parse(&peers).unwrap().peer_allowed_cn, vec!["shoal-node"]);
        for (args, why) in [
            (&["--name", "a", "--cert-file", "c"][..], "--cert-file needs --key-file"),
            (&["--name", "a", "--key-file", "k"][..], "--key-file needs --cert-file"),
            (&["--name", "a", "--client-cert-auth"][..], "need --cert-file"),
            (&["--name", "a", "--cert-file", "c", "--key-file", "k", "--client-cert-auth"][..], "needs --trusted-ca-file"),
            (&["--name", "a", "--cert-file", "c", "--key-file", "k", "--admin-allowed-cn", "x"][..], "needs --client-cert-auth"),
            (&["--name", "a", "--cert-file", "c", "--key-file", "k", "--peer-allowed-cn", "x"][..], "needs --client-cert-auth"),
            (&["--name", "a", "--tls-reload-interval-secs", "0"][..], "tls-reload-interval-secs"),
            (&["--name", "a", "--status-tls"][..], "--status-tls needs --cert-file"),
        ] {
            match parse(args) {
                Err(ConfigError::Invalid(m)) => assert!(m.contains(why), "{args:?}: {m}"),
                other => panic!("{args:?} accepted: {other:?}"),
            }
        }
    }
}
