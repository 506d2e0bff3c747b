//! An in-memory, Camunda-7-compatible engine: `procos dev` runs it so procos works without a
//! Camunda, and the test suite runs it as THE engine the procos worker is checked against.
//!
//! It speaks engine-rest under `/engine-rest` with the real semantics (see
//! `shared/CAMUNDA_REST.md`): worker ownership, lock expiry, long polling, retries and
//! incidents, multipart deployment rules, error bodies. Its wire types are its own; it shares
//! nothing with `procos::camunda`, so it checks the client's wire format independently.
//!
//! ```text
//! mod.rs        Engine (handle), EngineOptions, RunningEngine, fault injection
//! api/          REST handlers: deployment, process, history, external_task (+ long polling)
//! state.rs      Store: deployments, definitions, instances, tasks, incidents, history, stats
//! deploy.rs     deployments, duplicate filtering, versions     bpmn.rs   BPMN parser
//! instances.rs  start / commit / delete instances, JSON views   exec.rs   token execution
//! tasks.rs      fetch selection and per-task calls              expr.rs   JUEL conditions
//! variables.rs  typed variables                                 errors.rs Camunda error bodies
//! timers/       timer definitions, jobs and the timer loop      user_tasks.rs  user tasks
//! ```
//!
//! Time: [`Engine::serve`] runs the timer loop next to the server; it sleeps until the next
//! job is due (on tokio's clock, so tests pause and advance it) and fires it as Camunda's job
//! executor would. Timer start events are scheduled for the latest version of each key after
//! every change of the store, so a new version replaces the old schedule and a deleted
//! deployment takes its schedule with it.
//!
//! Choices where the model leaves room: a BPMN error that no boundary event catches ends the
//! task's execution (the instance completes when no token is left), as for an uncaught error
//! end event; only executable processes are deployed, and elements the engine cannot run make
//! the deployment fail (400) rather than the instance hang.
//!
//! Not Camunda: `GET /engine-rest/_procos/stats` (test/dev only) returns [`EngineStats`].

mod api;
mod bpmn;
mod deploy;
mod errors;
mod exec;
mod expr;
mod instances;
mod state;
mod task_table;
mod tasks;
mod timers;
mod user_tasks;
mod variables;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

pub use state::EngineStats;

use errors::ApiError;
use state::Store;

/// How the engine behaves.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Longest time a pending long poll sleeps before re-checking for tasks. New tasks, unlocks
    /// and failures wake pending polls at once and lock / retry timeouts are waited for exactly,
    /// so this only bounds surprises; the real engine re-checks every 30 s.
    pub long_poll_recheck: Duration,
    /// No call / deployment logging.
    pub quiet: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            long_poll_recheck: Duration::from_secs(30),
            quiet: false,
        }
    }
}

/// A cheap, cloneable handle on one engine's shared state.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Mutex<Store>,
    options: EngineOptions,
    /// Bumped after every state change; long polls wait on it.
    changed: watch::Sender<u64>,
    /// Wakes the timer loop when jobs were added or removed.
    timers: tokio::sync::Notify,
    /// Cancelled on shutdown so pending long polls answer 500; replaced to allow re-serving.
    polls: Mutex<CancellationToken>,
    pending_polls: AtomicUsize,
    /// `fail_next`: (remaining calls, status).
    faults: Mutex<(usize, u16)>,
    down: AtomicBool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the store half-updated in a way later calls
    // depend on more than on availability; keep serving.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Engine {
    /// A new, empty engine.
    pub fn new(options: EngineOptions) -> Engine {
        let (changed, _) = watch::channel(0);
        Engine {
            inner: Arc::new(Inner {
                store: Mutex::new(Store::default()),
                options,
                changed,
                timers: tokio::sync::Notify::new(),
                polls: Mutex::new(CancellationToken::new()),
                pending_polls: AtomicUsize::new(0),
                faults: Mutex::new((0, 500)),
                down: AtomicBool::new(false),
            }),
        }
    }

    /// All routes, under `/engine-rest`.
    pub fn router(&self) -> axum::Router {
        api::router(self.clone())
    }

    /// Serves on `listener` until `shutdown` is cancelled, with the timer loop
    /// ([`Engine::run_timers`]) beside it. On shutdown, pending long polls answer 500 (like the
    /// real engine), then in-flight calls finish.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let engine = self.clone();
        // The timer loop stops on shutdown, and also when the server ends on its own.
        let timers_stop = shutdown.child_token();
        let timers = self.run_timers(timers_stop.clone());
        let signal = async move {
            shutdown.cancelled().await;
            engine.reject_pending_polls();
        };
        let server = axum::serve(listener, self.router()).with_graceful_shutdown(signal);
        let server = async move {
            let served = server.await;
            timers_stop.cancel();
            served
        };
        let (served, ()) = tokio::join!(server, timers);
        served
    }

    /// For tests: binds 127.0.0.1:0 and serves in a background task until [`RunningEngine::stop`]
    /// (or until the handle is dropped).
    pub async fn start_local(options: EngineOptions) -> std::io::Result<RunningEngine> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let engine = Engine::new(options);
        let shutdown = CancellationToken::new();
        let task = {
            let (engine, shutdown) = (engine.clone(), shutdown.clone());
            tokio::spawn(async move { engine.serve(listener, shutdown).await })
        };
        Ok(RunningEngine {
            engine,
            url: format!("http://{addr}/engine-rest"),
            addr,
            task,
            guard: shutdown.drop_guard(),
        })
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> EngineStats {
        let mut stats = self.with(|s| s.stats.clone());
        stats.long_polls_pending = self.inner.pending_polls.load(Ordering::SeqCst) as u64;
        stats
    }

    /// The next `n` REST calls (any Camunda route) answer `status` with a proper error body.
    pub fn fail_next(&self, n: usize, status: u16) {
        *lock(&self.inner.faults) = (n, status);
    }

    /// While down, every Camunda route answers 503 and pending long polls end with 503:
    /// simulates an engine outage and its recovery.
    pub fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::SeqCst);
        self.notify();
    }

    /// Test helper: the task's lock expires now (it becomes fetchable; its worker may still
    /// complete it until another worker locks it).
    pub fn expire_lock(&self, task_id: &str) {
        self.mutate(|s| s.expire_lock(task_id, tokio::time::Instant::now()));
    }

    /// Runs `f` on the store (reads).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        f(&mut lock(&self.inner.store))
    }

    /// Runs `f` on the store (writes); wakes pending long polls when it created or unlocked a
    /// task, as Camunda does (see [`Store::wake`]). Then schedules the timer start events of
    /// new versions (see `timers`) and wakes the timer loop when jobs changed.
    pub(crate) fn mutate<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        let (r, wake, timers) = self.with(|s| {
            let r = f(s);
            s.reconcile_start_timers();
            (
                r,
                std::mem::take(&mut s.wake),
                std::mem::take(&mut s.timers_changed),
            )
        });
        if wake {
            self.notify();
        }
        if timers {
            self.inner.timers.notify_one();
        }
        r
    }

    fn notify(&self) {
        self.inner.changed.send_modify(|g| *g = g.wrapping_add(1));
    }

    fn is_down(&self) -> bool {
        self.inner.down.load(Ordering::SeqCst)
    }

    fn poll_cancellation(&self) -> CancellationToken {
        lock(&self.inner.polls).clone()
    }

    fn reject_pending_polls(&self) {
        let old = std::mem::replace(&mut *lock(&self.inner.polls), CancellationToken::new());
        old.cancel();
    }

    /// Counts a call and returns the injected fault to answer with, if any.
    fn count_request_and_take_fault(&self) -> Option<ApiError> {
        let fault = if self.is_down() {
            Some(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ProcessEngineException",
                "procos engine is down (set_down)",
            ))
        } else {
            let mut faults = lock(&self.inner.faults);
            (faults.0 > 0).then(|| {
                faults.0 -= 1;
                let status =
                    StatusCode::from_u16(faults.1).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let kind = if status.is_client_error() {
                    "InvalidRequestException"
                } else {
                    "ProcessEngineException"
                };
                ApiError::new(
                    status,
                    kind,
                    format!("procos engine: injected fault (HTTP {})", status.as_u16()),
                )
            })
        };
        self.with(|s| {
            s.stats.requests += 1;
            s.stats.injected_faults += u64::from(fault.is_some());
        });
        fault
    }
}

/// An engine serving on a local port (see [`Engine::start_local`]).
#[derive(Debug)]
pub struct RunningEngine {
    /// The engine, for inspection and fault injection.
    pub engine: Engine,
    /// Base URL, `http://127.0.0.1:PORT/engine-rest`.
    pub url: String,
    /// The bound address.
    pub addr: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
    /// Cancels the server when the handle is dropped without `stop`.
    guard: DropGuard,
}

impl RunningEngine {
    /// Shuts the server down (pending long polls get 500) and waits for it to finish.
    pub async fn stop(self) {
        let RunningEngine { task, guard, .. } = self;
        drop(guard);
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(%err, "Engine server ended with an error."),
            Err(err) => tracing::warn!(%err, "Engine server task failed."),
        }
    }
}
