//! What a bad `pde.yaml` looks like to its author: every [`Problem`] with the YAML path where it
//! sits, gathered into one [`ConfigError`] so that a single `procos validate` run lists them all.
//!
//! Paths are written the way a reader finds them in the file: `topics.http_request.endpoints[1]`,
//! map keys joined by `.`, sequence indices in brackets. The empty path means "the file itself".

use std::fmt;
use std::path::PathBuf;

/// One problem with its YAML path, e.g.
/// `endpoints.gpt4.temprature: unknown field `temprature`, expected one of ...`.
///
/// Messages never contain values that came from the environment: they name the variable or the
/// setting, not its value, because those values are often secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Where in the file, e.g. `topics.http_request.retries`; empty for the file as a whole.
    pub path: String,
    /// What is wrong there, in one line.
    pub message: String,
}

impl Problem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// All problems found in one config file; `Display` prints one per line, `path: message`.
///
/// Returned by [`load`](super::load) and [`load_str`](super::load_str) instead of stopping at the
/// first error, so a person fixes the whole file in one round.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The file that was read (or the name given to [`load_str`](super::load_str)).
    pub file: PathBuf,
    /// Every problem found, in file order where the order is known. Never empty.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// `parent.key`, or `key` at the root.
pub(crate) fn key_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[index]`.
pub(crate) fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// A list of names for messages: `` `a`, `b` `` or `none` when empty.
pub(crate) fn name_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<String> = names.into_iter().map(|n| format!("`{n}`")).collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_prints_one_problem_per_line_with_its_path() {
        let err = ConfigError {
            file: PathBuf::from("pde.yaml"),
            problems: vec![
                Problem::new("topics.a.retires", "unknown field `retires`"),
                Problem::new("", "cannot read pde.yaml"),
            ],
        };
        assert_eq!(
            err.to_string(),
            "topics.a.retires: unknown field `retires`\ncannot read pde.yaml"
        );
    }

    #[test]
    fn paths_join_keys_and_indices() {
        assert_eq!(key_path("", "topics"), "topics");
        assert_eq!(index_path(&key_path("topics", "a.b"), 1), "topics.a.b[1]");
        assert_eq!(name_list(["x", "y"]), "`x`, `y`");
        assert_eq!(name_list([]), "none");
    }
}
