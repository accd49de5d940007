//! In-memory backend: full semantics (history, compaction, watches, leases), nothing durable.
//! Used by the tests of other crates and as the reference for the shared suite.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::mvcc::{
    Applied, Backing, LeaseTable, RangeCollector, apply_revoke, apply_txn, resolve_read_revision,
    validate_txn,
};
use crate::store::{Store, WatchStream};
use crate::types::{
    Event, KeyValue, LeaseId, RANGE_END_ALL, RangeRequest, RangeResponse, Revision, TxnRequest,
    TxnResponse, WatchRequest, in_range,
};
use crate::watch::{History, HubWatch, WatchHub, lock};

/// Settings of the in-memory backend.
#[derive(Clone, Debug)]
pub struct MemoryConfig {
    /// Interval of progress notifications on idle watches that asked for them.
    pub progress_interval: Duration,
    /// Responses buffered per watcher before it is closed with `WatchLagged`.
    pub watch_buffer: usize,
    /// Revisions of history kept; older ones are compacted automatically.
    pub max_history_revisions: u64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            progress_interval: Duration::from_secs(5),
            watch_buffer: 1024,
            max_history_revisions: 100_000,
        }
    }
}

/// The in-memory store. Lease expiry runs on an owned thread, stopped on shutdown or drop.
pub struct MemoryStore {
    inner: Arc<Inner>,
    reaper: Mutex<Option<JoinHandle<()>>>,
}

struct Inner {
    state: Mutex<State>,
    /// Wakes the lease reaper (new lease, shutdown).
    wake: Condvar,
    hub: Arc<WatchHub>,
    config: MemoryConfig,
}

struct State {
    data: Data,
    leases: LeaseTable,
    closed: bool,
}

#[derive(Default)]
struct Data {
    revision: Revision,
    compact_revision: Revision,
    /// Every key's rows, oldest first; a row's revision is its `kv.mod_revision`.
    keys: BTreeMap<String, Vec<Row>>,
    /// Every event since the compaction point, in revision order (with previous values).
    log: VecDeque<Event>,
}

struct Row {
    kv: KeyValue,
    deleted: bool,
}

impl MemoryStore {
    /// An empty store at revision 1 (the first write gets revision 2, as in etcd).
    pub fn new(config: MemoryConfig) -> Result<Self> {
        let data = Data { revision: 1, compact_revision: 1, ..Default::default() };
        let inner = Arc::new(Inner {
            state: Mutex::new(State { data, leases: LeaseTable::with_next_id(1), closed: false }),
            wake: Condvar::new(),
            hub: WatchHub::new(1, config.watch_buffer),
            config,
        });
        let reaper_inner = inner.clone();
        let reaper = std::thread::Builder::new()
            .name("store-lease-reaper".into())
            .spawn(move || reap_leases(&reaper_inner))
            .map_err(|e| Error::Storage {
                context: "starting the lease reaper".into(),
                source: Arc::new(e),
            })?;
        Ok(MemoryStore { inner, reaper: Mutex::new(Some(reaper)) })
    }

    fn stop(&self) {
        lock(&self.inner.state).closed = true;
        self.inner.wake.notify_all();
        self.inner.hub.close();
        if let Some(handle) = lock(&self.reaper).take()
            && handle.join().is_err()
        {
            tracing::error!("lease reaper panicked");
        }
    }

    fn open_state(&self) -> Result<MutexGuard<'_, State>> {
        let st = lock(&self.inner.state);
        if st.closed { Err(Error::Closed) } else { Ok(st) }
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

impl Drop for MemoryStore {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Inner {
    /// Makes an applied transaction visible: revision, event log, watchers, auto-compaction.
    fn commit(&self, st: &mut State, applied: &Applied) {
        let revision = applied.response.header_revision;
        if revision <= st.data.revision {
            return;
        }
        st.data.revision = revision;
        st.data.log.extend(applied.events.iter().cloned());
        self.hub.publish(revision, &applied.events);
        let keep = self.config.max_history_revisions.max(1) as i64;
        if revision - st.data.compact_revision > keep + keep / 10 {
            st.data.compact(revision - keep);
        }
    }
}

fn reap_leases(inner: &Inner) {
    let mut st = lock(&inner.state);
    loop {
        if st.closed {
            return;
        }
        let now = Instant::now();
        for id in st.leases.expired(now) {
            let state = &mut *st;
            let current = state.data.revision;
            match apply_revoke(&mut state.data, &mut state.leases, id, current) {
                Ok(applied) => inner.commit(state, &applied),
                Err(e) => tracing::warn!(lease = id, error = %e, "revoking expired lease"),
            }
        }
        let wait = st
            .leases
            .next_deadline()
            .map_or(Duration::from_secs(3600), |d| d.saturating_duration_since(now))
            .max(Duration::from_millis(1));
        st = inner.wake.wait_timeout(st, wait).unwrap_or_else(PoisonError::into_inner).0;
    }
}

/// The keys of `map` in the range, with etcd's `range_end` conventions.
fn key_range<'a, V>(
    map: &'a BTreeMap<String, V>,
    key: &'a str,
    range_end: &'a str,
) -> Box<dyn Iterator<Item = (&'a String, &'a V)> + 'a> {
    let end = if range_end.is_empty() {
        Bound::Included(key)
    } else if range_end == RANGE_END_ALL {
        Bound::Unbounded
    } else if range_end <= key {
        return Box::new(std::iter::empty());
    } else {
        Bound::Excluded(range_end)
    };
    Box::new(map.range::<str, _>((Bound::Included(key), end)))
}

impl Data {
    fn compact(&mut self, revision: Revision) {
        self.keys.retain(|_, rows| {
            let idx = rows.partition_point(|r| r.kv.mod_revision <= revision);
            if idx > 1 {
                rows.drain(..idx - 1);
            }
            if rows.first().is_some_and(|r| r.deleted && r.kv.mod_revision < revision) {
                rows.remove(0);
            }
            !rows.is_empty()
        });
        while self.log.front().is_some_and(|e| e.kv.mod_revision < revision) {
            self.log.pop_front();
        }
        self.compact_revision = revision;
    }
}

impl Backing for Data {
    fn latest(&mut self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self
            .keys
            .get(key)
            .and_then(|rows| rows.last())
            .filter(|row| !row.deleted)
            .map(|row| row.kv.clone()))
    }

    fn live_range(&mut self, key: &str, range_end: &str) -> Result<Vec<KeyValue>> {
        Ok(key_range(&self.keys, key, range_end)
            .filter_map(|(_, rows)| rows.last().filter(|r| !r.deleted).map(|r| r.kv.clone()))
            .collect())
    }

    fn range_at(&mut self, req: &RangeRequest, revision: Revision) -> Result<RangeResponse> {
        let mut out = RangeCollector::new(req, self.revision);
        for (_, rows) in key_range(&self.keys, &req.key, &req.range_end) {
            let idx = rows.partition_point(|r| r.kv.mod_revision <= revision);
            if let Some(row) = idx.checked_sub(1).map(|i| &rows[i])
                && !row.deleted
            {
                out.push(row.kv.clone());
            }
        }
        Ok(out.finish())
    }

    fn write(&mut self, _revision: Revision, kv: &KeyValue, deleted: bool) -> Result<()> {
        self.keys.entry(kv.key.clone()).or_default().push(Row { kv: kv.clone(), deleted });
        Ok(())
    }

    fn compact_revision(&self) -> Revision {
        self.compact_revision
    }
}

#[async_trait]
impl History for Inner {
    async fn events(
        &self,
        key: &str,
        range_end: &str,
        from: Revision,
        to: Revision,
        prev_kv: bool,
    ) -> Result<Vec<Event>> {
        let st = lock(&self.state);
        let data = &st.data;
        if from < data.compact_revision {
            return Err(Error::Compacted { requested: from, compacted: data.compact_revision });
        }
        let start = data.log.partition_point(|e| e.kv.mod_revision < from);
        Ok(data
            .log
            .range(start..)
            .take_while(|e| e.kv.mod_revision <= to)
            .filter(|e| in_range(&e.kv.key, key, range_end))
            .map(|e| Event {
                kind: e.kind,
                kv: e.kv.clone(),
                prev_kv: if prev_kv { e.prev_kv.clone() } else { None },
            })
            .collect())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        let mut st = self.open_state()?;
        let data = &mut st.data;
        let at = resolve_read_revision(req.revision, data.revision, data.compact_revision)?;
        data.range_at(&req, at)
    }

    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse> {
        validate_txn(&req)?;
        let mut guard = self.open_state()?;
        let st = &mut *guard;
        let current = st.data.revision;
        let applied = apply_txn(&mut st.data, &mut st.leases, Instant::now(), &req, current)?;
        self.inner.commit(st, &applied);
        Ok(applied.response)
    }

    async fn watch(&self, req: WatchRequest) -> Result<WatchStream> {
        {
            let st = self.open_state()?;
            let compacted = st.data.compact_revision;
            if req.start_revision > 0 && req.start_revision < compacted {
                return Err(Error::Compacted { requested: req.start_revision, compacted });
            }
        }
        let history: Arc<dyn History> = self.inner.clone();
        let watch = HubWatch::new(
            self.inner.hub.clone(),
            history,
            req,
            self.inner.config.progress_interval,
        );
        Ok(WatchStream::new(Box::new(watch)))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut st = self.open_state()?;
        let data = &mut st.data;
        if revision <= data.compact_revision {
            return Err(Error::Compacted { requested: revision, compacted: data.compact_revision });
        }
        if revision > data.revision {
            return Err(Error::FutureRevision { requested: revision, current: data.revision });
        }
        data.compact(revision);
        Ok(())
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId> {
        let id = self.open_state()?.leases.grant(ttl, Instant::now());
        self.inner.wake.notify_all();
        Ok(id)
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<()> {
        let mut guard = self.open_state()?;
        let st = &mut *guard;
        let current = st.data.revision;
        let applied = apply_revoke(&mut st.data, &mut st.leases, id, current)?;
        self.inner.commit(st, &applied);
        Ok(())
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration> {
        self.open_state()?.leases.keep_alive(id, Instant::now())
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.open_state()?.data.revision)
    }

    async fn shutdown(&self) -> Result<()> {
        self.stop();
        Ok(())
    }
}
