//! procos's entry point: parse the command line, set up logs, load the config, run the kernel
//! until a signal, drain, and exit with a code that says what happened. The kernel reloads the
//! config file on SIGHUP and on change; `procos dev --start` is in [`dev_run`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use procos::cli::{Cli, Command, StatsFormat};
use procos::config::{self, FileConfig};
use procos::engine::{Engine, EngineOptions};
use procos::{kernel, telemetry};
use tokio_util::sync::CancellationToken;

mod dev_run;

/// sysexits.h: configuration error.
const EX_CONFIG: u8 = 78;
/// sysexits.h: a service is unavailable (the engine never answered).
const EX_UNAVAILABLE: u8 = 69;
/// sysexits.h: an input file did not exist (`procos stats`: no store yet).
const EX_NOINPUT: u8 = 66;
/// sysexits.h: an input/output error (`procos stats`: the store cannot be read).
const EX_IOERR: u8 = 74;
/// sysexits.h: a temporary failure, try again (`procos stats`: a procos has the store open and
/// has not written its snapshot yet).
const EX_TEMPFAIL: u8 = 75;
/// sysexits.h: the input data was incorrect (`procos migrate`: not a workers' config).
const EX_DATAERR: u8 = 65;
/// sysexits.h: an output file cannot be created (`procos migrate -o`).
const EX_CANTCREAT: u8 = 73;
/// Default config path.
const DEFAULT_CONFIG: &str = "config/pde.yaml";

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format, cli.log_filter.as_deref());
    let config_path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    if let Some(Command::Validate) = cli.command {
        return validate(&config_path);
    }
    if let Some(Command::Stats { format }) = cli.command {
        return stats(&config_path, format);
    }
    if let Some(Command::Migrate {
        input,
        output,
        force,
    }) = &cli.command
    {
        return migrate(input, output.as_deref(), *force);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("procos: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async_main(cli, config_path))
}

fn validate(path: &Path) -> ExitCode {
    let loaded = config::load_noted(path);
    // How the design's vocabulary was read (`type: ai_service` is read as `type: openai`).
    for note in &loaded.notes {
        eprintln!("note: {note}");
    }
    match loaded.config {
        // What only the files can tell (the pure checks passed): a warm script without handle(),
        // a files endpoint's missing root.
        Ok(c) if c.endpoints.values().any(|e| warm_problem(e).is_some()) => {
            for (name, e) in &c.endpoints {
                if let Some((suffix, message)) = warm_problem(e) {
                    eprintln!("endpoints.{name}.{suffix}: {message}");
                }
            }
            ExitCode::from(EX_CONFIG)
        }
        Ok(c) => {
            println!(
                "{}: OK ({} topics, {} pools, {} endpoints)",
                path.display(),
                c.topics.len(),
                c.pde_manager.pools.len(),
                c.endpoints.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(EX_CONFIG)
        }
    }
}

/// A `mode: warm` python endpoint whose fixed script defines no `handle(task)`; a `files`
/// endpoint whose `root` is not a directory.
fn warm_problem(endpoint: &procos::endpoints::EndpointConfig) -> Option<(String, String)> {
    match endpoint {
        procos::endpoints::EndpointConfig::Python(c) => c.warm_script_problem(),
        procos::endpoints::EndpointConfig::Files(c) => c.root_problem(),
        _ => None,
    }
}

fn stats(path: &Path, format: StatsFormat) -> ExitCode {
    use procos::journal::StoreError;
    use procos::learner::report::{self, StatsError};
    let config = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let (report, source) = match report::from_config(&config, path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("procos stats: {e}");
            return ExitCode::from(match e {
                StatsError::NoStateDir { .. } => EX_CONFIG,
                StatsError::Store(StoreError::Missing { .. }) => EX_NOINPUT,
                StatsError::Store(StoreError::InUse { .. }) => EX_TEMPFAIL,
                StatsError::Store(_) => EX_IOERR,
                StatsError::Shared(_) => EX_UNAVAILABLE,
            });
        }
    };
    match format {
        StatsFormat::Table => print!(
            "{}",
            report::render_table(
                &report,
                &source.display().to_string(),
                procos::endpoints::health::now_secs()
            )
        ),
        // A report of plain numbers and strings always serialises (non-finite numbers as null).
        StatsFormat::Json => match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("procos stats: {e}");
                return ExitCode::FAILURE;
            }
        },
    }
    ExitCode::SUCCESS
}

/// `procos migrate`: warnings on stderr, the pde.yaml on stdout or into `output`.
fn migrate(input: &Path, output: Option<&Path>, force: bool) -> ExitCode {
    use procos::migrate::{self, MigrateError};
    let code = |e: &MigrateError| match e {
        MigrateError::Read(_) => EX_NOINPUT,
        MigrateError::Input { .. } => EX_DATAERR,
        MigrateError::Write(_) => EX_CANTCREAT,
    };
    let migration = match migrate::migrate_file(input) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("procos migrate: {e}");
            return ExitCode::from(code(&e));
        }
    };
    for warning in &migration.warnings {
        eprintln!("procos migrate: warning: {warning}");
    }
    match output {
        None => print!("{}", migration.yaml),
        Some(path) => {
            if let Err(e) = migrate::write_output(path, &migration.yaml, force) {
                eprintln!("procos migrate: {e}");
                return ExitCode::from(code(&e));
            }
            eprintln!(
                "procos migrate: wrote {}; check it with `procos validate --config {}`",
                path.display(),
                path.display()
            );
        }
    }
    ExitCode::SUCCESS
}

/// The config and the text it was loaded from (the first config stamp is over that text); the
/// notes on the design's vocabulary it uses are logged.
fn load(path: &Path, metrics_listen: Option<SocketAddr>) -> Result<(FileConfig, String), ExitCode> {
    let refuse = |e: procos::config::ConfigError| {
        tracing::error!("{e}");
        eprintln!("{e}");
        ExitCode::from(EX_CONFIG)
    };
    let (loaded, text) = kernel::reload::load_file_noted(path).map_err(refuse)?;
    for note in &loaded.notes {
        tracing::info!(path = %note.path, note = %note.message, "Config read in the design's vocabulary.");
    }
    let mut config = loaded.config.map_err(refuse)?;
    // `--metrics-listen` is an alias of `admin.listen`, checked as the file's value would be.
    if let Some(addr) = metrics_listen {
        config.admin.listen_on(addr);
        let mut problems = Vec::new();
        config.admin.check(&mut problems);
        if !problems.is_empty() {
            for p in problems {
                let line = format!("{}: {} (--metrics-listen {addr})", p.path, p.message);
                tracing::error!("{line}");
                eprintln!("{}: {line}", path.display());
            }
            return Err(ExitCode::from(EX_CONFIG));
        }
    }
    Ok((config, text))
}

async fn async_main(cli: Cli, config_path: PathBuf) -> ExitCode {
    let shutdown = match kernel::supervisor::install() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "Cannot install signal handlers.");
            return ExitCode::FAILURE;
        }
    };
    let metrics_listen = cli.metrics_listen;
    match cli.command {
        Some(Command::Engine { listen }) => run_engine(listen, shutdown).await,
        Some(Command::Dev {
            listen,
            start,
            vars,
            count,
        }) => {
            let (mut config, text) = match load(&config_path, metrics_listen) {
                Ok(loaded) => loaded,
                Err(code) => return code,
            };
            let Some(engine_stop) = start_dev_engine(listen, &mut config).await else {
                return ExitCode::FAILURE;
            };
            let (events, feed) = dev_run::feed();
            let summary = match start {
                Some(key) => match serde_json::from_str(&vars) {
                    Ok(vars) => {
                        let client = match kernel::client(&config) {
                            Ok(c) => c,
                            Err(e) => {
                                eprintln!("procos dev: {e}");
                                return ExitCode::FAILURE;
                            }
                        };
                        let run = dev_run::DevRun { key, vars, count };
                        let url = config.camunda.url.clone();
                        Some(tokio::spawn(dev_run::run(
                            client,
                            url,
                            run,
                            feed,
                            shutdown.clone(),
                        )))
                    }
                    Err(e) => {
                        eprintln!("procos dev: --vars must be a JSON object: {e}");
                        return ExitCode::from(EX_CONFIG);
                    }
                },
                None => None,
            };
            let mut options = reloading(&config_path, Some(config.camunda.url.clone()), text);
            options.events = events;
            let code = run_daemon(config, options, shutdown).await;
            if let Some(summary) = summary {
                // On Ctrl-C it prints what ended so far; bounded so a stuck engine cannot hold
                // the exit.
                let _ = tokio::time::timeout(Duration::from_secs(10), summary).await;
            }
            engine_stop.cancel();
            code
        }
        // Validate, stats and migrate returned before the runtime started.
        Some(Command::Validate)
        | Some(Command::Stats { .. })
        | Some(Command::Migrate { .. })
        | None => match load(&config_path, metrics_listen) {
            Ok((config, text)) => {
                run_daemon(config, reloading(&config_path, None, text), shutdown).await
            }
            Err(code) => code,
        },
    }
}

/// Kernel options that reload `path` (loaded from `text`) on SIGHUP and on change;
/// `camunda_url` overrides the file's (`procos dev`).
fn reloading(path: &Path, camunda_url: Option<String>, text: String) -> kernel::RunOptions {
    kernel::RunOptions {
        reload: Some(kernel::reload::Source {
            path: path.to_path_buf(),
            camunda_url,
            text,
        }),
        ..Default::default()
    }
}

async fn run_daemon(
    config: FileConfig,
    options: kernel::RunOptions,
    shutdown: CancellationToken,
) -> ExitCode {
    // Traces (telemetry.otlp / OTEL_EXPORTER_OTLP_ENDPOINT): started before the kernel, flushed
    // after it returns.
    let traces = match telemetry::traces::start(&config.telemetry) {
        Ok(traces) => traces,
        Err(e) => {
            tracing::error!(error = %e, "Cannot start traces.");
            return ExitCode::from(EX_CONFIG);
        }
    };
    let code = match kernel::run_with(config, options, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(kernel::KernelError::Boot(e)) => {
            tracing::error!(error = %e, "The engine is unavailable; giving up.");
            ExitCode::from(EX_UNAVAILABLE)
        }
        Err(e) => {
            tracing::error!(error = %e, "procos cannot run.");
            ExitCode::FAILURE
        }
    };
    if let Some(traces) = traces {
        traces.shutdown(std::time::Duration::from_secs(5)).await;
    }
    code
}

async fn run_engine(listen: std::net::SocketAddr, shutdown: CancellationToken) -> ExitCode {
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(address = %listen, error = %e, "Cannot listen.");
            return ExitCode::FAILURE;
        }
    };
    warn_dev_engine(listen);
    let engine = Engine::new(EngineOptions::default());
    match engine.serve(listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "The engine stopped.");
            ExitCode::FAILURE
        }
    }
}

fn warn_dev_engine(listen: std::net::SocketAddr) {
    tracing::warn!(
        url = %format!("http://{listen}/engine-rest"),
        "IN-MEMORY DEVELOPMENT ENGINE — this is not Camunda: nothing persists, there is no Cockpit or Tasklist, and only what the examples need of BPMN runs. Use a real Camunda 7 (docker compose up) for anything else."
    );
}

/// Starts the development engine in this process and points the config at it.
async fn start_dev_engine(
    listen: std::net::SocketAddr,
    config: &mut FileConfig,
) -> Option<CancellationToken> {
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(address = %listen, error = %e, "Cannot start the development engine (is something else on that port? try --listen 127.0.0.1:0).");
            return None;
        }
    };
    let addr = listener.local_addr().ok()?;
    warn_dev_engine(addr);
    config.camunda.url = format!("http://{addr}/engine-rest");
    let stop = CancellationToken::new();
    let engine = Engine::new(EngineOptions::default());
    let token = stop.clone();
    tokio::spawn(async move {
        if let Err(e) = engine.serve(listener, token).await {
            tracing::error!(error = %e, "The development engine stopped.");
        }
    });
    Some(stop)
}
