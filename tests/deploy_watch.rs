//! The deploy-dir watcher reacts to content changes only (issue 8, defect 6): reading the BPMN
//! files (an editor, a backup, `cat`, procos's own deployment) sends nothing; one new file sends
//! exactly one deployment, not a stream.

use std::path::Path;
use std::time::Duration;

use procos::camunda::{CamundaClient, ClientSettings};
use procos::config::file::{BackoffConfig, DeployConfig};
use procos::kernel::Deployer;
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const BPMN: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d"><process id="p" isExecutable="true"><startEvent id="s"/></process></definitions>"#;

async fn deployments(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path().ends_with("/deployment/create"))
        .count()
}

/// Waits until `check` holds, polling every 50 ms, at most `within`.
async fn eventually(within: Duration, server: &MockServer, want: usize) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if deployments(server).await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn deployer(server: &MockServer, dir: &Path) -> Deployer {
    let client = CamundaClient::new(ClientSettings {
        url: format!("{}/engine-rest", server.uri()),
        auth: None,
        worker_id: "w".into(),
        request_timeout: Duration::from_secs(5),
    })
    .expect("client");
    Deployer::new(
        client,
        DeployConfig {
            dir: dir.to_path_buf(),
            debounce: Duration::from_millis(100),
            ..DeployConfig::default()
        },
        BackoffConfig::default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_send_nothing_and_one_new_file_sends_one_deployment() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/engine-rest/deployment/create"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "id": "dep-1", "deployedProcessDefinitions": null
        })))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a.bpmn"), BPMN).expect("write");
    let deployer = deployer(&server, dir.path());
    let stop = CancellationToken::new();
    deployer.deploy_at_boot(&stop).await;
    assert_eq!(deployments(&server).await, 1, "the boot deployment");
    let watching = tokio::spawn(deployer.clone().watch(stop.clone()));
    // The watch is registered synchronously at the start of `watch`; give it a moment to run.
    tokio::time::sleep(Duration::from_millis(300)).await;

    for _ in 0..20 {
        let _ = std::fs::read(dir.path().join("a.bpmn")).expect("read");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Well past the debounce: anything the reads set off has been sent by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        deployments(&server).await,
        1,
        "reading the files sent deployments"
    );

    std::fs::write(dir.path().join("b.bpmn"), BPMN.replace("\"p\"", "\"q\"")).expect("write");
    assert!(
        eventually(Duration::from_secs(5), &server, 2).await,
        "a new file is deployed (deployments: {})",
        deployments(&server).await
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        deployments(&server).await,
        2,
        "one new file sent more than one deployment"
    );

    // Saving a file with the same bytes changes nothing the engine would see.
    std::fs::write(dir.path().join("a.bpmn"), BPMN).expect("rewrite");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        deployments(&server).await,
        2,
        "an unchanged save sent a deployment"
    );

    stop.cancel();
    watching.await.expect("the watcher stops");
}
