//! Config reload on the real binary against the in-repo engine: SIGHUP and a plain edit of the
//! file apply a new config without dropping a task; an invalid file is refused with every
//! problem and the old config keeps serving; what the learner learned survives.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

const ECHO: &str = "  echo: { type: noop }\n  slowpoke: { type: noop, delay: 4s }\n";

/// The config with these topics (indented YAML lines under `topics:`).
fn cfg(topics: &str) -> String {
    config("", &["echo", "slowpoke"], topics, ECHO)
}

const FAST: &str = "  fast: { pool: gp, endpoints: [echo] }\n";
const SLOW: &str = "  slow: { pool: gp, endpoints: [slowpoke] }\n";
const ADDED: &str = "  added: { pool: gp, endpoints: [echo] }\n";

/// A work dir whose bpmn/ has one process per topic (key = topic).
fn workdir(config: &str) -> Workdir {
    let files: Vec<(String, String)> = ["fast", "slow", "added"]
        .iter()
        .map(|t| (format!("{t}.bpmn"), one_task_bpmn(t, t, "NEVER")))
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    Workdir::new(config, &refs)
}

fn write_config(work: &Workdir, text: &str) {
    // Written in place, as an editor without atomic saves does.
    std::fs::write(work.path().join("pde.yaml"), text).expect("write config");
}

fn sighup(procos: &Procos) {
    let pid = procos.child.id().expect("running") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("kill -HUP");
}

/// Log lines (JSON) whose message is `message`.
fn messages(procos: &Procos, message: &str) -> Vec<Value> {
    procos
        .log_json()
        .into_iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(message))
        })
        .collect()
}

/// Waits until `n` lines say "Config reloaded." and returns the last one's version.
async fn reloaded(procos: &Procos, n: usize) -> u64 {
    let ok = eventually(Duration::from_secs(15), || async {
        messages(procos, "Config reloaded.").len() >= n
    })
    .await;
    assert!(
        ok,
        "not reloaded {n} times; logs:\n{}",
        procos.log_lines().join("\n")
    );
    let lines = messages(procos, "Config reloaded.");
    lines[n - 1]["version"].as_u64().expect("version")
}

/// The external tasks of `topic` now.
async fn tasks(rest: &Rest, topic: &str) -> Vec<Value> {
    rest.get(&format!("/external-task?topicName={topic}"))
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_a_topic_and_removes_one_whose_running_task_still_completes_once() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let work = workdir(&cfg(&format!("{FAST}{SLOW}")));
    let procos = Procos::daemon(&work, &engine.url);
    rest.wait_deployed("added", Duration::from_secs(30)).await;

    // A slow task is running when the reload removes its topic.
    let slow = rest.start("slow", json!({})).await;
    let locked = eventually(Duration::from_secs(10), || async {
        tasks(&rest, "slow")
            .await
            .iter()
            .any(|t| t["workerId"].is_string())
    })
    .await;
    assert!(locked, "the slow task was never fetched");
    write_config(&work, &cfg(&format!("{FAST}{ADDED}")));
    sighup(&procos);
    assert_eq!(reloaded(&procos, 1).await, 2);
    assert!(
        !messages(&procos, "SIGHUP: reloading the config.").is_empty(),
        "the signal triggered it"
    );
    assert_eq!(
        rest.state(&slow).await,
        "ACTIVE",
        "the slow task was still in flight at the reload"
    );

    // The new topic is served; the slow task completes, exactly once.
    let added = rest.start("added", json!({})).await;
    rest.wait_ended(&added, Duration::from_secs(15)).await;
    rest.wait_ended(&slow, Duration::from_secs(15)).await;
    let slow_finished = procos
        .log_json()
        .into_iter()
        .filter(|l| l["message"] == "Task finished." && l["span"]["topic"] == "slow")
        .count();
    assert_eq!(slow_finished, 1, "the removed topic's task ran once");

    // The removed topic is not fetched any more: a new task of it stays unlocked over more
    // than a long poll (2s), while a task of a kept topic completes meanwhile.
    let orphan = rest.start("slow", json!({})).await;
    let fast = rest.start("fast", json!({})).await;
    rest.wait_ended(&fast, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(rest.state(&orphan).await, "ACTIVE");
    assert!(
        tasks(&rest, "slow")
            .await
            .iter()
            .all(|t| t["workerId"].is_null()),
        "no task of the removed topic is locked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_of_the_file_is_picked_up_and_a_rewrite_without_change_does_nothing() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let first = cfg(FAST);
    let work = workdir(&first);
    let procos = Procos::daemon(&work, &engine.url);
    rest.wait_deployed("added", Duration::from_secs(30)).await;
    procos
        .wait_log("Watching the config file", Duration::from_secs(10))
        .await;

    let second = cfg(&format!("{FAST}{ADDED}"));
    write_config(&work, &second);
    assert_eq!(reloaded(&procos, 1).await, 2);
    let added = rest.start("added", json!({})).await;
    rest.wait_ended(&added, Duration::from_secs(15)).await;

    // The same text again (a touch, a save without change): nothing is applied.
    write_config(&work, &second);
    procos
        .wait_log(
            "Config file unchanged; nothing to reload.",
            Duration::from_secs(10),
        )
        .await;
    // A real change after it is version 3, not 4.
    write_config(&work, &first);
    assert_eq!(reloaded(&procos, 2).await, 3);
    assert_eq!(messages(&procos, "Config reloaded.").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_is_refused_with_every_problem_and_the_old_config_keeps_serving() {
    let secret = "s3cr3t-reload-token-93b1";
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let work = workdir(&cfg(FAST));
    let procos = Procos::spawn(
        work.path(),
        &["--config", "pde.yaml"],
        &[("CAMUNDA_URL", &engine.url), ("RELOAD_TOKEN", secret)],
    );
    rest.wait_deployed("fast", Duration::from_secs(30)).await;

    // Two problems, and a secret that must not leak into any message.
    let broken = config(
        "",
        &["echo", "slowpoke"],
        "  fast: { pool: gp, endpoints: [echho] }\n",
        &format!(
            "{ECHO}  api:\n    type: http\n    url: \"http://127.0.0.1:9/?token=${{RELOAD_TOKEN}}\"\n    colour: red\n"
        ),
    );
    write_config(&work, &broken);
    procos
        .wait_log("Config reload refused", Duration::from_secs(15))
        .await;
    let refused = eventually(Duration::from_secs(5), || async {
        messages(&procos, "Config reload refused").len() >= 2
    })
    .await;
    let lines = messages(&procos, "Config reload refused");
    assert!(refused, "one line per problem: {lines:?}");
    let paths: Vec<String> = lines
        .iter()
        .map(|l| l["path"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        paths.iter().any(|p| p.starts_with("topics.fast.endpoints")),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|p| p.starts_with("endpoints.api")),
        "{paths:?}"
    );
    assert!(
        lines.iter().all(|l| l["level"] == "ERROR"),
        "refusals are errors: {lines:?}"
    );

    // Still the old config: its topic is served, and no reload was applied.
    let fast = rest.start("fast", json!({})).await;
    rest.wait_ended(&fast, Duration::from_secs(15)).await;
    assert!(messages(&procos, "Config reloaded.").is_empty());
    assert!(
        procos.log_lines().iter().all(|l| !l.contains(secret)),
        "the secret leaked into the logs"
    );
}

/// `procos stats --format json` in `dir`: calls of `echo` on `topic`.
fn echo_calls(dir: &Path, topic: &str) -> Option<u64> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_procos"))
        .args(["stats", "--config", "pde.yaml", "--format", "json"])
        .current_dir(dir)
        .env("CAMUNDA_URL", "http://127.0.0.1:9/engine-rest")
        .output()
        .ok()?;
    let report: Value = serde_json::from_slice(&out.stdout).ok()?;
    report["topics"]
        .as_array()?
        .iter()
        .find(|t| t["topic"] == topic)?["endpoints"]
        .as_array()?
        .iter()
        .find(|r| r["endpoint"] == "echo")?["calls"]
        .as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_learner_counted_before_a_reload_is_still_counted_after_it() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let work = workdir(&with_state_dir(&cfg(FAST)));
    let procos = Procos::daemon(&work, &engine.url);
    rest.wait_deployed("fast", Duration::from_secs(30)).await;
    let run = |n: usize| {
        let rest = &rest;
        async move {
            let mut pis = Vec::new();
            for _ in 0..n {
                pis.push(rest.start("fast", json!({})).await);
            }
            for pi in pis {
                rest.wait_ended(&pi, Duration::from_secs(15)).await;
            }
        }
    };
    run(5).await;
    // The reload rebuilds `echo` (and so the topic) and adds a topic.
    let changed = with_state_dir(&config(
        "",
        &["echo", "slowpoke"],
        &format!("{FAST}{ADDED}"),
        "  echo: { type: noop, timeout: 5s }\n  slowpoke: { type: noop, delay: 4s }\n",
    ));
    write_config(&work, &changed);
    sighup(&procos);
    reloaded(&procos, 1).await;
    run(3).await;
    let mut last = None;
    let counted = eventually(Duration::from_secs(20), || {
        last = echo_calls(work.path(), "fast");
        let ok = last == Some(8);
        async move { ok }
    })
    .await;
    assert!(
        counted,
        "procos stats never counted 5 + 3 calls; last: {last:?}"
    );
}

/// `/api/status` follows the config in force: an endpoint a reload adds is listed (with its
/// topic), one it removes is not. Before, the endpoint list stayed as at start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_lists_the_endpoints_of_the_reloaded_config() {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let work = workdir(&cfg(&format!("{FAST}{SLOW}")));
    let procos = Procos::daemon(&work, &engine.url);
    rest.wait_deployed("added", Duration::from_secs(30)).await;
    procos
        .wait_log("Admin server listening.", Duration::from_secs(10))
        .await;
    let addr = procos
        .log_json()
        .iter()
        .find(|l| l["message"] == "Admin server listening.")
        .and_then(|l| l["address"].as_str().map(str::to_string))
        .expect("the line names the address");
    let status = || async {
        reqwest::get(format!("http://{addr}/api/status"))
            .await
            .expect("admin answers")
            .json::<Value>()
            .await
            .expect("JSON")
    };
    let names = |doc: &Value, list: &str| -> Vec<String> {
        doc[list]
            .as_array()
            .expect("a list")
            .iter()
            .map(|e| e["name"].as_str().expect("a name").to_string())
            .collect()
    };
    assert_eq!(names(&status().await, "endpoints"), ["echo", "slowpoke"]);

    let reloaded_cfg = config(
        "",
        &["echo", "extra"],
        &format!("{FAST}  added: {{ pool: gp, endpoints: [extra] }}\n"),
        "  echo: { type: noop }\n  extra: { type: noop, delay: 10ms }\n",
    );
    write_config(&work, &reloaded_cfg);
    sighup(&procos);
    reloaded(&procos, 1).await;
    let doc = status().await;
    assert_eq!(names(&doc, "endpoints"), ["echo", "extra"], "{doc:#}");
    assert_eq!(names(&doc, "topics"), ["added", "fast"], "{doc:#}");
    assert_eq!(doc["config"]["version"], 2);
}
