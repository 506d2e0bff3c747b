//! The admin server (issue 12): one axum server on `admin.listen` for operators and
//! orchestrators.
//!
//! ```text
//!  GET /          status page (page.html, embedded; polls /api/status every 1.5 s)
//!  GET /api/status  JSON: version, uptime, config stamp, pools, topics, endpoints, recent
//!                   failures, per-second history, the last deployment (status.rs)
//!  GET /metrics   Prometheus text (crate::telemetry::metrics)
//!  GET /healthz   200 while the process runs                        ─┐ open without
//!  GET /readyz    200 once engine answered + deployed + fetching   ─┘ the token
//!                 (503 with the reason otherwise, and while draining)
//! ```
//!
//! The kernel builds an [`AdminState`] from what it already has (the health registry, the
//! learner, the manager's [`ManagerStatus`], the feed of finished tasks, the config stamp),
//! binds with [`bind`] before it waits for the engine (so `/readyz` says why it is not ready
//! yet), and flips the [`Readiness`] flags as boot goes on. The server and the history
//! collector run on the kernel's tracker and stop with its token. Nothing here shows variable
//! values or secrets: failures carry ids, classes and redacted messages only.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::FileConfig;
use crate::config::secret::Secret;
use crate::config::stamp::StampReceiver;
use crate::endpoints::health::HealthRegistry;
use crate::kernel::Deployer;
use crate::learner::Learner;
use crate::manager::status::ManagerStatus;
use crate::telemetry::events::TaskEvents;

pub mod auth;
pub mod history;
pub mod status;

use history::History;

/// The status page: one self-contained file (inline CSS and JS, no CDN).
const PAGE: &str = include_str!("page.html");

/// The admin server could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// `admin.listen` could not be bound.
    #[error(
        "admin.listen {addr}: cannot listen: {source} (set admin.listen or --metrics-listen to a free address, e.g. 127.0.0.1:0, or admin.enabled: false)"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The Prometheus recorder could not be installed.
    #[error("admin server: {0}")]
    Metrics(String),
}

/// What `/readyz` waits for, set by the kernel as boot goes on.
#[derive(Debug, Default)]
pub struct Readiness {
    engine: AtomicBool,
    deployed: AtomicBool,
    fetching: AtomicBool,
}

impl Readiness {
    /// The engine answered (boot is over).
    pub fn engine_answered(&self) {
        self.engine.store(true, Ordering::Relaxed);
    }

    /// The boot deployment is done.
    pub fn deployed(&self) {
        self.deployed.store(true, Ordering::Relaxed);
    }

    /// The fetch loop runs (`false`: it stopped).
    pub fn fetching(&self, running: bool) {
        self.fetching.store(running, Ordering::Relaxed);
    }

    /// `None` when ready, else why not.
    pub fn not_ready(&self) -> Option<&'static str> {
        if !self.engine.load(Ordering::Relaxed) {
            Some("waiting for the engine: it has not answered yet")
        } else if !self.deployed.load(Ordering::Relaxed) {
            Some("deploying bpmn/: the boot deployment is not done yet")
        } else if !self.fetching.load(Ordering::Relaxed) {
            Some("the fetch loop is not running")
        } else {
            None
        }
    }
}

/// Everything the routes read; one per daemon.
#[derive(Debug)]
pub struct AdminState {
    started: Instant,
    started_at: SystemTime,
    worker_id: String,
    token: Option<Secret>,
    stamp: StampReceiver,
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
    /// The manager's pools, topics and endpoints, as the generation in force has them.
    manager: ManagerStatus,
    /// (name, kind) of every endpoint of the start-up config: shown only when `manager` is a
    /// fixed view (tests); a live one follows reloads.
    endpoints: Vec<(String, &'static str)>,
    health: Arc<HealthRegistry>,
    learner: Arc<Learner>,
    history: Mutex<History>,
    deployer: Mutex<Option<Deployer>>,
}

/// What the kernel hands the admin server.
pub struct Parts {
    /// The worker id sent to the engine.
    pub worker_id: String,
    /// The config in use (reloads send new stamps).
    pub stamp: StampReceiver,
    /// The endpoints' shared health.
    pub health: Arc<HealthRegistry>,
    /// What routing learned.
    pub learner: Arc<Learner>,
    /// The manager's pools, topics and endpoints (a live view follows config reloads).
    pub manager: ManagerStatus,
    /// `shutdown`: `/readyz` answers 503 once it fires (draining).
    pub shutdown: CancellationToken,
}

impl AdminState {
    /// The state for `config` (its `admin:` token and Cockpit link, its endpoints).
    pub fn new(config: &FileConfig, parts: Parts) -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            started_at: SystemTime::now(),
            worker_id: parts.worker_id,
            token: config.admin.token().cloned(),
            stamp: parts.stamp,
            readiness: Arc::default(),
            shutdown: parts.shutdown,
            manager: parts.manager,
            endpoints: endpoint_kinds(config),
            health: parts.health,
            learner: parts.learner,
            history: Mutex::new(History::new(
                config.admin.cockpit_template(&config.camunda.url),
            )),
            deployer: Mutex::new(None),
        })
    }

    /// The flags `/readyz` reads.
    pub fn readiness(&self) -> &Arc<Readiness> {
        &self.readiness
    }

    /// The deployer whose last deployment `/api/status` shows.
    pub fn set_deployer(&self, deployer: Deployer) {
        if let Ok(mut d) = self.deployer.lock() {
            *d = Some(deployer);
        }
    }

    /// Records every task `events` publishes from now on into the history, until `stop`.
    pub fn collect(
        self: &Arc<Self>,
        events: &TaskEvents,
        tracker: &TaskTracker,
        stop: CancellationToken,
    ) {
        let mut rx = events.subscribe();
        let state = self.clone();
        tracker.spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                let event = tokio::select! {
                    e = rx.recv() => e,
                    _ = stop.cancelled() => return,
                };
                match event {
                    Ok(e) => {
                        if let Ok(mut h) = state.history.lock() {
                            h.record(&e);
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "The admin history missed task events.");
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }
}

fn endpoint_kinds(config: &FileConfig) -> Vec<(String, &'static str)> {
    config
        .endpoints
        .iter()
        .map(|(n, e)| (n.clone(), e.kind()))
        .collect()
}

/// The routes, behind the token check.
pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/status", get(api_status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .with_state(state)
}

/// Binds `admin.listen` (installing the Prometheus recorder first) and serves on `tracker`
/// until `stop`, with the recorder's [`upkeep`](crate::telemetry::metrics::upkeep) beside it;
/// logs and returns the bound address.
pub async fn bind(
    config: &FileConfig,
    state: Arc<AdminState>,
    tracker: &TaskTracker,
    stop: CancellationToken,
) -> Result<SocketAddr, AdminError> {
    crate::telemetry::metrics::install().map_err(AdminError::Metrics)?;
    let addr = config.admin.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| AdminError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| AdminError::Bind { addr, source })?;
    tracing::info!(
        address = %bound,
        token = state.token.is_some(),
        "Admin server listening."
    );
    let app = router(state);
    tracker.spawn(crate::telemetry::metrics::upkeep(stop.clone()));
    tracker.spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::warn!(%error, "The admin server stopped.");
        }
    });
    Ok(bound)
}

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Html(PAGE),
    )
        .into_response()
}

async fn api_status(State(state): State<Arc<AdminState>>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(status::build(&state)),
    )
        .into_response()
}

async fn metrics() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::telemetry::metrics::render(),
    )
        .into_response()
}

async fn healthz() -> Response {
    Json(json!({"status": "alive"})).into_response()
}

/// `None` when ready, else why not (draining counts as not ready).
fn not_ready(state: &AdminState) -> Option<&'static str> {
    if state.shutdown.is_cancelled() {
        return Some("shutting down: draining running tasks");
    }
    state.readiness.not_ready()
}

async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    match not_ready(&state) {
        None => Json(json!({"ready": true})).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": reason})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests;
