//! `krust bench podstartup`: pod start-up on one real node (containerd + runc + CNI), in a
//! network namespace of the benchmark's own. Pods (busybox sleeping) created one at a time,
//! then all at once; each pod's latency from create to Running (as its watch shows it). The
//! floor, measured in the same run on the same containerd: the same sandbox and container
//! through raw CRI calls. Also the agent's RSS with the pods running.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher::{self, Event};
use serde_json::json;

use super::quantiles;

#[derive(Debug, clap::Args)]
pub struct PodStartupArgs {
    /// Pods per phase (sequential, then at once).
    #[arg(long, default_value_t = 30)]
    pods: usize,
    /// Node images (busybox.tar, pause.tar), as `scripts/images.sh` builds them.
    #[arg(long, default_value = ".tools/images")]
    images_dir: PathBuf,
}

const NODE: &str = "bench-node";

/// The agent child process and what it leaves, cleaned up when dropped.
struct Agent {
    child: Option<tokio::process::Child>,
    data_dir: PathBuf,
    cgroup_root: String,
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        krust_kubelet::cleanup::force(&self.data_dir, &self.cgroup_root);
    }
}

fn pod(name: &str) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "podstartup"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]
        }
    }))?)
}

/// Creates `names` (all at once) and waits for each to run; returns each one's latency.
async fn start_pods(
    api: &Api<Pod>,
    names: &[String],
    timeout: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let watch =
        watcher::watcher(api.clone(), watcher::Config::default().labels("bench=podstartup"));
    let mut watch = std::pin::pin!(watch);
    // The watch is live before the first create.
    loop {
        match watch.next().await {
            Some(Ok(Event::InitDone)) => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("pod watch: {e}"),
            None => bail!("pod watch ended"),
        }
    }
    let mut created: HashMap<String, Instant> = HashMap::new();
    for name in names {
        let pod = pod(name)?;
        created.insert(name.clone(), Instant::now());
        api.create(&PostParams::default(), &pod).await.with_context(|| format!("create {name}"))?;
    }
    let mut running: HashMap<String, Duration> = HashMap::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while running.len() < names.len() {
        let event = tokio::time::timeout_at(deadline, watch.next()).await.map_err(|_| {
            anyhow::anyhow!("{} of {} pods Running within {timeout:?}", running.len(), names.len())
        })?;
        let Some(Ok(Event::Apply(p) | Event::InitApply(p))) = event else { continue };
        let name = p.metadata.name.clone().unwrap_or_default();
        if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            && let Some(start) = created.get(&name)
        {
            running.entry(name).or_insert_with(|| start.elapsed());
        }
    }
    Ok(running.into_values().collect())
}

/// The floor: sandbox + container created and started through CRI, `n` times in a row or
/// all at once.
async fn raw_cri(
    socket: &std::path::Path,
    data_dir: &std::path::Path,
    cgroup_root: &str,
    n: usize,
    concurrent: bool,
) -> anyhow::Result<Vec<Duration>> {
    use krust_kubelet::Runtime as _;
    use krust_kubelet::runtime::{ContainerConfig, SandboxConfig};
    let runtime = krust_kubelet::cri::CriRuntime::connect(
        socket,
        krust_kubelet::cri::CriOptions {
            cni_conf_dir: None,
            cni_ipam_dir: data_dir.join("containerd/cni/ipam"),
            pod_logs_dir: data_dir.join("raw-logs"),
            cgroup_root: cgroup_root.to_owned(),
        },
        Duration::from_secs(10),
    )
    .await?;
    let start = |i: usize| {
        let runtime = &runtime;
        async move {
            let started = Instant::now();
            let sandbox = runtime
                .run_pod_sandbox(&SandboxConfig {
                    namespace: "raw".into(),
                    name: format!("raw-{i}"),
                    uid: format!("raw-{i}-{}", std::process::id()),
                    hostname: format!("raw-{i}"),
                    ..SandboxConfig::default()
                })
                .await?;
            let container = runtime
                .create_container(
                    &sandbox.id,
                    &ContainerConfig {
                        name: "c".into(),
                        image: "busybox".into(),
                        command: vec!["sleep".into(), "3600".into()],
                        ..ContainerConfig::default()
                    },
                )
                .await?;
            runtime.start_container(&container).await?;
            Ok::<_, krust_kubelet::runtime::RuntimeError>((
                started.elapsed(),
                sandbox.id,
                container,
            ))
        }
    };
    let mut results = Vec::with_capacity(n);
    if concurrent {
        results = futures_util::future::join_all((0..n).map(|i| start(n + i))).await;
    } else {
        for i in 0..n {
            results.push(start(i).await);
        }
    }
    let mut samples = Vec::with_capacity(n);
    let mut made = Vec::new();
    for result in results {
        let (took, sandbox, container) = result?;
        samples.push(took);
        made.push((sandbox, container));
    }
    for (sandbox, container) in made {
        let _ = runtime.stop_container(&container, Duration::ZERO).await;
        let _ = runtime.remove_container(&container).await;
        let _ = runtime.stop_pod_sandbox(&sandbox).await;
        let _ = runtime.remove_pod_sandbox(&sandbox).await;
    }
    Ok(samples)
}

pub async fn run(args: PodStartupArgs) -> anyhow::Result<()> {
    anyhow::ensure!(is_root(), "bench podstartup runs a real node: run it as root");
    let images = std::fs::canonicalize(&args.images_dir)
        .with_context(|| format!("{}: run scripts/images.sh", args.images_dir.display()))?;
    let server = super::spawn::spawn_server(Duration::from_secs(30), &[]).await?;
    let client = crate::server::kube_client(&server.kubeconfig, "krust-bench").await?;
    let data_dir = server.data_dir.path().join("agent");
    std::fs::create_dir_all(&data_dir)?;
    let cgroup_root = format!("/krust-bench-{}", std::process::id());
    let mut agent =
        Agent { child: None, data_dir: data_dir.clone(), cgroup_root: cgroup_root.clone() };
    let child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("agent")
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args([
            "--node-name",
            NODE,
            "--node-ip",
            "127.0.0.1",
            "--kubelet-port",
            "0",
            "--log-level",
            "warn",
        ])
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--images-dir")
        .arg(&images)
        .arg("--pod-logs-dir")
        .arg(data_dir.join("logs"))
        .args(["--cgroup-root", &cgroup_root])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let agent_pid = child.id().context("agent pid")?;
    agent.child = Some(child);
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = nodes.get_opt(NODE).await?.is_some_and(|n| {
            n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some()
                && n.status
                    .and_then(|s| s.conditions)
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        });
        if ready {
            break;
        }
        if Instant::now() > deadline {
            bail!("the node did not become Ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let timeout = Duration::from_secs(120);
    // Warm-up: the first pod unpacks the images.
    start_pods(&api, &["warmup".to_owned()], timeout).await?;

    let mut sequential = Vec::new();
    for i in 0..args.pods {
        sequential.extend(start_pods(&api, &[format!("seq-{i}")], timeout).await?);
    }
    let names: Vec<String> = (0..args.pods).map(|i| format!("burst-{i}")).collect();
    let mut burst = start_pods(&api, &names, timeout).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let agent_rss = super::density::rss_mb(agent_pid);

    // Clean the node before the floor is measured on the same containerd.
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("bench=podstartup"),
    )
    .await?;
    // The kubelet deletes a pod from the API once its sandbox is gone.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !api.list(&ListParams::default().labels("bench=podstartup")).await?.items.is_empty() {
        if Instant::now() > deadline {
            bail!("the pods did not stop");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let socket = krust_kubelet::containerd::Layout::new(&data_dir, PathBuf::new()).socket();
    let mut raw = raw_cri(&socket, &data_dir, &cgroup_root, args.pods, false).await?;
    let mut raw_burst = raw_cri(&socket, &data_dir, &cgroup_root, args.pods, true).await?;

    let seq_q = quantiles(&mut sequential, &[0.5, 0.99]);
    let burst_q = quantiles(&mut burst, &[0.5, 0.99]);
    let raw_q = quantiles(&mut raw, &[0.5, 0.99]);
    let raw_burst_q = quantiles(&mut raw_burst, &[0.5, 0.99]);
    let mut all: Vec<Duration> = sequential.iter().chain(burst.iter()).copied().collect();
    let all_q = quantiles(&mut all, &[0.5, 0.99]);
    let overhead = if raw_q[0] > 0.0 { seq_q[0] / raw_q[0] } else { 0.0 };
    println!("phase                       p50 (s)   p99 (s)");
    println!("pods one at a time          {:>7.3}   {:>7.3}", seq_q[0], seq_q[1]);
    println!("pods all at once ({:>3})     {:>7.3}   {:>7.3}", args.pods, burst_q[0], burst_q[1]);
    println!("raw CRI sandbox+container   {:>7.3}   {:>7.3}   (the floor)", raw_q[0], raw_q[1]);
    println!(
        "raw CRI, all at once        {:>7.3}   {:>7.3}   (the floor)",
        raw_burst_q[0], raw_burst_q[1]
    );
    println!(
        "kubelet overhead (sequential p50 / raw p50): {overhead:.2}x   agent RSS with {} pods: {agent_rss:.1} MiB",
        args.pods
    );
    println!(
        "{}",
        json!({
            "bench": "podstartup",
            "p50_s": all_q[0],
            "p99_s": all_q[1],
            "sequential_p50_s": seq_q[0],
            "sequential_p99_s": seq_q[1],
            "burst_p50_s": burst_q[0],
            "burst_p99_s": burst_q[1],
            "raw_cri_p50_s": raw_q[0],
            "raw_cri_burst_p50_s": raw_burst_q[0],
            "raw_cri_burst_p99_s": raw_burst_q[1],
            "overhead_ratio": overhead,
            "agent_rss_mb": agent_rss,
        })
    );
    if let Some(mut child) = agent.child.take() {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &agent_pid.to_string()])
            .status()
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;
    }
    drop(agent);
    drop(server);
    Ok(())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Uid:").map(|v| v.split_whitespace().next() == Some("0"))
            })
        })
        .unwrap_or(false)
}
