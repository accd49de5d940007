//! TaintToleration: a node's `NoSchedule`/`NoExecute` taints must be tolerated (Filter);
//! fewer untolerated `PreferNoSchedule` taints score higher (Score, reversed normalization).

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::cache::{NodeInfo, PodInfo, Snapshot};
use crate::framework::{
    ClusterEvents, CycleState, FilterPlugin, MAX_NODE_SCORE, Plugin, PreScorePlugin, ScorePlugin,
    Status, default_normalize_score,
};

pub const NAME: &str = "TaintToleration";

/// Upstream 1.35's reason. Before kubernetes/kubernetes#134740 (1.35, back-ported to 1.34) it
/// named the first untolerated taint (`node(s) had untolerated taint {key: value}`); taint keys
/// and values may be sensitive, so upstream now logs them instead.
pub const ERR_REASON_UNTOLERATED: &str = "node(s) had untolerated taint(s)";

/// Upstream's `Toleration.ToleratesTaint` (the alpha Gt/Lt operators are off by default).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    if let Some(key) = toleration.key.as_deref().filter(|k| !k.is_empty())
        && key != taint.key
    {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        "Exists" => true,
        _ => false,
    }
}

pub fn tolerations_tolerate_taint(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// Upstream's `FindMatchingUntoleratedTaint` for `NoSchedule` and `NoExecute` taints.
pub fn find_untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
) -> Option<&'a Taint> {
    taints.iter().find(|taint| {
        matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute")
            && !tolerations_tolerate_taint(tolerations, taint)
    })
}

fn pod_tolerations(pod: &PodInfo) -> &[Toleration] {
    pod.pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or(&[])
}

fn node_taints(node: &NodeInfo) -> &[Taint] {
    node.node().spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[])
}

#[derive(Debug, Default)]
pub struct TaintToleration;

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> ClusterEvents {
        ClusterEvents::NODE_ADD | ClusterEvents::NODE_TAINT
    }
}

impl FilterPlugin for TaintToleration {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match find_untolerated_taint(node_taints(node), pod_tolerations(pod)) {
            None => Status::success(),
            Some(taint) => {
                tracing::trace!(node = node.name(), key = %taint.key, "untolerated taint");
                Status::unresolvable(ERR_REASON_UNTOLERATED)
            }
        }
    }
}

const PRE_SCORE_KEY: &str = "PreScoreTaintToleration";

/// Tolerations with effect `PreferNoSchedule` or none.
struct PreferNoScheduleTolerations(Vec<Toleration>);

impl PreScorePlugin for TaintToleration {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[std::sync::Arc<NodeInfo>],
        _snapshot: &Snapshot,
    ) -> Status {
        let tolerations = pod_tolerations(pod)
            .iter()
            .filter(|t| matches!(t.effect.as_deref(), None | Some("") | Some("PreferNoSchedule")))
            .cloned()
            .collect();
        state.write(PRE_SCORE_KEY, PreferNoScheduleTolerations(tolerations));
        Status::success()
    }
}

impl ScorePlugin for TaintToleration {
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(PreferNoScheduleTolerations(tolerations)) = state.read(PRE_SCORE_KEY) else {
            return Err(Status::error("reading \"PreScoreTaintToleration\" from cycleState"));
        };
        let count = node_taints(node)
            .iter()
            .filter(|t| {
                t.effect == "PreferNoSchedule" && !tolerations_tolerate_taint(tolerations, t)
            })
            .count();
        Ok(count as i64)
    }

    fn normalize_score(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [i64]) -> Status {
        default_normalize_score(MAX_NODE_SCORE, true, scores);
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::testing::{node, pod};

    fn filter(pod: crate::testing::PodBuilder, node: crate::testing::NodeBuilder) -> Status {
        TaintToleration.filter(&CycleState::default(), &pod.info(), &node.info([]))
    }

    #[test]
    fn filter_cases_from_upstream() {
        let tainted = || node("n").taint("dedicated", "user1", "NoSchedule");
        // No tolerations: rejected, unresolvable.
        let s = filter(pod("p"), tainted());
        assert_eq!(s.code(), Code::UnschedulableAndUnresolvable);
        assert_eq!(s.reasons(), [ERR_REASON_UNTOLERATED]);
        // Equal with the same value and effect.
        assert!(
            filter(pod("p").toleration("dedicated", "Equal", "user1", "NoSchedule"), tainted())
                .is_success()
        );
        // Empty operator means Equal.
        assert!(
            filter(pod("p").toleration("dedicated", "", "user1", "NoSchedule"), tainted())
                .is_success()
        );
        // Different value.
        assert!(
            !filter(pod("p").toleration("dedicated", "Equal", "user2", "NoSchedule"), tainted())
                .is_success()
        );
        // Exists ignores the value.
        assert!(
            filter(pod("p").toleration("dedicated", "Exists", "", "NoSchedule"), tainted())
                .is_success()
        );
        // An empty key with Exists tolerates everything.
        assert!(filter(pod("p").toleration("", "Exists", "", ""), tainted()).is_success());
        // Empty effect matches all effects.
        assert!(
            filter(pod("p").toleration("dedicated", "Equal", "user1", ""), tainted()).is_success()
        );
        // A different effect does not.
        assert!(
            !filter(pod("p").toleration("dedicated", "Equal", "user1", "NoExecute"), tainted())
                .is_success()
        );
        // NoExecute taints also filter; PreferNoSchedule ones do not.
        assert!(!filter(pod("p"), node("n").taint("k", "", "NoExecute")).is_success());
        assert!(filter(pod("p"), node("n").taint("k", "", "PreferNoSchedule")).is_success());
        // Unknown operators tolerate nothing.
        assert!(!filter(pod("p").toleration("dedicated", "Gt", "1", ""), tainted()).is_success());
    }

    #[test]
    fn score_counts_prefer_no_schedule_reversed() {
        let p = pod("p").toleration("foo", "Equal", "bar", "PreferNoSchedule").info();
        let nodes = vec![
            std::sync::Arc::new(node("a").build()).clone(),
            std::sync::Arc::new(node("b").taint("foo", "bar", "PreferNoSchedule").build()),
            std::sync::Arc::new(
                node("c")
                    .taint("cpu-type", "arm64", "PreferNoSchedule")
                    .taint("disk", "hdd", "PreferNoSchedule")
                    .build(),
            ),
            std::sync::Arc::new(node("d").taint("cpu-type", "arm64", "PreferNoSchedule").build()),
        ];
        let infos: Vec<_> =
            nodes.into_iter().map(|n| std::sync::Arc::new(NodeInfo::new(n, []))).collect();
        let mut state = CycleState::default();
        let snapshot = Snapshot::default();
        assert!(TaintToleration.pre_score(&mut state, &p, &infos, &snapshot).is_success());
        let mut scores: Vec<i64> =
            infos.iter().map(|n| TaintToleration.score(&state, &p, n).unwrap_or(-1)).collect();
        assert_eq!(scores, vec![0, 0, 2, 1]);
        TaintToleration.normalize_score(&state, &p, &mut scores);
        assert_eq!(scores, vec![100, 100, 0, 50]);
    }
}
