//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::telemetry::LogFormat;

/// procos: runs Camunda 7 external tasks through a self-checking pipeline.
#[derive(Debug, Parser)]
#[command(name = "procos", version, about, long_about = None)]
pub struct Cli {
    /// The pde.yaml to run (for the daemon; `validate` and `dev` take it too).
    #[arg(long, short, global = true, env = "PROCOS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format; default JSON when stderr is not a terminal, pretty otherwise.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter in RUST_LOG syntax (e.g. `info,procos=debug`); default `RUST_LOG`, else `info`.
    #[arg(long, global = true)]
    pub log_filter: Option<String>,
    /// Alias of `admin.listen`: where the admin server (`/metrics`, `/healthz`, `/readyz`,
    /// `/api/status`, the status page) listens, e.g. `127.0.0.1:9464`. A non-loopback address
    /// needs `admin.token`.
    #[arg(long, global = true, env = "PROCOS_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// What to do; without a command, run the daemon.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the config offline and print every problem with its YAML path (exit 78 if any).
    Validate,
    /// Run against an in-memory development engine started in this process (no Camunda needed).
    Dev {
        /// Where the development engine listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Start instances of this process definition key once deployed.
        #[arg(long)]
        start: Option<String>,
        /// Variables for the started instances, as a JSON object of plain values.
        #[arg(long, default_value = "{}")]
        vars: String,
        /// How many instances to start.
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
    /// Run only the in-memory development engine (no worker), e.g. for tests or another procos.
    Engine {
        /// Where the engine listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Print what procos learned about each topic's endpoints (from `pde_manager.state_dir`,
    /// while procos runs on it or not) and the changes the figures suggest.
    Stats {
        /// `table` for people, `json` for scripts (adds the per-class breakdown).
        #[arg(long, value_enum, default_value_t = StatsFormat::Table)]
        format: StatsFormat,
    },
    /// Turn a config of plain external-task workers (`workers: {name: {topics, max_tasks, …}}`)
    /// into an equivalent pde.yaml: a pool per worker, its topics bound, an endpoint stub with a
    /// TODO per worker. Unknown keys are warnings on stderr.
    Migrate {
        /// The workers' config to read.
        input: PathBuf,
        /// Write the pde.yaml here instead of to stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Replace the `--output` file if it exists.
        #[arg(long)]
        force: bool,
    },
}

/// How `procos stats` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatsFormat {
    /// Aligned columns per topic, then the suggestions.
    Table,
    /// The whole report as one JSON document.
    Json,
}
