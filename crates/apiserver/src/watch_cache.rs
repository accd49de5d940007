//! The watch cache: for each resource, every current object and a ring of recent events,
//! kept in memory by one store watch. Lists and watches are served from here, so the store
//! sees writes and one initial load per resource instead of a range per list and a watch per
//! client.
//!
//! Objects are kept as the bytes clients receive (resourceVersion stamped in), serialized once
//! per write and shared by every list and watcher, beside the few attributes selectors look
//! at (labels and the kind's selectable fields), so that filtering never parses JSON.
//!
//! Consistency follows upstream's cache: a list without a resourceVersion first learns the
//! store's current revision and waits until the cache has caught up with it (asking the store
//! for a progress notification when the resource itself saw no write). A watch from a
//! revision older than the ring and a list at an exact revision are the caller's to serve
//! from the store; the cache says so instead of guessing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use krust_api::catalog::Resource;
use krust_store::{
    EventKind, KeyValue, LeaseId, RangeRequest, Revision, Store, WatchRequest, WatchResponse,
    prefix_end,
};
use serde_json::{Map, Value};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Events kept per resource for watches that resume from a recent revision.
pub const EVENT_CAPACITY: usize = 8192;
/// The initial load reads the store in pages of this many objects.
const LOAD_PAGE: u64 = 1000;
/// Pause before reloading after the store watch failed, so a broken store is not hammered.
const RELOAD_BACKOFF: Duration = Duration::from_millis(200);

/// One object as clients receive it, with what selectors need.
#[derive(Debug)]
pub struct CachedObject {
    pub key: String,
    /// The JSON object, resourceVersion included.
    pub bytes: Bytes,
    pub mod_revision: Revision,
    /// The store lease the object is attached to (0: none).
    pub lease: LeaseId,
    pub attrs: Attrs,
}

impl CachedObject {
    /// The object as a store entry (without the creation revision and version, which the
    /// cache does not keep).
    pub fn key_value(&self) -> KeyValue {
        KeyValue {
            key: self.key.clone(),
            value: self.bytes.clone(),
            create_revision: 0,
            mod_revision: self.mod_revision,
            version: 0,
            lease: self.lease,
        }
    }
}

/// What label and field selectors read from an object.
#[derive(Debug, Default)]
pub struct Attrs {
    pub labels: Map<String, Value>,
    /// The kind's selectable fields and their values (`None` compares as "").
    pub fields: Vec<(&'static str, Option<String>)>,
}

impl Attrs {
    fn of(group: &str, kind: &str, object: &Value) -> Self {
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let fields = krust_api::fields::supported_fields(group, kind)
            .iter()
            .map(|f| (*f, krust_api::fields::field_value(group, kind, object, f).ok().flatten()))
            .collect();
        Attrs { labels, fields }
    }

    /// The value of a selectable field.
    pub fn field(&self, name: &str) -> Option<String> {
        self.fields.iter().find(|(f, _)| *f == name).and_then(|(_, v)| v.clone())
    }
}

/// One change, as the store reported it.
#[derive(Debug)]
pub struct CachedEvent {
    pub revision: Revision,
    pub kind: EventKind,
    /// The new object for a put; for a delete, the last state with the deletion's revision.
    pub object: Arc<CachedObject>,
    /// The object before the change (None when a put created it).
    pub prev: Option<Arc<CachedObject>>,
}

/// Objects in a key range at one revision.
#[derive(Debug)]
pub struct Snapshot {
    pub revision: Revision,
    pub objects: Vec<Arc<CachedObject>>,
}

/// What a watcher gets when it asks for the events after a revision.
#[derive(Debug)]
pub enum Events {
    /// Events in revision order (possibly none yet), and the revision the cache is at.
    Ready { events: Vec<Arc<CachedEvent>>, revision: Revision },
    /// The ring no longer reaches back to the revision: the store has to serve it.
    TooOld,
}

#[derive(Debug, Default)]
struct Inner {
    ready: bool,
    /// Every write up to this revision is applied.
    revision: Revision,
    objects: BTreeMap<String, Arc<CachedObject>>,
    events: VecDeque<Arc<CachedEvent>>,
    /// The ring holds every event after this revision.
    floor: Revision,
}

/// The cache of one resource.
#[derive(Debug)]
pub struct WatchCache {
    prefix: String,
    group: &'static str,
    kind: &'static str,
    capacity: usize,
    inner: RwLock<Inner>,
    /// The revision the cache has reached; bumped after every applied change or progress.
    revision: watch::Sender<Revision>,
    /// Asks the feeding task for a store progress notification.
    progress: Notify,
}

impl WatchCache {
    fn new(resource: &Resource, capacity: usize) -> Self {
        WatchCache {
            prefix: resource.store_prefix(),
            group: resource.group,
            kind: resource.kind,
            capacity,
            inner: RwLock::new(Inner::default()),
            revision: watch::Sender::new(0),
            progress: Notify::new(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every change is built before
        // it is swapped in), so a poisoned lock is still usable.
        self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until the cache is loaded and has applied every write up to `revision`.
    /// False if that did not happen within `timeout` (the caller then reads the store).
    pub async fn wait_for(&self, revision: Revision, timeout: Duration) -> bool {
        let mut rx = self.revision.subscribe();
        let caught_up = |inner: &Inner| inner.ready && inner.revision >= revision;
        let wait = async {
            loop {
                rx.borrow_and_update();
                if caught_up(&self.read()) {
                    return;
                }
                self.progress.notify_one();
                if rx.changed().await.is_err() {
                    // The feeding task is gone (shutdown): never caught up.
                    return std::future::pending().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// The objects with keys in `[start, end)` that `keep` accepts, at most `limit` of them
    /// (one more is returned to tell that more follow).
    pub fn snapshot(
        &self,
        start: &str,
        end: &str,
        limit: Option<usize>,
        keep: impl Fn(&CachedObject) -> bool,
    ) -> Snapshot {
        let inner = self.read();
        let range = inner
            .objects
            .range::<str, _>((Bound::Included(start), Bound::Excluded(end)))
            .map(|(_, o)| o)
            .filter(|o| keep(o));
        let objects = match limit {
            Some(limit) => range.take(limit.saturating_add(1)).cloned().collect(),
            None => range.cloned().collect(),
        };
        Snapshot { revision: inner.revision, objects }
    }

    /// A snapshot of a key range and, atomically with it, a subscription to what follows.
    pub fn snapshot_and_subscribe(
        &self,
        start: &str,
        end: &str,
        keep: impl Fn(&CachedObject) -> bool,
    ) -> (Snapshot, watch::Receiver<Revision>) {
        let rx = self.revision.subscribe();
        (self.snapshot(start, end, None, keep), rx)
    }

    /// The object under `key` as the cache has it (which may lag the store by the time a
    /// change takes to arrive); None when the cache is not loaded or does not hold it.
    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        let inner = self.read();
        if !inner.ready {
            return None;
        }
        inner.objects.get(key).cloned()
    }

    /// A receiver that changes whenever the cache moves on.
    pub fn subscribe(&self) -> watch::Receiver<Revision> {
        self.revision.subscribe()
    }

    /// The events after `after` with keys in `[start, end)`.
    pub fn events_after(&self, after: Revision, start: &str, end: &str) -> Events {
        let inner = self.read();
        if !inner.ready || after < inner.floor {
            return Events::TooOld;
        }
        let first = inner.events.partition_point(|e| e.revision <= after);
        let events = inner
            .events
            .range(first..)
            .filter(|e| e.object.key.as_str() >= start && e.object.key.as_str() < end)
            .cloned()
            .collect();
        Events::Ready { events, revision: inner.revision }
    }

    /// Whether the ring holds every event after `after`.
    pub fn reaches_back_to(&self, after: Revision) -> bool {
        let inner = self.read();
        inner.ready && after >= inner.floor
    }

    /// The revision the cache has applied every write up to.
    pub fn revision(&self) -> Revision {
        self.read().revision
    }

    fn object(
        &self,
        key: String,
        value: &[u8],
        mod_revision: Revision,
        lease: LeaseId,
    ) -> Option<CachedObject> {
        let mut object: Value = match serde_json::from_slice(value) {
            Ok(object) => object,
            Err(e) => {
                warn!(%key, error = %e, "stored object cannot be decoded; left out of the cache");
                return None;
            }
        };
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(mod_revision.to_string()));
        }
        let attrs = Attrs::of(self.group, self.kind, &object);
        let bytes = Bytes::from(serde_json::to_vec(&object).ok()?);
        Some(CachedObject { key, bytes, mod_revision, lease, attrs })
    }

    /// The last state of a deleted object, stamped with the deletion's revision.
    fn tombstone(&self, prev: &Arc<CachedObject>, revision: Revision) -> Arc<CachedObject> {
        // `object` restamps the resourceVersion the cached bytes carry.
        match self.object(prev.key.clone(), &prev.bytes, revision, prev.lease) {
            Some(object) => Arc::new(object),
            None => prev.clone(),
        }
    }

    /// Loads every object at one revision; returns that revision.
    async fn load(&self, store: &dyn Store) -> krust_store::Result<Revision> {
        let end = prefix_end(&self.prefix);
        let mut start = self.prefix.clone();
        let mut revision = 0;
        let mut objects = BTreeMap::new();
        loop {
            let resp = store
                .range(
                    RangeRequest::range(start.clone(), end.clone())
                        .at_revision(revision)
                        .with_limit(LOAD_PAGE),
                )
                .await?;
            revision = resp.header_revision;
            for kv in &resp.kvs {
                if let Some(object) =
                    self.object(kv.key.clone(), &kv.value, kv.mod_revision, kv.lease)
                {
                    objects.insert(kv.key.clone(), Arc::new(object));
                }
            }
            match resp.kvs.last() {
                Some(last) if resp.more => start = format!("{}\0", last.key),
                _ => break,
            }
        }
        let mut inner = self.write();
        *inner = Inner { ready: true, revision, objects, events: VecDeque::new(), floor: revision };
        drop(inner);
        self.revision.send_replace(revision);
        Ok(revision)
    }

    fn apply(&self, response: WatchResponse) {
        let mut changes = Vec::with_capacity(response.events.len());
        {
            // Later events of one response see the earlier ones (one key may change twice).
            let mut overlay: HashMap<&str, Option<Arc<CachedObject>>> = HashMap::new();
            let inner = self.read();
            for event in &response.events {
                let key = event.kv.key.as_str();
                let prev = match overlay.get(key) {
                    Some(prev) => prev.clone(),
                    None => inner.objects.get(key).cloned(),
                };
                let revision = event.kv.mod_revision;
                let change = match event.kind {
                    EventKind::Put => self
                        .object(key.to_owned(), &event.kv.value, revision, event.kv.lease)
                        .map(|object| (revision, EventKind::Put, Arc::new(object), prev)),
                    EventKind::Delete => prev.map(|prev| {
                        (revision, EventKind::Delete, self.tombstone(&prev, revision), Some(prev))
                    }),
                };
                if let Some((_, kind, object, _)) = &change {
                    let now = (*kind == EventKind::Put).then(|| object.clone());
                    overlay.insert(key, now);
                }
                changes.extend(change);
            }
        }
        let mut inner = self.write();
        for (revision, kind, object, prev) in changes {
            match kind {
                EventKind::Put => inner.objects.insert(object.key.clone(), object.clone()),
                EventKind::Delete => inner.objects.remove(&object.key),
            };
            inner.events.push_back(Arc::new(CachedEvent { revision, kind, object, prev }));
        }
        while inner.events.len() > self.capacity {
            if let Some(old) = inner.events.pop_front() {
                inner.floor = inner.floor.max(old.revision);
            }
        }
        let last = response.events.last().map_or(0, |e| e.kv.mod_revision);
        inner.revision = inner.revision.max(response.header_revision).max(last);
        let revision = inner.revision;
        drop(inner);
        self.revision.send_replace(revision);
    }

    /// Loads, then follows the store until shutdown; reloads whenever the watch breaks.
    async fn run(self: Arc<Self>, store: Arc<dyn Store>, shutdown: CancellationToken) {
        loop {
            let revision = tokio::select! {
                () = shutdown.cancelled() => return,
                loaded = self.load(store.as_ref()) => match loaded {
                    Ok(revision) => revision,
                    Err(e) => {
                        warn!(prefix = %self.prefix, error = %e, "watch cache load failed; retrying");
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep(RELOAD_BACKOFF) => continue,
                        }
                    }
                },
            };
            let request = WatchRequest::prefix(self.prefix.clone())
                .from_revision(revision + 1)
                .with_progress_notify();
            match store.watch(request).await {
                Ok(mut stream) => loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = self.progress.notified() => stream.request_progress(),
                        next = stream.next() => match next {
                            Some(Ok(response)) => self.apply(response),
                            Some(Err(e)) => {
                                debug!(prefix = %self.prefix, error = %e, "watch cache reloads");
                                break;
                            }
                            None => break,
                        },
                    }
                },
                Err(e) => debug!(prefix = %self.prefix, error = %e, "watch cache reloads"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RELOAD_BACKOFF) => {}
            }
        }
    }
}

/// The caches of every resource, created on first use.
#[derive(Debug)]
pub struct WatchCaches {
    store: Arc<dyn Store>,
    caches: Mutex<HashMap<String, Arc<WatchCache>>>,
    tasks: Mutex<JoinSet<()>>,
    shutdown: CancellationToken,
    capacity: usize,
}

impl WatchCaches {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with_capacity(store, EVENT_CAPACITY)
    }

    /// Caches whose rings keep `capacity` events.
    pub fn with_capacity(store: Arc<dyn Store>, capacity: usize) -> Self {
        WatchCaches {
            capacity: capacity.max(1),
            store,
            caches: Mutex::new(HashMap::new()),
            tasks: Mutex::new(JoinSet::new()),
            shutdown: CancellationToken::new(),
        }
    }

    /// The cache of `resource`, started (loading in the background) on first use. None after
    /// shutdown.
    pub fn get(&self, resource: &Resource) -> Option<Arc<WatchCache>> {
        if self.shutdown.is_cancelled() {
            return None;
        }
        let prefix = resource.store_prefix();
        let mut caches = self.caches.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(cache) = caches.get(&prefix) {
            return Some(cache.clone());
        }
        let cache = Arc::new(WatchCache::new(resource, self.capacity));
        caches.insert(prefix, cache.clone());
        let mut tasks = self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        tasks.spawn(cache.clone().run(self.store.clone(), self.shutdown.clone()));
        Some(cache)
    }

    /// The cache of `resource` if something already started it.
    pub fn existing(&self, resource: &Resource) -> Option<Arc<WatchCache>> {
        let caches = self.caches.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        caches.get(&resource.store_prefix()).cloned()
    }

    /// Stops every cache's task.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let mut tasks = {
            let mut tasks = self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            std::mem::take(&mut *tasks)
        };
        while tasks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests;
