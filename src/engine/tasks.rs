//! External tasks: fetch-and-lock selection and the per-task calls (complete, failure,
//! bpmnError, extendLock, lock, unlock), with Camunda's ownership rules.
//!
//! - complete / failure / bpmnError check only that `workerId` is the task's worker, not that
//!   the lock is still valid; once another worker re-locked the task the old one gets 400.
//! - A failure stores `retries` and sets the lock expiration to now + `retryTimeout` (the task is
//!   fetchable again after it); `retries: 0` raises a `failedExternalTask` incident instead.
//! - A task that no longer exists (completed, cancelled, instance deleted) answers 404.
//! - Request structs read as Camunda's DTOs do: unknown fields ignored, `null` as the default
//!   of a Java-primitive field (`maxTasks`, `retries`, the durations, the flags).
//! - Input checks answer what the engine answers (`EnsureUtil`'s default exception is a 500
//!   `ProcessEngineException`, e.g. negative `retries`); a duration whose end cannot be a date
//!   (~8.2e15 ms and more) is refused with 400 naming the field before anything changes.
//! - `variables` of complete / bpmnError are set from the task's activity: a local variable of
//!   that name (an input parameter) is overwritten, anything else lands on the process; a caught
//!   error also sets the boundary's `errorCodeVariable` / `errorMessageVariable`
//!   (`exec::mapping`).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::api::null_as_default;
use super::errors::{ApiError, ApiResult};
use super::exec;
use super::state::{ExternalTask, Store};
use super::variables::{TypedValue, VarMap, VariablesIn, check_all, format_date, render};

/// Camunda's `ERROR_MSG_` column holds 666 characters.
const MAX_ERROR_MESSAGE: usize = 666;

/// Body of `POST /external-task/fetchAndLock` (Camunda's `FetchExternalTasksExtendedDto`).
///
/// Read as engine-rest's Jackson reads it: unknown fields are ignored, and `null` for a field
/// means its default (`maxTasks` 0, `usePriority` false, no topics, no sorting), as for Java
/// primitives and unset lists.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FetchAndLockIn {
    pub worker_id: Option<String>,
    /// Omitted or `null`: 0, which locks nothing and answers `[]` (a Java `int`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub max_tasks: i32,
    #[serde(default, deserialize_with = "null_as_default")]
    pub use_priority: bool,
    pub async_response_timeout: Option<i64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub topics: Vec<TopicIn>,
    /// Accepted and, as in Camunda, not read: only the topic-level flag decides whether
    /// extension properties are sent (`FetchExternalTasksDto.configureTopics`).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        rename = "includeExtensionProperties"
    )]
    pub _include_extension_properties: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub sorting: Vec<SortingIn>,
}

/// One topic of a fetchAndLock request (Camunda's `FetchExternalTaskTopicDto`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TopicIn {
    pub topic_name: Option<String>,
    /// Omitted or `null`: 0, refused as not greater than 0 (a Java `long`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub lock_duration: i64,
    pub variables: Option<Vec<String>>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub local_variables: bool,
    pub business_key: Option<String>,
    pub process_definition_id: Option<String>,
    pub process_definition_id_in: Option<Vec<String>>,
    pub process_definition_key: Option<String>,
    pub process_definition_key_in: Option<Vec<String>>,
    pub process_definition_version_tag: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub without_tenant_id: bool,
    pub tenant_id_in: Option<Vec<String>>,
    pub process_variables: Option<BTreeMap<String, Value>>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub deserialize_values: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub include_extension_properties: bool,
}

/// A sorting instruction of fetchAndLock (Camunda's `SortingDto`; its `parameters` are ignored).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SortingIn {
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
}

/// Body of `complete`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CompleteIn {
    pub worker_id: Option<String>,
    pub variables: Option<VariablesIn>,
    pub local_variables: Option<VariablesIn>,
}

/// Body of `failure` (Camunda's `ExternalTaskFailureDto`: `retries` and `retryTimeout` are Java
/// primitives, so omitted or `null` means 0).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FailureIn {
    pub worker_id: Option<String>,
    pub error_message: Option<String>,
    pub error_details: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub retries: i32,
    #[serde(default, deserialize_with = "null_as_default")]
    pub retry_timeout: i64,
    pub variables: Option<VariablesIn>,
    pub local_variables: Option<VariablesIn>,
}

/// Body of `bpmnError`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BpmnErrorIn {
    pub worker_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub variables: Option<VariablesIn>,
}

/// Body of `extendLock` (`newDuration` is a Java `long`: omitted or `null` means 0).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExtendLockIn {
    pub worker_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub new_duration: i64,
}

/// Body of `lock` (`lockDuration` is a Java `long`: omitted or `null` means 0).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LockIn {
    pub worker_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub lock_duration: i64,
}

/// The largest `asyncResponseTimeout` the engine accepts (30 minutes).
pub(crate) const MAX_ASYNC_RESPONSE_TIMEOUT: i64 = 1_800_000;

/// The moment a lock or retry timeout ends: on the clock that decides (tokio's, which tests
/// pause and advance) and on the wall clock the engine reports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    pub at: Instant,
    pub wall: DateTime<Utc>,
}

impl Deadline {
    /// `ms` milliseconds after `now`, or `None` when that is past what the clocks can hold
    /// (chrono ends at year 262143, about 8.2e15 ms from now): such a value is refused with 400
    /// before anything changes, so no task is left half-locked.
    pub(crate) fn after(now: Instant, ms: u64) -> Option<Deadline> {
        let at = now.checked_add(std::time::Duration::from_millis(ms))?;
        let wall =
            Utc::now().checked_add_signed(TimeDelta::try_milliseconds(i64::try_from(ms).ok()?)?)?;
        Some(Deadline { at, wall })
    }
}

/// The deadline `ms` milliseconds from now, or 400 naming `field` when it cannot be represented.
fn deadline_or_refuse(now: Instant, ms: u64, field: &str) -> ApiResult<Deadline> {
    Deadline::after(now, ms).ok_or_else(|| {
        ApiError::invalid(format!(
            "{field} {ms} is too large: the time it ends cannot be represented"
        ))
    })
}

fn gone(id: &str) -> ApiError {
    ApiError::rest(
        StatusCode::NOT_FOUND,
        format!("External task with id {id} does not exist"),
    )
    .wrapping_engine_exception()
}

/// 400 `RestException` wrapping the engine's `BadUserRequestException` (code 0).
fn bad(message: String) -> ApiError {
    ApiError::rest(StatusCode::BAD_REQUEST, message).wrapping_engine_exception()
}

/// 500 `ProcessEngineException`: what the engine's own input checks (`EnsureUtil` with its
/// default exception class) raise, e.g. a negative `retries`.
fn engine_refusal(message: String) -> ApiError {
    ApiError::engine(message)
}

fn required<'a>(value: &'a Option<String>, what: &str) -> ApiResult<&'a str> {
    value
        .as_deref()
        .ok_or_else(|| bad(format!("{what} is null")))
}

impl FetchAndLockIn {
    /// Checks the request before anything is locked, in the order Camunda does: the REST
    /// layer's timeout and sorting checks (400), then the engine's (`maxTasks` below 0 or a
    /// `lockDuration` not above 0: 500 `ProcessEngineException`, as `FetchExternalTasksCmd`).
    /// A `lockDuration` too large to be a date answers 400 naming the topic.
    pub(crate) fn validate(&self, now: Instant) -> ApiResult<()> {
        if self.worker_id.as_deref().is_none_or(str::is_empty) {
            return Err(ApiError::invalid("workerId is null or empty"));
        }
        if let Some(t) = self.async_response_timeout
            && t > MAX_ASYNC_RESPONSE_TIMEOUT
        {
            return Err(ApiError::invalid(format!(
                "The asynchronous response timeout cannot be set to a value greater than {MAX_ASYNC_RESPONSE_TIMEOUT} milliseconds"
            )));
        }
        for s in &self.sorting {
            let sort_by = s.sort_by.as_deref();
            if sort_by != Some("createTime") {
                return Err(ApiError::invalid(format!(
                    "Cannot set query sortBy parameter to value {}",
                    sort_by.unwrap_or("null")
                )));
            }
            if let Some(order) = s.sort_order.as_deref()
                && !matches!(order, "asc" | "desc")
            {
                return Err(ApiError::invalid(format!(
                    "Cannot set query sortOrder parameter to value {order}"
                )));
            }
        }
        // FetchAndLockBuilderImpl.subscribe(): an ordering without a direction is refused.
        if self.sorting.iter().any(|s| s.sort_order.is_none()) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "NotValidException",
                "Invalid query: call asc() or desc() after using orderByXX(): direction is null",
            ));
        }
        if self.max_tasks < 0 {
            return Err(engine_refusal(
                "maxResults is not greater than or equal to 0".to_owned(),
            ));
        }
        for t in &self.topics {
            if t.topic_name.as_deref().is_none_or(str::is_empty) {
                return Err(ApiError::invalid("topicName is null or empty"));
            }
            let duration = u64::try_from(t.lock_duration)
                .ok()
                .filter(|d| *d > 0)
                .ok_or_else(|| engine_refusal("lockTime is not greater than 0".to_owned()))?;
            let field = format!(
                "lockDuration of topic '{}'",
                t.topic_name.as_deref().unwrap_or_default()
            );
            deadline_or_refuse(now, duration, &field)?;
        }
        Ok(())
    }
}

impl TopicIn {
    fn matches(&self, task: &ExternalTask, vars: Option<&VarMap>) -> bool {
        let def = &task.definition;
        let tenant = def.tenant_id.as_deref();
        self.topic_name.as_deref() == Some(task.topic.as_str())
            && self
                .business_key
                .as_ref()
                .is_none_or(|b| task.business_key.as_ref() == Some(b))
            && self
                .process_definition_id
                .as_ref()
                .is_none_or(|d| *d == def.id)
            && self
                .process_definition_id_in
                .as_ref()
                .is_none_or(|ds| ds.contains(&def.id))
            && self
                .process_definition_key
                .as_ref()
                .is_none_or(|k| *k == def.key)
            && self
                .process_definition_key_in
                .as_ref()
                .is_none_or(|ks| ks.contains(&def.key))
            && self
                .process_definition_version_tag
                .as_ref()
                .is_none_or(|v| def.model.version_tag.as_ref() == Some(v))
            && (!self.without_tenant_id || tenant.is_none())
            && self
                .tenant_id_in
                .as_ref()
                .is_none_or(|ts| tenant.is_some_and(|t| ts.iter().any(|x| x == t)))
            && self.process_variables.as_ref().is_none_or(|wanted| {
                wanted.iter().all(|(name, value)| {
                    vars.and_then(|v| v.get(name))
                        .is_some_and(|v| v.value == *value)
                })
            })
    }
}

impl Store {
    /// Locks and renders up to `maxTasks` fetchable tasks of the requested topics.
    pub(crate) fn fetch_and_lock(&mut self, req: &FetchAndLockIn, now: Instant) -> Vec<Value> {
        let worker = req.worker_id.clone().unwrap_or_default();
        let max = usize::try_from(req.max_tasks).unwrap_or(0);
        let desc = req
            .sorting
            .first()
            .is_some_and(|s| s.sort_order.as_deref() == Some("desc"));
        // The table yields tasks in the requested order, so the first `max` that match are the
        // answer: a fetch reads past the locked tasks at the head, not the whole backlog.
        let picked: Vec<(String, usize)> = self
            .tasks
            .in_fetch_order(req.use_priority, desc)
            .filter(|t| t.fetchable(now))
            .filter_map(|t| {
                let vars = self
                    .instances
                    .get(&t.process_instance_id)
                    .map(|i| &i.variables);
                req.topics
                    .iter()
                    .position(|topic| topic.matches(t, vars))
                    .map(|i| (t.id.clone(), i))
            })
            .take(max)
            .collect();
        let mut out = Vec::new();
        for (id, topic_index) in picked {
            let topic = &req.topics[topic_index];
            // validate() refused durations that are not a representable deadline; should the
            // clock have moved past the edge since, the task is left unlocked and not handed out.
            let Some(until) = u64::try_from(topic.lock_duration)
                .ok()
                .and_then(|ms| Deadline::after(now, ms))
            else {
                continue;
            };
            if let Some(task) = self.tasks.get_mut(&id) {
                task.lock(&worker, until);
            }
            if let Some(task) = self.tasks.get(&id) {
                out.push(self.locked_json(task, topic));
            }
        }
        self.stats.fetched_tasks += out.len() as u64;
        out
    }

    fn locked_json(&self, task: &ExternalTask, topic: &TopicIn) -> Value {
        let instance = self.instances.get(&task.process_instance_id);
        let token_locals = instance
            .and_then(|i| i.tokens.get(&task.execution_id))
            .map(|t| &t.locals);
        let process_vars = instance.map(|i| &i.variables);
        // `localVariables: true` shows only the task's own scope; otherwise the scope and every
        // scope above it, the nearest winning.
        let scopes = if topic.local_variables {
            vec![token_locals]
        } else {
            vec![process_vars, token_locals]
        };
        let visible: VarMap = scopes
            .into_iter()
            .flatten()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut body = task_json(task);
        if let Some(map) = body.as_object_mut() {
            map.insert("errorDetails".to_owned(), json!(task.error_details));
            map.insert(
                "variables".to_owned(),
                render(
                    &visible,
                    topic.variables.as_deref(),
                    topic.deserialize_values,
                ),
            );
            let props = if topic.include_extension_properties {
                json!(task.extension_properties)
            } else {
                json!({})
            };
            map.insert("extensionProperties".to_owned(), props);
        }
        body
    }

    /// The task if it exists and `worker` owns it (404 / 400 otherwise).
    fn owned_task(
        &self,
        id: &str,
        worker: &str,
        refused: impl Fn(&str) -> String,
    ) -> ApiResult<&ExternalTask> {
        let task = self.tasks.get(id).ok_or_else(|| gone(id))?;
        if task.worker_id.as_deref() != Some(worker) {
            let owner = task.worker_id.as_deref().unwrap_or("null");
            return Err(bad(format!(
                "{} It is locked by worker '{owner}'.",
                refused(worker)
            )));
        }
        Ok(task)
    }

    /// `POST /external-task/{id}/complete`.
    pub(crate) fn complete(&mut self, id: &str, body: CompleteIn) -> ApiResult<()> {
        let worker = required(&body.worker_id, "workerId")?;
        // The body is checked before the task is looked up, as the engine does.
        let vars = check_all(body.variables)?;
        let locals = check_all(body.local_variables)?;
        let task = self.owned_task(id, worker, |w| {
            format!("External Task {id} cannot be completed by worker '{w}'.")
        })?;
        let (pid, exec_id) = (task.process_instance_id.clone(), task.execution_id.clone());
        let mut instance = self.instances.get(&pid).cloned().ok_or_else(|| gone(id))?;
        exec::mapping::set_from_activity(&mut instance, &exec_id, vars);
        set_local_variables(&mut instance, &exec_id, locals);
        let outcome = exec::leave(&mut instance, &exec_id)?;
        self.commit(instance, outcome, Some(id));
        Ok(())
    }

    /// `POST /external-task/{id}/failure`.
    pub(crate) fn failure(&mut self, id: &str, body: FailureIn, now: Instant) -> ApiResult<()> {
        let worker = required(&body.worker_id, "workerId")?;
        let retries = body.retries;
        // HandleExternalTaskFailureCmd.validateInput: engine exceptions, 500 over REST.
        if retries < 0 {
            return Err(engine_refusal(
                "retries is not greater than or equal to 0".to_owned(),
            ));
        }
        let timeout = u64::try_from(body.retry_timeout).map_err(|_| {
            engine_refusal("retryDuration is not greater than or equal to 0".to_owned())
        })?;
        let until = deadline_or_refuse(now, timeout, "retryTimeout")?;
        // The body is checked before the task is looked up, as the engine does.
        let vars = check_all(body.variables)?;
        let locals = check_all(body.local_variables)?;
        let task = self.owned_task(id, worker, |w| {
            format!("Failure of External Task {id} cannot be reported by worker '{w}'.")
        })?;
        let (pid, exec_id) = (task.process_instance_id.clone(), task.execution_id.clone());
        let had_retries = task.retries.is_none_or(|r| r > 0);
        if let Some(instance) = self.instances.get_mut(&pid) {
            exec::mapping::set_from_activity(instance, &exec_id, vars);
            set_local_variables(instance, &exec_id, locals);
            if let Some(h) = self.history.get_mut(&pid) {
                h.variables = instance.variables.clone();
            }
        }
        if let Some(task) = self.tasks.get_mut(id) {
            // Camunda stores at most 666 characters of the message, and keeps the old details
            // when none are sent.
            task.error_message = body
                .error_message
                .map(|m| m.chars().take(MAX_ERROR_MESSAGE).collect());
            if body.error_details.is_some() {
                task.error_details = body.error_details;
            }
            task.retries = Some(retries);
            task.lock_expiration = Some(until.at);
            task.lock_expiration_wall = Some(until.wall);
        }
        // An incident when retries run out, not again while they stay out; resolved when a
        // later failure gives retries back (setRetriesAndManageIncidents).
        if retries == 0 && had_retries {
            self.raise_incident(id);
        } else if retries > 0 && !had_retries {
            self.incidents.retain(|_, i| i.configuration != id);
        }
        Ok(())
    }

    /// `POST /external-task/{id}/bpmnError`: a catching boundary event, else the token ends.
    pub(crate) fn bpmn_error(&mut self, id: &str, body: BpmnErrorIn) -> ApiResult<()> {
        let worker = required(&body.worker_id, "workerId")?;
        let code = body
            .error_code
            .as_deref()
            .ok_or_else(|| bad("errorCode is null".to_owned()))?;
        let task = self.owned_task(id, worker, |w| {
            format!("Bpmn error of External Task {id} cannot be reported by worker '{w}'.")
        })?;
        let (pid, exec_id, activity) = (
            task.process_instance_id.clone(),
            task.execution_id.clone(),
            task.activity_id.clone(),
        );
        let model = &task.definition.model;
        let boundaries = model
            .boundaries
            .get(&task.activity_id)
            .cloned()
            .unwrap_or_default();
        let code_of = |b: &String| match model.elements.get(b).map(|e| &e.kind) {
            Some(super::bpmn::Kind::ErrorBoundary { error_code, .. }) => Some(error_code.clone()),
            _ => None,
        };
        let catcher = boundaries
            .iter()
            .find(|b| code_of(b) == Some(Some(code.to_owned())))
            .or_else(|| boundaries.iter().find(|b| code_of(b) == Some(None)))
            .cloned();
        let vars = check_all(body.variables.clone())?;
        let mut instance = self.instances.get(&pid).cloned().ok_or_else(|| gone(id))?;
        exec::mapping::set_from_activity(&mut instance, &exec_id, vars);
        let outcome = match catcher {
            Some(boundary) => {
                exec::mapping::error_variables(
                    &mut instance,
                    &exec_id,
                    &boundary,
                    code,
                    body.error_message.as_deref(),
                );
                exec::catch(&mut instance, &exec_id, &boundary)?
            }
            None => {
                tracing::debug!(
                    task_id = id,
                    error_code = code,
                    error_message = body.error_message.as_deref().unwrap_or(""),
                    "No boundary event catches the BPMN error; the execution ends."
                );
                // The activity still ends, so its output mapping runs (`execution.end(true)`).
                exec::mapping::leave(&mut instance, &exec_id, &activity)?;
                exec::end_token(&mut instance, &exec_id)
            }
        };
        self.commit(instance, outcome, Some(id));
        Ok(())
    }

    /// `POST /external-task/{id}/extendLock`.
    pub(crate) fn extend_lock(
        &mut self,
        id: &str,
        body: ExtendLockIn,
        now: Instant,
    ) -> ApiResult<()> {
        // ExtendLockOnExternalTaskCmd checks the duration before the worker.
        let duration = u64::try_from(body.new_duration)
            .ok()
            .filter(|d| *d > 0)
            .ok_or_else(|| bad("lockTime is not greater than 0".to_owned()))?;
        let until = deadline_or_refuse(now, duration, "newDuration")?;
        let worker = required(&body.worker_id, "workerId")?;
        let task = self.tasks.get_mut(id).ok_or_else(|| gone(id))?;
        if task.worker_id.as_deref() != Some(worker) {
            return Err(bad(format!(
                "The lock of the External Task {id} cannot be extended by worker '{worker}'"
            )));
        }
        if !task.locked(now) {
            return Err(bad("Cannot extend a lock that expired".to_owned()));
        }
        task.lock(worker, until);
        Ok(())
    }

    /// `POST /external-task/{id}/lock`.
    pub(crate) fn lock(&mut self, id: &str, body: LockIn, now: Instant) -> ApiResult<()> {
        let worker = required(&body.worker_id, "workerId")?;
        let duration = u64::try_from(body.lock_duration)
            .ok()
            .filter(|d| *d > 0)
            .ok_or_else(|| bad("lockDuration is not greater than 0".to_owned()))?;
        let until = deadline_or_refuse(now, duration, "lockDuration")?;
        let task = self.tasks.get_mut(id).ok_or_else(|| gone(id))?;
        if task.locked(now) && task.worker_id.as_deref() != Some(worker) {
            return Err(bad(format!(
                "External Task {id} is already locked by worker '{}'",
                task.worker_id.as_deref().unwrap_or("null")
            )));
        }
        task.lock(worker, until);
        Ok(())
    }

    /// `POST /external-task/{id}/unlock`.
    pub(crate) fn unlock(&mut self, id: &str) -> ApiResult<()> {
        let task = self.tasks.get_mut(id).ok_or_else(|| gone(id))?;
        task.worker_id = None;
        task.lock_expiration = None;
        task.lock_expiration_wall = None;
        self.wake = true;
        Ok(())
    }

    /// `PUT /external-task/{id}/retries`: sets retries; retries > 0 resolves the incident.
    /// A negative value is the engine's `BadUserRequestException` (400), an unknown task 404.
    pub(crate) fn set_retries(&mut self, id: &str, retries: i32) -> ApiResult<()> {
        if retries < 0 {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "BadUserRequestException",
                "The number of retries cannot be negative: retries is not greater than or equal to 0",
            ));
        }
        let task = self.tasks.get_mut(id).ok_or_else(|| gone(id))?;
        task.retries = Some(retries);
        if retries > 0 {
            self.incidents.retain(|_, i| i.configuration != id);
        } else if !self.incidents.values().any(|i| i.configuration == id) {
            self.raise_incident(id);
        }
        Ok(())
    }

    /// Test helper: the task's lock expires now.
    pub(crate) fn expire_lock(&mut self, id: &str, now: Instant) {
        if let Some(task) = self.tasks.get_mut(id)
            && task.locked(now)
        {
            task.lock_expiration = Some(now);
            task.lock_expiration_wall = Some(Utc::now());
        }
    }
}

/// Local variables go on the task's own execution and vanish with it: every external task is
/// a scope in Camunda (`BpmnParse.parseExternalServiceTask` → `activity.setScope(true)`).
fn set_local_variables(
    instance: &mut super::state::Instance,
    exec_id: &str,
    vars: Vec<(String, TypedValue)>,
) {
    if let Some(token) = instance.tokens.get_mut(exec_id) {
        token.locals.extend(vars);
    }
}

/// An external task as `GET /external-task` reports it. Its `executionId` is the task's own
/// scope execution (its local variables); the process variables are the local variables of the
/// execution whose id is the `processInstanceId`, where the official JS client downloads File
/// variables from.
pub(crate) fn task_json(t: &ExternalTask) -> Value {
    json!({
        "id": t.id,
        "topicName": t.topic,
        "workerId": t.worker_id,
        "lockExpirationTime": t.lock_expiration_wall.map(format_date),
        "createTime": format_date(t.create_time),
        "retries": t.retries,
        "errorMessage": t.error_message,
        "processInstanceId": t.process_instance_id,
        "processDefinitionId": t.definition.id,
        "processDefinitionKey": t.definition.key,
        "processDefinitionVersionTag": t.definition.model.version_tag,
        "activityId": t.activity_id,
        "activityInstanceId": t.activity_instance_id,
        "executionId": t.execution_id,
        "tenantId": t.definition.tenant_id,
        "priority": t.priority,
        "businessKey": t.business_key,
        "suspended": false,
    })
}
