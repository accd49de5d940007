//! NodePorts: the host ports a pod asks for must be free on the node (upstream's
//! PodFitsHostPorts predicate).

use crate::cache::{HostPort, NodeInfo, PodInfo, Snapshot};
use crate::framework::{
    ClusterEvents, CycleState, FilterPlugin, Plugin, PreFilterPlugin, PreFilterResult, Status,
};

pub const NAME: &str = "NodePorts";
pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";
const PRE_FILTER_KEY: &str = "PreFilterNodePorts";

#[derive(Debug, Default)]
pub struct NodePorts;

struct WantedPorts(Vec<HostPort>);

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> ClusterEvents {
        ClusterEvents::NODE_ADD | ClusterEvents::ASSIGNED_POD_DELETE
    }
}

impl PreFilterPlugin for NodePorts {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        if pod.host_ports.is_empty() {
            return (None, Status::skip());
        }
        state.write(PRE_FILTER_KEY, WantedPorts(pod.host_ports.clone()));
        (None, Status::success())
    }
}

impl FilterPlugin for NodePorts {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let wanted = match state.read::<WantedPorts>(PRE_FILTER_KEY) {
            Some(WantedPorts(w)) => w.as_slice(),
            None => pod.host_ports.as_slice(),
        };
        let conflict = wanted.iter().any(|w| node.used_ports.iter().any(|u| w.conflicts(u)));
        if conflict { Status::unschedulable(ERR_REASON) } else { Status::success() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::testing::{node, pod};

    #[test]
    fn conflicts_like_upstream() {
        let run = |wanted: crate::testing::PodBuilder, existing: crate::testing::PodBuilder| {
            let p = wanted.info();
            let mut state = CycleState::default();
            let (_, s) = NodePorts.pre_filter(&mut state, &p, &Snapshot::default());
            if s.code() == Code::Skip {
                return Status::success();
            }
            NodePorts.filter(&state, &p, &node("n").info([existing.node_name("n").build()]))
        };
        // Nothing requested: skipped.
        assert!(run(pod("p"), pod("q").host_port(80, None)).is_success());
        // Same port, any address.
        let s = run(pod("p").host_port(8080, None), pod("q").host_port(8080, None));
        assert_eq!(s.code(), Code::Unschedulable);
        assert_eq!(s.reasons(), [ERR_REASON]);
        // Different ports.
        assert!(run(pod("p").host_port(8080, None), pod("q").host_port(9090, None)).is_success());
        // Different specific addresses do not conflict; a wildcard conflicts with both.
        assert!(
            run(
                pod("p").host_port(80, Some("127.0.0.1")),
                pod("q").host_port(80, Some("127.0.0.2"))
            )
            .is_success()
        );
        assert!(
            !run(pod("p").host_port(80, Some("127.0.0.1")), pod("q").host_port(80, None))
                .is_success()
        );
        assert!(
            !run(pod("p").host_port(80, None), pod("q").host_port(80, Some("127.0.0.1")))
                .is_success()
        );
    }
}
