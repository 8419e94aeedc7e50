//! Stores that stop together (`Store::set_leaving`, as a node does on
//! SIGTERM before it hands its leaders away) over the in-memory network of
//! [`common::Cluster`]: a stopping store takes no leadership, even when a
//! transfer to it was ordered before its leader knew, and once its pings have
//! said so it is offered none; a store that is not stopping still is. Nor is a
//! store that fell silent offered leadership.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Cluster, ok, put};
use shoal_node::raftstore::bootstrap::FIRST_REGION_ID;

/// An election timeout in the tests' configuration, in ticks.
const ELECTION: usize = 10;

/// Orders the leader of the first region to hand it to store `to`'s peer.
fn transfer(c: &mut Cluster, leader: u64, to: u64) {
    let region = c.region(leader, FIRST_REGION_ID).unwrap();
    let to_peer = region.peers.iter().find(|p| p.store_id == to).unwrap().id;
    c.store(leader).transfer_leader(FIRST_REGION_ID, region.epoch, to_peer);
}

#[test]
fn a_stopping_store_refuses_leadership_and_is_offered_none_once_its_pings_say_so() {
    let mut c = Cluster::new(3);
    let leader = c.wait_leader(FIRST_REGION_ID);
    let others: Vec<u64> = (1..=3).filter(|&s| s != leader).collect();

    // Ordered before the leader heard it is stopping: the target refuses.
    c.store(others[0]).set_leaving();
    transfer(&mut c, leader, others[0]);
    c.tick(3 * ELECTION);
    assert_eq!(c.leaders(FIRST_REGION_ID), vec![leader], "a stopping store took leadership");
    assert_eq!(c.store(leader).unavailable_stores(), [others[0]].into(), "its pings said it is stopping");

    // Every store stopping: nobody is offered the region, which keeps serving.
    c.store(leader).set_leaving();
    c.store(others[1]).set_leaving();
    c.tick(2);
    assert_eq!(c.store(leader).unavailable_stores(), others.iter().copied().collect());
    for &to in &others {
        transfer(&mut c, leader, to);
    }
    c.tick(3 * ELECTION);
    assert_eq!(c.leaders(FIRST_REGION_ID), vec![leader]);
    ok(c.write(leader, put("still", "served")));
}

#[test]
fn a_stopping_leader_hands_its_region_to_a_store_that_is_not_stopping() {
    let mut c = Cluster::new(3);
    let leader = c.wait_leader(FIRST_REGION_ID);
    let to = (1..=3).find(|&s| s != leader).unwrap();
    c.store(leader).set_leaving();
    c.tick(2);
    transfer(&mut c, leader, to);
    c.tick_until("leadership moves off the stopping store", |c| c.leaders(FIRST_REGION_ID) == vec![to]);
    // And it does not come back: the stopping store refuses it.
    transfer(&mut c, to, leader);
    c.tick(3 * ELECTION);
    assert_eq!(c.leaders(FIRST_REGION_ID), vec![to]);
}

#[test]
fn a_leader_offers_no_leadership_to_a_silent_store_and_keeps_taking_writes() {
    let mut c = Cluster::new(3);
    let leader = c.wait_leader(FIRST_REGION_ID);
    let gone = (1..=3).find(|&s| s != leader).unwrap();
    c.crash(gone);
    c.tick(ELECTION + 2);
    assert_eq!(c.store(leader).unavailable_stores(), [gone].into(), "silent for an election timeout");
    // Meta may order this: it hears of a dead store only after its heartbeats stop
    // for `--max-store-down-time-secs`. A transfer under way would hold the
    // region's writes (raft drops proposals) until it timed out.
    transfer(&mut c, leader, gone);
    ok(c.write(leader, put("during", "the order")));
    c.tick(3 * ELECTION);
    assert_eq!(c.leaders(FIRST_REGION_ID), vec![leader]);
}
