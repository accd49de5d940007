//! The shared `Store` test suite. Every backend instantiates it with one line:
//!
//! ```ignore
//! mod suite;
//! store_suite!(|| async { suite::Fixture::new(Arc::new(MyStore::new()?)) });
//! ```
//!
//! The factory returns a fresh, empty store that nothing else writes to — tests check exact
//! revisions (for etcd: a fresh etcd per test, or an emptied cluster with `--test-threads=1`) —
//! with a progress interval of a few hundred milliseconds if the backend allows configuring it.
//! Tests never sleep to wait for something: they poll with a deadline.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use krust_store::{
    Compare, CompareOp, DeleteRequest, Error, EventKind, KeyValue, MAX_VALUE_SIZE, RangeRequest,
    Store, StoreExt, TxnOp, TxnOpResponse, TxnRequest, WatchRequest, WatchResponse, WatchStream,
    WriteOutcome,
};

/// Generous deadline for anything that must eventually happen.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A store under test plus whatever must live as long as it (a temp dir...).
pub struct Fixture {
    pub store: Arc<dyn Store>,
    pub guard: Option<Box<dyn std::any::Any + Send>>,
}

impl Fixture {
    pub fn new(store: Arc<dyn Store>) -> anyhow::Result<Self> {
        Ok(Fixture { store, guard: None })
    }

    pub fn with_guard(
        store: Arc<dyn Store>,
        guard: impl std::any::Any + Send,
    ) -> anyhow::Result<Self> {
        Ok(Fixture { store, guard: Some(Box::new(guard)) })
    }
}

/// Instantiates every suite test for a backend. `$factory` is a closure returning a future of
/// `anyhow::Result<Fixture>`; attributes after it and a `;` go on every test:
/// `store_suite!(factory; #[ignore = "needs etcd"])`.
#[macro_export]
macro_rules! store_suite {
    (@tests $attrs:tt $factory:expr; $($name:ident),* $(,)?) => {
        $( $crate::store_suite!(@test $attrs $factory; $name); )*
    };
    (@test [$(#[$attr:meta])*] $factory:expr; $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$attr])*
        async fn $name() -> anyhow::Result<()> {
            let fixture: suite::Fixture = ($factory)().await?;
            let store = fixture.store.clone();
            suite::$name(store.clone()).await?;
            store.shutdown().await?;
            drop(fixture);
            Ok(())
        }
    };
    ($factory:expr) => {
        $crate::store_suite!($factory;);
    };
    ($factory:expr; $(#[$attr:meta])*) => {
        $crate::store_suite!(@tests [$(#[$attr])*] $factory;
            revisions_and_versions,
            txn_compare_and_swap,
            txn_semantics,
            prefix_isolation,
            range_at_old_revisions,
            limit_count_and_continuation,
            watch_from_old_revision,
            watch_from_now,
            watch_replays_long_history,
            watch_at_compacted_revision_fails,
            watch_handoff_under_concurrent_writes,
            progress_notifications,
            lease_expiry_deletes_keys,
            lease_revoke_and_unknown_leases,
            value_size_limit,
            concurrent_cas_counter,
            large_values,
            unicode_keys
        );
    };
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Polls `f` until it returns `Some`, failing after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The next watch response, failing after [`DEADLINE`].
pub async fn next(watch: &mut WatchStream) -> anyhow::Result<WatchResponse> {
    match tokio::time::timeout(DEADLINE, watch.next()).await {
        Err(_) => anyhow::bail!("no watch response within {DEADLINE:?}"),
        Ok(None) => anyhow::bail!("watch ended"),
        Ok(Some(r)) => Ok(r?),
    }
}

/// Collects events (skipping progress notifications) until one has revision >= `until`.
pub async fn events_until(
    watch: &mut WatchStream,
    until: i64,
) -> anyhow::Result<Vec<krust_store::Event>> {
    let mut out = Vec::new();
    while out.last().is_none_or(|e: &krust_store::Event| e.kv.mod_revision < until) {
        out.extend(next(watch).await?.events);
    }
    Ok(out)
}

pub async fn revisions_and_versions(s: Arc<dyn Store>) -> anyhow::Result<()> {
    let start = s.current_revision().await?;
    anyhow::ensure!(start >= 1, "an empty store is at revision >= 1");
    let r1 = s.put("/a", b("1")).await?;
    assert_eq!(r1, start + 1);
    let kv = s.get("/a").await?.unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (r1, r1, 1));
    assert_eq!(kv.value, b("1"));
    let r2 = s.put("/a", b("2")).await?;
    assert_eq!(r2, r1 + 1);
    let kv = s.get("/a").await?.unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (r1, r2, 2));
    let prev = s.delete("/a").await?.unwrap();
    assert_eq!(prev.value, b("2"));
    assert_eq!(s.get("/a").await?, None);
    let r4 = s.put("/a", b("3")).await?;
    assert_eq!(r4, r2 + 2);
    let kv = s.get("/a").await?.unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (r4, r4, 1));
    assert_eq!(s.current_revision().await?, r4);
    // Deleting nothing does not bump the revision.
    assert_eq!(s.delete("/missing").await?, None);
    assert_eq!(s.current_revision().await?, r4);
    let resp = s.range(RangeRequest::key("/a")).await?;
    assert_eq!(resp.header_revision, r4);
    Ok(())
}

pub async fn txn_compare_and_swap(s: Arc<dyn Store>) -> anyhow::Result<()> {
    let WriteOutcome::Applied { revision: r1 } = s.create("/cas", b("v1"), 0).await? else {
        anyhow::bail!("create of an absent key must apply")
    };
    match s.create("/cas", b("again"), 0).await? {
        WriteOutcome::Conflict { current: Some(kv) } => assert_eq!(kv.value, b("v1")),
        other => anyhow::bail!("create of an existing key: {other:?}"),
    }
    match s.update_if("/cas", b("v2"), r1 - 1, 0).await? {
        WriteOutcome::Conflict { current: Some(kv) } => assert_eq!(kv.mod_revision, r1),
        other => anyhow::bail!("stale update: {other:?}"),
    }
    let r2 = s.update_if("/cas", b("v2"), r1, 0).await?.revision().unwrap();
    assert_eq!(s.get("/cas").await?.unwrap().value, b("v2"));
    assert!(matches!(s.delete_if("/cas", r1).await?, WriteOutcome::Conflict { .. }));
    assert!(matches!(s.delete_if("/cas", r2).await?, WriteOutcome::Applied { .. }));
    assert_eq!(s.get("/cas").await?, None);
    match s.update_if("/cas", b("v3"), r2, 0).await? {
        WriteOutcome::Conflict { current: None } => {}
        other => anyhow::bail!("update of a deleted key: {other:?}"),
    }
    Ok(())
}

pub async fn txn_semantics(s: Arc<dyn Store>) -> anyhow::Result<()> {
    s.put("/t/a", b("x")).await?;
    let before = s.current_revision().await?;
    // Several writes in one txn share one revision.
    let resp = s
        .txn(TxnRequest::new().when([Compare::value("/t/a", CompareOp::Equal, "x")]).and_then([
            TxnOp::put("/t/b", "1"),
            TxnOp::put("/t/c", "2"),
            TxnOp::Range(RangeRequest::prefix("/t/")),
        ]))
        .await?;
    assert!(resp.succeeded);
    assert_eq!(resp.header_revision, before + 1);
    let TxnOpResponse::Range(range) = &resp.responses[2] else { anyhow::bail!("range response") };
    assert_eq!(range.count, 3, "a range in a txn sees the txn's own writes");
    let b_kv = s.get("/t/b").await?.unwrap();
    let c_kv = s.get("/t/c").await?.unwrap();
    assert_eq!(b_kv.mod_revision, c_kv.mod_revision);
    // Failure branch; compares on version, create revision, value, lease.
    let resp = s
        .txn(
            TxnRequest::new()
                .when([
                    Compare::version("/t/b", CompareOp::Greater, 0),
                    Compare::value("/t/a", CompareOp::NotEqual, "x"),
                ])
                .and_then([TxnOp::put("/t/never", "1")])
                .or_else([TxnOp::get("/t/a")]),
        )
        .await?;
    assert!(!resp.succeeded);
    assert_eq!(resp.header_revision, before + 1, "a read-only txn does not bump the revision");
    let TxnOpResponse::Range(range) = &resp.responses[0] else { anyhow::bail!("range response") };
    assert_eq!(range.kvs[0].value, b("x"));
    for (cmp, expected) in [
        (Compare::version("/t/b", CompareOp::Less, 2), true),
        (Compare::create_revision("/t/b", CompareOp::Equal, before + 1), true),
        (Compare::mod_revision("/t/b", CompareOp::NotEqual, before + 1), false),
        (Compare::value("/t/missing", CompareOp::NotEqual, "x"), false),
        (Compare::lease("/t/b", CompareOp::Equal, 0), true),
        (Compare::absent("/t/missing"), true),
        (Compare::exists("/t/missing"), false),
    ] {
        let resp = s.txn(TxnRequest::new().when([cmp.clone()])).await?;
        assert_eq!(resp.succeeded, expected, "{cmp:?}");
    }
    // Writing a key twice in one txn is refused, and nothing is applied.
    let err = s
        .txn(TxnRequest::new().and_then([TxnOp::put("/t/d", "1"), TxnOp::put("/t/d", "2")]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    assert_eq!(s.get("/t/d").await?, None);
    // Delete range with previous values.
    let resp = s
        .txn(TxnRequest::new().and_then([TxnOp::Delete(DeleteRequest {
            key: "/t/".into(),
            range_end: krust_store::prefix_end("/t/"),
            prev_kv: true,
        })]))
        .await?;
    let TxnOpResponse::Delete(del) = &resp.responses[0] else { anyhow::bail!("delete response") };
    assert_eq!(del.deleted, 3);
    let keys: Vec<_> = del.prev_kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/t/a", "/t/b", "/t/c"]);
    assert_eq!(s.list("/t/").await?.count, 0);
    // An empty key is refused.
    assert!(matches!(s.put("", b("x")).await, Err(Error::InvalidArgument { .. })));
    Ok(())
}

pub async fn prefix_isolation(s: Arc<dyn Store>) -> anyhow::Result<()> {
    let mut watch = s.watch(WatchRequest::prefix("/registry/pods/")).await?;
    for key in [
        "/registry/pods/default/a",
        "/registry/pods/kube-system/b",
        "/registry/podsecuritypolicies/x",
        "/registry/pods",
        "/registry/podtemplates/default/t",
        "/registry/pods0",
    ] {
        s.put(key, b(key)).await?;
    }
    let last = s.put("/registry/pods/z", b("z")).await?;
    let list = s.list("/registry/pods/").await?;
    let keys: Vec<_> = list.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        ["/registry/pods/default/a", "/registry/pods/kube-system/b", "/registry/pods/z"]
    );
    let seen: Vec<String> =
        events_until(&mut watch, last).await?.into_iter().map(|e| e.kv.key).collect();
    assert_eq!(
        seen,
        ["/registry/pods/default/a", "/registry/pods/kube-system/b", "/registry/pods/z"]
    );
    let deleted =
        s.delete_range("/registry/pods/", &krust_store::prefix_end("/registry/pods/")).await?;
    assert_eq!(deleted, 3);
    assert!(s.get("/registry/podsecuritypolicies/x").await?.is_some());
    assert!(s.get("/registry/pods").await?.is_some());
    assert!(s.get("/registry/pods0").await?.is_some());
    Ok(())
}

pub async fn range_at_old_revisions(s: Arc<dyn Store>) -> anyhow::Result<()> {
    let r1 = s.put("/old/k", b("v1")).await?;
    let r2 = s.put("/old/k", b("v2")).await?;
    s.delete("/old/k").await?;
    let r3 = s.current_revision().await?;
    let r4 = s.put("/old/other", b("o")).await?;
    let at = |rev| s.range(RangeRequest::key("/old/k").at_revision(rev));
    assert_eq!(at(r1).await?.kvs[0].value, b("v1"));
    let resp = at(r2).await?;
    assert_eq!(resp.kvs[0].value, b("v2"));
    assert_eq!(resp.header_revision, r4, "the header carries the current revision");
    assert!(at(r3).await?.kvs.is_empty());
    assert_eq!(s.range(RangeRequest::prefix("/old/").at_revision(r2)).await?.count, 1);
    assert_eq!(
        s.range(RangeRequest::prefix("/old/").at_revision(r4)).await?.kvs[0].key,
        "/old/other"
    );
    match at(r4 + 10).await {
        Err(Error::FutureRevision { requested, .. }) => assert_eq!(requested, r4 + 10),
        other => anyhow::bail!("future revision: {other:?}"),
    }
    s.compact(r2).await?;
    match at(r1).await {
        Err(Error::Compacted { requested, compacted }) => {
            assert_eq!(requested, r1);
            // 0: the backend cannot tell (etcd's range error does not carry it).
            assert!(compacted == r2 || compacted == 0, "compacted {compacted}");
        }
        other => anyhow::bail!("compacted revision: {other:?}"),
    }
    assert_eq!(at(r2).await?.kvs[0].value, b("v2"), "the compaction revision itself is kept");
    assert!(at(r3).await?.kvs.is_empty());
    assert!(matches!(s.compact(r1).await, Err(Error::Compacted { .. })));
    Ok(())
}

pub async fn limit_count_and_continuation(s: Arc<dyn Store>) -> anyhow::Result<()> {
    for i in 0..25 {
        s.put(&format!("/page/{i:02}"), b(&format!("v{i}"))).await?;
    }
    s.put("/pagez", b("outside")).await?;
    let first = s.range(RangeRequest::prefix("/page/").with_limit(10)).await?;
    assert_eq!((first.kvs.len(), first.more, first.count), (10, true, 25));
    let revision = first.header_revision;
    // Writes after the first page are invisible to the following pages.
    s.put("/page/05a", b("new")).await?;
    s.delete("/page/20").await?;
    let mut keys: Vec<String> = first.kvs.iter().map(|kv| kv.key.clone()).collect();
    let mut req = RangeRequest::prefix("/page/").with_limit(10);
    let mut resp = first;
    while resp.more {
        req = req.continue_after(&keys[keys.len() - 1], revision);
        resp = s.range(req.clone()).await?;
        keys.extend(resp.kvs.iter().map(|kv| kv.key.clone()));
    }
    let expected: Vec<String> = (0..25).map(|i| format!("/page/{i:02}")).collect();
    assert_eq!(keys, expected);
    let keys_only = s.range(RangeRequest::prefix("/page/").keys_only()).await?;
    assert_eq!(keys_only.count, 25);
    assert!(keys_only.kvs.iter().all(|kv| kv.value.is_empty() && kv.version == 1));
    let count_only = s.range(RangeRequest::prefix("/page/").count_only()).await?;
    assert_eq!((count_only.count, count_only.kvs.len(), count_only.more), (25, 0, false));
    let exact = s.range(RangeRequest::prefix("/page/").with_limit(25)).await?;
    assert_eq!((exact.kvs.len(), exact.more, exact.count), (25, false, 25));
    let all = s.range(RangeRequest::range("/", krust_store::RANGE_END_ALL)).await?;
    assert_eq!(all.count, 26);
    let empty = s.range(RangeRequest::range("/z", "/a")).await?;
    assert_eq!(empty.count, 0);
    Ok(())
}

pub async fn watch_from_old_revision(s: Arc<dyn Store>) -> anyhow::Result<()> {
    let r1 = s.put("/w/a", b("1")).await?;
    s.put("/w/b", b("1")).await?;
    s.put("/w/a", b("2")).await?;
    s.delete("/w/b").await?;
    let r5 = s.put("/elsewhere", b("x")).await?;
    let mut watch =
        s.watch(WatchRequest::prefix("/w/").from_revision(r1 + 1).with_prev_kv()).await?;
    let r6 = s.put("/w/c", b("live")).await?;
    let events = events_until(&mut watch, r6).await?;
    let summary: Vec<(EventKind, &str, i64)> =
        events.iter().map(|e| (e.kind, e.kv.key.as_str(), e.kv.mod_revision)).collect();
    assert_eq!(
        summary,
        [
            (EventKind::Put, "/w/b", r1 + 1),
            (EventKind::Put, "/w/a", r1 + 2),
            (EventKind::Delete, "/w/b", r1 + 3),
            (EventKind::Put, "/w/c", r6),
        ]
    );
    assert!(r5 < r6);
    assert_eq!(events[1].prev_kv.as_ref().map(|kv| kv.value.clone()), Some(b("1")));
    assert_eq!(events[1].kv.version, 2);
    assert_eq!(events[2].prev_kv.as_ref().map(|kv| kv.mod_revision), Some(r1 + 1));
    assert_eq!(events[0].prev_kv, None);
    Ok(())
}

pub async fn watch_from_now(s: Arc<dyn Store>) -> anyhow::Result<()> {
    s.put("/now/old", b("1")).await?;
    let mut watch = s.watch(WatchRequest::key("/now/k")).await?;
    let r = s.put("/now/k", b("1")).await?;
    s.put("/now/other", b("1")).await?;
    let r2 = s.put("/now/k", b("2")).await?;
    let events = events_until(&mut watch, r2).await?;
    let revs: Vec<i64> = events.iter().map(|e| e.kv.mod_revision).collect();
    assert_eq!(revs, [r, r2]);
    assert!(events.iter().all(|e| e.prev_kv.is_none()), "prev_kv only when asked");
    Ok(())
}

pub async fn watch_replays_long_history(s: Arc<dyn Store>) -> anyhow::Result<()> {
    // Longer than any backend's replay chunk, with unrelated writes in between.
    let first = s.current_revision().await? + 1;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..8 {
        let s = s.clone();
        tasks.spawn(async move {
            for i in 0..150 {
                s.put(&format!("/long/{w}"), Bytes::from(format!("{i}"))).await?;
                s.put(&format!("/other/{w}"), Bytes::new()).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let last = s.list("/long/").await?.kvs.iter().map(|kv| kv.mod_revision).max().unwrap_or(0);
    let mut watch = s.watch(WatchRequest::prefix("/long/").from_revision(first)).await?;
    let events = events_until(&mut watch, last).await?;
    assert_eq!(events.len(), 8 * 150);
    for w in 0..8 {
        let values: Vec<Bytes> = events
            .iter()
            .filter(|e| e.kv.key == format!("/long/{w}"))
            .map(|e| e.kv.value.clone())
            .collect();
        let expected: Vec<Bytes> = (0..150).map(|i| Bytes::from(format!("{i}"))).collect();
        assert_eq!(values, expected, "per-key order");
    }
    assert!(events.windows(2).all(|p| p[0].kv.mod_revision < p[1].kv.mod_revision));
    Ok(())
}

pub async fn watch_at_compacted_revision_fails(s: Arc<dyn Store>) -> anyhow::Result<()> {
    let r1 = s.put("/c/a", b("1")).await?;
    let r2 = s.put("/c/a", b("2")).await?;
    let r3 = s.put("/c/a", b("3")).await?;
    s.compact(r3).await?;
    let err = match s.watch(WatchRequest::prefix("/c/").from_revision(r1)).await {
        Err(e) => e,
        Ok(mut watch) => match tokio::time::timeout(DEADLINE, watch.next()).await? {
            Some(Err(e)) => e,
            other => anyhow::bail!("watch at a compacted revision: {other:?}"),
        },
    };
    match err {
        Error::Compacted { requested, compacted } => {
            assert_eq!(requested, r1);
            assert_eq!(compacted, r3);
        }
        other => anyhow::bail!("expected Compacted, got {other:?}"),
    }
    assert!(r2 < r3);
    // Watching from the compaction revision itself works.
    let mut watch = s.watch(WatchRequest::prefix("/c/").from_revision(r3)).await?;
    let events = events_until(&mut watch, r3).await?;
    assert_eq!(events[0].kv.value, b("3"));
    Ok(())
}

pub async fn watch_handoff_under_concurrent_writes(s: Arc<dyn Store>) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    const MIN_WRITES: i64 = 200;
    let first = s.current_revision().await? + 1;
    let stop = Arc::new(AtomicBool::new(false));
    // Writes until told to stop (and at least MIN_WRITES), then once more: the last write
    // happens after every watcher was created.
    let writer = {
        let (s, stop) = (s.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0i64;
            loop {
                let done = stop.load(Ordering::Acquire) && i >= MIN_WRITES;
                let rev = s.put(&format!("/h/{}", i % 7), Bytes::from(i.to_string())).await?;
                if done {
                    return anyhow::Ok(rev);
                }
                i += 1;
                if i % 8 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut watchers = Vec::new();
    for n in 0..6 {
        // Start while writes are in flight: some from history, some from "now".
        let current = s.current_revision().await?;
        let start = if n % 3 == 2 { 0 } else { (current - 5 * n).max(first) };
        let watch =
            s.watch(WatchRequest::prefix("/h/").from_revision(start).with_prev_kv()).await?;
        watchers.push((start, watch));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    stop.store(true, Ordering::Release);
    let last = writer.await??;
    for (start, mut watch) in watchers {
        let events = events_until(&mut watch, last).await?;
        let revs: Vec<i64> = events.iter().map(|e| e.kv.mod_revision).collect();
        let from = if start == 0 { revs[0] } else { start };
        let expected: Vec<i64> = (from..=last).collect();
        assert_eq!(revs, expected, "watch from {start}: no gap, no duplicate");
        for e in &events {
            let i = e.kv.mod_revision - first;
            assert_eq!(e.kv.value, Bytes::from(i.to_string()));
            if i >= 7 {
                let prev = e.prev_kv.as_ref().map(|kv| kv.mod_revision);
                assert_eq!(prev, Some(e.kv.mod_revision - 7));
            }
        }
    }
    Ok(())
}

pub async fn progress_notifications(s: Arc<dyn Store>) -> anyhow::Result<()> {
    s.put("/p/a", b("1")).await?;
    let mut watch = s.watch(WatchRequest::prefix("/p/").with_progress_notify()).await?;
    let r = s.put("/elsewhere/x", b("1")).await?;
    // On request: a progress notification covering everything written so far.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    watch.request_progress();
    loop {
        let resp = next(&mut watch).await?;
        anyhow::ensure!(resp.is_progress_notify(), "unexpected events {resp:?}");
        if resp.header_revision >= r {
            assert_eq!(resp.header_revision, r);
            break;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no progress at {r}");
        watch.request_progress();
    }
    // Periodic: more arrive while idle, carrying the current revision.
    let r2 = s.put("/elsewhere/y", b("1")).await?;
    loop {
        let resp = next(&mut watch).await?;
        anyhow::ensure!(resp.is_progress_notify(), "unexpected events {resp:?}");
        if resp.header_revision >= r2 {
            assert_eq!(resp.header_revision, r2);
            break;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no periodic progress at {r2}");
    }
    // Events still come through in between.
    let r3 = s.put("/p/b", b("1")).await?;
    let events = events_until(&mut watch, r3).await?;
    assert_eq!(events.len(), 1);
    Ok(())
}

pub async fn lease_expiry_deletes_keys(s: Arc<dyn Store>) -> anyhow::Result<()> {
    let lease = s.lease_grant(Duration::from_secs(1)).await?;
    let r = s.put_with_lease("/l/event", b("e"), lease).await?;
    s.put("/l/plain", b("p")).await?;
    assert_eq!(s.get("/l/event").await?.unwrap().lease, lease);
    let mut watch = s.watch(WatchRequest::prefix("/l/").from_revision(r).with_prev_kv()).await?;
    eventually("the leased key to expire", || {
        let s = s.clone();
        async move { Ok(s.get("/l/event").await?.is_none().then_some(())) }
    })
    .await?;
    let events = events_until(&mut watch, r + 2).await?;
    let deleted: Vec<_> = events.iter().filter(|e| e.kind == EventKind::Delete).collect();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].kv.key, "/l/event");
    assert_eq!(deleted[0].prev_kv.as_ref().map(|kv| kv.lease), Some(lease));
    assert!(s.get("/l/plain").await?.is_some());
    match s.put_with_lease("/l/again", b("x"), lease).await {
        Err(Error::LeaseNotFound { id }) => assert_eq!(id, lease),
        other => anyhow::bail!("put with an expired lease: {other:?}"),
    }
    Ok(())
}

pub async fn lease_revoke_and_unknown_leases(s: Arc<dyn Store>) -> anyhow::Result<()> {
    let lease = s.lease_grant(Duration::from_secs(60)).await?;
    assert_eq!(s.lease_keep_alive(lease).await?, Duration::from_secs(60));
    s.put_with_lease("/r/a", b("1"), lease).await?;
    s.put_with_lease("/r/b", b("1"), lease).await?;
    s.put_with_lease("/r/c", b("1"), lease).await?;
    // Re-put without the lease: detached, survives the revoke.
    s.put("/r/c", b("2")).await?;
    let before = s.current_revision().await?;
    s.lease_revoke(lease).await?;
    assert_eq!(s.current_revision().await?, before + 1, "a revoke is one revision");
    let keys: Vec<String> = s.list("/r/").await?.kvs.into_iter().map(|kv| kv.key).collect();
    assert_eq!(keys, ["/r/c"]);
    assert!(matches!(s.lease_revoke(lease).await, Err(Error::LeaseNotFound { .. })));
    assert!(matches!(s.lease_keep_alive(lease).await, Err(Error::LeaseNotFound { .. })));
    assert!(matches!(
        s.put_with_lease("/r/d", b("1"), 987_654_321).await,
        Err(Error::LeaseNotFound { id: 987_654_321 })
    ));
    assert_eq!(s.get("/r/d").await?, None);
    Ok(())
}

pub async fn value_size_limit(s: Arc<dyn Store>) -> anyhow::Result<()> {
    let too_big = Bytes::from(vec![7u8; MAX_VALUE_SIZE + 1]);
    match s.put("/big/too", too_big).await {
        Err(Error::ValueTooLarge { size, limit, .. }) => {
            assert_eq!((size, limit), (MAX_VALUE_SIZE + 1, 1_572_864));
        }
        other => anyhow::bail!("oversized value: {other:?}"),
    }
    assert_eq!(s.get("/big/too").await?, None);
    Ok(())
}

pub async fn concurrent_cas_counter(s: Arc<dyn Store>) -> anyhow::Result<()> {
    const WRITERS: usize = 64;
    const INCREMENTS: usize = 5;
    s.put("/counter", b("0")).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..WRITERS {
        let s = s.clone();
        tasks.spawn(async move {
            let mut conflicts = 0u64;
            for _ in 0..INCREMENTS {
                loop {
                    let kv = s.get("/counter").await?.unwrap();
                    let n: u64 = std::str::from_utf8(&kv.value)?.parse()?;
                    let next = Bytes::from((n + 1).to_string());
                    match s.update_if("/counter", next, kv.mod_revision, 0).await? {
                        WriteOutcome::Applied { .. } => break,
                        WriteOutcome::Conflict { .. } => conflicts += 1,
                    }
                }
            }
            anyhow::Ok(conflicts)
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let kv = s.get("/counter").await?.unwrap();
    let total = WRITERS * INCREMENTS;
    assert_eq!(kv.value, Bytes::from(total.to_string()), "no lost update");
    assert_eq!(kv.version, total as i64 + 1);
    Ok(())
}

pub async fn large_values(s: Arc<dyn Store>) -> anyhow::Result<()> {
    let mut watch = s.watch(WatchRequest::prefix("/large/")).await?;
    let mut last = 0;
    for i in 0..3u8 {
        let value = Bytes::from(vec![i; 1024 * 1024]);
        last = s.put(&format!("/large/{i}"), value).await?;
    }
    for i in 0..3u8 {
        let kv = s.get(&format!("/large/{i}")).await?.unwrap();
        assert_eq!(kv.value.len(), 1024 * 1024);
        assert!(kv.value.iter().all(|&x| x == i));
    }
    let events = events_until(&mut watch, last).await?;
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e.kv.value.len() == 1024 * 1024));
    Ok(())
}

pub async fn unicode_keys(s: Arc<dyn Store>) -> anyhow::Result<()> {
    let keys = [
        "/registry/configmaps/ns/ünïcödé",
        "/registry/configmaps/ns/日本語",
        "/registry/configmaps/ns/🚀",
        "/registry/configmaps/ns/\u{D7FF}",
        "/registry/configmaps/ns/\u{E000}",
        "/registry/configmaps/ñs/x",
    ];
    for key in keys {
        s.put(key, b(key)).await?;
    }
    let list = s.list("/registry/configmaps/ns/").await?;
    let got: BTreeSet<String> = list.kvs.iter().map(|kv| kv.key.clone()).collect();
    let want: BTreeSet<String> = keys[..5].iter().map(|k| k.to_string()).collect();
    assert_eq!(got, want);
    let sorted: Vec<&str> = list.kvs.iter().map(|kv| kv.key.as_str()).collect();
    let mut expected_order = sorted.clone();
    expected_order.sort();
    assert_eq!(sorted, expected_order, "keys come back in byte (code point) order");
    for prefix in ["/registry/configmaps/ns/日", "/registry/configmaps/ns/\u{D7FF}"] {
        let got = s.list(prefix).await?;
        assert_eq!(got.count, 1, "{prefix}");
        assert!(got.kvs[0].key.starts_with(prefix));
    }
    let kv: KeyValue = s.get("/registry/configmaps/ns/🚀").await?.unwrap();
    assert_eq!(kv.value, b("/registry/configmaps/ns/🚀"));
    Ok(())
}
