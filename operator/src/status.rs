//! The status a round writes: replicas, the stores, the phase, the driver's
//! memory and the three conditions. Pure: built from the round's plan and
//! observations, and from the previous conditions (a condition keeps its
//! `lastTransitionTime` while its status stays the same).
//!
//! | condition | True when |
//! |---|---|
//! | `Available` | the cluster answers and at least `replicationFactor` stores are `Up` |
//! | `Progressing` | the operator is bootstrapping, scaling or replacing a store (message: the current step); False with reason `Paused` while `spec.paused` |
//! | `Degraded` | something needs a person: an invalid spec, a refused or stalled drain, a stalled join, a store down, the cluster unreachable |

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::build::Names;
use crate::crd::{KvClusterStatus, StoreEntry, StoreProgressStatus};
use crate::membership::{Memory, Observed, Phase, Plan, StoreProgress, StoreState};

/// What one round learned, for the status.
pub struct RoundOutcome<'a> {
    pub names: &'a Names,
    pub generation: Option<i64>,
    pub replication_factor: i32,
    pub previous: &'a KvClusterStatus,
    pub plan: &'a Plan,
    pub observed: &'a Observed,
    /// StatefulSet `status.replicas` and `readyReplicas`.
    pub sts_status: (i32, i32),
    /// Why the step was refused or failed, if it was: reason and message.
    pub step_error: Option<(&'static str, String)>,
    pub now: Timestamp,
}

/// The stores as observed (tombstones left out), or as last seen when the
/// cluster could not be reached; and the `Available` condition they make.
fn stores_and_availability(o: &RoundOutcome<'_>) -> (Vec<StoreEntry>, (bool, &'static str, String)) {
    let mut stores: Vec<StoreEntry> = match &o.observed.stores {
        Ok(stores) => stores
            .iter()
            .filter(|s| s.state != StoreState::Tombstone)
            .map(|s| StoreEntry {
                pod: s.name.clone(),
                store_id: s.id,
                state: s.state.as_str().into(),
                regions: s.regions,
                leaders: s.leaders,
            })
            .collect(),
        // Unreachable: keep what was last seen rather than show nothing.
        Err(_) => o.previous.stores.clone(),
    };
    stores.sort_by_key(|a| (o.names.ordinal_of(&a.pod), a.store_id));
    let up = stores.iter().filter(|s| s.state == "Up").count();
    let available = match &o.observed.stores {
        Err(e) => (false, "ClusterUnreachable", e.clone()),
        Ok(_) if up >= o.replication_factor as usize => (true, "Serving", format!("{up} of {} stores up", stores.len())),
        Ok(_) => (false, "TooFewStores", format!("{up} stores up, fewer than the replication factor {}", o.replication_factor)),
    };
    (stores, available)
}

/// The status of a paused cluster (`spec.paused`): the stores, replicas and
/// `Available` as observed; `Progressing` false with reason `Paused`; the
/// driver's memory and `Degraded` as before (nothing was done).
pub fn paused(o: &RoundOutcome<'_>) -> KvClusterStatus {
    let (stores, available) = stores_and_availability(o);
    let progressing = (false, "Paused", "spec.paused is true: the operator changes nothing until it is unset".to_string());
    let mut status = o.previous.clone();
    let keep_degraded = o.previous.conditions.iter().find(|c| c.type_ == "Degraded").cloned();
    let degraded = keep_degraded.unwrap_or_else(|| condition(o, "Degraded", (false, "AsExpected", "nothing needs attention".into())));
    status.conditions = vec![condition(o, "Available", available), condition(o, "Progressing", progressing), degraded];
    status.stores = stores;
    status.replicas = o.sts_status.0;
    status.ready_replicas = o.sts_status.1;
    status.selector = o.names.selector_string();
    status.phase = Some(Phase::Paused.as_str().into());
    status.observed_generation = o.generation;
    status
}

pub fn status(o: &RoundOutcome<'_>) -> KvClusterStatus {
    let plan = o.plan;
    let (stores, available) = stores_and_availability(o);
    let up = stores.iter().filter(|s| s.state == "Up").count();
    let progressing = match &plan.progress {
        Some(p) => (true, plan_reason(plan), p.clone()),
        None => (false, "Reconciled", format!("{} stores up; nothing to do", up)),
    };
    let degraded = match (&o.step_error, &plan.degraded) {
        (Some((reason, e)), _) => (true, *reason, e.clone()),
        (None, Some((reason, message))) => (true, *reason, message.clone()),
        (None, None) => (false, "AsExpected", "nothing needs attention".to_string()),
    };
    let phase = if o.step_error.is_some() { Phase::Degraded } else { plan.phase };
    let conditions =
        vec![condition(o, "Available", available), condition(o, "Progressing", progressing), condition(o, "Degraded", degraded)];
    KvClusterStatus {
        replicas: o.sts_status.0,
        ready_replicas: o.sts_status.1,
        selector: o.names.selector_string(),
        phase: Some(phase.as_str().into()),
        conditions,
        stores,
        initial_members: plan.memory.initial_members,
        bootstrapped: plan.memory.bootstrapped,
        scaling: plan.memory.scaling.clone(),
        drain: progress_status(plan.memory.drain.as_ref(), o.previous.drain.as_ref(), o),
        join: progress_status(plan.memory.join.as_ref(), o.previous.join.as_ref(), o),
        observed_generation: o.generation,
        restore: o.previous.restore.clone(),
    }
}

/// The status an invalid spec gets: everything as before, `Degraded` with the reason.
pub fn invalid(previous: &KvClusterStatus, names: &Names, generation: Option<i64>, message: &str, now: Timestamp) -> KvClusterStatus {
    degraded(previous, names, generation, "InvalidSpec", message, now)
}

/// The status a round that failed gets (an API call refused, the cluster
/// unreachable): everything as before, `Degraded` with `reason` and `message`.
pub fn degraded(
    previous: &KvClusterStatus,
    names: &Names,
    generation: Option<i64>,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> KvClusterStatus {
    let mut status = previous.clone();
    status.selector = names.selector_string();
    status.phase = Some(Phase::Degraded.as_str().into());
    status.observed_generation = generation;
    let since = previous
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded" && c.status == "True")
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    let degraded = Condition {
        type_: "Degraded".into(),
        status: "True".into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: since,
        observed_generation: generation,
    };
    status.conditions.retain(|c| c.type_ != "Degraded");
    status.conditions.push(degraded);
    status
}

fn plan_reason(plan: &Plan) -> &'static str {
    match plan.phase {
        Phase::Degraded => match &plan.memory.scaling {
            Some(s) if s.to > s.from => "ScalingOut",
            Some(_) => "ScalingIn",
            None => "Replacing",
        },
        p => p.as_str(),
    }
}

fn progress_status(d: Option<&StoreProgress>, previous: Option<&StoreProgressStatus>, o: &RoundOutcome<'_>) -> Option<StoreProgressStatus> {
    let d = d?;
    // The pod from this round's stores, else from the last status (a round
    // that could not reach the cluster keeps the drain or join it is watching).
    let pod = o
        .observed
        .stores
        .as_ref()
        .ok()
        .and_then(|stores| stores.iter().find(|s| s.id == d.store_id).map(|s| s.name.clone()))
        .or_else(|| previous.filter(|p| p.store_id == d.store_id).map(|p| p.pod.clone()))
        .unwrap_or_default();
    let since = Timestamp::from_second(d.since).map(|t| t.to_string()).unwrap_or_default();
    Some(StoreProgressStatus { store_id: d.store_id, pod, regions: d.regions, since })
}

fn condition(o: &RoundOutcome<'_>, type_: &str, (ok, reason, message): (bool, &str, String)) -> Condition {
    let status = if ok { "True" } else { "False" };
    let since = o
        .previous
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(o.now));
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time: since,
        observed_generation: o.generation,
    }
}

fn progress(p: &StoreProgressStatus) -> StoreProgress {
    StoreProgress { store_id: p.store_id, regions: p.regions, since: p.since.parse::<Timestamp>().map(|t| t.as_second()).unwrap_or(0) }
}

/// Reads the driver's memory back from a status.
pub fn memory(status: &KvClusterStatus) -> Memory {
    Memory {
        initial_members: status.initial_members,
        bootstrapped: status.bootstrapped,
        scaling: status.scaling.clone(),
        drain: status.drain.as_ref().map(progress),
        join: status.join.as_ref().map(progress),
    }
}

/// A JSON merge patch that sets the whole status: every optional field is
/// written, `null` when absent, so that a cleared field is cleared.
pub fn merge_patch(status: &KvClusterStatus) -> Value {
    json!({ "status": {
        "replicas": status.replicas,
        "readyReplicas": status.ready_replicas,
        "selector": status.selector,
        "phase": status.phase,
        "conditions": status.conditions,
        "stores": status.stores,
        "initialMembers": status.initial_members,
        "bootstrapped": status.bootstrapped,
        "scaling": status.scaling,
        "drain": status.drain,
        "join": status.join,
        "observedGeneration": status.observed_generation,
    }})
}
