//! Volume growth: a raised `spec.storage.size` expands every data volume.
//!
//! A StatefulSet's volume claim template cannot change, so the operator does
//! what one does by hand: it raises the request of every PVC of the cluster
//! (the StorageClass must allow expansion, or the API server refuses and the
//! cluster is `Degraded` with its message), then deletes the StatefulSet with
//! `propagationPolicy: Orphan` — its pods keep running — and the next round
//! creates it again with the new template, which adopts the same pods without
//! restarting them (their template is unchanged). A smaller size is refused.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use crate::build::Names;
use crate::build::names::FIELD_MANAGER;
use crate::error::{Error, Result};
use crate::validate::{InvalidSpec, quantity_bytes};

/// Whether `wanted` asks for more than the StatefulSet's `live` template
/// (`Err` when it asks for less: volumes do not shrink).
pub fn needs_growth(live: &str, wanted: &str) -> std::result::Result<bool, InvalidSpec> {
    match (quantity_bytes(live), quantity_bytes(wanted)) {
        (Some(l), Some(w)) if w < l => {
            Err(InvalidSpec(format!("storage.size {wanted} is smaller than the volumes' {live}: volumes do not shrink")))
        }
        (Some(l), Some(w)) => Ok(w > l),
        _ => Ok(false),
    }
}

/// Raises every PVC below `size` to it, then deletes the StatefulSet,
/// orphaning its pods; the PVCs raised.
pub async fn expand(client: &Client, names: &Names, size: &str) -> Result<Vec<String>> {
    let wanted = quantity_bytes(size).ok_or_else(|| Error::Internal(format!("storage.size {size:?} is not a quantity")))?;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &names.namespace);
    let mut raised = Vec::new();
    for pvc in pvcs.list(&ListParams::default().labels(&names.selector_string())).await?.items {
        let name = pvc.metadata.name.clone().unwrap_or_default();
        let request = pvc.spec.as_ref().and_then(|s| s.resources.as_ref()?.requests.as_ref()?.get("storage").map(|q| q.0.clone()));
        if request.as_deref().and_then(quantity_bytes).is_some_and(|r| r >= wanted) || pvc.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let patch = json!({ "spec": { "resources": { "requests": { "storage": size } } } });
        pvcs.patch(&name, &PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }, &Patch::Merge(&patch)).await?;
        raised.push(name);
    }
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &names.namespace);
    match sts.delete(&names.statefulset(), &DeleteParams::orphan()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(raised)
}
