//! Leaving gracefully: on SIGTERM, before it stops serving, a node hands the
//! leadership of every region it leads to another voter, so that clients
//! see a `NotLeader` (which they follow at once) rather than an election
//! timeout's worth of silence, as a rolling restart or a drained pod needs.
//!
//! [`move_leaders_away`] first marks the store *leaving*: it takes no
//! leadership from then on, and its store pings tell its neighbours, which
//! offer it none. It then asks the store loop which regions it leads, orders
//! a leader transfer for each to a caught-up voter on another store that is
//! neither leaving nor silent (spread by region id), and asks again until none
//! is left, none has a voter to go to (every other store is stopping or down,
//! as when a whole cluster is stopped: their regions elect again when they
//! start), or the time is up; a region still led here after a few rounds is
//! offered to its next voter (the first may be down). The node keeps serving
//! meanwhile, so that the transfers can finish and requests in flight are
//! answered.

use std::time::Duration;

use crate::raftstore::store_loop::StoreHandle;

/// How often the remaining leaders are looked at again.
const RECHECK: Duration = Duration::from_millis(200);
/// Rounds a transfer gets before the next voter is tried.
const ROUNDS_PER_CANDIDATE: u64 = 3;

/// How handing the leaders away ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Evacuation {
    /// No region is led here any more.
    Done,
    /// These regions are still led here, and none has a voter on a store
    /// that is neither stopping nor silent.
    NowhereToGo(usize),
    /// These regions were still led here when the time was up.
    TimedOut(usize),
}

/// Moves every leader off this store, within `timeout`.
pub async fn move_leaders_away(store: &StoreHandle, store_id: u64, timeout: Duration) -> Evacuation {
    let deadline = tokio::time::Instant::now() + timeout;
    if let Err(e) = store.set_leaving() {
        tracing::warn!(error = %e, "cannot mark the store leaving");
        return Evacuation::Done;
    }
    let mut round = 0u64;
    loop {
        let info = match store.leader_reports().await {
            Ok(info) => info,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the regions to hand over");
                return Evacuation::Done;
            }
        };
        if info.leaders.is_empty() {
            tracing::info!("no region led here any more");
            return Evacuation::Done;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(leaders = info.leaders.len(), "stopping while still leading regions: they will elect a new leader");
            return Evacuation::TimedOut(info.leaders.len());
        }
        let mut ordered = 0;
        for report in &info.leaders {
            let region = &report.region;
            let candidates: Vec<u64> = region
                .peers
                .iter()
                .filter(|p| !p.is_learner && p.store_id != store_id && !report.pending_peers.contains(&p.id))
                .filter(|p| !info.unavailable_stores.contains(&p.store_id))
                .map(|p| p.id)
                .collect();
            if candidates.is_empty() {
                continue;
            }
            let pick = region.id + round / ROUNDS_PER_CANDIDATE;
            let to = candidates[(pick % candidates.len() as u64) as usize];
            match store.transfer_leader(region.id, region.epoch, to) {
                Ok(()) => ordered += 1,
                Err(e) => tracing::warn!(region = region.id, error = %e, "leader transfer not ordered"),
            }
        }
        if ordered == 0 {
            tracing::info!(
                leaders = info.leaders.len(),
                unavailable = ?info.unavailable_stores,
                "no voter to hand the remaining leaders to: the other stores are stopping or down"
            );
            return Evacuation::NowhereToGo(info.leaders.len());
        }
        round += 1;
        tokio::time::sleep(RECHECK).await;
    }
}
