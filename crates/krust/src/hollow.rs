//! `krust hollow`: N simulated nodes (kubemark/kwok style) in one process — real kubelets over
//! the fake runtime, sharing one API connection and one pod watch.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct HollowArgs {
    /// The cluster to join.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// How many nodes to run.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Node names are `<prefix>0`, `<prefix>1`, ...
    #[arg(long, default_value = "hollow-")]
    name_prefix: String,
    /// Pods each node accepts (`status.capacity.pods`).
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
}

pub async fn run(args: HollowArgs) -> anyhow::Result<()> {
    let client = crate::server::kube_client(&args.kubeconfig, "kubelet").await?;
    let nodes: Vec<krust_kubelet::NodeConfig> = (0..args.nodes)
        .map(|i| {
            let name = format!("{}{i}", args.name_prefix);
            // Node addresses from 10.255.0.0/16 onwards: unique per node, never routed.
            let ip = std::net::Ipv4Addr::from(
                0x0aff_0000_u32.wrapping_add(u32::try_from(i).unwrap_or(0) + 1),
            );
            let mut config = krust_kubelet::NodeConfig::new(&name, &ip.to_string(), "fake://krust");
            config.capacity.insert(
                "pods".into(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity(args.max_pods.to_string()),
            );
            config
        })
        .collect();
    let stop = CancellationToken::new();
    let token = stop.clone();
    let kubelets = tokio::spawn(async move {
        krust_kubelet::host::run(
            client,
            nodes,
            |_| {
                Arc::new(krust_kubelet::fake::FakeRuntime::new()) as Arc<dyn krust_kubelet::Runtime>
            },
            false,
            token,
        )
        .await
    });
    let mut kubelets = std::pin::pin!(kubelets);
    tokio::select! {
        reason = crate::server::shutdown_signal() => {
            tracing::info!("{reason}: stopping the hollow nodes");
            stop.cancel();
            kubelets.await.context("hollow nodes panicked")??;
        }
        done = &mut kubelets => done.context("hollow nodes panicked")??,
    }
    Ok(())
}
