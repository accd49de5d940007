//! Request and response types, kept close to etcd v3's `mvccpb`/`etcdserverpb` messages so that
//! an etcd backend maps them field by field (but they are our own types).
//!
//! Ranges follow etcd's conventions: `range_end` empty means the single key `key`;
//! `range_end == "\0"` means every key `>= key`; otherwise the half-open range
//! `[key, range_end)`. Keys are compared as UTF-8 bytes, which is Unicode code point order.

use bytes::Bytes;

/// A store revision: a global counter bumped once by every write transaction.
pub type Revision = i64;

/// A lease id; 0 means "no lease".
pub type LeaseId = i64;

/// Largest accepted value, in bytes: etcd's default request size limit (1.5 MiB).
pub const MAX_VALUE_SIZE: usize = 1_572_864;

/// The `range_end` that means "every key from `key` on".
pub const RANGE_END_ALL: &str = "\0";

/// One key at one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value (empty for `keys_only` ranges and for delete events).
    pub value: Bytes,
    /// Revision of the put that created the key (after its last delete).
    pub create_revision: Revision,
    /// Revision of the last modification of the key.
    pub mod_revision: Revision,
    /// Number of puts since the key was created: 1 on create, 0 once deleted.
    pub version: i64,
    /// Lease attached to the key, 0 for none.
    pub lease: LeaseId,
}

/// The smallest key greater than every key starting with `prefix`, to use as `range_end`.
///
/// Works on characters rather than bytes so that the result is always valid UTF-8; the set of
/// (UTF-8) keys in `[prefix, prefix_end(prefix))` is exactly the set of keys starting with
/// `prefix`, as with etcd's byte-wise `GetPrefixRangeEnd`. An empty prefix gives
/// [`RANGE_END_ALL`].
pub fn prefix_end(prefix: &str) -> String {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return chars.into_iter().collect();
        }
    }
    RANGE_END_ALL.to_string()
}

/// Whether `key` is in the range described by (`start`, `range_end`) with etcd's conventions.
pub fn in_range(key: &str, start: &str, range_end: &str) -> bool {
    if range_end.is_empty() {
        key == start
    } else if range_end == RANGE_END_ALL {
        key >= start
    } else {
        key >= start && key < range_end
    }
}

/// Read keys, at the current revision or at a past one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRequest {
    /// First key (or the only key when `range_end` is empty).
    pub key: String,
    /// End of the range (exclusive); see the module docs for the special values.
    pub range_end: String,
    /// Revision to read at; 0 (or less) means the current revision.
    pub revision: Revision,
    /// Maximum number of keys returned; 0 means no limit.
    pub limit: u64,
    /// Return keys and metadata without values.
    pub keys_only: bool,
    /// Return only the count.
    pub count_only: bool,
}

impl RangeRequest {
    /// Reads one key.
    pub fn key(key: impl Into<String>) -> Self {
        RangeRequest { key: key.into(), ..Default::default() }
    }

    /// Reads every key starting with `prefix`.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        let key = prefix.into();
        let range_end = prefix_end(&key);
        RangeRequest { key, range_end, ..Default::default() }
    }

    /// Reads the keys in `[start, end)`.
    pub fn range(start: impl Into<String>, end: impl Into<String>) -> Self {
        RangeRequest { key: start.into(), range_end: end.into(), ..Default::default() }
    }

    /// Reads at `revision` instead of the current revision.
    pub fn at_revision(mut self, revision: Revision) -> Self {
        self.revision = revision;
        self
    }

    /// Returns at most `limit` keys (`more` tells whether there were more).
    pub fn with_limit(mut self, limit: u64) -> Self {
        self.limit = limit;
        self
    }

    /// Leaves values out.
    pub fn keys_only(mut self) -> Self {
        self.keys_only = true;
        self
    }

    /// Returns only the count.
    pub fn count_only(mut self) -> Self {
        self.count_only = true;
        self
    }

    /// The request for the next page after `last_key`: same range, same revision.
    pub fn continue_after(&self, last_key: &str, revision: Revision) -> Self {
        let mut next = self.clone();
        next.key = format!("{last_key}\0");
        next.revision = revision;
        next
    }
}

/// Answer to a [`RangeRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResponse {
    /// The store's current revision when the request was served (not the requested one).
    pub header_revision: Revision,
    /// The keys, in key order (empty for `count_only`).
    pub kvs: Vec<KeyValue>,
    /// True when `limit` cut the result short.
    pub more: bool,
    /// Number of keys in the range at the requested revision, regardless of `limit`.
    pub count: u64,
}

/// Write one key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutRequest {
    /// The key; must not be empty.
    pub key: String,
    /// The value; at most [`MAX_VALUE_SIZE`] bytes.
    pub value: Bytes,
    /// Lease to attach (0 for none); must be alive.
    pub lease: LeaseId,
    /// Return the previous key-value in the response.
    pub prev_kv: bool,
}

/// Delete one key or a range of keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRequest {
    /// First key (or the only key when `range_end` is empty).
    pub key: String,
    /// End of the range; same conventions as [`RangeRequest::range_end`].
    pub range_end: String,
    /// Return the deleted key-values in the response.
    pub prev_kv: bool,
}

/// One operation of a transaction branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOp {
    /// Write a key.
    Put(PutRequest),
    /// Delete a key or range.
    Delete(DeleteRequest),
    /// Read (sees the writes of earlier operations of the same transaction).
    Range(RangeRequest),
}

impl TxnOp {
    /// Put `value` at `key` without a lease.
    pub fn put(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        TxnOp::Put(PutRequest { key: key.into(), value: value.into(), ..Default::default() })
    }

    /// Put `value` at `key` attached to `lease`.
    pub fn put_with_lease(key: impl Into<String>, value: impl Into<Bytes>, lease: LeaseId) -> Self {
        TxnOp::Put(PutRequest { key: key.into(), value: value.into(), lease, prev_kv: false })
    }

    /// Delete `key`, returning its previous value.
    pub fn delete(key: impl Into<String>) -> Self {
        TxnOp::Delete(DeleteRequest { key: key.into(), range_end: String::new(), prev_kv: true })
    }

    /// Read `key`.
    pub fn get(key: impl Into<String>) -> Self {
        TxnOp::Range(RangeRequest::key(key))
    }
}

/// What a [`Compare`] looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompareTarget {
    /// The key's version (0 when absent).
    Version(i64),
    /// The key's create revision (0 when absent).
    CreateRevision(Revision),
    /// The key's mod revision (0 when absent).
    ModRevision(Revision),
    /// The key's value (a compare on the value of an absent key is false, as in etcd).
    Value(Bytes),
    /// The key's lease (0 when absent or without lease).
    Lease(LeaseId),
}

/// How a [`Compare`] compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
    /// `<`
    Less,
    /// `>`
    Greater,
}

/// One guard of a transaction, on a single key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    /// The key.
    pub key: String,
    /// The field and the value to compare it with.
    pub target: CompareTarget,
    /// The comparison.
    pub op: CompareOp,
}

impl Compare {
    /// `mod_revision(key) <op> revision`.
    pub fn mod_revision(key: impl Into<String>, op: CompareOp, revision: Revision) -> Self {
        Compare { key: key.into(), target: CompareTarget::ModRevision(revision), op }
    }

    /// `create_revision(key) <op> revision`.
    pub fn create_revision(key: impl Into<String>, op: CompareOp, revision: Revision) -> Self {
        Compare { key: key.into(), target: CompareTarget::CreateRevision(revision), op }
    }

    /// `version(key) <op> version`.
    pub fn version(key: impl Into<String>, op: CompareOp, version: i64) -> Self {
        Compare { key: key.into(), target: CompareTarget::Version(version), op }
    }

    /// `value(key) <op> value`.
    pub fn value(key: impl Into<String>, op: CompareOp, value: impl Into<Bytes>) -> Self {
        Compare { key: key.into(), target: CompareTarget::Value(value.into()), op }
    }

    /// `lease(key) <op> lease`.
    pub fn lease(key: impl Into<String>, op: CompareOp, lease: LeaseId) -> Self {
        Compare { key: key.into(), target: CompareTarget::Lease(lease), op }
    }

    /// The key does not exist.
    pub fn absent(key: impl Into<String>) -> Self {
        Self::create_revision(key, CompareOp::Equal, 0)
    }

    /// The key exists.
    pub fn exists(key: impl Into<String>) -> Self {
        Self::create_revision(key, CompareOp::Greater, 0)
    }

    /// Evaluates the compare against the key's current state (`None` when absent).
    pub fn matches(&self, kv: Option<&KeyValue>) -> bool {
        use std::cmp::Ordering;
        let ordering: Ordering = match (&self.target, kv) {
            (CompareTarget::Value(_), None) => return false,
            (CompareTarget::Value(v), Some(kv)) => kv.value.as_ref().cmp(v.as_ref()),
            (CompareTarget::Version(v), kv) => kv.map_or(0, |kv| kv.version).cmp(v),
            (CompareTarget::CreateRevision(v), kv) => kv.map_or(0, |kv| kv.create_revision).cmp(v),
            (CompareTarget::ModRevision(v), kv) => kv.map_or(0, |kv| kv.mod_revision).cmp(v),
            (CompareTarget::Lease(v), kv) => kv.map_or(0, |kv| kv.lease).cmp(v),
        };
        match self.op {
            CompareOp::Equal => ordering == Ordering::Equal,
            CompareOp::NotEqual => ordering != Ordering::Equal,
            CompareOp::Less => ordering == Ordering::Less,
            CompareOp::Greater => ordering == Ordering::Greater,
        }
    }
}

/// A transaction: if every compare holds, run `success`, else run `failure`.
/// A transaction that writes anything bumps the revision exactly once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnRequest {
    /// Guards, all of which must hold.
    pub compare: Vec<Compare>,
    /// Operations run when every compare holds.
    pub success: Vec<TxnOp>,
    /// Operations run otherwise.
    pub failure: Vec<TxnOp>,
}

impl TxnRequest {
    /// An empty transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds guards.
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Self {
        self.compare.extend(compares);
        self
    }

    /// Adds operations to the success branch.
    pub fn and_then(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.success.extend(ops);
        self
    }

    /// Adds operations to the failure branch.
    pub fn or_else(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.failure.extend(ops);
        self
    }
}

/// Answer to a put.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutResponse {
    /// The previous key-value, if asked for and the key existed.
    pub prev_kv: Option<KeyValue>,
}

/// Answer to a delete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteResponse {
    /// How many keys were deleted.
    pub deleted: u64,
    /// The deleted key-values, if asked for.
    pub prev_kvs: Vec<KeyValue>,
}

/// Answer to one [`TxnOp`], in the same position as the op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnOpResponse {
    /// Answer to a put.
    Put(PutResponse),
    /// Answer to a delete.
    Delete(DeleteResponse),
    /// Answer to a range.
    Range(RangeResponse),
}

/// Answer to a [`TxnRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether the compares held (and `success` ran).
    pub succeeded: bool,
    /// The revision after the transaction: its own revision if it wrote anything.
    pub header_revision: Revision,
    /// One answer per operation of the branch that ran.
    pub responses: Vec<TxnOpResponse>,
}

/// Watch a key or a range from a revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchRequest {
    /// First key (or the only key when `range_end` is empty).
    pub key: String,
    /// End of the range; same conventions as [`RangeRequest::range_end`].
    pub range_end: String,
    /// First revision to deliver (inclusive); 0 means "from now" (the next write).
    pub start_revision: Revision,
    /// Include the previous key-value in every event.
    pub prev_kv: bool,
    /// Send progress notifications (responses without events) when idle.
    pub progress_notify: bool,
}

impl WatchRequest {
    /// Watches one key.
    pub fn key(key: impl Into<String>) -> Self {
        WatchRequest { key: key.into(), ..Default::default() }
    }

    /// Watches every key starting with `prefix`.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        let key = prefix.into();
        let range_end = prefix_end(&key);
        WatchRequest { key, range_end, ..Default::default() }
    }

    /// Watches the keys in `[key, range_end)`.
    pub fn range(key: impl Into<String>, range_end: impl Into<String>) -> Self {
        WatchRequest { key: key.into(), range_end: range_end.into(), ..Default::default() }
    }

    /// Starts at `revision` (inclusive) instead of now.
    pub fn from_revision(mut self, revision: Revision) -> Self {
        self.start_revision = revision;
        self
    }

    /// Includes previous key-values.
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }

    /// Asks for periodic progress notifications.
    pub fn with_progress_notify(mut self) -> Self {
        self.progress_notify = true;
        self
    }
}

/// Kind of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A key was created or updated.
    Put,
    /// A key was deleted (`kv` holds the key and the deletion's revision as `mod_revision`).
    Delete,
}

/// One change of one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key-value after the change.
    pub kv: KeyValue,
    /// The key-value before the change, when asked for and still in history.
    pub prev_kv: Option<KeyValue>,
}

/// One message on a watch: events (in revision order) or a progress notification.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchResponse {
    /// Every event with a revision `<=` this has been delivered to this watcher.
    pub header_revision: Revision,
    /// The events; empty for a progress notification.
    pub events: Vec<Event>,
}

impl WatchResponse {
    /// Whether this is a progress notification (no events).
    pub fn is_progress_notify(&self) -> bool {
        self.events.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_smallest_upper_bound() {
        assert_eq!(prefix_end("/registry/pods/"), "/registry/pods0");
        assert_eq!(prefix_end(""), RANGE_END_ALL);
        assert_eq!(prefix_end("a\u{D7FF}"), "a\u{E000}");
        assert_eq!(prefix_end("ab\u{10FFFF}"), "ac");
        assert_eq!(prefix_end("\u{10FFFF}"), RANGE_END_ALL);
        let end = prefix_end("/é/");
        assert!(in_range("/é/x", "/é/", &end));
        assert!(!in_range("/é0", "/é/", &end));
    }

    #[test]
    fn compare_on_absent_keys_uses_zero_except_for_values() {
        assert!(Compare::absent("k").matches(None));
        assert!(!Compare::value("k", CompareOp::NotEqual, "x").matches(None));
        assert!(Compare::mod_revision("k", CompareOp::Less, 1).matches(None));
    }
}
