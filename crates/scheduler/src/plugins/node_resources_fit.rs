//! NodeResourcesFit: the pod's requests (cpu, memory, ephemeral-storage, extended resources)
//! must fit the node's allocatable minus what its pods request, and the node must have room for
//! one more pod (Filter). Score: `LeastAllocated` (default) favours emptier nodes,
//! `MostAllocated` fuller ones, both over the configured resources and weights.

use std::sync::Arc;

use crate::cache::{NodeInfo, PodInfo, Snapshot};
use crate::framework::{
    ClusterEvents, Code, CycleState, FilterPlugin, MAX_NODE_SCORE, Plugin, PreFilterPlugin,
    PreFilterResult, PreScorePlugin, ScorePlugin, Status,
};
use crate::resources::{
    self, CPU, EPHEMERAL_STORAGE, MEMORY, RequestOptions, Resource, is_scalar_resource_name,
};

pub const NAME: &str = "NodeResourcesFit";
const PRE_FILTER_KEY: &str = "PreFilterNodeResourcesFit";
const PRE_SCORE_KEY: &str = "PreScoreNodeResourcesFit";

/// How NodeResourcesFit scores (upstream's `ScoringStrategyType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScoringStrategyType {
    #[default]
    LeastAllocated,
    MostAllocated,
}

/// A resource and its weight in a score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSpec {
    pub name: String,
    pub weight: i64,
}

/// cpu and memory, weight 1 each: upstream's default for both resource scorers.
pub fn default_resources() -> Vec<ResourceSpec> {
    vec![
        ResourceSpec { name: CPU.into(), weight: 1 },
        ResourceSpec { name: MEMORY.into(), weight: 1 },
    ]
}

/// The pod's requests per configured resource, as upstream's `calculatePodResourceRequest`.
pub(crate) fn pod_resource_requests(
    pod: &PodInfo,
    resources: &[ResourceSpec],
    use_requested: bool,
) -> Vec<i64> {
    let Some(spec) = pod.pod.spec.as_ref() else {
        return vec![0; resources.len()];
    };
    let requests = resources::pod_requests(
        spec,
        RequestOptions { non_missing_defaults: !use_requested, ..RequestOptions::default() },
    );
    resources
        .iter()
        .map(|r| {
            let q = requests.get(&r.name).copied().unwrap_or_default();
            if r.name == CPU { q.milli_value() } else { q.value() }
        })
        .collect()
}

/// Upstream's `calculateResourceAllocatableRequest`: (allocatable, requested including the pod).
pub(crate) fn allocatable_and_requested(
    node: &NodeInfo,
    resource: &str,
    pod_request: i64,
    use_requested: bool,
) -> (i64, i64) {
    let requested = if use_requested { &node.requested } else { &node.non_zero_requested };
    if pod_request == 0 && is_scalar_resource_name(resource) {
        return (0, 0);
    }
    match resource {
        CPU => (node.allocatable.milli_cpu, requested.milli_cpu + pod_request),
        MEMORY => (node.allocatable.memory, requested.memory + pod_request),
        EPHEMERAL_STORAGE => {
            (node.allocatable.ephemeral_storage, node.requested.ephemeral_storage + pod_request)
        }
        other => match node.allocatable.scalar.get(other) {
            Some(alloc) => (*alloc, node.requested.scalar(other) + pod_request),
            None => (0, 0),
        },
    }
}

/// (requested, allocatable) per configured resource, zeros for resources the node lacks.
pub(crate) fn requested_and_allocatable(
    node: &NodeInfo,
    resources: &[ResourceSpec],
    pod_requests: &[i64],
    use_requested: bool,
) -> (Vec<i64>, Vec<i64>) {
    let mut requested = vec![0; resources.len()];
    let mut allocatable = vec![0; resources.len()];
    for (i, r) in resources.iter().enumerate() {
        let (alloc, req) = allocatable_and_requested(node, &r.name, pod_requests[i], use_requested);
        if alloc != 0 {
            allocatable[i] = alloc;
            requested[i] = req;
        }
    }
    (requested, allocatable)
}

fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

fn most_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 {
        return 0;
    }
    // Pods without requests count upstream's defaults, so requested may exceed capacity.
    requested.min(capacity) * MAX_NODE_SCORE / capacity
}

fn weighted(
    resources: &[ResourceSpec],
    requested: &[i64],
    allocatable: &[i64],
    per_resource: fn(i64, i64) -> i64,
) -> i64 {
    let (mut score, mut weights) = (0, 0);
    for (i, r) in resources.iter().enumerate() {
        if allocatable[i] == 0 {
            continue;
        }
        score += per_resource(requested[i], allocatable[i]) * r.weight;
        weights += r.weight;
    }
    if weights == 0 { 0 } else { score / weights }
}

/// One resource that does not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsufficientResource {
    pub reason: String,
    /// The pod asks for more than the node has at all: preemption cannot help.
    pub unresolvable: bool,
}

/// Upstream's `fitsRequest`.
pub fn fits_request(request: &Resource, node: &NodeInfo) -> Vec<InsufficientResource> {
    let mut out = Vec::new();
    if node.pods.len() as i64 + 1 > node.allocatable.allowed_pod_number {
        out.push(InsufficientResource { reason: "Too many pods".into(), unresolvable: false });
    }
    if request.milli_cpu == 0
        && request.memory == 0
        && request.ephemeral_storage == 0
        && request.scalar.is_empty()
    {
        return out;
    }
    let alloc = &node.allocatable;
    let used = &node.requested;
    let mut check = |name: &str, want: i64, alloc: i64, used: i64| {
        if want > 0 && want > alloc - used {
            out.push(InsufficientResource {
                reason: format!("Insufficient {name}"),
                unresolvable: want > alloc,
            });
        }
    };
    check(CPU, request.milli_cpu, alloc.milli_cpu, used.milli_cpu);
    check(MEMORY, request.memory, alloc.memory, used.memory);
    check(
        EPHEMERAL_STORAGE,
        request.ephemeral_storage,
        alloc.ephemeral_storage,
        used.ephemeral_storage,
    );
    for (name, want) in &request.scalar {
        if *want == 0 {
            continue;
        }
        check(name, *want, alloc.scalar(name), used.scalar(name));
    }
    out
}

#[derive(Debug)]
pub struct NodeResourcesFit {
    strategy: ScoringStrategyType,
    resources: Vec<ResourceSpec>,
}

impl Default for NodeResourcesFit {
    fn default() -> Self {
        Self::new(ScoringStrategyType::LeastAllocated, default_resources())
    }
}

impl NodeResourcesFit {
    pub fn new(strategy: ScoringStrategyType, resources: Vec<ResourceSpec>) -> Self {
        Self { strategy, resources }
    }
}

struct PodRequest(Resource);
struct PodScoreRequests(Vec<i64>);

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> ClusterEvents {
        ClusterEvents::NODE_ADD
            | ClusterEvents::NODE_ALLOCATABLE
            | ClusterEvents::ASSIGNED_POD_DELETE
    }
}

impl PreFilterPlugin for NodeResourcesFit {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        state.write(PRE_FILTER_KEY, PodRequest(pod.resources.requests.clone()));
        (None, Status::success())
    }
}

impl FilterPlugin for NodeResourcesFit {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let request = match state.read::<PodRequest>(PRE_FILTER_KEY) {
            Some(PodRequest(r)) => r,
            None => &pod.resources.requests,
        };
        let insufficient = fits_request(request, node);
        if insufficient.is_empty() {
            return Status::success();
        }
        let code = if insufficient.iter().any(|i| i.unresolvable) {
            Code::UnschedulableAndUnresolvable
        } else {
            Code::Unschedulable
        };
        Status::new(code, insufficient.into_iter().map(|i| i.reason).collect())
    }
}

impl PreScorePlugin for NodeResourcesFit {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
        _snapshot: &Snapshot,
    ) -> Status {
        state.write(
            PRE_SCORE_KEY,
            PodScoreRequests(pod_resource_requests(pod, &self.resources, false)),
        );
        Status::success()
    }
}

impl ScorePlugin for NodeResourcesFit {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let computed;
        let pod_requests = match state.read::<PodScoreRequests>(PRE_SCORE_KEY) {
            Some(PodScoreRequests(r)) => r,
            None => {
                computed = pod_resource_requests(pod, &self.resources, false);
                &computed
            }
        };
        let (requested, allocatable) =
            requested_and_allocatable(node, &self.resources, pod_requests, false);
        let per_resource = match self.strategy {
            ScoringStrategyType::LeastAllocated => least_requested_score,
            ScoringStrategyType::MostAllocated => most_requested_score,
        };
        Ok(weighted(&self.resources, &requested, &allocatable, per_resource))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{NodeBuilder, PodBuilder, node, pod};

    fn filter(p: PodBuilder, n: NodeBuilder, existing: Vec<PodBuilder>) -> Status {
        let p = p.info();
        let mut state = CycleState::default();
        let (_, s) = NodeResourcesFit::default().pre_filter(&mut state, &p, &Snapshot::default());
        assert!(s.is_success());
        let info = n.info(existing.into_iter().map(|e| e.node_name("n").build()));
        NodeResourcesFit::default().filter(&state, &p, &info)
    }

    fn node10() -> NodeBuilder {
        node("n").cpu("10").memory("20").pods(32).allocatable("example.com/foo", "5")
    }

    #[test]
    fn filter_cases_from_upstream() {
        // No requests always fit (while there is pod room).
        assert!(filter(pod("p"), node10(), vec![pod("e").cpu("10").memory("20")]).is_success());
        // Fits exactly.
        assert!(
            filter(pod("p").cpu("1").memory("1"), node10(), vec![pod("e").cpu("5").memory("5")])
                .is_success()
        );
        // Too much cpu: resolvable (node has 10 in total).
        let s =
            filter(pod("p").cpu("1").memory("1"), node10(), vec![pod("e").cpu("10").memory("5")]);
        assert_eq!(s.code(), Code::Unschedulable);
        assert_eq!(s.reasons(), ["Insufficient cpu"]);
        // cpu and memory both short: both reasons, in upstream's order.
        let s =
            filter(pod("p").cpu("2").memory("2"), node10(), vec![pod("e").cpu("9").memory("19")]);
        assert_eq!(s.reasons(), ["Insufficient cpu", "Insufficient memory"]);
        // More than the node has at all: unresolvable.
        let s = filter(pod("p").memory("21"), node10(), vec![]);
        assert_eq!(s.code(), Code::UnschedulableAndUnresolvable);
        assert_eq!(s.reasons(), ["Insufficient memory"]);
        // Extended resources.
        assert!(
            filter(
                pod("p").request("example.com/foo", "2"),
                node10(),
                vec![pod("e").request("example.com/foo", "3")]
            )
            .is_success()
        );
        let s = filter(
            pod("p").request("example.com/foo", "3"),
            node10(),
            vec![pod("e").request("example.com/foo", "3")],
        );
        assert_eq!(s.reasons(), ["Insufficient example.com/foo"]);
        let s = filter(pod("p").request("nvidia.com/gpu", "1"), node10(), vec![]);
        assert_eq!(s.code(), Code::UnschedulableAndUnresolvable);
        assert_eq!(s.reasons(), ["Insufficient nvidia.com/gpu"]);
        // Pod count.
        let s = filter(pod("p"), node("n").cpu("1").pods(1), vec![pod("e")]);
        assert_eq!(s.code(), Code::Unschedulable);
        assert_eq!(s.reasons(), ["Too many pods"]);
        let s = filter(pod("p").cpu("2"), node("n").cpu("1").pods(1), vec![pod("e")]);
        assert_eq!(s.reasons(), ["Too many pods", "Insufficient cpu"]);
        // Ephemeral storage.
        let s = filter(
            pod("p").request("ephemeral-storage", "2Gi"),
            node10().allocatable("ephemeral-storage", "1Gi"),
            vec![],
        );
        assert_eq!(s.reasons(), ["Insufficient ephemeral-storage"]);
    }

    fn score(
        strategy: ScoringStrategyType,
        p: PodBuilder,
        nodes: Vec<crate::cache::NodeInfo>,
    ) -> Vec<i64> {
        let plugin = NodeResourcesFit::new(strategy, default_resources());
        let p = p.info();
        let nodes: Vec<Arc<NodeInfo>> = nodes.into_iter().map(Arc::new).collect();
        let mut state = CycleState::default();
        assert!(plugin.pre_score(&mut state, &p, &nodes, &Snapshot::default()).is_success());
        nodes.iter().map(|n| plugin.score(&state, &p, n).unwrap_or(-1)).collect()
    }

    #[test]
    fn least_allocated_like_upstream() {
        // Upstream's "differently sized machines": pod 3000m/5000 on 4000m/10000 and 6000m/10000.
        // cpu: (4000-3000)*100/4000 = 25, memory (10000-5000)*100/10000 = 50 -> 37
        // cpu: (6000-3000)*100/6000 = 50, memory 50 -> 50
        let scores = score(
            ScoringStrategyType::LeastAllocated,
            pod("p").cpu("3000m").memory("5000"),
            vec![
                node("a").cpu("4000m").memory("10000").info([]),
                node("b").cpu("6000m").memory("10000").info([]),
            ],
        );
        assert_eq!(scores, vec![37, 50]);

        // A pod with no requests counts 100m cpu / 200Mi memory.
        let s = score(
            ScoringStrategyType::LeastAllocated,
            pod("p"),
            vec![node("a").cpu("1000m").memory("2000Mi").info([])],
        );
        // cpu (1000-100)*100/1000 = 90, memory (2000-200)*100/2000 = 90.
        assert_eq!(s, vec![90]);
    }

    #[test]
    fn most_allocated_like_upstream() {
        // Upstream: node 4000m/10000 with 3000m/5000 requested by the pod -> cpu 75, memory 50 -> 62.
        let s = score(
            ScoringStrategyType::MostAllocated,
            pod("p").cpu("3000m").memory("5000"),
            vec![
                node("a").cpu("4000m").memory("10000").info([]),
                node("b").cpu("6000m").memory("10000").info([]),
            ],
        );
        assert_eq!(s, vec![62, 50]);
        // Requests beyond capacity are capped.
        let s = score(
            ScoringStrategyType::MostAllocated,
            pod("p").cpu("5000m").memory("5000"),
            vec![node("a").cpu("4000m").memory("10000").info([])],
        );
        assert_eq!(s, vec![75]);
    }
}
