//! `/metrics` in Prometheus text format, with upstream's names: request counts and latencies by
//! verb, group, version, resource, subresource, scope and code, and the open watches.

use std::time::Duration;

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
const LABELS: &[&str] =
    &["verb", "group", "version", "resource", "subresource", "scope", "component", "code"];

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    durations: HistogramVec,
    long_running: IntGaugeVec,
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
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(durations.clone()))?;
        registry.register(Box::new(long_running.clone()))?;
        Ok(Self { registry, requests, durations, long_running })
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
}
