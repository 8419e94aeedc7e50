//! Leaving gracefully: on SIGTERM, before it stops serving, a node hands the
//! leadership of every region it leads to another voter, so that clients
//! see a `NotLeader` (which they follow at once) rather than an election
//! timeout's worth of silence, as a rolling restart or a drained pod needs.
//!
//! [`move_leaders_away`] asks the store loop which regions it leads, orders a
//! leader transfer for each to a caught-up voter on another store (spread by
//! region id), and asks again until none is left or the time is up; a region
//! still led here after a few rounds is offered to its next voter (the first
//! may be down). The node keeps serving meanwhile, so that the transfers can
//! finish and requests in flight are answered.

use std::time::Duration;

use crate::raftstore::store_loop::StoreHandle;

/// How often the remaining leaders are looked at again.
const RECHECK: Duration = Duration::from_millis(200);
/// Rounds a transfer gets before the next voter is tried.
const ROUNDS_PER_CANDIDATE: u64 = 3;

/// Moves every leader off this store; how many it still leads after `timeout`.
pub async fn move_leaders_away(store: &StoreHandle, store_id: u64, timeout: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut round = 0u64;
    loop {
        let leaders = match store.leader_reports().await {
            Ok(info) => info.leaders,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the regions to hand over");
                return 0;
            }
        };
        if leaders.is_empty() {
            tracing::info!("no region led here any more");
            return 0;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(leaders = leaders.len(), "stopping while still leading regions: they will elect a new leader");
            return leaders.len();
        }
        for report in &leaders {
            let region = &report.region;
            let candidates: Vec<u64> = region
                .peers
                .iter()
                .filter(|p| !p.is_learner && p.store_id != store_id && !report.pending_peers.contains(&p.id))
                .map(|p| p.id)
                .collect();
            if candidates.is_empty() {
                continue;
            }
            let pick = region.id + round / ROUNDS_PER_CANDIDATE;
            let to = candidates[(pick % candidates.len() as u64) as usize];
            if let Err(e) = store.transfer_leader(region.id, region.epoch, to) {
                tracing::warn!(region = region.id, error = %e, "leader transfer not ordered");
            }
        }
        round += 1;
        tokio::time::sleep(RECHECK).await;
    }
}
