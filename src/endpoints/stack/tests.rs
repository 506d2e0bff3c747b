//! Tests of the layer stack, on paused time: retry (and its budget), breaker (consecutive and
//! rate), half-open trials, probes, the concurrency limit, timeouts, and the config refusals.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use serde_json::json;
use tokio::time::Instant;

use super::*;
use crate::endpoints::health::BreakerState;
use crate::endpoints::{EndpointConfig, EndpointError, EndpointReply, EndpointRequest, ErrorKind};

/// Answers calls and probes from scripts (the last answer repeats) and counts them.
#[derive(Debug)]
struct Scripted {
    replies: Mutex<Vec<Result<(), EndpointError>>>,
    probes: Mutex<Vec<Result<(), EndpointError>>>,
    calls: AtomicUsize,
    probed: AtomicUsize,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    /// How long a call takes.
    delay: Duration,
    side_effects: bool,
}

impl Scripted {
    fn new(replies: Vec<Result<(), EndpointError>>) -> Arc<Self> {
        Self::build(replies, vec![Ok(())], Duration::ZERO, false)
    }

    fn build(
        replies: Vec<Result<(), EndpointError>>,
        probes: Vec<Result<(), EndpointError>>,
        delay: Duration,
        side_effects: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            replies: Mutex::new(replies),
            probes: Mutex::new(probes),
            calls: AtomicUsize::new(0),
            probed: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
            delay,
            side_effects,
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn probed(&self) -> usize {
        self.probed.load(Ordering::SeqCst)
    }
}

fn nth<T: Clone>(list: &Mutex<Vec<T>>, n: usize) -> T {
    let list = list.lock().unwrap();
    list[n.min(list.len() - 1)].clone()
}

#[async_trait]
impl Endpoint for Scripted {
    fn name(&self) -> &str {
        "model"
    }
    fn kind(&self) -> &'static str {
        "scripted"
    }
    fn side_effects(&self) -> bool {
        self.side_effects
    }
    async fn probe(&self) -> Result<(), EndpointError> {
        let n = self.probed.fetch_add(1, Ordering::SeqCst);
        nth(&self.probes, n)
    }
    async fn call(&self, _: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        nth(&self.replies, n).map(|()| EndpointReply::new(json!("ok")))
    }
}

fn unavailable() -> Result<(), EndpointError> {
    Err(EndpointError::transient("503").code("http_503"))
}

fn retry_policy(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(4),
        max_wait: Duration::from_secs(30),
        // Room for every retry these tests make, unless a test says otherwise.
        budget: RetryBudgetConfig {
            ratio: 1000.0,
            min_per_sec: 100,
            ttl: Duration::from_secs(10),
        },
        side_effects: false,
    }
}

fn circuit(failure_threshold: u32) -> CircuitConfig {
    CircuitConfig {
        failure_threshold,
        open_for: Duration::from_secs(30),
        ..CircuitConfig::default()
    }
}

fn breaker(inner: Arc<Scripted>, config: CircuitConfig) -> (Layered<Breaker>, Arc<HealthRegistry>) {
    let registry = Arc::new(HealthRegistry::default());
    (Breaker::new(inner, config, registry.clone()), registry)
}

use crate::endpoints::health::HealthRegistry;

// ── retry ──────────────────────────────────────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_with_growing_backoff() {
    let inner = Scripted::new(vec![unavailable(), unavailable(), Ok(())]);
    let retry = Retry::new(inner.clone(), retry_policy(2));
    let started = Instant::now();
    let reply = retry.call(&EndpointRequest::default()).await.unwrap();
    assert_eq!(reply.output, json!("ok"));
    assert_eq!(inner.calls(), 3);
    // Backoffs of [0.5, 1] s then [1, 2] s.
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500) && waited <= Duration::from_secs(3),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retries_are_bounded_and_the_last_error_is_returned() {
    let inner = Scripted::new(vec![unavailable()]);
    let err = Retry::new(inner.clone(), retry_policy(2))
        .call(&EndpointRequest::default())
        .await
        .unwrap_err();
    assert_eq!(inner.calls(), 3, "one call and two retries");
    assert_eq!(err.code.as_deref(), Some("http_503"));
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_and_a_long_one_is_left_to_the_engine() {
    let limited = || {
        Err(EndpointError::transient("429")
            .code("rate_limited")
            .retry_after(Some(Duration::from_secs(7))))
    };
    let inner = Scripted::new(vec![limited(), Ok(())]);
    let started = Instant::now();
    Retry::new(inner.clone(), retry_policy(2))
        .call(&EndpointRequest::default())
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(7));

    let inner = Scripted::new(vec![limited()]);
    let mut short_wait = retry_policy(2);
    short_wait.max_wait = Duration::from_secs(5);
    let started = Instant::now();
    let err = Retry::new(inner.clone(), short_wait)
        .call(&EndpointRequest::default())
        .await
        .unwrap_err();
    assert_eq!(inner.calls(), 1);
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(err.code.as_deref(), Some("rate_limited"));
}

#[tokio::test(start_paused = true)]
async fn only_transient_errors_are_retried() {
    for error in [
        EndpointError::permanent("401"),
        EndpointError::fallback("context"),
        EndpointError::invalid_output("not json"),
        EndpointError::business("CONTENT_REFUSED", "no"),
    ] {
        let inner = Scripted::new(vec![Err(error.clone())]);
        let got = Retry::new(inner.clone(), retry_policy(3))
            .call(&EndpointRequest::default())
            .await
            .unwrap_err();
        assert_eq!(got, error);
        assert_eq!(inner.calls(), 1, "{error}");
    }
}

#[tokio::test(start_paused = true)]
async fn cancellation_ends_the_backoff() {
    let inner = Scripted::new(vec![unavailable()]);
    let retry = Retry::new(inner.clone(), retry_policy(5));
    let request = EndpointRequest::default();
    let cancel = request.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    });
    let err = retry.call(&request).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Cancelled);
    assert_eq!(inner.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_side_effecting_endpoint_is_retried_only_when_the_request_never_left() {
    let policy = RetryPolicy {
        side_effects: true,
        ..retry_policy(3)
    };
    // A 503 after the request was sent: the mail may have gone out. Never again.
    let inner = Scripted::build(vec![unavailable()], vec![Ok(())], Duration::ZERO, true);
    let err = Retry::new(inner.clone(), policy.clone())
        .call(&EndpointRequest::default())
        .await
        .unwrap_err();
    assert_eq!((inner.calls(), err.code.as_deref()), (1, Some("http_503")));

    // Connection refused before sending: nothing left, so trying again is safe.
    let refused = Err(EndpointError::transient("connection refused").code("connect"));
    let inner = Scripted::build(vec![refused, Ok(())], vec![Ok(())], Duration::ZERO, true);
    Retry::new(inner.clone(), policy)
        .call(&EndpointRequest::default())
        .await
        .unwrap();
    assert_eq!(inner.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_retry_budget_stops_a_retry_storm() {
    // An outage: every call fails. Without a budget, 100 calls × (1 + 2 retries) = 300 attempts.
    let mut policy = retry_policy(2);
    policy.backoff = Duration::from_millis(1);
    policy.max_backoff = Duration::from_millis(1);
    policy.budget = RetryBudgetConfig {
        ratio: 0.2,
        min_per_sec: 0,
        ttl: Duration::from_secs(10),
    };
    let inner = Scripted::new(vec![unavailable()]);
    let retry = Retry::new(inner.clone(), policy);
    for _ in 0..100 {
        assert!(retry.call(&EndpointRequest::default()).await.is_err());
    }
    let retries = inner.calls() - 100;
    assert!(
        (15..=25).contains(&retries),
        "retries stay near 20% of the calls: {retries}"
    );
}

// ── breaker ────────────────────────────────────────────────────────────────────────────────

#[tokio::test(start_paused = true)]
async fn the_circuit_opens_after_consecutive_failures_and_refuses_without_calling() {
    let inner = Scripted::new(vec![unavailable()]);
    let (cb, registry) = breaker(inner.clone(), circuit(3));
    let req = EndpointRequest::default();
    for _ in 0..3 {
        assert_eq!(
            cb.call(&req).await.unwrap_err().code.as_deref(),
            Some("http_503")
        );
    }
    let refused = cb.call(&req).await.unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Fallback);
    assert_eq!(refused.code.as_deref(), Some("circuit_open"));
    assert!(refused.message.contains("503"), "{refused}");
    assert_eq!(
        inner.calls(),
        3,
        "an open circuit does not call the endpoint"
    );
    assert_eq!(
        cb.usable().unwrap_err().code.as_deref(),
        Some("circuit_open")
    );
    let health = registry.get("model");
    assert_eq!(health.breaker, BreakerState::Open);
    assert!(health.since > 0.0 && health.retry_at > Some(health.since));
    let why = health.last_error.unwrap_or_default();
    assert!(
        why.contains("3 failures in a row") && why.contains("503"),
        "{why}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_count() {
    let inner = Scripted::new(vec![
        unavailable(),
        unavailable(),
        Ok(()),
        unavailable(),
        unavailable(),
        Ok(()),
    ]);
    let (cb, _) = breaker(inner.clone(), circuit(3));
    let req = EndpointRequest::default();
    for _ in 0..6 {
        let _ = cb.call(&req).await;
    }
    assert!(cb.usable().is_ok(), "never three failures in a row");
    assert_eq!(inner.calls(), 6);
}

#[tokio::test(start_paused = true)]
async fn a_failure_rate_over_the_window_opens_it_once_enough_calls_were_made() {
    // Every other call fails: never two in a row, but half of all calls.
    let script = (0..40)
        .map(|i| if i % 2 == 0 { unavailable() } else { Ok(()) })
        .collect();
    let inner = Scripted::new(script);
    let config = CircuitConfig {
        failure_rate: 0.5,
        min_calls: 10,
        window: Duration::from_secs(60),
        ..circuit(5)
    };
    let (cb, registry) = breaker(inner.clone(), config);
    let req = EndpointRequest::default();
    for _ in 0..9 {
        let _ = cb.call(&req).await;
        assert!(cb.usable().is_ok(), "fewer than min_calls prove nothing");
    }
    let _ = cb.call(&req).await; // the 10th call... succeeds: 5 of 10 failed
    let _ = cb.call(&req).await; // the 11th fails: 6 of 11
    assert_eq!(cb.state(), BreakerState::Open);
    let why = registry.get("model").last_error.unwrap_or_default();
    assert!(why.contains("of 11 calls failed within 1m"), "{why}");
}

#[tokio::test(start_paused = true)]
async fn failures_older_than_the_window_do_not_count() {
    let script = (0..40)
        .map(|i| if i % 2 == 0 { unavailable() } else { Ok(()) })
        .collect();
    let inner = Scripted::new(script);
    let config = CircuitConfig {
        failure_rate: 0.5,
        min_calls: 10,
        window: Duration::from_secs(60),
        ..circuit(5)
    };
    let (cb, _) = breaker(inner.clone(), config);
    let req = EndpointRequest::default();
    for _ in 0..20 {
        let _ = cb.call(&req).await;
        // One call every 7 s: a 60 s window holds at most 9 calls, fewer than min_calls.
        tokio::time::advance(Duration::from_secs(7)).await;
    }
    assert_eq!(cb.state(), BreakerState::Closed);
    assert_eq!(inner.calls(), 20);
}

#[tokio::test(start_paused = true)]
async fn after_the_cool_down_one_trial_call_closes_or_reopens_it() {
    let inner = Scripted::new(vec![
        unavailable(),
        unavailable(),
        unavailable(),
        unavailable(), // the first trial fails: open again
        Ok(()),        // the second trial succeeds: closed
    ]);
    let (cb, registry) = breaker(inner.clone(), circuit(3));
    let req = EndpointRequest::default();
    for _ in 0..3 {
        let _ = cb.call(&req).await;
    }
    tokio::time::advance(Duration::from_secs(31)).await;
    assert!(cb.usable().is_ok(), "half-open: usable for a trial");
    assert_eq!(cb.state(), BreakerState::HalfOpen);
    assert!(cb.call(&req).await.is_err());
    assert_eq!(inner.calls(), 4);
    assert!(cb.usable().is_err(), "the failed trial reopens it");
    assert_eq!(
        cb.call(&req).await.unwrap_err().code.as_deref(),
        Some("circuit_open")
    );
    tokio::time::advance(Duration::from_secs(31)).await;
    assert!(cb.call(&req).await.is_ok());
    assert_eq!(inner.calls(), 5);
    assert_eq!(registry.get("model").breaker, BreakerState::Closed);
    assert!(cb.call(&req).await.is_ok(), "closed again");
}

#[tokio::test(start_paused = true)]
async fn only_one_trial_call_runs_while_half_open() {
    let inner = Scripted::build(
        vec![unavailable(), Ok(())],
        vec![Ok(())],
        Duration::from_secs(5),
        false,
    );
    let (cb, _) = breaker(inner.clone(), circuit(1));
    let req = EndpointRequest::default();
    let _ = cb.call(&req).await;
    tokio::time::advance(Duration::from_secs(31)).await;
    let (trial, second) = tokio::join!(cb.call(&req), async {
        tokio::task::yield_now().await;
        cb.call(&req).await
    });
    assert!(trial.is_ok());
    assert_eq!(second.unwrap_err().code.as_deref(), Some("circuit_open"));
    assert_eq!(inner.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn answers_that_are_not_transient_and_cancellations_do_not_open_it() {
    let inner = Scripted::new(vec![
        Err(EndpointError::permanent("400").code("http_400")),
        Err(EndpointError::business("X", "no")),
        Err(EndpointError::invalid_output("not json")),
        Err(EndpointError::cancelled()),
    ]);
    let (cb, _) = breaker(
        inner.clone(),
        CircuitConfig {
            min_calls: 1,
            ..circuit(1)
        },
    );
    let req = EndpointRequest::default();
    for _ in 0..8 {
        let _ = cb.call(&req).await;
    }
    assert_eq!(inner.calls(), 8);
    assert_eq!(cb.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_switched_off_breaker_never_opens() {
    let inner = Scripted::new(vec![unavailable()]);
    let (cb, registry) = breaker(
        inner.clone(),
        CircuitConfig {
            enabled: false,
            ..circuit(1)
        },
    );
    for _ in 0..5 {
        let _ = cb.call(&EndpointRequest::default()).await;
    }
    assert_eq!(inner.calls(), 5);
    assert!(cb.usable().is_ok());
    assert_eq!(registry.get("model").breaker, BreakerState::Closed);
}

// ── the stack ──────────────────────────────────────────────────────────────────────────────

fn policy(max_retries: u32, failure_threshold: u32) -> Policy {
    Policy {
        timeout: None,
        max_concurrency: None,
        circuit: circuit(failure_threshold),
        retry: retry_policy(max_retries),
        probe: None,
    }
}

#[tokio::test(start_paused = true)]
async fn every_attempt_feeds_the_breaker_and_an_open_circuit_stops_the_retries() {
    let inner = Scripted::new(vec![unavailable()]);
    let cx = BuildContext::default();
    let stacked = apply(inner.clone(), &policy(10, 2), &cx);
    let err = stacked.call(&EndpointRequest::default()).await.unwrap_err();
    // The endpoint was called and failed: its own error is the answer (for `bpmn_errors`, the
    // task's history and the learner), not the refusal of the retry that did not happen.
    assert_eq!(err.code.as_deref(), Some("http_503"));
    assert_eq!(inner.calls(), 2, "retries stop once the circuit opens");
    let refused = stacked.call(&EndpointRequest::default()).await.unwrap_err();
    assert_eq!(
        refused.code.as_deref(),
        Some("circuit_open"),
        "no call made"
    );
    assert_eq!(inner.calls(), 2);
    assert_eq!(cx.health().get("model").breaker, BreakerState::Open);
    assert_eq!((stacked.name(), stacked.kind()), ("model", "scripted"));
}

#[tokio::test(start_paused = true)]
async fn the_concurrency_limit_bounds_attempts_in_flight() {
    let inner = Scripted::build(vec![Ok(())], vec![Ok(())], Duration::from_secs(1), false);
    let stacked = apply(
        inner.clone(),
        &Policy {
            max_concurrency: Some(2),
            ..policy(0, 5)
        },
        &BuildContext::default(),
    );
    let req = EndpointRequest::default();
    let started = Instant::now();
    let calls = (0..6).map(|_| stacked.call(&req));
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    assert_eq!(inner.most_in_flight.load(Ordering::SeqCst), 2);
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(3),
        "six calls, two at a time"
    );
}

#[tokio::test(start_paused = true)]
async fn the_timeout_bounds_each_attempt_and_counts_as_a_failure() {
    let inner = Scripted::build(vec![Ok(())], vec![Ok(())], Duration::from_secs(60), false);
    let cx = BuildContext::default();
    let stacked = apply(
        inner.clone(),
        &Policy {
            timeout: Some(Duration::from_secs(2)),
            ..policy(1, 2)
        },
        &cx,
    );
    let started = Instant::now();
    let err = stacked.call(&EndpointRequest::default()).await.unwrap_err();
    assert_eq!(err.code.as_deref(), Some("timeout"), "{err}");
    assert_eq!(inner.calls(), 2, "a call and its retry, each cut at 2 s");
    assert!(
        started.elapsed() <= Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        cx.health().get("model").breaker,
        BreakerState::Open,
        "both counted"
    );
    let why = cx.health().get("model").last_error.unwrap_or_default();
    assert!(why.contains("no answer within 2s"), "{why}");
}

/// Every kind's own time bound is the stack's timeout (plus the grace that lets the kind's more
/// precise error come first); noop and sub_pde get one from `timeout:`.
#[test]
fn every_kind_has_a_timeout_in_its_stack() {
    let grace = TIMEOUT_GRACE;
    let cases = [
        ("{type: noop, timeout: 3s}", Duration::from_secs(3)),
        (
            "{type: sub_pde, timeout: 3s, steps: [{name: x, topic: t}]}",
            Duration::from_secs(3),
        ),
        (
            "{type: http, url: 'http://x/', timeout: 3s}",
            Duration::from_secs(3) + grace,
        ),
        (
            "{type: python, max_execution_time: 3s}",
            Duration::from_secs(3) + grace,
        ),
        (
            "{type: openai, model: m, timeout: 3s}",
            Duration::from_secs(3) + grace,
        ),
        (
            "{type: ollama, model: m, timeout: 3s}",
            Duration::from_secs(3) + grace,
        ),
        (
            "{type: email, host: h, from: a@x.org, timeout: 3s}",
            Duration::from_secs(3) + grace,
        ),
    ];
    let mut kinds = std::collections::BTreeSet::new();
    for (yaml, expected) in cases {
        let config: EndpointConfig = serde_yaml::from_str(yaml).expect(yaml);
        kinds.insert(config.kind());
        assert_eq!(config.policy().timeout, Some(expected), "{yaml}");
    }
    assert_eq!(kinds.len(), 7, "every kind: {kinds:?}");
}

#[tokio::test(start_paused = true)]
async fn a_slow_noop_is_cut_by_its_timeout() {
    let config: EndpointConfig =
        serde_yaml::from_str("{type: noop, delay: 60s, timeout: 2s}").unwrap();
    let ep = config.build("slow", &BuildContext::default()).unwrap();
    let started = Instant::now();
    let err = ep.call(&EndpointRequest::default()).await.unwrap_err();
    assert_eq!(err.code.as_deref(), Some("timeout"));
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

/// Remote kinds retry as before (AI: 2 by default); side-effecting kinds default to none.
#[test]
fn retry_defaults_per_kind() {
    for (yaml, retries) in [
        ("{type: openai, model: m}", 2),
        ("{type: ollama, model: m}", 2),
        ("{type: http, url: 'http://x/'}", 0),
        ("{type: python}", 0),
        ("{type: email, host: h, from: a@x.org}", 0),
        ("{type: noop}", 0),
        ("{type: sub_pde, steps: [{name: x, topic: t}]}", 0),
    ] {
        let config: EndpointConfig = serde_yaml::from_str(yaml).expect(yaml);
        assert_eq!(config.policy().retry.max_retries, retries, "{yaml}");
        assert!(
            config.policy().circuit.enabled,
            "{yaml}: breaker on by default"
        );
    }
}

/// Probes: on by default for remote kinds, off for local ones, http only with a `health_url`.
#[test]
fn probe_defaults_per_kind() {
    for (yaml, probes) in [
        ("{type: openai, model: m}", true),
        ("{type: ollama, model: m}", true),
        ("{type: email, host: h, from: a@x.org}", true),
        ("{type: sub_pde, steps: [{name: x, topic: t}]}", true),
        ("{type: http, url: 'http://x/'}", false),
        (
            "{type: http, url: 'http://x/', health_url: 'http://x/health'}",
            true,
        ),
        ("{type: python}", false),
        ("{type: python, probe: {enabled: true, every: 1m}}", true),
        ("{type: noop}", false),
        ("{type: openai, model: m, probe: {enabled: false}}", false),
    ] {
        let config: EndpointConfig = serde_yaml::from_str(yaml).expect(yaml);
        assert_eq!(config.policy().probe.is_some(), probes, "{yaml}");
    }
}

// ── probes ─────────────────────────────────────────────────────────────────────────────────

fn every(seconds: u64) -> Policy {
    Policy {
        probe: Some(ProbeSchedule {
            every: Duration::from_secs(seconds),
            timeout: Duration::from_secs(5),
        }),
        ..policy(0, 5)
    }
}

/// Lets the probe task run until it waits again.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_probe_opens_the_breaker_and_a_passing_one_half_opens_it() {
    let down = || Err(EndpointError::transient("connection refused").code("connect"));
    let inner = Scripted::build(
        vec![Ok(())],
        vec![down(), down(), Ok(())],
        Duration::ZERO,
        false,
    );
    let cx = BuildContext::default();
    let stacked = apply(inner.clone(), &every(30), &cx);
    settle().await;
    assert_eq!(inner.probed(), 1, "the first probe runs at once");
    let health = cx.health().get("model");
    assert_eq!(health.breaker, BreakerState::Open);
    assert_eq!(health.last_probe.map(|(_, passed)| passed), Some(false));
    assert!(stacked.usable().is_err(), "tasks route around it");
    assert_eq!(
        stacked
            .call(&EndpointRequest::default())
            .await
            .unwrap_err()
            .code
            .as_deref(),
        Some("circuit_open")
    );
    assert_eq!(inner.calls(), 0);

    // The second probe fails too: it stays open past the first cooldown.
    tokio::time::advance(Duration::from_secs(30)).await;
    settle().await;
    assert_eq!(inner.probed(), 2);
    tokio::time::advance(Duration::from_secs(15)).await;
    assert!(stacked.usable().is_err(), "a failing probe keeps it open");

    // The third passes: half-open; the next call is the trial, and closes it.
    tokio::time::advance(Duration::from_secs(15)).await;
    settle().await;
    assert_eq!(inner.probed(), 3);
    assert_eq!(cx.health().get("model").breaker, BreakerState::HalfOpen);
    assert!(stacked.usable().is_ok());
    stacked.call(&EndpointRequest::default()).await.unwrap();
    assert_eq!(cx.health().get("model").breaker, BreakerState::Closed);
    assert_eq!(
        cx.health()
            .get("model")
            .last_probe
            .map(|(_, passed)| passed),
        Some(true)
    );
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_hangs_fails_at_its_timeout_and_never_blocks_a_call() {
    #[derive(Debug)]
    struct Hanging;
    #[async_trait]
    impl Endpoint for Hanging {
        fn name(&self) -> &str {
            "hanging"
        }
        fn kind(&self) -> &'static str {
            "test"
        }
        async fn probe(&self) -> Result<(), EndpointError> {
            std::future::pending().await
        }
        async fn call(&self, _: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
            Ok(EndpointReply::new(json!(1)))
        }
    }
    let cx = BuildContext::default();
    let stacked = apply(Arc::new(Hanging), &every(30), &cx);
    settle().await;
    stacked.call(&EndpointRequest::default()).await.unwrap();
    tokio::time::advance(Duration::from_secs(5)).await;
    settle().await;
    let health = cx.health().get("hanging");
    assert_eq!(health.breaker, BreakerState::Open);
    assert!(
        health
            .last_error
            .unwrap_or_default()
            .contains("no answer within 5s")
    );
}

#[tokio::test(start_paused = true)]
async fn probes_stop_on_shutdown_and_the_tracker_drains() {
    let inner = Scripted::new(vec![Ok(())]);
    let cx = BuildContext::default();
    let _stacked = apply(inner.clone(), &every(30), &cx);
    settle().await;
    tokio::time::advance(Duration::from_secs(30)).await;
    settle().await;
    assert_eq!(inner.probed(), 2);
    cx.shutdown().cancel();
    cx.tracker().close();
    tokio::time::timeout(Duration::from_secs(1), cx.tracker().wait())
        .await
        .expect("the probe task ends on shutdown");
    tokio::time::advance(Duration::from_secs(300)).await;
    assert_eq!(inner.probed(), 2, "no probe after shutdown");
}

// ── config ─────────────────────────────────────────────────────────────────────────────────

/// `procos validate` refuses bad stack values at their path, for every kind.
#[test]
fn bad_stack_values_are_refused_at_their_path_for_every_kind() {
    let kinds = [
        "type: noop",
        "type: sub_pde\nsteps: [{name: x, topic: t}]",
        "type: http\nurl: 'http://x/'",
        "type: python",
        "type: openai\nmodel: m",
        "type: ollama\nmodel: m",
        "type: email\nhost: h\nfrom: a@x.org",
    ];
    for kind in kinds {
        let yaml = format!(
            "{kind}\ncircuit: {{failure_rate: 1.5, window: 0s, min_calls: 0}}\n\
             probe: {{every: 0s}}\n"
        );
        let config: EndpointConfig = serde_yaml::from_str(&yaml).expect(&yaml);
        let paths: Vec<String> = config.validate().into_iter().map(|(p, _)| p).collect();
        for expected in [
            "circuit.failure_rate",
            "circuit.window",
            "circuit.min_calls",
            "probe.every",
        ] {
            assert!(
                paths.iter().any(|p| p == expected),
                "{kind}: {expected} in {paths:?}"
            );
        }
        if !kind.contains("python") {
            let yaml = format!("{kind}\nmax_concurrency: 0\n");
            let config: EndpointConfig = serde_yaml::from_str(&yaml).expect(&yaml);
            let paths: Vec<String> = config.validate().into_iter().map(|(p, _)| p).collect();
            assert!(
                paths.contains(&"max_concurrency".to_string()),
                "{kind}: {paths:?}"
            );
        }
        for unknown in [
            "circuit: {failure_rat: 0.5}",
            "probe: {evry: 30s}",
            "retry_budgett: 1",
        ] {
            let yaml = format!("{kind}\n{unknown}\n");
            let err = serde_yaml::from_str::<EndpointConfig>(&yaml).unwrap_err();
            let key = unknown
                .split([':', '{', ' '])
                .filter(|s| !s.is_empty())
                .nth(1);
            let key = if unknown.starts_with("retry") {
                Some("retry_budgett")
            } else {
                key
            };
            assert!(
                err.to_string().contains(key.unwrap_or_default()),
                "{kind} / {unknown}: {err}"
            );
        }
    }
    let yaml = "type: http\nurl: 'http://x/'\nprobe: {enabled: true}\nhealth_url: 'ftp://x'\n";
    let config: EndpointConfig = serde_yaml::from_str(yaml).unwrap();
    let paths: Vec<String> = config.validate().into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["health_url"], "a health_url must be an http(s) URL");
    let yaml = "type: http\nurl: 'http://x/'\nprobe: {enabled: true}\n";
    let config: EndpointConfig = serde_yaml::from_str(yaml).unwrap();
    let paths: Vec<String> = config.validate().into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["probe.enabled"], "an http probe needs a health_url");
}

#[tokio::test(start_paused = true)]
async fn a_meta_pde_whose_steps_hang_is_cut_by_its_timeout() {
    #[derive(Debug)]
    struct Hangs;
    #[async_trait]
    impl crate::endpoints::SubTasks for Hangs {
        async fn run(
            &self,
            _: &str,
            _: serde_json::Map<String, serde_json::Value>,
            _: &EndpointRequest,
        ) -> Result<EndpointReply, EndpointError> {
            std::future::pending().await
        }
    }
    let config: EndpointConfig =
        serde_yaml::from_str("{type: sub_pde, timeout: 5s, steps: [{name: a, topic: t}]}").unwrap();
    let ep = config.build("meta", &BuildContext::default()).unwrap();
    let request = EndpointRequest {
        sub_tasks: Some(Arc::new(Hangs)),
        ..Default::default()
    };
    let started = Instant::now();
    let err = ep.call(&request).await.unwrap_err();
    assert_eq!(err.code.as_deref(), Some("timeout"), "{err}");
    assert_eq!(started.elapsed(), Duration::from_secs(5));
}
