//! How a leader sees its followers' progress: which peers are not caught up
//! (the store reports them to placement), whether one of those has caught up
//! since (so placement hears of it at once rather than a heartbeat later: a
//! seeded learner is promoted, the next one ordered), sending a snapshot the
//! moment it is generated to the followers waiting for one, and a one-line
//! summary for diagnostics.

use raft::ProgressState;

use super::Peer;

impl Peer {
    /// For diagnostics: this peer's id, term, role, leader and log, then how
    /// it sees each peer of its configuration: `peer:state matched/next` with
    /// `snap@N` while a snapshot is pending, `inactive` when not recently heard
    /// from, `paused` when probing is paused (meaningful on a leader).
    pub fn progress_summary(&self) -> String {
        let r = &self.raw_node.raft;
        let me = format!(
            "peer {} term {} {:?} leader {} vote {} commit {} last {}",
            r.id,
            r.term,
            r.state,
            r.leader_id,
            r.vote,
            r.raft_log.committed,
            r.raft_log.last_index()
        );
        let mut out: Vec<String> = self
            .raw_node
            .raft
            .prs()
            .iter()
            .map(|(id, pr)| {
                let mut s = format!("{id}:{:?} {}/{}", pr.state, pr.matched, pr.next_idx);
                if pr.pending_snapshot != 0 {
                    s += &format!(" snap@{}", pr.pending_snapshot);
                }
                if !pr.recent_active {
                    s += " inactive";
                }
                if pr.is_paused() {
                    s += " paused";
                }
                s
            })
            .collect();
        out.sort();
        format!("{me}: {}", out.join(", "))
    }

    /// Peers (other than this leader) not caught up: waiting for a snapshot,
    /// behind the start of the leader's log, or probing with entries still to
    /// get. (A peer that has matched the whole log may stay probing in an idle
    /// region: raft-rs leaves it so when its answer to a snapshot arrives
    /// before the snapshot's send is reported.) Empty unless leading.
    pub fn pending_peers(&self) -> Vec<u64> {
        self.pending_among(None)
    }

    /// [`Self::pending_peers`], remembered as the ones reported to placement.
    pub fn report_pending_peers(&mut self) -> Vec<u64> {
        self.reported_pending = self.pending_peers();
        self.reported_pending.clone()
    }

    /// Whether a peer last reported pending has caught up since (each such
    /// peer is told once). Costs nothing unless a report listed some.
    pub fn caught_up_since_report(&mut self) -> bool {
        if self.reported_pending.is_empty() {
            return false;
        }
        if !self.is_leader() {
            self.reported_pending.clear();
            return false;
        }
        let still = self.pending_among(Some(&self.reported_pending));
        let caught_up = still.len() < self.reported_pending.len();
        self.reported_pending = still;
        caught_up
    }

    /// A leader sends a snapshot to each follower that needs one (probing
    /// from before the start of the log): raft-rs asks storage for it again.
    pub fn send_waiting_snapshots(&mut self) {
        if !self.is_leader() {
            return;
        }
        let truncated = self.raw_node.store().truncated_index();
        let me = self.peer_id();
        let waiting: Vec<u64> = self
            .raw_node
            .raft
            .prs()
            .iter()
            .filter(|(id, pr)| **id != me && pr.state == ProgressState::Probe && pr.next_idx <= truncated)
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.raw_node.raft.send_append(id);
        }
    }

    /// The pending peers, of `among` only when given.
    fn pending_among(&self, among: Option<&[u64]>) -> Vec<u64> {
        if !self.is_leader() {
            return vec![];
        }
        let truncated = self.raw_node.store().truncated_index();
        let last = self.raw_node.raft.raft_log.last_index();
        let me = self.peer_id();
        self.raw_node
            .raft
            .prs()
            .iter()
            .filter(|(id, pr)| {
                **id != me
                    && among.is_none_or(|a| a.contains(id))
                    && (pr.state == ProgressState::Snapshot
                        || pr.matched < truncated
                        || (pr.state == ProgressState::Probe && pr.matched < last))
            })
            .map(|(id, _)| *id)
            .collect()
    }
}
