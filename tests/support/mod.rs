//! Shared harness for end-to-end tests: the in-repo Camunda-compatible engine, the real `procos`
//! binary as a child process, and polling helpers that wait for an outcome with a deadline.
#![allow(dead_code)]

pub mod ai;
pub mod clients;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use procos::engine::{EngineOptions, RunningEngine};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts the in-memory engine on a free loopback port.
pub async fn engine() -> RunningEngine {
    procos::engine::Engine::start_local(EngineOptions {
        quiet: true,
        ..Default::default()
    })
    .await
    .expect("engine starts")
}

/// A working directory for one procos run: config, bpmn/, scripts/.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    /// A fresh dir with the given config and the repo's example scripts; bpmn/ holds `bpmn` files.
    pub fn new(config: &str, bpmn: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pde.yaml"), config).expect("write config");
        std::fs::create_dir_all(dir.path().join("bpmn")).expect("bpmn dir");
        for (name, xml) in bpmn {
            std::fs::write(dir.path().join("bpmn").join(name), xml).expect("write bpmn");
        }
        let scripts = dir.path().join("scripts");
        std::fs::create_dir_all(&scripts).expect("scripts dir");
        for entry in std::fs::read_dir(repo().join("scripts")).expect("repo scripts") {
            let path = entry.expect("entry").path();
            std::fs::copy(&path, scripts.join(path.file_name().expect("name")))
                .expect("copy script");
        }
        Self { dir }
    }

    /// A copy of the repo's own config/, bpmn/ and scripts/, without `bpmn/system/`: the health monitor's timer starts an
    /// instance every minute, which would add tasks to tests that count the engine's work (e2e_health_monitor deploys
    /// it itself).
    pub fn from_repo() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["config", "bpmn", "scripts", "receipts"] {
            copy_dir(&repo().join(sub), &dir.path().join(sub));
        }
        std::fs::remove_dir_all(dir.path().join("bpmn/system")).expect("no system processes");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a script into scripts/.
    pub fn script(&self, name: &str, body: &str) {
        std::fs::write(self.path().join("scripts").join(name), body).expect("write script");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running procos child process whose JSON log lines are collected.
pub struct Procos {
    pub child: Child,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Procos {
    /// Runs `procos <args>` in `dir` with JSON logs.
    pub fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_procos"));
        cmd.args(args)
            .args(["--log-format", "json"])
            .current_dir(dir)
            .env("RUST_LOG", "info,procos=debug")
            // The admin server on a free port (the default 9464 is one per machine); a test
            // reads it from the "Admin server listening." line, or passes its own.
            .env("PROCOS_METRICS_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("procos starts");
        let logs = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let logs = logs.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if std::env::var_os("PROCOS_TEST_LOGS").is_some() {
                        eprintln!("{line}");
                    }
                    logs.lock().expect("logs").push(line);
                }
            });
        }
        Self { child, logs }
    }

    /// Runs the daemon on `dir/pde.yaml` against `url`.
    pub fn daemon(work: &Workdir, url: &str) -> Self {
        Self::spawn(
            work.path(),
            &["--config", "pde.yaml"],
            &[("CAMUNDA_URL", url)],
        )
    }

    /// All log lines so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.logs.lock().expect("logs").clone()
    }

    /// Log lines parsed as JSON.
    pub fn log_json(&self) -> Vec<Value> {
        self.log_lines()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until a log line contains `needle`.
    pub async fn wait_log(&self, needle: &str, within: Duration) {
        let found = eventually(within, || async {
            self.log_lines().iter().any(|l| l.contains(needle))
        })
        .await;
        assert!(
            found,
            "no log line containing {needle:?} within {within:?}; logs:\n{}",
            self.log_lines().join("\n")
        );
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let pid = self.child.id().expect("running") as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("kill");
    }

    /// Waits for exit and returns the code.
    pub async fn exit_code(&mut self, within: Duration) -> i32 {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("wait").code().unwrap_or(-1),
            Err(_) => panic!(
                "procos did not exit within {within:?}; logs:\n{}",
                self.log_lines().join("\n")
            ),
        }
    }
}

/// Polls `check` every 50 ms until it is true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A small REST helper for the engine under test.
#[derive(Clone)]
pub struct Rest {
    pub url: String,
    pub http: reqwest::Client,
}

impl Rest {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("GET");
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        let text = r.text().await.expect("body");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {text}"))
    }

    pub async fn text(&self, path: &str) -> String {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("GET");
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.text().await.expect("text")
    }

    /// Starts an instance of `key` with plain JSON variables (typed explicitly).
    pub async fn start(&self, key: &str, vars: Value) -> String {
        let variables =
            procos::camunda::variables::encode_json_map(vars.as_object().expect("object"));
        self.start_typed(key, json!(variables)).await
    }

    /// Starts an instance of `key` with variables already in Camunda's wire form
    /// (`{name: {value, type, valueInfo}}`) and returns its id.
    pub async fn start_typed(&self, key: &str, variables: Value) -> String {
        let r = self
            .http
            .post(format!("{}/process-definition/key/{key}/start", self.url))
            .json(&json!({ "variables": variables }))
            .send()
            .await
            .expect("start");
        let status = r.status();
        let body: Value = r.json().await.expect("json");
        assert!(status.is_success(), "start {key}: {status} {body}");
        body["id"].as_str().expect("id").to_string()
    }

    /// Waits until `key` is deployed.
    pub async fn wait_deployed(&self, key: &str, within: Duration) {
        let ok = eventually(within, || async {
            let r = self
                .http
                .get(format!("{}/process-definition/key/{key}", self.url))
                .send()
                .await;
            r.map(|r| r.status().is_success()).unwrap_or(false)
        })
        .await;
        assert!(ok, "process {key} was not deployed within {within:?}");
    }

    /// The historic state of an instance (`ACTIVE`, `COMPLETED`, …).
    pub async fn state(&self, pi: &str) -> String {
        self.get(&format!("/history/process-instance/{pi}")).await["state"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Waits until the instance has ended and returns its final variables (name → value).
    pub async fn wait_ended(&self, pi: &str, within: Duration) -> serde_json::Map<String, Value> {
        let ok = eventually(within, || async { self.state(pi).await == "COMPLETED" }).await;
        assert!(
            ok,
            "instance {pi} did not complete within {within:?} (state {})",
            self.state(pi).await
        );
        self.variables(pi).await
    }

    /// Final (historic) variables of an instance, name → value as sent.
    pub async fn variables(&self, pi: &str) -> serde_json::Map<String, Value> {
        let list = self
            .get(&format!(
                "/history/variable-instance?processInstanceId={pi}"
            ))
            .await;
        list.as_array()
            .expect("array")
            .iter()
            .map(|v| {
                let wire: procos::camunda::TypedValue =
                    serde_json::from_value(v.clone()).expect("typed value");
                let name = v["name"].as_str().unwrap_or("").to_string();
                let decoded = procos::camunda::Variable::decode(&name, &wire).expect("decodes");
                (name, decoded.value)
            })
            .collect()
    }

    /// Incidents of an instance.
    pub async fn incidents(&self, pi: &str) -> Vec<Value> {
        self.get(&format!("/incident?processInstanceId={pi}"))
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The engine's test-only counters.
    pub async fn stats(&self) -> Value {
        self.get("/_procos/stats").await
    }
}

/// A process with one external task on `topic`; a BPMN error `error_code` on it ends at `caught`.
pub fn one_task_bpmn(key: &str, topic: &str, error_code: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d_{key}" targetNamespace="http://procos.dev/test">
  <bpmn:error id="err" errorCode="{error_code}" />
  <bpmn:process id="{key}" isExecutable="true" camunda:historyTimeToLive="P1D">
    <bpmn:startEvent id="start" />
    <bpmn:serviceTask id="work" camunda:type="external" camunda:topic="{topic}" />
    <bpmn:boundaryEvent id="caught_err" attachedToRef="work"><bpmn:errorEventDefinition errorRef="err" /></bpmn:boundaryEvent>
    <bpmn:endEvent id="done" />
    <bpmn:endEvent id="caught" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="work" />
    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="done" />
    <bpmn:sequenceFlow id="f3" sourceRef="caught_err" targetRef="caught" />
  </bpmn:process>
</bpmn:definitions>"#
    )
}

/// A config with one pool `gp` over the given endpoints and topics (YAML snippets, indented by
/// two spaces under `topics:` and `endpoints:`). `camunda_extra` goes under `camunda:`.
pub fn config(
    camunda_extra: &str,
    pool_endpoints: &[&str],
    topics: &str,
    endpoints: &str,
) -> String {
    format!(
        "camunda:\n  url: ${{CAMUNDA_URL}}\n  long_poll: 2s\n  backoff: {{ initial: 100ms, max: 1s }}\n{camunda_extra}\ndeploy:\n  dir: bpmn\n  debounce: 200ms\npde_manager:\n  shutdown_grace: 10s\n  pools:\n    gp: {{ instances: 2, endpoints: [{}], max_concurrent_tasks: 10 }}\ntopics:\n{topics}\nendpoints:\n{endpoints}\n",
        pool_endpoints.join(", ")
    )
}

/// `cfg` (from [`config`]) with `pde_manager.state_dir: state`: the outcome journal and the
/// learner on disk under the work dir. Panics if `cfg` has no `pde_manager:` to add it to, so a
/// test meant to exercise the store can never silently run without one.
pub fn with_state_dir(cfg: &str) -> String {
    assert!(
        cfg.contains("pde_manager:\n"),
        "no pde_manager: section in {cfg}"
    );
    cfg.replacen("pde_manager:\n", "pde_manager:\n  state_dir: state\n", 1)
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Starts the SMTP sink on a free port; returns it (killed on drop), its port and its mail dir.
/// Without aiosmtpd the script installs it into target/test-python first (hence the long wait).
pub async fn smtp_sink() -> (Child, u16, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new("python3")
        .arg(repo().join("tests/support/smtp_sink.py"))
        .args(["--port", "0", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("smtp_sink.py starts");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    tokio::time::timeout(
        Duration::from_secs(180),
        BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .expect("the sink starts")
    .expect("read");
    let port = line.trim().rsplit(':').next().and_then(|p| p.parse().ok());
    (child, port.expect("listening on 127.0.0.1:<port>"), dir)
}

/// The usual end-to-end stage: the engine, a REST helper on it, and the real daemon running
/// `cfg` with one one-task process (`key`, on `topic`), already deployed.
pub struct Stage {
    pub engine: RunningEngine,
    pub rest: Rest,
    pub work: Workdir,
    pub procos: Procos,
}

/// Sets up a [`Stage`].
pub async fn stage(cfg: &str, key: &str, topic: &str) -> Stage {
    stage_with_scripts(cfg, key, topic, &[]).await
}

/// [`stage`] with `scripts` (name, body) in scripts/ before procos starts, so an interpreter
/// kept warm never sees a script half-written or changed under it.
pub async fn stage_with_scripts(
    cfg: &str,
    key: &str,
    topic: &str,
    scripts: &[(&str, &str)],
) -> Stage {
    let engine = engine().await;
    let rest = Rest::new(&engine.url);
    let work = Workdir::new(
        cfg,
        &[(&format!("{key}.bpmn"), &one_task_bpmn(key, topic, "NEVER"))],
    );
    for (name, body) in scripts {
        work.script(name, body);
    }
    let procos = Procos::daemon(&work, &engine.url);
    rest.wait_deployed(key, Duration::from_secs(30)).await;
    Stage {
        engine,
        rest,
        work,
        procos,
    }
}

pub mod fault_proxy;
pub mod postgres;
pub mod sink;
// issue 13: the throwaway RabbitMQ node of tests/e2e_amqp.rs
pub mod rabbitmq;
