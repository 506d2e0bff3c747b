//! End to end: the background probes (PBIT) and the shared health, through the real binary.
//!
//! An OpenAI-compatible server whose `/models` fails is found unwell by the probe at start-up:
//! its circuit opens and tasks go to the next endpoint without a single call to it. When its
//! probe passes again, the circuit is half-open and the next task is served by it again.

mod support;

use std::time::Duration;

use serde_json::json;
use support::ai::{completion, ollama_classifying, requests_to};
use support::{Procos, Rest, Workdir, config, engine, repo};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const T: Duration = Duration::from_secs(30);
const SCHEMA: &str = "{type: object, required: [category, urgency], properties: {category: {enum: [billing, technical, other]}, urgency: {enum: [low, normal, high]}}}";

/// The OpenAI fake: `/v1/models` answers `models`, chats classify as technical/low.
async fn mount_openai(server: &MockServer, models: u16) {
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(ResponseTemplate::new(models).set_body_json(json!({"data": []})))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(
            "{\"category\": \"technical\", \"urgency\": \"low\"}",
        )))
        .mount(server)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_probe_routes_tasks_around_the_endpoint_until_it_passes_again() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let openai = MockServer::start().await;
    mount_openai(&openai, 503).await;
    let ollama = ollama_classifying().await;
    let topic = format!(
        "  classify_ticket:\n    pool: gp\n    endpoints: [openai, ollama]\n    retries: 3\n    retry_timeout: 100ms\n    output: {{ attempts: 2, usage_variable: pde_usage, schema: {SCHEMA} }}\n"
    );
    let endpoints = format!(
        "  openai:\n    type: openai\n    base_url: {}/v1\n    api_key: sk-e2e-probe\n    model: gpt-test\n    response_format: json_object\n    probe: {{ every: 1s, timeout: 2s }}\n    circuit: {{ open_for: 1h }}\n  ollama:\n    type: ollama\n    url: {}\n    model: llama3\n    format: schema\n",
        openai.uri(),
        ollama.uri()
    );
    let bpmn = std::fs::read_to_string(repo().join("bpmn/support_ticket.bpmn")).expect("bpmn");
    let cfg = config("", &["openai", "ollama"], &topic, &endpoints);
    let work = Workdir::new(&cfg, &[("support_ticket.bpmn", &bpmn)]);
    let procos = Procos::spawn(
        work.path(),
        &["--config", "pde.yaml"],
        &[("CAMUNDA_URL", engine.url.as_str())],
    );
    rest.wait_deployed("support_ticket", T).await;
    procos.wait_log("Circuit opened", T).await;

    let pi = rest
        .start("support_ticket", json!({"text": "The app crashes"}))
        .await;
    let vars = rest.wait_ended(&pi, T).await;
    assert_eq!(vars["pde_usage"]["endpoint"], json!("ollama"), "{vars:?}");
    assert!(
        requests_to(&openai, "/v1/chat/completions")
            .await
            .is_empty(),
        "an open circuit is routed around: not one call"
    );
    let probes = requests_to(&openai, "/v1/models").await;
    assert!(!probes.is_empty(), "the probe asked /models");
    assert_eq!(
        probes[0].headers.get("authorization").map(|v| v.as_bytes()),
        Some("Bearer sk-e2e-probe".as_bytes()),
        "with the key"
    );

    // The server recovers: the next probe passes, the circuit is half-open (`open_for` is an
    // hour: only the probe can have moved it), and the next task takes the trial call.
    openai.reset().await;
    mount_openai(&openai, 200).await;
    procos.wait_log("Circuit half-open", T).await;
    let pi = rest
        .start("support_ticket", json!({"text": "The app crashes again"}))
        .await;
    let vars = rest.wait_ended(&pi, T).await;
    assert_eq!(vars["pde_usage"]["endpoint"], json!("openai"), "{vars:?}");
    assert_eq!(vars["category"], json!("technical"));
    procos.wait_log("Circuit closed", T).await;
    let failed = procos
        .log_lines()
        .iter()
        .filter(|l| l.contains("Probe failed."))
        .count();
    assert_eq!(
        failed, 1,
        "a failing probe is logged once, not every second"
    );
}
