//! `/external-task` resource: fetchAndLock with long polling, per-task calls, queries.
//!
//! Long polling: a fetch that finds nothing and carries `asyncResponseTimeout` waits on the
//! engine's change signal (bumped by every state change: new tasks, unlocks, failures) and on
//! the next moment a lock or retry timeout runs out, re-checking at least every
//! `long_poll_recheck`; it answers as soon as tasks can be locked, `[]` at the timeout, 500
//! when the queue of waiting polls is full (200) or the engine shuts down.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;
use tokio::time::{Instant, sleep_until};

use super::{Body, Params, count, flag};
use crate::engine::Engine;
use crate::engine::errors::{ApiError, ApiResult};
use crate::engine::state::{EngineStats, ExternalTask, Store};
use crate::engine::tasks::{
    BpmnErrorIn, CompleteIn, ExtendLockIn, FailureIn, FetchAndLockIn, LockIn, task_json,
};

/// The engine's default long-poll queue size.
pub(crate) const MAX_PENDING_POLLS: usize = 200;

pub(super) fn routes() -> Router<Engine> {
    Router::new()
        .route("/external-task/fetchAndLock", post(fetch_and_lock))
        .route("/external-task", get(list))
        .route("/external-task/count", get(count_tasks))
        .route("/external-task/{id}", get(one))
        .route("/external-task/{id}/errorDetails", get(error_details))
        .route("/external-task/{id}/complete", post(complete))
        .route("/external-task/{id}/failure", post(failure))
        .route("/external-task/{id}/bpmnError", post(bpmn_error))
        .route("/external-task/{id}/extendLock", post(extend_lock))
        .route("/external-task/{id}/lock", post(lock))
        .route("/external-task/{id}/unlock", post(unlock))
        .route("/external-task/{id}/retries", put(retries))
}

/// Releases a long-poll queue slot when the poll ends, however it ends.
struct PollSlot<'a>(&'a Engine);

impl<'a> PollSlot<'a> {
    fn acquire(engine: &'a Engine) -> ApiResult<Self> {
        let pending = &engine.inner.pending_polls;
        if pending.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= MAX_PENDING_POLLS {
            pending.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InvalidRequestException",
                "At the moment the server has to handle too many requests at the same time. Please try again later.",
            ));
        }
        Ok(Self(engine))
    }
}

impl Drop for PollSlot<'_> {
    fn drop(&mut self) {
        self.0
            .inner
            .pending_polls
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

async fn fetch_and_lock(
    State(engine): State<Engine>,
    Body(req): Body<FetchAndLockIn>,
) -> ApiResult<Json<Vec<Value>>> {
    req.validate(Instant::now())?;
    let mut changes = engine.inner.changed.subscribe();
    let first = engine.with(|s| {
        s.stats.fetch_calls += 1;
        s.fetch_and_lock(&req, Instant::now())
    });
    let timeout = req
        .async_response_timeout
        .and_then(|t| u64::try_from(t).ok())
        .unwrap_or(0);
    if !first.is_empty() || timeout == 0 {
        return Ok(Json(first));
    }
    let _slot = PollSlot::acquire(&engine)?;
    let cancelled = engine.poll_cancellation();
    let deadline = Instant::now() + Duration::from_millis(timeout);
    let recheck = engine
        .inner
        .options
        .long_poll_recheck
        .max(Duration::from_millis(1));
    loop {
        changes.borrow_and_update();
        if engine.is_down() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ProcessEngineException",
                "procos engine is down (set_down)",
            ));
        }
        let now = Instant::now();
        let tasks = engine.with(|s| s.fetch_and_lock(&req, now));
        if !tasks.is_empty() {
            return Ok(Json(tasks));
        }
        if now >= deadline {
            return Ok(Json(Vec::new()));
        }
        // Like Camunda, a pending poll wakes when a task is created or unlocked, and otherwise
        // only at its periodic re-check: a lock or retry timeout running out does not wake it.
        let wake = deadline.min(now + recheck);
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return Err(shutdown_error());
                }
            }
            () = sleep_until(wake) => {}
            () = cancelled.cancelled() => return Err(shutdown_error()),
        }
    }
}

fn shutdown_error() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InvalidRequestException",
        "Request rejected due to shutdown of application server.",
    )
}

/// Runs a per-task call, counting it as accepted or refused.
fn counted(
    engine: &Engine,
    call: impl FnOnce(&mut Store) -> ApiResult<()>,
    stat: fn(&mut EngineStats, bool),
) -> ApiResult<StatusCode> {
    let result = engine.mutate(|s| {
        let r = call(s);
        stat(&mut s.stats, r.is_ok());
        r
    });
    result.map(|()| StatusCode::NO_CONTENT)
}

async fn complete(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    Body(body): Body<CompleteIn>,
) -> ApiResult<StatusCode> {
    counted(
        &engine,
        |s| s.complete(&id, body),
        |st, ok| {
            if ok {
                st.complete_ok += 1
            } else {
                st.complete_rejected += 1
            }
        },
    )
}

async fn failure(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    Body(body): Body<FailureIn>,
) -> ApiResult<StatusCode> {
    counted(
        &engine,
        |s| s.failure(&id, body, Instant::now()),
        |st, ok| {
            if ok {
                st.failure_calls += 1
            } else {
                st.failure_rejected += 1
            }
        },
    )
}

async fn bpmn_error(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    Body(body): Body<BpmnErrorIn>,
) -> ApiResult<StatusCode> {
    counted(
        &engine,
        |s| s.bpmn_error(&id, body),
        |st, ok| {
            if ok {
                st.bpmn_error_calls += 1
            } else {
                st.bpmn_error_rejected += 1
            }
        },
    )
}

async fn extend_lock(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    Body(body): Body<ExtendLockIn>,
) -> ApiResult<StatusCode> {
    counted(
        &engine,
        |s| s.extend_lock(&id, body, Instant::now()),
        |st, ok| {
            if ok {
                st.extend_lock_ok += 1
            } else {
                st.extend_lock_rejected += 1
            }
        },
    )
}

async fn lock(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    Body(body): Body<LockIn>,
) -> ApiResult<StatusCode> {
    counted(
        &engine,
        |s| s.lock(&id, body, Instant::now()),
        |st, ok| st.lock_ok += u64::from(ok),
    )
}

async fn unlock(State(engine): State<Engine>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    counted(
        &engine,
        |s| s.unlock(&id),
        |st, ok| st.unlock_ok += u64::from(ok),
    )
}

/// Body of `PUT /external-task/{id}/retries` (`RetriesDto`: an `Integer`, so `null` is refused).
#[derive(Debug, Default, Deserialize)]
struct RetriesIn {
    retries: Option<i32>,
}

async fn retries(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    Body(body): Body<RetriesIn>,
) -> ApiResult<StatusCode> {
    let n = body
        .retries
        .ok_or_else(|| ApiError::invalid("The number of retries cannot be null."))?;
    engine.mutate(|s| s.set_retries(&id, n))?;
    Ok(StatusCode::NO_CONTENT)
}

fn query(s: &Store, params: &HashMap<String, String>, now: Instant) -> Vec<Value> {
    let mut found: Vec<&ExternalTask> = s
        .tasks
        .values()
        .filter(|t| params.get("topicName").is_none_or(|k| *k == t.topic))
        .filter(|t| {
            params
                .get("processInstanceId")
                .is_none_or(|k| *k == t.process_instance_id)
        })
        .filter(|t| {
            params
                .get("workerId")
                .is_none_or(|k| t.worker_id.as_ref() == Some(k))
        })
        .filter(|t| params.get("activityId").is_none_or(|k| *k == t.activity_id))
        .filter(|t| {
            params
                .get("processDefinitionKey")
                .is_none_or(|k| *k == t.definition.key)
        })
        .filter(|t| !flag(params, "locked", false) || t.locked(now))
        .filter(|t| !flag(params, "notLocked", false) || !t.locked(now))
        .filter(|t| !flag(params, "withRetriesLeft", false) || t.retries.is_none_or(|r| r > 0))
        .filter(|t| !flag(params, "noRetriesLeft", false) || t.retries == Some(0))
        .collect();
    found.sort_by_key(|t| t.seq);
    found.into_iter().map(task_json).collect()
}

async fn list(State(engine): State<Engine>, params: Params) -> Json<Value> {
    engine.with(|s| Json(Value::Array(query(s, &params, Instant::now()))))
}

async fn count_tasks(State(engine): State<Engine>, params: Params) -> Json<Value> {
    engine.with(|s| count(query(s, &params, Instant::now()).len()))
}

/// `GET /external-task/{id}` of an unknown task: a bare `RestException` 404 (code `null`).
fn no_task(id: &str) -> ApiError {
    ApiError::rest(
        StatusCode::NOT_FOUND,
        format!("External task with id {id} does not exist"),
    )
}

async fn one(State(engine): State<Engine>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    engine.with(|s| {
        s.tasks
            .get(&id)
            .map(|t| Json(task_json(t)))
            .ok_or_else(|| no_task(&id))
    })
}

async fn error_details(State(engine): State<Engine>, Path(id): Path<String>) -> ApiResult<String> {
    engine.with(|s| {
        s.tasks
            .get(&id)
            .map(|t| t.error_details.clone().unwrap_or_default())
            .ok_or_else(|| no_task(&id).wrapping_engine_exception())
    })
}
