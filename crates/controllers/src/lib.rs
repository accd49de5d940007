//! The controller manager: upstream kube-controller-manager's controllers, each a client of the
//! Kubernetes API and nothing else, on shared plumbing — [`Informers`] (one list+watch per
//! resource per process, with caches and indexes), rate-limited [`WorkQueue`]s keyed by
//! object, [`Expectations`] (never over- or under-create while caches catch up), an
//! [`EventRecorder`], and leader election on the Lease `kube-system/kube-controller-manager`.
//!
//! Every controller is level-triggered: its handlers only queue keys, and its reconcile
//! function reads the desired and actual state from the caches and writes the difference.
//!
//! Entry point: [`run`], until its cancellation token fires. With [`Config::leader_election`]
//! set (the default) the controllers run only while this process holds the Lease; on losing it
//! they stop, drop their caches, and the manager campaigns again.

mod deployment;
mod discovery;
mod endpoints;
mod expectations;
mod garbagecollector;
mod informer;
mod namespace;
mod nodeipam;
mod nodelifecycle;
mod podgc;
pub mod pods;
mod queue;
mod replicaset;
mod rootcacert;
mod serviceaccount;
mod tainteviction;

pub use expectations::Expectations;
pub use informer::{Change, IndexFn, Informer, Informers, ObjectKey};
pub use krust_events::{EventRecorder, EventType, object_reference};
pub use nodeipam::Cidr;
pub use queue::WorkQueue;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use krust_leader::LeaderElectionConfig;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Why the controller manager stopped, or why one reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed; the key is retried with backoff.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// A watch stream ended although it retries on its own; a controller cannot go on blind.
    #[error("the {resource} watch ended")]
    WatchEnded { resource: String },
    /// Leader election cannot run (an invalid [`Config::leader_election`]).
    #[error("leader election")]
    LeaderElection(#[source] krust_leader::Error),
    /// One of the controllers' own tasks panicked.
    #[error("a controller task panicked")]
    TaskPanicked(#[source] tokio::task::JoinError),
    /// An object the controller must act on is malformed (e.g. an invalid selector).
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the controller manager runs, and how.
#[derive(Debug, Clone)]
pub struct Config {
    /// Leader election on a Lease; `None` runs the controllers at once (one manager only!).
    pub leader_election: Option<LeaderElectionConfig>,
    /// The controllers to run, by [`controller_names`] (all by default).
    pub controllers: Vec<String>,
    /// Concurrent reconciles per controller (upstream's `--concurrent-*-syncs`, default 5).
    pub workers: usize,
    /// The pod network the node IPAM controller hands out a range of to each node
    /// (`--cluster-cidr`); `None` turns node IPAM off (upstream's `--allocate-node-cidrs=false`).
    pub cluster_cidr: Option<Cidr>,
    /// The prefix length of each node's pod range (`--node-cidr-mask-size`, default 24).
    pub node_cidr_mask_size: u8,
    /// How long a node may go without a heartbeat (Lease renewal or Ready condition) before
    /// it is marked unknown (`--node-monitor-grace-period`, 50 s since 1.32).
    pub node_monitor_grace_period: Duration,
    /// The same for a node that never reported (`--node-startup-grace-period`, 60 s).
    pub node_startup_grace_period: Duration,
    /// How often node health is checked (`--node-monitor-period`, 5 s).
    pub node_monitor_period: Duration,
    /// Finished pods kept before the oldest are deleted (`--terminated-pod-gc-threshold`).
    pub terminated_pod_gc_threshold: usize,
    /// How often the pod garbage collector runs (upstream's `gcCheckPeriod`, 20 s).
    pub pod_gc_period: Duration,
    /// The cluster's CA bundle (PEM) the root CA publisher puts in every namespace's
    /// `kube-root-ca.crt`; `None` publishes nothing.
    pub root_ca: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            leader_election: Some(LeaderElectionConfig::new(
                "kube-system",
                "kube-controller-manager",
            )),
            controllers: controller_names().map(str::to_owned).collect(),
            workers: 5,
            cluster_cidr: None,
            node_cidr_mask_size: 24,
            node_monitor_grace_period: Duration::from_secs(50),
            node_startup_grace_period: Duration::from_secs(60),
            node_monitor_period: Duration::from_secs(5),
            terminated_pod_gc_threshold: 12_500,
            pod_gc_period: Duration::from_secs(20),
            root_ca: None,
        }
    }
}

/// What a controller gets to start with: the API client, the shared informers, an event
/// recorder, and the token that ends its term.
#[derive(Clone)]
pub struct Context {
    pub client: kube::Client,
    pub informers: Informers,
    pub events: EventRecorder,
    pub config: Config,
    pub stop: CancellationToken,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Registers a controller's informers and handlers and spawns its workers on `tasks`.
type Start = fn(&Context, &mut JoinSet<Result<()>>);

/// Every controller, by upstream's name for it (`--controllers`).
const CONTROLLERS: &[(&str, Start)] = &[
    ("replicaset", replicaset::start_replicasets),
    ("replicationcontroller", replicaset::start_rcs),
    ("deployment", deployment::start),
    ("endpoint", endpoints::start_endpoints),
    ("endpointslice", endpoints::start_slices),
    ("serviceaccount", serviceaccount::start),
    ("root-ca-cert-publisher", rootcacert::start),
    ("garbagecollector", garbagecollector::start),
    ("namespace", namespace::start),
    ("nodeipam", nodeipam::start),
    ("nodelifecycle", nodelifecycle::start),
    ("taint-eviction-controller", tainteviction::start),
    ("podgc", podgc::start),
];

/// The names of the controllers [`run`] starts.
pub fn controller_names() -> impl Iterator<Item = &'static str> {
    CONTROLLERS.iter().map(|(name, _)| *name)
}

/// Runs the controller manager with `config` until `shutdown` is cancelled.
pub async fn run(client: kube::Client, config: Config, shutdown: CancellationToken) -> Result<()> {
    let Some(election) = config.leader_election.clone() else {
        return run_term(client, config, shutdown).await;
    };
    let elector = krust_leader::LeaderElector::new(client.clone(), election)
        .map_err(Error::LeaderElection)?;
    let (leading_tx, mut leading) = watch::channel(false);
    let elector_stop = shutdown.child_token();
    let mut elector = tokio::spawn(elector.run(elector_stop.clone(), leading_tx));
    let result = loop {
        // Wait to lead.
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            changed = leading.wait_for(|l| *l) => if changed.is_err() { break Ok(()) },
        }
        tracing::info!("controller manager leading");
        let term = shutdown.child_token();
        let mut controllers =
            std::pin::pin!(run_term(client.clone(), config.clone(), term.clone()));
        let done = tokio::select! {
            r = &mut controllers => Some(r),
            _ = leading.wait_for(|l| !*l) => None,
        };
        match done {
            Some(r) => break r,
            None => {
                tracing::warn!("controller manager lost its lease; stopping the controllers");
                term.cancel();
                if let Err(e) = controllers.await {
                    break Err(e);
                }
            }
        }
    };
    elector_stop.cancel();
    let _ = (&mut elector).await;
    result
}

/// One term: fresh informers, the event writer and every controller, until `stop`.
async fn run_term(client: kube::Client, config: Config, stop: CancellationToken) -> Result<()> {
    let stop = stop.child_token();
    let mut tasks: JoinSet<Result<()>> = JoinSet::new();
    let informers = Informers::new(client.clone());
    let (events, writer) = EventRecorder::new(client.clone(), "controller-manager", stop.clone());
    tasks.spawn(async move {
        writer.await;
        Ok(())
    });
    let ctx = Context { client, informers: informers.clone(), events, config, stop: stop.clone() };
    for (name, start) in CONTROLLERS {
        if !ctx.config.controllers.iter().any(|c| c == name) {
            continue;
        }
        tracing::debug!(controller = name, "starting");
        start(&ctx, &mut tasks);
    }
    informers.start(&mut tasks, &stop);
    let result = loop {
        tokio::select! {
            _ = stop.cancelled() => break Ok(()),
            done = tasks.join_next() => match done {
                None => break Ok(()),
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => break Err(e),
                Some(Err(e)) => break Err(Error::TaskPanicked(e)),
            },
        }
    };
    stop.cancel();
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            tracing::warn!(error = %e, "controller task panicked");
        }
    }
    result
}

/// Runs `workers` loops that take keys from `queue` and reconcile them until `stop`: a failed
/// key comes back after its backoff, a successful one has its backoff cleared.
pub async fn run_workers<F, Fut>(
    controller: &'static str,
    queue: Arc<WorkQueue<ObjectKey>>,
    workers: usize,
    stop: CancellationToken,
    reconcile: F,
) -> Result<()>
where
    F: Fn(ObjectKey) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let reconcile = Arc::new(reconcile);
    let mut loops = JoinSet::new();
    for _ in 0..workers.max(1) {
        let queue = queue.clone();
        let reconcile = reconcile.clone();
        loops.spawn(async move {
            while let Some(key) = queue.get().await {
                match reconcile(key.clone()).await {
                    Ok(()) => queue.forget(&key),
                    Err(e) => {
                        tracing::info!(controller, %key, error = %e, "sync failed; retrying");
                        queue.add_rate_limited(key.clone());
                    }
                }
                queue.done(&key);
            }
        });
    }
    stop.cancelled().await;
    queue.shut_down();
    while loops.join_next().await.is_some() {}
    Ok(())
}

/// Runs `pass` every `period` until `stop` (for controllers that poll rather than react, as
/// upstream's node lifecycle and pod GC do); a failed pass is logged and retried next period.
pub(crate) async fn every<F, Fut>(
    period: Duration,
    stop: CancellationToken,
    what: &'static str,
    pass: F,
) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        if let Err(e) = pass().await {
            tracing::info!(error = %e, "{what} failed; retrying");
        }
    }
}
