//! Data mapping read from the model: `camunda:inputOutput` parameters, the error variables of
//! error boundary events, and `${…}` in `camunda:topic` / `camunda:taskPriority`.
//!
//! ```text
//! <camunda:inputOutput>                       ElementMappings { inputs, outputs, … }
//!   <camunda:inputParameter name="a">${x}</…>   ──► ("a", Expr(${x}))
//!   <camunda:inputParameter name="l"><camunda:list><camunda:value>1</…></…>  ──► List([Expr(1)])
//!   <camunda:outputParameter name="m"><camunda:map><camunda:entry key="k">v</…></…>  ──► Map
//! ```
//! [`IoCollector`] sees the XML events inside one flow node; [`mappings`] turns what it saw into
//! checked [`ElementMappings`] when the process is built. What the engine cannot execute (a
//! `camunda:script` value, `camunda:inputOutput` on anything but an external service task, a
//! `camunda:errorEventDefinition`) is a deployment error naming the element. The engine applies
//! the mappings in `engine::mapping`.

use std::collections::HashMap;

use crate::engine::expr::Expression;

/// The value of an input or output parameter, as `BpmnParseUtil.parseParamValueProvider` reads it.
#[derive(Debug, Clone)]
pub(crate) enum ParamValue {
    /// No text and no child element.
    Null,
    /// Text: a literal String, `${…}`, or text with embedded `${…}`.
    Expr(Expression),
    /// `camunda:list`: a Java list of its values.
    List(Vec<ParamValue>),
    /// `camunda:map`: a Java `TreeMap` from each entry's key (itself an expression) to its value.
    Map(Vec<(Expression, ParamValue)>),
}

/// What one flow node maps, beyond its kind.
#[derive(Debug, Clone, Default)]
pub(crate) struct ElementMappings {
    /// The element has `camunda:inputOutput`, so it is a scope: its task gets its own
    /// execution and local variables die with it.
    pub has_io: bool,
    /// Evaluated against the enclosing scope when a token enters; set as local variables.
    pub inputs: Vec<(String, ParamValue)>,
    /// Evaluated against the activity's scope when it ends; set on the enclosing scope.
    pub outputs: Vec<(String, ParamValue)>,
    /// `camunda:topic` holding `${…}`: evaluated when the task is created.
    pub topic: Option<Expression>,
    /// `camunda:taskPriority` holding `${…}` (the element's, else the process's).
    pub priority: Option<Expression>,
    /// Error boundary: variable receiving the caught error's code.
    pub error_code_variable: Option<String>,
    /// Error boundary: variable receiving the caught error's message.
    pub error_message_variable: Option<String>,
}

/// A value being read inside `camunda:inputOutput`.
#[derive(Debug)]
enum Open {
    Param {
        output: bool,
        name: Option<String>,
        text: String,
        children: Vec<Raw>,
    },
    List(Vec<Raw>),
    Map(Vec<(Option<String>, Raw)>),
    Entry {
        key: Option<String>,
        text: String,
        children: Vec<Raw>,
    },
    Value(String),
    /// `camunda:script` or any other element the engine cannot map.
    Unsupported(String),
}

/// A parameter value as written, before its expressions are parsed.
#[derive(Debug)]
enum Raw {
    Text(String),
    List(Vec<Raw>),
    Map(Vec<(Option<String>, Raw)>),
    Unsupported(String),
}

/// Open elements inside one `camunda:inputOutput` (parameter, list, entry, map, value, …)
/// beyond which a value is refused: 64 allows 30 levels of lists or maps, far more than a model
/// needs, while the recursion that builds, evaluates and drops a value stays shallow.
const MAX_NESTING: usize = 64;

/// Collects the mapping-related XML inside one flow node.
#[derive(Debug, Default)]
pub(super) struct IoCollector {
    /// Depth (relative to the flow node) of the open `camunda:inputOutput`, if any.
    io_depth: Option<usize>,
    has_io: bool,
    stack: Vec<Open>,
    params: Vec<(bool, Option<String>, Raw)>,
    error_code_variable: Option<String>,
    error_message_variable: Option<String>,
    /// Elements seen that the engine cannot execute, by tag.
    unsupported: Vec<String>,
}

impl IoCollector {
    /// An element starts at `depth` below the flow node (1 = direct child).
    pub(super) fn start(&mut self, tag: &str, attrs: &HashMap<String, String>, depth: usize) {
        if self.io_depth.is_some() {
            if self.stack.len() >= MAX_NESTING {
                // Everything below is refused as one: values are built and dropped by
                // recursion, so their depth must stay small.
                self.stack.push(Open::Unsupported(format!(
                    "camunda:list / camunda:map nested deeper than {MAX_NESTING} elements"
                )));
                return;
            }
            let name = || attrs.get("name").cloned();
            self.stack.push(match tag {
                "inputParameter" | "outputParameter" if self.stack.is_empty() => Open::Param {
                    output: tag == "outputParameter",
                    name: name(),
                    text: String::new(),
                    children: Vec::new(),
                },
                "list" => Open::List(Vec::new()),
                "map" => Open::Map(Vec::new()),
                "entry" if matches!(self.stack.last(), Some(Open::Map(_))) => Open::Entry {
                    key: attrs.get("key").cloned(),
                    text: String::new(),
                    children: Vec::new(),
                },
                "value" => Open::Value(String::new()),
                other => Open::Unsupported(format!("camunda:{other}")),
            });
            return;
        }
        match (tag, depth) {
            ("inputOutput", 2) => {
                self.io_depth = Some(depth);
                self.has_io = true;
            }
            ("errorEventDefinition", 1) => {
                self.error_code_variable = attrs.get("errorCodeVariable").cloned();
                self.error_message_variable = attrs.get("errorMessageVariable").cloned();
            }
            ("errorEventDefinition", 2) => {
                self.unsupported
                    .push("camunda:errorEventDefinition".to_owned());
            }
            _ => {}
        }
    }

    /// Whether text at this point belongs to a parameter value.
    pub(super) fn wants_text(&self) -> bool {
        self.io_depth.is_some() && !self.stack.is_empty()
    }

    /// Text (already unescaped) inside the innermost open element.
    pub(super) fn text(&mut self, t: &str) {
        if let Some(Open::Param { text, .. } | Open::Entry { text, .. } | Open::Value(text)) =
            self.stack.last_mut()
        {
            text.push_str(t);
        }
    }

    /// The element at `depth` below the flow node ends.
    pub(super) fn end(&mut self, depth: usize) {
        let Some(io_depth) = self.io_depth else {
            return;
        };
        if depth == io_depth {
            self.io_depth = None;
            self.stack.clear();
            return;
        }
        let Some(open) = self.stack.pop() else {
            return;
        };
        let raw = match open {
            Open::Param {
                output,
                name,
                text,
                children,
            } => {
                self.params.push((output, name, nested(text, children)));
                return;
            }
            Open::Entry {
                key,
                text,
                children,
            } => {
                if let Some(Open::Map(entries)) = self.stack.last_mut() {
                    entries.push((key, nested(text, children)));
                }
                return;
            }
            Open::List(items) => Raw::List(items),
            Open::Map(entries) => Raw::Map(entries),
            Open::Value(text) => Raw::Text(text),
            Open::Unsupported(tag) => Raw::Unsupported(tag),
        };
        match self.stack.last_mut() {
            Some(Open::Param { children, .. } | Open::Entry { children, .. }) => children.push(raw),
            Some(Open::List(items)) => items.push(raw),
            // Inside an unsupported element: that element is reported, not each of its parts.
            Some(Open::Unsupported(_)) => {}
            Some(Open::Value(_)) => self.unsupported.push(match raw {
                Raw::Unsupported(tag) => tag,
                _ => "an element inside camunda:value".to_owned(),
            }),
            Some(Open::Map(_)) | None => {
                if let Raw::Unsupported(tag) = raw {
                    self.unsupported.push(tag);
                }
            }
        }
    }
}

/// A parameter or map entry: its one child element, else its text (empty text is null).
fn nested(text: String, mut children: Vec<Raw>) -> Raw {
    match children.len() {
        0 => Raw::Text(text),
        1 => children.remove(0),
        _ => Raw::Unsupported("more than one child element in a parameter".to_owned()),
    }
}

/// Checks what was collected for element `id` (`tag`, external task or not) and builds its
/// mappings; every problem is reported through `problem`.
pub(super) fn mappings(
    id: &str,
    tag: &str,
    external_task: bool,
    c: &IoCollector,
    problem: &mut dyn FnMut(String),
) -> ElementMappings {
    let mut out = ElementMappings {
        has_io: c.has_io,
        error_code_variable: c.error_code_variable.clone(),
        error_message_variable: c.error_message_variable.clone(),
        ..Default::default()
    };
    for what in &c.unsupported {
        problem(format!(
            "Unsupported element: the procos engine cannot execute {what} in '{id}'"
        ));
    }
    if c.has_io && !external_task {
        problem(format!(
            "camunda:inputOutput is only supported on external service tasks by the procos engine, not on {tag} '{id}'"
        ));
        return out;
    }
    for (output, name, raw) in &c.params {
        let kind = if *output {
            "outputParameter"
        } else {
            "inputParameter"
        };
        let Some(name) = name.clone().filter(|n| !n.is_empty()) else {
            problem(format!("Missing attribute 'name' for {kind} in '{id}'"));
            continue;
        };
        let mut bad =
            |reason: String| problem(format!("camunda:{kind} '{name}' of '{id}': {reason}"));
        if let Some(value) = param(raw, &mut bad) {
            if *output {
                out.outputs.push((name, value));
            } else {
                out.inputs.push((name, value));
            }
        }
    }
    out
}

/// Parses a raw value; text is trimmed (Camunda reads it with `getText().trim()`).
fn param(raw: &Raw, bad: &mut dyn FnMut(String)) -> Option<ParamValue> {
    match raw {
        Raw::Text(t) => {
            let t = t.trim();
            if t.is_empty() {
                return Some(ParamValue::Null);
            }
            match Expression::parse(t) {
                Ok(e) => Some(ParamValue::Expr(e)),
                Err(err) => {
                    bad(err.to_string());
                    None
                }
            }
        }
        Raw::List(items) => {
            let mut out = Vec::new();
            for item in items {
                out.push(param(item, bad)?);
            }
            Some(ParamValue::List(out))
        }
        Raw::Map(entries) => {
            let mut out = Vec::new();
            for (key, value) in entries {
                let Some(key) = key.as_deref().filter(|k| !k.is_empty()) else {
                    bad("missing attribute 'key' for 'entry' element".to_owned());
                    return None;
                };
                let key = match Expression::parse(key) {
                    Ok(k) => k,
                    Err(err) => {
                        bad(err.to_string());
                        return None;
                    }
                };
                out.push((key, param(value, bad)?));
            }
            Some(ParamValue::Map(out))
        }
        Raw::Unsupported(what) => {
            bad(format!(
                "{what} is not supported by the procos engine (only text, ${{…}}, camunda:list and camunda:map)"
            ));
            None
        }
    }
}
