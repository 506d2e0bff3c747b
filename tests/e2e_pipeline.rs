//! End to end: the real `procos` binary against the in-repo Camunda-compatible engine.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Procos, Rest, Stage, Workdir, config, engine, one_task_bpmn, stage};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_process_completes_with_http_and_python_results() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let work = Workdir::from_repo();
    let mut procos = Procos::spawn(
        work.path(),
        &["--config", "config/pde.yaml"],
        &[("CAMUNDA_URL", &engine.url)],
    );
    rest.wait_deployed("order_check", T).await;

    let pi = rest
        .start(
            "order_check",
            json!({"amount": 120.0, "url": format!("{}/version", engine.url)}),
        )
        .await;
    let vars = rest.wait_ended(&pi, T).await;

    assert_eq!(vars["decision"], json!("approve"));
    assert_eq!(vars["score"], json!(98.8));
    assert_eq!(
        vars["response"]["status"],
        json!(200),
        "http result stored as `response`: {vars:?}"
    );
    assert_eq!(vars["response"]["body"]["version"], json!("7.23.0"));
    let stats = rest.stats().await;
    assert_eq!(
        stats["complete_ok"],
        json!(2),
        "two tasks, each completed once: {stats}"
    );
    assert_eq!(stats["complete_rejected"], json!(0));

    // The story of each task is in the JSON logs, with the task's fields on every line.
    let finished: Vec<_> = procos
        .log_json()
        .into_iter()
        .filter(|l| l["message"] == "Task finished.")
        .collect();
    assert_eq!(finished.len(), 2);
    for line in &finished {
        assert_eq!(line["outcome"], "completed");
        assert_eq!(line["span"]["process_instance"], json!(pi));
        assert!(line["span"]["task_id"].is_string() && line["validation_ms"].is_u64());
    }
    procos.sigterm();
    assert_eq!(procos.exit_code(T).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_input_check_raises_the_configured_bpmn_error() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let work = Workdir::from_repo();
    let _procos = Procos::spawn(
        work.path(),
        &["--config", "config/pde.yaml"],
        &[("CAMUNDA_URL", &engine.url)],
    );
    rest.wait_deployed("order_check", T).await;

    // `amount` is a string: score_order's input check rejects it, and the topic maps
    // input_invalid to INVALID_ORDER, which the boundary event catches.
    let pi = rest
        .start(
            "order_check",
            json!({"amount": "lots", "url": format!("{}/version", engine.url)}),
        )
        .await;
    rest.wait_ended(&pi, T).await;
    let stats = rest.stats().await;
    assert_eq!(stats["bpmn_error_calls"], json!(1), "{stats}");
    assert_eq!(stats["failure_calls"], json!(0), "{stats}");
    assert!(rest.incidents(&pi).await.is_empty());
}

/// At the default level (`info`) a task that went well logs nothing; one that did not logs its
/// one line, `Task finished.`, with the outcome and the task's span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_info_only_a_task_that_did_not_complete_logs_its_line() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let work = Workdir::from_repo();
    let procos = Procos::spawn(
        work.path(),
        &["--config", "config/pde.yaml"],
        &[("CAMUNDA_URL", &engine.url), ("RUST_LOG", "info")],
    );
    rest.wait_deployed("order_check", T).await;

    let url = format!("{}/version", engine.url);
    let good = rest
        .start("order_check", json!({"amount": 120.0, "url": url}))
        .await;
    rest.wait_ended(&good, T).await;
    let bad = rest
        .start("order_check", json!({"amount": "lots", "url": url}))
        .await;
    rest.wait_ended(&bad, T).await;
    procos.wait_log("Task finished.", T).await;

    let stats = rest.stats().await;
    assert!(stats["complete_ok"].as_u64() >= Some(2), "{stats}");
    assert_eq!(stats["bpmn_error_calls"], json!(1), "{stats}");
    let finished: Vec<_> = procos
        .log_json()
        .into_iter()
        .filter(|l| l["message"] == "Task finished.")
        .collect();
    assert_eq!(
        finished.len(),
        1,
        "only the BPMN error logs its line ({stats}): {finished:?}"
    );
    assert_eq!(finished[0]["level"], "INFO");
    assert_eq!(finished[0]["outcome"], "bpmn_error");
    assert_eq!(finished[0]["span"]["process_instance"], json!(bad));
    assert_eq!(finished[0]["span"]["topic"], "score_order");
    assert_eq!(finished[0]["span"]["pool"], "general_purpose");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_endpoint_counts_retries_down_to_an_incident() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let cfg = config(
        "",
        &["py"],
        "  boom: { pool: gp, endpoints: [py], retries: 3, retry_timeout: 100ms }",
        "  py: { type: python, scripts_dir: scripts }",
    );
    let work = Workdir::new(
        &cfg,
        &[("boom.bpmn", &one_task_bpmn("boom_process", "boom", "NEVER"))],
    );
    work.script(
        "boom.py",
        "import sys\nsys.stderr.write('the database is on fire\\n')\nsys.exit(1)\n",
    );
    let _procos = Procos::daemon(&work, &engine.url);
    rest.wait_deployed("boom_process", T).await;

    let pi = rest.start("boom_process", json!({"order": 7})).await;
    let found = support::eventually(T, || async { !rest.incidents(&pi).await.is_empty() }).await;
    assert!(found, "an incident is raised once retries run out");
    let incident = &rest.incidents(&pi).await[0];
    assert_eq!(incident["incidentType"], "failedExternalTask");
    let stats = rest.stats().await;
    assert_eq!(
        stats["failure_calls"],
        json!(3),
        "retries 3 → failures with retries 2, 1, 0: {stats}"
    );
    let task = &rest
        .get(&format!("/external-task?processInstanceId={pi}"))
        .await[0];
    assert_eq!(task["retries"], json!(0));
    assert!(
        task["errorMessage"].as_str().unwrap_or("").contains("exit"),
        "{task}"
    );
    let details = rest
        .text(&format!(
            "/external-task/{}/errorDetails",
            task["id"].as_str().unwrap()
        ))
        .await;
    assert!(
        details.contains("the database is on fire"),
        "stderr reaches errorDetails: {details}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_endpoint_keeps_its_lock_and_completes_once() {
    let cfg = config(
        "  lock_duration: 1s",
        &["slow"],
        "  slow: { pool: gp, endpoints: [slow] }",
        "  slow: { type: noop, delay: 3500ms }",
    );
    let Stage {
        engine: _engine,
        rest,
        work: _work,
        procos: _procos,
    } = stage(&cfg, "slow_process", "slow").await;

    let pi = rest.start("slow_process", json!({"n": 1})).await;
    let vars = rest.wait_ended(&pi, T).await;
    assert_eq!(vars["n"], json!(1));
    let stats = rest.stats().await;
    assert!(
        stats["extend_lock_ok"].as_u64().unwrap_or(0) >= 3,
        "lock extended while working: {stats}"
    );
    assert_eq!(stats["complete_ok"], json!(1), "{stats}");
    assert_eq!(stats["complete_rejected"], json!(0), "{stats}");
    assert_eq!(
        stats["fetched_tasks"],
        json!(1),
        "never handed out twice: {stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_tasks_in_flight_finish_and_exits_zero() {
    let cfg = config(
        "",
        &["slow"],
        "  slow: { pool: gp, endpoints: [slow] }",
        "  slow: { type: noop, delay: 1500ms }",
    )
    .replace("long_poll: 2s", "long_poll: 20s");
    let Stage {
        engine: _engine,
        rest,
        work: _work,
        mut procos,
    } = stage(&cfg, "slow_process", "slow").await;

    let mut instances = Vec::new();
    for i in 0..6 {
        instances.push(rest.start("slow_process", json!({"i": i})).await);
    }
    // Six tasks started inside procos (the engine's locked count alone could include a task
    // whose fetch answer is still on the wire).
    let all_started = support::eventually(T, || async {
        procos
            .log_json()
            .iter()
            .filter(|l| l["message"] == "Task context built.")
            .count()
            == 6
    })
    .await;
    assert!(all_started, "six tasks in flight");
    let stopping = std::time::Instant::now();
    procos.sigterm();
    procos.wait_log("Stopped fetching", T).await;
    let late = rest.start("slow_process", json!({"late": true})).await;
    assert_eq!(procos.exit_code(Duration::from_secs(15)).await, 0);
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "the 20s long poll was cancelled at once, not waited out: {:?}",
        stopping.elapsed()
    );
    for pi in &instances {
        assert_eq!(
            rest.state(pi).await,
            "COMPLETED",
            "task of {pi} finished before exit; logs:\n{}",
            procos.log_lines().join("\n")
        );
    }
    let stats = rest.stats().await;
    assert_eq!(stats["complete_ok"], json!(6), "{stats}");
    assert_eq!(
        stats["fetched_tasks"],
        json!(6),
        "nothing fetched after SIGTERM: {stats}"
    );
    assert_eq!(
        rest.state(&late).await,
        "ACTIVE",
        "the late task waits for the next worker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_an_engine_that_is_down_at_boot() {
    let port = support::free_port();
    let url = format!("http://127.0.0.1:{port}/engine-rest");
    let cfg = config(
        "",
        &["echo"],
        "  echo: { pool: gp, endpoints: [echo] }",
        "  echo: { type: noop }",
    );
    let work = Workdir::new(
        &cfg,
        &[("echo.bpmn", &one_task_bpmn("echo_process", "echo", "NEVER"))],
    );
    let procos = Procos::daemon(&work, &url);
    procos.wait_log("Waiting for the engine", T).await;

    let engine = procos::engine::Engine::new(Default::default());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("port still free");
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move { engine.serve(listener, stop).await }
    });
    let rest = Rest::new(&url);
    rest.wait_deployed("echo_process", T).await;
    let pi = rest.start("echo_process", json!({"hello": "world"})).await;
    assert_eq!(rest.wait_ended(&pi, T).await["hello"], json!("world"));
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_errors_mid_run_are_backed_off_and_recovered_from() {
    let cfg = config(
        "",
        &["echo"],
        "  echo: { pool: gp, endpoints: [echo] }",
        "  echo: { type: noop }",
    );
    let Stage {
        engine,
        rest,
        work: _work,
        procos,
    } = stage(&cfg, "echo_process", "echo").await;
    procos.wait_log("PDE manager started.", T).await;

    // Nothing else talks to the engine now, so the four injected 500s hit the next four polls.
    engine.engine.fail_next(4, 500);
    let backoffs = || {
        procos
            .log_json()
            .into_iter()
            .filter(|l| l["message"] == "Fetching tasks failed; backing off.")
            .collect::<Vec<_>>()
    };
    assert!(
        support::eventually(T, || async { backoffs().len() == 4 }).await,
        "four failed polls, four backoffs"
    );
    let delays: Vec<u64> = backoffs()
        .iter()
        .map(|l| l["retry_in_ms"].as_u64().unwrap_or(0))
        .collect();
    assert!(
        delays.iter().all(|d| (50..=1000).contains(d)),
        "jittered delays within the configured bounds: {delays:?}"
    );
    assert!(
        backoffs()
            .last()
            .map(|l| l["failures"] == json!(4))
            .unwrap_or(false),
        "consecutive failures counted"
    );

    // Recovered: work flows again.
    let pi = rest.start("echo_process", json!({"x": 1})).await;
    assert_eq!(rest.wait_ended(&pi, T).await["x"], json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_dropped_into_bpmn_is_deployed_while_running() {
    let cfg = config(
        "",
        &["echo"],
        "  echo: { pool: gp, endpoints: [echo] }",
        "  echo: { type: noop }",
    );
    let Stage {
        engine: _engine,
        rest,
        work,
        procos,
    } = stage(&cfg, "echo_process", "echo").await;
    procos.wait_log("Watching for BPMN", T).await;

    std::fs::write(
        work.path().join("bpmn/later.bpmn"),
        one_task_bpmn("later_process", "echo", "NEVER"),
    )
    .expect("write");
    rest.wait_deployed("later_process", Duration::from_secs(10))
        .await;
    let pi = rest.start("later_process", json!({"late": true})).await;
    assert_eq!(rest.wait_ended(&pi, T).await["late"], json!(true));

    // A broken file is reported with its position, and procos keeps running.
    std::fs::write(
        work.path().join("bpmn/broken.bpmn"),
        "<bpmn:definitions><oops",
    )
    .expect("write");
    procos
        .wait_log("The engine rejected a file", Duration::from_secs(10))
        .await;
    let rejection = procos
        .log_json()
        .into_iter()
        .find(|l| l["message"] == "The engine rejected a file; fix it and save to redeploy.")
        .expect("rejection logged");
    assert_eq!(rejection["resource"], "broken.bpmn");
    assert!(
        rejection["line"].as_i64().unwrap_or(0) >= 1,
        "line and column from the engine: {rejection}"
    );
    let pi = rest.start("echo_process", json!({"still": "alive"})).await;
    assert_eq!(rest.wait_ended(&pi, T).await["still"], json!("alive"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_instance_is_deleted_stops_and_is_never_reported() {
    let cfg = config(
        "  lock_duration: 1s",
        &["slow"],
        "  slow: { pool: gp, endpoints: [slow] }",
        "  slow: { type: noop, delay: 20s }",
    );
    let Stage {
        engine,
        rest,
        work: _work,
        procos,
    } = stage(&cfg, "slow_process", "slow").await;
    let pi = rest.start("slow_process", json!({})).await;
    procos.wait_log("Lock extended.", T).await;

    let deleted = rest
        .http
        .delete(format!("{}/process-instance/{pi}", engine.url))
        .send()
        .await
        .expect("delete");
    assert!(deleted.status().is_success());
    procos.wait_log("The task is gone", T).await;
    procos.wait_log("\"outcome\":\"abandoned\"", T).await;
    let stats = rest.stats().await;
    assert_eq!(stats["complete_ok"], json!(0), "{stats}");
    assert_eq!(
        stats["complete_rejected"],
        json!(0),
        "a cancelled task is never reported: {stats}"
    );
    assert_eq!(stats["failure_calls"], json!(0), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_still_running_after_the_grace_period_are_unlocked_for_another_worker() {
    let cfg = config(
        "",
        &["slow"],
        "  slow: { pool: gp, endpoints: [slow] }",
        "  slow: { type: noop, delay: 60s }",
    )
    .replace("shutdown_grace: 10s", "shutdown_grace: 1s");
    let Stage {
        engine: _engine,
        rest,
        work: _work,
        mut procos,
    } = stage(&cfg, "slow_process", "slow").await;
    let pi = rest.start("slow_process", json!({})).await;
    let locked = support::eventually(T, || async {
        rest.get("/external-task/count?locked=true").await["count"] == json!(1)
    })
    .await;
    assert!(locked, "the task is locked");
    // Locked is not yet running: the fetch reply may still be on its way, and a poll cancelled
    // by the signal leaves its tasks locked (README: the limit inherent to long polling).
    procos.wait_log("Task context built.", T).await;

    procos.sigterm();
    assert_eq!(
        procos.exit_code(Duration::from_secs(8)).await,
        0,
        "exits 0 soon after the 1s grace period"
    );
    let task = &rest
        .get(&format!("/external-task?processInstanceId={pi}"))
        .await[0];
    assert!(
        task["workerId"].is_null() && task["lockExpirationTime"].is_null(),
        "unlocked: {task}"
    );
    let stats = rest.stats().await;
    assert_eq!(stats["complete_ok"], json!(0));
    assert_eq!(stats["unlock_ok"], json!(1), "{stats}");
    assert_eq!(
        rest.state(&pi).await,
        "ACTIVE",
        "the instance waits for the next worker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lock_that_nobody_took_is_locked_again_and_the_task_completes_once() {
    // One slot: while the task runs, procos does not poll, so only the heartbeat sees the expiry.
    let cfg = config(
        "  lock_duration: 1s",
        &["slow"],
        "  slow: { pool: gp, endpoints: [slow] }",
        "  slow: { type: noop, delay: 2500ms }",
    )
    .replace("max_concurrent_tasks: 10", "max_concurrent_tasks: 1")
    .replace("instances: 2", "instances: 1");
    let Stage {
        engine,
        rest,
        work: _work,
        procos,
    } = stage(&cfg, "slow_process", "slow").await;
    let pi = rest.start("slow_process", json!({"k": "v"})).await;
    procos.wait_log("Lock extended.", T).await;
    let task_id = rest
        .get(&format!("/external-task?processInstanceId={pi}"))
        .await[0]["id"]
        .as_str()
        .expect("id")
        .to_string();

    engine.engine.expire_lock(&task_id);
    procos
        .wait_log("Lock had expired; locked the task again.", T)
        .await;
    assert_eq!(rest.wait_ended(&pi, T).await["k"], json!("v"));
    let stats = rest.stats().await;
    assert_eq!(stats["complete_ok"], json!(1), "{stats}");
    assert_eq!(stats["fetched_tasks"], json!(1), "{stats}");
    assert!(
        stats["extend_lock_rejected"].as_u64() >= Some(1) && stats["lock_ok"].as_u64() >= Some(1),
        "{stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_fetched_again_after_its_lock_lapsed_is_not_run_twice() {
    // A 10 s lock: no heartbeat before the next poll (≤ 2 s after the expiry) fetches the task
    // again, while the 4 s of work still run.
    let cfg = config(
        "  lock_duration: 10s",
        &["slow"],
        "  slow: { pool: gp, endpoints: [slow] }",
        "  slow: { type: noop, delay: 4s }",
    );
    let Stage {
        engine,
        rest,
        work: _work,
        procos,
    } = stage(&cfg, "slow_process", "slow").await;
    let pi = rest.start("slow_process", json!({"n": 1})).await;
    let locked = support::eventually(T, || async {
        rest.get("/external-task/count?locked=true").await["count"] == json!(1)
    })
    .await;
    assert!(locked);
    let task_id = rest
        .get(&format!("/external-task?processInstanceId={pi}"))
        .await[0]["id"]
        .as_str()
        .expect("id")
        .to_string();

    // The lock lapses while the work runs; procos's own fetch loop gets the task again.
    engine.engine.expire_lock(&task_id);
    procos.wait_log("already running here", T).await;
    assert_eq!(rest.wait_ended(&pi, T).await["n"], json!(1));
    let stats = rest.stats().await;
    assert_eq!(
        stats["fetched_tasks"],
        json!(2),
        "handed out twice by the engine: {stats}"
    );
    assert_eq!(stats["complete_ok"], json!(1), "{stats}");
    assert_eq!(
        stats["complete_rejected"],
        json!(0),
        "run once, reported once: {stats}"
    );
    // The engine shows the end before procos has logged it: wait for the line, then count.
    procos.wait_log("Task finished.", T).await;
    let finished = procos
        .log_json()
        .into_iter()
        .filter(|l| l["message"] == "Task finished.")
        .count();
    assert_eq!(finished, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_during_an_engine_outage_is_deployed_when_it_returns() {
    let cfg = config(
        "",
        &["echo"],
        "  echo: { pool: gp, endpoints: [echo] }",
        "  echo: { type: noop }",
    );
    let Stage {
        engine,
        rest,
        work,
        procos,
    } = stage(&cfg, "echo_process", "echo").await;
    procos.wait_log("Watching for BPMN", T).await;

    engine.engine.set_down(true);
    std::fs::write(
        work.path().join("bpmn/during.bpmn"),
        one_task_bpmn("during_outage", "echo", "NEVER"),
    )
    .expect("write");
    procos.wait_log("Redeployment failed; retrying.", T).await;
    engine.engine.set_down(false);
    rest.wait_deployed("during_outage", T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_at_once() {
    let cfg = config(
        "",
        &["slow"],
        "  slow: { pool: gp, endpoints: [slow] }",
        "  slow: { type: noop, delay: 60s }",
    );
    let Stage {
        engine: _engine,
        rest,
        work: _work,
        mut procos,
    } = stage(&cfg, "slow_process", "slow").await;
    rest.start("slow_process", json!({})).await;
    procos.wait_log("Task context built.", T).await;

    procos.sigterm();
    procos.wait_log("Stopped fetching", T).await;
    let second = std::time::Instant::now();
    procos.sigterm();
    assert_eq!(procos.exit_code(Duration::from_secs(5)).await, 130);
    assert!(
        second.elapsed() < Duration::from_secs(2),
        "did not wait for the 10s grace period"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_can_scrape_task_endpoint_and_pool_metrics() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let metrics = format!("127.0.0.1:{}", support::free_port());
    let work = Workdir::from_repo();
    let _procos = Procos::spawn(
        work.path(),
        &["--config", "config/pde.yaml", "--metrics-listen", &metrics],
        &[("CAMUNDA_URL", &engine.url)],
    );
    rest.wait_deployed("order_check", T).await;
    let pi = rest
        .start(
            "order_check",
            json!({"amount": 120.0, "url": format!("{}/version", engine.url)}),
        )
        .await;
    rest.wait_ended(&pi, T).await;

    let text = rest
        .http
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    for line in [
        r#"procos_tasks_total{topic="http_request",outcome="completed"} 1"#,
        r#"procos_tasks_total{topic="score_order",outcome="completed"} 1"#,
        r#"procos_endpoint_calls_total{endpoint="python",result="ok"} 1"#,
        "# TYPE procos_task_duration_seconds",
        r#"procos_pool_busy_slots{pool="general_purpose"}"#,
    ] {
        assert!(text.contains(line), "missing {line} in:\n{text}");
    }
    assert!(!text.contains(&pi), "no task or instance ids in labels");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_cannot_continue_after_a_task_ends_in_an_incident_not_a_loop() {
    // After the task, the gateway has no flow for x = 1 and no default: the engine answers
    // `complete` with 500 (ENGINE-02004) and rolls back, every time.
    const STUCK: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="d_stuck" targetNamespace="http://procos.dev/test">
  <bpmn:process id="stuck" isExecutable="true" camunda:historyTimeToLive="P1D">
    <bpmn:startEvent id="start" />
    <bpmn:serviceTask id="work" camunda:type="external" camunda:topic="echo" />
    <bpmn:exclusiveGateway id="gw" />
    <bpmn:endEvent id="done" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="work" />
    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="gw" />
    <bpmn:sequenceFlow id="f3" sourceRef="gw" targetRef="done">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">${x == 2}</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
  </bpmn:process>
</bpmn:definitions>"#;
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let cfg = config(
        "",
        &["echo"],
        "  echo: { pool: gp, endpoints: [echo], retries: 2, retry_timeout: 100ms }",
        "  echo: { type: noop }",
    );
    let work = Workdir::new(&cfg, &[("stuck.bpmn", STUCK)]);
    let procos = Procos::daemon(&work, &engine.url);
    rest.wait_deployed("stuck", T).await;

    let pi = rest.start("stuck", json!({"x": 1})).await;
    let incident = support::eventually(T, || async { !rest.incidents(&pi).await.is_empty() }).await;
    assert!(incident, "retries 2 → failures with 1, 0 → incident");
    let task = &rest
        .get(&format!("/external-task?processInstanceId={pi}"))
        .await[0];
    assert!(
        task["errorMessage"]
            .as_str()
            .unwrap_or("")
            .contains("could not continue the process"),
        "{task}"
    );
    let stats = rest.stats().await;
    assert_eq!(stats["failure_calls"], json!(2), "{stats}");
    assert_eq!(stats["complete_ok"], json!(0), "{stats}");
    assert!(
        procos
            .log_lines()
            .iter()
            .any(|l| l.contains("reporting a failure instead"))
    );
}
