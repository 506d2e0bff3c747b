//! Timer jobs and the loop that fires them, as Camunda's job executor runs timer jobs.
//!
//! ```text
//! deploy ─► mutate ─► reconcile_start_timers ─► Job::Start (latest version of each key only)
//! token arrives at a timer catch event / an activity with timer boundaries ─► Job::Catch / ::Boundary
//! run_timers: sleep until the next due job (or a change) ─► fire_next_due_job ─► execute_job
//!   Start    ─► a new instance from the timer start event; a cycle schedules its next job
//!   Catch    ─► the token leaves the catch event
//!   Boundary ─► interrupting: the activity is cancelled (its external / user task goes) and
//!               the token leaves through the boundary; non-interrupting: a new token does,
//!               and a cycle arms the next firing while the activity waits
//! ```
//! A job whose token has moved on is stale: every commit sweeps those of the instance
//! ([`Store::sweep_waits`]), and ending an instance drops all of its jobs. A job that fails
//! (the process cannot continue) keeps its place with one retry less, as Camunda's default
//! of three attempts; at 0 it stays listed with its `exceptionMessage` and no longer fires.
//! `GET /job` and `POST /job/{id}/execute` (api/job.rs) show and fire jobs by hand.
//! A `${…}` definition is evaluated once, when its job is armed ([`Job::arm`]); the job keeps
//! the result, so a cycle repeats what it evaluated to then.

mod spec;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub(crate) use spec::{Due, DueDate, TimerKind, TimerSpec, parse};

use super::Engine;
use super::bpmn::Kind;
use super::errors::{ApiError, ApiResult};
use super::exec;
use super::state::{Definition, Incident, Instance, Store, new_id};
use super::variables::{VarMap, format_date};

/// Camunda's default number of attempts for a job.
const JOB_RETRIES: i32 = 3;

/// One timer waiting to fire.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub id: String,
    pub definition: Arc<Definition>,
    /// The timer event's element id.
    pub activity_id: String,
    pub due: Due,
    /// The timer as armed: an expression in the model is evaluated once, here.
    pub spec: TimerSpec,
    pub create_time: DateTime<Utc>,
    /// Attempts left; at 0 the job no longer fires (Camunda would raise an incident).
    pub retries: i32,
    /// Why the last attempt failed.
    pub exception_message: Option<String>,
    pub what: JobKind,
    /// Creation order, for stable listing.
    pub seq: u64,
}

/// What a job does when it fires.
#[derive(Debug, Clone)]
pub(crate) enum JobKind {
    /// A timer start event; `fired` counts the earlier firings of this schedule (`R3/…`).
    Start { fired: u32 },
    /// A token waits at an intermediate timer catch event.
    Catch(Waiting),
    /// A boundary timer of the activity a token waits in; `fired` counts the earlier firings
    /// of a non-interrupting cycle.
    Boundary {
        waiting: Waiting,
        interrupting: bool,
        fired: u32,
    },
}

/// The token a job belongs to, and the activity instance it armed the job in.
#[derive(Debug, Clone)]
pub(crate) struct Waiting {
    pub instance: String,
    pub token: String,
    pub activity_instance: String,
}

impl Job {
    /// A job for `timer` of `activity_id`, due from now; an expression is evaluated against
    /// `scopes` (innermost first), and its failure is the caller's engine error.
    pub(crate) fn arm(
        timer: &TimerSpec,
        scopes: &[&VarMap],
        definition: Arc<Definition>,
        activity_id: &str,
        what: JobKind,
    ) -> ApiResult<Job> {
        let timer = timer.resolve(scopes).map_err(ApiError::engine)?;
        let due = timer.first(Instant::now(), Utc::now()).ok_or_else(|| {
            ApiError::engine(format!(
                "The due date of the timer '{activity_id}' cannot be computed"
            ))
        })?;
        Ok(Job::at(due, timer, definition, activity_id, what))
    }

    fn at(
        due: Due,
        spec: TimerSpec,
        definition: Arc<Definition>,
        activity_id: &str,
        what: JobKind,
    ) -> Job {
        Job {
            id: new_id(),
            definition,
            activity_id: activity_id.to_owned(),
            due,
            spec,
            create_time: Utc::now(),
            retries: JOB_RETRIES,
            exception_message: None,
            what,
            seq: 0,
        }
    }

    fn waiting(&self) -> Option<&Waiting> {
        match &self.what {
            JobKind::Start { .. } => None,
            JobKind::Catch(w) | JobKind::Boundary { waiting: w, .. } => Some(w),
        }
    }

    /// The process instance (none for a timer start event).
    pub(crate) fn process_instance_id(&self) -> Option<&str> {
        self.waiting().map(|w| w.instance.as_str())
    }

    /// The execution (token) the job belongs to.
    pub(crate) fn execution_id(&self) -> Option<&str> {
        self.waiting().map(|w| w.token.as_str())
    }

    /// Whether its token still waits where the job was armed.
    fn current(&self, instance: &Instance) -> bool {
        self.waiting().is_none_or(|w| {
            instance
                .tokens
                .get(&w.token)
                .is_some_and(|t| t.activity_instance_id == w.activity_instance)
        })
    }
}

/// A job as Camunda's `JobDto`.
pub(crate) fn job_json(j: &Job) -> Value {
    json!({
        "id": j.id,
        "jobDefinitionId": null,
        "processInstanceId": j.process_instance_id(),
        "processDefinitionId": j.definition.id,
        "processDefinitionKey": j.definition.key,
        "executionId": j.execution_id(),
        "exceptionMessage": j.exception_message,
        "failedActivityId": j.exception_message.as_ref().map(|_| &j.activity_id),
        "retries": j.retries,
        "dueDate": format_date(j.due.wall),
        "suspended": false,
        "priority": 0,
        "tenantId": j.definition.tenant_id,
        "createTime": format_date(j.create_time),
        "batchId": null,
    })
}

fn job_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("ENGINE-14026 No job found with id '{id}'"))
}

impl Store {
    /// Adds jobs made by an execution.
    pub(crate) fn add_jobs(&mut self, jobs: Vec<Job>) {
        for mut job in jobs {
            job.seq = self.next_seq();
            self.jobs.insert(job.id.clone(), job);
            self.timers_changed = true;
        }
    }

    /// Drops the jobs and user tasks of `instance` whose token no longer waits where they were
    /// created (it moved on, was cancelled, or the instance terminated).
    pub(crate) fn sweep_waits(&mut self, instance: &Instance) {
        let before = self.jobs.len();
        self.jobs.retain(|_, j| {
            j.process_instance_id() != Some(instance.id.as_str()) || j.current(instance)
        });
        self.timers_changed |= self.jobs.len() != before;
        self.user_tasks.retain(|_, t| {
            t.process_instance_id != instance.id
                || instance
                    .tokens
                    .get(&t.execution_id)
                    .is_some_and(|tok| tok.activity_instance_id == t.activity_instance_id)
        });
    }

    /// Drops every job and user task of an ended instance.
    pub(crate) fn drop_waits_of(&mut self, instance_id: &str) {
        let before = self.jobs.len();
        self.jobs
            .retain(|_, j| j.process_instance_id() != Some(instance_id));
        self.timers_changed |= self.jobs.len() != before;
        self.user_tasks
            .retain(|_, t| t.process_instance_id != instance_id);
    }

    /// Schedules the timer start events of the latest version of each key (once while it is
    /// the latest) and drops the start jobs of versions that were replaced or deleted, as
    /// Camunda does on deployment and on deleting a deployment.
    pub(crate) fn reconcile_start_timers(&mut self) {
        // Runs after every change of the store, so it must be cheap when the definitions did
        // not change (every fetchAndLock is a change): compare their fingerprint first.
        let fingerprint = (
            self.definitions.len(),
            self.definitions
                .last()
                .map(|d| d.id.clone())
                .unwrap_or_default(),
        );
        if self.start_timers_for.as_ref() == Some(&fingerprint) {
            return;
        }
        self.start_timers_for = Some(fingerprint);
        if self.start_timers.is_empty()
            && self
                .definitions
                .iter()
                .all(|d| d.model.timer_starts.is_empty())
        {
            return;
        }
        let mut newest: HashMap<(&str, Option<&str>), u32> = HashMap::new();
        for d in &self.definitions {
            let v = newest.entry((&d.key, d.tenant_id.as_deref())).or_default();
            *v = (*v).max(d.version);
        }
        let latest: Vec<Arc<Definition>> = self
            .definitions
            .iter()
            .filter(|d| {
                !d.model.timer_starts.is_empty()
                    && newest.get(&(d.key.as_str(), d.tenant_id.as_deref())) == Some(&d.version)
            })
            .cloned()
            .collect();
        let before = self.jobs.len();
        self.jobs.retain(|_, j| {
            !matches!(j.what, JobKind::Start { .. })
                || latest.iter().any(|d| d.id == j.definition.id)
        });
        self.timers_changed |= self.jobs.len() != before;
        // A version that is no longer the latest forgets its schedule: should it become the
        // latest again (the newer deployment deleted), it is scheduled anew, as in Camunda.
        self.start_timers
            .retain(|(def_id, _)| latest.iter().any(|d| &d.id == def_id));
        let mut new = Vec::new();
        for def in latest {
            for element in &def.model.timer_starts {
                if !self.start_timers.insert((def.id.clone(), element.clone())) {
                    continue;
                }
                let timer = match def.model.elements.get(element).map(|e| &e.kind) {
                    Some(Kind::TimerStart { timer }) => timer,
                    _ => continue,
                };
                match Job::arm(
                    timer,
                    &[],
                    Arc::clone(&def),
                    element,
                    JobKind::Start { fired: 0 },
                ) {
                    Ok(job) => new.push(job),
                    Err(err) => tracing::warn!(
                        definition = %def.id, element, %err,
                        "Timer start event cannot be scheduled."
                    ),
                }
            }
        }
        self.add_jobs(new);
    }

    /// When the timer loop must wake up next.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.jobs
            .values()
            .filter(|j| j.retries > 0)
            .map(|j| j.due.at)
            .min()
    }

    /// Fires the oldest job due at `now`, if any; returns whether one was due. One job per call,
    /// so the timer loop takes the store lock once per job and REST calls get in between even
    /// when thousands of timers come due together.
    pub(crate) fn fire_next_due_job(&mut self, now: Instant) -> bool {
        let Some(id) = self
            .jobs
            .values()
            .filter(|j| j.retries > 0 && j.due.at <= now)
            .min_by_key(|j| (j.due.at, j.seq))
            .map(|j| j.id.clone())
        else {
            return false;
        };
        if let Err(err) = self.execute_job(&id) {
            tracing::warn!(job_id = %id, error = %err.message, "Timer job failed.");
        }
        true
    }

    /// `PUT /job/{id}/retries`: a failed job gets attempts back and fires again when due. The
    /// errors are the engine's (`ENGINE-13053` / `13054`), answered 500 as Camunda's resource.
    pub(crate) fn set_job_retries(&mut self, id: &str, retries: Option<i64>) -> ApiResult<()> {
        let fail = |m: String| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "InvalidRequestException",
                m,
            )
        };
        let shown = retries.map_or_else(|| "null".to_owned(), |r| r.to_string());
        let retries = retries
            .and_then(|r| i32::try_from(r).ok())
            .filter(|r| *r >= 0)
            .ok_or_else(|| {
                fail(format!(
                    "ENGINE-13054 The number of job retries must be a non-negative Integer, but '{shown}' has been provided."
                ))
            })?;
        let job = self
            .jobs
            .get_mut(id)
            .ok_or_else(|| fail(format!("ENGINE-13053 No job found with id '{id}'.'")))?;
        job.retries = retries;
        self.timers_changed = true;
        if retries > 0 {
            // Retries given back resolve the job's incident, as SetJobRetriesCmd does.
            self.incidents.retain(|_, i| i.configuration != id);
        }
        Ok(())
    }

    /// Fires one job now (the timer loop, or `POST /job/{id}/execute`). On failure the job
    /// stays with one retry less and the error answers the call.
    pub(crate) fn execute_job(&mut self, id: &str) -> ApiResult<()> {
        let job = self.jobs.remove(id).ok_or_else(|| job_not_found(id))?;
        self.timers_changed = true;
        match self.run_job(&job) {
            Ok(()) => Ok(()),
            Err(err) => {
                let mut job = job;
                job.retries = (job.retries - 1).max(0);
                job.exception_message = Some(err.message.clone());
                if job.retries == 0 {
                    self.raise_job_incident(&job);
                }
                self.jobs.insert(job.id.clone(), job);
                Err(err)
            }
        }
    }

    /// A `failedJob` incident for a job out of retries (Camunda's `DefaultJobRetryCmd`).
    fn raise_job_incident(&mut self, job: &Job) {
        let seq = self.next_seq();
        let incident = Incident {
            id: new_id(),
            incident_type: "failedJob",
            time: Utc::now(),
            message: job.exception_message.clone(),
            process_instance_id: job.process_instance_id().map(str::to_owned),
            definition_id: job.definition.id.clone(),
            activity_id: job.activity_id.clone(),
            execution_id: job.execution_id().map(str::to_owned),
            configuration: job.id.clone(),
            tenant_id: job.definition.tenant_id.clone(),
            seq,
        };
        self.incidents.insert(incident.id.clone(), incident);
        self.stats.incidents_created += 1;
    }

    fn run_job(&mut self, job: &Job) -> ApiResult<()> {
        let JobKind::Start { fired } = job.what else {
            return self.run_waiting_job(job);
        };
        self.start_instance_at(Arc::clone(&job.definition), &job.activity_id)?;
        let next = job
            .spec
            .next(job.due, fired.saturating_add(1), Instant::now(), Utc::now());
        if let Some(due) = next {
            let again = Job::at(
                due,
                job.spec.clone(),
                Arc::clone(&job.definition),
                &job.activity_id,
                JobKind::Start {
                    fired: fired.saturating_add(1),
                },
            );
            self.add_jobs(vec![again]);
        }
        Ok(())
    }

    fn run_waiting_job(&mut self, job: &Job) -> ApiResult<()> {
        let Some(w) = job.waiting() else {
            return Ok(());
        };
        let Some(mut instance) = self
            .instances
            .get(&w.instance)
            .filter(|i| job.current(i))
            .cloned()
        else {
            // Its token moved on meanwhile: nothing to do, as for a deleted job in Camunda.
            return Ok(());
        };
        match &job.what {
            JobKind::Catch(_) => {
                let outcome = exec::leave(&mut instance, &w.token)?;
                self.commit(instance, outcome, None);
            }
            JobKind::Boundary {
                interrupting: true, ..
            } => {
                // The activity is cancelled: its external task goes (a worker's later complete
                // answers 404) and the token leaves through the boundary event.
                let task = self
                    .tasks
                    .of_instance(&w.instance)
                    .find(|t| t.execution_id == w.token)
                    .map(|t| t.id.clone());
                let outcome = exec::catch(&mut instance, &w.token, &job.activity_id)?;
                self.commit(instance, outcome, task.as_deref());
            }
            JobKind::Boundary {
                interrupting: false,
                fired,
                waiting,
            } => {
                let outcome = exec::branch(&mut instance, &job.activity_id)?;
                self.commit(instance, outcome, None);
                // A cycle arms itself again while the activity goes on waiting.
                let next =
                    job.spec
                        .next(job.due, fired.saturating_add(1), Instant::now(), Utc::now());
                if let Some(due) = next {
                    let what = JobKind::Boundary {
                        waiting: waiting.clone(),
                        interrupting: false,
                        fired: fired.saturating_add(1),
                    };
                    let again = Job::at(
                        due,
                        job.spec.clone(),
                        Arc::clone(&job.definition),
                        &job.activity_id,
                        what,
                    );
                    self.add_jobs(vec![again]);
                }
            }
            JobKind::Start { .. } => {}
        }
        Ok(())
    }
}

impl Engine {
    /// Fires timer jobs when they are due until `shutdown` is cancelled; [`Engine::serve`] runs
    /// it next to the server. It sleeps until the next due date on tokio's clock (so tests can
    /// pause and advance time) or until jobs change.
    pub async fn run_timers(&self, shutdown: CancellationToken) {
        loop {
            let (fired, next) =
                self.mutate(|s| (s.fire_next_due_job(Instant::now()), s.next_due()));
            if fired && !shutdown.is_cancelled() {
                tokio::task::yield_now().await;
                continue;
            }
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.inner.timers.notified() => {}
                () = sleep => {}
            }
        }
    }
}
