//! `/job` resource: the timer jobs (Camunda's `JobDto`), so a person or a test can see when a
//! timer fires and fire it now.
//!
//! ```text
//! GET  /job?processInstanceId=…&activityId=…&timers=true   GET /job/count   GET /job/{id}
//! POST /job/{id}/execute   fires now (204); a job that does not exist, or fails, answers 404
//! PUT  /job/{id}/retries {"retries": 3}   gives a failed job its attempts back (204)
//! ```
//! Every job of this engine is a timer: `messages=true` finds none.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;

use super::{Body, Params, count, flag};
use crate::engine::Engine;
use crate::engine::errors::{ApiError, ApiResult};
use crate::engine::timers::{Job, job_json};

pub(super) fn routes() -> Router<Engine> {
    Router::new()
        .route("/job", get(list))
        .route("/job/count", get(count_jobs))
        .route("/job/{id}", get(one))
        .route("/job/{id}/execute", post(execute))
        .route("/job/{id}/retries", put(retries))
}

/// Body of `PUT /job/{id}/retries` (Camunda's `RetriesDto`; `dueDate` is not supported).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RetriesIn {
    retries: Option<i64>,
}

/// Whether a job passes the query parameters of Camunda's `JobQueryDto` it can answer.
fn matches(params: &Params, j: &Job) -> bool {
    let eq = |name: &str, value: Option<&str>| {
        params
            .get(name)
            .is_none_or(|want| Some(want.as_str()) == value)
    };
    eq("jobId", Some(&j.id))
        && eq("processInstanceId", j.process_instance_id())
        && eq("executionId", j.execution_id())
        && eq("processDefinitionId", Some(&j.definition.id))
        && eq("processDefinitionKey", Some(&j.definition.key))
        && eq("activityId", Some(&j.activity_id))
        && !flag(params, "messages", false)
        && (!flag(params, "withRetriesLeft", false) || j.retries > 0)
        && (!flag(params, "executable", false) || j.retries > 0)
        && (!flag(params, "noRetriesLeft", false) || j.retries == 0)
        && (!flag(params, "withException", false) || j.exception_message.is_some())
}

fn find(engine: &Engine, params: &Params) -> Vec<Value> {
    engine.with(|s| {
        let mut found: Vec<&Job> = s.jobs.values().filter(|j| matches(params, j)).collect();
        found.sort_by_key(|j| (j.due.at, j.seq));
        found.into_iter().map(job_json).collect()
    })
}

async fn list(State(engine): State<Engine>, params: Params) -> Json<Value> {
    Json(Value::Array(find(&engine, &params)))
}

async fn count_jobs(State(engine): State<Engine>, params: Params) -> Json<Value> {
    count(find(&engine, &params).len())
}

async fn one(State(engine): State<Engine>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    engine.with(|s| {
        s.jobs
            .get(&id)
            .map(|j| Json(job_json(j)))
            .ok_or_else(|| ApiError::not_found(format!("Job with id {id} does not exist")))
    })
}

/// Camunda's resource answers 404 for every engine exception here, a failing job included.
async fn execute(State(engine): State<Engine>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    engine
        .mutate(|s| s.execute_job(&id))
        .map_err(|e| ApiError::not_found(e.message))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn retries(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    Body(body): Body<RetriesIn>,
) -> ApiResult<StatusCode> {
    engine.mutate(|s| s.set_job_retries(&id, body.retries))?;
    Ok(StatusCode::NO_CONTENT)
}
