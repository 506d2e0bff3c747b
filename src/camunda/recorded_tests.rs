//! The client reads recorded, real-shaped answers of Camunda 7.23 (see `testdata/README.md`
//! for where each comes from): every field the engine sends, `null` wherever the engine may
//! send it, fields a newer engine may add, and variables of every type.

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::variables::{VarType, Variable, decode_all};
use super::*;

const FETCH_AND_LOCK: &str = include_str!("testdata/fetch_and_lock.json");
const ERROR_REST: &str = include_str!("testdata/error_rest.json");
const ERROR_AUTHORIZATION: &str = include_str!("testdata/error_authorization.json");
const VERSION: &str = include_str!("testdata/version.json");
const DEPLOYMENT: &str = include_str!("testdata/deployment.json");
const PROCESS_INSTANCE: &str = include_str!("testdata/process_instance.json");
const HISTORY: &str = include_str!("testdata/history_process_instance.json");

/// A client on a wiremock engine that answers `verb path` with `status` and the recorded body.
async fn engine_answering(
    verb: &str,
    route: &str,
    status: u16,
    body: &str,
) -> (MockServer, CamundaClient) {
    let server = MockServer::start().await;
    Mock::given(method(verb))
        .and(path(format!("/engine-rest{route}")))
        .respond_with(
            ResponseTemplate::new(status)
                .set_body_raw(body.as_bytes().to_vec(), "application/json"),
        )
        .mount(&server)
        .await;
    let client = CamundaClient::new(ClientSettings {
        url: format!("{}/engine-rest", server.uri()),
        auth: None,
        worker_id: "procos-1".to_owned(),
        request_timeout: std::time::Duration::from_secs(5),
    })
    .expect("valid settings");
    (server, client)
}

fn poll() -> FetchAndLock {
    FetchAndLock {
        worker_id: "procos-1".to_owned(),
        max_tasks: 2,
        use_priority: true,
        async_response_timeout: None,
        topics: vec![FetchTopic {
            topic_name: "invoice".to_owned(),
            lock_duration: 300_000,
            variables: None,
            include_extension_properties: true,
            deserialize_values: false,
        }],
    }
}

#[tokio::test]
async fn a_recorded_fetch_and_lock_answer_is_read_whole() {
    let (_server, client) =
        engine_answering("POST", "/external-task/fetchAndLock", 200, FETCH_AND_LOCK).await;
    let tasks = client.fetch_and_lock(&poll()).await.expect("tasks");
    assert_eq!(tasks.len(), 2);
    let full = &tasks[0];
    assert_eq!(full.id, "8b2e0a5d-d0f4-11ef-9f1e-0242ac120002");
    assert_eq!((full.retries, full.priority), (Some(2), 50));
    assert_eq!(full.tenant_id.as_deref(), Some("tenant-a"));
    assert_eq!(
        full.process_definition_version_tag.as_deref(),
        Some("1.4.0")
    );
    assert_eq!(full.extension_properties["endpoint"], "billing");
    let vars = decode_all(&full.variables).expect("every type decodes");
    let ty = |name: &str| vars[name].var_type;
    for (name, expected) in [
        ("name", VarType::String),
        ("count", VarType::Integer),
        ("big", VarType::Long),
        ("small", VarType::Short),
        ("ratio", VarType::Double),
        ("ok", VarType::Boolean),
        ("due", VarType::Date),
        ("raw", VarType::Bytes),
        ("nothing", VarType::Null),
        ("order", VarType::Json),
        ("doc", VarType::Xml),
        ("customer", VarType::Object),
        ("legacy", VarType::Object),
        ("invoice", VarType::File),
    ] {
        assert_eq!(ty(name), expected, "{name}");
    }
    assert_eq!(vars["order"].value, json!({"id": 7, "lines": [1, 2]}));
    assert_eq!(vars["customer"].value, json!({"name": "Ada"}));
    let file: &Variable = &vars["invoice"];
    assert_eq!(file.value, Value::Null);
    assert_eq!(file.info["mimeType"], "application/pdf");
    assert_eq!(file.info["filename"], "invoice.pdf");

    let sparse = &tasks[1];
    assert_eq!((sparse.retries, sparse.priority), (None, -3));
    assert!(sparse.extension_properties.is_empty(), "null reads as none");
    assert_eq!(sparse.lock_expiration_time, None);
    let vars = decode_all(&sparse.variables).expect("nulls decode");
    assert_eq!(vars["untyped"].var_type, VarType::String);
    assert_eq!(vars["noInfo"].value, "y");
    assert_eq!(vars["emptyDate"].value, Value::Null);
}

#[tokio::test]
async fn recorded_error_bodies_become_typed_errors_with_their_code() {
    let (_server, client) =
        engine_answering("POST", "/external-task/gone/extendLock", 404, ERROR_REST).await;
    let err = client
        .extend_lock("gone", std::time::Duration::from_secs(1))
        .await
        .expect_err("404");
    assert!(err.is_not_found(), "{err}");
    assert!(
        matches!(&err, CamundaError::Engine { code: Some(0), kind, .. } if kind == "RestException"),
        "{err:?}"
    );

    let (_server, client) = engine_answering(
        "POST",
        "/external-task/t/complete",
        403,
        ERROR_AUTHORIZATION,
    )
    .await;
    let err = client
        .complete("t", VariableMap::new(), VariableMap::new())
        .await
        .expect_err("403");
    assert_eq!(err.status(), Some(403));
    assert!(
        err.to_string()
            .contains("does not have one of the following permissions"),
        "{err}"
    );
}

#[tokio::test]
async fn recorded_version_deployment_start_and_history_answers_are_read() {
    let (_server, client) = engine_answering("GET", "/version", 200, VERSION).await;
    assert_eq!(client.version().await.expect("version"), "7.23.0");

    let (_server, client) = engine_answering("POST", "/deployment/create", 200, DEPLOYMENT).await;
    let deployed = client
        .deploy(&DeploymentRequest {
            name: "procos".to_owned(),
            source: "procos".to_owned(),
            tenant_id: None,
            changed_only: true,
            resources: vec![Resource {
                name: "invoice.bpmn".to_owned(),
                content: b"<definitions/>".to_vec(),
            }],
        })
        .await
        .expect("deployment");
    assert_eq!(deployed.id, "7d1b4b16-d0f4-11ef-9f1e-0242ac120002");
    let defs = deployed.deployed_process_definitions.expect("definitions");
    assert_eq!(
        defs["invoice:3:7d1c2f9a-d0f4-11ef-9f1e-0242ac120002"]["version"],
        3
    );

    let (_server, client) = engine_answering(
        "POST",
        "/process-definition/key/invoice/start",
        200,
        PROCESS_INSTANCE,
    )
    .await;
    let started = client
        .start_process("invoice", None, VariableMap::new())
        .await
        .expect("instance");
    assert_eq!(started.id, "8b2d6e14-d0f4-11ef-9f1e-0242ac120002");
    assert_eq!(started.business_key, None);
    assert!(!started.ended);

    let id = "8b2d6e14-d0f4-11ef-9f1e-0242ac120002";
    let (_server, client) = engine_answering(
        "GET",
        &format!("/history/process-instance/{id}"),
        200,
        HISTORY,
    )
    .await;
    let history = client.historic_process_instance(id).await.expect("history");
    assert_eq!(history.state.as_deref(), Some("COMPLETED"));
    assert_eq!(history.duration_in_millis, Some(16_500));
    assert_eq!(history.case_instance_id, None);
    assert_eq!(history.restarted_process_instance_id, None);
    assert_eq!(history.process_definition_version, Some(3));
}
