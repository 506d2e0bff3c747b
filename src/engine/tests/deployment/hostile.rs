//! Hostile deployments: inputs a fuzzer or a careless client sends. Each must answer 400 (or
//! 413) with a message naming the resource, in time linear in its size, without blocking the
//! rest of the engine while it is parsed.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;

use super::super::{Answer, Api};
use crate::engine::bpmn;
use crate::engine::bpmn::tests::order_process;

/// Deploys raw resources (file name → bytes), each in its own part.
pub(super) async fn deploy_bytes(api: &Api, files: &[(&str, &[u8])]) -> Answer {
    api.send(multipart(files)).await
}

/// A `POST /deployment/create` request carrying `files` as resources.
pub(super) fn multipart(files: &[(&str, &[u8])]) -> Request<Body> {
    let boundary = "procosHostileBoundary0xq9";
    let mut body = Vec::new();
    for (i, (filename, data)) in files.iter().enumerate() {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"r{i}\"; \
                 filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Request::builder()
        .method("POST")
        .uri("/engine-rest/deployment/create")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .expect("request")
}

/// A valid model: start → `tasks` external tasks in a chain → end; each task carries `pad`
/// bytes of documentation, so the size grows with both.
pub(super) fn chain_model(key: &str, tasks: usize, pad: usize) -> String {
    let doc = "x".repeat(pad);
    let mut xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="t">
  <bpmn:process id="{key}" isExecutable="true" camunda:historyTimeToLive="P1D">
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f0" sourceRef="start" targetRef="t1" />
"#
    );
    for i in 1..=tasks {
        let next = if i == tasks {
            "end".to_owned()
        } else {
            format!("t{}", i + 1)
        };
        xml.push_str(&format!(
            "    <bpmn:serviceTask id=\"t{i}\" camunda:type=\"external\" camunda:topic=\"work\">\n      <bpmn:documentation>{doc}</bpmn:documentation>\n    </bpmn:serviceTask>\n    <bpmn:sequenceFlow id=\"f{i}\" sourceRef=\"t{i}\" targetRef=\"{next}\" />\n"
        ));
    }
    xml.push_str("    <bpmn:endEvent id=\"end\" />\n  </bpmn:process>\n</bpmn:definitions>\n");
    xml
}

/// Asserts a 400 `ParseException` whose message and `details` name `resource`; returns the
/// first problem's message.
fn assert_refused(a: &Answer, resource: &str) -> String {
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert_eq!(a.body["type"], "ParseException", "{}", a.body);
    let message = a.body["message"].as_str().unwrap_or_default();
    assert!(message.contains(resource), "{}", a.body);
    let first = &a.body["details"][resource]["errors"][0];
    assert!(first["line"].as_u64().is_some_and(|l| l >= 1), "{}", a.body);
    first["message"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_two_megabyte_model_with_thousands_of_elements_parses_in_linear_time() {
    let xml = chain_model("big", 5_000, 300);
    assert!(xml.len() > 2_000_000, "{} bytes", xml.len());
    // The quadratic parser took over 60 s for this size; a linear one takes well under 1 s
    // (debug build). The generous bound keeps the test stable on a loaded machine.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(bpmn::parse(xml.as_bytes()).map(|p| p[0].elements.len()));
    });
    let parsed = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("a 2 MB model must parse within 5 s");
    assert_eq!(parsed, Ok(5_002), "start + 5000 tasks + end");
}

#[test]
fn a_parse_whose_client_went_away_stops_early() {
    let xml = chain_model("big", 5_000, 10);
    let gone = std::sync::atomic::AtomicBool::new(true);
    let problems = bpmn::parse_until(xml.as_bytes(), &gone).expect_err("abandoned");
    assert!(problems[0].message.contains("went away"), "{problems:?}");
    let lines = xml.lines().count();
    assert!(
        problems[0].line < lines / 4,
        "stopped early of {lines}: {problems:?}"
    );
    let here = std::sync::atomic::AtomicBool::new(false);
    assert!(bpmn::parse_until(xml.as_bytes(), &here).is_ok());
}

#[test]
fn problems_deep_in_a_large_model_keep_their_line_and_column() {
    let xml = chain_model("big", 2_000, 10).replace(
        "<bpmn:serviceTask id=\"t1500\" camunda:type=\"external\" camunda:topic=\"work\">",
        "<bpmn:serviceTask id=\"t1500\" camunda:type=\"external\">",
    );
    let line = xml
        .lines()
        .position(|l| l.contains("id=\"t1500\""))
        .expect("t1500")
        + 1;
    let problems = bpmn::parse(xml.as_bytes()).expect_err("no topic");
    assert_eq!(problems[0].element_id.as_deref(), Some("t1500"));
    assert_eq!((problems[0].line, problems[0].column), (line, 5));
}

#[tokio::test]
async fn an_empty_model_is_refused() {
    let api = Api::new();
    let a = deploy_bytes(&api, &[("empty.bpmn", b"")]).await;
    let m = assert_refused(&a, "empty.bpmn");
    assert!(m.contains("Premature end of file"), "{m}");
    let a = deploy_bytes(&api, &[("blank.bpmn20.xml", b"  \n\t ")]).await;
    assert_refused(&a, "blank.bpmn20.xml");
    assert_eq!(api.engine.stats().deployments, 0);
}

#[tokio::test]
async fn plain_text_and_binary_bytes_are_refused() {
    let api = Api::new();
    let a = deploy_bytes(&api, &[("notes.bpmn", b"just some notes, not XML\n")]).await;
    let m = assert_refused(&a, "notes.bpmn");
    assert!(m.contains("Content is not allowed in prolog"), "{m}");
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10";
    let a = deploy_bytes(&api, &[("image.bpmn", png)]).await;
    assert_refused(&a, "image.bpmn");
    let a = deploy_bytes(&api, &[("two.bpmn", b"<definitions/><definitions/>")]).await;
    assert_refused(&a, "two.bpmn");
    let a = deploy_bytes(&api, &[("other.bpmn", b"<html><body/></html>")]).await;
    let m = assert_refused(&a, "other.bpmn");
    assert!(m.contains("'html'"), "{m}");
    assert_eq!(api.engine.stats().deployments, 0);
}

#[tokio::test]
async fn a_doctype_is_refused_with_or_without_entities() {
    let api = Api::new();
    let model = order_process("order");
    let plain = model.replacen(
        "?>\n",
        "?>\n<!DOCTYPE definitions SYSTEM \"bpmn.dtd\">\n",
        1,
    );
    let a = deploy_bytes(&api, &[("plain.bpmn", plain.as_bytes())]).await;
    let m = assert_refused(&a, "plain.bpmn");
    assert!(m.contains("DOCTYPE is disallowed"), "{m}");
    let entities = model
        .replacen(
            "?>\n",
            "?>\n<!DOCTYPE d [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;\">]>\n",
            1,
        )
        .replace("name=\"Order\"", "name=\"&b;\"");
    let a = deploy_bytes(&api, &[("laughs.bpmn", entities.as_bytes())]).await;
    let m = assert_refused(&a, "laughs.bpmn");
    assert!(m.contains("DOCTYPE is disallowed"), "{m}");
    assert_eq!(api.engine.stats().deployments, 0);
}

#[tokio::test]
async fn an_undeclared_entity_is_refused() {
    let api = Api::new();
    let model = order_process("order").replace("${amount &gt; 100}", "${amount &gt; &limit;}");
    let a = deploy_bytes(&api, &[("text.bpmn", model.as_bytes())]).await;
    let m = assert_refused(&a, "text.bpmn");
    assert!(m.contains("The entity \"limit\" was referenced"), "{m}");
    let model = order_process("order").replace("name=\"Order\"", "name=\"Order &company;\"");
    let a = deploy_bytes(&api, &[("attribute.bpmn", model.as_bytes())]).await;
    let m = assert_refused(&a, "attribute.bpmn");
    assert!(m.contains("The entity \"company\" was referenced"), "{m}");
}

#[tokio::test]
async fn invalid_utf8_is_refused_naming_the_byte_and_line() {
    let api = Api::new();
    let model = order_process("order");
    let at = model.find("Order").expect("name");
    let mut bytes = model.into_bytes();
    bytes[at + 1] = 0xFF;
    let a = deploy_bytes(&api, &[("latin.bpmn", &bytes)]).await;
    let m = assert_refused(&a, "latin.bpmn");
    assert!(m.contains(&format!("byte offset {}", at + 1)), "{m}");
    assert_eq!(a.body["details"]["latin.bpmn"]["errors"][0]["line"], 4);
    assert_eq!(api.engine.stats().deployments, 0);
}

#[tokio::test]
async fn other_resources_are_stored_without_being_parsed() {
    let api = Api::new();
    let a = deploy_bytes(
        &api,
        &[
            ("logo.png", b"\x89PNG\r\n\x1a\n\xff\xfe"),
            ("readme.txt", b""),
            ("rules.dmn", b"not even xml"),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["deployedProcessDefinitions"], serde_json::json!({}));
    assert_eq!(api.engine.stats().deployments, 1);
}

#[tokio::test]
async fn a_resource_too_large_to_be_a_model_is_refused() {
    let api = Api::new();
    let limit = crate::engine::deploy::MODEL_LIMIT;
    let xml = chain_model("huge", 10, limit / 10);
    assert!(xml.len() > limit);
    let a = deploy_bytes(&api, &[("huge.bpmn", xml.as_bytes())]).await;
    let m = assert_refused(&a, "huge.bpmn");
    assert!(m.contains(&limit.to_string()), "{m}");
}

#[tokio::test]
async fn an_upload_above_the_body_limit_answers_413() {
    let api = Api::new();
    let big = vec![b'x'; crate::engine::api::BODY_LIMIT + 1];
    let a = deploy_bytes(&api, &[("big.txt", &big)]).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.body);
    let m = a.body["message"].as_str().unwrap_or_default();
    assert!(m.contains("too large"), "{m}");
    assert!(
        m.contains(&crate::engine::api::BODY_LIMIT.to_string()),
        "{m}"
    );
    assert_eq!(api.engine.stats().deployments, 0);
}

/// `depth` nested elements named `tag` inside the order process's service task `check`.
fn deeply_nested(tag: &str, depth: usize) -> String {
    let open = format!("<{tag}>").repeat(depth);
    let close = format!("</{tag}>").repeat(depth);
    order_process("order").replace(
        "<bpmn:extensionElements>",
        &format!("{open}{close}<bpmn:extensionElements>"),
    )
}

#[tokio::test]
async fn ten_thousand_nested_elements_do_not_overflow_the_stack() {
    let api = Api::new();
    for (name, xml) in [
        ("unknown.bpmn", deeply_nested("foo", 10_000)),
        ("tasks.bpmn", deeply_nested("bpmn:serviceTask", 10_000)),
        (
            "outside.bpmn",
            order_process("order").replace(
                "</bpmn:definitions>",
                &format!(
                    "{}{}</bpmn:definitions>",
                    "<x>".repeat(10_000),
                    "</x>".repeat(10_000)
                ),
            ),
        ),
    ] {
        let a = deploy_bytes(&api, &[(name, xml.as_bytes())]).await;
        assert!(
            a.status == StatusCode::OK || a.status == StatusCode::BAD_REQUEST,
            "{name}: {} {}",
            a.status,
            a.body
        );
        if a.status == StatusCode::BAD_REQUEST {
            assert_refused(&a, name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_answers_while_a_model_parses() {
    use crate::engine::deploy::gate;
    let api = std::sync::Arc::new(Api::new());
    api.deploy_order("order").await;
    api.start("order", super::super::amount(5)).await;
    let (started_tx, started) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    *gate::GATE.lock().expect("gate") = Some((started_tx, release_rx));
    let deploying = {
        let api = std::sync::Arc::clone(&api);
        let xml = order_process("other");
        tokio::spawn(async move { deploy_bytes(&api, &[(gate::NAME, xml.as_bytes())]).await })
    };
    tokio::task::spawn_blocking(move || started.recv_timeout(Duration::from_secs(10)))
        .await
        .expect("join")
        .expect("the deployment's parse starts");
    // The parse is now held: the engine must answer other calls meanwhile. They are made
    // from a thread of their own, so a store lock held by the parse cannot stall the test.
    let (answered_tx, answered) = std::sync::mpsc::channel();
    {
        let api = std::sync::Arc::clone(&api);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let _ = answered_tx.send(rt.block_on(async {
                let version = api.get("/version").await.status;
                (version, api.fetch("w1", "check").await.len())
            }));
        });
    }
    let during = answered.recv_timeout(Duration::from_secs(5));
    let _ = release.send(());
    let (version, fetched) =
        during.expect("/version and fetchAndLock must answer while a deployment parses");
    assert_eq!(version, StatusCode::OK);
    assert_eq!(fetched, 1, "fetchAndLock hands out the waiting task");
    let deployed = deploying.await.expect("deploy task");
    assert_eq!(deployed.status, StatusCode::OK, "{}", deployed.body);
    let defs: &Value = &deployed.body["deployedProcessDefinitions"];
    assert_eq!(defs.as_object().map(|m| m.len()), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_deployments_get_distinct_versions_and_filter_duplicates() {
    let api = std::sync::Arc::new(Api::new());
    let xml = order_process("order");
    let mut racers = Vec::new();
    for _ in 0..6 {
        let (api, xml) = (std::sync::Arc::clone(&api), xml.clone());
        racers.push(tokio::spawn(async move {
            api.deploy(&[
                super::super::Part::text("deployment-name", "same"),
                super::super::Part::text("enable-duplicate-filtering", "true"),
                super::super::Part::file("data", "order.bpmn", xml),
            ])
            .await
        }));
    }
    let mut ids = Vec::new();
    for r in racers {
        let a = r.await.expect("racer");
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        ids.push(a.body["id"].as_str().unwrap_or_default().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "all six answered the one deployment: {ids:?}");
    let defs = api.get("/process-definition?key=order").await;
    assert_eq!(defs.body.as_array().map(Vec::len), Some(1), "{}", defs.body);
    // Without filtering, racing deployments each get their own, distinct version.
    let mut racers = Vec::new();
    for _ in 0..6 {
        let (api, xml) = (std::sync::Arc::clone(&api), xml.clone());
        racers.push(tokio::spawn(async move {
            deploy_bytes(&api, &[("order.bpmn", xml.as_bytes())]).await
        }));
    }
    for r in racers {
        assert_eq!(r.await.expect("racer").status, StatusCode::OK);
    }
    let defs = api.get("/process-definition?key=order").await;
    let mut versions: Vec<u64> = defs
        .body
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["version"].as_u64())
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, (1..=7).collect::<Vec<u64>>());
}
