//! Idle peers: a store reports peers that have heard from no leader for a
//! while. One whose region has moved on without it (the directory has a newer
//! epoch and no longer lists the peer) was removed while its store was away:
//! it should be destroyed. A peer still listed, or of a region the directory
//! does not know, is left alone.

use shoal_proto::{IdlePeer, Region, RegionEpoch};

/// A peer to destroy: its region, the (stale) epoch it has, and its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StalePeer {
    pub region_id: u64,
    pub epoch: RegionEpoch,
    pub peer_id: u64,
}

/// The idle peers that are no longer members of their region; `known` looks a
/// region up in the directory (the meta region included).
pub fn stale_peers<'a>(idle: &[IdlePeer], known: impl Fn(u64) -> Option<&'a Region>) -> Vec<StalePeer> {
    idle.iter()
        .filter_map(|p| {
            let reported = p.region.as_ref()?;
            let current = known(reported.id)?;
            let (old, new) = (reported.epoch.unwrap_or_default(), current.epoch.unwrap_or_default());
            let newer = new.conf_ver > old.conf_ver || new.version > old.version;
            let member = current.peers.iter().any(|x| x.id == p.peer_id);
            (newer && !member).then_some(StalePeer { region_id: reported.id, epoch: old, peer_id: p.peer_id })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use shoal_proto::Peer;

    use super::*;

    fn region(id: u64, conf_ver: u64, version: u64, peers: &[u64]) -> Region {
        Region {
            id,
            epoch: Some(RegionEpoch { conf_ver, version }),
            peers: peers.iter().map(|p| Peer { id: *p, store_id: *p, is_learner: false }).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn only_peers_the_region_moved_on_without_are_stale() {
        let directory = [region(5, 4, 2, &[1, 2, 3]), region(6, 1, 3, &[1, 2, 9])];
        let known = |id: u64| directory.iter().find(|r| r.id == id);
        let idle = vec![
            // Removed: newer conf_ver, not listed.
            IdlePeer { region: Some(region(5, 3, 2, &[1, 2, 3, 9])), peer_id: 9 },
            // Still a member (a newer epoch but listed).
            IdlePeer { region: Some(region(6, 1, 2, &[1, 2, 9])), peer_id: 9 },
            // Unknown region.
            IdlePeer { region: Some(region(7, 1, 1, &[9])), peer_id: 9 },
            // Same epoch as the directory: nothing proves it was removed.
            IdlePeer { region: Some(region(5, 4, 2, &[1, 2, 3])), peer_id: 8 },
        ];
        assert_eq!(stale_peers(&idle, known), vec![StalePeer { region_id: 5, epoch: RegionEpoch { conf_ver: 3, version: 2 }, peer_id: 9 }]);
    }
}
