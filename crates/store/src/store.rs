//! The `Store` trait (etcd v3 semantics), its watch stream, and ergonomic helpers.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;
use crate::types::{
    Compare, CompareOp, DeleteRequest, KeyValue, LeaseId, PutRequest, RangeRequest, RangeResponse,
    Revision, TxnOp, TxnOpResponse, TxnRequest, TxnResponse, WatchRequest, WatchResponse,
};

/// A key-value store with etcd v3 semantics: a global revision bumped once per write
/// transaction, per-key create/mod revisions and versions, ranges at past revisions,
/// compare-and-swap transactions, watches from a revision with progress notifications,
/// compaction and leases.
///
/// Object safe: components hold an `Arc<dyn Store>`. Helpers live in [`StoreExt`].
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Reads a key or a range at the current or a past revision.
    ///
    /// Errors: [`Error::Compacted`](crate::Error::Compacted) for a revision below the
    /// compaction point, [`Error::FutureRevision`](crate::Error::FutureRevision) for one not
    /// yet written.
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse>;

    /// Runs a transaction atomically. Resolves once it is durable.
    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse>;

    /// Watches a key or range from `start_revision` (inclusive; 0 means from now).
    ///
    /// Events arrive in revision order without gaps or duplicates. A start revision below the
    /// compaction point fails with [`Error::Compacted`](crate::Error::Compacted), either here or
    /// as the stream's first (and last) item — callers must handle both. A watcher that cannot
    /// keep up gets every buffered event and then the terminal
    /// [`Error::WatchLagged`](crate::Error::WatchLagged).
    async fn watch(&self, req: WatchRequest) -> Result<WatchStream>;

    /// Discards the history below `revision`: ranges and watches at older revisions fail with
    /// [`Error::Compacted`](crate::Error::Compacted). The latest value of every key is kept.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// Grants a lease that expires after `ttl` unless kept alive; returns its id.
    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId>;

    /// Revokes a lease, deleting every key attached to it (one revision, delete events).
    async fn lease_revoke(&self, id: LeaseId) -> Result<()>;

    /// Restarts a lease's TTL; returns the TTL.
    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration>;

    /// The revision of the last write.
    async fn current_revision(&self) -> Result<Revision>;

    /// Flushes, stops background work and closes every watch (they end with
    /// [`Error::Closed`](crate::Error::Closed)). Later calls fail with `Error::Closed`.
    async fn shutdown(&self) -> Result<()>;
}

/// The backend side of a [`WatchStream`]. Implemented by each backend.
#[async_trait]
pub trait WatchSource: Send {
    /// The next response; `None` after the stream ended (after a terminal error, if any).
    /// Must be cancel-safe.
    async fn next(&mut self) -> Option<Result<WatchResponse>>;

    /// Asks for a progress notification: a response without events whose `header_revision`
    /// says every event up to it has been delivered.
    fn request_progress(&mut self);
}

/// A running watch. Dropping it cancels the watch.
pub struct WatchStream {
    source: Box<dyn WatchSource>,
}

impl WatchStream {
    /// Wraps a backend's watch source.
    pub fn new(source: Box<dyn WatchSource>) -> Self {
        WatchStream { source }
    }

    /// The next response: events in revision order, or a progress notification.
    /// `None` once the watch ended; a terminal error is delivered once before that.
    /// Cancel-safe: dropping the future (e.g. in `select!`) loses nothing.
    pub async fn next(&mut self) -> Option<Result<WatchResponse>> {
        self.source.next().await
    }

    /// Asks for a progress notification (delivered after every event already due).
    pub fn request_progress(&mut self) {
        self.source.request_progress();
    }
}

impl fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchStream").finish_non_exhaustive()
    }
}

/// Outcome of a conditional write ([`StoreExt::create`], [`StoreExt::update_if`],
/// [`StoreExt::delete_if`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The write happened at this revision.
    Applied {
        /// Revision of the write.
        revision: Revision,
    },
    /// The condition did not hold; `current` is the key as it is now (None if absent).
    Conflict {
        /// The key's current state.
        current: Option<KeyValue>,
    },
}

impl WriteOutcome {
    /// The revision of the write, if it happened.
    pub fn revision(&self) -> Option<Revision> {
        match self {
            WriteOutcome::Applied { revision } => Some(*revision),
            WriteOutcome::Conflict { .. } => None,
        }
    }
}

/// Convenience operations built on [`Store::range`] and [`Store::txn`]; available on every
/// store, including `dyn Store`.
#[async_trait]
pub trait StoreExt: Store {
    /// Reads one key at the current revision.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.range(RangeRequest::key(key)).await?.kvs.into_iter().next())
    }

    /// Reads every key under `prefix` at the current revision.
    async fn list(&self, prefix: &str) -> Result<RangeResponse> {
        self.range(RangeRequest::prefix(prefix)).await
    }

    /// Writes a key unconditionally; returns the write's revision.
    async fn put(&self, key: &str, value: Bytes) -> Result<Revision> {
        Ok(self.txn(TxnRequest::new().and_then([TxnOp::put(key, value)])).await?.header_revision)
    }

    /// Writes a key attached to a lease; returns the write's revision.
    async fn put_with_lease(&self, key: &str, value: Bytes, lease: LeaseId) -> Result<Revision> {
        let req = TxnRequest::new().and_then([TxnOp::put_with_lease(key, value, lease)]);
        Ok(self.txn(req).await?.header_revision)
    }

    /// Creates a key only if it does not exist.
    async fn create(&self, key: &str, value: Bytes, lease: LeaseId) -> Result<WriteOutcome> {
        let req = TxnRequest::new()
            .when([Compare::absent(key)])
            .and_then([TxnOp::put_with_lease(key, value, lease)])
            .or_else([TxnOp::get(key)]);
        Ok(outcome(self.txn(req).await?))
    }

    /// Replaces a key only if its mod revision is still `mod_revision` (compare-and-swap).
    async fn update_if(
        &self,
        key: &str,
        value: Bytes,
        mod_revision: Revision,
        lease: LeaseId,
    ) -> Result<WriteOutcome> {
        let req = TxnRequest::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, mod_revision)])
            .and_then([TxnOp::put_with_lease(key, value, lease)])
            .or_else([TxnOp::get(key)]);
        Ok(outcome(self.txn(req).await?))
    }

    /// Deletes a key only if its mod revision is still `mod_revision`.
    async fn delete_if(&self, key: &str, mod_revision: Revision) -> Result<WriteOutcome> {
        let req = TxnRequest::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, mod_revision)])
            .and_then([TxnOp::delete(key)])
            .or_else([TxnOp::get(key)]);
        Ok(outcome(self.txn(req).await?))
    }

    /// Deletes a key unconditionally; returns its previous value if it existed.
    async fn delete(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = self.txn(TxnRequest::new().and_then([TxnOp::delete(key)])).await?;
        Ok(match resp.responses.into_iter().next() {
            Some(TxnOpResponse::Delete(d)) => d.prev_kvs.into_iter().next(),
            _ => None,
        })
    }

    /// Deletes every key in `[key, range_end)`; returns how many were deleted.
    async fn delete_range(&self, key: &str, range_end: &str) -> Result<u64> {
        let op = TxnOp::Delete(DeleteRequest {
            key: key.to_string(),
            range_end: range_end.to_string(),
            prev_kv: false,
        });
        let resp = self.txn(TxnRequest::new().and_then([op])).await?;
        Ok(match resp.responses.into_iter().next() {
            Some(TxnOpResponse::Delete(d)) => d.deleted,
            _ => 0,
        })
    }

    /// Puts and returns the previous key-value.
    async fn put_prev(&self, key: &str, value: Bytes) -> Result<(Revision, Option<KeyValue>)> {
        let op = TxnOp::Put(PutRequest { key: key.to_string(), value, lease: 0, prev_kv: true });
        let resp = self.txn(TxnRequest::new().and_then([op])).await?;
        let prev = match resp.responses.into_iter().next() {
            Some(TxnOpResponse::Put(p)) => p.prev_kv,
            _ => None,
        };
        Ok((resp.header_revision, prev))
    }
}

impl<S: Store + ?Sized> StoreExt for S {}

fn outcome(resp: TxnResponse) -> WriteOutcome {
    if resp.succeeded {
        return WriteOutcome::Applied { revision: resp.header_revision };
    }
    let current = match resp.responses.into_iter().next() {
        Some(TxnOpResponse::Range(r)) => r.kvs.into_iter().next(),
        _ => None,
    };
    WriteOutcome::Conflict { current }
}
