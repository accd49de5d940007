//! The shared suite on the sqlite backend, plus what only a durable backend has: reopening,
//! crash safety (kill -9 of a writing child process), a full disk, automatic compaction.

#![allow(clippy::unwrap_used)]

mod suite;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use krust_store::{
    Error, HistoryConfig, RangeRequest, SqliteConfig, SqliteStore, Store, StoreExt, WatchRequest,
};

fn config(path: &Path) -> SqliteConfig {
    SqliteConfig { progress_interval: Duration::from_millis(200), ..SqliteConfig::new(path) }
}

async fn fixture() -> anyhow::Result<suite::Fixture> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(config(&dir.path().join("store.db")))?;
    suite::Fixture::with_guard(Arc::new(store), dir)
}

store_suite!(fixture);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_data_revisions_compaction_and_leases() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("store.db");
    let (revision, lease, r_old) = {
        let store = SqliteStore::open(config(&path))?;
        let r_old = store.put("/k/a", Bytes::from_static(b"1")).await?;
        store.put("/k/a", Bytes::from_static(b"2")).await?;
        let lease = store.lease_grant(Duration::from_secs(600)).await?;
        store.put_with_lease("/k/leased", Bytes::from_static(b"l"), lease).await?;
        let revision = store.put("/k/b", Bytes::from_static(b"b")).await?;
        store.compact(r_old + 1).await?;
        store.shutdown().await?;
        (revision, lease, r_old)
    };
    let store = SqliteStore::open(config(&path))?;
    assert_eq!(store.current_revision().await?, revision);
    assert_eq!(store.get("/k/a").await?.unwrap().value, Bytes::from_static(b"2"));
    assert_eq!(store.get("/k/a").await?.unwrap().version, 2);
    match store.range(RangeRequest::key("/k/a").at_revision(r_old)).await {
        Err(Error::Compacted { requested, compacted }) => {
            assert_eq!((requested, compacted), (r_old, r_old + 1));
        }
        other => anyhow::bail!("range below the compaction point: {other:?}"),
    }
    let next = store.put("/k/c", Bytes::from_static(b"c")).await?;
    assert_eq!(next, revision + 1);
    // The lease survived (with its full TTL) and still owns its key.
    assert_eq!(store.lease_keep_alive(lease).await?, Duration::from_secs(600));
    let other = store.lease_grant(Duration::from_secs(600)).await?;
    assert_ne!(other, lease, "lease ids are not reused");
    store.lease_revoke(lease).await?;
    assert_eq!(store.get("/k/leased").await?, None);
    store.shutdown().await?;
    assert!(matches!(store.put("/k/d", Bytes::new()).await, Err(Error::Closed)));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_is_closed_without_losing_events() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store =
        SqliteStore::open(SqliteConfig { watch_buffer: 4, ..config(&dir.path().join("s.db")) })?;
    let mut watch = store.watch(WatchRequest::prefix("/slow/")).await?;
    watch.request_progress();
    assert!(suite::next(&mut watch).await?.is_progress_notify());
    let mut last = 0;
    for i in 0..40 {
        last = store.put(&format!("/slow/{i}"), Bytes::from_static(b"x")).await?;
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
    assert_eq!(revisions.last().copied(), Some(revision));
    let expected: Vec<i64> = (revisions[0]..=revision).collect();
    assert_eq!(revisions, expected);
    assert!(revision < last);
    store.shutdown().await?;
    Ok(())
}

/// File size of the database plus its WAL.
fn db_size(path: &Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(path).map_or(0, |m| m.len())
        + std::fs::metadata(PathBuf::from(wal)).map_or(0, |m| m.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_compaction_bounds_history_and_file_size() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("churn.db");
    let store = Arc::new(SqliteStore::open(SqliteConfig {
        history: HistoryConfig {
            window: Duration::from_millis(1),
            min_revisions: 100,
            max_revisions: 500,
        },
        maintenance_interval: Duration::from_millis(20),
        wal_autocheckpoint: 256,
        ..config(&path)
    })?);
    const KEYS: usize = 200;
    let value = Bytes::from(vec![b'v'; 4096]);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..8 {
        let (store, value) = (store.clone(), value.clone());
        tasks.spawn(async move {
            for i in 0..500 {
                store.put(&format!("/churn/{}", (w * 500 + i) % KEYS), value.clone()).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let current = store.current_revision().await?;
    let old = RangeRequest::prefix("/churn/").at_revision(current - 2000);
    let compacted = suite::eventually("automatic compaction", || {
        let (store, old) = (store.clone(), old.clone());
        async move {
            store.put("/tick", Bytes::new()).await?;
            Ok(match store.range(old).await {
                Err(Error::Compacted { compacted, .. }) => Some(compacted),
                _ => None,
            })
        }
    })
    .await?;
    assert!(compacted >= current - 2000);
    assert_eq!(store.list("/churn/").await?.count, KEYS as u64);
    // Live data is 200 x 4 KiB = 800 KiB; history is bounded to at most 500 revisions (2 MiB).
    let live = (KEYS * 4096) as u64;
    let size = db_size(&path);
    assert!(size < 8 * live, "database {size} bytes for {live} bytes of live data");
    store.shutdown().await?;
    let conn = rusqlite::Connection::open(&path)?;
    let auto_vacuum: i64 = conn.query_row("PRAGMA auto_vacuum", [], |row| row.get(0))?;
    assert_eq!(auto_vacuum, 2, "incremental auto-vacuum");
    let journal: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
    assert_eq!(journal, "wal");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Crash safety: a child process (this test binary, re-executed) writes with many concurrent
// writers and prints each key once its put returned Ok; the parent kill -9s it at a random point
// and checks that every acknowledged key is there.

const CRASH_CHILD_ENV: &str = "KRUST_STORE_CRASH_CHILD";

/// Not a test on its own: the child mode of `crash_recovers_every_acknowledged_write`.
#[test]
fn crash_child() -> anyhow::Result<()> {
    let Ok(spec) = std::env::var(CRASH_CHILD_ENV) else { return Ok(()) };
    let (path, round) = spec.rsplit_once('|').unwrap();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let store = Arc::new(SqliteStore::open(SqliteConfig::new(path))?);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        // The writers run until the parent kills this process.
        let mut writers = tokio::task::JoinSet::new();
        for w in 0..16 {
            let (store, tx, round) = (store.clone(), tx.clone(), round.to_string());
            writers.spawn(async move {
                for i in 0.. {
                    let key = format!("/crash/{round}/{w}/{i}");
                    let value = Bytes::from(format!("{key}={}", "x".repeat(i % 300)));
                    if store.put(&key, value).await.is_ok() && tx.send(key).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut out = std::io::stdout().lock();
        while let Some(key) = rx.recv().await {
            writeln!(out, "ACK {key}")?;
            out.flush()?;
        }
        anyhow::Ok(())
    })
}

/// A small deterministic-per-run pseudo random generator (no extra dependency).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

#[test]
fn crash_recovers_every_acknowledged_write() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("crash.db");
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as u64;
    let mut rng = XorShift(seed | 1);
    println!("seed {seed}");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let started = Instant::now();
    let mut total_acked = 0usize;
    for round in 0..24 {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CRASH_CHILD_ENV, format!("{}|{round}", path.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(key) = line.strip_prefix("ACK ")
                    && tx.send(key.to_string()).is_err()
                {
                    break;
                }
            }
        });
        // Wait for the first acknowledgement, then let it write for a random while.
        let mut acked = Vec::new();
        acked.push(rx.recv_timeout(Duration::from_secs(20))?);
        let kill_at = Instant::now() + Duration::from_millis(20 + rng.next(200));
        while let Some(left) = kill_at.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(key) => acked.push(key),
                Err(_) => break,
            }
        }
        child.kill()?; // SIGKILL
        child.wait()?;
        reader.join().unwrap();
        acked.extend(rx.try_iter());
        total_acked += acked.len();

        // Every acknowledged key survived, with its value.
        runtime.block_on(async {
            let store = SqliteStore::open(SqliteConfig::new(&path))?;
            let resp = store.range(RangeRequest::prefix(format!("/crash/{round}/"))).await?;
            let present: std::collections::HashMap<&str, &Bytes> =
                resp.kvs.iter().map(|kv| (kv.key.as_str(), &kv.value)).collect();
            for key in &acked {
                let Some(value) = present.get(key.as_str()) else {
                    anyhow::bail!("round {round}: acknowledged key {key} lost");
                };
                let i: usize = key.rsplit('/').next().unwrap().parse()?;
                assert_eq!(**value, Bytes::from(format!("{key}={}", "x".repeat(i % 300))));
            }
            store.shutdown().await?;
            anyhow::Ok(())
        })?;
        let conn = rusqlite::Connection::open(&path)?;
        let check: String = conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
        assert_eq!(check, "ok", "round {round}");
    }
    println!("{total_acked} acknowledged writes checked in {:?}", started.elapsed());
    anyhow::ensure!(total_acked > 24, "the child wrote almost nothing");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Disk full: needs root (mounts a tmpfs), so it is an end-to-end test.

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "end-to-end: needs root to mount a tmpfs; run with --include-ignored"]
async fn disk_full_fails_writes_cleanly_and_recovers() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mount = dir.path().join("mnt");
    std::fs::create_dir(&mount)?;
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&mount)
        .status()?;
    anyhow::ensure!(status.success(), "mounting a tmpfs (root needed)");
    let _unmount = Unmount(mount.clone());
    // A filler we can delete later to free space.
    std::fs::write(mount.join("filler"), vec![0u8; 1024 * 1024])?;
    let store = SqliteStore::open(SqliteConfig::new(mount.join("store.db")))?;
    let value = Bytes::from(vec![b'd'; 32 * 1024]);
    let mut acked = Vec::new();
    let err = loop {
        let key = format!("/full/{}", acked.len());
        match store.put(&key, value.clone()).await {
            Ok(_) => acked.push(key),
            Err(e) => break e,
        }
        anyhow::ensure!(acked.len() < 1000, "the disk never filled up");
    };
    println!("disk full after {} writes: {err:?}", acked.len());
    assert!(matches!(err, Error::DiskFull { .. }), "{err:?}");
    assert_eq!(err.to_string(), "database or disk is full");
    assert!(!acked.is_empty());
    // The writer survived; every acknowledged write is readable.
    for key in &acked {
        assert_eq!(store.get(key).await?.unwrap().value, value);
    }
    assert!(matches!(store.put("/full/again", value.clone()).await, Err(Error::DiskFull { .. })));
    // Free space: writes resume.
    std::fs::remove_file(mount.join("filler"))?;
    let revision = store.put("/full/after", value.clone()).await.context("put after freeing")?;
    assert_eq!(store.get("/full/after").await?.unwrap().mod_revision, revision);
    store.shutdown().await.context("shutdown")?;
    drop(store);
    // The final checkpoint may have used the freed space; give the reopen some room.
    let status = Command::new("mount").args(["-o", "remount,size=16m"]).arg(&mount).status()?;
    anyhow::ensure!(status.success(), "growing the tmpfs");
    let store = SqliteStore::open(SqliteConfig::new(mount.join("store.db"))).context("reopen")?;
    assert_eq!(store.list("/full/").await.context("list")?.count, acked.len() as u64 + 1);
    store.shutdown().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Differential test: random operations applied to the memory and the sqlite backends must give
// identical answers (the memory backend is the executable specification).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_matches_memory_on_random_operations() -> anyhow::Result<()> {
    use krust_store::{
        Compare, CompareOp, DeleteRequest, MemoryConfig, MemoryStore, TxnOp, TxnRequest,
    };
    let dir = tempfile::tempdir()?;
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(config(&dir.path().join("d.db")))?);
    let memory: Arc<dyn Store> = Arc::new(MemoryStore::new(MemoryConfig::default())?);
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos() as u64;
    println!("seed {seed}");
    let mut rng = XorShift(seed | 1);
    let key = |n: u64| format!("/d/{}", ["a", "ab", "b", "é", "z/x", "z/y", "zz"][n as usize % 7]);
    // Watchers that stay live (caught up) during the run, so compaction does not cut them off.
    let mut watchers = Vec::new();
    for store in [&memory, &sqlite] {
        let mut watch =
            store.watch(WatchRequest::prefix("/d/").from_revision(2).with_prev_kv()).await?;
        watch.request_progress();
        assert!(suite::next(&mut watch).await?.is_progress_notify());
        watchers.push(tokio::spawn(async move {
            let mut events = Vec::new();
            while events.last().is_none_or(|e: &krust_store::Event| e.kv.key != "/d/~end") {
                events.extend(suite::next(&mut watch).await?.events);
            }
            anyhow::Ok(events)
        }));
    }
    for step in 0..1500 {
        let current = memory.current_revision().await?;
        let op = rng.next(100);
        let req = if op < 45 {
            TxnRequest::new().and_then([TxnOp::put(key(rng.next(7)), format!("v{step}"))])
        } else if op < 55 {
            TxnRequest::new().and_then([TxnOp::delete(key(rng.next(7)))])
        } else if op < 60 {
            TxnRequest::new().and_then([TxnOp::Delete(DeleteRequest {
                key: key(rng.next(7)),
                range_end: key(rng.next(7)),
                prev_kv: true,
            })])
        } else if op < 80 {
            let k = key(rng.next(7));
            let rev = current - rng.next(4) as i64;
            TxnRequest::new()
                .when([Compare::mod_revision(k.clone(), CompareOp::Equal, rev)])
                .and_then([TxnOp::put(k.clone(), format!("cas{step}")), TxnOp::get("/d/")])
                .or_else([TxnOp::Range(krust_store::RangeRequest::prefix("/d/").with_limit(2))])
        } else {
            // Reads at random (possibly compacted) revisions, with limits.
            let mut range = if rng.next(2) == 0 {
                RangeRequest::prefix("/d/")
            } else {
                RangeRequest::range(key(rng.next(7)), krust_store::RANGE_END_ALL)
            };
            range = range.at_revision(rng.next(current as u64 + 2) as i64).with_limit(rng.next(4));
            if rng.next(4) == 0 {
                range = range.keys_only();
            }
            let a = memory.range(range.clone()).await.map_err(|e| e.to_string());
            let b = sqlite.range(range.clone()).await.map_err(|e| e.to_string());
            assert_eq!(a, b, "step {step}: {range:?}");
            if op >= 97 && current > 10 {
                let at = current - rng.next(8) as i64;
                let a = memory.compact(at).await.map_err(|e| e.to_string());
                let b = sqlite.compact(at).await.map_err(|e| e.to_string());
                assert_eq!(a, b, "step {step}: compact {at}");
            }
            continue;
        };
        let a = memory.txn(req.clone()).await.map_err(|e| e.to_string());
        let b = sqlite.txn(req.clone()).await.map_err(|e| e.to_string());
        assert_eq!(a, b, "step {step}: {req:?}");
    }
    let last = memory.put("/d/~end", Bytes::new()).await?;
    assert_eq!(last, sqlite.put("/d/~end", Bytes::new()).await?);
    let mut histories = Vec::new();
    for watcher in watchers {
        histories.push(watcher.await??);
    }
    assert_eq!(histories[0], histories[1], "watch histories differ");
    sqlite.shutdown().await?;
    memory.shutdown().await?;
    Ok(())
}
