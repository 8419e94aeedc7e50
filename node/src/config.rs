//! Node configuration: command-line flags over an optional TOML file over defaults.
//!
//! ```toml
//! name = "n1"
//! data-dir = "/var/lib/shoal"
//! listen-addr = "0.0.0.0:20160"
//! advertise-addr = "shoal-0.shoal:20160"
//! status-addr = "0.0.0.0:20180"
//! initial-cluster = "n1=shoal-0.shoal:20160,n2=shoal-1.shoal:20160,n3=shoal-2.shoal:20160"
//!
//! [[column-families]]
//! name = "users"
//! compression = "zstd"
//! block_size = 32768
//! bloom_bits_per_key = 10.0
//! ```

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
    /// This store's name; must appear in --initial-cluster.
    #[arg(long)]
    pub name: Option<String>,
    /// Directory of the store's RocksDB.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Address the gRPC server listens on.
    #[arg(long)]
    pub listen_addr: Option<SocketAddr>,
    /// Address other stores and clients use to reach this one (default: --listen-addr).
    #[arg(long)]
    pub advertise_addr: Option<String>,
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long)]
    pub status_addr: Option<SocketAddr>,
    /// Members of a new cluster: NAME=ADDR,... (ignored once the store has data).
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// Addresses of stores of an existing cluster, ADDR,...: an empty store
    /// registers with it (state pending) instead of bootstrapping a new cluster.
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
    #[arg(long)]
    pub snapshot_max_bytes_per_sec: Option<u64>,
    /// A store not heard from for this long is DOWN: placement replaces its peers.
    #[arg(long)]
    pub max_store_down_time_secs: Option<u64>,
    /// Most learners placement seeds (by snapshot) on one store at once.
    #[arg(long)]
    pub placement_max_snapshots_per_store: Option<usize>,
}

/// The resolved configuration of a node.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct NodeConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_addr: SocketAddr,
    pub advertise_addr: Option<String>,
    pub status_addr: SocketAddr,
    pub initial_cluster: String,
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
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: String::new(),
            data_dir: PathBuf::from("shoal-data"),
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 20160)),
            advertise_addr: None,
            status_addr: SocketAddr::from(([127, 0, 0, 1], 20180)),
            initial_cluster: String::new(),
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
            placement_max_snapshots_per_store: 2,
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
        set!(join, raft_log_gc_count_limit, raft_log_gc_size_limit);
        set!(snapshot_chunk_size, snapshot_max_bytes_per_sec);
        set!(max_store_down_time_secs, placement_max_snapshots_per_store);
        if args.advertise_addr.is_some() {
            cfg.advertise_addr = args.advertise_addr;
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
        if !self.join.trim().is_empty() {
            if !self.initial_cluster.trim().is_empty() {
                return invalid("--join and --initial-cluster exclude each other: join an existing cluster, or start a new one".into());
            }
            return Ok(());
        }
        let members = self.initial_members()?;
        if !members.iter().any(|m| m.name == self.name) {
            return invalid(format!("--name {:?} is not in --initial-cluster", self.name));
        }
        Ok(())
    }

    /// The address others reach this node at.
    pub fn advertise_addr(&self) -> String {
        self.advertise_addr.clone().unwrap_or_else(|| self.listen_addr.to_string())
    }

    /// Parses `--initial-cluster`; empty means a one-store cluster of this node.
    pub fn initial_members(&self) -> Result<Vec<InitialMember>, ConfigError> {
        if self.initial_cluster.trim().is_empty() {
            return Ok(vec![InitialMember { name: self.name.clone(), addr: self.advertise_addr() }]);
        }
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
        assert_eq!((cfg.max_store_down_time_secs, cfg.placement_max_snapshots_per_store), (1800, 2));
        let cfg = parse(&["--name", "a", "--max-store-down-time-secs", "5", "--placement-max-snapshots-per-store", "4"]).unwrap();
        assert_eq!((cfg.max_store_down_time(), cfg.placement_max_snapshots_per_store), (Duration::from_secs(5), 4));
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

    #[test]
    fn snapshot_send_flags_have_defaults_and_bounds() {
        let cfg = parse(&["--name", "a"]).unwrap();
        assert_eq!((cfg.snap_send().chunk_size, cfg.snap_send().max_bytes_per_sec), (1 << 20, 100 << 20));
        let cfg = parse(&["--name", "a", "--snapshot-chunk-size", "4194304", "--snapshot-max-bytes-per-sec", "0"]).unwrap();
        assert_eq!((cfg.snapshot_chunk_size, cfg.snapshot_max_bytes_per_sec), (4 << 20, 0));
        assert!(parse(&["--name", "a", "--snapshot-chunk-size", "1048575"]).is_err(), "under 1 MiB");
        assert!(parse(&["--name", "a", "--snapshot-chunk-size", "4194305"]).is_err(), "over 4 MiB");
    }
}
