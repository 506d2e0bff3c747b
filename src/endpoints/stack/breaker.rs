//! The circuit breaker: stops calling an endpoint that is unwell, for a while.
//!
//! ```text
//!            N failures in a row, or ≥ failure_rate of ≥ min_calls calls in `window`,
//!            or a failing probe
//!  Closed ────────────────────────────────────────────────► Open ◄──────────┐
//!    ▲                                                       │ open_for over, │ the trial
//!    │ the trial call succeeds                               │ or a passing   │ fails (or a
//!    └───────────────────────────────────── HalfOpen ◄───────┘ probe          │ probe fails)
//!                                               └──────────────────────────────┘
//! ```
//!
//! Only transient failures count (5xx, 429, timeouts, refused connections): an answer — a 4xx,
//! a business error, an invalid output — says the endpoint is up; a cancelled call says nothing.
//! Every state change is published to the shared [`HealthRegistry`] (state, since, the redacted
//! last error), set on the `procos_breaker_state` gauge and logged once; the Test block reads it
//! through [`Endpoint::usable`] and routes around an open circuit without calling the endpoint.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{CircuitConfig, Layer, Layered};
use crate::config::secret::redact;
use crate::endpoints::health::{BreakerState, HealthRegistry, now_secs};
use crate::endpoints::{Endpoint, EndpointError, EndpointReply, EndpointRequest, ErrorKind, class};
use crate::telemetry::metrics;

/// Buckets of the sliding window: the window slides by a tenth of its length.
const BUCKETS: u32 = 10;

/// The breaker layer; also the gate the endpoint's probe flips.
#[derive(Debug)]
pub struct Breaker {
    config: CircuitConfig,
    registry: Arc<HealthRegistry>,
    state: Mutex<State>,
}

#[derive(Debug)]
enum Phase {
    Closed,
    Open {
        until: Instant,
    },
    /// `trial`: the one call let through is running.
    HalfOpen {
        trial: bool,
    },
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// Transient failures in a row.
    consecutive: u32,
    window: Window,
    /// Why it opened (redacted), for messages.
    last_error: String,
}

/// Calls and failures over the last `window`, in buckets.
#[derive(Debug)]
struct Window {
    length: Duration,
    /// (bucket start, calls, failures), oldest first.
    buckets: VecDeque<(Instant, u32, u32)>,
}

impl Window {
    fn new(length: Duration) -> Self {
        Self {
            length,
            buckets: VecDeque::new(),
        }
    }

    fn add(&mut self, now: Instant, failed: bool) {
        self.expire(now);
        let width = self.length / BUCKETS;
        match self.buckets.back_mut() {
            Some((start, calls, failures)) if now.saturating_duration_since(*start) < width => {
                *calls += 1;
                *failures += u32::from(failed);
            }
            _ => self.buckets.push_back((now, 1, u32::from(failed))),
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((start, _, _)) = self.buckets.front() {
            if now.saturating_duration_since(*start) >= self.length {
                self.buckets.pop_front();
            } else {
                break;
            }
        }
    }

    /// (calls, failures) in the window.
    fn totals(&self) -> (u32, u32) {
        self.buckets
            .iter()
            .fold((0, 0), |(c, f), (_, calls, fails)| (c + calls, f + fails))
    }

    fn clear(&mut self) {
        self.buckets.clear();
    }
}

/// What the gate let a call do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Closed (or switched off): call.
    Pass,
    /// Half-open: this call is the trial.
    Trial,
}

/// Frees the trial slot if a trial call is dropped (its task cancelled) before it reports.
struct TrialGuard<'a> {
    breaker: &'a Breaker,
    armed: bool,
}

impl Drop for TrialGuard<'_> {
    fn drop(&mut self) {
        if self.armed
            && let Phase::HalfOpen { trial } = &mut self.breaker.lock().phase
        {
            *trial = false;
        }
    }
}

impl Breaker {
    /// Wraps `inner`; state changes go to `registry` under the endpoint's name.
    pub fn new(
        inner: Arc<dyn Endpoint>,
        config: CircuitConfig,
        registry: Arc<HealthRegistry>,
    ) -> Layered<Self> {
        let layer = Self {
            state: Mutex::new(State {
                phase: Phase::Closed,
                consecutive: 0,
                window: Window::new(config.window),
                last_error: String::new(),
            }),
            config,
            registry,
        };
        Layered::new(layer, inner)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-written (plain fields).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// See `Layered<Breaker>::state`.
    fn state(&self) -> BreakerState {
        match self.lock().phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { until } if Instant::now() < until => BreakerState::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// The error of a refused call to the endpoint `name`.
    fn open_error(&self, name: &str, state: &State, now: Instant) -> EndpointError {
        let wait = match state.phase {
            Phase::Open { until } => format!(
                "for {}s more",
                until.saturating_duration_since(now).as_secs().max(1)
            ),
            _ => "while a trial call runs".to_string(),
        };
        EndpointError::fallback(format!(
            "endpoint `{name}` is paused (circuit open) {wait}; last error: {}",
            state.last_error
        ))
        .code(class::CIRCUIT_OPEN)
    }

    /// Publishes a state change of the endpoint `name`: registry, gauge, one log line.
    fn publish(&self, name: &str, to: BreakerState, why: Option<&str>) {
        let now = now_secs();
        let retry_at =
            (to == BreakerState::Open).then_some(now + self.config.open_for.as_secs_f64());
        self.registry.update(name, |h| {
            h.breaker = to;
            h.since = now;
            h.last_error = why.map(str::to_string);
            h.retry_at = retry_at;
        });
        metrics::breaker_state(name, to);
        match to {
            BreakerState::Open => tracing::warn!(
                endpoint = name,
                open_for_ms = self.config.open_for.as_millis() as u64,
                reason = why.unwrap_or_default(),
                "Circuit opened: endpoint paused."
            ),
            BreakerState::HalfOpen => {
                tracing::info!(endpoint = name, "Circuit half-open: one trial call.")
            }
            BreakerState::Closed => {
                tracing::info!(endpoint = name, "Circuit closed: endpoint answers again.")
            }
        }
    }

    /// Opens (or re-opens) the circuit now; `Some(reason)` when this is a state change.
    fn open(&self, state: &mut State, now: Instant, reason: String) -> Option<String> {
        let was_open = matches!(state.phase, Phase::Open { .. });
        state.phase = Phase::Open {
            until: now + self.config.open_for,
        };
        state.last_error = reason.clone();
        (!was_open).then_some(reason)
    }

    fn gate(&self, name: &str) -> Result<Gate, EndpointError> {
        if !self.config.enabled {
            return Ok(Gate::Pass);
        }
        let now = Instant::now();
        let mut state = self.lock();
        match state.phase {
            Phase::Closed => Ok(Gate::Pass),
            Phase::Open { until } if now < until => Err(self.open_error(name, &state, now)),
            Phase::Open { .. } => {
                state.phase = Phase::HalfOpen { trial: true };
                drop(state);
                self.publish(name, BreakerState::HalfOpen, None);
                Ok(Gate::Trial)
            }
            Phase::HalfOpen { trial: true } => Err(self.open_error(name, &state, now)),
            Phase::HalfOpen { trial: false } => {
                state.phase = Phase::HalfOpen { trial: true };
                Ok(Gate::Trial)
            }
        }
    }

    fn record(&self, name: &str, gate: Gate, result: &Result<EndpointReply, EndpointError>) {
        if !self.config.enabled {
            return;
        }
        let failure = match result {
            Err(e) if e.kind == ErrorKind::Cancelled => {
                if gate == Gate::Trial
                    && let Phase::HalfOpen { trial } = &mut self.lock().phase
                {
                    *trial = false;
                }
                return;
            }
            Err(e) if matches!(e.kind, ErrorKind::Transient { .. }) => Some(redact(&e.message)),
            _ => None,
        };
        let now = Instant::now();
        let mut state = self.lock();
        let change = match (&state.phase, gate) {
            (Phase::HalfOpen { .. }, Gate::Trial) => match failure {
                Some(reason) => self
                    .open(&mut state, now, format!("the trial call failed: {reason}"))
                    .map(|r| (BreakerState::Open, Some(r))),
                None => {
                    state.phase = Phase::Closed;
                    state.consecutive = 0;
                    state.window.clear();
                    state.last_error.clear();
                    Some((BreakerState::Closed, None))
                }
            },
            (Phase::Closed, _) => {
                state.window.add(now, failure.is_some());
                match failure {
                    None => {
                        state.consecutive = 0;
                        None
                    }
                    Some(reason) => {
                        state.consecutive = state.consecutive.saturating_add(1);
                        let (calls, failures) = state.window.totals();
                        let why = if state.consecutive >= self.config.failure_threshold {
                            Some(format!("{} failures in a row", state.consecutive))
                        } else if calls >= self.config.min_calls
                            && f64::from(failures) >= self.config.failure_rate * f64::from(calls)
                        {
                            Some(format!(
                                "{failures} of {calls} calls failed within {}",
                                humantime::format_duration(self.config.window)
                            ))
                        } else {
                            None
                        };
                        why.and_then(|why| self.open(&mut state, now, format!("{why}: {reason}")))
                            .map(|r| (BreakerState::Open, Some(r)))
                    }
                }
            }
            // A call let through before the circuit opened (or before a trial began) that ends
            // now says nothing new.
            _ => None,
        };
        drop(state);
        if let Some((to, why)) = change {
            self.publish(name, to, why.as_deref());
        }
    }

    /// See `Layered<Breaker>::probe_failed`; `name` is the endpoint's.
    fn probe_failed(&self, name: &str, error: &EndpointError) {
        if !self.config.enabled {
            return;
        }
        let reason = format!("probe failed: {}", redact(&error.message));
        let mut state = self.lock();
        let change = self.open(&mut state, Instant::now(), reason);
        drop(state);
        match change {
            Some(why) => self.publish(name, BreakerState::Open, Some(&why)),
            None => {
                let retry_at = now_secs() + self.config.open_for.as_secs_f64();
                self.registry.update(name, |h| h.retry_at = Some(retry_at));
            }
        }
    }

    /// See `Layered<Breaker>::probe_passed`; `name` is the endpoint's.
    fn probe_passed(&self, name: &str) {
        let mut state = self.lock();
        if matches!(state.phase, Phase::Open { .. }) {
            state.phase = Phase::HalfOpen { trial: false };
            drop(state);
            self.publish(name, BreakerState::HalfOpen, None);
        }
    }
}

/// The gate the endpoint's probe flips, and its state, under the endpoint's name.
impl Layered<Breaker> {
    /// The breaker's state now (an open breaker whose cooldown is over counts as half-open).
    pub fn state(&self) -> BreakerState {
        self.layer().state()
    }

    /// A probe failed: the endpoint is unwell, open the circuit (an open one stays open for
    /// another `open_for` from now).
    pub fn probe_failed(&self, error: &EndpointError) {
        self.layer().probe_failed(self.inner().name(), error);
    }

    /// A probe passed: an open circuit becomes half-open (the next call is the trial).
    pub fn probe_passed(&self) {
        self.layer().probe_passed(self.inner().name());
    }
}

#[async_trait]
impl Layer for Breaker {
    /// Unusable while open (the cooldown not over yet); half-open is usable (for its trial).
    fn usable(&self, inner: &dyn Endpoint) -> Result<(), EndpointError> {
        inner.usable()?;
        let now = Instant::now();
        let state = self.lock();
        match state.phase {
            Phase::Open { until } if self.config.enabled && now < until => {
                Err(self.open_error(inner.name(), &state, now))
            }
            _ => Ok(()),
        }
    }

    async fn call(
        &self,
        inner: &dyn Endpoint,
        request: &EndpointRequest,
    ) -> Result<EndpointReply, EndpointError> {
        let name = inner.name();
        let gate = self.gate(name)?;
        let mut guard = TrialGuard {
            breaker: self,
            armed: gate == Gate::Trial,
        };
        let result = inner.call(request).await;
        guard.armed = false;
        self.record(name, gate, &result);
        result
    }
}
