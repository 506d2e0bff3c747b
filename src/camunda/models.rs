//! Request and response bodies of the calls procos makes, exactly as engine-rest spells them.
//!
//! Answers are read as leniently as a real engine (Camunda 7.2x, Operaton, CIB seven) may write
//! them: unknown fields are ignored, any field may be absent, and `null` reads as the field's
//! default — also where a DTO field is never null on Camunda 7.23 (a fork or an older version
//! may differ). `testdata/` holds recorded answers the tests feed in.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::variables::VariableMap;

/// Body of `POST /external-task/fetchAndLock`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchAndLock {
    pub worker_id: String,
    pub max_tasks: usize,
    pub use_priority: bool,
    /// Long-poll timeout in ms; `None` answers at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub async_response_timeout: Option<u64>,
    pub topics: Vec<FetchTopic>,
}

/// One topic of a fetchAndLock request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchTopic {
    pub topic_name: String,
    /// Lock duration in ms.
    pub lock_duration: u64,
    /// Variable names to fetch; `None` fetches all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variables: Option<Vec<String>>,
    pub include_extension_properties: bool,
    pub deserialize_values: bool,
}

/// A locked external task as fetchAndLock returns it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LockedTask {
    #[serde(deserialize_with = "null_as_default")]
    pub id: String,
    #[serde(deserialize_with = "null_as_default")]
    pub topic_name: String,
    pub worker_id: Option<String>,
    /// `yyyy-MM-dd'T'HH:mm:ss.SSSZ`.
    pub lock_expiration_time: Option<String>,
    pub create_time: Option<String>,
    /// Null until the first failure.
    pub retries: Option<i32>,
    pub error_message: Option<String>,
    pub error_details: Option<String>,
    pub process_instance_id: Option<String>,
    pub process_definition_id: Option<String>,
    pub process_definition_key: Option<String>,
    pub process_definition_version_tag: Option<String>,
    pub activity_id: Option<String>,
    pub activity_instance_id: Option<String>,
    pub execution_id: Option<String>,
    pub tenant_id: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub priority: i64,
    pub business_key: Option<String>,
    pub suspended: Option<bool>,
    #[serde(deserialize_with = "null_as_default")]
    pub variables: VariableMap,
    /// `camunda:property` name → value; a property without a value is left out.
    #[serde(deserialize_with = "strings_without_nulls")]
    pub extension_properties: BTreeMap<String, String>,
}

/// Body of `POST /external-task/{id}/complete`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Complete {
    pub worker_id: String,
    pub variables: VariableMap,
    pub local_variables: VariableMap,
}

/// Body of `POST /external-task/{id}/failure`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub worker_id: String,
    pub error_message: String,
    pub error_details: String,
    /// Remaining retries; 0 creates an incident.
    pub retries: i32,
    /// ms before the engine offers the task again.
    pub retry_timeout: u64,
}

/// Body of `POST /external-task/{id}/bpmnError`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BpmnError {
    pub worker_id: String,
    pub error_code: String,
    pub error_message: String,
    pub variables: VariableMap,
}

/// One file of a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Resource name (file name relative to the deploy dir), sent as the part's filename.
    pub name: String,
    /// File content.
    pub content: Vec<u8>,
}

/// A `POST /deployment/create` request.
#[derive(Debug, Clone)]
pub struct DeploymentRequest {
    pub name: String,
    pub source: String,
    pub tenant_id: Option<String>,
    /// Only changed resources get a new version (implies duplicate filtering).
    pub changed_only: bool,
    pub resources: Vec<Resource>,
}

/// The engine's answer to a deployment.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Deployment {
    #[serde(deserialize_with = "null_as_default")]
    pub id: String,
    pub name: Option<String>,
    pub source: Option<String>,
    pub deployment_time: Option<String>,
    pub tenant_id: Option<String>,
    /// Process definition id → definition (with `key`, `version`).
    pub deployed_process_definitions: Option<BTreeMap<String, Value>>,
}

/// The engine's answer to starting a process instance.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProcessInstance {
    #[serde(deserialize_with = "null_as_default")]
    pub id: String,
    pub definition_id: Option<String>,
    pub business_key: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub ended: bool,
    #[serde(deserialize_with = "null_as_default")]
    pub suspended: bool,
}

/// A historic process instance as `GET /history/process-instance/{id}` answers it (engine-rest
/// 7.23's `HistoricProcessInstanceDto`); what end-to-end checks and operators read after an
/// instance ended. Every field may be `null` or absent.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HistoricProcessInstance {
    pub id: Option<String>,
    pub business_key: Option<String>,
    pub process_definition_id: Option<String>,
    pub process_definition_key: Option<String>,
    pub process_definition_name: Option<String>,
    pub process_definition_version: Option<i32>,
    /// `yyyy-MM-dd'T'HH:mm:ss.SSSZ`.
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub removal_time: Option<String>,
    pub duration_in_millis: Option<i64>,
    pub start_user_id: Option<String>,
    pub start_activity_id: Option<String>,
    pub delete_reason: Option<String>,
    pub root_process_instance_id: Option<String>,
    pub super_process_instance_id: Option<String>,
    pub super_case_instance_id: Option<String>,
    pub case_instance_id: Option<String>,
    pub tenant_id: Option<String>,
    /// `ACTIVE`, `SUSPENDED`, `COMPLETED`, `EXTERNALLY_TERMINATED`, `INTERNALLY_TERMINATED`.
    pub state: Option<String>,
    pub restarted_process_instance_id: Option<String>,
}

/// `deserialize_with` for a field an engine may send as `null`: reads as the default.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// A string map that may be `null` or hold `null` values (left out).
fn strings_without_nulls<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    let map = Option::<BTreeMap<String, Option<String>>>::deserialize(deserializer)?;
    Ok(map
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect())
}
