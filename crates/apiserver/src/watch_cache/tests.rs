//! The cache against an in-memory store: loading, following, consistency waits and the ring.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use krust_api::catalog::Catalog;
use krust_store::{EventKind, MemoryConfig, MemoryStore, Store, StoreExt, prefix_end};
use serde_json::{Value, json};

use super::{Events, WatchCache, WatchCaches};

const WAIT: Duration = Duration::from_secs(5);

fn store() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new(MemoryConfig::default()).expect("memory store"))
}

fn pods(caches: &WatchCaches) -> Arc<WatchCache> {
    let catalog = Catalog::builtin();
    let resource = catalog.lookup("", "v1", "pods").expect("pods");
    caches.get(resource).expect("cache")
}

fn pod(name: &str, node: &str, app: &str) -> Bytes {
    Bytes::from(
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
            "spec": {"nodeName": node},
        })
        .to_string(),
    )
}

fn key(name: &str) -> String {
    format!("/registry/pods/default/{name}")
}

fn decoded(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("cached bytes are JSON")
}

#[tokio::test]
async fn loads_then_follows_the_store() {
    let store = store();
    let first = store.put(&key("a"), pod("a", "n1", "web")).await.expect("put");
    let caches = WatchCaches::new(store.clone());
    let cache = pods(&caches);
    assert!(cache.wait_for(first, WAIT).await, "the cache loads");

    let second = store.put(&key("b"), pod("b", "n2", "db")).await.expect("put");
    let third = store.delete(&key("a")).await.expect("delete");
    assert!(third.is_some());
    let current = store.current_revision().await.expect("revision");
    assert!(cache.wait_for(current, WAIT).await, "the cache follows");

    let prefix = "/registry/pods/";
    let snapshot = cache.snapshot(prefix, &prefix_end(prefix), None, |_| true);
    assert_eq!(snapshot.revision, current);
    let names: Vec<Value> =
        snapshot.objects.iter().map(|o| decoded(&o.bytes)["metadata"]["name"].clone()).collect();
    assert_eq!(names, vec![json!("b")]);
    let b = &snapshot.objects[0];
    assert_eq!(decoded(&b.bytes)["metadata"]["resourceVersion"], json!(second.to_string()));
    assert_eq!(b.attrs.field("spec.nodeName").as_deref(), Some("n2"));
    assert_eq!(b.attrs.labels.get("app"), Some(&json!("db")));

    let Events::Ready { events, revision } = cache.events_after(first, prefix, &prefix_end(prefix))
    else {
        panic!("the ring reaches back to the load");
    };
    assert_eq!(revision, current);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].kind, EventKind::Put);
    assert!(events[0].prev.is_none(), "b was created");
    assert_eq!(events[1].kind, EventKind::Delete);
    let tombstone = decoded(&events[1].object.bytes);
    assert_eq!(tombstone["metadata"]["name"], json!("a"));
    assert_eq!(tombstone["metadata"]["resourceVersion"], json!(current.to_string()));
    assert_eq!(events[1].prev.as_ref().map(|p| p.mod_revision), Some(first));
    caches.shutdown().await;
}

#[tokio::test]
async fn a_consistent_read_waits_for_writes_elsewhere() {
    let store = store();
    let caches = WatchCaches::new(store.clone());
    let cache = pods(&caches);
    assert!(cache.wait_for(0, WAIT).await);
    // Writes to another resource move the store on; the cache learns it by a progress request.
    store.put("/registry/configmaps/default/x", Bytes::from_static(b"{}")).await.expect("put");
    let current = store.current_revision().await.expect("revision");
    assert!(cache.wait_for(current, WAIT).await, "progress brings the cache to {current}");
    assert!(cache.revision() >= current);
    caches.shutdown().await;
}

#[tokio::test]
async fn successive_changes_to_one_key_chain_their_previous_states() {
    let store = store();
    let caches = WatchCaches::new(store.clone());
    let cache = pods(&caches);
    assert!(cache.wait_for(0, WAIT).await);
    let start = cache.revision();
    // Written back to back, so the cache may well receive them in one watch response.
    store.put(&key("c"), pod("c", "n1", "web")).await.expect("put");
    store.put(&key("c"), pod("c", "n2", "web")).await.expect("put");
    store.delete(&key("c")).await.expect("delete");
    let revision = store.put(&key("c"), pod("c", "n3", "web")).await.expect("put");
    assert!(cache.wait_for(revision, WAIT).await);
    let Events::Ready { events, .. } =
        cache.events_after(start, "/registry/pods/", "/registry/pods0")
    else {
        panic!("ring");
    };
    let seen: Vec<(EventKind, Option<String>, Option<String>)> = events
        .iter()
        .map(|e| {
            let prev = e.prev.as_ref().and_then(|p| p.attrs.field("spec.nodeName"));
            (e.kind, e.object.attrs.field("spec.nodeName"), prev)
        })
        .collect();
    let n = |s: &str| Some(s.to_owned());
    assert_eq!(
        seen,
        vec![
            (EventKind::Put, n("n1"), None),
            (EventKind::Put, n("n2"), n("n1")),
            (EventKind::Delete, n("n2"), n("n2")),
            (EventKind::Put, n("n3"), None),
        ]
    );
    let snapshot = cache.snapshot("/registry/pods/", "/registry/pods0", None, |_| true);
    assert_eq!(snapshot.objects.len(), 1);
    assert_eq!(snapshot.objects[0].attrs.field("spec.nodeName").as_deref(), Some("n3"));
    caches.shutdown().await;
}

#[tokio::test]
async fn the_ring_forgets_old_events_and_says_so() {
    let store = store();
    let caches = WatchCaches::with_capacity(store.clone(), 4);
    let cache = pods(&caches);
    assert!(cache.wait_for(0, WAIT).await);
    let start = cache.revision();
    let mut last = start;
    for i in 0..10 {
        last = store.put(&key(&format!("p{i}")), pod("p", "n", "x")).await.expect("put");
    }
    assert!(cache.wait_for(last, WAIT).await);
    assert!(matches!(
        cache.events_after(start, "/registry/pods/", "/registry/pods0"),
        Events::TooOld
    ));
    assert!(!cache.reaches_back_to(start));
    let Events::Ready { events, .. } =
        cache.events_after(last - 4, "/registry/pods/", "/registry/pods0")
    else {
        panic!("the last four are kept");
    };
    assert_eq!(events.len(), 4);
    caches.shutdown().await;
}

#[tokio::test]
async fn snapshots_select_by_key_range_and_limit() {
    let store = store();
    for name in ["a", "b", "c"] {
        store.put(&key(name), pod(name, "n", "x")).await.expect("put");
    }
    store.put("/registry/pods/other/z", pod("z", "n", "x")).await.expect("put");
    let caches = WatchCaches::new(store.clone());
    let cache = pods(&caches);
    let current = store.current_revision().await.expect("revision");
    assert!(cache.wait_for(current, WAIT).await);
    let ns = "/registry/pods/default/";
    assert_eq!(cache.snapshot(ns, &prefix_end(ns), None, |_| true).objects.len(), 3);
    // One more than the limit tells the caller that more follow.
    assert_eq!(cache.snapshot(ns, &prefix_end(ns), Some(1), |_| true).objects.len(), 2);
    let all = "/registry/pods/";
    assert_eq!(cache.snapshot(all, &prefix_end(all), None, |_| true).objects.len(), 4);
    caches.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let store = store();
    let caches = WatchCaches::new(store.clone());
    let cache = pods(&caches);
    assert!(cache.wait_for(0, WAIT).await);
    caches.shutdown().await;
    let catalog = Catalog::builtin();
    assert!(caches.get(catalog.lookup("", "v1", "pods").expect("pods")).is_none());
}
