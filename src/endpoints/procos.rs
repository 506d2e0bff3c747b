//! `procos`: the built-in endpoint that answers with procos's own state — endpoints' health and
//! breaker states, probe results, routing statistics per topic and endpoint, and the suggestions
//! `procos stats` prints — as task output variables. The shipped
//! `bpmn/system/health_monitor.bpmn` asks it every minute and raises an alert when `alert` is
//! true: the design's monitoring loop, running on procos itself.
//!
//! ```text
//!  HealthRegistry (breakers, probes) ─┐
//!  Learner ─ learner::report::build ──┼─► problems (unhealthy endpoints, suggestions)
//!  the config's topics → endpoints ───┘        │ compared with the problems already raised
//!                                              ▼
//!               {alert, summary, problems, new_problems, resolved, unhealthy, endpoints,
//!                topics, suggestions, notify_by_email, as_of}
//! ```
//!
//! **An alert is raised once per problem.** The endpoint remembers (in memory, per daemon) the
//! problems it has already reported: `alert` is true only when a problem is new since the last
//! call — or, with `remind_after`, when it has lasted that long since it was last raised. A
//! problem that went away is listed once in `resolved` and raised again if it comes back. So a
//! broken endpoint produces one mail (or one user task), not one a minute. Each replica keeps its
//! own memory (its health is its own, too); a restart forgets it and re-raises what is still wrong.
//!
//! It reads the topics' endpoint lists when it is built (`notify_by_email`, the topics it
//! reports), so a config reload that changes them rebuilds it (`kernel::reload`); like a
//! restart, the rebuilt one raises again what is still wrong. Endpoints a reload removes leave
//! the health registry, hence its report.
//!
//! No side effects, no I/O: it reads shared in-memory state only. It never reports variable
//! values, and errors it quotes (a breaker's last error) are redacted. Its probe has nothing to
//! check: it is in process, hence always healthy.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::health::{BreakerState, EndpointHealth, HealthRegistry, now_secs};
use super::stack::{CircuitConfig, Policy, RetryPolicy};
use super::{BuildContext, Endpoint, EndpointError, EndpointReply, EndpointRequest};
use crate::learner::Learner;
use crate::learner::report::{self, Report};

/// The topic whose endpoints mail an alert, unless `email_topic` names another.
pub const DEFAULT_EMAIL_TOPIC: &str = "procos_health_alert";
/// The longest breaker error quoted, in characters.
const MAX_ERROR: usize = 300;

/// What the endpoint reports (`report:`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// Endpoints' health only; an unhealthy endpoint is a problem.
    Health,
    /// Routing statistics only; never a problem.
    Stats,
    /// `procos stats`'s suggestions only; each is a problem.
    Suggestions,
    /// Everything (the default).
    #[default]
    All,
}

impl ReportKind {
    fn health(self) -> bool {
        matches!(self, ReportKind::Health | ReportKind::All)
    }
    fn stats(self) -> bool {
        matches!(self, ReportKind::Stats | ReportKind::All)
    }
    fn suggestions(self) -> bool {
        matches!(self, ReportKind::Suggestions | ReportKind::All)
    }
}

/// `type: procos`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcosConfig {
    /// Which sections to report: `health`, `stats`, `suggestions` or `all` (the default).
    #[serde(default)]
    pub report: ReportKind,
    /// The topic that mails an alert: `notify_by_email` is true when the config gives it an
    /// endpoint, so the health monitor mails instead of opening a user task.
    #[serde(default = "default_email_topic")]
    pub email_topic: String,
    /// Raise a problem that persists again this long after it was last raised; absent: once.
    #[serde(default, with = "humantime_serde")]
    pub remind_after: Option<Duration>,
}

fn default_email_topic() -> String {
    DEFAULT_EMAIL_TOPIC.to_string()
}

impl Default for ProcosConfig {
    fn default() -> Self {
        Self {
            report: ReportKind::default(),
            email_topic: default_email_topic(),
            remind_after: None,
        }
    }
}

impl ProcosConfig {
    /// How the stack wraps it: nothing to bound, retry or probe (it only reads memory).
    pub fn policy(&self) -> Policy {
        Policy {
            timeout: None,
            max_concurrency: None,
            circuit: CircuitConfig::default(),
            retry: RetryPolicy::none(),
            probe: None,
        }
    }

    /// Every problem as (path suffix, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.email_topic.trim().is_empty() {
            out.push(("email_topic".into(), "must name a topic".into()));
        }
        if self.remind_after == Some(Duration::ZERO) {
            out.push((
                "remind_after".into(),
                "must be longer than 0s (leave it out to raise each problem once)".into(),
            ));
        }
        out
    }
}

/// The endpoint: reads the daemon's health registry and learner.
#[derive(Debug)]
pub struct ProcosEndpoint {
    name: String,
    report: ReportKind,
    remind_after: Option<Duration>,
    notify_by_email: bool,
    health: Arc<HealthRegistry>,
    learner: Option<Arc<Learner>>,
    /// Each topic's endpoints, as the config lists them.
    listed: BTreeMap<String, Vec<String>>,
    /// Problems already raised: key → (when last raised, its line).
    raised: Mutex<BTreeMap<String, (Instant, String)>>,
}

impl ProcosEndpoint {
    /// Builds it over the context's health registry, learner and topics.
    pub fn with_context(name: &str, config: &ProcosConfig, cx: &BuildContext) -> Self {
        Self {
            name: name.to_string(),
            report: config.report,
            remind_after: config.remind_after,
            notify_by_email: !cx.endpoints_of(&config.email_topic).is_empty(),
            health: cx.health().clone(),
            learner: cx.learner().cloned(),
            listed: cx.topics.as_ref().clone(),
            raised: Mutex::new(BTreeMap::new()),
        }
    }

    /// The report at `now` (unix seconds): the output of one call.
    pub fn answer(&self, now: f64) -> Value {
        let mut health: BTreeMap<String, EndpointHealth> =
            self.health.snapshot().into_iter().collect();
        for name in self.listed.values().flatten() {
            health.entry(name.clone()).or_default();
        }
        let stats = self.learner.as_ref().map(|l| {
            let snapshot: Vec<_> = health.iter().map(|(n, h)| (n.clone(), h.clone())).collect();
            report::build(l, &snapshot, &self.listed, now)
        });
        // key → one line, for every current problem.
        let mut problems: BTreeMap<String, String> = BTreeMap::new();
        let mut out = Map::new();
        if self.report.health() {
            let mut unhealthy = Vec::new();
            let mut endpoints = Map::new();
            for (name, h) in &health {
                let (json, problem) = endpoint_json(name, h);
                if let Some(line) = problem {
                    unhealthy.push(name.clone());
                    problems.insert(format!("endpoint:{name}"), line);
                }
                endpoints.insert(name.clone(), json);
            }
            out.insert("unhealthy".into(), json!(unhealthy));
            out.insert("endpoints".into(), Value::Object(endpoints));
        }
        if self.report.stats() {
            out.insert("topics".into(), topics_json(stats.as_ref()));
        }
        if self.report.suggestions() {
            let mut list = Vec::new();
            for s in stats.iter().flat_map(|r| &r.suggestions) {
                let kind = serde_json::to_value(s.kind).unwrap_or(Value::Null);
                let kind_name = kind.as_str().unwrap_or("?").to_string();
                list.push(json!({"topic": s.topic, "endpoint": s.endpoint, "kind": kind, "text": s.message}));
                problems.insert(
                    format!("suggestion:{kind_name}:{}:{}", s.topic, s.endpoint),
                    format!("suggestion ({kind_name}): {}", s.message),
                );
            }
            out.insert("suggestions".into(), Value::Array(list));
        }
        let (new, resolved) = self.compare(&problems);
        let alert = !new.is_empty();
        let summary = summary(&problems, &new, &resolved);
        out.insert("alert".into(), json!(alert));
        out.insert("summary".into(), json!(summary));
        out.insert(
            "problems".into(),
            json!(problems.values().collect::<Vec<_>>()),
        );
        let new_lines: Vec<&String> = new.iter().filter_map(|k| problems.get(k)).collect();
        out.insert("new_problems".into(), json!(new_lines));
        out.insert("resolved".into(), json!(resolved));
        out.insert("notify_by_email".into(), json!(self.notify_by_email));
        out.insert("as_of".into(), json!(utc(now)));
        Value::Object(out)
    }

    /// Which of `problems` (keys) are to be raised now, and the lines of raised ones that are
    /// gone (forgotten, so that they are raised again if they come back).
    fn compare(&self, problems: &BTreeMap<String, String>) -> (Vec<String>, Vec<String>) {
        let now = Instant::now();
        let mut raised = self.raised.lock().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<String> = raised
            .keys()
            .filter(|k| !problems.contains_key(*k))
            .cloned()
            .collect();
        let resolved = gone
            .iter()
            .filter_map(|k| raised.remove(k).map(|(_, line)| line))
            .collect();
        let mut new = Vec::new();
        for (key, line) in problems {
            let due = match (raised.get(key), self.remind_after) {
                (None, _) => true,
                (Some((at, _)), Some(every)) => now.duration_since(*at) >= every,
                (Some(_), None) => false,
            };
            if due {
                raised.insert(key.clone(), (now, line.clone()));
                new.push(key.clone());
            }
        }
        (new, resolved)
    }
}

/// One endpoint's health as JSON, and the problem line when it is unhealthy: its breaker is
/// open, or its last probe failed. (Half-open is recovering: a trial call is let through.)
fn endpoint_json(name: &str, h: &EndpointHealth) -> (Value, Option<String>) {
    let last_error = h.last_error.as_deref().map(clean);
    let probe_failed = matches!(h.last_probe, Some((_, false)));
    let unhealthy = h.breaker == BreakerState::Open || probe_failed;
    let json = json!({
        "state": h.breaker.as_str(),
        "healthy": !unhealthy,
        "since": (h.since > 0.0).then(|| utc(h.since)),
        "retry_at": h.retry_at.map(utc),
        "last_error": last_error,
        "last_probe": h.last_probe.map(|(at, passed)| json!({"at": utc(at), "passed": passed})),
    });
    let problem = unhealthy.then(|| {
        let mut line = format!(
            "endpoint `{name}` is unhealthy (breaker {}",
            h.breaker.as_str()
        );
        if probe_failed {
            line.push_str(", probe failing");
        }
        line.push(')');
        if let Some(e) = &last_error {
            let _ = write!(line, ": {e}");
        }
        line
    });
    (json, problem)
}

/// The routing figures of every topic and endpoint, as `procos stats` computes them.
fn topics_json(report: Option<&Report>) -> Value {
    let mut topics = Map::new();
    for t in report.iter().flat_map(|r| &r.topics) {
        let mut endpoints = Map::new();
        for r in &t.endpoints {
            let f = &r.figures;
            endpoints.insert(
                r.endpoint.clone(),
                json!({
                    "routing_share": r.routing_share,
                    "calls": f.calls,
                    "routed": f.routed,
                    "success_rate": f.success_rate,
                    "pass_rate": f.pass_rate,
                    "quality": f.quality,
                    "latency_p50_ms": f.latency_p50_ms,
                    "latency_p95_ms": f.latency_p95_ms,
                    "mean_cost": f.mean_cost,
                    "listed": r.listed,
                }),
            );
        }
        topics.insert(
            t.topic.clone(),
            json!({"routed": t.routed, "endpoints": endpoints}),
        );
    }
    Value::Object(topics)
}

/// One short text: what is new, what still stands, what is resolved.
fn summary(problems: &BTreeMap<String, String>, new: &[String], resolved: &[String]) -> String {
    let mut text = if problems.is_empty() {
        "procos is healthy: no unhealthy endpoint, no suggestion.".to_string()
    } else if new.is_empty() {
        format!(
            "No new problem; {} already reported still standing.",
            problems.len()
        )
    } else {
        let lines: Vec<&str> = new
            .iter()
            .filter_map(|k| problems.get(k).map(String::as_str))
            .collect();
        format!(
            "{} new problem{}: {}.",
            lines.len(),
            if lines.len() == 1 { "" } else { "s" },
            lines.join("; ")
        )
    };
    if !resolved.is_empty() {
        let _ = write!(text, " Resolved: {}.", resolved.join("; "));
    }
    text
}

/// A breaker's error as quoted: redacted again (it should be already) and capped.
fn clean(error: &str) -> String {
    let redacted = crate::config::secret::redact(error);
    if redacted.chars().count() <= MAX_ERROR {
        return redacted;
    }
    let mut cut: String = redacted.chars().take(MAX_ERROR).collect();
    cut.push('…');
    cut
}

fn utc(secs: f64) -> String {
    chrono::DateTime::from_timestamp(secs as i64, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

#[async_trait]
impl Endpoint for ProcosEndpoint {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "procos"
    }

    fn side_effects(&self) -> bool {
        false
    }

    async fn call(&self, _request: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
        Ok(EndpointReply::new(self.answer(now_secs())))
    }
}

#[cfg(test)]
mod tests;
