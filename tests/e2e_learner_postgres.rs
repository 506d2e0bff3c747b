//! End to end: the learner's statistics in a real PostgreSQL (`pde_manager.state`), through the
//! real binary — what one procos learned, the next one (and `procos stats`) reads; the database
//! down at start and mid-run stops no task, and procos catches up when it is back.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::postgres::{PASSWORD, TcpSwitch, database, rows};
use support::{Procos, Rest, Workdir, config, engine, one_task_bpmn};

const T: Duration = Duration::from_secs(60);

fn workdir() -> Workdir {
    let cfg = config(
        "  worker_id: ${WORKER}\n",
        &["echo"],
        "  echo: { pool: gp, endpoints: [echo] }",
        "  echo: { type: noop }",
    )
    .replacen("pde_manager:\n", "pde_manager:\n  state: ${PG_URL}\n", 1);
    Workdir::new(
        &cfg,
        &[("echo.bpmn", &one_task_bpmn("echo_process", "echo", "NEVER"))],
    )
}

fn daemon(work: &Workdir, engine: &str, worker: &str, pg: &str) -> Procos {
    Procos::spawn(
        work.path(),
        &["--config", "pde.yaml"],
        &[("CAMUNDA_URL", engine), ("WORKER", worker), ("PG_URL", pg)],
    )
}

async fn run_tasks(rest: &Rest, n: usize) {
    let mut started = Vec::new();
    for i in 0..n {
        started.push(rest.start("echo_process", json!({ "i": i })).await);
    }
    for pi in &started {
        rest.wait_ended(pi, T).await;
    }
}

/// `procos stats --format json` in `work`: the echo endpoint's lifetime calls.
fn stats_calls(work: &Workdir, pg: &str) -> u64 {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_procos"))
        .args(["stats", "--config", "pde.yaml", "--format", "json"])
        .current_dir(work.path())
        .env("CAMUNDA_URL", "http://127.0.0.1:9/engine-rest")
        .env("WORKER", "reader")
        .env("PG_URL", pg)
        .output()
        .expect("procos stats runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "procos stats: {stdout}{stderr}");
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));
    let report: Value = serde_json::from_str(&stdout).expect("json");
    report["topics"][0]["endpoints"][0]["calls"]
        .as_u64()
        .unwrap_or_else(|| panic!("no echo figures in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_one_procos_learned_the_next_one_and_procos_stats_read() {
    let pg = database().await;
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let work = workdir();

    let mut first = daemon(&work, &engine.url, "first", &pg);
    rest.wait_deployed("echo_process", T).await;
    run_tasks(&rest, 5).await;
    first.sigterm();
    assert_eq!(first.exit_code(T).await, 0);
    assert_eq!(
        stats_calls(&work, &pg),
        5,
        "procos stats reads the shared store"
    );

    let mut second = daemon(&work, &engine.url, "second", &pg);
    second
        .wait_log("Learner loaded from the shared store.", T)
        .await;
    let loaded = second
        .log_json()
        .into_iter()
        .find(|l| l["message"] == "Learner loaded from the shared store.")
        .expect("the load line");
    assert_eq!(loaded["keys"], 1, "{loaded}");
    run_tasks(&rest, 3).await;
    second.sigterm();
    assert_eq!(second.exit_code(T).await, 0);
    assert_eq!(
        stats_calls(&work, &pg),
        8,
        "both lives, nothing counted twice"
    );
    assert_eq!(
        rows(&pg).await,
        vec![("first".to_string(), 5), ("second".to_string(), 3)],
        "each replica writes its own row"
    );
    for p in [&first, &second] {
        assert!(!p.log_lines().join("\n").contains(PASSWORD));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_down_at_start_and_mid_run_stops_no_task_and_is_caught_up() {
    let pg = database().await;
    let switch = TcpSwitch::start(true).await;
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let work = workdir();
    let mut procos = daemon(&work, &engine.url, "solo", &switch.url(&pg));
    rest.wait_deployed("echo_process", T).await;

    // Down at start: tasks still run; procos warns and keeps the figures.
    run_tasks(&rest, 4).await;
    procos
        .wait_log("The shared learner store is unavailable", T)
        .await;
    assert!(rows(&pg).await.is_empty());
    switch.set_down(false);
    let caught_up =
        support::eventually(T, || async { rows(&pg).await == [("solo".into(), 4)] }).await;
    assert!(caught_up, "caught up once back: {:?}", rows(&pg).await);

    // Down mid-run: the same.
    switch.set_down(true);
    run_tasks(&rest, 3).await;
    let warned_again = support::eventually(T, || async {
        procos
            .log_lines()
            .iter()
            .filter(|l| l.contains("The shared learner store is unavailable"))
            .count()
            >= 2
    })
    .await;
    assert!(warned_again, "a flush failed while the database was down");
    switch.set_down(false);
    let caught_up =
        support::eventually(T, || async { rows(&pg).await == [("solo".into(), 7)] }).await;
    assert!(caught_up, "caught up again: {:?}", rows(&pg).await);
    procos.sigterm();
    assert_eq!(procos.exit_code(T).await, 0);
    assert!(!procos.log_lines().join("\n").contains(PASSWORD));
}

#[test]
fn procos_validate_names_a_state_url_that_is_not_postgres_and_never_prints_it() {
    let work = workdir();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_procos"))
        .args(["validate", "--config", "pde.yaml"])
        .current_dir(work.path())
        .env("CAMUNDA_URL", "http://127.0.0.1:9/engine-rest")
        .env("WORKER", "w")
        .env(
            "PG_URL",
            format!("mysql://procos:{PASSWORD}@db:3306/procos"),
        )
        .output()
        .expect("procos validate runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(78), "{text}");
    assert!(
        text.contains("pde_manager.state") && text.contains("PostgreSQL URL"),
        "{text}"
    );
    assert!(!text.contains(PASSWORD), "{text}");
}
