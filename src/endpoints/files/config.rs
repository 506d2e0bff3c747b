//! The `files` endpoint's config: keys, defaults, and the compiled operation `validate` and the
//! build share (a key of another operation is refused, not ignored).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::root::Root;
use crate::config::secret::quote;
use crate::endpoints::python::sandbox::Bytes;
use crate::endpoints::stack::{self, CircuitConfig, Policy, ProbeConfig, RetryPolicy};
use crate::endpoints::template::{JsonTemplate, MarkedTemplate};

/// What a `files` endpoint does with each task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Read the file at `path` (`as`: file, text or JSON).
    Read,
    /// Write `content` or the File variable `file` to `path`, atomically.
    Write,
    /// List the directory at `path` (the root by default), optionally filtered by `glob`.
    List,
    /// Move (rename) `path` to `to`.
    Move,
    /// Delete the file at `path`.
    Delete,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::List => "list",
            Operation::Move => "move",
            Operation::Delete => "delete",
        }
    }
}

/// How `read` returns the content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadAs {
    /// A Camunda File variable (name and MIME type from the path).
    #[default]
    File,
    /// A string (the file must be UTF-8).
    Text,
    /// The parsed JSON document.
    Json,
}

/// What `delete` does when nothing is at the path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    /// Not found, as configured by `not_found_error_code`.
    #[default]
    Error,
    /// Completes with `deleted: false`.
    Ok,
}

/// `type: files`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// The directory every path is resolved in; nothing outside it can be reached. Must exist
    /// (relative: to the working directory).
    pub root: PathBuf,
    /// `read`, `write`, `list`, `move` or `delete`.
    pub operation: Operation,
    /// The file (a template over the task, e.g. `"{{ invoice_id }}.pdf"`), relative to `root`.
    /// Required, but for `list` (default: the root).
    #[serde(default)]
    pub path: Option<String>,
    /// `read`: `file` (default), `text` or `json`.
    #[serde(default, rename = "as")]
    pub read_as: Option<ReadAs>,
    /// `read` with `as: file`: the File variable's MIME type; by default guessed from the name.
    #[serde(default)]
    pub mime_type: Option<String>,
    /// `write`: the value to write (JSON template): a string as is, anything else as JSON.
    #[serde(default)]
    pub content: Option<Value>,
    /// `write`: the name of the File variable to write (a template), instead of `content`.
    #[serde(default)]
    pub file: Option<String>,
    /// `move`: the new path (a template), relative to `root`.
    #[serde(default)]
    pub to: Option<String>,
    /// `list`: only names matching this shell pattern (`*.pdf`, `invoice-??.csv`).
    #[serde(default)]
    pub glob: Option<String>,
    /// `write`, `move`: replace an existing file (default false: refused as "exists").
    #[serde(default)]
    pub overwrite: Option<bool>,
    /// `delete`: `error` (default) or `ok` when nothing is at the path.
    #[serde(default)]
    pub missing: Option<Missing>,
    /// Largest file `read` returns and `write` writes (default 10 MiB).
    #[serde(default = "default_max_size")]
    pub max_size: Bytes,
    /// BPMN error for "not found"; `null`: a permanent failure instead.
    #[serde(default = "default_not_found")]
    pub not_found_error_code: Option<String>,
    /// BPMN error for "already exists" (`overwrite: false`); `null`: a permanent failure instead.
    #[serde(default = "default_exists")]
    pub exists_error_code: Option<String>,
    /// BPMN error for "larger than `max_size`"; `null`: a permanent failure instead.
    #[serde(default = "default_too_large")]
    pub too_large_error_code: Option<String>,
    /// Bound on one operation (a hung network file system).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Operations in flight through this endpoint.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// When to stop using a failing file system.
    #[serde(default)]
    pub circuit: CircuitConfig,
    /// The background probe: the root is still a readable directory (off by default).
    #[serde(default)]
    pub probe: ProbeConfig,
}

fn default_max_size() -> Bytes {
    Bytes(10 << 20)
}
fn default_not_found() -> Option<String> {
    Some("FILE_NOT_FOUND".into())
}
fn default_exists() -> Option<String> {
    Some("FILE_EXISTS".into())
}
fn default_too_large() -> Option<String> {
    Some("FILE_TOO_LARGE".into())
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_concurrency() -> usize {
    8
}

/// Problems found in a config: (path suffix such as `path`, message).
type Problems = Vec<(String, String)>;

/// The operation with its templates, compiled once.
#[derive(Debug)]
pub(super) enum Op {
    Read {
        path: MarkedTemplate,
        read_as: ReadAs,
        mime_type: Option<String>,
    },
    Write {
        path: MarkedTemplate,
        source: Source,
        overwrite: bool,
    },
    List {
        path: MarkedTemplate,
        glob: Option<glob::Pattern>,
    },
    Move {
        path: MarkedTemplate,
        to: MarkedTemplate,
        overwrite: bool,
    },
    Delete {
        path: MarkedTemplate,
        missing: Missing,
    },
}

/// Where `write` takes its bytes from.
#[derive(Debug)]
pub(super) enum Source {
    Value(JsonTemplate),
    File(MarkedTemplate),
}

impl FilesConfig {
    /// How the stack wraps this endpoint: never retried by the stack (the engine's retries
    /// serve a transient I/O error), bounded by `timeout`.
    pub fn policy(&self) -> Policy {
        Policy {
            timeout: Some(self.timeout),
            max_concurrency: Some(self.max_concurrency),
            circuit: self.circuit.clone(),
            retry: RetryPolicy::none(),
            probe: self.probe.schedule(false),
        }
    }

    /// Whether the operation changes files (`write`, `move`, `delete`), known before building.
    pub fn has_side_effects(&self) -> bool {
        !matches!(self.operation, Operation::Read | Operation::List)
    }

    /// Every problem of this config as (path suffix, message): templates compile, the keys fit
    /// the operation, sizes and codes are sane. Pure: whether `root` exists is
    /// [`root_problem`](Self::root_problem)'s question.
    pub fn validate(&self) -> Vec<(String, String)> {
        match self.compile("") {
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        }
    }

    /// `root` is not a directory procos can open: what `procos validate` and the start say.
    pub fn root_problem(&self) -> Option<(String, String)> {
        Root::open(&self.root).err().map(|e| {
            (
                "root".to_string(),
                format!(
                    "`{}` cannot be opened as a directory: {e}",
                    self.root.display()
                ),
            )
        })
    }

    /// Compiles the operation, naming templates `<prefix><key>`; collects every problem.
    pub(super) fn compile(&self, prefix: &str) -> Result<Op, Problems> {
        let mut problems = Problems::new();
        let op = self.operation;
        if self.root.as_os_str().is_empty() {
            problems.push(("root".into(), "must name a directory".into()));
        }
        // Keys of other operations are mistakes, not options.
        let given: [(&str, bool, &[Operation]); 8] = [
            ("as", self.read_as.is_some(), &[Operation::Read]),
            ("mime_type", self.mime_type.is_some(), &[Operation::Read]),
            ("content", self.content.is_some(), &[Operation::Write]),
            ("file", self.file.is_some(), &[Operation::Write]),
            ("to", self.to.is_some(), &[Operation::Move]),
            ("glob", self.glob.is_some(), &[Operation::List]),
            (
                "overwrite",
                self.overwrite.is_some(),
                &[Operation::Write, Operation::Move],
            ),
            ("missing", self.missing.is_some(), &[Operation::Delete]),
        ];
        for (key, set, ops) in given {
            if set && !ops.contains(&op) {
                let names: Vec<&str> = ops.iter().map(|o| o.as_str()).collect();
                problems.push((
                    key.into(),
                    format!(
                        "is used by `operation: {}` only, not `{}`",
                        names.join("` or `"),
                        op.as_str()
                    ),
                ));
            }
        }
        if self.mime_type.is_some() && self.read_as.unwrap_or_default() != ReadAs::File {
            problems.push(("mime_type".into(), "is used with `as: file` only".into()));
        }
        if self.max_size.0 == 0 {
            problems.push(("max_size".into(), "must be greater than zero".into()));
        }
        for (key, code) in [
            ("not_found_error_code", &self.not_found_error_code),
            ("exists_error_code", &self.exists_error_code),
            ("too_large_error_code", &self.too_large_error_code),
        ] {
            if let Some(code) = code
                && (code.trim().is_empty() || code.contains(char::is_whitespace))
            {
                problems.push((
                    key.into(),
                    format!(
                        "`{code}` must be a non-empty BPMN error code without spaces (or null)"
                    ),
                ));
            }
        }
        problems.extend(stack::validate(
            Some(("timeout", self.timeout)),
            Some(self.max_concurrency),
            &self.circuit,
            &self.probe,
            None,
        ));

        let mut marked = |key: &str, source: Option<&String>, required: bool| match source {
            Some(source) => MarkedTemplate::compile(&format!("{prefix}{key}"), source)
                .map_err(|e| problems.push((key.into(), e.to_string())))
                .ok(),
            None => {
                if required {
                    problems.push((
                        key.into(),
                        format!("is required by `operation: {}`", op.as_str()),
                    ));
                }
                None
            }
        };
        let path = marked("path", self.path.as_ref(), op != Operation::List);
        let compiled = match op {
            Operation::Read => path.map(|path| Op::Read {
                path,
                read_as: self.read_as.unwrap_or_default(),
                mime_type: self.mime_type.clone(),
            }),
            Operation::Write => {
                let source = match (&self.content, &self.file) {
                    (Some(content), None) => {
                        JsonTemplate::compile(&format!("{prefix}content"), content)
                            .map(Source::Value)
                            .map_err(|e| problems.push(("content".into(), e.to_string())))
                            .ok()
                    }
                    (None, Some(_)) => marked("file", self.file.as_ref(), true).map(Source::File),
                    (Some(_), Some(_)) => {
                        problems.push((
                            "content".into(),
                            "give `content` or `file`, not both".into(),
                        ));
                        None
                    }
                    (None, None) => {
                        problems.push((
                            "content".into(),
                            "`operation: write` needs `content` (a value) or `file` (a File variable)"
                                .into(),
                        ));
                        None
                    }
                };
                path.zip(source).map(|(path, source)| Op::Write {
                    path,
                    source,
                    overwrite: self.overwrite.unwrap_or(false),
                })
            }
            Operation::List => {
                let glob = self.glob.as_ref().and_then(|g| {
                    glob::Pattern::new(g)
                        .map_err(|e| {
                            problems.push(("glob".into(), format!("`{}`: {e}", quote(g))));
                        })
                        .ok()
                });
                // No `path`: the root itself.
                let path = path.or_else(|| {
                    MarkedTemplate::compile(&format!("{prefix}path"), ".")
                        .map_err(|e| problems.push(("path".into(), e.to_string())))
                        .ok()
                });
                path.filter(|_| self.glob.is_none() || glob.is_some())
                    .map(|path| Op::List { path, glob })
            }
            Operation::Move => {
                let to = marked("to", self.to.as_ref(), true);
                path.zip(to).map(|(path, to)| Op::Move {
                    path,
                    to,
                    overwrite: self.overwrite.unwrap_or(false),
                })
            }
            Operation::Delete => path.map(|path| Op::Delete {
                path,
                missing: self.missing.unwrap_or_default(),
            }),
        };
        match compiled {
            Some(op) if problems.is_empty() => Ok(op),
            _ => Err(problems),
        }
    }
}
