//! NodeUnschedulable: cordoned nodes (`spec.unschedulable`) take no new pods, unless the pod
//! tolerates the `node.kubernetes.io/unschedulable:NoSchedule` taint.

use k8s_openapi::api::core::v1::Taint;

use super::taint_toleration::tolerations_tolerate_taint;
use crate::cache::{NodeInfo, PodInfo};
use crate::framework::{ClusterEvents, CycleState, FilterPlugin, Plugin, Status};

pub const NAME: &str = "NodeUnschedulable";
pub const ERR_REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

#[derive(Debug, Default)]
pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> ClusterEvents {
        ClusterEvents::NODE_ADD | ClusterEvents::NODE_SPEC_UNSCHEDULABLE | ClusterEvents::NODE_TAINT
    }
}

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let unschedulable =
            node.node().spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
        if !unschedulable {
            return Status::success();
        }
        let taint = Taint {
            key: TAINT_NODE_UNSCHEDULABLE.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let tolerations =
            pod.pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or(&[]);
        if tolerations_tolerate_taint(tolerations, &taint) {
            Status::success()
        } else {
            Status::unresolvable(ERR_REASON_UNSCHEDULABLE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::testing::{node, pod};

    #[test]
    fn cordoned_nodes_reject_pods_without_the_toleration() {
        let state = CycleState::default();
        let cordoned = node("n").unschedulable().info([]);
        let s = NodeUnschedulable.filter(&state, &pod("p").info(), &cordoned);
        assert_eq!(s.code(), Code::UnschedulableAndUnresolvable);
        assert_eq!(s.reasons(), [ERR_REASON_UNSCHEDULABLE]);
        let tolerant = pod("p").toleration(TAINT_NODE_UNSCHEDULABLE, "Exists", "", "NoSchedule");
        assert!(NodeUnschedulable.filter(&state, &tolerant.info(), &cordoned).is_success());
        assert!(
            NodeUnschedulable.filter(&state, &pod("p").info(), &node("n").info([])).is_success()
        );
    }
}
