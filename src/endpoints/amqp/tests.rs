//! Unit tests of the amqp endpoint without a broker: config, validation with YAML paths, the
//! message a task becomes, the error mapping, and a broker that is down. The broker itself is
//! exercised by tests/e2e_amqp.rs against a real RabbitMQ.

use lapin::protocol::{AMQPError, AMQPErrorKind, AMQPSoftError};
use serde_json::{Value, json};

use super::link::{Phase, amqp_error};
use super::*;
use crate::endpoints::{EndpointConfig, ErrorKind};

const PASSWORD: &str = "amqp-unit-NEVER-SHOW-7d1";

fn config(port: u16, extra: &str) -> AmqpConfig {
    let yaml = format!(
        "url: 'amqp://procos:{PASSWORD}@127.0.0.1:{port}/%2f'\nrouting_key: 'orders.{{{{ region }}}}'\n{extra}"
    );
    serde_yaml::from_str(&yaml).unwrap()
}

fn request(task_id: &str, variables: Value) -> EndpointRequest {
    let Value::Object(variables) = variables else {
        panic!("variables must be an object")
    };
    EndpointRequest {
        task_id: task_id.into(),
        topic: "ship".into(),
        variables,
        ..Default::default()
    }
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn parses_with_defaults_and_builds_without_connecting() {
    let c = config(5672, "");
    assert!(c.validate().is_empty(), "{:?}", c.validate());
    assert_eq!(c.mode, AmqpMode::Publish);
    assert!(c.persistent && c.mandatory);
    assert_eq!(c.content_type, "application/json");
    assert_eq!(c.exchange, "");
    // Built outside a runtime: no connection is made until the first call or probe.
    let e = AmqpEndpoint::new("mq", &c).unwrap();
    assert_eq!(e.kind(), "amqp");
    assert!(e.side_effects());
}

#[test]
fn validate_reports_every_problem_at_its_key() {
    let c = config(
        5672,
        "mode: request_reply\nexchange: '{{ x }}'\ntimeout: 0s\nmax_reply_bytes: 0\n\
         max_concurrency: 0\ncontent_type: ' '\nheaders: { x-good: '{{ a }}', x-bad: '{{ a' }\n",
    );
    let mut fields: Vec<String> = c.validate().into_iter().map(|(f, _)| f).collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "content_type",
            "exchange",
            "headers.x-bad",
            "max_concurrency",
            "max_reply_bytes",
            "timeout"
        ]
    );
    let c = config(5672, "").routing_key_replaced("{{ oops");
    assert_eq!(c.validate()[0].0, "routing_key");
    let long = config(5672, &format!("exchange: {}\n", "e".repeat(256)));
    assert!(long.validate()[0].1.contains("AMQP allows 255"));
}

impl AmqpConfig {
    fn routing_key_replaced(mut self, key: &str) -> Self {
        self.routing_key = key.into();
        self
    }
}

#[test]
fn a_bad_url_is_explained_without_showing_it() {
    let cases = [
        ("", "is required"),
        (
            "amqps://u:{pw}@broker:5671/%2f",
            "`amqps://` (TLS) is not built into",
        ),
        ("http://u:{pw}@broker/", "has scheme `http`"),
        ("amqp://u:{pw}@broker:99999/%2f", "is not a URL"),
        ("amqp://u:{pw}@{{ host }}/%2f", "not a template"),
        ("not a url {pw}", "is not a URL"),
    ];
    for (url, expected) in cases {
        let yaml = format!("url: '{}'\nrouting_key: k\n", url.replace("{pw}", PASSWORD));
        let c: AmqpConfig = serde_yaml::from_str(&yaml).unwrap();
        let problems = c.validate();
        assert_eq!(problems.len(), 1, "{url}: {problems:?}");
        let (field, message) = &problems[0];
        assert_eq!(field, "url", "{url}");
        assert!(message.contains(expected), "{url}: {message}");
        assert!(!message.contains(PASSWORD), "{url}: {message}");
        let built = AmqpEndpoint::new("mq", &c).unwrap_err();
        assert!(!built.message.contains(PASSWORD), "{}", built.message);
    }
}

#[test]
fn an_ip_host_is_connected_to_as_written() {
    let uri = link::parse_url(&Secret::new("amqp://u:p@127.0.0.2:5673/orders")).unwrap();
    assert_eq!(uri.authority.host, "127.0.0.2");
    assert_eq!(uri.authority.port, 5673);
    assert_eq!(uri.vhost, "orders");
    let uri = link::parse_url(&Secret::new("amqp://u:p@broker/%2f")).unwrap();
    assert_eq!(
        (uri.authority.host.as_str(), uri.vhost.as_str()),
        ("broker", "/")
    );
}

#[test]
fn the_password_never_shows_in_debug_output() {
    let c = config(5672, "");
    let e = AmqpEndpoint::new("mq", &c).unwrap();
    for shown in [format!("{c:?}"), format!("{e:?}")] {
        assert!(!shown.contains(PASSWORD), "{shown}");
    }
    assert!(format!("{e:?}").contains("amqp://***@127.0.0.1:5672/%2f"));
}

#[test]
fn a_task_becomes_a_message_with_its_id_and_rendered_parts() {
    let c = config(
        5672,
        "headers: { x-region: '{{ region }}', x-static: fixed }\npersistent: true\n",
    );
    let e = AmqpEndpoint::new("mq", &c).unwrap();
    let vars = json!({"region": "eu", "order": {"id": 7, "lines": [1, 2]}});
    let (key, body, props) = e.message(&request("task-1", vars.clone())).unwrap();
    assert_eq!(key, "orders.eu");
    // By default the body is the task's variables.
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), vars);
    assert_eq!(props.message_id().as_ref().unwrap().as_str(), "task-1");
    assert_eq!(*props.delivery_mode(), Some(2));
    assert_eq!(
        props.content_type().as_ref().unwrap().as_str(),
        "application/json"
    );
    let headers = props.headers().as_ref().unwrap();
    let header = |name: &str| match headers.inner().get(name) {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(
        (header("x-region"), header("x-static")),
        ("eu".into(), "fixed".into())
    );

    let c = config(
        5672,
        "payload: { id: '{{ order.id }}', kind: order }\npersistent: false\n",
    );
    let e = AmqpEndpoint::new("mq", &c).unwrap();
    let (_, body, props) = e.message(&request("task-2", vars)).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"id": 7, "kind": "order"})
    );
    assert_eq!(*props.delivery_mode(), Some(1));
}

#[test]
fn a_routing_key_that_does_not_render_is_permanent() {
    let e = AmqpEndpoint::new("mq", &config(5672, "")).unwrap();
    let err = e.message(&request("t", json!({}))).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert_eq!(err.code.as_deref(), Some(class::TEMPLATE));
    let err = e
        .message(&request("t", json!({"region": "x".repeat(300)})))
        .unwrap_err();
    assert!(err.message.contains("AMQP allows 255"), "{}", err.message);
}

#[test]
fn a_reply_must_be_json_within_its_size() {
    let e = AmqpEndpoint::new("mq", &config(5672, "max_reply_bytes: 16\n")).unwrap();
    assert_eq!(
        e.reply(br#"{"ok":true}"#).unwrap().output,
        json!({"ok": true})
    );
    let not_json = e.reply(b"hello").unwrap_err();
    assert_eq!(not_json.kind, ErrorKind::InvalidOutput);
    assert_eq!(not_json.code.as_deref(), Some(class::INVALID_JSON));
    let big = e.reply(&[b' '; 17]).unwrap_err();
    assert_eq!(
        (big.kind, big.code.as_deref()),
        (ErrorKind::Permanent, Some(class::RESPONSE_TOO_LARGE))
    );
}

#[test]
fn broker_errors_map_to_what_they_mean_for_the_task() {
    let server = "amqp://***@h:5672/%2f";
    let soft = |e: AMQPSoftError| {
        lapin::Error::from(lapin::ErrorKind::ProtocolError(AMQPError::new(
            AMQPErrorKind::Soft(e),
            "refused".into(),
        )))
    };
    let refused = amqp_error(
        server,
        Phase::Setup,
        &soft(AMQPSoftError::ACCESSREFUSED),
        "x",
    );
    assert_eq!(
        (refused.kind, refused.code.as_deref()),
        (ErrorKind::Permanent, Some(class::AUTH))
    );
    let missing = amqp_error(
        server,
        Phase::Exchange,
        &soft(AMQPSoftError::NOTFOUND),
        "orders",
    );
    assert_eq!(missing.code.as_deref(), Some(class::CONFIG));
    assert!(
        missing.message.contains("exchange `orders`"),
        "{}",
        missing.message
    );

    let reset = lapin::Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
    let before = amqp_error(server, Phase::Setup, &reset, "");
    assert!(matches!(before.kind, ErrorKind::Transient { .. }));
    assert!(before.never_sent(), "nothing was published: {before:?}");
    let after = amqp_error(server, Phase::Exchange, &reset, "");
    assert_eq!(after.code.as_deref(), Some(class::NETWORK));
    assert!(!after.never_sent());
}

#[tokio::test]
async fn a_broker_that_is_down_fails_the_probe_and_the_call_transiently() {
    let port = closed_port();
    let e = AmqpEndpoint::new("mq", &config(port, "timeout: 5s\n")).unwrap();
    let probe = e.probe().await.unwrap_err();
    assert!(
        matches!(probe.kind, ErrorKind::Transient { .. }),
        "{probe:?}"
    );
    assert_eq!(probe.code.as_deref(), Some(class::CONNECT));

    let err = e
        .call(&request("t", json!({"region": "eu"})))
        .await
        .unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Transient { .. }), "{err:?}");
    assert!(err.never_sent(), "{err:?}");
    assert!(
        err.message
            .contains(&format!("amqp://***@127.0.0.1:{port}/%2f")),
        "{}",
        err.message
    );
    assert!(!err.message.contains(PASSWORD), "{}", err.message);
}

#[tokio::test]
async fn a_cancelled_task_stops_waiting() {
    let e = AmqpEndpoint::new("mq", &config(closed_port(), "")).unwrap();
    let req = request("t", json!({"region": "eu"}));
    req.cancel.cancel();
    assert_eq!(e.call(&req).await.unwrap_err().kind, ErrorKind::Cancelled);
}

#[test]
fn a_pde_yaml_amqp_endpoint_is_checked_at_its_path() {
    let yaml = r#"
camunda: { url: "http://localhost:8080/engine-rest" }
pde_manager:
  pools: { mq: { endpoints: [orders], max_concurrent_tasks: 4 } }
topics:
  ship_order: { pool: mq, endpoints: [orders] }
endpoints:
  orders:
    type: amqp
    url: ${AMQP_URL}
    exchange: orders
    routing_key: "orders.{{ region }}"
"#;
    let env = |name: &str| match name {
        "AMQP_URL" => Some(format!("amqp://procos:{PASSWORD}@rabbit:5672/%2f")),
        _ => None,
    };
    let path = std::path::Path::new("pde.yaml");
    let config = crate::config::load_str(yaml, path, &env).unwrap();
    let EndpointConfig::Amqp(orders) = &config.endpoints["orders"] else {
        panic!("an amqp endpoint")
    };
    assert_eq!(orders.exchange, "orders");

    let bad = yaml.replace("exchange: orders", "exchange: orders\n    mandatroy: true");
    let err = crate::config::load_str(&bad, path, &env).unwrap_err();
    assert!(
        err.to_string().contains("endpoints.orders.mandatroy"),
        "{err}"
    );
    let amqps = |name: &str| match name {
        "AMQP_URL" => Some(format!("amqps://procos:{PASSWORD}@rabbit:5671/%2f")),
        _ => None,
    };
    let err = crate::config::load_str(yaml, path, &amqps)
        .unwrap_err()
        .to_string();
    assert!(err.contains("endpoints.orders.url"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
}
