//! What controllers need to know about pods and owner references (upstream's `podutil` and
//! `controller_utils`): readiness, activeness, controller references, and the order in which a
//! controller deletes surplus pods.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;

/// The index of pods (and anything else) by the UID of their controller owner.
pub const CONTROLLER_UID_INDEX: &str = "controller-uid";

/// The index of pods by `spec.nodeName` (unbound pods are not in it).
pub const NODE_NAME_INDEX: &str = "node-name";

/// The values of [`NODE_NAME_INDEX`] for `pod`.
pub fn node_name_index(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
        .into_iter()
        .collect()
}

/// The index of objects without a controller owner, by namespace (candidates for adoption).
pub const ORPHAN_INDEX: &str = "orphans";

/// The values of [`ORPHAN_INDEX`] for `object`.
pub fn orphan_index<K: kube::Resource>(object: &K) -> Vec<String> {
    match controller_of(object.meta()) {
        Some(_) => Vec::new(),
        None => object.meta().namespace.iter().cloned().collect(),
    }
}

/// The values of [`CONTROLLER_UID_INDEX`] for `object`.
pub fn controller_uid_index<K: kube::Resource>(object: &K) -> Vec<String> {
    controller_of(object.meta()).map(|r| r.uid.clone()).into_iter().collect()
}

/// The owner reference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.iter().flatten().find(|r| r.controller == Some(true))
}

/// A controller owner reference to `owner` (what a controller puts on what it creates).
pub fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Not finished and not being deleted (upstream's `IsPodActive`).
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed")) && pod.metadata.deletion_timestamp.is_none()
}

/// When the pod's `Ready` condition last turned true, if it is true.
pub fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let condition = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))?;
    (condition.status == "True").then(|| condition.last_transition_time.as_ref().map(|t| t.0))
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now` (upstream's `IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(None) => false,
        Some(Some(since)) => {
            since.as_second().saturating_add(i64::from(min_ready_seconds)) <= now.as_second()
        }
    }
}

/// A new pod from `template` (upstream's `GetPodFromTemplate`), named `<prefix><random>` by the
/// API server, controlled by `owner`.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    prefix: &str,
    owner: OwnerReference,
) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(prefix.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// The prefix of the names of pods a controller named `name` creates.
pub fn pods_prefix(name: &str) -> String {
    // Upstream trims a prefix that would make an invalid name; ours are valid object names.
    format!("{name}-")
}

/// Upstream's `controller.kubernetes.io/pod-deletion-cost` annotation.
const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

fn phase_ordinal(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 3,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELETION_COST))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|c| c.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

/// Upstream's logarithmic scale-down buckets: times compare by the power of two of their age.
fn log_bucket(now: Timestamp, t: Option<Timestamp>) -> i64 {
    let Some(t) = t else { return i64::MIN };
    let age = now.as_second().saturating_sub(t.as_second()).max(0);
    i64::from(u64::BITS - u64::try_from(age).unwrap_or(0).leading_zeros())
}

/// Sorts `pods` so that the ones to delete first come first (upstream's
/// `ActivePodsWithRanks`): unassigned before assigned, pending before unknown before running,
/// not ready before ready, lower deletion cost first, more pods of the same family on the same
/// node first, ready for less time first, more restarts first, newer first.
/// `related` are the active pods of the owner and its siblings (for the per-node rank).
pub fn sort_for_deletion(pods: &mut [Arc<Pod>], related: &[Arc<Pod>], now: Timestamp) {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for pod in related {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or_default();
        *per_node.entry(node).or_default() += 1;
    }
    let node = |p: &Pod| -> String {
        p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default()
    };
    let rank = |p: &Pod| per_node.get(node(p).as_str()).copied().unwrap_or(0);
    pods.sort_by(|a, b| {
        let (na, nb) = (node(a), node(b));
        if na != nb && (na.is_empty() || nb.is_empty()) {
            return if na.is_empty() { Ordering::Less } else { Ordering::Greater };
        }
        phase_ordinal(a)
            .cmp(&phase_ordinal(b))
            .then_with(|| is_ready(a).cmp(&is_ready(b)))
            .then_with(|| deletion_cost(a).cmp(&deletion_cost(b)))
            .then_with(|| rank(b).cmp(&rank(a)))
            .then_with(|| {
                if is_ready(a) && is_ready(b) {
                    let (ta, tb) = (ready_since(a).flatten(), ready_since(b).flatten());
                    log_bucket(now, ta).cmp(&log_bucket(now, tb))
                } else {
                    Ordering::Equal
                }
            })
            .then_with(|| restarts(b).cmp(&restarts(a)))
            .then_with(|| {
                let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
                log_bucket(now, created(a)).cmp(&log_bucket(now, created(b)))
            })
            .then_with(|| a.metadata.uid.cmp(&b.metadata.uid))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(name: &str, node: &str, phase: &str, ready_for: Option<i64>) -> Arc<Pod> {
        let now = Timestamp::now().as_second();
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PodSpec { node_name: Some(node.into()), ..Default::default() }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready_for.map(|secs| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Timestamp::from_second(now - secs).ok().map(Time),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        })
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        pods.iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect()
    }

    #[test]
    fn surplus_pods_are_deleted_in_upstreams_order() {
        let mut pods = vec![
            pod("running-ready-old", "n1", "Running", Some(10_000)),
            pod("running-ready-new", "n1", "Running", Some(5)),
            pod("running-not-ready", "n1", "Running", None),
            pod("pending", "n1", "Pending", None),
            pod("unassigned", "", "Pending", None),
        ];
        sort_for_deletion(&mut pods, &[], Timestamp::now());
        assert_eq!(
            names(&pods),
            [
                "unassigned",
                "pending",
                "running-not-ready",
                "running-ready-new",
                "running-ready-old"
            ]
        );
    }

    #[test]
    fn crowded_nodes_lose_pods_first() {
        let a = pod("a", "n1", "Running", Some(100));
        let b = pod("b", "n2", "Running", Some(100));
        let c = pod("c", "n2", "Running", Some(100));
        let mut pods = vec![a.clone(), b.clone()];
        sort_for_deletion(&mut pods, &[a, b, c], Timestamp::now());
        assert_eq!(names(&pods), ["b", "a"]);
    }

    #[test]
    fn available_needs_min_ready_seconds() {
        let p = pod("p", "n1", "Running", Some(5));
        let now = Timestamp::now();
        assert!(is_available(&p, 0, now));
        assert!(is_available(&p, 5, now));
        assert!(!is_available(&p, 60, now));
        assert!(!is_available(&pod("q", "n1", "Running", None), 0, now));
    }
}
