//! Reading `pde.yaml`: bounds → YAML → interpolation → strict serde, section by section →
//! validation.
//!
//! A hostile file is refused before it costs anything: at most [`MAX_CONFIG_BYTES`] are read, and
//! a pre-scan of the YAML event stream bounds nesting and alias expansion (`prescan`) before
//! serde_yaml builds a tree.
//!
//! Each top-level section, each pool, each topic and each endpoint is deserialized on its own
//! (with `serde_path_to_error`), so one typo never hides another: every entry that fails adds one
//! [`Problem`] with its full path, and the rest are still read and validated.
//!
//! An endpoint written in the design's vocabulary (`type: ai_service`, `config:` nesting, …) is
//! rewritten into procos's own before it is parsed (`aliases`); each use is a note in [`Loaded`].
//!
//! Entries are deserialized from YAML *text* (the interpolated tree written back out), not from
//! a `serde_yaml::Value`: the text deserializer reads a plain scalar such as `2024` as a string
//! where a string is expected, as YAML users expect, while `Value` would reject it. Its error
//! messages carry serde_yaml's own path and a line number of that re-written text; both are
//! stripped and replaced by the path into the real file.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use serde_yaml::{Mapping, Value};

use super::error::{ConfigError, Problem, key_path, name_list};
use super::file::{
    CamundaConfig, DeployConfig, FileConfig, ManagerConfig, PoolConfig, TopicConfig,
};
use super::interpolate::{Sensitive, interpolate, key_text};
use super::telemetry::TelemetryConfig;
use super::validate::{Parts, validate_parts};
use crate::endpoints::EndpointConfig;

/// Largest config file read: far above any real `pde.yaml`, small enough to parse at once.
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// Top-level keys of `pde.yaml`, in the order the docs present them.
// `telemetry` and `admin` (issue 12): optional, defaults when absent.
const SECTIONS: [&str; 7] = [
    "camunda",
    "deploy",
    "pde_manager",
    "topics",
    "endpoints",
    "telemetry",
    "admin",
];

/// The `type:` values of [`EndpointConfig`]; [`endpoint`](Parser::endpoint) maps each to its
/// variant. A test checks this list against serde's own, so a new kind cannot be forgotten here.
const ENDPOINT_KINDS: &[&str] = &[
    "http", "python", "noop", "openai", "ollama", "email", "sub_pde", "procos", "files", "amqp",
    "database",
];

mod aliases;
mod prescan;

/// A config as read, with notes on how it was read: what [`load_noted`] and [`load_str_noted`]
/// return, for `procos validate` (which prints the notes) and the daemon's start (which logs them).
#[derive(Debug)]
pub struct Loaded {
    /// The validated config, or every problem found.
    pub config: Result<FileConfig, ConfigError>,
    /// One note per use of the design's vocabulary, at its path (e.g. `endpoints.gpt4.type:
    /// `type: ai_service` is read as `type: openai``), so the author learns procos's spelling.
    /// Given whether or not the file is valid.
    pub notes: Vec<Problem>,
}

/// The bounds every YAML input is held to before a tree is built: at most
/// [`MAX_CONFIG_BYTES`], then nesting depth and alias expansion (`prescan`). Shared with
/// `procos migrate`, which reads a file of the same kind.
pub(crate) fn check_bounds(yaml: &str) -> Result<(), String> {
    if yaml.len() > MAX_CONFIG_BYTES {
        return Err(too_large(Some(yaml.len())));
    }
    prescan::check(yaml)
}

/// The text of `path`, reading at most [`MAX_CONFIG_BYTES`] (one more tells it is too large);
/// the error is one line naming the file.
pub(crate) fn read_text(path: &Path) -> Result<String, String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| {
            // One byte past the bound is enough to tell that the file is too large.
            file.take(MAX_CONFIG_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(format!(
            "cannot read {}: {}",
            path.display(),
            too_large(None)
        ));
    }
    String::from_utf8(bytes).map_err(|e| format!("cannot read {}: not UTF-8 ({e})", path.display()))
}

/// Reads the file (at most [`MAX_CONFIG_BYTES`]), interpolates `${VAR}` from the process
/// environment, parses strictly and validates. Blocking file I/O: call it before the runtime
/// starts or from `spawn_blocking`.
pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
    load_noted(path).config
}

/// [`load`], with the notes on the design's vocabulary the file uses.
pub fn load_noted(path: &Path) -> Loaded {
    match read_text(path) {
        Ok(text) => load_str_noted(&text, path, &|name| std::env::var(name).ok()),
        Err(message) => Loaded {
            config: Err(ConfigError {
                file: path.to_path_buf(),
                problems: vec![Problem::new("", message)],
            }),
            notes: Vec::new(),
        },
    }
}

/// The problem with a file over [`MAX_CONFIG_BYTES`]; `len` when known.
fn too_large(len: Option<usize>) -> String {
    let size = len.map(|n| format!(" ({n} bytes)")).unwrap_or_default();
    format!("the file is larger than 1 MiB{size}, the most a config may be")
}

/// Same as [`load`] from a string, with an explicit environment lookup (for tests and for
/// `procos validate`). `source` only names the file in the error.
pub fn load_str(
    yaml: &str,
    source: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<FileConfig, ConfigError> {
    load_str_noted(yaml, source, env).config
}

/// [`load_str`], with the notes on the design's vocabulary the text uses.
pub fn load_str_noted(yaml: &str, source: &Path, env: &dyn Fn(&str) -> Option<String>) -> Loaded {
    let mut notes = Vec::new();
    let config = parse(yaml, source, env, &mut notes);
    Loaded { config, notes }
}

/// The body of [`load_str_noted`]: the config or its problems; notes added to `notes`.
fn parse(
    yaml: &str,
    source: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    notes: &mut Vec<Problem>,
) -> Result<FileConfig, ConfigError> {
    let fail = |problems: Vec<Problem>| ConfigError {
        file: source.to_path_buf(),
        problems,
    };
    // Bounds first, before serde_yaml builds (and alias-expands) a tree.
    check_bounds(yaml).map_err(|message| fail(vec![Problem::new("", message)]))?;
    let mut root: Value = serde_yaml::from_str(yaml)
        .map_err(|e| fail(vec![Problem::new("", format!("not valid YAML: {e}"))]))?;
    root.apply_merge().map_err(|e| {
        fail(vec![Problem::new(
            "",
            format!("invalid YAML merge (`<<`): {e}"),
        )])
    })?;
    let not_a_mapping = || {
        fail(vec![Problem::new(
            "",
            format!(
                "expected a mapping with the sections {}",
                name_list(SECTIONS)
            ),
        )])
    };
    if !root.is_mapping() {
        return Err(not_a_mapping());
    }
    let found = interpolate(&mut root, env);
    let mut parser = Parser {
        problems: found.problems,
        failed: found.failed,
        aliases: aliases::Aliases::default(),
    };
    // Interpolation rewrites scalars only, so the root is still a mapping.
    let Value::Mapping(top) = &root else {
        return Err(not_a_mapping());
    };
    let (config, semantic) = match parser.file(top) {
        Ok(config) => {
            let semantic = super::validate(&config);
            (Some(config), semantic)
        }
        Err(partial) => (None, partial),
    };
    let mut problems = std::mem::take(&mut parser.problems);
    problems.extend(semantic.into_iter().filter(|p| !parser.is_noise(&p.path)));
    // A key an alias moved (out of `config:`, …) is reported where the file has it.
    for p in &mut problems {
        p.path = parser.aliases.in_file(&p.path);
    }
    // A `type:` or a number may have come from the environment: scrubbed like problems.
    notes.extend(
        std::mem::take(&mut parser.aliases.notes)
            .into_iter()
            .map(|p| Problem::new(p.path, found.sensitive.scrub(&p.message))),
    );
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => {
            if problems.is_empty() {
                // Not expected: a section fails only after recording why. Never return an
                // error without a problem in it.
                problems.push(Problem::new("", "the configuration could not be read"));
            }
            Err(fail(scrubbed(problems, &found.sensitive)))
        }
    }
}

fn scrubbed(problems: Vec<Problem>, sensitive: &Sensitive) -> Vec<Problem> {
    problems
        .into_iter()
        .map(|p| Problem::new(p.path, sensitive.scrub(&p.message)))
        .collect()
}

/// Collects problems while reading the sections.
struct Parser {
    problems: Vec<Problem>,
    /// Paths where interpolation already failed; serde errors there or below are not repeated.
    failed: Vec<String>,
    /// The design's vocabulary read so far: notes, and where moved keys sit in the file.
    aliases: aliases::Aliases,
}

/// The entries of a named map that parsed, and the names of all of them.
struct Entries<T> {
    parsed: BTreeMap<String, T>,
    names: BTreeSet<String>,
}

impl Parser {
    /// Reads every section. `Ok` only if all of them parsed; otherwise the problems found by
    /// validating whatever did parse (parse problems themselves are in `self.problems`).
    fn file(&mut self, top: &Mapping) -> Result<FileConfig, Vec<Problem>> {
        for key in top.keys() {
            let name = key_text(key);
            if !SECTIONS.contains(&name.as_str()) {
                self.problems.push(Problem::new(
                    name.clone(),
                    format!(
                        "unknown field `{name}`, expected one of {}",
                        name_list(SECTIONS)
                    ),
                ));
            }
        }
        let section = |name: &str| top.get(name).filter(|v| !v.is_null());

        let camunda = match section("camunda") {
            Some(v) => self.de::<CamundaConfig>(v, "camunda"),
            // `camunda:` with nothing under it: every setting has a default.
            None if top.contains_key("camunda") => {
                self.de::<CamundaConfig>(&Value::Mapping(Mapping::new()), "camunda")
            }
            None => self.missing(top, "camunda"),
        };
        let deploy = match section("deploy") {
            Some(v) => self.de::<DeployConfig>(v, "deploy"),
            None => Some(Default::default()),
        };
        let manager = match section("pde_manager") {
            Some(v) => self.manager(v),
            None => self.missing(top, "pde_manager"),
        };
        let topics = match section("topics") {
            Some(v) => self.entries(v, "topics", |p, v, path| p.de::<TopicConfig>(v, path)),
            None => self.missing(top, "topics"),
        };
        let endpoints = match section("endpoints") {
            Some(v) => self.entries(v, "endpoints", Parser::endpoint),
            None => self.missing(top, "endpoints"),
        };
        // Traces (issue 12): optional section.
        let telemetry = match section("telemetry") {
            Some(v) => self.de::<TelemetryConfig>(v, "telemetry"),
            None => Some(TelemetryConfig::default()),
        };
        // `admin:` (issue 12's admin server): optional, every key has a default.
        let admin = match section("admin") {
            Some(v) => self.de::<super::admin::AdminConfig>(v, "admin"),
            None => Some(Default::default()),
        };

        if let (
            Some(camunda),
            Some(deploy),
            Some((manager, true)),
            Some(t),
            Some(e),
            Some(tel),
            Some(admin),
        ) = (
            &camunda, &deploy, &manager, &topics, &endpoints, &telemetry, &admin,
        ) && t.parsed.len() == t.names.len()
            && e.parsed.len() == e.names.len()
        {
            return Ok(FileConfig {
                camunda: camunda.clone(),
                deploy: deploy.clone(),
                pde_manager: manager.clone(),
                topics: t.parsed.clone(),
                endpoints: e.parsed.clone(),
                telemetry: tel.clone(),
                admin: admin.clone(),
            });
        }

        let no_pools = BTreeMap::new();
        let no_topics = BTreeMap::new();
        let no_endpoints = BTreeMap::new();
        let parts = Parts {
            camunda: camunda.as_ref(),
            deploy: deploy.as_ref(),
            manager: manager.as_ref().map(|(m, _)| m),
            pools: manager.as_ref().map_or(&no_pools, |(m, _)| &m.pools),
            pool_names: names_under(top, &["pde_manager", "pools"]),
            topics: topics.as_ref().map_or(&no_topics, |t| &t.parsed),
            topic_names: topics.as_ref().map(|t| t.names.clone()),
            endpoints: endpoints.as_ref().map_or(&no_endpoints, |e| &e.parsed),
            endpoint_names: endpoints.as_ref().map(|e| e.names.clone()),
            admin: admin.as_ref(),
        };
        Err(validate_parts(&parts))
    }

    /// A problem at or below a scalar whose interpolation failed repeats that failure.
    fn is_noise(&self, path: &str) -> bool {
        self.failed.iter().any(|f| {
            path == f
                || path
                    .strip_prefix(f.as_str())
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        })
    }

    /// A required section that is absent, or present but empty (`camunda:` with nothing under).
    fn missing<T>(&mut self, top: &Mapping, section: &str) -> Option<T> {
        let message = if top.contains_key(section) {
            "is empty, but this section is required (`{}` is an empty mapping)"
        } else {
            "missing: this section is required"
        };
        self.problems.push(Problem::new(section, message));
        None
    }

    /// `pde_manager`: its own keys, then each pool on its own. The bool says all pools parsed.
    fn manager(&mut self, value: &Value) -> Option<(ManagerConfig, bool)> {
        let mut shell = value.clone();
        let mut pools = None;
        if let Some(map) = shell.as_mapping_mut()
            && let Some(p) = map.get_mut("pools")
            && p.is_mapping()
        {
            pools = Some(std::mem::replace(p, Value::Mapping(Mapping::new())));
        }
        let mut manager: ManagerConfig = self.de(&shell, "pde_manager")?;
        let mut all = true;
        if let Some(pools) = pools {
            let entries = self.entries(&pools, "pde_manager.pools", |p, v, path| {
                p.de::<PoolConfig>(v, path)
            })?;
            all = entries.parsed.len() == entries.names.len();
            manager.pools = entries.parsed;
        }
        Some((manager, all))
    }

    /// A map of named entries, each deserialized on its own by `one`.
    fn entries<T>(
        &mut self,
        value: &Value,
        path: &str,
        one: impl Fn(&mut Self, &Value, &str) -> Option<T>,
    ) -> Option<Entries<T>> {
        let Some(map) = value.as_mapping() else {
            self.problems.push(Problem::new(
                path,
                "expected a mapping of names to entries".to_string(),
            ));
            return None;
        };
        let mut entries = Entries {
            parsed: BTreeMap::new(),
            names: BTreeSet::new(),
        };
        for (key, item) in map {
            let name = key_text(key);
            let item_path = key_path(path, &name);
            if let Some(parsed) = one(self, item, &item_path) {
                entries.parsed.insert(name.clone(), parsed);
            }
            entries.names.insert(name);
        }
        Some(entries)
    }

    /// One endpoint entry: `type` picks the config struct, the rest is that struct, strictly.
    fn endpoint(&mut self, value: &Value, path: &str) -> Option<EndpointConfig> {
        let kinds = name_list(ENDPOINT_KINDS.iter().copied());
        let Some(map) = value.as_mapping() else {
            self.problems.push(Problem::new(
                path,
                format!("expected a mapping with a `type` key (one of {kinds})"),
            ));
            return None;
        };
        // The design's vocabulary (`type: ai_service`, `config:` nesting, …) → procos's.
        let mut body = self
            .aliases
            .endpoint(map, path, &mut self.failed, &mut self.problems)?;
        let kind = match body.remove("type") {
            Some(Value::String(kind)) => kind,
            Some(_) => {
                let message = format!("`type` must be one of {kinds}");
                self.problems
                    .push(Problem::new(key_path(path, "type"), message));
                return None;
            }
            None => {
                let message = format!("missing field `type`, expected one of {kinds}");
                self.problems.push(Problem::new(path, message));
                return None;
            }
        };
        let body = Value::Mapping(body);
        // One arm per `ENDPOINT_KINDS` entry. Adding an `EndpointConfig` variant fails the
        // `endpoint_kinds_match_the_enum` test until it is added here and there.
        match kind.as_str() {
            "http" => self.de(&body, path).map(EndpointConfig::Http),
            "python" => self.de(&body, path).map(EndpointConfig::Python),
            "noop" => self.de(&body, path).map(EndpointConfig::Noop),
            "openai" => self.de(&body, path).map(EndpointConfig::Openai),
            "ollama" => self.de(&body, path).map(EndpointConfig::Ollama),
            "email" => self.de(&body, path).map(EndpointConfig::Email),
            "sub_pde" => self.de(&body, path).map(EndpointConfig::SubPde),
            "procos" => self.de(&body, path).map(EndpointConfig::Procos),
            "files" => self.de(&body, path).map(EndpointConfig::Files),
            "amqp" => self.de(&body, path).map(EndpointConfig::Amqp),
            "database" => self.de(&body, path).map(EndpointConfig::Database),
            other => {
                self.problems.push(Problem::new(
                    key_path(path, "type"),
                    format!("unknown endpoint type `{other}`, expected one of {kinds}"),
                ));
                None
            }
        }
    }

    /// Deserializes `value` (found at `path`) strictly into `T`, recording a problem on failure.
    fn de<T: DeserializeOwned>(&mut self, value: &Value, path: &str) -> Option<T> {
        let text = match serde_yaml::to_string(value) {
            Ok(text) => text,
            Err(e) => {
                self.problems
                    .push(Problem::new(path, format!("cannot be read: {e}")));
                return None;
            }
        };
        let de = serde_yaml::Deserializer::from_str(&text);
        match serde_path_to_error::deserialize::<_, T>(de) {
            Ok(v) => Some(v),
            Err(err) => {
                let problem = serde_problem(path, &err);
                if !self.is_noise(&problem.path) {
                    self.problems.push(problem);
                }
                None
            }
        }
    }
}

/// The keys of the mapping at `path` under `top`, if it is one.
fn names_under(top: &Mapping, path: &[&str]) -> Option<BTreeSet<String>> {
    let mut value = top.get(path.first()?)?;
    for key in &path[1..] {
        value = value.get(key)?;
    }
    Some(value.as_mapping()?.keys().map(key_text).collect())
}

/// A serde error as a [`Problem`]: full path from `serde_path_to_error`, serde_yaml's own path
/// prefix and line suffix removed (they describe the re-written text, not the file).
pub(crate) fn serde_problem(
    base: &str,
    err: &serde_path_to_error::Error<serde_yaml::Error>,
) -> Problem {
    let segments: Vec<&Segment> = err
        .path()
        .iter()
        .filter(|s| !matches!(s, Segment::Enum { .. }))
        .collect();
    let mut message = err.inner().to_string();
    if let Some(loc) = err.inner().location() {
        let suffix = format!(" at line {} column {}", loc.line(), loc.column());
        if let Some(m) = message.strip_suffix(&suffix) {
            message = m.to_string();
        }
    }
    // serde_yaml prefixes `path: ` for the value where the error was raised: the error's
    // path or one of its ancestors.
    for len in (1..=segments.len()).rev() {
        let prefix = format!("{}: ", render("", &segments[..len]));
        if let Some(m) = message.strip_prefix(&prefix) {
            message = m.to_string();
            break;
        }
    }
    let mut path = render(base, &segments);
    // An unknown field is most useful pointed at: `topics.t.retires`, not `topics.t`.
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some(field) = rest.split('`').next()
        && !path.ends_with(&format!(".{field}"))
        && path != field
    {
        path = key_path(&path, field);
    }
    if message.ends_with("expected a duration") {
        message.push_str(" such as `30s`, `500ms` or `2m`");
    }
    Problem::new(path, message)
}

/// `base` followed by the segments: `.key` for map keys, `[i]` for sequence indices.
fn render(base: &str, segments: &[&Segment]) -> String {
    let mut path = base.to_string();
    for segment in segments {
        match segment {
            Segment::Map { key } => path = key_path(&path, key),
            Segment::Seq { index } => path = format!("{path}[{index}]"),
            Segment::Unknown => path = key_path(&path, "?"),
            Segment::Enum { .. } => {}
        }
    }
    path
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
