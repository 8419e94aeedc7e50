//! [`StoreRegistry`]: the stores this node knows, by id — for addressing Raft
//! messages and for the leader address in `NotLeader` answers — and how to
//! dial them ([`StoreRegistry::endpoint`]: TLS or not, see `tls::Dialer`).
//!
//! A store has one address (its peer port, every service) and may have a
//! client address (a port serving clients only). Services behind the client
//! port hold [`StoreRegistry::for_clients`], whose hints name client addresses.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use shoal_proto::{StoreInfo, StoreMeta};
use tonic::transport::Endpoint;

use super::tls::Dialer;

#[derive(Clone, Default)]
pub struct StoreRegistry {
    stores: Arc<RwLock<BTreeMap<u64, StoreInfo>>>,
    dialer: Dialer,
    /// Hints name client addresses (this copy serves the client port).
    client_hints: bool,
}

impl StoreRegistry {
    pub fn new(stores: Vec<StoreInfo>) -> StoreRegistry {
        let map = stores.into_iter().map(|s| (s.id, s)).collect();
        StoreRegistry { stores: Arc::new(RwLock::new(map)), dialer: Dialer::default(), client_hints: false }
    }

    /// The same stores, for the services behind the client port: [`Self::hint_address`]
    /// names client addresses where stores have them.
    pub fn for_clients(&self) -> StoreRegistry {
        StoreRegistry { client_hints: true, ..self.clone() }
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

    /// The address stores reach `store_id` at.
    pub fn address(&self, store_id: u64) -> Option<String> {
        self.stores.read().ok()?.get(&store_id).map(|s| s.address.clone())
    }

    /// The address to name in a `NotLeader` hint: the store's client address
    /// when this copy serves the client port (none while it is not known
    /// here yet: a client told the peer address would cache it, and a network
    /// policy drops what it sends there; without a hint it asks meta).
    pub fn hint_address(&self, store_id: u64) -> Option<String> {
        let stores = self.stores.read().ok()?;
        let s = stores.get(&store_id)?;
        if !self.client_hints { Some(s.address.clone()) } else { Some(s.client_address.clone()).filter(|a| !a.is_empty()) }
    }

    pub fn all(&self) -> Vec<StoreInfo> {
        self.stores.read().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// The registry's record of a store as meta lists it.
    pub fn info_of(s: StoreMeta) -> StoreInfo {
        StoreInfo { id: s.id, name: s.name, address: s.address, client_address: s.client_address }
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
