//! Shared informers (client-go's `SharedInformerFactory`): one list+watch per resource per
//! process, a local cache with indexes, and handlers told of every add, update and delete.
//!
//! Handlers run on the informer's own task, in the order the API server sent the changes, after
//! the cache already shows the change; they must be quick (typically: put keys on a work
//! queue). After a re-list (a watch that expired), the informer compares the fresh list with its
//! cache and reports the differences, deletions included, as if it had watched them.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use futures::StreamExt as _;
use futures::future::BoxFuture;
use kube::api::{Api, ApiResource, DynamicObject, PartialObjectMeta};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt as _};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{Error, Result};

/// An object's `namespace/name` (or `name` for cluster-scoped objects): the key work queues
/// and caches use.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: Option<&str>, name: &str) -> Self {
        Self { namespace: namespace.map(str::to_owned), name: name.to_owned() }
    }

    pub fn namespaced(namespace: &str, name: &str) -> Self {
        Self::new(Some(namespace), name)
    }

    pub fn cluster(name: &str) -> Self {
        Self::new(None, name)
    }

    pub fn of<K: Resource>(object: &K) -> Self {
        Self { namespace: object.namespace(), name: object.name_any() }
    }

    /// The namespace, or "" for cluster-scoped objects.
    pub fn ns(&self) -> &str {
        self.namespace.as_deref().unwrap_or_default()
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// What happened to an object, as a handler sees it.
#[derive(Debug)]
pub enum Change<'a, K> {
    Added(&'a Arc<K>),
    Updated { old: &'a Arc<K>, new: &'a Arc<K> },
    Deleted(&'a Arc<K>),
}

impl<'a, K> Change<'a, K> {
    /// The object as it is now (or was when it was deleted).
    pub fn object(&self) -> &'a Arc<K> {
        match self {
            Change::Added(o) | Change::Deleted(o) => o,
            Change::Updated { new, .. } => new,
        }
    }
}

type Handler<K> = Arc<dyn Fn(&Change<'_, K>) + Send + Sync>;
/// Values an object is filed under in an index.
pub type IndexFn<K> = fn(&K) -> Vec<String>;

/// Objects by index value (the objects themselves, so a lookup is one map read).
struct Index<K> {
    values_of: IndexFn<K>,
    keys: HashMap<String, HashMap<ObjectKey, Arc<K>>>,
}

struct Cache<K> {
    objects: HashMap<ObjectKey, Arc<K>>,
    indexes: HashMap<&'static str, Index<K>>,
}

/// The index every informer keeps: objects by namespace.
const NAMESPACE_INDEX: &str = "namespace";

impl<K: Resource> Cache<K> {
    fn new() -> Self {
        let mut indexes = HashMap::new();
        indexes.insert(
            NAMESPACE_INDEX,
            Index {
                values_of: (|o: &K| o.meta().namespace.iter().cloned().collect()) as IndexFn<K>,
                keys: HashMap::new(),
            },
        );
        Self { objects: HashMap::new(), indexes }
    }

    fn insert(&mut self, key: ObjectKey, object: Arc<K>) -> Option<Arc<K>> {
        let old = self.objects.insert(key.clone(), object.clone());
        for index in self.indexes.values_mut() {
            if let Some(old) = &old {
                for value in (index.values_of)(old) {
                    unindex(&mut index.keys, value, &key);
                }
            }
            for value in (index.values_of)(&object) {
                index.keys.entry(value).or_default().insert(key.clone(), object.clone());
            }
        }
        old
    }

    fn remove(&mut self, key: &ObjectKey) -> Option<Arc<K>> {
        let old = self.objects.remove(key)?;
        for index in self.indexes.values_mut() {
            for value in (index.values_of)(&old) {
                unindex(&mut index.keys, value, key);
            }
        }
        Some(old)
    }
}

fn unindex<K>(
    keys: &mut HashMap<String, HashMap<ObjectKey, Arc<K>>>,
    value: String,
    key: &ObjectKey,
) {
    if let Some(set) = keys.get_mut(&value) {
        set.remove(key);
        if set.is_empty() {
            keys.remove(&value);
        }
    }
}

/// One resource's list+watch, cache and handlers.
pub struct Informer<K: Resource> {
    api: Api<K>,
    config: watcher::Config,
    resource: String,
    cache: RwLock<Cache<K>>,
    handlers: Mutex<Vec<Handler<K>>>,
    synced: watch::Sender<bool>,
}

impl<K: Resource> fmt::Debug for Informer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Informer").field("resource", &self.resource).finish_non_exhaustive()
    }
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    /// An informer over `api` (cluster-wide or one namespace), not yet running.
    pub fn new(api: Api<K>, config: watcher::Config) -> Self {
        let resource = K::plural(&K::DynamicType::default()).into_owned();
        Self::named(api, config, resource)
    }
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + fmt::Debug + Send + Sync + 'static,
{
    /// An informer for a resource known only at run time (`resource` names it in logs).
    pub fn named(api: Api<K>, config: watcher::Config, resource: String) -> Self {
        Self {
            api,
            config,
            resource,
            cache: RwLock::new(Cache::new()),
            handlers: Mutex::new(Vec::new()),
            synced: watch::Sender::new(false),
        }
    }

    /// Files objects under the values `values_of` returns, for [`Self::indexed`]. Add indexes
    /// before the informer starts.
    pub fn add_index(&self, name: &'static str, values_of: IndexFn<K>) {
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        let mut index = Index { values_of, keys: HashMap::new() };
        for (key, object) in &cache.objects {
            for value in values_of(object) {
                index.keys.entry(value).or_default().insert(key.clone(), object.clone());
            }
        }
        cache.indexes.insert(name, index);
    }

    /// Calls `handler` for every change from now on; objects already cached are reported as
    /// added first (as client-go does for late handlers).
    pub fn add_handler(&self, handler: impl Fn(&Change<'_, K>) + Send + Sync + 'static) {
        let handler: Handler<K> = Arc::new(handler);
        let mut handlers = self.handlers.lock().unwrap_or_else(PoisonError::into_inner);
        for object in self.list() {
            handler(&Change::Added(&object));
        }
        handlers.push(handler);
    }

    pub fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.read().objects.get(key).cloned()
    }

    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().objects.values().cloned().collect()
    }

    /// The cached objects in `namespace`.
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        self.indexed(NAMESPACE_INDEX, namespace)
    }

    /// The cached objects filed under `value` in the index `name`.
    pub fn indexed(&self, name: &str, value: &str) -> Vec<Arc<K>> {
        let cache = self.read();
        let Some(objects) = cache.indexes.get(name).and_then(|i| i.keys.get(value)) else {
            return Vec::new();
        };
        objects.values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn has_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits until the first list is in the cache.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we wait.
        let _ = rx.wait_for(|synced| *synced).await;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache<K>> {
        self.cache.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self, change: &Change<'_, K>) {
        let handlers = self.handlers.lock().unwrap_or_else(PoisonError::into_inner).clone();
        for handler in handlers {
            handler(change);
        }
    }

    fn apply(&self, object: K) {
        let key = ObjectKey::of(&object);
        let new = Arc::new(object);
        let old = {
            let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
            if let Some(old) = cache.objects.get(&key)
                && old.meta().resource_version.is_some()
                && old.meta().resource_version == new.meta().resource_version
            {
                return;
            }
            cache.insert(key, new.clone())
        };
        match old {
            Some(old) => self.notify(&Change::Updated { old: &old, new: &new }),
            None => self.notify(&Change::Added(&new)),
        }
    }

    fn delete(&self, object: K) {
        let key = ObjectKey::of(&object);
        let removed = self.cache.write().unwrap_or_else(PoisonError::into_inner).remove(&key);
        // The final state as the API server sent it.
        let _ = removed;
        self.notify(&Change::Deleted(&Arc::new(object)));
    }

    /// Replaces the cache with a fresh list, reporting the differences.
    fn replace(&self, listed: HashMap<ObjectKey, K>) {
        let gone: Vec<Arc<K>> = {
            let cache = self.read();
            cache
                .objects
                .iter()
                .filter(|(k, _)| !listed.contains_key(k))
                .map(|(_, o)| o.clone())
                .collect()
        };
        for object in gone {
            let key = ObjectKey::of(object.as_ref());
            self.cache.write().unwrap_or_else(PoisonError::into_inner).remove(&key);
            self.notify(&Change::Deleted(&object));
        }
        for object in listed.into_values() {
            self.apply(object);
        }
    }

    /// Lists and watches until `shutdown`, keeping the cache current. Watch failures are
    /// retried with backoff (and a re-list when the watch expired).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<()> {
        let stream = watcher::watcher(self.api.clone(), self.config.clone()).default_backoff();
        let mut stream = std::pin::pin!(stream);
        let mut listing: Option<HashMap<ObjectKey, K>> = None;
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                event = stream.next() => event,
            };
            match event {
                None => return Err(Error::WatchEnded { resource: self.resource.clone() }),
                Some(Err(e)) => {
                    tracing::debug!(resource = %self.resource, error = %e, "watch failed; retrying");
                }
                Some(Ok(Event::Init)) => listing = Some(HashMap::new()),
                Some(Ok(Event::InitApply(object))) => {
                    if let Some(listing) = listing.as_mut() {
                        listing.insert(ObjectKey::of(&object), object);
                    }
                }
                Some(Ok(Event::InitDone)) => {
                    self.replace(listing.take().unwrap_or_default());
                    self.synced.send_replace(true);
                }
                Some(Ok(Event::Apply(object))) => self.apply(object),
                Some(Ok(Event::Delete(object))) => self.delete(object),
            }
        }
    }
}

/// Object metadata only, of a resource known at run time (upstream's metadata informers).
pub type Metadata = PartialObjectMeta<DynamicObject>;

impl Informer<Metadata> {
    /// An informer of the metadata of `resource`'s objects, everywhere (the API server sends
    /// `PartialObjectMetadata` only).
    pub fn metadata(client: kube::Client, resource: &ApiResource) -> Self {
        let name = match resource.group.as_str() {
            "" => resource.plural.clone(),
            group => format!("{}.{group}", resource.plural),
        };
        Self::named(Api::all_with(client, resource), watcher::Config::default(), name)
    }
}

type Runner = Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, Result<()>> + Send>;

/// One informer per resource for a whole process (client-go's `SharedInformerFactory`).
#[derive(Clone)]
pub struct Informers {
    client: kube::Client,
    state: Arc<Mutex<FactoryState>>,
}

#[derive(Default)]
struct FactoryState {
    by_type: HashMap<(TypeId, String), Arc<dyn Any + Send + Sync>>,
    pending: Vec<Runner>,
    /// Set once started: informers asked for later start at once with this token.
    running: Option<CancellationToken>,
}

impl fmt::Debug for Informers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Informers").finish_non_exhaustive()
    }
}

impl Informers {
    pub fn new(client: kube::Client) -> Self {
        Self { client, state: Arc::default() }
    }

    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The cluster-wide informer for `K`, created on first use.
    pub fn get<K>(&self) -> Arc<Informer<K>>
    where
        K: Resource<DynamicType = ()>
            + Clone
            + DeserializeOwned
            + fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        self.get_or_insert(String::new(), || {
            Informer::new(Api::all(self.client.clone()), watcher::Config::default())
        })
    }

    /// The informer filed under `name` for `K` (for resources known at run time, e.g. one per
    /// group/version/resource of `DynamicObject`s), created by `make` on first use.
    pub fn get_or_insert<K>(
        &self,
        name: String,
        make: impl FnOnce() -> Informer<K>,
    ) -> Arc<Informer<K>>
    where
        K: Resource + Clone + DeserializeOwned + fmt::Debug + Send + Sync + 'static,
    {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let id = (TypeId::of::<K>(), name);
        if let Some(existing) = state.by_type.get(&id)
            && let Ok(informer) = existing.clone().downcast::<Informer<K>>()
        {
            return informer;
        }
        let informer = Arc::new(make());
        state.by_type.insert(id, informer.clone());
        let runner = {
            let informer = informer.clone();
            Box::new(move |token: CancellationToken| -> BoxFuture<'static, Result<()>> {
                Box::pin(informer.run(token))
            }) as Runner
        };
        match &state.running {
            Some(token) => {
                let future = runner(token.clone());
                tokio::spawn(async move {
                    if let Err(e) = future.await {
                        tracing::warn!(error = %e, "informer stopped");
                    }
                });
            }
            None => state.pending.push(runner),
        }
        informer
    }

    /// Starts every informer asked for so far (and any asked for later) until `shutdown`.
    pub fn start(
        &self,
        tasks: &mut tokio::task::JoinSet<Result<()>>,
        shutdown: &CancellationToken,
    ) {
        let pending = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.running = Some(shutdown.clone());
            std::mem::take(&mut state.pending)
        };
        for runner in pending {
            tasks.spawn(runner(shutdown.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(ns: &str, name: &str, rv: &str, node: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                node_name: Some(node.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn informer() -> Informer<Pod> {
        // Never run: the client only has to exist.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap_or_default());
        let client = kube::Client::try_from(config).ok();
        let api = Api::all(client.expect("a client for an unused address"));
        Informer::new(api, watcher::Config::default())
    }

    fn node_of(p: &Pod) -> Vec<String> {
        p.spec.as_ref().and_then(|s| s.node_name.clone()).into_iter().collect()
    }

    #[tokio::test]
    async fn indexes_follow_updates_and_relists_report_deletions() {
        let inf = informer();
        inf.add_index("node", node_of);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        inf.add_handler(move |c| {
            let what = match c {
                Change::Added(o) => format!("add {}", o.name_any()),
                Change::Updated { old, new } => format!(
                    "update {} {}->{}",
                    new.name_any(),
                    old.resource_version().unwrap_or_default(),
                    new.resource_version().unwrap_or_default()
                ),
                Change::Deleted(o) => format!("delete {}", o.name_any()),
            };
            log.lock().unwrap_or_else(PoisonError::into_inner).push(what);
        });
        inf.apply(pod("a", "p1", "1", "n1"));
        inf.apply(pod("a", "p2", "2", "n1"));
        inf.apply(pod("b", "p3", "3", "n2"));
        // Same resourceVersion: no change to report.
        inf.apply(pod("a", "p1", "1", "n1"));
        inf.apply(pod("a", "p1", "4", "n2"));
        assert_eq!(inf.indexed("node", "n1").len(), 1);
        assert_eq!(inf.indexed("node", "n2").len(), 2);
        assert_eq!(inf.list_namespace("a").len(), 2);

        let mut relist = HashMap::new();
        for p in [pod("a", "p1", "4", "n2"), pod("b", "p4", "5", "n3")] {
            relist.insert(ObjectKey::of(&p), p);
        }
        inf.replace(relist);
        let mut names: Vec<String> = inf.list().iter().map(|p| p.name_any()).collect();
        names.sort();
        assert_eq!(names, ["p1", "p4"]);
        assert!(inf.indexed("node", "n1").is_empty());
        let log = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
        assert_eq!(&log[..4], ["add p1", "add p2", "add p3", "update p1 1->4"]);
        let mut tail = log[4..].to_vec();
        tail.sort();
        assert_eq!(tail, ["add p4", "delete p2", "delete p3"]);
    }

    #[test]
    fn keys_print_as_upstream() {
        assert_eq!(ObjectKey::namespaced("ns", "x").to_string(), "ns/x");
        assert_eq!(ObjectKey::cluster("n1").to_string(), "n1");
    }
}
