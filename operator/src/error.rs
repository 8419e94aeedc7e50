//! The operator's errors, and whose fault each is: an invalid spec is the
//! user's (reported, then the operator waits for a change); the rest are
//! transient or the system's (retried with backoff).

use crate::validate::InvalidSpec;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    InvalidSpec(#[from] InvalidSpec),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("Shoal cluster: {0}")]
    Cluster(#[from] shoal_client::ClientError),
    /// A backup or restore failed (storage, a damaged backup, the cluster).
    #[error(transparent)]
    Backup(#[from] shoal_client::backup::BackupError),
    /// A certificate the cluster needs is not there yet (cert-manager has
    /// not issued it) or cannot be used; what to do, in words.
    #[error("TLS: {0}")]
    Certificate(String),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// A short label for metrics (`reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "invalid_spec",
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(s)) if s.code == 403 => "forbidden",
            Error::Kube(_) => "kube_api",
            Error::Cluster(shoal_client::ClientError::FailedPrecondition(_)) => "refused",
            Error::Cluster(_) => "cluster",
            Error::Backup(_) => "backup",
            Error::Certificate(_) => "certificate",
            Error::Finalizer(_) => "finalizer",
            Error::Internal(_) => "internal",
        }
    }
}

impl Error {
    /// The reason of the `Degraded` condition and Event a failed round reports.
    pub fn condition_reason(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "InvalidSpec",
            // RBAC said no: the operator's Role lacks a verb (see the chart's rules).
            Error::Kube(kube::Error::Api(s)) if s.code == 403 => "Forbidden",
            Error::Kube(_) => "KubernetesApiError",
            Error::Cluster(_) => "ClusterUnreachable",
            Error::Backup(_) => "BackupFailed",
            Error::Certificate(_) => "CertificateNotReady",
            Error::Finalizer(_) | Error::Internal(_) => "ReconcileFailed",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
