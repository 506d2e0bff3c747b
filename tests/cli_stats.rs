//! `procos stats`: the real binary reading a state_dir populated through the library — stopped,
//! and while another process holds the store open for writing (through the snapshot the daemon's
//! flusher writes), the store itself when there is no snapshot — and its errors.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use procos::endpoints::health::now_secs;
use procos::endpoints::health::{BreakerState, HealthRegistry};
use procos::journal::Journal;
use procos::learner::store::{Flusher, JournalStats};
use procos::learner::{CallOutcome, Key, Learner, Sample};
use serde_json::Value;

const CONFIG: &str = "camunda:
  url: http://127.0.0.1:9/engine-rest
pde_manager:
  state_dir: state
  pools:
    gp: { instances: 1, endpoints: [big, small, spare], max_concurrent_tasks: 4 }
topics:
  classify_ticket: { pool: gp, endpoints: [big, small, spare] }
endpoints:
  big: { type: noop }
  small: { type: noop }
  spare: { type: noop }
";

fn workdir(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pde.yaml"), config).expect("write config");
    dir
}

/// Runs `procos stats --config pde.yaml <args>` in `dir`: (exit code, stdout, stderr).
fn stats(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_procos"))
        .args(["stats", "--config", "pde.yaml"])
        .args(args)
        .current_dir(dir)
        .env_remove("PROCOS_CONFIG")
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn open(state: &Path) -> Journal {
    Journal::open(state, Duration::from_secs(300), "w1").expect("journal opens")
}

fn call(outcome: CallOutcome, latency_ms: f64, cost: f64) -> Sample {
    Sample {
        outcome,
        latency_ms,
        judge_score: None,
        cost: Some(cost),
        tokens: Some(200),
    }
}

/// `big`: 300 tasks, 1.4 s, 0.002 a call, breaker open; `small`: 100 tasks, 180 ms, 0.0001 a
/// call, equally good; `spare`: never called. Written through the learner's flusher, with the
/// snapshot file when `snapshot` names the state dir (as the daemon writes it).
async fn populate(journal: &Journal, snapshot: Option<&Path>) {
    let learner = Arc::new(Learner::default());
    let health = Arc::new(HealthRegistry::default());
    let t0 = now_secs() - 600.0;
    for (endpoint, n, ms, cost) in [("big", 300, 1400.0, 0.002), ("small", 100, 180.0, 0.0001)] {
        for i in 0..n {
            let class = if i % 4 == 0 { "l" } else { "s" };
            let key = Key::new("classify_ticket", endpoint, class);
            learner.observe_at(&key, &call(CallOutcome::Valid, ms, cost), t0 + i as f64);
            learner.routed(&key);
        }
    }
    health.update("big", |h| {
        h.breaker = BreakerState::Open;
        h.since = t0;
    });
    let mut flusher = Flusher::new(
        learner,
        JournalStats::new(journal.clone()),
        health,
        BTreeMap::new(),
        Duration::from_secs(5),
    );
    if let Some(dir) = snapshot {
        flusher = flusher.with_snapshot(dir);
    }
    assert_eq!(flusher.flush().await.expect("flushes"), 4);
}

/// Opens the state dir's journal, populates it and drops it (as a stopped procos leaves it).
async fn populated_and_closed(dir: &Path) {
    let state = dir.join("state");
    let journal = open(&state);
    populate(&journal, Some(&state)).await;
}

fn row<'a>(report: &'a Value, endpoint: &str) -> &'a Value {
    report["topics"][0]["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .find(|r| r["endpoint"] == endpoint)
        .unwrap_or_else(|| panic!("no row {endpoint} in {report}"))
}

#[tokio::test]
async fn a_stopped_procos_store_is_reported_as_a_table_with_figures_and_suggestions() {
    let dir = workdir(CONFIG);
    populated_and_closed(dir.path()).await;
    let (code, out, err) = stats(dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("classify_ticket  (400 tasks routed)"), "{out}");
    let line = |name: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} row in:\n{out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        line("big"),
        "big 300 100.0% 100.0% 1.4 s 1.4 s 0.002 open 10 min 75.0%"
    );
    assert_eq!(
        line("small"),
        "small 100 100.0% 100.0% 181 ms 181 ms 0.0001 - 25.0%"
    );
    assert_eq!(line("spare"), "spare 0 - - - - - - 0.0%");
    assert!(
        out.contains("- `small` serves `classify_ticket` at equal pass rate for 1/20th of the cost of `big` (0.0001 vs 0.002 per call): 100.0% vs 100.0% of calls valid; `big` gets 75.0% of its tasks"),
        "{out}"
    );
    assert!(
        out.contains("- `spare` is listed for `classify_ticket` but was never chosen in 400 tasks"),
        "{out}"
    );
}

#[tokio::test]
async fn the_json_form_has_the_figures_the_classes_and_the_suggestions() {
    let dir = workdir(CONFIG);
    populated_and_closed(dir.path()).await;
    let (code, out, err) = stats(dir.path(), &["--format", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let report: Value = serde_json::from_str(&out).expect("JSON");
    let big = row(&report, "big");
    assert_eq!(big["calls"], 300);
    assert_eq!(big["routing_share"], 0.75);
    assert_eq!(big["breaker"], "open");
    assert_eq!(big["classes"]["l"]["calls"], 75);
    assert_eq!(big["classes"]["s"]["calls"], 225);
    let cost = big["mean_cost"].as_f64().expect("cost");
    assert!((cost - 0.002).abs() < 1e-9, "{cost}");
    assert_eq!(row(&report, "spare")["calls"], 0);
    let kinds: Vec<(&str, &str)> = report["suggestions"]
        .as_array()
        .expect("suggestions")
        .iter()
        .map(|s| (s["kind"].as_str().unwrap(), s["endpoint"].as_str().unwrap()))
        .collect();
    assert!(kinds.contains(&("cheaper", "small")), "{kinds:?}");
    assert!(kinds.contains(&("never_chosen", "spare")), "{kinds:?}");
}

#[tokio::test]
async fn the_store_is_read_while_another_process_writes_it() {
    let dir = workdir(CONFIG);
    // This test process holds the store open for writing, as a running procos does.
    let state = dir.path().join("state");
    let journal = open(&state);
    populate(&journal, Some(&state)).await;
    let (code, out, err) = stats(dir.path(), &["--format", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let report: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(row(&report, "big")["calls"], 300);
    // The writer keeps writing; the next read sees the new flush.
    populate(&journal, Some(&state)).await;
    let (code, out, err) = stats(dir.path(), &["--format", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let report: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        row(&report, "small")["calls"],
        100,
        "rows replaced, not added"
    );
    drop(journal);
}

#[tokio::test]
async fn without_a_snapshot_the_store_itself_is_read_once_no_process_has_it_open() {
    let dir = workdir(CONFIG);
    let journal = open(&dir.path().join("state"));
    populate(&journal, None).await;
    let (code, out, err) = stats(dir.path(), &[]);
    assert_eq!(
        code, 75,
        "in use, nothing else to read: try again later; {out}{err}"
    );
    assert!(
        err.contains("state_dir `state`: journal.redb is in use by a running procos"),
        "{err}"
    );
    drop(journal);
    // The journal's writer thread closes the file shortly after the last handle goes.
    let mut last = (0, String::new(), String::new());
    for _ in 0..100 {
        last = stats(dir.path(), &["--format", "json"]);
        if last.0 != 75 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, out, err) = last;
    assert_eq!(code, 0, "{out}{err}");
    let report: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(row(&report, "big")["calls"], 300);
    assert_eq!(row(&report, "big")["breaker"], "open");
}

#[test]
fn without_a_state_dir_it_exits_78_naming_the_config_and_the_key() {
    let dir = workdir(&CONFIG.replace("  state_dir: state\n", ""));
    let (code, out, err) = stats(dir.path(), &[]);
    assert_eq!(code, 78, "{out}{err}");
    assert!(
        err.contains("pde.yaml: pde_manager.state_dir is not set"),
        "{err}"
    );
}

#[test]
fn without_a_store_yet_it_exits_66_naming_the_state_dir() {
    let dir = workdir(CONFIG);
    let (code, out, err) = stats(dir.path(), &[]);
    assert_eq!(code, 66, "{out}{err}");
    assert!(err.contains("state_dir `state`: no store yet"), "{err}");
}

#[test]
fn an_unreadable_store_exits_74_naming_it() {
    let dir = workdir(CONFIG);
    std::fs::create_dir(dir.path().join("state")).expect("mkdir");
    std::fs::write(dir.path().join("state/journal.redb"), b"not a database").expect("write");
    let (code, out, err) = stats(dir.path(), &[]);
    assert_eq!(code, 74, "{out}{err}");
    assert!(
        err.contains("state_dir `state`: cannot read journal.redb"),
        "{err}"
    );
}

#[tokio::test]
async fn the_table_names_the_file_it_read() {
    let dir = workdir(CONFIG);
    populated_and_closed(dir.path()).await;
    let header = |dir: &Path| {
        let (code, out, err) = stats(dir, &[]);
        assert_eq!(code, 0, "{out}{err}");
        out.lines().next().unwrap_or_default().to_string()
    };
    assert_eq!(header(dir.path()), "procos stats: state/learner.json");
    // A store from before snapshots: the store itself is read, and named.
    std::fs::remove_file(dir.path().join("state/learner.json")).expect("remove the snapshot");
    assert_eq!(header(dir.path()), "procos stats: state/journal.redb");
}
