//! One owner for a task's life in this process: from the moment the fetch loop hands it over
//! until the engine has its outcome.
//!
//! ```text
//!  fetched ─► Journal::claim ─┬─ Run ──────► heartbeat + slot ─► Pipeline::run ─► Completion ─┐
//!                             ├─ Resend ───► Completion::deliver(journaled report) ───────────┤
//!                             ├─ Interrupted► Completion::deliver(incident) ──────────────────┤
//!                             └─ AlreadyRunning / Finished: dropped (never run twice)         │
//!                                   the `Running` mark is dropped last ◄──────────────────────┘
//! ```
//!
//! A [`TaskRun`] holds the task's [`Running`] mark (so a second delivery of the task is
//! recognised), its lease and lock heartbeat, its cancellation token and its slot. Everything it
//! says to the engine goes through the pipeline's Completion block: the report, and the unlock
//! when the task is given back.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::heartbeat;
use super::pool::Pool;
use crate::camunda::{LockedTask, Report};
use crate::journal::Running;
use crate::pde::{Completion, Lease, Outcome, Pipeline, TaskKey, TopicRuntime};

/// What a task's run needs from the manager.
#[derive(Debug, Clone)]
pub(super) struct TaskEnv {
    /// Also the engine client: the heartbeat extends the lock through `pipeline.camunda()`,
    /// the one the task's reports go through.
    pub pipeline: Arc<Pipeline>,
    pub pool: Arc<Pool>,
    pub topic: Arc<TopicRuntime>,
    /// Fires on SIGTERM: tasks still waiting for a slot are given back.
    pub shutdown: CancellationToken,
    /// Fires when the grace period is over: running tasks are cancelled and given back.
    pub hard: CancellationToken,
}

/// One fetched task, owned until its outcome is with the engine (or in the journal).
#[derive(Debug)]
pub(super) struct TaskRun {
    env: TaskEnv,
    task: LockedTask,
    /// Marks the task as running here; dropped when the run ends, after the journal knows the
    /// outcome.
    running: Running,
}

impl TaskRun {
    pub fn new(env: TaskEnv, task: LockedTask, running: Running) -> Self {
        Self { env, task, running }
    }

    /// Sends a report journaled earlier (or the incident for an interrupted side effect) instead
    /// of running the task again. The fresh lock of this delivery is what lets it through.
    pub async fn resend(self, report: Report) -> Outcome {
        tracing::warn!(
            call = report.as_str(),
            "Fetched a task whose outcome is already journaled; sending that outcome instead of running it again."
        );
        let outcome = self
            .env
            .pipeline
            .completion()
            .deliver(TaskKey::of(&self.task), Some(&self.env.topic), report)
            .await;
        drop(self.running);
        outcome
    }

    /// Runs the task with its heartbeat beside it; the heartbeat ends when the lease is released.
    pub async fn run(self, permit: Option<OwnedSemaphorePermit>) -> Outcome {
        let task_token = self.env.hard.child_token();
        let lease = Lease::new();
        let lock = Arc::new(heartbeat::LockState::default());
        let heartbeat = heartbeat::run(
            self.env.pipeline.camunda().clone(),
            self.task.id.clone(),
            self.env.topic.lock_duration,
            lock.clone(),
            task_token.clone(),
            lease.clone(),
        );
        let work = async {
            let outcome = self.work(permit, &task_token, &lock, &lease).await;
            lease.release().await;
            outcome
        };
        let (outcome, ()) = tokio::join!(work, heartbeat);
        drop(self.running);
        outcome
    }

    /// Waits for a slot if needed, then runs the pipeline. Gives the task back when it never
    /// starts, or when the grace period ends while it runs.
    async fn work(
        &self,
        permit: Option<OwnedSemaphorePermit>,
        task_token: &CancellationToken,
        lock: &heartbeat::LockState,
        lease: &Lease,
    ) -> Outcome {
        let env = &self.env;
        let completion = env.pipeline.completion();
        let permit = match permit {
            Some(p) => p,
            None => tokio::select! {
                p = env.pool.acquire() => match p {
                    Some(p) => p,
                    None => return completion.abandon(&self.task, true, lease).await,
                },
                _ = env.shutdown.cancelled() => {
                    tracing::info!("Stopping before the task started; unlocking it.");
                    return completion.abandon(&self.task, true, lease).await;
                }
                _ = task_token.cancelled() => return Outcome::Abandoned,
            },
        };
        if lock.is_lost() || task_token.is_cancelled() {
            tracing::warn!("The task's lock was lost before it started; skipping it.");
            return Outcome::Abandoned;
        }
        // Held while the pipeline runs: the PDE instance's load on the status page.
        let _slot = env.pool.seat(permit);
        let outcome = env
            .pipeline
            .run(&self.task, task_token.clone(), lease)
            .await;
        if outcome == Outcome::Abandoned && env.hard.is_cancelled() && !lock.is_lost() {
            let key = TaskKey::of(&self.task);
            // Handing back a task whose side effect was under way would let another worker run
            // it a second time: a person decides instead.
            if let Some(endpoint) = completion.journal().started_endpoint(key.id, key.retries) {
                tracing::warn!(endpoint = %endpoint, "Cancelled at the end of the grace period while an endpoint with side effects ran; reporting an incident rather than handing the task to another worker.");
                let report = Completion::interrupted(&endpoint);
                return completion.deliver(key, Some(&env.topic), report).await;
            }
            tracing::warn!(
                "Cancelled at the end of the grace period; unlocking the task for another worker."
            );
            return completion.abandon(&self.task, true, lease).await;
        }
        outcome
    }
}
