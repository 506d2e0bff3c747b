//! The learner's persistence: its statistics, and the endpoints' health for `procos stats`, in
//! two tables of the outcome journal's redb file under `state_dir` — written in batches by one
//! flusher task, never on a task's path.
//!
//! ```text
//!  Learner ─── take_dirty() every FLUSH_EVERY and at exit ──┐
//!  HealthRegistry ─── snapshot(), when it changed ──────────┼─► Flusher ─► one commit (journal writer)
//!                                                           └─► Prometheus gauges (report figures)
//! ```
//!
//! Rows are JSON: key = a [`Key`] as JSON, value = [`Stats`] (whose new fields default), so a
//! store written by an older or newer procos loads. A row that does not decode is skipped with a
//! warning naming it and left in place (a newer procos may own it); it is replaced the next time
//! its key is observed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Key, Learner, Stats, StatsStore};
use crate::endpoints::health::{EndpointHealth, HealthRegistry};
use crate::journal::{Journal, Rows, StoreError, Table};

/// How often the flusher writes what changed (and refreshes the learner's gauges).
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// The learner's statistics in the journal's store (in memory only when the journal is).
#[derive(Debug, Clone)]
pub struct JournalStats {
    journal: Journal,
}

/// A key as stored: JSON, so that names with any character round-trip.
pub fn encode_key(key: &Key) -> String {
    // A struct of three strings always serialises.
    serde_json::to_string(key).unwrap_or_default()
}

fn encode_stats(batch: Vec<(Key, Stats)>) -> Vec<(Table, String, Vec<u8>)> {
    batch
        .into_iter()
        .map(|(key, stats)| {
            // Non-finite floats become null, which `Stats` reads back as its default.
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
pub fn decode_stats(rows: Rows) -> Vec<(Key, Stats)> {
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
pub fn decode_health(rows: Rows) -> Vec<(String, EndpointHealth)> {
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
}

/// Reads the learner's and the health tables of the store in `dir` without writing to it —
/// while a procos runs on it or not. Blocking file I/O.
pub fn read_state_dir(dir: &Path) -> Result<Stored, StoreError> {
    let (learner, health) = crate::journal::read_side_tables(dir)?;
    Ok(Stored {
        stats: decode_stats(learner),
        health: decode_health(health),
    })
}

impl JournalStats {
    /// The learner's tables in `journal`'s store.
    pub fn new(journal: Journal) -> Self {
        Self { journal }
    }

    /// Does it persist (is there a `state_dir`)?
    pub fn is_durable(&self) -> bool {
        self.journal.is_durable()
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

    fn save(&self, batch: Vec<(Key, Stats)>) {
        self.journal.queue_rows(encode_stats(batch));
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
        }
    }

    /// Flushes every `every` until `stop` fires, then once more (call `stop` after the manager
    /// has drained, so the last tasks' observations are kept).
    pub async fn run(self, stop: CancellationToken) {
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

    /// Writes what changed since the last flush in one commit (nothing when nothing changed) and
    /// refreshes the gauges. Returns the statistics rows written.
    pub async fn flush(&self) -> Result<usize, StoreError> {
        let dirty = self.learner.take_dirty();
        let health = self.health.snapshot();
        let health_changed = {
            let written = self
                .written_health
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *written != health
        };
        let report = super::report::build(&self.learner, &health, &self.listed, super::now_secs());
        crate::telemetry::metrics::learner_figures(&report, &health);
        if dirty.is_empty() && !health_changed {
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
                .unwrap_or_else(|p| p.into_inner()) = health;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
