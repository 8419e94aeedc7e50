//! `spec.restoreFrom`: loading a backup into a new cluster, once.
//!
//! When the cluster has formed (every initial member came up) and at least
//! `replicationFactor` stores are Up, a round marks `status.restore`
//! `Running` (its own merge patch, so the rounds' status writes leave it
//! alone) and starts [`shoal_client::backup::restore`] in a task of its own
//! (every file downloaded and checked against the manifest's SHA-256 first,
//! then written through the normal write path), so that rounds go on while it
//! runs. The task records `Succeeded` with the key count or `Failed` with the
//! reason, and an Event either way. A restore is tried once: one found
//! `Running` that no task of this operator runs was interrupted (the
//! operator stopped) and is marked `Failed`, since part of the data may be
//! in and a cluster that holds keys is refused anyway. Applications should
//! wait for `status.restore.phase` `Succeeded` before they write.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource};
use serde_json::json;
use shoal_client::ClientTls;

use crate::backup;
use crate::build::Names;
use crate::cluster;
use crate::crd::{KvCluster, RestoreStatus};
use crate::error::Result;
use crate::membership::{Observed, StoreState};

/// The clusters (`namespace/name`) whose restore runs in this operator.
pub type Restoring = Arc<Mutex<HashSet<String>>>;

fn lock(r: &Restoring) -> std::sync::MutexGuard<'_, HashSet<String>> {
    r.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether the cluster can take the restore: formed, with enough stores Up.
pub fn ready(bootstrapped: bool, observed: &Observed, replication_factor: i32) -> bool {
    let up = observed.stores.as_ref().map_or(0, |s| s.iter().filter(|s| s.state == StoreState::Up).count());
    bootstrapped && up >= replication_factor.max(1) as usize
}

async fn write(client: &Client, names: &Names, restore: &RestoreStatus) -> Result<()> {
    let api: Api<KvCluster> = Api::namespaced(client.clone(), &names.namespace);
    api.patch_status(&names.cluster, &PatchParams::default(), &Patch::Merge(json!({ "status": { "restore": restore } }))).await?;
    Ok(())
}

async fn publish(recorder: &Recorder, kvc: &KvCluster, type_: EventType, reason: &str, note: String) {
    tracing::info!(cluster = %names_of(kvc), reason, "{note}");
    let ev = Event { type_, reason: reason.into(), note: Some(note), action: "Restore".into(), secondary: None };
    if let Err(e) = recorder.publish(&ev, &kvc.object_ref(&())).await {
        tracing::warn!(error = %e, "cannot record an event");
    }
}

fn names_of(kvc: &KvCluster) -> String {
    let n = Names::of(kvc);
    format!("{}/{}", n.namespace, n.cluster)
}

/// A round's part in the restore (see the module header).
#[allow(clippy::too_many_arguments)]
pub async fn step(
    client: &Client,
    recorder: &Recorder,
    restoring: &Restoring,
    kvc: &KvCluster,
    names: &Names,
    ready: bool,
    endpoints: &[String],
    tls: Option<&ClientTls>,
) -> Result<()> {
    let Some(from) = kvc.spec.restore_from.clone() else { return Ok(()) };
    let key = names_of(kvc);
    if lock(restoring).contains(&key) {
        return Ok(());
    }
    // As stored now, not as the watch cache last saw it.
    let api: Api<KvCluster> = Api::namespaced(client.clone(), &names.namespace);
    let current = api.get_status(&names.cluster).await?.status.and_then(|s| s.restore);
    match current.as_ref().map(|r| r.phase.as_str()) {
        Some("Succeeded" | "Failed") => return Ok(()),
        Some(_) => {
            let note = format!(
                "the restore from {} was interrupted (the operator stopped during it) and is not retried: part of the data may be in; delete the cluster and its volumes and create it again",
                from.source
            );
            let st = RestoreStatus {
                source: from.source.clone(),
                phase: "Failed".into(),
                message: Some(note.clone()),
                completed_at: Some(Timestamp::now().to_string()),
                ..Default::default()
            };
            write(client, names, &st).await?;
            publish(recorder, kvc, EventType::Warning, "RestoreFailed", note).await;
            return Ok(());
        }
        None => {}
    }
    if !ready {
        return Ok(());
    }
    let st = RestoreStatus { source: from.source.clone(), phase: "Running".into(), ..Default::default() };
    write(client, names, &st).await?;
    publish(recorder, kvc, EventType::Normal, "RestoreStarted", format!("restoring from {}", from.source)).await;
    lock(restoring).insert(key.clone());
    let (client, recorder, restoring, kvc, names) = (client.clone(), recorder.clone(), restoring.clone(), kvc.clone(), names.clone());
    let (endpoints, tls) = (endpoints.to_vec(), tls.cloned());
    tokio::spawn(async move {
        let result = async {
            let source = backup::location(&client, &names.namespace, &from.source, from.credentials_secret.as_deref()).await?;
            let shoal = cluster::client(&endpoints, tls.as_ref())?;
            Ok::<_, crate::error::Error>(shoal_client::backup::restore(&shoal, &source, &std::env::temp_dir()).await?)
        }
        .await;
        let mut st = RestoreStatus { source: from.source.clone(), completed_at: Some(Timestamp::now().to_string()), ..Default::default() };
        let (type_, reason, note) = match result {
            Ok(report) => {
                st.phase = "Succeeded".into();
                st.keys = report.keys;
                let note =
                    format!("restored {} keys ({} bytes) from {} in {:.1} s", report.keys, report.bytes, from.source, report.seconds);
                (EventType::Normal, "Restored", note)
            }
            Err(e) => {
                st.phase = "Failed".into();
                let note = format!(
                    "restore from {} failed: {e}; it is not retried (delete the cluster and its volumes to start over)",
                    from.source
                );
                (EventType::Warning, "RestoreFailed", note)
            }
        };
        st.message = Some(note.clone());
        if let Err(e) = write(&client, &names, &st).await {
            tracing::error!(cluster = %key, error = %e, "cannot record the restore's outcome");
        }
        publish(&recorder, &kvc, type_, reason, note).await;
        lock(&restoring).remove(&key);
    });
    Ok(())
}
