//! The REST client: one pooled keep-alive `reqwest::Client`, every call procos makes.
//!
//! ```text
//! caller ─► CamundaClient::complete(..) ─► Call{POST, /external-task/{id}/complete}
//!             │  url: base + percent-encoded segments, auth header (sensitive), timeout
//!             ▼
//!           2xx ─► decode body (Decode on bad JSON)     non-2xx ─► CamundaError::Engine{type, message, code, details}
//!           no answer ─► CamundaError::Transport (what happened in plain words; URL stripped)
//! ```
//!
//! Single calls never retry: callers decide (the fetch loop backs off, completion uses
//! [`with_retries`](super::backoff::with_retries)). Secrets appear only in the `Authorization`
//! header, which is marked sensitive; no error, log line or `Debug` output contains them.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::prelude::{BASE64_STANDARD, Engine as _};
use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::multipart::{Form, Part};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::error::{CamundaError, describe_transport};
use super::models::*;
use super::variables::VariableMap;
use crate::config::file::AuthConfig;
use crate::config::secret::redact_url;

/// Idle pooled connections are dropped before typical server keep-alive timeouts (60 s on
/// Tomcat/Camunda Run), so a reused connection is never one the engine already closed.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);
/// TCP keep-alive probes notice a dead engine (or NAT drop) under a long poll.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);
/// Slack on top of `asyncResponseTimeout`: the engine answers `[]` at the timeout, plus latency.
const LONG_POLL_SLACK: Duration = Duration::from_secs(10);
/// Longest error body (raw text or the engine's `message`) kept in an error message.
const MAX_ERROR_BODY: usize = 2048;
/// Per-task calls in flight at once unless [`CamundaClient::with_max_connections`] says
/// otherwise (`camunda.max_connections`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 32;
/// Longest excerpt of an undecodable 2xx body in a Decode error: enough to recognise a login page
/// or a proxy answer, too short to copy variable payloads into logs.
const MAX_DECODE_EXCERPT: usize = 256;
/// Form fields `POST /deployment/create` reads as text; a resource must not use these names.
const DEPLOYMENT_FIELDS: [&str; 6] = [
    "deployment-name",
    "enable-duplicate-filtering",
    "deploy-changed-only",
    "deployment-source",
    "tenant-id",
    "deployment-activation-time",
];

/// What the client needs from the configuration.
#[derive(Clone)]
pub struct ClientSettings {
    /// Base URL of engine-rest (no trailing slash needed). Must not carry credentials.
    pub url: String,
    /// Credentials sent with every call, if any.
    pub auth: Option<AuthConfig>,
    /// Sent with every per-task call; the engine checks it against the task's lock owner.
    pub worker_id: String,
    /// Timeout of every call but the long poll.
    pub request_timeout: Duration,
}

impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSettings")
            .field("url", &redact_url(&self.url))
            .field("auth", &self.auth)
            .field("worker_id", &self.worker_id)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// A cheap-to-clone handle on the engine's REST API.
#[derive(Clone)]
pub struct CamundaClient {
    settings: Arc<ClientSettings>,
    http: reqwest::Client,
    /// Parsed `settings.url`, without a trailing slash.
    base: Arc<Url>,
    /// Pre-built, sensitive `Authorization` value.
    auth: Option<HeaderValue>,
    /// One permit per per-task call in flight (complete, failure, bpmnError, extendLock,
    /// unlock): a burst of finished tasks queues here instead of opening a connection each.
    task_calls: Arc<tokio::sync::Semaphore>,
}

impl fmt::Debug for CamundaClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CamundaClient")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Identifies one call in errors: method and path below the base URL, and its time limit.
struct Call {
    method: &'static str,
    path: String,
    timeout: Duration,
}

impl Call {
    fn transport(&self, source: reqwest::Error) -> CamundaError {
        CamundaError::Transport {
            method: self.method,
            path: self.path.clone(),
            cause: describe_transport(&source, self.timeout),
            // The URL is already in `path`; drop it from the source so nothing is printed twice.
            source: source.without_url(),
        }
    }

    fn decode(&self, message: String) -> CamundaError {
        CamundaError::Decode {
            method: self.method,
            path: self.path.clone(),
            message,
        }
    }
}

impl CamundaClient {
    /// Builds the client: validates the URL and credentials and creates the one connection pool
    /// all calls share. No network I/O happens here.
    pub fn new(settings: ClientSettings) -> Result<CamundaClient, CamundaError> {
        let base = Url::parse(settings.url.trim_end_matches('/'))
            .map_err(|e| CamundaError::Config(format!("camunda.url is not a valid URL ({e})")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(CamundaError::Config(format!(
                "camunda.url `{}` must be an http(s) URL",
                redact_url(&settings.url)
            )));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(CamundaError::Config(
                "camunda.url must not contain credentials; use camunda.auth".to_owned(),
            ));
        }
        let auth = settings.auth.as_ref().map(auth_header).transpose()?;
        let http = reqwest::Client::builder()
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .tcp_keepalive(TCP_KEEPALIVE)
            .connect_timeout(settings.request_timeout)
            .user_agent(concat!("procos/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CamundaError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(CamundaClient {
            settings: Arc::new(settings),
            http,
            base: Arc::new(base),
            auth,
            task_calls: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_CONNECTIONS)),
        })
    }

    /// At most `max` per-task calls (complete, failure, bpmnError, extendLock, unlock) in flight
    /// at once, so at most about `max` connections to the engine besides the long poll's; more
    /// wait for a free one, in the order they came. At least 1.
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.task_calls = Arc::new(tokio::sync::Semaphore::new(max.max(1)));
        self
    }

    /// The worker id sent with every per-task call.
    pub fn worker_id(&self) -> &str {
        &self.settings.worker_id
    }

    /// The engine-rest base URL (never carries credentials), for logs and the status API.
    pub fn base_url(&self) -> String {
        redact_url(self.base.as_str())
    }

    /// `GET /version`: the engine's version; doubles as the readiness probe.
    pub async fn version(&self) -> Result<String, CamundaError> {
        #[derive(Deserialize)]
        struct Version {
            version: String,
        }
        let (call, rb) = self.request(Method::GET, &["version"], self.settings.request_timeout);
        let v: Version = self.json(&call, rb).await?;
        Ok(v.version)
    }

    /// `POST /deployment/create`: deploys the resources as one deployment, each file in its own
    /// multipart part (named and with filename = resource name), so none is lost.
    pub async fn deploy(&self, req: &DeploymentRequest) -> Result<Deployment, CamundaError> {
        // Names go into the part headers as-is (Camunda reads the filename raw), so they must be
        // plain: no quotes, backslashes or line breaks, not a form field name, and unique.
        let mut form = Form::new()
            .percent_encode_noop()
            .text("deployment-name", req.name.clone())
            .text("deployment-source", req.source.clone());
        if req.changed_only {
            form = form
                .text("deploy-changed-only", "true")
                .text("enable-duplicate-filtering", "true");
        }
        if let Some(tenant) = &req.tenant_id {
            form = form.text("tenant-id", tenant.clone());
        }
        let mut seen = HashSet::new();
        for resource in &req.resources {
            let name = resource.name.as_str();
            let bad = |why: &str| CamundaError::Config(format!("resource `{name}`: {why}"));
            if name.is_empty() || name.contains(['"', '\\', '\r', '\n']) {
                return Err(bad(
                    "the name is empty or holds a quote, backslash or line break",
                ));
            }
            if DEPLOYMENT_FIELDS.contains(&name) {
                return Err(bad("the name is reserved for a deployment form field"));
            }
            if !seen.insert(name) {
                return Err(bad("two resources have this name"));
            }
            let part = Part::bytes(resource.content.clone())
                .file_name(name.to_owned())
                .mime_str("application/octet-stream")
                .map_err(|e| bad(&e.to_string()))?;
            form = form.part(name.to_owned(), part);
        }
        let (call, rb) = self.request(
            Method::POST,
            &["deployment", "create"],
            self.settings.request_timeout,
        );
        self.json(&call, rb.multipart(form)).await
    }

    /// `POST /external-task/fetchAndLock`, usually a long poll.
    ///
    /// The HTTP timeout is `asyncResponseTimeout + 10 s` (never less than the request timeout), so
    /// an idle poll ends with the engine's `[]`, not a client-side timeout. Cancel-safe: dropping
    /// the future aborts the request (tasks the engine had already locked for it stay locked until
    /// their lock expires, then are offered again).
    pub async fn fetch_and_lock(
        &self,
        req: &FetchAndLock,
    ) -> Result<Vec<LockedTask>, CamundaError> {
        let timeout = match req.async_response_timeout {
            Some(ms) => {
                (Duration::from_millis(ms) + LONG_POLL_SLACK).max(self.settings.request_timeout)
            }
            None => self.settings.request_timeout,
        };
        let (call, rb) = self.request(Method::POST, &["external-task", "fetchAndLock"], timeout);
        self.json(&call, rb.json(req)).await
    }

    /// `POST /external-task/{id}/complete` with global and local variables.
    pub async fn complete(
        &self,
        task_id: &str,
        variables: VariableMap,
        local_variables: VariableMap,
    ) -> Result<(), CamundaError> {
        let body = Complete {
            worker_id: self.settings.worker_id.clone(),
            variables,
            local_variables,
        };
        self.task_call(task_id, "complete", Some(&body)).await
    }

    /// `POST /external-task/{id}/failure`. `retries` 0 creates an incident; `retry_timeout` is
    /// how long the engine waits before offering the task again.
    pub async fn failure(
        &self,
        task_id: &str,
        error_message: &str,
        error_details: &str,
        retries: i32,
        retry_timeout: Duration,
    ) -> Result<(), CamundaError> {
        let body = Failure {
            worker_id: self.settings.worker_id.clone(),
            error_message: error_message.to_owned(),
            error_details: error_details.to_owned(),
            retries,
            retry_timeout: millis(retry_timeout),
        };
        self.task_call(task_id, "failure", Some(&body)).await
    }

    /// `POST /external-task/{id}/bpmnError`: a business outcome the process models.
    pub async fn bpmn_error(
        &self,
        task_id: &str,
        error_code: &str,
        error_message: &str,
        variables: VariableMap,
    ) -> Result<(), CamundaError> {
        let body = BpmnError {
            worker_id: self.settings.worker_id.clone(),
            error_code: error_code.to_owned(),
            error_message: error_message.to_owned(),
            variables,
        };
        self.task_call(task_id, "bpmnError", Some(&body)).await
    }

    /// `POST /external-task/{id}/extendLock`: the lock now ends `new_duration` from now.
    /// 404 means the task was cancelled: stop the work.
    pub async fn extend_lock(
        &self,
        task_id: &str,
        new_duration: Duration,
    ) -> Result<(), CamundaError> {
        let body =
            json!({"workerId": self.settings.worker_id, "newDuration": millis(new_duration)});
        self.task_call(task_id, "extendLock", Some(&body)).await
    }

    /// `POST /external-task/{id}/lock`: locks a task this worker did not fetch.
    pub async fn lock(&self, task_id: &str, duration: Duration) -> Result<(), CamundaError> {
        let body = json!({"workerId": self.settings.worker_id, "lockDuration": millis(duration)});
        self.task_call(task_id, "lock", Some(&body)).await
    }

    /// `POST /external-task/{id}/unlock`: hands a fetched task back at once (e.g. on shutdown).
    pub async fn unlock(&self, task_id: &str) -> Result<(), CamundaError> {
        self.task_call::<Value>(task_id, "unlock", None).await
    }

    /// The content of a File variable (fetchAndLock never carries it):
    /// `GET /process-instance/{pi}/variables/{name}/data`, or
    /// `GET /execution/{exec}/localVariables/{name}/data` when `local_execution` is given.
    pub async fn download_file(
        &self,
        process_instance_id: &str,
        name: &str,
        local_execution: Option<&str>,
    ) -> Result<Bytes, CamundaError> {
        let segments = match local_execution {
            Some(exec) => ["execution", exec, "localVariables", name, "data"],
            None => [
                "process-instance",
                process_instance_id,
                "variables",
                name,
                "data",
            ],
        };
        let (call, rb) = self.request(Method::GET, &segments, self.settings.request_timeout);
        let resp = self.execute(&call, rb).await?;
        resp.bytes().await.map_err(|e| call.transport(e))
    }

    /// `GET /history/process-instance/{id}`: how an instance ended (state, times, reason).
    pub async fn historic_process_instance(
        &self,
        id: &str,
    ) -> Result<HistoricProcessInstance, CamundaError> {
        let (call, rb) = self.request(
            Method::GET,
            &["history", "process-instance", id],
            self.settings.request_timeout,
        );
        self.json(&call, rb).await
    }

    /// `POST /process-definition/key/{key}/start`: starts the latest version of a process.
    pub async fn start_process(
        &self,
        key: &str,
        business_key: Option<&str>,
        variables: VariableMap,
    ) -> Result<ProcessInstance, CamundaError> {
        let mut body = json!({ "variables": variables });
        if let (Some(bk), Some(obj)) = (business_key, body.as_object_mut()) {
            obj.insert("businessKey".to_owned(), Value::String(bk.to_owned()));
        }
        let (call, rb) = self.request(
            Method::POST,
            &["process-definition", "key", key, "start"],
            self.settings.request_timeout,
        );
        self.json(&call, rb.json(&body)).await
    }

    /// A per-task `POST /external-task/{id}/{action}` answered with 204.
    async fn task_call<B: serde::Serialize>(
        &self,
        task_id: &str,
        action: &str,
        body: Option<&B>,
    ) -> Result<(), CamundaError> {
        // Held until the body is drained and the connection is back in the pool. The semaphore
        // is never closed, so acquiring only waits.
        let _permit = self.task_calls.acquire().await;
        let (call, mut rb) = self.request(
            Method::POST,
            &["external-task", task_id, action],
            self.settings.request_timeout,
        );
        if let Some(body) = body {
            rb = rb.json(body);
        }
        let resp = self.execute(&call, rb).await?;
        // The call succeeded; draining the (empty) body only lets the connection be reused,
        // so a failure to read it changes nothing for the caller.
        let _ = resp.bytes().await;
        Ok(())
    }

    /// A request to `base/segments…` (each segment percent-encoded) with auth and timeout.
    fn request(
        &self,
        method: Method,
        segments: &[&str],
        timeout: Duration,
    ) -> (Call, RequestBuilder) {
        let mut url = (*self.base).clone();
        // `new` rejected cannot-be-a-base URLs, so this always yields the segments.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        let prefix = self.base.path().trim_end_matches('/').len();
        let call = Call {
            method: method_name(&method),
            path: url.path().get(prefix..).unwrap_or(url.path()).to_owned(),
            timeout,
        };
        let mut rb = self.http.request(method, url).timeout(timeout);
        if let Some(auth) = &self.auth {
            rb = rb.header(AUTHORIZATION, auth.clone());
        }
        (call, rb)
    }

    /// Sends and turns any non-2xx answer into [`CamundaError::Engine`].
    async fn execute(&self, call: &Call, rb: RequestBuilder) -> Result<Response, CamundaError> {
        let started = std::time::Instant::now();
        let resp = rb.send().await.map_err(|e| call.transport(e))?;
        let status = resp.status();
        tracing::trace!(
            method = call.method,
            path = %call.path,
            status = status.as_u16(),
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "Engine answered."
        );
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.bytes().await.map_err(|e| call.transport(e))?;
        Err(engine_error(call, status, &body))
    }

    /// Sends and decodes a 2xx JSON body.
    async fn json<T: DeserializeOwned>(
        &self,
        call: &Call,
        rb: RequestBuilder,
    ) -> Result<T, CamundaError> {
        let resp = self.execute(call, rb).await?;
        let body = resp.bytes().await.map_err(|e| call.transport(e))?;
        serde_json::from_slice(&body).map_err(|e| {
            call.decode(format!(
                "{e}; body starts: {}",
                truncate(&String::from_utf8_lossy(&body), MAX_DECODE_EXCERPT)
            ))
        })
    }
}

/// Builds `CamundaError::Engine` from an error answer: the engine's `{type, message, code,
/// details}` when the body is such JSON, else the raw text (truncated).
fn engine_error(call: &Call, status: StatusCode, body: &[u8]) -> CamundaError {
    let parsed: Option<serde_json::Map<String, Value>> = serde_json::from_slice(body).ok();
    let text = |key: &str| {
        parsed
            .as_ref()
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let kind = text("type").unwrap_or_default();
    let message = text("message")
        .map(|m| truncate(&m, MAX_ERROR_BODY))
        .unwrap_or_else(|| {
            let raw = String::from_utf8_lossy(body);
            if raw.trim().is_empty() {
                status.canonical_reason().unwrap_or("no body").to_owned()
            } else {
                truncate(raw.trim(), MAX_ERROR_BODY)
            }
        });
    let field = |key: &str| {
        parsed
            .as_ref()
            .and_then(|m| m.get(key))
            .filter(|v| !v.is_null())
    };
    CamundaError::Engine {
        method: call.method,
        path: call.path.clone(),
        status: status.as_u16(),
        kind,
        message,
        code: field("code").and_then(Value::as_i64),
        details: field("details").cloned().map(Box::new),
    }
}

/// The sensitive `Authorization` value for the configured credentials.
fn auth_header(auth: &AuthConfig) -> Result<HeaderValue, CamundaError> {
    let raw = match auth {
        AuthConfig::Basic { username, password } => {
            let pair = format!("{username}:{}", password.expose());
            format!("Basic {}", BASE64_STANDARD.encode(pair))
        }
        AuthConfig::Bearer { token } => format!("Bearer {}", token.expose()),
    };
    let mut value = HeaderValue::from_str(&raw).map_err(|_| {
        CamundaError::Config(
            "camunda.auth holds characters that cannot be sent in an HTTP header".to_owned(),
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// At most `max` bytes of `text` (plus `…` when cut), cut at a character boundary.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A duration in whole ms, as engine-rest expects (saturating).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "HTTP",
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;

/// Private helpers the camunda property tests drive with arbitrary input.
#[cfg(test)]
pub(super) mod tests_support {
    use super::*;

    /// [`engine_error`] for an answer to `POST /external-task/t/complete`.
    pub fn engine_error_for(status: u16, body: &[u8]) -> CamundaError {
        let call = Call {
            method: "POST",
            path: "/external-task/t/complete".into(),
            timeout: Duration::from_secs(1),
        };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        engine_error(&call, status, body)
    }

    /// [`truncate`].
    pub fn truncate_for(text: &str, max: usize) -> String {
        truncate(text, max)
    }
}
