//! Validation block: calls the route's endpoints and checks each result against the topic's
//! output rules (required keys, JSON Schema).
//!
//! For each endpoint in route order: call it up to `output.attempts` times while its result fails
//! validation (each retry carries the validation error as `feedback`, so endpoints that can
//! correct themselves do); then fall back to the next endpoint. An endpoint error that another
//! endpoint might not have (transient, fallback) moves on to the next endpoint too; a permanent or
//! business error, or cancellation, ends the task at once.

use std::time::Instant;

use serde_json::Value;

use super::gateway::Route;
use super::start::TaskContext;
use super::topic::TopicRuntime;
use super::verdict::{Verdict, class};
use crate::endpoints::{EndpointError, ErrorKind};

/// Calls endpoints along the route until one produces a valid result.
pub async fn execute(ctx: &TaskContext, topic: &TopicRuntime, route: &Route) -> Verdict {
    let mut chain = Vec::new();
    let mut last: Option<EndpointError> = None;
    let attempts = topic.config.output.attempts.max(1);
    for endpoint in &route.endpoints {
        let mut request = ctx.request.clone();
        for attempt in 1..=attempts {
            if request.cancel.is_cancelled() {
                return Verdict::Cancelled;
            }
            let started = Instant::now();
            let result = endpoint.call(&request).await;
            let elapsed_ms = started.elapsed().as_millis() as u64;
            match result {
                Ok(reply) => match check_output(topic, &reply.output) {
                    Ok(()) => {
                        tracing::info!(endpoint = endpoint.name(), attempt, elapsed_ms, "Endpoint answered; result valid.");
                        return Verdict::Done {
                            output: reply.output,
                            endpoint: endpoint.name().to_string(),
                            usage: reply.usage,
                        };
                    }
                    Err(problems) => {
                        tracing::warn!(endpoint = endpoint.name(), attempt, elapsed_ms, problems = %problems, "Result failed validation.");
                        chain.push(format!("{} (attempt {attempt}): result invalid: {problems}", endpoint.name()));
                        request.feedback = Some(problems.clone());
                        last = Some(
                            EndpointError::transient(format!("result of endpoint `{}` is invalid: {problems}", endpoint.name()))
                                .code(class::OUTPUT_INVALID),
                        );
                    }
                },
                Err(error) => {
                    tracing::warn!(endpoint = endpoint.name(), attempt, elapsed_ms, error = %error, "Endpoint failed.");
                    chain.push(format!("{} (attempt {attempt}): {error}", endpoint.name()));
                    match error.kind {
                        ErrorKind::Cancelled => return Verdict::Cancelled,
                        ErrorKind::Permanent | ErrorKind::Business { .. } => {
                            return Verdict::Failed { error, chain };
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
    let error = last.unwrap_or_else(|| EndpointError::transient("the route had no endpoint").code(class::NO_ENDPOINT));
    Verdict::Failed { error, chain }
}

/// Checks a result against the topic's required keys and schema. `Err` lists every problem.
pub fn check_output(topic: &TopicRuntime, output: &Value) -> Result<(), String> {
    let mut problems = Vec::new();
    for key in &topic.config.output.required {
        let found = if key.starts_with('/') {
            output.pointer(key)
        } else {
            output.get(key)
        };
        if found.is_none_or(Value::is_null) {
            problems.push(format!("required key `{key}` is missing"));
        }
    }
    if let Some(schema) = &topic.schema {
        for e in schema.iter_errors(output) {
            let at = e.instance_path().to_string();
            let at = if at.is_empty() { "/".to_string() } else { at };
            problems.push(format!("schema: {at}: {e}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}
