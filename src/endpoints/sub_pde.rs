//! `sub_pde`: a Meta-PDE. Decomposes one task into steps, each a sub-task of another topic run
//! in process through that topic's Test → Gateway → Validation (on its own pool, within that
//! pool's concurrency bound), then combines the steps' results into the task's result.
//!
//! ```text
//!  task ─► steps whose dependencies are done start together ─► ... ─► combine ─► result
//!          analysis (topic ai_summarise) ──┐
//!          figures  (topic py_extract)  ───┴─► {"analysis": {...}, "figures": {...}}
//! ```
//!
//! Dependencies of a step: its `needs` list, every step its `input` mentions as
//! `steps.<name>` (or `steps["<name>"]`), and — with `parallel: false` — the step before it.
//! A step's input is a JSON template rendered over the task's variables plus `steps`: every
//! finished step's result under its name. A result that is not a JSON object is exposed as
//! `{"result": value}`, so `{{ steps.summary.result }}` works for text results; an object is
//! exposed as is. Without `input`, a step gets all of the task's variables.
//!
//! The first failing step cancels the others and fails the task with an error naming it
//! (`` step `figures` (topic py_extract) failed: … ``), keeping the step's error kind (a BPMN
//! error of a step is raised on the parent), class and details.
//!
//! Combining: `by_name` → `{name: result}`; `list` → `[result, …]` in step order; `merge` →
//! the object results merged key by key in step order (later steps win), a non-object result
//! under its step's name. Usage figures are summed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::class;
use super::health::HealthRegistry;
use super::stack::{self, CircuitConfig, Policy, ProbeConfig, RetryPolicy};
use super::template::{JsonTemplate, TemplateContext};
use super::{
    BuildContext, Endpoint, EndpointError, EndpointReply, EndpointRequest, ErrorKind, Usage,
};

/// `type: sub_pde`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubPdeConfig {
    /// The sub-tasks, in order (the order of `list` and `merge`).
    pub steps: Vec<StepConfig>,
    /// Run independent steps at the same time (default); `false` runs them one after another.
    #[serde(default = "default_parallel")]
    pub parallel: bool,
    /// How the steps' results become the task's result.
    #[serde(default)]
    pub combine: Combine,
    /// Deepest nesting of Meta-PDEs under this one (this one counts as 1); checked by
    /// `procos validate` over the step topics and again at run time.
    #[serde(default = "default_max_depth")]
    pub max_depth: u32,
    /// Bound on the whole Meta-PDE call (every step); unbounded when absent.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Bound on Meta-PDE calls in flight; unbounded when absent (each step's pool bounds it).
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    /// The breaker of the Meta-PDE as a whole (never retried: its steps have side effects).
    #[serde(default)]
    pub circuit: CircuitConfig,
    /// The background probe: every step's topic has an endpoint whose circuit is not open (read
    /// from the health registry; on by default).
    #[serde(default)]
    pub probe: ProbeConfig,
}

/// One step of a Meta-PDE.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// The step's name: its key in `by_name` results and in `steps.<name>` of later inputs.
    pub name: String,
    /// The topic whose pipeline runs the step (on that topic's pool).
    pub topic: String,
    /// The sub-task's variables, a JSON template; default: all of the task's variables.
    #[serde(default)]
    pub input: Option<Value>,
    /// Steps that must finish first (besides those the input mentions).
    #[serde(default)]
    pub needs: Vec<String>,
}

/// How step results are combined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// Object results merged in step order; a non-object result under its step name.
    Merge,
    /// `{step name: result}`.
    #[default]
    ByName,
    /// `[result, …]` in step order.
    List,
}

fn default_parallel() -> bool {
    true
}
fn default_max_depth() -> u32 {
    3
}

impl SubPdeConfig {
    /// How the stack wraps this endpoint: never retried (a retry would run every step again).
    pub fn policy(&self) -> Policy {
        Policy {
            timeout: self.timeout,
            max_concurrency: self.max_concurrency,
            circuit: self.circuit.clone(),
            retry: RetryPolicy::none(),
            probe: self.probe.schedule(true),
        }
    }
}

/// Names of the steps a template mentions as `steps.<name>`, `steps["<name>"]` or
/// `steps['<name>']`.
pub fn mentioned_steps(template: &Value) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    collect_mentions(template, &mut found);
    found
}

/// True when a template uses `steps` in a form the dependency scan cannot see (`{% set s =
/// steps %}`, `steps[var]`, `steps | attr(x)`). Asks minijinja itself: with nested lookups, a
/// plain `steps.x` or `steps["x"]` is reported as `steps.x`, any other use as bare `steps`.
fn uses_steps_opaquely(value: &Value) -> bool {
    match value {
        Value::String(s) if s.contains("steps") => {
            // A literal subscript (`steps["a"]`) is as clear as `steps.a`; minijinja reports it
            // as bare `steps`, so spell it as an attribute first.
            let mut source = s.clone();
            for quote in ['"', '\''] {
                let open = format!("steps[{quote}");
                while let Some(at) = source.find(&open) {
                    let name_start = at + open.len();
                    let Some(len) = source[name_start..].find(quote) else {
                        break;
                    };
                    let name = source[name_start..name_start + len].to_string();
                    let close = name_start + len + 1;
                    if !source[close..].starts_with(']')
                        || !name.chars().all(|c| c.is_alphanumeric() || c == '_')
                    {
                        break;
                    }
                    source.replace_range(at..close + 1, &format!("steps.{name}"));
                }
            }
            let env = minijinja::Environment::new();
            env.template_from_str(&source)
                .map(|t| t.undeclared_variables(true).contains("steps"))
                .unwrap_or(false)
        }
        Value::Array(items) => items.iter().any(uses_steps_opaquely),
        Value::Object(map) => map.values().any(uses_steps_opaquely),
        _ => false,
    }
}

fn collect_mentions(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(at) = rest.find("steps") {
                let before = s.len() - rest.len() + at;
                let is_word_start = s[..before]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'));
                rest = &rest[at + "steps".len()..];
                if !is_word_start {
                    continue;
                }
                let name: String = if let Some(tail) = rest.strip_prefix('.') {
                    tail.chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect()
                } else if let Some(tail) =
                    rest.strip_prefix("[\"").or_else(|| rest.strip_prefix("['"))
                {
                    tail.chars()
                        .take_while(|c| *c != '"' && *c != '\'')
                        .collect()
                } else {
                    String::new()
                };
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_mentions(v, found)),
        Value::Object(map) => map.values().for_each(|v| collect_mentions(v, found)),
        _ => {}
    }
}

impl SubPdeConfig {
    /// Each step's dependencies (indices), from `needs`, input mentions and `parallel: false`.
    /// Unknown names are left out (validation reports them).
    pub fn dependencies(&self) -> Vec<BTreeSet<usize>> {
        let mut index: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, s) in self.steps.iter().enumerate() {
            index.entry(s.name.as_str()).or_insert(i); // a duplicate name means its first step
        }
        self.steps
            .iter()
            .enumerate()
            .map(|(i, step)| {
                let mentioned = step.input.as_ref().map(mentioned_steps).unwrap_or_default();
                let mut deps: BTreeSet<usize> = step
                    .needs
                    .iter()
                    .map(String::as_str)
                    .chain(mentioned.iter().map(String::as_str))
                    .filter_map(|n| index.get(n).copied())
                    .collect();
                if !self.parallel && i > 0 {
                    deps.insert(i - 1);
                }
                deps
            })
            .collect()
    }

    /// Every problem as (path suffix, message): step names unique and non-empty, `needs` and
    /// `steps.<name>` mentions naming steps, no dependency cycle, inputs compile, depth ≥ 1.
    /// Whether the step topics exist is checked by config validation, which knows the topics.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = stack::validate(
            self.timeout.map(|t| ("timeout", t)),
            self.max_concurrency,
            &self.circuit,
            &self.probe,
            None,
        );
        if self.steps.is_empty() {
            out.push(("steps".into(), "a Meta-PDE needs at least one step".into()));
        }
        if self.max_depth < 1 {
            out.push(("max_depth".into(), "must be at least 1".into()));
        }
        let mut seen = BTreeSet::new();
        for (i, step) in self.steps.iter().enumerate() {
            if step.name.trim().is_empty() {
                out.push((format!("steps[{i}].name"), "must not be empty".into()));
            } else if !seen.insert(step.name.as_str()) {
                out.push((
                    format!("steps[{i}].name"),
                    format!("step name `{}` is used twice", step.name),
                ));
            }
        }
        let names: BTreeSet<&str> = self.steps.iter().map(|s| s.name.as_str()).collect();
        for (i, step) in self.steps.iter().enumerate() {
            for (j, need) in step.needs.iter().enumerate() {
                if !names.contains(need.as_str()) {
                    out.push((
                        format!("steps[{i}].needs[{j}]"),
                        format!("no step is named `{need}`"),
                    ));
                }
            }
            if let Some(input) = &step.input {
                for name in mentioned_steps(input) {
                    if !names.contains(name.as_str()) {
                        out.push((
                            format!("steps[{i}].input"),
                            format!("mentions `steps.{name}`, but no step is named `{name}`"),
                        ));
                    }
                }
                if let Err(e) = JsonTemplate::compile(&format!("steps[{i}].input"), input) {
                    out.push((format!("steps[{i}].input"), e.to_string()));
                } else if uses_steps_opaquely(input) {
                    out.push((
                        format!("steps[{i}].input"),
                        "refers to `steps` other than as `steps.<name>` (e.g. through a variable or \
                         a computed key): procos could not tell which steps must finish first; \
                         write `steps.<name>` or list them in `needs`"
                            .into(),
                    ));
                }
            }
        }
        if let Some(cycle) = self.step_cycle() {
            out.push((
                "steps".into(),
                format!("the steps depend on each other in a cycle: {cycle}"),
            ));
        }
        out
    }

    /// A dependency cycle among the steps, as `a → b → a`, if there is one.
    fn step_cycle(&self) -> Option<String> {
        let deps = self.dependencies();
        // 0 = unvisited, 1 = on the current path, 2 = done.
        fn visit(
            i: usize,
            deps: &[BTreeSet<usize>],
            state: &mut [u8],
            path: &mut Vec<usize>,
        ) -> bool {
            state[i] = 1;
            path.push(i);
            for &d in &deps[i] {
                if state[d] == 1 {
                    path.push(d);
                    return true;
                }
                if state[d] == 0 && visit(d, deps, state, path) {
                    return true;
                }
            }
            path.pop();
            state[i] = 2;
            false
        }
        let mut state = vec![0u8; deps.len()];
        for i in 0..deps.len() {
            let mut path = Vec::new();
            if state[i] == 0 && visit(i, &deps, &mut state, &mut path) {
                let last = *path.last()?;
                let start = path.iter().position(|&p| p == last)?;
                let names: Vec<&str> = path[start..]
                    .iter()
                    .map(|&p| self.steps[p].name.as_str())
                    .collect();
                return Some(names.join(" → "));
            }
        }
        None
    }
}

/// A compiled step.
#[derive(Debug)]
struct Step {
    name: String,
    topic: String,
    input: Option<JsonTemplate>,
    deps: BTreeSet<usize>,
}

/// The Meta-PDE endpoint.
#[derive(Debug)]
pub struct SubPdeEndpoint {
    name: String,
    steps: Vec<Step>,
    combine: Combine,
    /// The daemon's health registry and each step topic's endpoints, for the probe.
    health: Option<(Arc<HealthRegistry>, Vec<Vec<String>>)>,
}

impl SubPdeEndpoint {
    /// Compiles the step inputs. A config with problems (see [`SubPdeConfig::validate`]) is
    /// refused, naming the first.
    pub fn new(name: &str, config: &SubPdeConfig) -> Result<Self, EndpointError> {
        if let Some((path, message)) = config.validate().into_iter().next() {
            return Err(EndpointError::permanent(format!("{path}: {message}")));
        }
        let deps = config.dependencies();
        let steps = config
            .steps
            .iter()
            .zip(deps)
            .enumerate()
            .map(|(i, (s, deps))| {
                let input = s
                    .input
                    .as_ref()
                    .map(|v| {
                        JsonTemplate::compile(&format!("endpoints.{name}.steps[{i}].input"), v)
                    })
                    .transpose()
                    .map_err(|e| EndpointError::permanent(e.to_string()))?;
                Ok(Step {
                    name: s.name.clone(),
                    topic: s.topic.clone(),
                    input,
                    deps,
                })
            })
            .collect::<Result<_, EndpointError>>()?;
        Ok(Self {
            name: name.to_string(),
            steps,
            combine: config.combine,
            health: None,
        })
    }

    /// Like [`SubPdeEndpoint::new`], probing its steps' health through the context's registry
    /// (a step's endpoints are its topic's, as the context knows them).
    pub fn with_context(
        name: &str,
        config: &SubPdeConfig,
        cx: &BuildContext,
    ) -> Result<Self, EndpointError> {
        let mut endpoint = Self::new(name, config)?;
        let of_steps = endpoint
            .steps
            .iter()
            .map(|s| cx.endpoints_of(&s.topic).to_vec())
            .collect();
        endpoint.health = Some((cx.health().clone(), of_steps));
        Ok(endpoint)
    }

    /// The variables of step `i`: its input rendered over the task and the results so far.
    fn input(
        &self,
        i: usize,
        request: &EndpointRequest,
        results: &[Option<Value>],
    ) -> Result<Map<String, Value>, EndpointError> {
        let step = &self.steps[i];
        let Some(template) = &step.input else {
            return Ok(request.variables.clone());
        };
        let steps: Map<String, Value> = self
            .steps
            .iter()
            .zip(results)
            .filter_map(|(s, r)| r.as_ref().map(|r| (s.name.clone(), exposed(r))))
            .collect();
        let mut scope = request.clone();
        scope.variables.insert("steps".into(), Value::Object(steps));
        let rendered = template
            .render(&TemplateContext::new(&scope))
            .map_err(|e| self.step_error(i, EndpointError::permanent(e.to_string())))?;
        match rendered {
            Value::Object(map) => Ok(map),
            other => Err(self.step_error(
                i,
                EndpointError::permanent(format!(
                    "input must render to a JSON object (variables), not {other}"
                )),
            )),
        }
    }

    /// The parent's error for a failed step: names the step and its topic, keeps the kind
    /// (an invalid output, already retried by the step's topic, becomes transient), class and
    /// details. Cancellation stays plain cancellation.
    fn step_error(&self, i: usize, error: EndpointError) -> EndpointError {
        if error.kind == ErrorKind::Cancelled {
            return error;
        }
        let step = &self.steps[i];
        let kind = match error.kind {
            ErrorKind::InvalidOutput => ErrorKind::Transient { retry_after: None },
            kind => kind,
        };
        EndpointError {
            kind,
            message: format!(
                "step `{}` (topic {}) failed: {}",
                step.name, step.topic, error.message
            ),
            ..error
        }
    }

    fn combine(&self, results: Vec<Value>) -> Value {
        match self.combine {
            Combine::List => Value::Array(results),
            Combine::ByName => Value::Object(
                self.steps
                    .iter()
                    .map(|s| s.name.clone())
                    .zip(results)
                    .collect(),
            ),
            Combine::Merge => {
                let mut merged = Map::new();
                for (step, result) in self.steps.iter().zip(results) {
                    match result {
                        Value::Object(map) => merged.extend(map),
                        other => {
                            merged.insert(step.name.clone(), other);
                        }
                    }
                }
                Value::Object(merged)
            }
        }
    }
}

/// How a finished step's result appears under `steps.<name>`: objects as they are, anything
/// else as `{"result": value}`.
fn exposed(result: &Value) -> Value {
    match result {
        Value::Object(_) => result.clone(),
        other => serde_json::json!({ "result": other }),
    }
}

/// Adds `more` to the running total.
fn add_usage(total: &mut Option<Usage>, more: Option<Usage>) {
    let Some(more) = more else { return };
    match total {
        None => *total = Some(more),
        Some(t) => {
            t.input_tokens += more.input_tokens;
            t.output_tokens += more.output_tokens;
            t.cost = match (t.cost, more.cost) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
            };
            if t.model != more.model {
                t.model = None; // several models: no one model answered
            }
        }
    }
}

#[async_trait]
impl Endpoint for SubPdeEndpoint {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "sub_pde"
    }

    /// Every step's topic has at least one endpoint whose circuit is not open (an open one
    /// whose cooldown is over counts as usable: it takes a trial call).
    async fn probe(&self) -> Result<(), EndpointError> {
        let Some((registry, of_steps)) = &self.health else {
            return Ok(());
        };
        let now = super::health::now_secs();
        for (step, endpoints) in self.steps.iter().zip(of_steps) {
            let open: Vec<&str> = endpoints
                .iter()
                .filter(|e| registry.get(e).unusable_at(now))
                .map(String::as_str)
                .collect();
            if !endpoints.is_empty() && open.len() == endpoints.len() {
                return Err(EndpointError::transient(format!(
                    "step `{}` (topic `{}`): every endpoint's circuit is open: {}",
                    step.name,
                    step.topic,
                    open.join(", ")
                ))
                .code(class::CIRCUIT_OPEN));
            }
        }
        Ok(())
    }

    async fn call(&self, request: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
        let Some(runner) = request.sub_tasks.clone() else {
            return Err(EndpointError::permanent(format!(
                "sub_pde endpoint `{}` runs only inside a PDE pipeline (no sub-task runner)",
                self.name
            )));
        };
        // `max_depth` is checked statically by `procos validate` (nesting under this Meta-PDE,
        // through its step topics); at run time the runner's absolute limit is the backstop.
        // Steps run under a child token: the first failure cancels the rest, and the task's own
        // cancellation reaches every step.
        let cancel = request.cancel.child_token();
        let _cancel_rest = cancel.clone().drop_guard();
        let mut parent = request.clone();
        parent.cancel = cancel;
        parent.feedback = None;

        let n = self.steps.len();
        let mut results: Vec<Option<Value>> = vec![None; n];
        let mut started = vec![false; n];
        let mut usage = None;
        let mut running = FuturesUnordered::new();
        loop {
            let ready: Vec<usize> = (0..n)
                .filter(|&i| {
                    !started[i] && self.steps[i].deps.iter().all(|&d| results[d].is_some())
                })
                .collect();
            for i in ready {
                started[i] = true;
                let variables = self.input(i, request, &results)?;
                let runner = runner.clone();
                let mut parent = parent.clone();
                // `{task}/{step}`: with the runner's `/{topic}`, each sub-task's id is unique
                // (and stable across retries) even when two steps share a topic — side effects
                // keyed on it (an email's Message-ID) stay apart.
                parent.task_id = format!("{}/{}", parent.task_id, self.steps[i].name);
                let topic = self.steps[i].topic.clone();
                tracing::debug!(step = %self.steps[i].name, topic = %topic, "Meta-PDE step started.");
                running.push(async move { (i, runner.run(&topic, variables, &parent).await) });
            }
            let Some((i, result)) = running.next().await else {
                break;
            };
            match result {
                Ok(reply) => {
                    add_usage(&mut usage, reply.usage);
                    results[i] = Some(reply.output);
                }
                Err(error) => {
                    if request.cancel.is_cancelled() {
                        return Err(EndpointError::cancelled());
                    }
                    return Err(self.step_error(i, error));
                }
            }
        }
        // Every step ran: the dependency graph is acyclic (checked when built), so the loop
        // starts each step once its dependencies are done.
        let results: Vec<Value> = results
            .into_iter()
            .map(|r| r.unwrap_or(Value::Null))
            .collect();
        Ok(EndpointReply {
            output: self.combine(results),
            usage,
        })
    }
}

#[cfg(test)]
#[path = "sub_pde/tests.rs"]
mod tests;
