//! Deploys the deploy dir's `.bpmn`, `.dmn` and `.form` files as one deployment, and redeploys
//! when files are added or changed. Subfolders count too, each file named by its path relative
//! to the dir (`system/health_monitor.bpmn`, the shipped system processes), and are watched.
//!
//! Every deployment sends all files with `deploy-changed-only`: the engine compares them with the
//! last deployment of the same name and source and versions only what changed, so an unchanged
//! file never gets a new version. A file the engine rejects (parse error) is logged with its
//! line and column and procos keeps running; the next change retries.
//!
//! Each deployment takes the engine's global deployment lock, so the watcher sends one only
//! for a change of content:
//!
//! ```text
//! file event ─► content kind? (create, write, remove, rename; never open/read/close-after-read)
//!            ─► quiet for `debounce` ─► read the files ─► fingerprint = what was last deployed?
//!                                                           yes ─► nothing sent
//!                                                           no  ─► deployment/create
//! ```

use std::hash::{DefaultHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use notify::event::{AccessKind, AccessMode, MetadataKind, ModifyKind};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::camunda::{CamundaClient, CamundaError, DeploymentRequest, Resource};
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
    /// Fingerprint of the files the engine last accepted; the same files are not sent again.
    deployed: Arc<Mutex<Option<u64>>>,
    /// The last deployment the engine accepted, for `/api/status`.
    last: Arc<Mutex<Option<Deployed>>>,
}

/// A deployment the engine accepted: what `/api/status` shows as the deployed resources.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Deployed {
    /// The engine's deployment id.
    pub deployment_id: String,
    /// The files sent, named relative to the deploy dir.
    pub resources: Vec<String>,
    /// When the engine accepted it (unix seconds).
    pub at: f64,
}

impl Deployer {
    /// A deployer for this config; engine outages are retried with `backoff`.
    pub fn new(camunda: CamundaClient, config: DeployConfig, backoff: BackoffConfig) -> Self {
        Self {
            camunda,
            config,
            backoff,
            deployed: Arc::new(Mutex::new(None)),
            last: Arc::new(Mutex::new(None)),
        }
    }

    /// The last deployment the engine accepted from this deployer (or a clone of it).
    pub fn last_deployment(&self) -> Option<Deployed> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    /// Reads every deployable file under the dir, sorted by name, named relative to the dir.
    pub fn collect(&self) -> Result<Vec<Resource>, DeployError> {
        let mut out = Vec::new();
        collect_dir(&self.config.dir, &self.config.dir, &mut out)?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Deploys once, unless the files are byte for byte those the engine last accepted from
    /// this deployer (then nothing is sent). Files the engine rejects are logged; the error is
    /// returned.
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
        let fingerprint = fingerprint(&resources);
        if self.last_deployed() == Some(fingerprint) {
            tracing::debug!(
                files = resources.len(),
                "Files unchanged since the last deployment; nothing sent."
            );
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
                if let Ok(mut last) = self.deployed.lock() {
                    *last = Some(fingerprint);
                }
                if let Ok(mut last) = self.last.lock() {
                    *last = Some(Deployed {
                        deployment_id: d.id.clone(),
                        resources: names.clone(),
                        at: crate::endpoints::health::now_secs(),
                    });
                }
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

    fn last_deployed(&self) -> Option<u64> {
        self.deployed.lock().ok().and_then(|last| *last)
    }

    /// Watches the dir and redeploys after its content changes and then stays quiet for
    /// `debounce`, until `shutdown`. Reads of the files set off nothing.
    pub async fn watch(self, shutdown: CancellationToken) {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let handler = move |result: notify::Result<Event>| {
            // A watcher error may mean missed events: look at the files again.
            if result.as_ref().map_or(true, changes_content) {
                let _ = tx.send(());
            }
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "Cannot watch the deploy dir; changes need a restart.");
                return;
            }
        };
        if let Err(e) = watcher.watch(&self.config.dir, RecursiveMode::Recursive) {
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
                    if got.is_none() || !settled(&mut rx, self.config.debounce, &shutdown).await {
                        return;
                    }
                }
                _ = retry => tracing::info!("Retrying the redeployment."),
            }
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

/// Waits until no change came for `quiet`; false when the watch should end.
async fn settled(
    rx: &mut mpsc::UnboundedReceiver<()>,
    quiet: std::time::Duration,
    shutdown: &CancellationToken,
) -> bool {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(quiet) => return true,
            got = rx.recv() => if got.is_none() { return false },
        }
    }
}

/// Could this event have changed what gets deployed? Creating, writing, removing or renaming a
/// deployable file (or a folder, which may hold some) can; opening, reading and closing a file
/// read-only cannot, nor can a change of permissions or access time.
fn changes_content(event: &Event) -> bool {
    let kind_may_change = may_change_a_file(&event.kind);
    let folder_or_rename = matches!(
        event.kind,
        EventKind::Create(notify::event::CreateKind::Folder)
            | EventKind::Remove(notify::event::RemoveKind::Folder)
            | EventKind::Modify(ModifyKind::Name(_))
    );
    kind_may_change && (folder_or_rename || event.paths.iter().any(|p| is_deployable(p)))
}

/// A fingerprint of the files' names and bytes (SipHash; it only has to tell this process's own
/// successive reads of the dir apart).
fn fingerprint(resources: &[Resource]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for r in resources {
        hasher.write(r.name.as_bytes());
        hasher.write_u8(0);
        hasher.write_usize(r.content.len());
        hasher.write(&r.content);
    }
    hasher.finish()
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

/// Whether an event of this kind can change a file's content: creating, writing, removing or
/// renaming can; opening, reading, closing read-only, or a change of permissions or access time
/// cannot.
fn may_change_a_file(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::WriteTime)) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Create(_)
        | EventKind::Remove(_)
        | EventKind::Modify(_)
        | EventKind::Any
        | EventKind::Other => true,
    }
}

#[cfg(test)]
mod tests {
    use notify::event::{CreateKind, DataChange, RemoveKind, RenameMode};

    use super::*;

    fn event(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn reads_of_a_bpmn_file_are_not_changes() {
        use notify::event::AccessKind::{Close, Open, Read};
        for kind in [
            EventKind::Access(Open(AccessMode::Any)),
            EventKind::Access(Read),
            EventKind::Access(Close(AccessMode::Read)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Permissions)),
        ] {
            assert!(!changes_content(&event(kind, "bpmn/a.bpmn")), "{kind:?}");
        }
    }

    #[test]
    fn writes_creations_removals_and_renames_are_changes() {
        for kind in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Content)),
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Remove(RemoveKind::File),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
        ] {
            assert!(changes_content(&event(kind, "bpmn/a.bpmn")), "{kind:?}");
        }
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Content));
        assert!(
            !changes_content(&event(write, "bpmn/notes.txt")),
            "not a deployable file"
        );
        assert!(changes_content(&event(
            EventKind::Create(CreateKind::Folder),
            "bpmn/sub"
        )));
    }

    #[test]
    fn files_in_subfolders_deploy_under_their_relative_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("system/deeper")).expect("dirs");
        for (name, body) in [
            ("a.bpmn", "a"),
            ("system/health_monitor.bpmn", "h"),
            ("system/deeper/rules.dmn", "r"),
            ("system/notes.txt", "n"),
        ] {
            std::fs::write(dir.path().join(name), body).expect("write");
        }
        let mut out = Vec::new();
        collect_dir(dir.path(), dir.path(), &mut out).expect("collect");
        let mut names: Vec<&str> = out.iter().map(|r| r.name.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "a.bpmn",
                "system/deeper/rules.dmn",
                "system/health_monitor.bpmn"
            ]
        );
    }

    #[test]
    fn the_shipped_bpmn_dir_holds_the_health_monitor() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("bpmn");
        let mut out = Vec::new();
        collect_dir(&root, &root, &mut out).expect("collect");
        let monitor = out
            .iter()
            .find(|r| r.name == "system/health_monitor.bpmn")
            .expect("bpmn/system/health_monitor.bpmn is deployed with the examples");
        let xml = String::from_utf8_lossy(&monitor.content);
        assert!(xml.contains("camunda:topic=\"procos_health\"") && xml.contains("R/PT1M"));
    }

    #[test]
    fn the_fingerprint_tells_names_and_bytes_apart() {
        let r = |name: &str, content: &str| Resource {
            name: name.into(),
            content: content.into(),
        };
        let base = fingerprint(&[r("a.bpmn", "x"), r("b.bpmn", "y")]);
        assert_eq!(base, fingerprint(&[r("a.bpmn", "x"), r("b.bpmn", "y")]));
        assert_ne!(base, fingerprint(&[r("a.bpmn", "x"), r("b.bpmn", "z")]));
        assert_ne!(base, fingerprint(&[r("a.bpmn", "xb"), r(".bpmn", "y")]));
        assert_ne!(base, fingerprint(&[r("a.bpmn", "x")]));
    }
}
