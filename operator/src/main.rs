//! `shoal-operator`: `crd` prints the KvCluster CRD; `run` runs the operator.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use clap::{ArgAction, Parser, Subcommand};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, controller, watcher};
use kube::{Api, Client, ResourceExt};
use shoal_operator::build::network_policy::OperatorPeer;
use shoal_operator::crd::{KvBackup, KvCluster};
use shoal_operator::leader::LeaseLock;
use shoal_operator::metrics::Metrics;
use shoal_operator::reconcile::{Context, error_policy, reconcile};

#[derive(Parser)]
#[command(name = "shoal-operator", version, about = "Kubernetes operator for Shoal clusters (KvCluster)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prints a CustomResourceDefinition as YAML (KvCluster unless --kind says KvBackup).
    Crd {
        #[arg(long, value_enum, default_value_t = CrdKind::KvCluster)]
        kind: CrdKind,
    },
    /// Runs the operator.
    Run(RunArgs),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CrdKind {
    #[value(name = "KvCluster")]
    KvCluster,
    #[value(name = "KvBackup")]
    KvBackup,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "SHOAL_OPERATOR_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Watch KvClusters of this namespace only (default: all namespaces).
    #[arg(long, env = "SHOAL_OPERATOR_NAMESPACE")]
    namespace: Option<String>,
    /// Take a Lease before reconciling, so that several replicas are safe.
    #[arg(long, env = "SHOAL_OPERATOR_LEADER_ELECTION", default_value_t = true, action = ArgAction::Set)]
    leader_election: bool,
    /// Namespace of the leader Lease (default: this pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    #[arg(long, default_value = "shoal-operator")]
    lease_name: String,
    /// Seconds the leader Lease lasts without renewal (3..300).
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=300))]
    lease_duration_secs: u64,
    /// This replica's identity in the Lease and in Events (default: the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Labels of the operator's own pods (`k=v,k=v`), which a cluster's
    /// NetworkPolicy lets in; its namespace is --lease-namespace's.
    #[arg(long, env = "SHOAL_OPERATOR_POD_LABELS", default_value = "app.kubernetes.io/name=shoal-operator")]
    operator_pod_labels: String,
    /// Seconds a drain may go without moving a region before the cluster is Degraded.
    #[arg(long, default_value_t = 600)]
    drain_stall_timeout_secs: u64,
    /// Seconds a joining store may go without receiving a region before the cluster is Degraded.
    #[arg(long, default_value_t = 600)]
    join_stall_timeout_secs: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { kind: CrdKind::KvCluster } => {
            print!("{}", shoal_operator::crd::crd_yaml());
            Ok(())
        }
        Command::Crd { kind: CrdKind::KvBackup } => {
            print!("{}", shoal_operator::crd::backup_crd_yaml());
            Ok(())
        }
        Command::Run(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr)
                .init();
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?.block_on(run(args))
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new().context("metrics registry")?);
    let listener = tokio::net::TcpListener::bind(args.metrics_addr).await.with_context(|| format!("binding {}", args.metrics_addr))?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    tokio::spawn(shoal_operator::http::serve(listener, metrics.clone()));

    let client = Client::try_default().await.context("connecting to the Kubernetes API")?;
    let identity = args.identity.clone().unwrap_or_else(|| format!("shoal-operator-{}", std::process::id()));
    let lease = args.leader_election.then(|| {
        LeaseLock::new(client.clone(), &args.lease_namespace, &args.lease_name, &identity, Duration::from_secs(args.lease_duration_secs))
    });
    if let Some(lease) = &lease {
        tracing::info!(lease = %args.lease_name, namespace = %args.lease_namespace, %identity, "waiting for the leader Lease");
        tokio::select! {
            () = lease.acquire() => {}
            () = shutdown_signal() => return Ok(()),
        }
        tracing::info!("leading");
    }
    metrics.leader.set(1);

    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), Reporter { controller: "shoal-operator".into(), instance: Some(identity.clone()) }),
        metrics: metrics.clone(),
        drain_stall: Duration::from_secs(args.drain_stall_timeout_secs),
        join_stall: Duration::from_secs(args.join_stall_timeout_secs),
        failures: Mutex::new(Default::default()),
        operator: OperatorPeer::parse(&args.lease_namespace, &args.operator_pod_labels).map_err(anyhow::Error::msg)?,
        restoring: Default::default(),
    });
    let backup_ctx = ctx.clone();
    let controller = async {
        futures::join!(
            controller(&client, args.namespace.as_deref(), ctx),
            backup_controller(&client, args.namespace.as_deref(), backup_ctx)
        );
    };
    let result = match &lease {
        Some(lease) => tokio::select! {
            () = controller => Ok(()),
            () = lease.hold() => Err(anyhow::anyhow!("lost the leader Lease")),
        },
        None => {
            controller.await;
            Ok(())
        }
    };
    metrics.leader.set(0);
    if let Some(lease) = &lease {
        lease.release().await;
    }
    result
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the controller until SIGTERM or SIGINT.
async fn controller(client: &Client, namespace: Option<&str>, ctx: Arc<Context>) {
    let owned = || watcher::Config::default().labels("app.kubernetes.io/managed-by=shoal-operator");
    Controller::new(api::<KvCluster>(client, namespace), watcher::Config::default())
        .owns(api::<StatefulSet>(client, namespace), owned())
        .owns(api::<Service>(client, namespace), owned())
        .owns(api::<ConfigMap>(client, namespace), owned())
        .owns(api::<PodDisruptionBudget>(client, namespace), owned())
        // A pod becoming ready (or going away) is worth a look at once.
        .watches(api::<Pod>(client, namespace), owned(), |pod: Pod| {
            let ns = pod.namespace();
            pod.labels().get("app.kubernetes.io/instance").map(|name| {
                let r = ObjectRef::<KvCluster>::new(name);
                match ns {
                    Some(ns) => r.within(&ns),
                    None => r,
                }
            })
        })
        // Every status write is a watch event of its own: wait a moment for
        // the burst to end instead of reconciling once per event.
        .with_config(controller::Config::default().debounce(Duration::from_secs(1)))
        .graceful_shutdown_on(shutdown_signal())
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(cluster = %obj, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile failed"),
            }
        })
        .await;
}

/// Runs the `KvBackup` controller until SIGTERM or SIGINT.
async fn backup_controller(client: &Client, namespace: Option<&str>, ctx: Arc<Context>) {
    Controller::new(api::<KvBackup>(client, namespace), watcher::Config::default())
        .graceful_shutdown_on(shutdown_signal())
        .run(shoal_operator::backup::reconcile, shoal_operator::backup::error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "KvBackup round failed");
            }
        })
        .await;
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
