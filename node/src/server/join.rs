//! Joining an existing cluster (an empty data directory that does not
//! bootstrap: see [`crate::config::FirstStart`]): the store registers with the
//! meta leader (`Admin.RegisterStore`), which gives it a store id and records it
//! `PENDING`; the store writes that identity and the cluster's store list, then
//! starts like any other store — holding no region until placement seeds it
//! after `JoinStore`.
//!
//! Before registering, the store records a random instance token in its data
//! directory ([`bootstrap::join_token`]) and registers with it. Meta gives the
//! same id back only to the same name *and* instance, so a registration retried
//! after a crash (registered, identity not yet written) is idempotent, while a
//! store that lost its data and comes back empty under its old name gets a new
//! id (the old store stays registered, to be drained and removed).
//!
//! Registration is retried while the cluster is unreachable (pods of a
//! StatefulSet start in any order), up to [`REGISTER_DEADLINE`].

use std::time::{Duration, Instant};

use shoal_proto::{StoreIdent, StoreInfo, StoreState};

use super::meta_client::MetaClient;
use super::registry::StoreRegistry;
use super::tls::Dialer;
use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::raftstore::bootstrap;
use crate::storage::Engine;

/// How long a joining store keeps trying to reach the cluster.
pub const REGISTER_DEADLINE: Duration = Duration::from_secs(120);

/// Registers this store with the cluster at `addrs` and records the identity it
/// got, with the cluster's stores.
pub async fn register(engine: &Engine, cfg: &NodeConfig, addrs: &[String], dialer: Dialer) -> Result<StoreIdent> {
    let instance = bootstrap::join_token(engine)?;
    let client = MetaClient::new(StoreRegistry::default().with_dialer(dialer), addrs.to_vec(), cfg.request_timeout());
    let deadline = Instant::now() + REGISTER_DEADLINE;
    let resp = loop {
        match client.register_store(&cfg.name, &cfg.advertise_addr(), &instance).await {
            Ok(resp) => break resp,
            Err(e @ (Error::InvalidArgument(_) | Error::FailedPrecondition(_))) => return Err(e),
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %e, "cannot register with the cluster yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    };
    // Meta never hands a tombstoned id out again; only a meta leader that
    // ignores instances (an older version) could answer with one.
    if resp.state() == StoreState::Tombstone {
        return Err(Error::FailedPrecondition(format!(
            "the cluster answered store {:?}'s registration with id {}, which was removed; retry once every store runs this version",
            cfg.name, resp.store_id
        )));
    }
    let stores: Vec<StoreInfo> = client
        .list_stores()
        .await?
        .into_iter()
        .map(|s| StoreInfo { id: s.id, name: s.name, address: s.address, client_address: s.client_address })
        .collect();
    let ident = StoreIdent { cluster_id: resp.cluster_id, store_id: resp.store_id, name: cfg.name.clone() };
    bootstrap::write_joined(engine, &ident, &stores)?;
    tracing::info!(store_id = ident.store_id, cluster_id = ident.cluster_id, %instance, "registered with the cluster; waiting to be admitted");
    Ok(ident)
}
