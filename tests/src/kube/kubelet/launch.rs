//! From a pod spec to a [`LaunchPlan`]: the first container's command and
//! args with `$(VAR)`s expanded, hostnames and `0.0.0.0` turned into loopback
//! IPs and mount paths into directories; its env resolved (values,
//! fieldRefs, ConfigMap keys); its volumes made (PVC directories, ConfigMap
//! files, emptyDirs).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::process::LaunchPlan;
use super::rewrite::{IpAllocator, expand_vars, rewrite_hosts, rewrite_paths};
use crate::kube::api::Store;
use crate::kube::api::resources::{CONFIGMAPS, PODS, SERVICES, STATEFULSETS};

/// Where one pod lives.
pub struct PodContext<'a> {
    pub ns: &'a str,
    pub pod: &'a str,
    pub ip: Ipv4Addr,
    pub store: &'a Store,
    pub bin_dir: &'a Path,
    /// The pod's own directory (cwd, ConfigMap and emptyDir volumes).
    pub pod_dir: PathBuf,
    /// The directory backing PVC `claim` in the namespace.
    pub pvc_dir: &'a dyn Fn(&str) -> PathBuf,
}

fn s<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn configmap_data(ctx: &PodContext<'_>, name: &str) -> Option<serde_json::Map<String, Value>> {
    let cm = ctx.store.get(&CONFIGMAPS, ctx.ns, name)?;
    Some(cm.get("data").and_then(Value::as_object).cloned().unwrap_or_default())
}

/// (mountPath, directory) of the container's volume mounts, longest first.
fn mounts(spec: &Value, container: &Value, ctx: &PodContext<'_>) -> Result<Vec<(String, String)>, String> {
    let volumes: Vec<Value> = spec.get("volumes").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut out = Vec::new();
    for m in container.get("volumeMounts").and_then(Value::as_array).into_iter().flatten() {
        let (Some(name), Some(path)) = (s(m, "/name"), s(m, "/mountPath")) else { continue };
        let vol = volumes.iter().find(|v| s(v, "/name") == Some(name)).ok_or_else(|| format!("volume mount {name}: no such volume"))?;
        let own = ctx.pod_dir.join("volumes").join(name);
        let mut dir = if let Some(claim) = s(vol, "/persistentVolumeClaim/claimName") {
            (ctx.pvc_dir)(claim)
        } else if let Some(cm) = s(vol, "/configMap/name") {
            let data = match configmap_data(ctx, cm) {
                Some(d) => d,
                None if vol.pointer("/configMap/optional").and_then(Value::as_bool) == Some(true) => Default::default(),
                None => return Err(format!("volume {name}: configmap {cm} not found")),
            };
            std::fs::create_dir_all(&own).map_err(|e| format!("create {}: {e}", own.display()))?;
            let items = vol.pointer("/configMap/items").and_then(Value::as_array);
            for (key, value) in &data {
                let file = match items {
                    Some(items) => match items.iter().find(|i| s(i, "/key") == Some(key)) {
                        Some(i) => s(i, "/path").unwrap_or(key).to_string(),
                        None => continue,
                    },
                    None => key.clone(),
                };
                let target = own.join(file);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
                }
                std::fs::write(&target, value.as_str().unwrap_or_default()).map_err(|e| format!("write {}: {e}", target.display()))?;
            }
            own
        } else if vol.get("emptyDir").is_some() || vol.get("secret").is_some() || vol.get("projected").is_some() {
            own
        } else {
            return Err(format!("volume {name}: only persistentVolumeClaim, configMap and emptyDir volumes are supported"));
        };
        if let Some(sub) = s(m, "/subPath").filter(|p| !p.is_empty()) {
            dir = dir.join(sub);
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        out.push((path.to_string(), dir.display().to_string()));
    }
    out.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    Ok(out)
}

/// The container's env, resolved in order.
fn env(container: &Value, ctx: &PodContext<'_>) -> Result<Vec<(String, String)>, String> {
    let mut vars: HashMap<String, String> = HashMap::new();
    let mut out: Vec<(String, String)> = Vec::new();
    let mut set = |k: String, v: String, vars: &mut HashMap<String, String>| {
        vars.insert(k.clone(), v.clone());
        out.retain(|(ok, _)| *ok != k);
        out.push((k, v));
    };
    for from in container.get("envFrom").and_then(Value::as_array).into_iter().flatten() {
        if let Some(cm) = s(from, "/configMapRef/name") {
            let prefix = s(from, "/prefix").unwrap_or("");
            match configmap_data(ctx, cm) {
                Some(data) => data.iter().for_each(|(k, v)| set(format!("{prefix}{k}"), v.as_str().unwrap_or("").into(), &mut vars)),
                None if from.pointer("/configMapRef/optional").and_then(Value::as_bool) == Some(true) => {}
                None => return Err(format!("envFrom: configmap {cm} not found")),
            }
        }
    }
    for e in container.get("env").and_then(Value::as_array).into_iter().flatten() {
        let Some(name) = s(e, "/name") else { continue };
        let value = if let Some(v) = s(e, "/value") {
            expand_vars(v, &vars)
        } else if let Some(field) = s(e, "/valueFrom/fieldRef/fieldPath") {
            match field {
                "metadata.name" => ctx.pod.to_string(),
                "metadata.namespace" => ctx.ns.to_string(),
                "status.podIP" => ctx.ip.to_string(),
                "status.hostIP" => "127.0.0.1".to_string(),
                "spec.nodeName" => "shoal-standin-node".to_string(),
                other => return Err(format!("env {name}: fieldRef {other} is not supported")),
            }
        } else if let Some(cm) = s(e, "/valueFrom/configMapKeyRef/name") {
            let key = s(e, "/valueFrom/configMapKeyRef/key").unwrap_or("");
            let optional = e.pointer("/valueFrom/configMapKeyRef/optional").and_then(Value::as_bool) == Some(true);
            match configmap_data(ctx, cm).and_then(|d| d.get(key).and_then(Value::as_str).map(str::to_string)) {
                Some(v) => v,
                None if optional => continue,
                None => return Err(format!("env {name}: key {key} of configmap {cm} not found")),
            }
        } else if e.get("valueFrom").is_some() {
            return Err(format!("env {name}: only value, fieldRef and configMapKeyRef are supported"));
        } else {
            String::new()
        };
        set(name.to_string(), value, &mut vars);
    }
    Ok(out)
}

/// What a Service name resolves to at process start: the IP of the first
/// Ready pod (by name; this pod last) that the Service `svc` selects, or, with
/// no such Service, that belongs to a StatefulSet whose `serviceName` is `svc`.
/// With no Ready pod, the first selected pod that has an IP (as a real
/// Service name always resolves, to its ClusterIP, and the client retries
/// until something behind it answers).
fn service_ip(ctx: &PodContext<'_>, ns: &str, svc: &str) -> Option<Ipv4Addr> {
    let selector: Option<Vec<(String, String)>> = ctx.store.get(&SERVICES, ns, svc).map(|s| {
        s.pointer("/spec/selector")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
            .unwrap_or_default()
    });
    let sets: Vec<String> = ctx
        .store
        .list(&STATEFULSETS, Some(ns))
        .iter()
        .filter(|s| s.pointer("/spec/serviceName").and_then(Value::as_str) == Some(svc))
        .filter_map(|s| s.pointer("/metadata/name").and_then(Value::as_str).map(str::to_string))
        .collect();
    let mut candidates: Vec<(bool, bool, String, Ipv4Addr)> = Vec::new();
    for pod in ctx.store.list(&PODS, Some(ns)) {
        let name = s(&pod, "/metadata/name").unwrap_or("").to_string();
        let selected = match &selector {
            Some(sel) if !sel.is_empty() => {
                sel.iter().all(|(k, v)| pod.pointer("/metadata/labels").and_then(|l| l.get(k)).and_then(Value::as_str) == Some(v))
            }
            Some(_) => false,
            None => super::rewrite::split_pod_name(&name).is_some_and(|(sts, _)| sets.iter().any(|s| s == sts)),
        };
        let ready = pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|c| c.iter().any(|c| s(c, "/type") == Some("Ready") && s(c, "/status") == Some("True")));
        if let (true, Some(ip)) = (selected, s(&pod, "/status/podIP").and_then(|ip| ip.parse().ok())) {
            candidates.push((!ready, name == ctx.pod, name, ip));
        }
    }
    candidates.sort();
    candidates.first().map(|c| c.3)
}

/// The plan for the pod's first container.
pub fn plan(spec: &Value, ctx: &PodContext<'_>, ips: &mut IpAllocator) -> Result<LaunchPlan, String> {
    let container = spec.pointer("/containers/0").ok_or("the pod has no containers")?;
    let mounts = mounts(spec, container, ctx)?;
    let env = env(container, ctx)?;
    let vars: HashMap<String, String> = env.iter().cloned().collect();
    let services = |ns: &str, svc: &str| service_ip(ctx, ns, svc);
    let rewrite = |a: &str, ips: &mut IpAllocator| rewrite_paths(&rewrite_hosts(&expand_vars(a, &vars), ctx.ip, ips, &services), &mounts);
    let strings = |p: &str| -> Vec<String> {
        container
            .get(p)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let mut command = strings("command");
    if command.is_empty() {
        // No entrypoint to read from an image: its name (without registry or tag) is the binary.
        let image = s(container, "/image").unwrap_or("");
        let name = image.rsplit('/').next().unwrap_or("").split([':', '@']).next().unwrap_or("");
        if name.is_empty() {
            return Err("the container has neither a command nor an image".into());
        }
        command.push(name.to_string());
    }
    let first = command.remove(0);
    let file = Path::new(&first).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| first.clone());
    let program = if ctx.bin_dir.join(&file).exists() {
        ctx.bin_dir.join(&file)
    } else if Path::new(&first).is_absolute() && Path::new(&first).exists() {
        PathBuf::from(&first)
    } else {
        return Err(format!("{file} is not in {} (build it first)", ctx.bin_dir.display()));
    };
    let args = command.iter().chain(strings("args").iter()).map(|a| rewrite(a, ips)).collect();
    let env = env.into_iter().map(|(k, v)| (k, rewrite(&v, ips))).collect();
    std::fs::create_dir_all(&ctx.pod_dir).map_err(|e| format!("create {}: {e}", ctx.pod_dir.display()))?;
    Ok(LaunchPlan { program, args, env, cwd: ctx.pod_dir.clone() })
}
