//! Leader election on a `coordination.k8s.io/v1` Lease, so that two operator
//! replicas never drive one cluster at once.
//!
//! A candidate takes the Lease when nobody holds it or its holder has not
//! renewed it within `leaseDurationSeconds`; the holder renews it every third
//! of that, each call bounded by a third of it too. Every write is a replace under the Lease's `resourceVersion`, so
//! of two candidates racing for an expired Lease only one wins (the other
//! gets a conflict). A leader that has not renewed for two thirds of the
//! duration stops ([`LeaseLock::hold`] returns) before a standby may take
//! over, and the process exits: Kubernetes restarts it as a candidate. Clocks of the replicas are assumed to agree
//! to well within the lease duration, as with client-go's leader election.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};

pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl LeaseLock {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, duration: Duration) -> LeaseLock {
        LeaseLock { api: Api::namespaced(client, namespace), name: name.into(), identity: identity.into(), duration }
    }

    fn spec(&self, now: Timestamp, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs() as i32),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Takes or renews the Lease; `Ok(true)` while this replica holds it.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease =
                Lease { metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() }, spec: Some(self.spec(now, None, 0)) };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let ours = holder == self.identity;
        let ttl = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
        let expired = spec.renew_time.as_ref().is_none_or(|t| t.0 + ttl < now);
        if !ours && !holder.is_empty() && !expired {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        lease.spec = Some(self.spec(now, if ours { spec.acquire_time } else { None }, transitions));
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// One attempt, given up after a third of the lease duration (a hung call
    /// must not outlast the Lease).
    async fn attempt(&self) -> Result<bool, String> {
        match tokio::time::timeout(self.duration / 3, self.try_acquire_or_renew()).await {
            Ok(Ok(held)) => Ok(held),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.duration / 3)),
        }
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) {
        loop {
            match self.attempt().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, lease = %self.name, "cannot read or take the leader Lease"),
            }
            tokio::time::sleep(self.duration / 3).await;
        }
    }

    /// Renews the Lease every third of its duration; returns when another
    /// replica took it, or when no renewal succeeded for two thirds of the
    /// duration (counted from when the last successful renewal was *sent*,
    /// since that is the time stamped in the Lease): the caller must stop
    /// acting as leader before a standby may take over.
    pub async fn hold(&self) {
        let renew_deadline = self.duration * 2 / 3;
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.duration / 3).await;
            let sent = tokio::time::Instant::now();
            match self.attempt().await {
                Ok(true) => last_renewed = sent,
                Ok(false) => {
                    tracing::error!(lease = %self.name, "another replica took the leader Lease");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "cannot renew the leader Lease"),
            }
            if last_renewed.elapsed() >= renew_deadline {
                tracing::error!(lease = %self.name, "could not renew the leader Lease in time");
                return;
            }
        }
    }

    /// Gives the Lease up (on shutdown), so the next replica need not wait for it to expire.
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await
            && lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(self.identity.as_str())
        {
            if let Some(spec) = lease.spec.as_mut() {
                spec.holder_identity = None;
            }
            let _ = self.api.replace(&self.name, &PostParams::default(), &lease).await;
        }
    }
}
