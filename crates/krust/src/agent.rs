//! `krust agent`: the node — a kubelet that registers this machine as a Node and runs the pods
//! bound to it, plus its static pods, on containerd through CRI: its own containerd (started
//! with a generated configuration under `--data-dir`, images imported from `--images-dir`)
//! unless `--container-runtime-endpoint` names one. `--container-runtime fake` runs pods on
//! the fake runtime instead (nothing runs; for tests).

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
    /// Where the node keeps its state.
    #[arg(long, default_value = "/var/lib/krust-agent")]
    data_dir: PathBuf,
    #[command(flatten)]
    node: NodeArgs,
}

/// The node's flags, shared by `krust agent` and the local agent of `krust server`.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// This node's name (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// This node's address (default: the address of the interface that routes outwards).
    #[arg(long)]
    node_ip: Option<std::net::IpAddr>,
    /// A directory of Pod manifests to run as static pods.
    #[arg(long)]
    pod_manifest_path: Option<PathBuf>,
    /// How often the manifest directory is read (Go-style duration).
    #[arg(long, default_value = "20s", value_parser = crate::server::parse_duration)]
    file_check_frequency: Duration,
    /// The container runtime: `remote` (a CRI runtime: containerd) or `fake` (containers
    /// that run nothing, for tests).
    #[arg(long, value_enum, default_value_t = RuntimeKind::Remote)]
    container_runtime: RuntimeKind,
    /// The CRI runtime's socket (`unix:///run/containerd/containerd.sock`); by default the
    /// node starts its own containerd under its data directory.
    #[arg(long)]
    container_runtime_endpoint: Option<String>,
    /// OCI image archives (`*.tar`, as `scripts/images.sh` builds them) imported into the
    /// runtime at start [default: <data-dir>/images].
    #[arg(long)]
    images_dir: Option<PathBuf>,
    /// Where the CNI plugins are.
    #[arg(long, default_value = "/usr/lib/cni")]
    cni_bin_dir: PathBuf,
    /// Where containers' log files go.
    #[arg(long, default_value = "/var/log/pods")]
    pod_logs_dir: PathBuf,
    /// The cgroup pods' cgroups are created under (cgroupfs driver).
    #[arg(long, default_value = "/")]
    cgroup_root: String,
    /// The port of the kubelet's HTTPS endpoint (container logs for the API server), on the
    /// node's address; 0 picks a free one.
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RuntimeKind {
    Remote,
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
    let stop = CancellationToken::new();
    let node = serve(&args.kubeconfig, &args.data_dir, args.node, stop.clone());
    tokio::pin!(node);
    tokio::select! {
        reason = crate::server::shutdown_signal() => {
            tracing::info!("{reason}: stopping the node");
            stop.cancel();
            node.await
        }
        done = &mut node => {
            done?;
            anyhow::bail!("the kubelet stopped unexpectedly");
        }
    }
}

/// Runs the node until `stop` is cancelled: the kubelet over the runtime `args` choose, with
/// its state under `data_dir`.
pub async fn serve(
    kubeconfig: &std::path::Path,
    data_dir: &std::path::Path,
    args: NodeArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the node's data dir {}", data_dir.display()))?;
    let client = crate::server::kube_client(kubeconfig, "kubelet").await?;
    let name = match args.node_name.clone() {
        Some(n) => n,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .context("cannot read the host name; pass --node-name")?
            .trim()
            .to_lowercase(),
    };
    let ip = args.node_ip.unwrap_or_else(outward_ip);
    let mut containerd = None;
    let mut tasks = tokio::task::JoinSet::new();
    let mut kubelet_port = args.kubelet_port;
    let runtime: Arc<dyn krust_kubelet::Runtime> = match args.container_runtime {
        RuntimeKind::Fake => Arc::new(krust_kubelet::fake::FakeRuntime::new()),
        RuntimeKind::Remote => {
            let (runtime, started) = cri_runtime(&args, data_dir).await?;
            containerd = started;
            let runtime = Arc::new(runtime);
            let tls = krust_kubelet::server::TlsConfig {
                client_ca: cluster_ca(kubeconfig).await?,
                pki_dir: data_dir.join("pki"),
                ips: vec![ip],
                names: vec![name.clone()],
            };
            let node = krust_kubelet::server::Node {
                node_name: name.clone(),
                pod_logs_dir: args.pod_logs_dir.clone(),
                runtime: runtime.clone(),
            };
            let (bound, serve) = krust_kubelet::server::bind(
                std::net::SocketAddr::new(ip, args.kubelet_port),
                &tls,
                node,
                stop.clone(),
            )
            .await
            .with_context(|| format!("cannot serve the kubelet on {ip}:{}", args.kubelet_port))?;
            kubelet_port = bound.port();
            tracing::info!(address = %bound, "kubelet server listening");
            tasks.spawn(async move {
                serve.await;
                Ok::<(), krust_kubelet::Error>(())
            });
            runtime
        }
    };
    let mut config =
        krust_kubelet::NodeConfig::from_machine(&name, &ip.to_string(), &runtime.version());
    config.kubelet_port = kubelet_port;
    if matches!(args.container_runtime, RuntimeKind::Remote) {
        config.root_dir = Some(data_dir.to_owned());
    }
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
    let mut result = Ok(());
    tokio::select! {
        () = stop.cancelled() => {}
        Some(done) = tasks.join_next() => {
            result = match done.context("the kubelet panicked") {
                Ok(Ok(())) => Err(anyhow::anyhow!("the kubelet stopped unexpectedly")),
                Ok(Err(e)) => Err(e.into()),
                Err(e) => Err(e),
            };
        }
    }
    stop.cancel();
    while let Some(done) = tasks.join_next().await {
        done.context("the kubelet panicked")??;
    }
    if let Some(containerd) = containerd {
        containerd.stop().await;
    }
    result
}

/// The cluster's CA certificates (DER), from the kubeconfig: the kubelet accepts clients
/// (the API server) with certificates it signed.
async fn cluster_ca(kubeconfig: &std::path::Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let config = crate::server::kube_config(kubeconfig).await?;
    config.root_cert.filter(|c| !c.is_empty()).context("the kubeconfig names no cluster CA")
}

/// Connects to the CRI runtime: the one `--container-runtime-endpoint` names, or a containerd
/// of our own (returned, to be stopped with the agent) with the images of `--images-dir`.
async fn cri_runtime(
    args: &NodeArgs,
    data_dir: &std::path::Path,
) -> anyhow::Result<(krust_kubelet::cri::CriRuntime, Option<krust_kubelet::containerd::Containerd>)>
{
    use krust_kubelet::containerd::{self, Layout};
    let layout = Layout::new(data_dir, args.cni_bin_dir.clone());
    let options = |cni_conf_dir| krust_kubelet::cri::CriOptions {
        cni_conf_dir,
        cni_ipam_dir: layout.cni_ipam_dir(),
        pod_logs_dir: args.pod_logs_dir.clone(),
        cgroup_root: args.cgroup_root.clone(),
    };
    if let Some(endpoint) = &args.container_runtime_endpoint {
        let socket = PathBuf::from(endpoint.trim_start_matches("unix://"));
        let runtime = krust_kubelet::cri::CriRuntime::connect(
            &socket,
            options(None),
            Duration::from_secs(30),
        )
        .await?;
        return Ok((runtime, None));
    }
    let started = containerd::Containerd::start(&layout)
        .with_context(|| format!("cannot start containerd in {}", layout.dir.display()))?;
    tracing::info!(pid = ?started.id(), socket = %layout.socket().display(), "containerd started");
    let runtime = krust_kubelet::cri::CriRuntime::connect(
        &layout.socket(),
        options(Some(layout.cni_conf_dir())),
        Duration::from_secs(60),
    )
    .await
    .with_context(|| format!("see {}", layout.dir.join("containerd.log").display()))?;
    let images = args.images_dir.clone().unwrap_or_else(|| data_dir.join("images"));
    let imported = containerd::import_images(&layout.socket(), &images)
        .await
        .with_context(|| format!("cannot import the images of {}", images.display()))?;
    tracing::info!(dir = %images.display(), archives = imported.len(), "images imported");
    Ok((runtime, Some(started)))
}
