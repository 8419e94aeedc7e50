//! Splitting a batch of mutations by region (pure; see `Client::batch_write`).

use std::collections::BTreeMap;

use shoal_proto::{Mutation, mutation};

use crate::cache::RegionCache;

/// Mutations bound for one region (`None`: keys whose region the cache does not know).
#[derive(Debug, PartialEq)]
pub(crate) struct Group {
    pub region_id: Option<u64>,
    pub mutations: Vec<Mutation>,
}

/// Groups `mutations` by the cached region of their key: one group per region,
/// in the regions' key order, then one group of the keys no cached region
/// holds. Each group keeps the mutations' relative order, so several
/// mutations of one key stay in one group, in order.
pub(crate) fn group_by_region(cache: &RegionCache, mutations: Vec<Mutation>) -> Vec<Group> {
    let mut known: BTreeMap<Vec<u8>, Group> = BTreeMap::new();
    let mut unknown = Vec::new();
    for m in mutations {
        match cache.lookup(&m.key) {
            Some(r) => known
                .entry(r.region.start_key.clone())
                .or_insert_with(|| Group { region_id: Some(r.region.id), mutations: Vec::new() })
                .mutations
                .push(m),
            None => unknown.push(m),
        }
    }
    let mut groups: Vec<Group> = known.into_values().collect();
    if !unknown.is_empty() {
        groups.push(Group { region_id: None, mutations: unknown });
    }
    groups
}

/// What a store would surely refuse, checked before any group is sent so that
/// a plainly malformed batch never partly applies.
pub(crate) fn check(mutations: &[Mutation]) -> Result<(), String> {
    if mutations.is_empty() {
        return Err("a batch needs at least one mutation".into());
    }
    for (i, m) in mutations.iter().enumerate() {
        if m.key.is_empty() {
            return Err(format!("mutation {i}: key must not be empty"));
        }
        match mutation::Op::try_from(m.op) {
            Ok(mutation::Op::Put) => {}
            Ok(mutation::Op::Delete) if m.value.is_empty() => {}
            Ok(mutation::Op::Delete) => return Err(format!("mutation {i}: a delete carries no value")),
            Err(_) => return Err(format!("mutation {i}: unknown mutation op {}", m.op)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use shoal_proto::{Region, RegionEpoch};

    use super::*;

    fn put(key: &str, value: &str) -> Mutation {
        Mutation { op: mutation::Op::Put as i32, cf: String::new(), key: key.into(), value: value.into() }
    }

    fn del(key: &str) -> Mutation {
        Mutation { op: mutation::Op::Delete as i32, cf: String::new(), key: key.into(), value: vec![] }
    }

    fn cache(bounds: &[(u64, &str, &str)]) -> RegionCache {
        let mut c = RegionCache::new();
        for &(id, s, e) in bounds {
            let region =
                Region { id, start_key: s.into(), end_key: e.into(), epoch: Some(RegionEpoch { conf_ver: 1, version: 1 }), peers: vec![] };
            assert!(c.insert(region, 0));
        }
        c
    }

    /// Each group as (region, "key=value" or "-key" for deletes).
    fn shape(groups: &[Group]) -> Vec<(Option<u64>, Vec<String>)> {
        groups
            .iter()
            .map(|g| {
                let ms = g
                    .mutations
                    .iter()
                    .map(|m| {
                        let k = String::from_utf8_lossy(&m.key);
                        if m.op == mutation::Op::Delete as i32 {
                            format!("-{k}")
                        } else {
                            format!("{k}={}", String::from_utf8_lossy(&m.value))
                        }
                    })
                    .collect();
                (g.region_id, ms)
            })
            .collect()
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_region_is_one_group_in_order() {
        let c = cache(&[(1, "", "")]);
        let groups = group_by_region(&c, vec![put("b", "1"), put("a", "2"), del("c")]);
        assert_eq!(shape(&groups), vec![(Some(1), strs(&["b=1", "a=2", "-c"]))]);
    }

    #[test]
    fn groups_follow_region_boundaries_in_key_order() {
        let c = cache(&[(1, "", "g"), (7, "g", "p"), (3, "p", "")]);
        let groups = group_by_region(&c, vec![put("z", "1"), put("g", "2"), put("f", "3"), put("p", "4"), put("o", "5"), put("a", "6")]);
        assert_eq!(
            shape(&groups),
            vec![(Some(1), strs(&["f=3", "a=6"])), (Some(7), strs(&["g=2", "o=5"])), (Some(3), strs(&["z=1", "p=4"]))],
            "boundary keys go to the region they start; groups ordered by key, not by region id or arrival"
        );
    }

    #[test]
    fn mutations_of_one_key_stay_together_and_in_order() {
        let c = cache(&[(1, "", "m"), (2, "m", "")]);
        let groups = group_by_region(&c, vec![put("k", "1"), put("x", "1"), del("k"), put("k", "2")]);
        assert_eq!(shape(&groups), vec![(Some(1), strs(&["k=1", "-k", "k=2"])), (Some(2), strs(&["x=1"]))]);
    }

    #[test]
    fn keys_outside_cached_regions_form_a_last_group() {
        let c = cache(&[(1, "b", "d"), (2, "m", "n")]);
        let groups = group_by_region(&c, vec![put("a", "1"), put("c", "2"), put("d", "3"), put("m", "4"), put("z", "5")]);
        assert_eq!(shape(&groups), vec![(Some(1), strs(&["c=2"])), (Some(2), strs(&["m=4"])), (None, strs(&["a=1", "d=3", "z=5"]))]);
    }

    #[test]
    fn regrouping_after_a_split_divides_a_group() {
        let mut c = cache(&[(1, "", "")]);
        let batch = vec![put("a", "1"), put("q", "2"), put("b", "3")];
        let groups = group_by_region(&c, batch);
        assert_eq!(groups.len(), 1);
        // The store said EpochNotMatch with both halves.
        let half = |id, s: &str, e: &str| Region {
            id,
            start_key: s.into(),
            end_key: e.into(),
            epoch: Some(RegionEpoch { conf_ver: 1, version: 2 }),
            peers: vec![],
        };
        assert_eq!(c.on_epoch_not_match(&[half(1, "", "k"), half(5, "k", "")]), 2);
        let regrouped = group_by_region(&c, groups.into_iter().next().map(|g| g.mutations).unwrap_or_default());
        assert_eq!(shape(&regrouped), vec![(Some(1), strs(&["a=1", "b=3"])), (Some(5), strs(&["q=2"]))]);
    }

    #[test]
    fn empty_cache_gives_one_unknown_group() {
        let groups = group_by_region(&RegionCache::new(), vec![put("a", "1"), put("b", "2")]);
        assert_eq!(shape(&groups), vec![(None, strs(&["a=1", "b=2"]))]);
        assert!(group_by_region(&RegionCache::new(), vec![]).is_empty());
    }

    #[test]
    fn check_refuses_what_a_store_would() {
        assert!(check(&[]).is_err());
        assert!(check(&[put("a", "1")]).is_ok());
        assert!(check(&[put("a", ""), del("b")]).is_ok(), "an empty value is a value");
        assert!(check(&[put("a", "1"), put("", "1")]).expect_err("empty key").contains("mutation 1"));
        let mut bad_delete = del("a");
        bad_delete.value = b"v".to_vec();
        assert!(check(&[bad_delete]).is_err());
        let mut bad_op = put("a", "1");
        bad_op.op = 7;
        assert!(check(&[bad_op]).expect_err("bad op").contains("unknown mutation op 7"));
    }
}
