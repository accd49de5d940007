//! The scheduling framework, as upstream's: plugins implement extension points (PreFilter,
//! Filter, PostFilter, PreScore, Score with NormalizeScore), a [`Framework`] runs a profile's
//! plugins in order, and [`FitError`] turns the per-node statuses into upstream's
//! `0/N nodes are available: ...` message.

use std::any::Any;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use crate::cache::{NodeInfo, PodInfo, Snapshot};

/// The highest score a Score plugin may give (after normalization).
pub const MAX_NODE_SCORE: i64 = 100;

/// Upstream's status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Success,
    /// An internal error: the pod is retried with backoff.
    Error,
    /// The node does not fit now, but preemption might help.
    Unschedulable,
    /// The node does not fit and preemption cannot change that.
    UnschedulableAndUnresolvable,
    /// The plugin has nothing to do for this pod (from PreFilter/PreScore).
    Skip,
}

/// The outcome of one plugin at one extension point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    code: Code,
    reasons: Vec<String>,
    plugin: &'static str,
}

impl Status {
    pub const fn success() -> Self {
        Self { code: Code::Success, reasons: Vec::new(), plugin: "" }
    }

    pub fn new(code: Code, reasons: Vec<String>) -> Self {
        Self { code, reasons, plugin: "" }
    }

    pub fn unschedulable(reason: impl Into<String>) -> Self {
        Self::new(Code::Unschedulable, vec![reason.into()])
    }

    pub fn unresolvable(reason: impl Into<String>) -> Self {
        Self::new(Code::UnschedulableAndUnresolvable, vec![reason.into()])
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self::new(Code::Error, vec![message.into()])
    }

    pub const fn skip() -> Self {
        Self { code: Code::Skip, reasons: Vec::new(), plugin: "" }
    }

    pub fn code(&self) -> Code {
        self.code
    }

    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    /// Unschedulable or UnschedulableAndUnresolvable.
    pub fn is_rejected(&self) -> bool {
        matches!(self.code, Code::Unschedulable | Code::UnschedulableAndUnresolvable)
    }

    pub fn reasons(&self) -> &[String] {
        &self.reasons
    }

    /// The reasons joined with `, `, as upstream's `Status.Message()`.
    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }

    /// The plugin that produced this status.
    pub fn plugin(&self) -> &'static str {
        self.plugin
    }

    pub fn with_plugin(mut self, plugin: &'static str) -> Self {
        self.plugin = plugin;
        self
    }
}

/// Per-cycle data plugins pass from one extension point to the next, keyed by plugin.
#[derive(Default)]
pub struct CycleState {
    data: HashMap<&'static str, Box<dyn Any + Send + Sync>>,
    skip_filter: HashSet<&'static str>,
    skip_score: HashSet<&'static str>,
}

impl fmt::Debug for CycleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CycleState")
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .field("skip_filter", &self.skip_filter)
            .field("skip_score", &self.skip_score)
            .finish()
    }
}

impl CycleState {
    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        self.data.insert(key, Box::new(value));
    }

    pub fn read<T: Any + Send + Sync>(&self, key: &'static str) -> Option<&T> {
        self.data.get(key).and_then(|v| v.downcast_ref())
    }
}

/// Kinds of cluster changes that can make an unschedulable pod schedulable (upstream's
/// `ClusterEvent` action types, for the events this scheduler tracks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClusterEvents(u32);

impl ClusterEvents {
    pub const NONE: Self = Self(0);
    pub const NODE_ADD: Self = Self(1);
    pub const NODE_ALLOCATABLE: Self = Self(1 << 1);
    pub const NODE_LABEL: Self = Self(1 << 2);
    pub const NODE_TAINT: Self = Self(1 << 3);
    /// `spec.unschedulable` changed (cordon/uncordon).
    pub const NODE_SPEC_UNSCHEDULABLE: Self = Self(1 << 4);
    pub const NODE_IMAGES: Self = Self(1 << 5);
    pub const ASSIGNED_POD_DELETE: Self = Self(1 << 6);
    pub const ASSIGNED_POD_ADD: Self = Self(1 << 7);
    pub const ASSIGNED_POD_UPDATE: Self = Self(1 << 8);
    pub const ALL: Self = Self(u32::MAX);

    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for ClusterEvents {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

impl std::ops::BitOrAssign for ClusterEvents {
    fn bitor_assign(&mut self, rhs: Self) {
        *self = self.union(rhs);
    }
}

/// Every plugin has a name and says which cluster events may make a pod it rejected schedulable.
pub trait Plugin: Send + Sync + fmt::Debug {
    fn name(&self) -> &'static str;

    fn events_to_register(&self) -> ClusterEvents {
        ClusterEvents::ALL
    }
}

/// A PreFilter may narrow the nodes worth filtering.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreFilterResult {
    /// `None`: all nodes.
    pub node_names: Option<HashSet<String>>,
}

impl PreFilterResult {
    pub fn all_nodes(&self) -> bool {
        self.node_names.is_none()
    }

    fn merge(self, other: Option<PreFilterResult>) -> PreFilterResult {
        match (self.node_names, other.and_then(|o| o.node_names)) {
            (None, theirs) => PreFilterResult { node_names: theirs },
            (ours, None) => PreFilterResult { node_names: ours },
            (Some(a), Some(b)) => {
                PreFilterResult { node_names: Some(a.intersection(&b).cloned().collect()) }
            }
        }
    }
}

pub trait PreFilterPlugin: Plugin {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status);
}

pub trait FilterPlugin: Plugin {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;
}

/// What a PostFilter (preemption) achieved: a node the pod may use once victims are gone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostFilterResult {
    pub nominated_node_name: Option<String>,
}

pub trait PostFilterPlugin: Plugin {
    fn post_filter(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
        statuses: &NodeToStatus,
        framework: &Framework,
    ) -> (Option<PostFilterResult>, Status);
}

pub trait PreScorePlugin: Plugin {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Status;
}

pub trait ScorePlugin: Plugin {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status>;

    /// Brings the scores into 0..=MAX_NODE_SCORE (upstream's ScoreExtensions).
    fn normalize_score(&self, _state: &CycleState, _pod: &PodInfo, _scores: &mut [i64]) -> Status {
        Status::success()
    }
}

/// Upstream's `DefaultNormalizeScore`: scale to `max` by the highest score, optionally reversed.
pub fn default_normalize_score(max: i64, reverse: bool, scores: &mut [i64]) {
    let highest = scores.iter().copied().max().unwrap_or(0).max(0);
    if highest == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = max);
        }
        return;
    }
    for s in scores.iter_mut() {
        let mut v = max * *s / highest;
        if reverse {
            v = max - v;
        }
        *s = v;
    }
}

/// Per-node statuses of a failed cycle, with the status of nodes not listed.
#[derive(Debug, Clone)]
pub struct NodeToStatus {
    nodes: HashMap<String, Status>,
    absent: Status,
}

impl Default for NodeToStatus {
    fn default() -> Self {
        Self {
            nodes: HashMap::new(),
            absent: Status::new(Code::UnschedulableAndUnresolvable, vec![]),
        }
    }
}

impl NodeToStatus {
    pub fn set(&mut self, node: &str, status: Status) {
        self.nodes.insert(node.to_owned(), status);
    }

    pub fn set_absent(&mut self, status: Status) {
        self.absent = status;
    }

    pub fn get(&self, node: &str) -> &Status {
        self.nodes.get(node).unwrap_or(&self.absent)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Status)> {
        self.nodes.iter()
    }

    /// Names of plugins that rejected some node.
    pub fn plugins(&self) -> HashSet<&'static str> {
        self.nodes
            .values()
            .chain(std::iter::once(&self.absent))
            .map(|s| s.plugin)
            .filter(|p| !p.is_empty())
            .collect()
    }
}

/// Why a pod fits no node: upstream's `FitError`, whose `Display` is the FailedScheduling message.
#[derive(Debug, Clone)]
pub struct FitError {
    pub num_all_nodes: usize,
    pub statuses: NodeToStatus,
    pub pre_filter_msg: String,
    pub post_filter_msg: String,
}

impl FitError {
    /// The `<count> <reason>` histogram, sorted as strings (as upstream's `sort.Strings`).
    fn histogram(&self) -> Vec<String> {
        let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, status) in self.statuses.iter() {
            for reason in status.reasons() {
                *reasons.entry(reason).or_default() += 1;
            }
        }
        let absent = self.num_all_nodes.saturating_sub(self.statuses.len());
        if absent > 0 {
            for reason in self.statuses.absent.reasons() {
                *reasons.entry(reason).or_default() += absent;
            }
        }
        let mut lines: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
        lines.sort();
        lines
    }
}

impl fmt::Display for FitError {
    /// `0/N nodes are available: <PreFilter message or reasons>. <PostFilter message>.`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        if !self.pre_filter_msg.is_empty() {
            write!(f, " {}.", self.pre_filter_msg)?;
        } else {
            let histogram = self.histogram();
            if !histogram.is_empty() {
                write!(f, " {}.", histogram.join(", "))?;
            }
        }
        if !self.post_filter_msg.is_empty() {
            // The preemption message is itself a FitError message ending in a period; upstream
            // (1.34+) prints one period, not two.
            write!(
                f,
                " {}.",
                self.post_filter_msg.strip_suffix('.').unwrap_or(&self.post_filter_msg)
            )?;
        }
        Ok(())
    }
}

/// A profile: the plugins of each extension point, in order, and the score weights.
#[derive(Debug, Default)]
pub struct Framework {
    pub scheduler_name: String,
    pub pre_filter: Vec<Arc<dyn PreFilterPlugin>>,
    pub filter: Vec<Arc<dyn FilterPlugin>>,
    pub post_filter: Vec<Arc<dyn PostFilterPlugin>>,
    pub pre_score: Vec<Arc<dyn PreScorePlugin>>,
    pub score: Vec<(Arc<dyn ScorePlugin>, i64)>,
    /// 0 picks upstream's adaptive percentage.
    pub percentage_of_nodes_to_score: u32,
}

impl Framework {
    /// Runs the PreFilter plugins; a rejection names the plugin. Also returns the plugins that
    /// narrowed the nodes.
    pub fn run_pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (PreFilterResult, Status, Vec<&'static str>) {
        let mut result = PreFilterResult::default();
        let mut plugins_with_nodes: Vec<&'static str> = Vec::new();
        for plugin in &self.pre_filter {
            let (r, status) = plugin.pre_filter(state, pod, snapshot);
            match status.code() {
                Code::Skip => {
                    state.skip_filter.insert(plugin.name());
                    continue;
                }
                Code::Success => {}
                Code::Error => {
                    let msg = format!(
                        "running PreFilter plugin {:?}: {}",
                        plugin.name(),
                        status.message()
                    );
                    return (
                        result,
                        Status::error(msg).with_plugin(plugin.name()),
                        plugins_with_nodes,
                    );
                }
                Code::Unschedulable | Code::UnschedulableAndUnresolvable => {
                    return (result, status.with_plugin(plugin.name()), plugins_with_nodes);
                }
            }
            if r.as_ref().is_some_and(|r| !r.all_nodes()) {
                plugins_with_nodes.push(plugin.name());
            }
            result = result.merge(r);
            if result.node_names.as_ref().is_some_and(HashSet::is_empty) {
                let msg = if let [one] = plugins_with_nodes.as_slice() {
                    format!("node(s) didn't satisfy plugin {one}")
                } else {
                    format!(
                        "node(s) didn't satisfy plugin(s) [{}] simultaneously",
                        plugins_with_nodes.join(" ")
                    )
                };
                let status = Status::unresolvable(msg).with_plugin(plugin.name());
                return (result, status, plugins_with_nodes);
            }
        }
        (result, Status::success(), plugins_with_nodes)
    }

    /// Runs the Filter plugins on one node; the first rejection wins, as upstream.
    pub fn run_filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        for plugin in &self.filter {
            if state.skip_filter.contains(plugin.name()) {
                continue;
            }
            let status = plugin.filter(state, pod, node);
            if !status.is_success() {
                return status.with_plugin(plugin.name());
            }
        }
        Status::success()
    }

    pub fn run_post_filter(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
        statuses: &NodeToStatus,
    ) -> (Option<PostFilterResult>, Status) {
        let mut reasons = Vec::new();
        for plugin in &self.post_filter {
            let (result, status) = plugin.post_filter(state, pod, snapshot, statuses, self);
            if status.is_success() {
                return (result, status);
            }
            if status.code() == Code::Error {
                return (None, status.with_plugin(plugin.name()));
            }
            reasons.extend(status.reasons().iter().cloned());
        }
        (None, Status::new(Code::Unschedulable, reasons))
    }

    /// PreScore, Score, NormalizeScore and weights: the total score of each node.
    pub fn run_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        snapshot: &Snapshot,
    ) -> Result<Vec<i64>, Status> {
        for plugin in &self.pre_score {
            let status = plugin.pre_score(state, pod, nodes, snapshot);
            match status.code() {
                Code::Success => {}
                Code::Skip => {
                    state.skip_score.insert(plugin.name());
                }
                _ => return Err(status.with_plugin(plugin.name())),
            }
        }
        let mut totals = vec![0i64; nodes.len()];
        let mut scores = vec![0i64; nodes.len()];
        for (plugin, weight) in &self.score {
            if state.skip_score.contains(plugin.name()) {
                continue;
            }
            for (score, node) in scores.iter_mut().zip(nodes) {
                *score =
                    plugin.score(state, pod, node).map_err(|s| s.with_plugin(plugin.name()))?;
            }
            let status = plugin.normalize_score(state, pod, &mut scores);
            if !status.is_success() {
                return Err(status.with_plugin(plugin.name()));
            }
            for (total, score) in totals.iter_mut().zip(&scores) {
                if !(0..=MAX_NODE_SCORE).contains(score) {
                    return Err(Status::error(format!(
                        "plugin {:?} returns an invalid score {score}, it should in the range of [0, {MAX_NODE_SCORE}] after normalizing",
                        plugin.name()
                    )));
                }
                *total += score * weight;
            }
        }
        Ok(totals)
    }

    /// Which cluster events may help a pod the given plugins rejected.
    pub fn events_for(&self, plugins: &HashSet<&'static str>) -> ClusterEvents {
        let mut events = ClusterEvents::NONE;
        let all = self
            .pre_filter
            .iter()
            .map(|p| (p.name(), p.events_to_register()))
            .chain(self.filter.iter().map(|p| (p.name(), p.events_to_register())));
        for (name, e) in all {
            if plugins.contains(name) {
                events |= e;
            }
        }
        if events.is_empty() { ClusterEvents::ALL } else { events }
    }

    /// Upstream's `numFeasibleNodesToFind`.
    pub fn num_feasible_nodes_to_find(&self, num_all_nodes: usize) -> usize {
        const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
        const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;
        if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
            return num_all_nodes;
        }
        let mut percentage = self.percentage_of_nodes_to_score as usize;
        if percentage == 0 {
            percentage = 50usize
                .saturating_sub(num_all_nodes / 125)
                .max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND);
        }
        let n = num_all_nodes * percentage.min(100) / 100;
        n.max(MIN_FEASIBLE_NODES_TO_FIND)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_like_upstream() {
        let mut s = vec![0, 2, 4];
        default_normalize_score(100, false, &mut s);
        assert_eq!(s, vec![0, 50, 100]);
        let mut s = vec![0, 1, 3];
        default_normalize_score(100, true, &mut s);
        assert_eq!(s, vec![100, 67, 0]);
        let mut s = vec![0, 0];
        default_normalize_score(100, true, &mut s);
        assert_eq!(s, vec![100, 100]);
        let mut s = vec![0, 0];
        default_normalize_score(100, false, &mut s);
        assert_eq!(s, vec![0, 0]);
    }

    #[test]
    fn feasible_nodes_to_find() {
        let fw = Framework::default();
        assert_eq!(fw.num_feasible_nodes_to_find(50), 50);
        assert_eq!(fw.num_feasible_nodes_to_find(100), 100);
        assert_eq!(fw.num_feasible_nodes_to_find(1000), 420);
        assert_eq!(fw.num_feasible_nodes_to_find(5000), 500);
        assert_eq!(fw.num_feasible_nodes_to_find(6000), 300);
        let fw = Framework { percentage_of_nodes_to_score: 100, ..Framework::default() };
        assert_eq!(fw.num_feasible_nodes_to_find(5000), 5000);
    }

    #[test]
    fn fit_error_message_sorts_the_histogram_as_strings() {
        let mut statuses = NodeToStatus::default();
        for i in 0..3 {
            statuses.set(&format!("m{i}"), Status::unschedulable("Insufficient memory"));
        }
        for i in 0..3 {
            statuses
                .set(&format!("t{i}"), Status::unresolvable("node(s) had untolerated taint(s)"));
        }
        let err = FitError {
            num_all_nodes: 6,
            statuses,
            pre_filter_msg: String::new(),
            post_filter_msg:
                "preemption: 0/6 nodes are available: 6 Preemption is not helpful for scheduling"
                    .into(),
        };
        assert_eq!(
            err.to_string(),
            "0/6 nodes are available: 3 Insufficient memory, 3 node(s) had untolerated taint(s). \
             preemption: 0/6 nodes are available: 6 Preemption is not helpful for scheduling."
        );

        // "10 x" sorts before "9 y": upstream sorts the formatted strings.
        let mut statuses = NodeToStatus::default();
        for i in 0..10 {
            statuses.set(&format!("a{i}"), Status::unschedulable("z reason"));
        }
        for i in 0..9 {
            statuses.set(&format!("b{i}"), Status::unschedulable("a reason"));
        }
        let err = FitError {
            num_all_nodes: 19,
            statuses,
            pre_filter_msg: String::new(),
            post_filter_msg: String::new(),
        };
        assert_eq!(err.to_string(), "0/19 nodes are available: 10 z reason, 9 a reason.");
    }

    #[test]
    fn fit_error_counts_absent_nodes_and_prefers_the_prefilter_message() {
        let mut statuses = NodeToStatus::default();
        statuses.set("a", Status::unresolvable("node(s) were unschedulable"));
        statuses
            .set_absent(Status::unresolvable("node(s) didn't satisfy plugin(s) [NodeAffinity]"));
        let err = FitError {
            num_all_nodes: 3,
            statuses: statuses.clone(),
            pre_filter_msg: String::new(),
            post_filter_msg: String::new(),
        };
        assert_eq!(
            err.to_string(),
            "0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't satisfy plugin(s) [NodeAffinity]."
        );
        let err = FitError {
            num_all_nodes: 3,
            statuses,
            pre_filter_msg: "pod affinity terms conflict".into(),
            post_filter_msg: String::new(),
        };
        assert_eq!(err.to_string(), "0/3 nodes are available: pod affinity terms conflict.");
    }
}
