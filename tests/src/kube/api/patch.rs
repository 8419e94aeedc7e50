//! PATCH bodies: JSON merge patch (RFC 7386), strategic merge patch (treated
//! as a merge patch), JSON patch (RFC 6902) and server-side apply (a deep
//! merge of the applied object: maps merge, lists are replaced).

use serde_json::Value;

use super::error::ApiError;
use super::resources::ResourceType;

/// The kinds of PATCH the stand-in accepts, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Apply,
    Merge,
    Strategic,
    Json,
}

impl PatchKind {
    pub fn from_content_type(content_type: &str) -> Result<PatchKind, ApiError> {
        let mime = content_type.split(';').next().unwrap_or("").trim();
        match mime {
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchKind::Apply),
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            "application/json-patch+json" => Ok(PatchKind::Json),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

/// RFC 7386: maps merge recursively, `null` removes, anything else replaces.
pub fn merge(doc: &mut Value, patch: &Value) {
    json_patch::merge(doc, patch);
}

/// Parses a body that is JSON or YAML (apply bodies are YAML; JSON is YAML too).
pub fn parse_json_or_yaml(body: &[u8]) -> Result<Value, ApiError> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let text = std::str::from_utf8(body).map_err(|e| ApiError::bad_request(format!("the body is not UTF-8: {e}")))?;
    serde_saphyr::from_str::<Value>(text).map_err(|e| ApiError::bad_request(format!("the body is neither JSON nor YAML: {e}")))
}

/// Applies a merge, strategic or JSON patch `body` to `doc` (apply is
/// handled by the store: it may create).
pub fn apply_patch(res: &ResourceType, name: &str, kind: PatchKind, doc: &mut Value, body: &[u8]) -> Result<(), ApiError> {
    match kind {
        PatchKind::Apply | PatchKind::Merge | PatchKind::Strategic => {
            let patch = parse_json_or_yaml(body)?;
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON map"));
            }
            merge(doc, &patch);
            Ok(())
        }
        PatchKind::Json => {
            let mut ops: Vec<Value> =
                serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            // As the API server's JSON patch library does, a `test` of null
            // passes on a path that does not exist (kube-rs's finalizer helper
            // relies on it when an object has no finalizers yet).
            ops.retain(|op| {
                !(op["op"] == "test" && op["value"].is_null() && op["path"].as_str().is_some_and(|p| doc.pointer(p).is_none()))
            });
            let patch: json_patch::Patch =
                serde_json::from_value(Value::Array(ops)).map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(doc, &patch).map_err(|e| ApiError::invalid(res, name, &format!("the JSON patch failed: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::api::resources::CONFIGMAPS;
    use serde_json::json;

    #[test]
    fn patches_apply() {
        let mut doc = json!({"a": {"b": 1, "c": [1, 2]}, "d": 1});
        apply_patch(&CONFIGMAPS, "x", PatchKind::Merge, &mut doc, br#"{"a": {"c": [3], "e": 2}, "d": null}"#).expect("merge");
        assert_eq!(doc, json!({"a": {"b": 1, "c": [3], "e": 2}}));
        apply_patch(&CONFIGMAPS, "x", PatchKind::Apply, &mut doc, b"a:\n  b: 5\n").expect("yaml apply");
        assert_eq!(doc["a"]["b"], 5);
        let failing = br#"[{"op": "test", "path": "/a/b", "value": 6}, {"op": "replace", "path": "/a/b", "value": 7}]"#;
        let err = apply_patch(&CONFIGMAPS, "x", PatchKind::Json, &mut doc, failing).expect_err("test op fails");
        assert_eq!(err.code, 422);
        assert_eq!(doc["a"]["b"], 5, "a failed JSON patch changes nothing");
        assert!(PatchKind::from_content_type("text/plain").is_err());
    }
}
