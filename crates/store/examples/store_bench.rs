//! Runs the store benchmark on a fresh sqlite store (and the memory store for reference).
//!
//! `cargo run --release -p krust-store --example store_bench -- [churn_writes] [dir]`

use std::sync::Arc;

use krust_store::bench::{BenchOptions, run_store_bench};
use krust_store::{MemoryConfig, MemoryStore, SqliteConfig, SqliteStore, Store};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let churn_writes = args.next().map(|s| s.parse()).transpose()?.unwrap_or(200_000);
    let dir = match args.next() {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let path = dir.path().join("bench.db");
    let opts = BenchOptions { churn_writes, db_path: Some(path.clone()), ..Default::default() };
    let mut config = SqliteConfig::new(&path);
    if let Some(max) = std::env::var("KRUST_BENCH_MAX_REVISIONS").ok().and_then(|s| s.parse().ok())
    {
        config.history.max_revisions = max;
    }
    if let Some(pages) =
        std::env::var("KRUST_BENCH_AUTOCHECKPOINT").ok().and_then(|s| s.parse().ok())
    {
        config.wal_autocheckpoint = pages;
    }
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(config)?);
    let report = run_store_bench(sqlite.clone(), "sqlite", &opts).await?;
    sqlite.shutdown().await?;
    println!("{report}");
    let memory: Arc<dyn Store> = Arc::new(MemoryStore::new(MemoryConfig {
        watch_buffer: 65_536,
        ..MemoryConfig::default()
    })?);
    let opts = BenchOptions { db_path: None, churn_writes: churn_writes.min(200_000), ..opts };
    let report = run_store_bench(memory.clone(), "memory", &opts).await?;
    memory.shutdown().await?;
    println!("{report}");
    Ok(())
}
