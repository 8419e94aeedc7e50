//! Shoal's Kubernetes operator: it turns a `KvCluster` into the objects that
//! run a Shoal cluster and drives the cluster's membership as it scales.
//!
//! Reconcile is a pipeline ([`reconcile`]):
//! 1. **dereference** — the `KvCluster` and what exists: its StatefulSet, pods
//!    and volumes ([`observe`]), and the stores the cluster itself reports
//!    through its Admin and Meta services ([`cluster`]);
//! 2. **validate** — the spec ([`validate`]); an invalid one sets `Degraded`
//!    and waits for a change;
//!    With `spec.tls`, the certificates are made sure of first ([`certificates`]):
//!    the operator needs its own to talk to the cluster;
//! 3. **decide** — the membership driver ([`membership::plan`], a pure
//!    function of the spec, the status and what was observed) picks the
//!    StatefulSet size and at most one step: join, drain or remove a store, or
//!    delete a retired volume;
//! 4. **build** — pure builders ([`build`]) make every child object;
//! 5. **apply** — server-side apply with one field manager, then the step
//!    (a raised `storage.size` first expands the volumes and re-creates the
//!    StatefulSet, [`storage`]);
//! 6. **status** — replicas, stores, conditions and the scaling in progress.
//!
//! A new cluster with `spec.restoreFrom` is then loaded from that backup,
//! once ([`restore`]). A second controller takes `KvBackup`s: one backup, or
//! one per tick of a cron schedule with the newest kept ([`backup`]).
//!
//! Around it: the CRD types ([`crd`]), metrics ([`metrics`]), leader election
//! on a Lease ([`leader`]) and the HTTP endpoints ([`http`]).

pub mod backup;
pub mod build;
pub mod certificates;
pub mod cluster;
pub mod crd;
pub mod error;
pub mod http;
pub mod leader;
pub mod membership;
pub mod metrics;
pub mod observe;
pub mod reconcile;
pub mod restore;
pub mod status;
pub mod storage;
pub mod validate;
