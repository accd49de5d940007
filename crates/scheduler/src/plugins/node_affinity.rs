//! NodeAffinity: `spec.nodeSelector` and required node affinity must match the node (Filter,
//! with PreFilter narrowing to the nodes named by `matchFields metadata.name In`); preferred
//! node affinity adds the weights of the matching terms (Score, normalized to 0..100).
//!
//! Selector semantics are upstream's `component-helpers/scheduling/corev1/nodeaffinity`: terms
//! are ORed, expressions in a term ANDed, empty or invalid terms match nothing.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm, Pod};

use crate::cache::{NodeInfo, PodInfo, Snapshot};
use crate::framework::{
    ClusterEvents, CycleState, FilterPlugin, MAX_NODE_SCORE, Plugin, PreFilterPlugin,
    PreFilterResult, PreScorePlugin, ScorePlugin, Status, default_normalize_score,
};

pub const NAME: &str = "NodeAffinity";
pub const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";
pub const ERR_REASON_CONFLICT: &str = "pod affinity terms conflict";
const PRE_FILTER_KEY: &str = "PreFilterNodeAffinity";
const PRE_SCORE_KEY: &str = "PreScoreNodeAffinity";

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelOp {
    In(HashSet<String>),
    NotIn(HashSet<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

/// One parsed `NodeSelectorRequirement` on labels.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LabelRequirement {
    key: String,
    op: LabelOp,
}

impl LabelRequirement {
    fn parse(r: &NodeSelectorRequirement) -> Option<Self> {
        let values = r.values.as_deref().unwrap_or(&[]);
        let set = || values.iter().cloned().collect::<HashSet<_>>();
        let single_int = || match values {
            [v] => v.parse::<i64>().ok(),
            _ => None,
        };
        if r.key.is_empty() {
            return None;
        }
        let op = match r.operator.as_str() {
            "In" if !values.is_empty() => LabelOp::In(set()),
            "NotIn" if !values.is_empty() => LabelOp::NotIn(set()),
            "Exists" if values.is_empty() => LabelOp::Exists,
            "DoesNotExist" if values.is_empty() => LabelOp::DoesNotExist,
            "Gt" => LabelOp::Gt(single_int()?),
            "Lt" => LabelOp::Lt(single_int()?),
            _ => return None,
        };
        Some(Self { key: r.key.clone(), op })
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match &self.op {
            LabelOp::In(set) => value.is_some_and(|v| set.contains(v)),
            LabelOp::NotIn(set) => value.is_none_or(|v| !set.contains(v)),
            LabelOp::Exists => value.is_some(),
            LabelOp::DoesNotExist => value.is_none(),
            LabelOp::Gt(n) => value.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v > *n),
            LabelOp::Lt(n) => value.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v < *n),
        }
    }
}

/// A `matchFields` requirement: only `metadata.name` with In/NotIn and exactly one value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldRequirement {
    name: String,
    negated: bool,
}

impl FieldRequirement {
    fn parse(r: &NodeSelectorRequirement) -> Option<Self> {
        let [value] = r.values.as_deref().unwrap_or(&[]) else {
            return None;
        };
        if r.key != "metadata.name" {
            return None;
        }
        let negated = match r.operator.as_str() {
            "In" => false,
            "NotIn" => true,
            _ => return None,
        };
        Some(Self { name: value.clone(), negated })
    }

    fn matches(&self, node_name: &str) -> bool {
        (self.name == node_name) != self.negated
    }
}

/// A parsed, non-empty term.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    labels: Vec<LabelRequirement>,
    fields: Vec<FieldRequirement>,
}

impl Term {
    /// `None` for empty or invalid terms (they match nothing).
    fn parse(t: &NodeSelectorTerm) -> Option<Self> {
        let labels = t
            .match_expressions
            .iter()
            .flatten()
            .map(LabelRequirement::parse)
            .collect::<Option<Vec<_>>>()?;
        let fields = t
            .match_fields
            .iter()
            .flatten()
            .map(FieldRequirement::parse)
            .collect::<Option<Vec<_>>>()?;
        (!labels.is_empty() || !fields.is_empty()).then_some(Self { labels, fields })
    }

    fn matches(&self, node: &Node) -> bool {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        let labels = node.metadata.labels.as_ref().unwrap_or(&EMPTY);
        let name = node.metadata.name.as_deref().unwrap_or_default();
        self.labels.iter().all(|r| r.matches(labels)) && self.fields.iter().all(|r| r.matches(name))
    }
}

/// Upstream's `RequiredNodeAffinity`: `spec.nodeSelector` and the required terms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequiredNodeAffinity {
    node_selector: BTreeMap<String, String>,
    /// `None`: no required affinity.
    terms: Option<Vec<Term>>,
}

impl RequiredNodeAffinity {
    pub fn of(pod: &Pod) -> Self {
        let spec = pod.spec.as_ref();
        let node_selector = spec.and_then(|s| s.node_selector.clone()).unwrap_or_default();
        let terms = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| na.required_during_scheduling_ignored_during_execution.as_ref())
            .map(|ns| ns.node_selector_terms.iter().filter_map(Term::parse).collect());
        Self { node_selector, terms }
    }

    pub fn matches(&self, node: &Node) -> bool {
        if !self.node_selector.is_empty() {
            let labels = node.metadata.labels.as_ref();
            let ok = self
                .node_selector
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)).is_some_and(|lv| lv == v));
            if !ok {
                return false;
            }
        }
        match &self.terms {
            None => true,
            Some(terms) => terms.iter().any(|t| t.matches(node)),
        }
    }
}

fn required_terms(pod: &Pod) -> Option<&[NodeSelectorTerm]> {
    pod.spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .map(|ns| ns.node_selector_terms.as_slice())
}

#[derive(Debug, Default)]
pub struct NodeAffinity;

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
    fn events_to_register(&self) -> ClusterEvents {
        ClusterEvents::NODE_ADD | ClusterEvents::NODE_LABEL
    }
}

impl PreFilterPlugin for NodeAffinity {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let terms = required_terms(&pod.pod);
        let has_selector = pod.pod.spec.as_ref().is_some_and(|s| s.node_selector.is_some());
        if terms.is_none() && !has_selector {
            return (None, Status::skip());
        }
        state.write(PRE_FILTER_KEY, RequiredNodeAffinity::of(&pod.pod));
        let Some(terms) = terms.filter(|t| !t.is_empty()) else {
            return (None, Status::success());
        };
        // Terms that all pin `metadata.name In [...]` narrow the nodes worth filtering.
        let mut names: HashSet<String> = HashSet::new();
        for term in terms {
            let mut term_names: Option<HashSet<String>> = None;
            for r in term.match_fields.iter().flatten() {
                if r.key == "metadata.name" && r.operator == "In" {
                    let s: HashSet<String> = r.values.iter().flatten().cloned().collect();
                    term_names = Some(match term_names {
                        None => s,
                        Some(t) => t.intersection(&s).cloned().collect(),
                    });
                }
            }
            match term_names {
                // A term without a name requirement allows every node: terms are ORed.
                None => return (None, Status::success()),
                Some(t) => names.extend(t),
            }
        }
        if names.is_empty() {
            return (None, Status::unresolvable(ERR_REASON_CONFLICT));
        }
        (Some(PreFilterResult { node_names: Some(names) }), Status::success())
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let computed;
        let required = match state.read::<RequiredNodeAffinity>(PRE_FILTER_KEY) {
            Some(r) => r,
            None => {
                computed = RequiredNodeAffinity::of(&pod.pod);
                &computed
            }
        };
        if required.matches(node.node()) {
            Status::success()
        } else {
            Status::unresolvable(ERR_REASON_POD)
        }
    }
}

/// Parsed preferred terms with their weights.
struct PreferredTerms(Vec<(i64, Term)>);

impl PreScorePlugin for NodeAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
        _snapshot: &Snapshot,
    ) -> Status {
        let preferred = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| na.preferred_during_scheduling_ignored_during_execution.as_ref());
        let Some(preferred) = preferred else {
            return Status::skip();
        };
        let terms = preferred
            .iter()
            .filter(|t| t.weight != 0)
            .filter_map(|t| Some((i64::from(t.weight), Term::parse(&t.preference)?)))
            .collect();
        state.write(PRE_SCORE_KEY, PreferredTerms(terms));
        Status::success()
    }
}

impl ScorePlugin for NodeAffinity {
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(PreferredTerms(terms)) = state.read(PRE_SCORE_KEY) else {
            return Ok(0);
        };
        Ok(terms.iter().filter(|(_, t)| t.matches(node.node())).map(|(w, _)| w).sum())
    }

    fn normalize_score(&self, _state: &CycleState, _pod: &PodInfo, scores: &mut [i64]) -> Status {
        default_normalize_score(MAX_NODE_SCORE, false, scores);
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::testing::{PodBuilder, node, pod};

    fn fits(p: PodBuilder, n: crate::testing::NodeBuilder) -> bool {
        let p = p.info();
        let mut state = CycleState::default();
        let (_, s) = NodeAffinity.pre_filter(&mut state, &p, &Snapshot::default());
        if s.code() == Code::Skip {
            return true;
        }
        assert!(s.is_success(), "{s:?}");
        let status = NodeAffinity.filter(&state, &p, &n.info([]));
        if !status.is_success() {
            assert_eq!(status.code(), Code::UnschedulableAndUnresolvable);
            assert_eq!(status.reasons(), [ERR_REASON_POD]);
        }
        status.is_success()
    }

    #[test]
    fn node_selector() {
        assert!(fits(pod("p"), node("n")));
        assert!(!fits(pod("p").node_selector("foo", "bar"), node("n")));
        assert!(fits(pod("p").node_selector("foo", "bar"), node("n").label("foo", "bar")));
        assert!(!fits(pod("p").node_selector("foo", "bar"), node("n").label("foo", "baz")));
    }

    #[test]
    fn operators() {
        let n = || node("n").label("foo", "bar").label("kernel-version", "0206");
        assert!(fits(pod("p").required_term(&[("foo", "In", &["value1", "bar"])]), n()));
        assert!(!fits(pod("p").required_term(&[("foo", "In", &["value1"])]), n()));
        assert!(fits(pod("p").required_term(&[("foo", "NotIn", &["value1"])]), n()));
        assert!(fits(pod("p").required_term(&[("missing", "NotIn", &["x"])]), n()));
        assert!(!fits(pod("p").required_term(&[("foo", "NotIn", &["bar"])]), n()));
        assert!(fits(pod("p").required_term(&[("foo", "Exists", &[])]), n()));
        assert!(!fits(pod("p").required_term(&[("foo", "DoesNotExist", &[])]), n()));
        assert!(fits(pod("p").required_term(&[("kernel-version", "Gt", &["0204"])]), n()));
        assert!(!fits(pod("p").required_term(&[("kernel-version", "Lt", &["0204"])]), n()));
        // Gt on a non-integer label never matches.
        assert!(!fits(pod("p").required_term(&[("foo", "Gt", &["1"])]), n()));
        // Expressions in a term are ANDed.
        assert!(!fits(
            pod("p").required_term(&[("foo", "In", &["bar"]), ("kernel-version", "Lt", &["0204"])]),
            n()
        ));
        // Terms are ORed.
        assert!(fits(
            pod("p").required_term(&[("foo", "In", &["nope"])]).required_term(&[(
                "foo",
                "Exists",
                &[]
            )]),
            n()
        ));
        // Invalid terms (In without values) match nothing.
        assert!(!fits(pod("p").required_term(&[("foo", "In", &[])]), n()));
        // nodeSelector and affinity must both match.
        assert!(!fits(
            pod("p").node_selector("foo", "other").required_term(&[("foo", "Exists", &[])]),
            n()
        ));
    }

    #[test]
    fn match_fields_and_prefilter_narrowing() {
        let p = pod("p").required_field_term(&[("metadata.name", "In", &["node1"])]);
        assert!(fits(p.clone(), node("node1")));
        assert!(!fits(p.clone(), node("node2")));
        assert!(fits(
            pod("p").required_field_term(&[("metadata.name", "NotIn", &["node1"])]),
            node("node2")
        ));

        let mut state = CycleState::default();
        let (r, s) = NodeAffinity.pre_filter(&mut state, &p.clone().info(), &Snapshot::default());
        assert!(s.is_success());
        assert_eq!(r.and_then(|r| r.node_names), Some(HashSet::from(["node1".to_owned()])));

        // Two terms with names: the union. A term without names: all nodes.
        let p2 = pod("p")
            .required_field_term(&[("metadata.name", "In", &["a"])])
            .required_field_term(&[("metadata.name", "In", &["b"])]);
        let (r, _) =
            NodeAffinity.pre_filter(&mut CycleState::default(), &p2.info(), &Snapshot::default());
        assert_eq!(r.and_then(|r| r.node_names).map(|n| n.len()), Some(2));
        let p3 = p.required_term(&[("foo", "Exists", &[])]);
        let (r, _) =
            NodeAffinity.pre_filter(&mut CycleState::default(), &p3.info(), &Snapshot::default());
        assert!(r.is_none());

        // Conflicting names within one term.
        let conflict = pod("p").required_field_term(&[
            ("metadata.name", "In", &["a"]),
            ("metadata.name", "In", &["b"]),
        ]);
        let (_, s) = NodeAffinity.pre_filter(
            &mut CycleState::default(),
            &conflict.info(),
            &Snapshot::default(),
        );
        assert_eq!(s.reasons(), [ERR_REASON_CONFLICT]);
    }

    #[test]
    fn preferred_terms_score() {
        let p = pod("p")
            .preferred_term(2, &[("foo", "In", &["bar"])])
            .preferred_term(4, &[("key", "Exists", &[])])
            .info();
        let nodes: Vec<Arc<NodeInfo>> = vec![
            Arc::new(node("a").info([])),
            Arc::new(node("b").label("foo", "bar").info([])),
            Arc::new(node("c").label("foo", "bar").label("key", "x").info([])),
        ];
        let mut state = CycleState::default();
        assert!(NodeAffinity.pre_score(&mut state, &p, &nodes, &Snapshot::default()).is_success());
        let mut scores: Vec<i64> =
            nodes.iter().map(|n| NodeAffinity.score(&state, &p, n).unwrap_or(-1)).collect();
        assert_eq!(scores, vec![0, 2, 6]);
        NodeAffinity.normalize_score(&state, &p, &mut scores);
        assert_eq!(scores, vec![0, 33, 100]);
        assert_eq!(
            NodeAffinity
                .pre_score(
                    &mut CycleState::default(),
                    &pod("q").info(),
                    &nodes,
                    &Snapshot::default()
                )
                .code(),
            Code::Skip
        );
    }
}
