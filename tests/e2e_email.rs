//! End to end: the real `procos` binary sends a task's email to a real SMTP server
//! (`tests/support/smtp_sink.py`, aiosmtpd) and completes the task with the message id; an
//! invalid recipient becomes the BPMN error the process catches.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Procos, Rest, Workdir, config, engine, one_task_bpmn, smtp_sink};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_sends_its_email_and_completes_with_the_message_id() {
    let (_sink, port, mail) = smtp_sink().await;
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let cfg = config(
        "",
        &["mail"],
        "  send_mail: { pool: gp, endpoints: [mail], retries: 1, output: { variable: mail } }",
        &format!(
            "  mail:\n    type: email\n    host: 127.0.0.1\n    port: {port}\n    tls: none\n\
             \x20   from: \"Orders <orders@example.com>\"\n\
             \x20   subject: \"Order {{{{ order }}}} confirmed\"\n\
             \x20   text: \"Hello {{{{ name }}}}, order {{{{ order }}}} is on its way.\"\n"
        ),
    );
    let work = Workdir::new(
        &cfg,
        &[(
            "mail.bpmn",
            &one_task_bpmn("mail_process", "send_mail", "INVALID_ADDRESS"),
        )],
    );
    let _procos = Procos::daemon(&work, &engine.url);
    rest.wait_deployed("mail_process", T).await;

    let pi = rest
        .start(
            "mail_process",
            json!({"to": "Ada <ada@example.com>", "name": "Ada", "order": 7}),
        )
        .await;
    let vars = rest.wait_ended(&pi, T).await;
    let message_id = vars["mail"]["message_id"].as_str().expect("a message id");
    assert!(
        message_id.starts_with('<') && message_id.ends_with("@procos>"),
        "{vars:?}"
    );
    assert_eq!(vars["mail"]["accepted"], json!(["ada@example.com"]));

    let raw = std::fs::read_to_string(mail.path().join("1.eml")).expect("the message arrived");
    assert!(raw.contains(&format!("Message-ID: {message_id}")), "{raw}");
    assert!(raw.contains("Subject: Order 7 confirmed"), "{raw}");
    assert!(raw.contains("Hello Ada, order 7 is on its way."), "{raw}");
    let envelope: Value = serde_json::from_str(
        &std::fs::read_to_string(mail.path().join("1.json")).expect("sidecar"),
    )
    .expect("JSON");
    assert_eq!(envelope["rcpt_tos"], json!(["ada@example.com"]));

    // An invalid recipient is a business outcome: the boundary event catches INVALID_ADDRESS.
    let pi = rest
        .start(
            "mail_process",
            json!({"to": "ada at example dot com", "name": "Ada", "order": 8}),
        )
        .await;
    rest.wait_ended(&pi, T).await;
    let stats = rest.stats().await;
    assert_eq!(stats["bpmn_error_calls"], json!(1), "{stats}");
    assert!(rest.incidents(&pi).await.is_empty());
    assert!(
        !mail.path().join("2.json").exists(),
        "nothing is sent for an invalid address"
    );
}
