//! Discovery documents: `/version`, `/api`, `/apis`, `/api/v1`, `/apis/{g}/{v}`.

use serde_json::{Value, json};

use super::resources::{self, ALL};

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-shoal-standin",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1" }],
    })
}

pub fn groups() -> Value {
    let groups: Vec<Value> = resources::group_versions()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| {
            let gv = json!({ "groupVersion": format!("{g}/{v}"), "version": v });
            json!({ "name": g, "versions": [gv.clone()], "preferredVersion": gv })
        })
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// The resource list of one group version; `None` if it is not served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut list = Vec::new();
    for r in ALL.iter().filter(|r| r.group == group && r.version == version) {
        let verbs = json!(["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]);
        list.push(json!({
            "name": r.plural, "singularName": r.kind.to_lowercase(), "namespaced": r.namespaced, "kind": r.kind, "verbs": verbs,
        }));
        if r.status {
            list.push(json!({ "name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"] }));
        }
        if r.scale {
            list.push(json!({
                "name": format!("{}/scale", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": "Scale",
                "group": "autoscaling", "version": "v1", "verbs": ["get", "patch", "update"],
            }));
        }
    }
    if list.is_empty() {
        return None;
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list }))
}
