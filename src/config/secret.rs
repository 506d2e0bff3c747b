//! Secrets: the one type for values that must never be printed, and the process-wide registry
//! that scrubs them from every message a person can see.
//!
//! ```text
//!  pde.yaml ─ ${VAR} / Secret fields ──register──► KNOWN (values, longest first)
//!                                                     │
//!  error message, errorDetails, log field ──redact────┘──► "*** instead of the value"
//!  a variable's value in a message ────────quote──────────► `first 200 chars…` (redacted)
//! ```
//!
//! A value is a secret when it came from the environment (`${VAR}`) or sits in a [`Secret`]
//! field. The registry is global on purpose: secrets reach messages through paths no one threads
//! a handle through (a server echoing a key in its error body, a URL built from a template, an
//! error chain), and a redaction that only works where someone remembered to pass the registry
//! is the leak this module exists to stop.

use std::fmt;
use std::sync::RwLock;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};

/// Holds a secret value. `Debug` and `Display` print `***`; only [`Secret::expose`] reveals it,
/// and only code that sends it over the wire should call that.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value. Only deserialization (the config) registers it for [`redact`]:
    /// call [`register`] for a secret built any other way.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that puts it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no value was given (e.g. `${KEY:-}` with `KEY` unset).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Accepts any scalar, not only strings: a password like `12345` (or `${PIN}` that interpolation
/// turned into a number) is still a secret, and a "expected a string" error would otherwise echo
/// it. Every error this can produce names the YAML type only, never the value.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretVisitor)
    }
}

struct SecretVisitor;

impl Visitor<'_> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a secret string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(registered(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(registered(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secret, E> {
        Ok(registered(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Secret, E> {
        Ok(registered(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Secret, E> {
        Ok(registered(v.to_string()))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Secret, E> {
        Ok(registered(v.to_string()))
    }
}

/// A secret read from the config, registered for [`redact`]. Values with template syntax are
/// registered too (harmless), but what protects a templated header is its `${VAR}` part, which
/// interpolation registers on its own.
fn registered(value: String) -> Secret {
    register(&value);
    Secret(value)
}

/// Every secret value this process knows, longest first (so a value containing another is
/// replaced whole). Grows only: a secret, once seen, stays one.
static KNOWN: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Raw occurrences of values at least this long are redacted anywhere in a text; shorter ones
/// only where they stand quoted (`"v"`, `` `v` ``, `'v'`) or alone, as messages quote values: a
/// shorter raw match would mangle ordinary words (`port 25` must not become `port ***`).
pub const MIN_RAW_REDACT_LEN: usize = 6;

/// How many characters of a variable's value a message quotes; the rest is elided.
pub const QUOTE_LIMIT: usize = 200;

/// Remembers `value` as a secret: from now on [`redact`] hides it. Empty values are ignored.
/// Called for every `${VAR}` value interpolated into the config and every [`Secret`] field.
pub fn register(value: &str) {
    // A poisoned lock only means a panic elsewhere while pushing; the list itself is intact.
    remember(&mut KNOWN.write().unwrap_or_else(|e| e.into_inner()), value);
}

/// Adds `value` to a list of secrets kept longest first (so a value containing another is
/// replaced whole), without duplicates or empty values: the shape [`redact_with`] expects.
pub(crate) fn remember(known: &mut Vec<String>, value: &str) {
    if !value.is_empty() && !known.iter().any(|v| v == value) {
        known.push(value.to_string());
        known.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }
}

/// `text` with every registered secret replaced by `***`. Apply it to anything a person or
/// another system will read: error messages, `errorDetails`, log fields built from input.
pub fn redact(text: &str) -> String {
    let known = KNOWN.read().unwrap_or_else(|e| e.into_inner());
    redact_with(&known, text)
}

/// `text` with every value of `known` (kept by [`remember`]) replaced by `***`: anywhere for
/// values of [`MIN_RAW_REDACT_LEN`] characters or more, else where quoted or alone; the
/// Debug-escaped form serde uses to echo a value is replaced too.
pub(crate) fn redact_with(known: &[String], text: &str) -> String {
    let mut out = text.to_string();
    for value in known {
        let escaped = format!("{value:?}");
        if out.contains(escaped.as_str()) {
            out = out.replace(escaped.as_str(), "\"***\"");
        }
        if !out.contains(value.as_str()) {
            continue;
        }
        if value.chars().count() >= MIN_RAW_REDACT_LEN {
            out = out.replace(value.as_str(), "***");
        } else if out == *value {
            out = "***".to_string();
        } else {
            for (open, close) in [("\"", "\""), ("`", "`"), ("'", "'")] {
                out = out.replace(
                    &format!("{open}{value}{close}"),
                    &format!("{open}***{close}"),
                );
            }
        }
    }
    out
}

/// A value for a message: redacted, control characters escaped (a value cannot forge a line of
/// its own in a log), and cut after [`QUOTE_LIMIT`] characters with the total size named, so a
/// 5 MB variable never goes whole into a message. Returns the text without quotes around it.
pub fn quote(value: &str) -> String {
    let known = KNOWN.read().unwrap_or_else(|e| e.into_inner());
    // Redact a head long enough to hold whole any secret that starts within the kept part, so
    // the cut never leaves the first characters of a secret on show; never the whole 5 MB.
    // Measured in characters: the list is ordered by bytes, and a multi-byte secret can be the
    // longest in bytes while shorter in characters than another.
    let longest = known.iter().map(|v| v.chars().count()).max().unwrap_or(0);
    let head: String = value.chars().take(QUOTE_LIMIT + longest).collect();
    let redacted = redact_with(&known, &head);
    let mut out = String::new();
    let mut chars = redacted.chars();
    for c in chars.by_ref().take(QUOTE_LIMIT) {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    if chars.next().is_some() || head.len() < value.len() {
        out.push_str(&format!("… ({} bytes in all)", value.len()));
    }
    out
}

/// A URL for a log line: user info and query values masked, and any registered secret inside a
/// host or path segment redacted. The scheme, host, port and path stay readable, so an operator
/// sees where procos connects; a URL that does not parse is shown as `***`.
pub fn redact_url(url: &str) -> String {
    let Ok(parsed) = reqwest::Url::parse(url.trim()) else {
        return "***".to_string();
    };
    let known = KNOWN.read().unwrap_or_else(|e| e.into_inner());
    let masked = |part: &str| redact_with(&known, part);
    let mut out = format!("{}://", parsed.scheme());
    if !parsed.username().is_empty() || parsed.password().is_some() {
        out.push_str("***@");
    }
    if let Some(host) = parsed.host_str() {
        out.push_str(&masked(host));
    }
    if let Some(port) = parsed.port() {
        out.push_str(&format!(":{port}"));
    }
    let segments: Vec<String> = parsed
        .path_segments()
        .map(|s| s.map(&masked).collect())
        .unwrap_or_default();
    if !segments.is_empty() {
        out.push('/');
        out.push_str(&segments.join("/"));
    }
    let keys: Vec<String> = parsed
        .query_pairs()
        .map(|(k, _)| format!("{}=***", masked(&k)))
        .collect();
    if !keys.is_empty() {
        out.push('?');
        out.push_str(&keys.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("sk-live-123");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "sk-live-123");
    }

    #[test]
    fn secrets_from_the_config_are_redacted_from_any_text() {
        let s: Secret = serde_yaml::from_str("'zq-registry-test-98765'").unwrap();
        assert_eq!(s.expose(), "zq-registry-test-98765");
        assert_eq!(
            redact("GET https://x/?k=zq-registry-test-98765 failed"),
            "GET https://x/?k=*** failed"
        );
        // Short values only where quoted or alone, so ordinary words survive.
        register("q7z");
        assert_eq!(
            redact("value `q7z`, \"q7z\" and q7z"),
            "value `***`, \"***\" and q7z"
        );
        assert_eq!(redact("q7z"), "***");
    }

    #[test]
    fn quote_caps_escapes_and_redacts() {
        let huge = "y".repeat(5 * 1024 * 1024);
        let quoted = quote(&huge);
        assert!(quoted.len() < QUOTE_LIMIT + 40, "{}", quoted.len());
        assert!(quoted.ends_with("(5242880 bytes in all)"), "{quoted}");
        assert_eq!(quote("a\r\nb"), "a\\r\\nb");
        register("zq-quote-test-13579");
        assert_eq!(quote("key zq-quote-test-13579"), "key ***");
        // A secret across the cut is not half shown, even when the longest secret in bytes is
        // short in characters (the config's property tests register such values; this one is
        // 24 bytes and 12 characters, shorter than the 19 of the secret below).
        register(&"é".repeat(12));
        let across = format!("{}zq-quote-test-13579 tail", "a".repeat(QUOTE_LIMIT - 5));
        assert!(!quote(&across).contains("zq-q"), "{}", quote(&across));
    }

    #[test]
    fn urls_for_logs_keep_where_and_hide_credentials() {
        register("zq-url-token-24680");
        assert_eq!(
            redact_url("https://user:pw@engine.example:8443/engine-rest?token=abc&x=1#frag"),
            "https://***@engine.example:8443/engine-rest?token=***&x=***"
        );
        assert_eq!(
            redact_url("https://api.example/botzq-url-token-24680/send"),
            "https://api.example/bot***/send"
        );
        assert_eq!(redact_url("http://[bad"), "***");
    }

    #[test]
    fn numeric_secrets_are_read_as_text_and_errors_do_not_echo_values() {
        let s: Secret = serde_yaml::from_str("12345").unwrap();
        assert_eq!(s.expose(), "12345");
        let s: Secret = serde_json::from_value(serde_json::json!(12345)).unwrap();
        assert_eq!(s.expose(), "12345");
        let err = serde_yaml::from_str::<Secret>("[hunter2]").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
