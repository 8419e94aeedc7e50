//! Membership changes. They are Raft `ConfChangeV2` entries whose context is
//! a [`ChangePeersCmd`]: adding a learner, promoting a learner (through joint
//! consensus, left automatically), removing a peer. The leader refuses one
//! while another is in flight, when its epoch is stale, or when the new
//! configuration could not reach a quorum of peers it hears from; every
//! replica refuses one whose epoch moved on. Applying one updates the
//! descriptor's peers and `conf_ver` and Raft's `ConfState` together. A peer
//! that finds itself out of the configuration asks the store to destroy it
//! ([`super::Completions::destroys`]).

use std::collections::HashSet;

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState, Entry};
use shoal_proto::{ChangePeersCmd, Peer as PeerMeta, PeerChangeType};

use super::{CmdResult, Completions, Peer, WriteCallback};
use crate::error::{Error, Result};
use crate::storage::WriteBatch;

impl Peer {
    /// Proposes the membership change `cmd`; `cb` is answered once it is applied.
    /// Refused at once (nothing proposed) when this peer does not lead, another
    /// change is in flight, the epoch is stale, the changes do not fit the
    /// region, or the new configuration could not reach a quorum.
    pub fn propose_conf_change(&mut self, cmd: ChangePeersCmd, cb: WriteCallback) {
        if let Err(e) = self.check_can_propose() {
            let _ = cb.send(Err(e));
            return;
        }
        let cc = match self.check_conf_change(&cmd) {
            Ok(cc) => cc,
            Err(e) => {
                let _ = cb.send(Err(e));
                return;
            }
        };
        self.wake();
        match self.raw_node.propose_conf_change(cmd.encode_to_vec(), cc) {
            Ok(()) => self.track_proposal(cb),
            Err(e) => {
                let _ = cb.send(Err(Error::Unavailable(format!("region {}: membership change not proposed: {e}", self.region_id()))));
            }
        }
    }

    /// Checks `cmd` against the region and the peers this leader hears from;
    /// returns the Raft change to propose.
    fn check_conf_change(&self, cmd: &ChangePeersCmd) -> Result<ConfChangeV2> {
        let region = self.region();
        if cmd.region_id != region.id {
            return Err(Error::RegionNotFound(vec![]));
        }
        if cmd.epoch != region.epoch {
            return Err(Error::EpochNotMatch(
                format!("membership change planned under {:?}, region has {:?}", cmd.epoch, region.epoch),
                vec![region.clone()],
            ));
        }
        let raft = &self.raw_node.raft;
        let conf = self.raw_node.store().conf_state();
        if raft.has_pending_conf() || !conf.voters_outgoing.is_empty() {
            return Err(Error::Unavailable(format!("region {}: a membership change is already in progress", region.id)));
        }
        if cmd.changes.is_empty() {
            return Err(Error::InvalidArgument("a membership change needs at least one change".into()));
        }
        let mut voters: HashSet<u64> = conf.voters.iter().copied().collect();
        let mut changes = Vec::new();
        let mut seen = HashSet::new();
        for c in &cmd.changes {
            let peer = c.peer.ok_or_else(|| Error::InvalidArgument("a peer change names no peer".into()))?;
            if peer.id == 0 || peer.store_id == 0 || !seen.insert(peer.id) {
                return Err(Error::InvalidArgument(format!("bad peer {peer:?} in a membership change")));
            }
            let existing = region.peers.iter().find(|p| p.id == peer.id);
            let mut single = ConfChangeSingle { node_id: peer.id, ..Default::default() };
            match c.change_type() {
                PeerChangeType::AddLearner => {
                    if existing.is_some() || region.peers.iter().any(|p| p.store_id == peer.store_id) {
                        return Err(Error::InvalidArgument(format!(
                            "store {} already holds a peer of region {}",
                            peer.store_id, region.id
                        )));
                    }
                    single.set_change_type(ConfChangeType::AddLearnerNode);
                }
                PeerChangeType::PromoteLearner => {
                    if !existing.is_some_and(|p| p.is_learner && p.store_id == peer.store_id) {
                        return Err(Error::InvalidArgument(format!("peer {} is not a learner of region {}", peer.id, region.id)));
                    }
                    voters.insert(peer.id);
                    single.set_change_type(ConfChangeType::AddNode);
                }
                PeerChangeType::RemovePeer => {
                    if existing.is_none_or(|p| p.store_id != peer.store_id) {
                        return Err(Error::InvalidArgument(format!("peer {} is not in region {}", peer.id, region.id)));
                    }
                    if peer.id == self.peer_id() {
                        return Err(Error::InvalidArgument(format!(
                            "peer {} leads region {}: transfer leadership before removing it",
                            peer.id, region.id
                        )));
                    }
                    voters.remove(&peer.id);
                    single.set_change_type(ConfChangeType::RemoveNode);
                }
            }
            changes.push(single);
        }
        // The new voters must reach a quorum among peers this leader hears from
        // (itself, and peers it got a message from within the last election timeout).
        let healthy = voters.iter().filter(|id| self.recently_heard(**id)).count();
        if voters.is_empty() || healthy < voters.len() / 2 + 1 {
            return Err(Error::Unavailable(format!(
                "region {}: refused, the new configuration would have {healthy} reachable voters of {} (quorum {})",
                region.id,
                voters.len(),
                voters.len() / 2 + 1
            )));
        }
        let mut cc = ConfChangeV2::default();
        let joint = changes.len() > 1 || cmd.changes.iter().any(|c| c.change_type() == PeerChangeType::PromoteLearner);
        cc.set_transition(if joint { ConfChangeTransition::Implicit } else { ConfChangeTransition::Auto });
        cc.set_changes(changes.into());
        Ok(cc)
    }

    /// Applies a committed membership change: Raft's configuration, the
    /// descriptor's peers and `conf_ver`, in `wb`. The automatic "leave joint"
    /// entry carries no command. A change whose epoch moved on is refused.
    pub(super) fn apply_conf_change(
        &mut self,
        entry: &Entry,
        wb: &mut WriteBatch<'_>,
        done: &mut Completions,
    ) -> Result<Result<CmdResult>> {
        let cc = match ConfChangeV2::parse_from_bytes(&entry.data) {
            Ok(cc) => cc,
            Err(e) => return Ok(Err(Error::Internal(format!("undecodable conf change: {e}")))),
        };
        let mut region = self.region().clone();
        // raft-rs carries a proposal's context in the entry, not in the change.
        let context = if entry.context.is_empty() { cc.get_context() } else { &entry.context[..] };
        if !context.is_empty() {
            let cmd = match ChangePeersCmd::decode(context) {
                Ok(cmd) => cmd,
                Err(e) => return Ok(Err(Error::Internal(format!("undecodable membership change: {e}")))),
            };
            if cmd.region_id != region.id || cmd.epoch != region.epoch {
                return Ok(Err(Error::EpochNotMatch(
                    format!("membership change under {:?}, region has {:?}", cmd.epoch, region.epoch),
                    vec![region],
                )));
            }
            for c in &cmd.changes {
                let Some(peer) = c.peer else { continue };
                match c.change_type() {
                    PeerChangeType::AddLearner => region.peers.push(PeerMeta { is_learner: true, ..peer }),
                    PeerChangeType::PromoteLearner => {
                        region.peers.iter_mut().filter(|p| p.id == peer.id).for_each(|p| p.is_learner = false)
                    }
                    PeerChangeType::RemovePeer => region.peers.retain(|p| p.id != peer.id),
                }
                self.peer_stores.insert(peer.id, peer.store_id);
            }
        }
        let conf_state: ConfState = self.raw_node.apply_conf_change(&cc)?;
        // The descriptor lists exactly Raft's members: a voter leaving through
        // joint consensus stays (as a voter) until the joint state is left, so
        // that its store can still load its peer if it restarts meanwhile.
        let in_conf =
            |id: u64| conf_state.voters.contains(&id) || conf_state.voters_outgoing.contains(&id) || conf_state.learners.contains(&id);
        let outgoing: Vec<PeerMeta> =
            self.region().peers.iter().filter(|p| in_conf(p.id) && !region.peers.iter().any(|q| q.id == p.id)).copied().collect();
        region.peers.extend(outgoing);
        region.peers.retain(|p| in_conf(p.id));
        if let Some(epoch) = region.epoch.as_mut() {
            epoch.conf_ver += 1;
        }
        let me = self.peer_id();
        let member = conf_state.voters.contains(&me) || conf_state.voters_outgoing.contains(&me) || conf_state.learners.contains(&me);
        tracing::info!(region = region.id, voters = ?conf_state.voters, outgoing = ?conf_state.voters_outgoing, learners = ?conf_state.learners, "membership changed");
        self.raw_node.mut_store().set_region_and_conf(region.clone(), conf_state, wb)?;
        done.membership_changed = true;
        if !member {
            done.destroys.push((region.id, me));
        }
        Ok(Ok(CmdResult::ConfChanged(region)))
    }
}
