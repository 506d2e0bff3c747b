//! Tests of the `email` endpoint against a real SMTP server process (`tests/support/smtp_sink.py`,
//! aiosmtpd): the received message is read back and its headers, bodies and attachment checked.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use support::{Received, Sink};

use super::*;
use crate::endpoints::{EndpointConfig, ErrorKind, FileMeta, FileSource};

/// File variables held in memory, with the metadata the engine would report.
#[derive(Debug, Default)]
struct Files(BTreeMap<String, (Bytes, FileMeta)>);

#[async_trait]
impl FileSource for Files {
    async fn load(&self, name: &str) -> Result<Bytes, EndpointError> {
        self.0
            .get(name)
            .map(|(b, _)| b.clone())
            .ok_or_else(|| EndpointError::permanent(format!("no file `{name}`")))
    }

    async fn metadata(&self, name: &str) -> Option<FileMeta> {
        self.0.get(name).map(|(_, m)| m.clone())
    }
}

/// A config for a plain-text server on `port`, plus `extra` YAML lines.
fn config(port: u16, extra: &str) -> EmailConfig {
    let yaml = format!(
        "host: 127.0.0.1\nport: {port}\ntls: none\nfrom: Procos <procos@example.com>\n\
         timeout: 10s\n{extra}"
    );
    serde_yaml::from_str(&yaml).unwrap()
}

fn endpoint(config: &EmailConfig) -> EmailEndpoint {
    EmailEndpoint::new("mail", config).unwrap()
}

fn request(task_id: &str, variables: Value) -> EndpointRequest {
    let Value::Object(variables) = variables else {
        panic!("variables must be an object")
    };
    EndpointRequest {
        task_id: task_id.into(),
        topic: "notify".into(),
        variables,
        ..Default::default()
    }
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn only(received: Vec<Received>) -> Received {
    assert_eq!(received.len(), 1, "{received:#?}");
    received.into_iter().next().unwrap()
}

#[tokio::test]
async fn a_message_arrives_with_headers_bodies_and_attachment() {
    let sink = Sink::start(None).await;
    let config = config(
        sink.port,
        "subject: \"Invoice {{ number }} for {{ customer.name }}\"\n\
         text: \"Hello {{ customer.name }}, your invoice is attached.\"\n\
         html: \"<p>Hello <b>{{ customer.name }}</b></p>\"\n\
         reply_to: \"{{ reply_to | default('Support <support@example.com>') }}\"\n\
         attachments: [invoice_pdf]\n",
    );
    let pdf: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let files = Files(BTreeMap::from([(
        "invoice_pdf".to_string(),
        (
            Bytes::from(pdf.clone()),
            FileMeta {
                filename: Some("invoice-42.pdf".into()),
                mime_type: Some("application/pdf".into()),
            },
        ),
    )]));
    let mut req = request(
        "task-42",
        json!({
            "to": ["Ada Lovelace <ada@example.com>", "bob@example.com"],
            "cc": "carol@example.com",
            "bcc": "dave@example.com",
            "number": 42,
            "customer": {"name": "Ada"},
            "invoice_pdf": null,
        }),
    );
    req.files = Some(Arc::new(files));

    let reply = endpoint(&config).call(&req).await.unwrap();
    assert_eq!(
        reply.output,
        json!({
            "message_id": "<task-42@procos>",
            // dave is Bcc: delivered (see the envelope below) but not named in variables.
            "accepted": ["ada@example.com", "bob@example.com", "carol@example.com"],
            "bcc": 1,
        })
    );

    let got = only(sink.received());
    assert_eq!(got.mail_from, "procos@example.com");
    assert_eq!(
        got.rcpt_tos,
        [
            "ada@example.com",
            "bob@example.com",
            "carol@example.com",
            "dave@example.com"
        ]
    );
    let m = &got.message;
    assert_eq!(m.header("From"), Some("Procos <procos@example.com>"));
    assert_eq!(
        m.header("To"),
        Some("\"Ada Lovelace\" <ada@example.com>, bob@example.com")
    );
    assert_eq!(m.header("Cc"), Some("carol@example.com"));
    assert_eq!(m.header("Reply-To"), Some("Support <support@example.com>"));
    assert_eq!(m.header("Subject"), Some("Invoice 42 for Ada"));
    assert_eq!(m.header("Message-ID"), Some("<task-42@procos>"));
    assert_eq!(m.header("X-Procos-Task-Id"), Some("task-42"));
    // Bcc is in the envelope only.
    assert_eq!(m.header("Bcc"), None);
    assert!(!m.head.contains("dave"), "{}", m.head);

    assert_eq!(m.mime(), "multipart/mixed");
    let parts = m.parts();
    assert_eq!(parts.len(), 2, "{parts:#?}");
    assert_eq!(parts[0].mime(), "multipart/alternative");
    let bodies = parts[0].parts();
    assert_eq!(bodies[0].mime(), "text/plain");
    assert_eq!(bodies[0].text(), "Hello Ada, your invoice is attached.");
    assert_eq!(bodies[1].mime(), "text/html");
    assert_eq!(bodies[1].text(), "<p>Hello <b>Ada</b></p>");
    let attachment = &parts[1];
    assert_eq!(attachment.mime(), "application/pdf");
    assert_eq!(
        attachment.header("Content-Disposition"),
        Some("attachment; filename=\"invoice-42.pdf\"")
    );
    assert_eq!(attachment.decoded(), pdf);
}

#[tokio::test]
async fn a_message_sent_again_for_the_same_task_has_the_same_message_id() {
    let sink = Sink::start(None).await;
    let ep = endpoint(&config(sink.port, ""));
    let vars = json!({"to": "ada@example.com", "subject": "Hi", "text": "Hello"});
    let first = ep.call(&request("0f3c-77", vars.clone())).await.unwrap();
    let again = ep.call(&request("0f3c-77", vars.clone())).await.unwrap();
    let other = ep.call(&request("a1b2-99", vars)).await.unwrap();
    assert_eq!(first.output["message_id"], again.output["message_id"]);
    assert_ne!(first.output["message_id"], other.output["message_id"]);

    let ids: Vec<String> = sink
        .received()
        .iter()
        .map(|r| r.message.header("Message-ID").unwrap().to_string())
        .collect();
    assert_eq!(
        ids,
        ["<0f3c-77@procos>", "<0f3c-77@procos>", "<a1b2-99@procos>"]
    );
    // A text-only message is a single text/plain part.
    assert_eq!(sink.received()[0].message.mime(), "text/plain");
    assert_eq!(sink.received()[0].message.text(), "Hello");
}

#[tokio::test]
async fn a_4xx_reply_is_transient_and_a_5xx_reply_permanent_with_the_reply() {
    let sink = Sink::start(None).await;
    let ep = endpoint(&config(sink.port, ""));
    let send = |to: &str| {
        request(
            "t-1",
            json!({"to": ["ok@example.com", to], "subject": "Hi", "text": "Hello"}),
        )
    };

    let err = ep.call(&send("tempfail@example.com")).await.unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Transient { .. }), "{err:?}");
    assert_eq!(err.code.as_deref(), Some("smtp_451"));
    assert!(err.details.as_deref().unwrap().contains("451"), "{err:?}");
    assert!(
        err.details
            .as_deref()
            .unwrap()
            .contains("temporarily unavailable")
    );

    let err = ep.call(&send("reject@example.com")).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent, "{err:?}");
    assert_eq!(err.code.as_deref(), Some("smtp_550"));
    assert!(
        err.details
            .as_deref()
            .unwrap()
            .contains("<reject@example.com>: Recipient address rejected"),
        "{err:?}"
    );
    assert!(err.message.contains("550"), "{err:?}");
    assert!(sink.received().is_empty());

    // The pooled connection is still good after the failed transactions.
    ep.call(&send("fine@example.com")).await.unwrap();
    assert_eq!(
        only(sink.received()).rcpt_tos,
        ["ok@example.com", "fine@example.com"]
    );
}

#[tokio::test]
async fn an_invalid_address_is_a_bpmn_error_naming_it_and_nothing_is_sent() {
    let sink = Sink::start(None).await;
    let ep = endpoint(&config(
        sink.port,
        "invalid_address_error_code: BAD_EMAIL\n",
    ));
    let err = ep
        .call(&request(
            "t-1",
            json!({"to": "ok@example.com", "cc": ["ada@example", "not-an-address"],
                   "subject": "Hi", "text": "Hello"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.kind,
        ErrorKind::Business {
            error_code: "BAD_EMAIL".into()
        }
    );
    assert_eq!(err.code.as_deref(), Some("invalid_address"));
    assert_eq!(
        err.message,
        "`cc` holds an invalid email address: `not-an-address`"
    );

    let err = ep
        .call(&request(
            "t-2",
            json!({"to": [], "subject": "Hi", "text": "Hello"}),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Business { .. }), "{err:?}");
    assert!(err.message.contains("no recipient"), "{err:?}");
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn credentials_are_used_and_a_wrong_password_is_permanent() {
    let sink = Sink::start(Some("procos:s3cret")).await;
    let vars = json!({"to": "ada@example.com", "subject": "Hi", "text": "Hello"});

    let good = config(sink.port, "username: procos\npassword: s3cret\n");
    endpoint(&good)
        .call(&request("t-1", vars.clone()))
        .await
        .unwrap();
    assert_eq!(only(sink.received()).login.as_deref(), Some("procos"));

    let bad = config(sink.port, "username: procos\npassword: wrong\n");
    let err = endpoint(&bad)
        .call(&request("t-2", vars))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent, "{err:?}");
    assert_eq!(err.code.as_deref(), Some("smtp_535"));
    assert!(!format!("{err:?}").contains("wrong"), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_server_is_transient() {
    let ep = endpoint(&config(closed_port(), ""));
    let err = ep
        .call(&request(
            "t-1",
            json!({"to": "ada@example.com", "subject": "Hi", "text": "Hello"}),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Transient { .. }), "{err:?}");
    assert_eq!(err.code.as_deref(), Some("connect"));
    assert!(err.message.contains("SMTP 127.0.0.1:"), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn a_server_that_never_greets_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts connections and says nothing.
    let _server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let ep = endpoint(&EmailConfig {
        timeout: Duration::from_secs(5),
        ..config(port, "")
    });
    let err = ep
        .call(&request(
            "t-1",
            json!({"to": "ada@example.com", "subject": "Hi", "text": "Hello"}),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err.kind, ErrorKind::Transient { .. }), "{err:?}");
    assert_eq!(err.code.as_deref(), Some("timeout"));
}

#[tokio::test]
async fn a_cancelled_task_sends_nothing() {
    let sink = Sink::start(None).await;
    let ep = endpoint(&config(sink.port, ""));
    let req = request(
        "t-1",
        json!({"to": "ada@example.com", "subject": "Hi", "text": "Hello"}),
    );
    req.cancel.cancel();
    let err = ep.call(&req).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Cancelled);
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn a_missing_body_or_attachment_is_permanent() {
    let ep = endpoint(&config(closed_port(), "attachments: \"{{ files }}\"\n"));
    let err = ep
        .call(&request(
            "t-1",
            json!({"to": "ada@example.com", "subject": "Hi", "html": "  ", "files": []}),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Permanent);
    assert_eq!(err.code.as_deref(), Some("no_body"));

    let err = ep
        .call(&request(
            "t-1",
            json!({"to": "ada@example.com", "subject": "Hi", "text": "x", "files": "report"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code.as_deref(), Some("attachment"));
    assert_eq!(
        err.message,
        "attachment `report`: the task has no such variable"
    );

    let err = ep
        .call(&request(
            "t-1",
            json!({"to": "ada@example.com", "subject": "Hi", "text": "x", "files": ["report"],
                   "report": null}),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code.as_deref(), Some("attachment"), "{err:?}");
}

#[test]
fn message_ids_are_derived_from_the_task_id_and_safe() {
    assert_eq!(compose::message_id("task-1", "procos"), "<task-1@procos>");
    assert_eq!(
        compose::message_id("a b/c<d>", "mail.example.com"),
        "<a_b_c_d_@mail.example.com>"
    );
    assert!(compose::message_id("", "procos").ends_with("@procos>"));
}

#[test]
fn parses_from_yaml_with_defaults_and_builds_outside_a_runtime() {
    let config: EndpointConfig =
        serde_yaml::from_str("type: email\nhost: smtp.example.com\nfrom: a@example.com\n").unwrap();
    assert_eq!(config.kind(), "email");
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let EndpointConfig::Email(email) = &config else {
        panic!("an email config")
    };
    assert_eq!(email.tls, TlsMode::Starttls);
    assert_eq!(email.max_concurrency, 4);
    assert_eq!(email.invalid_address_error_code, "INVALID_ADDRESS");
    // Building needs no tokio runtime: the pooled transport is made on first send.
    let endpoint = config.build("mail", &Default::default()).unwrap();
    assert_eq!(endpoint.kind(), "email");
    assert!(format!("{endpoint:?}").contains("smtp.example.com:587"));

    let err = serde_yaml::from_str::<EndpointConfig>(
        "type: email\nhost: h\nfrom: a@example.com\ntls: ssl\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("tls"), "{err}");
}

#[test]
fn validate_reports_every_problem() {
    let config: EmailConfig = serde_yaml::from_str(
        "host: smtp://mail.example.com\nport: 0\nusername: u\nfrom: not an address\n\
         subject: \"{{ unclosed\"\ntimeout: 0s\nmax_concurrency: 0\n\
         invalid_address_error_code: ''\nmessage_id_domain: 'bad domain'\n",
    )
    .unwrap();
    let fields: Vec<String> = config.validate().into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        fields,
        [
            "host",
            "port",
            "password",
            "from",
            "timeout",
            "max_concurrency",
            "invalid_address_error_code",
            "message_id_domain",
            "subject",
        ]
    );
    // Both credentials empty (`${SMTP_USER:-}` unset) means no AUTH, which is fine.
    let config: EmailConfig =
        serde_yaml::from_str("host: mailpit\nfrom: a@example.com\nusername: ''\npassword: ''\n")
            .unwrap();
    assert!(config.validate().is_empty());
}

#[test]
fn credentials_never_show_in_debug_output() {
    let config = config(25, "username: procos-user\npassword: hunter2\n");
    let shown = format!("{config:?} {:?}", endpoint(&config));
    assert!(
        !shown.contains("hunter2") && !shown.contains("procos-user"),
        "{shown}"
    );
}

#[test]
fn a_pde_yaml_email_endpoint_reads_its_settings_from_the_environment() {
    let yaml = r#"
camunda: { url: "http://localhost:8080/engine-rest" }
pde_manager:
  pools: { mail: { endpoints: [mail], max_concurrent_tasks: 4 } }
topics:
  send_invoice: { pool: mail, endpoints: [mail] }
endpoints:
  mail:
    type: email
    host: ${SMTP_HOST:-localhost}
    port: ${SMTP_PORT:-587}
    tls: none
    username: ${SMTP_USER:-}
    password: ${SMTP_PASSWORD:-}
    from: "Orders <orders@example.com>"
    to: ["{{ customer.email }}", "archive@example.com"]
    subject: "Invoice {{ number }}"
"#;
    let env = |name: &str| match name {
        "SMTP_HOST" => Some("mailpit".to_string()),
        "SMTP_PORT" => Some("1025".to_string()),
        _ => None,
    };
    let config = crate::config::load_str(yaml, std::path::Path::new("pde.yaml"), &env).unwrap();
    let EndpointConfig::Email(mail) = &config.endpoints["mail"] else {
        panic!("an email endpoint")
    };
    assert_eq!((mail.host.as_str(), mail.port), ("mailpit", Some(1025)));
    assert!(mail.username.as_ref().is_some_and(Secret::is_empty));

    let bad = yaml.replace("tls: none", "tls: none\n    timout: 5s");
    let err = crate::config::load_str(&bad, std::path::Path::new("pde.yaml"), &env).unwrap_err();
    assert!(err.to_string().contains("endpoints.mail.timout"), "{err}");
}

#[tokio::test]
async fn required_tls_never_falls_back_to_plain_text() {
    let sink = Sink::start(None).await;
    let vars = json!({"to": "ada@example.com", "subject": "Hi", "text": "Hello"});
    // The sink offers no STARTTLS and speaks no TLS: both modes must refuse to send.
    for tls in [TlsMode::Starttls, TlsMode::Tls] {
        let ep = endpoint(&EmailConfig {
            tls,
            ..config(sink.port, "")
        });
        let err = ep.call(&request("t-1", vars.clone())).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Permanent, "{tls:?}: {err:?}");
        let (code, says) = match tls {
            TlsMode::Starttls => ("smtp_client", "STARTTLS"),
            _ => ("tls", "corrupt message"),
        };
        assert_eq!(err.code.as_deref(), Some(code), "{err:?}");
        assert!(err.message.contains(says), "{err:?}");
    }
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn the_probe_sends_noop_and_a_closed_port_fails_it() {
    let sink = Sink::start(None).await;
    endpoint(&config(sink.port, "")).probe().await.unwrap();
    let err = endpoint(&config(closed_port(), ""))
        .probe()
        .await
        .unwrap_err();
    assert_eq!(err.code.as_deref(), Some("connect"), "{err:?}");
    assert!(err.never_sent(), "refused before anything was sent");
}
