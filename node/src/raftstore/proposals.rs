//! [`Proposals`]: the writes a peer proposed, waiting for the fate of their entries.
//!
//! A proposal waits under the (index, term) its entry got in the leader's log.
//! Its answer depends only on what this peer later learns about that index:
//!
//! - the entry applied at the index has the same term: it is the proposal's own
//!   entry, and the proposal gets the applied command's result;
//! - it has another term: a different entry was committed at that index, so the
//!   proposal's entry never will be — `StaleCommand`, safe to retry;
//! - a snapshot covers the index: this peer never sees the entry, so whether the
//!   proposal was committed (by a later leader, say) is unknown —
//!   `OutcomeUnknown`, which a client must not retry blindly;
//! - the peer goes away (shutdown, removal): also `OutcomeUnknown`.
//!
//! A newer proposal at an index an older one already holds (the leader lost its
//! term, its log was cut back, and it leads again) does not answer the older
//! one: raft may still commit the older entry through a later leader that has
//! it, so only what is applied at that index decides. The queue is ordered by
//! (index, term).

use std::collections::VecDeque;

use super::peer::{CmdResult, WriteCallback};
use crate::error::{Error, Result};

struct Proposal {
    index: u64,
    term: u64,
    cb: WriteCallback,
}

/// Waiting proposals, ordered by (index, term).
#[derive(Default)]
pub struct Proposals {
    queue: VecDeque<Proposal>,
}

/// An answer for a proposer, delivered once the round's writes are on disk.
pub type Answer = (WriteCallback, Result<CmdResult>);

impl Proposals {
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Waits on entry (`index`, `term`) for `cb`.
    pub fn track(&mut self, index: u64, term: u64, cb: WriteCallback) {
        let at = self.queue.partition_point(|p| (p.index, p.term) <= (index, term));
        self.queue.insert(at, Proposal { index, term, cb });
    }

    /// The entry (`index`, `term`) was applied with `result`: answers every
    /// proposal at or below `index` (those below were covered by earlier entries
    /// and can only be stale).
    pub fn applied(&mut self, index: u64, term: u64, result: Result<CmdResult>, out: &mut Vec<Answer>) {
        let mut result = Some(result);
        while self.queue.front().is_some_and(|p| p.index <= index) {
            let Some(p) = self.queue.pop_front() else { break };
            let outcome = match result.take() {
                Some(r) if p.index == index && p.term == term => r,
                taken => {
                    result = taken;
                    Err(Error::StaleCommand(format!(
                        "entry {} of term {} was replaced: index {index} holds an entry of term {term}",
                        p.index, p.term
                    )))
                }
            };
            out.push((p.cb, outcome));
        }
    }

    /// A snapshot up to `index` was applied: the proposals it covers get
    /// `OutcomeUnknown` (see the module docs).
    pub fn covered_by_snapshot(&mut self, index: u64, out: &mut Vec<Answer>) {
        while self.queue.front().is_some_and(|p| p.index <= index) {
            let Some(p) = self.queue.pop_front() else { break };
            let why = format!("entry {} of term {} is covered by a snapshot at index {index}; it may have been applied", p.index, p.term);
            out.push((p.cb, Err(Error::OutcomeUnknown(why))));
        }
    }

    /// Answers every proposal `OutcomeUnknown`: the peer stops waiting, but the
    /// other replicas may still commit the entries.
    pub fn fail_all(&mut self, why: &str) {
        for p in self.queue.drain(..) {
            let _ = p.cb.send(Err(Error::OutcomeUnknown(why.to_string())));
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;

    type Rx = oneshot::Receiver<Result<CmdResult>>;

    fn track(ps: &mut Proposals, index: u64, term: u64) -> Rx {
        let (tx, rx) = oneshot::channel();
        ps.track(index, term, tx);
        rx
    }

    fn fire(out: Vec<Answer>) {
        for (cb, r) in out {
            let _ = cb.send(r);
        }
    }

    fn answer(rx: &mut Rx) -> Option<Result<CmdResult>> {
        rx.try_recv().ok()
    }

    #[test]
    fn its_own_entry_answers_with_the_result_and_another_term_is_stale() {
        let mut ps = Proposals::default();
        let (mut a, mut b) = (track(&mut ps, 5, 2), track(&mut ps, 6, 2));
        let mut out = Vec::new();
        ps.applied(5, 2, Ok(CmdResult::Written), &mut out);
        ps.applied(6, 3, Ok(CmdResult::Written), &mut out);
        fire(out);
        assert!(matches!(answer(&mut a), Some(Ok(CmdResult::Written))));
        assert!(matches!(answer(&mut b), Some(Err(Error::StaleCommand(_)))), "index 6 holds term 3, not the proposal's 2");
        assert!(ps.is_empty());
    }

    #[test]
    fn a_newer_proposal_at_the_same_index_leaves_the_older_waiting_for_what_commits() {
        // The leader of term 2 proposed at 7, lost leadership, its log was cut
        // back, and it leads again in term 4 and proposes at 7 again. A leader of
        // term 3 that kept (7, 2) may still have committed it.
        let mut ps = Proposals::default();
        let mut old = track(&mut ps, 7, 2);
        let mut new = track(&mut ps, 7, 4);
        assert!(answer(&mut old).is_none(), "tracking a newer proposal must not answer the older one");
        assert_eq!(ps.len(), 2);
        let mut out = Vec::new();
        ps.applied(7, 2, Ok(CmdResult::Written), &mut out);
        fire(out);
        assert!(matches!(answer(&mut old), Some(Ok(CmdResult::Written))), "the older entry was committed after all");
        assert!(matches!(answer(&mut new), Some(Err(Error::StaleCommand(_)))));
    }

    #[test]
    fn the_newer_of_two_at_one_index_gets_the_result_when_its_term_commits() {
        let mut ps = Proposals::default();
        let mut old = track(&mut ps, 7, 2);
        let mut new = track(&mut ps, 7, 4);
        let mut later = track(&mut ps, 8, 4);
        let mut out = Vec::new();
        ps.applied(7, 4, Ok(CmdResult::Written), &mut out);
        fire(out);
        assert!(matches!(answer(&mut old), Some(Err(Error::StaleCommand(_)))));
        assert!(matches!(answer(&mut new), Some(Ok(CmdResult::Written))));
        assert!(answer(&mut later).is_none(), "index 8 is not applied yet");
    }

    #[test]
    fn proposals_a_snapshot_covers_have_an_unknown_outcome() {
        let mut ps = Proposals::default();
        let mut covered = track(&mut ps, 10, 2);
        let mut after = track(&mut ps, 12, 2);
        let mut out = Vec::new();
        ps.covered_by_snapshot(11, &mut out);
        fire(out);
        assert!(matches!(answer(&mut covered), Some(Err(Error::OutcomeUnknown(_)))), "never StaleCommand: it may have been applied");
        assert!(answer(&mut after).is_none());
        let mut out = Vec::new();
        ps.applied(12, 2, Ok(CmdResult::Written), &mut out);
        fire(out);
        assert!(matches!(answer(&mut after), Some(Ok(CmdResult::Written))));
    }

    #[test]
    fn failing_all_reports_unknown_outcomes() {
        let mut ps = Proposals::default();
        let mut a = track(&mut ps, 3, 1);
        ps.fail_all("stopping");
        assert!(matches!(answer(&mut a), Some(Err(Error::OutcomeUnknown(_)))));
        assert!(ps.is_empty());
    }
}
