//! The etcd v3 write semantics, written once for every local backend: request validation,
//! compare evaluation, version/create-revision bookkeeping, delete ranges, lease attachment.
//! A backend provides the [`Backing`] (where rows live); this module decides what to write.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::types::{
    DeleteResponse, Event, EventKind, KeyValue, LeaseId, MAX_VALUE_SIZE, PutResponse, RangeRequest,
    RangeResponse, Revision, TxnOp, TxnOpResponse, TxnRequest, TxnResponse, in_range,
};

/// Where a backend keeps its rows. Reads see every write made earlier through the same backing
/// (earlier operations of the transaction and earlier transactions of the same batch).
pub(crate) trait Backing {
    /// The key's latest state, `None` if absent or deleted.
    fn latest(&mut self, key: &str) -> Result<Option<KeyValue>>;
    /// Every live key in the range, latest state, in key order.
    fn live_range(&mut self, key: &str, range_end: &str) -> Result<Vec<KeyValue>>;
    /// A range read at `revision` (already resolved and checked against compaction).
    fn range_at(&mut self, req: &RangeRequest, revision: Revision) -> Result<RangeResponse>;
    /// Appends a row: a put (`deleted == false`) or a tombstone.
    fn write(&mut self, revision: Revision, kv: &KeyValue, deleted: bool) -> Result<()>;
    /// The compaction point.
    fn compact_revision(&self) -> Revision;
}

/// Checks what can be checked without state: keys, value sizes, duplicate writes.
pub(crate) fn validate_txn(req: &TxnRequest) -> Result<()> {
    for cmp in &req.compare {
        if cmp.key.is_empty() {
            return Err(Error::invalid("compare with an empty key"));
        }
    }
    for branch in [&req.success, &req.failure] {
        let mut written: Vec<(&str, &str)> = Vec::new();
        for op in branch {
            match op {
                TxnOp::Put(put) => {
                    if put.key.is_empty() {
                        return Err(Error::invalid("put with an empty key"));
                    }
                    if put.value.len() > MAX_VALUE_SIZE {
                        return Err(Error::ValueTooLarge {
                            key: put.key.clone(),
                            size: put.value.len(),
                            limit: MAX_VALUE_SIZE,
                        });
                    }
                    if put.lease < 0 {
                        return Err(Error::invalid("negative lease id"));
                    }
                    written.push((&put.key, ""));
                }
                TxnOp::Delete(del) => {
                    if del.key.is_empty() {
                        return Err(Error::invalid("delete with an empty key"));
                    }
                    written.push((&del.key, &del.range_end));
                }
                TxnOp::Range(range) => {
                    if range.key.is_empty() {
                        return Err(Error::invalid("range with an empty key"));
                    }
                }
            }
        }
        // etcd refuses a txn that writes a key twice (its revision would be ambiguous).
        for (i, (key, end)) in written.iter().enumerate() {
            for (other, other_end) in &written[i + 1..] {
                if ranges_overlap(key, end, other, other_end) {
                    return Err(Error::invalid(format!("duplicate key {key:?} in txn")));
                }
            }
        }
    }
    Ok(())
}

fn ranges_overlap(a: &str, a_end: &str, b: &str, b_end: &str) -> bool {
    if a_end.is_empty() {
        return in_range(a, b, b_end);
    }
    if b_end.is_empty() {
        return in_range(b, a, a_end);
    }
    // Two delete ranges may overlap: etcd allows that.
    false
}

/// Resolves the revision a range reads at and checks it against compaction and the present.
pub(crate) fn resolve_read_revision(
    requested: Revision,
    current: Revision,
    compacted: Revision,
) -> Result<Revision> {
    if requested <= 0 {
        return Ok(current);
    }
    if requested < compacted {
        return Err(Error::Compacted { requested, compacted });
    }
    if requested > current {
        return Err(Error::FutureRevision { requested, current });
    }
    Ok(requested)
}

/// Builds a range response from the live keys at the read revision, in key order.
pub(crate) struct RangeCollector<'a> {
    req: &'a RangeRequest,
    resp: RangeResponse,
}

impl<'a> RangeCollector<'a> {
    pub(crate) fn new(req: &'a RangeRequest, header_revision: Revision) -> Self {
        RangeCollector { req, resp: RangeResponse { header_revision, ..Default::default() } }
    }

    pub(crate) fn full(&self) -> bool {
        self.req.count_only || (self.req.limit > 0 && self.resp.kvs.len() as u64 >= self.req.limit)
    }

    pub(crate) fn push(&mut self, mut kv: KeyValue) {
        self.resp.count += 1;
        if self.full() {
            if !self.req.count_only {
                self.resp.more = true;
            }
            return;
        }
        if self.req.keys_only {
            kv.value = bytes::Bytes::new();
        }
        self.resp.kvs.push(kv);
    }

    /// Adds keys that were counted without being read.
    pub(crate) fn add_uncollected(&mut self, n: u64) {
        self.resp.count += n;
        if n > 0 && !self.req.count_only {
            self.resp.more = true;
        }
    }

    pub(crate) fn finish(self) -> RangeResponse {
        self.resp
    }
}

/// A write transaction's effect, once applied to a backing.
#[derive(Debug)]
pub(crate) struct Applied {
    pub(crate) response: TxnResponse,
    pub(crate) events: Vec<Event>,
}

/// Applies `req` on top of revision `current`. On error nothing has been written (everything
/// that can be refused is checked before the first write), except for storage errors, after
/// which the backend must roll back its whole batch.
pub(crate) fn apply_txn(
    backing: &mut impl Backing,
    leases: &mut LeaseTable,
    now: Instant,
    req: &TxnRequest,
    current: Revision,
) -> Result<Applied> {
    validate_txn(req)?;
    let mut succeeded = true;
    for cmp in &req.compare {
        let kv = backing.latest(&cmp.key)?;
        if !cmp.matches(kv.as_ref()) {
            succeeded = false;
            break;
        }
    }
    let ops = if succeeded { &req.success } else { &req.failure };
    // Refuse before writing anything.
    for op in ops {
        match op {
            TxnOp::Put(put) if put.lease != 0 => leases.check(put.lease, now)?,
            TxnOp::Range(range) if range.revision > 0 => {
                resolve_read_revision(range.revision, current, backing.compact_revision())?;
            }
            _ => {}
        }
    }

    let revision = current + 1;
    let mut wrote = false;
    let mut events = Vec::new();
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            TxnOp::Put(put) => {
                let prev = backing.latest(&put.key)?;
                let kv = KeyValue {
                    key: put.key.clone(),
                    value: put.value.clone(),
                    create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
                    mod_revision: revision,
                    version: prev.as_ref().map_or(1, |p| p.version + 1),
                    lease: put.lease,
                };
                backing.write(revision, &kv, false)?;
                wrote = true;
                leases.attach(&kv.key, prev.as_ref().map_or(0, |p| p.lease), kv.lease);
                responses.push(TxnOpResponse::Put(PutResponse {
                    prev_kv: if put.prev_kv { prev.clone() } else { None },
                }));
                events.push(Event { kind: EventKind::Put, kv, prev_kv: prev });
            }
            TxnOp::Delete(del) => {
                let victims = if del.range_end.is_empty() {
                    backing.latest(&del.key)?.into_iter().collect()
                } else {
                    backing.live_range(&del.key, &del.range_end)?
                };
                let mut resp = DeleteResponse::default();
                for prev in victims {
                    let tombstone = tombstone(&prev.key, revision);
                    backing.write(revision, &tombstone, true)?;
                    wrote = true;
                    leases.attach(&prev.key, prev.lease, 0);
                    resp.deleted += 1;
                    if del.prev_kv {
                        resp.prev_kvs.push(prev.clone());
                    }
                    events.push(Event {
                        kind: EventKind::Delete,
                        kv: tombstone,
                        prev_kv: Some(prev),
                    });
                }
                responses.push(TxnOpResponse::Delete(resp));
            }
            TxnOp::Range(range) => {
                let at = if range.revision > 0 {
                    range.revision
                } else if wrote {
                    revision
                } else {
                    current
                };
                let mut resp = backing.range_at(range, at)?;
                resp.header_revision = if wrote { revision } else { current };
                responses.push(TxnOpResponse::Range(resp));
            }
        }
    }
    let header_revision = if wrote { revision } else { current };
    for resp in &mut responses {
        if let TxnOpResponse::Range(r) = resp {
            r.header_revision = header_revision;
        }
    }
    Ok(Applied { response: TxnResponse { succeeded, header_revision, responses }, events })
}

/// The delete-event key-value of `key` deleted at `revision` (as etcd reports it).
pub(crate) fn tombstone(key: &str, revision: Revision) -> KeyValue {
    KeyValue { key: key.to_string(), mod_revision: revision, ..Default::default() }
}

/// Revokes lease `id`: deletes every key still attached to it (one revision) and forgets it.
pub(crate) fn apply_revoke(
    backing: &mut impl Backing,
    leases: &mut LeaseTable,
    id: LeaseId,
    current: Revision,
) -> Result<Applied> {
    let Some(keys) = leases.keys(id) else {
        return Err(Error::LeaseNotFound { id });
    };
    let mut ops = Vec::new();
    for key in keys {
        if let Some(kv) = backing.latest(&key)?
            && kv.lease == id
        {
            ops.push(TxnOp::delete(kv.key));
        }
    }
    let mut never_expires = LeaseTable::default();
    let applied = apply_txn(
        backing,
        &mut never_expires,
        Instant::now(),
        &TxnRequest::new().and_then(ops),
        current,
    )?;
    leases.remove(id);
    Ok(applied)
}

/// Longest accepted lease TTL (longer ones are clamped): a year.
const MAX_LEASE_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Live leases: TTLs, deadlines and the keys attached to each. Kept in memory by every local
/// backend (the sqlite backend persists ids and TTLs and re-arms full TTLs on open).
#[derive(Debug, Default)]
pub(crate) struct LeaseTable {
    leases: HashMap<LeaseId, Lease>,
    next_id: LeaseId,
}

#[derive(Debug)]
struct Lease {
    ttl: Duration,
    deadline: Instant,
    keys: BTreeSet<String>,
}

impl LeaseTable {
    pub(crate) fn with_next_id(next_id: LeaseId) -> Self {
        LeaseTable { leases: HashMap::new(), next_id: next_id.max(1) }
    }

    pub(crate) fn next_id(&self) -> LeaseId {
        self.next_id.max(1)
    }

    pub(crate) fn grant(&mut self, ttl: Duration, now: Instant) -> LeaseId {
        let id = self.next_id();
        self.next_id = id + 1;
        self.insert(id, ttl, now);
        id
    }

    /// Registers a lease with a known id (reopening a store).
    pub(crate) fn insert(&mut self, id: LeaseId, ttl: Duration, now: Instant) {
        self.next_id = self.next_id.max(id + 1);
        // Clamped so that the deadline arithmetic cannot overflow.
        let ttl = ttl.min(MAX_LEASE_TTL);
        let deadline = now.checked_add(ttl).unwrap_or(now);
        self.leases.insert(id, Lease { ttl, deadline, keys: BTreeSet::new() });
    }

    /// The lease exists and has not expired.
    pub(crate) fn check(&self, id: LeaseId, now: Instant) -> Result<()> {
        match self.leases.get(&id) {
            Some(lease) if lease.deadline > now => Ok(()),
            _ => Err(Error::LeaseNotFound { id }),
        }
    }

    pub(crate) fn keep_alive(&mut self, id: LeaseId, now: Instant) -> Result<Duration> {
        match self.leases.get_mut(&id) {
            Some(lease) if lease.deadline > now => {
                lease.deadline = now.checked_add(lease.ttl).unwrap_or(lease.deadline);
                Ok(lease.ttl)
            }
            _ => Err(Error::LeaseNotFound { id }),
        }
    }

    /// Moves `key` from lease `old` to lease `new` (either may be 0).
    pub(crate) fn attach(&mut self, key: &str, old: LeaseId, new: LeaseId) {
        if old == new {
            return;
        }
        if old != 0
            && let Some(lease) = self.leases.get_mut(&old)
        {
            lease.keys.remove(key);
        }
        if new != 0
            && let Some(lease) = self.leases.get_mut(&new)
        {
            lease.keys.insert(key.to_string());
        }
    }

    pub(crate) fn keys(&self, id: LeaseId) -> Option<Vec<String>> {
        self.leases.get(&id).map(|l| l.keys.iter().cloned().collect())
    }

    pub(crate) fn remove(&mut self, id: LeaseId) {
        self.leases.remove(&id);
    }

    pub(crate) fn expired(&self, now: Instant) -> Vec<LeaseId> {
        let mut ids: Vec<LeaseId> =
            self.leases.iter().filter(|(_, l)| l.deadline <= now).map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.leases.values().map(|l| l.deadline).min()
    }
}
