//! The `krust` binary: parses flags and wires the components together. Nothing else lives here.

mod agent;
mod bench;
mod hollow;
mod logging;
mod manifests;
mod server;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "krust", version, about = "Kubernetes, written in Rust")]
struct Cli {
    /// Log verbosity: error, warn, info, debug, trace (or a tracing filter such as `krust_apiserver=debug`).
    #[arg(long, global = true, default_value = "info", env = "KRUST_LOG")]
    log_level: String,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = logging::Format::Text)]
    log_format: logging::Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane.
    Server(server::ServerArgs),
    /// Run a node: the kubelet for this machine.
    Agent(agent::AgentArgs),
    /// Run simulated nodes (real kubelets over a fake container runtime) for scale tests.
    Hollow(hollow::HollowArgs),
    /// Benchmarks: a table, then one JSON line of figures.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Print the krust and Kubernetes versions.
    Version {
        /// `json` prints the same object the API server serves at /version.
        #[arg(long, short = 'o')]
        output: Option<VersionOutput>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum VersionOutput {
    Json,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    logging::init(&cli.log_level, cli.log_format)?;
    match cli.command {
        Command::Version { output: None } => {
            let info = krust_apiserver::VersionInfo::current();
            println!("krust {} (Kubernetes {})", env!("CARGO_PKG_VERSION"), info.git_version);
            Ok(())
        }
        Command::Version { output: Some(VersionOutput::Json) } => {
            println!("{}", serde_json::to_string_pretty(&krust_apiserver::VersionInfo::current())?);
            Ok(())
        }
        Command::Server(args) => runtime()?.block_on(server::run(args)),
        Command::Agent(args) => runtime()?.block_on(agent::run(args)),
        Command::Hollow(args) => runtime()?.block_on(hollow::run(args)),
        Command::Bench(command) => {
            // A real node's pod network lives in a network namespace of the benchmark's own,
            // entered before the runtime's threads exist so that they all live there.
            let _netns = match command {
                bench::BenchCommand::Podstartup(_) => Some(krust_kubelet::netns::NetNs::enter()?),
                _ => None,
            };
            runtime()?.block_on(bench::run(command))
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
