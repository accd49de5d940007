//! Leader election on a `coordination.k8s.io/v1` Lease, the way upstream's client-go
//! `leaderelection` package does it for kube-scheduler and kube-controller-manager: the leader
//! writes its identity and a fresh `renewTime` into the Lease every `retry_period`, steps down when
//! it could not renew within `renew_deadline`, and a candidate takes the Lease over once its
//! holder let `leaseDurationSeconds` pass without renewing. Every write is a compare-and-swap on
//! the Lease's `resourceVersion` (create when absent, replace otherwise), so two candidates never
//! both win the same round.
//!
//! Entry point: [`run`] (or [`LeaderElector::new`] + [`LeaderElector::run`]), which runs until its
//! cancellation token fires and reports every change of leadership on a `watch` channel (`true`
//! when acquired, `false` when lost or released). It keeps campaigning after a loss. On
//! cancellation the leader releases the Lease (upstream's `ReleaseOnCancel`) so a successor need
//! not wait for it to expire.
//!
//! It must never write anything but its own Lease, and never report leadership it does not hold:
//! the caller acts only while the channel says `true`.

mod config;
mod elector;
mod record;

pub use config::{LeaderElectionConfig, LeaseLock, default_identity};
pub use elector::LeaderElector;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Why leader election cannot run, or why one attempt on the Lease failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot guarantee one leader at a time (upstream's checks: the lease
    /// outlives the renew deadline, which outlives a jittered retry period; none is zero; the
    /// identity and the Lease's name are not empty).
    #[error("invalid leader election configuration: {0}")]
    InvalidConfig(&'static str),
    /// A read or write of the Lease failed; the elector logs it and retries.
    #[error("lease {lease}")]
    Api {
        lease: String,
        #[source]
        source: kube::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Campaigns for the Lease in `config` until `shutdown` is cancelled, sending `true` on
/// `leading` when it acquires the Lease and `false` when it loses or releases it. Returns an
/// error only for an invalid configuration; API failures are retried.
pub async fn run(
    client: kube::Client,
    config: LeaderElectionConfig,
    shutdown: CancellationToken,
    leading: watch::Sender<bool>,
) -> Result<()> {
    LeaderElector::new(client, config)?.run(shutdown, leading).await;
    Ok(())
}
