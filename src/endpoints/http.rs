//! `http`: one HTTP call per task, built from templates over the task.
//!
//! ```text
//! (inside the layer stack: a permit of `max_concurrency` is already held)
//! request ─► render method, url (encoded), headers, body ─► allowed_hosts ─► SSRF guard
//!   ─► send ─► redirect? ─► re-check host, drop configured headers on a new origin ─► send …
//!                 │ no
//!   2xx ─► Ok {"status", "headers": {"content-type"}, "body": JSON or text}
//!   408 / 429 / 5xx ─► Transient `http_<status>` (429/503 honour Retry-After)
//!   other 4xx, 3xx left over ─► Permanent `http_<status>`
//! ```
//!
//! Error codes are exact (`http_404`); the pipeline's `bpmn_errors` matching tries the exact code
//! first and then its class (`http_4xx`, `http_5xx`). Errors carry the response body (first
//! 4 KiB) as details. Header values may hold secrets, so they are [`Secret`]s, marked sensitive
//! on the wire, and never logged.
//!
//! **Untrusted input.** Process variables are written by whoever can start a process or complete
//! a user task (see SECURITY.md). So: variable text is percent-encoded by where it lands in the
//! URL (`url.rs`); a URL whose host a variable chose, and every redirect to another host, goes
//! through the SSRF guard (`net_guard.rs`), which checks the addresses actually connected to;
//! the configured headers are sent only to the origin the config names (a redirect elsewhere
//! drops them all, `Authorization` or `X-Api-Key` alike); and every message quotes variable
//! text only, capped at 200 characters, with every known secret redacted.
//!
//! Files: `config.rs` (the YAML shape and its checks) · `url.rs` (URL building and encoding) ·
//! `net_guard.rs` (allowed_hosts and the SSRF guard) · `wire.rs` (status and transport errors,
//! capped reads; shared with the AI endpoints) · this file (the endpoint: prepare, redirects,
//! the reply).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};

use self::config::{ConfiguredHeader, parse_method};
use self::net_guard::{Forbidden, Guard, GuardedResolver, forbidden_in};
use self::url::{UrlTemplate, blame};
use self::wire::{DETAILS_LIMIT, status_error, transport_error_within};
use super::template::{JsonTemplate, MarkedTemplate, TemplateContext, joined};
use super::{Endpoint, EndpointError, EndpointReply, EndpointRequest};
use crate::config::secret::{quote, redact};
use crate::endpoints::class;

pub use self::config::HttpConfig;
pub(crate) use self::wire::{head, read_capped, retry_after, transport_error};

mod config;
mod net_guard;
mod url;
mod wire;

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 10;

/// The http endpoint: compiled templates and two pooled clients, built once.
#[derive(Debug)]
pub struct HttpEndpoint {
    name: String,
    /// For hosts the config fixes: system proxy settings apply, no address checks.
    client: reqwest::Client,
    /// For hosts a variable or a redirect chose: connects directly (a proxy would resolve names
    /// where the guard cannot see), through the guard's resolver.
    guarded: reqwest::Client,
    /// Debug of a template prints only its name, so header secrets stay hidden.
    method: MarkedTemplate,
    url: UrlTemplate,
    headers: Vec<ConfiguredHeader>,
    body: Option<JsonTemplate>,
    guard: Arc<Guard>,
    timeout: Duration,
    /// `health_url`, what the probe GETs.
    health_url: Option<Url>,
    expect_json: Option<bool>,
    max_response_bytes: usize,
    /// The config fixes a method that only reads (GET, HEAD, OPTIONS): a call changes nothing, so
    /// the task may run again after a crash. A method from a variable counts as writing.
    reads_only: bool,
}

/// Is `method` (as written in the config) a fixed method that only reads?
pub(crate) fn reads_only(method: &str) -> bool {
    ["GET", "HEAD", "OPTIONS"]
        .iter()
        .any(|m| method.trim().eq_ignore_ascii_case(m))
}

/// A request ready to send (before any redirect).
struct Prepared {
    method: Method,
    url: Url,
    /// A variable chose the host: the guard applies from the first hop.
    guarded: bool,
    /// The configured headers, marked sensitive.
    headers: HeaderMap,
    body: Option<Value>,
}

impl HttpEndpoint {
    /// Builds it from its config: compiles templates, builds the HTTP clients. The engine's host
    /// is not known here, so it is not refused by name (loopback and private addresses still
    /// are); [`HttpEndpoint::with_engine`] adds it.
    pub fn new(name: &str, config: &HttpConfig) -> Result<Self, EndpointError> {
        Self::with_engine(name, config, None)
    }

    /// Like [`HttpEndpoint::new`], refusing URLs from variables that point at the host of
    /// `engine_url` (`camunda.url`) unless `allowed_hosts` names that host exactly.
    pub fn with_engine(
        name: &str,
        config: &HttpConfig,
        engine_url: Option<&str>,
    ) -> Result<Self, EndpointError> {
        let compiled = config
            .compile(&format!("endpoints.{name}."))
            .map_err(|problems| {
                let list: Vec<String> = problems.iter().map(|(p, m)| format!("{p}: {m}")).collect();
                EndpointError::permanent(redact(&format!(
                    "http endpoint `{name}` is misconfigured: {}",
                    list.join("; ")
                )))
                .code(class::CONFIG)
            })?;
        let guard = Arc::new(Guard::new(compiled.hosts, engine_url));
        let builder = || {
            reqwest::Client::builder()
                .use_rustls_tls()
                .user_agent(concat!("procos/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(config.timeout.min(Duration::from_secs(10)))
                // Redirects are followed by `exchange`, which re-checks hosts and drops headers.
                .redirect(reqwest::redirect::Policy::none())
                .referer(false)
        };
        let build_error = |e: reqwest::Error| {
            EndpointError::permanent(format!(
                "http endpoint `{name}`: cannot build the HTTP client: {e}"
            ))
        };
        let client = builder().build().map_err(build_error)?;
        let guarded = builder()
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver::new(Arc::clone(&guard))))
            .build()
            .map_err(build_error)?;
        Ok(Self {
            name: name.to_string(),
            client,
            guarded,
            method: compiled.method,
            url: compiled.url,
            headers: compiled.headers,
            body: compiled.body,
            guard,
            timeout: config.timeout,
            health_url: compiled.health_url,
            expect_json: config.expect_json,
            max_response_bytes: config.max_response_bytes,
            reads_only: reads_only(&config.method),
        })
    }

    /// Renders the request from the task; every failure here is permanent and names the field
    /// (`method`, `url`, `headers.X`, `body…`) and the variables involved.
    fn prepare(&self, request: &EndpointRequest) -> Result<Prepared, EndpointError> {
        let ctx = TemplateContext::new(request);
        let template_error = |field: &str, e: super::template::TemplateError| {
            EndpointError::permanent(format!("{field}: {e}")).code(class::TEMPLATE)
        };
        let pieces = self
            .method
            .render(&ctx)
            .map_err(|e| template_error("method", e))?;
        let method = parse_method(&joined(&pieces)).map_err(|_| {
            EndpointError::permanent(format!(
                "method: {}, not an HTTP method",
                blame(self.method.variables(), &pieces)
            ))
            .code(class::INVALID_METHOD)
        })?;
        let built = self
            .url
            .build(&ctx)
            .map_err(|p| EndpointError::permanent(p.message).code(p.code))?;
        let host = built.url.host_str().unwrap_or_default().to_string();
        if !self.guard.allow.allows(&host) {
            return Err(EndpointError::permanent(format!(
                "url: host `{}` is not in allowed_hosts of endpoint `{}`",
                quote(&host),
                self.name
            ))
            .code(class::HOST_NOT_ALLOWED));
        }
        if built.host_from_variable {
            self.guard
                .check_host(&host)
                .map_err(|f| self.forbidden(&f, None))?;
        }
        let mut headers = HeaderMap::new();
        for header in &self.headers {
            let field = format!("headers.{}", header.written);
            let pieces = header
                .value
                .render(&ctx)
                .map_err(|e| template_error(&field, e))?;
            let mut value = HeaderValue::from_str(&joined(&pieces)).map_err(|_| {
                EndpointError::permanent(format!(
                    "{field}: {}, not a valid header value (control characters or bytes \
                     outside visible ASCII)",
                    blame(header.value.variables(), &pieces)
                ))
                .code(class::INVALID_HEADER)
            })?;
            value.set_sensitive(true);
            headers.insert(header.name.clone(), value);
        }
        // The current trace span's `traceparent`, unless a header above set one (traces off:
        // nothing).
        crate::telemetry::traces::inject(&mut headers);
        let body =
            match method {
                Method::GET | Method::HEAD => None,
                _ => match &self.body {
                    Some(template) => Some(template.render(&ctx).map_err(|e| {
                        EndpointError::permanent(e.to_string()).code(class::TEMPLATE)
                    })?),
                    None => request.variables.get("body").cloned(),
                },
            };
        Ok(Prepared {
            method,
            url: built.url,
            guarded: built.host_from_variable,
            headers,
            body,
        })
    }

    /// The error for a destination the guard refused. `redirect_from` names the host that sent
    /// the redirect, when the refused host came from one.
    fn forbidden(&self, f: &Forbidden, redirect_from: Option<&str>) -> EndpointError {
        let from = match redirect_from {
            Some(previous) => format!("a redirect from `{}`", quote(previous)),
            None => match self.url.variables() {
                [] => "the URL".to_string(),
                variables => url::names(variables),
            },
        };
        EndpointError::permanent(format!(
            "url: {from} points at a refused destination: {f}; procos does not let URLs from \
             variables or redirects reach internal addresses — name the host in allowed_hosts of \
             endpoint `{}` to allow it",
            self.name
        ))
        .code(class::URL_FORBIDDEN)
    }

    /// Sends the request, following redirects itself: each new host is checked against
    /// `allowed_hosts` and the guard, and the configured headers never leave the origin the
    /// first request went to. Turns the final response into a reply or a classified error.
    async fn exchange(&self, prepared: Prepared) -> Result<EndpointReply, EndpointError> {
        let Prepared {
            mut method,
            mut url,
            mut guarded,
            mut headers,
            mut body,
        } = prepared;
        let first_origin = url.origin();
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut hops = 0;
        // The host that redirected here, once a redirect was followed.
        let mut redirected_by: Option<String> = None;
        loop {
            let host = url.host_str().unwrap_or_default().to_string();
            let client = if guarded { &self.guarded } else { &self.client };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(EndpointError::transient(format!(
                    "{method} {host}: no answer within {:?}",
                    self.timeout
                ))
                .code(class::TIMEOUT));
            }
            let mut builder = client
                .request(method.clone(), url.clone())
                .headers(headers.clone())
                .timeout(left);
            if let Some(body) = &body {
                builder = builder.json(body);
            }
            let response = builder.send().await.map_err(|e| match forbidden_in(&e) {
                Some(f) => self.forbidden(&f, redirected_by.as_deref()),
                None => transport_error_within(e, &method, &host, Some(self.timeout)),
            })?;
            let status = response.status();
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok());
            let Some(location) = location.filter(|_| is_followed_redirect(status)) else {
                return self.read(response, &method, &host).await;
            };
            hops += 1;
            if hops > MAX_REDIRECTS {
                return Err(EndpointError::permanent(format!(
                    "{method} {host}: more than {MAX_REDIRECTS} redirects"
                ))
                .code(class::REDIRECT));
            }
            let next = url
                .join(location)
                .ok()
                .filter(|n| matches!(n.scheme(), "http" | "https") && n.host_str().is_some())
                .ok_or_else(|| {
                    EndpointError::permanent(format!(
                        "{method} {host}: redirect to `{}`, which is not an http(s) URL",
                        quote(location)
                    ))
                    .code(class::REDIRECT)
                })?;
            let next_host = next.host_str().unwrap_or_default().to_string();
            if !self.guard.allow.allows(&next_host) {
                return Err(EndpointError::permanent(format!(
                    "{method} {host}: redirect to host `{}` is not in allowed_hosts",
                    quote(&next_host)
                ))
                .code(class::REDIRECT));
            }
            let next_origin = next.origin();
            if next_origin != url.origin() {
                // The server chose this host: it gets the guard, whatever the config fixed.
                guarded = true;
                self.guard
                    .check_host(&next_host)
                    .map_err(|f| self.forbidden(&f, Some(&host)))?;
            }
            if next_origin != first_origin {
                // Every configured header may carry a secret (they are `Secret`s): none follows
                // a redirect away from the origin the config or the variable named.
                headers.clear();
            }
            let to_get = status == StatusCode::SEE_OTHER && method != Method::HEAD
                || matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
                    && method == Method::POST;
            if to_get {
                method = Method::GET;
                body = None;
            }
            if body.is_some() && next_origin != first_origin {
                // A 307/308 would re-send the body (built from config that may hold a `${VAR}`
                // secret) to a host the config never named.
                return Err(EndpointError::permanent(format!(
                    "{method} {host}: redirect ({}) to host `{}` would re-send the request body \
                     to another host; not followed — point the URL at the new location",
                    status.as_u16(),
                    quote(&next_host)
                ))
                .code(class::REDIRECT));
            }
            redirected_by = Some(host);
            url = next;
        }
    }

    /// Reads a final response into a reply or a classified error.
    async fn read(
        &self,
        mut response: reqwest::Response,
        method: &Method,
        host: &str,
    ) -> Result<EndpointReply, EndpointError> {
        let transport =
            |e: reqwest::Error| transport_error_within(e, method, host, Some(self.timeout));
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
            .code(class::RESPONSE_TOO_LARGE));
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
                    .code(class::INVALID_JSON)
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

/// Statuses whose `Location` is followed (as browsers and reqwest do).
fn is_followed_redirect(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    )
}

#[async_trait]
impl Endpoint for HttpEndpoint {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "http"
    }

    fn side_effects(&self) -> bool {
        !self.reads_only
    }

    async fn call(&self, request: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
        // Errors are redacted once, by the pipeline (`EndpointError::redacted`).
        let prepared = self.prepare(request)?;
        tokio::select! {
            biased;
            _ = request.cancel.cancelled() => Err(EndpointError::cancelled()),
            result = self.exchange(prepared) => result,
        }
    }

    /// `GET health_url` through the SSRF guard (the host must pass `allowed_hosts` and the
    /// guard like a host a variable chose); any 2xx passes, redirects are not followed.
    async fn probe(&self) -> Result<(), EndpointError> {
        let Some(url) = &self.health_url else {
            return Ok(());
        };
        let host = url.host_str().unwrap_or_default();
        if !self.guard.allow.allows(host) {
            return Err(EndpointError::permanent(format!(
                "health_url: host `{}` is not in allowed_hosts",
                quote(host)
            ))
            .code(class::HOST_NOT_ALLOWED));
        }
        if let Err(f) = self.guard.check_host(host) {
            return Err(self.forbidden(&f, None));
        }
        let response = self
            .guarded
            .get(url.clone())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| match forbidden_in(&e) {
                Some(f) => self.forbidden(&f, None),
                None => transport_error_within(e, &Method::GET, host, Some(self.timeout)),
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            // The same mapping as a call's answer (408/429/5xx transient, Retry-After kept).
            Err(status_error(
                status,
                retry_after(&response),
                &Method::GET,
                host,
                &[],
            ))
        }
    }
}

#[cfg(test)]
mod tests;
