//! The `KvBackup` custom resource (`shoal.dev/v1alpha1`, short name `kvb`):
//! backups of a `KvCluster` in the same namespace, taken by the operator
//! ([`crate::backup`]) to `s3://BUCKET/PREFIX` or `file:///DIR`.
//!
//! Without `schedule` a `KvBackup` is one backup, taken once
//! (`status.phase` `Running`, then `Succeeded` or `Failed`). With a cron
//! `schedule` (five fields, UTC) it takes one at every tick and keeps the
//! newest `keep`, deleting older ones it took (phase `Scheduled`). Backups
//! are named `<namespace>.<KvBackup name>-YYYYMMDD-HHMMSS`. S3 settings come from the
//! Secret `credentialsSecret`, whose keys are the `AWS_*` environment names.
//! `crds/kvbackup.yaml` is generated from these types (`shoal-operator crd
//! --kind KvBackup`).

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Backups of one `KvCluster`.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "shoal.dev",
    version = "v1alpha1",
    kind = "KvBackup",
    plural = "kvbackups",
    shortname = "kvb",
    namespaced,
    status = "KvBackupStatus",
    derive = "PartialEq",
    doc = "Backups of a KvCluster: one, or one per tick of a cron schedule with the newest kept",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Last", type_ = "string", json_path = ".status.lastBackup.name"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct KvBackupSpec {
    /// The `KvCluster` (in this namespace) to back up.
    #[schemars(length(min = 1, max = 63))]
    pub cluster: String,
    /// Where backups go: `s3://BUCKET/PREFIX`, or `file:///DIR` (a directory
    /// the operator's pod mounts).
    #[schemars(length(min = 6, max = 1024))]
    #[x_kube(validation = Rule::new("self.startsWith('s3://') || self.startsWith('file:///')").message("destination must be s3://BUCKET/PREFIX or file:///DIR"))]
    pub destination: String,
    /// A Secret in this namespace whose keys are S3 settings named as the
    /// `AWS_*` environment variables (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub credentials_secret: Option<String>,
    /// A cron schedule (five fields, UTC), e.g. `0 3 * * *`; without one a
    /// single backup is taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 9, max = 128))]
    pub schedule: Option<String>,
    /// Scheduled backups to keep (the oldest beyond are deleted). Default 7.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub keep: Option<u32>,
}

/// What the operator did.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KvBackupStatus {
    /// Running, Succeeded, Failed (one backup), or Scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// What happened last, in words (why it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The last backup that completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<BackupRecord>,
    /// When the last scheduled backup started, and when the next is due (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<String>,
    /// The scheduled backups kept, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<String>,
}

/// One completed backup.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackupRecord {
    pub name: String,
    /// The backup's URL: what `restoreFrom.source` takes.
    pub url: String,
    pub completed_at: String,
    pub regions: u64,
    pub keys: u64,
    pub bytes: u64,
    /// How long writes were held for the cut, in milliseconds.
    pub fence_millis: u64,
}
