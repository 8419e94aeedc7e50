//! The Kubernetes API stand-in: a plain-HTTP, JSON-only apiserver on
//! 127.0.0.1 over the in-memory [`Store`].
//!
//! Files: [`resources`] (the served types), [`paths`] (routing, queries),
//! [`handler`] (verbs), [`store`] (objects, resourceVersions, finalizers,
//! garbage collection), [`patch`], [`subresource`] (scale), [`watch`],
//! [`selector`], [`discovery`], [`error`] (metav1 `Status`), [`meta`].

pub mod discovery;
pub mod error;
pub mod handler;
pub mod meta;
pub mod patch;
pub mod paths;
pub mod resources;
pub mod selector;
pub mod store;
pub mod subresource;
pub mod watch;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;

pub use error::ApiError;
pub use resources::ResourceType;
pub use selector::Selectors;
pub use store::{Event, EventKind, Part, Store};

/// A running stand-in apiserver; stops serving when dropped.
pub struct KubeApiServer {
    addr: SocketAddr,
    store: Arc<Store>,
    accept: JoinHandle<()>,
}

impl KubeApiServer {
    /// Binds 127.0.0.1:<free port> and serves on the current tokio runtime.
    pub async fn start() -> KubeApiServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the kube stand-in's port");
        let addr = listener.local_addr().expect("local addr");
        let store = Arc::new(Store::new());
        let accept = tokio::spawn(accept_loop(listener, store.clone()));
        KubeApiServer { addr, store, accept }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The store, for in-process readers and writers (the kubelet, test code).
    pub fn store(&self) -> Arc<Store> {
        self.store.clone()
    }

    /// Writes a kubeconfig for this server (no auth; current context set).
    pub fn write_kubeconfig(&self, path: &Path) {
        std::fs::write(path, super::kubeconfig::kubeconfig_yaml(&self.url(), "default"))
            .unwrap_or_else(|e| panic!("write kubeconfig {}: {e}", path.display()));
    }

    /// A kube client for this server, built from the same kubeconfig.
    pub async fn client(&self) -> ::kube::Client {
        super::kubeconfig::client_for(&self.url(), "default").await
    }
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, store: Arc<Store>) {
    // Connections live in the set: aborting this task drops it, which ends them.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("kube stand-in: accept failed: {e}");
                        continue;
                    }
                };
                let store = store.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req| handler::handle(store.clone(), req));
                    if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await
                        && std::env::var_os("SHOAL_KUBE_STANDIN_LOG").is_some()
                    {
                        eprintln!("kube stand-in: connection ended: {e}");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
