//! Fakes of AI servers shared by the end-to-end tests (wiremock): an OpenAI chat-completion
//! answer, an Ollama that classifies, and what a fake was asked.

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// An OpenAI chat-completion answer whose message is `content` (50 + 10 tokens).
pub fn completion(content: &str) -> Value {
    json!({
        "id": "chatcmpl-e2e", "object": "chat.completion", "model": "gpt-test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60},
    })
}

/// An Ollama fake that has `llama3` and classifies every ticket as billing/high.
pub async fn ollama_classifying() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/tags"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"models": [{"name": "llama3:latest", "model": "llama3:latest"}]}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/chat"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "model": "llama3:latest",
            "message": {"role": "assistant", "content": "{\"category\": \"billing\", \"urgency\": \"high\"}"},
            "done": true, "prompt_eval_count": 40, "eval_count": 12,
        })))
        .mount(&server)
        .await;
    server
}

/// The requests `server` received at path `at`.
pub async fn requests_to(server: &MockServer, at: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == at)
        .collect()
}
