//! `krust bench controllers`: a Deployment of N replicas on hollow nodes — the time until every
//! pod runs, then a full rolling update — against the API server's own write rate measured in
//! the same run: the API writes the work needs divided by that rate is the bound the
//! controllers are compared with (the ratio shows how much time they add on top).

use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::density::HollowCluster;

#[derive(Debug, clap::Args)]
pub struct ControllersArgs {
    /// Replicas of the Deployment.
    #[arg(long, default_value_t = 10_000)]
    replicas: usize,
    /// Hollow nodes.
    #[arg(long, default_value_t = 500)]
    nodes: usize,
    /// ConfigMap creates that measure the API write rate (64 at a time).
    #[arg(long, default_value_t = 5_000)]
    reference_writes: usize,
    /// Give up after this many seconds per phase.
    #[arg(long, default_value_t = 1800)]
    timeout_secs: u64,
    /// Print the Deployment's status counts every second (to stderr) while waiting.
    #[arg(long)]
    progress: bool,
}

/// API writes per pod to get it running: the ReplicaSet controller's create, the scheduler's
/// binding, the kubelet's status.
const WRITES_TO_RUN: usize = 3;
/// A rolling update replaces each pod: a new one running (3) and the old one gone (the
/// ReplicaSet controller's delete, the kubelet's final status and its delete).
const WRITES_TO_REPLACE: usize = WRITES_TO_RUN + 3;

async fn write_rate(client: &kube::Client, writes: usize) -> anyhow::Result<f64> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let started = Instant::now();
    let results: Vec<Result<ConfigMap, kube::Error>> = futures_util::stream::iter(0..writes)
        .map(|i| {
            let api = api.clone();
            async move {
                let cm = ConfigMap {
                    metadata: kube::api::ObjectMeta {
                        name: Some(format!("reference-{i}")),
                        ..Default::default()
                    },
                    data: Some([("k".to_owned(), "v".to_owned())].into()),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &cm).await
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(writes as f64 / started.elapsed().as_secs_f64())
}

async fn wait_rolled_out(
    api: &Api<Deployment>,
    replicas: i32,
    timeout: Duration,
    progress: bool,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let d = api.get("bench").await?;
        if progress && last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            let s = d.status.clone().unwrap_or_default();
            eprintln!(
                "{:6.1}s replicas {} updated {} ready {} available {}",
                started.elapsed().as_secs_f64(),
                s.replicas.unwrap_or(0),
                s.updated_replicas.unwrap_or(0),
                s.ready_replicas.unwrap_or(0),
                s.available_replicas.unwrap_or(0),
            );
        }
        let generation = d.metadata.generation.unwrap_or(0);
        if let Some(s) = &d.status {
            let done = s.observed_generation.unwrap_or(0) >= generation
                && s.updated_replicas == Some(replicas)
                && s.replicas == Some(replicas)
                && s.available_replicas == Some(replicas);
            if done {
                return Ok(started.elapsed().as_secs_f64());
            }
        }
        if started.elapsed() > timeout {
            bail!("the Deployment did not finish within {timeout:?}: {:?}", d.status);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn run(args: ControllersArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.timeout_secs);
    let per_node = args.replicas.div_ceil(args.nodes.max(1));
    // Room for the surge of a rolling update.
    let cluster = HollowCluster::start(args.nodes, per_node * 2 + 10, timeout).await?;
    let client = cluster.client.clone();
    let rate = write_rate(&client, args.reference_writes).await?;
    eprintln!("API write rate: {rate:.0} creates/s");

    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let replicas = i32::try_from(args.replicas)?;
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "bench"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "bench"}},
            "template": {
                "metadata": {"labels": {"app": "bench"}},
                "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "1m", "memory": "1Mi"}}}]},
            },
        },
    }))?;
    api.create(&PostParams::default(), &deployment).await?;
    let seconds_to_running = wait_rolled_out(&api, replicas, timeout, args.progress).await?;
    eprintln!("{replicas} pods running in {seconds_to_running:.1}s");

    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.11"}]}}}});
    api.patch("bench", &PatchParams::default(), &Patch::Strategic(&patch)).await?;
    let seconds_rollout = wait_rolled_out(&api, replicas, timeout, args.progress).await?;
    eprintln!("rolled out in {seconds_rollout:.1}s");

    let writes = args.replicas * (WRITES_TO_RUN + WRITES_TO_REPLACE);
    let bound = writes as f64 / rate;
    let ratio = (seconds_to_running + seconds_rollout) / bound;
    println!(
        "{:>9} {:>6} {:>12} {:>12} {:>12} {:>14} {:>8}",
        "replicas", "nodes", "running s", "rollout s", "writes/s", "api bound s", "ratio"
    );
    println!(
        "{:>9} {:>6} {:>12.1} {:>12.1} {:>12.0} {:>14.1} {:>8.2}",
        args.replicas, args.nodes, seconds_to_running, seconds_rollout, rate, bound, ratio
    );
    let round = |v: f64| (v * 100.0).round() / 100.0;
    println!(
        "{}",
        json!({
            "bench": "controllers",
            "replicas": args.replicas,
            "seconds_to_running": round(seconds_to_running),
            "seconds_rollout": round(seconds_rollout),
            "ratio_to_api_bound": round(ratio),
        })
    );
    Ok(())
}
