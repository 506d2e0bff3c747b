//! The status page in a real browser: Debian's headless Chromium loads `/` from a running procos
//! after tasks ran (some failed, some still running), and the test checks what the page shows —
//! the pool's PDE cores with their load, the endpoints with their health lights, the failed
//! task's id — then keeps a desktop and a phone screenshot under `target/artifacts/`.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use support::{Procos, Rest, Workdir, engine, one_task_bpmn};

const T: Duration = Duration::from_secs(30);
const CHROMIUM: &str = "/usr/bin/chromium";

/// Where CI keeps the screenshots.
fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| support::repo().join("target"));
    let dir = target.join("artifacts");
    std::fs::create_dir_all(&dir).expect("target/artifacts");
    dir
}

/// Runs headless Chromium on `url` with `args`; fails (never skips) when it is not installed.
async fn chromium(url: &str, args: &[&str]) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run `apt-get install chromium` (.ci/run installs it)"
    );
    let profile = tempfile::tempdir().expect("profile dir");
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--virtual-time-budget=4000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(args)
            .arg(url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium finished within 90 s")
    .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn admin_addr(procos: &Procos) -> String {
    procos.wait_log("Admin server listening.", T).await;
    procos
        .log_json()
        .iter()
        .find(|l| l["message"] == "Admin server listening.")
        .and_then(|l| l["address"].as_str().map(str::to_string))
        .expect("the line names the address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_cores_lights_and_failures_in_a_real_browser() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let closed = support::free_port();
    let cfg = format!(
        "camunda:\n  url: ${{CAMUNDA_URL}}\n  long_poll: 2s\n  backoff: {{ initial: 100ms, max: 1s }}\n\
deploy:\n  dir: bpmn\npde_manager:\n  shutdown_grace: 1s\n  pools:\n    \
general: {{ instances: 4, endpoints: [echo, slow, flaky], max_concurrent_tasks: 8 }}\n\
topics:\n  quick: {{ pool: general, endpoints: [echo] }}\n  long: {{ pool: general, endpoints: [slow] }}\n  \
orders: {{ pool: general, endpoints: [flaky], retries: 1 }}\n\
endpoints:\n  echo: {{ type: noop }}\n  slow: {{ type: noop, delay: 60s }}\n  \
flaky: {{ type: http, method: GET, url: \"http://127.0.0.1:{closed}/orders\", allowed_hosts: [\"127.0.0.1\"], circuit: {{ failure_threshold: 1, open_for: 10m }} }}\n"
    );
    let work = Workdir::new(
        &cfg,
        &[
            (
                "quick.bpmn",
                &one_task_bpmn("quick_process", "quick", "NEVER"),
            ),
            ("long.bpmn", &one_task_bpmn("long_process", "long", "NEVER")),
            (
                "orders.bpmn",
                &one_task_bpmn("orders_process", "orders", "NEVER"),
            ),
        ],
    );
    let procos = Procos::daemon(&work, &engine.url);
    let addr = admin_addr(&procos).await;
    for key in ["quick_process", "long_process", "orders_process"] {
        rest.wait_deployed(key, T).await;
    }
    for i in 0..6 {
        let pi = rest.start("quick_process", json!({"n": i})).await;
        rest.wait_ended(&pi, T).await;
    }
    for i in 0..3 {
        rest.start("long_process", json!({"n": i})).await;
    }
    let failed = rest.start("orders_process", json!({"order": 7})).await;
    assert!(
        support::eventually(T, || async { !rest.incidents(&failed).await.is_empty() }).await,
        "the order task ends in an incident"
    );
    let task_id = rest
        .get(&format!("/external-task?processInstanceId={failed}"))
        .await[0]["id"]
        .as_str()
        .expect("task id")
        .to_string();
    let running = support::eventually(T, || async {
        let status = reqwest::get(format!("http://{addr}/api/status"))
            .await
            .expect("status")
            .json::<serde_json::Value>()
            .await
            .expect("JSON");
        status["pools"][0]["in_flight"] == 3
    })
    .await;
    assert!(running, "the three long tasks are running");

    let url = format!("http://{addr}/");
    let dom = chromium(&url, &["--dump-dom"]).await;
    // The pool's four PDE cores, three of them running a long task.
    let cores: Vec<&str> = dom
        .split("data-pool=\"general\" data-load=\"")
        .skip(1)
        .collect();
    assert_eq!(
        cores.len(),
        4,
        "four cores for the pool's four PDEs:\n{dom}"
    );
    let load: u32 = cores
        .iter()
        .filter_map(|c| c.split('"').next())
        .filter_map(|n| n.parse::<u32>().ok())
        .sum();
    assert_eq!(load, 3, "the cores show the three running tasks:\n{dom}");
    // Health lights: the refused endpoint's breaker is open.
    for (endpoint, light) in [("echo", "green"), ("slow", "green"), ("flaky", "red")] {
        let shown = format!("data-endpoint=\"{endpoint}\" data-light=\"{light}\"");
        assert!(dom.contains(&shown), "{endpoint} shown {light}:\n{dom}");
    }
    // The failed task, by id, with its Cockpit link.
    assert!(
        dom.contains(&format!("data-task=\"{task_id}\"")),
        "the failed task {task_id} is listed:\n{dom}"
    );
    assert!(
        dom.contains(&format!("process-instance/{failed}/runtime")),
        "with a Cockpit link:\n{dom}"
    );
    assert!(dom.contains(">ready<"), "the ready badge:\n{dom}");

    let desktop = artifacts().join("status-page.png");
    let phone = artifacts().join("status-page-phone.png");
    for (path, size) in [(&desktop, "1280,1000"), (&phone, "390,1400")] {
        let _ = std::fs::remove_file(path);
        chromium(
            &url,
            &[
                &format!("--screenshot={}", path.display()),
                &format!("--window-size={size}"),
            ],
        )
        .await;
        let bytes = std::fs::read(path).expect("the screenshot was written");
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "a real PNG at {}",
            path.display()
        );
        // Straight to stderr: libtest captures `println!` of a passing test, and CI's log must
        // name the artifact.
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "screenshot: {}", path.display());
    }
}
