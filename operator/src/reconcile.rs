//! The reconcile pipeline for one `KvCluster` (see the crate docs for the
//! stages), the finalizer around it, and the error policy.
//!
//! Each round applies every child with server-side apply (field manager
//! `shoal-operator`, forced: the operator owns these fields), carries out at
//! most one membership step, records a Kubernetes Event for each scaling step,
//! and writes the whole status. A round that is in the middle of something
//! asks to run again in a few seconds; a settled cluster is looked at again
//! every 30 s, and at once whenever the `KvCluster`, one of its children or
//! one of its pods changes. A new cluster with `spec.restoreFrom` is loaded
//! from its backup once it has formed ([`crate::restore`], in a task of its
//! own), started after the round's status is written. With `spec.paused` a round observes and writes
//! the status (phase `Paused`, an Event when it starts) but applies nothing and
//! takes no step.
//!
//! Errors: an invalid spec sets `Degraded` (reason `InvalidSpec`) and waits
//! for the spec to change; a refused step (the cluster said no) sets
//! `Degraded` (reason `StepRefused`) and is retried next round; anything else
//! sets `Degraded` with [`Error::condition_reason`] (`Forbidden` when RBAC
//! refused a call) and a Warning Event with the error, and is retried with
//! exponential backoff (1 s doubling to 60 s).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{self, Event as Finalizer};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shoal_client::ClientTls;

use crate::build::names::FIELD_MANAGER;
use crate::build::network_policy::{OperatorPeer, network_policy};
use crate::build::{BuildInput, Children, Names, build, monitor};
use crate::crd::{KvCluster, KvClusterStatus};
use crate::error::{Error, Result};
use crate::membership::{Desired, Phase, Plan, Step, plan};
use crate::metrics::Metrics;
use crate::observe::{World, observe};
use crate::status::{self, RoundOutcome};
use crate::validate::validate;
use crate::{certificates, cluster, restore, storage};

/// The finalizer the operator puts on every `KvCluster`.
pub const FINALIZER: &str = "shoal.dev/cleanup";

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// How long a drain may go without progress before `Degraded`.
    pub drain_stall: Duration,
    /// How long a join may go without progress before `Degraded`.
    pub join_stall: Duration,
    /// Consecutive failures per cluster, for the backoff.
    pub failures: Mutex<HashMap<String, u32>>,
    /// Where the operator runs, for the clusters' NetworkPolicies.
    pub operator: OperatorPeer,
    /// The restores (`spec.restoreFrom`) running in this operator.
    pub restoring: restore::Restoring,
}

fn key(kvc: &KvCluster) -> String {
    format!("{}/{}", kvc.namespace().unwrap_or_default(), kvc.name_any())
}

/// One reconcile round for `kvc`.
pub async fn reconcile(kvc: Arc<KvCluster>, ctx: Arc<Context>) -> Result<Action> {
    let timer = ctx.metrics.duration.start_timer();
    let ns = kvc.namespace().ok_or_else(|| Error::Internal("a KvCluster without a namespace".into()))?;
    let api: Api<KvCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let k = key(&kvc);
    let result = finalizer::finalizer(&api, FINALIZER, kvc, |event| async {
        match event {
            Finalizer::Apply(kvc) => apply(kvc, &ctx).await,
            Finalizer::Cleanup(kvc) => cleanup(kvc, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    });
    timer.observe_duration();
    let outcome = if result.is_ok() { "ok" } else { "error" };
    ctx.metrics.reconciles.with_label_values(&[outcome]).inc();
    if result.is_ok() {
        ctx.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(&k);
    }
    result
}

/// What to do after a failed round.
pub fn error_policy(kvc: Arc<KvCluster>, err: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.errors.with_label_values(&[err.reason()]).inc();
    if matches!(err, Error::InvalidSpec(_)) {
        tracing::warn!(cluster = %key(&kvc), error = %err, "invalid spec; waiting for it to change");
        return Action::await_change();
    }
    let mut failures = ctx.failures.lock().unwrap_or_else(|p| p.into_inner());
    let n = failures.entry(key(&kvc)).or_insert(0);
    *n = n.saturating_add(1);
    let delay = Duration::from_secs(1u64 << (*n - 1).min(6)).min(Duration::from_secs(60));
    tracing::warn!(cluster = %key(&kvc), error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// A round; one that fails for any reason but an invalid spec (which
/// reports itself) is reported in the status and as a Warning Event before
/// it is retried, so that `kubectl describe` shows what went wrong.
async fn apply(kvc: Arc<KvCluster>, ctx: &Context) -> Result<Action> {
    let result = round(kvc.clone(), ctx).await;
    if let Err(e) = &result
        && !matches!(e, Error::InvalidSpec(_))
    {
        report_failure(&kvc, ctx, e).await;
    }
    result
}

/// Marks the cluster `Degraded` with the error (on its latest status) and publishes it.
async fn report_failure(kvc: &KvCluster, ctx: &Context, err: &Error) {
    let reason = err.condition_reason();
    let message = err.to_string();
    publish(ctx, kvc, EventType::Warning, reason, "Reconcile", message.clone()).await;
    let names = Names::of(kvc);
    let api: Api<KvCluster> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let latest = match api.get_status(&names.cluster).await {
        Ok(k) => k.status.unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the status to report a failed round");
            return;
        }
    };
    let st = status::degraded(&latest, &names, kvc.metadata.generation, reason, &message, Timestamp::now());
    if let Err(e) = write_status(ctx, &api, kvc, st).await {
        tracing::warn!(error = %e, "cannot report a failed round in the status");
    }
}

async fn round(kvc: Arc<KvCluster>, ctx: &Context) -> Result<Action> {
    let names = Names::of(&kvc);
    let api: Api<KvCluster> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let previous = kvc.status.clone().unwrap_or_default();
    let generation = kvc.metadata.generation;

    if let Err(invalid) = validate(&kvc) {
        write_status(ctx, &api, &kvc, status::invalid(&previous, &names, generation, &invalid.0, Timestamp::now())).await?;
        publish(ctx, &kvc, EventType::Warning, "InvalidSpec", "Validate", invalid.0.clone()).await;
        return Err(invalid.into());
    }

    let certs = certificates::ensure(&ctx.client, &kvc, &names, SystemTime::now(), !kvc.spec.paused).await?;
    if certs.ca_created {
        publish(ctx, &kvc, EventType::Normal, "CaCreated", "Certificates", format!("made a CA in Secret {}", names.ca_secret())).await;
    }
    if !certs.issued.is_empty() {
        let note = format!("issued certificates in Secrets {}", certs.issued.join(", "));
        publish(ctx, &kvc, EventType::Normal, "CertificatesIssued", "Certificates", note).await;
    }
    let tls = certs.client_tls.as_ref();
    let world = observe(&ctx.client, &names, Timestamp::now().as_second(), tls).await?;
    let desired = Desired {
        replicas: kvc.spec.replicas,
        replication_factor: kvc.spec.replication_factor,
        drain_stall_secs: ctx.drain_stall.as_secs() as i64,
        join_stall_secs: ctx.join_stall.as_secs() as i64,
    };
    let memory = status::memory(&previous);
    let plan = plan(&names, &desired, &memory, &world.observed);
    // What the status is built from, once the step (if any) is known.
    let outcome = |step_error| RoundOutcome {
        names: &names,
        generation,
        replication_factor: kvc.spec.replication_factor,
        previous: &previous,
        plan: &plan,
        observed: &world.observed,
        sts_status: world.sts_status,
        step_error,
        now: Timestamp::now(),
    };
    // A raised storage size: the volumes grow and the StatefulSet is made
    // again (orphaning its pods) before anything is applied to it.
    let growth = world.sts_storage.as_deref().map(|live| (live, storage::needs_growth(live, &kvc.spec.storage.size)));
    if let Some((_, Err(invalid))) = growth {
        // Volumes do not shrink (the CRD refuses it; this is for objects that bypassed it).
        write_status(ctx, &api, &kvc, status::invalid(&previous, &names, generation, &invalid.0, Timestamp::now())).await?;
        publish(ctx, &kvc, EventType::Warning, "InvalidSpec", "Validate", invalid.0.clone()).await;
        return Err(invalid.into());
    }
    if !kvc.spec.paused
        && let Some((live, Ok(true))) = growth
    {
        let raised = storage::expand(&ctx.client, &names, &kvc.spec.storage.size).await?;
        let note = format!(
            "storage {live} → {}: {} volume claims expanded ({}); StatefulSet {} deleted with its pods orphaned, to be re-created with the new size",
            kvc.spec.storage.size,
            raised.len(),
            raised.join(", "),
            names.statefulset()
        );
        publish(ctx, &kvc, EventType::Normal, "ExpandVolumes", "Expand", note).await;
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    if kvc.spec.paused {
        // Observed, not acted on: no object applied, no step, the memory kept.
        write_status(ctx, &api, &kvc, status::paused(&outcome(None))).await?;
        if previous.phase.as_deref() != Some(Phase::Paused.as_str()) {
            let note = "spec.paused is true: no change is made to the cluster until it is unset".to_string();
            publish(ctx, &kvc, EventType::Normal, "Paused", "Reconcile", note).await;
        }
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    let input = BuildInput {
        kvc: &kvc,
        names: names.clone(),
        sts_replicas: plan.sts_replicas,
        initial_members: plan.memory.initial_members.unwrap_or(kvc.spec.replicas),
        bootstrapped: plan.memory.bootstrapped,
    };
    let monitor_error = apply_children(&ctx.client, &names, &build(&input), &kvc).await?;
    apply_network_policy(&ctx.client, &names, network_policy(&input, &ctx.operator), &kvc).await?;
    announce(ctx, &kvc, &memory, &plan, &world).await;
    if let Some(e) = &monitor_error {
        publish(ctx, &kvc, EventType::Warning, "ServiceMonitorFailed", "Apply", e.clone()).await;
    }
    // A failed step is reported in the status before the round fails (and is
    // retried with backoff); a refused one is reported and retried next round.
    let (step_error, failure) = match &plan.step {
        Some(step) => match run_step(ctx, &kvc, &names, &world, tls, step).await {
            Ok(refused) => (refused.map(|m| ("StepRefused", m)), None),
            Err(e) => (Some(("StepFailed", format!("{}: {e}", step.labels().1))), Some(e)),
        },
        None => (None, None),
    };
    let step_error = step_error.or_else(|| monitor_error.map(|e| ("ServiceMonitorFailed", e)));

    write_status(ctx, &api, &kvc, status::status(&outcome(step_error))).await?;
    if let Some(e) = failure {
        return Err(e);
    }
    if kvc.spec.restore_from.is_some() {
        let ready = restore::ready(plan.memory.bootstrapped, &world.observed, kvc.spec.replication_factor);
        restore::step(&ctx.client, &ctx.recorder, &ctx.restoring, &kvc, &names, ready, &world.endpoints, tls).await?;
    }
    let busy = plan.progress.is_some() || plan.step.is_some() || plan.degraded.is_some();
    Ok(Action::requeue(Duration::from_secs(if busy { 3 } else { 30 })))
}

/// Writes a round's status (one merge patch) and the cluster's gauges.
async fn write_status(ctx: &Context, api: &Api<KvCluster>, kvc: &KvCluster, st: KvClusterStatus) -> Result<()> {
    let names = Names::of(kvc);
    ctx.metrics.observe_cluster(&names.namespace, &names.cluster, kvc.spec.replicas, &st);
    api.patch_status(&names.cluster, &PatchParams::default(), &Patch::Merge(status::merge_patch(&st))).await?;
    Ok(())
}

/// Deleting a `KvCluster`: its children go with it (owner references); its
/// volumes are kept, since they hold the data.
async fn cleanup(kvc: Arc<KvCluster>, ctx: &Context) -> Result<Action> {
    let names = Names::of(&kvc);
    ctx.metrics.forget_cluster(&names.namespace, &names.cluster);
    let note = format!(
        "deleting cluster {}; its volumes are kept: kubectl delete pvc -n {} -l {}",
        names.cluster,
        names.namespace,
        names.selector_string()
    );
    publish(ctx, &kvc, EventType::Normal, "Deleting", "Delete", note).await;
    Ok(Action::await_change())
}

async fn ssa<K>(client: &Client, ns: &str, obj: &K) -> Result<()>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    Api::<K>::namespaced(client.clone(), ns).patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(obj)).await?;
    Ok(())
}

/// Applies every child. The ServiceMonitor is optional equipment (its CRD may
/// not be installed): its failure is returned, not raised, so the cluster is
/// still driven.
async fn apply_children(client: &Client, names: &Names, children: &Children, kvc: &KvCluster) -> Result<Option<String>> {
    let ns = names.namespace.as_str();
    ssa::<ConfigMap>(client, ns, &children.config_map).await?;
    ssa::<Service>(client, ns, &children.peer_service).await?;
    ssa::<Service>(client, ns, &children.client_service).await?;
    ssa::<PodDisruptionBudget>(client, ns, &children.pdb).await?;
    ssa::<StatefulSet>(client, ns, &children.statefulset).await?;
    let ar = ApiResource {
        group: "monitoring.coreos.com".into(),
        version: "v1".into(),
        api_version: monitor::API_VERSION.into(),
        kind: monitor::KIND.into(),
        plural: "servicemonitors".into(),
    };
    let monitors: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let wanted = kvc.spec.monitoring.as_ref().and_then(|m| m.service_monitor.as_ref());
    let result = match (&children.service_monitor, wanted) {
        (Some(sm), _) => {
            monitors.patch(&names.client_service(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(sm)).await.map(drop)
        }
        // Turned off: remove the one made before (absent, or no such CRD: fine).
        (None, Some(_)) => match monitors.delete(&names.client_service(), &DeleteParams::default()).await {
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            other => other.map(drop),
        },
        (None, None) => Ok(()),
    };
    Ok(result.err().map(|e| format!("cannot apply the ServiceMonitor (is the Prometheus Operator's CRD installed?): {e}")))
}

/// Applies the NetworkPolicy, or deletes the one made before once
/// `spec.networkPolicy.enabled` is false.
async fn apply_network_policy(client: &Client, names: &Names, policy: Option<NetworkPolicy>, kvc: &KvCluster) -> Result<()> {
    match policy {
        Some(p) => ssa::<NetworkPolicy>(client, &names.namespace, &p).await,
        None if kvc.spec.network_policy.is_some() => {
            let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &names.namespace);
            match api.delete(&names.statefulset(), &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        None => Ok(()),
    }
}

/// Deletes the data volume claim of pod `ordinal` (gone already is fine).
async fn delete_volume(client: &Client, names: &Names, ordinal: i32) -> Result<()> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &names.namespace);
    match pvcs.delete(&names.pvc(ordinal), &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(Error::from(e)),
    }
}

/// Carries out the step; `Ok(Some(reason))` when the cluster refused it.
async fn run_step(
    ctx: &Context,
    kvc: &KvCluster,
    names: &Names,
    world: &World,
    tls: Option<&ClientTls>,
    step: &Step,
) -> Result<Option<String>> {
    let (operation, reason, action) = step.labels();
    let what = match step {
        Step::JoinStore { store_id, pod } => format!("joining store {store_id} ({pod}): it is seeded by snapshot"),
        Step::DrainStore { store_id, pod } => format!("draining store {store_id} ({pod}): its peers and leaders move away"),
        Step::RemoveStore { store_id, pod } => format!("removing store {store_id} ({pod}): it holds nothing"),
        Step::CancelDrain { store_id, pod } => format!("cancelling the drain of store {store_id} ({pod}): the scale-in was called off"),
        Step::DeleteVolume { ordinal } => format!("deleting volume {} of retired pod {}", names.pvc(*ordinal), names.pod(*ordinal)),
        Step::LabelStore { store_id, pod, zone } => format!("labelling store {store_id} ({pod}) with zone {zone}, its node's"),
        Step::ReplaceVolume { ordinal, store_id } => format!(
            "replacing volume {} of {} (store {store_id} is down and the volume's node is gone): the pod comes back as a new store",
            names.pvc(*ordinal),
            names.pod(*ordinal)
        ),
    };
    let result = match step {
        Step::DeleteVolume { ordinal } => delete_volume(&ctx.client, names, *ordinal).await,
        Step::ReplaceVolume { ordinal, .. } => {
            // The claim first (it stays until its pod is gone), then the pod:
            // the StatefulSet makes both again, the claim empty.
            match delete_volume(&ctx.client, names, *ordinal).await {
                Ok(()) => {
                    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
                    match pods.delete(&names.pod(*ordinal), &DeleteParams::default()).await {
                        Ok(_) => Ok(()),
                        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                        Err(e) => Err(Error::from(e)),
                    }
                }
                Err(e) => Err(e),
            }
        }
        admin => match cluster::client(&world.endpoints, tls) {
            Ok(c) => cluster::run_step(&c, admin).await,
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => {
            ctx.metrics.operations.with_label_values(&[operation, "ok"]).inc();
            publish(ctx, kvc, EventType::Normal, reason, action, what).await;
            Ok(None)
        }
        Err(Error::Cluster(shoal_client::ClientError::FailedPrecondition(why))) => {
            ctx.metrics.operations.with_label_values(&[operation, "refused"]).inc();
            let msg = format!("the cluster refused {what}: {why}");
            publish(ctx, kvc, EventType::Warning, "StepRefused", action, msg.clone()).await;
            Ok(Some(msg))
        }
        Err(e) => {
            ctx.metrics.operations.with_label_values(&[operation, "error"]).inc();
            Err(e)
        }
    }
}

/// Events for what changed this round besides the step itself.
async fn announce(ctx: &Context, kvc: &KvCluster, before: &crate::membership::Memory, plan: &Plan, world: &World) {
    let sts = world.observed.sts_replicas;
    match sts {
        None if plan.memory.bootstrapped => {
            let note = format!("re-creating StatefulSet {} with {} pods over the kept volumes", kvc.name_any(), plan.sts_replicas);
            publish(ctx, kvc, EventType::Normal, "RecreateStatefulSet", "Create", note).await;
        }
        None => {
            let note = format!("creating StatefulSet {} with {} initial members", kvc.name_any(), plan.sts_replicas);
            publish(ctx, kvc, EventType::Normal, "Bootstrap", "Create", note).await;
        }
        Some(n) if n != plan.sts_replicas => {
            let note = format!("StatefulSet {}: {n} → {} pods", kvc.name_any(), plan.sts_replicas);
            publish(ctx, kvc, EventType::Normal, "ScaleStatefulSet", "Scale", note).await;
        }
        _ => {}
    }
    // (Not when the StatefulSet is re-created over kept volumes: that cluster
    // was formed long ago.)
    if !before.bootstrapped && plan.memory.bootstrapped && sts.is_some() {
        publish(ctx, kvc, EventType::Normal, "Bootstrapped", "Bootstrap", "every initial member is up; new pods join from now on".into())
            .await;
    }
    match (&before.scaling, &plan.memory.scaling) {
        (None, Some(s)) => {
            publish(ctx, kvc, EventType::Normal, "ScalingStarted", "Scale", format!("scaling from {} to {} stores", s.from, s.to)).await
        }
        (Some(s), None) => publish(ctx, kvc, EventType::Normal, "ScalingDone", "Scale", format!("scaled to {} stores", s.to)).await,
        (Some(was), Some(now)) if was.to != now.to => {
            let note = format!("the scale-in to {} stores was called off: back to {} stores", was.to, now.to);
            publish(ctx, kvc, EventType::Normal, "ScalingCancelled", "Scale", note).await
        }
        _ => {}
    }
}

async fn publish(ctx: &Context, kvc: &KvCluster, type_: EventType, reason: &str, action: &str, note: String) {
    tracing::info!(cluster = %key(kvc), reason, "{note}");
    let ev = Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None };
    if let Err(e) = ctx.recorder.publish(&ev, &kvc.object_ref(&())).await {
        tracing::warn!(error = %e, "cannot record an event");
    }
}
