//! A throwaway PKI for TLS tests, on [`shoal_client::pki::Ca`]: a CA that
//! signs node certificates (server and client use, for 127.0.0.1) and client
//! certificates with a chosen Common Name, each written as PEM files.

use std::path::{Path, PathBuf};
use std::time::Duration;

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
