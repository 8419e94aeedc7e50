//! From a Pod to a [`LaunchPlan`], as a kubelet and container runtime do it:
//! the first container's command (the image's name is the binary: there are
//! no images here) and args with `$(VAR)`s expanded; its env resolved
//! (values, downward-API fieldRefs, ConfigMap and Secret keys, `envFrom`,
//! and `KUBERNETES_SERVICE_HOST`/`_PORT` for in-cluster clients); its volumes
//! made into directories (a PVC's bound PersistentVolume, ConfigMap, Secret
//! and projected files — service-account tokens through the TokenRequest
//! API — and emptyDirs) and mounted at their `mountPath`s.
//!
//! Secret and ConfigMap volumes are kept up to date while the pod runs
//! ([`refresh_volumes`]), each file replaced whole by a rename.
//!
//! One departure, because every pod shares the machine's network: a
//! `0.0.0.0` in an arg becomes the pod's own loopback IP, so that two pods can
//! listen on the same port.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, PodSpec, Secret, ServiceAccount, Volume,
};
use kube::Api;
use kube::api::PostParams;

use super::process::{LaunchPlan, Mount};
use crate::k8s::hosts::NODE_IP;

/// Where a pod runs.
pub struct PodContext<'a> {
    pub client: &'a kube::Client,
    pub pod: &'a Pod,
    pub ip: String,
    pub node: &'a str,
    /// The API server as pods reach it: (host, port).
    pub apiserver: (&'a str, u16),
    pub bin_dir: &'a Path,
    /// The pod's own directory (cwd, and its ConfigMap, Secret, projected and emptyDir volumes).
    pub pod_dir: PathBuf,
}

impl PodContext<'_> {
    fn ns(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }
    fn name(&self) -> &str {
        self.pod.metadata.name.as_deref().unwrap_or("")
    }
    fn spec(&self) -> &PodSpec {
        self.pod.spec.as_ref().expect("a scheduled pod has a spec")
    }
}

/// `$(VAR)` from `vars` (unknown names stay as written; `$$(` is a literal `$(`).
pub fn expand_vars(s: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("$$(") {
            out.push_str("$(");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("$(")
            && let Some(end) = tail.find(')')
        {
            match vars.get(&tail[..end]) {
                Some(v) => out.push_str(v),
                None => out.push_str(&after[..end + 3]),
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    out
}

async fn config_map(ctx: &PodContext<'_>, name: &str) -> Result<Option<BTreeMap<String, String>>, String> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ctx.ns());
    let cm = api.get_opt(name).await.map_err(|e| format!("configmap {name}: {e}"))?;
    Ok(cm.map(|cm| cm.data.unwrap_or_default()))
}

async fn secret(ctx: &PodContext<'_>, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ctx.ns());
    let s = api.get_opt(name).await.map_err(|e| format!("secret {name}: {e}"))?;
    Ok(s.map(|s| {
        let mut out: BTreeMap<String, Vec<u8>> = s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
        out.extend(s.string_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())));
        out
    }))
}

/// A downward-API field of the pod.
fn field(ctx: &PodContext<'_>, path: &str) -> Result<String, String> {
    let meta = &ctx.pod.metadata;
    let label = |p: &str, map: &Option<BTreeMap<String, String>>| -> Option<String> {
        let key = p.strip_prefix("['")?.strip_suffix("']")?;
        map.as_ref()?.get(key).cloned()
    };
    Ok(match path {
        "metadata.name" => ctx.name().to_string(),
        "metadata.namespace" => ctx.ns().to_string(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "status.podIP" => ctx.ip.clone(),
        "status.hostIP" => NODE_IP.into(),
        "spec.nodeName" => ctx.node.to_string(),
        "spec.serviceAccountName" => ctx.spec().service_account_name.clone().unwrap_or_default(),
        p if p.starts_with("metadata.labels") => label(&p["metadata.labels".len()..], &meta.labels).unwrap_or_default(),
        p if p.starts_with("metadata.annotations") => label(&p["metadata.annotations".len()..], &meta.annotations).unwrap_or_default(),
        other => return Err(format!("fieldRef {other} is not supported by the test node agent")),
    })
}

/// The container's env, resolved in order.
async fn env(container: &Container, ctx: &PodContext<'_>) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = vec![
        ("KUBERNETES_SERVICE_HOST".into(), ctx.apiserver.0.to_string()),
        ("KUBERNETES_SERVICE_PORT".into(), ctx.apiserver.1.to_string()),
        ("HOSTNAME".into(), ctx.name().to_string()),
    ];
    fn set(out: &mut Vec<(String, String)>, k: String, v: String) {
        out.retain(|(ok, _)| *ok != k);
        out.push((k, v));
    }
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match config_map(ctx, &r.name).await? {
                Some(data) => data.into_iter().for_each(|(k, v)| set(&mut out, format!("{prefix}{k}"), v)),
                None if r.optional == Some(true) => {}
                None => return Err(format!("envFrom: configmap {} not found", r.name)),
            }
        }
        if let Some(r) = &from.secret_ref {
            match secret(ctx, &r.name).await? {
                Some(data) => data.into_iter().for_each(|(k, v)| set(&mut out, format!("{prefix}{k}"), String::from_utf8_lossy(&v).into())),
                None if r.optional == Some(true) => {}
                None => return Err(format!("envFrom: secret {} not found", r.name)),
            }
        }
    }
    for e in container.env.iter().flatten() {
        let vars: HashMap<String, String> = out.iter().cloned().collect();
        let value = if let Some(v) = &e.value {
            expand_vars(v, &vars)
        } else if let Some(from) = &e.value_from {
            if let Some(f) = &from.field_ref {
                field(ctx, &f.field_path)?
            } else if let Some(r) = &from.config_map_key_ref {
                match config_map(ctx, &r.name).await?.and_then(|d| d.get(&r.key).cloned()) {
                    Some(v) => v,
                    None if r.optional == Some(true) => continue,
                    None => return Err(format!("env {}: key {} of configmap {} not found", e.name, r.key, r.name)),
                }
            } else if let Some(r) = &from.secret_key_ref {
                match secret(ctx, &r.name).await?.and_then(|d| d.get(&r.key).cloned()) {
                    Some(v) => String::from_utf8_lossy(&v).into_owned(),
                    None if r.optional == Some(true) => continue,
                    None => return Err(format!("env {}: key {} of secret {} not found", e.name, r.key, r.name)),
                }
            } else {
                return Err(format!("env {}: resourceFieldRef is not supported by the test node agent", e.name));
            }
        } else {
            String::new()
        };
        set(&mut out, e.name.clone(), value);
    }
    Ok(out)
}

fn write_files(dir: &Path, files: &BTreeMap<String, Vec<u8>>, items: &Option<Vec<KeyToPath>>) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    for (key, value) in files {
        let rel = match items {
            Some(items) => match items.iter().find(|i| &i.key == key) {
                Some(i) => i.path.clone(),
                None => continue,
            },
            None => key.clone(),
        };
        let target = dir.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
        }
        if std::fs::read(&target).is_ok_and(|old| &old == value) {
            continue;
        }
        // Whole or not at all, as the kubelet's atomic writer swaps them.
        let tmp = target.with_file_name(format!(".{}.tmp", target.file_name().map(|f| f.to_string_lossy()).unwrap_or_default()));
        std::fs::write(&tmp, value).map_err(|e| format!("write {}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &target).map_err(|e| format!("rename {}: {e}", target.display()))?;
    }
    Ok(())
}

/// Rewrites the pod's Secret and ConfigMap volumes whose objects changed, as
/// the kubelet does every sync period (subPath mounts included here, which the
/// kubelet leaves alone; no test relies on either).
pub async fn refresh_volumes(ctx: &PodContext<'_>) -> Result<(), String> {
    for vol in ctx.spec().volumes.iter().flatten() {
        let own = ctx.pod_dir.join("volumes").join(&vol.name);
        if !own.exists() {
            continue;
        }
        if let Some(cm) = &vol.config_map
            && let Some(data) = config_map(ctx, &cm.name).await?
        {
            write_files(&own, &text_files(data), &cm.items)?;
        } else if let Some(s) = &vol.secret
            && let Some(data) = secret(ctx, s.secret_name.as_deref().unwrap_or_default()).await?
        {
            write_files(&own, &data, &s.items)?;
        }
    }
    Ok(())
}

fn text_files(data: BTreeMap<String, String>) -> BTreeMap<String, Vec<u8>> {
    data.into_iter().map(|(k, v)| (k, v.into_bytes())).collect()
}

/// A bound service-account token for the pod (TokenRequest API).
async fn token(ctx: &PodContext<'_>, audience: Option<&str>, seconds: Option<i64>) -> Result<String, String> {
    let sa = ctx.spec().service_account_name.clone().unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), ctx.ns());
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
            expiration_seconds: Some(seconds.unwrap_or(3607)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(ctx.name().to_string()),
                uid: ctx.pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let answer = api.create_token_request(&sa, &PostParams::default(), &request).await.map_err(|e| format!("token for {sa}: {e}"))?;
    answer.status.map(|s| s.token).ok_or_else(|| format!("token for {sa}: no status in the answer"))
}

/// The directory behind volume `vol`, made and filled.
async fn volume_dir(vol: &Volume, ctx: &PodContext<'_>) -> Result<PathBuf, String> {
    let own = ctx.pod_dir.join("volumes").join(&vol.name);
    if let Some(claim) = &vol.persistent_volume_claim {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ctx.ns());
        let pvc = pvcs.get(&claim.claim_name).await.map_err(|e| format!("pvc {}: {e}", claim.claim_name))?;
        let pv_name = pvc.spec.and_then(|s| s.volume_name).filter(|v| !v.is_empty());
        let pv_name = pv_name.ok_or_else(|| format!("pvc {} is not bound", claim.claim_name))?;
        let pv = Api::<PersistentVolume>::all(ctx.client.clone()).get(&pv_name).await.map_err(|e| format!("pv {pv_name}: {e}"))?;
        let spec = pv.spec.unwrap_or_default();
        let path = spec.local.map(|l| l.path).or(spec.host_path.map(|h| h.path));
        return path.map(PathBuf::from).ok_or_else(|| format!("pv {pv_name} is neither local nor hostPath"));
    }
    if let Some(cm) = &vol.config_map {
        let data = match config_map(ctx, &cm.name).await? {
            Some(d) => d,
            None if cm.optional == Some(true) => Default::default(),
            None => return Err(format!("volume {}: configmap {} not found", vol.name, cm.name)),
        };
        write_files(&own, &text_files(data), &cm.items)?;
    } else if let Some(s) = &vol.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let data = match secret(ctx, &name).await? {
            Some(d) => d,
            None if s.optional == Some(true) => Default::default(),
            None => return Err(format!("volume {}: secret {name} not found", vol.name)),
        };
        write_files(&own, &data, &s.items)?;
    } else if let Some(p) = &vol.projected {
        for source in p.sources.iter().flatten() {
            if let Some(t) = &source.service_account_token {
                let token = token(ctx, t.audience.as_deref(), t.expiration_seconds).await?;
                write_files(&own, &[(t.path.clone(), token.into_bytes())].into(), &None)?;
            }
            if let Some(cm) = &source.config_map {
                if let Some(data) = config_map(ctx, &cm.name).await? {
                    write_files(&own, &text_files(data), &cm.items)?;
                } else if cm.optional != Some(true) {
                    return Err(format!("volume {}: configmap {} not found", vol.name, cm.name));
                }
            }
            if let Some(s) = &source.secret {
                if let Some(data) = secret(ctx, &s.name).await? {
                    write_files(&own, &data, &s.items)?;
                } else if s.optional != Some(true) {
                    return Err(format!("volume {}: secret {} not found", vol.name, s.name));
                }
            }
            if let Some(d) = &source.downward_api {
                for item in d.items.iter().flatten() {
                    let f = item.field_ref.as_ref().ok_or_else(|| format!("volume {}: only fieldRef items are supported", vol.name))?;
                    write_files(&own, &[(item.path.clone(), field(ctx, &f.field_path)?.into_bytes())].into(), &None)?;
                }
            }
        }
    } else if vol.empty_dir.is_some() {
        std::fs::create_dir_all(&own).map_err(|e| format!("create {}: {e}", own.display()))?;
    } else {
        return Err(format!("volume {}: only PVC, configMap, secret, projected and emptyDir volumes are supported", vol.name));
    }
    Ok(own)
}

/// The plan for the pod's first container.
pub async fn plan(ctx: &PodContext<'_>) -> Result<LaunchPlan, String> {
    let spec = ctx.spec();
    let container = spec.containers.first().ok_or("the pod has no containers")?;
    let mut mounts = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let vol = spec.volumes.iter().flatten().find(|v| v.name == m.name).ok_or_else(|| format!("mount {}: no such volume", m.name))?;
        let mut source = volume_dir(vol, ctx).await?;
        if let Some(sub) = m.sub_path.as_deref().filter(|p| !p.is_empty()) {
            source = source.join(sub);
            std::fs::create_dir_all(&source).map_err(|e| format!("create {}: {e}", source.display()))?;
        }
        mounts.push(Mount { source, target: PathBuf::from(&m.mount_path), read_only: m.read_only == Some(true) });
    }
    mounts.sort_by_key(|m| m.target.components().count());
    let env = env(container, ctx).await?;
    let vars: HashMap<String, String> = env.iter().cloned().collect();
    let expand = |a: &String| expand_vars(a, &vars).replace("0.0.0.0", &ctx.ip);
    let mut command = container.command.clone().unwrap_or_default();
    if command.is_empty() {
        // No entrypoint to read from an image: its name (without registry or tag) is the binary.
        let image = container.image.as_deref().unwrap_or("");
        let name = image.rsplit('/').next().unwrap_or("").split([':', '@']).next().unwrap_or("");
        if name.is_empty() {
            return Err("the container has neither a command nor an image".into());
        }
        command.push(name.to_string());
    }
    let first = command.remove(0);
    let file = Path::new(&first).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| first.clone());
    let program = ctx.bin_dir.join(&file);
    if !program.exists() {
        return Err(format!("{file} is not in {} (build it first)", ctx.bin_dir.display()));
    }
    let args = command.iter().chain(container.args.iter().flatten()).map(expand).collect();
    std::fs::create_dir_all(&ctx.pod_dir).map_err(|e| format!("create {}: {e}", ctx.pod_dir.display()))?;
    Ok(LaunchPlan { program, args, env, cwd: ctx.pod_dir.clone(), mounts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vars_expand_as_the_kubelet_expands_them() {
        let vars: HashMap<String, String> = [("POD_NAME".to_string(), "demo-1".to_string())].into();
        assert_eq!(expand_vars("--name=$(POD_NAME) $(NOPE) $$(POD_NAME) $", &vars), "--name=demo-1 $(NOPE) $(POD_NAME) $");
        assert_eq!(expand_vars("$(POD_NAME).demo-peer", &vars), "demo-1.demo-peer");
    }
}
