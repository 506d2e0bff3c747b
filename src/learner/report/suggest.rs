//! The suggestions: changes the figures of one topic support, each with its figures. Only
//! endpoints with [`MIN_SAMPLES`] recent calls count, so three calls never suggest anything.

use std::collections::BTreeMap;

use super::format::{cost, duration, millis, pct};
use super::{EndpointRow, Suggestion, SuggestionKind, TopicReport};
use crate::learner::Learner;

/// Decayed calls an endpoint needs on a topic before a suggestion uses its figures.
pub const MIN_SAMPLES: f64 = 20.0;
/// Quality (valid answers per call) within this much counts as equal.
pub const EQUAL_QUALITY: f64 = 0.02;
/// An endpoint is suggested as cheaper when it costs at most 1/this of the incumbent…
pub const CHEAPER_BY: f64 = 2.0;
/// …an endpoint that gets at least this share of the topic's tasks.
pub const CHEAPER_FOR_SHARE: f64 = 0.1;
/// An endpoint is reported as failing at this decayed failure rate or more.
pub const FAILING_AT: f64 = 0.2;
/// An endpoint is reported when this share of its answers or more fails validation.
pub const INVALID_AT: f64 = 0.2;
/// An endpoint is reported as slow when its p95 is this many times a peer's at equal quality…
pub const SLOWER_BY: f64 = 2.0;
/// …and at least this much slower, in ms (1 ms against 3 ms is no news).
pub const SLOWER_MIN_MS: f64 = 50.0;

fn figures(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn suggestion(
    kind: SuggestionKind,
    t: &TopicReport,
    endpoint: &str,
    message: String,
    pairs: &[(&str, f64)],
) -> Suggestion {
    Suggestion {
        kind,
        topic: t.topic.clone(),
        endpoint: endpoint.to_string(),
        message,
        figures: figures(pairs),
    }
}

fn by_value(a: f64, b: f64) -> std::cmp::Ordering {
    a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal)
}

/// Every suggestion the topic's figures support.
pub(super) fn suggest(t: &TopicReport, learner: &Learner) -> Vec<Suggestion> {
    // Endpoints the config still lists, with enough recent calls to judge.
    let enough: Vec<&EndpointRow> = t
        .endpoints
        .iter()
        .filter(|r| r.listed && r.figures.enough())
        .collect();
    // Decayed rates look back about two half-lives.
    let window = learner.half_life_of(&t.topic).as_secs_f64() * 2.0;
    let mut out = Vec::new();
    for r in &enough {
        out.extend(failing(t, r, window));
        out.extend(invalid(t, r));
    }
    out.extend(cheaper(t, &enough));
    for r in &enough {
        out.extend(slower(t, r, &enough));
    }
    out.extend(never_chosen(t));
    out
}

/// It fails [`FAILING_AT`] of its calls or more.
fn failing(t: &TopicReport, r: &EndpointRow, window: f64) -> Option<Suggestion> {
    let f = &r.figures;
    let failed = 1.0 - f.success_rate?;
    if failed < FAILING_AT {
        return None;
    }
    let span = (f.last_seen - f.first_seen).clamp(0.0, window);
    let message = format!(
        "`{}` has failed {} of calls on `{}` for {} ({} calls; rate decayed, recent calls weigh more)",
        r.endpoint,
        pct(failed),
        t.topic,
        duration(span),
        f.calls
    );
    let pairs = [
        ("failure_rate", failed),
        ("calls", f.calls as f64),
        ("for_seconds", span),
    ];
    Some(suggestion(
        SuggestionKind::Failing,
        t,
        &r.endpoint,
        message,
        &pairs,
    ))
}

/// [`INVALID_AT`] of its answers or more fail validation.
fn invalid(t: &TopicReport, r: &EndpointRow) -> Option<Suggestion> {
    let f = &r.figures;
    let rejected = 1.0 - f.pass_rate?;
    if rejected < INVALID_AT || (f.answered as f64) < MIN_SAMPLES {
        return None;
    }
    let message = format!(
        "{} of `{}`'s answers on `{}` fail validation ({} answers)",
        pct(rejected),
        r.endpoint,
        t.topic,
        f.answered
    );
    let pairs = [("invalid_rate", rejected), ("answers", f.answered as f64)];
    Some(suggestion(
        SuggestionKind::Invalid,
        t,
        &r.endpoint,
        message,
        &pairs,
    ))
}

/// For each endpoint that gets [`CHEAPER_FOR_SHARE`] of the topic's tasks or more, the cheapest
/// other endpoint of equal quality that costs at most 1/[`CHEAPER_BY`] as much.
fn cheaper(t: &TopicReport, enough: &[&EndpointRow]) -> Vec<Suggestion> {
    let mut out = Vec::new();
    for inc in enough {
        let (Some(share), Some(q_inc), Some(c_inc)) = (
            inc.routing_share,
            inc.figures.quality,
            inc.figures.mean_cost,
        ) else {
            continue;
        };
        if share < CHEAPER_FOR_SHARE || c_inc <= 0.0 {
            continue;
        }
        let Some((r, q, c)) = enough
            .iter()
            .filter(|r| r.endpoint != inc.endpoint)
            .filter_map(|r| Some((r, r.figures.quality?, r.figures.mean_cost?)))
            .filter(|(_, q, c)| *q >= q_inc - EQUAL_QUALITY && *c * CHEAPER_BY <= c_inc)
            .min_by(|a, b| by_value(a.2, b.2))
        else {
            continue;
        };
        let price = if c <= 0.0 {
            format!(
                "at no cost, where `{}` costs {} per call",
                inc.endpoint,
                cost(c_inc)
            )
        } else {
            format!(
                "for {} of the cost of `{}` ({} vs {} per call)",
                fraction(c, c_inc),
                inc.endpoint,
                cost(c),
                cost(c_inc)
            )
        };
        let message = format!(
            "`{}` serves `{}` at equal pass rate {price}: {} vs {} of calls valid; `{}` gets {} of its tasks",
            r.endpoint,
            t.topic,
            pct(q),
            pct(q_inc),
            inc.endpoint,
            pct(share),
        );
        let pairs = [
            ("quality", q),
            ("incumbent_quality", q_inc),
            ("incumbent_routing_share", share),
            ("mean_cost", c),
            ("incumbent_mean_cost", c_inc),
        ];
        out.push(suggestion(
            SuggestionKind::Cheaper,
            t,
            &r.endpoint,
            message,
            &pairs,
        ));
    }
    out
}

/// [`SLOWER_BY`] times slower at p95 (and [`SLOWER_MIN_MS`]) than the fastest peer of equal
/// quality.
fn slower(t: &TopicReport, r: &EndpointRow, enough: &[&EndpointRow]) -> Option<Suggestion> {
    let (q, p95) = (r.figures.quality?, r.figures.latency_p95_ms?);
    let (p, pq, pp95) = enough
        .iter()
        .filter(|p| p.endpoint != r.endpoint)
        .filter_map(|p| Some((p, p.figures.quality?, p.figures.latency_p95_ms?)))
        .filter(|(_, pq, _)| *pq >= q - EQUAL_QUALITY)
        .min_by(|a, b| by_value(a.2, b.2))?;
    if p95 < pp95 * SLOWER_BY || p95 - pp95 < SLOWER_MIN_MS {
        return None;
    }
    let message = format!(
        "`{}` is {:.1}× slower at p95 than `{}` on `{}` ({} vs {}) at equal pass rate ({} vs {} of calls valid)",
        r.endpoint,
        p95 / pp95,
        p.endpoint,
        t.topic,
        millis(p95),
        millis(pp95),
        pct(q),
        pct(pq)
    );
    let pairs = [
        ("latency_p95_ms", p95),
        ("peer_latency_p95_ms", pp95),
        ("quality", q),
        ("peer_quality", pq),
    ];
    Some(suggestion(
        SuggestionKind::Slower,
        t,
        &r.endpoint,
        message,
        &pairs,
    ))
}

/// Listed, never called, while the topic had [`MIN_SAMPLES`] tasks or more to try it on.
fn never_chosen(t: &TopicReport) -> Vec<Suggestion> {
    let tasks = if t.routed > 0 {
        t.routed
    } else {
        t.endpoints.iter().map(|r| r.figures.calls).sum()
    };
    if (tasks as f64) < MIN_SAMPLES {
        return Vec::new();
    }
    t.endpoints
        .iter()
        .filter(|r| r.listed && r.figures.calls == 0 && r.figures.routed == 0)
        .map(|r| {
            let message = format!(
                "`{}` is listed for `{}` but was never chosen in {} tasks (remove it, or check the routing)",
                r.endpoint, t.topic, tasks
            );
            let pairs = [("tasks", tasks as f64)];
            suggestion(SuggestionKind::NeverChosen, t, &r.endpoint, message, &pairs)
        })
        .collect()
}

/// `part` as a fraction of `whole` (`part` > 0): `half`, `a third`, `1/20th`.
pub(super) fn fraction(part: f64, whole: f64) -> String {
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
