//! Meta-PDEs end to end in process: a real manager and pipeline built from YAML, `noop` steps
//! with delays under paused time (so durations are exact), pools with real bounds.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::camunda::{CamundaClient, ClientSettings};
use crate::endpoints::{Endpoint, ErrorKind};
use crate::manager::{Manager, build_endpoints};

const CONFIG: &str = r#"
camunda: { url: "http://127.0.0.1:9/engine-rest" }
pde_manager:
  pools:
    meta: { instances: 1, endpoints: [claim, chain, serial, broken], max_concurrent_tasks: 4 }
    ai: { instances: 1, endpoints: [slow], max_concurrent_tasks: 1 }
    gp: { instances: 1, endpoints: [slow, fast], max_concurrent_tasks: 4 }
topics:
  analyse: { pool: meta, endpoints: [claim] }
  summarise: { pool: ai, endpoints: [slow] }
  extract: { pool: gp, endpoints: [slow] }
  strict: { pool: gp, endpoints: [fast], input: { required: [doc] } }
endpoints:
  slow: { type: noop, delay: 300ms }
  fast: { type: noop }
  claim:
    type: sub_pde
    steps:
      - { name: analysis, topic: summarise, input: { text: "{{ claim_text }}" } }
      - { name: figures, topic: extract, input: { doc: "{{ claim_text | upper }}" } }
  serial:
    type: sub_pde
    parallel: false
    combine: list
    steps:
      - { name: a, topic: summarise }
      - { name: b, topic: extract }
  chain:
    type: sub_pde
    combine: merge
    steps:
      - { name: b, topic: extract, input: { prev: "{{ steps.a.x }}", n: "{{ steps.a.n }}" } }
      - { name: a, topic: summarise, input: { x: "from a", n: 7 } }
  broken:
    type: sub_pde
    steps:
      - { name: analysis, topic: summarise }
      - { name: figures, topic: strict, input: { nodoc: 1 } }
"#;

fn manager() -> Manager {
    let config = crate::config::load_str(CONFIG, Path::new("t.yaml"), &|_| None).expect("config");
    let camunda = CamundaClient::new(ClientSettings {
        url: config.camunda.url.clone(),
        auth: None,
        worker_id: "w".into(),
        request_timeout: Duration::from_secs(1),
    })
    .expect("client");
    let endpoints =
        build_endpoints(&config, &crate::endpoints::BuildContext::default()).expect("endpoints");
    Manager::new(
        &config,
        camunda,
        &endpoints,
        crate::journal::Journal::in_memory(Duration::from_secs(60)),
        std::sync::Arc::new(crate::learner::Learner::default()),
    )
    .expect("manager")
}

/// A parent task's request as the pipeline builds it, carrying the pipeline's runner.
fn request(m: &Manager, vars: Value) -> EndpointRequest {
    EndpointRequest {
        task_id: "t1".into(),
        topic: "analyse".into(),
        variables: vars.as_object().cloned().unwrap_or_default(),
        sub_tasks: m.pipeline().sub_tasks(),
        ..Default::default()
    }
}

fn endpoint(m: &Manager, name: &str) -> Arc<dyn Endpoint> {
    m.pipeline().topics()["analyse"].pool_endpoints[name].clone()
}

#[tokio::test(start_paused = true)]
async fn parallel_steps_overlap_and_combine_by_name() {
    let m = manager();
    let started = Instant::now();
    let reply = endpoint(&m, "claim")
        .call(&request(
            &m,
            json!({"claim_text": "Water damage, 1200 EUR"}),
        ))
        .await
        .expect("done");
    let elapsed = started.elapsed();
    assert_eq!(
        elapsed,
        Duration::from_millis(300),
        "two 300 ms steps ran at the same time (paused time is exact)"
    );
    assert_eq!(
        reply.output,
        json!({
            "analysis": {"text": "Water damage, 1200 EUR"},
            "figures": {"doc": "WATER DAMAGE, 1200 EUR"},
        })
    );
}

#[tokio::test(start_paused = true)]
async fn serial_steps_run_one_after_another_and_combine_as_a_list() {
    let m = manager();
    let started = Instant::now();
    let reply = endpoint(&m, "serial")
        .call(&request(&m, json!({"k": 1})))
        .await
        .expect("done");
    assert_eq!(started.elapsed(), Duration::from_millis(600));
    assert_eq!(
        reply.output,
        json!([{"k": 1}, {"k": 1}]),
        "without input a step gets all the task's variables"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dependent_step_sees_its_predecessors_output() {
    let m = manager();
    let started = Instant::now();
    let reply = endpoint(&m, "chain")
        .call(&request(&m, json!({})))
        .await
        .expect("done");
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(600),
        "b waited for a although listed first"
    );
    assert_eq!(
        reply.output,
        json!({"x": "from a", "n": 7, "prev": "from a"}),
        "merge: a's and b's objects in step order; b saw a's result"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_step_fails_the_parent_naming_it_and_cancels_the_others() {
    let m = manager();
    let started = Instant::now();
    let error = endpoint(&m, "broken")
        .call(&request(&m, json!({})))
        .await
        .expect_err("fails");
    assert!(
        error
            .message
            .starts_with("step `figures` (topic strict) failed: input invalid"),
        "{error}"
    );
    assert!(error.message.contains("`doc`"), "{error}");
    assert_eq!(error.kind, ErrorKind::Permanent);
    assert_eq!(error.code.as_deref(), Some("input_invalid"));
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "the slow sibling was not awaited"
    );
    assert_eq!(
        m.pools()["ai"].free(),
        1,
        "the cancelled sibling gave its slot back"
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_pool_makes_the_step_wait_not_deadlock() {
    let m = manager();
    let held = m.pools()["ai"].reserve(1).expect("the ai pool's only slot");
    let call = {
        let ep = endpoint(&m, "claim");
        let req = request(&m, json!({"claim_text": "x"}));
        tokio::spawn(async move {
            let started = Instant::now();
            let reply = ep.call(&req).await;
            (reply, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!call.is_finished(), "the analysis step waits for a slot");
    drop(held);
    let (reply, elapsed) = call.await.expect("joins");
    assert!(reply.is_ok(), "{reply:?}");
    assert_eq!(
        elapsed,
        Duration::from_millis(5300),
        "it ran as soon as the slot was free"
    );
    assert_eq!(m.pools()["ai"].free(), 1);
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_parent_while_a_step_waits_for_a_slot_cancels_it() {
    let m = manager();
    let _held = m.pools()["ai"].reserve(1).expect("the ai pool's only slot");
    let cancel = CancellationToken::new();
    let mut req = request(&m, json!({"claim_text": "x"}));
    req.cancel = cancel.clone();
    let ep = endpoint(&m, "claim");
    let call = tokio::spawn(async move { ep.call(&req).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    cancel.cancel();
    let error = call.await.expect("joins").expect_err("cancelled");
    assert_eq!(error.kind, ErrorKind::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn sub_tasks_are_refused_beyond_the_depth_limit_and_for_unknown_topics() {
    let m = manager();
    let runner = m.pipeline().sub_tasks().expect("installed by the manager");
    let mut parent = request(&m, json!({}));
    let error = runner
        .run("nope", serde_json::Map::new(), &parent)
        .await
        .expect_err("unknown");
    assert!(error.message.contains("`nope`"), "{error}");
    parent.depth = MAX_SUB_TASK_DEPTH;
    let error = runner
        .run("extract", serde_json::Map::new(), &parent)
        .await
        .expect_err("too deep");
    assert_eq!(error.kind, ErrorKind::Permanent);
}

#[tokio::test(start_paused = true)]
async fn a_sub_pde_outside_a_pipeline_says_so() {
    let m = manager();
    let error = endpoint(&m, "claim")
        .call(&EndpointRequest::default())
        .await
        .expect_err("no runner");
    assert!(error.message.contains("inside a PDE pipeline"), "{error}");
}
