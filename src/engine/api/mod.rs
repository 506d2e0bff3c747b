//! The REST surface: routes under `/engine-rest` (deployment, process, history, external_task,
//! execution: local variables, task: user tasks, job: timers), the JSON body extractor (lenient
//! as engine-rest's Jackson: unknown fields ignored, `null` as a field's default where the DTO
//! field is a Java primitive), and the fault-injection / logging middleware.
//!
//! ```text
//! request ─► faults (set_down → 503, fail_next → status, count, debug log) ─► handler ─► Store
//!            /_procos/stats is outside the fault layer so tests can always read it
//! ```

mod deployment;
mod execution;
mod external_task;
mod history;
mod job;
mod process;
mod task;

use std::collections::HashMap;

use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};
use serde_json::{Value, json};

use super::Engine;
use super::errors::ApiError;

/// Deployments and file variables can be large; the engine has no small limit either. A larger
/// upload answers 413 saying so (`POST /deployment/create`).
pub(crate) const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Builds the whole router, nested under `/engine-rest`.
pub(crate) fn router(engine: Engine) -> Router {
    let camunda = Router::new()
        .route("/engine", get(engines))
        .route("/version", get(version))
        .merge(deployment::routes())
        .merge(process::routes())
        .merge(history::routes())
        .merge(external_task::routes())
        .merge(execution::routes())
        .merge(task::routes())
        .merge(job::routes())
        .fallback(unknown_route)
        .layer(middleware::from_fn_with_state(engine.clone(), faults));
    let api = camunda
        .route("/_procos/stats", get(stats))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(engine);
    Router::new()
        .nest("/engine-rest", api)
        .fallback(unknown_route)
}

async fn engines() -> Json<Value> {
    Json(json!([{ "name": "default" }]))
}

async fn version() -> Json<Value> {
    Json(json!({ "version": "7.23.0" }))
}

/// Non-Camunda, test/dev only: the engine's counters.
async fn stats(State(engine): State<Engine>) -> Json<super::EngineStats> {
    Json(engine.stats())
}

async fn unknown_route(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFoundException",
        format!("HTTP 404 Not Found: no resource for {method} {uri}"),
    )
}

/// Counts the call, answers injected faults, and logs it at debug.
async fn faults(State(engine): State<Engine>, req: Request, next: Next) -> Response {
    let injected = engine.count_request_and_take_fault();
    if let Some(err) = injected {
        return err.into_response();
    }
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let response = next.run(req).await;
    if !engine.inner.options.quiet {
        tracing::debug!(%method, path, status = response.status().as_u16(), "Engine call answered.");
    }
    response
}

/// A JSON request body, read like engine-rest's Jackson (`FAIL_ON_UNKNOWN_PROPERTIES=false`):
/// unknown fields are ignored (each is named in a debug log line), a wrong content type answers
/// 415, malformed JSON or a value of the wrong type 400 `InvalidRequestException` naming the
/// field. An empty body reads as `{}`.
pub(crate) struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Engine> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, engine: &Engine) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let path = req.uri().path().to_owned();
        let bytes = Bytes::from_request(req, engine).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::invalid(format!("Cannot read the request body: {e}"))
            }
        })?;
        let empty = bytes.iter().all(u8::is_ascii_whitespace);
        if !empty
            && !content_type
                .as_deref()
                .is_some_and(|c| c.starts_with("application/json"))
        {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "NotSupportedException",
                format!(
                    "HTTP 415 Unsupported Media Type: expected application/json, got {}",
                    content_type.as_deref().unwrap_or("no Content-Type")
                ),
            ));
        }
        let slice: &[u8] = if empty { b"{}" } else { &bytes };
        let (body, ignored) = parse_body(slice, &path)?;
        if ignored > 0 {
            engine.with(|s| s.stats.ignored_fields += ignored);
        }
        Ok(Body(body))
    }
}

/// 413 for a request body above [`BODY_LIMIT`] (a deployment or a JSON body).
pub(crate) fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "InvalidRequestException",
        format!(
            "The upload is too large: the engine accepts request bodies of up to {BODY_LIMIT} \
             bytes ({} MiB)",
            BODY_LIMIT / (1024 * 1024)
        ),
    )
}

/// Deserializes a JSON body, ignoring unknown fields (logged at debug with their path, and
/// counted) and naming the field of any type error.
fn parse_body<T: DeserializeOwned>(slice: &[u8], route: &str) -> Result<(T, u64), ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(slice);
    let mut count = 0;
    let mut ignored = |field: serde_ignored::Path<'_>| {
        count += 1;
        tracing::debug!(route, %field, "Unknown field in the request body ignored, as Camunda does.");
    };
    let lenient = serde_ignored::Deserializer::new(de, &mut ignored);
    let body = serde_path_to_error::deserialize(lenient).map_err(|e| {
        let path = e.path().to_string();
        ApiError::invalid(format!("Invalid request body at '{path}': {}", e.inner()))
    })?;
    Ok((body, count))
}

/// `deserialize_with` for a field whose Camunda DTO type is a Java primitive (or a list the
/// engine treats as empty when unset): JSON `null` reads as the default, as Jackson does.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// Query parameters, as Camunda reads them (unknown ones ignored).
pub(crate) type Params = axum::extract::Query<HashMap<String, String>>;

/// A boolean query parameter (`true` / `false`), with a default.
pub(crate) fn flag(params: &HashMap<String, String>, name: &str, default: bool) -> bool {
    params.get(name).map_or(default, |v| v == "true")
}

/// `{"count": n}`.
pub(crate) fn count(n: usize) -> Json<Value> {
    Json(json!({ "count": n }))
}
