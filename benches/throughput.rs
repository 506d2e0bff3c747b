//! Throughput of procos itself: the whole daemon (fetch loop, pools, pipeline, engine calls)
//! against the in-memory engine over loopback HTTP, with `noop` endpoints so that only procos's
//! own overhead is measured.
//!
//!     cargo bench --bench throughput            # 2000 instances
//!     BENCH_INSTANCES=10000 cargo bench --bench throughput
//!
//! Runs twice in one process, side by side: the outcome journal in memory (no `state_dir`) and
//! on disk (`state_dir` set: every report is fsynced before it is sent, in group commits), and
//! prints tasks per second, the ratio between the two, and the engine-call counts per task. Not a
//! test: nothing is asserted.

use procos::engine::{Engine, EngineOptions};
use serde_json::json;

mod support;

const BPMN: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="bench">
  <bpmn:process id="bench" isExecutable="true" camunda:historyTimeToLive="P1D">
    <bpmn:startEvent id="s" />
    <bpmn:serviceTask id="a" camunda:type="external" camunda:topic="step_a" />
    <bpmn:serviceTask id="b" camunda:type="external" camunda:topic="step_b" />
    <bpmn:endEvent id="e" />
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="a" />
    <bpmn:sequenceFlow id="f2" sourceRef="a" targetRef="b" />
    <bpmn:sequenceFlow id="f3" sourceRef="b" targetRef="e" />
  </bpmn:process>
</bpmn:definitions>"#;

fn main() {
    let instances: usize = std::env::var("BENCH_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let memory = runtime.block_on(run(instances, false));
    let disk = runtime.block_on(run(instances, true));
    println!(
        "journal on disk vs in memory: {:.2}× the throughput",
        disk / memory
    );
}

/// One run; returns tasks per second.
async fn run(instances: usize, durable: bool) -> f64 {
    let engine = Engine::start_local(EngineOptions {
        quiet: true,
        ..Default::default()
    })
    .await
    .expect("engine");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("bpmn")).expect("bpmn dir");
    std::fs::write(dir.path().join("bpmn/bench.bpmn"), BPMN).expect("bpmn");
    let state_dir = if durable {
        format!("state_dir: \"{}\"", dir.path().join("state").display())
    } else {
        String::new()
    };
    let yaml = format!(
        r#"
camunda: {{ url: "{}", long_poll: 20s, max_tasks: 200 }}
deploy: {{ dir: "{}", watch: false }}
admin: {{ listen: "127.0.0.1:0" }}
pde_manager:
  {state_dir}
  pools:
    general_purpose: {{ instances: 4, endpoints: [echo], max_concurrent_tasks: 100 }}
    integration: {{ instances: 2, endpoints: [echo], max_concurrent_tasks: 100 }}
topics:
  step_a: {{ pool: general_purpose, endpoints: [echo] }}
  step_b: {{ pool: integration, endpoints: [echo] }}
endpoints:
  echo: {{ type: noop }}
"#,
        engine.url,
        dir.path().join("bpmn").display()
    );
    let body = json!({"variables": {"order": {"value": 42, "type": "Integer"}, "note": {"value": "benchmark", "type": "String"}}});
    let support::Drained { starting, elapsed } =
        support::drain(&engine, &yaml, "bench", &body, instances).await;
    let stats = engine.engine.stats();

    let tasks = 2 * instances;
    let journal = if durable { "on disk" } else { "in memory" };
    println!(
        "procos throughput (noop endpoints, in-memory engine over loopback, 2 pools, journal {journal})"
    );
    println!("  instances:          {instances} ({tasks} external tasks)");
    println!("  starting them took: {:.2?}", starting);
    println!("  all completed in:   {:.2?}", elapsed);
    println!(
        "  throughput:         {:.0} tasks/s",
        tasks as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  fetchAndLock calls: {} ({:.2} tasks per fetch)",
        stats.fetch_calls,
        stats.fetched_tasks as f64 / stats.fetch_calls.max(1) as f64
    );
    println!(
        "  complete calls:     {} ok, {} rejected",
        stats.complete_ok, stats.complete_rejected
    );
    println!(
        "  engine requests:    {} ({:.2} per task)",
        stats.requests,
        stats.requests as f64 / tasks as f64
    );
    tasks as f64 / elapsed.as_secs_f64()
}
