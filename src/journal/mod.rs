//! The outcome journal: what this worker has decided about each task it fetched, kept until the
//! engine has acknowledged it (and a retention window after), in memory and — with
//! `pde_manager.state_dir` — in an embedded store that survives a crash.
//!
//! It is the memory behind "nothing twice, nothing lost":
//!
//! | a task arrives (fetched) and the journal says… | then |
//! |---|---|
//! | nothing, or the entry is from an earlier attempt (other `retries`) | run it ([`Claim::Run`]) |
//! | it runs here right now (its lock lapsed and was re-taken) | keep the running copy |
//! | its outcome was reported and acknowledged | drop the stale delivery |
//! | its outcome is journaled but not acknowledged | send that outcome, do not run again |
//! | a side-effecting endpoint was under way when procos stopped | report an incident, do not run again |
//!
//! Entries are written before the engine is told anything: [`Journal::started`] before the first
//! call of an endpoint with side effects, [`Journal::pending`] before `complete` / `bpmnError` /
//! `failure`. For a task with side effects both wait for the disk; a task that only read
//! (no-op, GET, a model) has its entries written with the next group commit, as are
//! acknowledgements: losing one in a crash costs a harmless re-run or a re-send that the engine
//! answers with 404.
//!
//! An attempt is told apart by the task's `retries` as fetched: a duplicate delivery of the same
//! attempt carries the same value, a retry after a reported failure a smaller one. An
//! acknowledged failure blocks a re-delivery of its attempt only for one lock duration (long
//! enough to outlive a stale fetch reply), so an operator who sets the retries back after an
//! incident gets a fresh run.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::camunda::Report;

mod store;
#[cfg(test)]
mod tests;

pub use store::{FILE_NAME, Rows, StoreError, Table};
use store::{Op, Store};

/// The learner's and the health tables of the store in `dir`, read without writing to it, when
/// no procos has it open (then [`StoreError::InUse`]). Blocking file I/O.
pub fn read_side_tables(dir: &Path) -> Result<(Rows, Rows), StoreError> {
    store::read_only(dir)
}

/// What became of a report sent to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The engine took it.
    Accepted,
    /// 404: the task no longer exists (completed elsewhere, instance deleted).
    Gone,
    /// 400 "locked by worker …": another worker holds the task, or the engine refused a failure
    /// report. The report is kept, so that if this worker is handed the same attempt again it
    /// sends it instead of running the task twice.
    Refused,
}

/// What the journal knows about one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// `retries` as fetched: which attempt this is (null until the first failure).
    pub retries: Option<i32>,
    /// The task's topic.
    pub topic: String,
    /// Unix milliseconds of the last change.
    pub at_ms: i64,
    /// An endpoint with side effects was called for this attempt (kept once set).
    #[serde(default)]
    pub side_effects: bool,
    /// Where the task stands.
    pub state: State,
}

/// Where a task stands. Most entries of a busy journal are `Acknowledged` ones waiting out the
/// retention window, so that variant stays small: the report (variables, error details) is boxed
/// and gone once acknowledged, and the call is one byte.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// An endpoint with side effects is being called (or was, when procos stopped).
    Started { endpoint: String },
    /// The outcome is decided and being (re)sent.
    Pending { report: Box<Report> },
    /// The engine refused the outcome (400): kept for a re-delivery of the same attempt.
    Refused { report: Box<Report> },
    /// The engine took the outcome (or said the task is gone).
    Acknowledged { call: Call },
}

/// Which report the engine acknowledged; written as `complete`, `bpmn_error`, `failure` or
/// `gone`, as the journal always wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    /// `complete` was taken.
    Complete,
    /// `bpmnError` was taken.
    BpmnError,
    /// `failure` was taken: it blocks a re-delivery of its attempt for one lock duration only.
    Failure,
    /// The engine answered 404: the task is gone.
    Gone,
}

impl Call {
    /// The call `report` is sent with.
    pub fn of(report: &Report) -> Call {
        match report {
            Report::Complete { .. } => Call::Complete,
            Report::BpmnError { .. } => Call::BpmnError,
            Report::Failure { .. } => Call::Failure,
        }
    }
}

/// What to do with a fetched task.
#[derive(Debug)]
pub enum Claim {
    /// Run it; the guard marks it running until dropped.
    Run(Running),
    /// This process is running it already: leave that copy alone.
    AlreadyRunning,
    /// Its outcome was reported here and acknowledged: a stale delivery.
    Finished,
    /// Its outcome is journaled but not acknowledged: send this instead of running it.
    Resend(Running, Report),
    /// This endpoint (with side effects) was under way when procos stopped; the task must not
    /// run again.
    Interrupted(Running, String),
}

/// A pending report claimed for re-sending.
#[derive(Debug)]
pub struct Resend {
    /// Holds the task as running until the re-send is done.
    pub running: Running,
    /// `retries` as fetched for the attempt the report belongs to.
    pub retries: Option<i32>,
    /// The task's topic.
    pub topic: String,
    /// What to send.
    pub report: Report,
}

/// Marks a task as running in this process; dropping it ends that.
#[derive(Debug)]
pub struct Running {
    journal: Journal,
    id: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.journal.ledger().running.remove(&self.id);
    }
}

/// The outcome journal. Cheap to clone; every clone is the same journal.
#[derive(Debug, Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    ledger: Mutex<Ledger>,
    store: Option<Store>,
    retention: Duration,
    worker_id: Option<String>,
}

#[derive(Debug, Default)]
struct Ledger {
    running: HashSet<String>,
    entries: HashMap<String, Entry>,
    /// Ids whose entry is `Pending`: what the re-sender looks at every pass, without scanning
    /// every acknowledged entry of the retention window.
    pending: HashSet<String>,
}

impl Ledger {
    /// Stores `entry` for `id`, keeping the pending index in step.
    fn insert(&mut self, id: &str, entry: Entry) {
        if matches!(entry.state, State::Pending { .. }) {
            self.pending.insert(id.to_string());
        } else {
            self.pending.remove(id);
        }
        self.entries.insert(id.to_string(), entry);
    }
}

/// The least time a `started` mark is kept for a task not running here.
const STARTED_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Journal {
    /// A journal kept in memory only (no `state_dir`).
    pub fn in_memory(retention: Duration) -> Self {
        Self::with(None, HashMap::new(), retention, None)
    }

    /// Opens the journal in `dir`, loading what an earlier run left. `new_worker_id` becomes
    /// this state dir's worker id if it has none yet (see [`Journal::worker_id`]).
    pub fn open(dir: &Path, retention: Duration, new_worker_id: &str) -> Result<Self, StoreError> {
        let opened = Store::open(dir, new_worker_id)?;
        let now = now_ms();
        let mut entries = HashMap::new();
        for (id, bytes) in opened.entries {
            match serde_json::from_slice::<Entry>(&bytes) {
                Ok(mut entry) => {
                    if matches!(entry.state, State::Started { .. }) {
                        // Its retention counts from now: the task's lock may still be running.
                        entry.at_ms = now;
                    }
                    entries.insert(id, entry);
                }
                Err(e) => {
                    tracing::warn!(task_id = %id, error = %e, "Skipping an unreadable journal entry.");
                    opened.store.queue(vec![Op::Remove(id)]);
                }
            }
        }
        let journal = Self::with(
            Some(opened.store),
            entries,
            retention,
            Some(opened.worker_id),
        );
        {
            let ledger = journal.ledger();
            tracing::info!(
                dir = %dir.display(),
                entries = ledger.entries.len(),
                pending = ledger.pending.len(),
                "Outcome journal opened."
            );
        }
        Ok(journal)
    }

    fn with(
        store: Option<Store>,
        entries: HashMap<String, Entry>,
        retention: Duration,
        worker_id: Option<String>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                ledger: Mutex::new(Ledger {
                    running: HashSet::new(),
                    pending: entries
                        .iter()
                        .filter(|(_, e)| matches!(e.state, State::Pending { .. }))
                        .map(|(id, _)| id.clone())
                        .collect(),
                    entries,
                }),
                store,
                retention,
                worker_id,
            }),
        }
    }

    /// The worker id kept in the state dir: a restarted procos keeps its identity, so the
    /// outcomes its previous life journaled are still its to report.
    pub fn worker_id(&self) -> Option<&str> {
        self.inner.worker_id.as_deref()
    }

    /// Is it written to disk?
    pub fn is_durable(&self) -> bool {
        self.inner.store.is_some()
    }

    /// Every row of a side table as last committed; empty in memory. Blocking file I/O: call it
    /// at start or off the runtime.
    pub fn rows(&self, table: Table) -> Result<Rows, StoreError> {
        match &self.inner.store {
            Some(store) => store.rows(table),
            None => Ok(Vec::new()),
        }
    }

    /// Writes rows of side tables and waits until they are on disk (with whatever else is
    /// queued: one commit). Nothing to wait for in memory.
    pub async fn write_rows(&self, rows: Vec<(Table, String, Vec<u8>)>) -> Result<(), StoreError> {
        match &self.inner.store {
            Some(store) if !rows.is_empty() => store.durable(rows_to_ops(rows)).await,
            _ => Ok(()),
        }
    }

    /// Transactions committed to the file since it was opened (0 in memory): what batching saves.
    pub fn commits(&self) -> u64 {
        self.inner.store.as_ref().map_or(0, Store::commits)
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // A panic while holding this lock leaves plain maps behind, still consistent enough to
        // keep serving: poisoning is ignored.
        self.inner
            .ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Decides what to do with a fetched task (see the module docs). `lock` is the topic's lock
    /// duration: how long an acknowledged failure blocks its attempt.
    pub fn claim(&self, id: &str, retries: Option<i32>, lock: Duration) -> Claim {
        let mut ledger = self.ledger();
        if ledger.running.contains(id) {
            return Claim::AlreadyRunning;
        }
        let verdict = match ledger.entries.get(id) {
            Some(entry) if entry.retries == retries => match &entry.state {
                State::Started { endpoint } => Some(Err(endpoint.clone())),
                State::Pending { report } | State::Refused { report } => {
                    Some(Ok(Report::clone(report)))
                }
                State::Acknowledged { call }
                    if *call == Call::Failure
                        && now_ms() - entry.at_ms > lock.as_millis() as i64 =>
                {
                    None
                }
                State::Acknowledged { .. } => return Claim::Finished,
            },
            _ => None,
        };
        ledger.running.insert(id.to_string());
        drop(ledger);
        let running = Running {
            journal: self.clone(),
            id: id.to_string(),
        };
        match verdict {
            None => Claim::Run(running),
            Some(Ok(report)) => Claim::Resend(running, report),
            Some(Err(endpoint)) => Claim::Interrupted(running, endpoint),
        }
    }

    /// Records, durably, that an endpoint with side effects is about to be called for this task.
    pub async fn started(
        &self,
        id: &str,
        retries: Option<i32>,
        topic: &str,
        endpoint: &str,
    ) -> Result<(), StoreError> {
        let state = State::Started {
            endpoint: endpoint.to_string(),
        };
        self.put(id, retries, topic, state).await
    }

    /// Records the outcome about to be sent. For a task that called an endpoint with side
    /// effects (journaled as started), or whose outcome was journaled before, this waits for the
    /// disk: after a crash it is re-sent, never re-run. Any other task only read, so its entry
    /// rides the next group commit: a crash before that costs a harmless second run, and the
    /// no-op path keeps its speed.
    pub async fn pending(
        &self,
        id: &str,
        retries: Option<i32>,
        topic: &str,
        report: &Report,
    ) -> Result<(), StoreError> {
        let state = State::Pending {
            report: Box::new(report.clone()),
        };
        self.put(id, retries, topic, state).await
    }

    /// Did this attempt of the task call an endpoint with side effects?
    pub fn had_side_effects(&self, id: &str, retries: Option<i32>) -> bool {
        self.ledger()
            .entries
            .get(id)
            .is_some_and(|e| e.retries == retries && e.side_effects)
    }

    /// Records what the engine answered to the pending report (written with the next commit).
    pub fn settle(&self, id: &str, how: Settled) {
        let mut ledger = self.ledger();
        let Some(entry) = ledger.entries.get_mut(id) else {
            return;
        };
        let State::Pending { report } = &entry.state else {
            return;
        };
        entry.state = match how {
            Settled::Accepted => State::Acknowledged {
                call: Call::of(report),
            },
            Settled::Gone => State::Acknowledged { call: Call::Gone },
            Settled::Refused => State::Refused {
                report: report.clone(),
            },
        };
        entry.at_ms = now_ms();
        let op = self.inner.store.as_ref().map(|_| encode(id, entry));
        ledger.pending.remove(id);
        drop(ledger);
        if let (Some(store), Some(op)) = (&self.inner.store, op) {
            store.queue(vec![op]);
        }
    }

    /// Ids of pending reports of tasks not running here (journaled by an earlier life, or whose
    /// sending failed), for the background re-sender.
    pub fn unsettled(&self) -> Vec<String> {
        let ledger = self.ledger();
        ledger
            .pending
            .iter()
            .filter(|id| !ledger.running.contains(*id))
            .cloned()
            .collect()
    }

    /// Marks a pending task as running (so a fetch of it waits for the re-sender) and returns
    /// what to send, read under the same lock: `None` if it runs already or is no longer pending.
    pub fn claim_pending(&self, id: &str) -> Option<Resend> {
        let mut ledger = self.ledger();
        if ledger.running.contains(id) {
            return None;
        }
        let entry = ledger.entries.get(id)?;
        let State::Pending { report } = &entry.state else {
            return None;
        };
        let resend = Resend {
            running: Running {
                journal: self.clone(),
                id: id.to_string(),
            },
            retries: entry.retries,
            topic: entry.topic.clone(),
            report: Report::clone(report),
        };
        ledger.running.insert(id.to_string());
        Some(resend)
    }

    /// The endpoint with side effects this attempt started, if its outcome is not journaled yet.
    pub fn started_endpoint(&self, id: &str, retries: Option<i32>) -> Option<String> {
        match self.ledger().entries.get(id) {
            Some(Entry {
                retries: r,
                state: State::Started { endpoint },
                ..
            }) if *r == retries => Some(endpoint.clone()),
            _ => None,
        }
    }

    /// Waits until every write queued so far is on disk (call before the process exits: settled
    /// outcomes of the last moments are queued, not yet committed).
    pub async fn flush(&self) -> Result<(), StoreError> {
        match &self.inner.store {
            Some(store) => store.durable(Vec::new()).await,
            None => Ok(()),
        }
    }

    /// Forgets settled entries older than the retention window, and `started` marks of tasks
    /// not running here older than a week (or the retention, if longer): such a task, delivered
    /// again, would run its side effect a second time, so its mark outlives any backlog.
    /// Returns how many were removed.
    pub fn sweep(&self) -> usize {
        let cutoff = now_ms() - self.inner.retention.as_millis() as i64;
        let started_cutoff =
            now_ms() - self.inner.retention.max(STARTED_RETENTION).as_millis() as i64;
        let mut ledger = self.ledger();
        let Ledger {
            running, entries, ..
        } = &mut *ledger;
        let expired: Vec<String> = entries
            .iter()
            .filter(|(id, e)| match e.state {
                State::Pending { .. } => false,
                State::Started { .. } => e.at_ms < started_cutoff && !running.contains(*id),
                State::Refused { .. } | State::Acknowledged { .. } => e.at_ms < cutoff,
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            entries.remove(id);
        }
        drop(ledger);
        if let Some(store) = &self.inner.store
            && !expired.is_empty()
        {
            store.queue(expired.iter().cloned().map(Op::Remove).collect());
        }
        expired.len()
    }

    /// Entries held (for metrics and tests).
    pub fn len(&self) -> usize {
        self.ledger().entries.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entry for a task (tests, status).
    pub fn entry(&self, id: &str) -> Option<Entry> {
        self.ledger().entries.get(id).cloned()
    }

    /// Writes an entry: to disk before returning when the attempt had side effects (or an
    /// outcome was journaled before), with the next group commit otherwise.
    async fn put(
        &self,
        id: &str,
        retries: Option<i32>,
        topic: &str,
        state: State,
    ) -> Result<(), StoreError> {
        let (op, durable) = {
            let mut ledger = self.ledger();
            let earlier = ledger.entries.get(id).filter(|e| e.retries == retries);
            let side_effects =
                matches!(state, State::Started { .. }) || earlier.is_some_and(|e| e.side_effects);
            let durable = side_effects
                || earlier.is_some_and(|e| !matches!(e.state, State::Acknowledged { .. }));
            let entry = Entry {
                retries,
                topic: topic.to_string(),
                at_ms: now_ms(),
                side_effects,
                state,
            };
            let op = self.inner.store.as_ref().map(|_| encode(id, &entry));
            ledger.insert(id, entry);
            (op, durable)
        };
        match (&self.inner.store, op) {
            (Some(store), Some(op)) if durable => store.durable(vec![op]).await,
            (Some(store), Some(op)) => {
                store.queue(vec![op]);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn rows_to_ops(rows: Vec<(Table, String, Vec<u8>)>) -> Vec<Op> {
    rows.into_iter()
        .map(|(table, k, v)| Op::Row(table, k, v))
        .collect()
}

fn encode(id: &str, entry: &Entry) -> Op {
    // Serializing these plain structs cannot fail (string keys, no non-finite floats
    // from the engine's JSON).
    Op::Put(
        id.to_string(),
        serde_json::to_vec(entry).unwrap_or_default(),
    )
}
