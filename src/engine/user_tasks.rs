//! User tasks: a token waits at a `userTask` until a person completes it over REST
//! (`POST /task/{id}/complete`, api/task.rs), as in Camunda's tasklist.
//!
//! Assignment (`camunda:assignee`, candidate users and groups) is data only: there is no
//! identity service, so nobody is notified, and anyone may claim or complete a task. The
//! variables a task sees and sets are its process instance's (plus the locals of its scope
//! when the task has boundary events), as for a task without local variables in Camunda.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::bpmn::UserTaskDef;
use super::errors::{ApiError, ApiResult};
use super::exec;
use super::instances::set_variables;
use super::state::{Definition, Store, new_id};
use super::timers::Waiting;
use super::variables::{TypedValue, VarMap, format_date};

/// An open user task.
#[derive(Debug, Clone)]
pub(crate) struct UserTask {
    pub id: String,
    pub definition: Arc<Definition>,
    /// The `userTask` element (`taskDefinitionKey`).
    pub activity_id: String,
    pub activity_instance_id: String,
    /// The token waiting in the task.
    pub execution_id: String,
    pub process_instance_id: String,
    /// The modelled attributes; `assignee` changes with claim / unclaim.
    pub spec: UserTaskDef,
    /// `camunda:dueDate`, a duration counted from `created`.
    pub due: Option<DateTime<Utc>>,
    /// `camunda:followUpDate`, likewise.
    pub follow_up: Option<DateTime<Utc>>,
    pub created: DateTime<Utc>,
    pub last_updated: Option<DateTime<Utc>>,
    /// Creation order, for stable listing.
    pub seq: u64,
}

impl UserTask {
    /// The task a token entering `element_id` creates.
    pub(crate) fn new(
        def: &UserTaskDef,
        definition: Arc<Definition>,
        element_id: &str,
        waiting: Waiting,
    ) -> UserTask {
        let created = Utc::now();
        UserTask {
            id: new_id(),
            definition,
            activity_id: element_id.to_owned(),
            activity_instance_id: waiting.activity_instance,
            execution_id: waiting.token,
            process_instance_id: waiting.instance,
            spec: def.clone(),
            due: def.due_date.as_ref().and_then(|d| d.from(created)),
            follow_up: def.follow_up_date.as_ref().and_then(|d| d.from(created)),
            created,
            last_updated: None,
            seq: 0,
        }
    }
}

/// `GET /task/{id}` of a task that does not exist (404).
pub(crate) fn no_such_task(id: &str) -> ApiError {
    ApiError::not_found(format!("No matching task with id {id}"))
}

/// The engine's `NullValueException` for a task id that does not exist, in the words of
/// `CompleteTaskCmd` / `ClaimTaskCmd`.
fn task_is_null(id: &str) -> String {
    format!("Cannot find task with id {id}: task is null")
}

impl Store {
    /// Adds user tasks made by an execution.
    pub(crate) fn add_user_tasks(&mut self, tasks: Vec<UserTask>) {
        for mut task in tasks {
            task.seq = self.next_seq();
            self.user_tasks.insert(task.id.clone(), task);
        }
    }

    /// An open user task or 404.
    pub(crate) fn user_task(&self, id: &str) -> ApiResult<&UserTask> {
        self.user_tasks.get(id).ok_or_else(|| no_such_task(id))
    }

    /// The variables a task sees: its instance's, shadowed by its scope's locals.
    pub(crate) fn user_task_variables(&self, id: &str) -> Option<VarMap> {
        let task = self.user_tasks.get(id)?;
        let instance = self.instances.get(&task.process_instance_id)?;
        let mut vars = instance.variables.clone();
        if let Some(token) = instance.tokens.get(&task.execution_id) {
            vars.extend(token.locals.clone());
        }
        Some(vars)
    }

    /// `POST /task/{id}/complete`: sets `variables` on the process instance and moves the
    /// token on. Returns the variables the task saw afterwards (for `withVariablesInReturn`).
    /// An unknown task answers 500 as Camunda (`NullValueException` wrapped by the resource).
    pub(crate) fn complete_user_task(
        &mut self,
        id: &str,
        variables: Vec<(String, TypedValue)>,
    ) -> ApiResult<VarMap> {
        let cannot = |message: String| {
            ApiError::rest(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                format!("Cannot complete task {id}: {message}"),
            )
        };
        let task = self
            .user_tasks
            .get(id)
            .ok_or_else(|| cannot(task_is_null(id)))?;
        let (pid, token) = (task.process_instance_id.clone(), task.execution_id.clone());
        let mut instance = self
            .instances
            .get(&pid)
            .cloned()
            .ok_or_else(|| cannot(task_is_null(id)))?;
        set_variables(&mut instance, variables);
        let mut seen = instance.variables.clone();
        if let Some(t) = instance.tokens.get(&token) {
            seen.extend(t.locals.clone());
        }
        let outcome = exec::leave(&mut instance, &token).map_err(|e| cannot(e.message))?;
        self.user_tasks.remove(id);
        self.commit(instance, outcome, None);
        Ok(seen)
    }

    /// `POST /task/{id}/claim`: sets the assignee unless someone else holds the task.
    pub(crate) fn claim_user_task(&mut self, id: &str, user: Option<String>) -> ApiResult<()> {
        let task = self.user_tasks.get_mut(id).ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "NullValueException",
                task_is_null(id),
            )
        })?;
        match (&task.spec.assignee, user) {
            (Some(current), Some(user)) if *current != user => Err(ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "TaskAlreadyClaimedException",
                format!("Task '{id}' is already claimed by someone else."),
            )
            .wrapping_engine_exception()),
            (_, user) => {
                task.spec.assignee = user;
                task.last_updated = Some(Utc::now());
                Ok(())
            }
        }
    }
}

/// A user task as Camunda's `TaskDto`.
pub(crate) fn user_task_json(t: &UserTask) -> Value {
    json!({
        "id": t.id,
        "name": t.spec.name,
        "assignee": t.spec.assignee,
        "owner": null,
        "created": format_date(t.created),
        "lastUpdated": t.last_updated.map(format_date),
        "due": t.due.map(format_date),
        "followUp": t.follow_up.map(format_date),
        "delegationState": null,
        "description": null,
        "executionId": t.execution_id,
        "parentTaskId": null,
        "priority": t.spec.priority,
        "processDefinitionId": t.definition.id,
        "processInstanceId": t.process_instance_id,
        "taskDefinitionKey": t.activity_id,
        "caseExecutionId": null,
        "caseInstanceId": null,
        "caseDefinitionId": null,
        "suspended": false,
        "formKey": t.spec.form_key,
        "camundaFormRef": null,
        "tenantId": t.definition.tenant_id,
        "taskState": "Created",
    })
}
