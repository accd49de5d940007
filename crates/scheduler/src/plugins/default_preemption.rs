//! DefaultPreemption (PostFilter): finds out whether evicting lower-priority pods could make
//! room for the pod, and explains per node why not, in upstream's words. The eviction itself
//! (victim selection by PDB violations, graceful deletion, `nominatedNodeName`) is not done yet:
//! when a node would fit after removing lower-priority pods, the pod is left to retry.

use crate::cache::{NodeInfo, PodInfo, Snapshot, pod_priority};
use crate::framework::{
    Code, CycleState, FitError, Framework, NodeToStatus, Plugin, PostFilterPlugin,
    PostFilterResult, Status,
};

pub const NAME: &str = "DefaultPreemption";
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

#[derive(Debug, Default)]
pub struct DefaultPreemption;

impl Plugin for DefaultPreemption {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PostFilterPlugin for DefaultPreemption {
    fn post_filter(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
        statuses: &NodeToStatus,
        framework: &Framework,
    ) -> (Option<PostFilterResult>, Status) {
        let policy = pod.pod.spec.as_ref().and_then(|s| s.preemption_policy.as_deref());
        if policy == Some("Never") {
            return (
                None,
                Status::unschedulable("preemption: not eligible due to preemptionPolicy=Never."),
            );
        }
        let priority = pod.priority();
        let mut result = NodeToStatus::default();
        result.set_absent(Status::unresolvable(NOT_HELPFUL));
        let mut candidates = 0usize;
        for node in snapshot.nodes() {
            let status = statuses.get(node.name());
            if status.code() == Code::UnschedulableAndUnresolvable {
                result.set(node.name(), Status::unresolvable(NOT_HELPFUL));
                continue;
            }
            let victims: Vec<&str> = node
                .pods
                .iter()
                .filter(|p| pod_priority(&p.pod) < priority)
                .map(|p| p.uid.as_str())
                .collect();
            if victims.is_empty() {
                result.set(node.name(), Status::unresolvable(NO_VICTIMS));
                continue;
            }
            let mut without: NodeInfo = (**node).clone();
            for uid in victims {
                without.remove_pod(uid);
            }
            let fits = framework.run_filter(state, pod, &without);
            if fits.is_success() {
                candidates += 1;
            } else {
                result.set(node.name(), fits);
            }
        }
        if candidates > 0 {
            tracing::info!(
                pod = pod.pod.metadata.name.as_deref().unwrap_or_default(),
                candidates,
                "preemption would help, but evicting pods is not implemented yet"
            );
            return (None, Status::new(Code::Unschedulable, Vec::new()));
        }
        let fit_error = FitError {
            num_all_nodes: snapshot.len(),
            statuses: result,
            pre_filter_msg: String::new(),
            post_filter_msg: String::new(),
        };
        (None, Status::unschedulable(format!("preemption: {fit_error}")))
    }
}
