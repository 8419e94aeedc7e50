//! What `shoalctl bench` drives: a Shoal cluster through [`shoal_client::Client`],
//! or an etcd cluster through the `etcd-client` crate, so that both systems see the
//! same workload from the same closed-loop client (`--target shoal|etcd`).
//!
//! The operations map one to one:
//!
//! | bench | Shoal | etcd |
//! |---|---|---|
//! | read | `Get` (linearizable, or stale with `--stale-reads`) | `Range` of one key (linearizable, or serializable) |
//! | update, insert | `Put` | `Put` |
//! | scan | `Scan` from the key, no end, a limit (linearizable) | `Range` from the key (`--from-key`), a limit (linearizable) |
//!
//! Both are durable when acknowledged (Shoal fsyncs on a quorum; etcd's default
//! is the same). etcd has no column families: `--cf` must stay `default`.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use etcd_client::GetOptions;
use shoal_client::{Client, ReadConsistency};

/// Which system the bench drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum System {
    Shoal,
    Etcd,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Shoal => "shoal",
            System::Etcd => "etcd",
        }
    }
}

/// A connected cluster; each worker takes its own [`Conn`].
pub enum Target {
    Shoal(Arc<Client>),
    Etcd(Box<etcd_client::Client>),
}

impl Target {
    /// Connects to `endpoints` (`host:port`, any member of the cluster).
    pub async fn connect(system: System, endpoints: &[String], cf: &str) -> Result<Target> {
        match system {
            System::Shoal => Ok(Target::Shoal(Arc::new(Client::new(endpoints, crate::commands::client_options())?))),
            System::Etcd => {
                if cf != "default" {
                    bail!("etcd has no column families: --cf must be `default` with --target etcd");
                }
                let urls: Vec<String> =
                    endpoints.iter().map(|e| if e.contains("://") { e.clone() } else { format!("http://{e}") }).collect();
                let client = etcd_client::Client::connect(&urls, None).await.with_context(|| format!("connecting to etcd at {urls:?}"))?;
                Ok(Target::Etcd(Box::new(client)))
            }
        }
    }

    pub fn conn(&self) -> Conn {
        match self {
            Target::Shoal(c) => Conn::Shoal(c.clone()),
            Target::Etcd(c) => Conn::Etcd(Box::new(c.kv_client())),
        }
    }
}

/// One worker's handle on the target.
pub enum Conn {
    Shoal(Arc<Client>),
    Etcd(Box<etcd_client::KvClient>),
}

impl Conn {
    /// Reads one key; returns whether it has a value.
    pub async fn get(&mut self, cf: &str, key: &[u8], consistency: ReadConsistency) -> Result<bool> {
        match self {
            Conn::Shoal(c) => Ok(c.get_with(cf, key, consistency).await?.is_some()),
            Conn::Etcd(kv) => {
                let opts = (consistency == ReadConsistency::Stale).then(|| GetOptions::new().with_serializable());
                Ok(!kv.get(key, opts).await?.kvs().is_empty())
            }
        }
    }

    pub async fn put(&mut self, cf: &str, key: &[u8], value: &[u8]) -> Result<()> {
        match self {
            Conn::Shoal(c) => Ok(c.put(cf, key, value).await?),
            Conn::Etcd(kv) => {
                kv.put(key, value, None).await?;
                Ok(())
            }
        }
    }

    /// Reads up to `limit` keys from `start` on (linearizable); returns how many.
    pub async fn scan(&mut self, cf: &str, start: &[u8], limit: usize) -> Result<usize> {
        match self {
            Conn::Shoal(c) => Ok(c.scan(cf, start, b"", limit).await?.len()),
            Conn::Etcd(kv) => {
                let opts = GetOptions::new().with_from_key().with_limit(limit as i64);
                Ok(kv.get(start, Some(opts)).await?.kvs().len())
            }
        }
    }
}
