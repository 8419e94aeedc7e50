//! Backup fences on real stores (RocksDB, raft-rs) wired by the in-memory
//! network of `common`: a fenced region refuses writes and splits on every
//! replica, including a write already in the log behind the fence; the fence
//! survives a restart and reaches a follower seeded by snapshot; a lift
//! lets writes through again; fences of two backups exclude each other; and a
//! fence nobody lifts is lifted by its leader when its lease runs out.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use prost::Message as _;
use shoal_node::error::Error;
use shoal_node::raftstore::bootstrap::FIRST_REGION_ID;
use shoal_node::raftstore::peer::{CmdResult, FENCE_LEASE_ELECTIONS};
use shoal_proto::{BackupFenceCmd, RegionLocalState, SplitCmd};
use tokio::sync::oneshot;

const R: u64 = FIRST_REGION_ID;

fn fence(c: &mut Cluster, on: u64, backup_id: &str, lift: bool) -> Answer {
    let (tx, rx) = oneshot::channel();
    c.store(on).propose_backup_fence(R, BackupFenceCmd { backup_id: backup_id.into(), lift }, tx);
    rx
}

/// Proposes fence `backup_id` on `on` and settles the network.
fn fence_settled(c: &mut Cluster, on: u64, backup_id: &str) -> Answer {
    let rx = fence(c, on, backup_id, false);
    c.settle();
    rx
}

/// The fence store `on` has recorded for the region on disk.
fn fence_on_disk(c: &mut Cluster, on: u64) -> String {
    let bytes = c.store(on).engine().get("region_meta", &shoal_node::keys::region_state_key(R)).unwrap().unwrap();
    RegionLocalState::decode(bytes.as_slice()).unwrap().backup_fence
}

fn busy(rx: Answer) -> bool {
    matches!(answer(rx), Err(Error::ServerIsBusy(_)))
}

#[test]
fn a_fenced_region_refuses_writes_on_every_replica_until_lifted_across_restarts_and_snapshots() {
    let mut c = Cluster::with_log_gc(3, 20);
    let leader = c.wait_leader(R);
    write_keys(&mut c, leader, 0..10);
    // This follower misses the fence: it will learn it from a snapshot only.
    let lagging = (1..=3).find(|s| *s != leader).unwrap();
    let other = (1..=3).find(|s| *s != leader && *s != lagging).unwrap();
    c.crash(lagging);

    // A write proposed after the fence, before the leader applied it, is in
    // the log behind the fence: every replica refuses it when applying.
    let f = fence(&mut c, leader, "b1", false);
    let behind = c.propose(leader, put("behind", "x"));
    c.settle();
    assert!(answer(f).is_ok());
    assert!(busy(behind), "the write behind the fence was applied");
    for s in [leader, other] {
        assert_eq!(c.value(s, "behind"), None, "store {s} applied a write behind the fence");
        assert_eq!(fence_on_disk(&mut c, s), "b1", "store {s}");
    }
    // New writes are refused by the leader before they are proposed; splits too.
    assert!(busy(c.write(leader, put("after", "x"))));
    let epoch = c.region(leader, R).unwrap().epoch.unwrap();
    let (tx, rx) = oneshot::channel();
    c.store(leader).propose_split(
        R,
        epoch,
        SplitCmd { split_key: b"k00005".to_vec(), new_region_id: 100, new_peer_ids: vec![101, 102, 103] },
        tx,
    );
    assert!(busy(rx), "a fenced region split");
    // Another backup cannot fence it; the same one may again.
    assert!(matches!(answer(fence_settled(&mut c, leader, "b2")), Err(Error::FailedPrecondition(_))));
    assert!(answer(fence_settled(&mut c, leader, "b1")).is_ok());

    // The follower that missed it all is seeded by a snapshot that carries it.
    for _ in 0..40 {
        assert!(answer(fence_settled(&mut c, leader, "b1")).is_ok());
    }
    c.tick(30);
    assert!(c.store(leader).metrics().raft_log_gc.get() > 0, "the leader never truncated its log");
    c.restart(lagging);
    let target = c.applied(leader, R);
    c.tick_until("the restarted follower to catch up", |c| c.applied(lagging, R) >= target);
    assert!(c.snapshots_delivered > 0, "the follower caught up without a snapshot");
    assert_eq!(fence_on_disk(&mut c, lagging), "b1", "the snapshot did not carry the fence");
    assert_eq!(c.value(lagging, "behind"), None);

    // Every store restarted: the fence is still there, and the new leader refuses writes.
    for s in 1..=3 {
        c.crash(s);
    }
    for s in 1..=3 {
        c.restart(s);
    }
    let leader = c.wait_leader(R);
    assert!(busy(c.write(leader, put("after", "x"))), "a restarted leader took a write while fenced");

    // Lifted: writes go through on every replica.
    let lifted = fence(&mut c, leader, "b1", true);
    c.settle();
    assert!(matches!(answer(lifted), Ok(CmdResult::FenceLifted { held: true })), "the fence held until lifted");
    ok(c.write(leader, put("after", "y")));
    let target = c.applied(leader, R);
    c.tick_until("every replica to apply the write after the lift", |c| (1..=3).all(|s| c.applied(s, R) >= target));
    for s in 1..=3 {
        assert_eq!(c.value(s, "after"), Some("y".into()), "store {s}");
        assert_eq!(fence_on_disk(&mut c, s), "", "store {s}");
    }
}

#[test]
fn a_fence_nobody_lifts_is_lifted_by_its_leader_when_its_lease_runs_out() {
    let mut c = Cluster::new(3);
    let leader = c.wait_leader(R);
    let f = fence(&mut c, leader, "abandoned", false);
    c.settle();
    assert!(answer(f).is_ok());
    assert!(busy(c.write(leader, put("k", "v"))));
    // The lease is FENCE_LEASE_ELECTIONS election timeouts; tick past it.
    let election_ticks = store_config().raft.election_tick as u64;
    c.tick((election_ticks * FENCE_LEASE_ELECTIONS + 2 * election_ticks) as usize);
    let leader = c.wait_leader(R);
    assert_eq!(fence_on_disk(&mut c, leader), "", "the fence outlived its lease");
    ok(c.write(leader, put("k", "v")));
    // The coordinator, lifting it late, learns that its fence did not hold.
    let late = fence(&mut c, leader, "abandoned", true);
    c.settle();
    assert!(matches!(answer(late), Ok(CmdResult::FenceLifted { held: false })));
}
