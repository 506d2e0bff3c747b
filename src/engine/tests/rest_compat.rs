//! Camunda 7.23 REST compatibility: bodies read as engine-rest's Jackson reads them (unknown
//! fields ignored, `null` as a default), error codes, the history and execution views, and
//! hostile durations.

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::{Api, amount};

/// What `camunda-external-task-client-python3` 4.5.0 sends on every poll by default: nulls for
/// everything it does not set, `sorting: null` included.
fn python_client_poll(topic: &str) -> Value {
    json!({
        "workerId": "py-worker", "maxTasks": 1, "usePriority": null, "asyncResponseTimeout": null,
        "includeExtensionProperties": null, "sorting": null, "clientVersion": "4.5.0",
        "topics": [{
            "topicName": topic, "lockDuration": 300_000, "variables": null, "localVariables": null,
            "businessKey": null, "processDefinitionId": null, "processDefinitionIdIn": null,
            "processDefinitionKey": null, "processDefinitionKeyIn": null,
            "processDefinitionVersionTag": null, "withoutTenantId": null, "tenantIdIn": null,
            "processVariables": null, "deserializeValues": null,
            "includeExtensionProperties": null, "someFutureField": {"x": 1}
        }]
    })
}

#[tokio::test]
async fn a_poll_with_nulls_and_unknown_fields_locks_a_task() {
    let api = Api::new();
    api.deploy_order("order").await;
    api.start("order", amount(5)).await;
    let a = api
        .post("/external-task/fetchAndLock", python_client_poll("check"))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body.as_array().map(Vec::len), Some(1), "{}", a.body);
    assert_eq!(a.body[0]["workerId"], "py-worker");
    assert_eq!(
        a.body[0]["extensionProperties"],
        json!({}),
        "null means false"
    );
    assert_eq!(
        api.engine.stats().ignored_fields,
        2,
        "clientVersion and someFutureField are counted, so tests can hold procos to none"
    );
}

#[tokio::test]
async fn every_task_call_ignores_unknown_fields_and_reads_null_as_absent() {
    let api = Api::new();
    api.deploy_order("order").await;
    let pi = api
        .post(
            "/process-definition/key/order/start",
            json!({"businessKey": null, "withVariablesInReturn": null, "skipIoMappings": null,
                   "extra": true, "variables": {"amount": {"value": 500, "type": "Integer",
                   "valueInfo": null, "note": "unknown inside a variable"}}}),
        )
        .await;
    assert_eq!(pi.status, StatusCode::OK, "{}", pi.body);
    let task = api.fetch_one("w1", "check").await;
    let call = |path: &'static str, body: Value| {
        let api = &api;
        let task = task.clone();
        async move {
            let a = api
                .post(&format!("/external-task/{task}/{path}"), body)
                .await;
            assert_eq!(a.status, StatusCode::NO_CONTENT, "{path}: {}", a.body);
        }
    };
    call(
        "extendLock",
        json!({"workerId": "w1", "newDuration": 5000, "x": 1}),
    )
    .await;
    call(
        "lock",
        json!({"workerId": "w1", "lockDuration": 5000, "x": [1]}),
    )
    .await;
    call(
        "failure",
        json!({"workerId": "w1", "errorMessage": null, "errorDetails": null, "retries": 3,
               "retryTimeout": null, "variables": null, "localVariables": null, "x": null}),
    )
    .await;
    let retries = api
        .call(
            "PUT",
            &format!("/external-task/{task}/retries"),
            Some(json!({"retries": 2, "dueDate": null})),
        )
        .await;
    assert_eq!(retries.status, StatusCode::NO_CONTENT, "{}", retries.body);
    let again = api.fetch_one("w1", "check").await;
    assert_eq!(again, task);
    call(
        "complete",
        json!({"workerId": "w1", "variables": {"ok": {"value": true, "type": "Boolean", "x": 0}},
               "localVariables": null, "x": "y"}),
    )
    .await;
    let ship = api.fetch_one("w1", "ship").await;
    let err = api
        .post(
            &format!("/external-task/{ship}/bpmnError"),
            json!({"workerId": "w1", "errorCode": "E", "errorMessage": null, "variables": null, "x": 1}),
        )
        .await;
    assert_eq!(err.status, StatusCode::NO_CONTENT, "{}", err.body);
}

#[tokio::test]
async fn a_wrong_type_still_answers_400_naming_the_field() {
    let api = Api::new();
    for (body, field) in [
        (
            json!({"workerId": "w", "maxTasks": "many", "topics": []}),
            "maxTasks",
        ),
        (
            json!({"workerId": "w", "maxTasks": 1, "usePriority": "yes"}),
            "usePriority",
        ),
        (
            json!({"workerId": "w", "maxTasks": 1, "topics": [{"topicName": "t", "lockDuration": "long"}]}),
            "lockDuration",
        ),
        (
            json!({"workerId": "w", "maxTasks": 1, "sorting": {"sortBy": "createTime"}}),
            "sorting",
        ),
    ] {
        let a = api.post("/external-task/fetchAndLock", body).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{field}: {}", a.body);
        assert_eq!(a.body["type"], "InvalidRequestException");
        assert!(
            a.body["message"]
                .as_str()
                .is_some_and(|m| m.contains(field)),
            "{field}: {}",
            a.body
        );
    }
}

#[tokio::test]
async fn max_tasks_omitted_is_zero_and_locks_nothing() {
    let api = Api::new();
    api.deploy_order("order").await;
    api.start("order", amount(5)).await;
    let a = api
        .post(
            "/external-task/fetchAndLock",
            json!({"workerId": "w", "topics": [{"topicName": "check", "lockDuration": 1000}]}),
        )
        .await;
    assert_eq!((a.status, a.body.clone()), (StatusCode::OK, json!([])));
    assert_eq!(api.fetch("w2", "check").await.len(), 1, "still fetchable");
}

#[tokio::test]
async fn sorting_is_checked_as_camunda_checks_it() {
    let api = Api::new();
    api.deploy_order("order").await;
    let first = api.start("order", amount(1)).await;
    let second = api.start("order", amount(2)).await;
    let sorted = |sorting: Value| {
        json!({"workerId": "w", "maxTasks": 1, "sorting": sorting,
               "topics": [{"topicName": "check", "lockDuration": 1000}]})
    };
    // Without a direction the engine's fetch builder refuses the query (NotValidException).
    let no_order = api
        .post(
            "/external-task/fetchAndLock",
            sorted(json!([{"sortBy": "createTime"}])),
        )
        .await;
    assert_eq!(
        no_order.status,
        StatusCode::BAD_REQUEST,
        "{}",
        no_order.body
    );
    assert_eq!(
        no_order.body,
        json!({"type": "NotValidException", "code": 0,
               "message": "Invalid query: call asc() or desc() after using orderByXX(): direction is null"})
    );
    let upper = api
        .post(
            "/external-task/fetchAndLock",
            sorted(json!([{"sortBy": "createTime", "sortOrder": "DESC"}])),
        )
        .await;
    assert_eq!(
        upper.body,
        json!({"type": "InvalidRequestException", "code": null,
               "message": "Cannot set query sortOrder parameter to value DESC"})
    );
    let desc = api
        .post(
            "/external-task/fetchAndLock",
            sorted(json!([{"sortBy": "createTime", "sortOrder": "desc", "parameters": null}])),
        )
        .await;
    assert_eq!(desc.status, StatusCode::OK, "{}", desc.body);
    assert_eq!(desc.body[0]["processInstanceId"], second.as_str());
    let asc = api
        .post(
            "/external-task/fetchAndLock",
            sorted(json!([{"sortBy": "createTime", "sortOrder": "asc"}])),
        )
        .await;
    assert_eq!(asc.body[0]["processInstanceId"], first.as_str());
}

#[tokio::test]
async fn extension_properties_follow_the_topic_flag_not_the_top_level_one() {
    let api = Api::new();
    api.deploy_order("order").await;
    api.start("order", amount(1)).await;
    api.start("order", amount(2)).await;
    let top_level = api
        .post(
            "/external-task/fetchAndLock",
            json!({"workerId": "w", "maxTasks": 1, "includeExtensionProperties": true,
                   "topics": [{"topicName": "check", "lockDuration": 1000}]}),
        )
        .await;
    assert_eq!(top_level.status, StatusCode::OK, "{}", top_level.body);
    assert_eq!(
        top_level.body[0]["extensionProperties"],
        json!({}),
        "Camunda never reads the top-level flag"
    );
    let topic = api
        .post(
            "/external-task/fetchAndLock",
            json!({"workerId": "w", "maxTasks": 1,
                   "topics": [{"topicName": "check", "lockDuration": 1000, "includeExtensionProperties": true}]}),
        )
        .await;
    assert_eq!(
        topic.body[0]["extensionProperties"],
        json!({"model": "gpt"})
    );
}

#[tokio::test]
async fn error_bodies_carry_the_engine_exception_code() {
    let api = Api::new();
    api.deploy_order("order").await;
    api.start("order", amount(1)).await;
    let task = api.fetch_one("w1", "check").await;
    let wrong_worker = api.complete(&task, "w2", json!({})).await;
    assert_eq!(wrong_worker.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        wrong_worker.body["code"], 0,
        "wraps a BadUserRequestException"
    );
    let gone = api.complete("nope", "w1", json!({})).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.body["code"], 0, "wraps the engine's NotFoundException");
    let unknown = api.get("/external-task/nope").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.body["code"], Value::Null, "a bare RestException");
    let route = api.get("/no-such-route").await;
    assert_eq!(route.body["code"], Value::Null);
    let negative = api
        .post(
            &format!("/external-task/{task}/failure"),
            json!({"workerId": "w1", "retries": -1}),
        )
        .await;
    assert_eq!(
        (negative.status, negative.body.clone()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"type": "ProcessEngineException", "code": 0,
                   "message": "retries is not greater than or equal to 0"})
        )
    );
}

#[tokio::test]
async fn historic_instances_have_every_field_of_camundas_dto() {
    let api = Api::new();
    api.deploy_order("order").await;
    let pi = api.start("order", amount(1)).await;
    let one = api.get(&format!("/history/process-instance/{pi}")).await;
    let list = api.get("/history/process-instance").await;
    // HistoricProcessInstanceDto, engine-rest 7.23.
    for field in [
        "id",
        "businessKey",
        "processDefinitionId",
        "processDefinitionKey",
        "processDefinitionName",
        "processDefinitionVersion",
        "startTime",
        "endTime",
        "removalTime",
        "durationInMillis",
        "startUserId",
        "startActivityId",
        "deleteReason",
        "rootProcessInstanceId",
        "superProcessInstanceId",
        "superCaseInstanceId",
        "caseInstanceId",
        "tenantId",
        "state",
        "restartedProcessInstanceId",
    ] {
        assert!(
            one.body.get(field).is_some(),
            "{field} missing: {}",
            one.body
        );
        assert!(
            list.body[0].get(field).is_some(),
            "{field} missing: {}",
            list.body
        );
    }
    assert_eq!(one.body["caseInstanceId"], Value::Null);
    assert_eq!(one.body["restartedProcessInstanceId"], Value::Null);
}

/// A File variable on the process, downloaded the way the official JS client does:
/// `GET /execution/{processInstanceId}/localVariables/{name}/data` (the process instance is the
/// execution whose locals are the process variables). The task's own execution is a scope, as
/// every external task in Camunda: the process variable is not local there.
#[tokio::test]
async fn a_file_variable_downloads_through_the_tasks_execution() {
    let api = Api::new();
    api.deploy_order("order").await;
    let file = json!({"value": BASE64.encode(b"%PDF-1 hello"), "type": "File",
                      "valueInfo": {"filename": "invoice 1.pdf", "mimeType": "application/pdf", "encoding": "UTF-8"}});
    let pi = api
        .start(
            "order",
            json!({"amount": {"value": 500, "type": "Integer"}, "doc": file}),
        )
        .await;
    let check = api.fetch_one("w", "check").await;
    assert_eq!(
        api.complete(&check, "w", json!({})).await.status,
        StatusCode::NO_CONTENT
    );
    let tasks = api.fetch("w", "ship").await;
    let own = tasks[0]["executionId"].as_str().expect("executionId");
    assert_ne!(own, pi, "every external task has its own scope execution");
    let not_local = api
        .get(&format!("/execution/{own}/localVariables/doc/data"))
        .await;
    assert_eq!(
        not_local.status,
        StatusCode::NOT_FOUND,
        "{}",
        not_local.body
    );
    assert_eq!(tasks[0]["processInstanceId"], pi.as_str());
    let execution = pi.as_str();
    let data = api
        .get(&format!("/execution/{execution}/localVariables/doc/data"))
        .await;
    assert_eq!(data.status, StatusCode::OK, "{}", data.body);
    assert_eq!(&data.bytes[..], b"%PDF-1 hello");
    assert_eq!(
        data.headers["content-type"],
        "application/pdf; charset=UTF-8"
    );
    assert_eq!(
        data.headers["content-disposition"],
        "attachment; filename=\"invoice 1.pdf\"; filename*=UTF-8''invoice%201.pdf"
    );
    let meta = api
        .get(&format!("/execution/{execution}/localVariables/doc"))
        .await;
    assert_eq!(meta.body["type"], "File");
    assert_eq!(meta.body["value"], Value::Null);
    let all = api
        .get(&format!("/execution/{execution}/localVariables"))
        .await;
    assert_eq!(all.body["amount"]["value"], 500);

    let missing = api
        .get(&format!("/execution/{execution}/localVariables/nope/data"))
        .await;
    assert_eq!(
        (missing.status, missing.body.clone()),
        (
            StatusCode::NOT_FOUND,
            json!({"type": "InvalidRequestException", "code": null,
                   "message": "execution variable with name nope does not exist"})
        )
    );
    let not_binary = api
        .get(&format!(
            "/execution/{execution}/localVariables/amount/data"
        ))
        .await;
    assert_eq!(not_binary.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        not_binary.body["message"],
        format!("Value of variable with id {execution} is not a binary value.")
    );
    let no_execution = api.get("/execution/nope/localVariables/doc/data").await;
    assert_eq!(
        (no_execution.status, no_execution.body.clone()),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"type": "RestException", "code": 0,
                   "message": "Cannot get execution variable doc: execution nope doesn't exist: execution is null"})
        )
    );
}

/// A task that is a scope (it has a boundary event) keeps its own execution and local variables.
#[tokio::test]
async fn a_scope_tasks_local_file_downloads_through_its_own_execution() {
    let api = Api::new();
    api.deploy_order("order").await;
    let pi = api.start("order", amount(1)).await;
    let task = &api.fetch("w", "check").await[0];
    let execution = task["executionId"]
        .as_str()
        .expect("executionId")
        .to_owned();
    assert_ne!(execution, pi);
    let id = task["id"].as_str().expect("id");
    let failed = api
        .post(
            &format!("/external-task/{id}/failure"),
            json!({"workerId": "w", "retries": 1, "localVariables": {"log": {
                "value": BASE64.encode(b"trace"), "type": "File", "valueInfo": {"filename": "log.txt"}}}}),
        )
        .await;
    assert_eq!(failed.status, StatusCode::NO_CONTENT, "{}", failed.body);
    let data = api
        .get(&format!("/execution/{execution}/localVariables/log/data"))
        .await;
    assert_eq!(data.status, StatusCode::OK, "{}", data.body);
    assert_eq!(&data.bytes[..], b"trace");
    assert_eq!(data.headers["content-type"], "application/octet-stream");
    let on_instance = api
        .get(&format!("/execution/{pi}/localVariables/log"))
        .await;
    assert_eq!(
        on_instance.status,
        StatusCode::NOT_FOUND,
        "local to the task's scope"
    );
}

/// Durations past what a date can hold (~8.2e15 ms) answer 400 naming the field and change
/// nothing: the task stays fetchable (before: the handler panicked and left it locked with
/// `lockExpirationTime: null`).
#[tokio::test]
async fn durations_that_overflow_a_date_answer_400_and_leave_the_task_usable() {
    const HUGE: i64 = 9_000_000_000_000_000;
    let api = Api::new();
    api.deploy_order("order").await;
    api.start("order", amount(1)).await;
    let fetch = api
        .post(
            "/external-task/fetchAndLock",
            json!({"workerId": "w", "maxTasks": 1, "topics": [{"topicName": "check", "lockDuration": HUGE}]}),
        )
        .await;
    assert_eq!(fetch.status, StatusCode::BAD_REQUEST, "{}", fetch.body);
    assert!(
        fetch.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("lockDuration")),
        "{}",
        fetch.body
    );
    let task = api.fetch_one("w1", "check").await;
    for (path, body, field) in [
        (
            "extendLock",
            json!({"workerId": "w1", "newDuration": HUGE}),
            "newDuration",
        ),
        (
            "lock",
            json!({"workerId": "w1", "lockDuration": HUGE}),
            "lockDuration",
        ),
        (
            "failure",
            json!({"workerId": "w1", "retries": 1, "retryTimeout": HUGE}),
            "retryTimeout",
        ),
        (
            "extendLock",
            json!({"workerId": "w1", "newDuration": i64::MAX}),
            "newDuration",
        ),
    ] {
        let a = api
            .post(&format!("/external-task/{task}/{path}"), body)
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path}: {}", a.body);
        assert!(
            a.body["message"]
                .as_str()
                .is_some_and(|m| m.contains(field)),
            "{path}: {}",
            a.body
        );
    }
    let still = api.get(&format!("/external-task/{task}")).await;
    assert_eq!(still.body["workerId"], "w1");
    assert!(
        still.body["lockExpirationTime"].is_string(),
        "{}",
        still.body
    );
    assert_eq!(
        still.body["retries"],
        Value::Null,
        "the failure changed nothing"
    );
    api.engine.expire_lock(&task);
    assert_eq!(
        api.fetch_one("w2", "check").await,
        task,
        "another worker gets it"
    );
}

mod durations {
    use proptest::prelude::*;

    use super::*;

    /// Durations across the whole `i64` range, weighted towards the edges that matter: 0,
    /// negatives, what a date can hold (~8.2e15 ms) and `i64::MAX`.
    fn duration() -> impl Strategy<Value = i64> {
        prop_oneof![
            Just(0_i64),
            Just(i64::MAX),
            Just(i64::MIN),
            -10_i64..10,
            8_000_000_000_000_000_i64..8_400_000_000_000_000,
            any::<i64>(),
        ]
    }

    /// One call with a hostile duration, then a check that the engine is still consistent.
    async fn probe(call: usize, ms: i64) {
        let api = Api::new();
        api.deploy_order("order").await;
        api.start("order", amount(1)).await;
        let task = api.fetch_one("w1", "check").await;
        let (path, body) = match call {
            0 => (
                format!("/external-task/{task}/extendLock"),
                json!({"workerId": "w1", "newDuration": ms}),
            ),
            1 => (
                format!("/external-task/{task}/lock"),
                json!({"workerId": "w1", "lockDuration": ms}),
            ),
            2 => (
                format!("/external-task/{task}/failure"),
                json!({"workerId": "w1", "retries": 1, "retryTimeout": ms}),
            ),
            _ => (
                "/external-task/fetchAndLock".to_owned(),
                json!({"workerId": "w2", "maxTasks": 1, "asyncResponseTimeout": ms,
                       "topics": [{"topicName": "check", "lockDuration": ms}]}),
            ),
        };
        let a = api.post(&path, body).await;
        let refused = a.status.is_client_error() || a.status == StatusCode::INTERNAL_SERVER_ERROR;
        assert!(
            a.status.is_success() || refused,
            "{path} {ms}: {}",
            a.status
        );
        if refused {
            assert!(a.body["type"].is_string(), "{path} {ms}: {}", a.body);
        }
        let now = api.get(&format!("/external-task/{task}")).await;
        assert!(
            now.body["workerId"].is_null() || now.body["lockExpirationTime"].is_string(),
            "a task held by a worker has a lock expiration: {path} {ms}: {}",
            now.body
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// No duration a client sends makes a handler panic or leaves a task locked without a
        /// lock expiration; the answer is a success or an error body.
        #[test]
        fn any_duration_is_answered_and_leaves_the_task_consistent(call in 0usize..4, ms in duration()) {
            // Paused time: a long poll the case happens to start ends at once, not after minutes.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .expect("runtime");
            rt.block_on(probe(call, ms));
        }
    }
}

/// A JSON body above the engine's limit is refused as too large (413 saying the limit), not as
/// a body that could not be read.
#[tokio::test]
async fn a_json_body_above_the_limit_answers_413_naming_the_limit() {
    let api = Api::new();
    let limit = crate::engine::api::BODY_LIMIT;
    let a = api
        .post(
            "/external-task/t/complete",
            json!({"workerId": "w", "pad": "x".repeat(limit)}),
        )
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.body);
    let message = a.body["message"].as_str().unwrap_or_default();
    assert!(message.contains(&limit.to_string()), "{message}");
}
