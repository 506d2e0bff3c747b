//! The three ways a worker ends its part of a task, as one value: what the Completion block
//! decides, what the outcome journal stores before sending, and what [`CamundaClient::report`]
//! sends.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::CamundaClient;
use super::error::CamundaError;
use super::variables::VariableMap;

/// One outcome report for an external task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Report {
    /// `POST /external-task/{id}/complete`.
    Complete {
        variables: VariableMap,
        local_variables: VariableMap,
    },
    /// `POST /external-task/{id}/bpmnError`.
    BpmnError { code: String, message: String },
    /// `POST /external-task/{id}/failure`; retries 0 makes the engine raise an incident.
    Failure {
        message: String,
        details: String,
        retries: i32,
        #[serde(with = "humantime_serde")]
        retry_timeout: Duration,
    },
}

impl Report {
    /// Label for logs: `complete`, `bpmn_error`, `failure`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Report::Complete { .. } => "complete",
            Report::BpmnError { .. } => "bpmn_error",
            Report::Failure { .. } => "failure",
        }
    }
}

impl CamundaClient {
    /// Sends one report for `task_id` (once; the caller decides about retries).
    pub async fn report(&self, task_id: &str, report: &Report) -> Result<(), CamundaError> {
        match report {
            Report::Complete {
                variables,
                local_variables,
            } => {
                self.complete(task_id, variables.clone(), local_variables.clone())
                    .await
            }
            Report::BpmnError { code, message } => {
                self.bpmn_error(task_id, code, message, VariableMap::new())
                    .await
            }
            Report::Failure {
                message,
                details,
                retries,
                retry_timeout,
            } => {
                self.failure(task_id, message, details, *retries, *retry_timeout)
                    .await
            }
        }
    }
}
