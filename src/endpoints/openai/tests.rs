//! Tests of the `openai` endpoint against a wiremock server speaking the chat-completions format.

use super::*;
use crate::endpoints::ErrorKind;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "sk-test-SECRET-0123456789";

/// The key as the config holds it: a `Secret` field, registered for redaction when read.
fn key() -> Secret {
    crate::config::secret::register(KEY);
    Secret::new(KEY)
}

fn config(server: &MockServer) -> OpenAiConfig {
    OpenAiConfig {
        base_url: format!("{}/v1", server.uri()),
        api_key: Some(key()),
        ..OpenAiConfig::for_model("gpt-test")
    }
}

fn request(vars: Value) -> EndpointRequest {
    EndpointRequest {
        task_id: "t-1".into(),
        variables: vars.as_object().cloned().unwrap_or_default(),
        ..Default::default()
    }
}

fn completion(content: &str) -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-test-2024",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500},
    })
}

async fn answering(status: u16, body: Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .mount(&server)
        .await;
    server
}

async fn sent_body(server: &MockServer) -> Value {
    let requests: Vec<Request> = server.received_requests().await.unwrap_or_default();
    serde_json::from_slice(&requests.last().expect("a request").body).unwrap()
}

#[tokio::test]
async fn a_text_completion_returns_the_text_with_usage_and_cost() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("A summary.")))
        .expect(1)
        .mount(&server)
        .await;
    let ep = OpenAiEndpoint::new(
        "gpt",
        &OpenAiConfig {
            system: Some("You summarise.".into()),
            prompt: Some("Summarise: {{ text }}".into()),
            temperature: Some(0.2),
            max_tokens: Some(100),
            price_per_1k: Some(Pricing {
                input: 0.01,
                output: 0.03,
            }),
            ..config(&server)
        },
    )
    .unwrap();
    let reply = ep
        .call(&request(json!({"text": "long text"})))
        .await
        .unwrap();
    assert_eq!(reply.output, json!("A summary."));
    let usage = reply.usage.unwrap();
    assert_eq!(usage.model.as_deref(), Some("gpt-test-2024"));
    assert_eq!((usage.input_tokens, usage.output_tokens), (1200, 300));
    assert!((usage.cost.unwrap() - 0.021).abs() < 1e-9);
    assert_eq!(
        sent_body(&server).await,
        json!({
            "model": "gpt-test",
            "messages": [
                {"role": "system", "content": "You summarise."},
                {"role": "user", "content": "Summarise: long text"},
            ],
            "temperature": 0.2,
            "max_tokens": 100,
        })
    );
}

#[tokio::test]
async fn json_schema_mode_sends_the_topic_schema_and_parses_the_reply() {
    let server = answering(
        200,
        completion(r#"{"category": "billing", "urgency": "high"}"#),
    )
    .await;
    let ep = OpenAiEndpoint::new(
        "gpt",
        &OpenAiConfig {
            response_format: ResponseFormat::JsonSchema,
            ..config(&server)
        },
    )
    .unwrap();
    let schema =
        json!({"type": "object", "properties": {"category": {"enum": ["billing", "other"]}}});
    let mut req = request(json!({"prompt": "classify"}));
    req.output_schema = Some(Arc::new(schema.clone()));
    let reply = ep.call(&req).await.unwrap();
    assert_eq!(
        reply.output,
        json!({"category": "billing", "urgency": "high"})
    );
    let body = sent_body(&server).await;
    assert_eq!(body["response_format"]["type"], "json_schema");
    assert_eq!(body["response_format"]["json_schema"]["schema"], schema);
}

#[tokio::test]
async fn json_object_mode_asks_for_json_and_strips_fences() {
    let server = answering(200, completion("```json\n{\"ok\": true}\n```")).await;
    let ep = OpenAiEndpoint::new(
        "gpt",
        &OpenAiConfig {
            response_format: ResponseFormat::JsonObject,
            ..config(&server)
        },
    )
    .unwrap();
    let reply = ep.call(&request(json!({"prompt": "x"}))).await.unwrap();
    assert_eq!(reply.output, json!({"ok": true}));
    let body = sent_body(&server).await;
    assert_eq!(body["response_format"], json!({"type": "json_object"}));
    // OpenAI requires the word JSON in the messages for json_object mode.
    assert!(
        body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("JSON")
    );
}

#[tokio::test]
async fn a_malformed_json_reply_is_invalid_output() {
    let server = answering(200, completion("Sure! Here is the category: billing")).await;
    let ep = OpenAiEndpoint::new(
        "gpt",
        &OpenAiConfig {
            response_format: ResponseFormat::JsonObject,
            ..config(&server)
        },
    )
    .unwrap();
    let err = ep.call(&request(json!({"prompt": "x"}))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidOutput);
    assert_eq!(err.code.as_deref(), Some("invalid_json"));
}

#[tokio::test]
async fn feedback_from_a_rejected_attempt_is_the_last_message() {
    let server = answering(200, completion("{}")).await;
    let ep = OpenAiEndpoint::new("gpt", &config(&server)).unwrap();
    let mut req = request(json!({"prompt": "classify"}));
    req.feedback = Some("the reply is not valid JSON".into());
    ep.call(&req).await.unwrap();
    let body = sent_body(&server).await;
    let last = body["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["role"], "user");
    assert!(
        last["content"].as_str().unwrap().contains("not valid JSON"),
        "{last}"
    );
}

#[tokio::test]
async fn rate_limits_carry_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "3")
                .set_body_json(json!({"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}})),
        )
        .mount(&server)
        .await;
    let ep = OpenAiEndpoint::new("gpt", &config(&server)).unwrap();
    let err = ep.call(&request(json!({"prompt": "x"}))).await.unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::Transient {
            retry_after: Some(Duration::from_secs(3))
        }
    );
    assert_eq!(err.code.as_deref(), Some("rate_limited"));
}

#[tokio::test]
async fn server_errors_are_transient_and_context_length_falls_back() {
    let server = answering(
        500,
        json!({"error": {"message": "The server had an error"}}),
    )
    .await;
    let ep = OpenAiEndpoint::new("gpt", &config(&server)).unwrap();
    let err = ep.call(&request(json!({"prompt": "x"}))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient { retry_after: None });
    assert_eq!(err.code.as_deref(), Some("http_500"));

    let server = answering(
        400,
        json!({"error": {"message": "This model's maximum context length is 8192 tokens.", "type": "invalid_request_error", "code": "context_length_exceeded"}}),
    )
    .await;
    let ep = OpenAiEndpoint::new("gpt", &config(&server)).unwrap();
    let err = ep.call(&request(json!({"prompt": "x"}))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Fallback);
    assert_eq!(err.code.as_deref(), Some("context_length"));
}

#[tokio::test]
async fn a_content_filter_raises_the_configured_bpmn_error() {
    let mut filtered = completion("");
    filtered["choices"][0]["finish_reason"] = json!("content_filter");
    let server = answering(200, filtered).await;
    let ep = OpenAiEndpoint::new(
        "gpt",
        &OpenAiConfig {
            refusal_error_code: "TICKET_REFUSED".into(),
            ..config(&server)
        },
    )
    .unwrap();
    let err = ep.call(&request(json!({"prompt": "x"}))).await.unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::Business {
            error_code: "TICKET_REFUSED".into()
        }
    );
    assert_eq!(err.code.as_deref(), Some("content_policy"));

    let mut refusal = completion("");
    refusal["choices"][0]["message"] =
        json!({"role": "assistant", "content": null, "refusal": "I can't help with that."});
    let server = answering(200, refusal).await;
    let ep = OpenAiEndpoint::new("gpt", &config(&server)).unwrap();
    let err = ep.call(&request(json!({"prompt": "x"}))).await.unwrap_err();
    assert!(err.message.contains("I can't help with that."), "{err}");
    assert_eq!(
        err.kind,
        ErrorKind::Business {
            error_code: "CONTENT_REFUSED".into()
        }
    );
}

#[tokio::test]
async fn a_slow_reply_past_the_timeout_is_a_transient_timeout() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion("late"))
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;
    let ep = OpenAiEndpoint::new(
        "gpt",
        &OpenAiConfig {
            timeout: Duration::from_millis(200),
            ..config(&server)
        },
    )
    .unwrap();
    let err = ep.call(&request(json!({"prompt": "x"}))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient { retry_after: None });
    assert_eq!(err.code.as_deref(), Some("timeout"));
}

#[tokio::test]
async fn the_key_appears_in_no_error_on_any_path_nor_in_debug_output() {
    // Every server answer echoes the key, as a careless proxy might.
    let echo = format!("your key {KEY} was seen");
    let cases: Vec<(u16, Value)> = vec![
        (
            401,
            json!({"error": {"message": echo, "code": "invalid_api_key"}}),
        ),
        (403, json!({"error": {"message": echo}})),
        (429, json!({"error": {"message": echo}})),
        (500, json!({"error": {"message": echo}})),
        (
            400,
            json!({"error": {"message": echo, "code": "context_length_exceeded"}}),
        ),
        (
            400,
            json!({"error": {"message": echo, "code": "content_policy_violation"}}),
        ),
        (404, json!({"error": {"message": echo}})),
        (200, completion(&echo)),
        (200, json!({"unexpected": echo})),
    ];
    for (status, body) in cases {
        let server = answering(status, body).await;
        let cfg = OpenAiConfig {
            response_format: ResponseFormat::JsonObject,
            headers: BTreeMap::from([("api-key".to_string(), key())]),
            ..config(&server)
        };
        let ep = OpenAiEndpoint::new("gpt", &cfg).unwrap();
        let err = ep.call(&request(json!({"prompt": "x"}))).await.unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains(KEY), "status {status}: {text}");
        if status == 401 || status == 403 {
            assert_eq!(err.kind, ErrorKind::Permanent);
            assert!(
                text.contains("check the key configured for endpoint `gpt`"),
                "{text}"
            );
        }
        for shown in [format!("{cfg:?}"), format!("{ep:?}")] {
            assert!(!shown.contains(KEY) && !shown.contains("SECRET"), "{shown}");
        }
    }
    // A refused connection (nothing listens on port 9) does not show it either.
    let cfg = OpenAiConfig {
        base_url: "http://127.0.0.1:9/v1".into(),
        ..OpenAiConfig::for_model("m")
    };
    let cfg = OpenAiConfig {
        api_key: Some(key()),
        ..cfg
    };
    let err = OpenAiEndpoint::new("gpt", &cfg)
        .unwrap()
        .call(&request(json!({"prompt": "x"})))
        .await
        .unwrap_err();
    assert_eq!(err.code.as_deref(), Some("connect"));
    assert!(!format!("{err:?}").contains(KEY));
}

#[tokio::test]
async fn no_key_for_openai_itself_is_unhealthy_but_a_local_server_needs_none() {
    let ep = OpenAiEndpoint::new(
        "gpt",
        &OpenAiConfig {
            api_key: Some(Secret::new("")),
            ..OpenAiConfig::for_model("gpt-4o")
        },
    )
    .unwrap();
    let health = ep.usable().unwrap_err();
    assert_eq!(health.code.as_deref(), Some("auth"));
    assert!(health.message.contains("no API key configured"), "{health}");
    let err = ep.call(&request(json!({"prompt": "x"}))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);

    let server = answering(200, completion("hi")).await;
    let local = OpenAiEndpoint::new(
        "local",
        &OpenAiConfig {
            api_key: None,
            ..config(&server)
        },
    )
    .unwrap();
    assert!(local.usable().is_ok());
    local.call(&request(json!({"prompt": "x"}))).await.unwrap();
    let sent = &server.received_requests().await.unwrap()[0];
    assert!(!sent.headers.contains_key("authorization"));
}

#[tokio::test]
async fn azure_style_base_url_keeps_its_query_and_sends_extra_headers() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/openai/deployments/gpt4/chat/completions"))
        .and(query_param("api-version", "2024-06-01"))
        .and(header("api-key", "azure-key-123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("ok")))
        .expect(1)
        .mount(&server)
        .await;
    let ep = OpenAiEndpoint::new(
        "azure",
        &OpenAiConfig {
            base_url: format!(
                "{}/openai/deployments/gpt4?api-version=2024-06-01",
                server.uri()
            ),
            api_key: None,
            headers: BTreeMap::from([("api-key".into(), Secret::new("azure-key-123"))]),
            ..OpenAiConfig::for_model("gpt-4")
        },
    )
    .unwrap();
    assert_eq!(
        ep.call(&request(json!({"prompt": "x"})))
            .await
            .unwrap()
            .output,
        json!("ok")
    );
}

#[test]
fn config_is_strict_and_validation_names_every_bad_field() {
    let err = serde_yaml::from_str::<OpenAiConfig>("{model: m, temprature: 1}").unwrap_err();
    assert!(err.to_string().contains("temprature"), "{err}");
    let cfg: OpenAiConfig = serde_yaml::from_str(
        "{model: '', base_url: 'ftp://x', temperature: 3, max_tokens: 0, timeout: 0s, \
          max_concurrency: 0, prompt: '{{ oops', response_format: json_schema, schema: [1], \
          price_per_1k: {input: -1}, circuit: {failure_threshold: 0}, \
          headers: {'bad header': x}}",
    )
    .unwrap();
    let fields: Vec<String> = cfg.validate().into_iter().map(|(f, _)| f).collect();
    for expected in [
        "base_url",
        "model",
        "temperature",
        "max_tokens",
        "schema",
        "timeout",
        "max_concurrency",
        "price_per_1k.input",
        "circuit.failure_threshold",
        "headers.bad header",
        "prompt",
    ] {
        assert!(
            fields.iter().any(|f| f == expected),
            "{expected} in {fields:?}"
        );
    }
    let good: OpenAiConfig = serde_yaml::from_str(
        "{model: gpt-4o-mini, api_key: sk-x, response_format: json_object, timeout: 20s, \
          max_retries: 1, circuit: {open_for: 1m}}",
    )
    .unwrap();
    assert!(good.validate().is_empty(), "{:?}", good.validate());
    assert_eq!(good.policy().retry.max_retries, 1);
    assert_eq!(good.policy().circuit.open_for, Duration::from_secs(60));
    assert_eq!(good.policy().circuit.failure_threshold, 5);
}

#[tokio::test]
async fn behind_a_litellm_proxy_a_content_policy_400_raises_the_configured_bpmn_error() {
    // LiteLLM's shape: the status as `code`, a generic `type`, the meaning in the message.
    let server = answering(
        400,
        json!({"error": {"message": "litellm.ContentPolicyViolationError: litellm.ContentPolicyViolationError: AzureException - The response was filtered due to the prompt triggering Azure OpenAI's content management policy.", "type": null, "param": null, "code": "400"}}),
    )
    .await;
    let ep = OpenAiEndpoint::new(
        "gpt",
        &OpenAiConfig {
            refusal_error_code: "TICKET_REFUSED".into(),
            ..config(&server)
        },
    )
    .unwrap();
    let err = ep.call(&request(json!({"prompt": "x"}))).await.unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::Business {
            error_code: "TICKET_REFUSED".into()
        },
        "{err}"
    );
    assert_eq!(err.code.as_deref(), Some("content_policy"));
}

#[tokio::test]
async fn behind_a_litellm_proxy_the_relayed_retry_after_is_the_wait() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("llm_provider-retry-after", "2")
                .set_body_json(json!({"error": {"message": "litellm.RateLimitError: AnthropicException - rate_limit_error", "type": "None", "param": "None", "code": "429"}})),
        )
        .mount(&server)
        .await;
    let ep = OpenAiEndpoint::new("gpt", &config(&server)).unwrap();
    let err = ep.call(&request(json!({"prompt": "x"}))).await.unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::Transient {
            retry_after: Some(Duration::from_secs(2))
        }
    );
    assert_eq!(err.code.as_deref(), Some("rate_limited"));
}

#[tokio::test]
async fn the_probe_lists_models_with_the_key_and_a_refused_key_fails_it() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": []})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}),
        ))
        .mount(&server)
        .await;
    let ep = OpenAiEndpoint::new("gpt", &config(&server)).unwrap();
    ep.probe().await.unwrap();

    let wrong = OpenAiEndpoint::new(
        "gpt",
        &OpenAiConfig {
            api_key: Some(Secret::new("sk-wrong-key-0000")),
            ..config(&server)
        },
    )
    .unwrap();
    let err = wrong.probe().await.unwrap_err();
    assert_eq!(err.code.as_deref(), Some("auth"), "{err}");
    assert!(!err.message.contains("sk-wrong"), "{err}");

    // A server that lists no models (404) says nothing about its health: the probe passes.
    let bare = answering(200, completion("hi")).await;
    OpenAiEndpoint::new("local", &config(&bare))
        .unwrap()
        .probe()
        .await
        .unwrap();
}
