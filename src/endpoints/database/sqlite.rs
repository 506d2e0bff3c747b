//! SQLite: one transaction per task, parameters bound by the variable's own kind (SQLite columns
//! take any value), rows read back by each value's storage class.
//!
//! | variable (JSON) | bound as | read back |
//! |---|---|---|
//! | null | `NULL` | null |
//! | boolean | `INTEGER` 0/1 | boolean when the column is declared `BOOLEAN`, else integer |
//! | integer | `INTEGER` | integer |
//! | number with fraction | `REAL` | number |
//! | string (and Camunda Dates, in the engine's format) | `TEXT` | string |
//! | array / object (Json) | `TEXT` holding the JSON | string (SQLite has no JSON type; `json_extract` reads it) |
//! | — | `BLOB` | base64 string |
//!
//! `statement_timeout` stops a statement inside SQLite: a progress handler on the task's
//! connection interrupts it once the step's deadline has passed (the task fails with `timeout`
//! and the transaction is rolled back); the deadline is cleared when the step ends, however it
//! ends, so the handler never touches the next statement on that pooled connection. The same
//! bound is `busy_timeout`, the wait for another writer's lock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::TryStreamExt;
use serde_json::{Map, Value};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqlitePool, SqliteRow};
use sqlx::{Column, Row, Sqlite, TypeInfo, ValueRef};

use super::errors::Failure;
use super::{Output, Plan, lookup};

type SqliteQuery<'q> = Query<'q, Sqlite, SqliteArguments<'q>>;

/// SQLite virtual-machine steps between two looks at the deadline (microseconds of work).
const PROGRESS_OPS: i32 = 1000;

/// SQLite's result code for an interrupted statement.
const SQLITE_INTERRUPT: &str = "9";

/// The running step's deadline, read by the connection's progress handler; cleared on drop, so
/// a task that ends early (an error, a cancelled task) leaves no deadline behind.
#[derive(Debug, Default, Clone)]
struct Deadline(Arc<Mutex<Option<Instant>>>);

impl Deadline {
    fn set(&self, at: Option<Instant>) {
        // A poisoned lock only means a panic while setting an Option; the value is usable.
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    /// Whether the statement may go on.
    fn open(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none_or(|at| Instant::now() < at)
    }
}

/// Clears the deadline when the task's run ends, however it ends.
struct ClearOnDrop(Deadline);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.set(None);
    }
}

/// Runs `plan` in one transaction: committed only when every step succeeded.
pub async fn run(pool: &SqlitePool, plan: &Plan<'_>) -> Result<Output, Failure> {
    let mut tx = pool.begin().await.map_err(Failure::Connect)?;
    let deadline = Deadline::default();
    let _clear = ClearOnDrop(deadline.clone());
    {
        let deadline = deadline.clone();
        tx.lock_handle()
            .await
            .map_err(Failure::Connect)?
            .set_progress_handler(PROGRESS_OPS, move || deadline.open());
    }
    let last = plan.steps.len().saturating_sub(1);
    let mut output = Output::Count(0);
    for (i, step) in plan.steps.iter().enumerate() {
        let at = plan.step_label(i);
        let sql_error = |error| Failure::Sql { step: at, error };
        let mut query = sqlx::query(step.sql.as_str());
        for (n, name) in step.params.iter().enumerate() {
            let value = lookup(plan.variables, name).map_err(|message| Failure::Param {
                step: at,
                index: n + 1,
                variable: name.clone(),
                message,
            })?;
            query = bind(query, value);
        }
        let work = async {
            if i == last && plan.rows_wanted {
                let mut rows = Vec::new();
                let mut stream = query.fetch(&mut *tx);
                while let Some(row) = stream.try_next().await.map_err(sql_error)? {
                    if rows.len() == plan.max_rows {
                        return Err(Failure::TooManyRows {
                            limit: plan.max_rows,
                        });
                    }
                    rows.push(decode(&row).map_err(|(column, message)| Failure::Column {
                        step: at,
                        column,
                        message,
                    })?);
                }
                Ok(Output::Rows(rows))
            } else {
                let done = query.execute(&mut *tx).await.map_err(sql_error)?;
                Ok(Output::Count(done.rows_affected()))
            }
        };
        let timed_out = || Failure::Timeout {
            step: at,
            after: plan.statement_timeout,
        };
        deadline.set(Some(Instant::now() + plan.statement_timeout));
        // The handler stops the statement; this bound is the backstop for a wait outside the
        // virtual machine.
        let result =
            tokio::time::timeout(plan.statement_timeout + Duration::from_secs(1), work).await;
        deadline.set(None);
        output = match result {
            Err(_) => return Err(timed_out()),
            Ok(Err(Failure::Sql {
                error: sqlx::Error::Database(e),
                ..
            })) if e.code().as_deref() == Some(SQLITE_INTERRUPT) => return Err(timed_out()),
            Ok(result) => result?,
        };
    }
    tx.commit()
        .await
        .map_err(|error| Failure::Sql { step: None, error })?;
    Ok(output)
}

/// The `SELECT 1` of the probe.
pub async fn probe(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}

/// Binds `v` by its JSON kind.
fn bind<'q>(query: SqliteQuery<'q>, v: &Value) -> SqliteQuery<'q> {
    match v {
        Value::Null => query.bind(None::<String>),
        Value::Bool(b) => query.bind(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => query.bind(i),
            None => query.bind(n.as_f64()),
        },
        Value::String(s) => query.bind(s.clone()),
        other => query.bind(other.to_string()),
    }
}

/// One row as a JSON object; an unreadable column as (name, why).
fn decode(row: &SqliteRow) -> Result<Map<String, Value>, (String, String)> {
    let mut out = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        let name = column.name().to_string();
        let declared_bool = column.type_info().name() == "BOOLEAN";
        let v = column_value(row, i, declared_bool).map_err(|m| (name.clone(), m))?;
        out.insert(name, v);
    }
    Ok(out)
}

fn column_value(row: &SqliteRow, i: usize, declared_bool: bool) -> Result<Value, String> {
    let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let storage = raw.type_info().name().to_string();
    let err = |e: sqlx::Error| e.to_string();
    Ok(match storage.as_str() {
        "INTEGER" if declared_bool => {
            Value::Bool(row.try_get_unchecked::<i64, _>(i).map_err(err)? != 0)
        }
        "INTEGER" | "BOOLEAN" => row.try_get_unchecked::<i64, _>(i).map_err(err)?.into(),
        "REAL" => row.try_get_unchecked::<f64, _>(i).map_err(err)?.into(),
        "BLOB" => Value::String(
            base64::engine::general_purpose::STANDARD
                .encode(row.try_get_unchecked::<Vec<u8>, _>(i).map_err(err)?),
        ),
        _ => Value::String(row.try_get_unchecked::<String, _>(i).map_err(err)?),
    })
}
