//! Templates over a task: the one templating language (minijinja) every endpoint uses.
//!
//! Templates are compiled once, when an endpoint is built, and rendered per task over a
//! [`TemplateContext`] built once per request:
//!
//! ```text
//! {{ amount }}                    every variable, at top level
//! {{ variables.amount }}          the same, through the map (works even when shadowed)
//! {{ properties["pde.prompt"] }}  the activity's extension properties
//! {{ business_key }}              only defined when the instance has one
//! {{ task.id }} {{ task.topic }} {{ task.activity_id }} {{ task.process_instance_id }}
//! {{ feedback }}                  only defined on a retry after a failed validation
//! ```
//!
//! The structured names (`variables`, `properties`, `business_key`, `task`, `feedback`) win over
//! a process variable of the same name, so a template can always rely on them.
//!
//! Undefined values are errors, not empty strings: printing, iterating or reading an attribute of
//! an undefined value fails and the error names the expression (`` `amount` is undefined ``).
//! Only a truthiness test (`{% if note %}`) treats an undefined value as false, so optional
//! variables stay expressible; `| default(…)` and `is defined` work as usual.
//!
//! [`JsonTemplate`] renders every string inside a JSON value; a string that is exactly one
//! `{{ expr }}` keeps the expression's JSON type (`"{{ amount }}"` stays a number).
//!
//! [`MarkedTemplate`] renders to [`Piece`]s that keep apart what the template wrote and what its
//! expressions printed: the http endpoint encodes variable text by where it lands in a URL, and
//! quotes only variable text in messages (template text can hold an interpolated secret).
//!
//! Messages quote at most [`QUOTE_LIMIT`](crate::config::secret::QUOTE_LIMIT) characters of
//! anything and never a template's source.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value as JinjaValue};
use serde_json::Value;

use super::EndpointRequest;

/// A template failed to compile or render; names the template and the problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    /// The source is not a valid template.
    #[error("template `{name}` does not compile: {reason}")]
    Compile {
        /// The template's name (its config path, e.g. `endpoints.crm.url`).
        name: String,
        /// What is wrong, with the line.
        reason: String,
    },
    /// Rendering failed, e.g. an undefined variable.
    #[error("template `{name}` failed to render: {reason}")]
    Render {
        /// The template's name.
        name: String,
        /// What went wrong, naming the undefined expression when that was the cause.
        reason: String,
    },
}

/// A fresh environment with procos's settings: no HTML escaping (we render URLs, JSON, prompts),
/// undefined values fail, trailing newlines kept (prompts and bodies are rendered verbatim).
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // `SemiStrict` rather than `Strict`: both fail on printing, iterating and attribute access of
    // an undefined value, but `SemiStrict` lets `{% if optional %}` treat it as false.
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // minijinja's `tojson` turns an undefined value into `null` silently: a misspelt variable
    // would send `null` instead of failing with its name.
    env.add_filter("tojson", tojson_defined);
    match SyntaxConfig::builder().keep_trailing_newline(true).build() {
        Ok(syntax) => env.set_syntax(syntax),
        // Only custom delimiters can fail to build; we keep the defaults.
        Err(e) => tracing::warn!(error = %e, "Default template syntax rejected."),
    }
    env
}

/// `tojson` that refuses an undefined value, naming it like every other use of one.
fn tojson_defined(
    state: &minijinja::State,
    value: &JinjaValue,
    indent: Option<JinjaValue>,
    args: minijinja::value::Kwargs,
) -> Result<JinjaValue, minijinja::Error> {
    if value.is_undefined() {
        // Converting to a string argument with the state applies the undefined behaviour and
        // keeps the value's origin, so the error reads "`x` is undefined" as for `{{ x }}`.
        // (A test below fails if a minijinja upgrade changes that.)
        <minijinja::value::StringInput as minijinja::value::ArgType>::from_state_and_value(
            Some(state),
            Some(value),
        )?;
    }
    minijinja::filters::tojson(value, indent, args)
}

/// Describes a minijinja error in one line (kind, detail naming the undefined expression, line),
/// without the template source: sources can hold interpolated secrets.
fn describe(err: &minijinja::Error) -> String {
    let mut text = err.kind().to_string();
    if let Some(detail) = err.detail() {
        text.push_str(": ");
        // A detail can quote a value (a filter's argument); cap and redact it.
        text.push_str(&crate::config::secret::quote(detail));
    }
    if let Some(line) = err.line() {
        text.push_str(&format!(" (line {line})"));
    }
    text
}

/// A compiled template producing a string. Cheap to clone; safe to share across tasks.
#[derive(Clone)]
pub struct Template {
    env: Arc<Environment<'static>>,
    name: String,
}

impl fmt::Debug for Template {
    /// Prints only the name: a source may contain an interpolated secret (e.g. a header).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Template")
            .field("name", &self.name)
            .finish()
    }
}

impl Template {
    /// Compiles `source`; `name` (a config path) appears in every error about it.
    pub fn compile(name: &str, source: &str) -> Result<Template, TemplateError> {
        let mut env = environment();
        env.add_template_owned(name.to_string(), source.to_string())
            .map_err(|e| TemplateError::Compile {
                name: name.to_string(),
                reason: describe(&e),
            })?;
        Ok(Template {
            env: Arc::new(env),
            name: name.to_string(),
        })
    }

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renders over one task's context.
    pub fn render(&self, ctx: &TemplateContext) -> Result<String, TemplateError> {
        render_named(&self.env, &self.name, ctx)
    }
}

/// Renders the template `name` (already added to `env`).
fn render_named(
    env: &Environment<'static>,
    name: &str,
    ctx: &TemplateContext,
) -> Result<String, TemplateError> {
    let render_error = |e: minijinja::Error| TemplateError::Render {
        name: name.to_string(),
        reason: describe(&e),
    };
    env.get_template(name)
        .and_then(|t| t.render(ctx.value.clone()))
        .map_err(render_error)
}

/// Everything a template can see of one task. Built once per request, shared by all templates.
#[derive(Debug, Clone)]
pub struct TemplateContext {
    value: JinjaValue,
}

impl TemplateContext {
    /// Builds the context from a request (see the module docs for the names it defines).
    pub fn new(request: &EndpointRequest) -> TemplateContext {
        let variables: BTreeMap<String, JinjaValue> = request
            .variables
            .iter()
            .map(|(k, v)| (k.clone(), JinjaValue::from(Serde(v))))
            .collect();
        let mut top = variables.clone();
        top.insert("variables".into(), JinjaValue::from(variables));
        top.insert(
            "properties".into(),
            JinjaValue::from(Serde(&request.properties)),
        );
        match &request.business_key {
            Some(key) => top.insert("business_key".into(), JinjaValue::from(key.as_str())),
            None => top.remove("business_key"),
        };
        match &request.feedback {
            Some(feedback) => top.insert("feedback".into(), JinjaValue::from(feedback.as_str())),
            None => top.remove("feedback"),
        };
        let task: BTreeMap<&str, &str> = BTreeMap::from([
            ("id", request.task_id.as_str()),
            ("topic", request.topic.as_str()),
            ("activity_id", request.activity_id.as_str()),
            ("process_instance_id", request.process_instance_id.as_str()),
        ]);
        top.insert("task".into(), JinjaValue::from(Serde(task)));
        TemplateContext {
            value: JinjaValue::from(top),
        }
    }
}

/// Name of the variable a whole-expression string is captured into.
const CAPTURE: &str = "__procos_value";

/// One node of a compiled JSON template.
#[derive(Debug, Clone)]
enum Node {
    /// No template syntax: used as is.
    Literal(Value),
    /// A string with template syntax: renders to a string (template name).
    Text(String),
    /// A string that is exactly `{{ expr }}`: keeps the expression's JSON value.
    Expr {
        /// Name of the `{% set %}` template that captures the value.
        template: String,
        /// The expression, for the "is undefined" message.
        expr: String,
    },
    /// An array of nodes.
    Array(Vec<Node>),
    /// An object; keys are not templated.
    Object(Vec<(String, Node)>),
}

/// A JSON value whose strings are templates. Cheap to clone; safe to share across tasks.
#[derive(Clone)]
pub struct JsonTemplate {
    env: Arc<Environment<'static>>,
    name: String,
    root: Node,
}

impl fmt::Debug for JsonTemplate {
    /// Prints only the name, like [`Template`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonTemplate")
            .field("name", &self.name)
            .finish()
    }
}

/// Does `s` contain template syntax?
pub(crate) fn has_syntax(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// The expression of a string that is exactly one `{{ expr }}` (surrounding whitespace allowed).
fn whole_expression(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    (!has_syntax(inner) && !inner.contains("}}") && !inner.trim().is_empty()).then(|| inner.trim())
}

impl JsonTemplate {
    /// Compiles every string in `value`; `name` prefixes the JSON path in errors
    /// (`endpoints.crm.body.items[0]`).
    pub fn compile(name: &str, value: &Value) -> Result<JsonTemplate, TemplateError> {
        let mut env = environment();
        let root = compile_node(&mut env, name, value)?;
        Ok(JsonTemplate {
            env: Arc::new(env),
            name: name.to_string(),
            root,
        })
    }

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renders over one task's context.
    pub fn render(&self, ctx: &TemplateContext) -> Result<Value, TemplateError> {
        render_node(&self.env, &self.root, ctx)
    }
}

fn compile_node(
    env: &mut Environment<'static>,
    path: &str,
    value: &Value,
) -> Result<Node, TemplateError> {
    let compile_error = |e: minijinja::Error| TemplateError::Compile {
        name: path.to_string(),
        reason: describe(&e),
    };
    Ok(match value {
        Value::String(s) if !has_syntax(s) => Node::Literal(value.clone()),
        Value::String(s) => match whole_expression(s) {
            Some(expr) => {
                let source = format!("{{% set {CAPTURE} = ({expr}) %}}");
                env.add_template_owned(path.to_string(), source)
                    .map_err(compile_error)?;
                Node::Expr {
                    template: path.to_string(),
                    expr: expr.to_string(),
                }
            }
            None => {
                env.add_template_owned(path.to_string(), s.clone())
                    .map_err(compile_error)?;
                Node::Text(path.to_string())
            }
        },
        Value::Array(items) => Node::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| compile_node(env, &format!("{path}[{i}]"), item))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Node::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), compile_node(env, &format!("{path}.{k}"), v)?)))
                .collect::<Result<_, TemplateError>>()?,
        ),
        Value::Null | Value::Bool(_) | Value::Number(_) => Node::Literal(value.clone()),
    })
}

fn render_node(
    env: &Environment<'static>,
    node: &Node,
    ctx: &TemplateContext,
) -> Result<Value, TemplateError> {
    Ok(match node {
        Node::Literal(v) => v.clone(),
        Node::Text(name) => Value::String(render_named(env, name, ctx)?),
        Node::Expr { template, expr } => {
            let render_error = |reason: String| TemplateError::Render {
                name: template.clone(),
                reason,
            };
            let captured = env
                .get_template(template)
                .and_then(|t| t.render_captured(ctx.value.clone()))
                .map_err(|e| render_error(describe(&e)))?;
            let value = captured.state().lookup(CAPTURE).unwrap_or_default();
            if value.is_undefined() {
                return Err(render_error(format!(
                    "undefined value: `{expr}` is undefined"
                )));
            }
            serde_json::to_value(&value).map_err(|e| render_error(e.to_string()))?
        }
        Node::Array(items) => Value::Array(
            items
                .iter()
                .map(|n| render_node(env, n, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Node::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, n)| Ok((k.clone(), render_node(env, n, ctx)?)))
                .collect::<Result<_, TemplateError>>()?,
        ),
    })
}

/// Opens a value a [`MarkedTemplate`] printed. Private-use characters: no URL, header or method
/// means anything by them, and values have theirs replaced before they are written.
const OPEN: char = '\u{E000}';
/// Opens a value marked `| safe`: the template author vouches for it (no encoding).
const OPEN_SAFE: char = '\u{E001}';
/// Closes a printed value.
const CLOSE: char = '\u{E002}';

fn is_mark(c: char) -> bool {
    matches!(c, OPEN | OPEN_SAFE | CLOSE)
}

/// One piece of a [`MarkedTemplate`]'s output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text the template itself wrote (config text: may hold an interpolated secret).
    Text(String),
    /// Text an expression printed (task data: may be anything a process variable holds).
    Value {
        /// What was printed.
        text: String,
        /// Printed through `| safe`: the author asks for it to be used as is.
        safe: bool,
    },
}

impl Piece {
    /// The piece's text.
    pub fn text(&self) -> &str {
        match self {
            Piece::Text(t) | Piece::Value { text: t, .. } => t,
        }
    }
}

/// The whole output of pieces, as one string.
pub fn joined(pieces: &[Piece]) -> String {
    pieces.iter().map(Piece::text).collect()
}

/// A string template whose output keeps template text and printed values apart (see [`Piece`]).
/// Cheap to clone; safe to share across tasks.
#[derive(Clone)]
pub struct MarkedTemplate {
    env: Arc<Environment<'static>>,
    name: String,
    variables: Vec<String>,
}

impl fmt::Debug for MarkedTemplate {
    /// Prints only the name, like [`Template`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MarkedTemplate")
            .field("name", &self.name)
            .finish()
    }
}

impl MarkedTemplate {
    /// Compiles `source`; `name` (a config path) appears in every error about it.
    pub fn compile(name: &str, source: &str) -> Result<MarkedTemplate, TemplateError> {
        if source.chars().any(is_mark) {
            return Err(TemplateError::Compile {
                name: name.to_string(),
                reason: "contains a reserved character (U+E000 to U+E002)".into(),
            });
        }
        let mut env = environment();
        env.set_formatter(|out, _state, value| {
            use std::fmt::Write as _;
            out.write_char(if value.is_safe() { OPEN_SAFE } else { OPEN })?;
            for c in value.to_string().chars() {
                out.write_char(if is_mark(c) { '\u{FFFD}' } else { c })?;
            }
            out.write_char(CLOSE)?;
            Ok(())
        });
        env.add_template_owned(name.to_string(), source.to_string())
            .map_err(|e| TemplateError::Compile {
                name: name.to_string(),
                reason: describe(&e),
            })?;
        let mut variables: Vec<String> = env
            .get_template(name)
            .map(|t| t.undeclared_variables(false).into_iter().collect())
            .unwrap_or_default();
        variables.sort();
        Ok(MarkedTemplate {
            env: Arc::new(env),
            name: name.to_string(),
            variables,
        })
    }

    /// The top-level names the template reads (`customer` for `{{ customer.id }}`), sorted:
    /// what a message names when a rendered value is wrong.
    pub fn variables(&self) -> &[String] {
        &self.variables
    }

    /// Renders over one task's context into pieces.
    pub fn render(&self, ctx: &TemplateContext) -> Result<Vec<Piece>, TemplateError> {
        Ok(split_marked(&render_named(&self.env, &self.name, ctx)?))
    }
}

/// Splits marked output into pieces. Marks inside a value (output captured by `{% set %}` or
/// `{% filter %}` and printed again) are dropped: the whole counts as one value, the cautious
/// reading. An unclosed value runs to the end.
fn split_marked(marked: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut open: Option<bool> = None;
    let mut depth = 0usize;
    for c in marked.chars() {
        match (c, open) {
            (OPEN | OPEN_SAFE, None) => {
                if !current.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut current)));
                }
                open = Some(c == OPEN_SAFE);
                depth = 1;
            }
            (OPEN | OPEN_SAFE, Some(safe)) => {
                // A value inside a value is only as safe as both.
                open = Some(safe && c == OPEN_SAFE);
                depth += 1;
            }
            (CLOSE, Some(safe)) => {
                depth -= 1;
                if depth == 0 {
                    pieces.push(Piece::Value {
                        text: std::mem::take(&mut current),
                        safe,
                    });
                    open = None;
                }
            }
            (CLOSE, None) => {}
            _ => current.push(c),
        }
    }
    match open {
        Some(safe) => pieces.push(Piece::Value {
            text: current,
            safe,
        }),
        None if !current.is_empty() => pieces.push(Piece::Text(current)),
        None => {}
    }
    pieces
}

#[cfg(test)]
mod tests;
