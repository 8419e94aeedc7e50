//! A throwaway PKI for TLS tests (rcgen): a CA that signs node certificates
//! (server and client use, for 127.0.0.1) and client certificates with a
//! chosen Common Name, each written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};

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
    issuer: Issuer<'static, KeyPair>,
    dir: PathBuf,
}

impl Ca {
    /// A new CA named `name`, its certificate written to `dir/<name>-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        std::fs::create_dir_all(dir).expect("pki dir");
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, format!("{name} CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).expect("CA certificate");
        let path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&path, cert.pem()).expect("write CA");
        Ca { cert: path, issuer: Issuer::new(params, key), dir: dir.to_path_buf() }
    }

    fn leaf(&self, file: &str, cn: &str, sans: Vec<SanType>, usages: Vec<ExtendedKeyUsagePurpose>) -> CertFiles {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = sans;
        params.extended_key_usages = usages;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let (cert_path, key_path) = (self.dir.join(format!("{file}.pem")), self.dir.join(format!("{file}-key.pem")));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        CertFiles { cert: cert_path, key: key_path, der: cert.der().to_vec() }
    }

    /// A store's certificate: for 127.0.0.1 and localhost, server and client use.
    pub fn node(&self, file: &str) -> CertFiles {
        let sans = vec![SanType::IpAddress([127, 0, 0, 1].into()), SanType::DnsName("localhost".try_into().expect("dns name"))];
        self.leaf(file, "shoal-node", sans, vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth])
    }

    /// A client certificate with Common Name `cn`.
    pub fn client(&self, file: &str, cn: &str) -> CertFiles {
        self.leaf(file, cn, Vec::new(), vec![ExtendedKeyUsagePurpose::ClientAuth])
    }
}
