//! The microkernel: boots procos against the engine and supervises it until shutdown.
//!
//! ```text
//!  boot ── wait for the engine (GET /version, backoff, fatal after camunda.boot_timeout)
//!   └─► deployer ── deploy bpmn/ (changed only) ──► watch bpmn/ and redeploy (debounced)
//!   └─► manager ─── pools, fetch loop, pipelines ── until the shutdown token fires, then drain
//!   └─► learner flusher ── its changes to the store every few seconds, and once after the drain
//!   └─► reloader ── SIGHUP / config file change ──► validate ──► new manager generation
//!  admin server (crate::admin) ── bound before boot; /readyz flips as boot, deploy and the
//!                                 manager come up, and back while draining
//! ```

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::camunda::{CamundaClient, CamundaError, ClientSettings};
use crate::config::FileConfig;
use crate::endpoints::BuildContext;
use crate::endpoints::health::HealthRegistry;
use crate::journal::Journal;
use crate::learner::store::{FLUSH_EVERY, Flusher, JournalStats};
use crate::learner::{DEFAULT_HALF_LIFE, Learner, StatsStore};
use crate::manager::{Manager, ManagerError, build_stoppable_endpoints};

pub mod boot;
pub mod deployer;
pub mod reload;
pub mod supervisor;

pub use deployer::Deployer;

/// Why procos could not run.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The engine client could not be built.
    #[error(transparent)]
    Client(#[from] CamundaError),
    /// The engine never answered.
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    /// Endpoints, pools or topics could not be built.
    #[error(transparent)]
    Manager(#[from] ManagerError),
    /// The outcome journal under `state_dir` could not be opened.
    #[error(transparent)]
    Journal(#[from] crate::journal::StoreError),
    /// The admin server could not start (`admin.listen` taken, …).
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    /// The replicas' shared learner store (`pde_manager.state`) is unusable.
    #[error(transparent)]
    Shared(#[from] crate::learner::store::postgres::SharedError),
}

/// The worker id: configured, or hostname + a random suffix. Without a `state_dir` it is new for
/// every process, so a restarted procos never answers for the locks of a life it has no record
/// of; with one, [`journal`] keeps the first one, because the journal is that record.
pub fn worker_id(config: &FileConfig) -> String {
    if let Some(id) = &config.camunda.worker_id {
        return id.clone();
    }
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "procos".to_string());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &suffix[..8])
}

/// The engine client for a config.
pub fn client(config: &FileConfig) -> Result<CamundaClient, CamundaError> {
    client_as(config, worker_id(config))
}

fn client_as(config: &FileConfig, worker_id: String) -> Result<CamundaClient, CamundaError> {
    CamundaClient::new(ClientSettings {
        url: config.camunda.url.clone(),
        auth: config.camunda.auth.clone(),
        worker_id,
        request_timeout: config.camunda.request_timeout,
    })
    .map(|client| client.with_max_connections(config.camunda.max_connections))
}

/// The outcome journal: in `pde_manager.state_dir` if set, else in memory. With a state dir the
/// worker id is kept there too (unless configured), so a restarted procos can still report
/// what its previous life journaled.
pub fn journal(config: &FileConfig) -> Result<(Journal, String), crate::journal::StoreError> {
    let fresh = worker_id(config);
    // An acknowledged outcome must outlive any lock, or a late second delivery of its task
    // would not be recognised.
    let longest_lock = config
        .topics
        .values()
        .filter_map(|t| t.lock_duration)
        .fold(config.camunda.lock_duration, Duration::max);
    let late_reply = config.camunda.long_poll + Duration::from_secs(60);
    let retention = config
        .pde_manager
        .journal_retention
        .max(longest_lock * 2)
        .max(late_reply);
    let Some(dir) = &config.pde_manager.state_dir else {
        return Ok((Journal::in_memory(retention), fresh));
    };
    let journal = Journal::open(dir, retention, &fresh)?;
    let id = match journal.worker_id() {
        Some(kept) if config.camunda.worker_id.is_none() => kept.to_string(),
        _ => fresh,
    };
    Ok((journal, id))
}

/// The learner, with what the journal's store kept of it (with a `state_dir`; in memory only
/// without one, and the log says so). A store that cannot be read starts it empty, with a
/// warning: what it learned is worth less than starting. Blocking file I/O: call it where the
/// journal is opened.
pub fn learner(config: &FileConfig, journal: &Journal) -> Arc<Learner> {
    // Each topic's `routing.half_life` is set when its runtime is built.
    let learner = Arc::new(Learner::new(DEFAULT_HALF_LIFE, Default::default()));
    // replicas: with a shared store the flusher's first flush loads it (not blocking the boot).
    if config.pde_manager.state.is_some() {
        tracing::info!("pde_manager.state is set: the learner is loaded from the shared store.");
        return learner;
    }
    match (
        &config.pde_manager.state_dir,
        JournalStats::new(journal.clone()).load(),
    ) {
        (None, _) => tracing::info!(
            "No pde_manager.state_dir: the learner lives in memory only; what it learns is lost at exit."
        ),
        (Some(dir), Ok(stored)) => {
            tracing::info!(dir = %dir.display(), statistics = stored.len(), "Learner loaded.");
            learner.load(stored);
        }
        (Some(dir), Err(error)) => tracing::warn!(
            dir = %dir.display(),
            %error,
            "Could not read the learner's statistics; starting without them."
        ),
    }
    learner
}

/// The [`Flusher`] that writes the learner's changes (and `health`, the registry the endpoints'
/// breakers and probes write) to the journal's store every few seconds, with the snapshot file
/// `procos stats` reads; run it until after the manager has drained.
pub fn flusher(
    config: &FileConfig,
    journal: &Journal,
    learner: Arc<Learner>,
    health: Arc<HealthRegistry>,
) -> Flusher {
    let listed = crate::learner::report::listed(config);
    let store = JournalStats::new(journal.clone());
    let flusher = Flusher::new(learner, store, health, listed, FLUSH_EVERY);
    match &config.pde_manager.state_dir {
        Some(dir) => flusher.with_snapshot(dir),
        None => flusher,
    }
}

/// Starts the admin server (unless `admin.enabled: false`) on `tracker` until `stop`, with the
/// config stamps (version 1, then each applied reload's) and the feed of finished tasks.
#[allow(clippy::too_many_arguments)] // the kernel's parts, each named once, called once
async fn admin(
    config: &FileConfig,
    stamp: crate::config::stamp::StampReceiver,
    camunda: &CamundaClient,
    cx: &BuildContext,
    manager: &Manager,
    learner: Arc<Learner>,
    tracker: &TaskTracker,
    (shutdown, stop): (&CancellationToken, &CancellationToken),
) -> Result<Option<Arc<crate::admin::AdminState>>, crate::admin::AdminError> {
    if !config.admin.enabled {
        return Ok(None);
    }
    let state = crate::admin::AdminState::new(
        config,
        crate::admin::Parts {
            worker_id: camunda.worker_id().to_string(),
            stamp,
            health: cx.health().clone(),
            learner,
            manager: manager.status(),
            shutdown: shutdown.clone(),
        },
    );
    state.collect(manager.pipeline().events(), tracker, stop.clone());
    crate::admin::bind(config, state.clone(), tracker, stop.clone()).await?;
    Ok(Some(state))
}

/// replicas: `flusher` writing the learner to the replicas' shared store (`pde_manager.state`)
/// as `worker_id`, when one is configured. Call it inside the runtime (the pool's upkeep).
pub fn with_shared_store(
    config: &FileConfig,
    flusher: Flusher,
    worker_id: &str,
) -> Result<Flusher, crate::learner::store::postgres::SharedError> {
    let Some(url) = &config.pde_manager.state else {
        return Ok(flusher);
    };
    let shared = crate::learner::store::postgres::SharedStats::new(url, worker_id)?;
    tracing::info!(store = %shared.location(), worker_id, "The learner's statistics are shared through PostgreSQL.");
    Ok(flusher.with_shared(shared))
}

// ---- config reload (kernel/reload.rs): what the caller hands over, and the stamp channel ----

/// What the caller hands the kernel besides the config.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// The config file, reloaded on SIGHUP and on change (`None`: no reload).
    pub reload: Option<reload::Source>,
    /// The feed of finished tasks the manager publishes to (the dev summary subscribes first).
    pub events: crate::telemetry::events::TaskEvents,
}

/// The stamp of the config procos starts with (version 1), over the text it was loaded from
/// when known.
fn first_stamp(options: &RunOptions) -> (crate::config::stamp::StampSender, String) {
    let text = options
        .reload
        .as_ref()
        .map(|s| s.text.clone())
        .unwrap_or_default();
    let stamp = crate::config::stamp::ConfigStamp::new(1, &text);
    (tokio::sync::watch::Sender::new(stamp), text)
}

// ---- end of config reload ----

/// Boots and runs procos until `shutdown` fires and running tasks are drained (no reload).
pub async fn run(config: FileConfig, shutdown: CancellationToken) -> Result<(), KernelError> {
    run_with(config, RunOptions::default(), shutdown).await
}

/// [`run`] with options: the config file to reload, the feed of finished tasks.
pub async fn run_with(
    config: FileConfig,
    options: RunOptions,
    shutdown: CancellationToken,
) -> Result<(), KernelError> {
    // Before anything slow: SIGHUP's default action would end the process.
    let hangups = match options.reload {
        Some(_) => supervisor::hangups()
            .map_err(|e| tracing::warn!(error = %e, "Cannot listen for SIGHUP; reload by editing the file."))
            .ok(),
        None => None,
    };
    let (stamps, config_text) = first_stamp(&options);
    // Opening reads the whole file and may fsync: not on a runtime thread.
    let opening = config.clone();
    let (journal, worker_id, learner) = tokio::task::spawn_blocking(move || {
        let (journal, worker_id) = journal(&opening)?;
        let learner = learner(&opening, &journal);
        Ok::<_, crate::journal::StoreError>((journal, worker_id, learner))
    })
    .await
    .map_err(|e| crate::journal::StoreError::Write(format!("opening the journal: {e}")))??;
    let camunda = client_as(&config, worker_id)?;
    // Background work (the endpoints' probes, the deploy watcher) runs on this tracker and stops
    // with `shutdown`, or with this function on an early return (the guard cancels the child).
    let background = TaskTracker::new();
    let stop = shutdown.child_token();
    let _stop_on_return = stop.clone().drop_guard();
    // The learner goes into the context for the `procos` endpoint (system processes).
    let cx = BuildContext::new(stop.clone(), background.clone()).with_learner(learner.clone());
    let (endpoints, stops) = build_stoppable_endpoints(&config, &cx, |_| true)?;
    let flusher = flusher(&config, &journal, learner.clone(), cx.health().clone());
    let flusher = with_shared_store(&config, flusher, camunda.worker_id())?;
    let manager = Manager::with_events(
        &config,
        camunda.clone(),
        &endpoints,
        journal,
        learner.clone(),
        options.events.clone(),
    )?;
    // `base_url` is redacted: the URL may carry `${VAR}` credentials (a token in the query).
    tracing::info!(url = %camunda.base_url(), worker_id = camunda.worker_id(), "procos starting.");
    // Admin server (issue 12): up before boot, so /readyz says what it waits for; it stops
    // after the drain (not at SIGTERM), so /readyz answers 503 and /metrics is scraped while
    // running tasks finish.
    let admin_stop = CancellationToken::new();
    let _admin_stop_on_return = admin_stop.clone().drop_guard();
    let admin = admin(
        &config,
        stamps.subscribe(),
        &camunda,
        &cx,
        &manager,
        learner,
        &background,
        (&shutdown, &admin_stop),
    )
    .await?;
    match boot::wait_for_engine(
        &camunda,
        config.camunda.boot_timeout,
        config.camunda.backoff.clone(),
        &shutdown,
    )
    .await
    {
        Ok(_) => {
            if let Some(a) = &admin {
                a.readiness().engine_answered();
            }
        }
        Err(boot::BootError::Stopped) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let flusher_stop = CancellationToken::new();
    let flushing = background.spawn(flusher.run(flusher_stop.clone()));
    let deployer = Deployer::new(
        camunda.clone(),
        config.deploy.clone(),
        config.camunda.backoff.clone(),
    );
    deployer.deploy_at_boot(&shutdown).await;
    if let Some(a) = &admin {
        a.set_deployer(deployer.clone());
        a.readiness().deployed();
        a.readiness().fetching(true);
    }
    if config.deploy.watch {
        background.spawn(deployer.watch(shutdown.clone()));
    }
    if let Some(source) = options.reload {
        let running = reload::Snapshot::new(config.clone(), &config_text);
        let reloader = reload::Reloader::new(
            source,
            running,
            (endpoints, stops),
            cx,
            manager.handle(),
            stamps,
        );
        background.spawn(reloader.run(hangups, shutdown.clone()));
    }
    manager.run(shutdown.clone()).await;
    // After the drain: the last tasks' observations are in the learner now.
    flusher_stop.cancel();
    if tokio::time::timeout(Duration::from_secs(10), flushing)
        .await
        .is_err()
    {
        tracing::warn!("The learner's last flush did not finish; its latest figures are lost.");
    }
    stop.cancel();
    admin_stop.cancel();
    background.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), background.wait()).await;
    tracing::info!("procos stopped.");
    Ok(())
}
