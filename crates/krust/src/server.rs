//! `krust server`: the control plane (API server, scheduler, controller manager).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tracing::info;

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Where the cluster keeps its state, certificates and admin.kubeconfig.
    #[arg(long, default_value = "/var/lib/krust")]
    data_dir: PathBuf,
    /// Address the API server listens on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// HTTPS port of the API server; 0 picks a free one (the kubeconfig names it).
    #[arg(long, default_value_t = 6443)]
    secure_port: u16,
    /// Where cluster state lives: `sqlite` (durable, in <data-dir>/db/state.db), `etcd`
    /// (`--etcd-servers`) or `memory` (lost on exit; for tests).
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    store: StoreKind,
    /// etcd client URLs for `--store etcd`, comma separated.
    #[arg(long, value_delimiter = ',', required_if_eq("store", "etcd"))]
    etcd_servers: Vec<String>,
    /// Key prefix in etcd, so that several clusters can share one.
    #[arg(long, default_value = "")]
    etcd_prefix: String,
    /// The pod network; each node gets a `--node-cidr-mask-size` range of it as its podCIDR.
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: krust_controllers::Cidr,
    /// Prefix length of each node's pod range.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u8).range(8..=30))]
    node_cidr_mask_size: u8,
    /// How long a node may go without a heartbeat before it is marked unknown (and its pods,
    /// after their tolerationSeconds, evicted). Go-style durations: 50s, 1m30s.
    #[arg(long, default_value = "50s", value_parser = parse_duration)]
    node_monitor_grace_period: std::time::Duration,
    /// Finished pods kept before the oldest are deleted (0: keep all).
    #[arg(long, default_value_t = 12_500)]
    terminated_pod_gc_threshold: usize,
    /// Controllers to run, as kube-controller-manager's flag: `*` for all, `name` to add one,
    /// `-name` to leave one out (e.g. `*,-podgc`).
    #[arg(long, value_delimiter = ',', default_value = "*")]
    controllers: Vec<String>,
    /// Run no controller manager (as k3s's flag; e.g. for scheduler benchmarks).
    #[arg(long)]
    disable_controller_manager: bool,
    /// Run no scheduler (as k3s's flag; e.g. to measure the API server alone).
    #[arg(long)]
    disable_scheduler: bool,
    /// Run no local node (as k3s's flag; `--no-agent` is the same): by default the server is
    /// also a node whose kubelet runs pods on containerd, with its state under `<data-dir>/agent`.
    #[arg(long, visible_alias = "no-agent")]
    disable_agent: bool,
    #[command(flatten)]
    node: crate::agent::NodeArgs,
}

/// The controllers `--controllers` selects, or an error naming an unknown one.
fn selected_controllers(items: &[String]) -> anyhow::Result<Vec<String>> {
    let known: Vec<&str> = krust_controllers::controller_names().collect();
    let mut selected: Vec<String> = Vec::new();
    if items.iter().any(|i| i == "*") {
        selected = known.iter().map(|n| (*n).to_owned()).collect();
    }
    for item in items.iter().filter(|i| *i != "*" && !i.is_empty()) {
        let (remove, name) = match item.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, item.as_str()),
        };
        anyhow::ensure!(
            known.contains(&name),
            "--controllers: unknown controller {name:?} (known: {})",
            known.join(", ")
        );
        selected.retain(|n| n != name);
        if !remove {
            selected.push(name.to_owned());
        }
    }
    Ok(selected)
}

/// A Go-style duration (`50s`, `1m30s`, `500ms`).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d: k8s_openapi::jiff::SignedDuration =
        s.parse().map_err(|e| format!("invalid duration {s:?}: {e}"))?;
    std::time::Duration::try_from(d).map_err(|_| format!("invalid duration {s:?}: negative"))
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StoreKind {
    Sqlite,
    Etcd,
    Memory,
}

async fn open_store(
    args: &ServerArgs,
    data_dir: &std::path::Path,
) -> anyhow::Result<Arc<dyn krust_store::Store>> {
    let config = match args.store {
        StoreKind::Sqlite => {
            let dir = data_dir.join("db");
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            krust_store::BackendConfig::Sqlite(krust_store::SqliteConfig::new(dir.join("state.db")))
        }
        StoreKind::Etcd => krust_store::BackendConfig::Etcd(
            krust_store::EtcdConfig::new(args.etcd_servers.clone())
                .with_key_prefix(args.etcd_prefix.clone()),
        ),
        StoreKind::Memory => {
            krust_store::BackendConfig::Memory(krust_store::MemoryConfig::default())
        }
    };
    krust_store::open_async(config).await.context("cannot open the store")
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    // `--disable-controller-manager` runs none of them (the garbage collector included).
    let enabled = match args.disable_controller_manager {
        true => Vec::new(),
        false => selected_controllers(&args.controllers)?,
    };
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create --data-dir {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)
        .with_context(|| format!("cannot resolve --data-dir {}", args.data_dir.display()))?;

    let shutdown = CancellationToken::new();
    let store = open_store(&args, &data_dir).await?;
    let apiserver = krust_apiserver::ApiServer::bind(krust_apiserver::Config {
        data_dir: data_dir.clone(),
        bind_address: args.bind_address,
        secure_port: args.secure_port,
        store: store.clone(),
        garbage_collector: enabled.iter().any(|c| c == "garbagecollector"),
    })
    .await?;
    println!("KUBECONFIG={} kubectl get nodes", apiserver.kubeconfig_path().display());
    let kubeconfig = apiserver.kubeconfig_path().to_owned();
    let apiserver_kubeconfig = kubeconfig.clone();
    let apiserver_kubeconfig_for_node = kubeconfig.clone();

    let mut tasks: tokio::task::JoinSet<anyhow::Result<()>> = tokio::task::JoinSet::new();
    let token = shutdown.clone();
    tasks.spawn(async move { Ok(apiserver.serve(token).await?) });
    // The scheduler is a client of the API like any other, over HTTPS with the admin identity.
    let token = shutdown.clone();
    if !args.disable_scheduler {
        tasks.spawn(async move {
            let client = kube_client(&kubeconfig, "kube-scheduler").await?;
            krust_scheduler::run(client, krust_scheduler::Config::default(), token)
                .await
                .context("scheduler")
        });
    }
    let controllers = krust_controllers::Config {
        controllers: enabled,
        cluster_cidr: Some(args.cluster_cidr),
        node_cidr_mask_size: args.node_cidr_mask_size,
        node_monitor_grace_period: args.node_monitor_grace_period,
        terminated_pod_gc_threshold: args.terminated_pod_gc_threshold,
        root_ca: std::fs::read_to_string(data_dir.join("pki").join("ca.crt")).ok(),
        ..krust_controllers::Config::default()
    };
    let token = shutdown.clone();
    let kubeconfig = apiserver_kubeconfig;
    if !args.disable_controller_manager {
        tasks.spawn(async move {
            let client = kube_client(&kubeconfig, "kube-controller-manager").await?;
            krust_controllers::run(client, controllers, token).await.context("controller manager")
        });
    }

    // Manifests of <data-dir>/manifests, applied now and on change (k3s's auto-deploy).
    let (kubeconfig, manifests, token) =
        (apiserver_kubeconfig_for_node.clone(), data_dir.join("manifests"), shutdown.clone());
    tasks.spawn(async move {
        crate::manifests::run(kubeconfig, manifests, token).await;
        Ok(())
    });
    if !args.disable_agent {
        let (kubeconfig, node_dir, node) =
            (apiserver_kubeconfig_for_node, data_dir.join("agent"), args.node.clone());
        let token = shutdown.clone();
        tasks.spawn(async move {
            crate::agent::serve(&kubeconfig, &node_dir, node, token).await.context("local node")
        });
    }

    let signal = shutdown_signal();
    tokio::select! {
        reason = signal => info!("{reason}: shutting down"),
        Some(done) = tasks.join_next() => {
            // A component that stops on its own takes the process down with its error.
            shutdown.cancel();
            done.context("a component panicked")??;
            anyhow::bail!("a component stopped unexpectedly");
        }
    }
    shutdown.cancel();
    while let Some(done) = tasks.join_next().await {
        done.context("a component panicked")??;
    }
    // Every acknowledged write is already durable; this stops the store's own threads.
    store.shutdown().await.context("store shutdown")?;
    Ok(())
}

/// A kube client for a component (`component` names it in its User-Agent, upstream's form:
/// `kube-scheduler/v1.35.0 (linux/amd64) kubernetes/krust`, so that the API server's default
/// field manager is the component's name), from a kubeconfig.
pub async fn kube_client(
    kubeconfig: &std::path::Path,
    component: &str,
) -> anyhow::Result<kube::Client> {
    let mut config = kube_config(kubeconfig).await?;
    // `git_version` is `v1.35.0+krust...`: upstream's UA carries the plain version.
    let agent = format!(
        "{component}/{} ({}/{}) kubernetes/krust",
        krust_apiserver::VersionInfo::current().git_version,
        std::env::consts::OS,
        if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }
    );
    if let Ok(value) = http::HeaderValue::from_str(&agent) {
        config.headers.push((http::header::USER_AGENT, value));
    }
    kube::Client::try_from(config).context("cannot build the API client")
}

/// A kubeconfig file, read.
pub async fn kube_config(kubeconfig: &std::path::Path) -> anyhow::Result<kube::Config> {
    let file = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("cannot read {}", kubeconfig.display()))?;
    kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
        .await
        .with_context(|| format!("invalid kubeconfig {}", kubeconfig.display()))
}

pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        // Without signal handlers the process still stops on the default action.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn select(items: &[&str]) -> anyhow::Result<Vec<String>> {
        selected_controllers(&items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn no_agent_is_the_contract_name_of_disable_agent() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            server: ServerArgs,
        }
        for flag in ["--no-agent", "--disable-agent"] {
            let cli = Cli::try_parse_from(["krust", flag]).expect("parses");
            assert!(cli.server.disable_agent, "{flag}");
        }
        assert!(!Cli::try_parse_from(["krust"]).expect("parses").server.disable_agent);
    }

    #[test]
    fn controllers_are_chosen_as_kube_controller_manager_does() {
        let all: Vec<String> = krust_controllers::controller_names().map(str::to_owned).collect();
        assert_eq!(select(&["*"]).expect("all"), all);
        let without = select(&["*", "-podgc"]).expect("all but one");
        assert_eq!(without.len(), all.len() - 1);
        assert!(!without.contains(&"podgc".to_owned()));
        assert_eq!(select(&["replicaset"]).expect("one"), ["replicaset"]);
        let err = select(&["*", "-nope"]).expect_err("unknown");
        assert!(err.to_string().contains("unknown controller \"nope\""), "{err}");
    }
}
