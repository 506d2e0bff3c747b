//! `python`: runs a script from `scripts_dir` as a subprocess, one per task.
//!
//! ```text
//! task ─► stdin  {"variables", "properties", "business_key", "task": {id, topic, activity_id,
//!                 process_instance_id}, "feedback"}
//!         python3 <scripts_dir>/<script>   (no shell; cleared environment; cwd = scripts_dir)
//!      ◄─ stdout JSON ─► the result            exit 0
//!         {"bpmn_error": {"code", "message"}} ─► BPMN error (business outcome)   exit 0
//!         exit 2 (usage error) ─► Permanent `exit_2`; other non-zero ─► Transient `exit_<n>`
//! ```
//!
//! The script is `script` from the config, else the activity's `pde.script` property, else
//! `<topic>.py`; it must be a plain file name inside `scripts_dir`. Empty stdout on exit 0 is a
//! `null` result. Errors carry the last 4 KiB of stderr as details, and the message quotes its
//! last line (for a Python exception, the exception itself).
//!
//! Bounds: `worker_pool_size` scripts run at once, each for at most `max_execution_time` (then it
//! is killed: Transient `timeout`), printing at most `max_output_bytes` on stdout (Permanent
//! `output_too_large`). Cancelling the task kills the script. The script runs in a process
//! group of its own, and a kill takes the whole group: processes it started die with it.
//!
//! Scripts die with procos: on SIGKILL of procos by the kernel's parent-death signal, on the
//! second signal (exit 130) with their whole group (see [`lifetime`] for the how and its limits).
//!
//! `mode: warm` keeps up to `worker_pool_size` interpreters per script that import it once and
//! call its `handle(task)` per task, with the same input and the same outcomes (see [`warm`]):
//! `max_tasks_per_worker` recycles them, `reload: on_change` (the default) replaces them when the
//! script's modification time changes.
//!
//! `pure: true` declares that the script has no side effects (it only computes from its input),
//! so a task whose run was interrupted may run it again; by default a script is assumed to
//! change something and never runs twice for one task (see [`Endpoint::side_effects`]).

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::stack::{self, CircuitConfig, Policy, ProbeConfig, RetryBudgetConfig, RetryPolicy};
use super::{BuildContext, Endpoint, EndpointError, EndpointReply, EndpointRequest};
use crate::config::Secret;
use crate::endpoints::class;

mod lifetime;
pub mod sandbox;
mod warm;

pub use lifetime::kill_running_scripts;

/// The only `PATH` a script sees (unless `env` sets another): no user or procos directories.
pub(crate) const SAFE_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// How much of stderr is kept for an error's details.
const STDERR_TAIL: usize = 4 * 1024;
/// How much of an invalid stdout is quoted.
const EXCERPT: usize = 200;
/// Most scripts one endpoint runs at once: far above what a host runs well, far below what a
/// semaphore can count.
pub const MAX_WORKER_POOL_SIZE: usize = 10_000;
/// Longest `max_execution_time`: a script past a day is stuck, and its task's lock is extended
/// all that time.
pub const MAX_EXECUTION_TIME: Duration = Duration::from_secs(24 * 60 * 60);
/// Largest `max_output_bytes`: stdout is held in memory and goes into process variables.
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024 * 1024;

/// `type: python`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PythonConfig {
    /// Directory holding the scripts; also the scripts' working directory.
    #[serde(default = "default_scripts_dir")]
    pub scripts_dir: PathBuf,
    /// Fixed script file name; when absent, the `pde.script` property or `<topic>.py`.
    #[serde(default)]
    pub script: Option<String>,
    /// Interpreter: a name looked up in the scripts' `PATH`, or an absolute path.
    #[serde(default = "default_python")]
    pub python: String,
    /// `process` (the default): one interpreter per task, the script reads stdin and prints its
    /// result. `warm`: long-lived interpreters call the script's `handle(task)`.
    #[serde(default)]
    pub mode: Mode,
    /// Warm mode: tasks an interpreter serves before it is replaced (no limit when absent).
    #[serde(default)]
    pub max_tasks_per_worker: Option<u64>,
    /// Warm mode: `on_change` (the default) replaces interpreters whose script changed on disk;
    /// `never` keeps them until they are recycled.
    #[serde(default)]
    pub reload: Reload,
    /// Scripts running at once through this endpoint (warm: interpreters per script).
    #[serde(default = "default_worker_pool_size")]
    pub worker_pool_size: usize,
    /// A script running longer is killed (transient `timeout`).
    #[serde(default = "default_max_execution_time", with = "humantime_serde")]
    pub max_execution_time: Duration,
    /// Most bytes a script may print on stdout (permanent `output_too_large`).
    #[serde(default = "default_max_output_bytes")]
    pub max_output_bytes: usize,
    /// Extra environment variables; the only ones besides PATH, LANG and PYTHON* defaults.
    /// Values may be secrets and are never printed.
    #[serde(default)]
    pub env: BTreeMap<String, Secret>,
    /// The script only computes from its input: no writes, mails or calls that change anything.
    /// A pure script may run again for a task whose first run was interrupted; an impure one
    /// (the default, the safe assumption) never runs twice for one task.
    #[serde(default)]
    pub pure: bool,
    /// Extra runs after a transient failure (default 0). An impure script is never run again
    /// for a failure (it may have done its work before failing).
    #[serde(default)]
    pub max_retries: u32,
    /// First backoff delay; doubles per retry.
    #[serde(default = "stack::default_retry_backoff", with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// How many retries the calls may add (a share of the calls).
    #[serde(default)]
    pub retry_budget: RetryBudgetConfig,
    /// When to pause an endpoint whose scripts keep failing (time-outs, crashes).
    #[serde(default)]
    pub circuit: CircuitConfig,
    /// The background probe: the interpreter starts, and the script file (when `script` fixes
    /// one) or `scripts_dir` is readable. Off by default (a local check); `probe: {enabled: true}`.
    #[serde(default)]
    pub probe: ProbeConfig,
    /// Confine every script with the kernel (see [`sandbox`]): `true` for the defaults, or a map.
    #[serde(default, deserialize_with = "sandbox::deserialize")]
    pub sandbox: Option<sandbox::SandboxConfig>,
}

/// How the python endpoint runs a script.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One interpreter per task: stdin → the script → stdout and exit code.
    #[default]
    Process,
    /// Long-lived interpreters calling `handle(task)`; no start-up cost per task.
    Warm,
}

/// When warm interpreters import a script again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reload {
    /// When the script file's modification time changed (checked before each task).
    #[default]
    OnChange,
    /// Only when an interpreter is replaced (crash, timeout, `max_tasks_per_worker`).
    Never,
}

fn default_scripts_dir() -> PathBuf {
    PathBuf::from("scripts")
}
fn default_python() -> String {
    "python3".into()
}
fn default_worker_pool_size() -> usize {
    5
}
fn default_max_execution_time() -> Duration {
    Duration::from_secs(120)
}
fn default_max_output_bytes() -> usize {
    1024 * 1024
}

impl Default for PythonConfig {
    fn default() -> Self {
        Self {
            scripts_dir: default_scripts_dir(),
            script: None,
            python: default_python(),
            mode: Mode::default(),
            max_tasks_per_worker: None,
            reload: Reload::default(),
            worker_pool_size: default_worker_pool_size(),
            max_execution_time: default_max_execution_time(),
            max_output_bytes: default_max_output_bytes(),
            env: BTreeMap::new(),
            pure: false,
            max_retries: 0,
            retry_backoff: stack::default_retry_backoff(),
            retry_budget: RetryBudgetConfig::default(),
            circuit: CircuitConfig::default(),
            probe: ProbeConfig::default(),
            sandbox: None,
        }
    }
}

impl PythonConfig {
    /// How the stack wraps this endpoint: `max_execution_time` is its timeout and
    /// `worker_pool_size` its concurrency limit.
    pub fn policy(&self) -> Policy {
        Policy {
            timeout: Some(self.max_execution_time + stack::TIMEOUT_GRACE),
            max_concurrency: Some(self.worker_pool_size),
            circuit: self.circuit.clone(),
            retry: RetryPolicy::new(self.max_retries, self.retry_backoff, &self.retry_budget),
            probe: self.probe.schedule(false),
        }
    }

    /// Every problem of this config as (path suffix, message). Pure: the filesystem is not
    /// touched (a missing script is reported per task, naming its path).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut problem = |path: &str, message: String| problems.push((path.into(), message));
        if !(1..=MAX_WORKER_POOL_SIZE).contains(&self.worker_pool_size) {
            problem(
                "worker_pool_size",
                format!("must be between 1 and {MAX_WORKER_POOL_SIZE}"),
            );
        }
        if self.max_execution_time.is_zero() {
            problem("max_execution_time", "must be greater than zero".into());
        } else if self.max_execution_time > MAX_EXECUTION_TIME {
            problem(
                "max_execution_time",
                format!(
                    "{} is longer than the limit of 24h",
                    humantime::format_duration(self.max_execution_time)
                ),
            );
        }
        if !(1..=MAX_OUTPUT_BYTES).contains(&self.max_output_bytes) {
            problem(
                "max_output_bytes",
                format!("must be between 1 and {MAX_OUTPUT_BYTES} (1 GiB)"),
            );
        }
        if self.max_tasks_per_worker == Some(0) {
            problem("max_tasks_per_worker", "must be at least 1".into());
        }
        if self.python.trim().is_empty() {
            problem("python", "must name an interpreter".into());
        }
        if let Some(script) = &self.script
            && let Err(message) = check_script_name(script)
        {
            problem("script", message);
        }
        for key in self.env.keys() {
            if key.is_empty() || key.contains(['=', '\0']) {
                problem(&format!("env.{key}"), "is not a valid variable name".into());
            }
        }
        if let Some(sandbox) = &self.sandbox {
            problems.extend(
                sandbox
                    .validate()
                    .into_iter()
                    .map(|(p, m)| (format!("sandbox.{p}"), m)),
            );
        }
        problems.extend(stack::validate(
            None,
            None,
            &self.circuit,
            &self.probe,
            Some(&self.retry_budget),
        ));
        problems
    }
}

impl PythonConfig {
    /// `mode: warm` with a fixed `script` that does not define `handle(task)`: the problem, for
    /// `procos validate` (it reads the file, so it is not part of the pure [`Self::validate`]).
    /// A cheap text check for `def handle(`; the runner's check at import is authoritative.
    /// `None` when the mode or the script is chosen per task, or the file cannot be read (that
    /// is reported per task, naming its path).
    pub fn warm_script_problem(&self) -> Option<(String, String)> {
        let script = self.script.as_ref().filter(|_| self.mode == Mode::Warm)?;
        let source = std::fs::read_to_string(self.scripts_dir.join(script)).ok()?;
        (!source.contains("def handle(")).then(|| ("script".into(), no_handle_message(script)))
    }
}

/// A script name must be a plain file name: no separators, no `.`/`..`, not hidden.
fn check_script_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("the script name is empty".into())
    } else if name.contains(['/', '\\', '\0']) || name.starts_with('.') {
        Err(format!(
            "script `{name}` must be a plain file name inside scripts_dir"
        ))
    } else {
        Ok(())
    }
}

/// The python endpoint.
#[derive(Debug)]
pub struct PythonEndpoint {
    name: String,
    /// Absolute, so the child's working directory and the script path agree.
    scripts_dir: PathBuf,
    script: Option<String>,
    python: PathBuf,
    max_execution_time: Duration,
    max_output_bytes: usize,
    env: Vec<(String, Secret)>,
    /// From the config: the script has no side effects.
    pure: bool,
    /// `sandbox:` resolved at build; `None`: scripts run with procos's rights.
    sandbox: Option<sandbox::Sandbox>,
    /// `mode: warm`: the limits of its interpreters; `None` in process mode.
    warm: Option<warm::WarmLimits>,
    /// Idle warm interpreters per script.
    pools: warm::Pools,
}

impl PythonEndpoint {
    /// Builds it from its config (no filesystem access: paths are made absolute lexically —
    /// except with `sandbox`, which asks the interpreter for its prefixes and checks the kernel).
    pub fn new(name: &str, config: &PythonConfig) -> Result<Self, EndpointError> {
        let problems = config.validate();
        if !problems.is_empty() {
            let list: Vec<String> = problems.iter().map(|(p, m)| format!("{p}: {m}")).collect();
            return Err(EndpointError::permanent(format!(
                "python endpoint `{name}` is misconfigured: {}",
                list.join("; ")
            ))
            .code(class::CONFIG));
        }
        let absolute = |path: &Path| {
            std::path::absolute(path).map_err(|e| {
                EndpointError::permanent(format!(
                    "python endpoint `{name}`: cannot resolve `{}`: {e}",
                    path.display()
                ))
            })
        };
        // A relative interpreter path would be ambiguous once the working directory changes.
        let python = PathBuf::from(config.python.trim());
        let python = if python.components().count() > 1 && python.is_relative() {
            absolute(&python)?
        } else {
            python
        };
        let scripts_dir = absolute(&config.scripts_dir)?;
        let sandbox = match &config.sandbox {
            Some(sandbox) => Some(
                sandbox::Sandbox::prepare(name, sandbox, &python, &scripts_dir)
                    .map_err(|e| EndpointError::permanent(e.to_string()).code(class::CONFIG))?,
            ),
            None => None,
        };
        Ok(Self {
            name: name.to_string(),
            scripts_dir,
            script: config.script.clone(),
            python,
            max_execution_time: config.max_execution_time,
            max_output_bytes: config.max_output_bytes,
            env: config
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            pure: config.pure,
            sandbox,
            warm: (config.mode == Mode::Warm).then_some(warm::WarmLimits {
                max_execution_time: config.max_execution_time,
                max_output_bytes: config.max_output_bytes,
                idle: config.worker_pool_size,
                max_tasks: config.max_tasks_per_worker,
                reload: config.reload == Reload::OnChange,
            }),
            pools: warm::Pools::default(),
        })
    }

    /// Builds it like [`Self::new`] and, in warm mode with a fixed `script`, starts its
    /// interpreters in the background on the context's tracker (until shutdown), so the first
    /// tasks find them warm.
    pub fn with_context(
        name: &str,
        config: &PythonConfig,
        cx: &BuildContext,
    ) -> Result<std::sync::Arc<Self>, EndpointError> {
        let endpoint = std::sync::Arc::new(Self::new(name, config)?);
        if endpoint.warm.is_some() && endpoint.script.is_some() {
            let warming = endpoint.clone();
            let shutdown = cx.shutdown().clone();
            cx.tracker().spawn(async move {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    () = warming.warm_up() => {}
                }
            });
        }
        Ok(endpoint)
    }

    /// Warm mode with a fixed `script`: starts `worker_pool_size` interpreters and keeps them
    /// idle. A script that cannot start is logged (WARN) and reported again by each task.
    pub async fn warm_up(&self) {
        let (Some(limits), Some(script)) = (self.warm, &self.script) else {
            return;
        };
        let path = self.scripts_dir.join(script);
        let mtime = tokio::fs::metadata(&path)
            .await
            .and_then(|m| m.modified())
            .ok();
        let command = || self.spawnable(&["-c", warm::RUNNER, script]);
        match self.pools.warm_up(script, mtime, command, limits).await {
            Ok(started) => {
                tracing::info!(endpoint = %self.name, script, started, "Warm interpreters ready.")
            }
            Err(e) => tracing::warn!(
                endpoint = %self.name,
                script,
                error = %e.message,
                "Warm interpreters cannot start."
            ),
        }
    }

    /// Which script serves this request, checked to stay inside `scripts_dir`.
    fn script_for(&self, request: &EndpointRequest) -> Result<String, EndpointError> {
        let name = match (&self.script, request.properties.get("pde.script")) {
            (Some(fixed), _) => fixed.clone(),
            (None, Some(property)) => property.trim().to_string(),
            (None, None) => format!("{}.py", request.topic),
        };
        check_script_name(&name)
            .map(|()| name)
            .map_err(|m| EndpointError::permanent(m).code(class::INVALID_SCRIPT))
    }

    /// The interpreter's command: `args` are the script (process mode) or the runner and the
    /// script (warm mode).
    /// The command for `args`, confined by the endpoint's `sandbox:` when it has one; the
    /// returned directory (the sandbox's TMPDIR and HOME) must live as long as the process.
    fn spawnable(
        &self,
        args: &[&str],
    ) -> Result<(Command, Option<sandbox::TaskDir>), EndpointError> {
        let mut command = self.command(args);
        let dir = match &self.sandbox {
            Some(sandbox) => Some(
                sandbox
                    .confine(&mut command)
                    .map_err(|e| EndpointError::transient(e.to_string()).code(class::SPAWN))?,
            ),
            None => None,
        };
        Ok((command, dir))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.python);
        command
            .args(args)
            .current_dir(&self.scripts_dir)
            .env_clear()
            .env("PATH", SAFE_PATH)
            .env("LANG", "C.UTF-8")
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v.expose())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        command
    }

    /// Runs the script to completion (or kill); the stack's limit (`worker_pool_size`) holds
    /// a permit meanwhile.
    async fn run(
        &self,
        script: &str,
        input: Vec<u8>,
        request: &EndpointRequest,
    ) -> Result<EndpointReply, EndpointError> {
        let (command, _task_dir) = self.spawnable(&[script])?;
        let mut child = lifetime::spawn(command)
            .await
            .map_err(|e| spawn_error(script, &e))?;
        // Kills the script's whole process group unless it exited by itself, also when this
        // future is dropped half-way.
        let mut group = lifetime::Group::new(child.id());
        let started = Instant::now();
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let outcome = tokio::select! {
            biased;
            _ = request.cancel.cancelled() => Outcome::Cancelled,
            _ = tokio::time::sleep(self.max_execution_time) => Outcome::TimedOut,
            result = exchange(&mut child, input, &mut stdout, &mut stderr, self.max_output_bytes) => {
                match result {
                    Ok(status) => Outcome::Exited(status),
                    Err(RunError::Overflow) => Outcome::Overflow,
                    Err(RunError::Io(e)) => Outcome::Failed(e),
                }
            }
        };
        if matches!(outcome, Outcome::Exited(_)) {
            group.exited();
        } else {
            group.kill();
            // Reap; an error here means it already exited.
            let _ = child.kill().await;
        }
        tracing::debug!(
            endpoint = %self.name,
            script,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Script finished."
        );
        let with_stderr = |error: EndpointError| match stderr.is_empty() {
            true => error,
            false => error.details(tail(&stderr, STDERR_TAIL)),
        };
        match outcome {
            Outcome::Cancelled => Err(EndpointError::cancelled()),
            Outcome::TimedOut => Err(with_stderr(timeout_error(script, self.max_execution_time))),
            Outcome::Overflow => Err(with_stderr(overflow_error(script, self.max_output_bytes))),
            Outcome::Failed(e) => Err(with_stderr(
                EndpointError::transient(format!("script `{script}`: {e}")).code(class::IO),
            )),
            Outcome::Exited(status) if status.success() => parse_output(script, &stdout),
            Outcome::Exited(status) => Err(with_stderr(exit_error(script, status, &stderr))),
        }
    }
}

/// The interpreter could not be started: permanent when it is missing or not executable.
/// A script (or warm `handle`) killed after `max_execution_time`.
fn timeout_error(script: &str, max: Duration) -> EndpointError {
    EndpointError::transient(format!(
        "script `{script}` ran longer than {} and was killed",
        humantime::format_duration(max)
    ))
    .code(class::TIMEOUT)
}

/// A script (or warm `handle`) killed for answering more than `max_output_bytes`.
fn overflow_error(script: &str, max: usize) -> EndpointError {
    EndpointError::permanent(format!(
        "script `{script}` printed more than {max} bytes and was killed"
    ))
    .code(class::OUTPUT_TOO_LARGE)
}

/// What `mode: warm` says of a script without `handle(task)`, at validation and at start.
fn no_handle_message(script: &str) -> String {
    format!(
        "script `{script}` defines no `handle(task)` function, which `mode: warm` calls: \
         define `def handle(task):` returning the result, or use `mode: process`"
    )
}

fn spawn_error(script: &str, e: &std::io::Error) -> EndpointError {
    let message = format!("cannot start the interpreter for script `{script}`: {e}");
    match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
            EndpointError::permanent(message).code(class::INTERPRETER)
        }
        _ => EndpointError::transient(message).code(class::SPAWN),
    }
}

/// How a run ended.
enum Outcome {
    Exited(ExitStatus),
    Cancelled,
    TimedOut,
    Overflow,
    Failed(std::io::Error),
}

/// Why the exchange with the child stopped early.
enum RunError {
    Overflow,
    Io(std::io::Error),
}

/// Writes stdin, reads stdout (capped) and stderr (tail) concurrently, then waits for the exit.
async fn exchange(
    child: &mut Child,
    input: Vec<u8>,
    stdout: &mut Vec<u8>,
    stderr: &mut Vec<u8>,
    max_output: usize,
) -> Result<ExitStatus, RunError> {
    let (Some(mut stdin), Some(out), Some(err)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(RunError::Io(std::io::Error::other(
            "the child's pipes are missing",
        )));
    };
    let write = async move {
        // A script that exits without reading its input closes the pipe: not an error.
        let _ = stdin.write_all(&input).await;
        drop(stdin);
        Ok(())
    };
    let read_out = read_capped(out, stdout, max_output);
    let read_err = async {
        read_tail(err, stderr, STDERR_TAIL).await;
        Ok(())
    };
    let wait = async { child.wait().await.map_err(RunError::Io) };
    let ((), (), (), status) = tokio::try_join!(write, read_out, read_err, wait)?;
    Ok(status)
}

/// Reads everything into `buf`, failing as soon as it passes `max` bytes.
async fn read_capped(
    mut pipe: impl AsyncRead + Unpin,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<(), RunError> {
    let mut chunk = [0u8; 8192];
    loop {
        let n = pipe.read(&mut chunk).await.map_err(RunError::Io)?;
        if n == 0 {
            return Ok(());
        }
        if buf.len() + n > max {
            return Err(RunError::Overflow);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads everything, keeping only about the last `keep` bytes in `buf`.
async fn read_tail(mut pipe: impl AsyncRead + Unpin, buf: &mut Vec<u8>, keep: usize) {
    let mut chunk = [0u8; 8192];
    while let Ok(n) = pipe.read(&mut chunk).await {
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 2 * keep {
            buf.drain(..buf.len() - keep);
        }
    }
}

/// Exit 2 (usage error) is permanent; any other failure may pass on retry.
fn exit_error(script: &str, status: ExitStatus, stderr: &[u8]) -> EndpointError {
    let last_line = String::from_utf8_lossy(stderr)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!(": {}", l.trim().chars().take(EXCERPT).collect::<String>()))
        .unwrap_or_default();
    match (status.code(), status.signal()) {
        (Some(2), _) => {
            EndpointError::permanent(format!("script `{script}` exited with code 2{last_line}"))
                .code("exit_2")
        }
        (Some(code), _) => EndpointError::transient(format!(
            "script `{script}` exited with code {code}{last_line}"
        ))
        .code(format!("exit_{code}")),
        (None, signal) => EndpointError::transient(format!(
            "script `{script}` was killed by signal {}{last_line}",
            signal.unwrap_or_default()
        ))
        .code(class::SIGNAL),
    }
}

/// Stdout of a successful run: JSON result, a `bpmn_error`, or nothing (`null`).
fn parse_output(script: &str, stdout: &[u8]) -> Result<EndpointReply, EndpointError> {
    if stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(EndpointReply::new(Value::Null));
    }
    let value: Value = serde_json::from_slice(stdout)
        .map_err(|e| invalid_output(script, &e.to_string(), stdout))?;
    reply_from(script, value, stdout)
}

/// A script's result: the value, or a BPMN error when it is `{"bpmn_error": {code, message}}`;
/// `shown` is quoted when that shape is wrong.
fn reply_from(script: &str, value: Value, shown: &[u8]) -> Result<EndpointReply, EndpointError> {
    let Some(bpmn_error) = value.get("bpmn_error") else {
        return Ok(EndpointReply::new(value));
    };
    let Some(code) = bpmn_error.get("code").and_then(Value::as_str) else {
        return Err(invalid_output(
            script,
            "`bpmn_error` needs a string `code`",
            shown,
        ));
    };
    let message = match bpmn_error.get("message").and_then(Value::as_str) {
        Some(message) => message.to_string(),
        None => format!("script `{script}` raised BPMN error `{code}`"),
    };
    Err(EndpointError::business(code, message))
}

/// A script's answer that is not a result (process or warm mode); `shown` is quoted in the
/// details, up to [`EXCERPT`] bytes.
fn invalid_output(script: &str, why: &str, shown: &[u8]) -> EndpointError {
    EndpointError::permanent(format!("script `{script}` printed invalid output: {why}"))
        .code(class::INVALID_OUTPUT)
        .details(String::from_utf8_lossy(&shown[..shown.len().min(EXCERPT)]).into_owned())
}

/// The last `limit` bytes as text.
fn tail(bytes: &[u8], limit: usize) -> String {
    let start = bytes.len().saturating_sub(limit);
    let text = String::from_utf8_lossy(&bytes[start..]);
    text.trim_start_matches('\u{FFFD}').trim_end().to_string()
}

#[async_trait]
impl Endpoint for PythonEndpoint {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "python"
    }

    /// A script changes something unless the config says `pure: true`.
    fn side_effects(&self) -> bool {
        !self.pure
    }

    /// The interpreter starts (`python -c pass`, in `scripts_dir`), and the fixed script file —
    /// or, when the script is chosen per task, `scripts_dir` — can be read.
    async fn probe(&self) -> Result<(), EndpointError> {
        let target = match &self.script {
            Some(script) => self.scripts_dir.join(script),
            None => self.scripts_dir.clone(),
        };
        let readable = match &self.script {
            Some(_) => tokio::fs::File::open(&target).await.map(drop),
            None => tokio::fs::read_dir(&target).await.map(drop),
        };
        readable.map_err(|e| {
            EndpointError::permanent(format!("cannot read `{}`: {e}", target.display()))
                .code(class::SCRIPT_NOT_FOUND)
        })?;
        // The command tasks run with (environment, process group, sandbox), so the probe
        // checks what a task would meet.
        let (mut command, _sandbox_dir) = self.spawnable(&["-c", "pass"])?;
        let status = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .map_err(|e| {
                EndpointError::permanent(format!(
                    "interpreter `{}` cannot be started: {e}",
                    self.python.display()
                ))
                .code(class::INTERPRETER)
            })?;
        if status.success() {
            Ok(())
        } else {
            Err(EndpointError::permanent(format!(
                "interpreter `{}` exited with {status}",
                self.python.display()
            ))
            .code(class::INTERPRETER))
        }
    }

    async fn call(&self, request: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
        let script = self.script_for(request)?;
        let path = self.scripts_dir.join(&script);
        let meta = match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.is_file() => meta,
            _ => {
                return Err(EndpointError::permanent(format!(
                    "script `{}` does not exist",
                    path.display()
                ))
                .code(class::SCRIPT_NOT_FOUND));
            }
        };
        let input = serde_json::to_vec(&json!({
            "variables": request.variables,
            "properties": request.properties,
            "business_key": request.business_key,
            "task": {
                "id": request.task_id,
                "topic": request.topic,
                "activity_id": request.activity_id,
                "process_instance_id": request.process_instance_id,
            },
            "feedback": request.feedback,
        }))
        .map_err(|e| EndpointError::permanent(format!("cannot encode the task as JSON: {e}")))?;
        if request.cancel.is_cancelled() {
            return Err(EndpointError::cancelled());
        }
        match self.warm {
            None => self.run(&script, input, request).await,
            Some(limits) => {
                let mtime = meta.modified().ok();
                let command = || self.spawnable(&["-c", warm::RUNNER, &script]);
                self.pools
                    .call(&script, mtime, command, &input, limits, &request.cancel)
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests;
