//! The store loop: one OS thread that owns the [`Store`].
//!
//! Each round it waits for messages (or the next tick), drains everything queued
//! — Raft messages, writes, reads, status requests — ticks if a tick is due,
//! runs [`Store::run_round`] once for all of it, and hands the outgoing Raft
//! messages to the transport in two batches: a leader's appends and heartbeats
//! before the round's write, the rest after it. Batching at every step is where the
//! throughput comes from: one synced write per round, however many requests.
//!
//! The mailbox is bounded in effect: client requests (writes and reads) past
//! [`MAX_PENDING_REQUESTS`] waiting in it are refused with `ServerIsBusy` before
//! they are queued, so an overloaded store pushes back instead of growing memory
//! and latency without limit. Raft messages are never refused.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shoal_proto::{BackupFenceCmd, ChangePeers, ChangePeersCmd, MetaCmd, Mutation, RaftMessage, Region, RegionEpoch, SplitCmd};
use tokio::sync::oneshot;

use super::peer::{CmdResult, ReadCallback, RegionRead, WriteCallback};
use super::store::{LeaderReport, PeerStatus, Store};
use crate::error::{Error, Result};

/// Most messages taken from the mailbox in one round.
const MAX_MSGS_PER_ROUND: usize = 4096;
/// Client requests that may wait in the mailbox before new ones are refused.
pub const MAX_PENDING_REQUESTS: usize = 65_536;

pub enum StoreMsg {
    Raft(RaftMessage),
    Write { mutations: Vec<Mutation>, cb: WriteCallback },
    Read { key: Vec<u8>, cb: ReadCallback },
    LocalRegion { key: Vec<u8>, cb: ReadCallback },
    ReadRegion { region_id: u64, cb: ReadCallback },
    Split { region_id: u64, epoch: RegionEpoch, split: SplitCmd, cb: WriteCallback },
    Meta { cmd: MetaCmd, cb: WriteCallback },
    BackupFence { region_id: u64, fence: BackupFenceCmd, cb: WriteCallback },
    TransferLeader { region_id: u64, epoch: Option<RegionEpoch>, to_peer: u64 },
    ChangePeers { cmd: ChangePeersCmd, cb: WriteCallback },
    DestroyPeer { region_id: u64, peer_id: u64 },
    SnapshotStatus { region_id: u64, to_peer: u64, ok: bool },
    SnapshotGenerated { region_id: u64 },
    LeaderReports { cb: oneshot::Sender<HeartbeatInfo> },
    // The node is stopping: see `Store::set_leaving`.
    Leaving,
    Status { cb: oneshot::Sender<Vec<PeerStatus>> },
    Shutdown,
}

impl StoreMsg {
    /// Whether this message is a client request that counts against the limit.
    fn is_request(&self) -> bool {
        matches!(self, StoreMsg::Write { .. } | StoreMsg::Read { .. } | StoreMsg::LocalRegion { .. })
    }
}

/// What the heartbeat task reports: the regions this store leads, and its
/// peers that heard from no leader for a while.
#[derive(Clone, Debug, Default)]
pub struct HeartbeatInfo {
    pub leaders: Vec<LeaderReport>,
    pub idle: Vec<(Region, u64)>,
    /// Neighbouring stores that cannot take a region's leadership, stopping
    /// or silent (for a store handing its leaders away: see
    /// [`Store::unavailable_stores`]).
    pub unavailable_stores: BTreeSet<u64>,
}

/// A cheap, cloneable way to reach the store loop from any thread or task.
#[derive(Clone)]
pub struct StoreHandle {
    tx: Sender<StoreMsg>,
    /// Client requests sent and not yet taken by the loop.
    pending: Arc<AtomicUsize>,
}

impl StoreHandle {
    fn send(&self, msg: StoreMsg) -> Result<()> {
        if msg.is_request() && self.pending.fetch_add(1, Ordering::Relaxed) >= MAX_PENDING_REQUESTS {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            return Err(Error::ServerIsBusy(format!("{MAX_PENDING_REQUESTS} requests already wait for the store loop")));
        }
        self.tx.send(msg).map_err(|_| Error::Unavailable("store loop has stopped".into()))
    }

    async fn command(&self, msg: impl FnOnce(WriteCallback) -> StoreMsg) -> Result<CmdResult> {
        let (cb, rx) = oneshot::channel();
        self.send(msg(cb))?;
        rx.await.map_err(|_| Error::OutcomeUnknown("store loop dropped the command".into()))?
    }

    pub fn raft_messages(&self, msgs: Vec<RaftMessage>) -> Result<()> {
        for m in msgs {
            self.send(StoreMsg::Raft(m))?;
        }
        Ok(())
    }

    /// Proposes `mutations` (one region) and waits until they are applied.
    pub async fn write(&self, mutations: Vec<Mutation>) -> Result<()> {
        self.command(|cb| StoreMsg::Write { mutations, cb }).await.map(drop)
    }

    /// Proposes splitting `region_id` (still at `epoch`) and waits until it is
    /// applied, for `deadline` at most: a region that lost its quorum never
    /// applies it, and the caller (the heartbeat task) must go on.
    pub async fn split(&self, region_id: u64, epoch: RegionEpoch, split: SplitCmd, deadline: Duration) -> Result<CmdResult> {
        match tokio::time::timeout(deadline, self.command(|cb| StoreMsg::Split { region_id, epoch, split, cb })).await {
            Ok(result) => result,
            Err(_) => Err(Error::OutcomeUnknown(format!("the split of region {region_id} was not applied within {deadline:?}"))),
        }
    }

    /// Proposes a meta command (this store's meta peer must lead) and waits for its result.
    pub async fn meta(&self, cmd: MetaCmd) -> Result<CmdResult> {
        self.command(|cb| StoreMsg::Meta { cmd, cb }).await
    }

    /// Proposes setting or lifting a backup fence on `region_id` (this store's
    /// peer must lead) and waits until it is applied.
    pub async fn backup_fence(&self, region_id: u64, fence: BackupFenceCmd) -> Result<CmdResult> {
        self.command(|cb| StoreMsg::BackupFence { region_id, fence, cb }).await
    }

    /// Waits until this store may serve a linearizable read of all of `region_id`.
    pub async fn read_region(&self, region_id: u64) -> Result<RegionRead> {
        let (cb, rx) = oneshot::channel();
        self.send(StoreMsg::ReadRegion { region_id, cb })?;
        rx.await.map_err(|_| Error::Unavailable("store loop dropped the request".into()))?
    }

    /// The node is stopping: the store takes no leadership from now on and
    /// tells its neighbours, which offer it none.
    pub fn set_leaving(&self) -> Result<()> {
        self.send(StoreMsg::Leaving)
    }

    /// Asks the region's leader on this store to hand leadership to `to_peer`.
    pub fn transfer_leader(&self, region_id: u64, epoch: Option<RegionEpoch>, to_peer: u64) -> Result<()> {
        self.send(StoreMsg::TransferLeader { region_id, epoch, to_peer })
    }

    /// Proposes a membership change of `region_id` (still at `epoch`) and waits
    /// until it is applied.
    pub async fn change_peers(&self, region_id: u64, epoch: Option<RegionEpoch>, changes: ChangePeers) -> Result<CmdResult> {
        let cmd = ChangePeersCmd { region_id, epoch, changes: changes.changes };
        self.command(|cb| StoreMsg::ChangePeers { cmd, cb }).await
    }

    /// Destroys this store's peer `peer_id` of `region_id` (meta says it was removed).
    pub fn destroy_peer(&self, region_id: u64, peer_id: u64) -> Result<()> {
        self.send(StoreMsg::DestroyPeer { region_id, peer_id })
    }

    /// How sending a snapshot of `region_id` to `to_peer` ended.
    pub fn report_snapshot(&self, region_id: u64, to_peer: u64, ok: bool) -> Result<()> {
        self.send(StoreMsg::SnapshotStatus { region_id, to_peer, ok })
    }

    /// The regions this store leads (with writes since the last call) and its idle peers.
    pub async fn leader_reports(&self) -> Result<HeartbeatInfo> {
        let (cb, rx) = oneshot::channel();
        self.send(StoreMsg::LeaderReports { cb })?;
        rx.await.map_err(|_| Error::Unavailable("store loop dropped the request".into()))
    }

    /// Waits until this store may serve a linearizable read of `key`'s region;
    /// returns that region and the engine to read, as of that moment.
    pub async fn read_index(&self, key: Vec<u8>) -> Result<RegionRead> {
        let (cb, rx) = oneshot::channel();
        self.send(StoreMsg::Read { key, cb })?;
        rx.await.map_err(|_| Error::Unavailable("store loop dropped the request".into()))?
    }

    /// The region this store serves `key` from, without asking its leader (a
    /// stale read): `RegionNotFound` unless this store holds it, seeded. With
    /// the engine to read, as of that moment.
    pub async fn local_region(&self, key: Vec<u8>) -> Result<RegionRead> {
        let (cb, rx) = oneshot::channel();
        self.send(StoreMsg::LocalRegion { key, cb })?;
        rx.await.map_err(|_| Error::Unavailable("store loop dropped the request".into()))?
    }

    pub async fn status(&self) -> Result<Vec<PeerStatus>> {
        let (cb, rx) = oneshot::channel();
        self.send(StoreMsg::Status { cb })?;
        rx.await.map_err(|_| Error::Unavailable("store loop dropped the request".into()))
    }

    /// Asks the loop to stop after its current round.
    pub fn shutdown(&self) {
        let _ = self.tx.send(StoreMsg::Shutdown);
    }
}

/// Starts the store loop on its own thread. Outgoing Raft messages go to `outbox`.
/// The thread ends on `Shutdown`, or with an error if the engine fails — after
/// which the node must stop, since it can no longer persist what it acknowledges.
/// Snapshot messages go to `snap_outbox`, which streams their files first.
pub fn spawn(
    mut store: Store,
    tick: Duration,
    outbox: tokio::sync::mpsc::UnboundedSender<Vec<RaftMessage>>,
    snap_outbox: tokio::sync::mpsc::UnboundedSender<RaftMessage>,
) -> (StoreHandle, JoinHandle<Result<()>>) {
    let (tx, rx) = mpsc::channel();
    let generated = tx.clone();
    store.snap_manager().on_generated(Box::new(move |region_id| {
        let _ = generated.send(StoreMsg::SnapshotGenerated { region_id });
    }));
    let pending = Arc::new(AtomicUsize::new(0));
    let counter = pending.clone();
    let thread = std::thread::Builder::new()
        .name(format!("store-{}", store.store_id()))
        .spawn(move || {
            let res = run(&mut store, &rx, tick, &outbox, &snap_outbox, &counter);
            store.shutdown();
            if let Err(e) = &res {
                tracing::error!(error = %e, "store loop failed");
            }
            res
        })
        .expect("spawning the store thread");
    (StoreHandle { tx, pending }, thread)
}

fn run(
    store: &mut Store,
    rx: &Receiver<StoreMsg>,
    tick: Duration,
    outbox: &tokio::sync::mpsc::UnboundedSender<Vec<RaftMessage>>,
    snap_outbox: &tokio::sync::mpsc::UnboundedSender<RaftMessage>,
    pending: &AtomicUsize,
) -> Result<()> {
    let mut next_tick = Instant::now() + tick;
    loop {
        let timeout = next_tick.saturating_duration_since(Instant::now());
        let first = match rx.recv_timeout(timeout) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        };
        let mut stop = false;
        for msg in first.into_iter().chain(std::iter::from_fn(|| rx.try_recv().ok()).take(MAX_MSGS_PER_ROUND)) {
            if msg.is_request() {
                pending.fetch_sub(1, Ordering::Relaxed);
            }
            match msg {
                StoreMsg::Raft(m) => store.on_raft_message(m),
                StoreMsg::ReadRegion { region_id, cb } => store.read_region(region_id, cb),
                StoreMsg::Split { region_id, epoch, split, cb } => store.propose_split(region_id, epoch, split, cb),
                StoreMsg::Meta { cmd, cb } => store.propose_meta(cmd, cb),
                StoreMsg::BackupFence { region_id, fence, cb } => store.propose_backup_fence(region_id, fence, cb),
                StoreMsg::TransferLeader { region_id, epoch, to_peer } => store.transfer_leader(region_id, epoch, to_peer),
                StoreMsg::ChangePeers { cmd, cb } => store.propose_conf_change(cmd, cb),
                StoreMsg::DestroyPeer { region_id, peer_id } => store.destroy_peer(region_id, peer_id)?,
                StoreMsg::SnapshotStatus { region_id, to_peer, ok } => store.report_snapshot(region_id, to_peer, ok),
                StoreMsg::SnapshotGenerated { region_id } => store.snapshot_generated(region_id),
                StoreMsg::Leaving => store.set_leaving(),
                StoreMsg::LeaderReports { cb } => {
                    let idle = store.idle_peers();
                    let _ =
                        cb.send(HeartbeatInfo { leaders: store.leader_reports(), idle, unavailable_stores: store.unavailable_stores() });
                }
                StoreMsg::Write { mutations, cb } => store.propose_write(mutations, cb),
                StoreMsg::Read { key, cb } => store.read(&key, cb),
                StoreMsg::LocalRegion { key, cb } => {
                    let _ = cb.send(store.local_region(&key));
                }
                StoreMsg::Status { cb } => {
                    let _ = cb.send(store.status());
                }
                StoreMsg::Shutdown => stop = true,
            }
        }
        if Instant::now() >= next_tick {
            store.tick()?;
            next_tick += tick;
            if next_tick < Instant::now() {
                next_tick = Instant::now() + tick; // fell behind: do not burst ticks
            }
        }
        let mut send = |msgs: Vec<RaftMessage>| {
            if outbox.send(msgs).is_err() {
                tracing::warn!("transport has stopped; dropping raft messages");
            }
        };
        let out = store.run_round(&mut send)?;
        if !out.is_empty() {
            send(out);
        }
        for m in store.take_snapshot_messages() {
            let (region_id, to) = (m.region_id, m.to_store_id);
            if snap_outbox.send(m).is_err() {
                tracing::warn!(region = region_id, to_store = to, "snapshot sender has stopped; dropping a snapshot");
            }
        }
        if stop {
            store.engine().flush()?;
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handle whose loop takes messages and never answers them: a region
    /// that cannot commit.
    fn unanswered() -> (StoreHandle, Receiver<StoreMsg>) {
        let (tx, rx) = mpsc::channel();
        (StoreHandle { tx, pending: Arc::new(AtomicUsize::new(0)) }, rx)
    }

    #[tokio::test]
    async fn a_split_that_is_never_applied_is_given_up_after_its_deadline() {
        let (store, _mailbox) = unanswered();
        let split = SplitCmd { split_key: b"m".to_vec(), new_region_id: 9, new_peer_ids: vec![10, 11, 12] };
        let waited =
            tokio::time::timeout(Duration::from_secs(30), store.split(2, RegionEpoch::default(), split, Duration::from_millis(50))).await;
        match waited {
            Ok(Err(Error::OutcomeUnknown(_))) => {}
            Ok(other) => panic!("expected OutcomeUnknown after the deadline, got {other:?}"),
            Err(_) => panic!("the split call did not return within 30 s of a 50 ms deadline"),
        }
    }
}
