//! `DELETE /deployment/{id}`: cascade deletes running instances, otherwise Camunda's refusal.

use axum::http::StatusCode;
use serde_json::Value;

use super::super::{Api, amount};

async fn deploy_id(api: &Api, key: &str) -> String {
    let a = api.deploy_order(key).await;
    a.body["id"].as_str().expect("deployment id").to_owned()
}

#[tokio::test]
async fn cascade_deletes_the_running_instances_their_tasks_and_history() {
    let api = Api::new();
    let id = deploy_id(&api, "order").await;
    let running = api.start("order", amount(5)).await;
    assert_eq!(api.fetch("w1", "check").await.len(), 1);
    let a = api
        .call(
            "DELETE",
            &format!("/deployment/{id}?cascade=true&skipCustomListeners=true&skipIoMappings=true"),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    let gone = api.get(&format!("/deployment/{id}")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let instance = api.get(&format!("/process-instance/{running}")).await;
    assert_eq!(instance.status, StatusCode::NOT_FOUND);
    // Camunda deletes the definitions' historic instances with a cascading delete.
    let history = api
        .get(&format!("/history/process-instance/{running}"))
        .await;
    assert_eq!(history.status, StatusCode::NOT_FOUND, "{}", history.body);
    let count = api.get("/external-task/count").await;
    assert_eq!(count.body["count"], 0, "{}", count.body);
    let defs = api.get("/process-definition?key=order").await;
    assert_eq!(defs.body, Value::Array(vec![]));
    let start = api
        .post("/process-definition/key/order/start", serde_json::json!({}))
        .await;
    assert_eq!(start.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cascade_leaves_other_deployments_alone_and_the_previous_version_becomes_latest() {
    let api = Api::new();
    deploy_id(&api, "order").await;
    let older = api.start("order", amount(5)).await;
    let second = deploy_id(&api, "order").await;
    let newer = api.start("order", amount(5)).await;
    let a = api
        .call(
            "DELETE",
            &format!("/deployment/{second}?cascade=true"),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    assert_eq!(
        api.get(&format!("/process-instance/{newer}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.get(&format!("/process-instance/{older}")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        api.fetch("w1", "check").await.len(),
        1,
        "the older instance's task"
    );
    let latest = api.get("/process-definition/key/order").await;
    assert_eq!(latest.body["version"], 1, "{}", latest.body);
}

#[tokio::test]
async fn without_cascade_running_instances_refuse_the_delete() {
    let api = Api::new();
    let id = deploy_id(&api, "order").await;
    let running = api.start("order", amount(5)).await;
    let a = api.call("DELETE", &format!("/deployment/{id}"), None).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", a.body);
    assert_eq!(a.body["type"], "ProcessEngineException");
    let m = a.body["message"].as_str().unwrap_or_default();
    assert!(
        m.starts_with("ENGINE-03076 Deletion of process definition without cascading failed.")
            && m.contains("there are 1 dependent process instances"),
        "{m}"
    );
    assert_eq!(
        api.get(&format!("/deployment/{id}")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        api.get(&format!("/process-instance/{running}"))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn without_cascade_a_deployment_without_instances_is_deleted_keeping_history() {
    let api = Api::new();
    let id = deploy_id(&api, "order").await;
    let done = api.start("order", amount(5)).await;
    let a = api
        .call("DELETE", &format!("/process-instance/{done}"), None)
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    let a = api
        .call("DELETE", &format!("/deployment/{id}?cascade=false"), None)
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    assert_eq!(
        api.get(&format!("/deployment/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(api.history_state(&done).await, "EXTERNALLY_TERMINATED");
}

#[tokio::test]
async fn deleting_an_unknown_deployment_answers_404() {
    let api = Api::new();
    let a = api
        .call("DELETE", "/deployment/nope?cascade=true", None)
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
    assert_eq!(a.body["type"], "InvalidRequestException");
    assert_eq!(a.body["message"], "Deployment with id 'nope' do not exist");
}
