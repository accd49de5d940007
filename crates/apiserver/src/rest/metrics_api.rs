//! `metrics.k8s.io/v1beta1` — what metrics-server serves upstream (as an aggregated API) and
//! what `kubectl top node|pod` reads: NodeMetrics and PodMetrics computed on each request from
//! the kubelets' `/stats/summary`, never stored. CPU is a rate over a window: the API server
//! keeps each node's previous sample, and without one from the last two minutes it samples
//! twice, a second apart. Nodes whose kubelet does not answer are left out, as metrics-server
//! leaves out nodes it cannot scrape.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use krust_api::catalog::Catalog;
use krust_api::labels::Selector;
use krust_store::prefix_end;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{ApiResult, Ctx, Status, json_response};
use crate::request::Verb;
use crate::table;

/// A previous sample older than this is not used for a rate.
const MAX_WINDOW: Duration = Duration::from_secs(120);
/// Nor one younger than this (too short a window to mean anything).
const MIN_WINDOW: Duration = Duration::from_millis(500);
/// The pause between two samples when there is no usable previous one.
const FRESH_WINDOW: Duration = Duration::from_secs(1);
/// How long a kubelet has to answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// One node's summary, reduced to what metrics need: cumulative CPU (ns) and working set
/// (bytes) of the node (key ""), each pod (`ns/name`) and container (`ns/name/container`).
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    cpu: HashMap<String, u64>,
    memory: HashMap<String, u64>,
    /// Each pod's containers, in the kubelet's order.
    containers: HashMap<String, Vec<String>>,
}

/// The previous sample of each node.
#[derive(Debug, Default)]
pub struct Samples(Mutex<HashMap<String, Sample>>);

impl Samples {
    fn previous(&self, node: &str) -> Option<Sample> {
        let samples = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        samples.get(node).filter(|s| s.at.elapsed() <= MAX_WINDOW).cloned()
    }

    fn keep(&self, node: &str, sample: Sample) {
        let mut samples = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        samples.insert(node.to_owned(), sample);
    }
}

/// Usage over a window: CPU in nanocores, memory in bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Usage {
    nanocores: u64,
    bytes: u64,
}

/// A node's usage (and its pods') between two samples.
#[derive(Debug)]
struct Window {
    seconds: f64,
    usage: HashMap<String, Usage>,
    containers: HashMap<String, Vec<String>>,
}

fn window(old: &Sample, new: &Sample) -> Window {
    let seconds = new.at.saturating_duration_since(old.at).as_secs_f64().max(1e-3);
    let usage = new
        .memory
        .iter()
        .map(|(key, bytes)| {
            let used = match (new.cpu.get(key), old.cpu.get(key)) {
                (Some(now), Some(then)) => now.saturating_sub(*then),
                _ => 0,
            };
            let nanocores = (used as f64 / seconds).round() as u64;
            (key.clone(), Usage { nanocores, bytes: *bytes })
        })
        .collect();
    Window { seconds, usage, containers: new.containers.clone() }
}

/// The sample in a kubelet's `/stats/summary` document.
fn parse_summary(summary: &Value, at: Instant) -> Sample {
    let mut sample =
        Sample { at, cpu: HashMap::new(), memory: HashMap::new(), containers: HashMap::new() };
    let mut put = |key: String, stats: &Value| {
        if let Some(cpu) = stats.pointer("/cpu/usageCoreNanoSeconds").and_then(Value::as_u64) {
            sample.cpu.insert(key.clone(), cpu);
        }
        let memory = stats.pointer("/memory/workingSetBytes").and_then(Value::as_u64);
        sample.memory.insert(key, memory.unwrap_or(0));
    };
    put(String::new(), &summary["node"]);
    let mut containers = HashMap::new();
    for pod in summary["pods"].as_array().into_iter().flatten() {
        let namespace = pod.pointer("/podRef/namespace").and_then(Value::as_str);
        let name = pod.pointer("/podRef/name").and_then(Value::as_str);
        let (Some(namespace), Some(name)) = (namespace, name) else { continue };
        let key = format!("{namespace}/{name}");
        put(key.clone(), pod);
        let mut names = Vec::new();
        for container in pod["containers"].as_array().into_iter().flatten() {
            let Some(container_name) = container["name"].as_str() else { continue };
            put(format!("{key}/{container_name}"), container);
            names.push(container_name.to_owned());
        }
        containers.insert(key, names);
    }
    sample.containers = containers;
    sample
}

/// A kubelet's summary now, or why not.
async fn scrape(ctx: &Ctx<'_>, node: &Value, name: &str) -> Result<Sample, String> {
    let (client, address, port) =
        super::node_proxy::kubelet_endpoint(ctx, node, name).map_err(|e| e.message().to_owned())?;
    let get = client.get(&address, port, "/stats/summary");
    let response = tokio::time::timeout(SCRAPE_TIMEOUT, get)
        .await
        .map_err(|_| "the kubelet did not answer in time".to_owned())??;
    if !response.status().is_success() {
        return Err(format!("the kubelet answered {}", response.status()));
    }
    let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .map_err(|e| format!("cannot read the summary: {e}"))?;
    let summary: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("the summary is not JSON: {e}"))?;
    Ok(parse_summary(&summary, Instant::now()))
}

/// The node's usage over a window ending now; `None` when its kubelet cannot be reached.
async fn node_window(ctx: &Ctx<'_>, node: &Value, name: &str) -> Option<Window> {
    let samples = &ctx.state.metric_samples;
    let previous = samples.previous(name);
    let mut latest = match scrape(ctx, node, name).await {
        Ok(sample) => sample,
        Err(e) => {
            tracing::debug!(node = %name, error = %e, "no metrics from the node");
            return None;
        }
    };
    let old = match previous.filter(|p| latest.at.saturating_duration_since(p.at) >= MIN_WINDOW) {
        Some(previous) => previous,
        None => {
            tokio::time::sleep(FRESH_WINDOW).await;
            let first = latest;
            latest = scrape(ctx, node, name).await.ok()?;
            first
        }
    };
    let window = window(&old, &latest);
    samples.keep(name, latest);
    Some(window)
}

/// Every object of a built-in resource, from its watch cache.
async fn cached(ctx: &Ctx<'_>, plural: &str, namespace: Option<&str>) -> ApiResult<Vec<Value>> {
    let resource = Catalog::builtin_lookup("", "v1", plural)
        .ok_or_else(|| Status::internal(format!("no {plural} resource")))?;
    let cache = ctx
        .state
        .caches
        .get(resource)
        .ok_or_else(|| Status::internal(format!("no cache of {plural}")))?;
    if !cache.wait_for(0, SCRAPE_TIMEOUT).await {
        return Err(Status::service_unavailable(format!("the {plural} cache is not ready")));
    }
    let prefix = resource.store_namespace_prefix(namespace);
    let snapshot = cache.snapshot(&prefix, &prefix_end(&prefix), None, |_| true);
    Ok(snapshot.objects.iter().filter_map(|o| serde_json::from_slice(&o.bytes).ok()).collect())
}

fn usage(u: Usage) -> Value {
    json!({"cpu": format!("{}n", u.nanocores), "memory": format!("{}Ki", u.bytes / 1024)})
}

fn labels(object: &Value) -> Map<String, Value> {
    object.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default()
}

/// `GET` and `LIST` of `nodes` and `pods` in `metrics.k8s.io/v1beta1`.
pub(super) async fn get_or_list(ctx: &Ctx<'_>) -> ApiResult {
    let selector = match ctx.params.label_selector.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(s) => Some(
            Selector::parse(s)
                .map_err(|e| Status::bad_request(format!("unable to parse requirement: {e}")))?,
        ),
        None => None,
    };
    let selected = |object: &Value| selector.as_ref().is_none_or(|s| s.matches(&labels(object)));
    let now = OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default();
    let nodes = cached(ctx, "nodes", None).await?;
    let name = ctx.req.name.as_deref();
    let pods_wanted = ctx.resource.plural == "pods";
    // Which nodes to ask: every node for pods, the selected (or named) ones for nodes.
    let asked: Vec<&Value> = nodes
        .iter()
        .filter(|n| pods_wanted || (name.is_none_or(|w| n["metadata"]["name"] == w) && selected(n)))
        .collect();
    let windows = futures_util::future::join_all(asked.iter().map(|node| async move {
        let node_name = node["metadata"]["name"].as_str().unwrap_or_default();
        (*node, node_window(ctx, node, node_name).await)
    }))
    .await;
    let mut items = Vec::new();
    if pods_wanted {
        let pods = cached(ctx, "pods", ctx.req.namespace.as_deref()).await?;
        let pods: HashMap<String, &Value> = pods
            .iter()
            .filter(|p| name.is_none_or(|w| p["metadata"]["name"] == w) && selected(p))
            .map(|p| {
                let ns = p["metadata"]["namespace"].as_str().unwrap_or_default();
                let pod_name = p["metadata"]["name"].as_str().unwrap_or_default();
                (format!("{ns}/{pod_name}"), p)
            })
            .collect();
        for (_, window) in &windows {
            let Some(window) = window else { continue };
            let mut keys: Vec<&String> =
                window.containers.keys().filter(|k| pods.contains_key(*k)).collect();
            keys.sort();
            for key in keys {
                let pod = pods[key];
                let containers: Vec<Value> = window.containers[key]
                    .iter()
                    .filter_map(|c| {
                        let u = window.usage.get(&format!("{key}/{c}"))?;
                        Some(json!({"name": c, "usage": usage(*u)}))
                    })
                    .collect();
                items.push(json!({
                    "kind": "PodMetrics",
                    "apiVersion": "metrics.k8s.io/v1beta1",
                    "metadata": {
                        "name": pod["metadata"]["name"],
                        "namespace": pod["metadata"]["namespace"],
                        "creationTimestamp": now,
                        "labels": labels(pod),
                    },
                    "timestamp": now,
                    "window": format!("{:.3}s", window.seconds),
                    "containers": containers,
                }));
            }
        }
    } else {
        for (node, window) in &windows {
            let Some(window) = window else { continue };
            let Some(u) = window.usage.get("") else { continue };
            items.push(json!({
                "kind": "NodeMetrics",
                "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {
                    "name": node["metadata"]["name"],
                    "creationTimestamp": now,
                    "labels": labels(node),
                },
                "timestamp": now,
                "window": format!("{:.3}s", window.seconds),
                "usage": usage(*u),
            }));
        }
    }
    if let Some(wanted) = name {
        let one = items.into_iter().next().ok_or_else(|| ctx.not_found(wanted))?;
        return Ok(json_response(StatusCode::OK, &one));
    }
    if ctx.wants_table() {
        let version = table::table_version(ctx.accept.as_deref());
        let table = table::table(
            "metrics.k8s.io",
            ctx.resource.kind,
            None,
            version,
            &items,
            Map::new(),
            true,
        );
        return Ok(json_response(StatusCode::OK, &table));
    }
    debug_assert!(matches!(ctx.req.verb, Verb::List));
    let list = json!({
        "kind": format!("{}List", ctx.resource.kind),
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {},
        "items": items,
    });
    Ok(json_response(StatusCode::OK, &list))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(node_cpu: u64, pod_cpu: u64) -> Value {
        json!({
            "node": {"nodeName": "n1",
                     "cpu": {"usageCoreNanoSeconds": node_cpu},
                     "memory": {"workingSetBytes": 2048 * 1024}},
            "pods": [{
                "podRef": {"name": "web", "namespace": "default", "uid": "u"},
                "cpu": {"usageCoreNanoSeconds": pod_cpu},
                "memory": {"workingSetBytes": 4096},
                "containers": [{"name": "httpd",
                                "cpu": {"usageCoreNanoSeconds": pod_cpu},
                                "memory": {"workingSetBytes": 3072}}],
            }],
        })
    }

    #[test]
    fn cpu_is_a_rate_over_the_window_and_memory_the_latest_working_set() {
        let start = Instant::now();
        let old = parse_summary(&summary(1_000_000_000, 100_000_000), start);
        let new =
            parse_summary(&summary(3_000_000_000, 150_000_000), start + Duration::from_secs(2));
        let w = window(&old, &new);
        assert!((w.seconds - 2.0).abs() < 1e-9);
        // 2 s of CPU time over 2 s: one core; the pod used 50 ms over 2 s: 25 millicores.
        assert_eq!(w.usage[""], Usage { nanocores: 1_000_000_000, bytes: 2048 * 1024 });
        assert_eq!(w.usage["default/web"].nanocores, 25_000_000);
        assert_eq!(w.usage["default/web/httpd"], Usage { nanocores: 25_000_000, bytes: 3072 });
        assert_eq!(w.containers["default/web"], ["httpd"]);
        assert_eq!(
            usage(w.usage["default/web/httpd"]),
            json!({"cpu": "25000000n", "memory": "3Ki"})
        );
    }

    #[test]
    fn a_counter_that_went_back_counts_as_idle() {
        let start = Instant::now();
        let old = parse_summary(&summary(5, 5), start);
        let new = parse_summary(&summary(1, 1), start + Duration::from_secs(1));
        assert_eq!(window(&old, &new).usage[""].nanocores, 0);
    }
}
