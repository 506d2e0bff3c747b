//! What the status page draws over time, built from the feed of finished tasks
//! ([`crate::telemetry::events`]): the last failures, and per-second throughput and latency over
//! the last [`WINDOW_SECS`] seconds.
//!
//! ```text
//!  TaskEvents ──subscribe──► History::record (one short lock per task) ──► History::snapshot
//! ```

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::telemetry::events::TaskEvent;

/// Seconds of history kept for the sparklines.
pub const WINDOW_SECS: u64 = 180;

/// Failures kept (the newest first in [`History::snapshot`]).
pub const FAILURES_KEPT: usize = 50;

/// One failed task as `/api/status` shows it: ids, names, class and redacted message; never a
/// variable value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    /// The external task's id.
    pub task_id: String,
    /// Its topic.
    pub topic: String,
    /// Its process instance, when the engine said.
    pub process_instance_id: Option<String>,
    /// Its process definition key, when the engine said.
    pub process_definition_key: Option<String>,
    /// What was reported: `failed`, `incident`, `bpmn_error`, `abandoned`, `unreported`.
    pub outcome: &'static str,
    /// The endpoint that answered or was tried first.
    pub endpoint: Option<String>,
    /// The error's class (`http_503`, `timeout`, …).
    pub error_class: Option<String>,
    /// The error's one-line message, redacted.
    pub message: Option<String>,
    /// When it finished (unix seconds).
    pub at: f64,
    /// The process instance in Cockpit, when there is one and a link template.
    pub cockpit_url: Option<String>,
}

/// One second's figures.
#[derive(Debug, Clone, Copy, Default)]
struct Second {
    at: u64,
    finished: u64,
    failed: u64,
    latency_ms_sum: f64,
}

/// Per-second figures and the latest failures.
#[derive(Debug)]
pub struct History {
    seconds: VecDeque<Second>,
    failures: VecDeque<Failure>,
    finished: u64,
    failed: u64,
    cockpit: Option<String>,
}

/// The sparklines' data: one entry per second, oldest first, the last one being `end`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    /// The last second shown (unix seconds).
    pub end: u64,
    /// Tasks finished per second.
    pub throughput: Vec<u64>,
    /// Of those, tasks that did not complete.
    pub failed: Vec<u64>,
    /// Mean task time in that second, ms; `None` in a second without tasks.
    pub latency_ms: Vec<Option<f64>>,
}

/// Is `outcome` one the page lists as a failure? (`completed` and `deferred` are not.)
pub fn is_failure(outcome: &str) -> bool {
    !matches!(outcome, "completed" | "deferred")
}

fn unix(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

impl History {
    /// An empty history; `cockpit` is the link template with `{id}`.
    pub fn new(cockpit: Option<String>) -> Self {
        Self {
            seconds: VecDeque::with_capacity(WINDOW_SECS as usize + 1),
            failures: VecDeque::with_capacity(FAILURES_KEPT),
            finished: 0,
            failed: 0,
            cockpit,
        }
    }

    /// Counts one finished task.
    pub fn record(&mut self, e: &TaskEvent) {
        let at = unix(e.at);
        let second = at as u64;
        let failed = is_failure(e.outcome);
        self.finished += 1;
        if failed {
            self.failed += 1;
        }
        let index = match self.seconds.iter().rposition(|s| s.at == second) {
            Some(i) => i,
            None => {
                // Events arrive in order within a second or two; an older one out of the
                // window is counted in the totals only.
                if self.seconds.back().is_some_and(|s| s.at > second) {
                    return self.keep_failure(e, failed, at);
                }
                self.seconds.push_back(Second {
                    at: second,
                    ..Default::default()
                });
                while self
                    .seconds
                    .front()
                    .is_some_and(|s| s.at + WINDOW_SECS <= second)
                {
                    self.seconds.pop_front();
                }
                self.seconds.len() - 1
            }
        };
        let slot = &mut self.seconds[index];
        slot.finished += 1;
        slot.latency_ms_sum += e.duration.as_secs_f64() * 1000.0;
        if failed {
            slot.failed += 1;
        }
        self.keep_failure(e, failed, at);
    }

    fn keep_failure(&mut self, e: &TaskEvent, failed: bool, at: f64) {
        if !failed {
            return;
        }
        if self.failures.len() == FAILURES_KEPT {
            self.failures.pop_front();
        }
        // The feed's messages are redacted where they are published (Pipeline::finish).
        self.failures.push_back(Failure {
            task_id: e.task_id.clone(),
            topic: e.topic.clone(),
            process_instance_id: e.process_instance_id.clone(),
            process_definition_key: e.process_definition_key.clone(),
            outcome: e.outcome,
            endpoint: e.endpoint.clone(),
            error_class: e.error_class.clone(),
            message: e.error_message.clone(),
            at,
            cockpit_url: match (&self.cockpit, &e.process_instance_id) {
                (Some(t), Some(pi)) => Some(t.replace("{id}", pi)),
                _ => None,
            },
        });
    }

    /// The latest failures, newest first.
    pub fn failures(&self) -> Vec<Failure> {
        self.failures.iter().rev().cloned().collect()
    }

    /// (tasks finished, of which not completed) since start.
    pub fn totals(&self) -> (u64, u64) {
        (self.finished, self.failed)
    }

    /// The last [`WINDOW_SECS`] seconds up to `now` (unix seconds), empty seconds as zeros.
    pub fn series(&self, now: u64) -> Series {
        let start = now.saturating_sub(WINDOW_SECS - 1);
        let mut out = Series {
            end: now,
            throughput: vec![0; WINDOW_SECS as usize],
            failed: vec![0; WINDOW_SECS as usize],
            latency_ms: vec![None; WINDOW_SECS as usize],
        };
        for s in self.seconds.iter().filter(|s| s.at >= start && s.at <= now) {
            let i = (s.at - start) as usize;
            out.throughput[i] = s.finished;
            out.failed[i] = s.failed;
            out.latency_ms[i] = (s.finished > 0).then(|| s.latency_ms_sum / s.finished as f64);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, outcome: &'static str, at: u64, ms: u64) -> TaskEvent {
        TaskEvent {
            task_id: id.into(),
            topic: "t".into(),
            process_instance_id: Some(format!("pi-{id}")),
            process_definition_key: Some("p".into()),
            outcome,
            endpoint: Some("e".into()),
            error_class: (outcome != "completed").then(|| "http_503".into()),
            error_message: (outcome != "completed").then(|| "HTTP 503".into()),
            duration: Duration::from_millis(ms),
            at: UNIX_EPOCH + Duration::from_secs(at),
        }
    }

    #[test]
    fn seconds_count_tasks_and_mean_latency_and_failures_link_to_cockpit() {
        let mut h = History::new(Some("https://c/#/pi/{id}".into()));
        h.record(&event("a", "completed", 1000, 10));
        h.record(&event("b", "completed", 1000, 30));
        h.record(&event("c", "incident", 1002, 50));
        let s = h.series(1002);
        assert_eq!(s.throughput[WINDOW_SECS as usize - 3..], [2, 0, 1]);
        assert_eq!(s.failed[WINDOW_SECS as usize - 1], 1);
        assert_eq!(s.latency_ms[WINDOW_SECS as usize - 3], Some(20.0));
        assert_eq!(s.latency_ms[WINDOW_SECS as usize - 2], None);
        let f = h.failures();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].task_id, "c");
        assert_eq!(f[0].cockpit_url.as_deref(), Some("https://c/#/pi/pi-c"));
        assert_eq!(h.totals(), (3, 1));
    }

    #[test]
    fn old_seconds_leave_the_window_and_only_the_latest_failures_are_kept() {
        let mut h = History::new(None);
        for i in 0..(FAILURES_KEPT as u64 + 5) {
            h.record(&event(&i.to_string(), "failed", 1000 + i * 10, 1));
        }
        assert_eq!(h.failures().len(), FAILURES_KEPT);
        assert_eq!(h.failures()[0].task_id, (FAILURES_KEPT + 4).to_string());
        assert!(h.seconds.len() <= WINDOW_SECS as usize);
        let end = 1000 + (FAILURES_KEPT as u64 + 4) * 10;
        assert_eq!(h.series(end).throughput.iter().sum::<u64>(), 18);
    }
}
