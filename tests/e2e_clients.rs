//! The external-task clients people run against Camunda 7 today, each with its DEFAULT settings
//! (only base URL, worker id and topics set), against `procos engine` running as its own
//! process: the official `camunda-external-task-client-js` (npm) and the community
//! `camunda-external-task-client-python3` and `operaton-external-task-client-python3` (PyPI).
//!
//! Each test deploys tests/clients/bpmn/, starts one instance, runs one client program from
//! tests/clients/ (installed into target/test-clients by `.ci/run`, else by
//! tests/support/clients.rs) and checks the outcome through the engine's REST API: variables
//! with their types, incidents, external tasks, the instance's path. What the client prints is
//! only used to find its task and for failure messages.
//!
//! One test per client × feature: completing with typed variables, reading typed variables from
//! a fetched task, failure with retries until an incident, a BPMN error caught by a boundary
//! event, a File variable download, and (JS only: the Python clients have no extendLock)
//! extending a lock.

mod support;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};
use support::clients::{ClientKind, ClientRun, EngineProcess, deploy_models, engine_process};
use support::{Rest, eventually};

/// How long a client gets for one outcome. Every step answers in well under a second; the
/// margin is for a loaded machine.
const WITHIN: Duration = Duration::from_secs(20);

/// The engine up as its own process with the client models deployed, and `kind` running.
async fn stage(kind: ClientKind) -> (EngineProcess, ClientRun) {
    let engine = engine_process().await;
    deploy_models(&engine.rest).await;
    let client = ClientRun::start(kind, &engine.url).await;
    (engine, client)
}

/// Parses a date as the engine writes it (`2025-01-23T14:42:45.000+0000`).
fn date(s: &str) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.3f%z")
        .unwrap_or_else(|e| panic!("{s:?} is not a Camunda date: {e}"))
}

/// The external tasks of instance `pi`.
async fn tasks_of(rest: &Rest, pi: &str) -> Vec<Value> {
    rest.get(&format!("/external-task?processInstanceId={pi}"))
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until instance `pi` has an external task at `activity`, and returns it.
async fn wait_task_at(rest: &Rest, client: &ClientRun, pi: &str, activity: &str) -> Value {
    let find = || async {
        tasks_of(rest, pi)
            .await
            .into_iter()
            .find(|t| t["activityId"] == json!(activity))
    };
    let reached = eventually(WITHIN, || async {
        client.stuck().is_some() || find().await.is_some()
    })
    .await
        && find().await.is_some();
    assert!(
        reached,
        "instance {pi} did not reach {activity:?} (within {WITHIN:?}, or the client is stuck: see below); its tasks: {:?}\n{}",
        tasks_of(rest, pi).await,
        client.report()
    );
    find().await.expect("found above")
}

/// Waits until instance `pi` completed and returns its historic variables by name (the raw
/// `/history/variable-instance` entries: type, value, valueInfo).
async fn wait_completed(rest: &Rest, client: &ClientRun, pi: &str) -> Map<String, Value> {
    let completed = || async { rest.state(pi).await == "COMPLETED" };
    let done = eventually(WITHIN, || async {
        client.stuck().is_some() || completed().await
    })
    .await
        && completed().await;
    assert!(
        done,
        "instance {pi} did not complete (within {WITHIN:?}, or the client is stuck: see below; state {:?}, tasks {:?}, incidents {:?})\n{}",
        rest.state(pi).await,
        tasks_of(rest, pi).await,
        rest.incidents(pi).await,
        client.report()
    );
    rest.get(&format!(
        "/history/variable-instance?processInstanceId={pi}"
    ))
    .await
    .as_array()
    .expect("an array")
    .iter()
    .map(|v| (v["name"].as_str().unwrap_or("").to_owned(), v.clone()))
    .collect()
}

/// Asserts that variable `name` has `ty` and the value `value`.
fn assert_var(vars: &Map<String, Value>, name: &str, ty: &str, value: Value) {
    let var = vars
        .get(name)
        .unwrap_or_else(|| panic!("no variable {name:?} in {vars:?}"));
    assert_eq!(var["type"], json!(ty), "type of {name:?}: {var}");
    assert_eq!(var["value"], value, "value of {name:?}: {var}");
}

// ── typed variables ─────────────────────────────────────────────────────────────────────────

/// The client completes `typed` with String, Integer, Long, Double, Boolean, Json, Date and File
/// variables; the engine holds them with those types and values, and serves the file's bytes.
async fn completes_with_typed_variables(kind: ClientKind) {
    let (engine, client) = stage(kind).await;
    let rest = &engine.rest;
    let pi = rest.start_typed("client_typed", json!({})).await;
    // The instance moves on to "hold" only once the engine accepted the client's complete.
    wait_task_at(rest, &client, &pi, "hold").await;

    let vars: Map<String, Value> = rest
        .get(&format!(
            "/process-instance/{pi}/variables?deserializeValues=false"
        ))
        .await
        .as_object()
        .cloned()
        .expect("an object");
    assert_var(&vars, "str", "String", json!("procos ✓"));
    assert_var(&vars, "int", "Integer", json!(42));
    assert_var(&vars, "long", "Long", json!(1_099_511_627_776_i64));
    assert_var(&vars, "dbl", "Double", json!(3.25));
    assert_var(&vars, "bool", "Boolean", json!(true));

    let json_var = &vars["json"];
    assert_eq!(json_var["type"], json!("Json"), "{json_var}");
    let parsed: Value = serde_json::from_str(json_var["value"].as_str().expect("a string"))
        .unwrap_or_else(|e| panic!("Json value is serialized JSON ({e}): {json_var}"));
    assert_eq!(parsed, json!({"a": 1, "list": [1, "two", null]}));

    let date_var = &vars["date"];
    assert_eq!(date_var["type"], json!("Date"), "{date_var}");
    assert_eq!(
        date(date_var["value"].as_str().expect("a string")),
        date("2025-01-23T14:42:45.000+0000"),
        "{date_var}"
    );

    let file_var = &vars["file"];
    assert_eq!(file_var["type"], json!("File"), "{file_var}");
    assert_eq!(
        file_var["value"],
        Value::Null,
        "a File's value is absent: {file_var}"
    );
    assert_eq!(
        file_var["valueInfo"]["filename"],
        json!("report.txt"),
        "{file_var}"
    );
    let expected = match kind {
        ClientKind::Js => "a file from the JS client\n",
        ClientKind::CamundaPython => "a file from the camunda Python client\n",
        ClientKind::OperatonPython => "a file from the operaton Python client\n",
    };
    let data = rest
        .text(&format!("/process-instance/{pi}/variables/file/data"))
        .await;
    assert_eq!(data, expected, "the File's bytes");

    // Camunda keeps a File's media type under valueInfo `mimeType` (FileValueType's
    // VALUE_INFO_FILE_MIME_TYPE) and serves the data with it, plus `; charset=<encoding>`
    // (VariableResponseProvider): the Python clients send `mimeType` and `encoding`. The JS
    // client sends `mimetype` (lower case) and no encoding; Camunda does not read it and serves
    // application/octet-stream, and so does procos engine.
    let content_type = match kind {
        ClientKind::Js => "application/octet-stream",
        ClientKind::CamundaPython | ClientKind::OperatonPython => "text/plain; charset=UTF-8",
    };
    let r = rest
        .http
        .get(format!(
            "{}/process-instance/{pi}/variables/file/data",
            rest.url
        ))
        .send()
        .await
        .expect("GET the file");
    assert_eq!(
        r.headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some(content_type),
        "the File's Content-Type, as Camunda serves it for valueInfo {}",
        file_var["valueInfo"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_client_completes_with_typed_variables() {
    completes_with_typed_variables(ClientKind::Js).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camunda_python_client_completes_with_typed_variables() {
    completes_with_typed_variables(ClientKind::CamundaPython).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operaton_python_client_completes_with_typed_variables() {
    completes_with_typed_variables(ClientKind::OperatonPython).await;
}

// ── reading typed variables ─────────────────────────────────────────────────────────────────

/// The instance starts with String, Integer, Long, Double, Boolean, Json and Date variables; the
/// client reads them from its fetched task (JS: its typed view, Json parsed and Date objects;
/// Python: the wire type and value) and completes with what it saw.
async fn reads_typed_variables(kind: ClientKind) {
    let (engine, client) = stage(kind).await;
    let rest = &engine.rest;
    let pi = rest
        .start_typed(
            "client_read",
            json!({
                "str": {"value": "procos ✓", "type": "String"},
                "int": {"value": 42, "type": "Integer"},
                "long": {"value": 1_099_511_627_776_i64, "type": "Long"},
                "dbl": {"value": 3.25, "type": "Double"},
                "bool": {"value": true, "type": "Boolean"},
                "json": {"value": "{\"a\":1,\"list\":[1,\"two\",null]}", "type": "Json"},
                "date": {"value": "2025-01-23T16:42:45.000+0200", "type": "Date"}
            }),
        )
        .await;
    let vars = wait_completed(rest, &client, &pi).await;
    let seen_var = vars
        .get("seen")
        .unwrap_or_else(|| panic!("no variable \"seen\": {vars:?}"));
    assert_eq!(seen_var["type"], json!("Json"), "{seen_var}");
    let seen: Value =
        serde_json::from_str(seen_var["value"].as_str().expect("a string")).expect("seen is JSON");
    let json_value = json!({"a": 1, "list": [1, "two", null]});
    match kind {
        ClientKind::Js => assert_eq!(
            seen,
            json!({
                "str": {"type": "string", "value": "procos ✓"},
                "int": {"type": "integer", "value": 42},
                "long": {"type": "long", "value": 1_099_511_627_776_i64},
                "dbl": {"type": "double", "value": 3.25},
                "bool": {"type": "boolean", "value": true},
                "json": {"type": "json", "value": json_value},
                "date": {"type": "date", "value": "2025-01-23T14:42:45.000Z"}
            }),
            "what the JS client read"
        ),
        ClientKind::CamundaPython | ClientKind::OperatonPython => {
            let mut seen = seen;
            let date_seen = seen
                .as_object_mut()
                .and_then(|s| s.remove("date"))
                .unwrap_or_else(|| panic!("the client saw no date: {seen_var}"));
            assert_eq!(date_seen["type"], json!("Date"), "{date_seen}");
            assert_eq!(
                date(date_seen["value"].as_str().expect("a string")),
                date("2025-01-23T14:42:45.000+0000"),
                "{date_seen}"
            );
            // The Python clients fetch with deserializeValues: true; take the Json value as the
            // serialized string or as the parsed document, but it must be this document.
            let json_seen = seen
                .as_object_mut()
                .and_then(|s| s.remove("json"))
                .unwrap_or_else(|| panic!("the client saw no json: {seen_var}"));
            assert_eq!(json_seen["type"], json!("Json"), "{json_seen}");
            let document = match &json_seen["value"] {
                Value::String(s) => serde_json::from_str(s).expect("serialized JSON"),
                other => other.clone(),
            };
            assert_eq!(document, json_value, "{json_seen}");
            assert_eq!(
                seen,
                json!({
                    "str": {"type": "String", "value": "procos ✓"},
                    "int": {"type": "Integer", "value": 42},
                    "long": {"type": "Long", "value": 1_099_511_627_776_i64},
                    "dbl": {"type": "Double", "value": 3.25},
                    "bool": {"type": "Boolean", "value": true}
                }),
                "what the {} client read",
                kind.name()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_client_reads_typed_variables() {
    reads_typed_variables(ClientKind::Js).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camunda_python_client_reads_typed_variables() {
    reads_typed_variables(ClientKind::CamundaPython).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operaton_python_client_reads_typed_variables() {
    reads_typed_variables(ClientKind::OperatonPython).await;
}

// ── failure with retries ────────────────────────────────────────────────────────────────────

/// The client fails `flaky` with retries counted down from the task's (1, then 0) and a retry
/// timeout: the task comes back once after the timeout, then the engine raises an incident
/// carrying the last error, and the task keeps retries 0 and its error details.
///
/// The retry timeout is 300 ms for JS and 0 for Python: the Python clients long-poll for 30 s by
/// default, and a pending poll is re-checked only when a task is created or unlocked or every
/// 30 s (Camunda 7.23's FetchAndLockHandlerImpl; procos engine does the same), so a 300 ms
/// timeout would hold the retry until the poll ends (see tests/clients/python/client.py).
async fn fails_with_retries_until_an_incident(kind: ClientKind) {
    let retry_timeout_ms = match kind {
        ClientKind::Js => 300,
        ClientKind::CamundaPython | ClientKind::OperatonPython => 0,
    };
    let (engine, client) = stage(kind).await;
    let rest = &engine.rest;
    let pi = rest.start_typed("client_flaky", json!({})).await;

    let incident = || async { !rest.incidents(&pi).await.is_empty() };
    let raised = eventually(WITHIN, || async {
        client.stuck().is_some() || incident().await
    })
    .await
        && incident().await;
    assert!(
        raised,
        "no incident for {pi} (within {WITHIN:?}, or the client is stuck: see below); tasks {:?}\n{}",
        tasks_of(rest, &pi).await,
        client.report()
    );
    let incidents = rest.incidents(&pi).await;
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    let incident = &incidents[0];
    assert_eq!(
        incident["incidentType"],
        json!("failedExternalTask"),
        "{incident}"
    );
    assert_eq!(incident["activityId"], json!("flaky"), "{incident}");

    let tasks = tasks_of(rest, &pi).await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let task = &tasks[0];
    assert_eq!(task["retries"], json!(0), "{task}");
    assert_eq!(
        incident["incidentMessage"], task["errorMessage"],
        "{incident} {task}"
    );
    assert_eq!(incident["configuration"], task["id"], "{incident} {task}");
    let details = rest
        .text(&format!(
            "/external-task/{}/errorDetails",
            task["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(details, "details of the attempt with retries 1");

    // Two attempts: the first saw no retries yet (null) and sent 1, the second saw 1 and sent 0,
    // not before the retry timeout had passed.
    // (The JS program prints after its call returned, so its second line may still be on the
    // way when the incident is visible.)
    let attempts = || -> Vec<Value> {
        client
            .outcomes_of(&pi)
            .into_iter()
            .filter(|o| o["outcome"] == json!("failed"))
            .collect()
    };
    eventually(WITHIN, || async { attempts().len() >= 2 }).await;
    let attempts = attempts();
    assert_eq!(attempts.len(), 2, "{}", client.report());
    assert_eq!(attempts[0]["retries_seen"], Value::Null, "{attempts:?}");
    assert_eq!(attempts[0]["retries_sent"], json!(1), "{attempts:?}");
    assert_eq!(attempts[1]["retries_seen"], json!(1), "{attempts:?}");
    assert_eq!(attempts[1]["retries_sent"], json!(0), "{attempts:?}");
    let waited = attempts[1]["at"].as_i64().expect("at") - attempts[0]["at"].as_i64().expect("at");
    assert!(
        waited >= retry_timeout_ms,
        "the task came back after {waited} ms, before the {retry_timeout_ms} ms retry timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_client_fails_with_retries_until_an_incident() {
    fails_with_retries_until_an_incident(ClientKind::Js).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camunda_python_client_fails_with_retries_until_an_incident() {
    fails_with_retries_until_an_incident(ClientKind::CamundaPython).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operaton_python_client_fails_with_retries_until_an_incident() {
    fails_with_retries_until_an_incident(ClientKind::OperatonPython).await;
}

// ── BPMN error ──────────────────────────────────────────────────────────────────────────────

/// The client raises BPMN error REJECTED on `risky` with a variable; the boundary event catches
/// it, so the instance runs `rejected_step` (only the error path reaches it) and completes with
/// both the error's variable and the one `rejected_step` set.
async fn bpmn_error_takes_the_boundary_path(kind: ClientKind) {
    let (engine, client) = stage(kind).await;
    let rest = &engine.rest;
    let pi = rest.start_typed("client_risky", json!({})).await;
    let vars = wait_completed(rest, &client, &pi).await;
    assert_var(&vars, "reason", "String", json!("too risky"));
    assert_var(&vars, "handledBy", "String", json!("rejected_step"));
    assert!(
        rest.incidents(&pi).await.is_empty(),
        "a caught BPMN error raises no incident"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_client_bpmn_error_takes_the_boundary_path() {
    bpmn_error_takes_the_boundary_path(ClientKind::Js).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camunda_python_client_bpmn_error_takes_the_boundary_path() {
    bpmn_error_takes_the_boundary_path(ClientKind::CamundaPython).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operaton_python_client_bpmn_error_takes_the_boundary_path() {
    bpmn_error_takes_the_boundary_path(ClientKind::OperatonPython).await;
}

// ── File download ───────────────────────────────────────────────────────────────────────────

/// The instance starts with a File variable `doc`; the client downloads it the way it offers
/// (JS: `variables.get("doc").load()` → `GET /execution/{processInstanceId}/localVariables/doc/data`;
/// Python: `EngineClient.get_process_instance_variable` → `GET /process-instance/{id}/variables/doc`
/// and `…/data`) and completes with what it read.
async fn downloads_a_file_variable(kind: ClientKind) {
    let (engine, client) = stage(kind).await;
    let rest = &engine.rest;
    let content = "hello from the process ✓\n";
    let pi = rest
        .start_typed(
            "client_download",
            json!({"doc": {
                "value": BASE64.encode(content),
                "type": "File",
                "valueInfo": {"filename": "doc.txt", "mimeType": "text/plain", "encoding": "UTF-8"}
            }}),
        )
        .await;
    let vars = wait_completed(rest, &client, &pi).await;
    assert_var(&vars, "docText", "String", json!(content));
    assert_var(&vars, "docName", "String", json!("doc.txt"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_client_downloads_a_file_variable() {
    downloads_a_file_variable(ClientKind::Js).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camunda_python_client_downloads_a_file_variable() {
    downloads_a_file_variable(ClientKind::CamundaPython).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operaton_python_client_downloads_a_file_variable() {
    downloads_a_file_variable(ClientKind::OperatonPython).await;
}

// ── extending a lock (JS only) ──────────────────────────────────────────────────────────────

/// The JS client extends its lock on `slow` by an hour (its default lock is 50 s): the engine's
/// task then shows a lock an hour ahead, held by the client's worker; once released, the client
/// completes the task under the extended lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_client_extends_a_lock() {
    let (engine, mut client) = stage(ClientKind::Js).await;
    let rest = &engine.rest;
    let pi = rest.start_typed("client_slow", json!({})).await;
    let extended = client.wait_outcome("extended", &pi, WITHIN).await;
    let id = extended["task"].as_str().expect("task id").to_owned();

    let task = rest.get(&format!("/external-task/{id}")).await;
    assert_eq!(task["workerId"], json!("procos-test-js"), "{task}");
    let until = date(task["lockExpirationTime"].as_str().expect("locked"));
    let ahead = until.signed_duration_since(chrono::Utc::now());
    assert!(
        ahead > chrono::TimeDelta::minutes(59),
        "the lock ends in {ahead}, not about an hour: {task}"
    );

    client.send(&format!("release {id}")).await;
    let vars = wait_completed(rest, &client, &pi).await;
    assert_var(&vars, "slowDone", "Boolean", json!(true));
    assert!(
        client.running(),
        "the client is still polling\n{}",
        client.report()
    );
}
