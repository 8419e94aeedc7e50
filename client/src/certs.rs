//! Throwaway certificates for `shoalctl playground --tls`, made by
//! [`shoal_client::pki::Ca`]: a CA, one certificate the nodes share (server
//! and client use, for `127.0.0.1` and `localhost`, CN `shoal-node`) and one
//! for the CLI (client use, CN `shoalctl`, the CN the playground's nodes allow
//! Admin calls from), each a PEM file in the playground's directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use shoal_client::pki::{Ca, LeafSpec};

/// Where the files are.
pub struct PlaygroundCerts {
    pub ca: PathBuf,
    pub node_cert: PathBuf,
    pub node_key: PathBuf,
    pub cli_cert: PathBuf,
    pub cli_key: PathBuf,
}

/// The CN of the CLI's certificate, allowed Admin calls on the playground.
pub const CLI_CN: &str = "shoalctl";

/// A playground lives for hours, not years.
const LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

fn write(dir: &Path, name: &str, pem: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, pem).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Creates the CA and both certificates in `dir`.
pub fn create(dir: &Path) -> Result<PlaygroundCerts> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca = Ca::generate("shoal playground CA", LIFETIME)?;
    let node = ca.issue(&LeafSpec {
        common_name: "shoal-node".into(),
        dns_names: vec!["localhost".into()],
        ip_addresses: vec![[127, 0, 0, 1].into()],
        server: true,
        lifetime: LIFETIME,
    })?;
    let cli = ca.issue(&LeafSpec::client(CLI_CN, LIFETIME))?;
    Ok(PlaygroundCerts {
        ca: write(dir, "ca.pem", ca.cert_pem())?,
        node_cert: write(dir, "node.pem", &node.cert_pem)?,
        node_key: write(dir, "node-key.pem", &node.key_pem)?,
        cli_cert: write(dir, "shoalctl.pem", &cli.cert_pem)?,
        cli_key: write(dir, "shoalctl-key.pem", &cli.key_pem)?,
    })
}
