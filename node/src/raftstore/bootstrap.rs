//! First start of a store: its identity, the initial store registry and the first
//! region, written in one synced batch — all of it, or none.
//!
//! Every member of `--initial-cluster` computes the same layout from the same list:
//! store ids 1..=N in list order; the meta group (region 1, peer id = store id)
//! with its initial state (every store `Up`, the directory holding region 2, ids
//! from 2N+1 on); and region 2 covering the whole key space with one voter per
//! store (peer id = N + store id). A store that already has an identity never
//! bootstraps again; every later id comes from the meta group's allocator.
//!
//! A store that joins instead keeps a random instance token ([`join_token`]),
//! written synced before it registers, so that a registration retried after a
//! crash is recognised as the same store, and an empty data directory under a
//! known name (a lost volume) is not.

use prost::Message as _;
use shoal_proto::{Peer, Region, RegionEpoch, RegionInfo, StoreIdent, StoreInfo, StoreMeta, StoreState};

use super::peer_storage::PeerStorage;
use crate::error::{Error, Result};
use crate::keys;
use crate::meta::META_REGION_ID;
use crate::meta::state::MetaState;
use crate::storage::Engine;
use crate::storage::cf::CF_REGION_META;

/// The id of the data region a new cluster starts with (region 1 is meta).
pub const FIRST_REGION_ID: u64 = 2;

/// A member of the initial cluster: its name and the address peers reach it at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialMember {
    pub name: String,
    pub addr: String,
}

/// Reads this store's identity, if it has one.
pub fn load_ident(engine: &Engine) -> Result<Option<StoreIdent>> {
    match engine.get(CF_REGION_META, keys::STORE_IDENT_KEY)? {
        Some(b) => Ok(Some(StoreIdent::decode(b.as_slice()).map_err(|e| Error::Internal(format!("corrupt store ident: {e}")))?)),
        None => Ok(None),
    }
}

/// Reads this store's identity, if it has one; refuses a data directory that
/// belongs to another name.
pub fn load_own_ident(engine: &Engine, name: &str) -> Result<Option<StoreIdent>> {
    match load_ident(engine)? {
        Some(ident) if ident.name != name => {
            Err(Error::InvalidArgument(format!("data directory belongs to store {:?} (id {}), not {name:?}", ident.name, ident.store_id)))
        }
        other => Ok(other),
    }
}

/// Reads the store registry kept on this store.
pub fn load_stores(engine: &Engine) -> Result<Vec<StoreInfo>> {
    let (start, end) = keys::store_info_range();
    let mut stores = Vec::new();
    let mut bad = None;
    engine.for_each(CF_REGION_META, &start, &end, |_, v| match StoreInfo::decode(v) {
        Ok(s) => {
            stores.push(s);
            true
        }
        Err(e) => {
            bad = Some(e);
            false
        }
    })?;
    match bad {
        Some(e) => Err(Error::Internal(format!("corrupt store registry: {e}"))),
        None => Ok(stores),
    }
}

/// Records `stores` (new addresses of known names included) in the registry.
pub fn save_stores(engine: &Engine, stores: &[StoreInfo]) -> Result<()> {
    let mut wb = engine.batch();
    for s in stores {
        wb.put(CF_REGION_META, &keys::store_info_key(s.id), &s.encode_to_vec())?;
    }
    engine.write(wb, true)?;
    Ok(())
}

/// Bootstraps the store named `name` as a member of `members`, or returns the
/// identity it already has. Refuses a data directory that belongs to another name.
pub fn bootstrap_or_load(engine: &Engine, name: &str, members: &[InitialMember]) -> Result<StoreIdent> {
    if let Some(ident) = load_own_ident(engine, name)? {
        return Ok(ident);
    }
    let position = members
        .iter()
        .position(|m| m.name == name)
        .ok_or_else(|| Error::InvalidArgument(format!("--name {name:?} is not in --initial-cluster")))?;
    let stores: Vec<StoreInfo> = members
        .iter()
        .enumerate()
        .map(|(i, m)| StoreInfo { id: i as u64 + 1, name: m.name.clone(), address: m.addr.clone(), ..Default::default() })
        .collect();
    let n = stores.len() as u64;
    let group = |id: u64, peer_id_base: u64| Region {
        id,
        start_key: vec![],
        end_key: vec![],
        epoch: Some(RegionEpoch { conf_ver: 1, version: 1 }),
        peers: stores.iter().map(|s| Peer { id: peer_id_base + s.id, store_id: s.id, is_learner: false }).collect(),
    };
    let meta_region = group(META_REGION_ID, 0);
    let region = group(FIRST_REGION_ID, n);
    let store_metas: Vec<StoreMeta> = stores
        .iter()
        .map(|s| StoreMeta {
            id: s.id,
            name: s.name.clone(),
            address: s.address.clone(),
            state: StoreState::Up as i32,
            instance: String::new(),
            client_address: s.client_address.clone(),
            labels: Default::default(),
        })
        .collect();
    let ident = StoreIdent { cluster_id: cluster_id(members), store_id: position as u64 + 1, name: name.to_string() };

    let mut wb = engine.batch();
    for s in &stores {
        wb.put(CF_REGION_META, &keys::store_info_key(s.id), &s.encode_to_vec())?;
    }
    PeerStorage::write_initial_state(&mut wb, &meta_region)?;
    PeerStorage::write_initial_state(&mut wb, &region)?;
    MetaState::write_initial(&mut wb, &store_metas, &[RegionInfo { region: Some(region), ..Default::default() }], 2 * n + 1)?;
    wb.put(CF_REGION_META, keys::STORE_IDENT_KEY, &ident.encode_to_vec())?;
    engine.write(wb, true)?;
    tracing::info!(store_id = ident.store_id, cluster_id = ident.cluster_id, "bootstrapped a new store");
    Ok(ident)
}

/// Records the identity a joining store got from the cluster, and the cluster's
/// stores, in one synced batch. The store holds no region yet.
pub fn write_joined(engine: &Engine, ident: &StoreIdent, stores: &[StoreInfo]) -> Result<()> {
    let mut wb = engine.batch();
    for s in stores {
        wb.put(CF_REGION_META, &keys::store_info_key(s.id), &s.encode_to_vec())?;
    }
    wb.put(CF_REGION_META, keys::STORE_IDENT_KEY, &ident.encode_to_vec())?;
    engine.write(wb, true)?;
    Ok(())
}

/// The instance token this store registers with: the one already recorded,
/// or a new random one (16 bytes, hex), recorded synced before it is returned.
pub fn join_token(engine: &Engine) -> Result<String> {
    if let Some(token) = load_join_token(engine)? {
        return Ok(token);
    }
    let token: String = rand::random::<[u8; 16]>().iter().map(|b| format!("{b:02x}")).collect();
    let mut wb = engine.batch();
    wb.put(CF_REGION_META, keys::JOIN_TOKEN_KEY, token.as_bytes())?;
    engine.write(wb, true)?;
    Ok(token)
}

/// Reads the instance token this store registered with, if it has one.
pub fn load_join_token(engine: &Engine) -> Result<Option<String>> {
    match engine.get(CF_REGION_META, keys::JOIN_TOKEN_KEY)? {
        Some(b) => Ok(Some(String::from_utf8(b).map_err(|e| Error::Internal(format!("corrupt join token: {e}")))?)),
        None => Ok(None),
    }
}

/// A cluster id every initial member derives alike: FNV-1a of the member list.
fn cluster_id(members: &[InitialMember]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for m in members {
        for b in m.name.bytes().chain([b'=']).chain(m.addr.bytes()).chain([b',']) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> Vec<InitialMember> {
        ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, n)| InitialMember { name: n.to_string(), addr: format!("127.0.0.1:{}", 5000 + i) })
            .collect()
    }

    #[test]
    fn bootstraps_once_and_every_member_agrees_on_the_layout() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path(), &[]).unwrap();
        let ident = bootstrap_or_load(&engine, "b", &members()).unwrap();
        assert_eq!(ident.store_id, 2);
        let other = tempfile::tempdir().unwrap();
        let other_engine = Engine::open(other.path(), &[]).unwrap();
        assert_eq!(bootstrap_or_load(&other_engine, "c", &members()).unwrap().cluster_id, ident.cluster_id);

        // A second start with a different member list keeps the first identity.
        let again = bootstrap_or_load(&engine, "b", &members()[1..]).unwrap();
        assert_eq!(again, ident);
        assert_eq!(load_stores(&engine).unwrap().len(), 3);
        let region = PeerStorage::region_state(&other_engine, FIRST_REGION_ID).unwrap().unwrap().region.unwrap();
        assert_eq!(region.peers.iter().map(|p| p.store_id).collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    #[test]
    fn refuses_a_name_outside_the_cluster_and_a_foreign_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path(), &[]).unwrap();
        assert!(matches!(bootstrap_or_load(&engine, "z", &members()), Err(Error::InvalidArgument(_))));
        assert_eq!(load_ident(&engine).unwrap(), None, "a refused bootstrap writes nothing");
        bootstrap_or_load(&engine, "a", &members()).unwrap();
        assert!(matches!(bootstrap_or_load(&engine, "b", &members()), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn the_join_token_is_made_once_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let token = {
            let engine = Engine::open(dir.path(), &[]).unwrap();
            assert_eq!(load_join_token(&engine).unwrap(), None);
            let token = join_token(&engine).unwrap();
            assert_eq!(token.len(), 32);
            assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
            assert_eq!(join_token(&engine).unwrap(), token, "an existing token is reused");
            token
        };
        let engine = Engine::open(dir.path(), &[]).unwrap();
        assert_eq!(join_token(&engine).unwrap(), token, "a crash before the identity is written keeps the token");
        let other = tempfile::tempdir().unwrap();
        assert_ne!(join_token(&Engine::open(other.path(), &[]).unwrap()).unwrap(), token, "another data directory, another token");
    }
}
