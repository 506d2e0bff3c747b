//! External-task calls: ownership, locks, failures and incidents, BPMN errors.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{Api, amount};

#[tokio::test]
async fn start_fetch_complete_moves_the_token_to_the_next_task_and_the_end() {
    let api = Api::new();
    api.deploy_order("order").await;
    let pi = api.start("order", amount(500)).await;
    let tasks = api.fetch("w1", "check").await;
    assert_eq!(tasks.len(), 1);
    let t = &tasks[0];
    for field in [
        "id",
        "topicName",
        "workerId",
        "lockExpirationTime",
        "createTime",
        "retries",
        "errorMessage",
        "errorDetails",
        "processInstanceId",
        "processDefinitionId",
        "processDefinitionKey",
        "processDefinitionVersionTag",
        "activityId",
        "activityInstanceId",
        "executionId",
        "tenantId",
        "priority",
        "businessKey",
        "suspended",
        "variables",
        "extensionProperties",
    ] {
        assert!(t.get(field).is_some(), "missing {field} in {t}");
    }
    assert_eq!(
        t["retries"],
        Value::Null,
        "retries are null until the first failure"
    );
    assert_eq!(t["workerId"], "w1");
    assert_eq!(t["processInstanceId"], pi.as_str());
    assert_eq!(t["businessKey"], "bk-1");
    assert_eq!(t["priority"], 7);
    assert_eq!(
        t["extensionProperties"],
        json!({}),
        "only sent when requested"
    );
    assert_eq!(
        t["variables"]["amount"],
        json!({"type": "Integer", "value": 500, "valueInfo": {}})
    );
    let lock = t["lockExpirationTime"].as_str().expect("lock time");
    assert!(
        crate::engine::variables::parse_date(lock).is_some(),
        "{lock}"
    );

    let done = api
        .complete(
            t["id"].as_str().expect("id"),
            "w1",
            json!({"ok": {"value": true, "type": "Boolean"}}),
        )
        .await;
    assert_eq!(done.status, StatusCode::NO_CONTENT, "{}", done.body);
    assert!(api.fetch("w1", "check").await.is_empty());
    let ship = api.fetch_one("w1", "ship").await;
    assert_eq!(api.history_state(&pi).await, "ACTIVE");
    assert_eq!(
        api.complete(
            &ship,
            "w1",
            json!({"tracking": {"value": "Z1", "type": "String"}})
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.history_state(&pi).await, "COMPLETED");
    assert_eq!(
        api.get(&format!("/process-instance/{pi}")).await.status,
        StatusCode::NOT_FOUND
    );
    let vars = api
        .get(&format!(
            "/history/variable-instance?processInstanceId={pi}"
        ))
        .await;
    let names: Vec<&str> = vars
        .body
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(names, vec!["amount", "ok", "tracking"]);
    let finished = api
        .get("/history/process-instance/count?processDefinitionKey=order&finished=true")
        .await;
    assert_eq!(finished.body["count"], 1);
}

#[tokio::test]
async fn extension_properties_and_variable_selection_follow_the_topic() {
    let api = Api::new();
    api.deploy_order("order").await;
    api.start("order", json!({"amount": {"value": 1, "type": "Integer"}, "secret": {"value": "s", "type": "String"}})).await;
    let a = api
        .post(
            "/external-task/fetchAndLock",
            json!({"workerId": "w", "maxTasks": 1, "topics": [{"topicName": "check", "lockDuration": 1000,
                   "variables": ["amount"], "includeExtensionProperties": true}]}),
        )
        .await;
    let t = &a.body[0];
    assert_eq!(t["extensionProperties"], json!({"model": "gpt"}));
    assert_eq!(t["variables"].as_object().map(|m| m.len()), Some(1));
    assert!(t["variables"].get("amount").is_some());
}

#[tokio::test]
async fn only_the_locking_worker_may_complete_and_a_gone_task_answers_404() {
    let api = Api::new();
    api.deploy_order("order").await;
    api.start("order", amount(1)).await;
    let task = api.fetch_one("w1", "check").await;
    let wrong = api.complete(&task, "w2", json!({})).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert_eq!(wrong.body["type"], "RestException");
    assert!(
        wrong.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("'w2'") && m.contains("'w1'")),
        "{}",
        wrong.body
    );
    assert_eq!(
        api.complete(&task, "w1", json!({})).await.status,
        StatusCode::NO_CONTENT
    );
    let gone = api.complete(&task, "w1", json!({})).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(
        gone.body,
        json!({"type": "RestException", "message": format!("External task with id {task} does not exist"), "code": 0})
    );
    let stats = api.engine.stats();
    assert_eq!((stats.complete_ok, stats.complete_rejected), (1, 2));
}

#[tokio::test]
async fn an_expired_lock_can_be_completed_until_another_worker_relocks_it() {
    let api = Api::new();
    api.deploy_order("order").await;
    api.start("order", amount(1)).await;
    api.start("order", amount(2)).await;
    let tasks = api.fetch("w1", "check").await;
    let (t1, t2) = (
        tasks[0]["id"].as_str().expect("id"),
        tasks[1]["id"].as_str().expect("id"),
    );
    api.engine.expire_lock(t1);
    api.engine.expire_lock(t2);
    let extend = api
        .post(
            &format!("/external-task/{t1}/extendLock"),
            json!({"workerId": "w1", "newDuration": 1000}),
        )
        .await;
    assert_eq!(extend.status, StatusCode::BAD_REQUEST);
    assert_eq!(extend.body["message"], "Cannot extend a lock that expired");
    assert_eq!(
        api.complete(t1, "w1", json!({})).await.status,
        StatusCode::NO_CONTENT,
        "expired but not re-locked"
    );
    assert_eq!(api.fetch_one("w2", "check").await, t2);
    assert_eq!(
        api.complete(t2, "w1", json!({})).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api.complete(t2, "w2", json!({})).await.status,
        StatusCode::NO_CONTENT
    );
    let stats = api.engine.stats();
    assert_eq!((stats.extend_lock_ok, stats.extend_lock_rejected), (0, 1));
}

#[tokio::test]
async fn extend_lock_checks_the_worker_and_moves_the_expiration() {
    let api = Api::new();
    api.deploy_order("order").await;
    api.start("order", amount(1)).await;
    let task = api.fetch_one("w1", "check").await;
    let other = api
        .post(
            &format!("/external-task/{task}/extendLock"),
            json!({"workerId": "w2", "newDuration": 1000}),
        )
        .await;
    assert_eq!(other.status, StatusCode::BAD_REQUEST);
    let before =
        api.get(&format!("/external-task/{task}")).await.body["lockExpirationTime"].clone();
    let ok = api
        .post(
            &format!("/external-task/{task}/extendLock"),
            json!({"workerId": "w1", "newDuration": 600_000}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{}", ok.body);
    let after = api.get(&format!("/external-task/{task}")).await.body["lockExpirationTime"].clone();
    assert!(after.as_str() > before.as_str(), "{before} → {after}");
    let zero = api
        .post(
            &format!("/external-task/{task}/extendLock"),
            json!({"workerId": "w1", "newDuration": 0}),
        )
        .await;
    assert_eq!(zero.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn failures_count_retries_down_and_zero_raises_an_incident() {
    let api = Api::new();
    api.deploy_order("order").await;
    let pi = api.start("order", amount(1)).await;
    let task = api.fetch_one("w1", "check").await;
    let fail = |retries: i64| {
        let (api, task) = (&api, task.clone());
        async move {
            api.post(&format!("/external-task/{task}/failure"),
                json!({"workerId": "w1", "errorMessage": "boom", "errorDetails": "trace", "retries": retries, "retryTimeout": 0}))
                .await
        }
    };
    // HandleExternalTaskFailureCmd refuses it with a plain ProcessEngineException: 500.
    assert_eq!(fail(-1).await.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(fail(1).await.status, StatusCode::NO_CONTENT);
    let again = api.fetch("w1", "check").await;
    assert_eq!(again[0]["retries"], 1);
    assert_eq!(again[0]["errorMessage"], "boom");
    assert_eq!(again[0]["errorDetails"], "trace");
    assert_eq!(fail(0).await.status, StatusCode::NO_CONTENT);
    assert!(
        api.fetch("w1", "check").await.is_empty(),
        "no retries left: not fetchable"
    );
    let incidents = api.get(&format!("/incident?processInstanceId={pi}")).await;
    let inc = &incidents.body[0];
    assert_eq!(inc["incidentType"], "failedExternalTask");
    assert_eq!(inc["incidentMessage"], "boom");
    assert_eq!(inc["configuration"], task.as_str());
    assert_eq!(inc["activityId"], "check");
    assert_eq!(api.get("/incident/count").await.body["count"], 1);
    let stats = api.engine.stats();
    assert_eq!(
        (
            stats.failure_calls,
            stats.failure_rejected,
            stats.incidents_created
        ),
        (2, 1, 1)
    );
    let resolve = api
        .call(
            "PUT",
            &format!("/external-task/{task}/retries"),
            Some(json!({"retries": 2})),
        )
        .await;
    assert_eq!(resolve.status, StatusCode::NO_CONTENT);
    assert_eq!(api.get("/incident/count").await.body["count"], 0);
    assert_eq!(api.fetch("w1", "check").await.len(), 1);
}

#[tokio::test]
async fn incidents_follow_the_retries_transition_and_details_are_kept() {
    let api = Api::new();
    api.deploy_order("order").await;
    api.start("order", amount(1)).await;
    let task = api.fetch_one("w1", "check").await;
    let fail = |retries: i64, details: Option<&str>| {
        let (api, task) = (&api, task.clone());
        let mut body = json!({"workerId": "w1", "errorMessage": "x".repeat(700), "retries": retries, "retryTimeout": 0});
        if let Some(d) = details {
            body["errorDetails"] = json!(d);
        }
        async move {
            api.post(&format!("/external-task/{task}/failure"), body)
                .await
        }
    };
    assert_eq!(
        fail(0, Some("first trace")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(fail(0, None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.get("/incident/count").await.body["count"],
        1,
        "no second incident while retries stay at 0"
    );
    let one = api.get(&format!("/external-task/{task}")).await.body;
    assert_eq!(
        one["errorMessage"].as_str().map(|m| m.chars().count()),
        Some(666),
        "cut to the column size"
    );
    let details = api
        .call("GET", &format!("/external-task/{task}/errorDetails"), None)
        .await;
    assert!(
        format!("{:?}", details.body).contains("first trace"),
        "details kept when none are sent"
    );
    assert_eq!(fail(2, None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.get("/incident/count").await.body["count"],
        0,
        "retries back: incident resolved"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_timeout_delays_the_next_fetch() {
    let api = Api::new();
    api.deploy_order("order").await;
    api.start("order", amount(1)).await;
    let task = api.fetch_one("w1", "check").await;
    let a = api
        .post(
            &format!("/external-task/{task}/failure"),
            json!({"workerId": "w1", "errorMessage": "x", "retries": 3, "retryTimeout": 5000}),
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert!(api.fetch("w2", "check").await.is_empty());
    tokio::time::advance(std::time::Duration::from_millis(4_900)).await;
    assert!(api.fetch("w2", "check").await.is_empty());
    tokio::time::advance(std::time::Duration::from_millis(200)).await;
    assert_eq!(api.fetch_one("w2", "check").await, task);
}

#[tokio::test]
async fn a_bpmn_error_caught_by_a_boundary_event_takes_its_flow() {
    let api = Api::new();
    api.deploy_order("order").await;
    let pi = api.start("order", amount(500)).await;
    let task = api.fetch_one("w1", "check").await;
    let wrong = api
        .post(
            &format!("/external-task/{task}/bpmnError"),
            json!({"workerId": "w2", "errorCode": "BAD_ORDER"}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    let a = api
        .post(&format!("/external-task/{task}/bpmnError"),
            json!({"workerId": "w1", "errorCode": "BAD_ORDER", "errorMessage": "no", "variables": {"why": {"value": "stock", "type": "String"}}}))
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    assert!(
        api.fetch("w1", "ship").await.is_empty(),
        "the normal flow was not taken"
    );
    assert_eq!(api.history_state(&pi).await, "COMPLETED");
    let why = api
        .get(&format!(
            "/history/variable-instance?processInstanceId={pi}&variableName=why"
        ))
        .await;
    assert_eq!(why.body[0]["value"], "stock");
    assert_eq!(api.engine.stats().bpmn_error_calls, 1);
}

#[tokio::test]
async fn an_uncaught_bpmn_error_ends_the_execution() {
    let api = Api::new();
    api.deploy_order("order").await;
    let pi = api.start("order", amount(500)).await;
    let task = api.fetch_one("w1", "check").await;
    let a = api
        .post(
            &format!("/external-task/{task}/bpmnError"),
            json!({"workerId": "w1", "errorCode": "OTHER"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert!(api.fetch("w1", "ship").await.is_empty());
    assert_eq!(api.history_state(&pi).await, "COMPLETED");
}

#[tokio::test]
async fn deleting_an_instance_cancels_its_tasks() {
    let api = Api::new();
    api.deploy_order("order").await;
    let pi = api.start("order", amount(1)).await;
    let task = api.fetch_one("w1", "check").await;
    assert_eq!(
        api.call("DELETE", &format!("/process-instance/{pi}"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let extend = api
        .post(
            &format!("/external-task/{task}/extendLock"),
            json!({"workerId": "w1", "newDuration": 1000}),
        )
        .await;
    assert_eq!(extend.status, StatusCode::NOT_FOUND);
    assert_eq!(
        api.complete(&task, "w1", json!({})).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(api.history_state(&pi).await, "EXTERNALLY_TERMINATED");
    assert_eq!(
        api.get(&format!("/external-task/{task}")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn lock_and_unlock_respect_the_current_owner() {
    let api = Api::new();
    api.deploy_order("order").await;
    api.start("order", amount(1)).await;
    let task = api.fetch_one("w1", "check").await;
    let taken = api
        .post(
            &format!("/external-task/{task}/lock"),
            json!({"workerId": "w2", "lockDuration": 1000}),
        )
        .await;
    assert_eq!(taken.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        api.call("POST", &format!("/external-task/{task}/unlock"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.get(&format!("/external-task/{task}")).await.body["workerId"],
        Value::Null
    );
    let locked = api
        .post(
            &format!("/external-task/{task}/lock"),
            json!({"workerId": "w2", "lockDuration": 1000}),
        )
        .await;
    assert_eq!(locked.status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.get("/external-task/count?topicName=check&locked=true")
            .await
            .body["count"],
        1
    );
    assert_eq!(
        api.call("POST", "/external-task/nope/unlock", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn local_variables_of_a_scope_activity_vanish_with_it() {
    let api = Api::new();
    api.deploy_order("order").await;
    let pi = api.start("order", amount(500)).await;
    let check = api.fetch_one("w", "check").await;
    let local = json!({"scratch": {"value": "x", "type": "String"}});
    let a = api
        .post(
            &format!("/external-task/{check}/complete"),
            json!({"workerId": "w", "localVariables": local}),
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let vars = api.get(&format!("/process-instance/{pi}/variables")).await;
    assert!(
        vars.body.get("scratch").is_none(),
        "check has a boundary event: it is a scope"
    );
    let ship = api.fetch_one("w", "ship").await;
    let local = json!({"kept": {"value": "y", "type": "String"}});
    api.post(
        &format!("/external-task/{ship}/complete"),
        json!({"workerId": "w", "localVariables": local}),
    )
    .await;
    let hist = api
        .get(&format!(
            "/history/variable-instance?processInstanceId={pi}&variableName=kept"
        ))
        .await;
    assert_eq!(
        hist.body,
        json!([]),
        "every external task is a scope in Camunda (BpmnParse.parseExternalServiceTask)"
    );
}

/// Variables sent with a failure are the instance's at once: history shows them without
/// waiting for the task's next completion.
#[tokio::test]
async fn failure_variables_reach_the_instance_and_its_history() {
    let api = Api::new();
    api.deploy_order("order").await;
    let pi = api.start("order", amount(1)).await;
    let task = api.fetch_one("w1", "check").await;
    let a = api
        .post(
            &format!("/external-task/{task}/failure"),
            json!({"workerId": "w1", "errorMessage": "boom", "retries": 2, "retryTimeout": 0,
                   "variables": {"attempts": {"value": 1, "type": "Integer"}}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    let vars = api.get(&format!("/process-instance/{pi}/variables")).await;
    assert_eq!(vars.body["attempts"]["value"], 1);
    let hist = api
        .get(&format!(
            "/history/variable-instance?processInstanceId={pi}&variableName=attempts"
        ))
        .await;
    assert_eq!(hist.body[0]["value"], 1, "{}", hist.body);
}
