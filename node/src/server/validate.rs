//! Request validation: everything a client sends is checked here before it
//! reaches Raft, so bad input gets `InvalidArgument` and never a panic.

use shoal_proto::{Mutation, mutation};

use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::storage::Engine;

/// The size limits a node enforces.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_key_size: usize,
    pub max_value_size: usize,
    pub max_batch_size: usize,
    pub max_batch_mutations: usize,
    pub default_scan_limit: usize,
    pub max_scan_limit: usize,
}

impl Limits {
    pub fn from_config(cfg: &NodeConfig) -> Limits {
        Limits {
            max_key_size: cfg.max_key_size,
            max_value_size: cfg.max_value_size,
            max_batch_size: cfg.max_batch_size,
            max_batch_mutations: cfg.max_batch_mutations,
            default_scan_limit: cfg.default_scan_limit,
            max_scan_limit: cfg.max_scan_limit,
        }
    }
}

fn invalid<T>(msg: String) -> Result<T> {
    Err(Error::InvalidArgument(msg))
}

/// Checks the column family; an empty name means `default`.
pub fn cf<'a>(engine: &Engine, cf: &'a str) -> Result<&'a str> {
    let cf = if cf.is_empty() { crate::storage::cf::CF_DEFAULT } else { cf };
    if !engine.is_user_cf(cf) {
        return invalid(format!("unknown column family {cf:?} (this cluster has {:?})", engine.user_cfs()));
    }
    Ok(cf)
}

pub fn key(limits: &Limits, key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return invalid("key must not be empty".into());
    }
    if key.len() > limits.max_key_size {
        return invalid(format!("key is {} bytes, over the limit of {}", key.len(), limits.max_key_size));
    }
    Ok(())
}

pub fn value(limits: &Limits, value: &[u8]) -> Result<()> {
    if value.len() > limits.max_value_size {
        return invalid(format!("value is {} bytes, over the limit of {}", value.len(), limits.max_value_size));
    }
    Ok(())
}

/// Checks a batch of mutations and fills in `default` for empty CF names.
pub fn mutations(engine: &Engine, limits: &Limits, mut muts: Vec<Mutation>) -> Result<Vec<Mutation>> {
    if muts.is_empty() {
        return invalid("a batch needs at least one mutation".into());
    }
    if muts.len() > limits.max_batch_mutations {
        return invalid(format!("batch has {} mutations, over the limit of {}", muts.len(), limits.max_batch_mutations));
    }
    let mut total = 0usize;
    for m in &mut muts {
        m.cf = cf(engine, &m.cf)?.to_string();
        key(limits, &m.key)?;
        match mutation::Op::try_from(m.op) {
            Ok(mutation::Op::Put) => value(limits, &m.value)?,
            Ok(mutation::Op::Delete) if m.value.is_empty() => {}
            Ok(mutation::Op::Delete) => return invalid("a delete carries no value".into()),
            Err(_) => return invalid(format!("unknown mutation op {}", m.op)),
        }
        total += m.key.len() + m.value.len();
    }
    if total > limits.max_batch_size {
        return invalid(format!("batch is {total} bytes, over the limit of {}", limits.max_batch_size));
    }
    Ok(muts)
}

/// The scan limit to use: the default for 0, never above the maximum.
pub fn scan_limit(limits: &Limits, requested: u32) -> usize {
    match requested as usize {
        0 => limits.default_scan_limit,
        n => n.min(limits.max_scan_limit).max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_key_size: 8,
            max_value_size: 16,
            max_batch_size: 30,
            max_batch_mutations: 3,
            default_scan_limit: 10,
            max_scan_limit: 100,
        }
    }

    fn put(cf: &str, k: &[u8], v: &[u8]) -> Mutation {
        Mutation { op: mutation::Op::Put as i32, cf: cf.into(), key: k.to_vec(), value: v.to_vec() }
    }

    fn engine() -> (tempfile::TempDir, Engine) {
        let dir = tempfile::tempdir().unwrap();
        let e = Engine::open(dir.path(), &["users".parse().unwrap()]).unwrap();
        (dir, e)
    }

    fn is_invalid<T: std::fmt::Debug>(r: Result<T>) -> bool {
        matches!(r, Err(Error::InvalidArgument(_)))
    }

    #[test]
    fn keys_values_and_cfs() {
        let (_d, e) = engine();
        let l = limits();
        assert!(is_invalid(key(&l, b"")));
        assert!(key(&l, b"12345678").is_ok());
        assert!(is_invalid(key(&l, b"123456789")));
        assert!(value(&l, &[0; 16]).is_ok());
        assert!(is_invalid(value(&l, &[0; 17])));
        assert_eq!(cf(&e, "").unwrap(), "default");
        assert_eq!(cf(&e, "users").unwrap(), "users");
        assert!(is_invalid(cf(&e, "nope")));
        assert!(is_invalid(cf(&e, "raft_log")), "internal CFs are not for clients");
    }

    #[test]
    fn batches() {
        let (_d, e) = engine();
        let l = limits();
        let ok = mutations(&e, &l, vec![put("", b"a", b"1"), put("users", b"b", b"2")]).unwrap();
        assert_eq!(ok[0].cf, "default");
        assert!(is_invalid(mutations(&e, &l, vec![])));
        assert!(is_invalid(mutations(&e, &l, vec![put("", b"a", b"1"); 4])), "too many mutations");
        assert!(is_invalid(mutations(&e, &l, vec![put("", b"a", &[0; 16]), put("", b"b", &[0; 16])])), "too many bytes");
        assert!(is_invalid(mutations(&e, &l, vec![put("", b"a", b"1"), put("bad", b"b", b"2")])));
        let mut unknown_op = put("", b"a", b"");
        unknown_op.op = 7;
        assert!(is_invalid(mutations(&e, &l, vec![unknown_op])));
        let mut delete_with_value = put("", b"a", b"x");
        delete_with_value.op = mutation::Op::Delete as i32;
        assert!(is_invalid(mutations(&e, &l, vec![delete_with_value])));
    }

    #[test]
    fn scan_limits() {
        let l = limits();
        assert_eq!(scan_limit(&l, 0), 10);
        assert_eq!(scan_limit(&l, 5), 5);
        assert_eq!(scan_limit(&l, 1_000_000), 100);
    }
}
