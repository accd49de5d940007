//! The `Status` object every failed request is answered with, shaped as upstream's
//! `meta/v1.Status` (kubectl prints `Error from server (<reason>): <message>`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

/// Boxed: it travels in every `Err` of the request path, which should stay one word wide.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Status(Box<StatusBody>);

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusBody {
    kind: &'static str,
    api_version: &'static str,
    metadata: Map<String, Value>,
    status: &'static str,
    message: String,
    reason: &'static str,
    /// Always present, even empty: `kubectl debug` dereferences it on a 404.
    details: Map<String, Value>,
    code: u16,
}

impl Status {
    pub fn failure(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self(Box::new(StatusBody {
            kind: "Status",
            api_version: "v1",
            metadata: Map::new(),
            status: "Failure",
            message: message.into(),
            reason,
            details: Map::new(),
            code: code.as_u16(),
        }))
    }

    pub fn unauthorized() -> Self {
        Self::failure(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
    }

    /// Upstream's answer for a path no handler serves.
    pub fn path_not_found() -> Self {
        Self::failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn code(&self) -> u16 {
        self.0.code
    }

    pub fn reason(&self) -> &'static str {
        self.0.reason
    }

    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// Names the object the failure is about, as upstream's `StatusDetails` (`kind` holds the
    /// resource's plural for most errors, the Kind for `Invalid`).
    pub fn with_details(mut self, name: &str, group: &str, kind: &str) -> Self {
        if !name.is_empty() {
            self.0.details.insert("name".into(), name.into());
        }
        if !group.is_empty() {
            self.0.details.insert("group".into(), group.into());
        }
        self.0.details.insert("kind".into(), kind.into());
        self
    }

    pub fn with_causes(mut self, causes: Vec<Value>) -> Self {
        self.0.details.insert("causes".into(), Value::Array(causes));
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.0.details.insert("retryAfterSeconds".into(), seconds.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::failure(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::failure(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    pub fn method_not_allowed() -> Self {
        Self::failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn expired(message: impl Into<String>) -> Self {
        Self::failure(StatusCode::GONE, "Expired", message)
    }

    pub fn unsupported_media_type(content_type: &str, accepted: &[&str]) -> Self {
        Self::failure(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
        .with_causes(vec![serde_json::json!({"reason": "", "message": content_type})])
    }

    pub fn not_acceptable(accepted: &[&str]) -> Self {
        Self::failure(
            StatusCode::NOT_ACCEPTABLE,
            "NotAcceptable",
            format!("only the following media types are accepted: {}", accepted.join(", ")),
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::failure(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::failure(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::failure(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", message)
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::failure(StatusCode::GATEWAY_TIMEOUT, "Timeout", message)
    }

    /// The serialized form, for embedding in watch `ERROR` events.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl IntoResponse for Status {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.0.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, axum::Json(self)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_like_upstream() {
        let json = serde_json::to_value(Status::path_not_found()).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "the server could not find the requested resource",
                "reason": "NotFound", "details": {}, "code": 404
            })
        );
    }
}
