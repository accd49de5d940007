//! The pod garbage collector (upstream's `podgc`): periodically deletes finished pods above
//! `--terminated-pod-gc-threshold` (oldest first), pods bound to nodes that no longer exist
//! (marked `Failed` with a `DisruptionTarget` condition first), and pods being deleted that were
//! never bound (no kubelet will ever finish them).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use tokio::task::JoinSet;

use crate::pods;
use crate::{Context, Informer, ObjectKey, Result};

/// How long a pod's node must be missing before the pod counts as orphaned (upstream's
/// `quarantineTime`), so that a node being re-registered does not lose its pods.
const QUARANTINE: Duration = Duration::from_secs(40);

struct Controller {
    client: kube::Client,
    nodes: Arc<Informer<Node>>,
    pods: Arc<Informer<Pod>>,
    threshold: usize,
    /// Nodes seen missing, and since when.
    missing_since: std::sync::Mutex<std::collections::HashMap<String, tokio::time::Instant>>,
}

pub(crate) fn start(ctx: &Context, tasks: &mut JoinSet<Result<()>>) {
    let controller = Arc::new(Controller {
        client: ctx.client.clone(),
        nodes: ctx.informers.get::<Node>(),
        pods: ctx.informers.get::<Pod>(),
        threshold: ctx.config.terminated_pod_gc_threshold,
        missing_since: Default::default(),
    });
    let stop = ctx.stop.clone();
    let period = ctx.config.pod_gc_period;
    tasks.spawn(async move {
        controller.nodes.wait_synced().await;
        controller.pods.wait_synced().await;
        crate::every(period, stop, "pod garbage collection", || controller.collect()).await
    });
}

fn finished(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// The finished pods to delete so that at most `threshold` remain, oldest first.
fn excess_finished(mut finished: Vec<Arc<Pod>>, threshold: usize) -> Vec<Arc<Pod>> {
    if threshold == 0 || finished.len() <= threshold {
        return Vec::new();
    }
    finished.sort_by(|a, b| {
        let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(a).cmp(&created(b)).then_with(|| a.name_any().cmp(&b.name_any()))
    });
    let excess = finished.len() - threshold;
    finished.truncate(excess);
    finished
}

impl Controller {
    async fn collect(&self) -> Result<()> {
        let all = self.pods.list();
        let mut result = Ok(());
        let finished_pods: Vec<Arc<Pod>> = all
            .iter()
            .filter(|p| finished(p) && p.metadata.deletion_timestamp.is_none())
            .cloned()
            .collect();
        for pod in excess_finished(finished_pods, self.threshold) {
            if let Err(e) = self.force_delete(&pod).await {
                result = Err(e);
            }
        }
        // Pods bound to nodes that are gone.
        let now = tokio::time::Instant::now();
        let mut orphans = Vec::new();
        {
            let mut missing =
                self.missing_since.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut still_missing = std::collections::HashMap::new();
            for pod in &all {
                let Some(node) = pods::node_name_index(pod).pop() else { continue };
                if self.nodes.get(&ObjectKey::cluster(&node)).is_some() {
                    continue;
                }
                let since = *missing.get(&node).unwrap_or(&now);
                still_missing.insert(node, since);
                if now.duration_since(since) >= QUARANTINE {
                    orphans.push(pod.clone());
                }
            }
            *missing = still_missing;
        }
        for pod in orphans {
            if let Err(e) = self.collect_orphan(&pod).await {
                result = Err(e);
            }
        }
        // Terminating pods that were never bound.
        for pod in &all {
            if pod.metadata.deletion_timestamp.is_some()
                && pods::node_name_index(pod).is_empty()
                && let Err(e) = self.force_delete(pod).await
            {
                result = Err(e);
            }
        }
        result
    }

    async fn collect_orphan(&self, pod: &Pod) -> Result<()> {
        let node = pods::node_name_index(pod).pop().unwrap_or_default();
        // The cache may lag: make sure the node is really gone.
        let nodes: Api<Node> = Api::all(self.client.clone());
        if nodes.get_opt(&node).await?.is_some() {
            return Ok(());
        }
        if !finished(pod) {
            let status = json!({"status": {
                "phase": "Failed",
                "conditions": [{
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "DeletionByPodGC",
                    "message": "PodGC: node no longer exists",
                    "lastTransitionTime": Timestamp::now().to_string(),
                }],
            }});
            let api = self.api(pod);
            match api
                .patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(&status))
                .await
            {
                Err(e) if crate::replicaset::is_status(&e, 404) => return Ok(()),
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
        }
        self.force_delete(pod).await
    }

    fn api(&self, pod: &Pod) -> Api<Pod> {
        Api::namespaced(self.client.clone(), pod.metadata.namespace.as_deref().unwrap_or_default())
    }

    async fn force_delete(&self, pod: &Pod) -> Result<()> {
        tracing::info!(pod = %ObjectKey::of(pod), "garbage collecting pod");
        match self.api(pod).delete(&pod.name_any(), &DeleteParams::default().grace_period(0)).await
        {
            Ok(_) => Ok(()),
            Err(e) if crate::replicaset::is_status(&e, 404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn pod(name: &str, age: i64) -> Arc<Pod> {
        let created =
            Timestamp::now().checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(age)).ok();
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: created.map(Time),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    #[test]
    fn the_oldest_finished_pods_above_the_threshold_go() {
        let pods = vec![pod("new", 1), pod("old", 100), pod("mid", 50)];
        let names = |v: Vec<Arc<Pod>>| v.iter().map(|p| p.name_any()).collect::<Vec<_>>();
        assert_eq!(names(excess_finished(pods.clone(), 1)), ["old", "mid"]);
        assert!(excess_finished(pods.clone(), 3).is_empty());
        assert!(excess_finished(pods, 0).is_empty(), "0 turns the threshold off");
    }
}
