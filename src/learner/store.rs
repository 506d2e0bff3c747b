//! The learner's persistence: its statistics, and the endpoints' health for `procos stats`, in
//! two tables of the outcome journal's redb file under `state_dir` — written in batches by one
//! flusher task, never on a task's path — plus a snapshot file next to it for readers.
//!
//! ```text
//!  Learner ─── take_dirty() every FLUSH_EVERY and at exit ──┐
//!  HealthRegistry ─── snapshot(), when it changed ──────────┼─► Flusher ─► one commit (journal writer)
//!                                                           ├─► state_dir/learner.json (whole, atomic)
//!                                                           └─► Prometheus gauges (report figures)
//! ```
//!
//! Rows are JSON: key = a [`Key`] as JSON, value = [`Stats`] (whose new fields default), so a
//! store written by an older or newer procos loads. A row that does not decode is skipped with a
//! warning naming it and left in place (a newer procos may own it); it is replaced the next time
//! its key is observed.
//!
//! Why a snapshot file: redb lets one process open the file while a procos runs on it only in a
//! mode that doubles the fsyncs of every journal commit. So after each commit the flusher also
//! replaces `learner.json` (write, fsync, rename) with the whole learner and health, and
//! `procos stats` reads that — while procos runs or not — and the redb file itself only when
//! there is no snapshot (a store from before snapshots).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{Key, Learner, Stats, StatsStore};
use crate::endpoints::health::{EndpointHealth, HealthRegistry};
use crate::journal::{Journal, Rows, StoreError, Table};

/// How often the flusher writes what changed (and refreshes the learner's gauges).
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// The snapshot file's name inside `state_dir`.
pub const SNAPSHOT_FILE: &str = "learner.json";

/// The learner's statistics in the journal's store (in memory only when the journal is).
#[derive(Debug, Clone)]
pub struct JournalStats {
    journal: Journal,
}

/// A key as stored: JSON, so that names with any character round-trip.
fn encode_key(key: &Key) -> String {
    // A struct of three strings always serialises.
    serde_json::to_string(key).unwrap_or_default()
}

fn encode_stats(batch: Vec<(Key, Stats)>) -> Vec<(Table, String, Vec<u8>)> {
    batch
        .into_iter()
        .map(|(key, stats)| {
            // `Stats::observe` keeps no non-finite figure: JSON has none, and a null would make
            // the row unreadable at the next load.
            let value = serde_json::to_vec(&stats).unwrap_or_default();
            (Table::Learner, encode_key(&key), value)
        })
        .collect()
}

fn encode_health(health: &[(String, EndpointHealth)]) -> Vec<(Table, String, Vec<u8>)> {
    health
        .iter()
        .map(|(name, h)| {
            let value = serde_json::to_vec(h).unwrap_or_default();
            (Table::Health, name.clone(), value)
        })
        .collect()
}

/// Decodes the learner's rows; an unreadable one is skipped with a warning naming it.
fn decode_stats(rows: Rows) -> Vec<(Key, Stats)> {
    rows.into_iter()
        .filter_map(|(raw, value)| {
            let decoded = serde_json::from_str::<Key>(&raw)
                .map_err(|e| format!("key: {e}"))
                .and_then(|key| {
                    serde_json::from_slice::<Stats>(&value)
                        .map(|stats| (key, stats))
                        .map_err(|e| format!("statistics: {e}"))
                });
            match decoded {
                Ok(entry) => Some(entry),
                Err(error) => {
                    tracing::warn!(row = %raw, %error, "Skipping an unreadable learner row.");
                    None
                }
            }
        })
        .collect()
}

/// Decodes the health rows; an unreadable one is skipped with a warning naming it.
fn decode_health(rows: Rows) -> Vec<(String, EndpointHealth)> {
    rows.into_iter()
        .filter_map(
            |(name, value)| match serde_json::from_slice::<EndpointHealth>(&value) {
                Ok(h) => Some((name, h)),
                Err(error) => {
                    tracing::warn!(endpoint = %name, %error, "Skipping an unreadable health row.");
                    None
                }
            },
        )
        .collect()
}

/// What a state dir holds for `procos stats`.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    /// Every (key, statistics), as last flushed.
    pub stats: Vec<(Key, Stats)>,
    /// Every endpoint's health, as last flushed.
    pub health: Vec<(String, EndpointHealth)>,
    /// The file they were read from: the snapshot, or the store when there is none.
    pub source: PathBuf,
}

/// One statistics row of the snapshot file; kept as JSON values so that one unreadable row is
/// skipped, not the whole file.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotRow {
    key: Value,
    stats: Value,
}

/// The snapshot file: everything the learner and the health registry held at a flush.
#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    /// When it was written (unix seconds).
    written_at: f64,
    stats: Vec<SnapshotRow>,
    health: BTreeMap<String, Value>,
}

impl Snapshot {
    fn of(stats: Vec<(Key, Stats)>, health: &[(String, EndpointHealth)]) -> Self {
        Self {
            written_at: crate::endpoints::health::now_secs(),
            stats: stats
                .into_iter()
                .map(|(k, s)| SnapshotRow {
                    key: serde_json::to_value(k).unwrap_or_default(),
                    stats: serde_json::to_value(s).unwrap_or_default(),
                })
                .collect(),
            health: health
                .iter()
                .map(|(n, h)| (n.clone(), serde_json::to_value(h).unwrap_or_default()))
                .collect(),
        }
    }

    /// Decodes it with the store's rules: an unreadable row is skipped with a warning.
    fn decode(self, source: PathBuf) -> Stored {
        let stats = self
            .stats
            .into_iter()
            .map(|row| (row.key.to_string(), row.stats.to_string().into_bytes()))
            .collect();
        let health = self
            .health
            .into_iter()
            .map(|(n, h)| (n, h.to_string().into_bytes()))
            .collect();
        Stored {
            stats: decode_stats(stats),
            health: decode_health(health),
            source,
        }
    }
}

/// Replaces `path` with `snapshot` atomically: a reader sees the old file or the new one.
fn write_snapshot(path: &Path, snapshot: &Snapshot) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    serde_json::to_writer(&mut file, snapshot)?;
    file.flush()?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// What the state dir `dir` holds of the learner and the endpoints' health, read without
/// writing to it, while a procos runs on it or not: the snapshot file, or — when there is none
/// or it is unreadable — the redb file, which no procos may have open then
/// ([`StoreError::InUse`]). Blocking file I/O.
pub fn read_state_dir(dir: &Path) -> Result<Stored, StoreError> {
    let path = dir.join(SNAPSHOT_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<Snapshot>(&bytes) {
            Ok(snapshot) => return Ok(snapshot.decode(path)),
            Err(error) => tracing::warn!(
                path = %path.display(),
                %error,
                "The learner snapshot is unreadable; reading the store instead."
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(StoreError::Read {
                path: dir.to_path_buf(),
                message: format!("{SNAPSHOT_FILE}: {e}"),
            });
        }
    }
    let (learner, health) = crate::journal::read_side_tables(dir)?;
    Ok(Stored {
        stats: decode_stats(learner),
        health: decode_health(health),
        source: dir.join(crate::journal::FILE_NAME),
    })
}

impl JournalStats {
    /// The learner's tables in `journal`'s store.
    pub fn new(journal: Journal) -> Self {
        Self { journal }
    }

    /// Writes changed statistics and health rows in one batch, and waits for its commit.
    pub async fn write(
        &self,
        stats: Vec<(Key, Stats)>,
        health: &[(String, EndpointHealth)],
    ) -> Result<(), StoreError> {
        let mut rows = encode_stats(stats);
        rows.extend(encode_health(health));
        self.journal.write_rows(rows).await
    }
}

impl StatsStore for JournalStats {
    fn load(&self) -> Result<Vec<(Key, Stats)>, String> {
        self.journal
            .rows(Table::Learner)
            .map(decode_stats)
            .map_err(|e| e.to_string())
    }
}

/// Writes the learner's changes every [`FLUSH_EVERY`] and once when stopped, with the health
/// snapshot when it changed; refreshes the learner's gauges at each flush.
#[derive(Debug)]
pub struct Flusher {
    learner: Arc<Learner>,
    store: JournalStats,
    health: Arc<HealthRegistry>,
    /// Each topic's listed endpoints (a listed endpoint never chosen still gets its gauges).
    listed: BTreeMap<String, Vec<String>>,
    every: Duration,
    /// The health last written, to skip unchanged snapshots.
    written_health: Mutex<Vec<(String, EndpointHealth)>>,
    /// Where the snapshot file goes (with a `state_dir`).
    snapshot: Option<PathBuf>,
    /// A snapshot was written by this process (the first flush writes one even if idle, so that
    /// a snapshot a crash left behind is brought up to the store).
    snapshot_written: AtomicBool,
    /// The replicas' shared store (`pde_manager.state`): the statistics go there instead of the
    /// journal's table, and what other replicas learned comes back at each flush.
    shared: Option<postgres::SharedStats>,
}

impl Flusher {
    /// A flusher of `learner` into `store`; `listed` is each topic's endpoints from the config.
    pub fn new(
        learner: Arc<Learner>,
        store: JournalStats,
        health: Arc<HealthRegistry>,
        listed: BTreeMap<String, Vec<String>>,
        every: Duration,
    ) -> Self {
        Self {
            learner,
            store,
            health,
            listed,
            every,
            written_health: Mutex::new(Vec::new()),
            snapshot: None,
            snapshot_written: AtomicBool::new(false),
            shared: None,
        }
    }

    /// Keeps the statistics in the replicas' shared store instead of the journal's table (the
    /// health rows stay there): see [`postgres`].
    pub fn with_shared(mut self, shared: postgres::SharedStats) -> Self {
        self.shared = Some(shared);
        self
    }

    /// Also writes the whole learner to `state_dir/learner.json` after each commit, for readers
    /// such as `procos stats` (which may not open the store while this process has it).
    pub fn with_snapshot(mut self, state_dir: &Path) -> Self {
        self.snapshot = Some(state_dir.join(SNAPSHOT_FILE));
        self
    }

    /// Flushes every `every` until `stop` fires, then once more (call `stop` after the manager
    /// has drained, so the last tasks' observations are kept).
    pub async fn run(self, stop: CancellationToken) {
        if self.shared.is_some() {
            // What the other replicas learned, at once rather than after the first period.
            self.flush_logged().await;
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(self.every) => {}
            }
            self.flush_logged().await;
        }
        self.flush_logged().await;
    }

    async fn flush_logged(&self) {
        if let Err(e) = self.flush().await {
            tracing::warn!(error = %e, "Could not write the learner's statistics; they are kept in memory and written with the next flush.");
        }
    }

    /// Writes what changed since the last flush in one commit (nothing when nothing changed),
    /// then the snapshot file, and refreshes the gauges. Returns the statistics rows written.
    pub async fn flush(&self) -> Result<usize, StoreError> {
        let mut dirty = self.learner.take_dirty();
        // With a shared store the statistics go there (its failures are logged by it, the
        // changes kept dirty for the next flush); the journal then takes the health rows only.
        let mut shared_changed = false;
        if let Some(shared) = &self.shared
            && let Ok(synced) = shared.sync(&self.learner, std::mem::take(&mut dirty)).await
        {
            shared_changed = synced.written + synced.refreshed > 0;
        }
        let health = self.health.snapshot();
        let health_changed = {
            let written = self
                .written_health
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *written != health
        };
        // The gauges move as figures decay, so they are refreshed at every flush — when served.
        if crate::telemetry::metrics::served() {
            let now = self.learner.now();
            let report = super::report::build(&self.learner, &health, &self.listed, now);
            crate::telemetry::metrics::learner_figures(&report);
        }
        let first_snapshot =
            self.snapshot.is_some() && !self.snapshot_written.load(Ordering::Relaxed);
        if dirty.is_empty() && !health_changed && !first_snapshot && !shared_changed {
            return Ok(0);
        }
        let n = dirty.len();
        let changed_health: &[(String, EndpointHealth)] =
            if health_changed { &health } else { &[] };
        if let Err(e) = self.store.write(dirty.clone(), changed_health).await {
            // Not lost: marked dirty again for the next flush (newer figures win then).
            self.learner.mark_dirty(dirty.into_iter().map(|(k, _)| k));
            return Err(e);
        }
        if health_changed {
            *self
                .written_health
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = health.clone();
        }
        if let Some(path) = self.snapshot.clone() {
            let snapshot = Snapshot::of(self.learner.snapshot(), &health);
            let written =
                tokio::task::spawn_blocking(move || write_snapshot(&path, &snapshot)).await;
            let error = match written {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            // A failed write is retried at the next flush, changed or not.
            self.snapshot_written
                .store(error.is_none(), Ordering::Relaxed);
            if let Some(error) = error {
                tracing::warn!(%error, "Could not write the learner snapshot; `procos stats` shows older figures until a flush writes it.");
            }
        }
        Ok(n)
    }
}

pub mod postgres;

#[cfg(test)]
mod tests;
