//! The scheduler itself: two informers (nodes, pods) keep the cache and the queue current, and
//! one loop pops pods, runs the framework on a fresh snapshot, assumes the pod onto the chosen
//! node and binds it in the background.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::{self, EventRecorder, PodEvent};
use crate::cache::{Cache, NodeInfo, PodInfo, Snapshot};
use crate::framework::{ClusterEvents, CycleState, FitError, Framework, NodeToStatus, Status};
use crate::metrics::Metrics;
use crate::plugins::{self, ProfileConfig};
use crate::queue::{QueuedPod, SchedulingQueue};
use crate::{Error, Result};

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub profile: ProfileConfig,
    /// Bindings (and failure reports) in flight at once; more wait, which slows scheduling
    /// down to what the API server absorbs.
    pub max_in_flight_api_calls: usize,
    /// Schedule only while holding this Lease (upstream's `leaderElection`, on by default with
    /// the Lease `kube-system/kube-scheduler`); `None` schedules unconditionally.
    pub leader_election: Option<krust_leader::LeaderElectionConfig>,
}

/// Where upstream's kube-scheduler keeps its Lease.
pub const LEADER_ELECTION_NAMESPACE: &str = "kube-system";
pub const LEADER_ELECTION_LEASE: &str = "kube-scheduler";

impl Default for Config {
    fn default() -> Self {
        Self {
            profile: ProfileConfig::default(),
            max_in_flight_api_calls: 256,
            leader_election: Some(krust_leader::LeaderElectionConfig::new(
                LEADER_ELECTION_NAMESPACE,
                LEADER_ELECTION_LEASE,
            )),
        }
    }
}

/// Waits until leadership satisfies `want` (or the elector ended); holds no borrow of the
/// channel afterwards, so the future stays `Send` across the awaits that follow.
async fn wait_for(
    leading: &mut tokio::sync::watch::Receiver<bool>,
    want: impl FnMut(&bool) -> bool,
) {
    let _ = leading.wait_for(want).await.map(|_| ());
}

/// How often unschedulable pods are checked for the 5-minute retry.
const LEFTOVER_FLUSH_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct State {
    cache: Cache,
    queue: SchedulingQueue,
    nodes_synced: bool,
    pods_synced: bool,
    node_relist: Option<HashSet<String>>,
    pod_relist: Option<HashSet<String>>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    wake: Notify,
    scheduler_name: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The scheduler: construct with [`Scheduler::new`], then [`Scheduler::run`] until shutdown.
pub struct Scheduler {
    client: kube::Client,
    config: Config,
    framework: Arc<Framework>,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").field("config", &self.config).finish_non_exhaustive()
    }
}

fn node_changes(old: Option<&Node>, new: &Node) -> ClusterEvents {
    let Some(old) = old else {
        return ClusterEvents::NODE_ADD;
    };
    let mut events = ClusterEvents::NONE;
    let spec = |n: &Node| n.spec.clone().unwrap_or_default();
    let status = |n: &Node| n.status.clone().unwrap_or_default();
    let (old_spec, new_spec) = (spec(old), spec(new));
    let (old_status, new_status) = (status(old), status(new));
    if old_status.allocatable != new_status.allocatable {
        events |= ClusterEvents::NODE_ALLOCATABLE;
    }
    if old.metadata.labels != new.metadata.labels {
        events |= ClusterEvents::NODE_LABEL;
    }
    if old_spec.taints != new_spec.taints {
        events |= ClusterEvents::NODE_TAINT;
    }
    if old_spec.unschedulable != new_spec.unschedulable {
        events |= ClusterEvents::NODE_SPEC_UNSCHEDULABLE;
    }
    if old_status.images != new_status.images {
        events |= ClusterEvents::NODE_IMAGES;
    }
    events
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

fn assigned_node(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

impl Shared {
    fn apply_node(&self, state: &mut State, node: Node) {
        let Some(name) = node.metadata.name.clone() else {
            return;
        };
        let events = node_changes(state.cache.node(&name).as_deref(), &node);
        state.cache.set_node(Arc::new(node));
        if !events.is_empty() && state.queue.move_all_for(events, Instant::now()) {
            self.wake.notify_one();
        }
    }

    fn on_node_event(&self, event: Event<Node>) {
        let mut state = self.lock();
        match event {
            Event::Init => state.node_relist = Some(HashSet::new()),
            Event::InitApply(node) => {
                if let (Some(seen), Some(name)) =
                    (state.node_relist.as_mut(), node.metadata.name.clone())
                {
                    seen.insert(name);
                }
                self.apply_node(&mut state, node);
            }
            Event::InitDone => {
                let seen = state.node_relist.take().unwrap_or_default();
                for name in state.cache.node_names() {
                    if !seen.contains(&name) {
                        state.cache.remove_node(&name);
                    }
                }
                state.nodes_synced = true;
                self.wake.notify_one();
            }
            Event::Apply(node) => self.apply_node(&mut state, node),
            Event::Delete(node) => {
                if let Some(name) = node.metadata.name.as_deref() {
                    state.cache.remove_node(name);
                }
            }
        }
    }

    fn apply_pod(&self, state: &mut State, pod: Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if is_terminal(&pod) {
            self.delete_pod(state, &pod);
            return;
        }
        if assigned_node(&pod).is_some() {
            state.queue.delete(&uid);
            state.cache.set_pod(Arc::new(pod));
            return;
        }
        let ours = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or(crate::DEFAULT_SCHEDULER_NAME)
            == self.scheduler_name;
        if !ours || pod.metadata.deletion_timestamp.is_some() {
            state.queue.delete(&uid);
            return;
        }
        // An assumed pod's binding is on its way; an older unassigned copy must not requeue it.
        if state.cache.is_assumed(&uid) {
            return;
        }
        if state.queue.add_or_update(Arc::new(pod), Instant::now()) {
            self.wake.notify_one();
        }
    }

    fn delete_pod(&self, state: &mut State, pod: &Pod) {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        state.queue.delete(uid);
        let was_placed = state.cache.has_pod(uid);
        state.cache.remove_pod(uid);
        if was_placed
            && state.queue.move_all_for(ClusterEvents::ASSIGNED_POD_DELETE, Instant::now())
        {
            self.wake.notify_one();
        }
    }

    fn on_pod_event(&self, event: Event<Pod>) {
        let mut state = self.lock();
        match event {
            Event::Init => state.pod_relist = Some(HashSet::new()),
            Event::InitApply(pod) => {
                if let (Some(seen), Some(uid)) =
                    (state.pod_relist.as_mut(), pod.metadata.uid.clone())
                {
                    seen.insert(uid);
                }
                self.apply_pod(&mut state, pod);
            }
            Event::InitDone => {
                let seen = state.pod_relist.take().unwrap_or_default();
                for uid in state.cache.bound_pod_uids() {
                    if !seen.contains(&uid) {
                        state.cache.remove_pod(&uid);
                    }
                }
                state.queue.retain(&seen);
                state.pods_synced = true;
                self.wake.notify_one();
            }
            Event::Apply(pod) => self.apply_pod(&mut state, pod),
            Event::Delete(pod) => self.delete_pod(&mut state, &pod),
        }
    }
}

/// Why a cycle found no node.
enum ScheduleFailure {
    NoNodes,
    Fit(Box<FitError>),
    Internal(Status),
}

/// What the loop keeps between cycles.
struct Cycle {
    snapshot: Snapshot,
    next_start_node_index: usize,
}

impl Scheduler {
    pub fn new(client: kube::Client, config: Config) -> Self {
        let framework = Arc::new(plugins::default_framework(&config.profile));
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            scheduler_name: config.profile.scheduler_name.clone(),
        });
        Self { client, config, framework, shared, metrics: Arc::new(Metrics::default()) }
    }

    /// Counters and latencies, shared with whoever wants to read them while it runs.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Runs until `shutdown` is cancelled. Every task it starts ends before it returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        match self.config.leader_election.clone() {
            None => self.run_term(shutdown).await,
            Some(election) => self.run_elected(election, shutdown).await,
        }
    }

    /// Campaigns for the Lease and runs one scheduling term (informers, queue, loop) per stretch
    /// of leadership. A term ends before the Lease is released, so no binding is written after.
    async fn run_elected(
        &self,
        election: krust_leader::LeaderElectionConfig,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let elector = krust_leader::LeaderElector::new(self.client.clone(), election)
            .map_err(Error::LeaderElection)?;
        let (tx, mut leading) = tokio::sync::watch::channel(false);
        let elector_stop = CancellationToken::new();
        let elector = elector.run(elector_stop.clone(), tx);
        let mut elector = std::pin::pin!(elector);
        let mut elector_done = false;
        let result = loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break Ok(()),
                () = &mut elector => {
                    elector_done = true;
                    break Ok(());
                }
                _ = wait_for(&mut leading, |l| *l) => {}
            }
            tracing::info!("leading: scheduling starts");
            let term = shutdown.child_token();
            let scheduling = self.run_term(term.clone());
            let mut scheduling = std::pin::pin!(scheduling);
            tokio::select! {
                r = &mut scheduling => break r,
                () = &mut elector => {
                    elector_done = true;
                    term.cancel();
                    break scheduling.await;
                }
                _ = wait_for(&mut leading, |l| !*l) => {
                    tracing::warn!("lost the lease: scheduling stops until it is acquired again");
                    term.cancel();
                    if let Err(e) = scheduling.await {
                        break Err(e);
                    }
                }
            }
        };
        elector_stop.cancel();
        if !elector_done {
            elector.await;
        }
        result
    }

    /// One term: informers from fresh lists, the event recorder and the scheduling loop, until
    /// `stop` is cancelled or one of them fails.
    async fn run_term(&self, stop: CancellationToken) -> Result<()> {
        // A former term's assumed pods and queue must not leak into this one.
        *self.shared.lock() = State::default();
        let stop = stop.child_token();
        let mut tasks: JoinSet<Result<()>> = JoinSet::new();

        let nodes: Api<Node> = Api::all(self.client.clone());
        let shared = self.shared.clone();
        let token = stop.clone();
        tasks.spawn(async move {
            let stream = watcher::watcher(nodes, watcher::Config::default()).default_backoff();
            inform(stream, token, "nodes", |e| shared.on_node_event(e)).await
        });

        let pods: Api<Pod> = Api::all(self.client.clone());
        let shared = self.shared.clone();
        let token = stop.clone();
        tasks.spawn(async move {
            let config =
                watcher::Config::default().fields("status.phase!=Succeeded,status.phase!=Failed");
            let stream = watcher::watcher(pods, config).default_backoff();
            inform(stream, token, "pods", |e| shared.on_pod_event(e)).await
        });

        let (recorder, events_task) =
            EventRecorder::new(self.client.clone(), &self.shared.scheduler_name, stop.clone());
        tasks.spawn(async move {
            events_task.await;
            Ok(())
        });

        let result = tokio::select! {
            r = self.schedule_loop(stop.clone(), recorder) => r,
            Some(done) = tasks.join_next() => match done {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(Error::TaskPanicked(e)),
            },
        };
        stop.cancel();
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                tracing::warn!(error = %e, "scheduler task panicked");
            }
        }
        result
    }

    async fn schedule_loop(&self, stop: CancellationToken, recorder: EventRecorder) -> Result<()> {
        let mut api_calls: JoinSet<()> = JoinSet::new();
        let permits = Arc::new(Semaphore::new(self.config.max_in_flight_api_calls.max(1)));
        let mut cycle = Cycle { snapshot: Snapshot::default(), next_start_node_index: 0 };
        let mut next_leftover_flush = Instant::now() + LEFTOVER_FLUSH_INTERVAL;
        loop {
            while api_calls.try_join_next().is_some() {}
            if stop.is_cancelled() {
                break;
            }
            let now = Instant::now();
            let (popped, wakeup) = {
                let mut state = self.shared.lock();
                if !(state.nodes_synced && state.pods_synced) {
                    (None, None)
                } else {
                    if now >= next_leftover_flush {
                        state.queue.flush_unschedulable_leftover(now);
                        next_leftover_flush = now + LEFTOVER_FLUSH_INTERVAL;
                    }
                    let popped = state.queue.pop(now);
                    if popped.is_some() {
                        state.cache.update_snapshot(&mut cycle.snapshot);
                    }
                    (popped, state.queue.next_backoff_expiry())
                }
            };
            let Some((pod, pod_cycle)) = popped else {
                let until = wakeup.unwrap_or(next_leftover_flush).min(next_leftover_flush);
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = self.shared.wake.notified() => {}
                    _ = tokio::time::sleep_until(until) => {}
                    Some(_) = api_calls.join_next() => {}
                }
                continue;
            };
            let permit = tokio::select! {
                _ = stop.cancelled() => break,
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            self.schedule_one(&mut cycle, pod, pod_cycle, &recorder, permit, &mut api_calls);
        }
        // In-flight bindings finish or fail on their own; stop waiting for them at shutdown.
        api_calls.shutdown().await;
        Ok(())
    }

    fn schedule_one(
        &self,
        cycle: &mut Cycle,
        queued: QueuedPod,
        pod_cycle: u64,
        recorder: &EventRecorder,
        permit: tokio::sync::OwnedSemaphorePermit,
        api_calls: &mut JoinSet<()>,
    ) {
        let started = std::time::Instant::now();
        let pod = queued.info.clone();
        let mut state = CycleState::default();
        let result = schedule_pod(&self.framework, cycle, &mut state, &pod);
        self.metrics.record_attempt(started.elapsed());
        match result {
            Ok(node) => {
                let mut assumed = (*pod.pod).clone();
                if let Some(spec) = assumed.spec.as_mut() {
                    spec.node_name = Some(node.clone());
                }
                {
                    let mut s = self.shared.lock();
                    s.cache.assume_pod(Arc::new(assumed), &node);
                    s.queue.done(&pod.uid);
                }
                let client = self.client.clone();
                let shared = self.shared.clone();
                let recorder = recorder.clone();
                let metrics = self.metrics.clone();
                let first_seen = queued.first_seen;
                api_calls.spawn(async move {
                    let _permit = permit;
                    match api::bind(&client, &pod.pod, &node).await {
                        Ok(()) => {
                            metrics.record_scheduled(first_seen.elapsed());
                            recorder.record(PodEvent {
                                message: format!("Successfully assigned {} to {node}", pod_key(&pod.pod)),
                                pod: pod.pod,
                                warning: false,
                                reason: "Scheduled",
                                action: "Binding",
                            });
                        }
                        Err(e) => {
                            metrics.record_error();
                            tracing::info!(pod = %pod_key(&pod.pod), node, error = %e, "binding failed");
                            let gone = matches!(&e, kube::Error::Api(s) if s.code == 404);
                            {
                                let mut s = shared.lock();
                                s.cache.forget_pod(&pod.uid);
                                if !gone {
                                    // Back in the queue (upstream retries binding errors with backoff).
                                    s.queue.add_or_update(pod.pod.clone(), Instant::now());
                                }
                            }
                            shared.wake.notify_one();
                            if !gone {
                                let message = format!("running Bind plugin \"DefaultBinder\": {e}");
                                report_failure(&client, &recorder, pod.pod, "SchedulerError", message).await;
                            }
                        }
                    }
                });
            }
            Err(failure) => {
                let (message, events, error, reason) = match failure {
                    ScheduleFailure::NoNodes => (
                        "no nodes available to schedule pods".to_owned(),
                        ClusterEvents::NODE_ADD,
                        false,
                        "Unschedulable",
                    ),
                    ScheduleFailure::Fit(mut fit) => {
                        let (_, status) = self.framework.run_post_filter(
                            &state,
                            &pod,
                            &cycle.snapshot,
                            &fit.statuses,
                        );
                        fit.post_filter_msg = status.message();
                        let events = self.framework.events_for(&fit.statuses.plugins());
                        (fit.to_string(), events, false, "Unschedulable")
                    }
                    ScheduleFailure::Internal(status) => {
                        (status.message(), ClusterEvents::ALL, true, "SchedulerError")
                    }
                };
                self.metrics.record_unschedulable();
                tracing::debug!(pod = %pod_key(&pod.pod), %message, "unschedulable");
                self.shared.lock().queue.requeue(
                    &pod.uid,
                    pod_cycle,
                    events,
                    error,
                    Instant::now(),
                );
                let client = self.client.clone();
                let recorder = recorder.clone();
                api_calls.spawn(async move {
                    let _permit = permit;
                    report_failure(&client, &recorder, pod.pod, reason, message).await;
                });
            }
        }
    }
}

async fn report_failure(
    client: &kube::Client,
    recorder: &EventRecorder,
    pod: Arc<Pod>,
    reason: &str,
    message: String,
) {
    recorder.record(PodEvent {
        pod: pod.clone(),
        warning: true,
        reason: "FailedScheduling",
        action: "Scheduling",
        message: message.clone(),
    });
    if let Err(e) = api::set_unschedulable_condition(client, &pod, reason, &message).await {
        tracing::debug!(pod = %pod_key(&pod), error = %e, "cannot update the PodScheduled condition");
    }
}

/// Feeds one watch into the shared state until shutdown. The watch retries on its own (with
/// backoff); it ending is an error.
async fn inform<K, S>(
    stream: S,
    stop: CancellationToken,
    resource: &'static str,
    mut handle: impl FnMut(Event<K>),
) -> Result<()>
where
    S: futures::Stream<Item = std::result::Result<Event<K>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream.into_stream());
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            next = stream.next() => match next {
                None => return Err(Error::WatchEnded { resource }),
                Some(Err(e)) => tracing::warn!(resource, error = %e, "watch failed; retrying"),
                Some(Ok(event)) => handle(event),
            },
        }
    }
}

/// One scheduling cycle (upstream's `schedulePod`): PreFilter, Filter over a rotating window of
/// nodes, then scores and the pick.
fn schedule_pod(
    framework: &Framework,
    cycle: &mut Cycle,
    state: &mut CycleState,
    pod: &PodInfo,
) -> std::result::Result<String, ScheduleFailure> {
    let snapshot = &cycle.snapshot;
    if snapshot.is_empty() {
        return Err(ScheduleFailure::NoNodes);
    }
    let mut statuses = NodeToStatus::default();
    let (pre, status, plugins_with_nodes) = framework.run_pre_filter(state, pod, snapshot);
    if !status.is_success() {
        if !status.is_rejected() {
            return Err(ScheduleFailure::Internal(status));
        }
        let message = status.message();
        statuses.set_absent(status);
        return Err(ScheduleFailure::Fit(Box::new(FitError {
            num_all_nodes: snapshot.len(),
            statuses,
            pre_filter_msg: message,
            post_filter_msg: String::new(),
        })));
    }
    let narrowed: Vec<Arc<NodeInfo>>;
    let nodes: &[Arc<NodeInfo>] = match &pre.node_names {
        None => snapshot.nodes(),
        Some(names) => {
            let mut names: Vec<&String> = names.iter().collect();
            names.sort();
            narrowed = names.into_iter().filter_map(|n| snapshot.get(n).cloned()).collect();
            let mut plugins = plugins_with_nodes.clone();
            plugins.sort_unstable();
            statuses.set_absent(Status::unresolvable(format!(
                "node(s) didn't satisfy plugin(s) [{}]",
                plugins.join(" ")
            )));
            &narrowed
        }
    };
    let to_find = framework.num_feasible_nodes_to_find(nodes.len());
    let mut feasible: Vec<Arc<NodeInfo>> = Vec::new();
    let mut processed = 0;
    let len = nodes.len();
    for i in 0..len {
        let node = &nodes[(cycle.next_start_node_index + i) % len];
        processed += 1;
        let status = framework.run_filter(state, pod, node);
        if status.is_success() {
            feasible.push(node.clone());
            if feasible.len() >= to_find {
                break;
            }
        } else if status.is_rejected() {
            statuses.set(node.name(), status);
        } else {
            return Err(ScheduleFailure::Internal(status));
        }
    }
    if len > 0 {
        cycle.next_start_node_index = (cycle.next_start_node_index + processed) % len;
    }
    match feasible.len() {
        0 => Err(ScheduleFailure::Fit(Box::new(FitError {
            num_all_nodes: snapshot.len(),
            statuses,
            pre_filter_msg: String::new(),
            post_filter_msg: String::new(),
        }))),
        1 => Ok(feasible[0].name().to_owned()),
        _ => {
            let scores = framework
                .run_score(state, pod, &feasible, snapshot)
                .map_err(ScheduleFailure::Internal)?;
            Ok(feasible[select_host(&scores)].name().to_owned())
        }
    }
}

/// The index of the highest score, ties broken uniformly at random (reservoir sampling).
fn select_host(scores: &[i64]) -> usize {
    let mut best = 0;
    let mut ties = 1;
    for (i, score) in scores.iter().enumerate().skip(1) {
        if *score > scores[best] {
            best = i;
            ties = 1;
        } else if *score == scores[best] {
            ties += 1;
            if fastrand::usize(0..ties) == 0 {
                best = i;
            }
        }
    }
    best
}

/// Runs one cycle for `pod` on `snapshot` with the default profile: the chosen node, or the
/// FailedScheduling message (with the preemption part). For tests and benchmarks.
pub fn try_schedule(
    framework: &Framework,
    snapshot: &Snapshot,
    pod: &PodInfo,
) -> std::result::Result<String, String> {
    let mut cycle = Cycle { snapshot: snapshot.clone(), next_start_node_index: 0 };
    let mut state = CycleState::default();
    match schedule_pod(framework, &mut cycle, &mut state, pod) {
        Ok(node) => Ok(node),
        Err(ScheduleFailure::NoNodes) => Err("no nodes available to schedule pods".into()),
        Err(ScheduleFailure::Internal(s)) => Err(s.message()),
        Err(ScheduleFailure::Fit(mut fit)) => {
            let (_, status) =
                framework.run_post_filter(&state, pod, &cycle.snapshot, &fit.statuses);
            fit.post_filter_msg = status.message();
            Err(fit.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::default_framework;
    use crate::testing::{node, pod};

    fn fw() -> Framework {
        default_framework(&ProfileConfig::default())
    }

    #[test]
    fn the_issue_example_message() {
        // 3 nodes short of memory, 3 tainted: upstream's message (1.35 wording for taints).
        let mut nodes = Vec::new();
        for i in 0..3 {
            nodes.push(node(&format!("m{i}")).cpu("4").memory("1Gi").pods(110).info([]));
        }
        for i in 0..3 {
            nodes.push(
                node(&format!("t{i}"))
                    .cpu("4")
                    .memory("64Gi")
                    .pods(110)
                    .taint("key", "value", "NoSchedule")
                    .info([]),
            );
        }
        let snapshot = Snapshot::from_nodes(nodes);
        let err = try_schedule(&fw(), &snapshot, &pod("p").memory("2Gi").info())
            .expect_err("unschedulable");
        assert_eq!(
            err,
            "0/6 nodes are available: 3 Insufficient memory, 3 node(s) had untolerated taint(s). \
             preemption: 0/6 nodes are available: 6 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn resolvable_shortage_reports_no_victims() {
        let full = pod("e").memory("1Gi").node_name("a").build();
        let snapshot = Snapshot::from_nodes(vec![
            node("a").cpu("4").memory("2Gi").pods(110).info([full]),
            node("b").cpu("4").memory("4Gi").pods(110).unschedulable().info([]),
        ]);
        let err = try_schedule(&fw(), &snapshot, &pod("p").memory("1500Mi").info())
            .expect_err("unschedulable");
        assert_eq!(
            err,
            "0/2 nodes are available: 1 Insufficient memory, 1 node(s) were unschedulable. \
             preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, \
             1 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn filters_and_scores_pick_a_node() {
        let snapshot = Snapshot::from_nodes(vec![
            node("small").cpu("1").memory("1Gi").pods(110).info([]),
            node("big").cpu("8").memory("16Gi").pods(110).info([]),
            node("labelled").cpu("8").memory("16Gi").pods(110).label("disk", "ssd").info([]),
        ]);
        // LeastAllocated prefers the bigger nodes; both big ones tie.
        for _ in 0..20 {
            let got = try_schedule(&fw(), &snapshot, &pod("p").cpu("500m").memory("512Mi").info())
                .expect("fits");
            assert!(got == "big" || got == "labelled", "{got}");
        }
        let got = try_schedule(&fw(), &snapshot, &pod("p").node_selector("disk", "ssd").info())
            .expect("fits");
        assert_eq!(got, "labelled");
        let got = try_schedule(&fw(), &snapshot, &pod("p").cpu("2").info());
        assert!(got.is_ok());
        let err = try_schedule(&fw(), &snapshot, &pod("p").node_selector("disk", "hdd").info())
            .expect_err("no");
        assert_eq!(
            err,
            "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. \
             preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn match_fields_narrowing_message() {
        let snapshot = Snapshot::from_nodes(vec![
            node("a").cpu("1").pods(110).unschedulable().info([]),
            node("b").cpu("1").pods(110).info([]),
            node("c").cpu("1").pods(110).info([]),
        ]);
        let p = pod("p").required_field_term(&[("metadata.name", "In", &["a"])]).info();
        let err = try_schedule(&fw(), &snapshot, &p).expect_err("no");
        assert_eq!(
            err,
            "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't satisfy plugin(s) [NodeAffinity]. \
             preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn no_nodes() {
        assert_eq!(
            try_schedule(&fw(), &Snapshot::default(), &pod("p").info()),
            Err("no nodes available to schedule pods".into())
        );
    }

    #[test]
    fn preemption_never_policy() {
        let snapshot = Snapshot::from_nodes(vec![node("a").cpu("1").pods(110).info([])]);
        let mut p = pod("p").cpu("2").build();
        if let Some(spec) = p.spec.as_mut() {
            spec.preemption_policy = Some("Never".into());
        }
        let err = try_schedule(&fw(), &snapshot, &PodInfo::new(Arc::new(p))).expect_err("no");
        assert_eq!(
            err,
            "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
        );
    }

    #[test]
    fn select_host_breaks_ties_randomly() {
        let mut seen = HashSet::new();
        for _ in 0..200 {
            seen.insert(select_host(&[5, 9, 9, 1, 9]));
        }
        assert_eq!(seen, HashSet::from([1, 2, 4]));
        assert_eq!(select_host(&[1, 2, 3]), 2);
    }

    #[test]
    fn node_change_classification() {
        let a = node("n").cpu("1").build();
        assert_eq!(node_changes(None, &a), ClusterEvents::NODE_ADD);
        assert!(node_changes(Some(&a), &a).is_empty());
        let tainted = node("n").cpu("1").taint("k", "v", "NoSchedule").build();
        assert_eq!(node_changes(Some(&a), &tainted), ClusterEvents::NODE_TAINT);
        let bigger = node("n").cpu("2").build();
        assert_eq!(node_changes(Some(&a), &bigger), ClusterEvents::NODE_ALLOCATABLE);
        let cordoned = node("n").cpu("1").unschedulable().build();
        assert_eq!(node_changes(Some(&a), &cordoned), ClusterEvents::NODE_SPEC_UNSCHEDULABLE);
    }
}
