//! End to end: the real `procos` binary and the in-repo engine. A process reads a file under a
//! `files` endpoint's root into a File variable, the next task writes that variable back under
//! another name — byte for byte; a missing file is the BPMN error the process catches; a path
//! out of the root is an incident; `procos validate` names a root that does not exist.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Procos, Rest, Workdir, config, engine};

const T: Duration = Duration::from_secs(30);

/// read (`file_read`) → write (`file_write`); FILE_NOT_FOUND on the read ends at `caught`.
fn copy_bpmn() -> String {
    r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d_copy" targetNamespace="http://procos.dev/test">
  <bpmn:error id="err" errorCode="FILE_NOT_FOUND" />
  <bpmn:process id="file_copy" isExecutable="true" camunda:historyTimeToLive="P1D">
    <bpmn:startEvent id="start" />
    <bpmn:serviceTask id="read" camunda:type="external" camunda:topic="file_read" />
    <bpmn:boundaryEvent id="missing" attachedToRef="read"><bpmn:errorEventDefinition errorRef="err" /></bpmn:boundaryEvent>
    <bpmn:serviceTask id="write" camunda:type="external" camunda:topic="file_write" />
    <bpmn:endEvent id="done" />
    <bpmn:endEvent id="caught" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="read" />
    <bpmn:sequenceFlow id="f2" sourceRef="read" targetRef="write" />
    <bpmn:sequenceFlow id="f3" sourceRef="write" targetRef="done" />
    <bpmn:sequenceFlow id="f4" sourceRef="missing" targetRef="caught" />
  </bpmn:process>
</bpmn:definitions>"#
        .to_string()
}

fn copy_config() -> String {
    config(
        "",
        &["reader", "writer"],
        "  file_read: { pool: gp, endpoints: [reader], retries: 1, output: { mapping: { document: /content, size: /size } } }\n\
         \x20 file_write: { pool: gp, endpoints: [writer], retries: 1, output: { variable: written } }",
        "  reader: { type: files, root: files, operation: read, path: \"in/{{ name }}\" }\n\
         \x20 writer: { type: files, root: files, operation: write, path: \"out/{{ name }}\", file: document }\n",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_read_into_a_file_variable_is_written_back_byte_identical() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let work = Workdir::new(&copy_config(), &[("copy.bpmn", &copy_bpmn())]);
    let input = work.path().join("files/in");
    std::fs::create_dir_all(&input).expect("in/");
    // Every byte value, twice: no text or encoding step can pass it unchanged by accident.
    let bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    std::fs::write(input.join("scan.pdf"), &bytes).expect("input file");
    std::fs::write(work.path().join("secret.txt"), "outside the root").expect("outside");
    let _procos = Procos::daemon(&work, &engine.url);
    rest.wait_deployed("file_copy", T).await;

    let pi = rest.start("file_copy", json!({"name": "scan.pdf"})).await;
    let vars = rest.wait_ended(&pi, T).await;
    let copy = std::fs::read(work.path().join("files/out/scan.pdf")).expect("written back");
    assert_eq!(copy, bytes, "byte-identical");
    assert_eq!(
        vars["written"],
        json!({"path": "out/scan.pdf", "size": 512})
    );
    assert_eq!(vars["size"], json!(512));
    // In the engine the document is a File variable, named and typed from the path.
    let history = rest
        .get(&format!(
            "/history/variable-instance?processInstanceId={pi}&variableName=document"
        ))
        .await;
    let document = &history[0];
    assert_eq!(document["type"], "File", "{history}");
    assert_eq!(document["valueInfo"]["filename"], "scan.pdf", "{history}");
    assert_eq!(
        document["valueInfo"]["mimeType"], "application/pdf",
        "{history}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(work.path().join("files/out"))
        .expect("out/")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers, ["scan.pdf"], "no temp file left beside it");

    // A missing file: the BPMN error FILE_NOT_FOUND, caught by the process.
    let pi = rest.start("file_copy", json!({"name": "nope.pdf"})).await;
    rest.wait_ended(&pi, T).await;
    assert_eq!(rest.stats().await["bpmn_error_calls"], json!(1));
    assert!(rest.incidents(&pi).await.is_empty());

    // A path out of the root: an incident naming the path and the variable; nothing read.
    let pi = rest
        .start("file_copy", json!({"name": "../../secret.txt"}))
        .await;
    let ok = support::eventually(T, || async { !rest.incidents(&pi).await.is_empty() }).await;
    assert!(ok, "an incident for the escape");
    let incident: Value = rest.incidents(&pi).await[0].clone();
    let message = incident["incidentMessage"].as_str().unwrap_or_default();
    assert!(
        message.contains("path `in/../../secret.txt` (from `name`) leaves the root"),
        "{incident}"
    );
    assert!(!work.path().join("files/out/secret.txt").exists());
}

#[tokio::test]
async fn validate_names_a_root_that_does_not_exist() {
    let work = Workdir::new(&copy_config(), &[]);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_procos"))
        .args(["validate", "--config", "pde.yaml"])
        .current_dir(work.path())
        .env("CAMUNDA_URL", "http://127.0.0.1:9/engine-rest")
        .output()
        .await
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("endpoints.reader.root: `files` cannot be opened as a directory"),
        "{stderr}"
    );
    // A key of another operation is explained at its YAML path.
    let bad = copy_config().replace("operation: read,", "operation: read, to: x,");
    std::fs::write(work.path().join("pde.yaml"), bad).expect("config");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_procos"))
        .args(["validate", "--config", "pde.yaml"])
        .current_dir(work.path())
        .env("CAMUNDA_URL", "http://127.0.0.1:9/engine-rest")
        .output()
        .await
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("endpoints.reader.to: is used by `operation: move` only, not `read`"),
        "{stderr}"
    );
    std::fs::write(work.path().join("pde.yaml"), copy_config()).expect("config");
    std::fs::create_dir(work.path().join("files")).expect("root");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_procos"))
        .args(["validate", "--config", "pde.yaml"])
        .current_dir(work.path())
        .env("CAMUNDA_URL", "http://127.0.0.1:9/engine-rest")
        .output()
        .await
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The README's files example validates (its root made real), so the docs cannot rot.
#[test]
fn the_readme_files_example_is_valid() {
    let readme = std::fs::read_to_string(support::repo().join("README.md")).expect("README");
    let section = &readme[readme.find("### Files endpoint").expect("section")..];
    let start =
        section.find("```yaml\nendpoints:\n").expect("yaml block") + "```yaml\nendpoints:\n".len();
    let endpoints = &section[start..start + section[start..].find("```").expect("block end")];
    let work = Workdir::new("", &[]);
    std::fs::create_dir(work.path().join("invoices")).expect("root");
    let endpoints = endpoints.replace("/srv/invoices", "invoices");
    let cfg = config(
        "",
        &["read_invoice", "archive_invoice", "inbox"],
        "  archive: { pool: gp, endpoints: [archive_invoice] }",
        &endpoints,
    );
    std::fs::write(work.path().join("pde.yaml"), cfg).expect("config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_procos"))
        .args(["validate", "--config", "pde.yaml"])
        .current_dir(work.path())
        .env("CAMUNDA_URL", "http://127.0.0.1:9/engine-rest")
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
