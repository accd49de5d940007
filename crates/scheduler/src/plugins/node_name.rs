//! NodeName: a pod that names a node (`spec.nodeName`) fits only that node.

use crate::cache::{NodeInfo, PodInfo};
use crate::framework::{ClusterEvents, CycleState, FilterPlugin, Plugin, Status};

pub const NAME: &str = "NodeName";
pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

#[derive(Debug, Default)]
pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> ClusterEvents {
        ClusterEvents::NODE_ADD
    }
}

impl FilterPlugin for NodeName {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match pod.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            None | Some("") => Status::success(),
            Some(name) if name == node.name() => Status::success(),
            Some(_) => Status::unresolvable(ERR_REASON),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod};

    #[test]
    fn matches_only_the_named_node() {
        let state = CycleState::default();
        let n = node("foo").info([]);
        assert!(NodeName.filter(&state, &pod("p").info(), &n).is_success());
        assert!(NodeName.filter(&state, &pod("p").node_name("foo").info(), &n).is_success());
        let s = NodeName.filter(&state, &pod("p").node_name("bar").info(), &n);
        assert_eq!(s.reasons(), [ERR_REASON]);
    }
}
