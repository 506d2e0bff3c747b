//! Start block: turns a locked task into the context every later block works on — decoded typed
//! variables, extension properties, business key — and opens the task's tracing span and its
//! trace span ([`trace`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use tokio_util::sync::CancellationToken;

use super::topic::TopicRuntime;
use super::verdict::{Verdict, class};
use crate::camunda::variables::{decode_all, to_json_map};
use crate::camunda::{CamundaClient, LockedTask, VarType, Variable};
use crate::endpoints::{EndpointError, EndpointRequest, FileMeta, FileSource};
use crate::telemetry::traces::{TaskFields, TaskTrace};

/// The task as the pipeline sees it.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// What endpoints receive.
    pub request: EndpointRequest,
}

/// The task's span: every log line of the task carries these fields. `pool` is the pool whose
/// slot the task takes (empty for a topic procos does not serve); `trace_id` is recorded once the
/// task's trace starts (traces on and the task sampled), so log lines and traces can be joined.
/// Every other field is known here: recording one later makes the log layer parse and write the
/// span's fields again, which at thousands of tasks a second was 4% of procos's CPU.
pub fn span(task: &LockedTask, pool: &str) -> tracing::Span {
    tracing::info_span!(
        "task",
        task_id = %task.id,
        topic = %task.topic_name,
        process_instance = task.process_instance_id.as_deref().unwrap_or(""),
        business_key = task.business_key.as_deref().unwrap_or(""),
        activity = task.activity_id.as_deref().unwrap_or(""),
        pool,
        trace_id = tracing::field::Empty,
    )
}

/// The task's trace span (the Start block's span): ids and business key, never variables.
/// `trace_id` of [`span`] is recorded from it when the task is traced and sampled.
pub fn trace(task: &LockedTask) -> TaskTrace {
    TaskTrace::start(TaskFields {
        task_id: &task.id,
        topic: &task.topic_name,
        process_instance_id: task.process_instance_id.as_deref(),
        business_key: task.business_key.as_deref(),
        activity_id: task.activity_id.as_deref(),
    })
}

/// Builds the task context. A variable that cannot be decoded is an input error naming it.
pub fn build(
    task: &LockedTask,
    topic: &TopicRuntime,
    camunda: &CamundaClient,
    cancel: CancellationToken,
) -> Result<TaskContext, Verdict> {
    let variables = decode_all(&task.variables).map_err(|e| {
        Verdict::failed(
            EndpointError::permanent(format!("input invalid: {e}")).code(class::INPUT_INVALID),
        )
    })?;
    let request = EndpointRequest {
        task_id: task.id.clone(),
        topic: task.topic_name.clone(),
        activity_id: task.activity_id.clone().unwrap_or_default(),
        process_instance_id: task.process_instance_id.clone().unwrap_or_default(),
        business_key: task.business_key.clone(),
        variables: to_json_map(&variables),
        properties: task.extension_properties.clone(),
        output_schema: topic.schema_value.clone(),
        feedback: None,
        cancel,
        files: variables
            .values()
            .any(|v| v.var_type == VarType::File)
            .then(|| {
                Arc::new(EngineFiles {
                    camunda: camunda.clone(),
                    process_instance_id: task.process_instance_id.clone().unwrap_or_default(),
                    meta: file_meta(&variables),
                }) as Arc<dyn FileSource>
            }),
        sub_tasks: None,
        depth: 0,
    };
    tracing::debug!(
        variables = variables.len(),
        properties = request.properties.len(),
        retries = task.retries,
        "Task context built."
    );
    Ok(TaskContext { request })
}

/// Builds the context of a sub-task of a Meta-PDE (`sub_pde`) from plain JSON variables.
///
/// A sub-task is not an engine task: its id is `<parent task id>/<topic>`, it inherits the
/// parent's process instance, activity, business key, File variables, cancellation and
/// sub-task runner, and it carries no extension properties (the parent activity's properties,
/// e.g. `pde.endpoint`, are about the parent's topic, not this one). Its depth is the parent's + 1.
pub fn sub_task_context(
    topic: &TopicRuntime,
    variables: serde_json::Map<String, serde_json::Value>,
    parent: &EndpointRequest,
) -> TaskContext {
    let request = EndpointRequest {
        task_id: format!("{}/{}", parent.task_id, topic.name),
        topic: topic.name.clone(),
        activity_id: parent.activity_id.clone(),
        process_instance_id: parent.process_instance_id.clone(),
        business_key: parent.business_key.clone(),
        variables,
        properties: BTreeMap::new(),
        output_schema: topic.schema_value.clone(),
        feedback: None,
        cancel: parent.cancel.clone(),
        files: parent.files.clone(),
        sub_tasks: parent.sub_tasks.clone(),
        depth: parent.depth + 1,
    };
    TaskContext { request }
}

/// File variables downloaded from the engine (`GET /process-instance/{id}/variables/{name}/data`).
#[derive(Debug)]
struct EngineFiles {
    camunda: CamundaClient,
    process_instance_id: String,
    /// File name and MIME type of each File variable, from its `valueInfo`.
    meta: BTreeMap<String, FileMeta>,
}

#[async_trait]
impl FileSource for EngineFiles {
    async fn metadata(&self, name: &str) -> Option<FileMeta> {
        self.meta.get(name).cloned()
    }

    async fn load(&self, name: &str) -> Result<bytes::Bytes, EndpointError> {
        if name.contains('/') {
            // The name goes into the URL path; Tomcat (Camunda Run) refuses an encoded slash.
            return Err(EndpointError::permanent(format!(
                "file variable `{name}` cannot be downloaded: the engine's web server refuses a `/` in a variable name; rename the variable"
            ))
            .code(class::FILE_VARIABLE_NAME));
        }
        self.camunda
            .download_file(&self.process_instance_id, name, None)
            .await
            .map_err(|e| {
                let error =
                    EndpointError::transient(format!("downloading file variable `{name}`: {e}"));
                if e.is_retryable() {
                    error
                } else {
                    EndpointError {
                        kind: crate::endpoints::ErrorKind::Permanent,
                        ..error
                    }
                }
            })
    }
}

/// Name and MIME type of every File variable. Camunda writes `mimeType` (its REST docs also
/// show `mimetype`); both are read.
fn file_meta(variables: &BTreeMap<String, Variable>) -> BTreeMap<String, FileMeta> {
    let text =
        |v: &Variable, key: &str| v.info.get(key).and_then(|x| x.as_str()).map(str::to_string);
    variables
        .iter()
        .filter(|(_, v)| v.var_type == VarType::File)
        .map(|(name, v)| {
            let meta = FileMeta {
                filename: text(v, "filename"),
                mime_type: text(v, "mimeType").or_else(|| text(v, "mimetype")),
            };
            (name.clone(), meta)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::camunda::TypedValue;

    #[tokio::test]
    async fn a_file_variable_name_with_a_slash_is_refused_before_any_request() {
        let files = EngineFiles {
            camunda: CamundaClient::new(crate::camunda::ClientSettings {
                url: "http://127.0.0.1:9/engine-rest".into(),
                auth: None,
                worker_id: "w".into(),
                request_timeout: std::time::Duration::from_secs(1),
            })
            .expect("client"),
            process_instance_id: "pi".into(),
            meta: BTreeMap::new(),
        };
        let err = files.load("docs/claim.pdf").await.expect_err("refused");
        assert_eq!(err.code.as_deref(), Some("file_variable_name"));
        assert!(err.message.contains("`docs/claim.pdf`"), "{err}");
    }

    #[test]
    fn file_variables_keep_their_name_and_mime_type() {
        let wire: TypedValue = serde_json::from_value(json!({
            "value": null, "type": "File",
            "valueInfo": {"filename": "claim.pdf", "mimeType": "application/pdf", "encoding": null}
        }))
        .expect("wire");
        let vars = BTreeMap::from([
            (
                "doc".to_string(),
                Variable::decode("doc", &wire).expect("decodes"),
            ),
            ("n".to_string(), Variable::from_json(json!(1))),
        ]);
        let meta = file_meta(&vars);
        assert_eq!(meta.len(), 1);
        assert_eq!(meta["doc"].filename.as_deref(), Some("claim.pdf"));
        assert_eq!(meta["doc"].mime_type.as_deref(), Some("application/pdf"));
    }
}
