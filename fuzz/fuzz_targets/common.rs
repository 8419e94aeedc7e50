//! What the targets share: a real store's engine (RocksDB in a temporary
//! directory, with the user column family `users` besides `default`) and its
//! snapshot manager, made once per fuzzing process.

#![allow(dead_code)]

use std::sync::{Arc, LazyLock};

use shoal_node::config::NodeConfig;
use shoal_node::metrics::Metrics;
use shoal_node::server::validate::Limits;
use shoal_node::snap::SnapManager;
use shoal_node::storage::Engine;
use shoal_node::storage::cf::CfConfig;

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub engine: Arc<Engine>,
    pub snap: Arc<SnapManager>,
    pub limits: Limits,
}

pub static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("temp dir");
    let users: CfConfig = "users".parse().expect("a column family");
    let engine = Arc::new(Engine::open(&dir.path().join("db"), &[users]).expect("engine"));
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    let snap = SnapManager::open(&dir.path().join("snap"), engine.clone(), metrics).expect("snapshot manager");
    let limits = Limits::from_config(&NodeConfig::default());
    Fixture { dir, engine, snap, limits }
});

/// Splits `data` into pieces, each prefixed by its length (one byte).
pub fn pieces(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = data.split_first() {
        let n = usize::from(len).min(rest.len());
        out.push(&rest[..n]);
        data = &rest[n..];
    }
    out
}
