//! Taint-based eviction (upstream's `taint-eviction-controller`): a pod on a node with a
//! NoExecute taint it does not tolerate is deleted at once; one it tolerates for
//! `tolerationSeconds` is deleted once that long has passed since the taint was added (the
//! smallest such toleration wins); one it tolerates without a limit stays. Before deleting, the
//! pod gets the `DisruptionTarget` condition saying why.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use tokio::task::JoinSet;

use crate::pods::{self, NODE_NAME_INDEX};
use crate::{Change, Context, EventRecorder, EventType, Informer, ObjectKey, Result, WorkQueue};

struct Controller {
    client: kube::Client,
    nodes: Arc<Informer<Node>>,
    pods: Arc<Informer<Pod>>,
    queue: Arc<WorkQueue<ObjectKey>>,
    events: EventRecorder,
}

fn no_execute(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .map(|t| t.iter().filter(|t| t.effect == "NoExecute").cloned().collect())
        .unwrap_or_default()
}

pub(crate) fn start(ctx: &Context, tasks: &mut JoinSet<Result<()>>) {
    let nodes = ctx.informers.get::<Node>();
    let pods = ctx.informers.get::<Pod>();
    pods.add_index(NODE_NAME_INDEX, pods::node_name_index);
    let controller = Arc::new(Controller {
        client: ctx.client.clone(),
        nodes: nodes.clone(),
        pods: pods.clone(),
        queue: WorkQueue::new(),
        events: ctx.events.for_component("taint-eviction-controller"),
    });
    let c = controller.clone();
    nodes.add_handler(move |change| {
        let changed = match change {
            Change::Added(node) => !no_execute(node).is_empty(),
            Change::Updated { old, new } => no_execute(old) != no_execute(new),
            Change::Deleted(_) => false,
        };
        if changed {
            for pod in c.pods.indexed(NODE_NAME_INDEX, &change.object().name_any()) {
                c.queue.add(ObjectKey::of(pod.as_ref()));
            }
        }
    });
    let c = controller.clone();
    pods.add_handler(move |change| match change {
        Change::Added(pod) => {
            if !pods::node_name_index(pod).is_empty() {
                c.queue.add(ObjectKey::of(pod.as_ref()));
            }
        }
        Change::Updated { old, new } => {
            let spec =
                |p: &Pod| p.spec.as_ref().map(|s| (s.node_name.clone(), s.tolerations.clone()));
            if spec(old) != spec(new) {
                c.queue.add(ObjectKey::of(new.as_ref()));
            }
        }
        Change::Deleted(_) => {}
    });
    let stop = ctx.stop.clone();
    let workers = ctx.config.workers;
    tasks.spawn(async move {
        controller.nodes.wait_synced().await;
        controller.pods.wait_synced().await;
        let c = controller.clone();
        crate::run_workers(
            "taint-eviction-controller",
            controller.queue.clone(),
            workers,
            stop,
            move |key| {
                let c = c.clone();
                async move { c.sync(&key).await }
            },
        )
        .await
    });
}

/// Upstream's `Toleration.ToleratesTaint`.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref() {
        Some("Exists") => true,
        None | Some("" | "Equal") => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        Some(_) => false,
    }
}

/// When the pod must go, given the node's NoExecute taints: `None` never, else the instant.
fn eviction_time(
    taints: &[Taint],
    tolerations: &[Toleration],
    now: Timestamp,
) -> Option<Timestamp> {
    if taints.is_empty() {
        return None;
    }
    let mut limit: Option<i64> = None;
    for taint in taints {
        let used: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if used.is_empty() {
            return Some(now);
        }
        // Any toleration without a limit keeps the pod for this taint.
        if used.iter().any(|t| t.toleration_seconds.is_none()) {
            continue;
        }
        let seconds = used.iter().filter_map(|t| t.toleration_seconds).min().unwrap_or(0).max(0);
        limit = Some(limit.map_or(seconds, |l| l.min(seconds)));
    }
    let seconds = limit?;
    let since =
        taints.iter().filter_map(|t| t.time_added.as_ref().map(|t| t.0)).min().unwrap_or(now);
    since.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(seconds)).ok()
}

impl Controller {
    async fn sync(&self, key: &ObjectKey) -> Result<()> {
        let Some(pod) = self.pods.get(key) else { return Ok(()) };
        if pod.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let Some(node_name) = pods::node_name_index(&pod).pop() else { return Ok(()) };
        let Some(node) = self.nodes.get(&ObjectKey::cluster(&node_name)) else { return Ok(()) };
        let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
        let now = Timestamp::now();
        let Some(when) = eviction_time(&no_execute(&node), &tolerations, now) else {
            return Ok(());
        };
        if when > now {
            let wait = now.duration_until(when).unsigned_abs();
            self.queue.add_after(key.clone(), wait.max(Duration::from_millis(100)));
            return Ok(());
        }
        self.evict(&pod).await
    }

    async fn evict(&self, pod: &Pod) -> Result<()> {
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let name = pod.name_any();
        self.events.record(
            pod,
            EventType::Normal,
            "TaintManagerEviction",
            format!("Marking for deletion Pod {}/{name}", pod.namespace().unwrap_or_default()),
        );
        let condition = json!({"status": {"conditions": [{
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "DeletionByTaintManager",
            "message": "Taint manager: deleting due to NoExecute taint",
            "lastTransitionTime": Timestamp::now().to_string(),
        }]}});
        match api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(&condition)).await
        {
            Err(e) if crate::replicaset::is_status(&e, 404) => return Ok(()),
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if crate::replicaset::is_status(&e, 404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn taint(key: &str, added: Timestamp) -> Taint {
        Taint {
            key: key.into(),
            effect: "NoExecute".into(),
            time_added: Some(Time(added)),
            value: None,
        }
    }

    fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: seconds,
            value: None,
        }
    }

    #[test]
    fn pods_go_when_their_smallest_toleration_runs_out() {
        let now = Timestamp::now();
        let added =
            now.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(10)).expect("time");
        let taints = [taint("node.kubernetes.io/unreachable", added)];
        // Not tolerated: now.
        assert_eq!(eviction_time(&taints, &[], now), Some(now));
        // Tolerated for 300 s from when the taint was added.
        let when =
            eviction_time(&taints, &[toleration("node.kubernetes.io/unreachable", Some(300))], now);
        assert_eq!(when, added.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(300)).ok());
        // Forever.
        assert_eq!(
            eviction_time(&taints, &[toleration("node.kubernetes.io/unreachable", None)], now),
            None
        );
        // An empty key with Exists tolerates everything.
        let all = Toleration { operator: Some("Exists".into()), ..Default::default() };
        assert_eq!(eviction_time(&taints, &[all], now), None);
        // No taints, no eviction.
        assert_eq!(eviction_time(&[], &[], now), None);
    }

    #[test]
    fn equal_tolerations_need_the_same_value() {
        let mut t = taint("k", Timestamp::now());
        t.value = Some("v".into());
        let equal = |v: &str| Toleration {
            key: Some("k".into()),
            operator: Some("Equal".into()),
            value: Some(v.into()),
            ..Default::default()
        };
        assert!(tolerates(&equal("v"), &t));
        assert!(!tolerates(&equal("w"), &t));
    }
}
