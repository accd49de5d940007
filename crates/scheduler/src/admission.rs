//! The kubelet's pod admission (upstream's `lifecycle.PredicateAdmitHandler`): before it runs a
//! pod, a kubelet checks the scheduler's general predicates against its own node and the pods
//! it already admitted — NodeName, NodeAffinity, NodePorts, NodeResourcesFit, and tolerance of
//! the node's NoExecute taints — and rejects the pod with upstream's reason and message.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::cache::{NodeInfo, PodInfo, Snapshot};
use crate::framework::{CycleState, Framework};
use crate::plugins::{node_affinity, node_name, node_ports, node_resources_fit, taint_toleration};
use crate::resources::Resource;

/// Why a kubelet refused a pod: `status.reason` and `status.message` of the failed pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
    pub message: String,
}

fn framework() -> Framework {
    let affinity = Arc::new(node_affinity::NodeAffinity);
    let ports = Arc::new(node_ports::NodePorts);
    let fit = Arc::new(node_resources_fit::NodeResourcesFit::new(
        Default::default(),
        node_resources_fit::default_resources(),
    ));
    Framework {
        scheduler_name: String::new(),
        pre_filter: vec![affinity.clone(), ports.clone(), fit.clone()],
        filter: vec![
            Arc::new(node_name::NodeName),
            Arc::new(taint_toleration::TaintToleration),
            affinity,
            ports,
            fit,
        ],
        post_filter: Vec::new(),
        pre_score: Vec::new(),
        score: Vec::new(),
        percentage_of_nodes_to_score: 100,
    }
}

/// Whether `node`, already running `admitted`, takes `pod`.
pub fn admit(node: &Node, admitted: &[Arc<Pod>], pod: &Arc<Pod>) -> Result<(), Rejection> {
    // Only NoExecute taints matter to a kubelet: NoSchedule ones were the scheduler's business.
    let mut node = node.clone();
    if let Some(taints) = node.spec.as_mut().and_then(|s| s.taints.as_mut()) {
        taints.retain(|t| t.effect == "NoExecute");
    }
    let info = NodeInfo::new(Arc::new(node), admitted.iter().cloned().map(PodInfo::new));
    let requested = info.requested.clone();
    let allocatable = info.allocatable.clone();
    let running = info.pods.len();
    let snapshot = Snapshot::from_nodes(vec![info]);
    let Some(info) = snapshot.nodes().first().cloned() else {
        return Ok(());
    };
    let framework = framework();
    let pod_info = PodInfo::new(pod.clone());
    let mut state = CycleState::default();
    let (_, status, _) = framework.run_pre_filter(&mut state, &pod_info, &snapshot);
    let status =
        if status.is_success() { framework.run_filter(&state, &pod_info, &info) } else { status };
    if status.is_success() {
        return Ok(());
    }
    if status.plugin() == "NodeResourcesFit" {
        let want = pod_info.resources.requests.clone();
        return Err(insufficient(&want, &requested, &allocatable, running));
    }
    Err(Rejection {
        reason: status.plugin().to_owned(),
        message: format!("Predicate {} failed: {}", status.plugin(), status.message()),
    })
}

/// Upstream's `OutOf<resource>` rejection for the first resource that does not fit.
fn insufficient(want: &Resource, used: &Resource, capacity: &Resource, pods: usize) -> Rejection {
    let pods = i64::try_from(pods).unwrap_or(i64::MAX);
    let checks = [
        ("pods", 1, pods, capacity.allowed_pod_number),
        ("cpu", want.milli_cpu, used.milli_cpu, capacity.milli_cpu),
        ("memory", want.memory, used.memory, capacity.memory),
        (
            "ephemeral-storage",
            want.ephemeral_storage,
            used.ephemeral_storage,
            capacity.ephemeral_storage,
        ),
    ];
    let scalar = want
        .scalar
        .iter()
        .map(|(name, v)| (name.as_str(), *v, used.scalar(name), capacity.scalar(name)));
    for (name, requested, used, capacity) in checks.into_iter().chain(scalar) {
        if requested > 0 && requested > capacity - used {
            return Rejection {
                reason: format!("OutOf{name}"),
                message: format!(
                    "Node didn't have enough resource: {name}, requested: {requested}, used: {used}, capacity: {capacity}"
                ),
            };
        }
    }
    Rejection {
        reason: "UnexpectedAdmissionError".into(),
        message: "insufficient resources".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod};

    #[test]
    fn a_full_node_rejects_with_upstreams_reason_and_numbers() {
        let n = node("n1").cpu("1").memory("1Gi").pods(10).build();
        let running = vec![Arc::new(pod("a").cpu("800m").node_name("n1").build())];
        let fits = Arc::new(pod("b").cpu("200m").node_name("n1").build());
        assert_eq!(admit(&n, &running, &fits), Ok(()));
        let too_big = Arc::new(pod("c").cpu("300m").node_name("n1").build());
        assert_eq!(
            admit(&n, &running, &too_big),
            Err(Rejection {
                reason: "OutOfcpu".into(),
                message: "Node didn't have enough resource: cpu, requested: 300, used: 800, capacity: 1000".into(),
            })
        );
    }

    #[test]
    fn a_selector_that_does_not_match_is_a_node_affinity_rejection() {
        let n = node("n1").cpu("1").pods(10).build();
        let p = Arc::new(pod("p").node_selector("disk", "ssd").node_name("n1").build());
        let rejection = admit(&n, &[], &p).expect_err("rejected");
        assert_eq!(rejection.reason, "NodeAffinity");
        assert_eq!(
            rejection.message,
            "Predicate NodeAffinity failed: node(s) didn't match Pod's node affinity/selector"
        );
    }
}
