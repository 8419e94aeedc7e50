//! [`plan`]: observed cluster + spec → the StatefulSet size and the next step.
//! The flow and the safety rules are described in the module above.

use std::collections::BTreeMap;

use super::{Desired, Memory, Observed, ObservedStore, Phase, Plan, Step, StoreProgress, StoreState};
use crate::build::Names;
use crate::crd::ScalingStatus;

/// The stores of one cluster arranged by pod ordinal.
struct View<'a> {
    /// For each ordinal, its live (not tombstoned) stores, newest (highest id) last.
    by_ordinal: BTreeMap<i32, Vec<&'a ObservedStore>>,
    all: &'a [ObservedStore],
}

impl<'a> View<'a> {
    fn new(names: &'a Names, stores: &'a [ObservedStore]) -> View<'a> {
        let mut by_ordinal: BTreeMap<i32, Vec<&ObservedStore>> = BTreeMap::new();
        for s in stores.iter().filter(|s| s.state != StoreState::Tombstone) {
            if let Some(o) = names.ordinal_of(&s.name) {
                by_ordinal.entry(o).or_default().push(s);
            }
        }
        for list in by_ordinal.values_mut() {
            list.sort_by_key(|s| s.id);
        }
        View { by_ordinal, all: stores }
    }

    /// Whether no store but `id` is `Down`.
    fn none_down_but(&self, id: u64) -> bool {
        !self.all.iter().any(|s| s.id != id && s.state == StoreState::Down)
    }

    /// The store pod `o` runs now: its newest live store.
    fn current(&self, o: i32) -> Option<&'a ObservedStore> {
        self.by_ordinal.get(&o).and_then(|l| l.last().copied())
    }

    /// Stores left behind by a pod whose volume was lost: older live stores
    /// of an ordinal below `limit` (ordinals at or above it are retired by
    /// scale-in, all their stores alike).
    fn orphans(&self, limit: i32) -> Vec<&'a ObservedStore> {
        self.by_ordinal.range(..limit).flat_map(|(_, l)| l[..l.len() - 1].iter().copied()).collect()
    }

    /// Orphans whose successor (the pod's current store) is up or being
    /// seeded: those can be drained, since placement has somewhere to go.
    fn replaceable_orphans(&self, limit: i32) -> Vec<&'a ObservedStore> {
        self.by_ordinal
            .range(..limit)
            .filter(|(_, l)| l.last().is_some_and(|s| s.state.is_serving()))
            .flat_map(|(_, l)| l[..l.len() - 1].iter().copied())
            .collect()
    }

    fn live_at_or_above(&self, limit: i32) -> Vec<(i32, &'a ObservedStore)> {
        self.by_ordinal.range(limit..).flat_map(|(o, l)| l.iter().map(move |s| (*o, *s))).collect()
    }

    fn any_in(&self, state: StoreState) -> Option<&'a ObservedStore> {
        self.all.iter().find(|s| s.state == state)
    }

    /// Whether draining `s` leaves at least `rf` stores that placement can use.
    fn can_drain(&self, s: &ObservedStore, rf: i32) -> bool {
        let others = self.all.iter().filter(|o| o.id != s.id && o.state.is_serving()).count();
        others >= rf as usize
    }
}

/// How a store is named in messages: `store 4 (demo-3)`.
fn label(s: &ObservedStore) -> String {
    format!("store {} ({})", s.id, s.name)
}

/// Decides the StatefulSet size and at most one step; see the module docs.
pub fn plan(names: &Names, desired: &Desired, memory: &Memory, obs: &Observed) -> Plan {
    let initial = memory.initial_members.unwrap_or(desired.replicas);
    let mut mem = Memory { initial_members: Some(initial), ..memory.clone() };
    let waiting = |sts_replicas: i32, mem: Memory, phase: Phase, progress: String, degraded: Option<(&'static str, String)>| Plan {
        sts_replicas,
        memory: mem,
        step: None,
        phase: if degraded.is_some() { Phase::Degraded } else { phase },
        progress: Some(progress),
        degraded,
    };

    // A cluster formed once is never bootstrapped again, whatever the status
    // says (it may be lost, or read from a stale cache).
    mem.bootstrapped |= obs.formed || (obs.sts_replicas.is_none() && !obs.pvcs.is_empty());
    let Some(current) = obs.sts_replicas else {
        if mem.bootstrapped {
            // Every kept volume's pod comes back with its store; a scale-in to
            // `spec.replicas` follows if there are more.
            let n = obs.pvcs.iter().map(|o| o + 1).max().unwrap_or(0).max(desired.replicas);
            return waiting(n, mem, Phase::Replacing, format!("re-creating the StatefulSet with {n} pods over the kept volumes"), None);
        }
        return waiting(initial, mem, Phase::Bootstrapping, format!("creating the StatefulSet with {initial} initial members"), None);
    };
    let stores = match &obs.stores {
        Ok(stores) => stores,
        Err(e) => {
            let degraded = mem.bootstrapped.then(|| ("ClusterUnreachable", format!("cannot ask the cluster for its stores: {e}")));
            return waiting(current, mem, Phase::Bootstrapping, "waiting for the cluster to answer".into(), degraded);
        }
    };
    if !mem.bootstrapped {
        let up = (0..initial).filter(|&i| stores.iter().any(|s| s.name == names.pod(i) && s.state == StoreState::Up && s.heard)).count();
        let progress = format!("{up} of {initial} initial members are up");
        mem.bootstrapped = up == initial as usize;
        return waiting(current, mem, Phase::Bootstrapping, progress, None);
    }

    let view = View::new(names, stores);
    let mut progress: Vec<String> = Vec::new();
    // A scale-in called off: `replicas` raised while it runs. Possible while
    // every pod up to the new size still has its store (none removed yet, the
    // StatefulSet not shrunk) and no retired volume would come back with a
    // removed store in it.
    if let Some(s) = mem.scaling.clone()
        && s.to < s.from
        && desired.replicas > s.to
    {
        // The newest store of a pod is the one its volume holds: removed
        // (tombstoned) means that pod can never serve again on that volume.
        let newest_removed = |o: i32| {
            let newest = stores.iter().filter(|st| names.ordinal_of(&st.name) == Some(o)).max_by_key(|st| st.id);
            newest.is_none_or(|st| st.state == StoreState::Tombstone)
        };
        let removed: Vec<String> = (s.to..desired.replicas)
            .filter(|&o| if o < current { newest_removed(o) } else { obs.pvcs.contains(&o) })
            .map(|o| names.pod(o))
            .collect();
        if removed.is_empty() && current == s.from {
            mem.scaling = Some(ScalingStatus { from: s.to, to: desired.replicas, step: String::new() });
        } else {
            let gone = if removed.is_empty() { "the retired pods".to_string() } else { removed.join(", ") };
            progress.push(format!(
                "the scale-in to {} cannot be called off (stores of {gone} are removed already): {} stores follow once it is done",
                s.to, desired.replicas
            ));
        }
    }
    if mem.scaling.is_none() && desired.replicas != current {
        mem.scaling = Some(ScalingStatus { from: current, to: desired.replicas, step: String::new() });
    }
    let target = mem.scaling.as_ref().map_or(current, |s| s.to);
    let mut sts = current.max(target);
    // Everything that needs attention; the first reason names the condition.
    let mut degraded: Vec<(&'static str, String)> = Vec::new();
    let mut step: Option<Step> = None;

    // Stores to retire: everything at or above the target, and orphans.
    let retiring: Vec<&ObservedStore> = view.live_at_or_above(target).into_iter().map(|(_, s)| s).chain(view.orphans(target)).collect();

    // Watch the drain in progress (a retiring store that is draining, or a
    // down one the operator asked to drain).
    let draining = retiring.iter().copied().find(|s| {
        s.state == StoreState::Draining || (s.state == StoreState::Down && mem.drain.as_ref().is_some_and(|d| d.store_id == s.id))
    });
    mem.drain = draining.map(|s| match &mem.drain {
        Some(d) if d.store_id == s.id && s.regions >= d.regions => d.clone(),
        _ => StoreProgress { store_id: s.id, regions: s.regions, since: obs.now },
    });
    if let (Some(s), Some(d)) = (draining, &mem.drain) {
        let stalled_for = obs.now - d.since;
        if s.regions + s.leaders > 0 && stalled_for > desired.drain_stall_secs {
            degraded.push((
                "DrainStalled",
                format!(
                    "the drain of {} has not moved for {stalled_for} s: it still holds {} peers ({} leaders); placement needs {} other \
                     stores up with free space to take them (`kubectl get kvc {} -o jsonpath='{{.status.stores}}'`); \
                     setting replicas back calls the scale-in off",
                    label(s),
                    s.regions,
                    s.leaders,
                    desired.replication_factor,
                    names.cluster
                ),
            ));
        }
    }

    // 1. Completion first: remove a retiring store that holds nothing.
    for s in &retiring {
        let empty = s.regions == 0 && s.leaders == 0;
        let drained =
            s.state == StoreState::Draining || (s.state == StoreState::Down && mem.drain.as_ref().is_some_and(|d| d.store_id == s.id));
        if empty && (drained || s.state == StoreState::Pending) {
            step = Some(Step::RemoveStore { store_id: s.id, pod: s.name.clone() });
            progress.push(format!("removing {}", label(s)));
            break;
        }
    }

    // The drain watched until this round (a store shown Down is still Draining in meta).
    let was_draining = |s: &ObservedStore| memory.drain.as_ref().is_some_and(|d| d.store_id == s.id);

    // 2. Join: every pod below the target runs one Up store.
    let joining = view.any_in(StoreState::Joining);
    mem.join = joining.map(|s| match &mem.join {
        Some(j) if j.store_id == s.id && s.regions <= j.regions => j.clone(),
        _ => StoreProgress { store_id: s.id, regions: s.regions, since: obs.now },
    });
    if let (Some(s), Some(j)) = (joining, &mem.join) {
        let stalled_for = obs.now - j.since;
        if stalled_for > desired.join_stall_secs {
            degraded.push((
                "JoinStalled",
                format!(
                    "{} has been seeded no further for {stalled_for} s ({} regions so far): check that its pod runs and reaches the \
                     other stores (`kubectl logs {}`) and that they can send snapshots (`shoal_snapshots_total`)",
                    label(s),
                    s.regions,
                    s.name
                ),
            ));
        }
    }
    for o in 0..target.min(sts) {
        match view.current(o) {
            None => progress.push(format!("waiting for {} to register its store", names.pod(o))),
            Some(s) if s.state == StoreState::Pending => {
                if step.is_none() && joining.is_none() {
                    step = Some(Step::JoinStore { store_id: s.id, pod: s.name.clone() });
                    progress.push(format!("joining {}", label(s)));
                } else {
                    progress.push(format!("{} waits to join", label(s)));
                }
            }
            Some(s) if s.state == StoreState::Joining => {
                progress.push(format!("seeding {}: {} regions so far", label(s), s.regions));
            }
            // (A store shown Down is still Draining in meta if it was being drained.)
            Some(s) if s.state == StoreState::Draining || (s.state == StoreState::Down && was_draining(s)) => {
                // Below the target: the scale-in that drained it was called off.
                if step.is_none() {
                    step = Some(Step::CancelDrain { store_id: s.id, pod: s.name.clone() });
                    progress.push(format!("cancelling the drain of {}: the scale-in was called off", label(s)));
                } else {
                    progress.push(format!("{} waits for its drain to be cancelled", label(s)));
                }
            }
            // One at a time, and only while no other store is down: two
            // volumes replaced at once could take a region's majority with them.
            Some(s) if s.state == StoreState::Down && obs.stranded.contains(&o) && view.none_down_but(s.id) => {
                if step.is_none() {
                    step = Some(Step::ReplaceVolume { ordinal: o, store_id: s.id });
                    progress.push(format!(
                        "replacing {}: its volume's node is gone, so {} comes back with a new volume as a new store",
                        label(s),
                        s.name
                    ));
                } else {
                    progress.push(format!("{} waits for a new volume (its node is gone)", label(s)));
                }
            }
            Some(s) if s.state == StoreState::Down && obs.stranded.contains(&o) => {
                degraded.push((
                    "StoreDown",
                    format!(
                        "{} is down and its volume's node is gone: the operator gives {} a new volume once no other store \
                         is down (two volumes replaced at once could lose a region's majority); if more than one store's node \
                         is gone for good, delete one such pod's PVC and pod by hand to start",
                        label(s),
                        s.name
                    ),
                ));
            }
            Some(s) if s.state == StoreState::Down => {
                degraded.push((
                    "StoreDown",
                    format!(
                        "{} is down: its pod has not reported for too long, and scaling waits for it (`kubectl describe pod {}`); \
                         if its volume's node is deleted the operator gives the pod a new volume by itself; if the pod cannot \
                         come back for another reason (its volume is lost), delete its PVC and pod: it returns as a new \
                         store and the old one is drained",
                        label(s),
                        s.name
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    let all_up = (0..target).all(|o| view.current(o).is_some_and(|s| s.state == StoreState::Up));

    // 3 and 4. Drain one retiring store: orphans first, then the highest ordinal.
    if view.any_in(StoreState::Draining).is_none() && draining.is_none() {
        let orphans = view.replaceable_orphans(target);
        let next = orphans.iter().copied().find(|s| s.state != StoreState::Pending).or_else(|| {
            if all_up {
                view.live_at_or_above(target).into_iter().rev().map(|(_, s)| s).find(|s| s.state != StoreState::Pending)
            } else {
                None
            }
        });
        if let Some(s) = next {
            if !view.can_drain(s, desired.replication_factor) {
                degraded.push((
                    "DrainRefused",
                    format!(
                        "draining {} would leave fewer than {} stores up: bring the down stores back (or replace them) first",
                        label(s),
                        desired.replication_factor
                    ),
                ));
            } else if step.is_none() {
                step = Some(Step::DrainStore { store_id: s.id, pod: s.name.clone() });
                mem.drain = Some(StoreProgress { store_id: s.id, regions: s.regions, since: obs.now });
                progress.push(format!("draining {}", label(s)));
            }
        }
    } else if let Some(s) = draining {
        progress.push(format!("draining {}: {} peers and {} leaders left", label(s), s.regions, s.leaders));
    }

    // 5. Shrink once nothing lives at or above the target; then retire volumes.
    if target < sts && view.live_at_or_above(target).is_empty() {
        sts = target;
        progress.push(format!("shrinking the StatefulSet to {target}"));
    }
    // Zones: the store running in each pod labelled with its Node's zone (not
    // a down one: its pod may be a new one, elsewhere, about to register
    // another store).
    if step.is_none() {
        let mislabelled = obs.pod_zones.iter().find_map(|(o, zone)| {
            let s = view.current(*o).filter(|s| !matches!(s.state, StoreState::Tombstone | StoreState::Down))?;
            (s.zone.as_ref() != Some(zone)).then(|| (s, zone.clone()))
        });
        if let Some((s, zone)) = mislabelled {
            progress.push(format!("labelling {} with zone {zone}", label(s)));
            step = Some(Step::LabelStore { store_id: s.id, pod: s.name.clone(), zone });
        }
    }
    if step.is_none() {
        let retired = obs.pvcs.iter().copied().filter(|&o| o >= sts && !obs.pods.contains(&o) && !view.by_ordinal.contains_key(&o)).min();
        if let Some(o) = retired {
            step = Some(Step::DeleteVolume { ordinal: o });
            progress.push(format!("deleting the volume of retired pod {}", names.pod(o)));
        }
    }

    let done = sts == target
        && current == target
        && all_up
        && retiring.is_empty()
        && step.is_none()
        && !obs.pvcs.iter().any(|&o| o >= target && !obs.pods.contains(&o));
    let degraded = degraded.first().map(|(reason, _)| (*reason, degraded.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; ")));
    let phase = match &mem.scaling {
        _ if degraded.is_some() => Phase::Degraded,
        Some(s) if !done && s.to >= s.from => Phase::ScalingOut,
        Some(_) if !done => Phase::ScalingIn,
        _ if !progress.is_empty() => Phase::Replacing,
        _ => Phase::Running,
    };
    if done {
        mem.scaling = None;
    }
    let progress = (!progress.is_empty()).then(|| progress.join("; "));
    if let (Some(s), Some(p)) = (mem.scaling.as_mut(), &progress) {
        s.step = p.clone();
    }
    Plan { sts_replicas: sts, memory: mem, step, phase, progress, degraded }
}
