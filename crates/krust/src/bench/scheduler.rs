//! `krust bench scheduler`: upstream's SchedulingBasic through a real API server. A `krust
//! server` (this binary, spawned on loopback with a temporary sqlite store) gets N Node objects
//! and M pending pods; then a scheduler runs in this process until every pod is bound. The pods
//! name their own scheduler (`bench-scheduler`), so the server's in-process default scheduler
//! leaves them alone and the measured one is the only one binding them.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const SCHEDULER_NAME: &str = "bench-scheduler";
/// Creates in flight while filling the cluster.
const CREATE_CONCURRENCY: usize = 64;

#[derive(Debug, clap::Args)]
pub struct SchedulerArgs {
    /// Node objects in the cluster.
    #[arg(long, default_value_t = 5_000)]
    nodes: usize,
    /// Pending pods per run, one run per value.
    #[arg(long, value_delimiter = ',', default_value = "10000,50000")]
    pods: Vec<usize>,
    /// Give up on a run after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
}

async fn start_server() -> anyhow::Result<super::spawn::SpawnedServer> {
    // As upstream's scheduler_perf: API server and scheduler only (the bench's nodes have no
    // kubelets, so node lifecycle would taint them).
    super::spawn::spawn_server(Duration::from_secs(20), &["--disable-controller-manager"]).await
}

fn node(i: usize) -> anyhow::Result<Node> {
    let resources = json!({"cpu": "32", "memory": "256Gi", "pods": "110"});
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": format!("node-{i}"), "labels": {"kubernetes.io/hostname": format!("node-{i}")}},
        "status": {"capacity": resources, "allocatable": resources},
    }))?)
}

fn pod(i: usize) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": format!("pod-{i}"), "namespace": "default"},
        "spec": {
            "schedulerName": SCHEDULER_NAME,
            "containers": [{
                "name": "pause",
                "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}},
            }],
        },
    }))?)
}

async fn create_all<K>(api: &Api<K>, objects: Vec<K>) -> anyhow::Result<()>
where
    K: kube::Resource
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + k8s_openapi::serde::Serialize
        + std::fmt::Debug,
{
    let results: Vec<Result<K, kube::Error>> = futures_util::stream::iter(objects)
        .map(|o| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &o).await }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect()
        .await;
    for r in results {
        r.context("create")?;
    }
    Ok(())
}

struct RunReport {
    nodes: usize,
    pods: usize,
    pods_per_s: f64,
    attempt_p50_ms: f64,
    attempt_p99_ms: f64,
    e2e_p50_ms: f64,
    e2e_p99_ms: f64,
}

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    let q = super::quantiles(&mut samples, &[0.5, 0.99]);
    (q[0] * 1000.0, q[1] * 1000.0)
}

async fn run_basic(nodes: usize, pods: usize, timeout: Duration) -> anyhow::Result<RunReport> {
    let server = start_server().await?;
    let client = crate::server::kube_client(&server.kubeconfig, "krust-bench").await?;
    let fill = Instant::now();
    create_all(&Api::<Node>::all(client.clone()), (0..nodes).map(node).collect::<Result<_, _>>()?)
        .await?;
    create_all(
        &Api::<Pod>::namespaced(client.clone(), "default"),
        (0..pods).map(pod).collect::<Result<_, _>>()?,
    )
    .await?;
    eprintln!("created {nodes} nodes and {pods} pods in {:.1?}", fill.elapsed());

    let config = krust_scheduler::Config {
        profile: krust_scheduler::ProfileConfig {
            scheduler_name: SCHEDULER_NAME.into(),
            ..Default::default()
        },
        // It runs beside the server's own scheduler under another name: nothing to elect.
        leader_election: None,
        ..Default::default()
    };
    let scheduler = krust_scheduler::Scheduler::new(client, config);
    let metrics = scheduler.metrics();
    let stop = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(scheduler.run(stop.clone()));
    let outcome = loop {
        let done = metrics.snapshot().scheduled as usize;
        if done >= pods {
            break Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            break Err(anyhow::anyhow!("only {done} of {pods} pods bound in {timeout:?}"));
        }
        if task.is_finished() {
            break Err(anyhow::anyhow!("the scheduler stopped"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    stop.cancel();
    task.await.context("scheduler task")?.context("scheduler")?;
    let elapsed = outcome?;
    let (attempt_p50_ms, attempt_p99_ms) = percentiles(metrics.take_attempt_latencies());
    let (e2e_p50_ms, e2e_p99_ms) = percentiles(metrics.take_e2e_latencies());
    drop(server);
    Ok(RunReport {
        nodes,
        pods,
        pods_per_s: pods as f64 / elapsed.as_secs_f64(),
        attempt_p50_ms,
        attempt_p99_ms,
        e2e_p50_ms,
        e2e_p99_ms,
    })
}

pub async fn run(args: SchedulerArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.timeout_secs);
    let mut line = json!({"bench": "scheduler"});
    println!(
        "{:<28} {:>10} {:>14} {:>14} {:>12} {:>12}",
        "workload", "pods/s", "attempt p50ms", "attempt p99ms", "e2e p50ms", "e2e p99ms"
    );
    for &pods in &args.pods {
        let r = run_basic(args.nodes, pods, timeout).await?;
        let name = format!("basic_{}x{}", r.nodes, r.pods);
        println!(
            "{:<28} {:>10.0} {:>14.3} {:>14.3} {:>12.1} {:>12.1}",
            name, r.pods_per_s, r.attempt_p50_ms, r.attempt_p99_ms, r.e2e_p50_ms, r.e2e_p99_ms
        );
        line[format!("{name}_pods_per_s")] = json!(r.pods_per_s.round());
    }
    // Not measured yet (InterPodAffinity and PodTopologySpread are not implemented):
    // antiaffinity_pods_per_s, spread_pods_per_s.
    println!("{line}");
    Ok(())
}
