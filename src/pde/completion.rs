//! Completion block: the one place that decides what a verdict means for the engine, and tells it.
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
//! Engine calls are retried with backoff on 5xx and I/O errors so that a finished result is not
//! lost to a blip; 404 (task gone) and 400 (another worker holds it) are logged and dropped,
//! never retried, so a task is never completed twice.

use std::time::Duration;

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::lease::Lease;
use super::topic::TopicRuntime;
use super::verdict::Verdict;
use crate::camunda::variables::{encode_json_map, format_date, parse_date};
use crate::camunda::{
    Backoff, CamundaClient, CamundaError, LockedTask, TypedValue, VarType, Variable, VariableMap,
    with_retries,
};
use crate::config::file::{BackoffConfig, OutputConfig};
use crate::endpoints::{EndpointError, ErrorKind};

/// Attempts per engine call before a result is given up (the lock then expires and the engine
/// offers the task again).
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
    /// The engine refused or never took the report.
    Unreported,
}

impl Outcome {
    /// Label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::BpmnError => "bpmn_error",
            Outcome::Failed => "failed",
            Outcome::Incident => "incident",
            Outcome::Abandoned => "abandoned",
            Outcome::Unreported => "unreported",
        }
    }
}

/// The engine call a verdict maps to.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `complete`.
    Complete {
        variables: VariableMap,
        local_variables: VariableMap,
    },
    /// `bpmnError`.
    BpmnError { code: String, message: String },
    /// `failure`.
    Failure {
        message: String,
        details: String,
        retries: i32,
        retry_timeout: Duration,
    },
    /// Report nothing.
    Nothing,
}

/// Reports verdicts to the engine.
#[derive(Debug, Clone)]
pub struct Completion {
    camunda: CamundaClient,
    backoff: BackoffConfig,
}

impl Completion {
    /// Reports through this client.
    pub fn new(camunda: CamundaClient) -> Self {
        Self {
            camunda,
            backoff: BackoffConfig {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(5),
                multiplier: 2.0,
            },
        }
    }

    /// The client it reports through.
    pub fn camunda(&self) -> &CamundaClient {
        &self.camunda
    }

    /// Decides and reports (after releasing the lease, so no lock extension lands after it).
    pub async fn finish(
        &self,
        task: &LockedTask,
        topic: &TopicRuntime,
        verdict: Verdict,
        lease: &Lease,
    ) -> Outcome {
        let action = match decide(task.retries, topic, verdict) {
            Action::Complete {
                mut variables,
                mut local_variables,
            } => {
                keep_input_types(&mut variables, &task.variables);
                keep_input_types(&mut local_variables, &task.variables);
                Action::Complete {
                    variables,
                    local_variables,
                }
            }
            other => other,
        };
        lease.release().await;
        self.report(task, topic, action).await
    }

    /// Gives a task up without a result; with `unlock`, hands it back to the engine at once.
    pub async fn abandon(&self, task: &LockedTask, unlock: bool, lease: &Lease) -> Outcome {
        lease.release().await;
        if unlock && let Err(e) = self.camunda.unlock(&task.id).await {
            tracing::warn!(error = %e, "Could not unlock the task; the engine offers it again when its lock expires.");
        }
        Outcome::Abandoned
    }

    async fn report(&self, task: &LockedTask, topic: &TopicRuntime, action: Action) -> Outcome {
        let id = task.id.as_str();
        let (outcome, result) = match action {
            Action::Nothing => return Outcome::Abandoned,
            Action::Complete {
                variables,
                local_variables,
            } => {
                let r = self
                    .retrying(|| {
                        self.camunda
                            .complete(id, variables.clone(), local_variables.clone())
                    })
                    .await;
                (Outcome::Completed, r)
            }
            Action::BpmnError { code, message } => {
                tracing::info!(error_code = %code, message = %message, "Raising BPMN error.");
                let r = self
                    .retrying(|| {
                        self.camunda
                            .bpmn_error(id, &code, &message, VariableMap::new())
                    })
                    .await;
                (Outcome::BpmnError, r)
            }
            Action::Failure {
                message,
                details,
                retries,
                retry_timeout,
            } => {
                if retries == 0 {
                    tracing::error!(error = %message, "Task failed with no retries left; the engine raises an incident.");
                } else {
                    tracing::warn!(error = %message, retries, retry_timeout_ms = retry_timeout.as_millis() as u64, "Task failed; the engine will offer it again.");
                }
                let r = self
                    .retrying(|| {
                        self.camunda
                            .failure(id, &message, &details, retries, retry_timeout)
                    })
                    .await;
                (
                    if retries == 0 {
                        Outcome::Incident
                    } else {
                        Outcome::Failed
                    },
                    r,
                )
            }
        };
        match result {
            Ok(()) => outcome,
            Err(e) if outcome == Outcome::Completed && e.status() == Some(500) => {
                // The engine could not continue the process after the task (e.g. no gateway
                // condition matched). Completing again would fail the same way, and letting the
                // lock expire would re-run the work forever: report a failure so that retries
                // count down to an incident a person can see.
                let retries = retries_after_failure(task.retries, topic);
                let message = truncate(
                    &format!("the engine could not continue the process after this task: {e}"),
                    MAX_ERROR_MESSAGE,
                );
                tracing::error!(error = %e, retries, "Completing failed inside the engine; reporting a failure instead.");
                let details = e.to_string();
                match self
                    .retrying(|| {
                        self.camunda.failure(
                            id,
                            &message,
                            &details,
                            retries,
                            topic.config.retry_timeout,
                        )
                    })
                    .await
                {
                    Ok(()) if retries == 0 => Outcome::Incident,
                    Ok(()) => Outcome::Failed,
                    Err(again) => {
                        tracing::error!(error = %again, "Could not report the failure either; the engine offers the task again when its lock expires.");
                        Outcome::Unreported
                    }
                }
            }
            Err(e) if e.is_not_found() => {
                tracing::warn!(error = %e, "The task was gone when reporting (cancelled or completed elsewhere); nothing reported.");
                Outcome::Unreported
            }
            Err(e) if e.status() == Some(400) => {
                tracing::warn!(error = %e, "The engine refused the report (the task is locked by another worker); nothing reported.");
                Outcome::Unreported
            }
            Err(e) => {
                tracing::error!(error = %e, "Could not report the task's outcome; the engine offers it again when its lock expires.");
                Outcome::Unreported
            }
        }
    }

    async fn retrying<F, Fut>(&self, call: F) -> Result<(), CamundaError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), CamundaError>>,
    {
        let mut backoff = Backoff::new(self.backoff.clone());
        // Never cancelled: once a result exists, reporting it is worth the few seconds it takes.
        let never = CancellationToken::new();
        with_retries(&mut backoff, REPORT_ATTEMPTS, &never, call).await
    }
}

/// THE mapping from a verdict to an engine call (see the module table).
pub fn decide(task_retries: Option<i32>, topic: &TopicRuntime, verdict: Verdict) -> Action {
    let (error, chain) = match verdict {
        Verdict::Cancelled => return Action::Nothing,
        Verdict::Done {
            output,
            usage,
            endpoint,
        } => {
            let (mut variables, mut local_variables) = map_output(&topic.config.output, output);
            if let Some(name) = &topic.config.output.usage_variable {
                // Which endpoint served is worth recording even when it reports no tokens.
                let usage = usage.unwrap_or_default();
                let target = if topic.config.output.local {
                    &mut local_variables
                } else {
                    &mut variables
                };
                target.insert(
                    name.clone(),
                    crate::camunda::Variable::from_json(usage.to_json(&endpoint)).encode(),
                );
            }
            return Action::Complete {
                variables,
                local_variables,
            };
        }
        Verdict::Failed { error, chain } => (error, chain),
    };
    if let Some(code) = mapped_bpmn_error(&topic.config.bpmn_errors, &error) {
        return Action::BpmnError {
            code,
            message: error.message,
        };
    }
    let retries = retries_after_failure(task_retries, topic);
    let (retries, retry_timeout) = match &error.kind {
        ErrorKind::Business { error_code } => {
            return Action::BpmnError {
                code: error_code.clone(),
                message: error.message,
            };
        }
        ErrorKind::Cancelled => return Action::Nothing,
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
    Action::Failure {
        message: truncate(&error.message, MAX_ERROR_MESSAGE),
        details: error_details(&error, &chain),
        retries,
        retry_timeout,
    }
}

/// Retries to report with a failure: the task's (null until its first failure) or else the
/// topic's, minus this one, never below 0.
fn retries_after_failure(task_retries: Option<i32>, topic: &TopicRuntime) -> i32 {
    (task_retries.unwrap_or(topic.config.retries as i32) - 1).max(0)
}

/// The BPMN error code a topic maps this error's class to: the exact class (`http_404`) first,
/// then its family (`http_4xx`).
fn mapped_bpmn_error(
    map: &std::collections::BTreeMap<String, String>,
    error: &EndpointError,
) -> Option<String> {
    let code = error.code.as_deref()?;
    if let Some(bpmn) = map.get(code) {
        return Some(bpmn.clone());
    }
    let (prefix, tail) = code.rsplit_once('_')?;
    let family = format!("{prefix}_{}xx", tail.chars().next()?);
    (tail.len() == 3 && tail.chars().all(|c| c.is_ascii_digit()))
        .then(|| map.get(&family).cloned())
        .flatten()
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

/// Output → (variables, local variables), with explicit types.
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
    let encoded = encode_json_map(&values);
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
        let Action::Failure {
            retries,
            retry_timeout,
            details,
            ..
        } = action
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
                Action::Failure { retries, .. } => assert_eq!(retries, expect),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn retry_after_lengthens_the_retry_timeout() {
        let t = topic("{pool: p, endpoints: [], retry_timeout: 1s}");
        let e = EndpointError::transient("429").retry_after(Some(Duration::from_secs(7)));
        match decide(None, &t, failed(e)) {
            Action::Failure { retry_timeout, .. } => {
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
            Action::Failure { retries, .. } => assert_eq!(retries, 0),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mapped_classes_raise_bpmn_errors_exact_first_then_family() {
        let t = topic(
            "{pool: p, endpoints: [], bpmn_errors: {http_404: NOT_FOUND, http_4xx: CLIENT, input_invalid: BAD}}",
        );
        let code = |e: EndpointError| match decide(None, &t, failed(e)) {
            Action::BpmnError { code, .. } => Some(code),
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
            Action::BpmnError {
                code: "NO_STOCK".into(),
                message: "sold out".into()
            }
        );
        assert_eq!(decide(None, &t, Verdict::Cancelled), Action::Nothing);
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
