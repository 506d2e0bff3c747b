//! Turning the elements read from one `<process>` into a checked [`Process`] model: element
//! kinds, flows, conditions, boundary events, and every rule a deployment must satisfy.

use std::collections::HashMap;

use super::io::{self, ElementMappings};
use super::{Element, Flow, Kind, Problem, ProcBuilder, Process};
use crate::engine::expr::{Condition, Expression};

/// Builds and checks one process; returns `None` for non-executable ones or on problems.
pub(super) fn build(
    b: ProcBuilder,
    errors: &HashMap<String, Option<String>>,
    problems: &mut Vec<Problem>,
) -> Option<Process> {
    let id = b.attrs.get("id").cloned().unwrap_or_default();
    if b.attrs.get("isExecutable").map(String::as_str) != Some("true") {
        return None;
    }
    let before = problems.len();
    let mut problem = |message: String, pos: (usize, usize), element: &str| {
        problems.push(Problem {
            message,
            line: pos.0,
            column: pos.1,
            element_id: Some(element.to_owned()),
        });
    };
    let history_ttl = b
        .attrs
        .get("historyTimeToLive")
        .cloned()
        .filter(|s| !s.is_empty());
    if let Some(ttl) = &history_ttl
        && crate::engine::deploy::ttl_days(ttl).is_none()
    {
        problem(
            format!("Cannot parse historyTimeToLive: `{ttl}` (whole days, e.g. `30` or `P30D`)"),
            b.pos,
            &id,
        );
    }
    if history_ttl.is_none() {
        problem(
            "ENGINE-12018 History Time To Live (TTL) cannot be null. TTL is necessary for the History Cleanup to work. The following options are possible:\n* Set historyTimeToLive in the model\n* Set a default historyTimeToLive as a global process engine configuration\n* (Not recommended) Deactivate the enforceTTL config to disable this check".to_owned(),
            b.pos,
            &id,
        );
    }
    let process_priority = match task_priority(&b.attrs) {
        Ok(p) => p,
        Err(message) => {
            problem(message, b.pos, &id);
            None
        }
    };
    let mut mappings: HashMap<String, ElementMappings> = HashMap::new();
    let mut elements = HashMap::new();
    let mut boundaries: HashMap<String, Vec<String>> = HashMap::new();
    let mut start_events = Vec::new();
    for n in &b.nodes {
        let def = n.event_defs.first().map(|(t, r)| (t.as_str(), r.clone()));
        let kind = match (n.tag.as_str(), def) {
            ("startEvent", None) => {
                start_events.push(n.id.clone());
                Kind::StartEvent
            }
            ("endEvent", None) => Kind::EndEvent,
            ("endEvent", Some(("errorEventDefinition", _))) => Kind::ErrorEndEvent,
            ("endEvent", Some(("terminateEventDefinition", _))) => Kind::TerminateEndEvent,
            ("task" | "manualTask" | "intermediateThrowEvent", None) => Kind::PassThrough,
            ("exclusiveGateway", None) => Kind::ExclusiveGateway,
            ("parallelGateway", None) => Kind::ParallelGateway,
            ("serviceTask", None)
                if n.attrs.get("type").map(String::as_str) == Some("external") =>
            {
                let Some(topic) = n.attrs.get("topic").filter(|t| !t.is_empty()) else {
                    problem(
                        "External tasks must specify a 'topic' attribute in the camunda namespace"
                            .to_owned(),
                        n.pos,
                        &n.id,
                    );
                    continue;
                };
                let own_priority = match task_priority(&n.attrs) {
                    Ok(p) => p,
                    Err(message) => {
                        problem(message, n.pos, &n.id);
                        continue;
                    }
                };
                let topic_expr = match topic_expression(topic) {
                    Ok(t) => t,
                    Err(message) => {
                        problem(message, n.pos, &n.id);
                        continue;
                    }
                };
                let (priority, priority_expr) =
                    match own_priority.or_else(|| process_priority.clone()) {
                        None => (0, None),
                        Some(Priority::Fixed(p)) => (p, None),
                        Some(Priority::Expr(e)) => (0, Some(e)),
                    };
                if topic_expr.is_some() || priority_expr.is_some() {
                    let m = mappings.entry(n.id.clone()).or_default();
                    m.topic = topic_expr;
                    m.priority = priority_expr;
                }
                Kind::ExternalTask {
                    topic: topic.clone(),
                    priority,
                    properties: n.properties.clone(),
                }
            }
            ("boundaryEvent", Some(("errorEventDefinition", error_ref))) => {
                let attached_to = n.attrs.get("attachedToRef").cloned().unwrap_or_default();
                let error_code = match error_ref {
                    None => None,
                    Some(r) => match errors.get(&r) {
                        Some(code) => code.clone(),
                        None => {
                            problem(
                                format!("Error reference '{r}' does not resolve to a bpmn:error"),
                                n.pos,
                                &n.id,
                            );
                            continue;
                        }
                    },
                };
                boundaries
                    .entry(attached_to.clone())
                    .or_default()
                    .push(n.id.clone());
                Kind::ErrorBoundary {
                    attached_to,
                    error_code,
                }
            }
            (tag, def) => {
                let what = match def {
                    Some((d, _)) => format!("{tag} with {d}"),
                    None if tag == "serviceTask" => {
                        "serviceTask without camunda:type=\"external\"".to_owned()
                    }
                    None => tag.to_owned(),
                };
                problem(
                    format!(
                        "Unsupported element: the procos engine cannot execute a {what} ('{}')",
                        n.id
                    ),
                    n.pos,
                    &n.id,
                );
                continue;
            }
        };
        if n.id.is_empty() {
            problem(format!("Element '{}' has no id", n.tag), n.pos, "");
            continue;
        }
        let external = matches!(kind, Kind::ExternalTask { .. });
        let found = io::mappings(&n.id, &n.tag, external, &n.io, &mut |message| {
            problem(message, n.pos, &n.id)
        });
        if found.has_io
            || found.error_code_variable.is_some()
            || found.error_message_variable.is_some()
        {
            let m = mappings.entry(n.id.clone()).or_default();
            m.has_io = found.has_io;
            m.inputs = found.inputs;
            m.outputs = found.outputs;
            if matches!(kind, Kind::ErrorBoundary { .. }) {
                m.error_code_variable = found.error_code_variable;
                m.error_message_variable = found.error_message_variable;
            }
        }
        let default_flow = n.attrs.get("default").cloned();
        elements.insert(
            n.id.clone(),
            Element {
                id: n.id.clone(),
                kind,
                default_flow,
            },
        );
    }
    let mut flows = HashMap::new();
    let mut outgoing: HashMap<String, Vec<String>> = HashMap::new();
    let mut incoming: HashMap<String, usize> = HashMap::new();
    for f in &b.flows {
        let source = f.attrs.get("sourceRef").cloned().unwrap_or_default();
        let target = f.attrs.get("targetRef").cloned().unwrap_or_default();
        for end in [&source, &target] {
            if !elements.contains_key(end) && !b.nodes.iter().any(|n| &n.id == end) {
                problem(
                    format!("Invalid reference '{end}' in sequence flow '{}'", f.id),
                    f.pos,
                    &f.id,
                );
            }
        }
        let condition = match f
            .condition
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
        {
            None => None,
            Some(text) => match Condition::parse(text) {
                Ok(c) => Some(c),
                Err(err) => {
                    problem(err.to_string(), f.pos, &f.id);
                    continue;
                }
            },
        };
        outgoing
            .entry(source.clone())
            .or_default()
            .push(f.id.clone());
        *incoming.entry(target.clone()).or_default() += 1;
        flows.insert(
            f.id.clone(),
            Flow {
                source,
                target,
                condition,
            },
        );
    }
    for el in elements.values() {
        if let Some(d) = &el.default_flow
            && flows.get(d).is_none_or(|f| f.source != el.id)
        {
            let pos = b
                .nodes
                .iter()
                .find(|n| n.id == el.id)
                .map_or(b.pos, |n| n.pos);
            problem(
                format!(
                    "Default flow '{d}' of '{}' is not one of its outgoing flows",
                    el.id
                ),
                pos,
                &el.id,
            );
        }
        if let Kind::ErrorBoundary { attached_to, .. } = &el.kind
            && !matches!(
                elements.get(attached_to).map(|e| &e.kind),
                Some(Kind::ExternalTask { .. })
            )
        {
            let pos = b
                .nodes
                .iter()
                .find(|n| n.id == el.id)
                .map_or(b.pos, |n| n.pos);
            problem(
                format!(
                    "Error boundary event '{}' must be attached to an external service task, not '{attached_to}'",
                    el.id
                ),
                pos,
                &el.id,
            );
        }
    }
    let start_event = match start_events.as_slice() {
        [one] => one.clone(),
        [] => {
            problem(
                format!("Process '{id}' has no none start event"),
                b.pos,
                &id,
            );
            String::new()
        }
        _ => {
            problem(
                format!("Process '{id}' has more than one none start event"),
                b.pos,
                &id,
            );
            String::new()
        }
    };
    if problems.len() > before {
        return None;
    }
    Some(Process {
        name: b.attrs.get("name").cloned(),
        version_tag: b.attrs.get("versionTag").cloned(),
        id,
        history_ttl,
        elements,
        flows,
        outgoing,
        incoming,
        boundaries,
        start_event,
        mappings,
    })
}

/// A `camunda:taskPriority`: a number fixed at deployment, or `${…}` evaluated per task.
#[derive(Debug, Clone)]
enum Priority {
    Fixed(i64),
    Expr(Expression),
}

/// Camunda's `StringUtil.isExpression`: the (trimmed) text starts with `${` or `#{`. Only
/// such attributes are expressions; anything else is taken as written.
fn is_expression(text: &str) -> bool {
    let t = text.trim();
    t.starts_with("${") || t.starts_with("#{")
}

/// Reads `camunda:taskPriority` of a process or a task like `BpmnParse.parsePriority`: an
/// expression, or an Integer.
fn task_priority(attrs: &HashMap<String, String>) -> Result<Option<Priority>, String> {
    let Some(text) = attrs.get("taskPriority") else {
        return Ok(None);
    };
    if is_expression(text) {
        return Expression::parse(text.trim())
            .map(|e| Some(Priority::Expr(e)))
            .map_err(|e| format!("camunda:taskPriority: {e}"));
    }
    text.parse::<i32>()
        .map(|p| Some(Priority::Fixed(p.into())))
        .map_err(|_| format!("Value '{text}' for attribute 'taskPriority' is not a valid number"))
}

/// A `camunda:topic` that is an expression, parsed (`BpmnParse.parseTopic`); `None` for a
/// topic name taken as written.
fn topic_expression(topic: &str) -> Result<Option<Expression>, String> {
    if !is_expression(topic) {
        return Ok(None);
    }
    Expression::parse(topic.trim())
        .map(Some)
        .map_err(|e| format!("camunda:topic: {e}"))
}
