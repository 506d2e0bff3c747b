//! `sandbox:` through the real binary (issue 10): a sandboxed script cannot read procos's own
//! config nor reach the engine over TCP, and still completes its task; the same script without
//! the sandbox can do both. Bad `sandbox` values are refused by `procos validate` at their path.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{config, stage_with_scripts};

/// Reports what it could do: read procos's config (`../pde.yaml` from `scripts_dir`), connect
/// to the engine's port.
const NOSY: &str = r#"import json, socket, sys
task = json.load(sys.stdin)
def attempt(f):
    try:
        f()
        return "ok"
    except Exception as e:
        return type(e).__name__
config = attempt(lambda: open("../pde.yaml").read())
engine = attempt(lambda: socket.create_connection(("127.0.0.1", task["variables"]["port"]), timeout=5).close())
print(json.dumps({"config": config, "engine": engine}))
"#;

async fn nosy_run(sandbox: &str) -> serde_json::Map<String, serde_json::Value> {
    let cfg = config(
        "",
        &["py"],
        "  nosy:\n    pool: gp\n    endpoints: [py]\n",
        &format!("  py: {{ type: python, script: nosy.py{sandbox} }}\n"),
    );
    let s = stage_with_scripts(&cfg, "nosy_p", "nosy", &[("nosy.py", NOSY)]).await;
    let port = s.engine.addr.port();
    let pi = s.rest.start("nosy_p", json!({"port": port})).await;
    s.rest.wait_ended(&pi, Duration::from_secs(60)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandboxed_script_can_read_neither_the_config_nor_reach_the_engine() {
    let vars = nosy_run(", sandbox: true").await;
    assert_eq!(vars["config"], json!("PermissionError"), "{vars:?}");
    assert_eq!(vars["engine"], json!("PermissionError"), "{vars:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_script_unsandboxed_can_do_both() {
    let vars = nosy_run("").await;
    assert_eq!(vars["config"], json!("ok"), "{vars:?}");
    assert_eq!(vars["engine"], json!("ok"), "{vars:?}");
}

#[test]
fn validate_refuses_bad_sandbox_values_at_their_path() {
    let cfg = config(
        "",
        &["py"],
        "  nosy:\n    pool: gp\n    endpoints: [py]\n",
        "  py: { type: python, sandbox: { memory: 1MiB, network: [\"nohost\"] } }\n",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("pde.yaml");
    std::fs::write(&path, &cfg).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_procos"))
        .args(["validate", "--config"])
        .arg(&path)
        .env("CAMUNDA_URL", "http://127.0.0.1:1")
        .output()
        .expect("runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(78), "{text}");
    assert!(text.contains("endpoints.py.sandbox.network[0]"), "{text}");
    assert!(text.contains("`nohost` is not host:port"), "{text}");
}
