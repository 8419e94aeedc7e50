//! The Shoal side of reconcile: asking the cluster for its stores and
//! carrying out the membership driver's steps through its Admin service.
//!
//! The operator reaches the cluster at its pods' IPs (the gRPC port): the
//! client library finds the meta leader from there, following its hints.
//! With `spec.tls` on it presents its own certificate (see
//! [`crate::certificates`]). Every call has a short deadline so that a round never hangs on a cluster
//! that does not answer; the next round asks again.

use std::time::Duration;

use shoal_client::{Client, ClientOptions, ClientTls};
use shoal_proto::StoreState as ProtoState;

use crate::error::Result;
use crate::membership::{ObservedStore, Step, StoreState};

/// The store label placement spreads replicas over (the node's `ZONE_LABEL`).
pub const ZONE_LABEL: &str = "zone";

/// A client for the cluster reachable at `endpoints` (`IP:PORT`), with the
/// operator's certificate when the cluster has TLS on.
pub fn client(endpoints: &[String], tls: Option<&ClientTls>) -> Result<Client> {
    let opts = ClientOptions {
        deadline: Duration::from_secs(10),
        attempt_timeout: Duration::from_secs(4),
        connect_timeout: Duration::from_secs(1),
        tls: tls.cloned(),
    };
    Ok(Client::new(endpoints, opts)?)
}

fn state_of(s: ProtoState) -> StoreState {
    match s {
        ProtoState::Pending => StoreState::Pending,
        ProtoState::Joining => StoreState::Joining,
        ProtoState::Draining => StoreState::Draining,
        ProtoState::Tombstone => StoreState::Tombstone,
        // Unknown: a state this operator does not know; never counted as
        // serving nor removed without a drain of its own.
        ProtoState::Down | ProtoState::Unknown => StoreState::Down,
        ProtoState::Up => StoreState::Up,
    }
}

/// Every store the cluster knows. A draining store's counts come from
/// `StoreStatus`, which includes the meta region (it must hold none to be removed).
pub async fn stores(client: &Client) -> Result<Vec<ObservedStore>> {
    let mut out = Vec::new();
    for d in client.list_stores().await? {
        let meta = d.store.unwrap_or_default();
        let stats = d.stats.unwrap_or_default();
        let mut s = ObservedStore {
            id: meta.id,
            name: meta.name.clone(),
            state: state_of(meta.state()),
            regions: stats.region_count,
            leaders: stats.leader_count,
            heard: stats.last_heartbeat_ms > 0,
            zone: meta.labels.get(ZONE_LABEL).cloned(),
        };
        if matches!(s.state, StoreState::Draining | StoreState::Down) {
            let st = client.store_status(s.id).await?;
            s.regions = st.region_count;
            s.leaders = st.leader_count;
        }
        out.push(s);
    }
    Ok(out)
}

/// Carries out an Admin step (volume deletions are Kubernetes' business).
pub async fn run_step(client: &Client, step: &Step) -> Result<()> {
    match step {
        Step::JoinStore { store_id, .. } => client.join_store(*store_id).await.map(drop)?,
        Step::DrainStore { store_id, .. } => client.drain_store(*store_id).await.map(drop)?,
        Step::RemoveStore { store_id, .. } => client.remove_store(*store_id).await.map(drop)?,
        Step::CancelDrain { store_id, .. } => client.cancel_drain(*store_id).await.map(drop)?,
        Step::LabelStore { store_id, zone, .. } => {
            // Only `zone` changes: labels set by other hands stay.
            let mut labels = client.store_status(*store_id).await?.store.map(|s| s.labels).unwrap_or_default();
            labels.insert(ZONE_LABEL.to_string(), zone.clone());
            client.set_store_labels(*store_id, &labels).await.map(drop)?
        }
        Step::DeleteVolume { .. } | Step::ReplaceVolume { .. } => {}
    }
    Ok(())
}
