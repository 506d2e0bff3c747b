//! The `python` endpoint, `mode: process` against `mode: warm` (issue 10).
//!
//!     cargo bench --bench python                 # 1000 tasks per mode
//!     BENCH_TASKS=3000 cargo bench --bench python
//!
//! Two figures per mode, in one run:
//! - **throughput**: the same N one-task instances drained by the real daemon (fetch loop,
//!   pipeline, engine calls) from the in-repo engine over loopback, with a one-line script;
//! - **per-task overhead**: N calls of the endpoint alone, one after another, with the same script
//!   — p50 and p99 of the call, which is procos's cost around the script (start-up per task in
//!   process mode, the runner's round trip in warm mode).
//!
//! A third row drains the same tasks with the community Python client
//! (`camunda-external-task-client-python3`, benches/python_client.py) running the same function
//! in its own process, when `BENCH_CLIENT_PYTHON` (default `python3`) can import it:
//!
//!     python3 -m venv /tmp/cv && /tmp/cv/bin/pip install camunda-external-task-client-python3
//!     BENCH_CLIENT_PYTHON=/tmp/cv/bin/python cargo bench --bench python
//!
//! Not a test: nothing is asserted.

use std::path::Path;
use std::time::{Duration, Instant};

use procos::endpoints::python::sandbox::SandboxConfig;
use procos::endpoints::python::{Mode, PythonConfig, PythonEndpoint};
use procos::endpoints::{Endpoint, EndpointRequest};
use procos::engine::{Engine, EngineOptions};
use serde_json::json;

mod support;

const BPMN: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="bench">
  <bpmn:process id="bench" isExecutable="true" camunda:historyTimeToLive="P1D">
    <bpmn:startEvent id="s" />
    <bpmn:serviceTask id="a" camunda:type="external" camunda:topic="double" />
    <bpmn:endEvent id="e" />
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="a" />
    <bpmn:sequenceFlow id="f2" sourceRef="a" targetRef="e" />
  </bpmn:process>
</bpmn:definitions>"#;

/// The one-line task, runnable in both modes.
const SCRIPT: &str = r#"import json, sys

def handle(task):
    return {"doubled": task["variables"]["n"] * 2}

if __name__ == "__main__":
    json.dump(handle(json.load(sys.stdin)), sys.stdout)
"#;

/// Interpreters (warm) or scripts at once (process): one per core of the 2-core reference host,
/// and a few more to cover the engine round trips.
const WORKERS: usize = 4;

fn main() {
    let tasks: usize = std::env::var("BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("scripts")).expect("scripts dir");
    std::fs::write(dir.path().join("scripts/double.py"), SCRIPT).expect("script");
    println!(
        "python endpoint, {tasks} tasks per mode, worker_pool_size {WORKERS}, one-line script"
    );
    println!(
        "{:<14} {:>10} {:>14} {:>14}",
        "mode", "tasks/s", "call p50", "call p99"
    );
    let mut rates = Vec::new();
    let rows = [
        ("process", Mode::Process, false),
        ("warm", Mode::Warm, false),
        ("warm+sandbox", Mode::Warm, true),
    ];
    for (name, mode, sandbox) in rows {
        let rate = runtime.block_on(drain(dir.path(), mode, sandbox, tasks));
        let (p50, p99) = runtime.block_on(overhead(dir.path(), mode, sandbox, tasks));
        println!("{name:<14} {rate:>10.0} {p50:>14.2?} {p99:>14.2?}");
        rates.push(rate);
    }
    println!(
        "warm vs process: {:.1}× the throughput; the sandbox costs warm {:.1}%",
        rates[1] / rates[0],
        (1.0 - rates[2] / rates[1]) * 100.0
    );
    match runtime.block_on(community_client(tasks)) {
        Some(rate) => {
            println!(
                "{:<8} {rate:>10.0}   (community Python client, in process)",
                "client"
            );
            println!("warm vs client:  {:.1}× the throughput", rates[1] / rate);
        }
        None => println!(
            "client: skipped — set BENCH_CLIENT_PYTHON to a python that has \
             camunda-external-task-client-python3"
        ),
    }
}

/// Drains `tasks` instances with the community client; `None` when it is not installed.
async fn community_client(tasks: usize) -> Option<f64> {
    let python = std::env::var("BENCH_CLIENT_PYTHON").unwrap_or_else(|_| "python3".into());
    let installed = std::process::Command::new(&python)
        .args(["-c", "import camunda.external_task.external_task_worker"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        return None;
    }
    let engine = Engine::start_local(EngineOptions {
        quiet: true,
        ..Default::default()
    })
    .await
    .expect("engine");
    let http = reqwest::Client::new();
    let form = reqwest::multipart::Form::new()
        .text("deployment-name", "bench")
        .part(
            "bench.bpmn",
            reqwest::multipart::Part::text(BPMN).file_name("bench.bpmn"),
        );
    let deployed = http
        .post(format!("{}/deployment/create", engine.url))
        .multipart(form)
        .send()
        .await
        .expect("deploy");
    assert!(
        deployed.status().is_success(),
        "deploy: {}",
        deployed.status()
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/python_client.py");
    let mut worker = tokio::process::Command::new(&python)
        .args([script, &engine.url])
        .kill_on_drop(true)
        .spawn()
        .expect("the client starts");
    let start_url = format!("{}/process-definition/key/bench/start", engine.url);
    let body = json!({"variables": {"n": {"value": 21, "type": "Integer"}}});
    let started = Instant::now();
    for _ in 0..tasks {
        http.post(&start_url)
            .json(&body)
            .send()
            .await
            .expect("start");
    }
    while engine.engine.stats().instances_completed < tasks as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let _ = worker.kill().await;
    Some(tasks as f64 / elapsed.as_secs_f64())
}

/// Drains `tasks` instances through the daemon with the endpoint in `mode` (sandboxed with the
/// defaults when `sandbox`); tasks per second.
async fn drain(dir: &Path, mode: Mode, sandbox: bool, tasks: usize) -> f64 {
    let mode = match mode {
        Mode::Process => "process",
        Mode::Warm => "warm",
    };
    let engine = Engine::start_local(EngineOptions {
        quiet: true,
        ..Default::default()
    })
    .await
    .expect("engine");
    let bpmn = tempfile::tempdir().expect("tempdir");
    std::fs::write(bpmn.path().join("bench.bpmn"), BPMN).expect("bpmn");
    let yaml = format!(
        r#"
camunda: {{ url: "{}", long_poll: 20s, max_tasks: 200 }}
deploy: {{ dir: "{}", watch: false }}
admin: {{ listen: "127.0.0.1:0" }}
pde_manager:
  pools:
    gp: {{ instances: 2, endpoints: [py], max_concurrent_tasks: 32 }}
topics:
  double: {{ pool: gp, endpoints: [py] }}
endpoints:
  py: {{ type: python, mode: {mode}, sandbox: {sandbox}, pure: true, scripts_dir: "{}", worker_pool_size: {WORKERS} }}
"#,
        engine.url,
        bpmn.path().display(),
        dir.join("scripts").display()
    );
    let body = json!({"variables": {"n": {"value": 21, "type": "Integer"}}});
    let drained = support::drain(&engine, &yaml, "bench", &body, tasks).await;
    tasks as f64 / drained.elapsed.as_secs_f64()
}

/// p50 and p99 of `calls` endpoint calls, one after another (the first, warm-up call excluded).
async fn overhead(dir: &Path, mode: Mode, sandbox: bool, calls: usize) -> (Duration, Duration) {
    let config = PythonConfig {
        mode,
        sandbox: sandbox.then(SandboxConfig::default),
        scripts_dir: dir.join("scripts"),
        worker_pool_size: WORKERS,
        ..PythonConfig::default()
    };
    let endpoint = PythonEndpoint::new("py", &config).expect("endpoint");
    let mut request = EndpointRequest {
        topic: "double".into(),
        task_id: "t".into(),
        ..Default::default()
    };
    request.variables.insert("n".into(), json!(21));
    endpoint.call(&request).await.expect("warm-up call");
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        let reply = endpoint.call(&request).await.expect("call");
        times.push(started.elapsed());
        assert_eq!(reply.output, json!({"doubled": 42}));
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    (at(0.50), at(0.99))
}
