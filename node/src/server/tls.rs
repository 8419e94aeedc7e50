//! TLS on the gRPC port (client, peer and Admin services alike) and on the
//! connections this store opens to other stores.
//!
//! With `--cert-file` and `--key-file` the port speaks TLS only; with
//! `--trusted-ca-file` and `--client-cert-auth` a client must also present a
//! certificate that CA signed, or the handshake fails (mutual TLS). The same
//! certificate is this store's client identity towards the other stores, so a
//! store's certificate is issued for both server and client use.
//!
//! [`Tls`] holds the current server configuration and client settings, built
//! from the files; [`Tls::reload_if_changed`] rebuilds both when a file's
//! modification time or size changes (cert-manager rewrites them in place), and
//! [`watch`] calls it every `--tls-reload-interval-secs`. A reload that fails
//! (a half-written file) keeps the old configuration and is retried. New
//! connections get the new certificate; connections already open keep theirs.
//!
//! [`incoming`] accepts TCP connections and runs each handshake in a task of
//! its own (bounded by [`HANDSHAKE_TIMEOUT`]), so that a slow or garbage client
//! cannot hold up the others; failed handshakes are counted. [`Dialer`] makes
//! the endpoints of this store's outgoing connections: `https://` with the
//! client settings under TLS, `http://` without.
//!
//! [`admin_identity`] reads the Common Name of a caller's certificate, which
//! the Admin service checks against `--admin-allowed-cn`, and [`PeerGuard`]
//! against `--peer-allowed-cn` (by default this store's own Common Name) for
//! the Raft and snapshot streams: a client's certificate may read and write,
//! not speak Raft.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// Longest a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the certificate files are, and whether clients must present one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub trusted_ca: Option<PathBuf>,
    pub client_cert_auth: bool,
}

/// One reading of the files: what a change is detected against.
type Stamp = Vec<Option<(SystemTime, u64)>>;

/// The loaded configuration, rebuilt on reload.
struct Loaded {
    server: Arc<ServerConfig>,
    client: ClientTlsConfig,
    /// The Common Name of this store's own certificate.
    own_cn: Option<String>,
    /// The status port's configuration: the same certificate, no client auth.
    status: Arc<ServerConfig>,
}

pub struct Tls {
    files: TlsFiles,
    current: RwLock<Arc<Loaded>>,
    stamp: Mutex<Stamp>,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Internal(format!("TLS: cannot read {}: {e}", path.display())))
}

fn stamp(files: &TlsFiles) -> Stamp {
    let paths = [Some(&files.cert), Some(&files.key), files.trusted_ca.as_ref()];
    paths.iter().map(|p| p.and_then(|p| std::fs::metadata(p).ok()).and_then(|m| Some((m.modified().ok()?, m.len())))).collect()
}

fn load(files: &TlsFiles) -> Result<Loaded> {
    let bad = |what: &str, path: &Path, e: &dyn std::fmt::Display| Error::Internal(format!("TLS: {what} {}: {e}", path.display()));
    let cert_pem = read(&files.cert)?;
    let key_pem = read(&files.key)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad("bad certificate in", &files.cert, &e))?;
    if certs.is_empty() {
        return Err(bad("no certificate in", &files.cert, &"empty"));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| bad("bad private key in", &files.key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS: {e}")))?;
    let ca_pem = files.trusted_ca.as_deref().map(read).transpose()?;
    let builder = match (&ca_pem, files.client_cert_auth) {
        (Some(pem), true) => {
            let path = files.trusted_ca.as_deref().unwrap_or(Path::new(""));
            let mut roots = RootCertStore::empty();
            for ca in CertificateDer::pem_slice_iter(pem) {
                let ca = ca.map_err(|e| bad("bad CA certificate in", path, &e))?;
                roots.add(ca).map_err(|e| bad("unusable CA certificate in", path, &e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| bad("cannot verify clients with", path, &e))?;
            builder.with_client_cert_verifier(verifier)
        }
        (None, true) => return Err(Error::Internal("TLS: --client-cert-auth needs --trusted-ca-file".into())),
        (_, false) => builder.with_no_client_auth(),
    };
    let own_cn = admin_identity(Some(&certs));
    let mut status = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs.clone(), key.clone_key())
        .map_err(|e| bad("certificate and key do not match:", &files.cert, &e))?;
    status.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut server = builder.with_single_cert(certs, key).map_err(|e| bad("certificate and key do not match:", &files.cert, &e))?;
    server.alpn_protocols = vec![b"h2".to_vec()];

    let mut client = ClientTlsConfig::new().identity(Identity::from_pem(&cert_pem, &key_pem));
    if let Some(pem) = &ca_pem {
        client = client.ca_certificate(Certificate::from_pem(pem));
    }
    Ok(Loaded { server: Arc::new(server), client, own_cn, status: Arc::new(status) })
}

impl Tls {
    /// Loads the files; an error names the file that is missing or bad.
    pub fn load(files: TlsFiles) -> Result<Arc<Tls>> {
        let before = stamp(&files);
        let loaded = load(&files)?;
        Ok(Arc::new(Tls { files, current: RwLock::new(Arc::new(loaded)), stamp: Mutex::new(before) }))
    }

    fn current(&self) -> Arc<Loaded> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reloads if any file changed since the last load: `Ok(true)` when the
    /// new files are in use, `Err` (the old ones stay) when they are bad.
    pub fn reload_if_changed(&self) -> Result<bool> {
        let now = stamp(&self.files);
        let mut last = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
        if *last == now {
            return Ok(false);
        }
        let loaded = load(&self.files)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
        *last = now;
        Ok(true)
    }

    /// The server configuration new connections get.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.current().server.clone()
    }

    /// The status port's configuration (`--status-tls`): the same
    /// certificate, no client certificate asked.
    pub fn status_config(&self) -> Arc<ServerConfig> {
        self.current().status.clone()
    }

    /// The Common Name of this store's current certificate.
    pub fn own_cn(&self) -> Option<String> {
        self.current().own_cn.clone()
    }

    /// Whether client certificates are required (so callers have an identity).
    pub fn client_cert_auth(&self) -> bool {
        self.files.client_cert_auth
    }
}

/// Reloads `tls` every `interval` while the node runs.
pub async fn watch(tls: Arc<Tls>, interval: Duration, metrics: Arc<Metrics>) {
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        match tls.reload_if_changed() {
            Ok(false) => {}
            Ok(true) => {
                metrics.tls_reloads.with_label_values(&["ok"]).inc();
                tracing::info!(cert = %tls.files.cert.display(), "TLS certificate files changed; new connections use them");
            }
            Err(e) => {
                metrics.tls_reloads.with_label_values(&["error"]).inc();
                tracing::warn!(error = %e, "TLS certificate files changed but cannot be loaded; keeping the old ones");
            }
        }
    }
}

/// TLS connections accepted on `listener`, each handshake in a task of its own.
pub fn incoming(listener: TcpListener, tls: Arc<Tls>, metrics: Arc<Metrics>) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            // Ends (and closes the listener) once the server dropped the stream.
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = tx.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = TlsAcceptor::from(tls.server_config());
            let (out, counted) = (tx.clone(), metrics.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = out.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => {
                        counted.tls_handshake_failures.inc();
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    }
                    Err(_) => {
                        counted.tls_handshake_failures.inc();
                        tracing::debug!(%peer, "TLS handshake timed out");
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Makes the endpoints of this store's connections to other stores.
#[derive(Clone, Default)]
pub struct Dialer {
    tls: Option<Arc<Tls>>,
}

impl Dialer {
    pub fn new(tls: Option<Arc<Tls>>) -> Dialer {
        Dialer { tls }
    }

    /// An endpoint for `addr` (`host:port`): TLS with the current client
    /// settings when this store has TLS on.
    pub fn endpoint(&self, addr: &str) -> std::result::Result<Endpoint, tonic::transport::Error> {
        match &self.tls {
            None => Endpoint::from_shared(format!("http://{addr}")),
            Some(tls) => Endpoint::from_shared(format!("https://{addr}"))?.tls_config(tls.current().client.clone()),
        }
    }
}

/// The Common Name of the first certificate the caller presented, if any.
pub fn admin_identity(certs: Option<&[CertificateDer<'static>]>) -> Option<String> {
    let leaf = certs?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some(cn)
}

/// Who may open Raft and snapshot streams to this store: with mutual TLS,
/// only certificates whose Common Name is in `allowed` or, when that is
/// empty, equals this store's own (every store of a cluster shares a
/// certificate identity); without it, anyone the port lets in.
#[derive(Clone, Default)]
pub struct PeerGuard {
    pub tls: Option<Arc<Tls>>,
    pub allowed: Vec<String>,
}

impl PeerGuard {
    /// `Err(reason)` when the caller whose certificates these are may not.
    pub fn check(&self, certs: Option<&[CertificateDer<'static>]>) -> std::result::Result<(), String> {
        let Some(tls) = self.tls.as_ref().filter(|t| t.client_cert_auth()) else { return Ok(()) };
        let allowed = if self.allowed.is_empty() { tls.own_cn().into_iter().collect() } else { self.allowed.clone() };
        let cn = admin_identity(certs);
        if cn.as_ref().is_some_and(|cn| allowed.contains(cn)) {
            return Ok(());
        }
        let who = cn.map_or("a caller without a certificate Common Name".to_string(), |cn| format!("CN={cn}"));
        Err(format!("Raft and snapshot streams are allowed to certificates with CN in {allowed:?}, not to {who}"))
    }
}
