//! The journal's file: one redb database under `state_dir`, written by one thread that commits
//! whatever has queued up in one transaction (group commit), so a thousand tasks finishing
//! together cost one fsync, not a thousand.
//!
//! ```text
//!  Journal ──put/remove──► channel ──► writer thread: drain queue → one write txn → commit
//!                ▲                                                   │
//!                └────────────── durable writes wait for ◄───────────┘
//! ```

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

/// Task id → JSON of its [`Entry`](super::Entry).
const OUTCOMES: TableDefinition<&str, &[u8]> = TableDefinition::new("outcomes");
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
}

/// One change to the outcomes table.
#[derive(Debug)]
pub(super) enum Op {
    Put(String, Vec<u8>),
    Remove(String),
}

struct Batch {
    ops: Vec<Op>,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// Handle to the writer thread. Dropping every handle ends the thread after its last commit.
#[derive(Debug, Clone)]
pub(super) struct Store {
    tx: mpsc::UnboundedSender<Batch>,
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
            .create(dir.join("journal.redb"))
            .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => open_err(
                "the journal is in use by another procos process (each replica needs its own state_dir)"
                    .into(),
            ),
            other => open_err(other.to_string()),
        })?;
        let worker_id = worker_id(&db, new_worker_id).map_err(open_err)?;
        let entries = read_all(&db).map_err(open_err)?;
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("procos-journal".into())
            .spawn(move || writer(db, rx))
            .map_err(|e| open_err(e.to_string()))?;
        Ok(Opened {
            store: Store { tx },
            entries,
            worker_id,
        })
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

fn read_all(db: &Database) -> Result<Vec<(String, Vec<u8>)>, String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let table = match txn.open_table(OUTCOMES) {
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
fn writer(db: Database, mut rx: mpsc::UnboundedReceiver<Batch>) {
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
        let result = commit(&db, &mut batches);
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
        for op in batches.iter_mut().flat_map(|b| b.ops.drain(..)) {
            match op {
                Op::Put(k, v) => table.insert(k.as_str(), v.as_slice()).map(drop),
                Op::Remove(k) => table.remove(k.as_str()).map(drop),
            }
            .map_err(|e| e.to_string())?;
        }
    }
    txn.commit().map_err(|e| e.to_string())
}
