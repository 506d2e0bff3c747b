//! End to end: secrets and hostile variables against the real binary (issue 8, defects 2, 3, 5).
//!
//! Known secrets go into the environment (`API_KEY` in an http endpoint's URL and in a custom
//! header, `ENGINE_SECRET` as a gateway token in `camunda.url`); process variables then break the
//! URL, follow a redirect to another host, and point the endpoint at the engine and at cloud
//! metadata. Every log line, incident and `errorDetails` is searched for the secrets.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Procos, Rest, Workdir, config, engine, eventually, one_task_bpmn};
use wiremock::matchers::{any, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const T: Duration = Duration::from_secs(30);
/// The http endpoint's key.
const API_KEY: &str = "e2e-api-key-7f3a9c1d5b";
/// The password in `camunda.url`.
const ENGINE_SECRET: &str = "e2e-engine-pass-4e8b2a";

/// The incident of `pi` (waits for it) and its task's errorDetails.
async fn incident_and_details(rest: &Rest, pi: &str) -> (Value, String) {
    let found = eventually(T, || async { !rest.incidents(pi).await.is_empty() }).await;
    assert!(found, "instance {pi} has an incident");
    let incident = rest.incidents(pi).await[0].clone();
    let task = &rest
        .get(&format!("/external-task?processInstanceId={pi}"))
        .await[0];
    let details = rest
        .text(&format!(
            "/external-task/{}/errorDetails",
            task["id"].as_str().unwrap_or_default()
        ))
        .await;
    (incident, details)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_no_incident_no_error_details_no_log_line_and_no_other_host() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    // A second local server, on another host name (`localhost`, not `127.0.0.1`): the redirect
    // target. It records every header it gets.
    let elsewhere = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"found": true})))
        .mount(&elsewhere)
        .await;
    let origin = MockServer::start().await;
    let landing = format!("http://localhost:{}/landing", elsewhere.address().port());
    Mock::given(path("/moved/v1/items"))
        .respond_with(ResponseTemplate::new(302).insert_header("Location", landing.as_str()))
        .mount(&origin)
        .await;
    // A server that echoes the key in its error body, as many APIs do.
    Mock::given(path("/denied/v1/items"))
        .respond_with(
            ResponseTemplate::new(401).set_body_string(format!("invalid api_key {API_KEY}")),
        )
        .mount(&origin)
        .await;

    let cfg = config(
        "",
        &["api"],
        "  lookup: { pool: gp, endpoints: [api], retries: 1 }",
        "  api:\n    type: http\n    url: \"{{ base }}/v1/items?api_key=${API_KEY}\"\n    \
         headers: { X-Api-Key: \"${API_KEY}\" }\n    allowed_hosts: [127.0.0.1, localhost]\n    \
         timeout: 5s",
    );
    let work = Workdir::new(
        &cfg,
        &[("lookup.bpmn", &one_task_bpmn("lookup", "lookup", "NEVER"))],
    );
    let procos = Procos::spawn(
        work.path(),
        &["--config", "pde.yaml"],
        &[("CAMUNDA_URL", &engine.url), ("API_KEY", API_KEY)],
    );
    rest.wait_deployed("lookup", T).await;

    // Variables that break the URL around the key: incidents naming the variable.
    let mut texts: Vec<String> = Vec::new();
    for base in ["ftp://files.example", "http://[bad"] {
        let pi = rest.start("lookup", json!({ "base": base })).await;
        let (incident, details) = incident_and_details(&rest, &pi).await;
        let message = incident["incidentMessage"].as_str().unwrap_or_default();
        assert!(message.contains("`base`"), "{incident}");
        texts.push(message.to_string());
        texts.push(details);
    }
    // A server echoing the key in its 401 body: the details keep the body, not the key.
    let pi = rest
        .start(
            "lookup",
            json!({ "base": format!("{}/denied", origin.uri()) }),
        )
        .await;
    let (incident, details) = incident_and_details(&rest, &pi).await;
    assert!(details.contains("invalid api_key ***"), "{details}");
    texts.push(
        incident["incidentMessage"]
            .as_str()
            .unwrap_or_default()
            .into(),
    );
    texts.push(details);

    // A redirect to another host: followed, without the configured header.
    let pi = rest
        .start(
            "lookup",
            json!({ "base": format!("{}/moved", origin.uri()) }),
        )
        .await;
    let vars = rest.wait_ended(&pi, T).await;
    assert_eq!(vars["body"], json!({"found": true}), "{vars:?}");
    let first = origin.received_requests().await.unwrap_or_default();
    assert!(
        first
            .iter()
            .any(|r| r.headers.get("x-api-key").is_some_and(|v| v == API_KEY)),
        "the configured host got the header"
    );
    let landed = elsewhere.received_requests().await.unwrap_or_default();
    assert_eq!(landed.len(), 1);
    for (name, value) in &landed[0].headers {
        let value = value.to_str().unwrap_or_default();
        assert!(
            !value.contains(API_KEY),
            "the redirect target got the key in `{name}`"
        );
    }
    assert!(!landed[0].url.as_str().contains(API_KEY));

    procos.wait_log("Task finished.", T).await;
    let logs = procos.log_lines();
    assert!(logs.len() > 10, "{logs:?}");
    for text in logs.iter().chain(&texts) {
        assert!(!text.contains(API_KEY), "the key leaked: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_the_engine_url_is_never_logged() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let cfg = config(
        "",
        &["echo"],
        "  echo: { pool: gp, endpoints: [echo] }",
        "  echo: { type: noop }",
    );
    let work = Workdir::new(
        &cfg,
        &[("echo.bpmn", &one_task_bpmn("echo", "echo", "NEVER"))],
    );
    // A gateway token in the engine URL's query (credentials in user info are refused).
    let engine_url = format!("{}?access_token={ENGINE_SECRET}", engine.url);
    let procos = Procos::spawn(
        work.path(),
        &["--config", "pde.yaml"],
        &[("CAMUNDA_URL", &engine_url)],
    );
    rest.wait_deployed("echo", T).await;
    let pi = rest.start("echo", json!({"x": 1})).await;
    rest.wait_ended(&pi, T).await;
    procos.wait_log("Task finished.", T).await;
    let logs = procos.log_lines();
    let starting = logs.iter().find(|l| l.contains("procos starting."));
    assert!(
        starting.is_some_and(|l| l.contains("/engine-rest?access_token=***")),
        "the start line still says which engine: {starting:?}"
    );
    for line in &logs {
        assert!(!line.contains(ENGINE_SECRET), "the token leaked: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_from_a_variable_cannot_reach_the_engine_or_cloud_metadata() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    // The old shipped example: method and URL from variables, no allowed_hosts.
    let cfg = config(
        "",
        &["api"],
        "  call: { pool: gp, endpoints: [api], retries: 1 }",
        "  api: { type: http, timeout: 2s }",
    );
    // Its task is on a topic procos does not serve: it waits, untouched.
    let victim_bpmn = one_task_bpmn("victim", "unserved", "NEVER");
    let work = Workdir::new(
        &cfg,
        &[
            ("call.bpmn", &one_task_bpmn("call", "call", "NEVER")),
            ("victim.bpmn", &victim_bpmn),
        ],
    );
    let procos = Procos::daemon(&work, &engine.url);
    rest.wait_deployed("call", T).await;
    rest.wait_deployed("victim", T).await;
    // An instance nobody's variables should be able to touch.
    let victim = rest.start("victim", json!({})).await;

    let attacks = [
        json!({"method": "DELETE", "url": format!("{}/process-instance/{victim}", engine.url)}),
        json!({"url": "http://169.254.169.254/latest/meta-data/iam/security-credentials/"}),
        json!({"url": format!("http://localhost:{}/engine-rest/version",
                              engine.url.rsplit(':').next().unwrap_or_default()
                                  .split('/').next().unwrap_or_default())}),
    ];
    for vars in attacks {
        let pi = rest.start("call", vars.clone()).await;
        let (incident, _details) = incident_and_details(&rest, &pi).await;
        let message = incident["incidentMessage"].as_str().unwrap_or_default();
        assert!(message.contains("`url`"), "{vars}: {incident}");
        assert!(
            message.contains("refused destination"),
            "{vars}: {incident}"
        );
    }
    assert_eq!(
        rest.state(&victim).await,
        "ACTIVE",
        "the other instance lives"
    );
    drop(procos);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_only_in_the_url_is_redacted_from_what_a_server_echoes() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(403).set_body_string(format!("key {API_KEY} is revoked")),
        )
        .mount(&server)
        .await;
    // The key is in the URL only: what marks it as a secret is that it came from `${API_KEY}`.
    let cfg = config(
        "",
        &["api"],
        "  lookup: { pool: gp, endpoints: [api], retries: 1 }",
        &format!(
            "  api:\n    type: http\n    method: GET\n    \
             url: \"{}/v1/items?api_key=${{API_KEY}}&q={{{{ q }}}}\"\n    timeout: 5s",
            server.uri()
        ),
    );
    let work = Workdir::new(
        &cfg,
        &[("lookup.bpmn", &one_task_bpmn("lookup", "lookup", "NEVER"))],
    );
    let procos = Procos::spawn(
        work.path(),
        &["--config", "pde.yaml"],
        &[("CAMUNDA_URL", &engine.url), ("API_KEY", API_KEY)],
    );
    rest.wait_deployed("lookup", T).await;
    let pi = rest.start("lookup", json!({ "q": "x" })).await;
    let (incident, details) = incident_and_details(&rest, &pi).await;
    assert!(details.contains("key *** is revoked"), "{details}");
    procos.wait_log("Task finished.", T).await;
    let message = incident["incidentMessage"].as_str().unwrap_or_default();
    for text in procos
        .log_lines()
        .iter()
        .map(String::as_str)
        .chain([message])
    {
        assert!(!text.contains(API_KEY), "the key leaked: {text}");
    }
}
