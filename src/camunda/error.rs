//! The engine's error bodies (`{type, message, code}`) as typed errors.

use serde_json::Value;

/// A failed engine call.
#[derive(Debug, thiserror::Error)]
pub enum CamundaError {
    /// The engine answered with an error status and (usually) an error body.
    #[error("{method} {path}: engine answered {status} {kind}: {message}")]
    Engine {
        method: &'static str,
        /// Path below the base URL, e.g. `/external-task/abc/complete`.
        path: String,
        status: u16,
        /// The body's `type` (exception class), or empty.
        kind: String,
        /// The body's `message`, or the raw body.
        message: String,
        /// The body's `code`.
        code: Option<i64>,
        /// The body's `details` (deployment parse errors), as sent. Boxed to keep the error small.
        details: Option<Box<Value>>,
    },
    /// No answer: connection refused, reset, timed out.
    #[error("{method} {path}: {source}")]
    Transport {
        method: &'static str,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    /// The answer was not what the API documents.
    #[error("{method} {path}: unexpected response: {message}")]
    Decode {
        method: &'static str,
        path: String,
        message: String,
    },
    /// The configuration of the client is unusable (bad URL, bad header value).
    #[error("camunda client: {0}")]
    Config(String),
}

impl CamundaError {
    /// HTTP status of an engine error.
    pub fn status(&self) -> Option<u16> {
        match self {
            CamundaError::Engine { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Worth retrying with backoff: 5xx, or no answer at all.
    pub fn is_retryable(&self) -> bool {
        match self {
            CamundaError::Engine { status, .. } => *status >= 500,
            CamundaError::Transport { .. } => true,
            CamundaError::Decode { .. } | CamundaError::Config(_) => false,
        }
    }

    /// 404: the task (or instance) is gone.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}
