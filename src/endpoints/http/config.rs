//! `type: http` in `pde.yaml`: the config struct, its validation, and the compiled templates.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::HeaderName;
use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::Value;

use super::net_guard::HostAllowList;
use super::url::UrlTemplate;
use crate::config::Secret;
use crate::config::secret::{quote, redact};
use crate::endpoints::stack::{
    self, CircuitConfig, Policy, ProbeConfig, RetryBudgetConfig, RetryPolicy,
};
use crate::endpoints::template::{JsonTemplate, MarkedTemplate};

/// `type: http`.
#[derive(Clone, Deserialize)]
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
    /// Hosts the URL may point at (`api.example.com`, `*.example.com` for any subdomain, an IP
    /// address); empty means any public host. Redirects are checked too. Naming a host also opts
    /// it out of the SSRF guard (loopback, private, link-local addresses; the engine's host
    /// only by its exact name).
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
    /// A fixed URL the background probe GETs (any 2xx passes); probes run only when it is set.
    /// The SSRF guard applies: a loopback or private host must be named in `allowed_hosts`.
    #[serde(default)]
    pub health_url: Option<String>,
    /// Extra calls after a transient failure (default 0). A method that changes something
    /// (anything but a fixed GET, HEAD or OPTIONS) is retried only when the connection was
    /// refused before anything was sent.
    #[serde(default)]
    pub max_retries: u32,
    /// First backoff delay; doubles per retry. A server's `Retry-After` wins.
    #[serde(default = "stack::default_retry_backoff", with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// How many retries the calls may add (a share of the calls).
    #[serde(default)]
    pub retry_budget: RetryBudgetConfig,
    /// When to pause calling a failing server.
    #[serde(default)]
    pub circuit: CircuitConfig,
    /// The background probe of `health_url`.
    #[serde(default)]
    pub probe: ProbeConfig,
}

impl std::fmt::Debug for HttpConfig {
    /// Templates are config text with `${VAR}` values in them: every known secret is redacted,
    /// and header values (all [`Secret`]s) print `***`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("method", &redact(&self.method))
            .field("url", &redact(&self.url))
            .field("headers", &self.headers)
            .field("body", &self.body.as_ref().map(|b| redact(&b.to_string())))
            .field("timeout", &self.timeout)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("max_concurrency", &self.max_concurrency)
            .field("expect_json", &self.expect_json)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("health_url", &self.health_url.as_deref().map(redact))
            .field("max_retries", &self.max_retries)
            .field("retry_backoff", &self.retry_backoff)
            .field("retry_budget", &self.retry_budget)
            .field("circuit", &self.circuit)
            .field("probe", &self.probe)
            .finish()
    }
}

pub(super) fn default_method() -> String {
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
            health_url: None,
            max_retries: 0,
            retry_backoff: stack::default_retry_backoff(),
            retry_budget: RetryBudgetConfig::default(),
            circuit: CircuitConfig::default(),
            probe: ProbeConfig::default(),
        }
    }
}

/// Problems found in a config: (path suffix such as `url` or `headers.X-Key`, message).
type Problems = Vec<(String, String)>;

/// The templates and checks of a config, compiled once.
pub(super) struct Compiled {
    pub method: MarkedTemplate,
    pub url: UrlTemplate,
    pub headers: Vec<ConfiguredHeader>,
    pub body: Option<JsonTemplate>,
    pub hosts: HostAllowList,
    pub health_url: Option<Url>,
}

/// A header from `headers:`: its name as written (for messages), on the wire, and its template.
#[derive(Debug, Clone)]
pub(super) struct ConfiguredHeader {
    /// As written in the config, for messages.
    pub written: String,
    /// On the wire.
    pub name: HeaderName,
    /// The value template (a secret: its text is never printed).
    pub value: MarkedTemplate,
}

impl HttpConfig {
    /// How the stack wraps this endpoint: probes only with a `health_url`.
    pub fn policy(&self) -> Policy {
        Policy {
            timeout: Some(self.timeout + stack::TIMEOUT_GRACE),
            max_concurrency: self.max_concurrency,
            circuit: self.circuit.clone(),
            retry: RetryPolicy::new(self.max_retries, self.retry_backoff, &self.retry_budget),
            probe: self.probe.schedule(self.health_url.is_some()),
        }
    }

    /// Every problem of this config (templates compile, method/timeout/hosts/limits are sane),
    /// as (path suffix, message). Pure: no network, no filesystem.
    pub fn validate(&self) -> Vec<(String, String)> {
        match self.compile("") {
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        }
    }

    /// Compiles the templates, naming them `<prefix><field>`; collects every problem.
    pub(super) fn compile(&self, prefix: &str) -> Result<Compiled, Problems> {
        let mut problems = Problems::new();
        let mut check = |field: &str, result: Result<(), String>| {
            if let Err(message) = result {
                problems.push((field.to_string(), message));
            }
        };
        let method = MarkedTemplate::compile(&format!("{prefix}method"), &self.method);
        check(
            "method",
            method.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        );
        if !crate::endpoints::template::has_syntax(&self.method) {
            check("method", parse_method(&self.method).map(|_| ()));
        }
        let url = UrlTemplate::compile(&format!("{prefix}url"), &self.url);
        check("url", url.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        if !crate::endpoints::template::has_syntax(&self.url) {
            check("url", parse_url(&self.url).map(|_| ()));
        }
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            let field = format!("headers.{name}");
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("`{name}` is not a valid header name"));
            let template = MarkedTemplate::compile(&format!("{prefix}{field}"), value.expose())
                .map_err(|e| e.to_string());
            match (header, template) {
                (Ok(h), Ok(t)) => headers.push(ConfiguredHeader {
                    written: name.clone(),
                    name: h,
                    value: t,
                }),
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
        for (field, message) in stack::validate(
            Some(("timeout", self.timeout)),
            self.max_concurrency,
            &self.circuit,
            &self.probe,
            Some(&self.retry_budget),
        ) {
            check(&field, Err(message));
        }
        let health_url = self.health_url.as_deref().map(parse_url).transpose();
        if let Err(message) = &health_url {
            check("health_url", Err(message.clone()));
        }
        if self.probe.enabled == Some(true) && self.health_url.is_none() {
            check(
                "probe.enabled",
                Err("an http endpoint probes its `health_url`; set one".into()),
            );
        }
        if self.max_response_bytes == 0 {
            check("max_response_bytes", Err("must be at least 1".into()));
        }
        let hosts = HostAllowList::parse(&self.allowed_hosts);
        if let Err((index, message)) = &hosts {
            check(&format!("allowed_hosts[{index}]"), Err(message.clone()));
        }
        match (method, url, body, hosts, health_url) {
            (Ok(method), Ok(url), Ok(body), Ok(hosts), Ok(health_url)) if problems.is_empty() => {
                Ok(Compiled {
                    method,
                    url,
                    headers,
                    body,
                    hosts,
                    health_url,
                })
            }
            _ => Err(problems),
        }
    }
}

/// A rendered method, e.g. ` post ` → `POST`.
/// Only names of letters, `-` and `_`, at most 20 long: the standard methods and extensions such
/// as `PROPFIND`, never a 5 MB "method" that every later message would quote.
pub(super) fn parse_method(text: &str) -> Result<Method, String> {
    let text = text.trim().to_ascii_uppercase();
    let plausible = !text.is_empty()
        && text.len() <= 20
        && text
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_');
    plausible
        .then(|| Method::from_bytes(text.as_bytes()).ok())
        .flatten()
        .ok_or_else(|| format!("`{}` is not an HTTP method", quote(&text)))
}

/// A literal URL from the config (validation only); only `http` and `https` are allowed.
fn parse_url(text: &str) -> Result<Url, String> {
    let text = text.trim();
    let url = Url::parse(text).map_err(|e| format!("`{}` is not a valid URL: {e}", quote(text)))?;
    match (url.scheme(), url.host_str()) {
        ("http" | "https", Some(_)) => Ok(url),
        ("http" | "https", None) => Err(format!("`{}` has no host", quote(text))),
        (scheme, _) => Err(format!(
            "`{}` uses scheme `{scheme}`; only http and https",
            quote(text)
        )),
    }
}
