//! Everything the engine knows, in one [`Store`] behind one mutex.
//!
//! ```text
//! Store ─ deployments ─► definitions (versions per key) ─► Process model (bpmn.rs)
//!       ─ instances (runtime: tokens, variables)         ─► tasks (external tasks, locks)
//!       ─ history (every instance ever started, final variables)   incidents
//!       ─ jobs (timers: start, catch, boundary; timers/)   user tasks (user_tasks.rs)
//! ```
//! Operations on the store are synchronous and never await; the REST handlers lock, call one
//! operation, unlock. Times that decide behaviour (lock expiry, retry timeouts) are
//! `tokio::time::Instant`s so tests can pause and advance the clock; the wall-clock strings the
//! engine reports are derived from them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::time::Instant;

use super::bpmn::Process;
use super::timers::Job;
use super::user_tasks::UserTask;
use super::variables::VarMap;

/// Counters of what clients did, for tests and `GET /engine-rest/_procos/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EngineStats {
    /// Every REST call received (including injected faults).
    pub requests: u64,
    /// `fetchAndLock` calls answered (empty or not).
    pub fetch_calls: u64,
    /// Tasks handed out by `fetchAndLock`.
    pub fetched_tasks: u64,
    /// `complete` calls accepted (204).
    pub complete_ok: u64,
    /// `complete` calls refused (400 wrong worker, 404 gone).
    pub complete_rejected: u64,
    /// `failure` calls accepted.
    pub failure_calls: u64,
    /// `failure` calls refused.
    pub failure_rejected: u64,
    /// `bpmnError` calls accepted.
    pub bpmn_error_calls: u64,
    /// `bpmnError` calls refused.
    pub bpmn_error_rejected: u64,
    /// `extendLock` calls accepted.
    pub extend_lock_ok: u64,
    /// `extendLock` calls refused (expired, other worker, gone).
    pub extend_lock_rejected: u64,
    /// `lock` calls accepted.
    pub lock_ok: u64,
    /// `unlock` calls accepted.
    pub unlock_ok: u64,
    /// Deployments created (duplicate-filtered ones are not counted).
    pub deployments: u64,
    /// Process instances started.
    pub instances_started: u64,
    /// Process instances that reached their end (not deleted ones).
    pub instances_completed: u64,
    /// Incidents raised (failure with retries 0).
    pub incidents_created: u64,
    /// Calls answered by `fail_next` / `set_down` instead of the real handler.
    pub injected_faults: u64,
    /// Long polls waiting right now.
    pub long_polls_pending: u64,
    /// Unknown JSON fields ignored in request bodies (as Camunda ignores them). Tests assert it
    /// stays 0 for procos, so a misspelt field in procos's own client cannot hide.
    pub ignored_fields: u64,
}

/// A deployment and its resources.
#[derive(Debug, Clone)]
pub(crate) struct Deployment {
    pub id: String,
    pub name: Option<String>,
    pub source: Option<String>,
    pub tenant_id: Option<String>,
    pub time: DateTime<Utc>,
    /// Resource name → contents.
    pub resources: BTreeMap<String, Vec<u8>>,
}

/// One version of a process definition.
#[derive(Debug)]
pub(crate) struct Definition {
    pub id: String,
    pub key: String,
    pub version: u32,
    pub deployment_id: String,
    pub resource: String,
    pub tenant_id: Option<String>,
    pub model: Process,
}

/// A token: one execution waiting at (or moving through) an activity.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub id: String,
    pub activity_id: String,
    pub activity_instance_id: String,
    /// Local variables of a scope execution (an activity with boundary events).
    pub locals: VarMap,
}

/// A running process instance.
#[derive(Debug, Clone)]
pub(crate) struct Instance {
    pub id: String,
    pub definition: Arc<Definition>,
    pub business_key: Option<String>,
    pub variables: VarMap,
    pub tokens: BTreeMap<String, Token>,
    /// Arrivals at parallel joins, per gateway id.
    pub joins: HashMap<String, usize>,
}

/// Final state of a historic process instance, as `/history/process-instance` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HistoryState {
    Active,
    Completed,
    ExternallyTerminated,
}

impl HistoryState {
    pub(crate) fn name(self) -> &'static str {
        match self {
            HistoryState::Active => "ACTIVE",
            HistoryState::Completed => "COMPLETED",
            HistoryState::ExternallyTerminated => "EXTERNALLY_TERMINATED",
        }
    }
}

/// Every instance ever started; kept after the end so tests can read final variables.
#[derive(Debug, Clone)]
pub(crate) struct HistoricInstance {
    pub id: String,
    pub definition: Arc<Definition>,
    pub business_key: Option<String>,
    pub start_time: DateTime<Utc>,
    pub end_time: Option<DateTime<Utc>>,
    pub state: HistoryState,
    pub delete_reason: Option<String>,
    pub variables: VarMap,
    /// Start order, for stable listing.
    pub seq: u64,
}

/// An external task waiting for (or locked by) a worker.
#[derive(Debug, Clone)]
pub(crate) struct ExternalTask {
    pub id: String,
    pub topic: String,
    pub worker_id: Option<String>,
    /// Decides fetchability; also holds the retry timeout after a failure (as in Camunda).
    pub lock_expiration: Option<Instant>,
    /// The same moment on the wall clock, as reported.
    pub lock_expiration_wall: Option<DateTime<Utc>>,
    pub create_time: DateTime<Utc>,
    pub retries: Option<i32>,
    pub error_message: Option<String>,
    pub error_details: Option<String>,
    pub process_instance_id: String,
    pub definition: Arc<Definition>,
    pub activity_id: String,
    pub activity_instance_id: String,
    pub execution_id: String,
    pub priority: i64,
    pub business_key: Option<String>,
    pub extension_properties: BTreeMap<String, String>,
    pub seq: u64,
}

impl ExternalTask {
    /// Locked now: a worker holds it and the lock has not expired.
    pub(crate) fn locked(&self, now: Instant) -> bool {
        self.lock_expiration.is_some_and(|t| t > now)
    }

    /// Can be handed out by fetchAndLock now.
    pub(crate) fn fetchable(&self, now: Instant) -> bool {
        !self.locked(now) && self.retries.is_none_or(|r| r > 0)
    }

    /// Locks the task for `worker` until `until`, computed (and refused when it cannot be
    /// represented) by the caller before anything changes, so no duration can panic here.
    pub(crate) fn lock(&mut self, worker: &str, until: super::tasks::Deadline) {
        self.worker_id = Some(worker.to_owned());
        self.lock_expiration = Some(until.at);
        self.lock_expiration_wall = Some(until.wall);
    }
}

/// A failed external task that ran out of retries.
#[derive(Debug, Clone)]
pub(crate) struct Incident {
    pub id: String,
    /// `failedExternalTask` or `failedJob` (a timer job out of retries).
    pub incident_type: &'static str,
    pub time: DateTime<Utc>,
    pub message: Option<String>,
    /// `None` for a timer start event's job: no instance exists yet.
    pub process_instance_id: Option<String>,
    pub definition_id: String,
    pub activity_id: String,
    pub execution_id: Option<String>,
    /// The failed external task's or job's id (Camunda's `configuration`).
    pub configuration: String,
    pub tenant_id: Option<String>,
    pub seq: u64,
}

/// All engine state.
#[derive(Debug, Default)]
pub(crate) struct Store {
    pub deployments: Vec<Deployment>,
    pub definitions: Vec<Arc<Definition>>,
    pub instances: HashMap<String, Instance>,
    pub history: HashMap<String, HistoricInstance>,
    pub tasks: super::task_table::TaskTable,
    pub incidents: HashMap<String, Incident>,
    pub stats: EngineStats,
    /// Set when a task became fetchable in a way that wakes pending long polls in Camunda:
    /// a task was created or unlocked. Lock and retry-timeout expiry do not wake them; polls
    /// see those tasks at their next re-check, as on a real engine.
    pub wake: bool,
    /// Timer jobs by id: timer start events, waiting catch events, armed boundary events.
    pub jobs: HashMap<String, Job>,
    /// Open user tasks by id.
    pub user_tasks: HashMap<String, UserTask>,
    /// Timer start events scheduled, as (definition id, element id), while that version is
    /// the latest: its schedule is created once, so a finished `R3/…` cycle does not restart.
    pub start_timers: HashSet<(String, String)>,
    /// The definitions the start timers were last reconciled for (their count and the newest
    /// id): deployments append and deletions remove, so an unchanged pair means nothing to do.
    pub start_timers_for: Option<(usize, String)>,
    /// Set when jobs were added or removed: the timer loop recomputes when to wake up.
    pub timers_changed: bool,
    seq: u64,
}

/// A fresh random id, like the engine's UUID id generator.
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Store {
    /// A monotonically increasing number for stable ordering.
    pub(crate) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Latest version of a process definition key (tenant-aware).
    pub(crate) fn latest_definition(
        &self,
        key: &str,
        tenant: Option<&str>,
    ) -> Option<Arc<Definition>> {
        self.definitions
            .iter()
            .filter(|d| d.key == key && d.tenant_id.as_deref() == tenant)
            .max_by_key(|d| d.version)
            .cloned()
    }

    /// Removes a finished or deleted instance with its tasks and incidents and closes its history.
    pub(crate) fn end_instance(&mut self, id: &str, state: HistoryState, reason: Option<String>) {
        let instance = self.instances.remove(id);
        self.tasks.remove_instance(id);
        self.incidents
            .retain(|_, i| i.process_instance_id.as_deref() != Some(id));
        self.drop_waits_of(id);
        if let Some(h) = self.history.get_mut(id) {
            if let Some(inst) = instance {
                h.variables = inst.variables;
            }
            h.state = state;
            h.end_time = Some(Utc::now());
            h.delete_reason = reason;
        }
        if state == HistoryState::Completed {
            self.stats.instances_completed += 1;
        }
    }
}
