//! NodeResourcesBalancedAllocation: favours nodes whose resource fractions (requested over
//! allocatable, with the pod) are close to each other: `score = (1 - std) * 100`.

use std::sync::Arc;

use super::node_resources_fit::{
    ResourceSpec, default_resources, pod_resource_requests, requested_and_allocatable,
};
use crate::cache::{NodeInfo, PodInfo, Snapshot};
use crate::framework::{CycleState, MAX_NODE_SCORE, Plugin, PreScorePlugin, ScorePlugin, Status};

pub const NAME: &str = "NodeResourcesBalancedAllocation";
const PRE_SCORE_KEY: &str = "PreScoreNodeResourcesBalancedAllocation";

#[derive(Debug)]
pub struct BalancedAllocation {
    resources: Vec<ResourceSpec>,
}

impl Default for BalancedAllocation {
    fn default() -> Self {
        Self { resources: default_resources() }
    }
}

struct PodRequests(Vec<i64>);

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreScorePlugin for BalancedAllocation {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
        _snapshot: &Snapshot,
    ) -> Status {
        let requests = pod_resource_requests(pod, &self.resources, true);
        // A best-effort pod does not change any node's balance.
        if requests.iter().all(|r| *r == 0) {
            return Status::skip();
        }
        state.write(PRE_SCORE_KEY, PodRequests(requests));
        Status::success()
    }
}

/// Upstream's `balancedResourceScorer`.
fn balanced_resource_score(requested: &[i64], allocatable: &[i64]) -> i64 {
    let fractions: Vec<f64> = requested
        .iter()
        .zip(allocatable)
        .filter(|(_, a)| **a != 0)
        .map(|(r, a)| (*r as f64 / *a as f64).min(1.0))
        .collect();
    let std = match fractions.len() {
        0 | 1 => 0.0,
        2 => ((fractions[0] - fractions[1]) / 2.0).abs(),
        n => {
            let mean = fractions.iter().sum::<f64>() / n as f64;
            (fractions.iter().map(|f| (f - mean) * (f - mean)).sum::<f64>() / n as f64).sqrt()
        }
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

impl ScorePlugin for BalancedAllocation {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let computed;
        let requests = match state.read::<PodRequests>(PRE_SCORE_KEY) {
            Some(PodRequests(r)) => r,
            None => {
                computed = pod_resource_requests(pod, &self.resources, true);
                &computed
            }
        };
        let (requested, allocatable) =
            requested_and_allocatable(node, &self.resources, requests, true);
        Ok(balanced_resource_score(&requested, &allocatable))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::testing::{node, pod};

    #[test]
    fn scores_like_upstream() {
        // Upstream: pod 3000m/5000 on 10000m/20000 with nothing else: cpu 0.3, memory 0.25,
        // std 0.025 -> 97.
        let p = pod("p").cpu("3000m").memory("5000").info();
        let nodes = vec![
            Arc::new(node("a").cpu("10000m").memory("20000").info([])),
            // Existing pod 3000m/0: cpu 0.6, memory 0.25 -> std 0.175 -> 82.
            Arc::new(
                node("b")
                    .cpu("10000m")
                    .memory("20000")
                    .info([pod("e").cpu("3000m").node_name("b").build()]),
            ),
        ];
        let mut state = CycleState::default();
        assert!(
            BalancedAllocation::default()
                .pre_score(&mut state, &p, &nodes, &Snapshot::default())
                .is_success()
        );
        let scores: Vec<i64> = nodes
            .iter()
            .map(|n| BalancedAllocation::default().score(&state, &p, n).unwrap_or(-1))
            .collect();
        assert_eq!(scores, vec![97, 82]);
        // Fractions are capped at 1.
        assert_eq!(balanced_resource_score(&[3, 1], &[2, 2]), 75);
        assert_eq!(balanced_resource_score(&[1, 1, 1], &[2, 4, 0]), 87);
    }

    #[test]
    fn best_effort_pods_skip() {
        let s = BalancedAllocation::default().pre_score(
            &mut CycleState::default(),
            &pod("p").info(),
            &[],
            &Snapshot::default(),
        );
        assert_eq!(s.code(), Code::Skip);
    }
}
