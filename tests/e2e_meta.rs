//! End to end: the shipped claim review (bpmn/claim_review.bpmn, config/pde.yaml) with the real
//! `procos` binary, the in-repo engine and a real SMTP server (`tests/support/smtp_sink.py`).
//! The Meta-PDE runs its two sub-tasks on the AI and general-purpose pools (no language model
//! here: the AI topic falls back to the extractive Python summary), its combined result lands
//! in the process variables, and the email with the analysis arrives at the server.

mod support;

use std::time::Duration;

use procos::engine::RunningEngine;
use serde_json::{Value, json};
use support::{Procos, Rest, Workdir, engine, free_port, smtp_sink};
use tokio::process::Child;

const T: Duration = Duration::from_secs(60);

const CLAIM: &str = "On 12 March 2024 a pipe burst in our kitchen. The plumber's repair cost \
                     1,200.50 EUR and the new floor €800. The plumber came on 2024-03-14. The \
                     flat was unusable for two days.";

/// The shipped config and models with a real SMTP server and no language model at all.
struct Shipped {
    _sink: Child,
    mail: tempfile::TempDir,
    _engine: RunningEngine,
    rest: Rest,
    _work: Workdir,
    procos: Procos,
}

async fn shipped() -> Shipped {
    let (sink, smtp_port, mail) = smtp_sink().await;
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let work = Workdir::from_repo();
    let smtp_port = smtp_port.to_string();
    let no_ollama = format!("http://127.0.0.1:{}", free_port());
    let procos = Procos::spawn(
        work.path(),
        &["--config", "config/pde.yaml"],
        &[
            ("CAMUNDA_URL", &engine.url),
            ("SMTP_HOST", "127.0.0.1"),
            ("SMTP_PORT", &smtp_port),
            ("OPENAI_API_KEY", ""),
            ("OLLAMA_URL", &no_ollama),
        ],
    );
    rest.wait_deployed("claim_review", T).await;
    Shipped {
        _sink: sink,
        mail,
        _engine: engine,
        rest,
        _work: work,
        procos,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claim_review_runs_its_meta_pde_and_mails_the_result() {
    let Shipped {
        _sink,
        mail,
        _engine,
        rest,
        _work,
        procos,
    } = shipped().await;

    let pi = rest
        .start(
            "claim_review",
            json!({"claim_id": "C-17", "claim_text": CLAIM, "claimant_email": "ada@example.com"}),
        )
        .await;
    let vars = rest.wait_ended(&pi, T).await;

    // The Meta-PDE's combined result (by name), one variable per step.
    let summary = vars["analysis"]["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("pipe burst"), "{vars:?}");
    assert_eq!(vars["analysis"]["method"], json!("extractive"));
    assert_eq!(vars["figures"]["total"], json!(2000.5), "{vars:?}");
    assert_eq!(vars["figures"]["currency"], json!("EUR"));
    assert_eq!(
        vars["figures"]["dates"],
        json!(["2024-03-12", "2024-03-14"])
    );
    assert_eq!(vars["mail"]["accepted"], json!(["ada@example.com"]));

    let raw = std::fs::read_to_string(mail.path().join("1.eml")).expect("the message arrived");
    let raw = quoted_printable(&raw);
    assert!(
        raw.contains("Subject: Your claim C-17: our first review"),
        "{raw}"
    );
    assert!(raw.contains(summary), "the summary is in the body: {raw}");
    assert!(raw.contains("Total: 2000.5 EUR"), "{raw}");
    let envelope: Value = serde_json::from_str(
        &std::fs::read_to_string(mail.path().join("1.json")).expect("sidecar"),
    )
    .expect("JSON");
    assert_eq!(envelope["rcpt_tos"], json!(["ada@example.com"]));

    // Each sub-task logged under its own span, naming the parent task.
    let logs = procos.log_json();
    let finished = logs
        .iter()
        .find(|l| {
            l["message"] == json!("Task finished.") && l["span"]["topic"] == json!("analyse_claim")
        })
        .expect("the Meta-PDE task finished");
    let parent = finished["span"]["task_id"]
        .as_str()
        .expect("task id")
        .to_string();
    // The pending long poll (20 s here) holds the free pool slots; sub-tasks borrow them instead
    // of waiting the poll out, so they start at once.
    assert!(
        finished["validation_ms"].as_u64().expect("timing") < 10_000,
        "the sub-tasks were not held up by the long poll: {finished}"
    );
    let sub_tasks: Vec<&Value> = logs
        .iter()
        .filter(|l| l["message"] == json!("Sub-task done."))
        .collect();
    assert_eq!(sub_tasks.len(), 2, "{sub_tasks:?}");
    for line in sub_tasks {
        assert_eq!(line["span"]["name"], json!("sub_task"), "{line}");
        // `parent` is `{task id}/{step}`: the parent task and the step this sub-task serves.
        let of = line["span"]["parent"].as_str().unwrap_or("");
        assert!(
            of == format!("{parent}/analysis") || of == format!("{parent}/figures"),
            "{line}"
        );
    }
    assert!(rest.incidents(&pi).await.is_empty());
}

/// Decodes a quoted-printable text (soft line breaks, `=XX` bytes) well enough for assertions.
fn quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_claimant_address_ends_the_claim_at_the_modelled_error() {
    let Shipped {
        _sink,
        mail,
        _engine,
        rest,
        _work,
        procos: _procos,
    } = shipped().await;
    let pi = rest
        .start(
            "claim_review",
            json!({"claim_id": "C-18", "claim_text": CLAIM, "claimant_email": "ada at example"}),
        )
        .await;
    rest.wait_ended(&pi, T).await;
    let stats = rest.stats().await;
    assert_eq!(
        stats["bpmn_error_calls"],
        json!(1),
        "INVALID_ADDRESS raised: {stats}"
    );
    assert!(rest.incidents(&pi).await.is_empty());
    let sent = std::fs::read_dir(mail.path())
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(sent, 0, "no mail was sent");
}
