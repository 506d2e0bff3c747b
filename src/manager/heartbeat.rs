//! Lock heartbeat: keeps a task's lock alive while it waits for a slot and while it runs.
//!
//! Every half lock duration it extends the lock by a full lock duration, each call bounded by
//! the time the lock has left. If the engine says the task is gone (404), or the lock expired
//! and another worker holds the task, the task's token is cancelled so its pipeline stops and
//! never reports late. If the engine cannot be reached (frozen, restarting, network down), the
//! work goes on and the heartbeat keeps trying: cancelling would not undo what the endpoint has
//! already done, and once the engine answers, an expired lock is taken back if nobody else took
//! it (`POST /external-task/{id}/lock`, Camunda 7.17 and later), or the task is stopped if
//! somebody did. The engine itself refuses (400) a report for a
//! task another worker has re-locked. The heartbeat stops for good when the task's [`Lease`]
//! is released (just before the pipeline reports).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::camunda::{CamundaClient, CamundaError};
use crate::pde::Lease;

/// Margin kept between an extension's deadline and the lock's expiry.
const MARGIN: Duration = Duration::from_millis(100);

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

enum Renewal {
    Renewed,
    Relocked(CamundaError),
    Gone,
    Lost(CamundaError),
    Failed(String),
}

/// Runs until the lease is released. Cancels `task` when the lock is lost.
pub async fn run(
    camunda: CamundaClient,
    task_id: String,
    lock: Duration,
    state: Arc<LockState>,
    task: CancellationToken,
    lease: Lease,
) {
    let interval = (lock / 2).max(Duration::from_millis(200));
    let mut expires = Instant::now() + lock;
    let mut next = Instant::now() + interval;
    loop {
        tokio::select! {
            _ = lease.released().cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        let Some(_call) = lease.permit().await else {
            return;
        };
        let asked = Instant::now();
        let budget = expires
            .saturating_duration_since(asked)
            .saturating_sub(MARGIN)
            .max(MARGIN);
        let renewal = match tokio::time::timeout(budget, renew(&camunda, &task_id, lock)).await {
            Ok(r) => r,
            Err(_) => Renewal::Failed(format!(
                "extendLock took longer than the {budget:?} the lock had left"
            )),
        };
        match renewal {
            Renewal::Renewed => {
                expires = asked + lock;
                next = asked + interval;
                tracing::debug!(lock_ms = lock.as_millis() as u64, "Lock extended.");
            }
            Renewal::Relocked(e) => {
                tracing::warn!(error = %e, "Lock had expired; locked the task again.");
                expires = asked + lock;
                next = asked + interval;
            }
            Renewal::Gone => {
                tracing::warn!(
                    "The task is gone (cancelled, or its process instance deleted); stopping its work."
                );
                return lose(&state, &task);
            }
            Renewal::Lost(e) => {
                tracing::warn!(error = %e, "Lost the task's lock to another worker; stopping its work.");
                return lose(&state, &task);
            }
            Renewal::Failed(why) => {
                let left = expires.saturating_duration_since(Instant::now());
                if left <= MARGIN {
                    tracing::warn!(error = %why, "Could not extend the lock before it expired; carrying on and taking it back once the engine answers.");
                    expires = Instant::now() + interval;
                    next = Instant::now() + (interval / 2).max(MARGIN);
                } else {
                    tracing::warn!(error = %why, "Could not extend the lock; trying again shortly.");
                    next = Instant::now() + (left / 4).max(MARGIN);
                }
            }
        }
    }
}

/// One extension; on "expired" (400) tries to lock the task again, which only works while no
/// other worker took it.
async fn renew(camunda: &CamundaClient, task_id: &str, lock: Duration) -> Renewal {
    match camunda.extend_lock(task_id, lock).await {
        Ok(()) => Renewal::Renewed,
        Err(e) if e.is_not_found() => Renewal::Gone,
        Err(e) if e.status() == Some(400) => match camunda.lock(task_id, lock).await {
            Ok(()) => Renewal::Relocked(e),
            Err(again) if again.is_not_found() => Renewal::Gone,
            // "already locked by worker …": someone else has it now.
            Err(again) if again.status() == Some(400) => Renewal::Lost(again),
            // No answer, or an engine older than 7.17 without `/lock`: the lock may have lapsed,
            // but nobody is known to hold the task; the report decides (the engine refuses it
            // if another worker took the task meanwhile).
            Err(again) => Renewal::Failed(again.to_string()),
        },
        Err(e) => Renewal::Failed(e.to_string()),
    }
}

fn lose(state: &LockState, task: &CancellationToken) {
    state.mark_lost();
    task.cancel();
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::camunda::ClientSettings;

    async fn setup(
        extend: ResponseTemplate,
        lock: ResponseTemplate,
    ) -> (MockServer, CamundaClient) {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/external-task/t1/extendLock"))
            .respond_with(extend)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path("/external-task/t1/lock"))
            .respond_with(lock)
            .mount(&server)
            .await;
        let client = CamundaClient::new(ClientSettings {
            url: server.uri(),
            auth: None,
            worker_id: "w".into(),
            request_timeout: Duration::from_secs(5),
        })
        .expect("client");
        (server, client)
    }

    fn error(status: u16, message: &str) -> ResponseTemplate {
        ResponseTemplate::new(status)
            .set_body_json(json!({"type": "RestException", "message": message, "code": null}))
    }

    async fn beat(client: CamundaClient, for_ms: u64) -> (Arc<LockState>, CancellationToken) {
        let state = Arc::new(LockState::default());
        let task = CancellationToken::new();
        let lease = Lease::new();
        let hb = tokio::spawn(run(
            client,
            "t1".into(),
            Duration::from_millis(400),
            state.clone(),
            task.clone(),
            lease.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(for_ms)).await;
        lease.release().await;
        hb.await.expect("heartbeat ends on release");
        (state, task)
    }

    #[tokio::test]
    async fn extends_every_half_lock_until_released() {
        let (server, client) = setup(ResponseTemplate::new(204), ResponseTemplate::new(204)).await;
        let (state, task) = beat(client, 1100).await;
        let extends = server.received_requests().await.unwrap_or_default().len();
        assert!(
            (4..=6).contains(&extends),
            "about one extension per 200ms: {extends}"
        );
        assert!(!state.is_lost() && !task.is_cancelled());
        let body: serde_json::Value = server.received_requests().await.unwrap()[0]
            .body_json()
            .unwrap();
        assert_eq!(body, json!({"workerId": "w", "newDuration": 400}));
    }

    #[tokio::test]
    async fn a_gone_task_cancels_its_work() {
        let (_server, client) = setup(
            error(404, "External task with id t1 does not exist"),
            ResponseTemplate::new(204),
        )
        .await;
        let (state, task) = beat(client, 400).await;
        assert!(state.is_lost() && task.is_cancelled());
    }

    #[tokio::test]
    async fn an_expired_lock_is_taken_back_unless_another_worker_has_it() {
        let (server, client) = setup(
            error(400, "Cannot extend a lock that expired"),
            ResponseTemplate::new(204),
        )
        .await;
        let (state, _) = beat(client, 500).await;
        assert!(!state.is_lost(), "re-locked");
        assert!(
            server
                .received_requests()
                .await
                .unwrap()
                .iter()
                .any(|r| r.url.path().ends_with("/lock"))
        );

        let (_server, client) = setup(
            error(400, "Cannot extend a lock that expired"),
            error(400, "locked by another worker"),
        )
        .await;
        let (state, task) = beat(client, 500).await;
        assert!(
            state.is_lost() && task.is_cancelled(),
            "another worker has it: stop"
        );
    }

    #[tokio::test]
    async fn an_engine_that_does_not_answer_keeps_the_work_going_and_is_asked_again() {
        // A frozen engine: cancelling the work would not undo what the endpoint already did, and
        // the report after it is refused by the engine if another worker took the task.
        let slow = ResponseTemplate::new(204).set_delay(Duration::from_secs(5));
        let (server, client) = setup(slow, ResponseTemplate::new(204)).await;
        let started = std::time::Instant::now();
        let (state, task) = beat(client, 1500).await;
        assert!(
            !state.is_lost() && !task.is_cancelled(),
            "an unreachable engine does not stop the task"
        );
        let asked = server.received_requests().await.unwrap_or_default().len();
        assert!(asked >= 3, "kept trying, each call bounded: {asked} calls");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "no call outlived the lock's time left"
        );
    }
}
