//! `telemetry:` — where procos sends its OpenTelemetry traces (see [`crate::telemetry::traces`]).
//!
//! ```yaml
//! telemetry:
//!   service_name: procos          # resource attribute `service.name`
//!   sampling_ratio: 1.0           # share of tasks traced (parent-based: a whole task or nothing)
//!   otlp:
//!     endpoint: http://collector:4318   # OTLP/HTTP base URL; `/v1/traces` is appended
//!     protocol: http/protobuf           # the only one: no gRPC stack in the binary
//!     headers: { authorization: "Bearer ${OTLP_TOKEN}" }   # secrets, never logged
//!     timeout: 10s                      # one export request
//! ```
//!
//! Off unless an endpoint is given here or in `OTEL_EXPORTER_OTLP_ENDPOINT`; the file wins over
//! the environment ([`TelemetryConfig::resolve`]). Every value is checked while it is parsed, so a
//! bad one is reported with its YAML path like any other config problem.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

use super::secret::Secret;

/// Longest export timeout: an exporter that waits longer only piles up batches.
pub const MAX_EXPORT_TIMEOUT: Duration = Duration::from_secs(60);

/// The `telemetry:` section. Absent: defaults, i.e. traces off unless the environment asks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The OTLP exporter; absent: only `OTEL_EXPORTER_OTLP_ENDPOINT` can switch traces on.
    #[serde(default)]
    pub otlp: Option<OtlpConfig>,
    /// `service.name` of every span; default `OTEL_SERVICE_NAME`, else `procos`.
    #[serde(default, deserialize_with = "service_name")]
    pub service_name: Option<String>,
    /// Share of tasks whose trace is recorded and exported, 0 to 1 (1: every task). A task is
    /// sampled as a whole: its blocks and endpoint calls follow the task's decision.
    #[serde(default = "one", deserialize_with = "ratio")]
    pub sampling_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp: None,
            service_name: None,
            sampling_ratio: 1.0,
        }
    }
}

/// `telemetry.otlp:` — the collector traces are sent to.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// OTLP/HTTP base URL (`http://collector:4318`); spans go to `<endpoint>/v1/traces`, as the
    /// OTLP spec says for `OTEL_EXPORTER_OTLP_ENDPOINT`. Absent: the environment's.
    #[serde(default, deserialize_with = "endpoint")]
    pub endpoint: Option<String>,
    /// Wire protocol; only `http/protobuf`.
    #[serde(default)]
    pub protocol: OtlpProtocol,
    /// Extra request headers (e.g. an API key of a hosted collector); secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Bound on one export request (up to a minute).
    #[serde(default = "default_timeout", deserialize_with = "timeout")]
    pub timeout: Duration,
}

impl std::fmt::Debug for OtlpConfig {
    /// The endpoint URL may carry credentials: only whether one is set is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpConfig")
            .field("endpoint", &self.endpoint.as_ref().map(|_| "<set>"))
            .field("protocol", &self.protocol)
            .field("headers", &self.headers)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The OTLP transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    /// Protobuf over HTTP POST (OTLP's default and the collector's port 4318).
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// What the exporter is built from: the file's settings with the environment filled in.
#[derive(Clone, PartialEq)]
pub struct Resolved {
    /// Full URL spans are POSTed to (`…/v1/traces`).
    pub traces_url: String,
    /// Headers sent with every export (file's, else `OTEL_EXPORTER_OTLP_HEADERS`).
    pub headers: BTreeMap<String, Secret>,
    /// Bound on one export request.
    pub timeout: Duration,
    /// `service.name`.
    pub service_name: String,
    /// Share of tasks traced.
    pub sampling_ratio: f64,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("traces_url", &"<set>")
            .field("headers", &self.headers)
            .field("timeout", &self.timeout)
            .field("service_name", &self.service_name)
            .field("sampling_ratio", &self.sampling_ratio)
            .finish()
    }
}

impl TelemetryConfig {
    /// The exporter's settings, or `None` when traces are off (no endpoint in the file nor in
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`). `env` reads an environment variable (tests pass a map).
    /// The file wins over the environment, key by key. An environment endpoint that is not an
    /// http(s) URL is an error naming the variable (not its value).
    pub fn resolve(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Resolved>, String> {
        let nonempty = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let file = self.otlp.as_ref();
        // The file's and OTEL_EXPORTER_OTLP_ENDPOINT are base URLs; the signal-specific
        // OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is used as it is (as the OTLP spec says).
        let traces_url = match file.and_then(|o| o.endpoint.clone()) {
            Some(endpoint) => signal_url(&endpoint),
            None => {
                let from_env = |var: &str| -> Result<Option<String>, String> {
                    match nonempty(var) {
                        Some(url) => check_url(&url)
                            .map(|()| Some(url.trim().to_string()))
                            .map_err(|e| format!("{var}: {e}")),
                        None => Ok(None),
                    }
                };
                match from_env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")? {
                    Some(url) => url,
                    None => match from_env("OTEL_EXPORTER_OTLP_ENDPOINT")? {
                        Some(endpoint) => signal_url(&endpoint),
                        None => return Ok(None),
                    },
                }
            }
        };
        let headers = match file.filter(|o| !o.headers.is_empty()) {
            Some(o) => o.headers.clone(),
            None => nonempty("OTEL_EXPORTER_OTLP_HEADERS")
                .map(|h| env_headers(&h))
                .transpose()?
                .unwrap_or_default(),
        };
        Ok(Some(Resolved {
            traces_url,
            headers,
            timeout: file.map_or_else(default_timeout, |o| o.timeout),
            service_name: self
                .service_name
                .clone()
                .or_else(|| nonempty("OTEL_SERVICE_NAME"))
                .unwrap_or_else(|| "procos".into()),
            sampling_ratio: self.sampling_ratio,
        }))
    }
}

/// `OTEL_EXPORTER_OTLP_HEADERS`: `key=value,key2=value2` (values percent-decoded, as the spec
/// says). Values are registered as secrets; errors name the variable, never a value.
fn env_headers(text: &str) -> Result<BTreeMap<String, Secret>, String> {
    let mut headers = BTreeMap::new();
    for (i, pair) in text
        .split(',')
        .enumerate()
        .filter(|(_, p)| !p.trim().is_empty())
    {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!(
                "OTEL_EXPORTER_OTLP_HEADERS: entry {} is not `key=value`",
                i + 1
            ));
        };
        let value = percent_encoding::percent_decode_str(value.trim())
            .decode_utf8_lossy()
            .into_owned();
        super::secret::register(&value);
        headers.insert(key.trim().to_string(), Secret::new(value));
    }
    Ok(headers)
}

/// `<base>/v1/traces`.
fn signal_url(base: &str) -> String {
    format!("{}/v1/traces", base.trim_end_matches('/'))
}

fn one() -> f64 {
    1.0
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// An http(s) URL with a host. The message never repeats the URL (it may carry credentials).
fn check_url(text: &str) -> Result<(), String> {
    match url::Url::parse(text.trim()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(()),
        Ok(_) => Err("must be an http:// or https:// URL with a host".into()),
        Err(e) => Err(format!("not a URL ({e})")),
    }
}

fn endpoint<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    check_url(&text).map_err(de::Error::custom)?;
    Ok(Some(text.trim().to_string()))
}

fn service_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim().is_empty() {
        return Err(de::Error::custom("must not be empty"));
    }
    Ok(Some(text))
}

fn ratio<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let r = f64::deserialize(d)?;
    if !(0.0..=1.0).contains(&r) {
        return Err(de::Error::custom(format!(
            "{r} is not a share between 0 and 1"
        )));
    }
    Ok(r)
}

fn timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let t = humantime_serde::deserialize::<Duration, D>(d)?;
    if t.is_zero() || t > MAX_EXPORT_TIMEOUT {
        return Err(de::Error::custom(format!(
            "{} is outside 1ms..=60s",
            humantime::format_duration(t)
        )));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<TelemetryConfig, String> {
        let de = serde_yaml::Deserializer::from_str(yaml);
        serde_path_to_error::deserialize(de).map_err(|e| format!("{}: {}", e.path(), e.inner()))
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn off_without_an_endpoint_anywhere() {
        let config = parse("service_name: svc").expect("parses");
        assert_eq!(config.resolve(env(&[])), Ok(None));
        assert_eq!(TelemetryConfig::default().resolve(env(&[])), Ok(None));
    }

    #[test]
    fn the_file_wins_over_the_environment() {
        let config = parse(
            "{service_name: svc, sampling_ratio: 0.5, otlp: {endpoint: 'http://file:4318/', \
             headers: {x-key: k1}, timeout: 2s}}",
        )
        .expect("parses");
        let r = config
            .resolve(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
                ("OTEL_SERVICE_NAME", "envsvc"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "x-key=k2"),
            ]))
            .expect("valid")
            .expect("on");
        assert_eq!(r.traces_url, "http://file:4318/v1/traces");
        assert_eq!(r.service_name, "svc");
        assert_eq!(r.headers["x-key"].expose(), "k1");
        assert_eq!(r.timeout, Duration::from_secs(2));
        assert_eq!(r.sampling_ratio, 0.5);
    }

    #[test]
    fn the_environment_switches_traces_on() {
        let r = TelemetryConfig::default()
            .resolve(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://env:4318"),
                ("OTEL_SERVICE_NAME", "envsvc"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%3Db, x=y"),
            ]))
            .expect("valid")
            .expect("on");
        assert_eq!(r.traces_url, "https://env:4318/v1/traces");
        assert_eq!(r.service_name, "envsvc");
        assert_eq!(r.headers["api-key"].expose(), "a=b");
        assert_eq!(r.headers["x"].expose(), "y");
        assert_eq!(r.timeout, Duration::from_secs(10));
        let r = TelemetryConfig::default()
            .resolve(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://env:4318"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://traces:1234/custom",
                ),
            ]))
            .expect("valid")
            .expect("on");
        assert_eq!(r.traces_url, "http://traces:1234/custom");
        assert_eq!(r.service_name, "procos");
    }

    #[test]
    fn a_bad_environment_endpoint_names_the_variable_not_the_value() {
        let err = TelemetryConfig::default()
            .resolve(env(&[(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "ftp://user:hunter2@x",
            )]))
            .expect_err("refused");
        assert!(err.starts_with("OTEL_EXPORTER_OTLP_ENDPOINT:"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn bad_values_are_refused_with_their_path() {
        for (yaml, path) in [
            ("otlp: {endpoint: 'ftp://x'}", "otlp.endpoint"),
            ("otlp: {endpoint: 'not a url'}", "otlp.endpoint"),
            ("otlp: {protocol: grpc}", "otlp.protocol"),
            ("otlp: {timeout: 0s}", "otlp.timeout"),
            ("otlp: {timeout: 2m}", "otlp.timeout"),
            ("otlp: {endpont: 'http://x'}", "otlp"),
            ("sampling_ratio: 1.5", "sampling_ratio"),
            ("sampling_ratio: -0.1", "sampling_ratio"),
            ("service_name: ' '", "service_name"),
            ("exporter: otlp", "exporter"),
        ] {
            let err = parse(yaml).expect_err(yaml);
            assert!(err.starts_with(path), "{yaml}: {err}");
        }
    }

    #[test]
    fn headers_and_credentials_in_the_endpoint_never_show_in_debug() {
        let config = parse(
            "otlp: {endpoint: 'https://u:hunter2@collector', headers: {authorization: 'Bearer s3cret'}}",
        )
        .expect("parses");
        let shown = format!("{config:?} {:?}", config.resolve(env(&[])));
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
    }
}
