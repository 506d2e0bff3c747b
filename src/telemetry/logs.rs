//! Structured logs: JSON lines (one object per event, with the task span's fields) or a pretty
//! human format; JSON by default when stderr is not a terminal. Filter with `RUST_LOG` syntax.
//!
//! When traces are on ([`super::traces`]), the task span's fields include `trace_id` (32 hex
//! digits, recorded when the task's trace is sampled): in JSON every line of the task has
//! `"span": {"task_id": …, "trace_id": …}`, in the pretty format `task{task_id=… trace_id=…}`.
//! The trace's own spans are not `tracing` spans, so they never become a log line's current span
//! and the log output is the same with traces on or off, except for that field.

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log shippers).
    Json,
    /// Human-readable, coloured when on a terminal.
    Pretty,
}

/// Installs the global subscriber, writing to stderr. `filter` is `RUST_LOG` syntax
/// (e.g. `info,procos=debug`); default: `RUST_LOG`, else `info`.
pub fn init(format: Option<LogFormat>, filter: Option<&str>) {
    let filter = match filter {
        Some(f) => EnvFilter::new(f),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let is_tty = std::io::stderr().is_terminal();
    let format = format.unwrap_or(if is_tty {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.with_ansi(is_tty).try_init(),
    };
    // A subscriber already installed (tests) is fine.
    let _ = result;
}
