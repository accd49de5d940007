//! The on-disk layout and the SQL shared by the writer and the readers.
//!
//! `log` holds one row per key change. Its integer primary key is `revision << 24 | n`, `n`
//! numbering the keys written by that revision, so the table is clustered in revision order
//! (watch replay is a rowid range scan) and `log_key` serves per-key lookups. The small
//! columns come before `value` so that reading them never walks a large value's overflow pages.
//! A key's state at revision R is its row with the largest id below `(R + 1) << 24`, unless that
//! row is a tombstone (`deleted = 1`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Row, params};

use crate::error::{Error, Result};
use crate::mvcc::{LeaseTable, RangeCollector};
use crate::types::{
    Event, EventKind, KeyValue, RANGE_END_ALL, RangeRequest, RangeResponse, Revision,
};

/// Bits of a row id used for the position of a key within its revision.
pub(super) const SUB_BITS: u32 = 24;

/// Row ids of revision `revision` start here.
pub(super) fn first_id(revision: Revision) -> i64 {
    revision.saturating_mul(1 << SUB_BITS)
}

/// The revision a row id belongs to.
pub(super) fn revision_of(id: i64) -> Revision {
    id >> SUB_BITS
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS log_key ON log (key, id);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (id INTEGER PRIMARY KEY, ttl_ms INTEGER NOT NULL);
";

/// Maps a SQLite error; a full disk gets its own variant.
pub(super) fn sql_error(context: &str, err: rusqlite::Error) -> Error {
    if err.sqlite_error_code() == Some(ErrorCode::DiskFull) {
        Error::DiskFull { source: Arc::new(err) }
    } else {
        Error::Storage { context: context.to_string(), source: Arc::new(err) }
    }
}

/// `.map_err(ctx("doing x"))`
pub(super) fn ctx(context: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |err| sql_error(context, err)
}

/// Opens the writer's connection, creating and configuring the database.
pub(super) fn open_writer(path: &Path, wal_autocheckpoint: u32) -> Result<Connection> {
    let conn = Connection::open(path).map_err(ctx("opening the database"))?;
    // Must precede the first table; a no-op on an existing database.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL").map_err(ctx("setting auto_vacuum"))?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(ctx("enabling WAL"))?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(ctx("setting synchronous"))?;
    conn.pragma_update(None, "wal_autocheckpoint", wal_autocheckpoint)
        .map_err(ctx("setting wal_autocheckpoint"))?;
    // After a checkpoint the WAL file is cut back to this size rather than left at its peak.
    conn.pragma_update(None, "journal_size_limit", 16 * 1024 * 1024)
        .map_err(ctx("setting journal_size_limit"))?;
    conn.pragma_update(None, "cache_size", -32_768).map_err(ctx("setting cache_size"))?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(ctx("setting busy_timeout"))?;
    conn.execute_batch(SCHEMA).map_err(ctx("creating the schema"))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Opens a read-only connection (readers never take the write lock, so never see "locked").
pub(super) fn open_reader(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(ctx("opening a reader"))?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(ctx("setting busy_timeout"))?;
    conn.pragma_update(None, "cache_size", -16_384).map_err(ctx("setting cache_size"))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

pub(super) fn read_meta(conn: &Connection, name: &str) -> Result<Option<i64>> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")
        .and_then(|mut stmt| stmt.query_row([name], |row| row.get(0)).optional())
        .map_err(ctx("reading metadata"))
}

pub(super) fn write_meta(conn: &Connection, name: &str, value: i64) -> Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO meta (name, value) VALUES (?1, ?2)")
        .and_then(|mut stmt| stmt.execute(params![name, value]))
        .map(drop)
        .map_err(ctx("writing metadata"))
}

/// Reads `kv` columns laid out as: id, key, deleted, create_revision, version, lease, value.
fn kv_row(row: &Row<'_>) -> rusqlite::Result<(KeyValue, bool)> {
    let id: i64 = row.get(0)?;
    let value: Option<Vec<u8>> = row.get(6)?;
    let kv = KeyValue {
        key: row.get(1)?,
        value: value.map(Bytes::from).unwrap_or_default(),
        create_revision: row.get(3)?,
        mod_revision: revision_of(id),
        version: row.get(4)?,
        lease: row.get(5)?,
    };
    Ok((kv, row.get::<_, i64>(2)? != 0))
}

/// The latest row of `key` with an id below `before` (`None` if absent or deleted).
pub(super) fn latest(conn: &Connection, key: &str, before: i64) -> Result<Option<KeyValue>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, key, deleted, create_revision, version, lease, value FROM log \
             WHERE key = ?1 AND id < ?2 ORDER BY id DESC LIMIT 1",
        )
        .map_err(ctx("preparing a key lookup"))?;
    let row =
        stmt.query_row(params![key, before], kv_row).optional().map_err(ctx("reading a key"))?;
    Ok(row.and_then(|(kv, deleted)| (!deleted).then_some(kv)))
}

/// Upper bound of a range as an SQL parameter (`None`: unbounded); `None` overall if empty.
fn bounds(key: &str, range_end: &str) -> Option<(String, Option<String>)> {
    if range_end.is_empty() {
        Some((key.to_string(), Some(format!("{key}\0"))))
    } else if range_end == RANGE_END_ALL {
        Some((key.to_string(), None))
    } else if range_end <= key {
        None
    } else {
        Some((key.to_string(), Some(range_end.to_string())))
    }
}

/// Range over rows with ids below `id_limit`, i.e. at revision `revision_of(id_limit - 1)`.
pub(super) fn range(
    conn: &Connection,
    req: &RangeRequest,
    id_limit: i64,
    header_revision: Revision,
) -> Result<RangeResponse> {
    let mut out = RangeCollector::new(req, header_revision);
    // One key: one index seek to its latest row, however long its history is (the walk below
    // would visit every kept revision of it).
    if req.range_end.is_empty() {
        if let Some(kv) = latest(conn, &req.key, id_limit)? {
            out.push(kv);
        }
        return Ok(out.finish());
    }
    let Some((lo, hi)) = bounds(&req.key, &req.range_end) else {
        return Ok(out.finish());
    };
    // Walks log_key in key order; for each entry, one index seek tells whether it is the key's
    // latest row at the revision. No sort, no temporary table: a LIMIT stops the walk early.
    let upper = if hi.is_some() { "AND l.key < ?2" } else { "AND ?2 IS NULL" };
    let latest_rows = format!(
        "FROM log AS l WHERE l.key >= ?1 {upper} AND l.id < ?3 \
         AND l.id = (SELECT MAX(x.id) FROM log AS x WHERE x.key = l.key AND x.id < ?3) \
         AND l.deleted = 0"
    );
    if req.count_only {
        let sql = format!("SELECT COUNT(*) {latest_rows}");
        let n: i64 = conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| stmt.query_row(params![lo, hi, id_limit], |row| row.get(0)))
            .map_err(ctx("counting a range"))?;
        out.add_uncollected(u64::try_from(n).unwrap_or(0));
        return Ok(out.finish());
    }
    let sql = format!(
        "SELECT l.id, l.key, l.deleted, l.create_revision, l.version, l.lease, \
         CASE WHEN ?4 THEN NULL ELSE l.value END {latest_rows} ORDER BY l.key LIMIT ?5"
    );
    let limit: i64 =
        if req.limit > 0 { i64::try_from(req.limit).unwrap_or(i64::MAX - 1) + 1 } else { -1 };
    let mut stmt = conn.prepare_cached(&sql).map_err(ctx("preparing a range"))?;
    let rows = stmt
        .query_map(params![lo, hi, id_limit, req.keys_only, limit], kv_row)
        .map_err(ctx("reading a range"))?;
    for row in rows {
        let (kv, _) = row.map_err(ctx("reading a range"))?;
        if out.full() {
            // One row past the limit: there are more; count them without reading them.
            let sql = format!("SELECT COUNT(*) {latest_rows}");
            let total: i64 = conn
                .prepare_cached(&sql)
                .and_then(|mut stmt| stmt.query_row(params![lo, hi, id_limit], |row| row.get(0)))
                .map_err(ctx("counting a range"))?;
            let collected = req.limit;
            out.add_uncollected(u64::try_from(total).unwrap_or(0).saturating_sub(collected));
            break;
        }
        out.push(kv);
    }
    Ok(out.finish())
}

/// Events of revisions `[from, to]` for keys in the range, in revision order.
pub(super) fn events(
    conn: &Connection,
    key: &str,
    range_end: &str,
    from: Revision,
    to: Revision,
    prev_kv: bool,
) -> Result<Vec<Event>> {
    let Some((lo, hi)) = bounds(key, range_end) else {
        return Ok(Vec::new());
    };
    let upper = if hi.is_some() { "AND key < ?4" } else { "AND ?4 IS NULL" };
    let sql = format!(
        "SELECT id, key, deleted, create_revision, version, lease, value FROM log \
         WHERE id >= ?1 AND id < ?2 AND key >= ?3 {upper} ORDER BY id"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(ctx("preparing a history read"))?;
    let rows = stmt
        .query_map(params![first_id(from), first_id(to.saturating_add(1)), lo, hi], kv_row)
        .map_err(ctx("reading history"))?;
    let mut out = Vec::new();
    for row in rows {
        let (kv, deleted) = row.map_err(ctx("reading history"))?;
        let prev = if prev_kv { latest(conn, &kv.key, first_id(kv.mod_revision))? } else { None };
        let (kind, kv) = if deleted {
            (EventKind::Delete, crate::mvcc::tombstone(&kv.key, kv.mod_revision))
        } else {
            (EventKind::Put, kv)
        };
        out.push(Event { kind, kv, prev_kv: prev });
    }
    Ok(out)
}

/// Rebuilds the lease table: persisted leases get their full TTL again (as etcd does on a
/// leader change), and every live key is re-attached to its lease.
pub(super) fn load_leases(conn: &Connection, now: Instant) -> Result<LeaseTable> {
    let next_id = read_meta(conn, "next_lease")?.unwrap_or(1);
    let mut table = LeaseTable::with_next_id(next_id);
    let mut stmt =
        conn.prepare_cached("SELECT id, ttl_ms FROM leases").map_err(ctx("reading leases"))?;
    let rows = stmt
        .query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)))
        .map_err(ctx("reading leases"))?;
    for row in rows {
        let (id, ttl_ms) = row.map_err(ctx("reading leases"))?;
        table.insert(id, Duration::from_millis(u64::try_from(ttl_ms).unwrap_or(0)), now);
    }
    let mut stmt = conn
        .prepare_cached(
            "SELECT l.key, l.lease FROM log AS l WHERE l.lease != 0 AND l.deleted = 0 \
             AND l.id = (SELECT MAX(x.id) FROM log AS x WHERE x.key = l.key)",
        )
        .map_err(ctx("reading leased keys"))?;
    let rows = stmt
        .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))
        .map_err(ctx("reading leased keys"))?;
    for row in rows {
        let (key, lease) = row.map_err(ctx("reading leased keys"))?;
        table.attach(&key, 0, lease);
    }
    Ok(table)
}

/// Physically removes history made obsolete by a compaction: rows superseded by a row of a
/// revision in `[from, to]`, and tombstones of revisions in `[from, to)`.
pub(super) fn compact_rows(conn: &Connection, from: Revision, to: Revision) -> Result<usize> {
    let superseded = conn
        .prepare_cached(
            "DELETE FROM log WHERE id IN (SELECT o.id FROM log AS n JOIN log AS o \
             ON o.key = n.key AND o.id < n.id WHERE n.id >= ?1 AND n.id < ?2)",
        )
        .and_then(|mut stmt| stmt.execute(params![first_id(from), first_id(to + 1)]))
        .map_err(ctx("compacting superseded rows"))?;
    let tombstones = conn
        .prepare_cached("DELETE FROM log WHERE id >= ?1 AND id < ?2 AND deleted = 1")
        .and_then(|mut stmt| stmt.execute(params![first_id(from), first_id(to)]))
        .map_err(ctx("compacting tombstones"))?;
    Ok(superseded + tombstones)
}
