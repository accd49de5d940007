//! `/metrics` in Prometheus text format, with upstream's names: request counts and latencies by
//! verb, group, version, resource, subresource, scope and code, the open watches, and the
//! store's latencies by operation and resource (`etcd_request_duration_seconds`, whatever the
//! backend) through [`MeteredStore`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use krust_store::{
    LeaseId, RangeRequest, RangeResponse, Revision, Store, TxnOp, TxnRequest, TxnResponse,
    WatchRequest, WatchStream,
};

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::request::ResourceRequest;

/// Upstream's `apiserver_request_duration_seconds` buckets.
const BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];
/// Upstream's `etcd_request_duration_seconds` buckets.
const STORE_BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];
const LABELS: &[&str] =
    &["verb", "group", "version", "resource", "subresource", "scope", "component", "code"];

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    durations: HistogramVec,
    long_running: IntGaugeVec,
    store: HistogramVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "apiserver_request_total",
                "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
            ),
            LABELS,
        )?;
        let durations = HistogramVec::new(
            HistogramOpts::new("apiserver_request_duration_seconds", "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.")
                .buckets(BUCKETS.to_vec()),
            &LABELS[..7],
        )?;
        let long_running = IntGaugeVec::new(
            Opts::new(
                "apiserver_longrunning_requests",
                "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component.",
            ),
            &LABELS[..7],
        )?;
        let store = HistogramVec::new(
            HistogramOpts::new(
                "etcd_request_duration_seconds",
                "Etcd request latency in seconds for each operation and object type.",
            )
            .buckets(STORE_BUCKETS.to_vec()),
            &["operation", "type"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(durations.clone()))?;
        registry.register(Box::new(long_running.clone()))?;
        registry.register(Box::new(store.clone()))?;
        Ok(Self { registry, requests, durations, long_running, store })
    }

    fn labels<'a>(req: &'a ResourceRequest, verb: &'a str) -> [&'a str; 7] {
        let scope = match (&req.namespace, &req.name) {
            (_, Some(_)) => "resource",
            (Some(_), None) => "namespace",
            (None, None) => "cluster",
        };
        [
            verb,
            &req.group,
            &req.version,
            &req.resource,
            req.subresource.as_deref().unwrap_or(""),
            scope,
            "apiserver",
        ]
    }

    /// Records one finished request.
    pub fn observe(&self, req: &ResourceRequest, code: StatusCode, elapsed: Duration) {
        let verb = upstream_verb(req);
        let l = Self::labels(req, verb);
        let code = code.as_u16().to_string();
        self.requests.with_label_values(&[l[0], l[1], l[2], l[3], l[4], l[5], l[6], &code]).inc();
        self.durations.with_label_values(&l).observe(elapsed.as_secs_f64());
    }

    /// Counts an open watch until the returned guard drops.
    pub fn watch_started(&self, req: &ResourceRequest) -> WatchGauge {
        let l = Self::labels(req, "WATCH");
        let gauge = self.long_running.with_label_values(&l);
        gauge.inc();
        WatchGauge(gauge)
    }

    pub fn render(&self) -> Response {
        let mut out = Vec::new();
        match TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            Ok(()) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out)
                .into_response(),
            Err(e) => crate::status::Status::internal(format!("cannot encode metrics: {e}"))
                .into_response(),
        }
    }
}

/// A store that times every call into `etcd_request_duration_seconds{operation, type}`:
/// `operation` is get (one key), list (a range), txn, watch (opening it), compact or a lease
/// call; `type` the resource the key belongs to (`pods`, `deployments.apps`).
#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    latencies: HistogramVec,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn Store>, metrics: &Metrics) -> Self {
        Self { inner, latencies: metrics.store.clone() }
    }

    /// Runs one store call, recording how long it took.
    async fn timed<T>(&self, operation: &str, key: &str, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let result = call.await;
        self.latencies
            .with_label_values(&[operation, &object_type(key)])
            .observe(started.elapsed().as_secs_f64());
        result
    }
}

/// The built-in API groups without a dot in their name (every other group has one).
const UNDOTTED_GROUPS: &[&str] = &["apps", "autoscaling", "batch", "extensions", "policy"];

/// The resource of a `/registry/[<group>/]<resource>/...` key as upstream names it
/// (`pods`, `deployments.apps`); other keys as their second segment.
fn object_type(key: &str) -> String {
    let mut segments = key.trim_start_matches('/').split('/');
    let _registry = segments.next();
    match (segments.next(), segments.next()) {
        (Some(group), Some(resource))
            if group.contains('.') || UNDOTTED_GROUPS.contains(&group) =>
        {
            format!("{resource}.{group}")
        }
        (Some(resource), _) => resource.to_owned(),
        (None, _) => String::new(),
    }
}

#[async_trait]
impl Store for MeteredStore {
    async fn range(&self, req: RangeRequest) -> krust_store::Result<RangeResponse> {
        let operation = if req.range_end.is_empty() { "get" } else { "list" };
        let key = req.key.clone();
        self.timed(operation, &key, self.inner.range(req)).await
    }

    async fn txn(&self, req: TxnRequest) -> krust_store::Result<TxnResponse> {
        let key = req
            .compare
            .first()
            .map(|c| c.key.clone())
            .or_else(|| {
                req.success.first().map(|op| match op {
                    TxnOp::Put(put) => put.key.clone(),
                    TxnOp::Delete(delete) => delete.key.clone(),
                    TxnOp::Range(range) => range.key.clone(),
                })
            })
            .unwrap_or_default();
        self.timed("txn", &key, self.inner.txn(req)).await
    }

    async fn watch(&self, req: WatchRequest) -> krust_store::Result<WatchStream> {
        let key = req.key.clone();
        self.timed("watch", &key, self.inner.watch(req)).await
    }

    async fn compact(&self, revision: Revision) -> krust_store::Result<()> {
        self.timed("compact", "", self.inner.compact(revision)).await
    }

    async fn lease_grant(&self, ttl: Duration) -> krust_store::Result<LeaseId> {
        self.timed("lease_grant", "", self.inner.lease_grant(ttl)).await
    }

    async fn lease_revoke(&self, id: LeaseId) -> krust_store::Result<()> {
        self.timed("lease_revoke", "", self.inner.lease_revoke(id)).await
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> krust_store::Result<Duration> {
        self.timed("lease_keep_alive", "", self.inner.lease_keep_alive(id)).await
    }

    async fn current_revision(&self) -> krust_store::Result<Revision> {
        self.inner.current_revision().await
    }

    async fn shutdown(&self) -> krust_store::Result<()> {
        self.inner.shutdown().await
    }
}

/// Decrements the open-watch gauge when the watch ends.
#[derive(Debug)]
pub struct WatchGauge(prometheus::IntGauge);

impl Drop for WatchGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Upstream reports verbs in upper case (`GET`, `LIST`, `WATCH`, `POST`, `PUT`, `PATCH`, `DELETE`).
fn upstream_verb(req: &ResourceRequest) -> &'static str {
    use crate::request::Verb::*;
    match req.verb {
        Get => "GET",
        List => "LIST",
        Watch => "WATCH",
        Create => "POST",
        Update => "PUT",
        Patch => "PATCH",
        Delete | DeleteCollection => "DELETE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Verb;

    #[test]
    fn renders_upstream_names() {
        let m = Metrics::new().expect("metrics");
        let req = ResourceRequest {
            group: String::new(),
            version: "v1".into(),
            namespace: Some("default".into()),
            resource: "configmaps".into(),
            name: None,
            subresource: None,
            subpath: None,
            verb: Verb::Create,
        };
        m.observe(&req, StatusCode::CREATED, Duration::from_millis(3));
        let guard = m.watch_started(&req);
        let mut out = Vec::new();
        TextEncoder::new().encode(&m.registry.gather(), &mut out).expect("encode");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.contains("apiserver_request_total{code=\"201\",component=\"apiserver\",group=\"\",resource=\"configmaps\",scope=\"namespace\",subresource=\"\",verb=\"POST\",version=\"v1\"} 1"), "{text}");
        assert!(text.contains("apiserver_request_duration_seconds_bucket"), "{text}");
        assert!(text.contains("apiserver_longrunning_requests{") && text.contains("} 1"), "{text}");
        drop(guard);
    }

    #[tokio::test]
    async fn the_store_is_timed_by_operation_and_resource() {
        use krust_store::StoreExt as _;
        let m = Metrics::new().expect("metrics");
        let store = MeteredStore::new(
            Arc::new(krust_store::MemoryStore::new(Default::default()).expect("store")),
            &m,
        );
        store.create("/registry/pods/default/a", "{}".into(), 0).await.expect("create");
        store.get("/registry/pods/default/a").await.expect("get");
        let mut out = Vec::new();
        TextEncoder::new().encode(&m.registry.gather(), &mut out).expect("encode");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(
            text.contains("etcd_request_duration_seconds_count{operation=\"txn\",type=\"pods\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("etcd_request_duration_seconds_count{operation=\"get\",type=\"pods\"} 1"),
            "{text}"
        );
        assert_eq!(object_type("/registry/apps/deployments/ns/x"), "deployments.apps");
        assert_eq!(
            object_type("/registry/networking.k8s.io/ipaddresses/10.0.0.1"),
            "ipaddresses.networking.k8s.io"
        );
    }
}
