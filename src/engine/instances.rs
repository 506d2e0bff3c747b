//! Process instances: starting, committing execution results, variables, history, incidents.
//!
//! Every change to an instance goes through [`Store::commit`]: the executed copy of the
//! instance replaces the old one, its new external tasks are added, and an instance without
//! tokens is ended (history `COMPLETED`). Deleting an instance cancels its tasks, so a later
//! `extendLock` / `complete` on them answers 404.

use std::sync::Arc;

use chrono::Utc;
use serde_json::{Value, json};

use super::errors::{ApiError, ApiResult};
use super::exec::{self, Outcome};
use super::state::{Definition, HistoricInstance, HistoryState, Incident, Instance, Store};
use super::variables::{TypedValue, VarMap, format_date, render};

impl Store {
    /// Starts the latest version of `key`; answers the instance JSON.
    pub(crate) fn start_instance(
        &mut self,
        key: &str,
        tenant: Option<&str>,
        business_key: Option<String>,
        variables: Vec<(String, TypedValue)>,
        with_variables: bool,
    ) -> ApiResult<Value> {
        let definition = self.latest_definition(key, tenant).ok_or_else(|| {
            let tenant =
                tenant.map_or_else(|| "no tenant-id".to_owned(), |t| format!("tenant-id '{t}'"));
            ApiError::rest(
                axum::http::StatusCode::NOT_FOUND,
                format!("No matching process definition with key: {key} and {tenant}"),
            )
        })?;
        let start = definition.model.start_event.clone();
        self.begin_instance(definition, &start, business_key, variables, with_variables)
    }

    /// A timer start event fired: a new instance of `definition` starts there.
    pub(crate) fn start_instance_at(
        &mut self,
        definition: Arc<Definition>,
        start: &str,
    ) -> ApiResult<Value> {
        self.begin_instance(definition, start, None, Vec::new(), false)
    }

    fn begin_instance(
        &mut self,
        definition: Arc<Definition>,
        start: &str,
        business_key: Option<String>,
        variables: Vec<(String, TypedValue)>,
        with_variables: bool,
    ) -> ApiResult<Value> {
        let (instance, outcome) = exec::start_at(
            Arc::clone(&definition),
            start,
            business_key,
            variables.into_iter().collect(),
        )?;
        let seq = self.next_seq();
        self.history.insert(
            instance.id.clone(),
            HistoricInstance {
                id: instance.id.clone(),
                definition: Arc::clone(&definition),
                business_key: instance.business_key.clone(),
                start_time: Utc::now(),
                end_time: None,
                state: HistoryState::Active,
                delete_reason: None,
                variables: instance.variables.clone(),
                seq,
            },
        );
        self.stats.instances_started += 1;
        let mut body = instance_json(
            &instance.id,
            &definition,
            instance.business_key.as_deref(),
            false,
        );
        if with_variables && let Some(map) = body.as_object_mut() {
            map.insert(
                "variables".to_owned(),
                render(&instance.variables, None, false),
            );
        }
        let id = instance.id.clone();
        self.commit(instance, outcome, None);
        if !self.instances.contains_key(&id)
            && let Some(map) = body.as_object_mut()
        {
            map.insert("ended".to_owned(), Value::Bool(true));
        }
        Ok(body)
    }

    /// Applies a successful execution: replaces the instance, swaps tasks, ends it if done.
    pub(crate) fn commit(&mut self, instance: Instance, outcome: Outcome, done_task: Option<&str>) {
        if let Some(task_id) = done_task {
            self.tasks.remove(task_id);
            self.incidents.retain(|_, i| i.configuration != task_id);
        }
        let id = instance.id.clone();
        if outcome.terminated {
            self.tasks.remove_instance(&id);
        }
        for mut task in outcome.new_tasks {
            task.seq = self.next_seq();
            self.tasks.insert(task);
            self.wake = true;
        }
        self.add_jobs(outcome.new_jobs);
        self.add_user_tasks(outcome.new_user_tasks);
        self.sweep_waits(&instance);
        if let Some(h) = self.history.get_mut(&id) {
            h.variables = instance.variables.clone();
        }
        let ended = Outcome::ended(&instance);
        self.instances.insert(id.clone(), instance);
        if ended {
            self.end_instance(&id, HistoryState::Completed, None);
        }
    }

    /// `DELETE /process-instance/{id}`: cancels the instance and its tasks.
    pub(crate) fn delete_instance(&mut self, id: &str) -> ApiResult<()> {
        if !self.instances.contains_key(id) {
            return Err(ApiError::not_found(format!(
                "Process instance with id {id} does not exist"
            )));
        }
        self.end_instance(
            id,
            HistoryState::ExternallyTerminated,
            Some("deleted via REST".to_owned()),
        );
        Ok(())
    }

    /// A running instance or 404.
    pub(crate) fn instance(&self, id: &str) -> ApiResult<&Instance> {
        self.instances.get(id).ok_or_else(|| {
            ApiError::not_found(format!("Process instance with id {id} does not exist"))
        })
    }

    /// Raises a `failedExternalTask` incident for a task whose retries reached 0.
    pub(crate) fn raise_incident(&mut self, task_id: &str) {
        let seq = self.next_seq();
        let Some(task) = self.tasks.get(task_id) else {
            return;
        };
        let incident = Incident {
            id: super::state::new_id(),
            incident_type: "failedExternalTask",
            time: Utc::now(),
            message: task.error_message.clone(),
            process_instance_id: Some(task.process_instance_id.clone()),
            definition_id: task.definition.id.clone(),
            activity_id: task.activity_id.clone(),
            execution_id: Some(task.execution_id.clone()),
            configuration: task.id.clone(),
            tenant_id: task.definition.tenant_id.clone(),
            seq,
        };
        self.incidents.insert(incident.id.clone(), incident);
        self.stats.incidents_created += 1;
    }
}

/// Sets variables on the process instance (`execution.setVariables` on a top-level execution).
pub(crate) fn set_variables(instance: &mut Instance, vars: Vec<(String, TypedValue)>) {
    instance.variables.extend(vars);
}

/// A process instance as `/process-instance` and `start` report it.
pub(crate) fn instance_json(
    id: &str,
    def: &Definition,
    business_key: Option<&str>,
    ended: bool,
) -> Value {
    json!({
        "id": id,
        "definitionId": def.id,
        "definitionKey": def.key,
        "businessKey": business_key,
        "caseInstanceId": null,
        "ended": ended,
        "suspended": false,
        "tenantId": def.tenant_id,
        "links": [],
    })
}

/// A historic process instance.
pub(crate) fn history_json(h: &HistoricInstance) -> Value {
    let duration = h.end_time.map(|e| (e - h.start_time).num_milliseconds());
    json!({
        "id": h.id,
        "rootProcessInstanceId": h.id,
        "superProcessInstanceId": null,
        "businessKey": h.business_key,
        "processDefinitionId": h.definition.id,
        "processDefinitionKey": h.definition.key,
        "processDefinitionName": h.definition.model.name,
        "processDefinitionVersion": h.definition.version,
        "startTime": format_date(h.start_time),
        "endTime": h.end_time.map(format_date),
        "removalTime": null,
        "durationInMillis": duration,
        "startUserId": null,
        "startActivityId": h.definition.model.start_event,
        "deleteReason": h.delete_reason,
        "tenantId": h.definition.tenant_id,
        "state": h.state.name(),
    })
}

/// Historic variable instances of one instance (its latest values).
pub(crate) fn history_variables_json(h: &HistoricInstance, deserialize: bool) -> Vec<Value> {
    h.variables
        .iter()
        .map(|(name, v)| {
            let wire = v.to_json(deserialize);
            json!({
                "id": format!("{}:{name}", h.id),
                "name": name,
                "type": wire["type"],
                "value": wire["value"],
                "valueInfo": wire["valueInfo"],
                "processDefinitionKey": h.definition.key,
                "processDefinitionId": h.definition.id,
                "processInstanceId": h.id,
                "executionId": h.id,
                "activityInstanceId": h.id,
                "caseDefinitionKey": null,
                "caseDefinitionId": null,
                "caseInstanceId": null,
                "caseExecutionId": null,
                "taskId": null,
                "errorMessage": null,
                "tenantId": h.definition.tenant_id,
                "state": "CREATED",
                "createTime": format_date(h.start_time),
                "removalTime": null,
                "rootProcessInstanceId": h.id,
            })
        })
        .collect()
}

/// An incident as `/incident` reports it.
pub(crate) fn incident_json(i: &Incident) -> Value {
    json!({
        "id": i.id,
        "processDefinitionId": i.definition_id,
        "processInstanceId": i.process_instance_id,
        "executionId": i.execution_id,
        "incidentTimestamp": format_date(i.time),
        "incidentType": i.incident_type,
        "activityId": i.activity_id,
        "failedActivityId": i.activity_id,
        "causeIncidentId": i.id,
        "rootCauseIncidentId": i.id,
        "configuration": i.configuration,
        "tenantId": i.tenant_id,
        "incidentMessage": i.message,
        "jobDefinitionId": null,
        "annotation": null,
    })
}

/// Variables of a running instance as `/process-instance/{id}/variables` answers them.
pub(crate) fn variables_json(vars: &VarMap, deserialize: bool) -> Value {
    render(vars, None, deserialize)
}
