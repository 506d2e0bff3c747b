//! The real Camunda external-task clients from npm and PyPI, run against `procos engine` by
//! tests/e2e_clients.rs: installing them, starting the engine as its own process, deploying the
//! client models, and running one client program while collecting what it prints.
//!
//! ```text
//! tests/clients/node/    package.json + package-lock.json (pinned), client.mjs
//!        │ npm ci           → target/test-clients/node/      (node_modules, client.mjs copied in)
//! tests/clients/python/  requirements.txt (pinned), client.py
//!        │ pip install -r   → target/test-clients/venv/      (client.py runs from the source tree)
//! tests/clients/bpmn/    the models, deployed in one deployment
//! ```
//!
//! `.ci/run` installs both up front; a test that finds them missing (or installed from other
//! pins) installs them itself under a file lock, so parallel tests install once and
//! `cargo test --locked` works on a fresh machine with `node`/`npm` and `python3` on the PATH.
//! An install is current when its stamp file holds the same bytes as the pinned manifest.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

use super::{Procos, Rest, eventually, free_port, repo};

/// One of the three real clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// `camunda-external-task-client-js` (npm), the official client.
    Js,
    /// `camunda-external-task-client-python3` (PyPI), module `camunda`.
    CamundaPython,
    /// `operaton-external-task-client-python3` (PyPI), module `operaton`.
    OperatonPython,
}

impl ClientKind {
    /// A short name for worker ids and messages.
    pub fn name(self) -> &'static str {
        match self {
            ClientKind::Js => "js",
            ClientKind::CamundaPython => "camunda-python",
            ClientKind::OperatonPython => "operaton-python",
        }
    }
}

/// Where the clients are installed: `<repo>/target/test-clients` (the path `.ci/run` uses).
pub fn clients_dir() -> PathBuf {
    repo().join("target").join("test-clients")
}

/// Holds an exclusive lock on `<clients_dir>/<name>.lock` while alive (released on drop).
struct InstallLock(std::fs::File);

impl InstallLock {
    fn take(name: &str) -> Self {
        let dir = clients_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let path = dir.join(format!("{name}.lock"));
        let file =
            std::fs::File::create(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        file.lock()
            .unwrap_or_else(|e| panic!("lock {}: {e}", path.display()));
        Self(file)
    }
}

/// Whether `stamp` holds exactly `manifest`'s bytes (the install matches the pins).
fn current(stamp: &Path, manifest: &[u8]) -> bool {
    std::fs::read(stamp).is_ok_and(|s| s == manifest)
}

/// Runs an install step; panics with its output when it fails.
fn run(cmd: &mut std::process::Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start ({e}); is it installed?"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Copies `from` to `to` unless equal, through a temporary file and a rename, so a client
/// starting meanwhile never reads half a file.
fn sync_file(from: &Path, to: &Path) {
    let content = std::fs::read(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()));
    if std::fs::read(to).is_ok_and(|c| c == content) {
        return;
    }
    let tmp = to.with_extension("tmp");
    let mut file =
        std::fs::File::create(&tmp).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    file.write_all(&content)
        .unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, to).unwrap_or_else(|e| panic!("rename to {}: {e}", to.display()));
}

/// The JS client installed by `npm ci` from tests/clients/node's pinned lock file, with the
/// client program next to its `node_modules`; returns that directory.
pub fn install_node() -> PathBuf {
    let _lock = InstallLock::take("node");
    let src = repo().join("tests/clients/node");
    let dir = clients_dir().join("node");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let manifest = std::fs::read(src.join("package-lock.json")).expect("package-lock.json");
    let stamp = dir.join(".installed-package-lock.json");
    if !current(&stamp, &manifest) {
        for file in ["package.json", "package-lock.json"] {
            sync_file(&src.join(file), &dir.join(file));
        }
        run(
            std::process::Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir),
            "npm ci (tests/clients/node)",
        );
        std::fs::write(&stamp, &manifest).expect("write the npm stamp");
    }
    sync_file(&src.join("client.mjs"), &dir.join("client.mjs"));
    dir
}

/// The Python clients installed into a venv from tests/clients/python/requirements.txt;
/// returns the venv's interpreter.
pub fn install_python() -> PathBuf {
    let _lock = InstallLock::take("venv");
    let venv = clients_dir().join("venv");
    let python = venv.join("bin").join("python3");
    let requirements = repo().join("tests/clients/python/requirements.txt");
    let manifest = std::fs::read(&requirements).expect("requirements.txt");
    let stamp = venv.join(".installed-requirements.txt");
    if !current(&stamp, &manifest) {
        if !python.exists() {
            run(
                std::process::Command::new("python3")
                    .args(["-m", "venv"])
                    .arg(&venv),
                "python3 -m venv target/test-clients/venv",
            );
        }
        run(
            std::process::Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                ])
                .arg(&requirements),
            "pip install -r tests/clients/python/requirements.txt",
        );
        std::fs::write(&stamp, &manifest).expect("write the pip stamp");
    }
    python
}

/// `procos engine` running as its own process on a free port.
pub struct EngineProcess {
    /// The engine process (killed on drop).
    pub procos: Procos,
    /// Its base URL, `http://127.0.0.1:<port>/engine-rest`.
    pub url: String,
    /// A REST helper on it.
    pub rest: Rest,
    _dir: tempfile::TempDir,
}

/// Starts `procos engine --listen 127.0.0.1:<free port>` and waits until it answers.
pub async fn engine_process() -> EngineProcess {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = format!("127.0.0.1:{}", free_port());
    let url = format!("http://{listen}/engine-rest");
    let procos = Procos::spawn(dir.path(), &["engine", "--listen", &listen], &[]);
    let rest = Rest::new(&url);
    let up = eventually(Duration::from_secs(20), || async {
        rest.http.get(format!("{url}/version")).send().await.is_ok()
    })
    .await;
    assert!(
        up,
        "procos engine answers on {url}; logs:\n{}",
        procos.log_lines().join("\n")
    );
    EngineProcess {
        procos,
        url,
        rest,
        _dir: dir,
    }
}

/// Deploys every model in tests/clients/bpmn/ in one deployment (one part per file, each with
/// its own part name as Camunda requires) and returns the deployment's answer.
pub async fn deploy_models(rest: &Rest) -> Value {
    let dir = repo().join("tests/clients/bpmn");
    let mut form = reqwest::multipart::Form::new()
        .text("deployment-name", "clients")
        .text("deployment-source", "procos e2e_clients");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/clients/bpmn")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for path in files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("file name")
            .to_owned();
        let xml = std::fs::read(&path).expect("read model");
        form = form.part(
            name.clone(),
            reqwest::multipart::Part::bytes(xml)
                .file_name(name)
                .mime_str("application/octet-stream")
                .expect("mime"),
        );
    }
    let r = rest
        .http
        .post(format!("{}/deployment/create", rest.url))
        .multipart(form)
        .send()
        .await
        .expect("POST /deployment/create");
    let status = r.status();
    let body: Value = r.json().await.expect("deployment answer is JSON");
    assert!(
        status.is_success(),
        "deploy tests/clients/bpmn: {status} {body}"
    );
    body
}

/// A running client program: its outcome lines (JSON on stdout) and its log (stderr and any
/// stdout line that is not JSON), collected as they come.
pub struct ClientRun {
    /// Which client runs.
    pub kind: ClientKind,
    child: Child,
    stdin: ChildStdin,
    outcomes: Arc<Mutex<Vec<Value>>>,
    log: Arc<Mutex<Vec<String>>>,
}

impl ClientRun {
    /// Installs the client if needed and starts its program against `url` as worker
    /// `procos-test-<kind>`, with the client's default settings.
    pub async fn start(kind: ClientKind, url: &str) -> Self {
        let worker = format!("procos-test-{}", kind.name());
        let mut cmd = match kind {
            ClientKind::Js => {
                let dir = tokio::task::spawn_blocking(install_node)
                    .await
                    .expect("npm install");
                let mut cmd = Command::new("node");
                cmd.arg(dir.join("client.mjs")).current_dir(dir);
                cmd
            }
            ClientKind::CamundaPython | ClientKind::OperatonPython => {
                let python = tokio::task::spawn_blocking(install_python)
                    .await
                    .expect("pip install");
                let mut cmd = Command::new(python);
                cmd.arg(repo().join("tests/clients/python/client.py"))
                    .arg(if kind == ClientKind::CamundaPython {
                        "camunda"
                    } else {
                        "operaton"
                    })
                    .env("PYTHONUNBUFFERED", "1");
                cmd
            }
        };
        cmd.args([url, &worker])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("the {} client starts: {e}", kind.name()));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let (o, l) = (outcomes.clone(), log.clone());
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) if v.is_object() => o.lock().expect("outcomes").push(v),
                    _ => l.lock().expect("log").push(line),
                }
            }
        });
        let stderr = child.stderr.take().expect("stderr");
        let l = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                l.lock().expect("log").push(line);
            }
        });
        let stdin = child.stdin.take().expect("stdin");
        Self {
            kind,
            child,
            stdin,
            outcomes,
            log,
        }
    }

    /// Every outcome line so far.
    pub fn outcomes(&self) -> Vec<Value> {
        self.outcomes.lock().expect("outcomes").clone()
    }

    /// The outcome lines of instance `pi` so far.
    pub fn outcomes_of(&self, pi: &str) -> Vec<Value> {
        self.outcomes()
            .into_iter()
            .filter(|o| o["pi"] == json!(pi))
            .collect()
    }

    /// The first outcome that means the client cannot get on (a refused poll, a handler that
    /// threw, a refused complete / failure / BPMN error / extendLock): tests waiting for an
    /// engine state stop at once on it instead of running out their deadline.
    pub fn stuck(&self) -> Option<Value> {
        self.outcomes().into_iter().find(|o| {
            o["outcome"]
                .as_str()
                .is_some_and(|name| name.ends_with("_error") && name != "bpmn_error")
        })
    }

    /// What the client printed, for assertion messages: its outcomes and the end of its log.
    pub fn report(&self) -> String {
        let outcomes: Vec<String> = self.outcomes().iter().map(Value::to_string).collect();
        let log = self.log.lock().expect("log").clone();
        let tail = &log[log.len().saturating_sub(40)..];
        format!(
            "{} client outcomes:\n{}\n{} client log (last {} lines):\n{}",
            self.kind.name(),
            outcomes.join("\n"),
            self.kind.name(),
            tail.len(),
            tail.join("\n")
        )
    }

    /// Waits until the client printed an outcome `outcome` for instance `pi`, and returns it;
    /// panics with the client's report if it did not within `within`.
    pub async fn wait_outcome(&self, outcome: &str, pi: &str, within: Duration) -> Value {
        let find = || {
            self.outcomes_of(pi)
                .into_iter()
                .find(|o| o["outcome"] == json!(outcome))
        };
        eventually(within, || async {
            find().is_some() || self.stuck().is_some()
        })
        .await;
        assert!(
            find().is_some(),
            "no {outcome:?} outcome for instance {pi} within {within:?}\n{}",
            self.report()
        );
        find().expect("found above")
    }

    /// Writes one line to the client's stdin.
    pub async fn send(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to the client's stdin");
        self.stdin.flush().await.expect("flush the client's stdin");
    }

    /// Whether the client program is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}
