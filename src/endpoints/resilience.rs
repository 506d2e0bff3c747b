//! Resilience wrappers: each one concern, each itself an [`Endpoint`], stacked by [`wrap`].
//!
//! ```text
//! Retry ─► CircuitBreaker ─► endpoint
//!   │          │ open: refuse at once (fallback `circuit_open`), health() = Err
//!   │          └ counts consecutive transient failures; half-open probe after `open_for`
//!   └ transient error: wait (Retry-After, else exponential backoff with jitter), call again,
//!     at most `max_retries` times; a Retry-After longer than `max_wait` is left to the engine
//! ```
//!
//! The breaker sits inside the retry so that every attempt counts, and an open circuit ends the
//! retries at once (its error is a fallback, never retried) — the pipeline moves on to the next
//! endpoint, and the Test block routes around an open circuit via `health()`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::time::Instant;

use super::llm::lock;
use super::{Endpoint, EndpointError, EndpointReply, EndpointRequest, ErrorKind};
use crate::backoff::Backoff;
use crate::config::file::BackoffConfig;
use crate::endpoints::class;

/// `circuit:` of an AI endpoint: when to stop calling a failing server for a while.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitConfig {
    /// Consecutive transient failures (5xx, 429, timeouts, refused connections) that open it.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// How long it stays open before one trial call is let through.
    #[serde(default = "default_open_for", with = "humantime_serde")]
    pub open_for: Duration,
}

fn default_failure_threshold() -> u32 {
    5
}
fn default_open_for() -> Duration {
    Duration::from_secs(30)
}

impl Default for CircuitConfig {
    fn default() -> Self {
        Self {
            failure_threshold: default_failure_threshold(),
            open_for: default_open_for(),
        }
    }
}

impl CircuitConfig {
    /// Problems, as (path suffix, message).
    pub(crate) fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.failure_threshold == 0 {
            out.push((
                "circuit.failure_threshold".into(),
                "must be at least 1".into(),
            ));
        }
        if self.open_for.is_zero() {
            out.push((
                "circuit.open_for".into(),
                "must be greater than zero".into(),
            ));
        }
        out
    }
}

/// How an endpoint is wrapped.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Extra attempts after a transient failure.
    pub max_retries: u32,
    /// First backoff delay; doubles per retry, with jitter.
    pub backoff: Duration,
    /// Cap of one backoff delay.
    pub max_backoff: Duration,
    /// A server-advised wait (`Retry-After`) longer than this is not waited out in-process: the
    /// error goes to the pipeline, which falls back or lets the engine retry later.
    pub max_wait: Duration,
    /// The circuit breaker's settings.
    pub circuit: CircuitConfig,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_retries: default_max_retries(),
            backoff: default_retry_backoff(),
            max_backoff: Duration::from_secs(10),
            max_wait: Duration::from_secs(30),
            circuit: CircuitConfig::default(),
        }
    }
}

/// Default of `max_retries` on AI endpoints.
pub(crate) fn default_max_retries() -> u32 {
    2
}

/// Default of `retry_backoff` on AI endpoints.
pub(crate) fn default_retry_backoff() -> Duration {
    Duration::from_millis(500)
}

/// The policy of an endpoint's `max_retries`, `retry_backoff` and `circuit` settings.
pub fn policy(max_retries: u32, retry_backoff: Duration, circuit: &CircuitConfig) -> Policy {
    Policy {
        max_retries,
        backoff: retry_backoff,
        circuit: circuit.clone(),
        ..Policy::default()
    }
}

/// Stacks the wrappers around an endpoint: `Retry(CircuitBreaker(endpoint))`.
pub fn wrap(endpoint: Arc<dyn Endpoint>, policy: &Policy) -> Arc<dyn Endpoint> {
    let breaker = Arc::new(CircuitBreaker::new(endpoint, policy.circuit.clone()));
    Arc::new(Retry::new(breaker, policy.clone()))
}

/// Calls again after a transient failure, with backoff.
#[derive(Debug)]
pub struct Retry {
    inner: Arc<dyn Endpoint>,
    policy: Policy,
}

impl Retry {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Endpoint>, policy: Policy) -> Self {
        Self { inner, policy }
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
impl Endpoint for Retry {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn side_effects(&self) -> bool {
        self.inner.side_effects()
    }

    async fn health(&self) -> Result<(), EndpointError> {
        self.inner.health().await
    }

    async fn call(&self, request: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
        let mut retry = 0;
        let mut backoff = self.backoff();
        loop {
            let error = match self.inner.call(request).await {
                Ok(reply) => return Ok(reply),
                Err(e) => e,
            };
            let ErrorKind::Transient { retry_after } = error.kind else {
                return Err(error);
            };
            if retry >= self.policy.max_retries {
                return Err(error);
            }
            retry += 1;
            let wait = match retry_after {
                Some(wait) if wait > self.policy.max_wait => return Err(error),
                Some(wait) => wait,
                None => backoff.next_delay(),
            };
            tracing::warn!(
                endpoint = self.name(),
                retry,
                wait_ms = wait.as_millis() as u64,
                error = %error,
                "Endpoint failed; retrying."
            );
            tokio::select! {
                _ = request.cancel.cancelled() => return Err(EndpointError::cancelled()),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Stops calling an endpoint that keeps failing, for a while.
#[derive(Debug)]
pub struct CircuitBreaker {
    inner: Arc<dyn Endpoint>,
    config: CircuitConfig,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Transient failures in a row.
    failures: u32,
    /// When the circuit opened; `None` while closed.
    opened_at: Option<Instant>,
    /// A half-open trial call is running.
    probing: bool,
    /// The failure that opened the circuit, for messages.
    last_error: String,
}

/// What the breaker lets a call do.
enum Gate {
    /// Closed: call.
    Pass,
    /// Half-open: this call is the trial.
    Probe,
}

/// Clears `probing` if a trial call is dropped (its task cancelled) before it reports.
struct ProbeGuard<'a> {
    state: &'a Mutex<State>,
    armed: bool,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            lock(self.state).probing = false;
        }
    }
}

impl CircuitBreaker {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Endpoint>, config: CircuitConfig) -> Self {
        Self {
            inner,
            config,
            state: Mutex::new(State::default()),
        }
    }

    /// The error of an open circuit.
    fn open_error(&self, state: &State, now: Instant) -> EndpointError {
        let remaining = state
            .opened_at
            .map(|at| self.config.open_for.saturating_sub(now - at))
            .unwrap_or_default();
        EndpointError::fallback(format!(
            "endpoint `{}` is paused (circuit open) after {} failures in a row, for {}s more; \
             last error: {}",
            self.inner.name(),
            state.failures,
            remaining.as_secs().max(1),
            state.last_error
        ))
        .code(class::CIRCUIT_OPEN)
    }

    fn gate(&self) -> Result<Gate, EndpointError> {
        let mut state = lock(&self.state);
        let Some(opened_at) = state.opened_at else {
            return Ok(Gate::Pass);
        };
        let now = Instant::now();
        if now - opened_at < self.config.open_for || state.probing {
            return Err(self.open_error(&state, now));
        }
        state.probing = true;
        Ok(Gate::Probe)
    }

    fn record(&self, result: &Result<EndpointReply, EndpointError>) {
        let mut state = lock(&self.state);
        state.probing = false;
        match result {
            Err(e) if matches!(e.kind, ErrorKind::Transient { .. }) => {
                state.failures = state.failures.saturating_add(1);
                state.last_error = e.message.clone();
                let reopen = state.opened_at.is_some();
                if reopen || state.failures >= self.config.failure_threshold {
                    if !reopen {
                        tracing::warn!(
                            endpoint = self.inner.name(),
                            failures = state.failures,
                            open_for_ms = self.config.open_for.as_millis() as u64,
                            "Circuit opened: endpoint paused."
                        );
                    }
                    state.opened_at = Some(Instant::now());
                }
            }
            // An answer (even a refusal or a bad request) means the server is up.
            Err(e) if e.kind == ErrorKind::Cancelled => {}
            _ => {
                if state.opened_at.is_some() {
                    tracing::info!(
                        endpoint = self.inner.name(),
                        "Circuit closed: endpoint answers again."
                    );
                }
                *state = State::default();
            }
        }
    }
}

#[async_trait]
impl Endpoint for CircuitBreaker {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn side_effects(&self) -> bool {
        self.inner.side_effects()
    }

    async fn health(&self) -> Result<(), EndpointError> {
        {
            let state = lock(&self.state);
            let now = Instant::now();
            if let Some(at) = state.opened_at
                && now - at < self.config.open_for
            {
                return Err(self.open_error(&state, now));
            }
        }
        self.inner.health().await
    }

    async fn call(&self, request: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
        let gate = self.gate()?;
        let mut guard = ProbeGuard {
            state: &self.state,
            armed: matches!(gate, Gate::Probe),
        };
        let result = self.inner.call(request).await;
        guard.armed = false;
        self.record(&result);
        result
    }
}

#[cfg(test)]
mod tests;
