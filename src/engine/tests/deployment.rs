//! Deployment: multipart rules, duplicate filtering, versions, parse errors; hostile inputs,
//! deletion and the property test in the submodules.

mod delete;
mod hostile;
mod proptests;

use axum::http::StatusCode;
use serde_json::Value;

use super::{Api, Part};
use crate::engine::bpmn::tests::order_process;

fn definitions(body: &Value) -> Vec<Value> {
    body["deployedProcessDefinitions"]
        .as_object()
        .map(|m| m.values().cloned().collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn deployment_lists_definitions_and_versions_increase_per_key() {
    let api = Api::new();
    let first = api.deploy_order("order").await;
    let defs = definitions(&first.body);
    assert_eq!(defs.len(), 1);
    assert_eq!(defs[0]["key"], "order");
    assert_eq!(defs[0]["version"], 1);
    assert_eq!(defs[0]["deploymentId"], first.body["id"]);
    assert_eq!(first.body["name"], "order");
    assert!(
        first.body["deploymentTime"]
            .as_str()
            .is_some_and(|t| t.ends_with("+0000"))
    );
    let second = api.deploy_order("order").await;
    assert_eq!(
        definitions(&second.body)[0]["version"],
        2,
        "no filtering: always a new version"
    );
    let latest = api.get("/process-definition/key/order").await;
    assert_eq!(latest.body["version"], 2);
    let all = api.get("/process-definition?key=order").await;
    assert_eq!(all.body.as_array().map(Vec::len), Some(2));
    let only_latest = api
        .get("/process-definition?key=order&latestVersion=true")
        .await;
    assert_eq!(only_latest.body.as_array().map(Vec::len), Some(1));
    assert_eq!(
        api.get("/deployment").await.body.as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(api.engine.stats().deployments, 2);
}

#[tokio::test]
async fn a_resource_part_without_filename_is_refused() {
    let api = Api::new();
    let mut part = Part::file("data", "x.bpmn", order_process("order"));
    part.filename = None;
    let a = api.deploy(&[part]).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.body["type"], "InvalidRequestException");
    assert!(
        a.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("No file name")),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn a_deployment_without_resources_is_refused() {
    let api = Api::new();
    let a = api.deploy(&[]).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("No deployment resources")),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn a_repeated_part_name_keeps_only_the_last_file() {
    let api = Api::new();
    let a = api
        .deploy(&[
            Part::file("data", "a.bpmn", order_process("procA")),
            Part::file("data", "b.bpmn", order_process("procB")),
        ])
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let keys: Vec<Value> = definitions(&a.body)
        .iter()
        .map(|d| d["key"].clone())
        .collect();
    assert_eq!(keys, vec![Value::from("procB")]);
    let found = api.get("/process-definition?key=procA").await;
    assert_eq!(found.body, Value::Array(vec![]));
}

#[tokio::test]
async fn text_fields_with_a_non_text_content_type_are_ignored() {
    let api = Api::new();
    let mut name = Part::text("deployment-name", "named");
    name.content_type = Some("application/json");
    let a = api
        .deploy(&[name, Part::file("a", "a.bpmn", order_process("p"))])
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["name"], Value::Null);
}

#[tokio::test]
async fn duplicate_filtering_compares_name_and_source() {
    let api = Api::new();
    let deploy = |source: &'static str| {
        let api = &api;
        async move {
            api.deploy(&[
                Part::text("deployment-name", "orders"),
                Part::text("deployment-source", source),
                Part::text("enable-duplicate-filtering", "true"),
                Part::file("a", "order.bpmn", order_process("order")),
            ])
            .await
        }
    };
    let first = deploy("procos").await;
    let again = deploy("procos").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        again.body["id"], first.body["id"],
        "unchanged deployment is filtered"
    );
    assert_eq!(again.body["deployedProcessDefinitions"], Value::Null);
    let other_source = deploy("other").await;
    assert_ne!(other_source.body["id"], first.body["id"]);
    assert_eq!(definitions(&other_source.body)[0]["version"], 2);
}

#[tokio::test]
async fn duplicate_filtering_skips_a_subset_of_unchanged_resources() {
    let api = Api::new();
    let common = [
        Part::text("deployment-name", "orders"),
        Part::text("deployment-source", "procos"),
        Part::text("enable-duplicate-filtering", "true"),
    ];
    let both = [
        Part::file("a", "a.bpmn", order_process("procA")),
        Part::file("b", "b.bpmn", order_process("procB")),
    ];
    let first = api.deploy(&[common.to_vec(), both.to_vec()].concat()).await;
    assert_eq!(definitions(&first.body).len(), 2);
    let only_a = api
        .deploy(
            &[
                common.to_vec(),
                vec![Part::file("a", "a.bpmn", order_process("procA"))],
            ]
            .concat(),
        )
        .await;
    assert_eq!(only_a.status, StatusCode::OK);
    assert_eq!(
        only_a.body["id"], first.body["id"],
        "each resource equals its latest version: nothing deployed"
    );
    assert_eq!(api.engine.stats().deployments, 1);
}

#[tokio::test]
async fn deploy_changed_only_redeploys_only_changed_resources() {
    let api = Api::new();
    let deploy = |b: String| {
        let api = &api;
        async move {
            api.deploy(&[
                Part::text("deployment-name", "two"),
                Part::text("deploy-changed-only", "true"),
                Part::file("a", "a.bpmn", order_process("procA")),
                Part::file("b", "b.bpmn", b),
            ])
            .await
        }
    };
    let first = deploy(order_process("procB")).await;
    assert_eq!(definitions(&first.body).len(), 2);
    let changed = order_process("procB").replace("name=\"Order\"", "name=\"Order v2\"");
    let second = deploy(changed).await;
    let defs = definitions(&second.body);
    assert_eq!(defs.len(), 1, "{}", second.body);
    assert_eq!(defs[0]["key"], "procB");
    assert_eq!(defs[0]["version"], 2);
    assert_eq!(
        api.get("/process-definition/key/procA").await.body["version"],
        1
    );
}

#[tokio::test]
async fn a_process_without_history_ttl_is_refused_with_engine_12018() {
    let api = Api::new();
    let xml = order_process("order").replace(r#" camunda:historyTimeToLive="P1D""#, "");
    let a = api.deploy(&[Part::file("data", "order.bpmn", xml)]).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.body["type"], "ParseException");
    let err = &a.body["details"]["order.bpmn"]["errors"][0];
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("ENGINE-12018")),
        "{}",
        a.body
    );
    assert_eq!(err["mainBpmnElementId"], "order");
    assert_eq!(api.engine.stats().deployments, 0);
}

#[tokio::test]
async fn a_history_ttl_that_is_not_whole_days_is_refused() {
    let api = Api::new();
    let xml = order_process("order").replace(
        r#"camunda:historyTimeToLive="P1D""#,
        r#"camunda:historyTimeToLive="P1Y""#,
    );
    let a = api.deploy(&[Part::file("data", "order.bpmn", xml)]).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let err = &a.body["details"]["order.bpmn"]["errors"][0];
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("historyTimeToLive")),
        "{}",
        a.body
    );
}

#[tokio::test]
async fn broken_xml_answers_400_with_line_and_column() {
    let api = Api::new();
    let xml = order_process("order").replace(
        "</bpmn:serviceTask>\n    <bpmn:boundaryEvent",
        "</bpmn:service>\n    <bpmn:boundaryEvent",
    );
    let a = api.deploy(&[Part::file("data", "order.bpmn", xml)]).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    let err = &a.body["details"]["order.bpmn"]["errors"][0];
    assert_eq!(err["line"], 9, "{}", a.body);
    assert!(err["column"].as_u64().is_some_and(|c| c > 0));
    assert_eq!(
        a.body["details"]["order.bpmn"]["warnings"],
        Value::Array(vec![])
    );
}

#[tokio::test]
async fn dmn_and_form_resources_are_stored_without_definitions() {
    let api = Api::new();
    let a = api
        .deploy(&[
            Part::file("d", "rules.dmn", "<definitions/>".to_owned()),
            Part::file("f", "x.form", "{}".to_owned()),
        ])
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["deployedProcessDefinitions"], serde_json::json!({}));
}

#[tokio::test]
async fn a_deployment_that_is_not_multipart_is_refused() {
    let api = Api::new();
    let a = api.post("/deployment/create", serde_json::json!({})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.body["type"], "InvalidRequestException");
}

/// Log output captured in memory.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut out) = self.0.lock() {
            out.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_deployment_log_line_has_plain_field_values() {
    let engine = crate::engine::Engine::new(crate::engine::EngineOptions {
        quiet: false,
        ..Default::default()
    });
    let api = Api {
        router: engine.router(),
        engine,
    };
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .finish();
    let answer = {
        let _guard = tracing::subscriber::set_default(subscriber);
        api.deploy_order("order").await
    };
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|l: &Value| l["fields"]["message"] == "Deployment created.")
        .unwrap_or_else(|| panic!("no deployment line in {text}"));
    let fields = &line["fields"];
    assert_eq!(fields["deployment"], "order", "{line}");
    assert_eq!(fields["resources"], "order.bpmn", "{line}");
    assert_eq!(fields["id"], answer.body["id"], "{line}");
}
