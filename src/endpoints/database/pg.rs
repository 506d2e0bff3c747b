//! PostgreSQL: one transaction per task, parameters bound by the types the server infers for
//! them, rows read back as typed JSON.
//!
//! Each step is prepared first, so PostgreSQL says what type each `$n` is (`INSERT … VALUES ($1)`
//! into a `timestamptz` column: `TIMESTAMPTZ`), and the task's variable is converted to exactly
//! that type — a Camunda Date string becomes a timestamp, an Integer an `int4`, a Json value
//! `jsonb`. A value that does not fit is refused before anything runs, naming the parameter.
//!
//! | parameter type | accepts (JSON of the variable) | column type | becomes |
//! |---|---|---|---|
//! | `bool` | boolean, `"true"`/`"false"` | `bool` | boolean |
//! | `int2/int4/int8` | integer (or integral number, numeric string) | `int2/4/8` | integer |
//! | `float4/float8` | number, numeric string | `float4/8` | number |
//! | `numeric` | number, decimal string (exact) | `numeric` | number |
//! | `text/varchar/char/name` | string (a number or boolean as its text; objects as JSON text) | same | string |
//! | `json/jsonb` | any value | `json/jsonb` | the value |
//! | `timestamptz` | Camunda Date (`2025-01-23T14:42:45.000+0200`) or RFC 3339 | `timestamptz` | Camunda Date string (UTC) |
//! | `timestamp` | date-time without offset (or a Date: its local time) | `timestamp` | `2025-01-23T14:42:45.000` |
//! | `date` | `2025-01-23` (or a Date: its local date) | `date` | `2025-01-23` |
//! | `time` | `14:42:45` | `time` | `14:42:45` |
//! | `uuid` | string | `uuid` | string |
//! | `bytea` | base64 string | `bytea` | base64 string |
//! | — | — | `text[]`, `int4[]`, `int8[]` | array |
//! | — | — | `void` (`SELECT pg_sleep(1)`) | null |
//!
//! JSON `null` binds SQL `NULL` of the parameter's type. Other types: cast in SQL (`$1::text`,
//! `col::text`).

use std::str::FromStr;

use base64::Engine as _;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use futures::TryStreamExt;
use serde_json::{Map, Value};
use sqlx::postgres::{PgArguments, PgPool, PgRow, PgTypeInfo};
use sqlx::query::Query;
use sqlx::types::{Decimal, Json, Uuid};
use sqlx::{Column, Either, Executor, Postgres, Row, Statement, TypeInfo, ValueRef};

use super::errors::Failure;
use super::{Output, Plan, lookup, value};

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

/// Runs `plan` in one transaction: committed only when every step succeeded.
pub async fn run(pool: &PgPool, plan: &Plan<'_>) -> Result<Output, Failure> {
    let mut tx = pool.begin().await.map_err(Failure::Connect)?;
    // Bounds every step on the server; rolled back with the transaction.
    let timeout_ms = plan.statement_timeout.as_millis().max(1).to_string();
    sqlx::query("SELECT set_config('statement_timeout', $1, true)")
        .bind(timeout_ms)
        .execute(&mut *tx)
        .await
        .map_err(Failure::Connect)?;
    let last = plan.steps.len().saturating_sub(1);
    let mut output = Output::Count(0);
    for (i, step) in plan.steps.iter().enumerate() {
        let at = plan.step_label(i);
        let sql_error = |error| Failure::Sql { step: at, error };
        let statement = (&mut *tx)
            .prepare(step.sql.as_str())
            .await
            .map_err(sql_error)?;
        let types: Vec<PgTypeInfo> = match statement.parameters() {
            Some(Either::Left(types)) => types.to_vec(),
            _ => Vec::new(),
        };
        let mut query = statement.query();
        for (n, name) in step.params.iter().enumerate() {
            let param = |message: String| Failure::Param {
                step: at,
                index: n + 1,
                variable: name.clone(),
                message,
            };
            let value = lookup(plan.variables, name).map_err(param)?;
            let ty = types.get(n).ok_or_else(|| {
                param(format!(
                    "the statement takes {} parameter(s); remove it from `params`",
                    types.len()
                ))
            })?;
            query = bind(query, ty, value).map_err(param)?;
        }
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
            output = Output::Rows(rows);
        } else {
            let done = query.execute(&mut *tx).await.map_err(sql_error)?;
            output = Output::Count(done.rows_affected());
        }
    }
    tx.commit()
        .await
        .map_err(|error| Failure::Sql { step: None, error })?;
    Ok(output)
}

/// The `SELECT 1` of the probe.
pub async fn probe(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}

/// Binds `v` as PostgreSQL type `ty`; the message says why it cannot be (never the value).
fn bind<'q>(query: PgQuery<'q>, ty: &PgTypeInfo, v: &Value) -> Result<PgQuery<'q>, String> {
    let name = ty.name();
    Ok(match name {
        "BOOL" => query.bind(nullable(v, value::boolean)?),
        "INT2" => query.bind(nullable(v, |v| value::int_in::<i16>(v, name))?),
        "INT4" => query.bind(nullable(v, |v| value::int_in::<i32>(v, name))?),
        "INT8" => query.bind(nullable(v, value::int)?),
        "FLOAT4" => query.bind(nullable(v, value::float)?.map(|f| f as f32)),
        "FLOAT8" => query.bind(nullable(v, value::float)?),
        "NUMERIC" => query.bind(nullable(v, decimal)?),
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => query.bind(nullable(v, |v| Ok(value::text(v)))?),
        "JSON" | "JSONB" => query.bind(Json(v.clone())),
        "TIMESTAMPTZ" => query.bind(nullable(v, |v| {
            value::date_time(v).map(|d| d.with_timezone(&Utc))
        })?),
        "TIMESTAMP" => query.bind(nullable(v, value::naive_date_time)?),
        "DATE" => query.bind(nullable(v, value::date)?),
        "TIME" => query.bind(nullable(v, value::time)?),
        "UUID" => query.bind(nullable(v, |v| {
            Uuid::parse_str(&value::string(v, "a UUID")?).map_err(|_| "is not a UUID".to_string())
        })?),
        "BYTEA" => query.bind(nullable(v, |v| {
            base64::engine::general_purpose::STANDARD
                .decode(value::string(v, "base64 text")?)
                .map_err(|_| "is not base64 (what a `bytea` parameter takes)".to_string())
        })?),
        other => {
            return Err(format!(
                "PostgreSQL type `{other}` is not supported for parameters; cast it in SQL \
                 (e.g. `$1::text::{}`)",
                other.to_lowercase()
            ));
        }
    })
}

/// `None` for JSON null, else the converted value.
fn nullable<T>(
    v: &Value,
    convert: impl FnOnce(&Value) -> Result<T, String>,
) -> Result<Option<T>, String> {
    match v {
        Value::Null => Ok(None),
        v => convert(v).map(Some),
    }
}

/// An exact decimal from a JSON number's text or a decimal string.
fn decimal(v: &Value) -> Result<Decimal, String> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        other => return Err(format!("expects a number, got {}", value::kind(other))),
    };
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|_| "is not a decimal number".to_string())
}

/// One row as a JSON object, each column by its type; an unreadable column as (name, why).
fn decode(row: &PgRow) -> Result<Map<String, Value>, (String, String)> {
    let mut out = Map::new();
    for (i, column) in row.columns().iter().enumerate() {
        let name = column.name().to_string();
        let v = column_value(row, i, column.type_info().name())
            .map_err(|message| (name.clone(), message))?;
        out.insert(name, v);
    }
    Ok(out)
}

fn column_value(row: &PgRow, i: usize, ty: &str) -> Result<Value, String> {
    let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
    if raw.is_null() || ty == "VOID" {
        return Ok(Value::Null);
    }
    fn get<'r, T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>>(
        row: &'r PgRow,
        i: usize,
    ) -> Result<T, String> {
        row.try_get::<T, _>(i).map_err(|e| e.to_string())
    }
    Ok(match ty {
        "BOOL" => Value::Bool(get(row, i)?),
        "INT2" => get::<i16>(row, i)?.into(),
        "INT4" => get::<i32>(row, i)?.into(),
        "INT8" => get::<i64>(row, i)?.into(),
        "FLOAT4" => f64::from(get::<f32>(row, i)?).into(),
        "FLOAT8" => get::<f64>(row, i)?.into(),
        "NUMERIC" => {
            let d: Decimal = get(row, i)?;
            serde_json::from_str(&d.normalize().to_string())
                .map_err(|_| "a numeric value JSON cannot hold".to_string())?
        }
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "\"CHAR\"" => Value::String(get(row, i)?),
        "JSON" | "JSONB" => get::<Json<Value>>(row, i)?.0,
        "TIMESTAMPTZ" => {
            let d: DateTime<Utc> = get(row, i)?;
            Value::String(crate::camunda::variables::format_date(d.fixed_offset()))
        }
        "TIMESTAMP" => Value::String(
            get::<NaiveDateTime>(row, i)?
                .format("%Y-%m-%dT%H:%M:%S%.3f")
                .to_string(),
        ),
        "DATE" => Value::String(get::<NaiveDate>(row, i)?.format("%Y-%m-%d").to_string()),
        "TIME" => Value::String(get::<NaiveTime>(row, i)?.format("%H:%M:%S%.f").to_string()),
        "UUID" => Value::String(get::<Uuid>(row, i)?.to_string()),
        "BYTEA" => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(get::<Vec<u8>>(row, i)?))
        }
        "TEXT[]" | "VARCHAR[]" => {
            serde_json::to_value(get::<Vec<Option<String>>>(row, i)?).map_err(|e| e.to_string())?
        }
        "INT4[]" => {
            serde_json::to_value(get::<Vec<Option<i32>>>(row, i)?).map_err(|e| e.to_string())?
        }
        "INT8[]" => {
            serde_json::to_value(get::<Vec<Option<i64>>>(row, i)?).map_err(|e| e.to_string())?
        }
        other => {
            return Err(format!(
                "has type `{other}`, which procos cannot read; cast it in SQL (e.g. `col::text`)"
            ));
        }
    })
}
