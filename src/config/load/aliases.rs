//! The design's config vocabulary, read as procos's own where it means one thing only.
//!
//! The design document that procos implements writes its example endpoints in a vocabulary of
//! its own. Rather than make its readers translate by hand, an endpoint entry is rewritten before
//! it is parsed (strictly, as any other):
//!
//! | the design writes                     | read as                          |
//! |---------------------------------------|----------------------------------|
//! | `type: ai_service`                    | `type: openai`                   |
//! | `type: script_executor`               | `type: python`                   |
//! | `config: { model: gpt-4, … }`         | `model: gpt-4, …` on the entry   |
//! | `sandbox_enabled: true` (python)      | `sandbox: true`                  |
//! | `max_execution_time: 300`             | `max_execution_time: 300s`       |
//!
//! Each use leaves one note at its path (`procos validate` prints them, the daemon logs them at
//! start), so the file's author learns procos's own spelling. A key that ends up set twice — in
//! `config:` and on the entry, or as both `sandbox` and `sandbox_enabled` — is an error naming
//! both paths, never a silent choice. Problems found later at a key that was moved are reported
//! at the path where the key really is in the file ([`Aliases::in_file`]).

use std::collections::BTreeMap;

use serde_yaml::{Mapping, Value};

use crate::config::error::{Problem, key_path};
use crate::config::interpolate::key_text;

/// `type:` values of the design, and the endpoint kind each is read as.
pub(super) const KIND_ALIASES: [(&str, &str); 2] =
    [("ai_service", "openai"), ("script_executor", "python")];

/// What the aliases of a file came to: notes for its author, and where moved keys sit.
#[derive(Debug, Default)]
pub(super) struct Aliases {
    /// One note per alias used, at the path where the file uses it.
    pub notes: Vec<Problem>,
    /// (path as parsed, path in the file) for every key an alias moved or renamed.
    moved: Vec<(String, String)>,
}

impl Aliases {
    /// The endpoint entry `map` at `path`, with the design's vocabulary rewritten into procos's.
    /// A key set twice, a `config:` that is not a mapping or a `sandbox_enabled` that is not a
    /// boolean is added to `problems` and the entry is refused (`None`). Paths in `failed`
    /// (scalars whose `${VAR}` failed) are extended with where their keys moved, so that serde's
    /// error there is recognised as the same failure.
    pub fn endpoint(
        &mut self,
        map: &Mapping,
        path: &str,
        failed: &mut Vec<String>,
        problems: &mut Vec<Problem>,
    ) -> Option<Mapping> {
        let mut body = map.clone();
        // Key → its path in the file, for keys taken out of `config:`.
        let mut origin: BTreeMap<String, String> = BTreeMap::new();
        let found = problems.len();

        if let Some(nested) = body.remove("config") {
            let config_path = key_path(path, "config");
            match nested {
                Value::Mapping(inner) => {
                    for (key, value) in inner {
                        let name = key_text(&key);
                        let from = key_path(&config_path, &name);
                        if body.contains_key(&key) {
                            problems.push(Problem::new(
                                from,
                                format!(
                                    "`{name}` is also set at `{}`: keep one of the two",
                                    key_path(path, &name)
                                ),
                            ));
                            continue;
                        }
                        body.insert(key, value);
                        origin.insert(name, from);
                    }
                    self.note(
                        &config_path,
                        format!("`config:` is read as settings of `{path}` itself"),
                    );
                }
                // `config:` with nothing under it adds nothing.
                Value::Null => {}
                _ => problems.push(Problem::new(
                    config_path,
                    "must be a mapping of the endpoint's settings (its keys are read as the \
                     endpoint's own)",
                )),
            }
        }
        let at = |origin: &BTreeMap<String, String>, key: &str| {
            origin
                .get(key)
                .cloned()
                .unwrap_or_else(|| key_path(path, key))
        };

        if let Some(Value::String(kind)) = body.get("type")
            && let Some((from, to)) = KIND_ALIASES.iter().find(|(from, _)| from == kind)
        {
            self.note(
                &at(&origin, "type"),
                format!("`type: {from}` is read as `type: {to}`"),
            );
            body.insert("type".into(), Value::String((*to).to_string()));
        }
        let python = body.get("type").and_then(Value::as_str) == Some("python");

        if python && let Some(enabled) = body.remove("sandbox_enabled") {
            let from = at(&origin, "sandbox_enabled");
            match enabled {
                Value::Bool(on) if body.contains_key("sandbox") => problems.push(Problem::new(
                    from,
                    format!(
                        "`sandbox_enabled: {on}` is also set as `{}`: keep one of the two",
                        at(&origin, "sandbox")
                    ),
                )),
                Value::Bool(on) => {
                    self.note(
                        &from,
                        format!("`sandbox_enabled: {on}` is read as `sandbox: {on}`"),
                    );
                    body.insert("sandbox".into(), Value::Bool(on));
                    self.moved.push((key_path(path, "sandbox"), from));
                }
                _ => problems.push(Problem::new(
                    from,
                    "must be `true` or `false` (or write `sandbox:` with a map of settings)",
                )),
            }
        }

        if let Some(value) = body.get_mut("max_execution_time")
            && let Some(duration) = seconds(value)
        {
            self.note(
                &at(&origin, "max_execution_time"),
                format!(
                    "`max_execution_time: {}` is read as `{duration}` (a bare number is seconds)",
                    key_text(value)
                ),
            );
            *value = Value::String(duration);
        }

        for (name, from) in origin {
            let parsed = key_path(path, &name);
            let moved: Vec<String> = failed
                .iter()
                .filter_map(|f| under(f, &from).map(|rest| format!("{parsed}{rest}")))
                .collect();
            failed.extend(moved);
            self.moved.push((parsed, from));
        }
        (problems.len() == found).then_some(body)
    }

    /// `path` (as parsed) where it is in the file: a key an alias moved is reported where the
    /// author wrote it (`endpoints.gpt.config.model`, not `endpoints.gpt.model`).
    pub fn in_file(&self, path: &str) -> String {
        for (parsed, file) in &self.moved {
            if let Some(rest) = under(path, parsed) {
                return format!("{file}{rest}");
            }
        }
        path.to_string()
    }

    fn note(&mut self, path: &str, message: String) {
        self.notes.push(Problem::new(path, message));
    }
}

/// The rest of `path` after `prefix` (`""`, or starting with `.` or `[`), if `path` is `prefix`
/// or lies below it.
fn under<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')).then_some(rest)
}

/// A bare non-negative number as a duration in seconds (`300` → `300s`, `1.5` → `1500ms`);
/// `None` for anything else, which the duration's own parser then judges.
fn seconds(value: &Value) -> Option<String> {
    let Value::Number(n) = value else {
        return None;
    };
    if let Some(secs) = n.as_u64() {
        return Some(format!("{secs}s"));
    }
    let secs = n.as_f64().filter(|s| s.is_finite() && *s >= 0.0)?;
    // Below a millisecond is below what any timeout here means; round to whole milliseconds.
    Some(format!("{}ms", (secs * 1000.0).round() as u64))
}

#[cfg(test)]
mod tests;
