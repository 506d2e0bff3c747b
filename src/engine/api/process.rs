//! Starting process instances and reading / deleting running ones, with their variables.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;

use super::{Body, Params, count, flag, null_as_default};
use crate::engine::Engine;
use crate::engine::errors::{ApiError, ApiResult};
use crate::engine::instances::{instance_json, variables_json};
use crate::engine::variables::{VariablesIn, check_all};

pub(super) fn routes() -> Router<Engine> {
    Router::new()
        .route("/process-definition/key/{key}/start", post(start))
        .route(
            "/process-definition/key/{key}/tenant-id/{tenant}/start",
            post(start_tenant),
        )
        .route("/process-instance", get(list))
        .route("/process-instance/count", get(count_instances))
        .route("/process-instance/{id}", get(one).delete(delete))
        .route("/process-instance/{id}/variables", get(variables))
        .route("/process-instance/{id}/variables/{name}", get(variable))
        .route(
            "/process-instance/{id}/variables/{name}/data",
            get(variable_data),
        )
}

/// Body of `POST /process-definition/key/{key}/start` (`StartProcessInstanceDto`): unknown
/// fields are ignored and `null` means a field's default, as engine-rest's Jackson reads it.
/// `caseInstanceId`, `skipCustomListeners` and `skipIoMappings` are accepted and ignored like
/// any unknown field: meaningless without case management and listeners.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartIn {
    business_key: Option<String>,
    variables: Option<VariablesIn>,
    #[serde(default, deserialize_with = "null_as_default")]
    with_variables_in_return: bool,
    start_instructions: Option<Value>,
}

async fn start(
    State(engine): State<Engine>,
    Path(key): Path<String>,
    Body(body): Body<StartIn>,
) -> ApiResult<Json<Value>> {
    start_with(engine, key, None, body)
}

async fn start_tenant(
    State(engine): State<Engine>,
    Path((key, tenant)): Path<(String, String)>,
    Body(body): Body<StartIn>,
) -> ApiResult<Json<Value>> {
    start_with(engine, key, Some(tenant), body)
}

fn start_with(
    engine: Engine,
    key: String,
    tenant: Option<String>,
    body: StartIn,
) -> ApiResult<Json<Value>> {
    if body.start_instructions.is_some() {
        return Err(ApiError::invalid(
            "startInstructions are not supported by the procos engine",
        ));
    }
    let vars = check_all(body.variables)?;
    let started = engine.mutate(|s| {
        s.start_instance(
            &key,
            tenant.as_deref(),
            body.business_key,
            vars,
            body.with_variables_in_return,
        )
    })?;
    Ok(Json(started))
}

fn matches(params: &Params, key: &str, def_id: &str, business_key: Option<&str>, id: &str) -> bool {
    params.get("processDefinitionKey").is_none_or(|k| k == key)
        && params
            .get("processDefinitionId")
            .is_none_or(|k| k == def_id)
        && params
            .get("businessKey")
            .is_none_or(|b| Some(b.as_str()) == business_key)
        && params
            .get("processInstanceIds")
            .is_none_or(|ids| ids.split(',').any(|i| i == id))
}

fn list_instances(engine: &Engine, params: &Params) -> Vec<Value> {
    engine.with(|s| {
        let mut found: Vec<(u64, Value)> = s
            .instances
            .values()
            .filter(|i| {
                matches(
                    params,
                    &i.definition.key,
                    &i.definition.id,
                    i.business_key.as_deref(),
                    &i.id,
                )
            })
            .map(|i| {
                let seq = s.history.get(&i.id).map_or(0, |h| h.seq);
                (
                    seq,
                    instance_json(&i.id, &i.definition, i.business_key.as_deref(), false),
                )
            })
            .collect();
        found.sort_by_key(|(seq, _)| *seq);
        found.into_iter().map(|(_, v)| v).collect()
    })
}

async fn list(State(engine): State<Engine>, params: Params) -> Json<Value> {
    Json(Value::Array(list_instances(&engine, &params)))
}

async fn count_instances(State(engine): State<Engine>, params: Params) -> Json<Value> {
    count(list_instances(&engine, &params).len())
}

async fn one(State(engine): State<Engine>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    engine.with(|s| {
        let i = s.instance(&id)?;
        Ok(Json(instance_json(
            &i.id,
            &i.definition,
            i.business_key.as_deref(),
            false,
        )))
    })
}

async fn delete(State(engine): State<Engine>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    engine.mutate(|s| s.delete_instance(&id))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn variables(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Json<Value>> {
    let deserialize = flag(&params, "deserializeValues", true);
    engine.with(|s| {
        Ok(Json(variables_json(
            &s.instance(&id)?.variables,
            deserialize,
        )))
    })
}

async fn variable(
    State(engine): State<Engine>,
    Path((id, name)): Path<(String, String)>,
    params: Params,
) -> ApiResult<Json<Value>> {
    let deserialize = flag(&params, "deserializeValues", true);
    engine.with(|s| {
        let v = s
            .instance(&id)?
            .variables
            .get(&name)
            .ok_or_else(|| missing_variable(&id, &name))?;
        Ok(Json(v.to_json(deserialize)))
    })
}

fn missing_variable(id: &str, name: &str) -> ApiError {
    ApiError::not_found(format!(
        "process instance variable with name {name} does not exist (process instance {id})"
    ))
}

/// `GET …/variables/{name}/data`: the bytes of a `File` (with its mimetype) or `Bytes` variable.
async fn variable_data(
    State(engine): State<Engine>,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    // Decoded after the store is unlocked: a Bytes value can be large.
    let v = engine.with(|s| {
        s.instance(&id)?
            .variables
            .get(&name)
            .cloned()
            .ok_or_else(|| missing_variable(&id, &name))
    })?;
    super::execution::binary_response(&v, &id)
}
