//! The node's edges: gRPC services, the Raft transport and the HTTP status
//! server, and [`run`], which wires them to the store loop.
//!
//! Start-up: open the [`Engine`]; load the store's identity, or — for an empty
//! data directory, as [`NodeConfig::first_start`] says — bootstrap it
//! ([`crate::raftstore::bootstrap`]) or register with the cluster ([`join`])
//! and start holding nothing; load the [`Store`] and start its loop; start
//! the transport; bind and serve `Kv` ([`kv::KvService`]), `Raft`
//! ([`transport::RaftService`]), `Meta` ([`meta::MetaService`]), `Admin`
//! ([`admin::AdminService`], sharing Meta's state), `Backup`
//! ([`backup::BackupService`]: fencing and exporting regions) and `Status`
//! ([`status::StatusService`]) on the listen address (the peer port); with
//! `--client-listen-addr`, `Kv`, `Meta`'s lookups and `Status` on a client
//! port too, which names client addresses in its hints
//! ([`registry::StoreRegistry::for_clients`], [`meta::MetaService::for_clients`]),
//! so that a network policy can keep clients off Raft, Admin and Backup; both over TLS,
//! mutual with `--client-cert-auth`, when the node has certificates ([`tls`]);
//! and [`http::StatusHttp`] on the status address; start the [`heartbeat::Heartbeat`] task, which reports
//! to meta, splits regions and carries out placement orders.
//!
//! Shutdown (SIGTERM): hand the leadership of every region led here to other
//! voters ([`evacuate`], at most [`EVACUATE_TIMEOUT`], serving meanwhile); then
//! stop accepting requests, let in-flight ones finish, stop the store loop
//! (which fails what still waits and flushes the WAL), return.

pub mod admin;
pub mod backup;
pub mod directory_cache;
pub mod errors;
pub mod evacuate;
pub mod heartbeat;
pub mod http;
pub mod join;
pub mod kv;
pub mod leader_view;
pub mod meta;
pub mod meta_client;
pub mod registry;
pub mod snapshot;
pub mod status;
pub mod tls;
pub mod transport;
pub mod validate;

use std::future::Future;
use std::sync::Arc;

use shoal_proto::admin_server::AdminServer;
use shoal_proto::backup_server::BackupServer;
use shoal_proto::kv_server::KvServer;
use shoal_proto::meta_server::MetaServer;
use shoal_proto::raft_server::RaftServer;
use shoal_proto::status_server::StatusServer;
use shoal_proto::{StoreInfo, StoreMeta, StoreState};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::config::{FirstStart, NodeConfig};
use crate::error::{Error, Result};
use crate::meta::placement::PlacementConfig;
use crate::metrics::Metrics;
use crate::raftstore::split_check::SplitConfig;
use crate::raftstore::store::{Store, StoreConfig};
use crate::raftstore::{bootstrap, logger, raft_config, store_loop};
use crate::snap::SnapManager;
use crate::storage::Engine;
use registry::StoreRegistry;

/// How long a stopping node tries to hand its leaders over (well within a
/// pod's termination grace period).
pub const EVACUATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The identity of a store whose data directory has none: bootstrapped, or
/// got by registering with the cluster.
async fn first_start(engine: &Engine, cfg: &NodeConfig, dialer: tls::Dialer) -> Result<shoal_proto::StoreIdent> {
    match cfg.first_start().map_err(|e| Error::InvalidArgument(e.to_string()))? {
        FirstStart::Bootstrap(members) => bootstrap::bootstrap_or_load(engine, &cfg.name, &members),
        FirstStart::Join(addrs) => join::register(engine, cfg, &addrs, dialer).await,
    }
}

/// Runs a node until `shutdown` resolves, or until its store loop fails.
pub async fn run(cfg: NodeConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)?;
    let tls = cfg.tls_files().map(tls::Tls::load).transpose()?;
    let dialer = tls::Dialer::new(tls.clone());
    let engine = Arc::new(Engine::open(&cfg.data_dir, &cfg.column_families)?);
    let join_addrs = cfg.join_addrs();
    let ident = match bootstrap::load_own_ident(&engine, &cfg.name)? {
        Some(ident) => ident,
        None => first_start(&engine, &cfg, dialer.clone()).await?,
    };

    // Addresses may change between restarts (a rescheduled pod): the flags win.
    let members = cfg.listed_members().map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let mut stores = bootstrap::load_stores(&engine)?;
    for s in &mut stores {
        if let Some(m) = members.iter().find(|m| m.name == s.name) {
            s.address = m.addr.clone();
        }
        if s.id == ident.store_id {
            s.address = cfg.advertise_addr();
            s.client_address = cfg.client_advertise_addr();
        }
    }
    bootstrap::save_stores(&engine, &stores)?;
    let me = stores.iter().find(|s| s.id == ident.store_id).cloned().unwrap_or(StoreInfo {
        id: ident.store_id,
        name: cfg.name.clone(),
        address: cfg.advertise_addr(),
        client_address: cfg.client_advertise_addr(),
    });
    let registry = StoreRegistry::new(stores).with_dialer(dialer);

    let metrics = Arc::new(Metrics::new().map_err(|e| Error::Internal(format!("metrics: {e}")))?);
    metrics.watch_engine(engine.clone()).map_err(|e| Error::Internal(format!("metrics: {e}")))?;
    let snap = SnapManager::open(&cfg.data_dir.join("snap"), engine.clone(), metrics.clone())?;
    let store_cfg = StoreConfig {
        log_gc_count_limit: cfg.raft_log_gc_count_limit,
        log_gc_size_limit: cfg.raft_log_gc_size_limit,
        ..StoreConfig::new(raft_config(cfg.raft_election_ticks, cfg.raft_heartbeat_ticks))
    };
    let store = Store::open(engine.clone(), ident.store_id, &store_cfg, snap.clone(), metrics.clone(), &logger::raft_logger())?;
    let meta_state = store.meta();
    let (outbox_tx, outbox_rx) = tokio::sync::mpsc::unbounded_channel();
    let (snap_tx, mut snap_rx) = tokio::sync::mpsc::unbounded_channel::<shoal_proto::RaftMessage>();
    let heartbeat_wanted = store.heartbeat_wanted();
    let (handle, store_thread) = store_loop::spawn(store, cfg.raft_tick(), outbox_tx, snap_tx);
    let transport = tokio::spawn(transport::run_transport(outbox_rx, registry.clone(), metrics.clone()));
    // Snapshots travel on their own stream; how each send ended goes back to
    // the region's leader (raft's report_snapshot).
    let report_to = handle.clone();
    let snap_report: snapshot::SnapReport = Arc::new(move |region_id, to_peer, ok| {
        tracing::info!(region_id, to_peer, ok, "snapshot send finished");
        let _ = report_to.report_snapshot(region_id, to_peer, ok);
    });
    let snap_sender = snapshot::spawn_sender(snap.clone(), registry.clone(), metrics.clone(), cfg.snap_send(), snap_report);
    let snap_forward = tokio::spawn(async move {
        while let Some(m) = snap_rx.recv().await {
            if snap_sender.send(m).is_err() {
                return;
            }
        }
    });

    let grpc_listener = TcpListener::bind(cfg.listen_addr).await?;
    let client_listener = match cfg.client_listen_addr {
        Some(addr) => Some(TcpListener::bind(addr).await?),
        None => None,
    };
    let status_listener = TcpListener::bind(cfg.status_addr).await?;
    tracing::info!(store_id = ident.store_id, name = %cfg.name, listen = %cfg.listen_addr, client = ?cfg.client_listen_addr, status = %cfg.status_addr, "shoal-node serving");

    let failpoints = cfg.enable_failpoints.then(|| engine.clone());
    let status_tls = if cfg.status_tls { tls.clone() } else { None };
    let http =
        tokio::spawn(http::StatusHttp { store: handle.clone(), metrics: metrics.clone(), failpoints }.serve(status_listener, status_tls));

    // Where the meta leader is, as the heartbeats find it (for Meta's hints).
    let meta_leader: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let max_message = cfg.max_value_size.saturating_mul(2).saturating_add(cfg.max_key_size + (1 << 20)).max(cfg.max_batch_size + (1 << 20));
    let kv = kv::KvService {
        store: handle.clone(),
        engine: engine.clone(),
        limits: validate::Limits::from_config(&cfg),
        registry: registry.clone(),
        metrics: metrics.clone(),
        timeout: cfg.request_timeout(),
    };
    let meta = meta::MetaService {
        store: handle.clone(),
        meta: Some(meta_state),
        registry: registry.clone(),
        metrics: metrics.clone(),
        timeout: cfg.request_timeout(),
        placement: PlacementConfig {
            replication_factor: cfg.replication_factor,
            max_snapshots_per_store: cfg.placement_max_snapshots_per_store,
            ..PlacementConfig::default()
        },
        max_store_down_time: cfg.max_store_down_time(),
        view: Arc::new(std::sync::Mutex::new(leader_view::LeaderView::new(cfg.meta_leader_gap()))),
        directory: Default::default(),
        store_calls: true,
        meta_leader: meta_leader.clone(),
    };
    let admin = admin::AdminService {
        meta: meta.clone(),
        cluster_id: ident.cluster_id,
        lock: Default::default(),
        allowed_cns: (!cfg.admin_allowed_cn.is_empty()).then(|| Arc::new(cfg.admin_allowed_cn.clone())),
        metrics: metrics.clone(),
    };
    let backup = backup::BackupService {
        store: handle.clone(),
        engine: engine.clone(),
        registry: registry.clone(),
        metrics: metrics.clone(),
        timeout: cfg.request_timeout(),
        dir: cfg.data_dir.join("backup"),
        kept: Default::default(),
        allowed_cns: admin.allowed_cns.clone(),
    };
    let heartbeat = tokio::spawn(
        heartbeat::Heartbeat {
            store: handle.clone(),
            engine: engine.clone(),
            me: StoreMeta {
                id: me.id,
                name: me.name.clone(),
                address: me.address.clone(),
                state: StoreState::Up as i32,
                instance: String::new(),
                client_address: me.client_address.clone(),
                labels: Default::default(),
            },
            meta: meta_client::MetaClient::sharing_leader(registry.clone(), join_addrs.clone(), cfg.request_timeout(), meta_leader),
            interval: cfg.heartbeat_interval(),
            wanted: heartbeat_wanted,
            split: SplitConfig { split_size: cfg.region_split_size, split_keys: cfg.region_split_keys },
            metrics: metrics.clone(),
            data_dir: cfg.data_dir.clone(),
            registry: registry.clone(),
        }
        .run(),
    );
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let shutdown_watch = shutdown_rx.clone();
    let raft = transport::RaftService {
        store: handle.clone(),
        store_id: ident.store_id,
        shutdown: shutdown_rx,
        snap,
        metrics: metrics.clone(),
        guard: tls::PeerGuard { tls: tls.clone(), allowed: cfg.peer_allowed_cn.clone() },
    };
    let status =
        status::StatusService { store: handle.clone(), me, registry: registry.clone(), column_families: engine.user_cfs().to_vec() };
    // The client port: the same services, lookups only, client addresses in hints.
    let client_router = client_listener.map(|listener| {
        let kv = kv::KvService { registry: registry.for_clients(), ..kv.clone() };
        let router = grpc_server()
            .add_service(KvServer::new(kv).max_decoding_message_size(max_message))
            .add_service(MetaServer::new(meta.for_clients()))
            .add_service(StatusServer::new(status.clone()));
        (router, listener)
    });

    // The store loop ending on its own (an engine failure) stops the node too.
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<()>();
    let watcher = std::thread::spawn(move || {
        let res = store_thread.join();
        let _ = failed_tx.send(());
        res
    });
    let leaving = handle.clone();
    let store_id = ident.store_id;
    let stop = async move {
        tokio::select! {
            _ = shutdown => {
                tracing::info!("shutting down: handing over the regions led here");
                evacuate::move_leaders_away(&leaving, store_id, EVACUATE_TIMEOUT).await;
            }
            _ = failed_rx => tracing::error!("store loop stopped; shutting down"),
        }
        let _ = shutdown_tx.send(true);
    };

    let router = grpc_server()
        .add_service(KvServer::new(kv).max_decoding_message_size(max_message))
        .add_service(RaftServer::new(raft).max_decoding_message_size(transport::MAX_RAFT_BATCH_BYTES))
        .add_service(MetaServer::new(meta))
        .add_service(AdminServer::new(admin))
        .add_service(BackupServer::new(backup))
        .add_service(StatusServer::new(status));
    let reload = tls.clone().map(|tls| tokio::spawn(tls::watch(tls, cfg.tls_reload_interval(), metrics.clone())));
    // Both ports stop when `stop` has run (after the evacuation).
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stopped| *stopped).await;
    };
    let clients = async {
        match client_router {
            Some((router, listener)) => serve_grpc(router, listener, tls.clone(), metrics.clone(), stopped(shutdown_watch.clone())).await,
            None => Ok(()),
        }
    };
    let peers = serve_grpc(router, grpc_listener, tls.clone(), metrics.clone(), stopped(shutdown_watch.clone()));
    let ((), served, served_clients) = tokio::join!(stop, peers, clients);
    if let Some(reload) = reload {
        reload.abort();
    }

    handle.shutdown();
    http.abort();
    heartbeat.abort();
    transport.abort();
    snap_forward.abort();
    let loop_result = tokio::task::spawn_blocking(move || watcher.join())
        .await
        .map_err(|e| Error::Internal(format!("joining store loop: {e}")))?
        .map_err(|_| Error::Internal("store loop watcher panicked".into()))?
        .map_err(|_| Error::Internal("store loop panicked".into()))?;
    served.map_err(|e| Error::Internal(format!("grpc server: {e}")))?;
    served_clients.map_err(|e| Error::Internal(format!("grpc server (client port): {e}")))?;
    loop_result
}

/// A gRPC server with the node's transport settings.
fn grpc_server() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(5)))
}

/// Serves `router` on `listener` (over TLS when the node has certificates) until `shutdown`.
async fn serve_grpc(
    router: tonic::transport::server::Router,
    listener: TcpListener,
    tls: Option<Arc<tls::Tls>>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> std::result::Result<(), tonic::transport::Error> {
    match tls {
        None => router.serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), shutdown).await,
        Some(tls) => router.serve_with_incoming_shutdown(tls::incoming(listener, tls, metrics), shutdown).await,
    }
}
