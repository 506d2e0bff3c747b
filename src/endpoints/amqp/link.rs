//! The endpoint's one connection to the broker: made lazily, made again when lost, and the one
//! place lapin's errors are given a meaning.
//!
//! ```text
//! channel() ─► connection alive? ── yes ─► create a channel
//!                   │ no (none yet, closed, errored)
//!                   └─► connect (bounded by the endpoint's timeout; one caller at a time,
//!                       the others wait for its result) ─► create a channel
//! ```
//!
//! A broker down at start-up is not an error here until someone calls: the probe then fails
//! (the breaker opens), a call fails with the transient class `connect`, and the next call or
//! probe connects again.

use std::sync::Arc;
use std::time::Duration;

use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Channel, Connection, ConnectionProperties, ErrorKind};

use crate::config::Secret;
use crate::config::secret::register;
use crate::endpoints::{EndpointError, class};

/// The URL as lapin takes it, or why it cannot be used. Messages never quote the URL: it holds
/// the password.
pub(super) fn parse_url(url: &Secret) -> Result<AMQPUri, String> {
    let text = url.expose().trim();
    if text.is_empty() {
        return Err("is required, e.g. `amqp://user:password@host:5672/%2f`".into());
    }
    if super::has_syntax(text) {
        return Err(
            "must be a URL, not a template (use `${VAR}` for values from the environment)".into(),
        );
    }
    let parsed = url::Url::parse(text).map_err(|e| {
        format!("is not a URL ({e}); expected `amqp://user:password@host:port/vhost`")
    })?;
    match parsed.scheme() {
        "amqp" => {}
        "amqps" => {
            return Err(
                "`amqps://` (TLS) is not built into this procos: use `amqp://` on a \
                        trusted network or through a TLS-terminating proxy"
                    .into(),
            );
        }
        other => return Err(format!("has scheme `{other}`; expected `amqp://`")),
    }
    let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) else {
        return Err("has no host; expected `amqp://user:password@host:port/vhost`".into());
    };
    let mut uri: AMQPUri = text
        .parse()
        .map_err(|_| "is not a valid AMQP URL (check the port, the percent-encoding of the vhost and the query parameters)".to_string())?;
    // lapin reads the host through `Url::domain`, which is empty for an IP address (it would
    // then connect to `localhost`): take the host as written.
    uri.authority.host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if uri.scheme != AMQPScheme::AMQP {
        return Err("has an unsupported scheme; expected `amqp://`".into());
    }
    Ok(uri)
}

/// Which step of a call failed: what a lapin error means depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Connecting or opening the channel: nothing was published yet.
    Setup,
    /// Publishing, waiting for the confirm or for the reply: the message may have been taken.
    Exchange,
}

/// The lazy, self-healing connection of one endpoint.
pub(super) struct Link {
    uri: AMQPUri,
    /// `amqp://***@host:port/vhost`: how messages name the broker.
    server: String,
    /// The endpoint's name, shown by the broker as the connection's name.
    name: String,
    connect_timeout: Duration,
    /// The current connection; `None` until the first use. The lock is held while connecting,
    /// so concurrent callers share one attempt instead of each opening a connection.
    current: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

impl Link {
    /// A link that connects on first use; the password is registered as a secret, so no
    /// message can show it (lapin's own error texts included).
    pub(super) fn new(name: &str, uri: AMQPUri, connect_timeout: Duration) -> Self {
        register(&uri.authority.userinfo.password);
        let vhost = if uri.vhost == "/" {
            "%2f".to_string()
        } else {
            uri.vhost.clone()
        };
        Self {
            server: format!(
                "amqp://***@{}:{}/{vhost}",
                uri.authority.host, uri.authority.port
            ),
            uri,
            name: name.to_string(),
            connect_timeout,
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// The broker, for messages (no credentials).
    pub(super) fn server(&self) -> &str {
        &self.server
    }

    /// The live connection, connecting if there is none or it was lost.
    pub(super) async fn connection(&self) -> Result<Arc<Connection>, EndpointError> {
        let mut current = self.current.lock().await;
        if let Some(conn) = current.as_ref()
            && conn.status().connected()
        {
            return Ok(conn.clone());
        }
        if current.take().is_some() {
            tracing::info!(endpoint = %self.name, server = %self.server, "AMQP connection lost; connecting again.");
        }
        let properties = ConnectionProperties::default()
            .with_connection_name(format!("procos {}", self.name).into());
        let connect = Connection::connect_uri(self.uri.clone(), properties);
        let conn = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(conn)) => Arc::new(conn),
            Ok(Err(e)) => return Err(amqp_error(&self.server, Phase::Setup, &e, "")),
            Err(_) => {
                return Err(EndpointError::transient(format!(
                    "AMQP {}: no connection within {}",
                    self.server,
                    humantime::format_duration(self.connect_timeout)
                ))
                .code(class::CONNECT));
            }
        };
        tracing::info!(endpoint = %self.name, server = %self.server, "AMQP connection open.");
        *current = Some(conn.clone());
        Ok(conn)
    }

    /// A new channel on the live connection.
    pub(super) async fn channel(&self) -> Result<Channel, EndpointError> {
        let conn = self.connection().await?;
        conn.create_channel()
            .await
            .map_err(|e| amqp_error(&self.server, Phase::Setup, &e, ""))
    }
}

/// What a lapin error means for the task. Refused credentials or vhost: permanent `auth`; a
/// missing exchange: permanent `config`; anything else before publishing: transient `connect`
/// (nothing was sent, even a retry of a side-effecting call is safe); after: transient
/// `network` (the broker may have taken the message).
pub(super) fn amqp_error(
    server: &str,
    phase: Phase,
    error: &lapin::Error,
    exchange: &str,
) -> EndpointError {
    let message = format!("AMQP {server}: {error}");
    if let ErrorKind::ProtocolError(amqp) = error.kind() {
        match amqp.kind() {
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)
            | AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) => {
                return EndpointError::permanent(format!(
                    "{message} (the broker refused the credentials or the vhost)"
                ))
                .code(class::AUTH);
            }
            AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND) => {
                return EndpointError::permanent(format!(
                    "{message} (does exchange `{exchange}` exist?)"
                ))
                .code(class::CONFIG);
            }
            _ => {}
        }
    }
    if let ErrorKind::InvalidProtocolVersion(_) = error.kind() {
        return EndpointError::permanent(message).code(class::CONFIG);
    }
    match phase {
        Phase::Setup => EndpointError::transient(message).code(class::CONNECT),
        Phase::Exchange => EndpointError::transient(message).code(class::NETWORK),
    }
}
