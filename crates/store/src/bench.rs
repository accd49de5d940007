//! A store benchmark, run by `krust bench store`: durable put throughput and latency at 1, 8
//! and 64 concurrent writers, watch delivery latency, and (for file-backed stores) the file
//! size after sustained churn over a bounded key space with automatic compaction.
//!
//! Figures are printed by the caller; compare backends within one run (ratios), not against
//! absolute numbers from another machine.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::store::{Store, StoreExt};
use crate::types::{RANGE_END_ALL, WatchRequest};
use crate::watch::lock;

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Puts per concurrency level (each level also stops after `max_duration`).
    pub writes_per_level: u64,
    /// Time limit of each phase.
    pub max_duration: Duration,
    /// Value size of every put.
    pub value_size: usize,
    /// Puts observed by the watch-latency phase.
    pub watch_events: u64,
    /// Puts of the churn phase (0 skips it).
    pub churn_writes: u64,
    /// Distinct keys the churn phase cycles through.
    pub churn_keys: u64,
    /// The store's database file, to measure its size (None: not file-backed).
    pub db_path: Option<PathBuf>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            writes_per_level: 50_000,
            max_duration: Duration::from_secs(10),
            value_size: 1024,
            watch_events: 2_000,
            churn_writes: 1_000_000,
            churn_keys: 100_000,
            db_path: None,
        }
    }
}

/// Results. Rates are per second, latencies in milliseconds, sizes in MiB.
#[derive(Clone, Debug, Default)]
pub struct BenchReport {
    /// Backend name, as given.
    pub name: String,
    /// Durable puts per second with 1 writer.
    pub put_1_per_sec: f64,
    /// Median put latency with 1 writer.
    pub put_1_p50_ms: f64,
    /// 99th percentile put latency with 1 writer.
    pub put_1_p99_ms: f64,
    /// Durable puts per second with 8 writers.
    pub put_8_per_sec: f64,
    /// Median put latency with 8 writers.
    pub put_8_p50_ms: f64,
    /// 99th percentile put latency with 8 writers.
    pub put_8_p99_ms: f64,
    /// Durable puts per second with 64 writers.
    pub put_64_per_sec: f64,
    /// Median put latency with 64 writers.
    pub put_64_p50_ms: f64,
    /// 99th percentile put latency with 64 writers.
    pub put_64_p99_ms: f64,
    /// Median time from the start of a put to its event reaching a watcher.
    pub watch_p50_ms: f64,
    /// 99th percentile of the same.
    pub watch_p99_ms: f64,
    /// Puts per second during the churn phase (64 writers).
    pub churn_per_sec: f64,
    /// Puts done in the churn phase.
    pub churn_writes: f64,
    /// Live data after churn: keys x (key + value) bytes.
    pub live_data_mb: f64,
    /// Database file plus WAL after churn (0 when not file-backed).
    pub db_file_mb: f64,
    /// `db_file_mb / live_data_mb`.
    pub file_to_live_ratio: f64,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self;
        writeln!(f, "store bench: {}", r.name)?;
        for (n, rate, p50, p99) in [
            (1, r.put_1_per_sec, r.put_1_p50_ms, r.put_1_p99_ms),
            (8, r.put_8_per_sec, r.put_8_p50_ms, r.put_8_p99_ms),
            (64, r.put_64_per_sec, r.put_64_p50_ms, r.put_64_p99_ms),
        ] {
            writeln!(f, "  put x{n:<3} {rate:>10.0}/s  p50 {p50:>7.3} ms  p99 {p99:>7.3} ms")?;
        }
        writeln!(f, "  watch     p50 {:>7.3} ms  p99 {:>7.3} ms", r.watch_p50_ms, r.watch_p99_ms)?;
        write!(
            f,
            "  churn     {:.0} puts at {:.0}/s: file {:.1} MiB for {:.1} MiB live ({:.2}x)",
            r.churn_writes, r.churn_per_sec, r.db_file_mb, r.live_data_mb, r.file_to_live_ratio
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// (p50, p99) in milliseconds.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0);
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (ms(at(0.50)), ms(at(0.99)))
}

fn task_failed(e: tokio::task::JoinError) -> Error {
    Error::Storage { context: "running a bench task".into(), source: Arc::new(e) }
}

/// `writers` tasks putting `total` keys `key(i)` (or until `max`); returns (rate, latencies).
async fn put_phase(
    store: &Arc<dyn Store>,
    writers: usize,
    total: u64,
    max: Duration,
    value: &Bytes,
    key: impl Fn(u64) -> String + Send + Sync + 'static,
) -> Result<(f64, Vec<Duration>)> {
    let next = Arc::new(AtomicU64::new(0));
    let key = Arc::new(key);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..writers {
        let (store, next, key, value) = (store.clone(), next.clone(), key.clone(), value.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || started.elapsed() >= max {
                    return Ok::<_, Error>(latencies);
                }
                let t = Instant::now();
                store.put(&key(i), value.clone()).await?;
                latencies.push(t.elapsed());
            }
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.map_err(task_failed)??);
    }
    let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
    Ok((rate, latencies))
}

/// Runs every phase against `store` (which should be empty and dedicated to the bench).
pub async fn run_store_bench(
    store: Arc<dyn Store>,
    name: &str,
    opts: &BenchOptions,
) -> Result<BenchReport> {
    let value = Bytes::from(vec![b'v'; opts.value_size]);
    let mut report = BenchReport { name: name.to_string(), ..Default::default() };

    for writers in [1usize, 8, 64] {
        let (rate, latencies) = put_phase(
            &store,
            writers,
            opts.writes_per_level,
            opts.max_duration,
            &value,
            move |i| format!("/bench/put/{writers}/{i:08}"),
        )
        .await?;
        let (p50, p99) = percentiles(latencies);
        let slot = match writers {
            1 => (&mut report.put_1_per_sec, &mut report.put_1_p50_ms, &mut report.put_1_p99_ms),
            8 => (&mut report.put_8_per_sec, &mut report.put_8_p50_ms, &mut report.put_8_p99_ms),
            _ => (&mut report.put_64_per_sec, &mut report.put_64_p50_ms, &mut report.put_64_p99_ms),
        };
        (*slot.0, *slot.1, *slot.2) = (rate, p50, p99);
        store.delete_range("/bench/put/", RANGE_END_ALL).await?;
    }

    // Watch latency: from the start of each put to the event's arrival.
    let n = opts.watch_events.max(1);
    let starts: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; n as usize]));
    let mut watch = store.watch(WatchRequest::prefix("/bench/watch/")).await?;
    let receiver = {
        let starts = starts.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(n as usize);
            while (latencies.len() as u64) < n {
                let Some(resp) = watch.next().await else { break };
                let arrived = Instant::now();
                for event in resp?.events {
                    let i: usize =
                        event.kv.key.rsplit('/').next().and_then(|s| s.parse().ok()).unwrap_or(0);
                    if let Some(start) = lock(&starts).get(i).copied().flatten() {
                        latencies.push(arrived - start);
                    }
                }
            }
            Ok::<_, Error>(latencies)
        })
    };
    // One writer at a time: this measures delivery, not queueing behind other writes.
    let mut writers = tokio::task::JoinSet::new();
    let next = Arc::new(AtomicU64::new(0));
    for _ in 0..1 {
        let (store, starts, next, value) =
            (store.clone(), starts.clone(), next.clone(), value.clone());
        writers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, Error>(());
                }
                if let Some(slot) = lock(&starts).get_mut(i as usize) {
                    *slot = Some(Instant::now());
                }
                store.put(&format!("/bench/watch/{i}"), value.clone()).await?;
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.map_err(task_failed)??;
    }
    let latencies = tokio::time::timeout(Duration::from_secs(30), receiver)
        .await
        .map_err(|_| Error::invalid("watch events did not arrive within 30 s"))?
        .map_err(task_failed)??;
    (report.watch_p50_ms, report.watch_p99_ms) = percentiles(latencies);
    store.delete_range("/bench/watch/", RANGE_END_ALL).await?;

    // Churn over a bounded key space; automatic compaction must keep the file bounded.
    if opts.churn_writes > 0 {
        let keys = opts.churn_keys.max(1);
        let (rate, latencies) =
            put_phase(&store, 64, opts.churn_writes, Duration::from_secs(3600), &value, move |i| {
                format!("/bench/churn/{:08}", i % keys)
            })
            .await?;
        report.churn_per_sec = rate;
        report.churn_writes = latencies.len() as f64;
        let live_keys = keys.min(latencies.len() as u64);
        let key_len = "/bench/churn/00000000".len() as u64;
        report.live_data_mb = (live_keys * (key_len + opts.value_size as u64)) as f64 / 1048576.0;
        if let Some(path) = &opts.db_path {
            let mut wal = path.as_os_str().to_owned();
            wal.push("-wal");
            let size = std::fs::metadata(path).map_or(0, |m| m.len())
                + std::fs::metadata(PathBuf::from(wal)).map_or(0, |m| m.len());
            report.db_file_mb = size as f64 / 1048576.0;
            if report.live_data_mb > 0.0 {
                report.file_to_live_ratio = report.db_file_mb / report.live_data_mb;
            }
        }
    }
    Ok(report)
}
