//! Request shapes and error handling of [`CamundaClient`] against a wiremock engine.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::*;
use crate::camunda::variables::{TypedValue, encode_json_map};
use crate::config::Secret;

fn settings(server: &MockServer, auth: Option<AuthConfig>) -> ClientSettings {
    ClientSettings {
        url: format!("{}/engine-rest/", server.uri()),
        auth,
        worker_id: "w1".to_owned(),
        request_timeout: Duration::from_secs(5),
    }
}

fn client(server: &MockServer) -> CamundaClient {
    CamundaClient::new(settings(server, None)).expect("valid settings")
}

fn topic(name: &str, lock_ms: u64, variables: Option<Vec<String>>) -> FetchTopic {
    FetchTopic {
        topic_name: name.to_owned(),
        lock_duration: lock_ms,
        variables,
        include_extension_properties: true,
        deserialize_values: false,
    }
}

fn fetch(async_ms: Option<u64>) -> FetchAndLock {
    FetchAndLock {
        worker_id: "w1".to_owned(),
        max_tasks: 5,
        use_priority: true,
        async_response_timeout: async_ms,
        topics: vec![topic("invoice", 30_000, None)],
    }
}

#[tokio::test]
async fn fetch_and_lock_sends_the_documented_body_and_parses_tasks() {
    let server = MockServer::start().await;
    let mut req = fetch(Some(20_000));
    req.topics
        .push(topic("mail", 1_000, Some(vec!["to".to_owned()])));
    let expected = json!({
        "workerId": "w1", "maxTasks": 5, "usePriority": true, "asyncResponseTimeout": 20000,
        "topics": [
            {"topicName": "invoice", "lockDuration": 30000,
             "includeExtensionProperties": true, "deserializeValues": false},
            {"topicName": "mail", "lockDuration": 1000, "variables": ["to"],
             "includeExtensionProperties": true, "deserializeValues": false},
        ],
    });
    let answer = json!([{
        "id": "t1", "topicName": "invoice", "workerId": "w1",
        "lockExpirationTime": "2025-01-23T14:42:45.000+0200", "retries": null,
        "processInstanceId": "pi1", "executionId": "ex1", "priority": -7,
        "businessKey": "order-9", "suspended": false,
        "variables": {
            "amount": {"type": "Long", "value": 9000000000_i64, "valueInfo": {}},
            "doc": {"type": "Json", "value": "{\"a\":1}", "valueInfo": {}},
        },
        "extensionProperties": {"endpoint": "billing"},
        "someFutureField": 1,
    }]);
    Mock::given(method("POST"))
        .and(path("/engine-rest/external-task/fetchAndLock"))
        .and(body_json(&expected))
        .respond_with(ResponseTemplate::new(200).set_body_json(&answer))
        .expect(1)
        .mount(&server)
        .await;

    let tasks = client(&server).fetch_and_lock(&req).await.expect("tasks");
    assert_eq!(tasks.len(), 1);
    let task = &tasks[0];
    assert_eq!(
        (task.id.as_str(), task.retries, task.priority),
        ("t1", None, -7)
    );
    assert_eq!(task.business_key.as_deref(), Some("order-9"));
    assert_eq!(task.extension_properties["endpoint"], "billing");
    assert_eq!(task.variables["amount"].value, json!(9_000_000_000_i64));
    assert_eq!(task.variables["doc"].type_name.as_deref(), Some("Json"));
}

#[tokio::test]
async fn long_poll_outlives_the_request_timeout_but_other_calls_do_not() {
    let server = MockServer::start().await;
    let slow = Duration::from_millis(1_500);
    Mock::given(path("/engine-rest/external-task/fetchAndLock"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([]))
                .set_delay(slow),
        )
        .mount(&server)
        .await;
    Mock::given(path("/engine-rest/version"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"version": "7.23.0"}))
                .set_delay(slow),
        )
        .mount(&server)
        .await;
    let mut s = settings(&server, None);
    s.request_timeout = Duration::from_millis(500);
    let client = CamundaClient::new(s).expect("client");

    let req = fetch(Some(1_000));
    let (polled, version) = tokio::join!(client.fetch_and_lock(&req), client.version());
    assert!(
        polled
            .expect("poll waits for the engine's answer")
            .is_empty()
    );
    let err = version.expect_err("ordinary calls time out");
    assert!(matches!(err, CamundaError::Transport { .. }), "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn dropping_a_pending_poll_leaves_the_client_usable() {
    let server = MockServer::start().await;
    Mock::given(path("/engine-rest/external-task/fetchAndLock"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([]))
                .set_delay(Duration::from_secs(30)),
        )
        .mount(&server)
        .await;
    Mock::given(path("/engine-rest/version"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"version": "7.23.0"})))
        .mount(&server)
        .await;
    let client = client(&server);
    let req = fetch(Some(20_000));
    let poll = tokio::time::timeout(Duration::from_millis(100), client.fetch_and_lock(&req)).await;
    assert!(poll.is_err(), "poll was still pending and got dropped");
    assert_eq!(client.version().await.expect("still works"), "7.23.0");
}

/// Parses a multipart body into part name → (filename, content).
fn parts(req: &Request) -> BTreeMap<String, (Option<String>, String)> {
    let ctype = req.headers["content-type"].to_str().expect("ascii");
    let boundary = ctype.split("boundary=").nth(1).expect("boundary");
    let body = String::from_utf8(req.body.clone()).expect("utf-8 body");
    let mut out = BTreeMap::new();
    for chunk in body.split(&format!("--{boundary}")) {
        let Some((head, content)) = chunk.split_once("\r\n\r\n") else {
            continue;
        };
        let attr = |key: &str| {
            head.split(&format!("{key}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .map(str::to_owned)
        };
        let name = attr("; name").expect("every part has a name");
        let previous = out.insert(
            name,
            (
                attr("filename"),
                content.trim_end_matches("\r\n").to_owned(),
            ),
        );
        assert!(previous.is_none(), "part names must be distinct");
    }
    out
}

fn deployment(changed_only: bool) -> DeploymentRequest {
    DeploymentRequest {
        name: "procos".to_owned(),
        source: "procos-deployer".to_owned(),
        tenant_id: Some("acme".to_owned()),
        changed_only,
        resources: vec![
            Resource {
                name: "order.bpmn".to_owned(),
                content: b"<bpmn/>".to_vec(),
            },
            Resource {
                name: "sub dir/rules.dmn".to_owned(),
                content: b"<dmn/>".to_vec(),
            },
        ],
    }
}

#[tokio::test]
async fn deploy_sends_one_named_part_per_file_and_the_changed_only_fields() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/engine-rest/deployment/create"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "d1", "name": "procos", "source": "procos-deployer",
            "deployedProcessDefinitions": {"order:1:x": {"id": "order:1:x", "key": "order", "version": 1}},
        })))
        .expect(1)
        .mount(&server)
        .await;
    let deployed = client(&server)
        .deploy(&deployment(true))
        .await
        .expect("deployed");
    assert_eq!(deployed.id, "d1");
    assert!(
        deployed
            .deployed_process_definitions
            .expect("defs")
            .contains_key("order:1:x")
    );

    let requests = server.received_requests().await.expect("recording on");
    let got = parts(&requests[0]);
    let text = |name: &str| got.get(name).map(|(f, c)| (f.clone(), c.as_str()));
    assert_eq!(text("deployment-name"), Some((None, "procos")));
    assert_eq!(text("deployment-source"), Some((None, "procos-deployer")));
    assert_eq!(text("deploy-changed-only"), Some((None, "true")));
    assert_eq!(text("enable-duplicate-filtering"), Some((None, "true")));
    assert_eq!(text("tenant-id"), Some((None, "acme")));
    assert_eq!(
        text("order.bpmn"),
        Some((Some("order.bpmn".to_owned()), "<bpmn/>"))
    );
    assert_eq!(
        text("sub dir/rules.dmn"),
        Some((Some("sub dir/rules.dmn".to_owned()), "<dmn/>"))
    );
    assert_eq!(got.len(), 7);
}

#[tokio::test]
async fn deploy_without_changed_only_omits_the_filter_fields_and_rejects_duplicate_names() {
    let server = MockServer::start().await;
    Mock::given(path("/engine-rest/deployment/create"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "d2"})))
        .mount(&server)
        .await;
    let client = client(&server);
    client.deploy(&deployment(false)).await.expect("deployed");
    let requests = server.received_requests().await.expect("recording on");
    let got = parts(&requests[0]);
    assert!(!got.contains_key("deploy-changed-only"));
    assert!(!got.contains_key("enable-duplicate-filtering"));

    let mut dup = deployment(true);
    dup.resources.push(dup.resources[0].clone());
    let err = client
        .deploy(&dup)
        .await
        .expect_err("duplicate resource names");
    assert!(err.to_string().contains("order.bpmn"), "{err}");
    assert_eq!(
        server.received_requests().await.expect("recording").len(),
        1,
        "nothing sent"
    );
}

#[tokio::test]
async fn deploy_parse_errors_carry_the_details() {
    let server = MockServer::start().await;
    let details = json!({"order.bpmn": {"errors": [{"message": "ENGINE-12018 historyTimeToLive",
        "line": 3, "column": 7, "mainBpmnElementId": "order", "bpmnElementIds": ["order"]}],
        "warnings": []}});
    Mock::given(path("/engine-rest/deployment/create"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "type": "ParseException", "message": "ENGINE-09005 Could not parse BPMN process.",
            "code": 0, "details": details,
        })))
        .mount(&server)
        .await;
    let err = client(&server)
        .deploy(&deployment(true))
        .await
        .expect_err("400");
    match &err {
        CamundaError::Engine {
            status,
            kind,
            message,
            details: got,
            path,
            ..
        } => {
            assert_eq!(
                (*status, kind.as_str(), path.as_str()),
                (400, "ParseException", "/deployment/create")
            );
            assert!(message.starts_with("ENGINE-09005"));
            assert_eq!(got.as_deref(), Some(&details));
        }
        other => panic!("expected an engine error, got {other}"),
    }
    assert!(!err.is_retryable());
}

/// Mounts a 204 for `POST /engine-rest/external-task/{id}/{action}` with exactly `body`.
async fn expect_task_call(server: &MockServer, task_path: &str, body: Option<serde_json::Value>) {
    let mut mock =
        Mock::given(method("POST")).and(path(format!("/engine-rest/external-task/{task_path}")));
    if let Some(body) = body {
        mock = mock.and(body_json(body));
    }
    mock.respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn per_task_calls_send_the_documented_bodies() {
    let server = MockServer::start().await;
    expect_task_call(
        &server,
        "t1/complete",
        Some(json!({
            "workerId": "w1",
            "variables": {"total": {"value": 12, "type": "Integer"}},
            "localVariables": {"note": {"value": "ok", "type": "String"}},
        })),
    )
    .await;
    expect_task_call(
        &server,
        "t2/failure",
        Some(json!({
            "workerId": "w1", "errorMessage": "HTTP 503", "errorDetails": "stack",
            "retries": 2, "retryTimeout": 5000,
        })),
    )
    .await;
    expect_task_call(
        &server,
        "t3/bpmnError",
        Some(json!({
            "workerId": "w1", "errorCode": "REJECTED", "errorMessage": "no stock",
            "variables": {"reason": {"value": "{\"a\":1}", "type": "Json"}},
        })),
    )
    .await;
    expect_task_call(
        &server,
        "t4/extendLock",
        Some(json!({"workerId": "w1", "newDuration": 60000})),
    )
    .await;
    expect_task_call(
        &server,
        "t5/lock",
        Some(json!({"workerId": "w1", "lockDuration": 1500})),
    )
    .await;
    expect_task_call(&server, "a%20b%2Fc/unlock", None).await;

    let c = client(&server);
    let vars = encode_json_map(json!({"total": 12}).as_object().expect("object"));
    let local = encode_json_map(json!({"note": "ok"}).as_object().expect("object"));
    c.complete("t1", vars, local).await.expect("complete");
    c.failure("t2", "HTTP 503", "stack", 2, Duration::from_secs(5))
        .await
        .expect("failure");
    let reason = encode_json_map(json!({"reason": {"a": 1}}).as_object().expect("object"));
    c.bpmn_error("t3", "REJECTED", "no stock", reason)
        .await
        .expect("bpmnError");
    c.extend_lock("t4", Duration::from_secs(60))
        .await
        .expect("extendLock");
    c.lock("t5", Duration::from_millis(1_500))
        .await
        .expect("lock");
    c.unlock("a b/c")
        .await
        .expect("unlock with an id that needs escaping");
    // MockServer verifies every `.expect(1)` when dropped.
}

#[tokio::test]
async fn engine_errors_are_typed() {
    let server = MockServer::start().await;
    let respond = |p: &str, t: ResponseTemplate| {
        Mock::given(path(format!("/engine-rest/external-task/{p}"))).respond_with(t)
    };
    respond("gone/extendLock", ResponseTemplate::new(404).set_body_json(json!({
        "type": "RestException", "message": "External task with id gone does not exist", "code": null})))
        .mount(&server).await;
    respond("other/complete", ResponseTemplate::new(400).set_body_json(json!({
        "type": "BadUserRequestException",
        "message": "External Task other cannot be completed by worker 'w1'. It is locked by worker 'w2'.",
        "code": 42})))
        .mount(&server).await;
    respond(
        "busy/failure",
        ResponseTemplate::new(500).set_body_json(json!({
        "type": "ProcessEngineException", "message": "too many requests"})),
    )
    .mount(&server)
    .await;
    respond(
        "proxy/complete",
        ResponseTemplate::new(502).set_body_string("<html>".repeat(1_000)),
    )
    .mount(&server)
    .await;
    let c = client(&server);

    let gone = c
        .extend_lock("gone", Duration::from_secs(1))
        .await
        .expect_err("404");
    assert!(gone.is_not_found() && !gone.is_retryable());
    assert!(
        gone.to_string().contains("/external-task/gone/extendLock"),
        "{gone}"
    );

    let other = c
        .complete("other", VariableMap::new(), VariableMap::new())
        .await
        .expect_err("400");
    match &other {
        CamundaError::Engine {
            status: 400,
            kind,
            message,
            code,
            ..
        } => {
            assert_eq!(kind, "BadUserRequestException");
            assert!(message.contains("locked by worker 'w2'"));
            assert_eq!(*code, Some(42));
        }
        e => panic!("expected a 400 engine error, got {e}"),
    }
    assert!(!other.is_retryable());

    let busy = c
        .failure("busy", "m", "d", 1, Duration::ZERO)
        .await
        .expect_err("500");
    assert!(busy.is_retryable());

    let proxy = c
        .complete("proxy", VariableMap::new(), VariableMap::new())
        .await
        .expect_err("502");
    match &proxy {
        CamundaError::Engine { kind, message, .. } => {
            assert!(kind.is_empty());
            assert!(
                message.starts_with("<html>") && message.len() <= MAX_ERROR_BODY + 3,
                "{}",
                message.len()
            );
        }
        e => panic!("expected an engine error, got {e}"),
    }
}

#[tokio::test]
async fn bad_json_in_a_success_is_a_decode_error() {
    let server = MockServer::start().await;
    Mock::given(path("/engine-rest/version"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>login</html>"))
        .mount(&server)
        .await;
    let err = client(&server).version().await.expect_err("not JSON");
    assert!(matches!(err, CamundaError::Decode { .. }), "{err}");
    assert!(err.to_string().contains("<html>login"), "{err}");
}

#[tokio::test]
async fn auth_headers_are_sent_and_never_printed() {
    let server = MockServer::start().await;
    Mock::given(path("/engine-rest/version"))
        .and(header("authorization", "Basic ZGVtbzpzM2NyM3Q=")) // demo:s3cr3t
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"version": "basic"})))
        .mount(&server)
        .await;
    Mock::given(path("/engine-rest/version"))
        .and(header("authorization", "Bearer tok-XYZ"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"version": "bearer"})))
        .mount(&server)
        .await;
    let basic = CamundaClient::new(settings(
        &server,
        Some(AuthConfig::Basic {
            username: "demo".to_owned(),
            password: Secret::new("s3cr3t"),
        }),
    ))
    .expect("client");
    let bearer = CamundaClient::new(settings(
        &server,
        Some(AuthConfig::Bearer {
            token: Secret::new("tok-XYZ"),
        }),
    ))
    .expect("client");
    assert_eq!(basic.version().await.expect("basic accepted"), "basic");
    assert_eq!(bearer.version().await.expect("bearer accepted"), "bearer");

    let printed = format!("{basic:?} {bearer:?} {:?}", basic.settings);
    assert!(
        !printed.contains("s3cr3t") && !printed.contains("tok-XYZ"),
        "{printed}"
    );
    assert!(!printed.contains("ZGVtbzpzM2NyM3Q"), "{printed}");

    let mut in_url = settings(&server, None);
    in_url.url = "http://demo:s3cr3t@localhost:8080/engine-rest".to_owned();
    assert!(!format!("{in_url:?}").contains("s3cr3t"));
    let err = CamundaClient::new(in_url).expect_err("credentials belong in camunda.auth");
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
}

#[tokio::test]
async fn files_and_process_starts_use_the_documented_paths() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(
            "/engine-rest/process-instance/pi1/variables/scan%20v2/data",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b"%PDF-global".to_vec()))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(
            "/engine-rest/execution/ex1/localVariables/scan%20v2/data",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b"%PDF-local".to_vec()))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/engine-rest/process-definition/key/order%2Fv2/start"))
        .and(body_json(
            json!({"businessKey": "bk-1", "variables": {"n": {"value": 1, "type": "Integer"}}}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "pi9", "definitionId": "order:2:x", "businessKey": "bk-1", "ended": false,
            "suspended": false, "links": []})))
        .mount(&server)
        .await;
    let c = client(&server);
    let global = c
        .download_file("pi1", "scan v2", None)
        .await
        .expect("global file");
    assert_eq!(&global[..], b"%PDF-global");
    let local = c
        .download_file("pi1", "scan v2", Some("ex1"))
        .await
        .expect("local file");
    assert_eq!(&local[..], b"%PDF-local");

    let mut vars = VariableMap::new();
    vars.insert(
        "n".to_owned(),
        TypedValue {
            value: json!(1),
            type_name: Some("Integer".to_owned()),
            ..Default::default()
        },
    );
    let pi = c
        .start_process("order/v2", Some("bk-1"), vars)
        .await
        .expect("started");
    assert_eq!(
        (pi.id.as_str(), pi.business_key.as_deref()),
        ("pi9", Some("bk-1"))
    );
}

#[test]
fn settings_are_validated_without_network() {
    let base = ClientSettings {
        url: "http://localhost:8080/engine-rest/".to_owned(),
        auth: None,
        worker_id: "w1".to_owned(),
        request_timeout: Duration::from_secs(5),
    };
    let ok = CamundaClient::new(base.clone()).expect("valid");
    assert_eq!(ok.base_url(), "http://localhost:8080/engine-rest");
    assert_eq!(ok.worker_id(), "w1");
    for bad in ["localhost:8080", "ftp://x/engine-rest", "not a url"] {
        let mut s = base.clone();
        s.url = bad.to_owned();
        assert!(
            matches!(CamundaClient::new(s), Err(CamundaError::Config(_))),
            "{bad} rejected"
        );
    }
    let mut s = base;
    s.auth = Some(AuthConfig::Bearer {
        token: Secret::new("line\nbreak"),
    });
    let err = CamundaClient::new(s).expect_err("header-unsafe token");
    assert!(!err.to_string().contains("break"), "{err}");
}

#[test]
fn truncation_cuts_at_a_character_boundary() {
    let long = "é".repeat(2_000); // 4000 bytes, 2 bytes per char
    let cut = truncate(&long, 2_047);
    assert!(cut.ends_with('…'));
    assert_eq!(cut.len(), 2_046 + '…'.len_utf8());
    assert_eq!(truncate("short", 2_048), "short");
}

/// An engine whose `complete` takes 20 ms and counts how many requests it holds at once.
async fn slow_counting_engine() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    #[derive(Clone, Default)]
    struct Load {
        now: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
    }
    async fn complete(axum::extract::State(load): axum::extract::State<Load>) -> StatusCode {
        let now = load.now.fetch_add(1, Ordering::SeqCst) + 1;
        load.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        load.now.fetch_sub(1, Ordering::SeqCst);
        StatusCode::NO_CONTENT
    }
    let load = Load::default();
    let most = load.most.clone();
    let app = axum::Router::new()
        .route(
            "/engine-rest/external-task/{id}/complete",
            axum::routing::post(complete),
        )
        .with_state(load);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/engine-rest", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, most)
}

#[tokio::test]
async fn a_burst_of_completions_holds_at_most_max_connections_calls_at_once() {
    use std::sync::atomic::Ordering;
    for (max, expected_at_most) in [(4, 4), (DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS)] {
        let (url, most) = slow_counting_engine().await;
        let client = CamundaClient::new(ClientSettings {
            url,
            auth: None,
            worker_id: "w1".to_owned(),
            request_timeout: Duration::from_secs(5),
        })
        .unwrap()
        .with_max_connections(max);
        // 100 tasks finishing together, as a fetch of 100 no-op tasks does.
        let calls = (0..100).map(|i| {
            let client = client.clone();
            async move {
                client
                    .complete(&format!("t{i}"), VariableMap::new(), VariableMap::new())
                    .await
            }
        });
        let results = futures::future::join_all(calls).await;
        assert!(
            results.iter().all(Result::is_ok),
            "every completion is sent"
        );
        let most = most.load(Ordering::SeqCst);
        assert!(
            most <= expected_at_most && most >= expected_at_most.min(4) / 2,
            "with max_connections {max} the engine held {most} calls at once"
        );
    }
}
