//! `amqp`: a task's payload published to RabbitMQ (lapin), with publisher confirms, or sent as a
//! request whose correlated reply is the task's result.
//!
//! ```text
//! (inside the layer stack: a permit of `max_concurrency` is already held)
//! task ─► render routing_key, payload (JSON), headers ─► the endpoint's one connection
//!         (lazy: made at the first call or probe, made again when lost) ─► a channel per call
//!         in confirm mode
//!   publish:       basic.publish(message_id = task id, persistent, mandatory)
//!                  ─► broker ack ─► Ok {"message_id", "exchange", "routing_key"}
//!   request_reply: consume `amq.rabbitmq.reply-to` ─► publish(reply_to, correlation_id = task id)
//!                  ─► broker ack ─► the reply with that correlation id, within `timeout`
//!                  ─► Ok (the reply body, JSON)
//!
//!   no connection (refused, broker down, handshake failed) ─► Transient `connect` (nothing sent)
//!   nack ─► Transient `amqp_nack` · returned unroutable (mandatory) ─► Transient `amqp_unroutable`
//!   channel or connection closed during the exchange ─► Transient `network`
//!   no confirm / no reply within `timeout` ─► Transient `timeout`
//!   credentials or vhost refused ─► Permanent `auth` · exchange missing ─► Permanent `config`
//!   reply not JSON ─► invalid output `invalid_json` · larger than `max_reply_bytes` ─► Permanent
//!   `response_too_large`
//! ```
//!
//! The task completes only after the broker confirmed the message: a task is never reported done
//! for a message the broker did not take. The message id is the external task id, so a consumer
//! can drop the copy a retry after a lost confirm sends again.
//!
//! Replies use RabbitMQ's direct reply-to (`amq.rabbitmq.reply-to`) on the call's own channel:
//! no reply queue to declare or clean up, and a reply can only reach the call that waits for it.
//! The URL is a [`Secret`]; messages name the server as `amqp://***@host:port/vhost`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation};
use serde::Deserialize;
use serde_json::{Value, json};

use super::stack::{self, CircuitConfig, Policy, ProbeConfig, RetryBudgetConfig, RetryPolicy};
use super::template::{JsonTemplate, Template, TemplateContext, TemplateError, has_syntax};
use super::{Endpoint, EndpointError, EndpointReply, EndpointRequest};
use crate::config::Secret;
use crate::endpoints::class;

mod link;

use link::{Link, Phase, amqp_error};

/// RabbitMQ's direct reply-to pseudo queue.
const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// AMQP short strings (exchange names, routing keys) hold at most this many bytes.
const MAX_SHORT_STRING: usize = 255;

/// What a call does with the message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AmqpMode {
    /// Publish and complete once the broker confirmed it.
    #[default]
    Publish,
    /// Publish with `reply_to` and `correlation_id`, wait for the reply: it is the result.
    RequestReply,
}

/// `type: amqp`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpConfig {
    /// `amqp://user:password@host:port/vhost` (vhost `/` written `%2f`), e.g. `${AMQP_URL}`.
    pub url: Secret,
    /// `publish` (default) or `request_reply`.
    #[serde(default)]
    pub mode: AmqpMode,
    /// Exchange to publish to; empty (the default) is the default exchange, which routes by
    /// queue name.
    #[serde(default)]
    pub exchange: String,
    /// Routing key template over the task's variables, e.g. `orders.{{ region }}`.
    pub routing_key: String,
    /// The message body: a JSON template; by default the task's variables as a JSON object.
    #[serde(default)]
    pub payload: Option<Value>,
    /// The message's `content_type` property.
    #[serde(default = "default_content_type")]
    pub content_type: String,
    /// Delivery mode 2 (the broker writes the message to disk in a durable queue); default on.
    #[serde(default = "default_true")]
    pub persistent: bool,
    /// Published with `mandatory`: a message no queue is bound for comes back and the task
    /// fails (transiently) instead of the message being dropped silently; default on.
    #[serde(default = "default_true")]
    pub mandatory: bool,
    /// Message headers: name → template over the task's variables.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Bound on one call: connecting, the broker's confirm and, for `request_reply`, the reply.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// A reply larger than this fails the call.
    #[serde(default = "default_max_reply_bytes")]
    pub max_reply_bytes: usize,
    /// Calls in flight through this endpoint (each on its own channel of the one connection).
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Extra attempts after a failure (default 0): only when no connection could be made, so
    /// nothing was published.
    #[serde(default)]
    pub max_retries: u32,
    /// First backoff delay; doubles per retry.
    #[serde(default = "stack::default_retry_backoff", with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// How many retries the calls may add (a share of the calls).
    #[serde(default)]
    pub retry_budget: RetryBudgetConfig,
    /// When to stop publishing through a failing broker.
    #[serde(default)]
    pub circuit: CircuitConfig,
    /// The background probe: the connection is alive (made again if it was lost); on by default.
    #[serde(default)]
    pub probe: ProbeConfig,
}

fn default_content_type() -> String {
    "application/json".into()
}
fn default_true() -> bool {
    true
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_reply_bytes() -> usize {
    1024 * 1024
}
fn default_max_concurrency() -> usize {
    16
}

/// Problems found in a config: (path suffix such as `routing_key`, message).
type Problems = Vec<(String, String)>;

/// The per-task templates, compiled once.
#[derive(Debug)]
struct Templates {
    routing_key: Template,
    payload: JsonTemplate,
    headers: Vec<(String, Template)>,
}

impl AmqpConfig {
    /// How the stack wraps this endpoint: the kind's own `timeout` fires first, the stack's a
    /// grace later.
    pub fn policy(&self) -> Policy {
        Policy {
            timeout: Some(self.timeout + stack::TIMEOUT_GRACE),
            max_concurrency: Some(self.max_concurrency),
            circuit: self.circuit.clone(),
            retry: RetryPolicy::new(self.max_retries, self.retry_backoff, &self.retry_budget),
            probe: self.probe.schedule(true),
        }
    }

    /// Every problem of this config (the URL, names, templates, limits), as (path suffix,
    /// message). Pure: no network.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = match self.compile("") {
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        };
        if let Err(message) = link::parse_url(&self.url) {
            problems.insert(0, ("url".into(), message));
        }
        problems
    }

    /// Compiles the templates, naming them `<prefix><field>`; collects every problem except the
    /// URL's (see [`link::parse_url`]).
    fn compile(&self, prefix: &str) -> Result<Templates, Problems> {
        let mut problems = Problems::new();
        let mut problem = |field: &str, message: String| problems.push((field.into(), message));

        if has_syntax(&self.exchange) {
            problem(
                "exchange",
                "must be an exchange name, not a template".into(),
            );
        } else if self.exchange.len() > MAX_SHORT_STRING {
            problem(
                "exchange",
                format!(
                    "is {} bytes; AMQP allows {MAX_SHORT_STRING}",
                    self.exchange.len()
                ),
            );
        }
        if !has_syntax(&self.routing_key) && self.routing_key.len() > MAX_SHORT_STRING {
            problem(
                "routing_key",
                format!(
                    "is {} bytes; AMQP allows {MAX_SHORT_STRING}",
                    self.routing_key.len()
                ),
            );
        }
        if self.content_type.trim().is_empty() {
            problem("content_type", "must not be empty".into());
        }
        for name in self.headers.keys() {
            if name.trim().is_empty() || name.len() > MAX_SHORT_STRING {
                problem(
                    "headers",
                    format!("header name `{name}` must be 1 to {MAX_SHORT_STRING} bytes"),
                );
            }
        }
        if self.max_reply_bytes == 0 {
            problem("max_reply_bytes", "must be at least 1".into());
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

        let routing_key = Template::compile(&format!("{prefix}routing_key"), &self.routing_key)
            .map_err(|e| problems.push(("routing_key".into(), e.to_string())))
            .ok();
        let payload_source = self
            .payload
            .clone()
            .unwrap_or_else(|| Value::String("{{ variables }}".into()));
        let payload = JsonTemplate::compile(&format!("{prefix}payload"), &payload_source)
            .map_err(|e| problems.push(("payload".into(), e.to_string())))
            .ok();
        let mut headers = Vec::new();
        for (name, source) in &self.headers {
            match Template::compile(&format!("{prefix}headers.{name}"), source) {
                Ok(t) => headers.push((name.clone(), t)),
                Err(e) => problems.push((format!("headers.{name}"), e.to_string())),
            }
        }
        match (routing_key, payload) {
            (Some(routing_key), Some(payload)) if problems.is_empty() => Ok(Templates {
                routing_key,
                payload,
                headers,
            }),
            _ => Err(problems),
        }
    }
}

/// The amqp endpoint: compiled templates and the lazy connection, built once.
pub struct AmqpEndpoint {
    name: String,
    mode: AmqpMode,
    link: Link,
    templates: Templates,
    exchange: String,
    content_type: String,
    persistent: bool,
    mandatory: bool,
    timeout: Duration,
    max_reply_bytes: usize,
}

impl fmt::Debug for AmqpEndpoint {
    /// Names the server without credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpEndpoint")
            .field("name", &self.name)
            .field("server", &self.link.server())
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl AmqpEndpoint {
    /// Builds it from its config: compiles templates, parses the URL. No I/O: the connection is
    /// made at the first call or probe, so a broker down at start-up is a failing probe, not a
    /// refused start.
    pub fn new(name: &str, config: &AmqpConfig) -> Result<Self, EndpointError> {
        let misconfigured = |problems: Vec<String>| {
            EndpointError::permanent(format!(
                "amqp endpoint `{name}` is misconfigured: {}",
                problems.join("; ")
            ))
            .code(class::CONFIG)
        };
        let templates = config
            .compile(&format!("endpoints.{name}."))
            .map_err(|problems| {
                misconfigured(problems.iter().map(|(p, m)| format!("{p}: {m}")).collect())
            })?;
        let uri =
            link::parse_url(&config.url).map_err(|m| misconfigured(vec![format!("url: {m}")]))?;
        Ok(Self {
            name: name.to_string(),
            mode: config.mode,
            link: Link::new(name, uri, config.timeout),
            templates,
            exchange: config.exchange.clone(),
            content_type: config.content_type.clone(),
            persistent: config.persistent,
            mandatory: config.mandatory,
            timeout: config.timeout,
            max_reply_bytes: config.max_reply_bytes,
        })
    }

    /// The routing key, body and properties of the task's message.
    fn message(
        &self,
        request: &EndpointRequest,
    ) -> Result<(String, Vec<u8>, BasicProperties), EndpointError> {
        let ctx = TemplateContext::new(request);
        let routing_key = self
            .templates
            .routing_key
            .render(&ctx)
            .map_err(template_error)?;
        if routing_key.len() > MAX_SHORT_STRING {
            return Err(EndpointError::permanent(format!(
                "endpoint `{}`: the routing key rendered to {} bytes; AMQP allows {MAX_SHORT_STRING}",
                self.name,
                routing_key.len()
            ))
            .code(class::TEMPLATE));
        }
        let payload = self
            .templates
            .payload
            .render(&ctx)
            .map_err(template_error)?;
        // Serializing a `Value` cannot fail: its keys are strings.
        let body = serde_json::to_vec(&payload).unwrap_or_default();
        let mut headers = FieldTable::default();
        for (name, template) in &self.templates.headers {
            let value = template.render(&ctx).map_err(template_error)?;
            headers.insert(
                ShortString::from(name.as_str()),
                AMQPValue::LongString(LongString::from(value)),
            );
        }
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let properties = BasicProperties::default()
            .with_content_type(ShortString::from(self.content_type.as_str()))
            .with_delivery_mode(if self.persistent { 2 } else { 1 })
            .with_message_id(ShortString::from(request.task_id.as_str()))
            .with_app_id(ShortString::from("procos"))
            .with_timestamp(timestamp)
            .with_headers(headers);
        Ok((routing_key, body, properties))
    }

    /// Publishes on `channel` (in confirm mode) and waits for the broker's confirm.
    async fn publish(
        &self,
        channel: &Channel,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), EndpointError> {
        let server = self.link.server();
        let fail = |e: &lapin::Error| amqp_error(server, Phase::Exchange, e, &self.exchange);
        let confirm = channel
            .basic_publish(
                ShortString::from(self.exchange.as_str()),
                ShortString::from(routing_key),
                BasicPublishOptions {
                    mandatory: self.mandatory,
                    ..BasicPublishOptions::default()
                },
                body,
                properties,
            )
            .await
            .map_err(|e| fail(&e))?
            .await
            .map_err(|e| fail(&e))?;
        let target = format!("exchange `{}`, routing key `{routing_key}`", self.exchange);
        match confirm {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                Err(EndpointError::transient(format!(
                    "AMQP {server}: the broker returned the message ({} {}): no queue is bound \
                     for {target}",
                    returned.reply_code, returned.reply_text
                ))
                .code(class::AMQP_UNROUTABLE))
            }
            Confirmation::Nack(None) => Err(EndpointError::transient(format!(
                "AMQP {server}: the broker refused the message (nack) for {target}"
            ))
            .code(class::AMQP_NACK)),
            // The channel was put in confirm mode before publishing.
            Confirmation::NotRequested => Err(EndpointError::transient(format!(
                "AMQP {server}: no publisher confirm for {target}"
            ))
            .code(class::NETWORK)),
        }
    }

    /// One call, without its time bound.
    async fn exchange_message(
        &self,
        request: &EndpointRequest,
    ) -> Result<EndpointReply, EndpointError> {
        let (routing_key, body, properties) = self.message(request)?;
        let channel = self.link.channel().await?;
        let server = self.link.server();
        let setup = |e: lapin::Error| amqp_error(server, Phase::Setup, &e, &self.exchange);
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(setup)?;
        match self.mode {
            AmqpMode::Publish => {
                self.publish(&channel, &routing_key, &body, properties)
                    .await?;
                Ok(EndpointReply::new(json!({
                    "message_id": request.task_id,
                    "exchange": self.exchange,
                    "routing_key": routing_key,
                })))
            }
            AmqpMode::RequestReply => {
                // Direct reply-to: consume (no-ack) before publishing, on the same channel.
                let mut replies = channel
                    .basic_consume(
                        ShortString::from(DIRECT_REPLY_TO),
                        ShortString::from(""),
                        BasicConsumeOptions {
                            no_ack: true,
                            ..BasicConsumeOptions::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .map_err(setup)?;
                let properties = properties
                    .with_reply_to(ShortString::from(DIRECT_REPLY_TO))
                    .with_correlation_id(ShortString::from(request.task_id.as_str()));
                self.publish(&channel, &routing_key, &body, properties)
                    .await?;
                while let Some(delivery) = replies.next().await {
                    let delivery = delivery
                        .map_err(|e| amqp_error(server, Phase::Exchange, &e, &self.exchange))?;
                    let correlated = delivery
                        .properties
                        .correlation_id()
                        .as_ref()
                        .is_some_and(|id| id.as_str() == request.task_id);
                    if correlated {
                        return self.reply(&delivery.data);
                    }
                }
                Err(EndpointError::transient(format!(
                    "AMQP {server}: the channel closed before the reply arrived"
                ))
                .code(class::NETWORK))
            }
        }
    }

    /// The reply body as the task's result.
    fn reply(&self, data: &[u8]) -> Result<EndpointReply, EndpointError> {
        if data.len() > self.max_reply_bytes {
            return Err(EndpointError::permanent(format!(
                "AMQP {}: the reply is {} bytes, more than max_reply_bytes ({})",
                self.link.server(),
                data.len(),
                self.max_reply_bytes
            ))
            .code(class::RESPONSE_TOO_LARGE));
        }
        serde_json::from_slice(data)
            .map(EndpointReply::new)
            .map_err(|e| {
                EndpointError::invalid_output(format!(
                    "AMQP {}: the reply is not JSON ({e}): {}",
                    self.link.server(),
                    crate::config::secret::quote(&String::from_utf8_lossy(data))
                ))
                .code(class::INVALID_JSON)
            })
    }
}

/// A template error: the config or the task's variables are wrong, retrying will not help.
fn template_error(e: TemplateError) -> EndpointError {
    EndpointError::permanent(e.to_string()).code(class::TEMPLATE)
}

#[async_trait]
impl Endpoint for AmqpEndpoint {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "amqp"
    }

    /// The connection is alive: made (again) if there is none.
    async fn probe(&self) -> Result<(), EndpointError> {
        self.link.connection().await.map(|_| ())
    }

    async fn call(&self, request: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
        let bounded = tokio::time::timeout(self.timeout, self.exchange_message(request));
        tokio::select! {
            biased;
            _ = request.cancel.cancelled() => Err(EndpointError::cancelled()),
            result = bounded => result.unwrap_or_else(|_| {
                let waited = match self.mode {
                    AmqpMode::Publish => "confirm from the broker",
                    AmqpMode::RequestReply => "reply",
                };
                Err(EndpointError::transient(format!(
                    "AMQP {}: no {waited} within timeout {}",
                    self.link.server(),
                    humantime::format_duration(self.timeout)
                ))
                .code(class::TIMEOUT))
            }),
        }
    }
}

#[cfg(test)]
mod tests;
