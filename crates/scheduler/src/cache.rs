//! The scheduler's view of the cluster: per node, the Node object and the pods on it (bound or
//! assumed) with their aggregated requests, host ports and images. Pods are *assumed* onto a node
//! the moment the scheduler picks it, so the next cycle already counts them; a failed binding
//! *forgets* them again. Each cycle works on a [`Snapshot`], refreshed from the cache by copying
//! only the nodes that changed since the last one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::resources::{self, PodResources, Resource};

/// A host port a pod claims: protocol, host IP (`0.0.0.0` for any) and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    /// Upstream's `HostPortInfo.CheckConflict`: same protocol and port, and either address is
    /// the wildcard or both are equal.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == WILDCARD || other.ip == WILDCARD)
    }
}

const WILDCARD: &str = "0.0.0.0";

/// The host ports of a pod's containers (and restartable init containers), with upstream's
/// defaults: protocol TCP, address 0.0.0.0.
pub fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|hp| hp > 0))
        .map(|p| HostPort {
            protocol: p.protocol.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "TCP".into()),
            ip: p.host_ip.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| WILDCARD.into()),
            port: p.host_port.unwrap_or_default(),
        })
        .collect()
}

/// A pod as the scheduler keeps it: the object and what it costs its node.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub uid: String,
    pub resources: PodResources,
    pub host_ports: Vec<HostPort>,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> Self {
        Self {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            resources: PodResources::of(&pod),
            host_ports: host_ports(&pod),
            pod,
        }
    }

    /// `spec.priority`, 0 when unset (as upstream's `PodPriority`).
    pub fn priority(&self) -> i32 {
        pod_priority(&self.pod)
    }
}

pub fn pod_priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// Upstream's `normalizedImageName`: a name without a tag gets `:latest`.
pub fn normalized_image_name(name: &str) -> String {
    let colon = name.rfind(':');
    let slash = name.rfind('/');
    match (colon, slash) {
        (Some(c), Some(s)) if c > s => name.to_owned(),
        (Some(_), None) => name.to_owned(),
        _ => format!("{name}:latest"),
    }
}

/// One node with everything placed on it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    node: Option<Arc<Node>>,
    name: String,
    pub pods: Vec<PodInfo>,
    pub requested: Resource,
    /// cpu/memory with upstream's defaults for pods that request none (for scoring).
    pub non_zero_requested: Resource,
    pub allocatable: Resource,
    pub used_ports: Vec<HostPort>,
    /// Image name (every name the node reports) to size in bytes.
    pub images: HashMap<String, i64>,
}

impl NodeInfo {
    fn empty(name: &str) -> Self {
        Self {
            node: None,
            name: name.to_owned(),
            pods: Vec::new(),
            requested: Resource::default(),
            non_zero_requested: Resource::default(),
            allocatable: Resource::default(),
            used_ports: Vec::new(),
            images: HashMap::new(),
        }
    }

    /// A node with the given pods (for tests and the preemption dry run).
    pub fn new(node: Arc<Node>, pods: impl IntoIterator<Item = PodInfo>) -> Self {
        let mut info = Self::empty(node.metadata.name.as_deref().unwrap_or_default());
        info.set_node(node);
        for p in pods {
            info.add_pod(p);
        }
        info
    }

    /// The Node object; `None` while only pods name this node.
    pub fn node(&self) -> &Node {
        static EMPTY: std::sync::OnceLock<Node> = std::sync::OnceLock::new();
        self.node.as_deref().unwrap_or_else(|| EMPTY.get_or_init(Node::default))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn set_node(&mut self, node: Arc<Node>) {
        let status = node.status.as_ref();
        self.allocatable = Resource::from_list(&resources::parse_list(
            status.and_then(|s| s.allocatable.as_ref()),
        ));
        self.images.clear();
        for image in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            for name in image.names.iter().flatten() {
                self.images.insert(name.clone(), image.size_bytes.unwrap_or(0));
            }
        }
        self.node = Some(node);
    }

    pub fn add_pod(&mut self, pod: PodInfo) {
        self.requested.add(&pod.resources.requests);
        self.non_zero_requested.milli_cpu += pod.resources.non_zero_milli_cpu;
        self.non_zero_requested.memory += pod.resources.non_zero_memory;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        self.pods.push(pod);
    }

    /// Removes the pod with this uid; false when it is not here.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let Some(i) = self.pods.iter().position(|p| p.uid == uid) else {
            return false;
        };
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.resources.requests);
        self.non_zero_requested.milli_cpu -= pod.resources.non_zero_milli_cpu;
        self.non_zero_requested.memory -= pod.resources.non_zero_memory;
        for port in &pod.host_ports {
            if let Some(j) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(j);
            }
        }
        true
    }
}

#[derive(Debug)]
struct PodState {
    node: String,
    assumed: bool,
}

/// The cache the informers and the scheduling loop share (behind the scheduler's lock).
#[derive(Debug, Default)]
pub struct Cache {
    nodes: HashMap<String, Arc<NodeInfo>>,
    pods: HashMap<String, PodState>,
    /// Nodes changed since the last snapshot.
    dirty: HashSet<String>,
    /// Image name to how many nodes have it (upstream's `ImageStateSummary.NumNodes`).
    image_nodes: HashMap<String, usize>,
    images_changed: bool,
}

impl Cache {
    pub fn node_count(&self) -> usize {
        self.nodes.values().filter(|n| n.node.is_some()).count()
    }

    fn node_mut(&mut self, name: &str) -> &mut NodeInfo {
        self.dirty.insert(name.to_owned());
        let entry =
            self.nodes.entry(name.to_owned()).or_insert_with(|| Arc::new(NodeInfo::empty(name)));
        Arc::make_mut(entry)
    }

    fn count_images<'a>(&mut self, names: impl IntoIterator<Item = &'a String>, delta: isize) {
        for name in names {
            let n = self.image_nodes.entry(name.clone()).or_default();
            *n = n.saturating_add_signed(delta);
            if *n == 0 {
                self.image_nodes.remove(name);
            }
            self.images_changed = true;
        }
    }

    /// Adds or replaces a Node object.
    pub fn set_node(&mut self, node: Arc<Node>) {
        let Some(name) = node.metadata.name.clone() else {
            return;
        };
        if let Some(old) = self.nodes.get(&name).cloned()
            && old.node.is_some()
        {
            self.count_images(old.images.keys(), -1);
        }
        let info = self.node_mut(&name);
        info.set_node(node);
        let names: Vec<String> = info.images.keys().cloned().collect();
        self.count_images(&names, 1);
    }

    /// Removes a Node object; its pods stay until they are deleted themselves.
    pub fn remove_node(&mut self, name: &str) {
        let Some(old) = self.nodes.get(name).cloned() else {
            return;
        };
        if old.node.is_some() {
            self.count_images(old.images.keys(), -1);
        }
        if old.pods.is_empty() {
            self.nodes.remove(name);
            self.dirty.insert(name.to_owned());
        } else {
            let info = self.node_mut(name);
            info.node = None;
            info.allocatable = Resource::default();
            info.images.clear();
        }
    }

    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().filter(|(_, n)| n.node.is_some()).map(|(k, _)| k.clone()).collect()
    }

    /// The Node object of `name`, if the cache has it.
    pub fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.nodes.get(name).and_then(|n| n.node.clone())
    }

    /// Whether the pod is placed on a node (bound or assumed).
    pub fn has_pod(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    pub fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|p| p.assumed)
    }

    /// Places a pod the scheduler just picked a node for (its `spec.nodeName` set).
    pub fn assume_pod(&mut self, pod: Arc<Pod>, node: &str) {
        let info = PodInfo::new(pod);
        let uid = info.uid.clone();
        self.remove_pod(&uid);
        self.node_mut(node).add_pod(info);
        self.pods.insert(uid, PodState { node: node.to_owned(), assumed: true });
    }

    /// Takes back an assumed pod whose binding failed.
    pub fn forget_pod(&mut self, uid: &str) {
        if self.is_assumed(uid) {
            self.remove_pod(uid);
        }
    }

    /// Adds or updates a pod the API reports on a node (confirming an assumed one).
    pub fn set_pod(&mut self, pod: Arc<Pod>) {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            return;
        };
        let info = PodInfo::new(pod);
        let uid = info.uid.clone();
        self.remove_pod(&uid);
        self.node_mut(&node).add_pod(info);
        self.pods.insert(uid, PodState { node, assumed: false });
    }

    /// Removes a pod wherever it is.
    pub fn remove_pod(&mut self, uid: &str) {
        let Some(state) = self.pods.remove(uid) else {
            return;
        };
        let empty_orphan = {
            let info = self.node_mut(&state.node);
            info.remove_pod(uid);
            info.node.is_none() && info.pods.is_empty()
        };
        if empty_orphan {
            self.nodes.remove(&state.node);
        }
    }

    /// Uids of the pods the API reported (assumed ones are not included).
    pub fn bound_pod_uids(&self) -> Vec<String> {
        self.pods.iter().filter(|(_, s)| !s.assumed).map(|(k, _)| k.clone()).collect()
    }

    /// Brings `snapshot` up to date, touching only the nodes changed since the last call.
    pub fn update_snapshot(&mut self, snapshot: &mut Snapshot) {
        for name in self.dirty.drain() {
            let current = self.nodes.get(&name).filter(|n| n.node.is_some());
            match (snapshot.index.get(&name).copied(), current) {
                (Some(i), Some(info)) => snapshot.nodes[i] = info.clone(),
                (None, Some(info)) => {
                    snapshot.index.insert(name, snapshot.nodes.len());
                    snapshot.nodes.push(info.clone());
                }
                (Some(i), None) => {
                    snapshot.index.remove(&name);
                    snapshot.nodes.swap_remove(i);
                    if let Some(moved) = snapshot.nodes.get(i) {
                        snapshot.index.insert(moved.name.clone(), i);
                    }
                }
                (None, None) => {}
            }
        }
        if self.images_changed {
            snapshot.image_nodes = Arc::new(self.image_nodes.clone());
            self.images_changed = false;
        }
    }
}

/// A consistent view of all nodes for one scheduling cycle.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    nodes: Vec<Arc<NodeInfo>>,
    index: HashMap<String, usize>,
    image_nodes: Arc<HashMap<String, usize>>,
}

impl Snapshot {
    /// A snapshot of exactly these nodes (for tests).
    pub fn from_nodes(nodes: Vec<NodeInfo>) -> Self {
        let mut cache = Cache::default();
        for n in &nodes {
            if let Some(node) = &n.node {
                cache.set_node(node.clone());
            }
            for p in &n.pods {
                cache.node_mut(&n.name).add_pod(p.clone());
            }
        }
        let mut snapshot = Snapshot::default();
        cache.update_snapshot(&mut snapshot);
        snapshot
    }

    pub fn nodes(&self) -> &[Arc<NodeInfo>] {
        &self.nodes
    }

    pub fn get(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// How many nodes report this image name.
    pub fn image_node_count(&self, image: &str) -> usize {
        self.image_nodes.get(image).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod};

    #[test]
    fn assume_confirm_forget() {
        let mut cache = Cache::default();
        cache.set_node(Arc::new(node("n1").cpu("4").memory("8Gi").pods(110).build()));
        let p = Arc::new(pod("p1").cpu("1").memory("1Gi").node_name("n1").build());
        cache.assume_pod(p.clone(), "n1");
        let mut snap = Snapshot::default();
        cache.update_snapshot(&mut snap);
        let n1 = snap.get("n1").expect("n1");
        assert_eq!(n1.requested.milli_cpu, 1000);
        assert_eq!(n1.pods.len(), 1);
        assert!(cache.is_assumed("p1-uid"));

        // The watch confirms the binding: still counted once.
        cache.set_pod(p);
        cache.update_snapshot(&mut snap);
        assert_eq!(snap.get("n1").expect("n1").requested.milli_cpu, 1000);
        assert!(!cache.is_assumed("p1-uid"));

        // Forget only drops assumed pods.
        cache.forget_pod("p1-uid");
        cache.update_snapshot(&mut snap);
        assert_eq!(snap.get("n1").expect("n1").pods.len(), 1);

        let p2 = Arc::new(pod("p2").cpu("500m").build());
        cache.assume_pod(p2, "n1");
        cache.forget_pod("p2-uid");
        cache.update_snapshot(&mut snap);
        assert_eq!(snap.get("n1").expect("n1").requested.milli_cpu, 1000);
    }

    #[test]
    fn snapshot_follows_node_removal_and_orphan_pods() {
        let mut cache = Cache::default();
        let mut snap = Snapshot::default();
        for name in ["a", "b", "c"] {
            cache.set_node(Arc::new(node(name).build()));
        }
        // A pod on a node the cache has not seen yet.
        cache.set_pod(Arc::new(pod("p").node_name("d").build()));
        cache.update_snapshot(&mut snap);
        assert_eq!(snap.len(), 3);
        cache.remove_node("a");
        cache.update_snapshot(&mut snap);
        assert_eq!(snap.len(), 2);
        assert!(snap.get("a").is_none());
        assert!(snap.get("b").is_some() && snap.get("c").is_some());
        cache.set_node(Arc::new(node("d").build()));
        cache.update_snapshot(&mut snap);
        assert_eq!(snap.get("d").expect("d").pods.len(), 1);
    }

    #[test]
    fn image_counts() {
        let mut cache = Cache::default();
        let mut snap = Snapshot::default();
        cache.set_node(Arc::new(node("a").image("nginx:1.0", 100).build()));
        cache.set_node(Arc::new(node("b").image("nginx:1.0", 100).build()));
        cache.update_snapshot(&mut snap);
        assert_eq!(snap.image_node_count("nginx:1.0"), 2);
        cache.remove_node("a");
        cache.update_snapshot(&mut snap);
        assert_eq!(snap.image_node_count("nginx:1.0"), 1);
    }

    #[test]
    fn ports_and_image_names() {
        let p = pod("p").host_port(8080, None).build();
        let ports = host_ports(&p);
        assert_eq!(
            ports,
            vec![HostPort { protocol: "TCP".into(), ip: "0.0.0.0".into(), port: 8080 }]
        );
        let a = HostPort { protocol: "TCP".into(), ip: "10.0.0.1".into(), port: 80 };
        let b = HostPort { protocol: "TCP".into(), ip: "10.0.0.2".into(), port: 80 };
        let any = HostPort { protocol: "TCP".into(), ip: "0.0.0.0".into(), port: 80 };
        let udp = HostPort { protocol: "UDP".into(), ip: "0.0.0.0".into(), port: 80 };
        assert!(!a.conflicts(&b));
        assert!(a.conflicts(&any) && any.conflicts(&b));
        assert!(!udp.conflicts(&any));
        assert_eq!(normalized_image_name("nginx"), "nginx:latest");
        assert_eq!(normalized_image_name("nginx:1.2"), "nginx:1.2");
        assert_eq!(normalized_image_name("registry:5000/nginx"), "registry:5000/nginx:latest");
        assert_eq!(normalized_image_name("registry:5000/nginx:1"), "registry:5000/nginx:1");
    }
}
