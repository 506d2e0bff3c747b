//! The acceptance runs: the shipped config and examples against an engine running as its
//! own process, and `procos dev` doing the same in one command.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Procos, Rest, Workdir, eventually, free_port};

const INSTANCES: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_example_instances_complete_exactly_once_against_a_separate_engine() {
    let work = Workdir::from_repo();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let url = format!("http://{listen}/engine-rest");
    let mut engine = Procos::spawn(work.path(), &["engine", "--listen", &listen], &[]);
    let rest = Rest::new(&url);
    assert!(
        eventually(Duration::from_secs(20), || async {
            rest.http.get(format!("{url}/version")).send().await.is_ok()
        })
        .await,
        "engine process up"
    );

    let mut procos = Procos::spawn(
        work.path(),
        &["--config", "config/pde.yaml"],
        &[("CAMUNDA_URL", &url)],
    );
    rest.wait_deployed("order_check", Duration::from_secs(30))
        .await;
    let mut instances = Vec::with_capacity(INSTANCES);
    for i in 0..INSTANCES {
        let amount = (i * 97 % 10_000) as f64;
        instances.push(
            rest.start(
                "order_check",
                json!({"amount": amount, "url": format!("{url}/version")}),
            )
            .await,
        );
    }
    let done = eventually(Duration::from_secs(180), || async {
        rest.get("/history/process-instance/count?processDefinitionKey=order_check&finished=true")
            .await["count"]
            == json!(INSTANCES)
    })
    .await;
    assert!(
        done,
        "all {INSTANCES} instances complete; stats {}",
        rest.stats().await
    );

    let stats = rest.stats().await;
    assert_eq!(
        stats["complete_ok"],
        json!(2 * INSTANCES),
        "each of the 2 tasks per instance completed once: {stats}"
    );
    assert_eq!(stats["complete_rejected"], json!(0), "{stats}");
    assert_eq!(
        stats["ignored_fields"],
        json!(0),
        "the engine ignores unknown fields as Camunda does; procos must send none: {stats}"
    );
    assert_eq!(
        stats["fetched_tasks"],
        json!(2 * INSTANCES),
        "no task handed out twice: {stats}"
    );
    assert_eq!(rest.get("/incident/count").await["count"], json!(0));
    for pi in instances.iter().step_by(37) {
        let vars = rest.variables(pi).await;
        assert!(
            vars["decision"] == json!("approve") || vars["decision"] == json!("review"),
            "{vars:?}"
        );
    }
    procos.sigterm();
    assert_eq!(procos.exit_code(Duration::from_secs(30)).await, 0);
    engine.sigterm();
    engine.exit_code(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn procos_dev_runs_the_examples_in_one_command() {
    let work = Workdir::from_repo();
    let listen = format!("127.0.0.1:{}", free_port());
    let url = format!("http://{listen}/engine-rest");
    let vars = json!({"amount": 50.0, "url": format!("{url}/version")}).to_string();
    let mut dev = Procos::spawn(
        work.path(),
        &[
            "dev",
            "--config",
            "config/pde.yaml",
            "--listen",
            &listen,
            "--start",
            "order_check",
            "--vars",
            &vars,
            "--count",
            "200",
        ],
        // The example's http endpoint calls `${CAMUNDA_URL}/version` (a URL fixed by the config,
        // not chosen by a variable); `--listen` picks a free port, so say which.
        &[("CAMUNDA_URL", &url)],
    );
    dev.wait_log("IN-MEMORY DEVELOPMENT ENGINE", Duration::from_secs(20))
        .await;
    let rest = Rest::new(&url);
    let done = eventually(Duration::from_secs(60), || async {
        rest.http
            .get(format!("{url}/history/process-instance/count?processDefinitionKey=order_check&finished=true"))
            .send()
            .await
            .ok()
            .map(|r| r.status().is_success())
            .unwrap_or(false)
            && rest.get("/history/process-instance/count?processDefinitionKey=order_check&finished=true").await["count"] == json!(200)
    })
    .await;
    assert!(
        done,
        "200 instances started by `procos dev --start` complete"
    );
    dev.sigterm();
    assert_eq!(dev.exit_code(Duration::from_secs(20)).await, 0);
}

/// Issue 13: the order ledger example (database + files endpoints) runs in `procos dev` with
/// SQLite and nothing else: orders are recorded and summed, receipts written under receipts/,
/// and an order id recorded twice ends at "Duplicate skipped" without a second receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn procos_dev_runs_the_order_ledger_on_sqlite() {
    let work = Workdir::from_repo();
    let listen = format!("127.0.0.1:{}", free_port());
    let url = format!("http://{listen}/engine-rest");
    let mut dev = Procos::spawn(
        work.path(),
        &["dev", "--config", "config/pde.yaml", "--listen", &listen],
        &[("CAMUNDA_URL", &url)],
    );
    dev.wait_log("IN-MEMORY DEVELOPMENT ENGINE", Duration::from_secs(20))
        .await;
    let rest = Rest::new(&url);
    rest.wait_deployed("order_ledger", Duration::from_secs(20))
        .await;
    let ended = |pi: String| {
        let rest = &rest;
        async move {
            let done = eventually(Duration::from_secs(30), || async {
                rest.state(&pi).await == "COMPLETED"
            })
            .await;
            assert!(done, "instance {pi} ended");
            // Booked instances carry the receipt the files endpoint wrote; a caught duplicate
            // ended before the ledger was read.
            let vars = rest
                .get(&format!(
                    "/history/variable-instance?processInstanceId={pi}"
                ))
                .await;
            let has = |name: &str| {
                vars.as_array()
                    .expect("variables")
                    .iter()
                    .any(|v| v["name"] == name)
            };
            if has("receipt") && has("ledger") {
                "booked"
            } else {
                "skipped"
            }
        }
    };
    let first = rest
        .start(
            "order_ledger",
            json!({"order_id": "A-1", "customer": "acme", "amount": 12.5}),
        )
        .await;
    assert_eq!(ended(first).await, "booked");
    let second = rest
        .start(
            "order_ledger",
            json!({"order_id": "B-2", "customer": "acme", "amount": 7.5}),
        )
        .await;
    assert_eq!(ended(second).await, "booked");
    let again = rest
        .start(
            "order_ledger",
            json!({"order_id": "A-1", "customer": "acme", "amount": 99}),
        )
        .await;
    assert_eq!(
        ended(again).await,
        "skipped",
        "a duplicate order id is caught"
    );

    let receipt = |id: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(work.path().join("receipts").join(format!("{id}.json")))
            .unwrap_or_else(|e| panic!("receipt {id}: {e}"));
        serde_json::from_str(&text).expect("a receipt is JSON")
    };
    assert_eq!(
        receipt("A-1"),
        json!({"order": "A-1", "customer": "acme", "amount": 12.5, "ledger": {"orders": 1, "total": 12.5}}),
        "the duplicate did not overwrite the first receipt"
    );
    assert_eq!(
        receipt("B-2")["ledger"],
        json!({"orders": 2, "total": 20.0}),
        "the second order is summed with the first"
    );
    assert!(
        work.path().join("state/ledger.db").is_file(),
        "SQLite under state/"
    );
    dev.sigterm();
    assert_eq!(dev.exit_code(Duration::from_secs(20)).await, 0);
}
