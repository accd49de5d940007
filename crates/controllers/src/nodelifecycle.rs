//! Node lifecycle (upstream's `nodelifecycle` controller): a node whose kubelet stops
//! heartbeating — renewing its Lease in `kube-node-lease` or its `Ready` condition — for
//! longer than the grace period has its conditions set to `Unknown`; nodes get the
//! `node.kubernetes.io/*` taints their conditions call for (`not-ready`/`unreachable` both
//! NoSchedule and NoExecute, pressure and `unschedulable` NoSchedule), and the pods of a node
//! that stops being ready are marked not ready. Evicting pods from NoExecute-tainted nodes is
//! the taint eviction controller's job.
//!
//! When every node is unhealthy the controller assumes the control plane, not the nodes, lost
//! touch (upstream's full disruption mode) and adds no NoExecute taints, removing those present.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt as _;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use tokio::task::JoinSet;

use crate::pods::{self, NODE_NAME_INDEX};
use crate::{Config, Context, EventRecorder, EventType, Informer, ObjectKey, Result};

/// Where kubelets renew their node Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// The NoSchedule taints for conditions that are `True` (upstream's `nodeConditionToTaintKeyStatusMap`).
const CONDITION_TAINTS: [(&str, &str); 4] = [
    ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "node.kubernetes.io/pid-pressure"),
    ("NetworkUnavailable", "node.kubernetes.io/network-unavailable"),
];
/// Conditions the controller turns `Unknown` when the kubelet goes silent.
const KUBELET_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// What the controller last saw of a node's heartbeats.
#[derive(Debug, Clone)]
struct Health {
    /// When a heartbeat last changed, by the controller's clock.
    probe: Timestamp,
    ready_heartbeat: Option<Timestamp>,
    lease_renewal: Option<Timestamp>,
    /// The `Ready` status after our last check.
    ready: String,
}

struct Controller {
    client: kube::Client,
    nodes: Arc<Informer<Node>>,
    leases: Arc<Informer<Lease>>,
    pods: Arc<Informer<Pod>>,
    events: EventRecorder,
    config: Config,
    health: Mutex<HashMap<String, Health>>,
    /// Whether every node was unhealthy at the last check.
    full_disruption: std::sync::atomic::AtomicBool,
}

pub(crate) fn start(ctx: &Context, tasks: &mut JoinSet<Result<()>>) {
    let nodes = ctx.informers.get::<Node>();
    let client = ctx.client.clone();
    let leases = ctx.informers.get_or_insert(NODE_LEASE_NAMESPACE.to_owned(), || {
        Informer::new(Api::namespaced(client, NODE_LEASE_NAMESPACE), watcher::Config::default())
    });
    let pods = ctx.informers.get::<Pod>();
    pods.add_index(NODE_NAME_INDEX, pods::node_name_index);
    let controller = Arc::new(Controller {
        client: ctx.client.clone(),
        nodes,
        leases,
        pods,
        events: ctx.events.for_component("node-controller"),
        config: ctx.config.clone(),
        health: Mutex::new(HashMap::new()),
        full_disruption: std::sync::atomic::AtomicBool::new(false),
    });
    let c = controller.clone();
    c.nodes.add_handler({
        let events = controller.events.clone();
        move |change| {
            if let crate::Change::Added(node) = change {
                let name = node.name_any();
                events.record(
                    node.as_ref(),
                    EventType::Normal,
                    "RegisteredNode",
                    format!("Node {name} event: Registered Node {name} in Controller"),
                );
            }
        }
    });
    let stop = ctx.stop.clone();
    tasks.spawn(async move {
        controller.nodes.wait_synced().await;
        controller.leases.wait_synced().await;
        controller.pods.wait_synced().await;
        let period = controller.config.node_monitor_period;
        crate::every(period, stop, "node health check", || controller.monitor()).await
    });
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

fn ready_status(node: &Node) -> &str {
    condition(node, "Ready").map_or("Unknown", |c| c.status.as_str())
}

fn to_duration(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

impl Controller {
    async fn monitor(&self) -> Result<()> {
        let now = Timestamp::now();
        let mut result = Ok(());
        let mut nodes = self.nodes.list();
        nodes.sort_by_key(|n| n.name_any());
        let mut ready_after: Vec<(Arc<Node>, String)> = Vec::new();
        for node in &nodes {
            let observed = match self.check_health(node, now).await {
                Ok(status) => status,
                Err(e) => {
                    result = Err(e);
                    ready_status(node).to_owned()
                }
            };
            ready_after.push((node.clone(), observed));
        }
        let all_unhealthy =
            !ready_after.is_empty() && ready_after.iter().all(|(_, status)| status != "True");
        let was = self.full_disruption.swap(all_unhealthy, std::sync::atomic::Ordering::Relaxed);
        if all_unhealthy && !was {
            tracing::warn!("every node is unhealthy: no NoExecute taints (full disruption)");
        } else if was && !all_unhealthy {
            tracing::info!("a node is healthy again: leaving full disruption");
        }
        for (node, status) in &ready_after {
            if let Err(e) = self.reconcile_taints(node, status, all_unhealthy, now).await {
                result = Err(e);
            }
        }
        let names: Vec<String> = nodes.iter().map(|n| n.name_any()).collect();
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|name, _| names.contains(name));
        result
    }

    /// Updates what we know of the node's heartbeats and, past the grace period, marks its
    /// kubelet conditions `Unknown`. Returns the node's `Ready` status as it now stands.
    async fn check_health(&self, node: &Node, now: Timestamp) -> Result<String> {
        let name = node.name_any();
        let ready = condition(node, "Ready");
        let ready_heartbeat = ready.and_then(|c| c.last_heartbeat_time.as_ref()).map(|t| t.0);
        let lease_renewal = self
            .leases
            .get(&ObjectKey::namespaced(NODE_LEASE_NAMESPACE, &name))
            .and_then(|l| l.spec.as_ref().and_then(|s| s.renew_time.as_ref()).map(|t| t.0));
        let created = node.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
        let health = {
            let mut map = self.health.lock().unwrap_or_else(PoisonError::into_inner);
            let health = map.entry(name.clone()).or_insert_with(|| Health {
                probe: created,
                ready_heartbeat,
                lease_renewal: None,
                ready: ready_status(node).to_owned(),
            });
            if health.ready_heartbeat != ready_heartbeat {
                health.ready_heartbeat = ready_heartbeat;
                health.probe = now;
            }
            if lease_renewal.is_some() && lease_renewal > health.lease_renewal {
                health.lease_renewal = lease_renewal;
                health.probe = now;
            }
            health.clone()
        };
        let grace = if ready.is_none() {
            self.config.node_startup_grace_period
        } else {
            self.config.node_monitor_grace_period
        };
        let reported = ready_status(node).to_owned();
        let silent = now > health.probe.saturating_add(to_duration(grace)).unwrap_or(now);
        let status = if silent && (reported != "Unknown" || ready.is_none()) {
            self.mark_unknown(node, now).await?;
            "Unknown".to_owned()
        } else {
            reported
        };
        if let Some(h) = self.health.lock().unwrap_or_else(PoisonError::into_inner).get_mut(&name) {
            h.ready.clone_from(&status);
        }
        if health.ready == "True" && status != "True" {
            self.events.record(
                node,
                EventType::Normal,
                "NodeNotReady",
                format!("Node {name} status is now: NodeNotReady"),
            );
            self.mark_pods_not_ready(&name).await?;
        }
        Ok(status)
    }

    async fn mark_unknown(&self, node: &Node, now: Timestamp) -> Result<()> {
        let mut conditions = Vec::new();
        for type_ in KUBELET_CONDITIONS {
            let condition = match condition(node, type_) {
                None => NodeCondition {
                    type_: type_.to_owned(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(Time(now)),
                },
                Some(c) if c.status != "Unknown" => NodeCondition {
                    status: "Unknown".into(),
                    reason: Some("NodeStatusUnknown".into()),
                    message: Some("Kubelet stopped posting node status.".into()),
                    last_transition_time: Some(Time(now)),
                    ..c.clone()
                },
                Some(_) => continue,
            };
            conditions.push(condition);
        }
        if conditions.is_empty() {
            return Ok(());
        }
        let patch = json!({"status": {"conditions": conditions}});
        let api: Api<Node> = Api::all(self.client.clone());
        match api
            .patch_status(&node.name_any(), &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if crate::replicaset::is_status(&e, 404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Upstream's `MarkPodsNotReady`: the pods of a node that is not ready are not ready.
    async fn mark_pods_not_ready(&self, node: &str) -> Result<()> {
        let now = Time(Timestamp::now());
        for pod in self.pods.indexed(NODE_NAME_INDEX, node) {
            if !pods::is_ready(&pod) || pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let patch = json!({"status": {"conditions": [
                {"type": "Ready", "status": "False", "lastTransitionTime": now},
            ]}});
            let api: Api<Pod> = Api::namespaced(
                self.client.clone(),
                pod.metadata.namespace.as_deref().unwrap_or_default(),
            );
            if let Err(e) = api
                .patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(&patch))
                .await
                && !crate::replicaset::is_status(&e, 404)
            {
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Brings the node's `node.kubernetes.io/*` taints in line with its conditions.
    async fn reconcile_taints(
        &self,
        node: &Node,
        ready: &str,
        all_unhealthy: bool,
        now: Timestamp,
    ) -> Result<()> {
        let current: Vec<Taint> =
            node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        let wanted = wanted_taints(node, ready, all_unhealthy);
        let managed = |t: &Taint| {
            t.key == TAINT_NOT_READY
                || t.key == TAINT_UNREACHABLE
                || t.key == TAINT_UNSCHEDULABLE
                || CONDITION_TAINTS.iter().any(|(_, key)| t.key == *key)
        };
        let mut taints: Vec<Taint> = current
            .iter()
            .filter(|t| !managed(t) || wanted.iter().any(|(k, e)| t.key == *k && t.effect == *e))
            .cloned()
            .collect();
        for (key, effect) in &wanted {
            if !taints.iter().any(|t| t.key == *key && t.effect == *effect) {
                taints.push(Taint {
                    key: (*key).to_owned(),
                    effect: (*effect).to_owned(),
                    time_added: (*effect == "NoExecute").then_some(Time(now)),
                    value: None,
                });
            }
        }
        if taints == current {
            return Ok(());
        }
        // A whole-object update: the taints list has no merge key, so it is replaced, and the
        // resourceVersion makes sure nobody else's change is lost.
        let mut updated = node.clone();
        updated.spec.get_or_insert_default().taints =
            if taints.is_empty() { None } else { Some(taints) };
        let api: Api<Node> = Api::all(self.client.clone());
        match api.replace(&node.name_any(), &PostParams::default(), &updated).await {
            Ok(_) => Ok(()),
            // The next check (5 s) retries from the fresher cache.
            Err(e) if crate::replicaset::is_status(&e, 409) => Ok(()),
            Err(e) if crate::replicaset::is_status(&e, 404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// The controller's taints a node should carry, as (key, effect).
fn wanted_taints(
    node: &Node,
    ready: &str,
    all_unhealthy: bool,
) -> Vec<(&'static str, &'static str)> {
    let mut wanted = Vec::new();
    match ready {
        "False" => wanted.push((TAINT_NOT_READY, "NoSchedule")),
        "Unknown" => wanted.push((TAINT_UNREACHABLE, "NoSchedule")),
        _ => {}
    }
    if !all_unhealthy {
        match ready {
            "False" => wanted.push((TAINT_NOT_READY, "NoExecute")),
            "Unknown" => wanted.push((TAINT_UNREACHABLE, "NoExecute")),
            _ => {}
        }
    }
    for (type_, key) in CONDITION_TAINTS {
        if condition(node, type_).is_some_and(|c| c.status == "True") {
            wanted.push((key, "NoSchedule"));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        wanted.push((TAINT_UNSCHEDULABLE, "NoSchedule"));
    }
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus};

    fn node(conditions: &[(&str, &str)], unschedulable: bool) -> Node {
        Node {
            metadata: Default::default(),
            spec: Some(NodeSpec { unschedulable: Some(unschedulable), ..Default::default() }),
            status: Some(NodeStatus {
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(t, s)| NodeCondition {
                            type_: (*t).into(),
                            status: (*s).into(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn taints_follow_conditions() {
        let n = node(&[("Ready", "True"), ("MemoryPressure", "True")], true);
        assert_eq!(
            wanted_taints(&n, "True", false),
            [
                ("node.kubernetes.io/memory-pressure", "NoSchedule"),
                (TAINT_UNSCHEDULABLE, "NoSchedule")
            ]
        );
        let n = node(&[("Ready", "Unknown")], false);
        assert_eq!(
            wanted_taints(&n, "Unknown", false),
            [(TAINT_UNREACHABLE, "NoSchedule"), (TAINT_UNREACHABLE, "NoExecute")]
        );
        assert_eq!(
            wanted_taints(&node(&[("Ready", "False")], false), "False", false),
            [(TAINT_NOT_READY, "NoSchedule"), (TAINT_NOT_READY, "NoExecute")]
        );
        // Full disruption: nothing is evicted.
        assert_eq!(wanted_taints(&n, "Unknown", true), [(TAINT_UNREACHABLE, "NoSchedule")]);
    }
}
