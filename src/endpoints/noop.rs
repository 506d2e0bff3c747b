//! `noop`: echoes the task's variables back as its result, optionally after a delay.
//! For smoke tests, demos and benchmarks of procos itself.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use super::stack::{self, CircuitConfig, Policy, ProbeConfig, RetryPolicy};
use super::{Endpoint, EndpointError, EndpointReply, EndpointRequest};

/// `type: noop`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoopConfig {
    /// Wait this long before answering (simulates slow work).
    #[serde(default, with = "humantime_serde")]
    pub delay: Option<Duration>,
    /// Bound on one call; unbounded when absent.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Bound on calls in flight; unbounded when absent.
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    /// The breaker (a noop only fails by its timeout).
    #[serde(default)]
    pub circuit: CircuitConfig,
    /// The probe (nothing to check; off by default).
    #[serde(default)]
    pub probe: ProbeConfig,
}

impl NoopConfig {
    /// How the stack wraps this endpoint (never retried: it cannot fail but by its timeout).
    pub fn policy(&self) -> Policy {
        Policy {
            timeout: self.timeout,
            max_concurrency: self.max_concurrency,
            circuit: self.circuit.clone(),
            retry: RetryPolicy::none(),
            probe: self.probe.schedule(false),
        }
    }

    /// Every problem as (path suffix, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        stack::validate(
            self.timeout.map(|t| ("timeout", t)),
            self.max_concurrency,
            &self.circuit,
            &self.probe,
            None,
        )
    }
}

/// The echo endpoint.
#[derive(Debug)]
pub struct NoopEndpoint {
    name: String,
    delay: Option<Duration>,
}

impl NoopEndpoint {
    /// Builds it from its config.
    pub fn new(name: &str, config: &NoopConfig) -> Self {
        Self {
            name: name.to_string(),
            delay: config.delay,
        }
    }
}

#[async_trait]
impl Endpoint for NoopEndpoint {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "noop"
    }

    fn side_effects(&self) -> bool {
        false
    }

    async fn call(&self, request: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
        if let Some(delay) = self.delay {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = request.cancel.cancelled() => return Err(EndpointError::cancelled()),
            }
        }
        Ok(EndpointReply::new(Value::Object(request.variables.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test(start_paused = true)]
    async fn echoes_variables_after_the_delay() {
        let ep = NoopEndpoint::new(
            "echo",
            &NoopConfig {
                delay: Some(Duration::from_secs(5)),
                ..NoopConfig::default()
            },
        );
        let mut req = EndpointRequest::default();
        req.variables.insert("a".into(), json!(1));
        let started = tokio::time::Instant::now();
        let reply = ep.call(&req).await.unwrap();
        assert_eq!(reply.output, json!({"a": 1}));
        assert!(started.elapsed() >= Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_stops_the_wait() {
        let ep = NoopEndpoint::new(
            "echo",
            &NoopConfig {
                delay: Some(Duration::from_secs(60)),
                ..NoopConfig::default()
            },
        );
        let req = EndpointRequest::default();
        req.cancel.cancel();
        assert_eq!(
            ep.call(&req).await.unwrap_err().kind,
            super::super::ErrorKind::Cancelled
        );
    }
}
