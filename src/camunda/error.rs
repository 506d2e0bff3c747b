//! The engine's error bodies (`{type, message, code}`) as typed errors, and calls that got no
//! answer said plainly: `connection refused`, `timed out after 30s`, `the connection was reset`,
//! `the host name could not be resolved`, … then the innermost cause, never reqwest's bare
//! "error sending request".

use std::error::Error as _;
use std::io;
use std::time::Duration;

use serde_json::Value;

/// A failed engine call.
#[derive(Debug, thiserror::Error)]
pub enum CamundaError {
    /// The engine answered with an error status and (usually) an error body.
    #[error(
        "{method} {path}: engine answered {status}{}: {message}",
        with_space(kind)
    )]
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
    #[error("{method} {path}: {cause}")]
    Transport {
        method: &'static str,
        path: String,
        /// What happened, in plain words, from [`describe_transport`].
        cause: String,
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

    /// 404 with the engine's own error body: the task (or instance) is gone. A 404 without one
    /// (a proxy or ingress with no engine behind it during a rollout, a wrong context path)
    /// says nothing about the task.
    pub fn is_not_found(&self) -> bool {
        matches!(self, CamundaError::Engine { status: 404, kind, .. } if !kind.is_empty())
    }

    /// 400 because another worker holds the task ("… cannot be completed by worker 'a'. It is
    /// locked by worker 'b'."), as opposed to a 400 about the request's content.
    pub fn is_lock_conflict(&self) -> bool {
        matches!(self, CamundaError::Engine { status: 400, message, .. } if message.contains("by worker"))
    }

    /// The exception class the engine named (`OptimisticLockingException`, …), or "".
    pub fn kind(&self) -> &str {
        match self {
            CamundaError::Engine { kind, .. } => kind,
            _ => "",
        }
    }
}

/// ` kind`, or nothing for an empty kind (no `type` in the body).
fn with_space(kind: &str) -> String {
    if kind.is_empty() {
        String::new()
    } else {
        format!(" {kind}")
    }
}

/// What went wrong with a call that got no (whole) answer, in plain words for an operator,
/// followed by the innermost cause: walks the error's source chain for the I/O error kind,
/// DNS failures and connections closed half-way. `timeout` is the limit the call had.
pub fn describe_transport(error: &reqwest::Error, timeout: Duration) -> String {
    let chain: Vec<&(dyn std::error::Error + 'static)> =
        std::iter::successors(error.source(), |e| (*e).source()).collect();
    let io_kind = chain
        .iter()
        .find_map(|e| e.downcast_ref::<io::Error>())
        .map(io::Error::kind);
    let text = chain
        .iter()
        .map(|e| e.to_string().to_lowercase())
        .collect::<Vec<_>>()
        .join(": ");
    let plain = if error.is_timeout() || io_kind == Some(io::ErrorKind::TimedOut) {
        format!("timed out after {}", humantime::format_duration(timeout))
    } else {
        match io_kind {
            Some(io::ErrorKind::ConnectionRefused) => {
                "connection refused: nothing listens at that address"
            }
            Some(io::ErrorKind::ConnectionReset) => "the connection was reset",
            Some(io::ErrorKind::ConnectionAborted) => "the connection was aborted",
            Some(io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof) => {
                "the server closed the connection before answering"
            }
            Some(io::ErrorKind::HostUnreachable) => "the host is unreachable",
            Some(io::ErrorKind::NetworkUnreachable) => "the network is unreachable",
            _ if text.contains("dns error") || text.contains("failed to lookup address") => {
                "the host name could not be resolved (DNS)"
            }
            _ if text.contains("connection closed before message completed") => {
                "the server closed the connection before answering"
            }
            _ if text.contains("certificate") || text.contains("tls") => "the TLS handshake failed",
            _ if error.is_connect() => "could not connect",
            _ if error.is_body() || error.is_decode() => "the answer could not be read whole",
            _ => "the request could not be sent",
        }
        .to_owned()
    };
    match chain.last().map(|e| e.to_string()) {
        Some(cause) if !cause.is_empty() => format!("{plain}; cause: {cause}"),
        _ => plain,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::camunda::{CamundaClient, ClientSettings};

    fn client(url: &str, timeout: Duration) -> CamundaClient {
        CamundaClient::new(ClientSettings {
            url: format!("{url}/engine-rest"),
            auth: None,
            worker_id: "w".into(),
            request_timeout: timeout,
        })
        .expect("client")
    }

    #[test]
    fn an_error_without_a_type_reads_cleanly() {
        let err = super::super::client::tests_support::engine_error_for(503, b"");
        assert_eq!(
            err.to_string(),
            "POST /external-task/t/complete: engine answered 503: Service Unavailable"
        );
        let typed = super::super::client::tests_support::engine_error_for(
            404,
            br#"{"type": "RestException", "message": "gone"}"#,
        );
        assert_eq!(
            typed.to_string(),
            "POST /external-task/t/complete: engine answered 404 RestException: gone"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_says_so() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let err = client(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5))
            .version()
            .await
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("GET /version: "), "{err}");
        assert!(err.contains("connection refused"), "{err}");
    }

    #[tokio::test]
    async fn a_timeout_says_so_with_the_limit() {
        let server = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::any())
            .respond_with(
                wiremock::ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"version": "7.23.0"}))
                    .set_delay(Duration::from_secs(5)),
            )
            .mount(&server)
            .await;
        let err = client(&server.uri(), Duration::from_millis(200))
            .version()
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("timed out after 200ms"), "{err}");
    }

    #[tokio::test]
    async fn a_connection_closed_without_an_answer_says_so() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let closer = tokio::spawn(async move {
            // Take the request, answer nothing, hang up.
            if let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await;
            }
        });
        let err = client(&format!("http://{addr}"), Duration::from_secs(5))
            .version()
            .await
            .unwrap_err()
            .to_string();
        closer.await.expect("closer");
        assert!(
            err.contains("closed the connection before answering"),
            "{err}"
        );
    }
}
