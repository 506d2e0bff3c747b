//! Deploys the deploy dir's `.bpmn`, `.dmn` and `.form` files as one deployment, and redeploys
//! when files are added or changed.
//!
//! Every deployment sends all files with `deploy-changed-only`: the engine compares them with the
//! last deployment of the same name and source and versions only what changed, so an unchanged
//! file never gets a new version. A file the engine rejects (parse error) is logged with its
//! line and column and procos keeps running; the next change retries.

use std::path::{Path, PathBuf};

use notify_debouncer_mini::{DebounceEventResult, new_debouncer, notify::RecursiveMode};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::camunda::{Backoff, CamundaClient, CamundaError, DeploymentRequest, Resource};
use crate::config::file::{BackoffConfig, DeployConfig};

/// File endings the engine deploys.
pub const DEPLOYABLE: [&str; 3] = ["bpmn", "dmn", "form"];

/// A deployment that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The deploy dir could not be read.
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The engine refused or could not be reached.
    #[error(transparent)]
    Engine(#[from] CamundaError),
}

/// Deploys the deploy dir.
#[derive(Debug, Clone)]
pub struct Deployer {
    camunda: CamundaClient,
    config: DeployConfig,
    backoff: BackoffConfig,
}

impl Deployer {
    /// A deployer for this config; engine outages are retried with `backoff`.
    pub fn new(camunda: CamundaClient, config: DeployConfig, backoff: BackoffConfig) -> Self {
        Self {
            camunda,
            config,
            backoff,
        }
    }

    /// Reads every deployable file under the dir, sorted by name, named relative to the dir.
    pub fn collect(&self) -> Result<Vec<Resource>, DeployError> {
        let mut out = Vec::new();
        collect_dir(&self.config.dir, &self.config.dir, &mut out)?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Deploys once. Files the engine rejects are logged; the error is returned.
    pub async fn deploy(&self) -> Result<(), DeployError> {
        let this = self.clone();
        let resources = tokio::task::spawn_blocking(move || this.collect())
            .await
            .map_err(|e| DeployError::Read {
                path: self.config.dir.clone(),
                source: std::io::Error::other(e),
            })??;
        if resources.is_empty() {
            tracing::warn!(dir = %self.config.dir.display(), "Nothing to deploy: no .bpmn, .dmn or .form files.");
            return Ok(());
        }
        let names: Vec<String> = resources.iter().map(|r| r.name.clone()).collect();
        let request = DeploymentRequest {
            name: self.config.deployment_name.clone(),
            source: self.config.source.clone(),
            tenant_id: self.config.tenant_id.clone(),
            changed_only: true,
            resources,
        };
        match self.camunda.deploy(&request).await {
            Ok(d) => {
                let definitions: Vec<String> = d
                    .deployed_process_definitions
                    .unwrap_or_default()
                    .values()
                    .map(|v| format!("{}:v{}", v["key"].as_str().unwrap_or("?"), v["version"]))
                    .collect();
                if definitions.is_empty() {
                    tracing::info!(
                        files = names.len(),
                        "Deployment unchanged: no file differs from the last deployment."
                    );
                } else {
                    tracing::info!(deployment_id = %d.id, files = %names.join(", "), definitions = %definitions.join(", "), "Deployed.");
                }
                Ok(())
            }
            Err(e) => {
                log_rejection(&e);
                Err(e.into())
            }
        }
    }

    /// Deploys at boot, retrying engine outages (5xx, I/O) with backoff; a rejected file is
    /// logged and boot goes on.
    pub async fn deploy_at_boot(&self, shutdown: &CancellationToken) {
        let mut backoff = Backoff::new(self.backoff.clone());
        loop {
            match self.deploy().await {
                Err(DeployError::Engine(e)) if e.is_retryable() && backoff.failures() < 8 => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "Deployment failed; retrying.");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
                Err(DeployError::Read { path, source }) => {
                    tracing::error!(path = %path.display(), error = %source, "Cannot read the deploy dir; nothing deployed.");
                    return;
                }
                _ => return,
            }
        }
    }

    /// Watches the dir and redeploys after changes settle, until `shutdown`.
    pub async fn watch(self, shutdown: CancellationToken) {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let handler = move |result: DebounceEventResult| {
            let relevant = match result {
                Ok(events) => events.iter().any(|e| is_deployable(&e.path)),
                Err(_) => true,
            };
            if relevant {
                let _ = tx.send(());
            }
        };
        let mut debouncer = match new_debouncer(self.config.debounce, handler) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "Cannot watch the deploy dir; changes need a restart.");
                return;
            }
        };
        if let Err(e) = debouncer
            .watcher()
            .watch(&self.config.dir, RecursiveMode::Recursive)
        {
            tracing::error!(dir = %self.config.dir.display(), error = %e, "Cannot watch the deploy dir; changes need a restart.");
            return;
        }
        tracing::info!(dir = %self.config.dir.display(), "Watching for BPMN, DMN and form changes.");
        let mut backoff = Backoff::new(self.backoff.clone());
        let mut retry_at: Option<tokio::time::Instant> = None;
        loop {
            let retry = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                got = rx.recv() => {
                    if got.is_none() {
                        return;
                    }
                    tracing::info!("Files changed; redeploying.");
                }
                _ = retry => tracing::info!("Retrying the redeployment."),
            }
            while rx.try_recv().is_ok() {}
            retry_at = None;
            match self.deploy().await {
                Ok(()) => backoff.reset(),
                // The engine was away: the change must not wait for the next edit.
                Err(DeployError::Engine(e)) if e.is_retryable() => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "Redeployment failed; retrying.");
                    retry_at = Some(tokio::time::Instant::now() + delay);
                }
                // Rejected files were logged with their line and column; the next edit retries.
                Err(DeployError::Engine(_)) => {}
                Err(e) => tracing::error!(error = %e, "Redeployment failed."),
            }
        }
    }
}

fn is_deployable(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| DEPLOYABLE.contains(&e))
}

fn collect_dir(root: &Path, dir: &Path, out: &mut Vec<Resource>) -> Result<(), DeployError> {
    let read = |path: &Path, source| DeployError::Read {
        path: path.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(|e| read(dir, e))? {
        let path = entry.map_err(|e| read(dir, e))?.path();
        if path.is_dir() {
            collect_dir(root, &path, out)?;
        } else if is_deployable(&path) {
            let content = std::fs::read(&path).map_err(|e| read(&path, e))?;
            let name = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push(Resource { name, content });
        }
    }
    Ok(())
}

/// Logs a refused deployment: one line per parse error, with resource, line and column.
fn log_rejection(e: &CamundaError) {
    let CamundaError::Engine {
        details: Some(details),
        message,
        ..
    } = e
    else {
        tracing::error!(error = %e, "Deployment failed.");
        return;
    };
    let mut any = false;
    for (resource, report) in details.as_object().into_iter().flatten() {
        for err in report["errors"].as_array().into_iter().flatten() {
            any = true;
            tracing::error!(
                resource = %resource,
                line = err["line"].as_i64().unwrap_or(0),
                column = err["column"].as_i64().unwrap_or(0),
                element = err["mainBpmnElementId"].as_str().unwrap_or(""),
                error = err["message"].as_str().unwrap_or(""),
                "The engine rejected a file; fix it and save to redeploy."
            );
        }
    }
    if !any {
        tracing::error!(error = %message, "Deployment rejected.");
    }
}
