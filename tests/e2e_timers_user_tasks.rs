//! `procos dev` runs a model with a timer start event, an external task served by a PDE, an
//! input/output mapping, an intermediate timer and a user task; a person completes the user task
//! over REST (what `curl` would send) and the instance completes.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Procos, Rest, Workdir, config, free_port};

/// Timer start (once, after 1 s) → external task `stamp` (input `owner`, output `stamped_by`)
/// → timer 1 s → user task → end.
const MODEL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="http://procos.dev/test">
  <bpmn:process id="nightly" isExecutable="true" camunda:historyTimeToLive="P1D">
    <bpmn:startEvent id="every_second"><bpmn:timerEventDefinition><bpmn:timeCycle>R1/PT1S</bpmn:timeCycle></bpmn:timerEventDefinition></bpmn:startEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="every_second" targetRef="stamp" />
    <bpmn:serviceTask id="stamp" camunda:type="external" camunda:topic="stamp">
      <bpmn:extensionElements><camunda:inputOutput>
        <camunda:inputParameter name="owner">ops</camunda:inputParameter>
        <camunda:inputParameter name="reviewer"><camunda:map><camunda:entry key="name">alice</camunda:entry></camunda:map></camunda:inputParameter>
        <camunda:outputParameter name="stamped_by">${owner}-${reviewer.name}</camunda:outputParameter>
      </camunda:inputOutput></bpmn:extensionElements>
    </bpmn:serviceTask>
    <bpmn:sequenceFlow id="f2" sourceRef="stamp" targetRef="pause" />
    <bpmn:intermediateCatchEvent id="pause"><bpmn:timerEventDefinition><bpmn:timeDuration>PT1S</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f3" sourceRef="pause" targetRef="approve" />
    <bpmn:userTask id="approve" name="Approve the report" camunda:candidateGroups="ops" />
    <bpmn:sequenceFlow id="f4" sourceRef="approve" targetRef="done" />
    <bpmn:endEvent id="done" />
  </bpmn:process>
</bpmn:definitions>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_started_instance_with_a_user_task_completes_in_procos_dev() {
    let cfg = config(
        "",
        &["echo"],
        "  stamp: { pool: gp, endpoints: [echo] }\n",
        "  echo: { type: noop }\n",
    );
    let work = Workdir::new(&cfg, &[("nightly.bpmn", MODEL)]);
    let listen = format!("127.0.0.1:{}", free_port());
    let url = format!("http://{listen}/engine-rest");
    let mut dev = Procos::spawn(
        work.path(),
        &["dev", "--config", "pde.yaml", "--listen", &listen],
        &[("CAMUNDA_URL", &url)],
    );
    let rest = Rest::new(&url);
    rest.wait_deployed("nightly", Duration::from_secs(10)).await;

    // Nobody starts it: the timer does, the PDE runs `stamp`, the timer waits, then a person.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let task: Value = loop {
        let tasks = rest.get("/task?processDefinitionKey=nightly").await;
        if tasks[0].is_object() {
            break tasks[0].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no user task within 10 s; jobs: {}",
            rest.get("/job").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(task["name"], "Approve the report");
    let pi = task["processInstanceId"]
        .as_str()
        .expect("instance")
        .to_owned();
    let id = task["id"].as_str().expect("task id");

    // curl -X POST -H 'Content-Type: application/json' \
    //   -d '{"variables": {"approved": {"value": true, "type": "Boolean"}}}' $URL/task/$ID/complete
    let done = rest
        .http
        .post(format!("{url}/task/{id}/complete"))
        .json(&json!({"variables": {"approved": {"value": true, "type": "Boolean"}}}))
        .send()
        .await
        .expect("complete");
    assert_eq!(done.status().as_u16(), 204);
    let vars = rest.wait_ended(&pi, Duration::from_secs(5)).await;
    assert_eq!(vars.get("approved"), Some(&json!(true)));
    assert_eq!(
        vars.get("stamped_by"),
        Some(&json!("ops-alice")),
        "the output mapping read the task's input variables"
    );
    assert_eq!(
        vars.get("owner"),
        None,
        "input variables are the task's own"
    );
    assert_eq!(
        rest.get("/history/process-instance/count?processDefinitionKey=nightly")
            .await["count"],
        1,
        "R1 started exactly one instance"
    );
    dev.sigterm();
    assert_eq!(dev.exit_code(Duration::from_secs(20)).await, 0);
}
