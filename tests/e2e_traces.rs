//! Traces end to end: the real binary exports its spans over OTLP/HTTP to a local receiver this
//! test starts (axum + the OpenTelemetry project's protobuf types, i.e. the documented wire
//! format of `POST /v1/traces`), and an http endpoint (wiremock) records the `traceparent` it
//! was sent. Also: with no collector configured, nothing is exported and no header is sent.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message;
use serde_json::{Value, json};
use support::{Procos, Rest, Workdir, config, engine, one_task_bpmn};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const T: Duration = Duration::from_secs(30);

/// What the receiver got: each span with its resource's `service.name`.
type Received = Arc<Mutex<Vec<(String, Span)>>>;

/// A minimal OTLP/HTTP collector on a free port: decodes every export request as the protobuf
/// `ExportTraceServiceRequest` (refusing anything else with 400, as a collector does).
async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            post(|State(received): State<Received>, body: Bytes| async move {
                let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                    return (axum::http::StatusCode::BAD_REQUEST, Vec::new());
                };
                let mut received = received.lock().expect("received");
                for resource_spans in request.resource_spans {
                    let service = resource_spans
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|kv| kv.key == "service.name")
                        .and_then(|kv| text(kv.value.as_ref()?.value.as_ref()?))
                        .unwrap_or_default();
                    for scope in resource_spans.scope_spans {
                        for span in scope.spans {
                            received.push((service.clone(), span));
                        }
                    }
                }
                (
                    axum::http::StatusCode::OK,
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

fn text(value: &Any) -> Option<String> {
    match value {
        Any::StringValue(s) => Some(s.clone()),
        Any::IntValue(i) => Some(i.to_string()),
        _ => None,
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| text(kv.value.as_ref()?.value.as_ref()?))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_error(span: &Span) -> bool {
    span.status
        .as_ref()
        .is_some_and(|s| s.code == StatusCode::Error as i32)
}

/// A wiremock http service: `/work` answers, `/broken` refuses every request with 400.
async fn service() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/work"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/broken"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "no"})))
        .mount(&server)
        .await;
    server
}

/// The `traceparent` the `bad` endpoint's config sets itself (a caller's own trace).
const USER_TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// Two one-task processes: `work` (its endpoint answers) and `broken` (its endpoint refuses;
/// its config sets its own `traceparent`).
fn setup(server: &MockServer, telemetry: &str) -> Workdir {
    let cfg = config(
        "",
        &["api", "bad"],
        "  work: { pool: gp, endpoints: [api] }\n  broken: { pool: gp, endpoints: [bad], retries: 0 }",
        &format!(
            "  api: {{ type: http, method: POST, url: '{0}/work', timeout: 5s }}\n  \
             bad: {{ type: http, method: POST, url: '{0}/broken', timeout: 5s, \
             headers: {{ traceparent: '{USER_TRACEPARENT}' }} }}",
            server.uri()
        ),
    ) + telemetry;
    Workdir::new(
        &cfg,
        &[
            ("work.bpmn", &one_task_bpmn("work", "work", "NEVER")),
            ("broken.bpmn", &one_task_bpmn("broken", "broken", "NEVER")),
        ],
    )
}

/// The JSON log lines of the task with this process instance's task (`span.task_id`).
fn task_lines(procos: &Procos, task_id: &str) -> Vec<Value> {
    procos
        .log_json()
        .into_iter()
        .filter(|l| l["span"]["task_id"] == task_id)
        .collect()
}

#[tokio::test]
async fn a_task_is_one_trace_with_block_and_endpoint_spans_and_the_endpoint_gets_its_traceparent() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let (collector, received) = receiver().await;
    let server = service().await;
    let work = setup(
        &server,
        &format!(
            "telemetry:\n  service_name: procos-e2e\n  otlp:\n    endpoint: {collector}\n    \
             headers: {{ x-collector-key: k-123 }}\n"
        ),
    );
    let mut procos = Procos::spawn(
        work.path(),
        &["--config", "pde.yaml"],
        &[("CAMUNDA_URL", &engine.url)],
    );
    rest.wait_deployed("work", T).await;
    rest.wait_deployed("broken", T).await;
    let pi = rest.start("work", json!({"n": 1})).await;
    rest.wait_ended(&pi, T).await;
    let broken = rest.start("broken", json!({"n": 2})).await;
    support::eventually(T, || async { !rest.incidents(&broken).await.is_empty() }).await;
    procos.wait_log("\"outcome\":\"incident\"", T).await;
    // Shutdown flushes what is still batched.
    procos.sigterm();
    assert_eq!(procos.exit_code(T).await, 0);

    let spans: Vec<Span> = {
        let received = received.lock().expect("received");
        assert!(
            received.iter().all(|(service, _)| service == "procos-e2e"),
            "service.name"
        );
        received.iter().map(|(_, s)| s.clone()).collect()
    };
    let task = spans
        .iter()
        .find(|s| attr(s, "procos.process_instance.id").as_deref() == Some(pi.as_str()))
        .unwrap_or_else(|| panic!("no task span for {pi} in {spans:#?}"));
    assert_eq!(task.name, "task work");
    assert!(task.parent_span_id.is_empty(), "the task span is a root");
    assert_eq!(attr(task, "procos.task.topic").as_deref(), Some("work"));
    assert_eq!(
        attr(task, "procos.task.outcome").as_deref(),
        Some("completed")
    );
    assert!(!is_error(task));
    let task_id = attr(task, "procos.task.id").expect("task id attribute");
    let trace_id = hex(&task.trace_id);

    let children: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent_span_id == task.span_id)
        .collect();
    let mut names: Vec<&str> = children.iter().map(|s| s.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["completion", "gateway", "test", "validation"]);
    assert!(children.iter().all(|s| s.trace_id == task.trace_id));
    let validation = children
        .iter()
        .find(|s| s.name == "validation")
        .expect("validation span");
    let calls: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent_span_id == validation.span_id)
        .collect();
    assert_eq!(calls.len(), 1, "one endpoint attempt: {calls:#?}");
    let call = calls[0];
    assert_eq!(call.name, "endpoint api");
    assert_eq!(call.trace_id, task.trace_id);
    for (key, value) in [
        ("procos.endpoint.name", "api"),
        ("procos.endpoint.kind", "http"),
        ("procos.endpoint.attempt", "1"),
        ("procos.endpoint.result", "ok"),
    ] {
        assert_eq!(attr(call, key).as_deref(), Some(value), "{key}");
    }
    // No variable values on any span.
    assert!(
        spans
            .iter()
            .flat_map(|s| &s.attributes)
            .all(|kv| !kv.key.contains("variable") && kv.key != "n"),
        "a variable on a span"
    );

    // The endpoint received the endpoint-call span as parent, in the same trace, once.
    let requests = server.received_requests().await.unwrap_or_default();
    let work_request = requests
        .iter()
        .find(|r| r.url.path() == "/work")
        .expect("the endpoint was called");
    let parents: Vec<_> = work_request.headers.get_all("traceparent").iter().collect();
    assert_eq!(parents.len(), 1, "one traceparent header");
    assert_eq!(
        parents[0].to_str().expect("ascii"),
        format!("00-{trace_id}-{}-01", hex(&call.span_id))
    );

    // Every log line of the task names the trace.
    let lines = task_lines(&procos, &task_id);
    assert!(
        lines.iter().any(|l| l["message"] == "Task finished."),
        "{lines:#?}"
    );
    for line in &lines {
        assert_eq!(line["span"]["trace_id"], trace_id.as_str(), "{line}");
    }

    // The failed task: error status on the task and on the refused attempt.
    let failed = spans
        .iter()
        .find(|s| attr(s, "procos.process_instance.id").as_deref() == Some(broken.as_str()))
        .expect("the broken task's span");
    assert_eq!(
        attr(failed, "procos.task.outcome").as_deref(),
        Some("incident")
    );
    assert!(
        is_error(failed),
        "the failed task's span has an error status"
    );
    let refused = spans
        .iter()
        .find(|s| s.name == "endpoint bad" && s.trace_id == failed.trace_id)
        .expect("the refused attempt's span");
    assert_eq!(
        attr(refused, "procos.endpoint.result").as_deref(),
        Some("permanent")
    );
    assert!(is_error(refused));
    // A traceparent the endpoint's config sets is sent as configured, once.
    let broken_request = requests
        .iter()
        .find(|r| r.url.path() == "/broken")
        .expect("the bad endpoint was called");
    let sent: Vec<_> = broken_request
        .headers
        .get_all("traceparent")
        .iter()
        .collect();
    assert_eq!(sent.len(), 1, "one traceparent header");
    assert_eq!(sent[0].to_str().expect("ascii"), USER_TRACEPARENT);
    // The collector's header is a secret: never in a log line.
    assert!(procos.log_lines().iter().all(|l| !l.contains("k-123")));
}

#[tokio::test]
async fn the_environment_alone_switches_traces_on() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let (collector, received) = receiver().await;
    let server = service().await;
    let work = setup(&server, "");
    let mut procos = Procos::spawn(
        work.path(),
        &["--config", "pde.yaml"],
        &[
            ("CAMUNDA_URL", &engine.url),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector),
            ("OTEL_SERVICE_NAME", "from-env"),
        ],
    );
    rest.wait_deployed("work", T).await;
    let pi = rest.start("work", json!({})).await;
    rest.wait_ended(&pi, T).await;
    procos.wait_log("Task finished.", T).await;
    procos.sigterm();
    assert_eq!(procos.exit_code(T).await, 0);
    let received = received.lock().expect("received");
    let task = received
        .iter()
        .find(|(_, s)| attr(s, "procos.process_instance.id").as_deref() == Some(pi.as_str()))
        .expect("the task's span arrived");
    assert_eq!(task.0, "from-env");
}

#[tokio::test]
async fn without_a_collector_nothing_is_exported_and_no_traceparent_is_sent() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let server = service().await;
    let work = setup(&server, "");
    // An empty endpoint variable is unset (and an exporter would fall back to localhost:4318).
    let mut procos = Procos::spawn(
        work.path(),
        &["--config", "pde.yaml"],
        &[
            ("CAMUNDA_URL", &engine.url),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""),
        ],
    );
    rest.wait_deployed("work", T).await;
    let pi = rest.start("work", json!({})).await;
    rest.wait_ended(&pi, T).await;
    procos.wait_log("Task finished.", T).await;
    procos.sigterm();
    assert_eq!(procos.exit_code(T).await, 0);

    let requests = server.received_requests().await.unwrap_or_default();
    assert_eq!(requests.len(), 1, "the endpoint was called once");
    assert!(requests[0].headers.get("traceparent").is_none());
    assert!(requests[0].headers.get("tracestate").is_none());
    let lines = procos.log_json();
    assert!(lines.iter().any(|l| l["message"] == "Task finished."));
    assert!(
        lines.iter().all(|l| l["span"].get("trace_id").is_none()),
        "no trace id without traces"
    );
    assert!(!procos.log_lines().iter().any(|l| l.contains("OTLP")));
}
