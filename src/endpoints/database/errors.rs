//! What a database failure means for the task: the one mapping from sqlx's errors (PostgreSQL
//! SQLSTATEs, SQLite result codes) to an [`EndpointError`] kind and class.
//!
//! ```text
//!  no connection (refused, pool timeout) ─► Transient `connect` (nothing was sent)
//!  connection lost during the task ─────► Transient `network` (the transaction is rolled back)
//!  statement_timeout (57014) ───────────► Transient `timeout`
//!  serialization / deadlock / busy ─────► Transient `db_busy`
//!  constraint (SQLSTATE 23…, SQLITE_CONSTRAINT_*) ─► BPMN error `constraint_error_code`, class `db_constraint`
//!  bad credentials (28…) ───────────────► Permanent `auth`
//!  syntax, undefined table/column (42…, SQLITE_ERROR) ─► Permanent `db_statement`, naming the statement
//!  a value the server rejects (22…, SQLITE_MISMATCH) ─► Permanent `db_data`
//!  a variable that cannot be bound ─────► Permanent `db_param`, naming the parameter and variable
//! ```
//!
//! Every message names the endpoint and the statement (and its step when it has several); none
//! carries the URL's credentials (only `redact_url`'s form of it is used, and the text is redacted).

use crate::config::secret::redact;
use crate::endpoints::{EndpointError, class};

/// Where in a task a failure happened, for the message.
#[derive(Debug, Clone)]
pub struct At<'a> {
    /// The endpoint's name.
    pub endpoint: &'a str,
    /// The statement's name (`setup` for the endpoint's setup statements).
    pub statement: &'a str,
    /// The step, 0-based, when the statement has more than one.
    pub step: Option<usize>,
}

impl std::fmt::Display for At<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "database `{}` statement `{}`",
            self.endpoint, self.statement
        )?;
        if let Some(step) = self.step {
            write!(f, " step {}", step + 1)?;
        }
        Ok(())
    }
}

/// A failure of one task's database work, before it is given its meaning.
#[derive(Debug)]
pub enum Failure {
    /// No connection could be had, or the transaction could not begin: nothing was sent.
    Connect(sqlx::Error),
    /// A statement (or the commit) failed at step `step`.
    Sql {
        /// The step that failed.
        step: Option<usize>,
        /// The driver's error.
        error: sqlx::Error,
    },
    /// A variable could not be bound as parameter `$index`.
    Param {
        /// The step.
        step: Option<usize>,
        /// 1-based, as written in SQL.
        index: usize,
        /// The variable's name.
        variable: String,
        /// Why (never the value itself).
        message: String,
    },
    /// A result column cannot be read as JSON.
    Column {
        /// The step.
        step: Option<usize>,
        /// The column's name.
        column: String,
        /// Why.
        message: String,
    },
    /// A step ran longer than `statement_timeout` (SQLite; PostgreSQL reports 57014 itself).
    Timeout {
        /// The step.
        step: Option<usize>,
        /// The bound, for the message.
        after: std::time::Duration,
    },
    /// More rows than `max_rows`.
    TooManyRows {
        /// The bound.
        limit: usize,
    },
}

/// The BPMN error codes the endpoint raises for business outcomes.
#[derive(Debug, Clone)]
pub struct Codes {
    /// For a constraint violation.
    pub constraint: String,
}

/// What a [`Failure`] means for the task.
pub fn endpoint_error(
    failure: Failure,
    at: At<'_>,
    location: &str,
    codes: &Codes,
) -> EndpointError {
    let error = match failure {
        Failure::Connect(e) => connect_error(&e, &at, location),
        Failure::Sql { step, error } => sql_error(&error, &At { step, ..at }, codes),
        Failure::Param {
            step,
            index,
            variable,
            message,
        } => EndpointError::permanent(format!(
            "{}: parameter ${index} (variable `{variable}`): {message}",
            At { step, ..at }
        ))
        .code(class::DB_PARAM),
        Failure::Column {
            step,
            column,
            message,
        } => EndpointError::permanent(format!(
            "{}: column `{column}`: {message}",
            At { step, ..at }
        ))
        .code(class::DB_DATA),
        Failure::Timeout { step, after } => EndpointError::transient(format!(
            "{}: no result within statement_timeout {}",
            At { step, ..at },
            humantime::format_duration(after)
        ))
        .code(class::TIMEOUT),
        Failure::TooManyRows { limit } => EndpointError::permanent(format!(
            "{at}: returned more than max_rows ({limit}) rows; add a LIMIT or raise max_rows"
        ))
        .code(class::RESPONSE_TOO_LARGE),
    };
    EndpointError {
        message: redact(&error.message),
        details: error.details.as_deref().map(redact),
        ..error
    }
}

/// Failing to get a connection or begin: nothing of the task reached the database.
fn connect_error(e: &sqlx::Error, at: &At<'_>, location: &str) -> EndpointError {
    let message = format!("{at}: cannot use {location}: {}", chain(e));
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default().to_string();
            if code.starts_with("28") {
                EndpointError::permanent(message).code(class::AUTH)
            } else if code == "3D000" {
                // The database does not exist: fix the URL.
                EndpointError::permanent(message).code(class::CONFIG)
            } else if code.starts_with("57P") || code.starts_with("53") || code.starts_with("08") {
                EndpointError::transient(message).code(class::CONNECT)
            } else {
                EndpointError::permanent(message).code(class::DB_STATEMENT)
            }
        }
        sqlx::Error::Tls(_) => EndpointError::permanent(message).code(class::TLS),
        sqlx::Error::Configuration(_) => EndpointError::permanent(message).code(class::CONFIG),
        _ => EndpointError::transient(message).code(class::CONNECT),
    }
}

/// A statement or the commit failed.
fn sql_error(e: &sqlx::Error, at: &At<'_>, codes: &Codes) -> EndpointError {
    let sqlx::Error::Database(db) = e else {
        let message = format!("{at}: {}", chain(e));
        return match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => EndpointError::transient(message).code(class::NETWORK),
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::Encode(_) => {
                EndpointError::permanent(message).code(class::DB_DATA)
            }
            _ => EndpointError::permanent(message).code(class::DB_STATEMENT),
        };
    };
    let message = format!("{at}: {}", db.message());
    let details = pg_details(db.as_ref());
    let with_details = |e: EndpointError| match &details {
        Some(d) => e.details(d.clone()),
        None => e,
    };
    let code = db.code().unwrap_or_default().to_string();
    let meaning = match db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        Some(_) => pg_meaning(&code),
        None => sqlite_meaning(&code),
    };
    with_details(match meaning {
        Meaning::Constraint => {
            EndpointError::business(&codes.constraint, message).code(class::DB_CONSTRAINT)
        }
        Meaning::Timeout => EndpointError::transient(message).code(class::TIMEOUT),
        Meaning::Busy => EndpointError::transient(message).code(class::DB_BUSY),
        Meaning::Network => EndpointError::transient(message).code(class::NETWORK),
        Meaning::Auth => EndpointError::permanent(message).code(class::AUTH),
        Meaning::Data => EndpointError::permanent(message).code(class::DB_DATA),
        Meaning::Statement => EndpointError::permanent(message).code(class::DB_STATEMENT),
    })
}

/// What a database's own error code says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meaning {
    Constraint,
    Timeout,
    Busy,
    Network,
    Auth,
    Data,
    Statement,
}

/// A PostgreSQL SQLSTATE's meaning (appendix A of the PostgreSQL manual).
fn pg_meaning(sqlstate: &str) -> Meaning {
    match sqlstate {
        // query_canceled: what `SET LOCAL statement_timeout` raises.
        "57014" => Meaning::Timeout,
        // serialization_failure, deadlock_detected, lock_not_available: try again.
        "40001" | "40P01" | "55P03" => Meaning::Busy,
        // admin_shutdown, crash_shutdown, cannot_connect_now.
        s if s.starts_with("57P") => Meaning::Network,
        s if s.starts_with("23") => Meaning::Constraint,
        s if s.starts_with("08") || s.starts_with("53") => Meaning::Network,
        s if s.starts_with("28") => Meaning::Auth,
        s if s.starts_with("22") => Meaning::Data,
        _ => Meaning::Statement,
    }
}

/// An SQLite extended result code's meaning (sqlx reports it as the error's code).
fn sqlite_meaning(code: &str) -> Meaning {
    const CONSTRAINT: i64 = 19;
    const BUSY: i64 = 5;
    const LOCKED: i64 = 6;
    const TOOBIG: i64 = 18;
    const MISMATCH: i64 = 20;
    match code.parse::<i64>().map(|c| c & 0xff) {
        Ok(CONSTRAINT) => Meaning::Constraint,
        Ok(BUSY | LOCKED) => Meaning::Busy,
        Ok(TOOBIG | MISMATCH) => Meaning::Data,
        _ => Meaning::Statement,
    }
}

/// PostgreSQL's detail and constraint, for `errorDetails`.
fn pg_details(db: &dyn sqlx::error::DatabaseError) -> Option<String> {
    let pg = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()?;
    let mut parts = vec![format!("SQLSTATE {}", pg.code())];
    if let Some(c) = pg.constraint() {
        parts.push(format!("constraint {c}"));
    }
    if let Some(d) = pg.detail() {
        parts.push(d.to_string());
    }
    Some(parts.join("; "))
}

/// The error and its sources, without repeats.
fn chain(e: &sqlx::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_sqlstates_mean_what_the_manual_says() {
        assert_eq!(pg_meaning("23505"), Meaning::Constraint);
        assert_eq!(pg_meaning("23503"), Meaning::Constraint);
        assert_eq!(pg_meaning("57014"), Meaning::Timeout);
        assert_eq!(pg_meaning("40001"), Meaning::Busy);
        assert_eq!(pg_meaning("57P01"), Meaning::Network);
        assert_eq!(pg_meaning("08006"), Meaning::Network);
        assert_eq!(pg_meaning("42601"), Meaning::Statement);
        assert_eq!(pg_meaning("42P01"), Meaning::Statement);
        assert_eq!(pg_meaning("22P02"), Meaning::Data);
        assert_eq!(pg_meaning("28P01"), Meaning::Auth);
    }

    #[test]
    fn sqlite_extended_codes_are_read_by_their_primary_code() {
        assert_eq!(sqlite_meaning("2067"), Meaning::Constraint); // CONSTRAINT_UNIQUE
        assert_eq!(sqlite_meaning("1299"), Meaning::Constraint); // CONSTRAINT_NOTNULL
        assert_eq!(sqlite_meaning("5"), Meaning::Busy);
        assert_eq!(sqlite_meaning("262"), Meaning::Busy); // LOCKED_SHAREDCACHE
        assert_eq!(sqlite_meaning("1"), Meaning::Statement);
        assert_eq!(sqlite_meaning("20"), Meaning::Data);
    }

    #[test]
    fn a_pool_timeout_is_a_transient_connect_failure_naming_the_statement() {
        let e = endpoint_error(
            Failure::Connect(sqlx::Error::PoolTimedOut),
            At {
                endpoint: "orders",
                statement: "insert_order",
                step: None,
            },
            "postgres://***@db:5432/shop",
            &Codes {
                constraint: "db_constraint".into(),
            },
        );
        assert!(matches!(
            e.kind,
            crate::endpoints::ErrorKind::Transient { .. }
        ));
        assert_eq!(e.code.as_deref(), Some(class::CONNECT));
        assert!(e.never_sent());
        assert!(
            e.message.contains("statement `insert_order`"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("postgres://***@db:5432/shop"),
            "{}",
            e.message
        );
    }
}
