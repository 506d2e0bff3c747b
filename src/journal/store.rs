//! The journal's file: one redb database under `state_dir`, written by one thread that commits
//! whatever has queued up in one transaction (group commit), so a thousand tasks finishing
//! together cost one fsync, not a thousand. The learner's statistics and the endpoints' health
//! live in two more tables of the same file and ride the same commits.
//!
//! ```text
//!  Journal ──put/remove──► channel ──► writer thread: drain queue → one write txn → commit
//!  learner flush ─rows──►     ▲                                        │
//!                └────────────┴── durable writes wait for ◄────────────┘
//! ```
//!
//! The file stays in redb's default `ExclusiveWriter` mode: its `SingleWriter` mode would let
//! another process read beside this one, but forces a two-phase commit (two fsyncs instead of
//! one) on every journal commit. Readers of a running procos's figures read the snapshot the
//! learner's flusher writes next to the file instead; [`read_only`] reads the file itself when
//! no procos has it open.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

/// The database file's name inside `state_dir`.
pub const FILE_NAME: &str = "journal.redb";
/// Task id → JSON of its [`Entry`](super::Entry).
const OUTCOMES: TableDefinition<&str, &[u8]> = TableDefinition::new("outcomes");
/// The learner's statistics: JSON of a learner key → JSON of its statistics.
const LEARNER: TableDefinition<&str, &[u8]> = TableDefinition::new("learner");
/// The endpoints' health at the last flush: endpoint name → JSON of its health.
const HEALTH: TableDefinition<&str, &[u8]> = TableDefinition::new("health");
/// Small facts about this state dir (the worker id).
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
/// redb's page cache.
const CACHE_BYTES: usize = 8 * 1024 * 1024;
/// Most operations committed in one transaction.
const BATCH: usize = 4096;

/// Why the store could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory or database file could not be created or opened.
    #[error("state_dir `{path}`: {message}")]
    Open { path: PathBuf, message: String },
    /// A write failed (disk full, I/O error); the entry is not durable.
    #[error("outcome journal: {0}")]
    Write(String),
    /// There is no store in this directory yet (procos never ran with this `state_dir`).
    #[error(
        "state_dir `{path}`: no store yet (no {FILE_NAME}; procos has not run with this state_dir)"
    )]
    Missing { path: PathBuf },
    /// A running procos has the file open (only one process may), and left nothing else to read.
    #[error(
        "state_dir `{path}`: {FILE_NAME} is in use by a running procos, which has written no snapshot to read instead yet"
    )]
    InUse { path: PathBuf },
    /// The store exists but could not be read.
    #[error("state_dir `{path}`: cannot read {FILE_NAME}: {message}")]
    Read { path: PathBuf, message: String },
}

/// A table kept next to the outcomes, in the same file and the same commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// The learner's statistics (key → stats, both JSON).
    Learner,
    /// The endpoints' health (endpoint name → JSON).
    Health,
}

impl Table {
    fn definition(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            Table::Learner => LEARNER,
            Table::Health => HEALTH,
        }
    }
}

/// Rows of a table: (key, value bytes), sorted by key.
pub type Rows = Vec<(String, Vec<u8>)>;

/// One change to a table.
#[derive(Debug)]
pub(super) enum Op {
    /// Writes an outcome.
    Put(String, Vec<u8>),
    /// Forgets an outcome.
    Remove(String),
    /// Writes a row of a side table.
    Row(Table, String, Vec<u8>),
}

struct Batch {
    ops: Vec<Op>,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// Handle to the writer thread. Dropping every handle ends the thread after its last commit.
#[derive(Clone)]
pub(super) struct Store {
    tx: mpsc::UnboundedSender<Batch>,
    /// Shared with the writer thread for reads (redb reads run beside a write transaction).
    db: Arc<Database>,
    /// Transactions committed since the file was opened.
    commits: Arc<AtomicU64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("commits", &self.commits.load(Ordering::Relaxed))
            .finish()
    }
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("ops", &self.ops.len())
            .finish()
    }
}

/// What [`Store::open`] found in the file.
pub(super) struct Opened {
    pub store: Store,
    /// Every stored outcome: (task id, JSON).
    pub entries: Vec<(String, Vec<u8>)>,
    /// The worker id kept for this state dir, created on first use.
    pub worker_id: String,
}

impl Store {
    /// Opens (or creates) `<dir>/journal.redb`, reads it whole and starts the writer thread.
    /// `new_worker_id` is stored if the file has none yet.
    pub fn open(dir: &Path, new_worker_id: &str) -> Result<Opened, StoreError> {
        let open_err = |message: String| StoreError::Open {
            path: dir.to_path_buf(),
            message,
        };
        // It holds output variables of unacknowledged reports: the procos user's alone.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)
            .map_err(|e| open_err(e.to_string()))?;
        // The ledger in memory answers every read; the file is only written and read at start,
        // so redb's page cache (1 GiB by default) is kept small.
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(dir.join(FILE_NAME))
            .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => open_err(
                "the journal is in use by another procos process (each replica needs its own state_dir)"
                    .into(),
            ),
            other => open_err(other.to_string()),
        })?;
        let worker_id = worker_id(&db, new_worker_id).map_err(open_err)?;
        let entries = read_table(&db, OUTCOMES).map_err(open_err)?;
        let db = Arc::new(db);
        let commits = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::unbounded_channel();
        let (writer_db, writer_commits) = (db.clone(), commits.clone());
        std::thread::Builder::new()
            .name("procos-journal".into())
            .spawn(move || writer(&writer_db, &writer_commits, rx))
            .map_err(|e| open_err(e.to_string()))?;
        Ok(Opened {
            store: Store { tx, db, commits },
            entries,
            worker_id,
        })
    }

    /// Every row of `table` as last committed (blocking file I/O: call off the runtime).
    pub fn rows(&self, table: Table) -> Result<Rows, StoreError> {
        read_table(self.db.as_ref(), table.definition()).map_err(StoreError::Write)
    }

    /// Transactions committed since the file was opened.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Queues `ops`; resolves once they are committed to disk.
    pub async fn durable(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Batch {
                ops,
                done: Some(done),
            })
            .map_err(|_| StoreError::Write("the journal writer has stopped".into()))?;
        wait.await
            .map_err(|_| StoreError::Write("the journal writer has stopped".into()))?
            .map_err(StoreError::Write)
    }

    /// Queues `ops` for the next commit without waiting for it.
    pub fn queue(&self, ops: Vec<Op>) {
        let _ = self.tx.send(Batch { ops, done: None });
    }
}

fn worker_id(db: &Database, new: &str) -> Result<String, String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    let id = {
        let mut meta = txn.open_table(META).map_err(|e| e.to_string())?;
        let existing = meta
            .get("worker_id")
            .map_err(|e| e.to_string())?
            .map(|v| v.value().to_string());
        match existing {
            Some(id) => id,
            None => {
                meta.insert("worker_id", new).map_err(|e| e.to_string())?;
                new.to_string()
            }
        }
    };
    txn.commit().map_err(|e| e.to_string())?;
    Ok(id)
}

/// The side tables of the store in `dir`, read without writing to it, when no procos has it open
/// ([`StoreError::InUse`] when one has). Blocking file I/O.
pub fn read_only(dir: &Path) -> Result<(Rows, Rows), StoreError> {
    let path = dir.join(FILE_NAME);
    let read_err = |message: String| StoreError::Read {
        path: dir.to_path_buf(),
        message,
    };
    if !path.exists() {
        return Err(StoreError::Missing {
            path: dir.to_path_buf(),
        });
    }
    let opened = redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .open_read_only(&path);
    let db = match opened {
        Ok(db) => db,
        // A procos that stopped without closing the file (killed, power loss) left it for the
        // next writer to repair; a reader may not. Repair a private copy instead.
        Err(redb::DatabaseError::RepairAborted) => {
            return read_repaired_copy(&path).map_err(read_err);
        }
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            return Err(StoreError::InUse {
                path: dir.to_path_buf(),
            });
        }
        Err(e) => return Err(read_err(e.to_string())),
    };
    let learner = read_table(&db, LEARNER).map_err(read_err)?;
    let health = read_table(&db, HEALTH).map_err(read_err)?;
    Ok((learner, health))
}

/// Copies the file, opens the copy as a writer (which repairs it) and reads the side tables.
fn read_repaired_copy(path: &Path) -> Result<(Rows, Rows), String> {
    let copy = std::env::temp_dir().join(format!(
        "procos-stats-{}.redb",
        uuid::Uuid::new_v4().simple()
    ));
    let result = std::fs::copy(path, &copy)
        .map_err(|e| format!("copying it to repair the copy: {e}"))
        .and_then(|_| {
            let db = redb::Builder::new()
                .set_cache_size(CACHE_BYTES)
                .create(&copy)
                .map_err(|e| format!("repairing a copy: {e}"))?;
            Ok((read_table(&db, LEARNER)?, read_table(&db, HEALTH)?))
        });
    let _ = std::fs::remove_file(&copy);
    result
}

fn read_table(
    db: &impl ReadableDatabase,
    definition: TableDefinition<&str, &[u8]>,
) -> Result<Rows, String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let table = match txn.open_table(definition) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    let mut out = Vec::new();
    for row in table.iter().map_err(|e| e.to_string())? {
        let (k, v) = row.map_err(|e| e.to_string())?;
        out.push((k.value().to_string(), v.value().to_vec()));
    }
    Ok(out)
}

/// The writer thread: blocks for one batch, takes whatever else has queued, commits once.
fn writer(db: &Database, commits: &AtomicU64, mut rx: mpsc::UnboundedReceiver<Batch>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batches = vec![first];
        let mut ops = batches[0].ops.len();
        while ops < BATCH {
            match rx.try_recv() {
                Ok(b) => {
                    ops += b.ops.len();
                    batches.push(b);
                }
                Err(_) => break,
            }
        }
        let result = commit(db, &mut batches);
        if result.is_ok() {
            commits.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, "Could not write the outcome journal; outcomes of tasks finishing now are not crash-safe.");
        }
        for b in batches {
            if let Some(done) = b.done {
                let _ = done.send(result.clone());
            }
        }
    }
}

fn commit(db: &Database, batches: &mut [Batch]) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut table = txn.open_table(OUTCOMES).map_err(|e| e.to_string())?;
        // Side tables are opened (and created) only when a batch writes to them.
        let (mut learner, mut health) = (None, None);
        for op in batches.iter_mut().flat_map(|b| b.ops.drain(..)) {
            match op {
                Op::Put(k, v) => table.insert(k.as_str(), v.as_slice()).map(drop),
                Op::Remove(k) => table.remove(k.as_str()).map(drop),
                Op::Row(which, k, v) => {
                    let slot = match which {
                        Table::Learner => &mut learner,
                        Table::Health => &mut health,
                    };
                    if slot.is_none() {
                        *slot = Some(
                            txn.open_table(which.definition())
                                .map_err(|e| e.to_string())?,
                        );
                    }
                    match slot {
                        Some(t) => t.insert(k.as_str(), v.as_slice()).map(drop),
                        None => Ok(()),
                    }
                }
            }
            .map_err(|e| e.to_string())?;
        }
    }
    txn.commit().map_err(|e| e.to_string())
}
