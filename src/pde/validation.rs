//! Validation block: calls the route's endpoints and checks each result against the topic's
//! output rules (required keys, JSON Schema).
//!
//! For each endpoint in route order: call it up to `output.attempts` times while its result fails
//! validation (each retry carries the validation error as `feedback`, so endpoints that can
//! correct themselves do); then fall back to the next endpoint. An endpoint error that another
//! endpoint might not have (transient, fallback) moves on to the next endpoint too; a permanent or
//! business error, or cancellation, ends the task at once.
//!
//! With `cache:` on the topic, a first attempt asks the topic's result cache before calling an
//! endpoint (a hit is validated like any result and skips the call), and a valid result of a
//! first attempt is stored (see [`super::cache`]).

use std::time::Instant;

use serde_json::Value;

use super::gateway::Route;
use super::start::TaskContext;
use super::topic::TopicRuntime;
use super::verdict::{Verdict, class};
use crate::endpoints::{EndpointError, EndpointReply, ErrorKind};

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
            // The cache answers for the input as the task gave it; a retry carries feedback.
            let cache = topic.cache.as_ref().filter(|_| request.feedback.is_none());
            if let Some(cache) = cache
                && let Some(output) = cache.lookup(endpoint.as_ref(), &request)
            {
                if check_output(topic, &output).is_ok() {
                    tracing::info!(
                        endpoint = endpoint.name(),
                        attempt,
                        "Result served from the cache; result valid."
                    );
                    return Verdict::Done {
                        output,
                        endpoint: endpoint.name().to_string(),
                        usage: None,
                    };
                }
                cache.forget(endpoint.as_ref(), &request);
            }
            let started = Instant::now();
            // Every error is redacted once, here, before anything logs or reports it.
            let result = endpoint
                .call(&request)
                .await
                .map_err(EndpointError::redacted);
            let took = started.elapsed();
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
                        if let Some(cache) = cache {
                            cache.store(endpoint.as_ref(), &request, &reply.output);
                        }
                        tracing::info!(
                            endpoint = endpoint.name(),
                            attempt,
                            elapsed_ms,
                            "Endpoint answered; result valid."
                        );
                        return Verdict::Done {
                            output: reply.output,
                            endpoint: endpoint.name().to_string(),
                            usage: reply.usage,
                        };
                    }
                    Err(Invalid { problems, places }) => {
                        // Where, not what: schema messages quote the offending values.
                        tracing::warn!(endpoint = endpoint.name(), attempt, elapsed_ms, at = %places.join(", "), "Result failed validation.");
                        chain.push(format!(
                            "{} (attempt {attempt}): result invalid: {problems}",
                            endpoint.name()
                        ));
                        request.feedback = Some(problems.clone());
                        last = Some(
                            EndpointError::transient(format!(
                                "result of endpoint `{}` is invalid: {problems}",
                                endpoint.name()
                            ))
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

/// Why a result failed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// Every problem, for feedback and `errorDetails` (may quote values).
    pub problems: String,
    /// Where in the result each problem is (JSON pointers), safe to log.
    pub places: Vec<String>,
}

/// Checks a result against the topic's required keys and schema.
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
            problems.push(format!(
                "schema: {at}: {}",
                crate::config::secret::quote(&e.to_string())
            ));
            places.push(at);
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
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use async_trait::async_trait;
    use serde_json::json;

    use super::*;
    use crate::config::file::TopicConfig;
    use crate::endpoints::{Endpoint, EndpointReply, EndpointRequest};
    use crate::pde::start::TaskContext;

    /// Answers from a script, one reply per call, and records the feedback it was given.
    #[derive(Debug)]
    struct Scripted {
        name: &'static str,
        replies: Mutex<Vec<Result<Value, EndpointError>>>,
        feedback: Mutex<Vec<Option<String>>>,
    }

    impl Scripted {
        fn new(name: &'static str, mut replies: Vec<Result<Value, EndpointError>>) -> Arc<Self> {
            replies.reverse();
            Arc::new(Self {
                name,
                replies: Mutex::new(replies),
                feedback: Mutex::new(Vec::new()),
            })
        }
        fn calls(&self) -> usize {
            self.feedback.lock().unwrap().len()
        }
    }

    #[async_trait]
    impl Endpoint for Scripted {
        fn name(&self) -> &str {
            self.name
        }
        fn kind(&self) -> &'static str {
            "scripted"
        }
        async fn call(&self, request: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
            self.feedback.lock().unwrap().push(request.feedback.clone());
            let next = self.replies.lock().unwrap().pop().expect("scripted reply");
            next.map(EndpointReply::new)
        }
    }

    fn topic(yaml: &str) -> TopicRuntime {
        let config: TopicConfig = serde_yaml::from_str(yaml).expect("yaml");
        TopicRuntime::build("t", &config, &[], &BTreeMap::new(), Duration::from_secs(30))
            .expect("builds")
    }

    fn ctx() -> TaskContext {
        TaskContext {
            request: EndpointRequest::default(),
        }
    }

    fn route(endpoints: Vec<Arc<Scripted>>) -> Route {
        Route {
            endpoints: endpoints
                .into_iter()
                .map(|e| e as Arc<dyn Endpoint>)
                .collect(),
        }
    }

    const SCHEMA_TOPIC: &str = "{pool: p, endpoints: [], output: {attempts: 2, required: [label], schema: {type: object, properties: {label: {enum: [a, b]}}}}}";

    #[tokio::test]
    async fn invalid_result_is_retried_with_feedback_then_falls_back() {
        let t = topic(SCHEMA_TOPIC);
        let first = Scripted::new(
            "first",
            vec![Ok(json!({"label": "zzz"})), Ok(json!({"nope": 1}))],
        );
        let second = Scripted::new("second", vec![Ok(json!({"label": "b"}))]);
        let verdict = execute(&ctx(), &t, &route(vec![first.clone(), second.clone()])).await;
        assert_eq!(
            verdict,
            Verdict::Done {
                output: json!({"label": "b"}),
                endpoint: "second".into(),
                usage: None
            }
        );
        assert_eq!(first.calls(), 2, "attempts: 2 on the first endpoint");
        let feedback = first.feedback.lock().unwrap().clone();
        assert_eq!(feedback[0], None);
        assert!(
            feedback[1].as_deref().unwrap_or("").contains("/label"),
            "the schema error is fed back: {feedback:?}"
        );
        assert_eq!(second.calls(), 1);
    }

    #[tokio::test]
    async fn all_results_invalid_is_an_output_invalid_failure_with_every_attempt() {
        let t = topic(SCHEMA_TOPIC);
        let only = Scripted::new("only", vec![Ok(json!({})), Ok(json!({"label": 3}))]);
        let Verdict::Failed { error, chain } = execute(&ctx(), &t, &route(vec![only])).await else {
            panic!("expected failure");
        };
        assert_eq!(error.code.as_deref(), Some(class::OUTPUT_INVALID));
        assert_eq!(chain.len(), 2);
        assert!(
            chain[0].contains("required key `label` is missing"),
            "{chain:?}"
        );
    }

    #[tokio::test]
    async fn transient_error_falls_back_but_permanent_error_stops() {
        let t = topic("{pool: p, endpoints: []}");
        let flaky = Scripted::new("flaky", vec![Err(EndpointError::transient("503"))]);
        let good = Scripted::new("good", vec![Ok(json!({"ok": true}))]);
        let verdict = execute(&ctx(), &t, &route(vec![flaky, good])).await;
        assert!(
            matches!(verdict, Verdict::Done { ref endpoint, .. } if endpoint == "good"),
            "{verdict:?}"
        );

        let denied = Scripted::new(
            "denied",
            vec![Err(EndpointError::permanent("401: check the API key"))],
        );
        let never = Scripted::new("never", vec![]);
        let verdict = execute(&ctx(), &t, &route(vec![denied, never.clone()])).await;
        assert!(
            matches!(verdict, Verdict::Failed { ref error, .. } if error.kind == ErrorKind::Permanent)
        );
        assert_eq!(
            never.calls(),
            0,
            "a permanent error is not retried elsewhere"
        );
    }
}
