//! krust's storage: a key-value [`Store`] with etcd v3 semantics — a global revision, per-key
//! create/mod revisions and versions, ranges at past revisions with limits and counts,
//! compare-and-swap transactions, watches from a revision with progress notifications,
//! compaction and leases — and its backends: [`memory`] (tests), [`sqlite`] (the embedded
//! default: one writer thread with group commit, durable on acknowledgement, bounded history)
//! and [`etcd`] (an etcd v3 cluster, for control planes that outgrow one machine).
//!
//! Entry points: [`open`] (or [`open_async`], needed for etcd) with a [`BackendConfig`]
//! returns an `Arc<dyn Store>`; [`StoreExt`] adds `get`/`put`/`create`/`update_if`/`delete_if`
//! on top of [`Store::range`] and [`Store::txn`].
//!
//! The store never interprets values (they are opaque bytes to it), never acknowledges a write
//! before it is durable, never blocks a writer on a slow watcher, and never drops an event
//! without ending that watch with an error.
//!
//! Choices where etcd leaves room:
//! - An empty store is at revision 1; the first write gets revision 2 (as in etcd).
//! - A watcher whose buffer fills up is closed: it receives every buffered event and then
//!   [`Error::WatchLagged`], and must re-list (the API server turns this into a new list+watch).
//! - A watch from a compacted revision fails with [`Error::Compacted`], from `watch()` itself in
//!   the local backends (a remote backend may report it as the stream's first item instead).
//! - Leases are persisted as id + TTL; on reopen each gets its full TTL again, as etcd does on
//!   a leader change.
//! - Values over [`MAX_VALUE_SIZE`] (1.5 MiB, etcd's default request limit) are refused.

pub mod bench;
mod error;
pub mod etcd;
pub mod memory;
mod mvcc;
pub mod sqlite;
mod store;
mod types;
mod watch;

use std::sync::Arc;

pub use error::{Error, Result, SourceError};
pub use etcd::{EtcdConfig, EtcdStore};
pub use memory::{MemoryConfig, MemoryStore};
pub use sqlite::{HistoryConfig, SqliteConfig, SqliteStore};
pub use store::{Store, StoreExt, WatchSource, WatchStream, WriteOutcome};
pub use types::{
    Compare, CompareOp, CompareTarget, DeleteRequest, DeleteResponse, Event, EventKind, KeyValue,
    LeaseId, MAX_VALUE_SIZE, PutRequest, PutResponse, RANGE_END_ALL, RangeRequest, RangeResponse,
    Revision, TxnOp, TxnOpResponse, TxnRequest, TxnResponse, WatchRequest, WatchResponse, in_range,
    prefix_end,
};

/// Which backend to open, with its settings.
#[derive(Clone, Debug)]
pub enum BackendConfig {
    /// In memory, lost on exit.
    Memory(MemoryConfig),
    /// SQLite file (the default).
    Sqlite(SqliteConfig),
    /// An etcd v3 cluster; needs [`open_async`] (connecting is async).
    Etcd(EtcdConfig),
}

/// Opens a local store (memory or sqlite). An etcd backend needs a connection: use
/// [`open_async`]; here it fails with [`Error::InvalidArgument`].
pub fn open(config: BackendConfig) -> Result<Arc<dyn Store>> {
    Ok(match config {
        BackendConfig::Memory(config) => Arc::new(MemoryStore::new(config)?),
        BackendConfig::Sqlite(config) => Arc::new(SqliteStore::open(config)?),
        BackendConfig::Etcd(_) => {
            return Err(Error::invalid("the etcd backend connects asynchronously: use open_async"));
        }
    })
}

/// Opens any store, connecting to etcd for [`BackendConfig::Etcd`] (call it from the
/// binary's tokio runtime: `krust_store::open_async(config).await?`).
pub async fn open_async(config: BackendConfig) -> Result<Arc<dyn Store>> {
    Ok(match config {
        BackendConfig::Etcd(config) => Arc::new(EtcdStore::connect(config).await?),
        local => open(local)?,
    })
}
