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
//! kept alive. A task this worker is already running (its lock
//! lapsed and the engine handed it out again) is not run a second time. On shutdown the loop
//! stops fetching, waiting tasks are unlocked, running tasks get `shutdown_grace` to finish;
//! after that they are cancelled and unlocked so another worker can take them at once.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::camunda::{Backoff, CamundaClient, FetchAndLock, FetchTopic, LockedTask};
use crate::config::FileConfig;
use crate::config::file::BackoffConfig;
use crate::endpoints::{Endpoint, EndpointError};
use crate::pde::{Lease, Outcome, Pipeline, SubTaskRunner, TopicRuntime};

pub mod heartbeat;
pub mod pool;

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
    camunda: CamundaClient,
    pipeline: Arc<Pipeline>,
    pools: BTreeMap<String, Arc<Pool>>,
    topic_pool: BTreeMap<String, Arc<Pool>>,
    settings: FetchSettings,
    freed: Arc<Notify>,
    /// Pools that some topic runs on (fixed at start; the only ones the fetch loop reserves).
    serving: HashSet<String>,
    /// Ids of tasks running or waiting here: a task whose lock lapsed may be fetched again by
    /// this same worker, and must not run twice.
    in_flight: Arc<Mutex<HashSet<String>>>,
}

/// What one dispatched task needs, cloned from the manager.
#[derive(Debug, Clone)]
struct TaskEnv {
    pipeline: Arc<Pipeline>,
    camunda: CamundaClient,
    pool: Arc<Pool>,
    topic: Arc<TopicRuntime>,
    shutdown: CancellationToken,
    hard: CancellationToken,
}

/// Builds every endpoint of the config once.
pub fn build_endpoints(
    config: &FileConfig,
) -> Result<BTreeMap<String, Arc<dyn Endpoint>>, ManagerError> {
    config
        .endpoints
        .iter()
        .map(|(name, c)| {
            c.build(name)
                .map(|e| (name.clone(), e))
                .map_err(|source| ManagerError::Endpoint {
                    name: name.clone(),
                    source,
                })
        })
        .collect()
}

impl Manager {
    /// Builds pools and topic runtimes from a validated config and built endpoints.
    pub fn new(
        config: &FileConfig,
        camunda: CamundaClient,
        endpoints: &BTreeMap<String, Arc<dyn Endpoint>>,
    ) -> Result<Self, ManagerError> {
        let freed = Arc::new(Notify::new());
        let pools: BTreeMap<String, Arc<Pool>> = config
            .pde_manager
            .pools
            .iter()
            .map(|(name, p)| {
                (
                    name.clone(),
                    Pool::notifying(name, p.instances, p.max_concurrent_tasks, freed.clone()),
                )
            })
            .collect();
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
            let runtime = TopicRuntime::build(
                name,
                topic,
                &pool_cfg.endpoints,
                endpoints,
                config.camunda.lock_duration,
            )?;
            topics.insert(name.clone(), Arc::new(runtime));
            topic_pool.insert(name.clone(), pool.clone());
        }
        let pipeline = Arc::new(Pipeline::new(topics, camunda.clone()));
        let slots = topic_pool
            .iter()
            .map(|(topic, pool)| {
                let lender: Arc<dyn crate::pde::sub_task::Slots> = pool.clone();
                (topic.clone(), lender)
            })
            .collect();
        pipeline.set_sub_tasks(Arc::new(SubTaskRunner::new(&pipeline, slots)));
        Ok(Self {
            pipeline,
            camunda,
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
            freed,
            in_flight: Arc::default(),
        })
    }

    /// The pools, by name.
    pub fn pools(&self) -> &BTreeMap<String, Arc<Pool>> {
        &self.pools
    }

    /// The pipeline every PDE runs (shared, built once).
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// Fetches and runs tasks until `shutdown` fires, then drains (see the module docs).
    pub async fn run(self, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        let hard = CancellationToken::new();
        tracing::info!(
            pools = self.pools.len(),
            topics = self.topic_pool.len(),
            worker_id = self.camunda.worker_id(),
            "PDE manager started."
        );
        self.fetch_loop(&tracker, &shutdown, &hard).await;
        tracker.close();
        let grace = self.settings.grace;
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
        tracing::info!("PDE manager stopped.");
    }

    async fn fetch_loop(
        &self,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
        hard: &CancellationToken,
    ) {
        let mut backoff = Backoff::new(self.settings.backoff.clone());
        while !shutdown.is_cancelled() {
            let reserved = self.reserve();
            if reserved.is_empty() {
                tokio::select! {
                    _ = self.freed.notified() => continue,
                    _ = shutdown.cancelled() => break,
                }
            }
            let request = self.request(&reserved);
            // While the poll is pending, its slots are parked in their pools, where a Meta-PDE
            // sub-task may borrow one (see `pool`).
            for (name, permit) in reserved {
                if let Some(pool) = self.pools.get(&name) {
                    pool.park(permit);
                }
            }
            let asked = Instant::now();
            let result = tokio::select! {
                r = self.camunda.fetch_and_lock(&request) => r,
                _ = shutdown.cancelled() => {
                    self.unpark();
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
                        self.unpark();
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
                        self.dispatch(task, tracker, shutdown, hard);
                    }
                    self.unpark();
                }
                Err(e) => {
                    self.unpark();
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

    /// Releases the slots parked for the poll that just ended.
    fn unpark(&self) {
        for pool in self.pools.values() {
            pool.unpark();
        }
    }

    async fn pause(&self, delay: Duration, shutdown: &CancellationToken) {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => {}
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

    fn request(&self, reserved: &BTreeMap<String, OwnedSemaphorePermit>) -> FetchAndLock {
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
            worker_id: self.camunda.worker_id().to_string(),
            max_tasks: reserved.values().map(|p| p.num_permits()).sum(),
            use_priority: self.settings.use_priority,
            async_response_timeout: Some(wait.as_millis() as u64),
            topics,
        }
    }

    fn dispatch(
        &self,
        task: LockedTask,
        tracker: &TaskTracker,
        shutdown: &CancellationToken,
        hard: &CancellationToken,
    ) {
        let span = crate::pde::start::span(&task);
        let _entered = span.enter(); // not held across an await: dispatch is synchronous
        let (Some(pool), Some(topic)) = (
            self.topic_pool.get(&task.topic_name).cloned(),
            self.pipeline.topics().get(&task.topic_name).cloned(),
        ) else {
            tracing::error!(
                "The engine returned a task of a topic procos did not ask for; leaving it to expire."
            );
            return;
        };
        let permit = pool.take_parked();
        let newly_seen = self
            .in_flight
            .lock()
            .map(|mut ids| ids.insert(task.id.clone()))
            .unwrap_or(false);
        if !newly_seen {
            // Its lock lapsed and this worker fetched it again: the copy already running keeps
            // it (the new lock is ours too, and that copy's heartbeat extends it).
            tracing::warn!(
                "Fetched a task that is already running here (its lock had lapsed); keeping the running copy."
            );
            return;
        }
        let env = TaskEnv {
            pipeline: self.pipeline.clone(),
            camunda: self.camunda.clone(),
            pool,
            topic,
            shutdown: shutdown.clone(),
            hard: hard.clone(),
        };
        let freed = self.freed.clone();
        let in_flight = self.in_flight.clone();
        drop(_entered);
        tracker.spawn(
            async move {
                let task_id = task.id.clone();
                run_with_heartbeat(env, task, permit).await;
                if let Ok(mut ids) = in_flight.lock() {
                    ids.remove(&task_id);
                }
                freed.notify_one();
            }
            .instrument(span),
        );
    }
}

/// Runs a task with its heartbeat beside it; the heartbeat ends when the lease is released.
async fn run_with_heartbeat(
    env: TaskEnv,
    task: LockedTask,
    permit: Option<OwnedSemaphorePermit>,
) -> Outcome {
    let task_token = env.hard.child_token();
    let lease = Lease::new();
    let lock = Arc::new(heartbeat::LockState::default());
    let heartbeat = heartbeat::run(
        env.camunda.clone(),
        task.id.clone(),
        env.topic.lock_duration,
        lock.clone(),
        task_token.clone(),
        lease.clone(),
    );
    let work = async {
        let outcome = run_task(&env, permit, task, &task_token, &lock, &lease).await;
        lease.release().await;
        outcome
    };
    let (outcome, ()) = tokio::join!(work, heartbeat);
    outcome
}

/// Waits for a slot if needed, then runs the pipeline. Gives the task back when it never starts.
async fn run_task(
    env: &TaskEnv,
    permit: Option<OwnedSemaphorePermit>,
    task: LockedTask,
    task_token: &CancellationToken,
    lock: &heartbeat::LockState,
    lease: &Lease,
) -> Outcome {
    let permit = match permit {
        Some(p) => p,
        None => tokio::select! {
            p = env.pool.acquire() => match p {
                Some(p) => p,
                None => return env.pipeline.give_back(&task, lease).await,
            },
            _ = env.shutdown.cancelled() => {
                tracing::info!("Stopping before the task started; unlocking it.");
                return env.pipeline.give_back(&task, lease).await;
            }
            _ = task_token.cancelled() => return Outcome::Abandoned,
        },
    };
    if lock.is_lost() || task_token.is_cancelled() {
        tracing::warn!("The task's lock was lost before it started; skipping it.");
        return Outcome::Abandoned;
    }
    let slot = env.pool.seat(permit);
    tracing::Span::current().record("pde", slot.pde_name());
    let outcome = env
        .pipeline
        .run(task.clone(), task_token.clone(), lease)
        .await;
    if outcome == Outcome::Abandoned && env.hard.is_cancelled() && !lock.is_lost() {
        tracing::warn!(
            "Cancelled at the end of the grace period; unlocking the task for another worker."
        );
        if let Err(e) = env.camunda.unlock(&task.id).await {
            tracing::warn!(error = %e, "Could not unlock the task; the engine offers it again when its lock expires.");
        }
    }
    outcome
}

#[cfg(test)]
mod tests;
