//! History and incidents: what tests read after an instance has ended.
//!
//! A historic process instance carries every field of engine-rest 7.23's
//! `HistoricProcessInstanceDto`; those this engine has no use for (case instances, restarts)
//! are `null`, as on a Camunda without them.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use super::{Params, count, flag};
use crate::engine::Engine;
use crate::engine::errors::{ApiError, ApiResult};
use crate::engine::instances::{history_json, history_variables_json, incident_json};
use crate::engine::state::{HistoricInstance, HistoryState, Store};

pub(super) fn routes() -> Router<Engine> {
    Router::new()
        .route("/history/process-instance", get(list))
        .route("/history/process-instance/count", get(count_history))
        .route("/history/process-instance/{id}", get(one))
        .route("/history/variable-instance", get(variables))
        .route("/incident", get(incidents))
        .route("/incident/count", get(count_incidents))
}

/// Fields of `HistoricProcessInstanceDto` that are always `null` here: no CMMN, no restarts.
const ALWAYS_NULL: [&str; 3] = [
    "caseInstanceId",
    "superCaseInstanceId",
    "restartedProcessInstanceId",
];

/// A historic process instance with every field of Camunda's DTO.
fn historic_instance(h: &HistoricInstance) -> Value {
    let mut body = history_json(h);
    if let Some(map) = body.as_object_mut() {
        for field in ALWAYS_NULL {
            map.entry(field).or_insert(Value::Null);
        }
    }
    body
}

fn filtered<'a>(s: &'a Store, params: &Params) -> Vec<&'a HistoricInstance> {
    let mut out: Vec<&HistoricInstance> = s
        .history
        .values()
        .filter(|h| {
            params
                .get("processDefinitionKey")
                .is_none_or(|k| *k == h.definition.key)
        })
        .filter(|h| {
            params
                .get("processDefinitionId")
                .is_none_or(|k| *k == h.definition.id)
        })
        .filter(|h| params.get("processInstanceId").is_none_or(|k| *k == h.id))
        .filter(|h| {
            params
                .get("processInstanceBusinessKey")
                .is_none_or(|k| h.business_key.as_ref() == Some(k))
        })
        .filter(|h| !flag(params, "finished", false) || h.end_time.is_some())
        .filter(|h| !flag(params, "unfinished", false) || h.end_time.is_none())
        .filter(|h| !flag(params, "completed", false) || h.state == HistoryState::Completed)
        .filter(|h| {
            !flag(params, "externallyTerminated", false)
                || h.state == HistoryState::ExternallyTerminated
        })
        .filter(|h| !flag(params, "active", false) || h.state == HistoryState::Active)
        .collect();
    out.sort_by_key(|h| h.seq);
    out
}

async fn list(State(engine): State<Engine>, params: Params) -> Json<Value> {
    engine.with(|s| {
        Json(
            filtered(s, &params)
                .into_iter()
                .map(historic_instance)
                .collect(),
        )
    })
}

async fn count_history(State(engine): State<Engine>, params: Params) -> Json<Value> {
    engine.with(|s| count(filtered(s, &params).len()))
}

async fn one(State(engine): State<Engine>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    engine.with(|s| {
        s.history
            .get(&id)
            .map(|h| Json(historic_instance(h)))
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "Historic process instance with id {id} does not exist"
                ))
            })
    })
}

async fn variables(State(engine): State<Engine>, params: Params) -> Json<Value> {
    let deserialize = flag(&params, "deserializeValues", true);
    engine.with(|s| {
        let mut out = Vec::new();
        let mut hs: Vec<&HistoricInstance> = s
            .history
            .values()
            .filter(|h| params.get("processInstanceId").is_none_or(|k| *k == h.id))
            .filter(|h| {
                params
                    .get("processDefinitionKey")
                    .is_none_or(|k| *k == h.definition.key)
            })
            .collect();
        hs.sort_by_key(|h| h.seq);
        for h in hs {
            out.extend(
                history_variables_json(h, deserialize)
                    .into_iter()
                    .filter(|v| {
                        params
                            .get("variableName")
                            .is_none_or(|n| v["name"] == n.as_str())
                    }),
            );
        }
        Json(Value::Array(out))
    })
}

fn incident_list(s: &Store, params: &Params) -> Vec<Value> {
    let mut found: Vec<_> = s
        .incidents
        .values()
        .filter(|i| {
            params
                .get("processInstanceId")
                .is_none_or(|k| i.process_instance_id.as_deref() == Some(k.as_str()))
        })
        .filter(|i| {
            params
                .get("incidentType")
                .is_none_or(|k| k == i.incident_type)
        })
        .filter(|i| params.get("activityId").is_none_or(|k| *k == i.activity_id))
        .filter(|i| {
            params
                .get("configuration")
                .is_none_or(|k| *k == i.configuration)
        })
        .collect();
    found.sort_by_key(|i| i.seq);
    found.into_iter().map(incident_json).collect()
}

async fn incidents(State(engine): State<Engine>, params: Params) -> Json<Value> {
    engine.with(|s| Json(Value::Array(incident_list(s, &params))))
}

async fn count_incidents(State(engine): State<Engine>, params: Params) -> Json<Value> {
    engine.with(|s| count(incident_list(s, &params).len()))
}
