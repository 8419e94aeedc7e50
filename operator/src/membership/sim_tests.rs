//! The membership driver against a simulated cluster: random scale requests,
//! lost volumes, outages and lost nodes, plans applied round after round. Every step is checked
//! against the safety rules (no drain below the replication factor, no
//! removal of a store holding peers, no shrink past a live store, no volume
//! deleted under a live store, one join and one drain at a time), and once the
//! requests stop the cluster must settle at the asked size.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::build::Names;

/// A store of the model. `stored` is what meta keeps; what the driver sees
/// is `Down` once a store has been silent for a while.
#[derive(Clone, Debug)]
struct SimStore {
    id: u64,
    name: String,
    stored: StoreState,
    regions: u64,
    leaders: u64,
    /// Rounds since its process last ran (its volume is gone).
    silent: u32,
    alive: bool,
}

#[derive(Clone, Debug)]
struct Sim {
    names: Names,
    rf: i32,
    replicas: i32,
    sts: Option<i32>,
    pods: BTreeSet<i32>,
    /// Volume of each ordinal → the store whose data it holds.
    pvcs: BTreeMap<i32, Option<u64>>,
    stores: Vec<SimStore>,
    next_id: u64,
    memory: Memory,
    now: i64,
    /// Total peers to spread (regions × replicas).
    peers: u64,
    /// Pods whose process is stopped (node failure) for this many more rounds.
    paused: BTreeMap<i32, u32>,
    /// Pods whose node is gone with their volume: they cannot run until
    /// they get a new volume.
    stranded: BTreeSet<i32>,
    /// What the ConfigMap says since the last applied plan (`existing`).
    formed: bool,
}

const SILENT_ROUNDS_TO_DOWN: u32 = 6;

impl Sim {
    fn new(replicas: i32, rf: i32) -> Sim {
        Sim {
            names: Names { cluster: "demo".into(), namespace: "ns".into() },
            rf,
            replicas,
            sts: None,
            pods: BTreeSet::new(),
            pvcs: BTreeMap::new(),
            stores: Vec::new(),
            next_id: 1,
            memory: Memory::default(),
            now: 1_000,
            peers: 24 * rf as u64,
            paused: BTreeMap::new(),
            stranded: BTreeSet::new(),
            formed: false,
        }
    }

    fn shown(s: &SimStore) -> StoreState {
        if s.stored != StoreState::Tombstone && s.stored != StoreState::Pending && s.silent >= SILENT_ROUNDS_TO_DOWN {
            StoreState::Down
        } else {
            s.stored
        }
    }

    fn observe(&self) -> Observed {
        let stores = self
            .stores
            .iter()
            .map(|s| ObservedStore {
                id: s.id,
                name: s.name.clone(),
                state: Sim::shown(s),
                regions: s.regions,
                leaders: s.leaders,
                heard: s.alive,
                zone: None,
            })
            .collect();
        Observed {
            sts_replicas: self.sts,
            pods: self.pods.iter().copied().collect(),
            pvcs: self.pvcs.keys().copied().collect(),
            stranded: self.stranded.iter().copied().filter(|o| self.pods.contains(o)).collect(),
            pod_zones: BTreeMap::new(),
            stores: Ok(stores),
            formed: self.formed,
            now: self.now,
        }
    }

    fn desired(&self) -> Desired {
        Desired { replicas: self.replicas, replication_factor: self.rf, drain_stall_secs: 600, join_stall_secs: 600 }
    }

    fn store(&mut self, id: u64) -> &mut SimStore {
        self.stores.iter_mut().find(|s| s.id == id).expect("the plan names a store the model has")
    }

    fn serving(&self) -> Vec<u64> {
        self.stores.iter().filter(|s| Sim::shown(s).is_serving() && s.alive).map(|s| s.id).collect()
    }

    /// One round: plan, check, apply, and let the world move.
    fn round(&mut self) -> Plan {
        let obs = self.observe();
        let plan = plan(&self.names, &self.desired(), &self.memory, &obs);
        self.check(&obs, &plan);
        self.apply(&plan);
        self.world();
        self.now += 5;
        plan
    }

    fn check(&self, obs: &Observed, plan: &Plan) {
        let shown: Vec<(u64, StoreState)> = self.stores.iter().map(|s| (s.id, Sim::shown(s))).collect();
        let live_at = |o: i32| self.stores.iter().any(|s| s.stored != StoreState::Tombstone && self.names.ordinal_of(&s.name) == Some(o));
        match &plan.step {
            Some(Step::DrainStore { store_id, .. }) => {
                let others = self.stores.iter().filter(|s| s.id != *store_id && Sim::shown(s).is_serving()).count();
                assert!(others >= self.rf as usize, "drained store {store_id} leaving {others} serving < rf {}: {shown:?}", self.rf);
                assert!(
                    !self.stores.iter().any(|s| s.id != *store_id && s.stored == StoreState::Draining),
                    "a second drain while one runs: {shown:?}"
                );
            }
            Some(Step::RemoveStore { store_id, .. }) => {
                let s = self.stores.iter().find(|s| s.id == *store_id).expect("removed store exists");
                assert_eq!((s.regions, s.leaders), (0, 0), "removed store {store_id} still holds peers: {s:?}");
                assert!(matches!(s.stored, StoreState::Draining | StoreState::Pending), "removed store {store_id} was not drained: {s:?}");
            }
            Some(Step::JoinStore { store_id, .. }) => {
                assert!(
                    !self.stores.iter().any(|s| Sim::shown(s) == StoreState::Joining),
                    "a second join while one runs (joining {store_id}): {shown:?}"
                );
                assert_eq!(self.stores.iter().find(|s| s.id == *store_id).map(|s| s.stored), Some(StoreState::Pending));
            }
            Some(Step::CancelDrain { store_id, .. }) => {
                let s = self.stores.iter().find(|s| s.id == *store_id).expect("cancelled store exists");
                assert_eq!(s.stored, StoreState::Draining, "cancelled a drain that is not running: {s:?}");
                let target = plan.memory.scaling.as_ref().map_or(plan.sts_replicas, |sc| sc.to);
                let ordinal = self.names.ordinal_of(&s.name).expect("a pod's store");
                assert!(ordinal < target, "cancelled the drain of {} at or above the target {target}", s.name);
            }
            Some(Step::ReplaceVolume { ordinal, store_id }) => {
                assert!(self.stranded.contains(ordinal), "replaced the volume of pod {ordinal}, which is not stranded");
                let down: Vec<u64> =
                    self.stores.iter().filter(|s| s.id != *store_id && Sim::shown(s) == StoreState::Down).map(|s| s.id).collect();
                assert!(down.is_empty(), "replaced the volume of store {store_id} while {down:?} are down too");
                assert_eq!(self.pvcs.get(ordinal).copied().flatten(), Some(*store_id), "replaced a volume that holds another store");
                let s = self.stores.iter().find(|s| s.id == *store_id).expect("replaced store exists");
                assert_eq!(Sim::shown(s), StoreState::Down, "replaced the volume of a store that is not down: {s:?}");
            }
            Some(Step::LabelStore { store_id, .. }) => {
                let s = self.stores.iter().find(|s| s.id == *store_id).expect("labelled store exists");
                assert!(!matches!(Sim::shown(s), StoreState::Tombstone | StoreState::Down), "labelled a store not running: {s:?}");
            }
            Some(Step::DeleteVolume { ordinal }) => {
                assert!(*ordinal >= plan.sts_replicas, "volume {ordinal} deleted below the StatefulSet size {}", plan.sts_replicas);
                assert!(!obs.pods.contains(ordinal), "volume {ordinal} deleted under a running pod");
                assert!(!live_at(*ordinal), "volume {ordinal} deleted while its store is not tombstoned: {shown:?}");
            }
            None => {}
        }
        if let Some(sts) = self.sts {
            for o in plan.sts_replicas..sts {
                assert!(!live_at(o), "StatefulSet shrunk to {} past pod {o} whose store is live: {shown:?}", plan.sts_replicas);
            }
        }
    }

    fn apply(&mut self, plan: &Plan) {
        assert!(plan.memory.bootstrapped || !self.memory.bootstrapped, "a bootstrapped cluster went back to bootstrapping: {plan:?}");
        self.memory = plan.memory.clone();
        self.formed = plan.memory.bootstrapped;
        self.sts = Some(plan.sts_replicas);
        match &plan.step {
            Some(Step::JoinStore { store_id, .. }) => self.store(*store_id).stored = StoreState::Joining,
            Some(Step::DrainStore { store_id, .. }) => {
                let s = self.store(*store_id);
                if s.stored != StoreState::Pending {
                    s.stored = StoreState::Draining;
                }
            }
            Some(Step::RemoveStore { store_id, .. }) => self.store(*store_id).stored = StoreState::Tombstone,
            Some(Step::CancelDrain { store_id, .. }) => self.store(*store_id).stored = StoreState::Up,
            Some(Step::DeleteVolume { ordinal }) => {
                self.pvcs.remove(ordinal);
            }
            Some(Step::ReplaceVolume { ordinal, .. }) => {
                self.pvcs.remove(ordinal);
                self.stranded.remove(ordinal);
            }
            Some(Step::LabelStore { .. }) => {}
            None => {}
        }
    }

    /// Pods follow the StatefulSet, empty volumes register new stores,
    /// placement seeds joining stores and empties draining ones.
    fn world(&mut self) {
        let sts = self.sts.unwrap_or(0);
        self.pods.retain(|&o| o < sts);
        for o in 0..sts {
            self.pods.insert(o);
            let held = *self.pvcs.entry(o).or_insert(None);
            if held.is_none() {
                let id = self.next_id;
                self.next_id += 1;
                let bootstrap = !self.memory.bootstrapped && o < self.memory.initial_members.unwrap_or(0);
                let (stored, regions) = if bootstrap { (StoreState::Up, self.peers / sts as u64) } else { (StoreState::Pending, 0) };
                self.stores.push(SimStore { id, name: self.names.pod(o), stored, regions, leaders: 0, silent: 0, alive: true });
                self.pvcs.insert(o, Some(id));
            }
        }
        self.paused.retain(|_, left| {
            *left -= 1;
            *left > 0
        });
        let running: BTreeSet<u64> = self
            .pods
            .iter()
            .filter(|o| !self.paused.contains_key(o) && !self.stranded.contains(o))
            .filter_map(|o| self.pvcs.get(o).copied().flatten())
            .collect();
        for s in &mut self.stores {
            s.alive = running.contains(&s.id);
            s.silent = if s.alive { 0 } else { s.silent + 1 };
        }
        // Placement: one peer moves per round off a draining store (to a
        // serving one), onto a joining store until it holds its share.
        let serving = self.serving();
        if let Some(d) = self.stores.iter().position(|s| s.stored == StoreState::Draining && s.regions > 0)
            && serving.len() >= self.rf as usize
        {
            self.stores[d].regions -= 1;
            self.stores[d].leaders = 0;
            let to = serving[(self.now as usize) % serving.len()];
            self.store(to).regions += 1;
        }
        let share = self.peers / serving.len().max(1) as u64;
        for i in 0..self.stores.len() {
            if self.stores[i].stored == StoreState::Joining && self.stores[i].alive {
                if self.stores[i].regions + 1 >= share {
                    self.stores[i].stored = StoreState::Up;
                } else {
                    self.stores[i].regions += 1;
                }
            }
        }
    }

    /// Loses one volume while every other pod's volume holds an Up store
    /// (their processes may be stopped by an outage): losing the volumes of a
    /// quorum loses data whatever the operator does, so one at a time.
    fn lose_volume(&mut self, ordinal: i32) {
        let others_intact = self
            .pvcs
            .iter()
            .filter(|(o, _)| **o != ordinal)
            .all(|(_, held)| held.is_some_and(|id| self.stores.iter().any(|s| s.id == id && s.stored == StoreState::Up)));
        let no_orphans = self.stores.iter().filter(|s| s.stored != StoreState::Tombstone).count() == self.pvcs.len();
        if self.rf > 1 && others_intact && no_orphans && self.stranded.is_empty() && self.pods.contains(&ordinal) {
            self.pvcs.insert(ordinal, None);
        }
    }

    /// Loses the node of pod `ordinal`, and with it the volume pinned there:
    /// the pod cannot be scheduled again on that volume. One failure at a
    /// time: every other store must be running (two nodes lost at once wait
    /// for a person, see `plan`).
    fn lose_node(&mut self, ordinal: i32) {
        let others_running =
            self.stores.iter().filter(|s| s.stored != StoreState::Tombstone).all(|s| s.alive || s.name == self.names.pod(ordinal));
        if !others_running || !self.stranded.is_empty() {
            return;
        }
        let before = self.pvcs.get(&ordinal).copied();
        self.lose_volume(ordinal);
        if self.pvcs.get(&ordinal).copied() != before {
            // The volume still names its store: it is pinned, not empty.
            self.pvcs.insert(ordinal, before.flatten());
            self.stranded.insert(ordinal);
        }
    }

    /// The steps of the rounds until settled (at most `max`); panics if it never is.
    fn steps_until_settled(&mut self, max: usize) -> Vec<Step> {
        let mut steps = Vec::new();
        for _ in 0..max {
            steps.extend(self.round().step);
            if self.settled() {
                return steps;
            }
        }
        panic!("did not settle in {max} rounds: {self:#?}");
    }

    fn settled(&self) -> bool {
        let live: Vec<&SimStore> = self.stores.iter().filter(|s| s.stored != StoreState::Tombstone).collect();
        self.memory.bootstrapped
            && self.sts == Some(self.replicas)
            && self.memory.scaling.is_none()
            && live.len() == self.replicas as usize
            && (0..self.replicas).all(|o| live.iter().any(|s| s.name == self.names.pod(o) && s.stored == StoreState::Up && s.alive))
            && self.pvcs.keys().copied().eq(0..self.replicas)
    }

    /// Rounds until settled; panics with the model if it never does.
    fn settle(&mut self, max_rounds: usize) -> Plan {
        let mut last = None;
        for _ in 0..max_rounds {
            let plan = self.round();
            if self.settled() && plan.step.is_none() {
                // What the driver says about the settled cluster.
                let plan = self.round();
                assert!(self.settled() && plan.step.is_none(), "a settled cluster moved: {plan:?}");
                return plan;
            }
            last = Some(plan);
        }
        panic!("did not settle at {} replicas in {max_rounds} rounds; last plan {last:?}; model {self:#?}", self.replicas);
    }
}

#[derive(Clone, Debug)]
enum Event {
    Scale(i32),
    LoseVolume(i32),
    LoseNode(i32),
    /// A pod's process stops for this many rounds (long enough to show Down).
    Outage(i32, u32),
    Rounds(usize),
}

fn events(rf: i32) -> impl Strategy<Value = Vec<Event>> {
    let event = prop_oneof![
        (rf..=6).prop_map(Event::Scale),
        (0..6i32).prop_map(Event::LoseVolume),
        (0..6i32).prop_map(Event::LoseNode),
        ((0..6i32), (1..30u32)).prop_map(|(o, r)| Event::Outage(o, r)),
        (1..40usize).prop_map(Event::Rounds),
    ];
    proptest::collection::vec(event, 1..12)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_scaling_and_lost_volumes_stay_safe_and_settle(
        (rf, initial, evs) in prop_oneof![Just(1), Just(3)].prop_flat_map(|rf| (Just(rf), rf..=5, events(rf)))
    ) {
        let mut sim = Sim::new(initial, rf);
        sim.settle(400);
        for ev in evs {
            match ev {
                Event::Scale(n) => sim.replicas = n,
                Event::LoseVolume(o) => sim.lose_volume(o),
                Event::LoseNode(o) => sim.lose_node(o),
                Event::Outage(o, rounds) => { sim.paused.insert(o, rounds); }
                Event::Rounds(k) => for _ in 0..k { sim.round(); },
            }
        }
        let last = sim.settle(2_000);
        prop_assert_eq!(last.phase, Phase::Running);
        prop_assert!(last.degraded.is_none(), "degraded once settled: {:?}", last.degraded);
    }
}

#[test]
fn bootstrap_then_scale_out_then_in() {
    let mut sim = Sim::new(3, 3);
    let first = sim.round();
    assert_eq!((first.sts_replicas, first.phase), (3, Phase::Bootstrapping));
    sim.settle(50);
    assert!(sim.memory.bootstrapped);
    assert_eq!(sim.stores.iter().map(|s| s.id).collect::<Vec<_>>(), [1, 2, 3]);

    sim.replicas = 5;
    let p = sim.round();
    assert_eq!((p.sts_replicas, p.phase), (5, Phase::ScalingOut));
    assert_eq!(p.memory.scaling.as_ref().map(|s| (s.from, s.to)), Some((3, 5)));
    // A scale-in asked while the scale-out runs waits its turn.
    sim.replicas = 4;
    let mut joined = Vec::new();
    while sim.memory.scaling.as_ref().is_some_and(|s| s.to == 5) {
        if let Some(Step::JoinStore { store_id, .. }) = sim.round().step {
            joined.push(store_id);
        }
    }
    assert_eq!(joined, [4, 5], "both new stores joined, one at a time, lowest ordinal first");
    assert!((0..5).all(|o| sim.stores.iter().any(|s| s.name == sim.names.pod(o) && s.stored == StoreState::Up)));

    // Now the scale to 4: demo-4 (store 5) drained, removed, then its volume deleted.
    let mut steps = Vec::new();
    for _ in 0..200 {
        let p = sim.round();
        steps.extend(p.step);
        if sim.settled() {
            break;
        }
    }
    assert!(sim.settled(), "{sim:#?}");
    let kinds: Vec<String> = steps.iter().map(|s| format!("{s:?}")).collect();
    assert_eq!(
        steps,
        [
            Step::DrainStore { store_id: 5, pod: "demo-4".into() },
            Step::RemoveStore { store_id: 5, pod: "demo-4".into() },
            Step::DeleteVolume { ordinal: 4 },
        ],
        "{kinds:?}"
    );
}

#[test]
fn a_lost_volume_gets_a_new_store_and_the_old_one_is_retired() {
    let mut sim = Sim::new(3, 3);
    sim.settle(50);
    sim.lose_volume(1);
    let steps = sim.steps_until_settled(300);
    assert_eq!(
        steps,
        [
            Step::JoinStore { store_id: 4, pod: "demo-1".into() },
            Step::DrainStore { store_id: 2, pod: "demo-1".into() },
            Step::RemoveStore { store_id: 2, pod: "demo-1".into() },
        ]
    );
    assert_eq!(sim.stores.iter().find(|s| s.id == 2).map(|s| s.stored), Some(StoreState::Tombstone));
}

#[test]
fn a_down_store_whose_node_is_gone_gets_a_new_volume_and_is_retired() {
    let mut sim = Sim::new(3, 3);
    sim.settle(50);
    sim.lose_node(1);
    assert!(sim.stranded.contains(&1));
    // (`check` asserts that the store is shown Down when its volume is replaced.)
    let steps = sim.steps_until_settled(300);
    assert_eq!(
        steps,
        [
            Step::ReplaceVolume { ordinal: 1, store_id: 2 },
            Step::JoinStore { store_id: 4, pod: "demo-1".into() },
            Step::DrainStore { store_id: 2, pod: "demo-1".into() },
            Step::RemoveStore { store_id: 2, pod: "demo-1".into() },
        ]
    );
    assert_eq!(sim.stores.iter().find(|s| s.id == 2).map(|s| s.stored), Some(StoreState::Tombstone));
}

#[test]
fn a_drain_that_stops_moving_is_degraded_and_its_volume_kept() {
    let mut sim = Sim::new(4, 3);
    sim.settle(50);
    sim.replicas = 3;
    sim.round(); // drain store 4
    assert_eq!(sim.store(4).stored, StoreState::Draining);
    // Placement cannot move anything (say a region cannot find a target).
    let stuck = sim.store(4).regions;
    let mut last = None;
    for _ in 0..200 {
        let obs = sim.observe();
        let p = plan(&sim.names, &sim.desired(), &sim.memory, &obs);
        sim.apply(&p);
        sim.now += 5;
        last = Some(p);
    }
    let last = last.expect("planned");
    assert_eq!(last.phase, Phase::Degraded);
    let (reason, message) = last.degraded.expect("degraded");
    assert_eq!(reason, "DrainStalled");
    assert!(message.contains("store 4 (demo-3)") && message.contains(&format!("{stuck} peers")), "{message}");
    assert_eq!(last.sts_replicas, 4, "not shrunk while the drain is stuck");
    assert!(sim.pvcs.contains_key(&3), "the volume of a store that was not removed is kept");
}

#[test]
fn the_cluster_unreachable_changes_nothing() {
    let mut sim = Sim::new(3, 3);
    sim.settle(50);
    sim.replicas = 5;
    let mut obs = sim.observe();
    obs.stores = Err("connection refused".into());
    let p = plan(&sim.names, &sim.desired(), &sim.memory, &obs);
    assert_eq!((p.sts_replicas, &p.step), (3, &None));
    assert_eq!(p.degraded.map(|d| d.0), Some("ClusterUnreachable"));
}

#[test]
fn a_replacement_waits_while_another_store_is_down() {
    let mut sim = Sim::new(3, 3);
    sim.settle(50);
    sim.paused.insert(2, 60);
    for _ in 0..10 {
        sim.round();
    }
    sim.lose_volume(1);
    let mut refused = None;
    for _ in 0..40 {
        let p = sim.round();
        assert!(!matches!(p.step, Some(Step::DrainStore { .. })), "drained with store 3 down: {p:?}");
        if let Some((_, m)) = p.degraded.as_ref().filter(|(_, m)| m.contains("would leave fewer than 3 stores up")) {
            refused = Some(m.clone());
        }
    }
    let refused = refused.expect("the replacement's drain is reported refused");
    assert!(refused.contains("store 2 (demo-1)"), "{refused}");
    // Once demo-2 is back, the replacement goes through.
    let last = sim.settle(400);
    assert_eq!(last.phase, Phase::Running);
    assert_eq!(sim.stores.iter().find(|s| s.id == 2).map(|s| s.stored), Some(StoreState::Tombstone));
}

#[test]
fn a_formed_cluster_never_bootstraps_again() {
    let mut sim = Sim::new(3, 3);
    sim.settle(50);
    // The status is lost (or read stale): the ConfigMap still says `existing`.
    let obs = sim.observe();
    let p = plan(&sim.names, &sim.desired(), &Memory::default(), &obs);
    assert!(p.memory.bootstrapped, "{p:?}");
    // The KvCluster re-created over kept volumes: no StatefulSet, no ConfigMap, no status.
    let mut obs = sim.observe();
    obs.sts_replicas = None;
    obs.formed = false;
    obs.pods.clear();
    obs.stores = Err("no pod has an address yet".into());
    obs.pvcs = vec![0, 1, 2, 3, 4];
    let p = plan(&sim.names, &sim.desired(), &Memory::default(), &obs);
    assert!(p.memory.bootstrapped, "kept volumes mean an existing cluster: {p:?}");
    assert_eq!(p.sts_replicas, 5, "a pod for every kept volume");
    // A new cluster has no volume: it bootstraps.
    obs.pvcs.clear();
    let p = plan(&sim.names, &sim.desired(), &Memory::default(), &obs);
    assert!(!p.memory.bootstrapped);
    assert_eq!(p.sts_replicas, 3);
}

/// `replicas` raised back while a scale-in drains: the drain is cancelled,
/// the store keeps its id and the cluster returns to its size; raised after a
/// store was removed, the scale-in finishes first and new stores join.
#[test]
fn a_scale_in_called_off_puts_the_drained_store_back() {
    let mut sim = Sim::new(5, 3);
    sim.settle(200);
    sim.replicas = 3;
    // Until demo-4's store (5) is being drained, some of its peers still on it.
    for _ in 0..50 {
        sim.round();
        if sim.stores.iter().any(|s| s.id == 5 && s.stored == StoreState::Draining) {
            break;
        }
    }
    assert!(sim.stores.iter().any(|s| s.id == 5 && s.stored == StoreState::Draining && s.regions > 0), "{sim:#?}");
    sim.replicas = 5;
    let mut steps = Vec::new();
    for _ in 0..200 {
        let p = sim.round();
        steps.extend(p.step);
        if sim.settled() {
            break;
        }
    }
    assert!(sim.settled(), "{sim:#?}");
    assert_eq!(steps, [Step::CancelDrain { store_id: 5, pod: "demo-4".into() }], "only the cancel: {steps:?}");
    let live: Vec<u64> = sim.stores.iter().filter(|s| s.stored != StoreState::Tombstone).map(|s| s.id).collect();
    assert_eq!(live, [1, 2, 3, 4, 5]);
    let last = sim.settle(10);
    assert_eq!((last.phase, last.memory.scaling), (Phase::Running, None));

    // Past a removal: demo-4's store is gone; the scale-in to 3 finishes, then
    // two new stores join for demo-3 and demo-4.
    sim.replicas = 3;
    for _ in 0..200 {
        sim.round();
        if sim.stores.iter().any(|s| s.id == 5 && s.stored == StoreState::Tombstone) {
            break;
        }
    }
    sim.replicas = 5;
    let p = sim.round();
    assert!(p.progress.as_deref().is_some_and(|m| m.contains("cannot be called off")), "{p:?}");
    sim.settle(1_000);
    let live: Vec<u64> = sim.stores.iter().filter(|s| s.stored != StoreState::Tombstone).map(|s| s.id).collect();
    assert_eq!(live.len(), 5);
    assert!(live.iter().filter(|&&id| id > 5).count() == 2, "demo-3 and demo-4 came back as new stores: {live:?}");
}

/// A joining store whose region count stops rising for the stall timeout
/// sets `Degraded` (`JoinStalled`); one more region clears it.
#[test]
fn a_join_that_stops_receiving_regions_is_degraded() {
    let names = Names { cluster: "demo".into(), namespace: "ns".into() };
    let store = |id: u64, state: StoreState, regions: u64| ObservedStore {
        id,
        name: names.pod(id as i32 - 1),
        state,
        regions,
        leaders: 0,
        heard: true,
        zone: None,
    };
    let observed = |joining_regions: u64, now: i64| Observed {
        sts_replicas: Some(4),
        pods: vec![0, 1, 2, 3],
        pvcs: vec![0, 1, 2, 3],
        stranded: vec![],
        pod_zones: BTreeMap::new(),
        stores: Ok(vec![
            store(1, StoreState::Up, 10),
            store(2, StoreState::Up, 10),
            store(3, StoreState::Up, 10),
            store(4, StoreState::Joining, joining_regions),
        ]),
        formed: true,
        now,
    };
    let desired = Desired { replicas: 4, replication_factor: 3, drain_stall_secs: 600, join_stall_secs: 600 };
    let mut memory = Memory {
        initial_members: Some(3),
        bootstrapped: true,
        scaling: Some(ScalingStatus { from: 3, to: 4, step: String::new() }),
        ..Memory::default()
    };
    let p = plan(&names, &desired, &memory, &observed(2, 1_000));
    assert_eq!(p.memory.join, Some(StoreProgress { store_id: 4, regions: 2, since: 1_000 }));
    assert!(p.degraded.is_none());
    memory = p.memory;
    let p = plan(&names, &desired, &memory, &observed(2, 1_500));
    assert!(p.degraded.is_none(), "500 s without a region is within the timeout");
    let p = plan(&names, &desired, &memory, &observed(2, 1_601));
    let (reason, message) = p.degraded.expect("stalled");
    assert_eq!((reason, p.phase), ("JoinStalled", Phase::Degraded));
    assert!(message.contains("store 4 (demo-3)") && message.contains("601 s") && message.contains("kubectl logs demo-3"), "{message}");
    let p = plan(&names, &desired, &memory, &observed(3, 1_605));
    assert!(p.degraded.is_none(), "a region more: {:?}", p.degraded);
    assert_eq!(p.memory.join.map(|j| j.since), Some(1_605));
}

/// Found by the proptest: a scale-in 4 → 3 removes the new, empty store of
/// demo-3 (its volume was lost, so the old store is an orphan, down); raising
/// `replicas` back to 4 must not "cancel" onto the orphan, since demo-3's
/// volume holds the removed store: the scale-in finishes, then demo-3 comes
/// back with a new volume.
#[test]
fn a_raise_after_a_lost_volume_does_not_cancel_onto_the_orphan() {
    let mut sim = Sim::new(4, 3);
    sim.settle(200);
    sim.replicas = 3;
    sim.lose_volume(3);
    sim.round();
    sim.round();
    sim.replicas = 4;
    sim.settle(2_000);
}

#[test]
fn stores_get_their_nodes_zones_one_at_a_time_once_nothing_else_is_to_do() {
    let mut sim = Sim::new(3, 3);
    sim.settle(50);
    let mut obs = sim.observe();
    obs.pod_zones = BTreeMap::from([(0, "a".to_string()), (1, "b".to_string()), (2, "c".to_string())]);
    let p = plan(&sim.names, &sim.desired(), &sim.memory, &obs);
    assert_eq!(p.step, Some(Step::LabelStore { store_id: 1, pod: "demo-0".into(), zone: "a".into() }));
    // Labelled: nothing more.
    if let Ok(stores) = obs.stores.as_mut() {
        for (s, z) in stores.iter_mut().zip(["a", "b", "c"]) {
            s.zone = Some(z.to_string());
        }
    }
    let p = plan(&sim.names, &sim.desired(), &sim.memory, &obs);
    assert_eq!((p.step, p.phase), (None, Phase::Running));
}

#[test]
fn a_stranded_store_waits_while_another_store_is_not_up() {
    let mut sim = Sim::new(4, 3);
    sim.settle(50);
    sim.paused.insert(3, 200);
    sim.lose_node(1);
    let mut waited = None;
    for _ in 0..60 {
        let p = sim.round();
        assert!(!matches!(p.step, Some(Step::ReplaceVolume { .. })), "replaced while demo-3 is down: {p:?}");
        if let Some((_, m)) = p.degraded.filter(|(_, m)| m.contains("once no other store is down")) {
            waited = Some(m);
        }
    }
    assert!(waited.expect("the wait is reported").contains("store 2 (demo-1)"));
    sim.paused.clear();
    sim.settle(600);
    assert_eq!(sim.stores.iter().find(|s| s.id == 2).map(|s| s.stored), Some(StoreState::Tombstone));
}
