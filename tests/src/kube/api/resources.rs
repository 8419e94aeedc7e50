//! The resource types the stand-in serves: one static table, looked up by
//! (group, version, plural).

/// One served resource type.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Has a `status` subresource.
    pub status: bool,
    /// Writes to the main resource keep the stored `.status` (and create drops
    /// it), as the real apiserver does for these types.
    pub protect_status: bool,
    /// Has a `scale` subresource.
    pub scale: bool,
}

impl ResourceType {
    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    /// The store's key for the type: `group/plural` (`/pods` for core).
    pub fn id(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }

    /// `statefulsets.apps`, `pods`: the name the apiserver uses in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() { self.plural.to_string() } else { format!("{}.{}", self.plural, self.group) }
    }
}

const fn res(group: &'static str, version: &'static str, plural: &'static str, kind: &'static str) -> ResourceType {
    ResourceType { group, version, plural, kind, namespaced: true, status: false, protect_status: false, scale: false }
}

pub static NAMESPACES: ResourceType = ResourceType { namespaced: false, ..res("", "v1", "namespaces", "Namespace") };
pub static PODS: ResourceType = ResourceType { status: true, ..res("", "v1", "pods", "Pod") };
pub static SERVICES: ResourceType = ResourceType { status: true, ..res("", "v1", "services", "Service") };
pub static CONFIGMAPS: ResourceType = res("", "v1", "configmaps", "ConfigMap");
pub static SECRETS: ResourceType = res("", "v1", "secrets", "Secret");
pub static SERVICEACCOUNTS: ResourceType = res("", "v1", "serviceaccounts", "ServiceAccount");
pub static PERSISTENTVOLUMECLAIMS: ResourceType =
    ResourceType { status: true, ..res("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim") };
pub static CORE_EVENTS: ResourceType = res("", "v1", "events", "Event");
pub static STATEFULSETS: ResourceType =
    ResourceType { status: true, protect_status: true, scale: true, ..res("apps", "v1", "statefulsets", "StatefulSet") };
pub static PODDISRUPTIONBUDGETS: ResourceType =
    ResourceType { status: true, ..res("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget") };
pub static LEASES: ResourceType = res("coordination.k8s.io", "v1", "leases", "Lease");
pub static EVENTS: ResourceType = res("events.k8s.io", "v1", "events", "Event");
pub static KVCLUSTERS: ResourceType =
    ResourceType { status: true, protect_status: true, scale: true, ..res("shoal.dev", "v1alpha1", "kvclusters", "KvCluster") };
pub static SERVICEMONITORS: ResourceType = res("monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor");
pub static CUSTOMRESOURCEDEFINITIONS: ResourceType = ResourceType {
    namespaced: false,
    status: true,
    ..res("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition")
};

/// Every served type.
pub static ALL: [&ResourceType; 15] = [
    &NAMESPACES,
    &PODS,
    &SERVICES,
    &CONFIGMAPS,
    &SECRETS,
    &SERVICEACCOUNTS,
    &PERSISTENTVOLUMECLAIMS,
    &CORE_EVENTS,
    &STATEFULSETS,
    &PODDISRUPTIONBUDGETS,
    &LEASES,
    &EVENTS,
    &KVCLUSTERS,
    &SERVICEMONITORS,
    &CUSTOMRESOURCEDEFINITIONS,
];

/// The type served at `group/version/plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    ALL.iter().copied().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The served `(group, version)` pairs, core (`""`) first, each once.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in ALL {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}
