//! Live configuration: on SIGHUP, or when the config file's content changes, the file is loaded
//! and validated exactly as at start-up and, if valid, applied to the running manager without
//! dropping a task.
//!
//! ```text
//!  SIGHUP ──────────────────────────┐
//!  file event (content kind, quiet ─┴─► read text ─► same as last seen? ─► nothing
//!  for DEBOUNCE, the file's name or        │ no
//!  `..data`, a ConfigMap's swap)           │
//!                                          ▼
//!                        config::load_str (same checks as start-up)
//!                          ├─ problems ─► one ERROR line per problem with its YAML path;
//!                          │              the running config stays
//!                          ├─ a key that cannot change live ─► one ERROR line per key
//!                          │              ("restart procos to change it"); nothing applied
//!                          └─ valid ─► diff: rebuild added/changed endpoints (layer stack),
//!                                      ManagerHandle::apply (new generation: topics, pools),
//!                                      stamp version +1, one INFO line
//! ```
//!
//! A reload that touches a key which cannot change while procos runs (see [`FIXED`]) is
//! refused *whole*: applying the rest would leave a running config that matches no file, and
//! the stamp in `/api/status` promises the file on disk is the one in use.
//!
//! What a reload keeps: the learner (daemon-wide, so its statistics), the journal, the feed of
//! finished tasks, the pools (resized in place, their running tasks counted against the new
//! size), and topic runtimes (with their result cache) whose topic, pool and endpoints did not
//! change. Tasks already running finish on the endpoints and topic settings they started with;
//! a removed topic is no longer fetched and its running tasks complete and report normally.
//! Each endpoint's background probes run on a token of its own, cancelled when a reload
//! replaces or removes it; a removed endpoint's health entry is dropped. Endpoints built over
//! the topics' endpoint lists (`procos`, `sub_pde`: see [`reads_topics`]) are rebuilt whenever
//! those lists change, even if their own entry did not.
//!
//! The watcher follows the config file's folder: editors that save by a rename, and a
//! Kubernetes ConfigMap volume, whose update swaps the `..data` symlink the file is reached
//! through ([`CONFIGMAP_DATA`]). It asks the kernel (inotify) only for the events that can
//! change what the config path reads ([`FOLDER_EVENTS`]): a log written beside the config must
//! not wake it on every line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use inotify::{EventMask, Inotify, WatchMask};
use serde_yaml::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::config::FileConfig;
use crate::config::stamp::{ConfigStamp, StampSender};
use crate::endpoints::{BuildContext, Endpoint};
use crate::manager::{ManagerHandle, build_stoppable_endpoints};

/// Quiet time after the last event on the config file before it is read (an editor's save is
/// often several events: truncate, write, rename).
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// Keys that cannot change while procos runs, with why; a reload changing one is refused.
pub const FIXED: [&str; 13] = [
    "camunda.url",
    "camunda.auth",
    "camunda.worker_id",
    "camunda.request_timeout",
    "camunda.boot_timeout",
    "camunda.backoff",
    "camunda.max_connections",
    "pde_manager.state_dir",
    "pde_manager.state",
    "pde_manager.journal_retention",
    "deploy",
    "admin",
    "telemetry",
];

/// Where the running config came from, so it can be read again.
#[derive(Debug, Clone)]
pub struct Source {
    /// The config file (`--config`).
    pub path: PathBuf,
    /// `camunda.url` as the command line set it over the file's (`procos dev` points it at its
    /// own engine); set on every reloaded config too.
    pub camunda_url: Option<String>,
    /// The text the running config was loaded from ([`load_file`]): the first stamp and the
    /// reloader's "running" text are this, never a second read (an edit in between would be
    /// taken for the running config, and never applied).
    pub text: String,
}

/// Reads and loads the config file exactly as [`crate::config::load`] does (bounded read,
/// `${VAR}` from the process environment, validation), keeping the text that was loaded for
/// [`Source::text`].
pub fn load_file(path: &Path) -> Result<(FileConfig, String), crate::config::ConfigError> {
    let (loaded, text) = load_file_noted(path)?;
    Ok((loaded.config?, text))
}

/// [`load_file`], with the notes on the design's vocabulary the file uses (given whether or not
/// it is valid). Only a file that cannot be read is an error here.
pub fn load_file_noted(
    path: &Path,
) -> Result<(crate::config::Loaded, String), crate::config::ConfigError> {
    let text = read_text(path)?;
    let loaded = crate::config::load_str_noted(&text, path, &|name| std::env::var(name).ok());
    Ok((loaded, text))
}
/// One loaded config with the YAML tree it came from (anchors merged), for the diff.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The validated config, as the manager runs it.
    pub config: FileConfig,
    /// The file's YAML tree, before interpolation: equal subtrees mean equal settings (the
    /// process's environment does not change while it runs).
    pub raw: Value,
    /// The file's text.
    pub text: String,
}

impl Snapshot {
    /// A snapshot of `config`, loaded from `text`.
    pub fn new(config: FileConfig, text: &str) -> Self {
        let mut raw: Value = serde_yaml::from_str(text).unwrap_or(Value::Null);
        // The text was loaded successfully, so merges resolve; if not, the diff sees Null.
        let _ = raw.apply_merge();
        Self {
            config,
            raw,
            text: text.to_string(),
        }
    }

    /// The raw subtree at a dotted path (`Null` when absent).
    fn at(&self, path: &str) -> &Value {
        path.split('.')
            .try_fold(&self.raw, |v, key| v.get(key))
            .unwrap_or(&Value::Null)
    }
}

/// Names added, removed and changed in one section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    /// In the new config only.
    pub added: Vec<String>,
    /// In the old config only.
    pub removed: Vec<String>,
    /// In both, with different settings.
    pub changed: Vec<String>,
}

impl Delta {
    fn of<'a, T>(
        old: impl IntoIterator<Item = (&'a String, T)>,
        new: impl IntoIterator<Item = (&'a String, T)>,
        differs: impl Fn(&str) -> bool,
    ) -> Self {
        let old: BTreeSet<&String> = old.into_iter().map(|(k, _)| k).collect();
        let new: BTreeSet<&String> = new.into_iter().map(|(k, _)| k).collect();
        Self {
            added: new.difference(&old).map(|s| s.to_string()).collect(),
            removed: old.difference(&new).map(|s| s.to_string()).collect(),
            changed: old
                .intersection(&new)
                .filter(|n| differs(n))
                .map(|s| s.to_string())
                .collect(),
        }
    }

    /// Added or changed: what must be built.
    pub fn built(&self) -> impl Iterator<Item = &String> {
        self.added.iter().chain(&self.changed)
    }

    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// What differs between the running config and a reloaded one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// `topics:` entries.
    pub topics: Delta,
    /// `endpoints:` entries.
    pub endpoints: Delta,
    /// `pde_manager.pools:` entries.
    pub pools: Delta,
    /// Keys of [`FIXED`] whose value differs: the reload is refused.
    pub fixed: Vec<&'static str>,
    /// Did `camunda.lock_duration` (every topic's default lock) change?
    pub default_lock: bool,
}

impl Changes {
    /// Compares two loaded configs, entry by entry.
    pub fn between(old: &Snapshot, new: &Snapshot) -> Self {
        let (o, n) = (&old.config, &new.config);
        let fixed = FIXED
            .into_iter()
            .filter(|key| fixed_differs(old, new, key))
            .collect();
        let mut endpoints = Delta::of(
            &o.endpoints,
            &n.endpoints,
            raw_differs(old, new, "endpoints"),
        );
        // Endpoints built over the topics' endpoint lists are stale once those lists change.
        if topic_endpoints(o) != topic_endpoints(n) {
            let stale = n.endpoints.iter().filter(|(name, e)| {
                reads_topics(e)
                    && o.endpoints.contains_key(*name)
                    && !endpoints.changed.contains(name)
            });
            let stale: Vec<String> = stale.map(|(name, _)| name.clone()).collect();
            endpoints.changed.extend(stale);
            endpoints.changed.sort();
        }
        Self {
            topics: Delta::of(&o.topics, &n.topics, raw_differs(old, new, "topics")),
            endpoints,
            pools: Delta::of(
                &o.pde_manager.pools,
                &n.pde_manager.pools,
                raw_differs(old, new, "pde_manager.pools"),
            ),
            fixed,
            default_lock: o.camunda.lock_duration != n.camunda.lock_duration,
        }
    }

    /// Topics of `new` whose runtime can be kept: the topic, its pool's settings and every
    /// endpoint it or its pool can reach are unchanged, and so is the default lock duration.
    pub fn unchanged_topics(&self, new: &FileConfig) -> BTreeSet<String> {
        if self.default_lock {
            return BTreeSet::new();
        }
        let rebuilt: BTreeSet<&String> = self.endpoints.built().collect();
        new.topics
            .iter()
            .filter(|(name, topic)| {
                let pool_ok = !self.pools.built().any(|p| *p == topic.pool);
                let pool_endpoints = new
                    .pde_manager
                    .pools
                    .get(&topic.pool)
                    .map(|p| p.endpoints.as_slice())
                    .unwrap_or_default();
                let endpoints_ok = topic
                    .endpoints
                    .iter()
                    .chain(pool_endpoints)
                    .all(|e| !rebuilt.contains(&e));
                !self.topics.built().any(|t| t == *name) && pool_ok && endpoints_ok
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Nothing at all to apply (the file changed only in comments or layout, or in settings
    /// read each poll such as `camunda.long_poll`, which a new generation still picks up).
    pub fn is_empty(&self) -> bool {
        self.topics.is_empty() && self.endpoints.is_empty() && self.pools.is_empty()
    }
}

/// Each topic's endpoint list: what a build context hands the endpoints ([`reads_topics`]).
fn topic_endpoints(config: &FileConfig) -> BTreeMap<&String, &Vec<String>> {
    config
        .topics
        .iter()
        .map(|(name, t)| (name, &t.endpoints))
        .collect()
}

/// Does this kind's build read the topics' endpoint lists? `sub_pde` probes its steps' topics'
/// endpoints; `procos` reports every topic's endpoints and mails an alert when its
/// `email_topic` has endpoints. Such an endpoint is rebuilt whenever those lists change.
fn reads_topics(endpoint: &crate::endpoints::EndpointConfig) -> bool {
    use crate::endpoints::EndpointConfig;
    matches!(
        endpoint,
        EndpointConfig::Procos(_) | EndpointConfig::SubPde(_)
    )
}

/// Does entry `name` under `section` differ between the two files?
fn raw_differs<'a>(
    old: &'a Snapshot,
    new: &'a Snapshot,
    section: &'static str,
) -> impl Fn(&str) -> bool + 'a {
    move |name| entry(old, section, name) != entry(new, section, name)
}

/// The raw entry `name` under `section` (`Null` when absent); names may contain dots.
fn entry<'a>(s: &'a Snapshot, section: &str, name: &str) -> &'a Value {
    s.at(section).get(name).unwrap_or(&Value::Null)
}

/// Does the fixed `key` differ? Typed values where the config has them (so an explicit default
/// equals an absent key), the raw YAML for the rest (secrets, sections this build does not
/// read).
fn fixed_differs(old: &Snapshot, new: &Snapshot, key: &str) -> bool {
    let (o, n) = (&old.config, &new.config);
    match key {
        "camunda.url" => o.camunda.url != n.camunda.url,
        "camunda.worker_id" => o.camunda.worker_id != n.camunda.worker_id,
        "camunda.request_timeout" => o.camunda.request_timeout != n.camunda.request_timeout,
        "camunda.boot_timeout" => o.camunda.boot_timeout != n.camunda.boot_timeout,
        "camunda.max_connections" => o.camunda.max_connections != n.camunda.max_connections,
        "pde_manager.state_dir" => o.pde_manager.state_dir != n.pde_manager.state_dir,
        "pde_manager.journal_retention" => {
            o.pde_manager.journal_retention != n.pde_manager.journal_retention
        }
        "deploy" => {
            let (a, b) = (&o.deploy, &n.deploy);
            a.dir != b.dir
                || a.watch != b.watch
                || a.deployment_name != b.deployment_name
                || a.source != b.source
                || a.tenant_id != b.tenant_id
                || a.debounce != b.debounce
        }
        _ => old.at(key) != new.at(key),
    }
}

/// Why a reloaded file was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file could not be read or is not a valid config; every problem is logged.
    #[error("{0}")]
    Invalid(#[from] crate::config::ConfigError),
    /// Keys that cannot change live changed.
    #[error("{} cannot change while procos runs; restart procos to change it", .0.join(", "))]
    Fixed(Vec<&'static str>),
    /// An endpoint or topic could not be built.
    #[error(transparent)]
    Build(#[from] crate::manager::ManagerError),
}

/// What woke the reloader; `false` when its source ended.
enum Trigger {
    Hangup(bool),
    File(bool),
}

/// Applies reloaded configs to the running manager, one at a time.
pub struct Reloader {
    source: Source,
    /// The config in force.
    running: Snapshot,
    /// The text last read from the file (applied or refused): a file event that leaves it as
    /// it was does nothing.
    seen: String,
    endpoints: BTreeMap<String, Arc<dyn Endpoint>>,
    /// Per endpoint, the token that stops its probes: cancelled when a reload replaces or
    /// removes it.
    stops: BTreeMap<String, CancellationToken>,
    cx: BuildContext,
    manager: ManagerHandle,
    stamps: StampSender,
}

impl Reloader {
    /// A reloader for a manager running `running` (loaded from `source.path`) with `endpoints`
    /// and their stop tokens ([`build_stoppable_endpoints`]), built with `cx`; each applied
    /// config is published on `stamps`.
    pub fn new(
        source: Source,
        running: Snapshot,
        (endpoints, stops): crate::manager::StoppableEndpoints,
        cx: BuildContext,
        manager: ManagerHandle,
        stamps: StampSender,
    ) -> Self {
        Self {
            source,
            seen: running.text.clone(),
            running,
            endpoints,
            stops,
            cx,
            manager,
            stamps,
        }
    }

    /// Waits for SIGHUP (`hangups`) and for changes of the config file until `shutdown`,
    /// reloading on each.
    pub async fn run(
        mut self,
        mut hangups: Option<tokio::signal::unix::Signal>,
        shutdown: CancellationToken,
    ) {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let _watcher = self.watch(tx);
        loop {
            let hangup = async {
                match hangups.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            let trigger = tokio::select! {
                _ = shutdown.cancelled() => return,
                got = hangup => Trigger::Hangup(got.is_some()),
                got = rx.recv() => Trigger::File(got.is_some()),
            };
            match trigger {
                // The signal stream ended (never on a live runtime): the file still reloads.
                Trigger::Hangup(false) => hangups = None,
                Trigger::Hangup(true) => {
                    tracing::info!(path = %self.source.path.display(), "SIGHUP: reloading the config.");
                    self.reload(true).await;
                }
                Trigger::File(true) if settled(&mut rx, DEBOUNCE, &shutdown).await => {
                    self.reload(false).await;
                }
                Trigger::File(_) => return,
            }
        }
    }

    /// Watches the config file's folder (editors replace the file by a rename) for content
    /// changes of that file name, and of the symlinks it is reached through there (a
    /// Kubernetes ConfigMap: see [`watched_names`]); each goes to `tx`. `None` (logged) when it
    /// cannot: SIGHUP still works. The watch ends when the returned handle is dropped.
    fn watch(&self, tx: mpsc::UnboundedSender<()>) -> Option<AbortOnDropHandle<()>> {
        let path = &self.source.path;
        match watch_folder(path, tx) {
            Ok(Some(watching)) => {
                tracing::info!(path = %path.display(), "Watching the config file; a change (or SIGHUP) reloads it.");
                Some(watching)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "Cannot watch the config file; reload it with SIGHUP.");
                None
            }
        }
    }

    /// Reads the file and applies it if it is valid and new. `forced` (SIGHUP): also when the
    /// text is the one last looked at.
    pub async fn reload(&mut self, forced: bool) {
        let path = self.source.path.clone();
        let read = tokio::task::spawn_blocking(move || read_text(&path)).await;
        let text = match read {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => {
                log_refused(&ReloadError::Invalid(e));
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "Config reload failed.");
                return;
            }
        };
        if text == self.seen && !forced {
            tracing::debug!("Config file unchanged; nothing to reload.");
            return;
        }
        self.seen = text.clone();
        if text == self.running.text {
            tracing::info!(
                version = self.stamps.borrow().version,
                "Config file unchanged; nothing to reload."
            );
            return;
        }
        if let Err(e) = self.apply(&text) {
            log_refused(&e);
        }
    }

    /// Loads, checks and applies `text`; on error nothing changes.
    pub fn apply(&mut self, text: &str) -> Result<(), ReloadError> {
        let mut config =
            crate::config::load_str(text, &self.source.path, &|name| std::env::var(name).ok())?;
        if let Some(url) = &self.source.camunda_url {
            config.camunda.url = url.clone();
        }
        let next = Snapshot::new(config, text);
        let changes = Changes::between(&self.running, &next);
        if !changes.fixed.is_empty() {
            return Err(ReloadError::Fixed(changes.fixed));
        }
        let wanted: BTreeSet<String> = changes.endpoints.built().cloned().collect();
        let (built, mut new_stops) =
            build_stoppable_endpoints(&next.config, &self.cx, |n| wanted.contains(n))?;
        let mut endpoints: BTreeMap<String, Arc<dyn Endpoint>> = self
            .endpoints
            .iter()
            .filter(|(name, _)| next.config.endpoints.contains_key(*name))
            .map(|(n, e)| (n.clone(), e.clone()))
            .collect();
        endpoints.extend(built);
        let keep = changes.unchanged_topics(&next.config);
        let applied = match self.manager.apply(&next.config, &endpoints, &keep) {
            Ok(applied) => applied,
            Err(e) => {
                new_stops.values().for_each(CancellationToken::cancel);
                return Err(e.into());
            }
        };
        // The replaced and removed endpoints' probes stop; the new ones run on their own tokens.
        for name in changes.endpoints.built().chain(&changes.endpoints.removed) {
            if let Some(old) = self.stops.remove(name) {
                old.cancel();
            }
        }
        // A removed endpoint's health is no longer anyone's to report.
        for name in &changes.endpoints.removed {
            self.cx.health().forget(name);
        }
        self.stops.append(&mut new_stops);
        self.endpoints = endpoints;
        self.running = next;
        let version = self.stamps.borrow().version + 1;
        self.stamps.send_replace(ConfigStamp::new(version, text));
        tracing::info!(
            version,
            topics_added = %changes.topics.added.join(","),
            topics_removed = %changes.topics.removed.join(","),
            topics_changed = %changes.topics.changed.join(","),
            endpoints_rebuilt = %changes.endpoints.built().cloned().collect::<Vec<_>>().join(","),
            endpoints_removed = %changes.endpoints.removed.join(","),
            pools_resized = %applied.pools_built.join(","),
            "Config reloaded."
        );
        Ok(())
    }
}

/// The file's text, bounded as at start-up (the loader's own reading, its error as a problem).
fn read_text(path: &Path) -> Result<String, crate::config::ConfigError> {
    crate::config::read_text(path).map_err(|message| crate::config::ConfigError {
        file: path.to_path_buf(),
        problems: vec![crate::config::Problem::new("", message)],
    })
}

/// One ERROR line per problem, each with its YAML path (messages are already scrubbed of
/// values from the environment).
fn log_refused(error: &ReloadError) {
    match error {
        ReloadError::Invalid(e) => {
            for problem in &e.problems {
                tracing::error!(
                    file = %e.file.display(),
                    path = %problem.path,
                    problem = %problem.message,
                    "Config reload refused: {problem}; procos keeps running the previous config."
                );
            }
        }
        ReloadError::Fixed(keys) => {
            for key in keys {
                tracing::error!(
                    key,
                    "Config reload refused: {key} cannot change while procos runs; restart procos to change it. The previous config stays in force."
                );
            }
        }
        ReloadError::Build(e) => tracing::error!(
            error = %e,
            "Config reload refused; procos keeps running the previous config."
        ),
    }
}

/// Waits until no event came for `quiet`; false when the watch should end.
async fn settled(
    rx: &mut mpsc::UnboundedReceiver<()>,
    quiet: Duration,
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

/// The symlink a Kubernetes ConfigMap volume swaps on every update: its files are symlinks
/// through it (`pde.yaml -> ..data/pde.yaml`, `..data -> ..2026_12_02_…`), and an update
/// writes a new `..2026_…` folder and renames a new `..data` over the old one. The config
/// file's own entry never changes, so the watcher must see `..data`.
pub const CONFIGMAP_DATA: &str = "..data";

/// The names in the config file's folder whose change may change what the config path reads:
/// the file itself, [`CONFIGMAP_DATA`], and, when the file is a symlink with a relative target,
/// the first component of that target (the entry of the folder it goes through).
fn watched_names(path: &Path) -> Vec<std::ffi::OsString> {
    let Some(name) = path.file_name() else {
        return Vec::new();
    };
    let mut names = vec![name.to_os_string(), CONFIGMAP_DATA.into()];
    if let Ok(target) = std::fs::read_link(path)
        && target.is_relative()
        && let Some(std::path::Component::Normal(first)) = target.components().next()
        && !names.iter().any(|n| n == first)
    {
        names.push(first.to_os_string());
    }
    names
}

/// What the watcher asks the kernel for on the config file's folder: entries created, removed
/// or renamed (an editor's save by rename, a ConfigMap's `..data` swap) and files closed after
/// writing (an edit in place). Not `IN_MODIFY` or `IN_OPEN`, which fire on every write to and
/// open of *any* file of the folder: with them (as the `notify` crate asks for), a log written
/// beside the config woke the watcher on every line — a quarter of procos's CPU draining tasks
/// with `procos --config pde.yaml 2> procos.log`.
pub const FOLDER_EVENTS: WatchMask = WatchMask::CLOSE_WRITE
    .union(WatchMask::CREATE)
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::ONLYDIR);

/// Watches the folder of `path` for [`FOLDER_EVENTS`] on the names of [`watched_names`] and
/// sends a `()` to `tx` for each (and for a lost event queue, which may hide one). `Ok(None)`
/// when the path names no file.
fn watch_folder(
    path: &Path,
    tx: mpsc::UnboundedSender<()>,
) -> std::io::Result<Option<AbortOnDropHandle<()>>> {
    let names = watched_names(path);
    if names.is_empty() {
        return Ok(None);
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let inotify = Inotify::init()?;
    inotify.watches().add(&dir, FOLDER_EVENTS)?;
    let mut events = inotify.into_event_stream([0u8; 4096])?;
    Ok(Some(AbortOnDropHandle::new(tokio::spawn(async move {
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => {
                    if changes_file(event.mask, event.name.as_deref(), &names)
                        && tx.send(()).is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    // Events may have been missed: look at the file once more, then stop
                    // rather than spin on an error that repeats.
                    tracing::warn!(error = %e, "Watching the config file failed; reload it with SIGHUP.");
                    let _ = tx.send(());
                    return;
                }
            }
        }
    }))))
}

/// Could this event (of [`FOLDER_EVENTS`]) have changed the config file's content? Any of them
/// on the file's name or one of the symlinks it is reached through (`names`) can; events on other
/// files of the folder cannot. A lost event queue (`IN_Q_OVERFLOW`) may hide one.
fn changes_file(
    mask: EventMask,
    name: Option<&std::ffi::OsStr>,
    names: &[std::ffi::OsString],
) -> bool {
    mask.contains(EventMask::Q_OVERFLOW) || name.is_some_and(|n| names.iter().any(|w| w == n))
}

#[cfg(test)]
mod tests;
