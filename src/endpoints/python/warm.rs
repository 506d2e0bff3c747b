//! `mode: warm`: long-lived interpreters that import a script once and call its `handle(task)`.
//!
//! ```text
//! call ─► Pools[script] ─ idle interpreter (same mtime) or a new one (lifetime::spawn)
//!          │  frame: u32 length (big-endian) + task JSON ─► runner.py ─► handle(task)
//!          │  frame ◄─ {"result"} | {"exception"} | {"exit"} | {"invalid"} + stdout, stderr
//!          └► back to the idle list — unless it crashed, timed out, was cancelled, or served
//!             `max_tasks_per_worker` tasks: then its process group is killed.
//! ```
//!
//! One task at a time per interpreter; the stack's limit layer bounds the calls to
//! `worker_pool_size`, so no more interpreters than that run per script, and at most that many
//! stay idle. Outcomes map as in process mode (see [`super::exit_error`], [`super::reply_from`]):
//! a raised exception is exit 1 (transient `exit_1`, the traceback in the details), `sys.exit(n)`
//! is exit `n`, a crashed interpreter is its exit code or signal.
//!
//! Sandbox: the interpreter is started by the endpoint's own `spawnable()`, so a `sandbox:`
//! confines the runner and the script like a process-mode script, and the sandbox's directory
//! lives as long as the interpreter. Its rlimits count over the interpreter's life (`cpu_time`
//! too: an interpreter that used it up is killed and replaced, costing the task in it); a
//! `MemoryError` fails its task like any exception and the runner asks to be replaced.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

use super::{STDERR_TAIL, exit_error, lifetime, reply_from, tail};
use crate::endpoints::{EndpointError, EndpointReply, class};

/// How to start an interpreter: the command, and the sandbox directory it must keep.
pub(super) type Spawnable = (tokio::process::Command, Option<super::sandbox::TaskDir>);

/// The runner, shipped inside the binary and started with `python -c`.
pub(super) const RUNNER: &str = include_str!("runner.py");

/// What a warm endpoint needs to know besides how to start an interpreter.
#[derive(Debug, Clone, Copy)]
pub(super) struct WarmLimits {
    /// Kill an interpreter (and fail its task) past this.
    pub max_execution_time: Duration,
    /// Largest reply frame (the result plus captured output).
    pub max_output_bytes: usize,
    /// Interpreters kept idle per script.
    pub idle: usize,
    /// Tasks an interpreter serves before it is replaced (`None`: no limit).
    pub max_tasks: Option<u64>,
    /// Replace interpreters whose script changed on disk.
    pub reload: bool,
}

/// Idle interpreters of one endpoint, per script.
#[derive(Debug, Default)]
pub(super) struct Pools {
    idle: Mutex<HashMap<String, Vec<Interpreter>>>,
}

/// One running runner.
pub(super) struct Interpreter {
    child: Child,
    /// Kills the process group when the interpreter is dropped (replaced).
    group: lifetime::Group,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    served: u64,
    /// The script's modification time when it was imported.
    mtime: Option<SystemTime>,
    /// The sandbox's TMPDIR/HOME, removed when the interpreter goes (field order: after the
    /// process group, so the group is killed first).
    _sandbox_dir: Option<super::sandbox::TaskDir>,
}

impl std::fmt::Debug for Interpreter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interpreter")
            .field("pid", &self.child.id())
            .field("served", &self.served)
            .finish_non_exhaustive()
    }
}

/// A runner's reply to a task (or its startup report).
#[derive(Debug, Deserialize)]
struct Frame {
    #[serde(default)]
    ready: bool,
    #[serde(default)]
    startup: Option<Startup>,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    exception: Option<String>,
    #[serde(default)]
    exit: Option<i32>,
    #[serde(default)]
    invalid: Option<String>,
    /// The runner asks to be replaced (after a `MemoryError`, e.g. past the sandbox's memory
    /// rlimit).
    #[serde(default)]
    retire: bool,
    #[serde(default)]
    stdout: String,
    #[serde(default)]
    stderr: String,
}

/// Why the script could not be imported.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Startup {
    NoHandle {},
    Exception { text: String },
    Exit { code: i32 },
}

/// Why an exchange with an interpreter ended without a frame.
enum Broken {
    TimedOut,
    Cancelled,
    Overflow,
    /// The pipe closed or failed: the interpreter died; its exit status if it was reaped.
    Died(Option<ExitStatus>, std::io::Error),
}

impl Pools {
    /// An idle interpreter for `script` whose import is still current, if any; stale ones are
    /// dropped (killed).
    fn take(&self, script: &str, mtime: Option<SystemTime>, reload: bool) -> Option<Interpreter> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(script)?;
        if reload && list.iter().any(|i| i.mtime != mtime) {
            tracing::info!(
                script,
                "Script changed on disk: warm interpreters are replaced."
            );
            list.clear();
            return None;
        }
        list.pop()
    }

    /// Keeps a healthy interpreter for the next task, up to `limit` per script.
    fn give_back(&self, script: &str, interpreter: Interpreter, limit: usize) {
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry(script.to_string()).or_default();
            if list.len() < limit {
                list.push(interpreter);
            }
        }
    }

    /// Starts interpreters for `script` until `limits.idle` are idle; how many it started.
    pub(super) async fn warm_up(
        &self,
        script: &str,
        mtime: Option<SystemTime>,
        command: impl Fn() -> Result<Spawnable, EndpointError>,
        limits: WarmLimits,
    ) -> Result<usize, EndpointError> {
        let never = tokio_util::sync::CancellationToken::new();
        let mut started = 0;
        while self.idle_count(script) < limits.idle {
            let deadline = Instant::now() + limits.max_execution_time;
            let interpreter = start(script, &command, mtime, deadline, limits, &never).await?;
            self.give_back(script, interpreter, limits.idle);
            started += 1;
        }
        Ok(started)
    }

    /// Interpreters of `script` waiting for a task.
    pub(super) fn idle_count(&self, script: &str) -> usize {
        self.idle
            .lock()
            .map(|idle| idle.get(script).map_or(0, Vec::len))
            .unwrap_or(usize::MAX)
    }

    /// Runs one task on a warm interpreter of `script` (started with `command` when none is idle).
    pub(super) async fn call(
        &self,
        script: &str,
        mtime: Option<SystemTime>,
        command: impl FnOnce() -> Result<Spawnable, EndpointError>,
        input: &[u8],
        limits: WarmLimits,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<EndpointReply, EndpointError> {
        let started = Instant::now();
        let deadline = started + limits.max_execution_time;
        let mut interpreter = match self.take(script, mtime, limits.reload) {
            Some(interpreter) => interpreter,
            None => start(script, command, mtime, deadline, limits, cancel).await?,
        };
        let exchange = tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(Broken::Cancelled),
            _ = tokio::time::sleep_until(deadline.into()) => Err(Broken::TimedOut),
            frame = interpreter.exchange(input, limits.max_output_bytes) => frame,
        };
        let frame = match exchange {
            Ok(frame) => frame,
            Err(broken) => return Err(interpreter.broken(script, broken, limits, deadline).await),
        };
        interpreter.served += 1;
        tracing::debug!(
            script,
            served = interpreter.served,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Warm script answered."
        );
        if !frame.retire && limits.max_tasks.is_none_or(|max| interpreter.served < max) {
            self.give_back(script, interpreter, limits.idle);
        } else {
            interpreter.retire().await;
        }
        outcome(script, frame)
    }
}

/// Starts a runner for `script` and waits for it to import the script.
async fn start(
    script: &str,
    command: impl FnOnce() -> Result<Spawnable, EndpointError>,
    mtime: Option<SystemTime>,
    deadline: Instant,
    limits: WarmLimits,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Interpreter, EndpointError> {
    let (command, sandbox_dir) = command()?;
    let mut child = lifetime::spawn(command)
        .await
        .map_err(|e| super::spawn_error(script, &e))?;
    let group = lifetime::Group::new(child.id());
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(EndpointError::transient(format!(
            "script `{script}`: the runner's pipes are missing"
        ))
        .code(class::IO));
    };
    let mut interpreter = Interpreter {
        child,
        group,
        stdin,
        stdout: BufReader::new(stdout),
        served: 0,
        mtime,
        _sandbox_dir: sandbox_dir,
    };
    let first = tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(Broken::Cancelled),
        _ = tokio::time::sleep_until(deadline.into()) => Err(Broken::TimedOut),
        frame = interpreter.read_frame(limits.max_output_bytes) => frame,
    };
    let frame = match first {
        Ok(frame) => frame,
        Err(broken) => return Err(interpreter.broken(script, broken, limits, deadline).await),
    };
    match frame.startup {
        None if frame.ready => Ok(interpreter),
        None => Err(EndpointError::transient(format!(
            "script `{script}`: the warm runner did not report ready"
        ))
        .code(class::IO)),
        Some(Startup::NoHandle {}) => {
            Err(EndpointError::permanent(super::no_handle_message(script))
                .code(class::INVALID_SCRIPT))
        }
        Some(Startup::Exception { text }) => Err(failed(script, 1, &frame.stderr, &text)),
        Some(Startup::Exit { code }) => Err(failed(script, code, &frame.stderr, "")),
    }
}

impl Interpreter {
    /// Kills the interpreter with its process group and reaps it.
    async fn retire(mut self) {
        self.group.kill();
        // An error here means it already exited.
        let _ = self.child.kill().await;
    }

    /// Sends the task and reads the reply.
    async fn exchange(&mut self, input: &[u8], max: usize) -> Result<Frame, Broken> {
        let length = u32::try_from(input.len()).map_err(|_| {
            Broken::Died(None, std::io::Error::other("the task is larger than 4 GiB"))
        })?;
        let mut message = Vec::with_capacity(input.len() + 4);
        message.extend_from_slice(&length.to_be_bytes());
        message.extend_from_slice(input);
        let written = async {
            self.stdin.write_all(&message).await?;
            self.stdin.flush().await
        };
        written.await.map_err(|e| Broken::Died(None, e))?;
        self.read_frame(max).await
    }

    /// Reads one length-prefixed JSON frame, refusing one longer than `max` bytes.
    async fn read_frame(&mut self, max: usize) -> Result<Frame, Broken> {
        let mut length = [0u8; 4];
        self.stdout
            .read_exact(&mut length)
            .await
            .map_err(|e| Broken::Died(None, e))?;
        let length = u32::from_be_bytes(length) as usize;
        if length > max {
            return Err(Broken::Overflow);
        }
        let mut body = vec![0u8; length];
        self.stdout
            .read_exact(&mut body)
            .await
            .map_err(|e| Broken::Died(None, e))?;
        serde_json::from_slice(&body).map_err(|e| {
            Broken::Died(
                None,
                std::io::Error::other(format!("the runner sent an invalid frame: {e}")),
            )
        })
    }

    /// The error for a task whose interpreter broke; the interpreter is killed with its group.
    async fn broken(
        mut self,
        script: &str,
        broken: Broken,
        limits: WarmLimits,
        deadline: Instant,
    ) -> EndpointError {
        let broken = match broken {
            // The pipe closed: the interpreter is exiting; its status says why (bounded by the
            // task's time left).
            Broken::Died(None, e) => {
                let status = tokio::time::timeout_at(deadline.into(), self.child.wait()).await;
                match status {
                    Ok(Ok(status)) => {
                        self.group.exited();
                        Broken::Died(Some(status), e)
                    }
                    _ => Broken::Died(None, e),
                }
            }
            other => other,
        };
        self.retire().await;
        match broken {
            Broken::Cancelled => EndpointError::cancelled(),
            Broken::TimedOut => super::timeout_error(script, limits.max_execution_time),
            Broken::Overflow => super::overflow_error(script, limits.max_output_bytes),
            Broken::Died(Some(status), _) if !status.success() || status.signal().is_some() => {
                exit_error(script, status, &[])
            }
            Broken::Died(_, e) => {
                EndpointError::transient(format!("script `{script}`: warm interpreter lost: {e}"))
                    .code(class::IO)
            }
        }
    }
}

/// A task's frame as the endpoint's answer, mapped as process mode maps exit codes and stdout.
fn outcome(script: &str, frame: Frame) -> Result<EndpointReply, EndpointError> {
    if let Some(code) = frame.exit {
        return match code {
            0 => Ok(EndpointReply::new(Value::Null)),
            code => Err(failed(script, code, &frame.stderr, "")),
        };
    }
    if frame.exception.is_some() {
        // The runner wrote the traceback into the task's stderr.
        return Err(failed(script, 1, &frame.stderr, ""));
    }
    if let Some(why) = frame.invalid {
        return Err(super::invalid_output(script, &why, frame.stdout.as_bytes()));
    }
    reply_from(script, frame.result.unwrap_or(Value::Null), &[])
}

/// A run that ended like a process exiting with `code`, the captured stderr (plus `extra`) as
/// its details.
fn failed(script: &str, code: i32, stderr: &str, extra: &str) -> EndpointError {
    let stderr = format!("{stderr}{extra}");
    let error = exit_error(
        script,
        ExitStatus::from_raw((code & 0xff) << 8),
        stderr.as_bytes(),
    );
    match stderr.trim().is_empty() {
        true => error,
        false => error.details(tail(stderr.as_bytes(), STDERR_TAIL)),
    }
}
