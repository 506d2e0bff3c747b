//! The admin server of the real binary: every route after real tasks ran, the bearer token,
//! readiness before and after the engine is up, and the refusal of a public address without a
//! token.

mod support;

use std::time::Duration;

use procos::engine::{Engine, EngineOptions};
use serde_json::{Value, json};
use support::{Procos, Rest, Workdir, config, engine, one_task_bpmn};
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(30);
const TOKEN: &str = "adm-token-5c0e9a71d2";
/// Another secret of the config (the engine's bearer token): never in an admin response either.
const ENGINE_TOKEN: &str = "engine-secret-8d41f0b3e6";

/// The admin server's address from the "Admin server listening." log line.
async fn admin_addr(procos: &Procos) -> String {
    procos.wait_log("Admin server listening.", T).await;
    procos
        .log_json()
        .iter()
        .find(|l| l["message"] == "Admin server listening.")
        .and_then(|l| l["address"].as_str().map(str::to_string))
        .expect("the line names the address")
}

async fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let client = reqwest::Client::new();
    let mut request = client.get(format!("http://{addr}{path}"));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.expect("admin answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_after_tasks_ran_and_only_with_the_token() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let cfg = config(
        "  auth:\n    type: bearer\n    token: ${ENGINE_TOKEN}",
        &["echo", "py"],
        "  ok: { pool: gp, endpoints: [echo] }\n  boom: { pool: gp, endpoints: [py], retries: 1, retry_timeout: 100ms }",
        "  echo: { type: noop }\n  py: { type: python, scripts_dir: scripts }",
    ) + "admin:\n  token: ${ADMIN_TOKEN}\n";
    let work = Workdir::new(
        &cfg,
        &[
            ("ok.bpmn", &one_task_bpmn("ok_process", "ok", "NEVER")),
            ("boom.bpmn", &one_task_bpmn("boom_process", "boom", "NEVER")),
        ],
    );
    work.script(
        "boom.py",
        "import sys\nsys.stderr.write('the database is on fire\\n')\nsys.exit(1)\n",
    );
    let procos = Procos::spawn(
        work.path(),
        &["--config", "pde.yaml"],
        &[
            ("CAMUNDA_URL", &engine.url),
            ("ADMIN_TOKEN", TOKEN),
            ("ENGINE_TOKEN", ENGINE_TOKEN),
        ],
    );
    let addr = admin_addr(&procos).await;
    rest.wait_deployed("ok_process", T).await;
    rest.wait_deployed("boom_process", T).await;
    for i in 0..3 {
        let pi = rest.start("ok_process", json!({"n": i})).await;
        rest.wait_ended(&pi, T).await;
    }
    let boom = rest.start("boom_process", json!({"order": 7})).await;
    assert!(
        support::eventually(T, || async { !rest.incidents(&boom).await.is_empty() }).await,
        "the failing task ends in an incident"
    );
    let task_id = rest
        .get(&format!("/external-task?processInstanceId={boom}"))
        .await[0]["id"]
        .as_str()
        .expect("task id")
        .to_string();

    // The probes are open; everything else needs the token.
    assert_eq!(get(&addr, "/healthz", None).await.0, 200);
    let (ready, why) = get(&addr, "/readyz", None).await;
    assert_eq!(
        ready, 200,
        "ready after boot, deployment and fetching: {why}"
    );
    for path in ["/", "/api/status", "/metrics"] {
        assert_eq!(
            get(&addr, path, None).await.0,
            401,
            "{path} without a token"
        );
        assert_eq!(
            get(&addr, path, Some("not-the-token")).await.0,
            401,
            "{path} with a wrong token"
        );
    }

    let (status, metrics) = get(&addr, "/metrics", Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains(r#"procos_tasks_total{topic="ok",outcome="completed"} 3"#),
        "{metrics}"
    );

    // The status shows the failure with its task id and a Cockpit link once the feed has it.
    let deadline = std::time::Instant::now() + T;
    let doc: Value = loop {
        let (_, body) = get(&addr, "/api/status", Some(TOKEN)).await;
        let doc: Value = serde_json::from_str(&body).expect("JSON");
        let listed = doc["recent_failures"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["task_id"] == task_id.as_str()));
        if listed {
            break doc;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the failed task {task_id} is not listed: {doc:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let failure = doc["recent_failures"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["task_id"] == task_id.as_str()))
        .expect("listed");
    assert_eq!(failure["topic"], "boom");
    assert_eq!(failure["outcome"], "incident");
    assert_eq!(failure["process_instance_id"], boom.as_str());
    let origin = engine.url.trim_end_matches("/engine-rest");
    assert_eq!(
        failure["cockpit_url"],
        format!("{origin}/camunda/app/cockpit/default/#/process-instance/{boom}/runtime")
    );
    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["config"]["version"], 1);
    assert_eq!(doc["ready"], true);
    assert!(doc["uptime_seconds"].as_f64().is_some_and(|s| s > 0.0));
    assert_eq!(doc["pools"][0]["name"], "gp");
    assert_eq!(doc["pools"][0]["slots"], 10);
    assert_eq!(
        doc["pools"][0]["instances"].as_array().map(Vec::len),
        Some(2)
    );
    let topics: Vec<&str> = doc["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(topics, ["boom", "ok"]);
    let echo = doc["endpoints"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["name"] == "echo"))
        .expect("echo listed");
    assert_eq!(echo["kind"], "noop");
    assert_eq!(echo["light"], "green");
    assert_eq!(echo["routes"][0]["topic"], "ok");
    assert_eq!(echo["routes"][0]["routing_share"], 1.0);
    assert_eq!(echo["routes"][0]["calls"], 3);
    assert_eq!(doc["tasks"]["finished"], 4);
    let throughput: u64 = doc["history"]["throughput"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(throughput, 4, "every finished task is in the sparkline");
    let deployed = doc["deployment"]["resources"].to_string();
    assert!(
        deployed.contains("ok.bpmn") && deployed.contains("boom.bpmn"),
        "{deployed}"
    );

    // The page itself, and no route ever shows a secret of the config.
    let (status, page) = get(&addr, "/", Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert!(page.contains("<title>procos · status</title>"));
    for path in ["/", "/api/status", "/metrics", "/healthz", "/readyz"] {
        let (_, body) = get(&addr, path, Some(TOKEN)).await;
        assert!(!body.contains(TOKEN), "{path} shows the admin token");
        assert!(
            !body.contains(ENGINE_TOKEN),
            "{path} shows the engine token"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_with_the_reason_until_the_engine_answers() {
    let port = support::free_port();
    let url = format!("http://127.0.0.1:{port}/engine-rest");
    let cfg = config(
        "  boot_timeout: 60s",
        &["echo"],
        "  ok: { pool: gp, endpoints: [echo] }",
        "  echo: { type: noop }",
    );
    let work = Workdir::new(
        &cfg,
        &[("ok.bpmn", &one_task_bpmn("ok_process", "ok", "NEVER"))],
    );
    let procos = Procos::daemon(&work, &url);
    let addr = admin_addr(&procos).await;
    assert_eq!(
        get(&addr, "/healthz", None).await.0,
        200,
        "alive while waiting"
    );
    let (status, body) = get(&addr, "/readyz", None).await;
    assert_eq!(status, 503, "{body}");
    let reason: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(reason["ready"], false);
    assert!(
        reason["reason"]
            .as_str()
            .is_some_and(|r| r.contains("engine")),
        "{reason}"
    );

    // Now the engine comes up on that port.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the port is still free");
    let stop = CancellationToken::new();
    let engine = Engine::new(EngineOptions {
        quiet: true,
        ..Default::default()
    });
    let serving = stop.clone();
    tokio::spawn(async move { engine.serve(listener, serving).await });
    let _stop = stop.drop_guard();
    let ready =
        support::eventually(T, || async { get(&addr, "/readyz", None).await.0 == 200 }).await;
    assert!(
        ready,
        "ready once the engine answered and bpmn/ is deployed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_address_without_a_token_is_refused_with_its_path() {
    let cfg = config(
        "",
        &["echo"],
        "  ok: { pool: gp, endpoints: [echo] }",
        "  echo: { type: noop }",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pde.yaml");
    std::fs::write(&path, format!("{cfg}admin:\n  listen: 0.0.0.0:0\n")).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_procos"))
        .args(["validate", "--config"])
        .arg(&path)
        .env("CAMUNDA_URL", "http://127.0.0.1:1/engine-rest")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("admin.token"), "{stderr}");
    assert!(stderr.contains("0.0.0.0:0"), "{stderr}");

    // The same through the `--metrics-listen` alias, for the daemon.
    std::fs::write(&path, &cfg).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_procos"))
        .args(["--metrics-listen", "0.0.0.0:0", "--config"])
        .arg(&path)
        .env("CAMUNDA_URL", "http://127.0.0.1:1/engine-rest")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("admin.token"), "{stderr}");
}

/// What an orchestrator sees while procos drains: after SIGTERM with a slow task in flight,
/// `/readyz` answers 503 with a reason naming the drain (so no new traffic is routed to the
/// pod) while the admin server keeps serving, and the task still completes before the exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_naming_the_drain_while_a_task_finishes() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let cfg = config(
        "",
        &["slow"],
        "  slow: { pool: gp, endpoints: [slow] }",
        "  slow: { type: noop, delay: 3s }",
    );
    let work = Workdir::new(
        &cfg,
        &[("slow.bpmn", &one_task_bpmn("slow_process", "slow", "NEVER"))],
    );
    let mut procos = Procos::daemon(&work, &engine.url);
    let addr = admin_addr(&procos).await;
    rest.wait_deployed("slow_process", T).await;
    assert!(
        support::eventually(T, || async { get(&addr, "/readyz", None).await.0 == 200 }).await,
        "ready before the drain"
    );
    let pi = rest.start("slow_process", json!({"n": 1})).await;
    let locked = support::eventually(T, || async {
        rest.get(&format!("/external-task?processInstanceId={pi}"))
            .await
            .as_array()
            .and_then(|tasks| tasks.first().cloned())
            .is_some_and(|t| !t["workerId"].is_null())
    })
    .await;
    assert!(locked, "procos took the slow task");

    procos.sigterm();
    procos
        .wait_log("Stopped fetching; waiting for running tasks to finish.", T)
        .await;
    let (status, body) = get(&addr, "/readyz", None).await;
    assert_eq!(status, 503, "not ready while draining: {body}");
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer["ready"], false);
    assert!(
        answer["reason"]
            .as_str()
            .is_some_and(|r| r.contains("draining")),
        "the reason names the drain: {answer}"
    );
    assert_eq!(
        rest.state(&pi).await,
        "ACTIVE",
        "the task is still running while /readyz says 503"
    );
    assert_eq!(procos.exit_code(T).await, 0, "a clean exit after the drain");
    // Completed (not unlocked for another worker, not an incident).
    rest.wait_ended(&pi, Duration::from_secs(5)).await;
}
