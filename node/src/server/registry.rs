//! [`StoreRegistry`]: the stores this node knows, by id — for addressing Raft
//! messages and for the leader address in `NotLeader` answers — and how to
//! dial them ([`StoreRegistry::endpoint`]: TLS or not, see `tls::Dialer`).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use shoal_proto::StoreInfo;
use tonic::transport::Endpoint;

use super::tls::Dialer;

#[derive(Clone, Default)]
pub struct StoreRegistry {
    stores: Arc<RwLock<BTreeMap<u64, StoreInfo>>>,
    dialer: Dialer,
}

impl StoreRegistry {
    pub fn new(stores: Vec<StoreInfo>) -> StoreRegistry {
        let map = stores.into_iter().map(|s| (s.id, s)).collect();
        StoreRegistry { stores: Arc::new(RwLock::new(map)), dialer: Dialer::default() }
    }

    /// The same stores, dialed with `dialer`.
    pub fn with_dialer(mut self, dialer: Dialer) -> StoreRegistry {
        self.dialer = dialer;
        self
    }

    /// An endpoint for a store's address (`host:port`).
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, tonic::transport::Error> {
        self.dialer.endpoint(addr)
    }

    pub fn address(&self, store_id: u64) -> Option<String> {
        self.stores.read().ok()?.get(&store_id).map(|s| s.address.clone())
    }

    pub fn all(&self) -> Vec<StoreInfo> {
        self.stores.read().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// Takes the stores meta lists (new ones, new addresses); returns whether
    /// anything changed. Stores meta no longer lists stay known.
    pub fn update(&self, stores: Vec<StoreInfo>) -> bool {
        let mut map = self.stores.write().unwrap_or_else(|p| p.into_inner());
        let mut changed = false;
        for s in stores {
            if map.get(&s.id) != Some(&s) {
                map.insert(s.id, s);
                changed = true;
            }
        }
        changed
    }
}
