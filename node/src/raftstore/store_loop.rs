//! The store loop: one OS thread that owns the [`Store`].
//!
//! Each round it waits for messages (or the next tick), drains everything queued
//! — Raft messages, writes, reads, status requests — ticks if a tick is due,
//! runs [`Store::handle_readies`] once for all of it, and hands the outgoing Raft
//! messages to the transport as one batch. Batching at every step is where the
//! throughput comes from: one synced write per round, however many requests.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shoal_proto::{Mutation, RaftMessage};
use tokio::sync::oneshot;

use super::peer::{ReadCallback, WriteCallback};
use super::store::{PeerStatus, Store};
use crate::error::{Error, Result};

/// Most messages taken from the mailbox in one round.
const MAX_MSGS_PER_ROUND: usize = 4096;

pub enum StoreMsg {
    Raft(RaftMessage),
    Write { mutations: Vec<Mutation>, cb: WriteCallback },
    Read { key: Vec<u8>, cb: ReadCallback },
    Status { cb: oneshot::Sender<Vec<PeerStatus>> },
    Shutdown,
}

/// A cheap, cloneable way to reach the store loop from any thread or task.
#[derive(Clone)]
pub struct StoreHandle {
    tx: Sender<StoreMsg>,
}

impl StoreHandle {
    fn send(&self, msg: StoreMsg) -> Result<()> {
        self.tx.send(msg).map_err(|_| Error::Unavailable("store loop has stopped".into()))
    }

    pub fn raft_messages(&self, msgs: Vec<RaftMessage>) -> Result<()> {
        for m in msgs {
            self.send(StoreMsg::Raft(m))?;
        }
        Ok(())
    }

    /// Proposes `mutations` (one region) and waits until they are applied.
    pub async fn write(&self, mutations: Vec<Mutation>) -> Result<()> {
        let (cb, rx) = oneshot::channel();
        self.send(StoreMsg::Write { mutations, cb })?;
        rx.await.map_err(|_| Error::OutcomeUnknown("store loop dropped the write".into()))?
    }

    /// Waits until this store may serve a linearizable read of `key`'s region;
    /// returns that region.
    pub async fn read_index(&self, key: Vec<u8>) -> Result<shoal_proto::Region> {
        let (cb, rx) = oneshot::channel();
        self.send(StoreMsg::Read { key, cb })?;
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
pub fn spawn(
    mut store: Store,
    tick: Duration,
    outbox: tokio::sync::mpsc::UnboundedSender<Vec<RaftMessage>>,
) -> (StoreHandle, JoinHandle<Result<()>>) {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(format!("store-{}", store.store_id()))
        .spawn(move || {
            let res = run(&mut store, &rx, tick, &outbox);
            store.shutdown();
            if let Err(e) = &res {
                tracing::error!(error = %e, "store loop failed");
            }
            res
        })
        .expect("spawning the store thread");
    (StoreHandle { tx }, thread)
}

fn run(
    store: &mut Store,
    rx: &Receiver<StoreMsg>,
    tick: Duration,
    outbox: &tokio::sync::mpsc::UnboundedSender<Vec<RaftMessage>>,
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
            match msg {
                StoreMsg::Raft(m) => store.on_raft_message(m),
                StoreMsg::Write { mutations, cb } => store.propose_write(mutations, cb),
                StoreMsg::Read { key, cb } => store.read(&key, cb),
                StoreMsg::Status { cb } => {
                    let _ = cb.send(store.status());
                }
                StoreMsg::Shutdown => stop = true,
            }
        }
        if Instant::now() >= next_tick {
            store.tick();
            next_tick += tick;
            if next_tick < Instant::now() {
                next_tick = Instant::now() + tick; // fell behind: do not burst ticks
            }
        }
        let out = store.handle_readies()?;
        if !out.is_empty() && outbox.send(out).is_err() {
            tracing::warn!("transport has stopped; dropping raft messages");
        }
        if stop {
            store.engine().flush()?;
            return Ok(());
        }
    }
}
