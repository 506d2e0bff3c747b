//! Applying the model's data mappings to a running instance (the model side is
//! `bpmn::io`): input parameters when a token enters an activity, output parameters when it
//! ends, the variables a worker sends from inside an activity, the error variables of a caught
//! BPMN error, and `${…}` topics / priorities of new external tasks.
//!
//! ```text
//! instance.variables (process scope) ◄── outputs (evaluated in the activity scope) ──┐
//!        │ inputs evaluated here                                                       │
//!        ▼                                                                              │
//! token.locals (activity scope: the task's own execution) ── complete / bpmnError ─────┘
//! ```
//! As in Camunda, `setVariable` from inside an activity writes a local variable of that name if
//! the activity has one, else the process variable (`AbstractVariableScope.setVariable`).

use serde_json::{Map, Value};

use crate::engine::bpmn::io::{ElementMappings, ParamValue};
use crate::engine::errors::{ApiError, ApiResult};
use crate::engine::expr::{ExprError, Expression};
use crate::engine::state::Instance;
use crate::engine::variables::{TypedValue, VarMap, VarType};

fn engine_error(e: ExprError) -> ApiError {
    ApiError::engine(e.to_string())
}

/// The mappings of `element_id`, if it has any.
fn of<'a>(instance: &'a Instance, element_id: &str) -> Option<&'a ElementMappings> {
    instance.definition.model.mappings.get(element_id)
}

/// Input parameters: each is evaluated against the process scope (not against earlier inputs)
/// and becomes a local variable of the token's activity.
pub(crate) fn enter(instance: &mut Instance, token_id: &str, element_id: &str) -> ApiResult<()> {
    let Some(m) = of(instance, element_id).cloned() else {
        return Ok(());
    };
    let mut locals = Vec::with_capacity(m.inputs.len());
    for (name, param) in &m.inputs {
        let v = value(param, &[&instance.variables]).map_err(engine_error)?;
        locals.push((name.clone(), v));
    }
    if let Some(t) = instance.tokens.get_mut(token_id) {
        t.locals.extend(locals);
    }
    Ok(())
}

/// Output parameters: each is evaluated against the activity's scope (its locals over the
/// process variables) and set on the process scope. The locals die with the token's next move.
pub(crate) fn leave(instance: &mut Instance, token_id: &str, element_id: &str) -> ApiResult<()> {
    let Some(m) = of(instance, element_id).cloned() else {
        return Ok(());
    };
    let empty = VarMap::new();
    for (name, param) in &m.outputs {
        let locals = instance.tokens.get(token_id).map_or(&empty, |t| &t.locals);
        let v = value(param, &[locals, &instance.variables]).map_err(engine_error)?;
        instance.variables.insert(name.clone(), v);
    }
    Ok(())
}

/// `execution.setVariables` from inside the token's activity: a local of the same name is
/// overwritten (a scope activity), anything else lands on the process instance.
pub(crate) fn set_from_activity(
    instance: &mut Instance,
    token_id: &str,
    vars: Vec<(String, TypedValue)>,
) {
    for (name, v) in vars {
        match instance.tokens.get_mut(token_id) {
            Some(t) if t.locals.contains_key(&name) => {
                t.locals.insert(name, v);
            }
            _ => {
                instance.variables.insert(name, v);
            }
        }
    }
}

/// `camunda:errorCodeVariable` / `camunda:errorMessageVariable` of the catching boundary event,
/// set from the activity's scope like Camunda's `BpmnExceptionHandler` (a missing message is
/// a null variable).
pub(crate) fn error_variables(
    instance: &mut Instance,
    token_id: &str,
    boundary_id: &str,
    code: &str,
    message: Option<&str>,
) {
    let Some(m) = of(instance, boundary_id).cloned() else {
        return;
    };
    let mut vars = Vec::new();
    if let Some(name) = m.error_code_variable {
        vars.push((name, string(Some(code))));
    }
    if let Some(name) = m.error_message_variable {
        vars.push((name, string(message)));
    }
    set_from_activity(instance, token_id, vars);
}

/// The topic and priority of a new external task: `${…}` evaluated in the activity's scope,
/// otherwise the model's fixed values.
pub(crate) fn task_topic_priority(
    instance: &Instance,
    token_id: &str,
    element_id: &str,
    topic: &str,
    priority: i64,
) -> ApiResult<(String, i64)> {
    let Some(m) = of(instance, element_id) else {
        return Ok((topic.to_owned(), priority));
    };
    let empty = VarMap::new();
    let locals = instance.tokens.get(token_id).map_or(&empty, |t| &t.locals);
    let scopes = [locals, &instance.variables];
    let topic = match &m.topic {
        None => topic.to_owned(),
        Some(e) => {
            let v = e.value(&scopes).map_err(engine_error)?;
            match (&v.ty, &v.value) {
                (VarType::String, Value::String(s)) => s.clone(),
                _ => {
                    return Err(ApiError::engine(format!(
                        "camunda:topic '{}' of '{element_id}' evaluated to {}, not a String",
                        e.source(),
                        describe(&v)
                    )));
                }
            }
        }
    };
    let priority = match &m.priority {
        None => priority,
        Some(e) => evaluate_priority(e, &scopes, element_id)?,
    };
    Ok((topic, priority))
}

/// Camunda's `DefaultPriorityProvider.evaluateValueProvider`: the value must be a Short,
/// Integer or Long (a numeric String is not a number to it).
fn evaluate_priority(e: &Expression, scopes: &[&VarMap], element_id: &str) -> ApiResult<i64> {
    let v = e.value(scopes).map_err(engine_error)?;
    let context = || {
        format!(
            "camunda:taskPriority '{}' of '{element_id}' evaluated to {}",
            e.source(),
            describe(&v)
        )
    };
    match v.ty {
        VarType::Short | VarType::Integer | VarType::Long => v.value.as_i64().ok_or_else(|| {
            ApiError::engine(format!("Priority value is not an Integer: {}", context()))
        }),
        VarType::Double | VarType::Number => Err(ApiError::engine(format!(
            "Priority value must be either Short, Integer, or Long: {}",
            context()
        ))),
        _ => Err(ApiError::engine(format!(
            "Priority value is not an Integer: {}",
            context()
        ))),
    }
}

/// A value for messages: `'abc' (String)`.
fn describe(v: &TypedValue) -> String {
    let shown = match &v.value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    format!("'{shown}' ({})", v.ty.name())
}

fn string(s: Option<&str>) -> TypedValue {
    let (ty, value) = match s {
        Some(s) => (VarType::String, Value::String(s.to_owned())),
        None => (VarType::Null, Value::Null),
    };
    TypedValue {
        ty,
        value,
        value_info: Map::new(),
        file: None,
    }
}

/// Evaluates a parameter value. Lists and maps become Java collections, stored the way a
/// Camunda with JSON as its default serialization format stores them: `Object` variables in
/// `application/json` (`java.util.ArrayList`, `java.util.TreeMap` — keys sorted).
pub(crate) fn value(param: &ParamValue, scopes: &[&VarMap]) -> Result<TypedValue, ExprError> {
    Ok(match param {
        ParamValue::Null => string(None),
        ParamValue::Expr(e) => e.value(scopes)?,
        ParamValue::List(_) | ParamValue::Map(_) => {
            let (json, type_name) = match param {
                ParamValue::List(_) => (plain(param, scopes)?, "java.util.ArrayList"),
                _ => (plain(param, scopes)?, "java.util.TreeMap"),
            };
            let mut info = Map::new();
            info.insert("objectTypeName".to_owned(), Value::from(type_name));
            info.insert(
                "serializationDataFormat".to_owned(),
                Value::from("application/json"),
            );
            TypedValue {
                ty: VarType::Object,
                value: Value::String(json.to_string()),
                value_info: info,
                file: None,
            }
        }
    })
}

/// A parameter value as plain JSON (for the inside of a list or map).
fn plain(param: &ParamValue, scopes: &[&VarMap]) -> Result<Value, ExprError> {
    Ok(match param {
        ParamValue::Null => Value::Null,
        ParamValue::Expr(e) => plain_typed(&e.value(scopes)?),
        ParamValue::List(items) => Value::Array(
            items
                .iter()
                .map(|i| plain(i, scopes))
                .collect::<Result<_, _>>()?,
        ),
        ParamValue::Map(entries) => {
            let mut sorted = std::collections::BTreeMap::new();
            for (key, v) in entries {
                let k = key.value(scopes)?;
                let k = match k.value {
                    Value::String(s) => s,
                    Value::Null => "null".to_owned(),
                    other => other.to_string(),
                };
                sorted.insert(k, plain(v, scopes)?);
            }
            Value::Object(sorted.into_iter().collect())
        }
    })
}

/// A typed value inside a collection: JSON-format values are embedded as JSON, others as is.
fn plain_typed(v: &TypedValue) -> Value {
    v.json_document().unwrap_or_else(|| v.value.clone())
}
