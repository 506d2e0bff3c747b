//! Routing strategies: how the Gateway orders a task's candidate endpoints.
//!
//! ```text
//!  candidates (usable, as configured; a matching `rules:` entry narrows them)
//!     ──► Router::rank(task, candidates) ──► ordered endpoints + one-line reason
//!  every call's outcome ──► Learner (Validation) ──► Router::observe
//! ```
//!
//! One strategy per file, each a [`Router`]; the closed `routing.strategy` enum in the config
//! picks one, and [`build`] makes it once per topic (TensorZero's `VariantSampler` per experiment
//! kind). Routers that learn read the shared [`Learner`]: its figures per (topic, endpoint, task
//! class) are what `latency`, `cost` and `adaptive` rank by.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::config::file::PlanKind;
use crate::endpoints::Endpoint;
use crate::learner::{Key, Learner, Sample, Stats};

pub mod adaptive;
pub mod cost;
pub mod latency;
pub mod least_busy;
pub mod ordered;
pub mod rules;
pub mod weighted;

/// What a router may know about the task it ranks for.
#[derive(Debug, Clone, Copy)]
pub struct RouteInput<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The task's class (see [`super::profile`]).
    pub class: &'a str,
    /// What procos has seen every endpoint do.
    pub learner: &'a Learner,
    /// Calls in flight per endpoint.
    pub busy: &'a Busy,
    /// The learner's time, unix seconds.
    pub now: f64,
}

impl RouteInput<'_> {
    /// The learner's figures of `endpoint` for this task's topic and class, decayed to now.
    pub fn stats(&self, endpoint: &str) -> Option<Stats> {
        self.learner
            .get_at(&Key::new(self.topic, endpoint, self.class), self.now)
    }
}

/// `figure` (a latency, a cost) per *valid answer* of an endpoint with these statistics: divided
/// by the decayed share of calls that answered and passed validation, so that an endpoint that
/// fails fast or answers garbage cheaply does not look fast or cheap. A share of 0 counts as
/// 1/1000 (finite, so the order stays total).
pub fn per_valid_answer(stats: &Stats, figure: f64) -> f64 {
    figure / stats.valid_share().max(1e-3)
}

/// A router's answer: the candidates in the order to try them, and why.
#[derive(Debug)]
pub struct Ranked {
    /// Every candidate, once: the first is tried first, the rest are fallbacks.
    pub endpoints: Vec<Arc<dyn Endpoint>>,
    /// Why this order, in one line (logged, and written to `route_variable`).
    pub reason: String,
}

/// A routing strategy. Built once per topic; `rank` runs once per task.
pub trait Router: Send + Sync + std::fmt::Debug {
    /// The strategy's name as written in `pde.yaml`.
    fn name(&self) -> &'static str;

    /// Orders `candidates` (usable, in configured order; the Gateway never passes none, and none
    /// must rank to none, not a panic) for one task. Every candidate stays in the answer: the
    /// ones not chosen first are its fallbacks.
    fn rank(&self, task: &RouteInput<'_>, candidates: Vec<Arc<dyn Endpoint>>) -> Ranked;

    /// Learns from one call of `endpoint` (the learner has recorded it already). Default:
    /// nothing beyond the learner.
    fn observe(&self, _endpoint: &str, _class: &str, _sample: &Sample) {}
}

/// Builds the router of a topic's plan; `seed` makes random choices repeatable (benchmarks,
/// tests), `None` seeds from the OS.
pub fn build(kind: &PlanKind, seed: Option<u64>) -> Arc<dyn Router> {
    match kind {
        PlanKind::Ordered => Arc::new(ordered::Ordered::LISTED),
        PlanKind::Rules => Arc::new(ordered::Ordered::BY_RULE),
        PlanKind::Weighted(weights) => {
            Arc::new(weighted::Weighted::new(weights.clone(), rng(seed)))
        }
        PlanKind::LeastBusy => Arc::new(least_busy::LeastBusy),
        PlanKind::Latency => Arc::new(latency::Latency),
        PlanKind::Cost => Arc::new(cost::Cost),
        PlanKind::Adaptive(settings) => Arc::new(adaptive::Adaptive::new(*settings, rng(seed))),
    }
}

fn rng(seed: Option<u64>) -> Mutex<SmallRng> {
    Mutex::new(match seed {
        Some(seed) => SmallRng::seed_from_u64(seed),
        None => rand::make_rng(),
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sorts `candidates` by `key` ascending, stably (ties keep the configured order), and names
/// each with its figure for the reason: `` `b` 120 < `a` 300 < `c` ? ``.
fn sort_by_figure(
    candidates: Vec<Arc<dyn Endpoint>>,
    figure: impl Fn(&dyn Endpoint) -> Option<f64>,
    unit: &str,
) -> (Vec<Arc<dyn Endpoint>>, String) {
    let mut keyed: Vec<(f64, Option<f64>, Arc<dyn Endpoint>)> = candidates
        .into_iter()
        .map(|e| {
            let f = figure(e.as_ref());
            // Unknown first: an endpoint never measured is tried to learn its figure.
            (f.unwrap_or(f64::NEG_INFINITY), f, e)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let reason = keyed
        .iter()
        .map(|(_, f, e)| match f {
            Some(f) => format!("{} {f:.4}{unit}", e.name()),
            None => format!("{} unmeasured", e.name()),
        })
        .collect::<Vec<_>>()
        .join(" < ");
    (keyed.into_iter().map(|(_, _, e)| e).collect(), reason)
}

/// Calls in flight per endpoint name, across every topic: what `least_busy` ranks by. One per
/// daemon; Validation holds a [`BusyGuard`] for each call.
#[derive(Debug, Default)]
pub struct Busy {
    calls: Mutex<HashMap<String, usize>>,
}

impl Busy {
    /// Counts one call of `endpoint` until the guard is dropped.
    pub fn start(self: &Arc<Self>, endpoint: &str) -> BusyGuard {
        *lock(&self.calls).entry(endpoint.to_string()).or_default() += 1;
        BusyGuard {
            busy: self.clone(),
            endpoint: endpoint.to_string(),
        }
    }

    /// Calls of `endpoint` in flight now.
    pub fn in_flight(&self, endpoint: &str) -> usize {
        lock(&self.calls).get(endpoint).copied().unwrap_or(0)
    }
}

/// One call in flight; dropping it ends the count (also when the call's future is dropped).
#[derive(Debug)]
pub struct BusyGuard {
    busy: Arc<Busy>,
    endpoint: String,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if let Some(n) = lock(&self.busy.calls).get_mut(&self.endpoint) {
            *n = n.saturating_sub(1);
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Named no-op endpoints for the strategies' unit tests.
    use super::*;
    use crate::endpoints::EndpointConfig;

    /// Endpoints named `names`, as candidates in that order.
    pub fn endpoints(names: &[&str]) -> Vec<Arc<dyn Endpoint>> {
        names
            .iter()
            .map(|n| {
                let cfg: EndpointConfig = serde_yaml::from_str("type: noop").expect("noop");
                cfg.build(n, &Default::default()).expect("builds")
            })
            .collect()
    }

    /// The endpoints' names, in order.
    pub fn names(endpoints: &[Arc<dyn Endpoint>]) -> Vec<String> {
        endpoints.iter().map(|e| e.name().to_string()).collect()
    }

    /// A task of topic `t`, class `s`, at time 1000.
    pub fn input<'a>(learner: &'a Learner, busy: &'a Busy) -> RouteInput<'a> {
        RouteInput {
            topic: "t",
            class: "s",
            learner,
            busy,
            now: 1000.0,
        }
    }

    /// Records `n` calls of `endpoint` (topic `t`, class `s`) with this outcome and figures.
    pub fn seen(
        learner: &Learner,
        endpoint: &str,
        n: usize,
        outcome: crate::learner::CallOutcome,
        latency_ms: f64,
        cost: Option<f64>,
    ) {
        for _ in 0..n {
            learner.observe_at(
                &Key::new("t", endpoint, "s"),
                &Sample {
                    outcome,
                    latency_ms,
                    judge_score: None,
                    cost,
                    tokens: None,
                },
                1000.0,
            );
        }
    }
}

#[cfg(test)]
mod tests;
