//! The `Status` object every failed request is answered with, shaped as upstream's
//! `meta/v1.Status` (kubectl prints `Error from server (<reason>): <message>`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
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
        Self {
            kind: "Status",
            api_version: "v1",
            metadata: Map::new(),
            status: "Failure",
            message: message.into(),
            reason,
            details: Map::new(),
            code: code.as_u16(),
        }
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
        self.code
    }
}

impl IntoResponse for Status {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
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
