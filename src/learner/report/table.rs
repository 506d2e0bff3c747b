//! The `procos stats` table: a heading, one block per topic (endpoints as rows, classes summed),
//! then the suggestions.

use std::fmt::Write as _;

use super::format::{cost, duration, millis, pct};
use super::{EndpointRow, Report};
use crate::endpoints::health::BreakerState;

const HEAD: [&str; 9] = [
    "endpoint",
    "calls",
    "success",
    "pass",
    "p50",
    "p95",
    "mean cost",
    "breaker",
    "share",
];

fn opt(x: Option<f64>, f: impl Fn(f64) -> String) -> String {
    x.map(f).unwrap_or_else(|| "-".into())
}

fn utc(secs: f64) -> String {
    chrono::DateTime::from_timestamp(secs as i64, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
        .unwrap_or_else(|| "-".into())
}

fn cells(r: &EndpointRow, now: f64) -> [String; 9] {
    let f = &r.figures;
    let breaker = match (r.breaker, r.breaker_since) {
        (None, _) => "-".to_string(),
        (Some(BreakerState::Closed), _) => "closed".to_string(),
        (Some(b), Some(since)) => format!("{} {}", b.as_str(), duration(now - since)),
        (Some(b), None) => b.as_str().to_string(),
    };
    let name = if r.listed {
        r.endpoint.clone()
    } else {
        format!("{} (not listed)", r.endpoint)
    };
    [
        name,
        f.calls.to_string(),
        opt(f.success_rate, pct),
        opt(f.pass_rate, pct),
        opt(f.latency_p50_ms, millis),
        opt(f.latency_p95_ms, millis),
        opt(f.mean_cost, cost),
        breaker,
        opt(r.routing_share, pct),
    ]
}

/// The report as a table for a terminal; `source` names where it was read, `now` is the
/// wall-clock time (unix seconds) the report's age is told from.
pub fn render_table(report: &Report, source: &str, now: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "procos stats: {source}");
    if report
        .topics
        .iter()
        .all(|t| t.endpoints.iter().all(|r| r.figures.calls == 0))
    {
        let _ = writeln!(
            out,
            "No statistics yet: no endpoint has been called with this state_dir."
        );
        return out;
    }
    let _ = writeln!(
        out,
        "as of the last call, {} ({} ago); rates and latencies are decayed (recent calls weigh more), calls are lifetime",
        utc(report.as_of),
        duration(now - report.as_of)
    );
    for t in &report.topics {
        let _ = writeln!(out, "\n{}  ({} tasks routed)", t.topic, t.routed);
        let rows: Vec<[String; 9]> = t.endpoints.iter().map(|r| cells(r, now)).collect();
        let mut width = HEAD.map(str::len);
        for row in &rows {
            for (w, c) in width.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |row: &[String]| {
            let mut l = String::from(" ");
            for (i, (c, w)) in row.iter().zip(width).enumerate() {
                if i == 0 {
                    let _ = write!(l, " {c:<w$}");
                } else {
                    let _ = write!(l, "  {c:>w$}");
                }
            }
            l.trim_end().to_string()
        };
        let _ = writeln!(out, "{}", line(&HEAD.map(String::from)));
        for row in &rows {
            let _ = writeln!(out, "{}", line(row));
        }
    }
    if report.suggestions.is_empty() {
        let _ = writeln!(
            out,
            "\nNo suggestions: nothing stands out, or too few calls yet (a suggestion needs {} recent calls per endpoint).",
            super::MIN_SAMPLES
        );
    } else {
        let _ = writeln!(out, "\nSuggestions");
        for s in &report.suggestions {
            let _ = writeln!(out, "  - {}", s.message);
        }
    }
    out
}
