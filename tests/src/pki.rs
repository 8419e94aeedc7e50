//! A throwaway PKI for TLS tests, on [`shoal_client::pki::Ca`]: a CA that
//! signs node certificates (server and client use, for 127.0.0.1) and client
//! certificates with a chosen Common Name, each written as PEM files; and
//! [`served_certificate`], what a server presents to a new connection, and
//! [`https_get`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use shoal_client::pki::{self, LeafSpec};

/// Long enough for any test.
const LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A certificate and its key, as files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate, DER: what a server presents.
    pub der: Vec<u8>,
}

pub struct Ca {
    pub cert: PathBuf,
    ca: pki::Ca,
    dir: PathBuf,
}

impl Ca {
    /// A new CA named `name`, its certificate written to `dir/<name>-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        std::fs::create_dir_all(dir).expect("pki dir");
        let ca = pki::Ca::generate(&format!("{name} CA"), LIFETIME).expect("CA");
        let path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&path, ca.cert_pem()).expect("write CA");
        Ca { cert: path, ca, dir: dir.to_path_buf() }
    }

    fn leaf(&self, file: &str, spec: &LeafSpec) -> CertFiles {
        let issued = self.ca.issue(spec).expect("sign");
        let (cert_path, key_path) = (self.dir.join(format!("{file}.pem")), self.dir.join(format!("{file}-key.pem")));
        std::fs::write(&cert_path, &issued.cert_pem).expect("write cert");
        std::fs::write(&key_path, &issued.key_pem).expect("write key");
        CertFiles { cert: cert_path, key: key_path, der: issued.der }
    }

    /// A store's certificate: for 127.0.0.1 and localhost, server and client use.
    pub fn node(&self, file: &str) -> CertFiles {
        let spec = LeafSpec {
            common_name: "shoal-node".into(),
            dns_names: vec!["localhost".into()],
            ip_addresses: vec![[127, 0, 0, 1].into()],
            server: true,
            lifetime: LIFETIME,
        };
        self.leaf(file, &spec)
    }

    /// A client certificate with Common Name `cn`.
    pub fn client(&self, file: &str, cn: &str) -> CertFiles {
        self.leaf(file, &LeafSpec::client(cn, LIFETIME))
    }
}

/// The leaf certificate (DER) the server at `addr` presents to a new
/// connection checked for `server_name`, with a client certificate (mutual
/// TLS); all inputs PEM.
pub async fn served_certificate(addr: &str, server_name: &str, ca: &[u8], cert: &[u8], key: &[u8]) -> Result<Vec<u8>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let certs = vec![CertificateDer::from_pem_slice(cert).map_err(|e| e.to_string())?];
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| e.to_string())?;
    let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).ok_or("no certificate")?;
    Ok(leaf.as_ref().to_vec())
}

/// The first certificate of a PEM text, DER.
pub fn pem_to_der(pem: &[u8]) -> Result<Vec<u8>, String> {
    CertificateDer::from_pem_slice(pem).map(|c| c.as_ref().to_vec()).map_err(|e| e.to_string())
}

/// `GET path` over HTTPS (no client certificate), the server checked for
/// `server_name` against `ca` (PEM): the status code and body.
pub async fn https_get(addr: &str, server_name: &str, ca: &[u8], path: &str) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(server_name.to_string()).map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| e.to_string())?;
    tls.write_all(format!("GET {path} HTTP/1.0\r\nHost: {server_name}\r\n\r\n").as_bytes()).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    // A server may close without a TLS close_notify; what was read counts.
    let _ = tls.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    Ok((code, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}
