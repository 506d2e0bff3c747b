//! The shared health of every endpoint: breaker state and the last probe, written by the layer
//! stack (breaker, probes) and read by the Test block, the learner's flush and `procos stats`.
//! Reads are a short lock, never I/O. A config reload that removes an endpoint drops its entry
//! ([`HealthRegistry::forget`]).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Wall-clock seconds since the epoch: the one "now" of everything that persists or is shown
/// across restarts — the registry's `since`/`retry_at`/`last_probe`, the learner's figures and
/// `procos stats`. (Durations inside one process use tokio's `Instant`.)
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A circuit breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls pass.
    #[default]
    Closed,
    /// Calls are refused until the cooldown ends (or a probe passes).
    Open,
    /// One trial call is let through.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open`, `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// What is known about one endpoint's health.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointHealth {
    /// The breaker's state.
    pub breaker: BreakerState,
    /// Since when (unix seconds).
    pub since: f64,
    /// Why it is not closed, or the last probe failure (redacted).
    pub last_error: Option<String>,
    /// The last probe: (unix seconds, passed).
    pub last_probe: Option<(f64, bool)>,
    /// While open: when it lets a trial call through (unix seconds); a probe that keeps
    /// failing pushes it on.
    pub retry_at: Option<f64>,
}

impl EndpointHealth {
    /// Is the endpoint refused at `now` (unix seconds): open, and its cooldown not over?
    pub fn unusable_at(&self, now: f64) -> bool {
        self.breaker == BreakerState::Open && self.retry_at.is_none_or(|at| now < at)
    }
}

/// Every endpoint's health, by endpoint name. One per daemon, shared through the build context.
#[derive(Debug, Default)]
pub struct HealthRegistry {
    map: Mutex<BTreeMap<String, EndpointHealth>>,
}

impl HealthRegistry {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, EndpointHealth>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The health of `endpoint` (closed and never probed when unknown).
    pub fn get(&self, endpoint: &str) -> EndpointHealth {
        self.lock().get(endpoint).cloned().unwrap_or_default()
    }

    /// Changes the health of `endpoint`.
    pub fn update(&self, endpoint: &str, f: impl FnOnce(&mut EndpointHealth)) {
        f(self.lock().entry(endpoint.to_string()).or_default());
    }

    /// Drops `endpoint`'s entry: a config reload removed it, so nothing reports it any more
    /// (`/api/status`, the `procos` endpoint, the learner's flush). Its probes stop first.
    pub fn forget(&self, endpoint: &str) {
        self.lock().remove(endpoint);
    }

    /// Every endpoint's health, sorted by name.
    pub fn snapshot(&self) -> Vec<(String, EndpointHealth)> {
        self.lock()
            .iter()
            .map(|(n, h)| (n.clone(), h.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forgotten_endpoint_is_no_longer_listed() {
        let registry = HealthRegistry::default();
        registry.update("gone", |h| h.breaker = BreakerState::Open);
        registry.update("kept", |h| h.breaker = BreakerState::Closed);
        registry.forget("gone");
        let names: Vec<String> = registry.snapshot().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, vec!["kept".to_string()]);
        assert_eq!(
            registry.get("gone").breaker,
            BreakerState::Closed,
            "unknown again"
        );
    }
}
