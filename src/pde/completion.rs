//! Completion block: the one place that decides what a verdict means for the engine, and the
//! only writer to the engine for a task.
//!
//! | verdict | engine call |
//! |---|---|
//! | result valid | `complete` with the mapped output variables |
//! | error whose class the topic maps in `bpmn_errors` | `bpmnError` with that code |
//! | business error from the endpoint | `bpmnError` with its code |
//! | permanent error (bad input, bad credentials, 4xx) | `failure` with retries 0 → incident |
//! | transient error, invalid result, no usable endpoint | `failure`, retries = (task.retries ?? topic.retries) − 1 |
//! | cancelled (task gone, hard stop) | nothing (or `unlock` when procos gives the task back) |
//!
//! Every report is journaled ([`Journal::pending`], on disk for a task with side effects) before
//! it is sent, then sent with a few quick retries on 5xx and I/O errors. What the engine answers
//! settles the journal entry:
//!
//! | answer | then |
//! |---|---|
//! | 2xx | acknowledged |
//! | 404 with the engine's error body | the task is gone: acknowledged, nothing more |
//! | 400 "… locked by worker …" | another worker holds it: kept as refused, re-sent only if this worker is handed the same attempt again |
//! | 400 about the content (a variable the engine cannot store) | an incident carrying the engine's message |
//! | 500 through every quick attempt on `complete` | the process cannot continue after the task: a failure (retries 0 if the task had side effects) |
//! | anything else (no answer, 503, 401) | pending: the manager's re-sender keeps trying, after a restart too |

use std::time::Duration;

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::gateway::RouteNote;
use super::lease::Lease;
use super::topic::TopicRuntime;
use super::verdict::Verdict;
use crate::backoff::Backoff;
use crate::camunda::variables::{format_date, parse_date};
use crate::camunda::{
    CamundaClient, CamundaError, LockedTask, Report, TypedValue, VarType, Variable, VariableMap,
    with_retries,
};
use crate::config::file::{BackoffConfig, OutputConfig};
use crate::endpoints::{EndpointError, ErrorKind};
use crate::journal::{Journal, Settled};

/// Quick attempts per report before it is left to the background re-sender.
const REPORT_ATTEMPTS: u32 = 6;
/// Camunda stores `errorMessage` in a 666-character column.
const MAX_ERROR_MESSAGE: usize = 600;

/// What became of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Completed with output variables.
    Completed,
    /// A BPMN error was raised.
    BpmnError,
    /// A failure was reported with retries left.
    Failed,
    /// A failure with retries 0 was reported: the engine created an incident.
    Incident,
    /// Nothing was reported (task gone or cancelled); maybe unlocked.
    Abandoned,
    /// The engine refused the report (404: task gone; 400: another worker holds it).
    Unreported,
    /// The engine could not be reached: the report stays in the journal and is re-sent.
    Deferred,
}

impl Outcome {
    /// How many outcomes there are: `outcome as usize` is below it (metrics index by it).
    pub const COUNT: usize = Outcome::Deferred as usize + 1;

    /// Label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::BpmnError => "bpmn_error",
            Outcome::Failed => "failed",
            Outcome::Incident => "incident",
            Outcome::Abandoned => "abandoned",
            Outcome::Unreported => "unreported",
            Outcome::Deferred => "deferred",
        }
    }

    fn of(report: &Report) -> Self {
        match report {
            Report::Complete { .. } => Outcome::Completed,
            Report::BpmnError { .. } => Outcome::BpmnError,
            Report::Failure { retries: 0, .. } => Outcome::Incident,
            Report::Failure { .. } => Outcome::Failed,
        }
    }
}

/// Which task a report is for, as the journal keys it.
#[derive(Debug, Clone, Copy)]
pub struct TaskKey<'a> {
    /// The external task id.
    pub id: &'a str,
    /// `retries` as fetched (tells one attempt from the next).
    pub retries: Option<i32>,
    /// The task's topic.
    pub topic: &'a str,
}

impl<'a> TaskKey<'a> {
    /// The key of a fetched task.
    pub fn of(task: &'a LockedTask) -> Self {
        Self {
            id: &task.id,
            retries: task.retries,
            topic: &task.topic_name,
        }
    }
}

/// Reports verdicts to the engine.
#[derive(Debug, Clone)]
pub struct Completion {
    camunda: CamundaClient,
    journal: Journal,
    backoff: BackoffConfig,
}

impl Completion {
    /// Reports through this client, journaling into `journal` first.
    pub fn new(camunda: CamundaClient, journal: Journal) -> Self {
        Self {
            camunda,
            journal,
            backoff: BackoffConfig {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(5),
                multiplier: 2.0,
            },
        }
    }

    /// The same, pausing `backoff` between quick attempts (tests use a short one).
    pub fn with_backoff(self, backoff: BackoffConfig) -> Self {
        Self { backoff, ..self }
    }

    /// The client it reports through.
    pub fn camunda(&self) -> &CamundaClient {
        &self.camunda
    }

    /// The journal it writes.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Decides and reports (after releasing the lease, so no lock extension lands after it).
    /// `route`: the Gateway's note, written to `routing.route_variable` with a completion.
    pub async fn finish(
        &self,
        task: &LockedTask,
        topic: &TopicRuntime,
        verdict: Verdict,
        route: Option<&RouteNote>,
        lease: &Lease,
    ) -> Outcome {
        let report = match decide_routed(task.retries, topic, verdict, route) {
            Some(Report::Complete {
                mut variables,
                mut local_variables,
            }) => {
                keep_input_types(&mut variables, &task.variables);
                keep_input_types(&mut local_variables, &task.variables);
                Report::Complete {
                    variables,
                    local_variables,
                }
            }
            Some(other) => other,
            None => {
                lease.release().await;
                return Outcome::Abandoned;
            }
        };
        lease.release().await;
        self.deliver(TaskKey::of(task), Some(topic), report).await
    }

    /// Gives a task up without a result; with `unlock`, hands it back to the engine at once.
    pub async fn abandon(&self, task: &LockedTask, unlock: bool, lease: &Lease) -> Outcome {
        lease.release().await;
        if unlock && let Err(e) = self.camunda.unlock(&task.id).await {
            tracing::warn!(error = %e, "Could not unlock the task; the engine offers it again when its lock expires.");
        }
        Outcome::Abandoned
    }

    /// The report for a task whose side-effecting endpoint was under way when procos stopped:
    /// an incident, so that a person decides whether it runs again.
    pub fn interrupted(endpoint: &str) -> Report {
        let message = format!(
            "procos stopped while endpoint `{endpoint}` (which has side effects) was running this task; it is not run a second time. Check whether its effect happened, then retry the task or resolve the incident."
        );
        Report::Failure {
            details: message.clone(),
            message: truncate(&message, MAX_ERROR_MESSAGE),
            retries: 0,
            retry_timeout: Duration::ZERO,
        }
    }

    /// Journals `report`, sends it (with a few quick retries), and settles the journal entry
    /// with the engine's answer. `topic` (if still configured) sets the failure sent when
    /// `complete` keeps failing inside the engine.
    pub async fn deliver(
        &self,
        key: TaskKey<'_>,
        topic: Option<&TopicRuntime>,
        report: Report,
    ) -> Outcome {
        self.deliver_with(key, topic, report, REPORT_ATTEMPTS)
            .await
            .0
    }

    /// One attempt at a journaled report, for the background re-sender: never rewrites the
    /// report (one 500 after an outage proves nothing). Returns the outcome and whether the
    /// engine looked unreachable (no answer, 502/503/504, or an answer not from the engine).
    pub async fn deliver_once(
        &self,
        key: TaskKey<'_>,
        topic: Option<&TopicRuntime>,
        report: Report,
    ) -> (Outcome, bool) {
        self.deliver_with(key, topic, report, 1).await
    }

    async fn deliver_with(
        &self,
        key: TaskKey<'_>,
        topic: Option<&TopicRuntime>,
        report: Report,
        attempts: u32,
    ) -> (Outcome, bool) {
        let mut report = report;
        loop {
            if let Err(e) = self
                .journal
                .pending(key.id, key.retries, key.topic, &report)
                .await
            {
                tracing::error!(error = %e, "Could not journal the outcome; sending it anyway (a crash now could run the task again).");
            }
            log_report(&report);
            let result = self
                .retrying(attempts, || self.camunda.report(key.id, &report))
                .await;
            let e = match result {
                Ok(()) => {
                    self.journal.settle(key.id, Settled::Accepted);
                    return (Outcome::of(&report), false);
                }
                Err(e) => e,
            };
            // `complete` answered 500 through every quick attempt: the engine cannot continue the
            // process after this task (an expression, a listener). Optimistic locking is a race
            // that a later re-send wins; the re-sender never concludes from one answer.
            if attempts > 1
                && matches!(report, Report::Complete { .. })
                && e.status() == Some(500)
                && e.kind() != "OptimisticLockingException"
            {
                report = self.cannot_continue(key, topic, &e);
                continue;
            }
            if e.is_not_found() {
                tracing::warn!(error = %e, "The task was gone when reporting (cancelled or completed elsewhere); nothing reported.");
                self.journal.settle(key.id, Settled::Gone);
                return (Outcome::Unreported, false);
            }
            if e.is_lock_conflict() {
                tracing::warn!(error = %e, "The engine refused the report: another worker holds the task; nothing reported.");
                self.journal.settle(key.id, Settled::Refused);
                return (Outcome::Unreported, false);
            }
            if e.status() == Some(400) && !matches!(report, Report::Failure { .. }) {
                // The engine refuses what the report carries (a variable it cannot store): sending
                // it again changes nothing, so a person is told instead.
                tracing::error!(error = %e, "The engine refused the outcome's content; reporting an incident instead.");
                report = refused_content(&e);
                continue;
            }
            if e.status() == Some(400) {
                tracing::error!(error = %e, "The engine refused the failure report; nothing reported.");
                self.journal.settle(key.id, Settled::Refused);
                return (Outcome::Unreported, false);
            }
            let unreachable =
                e.status().is_none_or(|s| (502..=504).contains(&s)) || e.kind().is_empty();
            tracing::error!(error = %e, durable = self.journal.is_durable(), "Could not report the task's outcome; it stays in the journal and is sent again in the background.");
            return (Outcome::Deferred, unreachable);
        }
    }

    /// The failure that replaces a `complete` the engine cannot continue after. A task that only
    /// read may run again; one whose side effects ran must not, so it ends in an incident for a
    /// person to look at.
    fn cannot_continue(
        &self,
        key: TaskKey<'_>,
        topic: Option<&TopicRuntime>,
        e: &CamundaError,
    ) -> Report {
        let side_effects = self.journal.had_side_effects(key.id, key.retries);
        let (retries, why) = if side_effects {
            (0, "; its endpoint has side effects, so it is not run again")
        } else {
            (retries_after_failure(key.retries, topic), "")
        };
        tracing::error!(error = %e, retries, side_effects, "Completing failed inside the engine; reporting a failure instead.");
        Report::Failure {
            message: truncate(
                &format!("the engine could not continue the process after this task{why}: {e}"),
                MAX_ERROR_MESSAGE,
            ),
            details: e.to_string(),
            retries,
            retry_timeout: topic.map_or(Duration::ZERO, |t| t.config.retry_timeout),
        }
    }

    async fn retrying<F, Fut>(&self, attempts: u32, call: F) -> Result<(), CamundaError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), CamundaError>>,
    {
        let mut backoff = Backoff::new(self.backoff.clone());
        let never = CancellationToken::new();
        with_retries(&mut backoff, attempts, &never, call).await
    }
}

/// The incident for an outcome whose content the engine refused (400).
fn refused_content(e: &CamundaError) -> Report {
    Report::Failure {
        message: truncate(
            &format!("the engine refused this task's outcome: {e}"),
            MAX_ERROR_MESSAGE,
        ),
        details: e.to_string(),
        retries: 0,
        retry_timeout: Duration::ZERO,
    }
}

fn log_report(report: &Report) {
    match report {
        Report::Complete { .. } => {}
        Report::BpmnError { code, message } => {
            tracing::info!(error_code = %code, error_message = %message, "Raising BPMN error.");
        }
        Report::Failure {
            message,
            retries: 0,
            ..
        } => {
            tracing::error!(error = %message, "Task failed with no retries left; the engine raises an incident.");
        }
        Report::Failure {
            message,
            retries,
            retry_timeout,
            ..
        } => {
            tracing::warn!(error = %message, retries, retry_timeout_ms = retry_timeout.as_millis() as u64, "Task failed; the engine will offer it again.");
        }
    }
}

/// Maps a verdict to the report to send; `None` for a cancelled task (report nothing).
pub fn decide(task_retries: Option<i32>, topic: &TopicRuntime, verdict: Verdict) -> Option<Report> {
    decide_routed(task_retries, topic, verdict, None)
}

/// [`decide`], with the Gateway's note on the route: a completion of a topic with
/// `routing.route_variable` carries `{endpoint, strategy, reason, class}` in that variable.
pub fn decide_routed(
    task_retries: Option<i32>,
    topic: &TopicRuntime,
    verdict: Verdict,
    route: Option<&RouteNote>,
) -> Option<Report> {
    let (error, chain) = match verdict {
        Verdict::Cancelled => return None,
        Verdict::Done {
            output,
            usage,
            endpoint,
            judge,
        } => {
            let (mut variables, mut local_variables) = map_output(&topic.config.output, output);
            if let Some(name) = &topic.config.output.usage_variable {
                let usage = usage.unwrap_or_default();
                let target = if topic.config.output.local {
                    &mut local_variables
                } else {
                    &mut variables
                };
                let mut json = usage.to_json(&endpoint);
                if let (Some(judge), Some(fields)) = (&judge, json.as_object_mut()) {
                    fields.insert("judge_score".into(), judge.score.into());
                }
                target.insert(
                    name.clone(),
                    crate::camunda::Variable::from_json(json).encode(),
                );
            }
            if let (Some(name), Some(route)) = (&topic.routing.route_variable, route) {
                let target = if topic.config.output.local {
                    &mut local_variables
                } else {
                    &mut variables
                };
                target.insert(
                    name.clone(),
                    crate::camunda::Variable::from_json(route.to_json()).encode(),
                );
            }
            return Some(Report::Complete {
                variables,
                local_variables,
            });
        }
        Verdict::Failed { error, chain } => (error, chain),
    };
    if let Some(code) = mapped_bpmn_error(&topic.config.bpmn_errors, &error) {
        return Some(Report::BpmnError {
            code,
            message: error.message,
        });
    }
    let retries = retries_after_failure(task_retries, Some(topic));
    let (retries, retry_timeout) = match &error.kind {
        ErrorKind::Business { error_code } => {
            return Some(Report::BpmnError {
                code: error_code.clone(),
                message: error.message,
            });
        }
        ErrorKind::Cancelled => return None,
        ErrorKind::Permanent => (0, Duration::ZERO),
        ErrorKind::Transient { retry_after } => (
            retries,
            topic
                .config
                .retry_timeout
                .max(retry_after.unwrap_or_default()),
        ),
        ErrorKind::Fallback | ErrorKind::InvalidOutput => (retries, topic.config.retry_timeout),
    };
    Some(Report::Failure {
        message: truncate(&error.message, MAX_ERROR_MESSAGE),
        details: error_details(&error, &chain),
        retries,
        retry_timeout,
    })
}

/// Retries left after one more failure: (task.retries ?? topic.retries) − 1, never below 0. A
/// topic that is no longer configured (a report journaled before a config change) counts as
/// having had one retry.
fn retries_after_failure(task_retries: Option<i32>, topic: Option<&TopicRuntime>) -> i32 {
    let configured = topic.map_or(1, |t| t.config.retries as i32);
    (task_retries.unwrap_or(configured) - 1).max(0)
}

/// The BPMN error code a topic maps this error's class to: the exact class (`http_404`) first,
/// then its family (`http_4xx`). An error without a class, or with one outside the vocabulary
/// of `verdict::class`, maps to nothing: no `bpmn_errors` key can name it.
fn mapped_bpmn_error(
    map: &std::collections::BTreeMap<super::verdict::class::ErrorClass, String>,
    error: &EndpointError,
) -> Option<String> {
    let class: super::verdict::class::ErrorClass = error.code.as_deref()?.parse().ok()?;
    map.get(&class)
        .or_else(|| map.get(&class.family()?))
        .cloned()
}

/// `errorDetails`: the decisive error, its details, and every attempt that led there.
fn error_details(error: &EndpointError, chain: &[String]) -> String {
    let mut out = error.message.clone();
    if let Some(code) = &error.code {
        out.push_str(&format!("\nclass: {code}"));
    }
    if let Some(details) = &error.details {
        out.push_str("\n\n");
        out.push_str(details);
    }
    if !chain.is_empty() {
        out.push_str("\n\nattempts:");
        for (i, step) in chain.iter().enumerate() {
            out.push_str(&format!("\n  {}. {step}", i + 1));
        }
    }
    out
}

/// Output → (variables, local variables), with explicit types; a File value of the `files`
/// endpoint (`endpoints::files::value`) as a File variable.
pub fn map_output(rules: &OutputConfig, output: Value) -> (VariableMap, VariableMap) {
    let mut values = Map::new();
    for (var, pointer) in &rules.mapping {
        if let Some(v) = output.pointer(pointer) {
            values.insert(var.clone(), v.clone());
        }
    }
    match (&rules.variable, output) {
        (Some(var), output) => {
            values.insert(var.clone(), output);
        }
        (None, Value::Object(map)) if rules.mapping.is_empty() => values.extend(map),
        (None, other) if rules.mapping.is_empty() => {
            values.insert("result".to_string(), other);
        }
        (None, _) => {}
    }
    // Each value encoded once: a File value of the result (the `files` endpoint's `read`) as a
    // File variable, anything else by its JSON type.
    let encoded: VariableMap = values
        .into_iter()
        .map(|(name, value)| {
            let typed = crate::endpoints::files::value::typed_variable(&value)
                .unwrap_or_else(|| crate::camunda::Variable::from_json(value).encode());
            (name, typed)
        })
        .collect();
    if rules.local {
        (VariableMap::new(), encoded)
    } else {
        (encoded, VariableMap::new())
    }
}

/// An output that overwrites an input variable keeps the input's Camunda type when the value
/// fits it — a `Long` stays `Long`, a `Date` a `Date`, a Java `Object` keeps its type name — so
/// that Java code reading the variable after procos is not surprised. Otherwise the type
/// inferred from the JSON value stands.
pub fn keep_input_types(outputs: &mut VariableMap, inputs: &VariableMap) {
    for (name, out) in outputs.iter_mut() {
        let Some(input) = inputs.get(name) else {
            continue;
        };
        let Some(kind) = input.type_name.as_deref().and_then(VarType::parse) else {
            continue;
        };
        let Ok(value) = Variable::decode(name, out).map(|v| v.value) else {
            continue;
        };
        if Variable::from_json(value.clone()).var_type == kind || !fits(kind, &value, input) {
            continue;
        }
        // A kept Date goes out in the engine's own format, whatever form it came back in.
        let value = match (kind, value.as_str().and_then(parse_date)) {
            (VarType::Date, Some(date)) => Value::String(format_date(date)),
            _ => value,
        };
        *out = Variable {
            var_type: kind,
            value,
            info: input.value_info.clone(),
        }
        .encode();
    }
}

fn fits(kind: VarType, value: &Value, input: &TypedValue) -> bool {
    let int_in = |min: i64, max: i64| value.as_i64().is_some_and(|n| (min..=max).contains(&n));
    match kind {
        VarType::Short => int_in(i16::MIN.into(), i16::MAX.into()),
        VarType::Integer => int_in(i32::MIN.into(), i32::MAX.into()),
        VarType::Long => value.is_i64(),
        VarType::Double | VarType::Number => value.is_number(),
        VarType::String | VarType::Xml => value.is_string(),
        VarType::Date => value.as_str().is_some_and(|s| parse_date(s).is_some()),
        VarType::Boolean => value.is_boolean(),
        VarType::Json => value.is_object() || value.is_array(),
        VarType::Object => {
            (value.is_object() || value.is_array())
                && input
                    .value_info
                    .get("serializationDataFormat")
                    .and_then(Value::as_str)
                    == Some("application/json")
        }
        VarType::Null | VarType::Bytes | VarType::File => false,
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::config::file::TopicConfig;

    fn topic(yaml: &str) -> TopicRuntime {
        let config: TopicConfig = serde_yaml::from_str(yaml).expect("topic yaml");
        TopicRuntime::build("t", &config, &[], &BTreeMap::new(), Duration::from_secs(30))
            .expect("topic builds")
    }

    fn failed(error: EndpointError) -> Verdict {
        Verdict::Failed {
            error,
            chain: vec!["a (attempt 1): boom".into()],
        }
    }

    #[test]
    fn first_transient_failure_uses_the_topic_retries_minus_one() {
        let t = topic("{pool: p, endpoints: [], retries: 3, retry_timeout: 10s}");
        let action = decide(
            None,
            &t,
            failed(EndpointError::transient("503 from upstream")),
        );
        let Some(Report::Failure {
            retries,
            retry_timeout,
            details,
            ..
        }) = action
        else {
            panic!("expected a failure, got {action:?}");
        };
        assert_eq!(retries, 2);
        assert_eq!(retry_timeout, Duration::from_secs(10));
        assert!(details.contains("503 from upstream") && details.contains("a (attempt 1): boom"));
    }

    #[test]
    fn later_failures_count_down_from_the_task_retries_and_stop_at_zero() {
        let t = topic("{pool: p, endpoints: []}");
        for (have, expect) in [(Some(2), 1), (Some(1), 0), (Some(0), 0)] {
            match decide(have, &t, failed(EndpointError::transient("x"))) {
                Some(Report::Failure { retries, .. }) => assert_eq!(retries, expect),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn retry_after_lengthens_the_retry_timeout() {
        let t = topic("{pool: p, endpoints: [], retry_timeout: 1s}");
        let e = EndpointError::transient("429").retry_after(Some(Duration::from_secs(7)));
        match decide(None, &t, failed(e)) {
            Some(Report::Failure { retry_timeout, .. }) => {
                assert_eq!(retry_timeout, Duration::from_secs(7))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn permanent_errors_become_incidents() {
        let t = topic("{pool: p, endpoints: [], retries: 5}");
        match decide(
            Some(4),
            &t,
            failed(EndpointError::permanent("401: check the API key")),
        ) {
            Some(Report::Failure { retries, .. }) => assert_eq!(retries, 0),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mapped_classes_raise_bpmn_errors_exact_first_then_family() {
        let t = topic(
            "{pool: p, endpoints: [], bpmn_errors: {http_404: NOT_FOUND, http_4xx: CLIENT, input_invalid: BAD}}",
        );
        let code = |e: EndpointError| match decide(None, &t, failed(e)) {
            Some(Report::BpmnError { code, .. }) => Some(code),
            _ => None,
        };
        assert_eq!(
            code(EndpointError::permanent("x").code("http_404")).as_deref(),
            Some("NOT_FOUND")
        );
        assert_eq!(
            code(EndpointError::permanent("x").code("http_409")).as_deref(),
            Some("CLIENT")
        );
        assert_eq!(
            code(EndpointError::permanent("x").code("input_invalid")).as_deref(),
            Some("BAD")
        );
        assert_eq!(code(EndpointError::transient("x").code("http_503")), None);
    }

    #[test]
    fn business_errors_raise_their_own_code_and_cancelled_reports_nothing() {
        let t = topic("{pool: p, endpoints: []}");
        assert_eq!(
            decide(
                None,
                &t,
                failed(EndpointError::business("NO_STOCK", "sold out"))
            ),
            Some(Report::BpmnError {
                code: "NO_STOCK".into(),
                message: "sold out".into()
            })
        );
        assert_eq!(decide(None, &t, Verdict::Cancelled), None);
    }

    #[test]
    fn output_is_mapped_to_explicitly_typed_variables() {
        let rules: OutputConfig =
            serde_yaml::from_str("{variable: response, mapping: {code: /status}}").expect("yaml");
        let (vars, local) = map_output(&rules, json!({"status": 200, "body": {"ok": true}}));
        assert!(local.is_empty());
        assert_eq!(vars["code"].type_name.as_deref(), Some("Integer"));
        assert_eq!(vars["response"].type_name.as_deref(), Some("Json"));

        let plain = OutputConfig::default();
        let (vars, _) = map_output(&plain, json!({"a": "x", "b": 1.5}));
        assert_eq!(vars["a"].type_name.as_deref(), Some("String"));
        assert_eq!(vars["b"].type_name.as_deref(), Some("Double"));
        let (vars, _) = map_output(&plain, json!("just text"));
        assert_eq!(vars["result"].value, json!("just text"));

        let local_rules: OutputConfig = serde_yaml::from_str("{local: true}").expect("yaml");
        let (vars, local) = map_output(&local_rules, json!({"a": 1}));
        assert!(vars.is_empty() && local.contains_key("a"));
    }

    #[test]
    fn outputs_keep_the_camunda_type_of_the_input_they_overwrite_when_it_fits() {
        let wire = |v: Value| -> TypedValue { serde_json::from_value(v).expect("wire") };
        let inputs: VariableMap = [
            ("id", wire(json!({"value": 7, "type": "Long"}))),
            ("small", wire(json!({"value": 3, "type": "Short"}))),
            ("due", wire(json!({"value": "2025-01-23T14:42:45.000+0200", "type": "Date"}))),
            ("order", wire(json!({"value": "{}", "type": "Object",
                "valueInfo": {"objectTypeName": "com.acme.Order", "serializationDataFormat": "application/json"}}))),
            ("note", wire(json!({"value": "x", "type": "String"}))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let rules = OutputConfig::default();
        let (mut vars, _) = map_output(
            &rules,
            json!({"id": 8, "small": 70000, "due": "2025-02-01T00:00:00Z",
                   "order": {"qty": 2}, "note": 5, "fresh": 1}),
        );
        keep_input_types(&mut vars, &inputs);
        let t = |n: &str| vars[n].type_name.clone().unwrap_or_default();
        assert_eq!(t("id"), "Long", "a Long stays Long");
        assert_eq!(
            t("small"),
            "Integer",
            "70000 does not fit a Short: inferred"
        );
        assert_eq!(t("due"), "Date");
        assert_eq!(
            vars["due"].value,
            json!("2025-02-01T00:00:00.000+0000"),
            "the engine's format"
        );
        assert_eq!(t("order"), "Object");
        assert_eq!(
            vars["order"].value_info["objectTypeName"],
            json!("com.acme.Order")
        );
        assert_eq!(
            vars["order"].value,
            json!("{\"qty\":2}"),
            "serialized as the engine expects"
        );
        assert_eq!(
            t("note"),
            "Integer",
            "a number does not fit a String: inferred"
        );
        assert_eq!(t("fresh"), "Integer");
    }
}

#[cfg(test)]
mod log_tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_json_line_for_a_bpmn_error_has_one_message_key() {
        // Same shape as telemetry::logs (flattened JSON events).
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            log_report(&Report::BpmnError {
                code: "NO_STOCK".into(),
                message: "sold out".into(),
            })
        });
        let line = String::from_utf8(buffer.0.lock().expect("buffer").clone()).expect("utf-8");
        assert_eq!(line.matches("\"message\":").count(), 1, "{line}");
        let json: serde_json::Value = serde_json::from_str(line.trim()).expect("one JSON line");
        assert_eq!(json["message"], "Raising BPMN error.");
        assert_eq!(json["error_message"], "sold out");
        assert_eq!(json["error_code"], "NO_STOCK");
    }
}

#[cfg(test)]
mod engine_answer_tests {
    use std::collections::BTreeMap;

    use serde_json::json;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::camunda::ClientSettings;
    use crate::config::file::TopicConfig;

    async fn completion_against_an_engine_that_cannot_continue() -> (MockServer, Completion) {
        completion_answering(ResponseTemplate::new(500).set_body_json(json!({
            "type": "ProcessEngineException",
            "message": "Unknown property used in expression: ${x}",
            "code": 0
        })))
        .await
    }

    /// An engine whose `complete` answers `answer` and whose `failure` takes anything.
    async fn completion_answering(answer: ResponseTemplate) -> (MockServer, Completion) {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/external-task/t1/complete"))
            .respond_with(answer)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/external-task/t1/failure"))
            .respond_with(ResponseTemplate::new(204))
            .mount(&server)
            .await;
        let camunda = CamundaClient::new(ClientSettings {
            url: server.uri(),
            auth: None,
            worker_id: "w".into(),
            request_timeout: Duration::from_secs(5),
        })
        .expect("client");
        let journal = Journal::in_memory(Duration::from_secs(60));
        let quick = BackoffConfig {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(5),
            multiplier: 2.0,
        };
        (
            server,
            Completion::new(camunda, journal).with_backoff(quick),
        )
    }

    async fn failure_retries(server: &MockServer) -> i64 {
        let requests = server.received_requests().await.unwrap_or_default();
        let failure = requests
            .iter()
            .find(|r| r.url.path().ends_with("/failure"))
            .expect("a failure was reported");
        failure.body_json::<serde_json::Value>().expect("json")["retries"]
            .as_i64()
            .expect("retries")
    }

    fn topic() -> TopicRuntime {
        let config: TopicConfig =
            serde_yaml::from_str("{pool: p, endpoints: [], retries: 3}").expect("topic");
        TopicRuntime::build("t", &config, &[], &BTreeMap::new(), Duration::from_secs(30))
            .expect("topic builds")
    }

    fn complete() -> Report {
        Report::Complete {
            variables: VariableMap::new(),
            local_variables: VariableMap::new(),
        }
    }

    const KEY: TaskKey<'static> = TaskKey {
        id: "t1",
        retries: None,
        topic: "t",
    };

    #[tokio::test]
    async fn a_process_that_cannot_continue_after_a_side_effect_ends_in_an_incident_not_a_rerun() {
        let (server, completion) = completion_against_an_engine_that_cannot_continue().await;
        completion
            .journal()
            .started("t1", None, "t", "mailer")
            .await
            .expect("journaled");
        let outcome = completion.deliver(KEY, Some(&topic()), complete()).await;
        assert_eq!(outcome, Outcome::Incident);
        assert_eq!(failure_retries(&server).await, 0, "not offered again");
    }

    #[tokio::test]
    async fn a_task_that_only_read_is_offered_again_when_the_process_cannot_continue() {
        let (server, completion) = completion_against_an_engine_that_cannot_continue().await;
        let outcome = completion.deliver(KEY, Some(&topic()), complete()).await;
        assert_eq!(outcome, Outcome::Failed);
        assert_eq!(
            failure_retries(&server).await,
            2,
            "topic retries 3, minus one"
        );
    }

    #[tokio::test]
    async fn a_refused_outcome_content_becomes_an_incident_naming_the_engine_message() {
        let (server, completion) = completion_answering(ResponseTemplate::new(400).set_body_json(
            json!({"type": "InvalidRequestException", "message": "Cannot convert value 'x' of variable amount", "code": 0}),
        ))
        .await;
        let outcome = completion.deliver(KEY, Some(&topic()), complete()).await;
        assert_eq!(outcome, Outcome::Incident);
        assert_eq!(failure_retries(&server).await, 0);
    }

    #[tokio::test]
    async fn a_task_another_worker_holds_is_left_alone() {
        let (server, completion) = completion_answering(ResponseTemplate::new(400).set_body_json(
            json!({"type": "BadUserRequestException", "message": "External Task t1 cannot be completed by worker 'w'. It is locked by worker 'other'.", "code": 0}),
        ))
        .await;
        let outcome = completion.deliver(KEY, Some(&topic()), complete()).await;
        assert_eq!(outcome, Outcome::Unreported);
        let calls = server.received_requests().await.unwrap_or_default();
        assert!(calls.iter().all(|r| !r.url.path().ends_with("/failure")));
        assert!(
            matches!(
                completion.journal().entry("t1").map(|e| e.state),
                Some(crate::journal::State::Refused { .. })
            ),
            "kept for a re-delivery of the same attempt"
        );
    }

    #[tokio::test]
    async fn a_404_from_something_other_than_the_engine_keeps_the_outcome() {
        // An ingress with no engine behind it during a rollout.
        let (_server, completion) = completion_answering(
            ResponseTemplate::new(404).set_body_string("<html>Not Found</html>"),
        )
        .await;
        let outcome = completion.deliver(KEY, Some(&topic()), complete()).await;
        assert_eq!(outcome, Outcome::Deferred);
        assert_eq!(completion.journal().unsettled(), vec!["t1".to_string()]);
    }
}

#[cfg(test)]
mod judge_tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::config::file::TopicConfig;
    use crate::pde::verdict::Judgement;

    #[test]
    fn the_usage_variable_carries_the_judge_score() {
        let config: TopicConfig = serde_yaml::from_str(
            "{pool: p, endpoints: [], output: {variable: answer, usage_variable: pde_usage}}",
        )
        .expect("topic");
        let topic =
            TopicRuntime::build("t", &config, &[], &BTreeMap::new(), Duration::from_secs(30))
                .expect("topic builds");
        let verdict = Verdict::Done {
            output: json!({"text": "ok"}),
            usage: None,
            endpoint: "gpt".into(),
            judge: Some(Box::new(Judgement {
                score: 0.75,
                reason: "fine".into(),
            })),
        };
        let Some(Report::Complete { variables, .. }) = decide(None, &topic, verdict) else {
            panic!("expected complete");
        };
        let usage = Variable::decode("pde_usage", &variables["pde_usage"]).expect("decodes");
        assert_eq!(usage.value["judge_score"], json!(0.75));
        assert_eq!(usage.value["endpoint"], json!("gpt"));
    }

    #[test]
    fn the_route_variable_carries_endpoint_strategy_and_reason() {
        let config: TopicConfig = serde_yaml::from_str(
            "{pool: p, endpoints: [], output: {variable: answer}, routing: {strategy: adaptive, route_variable: pde_route}}",
        )
        .expect("topic");
        let topic =
            TopicRuntime::build("t", &config, &[], &BTreeMap::new(), Duration::from_secs(30))
                .expect("topic builds");
        let done = || Verdict::Done {
            output: json!({"text": "ok"}),
            usage: None,
            endpoint: "ollama".into(),
            judge: None,
        };
        let note = RouteNote {
            endpoint: "ollama".into(),
            strategy: "adaptive",
            reason: "sampled: ollama 0.91 > openai 0.62".into(),
            class: "s".into(),
        };
        let Some(Report::Complete { variables, .. }) =
            decide_routed(None, &topic, done(), Some(&note))
        else {
            panic!("expected complete");
        };
        let route = Variable::decode("pde_route", &variables["pde_route"]).expect("decodes");
        assert_eq!(
            route.value,
            json!({"endpoint": "ollama", "strategy": "adaptive", "class": "s",
                   "reason": "sampled: ollama 0.91 > openai 0.62"})
        );
        assert!(variables.contains_key("answer"), "the output is there too");
        let Some(Report::Complete { variables, .. }) = decide(None, &topic, done()) else {
            panic!("expected complete");
        };
        assert!(
            !variables.contains_key("pde_route"),
            "no route, no variable"
        );
    }
}
