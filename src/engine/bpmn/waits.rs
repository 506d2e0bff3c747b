//! The elements where a token waits for time or for a person: timer start events, intermediate
//! timer catch events, timer boundary events and user tasks. Each reader turns the element into
//! its [`Kind`] or says, naming the element, why the engine cannot run it.
//!
//! Timer definitions and the user-task attributes `name`, `camunda:assignee`,
//! `camunda:candidateUsers`, `camunda:candidateGroups`, `camunda:dueDate` and
//! `camunda:followUpDate` may be `${…}` expressions: parsed here (bad syntax refuses the
//! deployment, naming the element) and evaluated when the timer is armed or the task created.
//! A timer start event sees no variables, so its expression is evaluated here as well.

use serde_json::Value;

use super::{Element, Kind, Pending};
use crate::engine::expr::Expression;
use crate::engine::timers::{self, DueDate, TimerKind, TimerSpec};
use crate::engine::variables::{TypedValue, VarMap, VarType, parse_date};

/// A user task as modelled: what a person sees in `GET /task`. Assignment is data only (no
/// identity service): nobody is notified and anyone may complete the task.
#[derive(Debug, Clone, Default)]
pub(crate) struct UserTaskDef {
    /// `name`: the task's title.
    pub name: Option<String>,
    /// `camunda:assignee`.
    pub assignee: Option<String>,
    /// `camunda:candidateUsers`, comma-separated in the model.
    pub candidate_users: Vec<String>,
    /// `camunda:candidateGroups`, comma-separated in the model.
    pub candidate_groups: Vec<String>,
    /// `camunda:formKey` (kept and reported, never rendered).
    pub form_key: Option<String>,
    /// `camunda:priority`; Camunda's default is 50.
    pub priority: i64,
    /// `camunda:dueDate`, an ISO date-time.
    pub due_date: Option<DueDate>,
    /// `camunda:followUpDate`, an ISO date-time.
    pub follow_up_date: Option<DueDate>,
    /// The attributes written as `${…}` (by attribute name), evaluated when the task is
    /// created ([`UserTaskDef::resolve`]); their fields above stay empty until then.
    pub exprs: Vec<(&'static str, Expression)>,
}

impl UserTaskDef {
    /// The task's attributes with its expressions evaluated against `scopes` (innermost
    /// first): a String (or null) for `name` / `assignee`; a comma-separated String or a
    /// collection for the candidate lists; a date-time, a `P…` duration or a Date for the dates.
    pub(crate) fn resolve(&self, scopes: &[&VarMap]) -> Result<UserTaskDef, String> {
        let mut out = self.clone();
        out.exprs.clear();
        for (attr, e) in &self.exprs {
            let v = e.value(scopes).map_err(|err| err.to_string())?;
            let wrong = |what: &str| {
                let shown = match &v.value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                format!(
                    "camunda:{attr} '{}' evaluated to '{shown}' ({}), not {what}",
                    e.source(),
                    v.ty.name()
                )
            };
            match *attr {
                "name" => out.name = text_of(&v).ok_or_else(|| wrong("a String"))?,
                "assignee" => out.assignee = text_of(&v).ok_or_else(|| wrong("a String"))?,
                "candidateUsers" | "candidateGroups" => {
                    let list = list_of(&v).ok_or_else(|| wrong("a String or a collection"))?;
                    if *attr == "candidateUsers" {
                        out.candidate_users = list;
                    } else {
                        out.candidate_groups = list;
                    }
                }
                _ => {
                    let date = match (&v.ty, &v.value) {
                        (VarType::Null, _) => None,
                        (VarType::String, Value::String(s)) => Some(
                            DueDate::parse(s.trim())
                                .map_err(|err| format!("camunda:{attr} '{}': {err}", e.source()))?,
                        ),
                        (VarType::Date, Value::String(s)) => Some(DueDate::At(
                            parse_date(s)
                                .ok_or_else(|| wrong("a date"))?
                                .with_timezone(&chrono::Utc),
                        )),
                        _ => return Err(wrong("a String or a Date")),
                    };
                    if *attr == "dueDate" {
                        out.due_date = date;
                    } else {
                        out.follow_up_date = date;
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A String result (`None` inside for null); `None` for any other type.
fn text_of(v: &TypedValue) -> Option<Option<String>> {
    match (&v.ty, &v.value) {
        (VarType::Null, _) => Some(None),
        (VarType::String, Value::String(s)) => Some(Some(s.clone())),
        _ => None,
    }
}

/// A candidate list: a comma-separated String, or a collection of Strings.
fn list_of(v: &TypedValue) -> Option<Vec<String>> {
    match (&v.ty, &v.value) {
        (VarType::Null, _) => Some(Vec::new()),
        (VarType::String, Value::String(s)) => Some(split_list(s)),
        _ => match v.json_document()? {
            Value::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    Value::String(s) => Some(s.trim().to_owned()),
                    _ => None,
                })
                .collect(),
            _ => None,
        },
    }
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether `tag` is a child of `timerEventDefinition` holding the timer's value.
pub(super) fn is_timer_part(tag: &str) -> bool {
    TimerKind::from_tag(tag).is_some()
}

/// Nested elements that change what a node does and that the engine cannot run.
const UNRUNNABLE: [(&str, &str); 4] = [
    ("taskListener", "a camunda:taskListener"),
    ("executionListener", "a camunda:executionListener"),
    ("multiInstanceLoopCharacteristics", "multi-instance"),
    ("standardLoopCharacteristics", "a loop"),
];

fn refuse_unrunnable(n: &Pending) -> Result<(), String> {
    match UNRUNNABLE
        .iter()
        .find(|(t, _)| n.tags.iter().any(|x| x == t))
    {
        Some((_, what)) => Err(format!(
            "Unsupported element: the procos engine cannot execute {what} on the {} '{}'",
            n.tag, n.id
        )),
        None => Ok(()),
    }
}

/// The timer of a node with a `timerEventDefinition`.
fn timer_of(n: &Pending) -> Result<(TimerKind, TimerSpec), String> {
    refuse_unrunnable(n)?;
    let parts = n.tags.iter().filter(|t| is_timer_part(t)).count();
    let (Some((tag, text)), 1) = (&n.timer, parts) else {
        return Err(format!(
            "The timerEventDefinition of '{}' must have exactly one of timeDuration, timeDate or timeCycle",
            n.id
        ));
    };
    let kind = TimerKind::from_tag(tag).unwrap_or(TimerKind::Duration);
    let spec = timers::parse(kind, text).map_err(|e| format!("Timer of '{}': {e}", n.id))?;
    Ok((kind, spec))
}

/// `<startEvent><timerEventDefinition>`: any of the three kinds. An expression sees no
/// variables, so it is evaluated now, as Camunda schedules the job at deployment.
pub(super) fn timer_start(n: &Pending) -> Result<Kind, String> {
    let (_, timer) = timer_of(n)?;
    timer
        .resolve(&[])
        .map_err(|e| format!("Timer of '{}': {e}", n.id))?;
    Ok(Kind::TimerStart { timer })
}

/// `<intermediateCatchEvent><timerEventDefinition>`: a duration or a date.
pub(super) fn timer_catch(n: &Pending) -> Result<Kind, String> {
    let (kind, timer) = timer_of(n)?;
    refuse_cycle(n, kind)?;
    Ok(Kind::TimerCatch { timer })
}

/// `<boundaryEvent><timerEventDefinition>`, interrupting or not. A cycle repeats on a
/// non-interrupting one while the activity waits; an interrupting one fires once.
pub(super) fn timer_boundary(n: &Pending) -> Result<Kind, String> {
    let (_, timer) = timer_of(n)?;
    let interrupting = match n.attrs.get("cancelActivity").map(|v| v.trim()) {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(format!(
                "cancelActivity of '{}' must be true or false, not `{other}`",
                n.id
            ));
        }
    };
    Ok(Kind::TimerBoundary {
        attached_to: n.attrs.get("attachedToRef").cloned().unwrap_or_default(),
        timer,
        interrupting,
    })
}

fn refuse_cycle(n: &Pending, kind: TimerKind) -> Result<(), String> {
    if kind == TimerKind::Cycle {
        return Err(format!(
            "Unsupported element: the procos engine cannot execute a timeCycle on the {} '{}' (only on start and boundary events; use timeDuration or timeDate)",
            n.tag, n.id
        ));
    }
    Ok(())
}

/// `<userTask>` with its camunda attributes.
pub(super) fn user_task(n: &Pending) -> Result<Kind, String> {
    refuse_unrunnable(n)?;
    let exprs = std::cell::RefCell::new(Vec::new());
    // The attribute's text, or `None` when it is absent or an expression (kept in `exprs`).
    let attr = |name: &'static str| -> Result<Option<String>, String> {
        match n
            .attrs
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
        {
            Some(v) if v.contains("${") || v.contains("#{") => {
                if name == "priority" {
                    return Err(format!(
                        "camunda:priority `{v}` of the userTask '{}' is an expression; the procos engine does not evaluate expressions here yet",
                        n.id
                    ));
                }
                let e = Expression::parse(v).map_err(|e| {
                    format!("camunda:{name} of the userTask '{}' is invalid: {e}", n.id)
                })?;
                exprs.borrow_mut().push((name, e));
                Ok(None)
            }
            v => Ok(v.map(str::to_owned)),
        }
    };
    let list = |v: Option<String>| -> Vec<String> { v.map(|v| split_list(&v)).unwrap_or_default() };
    let date = |v: Option<String>| -> Result<Option<DueDate>, String> {
        v.map(|v| DueDate::parse(&v).map_err(|e| format!("userTask '{}': {e}", n.id)))
            .transpose()
    };
    let priority = match attr("priority")? {
        None => 50,
        Some(p) => p.parse().map_err(|_| {
            format!(
                "camunda:priority `{p}` of the userTask '{}' is not a number",
                n.id
            )
        })?,
    };
    let name = match n.attrs.get("name") {
        Some(v) if v.contains("${") || v.contains("#{") => attr("name")?,
        v => v.cloned(),
    };
    let def = UserTaskDef {
        name,
        assignee: attr("assignee")?,
        candidate_users: list(attr("candidateUsers")?),
        candidate_groups: list(attr("candidateGroups")?),
        form_key: n.attrs.get("formKey").cloned(),
        priority,
        due_date: date(attr("dueDate")?)?,
        follow_up_date: date(attr("followUpDate")?)?,
        exprs: Vec::new(),
    };
    Ok(Kind::UserTask(Box::new(UserTaskDef {
        exprs: exprs.into_inner(),
        ..def
    })))
}

/// A timer boundary event must sit on an activity that waits: an external task or a user task.
pub(super) fn check_timer_boundary(
    el: &Element,
    elements: &std::collections::HashMap<String, Element>,
) -> Option<String> {
    let Kind::TimerBoundary { attached_to, .. } = &el.kind else {
        return None;
    };
    match elements.get(attached_to).map(|e| &e.kind) {
        Some(Kind::ExternalTask { .. } | Kind::UserTask(_)) => None,
        _ => Some(format!(
            "Timer boundary event '{}' must be attached to an external service task or a user task, not '{attached_to}'",
            el.id
        )),
    }
}
