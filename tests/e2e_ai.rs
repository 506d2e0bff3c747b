//! End to end: AI tasks through the real `procos` binary and the in-repo engine, with local
//! wiremock fakes speaking OpenAI's chat-completions and Ollama's chat/tags wire formats.
//!
//! The process is the shipped `bpmn/support_ticket.bpmn` (prompt in `pde.prompt`, exclusive
//! gateway on `category`); the topic and endpoints are configured per test.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::ai::{completion, ollama_classifying, requests_to};
use support::{Procos, Rest, Workdir, config, engine, repo};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const T: Duration = Duration::from_secs(30);
const KEY: &str = "sk-e2e-NEVER-PRINT-7f3a9c";

const SCHEMA: &str = "{type: object, required: [category, urgency], properties: {category: {enum: [billing, technical, other]}, urgency: {enum: [low, normal, high]}}}";

/// The `classify_ticket` topic over `openai` then `ollama`.
fn topic() -> String {
    format!(
        "  classify_ticket:\n    pool: gp\n    endpoints: [openai, ollama]\n    retries: 3\n    retry_timeout: 100ms\n    output: {{ attempts: 2, usage_variable: pde_usage, schema: {SCHEMA} }}\n"
    )
}

/// The two endpoints, pointed at the fakes; `openai_extra` adds keys to `openai`.
fn endpoints(openai: &MockServer, ollama: &MockServer, openai_extra: &str) -> String {
    format!(
        "  openai:\n    type: openai\n    base_url: {}/v1\n    api_key: \"${{OPENAI_API_KEY}}\"\n    model: gpt-test\n    max_retries: 1\n    retry_backoff: 10ms\n{openai_extra}  ollama:\n    type: ollama\n    url: {}\n    model: llama3\n    format: schema\n",
        openai.uri(),
        ollama.uri()
    )
}

fn workdir(openai: &MockServer, ollama: &MockServer, openai_extra: &str) -> Workdir {
    let bpmn = std::fs::read_to_string(repo().join("bpmn/support_ticket.bpmn")).expect("bpmn");
    let cfg = config(
        "",
        &["openai", "ollama"],
        &topic(),
        &endpoints(openai, ollama, openai_extra),
    );
    Workdir::new(&cfg, &[("support_ticket.bpmn", &bpmn)])
}

fn daemon(work: &Workdir, engine_url: &str) -> Procos {
    Procos::spawn(
        work.path(),
        &["--config", "pde.yaml"],
        &[("CAMUNDA_URL", engine_url), ("OPENAI_API_KEY", KEY)],
    )
}

/// An OpenAI fake answering every chat completion with `status` and `body`.
async fn openai_answering(status: u16, body: Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .mount(&server)
        .await;
    server
}

fn body(r: &Request) -> Value {
    serde_json::from_slice(&r.body).expect("JSON body")
}

/// The content of the last message of a chat request.
fn last_message(r: &Request) -> String {
    body(r)["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_schema_task_falls_back_from_failing_openai_to_ollama_and_completes() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let openai = openai_answering(
        500,
        json!({"error": {"message": "The server had an error"}}),
    )
    .await;
    let ollama = ollama_classifying().await;
    let work = workdir(&openai, &ollama, "    response_format: json_schema\n");
    let _procos = daemon(&work, &engine.url);
    rest.wait_deployed("support_ticket", T).await;

    let pi = rest
        .start(
            "support_ticket",
            json!({"subject": "Invoice", "text": "I was charged twice this month."}),
        )
        .await;
    let vars = rest.wait_ended(&pi, T).await;

    assert_eq!(vars["category"], json!("billing"), "{vars:?}");
    assert_eq!(vars["urgency"], json!("high"));
    assert_eq!(vars["pde_usage"]["endpoint"], json!("ollama"));
    assert_eq!(vars["pde_usage"]["input_tokens"], json!(40));
    // OpenAI: one call and one retry (max_retries: 1), both answered 500.
    let tried = requests_to(&openai, "/v1/chat/completions").await;
    assert_eq!(tried.len(), 2);
    assert_eq!(body(&tried[0])["response_format"]["type"], "json_schema");
    // Ollama got the topic's schema as structured-output format and the BPMN's prompt.
    let chats = requests_to(&ollama, "/api/chat").await;
    assert_eq!(chats.len(), 1);
    let sent = body(&chats[0]);
    assert_eq!(sent["format"]["required"], json!(["category", "urgency"]));
    assert_eq!(sent["stream"], json!(false));
    assert!(
        last_message(&chats[0]).contains("Text: I was charged twice this month."),
        "{sent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_reply_is_retried_with_feedback_then_falls_back() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let openai = openai_answering(200, completion("Sure! This one is about billing.")).await;
    let ollama = ollama_classifying().await;
    let work = workdir(&openai, &ollama, "    response_format: json_object\n");
    let _procos = daemon(&work, &engine.url);
    rest.wait_deployed("support_ticket", T).await;

    let pi = rest
        .start("support_ticket", json!({"text": "Refund please"}))
        .await;
    let vars = rest.wait_ended(&pi, T).await;
    assert_eq!(vars["category"], json!("billing"));
    assert_eq!(vars["pde_usage"]["endpoint"], json!("ollama"));

    // attempts: 2 → two calls to OpenAI; the second carries why the first was rejected.
    let tried = requests_to(&openai, "/v1/chat/completions").await;
    assert_eq!(tried.len(), 2, "malformed JSON is not retried as transient");
    assert!(!last_message(&tried[0]).contains("rejected"));
    let feedback = last_message(&tried[1]);
    assert!(
        feedback.contains("previous answer was rejected") && feedback.contains("not valid JSON"),
        "{feedback}"
    );
    assert_eq!(requests_to(&ollama, "/api/chat").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_key_is_an_incident_that_says_to_check_it_and_never_shows_it() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    // The fake echoes the key, as OpenAI echoes part of it.
    let openai = openai_answering(
        401,
        json!({"error": {"message": format!("Incorrect API key provided: {KEY}."), "code": "invalid_api_key"}}),
    )
    .await;
    let ollama = ollama_classifying().await;
    let work = workdir(&openai, &ollama, "");
    let procos = daemon(&work, &engine.url);
    rest.wait_deployed("support_ticket", T).await;

    let pi = rest
        .start("support_ticket", json!({"text": "Where is my invoice?"}))
        .await;
    let found = support::eventually(T, || async { !rest.incidents(&pi).await.is_empty() }).await;
    assert!(found, "a 401 raises an incident at once");
    let incident = &rest.incidents(&pi).await[0];
    let message = incident["incidentMessage"].as_str().unwrap_or_default();
    assert!(
        message
            .contains("rejected the API key (401); check the key configured for endpoint `openai`"),
        "{incident}"
    );
    let task = &rest
        .get(&format!("/external-task?processInstanceId={pi}"))
        .await[0];
    assert_eq!(task["retries"], json!(0), "permanent: no retries");
    let details = rest
        .text(&format!(
            "/external-task/{}/errorDetails",
            task["id"].as_str().unwrap_or_default()
        ))
        .await;
    // The key was sent, once, and the fallback was not tried: a bad key is not a routing matter.
    let tried = requests_to(&openai, "/v1/chat/completions").await;
    assert_eq!(tried.len(), 1);
    assert_eq!(
        tried[0]
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert!(requests_to(&ollama, "/api/chat").await.is_empty());

    procos.wait_log("Task finished.", T).await;
    let logs = procos.log_lines();
    assert!(!logs.is_empty());
    for text in logs
        .iter()
        .map(String::as_str)
        .chain([message, details.as_str()])
    {
        assert!(!text.contains(KEY), "the key leaked: {text}");
        assert!(
            !text.contains("NEVER-PRINT"),
            "part of the key leaked: {text}"
        );
    }
}

/// Runs `procos validate` on `yaml` with `OPENAI_API_KEY` set to the key.
fn validate(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("pde.yaml"), yaml).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_procos"))
        .args(["validate", "--config", "pde.yaml"])
        .current_dir(dir.path())
        .env("OPENAI_API_KEY", KEY)
        .env("CAMUNDA_URL", "http://localhost:8080/engine-rest")
        .output()
        .expect("runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn procos_validate_never_prints_the_key() {
    let endpoints = |openai_extra: &str| {
        format!(
            "  openai:\n    type: openai\n    model: gpt-test\n{openai_extra}  ollama:\n    type: ollama\n    model: llama3\n"
        )
    };
    let cfg = |openai_extra: &str| {
        config(
            "",
            &["openai", "ollama"],
            &topic(),
            &endpoints(openai_extra),
        )
    };
    // Valid: the key from the environment.
    let (code, text) = validate(&cfg("    api_key: \"${OPENAI_API_KEY}\"\n"));
    assert_eq!(code, 0, "{text}");
    // Invalid, with the key from the environment misplaced where a number belongs, and written
    // inline next to a typo.
    for extra in [
        "    api_key: \"${OPENAI_API_KEY}\"\n    max_tokens: \"${OPENAI_API_KEY}\"\n    temperature: 7\n".to_string(),
        format!("    api_key: {KEY}\n    max_tokns: 5\n"),
        format!("    api_key: [{KEY}]\n"),
    ] {
        let (code, text) = validate(&cfg(&extra));
        assert_eq!(code, 78, "{extra}: {text}");
        assert!(text.contains("endpoints.openai"), "{text}");
        assert!(!text.contains(KEY) && !text.contains("NEVER-PRINT"), "{text}");
    }
}

#[test]
fn the_shipped_config_validates_without_any_key() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_procos"))
        .args(["validate", "--config", "config/pde.yaml"])
        .current_dir(repo())
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("OLLAMA_URL")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("12 endpoints"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_example_without_a_key_is_served_by_ollama() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let ollama = ollama_classifying().await;
    // The shipped config asks for llama3.2; this fake has it too.
    Mock::given(method("GET"))
        .and(path("/api/tags"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest"}]}),
        ))
        .with_priority(1)
        .mount(&ollama)
        .await;
    let work = Workdir::from_repo();
    let procos = Procos::spawn(
        work.path(),
        &["--config", "config/pde.yaml"],
        &[
            ("CAMUNDA_URL", &engine.url),
            ("OPENAI_API_KEY", ""),
            ("OLLAMA_URL", &ollama.uri()),
        ],
    );
    rest.wait_deployed("support_ticket", T).await;

    let pi = rest
        .start(
            "support_ticket",
            json!({"subject": "Charged twice", "text": "My card was charged twice."}),
        )
        .await;
    let vars = rest.wait_ended(&pi, T).await;
    assert_eq!(vars["category"], json!("billing"));
    assert_eq!(vars["pde_usage"]["endpoint"], json!("ollama"));
    let chats = requests_to(&ollama, "/api/chat").await;
    assert_eq!(body(&chats[0])["model"], json!("llama3.2"));
    procos.wait_log("no API key configured", T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_example_with_no_model_at_all_falls_back_to_the_keyword_script() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let closed = format!("http://127.0.0.1:{}", support::free_port());
    let work = Workdir::from_repo();
    let _procos = Procos::spawn(
        work.path(),
        &["--config", "config/pde.yaml"],
        &[
            ("CAMUNDA_URL", &engine.url),
            ("OPENAI_API_KEY", ""),
            ("OLLAMA_URL", &closed),
        ],
    );
    rest.wait_deployed("support_ticket", T).await;
    let pi = rest
        .start(
            "support_ticket",
            json!({"subject": "Login broken", "text": "I get an error when I log in, urgent!"}),
        )
        .await;
    let vars = rest.wait_ended(&pi, T).await;
    assert_eq!(vars["category"], json!("technical"));
    assert_eq!(vars["urgency"], json!("high"));
    assert_eq!(
        vars["pde_usage"]["endpoint"],
        json!("classify_py"),
        "served by the last fallback: {vars:?}"
    );
    assert!(rest.incidents(&pi).await.is_empty());
}
