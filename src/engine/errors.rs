//! The engine's error bodies, exactly as Camunda 7 engine-rest sends them.
//!
//! Every failed call answers `{ "type": "<ExceptionClass>", "message": "…", "code": null }`;
//! deployment parse errors add `details`. Handlers return [`ApiError`]; the class names are the
//! ones the real engine uses for the same situation, so a client tested here sees real bodies.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One failed REST call: HTTP status, Java exception class name and message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind} ({status}): {message}")]
pub struct ApiError {
    /// HTTP status of the answer.
    pub status: StatusCode,
    /// The `type` field: the simple name of the exception class Camunda would throw.
    pub kind: &'static str,
    /// The `message` field.
    pub message: String,
    /// Extra `details` (deployment parse errors only).
    pub details: Option<Value>,
}

impl ApiError {
    /// Builds an error with an explicit status and exception class.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            details: None,
        }
    }

    /// 400 `InvalidRequestException`: the request itself is wrong (bad JSON, bad parameter).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequestException", message)
    }

    /// 404 `InvalidRequestException`: used by GET-by-id resources (`/process-instance/{id}`, …).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "InvalidRequestException", message)
    }

    /// `RestException` with any status: what the external-task resource and the
    /// process-definition-by-key resource wrap engine exceptions into.
    pub fn rest(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, "RestException", message)
    }

    /// 500 `ProcessEngineException`: the process could not continue (e.g. no outgoing flow).
    pub fn engine(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ProcessEngineException",
            message,
        )
    }

    /// 400 `ParseException` with per-resource `details` (deployment of an invalid model).
    pub fn parse(message: impl Into<String>, details: Value) -> Self {
        Self {
            details: Some(details),
            ..Self::new(StatusCode::BAD_REQUEST, "ParseException", message)
        }
    }

    /// The JSON body Camunda sends for this error.
    pub fn body(&self) -> Value {
        let mut body = json!({ "type": self.kind, "message": self.message, "code": null });
        if let (Some(details), Some(map)) = (&self.details, body.as_object_mut()) {
            map.insert("details".to_owned(), details.clone());
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// Result of every engine operation that a REST call maps onto.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_carry_details_and_null_code() {
        let err = ApiError::parse("bad", json!({"a.bpmn": {"errors": [], "warnings": []}}));
        let body = err.body();
        assert_eq!(body["type"], "ParseException");
        assert_eq!(body["code"], Value::Null);
        assert!(body["details"]["a.bpmn"]["errors"].is_array());
        assert!(ApiError::invalid("x").body().get("details").is_none());
    }
}
