//! Tests of the shared LLM logic: prompts, reply parsing, error mapping, redaction.

use super::*;
use crate::endpoints::ErrorKind;
use reqwest::StatusCode;
use serde_json::json;

const KEY: &str = "sk-test-SECRET-0123456789";

fn site(provider: Provider) -> Site {
    // As reading the config does for the endpoint's `api_key`.
    crate::config::secret::register(KEY);
    Site {
        endpoint: "gpt".into(),
        provider,
        server: "http://127.0.0.1:9".into(),
        model: "llama3".into(),
        refusal_code: "CONTENT_REFUSED".into(),
    }
}

fn prompts(system: Option<&str>, prompt: Option<&str>, history: Option<&str>) -> Prompts {
    Prompts::compile(
        "endpoints.gpt.",
        PromptSources {
            system,
            prompt,
            history_variable: history,
        },
    )
    .unwrap()
}

fn request(vars: Value) -> EndpointRequest {
    EndpointRequest {
        variables: vars.as_object().cloned().unwrap_or_default(),
        business_key: Some("T-7".into()),
        ..Default::default()
    }
}

#[test]
fn messages_are_system_history_prompt_and_feedback_in_order() {
    let p = prompts(
        Some("You triage tickets for {{ business_key }}."),
        Some("Classify: {{ text }}"),
        Some("history"),
    );
    let mut req = request(json!({
        "text": "my invoice is wrong",
        "history": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
    }));
    req.feedback = Some("schema: /category: \"x\" is not one of [...]".into());
    let messages = p.messages(&req, Some("Reply in JSON.")).unwrap();
    let roles: Vec<&str> = messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user", "user"]);
    assert_eq!(
        messages[0].content,
        "You triage tickets for T-7.\n\nReply in JSON."
    );
    assert_eq!(messages[3].content, "Classify: my invoice is wrong");
    assert!(messages[4].content.contains("/category"), "{messages:?}");
}

#[test]
fn the_pde_prompt_property_overrides_the_configured_prompt() {
    let p = prompts(None, Some("configured {{ text }}"), None);
    let mut req = request(json!({"text": "abc"}));
    req.properties.insert(
        PROMPT_PROPERTY.into(),
        "from BPMN: {{ text | upper }}".into(),
    );
    let messages = p.messages(&req, None).unwrap();
    assert_eq!(messages, vec![Message::new("user", "from BPMN: ABC")]);
    // Cached: the same source again renders the same, over other variables.
    let mut req2 = request(json!({"text": "xyz"}));
    req2.properties = req.properties.clone();
    assert_eq!(
        p.messages(&req2, None).unwrap()[0].content,
        "from BPMN: XYZ"
    );
}

#[test]
fn the_default_prompt_is_the_prompt_variable_and_its_absence_is_a_named_error() {
    let p = prompts(None, None, None);
    let ok = p
        .messages(&request(json!({"prompt": "Say hi"})), None)
        .unwrap();
    assert_eq!(ok, vec![Message::new("user", "Say hi")]);
    let err = p.messages(&request(json!({})), None).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert_eq!(err.code.as_deref(), Some("template"));
    assert!(err.message.contains("`prompt`"), "{err}");
}

#[test]
fn a_bad_history_names_the_variable_and_item() {
    let p = prompts(None, Some("x"), Some("history"));
    let err = p
        .messages(
            &request(json!({"history": [{"role": "robot", "content": "x"}]})),
            None,
        )
        .unwrap_err();
    assert_eq!(err.code.as_deref(), Some("input_invalid"));
    assert!(err.message.contains("`history`") && err.message.contains("item 0"));
    let err = p
        .messages(&request(json!({"history": "not a list"})), None)
        .unwrap_err();
    assert!(err.message.contains("list"), "{err}");
    // Absent history is simply no history.
    assert_eq!(p.messages(&request(json!({})), None).unwrap().len(), 1);
}

#[test]
fn a_template_that_does_not_compile_is_reported_at_its_path() {
    let problems = Prompts::compile(
        "endpoints.gpt.",
        PromptSources {
            system: Some("{{ oops"),
            prompt: Some("fine"),
            history_variable: Some(" "),
        },
    )
    .unwrap_err();
    let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["system", "history_variable"]);
    assert!(
        problems[0].1.contains("endpoints.gpt.system"),
        "{problems:?}"
    );
}

#[test]
fn json_replies_are_parsed_with_or_without_fences() {
    for text in [
        r#"{"category": "billing"}"#,
        "```json\n{\"category\": \"billing\"}\n```",
        "Here you go:\n```\n{\"category\": \"billing\"}\n```\nAnything else?",
        "  \n{\"category\": \"billing\"}\n ",
    ] {
        assert_eq!(
            parse_reply(text, true).unwrap(),
            json!({"category": "billing"}),
            "{text:?}"
        );
    }
    assert_eq!(
        parse_reply("plain text", false).unwrap(),
        json!("plain text")
    );
}

#[test]
fn a_malformed_json_reply_is_invalid_output_with_a_message_for_the_model() {
    let err = parse_reply("Sure! {category: billing", true).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidOutput);
    assert_eq!(err.code.as_deref(), Some("invalid_json"));
    assert!(err.message.contains("not valid JSON"), "{err}");
    assert_eq!(err.details.as_deref(), Some("Sure! {category: billing"));
}

fn mapped(provider: Provider, status: u16, body: Value) -> EndpointError {
    status_error(
        &site(provider),
        StatusCode::from_u16(status).unwrap(),
        Some(Duration::from_secs(7)),
        body.to_string().as_bytes(),
    )
}

#[test]
fn auth_failures_are_permanent_say_to_check_the_key_and_never_show_it() {
    for status in [401, 403] {
        let err = mapped(
            Provider::OpenAi,
            status,
            json!({"error": {"message": format!("Incorrect API key provided: {KEY}"), "code": "invalid_api_key"}}),
        );
        assert_eq!(err.kind, ErrorKind::Permanent);
        assert_eq!(err.code.as_deref(), Some("auth"));
        assert!(
            err.message
                .contains("check the key configured for endpoint `gpt`"),
            "{err}"
        );
        assert!(!format!("{err:?}").contains(KEY));
        assert!(!format!("{err:?}").contains("SECRET"));
    }
}

#[test]
fn rate_limits_and_server_errors_are_transient() {
    let err = mapped(
        Provider::OpenAi,
        429,
        json!({"error": {"message": "slow down"}}),
    );
    assert_eq!(
        err.kind,
        ErrorKind::Transient {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert_eq!(err.code.as_deref(), Some("rate_limited"));
    let err = mapped(Provider::OpenAi, 500, json!({"error": {"message": "oops"}}));
    assert_eq!(
        err.kind,
        ErrorKind::Transient {
            retry_after: Some(Duration::from_secs(7))
        },
        "Retry-After is honoured on any 5xx"
    );
    assert_eq!(err.code.as_deref(), Some("http_500"));
    assert!(err.message.contains("oops"), "{err}");
    let err = mapped(Provider::Ollama, 503, json!({"error": "loading"}));
    assert_eq!(
        err.kind,
        ErrorKind::Transient {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    let quota = mapped(
        Provider::OpenAi,
        429,
        json!({"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}}),
    );
    assert_eq!(quota.kind, ErrorKind::Fallback);
    assert_eq!(quota.code.as_deref(), Some("quota_exceeded"));
}

#[test]
fn context_length_falls_back_for_both_dialects() {
    let openai = mapped(
        Provider::OpenAi,
        400,
        json!({"error": {"message": "This model's maximum context length is 8192 tokens", "code": "context_length_exceeded"}}),
    );
    let ollama = mapped(
        Provider::Ollama,
        400,
        json!({"error": "the input length exceeds the context length"}),
    );
    for err in [openai, ollama] {
        assert_eq!(err.kind, ErrorKind::Fallback, "{err}");
        assert_eq!(err.code.as_deref(), Some("context_length"));
    }
}

#[test]
fn content_policy_raises_the_configured_bpmn_error() {
    for code in ["content_policy_violation", "content_filter"] {
        let err = mapped(
            Provider::OpenAi,
            400,
            json!({"error": {"message": "rejected", "code": code}}),
        );
        assert_eq!(
            err.kind,
            ErrorKind::Business {
                error_code: "CONTENT_REFUSED".into()
            }
        );
        assert_eq!(err.code.as_deref(), Some("content_policy"));
    }
}

#[test]
fn a_missing_ollama_model_says_how_to_pull_it() {
    let err = mapped(
        Provider::Ollama,
        404,
        json!({"error": "model \"llama3\" not found, try pulling it first"}),
    );
    assert_eq!(err.kind, ErrorKind::Fallback);
    assert_eq!(
        err.message,
        "model llama3 is not available on http://127.0.0.1:9; run `ollama pull llama3`"
    );
}

#[test]
fn other_client_errors_are_permanent_and_echoed_keys_are_redacted() {
    let err = mapped(
        Provider::OpenAi,
        400,
        json!({"error": {"message": format!("bad header {KEY}"), "code": "invalid_request_error"}}),
    );
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert_eq!(err.code.as_deref(), Some("http_400"));
    let text = format!("{err:?} {err}");
    assert!(!text.contains(KEY), "{text}");
    assert!(text.contains("bad header ***"), "{text}");
}

#[test]
fn cost_is_priced_per_thousand_tokens() {
    let p = Pricing {
        input: 0.5,
        output: 1.5,
    };
    let u = usage(Some("m".into()), 2000, 1000, Some(&p));
    assert_eq!(u.cost, Some(2.5));
    assert_eq!(usage(None, 1, 1, None).cost, None);
    let bad = Pricing {
        input: -1.0,
        output: 0.0,
    };
    assert_eq!(bad.validate()[0].0, "price_per_1k.input");
}

#[test]
fn urls_are_checked_shown_without_credentials_and_joined() {
    assert!(check_base_url("ftp://x").is_err());
    assert!(check_base_url("not a url").is_err());
    let url = check_base_url("https://user:pw@api.example.com/v1/?k=1").unwrap();
    assert_eq!(display_url(&url), "https://api.example.com/v1");
    assert_eq!(
        join(&url, "chat/completions").path(),
        "/v1/chat/completions"
    );
}

/// One recorded error answer and what procos must make of it (see `fixtures/README.md`).
#[derive(Debug, Deserialize)]
struct Fixture {
    name: String,
    status: u16,
    #[serde(default)]
    headers: HashMap<String, String>,
    body: Value,
    expect: Expected,
}

#[derive(Debug, Deserialize)]
struct Expected {
    kind: String,
    code: String,
    #[serde(default)]
    retry_after_ms: Option<u64>,
    #[serde(default)]
    says: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FixtureFile {
    provider: String,
    cases: Vec<Fixture>,
}

/// Serves `case` from a local fake server and maps the answer as an endpoint call would.
async fn answer_of(provider: Provider, case: &Fixture) -> EndpointError {
    use wiremock::{Mock, MockServer, ResponseTemplate, matchers::any};
    let server = MockServer::start().await;
    let body = match &case.body {
        Value::String(text) => text.clone().into_bytes(),
        json => json.to_string().into_bytes(),
    };
    let mut template = ResponseTemplate::new(case.status).set_body_raw(body, "application/json");
    for (name, value) in &case.headers {
        template = template.insert_header(name.as_str(), value.as_str());
    }
    Mock::given(any())
        .respond_with(template)
        .mount(&server)
        .await;
    let builder = reqwest::Client::new().post(server.uri());
    let cancel = tokio_util::sync::CancellationToken::new();
    exchange(&site(provider), builder, &cancel)
        .await
        .expect_err("an error answer")
}

fn kind_name(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Transient { .. } => "transient",
        ErrorKind::Permanent => "permanent",
        ErrorKind::Fallback => "fallback",
        ErrorKind::InvalidOutput => "invalid_output",
        ErrorKind::Business { .. } => "business",
        ErrorKind::Cancelled => "cancelled",
    }
}

#[tokio::test]
async fn recorded_error_answers_of_servers_and_gateways_get_their_class_and_kind() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/endpoints/llm/fixtures");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in &files {
        let file: FixtureFile =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let provider = match file.provider.as_str() {
            "openai" => Provider::OpenAi,
            "ollama" => Provider::Ollama,
            other => panic!("{}: unknown provider {other}", path.display()),
        };
        let source = path.file_name().unwrap().to_string_lossy();
        for case in &file.cases {
            checked += 1;
            let err = answer_of(provider, case).await;
            let got_wait = match err.kind {
                ErrorKind::Transient { retry_after } => retry_after.map(|d| d.as_millis() as u64),
                _ => None,
            };
            let expect = &case.expect;
            let wrong = kind_name(&err.kind) != expect.kind
                || err.code.as_deref() != Some(expect.code.as_str())
                || (expect.kind == "transient" && got_wait != expect.retry_after_ms)
                || expect
                    .says
                    .as_ref()
                    .is_some_and(|s| !err.message.contains(s))
                || (expect.kind == "business"
                    && err.kind
                        != ErrorKind::Business {
                            error_code: "CONTENT_REFUSED".into(),
                        });
            if wrong {
                failures.push(format!(
                    "{source} / {}: expected {} {} wait {:?} says {:?}; got {} {:?} wait {got_wait:?}: {}",
                    case.name,
                    expect.kind,
                    expect.code,
                    expect.retry_after_ms,
                    expect.says,
                    kind_name(&err.kind),
                    err.code,
                    err.message
                ));
            }
        }
    }
    assert!(
        files.len() >= 6 && checked >= 40,
        "fixtures missing: {files:?}"
    );
    assert!(
        failures.is_empty(),
        "{} of {checked} answers mapped wrongly:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn a_proxy_refusing_the_key_with_a_400_says_to_check_the_key_and_the_proxy() {
    let err = mapped(
        Provider::OpenAi,
        400,
        json!({"error": {"message": format!("No connected db. key={KEY}"), "type": "no_db_connection", "param": "None", "code": "400"}}),
    );
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert_eq!(err.code.as_deref(), Some("auth"));
    assert!(
        err.message
            .contains("check the key configured for endpoint `gpt`")
            && err.message.contains("master key"),
        "{err}"
    );
    assert!(!format!("{err:?}").contains("SECRET"), "{err:?}");
    let unnamed = mapped(
        Provider::OpenAi,
        529,
        json!({"error": {"message": "Overloaded", "code": "529"}}),
    );
    assert!(
        unnamed.message.contains("answered 529: Overloaded"),
        "{unnamed}"
    );
}
