//! `files`: one file operation per task, confined to a root directory.
//!
//! ```text
//! (inside the layer stack: a permit of `max_concurrency` is already held)
//! task ─► render `path` (and `to`, `file`, `content`) ─► RelPath: relative, no `..`
//!      ─► Root (cap-std, the root's fd) on the blocking pool:
//!   read   ─► {content: File value | text | JSON, path, name, size}
//!   write  ─► temp file + fsync + rename ─► {path, size}
//!   list   ─► {path, files: [{name, kind, size, modified}], count}
//!   move   ─► {path: to, from}
//!   delete ─► {path, deleted}
//! ```
//!
//! Errors, each naming the key, the rendered path and the variables its template reads:
//!
//! | what | default | class |
//! |---|---|---|
//! | `..`, absolute, a symlink out of the root | permanent (incident) | `path_outside_root` |
//! | empty path, a directory to read, a file to list | permanent | `invalid_path` |
//! | nothing at the path | BPMN error `FILE_NOT_FOUND` (`not_found_error_code`) | `file_not_found` |
//! | something at the path, `overwrite: false` | BPMN error `FILE_EXISTS` (`exists_error_code`) | `file_exists` |
//! | larger than `max_size` (read or write) | BPMN error `FILE_TOO_LARGE` (`too_large_error_code`) | `file_too_large` |
//! | `as: text` not UTF-8 · `as: json` not JSON | permanent | `file_not_text` · `invalid_json` |
//! | the File variable to write is missing | permanent | `file_variable` |
//! | permission denied, read-only file system | permanent | `io` |
//! | the root removed or replaced since the start (also behind "not found") | transient | `io` |
//! | any other I/O error (disk full, EIO) | transient | `io` |
//!
//! Not found, exists and too large are about the data, which the process can model (a boundary
//! event); each `*_error_code: null` makes it a permanent failure instead, still with its class
//! for a topic's `bpmn_errors`. How paths are confined and writes made atomic: `files/root.rs`.
//! How a read file becomes a Camunda File variable: `files/value.rs`.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::template::{self, MarkedTemplate, TemplateContext};
use super::{Endpoint, EndpointError, EndpointReply, EndpointRequest};
use crate::config::secret::quote;
use crate::endpoints::class;

mod config;
mod root;
pub mod value;

pub use config::{FilesConfig, Missing, Operation, ReadAs};
use config::{Op, Source};
use root::{FsError, RelPath, Root};

/// The files endpoint: the root's directory fd and the compiled operation.
#[derive(Debug)]
pub struct FilesEndpoint {
    name: String,
    root: Arc<Root>,
    op: Op,
    max_size: u64,
    not_found_error_code: Option<String>,
    exists_error_code: Option<String>,
    too_large_error_code: Option<String>,
}

impl FilesEndpoint {
    /// Builds it: compiles the templates and opens `root` (which must be a directory).
    pub fn new(name: &str, config: &FilesConfig) -> Result<Self, EndpointError> {
        let misconfigured = |problems: Vec<String>| {
            EndpointError::permanent(format!(
                "files endpoint `{name}` is misconfigured: {}",
                problems.join("; ")
            ))
            .code(class::CONFIG)
        };
        let op = config
            .compile(&format!("endpoints.{name}."))
            .map_err(|problems| {
                misconfigured(problems.iter().map(|(p, m)| format!("{p}: {m}")).collect())
            })?;
        if let Some((key, message)) = config.root_problem() {
            return Err(misconfigured(vec![format!("{key}: {message}")]));
        }
        let root = Root::open(&config.root).map_err(|e| misconfigured(vec![e.to_string()]))?;
        Ok(Self {
            name: name.to_string(),
            root: Arc::new(root),
            op,
            max_size: config.max_size.0,
            not_found_error_code: config.not_found_error_code.clone(),
            exists_error_code: config.exists_error_code.clone(),
            too_large_error_code: config.too_large_error_code.clone(),
        })
    }

    /// Renders a path template and checks it by its text.
    fn path(
        &self,
        key: &str,
        template: &MarkedTemplate,
        ctx: &TemplateContext,
        allow_root: bool,
    ) -> Result<(RelPath, String), EndpointError> {
        let text = template::joined(&template.render(ctx).map_err(template_error)?);
        let path =
            RelPath::parse(&text, allow_root).map_err(|e| self.fail(key, template, &text, e))?;
        Ok((path, text))
    }

    /// Runs a blocking operation on the root.
    async fn blocking<T, F>(&self, work: F) -> Result<T, FsError>
    where
        T: Send + 'static,
        F: FnOnce(&Root) -> Result<T, FsError> + Send + 'static,
    {
        let root = Arc::clone(&self.root);
        // "Not found" under a root that went away is about the root, not the file.
        let run = move || match work(&root) {
            Err(FsError::NotFound) => root.check().and(Err(FsError::NotFound)),
            result => result,
        };
        tokio::task::spawn_blocking(run)
            .await
            .map_err(|e| FsError::Io(std::io::Error::other(e.to_string())))?
    }

    /// An error of `key`'s path as the table in the module docs says.
    fn fail(&self, key: &str, template: &MarkedTemplate, text: &str, e: FsError) -> EndpointError {
        let from = match template.variables() {
            [] => String::new(),
            vars => {
                let vars: Vec<String> = vars.iter().map(|v| format!("`{v}`")).collect();
                format!(" (from {})", vars.join(", "))
            }
        };
        let message = format!(
            "files endpoint `{}`: {key} `{}`{from} {e}",
            self.name,
            quote(text)
        );
        let outcome = |code: &Option<String>, class: &str| match code {
            Some(code) => EndpointError::business(code, message.clone()).code(class),
            None => EndpointError::permanent(message.clone()).code(class),
        };
        match e {
            FsError::Escape(_) => EndpointError::permanent(message).code(class::PATH_OUTSIDE_ROOT),
            FsError::Invalid(_) | FsError::WrongKind(_) => {
                EndpointError::permanent(message).code(class::INVALID_PATH)
            }
            FsError::NotFound => outcome(&self.not_found_error_code, class::FILE_NOT_FOUND),
            FsError::Exists => outcome(&self.exists_error_code, class::FILE_EXISTS),
            FsError::TooLarge { .. } => outcome(&self.too_large_error_code, class::FILE_TOO_LARGE),
            FsError::Io(io) => {
                use rustix::io::Errno;
                let permanent = [
                    Errno::ACCESS,
                    Errno::PERM,
                    Errno::ROFS,
                    Errno::NAMETOOLONG,
                    Errno::ISDIR,
                    Errno::NOTDIR,
                    Errno::INVAL,
                ]
                .iter()
                .any(|n| io.raw_os_error() == Some(n.raw_os_error()));
                if permanent {
                    EndpointError::permanent(message).code(class::IO)
                } else {
                    EndpointError::transient(message).code(class::IO)
                }
            }
        }
    }

    async fn read(
        &self,
        template: &MarkedTemplate,
        read_as: ReadAs,
        mime_type: Option<&str>,
        ctx: &TemplateContext,
    ) -> Result<Value, EndpointError> {
        let (path, text) = self.path("path", template, ctx, false)?;
        let max = self.max_size;
        let target = path.clone();
        let content = self
            .blocking(move |root| root.read(&target, max))
            .await
            .map_err(|e| self.fail("path", template, &text, e))?;
        let name = path.file_name();
        let size = content.len();
        let content = match read_as {
            ReadAs::File => {
                let mime = mime_type.map(str::to_string).unwrap_or_else(|| {
                    mime_guess::from_path(&name)
                        .first_or_octet_stream()
                        .essence_str()
                        .to_string()
                });
                value::file_value(&name, &mime, &content)
            }
            ReadAs::Text => Value::String(String::from_utf8(content).map_err(|e| {
                EndpointError::permanent(format!(
                    "files endpoint `{}`: path `{}` is not UTF-8 text ({e})",
                    self.name,
                    quote(&text)
                ))
                .code(class::FILE_NOT_TEXT)
            })?),
            ReadAs::Json => serde_json::from_slice(&content).map_err(|e| {
                EndpointError::permanent(format!(
                    "files endpoint `{}`: path `{}` is not JSON: {e}",
                    self.name,
                    quote(&text)
                ))
                .code(class::INVALID_JSON)
            })?,
        };
        Ok(json!({"content": content, "path": path.to_string(), "name": name, "size": size}))
    }

    async fn write(
        &self,
        template: &MarkedTemplate,
        source: &Source,
        overwrite: bool,
        request: &EndpointRequest,
        ctx: &TemplateContext,
    ) -> Result<Value, EndpointError> {
        let (path, text) = self.path("path", template, ctx, false)?;
        let content: Vec<u8> = match source {
            Source::Value(content) => match content.render(ctx).map_err(template_error)? {
                Value::String(s) => s.into_bytes(),
                other => {
                    let mut bytes = serde_json::to_vec_pretty(&other).unwrap_or_default();
                    bytes.push(b'\n');
                    bytes
                }
            },
            Source::File(name) => {
                let name = template::joined(&name.render(ctx).map_err(template_error)?);
                self.file_variable(&name, request).await?.to_vec()
            }
        };
        let size = content.len() as u64;
        if size > self.max_size {
            let e = FsError::TooLarge {
                size,
                max: self.max_size,
            };
            return Err(self.fail("path", template, &text, e));
        }
        let target = path.clone();
        self.blocking(move |root| root.write(&target, &content, overwrite))
            .await
            .map_err(|e| self.fail("path", template, &text, e))?;
        Ok(json!({"path": path.to_string(), "size": size}))
    }

    /// The content of the task's File variable `name`.
    async fn file_variable(
        &self,
        name: &str,
        request: &EndpointRequest,
    ) -> Result<bytes::Bytes, EndpointError> {
        let unavailable = |why: &str| {
            EndpointError::permanent(format!(
                "files endpoint `{}`: File variable `{}` {why}",
                self.name,
                quote(name)
            ))
            .code(class::FILE_VARIABLE)
        };
        if !request.variables.contains_key(name) {
            return Err(unavailable("is not a variable of the task"));
        }
        let Some(files) = &request.files else {
            return Err(unavailable("cannot be loaded here"));
        };
        files.load(name).await
    }

    async fn list(
        &self,
        template: &MarkedTemplate,
        glob: Option<&glob::Pattern>,
        ctx: &TemplateContext,
    ) -> Result<Value, EndpointError> {
        let (path, text) = self.path("path", template, ctx, true)?;
        let target = path.clone();
        let glob = glob.cloned();
        let entries = self
            .blocking(move |root| root.list(&target, glob.as_ref()))
            .await
            .map_err(|e| self.fail("path", template, &text, e))?;
        let files: Vec<Value> = entries
            .iter()
            .map(|e| {
                let modified = e.modified.map(|t| {
                    chrono::DateTime::<chrono::Utc>::from(t)
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                });
                json!({"name": e.name, "kind": e.kind, "size": e.size, "modified": modified})
            })
            .collect();
        Ok(json!({"path": path.to_string(), "count": files.len(), "files": files}))
    }

    async fn rename(
        &self,
        from: &MarkedTemplate,
        to: &MarkedTemplate,
        overwrite: bool,
        ctx: &TemplateContext,
    ) -> Result<Value, EndpointError> {
        let (from_path, from_text) = self.path("path", from, ctx, false)?;
        let (to_path, to_text) = self.path("to", to, ctx, false)?;
        let (source, target) = (from_path.clone(), to_path.clone());
        self.blocking(move |root| root.rename(&source, &target, overwrite))
            .await
            .map_err(|e| match e {
                // Only the target can exist; a missing one is the source.
                FsError::Exists => self.fail("to", to, &to_text, e),
                e => self.fail("path", from, &from_text, e),
            })?;
        Ok(json!({"path": to_path.to_string(), "from": from_path.to_string()}))
    }

    async fn delete(
        &self,
        template: &MarkedTemplate,
        missing: Missing,
        ctx: &TemplateContext,
    ) -> Result<Value, EndpointError> {
        let (path, text) = self.path("path", template, ctx, false)?;
        let target = path.clone();
        let deleted = match self.blocking(move |root| root.remove(&target)).await {
            Ok(()) => true,
            Err(FsError::NotFound) if missing == Missing::Ok => false,
            Err(e) => return Err(self.fail("path", template, &text, e)),
        };
        Ok(json!({"path": path.to_string(), "deleted": deleted}))
    }
}

/// A template error: the config or the task's variables are wrong, retrying will not help.
fn template_error(e: template::TemplateError) -> EndpointError {
    EndpointError::permanent(e.to_string()).code(class::TEMPLATE)
}

#[async_trait]
impl Endpoint for FilesEndpoint {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "files"
    }

    fn side_effects(&self) -> bool {
        !matches!(self.op, Op::Read { .. } | Op::List { .. })
    }

    /// The root is still the directory opened at the start, and procos can list it (a mount
    /// that went away, a removed root fail here).
    async fn probe(&self) -> Result<(), EndpointError> {
        let root = RelPath::parse(".", true).map_err(|e| {
            EndpointError::permanent(format!("files endpoint `{}`: {e}", self.name))
        })?;
        self.blocking(move |r| r.check().and_then(|()| r.list(&root, None).map(drop)))
            .await
            .map_err(|e| {
                EndpointError::transient(format!(
                    "files endpoint `{}`: the root cannot be listed: {e}",
                    self.name
                ))
                .code(class::IO)
            })
    }

    /// One operation. A cancelled task stops waiting; an operation already on the blocking pool
    /// finishes (a write is atomic: the file is whole or absent).
    async fn call(&self, request: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
        let ctx = TemplateContext::new(request);
        let work = async {
            match &self.op {
                Op::Read {
                    path,
                    read_as,
                    mime_type,
                } => self.read(path, *read_as, mime_type.as_deref(), &ctx).await,
                Op::Write {
                    path,
                    source,
                    overwrite,
                } => self.write(path, source, *overwrite, request, &ctx).await,
                Op::List { path, glob } => self.list(path, glob.as_ref(), &ctx).await,
                Op::Move {
                    path,
                    to,
                    overwrite,
                } => self.rename(path, to, *overwrite, &ctx).await,
                Op::Delete { path, missing } => self.delete(path, *missing, &ctx).await,
            }
        };
        tokio::select! {
            biased;
            _ = request.cancel.cancelled() => Err(EndpointError::cancelled()),
            result = work => result.map(EndpointReply::new),
        }
    }
}

#[cfg(test)]
mod tests;
