//! `email`: one message per task, sent over SMTP (lettre: tokio, rustls with ring, pooled).
//!
//! ```text
//! (inside the layer stack: a permit of `max_concurrency` is already held)
//! task ─► render from, to/cc/bcc, reply_to, subject, text/html, attachments (templates)
//!      ─► addresses valid? ── no ─► BPMN error `invalid_address_error_code` naming the address
//!      ─► load attachments (File variables) ─► Message-ID <task id@domain> ─► send
//!   250 ─► Ok {"message_id": "<…>", "accepted": ["a@x", …]}
//!   4xx ─► Transient `smtp_<code>` (e.g. `smtp_451`; `bpmn_errors` may map the family `smtp_4xx`)
//!   5xx ─► Permanent `smtp_<code>`, the server's reply in details
//!   connection refused / not made ─► Transient `connect` (nothing sent) · closed during the
//!   exchange ─► Transient `network`; no answer in `timeout` ─► Transient `timeout`
//!   TLS handshake fails / STARTTLS not offered ─► Permanent `tls` / `smtp_client` (no plain text)
//! ```
//!
//! The `Message-ID` is derived from the external task id (and an `X-Procos-Task-Id` header carries
//! it too), so a message sent again after a lock expiry is recognisable as the same message.
//! Bcc recipients are in the envelope only, never in the headers. Credentials are [`Secret`]s.
//! What a rendered recipient field may hold: see `email/address.rs`.

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::{AsyncSmtpTransportBuilder, PoolConfig};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;
use serde_json::{Value, json};

use super::stack::{self, CircuitConfig, Policy, ProbeConfig, RetryBudgetConfig, RetryPolicy};
use super::template::{JsonTemplate, TemplateContext, TemplateError};
use super::{Endpoint, EndpointError, EndpointReply, EndpointRequest};
use crate::config::Secret;
use crate::endpoints::class;

mod address;
mod compose;

use address::{InvalidAddress, mailboxes};

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Plain text; only for a relay on the same host or a trusted network (e.g. a mail catcher).
    None,
    /// Plain text upgraded with STARTTLS, which is required (default port 587).
    #[default]
    Starttls,
    /// TLS from the first byte, "implicit TLS" (default port 465).
    Tls,
}

impl TlsMode {
    /// The usual port for this mode.
    fn default_port(self) -> u16 {
        match self {
            TlsMode::None => 25,
            TlsMode::Starttls => 587,
            TlsMode::Tls => 465,
        }
    }
}

/// `type: email`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// SMTP server host name (no scheme, no port).
    pub host: String,
    /// SMTP port; by default 25, 587 or 465 after `tls`.
    #[serde(default)]
    pub port: Option<u16>,
    /// `none`, `starttls` (default) or `tls`.
    #[serde(default)]
    pub tls: TlsMode,
    /// SMTP user, e.g. `${SMTP_USER:-}`; empty or absent means no AUTH.
    #[serde(default)]
    pub username: Option<Secret>,
    /// SMTP password, e.g. `${SMTP_PASSWORD:-}`; required when `username` is set.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Sender template, e.g. `Procos <procos@example.com>`.
    pub from: String,
    /// Reply-To template; by default the task's `reply_to` variable, if any.
    #[serde(default = "default_reply_to")]
    pub reply_to: String,
    /// Recipients: a template (string) or a list of them; by default the `to` variable.
    #[serde(default = "default_to")]
    pub to: Value,
    /// Cc recipients; by default the `cc` variable, if any.
    #[serde(default = "default_cc")]
    pub cc: Value,
    /// Bcc recipients (envelope only); by default the `bcc` variable, if any.
    #[serde(default = "default_bcc")]
    pub bcc: Value,
    /// Subject template; by default the `subject` variable.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Plain-text body template; by default the `text` variable, if any.
    #[serde(default = "default_text")]
    pub text: String,
    /// HTML body template; by default the `html` variable, if any. At least one body must render.
    #[serde(default = "default_html")]
    pub html: String,
    /// Names of File variables to attach (a template or list); by default the `attachments`
    /// variable, if any.
    #[serde(default = "default_attachments")]
    pub attachments: Value,
    /// Bound on one send: connecting, every SMTP command, and the whole exchange.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Messages in flight through this endpoint (and pooled SMTP connections).
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// BPMN error raised when a recipient is not a valid address.
    #[serde(default = "default_invalid_address_error_code")]
    pub invalid_address_error_code: String,
    /// Right-hand side of the derived `Message-ID: <task-id@domain>`.
    #[serde(default = "default_message_id_domain")]
    pub message_id_domain: String,
    /// Extra sends after a failure (default 0): only when the connection was refused before
    /// anything was sent — a mail must never go out twice.
    #[serde(default)]
    pub max_retries: u32,
    /// First backoff delay; doubles per retry.
    #[serde(default = "stack::default_retry_backoff", with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// How many retries the calls may add (a share of the calls).
    #[serde(default)]
    pub retry_budget: RetryBudgetConfig,
    /// When to pause sending through a failing server.
    #[serde(default)]
    pub circuit: CircuitConfig,
    /// The background probe: connect and SMTP `NOOP` (on by default).
    #[serde(default)]
    pub probe: ProbeConfig,
}

fn default_reply_to() -> String {
    "{{ reply_to | default(none) }}".into()
}
fn default_to() -> Value {
    json!("{{ to }}")
}
fn default_cc() -> Value {
    json!("{{ cc | default(none) }}")
}
fn default_bcc() -> Value {
    json!("{{ bcc | default(none) }}")
}
fn default_subject() -> String {
    "{{ subject }}".into()
}
fn default_text() -> String {
    "{{ text | default(none) }}".into()
}
fn default_html() -> String {
    "{{ html | default(none) }}".into()
}
fn default_attachments() -> Value {
    json!("{{ attachments | default(none) }}")
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_concurrency() -> usize {
    4
}
fn default_invalid_address_error_code() -> String {
    "INVALID_ADDRESS".into()
}
fn default_message_id_domain() -> String {
    "procos".into()
}

/// Problems found in a config: (path suffix such as `from`, message).
type Problems = Vec<(String, String)>;

/// The per-task templates, compiled once.
#[derive(Debug)]
struct Templates {
    from: JsonTemplate,
    reply_to: JsonTemplate,
    to: JsonTemplate,
    cc: JsonTemplate,
    bcc: JsonTemplate,
    subject: JsonTemplate,
    text: JsonTemplate,
    html: JsonTemplate,
    attachments: JsonTemplate,
}

impl EmailConfig {
    /// How the stack wraps this endpoint: `max_concurrency` also sizes the SMTP pool.
    pub fn policy(&self) -> Policy {
        Policy {
            timeout: Some(self.timeout + stack::TIMEOUT_GRACE),
            max_concurrency: Some(self.max_concurrency),
            circuit: self.circuit.clone(),
            retry: RetryPolicy::new(self.max_retries, self.retry_backoff, &self.retry_budget),
            probe: self.probe.schedule(true),
        }
    }

    /// Every problem of this config (templates compile, host/port/limits/credentials are sane, a
    /// literal `from` is an address), as (path suffix, message). Pure: no network.
    pub fn validate(&self) -> Vec<(String, String)> {
        match self.compile("") {
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        }
    }

    /// Compiles the templates, naming them `<prefix><field>`; collects every problem.
    fn compile(&self, prefix: &str) -> Result<Templates, Problems> {
        let mut problems = Problems::new();
        let mut problem = |field: &str, message: String| problems.push((field.into(), message));

        let host = self.host.trim();
        if host.is_empty() || host.contains("://") || host.contains(char::is_whitespace) {
            problem(
                "host",
                // Not echoed: a URL here may carry credentials.
                "must be a host name, without scheme, credentials or port".into(),
            );
        }
        if self.port == Some(0) {
            problem("port", "must be between 1 and 65535".into());
        }
        let set = |s: &Option<Secret>| s.as_ref().is_some_and(|s| !s.is_empty());
        match (set(&self.username), set(&self.password)) {
            (true, false) => problem("password", "is required when `username` is set".into()),
            (false, true) => problem("username", "is required when `password` is set".into()),
            _ => {}
        }
        if !crate::endpoints::template::has_syntax(&self.from)
            && let Err(e) = mailboxes("from", &Value::String(self.from.clone()))
                .and_then(|m| single_from(&self.from, m))
        {
            problem("from", e.to_string());
        }
        for (field, message) in stack::validate(
            Some(("timeout", self.timeout)),
            Some(self.max_concurrency),
            &self.circuit,
            &self.probe,
            Some(&self.retry_budget),
        ) {
            problem(&field, message);
        }
        let code = &self.invalid_address_error_code;
        if code.trim().is_empty() || code.contains(char::is_whitespace) {
            problem(
                "invalid_address_error_code",
                format!("`{code}` must be a non-empty BPMN error code without spaces"),
            );
        }
        let domain = &self.message_id_domain;
        if domain.is_empty()
            || !domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            problem(
                "message_id_domain",
                format!("`{domain}` must be a domain name (letters, digits, `-`, `.`)"),
            );
        }

        let mut compile = |field: &str, value: &Value| {
            JsonTemplate::compile(&format!("{prefix}{field}"), value)
                .map_err(|e| problems.push((field.into(), e.to_string())))
                .ok()
        };
        let string = |s: &String| Value::String(s.clone());
        let templates = (
            compile("from", &string(&self.from)),
            compile("reply_to", &string(&self.reply_to)),
            compile("to", &self.to),
            compile("cc", &self.cc),
            compile("bcc", &self.bcc),
            compile("subject", &string(&self.subject)),
            compile("text", &string(&self.text)),
            compile("html", &string(&self.html)),
            compile("attachments", &self.attachments),
        );
        match templates {
            (
                Some(from),
                Some(reply_to),
                Some(to),
                Some(cc),
                Some(bcc),
                Some(subject),
                Some(text),
                Some(html),
                Some(attachments),
            ) if problems.is_empty() => Ok(Templates {
                from,
                reply_to,
                to,
                cc,
                bcc,
                subject,
                text,
                html,
                attachments,
            }),
            _ => Err(problems),
        }
    }

    /// The lettre transport builder (no I/O, no runtime needed).
    fn transport(&self) -> Result<AsyncSmtpTransportBuilder, String> {
        let host = self.host.trim();
        let tls = match self.tls {
            TlsMode::None => Tls::None,
            mode => {
                let params = TlsParameters::new(host.to_string())
                    .map_err(|e| format!("cannot set up TLS for `{host}`: {e}"))?;
                if mode == TlsMode::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let pool_size = u32::try_from(self.max_concurrency).unwrap_or(u32::MAX);
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(self.port.unwrap_or_else(|| self.tls.default_port()))
            .tls(tls)
            .timeout(Some(self.timeout))
            .pool_config(PoolConfig::new().max_size(pool_size));
        if let (Some(user), Some(password)) = (&self.username, &self.password)
            && !user.is_empty()
        {
            builder = builder.credentials(Credentials::new(
                user.expose().to_string(),
                password.expose().to_string(),
            ));
        }
        Ok(builder)
    }
}

/// `from` must be exactly one mailbox.
fn single_from(text: &str, mut list: Vec<Mailbox>) -> Result<Mailbox, InvalidAddress> {
    match (list.pop(), list.is_empty()) {
        (Some(mailbox), true) => Ok(mailbox),
        _ => Err(InvalidAddress {
            field: "from",
            entry: text.to_string(),
        }),
    }
}

/// The email endpoint: compiled templates and one pooled SMTP transport, built once.
pub struct EmailEndpoint {
    name: String,
    /// `host:port`, for messages.
    server: String,
    templates: Templates,
    /// Kept until the first send: building the pooled transport needs a tokio runtime.
    builder: AsyncSmtpTransportBuilder,
    transport: OnceLock<AsyncSmtpTransport<Tokio1Executor>>,
    timeout: Duration,
    invalid_address_error_code: String,
    message_id_domain: String,
}

impl fmt::Debug for EmailEndpoint {
    /// Leaves out the transport builder, which holds the credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailEndpoint")
            .field("name", &self.name)
            .field("server", &self.server)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl EmailEndpoint {
    /// Builds it from its config: compiles templates, prepares TLS and the transport.
    pub fn new(name: &str, config: &EmailConfig) -> Result<Self, EndpointError> {
        let misconfigured = |problems: &[String]| {
            EndpointError::permanent(format!(
                "email endpoint `{name}` is misconfigured: {}",
                problems.join("; ")
            ))
            .code(class::CONFIG)
        };
        let templates = config
            .compile(&format!("endpoints.{name}."))
            .map_err(|problems| {
                let list: Vec<String> = problems.iter().map(|(p, m)| format!("{p}: {m}")).collect();
                misconfigured(&list)
            })?;
        let builder = config
            .transport()
            .map_err(|e| misconfigured(std::slice::from_ref(&e)))?;
        Ok(Self {
            name: name.to_string(),
            server: format!(
                "{}:{}",
                config.host.trim(),
                config.port.unwrap_or_else(|| config.tls.default_port())
            ),
            templates,
            builder,
            transport: OnceLock::new(),
            timeout: config.timeout,
            invalid_address_error_code: config.invalid_address_error_code.clone(),
            message_id_domain: config.message_id_domain.clone(),
        })
    }

    /// The pooled transport; built on first use, inside the runtime.
    fn transport(&self) -> &AsyncSmtpTransport<Tokio1Executor> {
        self.transport.get_or_init(|| self.builder.clone().build())
    }

    /// An invalid recipient as the configured BPMN error.
    fn invalid_address(&self, error: &InvalidAddress) -> EndpointError {
        EndpointError::business(&self.invalid_address_error_code, error.to_string())
            .code(class::INVALID_ADDRESS)
    }

    /// Sends `message` and turns the server's answer into a reply or a classified error.
    async fn send(
        &self,
        message: Message,
        message_id: String,
    ) -> Result<EndpointReply, EndpointError> {
        // The process sees To and Cc only: Bcc recipients stay out of variables (Cockpit shows
        // them to everyone); their number is reported instead.
        let visible = visible_recipients(&message);
        let envelope = message.envelope().to().len();
        let accepted: Vec<String> = message
            .envelope()
            .to()
            .iter()
            .map(ToString::to_string)
            .filter(|a| visible.contains(a))
            .collect();
        let bcc = envelope.saturating_sub(accepted.len());
        let sent = tokio::time::timeout(self.timeout, self.transport().send(message)).await;
        match sent {
            Ok(Ok(_response)) => Ok(EndpointReply::new(
                json!({"message_id": message_id, "accepted": accepted, "bcc": bcc}),
            )),
            Ok(Err(e)) => Err(smtp_error(&self.server, &e)),
            Err(_) => Err(EndpointError::transient(format!(
                "SMTP {}: no answer within {}",
                self.server,
                humantime::format_duration(self.timeout)
            ))
            .code(class::TIMEOUT)),
        }
    }
}

/// Addresses in the To and Cc headers.
fn visible_recipients(message: &Message) -> Vec<String> {
    use lettre::message::Mailboxes;
    use lettre::message::header::{Cc, To};
    let headers = message.headers();
    let to = headers.get::<To>().map(Mailboxes::from);
    let cc = headers.get::<Cc>().map(Mailboxes::from);
    to.into_iter()
        .chain(cc)
        .flat_map(|boxes| boxes.into_iter().map(|m| m.email.to_string()))
        .collect()
}

/// Maps a lettre SMTP error: 4xx transient, 5xx permanent with the reply as details; TLS
/// failures permanent; connection failures and timeouts transient.
fn smtp_error(server: &str, error: &lettre::transport::smtp::Error) -> EndpointError {
    // lettre's Display includes some of its sources already; add only what is new.
    let mut chain = error.to_string();
    let mut tls_failure = error.is_tls();
    // lettre's `Connection` kind (its Display starts so) is an error while connecting, before
    // any command; a refused connection is one too. Nothing of the message left procos.
    let mut refused = chain.starts_with("Connection error");
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        let text = s.to_string();
        if !chain.contains(&text) {
            chain.push_str(": ");
            chain.push_str(&text);
        }
        // tokio-rustls reports handshake and certificate failures as `InvalidData`.
        tls_failure |= s
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData);
        refused |= s
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
        source = s.source();
    }
    let message = format!("SMTP {server}: {chain}");
    if let Some(code) = error.status() {
        let reply = std::error::Error::source(error)
            .map(|s| format!("{code} {s}"))
            .unwrap_or_else(|| code.to_string());
        let base = if error.is_transient() {
            EndpointError::transient(message)
        } else {
            EndpointError::permanent(message)
        };
        return base.code(format!("smtp_{code}")).details(reply);
    }
    if error.is_timeout() {
        EndpointError::transient(message).code(class::TIMEOUT)
    } else if tls_failure {
        // A certificate or protocol the server will keep presenting: a person must look.
        EndpointError::permanent(message).code(class::TLS)
    } else if error.is_client() {
        // e.g. STARTTLS required but not offered, or no AUTH mechanism in common.
        EndpointError::permanent(message).code(class::SMTP_CLIENT)
    } else if refused {
        EndpointError::transient(message).code(class::CONNECT)
    } else {
        // The connection broke during the exchange: the message may have been taken.
        EndpointError::transient(message).code(class::NETWORK)
    }
}

/// A template error: the config or the task's variables are wrong, retrying will not help.
fn template_error(e: TemplateError) -> EndpointError {
    EndpointError::permanent(e.to_string()).code(class::TEMPLATE)
}

#[async_trait]
impl Endpoint for EmailEndpoint {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "email"
    }

    /// Connects and sends `NOOP` (lettre's `test_connection`).
    async fn probe(&self) -> Result<(), EndpointError> {
        match self.transport().test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(EndpointError::transient(format!(
                "SMTP {}: the server did not answer NOOP",
                self.server
            ))
            .code(class::CONNECT)),
            Err(e) => Err(smtp_error(&self.server, &e)),
        }
    }

    async fn call(&self, request: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
        let ctx = TemplateContext::new(request);
        // The stack's limit (`max_concurrency`) is taken before this call: tasks queued for a
        // slot do not each hold their attachments in memory.
        let work = async {
            let (message, message_id) = compose::message(self, request, &ctx).await?;
            self.send(message, message_id).await
        };
        tokio::select! {
            biased;
            _ = request.cancel.cancelled() => Err(EndpointError::cancelled()),
            result = work => result,
        }
    }
}

#[cfg(test)]
mod tests;
