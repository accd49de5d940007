//! The store's error type.
//!
//! Every variant is something a caller can act on: the API server maps `Compacted` to
//! `410 Expired`, `ValueTooLarge` to `413`, conflicts are not errors at all (a failed
//! compare is a `TxnResponse` with `succeeded == false`).

use std::sync::Arc;

/// A boxed, shareable source error (one failed group commit fails many callers with it).
pub type SourceError = Arc<dyn std::error::Error + Send + Sync>;

/// Result of every store operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a store operation.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The requested revision is older than the compaction point: its history is gone.
    /// A watch or list must start again from a fresh list (Kubernetes: 410 Expired).
    #[error("required revision {requested} has been compacted (compacted up to {compacted})")]
    Compacted {
        /// The revision the caller asked for.
        requested: i64,
        /// The oldest revision still available; 0 when the backend cannot tell (etcd reports it
        /// on watches but not on ranges).
        compacted: i64,
    },

    /// The requested revision has not been written yet.
    #[error("required revision {requested} is a future revision (current revision {current})")]
    FutureRevision {
        /// The revision the caller asked for.
        requested: i64,
        /// The store's revision when the request was served; 0 when the backend cannot tell.
        current: i64,
    },

    /// A value is larger than [`crate::MAX_VALUE_SIZE`] (etcd's default request limit).
    #[error("value for key {key:?} is {size} bytes, over the limit of {limit} bytes")]
    ValueTooLarge {
        /// The key being written.
        key: String,
        /// Size of the refused value in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },

    /// The lease does not exist: never granted, revoked, or expired.
    #[error("lease {id} not found (never granted, revoked or expired)")]
    LeaseNotFound {
        /// The lease id.
        id: i64,
    },

    /// The request itself is malformed (empty key, the same key written twice in a txn, ...).
    #[error("invalid request: {reason}")]
    InvalidArgument {
        /// What is wrong with it.
        reason: String,
    },

    /// The watcher fell behind: its buffer filled up and the store stopped it rather than
    /// blocking writers or dropping events. Every event up to `revision` was delivered; the
    /// client must list again and watch from the list's revision.
    #[error("watch closed: the watcher fell behind after revision {revision}; list again")]
    WatchLagged {
        /// The last revision delivered to this watcher.
        revision: i64,
    },

    /// The disk (or the database) is full. The write was not applied; writes that were
    /// acknowledged before are intact and writing resumes once space is available.
    #[error("database or disk is full")]
    DiskFull {
        /// The storage engine's error.
        #[source]
        source: SourceError,
    },

    /// The storage engine failed (I/O error, corruption, ...). The operation was not applied.
    #[error("storage error while {context}")]
    Storage {
        /// What the store was doing.
        context: String,
        /// The storage engine's error.
        #[source]
        source: SourceError,
    },

    /// The store has been shut down (or its writer stopped); nothing more can be done with it.
    #[error("store is closed")]
    Closed,
}

impl Error {
    /// True for failures of the storage engine itself (as opposed to a refused request).
    pub fn is_storage(&self) -> bool {
        match self {
            Error::DiskFull { .. } | Error::Storage { .. } | Error::Closed => true,
            Error::Compacted { .. }
            | Error::FutureRevision { .. }
            | Error::ValueTooLarge { .. }
            | Error::LeaseNotFound { .. }
            | Error::InvalidArgument { .. }
            | Error::WatchLagged { .. } => false,
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Error::InvalidArgument { reason: reason.into() }
    }
}
