//! The learner remembers: the real binary on a `state_dir`, its statistics read by `procos stats`
//! while it runs, after a clean stop, after a SIGKILL (from the snapshot, and from the unclosed
//! store), and accumulated across a restart.
//!
//! Needs the Validation block to feed the learner (`learner.observe(&Key::new(topic, endpoint,
//! class), &sample)` per endpoint call): without that hook every figure stays 0.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::{Procos, Rest, Workdir, config, engine, eventually, one_task_bpmn, with_state_dir};

fn setup() -> Workdir {
    let cfg = with_state_dir(&config(
        "",
        &["echo"],
        "  work: { pool: gp, endpoints: [echo] }",
        "  echo: { type: noop }",
    ));
    Workdir::new(
        &cfg,
        &[("work.bpmn", &one_task_bpmn("work", "work", "NEVER"))],
    )
}

/// `procos stats --format json` in `dir` (with the daemon's environment: the config is loaded
/// as for a run): the report, or the exit code and stderr.
fn stats(dir: &Path) -> Result<Value, String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_procos"))
        .args(["stats", "--config", "pde.yaml", "--format", "json"])
        .current_dir(dir)
        .env("CAMUNDA_URL", "http://127.0.0.1:9/engine-rest")
        .output()
        .expect("runs");
    if out.status.code() != Some(0) {
        return Err(format!(
            "exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("not JSON: {e}"))
}

/// Calls of `echo` on `work` (all classes) as `procos stats` reports them.
fn echo_calls(dir: &Path) -> Result<u64, String> {
    let report = stats(dir)?;
    let rows = report["topics"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["topic"] == "work"))
        .map(|t| t["endpoints"].clone())
        .ok_or_else(|| format!("no topic `work` in {report}"))?;
    rows.as_array()
        .and_then(|r| r.iter().find(|r| r["endpoint"] == "echo"))
        .and_then(|r| r["calls"].as_u64())
        .ok_or_else(|| format!("no row `echo` in {report}"))
}

async fn complete(rest: &Rest, n: usize) {
    let mut pis = Vec::new();
    for _ in 0..n {
        pis.push(
            rest.start("work", serde_json::json!({ "text": "hello" }))
                .await,
        );
    }
    for pi in pis {
        rest.wait_ended(&pi, Duration::from_secs(30)).await;
    }
}

/// Waits (at most two flush intervals and then some) until `procos stats` reports `n` calls.
async fn wait_calls(dir: &Path, n: u64) {
    let mut last = Ok(0);
    let seen = eventually(Duration::from_secs(20), || {
        last = echo_calls(dir);
        let ok = last == Ok(n);
        async move { ok }
    })
    .await;
    assert!(
        seen,
        "procos stats never reported {n} calls; last: {last:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_procos_learned_survives_a_restart_of_the_real_binary() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let work = setup();
    let mut first = Procos::daemon(&work, &engine.url);
    rest.wait_deployed("work", Duration::from_secs(30)).await;
    first
        .wait_log("Learner loaded.", Duration::from_secs(10))
        .await;
    complete(&rest, 4).await;
    // Read while procos runs on the store: the flusher writes within a few seconds.
    wait_calls(work.path(), 4).await;
    first.sigterm();
    assert_eq!(first.exit_code(Duration::from_secs(20)).await, 0);
    assert_eq!(echo_calls(work.path()), Ok(4));

    let mut second = Procos::daemon(&work, &engine.url);
    second
        .wait_log("Learner loaded.", Duration::from_secs(10))
        .await;
    let loaded = second
        .log_json()
        .into_iter()
        .find(|l| l["message"] == "Learner loaded.")
        .expect("the load is logged");
    // One row per (topic, endpoint, class) the first life saw: at least `work`/`echo`.
    assert!(loaded["statistics"].as_u64() >= Some(1), "{loaded}");
    complete(&rest, 3).await;
    second.sigterm();
    assert_eq!(second.exit_code(Duration::from_secs(20)).await, 0);
    // The second life went on from the first one's figures: the last flush at exit kept them.
    assert_eq!(echo_calls(work.path()), Ok(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_of_a_killed_procos_is_still_read() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let work = setup();
    let mut procos = Procos::daemon(&work, &engine.url);
    rest.wait_deployed("work", Duration::from_secs(30)).await;
    complete(&rest, 3).await;
    wait_calls(work.path(), 3).await;
    procos.child.kill().await.expect("SIGKILL");
    procos.child.wait().await.expect("reaped");
    // What the last flush wrote is still there, in the snapshot…
    assert_eq!(echo_calls(work.path()), Ok(3));
    // …and in the store itself, which the kill left unclosed: read through a repaired private
    // copy, never repaired in place (the next procos does that).
    std::fs::remove_file(work.path().join("state/learner.json")).expect("a snapshot was written");
    assert_eq!(echo_calls(work.path()), Ok(3));
}
