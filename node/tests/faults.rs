//! Rare fault windows of the raftstore, opened on purpose with the in-memory
//! network of `common` (held mail, isolation, crashes between two rounds).
//! Each test failed before the fix it names (issue 12).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use shoal_node::error::Error;
use shoal_node::meta::META_REGION_ID;
use shoal_node::meta::state::MetaResult;
use shoal_node::raftstore::bootstrap::FIRST_REGION_ID;
use shoal_node::raftstore::peer::CmdResult;
use shoal_proto::{MetaCmd, Peer, PeerChangeType, RaftMessage, RegionEpoch, SplitCmd, meta_cmd};
use tokio::sync::oneshot;

const R: u64 = FIRST_REGION_ID;

fn alloc(c: &mut Cluster, on: u64, count: u32) -> Answer {
    let (tx, rx) = oneshot::channel();
    c.store(on).propose_meta(MetaCmd { cmd: Some(meta_cmd::Cmd::AllocIds(count)) }, tx);
    rx
}

fn ids(mut rx: Answer) -> (u64, u64) {
    match rx.try_recv() {
        Ok(Ok(CmdResult::Meta(MetaResult::Ids { first, count }))) => (first, count),
        other => panic!("AllocIds failed: {other:?}"),
    }
}

fn next_id(c: &mut Cluster, on: u64) -> u64 {
    c.store(on).meta().read().unwrap().next_id()
}

fn is_snapshot(m: &RaftMessage) -> bool {
    <raft::prelude::Message as protobuf::Message>::parse_from_bytes(&m.message)
        .is_ok_and(|m| m.get_msg_type() == raft::prelude::MessageType::MsgSnapshot)
}

fn conf_ver(c: &mut Cluster, on: u64) -> u64 {
    c.region(on, R).unwrap().epoch.unwrap().conf_ver
}

/// Runs round by round until store `on` has entered the joint state of the
/// change proposed after `before` (conf_ver: +1 for the learner, +1 entering
/// the joint state, +1 leaving it), and asserts it is caught there.
fn step_into_joint_state(c: &mut Cluster, on: u64, before: u64) {
    for _ in 0..100 {
        if conf_ver(c, on) >= before + 2 {
            break;
        }
        c.step();
    }
    assert_eq!(conf_ver(c, on), before + 2, "store {on} must be caught in the joint state");
}

/// Bug 1: a meta follower that steps a snapshot and the append after it in one
/// drain applied that append's commands to its pre-snapshot meta state, and so
/// persisted a lower `next_id` than every other store (ids handed out twice
/// once it leads meta).
#[test]
fn a_meta_peer_seeded_by_snapshot_applies_what_follows_to_the_snapshots_state() {
    let mut c = Cluster::with_log_gc(3, 20);
    let leader = c.wait_leader(META_REGION_ID);
    let lagging = (1..=3).find(|s| *s != leader).unwrap();
    let before = next_id(&mut c, lagging);
    c.isolated.insert(lagging);
    for _ in 0..80 {
        let rx = alloc(&mut c, leader, 1);
        c.settle();
        ids(rx);
    }
    c.tick(30); // GC passes: the meta log no longer holds what `lagging` lacks

    // Back; from its snapshot on, slow to take its mail: the snapshot waits...
    c.isolated.remove(&lagging);
    c.hold_from_snapshot.insert(lagging);
    c.pass_heartbeats = true; // it answers them, so its leader sends the append after the snapshot
    c.tick_until("a meta snapshot on its way to the lagging store", |c| {
        c.held.iter().any(|m| m.region_id == META_REGION_ID && is_snapshot(m))
    });
    // ...and so does the append of a command committed after it.
    let rx = alloc(&mut c, leader, 5);
    c.settle();
    let (first, _) = ids(rx);
    // After a snapshot the leader waits for an answer before it appends: a
    // heartbeat's.
    c.tick(4);
    assert!(c.held.iter().any(|m| m.region_id == META_REGION_ID && !is_snapshot(m)), "no append followed the snapshot");
    c.pass_heartbeats = false;
    c.deliver_held();
    c.settle();
    c.tick(3);
    assert_eq!(next_id(&mut c, leader), first + 5);
    assert!(before < first);
    assert_eq!(next_id(&mut c, lagging), first + 5, "the seeded store's allocator must equal the leader's");
    c.crash(lagging);
    c.restart(lagging);
    assert_eq!(next_id(&mut c, lagging), first + 5, "and so must what it persisted");
}

/// Bug 2: a deposed leader that catches up by snapshot answered its proposal
/// "not applied" (retryable), though the next leader had committed it.
#[test]
fn a_proposal_covered_by_a_snapshot_has_an_unknown_outcome_not_a_failure() {
    let mut c = Cluster::with_log_gc(3, 20);
    let old = c.wait_leader(R);
    let mut w = c.propose(old, put("w", "committed"));
    c.step(); // the entry reaches both followers...
    c.isolated.insert(old); // ...and their answers never come back
    let new = c.wait_leader(R);
    assert_ne!(new, old);
    write_keys(&mut c, new, 0..80); // commits `w` too (an entry of the new term after it)
    c.tick(30); // GC: the old leader will need a snapshot
    assert_eq!(c.value(new, "w"), Some("committed".into()), "the new leader committed the old one's entry");

    c.isolated.clear();
    let target = c.applied(new, R);
    c.tick_until("the old leader to catch up", |c| c.applied(old, R) >= target);
    assert!(c.snapshots_delivered > 0, "the old leader caught up without a snapshot");
    write_keys(&mut c, new, 80..82);
    c.tick(2);
    match w.try_recv() {
        Ok(Err(Error::OutcomeUnknown(_))) => {}
        other => panic!("a write whose entry a snapshot covers may have been applied (it was): expected OutcomeUnknown, got {other:?}"),
    }
    assert_eq!(c.value(old, "w"), Some("committed".into()));
}

/// Seeds a learner on a new store and proposes to promote it while removing
/// `removed`'s peer (joint consensus); returns the new store.
fn replace_through_joint(c: &mut Cluster, leader: u64, removed: u64) -> (u64, Answer) {
    write_keys(c, leader, 0..40);
    let s4 = c.add_empty_store();
    let rx = propose_change(c, leader, vec![change(PeerChangeType::AddLearner, 900, s4)]);
    c.settle();
    assert!(matches!(answer(rx), Ok(CmdResult::ConfChanged(_))));
    c.tick_until("the learner to be seeded", |c| c.value(s4, "k00039").is_some());
    let removed_peer = c.region(leader, R).unwrap().peers.iter().find(|p| p.store_id == removed).unwrap().id;
    let rx = propose_change(
        c,
        leader,
        vec![change(PeerChangeType::PromoteLearner, 900, s4), change(PeerChangeType::RemovePeer, removed_peer, removed)],
    );
    (s4, rx)
}

/// Bug 3: a voter removed through joint consensus was dropped from the region
/// descriptor when the joint state was entered; restarted then, its store
/// found no peer of its own in the region and could not open.
#[test]
fn a_voter_leaving_through_joint_consensus_restarts_and_then_leaves() {
    let mut c = Cluster::with_log_gc(3, 20);
    let leader = c.wait_leader(R);
    let removed = (1..=3).find(|s| *s != leader).unwrap();
    let before = conf_ver(&mut c, removed);
    let (s4, _rx) = replace_through_joint(&mut c, leader, removed);
    step_into_joint_state(&mut c, removed, before);
    let region = c.region(removed, R).unwrap();
    assert!(region.peers.iter().any(|p| p.store_id == removed && !p.is_learner), "in the joint state it is still a voter: {region:?}");
    c.crash(removed);
    c.restart(removed); // panicked here: "region 2 has no peer on store N"
    c.tick_until("the joint state to be left and the leaving peer destroyed", |c| c.region(removed, R).is_none());
    let voters: Vec<u64> = c.region(leader, R).unwrap().peers.iter().filter(|p| !p.is_learner).map(|p| p.store_id).collect();
    assert!(voters.contains(&s4) && !voters.contains(&removed), "voters now {voters:?}");
    write_keys(&mut c, leader, 40..45);
    c.tick_until("the new voter to apply", |c| c.value(s4, "k00044").is_some());
}

/// Proposes splitting R at k00020 on `on`, with one new peer id per peer of
/// the descriptor `on` has now.
fn propose_split_now(c: &mut Cluster, on: u64, new_region_id: u64) -> oneshot::Receiver<Result<CmdResult, Error>> {
    let region = c.region(on, R).unwrap();
    let new_peer_ids = (1..=region.peers.len() as u64).map(|i| new_region_id + i).collect();
    let (tx, rx) = oneshot::channel();
    let cmd = SplitCmd { split_key: b"k00020".to_vec(), new_region_id, new_peer_ids };
    c.store(on).propose_split(R, region.epoch.unwrap(), cmd, tx);
    rx
}

fn assert_refused_in_joint(rx: &mut oneshot::Receiver<Result<CmdResult, Error>>) {
    match rx.try_recv() {
        Ok(Err(Error::Unavailable(msg))) => assert!(msg.contains("membership change"), "{msg}"),
        other => panic!("a split in the joint state must be refused, got {other:?}"),
    }
}

/// Once the joint state is left, the region splits as usual.
fn split_after_the_change(c: &mut Cluster, leader: u64) {
    c.tick_until("the joint state to be left", |c| c.region(leader, R).unwrap().peers.len() == 3);
    let mut split = propose_split_now(c, leader, 60);
    c.settle();
    assert!(matches!(split.try_recv(), Ok(Ok(CmdResult::Split { .. }))));
    c.tick(3);
    let members: Vec<u64> = c.region(leader, R).unwrap().peers.iter().map(|p| p.store_id).collect();
    for s in members {
        assert!(try_status_of(c.store(s), 60).is_some(), "store {s} holds the right half");
    }
}

/// Bug 3, second half: a split applied in the joint state gave the right half
/// no peer on the leaving store, whose store loop then stopped with an error.
/// Proposed while the leader is in the joint state, it is refused at once.
#[test]
fn a_split_proposed_in_a_joint_state_is_refused_and_stops_no_store() {
    let mut c = Cluster::with_log_gc(3, 20);
    let leader = c.wait_leader(R);
    let removed = (1..=3).find(|s| *s != leader).unwrap();
    let before = conf_ver(&mut c, leader);
    let (_s4, _change) = replace_through_joint(&mut c, leader, removed);
    step_into_joint_state(&mut c, leader, before);
    let mut split = propose_split_now(&mut c, leader, 50);
    c.settle(); // every store's round must succeed (the leaving store's failed here)
    assert_refused_in_joint(&mut split);
    split_after_the_change(&mut c, leader);
}

/// The same split proposed right behind the change is applied in the joint
/// state: every replica refuses it alike.
#[test]
fn a_split_applied_in_a_joint_state_is_refused_everywhere() {
    let mut c = Cluster::with_log_gc(3, 20);
    let leader = c.wait_leader(R);
    let removed = (1..=3).find(|s| *s != leader).unwrap();
    let (_s4, change) = replace_through_joint(&mut c, leader, removed);
    let mut split = propose_split_now(&mut c, leader, 50);
    c.settle();
    let changed = answer(change);
    assert!(matches!(changed, Ok(CmdResult::ConfChanged(_))), "the change is applied: {changed:?}");
    assert_refused_in_joint(&mut split);
    c.tick(5);
    for s in c.up() {
        assert!(try_status_of(c.store(s), 50).is_none(), "store {s} created the refused split's right half");
    }
    split_after_the_change(&mut c, leader);
}

/// Bug 4: a learner that waited for its snapshot longer than the idle time
/// was tombstoned as an idle uninitialized peer, and never seeded.
#[test]
fn a_learner_waiting_long_for_its_snapshot_is_still_seeded() {
    let mut c = Cluster::with_log_gc(3, 20);
    let leader = c.wait_leader(R);
    write_keys(&mut c, leader, 0..40);
    let s4 = c.add_empty_store();
    let rx = propose_change(&mut c, leader, vec![change(PeerChangeType::AddLearner, 900, s4)]);
    // Step round by round until the leader's first message created the learner's
    // (uninitialized) peer, then cut the store off before its snapshot lands.
    for _ in 0..50 {
        if try_status_of(c.store(s4), R).is_some() {
            break;
        }
        c.step();
    }
    assert!(try_status_of(c.store(s4), R).is_some_and(|p| p.region.epoch.is_none()), "the learner's peer exists, uninitialized");
    c.isolated.insert(s4);
    c.settle();
    assert!(matches!(answer(rx), Ok(CmdResult::ConfChanged(_))));
    let idle_ticks = c.cfg.idle_ticks as usize;
    c.tick(idle_ticks + 5);
    let reported = c.store(s4).idle_peers();
    assert!(reported.is_empty(), "an uninitialized peer is not reported to meta: {reported:?}");

    c.isolated.clear();
    c.tick_until("the learner to be seeded", |c| c.value(s4, "k00039").is_some());
    assert_eq!(try_status_of(c.store(s4), R).map(|p| p.peer_id), Some(900));
}

/// Bug 5: a read was served from the live engine after the store answered it,
/// while the store thread could be replacing the range (a snapshot applied, a
/// peer destroyed). The answer now carries the engine as of the check.
#[test]
fn a_read_answered_before_its_range_is_replaced_reads_the_range_as_answered() {
    let mut c = Cluster::new(3);
    let leader = c.wait_leader(R);
    ok(c.write(leader, put("a", "1")));
    c.tick(2);
    let follower = (1..=3).find(|s| *s != leader).unwrap();
    let read = c.store(follower).local_region(b"a").unwrap();
    let peer = try_status_of(c.store(follower), R).unwrap().peer_id;
    c.store(follower).destroy_peer(R, peer).unwrap(); // the store thread moves on
    assert_eq!(c.value(follower, "a"), None, "the live engine no longer holds the range");
    assert_eq!(read.snapshot.get("users", b"a").unwrap().as_deref(), Some(&b"1"[..]), "the read sees the range as it was answered");
}

/// Bug 7: a snapshot's data was applied on the store thread, stalling every
/// other region of the store for as long as the ingest took. With the apply
/// held (a failpoint: a very slow disk), the store goes on with its other
/// regions, and serves no read from the region being replaced.
#[test]
fn while_a_snapshot_applies_the_store_goes_on_with_its_other_regions() {
    let mut c = Cluster::with_log_gc(3, 20);
    let leader = c.wait_leader(R);
    let lagging = (1..=3).find(|s| *s != leader).unwrap();
    c.crash(lagging);
    write_keys(&mut c, leader, 0..80);
    c.tick(30); // GC: the lagging store will need a snapshot
    c.restart(lagging);
    let hold = c.store(lagging).snap_manager().hold_applies();
    c.tick_until(
        "the lagging store to start applying its snapshot",
        |c| matches!(c.store(lagging).local_region(b"k00000"), Err(Error::Unavailable(msg)) if msg.contains("applying a snapshot")),
    );

    // The store thread is not stuck in the apply: the meta group, on the same
    // store, goes on committing and applying there.
    let meta_leader = c.wait_leader(META_REGION_ID);
    let rx = alloc(&mut c, meta_leader, 3);
    c.settle();
    let (first, _) = ids(rx);
    c.tick(3);
    assert_eq!(next_id(&mut c, lagging), first + 3, "the store applied meta entries while the snapshot was held");
    assert!(
        matches!(c.store(lagging).local_region(b"k00000"), Err(Error::Unavailable(_))),
        "no read is served from a range being replaced"
    );
    assert_eq!(c.value(lagging, "k00079"), None, "the data is not there yet");

    drop(hold);
    let target = c.applied(leader, R);
    c.tick_until("the lagging store to finish the apply and catch up", |c| c.applied(lagging, R) >= target);
    for i in [0, 40, 79] {
        assert_eq!(c.value(lagging, &format!("k{i:05}")), Some(format!("v{i}")));
    }
    let read = c.store(lagging).local_region(b"k00000").unwrap();
    assert_eq!(read.snapshot.get("users", b"k00000").unwrap().as_deref(), Some(&b"v0"[..]));
    drop(read); // it holds the engine open
    // And a restart finds it applied for good.
    c.crash(lagging);
    c.restart(lagging);
    assert_eq!(c.value(lagging, "k00079"), Some("v79".into()));
}

/// A snapshot message of `region` for peer `to` (on store 4, from store 1's
/// peer `to - 100`), at `index`: no files, as for a region without data.
fn snapshot_message(region: &shoal_proto::Region, to: u64, index: u64) -> RaftMessage {
    use protobuf::Message as _;
    let key = shoal_proto::SnapshotKey { region_id: region.id, term: 6, index };
    let data = shoal_proto::SnapshotData { region: Some(region.clone()), files: vec![], key: Some(key), ..Default::default() };
    let mut m = raft::prelude::Message::default();
    m.set_msg_type(raft::prelude::MessageType::MsgSnapshot);
    m.to = to;
    m.from = to - 100;
    m.term = 6;
    let snap = m.mut_snapshot();
    snap.mut_metadata().index = index;
    snap.mut_metadata().term = 6;
    snap.mut_metadata().mut_conf_state().voters = vec![to - 100];
    snap.mut_metadata().mut_conf_state().learners = vec![to];
    snap.data = prost::Message::encode_to_vec(&data).into();
    RaftMessage {
        region_id: region.id,
        from_store_id: 1,
        to_store_id: 4,
        message: m.write_to_bytes().unwrap(),
        hibernate: false,
        leaving: false,
    }
}

/// Settled (a): two snapshots stepped in one drain were both taken when their
/// ranges overlapped (a stale pre-split snapshot of the parent and the new
/// half's), since the overlap check counted only initialized peers. The second
/// is refused now; it is sent again, and taken once nothing overlaps it.
#[test]
fn of_two_overlapping_snapshots_stepped_in_one_drain_only_the_first_is_taken() {
    let mut c = Cluster::new(3);
    let s4 = c.add_empty_store();
    let peer = |id: u64, learner: bool| Peer { id, store_id: if learner { 4 } else { 1 }, is_learner: learner };
    let epoch = Some(RegionEpoch { conf_ver: 2, version: 1 });
    let parent = shoal_proto::Region { id: 70, start_key: vec![], end_key: vec![], epoch, peers: vec![peer(101, false), peer(201, true)] };
    let right =
        shoal_proto::Region { id: 71, start_key: b"m".to_vec(), end_key: vec![], epoch, peers: vec![peer(102, false), peer(202, true)] };
    c.store(s4).on_raft_message(snapshot_message(&parent, 201, 10));
    c.store(s4).on_raft_message(snapshot_message(&right, 202, 10));
    c.store(s4).handle_readies().unwrap();
    c.store(s4).handle_readies().unwrap();
    let seeded: Vec<u64> = c.store(s4).status().into_iter().filter(|p| p.region.epoch.is_some()).map(|p| p.region.id).collect();
    assert_eq!(seeded, vec![70], "only the first of two overlapping snapshots may be taken");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        c.store(s4).handle_readies().unwrap();
        match c.store(s4).local_region(b"x") {
            Ok(read) => break assert_eq!(read.region.id, 70),
            Err(e) => assert!(std::time::Instant::now() < deadline, "the first snapshot was never applied: {e}"),
        }
        std::thread::yield_now();
    }
}
