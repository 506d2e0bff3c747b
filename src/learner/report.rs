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

/// Decayed calls an endpoint needs on a topic before a suggestion uses its figures.
pub const MIN_SAMPLES: f64 = 20.0;
/// Quality (valid answers per call) within this much counts as equal.
pub const EQUAL_QUALITY: f64 = 0.02;
/// An endpoint is suggested as cheaper when it costs at most 1/this of the incumbent.
pub const CHEAPER_BY: f64 = 2.0;
/// An endpoint is reported as failing at this decayed failure rate or more.
pub const FAILING_AT: f64 = 0.2;
/// An endpoint is reported when this share of its answers or more fails validation.
pub const INVALID_AT: f64 = 0.2;
/// An endpoint is reported as slow when its p95 is this many times a peer's at equal quality…
pub const SLOWER_BY: f64 = 2.0;
/// …and at least this much slower, in ms (1 ms against 3 ms is no news).
pub const SLOWER_MIN_MS: f64 = 50.0;

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
            last_seen: if s.calls > 0 { s.updated_at } else { 0.0 },
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
pub fn last_observation(stats: &[(Key, Stats)]) -> f64 {
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
    for (key, _) in learner.snapshot() {
        let Some(s) = learner.get_at(&key, as_of) else {
            continue;
        };
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
    let suggestions = topics.iter().flat_map(|t| suggest(t, learner)).collect();
    Report {
        as_of,
        topics,
        suggestions,
    }
}

fn figures(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Every suggestion the topic's figures support.
fn suggest(t: &TopicReport, learner: &Learner) -> Vec<Suggestion> {
    let mut out = Vec::new();
    let enough: Vec<&EndpointRow> = t
        .endpoints
        .iter()
        .filter(|r| r.listed && r.figures.enough())
        .collect();
    let window = learner.half_life_of(&t.topic).as_secs_f64() * 2.0;
    for r in &enough {
        let f = &r.figures;
        if let Some(ok) = f.success_rate
            && 1.0 - ok >= FAILING_AT
        {
            let span = (f.last_seen - f.first_seen).clamp(0.0, window);
            out.push(Suggestion {
                kind: SuggestionKind::Failing,
                topic: t.topic.clone(),
                endpoint: r.endpoint.clone(),
                message: format!(
                    "`{}` has failed {} of calls on `{}` for {} ({} calls; rate decayed, recent calls weigh more)",
                    r.endpoint,
                    pct(1.0 - ok),
                    t.topic,
                    duration(span),
                    f.calls
                ),
                figures: figures(&[
                    ("failure_rate", 1.0 - ok),
                    ("calls", f.calls as f64),
                    ("for_seconds", span),
                ]),
            });
        }
        if let Some(pass) = f.pass_rate
            && 1.0 - pass >= INVALID_AT
            && f.answered as f64 >= MIN_SAMPLES
        {
            out.push(Suggestion {
                kind: SuggestionKind::Invalid,
                topic: t.topic.clone(),
                endpoint: r.endpoint.clone(),
                message: format!(
                    "{} of `{}`'s answers on `{}` fail validation ({} answers)",
                    pct(1.0 - pass),
                    r.endpoint,
                    t.topic,
                    f.answered
                ),
                figures: figures(&[("invalid_rate", 1.0 - pass), ("answers", f.answered as f64)]),
            });
        }
    }
    // Cheaper at equal quality than the endpoint that gets most of the topic's tasks.
    let incumbent = enough
        .iter()
        .filter(|r| r.routing_share.is_some())
        .max_by(|a, b| {
            a.routing_share
                .partial_cmp(&b.routing_share)
                .unwrap_or(std::cmp::Ordering::Equal)
        });
    if let Some(inc) = incumbent
        && let (Some(q_inc), Some(c_inc)) = (inc.figures.quality, inc.figures.mean_cost)
        && c_inc > 0.0
    {
        let best = enough
            .iter()
            .filter(|r| r.endpoint != inc.endpoint && r.routing_share < inc.routing_share)
            .filter_map(|r| Some((r, r.figures.quality?, r.figures.mean_cost?)))
            .filter(|(_, q, c)| *q >= q_inc - EQUAL_QUALITY && *c * CHEAPER_BY <= c_inc)
            .min_by(|a, b| a.2.partial_cmp(&b.2).unwrap_or(std::cmp::Ordering::Equal));
        if let Some((r, q, c)) = best {
            out.push(Suggestion {
                kind: SuggestionKind::Cheaper,
                topic: t.topic.clone(),
                endpoint: r.endpoint.clone(),
                message: format!(
                    "`{}` serves `{}` at equal pass rate ({} vs {} for `{}`) for {} of the cost ({} vs {} per call)",
                    r.endpoint,
                    t.topic,
                    pct(q),
                    pct(q_inc),
                    inc.endpoint,
                    fraction(c, c_inc),
                    cost(c),
                    cost(c_inc)
                ),
                figures: figures(&[
                    ("quality", q),
                    ("incumbent_quality", q_inc),
                    ("mean_cost", c),
                    ("incumbent_mean_cost", c_inc),
                ]),
            });
        }
    }
    // Much slower at p95 than the fastest peer of equal quality.
    for r in &enough {
        let (Some(q), Some(p95)) = (r.figures.quality, r.figures.latency_p95_ms) else {
            continue;
        };
        let fastest = enough
            .iter()
            .filter(|p| p.endpoint != r.endpoint)
            .filter_map(|p| Some((p, p.figures.quality?, p.figures.latency_p95_ms?)))
            .filter(|(_, pq, _)| *pq >= q - EQUAL_QUALITY)
            .min_by(|a, b| a.2.partial_cmp(&b.2).unwrap_or(std::cmp::Ordering::Equal));
        if let Some((p, pq, pp95)) = fastest
            && p95 >= pp95 * SLOWER_BY
            && p95 - pp95 >= SLOWER_MIN_MS
        {
            out.push(Suggestion {
                kind: SuggestionKind::Slower,
                topic: t.topic.clone(),
                endpoint: r.endpoint.clone(),
                message: format!(
                    "`{}` is {:.1}× slower at p95 than `{}` on `{}` ({} vs {}) at equal pass rate ({} vs {})",
                    r.endpoint,
                    p95 / pp95,
                    p.endpoint,
                    t.topic,
                    millis(p95),
                    millis(pp95),
                    pct(q),
                    pct(pq)
                ),
                figures: figures(&[
                    ("latency_p95_ms", p95),
                    ("peer_latency_p95_ms", pp95),
                    ("quality", q),
                    ("peer_quality", pq),
                ]),
            });
        }
    }
    // Listed, never called, while the topic had enough tasks to try it.
    let tasks = if t.routed > 0 {
        t.routed
    } else {
        t.endpoints.iter().map(|r| r.figures.calls).sum()
    };
    if tasks as f64 >= MIN_SAMPLES {
        for r in t.endpoints.iter().filter(|r| r.listed) {
            if r.figures.calls == 0 && r.figures.routed == 0 {
                out.push(Suggestion {
                    kind: SuggestionKind::NeverChosen,
                    topic: t.topic.clone(),
                    endpoint: r.endpoint.clone(),
                    message: format!(
                        "`{}` is listed for `{}` but was never chosen in {} tasks (remove it, or check the routing)",
                        r.endpoint, t.topic, tasks
                    ),
                    figures: figures(&[("tasks", tasks as f64)]),
                });
            }
        }
    }
    out
}

/// `0.384` → `38.4%`.
pub fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// A latency: `181 ms`, `1.4 s`.
pub fn millis(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

/// A cost per call, with the digits that matter.
pub fn cost(c: f64) -> String {
    if c == 0.0 {
        "0".into()
    } else if c >= 1.0 {
        format!("{c:.2}")
    } else {
        // Four significant digits below 1.
        let digits = (-c.log10()).ceil().max(0.0) as usize + 3;
        let s = format!("{c:.digits$}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// `part` as a fraction of `whole`: `half`, `a third`, `1/20th`; `nothing` when free.
fn fraction(part: f64, whole: f64) -> String {
    if part <= 0.0 {
        return "nothing".into();
    }
    let n = (whole / part).round() as u64;
    match n {
        0..=2 => "half".into(),
        3 => "a third".into(),
        4 => "a quarter".into(),
        n => {
            let suffix = match (n % 10, n % 100) {
                (_, 11..=13) => "th",
                (1, _) => "st",
                (2, _) => "nd",
                (3, _) => "rd",
                _ => "th",
            };
            format!("1/{n}{suffix}")
        }
    }
}

/// A span for a sentence: `45 s`, `12 min`, `2 h`, `3 days`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0);
    if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 90.0 * 60.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 36.0 * 3600.0 {
        format!("{:.0} h", s / 3600.0)
    } else {
        format!("{:.0} days", s / 86400.0)
    }
}

mod table;
#[cfg(test)]
mod tests;

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
}

/// The report of the store under `config`'s `state_dir`, read without writing to it (procos may
/// be running on it), taken at the last call it recorded. Blocking file I/O.
pub fn from_config(
    config: &crate::config::FileConfig,
    config_path: &std::path::Path,
) -> Result<Report, StatsError> {
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
    learner.load(stored.stats);
    Ok(build(&learner, &stored.health, &listed(config), as_of))
}

/// Each topic's endpoints as listed in the config.
pub fn listed(config: &crate::config::FileConfig) -> BTreeMap<String, Vec<String>> {
    config
        .topics
        .iter()
        .map(|(t, c)| (t.clone(), c.endpoints.clone()))
        .collect()
}
