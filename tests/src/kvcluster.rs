//! Reading the status of the operator tests' `KvCluster` `demo`: the keys
//! they write, waits on the status with deadlines, a one-line summary for
//! waits that time out, what "settled" means (every store up, nothing in
//! progress), and the Events about it.

use std::collections::BTreeSet;
use std::time::Duration;

use kube::Api;
use shoal_operator::crd::{KvCluster, KvClusterStatus};

use crate::wait_until;

/// Key `i` the tests write (in column family `users`), and its value.
pub fn key(i: usize) -> Vec<u8> {
    format!("user-{i:06}").into_bytes()
}

pub fn value(i: usize) -> Vec<u8> {
    format!("value-{i:06}-{}", "x".repeat(48)).into_bytes()
}

/// A condition's (status, reason, message).
pub fn condition(s: &KvClusterStatus, type_: &str) -> Option<(String, String, String)> {
    s.conditions.iter().find(|c| c.type_ == type_).map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// A one-line picture of the status, for waits that time out.
pub fn summary(s: &KvClusterStatus) -> String {
    let stores: Vec<String> =
        s.stores.iter().map(|e| format!("{}#{}:{}:{}r/{}l", e.pod, e.store_id, e.state, e.regions, e.leaders)).collect();
    format!(
        "phase {:?} ready {}/{} scaling {:?} stores [{}] conditions {:?}",
        s.phase,
        s.ready_replicas,
        s.replicas,
        s.scaling.as_ref().map(|x| (x.from, x.to, x.step.clone())),
        stores.join(" "),
        s.conditions.iter().map(|c| format!("{}={}({}: {})", c.type_, c.status, c.reason, c.message)).collect::<Vec<_>>()
    )
}

/// Waits until the status of `demo` satisfies `done`, recording every phase seen on the way.
pub async fn wait_status(
    kvcs: &Api<KvCluster>,
    timeout: Duration,
    what: &str,
    phases: &mut BTreeSet<String>,
    done: impl Fn(&KvClusterStatus) -> bool,
) -> KvClusterStatus {
    let seen = std::sync::Mutex::new(BTreeSet::new());
    let status = wait_until(timeout, Duration::from_millis(300), what, || async {
        let kvc = kvcs.get("demo").await.map_err(|e| e.to_string())?;
        let s = kvc.status.unwrap_or_default();
        if let Some(p) = &s.phase {
            seen.lock().expect("phases").insert(p.clone());
        }
        if done(&s) { Ok(s) } else { Err(summary(&s)) }
    })
    .await;
    phases.extend(seen.into_inner().expect("phases"));
    status
}

/// `demo` runs `n` stores, `demo-0..n`, all Up, available, nothing in progress or wrong.
pub fn settled(s: &KvClusterStatus, n: usize) -> bool {
    s.phase.as_deref() == Some("Running")
        && s.scaling.is_none()
        && s.ready_replicas == n as i32
        && s.stores.len() == n
        && s.stores.iter().enumerate().all(|(i, e)| e.pod == format!("demo-{i}") && e.state == "Up")
        && condition(s, "Available").is_some_and(|c| c.0 == "True")
        && condition(s, "Progressing").is_some_and(|c| c.0 == "False")
        && condition(s, "Degraded").is_some_and(|c| c.0 == "False")
}

/// The reason of every Event about `demo` in `ns` (the object with `uid`
/// only, if given), once per occurrence: kube's recorder folds a repeated
/// reason into one Event with a `series.count`.
pub async fn event_reasons(client: &kube::Client, ns: &str, uid: Option<&str>) -> Vec<String> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let mut out = Vec::new();
    for e in events.list(&Default::default()).await.expect("list events").items {
        let regarding = e.regarding.as_ref();
        if regarding.and_then(|r| r.name.as_deref()) != Some("demo")
            || uid.is_some_and(|u| regarding.and_then(|r| r.uid.as_deref()) != Some(u))
        {
            continue;
        }
        let n = e.series.as_ref().map_or(1, |s| s.count.max(1)) as usize;
        if let Some(r) = e.reason {
            out.extend(std::iter::repeat_n(r, n));
        }
    }
    out
}
