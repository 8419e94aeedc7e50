//! The `scale` subresource: an autoscaling/v1 `Scale` view of `.spec.replicas`
//! (the `status` subresource is [`super::store::Part::Status`]).

use serde_json::{Value, json};

use super::error::ApiError;
use super::meta::meta_str;
use super::resources::ResourceType;

/// The `Scale` of `obj`.
pub fn scale_of(res: &ResourceType, obj: &Value) -> Value {
    let selector = if res.plural == "statefulsets" {
        obj.pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
            .map(|labels| labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(","))
    } else {
        obj.pointer("/status/selector").and_then(Value::as_str).map(str::to_string)
    };
    let mut status = json!({ "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0) });
    if let Some(selector) = selector {
        status["selector"] = json!(selector);
    }
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": meta_str(obj, "name"),
            "namespace": meta_str(obj, "namespace"),
            "resourceVersion": meta_str(obj, "resourceVersion"),
            "uid": meta_str(obj, "uid"),
            "creationTimestamp": meta_str(obj, "creationTimestamp"),
        },
        "spec": { "replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0) },
        "status": status,
    })
}

/// Sets `obj`'s `.spec.replicas` from the edited `scale`; a stale
/// `metadata.resourceVersion` in it is left for the store to refuse.
pub fn set_scale(res: &ResourceType, obj: &mut Value, scale: &Value) -> Result<(), ApiError> {
    let name = meta_str(obj, "name").unwrap_or_default().to_string();
    let replicas = scale
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::invalid(res, &name, "spec.replicas: must be a non-negative integer"))?;
    if let Some(rv) = scale.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
        obj["metadata"]["resourceVersion"] = json!(rv);
    }
    if !obj.get("spec").is_some_and(Value::is_object) {
        obj["spec"] = json!({});
    }
    obj["spec"]["replicas"] = json!(replicas);
    Ok(())
}
