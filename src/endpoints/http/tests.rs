//! Tests of the `http` endpoint against a wiremock server.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::config::default_method;
use super::wire::parse_retry_after;
use super::*;
use crate::config::Secret;
use crate::endpoints::ErrorKind;
use wiremock::matchers::{any, body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn endpoint(config: HttpConfig) -> HttpEndpoint {
    HttpEndpoint::new("crm", &config).unwrap()
}

/// An endpoint whose URLs from variables may reach the local wiremock server (127.0.0.1), as
/// an operator opts in with `allowed_hosts`.
fn local(config: HttpConfig) -> HttpEndpoint {
    endpoint(HttpConfig {
        allowed_hosts: vec!["127.0.0.1".into()],
        ..config
    })
}

fn request(vars: Value) -> EndpointRequest {
    let Value::Object(variables) = vars else {
        panic!("variables must be an object")
    };
    EndpointRequest {
        task_id: "t-1".into(),
        business_key: Some("order-42".into()),
        variables,
        ..Default::default()
    }
}

#[tokio::test]
async fn sends_the_rendered_request_and_returns_the_json_response() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/customers/c-7/orders"))
        .and(header("x-api-key", "key-acme"))
        .and(body_json(
            json!({"amount": 12.5, "items": ["a"], "note": "for order-42"}),
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 99})))
        .expect(1)
        .mount(&server)
        .await;
    let ep = local(HttpConfig {
        method: "post".into(),
        url: "{{ base }}/customers/{{ customer_id }}/orders".into(),
        headers: BTreeMap::from([("X-Api-Key".into(), Secret::new("key-{{ tenant }}"))]),
        body: Some(json!({"amount": "{{ amount }}", "items": "{{ items }}",
                          "note": "for {{ business_key }}"})),
        ..HttpConfig::default()
    });
    let req = request(
        json!({"base": server.uri(), "customer_id": "c-7", "tenant": "acme",
                             "amount": 12.5, "items": ["a"]}),
    );
    let reply = ep.call(&req).await.unwrap();
    assert_eq!(
        reply.output,
        json!({"status": 201, "headers": {"content-type": "application/json"},
               "body": {"id": 99}})
    );
}

#[tokio::test]
async fn defaults_take_method_url_and_body_from_variables() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/x"))
        .and(body_json(json!({"k": [1, 2]})))
        .respond_with(ResponseTemplate::new(200).set_body_string("done"))
        .expect(1)
        .mount(&server)
        .await;
    let ep = local(HttpConfig::default());
    let req = request(
        json!({"url": format!("{}/x", server.uri()), "method": "PUT",
                             "body": {"k": [1, 2]}}),
    );
    let reply = ep.call(&req).await.unwrap();
    assert_eq!(reply.output["body"], json!("done"));

    // Without a `method` variable it is a GET, which never carries the `body` variable.
    let req = request(json!({"url": format!("{}/y", server.uri()), "body": {"k": 1}}));
    let err = ep.call(&req).await.unwrap_err();
    assert_eq!(err.code.as_deref(), Some("http_404"));
    let received = server.received_requests().await.unwrap();
    let last = received.last().unwrap();
    assert_eq!((last.method.as_str(), last.body.len()), ("GET", 0));
}

#[tokio::test]
async fn not_found_is_permanent_with_the_body_in_details() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(404).set_body_string("no such customer"))
        .mount(&server)
        .await;
    let ep = local(HttpConfig::default());
    let err = ep
        .call(&request(json!({"url": server.uri()})))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert_eq!(err.code.as_deref(), Some("http_404"));
    assert_eq!(err.details.as_deref(), Some("no such customer"));
}

#[tokio::test]
async fn unavailable_is_transient_and_honours_retry_after() {
    let server = MockServer::start().await;
    Mock::given(path("/busy"))
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "7"))
        .mount(&server)
        .await;
    Mock::given(path("/broken"))
        .respond_with(ResponseTemplate::new(500).insert_header("Retry-After", "7"))
        .mount(&server)
        .await;
    let ep = local(HttpConfig::default());
    let busy = ep
        .call(&request(json!({"url": format!("{}/busy", server.uri())})))
        .await
        .unwrap_err();
    assert_eq!(
        busy.kind,
        ErrorKind::Transient {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert_eq!(busy.code.as_deref(), Some("http_503"));
    let broken = ep
        .call(&request(json!({"url": format!("{}/broken", server.uri())})))
        .await
        .unwrap_err();
    assert_eq!(broken.kind, ErrorKind::Transient { retry_after: None });
    assert_eq!(broken.code.as_deref(), Some("http_500"));
}

#[tokio::test]
async fn a_slow_server_is_a_transient_timeout() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let ep = local(HttpConfig {
        timeout: Duration::from_millis(200),
        ..HttpConfig::default()
    });
    let err = ep
        .call(&request(json!({"url": server.uri()})))
        .await
        .unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Transient { .. }), "{err:?}");
    assert_eq!(err.code.as_deref(), Some("timeout"));
    assert!(
        err.message
            .starts_with("GET 127.0.0.1: no answer within 200ms"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn a_host_outside_allowed_hosts_is_never_contacted() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let ep = endpoint(HttpConfig {
        allowed_hosts: vec!["api.example.com".into(), "*.internal.example".into()],
        ..HttpConfig::default()
    });
    let err = ep
        .call(&request(json!({"url": server.uri()})))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert_eq!(err.code.as_deref(), Some("host_not_allowed"));
    assert!(err.message.contains("`127.0.0.1`"), "{}", err.message);
}

#[tokio::test]
async fn a_redirect_to_a_host_outside_allowed_hosts_is_not_followed() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(302).insert_header("Location", "http://evil.example/"))
        .mount(&server)
        .await;
    let ep = endpoint(HttpConfig {
        allowed_hosts: vec!["127.0.0.1".into()],
        ..HttpConfig::default()
    });
    let err = ep
        .call(&request(json!({"url": server.uri()})))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert_eq!(err.code.as_deref(), Some("redirect"));
    assert!(err.message.contains("evil.example"), "{}", err.message);
}

#[tokio::test]
async fn cancellation_abandons_the_call() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .mount(&server)
        .await;
    let ep = local(HttpConfig::default());
    let req = request(json!({"url": server.uri()}));
    let cancel = req.cancel.clone();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.cancel();
    });
    let err = ep.call(&req).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Cancelled);
    canceller.await.unwrap();
}

#[tokio::test]
async fn a_bad_url_or_undefined_variable_is_permanent_and_named() {
    let ep = endpoint(HttpConfig::default());
    let err = ep
        .call(&request(json!({"url": "not a url"})))
        .await
        .unwrap_err();
    assert_eq!(err.code.as_deref(), Some("invalid_url"));
    assert!(err.message.contains("`not a url`"), "{}", err.message);
    let err = ep.call(&request(json!({}))).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert_eq!(err.code.as_deref(), Some("template"));
    assert!(
        err.message.contains("`url` is undefined"),
        "{}",
        err.message
    );
}

#[test]
fn validate_lists_every_problem_with_its_path() {
    let config = HttpConfig {
        method: "FETCH IT".into(),
        url: "{{ url".into(),
        headers: BTreeMap::from([("Bad Header".into(), Secret::new("x"))]),
        body: Some(json!({"a": "{% if %}"})),
        timeout: Duration::ZERO,
        allowed_hosts: vec!["https://example.com/".into()],
        max_concurrency: Some(0),
        ..HttpConfig::default()
    };
    let paths: Vec<String> = config.validate().into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        [
            "method",
            "url",
            "headers.Bad Header",
            "body",
            "timeout",
            "max_concurrency",
            "allowed_hosts[0]"
        ]
    );
    assert!(HttpConfig::default().validate().is_empty());
}

#[test]
fn parses_from_yaml_with_defaults_and_rejects_unknown_keys() {
    let yaml = "type: http\nurl: 'https://crm.example.com/{{ id }}'\ntimeout: 5s\n\
                headers: {Authorization: 'Bearer t'}\nallowed_hosts: ['crm.example.com']\n";
    let config: crate::endpoints::EndpointConfig = serde_yaml::from_str(yaml).unwrap();
    let crate::endpoints::EndpointConfig::Http(http) = &config else {
        panic!("not http: {config:?}")
    };
    assert_eq!(http.timeout, Duration::from_secs(5));
    assert_eq!(http.method, default_method());
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let typo = "type: http\nulr: 'https://x'\n";
    let err = serde_yaml::from_str::<crate::endpoints::EndpointConfig>(typo).unwrap_err();
    assert!(err.to_string().contains("ulr"), "{err}");
    let bad: crate::endpoints::EndpointConfig =
        serde_yaml::from_str("type: http\ntimeout: 0s\n").unwrap();
    assert_eq!(bad.validate()[0].0, "timeout");
}

#[test]
fn debug_output_hides_secrets_in_the_url_template() {
    // As interpolation registers every `${VAR}` value.
    crate::config::secret::register("dbg-url-key-8642");
    let config = HttpConfig {
        url: "{{ base }}/v1?api_key=dbg-url-key-8642".into(),
        ..HttpConfig::default()
    };
    let text = format!("{config:?}");
    assert!(!text.contains("dbg-url-key-8642"), "{text}");
    assert!(text.contains("api_key=***"), "{text}");
}

#[test]
fn debug_output_hides_header_values() {
    let config = HttpConfig {
        headers: BTreeMap::from([("Authorization".into(), Secret::new("Bearer s3cret"))]),
        ..HttpConfig::default()
    };
    assert!(!format!("{config:?}").contains("s3cret"));
    assert!(!format!("{:?}", endpoint(config)).contains("s3cret"));
}

#[test]
fn retry_after_accepts_seconds_and_http_dates() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 1994-11-06 08:49:37 UTC
    assert_eq!(
        parse_retry_after("120", now),
        Some(Duration::from_secs(120))
    );
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now),
        Some(Duration::from_secs(60))
    );
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
        Some(Duration::ZERO)
    );
    assert_eq!(parse_retry_after("soon", now), None);
}

#[tokio::test]
async fn a_refused_connection_is_transient_connect() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let ep = local(HttpConfig::default());
    let err = ep
        .call(&request(
            json!({"url": format!("http://127.0.0.1:{port}/x?key=secret")}),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Transient { retry_after: None });
    assert_eq!(err.code.as_deref(), Some("connect"));
    // Named by host; the URL (whose query may hold a key) is left out. The message says what
    // happened first, not reqwest's "error sending request".
    assert!(
        err.message
            .starts_with("GET 127.0.0.1: connection failed: "),
        "{}",
        err.message
    );
    assert!(err.message.contains("refused"), "{}", err.message);
    assert!(!err.message.contains("secret"), "{}", err.message);
}

// ---- issue 8: secrets, SSRF, input handling -------------------------------------------------

/// The key of the defect-2 endpoint: it must never reach a message, details or log line.
const KEY: &str = "k3y-0f-the-d4y-5678";

fn keyed_endpoint(allowed: &[&str]) -> HttpEndpoint {
    endpoint(HttpConfig {
        url: format!("{{{{ base }}}}/v1/items?api_key={KEY}"),
        headers: BTreeMap::from([("X-Api-Key".into(), Secret::new(KEY))]),
        allowed_hosts: allowed.iter().map(|h| h.to_string()).collect(),
        ..HttpConfig::default()
    })
}

#[tokio::test]
async fn a_base_that_breaks_the_url_never_puts_the_key_in_the_error() {
    let ep = keyed_endpoint(&[]);
    for base in [
        "ftp://files.example",
        "http://[bad",
        "",
        "file:///etc/passwd#",
    ] {
        let err = ep
            .call(&request(json!({ "base": base })))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Permanent, "{base}: {err:?}");
        let text = format!("{} {:?}", err.message, err.details);
        assert!(!text.contains(KEY), "{base}: {text}");
        assert!(err.message.contains("`base`"), "{base}: {}", err.message);
    }
}

#[tokio::test]
async fn a_redirect_to_another_host_drops_every_configured_header() {
    let target = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_string("landed"))
        .mount(&target)
        .await;
    let origin = MockServer::start().await;
    // Another host: `localhost` instead of `127.0.0.1`, same machine.
    let elsewhere = format!("http://localhost:{}/landing", target.address().port());
    Mock::given(any())
        .respond_with(ResponseTemplate::new(302).insert_header("Location", elsewhere.as_str()))
        .mount(&origin)
        .await;
    let ep = keyed_endpoint(&["127.0.0.1", "localhost"]);
    let reply = ep
        .call(&request(json!({ "base": origin.uri() })))
        .await
        .unwrap();
    assert_eq!(reply.output["body"], json!("landed"));
    let got = target.received_requests().await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(
        got[0].headers.get("x-api-key").is_none(),
        "{:?}",
        got[0].headers
    );
    // The first host got it.
    let first = origin.received_requests().await.unwrap();
    assert_eq!(first[0].headers.get("x-api-key").unwrap(), KEY);
}

#[tokio::test]
async fn a_same_host_redirect_keeps_the_headers() {
    let server = MockServer::start().await;
    Mock::given(path("/old"))
        .respond_with(ResponseTemplate::new(301).insert_header("Location", "/new"))
        .mount(&server)
        .await;
    Mock::given(path("/new"))
        .and(header("x-api-key", KEY))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let ep = endpoint(HttpConfig {
        url: "{{ base }}/old".into(),
        headers: BTreeMap::from([("X-Api-Key".into(), Secret::new(KEY))]),
        allowed_hosts: vec!["127.0.0.1".into()],
        ..HttpConfig::default()
    });
    let reply = ep.call(&request(json!({ "base": server.uri() }))).await;
    assert_eq!(reply.unwrap().output["status"], json!(200));
}

#[tokio::test]
async fn a_url_from_a_variable_may_not_reach_loopback_unless_allowed() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let ep = endpoint(HttpConfig::default());
    let err = ep
        .call(&request(
            json!({ "url": format!("{}/admin", server.uri()) }),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert_eq!(err.code.as_deref(), Some("url_forbidden"), "{err:?}");
    assert!(err.message.contains("`url`"), "{}", err.message);
    assert!(err.message.contains("127.0.0.1"), "{}", err.message);
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused_too() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let ep = endpoint(HttpConfig::default());
    let url = format!("http://localhost:{}/", server.address().port());
    let err = ep.call(&request(json!({ "url": url }))).await.unwrap_err();
    assert_eq!(err.code.as_deref(), Some("url_forbidden"), "{err:?}");
    assert!(err.message.contains("localhost"), "{}", err.message);
}

#[tokio::test]
async fn metadata_link_local_private_and_unspecified_addresses_are_refused() {
    let ep = endpoint(HttpConfig {
        timeout: Duration::from_millis(300),
        ..HttpConfig::default()
    });
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://[fc00::1]/",
        "http://0.0.0.0:8080/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::1]/",
    ] {
        let err = ep.call(&request(json!({ "url": url }))).await.unwrap_err();
        assert_eq!(err.code.as_deref(), Some("url_forbidden"), "{url}: {err:?}");
        assert_eq!(err.kind, ErrorKind::Permanent, "{url}");
    }
}

#[tokio::test]
async fn a_redirect_from_a_fixed_host_to_loopback_is_refused() {
    // The config fixes the host (allowed explicitly); the server's redirect is not trusted.
    let target = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&target)
        .await;
    let origin = MockServer::start().await;
    let elsewhere = format!("http://localhost:{}/", target.address().port());
    Mock::given(any())
        .respond_with(ResponseTemplate::new(307).insert_header("Location", elsewhere.as_str()))
        .mount(&origin)
        .await;
    let ep = endpoint(HttpConfig {
        url: format!("{}/start", origin.uri()),
        ..HttpConfig::default()
    });
    let err = ep.call(&request(json!({}))).await.unwrap_err();
    assert_eq!(err.code.as_deref(), Some("url_forbidden"), "{err:?}");
    assert!(
        err.message
            .contains("a redirect from `127.0.0.1` points at a refused destination: host `localhost` resolves to"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn query_values_from_variables_are_percent_encoded() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let ep = endpoint(HttpConfig {
        url: format!("{}/search?x={{{{ x }}}}&page=1", server.uri()),
        ..HttpConfig::default()
    });
    ep.call(&request(json!({ "x": "1&admin=true #top" })))
        .await
        .unwrap();
    let got = server.received_requests().await.unwrap();
    let pairs: Vec<(String, String)> = got[0].url.query_pairs().into_owned().collect();
    assert_eq!(
        pairs,
        [
            ("x".to_string(), "1&admin=true #top".to_string()),
            ("page".to_string(), "1".to_string())
        ]
    );
}

#[tokio::test]
async fn a_bad_method_names_the_variable_and_the_field() {
    let ep = endpoint(HttpConfig {
        method: "{{ m }}".into(),
        url: "https://api.example.com/x".into(),
        ..HttpConfig::default()
    });
    let err = ep.call(&request(json!({ "m": "G ET" }))).await.unwrap_err();
    assert_eq!(err.code.as_deref(), Some("invalid_method"));
    assert!(err.message.starts_with("method: "), "{}", err.message);
    assert!(err.message.contains("`m`"), "{}", err.message);
    assert!(err.message.contains("`G ET`"), "{}", err.message);
}

#[tokio::test]
async fn a_bad_header_value_names_the_variable_and_the_header_but_not_the_secret() {
    let ep = endpoint(HttpConfig {
        url: "https://api.example.com/x".into(),
        headers: BTreeMap::from([(
            "X-Tenant".into(),
            Secret::new(format!("{KEY}-{{{{ tenant }}}}")),
        )]),
        ..HttpConfig::default()
    });
    let err = ep
        .call(&request(json!({ "tenant": "a\r\nX-Admin: yes" })))
        .await
        .unwrap_err();
    assert_eq!(err.code.as_deref(), Some("invalid_header"));
    assert!(
        err.message.starts_with("headers.X-Tenant: "),
        "{}",
        err.message
    );
    assert!(err.message.contains("`tenant`"), "{}", err.message);
    assert!(!err.message.contains(KEY), "{}", err.message);
}

#[tokio::test]
async fn a_huge_variable_is_never_quoted_whole() {
    let huge = "x".repeat(5 * 1024 * 1024);
    let ep = endpoint(HttpConfig {
        method: "{{ m }}".into(),
        url: "{{ base }}/v1".into(),
        ..HttpConfig::default()
    });
    for vars in [
        json!({ "m": huge.clone(), "base": "https://api.example.com" }),
        json!({ "m": "GET", "base": huge.clone() }),
    ] {
        let err = ep.call(&request(vars)).await.unwrap_err();
        assert!(err.message.len() < 1_000, "{} bytes", err.message.len());
        assert!(err.details.as_deref().unwrap_or("").len() < 5_000);
    }
}

#[tokio::test]
async fn an_undefined_variable_in_the_url_is_named() {
    let ep = endpoint(HttpConfig {
        url: "https://api.example.com/{{ customer.id }}?q={{ query | upper }}".into(),
        ..HttpConfig::default()
    });
    let err = ep
        .call(&request(json!({ "query": "x" })))
        .await
        .unwrap_err();
    assert_eq!(err.code.as_deref(), Some("template"));
    assert!(err.message.contains("`customer"), "{}", err.message);
    let err = ep
        .call(&request(json!({ "customer": {"id": 1} })))
        .await
        .unwrap_err();
    assert!(err.message.contains("`query`"), "{}", err.message);
}

#[tokio::test]
async fn the_engines_own_host_is_refused_to_urls_from_variables() {
    let config = HttpConfig {
        method: "{{ method }}".into(),
        allowed_hosts: vec!["*.corp.example".into()],
        ..HttpConfig::default()
    };
    let ep = HttpEndpoint::with_engine(
        "crm",
        &config,
        Some("http://camunda.corp.example:8080/engine-rest"),
    )
    .unwrap();
    let vars = json!({
        "method": "DELETE",
        "url": "http://camunda.corp.example:8080/engine-rest/process-instance/pi-1",
    });
    let err = ep.call(&request(vars)).await.unwrap_err();
    assert_eq!(err.code.as_deref(), Some("url_forbidden"), "{err:?}");
    assert!(err.message.contains("engine's own host"), "{}", err.message);
}

#[tokio::test]
async fn a_body_is_never_re_sent_to_another_host() {
    let target = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&target)
        .await;
    let origin = MockServer::start().await;
    let elsewhere = format!("http://localhost:{}/", target.address().port());
    Mock::given(any())
        .respond_with(ResponseTemplate::new(307).insert_header("Location", elsewhere.as_str()))
        .mount(&origin)
        .await;
    let ep = endpoint(HttpConfig {
        method: "POST".into(),
        url: format!("{}/orders", origin.uri()),
        body: Some(json!({"token": KEY, "id": "{{ id }}"})),
        allowed_hosts: vec!["127.0.0.1".into(), "localhost".into()],
        ..HttpConfig::default()
    });
    let err = ep.call(&request(json!({"id": 7}))).await.unwrap_err();
    assert_eq!(err.code.as_deref(), Some("redirect"), "{err:?}");
    assert!(
        err.message.contains("re-send the request body"),
        "{}",
        err.message
    );
}

#[test]
fn only_a_fixed_reading_method_is_free_of_side_effects() {
    let with = |method: &str| {
        endpoint(HttpConfig {
            method: method.into(),
            ..HttpConfig::default()
        })
        .side_effects()
    };
    assert!(!with("GET") && !with(" head ") && !with("OPTIONS"));
    assert!(with("POST") && with("DELETE"));
    assert!(
        with(&default_method()),
        "a method a variable chooses may write"
    );
}

#[tokio::test]
async fn the_probe_gets_health_url_through_the_ssrf_guard() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/health"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/sick"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let with = |url: String| HttpConfig {
        health_url: Some(url),
        ..HttpConfig::default()
    };
    // Loopback is refused unless the operator names it, like a host a variable chose.
    let err = endpoint(with(format!("{}/health", server.uri())))
        .probe()
        .await
        .unwrap_err();
    assert_eq!(err.code.as_deref(), Some("url_forbidden"), "{err}");
    assert_eq!(server.received_requests().await.unwrap().len(), 0);

    local(with(format!("{}/health", server.uri())))
        .probe()
        .await
        .unwrap();
    let err = local(with(format!("{}/sick", server.uri())))
        .probe()
        .await
        .unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Transient { .. }), "{err}");
    assert_eq!(err.code.as_deref(), Some("http_503"));

    // No health_url: nothing to probe.
    local(HttpConfig::default()).probe().await.unwrap();
}
