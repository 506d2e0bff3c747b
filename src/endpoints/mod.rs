//! Endpoints: where a task's work is actually done.
//!
//! Every kind implements the object-safe [`Endpoint`] trait and is held as `Arc<dyn Endpoint>`,
//! chosen at run time from the closed [`EndpointConfig`] enum. Building matches exhaustively, so
//! adding a kind makes the compiler list every place to touch.
//!
//! An endpoint receives an [`EndpointRequest`] (decoded variables, extension properties, business
//! key, and — for retries after a failed validation — the validation error as feedback) and
//! answers with an [`EndpointReply`] (a JSON result plus usage figures) or an [`EndpointError`]
//! that says *what kind* of failure it was. What that kind means for Camunda (retry, fallback,
//! BPMN error, incident) is decided in one place: `pde::completion`.
//!
//! Every kind is built inside the same layer stack ([`stack`]: timeout, concurrency limit,
//! circuit breaker, retry with a budget, observation), applied in one place,
//! [`EndpointConfig::build`], with a [`BuildContext`] that gives background work (probes) its
//! home and shares the daemon's [`health::HealthRegistry`], HTTP client and learner (which the
//! built-in [`procos`] kind reports, for system processes such as the health monitor).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub mod amqp;
pub mod class;
// database (issue 13)
pub mod database;
pub mod email;
pub mod files;
pub mod health;
pub mod http;
pub mod llm;
pub mod noop;
pub mod ollama;
pub mod openai;
pub mod procos;
pub mod python;
pub mod stack;
pub mod sub_pde;
pub mod template;

pub use health::HealthRegistry;
pub use template::{JsonTemplate, Template, TemplateContext, TemplateError};

/// One endpoint kind per variant; the `type` key picks it.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EndpointConfig {
    /// An HTTP call built from templates.
    Http(http::HttpConfig),
    /// A Python script run as a subprocess.
    Python(python::PythonConfig),
    /// Echoes its input; for smoke tests and benchmarks.
    Noop(noop::NoopConfig),
    /// A chat completion from OpenAI or an OpenAI-compatible server.
    Openai(openai::OpenAiConfig),
    /// A chat with a model served by Ollama.
    Ollama(ollama::OllamaConfig),
    /// An email sent over SMTP, built from templates. Boxed: its config is several times the
    /// size of the others'.
    Email(Box<email::EmailConfig>),
    /// A Meta-PDE: sub-tasks of other topics run in process, then combined.
    SubPde(sub_pde::SubPdeConfig),
    /// procos's own state (health, routing statistics, suggestions), for system processes.
    Procos(procos::ProcosConfig),
    /// One file operation (read, write, list, move, delete) confined to a root directory.
    Files(files::FilesConfig),
    /// A message published to RabbitMQ with publisher confirms, or a request and its reply.
    Amqp(Box<amqp::AmqpConfig>),
    /// A configured SQL statement on PostgreSQL or SQLite, task variables bound as parameters.
    /// Boxed: its config is several times the size of the others'.
    Database(Box<database::DatabaseConfig>),
}

impl EndpointConfig {
    /// The `type` name, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            EndpointConfig::Http(_) => "http",
            EndpointConfig::Python(_) => "python",
            EndpointConfig::Noop(_) => "noop",
            EndpointConfig::Openai(_) => "openai",
            EndpointConfig::Ollama(_) => "ollama",
            EndpointConfig::Email(_) => "email",
            EndpointConfig::SubPde(_) => "sub_pde",
            EndpointConfig::Procos(_) => "procos",
            EndpointConfig::Files(_) => "files",
            EndpointConfig::Amqp(_) => "amqp",
            EndpointConfig::Database(_) => "database",
        }
    }

    /// Whether the endpoint built from this config changes something outside procos: the same
    /// answer as the built endpoint's [`Endpoint::side_effects`], known before building, so that
    /// `procos validate` can refuse what must never run twice or be cached. `email` and `sub_pde`
    /// always; `files` for `write`, `move` and `delete`; `python` unless `pure: true`; `http` unless its `method` is literally `GET`,
    /// `procos validate` can refuse what must never run twice or be cached. `email`, `sub_pde` and
    /// `amqp` always; `python` unless `pure: true`; `http` unless its `method` is literally `GET`,
    /// `procos validate` can refuse what must never run twice or be cached. `email`, `sub_pde` and `database`
    /// always; `python` unless `pure: true`; `http` unless its `method` is literally `GET`,
    /// `HEAD` or `OPTIONS` (a method from a template may be anything).
    pub fn has_side_effects(&self) -> bool {
        match self {
            EndpointConfig::Http(c) => !http::reads_only(&c.method),
            EndpointConfig::Python(c) => !c.pure,
            EndpointConfig::Noop(_)
            | EndpointConfig::Openai(_)
            | EndpointConfig::Ollama(_)
            | EndpointConfig::Procos(_) => false,
            EndpointConfig::Email(_) | EndpointConfig::SubPde(_) => true,
            EndpointConfig::Files(c) => c.has_side_effects(),
            // A published message (or a request) is out of procos's hands.
            EndpointConfig::Amqp(_) => true,
            // A statement may write; a SELECT-only endpoint is not told apart (yet).
            EndpointConfig::Database(_) => true,
        }
    }

    /// Every problem of this endpoint's config as (path suffix under `endpoints.<name>.`,
    /// message), e.g. `("url", "template `url` does not compile: …")`. Pure: no network, no
    /// filesystem; config validation prefixes the paths.
    pub fn validate(&self) -> Vec<(String, String)> {
        match self {
            EndpointConfig::Http(c) => c.validate(),
            EndpointConfig::Python(c) => c.validate(),
            EndpointConfig::Noop(c) => c.validate(),
            EndpointConfig::Openai(c) => c.validate(),
            EndpointConfig::Ollama(c) => c.validate(),
            EndpointConfig::Email(c) => c.validate(),
            EndpointConfig::SubPde(c) => c.validate(),
            EndpointConfig::Procos(c) => c.validate(),
            EndpointConfig::Files(c) => c.validate(),
            EndpointConfig::Amqp(c) => c.validate(),
            EndpointConfig::Database(c) => c.validate(),
        }
    }

    /// How the stack wraps this endpoint: each kind's `timeout`, `max_concurrency`, `circuit`,
    /// `probe` and retry settings, resolved with the kind's defaults.
    pub fn policy(&self) -> stack::Policy {
        match self {
            EndpointConfig::Http(c) => c.policy(),
            EndpointConfig::Python(c) => c.policy(),
            EndpointConfig::Noop(c) => c.policy(),
            EndpointConfig::Openai(c) => c.policy(),
            EndpointConfig::Ollama(c) => c.policy(),
            EndpointConfig::Email(c) => c.policy(),
            EndpointConfig::SubPde(c) => c.policy(),
            EndpointConfig::Procos(c) => c.policy(),
            EndpointConfig::Files(c) => c.policy(),
            EndpointConfig::Amqp(c) => c.policy(),
            EndpointConfig::Database(c) => c.policy(),
        }
    }

    /// Builds the endpoint (I/O allowed: clients, compiled templates) inside the layer stack,
    /// and starts its probe on the context's tracker. The one place endpoints are stacked.
    pub fn build(&self, name: &str, cx: &BuildContext) -> Result<Arc<dyn Endpoint>, EndpointError> {
        let bare: Arc<dyn Endpoint> = match self {
            EndpointConfig::Http(c) => Arc::new(http::HttpEndpoint::with_engine(
                name,
                c,
                cx.engine_url.as_deref(),
            )?),
            EndpointConfig::Python(c) => python::PythonEndpoint::with_context(name, c, cx)?,
            EndpointConfig::Noop(c) => Arc::new(noop::NoopEndpoint::new(name, c)),
            EndpointConfig::Openai(c) => {
                Arc::new(openai::OpenAiEndpoint::with_client(name, c, cx.client())?)
            }
            EndpointConfig::Ollama(c) => {
                Arc::new(ollama::OllamaEndpoint::with_client(name, c, cx.client())?)
            }
            EndpointConfig::Email(c) => Arc::new(email::EmailEndpoint::new(name, c)?),
            EndpointConfig::SubPde(c) => {
                Arc::new(sub_pde::SubPdeEndpoint::with_context(name, c, cx)?)
            }
            EndpointConfig::Procos(c) => {
                Arc::new(procos::ProcosEndpoint::with_context(name, c, cx))
            }
            EndpointConfig::Files(c) => Arc::new(files::FilesEndpoint::new(name, c)?),
            EndpointConfig::Amqp(c) => Arc::new(amqp::AmqpEndpoint::new(name, c)?),
            EndpointConfig::Database(c) => Arc::new(database::DatabaseEndpoint::new(name, c)?),
        };
        let mut policy = self.policy();
        // The built endpoint knows best (an http method from a template may be anything).
        policy.retry.side_effects = bare.side_effects();
        Ok(stack::apply(bare, &policy, cx))
    }
}

/// What building an endpoint may use beyond its own config: the daemon's shutdown signal and
/// task tracker (the home of background work such as probes), the shared health registry, one
/// shared HTTP client, the learner, and facts of the config — the idea of Vector's
/// `SourceConfig::build(cx)`.
///
/// One per daemon; cheap to clone (every handle is shared).
#[derive(Debug, Clone)]
pub struct BuildContext {
    /// `camunda.url`: URLs that variables choose must not reach the engine's own API.
    pub engine_url: Option<String>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    health: Arc<HealthRegistry>,
    client: reqwest::Client,
    /// Topic → its endpoints' names, for `sub_pde` probes (a step's health is its topic's).
    topics: Arc<BTreeMap<String, Vec<String>>>,
    /// The daemon's learner, for the `procos` endpoint's routing figures and suggestions.
    learner: Option<Arc<crate::learner::Learner>>,
}

impl BuildContext {
    /// A context whose background work stops on `shutdown` and runs on `tracker` (the caller
    /// waits for it at exit), with a fresh health registry.
    pub fn new(shutdown: CancellationToken, tracker: TaskTracker) -> Self {
        Self {
            engine_url: None,
            shutdown,
            tracker,
            health: Arc::new(HealthRegistry::default()),
            client: shared_client(),
            topics: Arc::new(BTreeMap::new()),
            learner: None,
        }
    }

    /// The same context with `camunda.url` set.
    pub fn with_engine_url(mut self, url: impl Into<String>) -> Self {
        self.engine_url = Some(url.into());
        self
    }

    /// The same context knowing which endpoints serve each topic.
    pub fn with_topics(mut self, topics: BTreeMap<String, Vec<String>>) -> Self {
        self.topics = Arc::new(topics);
        self
    }

    /// The same context with the daemon's learner: what the `procos` endpoint reports routing
    /// figures and suggestions from (without one it reports health only).
    pub fn with_learner(mut self, learner: Arc<crate::learner::Learner>) -> Self {
        self.learner = Some(learner);
        self
    }

    /// The daemon's learner, when the context was given one.
    pub fn learner(&self) -> Option<&Arc<crate::learner::Learner>> {
        self.learner.as_ref()
    }

    /// The same context whose background work (probes) stops on `token` instead: a child of
    /// the daemon's token, so that a config reload can stop one endpoint's probes alone.
    pub fn with_shutdown(mut self, token: CancellationToken) -> Self {
        self.shutdown = token;
        self
    }

    /// Cancelled when procos stops: background work ends.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Where background work runs; the kernel waits for it at exit.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Every endpoint's health (breaker state, last probe): the registry the stack writes and
    /// the Test block, the learner and `procos stats` read.
    pub fn health(&self) -> &Arc<HealthRegistry> {
        &self.health
    }

    /// The HTTP client shared by the kinds that need no client of their own (the AI kinds; the
    /// `http` kind keeps its own, because its SSRF guard lives in its DNS resolver and it follows
    /// redirects itself).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The endpoints of `topic` (empty when unknown).
    pub fn endpoints_of(&self, topic: &str) -> &[String] {
        self.topics
            .get(topic)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

impl Default for BuildContext {
    /// A context of its own (tests, tools): a fresh token, tracker and registry.
    fn default() -> Self {
        Self::new(CancellationToken::new(), TaskTracker::new())
    }
}

/// The shared client: rustls, procos's user agent, no redirects (an API never redirects, and
/// following one could carry a key elsewhere), a bounded connect.
pub(crate) fn shared_client() -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(concat!("procos/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        // The builder fails only when the TLS backend cannot start; the default client then
        // fails the same way, so there is nothing better to fall back on.
        .unwrap_or_default()
}

/// Everything an endpoint may use from the task. Built once per task by the Start block.
#[derive(Debug, Clone, Default)]
pub struct EndpointRequest {
    /// External task id (also a stable idempotency key for side effects).
    pub task_id: String,
    /// The task's topic.
    pub topic: String,
    /// The BPMN activity id of the external task.
    pub activity_id: String,
    /// Process instance the task belongs to.
    pub process_instance_id: String,
    /// Business key of the process instance, if any.
    pub business_key: Option<String>,
    /// The task's variables, decoded to plain JSON (Json/Object variables parsed, Dates as strings).
    pub variables: Map<String, Value>,
    /// Camunda extension properties of the activity (`camunda:properties`), e.g. `pde.endpoint`.
    pub properties: BTreeMap<String, String>,
    /// The topic's output JSON Schema, for endpoints that can ask for structured output.
    pub output_schema: Option<Arc<Value>>,
    /// Why the previous attempt's result was rejected, for endpoints that can correct themselves.
    pub feedback: Option<String>,
    /// Cancelled when the task is gone (lock lost, instance deleted) or procos stops hard.
    pub cancel: CancellationToken,
    /// Loads File variables' content, which the engine does not send with the task.
    pub files: Option<Arc<dyn FileSource>>,
    /// Runs sub-tasks of other topics in process, for `sub_pde` endpoints. Set by the pipeline.
    pub sub_tasks: Option<Arc<dyn SubTasks>>,
    /// How deep this task is nested in Meta-PDEs: 0 for a task fetched from the engine, the
    /// parent's depth + 1 for a sub-task. Bounds runaway nesting at run time.
    pub depth: u32,
}

/// Runs a sub-task of another topic in process (Start → Test → Gateway → Validation, no engine).
///
/// Implemented by the pipeline (`pde::sub_task`) and handed to endpoints through
/// [`EndpointRequest::sub_tasks`]: endpoints are built before the pipeline that holds them, so a
/// `sub_pde` endpoint reaches the pipeline through this late-bound trait object instead.
#[async_trait]
pub trait SubTasks: Send + Sync + std::fmt::Debug {
    /// Runs one task of `topic` over `variables` as a child of `parent` (its cancel token,
    /// business key and tracing span), waiting for a free slot of the topic's pool. The result is
    /// the topic's validated output; a failure is the sub-task's decisive error.
    async fn run(
        &self,
        topic: &str,
        variables: Map<String, Value>,
        parent: &EndpointRequest,
    ) -> Result<EndpointReply, EndpointError>;
}

/// Loads the content of a File variable on demand (fetchAndLock sends only its name, type and
/// mimetype). Implemented over the engine's REST API by the pipeline; endpoints only see this.
#[async_trait]
pub trait FileSource: Send + Sync + std::fmt::Debug {
    /// The content of File variable `name`.
    async fn load(&self, name: &str) -> Result<bytes::Bytes, EndpointError>;

    /// File name and MIME type of File variable `name`, as the engine reported them with the
    /// task, e.g. for an email attachment. `None` when unknown (the default).
    async fn metadata(&self, name: &str) -> Option<FileMeta> {
        let _ = name;
        None
    }
}

/// What the engine knows about a File variable besides its content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileMeta {
    /// The file's name (`valueInfo.filename`).
    pub filename: Option<String>,
    /// Its MIME type (`valueInfo.mimeType`).
    pub mime_type: Option<String>,
}

/// A successful answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointReply {
    /// The result, mapped to variables by the topic's output rules.
    pub output: Value,
    /// Token usage and cost, for endpoints that have them.
    pub usage: Option<Usage>,
}

impl EndpointReply {
    /// A reply with just an output.
    pub fn new(output: Value) -> Self {
        Self {
            output,
            usage: None,
        }
    }
}

/// Usage figures of a call, for logs, metrics and the learner.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// Model that answered.
    pub model: Option<String>,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Cost in the configured currency, when prices are configured.
    pub cost: Option<f64>,
}

impl Usage {
    /// The usage as JSON, e.g. for the `output.usage_variable`.
    pub fn to_json(&self, endpoint: &str) -> Value {
        serde_json::json!({
            "endpoint": endpoint,
            "model": self.model,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost": self.cost,
        })
    }
}

/// What kind of failure an endpoint had. The pipeline decides what it means for Camunda.
#[derive(Debug, Clone, PartialEq)]
pub enum ErrorKind {
    /// Worth trying again later (5xx, 429, timeout, connection refused).
    Transient {
        /// Server-advised wait (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// Will not get better by retrying (bad credentials, 4xx, script exits with a usage error):
    /// the task should become an incident so a person looks at it.
    Permanent,
    /// This endpoint cannot serve this request, another might (e.g. context length exceeded).
    Fallback,
    /// The endpoint answered, but the answer is malformed (e.g. a model's reply is not valid
    /// JSON). Handled like a result that failed validation: retried on the same endpoint with
    /// the message as feedback (up to the topic's `output.attempts`), then the next fallback.
    InvalidOutput,
    /// A business outcome: raise this BPMN error code.
    Business {
        /// The BPMN error code.
        error_code: String,
    },
    /// The task was cancelled while the endpoint ran.
    Cancelled,
}

/// A failed call: what kind, a class for `bpmn_errors` mapping, and a message naming the input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct EndpointError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// Class of the error that a topic's `bpmn_errors` can map to a BPMN error code, e.g.
    /// `http_404`, `http_4xx`, `timeout`, `exit_3` (see [`class`]).
    pub code: Option<String>,
    /// One line saying what failed, naming the input.
    pub message: String,
    /// Longer details (response body, stderr) for Camunda's `errorDetails`.
    pub details: Option<String>,
}

impl EndpointError {
    /// The same error with every known secret (`config::secret`) taken out of its message and
    /// details, and the message capped: what the pipeline logs and reports, whatever endpoint
    /// kind built it (a script's stderr, a server's echo of a URL).
    pub fn redacted(self) -> Self {
        use crate::config::secret::redact;
        /// A message is one line; a longer one quoted a value it should have capped.
        const MAX_MESSAGE: usize = 2000;
        let mut message = redact(&self.message);
        if message.chars().count() > MAX_MESSAGE {
            let total = message.len();
            message = message.chars().take(MAX_MESSAGE).collect();
            message.push_str(&format!("… ({total} bytes in all)"));
        }
        Self {
            message,
            details: self.details.as_deref().map(redact),
            ..self
        }
    }

    fn with_kind(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            code: None,
            message: message.into(),
            details: None,
        }
    }

    /// A transient failure.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::with_kind(ErrorKind::Transient { retry_after: None }, message)
    }

    /// A permanent failure (→ incident).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::with_kind(ErrorKind::Permanent, message)
    }

    /// Try the next endpoint.
    pub fn fallback(message: impl Into<String>) -> Self {
        Self::with_kind(ErrorKind::Fallback, message)
    }

    /// A malformed answer (retried with feedback, then fallback).
    pub fn invalid_output(message: impl Into<String>) -> Self {
        Self::with_kind(ErrorKind::InvalidOutput, message)
    }

    /// A BPMN error.
    pub fn business(error_code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::with_kind(
            ErrorKind::Business {
                error_code: error_code.into(),
            },
            message,
        )
    }

    /// The task was cancelled.
    pub fn cancelled() -> Self {
        Self::with_kind(ErrorKind::Cancelled, "the task was cancelled")
    }

    /// Sets the class used by `bpmn_errors` mapping.
    pub fn code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Sets the details.
    pub fn details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    /// Does the error prove the request never left procos? Its class is `connect`: no
    /// connection could be made (refused, unreachable, TLS handshake failed), so nothing was
    /// sent, and even an endpoint with side effects may be called again.
    pub fn never_sent(&self) -> bool {
        self.code.as_deref() == Some(class::CONNECT)
    }

    /// Sets a server-advised wait on a transient error.
    pub fn retry_after(mut self, wait: Option<Duration>) -> Self {
        if let ErrorKind::Transient { retry_after } = &mut self.kind {
            *retry_after = wait;
        }
        self
    }
}

/// A place where work is done. Object-safe: held as `Arc<dyn Endpoint>`.
#[async_trait]
pub trait Endpoint: Send + Sync + std::fmt::Debug {
    /// The endpoint's name in `pde.yaml`.
    fn name(&self) -> &str;

    /// The endpoint's kind (`http`, `python`, …).
    fn kind(&self) -> &'static str;

    /// Is the endpoint usable right now, as far as procos knows without any I/O? Read by the
    /// Test block for every task: the stack answers from the endpoint's circuit breaker (whose
    /// state it publishes to the shared [`HealthRegistry`]), a kind only for what its config
    /// rules out (an openai endpoint without a key). Never does I/O; the default is "yes".
    fn usable(&self) -> Result<(), EndpointError> {
        Ok(())
    }

    /// The kind's own cheap active health check (openai `GET /models`, ollama `/api/tags`, SMTP
    /// `NOOP`, …). Run only by the stack's background probe on a schedule, never per task; the
    /// default has nothing to check.
    async fn probe(&self) -> Result<(), EndpointError> {
        Ok(())
    }

    /// Does a call change something outside procos (send a mail, write, POST)? Such an
    /// endpoint never runs twice for one task: the outcome journal marks the task before the
    /// call, and a task fetched again after that gets its journaled outcome instead of a second
    /// run (see `journal`). Endpoints that only read (GET, a model, a pure script) say `false`
    /// and may be re-run after a crash. The default is the safe answer.
    fn side_effects(&self) -> bool {
        true
    }

    /// Does the work.
    async fn call(&self, request: &EndpointRequest) -> Result<EndpointReply, EndpointError>;
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn a_redacted_error_hides_known_secrets_and_caps_its_message() {
        crate::config::secret::register("s3cr3t-token-for-redaction");
        let e = EndpointError::transient(format!(
            "script failed: token s3cr3t-token-for-redaction rejected; {}",
            "x".repeat(5_000_000)
        ))
        .details("stderr: Authorization: Bearer s3cr3t-token-for-redaction")
        .redacted();
        assert!(!e.message.contains("s3cr3t") && e.message.contains("token *** rejected"));
        assert!(e.message.len() < 3000, "capped: {} bytes", e.message.len());
        assert!(e.message.ends_with("bytes in all)"));
        let details = e.details.expect("details");
        assert!(!details.contains("s3cr3t") && details.contains("Bearer ***"));
    }
}

#[cfg(test)]
mod side_effect_tests {
    use super::*;

    /// The config's answer is the built endpoint's answer, for every kind and each rule's edge.
    #[test]
    fn has_side_effects_agrees_with_the_built_endpoint_for_every_kind() {
        let cases = [
            ("{type: noop}", false),
            ("{type: openai, model: m, api_key: k}", false),
            ("{type: ollama, model: m}", false),
            ("{type: python, script: s.py}", true),
            ("{type: python, script: s.py, pure: true}", false),
            ("{type: http, url: 'http://x/'}", true),
            ("{type: http, method: GET, url: 'http://x/'}", false),
            ("{type: http, method: ' head ', url: 'http://x/'}", false),
            ("{type: http, method: OPTIONS, url: 'http://x/'}", false),
            ("{type: http, method: POST, url: 'http://x/'}", true),
            ("{type: http, method: DELETE, url: 'http://x/'}", true),
            ("{type: email, host: localhost, from: a@x.org}", true),
            ("{type: sub_pde, steps: [{name: x, topic: t}]}", true),
            ("{type: procos}", false),
            ("{type: files, root: /, operation: read, path: x}", false),
            ("{type: files, root: /, operation: list}", false),
            ("{type: files, root: /, operation: delete, path: x}", true),
            (
                "{type: amqp, url: 'amqp://u:p@127.0.0.1:5672/%2f', routing_key: k}",
                true,
            ),
            (
                "{type: database, url: 'sqlite::memory:', statements: {s: {sql: 'SELECT 1'}}}",
                true,
            ),
        ];
        let mut kinds = std::collections::BTreeSet::new();
        for (yaml, expected) in cases {
            let config: EndpointConfig = serde_yaml::from_str(yaml).expect(yaml);
            kinds.insert(config.kind());
            let built = config
                .build("e", &BuildContext::default())
                .unwrap_or_else(|e| panic!("{yaml}: {e}"));
            assert_eq!(config.has_side_effects(), expected, "{yaml}");
            assert_eq!(built.side_effects(), expected, "{yaml} (built)");
        }
        assert_eq!(kinds.len(), 11, "every kind is covered: {kinds:?}");
    }
}
