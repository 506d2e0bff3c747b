//! Sub-tasks of a Meta-PDE (`sub_pde` endpoint): a task of another topic run in process, through
//! Start → Test → Gateway → Validation, with no engine round trip and no Completion.
//!
//! ```text
//!  sub_pde endpoint ──run(topic, variables, parent)──► SubTaskRunner
//!     slot of the topic's pool (waits; the parent's cancellation ends the wait)
//!     ─► sub_task_context ─► Test ─► Gateway ─► Validation ─► Verdict
//!     Done ─► Ok(output, usage) · Failed ─► Err(error; the topic's bpmn_errors applied)
//!     Cancelled ─► Err(cancelled)
//! ```
//!
//! A sub-task holds a slot of its topic's pool for as long as it runs, so Meta-PDEs respect
//! every pool's `max_concurrent_tasks`. That cannot deadlock because `procos validate` rejects
//! any cycle in the pool wait graph (a topic on pool P whose Meta-PDE waits for a topic on pool
//! Q is an edge P → Q; see `config::validate`): a parent only ever waits for pools whose tasks
//! never wait for the parent's pool, so those slots are always released eventually.
//!
//! The step's result is the topic's *validated* result (required keys, schema, attempts with
//! feedback, fallbacks), before output mapping: `output.variable` / `output.mapping` only apply
//! to tasks reported to the engine.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use serde_json::{Map, Value};
use tracing::Instrument;

use super::Pipeline;
use super::completion::decide;
use super::start;
use super::verdict::Verdict;
use crate::camunda::Report;
use crate::endpoints::{EndpointError, EndpointReply, EndpointRequest, SubTasks};

/// Nesting beyond this is refused at run time whatever the config says: a backstop for a cycle
/// that `procos validate` did not see (each endpoint's own `max_depth` is usually lower).
pub const MAX_SUB_TASK_DEPTH: u32 = 16;

/// A slot lent to a sub-task; dropping it gives the slot back.
pub type Borrowed = Box<dyn Send + Sync>;

/// Lends pool slots to sub-tasks (implemented by the manager's pools, which can lend a slot
/// reserved for a pending long poll rather than make the sub-task wait the poll out).
#[async_trait::async_trait]
pub trait Slots: Send + Sync + std::fmt::Debug {
    /// A slot of the pool, held until the permit is dropped; `None` if the pool is closed.
    async fn lend(&self) -> Option<Borrowed>;
}

/// Runs sub-tasks over the pipeline's topics. Built by the manager right after the pipeline.
#[derive(Debug)]
pub struct SubTaskRunner {
    /// Weak: the pipeline owns this runner (through its `OnceLock`), not the other way round.
    pipeline: Weak<Pipeline>,
    /// Topic → its pool's slots.
    slots: BTreeMap<String, Arc<dyn Slots>>,
}

impl SubTaskRunner {
    /// A runner over `pipeline`'s topics; `slots` maps each topic to its pool's slots.
    pub fn new(pipeline: &Arc<Pipeline>, slots: BTreeMap<String, Arc<dyn Slots>>) -> Self {
        Self {
            pipeline: Arc::downgrade(pipeline),
            slots,
        }
    }

    async fn run_blocks(
        &self,
        topic_name: &str,
        variables: Map<String, Value>,
        parent: &EndpointRequest,
    ) -> Result<EndpointReply, EndpointError> {
        let Some(pipeline) = self.pipeline.upgrade() else {
            return Err(EndpointError::cancelled()); // procos is shutting down
        };
        let Some(topic) = pipeline.topics().get(topic_name).cloned() else {
            return Err(EndpointError::permanent(format!(
                "sub-task topic `{topic_name}` is not configured"
            )));
        };
        if parent.depth + 1 > MAX_SUB_TASK_DEPTH {
            return Err(EndpointError::permanent(format!(
                "sub-task of topic `{topic_name}` would be nested {} deep (limit {MAX_SUB_TASK_DEPTH}): does a step's topic lead back to its Meta-PDE?",
                parent.depth + 1
            )));
        }
        let Some(slots) = self.slots.get(topic_name).cloned() else {
            return Err(EndpointError::permanent(format!(
                "sub-task topic `{topic_name}` has no pool"
            )));
        };
        let _permit = tokio::select! {
            permit = slots.lend() => permit.ok_or_else(EndpointError::cancelled)?,
            _ = parent.cancel.cancelled() => return Err(EndpointError::cancelled()),
        };
        let ctx = start::sub_task_context(&topic, variables, parent);
        let verdict =
            super::checked_work(&ctx, &topic, &mut super::StageTimings::default(), None).await;
        match &verdict {
            Verdict::Done { endpoint, .. } => {
                tracing::info!(endpoint = %endpoint, "Sub-task done.")
            }
            Verdict::Failed { error, .. } => tracing::warn!(error = %error, "Sub-task failed."),
            Verdict::Cancelled => tracing::info!("Sub-task cancelled."),
        }
        into_result(&topic, verdict)
    }
}

/// A sub-task's verdict as an endpoint result. A failure whose class the topic maps in
/// `bpmn_errors` becomes that business error, as it would for an engine task of the topic.
fn into_result(
    topic: &super::TopicRuntime,
    verdict: Verdict,
) -> Result<EndpointReply, EndpointError> {
    match verdict {
        Verdict::Done { output, usage, .. } => Ok(EndpointReply { output, usage }),
        Verdict::Cancelled => Err(EndpointError::cancelled()),
        Verdict::Failed { error, chain } => {
            let mapped = decide(None, topic, Verdict::failed(error.clone()));
            let mut error = match mapped {
                Some(Report::BpmnError { code, message }) => EndpointError {
                    kind: crate::endpoints::ErrorKind::Business { error_code: code },
                    message,
                    ..error
                },
                _ => error,
            };
            if error.details.is_none() && !chain.is_empty() {
                error.details = Some(chain.join("\n"));
            }
            Err(error)
        }
    }
}

#[async_trait]
impl SubTasks for SubTaskRunner {
    async fn run(
        &self,
        topic: &str,
        variables: Map<String, Value>,
        parent: &EndpointRequest,
    ) -> Result<EndpointReply, EndpointError> {
        // Created while the parent's span is current (this future is polled inside the parent
        // task's instrumented future), so it nests under it and inherits its fields.
        let span = tracing::info_span!(
            "sub_task",
            topic = %topic,
            parent = %parent.task_id,
            depth = parent.depth + 1
        );
        self.run_blocks(topic, variables, parent)
            .instrument(span)
            .await
    }
}

#[cfg(test)]
#[path = "sub_task_tests.rs"]
mod tests;
