//! A topic's runtime view, built once at start-up: its config, resolved endpoints and validator,
//! compiled output schema and checks, so that no per-task work repeats what can be done once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::cache::ResultCache;
use super::validation::Check;
use crate::config::file::TopicConfig;
use crate::endpoints::Endpoint;

/// Everything the pipeline needs to know about one topic.
#[derive(Debug)]
pub struct TopicRuntime {
    /// The topic name.
    pub name: String,
    /// The topic's configuration.
    pub config: TopicConfig,
    /// Endpoints in routing order (primary first).
    pub endpoints: Vec<Arc<dyn Endpoint>>,
    /// Every endpoint of the topic's pool, for the `pde.endpoint` override.
    pub pool_endpoints: BTreeMap<String, Arc<dyn Endpoint>>,
    /// The compiled output schema.
    pub schema: Option<jsonschema::Validator>,
    /// The output schema as written, for endpoints that can request structured output.
    pub schema_value: Option<Arc<Value>>,
    /// Lock duration for this topic's tasks.
    pub lock_duration: Duration,
    /// `output.checks`, their regexes compiled once here.
    pub checks: Vec<Check>,
    /// The `output.validator` endpoint, resolved in the topic's pool.
    pub validator: Option<Arc<dyn Endpoint>>,
    /// Valid results kept for `cache:` (built once here; `None` when the topic has no cache).
    pub cache: Option<ResultCache>,
}

/// A topic that cannot be built (the config validation normally catches these first).
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The topic or its pool names an endpoint that does not exist.
    #[error("topic `{topic}`: endpoint `{endpoint}` does not exist")]
    UnknownEndpoint { topic: String, endpoint: String },
    /// An `output.checks[]` regex does not compile.
    #[error("topic `{topic}`: output.checks[{index}].regex does not compile: {message}")]
    Check {
        topic: String,
        index: usize,
        message: String,
    },
    /// `output.validator` is not an endpoint of the topic's pool.
    #[error("topic `{topic}`: validator `{endpoint}` is not an endpoint of its pool")]
    UnknownValidator { topic: String, endpoint: String },
    /// The output schema does not compile.
    #[error("topic `{topic}`: output.schema is not a valid JSON Schema: {message}")]
    Schema { topic: String, message: String },
}

impl TopicRuntime {
    /// Resolves the topic's endpoints from the registry and compiles its schema.
    pub fn build(
        name: &str,
        config: &TopicConfig,
        pool_endpoint_names: &[String],
        registry: &BTreeMap<String, Arc<dyn Endpoint>>,
        default_lock: Duration,
    ) -> Result<Self, TopicError> {
        let resolve = |endpoint: &String| {
            registry
                .get(endpoint)
                .cloned()
                .ok_or_else(|| TopicError::UnknownEndpoint {
                    topic: name.to_string(),
                    endpoint: endpoint.clone(),
                })
        };
        let endpoints = config
            .endpoints
            .iter()
            .map(resolve)
            .collect::<Result<Vec<_>, _>>()?;
        let pool_endpoints = pool_endpoint_names
            .iter()
            .map(|n| resolve(n).map(|e| (n.clone(), e)))
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        let schema = match &config.output.schema {
            Some(s) => Some(
                jsonschema::validator_for(s).map_err(|e| TopicError::Schema {
                    topic: name.to_string(),
                    message: e.to_string(),
                })?,
            ),
            None => None,
        };
        let checks = config
            .output
            .checks
            .iter()
            .enumerate()
            .map(|(index, c)| {
                Check::compile(c).map_err(|e| TopicError::Check {
                    topic: name.to_string(),
                    index,
                    message: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let validator = match &config.output.validator {
            Some(v) => Some(pool_endpoints.get(v).cloned().ok_or_else(|| {
                TopicError::UnknownValidator {
                    topic: name.to_string(),
                    endpoint: v.clone(),
                }
            })?),
            None => None,
        };
        Ok(Self {
            name: name.to_string(),
            config: config.clone(),
            endpoints,
            pool_endpoints,
            schema,
            schema_value: config.output.schema.clone().map(Arc::new),
            lock_duration: config.lock_duration.unwrap_or(default_lock),
            checks,
            validator,
            cache: config.cache.as_ref().map(|c| ResultCache::new(name, c)),
        })
    }
}
