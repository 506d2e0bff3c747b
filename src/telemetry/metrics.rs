//! Prometheus metrics: every metric name and label is here, so dashboards have one place to look.
//!
//! Labels are of low cardinality only (topic, endpoint, model, pool, outcome) — never a task id.
//! Recording goes through the `metrics` facade: [`install`] puts the Prometheus recorder in place
//! when the admin server starts (`admin.listen`, alias `--metrics-listen`), which serves
//! [`render`] at `/metrics`; with `admin.enabled: false` nothing is installed and every call is a
//! no-op.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `procos_tasks_total` | counter | topic, outcome |
//! | `procos_task_duration_seconds` | histogram | topic |
//! | `procos_endpoint_calls_total` | counter | endpoint, result (`ok`, `invalid`, error class) |
//! | `procos_endpoint_latency_seconds` | histogram | endpoint |
//! | `procos_llm_tokens_total` | counter | endpoint, model, direction (`input`, `output`) |
//! | `procos_llm_cost_micros_total` | counter | endpoint, model (cost × 10⁶: counters are integers) |
//! | `procos_fetches_total` | counter | result (`ok`, `error`) |
//! | `procos_fetched_tasks_total` | counter | — |
//! | `procos_pool_busy_slots` | gauge | pool |
//! | `procos_cache_lookups_total` | counter | topic, result (`hit`, `miss`) |

use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::endpoints::Usage;
use crate::pde::completion::Outcome;

const TASKS: &str = "procos_tasks_total";
const TASK_DURATION: &str = "procos_task_duration_seconds";
const ENDPOINT_CALLS: &str = "procos_endpoint_calls_total";
const ENDPOINT_LATENCY: &str = "procos_endpoint_latency_seconds";
const LLM_TOKENS: &str = "procos_llm_tokens_total";
const LLM_COST: &str = "procos_llm_cost_micros_total";
const FETCHES: &str = "procos_fetches_total";
const FETCHED_TASKS: &str = "procos_fetched_tasks_total";
const POOL_BUSY: &str = "procos_pool_busy_slots";
const CACHE_LOOKUPS: &str = "procos_cache_lookups_total";

/// The recorder's handle, once [`install`] put it in place: the admin server renders it at
/// `/metrics`. Without it, figures that cost work to gather (the learner's report) are not
/// gathered for nobody.
static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();

/// Is a Prometheus recorder collecting these metrics (the admin server is on)?
pub fn served() -> bool {
    HANDLE.get().is_some()
}

/// Installs the Prometheus recorder as the process's metrics recorder (once; later calls return
/// the same handle). The admin server ([`crate::admin`]) serves [`render`] at `/metrics`; the
/// exporter's own HTTP listener is not used, so there is one server and one port.
pub fn install() -> Result<PrometheusHandle, String> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    let handle = HANDLE.get_or_init(|| handle).clone();
    describe();
    Ok(handle)
}

/// How often [`upkeep`] folds the histograms' samples into their summaries.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Folds the samples recorded since the last scrape into their summaries every
/// [`UPKEEP_EVERY`] until `stop`. The recorder keeps each histogram sample until then: without
/// this, a procos that nobody scrapes would grow by every task's samples for as long as it runs.
pub async fn upkeep(stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(UPKEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                if let Some(handle) = HANDLE.get() {
                    handle.run_upkeep();
                }
            }
        }
    }
}

/// The metrics in Prometheus's text format; empty before [`install`].
pub fn render() -> String {
    HANDLE
        .get()
        .map(|h| {
            // Without the exporter's own listener nobody else drains histograms: do it here.
            h.run_upkeep();
            h.render()
        })
        .unwrap_or_default()
}

fn describe() {
    describe_counter!(TASKS, "External tasks finished, by topic and outcome.");
    describe_histogram!(
        TASK_DURATION,
        "Time from a task's start to its report, in seconds."
    );
    describe_counter!(ENDPOINT_CALLS, "Endpoint calls, by endpoint and result.");
    describe_histogram!(ENDPOINT_LATENCY, "Endpoint call latency in seconds.");
    describe_counter!(
        LLM_TOKENS,
        "Model tokens used, by endpoint, model and direction."
    );
    describe_counter!(
        LLM_COST,
        "Model cost in millionths of the configured currency, by endpoint and model."
    );
    describe_counter!(FETCHES, "fetchAndLock calls, by result.");
    describe_counter!(FETCHED_TASKS, "Tasks handed out by fetchAndLock.");
    describe_counter!(
        CACHE_LOOKUPS,
        "Result cache lookups, by topic and result (hit skips the endpoint)."
    );
    describe_gauge!(
        POOL_BUSY,
        "Slots of a pool running tasks or sub-tasks (slots held for the pending poll are free)."
    );
    describe_stack();
    describe_learner();
}

/// A topic's result cache was asked; `result` is `hit` or `miss`.
pub fn cache_lookup(topic: &str, result: &'static str) {
    counter!(CACHE_LOOKUPS, "topic" => topic.to_string(), "result" => result).increment(1);
}

/// A metric's handle, kept once the recorder is in place. The macros look a series up by name
/// and labels — building the labels' strings — on every call; the per-task metrics keep their
/// handles instead. Before [`install`] (or without it) nothing is kept: a handle made then would
/// record nowhere for good.
#[derive(Debug)]
struct Cached<T>(std::sync::OnceLock<T>);

impl<T> Default for Cached<T> {
    fn default() -> Self {
        Self(std::sync::OnceLock::new())
    }
}

impl<T: Clone> Cached<T> {
    fn get(&self, make: impl FnOnce() -> T) -> T {
        if let Some(handle) = self.0.get() {
            return handle.clone();
        }
        let handle = make();
        if served() {
            let _ = self.0.set(handle.clone());
        }
        handle
    }
}

/// One topic's task metrics (`procos_tasks_total`, `procos_task_duration_seconds`).
#[derive(Debug, Default)]
pub struct TopicMetrics {
    topic: String,
    outcomes: [Cached<Counter>; Outcome::COUNT],
    duration: Cached<Histogram>,
}

impl TopicMetrics {
    pub fn new(topic: &str) -> Self {
        Self {
            topic: topic.to_string(),
            ..Self::default()
        }
    }

    /// A task was reported (or given up).
    pub fn task_finished(&self, outcome: Outcome, took: Duration) {
        self.outcomes[outcome as usize]
            .get(|| counter!(TASKS, "topic" => self.topic.clone(), "outcome" => outcome.as_str()))
            .increment(1);
        self.duration
            .get(|| histogram!(TASK_DURATION, "topic" => self.topic.clone()))
            .record(took.as_secs_f64());
    }
}

/// An endpoint call ended; `result` is `ok`, `invalid` or the error's class.
pub fn endpoint_called(endpoint: &str, result: &str, took: Duration) {
    counter!(ENDPOINT_CALLS, "endpoint" => endpoint.to_string(), "result" => result.to_string())
        .increment(1);
    histogram!(ENDPOINT_LATENCY, "endpoint" => endpoint.to_string()).record(took.as_secs_f64());
}

/// A model's token usage and cost.
pub fn usage(endpoint: &str, usage: &Usage) {
    let model = usage.model.clone().unwrap_or_default();
    let labels = |direction: &'static str| {
        [
            ("endpoint", endpoint.to_string()),
            ("model", model.clone()),
            ("direction", direction.to_string()),
        ]
    };
    counter!(LLM_TOKENS, &labels("input")).increment(usage.input_tokens);
    counter!(LLM_TOKENS, &labels("output")).increment(usage.output_tokens);
    if let Some(cost) = usage.cost {
        counter!(LLM_COST, "endpoint" => endpoint.to_string(), "model" => model.clone())
            .increment((cost * 1_000_000.0).round().max(0.0) as u64);
    }
}

/// A fetchAndLock call ended.
pub fn fetched(ok: bool, tasks: usize) {
    counter!(FETCHES, "result" => if ok { "ok" } else { "error" }).increment(1);
    counter!(FETCHED_TASKS).increment(tasks as u64);
}

/// A pool's gauge (`procos_pool_busy_slots`), its handle kept: it is set as tasks start and end.
#[derive(Debug, Default)]
pub struct PoolMetrics {
    pool: String,
    busy: Cached<Gauge>,
}

impl PoolMetrics {
    pub fn new(pool: &str) -> Self {
        Self {
            pool: pool.to_string(),
            ..Self::default()
        }
    }

    /// The number of the pool's slots in use changed.
    pub fn busy(&self, busy: usize) {
        self.busy
            .get(|| gauge!(POOL_BUSY, "pool" => self.pool.clone()))
            .set(busy as f64);
    }
}

// The endpoint layer stack (endpoints/stack): attempts, retries, breakers, probes.
const ENDPOINT_ATTEMPTS: &str = "procos_endpoint_attempts_total";
const ENDPOINT_ATTEMPT_LATENCY: &str = "procos_endpoint_attempt_seconds";
const ENDPOINT_RETRIES: &str = "procos_endpoint_retries_total";
const BREAKER_STATE: &str = "procos_breaker_state";
const BREAKER_TRANSITIONS: &str = "procos_breaker_transitions_total";
const PROBES: &str = "procos_probes_total";

/// Describes the endpoint stack's metrics (called by [`describe`]).
fn describe_stack() {
    describe_counter!(
        ENDPOINT_ATTEMPTS,
        "Endpoint attempts (each retry counts), by endpoint and outcome."
    );
    describe_histogram!(
        ENDPOINT_ATTEMPT_LATENCY,
        "Endpoint attempt latency in seconds."
    );
    describe_counter!(
        ENDPOINT_RETRIES,
        "Retries by endpoint: `retried`, or `budget_spent` when the retry budget refused one."
    );
    describe_gauge!(
        BREAKER_STATE,
        "Circuit breaker state by endpoint: 0 closed, 1 half-open, 2 open."
    );
    describe_counter!(
        BREAKER_TRANSITIONS,
        "Circuit breaker state changes, by endpoint and new state."
    );
    describe_counter!(PROBES, "Endpoint probes, by endpoint and result.");
}

/// One endpoint's attempt metrics (`procos_endpoint_attempts_total`,
/// `procos_endpoint_attempt_seconds`), the hot series' handles kept.
#[derive(Debug, Default)]
pub struct AttemptMetrics {
    endpoint: String,
    ok: Cached<Counter>,
    latency: Cached<Histogram>,
}

impl AttemptMetrics {
    pub fn new(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.to_string(),
            ..Self::default()
        }
    }

    /// One attempt of an endpoint (a call's retries are attempts too) ended with `outcome` (`ok`,
    /// `transient`, `permanent`, …) after `took`.
    pub fn attempt(&self, outcome: &'static str, took: Duration) {
        let count = || counter!(ENDPOINT_ATTEMPTS, "endpoint" => self.endpoint.clone(), "outcome" => outcome);
        // Only `ok` is kept: the others are rare.
        if outcome == "ok" {
            self.ok.get(count)
        } else {
            count()
        }
        .increment(1);
        self.latency
            .get(|| histogram!(ENDPOINT_ATTEMPT_LATENCY, "endpoint" => self.endpoint.clone()))
            .record(took.as_secs_f64());
    }
}

/// The retry layer retried a call of `endpoint`.
pub fn retried(endpoint: &str) {
    counter!(ENDPOINT_RETRIES, "endpoint" => endpoint.to_string(), "result" => "retried")
        .increment(1);
}

/// The retry budget of `endpoint` refused a retry.
pub fn retry_refused(endpoint: &str) {
    counter!(ENDPOINT_RETRIES, "endpoint" => endpoint.to_string(), "result" => "budget_spent")
        .increment(1);
}

/// The circuit breaker of `endpoint` changed state: the gauge is 0 closed, 1 half-open, 2 open.
pub fn breaker_state(endpoint: &str, state: crate::endpoints::health::BreakerState) {
    use crate::endpoints::health::BreakerState;
    let value = match state {
        BreakerState::Closed => 0.0,
        BreakerState::HalfOpen => 1.0,
        BreakerState::Open => 2.0,
    };
    gauge!(BREAKER_STATE, "endpoint" => endpoint.to_string()).set(value);
    counter!(BREAKER_TRANSITIONS, "endpoint" => endpoint.to_string(), "state" => state.as_str())
        .increment(1);
}

/// A probe of `endpoint` passed or failed.
pub fn probed(endpoint: &str, passed: bool) {
    let result = if passed { "pass" } else { "fail" };
    counter!(PROBES, "endpoint" => endpoint.to_string(), "result" => result).increment(1);
}

// ── The learner's figures (issue 9 §6), refreshed by the learner's flusher every few seconds ──
//
// | metric | type | labels |
// |---|---|---|
// | `procos_learner_success_rate` | gauge | topic, endpoint (decayed share of calls that answered) |
// | `procos_learner_pass_rate` | gauge | topic, endpoint (decayed share of answers that passed) |
// | `procos_learner_latency_p50_seconds` | gauge | topic, endpoint |
// | `procos_learner_latency_p95_seconds` | gauge | topic, endpoint |
// | `procos_learner_mean_cost` | gauge | topic, endpoint (decayed mean cost per priced call) |
// | `procos_learner_routing_share` | gauge | topic, endpoint (tasks routed to it first / the topic's) |
//
// The breaker's state is the layer stack's own gauge (set at each transition), not repeated here.

const LEARNER_SUCCESS: &str = "procos_learner_success_rate";
const LEARNER_PASS: &str = "procos_learner_pass_rate";
const LEARNER_P50: &str = "procos_learner_latency_p50_seconds";
const LEARNER_P95: &str = "procos_learner_latency_p95_seconds";
const LEARNER_COST: &str = "procos_learner_mean_cost";
const LEARNER_SHARE: &str = "procos_learner_routing_share";

/// Describes the learner's gauges (called by [`describe`]).
fn describe_learner() {
    describe_gauge!(
        LEARNER_SUCCESS,
        "Decayed share of an endpoint's calls on a topic that answered."
    );
    describe_gauge!(
        LEARNER_PASS,
        "Decayed share of an endpoint's answers on a topic that passed validation."
    );
    describe_gauge!(
        LEARNER_P50,
        "Decayed median endpoint latency on a topic, seconds."
    );
    describe_gauge!(
        LEARNER_P95,
        "Decayed p95 endpoint latency on a topic, seconds."
    );
    describe_gauge!(
        LEARNER_COST,
        "Decayed mean cost per priced call on a topic."
    );
    describe_gauge!(
        LEARNER_SHARE,
        "Share of a topic's tasks whose route put this endpoint first."
    );
}

/// Sets the learner's gauges from a report (figures not known yet are left unset).
pub fn learner_figures(report: &crate::learner::report::Report) {
    for t in &report.topics {
        for r in &t.endpoints {
            let labels = [("topic", t.topic.clone()), ("endpoint", r.endpoint.clone())];
            let f = &r.figures;
            for (name, value) in [
                (LEARNER_SUCCESS, f.success_rate),
                (LEARNER_PASS, f.pass_rate),
                (LEARNER_P50, f.latency_p50_ms.map(|ms| ms / 1000.0)),
                (LEARNER_P95, f.latency_p95_ms.map(|ms| ms / 1000.0)),
                (LEARNER_COST, f.mean_cost),
                (LEARNER_SHARE, r.routing_share),
            ] {
                if let Some(v) = value {
                    gauge!(name, &labels).set(v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_and_outcomes_are_exposed_with_low_cardinality_labels() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let topic = TopicMetrics::new("classify");
            topic.task_finished(Outcome::Completed, Duration::from_millis(120));
            topic.task_finished(Outcome::Completed, Duration::from_millis(80));
            topic.task_finished(Outcome::Incident, Duration::from_millis(80));
            endpoint_called("openai", "ok", Duration::from_millis(100));
            endpoint_called("openai", "rate_limited", Duration::from_millis(5));
            let u = Usage {
                model: Some("gpt-4o-mini".into()),
                input_tokens: 120,
                output_tokens: 30,
                cost: Some(0.0000360),
            };
            usage("openai", &u);
            fetched(true, 3);
            PoolMetrics::new("ai").busy(2);
            AttemptMetrics::new("openai").attempt("ok", Duration::from_millis(90));
        });
        let text = handle.render();
        for line in [
            r#"procos_tasks_total{topic="classify",outcome="completed"} 2"#,
            r#"procos_tasks_total{topic="classify",outcome="incident"} 1"#,
            r#"procos_task_duration_seconds_count{topic="classify"} 3"#,
            r#"procos_endpoint_attempts_total{endpoint="openai",outcome="ok"} 1"#,
            r#"procos_endpoint_calls_total{endpoint="openai",result="rate_limited"} 1"#,
            r#"procos_llm_tokens_total{endpoint="openai",model="gpt-4o-mini",direction="input"} 120"#,
            r#"procos_llm_tokens_total{endpoint="openai",model="gpt-4o-mini",direction="output"} 30"#,
            r#"procos_llm_cost_micros_total{endpoint="openai",model="gpt-4o-mini"} 36"#,
            r#"procos_fetched_tasks_total 3"#,
            r#"procos_pool_busy_slots{pool="ai"} 2"#,
        ] {
            assert!(text.contains(line), "missing {line} in:\n{text}");
        }
        assert!(!text.contains("task_id"));
    }
}
