//! `ollama`: a chat with a local model served by Ollama.
//!
//! ```text
//! request ─► messages (llm::Prompts) ─► POST {url}/api/chat
//!   {model, messages, stream: false, format?, options?, keep_alive?}
//!                                         │ 2xx: message.content, prompt_eval_count, eval_count
//!   no format ─► text  ·  format json / schema / {…} ─► parsed JSON (fences stripped)
//!
//! probe(): GET {url}/api/tags — unreachable, or the model not pulled:
//!   "model llama3 is not available on http://…; run `ollama pull llama3`"
//! ```
//!
//! Errors are mapped once, in [`llm::status_error`]; an unreachable server is a transient
//! `connect` error, which the circuit breaker (see [`super::stack`]) turns into a paused
//! endpoint that the pipeline routes around. The probe runs in the background (`probe:`), never
//! per task.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::llm::{self, PromptSources, Prompts, Provider, Site};
use super::stack::{self, CircuitConfig, Policy, ProbeConfig, RetryBudgetConfig, RetryPolicy};
use super::{Endpoint, EndpointError, EndpointReply, EndpointRequest};
use crate::endpoints::class;

/// `type: ollama`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OllamaConfig {
    /// The Ollama server.
    #[serde(default = "default_url")]
    pub url: String,
    /// The model, e.g. `llama3` or `qwen2.5:7b`; it must be pulled on the server.
    pub model: String,
    /// Model options passed through: `temperature`, `num_ctx`, `top_p`, `seed`, …
    #[serde(default)]
    pub options: Map<String, Value>,
    /// Structured output: `json`, `schema` (the topic's output schema), or a JSON Schema object.
    /// Absent: free text.
    #[serde(default)]
    pub format: Option<Value>,
    /// How long Ollama keeps the model loaded after the call (`5m`, `-1` forever, `0` unload).
    #[serde(default)]
    pub keep_alive: Option<Value>,
    /// System prompt template.
    #[serde(default)]
    pub system: Option<String>,
    /// User prompt template; default `{{ prompt }}`. The `pde.prompt` property overrides it.
    #[serde(default)]
    pub prompt: Option<String>,
    /// Variable holding earlier messages (`[{role, content}]`): chat history or few-shot examples.
    #[serde(default)]
    pub history_variable: Option<String>,
    /// Bound on one call (local models can be slow to load and answer).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Bound on calls in flight through this endpoint; unbounded when absent.
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    /// Extra calls after a transient failure, with backoff.
    #[serde(default = "stack::default_ai_max_retries")]
    pub max_retries: u32,
    /// First backoff delay; doubles per retry.
    #[serde(default = "stack::default_retry_backoff", with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// How many retries the calls may add (a share of the calls).
    #[serde(default)]
    pub retry_budget: RetryBudgetConfig,
    /// When to pause calling an unreachable or failing server.
    #[serde(default)]
    pub circuit: CircuitConfig,
    /// The background probe: `GET {url}/api/tags`, the model listed (on by default).
    #[serde(default)]
    pub probe: ProbeConfig,
}

fn default_url() -> String {
    "http://localhost:11434".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(120)
}

/// What the model is asked to produce.
#[derive(Debug, Clone, PartialEq)]
enum Format {
    /// Free text.
    Text,
    /// Any JSON (`format: "json"`).
    Json,
    /// The topic's output schema, or plain JSON when the topic has none.
    TopicSchema,
    /// This schema.
    Schema(Arc<Value>),
}

impl Format {
    fn parse(value: Option<&Value>) -> Result<Self, String> {
        match value {
            None => Ok(Format::Text),
            Some(Value::String(s)) if s == "json" => Ok(Format::Json),
            Some(Value::String(s)) if s == "schema" => Ok(Format::TopicSchema),
            Some(v @ Value::Object(_)) => Ok(Format::Schema(Arc::new(v.clone()))),
            Some(_) => Err(
                "must be `json`, `schema` (the topic's output schema) or a JSON \
                            Schema object"
                    .into(),
            ),
        }
    }
}

impl OllamaConfig {
    /// A config for `model` with every default, for tests and code-built configs.
    pub fn for_model(model: &str) -> Self {
        Self {
            url: default_url(),
            model: model.into(),
            options: Map::new(),
            format: None,
            keep_alive: None,
            system: None,
            prompt: None,
            history_variable: None,
            timeout: default_timeout(),
            max_concurrency: None,
            max_retries: stack::default_ai_max_retries(),
            retry_backoff: stack::default_retry_backoff(),
            retry_budget: RetryBudgetConfig::default(),
            circuit: CircuitConfig::default(),
            probe: ProbeConfig::default(),
        }
    }

    /// How the stack wraps this endpoint.
    pub fn policy(&self) -> Policy {
        Policy {
            timeout: Some(self.timeout + stack::TIMEOUT_GRACE),
            max_concurrency: self.max_concurrency,
            circuit: self.circuit.clone(),
            retry: RetryPolicy::new(self.max_retries, self.retry_backoff, &self.retry_budget),
            probe: self.probe.schedule(true),
        }
    }

    /// Every problem of this config as (path suffix, message). Pure.
    pub fn validate(&self) -> Vec<(String, String)> {
        self.compile("").err().unwrap_or_default()
    }

    fn compile(
        &self,
        prefix: &str,
    ) -> Result<(reqwest::Url, Format, Prompts), Vec<(String, String)>> {
        let mut problems = Vec::new();
        let url = llm::check_base_url(&self.url)
            .map_err(|m| problems.push(("url".into(), m)))
            .ok();
        if self.model.trim().is_empty() {
            problems.push(("model".into(), "must not be empty".into()));
        }
        let format = Format::parse(self.format.as_ref())
            .map_err(|m| problems.push(("format".into(), m)))
            .ok();
        if self
            .keep_alive
            .as_ref()
            .is_some_and(|k| !(k.is_string() || k.is_number()))
        {
            problems.push((
                "keep_alive".into(),
                "must be a duration such as `5m`, or a number of seconds".into(),
            ));
        }
        problems.extend(stack::validate(
            Some(("timeout", self.timeout)),
            self.max_concurrency,
            &self.circuit,
            &self.probe,
            Some(&self.retry_budget),
        ));
        let prompts = Prompts::compile(
            prefix,
            PromptSources {
                system: self.system.as_deref(),
                prompt: self.prompt.as_deref(),
                history_variable: self.history_variable.as_deref(),
            },
        )
        .map_err(|p| problems.extend(p))
        .ok();
        match (url, format, prompts) {
            (Some(u), Some(f), Some(p)) if problems.is_empty() => Ok((u, f, p)),
            _ => Err(problems),
        }
    }
}

/// The ollama endpoint: the shared client, compiled prompts.
#[derive(Debug)]
pub struct OllamaEndpoint {
    site: Site,
    client: reqwest::Client,
    chat_url: reqwest::Url,
    tags_url: reqwest::Url,
    model: String,
    options: Map<String, Value>,
    format: Format,
    keep_alive: Option<Value>,
    prompts: Prompts,
    timeout: Duration,
}

impl OllamaEndpoint {
    /// Builds it from its config (no network), with a client of its own.
    pub fn new(name: &str, config: &OllamaConfig) -> Result<Self, EndpointError> {
        Self::with_client(name, config, &super::shared_client())
    }

    /// Builds it from its config (no network) over `client`, the daemon's shared one.
    pub fn with_client(
        name: &str,
        config: &OllamaConfig,
        client: &reqwest::Client,
    ) -> Result<Self, EndpointError> {
        let (url, format, prompts) =
            config
                .compile(&format!("endpoints.{name}."))
                .map_err(|problems| {
                    let list: Vec<String> =
                        problems.iter().map(|(p, m)| format!("{p}: {m}")).collect();
                    EndpointError::permanent(format!(
                        "endpoint `{name}` is misconfigured: {}",
                        list.join("; ")
                    ))
                    .code(class::CONFIG)
                })?;
        let client = client.clone();
        Ok(Self {
            site: Site {
                endpoint: name.to_string(),
                provider: Provider::Ollama,
                server: llm::display_url(&url),
                model: config.model.clone(),
                refusal_code: super::openai::default_refusal_error_code(),
            },
            client,
            chat_url: llm::join(&url, "api/chat"),
            tags_url: llm::join(&url, "api/tags"),
            model: config.model.clone(),
            options: config.options.clone(),
            format,
            keep_alive: config.keep_alive.clone(),
            prompts,
            timeout: config.timeout,
        })
    }

    /// The request body for one task, and whether the reply is JSON.
    fn body(&self, request: &EndpointRequest) -> Result<(Value, bool), EndpointError> {
        let format = match &self.format {
            Format::Text => None,
            Format::Json => Some((json!("json"), None)),
            Format::TopicSchema => match &request.output_schema {
                Some(schema) => Some((schema.as_ref().clone(), Some(schema.as_ref()))),
                None => Some((json!("json"), None)),
            },
            Format::Schema(schema) => Some((schema.as_ref().clone(), Some(schema.as_ref()))),
        };
        let instruction = format
            .as_ref()
            .map(|(_, schema)| llm::json_instruction(*schema));
        let messages = self.prompts.messages(request, instruction.as_deref())?;
        let mut body = json!({"model": self.model, "messages": messages, "stream": false});
        if !self.options.is_empty() {
            body["options"] = Value::Object(self.options.clone());
        }
        if let Some(keep_alive) = &self.keep_alive {
            body["keep_alive"] = keep_alive.clone();
        }
        let is_json = format.is_some();
        if let Some((format, _)) = format {
            body["format"] = format;
        }
        Ok((body, is_json))
    }

    /// Asks the server which models it has; the configured one must be among them.
    async fn list_tags(&self) -> Result<(), EndpointError> {
        let builder = self.client.get(self.tags_url.clone());
        let never = tokio_util::sync::CancellationToken::new();
        let body = llm::exchange(&self.site, builder, &never).await?;
        let tags: Tags = serde_json::from_slice(&body)
            .map_err(|e| llm::unexpected_body(&self.site, &body, &e.to_string()))?;
        let listed = tags
            .models
            .iter()
            .flat_map(|m| [m.name.as_deref(), m.model.as_deref()])
            .flatten()
            .any(|name| same_model(name, &self.model));
        if listed {
            Ok(())
        } else {
            Err(self.site.model_missing())
        }
    }
}

/// Does a listed model name mean the configured one? `llama3` is `llama3:latest`.
fn same_model(listed: &str, wanted: &str) -> bool {
    listed == wanted || (!wanted.contains(':') && listed == format!("{wanted}:latest"))
}

/// `GET /api/tags`.
#[derive(Debug, Deserialize)]
struct Tags {
    #[serde(default)]
    models: Vec<Tag>,
}

#[derive(Debug, Deserialize)]
struct Tag {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    model: Option<String>,
}

/// `POST /api/chat` with `stream: false`.
#[derive(Debug, Deserialize)]
struct ChatResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    message: Option<ChatMessage>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    #[serde(default)]
    content: String,
}

#[async_trait]
impl Endpoint for OllamaEndpoint {
    fn name(&self) -> &str {
        &self.site.endpoint
    }

    fn kind(&self) -> &'static str {
        "ollama"
    }

    /// Only reads (a model's answer changes nothing outside procos): safe to run again.
    fn side_effects(&self) -> bool {
        false
    }

    /// `GET {url}/api/tags`: the server answers and has the model.
    async fn probe(&self) -> Result<(), EndpointError> {
        self.list_tags().await
    }

    async fn call(&self, request: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
        let (body, is_json) = self.body(request)?;
        let builder = self
            .client
            .post(self.chat_url.clone())
            .timeout(self.timeout)
            .json(&body);
        let started = Instant::now();
        let bytes = llm::exchange(&self.site, builder, &request.cancel).await?;
        let answer: ChatResponse = serde_json::from_slice(&bytes)
            .map_err(|e| llm::unexpected_body(&self.site, &bytes, &e.to_string()))?;
        let Some(message) = answer.message else {
            return Err(llm::unexpected_body(&self.site, &bytes, "no `message`"));
        };
        let output = llm::parse_reply(&message.content, is_json)?;
        let usage = llm::usage(
            answer.model.or_else(|| Some(self.model.clone())),
            answer.prompt_eval_count.unwrap_or_default(),
            answer.eval_count.unwrap_or_default(),
            None,
        );
        llm::log_usage(&self.site.endpoint, &usage, started.elapsed());
        Ok(EndpointReply {
            output,
            usage: Some(usage),
        })
    }
}

#[cfg(test)]
mod tests;
