//! `type: database`'s config: its keys, their defaults, and `validate` — the URL (parsed, never
//! echoed), each statement's SQL (no templates; placeholders match `params`, see `sql.rs`), the
//! `params` (plain variable names) and the limits, each problem at its YAML path.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

use super::Step;
use super::sql;
use crate::config::Secret;
use crate::endpoints::class;
use crate::endpoints::stack::{
    self, CircuitConfig, Policy, ProbeConfig, RetryBudgetConfig, RetryPolicy,
};

/// `type: database`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:5432/db` (sslmode etc. as query parameters) or
    /// `sqlite://path/to/file.db` (relative to the working dir; `?mode=rwc` creates it;
    /// `sqlite::memory:`). A secret.
    pub url: Secret,
    /// Named statements; a task picks one (see the module docs).
    pub statements: BTreeMap<String, StatementConfig>,
    /// Statements run once, before the first task (e.g. `CREATE TABLE IF NOT EXISTS …`), in
    /// one transaction; retried by the next task when they fail.
    #[serde(default)]
    pub setup: Vec<String>,
    /// Connections in the pool, and tasks in flight through this endpoint.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Bound on getting a connection (connecting included); then the task fails transiently.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Bound on each statement: PostgreSQL's `statement_timeout` (set per transaction); on
    /// SQLite, a progress handler interrupts the statement, and the wait for another writer's
    /// lock (`busy_timeout`) has the same bound.
    #[serde(default = "default_statement_timeout", with = "humantime_serde")]
    pub statement_timeout: Duration,
    /// Bound on one whole task (connection, every step, commit): the stack's timeout.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Most rows `returns: rows` accepts; more fail the task (`response_too_large`).
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// BPMN error raised when a constraint refuses a statement (class `db_constraint`).
    #[serde(default = "default_constraint_error_code")]
    pub constraint_error_code: String,
    /// BPMN error raised when `returns: one` finds no row (class `db_no_row`).
    #[serde(default = "default_no_row_error_code")]
    pub no_row_error_code: String,
    /// Extra attempts after a failure (default 0): only when no connection could be had, so
    /// nothing was sent.
    #[serde(default)]
    pub max_retries: u32,
    /// First backoff delay; doubles per retry.
    #[serde(default = "stack::default_retry_backoff", with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// How many retries the calls may add.
    #[serde(default)]
    pub retry_budget: RetryBudgetConfig,
    /// When to stop calling a failing database for a while.
    #[serde(default)]
    pub circuit: CircuitConfig,
    /// The background probe, `SELECT 1` (on by default for PostgreSQL, off for SQLite).
    #[serde(default)]
    pub probe: ProbeConfig,
}

/// `statements.<name>`: one SQL statement — or several `steps`, run in order in the same
/// transaction — with the variables bound to its parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementConfig {
    /// The SQL, with `$1, $2, …` placeholders (SQLite also `?`). Never a template.
    #[serde(default)]
    pub sql: Option<String>,
    /// Variable names bound to `$1, $2, …` in order.
    #[serde(default)]
    pub params: Vec<String>,
    /// Instead of `sql`/`params`: several statements in one transaction; the last one's result
    /// is returned.
    #[serde(default)]
    pub steps: Vec<StepConfig>,
    /// What the task gets back: `rows` (default), `one` or `count`.
    #[serde(default)]
    pub returns: Returns,
    /// The result's key (a variable, unless the topic's `output` maps it); default `rows`,
    /// `row` or `count` after `returns`.
    #[serde(default)]
    pub variable: Option<String>,
}

/// `steps[]`: one statement of several.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// The SQL.
    pub sql: String,
    /// Variable names bound to `$1, $2, …`.
    #[serde(default)]
    pub params: Vec<String>,
}

/// What a statement returns into the task's result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Returns {
    /// Every row, as a list of objects (column → value).
    #[default]
    Rows,
    /// Exactly one row, as an object; none is the `no_row_error_code` BPMN error.
    One,
    /// The number of rows the (last) statement affected.
    Count,
}

impl Returns {
    pub(super) fn default_variable(self) -> &'static str {
        match self {
            Returns::Rows => "rows",
            Returns::One => "row",
            Returns::Count => "count",
        }
    }
}

fn default_max_connections() -> u32 {
    5
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_statement_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_rows() -> usize {
    1000
}
fn default_constraint_error_code() -> String {
    class::DB_CONSTRAINT.into()
}
fn default_no_row_error_code() -> String {
    class::DB_NO_ROW.into()
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Driver {
    Postgres,
    Sqlite,
}

/// The driver of `url`, or why it has none (never echoing the URL).
pub(super) fn driver(url: &Secret) -> Result<Driver, String> {
    let raw = url.expose().trim();
    if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        Ok(Driver::Postgres)
    } else if raw.starts_with("sqlite:") {
        Ok(Driver::Sqlite)
    } else {
        Err("must be a `postgres://…` or `sqlite://…` URL".into())
    }
}

/// Connection options parsed from the URL (no I/O); the password is registered as a secret.
#[derive(Debug, Clone)]
pub(super) enum Options {
    Postgres(PgConnectOptions),
    Sqlite(SqliteConnectOptions),
}

pub(super) fn options(url: &Secret, statement_timeout: Duration) -> Result<Options, String> {
    let raw = url.expose().trim();
    let driver = driver(url)?;
    if let Ok(parsed) = url::Url::parse(raw)
        && let Some(password) = parsed.password()
    {
        // Registered raw and decoded, so that no message shows either.
        crate::config::secret::register(password);
        if let Ok(decoded) = percent_encoding::percent_decode_str(password).decode_utf8() {
            crate::config::secret::register(&decoded);
        }
    }
    let unusable = |e: sqlx::Error| {
        format!(
            "is not a usable URL: {}",
            crate::config::secret::redact(&e.to_string())
        )
    };
    Ok(match driver {
        Driver::Postgres => Options::Postgres(
            PgConnectOptions::from_str(raw)
                .map_err(unusable)?
                .application_name("procos"),
        ),
        Driver::Sqlite => Options::Sqlite(
            SqliteConnectOptions::from_str(raw)
                .map_err(unusable)?
                .busy_timeout(statement_timeout),
        ),
    })
}

/// Problems found in a config: (path suffix, message).
type Problems = Vec<(String, String)>;

impl DatabaseConfig {
    /// How the stack wraps this endpoint: `max_connections` tasks at once (the others wait for
    /// a permit, not for a pooled connection), `timeout` per task.
    pub fn policy(&self) -> Policy {
        Policy {
            timeout: Some(self.timeout + stack::TIMEOUT_GRACE),
            max_concurrency: Some(self.max_connections.max(1) as usize),
            circuit: self.circuit.clone(),
            retry: RetryPolicy::new(self.max_retries, self.retry_backoff, &self.retry_budget),
            probe: self
                .probe
                .schedule(driver(&self.url) == Ok(Driver::Postgres)),
        }
    }

    /// Every problem of this config as (path suffix, message): the URL, each statement's SQL
    /// (no templates; placeholders match `params`), `params` (plain variable names), limits.
    /// Pure: no connection is made.
    pub fn validate(&self) -> Problems {
        let mut problems = Problems::new();
        let mut problem = |path: String, message: String| problems.push((path, message));
        let sqlite = match options(&self.url, self.statement_timeout) {
            Ok(o) => matches!(o, Options::Sqlite(_)),
            Err(e) => {
                problem("url".into(), e);
                false
            }
        };
        if self.statements.is_empty() {
            problem(
                "statements".into(),
                "needs at least one statement (`statements: { name: { sql: …, params: […] } }`)"
                    .into(),
            );
        }
        for (name, statement) in &self.statements {
            let at = format!("statements.{name}");
            if !sql::plain_name(name) {
                problem(
                    at.clone(),
                    "a statement name must be a plain name (letters, digits, `_`)".into(),
                );
            }
            for (path, message) in statement.validate(sqlite) {
                problem(format!("{at}.{path}"), message);
            }
        }
        for (i, text) in self.setup.iter().enumerate() {
            if let Some(m) = sql::template_syntax(text) {
                problem(format!("setup[{i}]"), template_message(m));
            }
        }
        if self.max_connections == 0 {
            problem("max_connections".into(), "must be at least 1".into());
        }
        if self.max_rows == 0 {
            problem("max_rows".into(), "must be at least 1".into());
        }
        for (key, value) in [
            ("connect_timeout", self.connect_timeout),
            ("statement_timeout", self.statement_timeout),
        ] {
            if value.is_zero() {
                problem(key.into(), "must be greater than zero".into());
            }
        }
        for (key, code) in [
            ("constraint_error_code", &self.constraint_error_code),
            ("no_row_error_code", &self.no_row_error_code),
        ] {
            if code.trim().is_empty() || code.contains(char::is_whitespace) {
                problem(
                    key.into(),
                    format!("`{code}` must be a non-empty BPMN error code without spaces"),
                );
            }
        }
        for (path, message) in stack::validate(
            Some(("timeout", self.timeout)),
            None,
            &self.circuit,
            &self.probe,
            Some(&self.retry_budget),
        ) {
            problem(path, message);
        }
        problems
    }
}

fn template_message(found: &str) -> String {
    format!(
        "holds template syntax `{found}`: SQL is fixed in the config, and task variables reach it \
         only as bound parameters (`$1` with `params: [variable]`)"
    )
}

impl StatementConfig {
    /// The steps, whichever way they were written.
    pub(super) fn steps(&self) -> Vec<Step> {
        match &self.sql {
            Some(sql) => vec![Step {
                sql: sql.clone(),
                params: self.params.clone(),
            }],
            None => self
                .steps
                .iter()
                .map(|s| Step {
                    sql: s.sql.clone(),
                    params: s.params.clone(),
                })
                .collect(),
        }
    }

    fn validate(&self, sqlite: bool) -> Problems {
        let mut problems = Problems::new();
        match (&self.sql, self.steps.is_empty()) {
            (Some(_), false) => problems.push((
                "steps".into(),
                "give either `sql` (with `params`) or `steps`, not both".into(),
            )),
            (None, true) => problems.push(("sql".into(), "is required (or `steps`)".into())),
            (None, false) if !self.params.is_empty() => problems.push((
                "params".into(),
                "belongs to each of `steps` when the statement has steps".into(),
            )),
            _ => {}
        }
        let single = self.sql.is_some();
        for (i, step) in self.steps().iter().enumerate() {
            let (sql_path, params_path) = if single {
                ("sql".to_string(), "params".to_string())
            } else {
                (format!("steps[{i}].sql"), format!("steps[{i}].params"))
            };
            if step.sql.trim().is_empty() {
                problems.push((sql_path.clone(), "must not be empty".into()));
            }
            if let Some(m) = sql::template_syntax(&step.sql) {
                problems.push((sql_path.clone(), template_message(m)));
                continue;
            }
            for (n, param) in step.params.iter().enumerate() {
                if !sql::plain_name(param) {
                    problems.push((
                        format!("{params_path}[{n}]"),
                        "must be a plain variable name (letters, digits, `_`; no templates, \
                         paths or expressions)"
                            .into(),
                    ));
                }
            }
            let used = sql::placeholders(&step.sql, sqlite);
            if let Some(gap) = used.gap() {
                problems.push((
                    sql_path.clone(),
                    format!("uses parameters up to ${} but not ${gap}", used.count()),
                ));
            } else if used.count() != step.params.len() {
                problems.push((
                    params_path,
                    format!(
                        "names {} variable(s) but `sql` takes {} parameter(s)",
                        step.params.len(),
                        used.count()
                    ),
                ));
            }
        }
        if let Some(v) = &self.variable
            && !sql::plain_name(v)
        {
            problems.push((
                "variable".into(),
                "must be a plain variable name (letters, digits, `_`)".into(),
            ));
        }
        problems
    }
}
