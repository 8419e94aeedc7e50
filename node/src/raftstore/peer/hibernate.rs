//! Hibernation: an idle region stops ticking, so that a store with thousands
//! of regions spends nothing on those without work (TiKV's hibernate regions).
//!
//! At each tick a leader checks whether its region is *quiet* ([`Peer::is_quiet`]:
//! no backup fence to lift in time, nothing proposed, read or applying, no
//! membership change or leader transfer under way, every entry committed and
//! applied, every peer matched and heard from, and every peer's store alive).
//! If it is, it asks to sleep at once: the heartbeats that tick sends, or a
//! ping if it sends none, are marked `hibernate` by [`Peer::send_messages`],
//! and once they are sent the leader is [`Hibernation::Asleep`]. A follower
//! that steps a `hibernate` heartbeat from its leader falls asleep too (the
//! heartbeat also brings it the commit index, which data regions do not
//! broadcast on their own), and does not answer it
//! ([`Peer::answer_unneeded`]); one still applying a snapshot or short of
//! committed entries sleeps at its first tick that is not
//! ([`Peer::maybe_sleep_as_told`]). An asleep peer is not ticked: no heartbeats,
//! no election timer.
//!
//! Anything that gives the region work wakes it ([`Peer::wake`]): a proposal, a
//! read, a membership change, a leader transfer, a snapshot report, or any Raft
//! message other than a hibernating heartbeat or a heartbeat's answer from a
//! caught-up follower. Whatever woke a leader makes it message its followers
//! (an append, a ReadIndex heartbeat, a vote), and that wakes them.
//!
//! Sleeping early is cheap and staying awake is not: an awake region sends a
//! heartbeat round every heartbeat interval, so with writes spread over
//! thousands of regions most of the Raft traffic would be idle heartbeats. A
//! region written once in a while thus costs one heartbeat per follower per
//! write, the one that puts it back to sleep (6 Raft messages a write in all,
//! with a 3-replica region: `node/tests/hibernate.rs` asserts it).
//!
//! A sleeping follower does not notice its leader die, since it runs no election
//! timer. The store does, through [`crate::raftstore::liveness`]: every store
//! pings its neighbours each tick, and when one falls silent for an election
//! timeout the store wakes the followers whose leader was there, and the
//! leaders of regions with a peer there ([`Peer::wakes_for_silent_store`]);
//! the followers then elect as usual, and a cut-off leader steps down by
//! check-quorum. A follower whose leader is elsewhere sleeps on.

use raft::prelude::{Message, MessageType};

use super::Peer;
use crate::meta::META_REGION_ID;

/// Whether a peer ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hibernation {
    /// Ticking.
    Awake,
    /// A leader whose next heartbeats tell its followers to sleep.
    Asking,
    /// Not ticking until something wakes it.
    Asleep,
}

impl Peer {
    pub fn is_asleep(&self) -> bool {
        self.hibernation == Hibernation::Asleep
    }

    pub fn is_awake(&self) -> bool {
        self.hibernation == Hibernation::Awake
    }

    /// Wakes this peer (see the module header).
    pub fn wake(&mut self) {
        self.hibernation = Hibernation::Awake;
        self.told_to_sleep = false;
    }

    /// Whether this (asleep) peer wakes when its store finds `store` silent
    /// ([`crate::raftstore::liveness`]). A leader does if a peer of its region
    /// is there: awake, it heartbeats until that store is heard again. A
    /// follower does only if its leader was there, or it knows none: it must
    /// elect another. A follower whose leader is elsewhere stays asleep, or it
    /// would tick, hear nothing from its asleep leader, and depose it; its
    /// store may be the only one that misses `store` (a joining store talks
    /// only to the leader's until its first snapshot is applied).
    pub fn wakes_for_silent_store(&self, store: u64) -> bool {
        if self.is_leader() {
            return self.region().peers.iter().any(|p| p.store_id == store);
        }
        self.leader().is_none_or(|l| l.store_id == store)
    }

    /// After a tick: a leader whose region was `quiet` when the tick began asks
    /// it to sleep (a region of one voter and no learner sleeps at once). If
    /// the tick itself broadcast heartbeats, those carry the request; otherwise
    /// it pings.
    pub(super) fn maybe_hibernate(&mut self, quiet: bool) {
        if !quiet || !self.is_leader() {
            return;
        }
        let raft = &self.raw_node.raft;
        if raft.prs().iter().count() == 1 {
            self.hibernation = Hibernation::Asleep;
            return;
        }
        self.hibernation = Hibernation::Asking;
        if !raft.msgs.iter().any(|m| m.get_msg_type() == MessageType::MsgHeartbeat) {
            self.raw_node.ping();
        }
    }

    /// Whether this peer leads a region with nothing to do. The meta group never
    /// sleeps: it is one region, which every store calls each second.
    pub(super) fn is_quiet(&self) -> bool {
        let raft = &self.raw_node.raft;
        let last = raft.raft_log.last_index();
        self.is_leader()
            && self.region_id() != META_REGION_ID
            && self.backup_fence().is_empty()
            && self.proposals.is_empty()
            && self.queued_reads.is_empty()
            && self.inflight_reads.is_empty()
            && self.ready_reads.is_empty()
            && raft.read_only.pending_read_count() == 0
            && !self.is_applying()
            && !self.in_joint()
            && raft.lead_transferee.is_none()
            && raft.pending_conf_index <= self.applied_index()
            && raft.raft_log.committed == last
            && self.applied_index() == last
            && !self.raw_node.has_ready()
            && raft.prs().iter().all(|(id, pr)| pr.matched == last && self.recently_heard(*id))
    }

    /// Wraps a heartbeat for the transport: while asking to sleep, it carries
    /// `hibernate`, and sending it puts the leader to sleep.
    pub(super) fn hibernate_flag(&mut self, m: &Message) -> bool {
        if self.hibernation == Hibernation::Asking && m.get_msg_type() == MessageType::MsgHeartbeat {
            self.asked_to_sleep = true;
            return true;
        }
        false
    }

    /// Whether `m` goes unsent: a follower put to sleep by a hibernating
    /// heartbeat does not answer it. Its leader asked to sleep only once every
    /// follower had the whole log, and is asleep by now: the answer would tell
    /// it nothing (and reach it only to be stepped and dropped). An answer
    /// carrying a read's context always goes.
    pub(super) fn answer_unneeded(&self, m: &Message) -> bool {
        self.is_asleep() && m.get_msg_type() == MessageType::MsgHeartbeatResponse && m.get_context().is_empty()
    }

    /// After a round of sending: a leader whose hibernating heartbeats went out sleeps.
    pub(super) fn after_send(&mut self) {
        if std::mem::take(&mut self.asked_to_sleep) && self.hibernation == Hibernation::Asking {
            self.hibernation = Hibernation::Asleep;
        }
    }

    /// Before stepping `m`: whether it wakes this peer. A heartbeat's answer
    /// does not, from a follower that has the whole log (an asleep leader's
    /// last heartbeats are answered after it fell asleep); nor does a
    /// hibernating heartbeat (see [`Self::after_step`]).
    pub(super) fn wakes(&self, m: &Message, hibernate: bool) -> bool {
        match m.get_msg_type() {
            MessageType::MsgHeartbeat => !hibernate,
            MessageType::MsgHeartbeatResponse => {
                self.raw_node.raft.prs().get(m.from).is_none_or(|pr| pr.matched < self.raw_node.raft.raft_log.last_index())
            }
            _ => true,
        }
    }

    /// After stepping `m`: a follower told by its leader to sleep does so,
    /// unless it waits on something.
    pub(super) fn after_step(&mut self, m_type: MessageType, from: u64, hibernate: bool) {
        if hibernate && m_type == MessageType::MsgHeartbeat && !self.is_leader() && from == self.raw_node.raft.leader_id {
            self.told_to_sleep = true;
            self.maybe_sleep_as_told();
        }
    }

    /// A follower its leader told to sleep does so once it waits on nothing:
    /// no snapshot going in, every entry it holds committed. Until then it
    /// ticks; its leader, asleep, sends nothing that would tell it again (a
    /// learner seeded by snapshot went on ticking while its region slept).
    pub(super) fn maybe_sleep_as_told(&mut self) {
        if self.told_to_sleep
            && !self.is_leader()
            && !self.is_applying()
            && self.raw_node.raft.raft_log.committed == self.raw_node.raft.raft_log.last_index()
        {
            self.told_to_sleep = false;
            self.hibernation = Hibernation::Asleep;
        }
    }
}
