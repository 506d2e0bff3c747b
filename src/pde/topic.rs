//! A topic's runtime view, built once at start-up: its config, resolved endpoints and validator,
//! compiled output schema and checks, so that no per-task work repeats what can be done once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::cache::ResultCache;
use super::routing::{self, Busy, Router};
use super::validation::Check;
use crate::config::file::{RoutingPlan, TopicConfig};
use crate::endpoints::Endpoint;
use crate::learner::{Key, Learner, Sample};

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
    /// `routing:` as validation compiled it (rules, fallbacks, route variable).
    pub routing: RoutingPlan,
    /// The strategy that ranks the endpoints per task, built once from `routing`.
    pub router: Arc<dyn Router>,
    /// What procos has seen the endpoints do: one per daemon (see [`TopicRuntime::learning`]).
    pub learner: Arc<Learner>,
    /// Calls in flight per endpoint: one per daemon.
    pub busy: Arc<Busy>,
    /// The topic's task metrics, their handles kept.
    pub metrics: crate::telemetry::metrics::TopicMetrics,
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
    /// `routing:` is not valid (every problem, `path: message`, joined by `; `).
    #[error("topic `{topic}`: {problems}")]
    Routing {
        /// The topic.
        topic: String,
        /// Every problem with its YAML path.
        problems: String,
    },
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
        let routing = config
            .routing_plan(name, Some(pool_endpoint_names))
            .map_err(|problems| TopicError::Routing {
                topic: name.to_string(),
                problems: problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            })?;
        Ok(Self {
            router: routing::build(&routing.kind, None),
            routing,
            learner: Arc::new(Learner::default()),
            busy: Arc::new(Busy::default()),
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
            metrics: crate::telemetry::metrics::TopicMetrics::new(name),
        })
    }
}

impl TopicRuntime {
    /// The same topic sharing the daemon's learner and in-flight counts (built alone, a topic
    /// has its own); sets the topic's `routing.half_life` in the learner.
    pub fn learning(mut self, learner: Arc<Learner>, busy: Arc<Busy>) -> Self {
        if let Some(half_life) = self.routing.half_life {
            learner.set_half_life(&self.name, half_life);
        }
        self.learner = learner;
        self.busy = busy;
        self
    }

    /// Records one call of `endpoint` for a task of `class`: the learner, then the router.
    pub fn observe(&self, endpoint: &str, class: &str, sample: &Sample) {
        self.learner
            .observe(&Key::new(&self.name, endpoint, class), sample);
        self.router.observe(endpoint, class, sample);
    }
}
