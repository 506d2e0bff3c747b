//! Token execution: moving a process instance forward until every token waits or ends.
//!
//! ```text
//! start ──► startEvent ──► flow ──► gateway ──► serviceTask(external) ⏸ (task created)
//!                                        └────► endEvent ✕ (token ends; no tokens = instance ends)
//! complete / bpmnError ──► leave(token) or catch(token, boundary) ──► … same loop …
//! timer catch event ⏸ (job created) · userTask ⏸ (user task created) · an activity with
//! timer boundary events arms one job per boundary; the timer loop fires them (timers/)
//! (a `${…}` timer definition or user-task attribute is evaluated then, in the token's scope)
//! ```
//! Activities with `camunda:inputOutput` map variables in and out ([`mapping`]): inputs when
//! the token arrives, outputs when it leaves (completed, or ended by a BPMN error, caught or not).
//! Execution runs synchronously inside one REST call, on a copy of the instance: if it fails
//! (no outgoing flow can be selected, an expression fails) the caller drops the copy and the
//! call answers 500, leaving the engine as it was — Camunda's transaction rollback.

pub(crate) mod mapping;

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::Utc;

use super::bpmn::{Kind, UserTaskDef};
use super::errors::{ApiError, ApiResult};
use super::state::{Definition, ExternalTask, Instance, Token, new_id};
use super::timers::{Job, JobKind, TimerSpec, Waiting};
use super::user_tasks::UserTask;
use super::variables::VarMap;

/// Guards against models that loop without ever waiting.
const MAX_STEPS: usize = 10_000;

/// What a run produced, applied by the caller only on success.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// External tasks to create (their `seq` is assigned by the store).
    pub new_tasks: Vec<ExternalTask>,
    /// A terminate end event fired: every other task of the instance must go.
    pub terminated: bool,
    /// Timer jobs armed (catch events, boundary events); their `seq` is assigned by the store.
    pub new_jobs: Vec<Job>,
    /// User tasks to create.
    pub new_user_tasks: Vec<UserTask>,
}

impl Outcome {
    /// Whether the instance has ended (no tokens left).
    pub(crate) fn ended(instance: &Instance) -> bool {
        instance.tokens.is_empty()
    }
}

/// Creates an instance and runs it from the start event `start` (a timer start event firing).
pub(crate) fn start_at(
    definition: Arc<Definition>,
    start: &str,
    business_key: Option<String>,
    variables: VarMap,
) -> ApiResult<(Instance, Outcome)> {
    let mut instance = Instance {
        id: new_id(),
        business_key,
        variables,
        tokens: Default::default(),
        joins: Default::default(),
        definition: Arc::clone(&definition),
    };
    let token = new_token(&mut instance, start);
    let outcome = Run::new(&mut instance).go(vec![(token, start.to_owned())])?;
    Ok((instance, outcome))
}

/// Leaves the activity a token waits in through its outgoing flows (task completed).
pub(crate) fn leave(instance: &mut Instance, token_id: &str) -> ApiResult<Outcome> {
    let mut run = Run::new(instance);
    let activity = run.activity_of(token_id)?;
    mapping::leave(run.inst, token_id, &activity)?;
    run.take_outgoing(token_id, &activity)?;
    run.drain()
}

/// Moves a token from its activity to an error boundary event and on from there.
pub(crate) fn catch(
    instance: &mut Instance,
    token_id: &str,
    boundary_id: &str,
) -> ApiResult<Outcome> {
    let run = Run::new(instance);
    // Camunda runs the output mapping of a cancelled activity too (its default
    // `skipOutputMappingOnCanceledActivities = false`).
    let activity = run.activity_of(token_id)?;
    mapping::leave(run.inst, token_id, &activity)?;
    run.go(vec![(token_id.to_owned(), boundary_id.to_owned())])
}

/// A non-interrupting boundary event fired: a new token leaves through it while the activity
/// goes on waiting.
pub(crate) fn branch(instance: &mut Instance, boundary_id: &str) -> ApiResult<Outcome> {
    let token = new_token(instance, boundary_id);
    Run::new(instance).go(vec![(token, boundary_id.to_owned())])
}

/// Ends a token without following any flow (an uncaught BPMN error).
pub(crate) fn end_token(instance: &mut Instance, token_id: &str) -> Outcome {
    instance.tokens.remove(token_id);
    Outcome::default()
}

fn new_token(instance: &mut Instance, activity: &str) -> String {
    let id = new_id();
    instance.tokens.insert(
        id.clone(),
        Token {
            id: id.clone(),
            activity_id: activity.to_owned(),
            activity_instance_id: format!("{activity}:{}", new_id()),
            locals: VarMap::new(),
        },
    );
    id
}

struct Run<'a> {
    inst: &'a mut Instance,
    queue: VecDeque<(String, String)>,
    out: Outcome,
    steps: usize,
}

impl<'a> Run<'a> {
    fn new(inst: &'a mut Instance) -> Self {
        Self {
            inst,
            queue: VecDeque::new(),
            out: Outcome::default(),
            steps: 0,
        }
    }

    fn activity_of(&self, token_id: &str) -> ApiResult<String> {
        self.inst
            .tokens
            .get(token_id)
            .map(|t| t.activity_id.clone())
            .ok_or_else(|| ApiError::engine(format!("Execution {token_id} does not exist")))
    }

    fn go(mut self, work: Vec<(String, String)>) -> ApiResult<Outcome> {
        self.queue.extend(work);
        self.drain()
    }

    fn drain(mut self) -> ApiResult<Outcome> {
        while let Some((token, element)) = self.queue.pop_front() {
            self.steps += 1;
            if self.steps > MAX_STEPS {
                return Err(ApiError::engine(format!(
                    "Process '{}' loops without reaching a wait state (more than {MAX_STEPS} steps)",
                    self.inst.definition.key
                )));
            }
            self.arrive(&token, &element)?;
        }
        Ok(self.out)
    }

    fn arrive(&mut self, token_id: &str, element_id: &str) -> ApiResult<()> {
        let def = Arc::clone(&self.inst.definition);
        let element = def.model.elements.get(element_id).ok_or_else(|| {
            ApiError::engine(format!(
                "Element '{element_id}' does not exist in process '{}'",
                def.key
            ))
        })?;
        if let Some(t) = self.inst.tokens.get_mut(token_id) {
            t.activity_id = element_id.to_owned();
            t.activity_instance_id = format!("{element_id}:{}", new_id());
            t.locals.clear();
        }
        match &element.kind {
            Kind::StartEvent | Kind::PassThrough | Kind::ErrorBoundary { .. } => {
                self.take_outgoing(token_id, element_id)
            }
            Kind::EndEvent | Kind::ErrorEndEvent => {
                self.inst.tokens.remove(token_id);
                Ok(())
            }
            Kind::TerminateEndEvent => {
                self.inst.tokens.clear();
                self.inst.joins.clear();
                self.queue.clear();
                self.out.new_tasks.clear();
                self.out.terminated = true;
                Ok(())
            }
            Kind::ExternalTask {
                topic,
                priority,
                properties,
            } => {
                mapping::enter(self.inst, token_id, element_id)?;
                let (topic, priority) = mapping::task_topic_priority(
                    self.inst, token_id, element_id, topic, *priority,
                )?;
                let token = self.inst.tokens.get(token_id).ok_or_else(|| {
                    ApiError::engine(format!("Execution {token_id} does not exist"))
                })?;
                self.out.new_tasks.push(ExternalTask {
                    id: new_id(),
                    topic,
                    worker_id: None,
                    lock_expiration: None,
                    lock_expiration_wall: None,
                    create_time: Utc::now(),
                    retries: None,
                    error_message: None,
                    error_details: None,
                    process_instance_id: self.inst.id.clone(),
                    definition: Arc::clone(&def),
                    activity_id: element_id.to_owned(),
                    activity_instance_id: token.activity_instance_id.clone(),
                    execution_id: token.id.clone(),
                    priority,
                    business_key: self.inst.business_key.clone(),
                    extension_properties: properties.clone(),
                    seq: 0,
                });
                self.arm_boundary_timers(token_id, element_id)
            }
            Kind::TimerStart { .. } | Kind::TimerBoundary { .. } => {
                self.take_outgoing(token_id, element_id)
            }
            Kind::TimerCatch { timer } => self.wait_for_timer(token_id, element_id, timer),
            Kind::UserTask(task) => self.create_user_task(token_id, element_id, task),
            Kind::ExclusiveGateway => {
                let flows = def
                    .model
                    .outgoing
                    .get(element_id)
                    .cloned()
                    .unwrap_or_default();
                let mut chosen = None;
                for flow_id in flows
                    .iter()
                    .filter(|f| Some(*f) != element.default_flow.as_ref())
                {
                    if self.condition_holds(flow_id)? {
                        chosen = Some(flow_id.clone());
                        break;
                    }
                }
                let flow_id = chosen
                    .or_else(|| element.default_flow.clone())
                    .ok_or_else(|| no_flow(element_id))?;
                self.follow(token_id, &flow_id);
                Ok(())
            }
            Kind::ParallelGateway => {
                let incoming = def.model.incoming.get(element_id).copied().unwrap_or(0);
                if incoming > 1 {
                    self.inst.tokens.remove(token_id);
                    let arrived = self.inst.joins.entry(element_id.to_owned()).or_default();
                    *arrived += 1;
                    if *arrived < incoming {
                        return Ok(());
                    }
                    self.inst.joins.remove(element_id);
                    let joined = new_token(self.inst, element_id);
                    return self.fork(&joined, element_id);
                }
                self.fork(token_id, element_id)
            }
        }
    }

    fn condition_holds(&self, flow_id: &str) -> ApiResult<bool> {
        let Some(flow) = self.inst.definition.model.flows.get(flow_id) else {
            return Ok(false);
        };
        match &flow.condition {
            None => Ok(true),
            Some(c) => c
                .eval(&self.inst.variables)
                .map_err(|e| ApiError::engine(e.to_string())),
        }
    }

    /// Leaves an activity: conditional flows that hold (or unconditional ones), else the default.
    fn take_outgoing(&mut self, token_id: &str, element_id: &str) -> ApiResult<()> {
        let def = Arc::clone(&self.inst.definition);
        let flows = def
            .model
            .outgoing
            .get(element_id)
            .cloned()
            .unwrap_or_default();
        if flows.is_empty() {
            self.inst.tokens.remove(token_id);
            return Ok(());
        }
        let default = def
            .model
            .elements
            .get(element_id)
            .and_then(|e| e.default_flow.clone());
        let mut selected = Vec::new();
        for f in flows.iter().filter(|f| Some(*f) != default.as_ref()) {
            if self.condition_holds(f)? {
                selected.push(f.clone());
            }
        }
        if selected.is_empty() {
            selected.extend(default);
        }
        if selected.is_empty() {
            return Err(no_flow(element_id));
        }
        self.split(token_id, &selected);
        Ok(())
    }

    fn fork(&mut self, token_id: &str, element_id: &str) -> ApiResult<()> {
        let flows = self
            .inst
            .definition
            .model
            .outgoing
            .get(element_id)
            .cloned()
            .unwrap_or_default();
        if flows.is_empty() {
            self.inst.tokens.remove(token_id);
        } else {
            self.split(token_id, &flows);
        }
        Ok(())
    }

    /// The token follows the first flow; every further flow gets a new token.
    fn split(&mut self, token_id: &str, flows: &[String]) {
        for (i, flow_id) in flows.iter().enumerate() {
            if i == 0 {
                self.follow(token_id, flow_id);
            } else {
                let token = new_token(self.inst, "");
                self.follow(&token, flow_id);
            }
        }
    }

    fn follow(&mut self, token_id: &str, flow_id: &str) {
        if let Some(flow) = self.inst.definition.model.flows.get(flow_id) {
            self.queue
                .push_back((token_id.to_owned(), flow.target.clone()));
        }
    }
}

fn no_flow(element_id: &str) -> ApiError {
    ApiError::engine(format!(
        "ENGINE-02004 No outgoing sequence flow for the element with id '{element_id}' could be selected for continuing the process."
    ))
}

/// Wait states that need time or a person: timer catch events, timer boundary events, user tasks.
impl Run<'_> {
    fn waiting(&self, token_id: &str) -> ApiResult<Waiting> {
        let token = self
            .inst
            .tokens
            .get(token_id)
            .ok_or_else(|| ApiError::engine(format!("Execution {token_id} does not exist")))?;
        Ok(Waiting {
            instance: self.inst.id.clone(),
            token: token_id.to_owned(),
            activity_instance: token.activity_instance_id.clone(),
        })
    }

    fn wait_for_timer(
        &mut self,
        token_id: &str,
        element_id: &str,
        timer: &TimerSpec,
    ) -> ApiResult<()> {
        let waiting = self.waiting(token_id)?;
        let def = Arc::clone(&self.inst.definition);
        let empty = VarMap::new();
        let locals = self.inst.tokens.get(token_id).map_or(&empty, |t| &t.locals);
        let scopes = [locals, &self.inst.variables];
        let job = Job::arm(timer, &scopes, def, element_id, JobKind::Catch(waiting))?;
        self.out.new_jobs.push(job);
        Ok(())
    }

    /// One job per timer boundary event of the activity the token just entered.
    fn arm_boundary_timers(&mut self, token_id: &str, activity_id: &str) -> ApiResult<()> {
        let def = Arc::clone(&self.inst.definition);
        let Some(boundaries) = def.model.boundaries.get(activity_id) else {
            return Ok(());
        };
        for boundary in boundaries {
            if let Some(Kind::TimerBoundary {
                timer,
                interrupting,
                ..
            }) = def.model.elements.get(boundary).map(|e| &e.kind)
            {
                let what = JobKind::Boundary {
                    waiting: self.waiting(token_id)?,
                    interrupting: *interrupting,
                    fired: 0,
                };
                let empty = VarMap::new();
                let locals = self.inst.tokens.get(token_id).map_or(&empty, |t| &t.locals);
                let scopes = [locals, &self.inst.variables];
                let job = Job::arm(timer, &scopes, Arc::clone(&def), boundary, what)?;
                self.out.new_jobs.push(job);
            }
        }
        Ok(())
    }

    fn create_user_task(
        &mut self,
        token_id: &str,
        element_id: &str,
        task: &UserTaskDef,
    ) -> ApiResult<()> {
        let waiting = self.waiting(token_id)?;
        let empty = VarMap::new();
        let locals = self.inst.tokens.get(token_id).map_or(&empty, |t| &t.locals);
        let task = task
            .resolve(&[locals, &self.inst.variables])
            .map_err(ApiError::engine)?;
        self.out.new_user_tasks.push(UserTask::new(
            &task,
            Arc::clone(&self.inst.definition),
            element_id,
            waiting,
        ));
        self.arm_boundary_timers(token_id, element_id)
    }
}
