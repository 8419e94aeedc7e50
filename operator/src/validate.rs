//! Checks of a `KvCluster` spec that the operator makes itself, for objects
//! that did not go through the CRD's schema (an older CRD, a test, a
//! `kubectl replace --validate=false`): the same rules as the schema's range
//! checks and CEL rules (the transition rules, which compare with the old
//! object, only the API server can check).
//!
//! A spec that fails is the user's fault: the operator reports it (`Degraded`
//! with reason `InvalidSpec`, an Event) and waits for the spec to change.

use crate::crd::{KvCluster, KvClusterSpec, TlsMode};

/// Column family names the storage node keeps for itself.
pub const RESERVED_CFS: [&str; 4] = ["raft_log", "raft_state", "region_meta", "meta"];

/// Why a spec was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid KvCluster spec: {0}")]
pub struct InvalidSpec(pub String);

pub fn validate(kvc: &KvCluster) -> Result<(), InvalidSpec> {
    let spec = &kvc.spec;
    validate_spec(spec)?;
    let name = kvc.metadata.name.as_deref().unwrap_or_default();
    // Pod names are `<name>-<ordinal>` and must be DNS labels (63 characters).
    let dns_label = |s: &str| {
        !s.is_empty()
            && s.len() <= 52
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    if !dns_label(name) {
        return Err(InvalidSpec(format!("name {name:?} must be a DNS label of at most 52 characters")));
    }
    Ok(())
}

fn validate_spec(spec: &KvClusterSpec) -> Result<(), InvalidSpec> {
    let fail = |m: String| Err(InvalidSpec(m));
    if !(1..=7).contains(&spec.replication_factor) {
        return fail(format!("replicationFactor must be 1..7, got {}", spec.replication_factor));
    }
    if spec.replicas < spec.replication_factor {
        return fail(format!("replicas ({}) must be at least replicationFactor ({})", spec.replicas, spec.replication_factor));
    }
    if spec.replicas > 99 {
        return fail(format!("replicas must be at most 99, got {}", spec.replicas));
    }
    if spec.image.trim().is_empty() {
        return fail("image must not be empty".into());
    }
    if !is_quantity(&spec.storage.size) {
        return fail(format!("storage.size {:?} is not a quantity such as 10Gi", spec.storage.size));
    }
    for (i, cf) in spec.column_families.iter().enumerate() {
        let n = &cf.name;
        let chars_ok = n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if n.is_empty() || n.len() > 64 || !chars_ok {
            return fail(format!("column family name {n:?} must be 1-64 characters of [a-z0-9_-]"));
        }
        if RESERVED_CFS.contains(&n.as_str()) {
            return fail(format!("column family name {n:?} is reserved"));
        }
        if spec.column_families[..i].iter().any(|c| &c.name == n) {
            return fail(format!("column family {n:?} is declared twice"));
        }
        let o = &cf.options;
        if o.block_size.is_some_and(|b| !(1024..=1 << 20).contains(&b)) {
            return fail(format!("column family {n:?}: blockSize must be 1024..1048576"));
        }
        if o.bloom_bits_per_key.is_some_and(|b| !(0.0..=64.0).contains(&b)) {
            return fail(format!("column family {n:?}: bloomBitsPerKey must be 0..64"));
        }
        if o.write_buffer_size.is_some_and(|w| w < 1 << 20) {
            return fail(format!("column family {n:?}: writeBufferSize must be at least 1 MiB"));
        }
    }
    let c = &spec.config;
    if let (Some(tick), Some(election)) = (c.raft_tick_ms, c.raft_election_ticks)
        && tick.saturating_mul(election) > 600_000
    {
        return fail("raftTickMs × raftElectionTicks must be at most 10 minutes".into());
    }
    if c.snapshot_chunk_size.is_some_and(|s| !(1 << 20..=4 << 20).contains(&s)) {
        return fail("config.snapshotChunkSize must be 1 MiB..4 MiB".into());
    }
    if let Some(tls) = &spec.tls {
        if tls.mode == TlsMode::CertManager && tls.issuer_ref.as_ref().is_none_or(|i| i.name.is_empty()) {
            return fail("tls.mode CertManager needs tls.issuerRef".into());
        }
        if tls.certificate_lifetime_hours.is_some_and(|h| !(1..=87_600).contains(&h)) {
            return fail("tls.certificateLifetimeHours must be 1..87600".into());
        }
    }
    Ok(())
}

/// A Kubernetes quantity as storage sizes use them (digits, an optional
/// fraction, an optional binary or decimal suffix), in bytes.
pub fn quantity_bytes(s: &str) -> Option<f64> {
    let suffixes: [(&str, f64); 13] = [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
        ("", 1.0),
    ];
    suffixes.iter().find_map(|(suf, mult)| {
        let num = s.strip_suffix(suf)?;
        let (int, frac) = num.split_once('.').unwrap_or((num, "0"));
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        (digits(int) && digits(frac)).then(|| num.parse::<f64>().ok().map(|n| n * mult)).flatten()
    })
}

fn is_quantity(s: &str) -> bool {
    quantity_bytes(s).is_some()
}

#[cfg(test)]
mod tests {
    use super::quantity_bytes;

    #[test]
    fn storage_quantities_parse_to_bytes() {
        assert_eq!(quantity_bytes("10Gi"), Some(10.0 * 1024f64.powi(3)));
        assert_eq!(quantity_bytes("1.5Ti"), Some(1.5 * 1024f64.powi(4)));
        assert_eq!(quantity_bytes("11G"), Some(11e9));
        assert_eq!(quantity_bytes("512"), Some(512.0));
        assert!(quantity_bytes("11G").expect("11G") > quantity_bytes("10Gi").expect("10Gi"));
        for bad in ["", "Gi", "10 Gi", "ten", "1.Gi", ".5Gi", "10gi"] {
            assert_eq!(quantity_bytes(bad), None, "{bad:?}");
        }
    }
}
