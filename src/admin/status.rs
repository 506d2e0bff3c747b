//! `/api/status`: one JSON document of what procos is doing, read from live structures on each
//! request (no cache: the page polls every 1.5 s, and each read is a few short locks).
//!
//! Shown: ids, names, counts, states, classes and redacted messages. Never shown: variable
//! values, configuration values other than names, secrets (a test scans every route for one).

use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use serde::Serialize;
use serde_json::{Value, json};

use super::AdminState;
use crate::config::secret::redact;
use crate::endpoints::health::{BreakerState, EndpointHealth, now_secs};
use crate::learner::report;

/// One endpoint's routing figures on one topic.
#[derive(Debug, Serialize)]
struct Route {
    topic: String,
    /// Share of the topic's tasks routed first to it.
    routing_share: Option<f64>,
    calls: u64,
    success_rate: Option<f64>,
    latency_p50_ms: Option<f64>,
    mean_cost: Option<f64>,
}

/// The page's light: `green` closed and last probe (if any) passed; `amber` half-open or a
/// failed probe; `red` open.
fn light(h: &EndpointHealth) -> &'static str {
    match h.breaker {
        BreakerState::Open => "red",
        BreakerState::HalfOpen => "amber",
        BreakerState::Closed if h.last_probe.is_some_and(|(_, passed)| !passed) => "amber",
        BreakerState::Closed => "green",
    }
}

/// The document (see the module docs).
pub fn build(state: &AdminState) -> Value {
    let now = now_secs();
    let manager = &state.manager;
    let topics = manager.topics();
    let listed: BTreeMap<String, Vec<String>> = topics
        .iter()
        .map(|t| (t.name.clone(), t.endpoints.clone()))
        .collect();
    let health = state.health.snapshot();
    let learned = report::build(&state.learner, &health, &listed, now);
    let mut routes: BTreeMap<&str, Vec<Route>> = BTreeMap::new();
    for t in &learned.topics {
        for r in &t.endpoints {
            routes.entry(r.endpoint.as_str()).or_default().push(Route {
                topic: t.topic.clone(),
                routing_share: r.routing_share,
                calls: r.figures.calls,
                success_rate: r.figures.success_rate,
                latency_p50_ms: r.figures.latency_p50_ms,
                mean_cost: r.figures.mean_cost,
            });
        }
    }
    // The generation in force: a reload's added endpoint shows, a removed one goes.
    let kinds = manager
        .endpoints()
        .unwrap_or_else(|| state.endpoints.clone());
    let endpoints: Vec<Value> = kinds
        .iter()
        .map(|(name, kind)| {
            let h = state.health.get(name);
            json!({
                "name": name,
                "kind": kind,
                "light": light(&h),
                "breaker": h.breaker.as_str(),
                "since": (h.since > 0.0).then_some(h.since),
                "retry_at": h.retry_at,
                "last_error": h.last_error.as_deref().map(redact),
                "last_probe": h.last_probe.map(|(at, passed)| json!({"at": at, "passed": passed})),
                "routes": routes.remove(name.as_str()).unwrap_or_default(),
            })
        })
        .collect();
    let (failures, series, (finished, failed)) = match state.history.lock() {
        Ok(h) => (h.failures(), h.series(now as u64), h.totals()),
        Err(_) => (
            Vec::new(),
            super::history::History::new(None).series(now as u64),
            (0, 0),
        ),
    };
    let stamp = state.stamp.borrow().clone();
    let unix = |t: std::time::SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    };
    let deployment = state
        .deployer
        .lock()
        .ok()
        .and_then(|d| d.as_ref().and_then(|d| d.last_deployment()));
    let not_ready = super::not_ready(state);
    let suggestions: Vec<Value> = learned
        .suggestions
        .iter()
        .map(|s| json!({"topic": s.topic, "endpoint": s.endpoint, "message": s.message}))
        .collect();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "worker_id": state.worker_id,
        "now": now,
        "started_at": unix(state.started_at),
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
        "ready": not_ready.is_none(),
        "not_ready_reason": not_ready,
        "config": {
            "version": stamp.version,
            "loaded_at": unix(stamp.loaded_at),
            "fingerprint": stamp.fingerprint,
        },
        "pools": manager.pools(),
        "topics": topics,
        "endpoints": endpoints,
        "tasks": {"finished": finished, "not_completed": failed},
        "recent_failures": failures,
        "history": series,
        "deployment": deployment,
        "suggestions": suggestions,
    })
}
