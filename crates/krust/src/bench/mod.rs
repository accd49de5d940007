//! `krust bench ...`: benchmarks that print a table and then one JSON line with the figures
//! the issues name, each against a reference measured in the same run.

mod apiserver;
mod apply;
mod controllers;
mod density;
mod podstartup;
mod scheduler;
mod spawn;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use krust_store::bench::{BenchOptions, BenchReport, run_store_bench};
use krust_store::etcd::{LocalEtcdOptions, spawn_local_etcd};
use krust_store::{
    EtcdConfig, EtcdStore, MemoryConfig, MemoryStore, SqliteConfig, SqliteStore, Store,
};
use serde_json::json;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// The store backends: durable put throughput and latency with 1, 8 and 64 writers, watch
    /// delivery latency, and the sqlite file size after churn. etcd (Debian's etcd-server,
    /// started on loopback by the benchmark) is the reference.
    Store(StoreArgs),
    /// The API server over HTTPS on loopback: ConfigMap creates with 1, 8 and 64 clients, get,
    /// list of 10,000 pods, watch fan-out, idle RSS and start-to-ready; the store's raw write rate
    /// in the same run is the reference.
    Apiserver(apiserver::ApiserverArgs),
    /// Server-side apply of a Deployment with some seventy fields, re-applied unchanged and
    /// with one field changed; a plain update (PUT) of the same field in the same run is the
    /// reference. ops/s and p99 of each, one client over one kept-alive connection.
    Apply(apply::ApplyArgs),
    /// The scheduler against a real API server on loopback: SchedulingBasic with N nodes and M
    /// pending pods (5,000 x 10,000 and 5,000 x 50,000 by default); pods/s and latencies.
    Scheduler(scheduler::SchedulerArgs),
    /// Hollow nodes and pods at scale (upstream's density test): nodes Ready, pod startup
    /// latency p50/p90/p99, API mutating-call p99, server and hollow RSS and CPU.
    Density(density::DensityArgs),
    /// A Deployment of 10,000 replicas on 500 hollow nodes: time to running and a full
    /// rolling update, against the API server's write rate measured in the same run.
    Controllers(controllers::ControllersArgs),
    /// Pod start-up on one real node (containerd, as root, in a network namespace of its
    /// own): pods one at a time and all at once, create to Running p50/p99, against the same
    /// sandbox and container through raw CRI calls; the agent's RSS.
    Podstartup(podstartup::PodStartupArgs),
}

#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Puts per concurrency level (each level also stops after 10 s).
    #[arg(long, default_value_t = 50_000)]
    writes_per_level: u64,
    /// Puts of the sqlite churn phase that measures the file size (over 100,000 keys).
    #[arg(long, default_value_t = 1_000_000)]
    churn_writes: u64,
    /// Backends to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,etcd,memory")]
    backends: Vec<Backend>,
    /// Where the databases go (a temporary directory inside it); defaults to the system's.
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Sqlite,
    Etcd,
    Memory,
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Store(args) => store(args).await,
        BenchCommand::Apiserver(args) => apiserver::run(args).await,
        BenchCommand::Apply(args) => apply::run(args).await,
        BenchCommand::Scheduler(args) => scheduler::run(args).await,
        BenchCommand::Density(args) => density::run(args).await,
        BenchCommand::Controllers(args) => controllers::run(args).await,
        BenchCommand::Podstartup(args) => podstartup::run(args).await,
    }
}

/// The `qs` quantiles (0.5 for the median) of `samples`, in seconds (nearest rank).
fn quantiles(samples: &mut [std::time::Duration], qs: &[f64]) -> Vec<f64> {
    samples.sort_unstable();
    qs.iter()
        .map(|q| match samples.len() {
            0 => 0.0,
            n => {
                let rank = ((n - 1) as f64 * q).round() as usize;
                samples[rank.min(n - 1)].as_secs_f64()
            }
        })
        .collect()
}

async fn store(args: StoreArgs) -> anyhow::Result<()> {
    let dir = match &args.dir {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let base = BenchOptions {
        writes_per_level: args.writes_per_level,
        churn_writes: 0,
        ..Default::default()
    };
    let mut reports: Vec<BenchReport> = Vec::new();
    for backend in &args.backends {
        let report = match backend {
            Backend::Sqlite => {
                let path = dir.path().join("bench.db");
                let store: Arc<dyn Store> = Arc::new(SqliteStore::open(SqliteConfig::new(&path))?);
                let opts = BenchOptions {
                    churn_writes: args.churn_writes,
                    db_path: Some(path),
                    ..base.clone()
                };
                measure(store, "sqlite", &opts).await?
            }
            Backend::Etcd => {
                let options = LocalEtcdOptions {
                    auto_compaction_revisions: Some(100_000),
                    ..LocalEtcdOptions::default()
                };
                let etcd = spawn_local_etcd(&dir.path().join("etcd"), &options)
                    .await
                    .context("cannot start etcd for the reference (install it with scripts/deps.sh, or leave etcd out of --backends)")?;
                let store: Arc<dyn Store> =
                    Arc::new(EtcdStore::connect(EtcdConfig::new([etcd.client_url()])).await?);
                let report = measure(store, "etcd", &base).await?;
                drop(etcd);
                report
            }
            Backend::Memory => {
                // Puts land faster than one watcher drains them: give it room for all of them.
                let config = MemoryConfig { watch_buffer: 1 << 20, ..MemoryConfig::default() };
                let store: Arc<dyn Store> = Arc::new(MemoryStore::new(config)?);
                measure(store, "memory", &base).await?
            }
        };
        println!("{report}");
        reports.push(report);
    }

    let find = |name: &str| reports.iter().find(|r| r.name == name);
    let mut line = json!({"bench": "store"});
    for r in &reports {
        let n = &r.name;
        line[format!("{n}_ops_per_s_1")] = json!(r.put_1_per_sec.round());
        line[format!("{n}_ops_per_s_8")] = json!(r.put_8_per_sec.round());
        line[format!("{n}_ops_per_s_64")] = json!(r.put_64_per_sec.round());
        line[format!("{n}_p50_ms_1")] = json!(round3(r.put_1_p50_ms));
        line[format!("{n}_p99_ms_1")] = json!(round3(r.put_1_p99_ms));
        line[format!("{n}_p50_ms_64")] = json!(round3(r.put_64_p50_ms));
        line[format!("{n}_p99_ms_64")] = json!(round3(r.put_64_p99_ms));
        line[format!("{n}_watch_p50_ms")] = json!(round3(r.watch_p50_ms));
        line[format!("{n}_watch_p99_ms")] = json!(round3(r.watch_p99_ms));
    }
    if let Some(sqlite) = find("sqlite") {
        line["sqlite_db_mb_after_1m"] = json!(round3(sqlite.db_file_mb));
        line["sqlite_churn_writes"] = json!(sqlite.churn_writes);
        line["sqlite_db_to_live_ratio"] = json!(round3(sqlite.file_to_live_ratio));
        if let Some(etcd) = find("etcd").filter(|e| e.put_64_per_sec > 0.0) {
            line["sqlite_to_etcd_ratio_64"] =
                json!(round3(sqlite.put_64_per_sec / etcd.put_64_per_sec));
        }
    }
    println!("{line}");
    Ok(())
}

async fn measure(
    store: Arc<dyn Store>,
    name: &str,
    opts: &BenchOptions,
) -> anyhow::Result<BenchReport> {
    let report = run_store_bench(store.clone(), name, opts)
        .await
        .with_context(|| format!("{name} benchmark"))?;
    store.shutdown().await?;
    Ok(report)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
