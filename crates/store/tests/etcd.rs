//! The shared suite on the etcd backend (a fresh single-member etcd per test, on loopback), plus
//! a key-prefix isolation check and a 3-member cluster that loses a member.
//!
//! End-to-end: needs Debian's `etcd-server` (`scripts/deps.sh`); run with `--include-ignored`.

#![allow(clippy::unwrap_used)]

mod suite;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use krust_store::etcd::{LocalEtcdOptions, spawn_local_etcd, spawn_local_etcd_cluster};
use krust_store::{EtcdConfig, EtcdStore, RangeRequest, Store, StoreExt, WatchRequest};

fn options() -> LocalEtcdOptions {
    LocalEtcdOptions { progress_notify_interval: Duration::from_millis(200), ..Default::default() }
}

async fn fixture() -> anyhow::Result<suite::Fixture> {
    let dir = tempfile::tempdir()?;
    let etcd = spawn_local_etcd(dir.path(), &options()).await?;
    let store = EtcdStore::connect(EtcdConfig::new([etcd.client_url()])).await?;
    // Dropped in order: the etcd process, then its directory.
    suite::Fixture::with_guard(Arc::new(store), (etcd, dir))
}

store_suite!(fixture; #[ignore = "end-to-end: needs etcd-server (scripts/deps.sh); run with --include-ignored"]);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: needs etcd-server (scripts/deps.sh); run with --include-ignored"]
async fn key_prefixes_isolate_stores_sharing_an_etcd() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let etcd = spawn_local_etcd(dir.path(), &options()).await?;
    let config = EtcdConfig::new([etcd.client_url()]);
    let a = EtcdStore::connect(config.clone().with_key_prefix("/a")).await?;
    let b = EtcdStore::connect(config.clone().with_key_prefix("/b")).await?;
    let bare = EtcdStore::connect(config).await?;
    let mut watch = b.watch(WatchRequest::prefix("/")).await?;
    a.put("/k", Bytes::from_static(b"a")).await?;
    let rb = b.put("/k", Bytes::from_static(b"b")).await?;
    assert_eq!(a.get("/k").await?.unwrap().value, Bytes::from_static(b"a"));
    let all_a = a.range(RangeRequest::range("", krust_store::RANGE_END_ALL)).await?;
    let keys: Vec<_> = all_a.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/k"], "keys come back without the prefix, and only this store's");
    let events = suite::events_until(&mut watch, rb).await?;
    assert_eq!(events.len(), 1, "a watch sees only its own store: {events:?}");
    assert_eq!(events[0].kv.key, "/k");
    let raw = bare.list("/").await?;
    let keys: Vec<_> = raw.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/a/k", "/b/k"]);
    assert_eq!(b.delete_range("/", krust_store::RANGE_END_ALL).await?, 1);
    assert!(a.get("/k").await?.is_some());
    for s in [&a, &b, &bare] {
        s.shutdown().await?;
    }
    Ok(())
}

/// Puts `key` until one attempt is acknowledged (a put of the same value is idempotent);
/// returns the acknowledged revision.
async fn put_acknowledged(s: &EtcdStore, key: &str, value: &str) -> anyhow::Result<i64> {
    suite::eventually("an acknowledged put", || async {
        match s.put(key, Bytes::from(value.to_string())).await {
            Ok(revision) => Ok(Some(revision)),
            Err(e) if e.is_storage() => Ok(None),
            Err(e) => Err(e.into()),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: needs etcd-server (scripts/deps.sh); run with --include-ignored"]
async fn three_member_cluster_keeps_acknowledged_writes_when_one_member_dies() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let mut members = spawn_local_etcd_cluster(dir.path(), 3, &options()).await?;
    let endpoints: Vec<String> = members.iter().map(|m| m.client_url().to_string()).collect();
    let store = EtcdStore::connect(EtcdConfig::new(endpoints.clone())).await?;
    let mut watch = store.watch(WatchRequest::prefix("/ha/").from_revision(1)).await?;
    let mut acknowledged = BTreeMap::new();
    for i in 0..50 {
        let key = format!("/ha/{i:03}");
        let revision = put_acknowledged(&store, &key, &format!("before-{i}")).await?;
        acknowledged.insert(key, (format!("before-{i}"), revision));
    }
    // Kill a member mid-stream; quorum (2 of 3) holds.
    members[0].kill();
    for i in 50..100 {
        let key = format!("/ha/{i:03}");
        let revision = put_acknowledged(&store, &key, &format!("after-{i}")).await?;
        acknowledged.insert(key, (format!("after-{i}"), revision));
    }
    let check = |name: &'static str, s: Arc<EtcdStore>| {
        let acknowledged = acknowledged.clone();
        async move {
            let list = suite::eventually("a read", || {
                let s = s.clone();
                async move {
                    match s.list("/ha/").await {
                        Ok(list) => Ok(Some(list)),
                        Err(e) if e.is_storage() => Ok(None),
                        Err(e) => Err(e.into()),
                    }
                }
            })
            .await?;
            let got: BTreeMap<String, String> = list
                .kvs
                .iter()
                .map(|kv| (kv.key.clone(), String::from_utf8_lossy(&kv.value).into_owned()))
                .collect();
            let want: BTreeMap<String, String> =
                acknowledged.iter().map(|(k, (v, _))| (k.clone(), v.clone())).collect();
            anyhow::ensure!(got == want, "{name}: acknowledged writes lost or changed");
            anyhow::Ok(())
        }
    };
    check("the original client", Arc::new(store)).await?;
    // A new client that only knows the survivors sees the same data.
    let survivors = EtcdStore::connect(EtcdConfig::new(endpoints[1..].to_vec())).await?;
    check("a client of the survivors", Arc::new(survivors)).await?;
    // The watch started before the failure saw every acknowledged write, in revision order
    // (or, if its member died, ended with an error rather than skipping any).
    let last = acknowledged.values().map(|(_, r)| *r).max().unwrap_or(0);
    let mut revisions = Vec::new();
    while revisions.last().is_none_or(|r| *r < last) {
        match tokio::time::timeout(suite::DEADLINE, watch.next()).await? {
            Some(Ok(resp)) => revisions.extend(resp.events.iter().map(|e| e.kv.mod_revision)),
            Some(Err(e)) => {
                assert!(e.is_storage(), "{e:?}");
                break;
            }
            None => break,
        }
    }
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "watch events in order");
    // (A retried put may add a revision nobody acknowledged, never remove one.)
    let seen: std::collections::BTreeSet<i64> = revisions.iter().copied().collect();
    let delivered_up_to = revisions.last().copied().unwrap_or(0);
    for (key, (_, revision)) in &acknowledged {
        if *revision <= delivered_up_to {
            assert!(seen.contains(revision), "the watch skipped {key} at {revision}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn connecting_to_nothing_fails_with_context() -> anyhow::Result<()> {
    // A port nobody listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config = EtcdConfig {
        connect_timeout: Duration::from_millis(500),
        ..EtcdConfig::new([format!("http://127.0.0.1:{port}")])
    };
    let err = EtcdStore::connect(config).await.unwrap_err();
    assert!(err.is_storage(), "{err:?}");
    assert!(err.to_string().contains("etcd"), "{err}");
    Ok(())
}
