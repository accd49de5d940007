//! The kubelet: the node agent that registers its Node, keeps it alive with Lease heartbeats,
//! runs the pods bound to it through a [`Runtime`] ([`cri::CriRuntime`] on containerd for real
//! nodes, [`fake::FakeRuntime`] for hollow nodes) and reports their status.
//!
//! It is a client of the Kubernetes API and nothing else. [`host::run`] runs one kubelet (the
//! agent) or thousands (hollow nodes, `krust hollow`) in one process over shared watches.

pub mod cgroups;
pub mod cleanup;
pub mod containerd;
pub mod cri;
pub mod env;
pub mod fake;
pub mod host;
pub mod netns;
mod netprobe;
pub mod node;
mod pod;
pub mod probes;
pub mod runtime;
pub mod server;
pub mod static_pods;
pub mod volumes;

pub use node::NodeConfig;
pub use runtime::Runtime;

/// `status.nodeInfo.kubeletVersion`: the Kubernetes version whose kubelet behaviour we follow.
pub const KUBELET_VERSION: &str = "v1.35.0-krust";

/// Why the kubelet stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// A watch stream ended although it retries on its own.
    #[error("the {0} watch ended")]
    WatchEnded(&'static str),
    #[error("a kubelet task panicked")]
    TaskPanicked(#[source] tokio::task::JoinError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
