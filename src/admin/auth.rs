//! The admin server's bearer token. When `admin.token` is set, every route but `/healthz` and
//! `/readyz` (what an orchestrator's probes call) needs it:
//!
//! - `Authorization: Bearer <token>` — Prometheus, curl, scripts;
//! - a browser opens `/?token=<token>` once: the answer sets an `HttpOnly`, `SameSite=Strict`
//!   cookie holding it and redirects to `/`, so the token leaves the address bar and history,
//!   and the page's own requests carry the cookie.
//!
//! Tokens are compared in constant time (`subtle`); a refusal is `401` with
//! `WWW-Authenticate: Bearer` and never echoes what was sent.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use subtle::ConstantTimeEq;

use super::AdminState;
use std::sync::Arc;

/// The cookie a browser keeps the token in.
pub const COOKIE: &str = "procos_admin_token";

/// Routes open without a token: liveness and readiness probes.
const OPEN: [&str; 2] = ["/healthz", "/readyz"];

/// Equal in constant time (for equal lengths; a length mismatch is refused at once).
fn same(given: &str, token: &str) -> bool {
    given.as_bytes().ct_eq(token.as_bytes()).into()
}

/// The token the request carries: the bearer header, else the cookie.
fn presented(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    bearer.or_else(|| {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, value)| value)
    })
}

/// `?token=` in the query, when present.
fn query_token(request: &Request) -> Option<String> {
    request.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    })
}

/// The middleware: passes open routes and requests with the token; answers `/?token=` with
/// the cookie; refuses the rest.
pub async fn require_token(
    State(state): State<Arc<AdminState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = state.token.as_ref().map(|t| t.expose()) else {
        return next.run(request).await;
    };
    if OPEN.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    if presented(request.headers()).is_some_and(|given| same(given, token)) {
        return next.run(request).await;
    }
    if request.uri().path() == "/"
        && let Some(given) = query_token(&request)
        && same(&given, token)
    {
        let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
        let mut response = Redirect::to("/").into_response();
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
        return response;
    }
    let mut response = (
        StatusCode::UNAUTHORIZED,
        "procos admin: a token is required (Authorization: Bearer <admin.token>; in a browser, open /?token=<admin.token> once)\n",
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_read_from_the_bearer_header_or_the_cookie() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), None);
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; procos_admin_token=t0k; c=d"),
        );
        assert_eq!(presented(&h), Some("t0k"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x1"));
        assert_eq!(presented(&h), Some("x1"));
        assert!(same("x1", "x1"));
        assert!(!same("x1", "x2"));
        assert!(!same("x", "x1"));
    }
}
