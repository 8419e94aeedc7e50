//! A small certificate authority (rcgen, ECDSA P-256), the one place Shoal
//! makes certificates: `shoalctl playground --tls` makes a throwaway CA, the
//! operator keeps one per `KvCluster` in a Secret (`spec.tls.mode:
//! OperatorManaged`) and the tests make their own.
//!
//! [`Ca::generate`] makes a self-signed CA; [`Ca::from_pem`] takes one back
//! from its certificate and key. [`Ca::issue`] signs a leaf described by a
//! [`LeafSpec`]: a store's certificate is for server and client use (a store
//! dials the others with it), a client's for client use only. The Common Name
//! is the identity the stores' Admin service checks (`--admin-allowed-cn`).
//! Everything comes out as PEM ([`Issued`]).

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};

use crate::{ClientError, Result};

fn tls_err(what: &str) -> impl Fn(rcgen::Error) -> ClientError + '_ {
    move |e| ClientError::Tls(format!("{what}: {e}"))
}

/// Validity from an hour ago (clock skew between machines) to `lifetime` from now.
fn validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + lifetime;
}

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    /// The certificate, DER: what a server presents.
    pub der: Vec<u8>,
    /// When it expires.
    pub not_after: SystemTime,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").field("not_after", &self.not_after).finish_non_exhaustive()
    }
}

/// What a leaf certificate is for.
#[derive(Clone, Debug)]
pub struct LeafSpec {
    pub common_name: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// Server use as well as client use (a store's certificate).
    pub server: bool,
    pub lifetime: Duration,
}

impl LeafSpec {
    /// A client certificate: client use only, no names.
    pub fn client(common_name: &str, lifetime: Duration) -> LeafSpec {
        LeafSpec { common_name: common_name.into(), dns_names: Vec::new(), ip_addresses: Vec::new(), server: false, lifetime }
    }
}

/// A CA that signs leaf certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

impl Ca {
    /// A new self-signed CA named `common_name`, valid for `lifetime`.
    pub fn generate(common_name: &str, lifetime: Duration) -> Result<Ca> {
        let key = KeyPair::generate().map_err(tls_err("CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        validity(&mut params, lifetime);
        let cert = params.self_signed(&key).map_err(tls_err("CA certificate"))?;
        let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
        Ok(Ca { issuer: Issuer::new(params, key), cert_pem, key_pem })
    }

    /// The CA whose certificate and key these are (as [`Ca::cert_pem`] and
    /// [`Ca::key_pem`] wrote them).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca> {
        let key = KeyPair::from_pem(key_pem).map_err(tls_err("CA key"))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(tls_err("CA certificate"))?;
        Ok(Ca { issuer, cert_pem: cert_pem.into(), key_pem: key_pem.into() })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A new key and a certificate for it, signed by this CA.
    pub fn issue(&self, leaf: &LeafSpec) -> Result<Issued> {
        let key = KeyPair::generate().map_err(tls_err("key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, leaf.common_name.as_str());
        let mut sans = Vec::new();
        for name in &leaf.dns_names {
            let dns = name.as_str().try_into().map_err(|e| ClientError::Tls(format!("DNS name {name:?}: {e}")))?;
            sans.push(SanType::DnsName(dns));
        }
        sans.extend(leaf.ip_addresses.iter().map(|ip| SanType::IpAddress(*ip)));
        params.subject_alt_names = sans;
        params.extended_key_usages = if leaf.server {
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        validity(&mut params, leaf.lifetime);
        let not_after = SystemTime::from(params.not_after);
        let cert = params.signed_by(&key, &self.issuer).map_err(tls_err("signing"))?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().to_vec(), not_after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_read_back_from_pem_signs_leaves_that_name_it_as_issuer() {
        let ca = Ca::generate("test CA", Duration::from_secs(3600)).expect("CA");
        let again = Ca::from_pem(ca.cert_pem(), ca.key_pem()).expect("CA from PEM");
        let leaf = LeafSpec {
            common_name: "shoal-node".into(),
            dns_names: vec!["*.demo-peer.ns.svc".into()],
            ip_addresses: vec!["127.0.0.1".parse().expect("ip")],
            server: true,
            lifetime: Duration::from_secs(600),
        };
        let issued = again.issue(&leaf).expect("leaf");
        let (_, cert) = x509_parser::parse_x509_certificate(&issued.der).expect("parse");
        assert_eq!(cert.issuer().to_string(), "CN=test CA");
        assert_eq!(cert.subject().to_string(), "CN=shoal-node");
        let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert_eq!(lifetime, 600 + 3600, "an hour of skew before now, the lifetime after");
        assert!(Ca::from_pem(ca.cert_pem(), "not a key").is_err());
    }
}
