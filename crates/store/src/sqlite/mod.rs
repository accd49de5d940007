//! SQLite backend, the embedded default.
//!
//! Writes go through one writer thread that group-commits (see `writer`): a caller's future
//! resolves only after the COMMIT (WAL, `synchronous=FULL`: one fsync per batch) that contains
//! its write. Reads (ranges, watch replay) use a small pool of read-only connections on
//! blocking threads; in WAL mode they never wait for the writer and never see "database is
//! locked". History is bounded: the writer compacts automatically (time window, min/max
//! revisions), deletes superseded rows in chunks, and returns freed pages with
//! `incremental_vacuum`; SQLite's auto-checkpoint plus `journal_size_limit` bound the WAL.
//!
//! One process opens a database at a time (the writer thread is the only writer).
//!
//! Leases: ids and TTLs are persisted; on reopen every lease gets its full TTL again (as etcd
//! does on a leader change), so keys of a lease outlive a restart by at most one TTL.

mod schema;
mod writer;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::mvcc::{resolve_read_revision, validate_txn};
use crate::store::{Store, WatchStream};
use crate::types::{
    Event, LeaseId, RangeRequest, RangeResponse, Revision, TxnRequest, TxnResponse, WatchRequest,
};
use crate::watch::{History, HubWatch, WatchHub, lock};
use schema::{ctx, first_id};
use writer::{Request, Shared, Writer};

/// How much history the sqlite backend keeps before compacting automatically.
#[derive(Clone, Debug)]
pub struct HistoryConfig {
    /// Keep the revisions written within this window...
    pub window: Duration,
    /// ...but always at least this many revisions...
    pub min_revisions: u64,
    /// ...and never more than this many.
    pub max_revisions: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            window: Duration::from_secs(300),
            min_revisions: 1_000,
            max_revisions: 20_000,
        }
    }
}

/// Settings of the sqlite backend.
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    /// Database file (created if missing).
    pub path: PathBuf,
    /// Automatic compaction policy.
    pub history: HistoryConfig,
    /// Interval of progress notifications on idle watches that asked for them.
    pub progress_interval: Duration,
    /// Responses buffered per watcher before it is closed with `WatchLagged`.
    pub watch_buffer: usize,
    /// Most requests applied in one group commit.
    pub max_batch: usize,
    /// How often the writer compacts, expires leases and vacuums.
    pub maintenance_interval: Duration,
    /// Most revisions physically compacted per maintenance step.
    pub compaction_chunk: i64,
    /// Read connections (and so concurrent reads); further reads wait for one.
    pub read_connections: usize,
    /// WAL pages after which the writer checkpoints on commit (SQLite's auto-checkpoint).
    pub wal_autocheckpoint: u32,
}

impl SqliteConfig {
    /// Defaults for a database at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteConfig {
            path: path.into(),
            history: HistoryConfig::default(),
            progress_interval: Duration::from_secs(5),
            watch_buffer: 1024,
            max_batch: 1024,
            maintenance_interval: Duration::from_millis(250),
            compaction_chunk: 10_000,
            read_connections: 8,
            wal_autocheckpoint: 2000,
        }
    }
}

/// The sqlite store. Owns its writer thread: `shutdown` (or drop) stops and joins it.
pub struct SqliteStore {
    requests: Sender<Request>,
    writer: Mutex<Option<JoinHandle<()>>>,
    shared: Arc<Shared>,
    hub: Arc<WatchHub>,
    readers: Arc<ReadPool>,
    config: SqliteConfig,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.config.path).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (or creates) the database and starts the writer thread. Recovers to the last
    /// committed batch after a crash (SQLite's WAL recovery).
    pub fn open(config: SqliteConfig) -> Result<Self> {
        let conn = schema::open_writer(&config.path, config.wal_autocheckpoint)?;
        let revision = match schema::read_meta(&conn, "revision")? {
            Some(revision) => revision,
            None => {
                // A new store is at revision 1; the first write gets revision 2 (as in etcd).
                schema::write_meta(&conn, "revision", 1)?;
                schema::write_meta(&conn, "compact", 1)?;
                1
            }
        };
        let compact_revision = schema::read_meta(&conn, "compact")?.unwrap_or(1);
        let compacted_rows_to =
            schema::read_meta(&conn, "compacted_rows_to")?.unwrap_or(1).min(compact_revision);
        let now = Instant::now();
        let leases = schema::load_leases(&conn, now)?;
        let hub = WatchHub::new(revision, config.watch_buffer);
        let shared = Arc::new(Shared {
            revision: AtomicI64::new(revision),
            compact_revision: AtomicI64::new(compact_revision),
        });
        let readers = Arc::new(ReadPool {
            path: config.path.clone(),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(tokio::sync::Semaphore::new(config.read_connections.max(1))),
        });
        let (requests, rx) = std::sync::mpsc::channel();
        let writer = Writer {
            conn,
            rx,
            hub: hub.clone(),
            shared: shared.clone(),
            config: config.clone(),
            revision,
            compact_revision,
            compacted_rows_to,
            leases,
            samples: Default::default(),
            next_maintenance: now + config.maintenance_interval,
        };
        let handle = std::thread::Builder::new()
            .name("store-sqlite-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| Error::Storage {
                context: "starting the writer thread".into(),
                source: Arc::new(e),
            })?;
        Ok(SqliteStore { requests, writer: Mutex::new(Some(handle)), shared, hub, readers, config })
    }

    /// The database file's path.
    pub fn path(&self) -> &std::path::Path {
        &self.config.path
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Request) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.requests.send(make(reply)).map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        let (reply, _rx) = oneshot::channel();
        let _ = self.requests.send(Request::Shutdown { reply });
        if let Some(handle) = lock(&self.writer).take()
            && handle.join().is_err()
        {
            tracing::error!("sqlite writer thread panicked");
        }
    }
}

/// Read-only connections, reused; the semaphore bounds how many exist.
#[derive(Debug)]
struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<tokio::sync::Semaphore>,
}

impl ReadPool {
    /// Runs `f` in a read transaction on a blocking thread.
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        // Held by the blocking task itself, so a cancelled read still counts until it is done.
        let permit = self.permits.clone().acquire_owned().await.map_err(|_| Error::Closed)?;
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut conn = match lock(&pool.idle).pop() {
                Some(conn) => conn,
                None => schema::open_reader(&pool.path)?,
            };
            let result = conn.transaction().map_err(ctx("starting a read")).and_then(|tx| {
                let value = f(&tx)?;
                tx.finish().map_err(ctx("ending a read"))?;
                Ok(value)
            });
            lock(&pool.idle).push(conn);
            result
        })
        .await
        .map_err(|e| Error::Storage { context: "running a read".into(), source: Arc::new(e) })?
    }
}

/// Revision and compaction point as seen by a read transaction.
fn read_header(conn: &Connection) -> Result<(Revision, Revision)> {
    let revision = schema::read_meta(conn, "revision")?.unwrap_or(1);
    let compacted = schema::read_meta(conn, "compact")?.unwrap_or(1);
    Ok((revision, compacted))
}

/// The sqlite history source (an `Arc` handle to the pool).
struct SqliteHistory(Arc<ReadPool>);

#[async_trait]
impl History for SqliteHistory {
    async fn events(
        &self,
        key: &str,
        range_end: &str,
        from: Revision,
        to: Revision,
        prev_kv: bool,
    ) -> Result<Vec<Event>> {
        let (key, range_end) = (key.to_string(), range_end.to_string());
        self.0
            .read(move |conn| {
                let (_, compacted) = read_header(conn)?;
                if from < compacted {
                    return Err(Error::Compacted { requested: from, compacted });
                }
                schema::events(conn, &key, &range_end, from, to, prev_kv)
            })
            .await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        if self.hub.is_closed() {
            return Err(Error::Closed);
        }
        self.readers
            .read(move |conn| {
                let (current, compacted) = read_header(conn)?;
                let at = resolve_read_revision(req.revision, current, compacted)?;
                schema::range(conn, &req, first_id(at + 1), current)
            })
            .await
    }

    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse> {
        validate_txn(&req)?;
        self.call(|reply| Request::Txn { req, reply }).await
    }

    async fn watch(&self, req: WatchRequest) -> Result<WatchStream> {
        if self.hub.is_closed() {
            return Err(Error::Closed);
        }
        let compacted = self.shared.compact_revision.load(Ordering::Acquire);
        if req.start_revision > 0 && req.start_revision < compacted {
            return Err(Error::Compacted { requested: req.start_revision, compacted });
        }
        let history: Arc<dyn History> = Arc::new(SqliteHistory(self.readers.clone()));
        let watch = HubWatch::new(self.hub.clone(), history, req, self.config.progress_interval);
        Ok(WatchStream::new(Box::new(watch)))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.call(|reply| Request::Compact { revision, reply }).await
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId> {
        self.call(|reply| Request::LeaseGrant { ttl, reply }).await
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<()> {
        self.call(|reply| Request::LeaseRevoke { id, reply }).await
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration> {
        self.call(|reply| Request::LeaseKeepAlive { id, reply }).await
    }

    async fn current_revision(&self) -> Result<Revision> {
        if self.hub.is_closed() {
            return Err(Error::Closed);
        }
        Ok(self.shared.revision.load(Ordering::Acquire))
    }

    async fn shutdown(&self) -> Result<()> {
        let result = self.call(|reply| Request::Shutdown { reply }).await;
        self.hub.close();
        let handle = lock(&self.writer).take();
        if let Some(handle) = handle {
            let joined = tokio::task::spawn_blocking(move || handle.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!("sqlite writer thread panicked");
            }
        }
        match result {
            Err(Error::Closed) => Ok(()),
            other => other,
        }
    }
}
