//! `shoalctl bench load`: writes keys `0..keys` once each, with `concurrency` workers
//! taking the next unwritten index from a shared counter. Stops at the first failed
//! write and returns its error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::task::JoinSet;

use super::target::Target;
use super::workload::{fill_value, key};

/// Writes every key once; returns how many were written (all of them, on success).
pub async fn load(target: &Target, cf: &str, keys: u64, value_size: usize, concurrency: usize) -> Result<u64> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency {
        let (mut conn, next, cf) = (target.conn(), next.clone(), cf.to_string());
        let mut rng = StdRng::from_rng(&mut rand::rng());
        tasks.spawn(async move {
            let mut value = vec![0u8; value_size];
            let mut written = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= keys {
                    return Ok::<_, anyhow::Error>(written);
                }
                fill_value(&mut rng, &mut value);
                let k = key(i);
                conn.put(&cf, &k, &value).await.with_context(|| format!("writing {}", String::from_utf8_lossy(&k)))?;
                written += 1;
            }
        });
    }
    let mut total = 0;
    // Returning early drops the set, which aborts the other workers.
    while let Some(joined) = tasks.join_next().await {
        total += joined.context("a load worker panicked")??;
    }
    Ok(total)
}
