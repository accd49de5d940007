//! Runs one or many kubelets in one process: each node registers and heartbeats on its own,
//! but they share the API connection, one watch of their pods and one watch of their Node
//! objects (for the pod CIDR) — so that thousands of hollow nodes cost the API server two
//! watches, not thousands.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt as _;
use kube::api::Api;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::node::{self, NodeConfig};
use crate::pod::{self, NodeHandle};
use crate::runtime::Runtime;
use crate::{Error, Result};

/// How many nodes register at once (so that 5,000 nodes do not open 5,000 requests at once).
const REGISTRATION_CONCURRENCY: usize = 64;

struct Kubelet {
    handle: Arc<NodeHandle>,
    pod_cidr: Mutex<Option<String>>,
    /// The Node as last seen (for admission).
    node: Mutex<Option<Arc<Node>>>,
    /// The pods admitted and not finished, by UID (what admission counts as running).
    admitted: Mutex<HashMap<String, Arc<Pod>>>,
    /// Pod workers by pod UID.
    workers: Mutex<HashMap<String, watch::Sender<Option<Arc<Pod>>>>>,
}

/// Runs kubelets for `nodes` (each with the runtime `runtime_for` makes) until `stop`.
/// `single_node` narrows the watches to one node's objects (the real agent); hollow processes
/// watch every bound pod and node and pick theirs.
pub async fn run(
    client: kube::Client,
    nodes: Vec<NodeConfig>,
    runtime_for: impl Fn(&NodeConfig) -> Arc<dyn Runtime>,
    single_node: bool,
    stop: CancellationToken,
) -> Result<()> {
    let mut tasks: JoinSet<Result<()>> = JoinSet::new();
    let (events, writer) =
        krust_events::EventRecorder::new(client.clone(), "kubelet", stop.clone());
    tasks.spawn(async move {
        writer.await;
        Ok(())
    });
    let mut kubelets: HashMap<String, Arc<Kubelet>> = HashMap::new();
    for config in &nodes {
        let handle = Arc::new(NodeHandle {
            client: client.clone(),
            events: events.for_host(&config.name),
            node_name: config.name.clone(),
            host_ip: config.host_ip.clone(),
            root_dir: config.root_dir.clone(),
            runtime: runtime_for(config),
        });
        kubelets.insert(
            config.name.clone(),
            Arc::new(Kubelet {
                handle,
                pod_cidr: Mutex::new(None),
                node: Mutex::new(None),
                admitted: Mutex::new(HashMap::new()),
                workers: Mutex::new(HashMap::new()),
            }),
        );
    }
    let kubelets = Arc::new(kubelets);

    // Registration, then heartbeats, per node.
    let registrations = futures::stream::iter(nodes.clone())
        .map(|config| {
            let client = client.clone();
            async move {
                // Upstream retries registration until it works, backing off to 7 s.
                let mut delay = std::time::Duration::from_millis(100);
                loop {
                    match node::register(&client, &config).await {
                        Ok(n) => return Ok::<_, Error>((config, n)),
                        Err(e) => {
                            tracing::warn!(node = %config.name, error = %e, "cannot register the node; retrying");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(std::time::Duration::from_secs(7));
                        }
                    }
                }
            }
        })
        .buffer_unordered(REGISTRATION_CONCURRENCY);
    let mut registrations = std::pin::pin!(registrations);
    while let Some(registered) = tokio::select! {
        _ = stop.cancelled() => return Ok(()),
        r = registrations.try_next() => r?,
    } {
        let (config, node) = registered;
        let Some(k) = kubelets.get(&config.name) else { continue };
        k.set_node(node.clone()).await;
        let (client, stop, runtime) = (client.clone(), stop.clone(), k.handle.runtime.clone());
        tasks.spawn(async move {
            node::heartbeat(client, config, node, runtime, stop).await;
            Ok(())
        });
    }
    tracing::info!(nodes = kubelets.len(), "nodes registered");

    let single = if single_node { nodes.first().map(|n| n.name.clone()) } else { None };
    let k = kubelets.clone();
    let token = stop.clone();
    let name = single.clone();
    let nodes_api: Api<Node> = Api::all(client.clone());
    tasks.spawn(async move { watch_nodes(nodes_api, name, k, token).await });
    let k = kubelets.clone();
    let token = stop.clone();
    let pods: Api<Pod> = Api::all(client.clone());
    tasks.spawn(async move { watch_pods(pods, single, k, token).await });

    let result = tokio::select! {
        _ = stop.cancelled() => Ok(()),
        Some(done) = tasks.join_next() => match done {
            Ok(r) => r,
            Err(e) => Err(Error::TaskPanicked(e)),
        },
    };
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    result
}

impl Kubelet {
    async fn set_node(&self, node: Node) {
        self.set_pod_cidr(&node).await;
        *self.node.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(node));
    }

    async fn set_pod_cidr(&self, node: &Node) {
        let Some(cidr) = node.spec.as_ref().and_then(|s| s.pod_cidr.clone()) else { return };
        {
            let mut current = self.pod_cidr.lock().unwrap_or_else(PoisonError::into_inner);
            if current.as_deref() == Some(cidr.as_str()) {
                return;
            }
            *current = Some(cidr.clone());
        }
        if let Err(e) = self.handle.runtime.update_pod_cidr(&cidr).await {
            tracing::warn!(node = %self.handle.node_name, error = %e, "cannot use the pod CIDR");
        }
    }

    /// Hands `pod` (or its removal) to its worker, starting one for a new pod it admits.
    fn dispatch(&self, uid: &str, pod: Option<Arc<Pod>>) {
        let mut workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        let mut admitted = self.admitted.lock().unwrap_or_else(PoisonError::into_inner);
        match (workers.get(uid), pod) {
            (Some(tx), Some(pod)) => {
                if is_finished(&pod) {
                    admitted.remove(uid);
                }
                tx.send_replace(Some(pod));
            }
            (Some(tx), None) => {
                tx.send_replace(None);
                workers.remove(uid);
                admitted.remove(uid);
            }
            (None, Some(pod)) => {
                if is_finished(&pod) && pod.metadata.deletion_timestamp.is_none() {
                    // Nothing to run (e.g. found at a restart); nothing to report.
                    return;
                }
                if pod.metadata.deletion_timestamp.is_none() {
                    let node = self.node.lock().unwrap_or_else(PoisonError::into_inner).clone();
                    let running: Vec<Arc<Pod>> = admitted.values().cloned().collect();
                    if let Some(node) = node
                        && let Err(rejection) =
                            krust_scheduler::admission::admit(&node, &running, &pod)
                    {
                        tokio::spawn(pod::reject(
                            self.handle.clone(),
                            pod,
                            rejection.reason,
                            rejection.message,
                        ));
                        return;
                    }
                    admitted.insert(uid.to_owned(), pod.clone());
                }
                let (tx, rx) = watch::channel(Some(pod));
                workers.insert(uid.to_owned(), tx);
                tokio::spawn(pod::run(self.handle.clone(), rx));
            }
            (None, None) => {}
        }
    }
}

async fn watch_nodes(
    api: Api<Node>,
    single: Option<String>,
    kubelets: Arc<HashMap<String, Arc<Kubelet>>>,
    stop: CancellationToken,
) -> Result<()> {
    let mut config = watcher::Config::default();
    if let Some(name) = &single {
        config = config.fields(&format!("metadata.name={name}"));
    }
    let stream = watcher::watcher(api, config).default_backoff();
    let mut stream = std::pin::pin!(stream);
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            e = stream.next() => e,
        };
        match event {
            None => return Err(Error::WatchEnded("nodes")),
            Some(Ok(Event::Apply(node) | Event::InitApply(node))) => {
                if let Some(k) = kubelets.get(&node.name_any()) {
                    k.set_node(node).await;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => tracing::debug!(error = %e, "node watch failed; retrying"),
        }
    }
}

async fn watch_pods(
    api: Api<Pod>,
    single: Option<String>,
    kubelets: Arc<HashMap<String, Arc<Kubelet>>>,
    stop: CancellationToken,
) -> Result<()> {
    let selector = match &single {
        Some(name) => format!("spec.nodeName={name}"),
        None => "spec.nodeName!=".to_owned(),
    };
    let stream =
        watcher::watcher(api, watcher::Config::default().fields(&selector)).default_backoff();
    let mut stream = std::pin::pin!(stream);
    // Pods seen in the current (re)list, to drop the workers of pods that went meanwhile.
    let mut listed: Option<HashSet<(String, String)>> = None;
    let mut known: HashSet<(String, String)> = HashSet::new();
    let mut orphans_checked = false;
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            e = stream.next() => e,
        };
        let (pod, present) = match event {
            None => return Err(Error::WatchEnded("pods")),
            Some(Err(e)) => {
                tracing::debug!(error = %e, "pod watch failed; retrying");
                continue;
            }
            Some(Ok(Event::Init)) => {
                listed = Some(HashSet::new());
                continue;
            }
            Some(Ok(Event::InitDone)) => {
                if let (Some(seen), false) = (&listed, orphans_checked) {
                    // Sandboxes of pods deleted while the kubelet was down: remove them.
                    orphans_checked = true;
                    for (name, k) in kubelets.iter() {
                        let keep: HashSet<String> = seen
                            .iter()
                            .filter(|(node, _)| node == name)
                            .map(|(_, uid)| uid.clone())
                            .collect();
                        let runtime = k.handle.runtime.clone();
                        tokio::spawn(async move {
                            match runtime.remove_orphans(&keep).await {
                                Ok(0) => {}
                                Ok(n) => tracing::info!(
                                    sandboxes = n,
                                    "removed the sandboxes of deleted pods"
                                ),
                                Err(e) => {
                                    tracing::warn!(error = %e, "cannot remove orphaned sandboxes")
                                }
                            }
                        });
                    }
                }
                if let Some(seen) = listed.take() {
                    for (node, uid) in known.difference(&seen) {
                        if let Some(k) = kubelets.get(node) {
                            k.dispatch(uid, None);
                        }
                    }
                    known = seen;
                }
                continue;
            }
            Some(Ok(Event::InitApply(pod))) => {
                if let Some(seen) = listed.as_mut() {
                    seen.insert((node_of(&pod), pod.uid().unwrap_or_default()));
                }
                (pod, true)
            }
            Some(Ok(Event::Apply(pod))) => (pod, true),
            Some(Ok(Event::Delete(pod))) => (pod, false),
        };
        let node = node_of(&pod);
        let Some(k) = kubelets.get(&node) else { continue };
        let uid = pod.uid().unwrap_or_default();
        if present {
            known.insert((node, uid.clone()));
            k.dispatch(&uid, Some(Arc::new(pod)));
        } else {
            known.remove(&(node, uid.clone()));
            k.dispatch(&uid, None);
        }
    }
}

fn is_finished(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

fn node_of(pod: &Pod) -> String {
    pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default()
}
