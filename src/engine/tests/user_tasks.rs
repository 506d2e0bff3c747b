//! User tasks through `/task`: listing, reading, variables, completing, claiming, and `${…}`
//! attributes evaluated when the task is created.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{Api, Part};

/// start → user task `approve` → gateway on `approved` → `ship` (external) | end.
fn approval() -> String {
    r#"<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn">
  <process id="approval" isExecutable="true" camunda:historyTimeToLive="P1D">
    <startEvent id="s" />
    <sequenceFlow id="f1" sourceRef="s" targetRef="approve" />
    <userTask id="approve" name="Approve order" camunda:assignee="alice" camunda:candidateGroups="sales, managers" camunda:formKey="embedded:app:forms/approve.html" camunda:priority="70" />
    <sequenceFlow id="f2" sourceRef="approve" targetRef="gw" />
    <exclusiveGateway id="gw" default="no" />
    <sequenceFlow id="yes" sourceRef="gw" targetRef="ship"><conditionExpression>${approved}</conditionExpression></sequenceFlow>
    <sequenceFlow id="no" sourceRef="gw" targetRef="rejected" />
    <serviceTask id="ship" camunda:type="external" camunda:topic="ship" />
    <sequenceFlow id="f3" sourceRef="ship" targetRef="shipped" />
    <endEvent id="shipped" />
    <endEvent id="rejected" />
  </process>
</definitions>"#
        .to_owned()
}

async fn started(api: &Api) -> (String, String) {
    let d = api
        .deploy(&[Part::file("data", "approval.bpmn", approval())])
        .await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.body);
    let pi = api
        .start(
            "approval",
            json!({"amount": {"value": 120, "type": "Integer"}}),
        )
        .await;
    let tasks = api.get(&format!("/task?processInstanceId={pi}")).await;
    assert_eq!(tasks.status, StatusCode::OK, "{}", tasks.body);
    let id = tasks.body[0]["id"]
        .as_str()
        .expect("a user task")
        .to_owned();
    (pi, id)
}

#[tokio::test]
async fn a_user_task_is_listed_as_camunda_lists_it() {
    let api = Api::new();
    let (pi, id) = started(&api).await;
    let task = api.get(&format!("/task/{id}")).await;
    assert_eq!(task.status, StatusCode::OK);
    let t = &task.body;
    assert_eq!(t["name"], "Approve order");
    assert_eq!(t["assignee"], "alice");
    assert_eq!(t["taskDefinitionKey"], "approve");
    assert_eq!(t["processInstanceId"], pi.as_str());
    assert_eq!(t["formKey"], "embedded:app:forms/approve.html");
    assert_eq!(t["priority"], 70);
    assert_eq!(t["suspended"], false);
    assert!(t["created"].as_str().is_some_and(|c| c.len() == 28), "{t}");
    for (query, hits) in [
        ("taskDefinitionKey=approve", 1),
        ("taskDefinitionKey=other", 0),
        ("processDefinitionKey=approval", 1),
        ("assignee=alice", 1),
        ("assignee=bob", 0),
        ("name=Approve%20order", 1),
        // Assigned to alice: a candidate query shows it only with includeAssignedTasks.
        ("candidateGroup=managers", 0),
        ("candidateGroup=managers&includeAssignedTasks=true", 1),
        ("candidateGroup=hr&includeAssignedTasks=true", 0),
        ("unassigned=true", 0),
    ] {
        let n = api.get(&format!("/task/count?{query}")).await.body["count"].clone();
        assert_eq!(n, hits, "{query}");
        let list = api.get(&format!("/task?{query}")).await.body;
        assert_eq!(list.as_array().map(Vec::len), Some(hits), "{query}");
    }
    let vars = api.get(&format!("/task/{id}/variables")).await.body;
    assert_eq!(vars["amount"]["value"], 120);
    let one = api.get(&format!("/task/{id}/variables/amount")).await;
    assert_eq!(one.body["type"], "Integer");
    let missing = api.get(&format!("/task/{id}/variables/nope")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.body["message"],
        "task variable with name nope does not exist"
    );
}

#[tokio::test]
async fn completing_with_variables_moves_the_token_on() {
    let api = Api::new();
    let (pi, id) = started(&api).await;
    let done = api
        .post(
            &format!("/task/{id}/complete"),
            json!({"variables": {"approved": {"value": true, "type": "Boolean"}},
                   "someFieldCamundaIgnores": 1}),
        )
        .await;
    assert_eq!(done.status, StatusCode::NO_CONTENT, "{}", done.body);
    let ship = api.fetch_one("w", "ship").await;
    assert_eq!(api.get("/task/count").await.body["count"], 0);
    assert_eq!(
        api.complete(&ship, "w", json!({})).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.history_state(&pi).await, "COMPLETED");
    let vars = api
        .get(&format!(
            "/history/variable-instance?processInstanceId={pi}"
        ))
        .await
        .body;
    let approved = vars
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == "approved"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(approved["value"], true, "{vars}");
}

#[tokio::test]
async fn with_variables_in_return_answers_the_variables() {
    let api = Api::new();
    let (pi, id) = started(&api).await;
    let done = api
        .post(
            &format!("/task/{id}/complete"),
            json!({"variables": {"approved": {"value": false, "type": "Boolean"}},
                   "withVariablesInReturn": true}),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.body["approved"]["value"], false);
    assert_eq!(done.body["amount"]["value"], 120);
    assert_eq!(api.history_state(&pi).await, "COMPLETED", "rejected path");
    let null_flag = api
        .post(
            &format!("/task/{id}/complete"),
            json!({"withVariablesInReturn": null}),
        )
        .await;
    assert_eq!(
        null_flag.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "already completed"
    );
}

#[tokio::test]
async fn unknown_tasks_answer_as_camunda() {
    let api = Api::new();
    let get = api.get("/task/nope").await;
    assert_eq!(get.status, StatusCode::NOT_FOUND);
    assert_eq!(get.body["type"], "InvalidRequestException");
    assert_eq!(get.body["message"], "No matching task with id nope");
    let complete = api.post("/task/nope/complete", json!({})).await;
    assert_eq!(complete.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(complete.body["type"], "RestException");
    assert_eq!(
        complete.body["message"],
        "Cannot complete task nope: Cannot find task with id nope: task is null"
    );
    let vars = api.get("/task/nope/variables").await;
    assert_eq!(vars.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        vars.body["message"],
        "task nope doesn't exist: task is null"
    );
    let bad = api
        .post(
            "/task/nope/complete",
            json!({"variables": {"x": {"value": "a", "type": "Integer"}}}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
}

#[tokio::test]
async fn claim_and_unclaim_set_the_assignee() {
    let api = Api::new();
    let (_, id) = started(&api).await;
    let taken = api
        .post(&format!("/task/{id}/claim"), json!({"userId": "bob"}))
        .await;
    assert_eq!(taken.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(taken.body["type"], "TaskAlreadyClaimedException");
    assert_eq!(
        taken.body["code"], 0,
        "an engine exception carries its code"
    );
    let unknown = api.post("/task/nope/unclaim", json!({})).await;
    assert_eq!(
        (
            unknown.status,
            unknown.body["type"].clone(),
            unknown.body["code"].clone()
        ),
        (
            StatusCode::BAD_REQUEST,
            json!("NotFoundException"),
            json!(0)
        ),
        "the engine's NotFoundException is a BadUserRequestException"
    );
    assert_eq!(
        api.post(&format!("/task/{id}/unclaim"), json!({}))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.get(&format!("/task/{id}")).await.body["assignee"],
        Value::Null
    );
    assert_eq!(
        api.get("/task/count?unassigned=true").await.body["count"],
        1
    );
    assert_eq!(
        api.get("/task/count?candidateGroup=sales").await.body["count"],
        1,
        "unclaimed, it is back in its group's queue"
    );
    let claim = api
        .post(&format!("/task/{id}/claim"), json!({"userId": "bob"}))
        .await;
    assert_eq!(claim.status, StatusCode::NO_CONTENT, "{}", claim.body);
    assert_eq!(
        api.get("/task?assignee=bob").await.body[0]["id"],
        id.as_str()
    );
}

#[tokio::test]
async fn deleting_the_instance_removes_its_user_tasks() {
    let api = Api::new();
    let (pi, _) = started(&api).await;
    let deleted = api
        .call("DELETE", &format!("/process-instance/{pi}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(api.get("/task/count").await.body["count"], 0);
}

#[tokio::test]
async fn user_tasks_the_engine_cannot_run_are_refused_naming_the_element() {
    let api = Api::new();
    let cases = [
        (r#"camunda:assignee="${initiator""#, "", "Error parsing"),
        (r#"camunda:priority="${p}""#, "", "expression"),
        (
            "",
            r#"<extensionElements><camunda:taskListener event="create" class="x.Y" /></extensionElements>"#,
            "taskListener",
        ),
        ("", "<multiInstanceLoopCharacteristics />", "multi-instance"),
        (r#"camunda:priority="high""#, "", "priority"),
    ];
    for (attrs, children, says) in cases {
        let xml = approval().replace(
            r#"<userTask id="approve" name="Approve order" camunda:assignee="alice" camunda:candidateGroups="sales, managers" camunda:formKey="embedded:app:forms/approve.html" camunda:priority="70" />"#,
            &format!(r#"<userTask id="approve" {attrs}>{children}</userTask>"#),
        );
        let a = api.deploy(&[Part::file("data", "a.bpmn", xml)]).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{says}: {}", a.body);
        let error = &a.body["details"]["a.bpmn"]["errors"][0];
        assert_eq!(error["mainBpmnElementId"], "approve");
        assert!(
            error["message"].as_str().unwrap_or_default().contains(says),
            "{error}"
        );
    }
}

/// User task `review` (due 2026-03-01) with an interrupting boundary timer → external `escalate`.
fn escalating(due: &str) -> String {
    approval().replace(
        r#"<userTask id="approve" name="Approve order" camunda:assignee="alice" camunda:candidateGroups="sales, managers" camunda:formKey="embedded:app:forms/approve.html" camunda:priority="70" />"#,
        &format!(
            r#"<userTask id="approve" camunda:dueDate="{due}" />
    <boundaryEvent id="tooSlow" attachedToRef="approve"><timerEventDefinition><timeDuration>P1D</timeDuration></timerEventDefinition></boundaryEvent>
    <sequenceFlow id="fx" sourceRef="tooSlow" targetRef="escalate" />
    <serviceTask id="escalate" camunda:type="external" camunda:topic="escalate" />
    <sequenceFlow id="fy" sourceRef="escalate" targetRef="rejected" />"#
        ),
    )
}

#[tokio::test]
async fn a_boundary_timer_on_a_user_task_cancels_it() {
    let api = Api::new();
    let d = api
        .deploy(&[Part::file(
            "data",
            "e.bpmn",
            escalating("2026-03-01T12:00:00Z"),
        )])
        .await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.body);
    let pi = api.start("approval", json!({})).await;
    let task = api.get(&format!("/task?processInstanceId={pi}")).await.body[0].clone();
    assert_eq!(task["due"], "2026-03-01T12:00:00.000+0000");
    let jobs = api
        .get(&format!("/job?processInstanceId={pi}&activityId=tooSlow"))
        .await;
    let job = jobs.body[0]["id"]
        .as_str()
        .expect("the boundary's job")
        .to_owned();
    let fired = api.post(&format!("/job/{job}/execute"), json!({})).await;
    assert_eq!(fired.status, StatusCode::NO_CONTENT, "{}", fired.body);
    let id = task["id"].as_str().expect("id");
    assert_eq!(
        api.get(&format!("/task/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    let late = api.post(&format!("/task/{id}/complete"), json!({})).await;
    assert_eq!(
        late.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        late.body
    );
    let escalate = api.fetch_one("w", "escalate").await;
    assert_eq!(
        api.complete(&escalate, "w", json!({})).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.history_state(&pi).await, "COMPLETED");
    let bad = api
        .deploy(&[Part::file("data", "e.bpmn", escalating("next week"))])
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad.body["details"]["e.bpmn"]["errors"][0]["mainBpmnElementId"],
        "approve"
    );
}

#[tokio::test]
async fn a_completion_the_process_cannot_follow_leaves_the_task_open() {
    let api = Api::new();
    let (_, id) = started(&api).await;
    // `${approved}` cannot be evaluated without the variable: nothing changes, as a rollback.
    let failed = api.post(&format!("/task/{id}/complete"), json!({})).await;
    assert_eq!(
        failed.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        failed.body
    );
    assert_eq!(failed.body["type"], "RestException");
    let message = failed.body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("Cannot complete task {id}: ")),
        "{message}"
    );
    assert_eq!(api.get(&format!("/task/{id}")).await.status, StatusCode::OK);
}

/// `camunda:dueDate="P2D"` is a duration from the task's creation, as Camunda's
/// DueDateBusinessCalendar reads a value starting with `P` (it was refused at deploy).
#[tokio::test]
async fn a_relative_due_date_counts_from_the_tasks_creation() {
    let api = Api::new();
    let d = api
        .deploy(&[Part::file("data", "e.bpmn", escalating("P2D"))])
        .await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.body);
    let pi = api.start("approval", json!({})).await;
    let task = api.get(&format!("/task?processInstanceId={pi}")).await.body[0].clone();
    let parse = |field: &str| {
        chrono::DateTime::parse_from_str(
            task[field].as_str().expect(field),
            "%Y-%m-%dT%H:%M:%S%.3f%z",
        )
        .expect("a Camunda date")
    };
    let days = (parse("due") - parse("created")).num_seconds() as f64 / 86_400.0;
    assert!(
        (days - 2.0).abs() < 0.001,
        "due two days after created: {task}"
    );
    let bad = api
        .deploy(&[Part::file("data", "e.bpmn", escalating("P2Xjunk"))])
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
}

/// The approval model with the user task's attributes replaced by `attrs`.
fn approval_with(attrs: &str) -> String {
    approval().replace(
        r#"<userTask id="approve" name="Approve order" camunda:assignee="alice" camunda:candidateGroups="sales, managers" camunda:formKey="embedded:app:forms/approve.html" camunda:priority="70" />"#,
        &format!(r#"<userTask id="approve" {attrs} />"#),
    )
}

/// `${…}` attributes are evaluated against the instance when the task is created: a String,
/// a comma-separated list or a collection, a relative (`P2D`) or a Date result.
#[tokio::test]
async fn user_task_expressions_are_evaluated_when_the_task_is_created() {
    let api = Api::new();
    let xml = approval_with(
        r#"name="Approve ${item}" camunda:assignee="${initiator}" camunda:candidateUsers="${reviewers}" camunda:candidateGroups="${groups}" camunda:dueDate="${due}" camunda:followUpDate="${followUp}""#,
    );
    let d = api.deploy(&[Part::file("data", "x.bpmn", xml)]).await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.body);
    let pi = api
        .start(
            "approval",
            json!({
                "item": {"value": "order 7", "type": "String"},
                "initiator": {"value": "bob", "type": "String"},
                "reviewers": {"value": "carol, dave", "type": "String"},
                "groups": {"value": "[\"sales\",\"ops\"]", "type": "Json"},
                "due": {"value": "P2D", "type": "String"},
                "followUp": {"value": "2026-03-01T12:00:00.000+0000", "type": "Date"},
            }),
        )
        .await;
    let task = api.get(&format!("/task?processInstanceId={pi}")).await.body[0].clone();
    assert_eq!(task["name"], "Approve order 7");
    assert_eq!(task["assignee"], "bob");
    assert_eq!(task["followUp"], "2026-03-01T12:00:00.000+0000");
    let parse = |field: &str| {
        chrono::DateTime::parse_from_str(
            task[field].as_str().expect(field),
            "%Y-%m-%dT%H:%M:%S%.3f%z",
        )
        .expect("a Camunda date")
    };
    let days = (parse("due") - parse("created")).num_seconds() as f64 / 86_400.0;
    assert!(
        (days - 2.0).abs() < 0.001,
        "due two days after created: {task}"
    );
    for query in [
        "candidateUser=dave",
        "candidateGroup=ops",
        "candidateGroup=sales",
    ] {
        let listed = api
            .get(&format!("/task?{query}&includeAssignedTasks=true"))
            .await;
        assert_eq!(listed.body.as_array().map(Vec::len), Some(1), "{query}");
    }
}

/// A variable the assignee expression needs and the start does not bring fails the start
/// (500, Camunda's PropertyNotFoundException), leaving no instance and no task.
#[tokio::test]
async fn an_unknown_variable_in_a_user_task_expression_fails_the_start() {
    let api = Api::new();
    let xml = approval_with(r#"camunda:assignee="${initiator}""#);
    let d = api.deploy(&[Part::file("data", "x.bpmn", xml)]).await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.body);
    let a = api
        .post("/process-definition/key/approval/start", json!({}))
        .await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", a.body);
    let message = a.body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Cannot resolve identifier 'initiator'"),
        "{message}"
    );
    assert_eq!(
        api.get("/task").await.body.as_array().map(Vec::len),
        Some(0)
    );
    // TaskDecorator casts the assignee to a String: a number fails the same way.
    let number = api
        .post(
            "/process-definition/key/approval/start",
            json!({"variables": {"initiator": {"value": 7, "type": "Integer"}}}),
        )
        .await;
    assert_eq!(
        number.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        number.body
    );
    assert!(
        number.body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not a String"),
        "{}",
        number.body
    );
    assert_eq!(
        api.get("/history/process-instance/count").await.body["count"],
        0
    );
}
