//! The retry layer: calls again after a transient failure, with the one backoff
//! (`crate::backoff`), within a retry budget.
//!
//! A retry is made only when all hold: the error is transient; the endpoint has no side effects,
//! or the error proves the request never left ([`EndpointError::never_sent`], class `connect`: no
//! connection could be made — a mail or a POST must never go out twice); fewer than
//! `max_retries` were made for this call; a server-advised wait is at most `max_wait`; and the
//! endpoint's budget has room (tower's `TpsBudget`: every call deposits, every retry withdraws,
//! so retries stay a bounded share of the calls and an outage is not multiplied).

use std::sync::Arc;

use async_trait::async_trait;
use tower::retry::budget::{Budget, TpsBudget};

use super::{Layer, Layered, RetryPolicy};
use crate::backoff::Backoff;
use crate::config::file::BackoffConfig;
use crate::config::secret::redact;
use crate::endpoints::{Endpoint, EndpointError, EndpointReply, EndpointRequest, ErrorKind, class};
use crate::telemetry::metrics;

/// Calls again after a transient failure.
#[derive(Debug)]
pub struct Retry {
    policy: RetryPolicy,
    budget: TpsBudget,
}

impl Retry {
    /// Wraps `inner`. The budget's bounds are checked by config validation; out-of-range values
    /// are clamped here, because `TpsBudget::new` panics outside them.
    pub fn new(inner: Arc<dyn Endpoint>, policy: RetryPolicy) -> Layered<Self> {
        let b = &policy.budget;
        let ttl = b.ttl.clamp(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(60),
        );
        let ratio = if b.ratio.is_finite() {
            b.ratio.clamp(0.0, 1000.0) as f32
        } else {
            0.0
        };
        let min_per_sec = b.min_per_sec.min(i32::MAX as u32 - 1);
        let layer = Self {
            budget: TpsBudget::new(ttl, min_per_sec, ratio),
            policy,
        };
        Layered::new(layer, inner)
    }

    /// The shared backoff for one call's retries: `backoff`, doubling, capped at
    /// `max_backoff`, jittered.
    fn backoff(&self) -> Backoff {
        Backoff::new(BackoffConfig {
            initial: self.policy.backoff,
            max: self.policy.max_backoff,
            multiplier: 2.0,
        })
    }
}

#[async_trait]
impl Layer for Retry {
    async fn call(
        &self,
        inner: &dyn Endpoint,
        request: &EndpointRequest,
    ) -> Result<EndpointReply, EndpointError> {
        self.budget.deposit();
        let mut retry = 0;
        let mut backoff = self.backoff();
        // The last failure of a call that was made, for a retry the breaker refuses.
        let mut failed: Option<EndpointError> = None;
        loop {
            let error = match inner.call(request).await {
                Ok(reply) => return Ok(reply),
                Err(e) => e,
            };
            if let Some(failed) = failed.take()
                && error.code.as_deref() == Some(class::CIRCUIT_OPEN)
            {
                // The failures so far opened the circuit: the retries end, and the answer is the
                // endpoint's own last failure (what `bpmn_errors`, the task's history and the
                // learner should see), not the refusal of a retry that was never made.
                return Err(failed);
            }
            // Only a transient error is retried, and one of a side-effecting endpoint only when
            // the request never left.
            let ErrorKind::Transient { retry_after } = error.kind else {
                return Err(error);
            };
            if retry >= self.policy.max_retries || (self.policy.side_effects && !error.never_sent())
            {
                return Err(error);
            }
            let wait = match retry_after {
                Some(wait) if wait > self.policy.max_wait => return Err(error),
                Some(wait) => wait,
                None => backoff.next_delay(),
            };
            if !self.budget.withdraw() {
                metrics::retry_refused(inner.name());
                tracing::debug!(
                    endpoint = inner.name(),
                    error = %redact(&error.to_string()),
                    "Retry budget spent; not retrying."
                );
                return Err(error);
            }
            retry += 1;
            failed = Some(error.clone());
            metrics::retried(inner.name());
            // Below Validation's redaction: a server may have echoed a secret into the message.
            tracing::warn!(
                endpoint = inner.name(),
                retry,
                wait_ms = wait.as_millis() as u64,
                error = %redact(&error.to_string()),
                "Endpoint failed; retrying."
            );
            tokio::select! {
                _ = request.cancel.cancelled() => return Err(EndpointError::cancelled()),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
