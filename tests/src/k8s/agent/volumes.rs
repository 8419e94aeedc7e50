//! Volume provisioning, as a local-path provisioner does it.
//!
//! [`ensure_storage_class`] makes the default StorageClass [`STORAGE_CLASS`]
//! (provisioner [`PROVISIONER`], `WaitForFirstConsumer`, reclaim `Delete`).
//! For a claim of that class the real scheduler picks a node and writes it
//! into the claim (`volume.kubernetes.io/selected-node`); [`run`] then makes
//! a directory and a `local` PersistentVolume pinned to that node with a
//! `claimRef` to the claim, and the real PV controller binds the two. When a
//! claim is deleted (the real PVC-protection controller lets it go only once
//! no pod uses it), its volume turns `Released`: the directory is removed and
//! the PersistentVolume deleted. A claim whose request was raised (the class
//! allows expansion) gets it, as a CSI resizer and the kubelet give it: the
//! volume's capacity and then the claim's `status.capacity` are raised (a
//! directory has no size to grow).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::{Shared, TICK};

/// The default StorageClass of the test cluster.
pub const STORAGE_CLASS: &str = "shoal-local";
/// Its provisioner's name.
pub const PROVISIONER: &str = "shoal.dev/test-local-path";

const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

pub async fn ensure_storage_class(shared: &Shared) -> Result<(), kube::Error> {
    let classes: Api<StorageClass> = Api::all(shared.client.clone());
    let class: StorageClass = serde_json::from_value(json!({
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": { "storageclass.kubernetes.io/is-default-class": "true" }
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": true,
    }))
    .expect("a StorageClass");
    match classes.create(&PostParams::default(), &class).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

pub async fn run(shared: Arc<Shared>) {
    loop {
        if let Err(e) = sync(&shared).await {
            eprintln!("node agent: volumes: {e}");
        }
        tokio::time::sleep(TICK).await;
    }
}

async fn sync(shared: &Shared) -> Result<(), kube::Error> {
    let pvs: Api<PersistentVolume> = Api::all(shared.client.clone());
    let volumes = pvs.list(&ListParams::default()).await?.items;
    let ours = |pv: &PersistentVolume| {
        pv.metadata.annotations.as_ref().and_then(|a| a.get(PROVISIONED_BY)).map(String::as_str) == Some(PROVISIONER)
            && pv.spec.as_ref().and_then(|s| s.local.as_ref()).is_some_and(|l| l.path.starts_with(&*shared.root.path().to_string_lossy()))
    };
    // Released volumes of ours: the directory and the object go.
    for pv in volumes.iter().filter(|pv| ours(pv)) {
        let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
        if phase == Some("Released") && pv.metadata.deletion_timestamp.is_none() {
            let name = pv.metadata.name.clone().unwrap_or_default();
            if let Some(path) = pv.spec.as_ref().and_then(|s| s.local.as_ref()).map(|l| l.path.clone()) {
                let _ = std::fs::remove_dir_all(&path);
            }
            match pvs.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
    // Pending claims of our class, placed on one of our live nodes: provision.
    let live = shared.live_nodes();
    let pvcs: Api<PersistentVolumeClaim> = Api::all(shared.client.clone());
    for pvc in pvcs.list(&ListParams::default()).await?.items {
        let spec = pvc.spec.clone().unwrap_or_default();
        resize(&shared.client, &pvs, &pvc, &volumes).await?;
        let pending = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending");
        let Some(node) = pvc.metadata.annotations.as_ref().and_then(|a| a.get(SELECTED_NODE)).filter(|n| live.contains(n)).cloned() else {
            continue;
        };
        if !pending || spec.storage_class_name.as_deref() != Some(STORAGE_CLASS) || pvc.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let uid = pvc.metadata.uid.clone().unwrap_or_default();
        let name = format!("pvc-{uid}");
        if volumes.iter().any(|pv| pv.metadata.name.as_deref() == Some(&name)) {
            continue;
        }
        let dir = shared.root.path().join("volumes").join(&name);
        std::fs::create_dir_all(&dir).map_err(|e| kube::Error::Service(Box::new(e)))?;
        let size = spec.resources.and_then(|r| r.requests).and_then(|r| r.get("storage").cloned()).map(|q| q.0).unwrap_or("1Gi".into());
        let pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": { "name": name, "annotations": { PROVISIONED_BY: PROVISIONER } },
            "spec": {
                "capacity": { "storage": size },
                "accessModes": spec.access_modes.unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": STORAGE_CLASS,
                "volumeMode": "Filesystem",
                "local": { "path": dir.to_string_lossy() },
                "claimRef": {
                    "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "namespace": pvc.metadata.namespace, "name": pvc.metadata.name, "uid": uid
                },
                "nodeAffinity": { "required": { "nodeSelectorTerms": [{ "matchExpressions": [
                    { "key": "kubernetes.io/hostname", "operator": "In", "values": [node] }
                ] }] } }
            }
        }))
        .expect("a PersistentVolume");
        match pvs.create(&PostParams::default(), &pv).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A bound claim of one of our volumes whose request is above its capacity:
/// the volume's capacity, then the claim's, are raised to it.
async fn resize(
    client: &kube::Client,
    pvs: &Api<PersistentVolume>,
    pvc: &PersistentVolumeClaim,
    volumes: &[PersistentVolume],
) -> Result<(), kube::Error> {
    let request = pvc.spec.as_ref().and_then(|s| s.resources.as_ref()?.requests.as_ref()?.get("storage").cloned());
    let capacity = pvc.status.as_ref().and_then(|s| s.capacity.as_ref()?.get("storage").cloned());
    let volume = pvc.spec.as_ref().and_then(|s| s.volume_name.clone());
    let (Some(request), Some(capacity), Some(volume)) = (request, capacity, volume) else { return Ok(()) };
    if request == capacity || !volumes.iter().any(|pv| pv.metadata.name.as_deref() == Some(&volume)) {
        return Ok(());
    }
    let ns = pvc.metadata.namespace.clone().unwrap_or_default();
    let name = pvc.metadata.name.clone().unwrap_or_default();
    pvs.patch(&volume, &PatchParams::default(), &Patch::Merge(json!({ "spec": { "capacity": { "storage": request.0 } } }))).await?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    claims
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({ "status": { "capacity": { "storage": request.0 } } })))
        .await?;
    Ok(())
}
