//! Data mapping through the REST API: `camunda:inputOutput`, error variables of boundary
//! events, and `${…}` in `camunda:topic` / `camunda:taskPriority`.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{Api, Part};

/// A process around one external task `work`; `task_extra` goes inside the task element,
/// `task_attrs` on it, `after` after the task (boundary events and their flows).
fn model(
    key: &str,
    process_attrs: &str,
    task_attrs: &str,
    task_extra: &str,
    after: &str,
) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="t">
  <bpmn:error id="Err_1" name="bad" errorCode="BAD" />
  <bpmn:process id="{key}" isExecutable="true" camunda:historyTimeToLive="P1D" {process_attrs}>
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="work" />
    <bpmn:serviceTask id="work" camunda:type="external" {task_attrs}>{task_extra}</bpmn:serviceTask>
    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="next" />
    <bpmn:serviceTask id="next" camunda:type="external" camunda:topic="next" />
    <bpmn:sequenceFlow id="f3" sourceRef="next" targetRef="end" />
    <bpmn:endEvent id="end" />
    {after}
  </bpmn:process>
</bpmn:definitions>"#
    )
}

const IO: &str = r#"<bpmn:extensionElements><camunda:inputOutput>
  <camunda:inputParameter name="greeting">Hello ${name}</camunda:inputParameter>
  <camunda:inputParameter name="total">${order.total}</camunda:inputParameter>
  <camunda:inputParameter name="copy">${n}</camunda:inputParameter>
  <camunda:inputParameter name="fixed">  plain text  </camunda:inputParameter>
  <camunda:inputParameter name="nothing" />
  <camunda:inputParameter name="sum">${n + 1}</camunda:inputParameter>
  <camunda:inputParameter name="items"><camunda:list><camunda:value>a</camunda:value><camunda:value>${n}</camunda:value></camunda:list></camunda:inputParameter>
  <camunda:inputParameter name="lookup"><camunda:map><camunda:entry key="z">${name}</camunda:entry><camunda:entry key="a">1</camunda:entry></camunda:map></camunda:inputParameter>
  <camunda:inputParameter name="nested"><camunda:list><camunda:map><camunda:entry key="k"><camunda:list><camunda:value>${n}</camunda:value></camunda:list></camunda:entry><camunda:entry key="${name}" /></camunda:map></camunda:list></camunda:inputParameter>
  <camunda:inputParameter name="escaped">${n &lt; 50 ? 'small' : 'big'}</camunda:inputParameter>
  <camunda:outputParameter name="result">${answer} for ${greeting}</camunda:outputParameter>
  <camunda:outputParameter name="cleared" />
</camunda:inputOutput></bpmn:extensionElements>"#;

fn start_vars() -> Value {
    json!({
        "name": {"value": "Ann", "type": "String"},
        "n": {"value": 41, "type": "Integer"},
        "order": {"value": "{\"total\": 12.5}", "type": "Json"},
        "cleared": {"value": "old", "type": "String"}
    })
}

async fn deploy(api: &Api, xml: String) {
    let a = api.deploy(&[Part::file("data", "m.bpmn", xml)]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

async fn deploy_refused(api: &Api, xml: String) -> String {
    let a = api.deploy(&[Part::file("data", "m.bpmn", xml)]).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    a.body["details"]["m.bpmn"]["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn history_vars(api: &Api, pi: &str) -> Value {
    let a = api
        .get(&format!(
            "/history/variable-instance?processInstanceId={pi}"
        ))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let mut out = serde_json::Map::new();
    for v in a.body.as_array().cloned().unwrap_or_default() {
        let name = v["name"].as_str().unwrap_or_default().to_owned();
        out.insert(name, json!({"type": v["type"], "value": v["value"]}));
    }
    Value::Object(out)
}

#[tokio::test]
async fn input_parameters_become_local_variables_of_the_task() {
    let api = Api::new();
    deploy(&api, model("io", "", r#"camunda:topic="work""#, IO, "")).await;
    let pi = api.start("io", start_vars()).await;
    let tasks = api.fetch("w", "work").await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let t = &tasks[0];
    let v = &t["variables"];
    assert_eq!(
        v["greeting"],
        json!({"type": "String", "value": "Hello Ann", "valueInfo": {}})
    );
    assert_eq!(v["total"]["type"], "Double");
    assert_eq!(v["total"]["value"], json!(12.5));
    assert_eq!(
        v["copy"]["type"], "Integer",
        "${{n}} keeps the variable's type"
    );
    assert_eq!(v["copy"]["value"], json!(41));
    assert_eq!(v["fixed"]["value"], "plain text");
    assert_eq!(v["nothing"]["type"], "Null");
    assert_eq!(
        v["sum"],
        json!({"type": "Long", "value": 42, "valueInfo": {}})
    );
    assert_eq!(v["items"]["type"], "Object");
    assert_eq!(
        v["items"]["valueInfo"]["serializationDataFormat"],
        "application/json"
    );
    let items: Value =
        serde_json::from_str(v["items"]["value"].as_str().expect("json text")).expect("json");
    assert_eq!(items, json!(["a", 41]));
    let lookup: Value =
        serde_json::from_str(v["lookup"]["value"].as_str().expect("json text")).expect("json");
    assert_eq!(lookup, json!({"a": "1", "z": "Ann"}));
    let nested: Value =
        serde_json::from_str(v["nested"]["value"].as_str().expect("json text")).expect("json");
    assert_eq!(nested, json!([{"Ann": null, "k": [41]}]));
    assert_eq!(v["escaped"]["value"], "small");
    // The activity is a scope: its own execution, and its inputs are not process variables.
    assert_ne!(t["executionId"], json!(pi));
    let process = api.get(&format!("/process-instance/{pi}/variables")).await;
    assert!(process.body.get("greeting").is_none(), "{}", process.body);
}

#[tokio::test]
async fn output_parameters_are_set_on_the_process_and_locals_die_with_the_task() {
    let api = Api::new();
    deploy(&api, model("io", "", r#"camunda:topic="work""#, IO, "")).await;
    let pi = api.start("io", start_vars()).await;
    let task = api.fetch_one("w", "work").await;
    let done = api
        .complete(
            &task,
            "w",
            json!({"answer": {"value": 42, "type": "Integer"}}),
        )
        .await;
    assert_eq!(done.status, StatusCode::NO_CONTENT, "{}", done.body);
    let next = api.fetch("w", "next").await;
    assert_eq!(next.len(), 1);
    let v = &next[0]["variables"];
    assert_eq!(v["result"]["value"], "42 for Hello Ann");
    assert_eq!(
        v["cleared"]["type"], "Null",
        "an output without a value sets null"
    );
    assert_eq!(
        v["answer"]["value"],
        json!(42),
        "complete's variables land on the process"
    );
    for local in ["greeting", "copy", "items", "fixed"] {
        assert!(v.get(local).is_none(), "{local} outlived its activity: {v}");
    }
    let id = next[0]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        api.complete(&id, "w", json!({})).await.status,
        StatusCode::NO_CONTENT
    );
    let h = history_vars(&api, &pi).await;
    assert_eq!(h["result"]["value"], "42 for Hello Ann", "{h}");
    assert!(h.get("greeting").is_none(), "{h}");
}

#[tokio::test]
async fn complete_overwrites_a_local_of_the_same_name_which_outputs_can_map() {
    let api = Api::new();
    let io = r#"<bpmn:extensionElements><camunda:inputOutput>
      <camunda:inputParameter name="draft">${name}</camunda:inputParameter>
      <camunda:outputParameter name="final">${draft}</camunda:outputParameter>
    </camunda:inputOutput></bpmn:extensionElements>"#;
    deploy(&api, model("io", "", r#"camunda:topic="work""#, io, "")).await;
    let pi = api.start("io", start_vars()).await;
    let task = api.fetch_one("w", "work").await;
    let done = api
        .complete(
            &task,
            "w",
            json!({"draft": {"value": "edited", "type": "String"}}),
        )
        .await;
    assert_eq!(done.status, StatusCode::NO_CONTENT, "{}", done.body);
    let vars = api
        .get(&format!("/process-instance/{pi}/variables"))
        .await
        .body;
    assert_eq!(vars["final"]["value"], "edited", "{vars}");
    assert!(
        vars.get("draft").is_none(),
        "draft was the task's local: {vars}"
    );
}

#[tokio::test]
async fn an_output_of_an_unknown_variable_fails_the_completion_and_changes_nothing() {
    let api = Api::new();
    deploy(&api, model("io", "", r#"camunda:topic="work""#, IO, "")).await;
    let _pi = api.start("io", start_vars()).await;
    let task = api.fetch_one("w", "work").await;
    let a = api.complete(&task, "w", json!({})).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", a.body);
    assert!(
        a.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("Cannot resolve identifier 'answer'")),
        "{}",
        a.body
    );
    assert!(api.fetch("w", "next").await.is_empty());
    let again = api
        .complete(
            &task,
            "w",
            json!({"answer": {"value": 1, "type": "Integer"}}),
        )
        .await;
    assert_eq!(again.status, StatusCode::NO_CONTENT, "{}", again.body);
}

#[tokio::test]
async fn an_error_boundary_receives_the_code_message_and_variables_of_the_bpmn_error() {
    let api = Api::new();
    let after = r#"<bpmn:boundaryEvent id="onBad" attachedToRef="work"><bpmn:errorEventDefinition errorRef="Err_1" camunda:errorCodeVariable="code" camunda:errorMessageVariable="why" /></bpmn:boundaryEvent>
    <bpmn:sequenceFlow id="fBad" sourceRef="onBad" targetRef="fix" />
    <bpmn:serviceTask id="fix" camunda:type="external" camunda:topic="fix" />
    <bpmn:sequenceFlow id="fFix" sourceRef="fix" targetRef="end" />"#;
    deploy(&api, model("err", "", r#"camunda:topic="work""#, "", after)).await;
    api.start("err", start_vars()).await;
    let task = api.fetch_one("w", "work").await;
    let a = api
        .post(
            &format!("/external-task/{task}/bpmnError"),
            json!({"workerId": "w", "errorCode": "BAD", "errorMessage": "out of stock",
                   "variables": {"sku": {"value": "X-1", "type": "String"}}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    let fix = api.fetch("w", "fix").await;
    assert_eq!(fix.len(), 1);
    let v = &fix[0]["variables"];
    assert_eq!(v["code"]["value"], "BAD", "{v}");
    assert_eq!(v["why"]["value"], "out of stock", "{v}");
    assert_eq!(v["sku"]["value"], "X-1", "{v}");

    // Without an errorMessage, the message variable is null.
    let api = Api::new();
    deploy(&api, model("err", "", r#"camunda:topic="work""#, "", after)).await;
    api.start("err", start_vars()).await;
    let task = api.fetch_one("w", "work").await;
    let a = api
        .post(
            &format!("/external-task/{task}/bpmnError"),
            json!({"workerId": "w", "errorCode": "BAD"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    let fix = api.fetch("w", "fix").await;
    assert_eq!(fix[0]["variables"]["why"]["type"], "Null");
    assert_eq!(fix[0]["variables"]["code"]["value"], "BAD");
}

#[tokio::test]
async fn a_topic_expression_is_evaluated_when_the_task_is_created() {
    let api = Api::new();
    deploy(
        &api,
        model("t", "", r#"camunda:topic="${kind}-jobs""#, "", ""),
    )
    .await;
    api.start("t", json!({"kind": {"value": "pdf", "type": "String"}}))
        .await;
    assert!(api.fetch("w", "${kind}-jobs").await.is_empty());
    let tasks = api.fetch("w", "pdf-jobs").await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["topicName"], "pdf-jobs");

    // Like Camunda's parseTopic, only a topic that starts with ${ is an expression.
    let api = Api::new();
    deploy(
        &api,
        model("l", "", r#"camunda:topic="jobs-${kind}""#, "", ""),
    )
    .await;
    api.start("l", json!({})).await;
    assert_eq!(api.fetch("w", "jobs-${kind}").await.len(), 1);
}

#[tokio::test]
async fn a_priority_expression_is_evaluated_and_must_be_an_integer() {
    let api = Api::new();
    deploy(
        &api,
        model(
            "p",
            "",
            r#"camunda:topic="work" camunda:taskPriority="${prio * 2}""#,
            "",
            "",
        ),
    )
    .await;
    api.start("p", json!({"prio": {"value": 21, "type": "Integer"}}))
        .await;
    let tasks = api.fetch("w", "work").await;
    assert_eq!(tasks[0]["priority"], json!(42));

    // Like Camunda's priority provider: only Short / Integer / Long values are priorities.
    deploy(
        &api,
        model(
            "q",
            "",
            r#"camunda:topic="work" camunda:taskPriority="${prio}""#,
            "",
            "",
        ),
    )
    .await;
    for (value, message) in [
        (
            json!({"value": "high", "type": "String"}),
            "Priority value is not an Integer",
        ),
        (
            json!({"value": "7", "type": "String"}),
            "Priority value is not an Integer",
        ),
        (
            json!({"value": 2.5, "type": "Double"}),
            "Priority value must be either Short, Integer, or Long",
        ),
    ] {
        let a = api
            .post(
                "/process-definition/key/q/start",
                json!({"variables": {"prio": value}}),
            )
            .await;
        assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", a.body);
        assert!(
            a.body["message"]
                .as_str()
                .is_some_and(|m| m.contains(message) && m.contains("'work'")),
            "{}",
            a.body
        );
    }
    assert_eq!(
        api.get("/process-instance/count").await.body["count"],
        json!(1),
        "failed starts leave no instance"
    );
}

#[tokio::test]
async fn the_process_task_priority_is_the_default_of_its_external_tasks() {
    let api = Api::new();
    let xml = model(
        "pp",
        r#"camunda:taskPriority="${base}""#,
        r#"camunda:topic="work""#,
        "",
        "",
    )
    .replace(
        r#"camunda:topic="next" "#,
        r#"camunda:topic="next" camunda:taskPriority="3" "#,
    );
    deploy(&api, xml).await;
    api.start("pp", json!({"base": {"value": 9, "type": "Long"}}))
        .await;
    let work = api.fetch("w", "work").await;
    assert_eq!(work[0]["priority"], json!(9), "process default");
    let id = work[0]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        api.complete(&id, "w", json!({})).await.status,
        StatusCode::NO_CONTENT
    );
    let next = api.fetch("w", "next").await;
    assert_eq!(
        next[0]["priority"],
        json!(3),
        "the task's own priority wins"
    );

    let api = Api::new();
    deploy(
        &api,
        model(
            "pc",
            r#"camunda:taskPriority="17""#,
            r#"camunda:topic="work""#,
            "",
            "",
        ),
    )
    .await;
    api.start("pc", json!({})).await;
    assert_eq!(api.fetch("w", "work").await[0]["priority"], json!(17));
}

#[tokio::test]
async fn unsupported_mappings_are_refused_at_deploy_naming_the_element() {
    let api = Api::new();
    let script = r#"<bpmn:extensionElements><camunda:inputOutput>
      <camunda:inputParameter name="s"><camunda:script scriptFormat="groovy">1 + 1</camunda:script></camunda:inputParameter>
    </camunda:inputOutput></bpmn:extensionElements>"#;
    let m = deploy_refused(&api, model("s", "", r#"camunda:topic="work""#, script, "")).await;
    assert!(m.contains("camunda:script") && m.contains("'work'"), "{m}");

    let on_end = model("e", "", r#"camunda:topic="work""#, "", "").replace(
        r#"<bpmn:endEvent id="end" />"#,
        r#"<bpmn:endEvent id="end"><bpmn:extensionElements><camunda:inputOutput><camunda:inputParameter name="x">1</camunda:inputParameter></camunda:inputOutput></bpmn:extensionElements></bpmn:endEvent>"#,
    );
    let m = deploy_refused(&api, on_end).await;
    assert!(
        m.contains("camunda:inputOutput") && m.contains("'end'"),
        "{m}"
    );

    let bad = r#"<bpmn:extensionElements><camunda:inputOutput>
      <camunda:inputParameter name="x">${a +}</camunda:inputParameter>
    </camunda:inputOutput></bpmn:extensionElements>"#;
    let m = deploy_refused(&api, model("b", "", r#"camunda:topic="work""#, bad, "")).await;
    assert!(m.contains("'x'") && m.contains("'work'"), "{m}");

    let m = deploy_refused(
        &api,
        model("t", "", r#"camunda:topic="${unclosed""#, "", ""),
    )
    .await;
    assert!(m.contains("camunda:topic"), "{m}");

    let nested_error = r#"<bpmn:extensionElements><camunda:errorEventDefinition id="e1" errorRef="Err_1" expression="${true}" /></bpmn:extensionElements>"#;
    let m = deploy_refused(
        &api,
        model("n", "", r#"camunda:topic="work""#, nested_error, ""),
    )
    .await;
    assert!(
        m.contains("camunda:errorEventDefinition") && m.contains("'work'"),
        "{m}"
    );

    // A fixed priority must be an Integer, as BpmnParse.parsePriority reads it.
    for fixed in ["3000000000", "high", "5${x}"] {
        let attrs = format!(r#"camunda:topic="work" camunda:taskPriority="{fixed}""#);
        let m = deploy_refused(&api, model("f", "", &attrs, "", "")).await;
        assert_eq!(
            m,
            format!("Value '{fixed}' for attribute 'taskPriority' is not a valid number")
        );
    }

    let nested = format!("${{{}1{}}}", "(".repeat(2_100), ")".repeat(2_100));
    let deep = format!(r#"camunda:topic="work" camunda:taskPriority="{nested}""#);
    let m = deploy_refused(&api, model("d", "", &deep, "", "")).await;
    assert!(m.contains("nested deeper than"), "{m}");
}

/// Lists nested 200,000 deep inside a parameter (6 MB, under the model limit) are refused at
/// deploy naming the limit; building, evaluating and dropping such a value recursed once per
/// level and overflowed the stack. An element inside a `camunda:value` is refused too (it was
/// silently dropped).
#[tokio::test]
async fn lists_nested_beyond_the_limit_are_refused_not_a_stack_overflow() {
    let api = Api::new();
    let depth = 200_000;
    let deep = format!(
        r#"<bpmn:extensionElements><camunda:inputOutput><camunda:inputParameter name="p">{}x{}</camunda:inputParameter></camunda:inputOutput></bpmn:extensionElements>"#,
        "<camunda:list>".repeat(depth),
        "</camunda:list>".repeat(depth)
    );
    let m = deploy_refused(&api, model("l", "", r#"camunda:topic="work""#, &deep, "")).await;
    assert!(
        m.contains("nested deeper than 64") && m.contains("'work'"),
        "{m}"
    );

    let fine = format!(
        r#"<bpmn:extensionElements><camunda:inputOutput><camunda:inputParameter name="p">{}x{}</camunda:inputParameter></camunda:inputOutput></bpmn:extensionElements>"#,
        "<camunda:list>".repeat(20),
        "</camunda:list>".repeat(20)
    );
    deploy(&api, model("ok", "", r#"camunda:topic="work""#, &fine, "")).await;

    let in_value = r#"<bpmn:extensionElements><camunda:inputOutput><camunda:inputParameter name="p"><camunda:list><camunda:value><camunda:list /></camunda:value></camunda:list></camunda:inputParameter></camunda:inputOutput></bpmn:extensionElements>"#;
    let m = deploy_refused(
        &api,
        model("v", "", r#"camunda:topic="work""#, in_value, ""),
    )
    .await;
    assert!(m.contains("inside camunda:value"), "{m}");
}

/// start → gateway: `condition` → task `yes` | default → task `no`.
fn gateway(condition: &str) -> String {
    format!(
        r#"<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn">
  <process id="gw" isExecutable="true" camunda:historyTimeToLive="30">
    <startEvent id="s" />
    <sequenceFlow id="f0" sourceRef="s" targetRef="x" />
    <exclusiveGateway id="x" default="toNo" />
    <sequenceFlow id="toYes" sourceRef="x" targetRef="yes"><conditionExpression>{condition}</conditionExpression></sequenceFlow>
    <sequenceFlow id="toNo" sourceRef="x" targetRef="no" />
    <serviceTask id="yes" camunda:type="external" camunda:topic="yes" />
    <serviceTask id="no" camunda:type="external" camunda:topic="no" />
  </process>
</definitions>"#
    )
}

#[tokio::test]
async fn hostile_conditions_are_refused_at_deploy_or_evaluated_without_crashing() {
    let api = Api::new();
    let parens = format!("${{{}true{}}}", "(".repeat(2_100), ")".repeat(2_100));
    let nots = format!("${{{}true}}", "!".repeat(7_100));
    for condition in [parens, nots] {
        let a = api
            .deploy(&[Part::file("data", "m.bpmn", gateway(&condition))])
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
        let err = &a.body["details"]["m.bpmn"]["errors"][0];
        let message = err["message"].as_str().unwrap_or_default();
        assert!(message.contains("nested deeper than 32"), "{message}");
        assert!(
            message.len() < 600,
            "the expression is quoted, not copied: {message}"
        );
        assert_eq!(err["bpmnElementIds"], json!(["toYes"]));
    }
    let chain = format!("${{{}true}}", "false || ".repeat(3_500));
    deploy(&api, gateway(&chain)).await;
    api.start("gw", json!({})).await;
    assert_eq!(api.fetch("w", "yes").await.len(), 1);
}

#[tokio::test]
async fn an_uncaught_bpmn_error_still_runs_the_output_mapping_as_the_execution_ends() {
    let api = Api::new();
    let io = r#"<bpmn:extensionElements><camunda:inputOutput>
      <camunda:outputParameter name="reported">${sku}</camunda:outputParameter>
    </camunda:inputOutput></bpmn:extensionElements>"#;
    deploy(&api, model("u", "", r#"camunda:topic="work""#, io, "")).await;
    let pi = api.start("u", json!({})).await;
    let task = api.fetch_one("w", "work").await;
    let a = api
        .post(
            &format!("/external-task/{task}/bpmnError"),
            json!({"workerId": "w", "errorCode": "NOBODY_CATCHES",
                   "variables": {"sku": {"value": "X-2", "type": "String"}}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    assert_eq!(api.history_state(&pi).await, "COMPLETED");
    let h = history_vars(&api, &pi).await;
    assert_eq!(h["reported"]["value"], "X-2", "{h}");
}
