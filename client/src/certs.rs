//! Throwaway certificates for `shoalctl playground --tls`: a CA, one
//! certificate the nodes share (server and client use, for `127.0.0.1` and
//! `localhost`, CN `shoal-node`) and one for the CLI (client use, CN
//! `shoalctl`, the CN the playground's nodes allow Admin calls from), each a
//! PEM file in the playground's directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};

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

fn write(dir: &Path, name: &str, pem: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, pem).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Creates the CA and both certificates in `dir`.
pub fn create(dir: &Path) -> Result<PlaygroundCerts> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name.push(DnType::CommonName, "shoal playground CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf = |cn: &str, sans: Vec<SanType>, usages: Vec<ExtendedKeyUsagePurpose>| -> Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = sans;
        params.extended_key_usages = usages;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let node_sans = vec![SanType::IpAddress([127, 0, 0, 1].into()), SanType::DnsName("localhost".try_into()?)];
    let (node_cert, node_key) =
        leaf("shoal-node", node_sans, vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth])?;
    let (cli_cert, cli_key) = leaf(CLI_CN, Vec::new(), vec![ExtendedKeyUsagePurpose::ClientAuth])?;
    Ok(PlaygroundCerts {
        ca: write(dir, "ca.pem", &ca_cert.pem())?,
        node_cert: write(dir, "node.pem", &node_cert)?,
        node_key: write(dir, "node-key.pem", &node_key)?,
        cli_cert: write(dir, "shoalctl.pem", &cli_cert)?,
        cli_key: write(dir, "shoalctl-key.pem", &cli_key)?,
    })
}
