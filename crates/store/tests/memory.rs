//! The shared suite on the in-memory backend, plus its slow-watcher behaviour.

#![allow(clippy::unwrap_used)]

mod suite;

use std::sync::Arc;
use std::time::Duration;

use krust_store::{Error, MemoryConfig, MemoryStore, StoreExt, WatchRequest};

fn config() -> MemoryConfig {
    MemoryConfig { progress_interval: Duration::from_millis(200), ..Default::default() }
}

store_suite!(|| async { suite::Fixture::new(Arc::new(MemoryStore::new(config())?)) });

#[tokio::test]
async fn slow_watcher_is_closed_without_losing_events() -> anyhow::Result<()> {
    let store = MemoryStore::new(MemoryConfig { watch_buffer: 8, ..config() })?;
    let mut watch = watch_lagging_prefix(&store).await?;
    let mut last = 0;
    for i in 0..50 {
        last = store.put(&format!("/slow/{i}"), bytes::Bytes::from_static(b"x")).await?;
    }
    let mut revisions = Vec::new();
    let err = loop {
        match watch.next().await {
            Some(Ok(resp)) => revisions.extend(resp.events.iter().map(|e| e.kv.mod_revision)),
            Some(Err(e)) => break e,
            None => anyhow::bail!("ended without an error"),
        }
    };
    let Error::WatchLagged { revision } = err else {
        anyhow::bail!("expected WatchLagged: {err:?}")
    };
    assert_eq!(revisions.last().copied(), Some(revision), "every event up to the error arrived");
    let expected: Vec<i64> = (revisions[0]..=revision).collect();
    assert_eq!(revisions, expected, "no gap before the error");
    assert!(revision < last);
    assert!(watch.next().await.is_none());
    Ok(())
}

/// A prefix watch that is already subscribed (caught up) when it is returned.
async fn watch_lagging_prefix(store: &MemoryStore) -> anyhow::Result<krust_store::WatchStream> {
    use krust_store::Store;
    let mut watch = store.watch(WatchRequest::prefix("/slow/")).await?;
    watch.request_progress();
    let progress = watch.next().await.unwrap()?;
    assert!(progress.is_progress_notify());
    Ok(watch)
}

#[tokio::test]
async fn compacted_errors_carry_both_revisions() -> anyhow::Result<()> {
    use krust_store::{RangeRequest, Store};
    let store = MemoryStore::new(config())?;
    let r1 = store.put("/k", bytes::Bytes::from_static(b"1")).await?;
    let r2 = store.put("/k", bytes::Bytes::from_static(b"2")).await?;
    store.compact(r2).await?;
    match store.range(RangeRequest::key("/k").at_revision(r1)).await {
        Err(Error::Compacted { requested, compacted }) => {
            assert_eq!((requested, compacted), (r1, r2))
        }
        other => anyhow::bail!("{other:?}"),
    }
    Ok(())
}
