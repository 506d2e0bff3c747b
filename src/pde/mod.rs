//! The PDE pipeline: what happens to one external task.
//!
//! ```text
//!  LockedTask ─► Start ─► Test ─► Gateway ─► Validation ─► Completion ─► engine
//!               context   inputs   route:     call each     complete /
//!               + span    health   primary +  endpoint,     BPMN error /
//!                                  fallbacks  check result, failure (retries)
//!                                             retry/fallback
//! ```
//!
//! The five blocks are plain structs called in order from one readable [`Pipeline::run`]. Each
//! block's time is measured and logged with the outcome, and each runs in its own trace span
//! under the task's span ([`crate::telemetry::traces`]; nothing when traces are off). A block that decides the task's fate
//! early (Test rejects the input, Gateway finds no usable endpoint) hands a [`Verdict`] straight
//! to Completion, which alone talks to the engine.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::camunda::{CamundaClient, LockedTask};
use crate::endpoints::SubTasks;
use crate::journal::Journal;
use crate::telemetry::events::{TaskEvent, TaskEvents};
use crate::telemetry::traces;

pub mod cache;
pub mod completion;
pub mod gateway;
pub mod lease;
pub mod profile;
pub mod routing;
pub mod start;
pub mod sub_task;
pub mod test;
pub mod topic;
pub mod validation;
pub mod verdict;

pub use completion::{Completion, Outcome, TaskKey};
pub use lease::Lease;
pub use sub_task::SubTaskRunner;
pub use topic::TopicRuntime;
pub use verdict::Verdict;

/// Runs tasks of every configured topic. Cheap to share: built once, used by every PDE.
#[derive(Debug)]
pub struct Pipeline {
    topics: BTreeMap<String, Arc<TopicRuntime>>,
    completion: Completion,
    /// Runs Meta-PDE sub-tasks over these same topics; set once after building, because the
    /// runner needs the pipeline (see [`Pipeline::set_sub_tasks`]).
    sub_tasks: OnceLock<Arc<dyn SubTasks>>,
    /// Every finished engine task is published here (see [`crate::telemetry::events`]).
    events: TaskEvents,
}

/// How long each block took, for the task's final log line.
#[derive(Debug, Default, Clone, Copy)]
pub struct StageTimings {
    pub start_ms: u64,
    pub test_ms: u64,
    pub gateway_ms: u64,
    pub validation_ms: u64,
    pub completion_ms: u64,
}

fn ms_since(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

/// A block span's error status: a failed verdict's error class (never its message, which may
/// quote a value).
fn failure_class(verdict: &Verdict) -> Option<String> {
    match verdict {
        Verdict::Failed { error, .. } => {
            Some(error.code.clone().unwrap_or_else(|| "failed".into()))
        }
        Verdict::Done { .. } | Verdict::Cancelled => None,
    }
}

/// Test → Gateway → Validation on a built context, timing each block: everything between Start
/// and Completion. Engine tasks and Meta-PDE sub-tasks both run exactly this.
///
/// With `journal`, an engine task whose route holds an endpoint with side effects is journaled
/// as started before Validation calls it: if procos dies during the call, the task is not run a
/// second time (see [`crate::journal`]). Sub-tasks run inside their parent's mark.
pub(crate) async fn checked_work(
    ctx: &start::TaskContext,
    topic: &TopicRuntime,
    timings: &mut StageTimings,
    journal: Option<(&Journal, TaskKey<'_>)>,
) -> Verdict {
    checked_work_routed(ctx, topic, timings, journal).await.0
}

/// [`checked_work`], also returning the Gateway's note on the route (when it chose one), for
/// the task's `routing.route_variable`. The task is profiled once, here, after the Test block:
/// its class keys what the learner records and what the router ranks by. Public for the
/// routing benchmark, which drives exactly this code.
pub async fn checked_work_routed(
    ctx: &start::TaskContext,
    topic: &TopicRuntime,
    timings: &mut StageTimings,
    journal: Option<(&Journal, TaskKey<'_>)>,
) -> (Verdict, Option<gateway::RouteNote>) {
    let t = Instant::now();
    let report = traces::block("test", test::run(ctx, topic), |r| {
        r.as_ref().err().and_then(failure_class)
    })
    .await;
    timings.test_ms = ms_since(t);
    let report = match report {
        Ok(report) => report,
        Err(verdict) => return (verdict, None),
    };

    let t = Instant::now();
    let profile = profile::TaskProfile::of(&ctx.request);
    let route = traces::block_sync(
        "gateway",
        || gateway::route(ctx, topic, &report, &profile),
        |r| r.as_ref().err().and_then(failure_class),
    );
    timings.gateway_ms = ms_since(t);
    let (route, note) = match route {
        Ok(routed) => routed,
        Err(verdict) => return (verdict, None),
    };

    if let Some((journal, key)) = journal
        && let Some(endpoint) = route.endpoints.iter().find(|e| e.side_effects())
        && let Err(e) = journal
            .started(key.id, key.retries, key.topic, endpoint.name())
            .await
    {
        // Not crash-safe, but losing the task's work over a full disk would be worse.
        tracing::error!(error = %e, "Could not journal the task's start; running it anyway.");
    }

    let t = Instant::now();
    let verdict = traces::block(
        "validation",
        validation::execute_as(ctx, topic, &route, &profile.class),
        failure_class,
    )
    .await;
    timings.validation_ms = ms_since(t);
    (verdict, Some(note))
}

impl Pipeline {
    /// A pipeline over these topics, reporting to this engine through this journal.
    pub fn new(
        topics: BTreeMap<String, Arc<TopicRuntime>>,
        camunda: CamundaClient,
        journal: Journal,
    ) -> Self {
        Self {
            topics,
            completion: Completion::new(camunda, journal),
            sub_tasks: OnceLock::new(),
            events: TaskEvents::default(),
        }
    }

    /// The same pipeline publishing its finished tasks to `events` (a feed that outlives it,
    /// e.g. across config reloads) instead of its own.
    pub fn with_events(mut self, events: TaskEvents) -> Self {
        self.events = events;
        self
    }

    /// The feed of finished tasks: subscribe to see each one.
    pub fn events(&self) -> &TaskEvents {
        &self.events
    }

    /// Installs the runner that `sub_pde` endpoints use to run sub-tasks (every task's
    /// [`EndpointRequest::sub_tasks`](crate::endpoints::EndpointRequest::sub_tasks)). Set once;
    /// a second call is ignored and returns `false`.
    pub fn set_sub_tasks(&self, runner: Arc<dyn SubTasks>) -> bool {
        self.sub_tasks.set(runner).is_ok()
    }

    /// The sub-task runner, once installed.
    pub fn sub_tasks(&self) -> Option<Arc<dyn SubTasks>> {
        self.sub_tasks.get().cloned()
    }

    /// The engine client the pipeline reports to.
    pub fn camunda(&self) -> &CamundaClient {
        self.completion.camunda()
    }

    /// The Completion block: the only writer to the engine for a task.
    pub fn completion(&self) -> &Completion {
        &self.completion
    }

    /// The topic runtimes, by topic name.
    pub fn topics(&self) -> &BTreeMap<String, Arc<TopicRuntime>> {
        &self.topics
    }

    /// Runs one task through Start → Test → Gateway → Validation → Completion.
    ///
    /// `cancel` fires when the task is gone (lock lost, instance deleted) or procos stops hard;
    /// then nothing is reported to the engine. `lease` is released before anything is reported.
    /// The caller attaches the task's span ([`start::span`]).
    pub async fn run(
        &self,
        task: &LockedTask,
        cancel: CancellationToken,
        lease: &Lease,
    ) -> Outcome {
        // Traces: the task's span (the Start block's) around every block; its trace id goes on
        // the task's log span. Inert when traces are off.
        let trace = start::trace(task);
        trace.record_in_logs(&tracing::Span::current());
        let outcome = trace.scope(self.run_blocks(task, cancel, lease)).await;
        trace.finish(
            outcome.as_str(),
            matches!(outcome, Outcome::Failed | Outcome::Incident),
        );
        outcome
    }

    /// Gives a task back to the engine without running it.
    pub async fn give_back(&self, task: &LockedTask, lease: &Lease) -> Outcome {
        self.completion.abandon(task, true, lease).await
    }

    async fn run_blocks(
        &self,
        task: &LockedTask,
        cancel: CancellationToken,
        lease: &Lease,
    ) -> Outcome {
        let mut timings = StageTimings::default();
        let Some(topic) = self.topics.get(&task.topic_name).cloned() else {
            // The fetch loop asks only for configured topics; an engine answering with another is
            // a bug there. Leave the task for a worker that serves it.
            tracing::error!(topic = %task.topic_name, "Fetched a task for a topic procos does not serve; unlocking it.");
            return self.completion.abandon(task, true, lease).await;
        };

        let t = Instant::now();
        let ctx = match start::build(task, &topic, self.completion.camunda(), cancel) {
            Ok(mut ctx) => {
                ctx.request.sub_tasks = self.sub_tasks();
                ctx
            }
            Err(verdict) => {
                return self
                    .finish(task, &topic, verdict, None, timings, lease)
                    .await;
            }
        };
        timings.start_ms = ms_since(t);

        let journal = (self.completion.journal(), TaskKey::of(task));
        let (verdict, route) = checked_work_routed(&ctx, &topic, &mut timings, Some(journal)).await;
        self.finish(task, &topic, verdict, route.as_ref(), timings, lease)
            .await
    }

    async fn finish(
        &self,
        task: &LockedTask,
        topic: &TopicRuntime,
        verdict: Verdict,
        route: Option<&gateway::RouteNote>,
        mut timings: StageTimings,
        lease: &Lease,
    ) -> Outcome {
        let judge_score = match &verdict {
            Verdict::Done { judge: Some(j), .. } => Some(j.score),
            _ => None,
        };
        let (endpoint, error_class, error_message) = match &verdict {
            Verdict::Done { endpoint, .. } => (Some(endpoint.clone()), None, None),
            Verdict::Failed { error, .. } => (
                route.map(|r| r.endpoint.clone()),
                error.code.clone(),
                Some(crate::config::secret::redact(&error.message)),
            ),
            Verdict::Cancelled => (route.map(|r| r.endpoint.clone()), None, None),
        };
        let t = Instant::now();
        let outcome = traces::block(
            "completion",
            self.completion.finish(task, topic, verdict, route, lease),
            |o| matches!(o, Outcome::Failed | Outcome::Incident).then(|| o.as_str().to_string()),
        )
        .await;
        timings.completion_ms = ms_since(t);
        let total = timings.start_ms
            + timings.test_ms
            + timings.gateway_ms
            + timings.validation_ms
            + timings.completion_ms;
        topic
            .metrics
            .task_finished(outcome, std::time::Duration::from_millis(total));
        // The task's one line: what happened, where it was routed and why, and where the time
        // went. At DEBUG for a completed task — at thousands of tasks a second a line each was
        // a tenth or more of procos's CPU (BENCHMARKS.md), and metrics, the status page and the
        // engine's history already count them — at INFO for every other outcome.
        macro_rules! finished {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    outcome = outcome.as_str(),
                    endpoint = endpoint.as_deref(),
                    strategy = route.map(|r| r.strategy),
                    class = route.map(|r| r.class.as_str()),
                    reason = route.map(|r| r.reason.as_str()),
                    start_ms = timings.start_ms,
                    test_ms = timings.test_ms,
                    gateway_ms = timings.gateway_ms,
                    validation_ms = timings.validation_ms,
                    completion_ms = timings.completion_ms,
                    judge_score,
                    "Task finished."
                )
            };
        }
        if outcome == Outcome::Completed {
            finished!(tracing::Level::DEBUG);
        } else {
            finished!(tracing::Level::INFO);
        }
        self.events.send(TaskEvent {
            task_id: task.id.clone(),
            topic: topic.name.clone(),
            process_instance_id: task.process_instance_id.clone(),
            process_definition_key: task.process_definition_key.clone(),
            outcome: outcome.as_str(),
            endpoint,
            error_class,
            error_message,
            duration: std::time::Duration::from_millis(total),
            at: std::time::SystemTime::now(),
        });
        outcome
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::Value;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::camunda::ClientSettings;
    use crate::config::file::TopicConfig;
    use crate::endpoints::{Endpoint, EndpointConfig};

    #[tokio::test]
    async fn a_completed_task_carries_its_route_in_the_route_variable() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/external-task/t1/complete"))
            .respond_with(ResponseTemplate::new(204))
            .mount(&server)
            .await;
        let camunda = CamundaClient::new(ClientSettings {
            url: server.uri(),
            auth: None,
            worker_id: "w".into(),
            request_timeout: Duration::from_secs(5),
        })
        .expect("client");
        let noop: EndpointConfig = serde_yaml::from_str("type: noop").expect("noop");
        let registry: BTreeMap<String, Arc<dyn Endpoint>> = BTreeMap::from([(
            "echo".into(),
            noop.build("echo", &Default::default()).expect("builds"),
        )]);
        let config: TopicConfig = serde_yaml::from_str(
            "{pool: p, endpoints: [echo], routing: {strategy: least_busy, route_variable: pde_route}}",
        )
        .expect("topic");
        let topic = TopicRuntime::build("t", &config, &[], &registry, Duration::from_secs(30))
            .expect("topic builds");
        let pipeline = Pipeline::new(
            BTreeMap::from([("t".to_string(), Arc::new(topic))]),
            camunda,
            Journal::in_memory(Duration::from_secs(60)),
        );
        let mut finished = pipeline.events().subscribe();
        let task = LockedTask {
            id: "t1".into(),
            topic_name: "t".into(),
            process_instance_id: Some("pi1".into()),
            ..LockedTask::default()
        };
        let outcome = pipeline
            .run(&task, CancellationToken::new(), &Lease::new())
            .await;
        assert_eq!(outcome, Outcome::Completed);
        let event = finished
            .try_recv()
            .expect("the finished task was published");
        assert_eq!(
            (event.task_id.as_str(), event.topic.as_str(), event.outcome),
            ("t1", "t", "completed")
        );
        assert_eq!(event.process_instance_id.as_deref(), Some("pi1"));
        assert_eq!(event.endpoint.as_deref(), Some("echo"));
        assert_eq!(event.error_class, None);
        let requests = server.received_requests().await.unwrap_or_default();
        let body: Value = requests[0].body_json().expect("json");
        let route = &body["variables"]["pde_route"];
        assert_eq!(route["type"], "Json", "{body}");
        let value: Value =
            serde_json::from_str(route["value"].as_str().expect("a JSON string")).expect("json");
        assert_eq!(value["endpoint"], "echo");
        assert_eq!(value["strategy"], "least_busy");
        assert_eq!(value["class"], "s");
        assert!(
            value["reason"]
                .as_str()
                .is_some_and(|r| r.contains("echo 0 in flight")),
            "{value}"
        );
    }
}
