//! [`DirectoryCache`]: what the meta leader's placement plans are made from,
//! kept between heartbeats.
//!
//! Placement runs on every store heartbeat (each store, once a second), over
//! every region. On an idle or steadily loaded cluster the inputs do not change
//! from one heartbeat to the next, and neither does the plan: it orders nothing.
//! Two things are kept so that such heartbeats cost little with 10,000 regions:
//!
//! - the stores and regions of one meta state generation, shared by every plan
//!   until the state changes (copying 10,000 regions for each plan was most of
//!   an idle meta leader's CPU);
//! - once a plan over them ordered nothing, the rest of its inputs
//!   ([`QuietInputs`]: the stores' effective states and zones): a plan is a pure
//!   function of the directory, those, and the leader's cooling regions and
//!   pending peers, so while all of them are the same — none cooling, none
//!   pending — the next plan would order nothing too, and is not made.
//!
//! A new generation, a store changing state (one falling silent turns DOWN by
//! the clock), a zone label, a region cooling or a peer pending: any of these
//! plans again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use shoal_proto::{RegionInfo, StoreMeta, StoreState};

use super::meta::MetaService;
use crate::meta::SharedMeta;

#[derive(Clone, Default)]
pub struct DirectoryCache(Arc<Mutex<Option<Directory>>>);

struct Directory {
    generation: u64,
    stores: Arc<Vec<StoreMeta>>,
    regions: Arc<Vec<RegionInfo>>,
    /// The inputs of the last plan over this generation that ordered nothing.
    quiet: Option<QuietInputs>,
}

/// A plan's inputs besides the directory, cooling and pending peers, and what
/// it left under-replicated (for the gauge).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuietInputs {
    pub states: BTreeMap<u64, StoreState>,
    pub zones: BTreeMap<u64, String>,
    pub under_replicated: usize,
}

impl DirectoryCache {
    /// The directory of the meta state's current generation: (generation, stores, regions).
    pub fn get(&self, meta: &SharedMeta) -> (u64, Arc<Vec<StoreMeta>>, Arc<Vec<RegionInfo>>) {
        let generation = MetaService::read(meta, |st| st.generation());
        let mut cached = self.lock();
        if let Some(d) = cached.as_ref()
            && d.generation == generation
        {
            return (generation, d.stores.clone(), d.regions.clone());
        }
        let (generation, stores, regions) = MetaService::read(meta, |st| {
            (st.generation(), Arc::new(st.stores().cloned().collect::<Vec<_>>()), Arc::new(st.all_regions().cloned().collect::<Vec<_>>()))
        });
        *cached = Some(Directory { generation, stores: stores.clone(), regions: regions.clone(), quiet: None });
        (generation, stores, regions)
    }

    /// How many regions the last plan left under-replicated, if a plan over
    /// `generation` with these states and zones ordered nothing (the caller
    /// checks that no region cools and no peer is pending).
    pub fn quiet(&self, generation: u64, states: &BTreeMap<u64, StoreState>, zones: &BTreeMap<u64, String>) -> Option<usize> {
        let cached = self.lock();
        let q = cached.as_ref().filter(|d| d.generation == generation)?.quiet.as_ref()?;
        (q.states == *states && q.zones == *zones).then_some(q.under_replicated)
    }

    /// A plan over `generation` made from `inputs` (no region cooling, no
    /// peer pending) ordered nothing.
    pub fn set_quiet(&self, generation: u64, inputs: QuietInputs) {
        if let Some(d) = self.lock().as_mut().filter(|d| d.generation == generation) {
            d.quiet = Some(inputs);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Directory>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::RwLock;

    use super::*;
    use crate::meta::state::MetaState;

    #[test]
    fn a_quiet_plan_holds_for_its_generation_store_states_and_zones_only() {
        let meta: SharedMeta = Arc::new(RwLock::new(MetaState::default()));
        let cache = DirectoryCache::default();
        let (g, _, regions) = cache.get(&meta);
        assert!(Arc::ptr_eq(&regions, &cache.get(&meta).2), "one copy of the directory per generation");
        let up = BTreeMap::from([(1, StoreState::Up), (2, StoreState::Up)]);
        let zones = BTreeMap::new();
        assert_eq!(cache.quiet(g, &up, &zones), None, "no plan made yet");
        cache.set_quiet(g + 1, QuietInputs { states: up.clone(), zones: zones.clone(), under_replicated: 7 });
        assert_eq!(cache.quiet(g, &up, &zones), None, "a plan over another generation is not kept");
        cache.set_quiet(g, QuietInputs { states: up.clone(), zones: zones.clone(), under_replicated: 3 });
        assert_eq!(cache.quiet(g, &up, &zones), Some(3));
        let down = BTreeMap::from([(1, StoreState::Up), (2, StoreState::Down)]);
        assert_eq!(cache.quiet(g, &down, &zones), None, "a store changed state");
        assert_eq!(cache.quiet(g, &up, &BTreeMap::from([(1, "a".to_string())])), None, "a zone was labelled");
        assert_eq!(cache.quiet(g + 1, &up, &zones), None, "the meta state changed");
    }
}
