//! Log GC, snapshots and membership changes on real stores (RocksDB, raft-rs,
//! the snapshot manager's files) wired by the in-memory network of `common`.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use shoal_node::error::Error;
use shoal_node::raftstore::bootstrap::FIRST_REGION_ID;
use shoal_node::raftstore::peer::CmdResult;
use shoal_proto::{ChangePeersCmd, PeerChangeType};
use tokio::sync::oneshot;

const R: u64 = FIRST_REGION_ID;

fn voters(region: &shoal_proto::Region) -> Vec<u64> {
    let mut v: Vec<u64> = region.peers.iter().filter(|p| !p.is_learner).map(|p| p.store_id).collect();
    v.sort_unstable();
    v
}

#[test]
fn log_gc_truncates_and_a_lagging_follower_catches_up_by_snapshot() {
    let mut c = Cluster::with_log_gc(3, 50);
    let leader = c.wait_leader(R);
    let lagging = (1..=3).find(|s| *s != leader && !c.leaders(1).contains(s)).unwrap();
    c.crash(lagging);
    write_keys(&mut c, leader, 0..300);
    c.tick(30); // three GC passes
    assert!(c.store(leader).metrics().raft_log_gc.get() > 0, "the leader never truncated its log");
    let first_log_key = shoal_node::keys::raft_log_key(R, 7);
    assert_eq!(c.store(leader).engine().get("raft_log", &first_log_key).unwrap(), None, "truncated entries are deleted");

    c.restart(lagging);
    let target = c.applied(leader, R);
    c.tick_until("the restarted follower to catch up", |c| c.applied(lagging, R) >= target);
    assert!(c.snapshots_delivered > 0, "the follower caught up without a snapshot");
    for i in 0..300 {
        assert_eq!(c.value(lagging, &format!("k{i:05}")), Some(format!("v{i}")), "key {i} on the restarted follower");
    }
    // It keeps replicating by log afterwards, and survives a restart.
    write_keys(&mut c, leader, 300..310);
    c.crash(lagging);
    c.restart(lagging);
    let target = c.applied(leader, R);
    c.tick_until("the follower to apply after restart", |c| c.applied(lagging, R) >= target);
    assert_eq!(c.value(lagging, "k00309"), Some("v309".into()));
}

#[test]
fn a_new_store_is_seeded_as_learner_then_replaces_a_voter_through_joint_consensus() {
    let mut c = Cluster::with_log_gc(3, 20);
    let leader = c.wait_leader(R);
    write_keys(&mut c, leader, 0..100);
    c.tick(20);
    let new_store = c.add_empty_store();
    let learner_id = 1000;
    let rx = propose_change(&mut c, leader, vec![change(PeerChangeType::AddLearner, learner_id, new_store)]);
    c.settle();
    let region = match answer(rx).unwrap() {
        CmdResult::ConfChanged(r) => r,
        other => panic!("unexpected answer {other:?}"),
    };
    assert!(region.peers.iter().any(|p| p.id == learner_id && p.is_learner));
    assert_eq!(region.epoch.unwrap().conf_ver, 2, "conf_ver moves with each change");

    c.tick_until("the learner to be seeded", |c| {
        c.region(new_store, R).is_some_and(|r| r.epoch.is_some()) && c.value(new_store, "k00099").is_some()
    });
    assert!(c.snapshots_delivered > 0);
    assert_eq!(c.value(new_store, "k00000"), Some("v0".into()));

    // Replace a follower by the learner in one joint change.
    let removed = (1..=3).find(|s| *s != leader).unwrap();
    let removed_peer = c.region(leader, R).unwrap().peers.iter().find(|p| p.store_id == removed).unwrap().id;
    let rx = propose_change(
        &mut c,
        leader,
        vec![change(PeerChangeType::PromoteLearner, learner_id, new_store), change(PeerChangeType::RemovePeer, removed_peer, removed)],
    );
    c.settle();
    assert!(matches!(answer(rx), Ok(CmdResult::ConfChanged(_))));
    // The joint configuration is left automatically.
    c.tick_until("the joint configuration to be left", |c| c.region(leader, R).unwrap().epoch.unwrap().conf_ver == 4);
    let mut expected: Vec<u64> = (1..=3).filter(|s| *s != removed).chain([new_store]).collect();
    expected.sort_unstable();
    assert_eq!(voters(&c.region(leader, R).unwrap()), expected);

    // The new voter takes part in commits; the removed one is gone from its store.
    write_keys(&mut c, leader, 100..110);
    c.tick_until("the new voter to apply", |c| c.value(new_store, "k00109").is_some());
    c.tick_until("the removed peer to be destroyed", |c| c.region(removed, R).is_none());
    assert_eq!(c.value(removed, "k00000"), None, "a destroyed peer's data is deleted");
    // Surviving a full restart of the new store: it loads as a voter.
    c.crash(new_store);
    c.restart(new_store);
    assert_eq!(voters(&c.region(new_store, R).unwrap()), expected);
}

/// With check-quorum, a leader marks every follower inactive in raft-rs at
/// each election timeout, until their answers to the heartbeat sent in the
/// same tick come back. A membership change proposed in that window (the
/// heartbeat task that carries placement's orders ticks once a second, as
/// the election timeout does, so it can land there every time) must still
/// count the follower the leader hears from: here the leader and one live
/// follower of three voters, a quorum.
#[test]
fn a_membership_change_just_after_the_quorum_check_counts_the_followers_heard_from() {
    let mut c = Cluster::new(3);
    let leader = c.wait_leader(R);
    let region = c.region(leader, R).unwrap();
    let followers: Vec<u64> = (1..=3).filter(|s| *s != leader).collect();
    let live = region.peers.iter().find(|p| p.store_id == followers[1]).unwrap().id;
    c.crash(followers[0]);
    c.tick(3 * 10); // past an election timeout: the crashed follower is not heard from
    assert_eq!(c.leaders(R), vec![leader]);

    // The leader's clock alone, one tick at a time (what it sends is
    // delivered only after the look), until raft-rs shows the live follower inactive.
    let live_inactive = |c: &mut Cluster| {
        let summary = c.store(leader).progress_summary(R).unwrap();
        summary.split(": ").nth(1).is_some_and(|prs| prs.split(", ").any(|p| p.starts_with(&format!("{live}:")) && p.contains(" inactive")))
    };
    let mut ticks = 0;
    loop {
        c.store(leader).tick().unwrap();
        if live_inactive(&mut c) {
            break;
        }
        c.settle();
        ticks += 1;
        assert!(ticks < 3 * 10, "raft-rs never reset the follower's activity");
    }
    let rx = propose_change(&mut c, leader, vec![change(PeerChangeType::AddLearner, 500, 9)]);
    c.settle();
    assert!(matches!(answer(rx), Ok(CmdResult::ConfChanged(_))), "refused right after the quorum check");
    assert_eq!(c.region(leader, R).unwrap().peers.len(), 4);
}

#[test]
fn unsafe_or_stale_membership_changes_are_refused_and_change_nothing() {
    let mut c = Cluster::new(3);
    let leader = c.wait_leader(R);
    let region = c.region(leader, R).unwrap();
    let peer_on = |s: u64| region.peers.iter().find(|p| p.store_id == s).unwrap().id;
    let followers: Vec<u64> = (1..=3).filter(|s| *s != leader).collect();

    // The leader cannot remove itself.
    let rx = propose_change(&mut c, leader, vec![change(PeerChangeType::RemovePeer, peer_on(leader), leader)]);
    assert!(matches!(answer(rx), Err(Error::InvalidArgument(m)) if m.contains("transfer leadership")));
    // A stale epoch.
    let (tx, rx) = oneshot::channel();
    let mut stale = region.epoch.unwrap();
    stale.conf_ver -= 1;
    c.store(leader).propose_conf_change(
        ChangePeersCmd { region_id: R, epoch: Some(stale), changes: vec![change(PeerChangeType::AddLearner, 500, 9)] },
        tx,
    );
    assert!(matches!(answer(rx), Err(Error::EpochNotMatch(..))));
    // Promoting a peer that is not a learner; adding a second peer on a store.
    let rx = propose_change(&mut c, leader, vec![change(PeerChangeType::PromoteLearner, peer_on(followers[0]), followers[0])]);
    assert!(matches!(answer(rx), Err(Error::InvalidArgument(_))));
    let rx = propose_change(&mut c, leader, vec![change(PeerChangeType::AddLearner, 501, followers[0])]);
    assert!(matches!(answer(rx), Err(Error::InvalidArgument(_))));

    // With one follower down, removing the other would leave the leader and a
    // dead voter: no quorum. Refused.
    c.crash(followers[0]);
    c.tick(3 * 10); // past an election timeout: the leader sees the follower inactive
    assert_eq!(c.leaders(R), vec![leader]);
    let rx = propose_change(&mut c, leader, vec![change(PeerChangeType::RemovePeer, peer_on(followers[1]), followers[1])]);
    assert!(matches!(answer(rx), Err(Error::Unavailable(m)) if m.contains("reachable voters")));

    // One change at a time: a second one while the first is not applied.
    let first = propose_change(&mut c, leader, vec![change(PeerChangeType::AddLearner, 600, 7)]);
    let second = propose_change(&mut c, leader, vec![change(PeerChangeType::AddLearner, 601, 8)]);
    assert!(matches!(answer(second), Err(Error::Unavailable(m)) if m.contains("in progress")));
    c.settle();
    assert!(matches!(answer(first), Ok(CmdResult::ConfChanged(_))));
    let after = c.region(leader, R).unwrap();
    assert_eq!(after.peers.len(), 4, "only the first change was applied: {after:?}");
    assert_eq!(after.epoch.unwrap().conf_ver, region.epoch.unwrap().conf_ver + 1);
}

#[test]
fn a_store_whose_peer_was_removed_while_away_gets_the_region_back_under_a_new_peer() {
    let mut c = Cluster::with_log_gc(3, 20);
    let leader = c.wait_leader(R);
    write_keys(&mut c, leader, 0..50);
    let away = (1..=3).find(|s| *s != leader).unwrap();
    let old_peer = c.region(leader, R).unwrap().peers.iter().find(|p| p.store_id == away).unwrap().id;
    c.isolated.insert(away);
    let rx = propose_change(&mut c, leader, vec![change(PeerChangeType::RemovePeer, old_peer, away)]);
    c.settle();
    assert!(matches!(answer(rx), Ok(CmdResult::ConfChanged(_))));
    write_keys(&mut c, leader, 50..100);
    c.tick(20);
    // The store comes back still holding its removed peer; the region adds it again.
    c.isolated.clear();
    assert_eq!(try_status_of(c.store(away), R).map(|p| p.peer_id), Some(old_peer));
    let rx = propose_change(&mut c, leader, vec![change(PeerChangeType::AddLearner, 2000, away)]);
    c.settle();
    assert!(matches!(answer(rx), Ok(CmdResult::ConfChanged(_))));
    c.tick_until("the new peer to be seeded", |c| {
        try_status_of(c.store(away), R).is_some_and(|p| p.peer_id == 2000) && c.value(away, "k00099").is_some()
    });
    assert_eq!(c.value(away, "k00000"), Some("v0".into()));
}

#[test]
fn a_second_learner_gets_a_snapshot_that_includes_it() {
    // The snapshot generated for the first learner predates the second one's
    // addition; raft refuses to restore a snapshot whose configuration lacks
    // the receiver, so the second must get a newer one.
    let mut c = Cluster::with_log_gc(3, 20);
    let leader = c.wait_leader(R);
    write_keys(&mut c, leader, 0..60);
    c.tick(20);
    let (s4, s5) = (c.add_empty_store(), c.add_empty_store());
    for (peer_id, store) in [(3000, s4), (3001, s5)] {
        let rx = propose_change(&mut c, leader, vec![change(PeerChangeType::AddLearner, peer_id, store)]);
        c.settle();
        assert!(matches!(answer(rx), Ok(CmdResult::ConfChanged(_))));
        c.tick_until("the learner to be seeded", |c| c.value(store, "k00059").is_some());
    }
    assert_eq!(voters(&c.region(s5, R).unwrap()), vec![1, 2, 3]);
}

/// Whether `n` was notified since it was last looked at (takes the permit).
fn notified(n: &tokio::sync::Notify) -> bool {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let wait = std::pin::pin!(n.notified());
    matches!(wait.poll(&mut Context::from_waker(Waker::noop())), Poll::Ready(()))
}

#[test]
fn a_learner_reported_pending_asks_for_a_heartbeat_once_it_has_caught_up() {
    let mut c = Cluster::with_log_gc(3, 20);
    let leader = c.wait_leader(R);
    write_keys(&mut c, leader, 0..100);
    c.tick(20);
    let new_store = c.add_empty_store();
    c.crash(new_store);
    let rx = propose_change(&mut c, leader, vec![change(PeerChangeType::AddLearner, 1000, new_store)]);
    c.settle();
    assert!(matches!(answer(rx), Ok(CmdResult::ConfChanged(_))));
    let wanted = c.store(leader).heartbeat_wanted();
    let pending = |c: &mut Cluster| c.store(leader).leader_reports().into_iter().find(|r| r.region.id == R).unwrap().pending_peers;
    assert_eq!(pending(&mut c), vec![1000], "the unreachable learner is reported pending");
    c.tick(5);
    assert!(!notified(&wanted), "nobody caught up yet");

    c.restart(new_store);
    c.tick_until("the learner to be seeded", |c| c.value(new_store, "k00099").is_some());
    c.tick(3);
    assert!(notified(&wanted), "the seeded learner did not ask for an early heartbeat");
    assert!(!notified(&wanted), "asked once");
    assert!(pending(&mut c).is_empty());
    // With nothing reported pending, rounds ask for nothing.
    write_keys(&mut c, leader, 100..110);
    c.tick(3);
    assert!(!notified(&wanted));
}
