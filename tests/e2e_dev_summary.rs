//! `procos dev --start KEY --count N` on the real binary: it starts the instances, reports
//! progress, and prints a summary whose figures are exactly what happened.

mod support;

use std::time::Duration;

use support::*;

/// Answers by the order tasks reach it: the first 12 complete, the next 5 are a BPMN error
/// (caught by the model's boundary event), the last 3 a permanent failure (exit 2: incident).
const VERDICT: &str = r#"import fcntl, json, os, sys
json.load(sys.stdin)
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "verdict.count")
with open(path, "a+") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    f.seek(0)
    n = len(f.read()) + 1
    f.write("x")
if n <= 12:
    print(json.dumps({"n": n}))
elif n <= 17:
    print(json.dumps({"bpmn_error": {"code": "REJECTED", "message": "no"}}))
else:
    sys.exit(2)
"#;

/// The columns of the summary line that starts with `first`.
fn row(lines: &[String], first: &str) -> Vec<String> {
    lines
        .iter()
        .find(|l| l.split_whitespace().next() == Some(first))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_counts_completed_bpmn_error_and_incident_instances_and_tasks_per_topic() {
    let cfg = config(
        "",
        &["judge"],
        "  work: { pool: gp, endpoints: [judge] }\n",
        "  judge: { type: python, scripts_dir: scripts, script: verdict.py }\n",
    );
    let work = Workdir::new(
        &cfg,
        &[(
            "summary.bpmn",
            &one_task_bpmn("summary", "work", "REJECTED"),
        )],
    );
    work.script("verdict.py", VERDICT);
    let mut procos = Procos::spawn(
        work.path(),
        &[
            "--config",
            "pde.yaml",
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--start",
            "summary",
            "--count",
            "20",
        ],
        // `procos dev` points the config at its own engine.
        &[("CAMUNDA_URL", "http://127.0.0.1:9/engine-rest")],
    );
    procos
        .wait_log("all ended in", Duration::from_secs(60))
        .await;
    // The table follows its title line at once; give the rest of stdout a moment to arrive.
    let ok = eventually(Duration::from_secs(5), || async {
        procos
            .log_lines()
            .iter()
            .any(|l| l.trim_start().starts_with("work "))
    })
    .await;
    let lines = procos.log_lines();
    assert!(ok, "no topic row; output:\n{}", lines.join("\n"));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("20 instances of summary — all ended in")),
        "{}",
        lines.join("\n")
    );
    assert_eq!(row(&lines, "completed"), ["completed", "12"]);
    assert_eq!(row(&lines, "bpmn_error"), ["bpmn_error", "5"]);
    assert_eq!(row(&lines, "incident"), ["incident", "3"]);
    assert_eq!(row(&lines, "running"), ["running", "0"]);
    let work_row = row(&lines, "work");
    assert_eq!(
        work_row[..7],
        ["work", "20", "12", "5", "0", "3", "0"],
        "tasks, completed, bpmn_error, failed, incident, other: {work_row:?}"
    );
    let p50: u64 = work_row[7].parse().expect("p50 in ms");
    let p95: u64 = work_row[8].parse().expect("p95 in ms");
    assert!(p50 <= p95, "p50 {p50} ≤ p95 {p95}");
    // Not a terminal: progress came as log lines, not a bar.
    assert!(
        procos
            .log_json()
            .iter()
            .any(|l| l["message"] == "Dev run finished." && l["ended"] == 20),
        "{}",
        lines.join("\n")
    );
    // procos keeps running after the summary, as `procos dev` does; Ctrl-C/SIGTERM stops it.
    procos.sigterm();
    assert_eq!(procos.exit_code(Duration::from_secs(20)).await, 0);
}
