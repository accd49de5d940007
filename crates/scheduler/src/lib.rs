//! The Kubernetes scheduler: binds pending pods to nodes with upstream kube-scheduler's
//! framework (queue, cache and snapshot, PreFilter/Filter/PostFilter/PreScore/Score plugins).
//!
//! It is a client of the Kubernetes API and nothing else: it lists and watches Nodes and Pods,
//! and it writes only Bindings (`pods/binding`), the `PodScheduled` pod status condition
//! (`pods/status`) and Events. It works against any conformant API server.
//!
//! Entry point: [`run`] (or [`Scheduler::new`] + [`Scheduler::run`] to read its [`Metrics`]),
//! which runs until its cancellation token fires. With [`Config::leader_election`] set (the
//! default: Lease `kube-system/kube-scheduler`, upstream's timing) it schedules only while it holds
//! the Lease; on losing it, it stops scheduling, drops its queue and cache, and campaigns again,
//! starting from fresh lists when it leads again (upstream exits and is restarted instead). Pods whose `spec.schedulerName` is not
//! `default-scheduler` (the profile's name) and pods that already have a `spec.nodeName` are
//! left alone.

pub mod admission;
mod api;
pub mod cache;
pub mod framework;
mod metrics;
pub mod plugins;
mod queue;
pub mod resources;
mod scheduler;
#[cfg(test)]
mod testing;

/// The leader election the scheduler uses (its settings are part of [`Config`]).
pub use krust_leader as leader;
pub use metrics::{Metrics, MetricsSnapshot};
pub use plugins::{ProfileConfig, ResourceSpec, ScoringStrategyType};
pub use scheduler::{Config, Scheduler, try_schedule};

use tokio_util::sync::CancellationToken;

/// The scheduler name of the default profile (`spec.schedulerName` of the pods it schedules).
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// Why the scheduler stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A watch stream ended although it retries on its own; the scheduler cannot go on blind.
    #[error("the {resource} watch ended")]
    WatchEnded { resource: &'static str },
    /// Leader election cannot run (an invalid [`Config::leader_election`]).
    #[error("leader election")]
    LeaderElection(#[source] krust_leader::Error),
    /// One of the scheduler's own tasks panicked.
    #[error("a scheduler task panicked")]
    TaskPanicked(#[source] tokio::task::JoinError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs the scheduler with `config` until `shutdown` is cancelled.
pub async fn run(client: kube::Client, config: Config, shutdown: CancellationToken) -> Result<()> {
    Scheduler::new(client, config).run(shutdown).await
}
