//! `procos migrate workers.yaml`: a config of plain external-task workers (the design's "current
//! configuration") turned into an equivalent `pde.yaml` that `procos validate` accepts and runs.
//!
//! ```text
//! workers.yaml ─bounds (config's pre-scan)─► serde: path + line of a bad value (serde_path_to_error),
//!                                            unknown keys → warnings (serde_ignored), with
//!                                            their lines (lines.rs)
//!              ─► checks (topics served twice…) ─► pde.yaml text with comments (emit.rs)
//!              ─► self-check: config::load_str on that text; its problems become warnings
//! ```
//!
//! | workers.yaml                                  | pde.yaml                                      |
//! |-----------------------------------------------|-----------------------------------------------|
//! | `workers.W`                                   | pool `W` (instances 1), endpoint stub `W`      |
//! | `workers.W.max_tasks` (else `camunda.max_tasks`, else 1) | `pde_manager.pools.W.max_concurrent_tasks` |
//! | `workers.W.topics[]` (name or `{name, lock_duration, variables}`) | `topics.T` on pool `W`, endpoint `W` |
//! | `lock_duration` (ms or `60s`) of the topic, else the worker | `topics.T.lock_duration`       |
//! | `camunda.lock_duration`                       | `camunda.lock_duration`                       |
//! | `retries`, `retry_timeout`, `variables` (worker, else `camunda`) | `topics.T.…`                |
//! | `camunda.url` / `base_url` (else a worker's `base_url`) | `camunda.url`                       |
//! | `worker_id`, `async_response_timeout`         | `camunda.worker_id`, `camunda.long_poll`      |
//!
//! Each endpoint is a `noop` stub — it completes a task with its variables unchanged — under a
//! `# TODO:` comment that guesses the kind from the worker's keys (`model` → openai, `script` →
//! python, `url` → http) or name (`ai`, `script`, `http`, `mail`, …). procos serves one engine
//! with one worker id and one long poll, so differing per-worker values are warnings.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

use crate::config::Problem;
use emit::{Writer, duration, list, scalar};
use input::{Millis, Worker, WorkersFile};

mod emit;
mod input;
mod lines;

/// Camunda Run's engine-rest, when the workers' file names no engine.
const DEFAULT_ENGINE_URL: &str = "http://localhost:8080/engine-rest";

/// What `procos migrate` produced.
#[derive(Debug)]
pub struct Migration {
    /// The `pde.yaml` text, comments included.
    pub yaml: String,
    /// What the author should know, each naming the input's path: keys left out (unknown to
    /// migrate), per-worker values procos holds once, problems the output still has.
    pub warnings: Vec<String>,
}

/// Why a workers' file cannot be migrated.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The file could not be read: missing, unreadable, over the size bound, not UTF-8, or
    /// beyond the nesting and alias bounds (the same as `pde.yaml`'s).
    #[error("{0}")]
    Read(String),
    /// The file is not a workers' config: bad YAML, a value of the wrong type, a missing key, a
    /// topic served twice. Printed `file:line:column: path: message`.
    #[error("{}", located(.file, .line, .path, .message))]
    Input {
        /// The file read.
        file: PathBuf,
        /// Line and column of the bad value, when the parser knows them.
        line: Option<(usize, usize)>,
        /// Its YAML path, e.g. `workers.ai_worker.max_tasks`; empty for the document.
        path: String,
        /// What is wrong there.
        message: String,
    },
    /// The output file could not be written (or exists, without `--force`).
    #[error("{0}")]
    Write(String),
}

fn located(file: &Path, line: &Option<(usize, usize)>, path: &str, message: &str) -> String {
    let mut out = file.display().to_string();
    if let Some((line, column)) = line {
        let _ = write!(out, ":{line}:{column}");
    }
    if !path.is_empty() {
        let _ = write!(out, ": {path}");
    }
    let _ = write!(out, ": {message}");
    out
}

/// Reads `path` (bounded as `pde.yaml` is) and migrates it.
pub fn migrate_file(path: &Path) -> Result<Migration, MigrateError> {
    let text = crate::config::read_text(path).map_err(MigrateError::Read)?;
    migrate_str(&text, path)
}

/// Migrates the text of a workers' file; `source` names it in errors and in the output's header.
pub fn migrate_str(text: &str, source: &Path) -> Result<Migration, MigrateError> {
    crate::config::check_bounds(text)
        .map_err(|m| MigrateError::Read(format!("{}: {m}", source.display())))?;
    let (file, mut warnings) = parse(text, source)?;
    check(&file, source)?;
    let yaml = write(&file, source, &mut warnings);
    // The output must be what `procos validate` accepts; whatever it still lacks (a variable
    // the environment does not set, a value out of procos's bounds) is said now.
    let env = |name: &str| std::env::var(name).ok();
    if let Err(e) = crate::config::load_str(&yaml, Path::new("pde.yaml"), &env) {
        warnings.extend(
            e.problems
                .iter()
                .map(|p| format!("the pde.yaml written does not validate yet: {p}")),
        );
    }
    Ok(Migration { yaml, warnings })
}

/// Writes `text` to `path`, refusing to replace an existing file unless `force`.
pub fn write_output(path: &Path, text: &str, force: bool) -> Result<(), MigrateError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let fail = |e: std::io::Error| {
        let hint = if e.kind() == std::io::ErrorKind::AlreadyExists {
            " (pass --force to replace it)"
        } else {
            ""
        };
        MigrateError::Write(format!("cannot write {}: {e}{hint}", path.display()))
    };
    let mut file = options.open(path).map_err(fail)?;
    file.write_all(text.as_bytes()).map_err(fail)
}

/// The file, strictly typed where it is known, and a warning for each key it is not.
fn parse(text: &str, source: &Path) -> Result<(WorkersFile, Vec<String>), MigrateError> {
    let input = |line, path: &str, message: String| MigrateError::Input {
        file: source.to_path_buf(),
        line,
        path: path.to_string(),
        message,
    };
    // The document's shape first, for a message about workers rather than about serde's types.
    match serde_yaml::from_str::<Value>(text) {
        Ok(Value::Mapping(_)) => {}
        Ok(Value::Null) => {
            return Err(input(
                None,
                "",
                "the file is empty: expected `workers:`".into(),
            ));
        }
        Ok(_) => {
            return Err(input(
                None,
                "",
                "expected a mapping with `workers:` (and optionally `camunda:`)".into(),
            ));
        }
        Err(e) => {
            let at = e.location().map(|l| (l.line(), l.column()));
            let message = e.to_string();
            let message = match e.location() {
                Some(l) => message
                    .strip_suffix(&format!(" at line {} column {}", l.line(), l.column()))
                    .unwrap_or(&message)
                    .to_string(),
                None => message,
            };
            return Err(input(at, "", format!("not valid YAML: {message}")));
        }
    }
    let mut ignored = Vec::new();
    let mut note = |path: serde_ignored::Path| ignored.push(render(&path));
    let de = serde_yaml::Deserializer::from_str(text);
    let parsed: Result<WorkersFile, _> =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(de, &mut note));
    match parsed {
        Ok(file) => {
            // serde says which keys it ignored, not where: their lines from a second read.
            let lines = match ignored.is_empty() {
                true => Default::default(),
                false => lines::key_lines(text),
            };
            let warnings = ignored
                .into_iter()
                .map(|p| {
                    let line = lines.get(&p).map(|l| format!(":{l}")).unwrap_or_default();
                    format!(
                        "{}{line}: {p}: not a key procos migrate knows; left out of pde.yaml",
                        source.display()
                    )
                })
                .collect();
            Ok((file, warnings))
        }
        Err(err) => {
            let at = err.inner().location().map(|l| (l.line(), l.column()));
            let Problem { path, message } = crate::config::serde_problem("", &err);
            Err(input(at, &path, message))
        }
    }
}

/// A path as serde_ignored saw it, written as pde.yaml paths are: `workers.w.topics[1].x`.
fn render(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", render(parent)),
        P::Map { parent, key } => {
            let parent = render(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            render(parent)
        }
    }
}

/// What serde cannot see: at least one worker, each with topics, and every topic served by one
/// worker only (procos binds a topic to one pool).
fn check(file: &WorkersFile, source: &Path) -> Result<(), MigrateError> {
    let input = |path: String, message: String| MigrateError::Input {
        file: source.to_path_buf(),
        line: None,
        path,
        message,
    };
    if file.workers.0.is_empty() {
        return Err(input(
            "workers".into(),
            "no workers: expected e.g. `workers: { my_worker: { topics: [my_topic] } }`".into(),
        ));
    }
    let mut seen: Vec<(&str, String)> = Vec::new();
    for (name, worker) in &file.workers.0 {
        if worker.topics.is_empty() {
            return Err(input(
                format!("workers.{name}.topics"),
                "is empty: list the topics this worker served".into(),
            ));
        }
        for (i, topic) in worker.topics.iter().enumerate() {
            let here = format!("workers.{name}.topics[{i}]");
            if let Some((_, first)) = seen.iter().find(|(t, _)| *t == topic.name) {
                return Err(input(
                    here,
                    format!(
                        "topic `{}` is also at `{first}`: in procos a topic is served by one \
                         pool, so keep it under one worker",
                        topic.name
                    ),
                ));
            }
            seen.push((&topic.name, here));
        }
    }
    Ok(())
}

/// A value procos holds once, taken from the first place that sets it, with a warning for each
/// later place that sets another.
struct Once<T> {
    value: Option<(T, String)>,
}

impl<T: PartialEq> Once<T> {
    fn offer(&mut self, value: Option<T>, at: String, what: &str, warnings: &mut Vec<String>) {
        let Some(value) = value else { return };
        match &self.value {
            None => self.value = Some((value, at)),
            Some((first, from)) if *first != value => warnings.push(format!(
                "{at}: differs from `{from}`, which pde.yaml takes: procos {what}"
            )),
            Some(_) => {}
        }
    }
}

/// The pde.yaml text for `file`; per-worker values procos holds once add warnings.
fn write(file: &WorkersFile, source: &Path, warnings: &mut Vec<String>) -> String {
    let camunda = &file.camunda;
    let workers = &file.workers.0;
    let mut url = Once { value: None };
    let mut worker_id = Once { value: None };
    url.offer(camunda.url.clone(), "camunda.url".into(), "", warnings);
    worker_id.offer(
        camunda.worker_id.clone(),
        "camunda.worker_id".into(),
        "",
        warnings,
    );
    for (name, w) in workers {
        let one_engine = "polls one engine (run one procos per engine)";
        url.offer(
            w.base_url.clone(),
            format!("workers.{name}.base_url"),
            one_engine,
            warnings,
        );
        let one_id = "polls with one worker id";
        worker_id.offer(
            w.worker_id.clone(),
            format!("workers.{name}.worker_id"),
            one_id,
            warnings,
        );
    }
    // One fetch loop, one long poll: the client's, else the longest any worker used.
    let long_poll = match camunda.async_response_timeout {
        Some(Millis(d)) => Some((d, "camunda.async_response_timeout".to_string())),
        None => workers
            .iter()
            .filter_map(|(n, w)| {
                w.async_response_timeout
                    .map(|Millis(d)| (d, format!("workers.{n}.async_response_timeout")))
            })
            .max_by_key(|(d, _)| *d),
    };

    let mut w = Writer::default();
    w.comment(
        0,
        &format!(
            "pde.yaml for procos, generated by `procos migrate` from {}.\n\
             \n\
             Each worker became a pool of the same name (instances 1, max_concurrent_tasks = its\n\
             max_tasks), each of its topics is bound to that pool, and the work it did is an\n\
             endpoint of the same name. That endpoint is a stub (`type: noop`): it completes a\n\
             task with the task's variables unchanged. Replace each stub as its TODO says before\n\
             real processes run on this file; `procos validate --config <this file>` checks it.",
            source.display()
        ),
    );
    w.blank();

    w.open(0, "camunda");
    match &url.value {
        Some((u, from)) => w.entry(1, "url", &scalar(u), Some(&format!("from {from}"))),
        None => w.entry(
            1,
            "url",
            &scalar(DEFAULT_ENGINE_URL),
            Some("TODO: workers.yaml names no engine: Camunda Run's default"),
        ),
    }
    if let Some((id, from)) = &worker_id.value {
        w.entry(1, "worker_id", &scalar(id), Some(&format!("from {from}")));
    }
    if let Some(Millis(d)) = camunda.lock_duration {
        let from = format!("from camunda.lock_duration ({} ms)", d.as_millis());
        w.entry(1, "lock_duration", &duration(d), Some(&from));
    }
    if let Some((d, from)) = &long_poll {
        let from = format!("from {from} ({} ms)", d.as_millis());
        w.entry(1, "long_poll", &duration(*d), Some(&from));
    }
    w.blank();

    w.open(0, "pde_manager");
    w.comment(
        1,
        "TODO: a directory for the outcome journal, so that a restart neither loses a finished\n\
         outcome nor runs a side effect twice:\n\
         state_dir: state",
    );
    w.open(1, "pools");
    for (name, worker) in workers {
        let (max, from) = match (worker.max_tasks, camunda.max_tasks) {
            (Some(n), _) => (n.get(), format!("from workers.{name}.max_tasks")),
            (None, Some(n)) => (n.get(), "from camunda.max_tasks".to_string()),
            (None, None) => (
                1,
                format!("TODO: workers.{name} sets no max_tasks: one task at a time"),
            ),
        };
        w.open(2, name);
        w.entry(3, "instances", "1", None);
        w.entry(3, "endpoints", &list(&[name]), None);
        w.entry(3, "max_concurrent_tasks", &max.to_string(), Some(&from));
    }
    w.blank();

    w.open(0, "topics");
    for (name, worker) in workers {
        for topic in &worker.topics {
            w.open(1, &topic.name);
            w.entry(2, "pool", &scalar(name), None);
            w.entry(2, "endpoints", &list(&[name]), None);
            let lock = match (topic.lock_duration, worker.lock_duration) {
                (Some(d), _) => Some((d, "its own lock_duration")),
                (None, Some(d)) => Some((d, "the worker's lock_duration")),
                (None, None) => None,
            };
            if let Some((Millis(d), from)) = lock {
                let from = format!("{from} ({} ms)", d.as_millis());
                w.entry(2, "lock_duration", &duration(d), Some(&from));
            }
            if let Some(retries) = worker.retries.or(camunda.retries) {
                w.entry(2, "retries", &retries.to_string(), None);
            }
            if let Some(Millis(d)) = worker.retry_timeout.or(camunda.retry_timeout) {
                w.entry(2, "retry_timeout", &duration(d), None);
            }
            if let Some(vars) = topic.variables.as_ref().or(worker.variables.as_ref()) {
                w.entry(2, "variables", &list(vars), None);
            }
        }
    }
    w.blank();

    w.open(0, "endpoints");
    for (name, worker) in workers {
        w.comment(1, &todo(name, worker));
        w.open(1, name);
        w.entry(2, "type", "noop", None);
    }
    w.finish()
}

/// What kind of endpoint a worker's work probably needs, and why that guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guess {
    // Each with why it was guessed, as the start of a sentence.
    Openai(&'static str),
    Python(&'static str),
    Http(&'static str),
    Email(&'static str),
    Unknown,
}

/// The guess from the worker's keys first (they say what it used), then its name's words.
fn guess(name: &str, worker: &Worker) -> Guess {
    if worker.model.is_some() {
        return Guess::Openai("Its `model` key");
    }
    if worker.script.is_some() {
        return Guess::Python("Its `script` key");
    }
    if worker.url.is_some() {
        return Guess::Http("Its `url` key");
    }
    let lower = name.to_ascii_lowercase();
    let words: Vec<&str> = lower.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    let has = |list: &[&str]| words.iter().any(|w| list.contains(w));
    if has(&["ai", "llm", "gpt", "openai", "gpt4", "chatgpt", "genai"]) {
        Guess::Openai("Its name")
    } else if has(&["script", "scripts", "python", "py"]) {
        Guess::Python("Its name")
    } else if has(&["http", "https", "rest", "api", "webhook"]) {
        Guess::Http("Its name")
    } else if has(&["mail", "email", "smtp"]) {
        Guess::Email("Its name")
    } else {
        Guess::Unknown
    }
}

/// The `# TODO:` above a worker's stub: what it served, the kind guessed and a start for it.
fn todo(name: &str, worker: &Worker) -> String {
    let topics: Vec<&str> = worker.topics.iter().map(|t| t.name.as_str()).collect();
    let served = format!("TODO: `{name}` did the work of {}.", topics.join(", "));
    let (why, what, section, example) = match guess(name, worker) {
        Guess::Openai(why) => (
            why,
            "a language model",
            "AI endpoints",
            format!(
                "type: openai\napi_key: ${{OPENAI_API_KEY}}\nmodel: {}\n\
                 (and a prompt and an output.schema on its topics)",
                scalar(worker.model.as_deref().unwrap_or("gpt-4o-mini"))
            ),
        ),
        Guess::Python(why) => (
            why,
            "a Python script",
            "Python scripts",
            format!(
                "type: python\nscripts_dir: scripts\nscript: {}\n\
                 mode: warm        # when the script defines handle(task)",
                scalar(worker.script.as_deref().unwrap_or("my_task.py"))
            ),
        ),
        Guess::Http(why) => (
            why,
            "an HTTP call",
            "HTTP endpoint and untrusted variables",
            format!(
                "type: http\nmethod: POST\nurl: {}",
                scalar(
                    &worker
                        .url
                        .as_deref()
                        .map(shown_url)
                        .unwrap_or_else(|| "https://service.example/api".into())
                )
            ),
        ),
        Guess::Email(why) => (
            why,
            "a mail",
            "Email endpoint",
            "type: email\nhost: smtp.example.com\nfrom: \"procos <procos@example.com>\"\n\
             to: \"{{ recipient }}\"\nsubject: \"...\"\ntext: \"...\""
                .to_string(),
        ),
        Guess::Unknown => {
            return format!(
                "{served}\n  Replace `type: noop` with the endpoint kind that does its work: http,\n  \
                 python, openai, ollama, email or sub_pde (README: \"Configuration by example\")."
            );
        }
    };
    let mut text = format!(
        "{served}\n  {why} suggests {what}; replace `type: noop` with e.g.\n  \
         (README: \"{section}\"):"
    );
    for line in example.lines() {
        let _ = write!(text, "\n    {line}");
    }
    text
}

/// A worker's URL for a comment: as written, unless it carries credentials (then masked).
fn shown_url(url: &str) -> String {
    if url.contains('@') {
        crate::config::secret::redact_url(url)
    } else {
        url.to_string()
    }
}

#[cfg(test)]
mod tests;
