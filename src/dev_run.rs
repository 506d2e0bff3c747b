//! `procos dev --start KEY --count N`: starts the instances, shows how far they got, and ends
//! with a summary a newcomer can read at a glance.
//!
//! ```text
//!  subscribe to the feed of finished tasks (before the daemon runs)
//!   └─► start N instances (retrying until KEY is deployed)
//!   └─► every POLL: engine history (finished) + incidents of those instances
//!        ├─ terminal: an indicatif progress bar on stderr
//!        └─ not a terminal: one INFO line every PLAIN_EVERY (logs and CI stay readable)
//!   └─► all N ended (completed, BPMN error or incident) or Ctrl-C
//!        └─► summary on stdout: instances by how they ended; per topic, tasks by outcome and
//!            p50/p95 task time (from the feed)
//! ```
//!
//! An instance "ended in a BPMN error" when one of its tasks was reported as a BPMN error and
//! the instance then finished; "with an incident" when it has an open incident (it stays active
//! in the engine). procos keeps running after the summary, as `procos dev` always has: stop it
//! with Ctrl-C.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use procos::camunda::{self, CamundaClient};
use procos::telemetry::events::{TaskEvent, TaskEvents};
use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// How often the engine is asked how far the instances got.
const POLL: Duration = Duration::from_millis(250);
/// How often a progress line is logged when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(2);
/// After the last instance ended, the feed may still carry its last task (the engine answers
/// the report before procos publishes it): wait until it is quiet this long.
const SETTLE: Duration = Duration::from_millis(500);

/// What `--start`, `--vars` and `--count` asked for.
#[derive(Debug, Clone)]
pub struct DevRun {
    /// The process definition key.
    pub key: String,
    /// Variables of every instance.
    pub vars: serde_json::Map<String, Value>,
    /// How many instances.
    pub count: u32,
}

/// How the started instances ended so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Instances started.
    pub started: usize,
    /// Finished without a BPMN error reported by one of their tasks.
    pub completed: usize,
    /// Finished after one of their tasks reported a BPMN error.
    pub bpmn_error: usize,
    /// With an open incident.
    pub incident: usize,
}

impl Tally {
    /// Instances that will not move any more on their own.
    pub fn ended(&self) -> usize {
        self.completed + self.bpmn_error + self.incident
    }

    /// Classifies `started` from the engine's `finished` and `incidents` instance ids and the
    /// instances whose tasks reported a BPMN error.
    fn of(
        started: &[String],
        finished: &BTreeSet<String>,
        incidents: &BTreeSet<String>,
        bpmn_errors: &BTreeSet<String>,
    ) -> Self {
        let mut tally = Self {
            started: started.len(),
            ..Self::default()
        };
        for id in started {
            if incidents.contains(id) {
                tally.incident += 1;
            } else if finished.contains(id) && bpmn_errors.contains(id) {
                tally.bpmn_error += 1;
            } else if finished.contains(id) {
                tally.completed += 1;
            }
        }
        tally
    }
}

/// One topic's tasks in the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicFigures {
    /// Tasks by outcome (`completed`, `bpmn_error`, `failed`, `incident`, …).
    pub outcomes: BTreeMap<&'static str, usize>,
    /// Task times, sorted.
    pub durations: Vec<Duration>,
}

/// Per topic, from the feed's events of the started instances.
pub fn topic_figures<'a>(
    events: impl IntoIterator<Item = &'a TaskEvent>,
) -> BTreeMap<String, TopicFigures> {
    let mut out: BTreeMap<String, TopicFigures> = BTreeMap::new();
    for e in events {
        let f = out.entry(e.topic.clone()).or_default();
        *f.outcomes.entry(e.outcome).or_default() += 1;
        f.durations.push(e.duration);
    }
    for f in out.values_mut() {
        f.durations.sort();
    }
    out
}

/// The nearest-rank percentile `p` (0–100) of sorted `durations`.
pub fn percentile(sorted: &[Duration], p: u32) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (u64::from(p) * sorted.len() as u64).div_ceil(100).max(1) as usize;
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

/// The summary as printed: the instances, then one row per topic.
pub fn render(
    key: &str,
    tally: &Tally,
    topics: &BTreeMap<String, TopicFigures>,
    took: Duration,
    interrupted: bool,
) -> String {
    let mut out = String::new();
    let ended = if interrupted {
        format!("interrupted after {:.1}s", took.as_secs_f64())
    } else {
        format!("all ended in {:.1}s", took.as_secs_f64())
    };
    out.push_str(&format!(
        "\nprocos dev: {} instances of {key} — {ended}\n",
        tally.started
    ));
    out.push_str(&format!("  completed      {:>6}\n", tally.completed));
    out.push_str(&format!("  bpmn_error     {:>6}\n", tally.bpmn_error));
    out.push_str(&format!("  incident       {:>6}\n", tally.incident));
    out.push_str(&format!(
        "  running        {:>6}\n",
        tally.started - tally.ended().min(tally.started)
    ));
    let width = topics.keys().map(String::len).max().unwrap_or(5).max(5);
    out.push_str(&format!(
        "\n  {:<width$}  {:>6}  {:>9}  {:>10}  {:>6}  {:>8}  {:>5}  {:>8}  {:>8}\n",
        "topic",
        "tasks",
        "completed",
        "bpmn_error",
        "failed",
        "incident",
        "other",
        "p50_ms",
        "p95_ms"
    ));
    for (topic, f) in topics {
        let count = |o: &str| f.outcomes.get(o).copied().unwrap_or(0);
        let known = ["completed", "bpmn_error", "failed", "incident"];
        let other: usize = f
            .outcomes
            .iter()
            .filter(|(o, _)| !known.contains(o))
            .map(|(_, n)| n)
            .sum();
        let ms =
            |p| percentile(&f.durations, p).map_or("-".to_string(), |d| d.as_millis().to_string());
        out.push_str(&format!(
            "  {:<width$}  {:>6}  {:>9}  {:>10}  {:>6}  {:>8}  {:>5}  {:>8}  {:>8}\n",
            topic,
            f.durations.len(),
            count("completed"),
            count("bpmn_error"),
            count("failed"),
            count("incident"),
            other,
            ms(50),
            ms(95),
        ));
    }
    out
}

/// Starts the instances, shows progress until all ended or `shutdown`, then prints the
/// summary. `engine_url` is the dev engine's (it carries no credentials); `events` must be
/// subscribed before the daemon runs, so no task is missed.
pub async fn run(
    client: CamundaClient,
    engine_url: String,
    run: DevRun,
    mut events: broadcast::Receiver<TaskEvent>,
    shutdown: CancellationToken,
) {
    let began = Instant::now();
    let started = tokio::select! {
        ids = start_instances(&client, &run) => ids,
        _ = shutdown.cancelled() => return,
    };
    if started.is_empty() {
        return;
    }
    let progress = Progress::new(started.len());
    let http = reqwest::Client::new();
    let base = engine_url;
    let mut seen: Vec<TaskEvent> = Vec::new();
    let mut tally;
    let mut interrupted = false;
    loop {
        drain(&mut events, &mut seen);
        tally = poll(&http, &base, &run.key, &started, &seen).await;
        progress.show(&tally);
        if tally.ended() >= started.len() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = shutdown.cancelled() => { interrupted = true; break; }
        }
    }
    // The last tasks' events follow the engine's answer by a moment.
    let quiet_since = Instant::now();
    let mut last = seen.len();
    let mut quiet = Instant::now();
    while quiet.elapsed() < SETTLE && quiet_since.elapsed() < Duration::from_secs(5) && !interrupted
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        drain(&mut events, &mut seen);
        if seen.len() != last {
            last = seen.len();
            quiet = Instant::now();
        }
    }
    tally = poll(&http, &base, &run.key, &started, &seen).await;
    progress.finish(&tally);
    let ours: BTreeSet<&String> = started.iter().collect();
    let figures = topic_figures(seen.iter().filter(|e| {
        e.process_instance_id
            .as_ref()
            .is_some_and(|p| ours.contains(p))
    }));
    println!(
        "{}",
        render(&run.key, &tally, &figures, began.elapsed(), interrupted)
    );
}

/// Moves every event waiting in the feed into `seen`.
fn drain(events: &mut broadcast::Receiver<TaskEvent>, seen: &mut Vec<TaskEvent>) {
    loop {
        match events.try_recv() {
            Ok(e) => seen.push(e),
            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "The dev summary fell behind the feed; its task counts miss some."
                );
            }
            Err(_) => return,
        }
    }
}

/// Asks the engine which of `started` finished and which have an incident.
async fn poll(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    started: &[String],
    seen: &[TaskEvent],
) -> Tally {
    let ids = |v: Value, field: &str| -> BTreeSet<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i[field].as_str().map(str::to_string))
            .collect()
    };
    let finished = get(
        http,
        &format!("{base}/history/process-instance?processDefinitionKey={key}&finished=true"),
    )
    .await;
    let incidents = get(http, &format!("{base}/incident")).await;
    let bpmn_errors: BTreeSet<String> = seen
        .iter()
        .filter(|e| e.outcome == "bpmn_error")
        .filter_map(|e| e.process_instance_id.clone())
        .collect();
    Tally::of(
        started,
        &ids(finished, "id"),
        &ids(incidents, "processInstanceId"),
        &bpmn_errors,
    )
}

async fn get(http: &reqwest::Client, url: &str) -> Value {
    match http.get(url).send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// Starts `count` instances once the definition is deployed (retrying while it is not yet);
/// returns their ids.
async fn start_instances(client: &CamundaClient, run: &DevRun) -> Vec<String> {
    let variables = camunda::variables::encode_json_map(&run.vars);
    let mut started = Vec::new();
    let mut tries = 0;
    while started.len() < run.count as usize && tries < 120 {
        match client
            .start_process(&run.key, None, variables.clone())
            .await
        {
            Ok(pi) => {
                tracing::info!(process_instance = %pi.id, key = %run.key, "Started a process instance.");
                started.push(pi.id);
            }
            Err(e) => {
                tries += 1;
                if tries == 120 {
                    tracing::error!(key = %run.key, error = %e, "Could not start process instances.");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    started
}

/// The progress display: a bar on a terminal, periodic log lines otherwise.
enum Progress {
    Bar(indicatif::ProgressBar),
    Plain {
        total: usize,
        last: std::sync::Mutex<Option<Instant>>,
    },
}

impl Progress {
    fn new(total: usize) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total as u64);
            let style = indicatif::ProgressStyle::with_template(
                "{spinner} [{bar:30}] {pos}/{len} instances ended  {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(120));
            Self::Bar(bar)
        } else {
            Self::Plain {
                total,
                last: std::sync::Mutex::new(None),
            }
        }
    }

    fn show(&self, t: &Tally) {
        match self {
            Self::Bar(bar) => {
                bar.set_position(t.ended() as u64);
                bar.set_message(format!(
                    "{} completed, {} BPMN error, {} incident",
                    t.completed, t.bpmn_error, t.incident
                ));
            }
            Self::Plain { total, last } => {
                let Ok(mut last) = last.lock() else { return };
                if last.is_some_and(|at| at.elapsed() < PLAIN_EVERY) {
                    return;
                }
                *last = Some(Instant::now());
                tracing::info!(
                    ended = t.ended(),
                    total,
                    completed = t.completed,
                    bpmn_error = t.bpmn_error,
                    incident = t.incident,
                    "Dev run progress."
                );
            }
        }
    }

    fn finish(&self, t: &Tally) {
        match self {
            Self::Bar(bar) => {
                self.show(t);
                bar.finish();
            }
            Self::Plain { total, .. } => tracing::info!(
                ended = t.ended(),
                total,
                completed = t.completed,
                bpmn_error = t.bpmn_error,
                incident = t.incident,
                "Dev run finished."
            ),
        }
    }
}

/// The events feed to subscribe before the daemon runs.
pub fn feed() -> (TaskEvents, broadcast::Receiver<TaskEvent>) {
    let events = TaskEvents::default();
    let rx = events.subscribe();
    (events, rx)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn ids(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn instances_are_classified_incident_first_then_bpmn_error() {
        let started: Vec<String> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let tally = Tally::of(
            &started,
            &ids(&["a", "b", "c"]),
            &ids(&["d", "x"]),
            &ids(&["b", "d"]),
        );
        assert_eq!(
            tally,
            Tally {
                started: 5,
                completed: 2,
                bpmn_error: 1,
                incident: 1
            },
            "a, c completed; b caught a BPMN error; d has an incident; e still runs; x is not ours"
        );
        assert_eq!(tally.ended(), 4);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let ms: Vec<Duration> = (1..=20).map(Duration::from_millis).collect();
        assert_eq!(percentile(&ms, 50), Some(Duration::from_millis(10)));
        assert_eq!(percentile(&ms, 95), Some(Duration::from_millis(19)));
        assert_eq!(percentile(&ms[..1], 95), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn the_table_has_one_row_per_topic_with_counts_by_outcome() {
        let event = |topic: &str, outcome: &'static str, ms| TaskEvent {
            task_id: "t".into(),
            topic: topic.into(),
            process_instance_id: Some("p".into()),
            process_definition_key: None,
            outcome,
            endpoint: None,
            error_class: None,
            error_message: None,
            duration: Duration::from_millis(ms),
            at: SystemTime::now(),
        };
        let events = [
            event("work", "completed", 4),
            event("work", "bpmn_error", 8),
            event("work", "incident", 2),
            event("mail", "completed", 30),
            event("mail", "abandoned", 1),
        ];
        let figures = topic_figures(&events);
        let tally = Tally {
            started: 3,
            completed: 1,
            bpmn_error: 1,
            incident: 1,
        };
        let text = render("k", &tally, &figures, Duration::from_millis(1500), false);
        let row = |topic: &str| -> Vec<String> {
            text.lines()
                .find(|l| l.split_whitespace().next() == Some(topic))
                .map(|l| l.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        assert_eq!(
            row("work"),
            ["work", "3", "1", "1", "0", "1", "0", "4", "8"]
        );
        assert_eq!(
            row("mail"),
            ["mail", "2", "1", "0", "0", "0", "1", "1", "30"]
        );
        assert_eq!(row("completed"), ["completed", "1"]);
        assert!(
            text.contains("3 instances of k — all ended in 1.5s"),
            "{text}"
        );
    }
}
