//! The shape of `pde.yaml`, as serde reads it. Strict: every struct denies unknown keys, so a typo
//! is an error with its YAML path instead of a silently ignored setting.
//!
//! Durations are written `30s`, `500ms`, `2m` (humantime). Defaults are the ones a production
//! deployment beside Camunda 7 wants; each is named in a `default_*` function below.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::secret::Secret;
use crate::endpoints::EndpointConfig;
use crate::endpoints::class::ErrorClass;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// How to reach the engine and how to poll it.
    pub camunda: CamundaConfig,
    /// What to deploy from disk at boot and on change.
    #[serde(default)]
    pub deploy: DeployConfig,
    /// Pools of PDEs and shutdown behaviour.
    pub pde_manager: ManagerConfig,
    /// One entry per external-task topic procos serves.
    pub topics: BTreeMap<String, TopicConfig>,
    /// Named endpoints that topics and pools refer to.
    pub endpoints: BTreeMap<String, EndpointConfig>,
    /// OpenTelemetry traces (`telemetry:`); off by default.
    #[serde(default)]
    pub telemetry: super::telemetry::TelemetryConfig,
    /// The admin server: metrics, health, readiness, status API and page (issue 12).
    #[serde(default)]
    pub admin: super::admin::AdminConfig,
}

/// Connection to the engine's REST API and the fetch-and-lock parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CamundaConfig {
    /// Base URL of engine-rest, e.g. `http://localhost:8080/engine-rest`.
    #[serde(default = "default_url")]
    pub url: String,
    /// Credentials for the REST API; none by default (Camunda Run's default).
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Worker id sent with every call; default: hostname + random suffix, fixed for the process life.
    #[serde(default)]
    pub worker_id: Option<String>,
    /// How long a fetched task stays locked; the heartbeat extends it while work runs.
    #[serde(default = "default_lock_duration", with = "humantime_serde")]
    pub lock_duration: Duration,
    /// `asyncResponseTimeout` of fetchAndLock: how long one long poll may wait for work.
    #[serde(default = "default_long_poll", with = "humantime_serde")]
    pub long_poll: Duration,
    /// Upper bound on `maxTasks` per fetch, whatever the free capacity.
    #[serde(default = "default_max_tasks")]
    pub max_tasks: usize,
    /// Most per-task calls (complete, failure, bpmnError, extendLock, unlock) in flight to the
    /// engine at once, i.e. about the most HTTP connections procos holds to it (the long poll
    /// has its own). A burst of finished tasks waits for a free one instead of opening a
    /// connection each: each costs the engine a request thread (Tomcat's default pool is 200,
    /// shared by every worker) and procos a connection's buffers.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Fetch tasks by priority (`usePriority`).
    #[serde(default = "default_true")]
    pub use_priority: bool,
    /// Timeout of every call other than the long poll.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long boot waits for the engine to answer before giving up with a fatal error.
    #[serde(default = "default_boot_timeout", with = "humantime_serde")]
    pub boot_timeout: Duration,
    /// Retry policy for 5xx and I/O errors (fetch loop, completion, deploy).
    #[serde(default)]
    pub backoff: BackoffConfig,
}

/// Credentials for engine-rest.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// HTTP basic authentication (Camunda's `/engine-rest` auth filter).
    Basic { username: String, password: Secret },
    /// A static bearer token (e.g. from a gateway in front of the engine).
    Bearer { token: Secret },
}

/// Exponential backoff with full jitter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffConfig {
    /// First delay after a failure.
    #[serde(default = "default_backoff_initial", with = "humantime_serde")]
    pub initial: Duration,
    /// Ceiling for the delay.
    #[serde(default = "default_backoff_max", with = "humantime_serde")]
    pub max: Duration,
    /// Growth factor per consecutive failure.
    #[serde(default = "default_backoff_multiplier")]
    pub multiplier: f64,
}

/// The deploy directory and how it is watched.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    /// Folder whose `.bpmn`, `.dmn` and `.form` files are deployed (relative to the working dir).
    #[serde(default = "default_deploy_dir")]
    pub dir: PathBuf,
    /// Redeploy when files are added or changed.
    #[serde(default = "default_true")]
    pub watch: bool,
    /// `deployment-name`; with `source`, the key of Camunda's duplicate filtering.
    #[serde(default = "default_deployment_name")]
    pub deployment_name: String,
    /// `deployment-source`: stable, so that unchanged files are not redeployed.
    #[serde(default = "default_deployment_source")]
    pub source: String,
    /// Deploy for this tenant.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Quiet time after the last file event before redeploying.
    #[serde(default = "default_debounce", with = "humantime_serde")]
    pub debounce: Duration,
}

/// The PDE manager: pools and shutdown.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagerConfig {
    /// Named pools of PDEs.
    pub pools: BTreeMap<String, PoolConfig>,
    /// How long running tasks may take to finish after SIGTERM before procos exits anyway.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Directory of procos's embedded store: the outcome journal, the learner's statistics (and
    /// their snapshot `learner.json`), and the worker id when `camunda.worker_id` is not set.
    /// Without it the journal and the learner live in memory only: a task is still never run
    /// twice by one process, but a restart forgets what was reported and what was learned.
    #[serde(default)]
    pub state_dir: Option<std::path::PathBuf>,
    /// Where the learner's statistics are shared between replicas: a PostgreSQL URL
    /// (`postgres://user:password@host:5432/db`, `?sslmode=require` for TLS). Each replica writes
    /// its own rows and reads everyone's (learner/store/postgres.rs); the outcome journal stays
    /// under `state_dir`. Unset: the statistics live in `state_dir` (or in memory). The URL may
    /// carry a password, so it is a [`Secret`]: never in a log line or an error.
    #[serde(default)]
    pub state: Option<Secret>,
    /// How long a journaled outcome is kept after the engine acknowledged it; never less than
    /// twice the longest lock duration or the long poll plus a minute, so that a late duplicate
    /// delivery is recognised.
    #[serde(default = "default_journal_retention", with = "humantime_serde")]
    pub journal_retention: Duration,
}

/// A stale second delivery of a task arrives within a lock duration (or a long poll) of its
/// report; five minutes covers the defaults several times over, and keeps the ledger at about
/// 0.7 KiB × the tasks finished in five minutes.
fn default_journal_retention() -> Duration {
    Duration::from_secs(300)
}

/// A pool of Process Definition Executors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Number of PDE executors in the pool (tasks are spread over them, least busy first).
    #[serde(default = "default_instances")]
    pub instances: usize,
    /// Endpoints the pool's PDEs may call; a topic on this pool may only use these.
    pub endpoints: Vec<String>,
    /// Bound on tasks in flight in the whole pool; the fetch loop never asks for more.
    pub max_concurrent_tasks: usize,
}

/// One external-task topic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// The pool whose PDEs run this topic's tasks.
    pub pool: String,
    /// Endpoints in routing order: primary first, then fallbacks.
    pub endpoints: Vec<String>,
    /// Retries for a task the engine has never seen fail (`task.retries` is null until then).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// `retryTimeout` sent with a failure: how long the engine waits before offering it again.
    #[serde(default = "default_retry_timeout", with = "humantime_serde")]
    pub retry_timeout: Duration,
    /// Lock duration for this topic; default `camunda.lock_duration`.
    #[serde(default, with = "humantime_serde")]
    pub lock_duration: Option<Duration>,
    /// Fetch only these variables (default: all).
    #[serde(default)]
    pub variables: Option<Vec<String>>,
    /// Input checks done by the Test block.
    #[serde(default)]
    pub input: InputConfig,
    /// How the result becomes process variables, and the rules Validation checks.
    #[serde(default)]
    pub output: OutputConfig,
    /// Error class → BPMN error code. The classes are parsed at load (`input_invalid`,
    /// `http_404`, `http_4xx`, `exit_3`, …; see [`ErrorClass`]), so a misspelt one is refused at
    /// its path instead of never matching.
    #[serde(default)]
    pub bpmn_errors: BTreeMap<ErrorClass, String>,
    /// Opt-in result cache: a task whose endpoint and input match a stored valid result gets it
    /// without calling the endpoint. Refused on topics that can reach a side-effecting endpoint.
    #[serde(default)]
    pub cache: Option<CacheConfig>,
    /// How the Gateway orders the topic's endpoints for each task (default: as listed).
    #[serde(default)]
    pub routing: RoutingConfig,
}

/// `topics.<name>.routing`: the strategy that ranks the topic's endpoints per task, and its
/// settings. Validation turns it into a [`RoutingPlan`] (templates compiled, names checked), so
/// the Gateway never re-checks it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Which strategy ranks the endpoints.
    #[serde(default)]
    pub strategy: RouteStrategy,
    /// `adaptive`: what "best" means — quality (success × validation pass × judge score),
    /// latency and cost, each weighted.
    #[serde(default)]
    pub weights: Option<RouteWeights>,
    /// `adaptive`: share of tasks (0..1) routed first to an endpoint other than the policy's
    /// choice, so that a recovered endpoint is noticed. Default 0.02.
    #[serde(default)]
    pub explore: Option<f64>,
    /// `adaptive`: calls an endpoint needs (per task class) before its figures count fully;
    /// afterwards they never count for less, however old. Default 10.
    #[serde(default)]
    pub min_samples: Option<u32>,
    /// Decay half-life of what the learner saw for this topic (default 1 h): an observation this
    /// old weighs half a fresh one.
    #[serde(default, with = "humantime_serde")]
    pub half_life: Option<Duration>,
    /// `rules`: first matching rule wins; the last one has no `when` (the default).
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// `weighted`: endpoint → relative weight (unlisted endpoints of the topic weigh 1).
    #[serde(default)]
    pub endpoint_weights: BTreeMap<String, f64>,
    /// Endpoints of the topic the strategy does not rank: they always come last, in this order
    /// (a last resort such as a keyword script behind the models).
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// Write `{endpoint, strategy, reason, class}` of the route into this process variable as
    /// JSON.
    #[serde(default)]
    pub route_variable: Option<String>,
}

/// The routing strategies (a closed set: an unknown name is refused at load).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteStrategy {
    /// As listed: primary first, then fallbacks (procos's behaviour before routing existed).
    #[default]
    Ordered,
    /// The first rule whose `when` holds names the endpoints.
    Rules,
    /// Random by `endpoint_weights`; the rest follow as fallbacks.
    Weighted,
    /// Fewest calls in flight first.
    LeastBusy,
    /// Lowest learned latency first.
    Latency,
    /// Lowest learned cost first.
    Cost,
    /// A contextual bandit (Thompson sampling) over quality, latency and cost.
    Adaptive,
}

impl RouteStrategy {
    /// The name as written in `pde.yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteStrategy::Ordered => "ordered",
            RouteStrategy::Rules => "rules",
            RouteStrategy::Weighted => "weighted",
            RouteStrategy::LeastBusy => "least_busy",
            RouteStrategy::Latency => "latency",
            RouteStrategy::Cost => "cost",
            RouteStrategy::Adaptive => "adaptive",
        }
    }
}

/// `routing.weights`: how much quality, latency and cost count for `adaptive`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteWeights {
    /// Weight of quality: success × validation pass × judge score, each 0..1.
    #[serde(default = "default_quality_weight")]
    pub quality: f64,
    /// Weight of latency, relative to the slowest candidate (0..1).
    #[serde(default = "default_side_weight")]
    pub latency: f64,
    /// Weight of cost per call, relative to the dearest candidate (0..1).
    #[serde(default = "default_side_weight")]
    pub cost: f64,
}

impl Default for RouteWeights {
    fn default() -> Self {
        Self {
            quality: default_quality_weight(),
            latency: default_side_weight(),
            cost: default_side_weight(),
        }
    }
}

fn default_quality_weight() -> f64 {
    1.0
}

fn default_side_weight() -> f64 {
    0.1
}

/// `routing.rules[]`: when `when` renders `true` for a task, its `endpoints` serve it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// A template over the task (e.g. `"{{ text | length > 8000 }}"`); absent on the default.
    #[serde(default)]
    pub when: Option<String>,
    /// Endpoints of the topic's pool, in order.
    pub endpoints: Vec<String>,
}

/// What validation made of a topic's `routing:`: the runtime form the Gateway builds its router
/// from.
#[derive(Debug, Clone)]
pub struct RoutingPlan {
    /// The strategy and its compiled settings.
    pub kind: PlanKind,
    /// `rules:` with compiled conditions (empty: every endpoint of the topic is a candidate);
    /// the last one has no condition.
    pub rules: Vec<CompiledRule>,
    /// Always last, in this order, never ranked.
    pub fallbacks: Vec<String>,
    /// Where to write the route, if anywhere.
    pub route_variable: Option<String>,
    /// The topic's decay half-life, when set.
    pub half_life: Option<Duration>,
}

/// A strategy with its settings checked.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanKind {
    /// As listed.
    Ordered,
    /// As the matching rule lists them.
    Rules,
    /// Endpoint → weight, for every endpoint named in `endpoint_weights` (others weigh 1).
    Weighted(BTreeMap<String, f64>),
    /// Fewest in flight first.
    LeastBusy,
    /// Lowest learned latency first.
    Latency,
    /// Lowest learned cost first.
    Cost,
    /// Thompson sampling with these settings.
    Adaptive(AdaptiveSettings),
}

impl PlanKind {
    /// The strategy's name as written in `pde.yaml`.
    pub fn name(&self) -> &'static str {
        match self {
            PlanKind::Ordered => RouteStrategy::Ordered.as_str(),
            PlanKind::Rules => RouteStrategy::Rules.as_str(),
            PlanKind::Weighted(_) => RouteStrategy::Weighted.as_str(),
            PlanKind::LeastBusy => RouteStrategy::LeastBusy.as_str(),
            PlanKind::Latency => RouteStrategy::Latency.as_str(),
            PlanKind::Cost => RouteStrategy::Cost.as_str(),
            PlanKind::Adaptive(_) => RouteStrategy::Adaptive.as_str(),
        }
    }
}

/// A rule whose condition compiled.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    /// Its index in `rules`, for the route's reason.
    pub index: usize,
    /// The condition; `None` on the default rule.
    pub when: Option<crate::endpoints::template::Template>,
    /// The endpoints it names.
    pub endpoints: Vec<String>,
}

/// `adaptive`'s checked settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveSettings {
    /// What "best" means.
    pub weights: RouteWeights,
    /// Exploration floor, 0..1.
    pub explore: f64,
    /// Calls before an endpoint's figures count fully (and the evidence never forgotten).
    pub min_samples: u32,
}

/// Default `routing.explore`.
pub const DEFAULT_EXPLORE: f64 = 0.02;
/// Default `routing.min_samples`.
pub const DEFAULT_MIN_SAMPLES: u32 = 10;

impl TopicConfig {
    /// `routing:` checked and compiled into the plan the Gateway runs (the same function
    /// `procos validate` reports from, so builders never re-check). `pool_endpoints`: the
    /// endpoints of the topic's pool, `None` when unknown.
    pub fn routing_plan(
        &self,
        name: &str,
        pool_endpoints: Option<&[String]>,
    ) -> Result<RoutingPlan, Vec<super::Problem>> {
        super::validate::routing_plan(name, self, pool_endpoints)
    }
}

/// `topics.<name>.cache`: how long and how many valid results are kept, in memory only.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// How long a stored result may be served; an expired one never is.
    #[serde(default = "default_cache_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// Most results kept; storing one more evicts the oldest.
    #[serde(default = "default_cache_entries")]
    pub max_entries: usize,
}

fn default_cache_ttl() -> Duration {
    Duration::from_secs(600)
}

fn default_cache_entries() -> usize {
    10_000
}

/// What the Test block checks before any endpoint is called.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// Variables that must be present and not null.
    #[serde(default)]
    pub required: Vec<String>,
    /// Expected JSON type of a variable: `string`, `number`, `integer`, `boolean`, `object`, `array`.
    #[serde(default)]
    pub types: BTreeMap<String, JsonType>,
}

/// A JSON type name, as used by input checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonType {
    String,
    Number,
    Integer,
    Boolean,
    Object,
    Array,
}

/// How an endpoint's result is checked and turned into variables.
///
/// `Default` is written out below: a derived one would give `attempts: 0` to topics without an
/// `output:` section, where serde's field default (1) never runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Put the whole result in this one variable.
    #[serde(default)]
    pub variable: Option<String>,
    /// Variable name → JSON pointer into the result (e.g. `status: /status`).
    #[serde(default)]
    pub mapping: BTreeMap<String, String>,
    /// Top-level keys (or JSON pointers starting with `/`) the result must have.
    #[serde(default)]
    pub required: Vec<String>,
    /// A JSON Schema the result must satisfy.
    #[serde(default)]
    pub schema: Option<serde_json::Value>,
    /// Set the variables as local variables of the task's execution.
    #[serde(default)]
    pub local: bool,
    /// Calls of the same endpoint per task when its result fails validation (then: next fallback).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Also write which endpoint served and its usage (model, tokens, cost; zero when the endpoint
    /// reports none) into this variable as JSON.
    #[serde(default)]
    pub usage_variable: Option<String>,
    /// Rules on values of the result, each at a JSON pointer (`regex`, length and numeric
    /// bounds); a result breaking one is invalid like one failing the schema.
    #[serde(default)]
    pub checks: Vec<CheckConfig>,
    /// An endpoint of the topic's pool that judges each valid result: called with the task's
    /// variables plus `result`, it answers `{pass, score, reason}`. A failed judgement is an
    /// invalid result (retried with the reason as feedback, then the next endpoint).
    #[serde(default)]
    pub validator: Option<String>,
}

/// `output.checks[]`: rules on the value at `pointer`. Every rule given must hold; a missing
/// value, or one of the wrong type for a rule, breaks it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// JSON pointer into the result (RFC 6901, e.g. `/label`).
    pub pointer: String,
    /// A string value must match this regular expression (`regex` crate syntax; unanchored
    /// unless written with `^…$`).
    #[serde(default)]
    pub regex: Option<String>,
    /// Fewest characters of a string, or items of an array.
    #[serde(default)]
    pub min_length: Option<usize>,
    /// Most characters of a string, or items of an array.
    #[serde(default)]
    pub max_length: Option<usize>,
    /// Smallest number allowed (inclusive).
    #[serde(default)]
    pub min: Option<f64>,
    /// Largest number allowed (inclusive).
    #[serde(default)]
    pub max: Option<f64>,
}

fn default_url() -> String {
    "http://localhost:8080/engine-rest".into()
}
fn default_lock_duration() -> Duration {
    Duration::from_secs(30)
}
fn default_long_poll() -> Duration {
    Duration::from_secs(20)
}
fn default_max_tasks() -> usize {
    100
}
fn default_max_connections() -> usize {
    crate::camunda::DEFAULT_MAX_CONNECTIONS
}
fn default_true() -> bool {
    true
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_boot_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_backoff_initial() -> Duration {
    Duration::from_millis(500)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(30)
}
fn default_backoff_multiplier() -> f64 {
    2.0
}
fn default_deploy_dir() -> PathBuf {
    PathBuf::from("bpmn")
}
fn default_deployment_name() -> String {
    "procos".into()
}
fn default_deployment_source() -> String {
    "procos".into()
}
fn default_debounce() -> Duration {
    Duration::from_millis(500)
}
fn default_grace() -> Duration {
    Duration::from_secs(30)
}
fn default_instances() -> usize {
    1
}
fn default_retries() -> u32 {
    3
}
fn default_retry_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_attempts() -> u32 {
    1
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: default_backoff_initial(),
            max: default_backoff_max(),
            multiplier: default_backoff_multiplier(),
        }
    }
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            variable: None,
            mapping: BTreeMap::new(),
            required: Vec::new(),
            schema: None,
            local: false,
            attempts: default_attempts(),
            usage_variable: None,
            checks: Vec::new(),
            validator: None,
        }
    }
}

impl Default for DeployConfig {
    fn default() -> Self {
        Self {
            dir: default_deploy_dir(),
            watch: true,
            deployment_name: default_deployment_name(),
            source: default_deployment_source(),
            tenant_id: None,
            debounce: default_debounce(),
        }
    }
}
