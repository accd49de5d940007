//! Runs the store benchmark on a fresh local etcd (started and killed by the example), with
//! the sqlite store in the same run for reference.
//!
//! `cargo run --release -p krust-store --example etcd_bench -- [churn_writes] [dir]`
//! (needs Debian's `etcd-server`).

use std::sync::Arc;

use krust_store::bench::{BenchOptions, run_store_bench};
use krust_store::etcd::{LocalEtcdOptions, spawn_local_etcd};
use krust_store::{EtcdConfig, EtcdStore, SqliteConfig, SqliteStore, Store};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let churn_writes = args.next().map(|s| s.parse()).transpose()?.unwrap_or(100_000);
    let dir = match args.next() {
        Some(dir) => tempfile::tempdir_in(dir)?,
        None => tempfile::tempdir()?,
    };
    let options = LocalEtcdOptions {
        auto_compaction_revisions: Some(100_000),
        ..LocalEtcdOptions::default()
    };
    let etcd = spawn_local_etcd(&dir.path().join("etcd"), &options).await?;
    let store: Arc<dyn Store> =
        Arc::new(EtcdStore::connect(EtcdConfig::new([etcd.client_url()])).await?);
    let opts = BenchOptions {
        churn_writes,
        db_path: Some(etcd.data_dir().join("member/snap/db")),
        ..Default::default()
    };
    let report = run_store_bench(store.clone(), "etcd", &opts).await?;
    store.shutdown().await?;
    drop(etcd);
    println!("{report}");

    let path = dir.path().join("bench.db");
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(SqliteConfig::new(&path))?);
    let opts = BenchOptions { db_path: Some(path), ..opts };
    let report = run_store_bench(sqlite.clone(), "sqlite", &opts).await?;
    sqlite.shutdown().await?;
    println!("{report}");
    Ok(())
}
