//! End to end, `mode: warm` (issue 10): the real daemon drains tasks through one long-lived
//! interpreter; a crashing task costs only itself; a SIGKILLed procos takes its interpreters.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{eventually, stage_with_scripts};

const T: Duration = Duration::from_secs(30);

/// Answers with its interpreter's pid and how many tasks it has served; crashes on request.
const SCRIPT: &str = r#"import os

served = 0

def handle(task):
    global served
    served += 1
    if task["variables"].get("crash"):
        os._exit(3)
    return {"pid": os.getpid(), "served": served}
"#;

fn warm_config() -> String {
    support::config(
        "",
        &["py"],
        "  warm_topic:\n    pool: gp\n    endpoints: [py]\n    retries: 1\n",
        "  py: { type: python, mode: warm, script: warm.py, worker_pool_size: 1 }\n",
    )
}

fn running(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_share_one_interpreter_and_a_crash_costs_only_its_task() {
    let mut s = stage_with_scripts(
        &warm_config(),
        "warm_p",
        "warm_topic",
        &[("warm.py", SCRIPT)],
    )
    .await;
    // The pool warms up at start; a task that came first would start its own interpreter and
    // the one left idle afterwards is the warm-up's (fresh, so 'served' starts again at 1).
    s.procos.wait_log("Warm interpreters ready.", T).await;

    let mut served = Vec::new();
    let mut pids = Vec::new();
    for _ in 0..3 {
        let pi = s.rest.start("warm_p", json!({})).await;
        let vars = s.rest.wait_ended(&pi, T).await;
        served.push(vars["served"].clone());
        pids.push(vars["pid"].clone());
    }
    assert_eq!(served, [json!(1), json!(2), json!(3)], "imported once");
    assert!(
        pids.iter().all(|p| *p == pids[0]),
        "one interpreter: {pids:?}"
    );

    let crash = s.rest.start("warm_p", json!({"crash": true})).await;
    let failed = eventually(T, || async { !s.rest.incidents(&crash).await.is_empty() }).await;
    assert!(
        failed,
        "the crashing task ends in an incident after its retry"
    );
    let task = &s
        .rest
        .get(&format!("/external-task?processInstanceId={crash}"))
        .await[0];
    assert!(
        task["errorMessage"]
            .as_str()
            .unwrap_or("")
            .contains("exited with code 3"),
        "{task}"
    );

    let pi = s.rest.start("warm_p", json!({})).await;
    let vars = s.rest.wait_ended(&pi, T).await;
    assert_eq!(vars["served"], json!(1), "a new interpreter");
    let pid = vars["pid"].as_i64().expect("pid");
    assert_ne!(Value::from(pid), pids[0]);
    assert!(running(pid), "the interpreter stays up between tasks");

    s.procos.child.start_kill().expect("SIGKILL procos");
    let _ = s.procos.child.wait().await;
    let gone = eventually(Duration::from_secs(2), || async { !running(pid) }).await;
    assert!(gone, "interpreter {pid} outlived a SIGKILLed procos");
}
