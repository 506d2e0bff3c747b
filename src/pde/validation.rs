//! Validation block: calls the route's endpoints and checks each result against the topic's
//! output rules (required keys, JSON Schema, `checks:`), then lets the topic's `validator:`
//! judge it.
//!
//! ```text
//! endpoint ─► result ─► required / schema / checks ─► validator (judge) ─► Done { judge }
//!                 ▲              │ invalid                 │ pass: false
//!                 └── feedback ◄─┴─────────────────────────┘  (up to `attempts`, then next endpoint)
//! ```
//!
//! For each endpoint in route order: call it up to `output.attempts` times while its result fails
//! validation or judgement (each retry carries the validation error or the judge's reason as
//! `feedback`, so endpoints that can correct themselves do); then fall back to the next endpoint.
//! An endpoint error that another endpoint might not have (transient, fallback) moves on to the
//! next endpoint too; a permanent or business error, or cancellation, ends the task at once. A
//! judge that fails or answers something other than `{pass, score, reason}` is a transient error
//! naming the validator, not a verdict on the result.
//!
//! With `cache:` on the topic, a first attempt asks the topic's result cache before calling an
//! endpoint (a hit is validated like any result and skips the call), and a valid result of a
//! first attempt is stored (see [`super::cache`]).

use serde_json::Value;
use tokio::time::Instant;

use super::gateway::Route;
use super::start::TaskContext;
use super::topic::TopicRuntime;
use super::verdict::{Judgement, Verdict, class};
use crate::config::file::CheckConfig;
use crate::config::secret::quote;
use crate::endpoints::{EndpointError, EndpointReply, EndpointRequest, ErrorKind, Usage};
use crate::learner::{CallOutcome, Sample};

/// [`execute_as`] with the task profiled here: the tests' shorthand (the pipeline profiles each
/// task once, before the Gateway, and calls [`execute_as`] with that class).
#[cfg(test)]
pub(crate) async fn execute(ctx: &TaskContext, topic: &TopicRuntime, route: &Route) -> Verdict {
    let class = super::profile::TaskProfile::of(&ctx.request).class;
    execute_as(ctx, topic, route, &class).await
}

/// What one call teaches the learner: the outcome, latency, judge score, cost and tokens.
fn sample(
    outcome: CallOutcome,
    took: std::time::Duration,
    usage: Option<&Usage>,
    judge_score: Option<f64>,
) -> Sample {
    Sample {
        outcome,
        latency_ms: took.as_secs_f64() * 1000.0,
        judge_score,
        cost: usage.and_then(|u| u.cost),
        tokens: usage.map(|u| u.input_tokens + u.output_tokens),
    }
}

/// Calls endpoints along the route until one produces a valid result; every call (not a cache
/// hit, not a cancelled one) is recorded in the topic's learner under the task's `class`.
pub async fn execute_as(
    ctx: &TaskContext,
    topic: &TopicRuntime,
    route: &Route,
    class: &str,
) -> Verdict {
    let mut chain = Vec::new();
    let mut last: Option<EndpointError> = None;
    let attempts = topic.config.output.attempts.max(1);
    for endpoint in &route.endpoints {
        let mut request = ctx.request.clone();
        for attempt in 1..=attempts {
            if request.cancel.is_cancelled() {
                return Verdict::Cancelled;
            }
            // The cache answers for the input as the task gave it; a retry carries feedback.
            let slot = topic
                .cache
                .as_ref()
                .filter(|_| request.feedback.is_none())
                .and_then(|cache| cache.slot(endpoint.as_ref(), &request));
            if let Some(slot) = &slot
                && let Some(output) = slot.lookup()
            {
                if check_output(topic, &output).is_ok() {
                    tracing::debug!(
                        endpoint = endpoint.name(),
                        attempt,
                        "Result served from the cache; result valid."
                    );
                    return Verdict::Done {
                        output,
                        endpoint: endpoint.name().to_string(),
                        usage: None,
                        // Judged (and passed) when it was stored.
                        judge: None,
                    };
                }
                slot.forget();
            }
            let started = Instant::now();
            let busy = topic.busy.start(endpoint.name());
            // Every error is redacted once, here, before anything logs or reports it.
            let result = endpoint
                .call(&request)
                .await
                .map_err(EndpointError::redacted);
            drop(busy);
            // tokio's clock: the same as the system's, except under paused time (benchmarks).
            let took = started.elapsed();
            let learn = |outcome, usage: Option<&Usage>, score| {
                topic.observe(endpoint.name(), class, &sample(outcome, took, usage, score));
            };
            let elapsed_ms = took.as_millis() as u64;
            // Checked once: the verdict and the metric's label both use it.
            let result = result.map(|reply| {
                let checked = check_output(topic, &reply.output);
                (reply, checked)
            });
            let result_label = match &result {
                Ok((_, Ok(()))) => "ok".to_string(),
                Ok((_, Err(_))) => "invalid".to_string(),
                Err(e) => e.code.clone().unwrap_or_else(|| "error".to_string()),
            };
            crate::telemetry::metrics::endpoint_called(endpoint.name(), &result_label, took);
            if let Ok((
                EndpointReply {
                    usage: Some(usage), ..
                },
                _,
            )) = &result
            {
                crate::telemetry::metrics::usage(endpoint.name(), usage);
            }
            match result {
                Ok((reply, checked)) => match checked {
                    Ok(()) => {
                        let judged = judge(ctx, topic, &reply.output).await;
                        match &judged {
                            Judged::Unjudged | Judged::Broken(_) => {
                                learn(CallOutcome::Valid, reply.usage.as_ref(), None)
                            }
                            Judged::Pass(j) => {
                                learn(CallOutcome::Valid, reply.usage.as_ref(), Some(j.score))
                            }
                            Judged::Fail(j) => {
                                learn(CallOutcome::Invalid, reply.usage.as_ref(), Some(j.score))
                            }
                            Judged::Cancelled => {}
                        }
                        let judge = match judged {
                            Judged::Unjudged => None,
                            Judged::Pass(j) => Some(Box::new(j)),
                            Judged::Fail(j) => {
                                let reason = quote(&j.reason);
                                tracing::warn!(
                                    endpoint = endpoint.name(),
                                    attempt,
                                    elapsed_ms,
                                    judge_score = j.score,
                                    reason = %reason,
                                    "Result judged invalid."
                                );
                                let what = format!(
                                    "judged invalid by validator `{}` (score {}): {}",
                                    judge_name(topic),
                                    j.score,
                                    reason
                                );
                                let (step, error) = rejected(endpoint.name(), attempt, &what);
                                chain.push(step);
                                // The judge's own words (capped, redacted): what a model can correct.
                                request.feedback = Some(reason);
                                last = Some(error);
                                continue;
                            }
                            Judged::Broken(error) => {
                                tracing::warn!(endpoint = endpoint.name(), attempt, error = %error, "Validator failed.");
                                chain.push(format!(
                                    "{} (attempt {attempt}): {error}",
                                    endpoint.name()
                                ));
                                last = Some(error);
                                break; // not a verdict on the result: next fallback
                            }
                            Judged::Cancelled => return Verdict::Cancelled,
                        };
                        if let Some(slot) = &slot {
                            slot.store(&reply.output);
                        }
                        let judge_score = judge.as_ref().map(|j| j.score);
                        // DEBUG: `Task finished.` names the endpoint and the score.
                        tracing::debug!(
                            endpoint = endpoint.name(),
                            attempt,
                            elapsed_ms,
                            judge_score,
                            "Endpoint answered; result valid."
                        );
                        return Verdict::Done {
                            output: reply.output,
                            endpoint: endpoint.name().to_string(),
                            usage: reply.usage,
                            judge,
                        };
                    }
                    Err(Invalid { problems, places }) => {
                        learn(CallOutcome::Invalid, reply.usage.as_ref(), None);
                        // Where, not what: schema messages quote the offending values.
                        tracing::warn!(endpoint = endpoint.name(), attempt, elapsed_ms, at = %places.join(", "), "Result failed validation.");
                        let (step, error) =
                            rejected(endpoint.name(), attempt, &format!("invalid: {problems}"));
                        chain.push(step);
                        request.feedback = Some(problems);
                        last = Some(error);
                    }
                },
                Err(error) => {
                    match error.kind {
                        // Not the endpoint's doing: the task is gone, or its input is a business case.
                        ErrorKind::Cancelled | ErrorKind::Business { .. } => {}
                        // Refused by its breaker without a call: the breaker counted the failures
                        // already, and a 0 ms "failure" would make the endpoint look fast.
                        ErrorKind::Fallback
                            if error.code.as_deref() == Some(class::CIRCUIT_OPEN) => {}
                        ErrorKind::InvalidOutput => learn(CallOutcome::Invalid, None, None),
                        ErrorKind::Transient { .. }
                        | ErrorKind::Fallback
                        | ErrorKind::Permanent => learn(CallOutcome::Failed, None, None),
                    }
                    tracing::warn!(endpoint = endpoint.name(), attempt, elapsed_ms, error = %error, "Endpoint failed.");
                    chain.push(format!("{} (attempt {attempt}): {error}", endpoint.name()));
                    match error.kind {
                        ErrorKind::Cancelled => return Verdict::Cancelled,
                        ErrorKind::Permanent | ErrorKind::Business { .. } => {
                            return Verdict::Failed { error, chain };
                        }
                        ErrorKind::InvalidOutput => {
                            request.feedback = Some(error.message.clone());
                            last = Some(EndpointError {
                                code: error
                                    .code
                                    .clone()
                                    .or_else(|| Some(class::OUTPUT_INVALID.to_string())),
                                ..error
                            });
                        }
                        ErrorKind::Transient { .. } | ErrorKind::Fallback => {
                            last = Some(error);
                            break; // this endpoint cannot help now: next fallback
                        }
                    }
                }
            }
        }
    }
    let error = last.unwrap_or_else(|| {
        EndpointError::transient("the route had no endpoint").code(class::NO_ENDPOINT)
    });
    Verdict::Failed { error, chain }
}

/// What the topic's validator made of a result.
enum Judged {
    /// The topic has no validator.
    Unjudged,
    /// The judge passed it.
    Pass(Judgement),
    /// The judge failed it: an invalid result.
    Fail(Judgement),
    /// The judge could not judge (its call failed, or its answer is not a judgement): a
    /// transient error naming the validator.
    Broken(EndpointError),
    /// The task is gone.
    Cancelled,
}

/// A result that was rejected (`what`: why): its line in the attempt history, and the invalid-
/// output error that stands if no later attempt does better.
fn rejected(endpoint: &str, attempt: u32, what: &str) -> (String, EndpointError) {
    (
        format!("{endpoint} (attempt {attempt}): result {what}"),
        EndpointError::transient(format!("result of endpoint `{endpoint}` is {what}"))
            .code(class::OUTPUT_INVALID),
    )
}

fn judge_name(topic: &TopicRuntime) -> &str {
    topic.validator.as_ref().map_or("", |v| v.name())
}

/// Asks the topic's validator about `result`: it is called with the task's variables plus
/// `result` (without the task's extension properties), and must answer `{pass: bool, score: 0..1, reason: string}` (`reason` optional).
async fn judge(ctx: &TaskContext, topic: &TopicRuntime, result: &Value) -> Judged {
    let Some(validator) = &topic.validator else {
        return Judged::Unjudged;
    };
    let name = validator.name();
    let mut request: EndpointRequest = ctx.request.clone();
    request.variables.insert("result".into(), result.clone());
    // The judge answers in its own shape, not the topic's, and with its own rubric: the task's
    // `pde.*` properties (`pde.prompt`, which would override an LLM judge's prompt) are the
    // writer's.
    request.properties.clear();
    request.output_schema = None;
    request.feedback = None;
    let started = Instant::now();
    let answer = validator
        .call(&request)
        .await
        .map_err(EndpointError::redacted);
    let took = started.elapsed();
    let judged = match answer {
        Err(e) if e.kind == ErrorKind::Cancelled => return Judged::Cancelled,
        Err(e) => Judged::Broken(
            EndpointError::transient(format!("validator `{name}` failed: {e}"))
                .code(class::VALIDATOR),
        ),
        Ok(reply) => match parse_judgement(&reply.output) {
            Ok((true, j)) => Judged::Pass(j),
            Ok((false, j)) => Judged::Fail(j),
            Err(why) => Judged::Broken(
                EndpointError::transient(format!(
                    "validator `{name}` answered no judgement ({why}): {}",
                    quote(&reply.output.to_string())
                ))
                .code(class::VALIDATOR),
            ),
        },
    };
    let label = match &judged {
        Judged::Pass(_) => "ok",
        Judged::Fail(_) => "rejected",
        _ => "error",
    };
    crate::telemetry::metrics::endpoint_called(name, label, took);
    judged
}

/// `{pass: bool, score: 0..1, reason?: string}` → (pass, judgement).
fn parse_judgement(answer: &Value) -> Result<(bool, Judgement), &'static str> {
    let pass = answer
        .get("pass")
        .and_then(Value::as_bool)
        .ok_or("`pass` must be true or false")?;
    let score = answer
        .get("score")
        .and_then(Value::as_f64)
        .filter(|s| (0.0..=1.0).contains(s))
        .ok_or("`score` must be a number from 0 to 1")?;
    let reason = match answer.get("reason") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(r)) => r.clone(),
        Some(_) => return Err("`reason` must be a string"),
    };
    Ok((pass, Judgement { score, reason }))
}

/// One `output.checks[]` entry, its regex compiled once when the topic is built.
#[derive(Debug, Clone)]
pub struct Check {
    config: CheckConfig,
    regex: Option<regex::Regex>,
}

impl Check {
    /// Compiles the entry's regex (config validation has refused a bad one already).
    pub fn compile(config: &CheckConfig) -> Result<Self, regex::Error> {
        let regex = config.regex.as_deref().map(regex::Regex::new).transpose()?;
        Ok(Self {
            config: config.clone(),
            regex,
        })
    }

    /// The first rule `output` breaks at this pointer, as `` `/x`: … (`rule` …) ``.
    fn problem(&self, output: &Value) -> Option<String> {
        let c = &self.config;
        let at = &c.pointer;
        let rules = [
            c.regex.as_ref().map(|_| "regex"),
            c.min_length.map(|_| "min_length"),
            c.max_length.map(|_| "max_length"),
            c.min.map(|_| "min"),
            c.max.map(|_| "max"),
        ];
        let Some(value) = output.pointer(at).filter(|v| !v.is_null()) else {
            let first = rules.iter().flatten().next().unwrap_or(&"check");
            return Some(format!("`{at}`: missing (rule `{first}`)"));
        };
        let shown = || match value {
            Value::String(s) => quote(s),
            other => quote(&other.to_string()),
        };
        if let Some(re) = &self.regex {
            match value.as_str() {
                Some(s) if re.is_match(s) => {}
                Some(_) => {
                    return Some(format!(
                        "`{at}`: `{}` does not match rule `regex` `{}`",
                        shown(),
                        re.as_str()
                    ));
                }
                None => {
                    return Some(format!(
                        "`{at}`: `{}` is not a string (rule `regex`)",
                        shown()
                    ));
                }
            }
        }
        if c.min_length.is_some() || c.max_length.is_some() {
            let len = match value {
                Value::String(s) => s.chars().count(),
                Value::Array(a) => a.len(),
                _ => {
                    let rule = if c.min_length.is_some() {
                        "min_length"
                    } else {
                        "max_length"
                    };
                    return Some(format!(
                        "`{at}`: `{}` is neither a string nor an array (rule `{rule}`)",
                        shown()
                    ));
                }
            };
            if let Some(min) = c.min_length
                && len < min
            {
                return Some(format!(
                    "`{at}`: length {len} is under rule `min_length` {min}: `{}`",
                    shown()
                ));
            }
            if let Some(max) = c.max_length
                && len > max
            {
                return Some(format!(
                    "`{at}`: length {len} is over rule `max_length` {max}: `{}`",
                    shown()
                ));
            }
        }
        if c.min.is_some() || c.max.is_some() {
            let Some(n) = value.as_f64() else {
                let rule = if c.min.is_some() { "min" } else { "max" };
                return Some(format!(
                    "`{at}`: `{}` is not a number (rule `{rule}`)",
                    shown()
                ));
            };
            if let Some(min) = c.min
                && n < min
            {
                return Some(format!("`{at}`: {n} is under rule `min` {min}"));
            }
            if let Some(max) = c.max
                && n > max
            {
                return Some(format!("`{at}`: {n} is over rule `max` {max}"));
            }
        }
        None
    }
}

/// Why a result failed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// Every problem, for feedback and `errorDetails` (may quote values).
    pub problems: String,
    /// Where in the result each problem is (JSON pointers), safe to log.
    pub places: Vec<String>,
}

/// Checks a result against the topic's required keys, schema and `checks:`.
pub fn check_output(topic: &TopicRuntime, output: &Value) -> Result<(), Invalid> {
    let mut problems = Vec::new();
    let mut places = Vec::new();
    for key in &topic.config.output.required {
        let found = if key.starts_with('/') {
            output.pointer(key)
        } else {
            output.get(key)
        };
        if found.is_none_or(Value::is_null) {
            problems.push(format!("required key `{key}` is missing"));
            places.push(key.clone());
        }
    }
    if let Some(schema) = &topic.schema {
        for e in schema.iter_errors(output) {
            let at = e.instance_path().to_string();
            let at = if at.is_empty() { "/".to_string() } else { at };
            // jsonschema quotes the offending value, which may be huge or hold a secret.
            problems.push(format!("schema: {at}: {}", quote(&e.to_string())));
            places.push(at);
        }
    }
    for check in &topic.checks {
        if let Some(problem) = check.problem(output) {
            problems.push(problem);
            places.push(check.config.pointer.clone());
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Invalid {
            problems: problems.join("; "),
            places,
        })
    }
}

#[cfg(test)]
mod tests;
