//! `krust agent`: the node — a kubelet that registers this machine as a Node and runs the pods
//! bound to it, plus its static pods. The container runtime is the fake one until the CRI
//! runtime (containerd) lands; pods then run for real.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The cluster to join.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// This node's name (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// This node's address (default: the address of the interface that routes outwards).
    #[arg(long)]
    node_ip: Option<std::net::IpAddr>,
    /// Where the node keeps its state.
    #[arg(long, default_value = "/var/lib/krust-agent")]
    data_dir: PathBuf,
    /// A directory of Pod manifests to run as static pods.
    #[arg(long)]
    pod_manifest_path: Option<PathBuf>,
    /// How often the manifest directory is read (Go-style duration).
    #[arg(long, default_value = "20s", value_parser = crate::server::parse_duration)]
    file_check_frequency: Duration,
    /// The container runtime. Only `fake` (containers that run nothing) exists so far.
    #[arg(long, value_enum, default_value_t = RuntimeKind::Fake)]
    container_runtime: RuntimeKind,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RuntimeKind {
    Fake,
}

/// The local address a packet to the outside would leave from (no packet is sent).
fn outward_ip() -> std::net::IpAddr {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("10.255.255.255:9").map(|()| s))
        .and_then(|s| s.local_addr());
    probe.map_or(std::net::IpAddr::from([127, 0, 0, 1]), |a| a.ip())
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create --data-dir {}", args.data_dir.display()))?;
    let client = crate::server::kube_client(&args.kubeconfig, "kubelet").await?;
    let name = match args.node_name {
        Some(n) => n,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("cannot read the host name; pass --node-name")?
            .trim()
            .to_lowercase(),
    };
    let ip = args.node_ip.unwrap_or_else(outward_ip);
    let runtime: Arc<dyn krust_kubelet::Runtime> = match args.container_runtime {
        RuntimeKind::Fake => Arc::new(krust_kubelet::fake::FakeRuntime::new()),
    };
    let config =
        krust_kubelet::NodeConfig::from_machine(&name, &ip.to_string(), &runtime.version());
    let stop = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(dir) = args.pod_manifest_path {
        let (client, name, token) = (client.clone(), name.clone(), stop.clone());
        let period = args.file_check_frequency;
        tasks.spawn(async move {
            krust_kubelet::static_pods::run(client, name, dir, period, token).await;
            Ok(())
        });
    }
    let token = stop.clone();
    tasks.spawn(async move {
        krust_kubelet::host::run(client, vec![config], move |_| runtime.clone(), true, token).await
    });
    tokio::select! {
        reason = crate::server::shutdown_signal() => tracing::info!("{reason}: stopping the node"),
        Some(done) = tasks.join_next() => {
            stop.cancel();
            done.context("the kubelet panicked")??;
            anyhow::bail!("the kubelet stopped unexpectedly");
        }
    }
    stop.cancel();
    while let Some(done) = tasks.join_next().await {
        done.context("the kubelet panicked")??;
    }
    Ok(())
}
