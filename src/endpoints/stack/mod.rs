//! The layer stack every endpoint is built inside, whatever its kind: one concern per layer,
//! each made an [`Endpoint`] by the one [`Layered`] wrapper, stacked in one place ([`apply`],
//! called only by `EndpointConfig::build`).
//!
//! ```text
//!  call ─► Retry ─► Breaker ─► Limit ─► Observe ─► Timeout ─► the kind (http, openai, …)
//!           │         │          │         │          └ bounds ONE attempt (`timeout`)
//!           │         │          │         └ records each attempt's latency and result (metrics)
//!           │         │          └ at most `max_concurrency` attempts in flight; a retry's
//!           │         │            backoff holds no permit
//!           │         └ sees EVERY attempt (it sits inside the retry); open: refuses at once
//!           │           with a `circuit_open` fallback, which is never retried, so an open
//!           │           circuit ends the retries and the pipeline moves to the next endpoint
//!           │           (a call whose retry it refused ends with the endpoint's last failure)
//!           └ transient failures: wait (the server's retry hint, else the one backoff,
//!             `crate::backoff`), call again, at most `max_retries` times and only while the
//!             endpoint's retry budget has room (retries ≤ `retry_budget.ratio` of calls), so an
//!             outage cannot multiply the load. Side-effecting endpoints retry only errors that
//!             prove the request never left (connection refused before sending).
//!
//!  probe (background, on the BuildContext's tracker) ─► Breaker: a failing probe opens it,
//!         a passing probe moves an open breaker to half-open
//!  Breaker ─► HealthRegistry (state, since, last error) ─► Test block, stats, learner
//! ```
//!
//! Why this order: the breaker must count every attempt and stop retries at once, so it sits
//! inside the retry; a refused call must not queue for a permit, so the breaker sits outside the
//! limit; the timeout bounds the work itself, not the queue, so it sits inside the limit; and the
//! observation sits between them so that an attempt cut by the timeout is still recorded.
//!
//! Each layer is a [`Layer`] (its own state and what it does around a call) put around the
//! endpoint below it by the one [`Layered`] wrapper, which is the stack's only `Endpoint` impl:
//! name, kind and side effects are the kind's, passed up unchanged.
//!
//! Files: `layer.rs` · `timeout.rs` · `limit.rs` · `breaker.rs` · `retry.rs` · `observe.rs` · `probe.rs` ·
//! this file (the per-endpoint settings every kind shares, their checks, and [`apply`]).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{BuildContext, Endpoint};

pub mod breaker;
pub mod layer;
pub mod limit;
pub mod observe;
pub mod probe;
pub mod retry;
pub mod timeout;

pub use breaker::Breaker;
pub use layer::{Layer, Layered};
pub use limit::Limit;
pub use observe::Observe;
pub use retry::Retry;
pub use timeout::Timeout;

/// `circuit:` of any endpoint: when to stop calling an endpoint that is unwell, for a while.
///
/// Only failures that say the endpoint is unwell count (transient ones: 5xx, 429, timeouts,
/// refused connections); an answer — even a 4xx, a business error or an invalid output — says
/// it is up. Cancelled calls do not count.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitConfig {
    /// `false` switches the breaker off (the endpoint is always called).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Consecutive failures that open it.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// Share of failed calls over `window` that opens it (0 < rate ≤ 1), once `min_calls` calls
    /// were made in the window.
    #[serde(default = "default_failure_rate")]
    pub failure_rate: f64,
    /// The sliding window of `failure_rate`.
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
    /// Calls in the window before `failure_rate` is judged (few calls prove nothing).
    #[serde(default = "default_min_calls")]
    pub min_calls: u32,
    /// How long it stays open before one trial call is let through (half-open).
    #[serde(default = "default_open_for", with = "humantime_serde")]
    pub open_for: Duration,
}

fn yes() -> bool {
    true
}
fn default_failure_threshold() -> u32 {
    5
}
fn default_failure_rate() -> f64 {
    0.5
}
fn default_window() -> Duration {
    Duration::from_secs(60)
}
fn default_min_calls() -> u32 {
    10
}
fn default_open_for() -> Duration {
    Duration::from_secs(30)
}

impl Default for CircuitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            failure_threshold: default_failure_threshold(),
            failure_rate: default_failure_rate(),
            window: default_window(),
            min_calls: default_min_calls(),
            open_for: default_open_for(),
        }
    }
}

impl CircuitConfig {
    /// Problems, as (path suffix, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut problem = |key: &str, message: &str| {
            out.push((format!("circuit.{key}"), message.to_string()));
        };
        if self.failure_threshold == 0 {
            problem("failure_threshold", "must be at least 1");
        }
        if !(self.failure_rate > 0.0 && self.failure_rate <= 1.0) {
            problem(
                "failure_rate",
                "must be a share greater than 0 and at most 1 (e.g. 0.5)",
            );
        }
        if self.window.is_zero() {
            problem("window", "must be greater than zero");
        }
        if self.min_calls == 0 {
            problem("min_calls", "must be at least 1");
        }
        if self.open_for.is_zero() {
            problem("open_for", "must be greater than zero");
        }
        out
    }
}

/// `probe:` of any endpoint: the kind's own cheap health check, run in the background.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// On or off; absent: on for remote kinds (openai, ollama, email, http with a `health_url`,
    /// sub_pde), off for local ones (python, noop).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Time between two probes.
    #[serde(default = "default_probe_every", with = "humantime_serde")]
    pub every: Duration,
    /// Bound on one probe; a probe that takes longer failed.
    #[serde(default = "default_probe_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_probe_every() -> Duration {
    Duration::from_secs(30)
}
fn default_probe_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            every: default_probe_every(),
            timeout: default_probe_timeout(),
        }
    }
}

impl ProbeConfig {
    /// Problems, as (path suffix, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.every.is_zero() {
            out.push(("probe.every".into(), "must be greater than zero".into()));
        }
        if self.timeout.is_zero() {
            out.push(("probe.timeout".into(), "must be greater than zero".into()));
        }
        out
    }

    /// The schedule, when probes run for a kind that probes by default (`remote`) or not.
    pub fn schedule(&self, remote: bool) -> Option<ProbeSchedule> {
        self.enabled.unwrap_or(remote).then_some(ProbeSchedule {
            every: self.every,
            timeout: self.timeout,
        })
    }
}

/// When and how long a probe runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSchedule {
    /// Time between two probes.
    pub every: Duration,
    /// Bound on one probe.
    pub timeout: Duration,
}

/// `retry_budget:`: retries may add at most `ratio` of the endpoint's calls over `ttl` (plus a
/// floor of `min_per_sec`), so that in an outage retries cannot multiply the load
/// (tower's `TpsBudget`, the budget linkerd uses).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudgetConfig {
    /// Retries allowed per call made, e.g. 0.2: one retry per five calls.
    #[serde(default = "default_budget_ratio")]
    pub ratio: f64,
    /// Retries per second always allowed, so a quiet endpoint can still retry.
    #[serde(default = "default_budget_min_per_sec")]
    pub min_per_sec: u32,
    /// How long a call counts towards the budget (1s to 60s).
    #[serde(default = "default_budget_ttl", with = "humantime_serde")]
    pub ttl: Duration,
}

fn default_budget_ratio() -> f64 {
    0.2
}
fn default_budget_min_per_sec() -> u32 {
    1
}
fn default_budget_ttl() -> Duration {
    Duration::from_secs(10)
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            ratio: default_budget_ratio(),
            min_per_sec: default_budget_min_per_sec(),
            ttl: default_budget_ttl(),
        }
    }
}

impl RetryBudgetConfig {
    /// Problems, as (path suffix, message). The bounds are those of tower's `TpsBudget`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !(0.0..=1000.0).contains(&self.ratio) {
            out.push((
                "retry_budget.ratio".into(),
                "must be between 0 and 1000".into(),
            ));
        }
        if self.min_per_sec >= i32::MAX as u32 {
            out.push(("retry_budget.min_per_sec".into(), "is too large".into()));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&self.ttl) {
            out.push((
                "retry_budget.ttl".into(),
                "must be between 1s and 60s".into(),
            ));
        }
        out
    }
}

/// Default of `max_retries` on AI endpoints (the other kinds default to 0).
pub(crate) fn default_ai_max_retries() -> u32 {
    2
}

/// Default of `retry_backoff`.
pub(crate) fn default_retry_backoff() -> Duration {
    Duration::from_millis(500)
}

/// Problems of the settings every kind shares, as (path suffix, message): `timeout` (under the
/// kind's own key name) and `max_concurrency` must be positive; `circuit`, `probe` and
/// `retry_budget` must hold.
pub fn validate(
    timeout: Option<(&str, Duration)>,
    max_concurrency: Option<usize>,
    circuit: &CircuitConfig,
    probe: &ProbeConfig,
    budget: Option<&RetryBudgetConfig>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some((key, t)) = timeout
        && t.is_zero()
    {
        out.push((key.to_string(), "must be greater than zero".into()));
    }
    if max_concurrency == Some(0) {
        out.push(("max_concurrency".into(), "must be at least 1".into()));
    }
    out.extend(circuit.validate());
    out.extend(probe.validate());
    out.extend(budget.map(RetryBudgetConfig::validate).unwrap_or_default());
    out
}

/// How one endpoint is stacked: what its kind's config says, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Bound on one attempt; `None`: unbounded (the kind may bound itself).
    pub timeout: Option<Duration>,
    /// Attempts in flight at once; `None`: unbounded.
    pub max_concurrency: Option<usize>,
    /// The breaker.
    pub circuit: CircuitConfig,
    /// Retries.
    pub retry: RetryPolicy,
    /// The background probe, when it runs.
    pub probe: Option<ProbeSchedule>,
}

/// How failed attempts are retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Extra attempts after a transient failure.
    pub max_retries: u32,
    /// First backoff delay; doubles per retry, with jitter.
    pub backoff: Duration,
    /// Cap of one backoff delay.
    pub max_backoff: Duration,
    /// A server-advised wait (`Retry-After`) longer than this is not waited out in-process: the
    /// error goes to the pipeline, which falls back or lets the engine retry later.
    pub max_wait: Duration,
    /// How many retries the endpoint's calls may add.
    pub budget: RetryBudgetConfig,
    /// The endpoint changes something outside procos: only errors that prove the request never
    /// left ([`super::EndpointError::never_sent`]: class `connect`) are retried.
    pub side_effects: bool,
}

impl RetryPolicy {
    /// `max_retries` retries starting at `backoff`, with the default caps and budget.
    pub fn new(max_retries: u32, backoff: Duration, budget: &RetryBudgetConfig) -> Self {
        Self {
            max_retries,
            backoff,
            max_backoff: Duration::from_secs(10),
            max_wait: Duration::from_secs(30),
            budget: budget.clone(),
            side_effects: true,
        }
    }

    /// No retries.
    pub fn none() -> Self {
        Self::new(0, default_retry_backoff(), &RetryBudgetConfig::default())
    }
}

/// What the timeout layer adds to a kind's own time bound: the kind's bound fires first with its
/// more precise error (a killed script, the HTTP phase that ran out); the layer is the backstop
/// that holds whatever the kind does.
pub const TIMEOUT_GRACE: Duration = Duration::from_secs(1);

/// Builds the stack around `endpoint` and starts its probe on the context's tracker:
/// `Retry(Breaker(Limit(Observe(Timeout(endpoint)))))`.
pub fn apply(endpoint: Arc<dyn Endpoint>, policy: &Policy, cx: &BuildContext) -> Arc<dyn Endpoint> {
    let timed: Arc<dyn Endpoint> = match policy.timeout {
        Some(bound) => Arc::new(Timeout::new(endpoint.clone(), bound)),
        None => endpoint.clone(),
    };
    let observed: Arc<dyn Endpoint> = Arc::new(Observe::new(timed));
    let limited: Arc<dyn Endpoint> = match policy.max_concurrency {
        Some(n) => Arc::new(Limit::new(observed, n)),
        None => observed,
    };
    let breaker = Arc::new(Breaker::new(
        limited,
        policy.circuit.clone(),
        cx.health().clone(),
    ));
    if let Some(schedule) = policy.probe {
        probe::spawn(endpoint, breaker.clone(), schedule, cx);
    }
    Arc::new(Retry::new(breaker, policy.retry.clone()))
}

#[cfg(test)]
mod tests;
