//! etcd backend: the [`Store`] trait over etcd v3's gRPC API, for clusters that outgrow one
//! machine (a 3-member etcd cluster survives the loss of one member).
//!
//! Entry point: [`EtcdStore::connect`] (async: it dials the endpoints and checks that the cluster
//! answers) or [`crate::open_async`] with [`crate::BackendConfig::Etcd`]. [`spawn_local_etcd`]
//! starts a throw-away etcd on loopback for tests and benchmarks.
//!
//! etcd already has the semantics of [`Store`], so this module only translates: keys are
//! prefixed with [`EtcdConfig::key_prefix`] on the way in and stripped on the way out (so several
//! stores can share one etcd), requests are checked client-side like the local backends do
//! (empty keys, a key written twice in a transaction, values over [`crate::MAX_VALUE_SIZE`]), and
//! etcd's errors become [`Error`] variants. It never interprets values and never retries a write
//! (a write whose outcome is unknown fails with [`Error::Storage`]).
//!
//! Differences from the local backends, all allowed by the trait:
//! - A range below the compaction point fails with `Compacted { compacted: 0 }`: etcd does not
//!   say where the compaction point is. Watches do get it (`compact_revision`).
//! - A watch from a compacted revision fails as the stream's first item, not from `watch()`.
//! - Periodic progress notifications come from the server, every
//!   `--experimental-watch-progress-notify-interval` (etcd's default is 10 minutes;
//!   [`LocalEtcdOptions::progress_notify_interval`] sets it for a local etcd).
//! - Lease TTLs are whole seconds (rounded up), and etcd raises TTLs below its minimum
//!   (1.5 × election timeout, 2 s with default settings).
//! - A watcher that falls behind is not closed with `WatchLagged`: etcd keeps it and replays
//!   from history, or cancels it with `Compacted` if that history was compacted meanwhile.
//! - etcd before 3.4.24/3.5.8 may answer a progress *request* before events that were already
//!   queued for the watch (etcd-io/etcd#15220); periodic notifications are not affected.

mod process;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::proto::{PbKeyValue, PbRangeResponse, PbTxnOpResponse};
use etcd_client::{
    Client, CompactionOptions, ConnectOptions, DeleteOptions, EventType, GetOptions, KvClient,
    LeaseClient, PutOptions, WatchClient, WatchOptions,
};

pub use process::{EtcdProcess, LocalEtcdOptions, spawn_local_etcd, spawn_local_etcd_cluster};

use crate::error::{Error, Result};
use crate::mvcc::validate_txn;
use crate::store::{Store, WatchSource, WatchStream};
use crate::types::{
    CompareOp, CompareTarget, DeleteResponse, Event, EventKind, KeyValue, LeaseId, MAX_VALUE_SIZE,
    PutResponse, RANGE_END_ALL, RangeRequest, RangeResponse, Revision, TxnOp, TxnOpResponse,
    TxnRequest, TxnResponse, WatchRequest, WatchResponse,
};

/// Largest gRPC message accepted from etcd (etcd's own client uses the same: `math.MaxInt32`).
const MAX_RECV_MESSAGE: usize = i32::MAX as usize;

/// Settings of the etcd backend.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// Client URLs of the cluster's members, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Prepended to every key (e.g. `/krust-a`), so that several stores can share one etcd.
    /// Empty: keys are used as they are.
    pub key_prefix: String,
    /// Limit for establishing a connection and for the first request in
    /// [`EtcdStore::connect`].
    pub connect_timeout: Duration,
    /// Limit for every unary request; a write that times out may or may not have happened.
    pub request_timeout: Duration,
}

impl EtcdConfig {
    /// Settings for a cluster reachable at `endpoints`, without key prefix.
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Self {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            key_prefix: String::new(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }

    /// Puts every key of this store under `prefix`.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }
}

/// A [`Store`] backed by an etcd v3 cluster.
pub struct EtcdStore {
    kv: KvClient,
    watch: WatchClient,
    lease: LeaseClient,
    keys: Arc<KeyCodec>,
    config: EtcdConfig,
    closed: AtomicBool,
    /// Flipped on shutdown: every watch ends with `Error::Closed`.
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Where a request failed, to turn etcd's errors into ours.
#[derive(Default)]
struct Ctx<'a> {
    what: &'a str,
    revision: Revision,
    lease: LeaseId,
    /// (key, size) reported if etcd refuses the request as too large.
    large: Option<(&'a str, usize)>,
}

impl Ctx<'_> {
    fn error(&self, e: etcd_client::Error) -> Error {
        let message = match &e {
            etcd_client::Error::GRpcStatus(status) => status.message().to_string(),
            etcd_client::Error::LeaseKeepAliveError(m) => m.clone(),
            _ => String::new(),
        };
        if message.contains("required revision has been compacted") {
            Error::Compacted { requested: self.revision, compacted: 0 }
        } else if message.contains("required revision is a future revision") {
            Error::FutureRevision { requested: self.revision, current: 0 }
        } else if message.contains("request is too large") {
            let (key, size) = self.large.unwrap_or(("", 0));
            Error::ValueTooLarge { key: key.to_string(), size, limit: MAX_VALUE_SIZE }
        } else if message.contains("lease not found") {
            Error::LeaseNotFound { id: self.lease }
        } else if message.contains("duplicate key given in txn request")
            || message.contains("key is not provided")
            || message.contains("too many operations in txn request")
        {
            Error::InvalidArgument { reason: message }
        } else if message.contains("database space exceeded") {
            Error::DiskFull { source: Arc::new(e) }
        } else {
            Error::Storage { context: format!("{} (etcd)", self.what), source: Arc::new(e) }
        }
    }

    fn timeout(&self, after: Duration) -> Error {
        Error::Storage {
            context: format!("{} (etcd)", self.what),
            source: Arc::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer from etcd within {after:?}"),
            )),
        }
    }
}

impl EtcdStore {
    /// Connects to the cluster and checks that it answers (a linearizable read, so a member
    /// without quorum does not count).
    pub async fn connect(config: EtcdConfig) -> Result<Self> {
        let ctx = Ctx { what: "connecting to etcd", ..Default::default() };
        if config.endpoints.is_empty() {
            return Err(Error::invalid("the etcd backend needs at least one endpoint"));
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(config.connect_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(10));
        let endpoints = config.endpoints.clone();
        let client = tokio::time::timeout(
            config.connect_timeout,
            Client::connect(&endpoints, Some(options)),
        )
        .await
        .map_err(|_| ctx.timeout(config.connect_timeout))?
        .map_err(|e| Error::Storage {
            context: format!("connecting to etcd at {}", endpoints.join(",")),
            source: Arc::new(e),
        })?;
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let store = EtcdStore {
            kv: client.kv_client().max_decoding_message_size(MAX_RECV_MESSAGE),
            watch: client.watch_client().max_decoding_message_size(MAX_RECV_MESSAGE),
            lease: client.lease_client(),
            keys: Arc::new(KeyCodec { prefix: config.key_prefix.clone().into_bytes() }),
            config,
            closed: AtomicBool::new(false),
            shutdown,
        };
        let probe = store.current_revision_within(store.config.connect_timeout).await;
        probe.map_err(|e| match e {
            Error::Storage { context, source } => Error::Storage {
                context: format!("{context}: checking etcd at {}", endpoints.join(",")),
                source,
            },
            other => other,
        })?;
        Ok(store)
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) { Err(Error::Closed) } else { Ok(()) }
    }

    /// Runs one unary request with the request timeout and maps its error.
    async fn call<T>(
        &self,
        ctx: &Ctx<'_>,
        fut: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        self.check_open()?;
        let limit = self.config.request_timeout;
        match tokio::time::timeout(limit, fut).await {
            Err(_) => Err(ctx.timeout(limit)),
            Ok(result) => result.map_err(|e| ctx.error(e)),
        }
    }

    async fn current_revision_within(&self, limit: Duration) -> Result<Revision> {
        let ctx = Ctx { what: "reading the current revision", ..Default::default() };
        let mut kv = self.kv.clone();
        let key = self.keys.encode("")?;
        let get = kv.get(key, Some(GetOptions::new().with_count_only()));
        let resp = tokio::time::timeout(limit, get)
            .await
            .map_err(|_| ctx.timeout(limit))?
            .map_err(|e| ctx.error(e))?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }

    fn get_options(&self, req: &RangeRequest) -> Result<(Vec<u8>, GetOptions)> {
        let (key, end) = self.keys.encode_range(&req.key, &req.range_end)?;
        let mut options = GetOptions::new()
            .with_range(end)
            .with_revision(req.revision.max(0))
            .with_limit(i64::try_from(req.limit).unwrap_or(i64::MAX));
        if req.keys_only {
            options = options.with_keys_only();
        }
        if req.count_only {
            options = options.with_count_only();
        }
        Ok((key, options))
    }

    fn etcd_txn(&self, req: &TxnRequest) -> Result<etcd_client::Txn> {
        let mut compares = Vec::with_capacity(req.compare.len());
        for cmp in &req.compare {
            let key = self.keys.encode(&cmp.key)?;
            let op = match cmp.op {
                CompareOp::Equal => etcd_client::CompareOp::Equal,
                CompareOp::NotEqual => etcd_client::CompareOp::NotEqual,
                CompareOp::Less => etcd_client::CompareOp::Less,
                CompareOp::Greater => etcd_client::CompareOp::Greater,
            };
            compares.push(match &cmp.target {
                CompareTarget::Version(v) => etcd_client::Compare::version(key, op, *v),
                CompareTarget::CreateRevision(r) => {
                    etcd_client::Compare::create_revision(key, op, *r)
                }
                CompareTarget::ModRevision(r) => etcd_client::Compare::mod_revision(key, op, *r),
                CompareTarget::Value(v) => etcd_client::Compare::value(key, op, v.to_vec()),
                CompareTarget::Lease(l) => etcd_client::Compare::lease(key, op, *l),
            });
        }
        let ops = |branch: &[TxnOp]| -> Result<Vec<etcd_client::TxnOp>> {
            branch
                .iter()
                .map(|op| {
                    Ok(match op {
                        TxnOp::Put(put) => {
                            let mut options = PutOptions::new().with_lease(put.lease);
                            if put.prev_kv {
                                options = options.with_prev_key();
                            }
                            let key = self.keys.encode(&put.key)?;
                            etcd_client::TxnOp::put(key, put.value.to_vec(), Some(options))
                        }
                        TxnOp::Delete(del) => {
                            let (key, end) = self.keys.encode_range(&del.key, &del.range_end)?;
                            let mut options = DeleteOptions::new().with_range(end);
                            if del.prev_kv {
                                options = options.with_prev_key();
                            }
                            etcd_client::TxnOp::delete(key, Some(options))
                        }
                        TxnOp::Range(range) => {
                            let (key, options) = self.get_options(range)?;
                            etcd_client::TxnOp::get(key, Some(options))
                        }
                    })
                })
                .collect()
        };
        Ok(etcd_client::Txn::new()
            .when(compares)
            .and_then(ops(&req.success)?)
            .or_else(ops(&req.failure)?))
    }

    /// The lease to blame when etcd says "requested lease not found": the only one the
    /// transaction uses, else the first one etcd does not know.
    async fn missing_lease(&self, req: &TxnRequest) -> LeaseId {
        let mut leases: Vec<LeaseId> = req
            .success
            .iter()
            .chain(&req.failure)
            .filter_map(|op| match op {
                TxnOp::Put(put) if put.lease != 0 => Some(put.lease),
                _ => None,
            })
            .collect();
        leases.dedup();
        if leases.len() > 1 {
            for &id in &leases {
                let mut lease = self.lease.clone();
                if let Ok(resp) = lease.time_to_live(id, None).await
                    && resp.ttl() < 0
                {
                    return id;
                }
            }
        }
        leases.first().copied().unwrap_or(0)
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        let ctx = Ctx { what: "reading a range", revision: req.revision, ..Default::default() };
        let (key, options) = self.get_options(&req)?;
        let mut kv = self.kv.clone();
        let resp = self.call(&ctx, kv.get(key, Some(options))).await?;
        self.keys.range_response(resp.0)
    }

    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse> {
        validate_txn(&req)?;
        let txn = self.etcd_txn(&req)?;
        let total: usize = req
            .success
            .iter()
            .chain(&req.failure)
            .map(|op| match op {
                TxnOp::Put(put) => put.key.len() + put.value.len(),
                TxnOp::Delete(_) | TxnOp::Range(_) => 0,
            })
            .sum();
        let first_key = req.success.iter().chain(&req.failure).find_map(|op| match op {
            TxnOp::Put(put) => Some(put.key.as_str()),
            _ => None,
        });
        let ctx = Ctx {
            what: "running a transaction",
            large: Some((first_key.unwrap_or(""), total)),
            ..Default::default()
        };
        let mut kv = self.kv.clone();
        let resp = match self.call(&ctx, kv.txn(txn)).await {
            Err(Error::LeaseNotFound { .. }) => {
                return Err(Error::LeaseNotFound { id: self.missing_lease(&req).await });
            }
            other => other?,
        };
        let pb = resp.0;
        let header_revision = pb.header.as_ref().map_or(0, |h| h.revision);
        let mut responses = Vec::with_capacity(pb.responses.len());
        for op in pb.responses {
            responses.push(match op.response {
                Some(PbTxnOpResponse::ResponsePut(put)) => TxnOpResponse::Put(PutResponse {
                    prev_kv: put.prev_kv.map(|kv| self.keys.decode_kv(kv)).transpose()?,
                }),
                Some(PbTxnOpResponse::ResponseDeleteRange(del)) => {
                    TxnOpResponse::Delete(DeleteResponse {
                        deleted: u64::try_from(del.deleted).unwrap_or(0),
                        prev_kvs: del
                            .prev_kvs
                            .into_iter()
                            .map(|kv| self.keys.decode_kv(kv))
                            .collect::<Result<_>>()?,
                    })
                }
                Some(PbTxnOpResponse::ResponseRange(range)) => {
                    TxnOpResponse::Range(self.keys.range_response(range)?)
                }
                Some(PbTxnOpResponse::ResponseTxn(_)) | None => {
                    return Err(Error::Storage {
                        context: "decoding a transaction response (etcd)".into(),
                        source: Arc::new(std::io::Error::other("unexpected operation response")),
                    });
                }
            });
        }
        Ok(TxnResponse { succeeded: pb.succeeded, header_revision, responses })
    }

    async fn watch(&self, req: WatchRequest) -> Result<WatchStream> {
        let ctx =
            Ctx { what: "starting a watch", revision: req.start_revision, ..Default::default() };
        let (key, end) = self.keys.encode_range(&req.key, &req.range_end)?;
        let mut options =
            WatchOptions::new().with_range(end).with_start_revision(req.start_revision.max(0));
        if req.prev_kv {
            options = options.with_prev_key();
        }
        if req.progress_notify {
            options = options.with_progress_notify();
        }
        let mut client = self.watch.clone();
        let stream = self.call(&ctx, client.watch(key, Some(options))).await?;
        let (sender, mut responses) = stream.split();
        // Wait for etcd to register the watcher: a watch "from now" must see every write that
        // starts after `watch()` returned.
        let created = self.call(&ctx, responses.message()).await?;
        let mut watch = EtcdWatch {
            sender,
            responses,
            keys: self.keys.clone(),
            shutdown: self.shutdown.subscribe(),
            next_revision: req.start_revision,
            progress_requested: false,
            pending_error: None,
            done: false,
        };
        match created {
            Some(resp) if resp.created() && !resp.canceled() => {}
            Some(resp) => watch.pending_error = watch.terminal(&resp),
            None => watch.pending_error = Some(stream_ended()),
        }
        Ok(WatchStream::new(Box::new(watch)))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let ctx = Ctx { what: "compacting", revision, ..Default::default() };
        let mut kv = self.kv.clone();
        self.call(&ctx, kv.compact(revision, Some(CompactionOptions::new()))).await?;
        Ok(())
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId> {
        let ctx = Ctx { what: "granting a lease", ..Default::default() };
        let secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let secs = if ttl.subsec_nanos() > 0 { secs.saturating_add(1) } else { secs }.max(1);
        let mut lease = self.lease.clone();
        let resp = self.call(&ctx, lease.grant(secs, None)).await?;
        Ok(resp.id())
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<()> {
        let ctx = Ctx { what: "revoking a lease", lease: id, ..Default::default() };
        let mut lease = self.lease.clone();
        self.call(&ctx, lease.revoke(id)).await?;
        Ok(())
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration> {
        let ctx = Ctx { what: "keeping a lease alive", lease: id, ..Default::default() };
        let mut lease = self.lease.clone();
        // The first keep-alive happens while opening the stream (and fails for unknown leases);
        // its TTL is not exposed, so a second one reports it.
        let (mut keeper, mut stream) = self.call(&ctx, lease.keep_alive(id)).await?;
        self.call(&ctx, keeper.keep_alive()).await?;
        let ttl = match self.call(&ctx, stream.message()).await? {
            Some(resp) => resp.ttl(),
            None => return Err(ctx.error(etcd_client::Error::LeaseKeepAliveError("closed".into()))),
        };
        if ttl <= 0 {
            return Err(Error::LeaseNotFound { id });
        }
        Ok(Duration::from_secs(ttl.unsigned_abs()))
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.check_open()?;
        self.current_revision_within(self.config.request_timeout).await
    }

    async fn shutdown(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        self.shutdown.send_replace(true);
        Ok(())
    }
}

/// Translates keys between the store's strings and etcd's prefixed bytes.
#[derive(Debug)]
struct KeyCodec {
    prefix: Vec<u8>,
}

impl KeyCodec {
    fn encode(&self, key: &str) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.prefix.len() + key.len());
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(key.as_bytes());
        if out.is_empty() {
            // The smallest etcd key: the start of "every key" without a prefix.
            out.push(0);
        }
        Ok(out)
    }

    /// (key, range_end) with etcd's conventions, inside the prefix.
    fn encode_range(&self, key: &str, range_end: &str) -> Result<(Vec<u8>, Vec<u8>)> {
        let start = self.encode(key)?;
        let end = if range_end.is_empty() {
            if key.is_empty() {
                return Err(Error::invalid("empty key"));
            }
            Vec::new()
        } else if range_end == RANGE_END_ALL {
            if self.prefix.is_empty() { vec![0] } else { prefix_end_bytes(&self.prefix) }
        } else {
            self.encode(range_end)?
        };
        Ok((start, end))
    }

    fn decode_key(&self, key: Vec<u8>) -> Result<String> {
        let Some(rest) = key.strip_prefix(self.prefix.as_slice()) else {
            return Err(decode_error(format!("key {key:?} outside the store's prefix")));
        };
        String::from_utf8(rest.to_vec()).map_err(|e| decode_error(format!("key not UTF-8: {e}")))
    }

    fn decode_kv(&self, kv: PbKeyValue) -> Result<KeyValue> {
        Ok(KeyValue {
            key: self.decode_key(kv.key)?,
            value: Bytes::from(kv.value),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
        })
    }

    fn range_response(&self, resp: PbRangeResponse) -> Result<RangeResponse> {
        Ok(RangeResponse {
            header_revision: resp.header.as_ref().map_or(0, |h| h.revision),
            kvs: resp.kvs.into_iter().map(|kv| self.decode_kv(kv)).collect::<Result<_>>()?,
            more: resp.more,
            count: u64::try_from(resp.count).unwrap_or(0),
        })
    }
}

/// etcd's `GetPrefixRangeEnd` on bytes: the smallest key above every key with `prefix`.
fn prefix_end_bytes(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn decode_error(message: String) -> Error {
    Error::Storage {
        context: "decoding a response (etcd)".into(),
        source: Arc::new(std::io::Error::new(std::io::ErrorKind::InvalidData, message)),
    }
}

fn stream_ended() -> Error {
    Error::Storage {
        context: "watching (etcd)".into(),
        source: Arc::new(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "etcd closed the watch stream",
        )),
    }
}

/// One etcd watcher on its own gRPC stream.
struct EtcdWatch {
    sender: etcd_client::WatchRequestSender,
    responses: etcd_client::WatchResponseStream,
    keys: Arc<KeyCodec>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// The first revision not delivered yet (0: from now, nothing delivered).
    next_revision: Revision,
    progress_requested: bool,
    pending_error: Option<Error>,
    done: bool,
}

impl EtcdWatch {
    /// The error ending the watch, if `resp` ends it.
    fn terminal(&self, resp: &etcd_client::WatchResponse) -> Option<Error> {
        if resp.compact_revision() != 0 {
            return Some(Error::Compacted {
                requested: self.next_revision,
                compacted: resp.compact_revision(),
            });
        }
        if resp.canceled() {
            let reason = resp.cancel_reason().to_string();
            if reason.contains("required revision has been compacted") {
                return Some(Error::Compacted { requested: self.next_revision, compacted: 0 });
            }
            return Some(Error::Storage {
                context: "watching (etcd)".into(),
                source: Arc::new(std::io::Error::other(format!("watch canceled: {reason}"))),
            });
        }
        None
    }

    fn convert(&mut self, resp: etcd_client::WatchResponse) -> Result<WatchResponse> {
        let header = resp.header().map_or(0, |h| h.revision());
        let mut events = Vec::with_capacity(resp.events().len());
        for event in resp.0.events {
            let kind = match event.r#type {
                t if t == EventType::Put as i32 => EventKind::Put,
                t if t == EventType::Delete as i32 => EventKind::Delete,
                t => return Err(decode_error(format!("unknown event type {t}"))),
            };
            let Some(kv) = event.kv else { return Err(decode_error("event without kv".into())) };
            events.push(Event {
                kind,
                kv: self.keys.decode_kv(kv)?,
                prev_kv: event.prev_kv.map(|kv| self.keys.decode_kv(kv)).transpose()?,
            });
        }
        // etcd may send a batch of replayed history with the current revision in its header
        // while more history is still to come; the last event is what is known delivered.
        let header_revision = match events.last() {
            Some(last) => {
                self.next_revision = last.kv.mod_revision + 1;
                last.kv.mod_revision
            }
            None => header,
        };
        Ok(WatchResponse { header_revision, events })
    }
}

#[async_trait]
impl WatchSource for EtcdWatch {
    async fn next(&mut self) -> Option<Result<WatchResponse>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(e) = self.pending_error.take() {
                self.done = true;
                return Some(Err(e));
            }
            if *self.shutdown.borrow() {
                self.done = true;
                return Some(Err(Error::Closed));
            }
            if self.progress_requested {
                // Cancel-safe: the flag is cleared only once the request is queued.
                if let Err(e) = self.sender.request_progress().await {
                    self.pending_error =
                        Some(Ctx { what: "watching", ..Default::default() }.error(e));
                    continue;
                }
                self.progress_requested = false;
            }
            let message = tokio::select! {
                message = self.responses.message() => message,
                _ = self.shutdown.changed() => continue,
            };
            let resp = match message {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    self.pending_error = Some(stream_ended());
                    continue;
                }
                Err(e) => {
                    let ctx = Ctx {
                        what: "watching",
                        revision: self.next_revision,
                        ..Default::default()
                    };
                    self.pending_error = Some(ctx.error(e));
                    continue;
                }
            };
            if let Some(e) = self.terminal(&resp) {
                self.pending_error = Some(e);
                continue;
            }
            if resp.created() && resp.events().is_empty() {
                continue;
            }
            match self.convert(resp) {
                Ok(resp) => return Some(Ok(resp)),
                Err(e) => self.pending_error = Some(e),
            }
        }
    }

    fn request_progress(&mut self) {
        self.progress_requested = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_ranges_stay_inside_the_prefix() -> Result<()> {
        let codec = KeyCodec { prefix: b"/a".to_vec() };
        assert_eq!(codec.encode_range("/k", "")?, (b"/a/k".to_vec(), Vec::new()));
        assert_eq!(codec.encode_range("/k", RANGE_END_ALL)?, (b"/a/k".to_vec(), b"/b".to_vec()));
        assert_eq!(codec.encode_range("", RANGE_END_ALL)?, (b"/a".to_vec(), b"/b".to_vec()));
        assert_eq!(codec.encode_range("/k", "/l")?, (b"/a/k".to_vec(), b"/a/l".to_vec()));
        assert!(codec.encode_range("", "").is_err());
        assert_eq!(codec.decode_key(b"/a/k".to_vec())?, "/k");
        assert!(codec.decode_key(b"/b/k".to_vec()).is_err());
        let bare = KeyCodec { prefix: Vec::new() };
        assert_eq!(bare.encode_range("", RANGE_END_ALL)?, (vec![0], vec![0]));
        assert_eq!(prefix_end_bytes(&[b'a', 0xff]), b"b".to_vec());
        assert_eq!(prefix_end_bytes(&[0xff]), vec![0]);
        Ok(())
    }
}
