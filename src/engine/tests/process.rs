//! Process execution (gateways), variables, request checking, fault injection.

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::{Api, Part, amount};

/// start → task a → gateway: `ok == 'yes'` → b | `n > 3` → c (no default) → end.
fn gateway_process() -> String {
    r#"<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn">
  <process id="gw" isExecutable="true" camunda:historyTimeToLive="30">
    <startEvent id="s" />
    <sequenceFlow id="f0" sourceRef="s" targetRef="a" />
    <serviceTask id="a" camunda:type="external" camunda:topic="a" />
    <sequenceFlow id="f1" sourceRef="a" targetRef="x" />
    <exclusiveGateway id="x" />
    <sequenceFlow id="toB" sourceRef="x" targetRef="b"><conditionExpression>${ok == 'yes'}</conditionExpression></sequenceFlow>
    <sequenceFlow id="toC" sourceRef="x" targetRef="c"><conditionExpression><![CDATA[${n > 3 && !stop}]]></conditionExpression></sequenceFlow>
    <serviceTask id="b" camunda:type="external" camunda:topic="b" />
    <serviceTask id="c" camunda:type="external" camunda:topic="c" />
    <sequenceFlow id="f2" sourceRef="b" targetRef="e" />
    <sequenceFlow id="f3" sourceRef="c" targetRef="p" />
    <parallelGateway id="p" />
    <sequenceFlow id="p1" sourceRef="p" targetRef="d1" />
    <sequenceFlow id="p2" sourceRef="p" targetRef="d2" />
    <serviceTask id="d1" camunda:type="external" camunda:topic="d" />
    <serviceTask id="d2" camunda:type="external" camunda:topic="d" />
    <sequenceFlow id="j1" sourceRef="d1" targetRef="join" />
    <sequenceFlow id="j2" sourceRef="d2" targetRef="join" />
    <parallelGateway id="join" />
    <sequenceFlow id="j3" sourceRef="join" targetRef="e" />
    <endEvent id="e" />
  </process>
</definitions>"#
        .to_owned()
}

fn vars(ok: &str, n: i64) -> Value {
    json!({"ok": {"value": ok, "type": "String"}, "n": {"value": n, "type": "Integer"},
           "stop": {"value": false, "type": "Boolean"}})
}

async fn at_gateway(api: &Api, ok: &str, n: i64) -> (String, String) {
    let d = api
        .deploy(&[Part::file("gw", "gw.bpmn", gateway_process())])
        .await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.body);
    let pi = api.start("gw", vars(ok, n)).await;
    (pi, api.fetch_one("w", "a").await)
}

#[tokio::test]
async fn exclusive_gateways_follow_the_first_true_condition() {
    let api = Api::new();
    let (_, a) = at_gateway(&api, "yes", 0).await;
    assert_eq!(
        api.complete(&a, "w", json!({})).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.fetch("w", "b").await.len(), 1);
    assert!(api.fetch("w", "c").await.is_empty());

    let api = Api::new();
    let (_, a) = at_gateway(&api, "no", 5).await;
    assert_eq!(
        api.complete(&a, "w", json!({})).await.status,
        StatusCode::NO_CONTENT
    );
    assert!(api.fetch("w", "b").await.is_empty());
    assert_eq!(api.fetch("w", "c").await.len(), 1);
}

#[tokio::test]
async fn no_selectable_flow_fails_the_call_with_500_and_changes_nothing() {
    let api = Api::new();
    let (pi, a) = at_gateway(&api, "no", 1).await;
    let fail = api
        .complete(&a, "w", json!({"extra": {"value": 1, "type": "Integer"}}))
        .await;
    assert_eq!(fail.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(fail.body["type"], "ProcessEngineException");
    assert!(
        fail.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("ENGINE-02004") && m.contains("'x'")),
        "{}",
        fail.body
    );
    let vars = api.get(&format!("/process-instance/{pi}/variables")).await;
    assert!(vars.body.get("extra").is_none(), "rolled back");
    let retry = api
        .complete(&a, "w", json!({"n": {"value": 9, "type": "Integer"}}))
        .await;
    assert_eq!(
        retry.status,
        StatusCode::NO_CONTENT,
        "the task is still there: {}",
        retry.body
    );
}

#[tokio::test]
async fn parallel_gateways_fork_and_join() {
    let api = Api::new();
    let (pi, a) = at_gateway(&api, "no", 5).await;
    api.complete(&a, "w", json!({})).await;
    let c = api.fetch_one("w", "c").await;
    api.complete(&c, "w", json!({})).await;
    let branches = api.fetch("w", "d").await;
    assert_eq!(branches.len(), 2);
    api.complete(branches[0]["id"].as_str().expect("id"), "w", json!({}))
        .await;
    assert_eq!(
        api.history_state(&pi).await,
        "ACTIVE",
        "the join waits for both branches"
    );
    api.complete(branches[1]["id"].as_str().expect("id"), "w", json!({}))
        .await;
    assert_eq!(api.history_state(&pi).await, "COMPLETED");
}

#[tokio::test]
async fn bad_request_bodies_answer_400_naming_the_problem() {
    let api = Api::new();
    api.deploy_order("order").await;
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/engine-rest/external-task/fetchAndLock")
        .header("content-type", "application/json")
        .body(axum::body::Body::from("{\"workerId\": "))
        .expect("request");
    let broken = api.send(req).await;
    assert_eq!(broken.status, StatusCode::BAD_REQUEST);
    assert_eq!(broken.body["type"], "InvalidRequestException");
    // Unknown fields are ignored as Camunda's Jackson does; a wrong type is refused.
    let wrong_type = api
        .post(
            "/external-task/fetchAndLock",
            json!({"workerId": "w", "maxTasks": 1, "topics": {}}),
        )
        .await;
    assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST);
    assert!(
        wrong_type.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("topics")),
        "{}",
        wrong_type.body
    );
    let bad_type = api
        .post(
            "/process-definition/key/order/start",
            json!({"variables": {"x": {"value": 1, "type": "Decimal"}}}),
        )
        .await;
    assert_eq!(bad_type.status, StatusCode::BAD_REQUEST);
    assert!(
        bad_type.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("Decimal"))
    );
    let no_worker = api
        .post(
            "/external-task/fetchAndLock",
            json!({"maxTasks": 1, "topics": []}),
        )
        .await;
    assert_eq!(no_worker.status, StatusCode::BAD_REQUEST);
    let unknown_key = api
        .post("/process-definition/key/nope/start", json!({}))
        .await;
    assert_eq!(unknown_key.status, StatusCode::NOT_FOUND);
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/engine-rest/process-definition/key/order/start")
        .header("content-type", "text/plain")
        .body(axum::body::Body::from("{}"))
        .expect("request");
    assert_eq!(
        api.send(req).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
}

#[tokio::test]
async fn file_variables_are_downloadable_and_absent_from_fetch() {
    let api = Api::new();
    api.deploy_order("order").await;
    let file = json!({"value": BASE64.encode(b"%PDF-1"), "type": "File",
                      "valueInfo": {"filename": "invoice.pdf", "mimeType": "application/pdf"}});
    let pi = api
        .start(
            "order",
            json!({"doc": file, "amount": {"value": 1, "type": "Integer"}}),
        )
        .await;
    let task = &api.fetch("w", "check").await[0];
    assert_eq!(task["variables"]["doc"]["value"], Value::Null);
    assert_eq!(
        task["variables"]["doc"]["valueInfo"]["filename"],
        "invoice.pdf"
    );
    let data = api
        .get(&format!("/process-instance/{pi}/variables/doc/data"))
        .await;
    assert_eq!(data.status, StatusCode::OK);
    assert_eq!(data.headers["content-type"], "application/pdf");
    assert_eq!(&data.bytes[..], b"%PDF-1");
    let not_binary = api
        .get(&format!("/process-instance/{pi}/variables/amount/data"))
        .await;
    assert_eq!(not_binary.status, StatusCode::BAD_REQUEST);
}

/// Camunda's FileValueType reads `mimeType` only: the lower-case `mimetype` the JS client sends
/// is dropped, the download is `application/octet-stream`, and valueInfo keeps just the file's
/// name, type and encoding.
#[tokio::test]
async fn a_file_keeps_only_camundas_value_info_keys() {
    let api = Api::new();
    api.deploy_order("order").await;
    let file = json!({"value": BASE64.encode(b"hi"), "type": "File",
                      "valueInfo": {"filename": "a.txt", "mimetype": "text/plain",
                                    "encoding": "utf-8", "extra": 1}});
    let pi = api.start("order", json!({"doc": file})).await;
    let data = api
        .get(&format!("/process-instance/{pi}/variables/doc/data"))
        .await;
    assert_eq!(
        data.headers["content-type"],
        "application/octet-stream; charset=utf-8"
    );
    let var = api
        .get(&format!("/process-instance/{pi}/variables/doc"))
        .await;
    assert_eq!(
        var.body["valueInfo"],
        json!({"filename": "a.txt", "encoding": "utf-8"})
    );
}

#[tokio::test]
async fn start_can_return_variables_and_lists_running_instances() {
    let api = Api::new();
    api.deploy_order("order").await;
    let a = api
        .post(
            "/process-definition/key/order/start",
            json!({"variables": amount(3), "withVariablesInReturn": true}),
        )
        .await;
    assert_eq!(a.body["variables"]["amount"]["value"], 3);
    assert_eq!(a.body["ended"], false);
    assert_eq!(a.body["links"], json!([]));
    assert_eq!(
        api.get("/process-instance/count?processDefinitionKey=order")
            .await
            .body["count"],
        1
    );
    assert_eq!(
        api.get("/process-instance?processDefinitionKey=other")
            .await
            .body,
        json!([])
    );
}

#[tokio::test]
async fn injected_faults_and_outages_answer_errors_while_stats_stay_readable() {
    let api = Api::new();
    api.engine.fail_next(2, 503);
    for _ in 0..2 {
        let a = api.get("/engine").await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(a.body["type"], "ProcessEngineException");
    }
    assert_eq!(api.get("/engine").await.body, json!([{"name": "default"}]));
    api.engine.set_down(true);
    assert_eq!(
        api.get("/version").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let stats = api.get("/_procos/stats").await;
    assert_eq!(stats.status, StatusCode::OK);
    assert_eq!(stats.body["injected_faults"], 3);
    api.engine.set_down(false);
    assert_eq!(api.get("/version").await.body["version"], "7.23.0");
    assert_eq!(api.engine.stats().requests, 5);
}
