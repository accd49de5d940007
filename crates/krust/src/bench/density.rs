//! `krust bench density`: upstream's density test on hollow nodes. A `krust server` and a
//! `krust hollow` process; the time until every hollow node is Ready; then Deployments whose
//! pods fill every node, with pod startup latency (first seen by a watch → seen Running by the
//! same watch), the API server's mutating-call latency (its own
//! `apiserver_request_duration_seconds`), and both processes' RSS and CPU time.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::runtime::watcher::{self, Event};
use serde_json::json;

#[derive(Debug, clap::Args)]
pub struct DensityArgs {
    /// Hollow nodes (with --pods-per-node: one run of that size; without: 1,000 then 5,000).
    #[arg(long)]
    nodes: Option<usize>,
    /// Pods per node.
    #[arg(long, default_value_t = 30)]
    pods_per_node: usize,
    /// Replicas per Deployment (or ReplicaSet).
    #[arg(long, default_value_t = 1000)]
    deployment_size: usize,
    /// What owns the pods: Deployments (upstream's choice) or bare ReplicaSets.
    #[arg(long, value_enum, default_value_t = Workload::Deployment)]
    workload: Workload,
    /// Give up on a step after this many seconds.
    #[arg(long, default_value_t = 1800)]
    timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Workload {
    Deployment,
    Replicaset,
}

struct Step {
    nodes: usize,
    pods: usize,
    nodes_ready_s: f64,
    running_s: f64,
    startup: [f64; 3],
    mutating_p99_s: f64,
    server_rss_mb: f64,
    hollow_rss_mb: f64,
    server_cpu_s: f64,
    hollow_cpu_s: f64,
}

/// Resident memory of a process, in MiB.
pub(super) fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// User + system CPU seconds of a process (clock ticks are 100 Hz on Linux).
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// p99 of the mutating calls in Prometheus text (upstream's histogram, all series merged,
/// interpolated within the bucket as `histogram_quantile` does).
fn mutating_p99(metrics: &str) -> f64 {
    let mut buckets: HashMap<String, f64> = HashMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_duration_seconds_bucket{") else {
            continue;
        };
        let mutating = ["POST", "PUT", "PATCH", "DELETE"]
            .iter()
            .any(|v| rest.contains(&format!("verb=\"{v}\"")));
        if !mutating {
            continue;
        }
        let le = rest.split("le=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("+Inf");
        let count: f64 = rest.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        *buckets.entry(le.to_owned()).or_default() += count;
    }
    let mut bounds: Vec<(f64, f64)> = buckets
        .into_iter()
        .map(|(le, n)| {
            (if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::INFINITY) }, n)
        })
        .collect();
    bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = bounds.last().map_or(0.0, |b| b.1);
    if total == 0.0 {
        return 0.0;
    }
    let rank = total * 0.99;
    let mut previous = (0.0, 0.0);
    for (le, n) in bounds {
        if n >= rank {
            if le.is_infinite() {
                return previous.0;
            }
            let within = if n > previous.1 { (rank - previous.1) / (n - previous.1) } else { 1.0 };
            return previous.0 + (le - previous.0) * within;
        }
        previous = (le, n);
    }
    previous.0
}

fn workload(kind: &str, name: &str, replicas: usize) -> anyhow::Result<DynamicObject> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "density": "true"}},
                "spec": {"containers": [{
                    "name": "pause",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "10m", "memory": "10Mi"}},
                }]},
            },
        },
    }))?)
}

async fn ready_nodes(api: &Api<Node>) -> anyhow::Result<usize> {
    let nodes = api.list(&ListParams::default()).await?;
    Ok(nodes
        .items
        .iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count())
}

/// A `krust server` with `nodes` hollow nodes, all Ready.
pub(super) struct HollowCluster {
    /// Both processes live as long as the cluster (they are killed when it is dropped).
    _server: super::spawn::SpawnedServer,
    _hollow: tokio::process::Child,
    pub client: kube::Client,
    pub server_pid: u32,
    pub hollow_pid: u32,
    pub nodes_ready_s: f64,
}

impl HollowCluster {
    pub(super) async fn start(
        nodes: usize,
        max_pods: usize,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        // Thousands of nodes need more /25 pod ranges than the default /16 holds.
        let network = ["--cluster-cidr", "100.64.0.0/10", "--node-cidr-mask-size", "25"];
        let server = super::spawn::spawn_server(Duration::from_secs(30), &network).await?;
        let server_pid = server.child.id().context("server pid")?;
        let client = crate::server::kube_client(&server.kubeconfig, "krust-bench").await?;
        let started = Instant::now();
        let mut hollow = tokio::process::Command::new(std::env::current_exe()?)
            .arg("hollow")
            .arg("--kubeconfig")
            .arg(&server.kubeconfig)
            .args(["--nodes", &nodes.to_string(), "--log-level", "warn"])
            .args(["--max-pods", &max_pods.to_string()])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let hollow_pid = hollow.id().context("hollow pid")?;
        let node_api: Api<Node> = Api::all(client.clone());
        loop {
            if ready_nodes(&node_api).await? >= nodes {
                break;
            }
            if started.elapsed() > timeout {
                bail!("hollow nodes not Ready within {timeout:?}");
            }
            if let Some(status) = hollow.try_wait()? {
                bail!("krust hollow exited: {status}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let nodes_ready_s = started.elapsed().as_secs_f64();
        eprintln!("{nodes} nodes Ready in {nodes_ready_s:.1}s");
        Ok(Self { _server: server, _hollow: hollow, client, server_pid, hollow_pid, nodes_ready_s })
    }
}

async fn run_step(args: &DensityArgs, nodes: usize) -> anyhow::Result<Step> {
    let pods = nodes * args.pods_per_node;
    let timeout = Duration::from_secs(args.timeout_secs);
    let cluster = HollowCluster::start(nodes, args.pods_per_node + 10, timeout).await?;
    let (client, server_pid, hollow_pid, nodes_ready_s) =
        (cluster.client.clone(), cluster.server_pid, cluster.hollow_pid, cluster.nodes_ready_s);

    // One watch sees each pod appear and turn Running.
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let watch =
        watcher::watcher(pod_api.clone(), watcher::Config::default().labels("density=true"));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let observer = tokio::spawn(async move {
        let mut first_seen: HashMap<String, Instant> = HashMap::new();
        let mut reported: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut watch = std::pin::pin!(watch);
        while let Some(event) = watch.next().await {
            let pod = match event {
                Ok(Event::Apply(p) | Event::InitApply(p)) => p,
                _ => continue,
            };
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let seen = *first_seen.entry(uid.clone()).or_insert_with(Instant::now);
            let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            if running && reported.insert(uid) {
                let _ = done_tx.send(seen.elapsed());
            }
        }
    });
    let creating = Instant::now();
    let (kind, resource) = match args.workload {
        Workload::Deployment => ("Deployment", ApiResource::erase::<Deployment>(&())),
        Workload::Replicaset => ("ReplicaSet", ApiResource::erase::<ReplicaSet>(&())),
    };
    let workload_api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &resource);
    let mut remaining = pods;
    let mut index = 0;
    while remaining > 0 {
        let size = remaining.min(args.deployment_size.max(1));
        let object = workload(kind, &format!("density-{index}"), size)?;
        workload_api.create(&PostParams::default(), &object).await?;
        remaining -= size;
        index += 1;
    }
    let mut latencies = Vec::with_capacity(pods);
    while latencies.len() < pods {
        let left = timeout.saturating_sub(creating.elapsed());
        match tokio::time::timeout(left, done_rx.recv()).await {
            Ok(Some(l)) => latencies.push(l),
            _ => bail!("only {} of {pods} pods Running within {timeout:?}", latencies.len()),
        }
        if latencies.len() % 10_000 == 0 {
            eprintln!(
                "{} pods Running after {:.1}s",
                latencies.len(),
                creating.elapsed().as_secs_f64()
            );
        }
    }
    let running_s = creating.elapsed().as_secs_f64();
    observer.abort();
    let startup = super::quantiles(&mut latencies, &[0.5, 0.9, 0.99]);
    let metrics = client
        .request_text(http::Request::get("/metrics").body(Vec::new())?)
        .await
        .context("GET /metrics")?;
    let step = Step {
        nodes,
        pods,
        nodes_ready_s,
        running_s,
        startup: [startup[0], startup[1], startup[2]],
        mutating_p99_s: mutating_p99(&metrics),
        server_rss_mb: rss_mb(server_pid),
        hollow_rss_mb: rss_mb(hollow_pid),
        server_cpu_s: cpu_s(server_pid),
        hollow_cpu_s: cpu_s(hollow_pid),
    };
    drop(cluster);
    Ok(step)
}

pub async fn run(args: DensityArgs) -> anyhow::Result<()> {
    let sizes = match args.nodes {
        Some(n) => vec![n],
        None => vec![1000, 5000],
    };
    println!(
        "{:>6} {:>7} {:>9} {:>10} {:>8} {:>8} {:>8} {:>12} {:>10} {:>10} {:>9} {:>9}",
        "nodes",
        "pods",
        "ready s",
        "running s",
        "p50 s",
        "p90 s",
        "p99 s",
        "mut p99 s",
        "srv MiB",
        "hol MiB",
        "srv cpu",
        "hol cpu"
    );
    let mut last = None;
    for nodes in sizes {
        let s = run_step(&args, nodes).await?;
        println!(
            "{:>6} {:>7} {:>9.1} {:>10.1} {:>8.2} {:>8.2} {:>8.2} {:>12.3} {:>10.0} {:>10.0} {:>9.1} {:>9.1}",
            s.nodes,
            s.pods,
            s.nodes_ready_s,
            s.running_s,
            s.startup[0],
            s.startup[1],
            s.startup[2],
            s.mutating_p99_s,
            s.server_rss_mb,
            s.hollow_rss_mb,
            s.server_cpu_s,
            s.hollow_cpu_s
        );
        last = Some(s);
    }
    if let Some(s) = last {
        let round = |v: f64| (v * 1000.0).round() / 1000.0;
        println!(
            "{}",
            json!({
                "bench": "density",
                "nodes": s.nodes,
                "pods": s.pods,
                "nodes_ready_s": round(s.nodes_ready_s),
                "startup_p50_s": round(s.startup[0]),
                "startup_p99_s": round(s.startup[2]),
                "api_mutating_p99_s": round(s.mutating_p99_s),
                "server_rss_mb": s.server_rss_mb.round(),
                "hollow_rss_mb": s.hollow_rss_mb.round(),
            })
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_interpolates_within_the_bucket_of_mutating_calls() {
        let text = "\
apiserver_request_duration_seconds_bucket{verb=\"POST\",le=\"0.1\"} 50
apiserver_request_duration_seconds_bucket{verb=\"POST\",le=\"0.2\"} 100
apiserver_request_duration_seconds_bucket{verb=\"POST\",le=\"+Inf\"} 100
apiserver_request_duration_seconds_bucket{verb=\"GET\",le=\"0.1\"} 0
apiserver_request_duration_seconds_bucket{verb=\"GET\",le=\"0.2\"} 0
apiserver_request_duration_seconds_bucket{verb=\"GET\",le=\"+Inf\"} 1000
";
        // Rank 99 of 100 sits 49/50 of the way through the 0.1-0.2 bucket; GETs do not count.
        assert!((mutating_p99(text) - 0.198).abs() < 1e-9, "{}", mutating_p99(text));
        assert_eq!(mutating_p99(""), 0.0);
    }
}
