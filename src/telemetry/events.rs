//! The feed of finished tasks: one [`TaskEvent`] per engine task the pipeline finished, for
//! whatever shows work as it happens (the admin server's recent failures and sparklines, the
//! `procos dev --count` progress bar and summary).
//!
//! ```text
//!  Pipeline::finish ──send──► TaskEvents (tokio broadcast, bounded) ──► each subscriber
//! ```
//!
//! Sending never blocks and never fails the task: with no subscriber the event is dropped, and a
//! subscriber that falls behind misses the oldest events (it is told how many) instead of
//! slowing the pipeline. Events carry no variable values: only ids, names, the outcome, the
//! error's class and its one-line message, already redacted.

use std::time::{Duration, SystemTime};

use tokio::sync::broadcast;

/// How many events a slow subscriber may lag behind before it misses the oldest.
pub const CAPACITY: usize = 4096;

/// One finished engine task.
#[derive(Debug, Clone)]
pub struct TaskEvent {
    /// The external task's id.
    pub task_id: String,
    /// Its topic.
    pub topic: String,
    /// Its process instance, when the engine said.
    pub process_instance_id: Option<String>,
    /// Its process definition key, when the engine said.
    pub process_definition_key: Option<String>,
    /// What was reported: `completed`, `bpmn_error`, `failed`, `incident`, `abandoned`,
    /// `unreported` or `deferred` ([`crate::pde::Outcome::as_str`]).
    pub outcome: &'static str,
    /// The endpoint that answered, or the one the route put first.
    pub endpoint: Option<String>,
    /// The error's class (`http_503`, `timeout`, `input_invalid`, …) when the task failed.
    pub error_class: Option<String>,
    /// The error's one-line message, redacted, when the task failed.
    pub error_message: Option<String>,
    /// Start to the engine's answer to the report.
    pub duration: Duration,
    /// When it finished.
    pub at: SystemTime,
}

/// The sending side, cheap to clone; [`TaskEvents::subscribe`] gives a receiver.
#[derive(Debug, Clone)]
pub struct TaskEvents(broadcast::Sender<TaskEvent>);

impl Default for TaskEvents {
    fn default() -> Self {
        Self(broadcast::channel(CAPACITY).0)
    }
}

impl TaskEvents {
    /// Publishes one event; dropped when no one listens.
    pub fn send(&self, event: TaskEvent) {
        let _ = self.0.send(event);
    }

    /// A receiver of every event sent from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<TaskEvent> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> TaskEvent {
        TaskEvent {
            task_id: id.into(),
            topic: "t".into(),
            process_instance_id: None,
            process_definition_key: None,
            outcome: "completed",
            endpoint: None,
            error_class: None,
            error_message: None,
            duration: Duration::from_millis(3),
            at: SystemTime::now(),
        }
    }

    #[tokio::test]
    async fn subscribers_see_events_sent_after_they_subscribed() {
        let events = TaskEvents::default();
        events.send(event("before"));
        let mut rx = events.subscribe();
        events.send(event("after"));
        assert_eq!(rx.recv().await.expect("event").task_id, "after");
    }

    #[tokio::test]
    async fn a_lagging_subscriber_misses_the_oldest_and_is_told() {
        let events = TaskEvents::default();
        let mut rx = events.subscribe();
        for i in 0..CAPACITY + 10 {
            events.send(event(&i.to_string()));
        }
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(10))
        ));
        assert_eq!(rx.recv().await.expect("event").task_id, "10");
    }
}
