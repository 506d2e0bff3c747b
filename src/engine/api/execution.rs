//! `/execution/{id}/localVariables`: the local variables of one execution, as the official JS
//! client reads them to download a `File` variable of a task (`…/{name}/data` with the task's
//! `processInstanceId`).
//!
//! Executions, as the engine reports them: the process instance itself (its local variables are
//! the process variables), and the execution of each waiting activity (a token), whose locals
//! are the activity's own (an external task's input parameters and `localVariables`; every
//! external task is a scope in Camunda).
//!
//! Errors as engine-rest answers them: an unknown variable 404 `InvalidRequestException`; an
//! unknown execution 500 (the engine's `NullValueException` "execution … doesn't exist",
//! wrapped in a `RestException` for a single variable); a variable that is neither `File` nor
//! `Bytes` 400 on `/data`.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use super::{Params, flag};
use crate::engine::Engine;
use crate::engine::errors::{ApiError, ApiResult};
use crate::engine::state::Store;
use crate::engine::variables::{TypedValue, VarMap, VarType, render};

pub(super) fn routes() -> Router<Engine> {
    Router::new()
        .route("/execution/{id}/localVariables", get(variables))
        .route("/execution/{id}/localVariables/{name}", get(variable))
        .route(
            "/execution/{id}/localVariables/{name}/data",
            get(variable_data),
        )
}

/// What Java's `URLEncoder` leaves alone (letters, digits, `. - * _`); a space becomes `%20`
/// as engine-rest's `URLEncodingUtil` writes it.
const URL_ENCODER: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'-')
    .remove(b'*')
    .remove(b'_');

/// The local variables of execution `id`: the process variables when `id` is a process
/// instance, the token's locals when it is an activity's execution; `None` when no such
/// execution exists.
fn locals<'a>(s: &'a Store, id: &str) -> Option<&'a VarMap> {
    if let Some(instance) = s.instances.get(id) {
        return Some(&instance.variables);
    }
    s.instances
        .values()
        .find_map(|i| i.tokens.get(id).map(|t| &t.locals))
}

fn no_execution(id: &str) -> String {
    format!("execution {id} doesn't exist: execution is null")
}

/// One local variable, or the errors engine-rest answers.
fn local<'a>(s: &'a Store, id: &str, name: &str) -> ApiResult<&'a TypedValue> {
    let vars = locals(s, id).ok_or_else(|| {
        ApiError::rest(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Cannot get execution variable {name}: {}", no_execution(id)),
        )
        .wrapping_engine_exception()
    })?;
    vars.get(name).ok_or_else(|| {
        ApiError::not_found(format!(
            "execution variable with name {name} does not exist"
        ))
    })
}

async fn variables(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Json<Value>> {
    let deserialize = flag(&params, "deserializeValues", true);
    engine.with(|s| {
        let vars = locals(s, &id).ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "NullValueException",
                no_execution(&id),
            )
        })?;
        Ok(Json(render(vars, None, deserialize)))
    })
}

async fn variable(
    State(engine): State<Engine>,
    Path((id, name)): Path<(String, String)>,
    params: Params,
) -> ApiResult<Json<Value>> {
    let deserialize = flag(&params, "deserializeValues", true);
    engine.with(|s| Ok(Json(local(s, &id, &name)?.to_json(deserialize))))
}

async fn variable_data(
    State(engine): State<Engine>,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    // Decoded after the store is unlocked: a Bytes value can be large.
    let v = engine.with(|s| local(s, &id, &name).cloned())?;
    binary_response(&v, &id)
}

/// The download of a `File` or `Bytes` variable as engine-rest's `VariableResponseProvider`
/// answers it: a file with its `mimeType` (plus `; charset=` its `encoding`) and
/// `Content-Disposition: attachment; filename="…"; filename*=UTF-8''…`, bytes as
/// `application/octet-stream`; any other type 400 naming `resource_id` (the execution or
/// process instance), as Camunda's message does.
pub(super) fn binary_response(v: &TypedValue, resource_id: &str) -> ApiResult<Response> {
    match v.ty {
        VarType::File => {
            let info = |k: &str| v.value_info.get(k).and_then(Value::as_str);
            let mut mime = info("mimeType")
                .unwrap_or("application/octet-stream")
                .to_owned();
            if let Some(enc) = info("encoding") {
                mime = format!("{mime}; charset={enc}");
            }
            let filename = info("filename").unwrap_or_default();
            let mut response = v.file.clone().unwrap_or_default().into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(&mime)
                    .unwrap_or(HeaderValue::from_static("application/octet-stream")),
            );
            headers.insert(header::CONTENT_DISPOSITION, disposition(filename));
            Ok(response)
        }
        VarType::Bytes => {
            let bytes = v
                .value
                .as_str()
                .and_then(|b| BASE64.decode(b).ok())
                .unwrap_or_default();
            Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
        }
        _ => Err(ApiError::invalid(format!(
            "Value of variable with id {resource_id} is not a binary value."
        ))),
    }
}

/// `attachment; filename="name"; filename*=UTF-8''name%20encoded`. Quotes and control
/// characters in the quoted form become `_` so any filename makes a valid header.
fn disposition(filename: &str) -> HeaderValue {
    let quoted: String = filename
        .chars()
        .map(|c| if c == '"' || c.is_control() { '_' } else { c })
        .collect();
    let encoded = utf8_percent_encode(filename, URL_ENCODER);
    HeaderValue::from_str(&format!(
        "attachment; filename=\"{quoted}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or(HeaderValue::from_static("attachment"))
}
