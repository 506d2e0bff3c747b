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
fn has_syntax(s: &str) -> bool {
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

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The top-level names the template reads (`customer` for `{{ customer.id }}`), sorted:
    /// what a message names when a rendered value is wrong.
    pub fn variables(&self) -> &[String] {
        &self.variables
    }

    /// Does the template print anything from the task (any `{{ … }}` at all)?
    pub fn is_literal(&self) -> bool {
        self.variables.is_empty()
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
mod tests {
    use super::*;
    use serde_json::json;

    fn request() -> EndpointRequest {
        let mut req = EndpointRequest {
            task_id: "t-1".into(),
            topic: "invoice".into(),
            activity_id: "Activity_1".into(),
            process_instance_id: "pi-9".into(),
            business_key: Some("order-42".into()),
            ..Default::default()
        };
        req.variables.insert("amount".into(), json!(12.5));
        req.variables.insert("count".into(), json!(3));
        req.variables.insert("items".into(), json!(["a", "b"]));
        req.variables
            .insert("customer".into(), json!({"name": "Ada", "vip": true}));
        req.variables.insert("task".into(), json!("shadowed"));
        req.properties
            .insert("pde.prompt".into(), "Summarise {{ x }}".into());
        req
    }

    fn render(source: &str, req: &EndpointRequest) -> Result<String, TemplateError> {
        Template::compile("test", source)?.render(&TemplateContext::new(req))
    }

    #[test]
    fn variables_are_at_top_level_and_in_the_map() {
        let req = request();
        assert_eq!(
            render(
                "{{ customer.name }} {{ variables.count }} {{ items | join(',') }}",
                &req
            )
            .unwrap(),
            "Ada 3 a,b"
        );
        // `tojson` (minijinja feature `json`) serialises a variable for JSON bodies and prompts.
        let json_text = render("{{ customer | tojson }}", &req).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&json_text).unwrap(),
            json!({"name": "Ada", "vip": true})
        );
    }

    #[test]
    fn properties_business_key_and_task_are_available() {
        let req = request();
        let out = render(
            "{{ properties['pde.prompt'] }}|{{ business_key }}|{{ task.id }} {{ task.topic }} \
             {{ task.activity_id }} {{ task.process_instance_id }}|{{ variables.task }}",
            &req,
        )
        .unwrap();
        assert_eq!(
            out,
            "Summarise {{ x }}|order-42|t-1 invoice Activity_1 pi-9|shadowed"
        );
    }

    #[test]
    fn an_undefined_variable_is_an_error_naming_it() {
        let err = render("Hello {{ nmae }}", &request()).unwrap_err();
        assert!(matches!(err, TemplateError::Render { .. }));
        let text = err.to_string();
        assert!(text.contains("`nmae`"), "{text}");
        assert!(text.contains("`test`"), "{text}");
    }

    #[test]
    fn a_missing_business_key_is_undefined_but_defaults_work() {
        let mut req = request();
        req.business_key = None;
        assert!(render("{{ business_key }}", &req).is_err());
        assert_eq!(
            render("{{ business_key | default('-') }}", &req).unwrap(),
            "-"
        );
        assert_eq!(
            render("{% if business_key %}yes{% else %}no{% endif %}", &req).unwrap(),
            "no"
        );
    }

    #[test]
    fn a_syntax_error_names_the_template() {
        let err = Template::compile("endpoints.crm.url", "{{ unclosed").unwrap_err();
        assert!(matches!(err, TemplateError::Compile { .. }));
        assert!(err.to_string().contains("endpoints.crm.url"), "{err}");
    }

    #[test]
    fn json_template_keeps_types_of_whole_expressions() {
        let body = json!({
            "amount": "{{ amount }}",
            "count": "{{count}}",
            "items": "{{ items }}",
            "customer": "{{ customer }}",
            "label": "Order {{ business_key }} x{{ count }}",
            "fixed": [1, true, null, "plain"],
            "nested": {"first": "{{ items[0] }}"},
        });
        let tpl = JsonTemplate::compile("body", &body).unwrap();
        let out = tpl.render(&TemplateContext::new(&request())).unwrap();
        assert_eq!(
            out,
            json!({
                "amount": 12.5,
                "count": 3,
                "items": ["a", "b"],
                "customer": {"name": "Ada", "vip": true},
                "label": "Order order-42 x3",
                "fixed": [1, true, null, "plain"],
                "nested": {"first": "a"},
            })
        );
    }

    #[test]
    fn json_template_undefined_names_path_and_expression() {
        let tpl = JsonTemplate::compile("body", &json!({"a": ["{{ missing }}"]})).unwrap();
        let err = tpl.render(&TemplateContext::new(&request())).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("body.a[0]") && text.contains("`missing`"),
            "{text}"
        );
    }

    #[test]
    fn two_expressions_in_one_string_render_as_text() {
        let tpl = JsonTemplate::compile("b", &json!("{{ count }}{{ count }}")).unwrap();
        let out = tpl.render(&TemplateContext::new(&request())).unwrap();
        assert_eq!(out, json!("33"));
    }

    #[test]
    fn marked_templates_keep_template_text_and_values_apart() {
        let tpl = MarkedTemplate::compile(
            "url",
            "https://x/{{ customer.name }}?q={{ items | join(',') }}&r={{ 'a/b' | safe }}",
        )
        .unwrap();
        assert_eq!(tpl.variables(), ["customer", "items"]);
        let pieces = tpl.render(&TemplateContext::new(&request())).unwrap();
        let value = |t: &str, safe| Piece::Value {
            text: t.into(),
            safe,
        };
        assert_eq!(
            pieces,
            [
                Piece::Text("https://x/".into()),
                value("Ada", false),
                Piece::Text("?q=".into()),
                value("a,b", false),
                Piece::Text("&r=".into()),
                value("a/b", true),
            ]
        );
        assert_eq!(joined(&pieces), "https://x/Ada?q=a,b&r=a/b");
    }

    #[test]
    fn a_value_cannot_forge_marks() {
        let mut req = request();
        req.variables
            .insert("evil".into(), json!("a\u{E002}?x=1\u{E000}b"));
        let tpl = MarkedTemplate::compile("u", "p{{ evil }}").unwrap();
        let pieces = tpl.render(&TemplateContext::new(&req)).unwrap();
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[1].text(), "a\u{FFFD}?x=1\u{FFFD}b");
        assert!(MarkedTemplate::compile("u", "x\u{E000}").is_err());
        // Captured output printed again is one value.
        let tpl =
            MarkedTemplate::compile("u", "{% set y %}[{{ count }}]{% endset %}{{ y }}").unwrap();
        let pieces = tpl.render(&TemplateContext::new(&req)).unwrap();
        assert!(matches!(&pieces[..], [Piece::Value { .. }]), "{pieces:?}");
    }

    #[test]
    fn tojson_of_an_undefined_variable_is_an_error_naming_it() {
        // Before: `null`, silently (a misspelt variable sent null in a JSON body).
        let err = render("{{ custmer | tojson }}", &request()).unwrap_err();
        assert!(err.to_string().contains("`custmer` is undefined"), "{err}");
        assert_eq!(render("{{ count | tojson }}", &request()).unwrap(), "3");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Any JSON value a process variable can hold, a few levels deep.
        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                any::<String>().prop_map(Value::from),
                "[{}%#\u{E000}-\u{E002}a-z ]{0,12}".prop_map(Value::from),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #[test]
            fn rendering_arbitrary_variables_never_panics(
                a in json_value(), b in json_value()
            ) {
                let mut req = request();
                req.variables.insert("a".into(), a);
                req.variables.insert("b".into(), b);
                let ctx = TemplateContext::new(&req);
                for source in [
                    "{{ a }}-{{ b }}",
                    "{{ a | tojson }}",
                    "{{ a.x }}{{ b[0] }}",
                    "{% for i in a %}{{ i }}{% endfor %}",
                    "{{ a ~ b }}",
                    "{{ a | default('x') | upper }}",
                ] {
                    let _ = Template::compile("t", source).unwrap().render(&ctx);
                    let _ = MarkedTemplate::compile("t", source).unwrap().render(&ctx);
                }
                let body = JsonTemplate::compile(
                    "body",
                    &json!({"a": "{{ a }}", "both": ["{{ b }}", "x{{ a }}"]}),
                )
                .unwrap();
                let _ = body.render(&ctx);
            }
        }
    }
}
