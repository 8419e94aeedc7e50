//! The `KvBackup` controller: takes a cluster's backups with
//! [`shoal_client::backup::create`] (fence every region, lift, export; see
//! that module), one or one per tick of a schedule, and deletes old ones.
//!
//! A round for a one-shot `KvBackup` (no `schedule`) that has not run yet
//! marks it `Running`, takes the backup `<namespace>.<name>-YYYYMMDD-HHMMSS`
//! ([`name_prefix`]), and marks it
//! `Succeeded` (with `status.lastBackup`, whose `url` a new cluster's
//! `restoreFrom.source` takes) or `Failed` (with the reason), and records an
//! Event either way; it never runs again. A scheduled one ([`schedule`])
//! sleeps until its next tick, takes a backup, deletes the backups it took
//! beyond the newest `keep` (complete ones only; a failed backup's files are
//! deleted with it), and sleeps again; a failed backup is reported and the
//! next tick tries again.
//!
//! The operator reaches the cluster as its reconcile does (pod IPs, its own
//! certificate with TLS on: fencing is an operator-only call). S3 settings
//! come from the `credentialsSecret` ([`location`]).

pub mod schedule;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use shoal_client::backup::{self, Location};

use crate::build::Names;
use crate::crd::{BackupRecord, KvBackup, KvBackupStatus, KvCluster};
use crate::error::{Error, Result};
use crate::reconcile::Context;
use crate::{certificates, cluster, observe};

/// Scheduled backups kept when `keep` is not set.
pub const DEFAULT_KEEP: u32 = 7;
/// The longest backup name (as `shoalctl backup create` allows).
const MAX_NAME: usize = 128;

/// What the `KvBackup` `name` in namespace `ns` names its backups with:
/// `<ns>.<name>` (a namespace has no dot, so two `KvBackup`s sharing a
/// destination never take each other's backups for their own).
pub fn name_prefix(ns: &str, name: &str) -> String {
    format!("{ns}.{name}")
}
/// A scheduled `KvBackup` is looked at again at least this often.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// The backup location `url`, with the S3 settings of Secret `secret` (its
/// keys are `AWS_*` names) in namespace `ns`.
pub async fn location(client: &Client, ns: &str, url: &str, secret: Option<&str>) -> Result<Location> {
    let mut settings = Vec::new();
    if let Some(name) = secret {
        let s = Api::<Secret>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await?
            .ok_or_else(|| Error::Internal(format!("no Secret {name} in namespace {ns} (the backup's S3 settings)")))?;
        for (k, v) in s.data.unwrap_or_default() {
            let v = String::from_utf8(v.0).map_err(|_| Error::Internal(format!("Secret {name}: {k} is not UTF-8")))?;
            settings.push((k, v));
        }
    }
    Ok(Location::parse_with(url, &settings)?)
}

/// A client for `kvc`'s stores, with the operator's certificate when it has TLS.
pub async fn cluster_client(client: &Client, kvc: &KvCluster) -> Result<shoal_client::Client> {
    let names = Names::of(kvc);
    let certs = certificates::ensure(client, kvc, &names, SystemTime::now(), false).await?;
    let endpoints = observe::endpoints(client, &names).await?;
    if endpoints.is_empty() {
        return Err(Error::Internal(format!("no pod of cluster {} has an address", names.cluster)));
    }
    cluster::client(&endpoints, certs.client_tls.as_ref())
}

/// Takes backup `name` of the `KvBackup`'s cluster.
async fn take(client: &Client, kvb: &KvBackup, ns: &str, name: &str) -> Result<BackupRecord> {
    let kvc = Api::<KvCluster>::namespaced(client.clone(), ns)
        .get_opt(&kvb.spec.cluster)
        .await?
        .ok_or_else(|| Error::Internal(format!("no KvCluster {} in namespace {ns}", kvb.spec.cluster)))?;
    let shoal = cluster_client(client, &kvc).await?;
    let dest = location(client, ns, &kvb.spec.destination, kvb.spec.credentials_secret.as_deref()).await?;
    let manifest = backup::create(&shoal, &dest, name).await?;
    Ok(BackupRecord {
        name: name.to_string(),
        url: dest.child(name).url,
        completed_at: Timestamp::now().to_string(),
        regions: manifest.regions.len() as u64,
        keys: manifest.total_keys(),
        bytes: manifest.total_bytes(),
        fence_millis: manifest.all_fenced_unix_ms.saturating_sub(manifest.fencing_began_unix_ms),
    })
}

async fn write_status(api: &Api<KvBackup>, name: &str, status: &KvBackupStatus) -> Result<()> {
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await?;
    Ok(())
}

async fn publish(ctx: &Context, kvb: &KvBackup, type_: EventType, reason: &str, note: String) {
    tracing::info!(backup = %kvb.name_any(), reason, "{note}");
    let ev = Event { type_, reason: reason.into(), note: Some(note), action: "Backup".into(), secondary: None };
    if let Err(e) = ctx.recorder.publish(&ev, &kvb.object_ref(&())).await {
        tracing::warn!(error = %e, "cannot record an event");
    }
}

/// One round for `kvb` (see the module header).
pub async fn reconcile(kvb: Arc<KvBackup>, ctx: Arc<Context>) -> Result<Action> {
    let ns = kvb.namespace().ok_or_else(|| Error::Internal("a KvBackup without a namespace".into()))?;
    let api: Api<KvBackup> = Api::namespaced(ctx.client.clone(), &ns);
    let name = kvb.name_any();
    // As stored now, not as the watch cache last saw it: a round queued by
    // this round's own status writes must not take the backup again.
    let mut status = api.get_status(&name).await?.status.unwrap_or_default();
    let now = Timestamp::now();
    let prefix = name_prefix(&ns, &name);
    if prefix.len() + 16 > MAX_NAME {
        status.phase = Some("Failed".into());
        status.message = Some(format!(
            "namespace and name are {} characters together; at most {} fit in a backup's name",
            ns.len() + name.len(),
            MAX_NAME - 17
        ));
        write_status(&api, &name, &status).await?;
        return Ok(Action::await_change());
    }
    let Some(spec_schedule) = kvb.spec.schedule.clone() else {
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            return Ok(Action::await_change());
        }
        let backup_name = schedule::backup_name(&prefix, now);
        status.phase = Some("Running".into());
        status.message = Some(format!("taking backup {backup_name} of cluster {}", kvb.spec.cluster));
        write_status(&api, &name, &status).await?;
        let ok = take_and_report(&ctx, &kvb, &ns, &backup_name, &mut status, "").await;
        status.phase = Some(if ok { "Succeeded" } else { "Failed" }.into());
        write_status(&api, &name, &status).await?;
        return Ok(Action::await_change());
    };

    let cron = match schedule::parse(&spec_schedule) {
        Ok(c) => c,
        Err(why) => {
            status.phase = Some("Failed".into());
            status.message = Some(why.clone());
            write_status(&api, &name, &status).await?;
            publish(&ctx, &kvb, EventType::Warning, "InvalidSchedule", why).await;
            return Ok(Action::await_change());
        }
    };
    let created = kvb.meta().creation_timestamp.as_ref().map_or(now, |t| t.0);
    let last: Option<Timestamp> = status.last_schedule_time.as_deref().and_then(|t| t.parse().ok());
    let due = schedule::next_due(&cron, last, created).map_err(Error::Internal)?;
    if due > now {
        let next = Some(due.to_string());
        if status.next_schedule_time != next || status.phase.as_deref() != Some("Scheduled") {
            status.phase = Some("Scheduled".into());
            status.next_schedule_time = next;
            write_status(&api, &name, &status).await?;
        }
        return Ok(Action::requeue(until(now, due)));
    }

    let backup_name = schedule::backup_name(&prefix, now);
    status.last_schedule_time = Some(now.to_string());
    status.message = Some(format!("taking backup {backup_name} of cluster {}", kvb.spec.cluster));
    write_status(&api, &name, &status).await?;
    take_and_report(&ctx, &kvb, &ns, &backup_name, &mut status, "; the next tick tries again").await;
    match prune(&ctx.client, &kvb, &ns).await {
        Ok((gone, kept)) => {
            if !gone.is_empty() {
                let note = format!("deleted backups {} (keeping the newest {})", gone.join(", "), kept.len());
                publish(&ctx, &kvb, EventType::Normal, "BackupsPruned", note).await;
            }
            status.kept = kept;
        }
        Err(e) => publish(&ctx, &kvb, EventType::Warning, "PruneFailed", format!("cannot delete old backups: {e}")).await,
    }
    let next = schedule::next_due(&cron, Some(now), created).map_err(Error::Internal)?;
    status.phase = Some("Scheduled".into());
    status.next_schedule_time = Some(next.to_string());
    write_status(&api, &name, &status).await?;
    Ok(Action::requeue(until(Timestamp::now(), next)))
}

/// Takes backup `backup_name` and reports it in `status` (`message`,
/// `lastBackup`) and as an Event (`then` ends a failure's message); whether it
/// succeeded.
async fn take_and_report(ctx: &Context, kvb: &KvBackup, ns: &str, backup_name: &str, status: &mut KvBackupStatus, then: &str) -> bool {
    match take(&ctx.client, kvb, ns, backup_name).await {
        Ok(record) => {
            let note = format!(
                "backup {} of cluster {}: {} keys in {} regions, writes held {} ms",
                record.url, kvb.spec.cluster, record.keys, record.regions, record.fence_millis
            );
            status.message = Some(note.clone());
            status.last_backup = Some(record);
            publish(ctx, kvb, EventType::Normal, "BackupSucceeded", note).await;
            true
        }
        Err(e) => {
            let note = format!("backup {backup_name} of cluster {} failed: {e}{then}", kvb.spec.cluster);
            status.message = Some(note.clone());
            publish(ctx, kvb, EventType::Warning, "BackupFailed", note).await;
            false
        }
    }
}

/// Deletes this `KvBackup`'s backups beyond the newest `keep`; returns the
/// deleted and the kept names.
async fn prune(client: &Client, kvb: &KvBackup, ns: &str) -> Result<(Vec<String>, Vec<String>)> {
    let dest = location(client, ns, &kvb.spec.destination, kvb.spec.credentials_secret.as_deref()).await?;
    let found = backup::list(&dest).await?;
    let complete: Vec<String> = found.iter().filter(|b| b.manifest.is_some()).map(|b| b.name.clone()).collect();
    let prefix = name_prefix(ns, &kvb.name_any());
    let (gone, kept) = schedule::prune(&complete, &prefix, kvb.spec.keep.unwrap_or(DEFAULT_KEEP) as usize);
    // A failed backup of ours (no manifest) goes too: it can never be restored.
    let failed = found.iter().filter(|b| b.manifest.is_none()).map(|b| b.name.clone()).collect::<Vec<_>>();
    let (failed_ours, _) = schedule::prune(&failed, &prefix, 0);
    for name in gone.iter().chain(&failed_ours) {
        backup::delete(&dest.child(name)).await?;
    }
    Ok((gone, kept))
}

fn until(now: Timestamp, due: Timestamp) -> Duration {
    let secs = (due.as_second() - now.as_second()).max(1) as u64;
    Duration::from_secs(secs).min(MAX_SLEEP)
}

/// A failed round (the Kubernetes API refused a status write): retried in 30 s.
pub fn error_policy(kvb: Arc<KvBackup>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.errors.with_label_values(&[err.reason()]).inc();
    tracing::warn!(backup = %kvb.name_any(), error = %err, "KvBackup round failed");
    Action::requeue(Duration::from_secs(30))
}
