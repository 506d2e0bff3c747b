//! Test block (built-in test): checks the task's inputs against the topic's `input` rules and
//! reads the candidate endpoints' shared health, before any work is done.
//!
//! The health is what the endpoints' layer stacks keep — each circuit breaker, fed by every call
//! of every pool and Meta-PDE step and by the background probes, and published to the daemon's
//! `HealthRegistry` — read through [`Endpoint::usable`]: no I/O per task. An open circuit is
//! unusable (the Gateway routes around it); a half-open one is usable (it takes a trial call).
//!
//! A failing input check ends the task with an error of class `input_invalid` whose message names
//! the input; the topic's `bpmn_errors.input_invalid` turns it into a BPMN error, otherwise it is
//! a failure with no retries (the same input would fail again).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::start::TaskContext;
use super::topic::TopicRuntime;
use super::verdict::{Verdict, class};
use crate::config::file::{InputConfig, JsonType};
use crate::endpoints::{Endpoint, EndpointError};

/// What the Test block found out about the endpoints.
#[derive(Debug, Default)]
pub struct TestReport {
    /// Endpoints that are not usable now (open circuit, or ruled out by their config), with why.
    pub unhealthy: BTreeMap<String, EndpointError>,
}

/// Runs the input checks, then reads the health of every endpoint the task may be routed to.
pub async fn run(ctx: &TaskContext, topic: &TopicRuntime) -> Result<TestReport, Verdict> {
    let problems = check_inputs(&topic.config.input, &ctx.request.variables);
    if !problems.is_empty() {
        let message = format!("input invalid: {}", problems.join("; "));
        return Err(Verdict::failed(
            EndpointError::permanent(message).code(class::INPUT_INVALID),
        ));
    }
    // The topic's list, the endpoints its routing rules may pick from the pool, the pinned one.
    let named = topic
        .routing
        .rules
        .iter()
        .flat_map(|r| r.endpoints.iter())
        .chain(
            ctx.request
                .properties
                .get(super::gateway::ENDPOINT_PROPERTY),
        )
        .filter(|n| !topic.endpoints.iter().any(|e| e.name() == n.as_str()))
        .filter_map(|n| topic.pool_endpoints.get(n));
    Ok(health_report(topic.endpoints.iter().chain(named)))
}

/// What the shared health says about `endpoints`: the unusable ones, with why. No I/O.
fn health_report<'a>(endpoints: impl Iterator<Item = &'a Arc<dyn Endpoint>>) -> TestReport {
    let mut report = TestReport::default();
    for endpoint in endpoints {
        if let Err(e) = endpoint.usable() {
            let name = endpoint.name().to_string();
            // The breaker logged the change once; this is per task.
            tracing::debug!(endpoint = %name, error = %e, "Endpoint is not usable; routing around it.");
            report.unhealthy.insert(name, e);
        }
    }
    report
}

/// Every problem with the inputs, each naming the variable.
pub fn check_inputs(rules: &InputConfig, vars: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut problems = Vec::new();
    for name in &rules.required {
        match vars.get(name) {
            None => problems.push(format!("required variable `{name}` is missing")),
            Some(Value::Null) => problems.push(format!("required variable `{name}` is null")),
            Some(_) => {}
        }
    }
    for (name, expected) in &rules.types {
        if let Some(value) = vars.get(name).filter(|v| !v.is_null())
            && !has_type(value, *expected)
        {
            problems.push(format!(
                "variable `{name}` must be {} but is {}",
                type_name(*expected),
                json_type_of(value)
            ));
        }
    }
    problems
}

fn has_type(value: &Value, expected: JsonType) -> bool {
    match expected {
        JsonType::String => value.is_string(),
        JsonType::Number => value.is_number(),
        JsonType::Integer => value.is_i64() || value.is_u64(),
        JsonType::Boolean => value.is_boolean(),
        JsonType::Object => value.is_object(),
        JsonType::Array => value.is_array(),
    }
}

fn type_name(t: JsonType) -> &'static str {
    match t {
        JsonType::String => "a string",
        JsonType::Number => "a number",
        JsonType::Integer => "an integer",
        JsonType::Boolean => "a boolean",
        JsonType::Object => "an object",
        JsonType::Array => "an array",
    }
}

fn json_type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn names_every_missing_null_and_mistyped_input() {
        let rules = InputConfig {
            required: vec!["url".into(), "amount".into(), "id".into()],
            types: [
                ("amount".to_string(), JsonType::Number),
                ("id".to_string(), JsonType::Integer),
            ]
            .into(),
        };
        let problems = check_inputs(&rules, &vars(json!({"amount": "12", "id": null})));
        assert_eq!(
            problems,
            vec![
                "required variable `url` is missing",
                "required variable `id` is null",
                "variable `amount` must be a number but is a string",
            ]
        );
    }

    #[test]
    fn accepts_well_typed_inputs() {
        let rules = InputConfig {
            required: vec!["n".into()],
            types: [("n".to_string(), JsonType::Integer)].into(),
        };
        assert!(check_inputs(&rules, &vars(json!({"n": 3}))).is_empty());
        assert_eq!(check_inputs(&rules, &vars(json!({"n": 3.5}))).len(), 1);
    }

    /// An endpoint that counts its probes and fails every call (a server that is down).
    #[derive(Debug, Default)]
    struct Down {
        probes: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Endpoint for Down {
        fn name(&self) -> &str {
            "down"
        }
        fn kind(&self) -> &'static str {
            "test"
        }
        async fn probe(&self) -> Result<(), EndpointError> {
            self.probes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
        async fn call(
            &self,
            _: &crate::endpoints::EndpointRequest,
        ) -> Result<crate::endpoints::EndpointReply, EndpointError> {
            Err(EndpointError::transient("connection refused").code("connect"))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_circuit_is_routed_around_without_asking_the_endpoint_per_task() {
        use crate::endpoints::stack::{self, CircuitConfig, Policy, RetryPolicy};
        let down = Arc::new(Down::default());
        let policy = Policy {
            timeout: None,
            max_concurrency: None,
            circuit: CircuitConfig {
                failure_threshold: 2,
                ..CircuitConfig::default()
            },
            retry: RetryPolicy::none(),
            probe: None,
        };
        let cx = crate::endpoints::BuildContext::default();
        let stacked = stack::apply(down.clone(), &policy, &cx);
        let endpoints = [stacked.clone()];
        assert!(health_report(endpoints.iter()).unhealthy.is_empty());
        // Two tasks' calls fail (another pool, a Meta-PDE step: the same Arc endpoint).
        for _ in 0..2 {
            let _ = stacked.call(&Default::default()).await;
        }
        for _ in 0..100 {
            let report = health_report(endpoints.iter());
            let why = &report.unhealthy["down"];
            assert_eq!(why.code.as_deref(), Some("circuit_open"));
        }
        assert_eq!(
            down.probes.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "a hundred tasks, no health I/O"
        );
        // After the cooldown it is half-open: usable, for a trial call.
        tokio::time::advance(std::time::Duration::from_secs(31)).await;
        assert!(health_report(endpoints.iter()).unhealthy.is_empty());
    }

    /// An endpoint named only by a routing rule (in the pool, not in the topic's list) is read
    /// too: a rule must not route to an open circuit.
    #[tokio::test(start_paused = true)]
    async fn an_endpoint_named_only_by_a_routing_rule_is_checked_too() {
        use crate::endpoints::stack::{self, CircuitConfig, Policy, RetryPolicy};
        let policy = Policy {
            timeout: None,
            max_concurrency: None,
            circuit: CircuitConfig {
                failure_threshold: 1,
                ..CircuitConfig::default()
            },
            retry: RetryPolicy::none(),
            probe: None,
        };
        let cx = crate::endpoints::BuildContext::default();
        let down = stack::apply(Arc::new(Down::default()), &policy, &cx);
        let _ = down.call(&Default::default()).await;
        let noop: crate::endpoints::EndpointConfig =
            serde_yaml::from_str("type: noop").expect("noop");
        let registry: BTreeMap<String, Arc<dyn Endpoint>> = [
            ("down".to_string(), down),
            (
                "primary".to_string(),
                noop.build("primary", &cx).expect("builds"),
            ),
        ]
        .into();
        let config: crate::config::file::TopicConfig = serde_yaml::from_str(
            "{pool: gp, endpoints: [primary], routing: {strategy: rules, rules: [{when: '{{ big }}', endpoints: [down]}, {endpoints: [primary]}]}}",
        )
        .expect("topic");
        let pool = ["primary".to_string(), "down".to_string()];
        let topic = TopicRuntime::build(
            "t",
            &config,
            &pool,
            &registry,
            std::time::Duration::from_secs(30),
        )
        .expect("topic");
        let ctx = TaskContext {
            request: Default::default(),
        };
        let report = run(&ctx, &topic).await.expect("inputs pass");
        assert_eq!(
            report.unhealthy.get("down").and_then(|e| e.code.as_deref()),
            Some("circuit_open"),
            "{report:?}"
        );
    }
}
