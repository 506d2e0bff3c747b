//! `${VAR}` interpolation on the parsed YAML tree.
//!
//! Done on string scalars of the parsed [`Value`], never on the raw text: an environment value
//! can only ever become (part of) one scalar, so it cannot inject YAML structure.
//!
//! | written             | becomes                                                       |
//! |---------------------|---------------------------------------------------------------|
//! | `${VAR}`            | the value of `VAR`; a problem if `VAR` is not set              |
//! | `${VAR:-default}`   | `default` when `VAR` is unset or empty                         |
//! | `${VAR:?message}`   | a problem carrying `message` when `VAR` is unset or empty      |
//! | `$$`                | a literal `$`                                                  |
//! | `$` before anything else | itself (so `^a$` or `pa$word` need no escaping)           |
//!
//! A scalar that is exactly one `${...}` and whose result reads as a YAML number or boolean
//! becomes that type (`port: ${SMTP_PORT:-25}` is the integer 25), as docker compose does.
//! Mapping keys are not interpolated. Defaults are literal text up to the first `}`.
//!
//! Every value taken from the environment is remembered in [`Sensitive`], which scrubs it from
//! any message before a person sees it: environment values are where secrets live.
//!
//! SQL is left as written ([`is_sql`]: a database endpoint's `sql` and `setup`): the environment
//! must not write a statement, so a `${…}` there reaches the endpoint's validation, which refuses
//! it at its path, and `$$` stays a PostgreSQL dollar quote.

use serde_yaml::Value;

use super::error::{Problem, index_path, key_path};

/// What interpolation found: problems with their paths, values to hide, paths that failed.
#[derive(Debug, Default)]
pub(crate) struct Interpolated {
    /// Missing variables and malformed `${`, each at the path of its scalar.
    pub problems: Vec<Problem>,
    /// Paths of scalars that could not be interpolated (later errors there are noise).
    pub failed: Vec<String>,
    /// Values taken from the environment.
    pub sensitive: Sensitive,
}

/// Values that came from the environment and must not appear in any message.
#[derive(Debug, Default)]
pub(crate) struct Sensitive {
    values: Vec<String>,
}

impl Sensitive {
    fn add(&mut self, value: &str) {
        super::secret::remember(&mut self.values, value);
    }

    /// `message` with every environment value replaced by `***` (the same rules as
    /// [`super::secret::redact`]).
    pub fn scrub(&self, message: &str) -> String {
        super::secret::redact_with(&self.values, message)
    }
}

/// Interpolates every string scalar under `root` in place.
pub(crate) fn interpolate(root: &mut Value, env: &dyn Fn(&str) -> Option<String>) -> Interpolated {
    let mut found = Interpolated::default();
    walk(root, "", env, &mut found);
    found
}

/// The text of a mapping key, for paths.
pub(crate) fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "~".to_string(),
        Value::Tagged(t) => key_text(&t.value),
        Value::Sequence(_) | Value::Mapping(_) => "?".to_string(),
    }
}

fn walk(
    value: &mut Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    found: &mut Interpolated,
) {
    match value {
        Value::String(s) => {
            if !s.contains('$') || is_sql(path) {
                return;
            }
            match expand(s, env, &mut found.sensitive) {
                Ok(expanded) => *value = expanded,
                Err(messages) => {
                    found.failed.push(path.to_string());
                    found
                        .problems
                        .extend(messages.into_iter().map(|m| Problem::new(path, m)));
                }
            }
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &index_path(path, i), env, found);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                walk(item, &key_path(path, &key_text(key)), env, found);
            }
        }
        Value::Tagged(tagged) => walk(&mut tagged.value, path, env, found),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Is `path` a database endpoint's SQL — `endpoints.E.statements.S.sql`,
/// `endpoints.E.statements.S.steps[i].sql` or `endpoints.E.setup[i]`?
fn is_sql(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("endpoints.") else {
        return false;
    };
    // The endpoint's name is one key; the rest is the place inside it.
    let Some((_, inside)) = rest.split_once('.') else {
        return false;
    };
    if let Some(index) = inside.strip_prefix("setup[") {
        return index.ends_with(']') && !index.contains('.');
    }
    let Some(statement) = inside.strip_prefix("statements.") else {
        return false;
    };
    match statement.split_once('.') {
        Some((_, "sql")) => true,
        Some((_, step)) => step.strip_prefix("steps[").is_some_and(|s| {
            s.split_once("].")
                .is_some_and(|(i, key)| key == "sql" && i.bytes().all(|b| b.is_ascii_digit()))
        }),
        None => false,
    }
}

/// Expands one scalar, or says everything wrong with it.
fn expand(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    sensitive: &mut Sensitive,
) -> Result<Value, Vec<String>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut from_env = false;
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(open) = after.strip_prefix('{') {
            let Some(close) = open.find('}') else {
                errors.push("unclosed `${` (write `$$` for a literal `$`)".to_string());
                rest = "";
                break;
            };
            match lookup(&open[..close], env) {
                Ok(Lookup { value, env_value }) => {
                    if let Some(v) = env_value {
                        from_env = true;
                        // Every message procos builds later is redacted of it too.
                        super::secret::register(&v);
                        sensitive.add(&v);
                    }
                    out.push_str(&value);
                }
                Err(message) => errors.push(message),
            }
            rest = &open[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if !errors.is_empty() {
        return Err(errors);
    }
    if from_env {
        sensitive.add(&out);
    }
    let whole = text.starts_with("${") && text.find('}') == Some(text.len() - 1);
    Ok(if whole {
        coerce(out)
    } else {
        Value::String(out)
    })
}

/// The result of one `${...}`: its text, and the environment's value if that is where it came from.
struct Lookup {
    value: String,
    env_value: Option<String>,
}

/// Resolves the inside of one `${...}`.
fn lookup(body: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Lookup, String> {
    let (name, modifier) = match body.find(':') {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    if !is_name(name) {
        return Err(format!(
            "`${{{name}...}}`: `{name}` is not a variable name (letters, digits and `_`, \
             not starting with a digit; `${{VAR:-default}}` gives a default, \
             `${{VAR:?message}}` requires it, `$$` is a literal `$`)"
        ));
    }
    let set = env(name).filter(|v| !v.is_empty());
    match modifier {
        None => match env(name) {
            Some(v) => Ok(Lookup {
                value: v.clone(),
                env_value: Some(v),
            }),
            None => Err(format!("environment variable `{name}` is not set")),
        },
        Some(m) if m.starts_with('-') => Ok(match set {
            Some(v) => Lookup {
                value: v.clone(),
                env_value: Some(v),
            },
            None => Lookup {
                value: m[1..].to_string(),
                env_value: None,
            },
        }),
        Some(m) if m.starts_with('?') => match set {
            Some(v) => Ok(Lookup {
                value: v.clone(),
                env_value: Some(v),
            }),
            None if m.len() > 1 => Err(format!(
                "{} (environment variable `{name}` is not set)",
                &m[1..]
            )),
            None => Err(format!(
                "environment variable `{name}` is required but not set"
            )),
        },
        Some(_) => Err(format!(
            "`${{{name}:...}}`: unknown modifier; use `${{{name}:-default}}` or `${{{name}:?message}}`"
        )),
    }
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A whole-scalar result that reads as a YAML number or boolean becomes one — but only when that
/// loses nothing: `0123`, `1e3`, `0x1F` or `+5` stay text, so a PIN or an id is never rewritten.
fn coerce(text: String) -> Value {
    match serde_yaml::from_str::<Value>(&text) {
        Ok(Value::Number(n)) if n.to_string() == text => Value::Number(n),
        Ok(Value::Bool(b)) if b.to_string() == text => Value::Bool(b),
        _ => Value::String(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db.internal".into()),
            "PORT" => Some("5432".into()),
            "EMPTY" => Some(String::new()),
            "FLAG" => Some("true".into()),
            "TOKEN" => Some("sk-live-0123456789".into()),
            _ => None,
        }
    }

    fn run(yaml: &str) -> (Value, Interpolated) {
        let mut v: Value = serde_yaml::from_str(yaml).unwrap();
        let found = interpolate(&mut v, &env);
        (v, found)
    }

    fn one(yaml: &str) -> Value {
        let (v, found) = run(yaml);
        assert!(found.problems.is_empty(), "{:?}", found.problems);
        v["a"].clone()
    }

    #[test]
    fn plain_variables_are_replaced_inside_text() {
        assert_eq!(
            one("a: postgres://${HOST}:${PORT}/x"),
            Value::from("postgres://db.internal:5432/x")
        );
    }

    #[test]
    fn defaults_apply_when_unset_or_empty() {
        assert_eq!(one("a: ${NOPE:-fallback}"), Value::from("fallback"));
        assert_eq!(one("a: ${EMPTY:-fallback}"), Value::from("fallback"));
        assert_eq!(one("a: ${HOST:-fallback}"), Value::from("db.internal"));
        assert_eq!(one("a: x${NOPE:-}y"), Value::from("xy"));
    }

    #[test]
    fn an_empty_but_set_variable_is_accepted_without_modifier() {
        assert_eq!(one("a: '${EMPTY}'"), Value::from(""));
    }

    #[test]
    fn a_whole_scalar_that_reads_as_number_or_bool_changes_type() {
        assert_eq!(one("a: ${PORT}"), Value::from(5432));
        assert_eq!(one("a: ${SMTP_PORT:-25}"), Value::from(25));
        assert_eq!(one("a: ${FLAG}"), Value::from(true));
        // Not a whole scalar: stays text.
        assert_eq!(one("a: ${PORT}0"), Value::from("54320"));
        assert_eq!(one("a: ${HOST}"), Value::from("db.internal"));
        // Lossy conversions are not made.
        assert_eq!(one("a: ${PIN:-0123}"), Value::from("0123"));
        assert_eq!(one("a: ${X:-1e3}"), Value::from("1e3"));
        assert_eq!(one("a: ${X:-1.5}"), Value::from(1.5));
    }

    #[test]
    fn double_dollar_is_a_literal_dollar_and_a_lone_dollar_is_kept() {
        assert_eq!(one("a: pa$$word ${PORT}"), Value::from("pa$word 5432"));
        assert_eq!(one("a: '$${HOST}'"), Value::from("${HOST}"));
        assert_eq!(one("a: ^a$"), Value::from("^a$"));
    }

    #[test]
    fn a_missing_variable_is_reported_at_its_path_by_name() {
        let (_, found) = run("topics:\n  t:\n    endpoints: [x, '${MISSING}']\n");
        assert_eq!(
            found.problems,
            vec![Problem::new(
                "topics.t.endpoints[1]",
                "environment variable `MISSING` is not set"
            )]
        );
        assert_eq!(found.failed, vec!["topics.t.endpoints[1]".to_string()]);
    }

    #[test]
    fn a_required_variable_reports_its_message() {
        let (_, found) = run("a: ${API_KEY:?set API_KEY to your OpenAI key}");
        assert_eq!(found.problems.len(), 1);
        assert_eq!(found.problems[0].path, "a");
        assert!(
            found.problems[0]
                .message
                .starts_with("set API_KEY to your OpenAI key")
        );
        assert_eq!(one("a: ${HOST:?needed}"), Value::from("db.internal"));
    }

    #[test]
    fn malformed_references_are_reported_with_their_path() {
        let (_, found) = run("a:\n  b: ${HOST\n  c: ${}\n  d: ${1X}\n  e: ${HOST:+x}\n");
        let paths: Vec<&str> = found.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["a.b", "a.c", "a.d", "a.e"]);
        assert!(found.problems[0].message.contains("unclosed"));
        assert!(found.problems[3].message.contains("unknown modifier"));
    }

    #[test]
    fn keys_are_not_interpolated_and_values_cannot_inject_yaml() {
        let mut v: Value = serde_yaml::from_str("'${HOST}': ${EVIL}").unwrap();
        let evil = |n: &str| (n == "EVIL").then(|| "x\nb: injected".to_string());
        let found = interpolate(&mut v, &evil);
        assert!(found.problems.is_empty());
        assert_eq!(v["${HOST}"], Value::from("x\nb: injected"));
        assert!(v.get("b").is_none());
    }

    #[test]
    fn environment_values_are_scrubbed_from_messages() {
        let (_, found) = run("a: Bearer ${TOKEN}\nb: ${PORT}");
        let s = &found.sensitive;
        assert_eq!(
            s.scrub("invalid type: string \"Bearer sk-live-0123456789\", expected a map"),
            "invalid type: string \"***\", expected a map"
        );
        assert_eq!(s.scrub("got sk-live-0123456789 here"), "got *** here");
        assert_eq!(
            s.scrub("invalid type: integer `5432`, expected a string"),
            "invalid type: integer `***`, expected a string"
        );
        // Short values are not scrubbed from ordinary words.
        assert_eq!(s.scrub("port 54321"), "port 54321");
    }

    #[test]
    fn sql_is_left_as_written_so_the_environment_cannot_write_a_statement() {
        let yaml = r#"
endpoints:
  db:
    url: "${DB_URL:-sqlite::memory:}"
    setup: ["CREATE TABLE t (a text DEFAULT '${HOST}')"]
    statements:
      one: { sql: "SELECT $$a$$ WHERE x = ${HOST}" }
      two: { steps: [{ sql: "SELECT ${HOST}" }] }
  other:
    sql: "${HOST}"
"#;
        let (value, found) = run(yaml);
        assert!(found.problems.is_empty(), "{:?}", found.problems);
        let db = &value["endpoints"]["db"];
        assert_eq!(
            db["url"],
            Value::from("sqlite::memory:"),
            "other keys are read"
        );
        assert_eq!(
            db["setup"][0],
            Value::from("CREATE TABLE t (a text DEFAULT '${HOST}')")
        );
        assert_eq!(
            db["statements"]["one"]["sql"],
            Value::from("SELECT $$a$$ WHERE x = ${HOST}")
        );
        assert_eq!(
            db["statements"]["two"]["steps"][0]["sql"],
            Value::from("SELECT ${HOST}")
        );
        // Only a database endpoint's SQL places: another endpoint's `sql` key is interpolated.
        assert_eq!(
            value["endpoints"]["other"]["sql"],
            Value::from("db.internal")
        );
    }
}
