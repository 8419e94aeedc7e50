//! The TLS stage of reconcile (between validate and dereference): it makes
//! sure the certificates of a cluster with `spec.tls` exist and are fresh, and
//! returns the operator's own client settings for talking to the cluster.
//!
//! - `OperatorManaged`: the CA is read from Secret `<name>-ca`, or made (rcgen,
//!   [`shoal_client::pki::Ca`]) and stored there the first time. Each leaf
//!   Secret ([`build::tls::certificates`]) is issued when it is missing, when
//!   another CA signed it, or when a third of its lifetime is left
//!   ([`build::tls::renewal_due`]); the kubelet then updates the files in the
//!   pods and the stores reload them without a restart.
//! - `CertManager`: the operator applies one `cert-manager.io/v1` Certificate
//!   per leaf and cert-manager issues and renews the Secrets. Until the
//!   operator's own Secret exists the round fails with
//!   [`Error::Certificate`] (`Degraded`, reason `CertificateNotReady`) and is
//!   retried.
//!
//! Either way the operator then dials the stores with `<name>-operator-tls`
//! (Common Name `shoal-operator`, the one identity the stores allow the
//! membership calls), checking their certificate for `<name>-peer.<ns>.svc`
//! since it dials pod IPs.

use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use shoal_client::ClientTls;
use shoal_client::pki::Ca;

use crate::build::names::FIELD_MANAGER;
use crate::build::tls::{self as tls_build, CA_KEY, CA_LIFETIME, CA_PRIVATE_KEY, CERT_KEY, KEY_KEY};
use crate::build::{self, Names};
use crate::crd::{KvCluster, TlsMode, TlsSpec};
use crate::error::{Error, Result};

/// What the stage did, for the round's Events.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The operator's client settings; `None` when TLS is off.
    pub client_tls: Option<ClientTls>,
    /// Secrets issued this round (first issue or renewal).
    pub issued: Vec<String>,
    /// Whether the CA was made this round.
    pub ca_created: bool,
}

fn field<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret.data.as_ref()?.get(key).map(|v| v.0.as_slice()).filter(|v| !v.is_empty())
}

fn text<'a>(secret: &'a Secret, key: &str) -> Result<&'a str> {
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    let bytes = field(secret, key).ok_or_else(|| Error::Certificate(format!("Secret {name} has no {key}")))?;
    std::str::from_utf8(bytes).map_err(|_| Error::Certificate(format!("{key} of Secret {name} is not PEM text")))
}

/// Ensures the certificates; does nothing when TLS is off. With `may_change`
/// false (a paused cluster) nothing is issued or applied: the operator's
/// client settings are only read.
pub async fn ensure(client: &Client, kvc: &KvCluster, names: &Names, now: SystemTime, may_change: bool) -> Result<Outcome> {
    let Some(tls) = tls_build::enabled(kvc) else { return Ok(Outcome::default()) };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &names.namespace);
    // The operator's own Secret, when the stage already read or wrote it.
    let (mut outcome, known) = match tls.mode {
        _ if !may_change => (Outcome::default(), None),
        TlsMode::OperatorManaged => operator_managed(&secrets, kvc, names, tls, now).await?,
        TlsMode::CertManager => (cert_manager(client, kvc, names, tls).await?, None),
        TlsMode::Disabled => return Ok(Outcome::default()),
    };
    let op = match known {
        Some(s) => Some(s),
        None => secrets.get_opt(&names.operator_tls_secret()).await?,
    };
    let op = op.ok_or_else(|| {
        Error::Certificate(format!(
            "waiting for Secret {} (the operator's client certificate); with cert-manager, see `kubectl describe certificate {}`",
            names.operator_tls_secret(),
            names.operator_tls_secret()
        ))
    })?;
    let (ca, cert, key) = (text(&op, CA_KEY)?, text(&op, CERT_KEY)?, text(&op, KEY_KEY)?);
    outcome.client_tls =
        Some(ClientTls::from_pem(ca.as_bytes(), Some((cert.as_bytes(), key.as_bytes()))).with_server_name(&names.tls_server_name()));
    Ok(outcome)
}

/// Makes or reads the CA and (re)issues the leaf Secrets that need it; also
/// returns the operator's own Secret as it now stands.
async fn operator_managed(
    secrets: &Api<Secret>,
    kvc: &KvCluster,
    names: &Names,
    tls: &TlsSpec,
    now: SystemTime,
) -> Result<(Outcome, Option<Secret>)> {
    let mut outcome = Outcome::default();
    let mut operator_secret = None;
    let bad_ca = |e: &dyn std::fmt::Display| {
        Error::Certificate(format!("Secret {} does not hold a usable CA ({e}); delete it to have a new CA made", names.ca_secret()))
    };
    let ca = match secrets.get_opt(&names.ca_secret()).await? {
        Some(s) => Ca::from_pem(text(&s, CA_KEY)?, text(&s, CA_PRIVATE_KEY)?).map_err(|e| bad_ca(&e))?,
        None => {
            let ca = Ca::generate(&format!("Shoal CA of {}/{}", names.namespace, names.cluster), CA_LIFETIME)
                .map_err(|e| Error::Certificate(e.to_string()))?;
            let secret = tls_build::ca_secret(kvc, names, ca.cert_pem(), ca.key_pem());
            match secrets.create(&PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }, &secret).await {
                Ok(_) => outcome.ca_created = true,
                // Made meanwhile (another operator replica): the next round reads it.
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    return Err(Error::Certificate("the CA was made concurrently; retrying".into()));
                }
                Err(e) => return Err(e.into()),
            }
            ca
        }
    };
    let now_secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    for (name, leaf) in tls_build::certificates(names, tls) {
        let current = secrets.get_opt(&name).await?;
        let mine = name == names.operator_tls_secret();
        if let Some(s) = current.filter(|s| !tls_build::renewal_due(s, ca.cert_pem(), tls.lifetime_secs(), now_secs)) {
            if mine {
                operator_secret = Some(s);
            }
            continue;
        }
        let issued = ca.issue(&leaf).map_err(|e| Error::Certificate(format!("issuing {name}: {e}")))?;
        let not_after = issued.not_after.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let secret = tls_build::leaf_secret(kvc, names, name.clone(), &issued.cert_pem, &issued.key_pem, ca.cert_pem(), not_after);
        let applied = secrets.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&secret)).await?;
        if mine {
            operator_secret = Some(applied);
        }
        outcome.issued.push(name);
    }
    Ok((outcome, operator_secret))
}

async fn cert_manager(client: &Client, kvc: &KvCluster, names: &Names, tls: &TlsSpec) -> Result<Outcome> {
    let ar = ApiResource {
        group: "cert-manager.io".into(),
        version: "v1".into(),
        api_version: tls_build::CERT_MANAGER_API_VERSION.into(),
        kind: "Certificate".into(),
        plural: "certificates".into(),
    };
    let certificates: Api<DynamicObject> = Api::namespaced_with(client.clone(), &names.namespace, &ar);
    for (name, leaf) in tls_build::certificates(names, tls) {
        let object = build::tls::cert_manager_certificate(kvc, names, tls, &name, &leaf);
        if let Err(e) = certificates.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&object)).await {
            return Err(match e {
                kube::Error::Api(s) if s.code == 404 => {
                    Error::Certificate("tls.mode is CertManager but cert-manager's Certificate CRD is not installed".into())
                }
                other => other.into(),
            });
        }
    }
    Ok(Outcome::default())
}
