//! `openai`: a chat completion from OpenAI or any OpenAI-compatible server (vLLM, LM Studio,
//! llama.cpp server, LiteLLM, Azure OpenAI via `base_url` + `headers`).
//!
//! ```text
//! request ─► messages (llm::Prompts) ─► POST {base_url}/chat/completions
//!   {model, messages, temperature?, max_tokens?, response_format?}
//!                                           │ 2xx: choices[0].message.content, usage
//!   text ─► "reply"  ·  json_object / json_schema ─► parsed JSON (fences stripped)
//!   refusal / finish_reason content_filter ─► BPMN error `refusal_error_code`
//! ```
//!
//! Errors are mapped once, in [`llm::status_error`]. The API key is a [`Secret`]: it is sent as a
//! sensitive `Authorization` header and scrubbed from anything a server sends back. With no key
//! and the default `base_url` the endpoint reports itself unusable ("no API key configured") so
//! procos still starts and routes around it; a custom `base_url` without a key sends no
//! `Authorization` header (local servers usually need none).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};

use super::llm::{self, Pricing, PromptSources, Prompts, Provider, Site};
use super::stack::{self, CircuitConfig, Policy, ProbeConfig, RetryBudgetConfig, RetryPolicy};
use super::{Endpoint, EndpointError, EndpointReply, EndpointRequest};
use crate::config::Secret;
use crate::endpoints::class;

/// Where OpenAI itself lives; with this base URL an API key is required.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// `type: openai`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// The API root; `/chat/completions` is appended (a query such as `?api-version=…` is kept).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Sent as `Authorization: Bearer …`. Usually `"${OPENAI_API_KEY}"`; never printed.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// The model, e.g. `gpt-4o-mini`.
    pub model: String,
    /// Sampling temperature, 0 to 2.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Cap on completion tokens.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// System prompt template.
    #[serde(default)]
    pub system: Option<String>,
    /// User prompt template; default `{{ prompt }}`. The `pde.prompt` property overrides it.
    #[serde(default)]
    pub prompt: Option<String>,
    /// Variable holding earlier messages (`[{role, content}]`): chat history or few-shot examples.
    #[serde(default)]
    pub history_variable: Option<String>,
    /// `text` (default), `json_object` or `json_schema`.
    #[serde(default)]
    pub response_format: ResponseFormat,
    /// Schema for `json_schema`; by default the topic's `output.schema`.
    #[serde(default)]
    pub schema: Option<Value>,
    /// Bound on one HTTP call (connect, send, read); the stack's timeout layer backs it.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Bound on calls in flight through this endpoint (the stack's limit); unbounded when absent.
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    /// Prices per 1 000 tokens, for the cost in usage figures.
    #[serde(default)]
    pub price_per_1k: Option<Pricing>,
    /// Extra headers (e.g. Azure's `api-key`, an `OpenAI-Organization`); never printed.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// BPMN error raised when the model or the server refuses on content-policy grounds.
    #[serde(default = "default_refusal_error_code")]
    pub refusal_error_code: String,
    /// Extra calls after a transient failure (5xx, 429, timeout), with backoff.
    #[serde(default = "stack::default_ai_max_retries")]
    pub max_retries: u32,
    /// First backoff delay; doubles per retry. A server's retry hint wins when it sends one
    /// (`Retry-After`, `retry-after-ms`, a gateway's relayed `llm_provider-retry-after`, …).
    #[serde(default = "stack::default_retry_backoff", with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// How many retries the calls may add (a share of the calls).
    #[serde(default)]
    pub retry_budget: RetryBudgetConfig,
    /// When to pause calling a failing server.
    #[serde(default)]
    pub circuit: CircuitConfig,
    /// The background probe: `GET {base_url}/models` with the key (on by default).
    #[serde(default)]
    pub probe: ProbeConfig,
}

/// How the model is asked to answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text, into the topic's output variable (default `result`).
    #[default]
    Text,
    /// Any JSON object (`response_format: {type: json_object}`); keys become variables.
    JsonObject,
    /// JSON constrained by a schema (`response_format: {type: json_schema}`); the endpoint's
    /// `schema`, else the topic's output schema, else plain `json_object`.
    JsonSchema,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(60)
}
pub(crate) fn default_refusal_error_code() -> String {
    "CONTENT_REFUSED".into()
}

impl OpenAiConfig {
    /// A config for `model` with every default, for tests and code-built configs.
    pub fn for_model(model: &str) -> Self {
        Self {
            base_url: default_base_url(),
            api_key: None,
            model: model.into(),
            temperature: None,
            max_tokens: None,
            system: None,
            prompt: None,
            history_variable: None,
            response_format: ResponseFormat::Text,
            schema: None,
            timeout: default_timeout(),
            max_concurrency: None,
            price_per_1k: None,
            headers: BTreeMap::new(),
            refusal_error_code: default_refusal_error_code(),
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

    /// Every problem of this config as (path suffix, message). Pure; never echoes a value.
    pub fn validate(&self) -> Vec<(String, String)> {
        self.compile("").err().unwrap_or_default()
    }

    /// Checks everything and builds what can be built without I/O.
    fn compile(&self, prefix: &str) -> Result<Compiled, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let url = llm::check_base_url(&self.base_url)
            .map_err(|m| problems.push(("base_url".into(), m)))
            .ok();
        if self.model.trim().is_empty() {
            problems.push(("model".into(), "must not be empty".into()));
        }
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            problems.push(("temperature".into(), "must be between 0 and 2".into()));
        }
        if self.max_tokens == Some(0) {
            problems.push(("max_tokens".into(), "must be at least 1".into()));
        }
        if self.schema.as_ref().is_some_and(|s| !s.is_object()) {
            problems.push(("schema".into(), "must be a JSON Schema object".into()));
        }
        problems.extend(stack::validate(
            Some(("timeout", self.timeout)),
            self.max_concurrency,
            &self.circuit,
            &self.probe,
            Some(&self.retry_budget),
        ));
        if self.refusal_error_code.trim().is_empty() {
            problems.push(("refusal_error_code".into(), "must not be empty".into()));
        }
        if let Some(p) = &self.price_per_1k {
            problems.extend(p.validate());
        }
        let headers = header_map(&self.headers, &mut problems);
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
        match (url, prompts) {
            (Some(url), Some(prompts)) if problems.is_empty() => Ok(Compiled {
                url,
                headers,
                prompts,
            }),
            _ => Err(problems),
        }
    }
}

/// Extra headers as a map of sensitive values; bad names or values become problems (the value
/// itself is never named).
fn header_map(
    headers: &BTreeMap<String, Secret>,
    problems: &mut Vec<(String, String)>,
) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let field = format!("headers.{name}");
        let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
            problems.push((field, format!("`{name}` is not a valid header name")));
            continue;
        };
        match HeaderValue::from_str(value.expose()) {
            Ok(mut v) => {
                v.set_sensitive(true);
                map.insert(header, v);
            }
            Err(_) => problems.push((field, "is not a valid header value".into())),
        }
    }
    map
}

/// What `compile` produces.
struct Compiled {
    url: reqwest::Url,
    headers: HeaderMap,
    prompts: Prompts,
}

/// The openai endpoint: one pooled client, compiled prompts, headers ready to send.
#[derive(Debug)]
pub struct OpenAiEndpoint {
    /// Where errors point, and what they must not show.
    site: Site,
    client: reqwest::Client,
    /// `{base_url}/chat/completions`.
    url: reqwest::Url,
    /// `Authorization` and extra headers, all marked sensitive (Debug shows `Sensitive`).
    headers: HeaderMap,
    /// Set when the default base URL is used without a key: the endpoint cannot work.
    missing_key: bool,
    model: String,
    temperature: Option<f64>,
    max_tokens: Option<u32>,
    prompts: Prompts,
    format: ResponseFormat,
    schema: Option<Arc<Value>>,
    timeout: Duration,
    pricing: Option<Pricing>,
    /// `{base_url}/models`, what the probe asks.
    models_url: reqwest::Url,
}

impl OpenAiEndpoint {
    /// Builds it from its config (no network), with a client of its own.
    pub fn new(name: &str, config: &OpenAiConfig) -> Result<Self, EndpointError> {
        Self::with_client(name, config, &super::shared_client())
    }

    /// Builds it from its config (no network) over `client`, the daemon's shared one.
    pub fn with_client(
        name: &str,
        config: &OpenAiConfig,
        client: &reqwest::Client,
    ) -> Result<Self, EndpointError> {
        let compiled = config
            .compile(&format!("endpoints.{name}."))
            .map_err(|problems| misconfigured(name, &problems))?;
        let mut headers = compiled.headers;
        let key = config.api_key.clone().filter(|k| !k.is_empty());
        if let Some(key) = &key {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", key.expose())).map_err(|_| {
                    misconfigured(
                        name,
                        &[("api_key".into(), "is not a valid header value".into())],
                    )
                })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let default_server = compiled.url.host_str() == Some("api.openai.com");
        let client = client.clone();
        Ok(Self {
            site: Site {
                endpoint: name.to_string(),
                provider: Provider::OpenAi,
                server: llm::display_url(&compiled.url),
                model: config.model.clone(),
                refusal_code: config.refusal_error_code.clone(),
            },
            client,
            url: llm::join(&compiled.url, "chat/completions"),
            headers,
            missing_key: key.is_none() && default_server,
            model: config.model.clone(),
            temperature: config.temperature,
            max_tokens: config.max_tokens,
            prompts: compiled.prompts,
            format: config.response_format,
            schema: config.schema.clone().map(Arc::new),
            timeout: config.timeout,
            pricing: config.price_per_1k.clone(),
            models_url: llm::join(&compiled.url, "models"),
        })
    }

    fn no_key(&self) -> EndpointError {
        EndpointError::permanent(format!(
            "no API key configured for endpoint `{}` ({}); set `api_key` (e.g. \"${{OPENAI_API_KEY}}\")",
            self.site.endpoint, self.site.server
        ))
        .code(class::AUTH)
    }

    /// The request body for one task, and whether the reply is JSON.
    fn body(&self, request: &EndpointRequest) -> Result<(Value, bool), EndpointError> {
        let schema = self
            .schema
            .clone()
            .or_else(|| request.output_schema.clone());
        let (response_format, instruction) = match (self.format, &schema) {
            (ResponseFormat::Text, _) => (None, None),
            (ResponseFormat::JsonSchema, Some(schema)) => (
                Some(json!({
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": schema.as_ref(), "strict": false},
                })),
                Some(llm::json_instruction(None)),
            ),
            (ResponseFormat::JsonObject | ResponseFormat::JsonSchema, schema) => (
                Some(json!({"type": "json_object"})),
                Some(llm::json_instruction(schema.as_deref())),
            ),
        };
        let messages = self.prompts.messages(request, instruction.as_deref())?;
        let mut body = json!({"model": self.model, "messages": messages});
        if let Some(t) = self.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(n) = self.max_tokens {
            body["max_tokens"] = json!(n);
        }
        let is_json = response_format.is_some();
        if let Some(format) = response_format {
            body["response_format"] = format;
        }
        Ok((body, is_json))
    }

    /// Turns a 2xx body into the reply.
    fn reply(&self, body: &[u8], is_json: bool) -> Result<EndpointReply, EndpointError> {
        let answer: ChatResponse = serde_json::from_slice(body)
            .map_err(|e| llm::unexpected_body(&self.site, body, &e.to_string()))?;
        let Some(choice) = answer.choices.into_iter().next() else {
            return Err(llm::unexpected_body(&self.site, body, "no choices"));
        };
        let refused = choice.message.refusal.filter(|r| !r.trim().is_empty());
        if refused.is_some() || choice.finish_reason.as_deref() == Some("content_filter") {
            let why = refused.unwrap_or_else(|| "finish_reason content_filter".into());
            let why: String = why.chars().take(300).collect();
            return Err(EndpointError::business(
                &self.site.refusal_code,
                format!(
                    "endpoint `{}`: the model refused: {why}",
                    self.site.endpoint
                ),
            )
            .code(class::CONTENT_POLICY));
        }
        let text = choice.message.content.unwrap_or_default();
        let output = llm::parse_reply(&text, is_json).map_err(|e| {
            if choice.finish_reason.as_deref() == Some("length") {
                EndpointError {
                    message: format!(
                        "the reply was cut off at the token limit before the JSON was complete; \
                         give a shorter answer ({})",
                        e.message
                    ),
                    ..e
                }
            } else {
                e
            }
        })?;
        let (input, output_tokens) = answer
            .usage
            .map(|u| (u.prompt_tokens, u.completion_tokens))
            .unwrap_or_default();
        let usage = llm::usage(
            answer.model.or_else(|| Some(self.model.clone())),
            input,
            output_tokens,
            self.pricing.as_ref(),
        );
        Ok(EndpointReply {
            output,
            usage: Some(usage),
        })
    }
}

/// The misconfiguration error of `new`, listing every problem.
fn misconfigured(name: &str, problems: &[(String, String)]) -> EndpointError {
    let list: Vec<String> = problems.iter().map(|(p, m)| format!("{p}: {m}")).collect();
    EndpointError::permanent(format!(
        "endpoint `{name}` is misconfigured: {}",
        list.join("; ")
    ))
    .code(class::CONFIG)
}

/// The parts of a chat completion procos reads.
#[derive(Debug, Deserialize)]
struct ChatResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<ApiUsage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    message: ChoiceMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ApiUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

#[async_trait]
impl Endpoint for OpenAiEndpoint {
    fn name(&self) -> &str {
        &self.site.endpoint
    }

    fn kind(&self) -> &'static str {
        "openai"
    }

    /// Only reads (a model's answer changes nothing outside procos): safe to run again.
    fn side_effects(&self) -> bool {
        false
    }

    /// Without a key for OpenAI itself, it cannot work: known from the config, no I/O.
    fn usable(&self) -> Result<(), EndpointError> {
        if self.missing_key {
            return Err(self.no_key());
        }
        Ok(())
    }

    /// `GET {base_url}/models` with the key: the server answers and takes the key. A server that
    /// does not list models (404, 405) has nothing to say about its health here: passes.
    async fn probe(&self) -> Result<(), EndpointError> {
        self.usable()?;
        let builder = self
            .client
            .get(self.models_url.clone())
            .headers(self.headers.clone());
        let never = tokio_util::sync::CancellationToken::new();
        match llm::exchange(&self.site, builder, &never).await {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.code.as_deref(), Some("http_404" | "http_405")) => Ok(()),
            Err(e) => Err(e.redacted()),
        }
    }

    async fn call(&self, request: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
        self.chat(request).await.map_err(EndpointError::redacted)
    }
}

impl OpenAiEndpoint {
    /// One chat completion; errors are redacted by the caller.
    async fn chat(&self, request: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
        if self.missing_key {
            return Err(self.no_key());
        }
        let (body, is_json) = self.body(request)?;
        let builder = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .timeout(self.timeout)
            .json(&body);
        let started = Instant::now();
        let bytes = llm::exchange(&self.site, builder, &request.cancel).await?;
        let reply = self.reply(&bytes, is_json)?;
        if let Some(usage) = &reply.usage {
            llm::log_usage(&self.site.endpoint, usage, started.elapsed());
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests;
