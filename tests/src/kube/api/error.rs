//! API errors, answered as metav1 `Status` objects.

use serde_json::{Value, json};

use super::resources::ResourceType;

/// A refused request: HTTP code, `Status.reason` and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `Status.details`: (name, group, plural) when the error is about one object.
    pub details: Option<(String, String, String)>,
}

impl ApiError {
    fn about(code: u16, reason: &'static str, res: &ResourceType, name: &str, message: String) -> ApiError {
        ApiError { code, reason, message, details: Some((name.to_string(), res.group.to_string(), res.plural.to_string())) }
    }

    pub fn not_found(res: &ResourceType, name: &str) -> ApiError {
        ApiError::about(404, "NotFound", res, name, format!("{} \"{name}\" not found", res.qualified()))
    }

    pub fn already_exists(res: &ResourceType, name: &str) -> ApiError {
        ApiError::about(409, "AlreadyExists", res, name, format!("{} \"{name}\" already exists", res.qualified()))
    }

    /// An optimistic-concurrency failure (stale resourceVersion or precondition).
    pub fn conflict(res: &ResourceType, name: &str, why: &str) -> ApiError {
        ApiError::about(409, "Conflict", res, name, format!("Operation cannot be fulfilled on {} \"{name}\": {why}", res.qualified()))
    }

    pub fn invalid(res: &ResourceType, name: &str, why: &str) -> ApiError {
        ApiError::about(422, "Invalid", res, name, format!("{} \"{name}\" is invalid: {why}", res.qualified()))
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError { code: 400, reason: "BadRequest", message: message.into(), details: None }
    }

    pub fn path_not_found(path: &str) -> ApiError {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("the server could not find the requested resource ({path})"),
            details: None,
        }
    }

    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError { code: 405, reason: "MethodNotAllowed", message: message.into(), details: None }
    }

    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError {
            code: 415,
            reason: "UnsupportedMediaType",
            message: format!("the body of the request was in an unknown format: {content_type}"),
            details: None,
        }
    }

    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError { code: 410, reason: "Expired", message: message.into(), details: None }
    }

    /// The error as a `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some((name, group, kind)) = &self.details {
            status["details"] = json!({ "name": name, "group": group, "kind": kind });
        }
        status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}
