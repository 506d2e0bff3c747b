//! The learner's statistics shared by replicas in PostgreSQL (`pde_manager.state: postgres://…`).
//!
//! ```text
//!  replica A ── own rows (worker_id = A) ──┐              ┌── every replica reads all rows:
//!  replica B ── own rows (worker_id = B) ──┼─► procos_learner_v1 ──┤  its own + the others', merged
//!  replica C ── own rows (worker_id = C) ──┘              └── per (topic, endpoint, class)
//! ```
//!
//! Design — nobody loses an observation, whatever the interleaving:
//! - **One writer per row.** A row is keyed by (worker id, key); only the replica with that
//!   worker id writes it, with an upsert of its *whole* contribution. Two replicas never write
//!   the same row, so there is no read-modify-write race between them and no lost update.
//! - **Merged reads.** Each replica's in-memory learner holds `mine + others`, where `others` is
//!   the sum of every other worker's rows as last read ([`SharedStats::sync`] re-reads them at
//!   each flush, every few seconds). What a replica writes is `total − others` (its own part),
//!   so what others learned is never written back under its name (no double counting).
//!   Replacing `others` after a read adjusts each key under the learner's lock, atomically with
//!   the observations of running tasks.
//! - **Additive figures.** Counts add; decayed figures are decayed to a common time, then add
//!   (the decay is linear); the latency EWMA is averaged weighted by calls.
//! - A restarted replica with the same worker id (a configured `camunda.worker_id`) first loads
//!   its own row back and adds what it observed since start; until that first read succeeds it
//!   writes nothing (a write would replace its row with less). After that read, every key it
//!   observed is written from the merged totals (not from figures taken before the read).
//! - Rows of workers that are gone stay: what they learned is still true (their rates decay).
//!
//! Schema: created on first use (`CREATE TABLE IF NOT EXISTS` under an advisory lock, so that
//! replicas starting together do not race), with its version in `procos_schema`; a database
//! written by a newer schema is refused by name rather than misread.
//!
//! Connection loss: nothing waits on the database but the flusher. A failed read or write logs a
//! warning (once, until it works again), keeps the changes in memory (marked dirty again) and is
//! retried at the next flush. The pool connects lazily, so procos starts while the server is
//! down. The URL is a [`Secret`]: it and its password are never in a log line or an error.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::config::Secret;
use crate::learner::{Key, Learner, Stats};

/// The current schema version of the shared tables.
pub const SCHEMA_VERSION: i32 = 1;
/// The statistics table (one row per worker and key).
pub const TABLE: &str = "procos_learner_v1";
/// How long a flush waits for a connection before it gives up until the next flush.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the shared store could not be read or written. Messages never carry the URL's password.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// `pde_manager.state` is not a usable PostgreSQL URL.
    #[error("pde_manager.state: {0}")]
    Url(String),
    /// The database answered with an error or could not be reached.
    #[error("pde_manager.state ({at}): {message}")]
    Database {
        /// Where (scheme, host, port and database; no user info).
        at: String,
        /// What went wrong, redacted.
        message: String,
    },
    /// The tables were written by a newer procos.
    #[error(
        "pde_manager.state ({at}): the learner's tables have schema version {found}, newer than this procos's {SCHEMA_VERSION}; upgrade procos"
    )]
    NewerSchema {
        /// Where.
        at: String,
        /// The version found.
        found: i32,
    },
}

/// Checks that `url` is a PostgreSQL URL procos can use, without connecting (config
/// validation). The message never echoes the URL.
pub fn check_url(url: &Secret) -> Result<(), String> {
    options(url).map(|_| ())
}

fn options(url: &Secret) -> Result<PgConnectOptions, String> {
    let raw = url.expose().trim();
    if !(raw.starts_with("postgres://") || raw.starts_with("postgresql://")) {
        return Err(
            "must be a PostgreSQL URL (`postgres://user:password@host:5432/db`); other stores are not supported"
                .to_string(),
        );
    }
    if let Ok(parsed) = url::Url::parse(raw)
        && let Some(password) = parsed.password()
    {
        // Registered both raw and decoded, so that no message shows either.
        crate::config::secret::register(password);
        if let Ok(decoded) = percent_encoding::percent_decode_str(password).decode_utf8() {
            crate::config::secret::register(&decoded);
        }
    }
    PgConnectOptions::from_str(raw).map_err(|e| {
        format!(
            "not a usable PostgreSQL URL: {}",
            crate::config::secret::redact(&e.to_string())
        )
    })
}

/// Where the store is, for log lines and errors: no user info, no query values.
fn location(url: &Secret) -> String {
    crate::config::secret::redact_url(url.expose())
}

/// Adds `b` into `a`: both decayed to the later of their times (with `half_life` seconds), then
/// counts and decayed figures summed, the latency EWMA weighted by calls.
pub fn add(a: &mut Stats, b: &Stats, half_life: f64) {
    if b.calls == 0 && b.routed == 0 && b.updated_at == 0.0 {
        return;
    }
    let mut b = b.clone();
    let at = a.updated_at.max(b.updated_at);
    if at > 0.0 {
        if a.updated_at > 0.0 {
            a.decay(at, half_life);
        }
        if b.updated_at > 0.0 {
            b.decay(at, half_life);
        }
    }
    let calls = a.calls + b.calls;
    a.latency_ewma_ms = if calls == 0 {
        0.0
    } else {
        (a.latency_ewma_ms * a.calls as f64 + b.latency_ewma_ms * b.calls as f64) / calls as f64
    };
    a.calls = calls;
    a.answered += b.answered;
    a.passed += b.passed;
    a.routed += b.routed;
    for (x, y) in decayed_mut(a).into_iter().zip(decayed(&b)) {
        *x += y;
    }
    add_hist(&mut a.latency_hist, &b.latency_hist, 1.0);
    a.updated_at = at;
    a.first_seen = match (a.first_seen, b.first_seen) {
        (0.0, f) | (f, 0.0) => f,
        (x, y) => x.min(y),
    };
    a.last_failure_at = max_opt(a.last_failure_at, b.last_failure_at);
    a.last_ok_at = max_opt(a.last_ok_at, b.last_ok_at);
}

/// `a − b`: what `a` holds beyond `b` (both decayed to the later time; never below zero). The
/// latency EWMA and the first/last times are `a`'s.
pub fn subtract(a: &Stats, b: &Stats, half_life: f64) -> Stats {
    let mut out = a.clone();
    if b.calls == 0 && b.routed == 0 && b.updated_at == 0.0 {
        return out;
    }
    let mut b = b.clone();
    let at = out.updated_at.max(b.updated_at);
    if at > 0.0 {
        if out.updated_at > 0.0 {
            out.decay(at, half_life);
        }
        if b.updated_at > 0.0 {
            b.decay(at, half_life);
        }
        out.updated_at = at;
    }
    out.calls = out.calls.saturating_sub(b.calls);
    out.answered = out.answered.saturating_sub(b.answered);
    out.passed = out.passed.saturating_sub(b.passed);
    out.routed = out.routed.saturating_sub(b.routed);
    for (x, y) in decayed_mut(&mut out).into_iter().zip(decayed(&b)) {
        *x = (*x - y).max(0.0);
    }
    add_hist(&mut out.latency_hist, &b.latency_hist, -1.0);
    out
}

fn decayed_mut(s: &mut Stats) -> [&mut f64; 9] {
    [
        &mut s.ok,
        &mut s.failed,
        &mut s.valid,
        &mut s.invalid,
        &mut s.score_sum,
        &mut s.scored,
        &mut s.cost_sum,
        &mut s.costed,
        &mut s.tokens_sum,
    ]
}

fn decayed(s: &Stats) -> [f64; 9] {
    [
        s.ok,
        s.failed,
        s.valid,
        s.invalid,
        s.score_sum,
        s.scored,
        s.cost_sum,
        s.costed,
        s.tokens_sum,
    ]
}

fn add_hist(a: &mut Vec<f64>, b: &[f64], sign: f64) {
    if a.len() < b.len() {
        a.resize(b.len(), 0.0);
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x = (*x + sign * y).max(0.0);
    }
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// One stored row: whose, which key, the figures.
type Row = (String, Key, Stats);

/// What one [`SharedStats::sync`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Synced {
    /// Own rows written.
    pub written: usize,
    /// Keys whose other replicas' figures changed.
    pub refreshed: usize,
}

/// The shared store of one replica: its worker id, the pool, and what the other replicas' rows
/// held at the last read (the `others` of the module doc).
#[derive(Debug)]
pub struct SharedStats {
    pool: PgPool,
    worker_id: String,
    at: String,
    /// Per key, the sum of the other workers' rows as last read and added to the learner.
    others: Mutex<HashMap<Key, Stats>>,
    /// The first read happened (own row loaded back, others added).
    loaded: AtomicBool,
    schema_ready: AtomicBool,
    /// The last attempt failed (to warn once per outage).
    down: AtomicBool,
}

impl SharedStats {
    /// The store at `url` for the replica `worker_id`. Does not connect (the first flush does):
    /// procos starts while the database is down. Call it inside the tokio runtime.
    pub fn new(url: &Secret, worker_id: &str) -> Result<Self, SharedError> {
        let options = options(url).map_err(SharedError::Url)?;
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            worker_id: worker_id.to_string(),
            at: location(url),
            others: Mutex::new(HashMap::new()),
            loaded: AtomicBool::new(false),
            schema_ready: AtomicBool::new(false),
            down: AtomicBool::new(false),
        })
    }

    /// Where the store is (no user info), for log lines.
    pub fn location(&self) -> &str {
        &self.at
    }

    fn db_error(&self, e: sqlx::Error) -> SharedError {
        SharedError::Database {
            at: self.at.clone(),
            message: crate::config::secret::redact(&e.to_string()),
        }
    }

    async fn ensure_schema(&self) -> Result<(), SharedError> {
        if self.schema_ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(|e| self.db_error(e))?;
        // Replicas starting together would race on CREATE TABLE IF NOT EXISTS (a unique
        // violation on the catalog); one advisory lock per transaction serialises them.
        let statements = [
            "SELECT pg_advisory_xact_lock(7193440127)".to_string(),
            "CREATE TABLE IF NOT EXISTS procos_schema (component TEXT PRIMARY KEY, version INTEGER NOT NULL)".to_string(),
            format!(
                "CREATE TABLE IF NOT EXISTS {TABLE} (worker_id TEXT NOT NULL, key TEXT NOT NULL, stats TEXT NOT NULL, written_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (worker_id, key))"
            ),
            format!(
                "INSERT INTO procos_schema (component, version) VALUES ('learner', {SCHEMA_VERSION}) ON CONFLICT (component) DO NOTHING"
            ),
        ];
        for sql in &statements {
            sqlx::query(sql)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db_error(e))?;
        }
        let found: i32 =
            sqlx::query_scalar("SELECT version FROM procos_schema WHERE component = 'learner'")
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| self.db_error(e))?;
        tx.commit().await.map_err(|e| self.db_error(e))?;
        if found > SCHEMA_VERSION {
            return Err(SharedError::NewerSchema {
                at: self.at.clone(),
                found,
            });
        }
        self.schema_ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn rows(&self) -> Result<Vec<Row>, SharedError> {
        self.ensure_schema().await?;
        let raw: Vec<(String, String, String)> =
            sqlx::query_as(&format!("SELECT worker_id, key, stats FROM {TABLE}"))
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.db_error(e))?;
        Ok(decode(raw))
    }

    /// One flush's worth: on the first call, loads this worker's own rows back and everyone
    /// else's into `learner`; then writes `dirty` (the learner's totals of the changed keys) as
    /// this worker's rows, and re-reads the other replicas' rows into the learner. On an error
    /// the changed keys are marked dirty again for the next call.
    pub async fn sync(
        &self,
        learner: &Learner,
        dirty: Vec<(Key, Stats)>,
    ) -> Result<Synced, SharedError> {
        let result = self.sync_inner(learner, &dirty).await;
        match &result {
            Err(error) => {
                learner.mark_dirty(dirty.into_iter().map(|(k, _)| k));
                if !self.down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%error, "The shared learner store is unavailable; procos keeps running, keeps its figures in memory and retries at every flush.");
                }
            }
            Ok(_) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!(store = %self.at, "The shared learner store is reachable again; caught up.");
                }
            }
        }
        result
    }

    async fn sync_inner(
        &self,
        learner: &Learner,
        dirty: &[(Key, Stats)],
    ) -> Result<Synced, SharedError> {
        let mut synced = Synced::default();
        if !self.loaded.load(Ordering::Relaxed) {
            let rows = self.rows().await?;
            let (mine, others) = split(rows, &self.worker_id, learner);
            let n = mine.len() + others.len();
            for (key, own) in &mine {
                learner.adjust(key, |s| add(s, own, learner.half_life_secs(&key.topic)));
            }
            self.rebase(learner, others);
            self.loaded.store(true, Ordering::Relaxed);
            tracing::info!(store = %self.at, worker_id = %self.worker_id, keys = n, "Learner loaded from the shared store.");
            // What was observed before this first read is in the totals now, own row and the
            // others' part included: write every key this worker has, and take the dirty keys'
            // totals again — those handed in were taken before the others' part was added, and
            // `total − others` over them would write this worker's row as (about) 0.
            learner.mark_dirty(mine.into_keys().chain(dirty.iter().map(|(k, _)| k.clone())));
        }
        let dirty: Vec<(Key, Stats)> = {
            let mut all: HashMap<Key, Stats> = dirty.iter().cloned().collect();
            for (key, stats) in learner.take_dirty() {
                all.insert(key, stats);
            }
            all.into_iter().collect()
        };
        if !dirty.is_empty() {
            let own: Vec<(Key, Stats)> = {
                let others = self.others.lock().unwrap_or_else(|p| p.into_inner());
                dirty
                    .iter()
                    .map(|(key, total)| {
                        let own = match others.get(key) {
                            Some(o) => subtract(total, o, learner.half_life_secs(&key.topic)),
                            None => total.clone(),
                        };
                        (key.clone(), own)
                    })
                    .collect()
            };
            if let Err(e) = self.write(&own).await {
                learner.mark_dirty(dirty.into_iter().map(|(k, _)| k));
                return Err(e);
            }
            synced.written = own.len();
        }
        let rows = self.rows().await?;
        let (_, others) = split(rows, &self.worker_id, learner);
        synced.refreshed = self.rebase(learner, others);
        Ok(synced)
    }

    /// Replaces the other replicas' part of each key in `learner` with `others`; returns how
    /// many keys changed.
    fn rebase(&self, learner: &Learner, others: HashMap<Key, Stats>) -> usize {
        let mut held = self.others.lock().unwrap_or_else(|p| p.into_inner());
        let mut changed = 0;
        for (key, new) in &others {
            if held.get(key) == Some(new) {
                continue;
            }
            changed += 1;
            let old = held.get(key).cloned();
            let half_life = learner.half_life_secs(&key.topic);
            learner.adjust(key, |s| {
                if let Some(old) = &old {
                    *s = subtract(s, old, half_life);
                }
                add(s, new, half_life);
            });
        }
        *held = others;
        changed
    }

    async fn write(&self, own: &[(Key, Stats)]) -> Result<(), SharedError> {
        self.ensure_schema().await?;
        let keys: Vec<String> = own
            .iter()
            .map(|(k, _)| serde_json::to_string(k).unwrap_or_default())
            .collect();
        // `Stats::observe` keeps no non-finite figure, so the JSON always reloads.
        let stats: Vec<String> = own
            .iter()
            .map(|(_, s)| serde_json::to_string(s).unwrap_or_default())
            .collect();
        let now = crate::endpoints::health::now_secs();
        // One statement for the batch; only this worker ever writes rows with its id.
        sqlx::query(&format!(
            "INSERT INTO {TABLE} (worker_id, key, stats, written_at) \
             SELECT $1, k, s, $4 FROM UNNEST($2::text[], $3::text[]) AS t(k, s) \
             ON CONFLICT (worker_id, key) DO UPDATE SET stats = EXCLUDED.stats, written_at = EXCLUDED.written_at"
        ))
        .bind(&self.worker_id)
        .bind(&keys)
        .bind(&stats)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| self.db_error(e))?;
        Ok(())
    }
}

/// Decodes rows; an unreadable one is skipped with a warning naming it (a newer procos may own
/// it).
fn decode(raw: Vec<(String, String, String)>) -> Vec<Row> {
    raw.into_iter()
        .filter_map(|(worker, key, stats)| {
            let decoded = serde_json::from_str::<Key>(&key)
                .map_err(|e| format!("key: {e}"))
                .and_then(|k| {
                    serde_json::from_str::<Stats>(&stats)
                        .map(|s| (k, s))
                        .map_err(|e| format!("statistics: {e}"))
                });
            match decoded {
                Ok((k, s)) => Some((worker, k, s)),
                Err(error) => {
                    tracing::warn!(worker_id = %worker, row = %key, %error, "Skipping an unreadable shared learner row.");
                    None
                }
            }
        })
        .collect()
}

/// This worker's rows, and the others' merged per key.
fn split(
    rows: Vec<Row>,
    worker_id: &str,
    learner: &Learner,
) -> (HashMap<Key, Stats>, HashMap<Key, Stats>) {
    let mut mine = HashMap::new();
    let mut others: HashMap<Key, Stats> = HashMap::new();
    for (worker, key, stats) in rows {
        if worker == worker_id {
            mine.insert(key, stats);
        } else {
            let half_life = learner.half_life_secs(&key.topic);
            add(others.entry(key).or_default(), &stats, half_life);
        }
    }
    (mine, others)
}

/// Every replica's figures merged per key (for `procos stats`), with `learner`'s half-lives.
pub async fn read_merged(
    url: &Secret,
    learner: &Learner,
) -> Result<Vec<(Key, Stats)>, SharedError> {
    let store = SharedStats::new(url, "")?;
    let rows = store.rows().await;
    store.pool.close().await;
    let mut merged: HashMap<Key, Stats> = HashMap::new();
    for (_, key, stats) in rows? {
        let half_life = learner.half_life_secs(&key.topic);
        add(merged.entry(key).or_default(), &stats, half_life);
    }
    let mut all: Vec<_> = merged.into_iter().collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(all)
}

#[cfg(test)]
mod tests;
