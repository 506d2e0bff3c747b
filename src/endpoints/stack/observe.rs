//! The observation layer: every attempt's latency and result, in metrics, and one trace span
//! per attempt (endpoint name, kind, attempt number, result class; see
//! [`crate::telemetry::traces`]) under which the kind's requests carry their `traceparent`.
//!
//! `telemetry::metrics::endpoint_called` counts whole calls (retries included) from the
//! Validation block; this layer counts each attempt (`procos_endpoint_attempts_total`,
//! `procos_endpoint_attempt_seconds`), so retries and timeouts show.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Layer, Layered};
use crate::endpoints::{Endpoint, EndpointError, EndpointReply, EndpointRequest, ErrorKind};
use crate::telemetry::{metrics, traces};

/// Records each attempt that passes through it.
#[derive(Debug)]
pub struct Observe {
    metrics: metrics::AttemptMetrics,
}

impl Observe {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Endpoint>) -> Layered<Self> {
        let metrics = metrics::AttemptMetrics::new(inner.name());
        Layered::new(Self { metrics }, inner)
    }
}

/// An attempt's result as a metric label: `ok`, or the error's kind.
pub fn outcome(result: &Result<EndpointReply, EndpointError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => match e.kind {
            ErrorKind::Transient { .. } => "transient",
            ErrorKind::Permanent => "permanent",
            ErrorKind::Fallback => "fallback",
            ErrorKind::InvalidOutput => "invalid_output",
            ErrorKind::Business { .. } => "business",
            ErrorKind::Cancelled => "cancelled",
        },
    }
}

/// An attempt's result class for its trace span, and whether it is a failure (a business
/// error or a cancellation is an answer, not a fault of the endpoint).
fn attempt_result(result: &Result<EndpointReply, EndpointError>) -> traces::AttemptResult {
    let class = outcome(result);
    (class, !matches!(class, "ok" | "business" | "cancelled"))
}

#[async_trait]
impl Layer for Observe {
    async fn call(
        &self,
        inner: &dyn Endpoint,
        request: &EndpointRequest,
    ) -> Result<EndpointReply, EndpointError> {
        let started = Instant::now();
        // One trace span per attempt (inert when traces are off).
        let result = traces::endpoint_attempt(
            inner.name(),
            inner.kind(),
            inner.call(request),
            attempt_result,
        )
        .await;
        self.metrics.attempt(outcome(&result), started.elapsed());
        result
    }
}
