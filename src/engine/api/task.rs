//! `/task` resource: user tasks a person lists, reads and completes (Camunda's tasklist API).
//!
//! ```text
//! GET  /task?processInstanceId=…&taskDefinitionKey=…   GET /task/count   GET /task/{id}
//! GET  /task/{id}/variables[/{name}]
//! POST /task/{id}/complete {"variables": {…}, "withVariablesInReturn": false}   (also submit-form)
//! POST /task/{id}/claim {"userId": "…"}   POST /task/{id}/unclaim
//! ```
//! Bodies are read as Camunda's Jackson does: unknown fields ignored, `null` flags false.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;

use super::{Body, Params, count, flag};
use crate::engine::Engine;
use crate::engine::errors::{ApiError, ApiResult};
use crate::engine::user_tasks::{UserTask, user_task_json};
use crate::engine::variables::{VarMap, VariablesIn, check_all, render};

pub(super) fn routes() -> Router<Engine> {
    Router::new()
        .route("/task", get(list))
        .route("/task/count", get(count_tasks))
        .route("/task/{id}", get(one))
        .route("/task/{id}/variables", get(variables))
        .route("/task/{id}/variables/{name}", get(variable))
        .route("/task/{id}/complete", post(complete))
        .route("/task/{id}/submit-form", post(complete))
        .route("/task/{id}/claim", post(claim))
        .route("/task/{id}/unclaim", post(unclaim))
}

/// Body of `POST /task/{id}/complete` (Camunda's `CompleteTaskDto`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CompleteTaskIn {
    variables: Option<VariablesIn>,
    /// `null` reads as false, as for Camunda's primitive field.
    with_variables_in_return: Option<bool>,
}

/// Body of `POST /task/{id}/claim` (`UserIdDto`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaimIn {
    user_id: Option<String>,
}

/// Whether a task passes the query parameters Camunda's `TaskQueryDto` names alike.
fn matches(params: &Params, t: &UserTask) -> bool {
    let eq = |name: &str, value: Option<&str>| {
        params
            .get(name)
            .is_none_or(|want| Some(want.as_str()) == value)
    };
    let like = |name: &str, value: Option<&str>| {
        params.get(name).is_none_or(|pattern| {
            let needle = pattern.trim_matches('%').to_lowercase();
            value.is_some_and(|v| v.to_lowercase().contains(&needle))
        })
    };
    eq("taskId", Some(&t.id))
        && eq("processInstanceId", Some(&t.process_instance_id))
        && eq("processDefinitionId", Some(&t.definition.id))
        && eq("processDefinitionKey", Some(&t.definition.key))
        && eq("taskDefinitionKey", Some(&t.activity_id))
        && eq("executionId", Some(&t.execution_id))
        && eq("assignee", t.spec.assignee.as_deref())
        && eq("name", t.spec.name.as_deref())
        && like("nameLike", t.spec.name.as_deref())
        && params
            .get("candidateGroup")
            .is_none_or(|g| t.spec.candidate_groups.contains(g))
        && params
            .get("candidateUser")
            .is_none_or(|u| t.spec.candidate_users.contains(u))
        // A candidate query lists only unclaimed tasks unless asked for claimed ones too
        // (Task.xml: `RES.ASSIGNEE_ is null` unless includeAssignedTasks).
        && (!(params.contains_key("candidateGroup") || params.contains_key("candidateUser"))
            || flag(params, "includeAssignedTasks", false)
            || t.spec.assignee.is_none())
        && (!flag(params, "unassigned", false) || t.spec.assignee.is_none())
        && (!flag(params, "assigned", false) || t.spec.assignee.is_some())
}

fn page(params: &Params, name: &str) -> ApiResult<Option<usize>> {
    params
        .get(name)
        .map(|v| {
            v.parse::<usize>().map_err(|_| {
                ApiError::invalid(format!(
                    "Cannot set query parameter '{name}' to value '{v}'"
                ))
            })
        })
        .transpose()
}

fn find(engine: &Engine, params: &Params) -> ApiResult<Vec<Value>> {
    let first = page(params, "firstResult")?.unwrap_or(0);
    let max = page(params, "maxResults")?.unwrap_or(usize::MAX);
    Ok(engine.with(|s| {
        let mut found: Vec<&UserTask> = s
            .user_tasks
            .values()
            .filter(|t| matches(params, t))
            .collect();
        found.sort_by_key(|t| t.seq);
        found
            .into_iter()
            .skip(first)
            .take(max)
            .map(user_task_json)
            .collect()
    }))
}

async fn list(State(engine): State<Engine>, params: Params) -> ApiResult<Json<Value>> {
    Ok(Json(Value::Array(find(&engine, &params)?)))
}

async fn count_tasks(State(engine): State<Engine>, params: Params) -> ApiResult<Json<Value>> {
    let all = axum::extract::Query(
        params
            .0
            .into_iter()
            .filter(|(k, _)| k != "firstResult" && k != "maxResults")
            .collect(),
    );
    Ok(count(find(&engine, &all)?.len()))
}

async fn one(State(engine): State<Engine>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    engine.with(|s| Ok(Json(user_task_json(s.user_task(&id)?))))
}

/// The variables a task sees; for an unknown task the errors of Camunda's variables resource:
/// the engine's `NullValueException` for all of them, wrapped in a `RestException` for one.
fn task_variables(engine: &Engine, id: &str, name: Option<&str>) -> ApiResult<VarMap> {
    engine.with(|s| s.user_task_variables(id)).ok_or_else(|| {
        let null = format!("task {id} doesn't exist: task is null");
        match name {
            None => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "NullValueException",
                null,
            ),
            Some(name) => ApiError::rest(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Cannot get task variable {name}: {null}"),
            ),
        }
    })
}

async fn variables(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    params: Params,
) -> ApiResult<Json<Value>> {
    let deserialize = flag(&params, "deserializeValues", true);
    Ok(Json(render(
        &task_variables(&engine, &id, None)?,
        None,
        deserialize,
    )))
}

async fn variable(
    State(engine): State<Engine>,
    Path((id, name)): Path<(String, String)>,
    params: Params,
) -> ApiResult<Json<Value>> {
    let deserialize = flag(&params, "deserializeValues", true);
    let vars = task_variables(&engine, &id, Some(&name))?;
    let value = vars.get(&name).ok_or_else(|| {
        ApiError::not_found(format!("task variable with name {name} does not exist"))
    })?;
    Ok(Json(value.to_json(deserialize)))
}

async fn complete(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    Body(body): Body<CompleteTaskIn>,
) -> ApiResult<Response> {
    let vars = check_all(body.variables)
        .map_err(|e| ApiError::invalid(format!("Cannot complete task {id}: {e}")))?;
    let seen = engine.mutate(|s| s.complete_user_task(&id, vars))?;
    if body.with_variables_in_return.unwrap_or(false) {
        Ok(Json(render(&seen, None, false)).into_response())
    } else {
        Ok(StatusCode::NO_CONTENT.into_response())
    }
}

async fn claim(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    Body(body): Body<ClaimIn>,
) -> ApiResult<StatusCode> {
    engine.mutate(|s| s.claim_user_task(&id, body.user_id))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn unclaim(State(engine): State<Engine>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    engine.mutate(|s| {
        let task = s.user_tasks.get_mut(&id).ok_or_else(|| {
            // The engine's NotFoundException (a BadUserRequestException: 400 with its code),
            // thrown by AbstractSetTaskPropertyCmd — not JAX-RS's 404 of the same name.
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "NotFoundException",
                format!("Cannot find task with id {id}: task is null"),
            )
            .wrapping_engine_exception()
        })?;
        task.spec.assignee = None;
        task.last_updated = Some(chrono::Utc::now());
        Ok::<_, ApiError>(())
    })?;
    Ok(StatusCode::NO_CONTENT)
}
