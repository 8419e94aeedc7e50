//! Raft behaviour of one data region (the first one, before any split) on real
//! `Store`s over the in-memory network of [`common::Cluster`]: elections, write
//! replication, linearizable reads, partitions, crashes and restarts, message
//! loss, and proposals replaced by another leader. No threads, no sleeps, no
//! sockets: time is ticks, and the network is driven by the test.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Cluster, ok, put, status_of};
use shoal_node::error::Error;
use shoal_node::raftstore::bootstrap::FIRST_REGION_ID;
use shoal_proto::{Mutation, mutation};
use tokio::sync::oneshot;

#[test]
fn three_stores_elect_exactly_one_leader_that_all_agree_on() {
    let mut c = Cluster::new(3);
    let leader = c.wait_leader(FIRST_REGION_ID);
    c.tick(5);
    assert_eq!(c.leaders(FIRST_REGION_ID), vec![leader]);
    for id in 1..=3 {
        let st = status_of(c.store(id), FIRST_REGION_ID);
        assert_eq!(st.leader.as_ref().map(|l| l.store_id), Some(leader), "store {id} knows the leader");
    }
}

#[test]
fn writes_replicate_to_every_store_and_followers_refuse_them() {
    let mut c = Cluster::new(3);
    let leader = c.wait_leader(FIRST_REGION_ID);
    for i in 0..20 {
        ok(c.write(leader, put(&format!("k{i:02}"), &format!("v{i}"))));
    }
    c.tick(3); // heartbeats carry the commit index to followers
    for id in 1..=3 {
        assert_eq!(c.value(id, "k07").as_deref(), Some("v7"), "store {id}");
        assert_eq!(c.value(id, "k19").as_deref(), Some("v19"), "store {id}");
    }
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let mut rx = c.write(follower, put("x", "y"));
    match rx.try_recv() {
        Ok(Err(Error::NotLeader { leader: Some(l), .. })) => assert_eq!(l.store_id, leader),
        other => panic!("expected NotLeader with a hint, got {other:?}"),
    }
}

#[test]
fn linearizable_reads_wait_for_the_leader_and_follower_reads_are_refused() {
    let mut c = Cluster::new(3);
    let leader = c.wait_leader(FIRST_REGION_ID);
    ok(c.write(leader, put("a", "1")));
    let (tx, mut rx) = oneshot::channel();
    c.store(leader).read(b"a", tx);
    assert!(rx.try_recv().is_err(), "a read is answered only after a heartbeat round");
    c.settle();
    let read = rx.try_recv().expect("answered").expect("read allowed");
    assert_eq!(read.region.id, FIRST_REGION_ID);
    assert_eq!(read.snapshot.get("users", b"a").unwrap().as_deref(), Some(&b"1"[..]), "the read's snapshot holds the write");

    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let (tx, mut rx) = oneshot::channel();
    c.store(follower).read(b"a", tx);
    assert!(matches!(rx.try_recv(), Ok(Err(Error::NotLeader { .. }))));
}

#[test]
fn a_partitioned_leader_is_replaced_and_its_uncommitted_write_is_dropped() {
    let mut c = Cluster::new(3);
    let old = c.wait_leader(FIRST_REGION_ID);
    ok(c.write(old, put("before", "1")));

    c.isolated.insert(old);
    let mut lost = c.write(old, put("lost", "never"));
    let new = c.wait_leader(FIRST_REGION_ID);
    assert_ne!(new, old);
    ok(c.write(new, put("after", "2")));
    // A read on the isolated old leader can never complete while it is cut off.
    let (tx, mut stale_read) = oneshot::channel();
    c.store(old).read(b"before", tx);
    c.tick(30);
    assert!(!matches!(stale_read.try_recv(), Ok(Ok(_))), "a partitioned leader must not serve a linearizable read");
    assert!(!status_of(c.store(old), FIRST_REGION_ID).is_leader, "check-quorum makes the old leader step down");

    c.isolated.clear();
    c.tick(10);
    match lost.try_recv() {
        Ok(Err(Error::StaleCommand(_))) => {}
        other => panic!("the minority write must fail as stale, got {other:?}"),
    }
    for id in 1..=3 {
        assert_eq!(c.value(id, "lost"), None, "store {id} must not have the uncommitted write");
        assert_eq!(c.value(id, "after").as_deref(), Some("2"), "store {id}");
        assert_eq!(c.value(id, "before").as_deref(), Some("1"), "store {id}");
    }
    assert_eq!(c.leaders(FIRST_REGION_ID), vec![new]);
}

#[test]
fn a_follower_that_was_down_catches_up_from_the_log() {
    let mut c = Cluster::new(3);
    let leader = c.wait_leader(FIRST_REGION_ID);
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    c.crash(follower);
    for i in 0..50 {
        ok(c.write(leader, put(&format!("k{i:02}"), "v")));
    }
    c.restart(follower);
    c.tick(5);
    assert_eq!(c.value(follower, "k49").as_deref(), Some("v"));
    assert_eq!(c.applied(follower, FIRST_REGION_ID), c.applied(leader, FIRST_REGION_ID));
}

#[test]
fn every_store_recovers_its_data_and_state_after_all_crash() {
    let mut c = Cluster::new(3);
    let leader = c.wait_leader(FIRST_REGION_ID);
    for i in 0..10 {
        ok(c.write(leader, put(&format!("k{i}"), &format!("v{i}"))));
    }
    c.tick(3);
    let terms: Vec<u64> = (1..=3).map(|i| status_of(c.store(i), FIRST_REGION_ID).term).collect();
    for id in 1..=3 {
        c.crash(id);
    }
    for id in 1..=3 {
        c.restart(id);
    }
    for id in 1..=3 {
        assert_eq!(c.value(id, "k9").as_deref(), Some("v9"), "store {id} after restart");
        assert!(status_of(c.store(id), FIRST_REGION_ID).term >= terms[id as usize - 1], "terms never go back");
    }
    let leader = c.wait_leader(FIRST_REGION_ID);
    ok(c.write(leader, put("k10", "v10")));
    c.tick(3);
    for id in 1..=3 {
        assert_eq!(c.value(id, "k10").as_deref(), Some("v10"));
    }
}

#[test]
fn a_batch_is_applied_atomically_across_column_families() {
    let mut c = Cluster::new(3);
    let leader = c.wait_leader(FIRST_REGION_ID);
    let muts = vec![
        Mutation { op: mutation::Op::Put as i32, cf: "users".into(), key: b"u".to_vec(), value: b"1".to_vec() },
        Mutation { op: mutation::Op::Put as i32, cf: "default".into(), key: b"d".to_vec(), value: b"2".to_vec() },
        Mutation { op: mutation::Op::Delete as i32, cf: "users".into(), key: b"u".to_vec(), value: vec![] },
    ];
    ok(c.write(leader, muts));
    c.tick(3);
    for id in 1..=3 {
        assert_eq!(c.value(id, "u"), None, "the later delete in the batch wins");
        assert_eq!(c.store(id).engine().get("default", b"d").unwrap().as_deref(), Some(&b"2"[..]));
    }
}

#[test]
fn writes_commit_and_reads_complete_despite_message_loss() {
    let mut c = Cluster::new(3);
    c.loss_percent = 30;
    let mut pending = Vec::new();
    for i in 0..30 {
        let leader = c.wait_leader(FIRST_REGION_ID);
        pending.push((format!("k{i:02}"), c.write(leader, put(&format!("k{i:02}"), &format!("v{i}")))));
        c.tick(2);
    }
    c.loss_percent = 0;
    c.tick(20);
    let leader = c.wait_leader(FIRST_REGION_ID);
    let mut acked = 0;
    for (key, mut rx) in pending {
        match rx.try_recv() {
            Ok(Ok(_)) => {
                acked += 1;
                for id in 1..=3 {
                    assert!(c.value(id, &key).is_some(), "acknowledged {key} is on store {id}");
                }
            }
            // Refused, or overwritten while leadership moved: then it was not applied.
            Ok(Err(_)) => assert_eq!(c.value(leader, &key), None, "{key} failed but was applied"),
            Err(e) => panic!("{key} was never answered: {e:?}"),
        }
    }
    assert!(acked >= 20, "most writes get through 30% loss ({acked}/30)");
    let (tx, mut rx) = oneshot::channel();
    c.store(leader).read(b"k00", tx);
    c.tick(2);
    assert!(matches!(rx.try_recv(), Ok(Ok(_))), "reads complete once the network heals");
}

#[test]
fn a_deposed_leader_that_leads_again_answers_its_new_writes() {
    // Regression: a leader deposed with writes pending, whose log was then cut back
    // by the next leader, must answer writes it accepts after leading again — its
    // old proposals sit at higher log indexes than the new ones.
    let mut c = Cluster::new(3);
    let old = c.wait_leader(FIRST_REGION_ID);
    ok(c.write(old, put("base", "0")));
    c.isolated.insert(old);
    let stale: Vec<_> = (0..10).map(|i| c.write(old, put(&format!("stale{i}"), "x"))).collect();
    let other = c.wait_leader(FIRST_REGION_ID);
    assert_ne!(other, old);
    c.isolated.clear();
    c.tick(5);

    // Make `old` lead again: cut off whoever leads and let `old` campaign.
    for _ in 0..50 {
        if c.leaders(FIRST_REGION_ID) == vec![old] {
            break;
        }
        let current: Vec<u64> = c.leaders(FIRST_REGION_ID).into_iter().filter(|&l| l != old).collect();
        c.isolated = current.into_iter().collect();
        c.store(old).campaign(FIRST_REGION_ID).unwrap();
        c.tick(1);
    }
    assert!(c.leaders(FIRST_REGION_ID).contains(&old), "the deposed leader leads again");
    c.isolated.clear();
    c.settle();

    // A replaced write is answered once another entry is committed at its
    // index (not before: until then, a leader holding it could commit it).
    let fresh: Vec<_> = (0..12).map(|i| c.write(old, put(&format!("fresh{i}"), "1"))).collect();
    c.tick(3);
    fresh.into_iter().for_each(ok);
    ok(c.write(old, put("fresh", "1")));
    c.tick(3);
    for mut rx in stale {
        assert!(matches!(rx.try_recv(), Ok(Err(Error::StaleCommand(_)))), "writes replaced by another leader fail as stale");
    }
    for id in 1..=3 {
        assert_eq!(c.value(id, "fresh").as_deref(), Some("1"), "store {id}");
        assert_eq!(c.value(id, "stale0"), None, "store {id}");
    }
}
