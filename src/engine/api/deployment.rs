//! `/deployment` and `/process-definition` resources.
//!
//! `POST /deployment/create` follows engine-rest's multipart rules: the text fields are read
//! only from parts without a content type or with `text/plain`; every other part is a resource
//! and must carry a filename; parts are kept by part name, so a repeated part name keeps only
//! its last file. An upload above the body limit answers 413 saying so.
//!
//! Models are parsed on a blocking thread with no lock held (at most [`PARSING`] at a time),
//! then the store is locked only to register the deployment: `/version`, `fetchAndLock` and
//! every other call keep answering while a large model parses. A client that gives up stops
//! its parse (checked every few thousand XML events).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;
use tokio::sync::Semaphore;

use super::{BODY_LIMIT, Params, flag, too_large};
use crate::engine::Engine;
use crate::engine::deploy::{DeployRequest, Prepared, definition_json};
use crate::engine::errors::{ApiError, ApiResult};

const TEXT_FIELDS: [&str; 6] = [
    "deployment-name",
    "enable-duplicate-filtering",
    "deploy-changed-only",
    "deployment-source",
    "tenant-id",
    "deployment-activation-time",
];

pub(super) fn routes() -> Router<Engine> {
    Router::new()
        .route("/deployment/create", post(create))
        .route("/deployment", get(list))
        .route("/deployment/{id}", get(one).delete(delete))
        .route("/process-definition", get(definitions))
        .route("/process-definition/key/{key}", get(definition_by_key))
}

/// Deployments parsed at the same time; more wait for a permit. Bounds the CPU that uploads
/// can take from the engine's other calls (and the blocking threads they can occupy).
static PARSING: Semaphore = Semaphore::const_new(2);

/// A multipart read error: 413 when it is the body limit, else 400 naming the problem.
fn bad_part(e: MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large()
    } else {
        ApiError::invalid(format!("Malformed multipart body: {e}"))
    }
}

async fn create(
    State(engine): State<Engine>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Json<Value>> {
    // Refuse a declared oversize body before reading any of it.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(too_large());
    }
    let mut multipart = multipart.map_err(|e| {
        ApiError::invalid(format!(
            "The deployment must be sent as multipart/form-data: {e}"
        ))
    })?;
    let mut text = BTreeMap::new();
    let mut parts: BTreeMap<String, (String, Vec<u8>)> = BTreeMap::new();
    while let Some(field) = multipart.next_field().await.map_err(bad_part)? {
        let name = field.name().unwrap_or_default().to_owned();
        let is_text = field
            .content_type()
            .is_none_or(|c| c.starts_with("text/plain"));
        if TEXT_FIELDS.contains(&name.as_str()) {
            if is_text {
                text.insert(name, field.text().await.map_err(bad_part)?);
            }
            continue;
        }
        let Some(filename) = field.file_name().map(str::to_owned) else {
            return Err(ApiError::invalid(format!(
                "No file name found in the deployment resource described by form parameter '{name}'."
            )));
        };
        let bytes = field.bytes().await.map_err(bad_part)?;
        parts.insert(name, (filename, bytes.to_vec()));
    }
    if parts.is_empty() {
        return Err(ApiError::invalid(
            "No deployment resources contained in the form upload.".to_owned(),
        ));
    }
    let is_true = |k: &str| text.get(k).is_some_and(|v| v.trim() == "true");
    let req = DeployRequest {
        duplicate_filtering: is_true("enable-duplicate-filtering"),
        changed_only: is_true("deploy-changed-only"),
        name: text.get("deployment-name").cloned(),
        source: text.get("deployment-source").cloned(),
        tenant_id: text.get("tenant-id").cloned(),
        resources: parts.into_values().collect(),
    };
    let names: Vec<String> = req.resources.keys().cloned().collect();
    let name = req.name.clone();
    let prepared = prepare(req).await?;
    let body = engine.mutate(|s| s.deploy(prepared))?;
    if !engine.inner.options.quiet {
        tracing::info!(
            deployment = name.as_deref().unwrap_or(""),
            resources = %names.join(", "),
            id = body["id"].as_str().unwrap_or(""),
            "Deployment created."
        );
    }
    Ok(Json(body))
}

/// Parses the request's models on a blocking thread, holding a [`PARSING`] permit for as long
/// as the parse runs. When the client gives up (this future is dropped), the parse is told to
/// stop ([`Abandon`]).
async fn prepare(req: DeployRequest) -> ApiResult<Prepared> {
    let abandoned = Arc::new(AtomicBool::new(false));
    let _abandon_on_drop = Abandon(Arc::clone(&abandoned));
    let permit = PARSING
        .acquire()
        .await
        .map_err(|e| ApiError::engine(format!("Cannot parse the deployment: {e}")))?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        req.prepare(&abandoned)
    })
    .await
    .map_err(|e| ApiError::engine(format!("Parsing the deployment failed: {e}")))?
}

/// Sets its flag when dropped: the request handler that waits for a parse is gone.
struct Abandon(Arc<AtomicBool>);

impl Drop for Abandon {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `DELETE /deployment/{id}?cascade=…`: `skipCustomListeners` and `skipIoMappings` are
/// accepted and have nothing to skip here.
async fn delete(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<StatusCode> {
    let cascade = flag(&params, "cascade", false);
    engine.mutate(|s| s.delete_deployment(&id, cascade))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list(State(engine): State<Engine>, params: Params) -> Json<Value> {
    engine.with(|s| {
        let out: Vec<Value> = s
            .deployments
            .iter()
            .filter(|d| {
                params
                    .get("name")
                    .is_none_or(|n| d.name.as_ref() == Some(n))
            })
            .filter(|d| {
                params
                    .get("source")
                    .is_none_or(|n| d.source.as_ref() == Some(n))
            })
            .map(|d| {
                let mut v = s.deployment_json(d, None);
                if let Some(map) = v.as_object_mut() {
                    map.retain(|k, _| !k.starts_with("deployed"));
                }
                v
            })
            .collect();
        Json(Value::Array(out))
    })
}

async fn one(State(engine): State<Engine>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    engine.with(|s| {
        let d = s.deployments.iter().find(|d| d.id == id).ok_or_else(|| {
            ApiError::not_found(format!("Deployment with id '{id}' does not exist"))
        })?;
        let mut v = s.deployment_json(d, None);
        if let Some(map) = v.as_object_mut() {
            map.retain(|k, _| !k.starts_with("deployed"));
        }
        Ok(Json(v))
    })
}

async fn definitions(State(engine): State<Engine>, params: Params) -> Json<Value> {
    let latest = flag(&params, "latestVersion", false);
    engine.with(|s| {
        let out: Vec<Value> = s
            .definitions
            .iter()
            .filter(|d| params.get("key").is_none_or(|k| *k == d.key))
            .filter(|d| {
                params
                    .get("deploymentId")
                    .is_none_or(|k| *k == d.deployment_id)
            })
            .filter(|d| {
                !latest
                    || s.latest_definition(&d.key, d.tenant_id.as_deref())
                        .is_some_and(|l| l.id == d.id)
            })
            .map(|d| definition_json(d))
            .collect();
        Json(Value::Array(out))
    })
}

async fn definition_by_key(
    State(engine): State<Engine>,
    Path(key): Path<String>,
) -> ApiResult<Json<Value>> {
    engine.with(|s| {
        s.latest_definition(&key, None)
            .map(|d| Json(definition_json(&d)))
            .ok_or_else(|| {
                ApiError::rest(
                    axum::http::StatusCode::NOT_FOUND,
                    format!("No matching process definition with key: {key} and no tenant-id"),
                )
            })
    })
}
