//! The engine's error bodies, exactly as Camunda 7 engine-rest sends them.
//!
//! Every failed call answers `{ "type": "<ExceptionClass>", "message": "…", "code": … }`;
//! deployment parse errors add `details`. Handlers return [`ApiError`]; the class names are the
//! ones the real engine uses for the same situation, so a client tested here sees real bodies.
//!
//! `code` follows engine-rest's `ExceptionHandlerHelper.provideExceptionCode`: an engine
//! exception (`ProcessEngineException` and its subclasses) carries its error code — `0`
//! (`BuiltinExceptionCode.FALLBACK`) for everything this engine raises —, so does a
//! `RestException` that wraps one ([`ApiError::wrapping_engine_exception`]); an error the REST layer makes
//! itself (`InvalidRequestException`, JAX-RS `NotFoundException`, a bare `RestException`)
//! carries `null`.

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
    /// The `code` field: the engine exception's error code, `None` (`null`) for errors the REST
    /// layer raises without an engine exception behind them.
    pub code: Option<i32>,
}

/// Camunda's `BuiltinExceptionCode.FALLBACK`: the code of every engine exception that has no
/// more specific one (optimistic locking and database errors have their own; this engine raises
/// none of those).
pub const FALLBACK_CODE: i32 = 0;

/// Exception classes that are engine exceptions (`ProcessEngineException` subclasses): their
/// error body carries a code. Every other class is a REST-layer exception without one.
const ENGINE_EXCEPTIONS: [&str; 5] = [
    "ProcessEngineException",
    "BadUserRequestException",
    "NotValidException",
    "NullValueException",
    "ParseException",
];

impl ApiError {
    /// Builds an error with an explicit status and exception class; an engine exception class
    /// gets the fallback code `0`, a REST-layer class `null`.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            details: None,
            code: ENGINE_EXCEPTIONS.contains(&kind).then_some(FALLBACK_CODE),
        }
    }

    /// Marks a REST-layer exception as wrapping an engine exception (`new RestException(status,
    /// engineException, message)`): the body then carries the engine exception's code.
    pub fn wrapping_engine_exception(self) -> Self {
        Self {
            code: Some(FALLBACK_CODE),
            ..self
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
        let mut body = json!({ "type": self.kind, "message": self.message, "code": self.code });
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
    fn parse_errors_carry_details_and_the_engine_code() {
        let err = ApiError::parse("bad", json!({"a.bpmn": {"errors": [], "warnings": []}}));
        let body = err.body();
        assert_eq!(body["type"], "ParseException");
        assert_eq!(body["code"], 0, "ParseException is an engine exception");
        assert!(body["details"]["a.bpmn"]["errors"].is_array());
        assert!(ApiError::invalid("x").body().get("details").is_none());
    }

    #[test]
    fn engine_exceptions_carry_code_zero_and_rest_layer_errors_null() {
        assert_eq!(ApiError::engine("x").body()["code"], 0);
        assert_eq!(ApiError::invalid("x").body()["code"], Value::Null);
        assert_eq!(ApiError::not_found("x").body()["code"], Value::Null);
        let bare = ApiError::rest(StatusCode::NOT_FOUND, "x");
        assert_eq!(bare.body()["code"], Value::Null);
        assert_eq!(bare.wrapping_engine_exception().body()["code"], 0);
    }
}
