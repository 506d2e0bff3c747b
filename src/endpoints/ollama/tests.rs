//! Tests of the `ollama` endpoint against a wiremock server speaking Ollama's API.

use super::*;
use crate::endpoints::ErrorKind;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn config(server: &MockServer) -> OllamaConfig {
    OllamaConfig {
        url: server.uri(),
        ..OllamaConfig::for_model("llama3")
    }
}

fn request(vars: Value) -> EndpointRequest {
    EndpointRequest {
        variables: vars.as_object().cloned().unwrap_or_default(),
        ..Default::default()
    }
}

fn chat(content: &str) -> Value {
    json!({
        "model": "llama3:latest",
        "created_at": "2024-06-01T10:00:00Z",
        "message": {"role": "assistant", "content": content},
        "done": true,
        "done_reason": "stop",
        "prompt_eval_count": 42,
        "eval_count": 7,
    })
}

async fn server_with(chat_status: u16, chat_body: Value, tags: Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/chat"))
        .respond_with(ResponseTemplate::new(chat_status).set_body_json(chat_body))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/tags"))
        .respond_with(ResponseTemplate::new(200).set_body_json(tags))
        .mount(&server)
        .await;
    server
}

fn tags(names: &[&str]) -> Value {
    json!({"models": names.iter().map(|n| json!({"name": n, "model": n, "size": 1})).collect::<Vec<_>>()})
}

async fn sent_chat(server: &MockServer) -> Value {
    let requests = server.received_requests().await.unwrap_or_default();
    let chat = requests
        .iter()
        .rfind(|r| r.url.path() == "/api/chat")
        .expect("a chat request");
    serde_json::from_slice(&chat.body).unwrap()
}

#[tokio::test]
async fn a_chat_sends_stream_false_with_options_and_returns_text_and_usage() {
    let server = server_with(200, chat("Hello there."), tags(&["llama3:latest"])).await;
    let ep = OllamaEndpoint::new(
        "local",
        &OllamaConfig {
            options: json!({"temperature": 0.1, "num_ctx": 8192})
                .as_object()
                .cloned()
                .unwrap(),
            keep_alive: Some(json!("5m")),
            system: Some("Be brief.".into()),
            prompt: Some("Greet {{ name }}".into()),
            ..config(&server)
        },
    )
    .unwrap();
    let reply = ep.call(&request(json!({"name": "Ada"}))).await.unwrap();
    assert_eq!(reply.output, json!("Hello there."));
    let usage = reply.usage.unwrap();
    assert_eq!((usage.input_tokens, usage.output_tokens), (42, 7));
    assert_eq!(usage.model.as_deref(), Some("llama3:latest"));
    assert_eq!(
        sent_chat(&server).await,
        json!({
            "model": "llama3",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Greet Ada"},
            ],
            "stream": false,
            "options": {"temperature": 0.1, "num_ctx": 8192},
            "keep_alive": "5m",
        })
    );
}

#[tokio::test]
async fn format_schema_sends_the_topic_schema_and_parses_json() {
    let server = server_with(
        200,
        chat("```json\n{\"category\": \"technical\"}\n```"),
        tags(&["llama3:latest"]),
    )
    .await;
    let ep = OllamaEndpoint::new(
        "local",
        &OllamaConfig {
            format: Some(json!("schema")),
            ..config(&server)
        },
    )
    .unwrap();
    let schema = json!({"type": "object", "required": ["category"]});
    let mut req = request(json!({"prompt": "classify"}));
    req.output_schema = Some(Arc::new(schema.clone()));
    let reply = ep.call(&req).await.unwrap();
    assert_eq!(reply.output, json!({"category": "technical"}));
    let body = sent_chat(&server).await;
    assert_eq!(body["format"], schema);

    // Without a topic schema, `schema` asks for plain JSON.
    ep.call(&request(json!({"prompt": "x"}))).await.unwrap();
    assert_eq!(sent_chat(&server).await["format"], "json");
}

#[tokio::test]
async fn a_malformed_json_reply_is_invalid_output() {
    let server = server_with(200, chat("category: technical"), tags(&["llama3"])).await;
    let ep = OllamaEndpoint::new(
        "local",
        &OllamaConfig {
            format: Some(json!("json")),
            ..config(&server)
        },
    )
    .unwrap();
    let err = ep.call(&request(json!({"prompt": "x"}))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidOutput);
    assert_eq!(err.code.as_deref(), Some("invalid_json"));
}

#[tokio::test]
async fn the_probe_lists_tags_and_a_missing_model_says_to_pull_it() {
    let server = server_with(200, chat("x"), tags(&["llama3:latest", "qwen2.5:7b"])).await;
    let ok = OllamaEndpoint::new("local", &config(&server)).unwrap();
    assert!(ok.probe().await.is_ok(), "llama3 means llama3:latest");

    let missing = OllamaEndpoint::new(
        "local",
        &OllamaConfig {
            model: "mistral".into(),
            ..config(&server)
        },
    )
    .unwrap();
    let err = missing.probe().await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Fallback);
    assert_eq!(
        err.message,
        format!(
            "model mistral is not available on {}; run `ollama pull mistral`",
            server.uri()
        )
    );
}

#[tokio::test]
async fn tasks_never_ask_the_server_only_the_probe_does() {
    let server = server_with(200, chat("x"), tags(&["llama3:latest"])).await;
    let ep = OllamaEndpoint::new("local", &config(&server)).unwrap();
    for _ in 0..8 {
        ep.usable().unwrap();
    }
    let tags_asked = || async {
        server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == "/api/tags")
            .count()
    };
    assert_eq!(tags_asked().await, 0, "usable() is no I/O");
    ep.probe().await.unwrap();
    assert_eq!(tags_asked().await, 1);
}

#[tokio::test]
async fn a_chat_with_a_model_not_pulled_falls_back_with_the_pull_hint() {
    let server = server_with(
        404,
        json!({"error": "model \"llama3\" not found, try pulling it first"}),
        tags(&[]),
    )
    .await;
    let ep = OllamaEndpoint::new("local", &config(&server)).unwrap();
    let err = ep.call(&request(json!({"prompt": "x"}))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Fallback);
    assert_eq!(err.code.as_deref(), Some("model_not_found"));
    assert!(err.message.contains("run `ollama pull llama3`"), "{err}");
}

#[tokio::test]
async fn an_unreachable_server_is_a_transient_connect_error() {
    let ep = OllamaEndpoint::new(
        "local",
        &OllamaConfig {
            url: "http://127.0.0.1:9".into(),
            ..OllamaConfig::for_model("llama3")
        },
    )
    .unwrap();
    let err = ep.call(&request(json!({"prompt": "x"}))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient { retry_after: None });
    assert_eq!(err.code.as_deref(), Some("connect"));
    assert!(
        err.message.contains("Ollama at http://127.0.0.1:9"),
        "{err}"
    );
    assert_eq!(
        ep.probe().await.unwrap_err().code.as_deref(),
        Some("connect")
    );
}

#[tokio::test]
async fn an_unreachable_server_opens_the_circuit_and_is_routed_around() {
    let cfg = OllamaConfig {
        url: "http://127.0.0.1:9".into(),
        max_retries: 0,
        circuit: CircuitConfig {
            failure_threshold: 2,
            open_for: Duration::from_secs(60),
            ..CircuitConfig::default()
        },
        // Calls alone open it here (a probe would at once).
        probe: crate::endpoints::stack::ProbeConfig {
            enabled: Some(false),
            ..Default::default()
        },
        ..OllamaConfig::for_model("llama3")
    };
    let ep = crate::endpoints::EndpointConfig::Ollama(cfg)
        .build("local", &Default::default())
        .unwrap();
    let req = request(json!({"prompt": "x"}));
    for _ in 0..2 {
        assert_eq!(
            ep.call(&req).await.unwrap_err().code.as_deref(),
            Some("connect")
        );
    }
    let err = ep.call(&req).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Fallback);
    assert_eq!(err.code.as_deref(), Some("circuit_open"));
    assert_eq!(
        ep.usable().unwrap_err().code.as_deref(),
        Some("circuit_open")
    );
}

#[test]
fn config_is_strict_and_validation_names_every_bad_field() {
    let err = serde_yaml::from_str::<OllamaConfig>("{model: m, fromat: json}").unwrap_err();
    assert!(err.to_string().contains("fromat"), "{err}");
    let cfg: OllamaConfig = serde_yaml::from_str(
        "{model: ' ', url: 'localhost', format: yaml, keep_alive: [1], timeout: 0s, \
          max_concurrency: 0, system: '{% if %}', circuit: {open_for: 0s}}",
    )
    .unwrap();
    let fields: Vec<String> = cfg.validate().into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        [
            "url",
            "model",
            "format",
            "keep_alive",
            "timeout",
            "max_concurrency",
            "circuit.open_for",
            "system"
        ]
    );
    for good in [
        "{model: llama3}",
        "{model: llama3, format: json, keep_alive: -1, options: {num_ctx: 4096}}",
        "{model: llama3, format: {type: object}, keep_alive: 5m}",
    ] {
        let cfg: OllamaConfig = serde_yaml::from_str(good).unwrap();
        assert!(cfg.validate().is_empty(), "{good}: {:?}", cfg.validate());
    }
}
