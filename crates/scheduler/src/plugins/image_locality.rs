//! ImageLocality: favours nodes that already have the pod's images, weighted by image size and
//! by how many nodes share the image (so one node does not attract every pod).

use std::sync::Arc;

use crate::cache::{NodeInfo, PodInfo, Snapshot, normalized_image_name};
use crate::framework::{CycleState, MAX_NODE_SCORE, Plugin, PreScorePlugin, ScorePlugin, Status};

pub const NAME: &str = "ImageLocality";
const PRE_SCORE_KEY: &str = "PreScoreImageLocality";

const MB: i64 = 1024 * 1024;
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

#[derive(Debug, Default)]
pub struct ImageLocality;

/// The pod's images (normalized) with their spread over all nodes.
struct PodImages {
    images: Vec<(String, f64)>,
    containers: i64,
}

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreScorePlugin for ImageLocality {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status {
        let Some(spec) = pod.pod.spec.as_ref() else {
            return Status::skip();
        };
        let total = snapshot.len().max(1) as f64;
        let containers = spec.init_containers.iter().flatten().chain(&spec.containers);
        let images = containers
            .filter_map(|c| c.image.as_deref())
            .map(|image| {
                let name = normalized_image_name(image);
                let spread = snapshot.image_node_count(&name) as f64 / total;
                (name, spread)
            })
            .collect();
        let containers =
            (spec.init_containers.as_ref().map_or(0, Vec::len) + spec.containers.len()) as i64;
        state.write(PRE_SCORE_KEY, PodImages { images, containers });
        Status::success()
    }
}

/// Upstream's `calculatePriority`.
fn calculate_priority(sum_scores: i64, num_containers: i64) -> i64 {
    let max_threshold = MAX_CONTAINER_THRESHOLD * num_containers.max(1);
    let sum = sum_scores.clamp(MIN_THRESHOLD, max_threshold.max(MIN_THRESHOLD));
    if max_threshold <= MIN_THRESHOLD {
        return 0;
    }
    MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max_threshold - MIN_THRESHOLD)
}

impl ScorePlugin for ImageLocality {
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(PodImages { images, containers }) = state.read(PRE_SCORE_KEY) else {
            return Ok(0);
        };
        let sum: i64 = images
            .iter()
            .filter_map(|(name, spread)| {
                node.images.get(name).map(|size| (*size as f64 * spread) as i64)
            })
            .sum();
        Ok(calculate_priority(sum, *containers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod};

    #[test]
    fn scores_like_upstream() {
        // Upstream's "two images spread on two nodes, prefer the larger image one":
        // node1 has gcr.io/40:latest (40MB) and gcr.io/300:latest (300MB), node2 has
        // gcr.io/250:latest (250MB) and gcr.io/10:latest (10MB). Pod uses gcr.io/40 and gcr.io/250.
        // node1: 40MB*1/2 = 20MB -> below the 23MB threshold -> 0.
        // node2: 250MB*1/2 = 125MB -> 100*(125-23)/(2000-23) = 5.
        let n1 =
            node("node1").image("gcr.io/40:latest", 40 * MB).image("gcr.io/300:latest", 300 * MB);
        let n2 =
            node("node2").image("gcr.io/250:latest", 250 * MB).image("gcr.io/10:latest", 10 * MB);
        let snapshot = Snapshot::from_nodes(vec![n1.clone().info([]), n2.clone().info([])]);
        let p = pod("p").image("gcr.io/40").container("gcr.io/250").info();
        let nodes: Vec<Arc<NodeInfo>> = snapshot.nodes().to_vec();
        let mut state = CycleState::default();
        assert!(ImageLocality.pre_score(&mut state, &p, &nodes, &snapshot).is_success());
        let score = |name: &str| {
            let n = snapshot.get(name).expect("node");
            ImageLocality.score(&state, &p, n).unwrap_or(-1)
        };
        assert_eq!(score("node1"), 0);
        assert_eq!(score("node2"), 5);
    }
}
