//! What the `openai` and `ollama` endpoints share: prompts, reply parsing, cost, and the one
//! mapping from an LLM server's answer to an [`EndpointError`].
//!
//! ```text
//! request ─► Prompts::messages ─► [system (+ JSON instruction)] [history…] [user prompt] [feedback]
//!                                                         │
//!            exchange (send, read, cancel)    ◄──────┘   (each endpoint builds its body)
//!               │ 2xx ─► endpoint parses its wire format ─► parse_reply (text | JSON, fences)
//!               └ else ─► status_error: code, type and message first (auth · quota_exceeded
//!                          · context_length · content_policy), then the status: 401/403 auth
//!                          · 429 rate_limited · 408/5xx http_5xx · 4xx; retry hints read by
//!                          http::retry_after (Retry-After, retry-after-ms, x-ratelimit-reset-*)
//! ```
//!
//! Prompts are minijinja templates (see [`template`](super::template)) compiled once at build.
//! A `pde.prompt` extension property overrides the configured prompt per BPMN task; since it
//! varies by task it is compiled on first use and kept in a small cache keyed by its source.
//!
//! Every message and detail built here from a server's answer passes through
//! [`redact`](crate::config::secret::redact), the one process-wide redaction: the endpoint's API
//! key and header values are `Secret` fields of the config, registered there when it was read,
//! so a server echoing one back never shows it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::classify::status_error;
use super::http::{head, read_capped, retry_after, transport_error};
use super::template::{Template, TemplateContext, TemplateError};
use super::{EndpointError, EndpointRequest, Usage};
use crate::config::secret::redact;
use crate::endpoints::class;

/// Extension property holding a per-task prompt template.
pub const PROMPT_PROPERTY: &str = "pde.prompt";
/// The prompt used when neither the config nor the task gives one: the task variable `prompt`.
pub const DEFAULT_PROMPT: &str = "{{ prompt }}";
/// How many distinct `pde.prompt` sources stay compiled; the cache is emptied when it is full.
const PROMPT_CACHE_SIZE: usize = 64;
/// How much of a response body goes into an error's details.
const DETAILS_LIMIT: usize = 4 * 1024;
/// How much of a server's own error message goes into an error's one-line message.
const SERVER_MESSAGE_LIMIT: usize = 300;
/// Largest response body read from a model server.
pub(crate) const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// One chat message, as both OpenAI and Ollama take it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.to_string(),
            content: content.into(),
        }
    }
}

/// Price per 1 000 tokens, for cost accounting (`price_per_1k: { input: 0.0025, output: 0.01 }`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pricing {
    /// Price of 1 000 prompt tokens.
    #[serde(default)]
    pub input: f64,
    /// Price of 1 000 completion tokens.
    #[serde(default)]
    pub output: f64,
}

impl Pricing {
    /// Cost of a call with these token counts.
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        (input_tokens as f64 * self.input + output_tokens as f64 * self.output) / 1000.0
    }

    /// Problems with the prices, as (path suffix, message).
    pub(crate) fn validate(&self) -> Vec<(String, String)> {
        [("input", self.input), ("output", self.output)]
            .into_iter()
            .filter(|(_, p)| !p.is_finite() || *p < 0.0)
            .map(|(f, _)| (format!("price_per_1k.{f}"), "must be zero or more".into()))
            .collect()
    }
}

/// The prompt settings of an AI endpoint, borrowed from its config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PromptSources<'a> {
    /// System prompt template.
    pub system: Option<&'a str>,
    /// User prompt template; [`DEFAULT_PROMPT`] when absent.
    pub prompt: Option<&'a str>,
    /// Variable holding earlier messages (`[{role, content}]`), inserted before the prompt.
    pub history_variable: Option<&'a str>,
}

/// Compiled prompts of one endpoint.
#[derive(Debug)]
pub(crate) struct Prompts {
    system: Option<Template>,
    prompt: Template,
    history_variable: Option<String>,
    cache: PromptCache,
}

impl Prompts {
    /// Compiles the templates, naming them `<prefix>system` / `<prefix>prompt`.
    pub fn compile(
        prefix: &str,
        sources: PromptSources<'_>,
    ) -> Result<Self, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mut compile = |field: &str, source: &str| {
            Template::compile(&format!("{prefix}{field}"), source)
                .map_err(|e| problems.push((field.to_string(), e.to_string())))
                .ok()
        };
        let system = sources.system.map(|s| compile("system", s));
        let prompt = compile("prompt", sources.prompt.unwrap_or(DEFAULT_PROMPT));
        if sources
            .history_variable
            .is_some_and(|v| v.trim().is_empty())
        {
            problems.push(("history_variable".into(), "must not be empty".into()));
        }
        match (system, prompt) {
            (system, Some(prompt)) if problems.is_empty() => Ok(Self {
                system: system.flatten(),
                prompt,
                history_variable: sources.history_variable.map(str::to_string),
                cache: PromptCache::default(),
            }),
            _ => Err(problems),
        }
    }

    /// The conversation for one task: system prompt (plus `instruction`, e.g. "reply in JSON"),
    /// the history variable's messages, the prompt (`pde.prompt` wins over the config), and on a
    /// retry the previous attempt's rejection as a last user message.
    pub fn messages(
        &self,
        request: &EndpointRequest,
        instruction: Option<&str>,
    ) -> Result<Vec<Message>, EndpointError> {
        let ctx = TemplateContext::new(request);
        let render = |t: &Template| t.render(&ctx).map_err(template_error);
        let mut messages = Vec::new();
        let system = self.system.as_ref().map(render).transpose()?;
        let system = match (system, instruction) {
            (Some(s), Some(i)) => Some(format!("{s}\n\n{i}")),
            (s, i) => s.or(i.map(str::to_string)),
        };
        if let Some(system) = system {
            messages.push(Message::new("system", system));
        }
        if let Some(name) = &self.history_variable {
            messages.extend(history(request, name)?);
        }
        let prompt = match request.properties.get(PROMPT_PROPERTY) {
            Some(source) => self.cache.get(source).map_err(template_error)?,
            None => self.prompt.clone(),
        };
        messages.push(Message::new("user", render(&prompt)?));
        if let Some(feedback) = &request.feedback {
            messages.push(Message::new(
                "user",
                format!(
                    "Your previous answer was rejected: {feedback}\nAnswer again, fixing this."
                ),
            ));
        }
        Ok(messages)
    }
}

fn template_error(e: TemplateError) -> EndpointError {
    EndpointError::permanent(e.to_string()).code(class::TEMPLATE)
}

/// The messages in variable `name`: absent or null means none; anything but a list of
/// `{role, content}` objects is an input error naming the variable.
fn history(request: &EndpointRequest, name: &str) -> Result<Vec<Message>, EndpointError> {
    let value = match request.variables.get(name) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(v) => v,
    };
    let bad = |why: String| {
        EndpointError::permanent(format!("variable `{name}` (chat history) {why}"))
            .code(class::INPUT_INVALID)
    };
    let Value::Array(items) = value else {
        return Err(bad("must be a list of {role, content} messages".into()));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let message: Message = serde_json::from_value(item.clone())
                .map_err(|e| bad(format!("item {i} is not a {{role, content}} message: {e}")))?;
            match message.role.as_str() {
                "system" | "user" | "assistant" => Ok(message),
                other => Err(bad(format!(
                    "item {i} has role `{other}`; expected system, user or assistant"
                ))),
            }
        })
        .collect()
}

/// Compiled `pde.prompt` templates, keyed by source, bounded by [`PROMPT_CACHE_SIZE`].
#[derive(Debug, Default)]
struct PromptCache {
    map: Mutex<HashMap<String, Template>>,
}

impl PromptCache {
    fn get(&self, source: &str) -> Result<Template, TemplateError> {
        if let Some(t) = lock(&self.map).get(source) {
            return Ok(t.clone());
        }
        let name = format!("properties.{PROMPT_PROPERTY}");
        let template = Template::compile(&name, source)?;
        let mut map = lock(&self.map);
        if map.len() >= PROMPT_CACHE_SIZE {
            map.clear();
        }
        map.insert(source.to_string(), template.clone());
        Ok(template)
    }
}

/// Locks a mutex; a poisoned one (a panic while held) still holds usable data for a cache.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The system-prompt line asking for JSON, with the schema when there is one.
pub(crate) fn json_instruction(schema: Option<&Value>) -> String {
    let mut text = String::from("Reply with a single JSON object and nothing else.");
    if let Some(schema) = schema {
        text.push_str(" It must satisfy this JSON Schema:\n");
        text.push_str(&schema.to_string());
    }
    text
}

/// Turns a model's text into the endpoint's output: the text itself, or in JSON mode the parsed
/// JSON (a ```` ```json ```` fence around it is removed). A reply that is not JSON is an
/// `invalid_json` [`InvalidOutput`](super::ErrorKind::InvalidOutput); its message is written to
/// be fed back to the model.
pub(crate) fn parse_reply(text: &str, json: bool) -> Result<Value, EndpointError> {
    if !json {
        return Ok(Value::String(text.to_string()));
    }
    let body = strip_fences(text);
    serde_json::from_str(body).map_err(|e| {
        EndpointError::invalid_output(format!(
            "the reply is not valid JSON ({e}); reply with a single JSON object only, no prose \
             and no code fences"
        ))
        .code(class::INVALID_JSON)
        .details(head(text.as_bytes(), DETAILS_LIMIT))
    })
}

/// The JSON inside a Markdown code fence, or the trimmed text when there is none.
fn strip_fences(text: &str) -> &str {
    let trimmed = text.trim();
    let Some(start) = trimmed.find("```") else {
        return trimmed;
    };
    let after = &trimmed[start + 3..];
    // Skip the info string (`json`) up to the end of the fence's first line.
    let Some(newline) = after.find('\n') else {
        return trimmed;
    };
    let inner = &after[newline + 1..];
    match inner.find("```") {
        Some(end) => inner[..end].trim(),
        None => inner.trim(),
    }
}

/// Usage of a call, with its cost when prices are configured.
pub(crate) fn usage(
    model: Option<String>,
    input_tokens: u64,
    output_tokens: u64,
    pricing: Option<&Pricing>,
) -> Usage {
    Usage {
        model,
        input_tokens,
        output_tokens,
        cost: pricing.map(|p| p.cost(input_tokens, output_tokens)),
    }
}

/// The usage log line of a successful call (no prompt or reply text: those are payloads).
pub(crate) fn log_usage(endpoint: &str, usage: &Usage, elapsed: Duration) {
    tracing::info!(
        endpoint,
        model = usage.model.as_deref().unwrap_or(""),
        input_tokens = usage.input_tokens,
        output_tokens = usage.output_tokens,
        cost = usage.cost,
        elapsed_ms = elapsed.as_millis() as u64,
        "Model answered."
    );
}

/// Which wire dialect a server speaks, for error texts and error-body shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provider {
    /// OpenAI or an OpenAI-compatible server.
    OpenAi,
    /// Ollama.
    Ollama,
}

/// Where a call goes, for error messages: endpoint name, server, model, what to hide.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    /// The endpoint's name in `pde.yaml`.
    pub endpoint: String,
    /// The dialect.
    pub provider: Provider,
    /// The server as shown in messages (no credentials, no query).
    pub server: String,
    /// The configured model.
    pub model: String,
    /// BPMN error code of a content-policy refusal.
    pub refusal_code: String,
}

impl Site {
    fn describe(&self) -> String {
        match self.provider {
            Provider::OpenAi => format!("endpoint `{}` ({})", self.endpoint, self.server),
            Provider::Ollama => format!("endpoint `{}` (Ollama at {})", self.endpoint, self.server),
        }
    }

    /// The "model not pulled" error.
    pub fn model_missing(&self) -> EndpointError {
        EndpointError::fallback(format!(
            "model {model} is not available on {server}; run `ollama pull {model}`",
            model = self.model,
            server = self.server
        ))
        .code(class::MODEL_NOT_FOUND)
    }

    /// Wraps an error that is not about the server's answer, redacting it.
    pub fn transport(&self, error: reqwest::Error) -> EndpointError {
        let e = transport_error(error, &reqwest::Method::POST, &self.server);
        // `transport_error` prefixes "POST <host>: "; `describe` already names the server.
        let prefix = format!("POST {}: ", self.server);
        let what = e.message.strip_prefix(&prefix).unwrap_or(&e.message);
        let mut e = EndpointError {
            message: redact(&format!("{}: {what}", self.describe())),
            ..e
        };
        if e.code.as_deref() == Some("connect") && self.provider == Provider::Ollama {
            e.message = format!("{} (is Ollama running?)", e.message);
        }
        e
    }
}

/// Sends one request and returns the body of a 2xx answer; anything else is mapped by
/// [`status_error`]. Gives up when the task is cancelled (the concurrency limit is the stack's).
pub(crate) async fn exchange(
    site: &Site,
    builder: reqwest::RequestBuilder,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Vec<u8>, EndpointError> {
    let work = async {
        // The current trace span's `traceparent` (openai and ollama; nothing when traces are off).
        let (client, request) = builder.build_split();
        let mut request = request.map_err(|e| site.transport(e))?;
        crate::telemetry::traces::inject(request.headers_mut());
        let mut response = client
            .execute(request)
            .await
            .map_err(|e| site.transport(e))?;
        let status = response.status();
        let retry_after = retry_after(&response);
        let Some(body) = read_capped(&mut response, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| site.transport(e))?
        else {
            return Err(EndpointError::transient(format!(
                "{}: response body exceeds {MAX_RESPONSE_BYTES} bytes",
                site.describe()
            ))
            .code(class::RESPONSE_TOO_LARGE));
        };
        if status.is_success() {
            Ok(body)
        } else {
            Err(status_error(site, status, retry_after, &body))
        }
    };
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(EndpointError::cancelled()),
        result = work => result,
    }
}

/// A 2xx body that is not the documented shape: the server (or a proxy) misbehaved.
pub(crate) fn unexpected_body(site: &Site, body: &[u8], why: &str) -> EndpointError {
    EndpointError::transient(format!(
        "{} sent an answer procos cannot read: {why}",
        site.describe()
    ))
    .code(class::INVALID_RESPONSE)
    .details(redact(&head(body, DETAILS_LIMIT)))
}

/// Checks a base URL without echoing it (it may carry credentials); `Ok` is the URL with any
/// trailing `/` removed.
pub(crate) fn check_base_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text.trim().trim_end_matches('/'))
        .map_err(|e| format!("is not a valid URL ({e})"))?;
    match (url.scheme(), url.host_str()) {
        ("http" | "https", Some(_)) => Ok(url),
        _ => Err("must be an http:// or https:// URL with a host".into()),
    }
}

/// A URL as shown in messages: scheme, host, port and path; no user, password or query.
pub(crate) fn display_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.as_str().trim_end_matches('/').to_string()
}

/// `url` with `segments` appended to its path (`…/v1` + `chat/completions`).
pub(crate) fn join(url: &reqwest::Url, segments: &str) -> reqwest::Url {
    let mut out = url.clone();
    let path = format!("{}/{segments}", url.path().trim_end_matches('/'));
    out.set_path(&path);
    out
}

mod classify;
#[cfg(test)]
mod tests;
