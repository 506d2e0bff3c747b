//! `http`: one HTTP call per task, built from templates over the task.
//!
//! ```text
//! request ─► render method, url, headers, body ─► host allowed? ─► permit ─► send ─► read (capped)
//!                                                                                      │
//!   2xx ─► Ok {"status", "headers": {"content-type"}, "body": JSON or text}  ◄─────────┤
//!   408 / 429 / 5xx ─► Transient `http_<status>` (429/503 honour Retry-After)  ◄───────┤
//!   other 4xx, 3xx left over ─► Permanent `http_<status>`  ◄───────────────────────────┘
//! ```
//!
//! Error codes are exact (`http_404`); the pipeline's `bpmn_errors` matching tries the exact code
//! first and then its class (`http_4xx`, `http_5xx`). Errors carry the response body (first
//! 4 KiB) as details. Header values may hold secrets, so they are [`Secret`]s, marked sensitive
//! on the wire, and never logged.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::template::{JsonTemplate, Template, TemplateContext};
use super::{Endpoint, EndpointError, EndpointReply, EndpointRequest};
use crate::config::Secret;

/// How much of an error response body goes into the error's details.
const DETAILS_LIMIT: usize = 4 * 1024;
/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 10;

/// `type: http`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// HTTP method template; by default the task's `method` variable, else `GET`.
    #[serde(default = "default_method")]
    pub method: String,
    /// URL template; by default the task's `url` variable.
    #[serde(default = "default_url")]
    pub url: String,
    /// Header name → value template. Values may hold `${VAR}` secrets, hence never printed.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// JSON body whose strings are templates. When absent, a `body` variable is sent as JSON.
    /// GET and HEAD never send a body.
    #[serde(default)]
    pub body: Option<Value>,
    /// Whole-call bound: connect, send, and read the response.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Hosts the URL may point at (`api.example.com`, `*.example.com` for any subdomain);
    /// empty means any host. Redirects are checked too.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Bound on calls in flight through this endpoint; unbounded when absent.
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    /// Parse the response body as JSON (`true`), keep it as text (`false`), or decide by its
    /// content type (absent).
    #[serde(default)]
    pub expect_json: Option<bool>,
    /// Largest response body read; a bigger one is a permanent `response_too_large` error.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
}

fn default_method() -> String {
    "{{ method | default('GET') }}".into()
}
fn default_url() -> String {
    "{{ url }}".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_response_bytes() -> usize {
    10 * 1024 * 1024
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            method: default_method(),
            url: default_url(),
            headers: BTreeMap::new(),
            body: None,
            timeout: default_timeout(),
            allowed_hosts: Vec::new(),
            max_concurrency: None,
            expect_json: None,
            max_response_bytes: default_max_response_bytes(),
        }
    }
}

/// Problems found in a config: (path suffix such as `url` or `headers.X-Key`, message).
type Problems = Vec<(String, String)>;

/// The templates and checks of a config, compiled once.
struct Compiled {
    method: Template,
    url: Template,
    headers: Vec<(HeaderName, Template)>,
    body: Option<JsonTemplate>,
    hosts: HostAllowList,
}

impl HttpConfig {
    /// Every problem of this config (templates compile, method/timeout/hosts/limits are sane),
    /// as (path suffix, message). Pure: no network, no filesystem.
    pub fn validate(&self) -> Vec<(String, String)> {
        match self.compile("") {
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        }
    }

    /// Compiles the templates, naming them `<prefix><field>`; collects every problem.
    fn compile(&self, prefix: &str) -> Result<Compiled, Problems> {
        let mut problems = Problems::new();
        let mut check = |field: &str, result: Result<(), String>| {
            if let Err(message) = result {
                problems.push((field.to_string(), message));
            }
        };
        let method = Template::compile(&format!("{prefix}method"), &self.method);
        check(
            "method",
            method.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        );
        if !has_syntax(&self.method) {
            check("method", parse_method(&self.method).map(|_| ()));
        }
        let url = Template::compile(&format!("{prefix}url"), &self.url);
        check("url", url.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        if !has_syntax(&self.url) {
            check("url", parse_url(&self.url).map(|_| ()));
        }
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            let field = format!("headers.{name}");
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("`{name}` is not a valid header name"));
            let template = Template::compile(&format!("{prefix}{field}"), value.expose())
                .map_err(|e| e.to_string());
            match (header, template) {
                (Ok(h), Ok(t)) => headers.push((h, t)),
                (h, t) => {
                    check(&field, h.map(|_| ()));
                    check(&field, t.map(|_| ()));
                }
            }
        }
        let body = self
            .body
            .as_ref()
            .map(|b| JsonTemplate::compile(&format!("{prefix}body"), b))
            .transpose();
        check("body", body.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        if self.timeout.is_zero() {
            check("timeout", Err("must be greater than zero".into()));
        }
        if self.max_concurrency == Some(0) {
            check("max_concurrency", Err("must be at least 1".into()));
        }
        if self.max_response_bytes == 0 {
            check("max_response_bytes", Err("must be at least 1".into()));
        }
        let hosts = HostAllowList::parse(&self.allowed_hosts);
        if let Err((index, message)) = &hosts {
            check(&format!("allowed_hosts[{index}]"), Err(message.clone()));
        }
        match (method, url, body, hosts) {
            (Ok(method), Ok(url), Ok(body), Ok(hosts)) if problems.is_empty() => Ok(Compiled {
                method,
                url,
                headers,
                body,
                hosts,
            }),
            _ => Err(problems),
        }
    }
}

/// Does `s` contain template syntax?
fn has_syntax(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// A rendered method, e.g. ` post ` → `POST`.
fn parse_method(text: &str) -> Result<Method, String> {
    let text = text.trim().to_ascii_uppercase();
    Method::from_bytes(text.as_bytes()).map_err(|_| format!("`{text}` is not an HTTP method"))
}

/// A rendered URL; only `http` and `https` are allowed.
fn parse_url(text: &str) -> Result<Url, String> {
    let text = text.trim();
    let url = Url::parse(text).map_err(|e| format!("`{text}` is not a valid URL: {e}"))?;
    match (url.scheme(), url.host_str()) {
        ("http" | "https", Some(_)) => Ok(url),
        ("http" | "https", None) => Err(format!("`{text}` has no host")),
        (scheme, _) => Err(format!(
            "`{text}` uses scheme `{scheme}`; only http and https"
        )),
    }
}

/// Which hosts a URL may point at. Empty allows any host.
#[derive(Debug, Clone, Default)]
struct HostAllowList {
    /// Exact host names (lowercase).
    exact: Vec<String>,
    /// Suffixes from `*.example.com` patterns, stored as `.example.com`.
    suffixes: Vec<String>,
}

impl HostAllowList {
    /// Parses patterns; the error is (index, message) of the first bad one.
    fn parse(patterns: &[String]) -> Result<Self, (usize, String)> {
        let mut list = Self::default();
        for (i, pattern) in patterns.iter().enumerate() {
            let p = pattern.trim().trim_end_matches('.').to_ascii_lowercase();
            let (rest, wildcard) = match p.strip_prefix("*.") {
                Some(rest) => (rest, true),
                None => (p.as_str(), false),
            };
            let bad = |why: &str| Err((i, format!("`{pattern}` {why}")));
            if rest.is_empty() {
                return bad("is empty");
            }
            if rest.contains(['*', '/', ':', '@', ' ']) && !rest.starts_with('[') {
                return bad("must be a host name or `*.domain` (no scheme, port, path)");
            }
            if wildcard {
                list.suffixes.push(format!(".{rest}"));
            } else {
                list.exact.push(rest.to_string());
            }
        }
        Ok(list)
    }

    /// Is `host` allowed? `*.example.com` matches any subdomain, not `example.com` itself.
    fn allows(&self, host: &str) -> bool {
        if self.exact.is_empty() && self.suffixes.is_empty() {
            return true;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.exact.contains(&host) || self.suffixes.iter().any(|s| host.ends_with(s))
    }
}

/// The http endpoint: compiled templates and one pooled client, built once.
#[derive(Debug)]
pub struct HttpEndpoint {
    name: String,
    client: reqwest::Client,
    /// Debug of a [`Template`] prints only its name, so header secrets stay hidden.
    method: Template,
    url: Template,
    headers: Vec<(HeaderName, Template)>,
    body: Option<JsonTemplate>,
    hosts: Arc<HostAllowList>,
    timeout: Duration,
    limit: Option<Arc<Semaphore>>,
    expect_json: Option<bool>,
    max_response_bytes: usize,
}

/// What was sent, for messages: method and host (never the full URL, which may hold a key).
struct Target {
    method: Method,
    host: String,
}

impl HttpEndpoint {
    /// Builds it from its config: compiles templates, builds the HTTP client.
    pub fn new(name: &str, config: &HttpConfig) -> Result<Self, EndpointError> {
        let compiled = config
            .compile(&format!("endpoints.{name}."))
            .map_err(|problems| {
                let list: Vec<String> = problems.iter().map(|(p, m)| format!("{p}: {m}")).collect();
                EndpointError::permanent(format!(
                    "http endpoint `{name}` is misconfigured: {}",
                    list.join("; ")
                ))
                .code("config")
            })?;
        let hosts = Arc::new(compiled.hosts);
        let redirect_hosts = Arc::clone(&hosts);
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            let host = attempt.url().host_str().unwrap_or_default().to_string();
            if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
            } else if !redirect_hosts.allows(&host) {
                attempt.error(format!("redirect to host `{host}` is not in allowed_hosts"))
            } else {
                attempt.follow()
            }
        });
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(concat!("procos/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .redirect(policy)
            .build()
            .map_err(|e| {
                EndpointError::permanent(format!(
                    "http endpoint `{name}`: cannot build the HTTP client: {e}"
                ))
            })?;
        Ok(Self {
            name: name.to_string(),
            client,
            method: compiled.method,
            url: compiled.url,
            headers: compiled.headers,
            body: compiled.body,
            hosts,
            timeout: config.timeout,
            limit: config.max_concurrency.map(|n| Arc::new(Semaphore::new(n))),
            expect_json: config.expect_json,
            max_response_bytes: config.max_response_bytes,
        })
    }

    /// Renders the request from the task; every failure here is permanent.
    fn build_request(
        &self,
        request: &EndpointRequest,
    ) -> Result<(reqwest::RequestBuilder, Target), EndpointError> {
        let ctx = TemplateContext::new(request);
        let template_error = |e: super::template::TemplateError| {
            EndpointError::permanent(e.to_string()).code("template")
        };
        let method = parse_method(&self.method.render(&ctx).map_err(template_error)?)
            .map_err(|m| EndpointError::permanent(m).code("invalid_method"))?;
        let url = parse_url(&self.url.render(&ctx).map_err(template_error)?)
            .map_err(|m| EndpointError::permanent(m).code("invalid_url"))?;
        let host = url.host_str().unwrap_or_default().to_string();
        if !self.hosts.allows(&host) {
            return Err(EndpointError::permanent(format!(
                "host `{host}` is not in allowed_hosts of endpoint `{}`",
                self.name
            ))
            .code("host_not_allowed"));
        }
        let mut headers = HeaderMap::new();
        for (name, template) in &self.headers {
            let text = template.render(&ctx).map_err(template_error)?;
            let mut value = HeaderValue::from_str(&text).map_err(|_| {
                EndpointError::permanent(format!("header `{name}` renders to an invalid value"))
                    .code("invalid_header")
            })?;
            value.set_sensitive(true);
            headers.insert(name.clone(), value);
        }
        let body = match method {
            Method::GET | Method::HEAD => None,
            _ => match &self.body {
                Some(template) => Some(template.render(&ctx).map_err(template_error)?),
                None => request.variables.get("body").cloned(),
            },
        };
        let mut builder = self
            .client
            .request(method.clone(), url)
            .headers(headers)
            .timeout(self.timeout);
        if let Some(body) = body {
            builder = builder.json(&body);
        }
        Ok((builder, Target { method, host }))
    }

    /// Sends the request and turns the response into a reply or a classified error.
    async fn exchange(
        &self,
        builder: reqwest::RequestBuilder,
        target: &Target,
    ) -> Result<EndpointReply, EndpointError> {
        let Target { method, host } = target;
        let transport = |e: reqwest::Error| transport_error(e, method, host);
        let mut response = builder.send().await.map_err(transport)?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let retry_after = retry_after(&response);
        let Some(body) = read_capped(&mut response, self.max_response_bytes)
            .await
            .map_err(transport)?
        else {
            return Err(EndpointError::permanent(format!(
                "{method} {host}: response body exceeds {} bytes",
                self.max_response_bytes
            ))
            .code("response_too_large"));
        };
        if !status.is_success() {
            return Err(status_error(status, retry_after, method, host, &body));
        }
        let is_json = self.expect_json.unwrap_or_else(|| {
            content_type.as_deref().is_some_and(|ct| {
                let mime = ct.split(';').next().unwrap_or_default().trim();
                mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")
            })
        });
        let body = if !is_json {
            Value::String(String::from_utf8_lossy(&body).into_owned())
        } else if body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&body).map_err(|e| {
                EndpointError::permanent(format!("{method} {host}: response is not JSON: {e}"))
                    .code("invalid_json")
                    .details(head(&body, DETAILS_LIMIT))
            })?
        };
        let mut headers = serde_json::Map::new();
        if let Some(ct) = content_type {
            headers.insert("content-type".into(), Value::String(ct));
        }
        Ok(EndpointReply::new(
            json!({"status": status.as_u16(), "headers": headers, "body": body}),
        ))
    }
}

/// Maps a non-2xx status: 408, 429 and 5xx are transient, the rest permanent.
fn status_error(
    status: StatusCode,
    retry_after: Option<Duration>,
    method: &Method,
    host: &str,
    body: &[u8],
) -> EndpointError {
    let code = status.as_u16();
    let message = format!("{method} {host} answered {status}");
    let error = match code {
        408 | 429 | 500..=599 => {
            let wait = matches!(code, 429 | 503).then_some(retry_after).flatten();
            EndpointError::transient(message).retry_after(wait)
        }
        _ => EndpointError::permanent(message),
    };
    let error = error.code(format!("http_{code}"));
    if body.is_empty() {
        error
    } else {
        error.details(head(body, DETAILS_LIMIT))
    }
}

/// Maps a transport failure. The URL is left out: its query may hold a key.
pub(crate) fn transport_error(error: reqwest::Error, method: &Method, host: &str) -> EndpointError {
    let (timeout, connect, redirect, builder) = (
        error.is_timeout(),
        error.is_connect(),
        error.is_redirect(),
        error.is_builder(),
    );
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    let message = format!("{method} {host}: {text}");
    if timeout {
        EndpointError::transient(message).code("timeout")
    } else if connect {
        EndpointError::transient(message).code("connect")
    } else if redirect {
        EndpointError::permanent(message).code("redirect")
    } else if builder {
        EndpointError::permanent(message).code("request")
    } else {
        EndpointError::transient(message).code("request")
    }
}

/// The server-advised wait of a response (`Retry-After`), if any.
pub(crate) fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
}

/// Reads a response body of at most `max` bytes; `None` when it is larger (reading stops as
/// soon as the cap is passed, so a huge body is never held).
pub(crate) async fn read_capped(
    response: &mut reqwest::Response,
    max: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// `Retry-After`: delay seconds or an HTTP-date (a past date means "now").
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::from(at.with_timezone(&chrono::Utc));
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The first `limit` bytes as text, cut at a character boundary.
pub(crate) fn head(bytes: &[u8], limit: usize) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(limit)]).into_owned();
    let text = text.trim_end_matches('\u{FFFD}').to_string();
    if bytes.len() > limit {
        format!("{text}… ({} bytes in all)", bytes.len())
    } else {
        text
    }
}

#[async_trait]
impl Endpoint for HttpEndpoint {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "http"
    }

    async fn call(&self, request: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
        let (builder, target) = self.build_request(request)?;
        let work = async {
            let _permit = match &self.limit {
                Some(limit) => Some(limit.acquire().await.map_err(|_| {
                    EndpointError::transient(format!("endpoint `{}` is closed", self.name))
                })?),
                None => None,
            };
            self.exchange(builder, &target).await
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
