//! The PDE manager: pools of PDEs, the one fetch loop, dispatch, lock heartbeats, and draining
//! on shutdown.
//!
//! ```text
//!              ┌──────────── reserve free slots of the pools (≤ camunda.max_tasks, fairly) ◄─┐
//!  fetch loop ─┤  one fetchAndLock for all topics whose pool has a free slot, maxTasks =     │
//!              │  slots reserved, long polling; cancelled at once on shutdown                │
//!              └─► each task: heartbeat + seat on its pool's least busy PDE ─► Pipeline::run ─┘
//! ```
//!
//! A task whose pool ran out of reserved slots (the engine may hand out tasks of one topic only,
//! or a Meta-PDE sub-task borrowed a slot parked for the poll) waits for a slot with its lock
//! kept alive. Each fetched task is first claimed in the outcome [`Journal`]: a task this worker
//! is already running, or has already finished, is never run a second time (see
//! [`task_run`]). Reports the engine could not take stay in the journal and are re-sent in the
//! background. On shutdown the loop stops fetching, waiting tasks are unlocked, running tasks get
//! `shutdown_grace` to finish; after that they are cancelled and unlocked so another worker can
//! take them at once.
//!
//! Pools, topic runtimes and the pipeline over them form one *generation*, the config in force.
//! A config reload ([`ManagerHandle::apply`], driven by [`crate::kernel::reload`]) builds a new
//! generation and swaps it in; the fetch loop reads the current one at the start of each round,
//! so new topics are asked for from the next poll on. A task keeps the generation it was
//! dispatched on (its pipeline, topic runtime and endpoints) until it ends. A task of a topic
//! the reload removed, brought back by the poll that was pending during the reload, is
//! unlocked without running. The learner, the journal and the feed of finished tasks are the
//! same for every generation.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;

use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::camunda::{CamundaClient, FetchAndLock, FetchTopic, LockedTask};
use crate::config::FileConfig;
use crate::config::file::BackoffConfig;
use crate::endpoints::{BuildContext, Endpoint, EndpointError};
use crate::journal::{Claim, Journal, Resend};
use crate::pde::{Completion, Lease, Outcome, Pipeline, SubTaskRunner, TaskKey, TopicRuntime};
use crate::telemetry::events::TaskEvents;

pub mod heartbeat;
pub mod pool;
pub mod status;
pub mod task_run;

use task_run::{TaskEnv, TaskRun};

pub use pool::Pool;

/// Long-poll timeout while some pool is full and therefore left out of the poll: how long a
/// freed slot of that pool may wait before its topics are asked for again.
const SATURATED_POLL: Duration = Duration::from_millis(500);

/// Why the manager could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// An endpoint could not be built.
    #[error("endpoint `{name}`: {source}")]
    Endpoint {
        name: String,
        #[source]
        source: EndpointError,
    },
    /// A topic could not be built.
    #[error(transparent)]
    Topic(#[from] crate::pde::topic::TopicError),
    /// A topic names a pool that does not exist.
    #[error("topic `{topic}`: pool `{pool}` does not exist")]
    UnknownPool { topic: String, pool: String },
}

/// Fetch-loop settings taken from `camunda:` and `pde_manager:`.
#[derive(Debug, Clone)]
struct FetchSettings {
    long_poll: Duration,
    max_tasks: usize,
    use_priority: bool,
    backoff: BackoffConfig,
    grace: Duration,
}

/// Runs every topic's tasks through its pool.
#[derive(Debug)]
pub struct Manager {
    shared: Arc<Shared>,
}

/// What outlives a config reload: the engine client, the journal, the learner, the feed of
/// finished tasks, and the current [`Generation`] that the fetch loop reads each round.
#[derive(Debug)]
struct Shared {
    camunda: CamundaClient,
    /// What runs here and what was reported: a task fetched again is never run twice.
    journal: Journal,
    /// One per daemon: what routing learns survives every reload.
    learner: Arc<crate::learner::Learner>,
    /// Calls in flight per endpoint, one per daemon.
    busy: Arc<crate::pde::routing::Busy>,
    /// Woken when a slot frees up, and when a reload changed what may be fetched.
    freed: Arc<Notify>,
    /// Every generation's pipeline publishes here, so subscribers keep the feed across reloads.
    events: TaskEvents,
    /// The config in force; replaced whole by [`ManagerHandle::apply`].
    current: RwLock<Arc<Generation>>,
}

/// One applied config: pools, topic runtimes and the pipeline over them. Tasks hold the
/// generation's pipeline and topic they started with, so a reload never changes a running task.
#[derive(Debug)]
pub(crate) struct Generation {
    pipeline: Arc<Pipeline>,
    pools: BTreeMap<String, Arc<Pool>>,
    topic_pool: BTreeMap<String, Arc<Pool>>,
    /// Pools that some topic runs on (the only ones the fetch loop reserves).
    serving: HashSet<String>,
    settings: FetchSettings,
    /// (name, kind) of every endpoint of the config, for the status view.
    endpoints: Vec<(String, &'static str)>,
}

/// Applies a new config to a running [`Manager`] (see [`crate::kernel::reload`]). Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct ManagerHandle {
    shared: Arc<Shared>,
}

/// What [`ManagerHandle::apply`] did, for the reload's log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Topics whose runtime was built anew (added or changed).
    pub topics_built: Vec<String>,
    /// Topics whose runtime was kept as it was (result cache included).
    pub topics_kept: Vec<String>,
    /// Pools created, or resized in place (size or instances).
    pub pools_built: Vec<String>,
}

/// How often the re-sender looks for journaled reports the engine has not taken yet (and
/// forgets expired journal entries).
const RESEND_EVERY: Duration = Duration::from_secs(2);
/// How often expired journal entries are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// Reports the re-sender sends at once (after an outage there may be thousands).
const RESEND_CONCURRENCY: usize = 16;

/// Builds every endpoint of the config once, each inside its layer stack, with the daemon's
/// build context (its shutdown token and tracker run the probes; its health registry is the one
/// the Test block reads). The context learns `camunda.url` and each topic's endpoints here.
pub fn build_endpoints(
    config: &FileConfig,
    cx: &BuildContext,
) -> Result<BTreeMap<String, Arc<dyn Endpoint>>, ManagerError> {
    build_named_endpoints(config, cx, |_| true)
}

/// Like [`build_endpoints`], only for the endpoints `wanted` picks (a config reload rebuilds
/// the added and changed ones and keeps the others).
pub fn build_named_endpoints(
    config: &FileConfig,
    cx: &BuildContext,
    wanted: impl Fn(&str) -> bool,
) -> Result<BTreeMap<String, Arc<dyn Endpoint>>, ManagerError> {
    let topics = config
        .topics
        .iter()
        .map(|(name, t)| (name.clone(), t.endpoints.clone()))
        .collect();
    let cx = cx
        .clone()
        .with_engine_url(config.camunda.url.clone())
        .with_topics(topics);
    config
        .endpoints
        .iter()
        .filter(|(name, _)| wanted(name))
        .map(|(name, c)| {
            c.build(name, &cx)
                .map(|e| (name.clone(), e))
                .map_err(|source| ManagerError::Endpoint {
                    name: name.clone(),
                    source,
                })
        })
        .collect()
}

/// Endpoints by name, and for each the token that stops its background work (probes).
pub type StoppableEndpoints = (
    BTreeMap<String, Arc<dyn Endpoint>>,
    BTreeMap<String, CancellationToken>,
);

/// [`build_named_endpoints`], each endpoint built with its own child of the context's shutdown
/// token: a config reload that replaces or removes an endpoint cancels it, so the old
/// endpoint's probes stop writing into the health entry the new one shares by name. On error
/// the tokens already made are cancelled.
pub fn build_stoppable_endpoints(
    config: &FileConfig,
    cx: &BuildContext,
    wanted: impl Fn(&str) -> bool,
) -> Result<StoppableEndpoints, ManagerError> {
    let mut endpoints = BTreeMap::new();
    let mut stops = BTreeMap::new();
    for name in config.endpoints.keys().filter(|n| wanted(n)) {
        let stop = cx.shutdown().child_token();
        let cx = cx.clone().with_shutdown(stop.clone());
        match build_named_endpoints(config, &cx, |n| n == name) {
            Ok(one) => {
                endpoints.extend(one);
                stops.insert(name.clone(), stop);
            }
            Err(e) => {
                stop.cancel();
                stops.values().for_each(CancellationToken::cancel);
                return Err(e);
            }
        }
    }
    Ok((endpoints, stops))
}

impl Manager {
    /// Builds pools and topic runtimes from a validated config and built endpoints. Every
    /// topic shares `learner` (one per daemon: what routing learns, and what the store keeps).
    pub fn new(
        config: &FileConfig,
        camunda: CamundaClient,
        endpoints: &BTreeMap<String, Arc<dyn Endpoint>>,
        journal: Journal,
        learner: Arc<crate::learner::Learner>,
    ) -> Result<Self, ManagerError> {
        Self::with_events(
            config,
            camunda,
            endpoints,
            journal,
            learner,
            TaskEvents::default(),
        )
    }

    /// Like [`Manager::new`], publishing finished tasks to `events` (a feed the caller already
    /// hands to its subscribers); every later generation publishes there too.
    pub fn with_events(
        config: &FileConfig,
        camunda: CamundaClient,
        endpoints: &BTreeMap<String, Arc<dyn Endpoint>>,
        journal: Journal,
        learner: Arc<crate::learner::Learner>,
        events: TaskEvents,
    ) -> Result<Self, ManagerError> {
        let parts = Parts {
            camunda: &camunda,
            journal: &journal,
            learner: &learner,
            busy: &Arc::new(crate::pde::routing::Busy::default()),
            freed: &Arc::new(Notify::new()),
            events: &events,
        };
        let (generation, _) = Generation::build(config, endpoints, None, &BTreeSet::new(), &parts)?;
        let shared = Shared {
            busy: parts.busy.clone(),
            freed: parts.freed.clone(),
            current: RwLock::new(Arc::new(generation)),
            camunda,
            journal,
            learner,
            events,
        };
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// The handle that applies reloaded configs while [`Manager::run`] goes on.
    pub fn handle(&self) -> ManagerHandle {
        ManagerHandle {
            shared: self.shared.clone(),
        }
    }

    /// The pools of the config in force, by name.
    pub fn pools(&self) -> BTreeMap<String, Arc<Pool>> {
        self.generation().pools.clone()
    }

    /// The pipeline of the config in force (tasks already running keep the one they started
    /// with).
    pub fn pipeline(&self) -> Arc<Pipeline> {
        self.generation().pipeline.clone()
    }

    /// The feed of finished tasks, the same across reloads.
    pub fn events(&self) -> &TaskEvents {
        &self.shared.events
    }

    /// The generation in force now.
    pub(crate) fn generation(&self) -> Arc<Generation> {
        self.shared.generation()
    }

    /// Fetches and runs tasks until `shutdown` fires, then drains (see the module docs).
    pub async fn run(self, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        let hard = CancellationToken::new();
        let first = self.generation();
        tracing::info!(
            pools = first.pools.len(),
            topics = first.topic_pool.len(),
            worker_id = self.shared.camunda.worker_id(),
            "PDE manager started."
        );
        drop(first);
        let resender = self.resend_loop(&shutdown);
        tokio::join!(self.fetch_loop(&tracker, &shutdown, &hard), resender);
        tracker.close();
        let grace = self.generation().settings.grace;
        tracing::info!(
            running = tracker.len(),
            grace_ms = grace.as_millis() as u64,
            "Stopped fetching; waiting for running tasks to finish."
        );
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            tracing::warn!(
                running = tracker.len(),
                "Grace period over; cancelling the remaining tasks and unlocking them."
            );
            hard.cancel();
            if tokio::time::timeout(Duration::from_secs(5), tracker.wait())
                .await
                .is_err()
            {
                tracing::error!(
                    running = tracker.len(),
                    "Tasks did not stop after cancellation; their locks will expire."
                );
            }
        }
        // One last pass for reports still pending, bounded: a frozen engine must not hold the exit.
        let (mut fresh, never) = (HashMap::new(), CancellationToken::new());
        let last_pass = self.resend_pass(&mut fresh, &never);
        let _ = tokio::time::timeout(Duration::from_secs(5), last_pass).await;
        if let Err(e) = self.shared.journal.flush().await {
            tracing::error!(error = %e, "Could not write the outcome journal's last entries.");
        }
        let unsent = self.shared.journal.unsettled().len();
        if unsent > 0 && self.shared.journal.is_durable() {
            tracing::warn!(
                unsent,
                "Stopping with outcomes the engine has not taken yet; they are in the journal and sent at the next start."
            );
        } else if unsent > 0 {
            tracing::error!(
                unsent,
                "Stopping with outcomes the engine has not taken yet, and no state_dir to keep them: their tasks run again elsewhere once their locks expire."
            );
        }
        tracing::info!("PDE manager stopped.");
    }

    /// Re-sends, in the background, reports the engine did not take when they were made (and
    /// those an earlier life journaled). Each report backs off on its own, so one the engine
    /// keeps refusing (a suspended instance, a 403 for one tenant) holds up no other; while the
    /// engine looks unreachable, whole passes back off.
    async fn resend_loop(&self, shutdown: &CancellationToken) {
        let mut engine = Backoff::new(self.generation().settings.backoff.clone());
        let mut retry_at = HashMap::new();
        let mut wait = Duration::ZERO;
        let mut swept = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return,
            }
            // The sweep scans the whole ledger under its lock: not on every pass.
            if swept.elapsed() >= SWEEP_EVERY {
                self.shared.journal.sweep();
                swept = Instant::now();
            }
            wait = if self.resend_pass(&mut retry_at, shutdown).await {
                engine.next_delay().max(RESEND_EVERY)
            } else {
                engine.reset();
                RESEND_EVERY
            };
        }
    }

    /// One pass over the reports that are due, [`RESEND_CONCURRENCY`] at a time, one attempt
    /// each; stops sending once the engine looks unreachable, or when `stop` fires. Returns
    /// whether the engine looked unreachable.
    async fn resend_pass(
        &self,
        retry_at: &mut HashMap<String, (Backoff, Instant)>,
        stop: &CancellationToken,
    ) -> bool {
        let pending = self.shared.journal.unsettled();
        let still: HashSet<&String> = pending.iter().collect();
        retry_at.retain(|id, _| still.contains(id));
        let now = Instant::now();
        let due = pending
            .into_iter()
            .filter(|id| retry_at.get(id).is_none_or(|(_, at)| *at <= now));
        let unreachable = AtomicBool::new(false);
        let generation = self.generation();
        let completion: &Completion = generation.pipeline.completion();
        let results: Vec<(String, Outcome)> = futures::stream::iter(due)
            .map(|id| {
                let (unreachable, generation) = (&unreachable, &generation);
                async move {
                    if unreachable.load(Ordering::Relaxed) {
                        return None;
                    }
                    let Resend {
                        running,
                        retries,
                        topic,
                        report,
                    } = self.shared.journal.claim_pending(&id)?;
                    let key = TaskKey {
                        id: &id,
                        retries,
                        topic: &topic,
                    };
                    let runtime = generation.pipeline.topics().get(&topic);
                    let (outcome, down) = completion
                        .deliver_once(key, runtime.map(Arc::as_ref), report)
                        .await;
                    drop(running);
                    if down {
                        unreachable.store(true, Ordering::Relaxed);
                    }
                    tracing::info!(task_id = %id, outcome = outcome.as_str(), "Re-sent a journaled outcome.");
                    Some((id, outcome))
                }
            })
            .buffer_unordered(RESEND_CONCURRENCY)
            .take_until(stop.cancelled())
            .filter_map(std::future::ready)
            .collect()
            .await;
        for (id, outcome) in results {
            if outcome == Outcome::Deferred {
                let (backoff, at) = retry_at.entry(id).or_insert_with(|| {
                    (
                        Backoff::new(self.generation().settings.backoff.clone()),
                        now,
                    )
                });
                *at = Instant::now() + backoff.next_delay();
            } else {
                retry_at.remove(&id);
            }
        }
        unreachable.into_inner()
    }

    async fn fetch_loop(
        &self,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
        hard: &CancellationToken,
    ) {
        let mut backoff = Backoff::new(self.generation().settings.backoff.clone());
        while !shutdown.is_cancelled() {
            // One generation per round: a reload takes effect from the next poll on.
            let g = self.generation();
            let reserved = g.reserve();
            if reserved.is_empty() {
                tokio::select! {
                    _ = self.shared.freed.notified() => continue,
                    _ = shutdown.cancelled() => break,
                }
            }
            let request = g.request(&reserved, self.shared.camunda.worker_id());
            // While the poll is pending, its slots are parked in their pools, where a Meta-PDE
            // sub-task may borrow one (see `pool`).
            for (name, permit) in reserved {
                if let Some(pool) = g.pools.get(&name) {
                    pool.park(permit);
                }
            }
            let asked = Instant::now();
            let result = tokio::select! {
                r = self.shared.camunda.fetch_and_lock(&request) => r,
                _ = shutdown.cancelled() => {
                    g.unpark();
                    break;
                }
            };
            crate::telemetry::metrics::fetched(result.is_ok(), result.as_ref().map_or(0, Vec::len));
            match result {
                Ok(tasks) => {
                    backoff.reset();
                    if tasks.is_empty() && asked.elapsed() < Duration::from_millis(100) {
                        // An empty answer that came back at once (no long polling, or an engine
                        // that ignores it) would make this loop spin; pace it instead.
                        g.unpark();
                        self.pause(Duration::from_secs(1), shutdown).await;
                        continue;
                    }
                    if !tasks.is_empty() {
                        tracing::debug!(
                            tasks = tasks.len(),
                            max_tasks = request.max_tasks,
                            "Fetched tasks."
                        );
                    }
                    for task in tasks {
                        self.dispatch(&g, task, tracker, shutdown, hard);
                    }
                    g.unpark();
                }
                Err(e) => {
                    g.unpark();
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        error = %e,
                        failures = backoff.failures(),
                        retry_in_ms = delay.as_millis() as u64,
                        "Fetching tasks failed; backing off."
                    );
                    self.pause(delay, shutdown).await;
                }
            }
        }
    }

    async fn pause(&self, delay: Duration, shutdown: &CancellationToken) {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => {}
        }
    }

    fn dispatch(
        &self,
        g: &Generation,
        task: LockedTask,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
        hard: &CancellationToken,
    ) {
        let pool = g.topic_pool.get(&task.topic_name).cloned();
        let span = crate::pde::start::span(&task, pool.as_ref().map_or("", |p| p.name.as_str()));
        let _entered = span.enter(); // not held across an await: dispatch is synchronous
        // A reload may have removed the topic while this poll was pending.
        let in_force = self.generation().topic_pool.contains_key(&task.topic_name);
        let (Some(pool), Some(topic)) = (pool, g.pipeline.topics().get(&task.topic_name).cloned())
        else {
            tracing::error!(
                "The engine returned a task of a topic procos did not ask for; leaving it to expire."
            );
            return;
        };
        let claim = self
            .shared
            .journal
            .claim(&task.id, task.retries, topic.lock_duration);
        let freed = self.shared.freed.clone();
        let claim = match claim {
            Claim::Run(running) if !in_force => {
                // New here, of a topic a reload removed: give it back, as if it had never been
                // asked for — only after the journal's claim, so a copy running here or an outcome
                // journaled here is never handed to another worker.
                tracing::info!("The task's topic was removed by a config reload; unlocking it.");
                let pipeline = g.pipeline.clone();
                drop(_entered);
                tracker.spawn(
                    async move {
                        pipeline.give_back(&task, &Lease::new()).await;
                        drop(running);
                        freed.notify_one();
                    }
                    .instrument(span),
                );
                return;
            }
            other => other,
        };
        let permit = pool.take_parked();
        let run = |running| {
            let env = TaskEnv {
                pipeline: g.pipeline.clone(),
                pool,
                topic: topic.clone(),
                shutdown: shutdown.clone(),
                hard: hard.clone(),
            };
            TaskRun::new(env, task, running)
        };
        let work = match claim {
            Claim::AlreadyRunning => {
                // Its lock lapsed and this worker fetched it again: the copy already running keeps
                // it (the new lock is ours too, and that copy's heartbeat extends it).
                tracing::warn!(
                    "Fetched a task that is already running here (its lock had lapsed); keeping the running copy."
                );
                return;
            }
            Claim::Finished => {
                tracing::warn!(
                    "Fetched a task whose outcome this worker has already reported (a late delivery); not running it again."
                );
                return;
            }
            Claim::Run(running) => {
                let run = run(running);
                drop(_entered);
                tracker.spawn(
                    async move {
                        run.run(permit).await;
                        freed.notify_one();
                    }
                    .instrument(span),
                );
                return;
            }
            Claim::Resend(running, report) => (run(running), report),
            Claim::Interrupted(running, endpoint) => {
                (run(running), Completion::interrupted(&endpoint))
            }
        };
        drop(permit); // a report needs no slot
        drop(_entered);
        let (run, report) = work;
        tracker.spawn(
            async move {
                run.resend(report).await;
                freed.notify_one();
            }
            .instrument(span),
        );
    }
}

/// What every generation is built with (fixed for the daemon's life).
struct Parts<'a> {
    camunda: &'a CamundaClient,
    journal: &'a Journal,
    learner: &'a Arc<crate::learner::Learner>,
    busy: &'a Arc<crate::pde::routing::Busy>,
    freed: &'a Arc<Notify>,
    events: &'a TaskEvents,
}

impl Shared {
    fn generation(&self) -> Arc<Generation> {
        // A poisoned lock only means a reload panicked mid-swap; the Arc inside is whole.
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn parts(&self) -> Parts<'_> {
        Parts {
            camunda: &self.camunda,
            journal: &self.journal,
            learner: &self.learner,
            busy: &self.busy,
            freed: &self.freed,
            events: &self.events,
        }
    }
}

impl ManagerHandle {
    /// Builds a generation from a reloaded (validated) config and puts it in force: the next
    /// poll asks for its topics. Pools are kept, resized in place (their running tasks count
    /// against the new size: see [`Pool::resize`]); `keep` names the topics whose runtime may
    /// be kept as it is (neither the topic nor its endpoints changed). Tasks already running
    /// finish on the generation they started on. On error nothing changes.
    pub fn apply(
        &self,
        config: &FileConfig,
        endpoints: &BTreeMap<String, Arc<dyn Endpoint>>,
        keep: &BTreeSet<String>,
    ) -> Result<Applied, ManagerError> {
        let old = self.shared.generation();
        let parts = self.shared.parts();
        let (generation, applied) = Generation::build(config, endpoints, Some(&old), keep, &parts)?;
        // Resized in place, on the old pool object: it holds the slots parked for the pending
        // poll (a pool with new instances shares its slots).
        for (name, p) in &config.pde_manager.pools {
            if let Some(pool) = old.pools.get(name) {
                pool.resize(p.max_concurrent_tasks);
            }
        }
        match self.shared.current.write() {
            Ok(mut current) => *current = Arc::new(generation),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(generation),
        }
        // A loop waiting for a free slot of the old pools must look at the new ones.
        self.shared.freed.notify_one();
        Ok(applied)
    }

    /// The pools of the config in force, by name (for status pages: they change on reload).
    pub fn pools(&self) -> BTreeMap<String, Arc<Pool>> {
        self.shared.generation().pools.clone()
    }

    /// The generation in force (the status view reads its topics).
    pub(crate) fn generation(&self) -> Arc<Generation> {
        self.shared.generation()
    }

    /// Topics of the config in force, by name.
    pub fn topics(&self) -> Vec<String> {
        self.shared
            .generation()
            .topic_pool
            .keys()
            .cloned()
            .collect()
    }
}

impl Generation {
    /// Pools and topic runtimes for `config`. With `previous`, its pools (resized later by
    /// [`ManagerHandle::apply`]) and the topics named in `keep` are taken over from it.
    fn build(
        config: &FileConfig,
        endpoints: &BTreeMap<String, Arc<dyn Endpoint>>,
        previous: Option<&Generation>,
        keep: &BTreeSet<String>,
        parts: &Parts<'_>,
    ) -> Result<(Self, Applied), ManagerError> {
        let mut applied = Applied::default();
        let mut pools: BTreeMap<String, Arc<Pool>> = BTreeMap::new();
        for (name, p) in &config.pde_manager.pools {
            let pool = match previous.and_then(|g| g.pools.get(name)) {
                // Resized in place: its running tasks keep counting against the new size.
                Some(old) => {
                    let (capacity, instances) = (p.max_concurrent_tasks, p.instances.max(1));
                    if old.capacity() != capacity || old.instances() != instances {
                        applied.pools_built.push(name.clone());
                    }
                    // (`ManagerHandle::apply` resizes it once the whole generation is built.)
                    if old.instances() == instances {
                        old.clone()
                    } else {
                        old.with_instances(instances)
                    }
                }
                None => {
                    if previous.is_some() {
                        applied.pools_built.push(name.clone());
                    }
                    Pool::notifying(
                        name,
                        p.instances,
                        p.max_concurrent_tasks,
                        parts.freed.clone(),
                    )
                }
            };
            pools.insert(name.clone(), pool);
        }
        let mut topics = BTreeMap::new();
        let mut topic_pool = BTreeMap::new();
        for (name, topic) in &config.topics {
            let (Some(pool), Some(pool_cfg)) = (
                pools.get(&topic.pool),
                config.pde_manager.pools.get(&topic.pool),
            ) else {
                return Err(ManagerError::UnknownPool {
                    topic: name.clone(),
                    pool: topic.pool.clone(),
                });
            };
            let kept = previous
                .filter(|_| keep.contains(name))
                .and_then(|g| g.pipeline.topics().get(name));
            let runtime = match kept {
                Some(runtime) => {
                    applied.topics_kept.push(name.clone());
                    runtime.clone()
                }
                None => {
                    applied.topics_built.push(name.clone());
                    let runtime = TopicRuntime::build(
                        name,
                        topic,
                        &pool_cfg.endpoints,
                        endpoints,
                        config.camunda.lock_duration,
                    )?
                    .learning(parts.learner.clone(), parts.busy.clone());
                    Arc::new(runtime)
                }
            };
            topics.insert(name.clone(), runtime);
            topic_pool.insert(name.clone(), pool.clone());
        }
        let pipeline = Arc::new(
            Pipeline::new(topics, parts.camunda.clone(), parts.journal.clone())
                .with_events(parts.events.clone()),
        );
        let slots = topic_pool
            .iter()
            .map(|(topic, pool)| {
                let lender: Arc<dyn crate::pde::sub_task::Slots> = pool.clone();
                (topic.clone(), lender)
            })
            .collect();
        pipeline.set_sub_tasks(Arc::new(SubTaskRunner::new(&pipeline, slots)));
        let generation = Self {
            pipeline,
            pools,
            serving: topic_pool.values().map(|p| p.name.clone()).collect(),
            topic_pool,
            settings: FetchSettings {
                long_poll: config.camunda.long_poll,
                max_tasks: config.camunda.max_tasks.max(1),
                use_priority: config.camunda.use_priority,
                backoff: config.camunda.backoff.clone(),
                grace: config.pde_manager.shutdown_grace,
            },
            endpoints: config
                .endpoints
                .iter()
                .map(|(name, e)| (name.clone(), e.kind()))
                .collect(),
        };
        Ok((generation, applied))
    }

    /// Releases the slots parked for the poll that just ended.
    fn unpark(&self) {
        for pool in self.pools.values() {
            pool.unpark();
        }
    }

    /// Takes free slots of the pools that serve topics, up to `max_tasks` in all, one slot per
    /// pool in turn so that a large pool cannot take the whole budget from the others.
    fn reserve(&self) -> BTreeMap<String, OwnedSemaphorePermit> {
        let mut budget = self.settings.max_tasks;
        let mut reserved: BTreeMap<String, OwnedSemaphorePermit> = BTreeMap::new();
        let serving: Vec<(&String, &Arc<Pool>)> =
            self.pools.iter().filter(|(n, _)| self.serves(n)).collect();
        let mut progress = true;
        while budget > 0 && progress {
            progress = false;
            for (name, pool) in &serving {
                if budget == 0 {
                    break;
                }
                let Some(permit) = pool.reserve(1) else {
                    continue;
                };
                budget -= 1;
                progress = true;
                match reserved.get_mut(*name) {
                    Some(held) => held.merge(permit),
                    None => {
                        reserved.insert((*name).clone(), permit);
                    }
                }
            }
        }
        reserved
    }

    /// Does any topic run on this pool?
    fn serves(&self, pool: &str) -> bool {
        self.serving.contains(pool)
    }

    fn request(
        &self,
        reserved: &BTreeMap<String, OwnedSemaphorePermit>,
        worker_id: &str,
    ) -> FetchAndLock {
        let topics = self
            .pipeline
            .topics()
            .values()
            .filter(|t| reserved.contains_key(&t.config.pool))
            .map(|t| FetchTopic {
                topic_name: t.name.clone(),
                lock_duration: t.lock_duration.as_millis() as u64,
                variables: t.config.variables.clone(),
                include_extension_properties: true,
                deserialize_values: false,
            })
            .collect();
        // A pool left out of this poll (no free slot) must not wait a whole long poll once its
        // slots free up: its topics are not in the pending request. Cancelling the pending
        // request could drop tasks the engine has just locked for it, so instead the poll is
        // kept short while any pool is left out.
        let left_out = self
            .pools
            .keys()
            .any(|p| !reserved.contains_key(p) && self.serves(p));
        let wait = if left_out {
            self.settings.long_poll.min(SATURATED_POLL)
        } else {
            self.settings.long_poll
        };
        FetchAndLock {
            worker_id: worker_id.to_string(),
            max_tasks: reserved.values().map(|p| p.num_permits()).sum(),
            use_priority: self.settings.use_priority,
            async_response_timeout: Some(wait.as_millis() as u64),
            topics,
        }
    }
}

#[cfg(test)]
mod tests;
