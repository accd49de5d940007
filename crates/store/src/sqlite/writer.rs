//! The single writer thread: group commit, lease expiry and automatic compaction.
//!
//! The thread takes every request waiting in its channel (up to `max_batch`), applies them in
//! order inside one SQLite transaction — each transaction's compares see the earlier ones of the
//! batch — commits once (one fsync for the whole batch), and only then publishes the events and
//! answers the callers. If the batch fails (disk full, I/O error) it is rolled back, every
//! caller of the batch gets the error, and the thread carries on with the next batch.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use super::SqliteConfig;
use super::schema::{self, ctx, first_id};
use crate::error::{Error, Result};
use crate::mvcc::{Applied, Backing, LeaseTable, apply_revoke, apply_txn};
use crate::types::{
    Event, KeyValue, LeaseId, RangeRequest, RangeResponse, Revision, TxnRequest, TxnResponse,
};
use crate::watch::WatchHub;

/// A request to the writer thread.
pub(super) enum Request {
    Txn { req: TxnRequest, reply: oneshot::Sender<Result<TxnResponse>> },
    LeaseGrant { ttl: Duration, reply: oneshot::Sender<Result<LeaseId>> },
    LeaseRevoke { id: LeaseId, reply: oneshot::Sender<Result<()>> },
    LeaseKeepAlive { id: LeaseId, reply: oneshot::Sender<Result<Duration>> },
    Compact { revision: Revision, reply: oneshot::Sender<Result<()>> },
    Shutdown { reply: oneshot::Sender<Result<()>> },
}

/// An answer held back until the batch is committed.
enum Reply {
    Txn(oneshot::Sender<Result<TxnResponse>>, Result<TxnResponse>),
    Lease(oneshot::Sender<Result<LeaseId>>, Result<LeaseId>),
    Ttl(oneshot::Sender<Result<Duration>>, Result<Duration>),
    Unit(oneshot::Sender<Result<()>>, Result<()>),
}

impl Reply {
    /// Replaces a success by `err` (the batch did not commit); refusals stay as they are.
    fn fail(self, err: &Error) -> Self {
        match self {
            Reply::Txn(tx, Ok(_)) => Reply::Txn(tx, Err(err.clone())),
            Reply::Lease(tx, Ok(_)) => Reply::Lease(tx, Err(err.clone())),
            Reply::Ttl(tx, Ok(_)) => Reply::Ttl(tx, Err(err.clone())),
            Reply::Unit(tx, Ok(())) => Reply::Unit(tx, Err(err.clone())),
            other => other,
        }
    }

    fn send(self) {
        // A caller that went away no longer needs its answer.
        let _ = match self {
            Reply::Txn(tx, r) => tx.send(r).map_err(drop),
            Reply::Lease(tx, r) => tx.send(r).map_err(drop),
            Reply::Ttl(tx, r) => tx.send(r).map_err(drop),
            Reply::Unit(tx, r) => tx.send(r).map_err(drop),
        };
    }
}

fn reply_with(req: Request, err: Error) -> Reply {
    match req {
        Request::Txn { reply, .. } => Reply::Txn(reply, Err(err)),
        Request::LeaseGrant { reply, .. } => Reply::Lease(reply, Err(err)),
        Request::LeaseKeepAlive { reply, .. } => Reply::Ttl(reply, Err(err)),
        Request::LeaseRevoke { reply, .. }
        | Request::Compact { reply, .. }
        | Request::Shutdown { reply } => Reply::Unit(reply, Err(err)),
    }
}

/// State shared with the store handle.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) revision: AtomicI64,
    pub(super) compact_revision: AtomicI64,
}

pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) rx: Receiver<Request>,
    pub(super) hub: Arc<WatchHub>,
    pub(super) shared: Arc<Shared>,
    pub(super) config: SqliteConfig,
    pub(super) revision: Revision,
    /// Logical compaction point: reads below it fail.
    pub(super) compact_revision: Revision,
    /// Rows below this revision have been physically compacted.
    pub(super) compacted_rows_to: Revision,
    pub(super) leases: LeaseTable,
    /// (time, revision) samples for the time window of history.
    pub(super) samples: VecDeque<(Instant, Revision)>,
    pub(super) next_maintenance: Instant,
}

/// The writer's view of the rows inside the open transaction.
struct SqlBacking<'c> {
    conn: &'c Connection,
    compact_revision: Revision,
    revision: Revision,
    next_sub: i64,
}

impl Backing for SqlBacking<'_> {
    fn latest(&mut self, key: &str) -> Result<Option<KeyValue>> {
        schema::latest(self.conn, key, i64::MAX)
    }

    fn live_range(&mut self, key: &str, range_end: &str) -> Result<Vec<KeyValue>> {
        let req = RangeRequest::range(key, range_end);
        Ok(schema::range(self.conn, &req, i64::MAX, 0)?.kvs)
    }

    fn range_at(&mut self, req: &RangeRequest, revision: Revision) -> Result<RangeResponse> {
        schema::range(self.conn, req, first_id(revision + 1), 0)
    }

    fn write(&mut self, revision: Revision, kv: &KeyValue, deleted: bool) -> Result<()> {
        if revision != self.revision {
            self.revision = revision;
            self.next_sub = 0;
        }
        if self.next_sub >= 1 << schema::SUB_BITS {
            // Fails the whole batch (a storage-class error), so no partial txn is committed.
            return Err(Error::Storage {
                context: "writing one revision".into(),
                source: Arc::new(std::io::Error::other("more than 2^24 keys in one revision")),
            });
        }
        let id = first_id(revision) | self.next_sub;
        self.next_sub += 1;
        self.conn
            .prepare_cached(
                "INSERT INTO log (id, key, deleted, create_revision, version, lease, value) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    id,
                    kv.key,
                    deleted,
                    kv.create_revision,
                    kv.version,
                    kv.lease,
                    &kv.value[..]
                ])
            })
            .map(drop)
            .map_err(ctx("writing a key"))
    }

    fn compact_revision(&self) -> Revision {
        self.compact_revision
    }
}

/// Runs a statement to completion, ignoring rows (some pragmas return them, and
/// `incremental_vacuum` frees one page per step).
fn exec(conn: &Connection, sql: &'static str) -> Result<()> {
    let run = || -> rusqlite::Result<()> {
        let mut stmt = conn.prepare_cached(sql)?;
        let mut rows = stmt.query([])?;
        while rows.next()?.is_some() {}
        Ok(())
    };
    run().map_err(ctx(sql))
}

impl Writer {
    pub(super) fn run(mut self) {
        loop {
            let now = Instant::now();
            let wait = self
                .leases
                .next_deadline()
                .map_or(self.next_maintenance, |d| d.min(self.next_maintenance))
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            let mut batch = Vec::new();
            match self.rx.recv_timeout(wait) {
                Ok(req) => batch.push(req),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.close();
                    return;
                }
            }
            while batch.len() < self.config.max_batch.max(1) {
                match self.rx.try_recv() {
                    Ok(req) => batch.push(req),
                    Err(_) => break,
                }
            }
            let mut shutdown = Vec::new();
            let mut work = Vec::with_capacity(batch.len());
            for req in batch {
                match req {
                    Request::Shutdown { reply } => shutdown.push(reply),
                    other => work.push(other),
                }
            }
            self.process(work);
            if !shutdown.is_empty() {
                let result = self.close();
                for reply in shutdown {
                    Reply::Unit(reply, result.clone()).send();
                }
                // Anything sent after the shutdown request is refused.
                while let Ok(req) = self.rx.try_recv() {
                    reply_with(req, Error::Closed).send();
                }
                return;
            }
        }
    }

    /// Every acknowledged write is already durable (in the WAL); the final checkpoint only
    /// moves it into the main file, so its failure (e.g. a full disk) is not an error.
    fn close(&mut self) -> Result<()> {
        self.hub.close();
        if let Err(e) = exec(&self.conn, "PRAGMA wal_checkpoint(TRUNCATE)") {
            tracing::warn!(error = %e, "final checkpoint failed; the WAL keeps the data");
        }
        Ok(())
    }

    /// Applies one batch in one transaction, commits, publishes, answers.
    fn process(&mut self, batch: Vec<Request>) {
        let now = Instant::now();
        let expired = self.leases.expired(now);
        let maintenance_due = now >= self.next_maintenance;
        let idle = batch.is_empty() && expired.is_empty();
        if idle && !maintenance_due {
            return;
        }
        if let Err(err) = exec(&self.conn, "BEGIN IMMEDIATE") {
            for req in batch {
                reply_with(req, err.clone()).send();
            }
            return;
        }
        let mut revision = self.revision;
        let mut compact_revision = self.compact_revision;
        let mut events: Vec<Event> = Vec::new();
        let mut replies = Vec::with_capacity(batch.len());
        let mut failure: Option<Error> = None;
        let conn = &self.conn;
        let leases = &mut self.leases;
        let mut backing = SqlBacking { conn, compact_revision, revision: 0, next_sub: 0 };

        // Takes an applied transaction's events; hands back its response.
        let mut commit_applied = |applied: Applied, revision: &mut Revision| {
            *revision = (*revision).max(applied.response.header_revision);
            events.extend(applied.events);
            applied.response
        };

        for id in expired {
            match apply_revoke(&mut backing, leases, id, revision).and_then(|applied| {
                delete_lease_row(conn, id)?;
                Ok(applied)
            }) {
                Ok(applied) => drop(commit_applied(applied, &mut revision)),
                Err(e) if e.is_storage() => {
                    failure = Some(e);
                    break;
                }
                Err(e) => tracing::warn!(lease = id, error = %e, "revoking an expired lease"),
            }
        }

        for req in batch {
            if let Some(err) = &failure {
                replies.push(reply_with(req, err.clone()));
                continue;
            }
            let reply = match req {
                Request::Txn { req, reply } => {
                    match apply_txn(&mut backing, leases, now, &req, revision) {
                        Ok(applied) => {
                            Reply::Txn(reply, Ok(commit_applied(applied, &mut revision)))
                        }
                        Err(e) => Reply::Txn(reply, Err(e)),
                    }
                }
                Request::LeaseGrant { ttl, reply } => {
                    let id = leases.grant(ttl, now);
                    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
                    let stored = conn
                        .prepare_cached(
                            "INSERT OR REPLACE INTO leases (id, ttl_ms) VALUES (?1, ?2)",
                        )
                        .and_then(|mut stmt| stmt.execute(params![id, ttl_ms]))
                        .map_err(ctx("storing a lease"))
                        .and_then(|_| schema::write_meta(conn, "next_lease", id + 1));
                    Reply::Lease(reply, stored.map(|()| id))
                }
                Request::LeaseRevoke { id, reply } => {
                    let result = apply_revoke(&mut backing, leases, id, revision).and_then(|a| {
                        delete_lease_row(conn, id)?;
                        Ok(a)
                    });
                    match result {
                        Ok(applied) => {
                            drop(commit_applied(applied, &mut revision));
                            Reply::Unit(reply, Ok(()))
                        }
                        Err(e) => Reply::Unit(reply, Err(e)),
                    }
                }
                Request::LeaseKeepAlive { id, reply } => {
                    Reply::Ttl(reply, leases.keep_alive(id, now))
                }
                Request::Compact { revision: target, reply } => {
                    let result = if target <= compact_revision {
                        Err(Error::Compacted { requested: target, compacted: compact_revision })
                    } else if target > revision {
                        Err(Error::FutureRevision { requested: target, current: revision })
                    } else {
                        compact_revision = target;
                        Ok(())
                    };
                    Reply::Unit(reply, result)
                }
                Request::Shutdown { reply } => Reply::Unit(reply, Ok(())),
            };
            if let Reply::Txn(_, Err(e)) | Reply::Lease(_, Err(e)) | Reply::Unit(_, Err(e)) = &reply
                && e.is_storage()
            {
                failure = Some(e.clone());
            }
            replies.push(reply);
        }

        let mut compacted_rows_to = self.compacted_rows_to;
        if failure.is_none() && maintenance_due {
            let target = self.auto_compaction_target(now, revision);
            if target > compact_revision {
                compact_revision = target;
            }
            if compacted_rows_to < compact_revision {
                let to = compact_revision
                    .min(compacted_rows_to.saturating_add(self.config.compaction_chunk.max(1)));
                match schema::compact_rows(&self.conn, compacted_rows_to, to)
                    .and_then(|_| schema::write_meta(&self.conn, "compacted_rows_to", to))
                {
                    Ok(()) => compacted_rows_to = to,
                    Err(e) => failure = Some(e),
                }
            }
        }
        if failure.is_none() {
            let mut meta = Ok(());
            if revision != self.revision {
                meta = schema::write_meta(&self.conn, "revision", revision);
            }
            if meta.is_ok() && compact_revision != self.compact_revision {
                meta = schema::write_meta(&self.conn, "compact", compact_revision);
            }
            if let Err(e) = meta.and_then(|()| exec(&self.conn, "COMMIT")) {
                failure = Some(e);
            }
        }

        if let Some(err) = failure {
            tracing::warn!(error = %err, "write batch failed; rolled back");
            if let Err(e) = exec(&self.conn, "ROLLBACK") {
                tracing::warn!(error = %e, "rolling back a failed batch");
            }
            // Lease grants and attachments of the batch were undone with it.
            match schema::load_leases(&self.conn, now) {
                Ok(table) => self.leases = table,
                Err(e) => tracing::error!(error = %e, "reloading leases after a failed batch"),
            }
            for reply in replies {
                reply.fail(&err).send();
            }
            return;
        }

        self.revision = revision;
        self.compact_revision = compact_revision;
        self.compacted_rows_to = compacted_rows_to;
        self.shared.revision.store(revision, Ordering::Release);
        self.shared.compact_revision.store(compact_revision, Ordering::Release);
        self.hub.publish(revision, &events);
        for reply in replies {
            reply.send();
        }
        if maintenance_due {
            self.after_commit_maintenance(now, idle);
        }
    }

    /// Where automatic compaction should be: keep the revisions of the last `window`, but at
    /// least `min_revisions` and at most `max_revisions`.
    fn auto_compaction_target(&mut self, now: Instant, revision: Revision) -> Revision {
        let history = &self.config.history;
        self.samples.push_back((now, revision));
        let cutoff = now.checked_sub(history.window);
        while self.samples.len() > 1
            && cutoff.is_some_and(|c| self.samples.get(1).is_some_and(|(t, _)| *t <= c))
        {
            self.samples.pop_front();
        }
        // Revisions written after the oldest sample still inside the window are kept.
        let window_start = match (cutoff, self.samples.front()) {
            (Some(c), Some((t, r))) if *t <= c => *r,
            _ => 1,
        };
        let min = i64::try_from(history.min_revisions).unwrap_or(i64::MAX);
        let max = i64::try_from(history.max_revisions).unwrap_or(i64::MAX).max(min);
        window_start.max(revision.saturating_sub(max)).min(revision.saturating_sub(min)).max(1)
    }

    /// Returns freed pages to the file system when a large part of the file is free, and when
    /// idle moves the WAL into the main file (under load SQLite's auto-checkpoint does that on
    /// commit; `journal_size_limit` then cuts the WAL file back).
    fn after_commit_maintenance(&mut self, now: Instant, idle: bool) {
        self.next_maintenance = now + self.config.maintenance_interval;
        if idle && let Err(e) = exec(&self.conn, "PRAGMA wal_checkpoint(PASSIVE)") {
            tracing::warn!(error = %e, "idle checkpoint");
        }
        let pages = |pragma: &'static str| -> Result<i64> {
            self.conn.query_row(pragma, [], |row| row.get(0)).map_err(ctx(pragma))
        };
        match (pages("PRAGMA freelist_count"), pages("PRAGMA page_count")) {
            (Ok(free), Ok(total)) if free > 1024 && free * 4 > total => {
                if let Err(e) = exec(&self.conn, "PRAGMA incremental_vacuum(4096)") {
                    tracing::warn!(error = %e, "incremental vacuum");
                }
            }
            (Err(e), _) | (_, Err(e)) => tracing::warn!(error = %e, "reading page counts"),
            _ => {}
        }
    }
}

fn delete_lease_row(conn: &Connection, id: LeaseId) -> Result<()> {
    conn.prepare_cached("DELETE FROM leases WHERE id = ?1")
        .and_then(|mut stmt| stmt.execute([id]))
        .map(drop)
        .map_err(ctx("deleting a lease"))
}
