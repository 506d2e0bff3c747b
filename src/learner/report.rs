//! What the learner knows, per topic and endpoint, and what the data suggests: `procos stats`
//! prints it (table or JSON) and the daemon exports the same figures as Prometheus gauges.
//!
//! ```text
//!  (topic, endpoint, class) stats ─decay to `as_of`─► sum the classes ─► one row per (topic, endpoint)
//!  health (breaker) ──────────────────────────────────► row.breaker         │
//!  config's listed endpoints ─────────────────────────► rows never called   ▼
//!                                                                    suggestions (enough samples only)
//! ```
//!
//! Rates are the learner's decayed ones (recent calls weigh more); counts are lifetime. A figure
//! needs [`MIN_SAMPLES`] decayed calls before a suggestion uses it, so three calls never suggest
//! anything.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Key, Learner, Stats};
use crate::endpoints::health::{BreakerState, EndpointHealth};

/// Figures of one (topic, endpoint), or one of its classes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Calls, ever.
    pub calls: u64,
    /// Calls that answered, ever.
    pub answered: u64,
    /// Answers that passed validation, ever.
    pub passed: u64,
    /// Tasks whose route put this endpoint first, ever.
    pub routed: u64,
    /// Decayed weight of calls: how much the rates below rest on.
    pub recent_calls: f64,
    /// Decayed share of calls that answered.
    pub success_rate: Option<f64>,
    /// Decayed share of answers that passed validation.
    pub pass_rate: Option<f64>,
    /// success × pass: the chance that a call yields a valid answer.
    pub quality: Option<f64>,
    /// Decayed mean judge score (0..1), when a validator judged.
    pub mean_score: Option<f64>,
    /// Decayed median latency, ms (histogram bucket bound, √2 steps).
    pub latency_p50_ms: Option<f64>,
    /// Decayed 95th percentile latency, ms.
    pub latency_p95_ms: Option<f64>,
    /// Decayed mean cost per priced call.
    pub mean_cost: Option<f64>,
    /// First call (unix seconds), 0 when never called.
    pub first_seen: f64,
    /// Last call (unix seconds), 0 when never called.
    pub last_seen: f64,
}

impl Figures {
    fn of(s: &Stats) -> Self {
        let quality = match (s.success_rate(), s.pass_rate()) {
            (Some(ok), Some(pass)) => Some(ok * pass),
            // Calls, none answered: no valid answer per call.
            (Some(_), None) => Some(0.0),
            _ => None,
        };
        Self {
            calls: s.calls,
            answered: s.answered,
            passed: s.passed,
            routed: s.routed,
            recent_calls: s.ok + s.failed,
            success_rate: s.success_rate(),
            pass_rate: s.pass_rate(),
            quality,
            mean_score: s.mean_score(),
            latency_p50_ms: s.latency_quantile_ms(0.5),
            latency_p95_ms: s.latency_quantile_ms(0.95),
            mean_cost: s.mean_cost(),
            first_seen: s.first_seen,
            // Not `updated_at`: reading decays the figures to the report's time, which moves it.
            last_seen: max_opt(s.last_ok_at, s.last_failure_at).unwrap_or(0.0),
        }
    }

    fn enough(&self) -> bool {
        self.recent_calls >= MIN_SAMPLES
    }
}

/// One endpoint of one topic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointRow {
    /// The endpoint's name.
    pub endpoint: String,
    /// Its figures, all classes summed.
    #[serde(flatten)]
    pub figures: Figures,
    /// `routed` / the topic's routed tasks; `None` before any task was routed.
    pub routing_share: Option<f64>,
    /// Its breaker at the last flush; `None` when never recorded.
    pub breaker: Option<BreakerState>,
    /// Since when the breaker is in that state (unix seconds).
    pub breaker_since: Option<f64>,
    /// Listed for the topic in the config (an unlisted row is history: the config changed).
    pub listed: bool,
    /// The same figures per task class.
    pub classes: BTreeMap<String, Figures>,
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopicReport {
    /// The topic.
    pub topic: String,
    /// Tasks routed on it, ever (the routing share's denominator).
    pub routed: u64,
    /// Its endpoints: listed ones in config order, then any others seen.
    pub endpoints: Vec<EndpointRow>,
}

/// What a suggestion is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SuggestionKind {
    /// Another endpoint gives equal quality for a fraction of the cost.
    Cheaper,
    /// The endpoint fails a large share of its calls.
    Failing,
    /// A large share of its answers fails validation.
    Invalid,
    /// Much slower at p95 than a peer at equal quality.
    Slower,
    /// Listed, but never called.
    NeverChosen,
}

/// A change the figures support, with the figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    /// What it is about.
    pub kind: SuggestionKind,
    /// The topic.
    pub topic: String,
    /// The endpoint the suggestion is about.
    pub endpoint: String,
    /// One sentence with its figures.
    pub message: String,
    /// The figures behind it, by name.
    pub figures: BTreeMap<String, f64>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The time the decayed figures are taken at (unix seconds).
    pub as_of: f64,
    /// The same, as an RFC 3339 UTC time.
    pub as_of_utc: String,
    /// Every topic with figures or listed endpoints, by name.
    pub topics: Vec<TopicReport>,
    /// What the figures suggest.
    pub suggestions: Vec<Suggestion>,
}

/// Adds `s` into `into` (both decayed to the same time): counts and decayed sums add, the
/// latency EWMA is weighted by calls.
fn merge(into: &mut Stats, s: &Stats) {
    let (a, b) = (into.calls as f64, s.calls as f64);
    if a + b > 0.0 {
        into.latency_ewma_ms = (into.latency_ewma_ms * a + s.latency_ewma_ms * b) / (a + b);
    }
    into.calls += s.calls;
    into.answered += s.answered;
    into.passed += s.passed;
    into.routed += s.routed;
    into.ok += s.ok;
    into.failed += s.failed;
    into.valid += s.valid;
    into.invalid += s.invalid;
    into.score_sum += s.score_sum;
    into.scored += s.scored;
    into.cost_sum += s.cost_sum;
    into.costed += s.costed;
    into.tokens_sum += s.tokens_sum;
    if into.latency_hist.len() < s.latency_hist.len() {
        into.latency_hist.resize(s.latency_hist.len(), 0.0);
    }
    for (x, y) in into.latency_hist.iter_mut().zip(&s.latency_hist) {
        *x += y;
    }
    into.updated_at = into.updated_at.max(s.updated_at);
    if s.first_seen > 0.0 && (into.first_seen == 0.0 || s.first_seen < into.first_seen) {
        into.first_seen = s.first_seen;
    }
    into.last_failure_at = max_opt(into.last_failure_at, s.last_failure_at);
    into.last_ok_at = max_opt(into.last_ok_at, s.last_ok_at);
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The latest observation among `stats` (unix seconds), 0 when empty: the time a report of a
/// stored learner is taken at, so that a procos stopped for a day still shows its figures.
fn last_observation(stats: &[(Key, Stats)]) -> f64 {
    stats.iter().map(|(_, s)| s.updated_at).fold(0.0, f64::max)
}

/// Builds the report of `learner` at `as_of`; `listed` is each topic's endpoints in the config.
pub fn build(
    learner: &Learner,
    health: &[(String, EndpointHealth)],
    listed: &BTreeMap<String, Vec<String>>,
    as_of: f64,
) -> Report {
    // topic → endpoint → (merged stats, class → stats), all decayed to `as_of`.
    type PerEndpoint = BTreeMap<String, (Stats, BTreeMap<String, Stats>)>;
    let mut by_topic: BTreeMap<String, PerEndpoint> = BTreeMap::new();
    for (key, mut s) in learner.snapshot() {
        // The snapshot is already a copy: decay it in place rather than fetch it again.
        s.decay(as_of, learner.half_life_of(&key.topic).as_secs_f64());
        let (merged, classes) = by_topic
            .entry(key.topic.clone())
            .or_default()
            .entry(key.endpoint.clone())
            .or_default();
        merge(merged, &s);
        classes.insert(key.class.clone(), s);
    }
    for (topic, endpoints) in listed {
        let seen = by_topic.entry(topic.clone()).or_default();
        for e in endpoints {
            seen.entry(e.clone()).or_default();
        }
    }
    let health: BTreeMap<&str, &EndpointHealth> =
        health.iter().map(|(n, h)| (n.as_str(), h)).collect();
    let mut topics = Vec::new();
    for (topic, endpoints) in by_topic {
        let routed: u64 = endpoints.values().map(|(s, _)| s.routed).sum();
        let order = listed.get(&topic).cloned().unwrap_or_default();
        let mut rows: Vec<EndpointRow> = endpoints
            .into_iter()
            .map(|(endpoint, (merged, classes))| {
                let h = health.get(endpoint.as_str());
                EndpointRow {
                    figures: Figures::of(&merged),
                    routing_share: (routed > 0).then(|| merged.routed as f64 / routed as f64),
                    breaker: h.map(|h| h.breaker),
                    breaker_since: h.map(|h| h.since).filter(|s| *s > 0.0),
                    listed: order.contains(&endpoint),
                    classes: classes
                        .iter()
                        .map(|(c, s)| (c.clone(), Figures::of(s)))
                        .collect(),
                    endpoint,
                }
            })
            .collect();
        rows.sort_by_key(|r| {
            (
                order
                    .iter()
                    .position(|e| *e == r.endpoint)
                    .unwrap_or(usize::MAX),
                r.endpoint.clone(),
            )
        });
        topics.push(TopicReport {
            topic,
            routed,
            endpoints: rows,
        });
    }
    let suggestions = topics
        .iter()
        .flat_map(|t| suggest::suggest(t, learner))
        .collect();
    Report {
        as_of,
        as_of_utc: chrono::DateTime::from_timestamp(as_of as i64, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default(),
        topics,
        suggestions,
    }
}

mod format;
mod suggest;
mod table;
#[cfg(test)]
mod tests;

pub use format::{cost, duration, millis, pct};
pub use suggest::{
    CHEAPER_BY, CHEAPER_FOR_SHARE, EQUAL_QUALITY, FAILING_AT, INVALID_AT, MIN_SAMPLES, SLOWER_BY,
    SLOWER_MIN_MS,
};
pub use table::render_table;

/// Why `procos stats` could not report.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The config has no `pde_manager.state_dir`: the learner lived in memory only.
    #[error(
        "{config}: pde_manager.state_dir is not set, so procos keeps what it learns in memory only and there is nothing to report; set it (e.g. `state_dir: /var/lib/procos`) and run procos"
    )]
    NoStateDir {
        /// The config file.
        config: std::path::PathBuf,
    },
    /// The store is missing or unreadable.
    #[error(transparent)]
    Store(#[from] crate::journal::StoreError),
    /// The replicas' shared store (`pde_manager.state`) could not be read.
    #[error(transparent)]
    Shared(#[from] super::store::postgres::SharedError),
}

/// The report of the store under `config`'s `state_dir`, read without writing to it (procos may
/// be running on it), taken at the last call it recorded, and the file it was read from (the
/// snapshot, or the store). Blocking file I/O.
pub fn from_config(
    config: &crate::config::FileConfig,
    config_path: &std::path::Path,
) -> Result<(Report, std::path::PathBuf), StatsError> {
    if let Some(url) = &config.pde_manager.state {
        return from_shared(config, url);
    }
    let dir = config
        .pde_manager
        .state_dir
        .as_ref()
        .ok_or_else(|| StatsError::NoStateDir {
            config: config_path.to_path_buf(),
        })?;
    let stored = super::store::read_state_dir(dir)?;
    let as_of = last_observation(&stored.stats);
    let learner = Learner::default();
    for (topic, c) in &config.topics {
        if let Some(half_life) = c.routing.half_life {
            learner.set_half_life(topic, half_life);
        }
    }
    learner.load(stored.stats);
    let report = build(&learner, &stored.health, &listed(config), as_of);
    Ok((report, stored.source))
}

/// replicas: the report of the shared store (every replica's rows merged), with the health of
/// this host's `state_dir` when there is one. Blocking: runs its own small runtime.
fn from_shared(
    config: &crate::config::FileConfig,
    url: &crate::config::Secret,
) -> Result<(Report, std::path::PathBuf), StatsError> {
    let learner = Learner::default();
    for (topic, c) in &config.topics {
        if let Some(half_life) = c.routing.half_life {
            learner.set_half_life(topic, half_life);
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::journal::StoreError::Write(format!("starting a runtime: {e}")))?;
    let stats = runtime.block_on(super::store::postgres::read_merged(url, &learner))?;
    let health = match &config.pde_manager.state_dir {
        Some(dir) => super::store::read_state_dir(dir)
            .map(|s| s.health)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let as_of = last_observation(&stats);
    learner.load(stats);
    let report = build(&learner, &health, &listed(config), as_of);
    let source = crate::config::secret::redact_url(url.expose());
    Ok((report, std::path::PathBuf::from(source)))
}

/// Each topic's endpoints as listed in the config.
pub fn listed(config: &crate::config::FileConfig) -> BTreeMap<String, Vec<String>> {
    config
        .topics
        .iter()
        .map(|(t, c)| (t.clone(), c.endpoints.clone()))
        .collect()
}
