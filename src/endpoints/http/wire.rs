//! The wire side of an HTTP call, shared by the http and AI endpoints: status and transport
//! failures as [`EndpointError`]s, `Retry-After`, capped body reads, excerpts for details.

use std::time::{Duration, SystemTime};

use reqwest::header::RETRY_AFTER;
use reqwest::{Method, StatusCode};

use crate::endpoints::EndpointError;

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
