//! The ConfigMap: the node configuration file every store reads, and the
//! cluster state (`new` until the initial members have all come up, then
//! `existing`) that tells an empty pod whether to bootstrap or to join.
//!
//! The file holds the spec's tunables and column families in `shoal-node`'s
//! TOML form (kebab-case keys; `[[column-families]]` with snake_case options).
//! Identity and addressing (name, addresses, data directory, initial cluster,
//! replication factor) are flags the StatefulSet sets, never in this file.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use serde::Serialize;

use super::names::{CLUSTER_STATE_KEY, CONFIG_FILE_KEY};
use super::{BuildInput, meta};
use crate::crd::{ColumnFamilySpec, KvClusterSpec};

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct NodeFile<'a> {
    #[serde(flatten)]
    tunables: BTreeMap<&'static str, u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    column_families: Vec<CfFile<'a>>,
}

#[derive(Serialize)]
struct CfFile<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    compression: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    block_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bloom_bits_per_key: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    write_buffer_size: Option<u64>,
}

/// The node configuration file for `spec`.
pub fn node_toml(spec: &KvClusterSpec) -> String {
    let c = &spec.config;
    let tunables: BTreeMap<&'static str, u64> = [
        ("max-key-size", c.max_key_size),
        ("max-value-size", c.max_value_size),
        ("raft-tick-ms", c.raft_tick_ms),
        ("raft-election-ticks", c.raft_election_ticks),
        ("region-split-size", c.region_split_size),
        ("region-split-keys", c.region_split_keys),
        ("heartbeat-interval-ms", c.heartbeat_interval_ms),
        ("raft-log-gc-count-limit", c.raft_log_gc_count_limit),
        ("raft-log-gc-size-limit", c.raft_log_gc_size_limit),
        ("snapshot-chunk-size", c.snapshot_chunk_size),
        ("snapshot-max-bytes-per-sec", c.snapshot_max_bytes_per_sec),
        ("max-store-down-time-secs", c.max_store_down_time_secs),
        ("placement-max-snapshots-per-store", c.placement_max_snapshots_per_store),
        ("request-timeout-ms", c.request_timeout_ms),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let file = NodeFile { tunables, column_families: spec.column_families.iter().map(cf_file).collect() };
    let body = toml::to_string(&file).unwrap_or_default();
    format!("# shoal-node configuration, written by shoal-operator from the KvCluster spec.\n{body}")
}

fn cf_file(cf: &ColumnFamilySpec) -> CfFile<'_> {
    CfFile {
        name: &cf.name,
        compression: cf.options.compression.map(|c| c.as_str()),
        block_size: cf.options.block_size,
        bloom_bits_per_key: cf.options.bloom_bits_per_key,
        write_buffer_size: cf.options.write_buffer_size,
    }
}

pub fn config_map(input: &BuildInput<'_>) -> ConfigMap {
    let state = if input.bootstrapped { "existing" } else { "new" };
    ConfigMap {
        metadata: meta(input, input.names.config_map(), input.names.labels()),
        data: Some(BTreeMap::from([
            (CONFIG_FILE_KEY.to_string(), node_toml(&input.kvc.spec)),
            (CLUSTER_STATE_KEY.to_string(), state.to_string()),
        ])),
        ..Default::default()
    }
}
