//! `database`: one configured SQL statement per task against PostgreSQL or SQLite (sqlx), with
//! the task's variables BOUND as parameters — SQL never comes from variables.
//!
//! ```text
//! (inside the layer stack: a permit of `max_concurrency` = `max_connections` is already held)
//! task ─► pick the statement: activity property `pde.statement`, else the one named like the
//!         topic, else the endpoint's only one
//!      ─► first task only: `setup` statements (e.g. CREATE TABLE IF NOT EXISTS), one transaction
//!      ─► BEGIN; (PostgreSQL: SET LOCAL statement_timeout)
//!         each step: prepare, bind `params` (variables by name, typed), run
//!         COMMIT only when every step succeeded — any failure rolls the whole task back
//!      ─► `returns`: rows ─► {"rows": [{col: value, …}, …]}
//!                   one  ─► {"row": {…}}   (zero rows: BPMN error `no_row_error_code`, class
//!                                           `db_no_row`; two or more: permanent `db_statement`)
//!                   count ─► {"count": rows affected by the last step}
//!         under `variable` (default `rows`/`row`/`count`); the topic's `output` maps it on.
//! ```
//!
//! Failures and what they mean for the task: `database/errors.rs` (constraint → BPMN error
//! `constraint_error_code`, class `db_constraint`; lost connection → transient; syntax error →
//! incident naming the statement). Types of variables and columns: `database/pg.rs`,
//! `database/sqlite.rs`, `database/value.rs`. What `validate` checks in SQL text:
//! `database/sql.rs`.
//!
//! The URL is a [`Secret`]: its password is registered for redaction and messages show only
//! `postgres://***@host:port/db`. The pool connects lazily (procos starts while the database is
//! down); the probe (`SELECT 1`) and the breaker are the common stack's.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use super::stack::{self, CircuitConfig, Policy, ProbeConfig, RetryBudgetConfig, RetryPolicy};
use super::{Endpoint, EndpointError, EndpointReply, EndpointRequest, class};
use crate::config::Secret;

mod errors;
mod pg;
mod sql;
mod sqlite;
mod value;

use errors::{At, Codes, Failure};

/// The activity property that picks a statement by name.
pub const STATEMENT_PROPERTY: &str = "pde.statement";

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
    fn default_variable(self) -> &'static str {
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
enum Driver {
    Postgres,
    Sqlite,
}

/// The driver of `url`, or why it has none (never echoing the URL).
fn driver(url: &Secret) -> Result<Driver, String> {
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
enum Options {
    Postgres(PgConnectOptions),
    Sqlite(SqliteConnectOptions),
}

fn options(url: &Secret, statement_timeout: Duration) -> Result<Options, String> {
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
    fn steps(&self) -> Vec<Step> {
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

/// One statement to run, with the variables for its parameters.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    sql: String,
    params: Vec<String>,
}

/// A statement ready to run.
#[derive(Debug)]
struct Statement {
    steps: Vec<Step>,
    returns: Returns,
    variable: String,
}

/// One task's work for a driver.
pub(crate) struct Plan<'a> {
    steps: &'a [Step],
    variables: &'a Map<String, Value>,
    /// The last step's rows are wanted (`rows`, `one`), not its count.
    rows_wanted: bool,
    max_rows: usize,
    statement_timeout: Duration,
}

impl Plan<'_> {
    /// The step's index for messages, when there is more than one.
    fn step_label(&self, i: usize) -> Option<usize> {
        (self.steps.len() > 1).then_some(i)
    }
}

/// What the last step gave.
#[derive(Debug)]
pub(crate) enum Output {
    Rows(Vec<Map<String, Value>>),
    Count(u64),
}

/// The value of variable `name`; a variable the task does not have is an error (set it to
/// null to bind `NULL`).
fn lookup<'a>(variables: &'a Map<String, Value>, name: &str) -> Result<&'a Value, String> {
    variables
        .get(name)
        .ok_or_else(|| "the task has no such variable (set it, to null for NULL)".to_string())
}

/// The pool, built at first use (inside the runtime: sqlx's pool starts background tasks).
enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// The database endpoint: its statements and a lazily connecting pool.
pub struct DatabaseEndpoint {
    name: String,
    /// `postgres://***@host:port/db`, for messages.
    location: String,
    options: Options,
    max_connections: u32,
    connect_timeout: Duration,
    statement_timeout: Duration,
    max_rows: usize,
    statements: BTreeMap<String, Statement>,
    setup: Vec<Step>,
    setup_done: tokio::sync::OnceCell<()>,
    pool: OnceLock<Pool>,
    codes: Codes,
    no_row_error_code: String,
}

impl fmt::Debug for DatabaseEndpoint {
    /// Leaves out the connection options, which hold the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseEndpoint")
            .field("name", &self.name)
            .field("location", &self.location)
            .field("statements", &self.statements.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl DatabaseEndpoint {
    /// Builds it from its config (no connection yet).
    pub fn new(name: &str, config: &DatabaseConfig) -> Result<Self, EndpointError> {
        let problems = config.validate();
        if !problems.is_empty() {
            let list: Vec<String> = problems.iter().map(|(p, m)| format!("{p}: {m}")).collect();
            return Err(EndpointError::permanent(format!(
                "database endpoint `{name}` is misconfigured: {}",
                list.join("; ")
            ))
            .code(class::CONFIG));
        }
        let options = options(&config.url, config.statement_timeout)
            .map_err(|e| EndpointError::permanent(format!("endpoints.{name}.url: {e}")))?;
        let location = match driver(&config.url) {
            Ok(Driver::Sqlite) => crate::config::secret::redact(config.url.expose().trim()),
            _ => crate::config::secret::redact_url(config.url.expose()),
        };
        let statements = config
            .statements
            .iter()
            .map(|(n, s)| {
                let statement = Statement {
                    steps: s.steps(),
                    returns: s.returns,
                    variable: s
                        .variable
                        .clone()
                        .unwrap_or_else(|| s.returns.default_variable().to_string()),
                };
                (n.clone(), statement)
            })
            .collect();
        Ok(Self {
            name: name.to_string(),
            location,
            options,
            max_connections: config.max_connections,
            connect_timeout: config.connect_timeout,
            statement_timeout: config.statement_timeout,
            max_rows: config.max_rows,
            statements,
            setup: config
                .setup
                .iter()
                .map(|sql| Step {
                    sql: sql.clone(),
                    params: Vec::new(),
                })
                .collect(),
            setup_done: tokio::sync::OnceCell::new(),
            pool: OnceLock::new(),
            codes: Codes {
                constraint: config.constraint_error_code.clone(),
            },
            no_row_error_code: config.no_row_error_code.clone(),
        })
    }

    /// The pool; built on first use, connecting lazily.
    fn pool(&self) -> &Pool {
        self.pool.get_or_init(|| match &self.options {
            Options::Postgres(o) => Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(self.max_connections)
                    .acquire_timeout(self.connect_timeout)
                    .connect_lazy_with(o.clone()),
            ),
            Options::Sqlite(o) => Pool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(self.max_connections)
                    .acquire_timeout(self.connect_timeout)
                    .connect_lazy_with(o.clone()),
            ),
        })
    }

    /// Which statement serves `request`: the `pde.statement` property, else the statement
    /// named like the topic, else the only one.
    fn statement_for(
        &self,
        request: &EndpointRequest,
    ) -> Result<(&str, &Statement), EndpointError> {
        let wanted = request
            .properties
            .get(STATEMENT_PROPERTY)
            .map(|s| s.trim())
            .or_else(|| {
                self.statements
                    .contains_key(&request.topic)
                    .then_some(request.topic.as_str())
            });
        let found = match wanted {
            Some(name) => self.statements.get_key_value(name),
            None if self.statements.len() == 1 => self.statements.iter().next(),
            None => None,
        };
        found.map(|(n, s)| (n.as_str(), s)).ok_or_else(|| {
            let known: Vec<&str> = self.statements.keys().map(String::as_str).collect();
            let asked = match wanted {
                Some(name) => format!("has no statement `{name}`"),
                None => format!(
                    "has no statement named like topic `{}` and no `{STATEMENT_PROPERTY}` \
                     property picks one",
                    request.topic
                ),
            };
            EndpointError::permanent(format!(
                "database `{}` {asked}; its statements: {}",
                self.name,
                known.join(", ")
            ))
            .code(class::CONFIG)
        })
    }

    /// Runs `steps` in one transaction.
    async fn run(&self, plan: &Plan<'_>) -> Result<Output, Failure> {
        match self.pool() {
            Pool::Postgres(pool) => pg::run(pool, plan).await,
            Pool::Sqlite(pool) => sqlite::run(pool, plan).await,
        }
    }

    /// The `setup` statements, once; a failure is the task's, and the next task tries again.
    async fn ensure_setup(&self) -> Result<(), EndpointError> {
        if self.setup.is_empty() {
            return Ok(());
        }
        let no_variables = Map::new();
        self.setup_done
            .get_or_try_init(|| async {
                let plan = Plan {
                    steps: &self.setup,
                    variables: &no_variables,
                    rows_wanted: false,
                    max_rows: self.max_rows,
                    statement_timeout: self.statement_timeout,
                };
                self.run(&plan)
                    .await
                    .map(|_| ())
                    .map_err(|f| self.error(f, "setup"))
            })
            .await
            .map(|_| ())
    }

    /// `failure` of `statement` as the task's error.
    fn error(&self, failure: Failure, statement: &str) -> EndpointError {
        let at = At {
            endpoint: &self.name,
            statement,
            step: None,
        };
        errors::endpoint_error(failure, at, &self.location, &self.codes)
    }

    /// The last step's output shaped by `returns`.
    fn shape(
        &self,
        name: &str,
        statement: &Statement,
        output: Output,
    ) -> Result<Value, EndpointError> {
        let value = match (statement.returns, output) {
            (Returns::Count, Output::Count(n)) => json!(n),
            (Returns::Count, Output::Rows(rows)) => json!(rows.len()),
            (Returns::Rows, Output::Rows(rows)) => json!(rows),
            (Returns::Rows, Output::Count(_)) => json!([]),
            (Returns::One, Output::Rows(mut rows)) if rows.len() == 1 => {
                Value::Object(rows.remove(0))
            }
            (Returns::One, Output::Rows(rows)) if rows.len() > 1 => {
                return Err(EndpointError::permanent(format!(
                    "database `{}` statement `{name}`: returned {} rows; `returns: one` expects \
                     exactly one (add a LIMIT or filter by a unique key)",
                    self.name,
                    rows.len()
                ))
                .code(class::DB_STATEMENT));
            }
            (Returns::One, _) => {
                return Err(EndpointError::business(
                    &self.no_row_error_code,
                    format!(
                        "database `{}` statement `{name}`: no row (`returns: one`)",
                        self.name
                    ),
                )
                .code(class::DB_NO_ROW));
            }
        };
        Ok(json!({ statement.variable.clone(): value }))
    }
}

#[async_trait]
impl Endpoint for DatabaseEndpoint {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "database"
    }

    /// `SELECT 1` through the pool.
    async fn probe(&self) -> Result<(), EndpointError> {
        let result = match self.pool() {
            Pool::Postgres(pool) => pg::probe(pool).await,
            Pool::Sqlite(pool) => sqlite::probe(pool).await,
        };
        result.map_err(|e| self.error(Failure::Connect(e), "probe (SELECT 1)"))
    }

    async fn call(&self, request: &EndpointRequest) -> Result<EndpointReply, EndpointError> {
        let (name, statement) = self.statement_for(request)?;
        let work = async {
            self.ensure_setup().await?;
            let plan = Plan {
                steps: &statement.steps,
                variables: &request.variables,
                rows_wanted: statement.returns != Returns::Count,
                max_rows: self.max_rows,
                statement_timeout: self.statement_timeout,
            };
            let output = self.run(&plan).await.map_err(|f| self.error(f, name))?;
            self.shape(name, statement, output).map(EndpointReply::new)
        };
        // Cancelled: the transaction is dropped uncommitted, so the database rolls it back.
        tokio::select! {
            biased;
            _ = request.cancel.cancelled() => Err(EndpointError::cancelled()),
            result = work => result,
        }
    }
}

#[cfg(test)]
mod tests;
