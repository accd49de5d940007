//! Builders for the Node and Pod objects unit tests need (as upstream's `st.MakeNode()` /
//! `st.MakePod()`).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerImage, ContainerPort, Node, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, NodeSpec, NodeStatus, Pod, PodSpec,
    PreferredSchedulingTerm, ResourceRequirements, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::cache::{NodeInfo, PodInfo};

pub fn node(name: &str) -> NodeBuilder {
    NodeBuilder {
        node: Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("{name}-uid")),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus { allocatable: Some(BTreeMap::new()), ..Default::default() }),
        },
    }
}

#[derive(Debug, Clone)]
pub struct NodeBuilder {
    node: Node,
}

impl NodeBuilder {
    pub fn allocatable(mut self, name: &str, q: &str) -> Self {
        if let Some(a) = self.node.status.as_mut().and_then(|s| s.allocatable.as_mut()) {
            a.insert(name.into(), Quantity(q.into()));
        }
        self
    }
    pub fn cpu(self, q: &str) -> Self {
        self.allocatable("cpu", q)
    }
    pub fn memory(self, q: &str) -> Self {
        self.allocatable("memory", q)
    }
    pub fn pods(self, n: i64) -> Self {
        self.allocatable("pods", &n.to_string())
    }
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.node.metadata.labels.get_or_insert_with(BTreeMap::new).insert(k.into(), v.into());
        self
    }
    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        if let Some(spec) = self.node.spec.as_mut() {
            spec.taints.get_or_insert_with(Vec::new).push(Taint {
                key: key.into(),
                value: (!value.is_empty()).then(|| value.into()),
                effect: effect.into(),
                ..Default::default()
            });
        }
        self
    }
    pub fn unschedulable(mut self) -> Self {
        if let Some(spec) = self.node.spec.as_mut() {
            spec.unschedulable = Some(true);
        }
        self
    }
    pub fn image(mut self, name: &str, size: i64) -> Self {
        if let Some(status) = self.node.status.as_mut() {
            status
                .images
                .get_or_insert_with(Vec::new)
                .push(ContainerImage { names: Some(vec![name.into()]), size_bytes: Some(size) });
        }
        self
    }
    pub fn build(self) -> Node {
        self.node
    }
    pub fn info(self, pods: impl IntoIterator<Item = Pod>) -> NodeInfo {
        NodeInfo::new(Arc::new(self.node), pods.into_iter().map(|p| PodInfo::new(Arc::new(p))))
    }
}

pub fn pod(name: &str) -> PodBuilder {
    PodBuilder {
        pod: Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("{name}-uid")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container { name: "c".into(), ..Default::default() }],
                ..Default::default()
            }),
            status: None,
        },
    }
}

#[derive(Debug, Clone)]
pub struct PodBuilder {
    pod: Pod,
}

impl PodBuilder {
    fn spec(&mut self) -> &mut PodSpec {
        self.pod.spec.get_or_insert_with(PodSpec::default)
    }
    pub fn request(mut self, name: &str, q: &str) -> Self {
        if let Some(c) = self.spec().containers.first_mut() {
            c.resources
                .get_or_insert_with(ResourceRequirements::default)
                .requests
                .get_or_insert_with(BTreeMap::new)
                .insert(name.into(), Quantity(q.into()));
        }
        self
    }
    pub fn cpu(self, q: &str) -> Self {
        self.request("cpu", q)
    }
    pub fn memory(self, q: &str) -> Self {
        self.request("memory", q)
    }
    pub fn container(mut self, image: &str) -> Self {
        self.spec().containers.push(Container {
            name: format!("c{}", image.len()),
            image: Some(image.into()),
            ..Default::default()
        });
        self
    }
    pub fn image(mut self, image: &str) -> Self {
        if let Some(c) = self.spec().containers.first_mut() {
            c.image = Some(image.into());
        }
        self
    }
    pub fn node_name(mut self, name: &str) -> Self {
        self.spec().node_name = Some(name.into());
        self
    }
    pub fn priority(mut self, p: i32) -> Self {
        self.spec().priority = Some(p);
        self
    }
    pub fn host_port(mut self, port: i32, ip: Option<&str>) -> Self {
        if let Some(c) = self.spec().containers.first_mut() {
            c.ports.get_or_insert_with(Vec::new).push(ContainerPort {
                container_port: port,
                host_port: Some(port),
                host_ip: ip.map(Into::into),
                ..Default::default()
            });
        }
        self
    }
    pub fn toleration(mut self, key: &str, op: &str, value: &str, effect: &str) -> Self {
        self.spec().tolerations.get_or_insert_with(Vec::new).push(Toleration {
            key: (!key.is_empty()).then(|| key.into()),
            operator: (!op.is_empty()).then(|| op.into()),
            value: (!value.is_empty()).then(|| value.into()),
            effect: (!effect.is_empty()).then(|| effect.into()),
            ..Default::default()
        });
        self
    }
    pub fn node_selector(mut self, k: &str, v: &str) -> Self {
        self.spec().node_selector.get_or_insert_with(BTreeMap::new).insert(k.into(), v.into());
        self
    }
    fn node_affinity(&mut self) -> &mut NodeAffinity {
        self.spec()
            .affinity
            .get_or_insert_with(Affinity::default)
            .node_affinity
            .get_or_insert_with(NodeAffinity::default)
    }
    /// A required term of label expressions `(key, operator, values)` (terms are ORed).
    pub fn required_term(mut self, exprs: &[(&str, &str, &[&str])]) -> Self {
        let term = NodeSelectorTerm { match_expressions: Some(reqs(exprs)), match_fields: None };
        self.node_affinity()
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(NodeSelector::default)
            .node_selector_terms
            .push(term);
        self
    }
    /// A required term of field expressions (`metadata.name`).
    pub fn required_field_term(mut self, exprs: &[(&str, &str, &[&str])]) -> Self {
        let term = NodeSelectorTerm { match_expressions: None, match_fields: Some(reqs(exprs)) };
        self.node_affinity()
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(NodeSelector::default)
            .node_selector_terms
            .push(term);
        self
    }
    pub fn preferred_term(mut self, weight: i32, exprs: &[(&str, &str, &[&str])]) -> Self {
        let term = PreferredSchedulingTerm {
            weight,
            preference: NodeSelectorTerm {
                match_expressions: Some(reqs(exprs)),
                match_fields: None,
            },
        };
        self.node_affinity()
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term);
        self
    }
    pub fn build(self) -> Pod {
        self.pod
    }
    pub fn info(self) -> PodInfo {
        PodInfo::new(Arc::new(self.pod))
    }
}

fn reqs(exprs: &[(&str, &str, &[&str])]) -> Vec<NodeSelectorRequirement> {
    exprs
        .iter()
        .map(|(k, op, values)| NodeSelectorRequirement {
            key: (*k).into(),
            operator: (*op).into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).into()).collect()),
        })
        .collect()
}
