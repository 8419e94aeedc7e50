//! TLS objects, pure: which certificates a cluster with `spec.tls` needs, the
//! Secrets that hold them (mode `OperatorManaged`) or the cert-manager
//! `Certificate`s that ask for them (mode `CertManager`), and when one is due
//! for renewal. The stage that issues and applies them is
//! [`crate::certificates`].
//!
//! Three certificates, each in a Secret of cert-manager's layout (`tls.crt`,
//! `tls.key`, `ca.crt`):
//!
//! | Secret | Common Name | use | names |
//! |---|---|---|---|
//! | `<name>-tls` | `shoal-node` | server and client | every store's DNS name, the Services', `localhost`, `127.0.0.1` |
//! | `<name>-operator-tls` | `shoal-operator` | client | — |
//! | `<name>-client-tls` | `shoal-client` | client | — |
//!
//! All stores share one certificate: its wildcard `*.<name>-peer.<ns>.svc`
//! names each pod, so a new pod needs no new certificate. An operator-managed
//! CA lives in `<name>-ca` (`ca.crt`, `ca.key`).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use serde_json::json;
use shoal_client::pki::LeafSpec;

use super::names::{CLIENT_CN, OPERATOR_CN};
use super::{Names, owned_meta};
use crate::crd::{KvCluster, TlsMode, TlsSpec};

/// Keys of a TLS Secret (cert-manager's layout).
pub const CERT_KEY: &str = "tls.crt";
pub const KEY_KEY: &str = "tls.key";
pub const CA_KEY: &str = "ca.crt";
/// The CA's private key, in `<name>-ca` only.
pub const CA_PRIVATE_KEY: &str = "ca.key";
/// When the certificate in an operator-managed Secret expires (Unix seconds).
pub const NOT_AFTER_ANNOTATION: &str = "shoal.dev/not-after";
/// How long an operator-managed CA lives: ten years.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// The cert-manager API the `Certificate`s use.
pub const CERT_MANAGER_API_VERSION: &str = "cert-manager.io/v1";

/// The cluster's TLS settings, when TLS is on.
pub fn enabled(kvc: &KvCluster) -> Option<&TlsSpec> {
    kvc.spec.tls.as_ref().filter(|t| t.mode != TlsMode::Disabled)
}

/// The names in the stores' certificate: each pod's peer DNS name (by
/// wildcard), the two Services in their short and long forms, and loopback.
pub fn store_dns_names(names: &Names) -> Vec<String> {
    let (ns, peer, client) = (&names.namespace, names.peer_service(), names.client_service());
    let mut out = Vec::new();
    for suffix in ["svc", "svc.cluster.local"] {
        out.push(format!("*.{peer}.{ns}.{suffix}"));
        out.push(format!("{peer}.{ns}.{suffix}"));
        out.push(format!("{client}.{ns}.{suffix}"));
    }
    out.extend([client.clone(), format!("{client}.{ns}"), "localhost".into()]);
    out
}

/// Every certificate the cluster needs: the Secret it goes in, and what it is.
pub fn certificates(names: &Names, tls: &TlsSpec) -> Vec<(String, LeafSpec)> {
    let lifetime = Duration::from_secs(tls.lifetime_secs());
    let store = LeafSpec {
        common_name: "shoal-node".into(),
        dns_names: store_dns_names(names),
        ip_addresses: vec![[127, 0, 0, 1].into()],
        server: true,
        lifetime,
    };
    vec![
        (names.tls_secret(), store),
        (names.operator_tls_secret(), LeafSpec::client(OPERATOR_CN, lifetime)),
        (names.client_tls_secret(), LeafSpec::client(CLIENT_CN, lifetime)),
    ]
}

fn bytes(s: &str) -> ByteString {
    ByteString(s.as_bytes().to_vec())
}

/// The operator-managed CA's Secret.
pub fn ca_secret(kvc: &KvCluster, names: &Names, cert_pem: &str, key_pem: &str) -> Secret {
    Secret {
        metadata: owned_meta(kvc, names, names.ca_secret(), names.labels()),
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(CA_KEY.to_string(), bytes(cert_pem)), (CA_PRIVATE_KEY.to_string(), bytes(key_pem))])),
        ..Default::default()
    }
}

/// An operator-managed leaf certificate's Secret; `not_after` is Unix seconds.
pub fn leaf_secret(kvc: &KvCluster, names: &Names, name: String, cert_pem: &str, key_pem: &str, ca_pem: &str, not_after: u64) -> Secret {
    let mut metadata = owned_meta(kvc, names, name, names.labels());
    metadata.annotations = Some(BTreeMap::from([(NOT_AFTER_ANNOTATION.to_string(), not_after.to_string())]));
    Secret {
        metadata,
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            (CERT_KEY.to_string(), bytes(cert_pem)),
            (KEY_KEY.to_string(), bytes(key_pem)),
            (CA_KEY.to_string(), bytes(ca_pem)),
        ])),
        ..Default::default()
    }
}

/// Whether an operator-managed leaf Secret must be (re)issued at `now` (Unix
/// seconds): it lacks a key, was signed by another CA than `ca_pem`, or has
/// less than a third of `lifetime_secs` left (or no recorded expiry).
pub fn renewal_due(secret: &Secret, ca_pem: &str, lifetime_secs: u64, now: u64) -> bool {
    let data = secret.data.as_ref();
    let has = |k: &str| data.and_then(|d| d.get(k)).is_some_and(|v| !v.0.is_empty());
    if !has(CERT_KEY) || !has(KEY_KEY) || data.and_then(|d| d.get(CA_KEY)).map(|v| v.0.as_slice()) != Some(ca_pem.as_bytes()) {
        return true;
    }
    let not_after = secret.metadata.annotations.as_ref().and_then(|a| a.get(NOT_AFTER_ANNOTATION)).and_then(|v| v.parse::<u64>().ok());
    match not_after {
        Some(t) => now.saturating_add(lifetime_secs / 3) >= t,
        None => true,
    }
}

/// The cert-manager `Certificate` that asks for `leaf` in Secret `secret`.
pub fn cert_manager_certificate(kvc: &KvCluster, names: &Names, tls: &TlsSpec, secret: &str, leaf: &LeafSpec) -> serde_json::Value {
    let issuer = tls.issuer_ref.as_ref();
    let lifetime = tls.lifetime_secs();
    let usages: &[&str] = if leaf.server {
        &["digital signature", "key encipherment", "server auth", "client auth"]
    } else {
        &["digital signature", "client auth"]
    };
    let mut spec = json!({
        "secretName": secret,
        "secretTemplate": { "labels": names.labels() },
        "commonName": leaf.common_name,
        "duration": format!("{lifetime}s"),
        "renewBefore": format!("{}s", lifetime / 3),
        "usages": usages,
        "privateKey": { "algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always" },
        "issuerRef": {
            "name": issuer.map(|i| i.name.as_str()).unwrap_or_default(),
            "kind": issuer.and_then(|i| i.kind.as_deref()).unwrap_or("Issuer"),
            "group": issuer.and_then(|i| i.group.as_deref()).unwrap_or("cert-manager.io"),
        },
    });
    if !leaf.dns_names.is_empty() {
        spec["dnsNames"] = json!(leaf.dns_names);
    }
    if !leaf.ip_addresses.is_empty() {
        spec["ipAddresses"] = json!(leaf.ip_addresses.iter().map(|ip| ip.to_string()).collect::<Vec<_>>());
    }
    json!({
        "apiVersion": CERT_MANAGER_API_VERSION,
        "kind": "Certificate",
        "metadata": owned_meta(kvc, names, secret.to_string(), names.labels()),
        "spec": spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::ObjectMeta;

    fn secret(ca: &str, not_after: Option<u64>) -> Secret {
        let kvc = KvCluster::new("demo", serde_json::from_value(json!({"replicas": 3})).expect("spec"));
        let names = Names { cluster: "demo".into(), namespace: "ns".into() };
        let mut s = leaf_secret(&kvc, &names, "demo-tls".into(), "CERT", "KEY", ca, not_after.unwrap_or(0));
        if not_after.is_none() {
            s.metadata = ObjectMeta { annotations: None, ..s.metadata };
        }
        s
    }

    #[test]
    fn a_certificate_is_renewed_with_a_third_of_its_life_left_or_a_new_ca() {
        let day = 86_400;
        let issued_at = 1_000_000;
        let s = secret("CA", Some(issued_at + 90 * day));
        assert!(!renewal_due(&s, "CA", 90 * day, issued_at));
        assert!(!renewal_due(&s, "CA", 90 * day, issued_at + 59 * day));
        assert!(renewal_due(&s, "CA", 90 * day, issued_at + 60 * day), "30 of 90 days left");
        assert!(renewal_due(&s, "OTHER CA", 90 * day, issued_at), "signed by a CA no longer trusted");
        assert!(renewal_due(&secret("CA", None), "CA", 90 * day, issued_at), "no recorded expiry");
        let mut empty = s.clone();
        empty.data.as_mut().expect("data").insert(KEY_KEY.into(), ByteString(Vec::new()));
        assert!(renewal_due(&empty, "CA", 90 * day, issued_at), "no key");
    }

    #[test]
    fn the_store_certificate_names_every_address_a_store_is_dialled_at() {
        let names = Names { cluster: "demo".into(), namespace: "ns".into() };
        let dns = store_dns_names(&names);
        // Peers (`--advertise-addr`), `--join` (the client Service), and the
        // name the operator checks when it dials pod IPs.
        let host = |addr: String| addr.rsplit_once(':').map(|(h, _)| h.to_string()).unwrap_or_default();
        let wildcard_of = |h: &str| format!("*.{}", h.split_once('.').map(|(_, rest)| rest).unwrap_or_default());
        assert!(dns.contains(&wildcard_of(&host(names.peer_addr(7)))));
        assert!(dns.contains(&host(names.client_addr())));
        assert!(dns.contains(&names.tls_server_name()));
    }
}
