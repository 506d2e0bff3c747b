//! Lock heartbeat: keeps a task's lock alive while it waits for a slot and while it runs.
//!
//! Every half lock duration it extends the lock by a full lock duration. If the engine says the
//! task is gone (404), or the lock expired and another worker holds the task, the task's token is
//! cancelled so its pipeline stops and never reports late. If the engine cannot be reached until
//! the lock would have expired, the task is cancelled too: after that another worker may have it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::camunda::CamundaClient;

/// Shared view of one task's lock.
#[derive(Debug, Default)]
pub struct LockState {
    lost: AtomicBool,
}

impl LockState {
    /// True once the lock is known to be lost.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    fn mark_lost(&self) {
        self.lost.store(true, Ordering::Release);
    }
}

/// Runs until `stop` fires. Cancels `task` when the lock is lost.
pub async fn run(
    camunda: CamundaClient,
    task_id: String,
    lock: Duration,
    state: Arc<LockState>,
    task: CancellationToken,
    stop: CancellationToken,
) {
    let interval = (lock / 2).max(Duration::from_millis(200));
    let mut expires = Instant::now() + lock;
    let mut next = Instant::now() + interval;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        let asked = Instant::now();
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = camunda.extend_lock(&task_id, lock) => r,
        };
        match result {
            Ok(()) => {
                expires = asked + lock;
                next = asked + interval;
                tracing::debug!(lock_ms = lock.as_millis() as u64, "Lock extended.");
            }
            Err(e) if e.is_not_found() => {
                tracing::warn!(
                    "The task is gone (cancelled, or its process instance deleted); stopping its work."
                );
                return lose(&state, &task);
            }
            Err(e) if e.status() == Some(400) => {
                // The lock expired or another worker holds the task. Try to take it back.
                match camunda.lock(&task_id, lock).await {
                    Ok(()) => {
                        tracing::warn!(error = %e, "Lock had expired; locked the task again.");
                        expires = asked + lock;
                        next = asked + interval;
                    }
                    Err(again) => {
                        tracing::warn!(error = %again, "Lost the task's lock to another worker; stopping its work.");
                        return lose(&state, &task);
                    }
                }
            }
            Err(e) => {
                if Instant::now() + Duration::from_millis(100) >= expires {
                    tracing::warn!(error = %e, "Could not extend the lock before it expired; stopping the task's work.");
                    return lose(&state, &task);
                }
                tracing::warn!(error = %e, "Could not extend the lock; trying again shortly.");
                let retry_in = ((expires - Instant::now()) / 4).max(Duration::from_millis(100));
                next = Instant::now() + retry_in;
            }
        }
    }
}

fn lose(state: &LockState, task: &CancellationToken) {
    state.mark_lost();
    task.cancel();
}
