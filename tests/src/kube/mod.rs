//! A test-only Kubernetes: an API server stand-in plus a StatefulSet
//! "kubelet" whose pods are real `shoal-node` processes on loopback (DESIGN
//! testing level 4).
//!
//! [`KubeApiServer`] serves enough of the Kubernetes REST API for kube-rs
//! (`Api<T>`, `kube_runtime::watcher`, `Controller`) — and so the real
//! `shoal-operator` binary, pointed at it by a kubeconfig — to work
//! unmodified: GET/LIST/WATCH/POST/PUT/PATCH/DELETE on core v1 pods,
//! services, configmaps, secrets, serviceaccounts, persistentvolumeclaims,
//! events and namespaces; apps/v1 statefulsets; policy/v1
//! poddisruptionbudgets; coordination.k8s.io/v1 leases; events.k8s.io/v1
//! events; shoal.dev/v1alpha1 kvclusters; monitoring.coreos.com/v1
//! servicemonitors; apiextensions.k8s.io/v1 customresourcedefinitions. It
//! keeps one global resourceVersion and the whole change log (a watch never
//! sees 410 Gone), `generation` (bumped when `.spec` changes), the `status`
//! and `scale` subresources, finalizers and deletionTimestamp, and garbage
//! collection by ownerReferences.
//!
//! [`Kubelet`] plays the StatefulSet controller and the kubelet: it keeps
//! `<sts>-<i>` pods as processes, with PVC directories, readiness probes,
//! restarts, ordered or parallel start and highest-ordinal-first scale-down.
//!
//! Deliberately not done:
//! - no authentication, authorisation or TLS (plain HTTP on 127.0.0.1);
//! - no admission (webhooks, defaulting, validation beyond the basics: no
//!   OpenAPI schema checks of CRD objects);
//! - no real server-side apply field ownership: an apply is a deep merge of
//!   the applied object into the stored one (maps merge, lists are replaced;
//!   a field dropped from a later apply is not removed; no managedFields, no
//!   apply conflicts); a strategic merge patch is a JSON merge patch;
//! - no `dryRun`, no paging (`limit`/`continue` are ignored: one page), no
//!   streaming lists (`sendInitialEvents`), no protobuf, no aggregated
//!   discovery, no field selectors beyond equality on a field path;
//! - no DNS: the kubelet rewrites `<pod>.<svc>.<ns>.svc[.cluster.local]`
//!   names and `0.0.0.0` in container args to the pods' loopback IPs, and
//!   mount paths to directories under its temp root; no images (the command's
//!   file name is looked up in [`crate::bin_dir`]); no Services routing,
//!   no Deployments, no nodes, no scheduling.

pub mod api;
pub mod kubeconfig;
pub mod kubelet;

pub use api::resources;
pub use api::{ApiError, Event, EventKind, KubeApiServer, Part, ResourceType, Selectors, Store};
pub use kubeconfig::{client_for, kubeconfig_yaml};
pub use kubelet::Kubelet;
