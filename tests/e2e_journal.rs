//! The outcome journal across a crash: the real binary, SIGKILLed and started again on the same
//! `state_dir`, against the in-repo engine. A side-effecting script appends the task id to a sink
//! file, so a second run would show.

mod support;

use std::time::Duration;

use support::{Procos, Rest, Workdir, config, engine, eventually, one_task_bpmn, with_state_dir};

/// Writes the task id to `sink.txt`, then waits until `release` exists (or 60 s), then answers.
const SCRIPT: &str = r#"
import json, os, sys, time
task = json.load(sys.stdin)
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "sink.txt"), "a") as f:
    f.write(task["task"]["id"] + "\n")
deadline = time.time() + 60
while not os.path.exists(os.path.join(here, "release")) and time.time() < deadline:
    time.sleep(0.05)
print(json.dumps({"sent": True}))
"#;

fn setup() -> Workdir {
    let cfg = with_state_dir(&config(
        "  lock_duration: 3s",
        &["side"],
        "  effect: { pool: gp, endpoints: [side], retries: 1 }",
        "  side: { type: python, script: effect.py, max_execution_time: 90s }",
    ));
    let work = Workdir::new(
        &cfg,
        &[("effect.bpmn", &one_task_bpmn("effect", "effect", "NEVER"))],
    );
    work.script("effect.py", SCRIPT);
    work
}

fn sink(work: &Workdir) -> Vec<String> {
    std::fs::read_to_string(work.path().join("scripts/sink.txt"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The engine, procos on `work`, and one instance whose script has had its side effect and now
/// waits for `release`.
struct Started {
    engine: procos::engine::RunningEngine,
    rest: Rest,
    work: Workdir,
    procos: Procos,
    pi: String,
}

async fn started(work: Workdir) -> Started {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let procos = Procos::daemon(&work, &engine.url);
    rest.wait_deployed("effect", Duration::from_secs(30)).await;
    let pi = rest.start("effect", serde_json::json!({})).await;
    assert!(
        eventually(Duration::from_secs(20), || async { sink(&work).len() == 1 }).await,
        "the script ran"
    );
    Started {
        engine,
        rest,
        work,
        procos,
        pi,
    }
}

async fn kill(procos: &mut Procos) {
    procos.child.kill().await.expect("SIGKILL");
}

#[tokio::test]
async fn an_outcome_the_engine_could_not_take_is_sent_after_a_restart_and_the_task_is_not_run_again()
 {
    let Started {
        engine,
        rest,
        work,
        mut procos,
        pi,
    } = started(setup()).await;
    // The engine goes down just before the script finishes: the outcome cannot be delivered.
    engine.engine.set_down(true);
    std::fs::write(work.path().join("scripts/release"), "").expect("release");
    procos
        .wait_log("Engine call failed; retrying.", Duration::from_secs(15))
        .await;
    kill(&mut procos).await;

    engine.engine.set_down(false);
    let restarted = Procos::daemon(&work, &engine.url);
    let vars = rest.wait_ended(&pi, Duration::from_secs(20)).await;
    assert_eq!(vars["sent"], true, "the journaled result was delivered");
    assert_eq!(
        sink(&work).len(),
        1,
        "the side effect ran once: {:?}",
        sink(&work)
    );
    restarted
        .wait_log("Re-sent a journaled outcome.", Duration::from_secs(1))
        .await;
    assert_eq!(engine.engine.stats().complete_ok, 1);
}

#[tokio::test]
async fn a_side_effect_cut_short_by_a_crash_becomes_an_incident_not_a_second_run() {
    let Started {
        engine,
        rest,
        work,
        mut procos,
        pi,
    } = started(setup()).await;
    kill(&mut procos).await;
    // The script is still waiting for `release`; the process that ran it is gone.
    std::fs::write(work.path().join("scripts/release"), "").expect("release");

    let restarted = Procos::daemon(&work, &engine.url);
    // Once the dead process's lock (3 s) expires, the task is fetched again.
    let found = eventually(Duration::from_secs(20), || async {
        !rest.incidents(&pi).await.is_empty()
    })
    .await;
    assert!(
        found,
        "an incident; logs:\n{}",
        restarted.log_lines().join("\n")
    );
    let incident = &rest.incidents(&pi).await[0];
    let message = incident["incidentMessage"].as_str().unwrap_or("");
    assert!(
        message.contains("`side`") && message.contains("not run a second time"),
        "the incident says why: {message}"
    );
    assert_eq!(
        sink(&work).len(),
        1,
        "the side effect ran once: {:?}",
        sink(&work)
    );
    assert_eq!(engine.engine.stats().complete_ok, 0);
}

#[tokio::test]
async fn a_side_effect_still_running_when_the_grace_period_ends_is_not_handed_to_another_worker() {
    let work = setup();
    std::fs::write(
        work.path().join("pde.yaml"),
        std::fs::read_to_string(work.path().join("pde.yaml"))
            .expect("config")
            .replace("shutdown_grace: 10s", "shutdown_grace: 1s"),
    )
    .expect("config");
    let Started {
        engine,
        rest,
        work: _work,
        mut procos,
        pi,
    } = started(work).await;
    procos.sigterm();
    assert_eq!(procos.exit_code(Duration::from_secs(10)).await, 0);
    let incidents = rest.incidents(&pi).await;
    assert_eq!(incidents.len(), 1, "an incident, not an unlocked task");
    let message = incidents[0]["incidentMessage"].as_str().unwrap_or("");
    assert!(message.contains("`side`"), "{message}");
    assert_eq!(engine.engine.stats().unlock_ok, 0, "not handed back");
}
