//! The wire side of an HTTP call, shared by the http and AI endpoints: status and transport
//! failures as [`EndpointError`]s, the retry hints servers and gateways send (`Retry-After` and
//! kin), capped body reads, excerpts for details.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};

use crate::endpoints::EndpointError;
use crate::endpoints::class;

/// How much of an error response body goes into the error's details.
pub(crate) const DETAILS_LIMIT: usize = 4 * 1024;

/// Maps a non-2xx status: 408, 429 and 5xx are transient, the rest permanent.
pub(super) fn status_error(
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

/// Maps a transport failure. The URL is left out: its query may hold a key. The message says
/// first what happened (`no answer in time`, `connection failed`, `request failed`), then the
/// cause chain without reqwest's and hyper's generic links ("error sending request",
/// "client error (Connect)").
pub(crate) fn transport_error(error: reqwest::Error, method: &Method, host: &str) -> EndpointError {
    transport_error_within(error, method, host, None)
}

/// [`transport_error`], naming the time bound that ran out when there is one.
pub(super) fn transport_error_within(
    error: reqwest::Error,
    method: &Method,
    host: &str,
    bound: Option<Duration>,
) -> EndpointError {
    let (timeout, connect, redirect, builder) = (
        error.is_timeout(),
        error.is_connect(),
        error.is_redirect(),
        error.is_builder(),
    );
    let error = error.without_url();
    let mut causes = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = current {
        let text = e.to_string();
        let generic = text.starts_with("error sending request")
            || text.starts_with("client error (")
            || text == "operation timed out";
        if !generic {
            causes.push(text);
        }
        current = e.source();
    }
    let what = if timeout {
        match bound {
            Some(bound) => format!("no answer within {bound:?}"),
            None => "no answer in time".to_string(),
        }
    } else if connect {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let message = match causes.is_empty() {
        true => format!("{method} {host}: {what}"),
        false => format!("{method} {host}: {what}: {}", causes.join(": ")),
    };
    // `connect` only for reqwest's connect phase (refused, unreachable, TLS handshake): the
    // request provably never left (see `EndpointError::never_sent`). A connect that timed out
    // is a `timeout`, and never retried for a side-effecting call.
    if timeout {
        EndpointError::transient(message).code(class::TIMEOUT)
    } else if connect {
        EndpointError::transient(message).code(class::CONNECT)
    } else if redirect {
        EndpointError::permanent(message).code(class::REDIRECT)
    } else if builder {
        EndpointError::permanent(message).code(class::REQUEST)
    } else {
        EndpointError::transient(message).code(class::REQUEST)
    }
}

/// Longest server-advised wait procos takes from an answer: a longer hint (a daily limit's
/// reset, a garbled value) is cut to this, so the task is tried again within the hour.
pub(crate) const MAX_RETRY_HINT: Duration = Duration::from_secs(60 * 60);

/// Prefix a LiteLLM proxy puts before the headers it relays from the provider behind it.
const RELAYED: &str = "llm_provider-";

/// The server-advised wait of a response, if any: see [`retry_hint`].
pub(crate) fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    // Only a failed answer's hint is read; a success pays nothing for it.
    if response.status().is_success() {
        return None;
    }
    retry_hint(response.headers(), response.status(), SystemTime::now())
}

/// The wait an answer advises, from every hint that servers and the gateways in front of them
/// send. The largest wins, cut to [`MAX_RETRY_HINT`]; a value that does not parse is ignored.
///
/// | header | form |
/// |---|---|
/// | `retry-after` | seconds, or an HTTP date (a past one means now) |
/// | `retry-after-ms` | milliseconds (OpenAI, Azure OpenAI) |
/// | `x-ratelimit-reset-tokens` | `1s`, `6m0s`, `20ms`, `1.5s` (OpenAI); on a 429 only |
/// | `x-ratelimit-reset-requests` | the same, on a 429 whose `x-ratelimit-remaining-requests` is 0 or absent |
///
/// Each is also read with LiteLLM's `llm_provider-` prefix: the upstream's own hint, relayed.
/// The rate-limit resets are sent on every answer and say when a window ends, so they are a
/// wait only when a limit was hit, and the requests window only when requests ran out (a daily
/// request window resetting in 8 h says nothing about a token limit hit for a minute).
pub(crate) fn retry_hint(
    headers: &HeaderMap,
    status: StatusCode,
    now: SystemTime,
) -> Option<Duration> {
    let mut hints: Vec<Duration> = Vec::new();
    hints.extend(
        header_values(headers, "retry-after")
            .into_iter()
            .filter_map(|v| parse_retry_after(v, now)),
    );
    hints.extend(
        header_values(headers, "retry-after-ms")
            .into_iter()
            .filter_map(|v| seconds(v, 1e-3)),
    );
    if status == StatusCode::TOO_MANY_REQUESTS {
        let requests_left = header_values(headers, "x-ratelimit-remaining-requests")
            .into_iter()
            .filter_map(|v| v.trim().parse::<u64>().ok())
            .min();
        let mut windows = vec!["x-ratelimit-reset-tokens"];
        if requests_left.is_none_or(|left| left == 0) {
            windows.push("x-ratelimit-reset-requests");
        }
        for window in windows {
            hints.extend(
                header_values(headers, window)
                    .into_iter()
                    .filter_map(|v| parse_reset(v, now)),
            );
        }
    }
    hints.into_iter().max().map(|wait| wait.min(MAX_RETRY_HINT))
}

/// The values of header `name`, sent directly or relayed with the `llm_provider-` prefix.
fn header_values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    [name.to_string(), format!("{RELAYED}{name}")]
        .iter()
        .flat_map(|n| headers.get_all(n.as_str()))
        .filter_map(|v| v.to_str().ok())
        .collect()
}

/// A non-negative number of `unit` seconds (`"2"`, `"1.5"`) as a duration.
fn seconds(value: &str, unit: f64) -> Option<Duration> {
    let n: f64 = value.trim().parse().ok()?;
    (n >= 0.0)
        .then(|| Duration::try_from_secs_f64(n * unit).ok())
        .flatten()
}

/// A rate-limit window's reset: a Go-style duration (`6m0s`, `20ms`, `1.5s`), plain seconds, a
/// Unix time (some gateways send one) or an RFC 3339 time.
fn parse_reset(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    /// Plain numbers from here on are points in time, not waits (2001-09-09 in Unix seconds).
    const UNIX_TIME: f64 = 1e9;
    if let Ok(n) = value.parse::<f64>() {
        if n >= UNIX_TIME {
            let at = SystemTime::UNIX_EPOCH + Duration::try_from_secs_f64(n).ok()?;
            return Some(at.duration_since(now).unwrap_or(Duration::ZERO));
        }
        return seconds(value, 1.0);
    }
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(value) {
        let at = SystemTime::from(at.with_timezone(&chrono::Utc));
        return Some(at.duration_since(now).unwrap_or(Duration::ZERO));
    }
    humantime::parse_duration(value).ok()
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

/// `Retry-After`: delay seconds (`2`, also `1.5` as some gateways send) or an HTTP date in any
/// of the three forms HTTP allows (a past date means "now"). Not capped: see [`retry_hint`].
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Some(wait) = seconds(value, 1.0) {
        return Some(wait);
    }
    let at = httpdate::parse_http_date(value).ok()?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    /// 2015-10-21 07:28:00 UTC.
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    fn hint(status: u16, pairs: &[(&str, &str)]) -> Option<Duration> {
        retry_hint(
            &headers(pairs),
            StatusCode::from_u16(status).unwrap(),
            now(),
        )
    }

    #[test]
    fn retry_after_dates_are_read_in_all_three_http_forms() {
        for date in [
            "Wed, 21 Oct 2015 07:29:00 GMT",
            "Wednesday, 21-Oct-15 07:29:00 GMT",
            "Wed Oct 21 07:29:00 2015",
        ] {
            assert_eq!(
                parse_retry_after(date, now()),
                Some(Duration::from_secs(60)),
                "{date}"
            );
        }
        assert_eq!(
            parse_retry_after("1.5", now()),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_retry_after("-3", now()), None);
    }

    #[test]
    fn the_largest_hint_wins_whoever_sends_it_and_is_capped() {
        assert_eq!(
            hint(503, &[("retry-after", "1"), ("retry-after-ms", "2500")]),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(
            hint(
                429,
                &[("retry-after", "1"), ("llm_provider-retry-after", "2")]
            ),
            Some(Duration::from_secs(2)),
            "LiteLLM relays the upstream's hint with a prefix"
        );
        assert_eq!(
            hint(
                429,
                &[
                    ("retry-after", "Wed, 21 Oct 2015 07:29:00 GMT"),
                    ("retry-after-ms", "20")
                ]
            ),
            Some(Duration::from_secs(60))
        );
        assert_eq!(hint(429, &[("retry-after", "86400")]), Some(MAX_RETRY_HINT));
        assert_eq!(hint(429, &[("retry-after", "soon")]), None);
        assert_eq!(hint(429, &[]), None);
    }

    #[test]
    fn rate_limit_resets_are_a_wait_only_for_the_limit_that_was_hit() {
        let openai = [
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "1s"),
            ("x-ratelimit-reset-tokens", "20ms"),
        ];
        assert_eq!(hint(429, &openai), Some(Duration::from_secs(1)));
        assert_eq!(hint(500, &openai), None, "a 500 hit no limit");
        assert_eq!(hint(200, &openai), None);
        assert_eq!(
            hint(
                429,
                &[
                    ("x-ratelimit-remaining-requests", "9000"),
                    ("x-ratelimit-reset-requests", "8h38m24s"),
                    ("x-ratelimit-reset-tokens", "2m59.56s"),
                ]
            ),
            Some(Duration::from_millis(179_560)),
            "requests were left, so their daily window is not the wait"
        );
        assert_eq!(
            hint(429, &[("llm_provider-x-ratelimit-reset-tokens", "6m0s")]),
            Some(Duration::from_secs(360))
        );
        assert_eq!(
            hint(429, &[("x-ratelimit-reset-tokens", "1445412540")]),
            Some(Duration::from_secs(60)),
            "a Unix time"
        );
        assert_eq!(
            hint(429, &[("x-ratelimit-reset-tokens", "2015-10-21T07:28:30Z")]),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            hint(429, &[("x-ratelimit-reset-tokens", "7")]),
            Some(Duration::from_secs(7))
        );
    }
}
