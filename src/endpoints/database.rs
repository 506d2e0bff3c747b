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
//! `database/sqlite.rs`, `database/value.rs`. The config and its checks: `database/config.rs`;
//! what `validate` reads in SQL text: `database/sql.rs`.
//!
//! The URL is a [`Secret`]: its password is registered for redaction and messages show only
//! `postgres://***@host:port/db`. The pool connects lazily (procos starts while the database is
//! down); the probe (`SELECT 1`) and the breaker are the common stack's.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};

use super::{Endpoint, EndpointError, EndpointReply, EndpointRequest, class};

mod config;
mod errors;
mod pg;
mod sql;
mod sqlite;
mod value;

pub use config::{DatabaseConfig, Returns, StatementConfig, StepConfig};
use config::{Driver, Options, driver, options};
use errors::{At, Codes, Failure};

/// The activity property that picks a statement by name.
pub const STATEMENT_PROPERTY: &str = "pde.statement";

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
