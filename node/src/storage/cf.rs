//! Column family names and options, in one place.
//!
//! User column families hold user data; `default` always exists and more are
//! declared in the node's configuration, each with its own [`CfOptions`]. The
//! internal ones hold Raft state and are never visible to clients.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// The user column family that always exists.
pub const CF_DEFAULT: &str = "default";
/// Raft log entries of every region.
pub const CF_RAFT_LOG: &str = "raft_log";
/// Raft hard state of every region.
pub const CF_RAFT_STATE: &str = "raft_state";
/// Region descriptors, apply states, the store's identity and registry.
pub const CF_REGION_META: &str = "region_meta";

/// The meta Raft group's state machine: store registry, region directory, ids.
pub const CF_META: &str = "meta";

/// Column families that hold Raft, region and cluster state, never user data.
pub const INTERNAL_CFS: [&str; 4] = [CF_RAFT_LOG, CF_RAFT_STATE, CF_REGION_META, CF_META];

/// Block compression of a column family's SST files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Snappy,
    #[default]
    Lz4,
    Zstd,
}

impl FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "snappy" => Ok(Self::Snappy),
            "lz4" => Ok(Self::Lz4),
            "zstd" => Ok(Self::Zstd),
            other => Err(format!("unknown compression {other:?} (none, snappy, lz4, zstd)")),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::None => "none",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        };
        f.write_str(s)
    }
}

/// Storage options of one column family.
#[derive(Clone, Debug, PartialEq)]
pub struct CfOptions {
    pub compression: Compression,
    /// Size of an uncompressed data block, in bytes.
    pub block_size: usize,
    /// Bits per key of the bloom filter; 0 disables it.
    pub bloom_bits_per_key: f64,
    /// Memtable size, in bytes.
    pub write_buffer_size: usize,
}

impl Default for CfOptions {
    fn default() -> Self {
        Self { compression: Compression::Lz4, block_size: 16 * 1024, bloom_bits_per_key: 10.0, write_buffer_size: 64 << 20 }
    }
}

/// A user column family: its name and options.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "CfConfigFile")]
pub struct CfConfig {
    pub name: String,
    pub options: CfOptions,
}

/// The TOML form of a [`CfConfig`]: the name beside the options.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CfConfigFile {
    name: String,
    compression: Option<Compression>,
    block_size: Option<usize>,
    bloom_bits_per_key: Option<f64>,
    write_buffer_size: Option<usize>,
}

impl TryFrom<CfConfigFile> for CfConfig {
    type Error = CfSpecError;
    fn try_from(f: CfConfigFile) -> Result<Self, CfSpecError> {
        let d = CfOptions::default();
        let options = CfOptions {
            compression: f.compression.unwrap_or(d.compression),
            block_size: f.block_size.unwrap_or(d.block_size),
            bloom_bits_per_key: f.bloom_bits_per_key.unwrap_or(d.bloom_bits_per_key),
            write_buffer_size: f.write_buffer_size.unwrap_or(d.write_buffer_size),
        };
        validate_user_cf_name(&f.name)?;
        validate_options(&f.name, &options)?;
        Ok(CfConfig { name: f.name, options })
    }
}

fn validate_options(spec: &str, options: &CfOptions) -> Result<(), CfSpecError> {
    if options.block_size < 1024 || options.block_size > 1 << 20 {
        return Err(CfSpecError::BadOption(spec.to_string(), "block_size must be 1 KiB..1 MiB".into()));
    }
    if !(0.0..=64.0).contains(&options.bloom_bits_per_key) {
        return Err(CfSpecError::BadOption(spec.to_string(), "bloom_bits_per_key must be 0..64".into()));
    }
    if options.write_buffer_size < 1 << 20 {
        return Err(CfSpecError::BadOption(spec.to_string(), "write_buffer_size must be at least 1 MiB".into()));
    }
    Ok(())
}

/// Why a column family name or spec was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CfSpecError {
    #[error("column family name must be 1-64 characters of [a-z0-9_-], got {0:?}")]
    BadName(String),
    #[error("column family name {0:?} is reserved for the store's own use")]
    Reserved(String),
    #[error("bad column family option {0:?}: {1}")]
    BadOption(String, String),
}

/// Checks that `name` may be used for a user column family.
pub fn validate_user_cf_name(name: &str) -> Result<(), CfSpecError> {
    let valid_chars = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if name.is_empty() || name.len() > 64 || !valid_chars {
        return Err(CfSpecError::BadName(name.to_string()));
    }
    if INTERNAL_CFS.contains(&name) {
        return Err(CfSpecError::Reserved(name.to_string()));
    }
    Ok(())
}

impl FromStr for CfConfig {
    type Err = CfSpecError;

    /// Parses the command-line form `NAME[:KEY=VALUE,...]`, for example
    /// `users:compression=zstd,block_size=32768,bloom_bits_per_key=10`.
    fn from_str(spec: &str) -> Result<Self, CfSpecError> {
        let (name, opts) = spec.split_once(':').unwrap_or((spec, ""));
        validate_user_cf_name(name)?;
        let mut options = CfOptions::default();
        for kv in opts.split(',').filter(|s| !s.is_empty()) {
            let (key, value) = kv.split_once('=').ok_or_else(|| CfSpecError::BadOption(kv.into(), "expected KEY=VALUE".into()))?;
            let bad = |e: String| CfSpecError::BadOption(kv.to_string(), e);
            match key {
                "compression" => options.compression = value.parse().map_err(bad)?,
                "block_size" => options.block_size = value.parse().map_err(|e| bad(format!("{e}")))?,
                "bloom_bits_per_key" => options.bloom_bits_per_key = value.parse().map_err(|e| bad(format!("{e}")))?,
                "write_buffer_size" => options.write_buffer_size = value.parse().map_err(|e| bad(format!("{e}")))?,
                _ => return Err(bad("unknown option (compression, block_size, bloom_bits_per_key, write_buffer_size)".into())),
            }
        }
        validate_options(spec, &options)?;
        Ok(CfConfig { name: name.to_string(), options })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_and_options() {
        let cf: CfConfig = "users:compression=zstd,block_size=32768,bloom_bits_per_key=0".parse().unwrap();
        assert_eq!(cf.name, "users");
        assert_eq!(cf.options.compression, Compression::Zstd);
        assert_eq!(cf.options.block_size, 32768);
        assert_eq!(cf.options.bloom_bits_per_key, 0.0);
        let plain: CfConfig = "logs".parse().unwrap();
        assert_eq!(plain.options, CfOptions::default());
    }

    #[test]
    fn refuses_bad_names_reserved_names_and_bad_options() {
        assert!(matches!("".parse::<CfConfig>(), Err(CfSpecError::BadName(_))));
        assert!(matches!("Users".parse::<CfConfig>(), Err(CfSpecError::BadName(_))));
        assert!(matches!("raft_log".parse::<CfConfig>(), Err(CfSpecError::Reserved(_))));
        assert!(matches!("a:compression=gzip".parse::<CfConfig>(), Err(CfSpecError::BadOption(..))));
        assert!(matches!("a:block_size=12".parse::<CfConfig>(), Err(CfSpecError::BadOption(..))));
        assert!(matches!("a:colour=red".parse::<CfConfig>(), Err(CfSpecError::BadOption(..))));
        assert!(matches!("a:block_size".parse::<CfConfig>(), Err(CfSpecError::BadOption(..))));
    }
}
