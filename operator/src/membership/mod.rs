//! The membership driver: what the operator does to the cluster's stores as it
//! scales, as a pure function ([`plan()`]) of the spec, what the operator
//! remembers in the status ([`Memory`]) and what it observed ([`Observed`]).
//!
//! One call returns the size the StatefulSet should have and at most one
//! [`Step`] through the cluster's Admin API (or one volume to delete). The
//! reconciler carries the step out and calls again on the next round, so the
//! driver never waits on anything: it looks at what is there and picks the
//! next safe thing.
//!
//! The flow, in order of priority:
//! 1. **Bootstrap.** No StatefulSet yet: create it with the initial members
//!    (`spec.replicas`). Once every one of them is `Up` and heard from, the
//!    cluster is *bootstrapped*: from then on an empty pod joins instead of
//!    bootstrapping (the ConfigMap's cluster state becomes `existing`). That
//!    never goes back: the status, the ConfigMap and any volume of the cluster
//!    left from before (a `KvCluster` re-created over kept volumes) each keep
//!    it bootstrapped, and then the StatefulSet comes back with a pod for
//!    every kept volume.
//! 2. **Join.** Every pod below the target has one live store; a `Pending`
//!    one (a new pod, or a pod whose volume was lost) is joined — one store
//!    seeding at a time — and placement seeds it by snapshot until it is `Up`.
//! 3. **Replace.** A store left behind by a pod whose volume was lost (an
//!    older store of the same pod name) is drained once its successor is up,
//!    then removed. A store `Down` (silent past the cluster's
//!    `maxStoreDownTime`, so meta has re-replicated what it could) whose pod
//!    cannot be scheduled because its volume is pinned to a node that no
//!    longer exists ([`Observed::stranded`]) gets a new volume
//!    ([`Step::ReplaceVolume`]: its claim and pod are deleted); the pod comes
//!    back empty as a new store, which joins, and the old one is then
//!    replaced as above.
//! 4. **Zones.** A store whose `zone` label is not its pod's Node's zone gets
//!    it ([`Step::LabelStore`]), when nothing else is to be done: placement
//!    spreads each region's replicas over the zones.
//! 5. **Scale in.** The highest ordinals first, one at a time: drain the store
//!    (refused below the replication factor), remove it once it holds no
//!    peer, and only when every store above the target is tombstoned shrink
//!    the StatefulSet; then delete the retired pods' volumes. A volume whose
//!    store was not tombstoned is never deleted.
//! 6. A new `spec.replicas` while a scaling runs waits until it is done
//!    ([`crate::crd::ScalingStatus`]), with one exception: raised during a
//!    scale-in before any store in the way was removed, it calls the scale-in
//!    off: the store being drained is put back (`CancelDrain`) and the target
//!    becomes the new size. A drain whose region count stops falling, or a
//!    join whose region count stops rising, for its stall timeout sets
//!    `Degraded` (`DrainStalled`, `JoinStalled`) with what to look at; so do a
//!    store down (`StoreDown`) and a drain refused (`DrainRefused`), each
//!    saying what to do.
//!
//! Safety rules every plan keeps (checked by the property tests in
//! `sim_tests.rs` over random clusters): never drain a store when fewer than
//! the replication factor would stay `Up`/`Joining`; never remove a store that
//! holds a peer or a leader; never shrink the StatefulSet past a pod whose
//! store is not tombstoned; never delete the volume of such a pod; at most one
//! store joining and one draining at a time.

mod plan;
#[cfg(test)]
mod sim_tests;

pub use plan::plan;

use crate::crd::ScalingStatus;

/// A store's state as the cluster reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StoreState {
    Pending,
    Joining,
    Up,
    Draining,
    Down,
    Tombstone,
}

impl StoreState {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreState::Pending => "Pending",
            StoreState::Joining => "Joining",
            StoreState::Up => "Up",
            StoreState::Draining => "Draining",
            StoreState::Down => "Down",
            StoreState::Tombstone => "Tombstone",
        }
    }

    /// States that count toward the replication factor (targets placement may use).
    pub fn is_serving(self) -> bool {
        matches!(self, StoreState::Up | StoreState::Joining)
    }
}

/// One store, as `ListStores` (and `StoreStatus` for a draining one) report it.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedStore {
    pub id: u64,
    /// The name it registered under: its pod's name.
    pub name: String,
    pub state: StoreState,
    /// Peers it holds (the meta region's included when the cluster says so).
    pub regions: u64,
    pub leaders: u64,
    /// Whether the meta leader has heard a heartbeat from it.
    pub heard: bool,
    /// Its `zone` label, if it has one.
    pub zone: Option<String>,
}

/// What the operator saw this round.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// The StatefulSet's `spec.replicas`; `None` before it exists.
    pub sts_replicas: Option<i32>,
    /// Ordinals of the pods that exist.
    pub pods: Vec<i32>,
    /// Ordinals of the data volumes (PVCs) that exist.
    pub pvcs: Vec<i32>,
    /// Ordinals of pods that cannot be scheduled because their volume is
    /// pinned to a node that no longer exists: that volume is gone for good.
    pub stranded: Vec<i32>,
    /// The zone (`topology.kubernetes.io/zone`) of the Node each running pod
    /// is on, by ordinal, where the Node has one.
    pub pod_zones: std::collections::BTreeMap<i32, String>,
    /// The stores, or why the cluster could not be asked.
    pub stores: Result<Vec<ObservedStore>, String>,
    /// Whether the ConfigMap already tells empty pods to join
    /// (`initial-cluster-state: existing`).
    pub formed: bool,
    /// Unix seconds.
    pub now: i64,
}

/// A drain or a join being watched for progress: a drain progresses when
/// the store's peer count falls, a join when it rises.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreProgress {
    pub store_id: u64,
    /// Peers it held when its count last moved the right way.
    pub regions: u64,
    /// Unix seconds of that.
    pub since: i64,
}

/// What the operator remembers between rounds (kept in the status).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Memory {
    pub initial_members: Option<i32>,
    pub bootstrapped: bool,
    pub scaling: Option<ScalingStatus>,
    pub drain: Option<StoreProgress>,
    pub join: Option<StoreProgress>,
}

/// What the spec asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desired {
    pub replicas: i32,
    pub replication_factor: i32,
    /// Seconds a drain may go without progress before `Degraded`.
    pub drain_stall_secs: i64,
    /// Seconds a join (a store being seeded) may go without progress before `Degraded`.
    pub join_stall_secs: i64,
}

/// The one thing to do through the cluster's Admin API (or to a volume).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    JoinStore {
        store_id: u64,
        pod: String,
    },
    DrainStore {
        store_id: u64,
        pod: String,
    },
    RemoveStore {
        store_id: u64,
        pod: String,
    },
    /// A scale-in called off: the store goes back to `Up`.
    CancelDrain {
        store_id: u64,
        pod: String,
    },
    DeleteVolume {
        ordinal: i32,
    },
    /// A down store's pod is stranded (its volume's node is gone): delete its
    /// claim and pod, so that it comes back with a new volume as a new store.
    ReplaceVolume {
        ordinal: i32,
        store_id: u64,
    },
    /// The store's `zone` label becomes its pod's Node's zone.
    LabelStore {
        store_id: u64,
        pod: String,
        zone: String,
    },
}

impl Step {
    /// Its label in metrics (`operation`), and the reason and action of its Event.
    pub fn labels(&self) -> (&'static str, &'static str, &'static str) {
        match self {
            Step::JoinStore { .. } => ("join", "JoinStore", "Join"),
            Step::DrainStore { .. } => ("drain", "DrainStore", "Drain"),
            Step::RemoveStore { .. } => ("remove", "RemoveStore", "Remove"),
            Step::CancelDrain { .. } => ("cancel_drain", "CancelDrain", "CancelDrain"),
            Step::DeleteVolume { .. } => ("delete_volume", "DeleteVolume", "Delete"),
            Step::ReplaceVolume { .. } => ("replace_volume", "ReplaceVolume", "Replace"),
            Step::LabelStore { .. } => ("label", "LabelStore", "Label"),
        }
    }
}

/// What the cluster is doing, for `status.phase`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Bootstrapping,
    Running,
    ScalingOut,
    ScalingIn,
    Replacing,
    Degraded,
    /// `spec.paused`: the operator changes nothing.
    Paused,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Bootstrapping => "Bootstrapping",
            Phase::Running => "Running",
            Phase::ScalingOut => "ScalingOut",
            Phase::ScalingIn => "ScalingIn",
            Phase::Replacing => "Replacing",
            Phase::Degraded => "Degraded",
            Phase::Paused => "Paused",
        }
    }
}

/// The driver's decision for this round.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Pods the StatefulSet should have.
    pub sts_replicas: i32,
    /// What to remember (status): initial members, bootstrapped, the scaling
    /// and drain in progress.
    pub memory: Memory,
    pub step: Option<Step>,
    pub phase: Phase,
    /// What it is doing or waiting for, in words (`Progressing`'s message);
    /// `None` when there is nothing to do.
    pub progress: Option<String>,
    /// Why the cluster needs attention (`Degraded`'s reason and message).
    pub degraded: Option<(&'static str, String)>,
}
