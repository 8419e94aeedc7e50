//! Store labels end to end, with real processes: `shoalctl store label` sets a
//! store's labels through the Admin API (meta keeps them, `store list` shows
//! them); bad labels are refused with the rule and change nothing; a store
//! restarted with a new address keeps its labels (its heartbeat updates the
//! registry without them); an empty list clears them.

use std::collections::BTreeMap;
use std::time::Duration;

use shoal_tests::{Cluster, free_ports, wait_until};

async fn labels_of(cluster: &Cluster, id: u64) -> Result<BTreeMap<String, String>, String> {
    let stores = cluster.client().list_stores().await.map_err(|e| e.to_string())?;
    let store = stores.into_iter().filter_map(|d| d.store).find(|s| s.id == id).ok_or(format!("no store {id}"))?;
    Ok(store.labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_are_set_checked_shown_and_kept_across_an_address_change() {
    let mut cluster = Cluster::start(3, &["--heartbeat-interval-ms", "300"]).await;
    let id = cluster.store_id(0);
    let want = BTreeMap::from([("rack".to_string(), "r1".to_string()), ("zone".to_string(), "eu-1a".to_string())]);

    let out = cluster.ctl(&["store", "label", &id.to_string(), "zone=eu-1a", "rack=r1"]).await;
    assert!(out.success(), "{out:?}");
    assert_eq!(labels_of(&cluster, id).await, Ok(want.clone()));
    let listed = cluster.ctl(&["--output", "json", "store", "list"]).await.json().expect("JSON");
    let row = listed.as_array().expect("rows").iter().find(|r| r["id"] == id).expect("the store").clone();
    assert_eq!(row["labels"]["zone"], "eu-1a", "{row}");

    for bad in ["zone=a b", "=a", "zone"] {
        let out = cluster.ctl(&["store", "label", &id.to_string(), bad]).await;
        assert!(!out.success(), "{bad} was accepted: {out:?}");
        assert!(out.stderr.contains("KEY=VALUE") || out.stderr.contains("[A-Za-z0-9._-]"), "{bad}: {}", out.stderr);
    }
    assert_eq!(labels_of(&cluster, id).await, Ok(want.clone()), "refused labels changed nothing");

    // A new (client) address makes the next heartbeat rewrite the store's
    // record: the labels stay.
    assert!(cluster.terminate(0, Duration::from_secs(30)));
    let client_addr = format!("127.0.0.1:{}", free_ports(1)[0]);
    cluster.restart_with(0, &["--client-listen-addr", &client_addr]);
    cluster.wait_serving(0, Duration::from_secs(60)).await;
    wait_until(Duration::from_secs(30), Duration::from_millis(200), "the new address registered", || async {
        let stores = cluster.client().list_stores().await.map_err(|e| e.to_string())?;
        let s = stores.into_iter().filter_map(|d| d.store).find(|s| s.id == id).ok_or("gone")?;
        if s.client_address == client_addr { Ok(()) } else { Err(format!("{s:?}")) }
    })
    .await;
    assert_eq!(labels_of(&cluster, id).await, Ok(want), "the labels survive the address update");

    let out = cluster.ctl(&["store", "label", &id.to_string()]).await;
    assert!(out.success(), "{out:?}");
    assert_eq!(labels_of(&cluster, id).await, Ok(BTreeMap::new()), "no labels: cleared");
}
