//! What an error answer of a model server means: [`status_error`], the one mapping from a
//! non-2xx answer to an [`EndpointError`], and what it reads from the body.
//!
//! ```text
//! body ─► ApiError::read ─► code · type · innererror.code · message (lowercased haystack)
//!           │ signs, most decisive first: auth ─ quota ─ context_length ─ content_policy
//!           └ none ─► the status decides: 429 · 408/5xx · Ollama 404 · other 4xx
//! ```
//!
//! Recorded answers of OpenAI, Azure OpenAI, Anthropic behind LiteLLM, LiteLLM itself, vLLM and
//! Ollama live in `fixtures/`; each states the class and kind it must get.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::{DETAILS_LIMIT, Provider, SERVER_MESSAGE_LIMIT, Site};
use crate::config::secret::redact;
use crate::endpoints::EndpointError;
use crate::endpoints::class;
use crate::endpoints::http::head;

/// THE mapping from a non-2xx answer of a model server to an [`EndpointError`].
///
/// The status alone is not enough: gateways (a LiteLLM proxy) answer with their own status, send
/// `"code": "<status>"` and a generic `type`, and keep the provider's meaning only in the
/// message. So the body's code, type *and* message are read first ([`Meaning`]), the status
/// decides only when they say nothing special.
///
/// | answer | kind | code |
/// |---|---|---|
/// | 401, 403, or a key the server or proxy did not accept (e.g. LiteLLM's 400 "No connected db.") | permanent (→ incident), says to check the key, never shows it | `auth` |
/// | quota or credit used up (`insufficient_quota`, "exceeded your current quota", a proxy's budget) | fallback (retrying will not help) | `quota_exceeded` |
/// | context window exceeded (OpenAI code, LiteLLM's `ContextWindowExceededError`, Anthropic's "prompt is too long", vLLM, Ollama) | fallback | `context_length` |
/// | content policy (`content_policy_violation`, `content_filter`, LiteLLM's `ContentPolicyViolationError`, OpenAI's "safety system") | BPMN error `refusal_error_code` | `content_policy` |
/// | 429 | transient, honouring the retry hints ([`retry_after`](crate::endpoints::http::retry_after)) | `rate_limited` |
/// | 408, 5xx | transient, honouring the retry hints | `http_<status>` |
/// | Ollama 404 "model … not found" | fallback, says to `ollama pull` | `model_not_found` |
/// | other 4xx | permanent | `http_<status>` |
pub(crate) fn status_error(
    site: &Site,
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> EndpointError {
    let code = status.as_u16();
    let api = ApiError::read(body);
    let said = if api.message.is_empty() {
        String::new()
    } else {
        let short: String = api.message.chars().take(SERVER_MESSAGE_LIMIT).collect();
        format!(": {}", redact(&short))
    };
    // `StatusCode`'s Display reads "529 <unknown status code>" for codes without a name.
    let shown = match status.canonical_reason() {
        Some(reason) => format!("{code} {reason}"),
        None => code.to_string(),
    };
    let answered = format!("{} answered {shown}{said}", site.describe());
    let meaning = match code {
        401 | 403 => Meaning::Auth,
        _ => api.meaning(),
    };
    let error = match (meaning, code) {
        (Meaning::Auth, _) => {
            // Servers may echo (part of) the key: neither their message nor body is kept.
            let proxy = if api.says(NO_DATABASE) {
                "; a LiteLLM proxy without a database accepts only its master key (it answered \
                 \"No connected db.\"), so check the proxy's setup too"
            } else if matches!(code, 401 | 403) {
                ""
            } else {
                ", and the proxy in front of the model"
            };
            return EndpointError::permanent(format!(
                "{} rejected the API key ({code}); check the key configured for endpoint `{}`{proxy}",
                site.describe(),
                site.endpoint
            ))
            .code(class::AUTH);
        }
        (Meaning::Quota, _) => EndpointError::fallback(answered).code(class::QUOTA_EXCEEDED),
        (Meaning::ContextLength, _) => {
            EndpointError::fallback(answered).code(class::CONTEXT_LENGTH)
        }
        (Meaning::ContentPolicy, _) => {
            EndpointError::business(&site.refusal_code, answered).code(class::CONTENT_POLICY)
        }
        (Meaning::Status, 429) => EndpointError::transient(answered)
            .retry_after(retry_after)
            .code(class::RATE_LIMITED),
        (Meaning::Status, 408 | 500..=599) => EndpointError::transient(answered)
            .retry_after(retry_after)
            .code(format!("http_{code}")),
        (Meaning::Status, 404)
            if site.provider == Provider::Ollama
                && api.message.to_lowercase().contains("not found") =>
        {
            site.model_missing()
        }
        (Meaning::Status, _) => EndpointError::permanent(answered).code(format!("http_{code}")),
    };
    if body.is_empty() {
        error
    } else {
        error.details(redact(&head(body, DETAILS_LIMIT)))
    }
}

/// What an error answer means beyond its status, read from its code, type and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meaning {
    /// The key (or the proxy's check of it) was refused.
    Auth,
    /// Quota, credit or a proxy's budget is used up.
    Quota,
    /// The input does not fit the model's context window.
    ContextLength,
    /// Refused on content-policy grounds.
    ContentPolicy,
    /// Nothing special: the status decides.
    Status,
}

/// LiteLLM's answer to a key other than its master key when it has no database to look it up.
const NO_DATABASE: &[&str] = &["no connected db", "no_db_connection"];
/// Signs of a refused key in a non-401 answer (proxies answer 400 or 500 for some of them).
const AUTH: &[&str] = &[
    "no connected db",
    "no_db_connection",
    "invalid_api_key",
    "incorrect api key",
    "authenticationerror",
    "authentication error",
    "auth_error",
    "expired_key",
    "no api key passed in",
];
/// Signs of used-up quota or credit: retrying later (within the task's retries) will not help.
/// Not a bare "quota": Azure's rate-limit message links to its quota-increase page.
const QUOTA: &[&str] = &[
    "insufficient_quota",
    "exceeded your current quota",
    "credit balance is too low",
    "budget_exceeded",
    "budget has been exceeded",
];
/// Signs of an input too long for the model.
const CONTEXT_LENGTH: &[&str] = &[
    "context_length_exceeded",
    "contextwindowexceeded",
    "maximum context length",
    "context length",
    "context window",
    "prompt is too long",
    "input is too long",
    "exceeds the maximum number of tokens",
];
/// Signs of a content-policy refusal.
const CONTENT_POLICY: &[&str] = &[
    "content_policy_violation",
    "contentpolicyviolation",
    "content_filter",
    "responsibleaipolicyviolation",
    "content management policy",
    "rejected as a result of our safety system",
    "flagged as potentially violating",
];

/// The fields of an error body that carry its meaning, lowercased for matching (the message is
/// also kept as sent, for the error's text).
#[derive(Debug, Default)]
struct ApiError {
    /// `code` (a string, or a number from vLLM), `type` and Azure's `innererror.code`, with the
    /// message: everything matched against the signs above.
    haystack: String,
    /// The server's own message (or the whole body when it is not JSON).
    message: String,
}

impl ApiError {
    /// Reads OpenAI's and the gateways' `{"error": {"message", "type", "code"}}` (Anthropic's
    /// `{"type": "error", "error": {…}}` too), Ollama's `{"error": "…"}`, vLLM's top-level
    /// `{"object": "error", "message", "type", "code": 400}` and a FastAPI `{"detail": "…"}`.
    /// A body that is not JSON is its own message.
    fn read(body: &[u8]) -> Self {
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            return Self::new(String::from_utf8_lossy(body).trim().to_string(), &[]);
        };
        let fields = match value.get("error") {
            Some(Value::String(message)) => return Self::new(message.clone(), &[]),
            Some(error @ Value::Object(_)) => error,
            _ => &value,
        };
        let message = ["message", "detail"]
            .iter()
            .find_map(|k| fields.get(*k).and_then(Value::as_str))
            .unwrap_or_default()
            .to_string();
        let tags: Vec<String> = [
            fields.get("code"),
            fields.get("type"),
            fields.pointer("/innererror/code"),
        ]
        .into_iter()
        .flatten()
        .filter_map(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect();
        Self::new(message, &tags)
    }

    fn new(message: String, tags: &[String]) -> Self {
        let haystack = format!("{} {}", tags.join(" "), message).to_lowercase();
        Self { haystack, message }
    }

    /// Whether the code, type or message shows one of `signs`.
    fn says(&self, signs: &[&str]) -> bool {
        signs.iter().any(|sign| self.haystack.contains(sign))
    }

    /// The meaning, most decisive first: a refused key explains everything after it; a used-up
    /// quota is not a rate limit; the context window and the content policy are the model's.
    fn meaning(&self) -> Meaning {
        [
            (AUTH, Meaning::Auth),
            (QUOTA, Meaning::Quota),
            (CONTEXT_LENGTH, Meaning::ContextLength),
            (CONTENT_POLICY, Meaning::ContentPolicy),
        ]
        .into_iter()
        .find(|(signs, _)| self.says(signs))
        .map_or(Meaning::Status, |(_, meaning)| meaning)
    }
}
