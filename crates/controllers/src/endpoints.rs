//! The Endpoints and EndpointSlice controllers (upstream's `endpoint` and `endpointslice`):
//! from each Service with a selector and the pods it selects, the addresses clients reach —
//! an `Endpoints` object (ready pods in `addresses`, the rest in `notReadyAddresses`) and
//! EndpointSlices of at most 100 endpoints each with ready/serving/terminating conditions.
//! A pod's change (readiness, deletion) reaches both at once, with no batching delay.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort as CorePort, EndpointSubset, Endpoints, Node, ObjectReference,
    Pod, Service, ServicePort,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, PostParams};
use tokio::task::JoinSet;

use crate::pods;
use crate::replicaset::is_status;
use crate::{Change, Context, Informer, ObjectKey, Result, WorkQueue};

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Upstream's `--max-endpoints-per-slice` default.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Endpoints,
    Slices,
}

struct Controller {
    kind: Kind,
    client: kube::Client,
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    slices: Option<Arc<Informer<EndpointSlice>>>,
    queue: Arc<WorkQueue<ObjectKey>>,
    /// The slices this controller wrote, per Service: name → resourceVersion written (`None`:
    /// deleted). A sync waits until the cache shows them (upstream's `EndpointSliceTracker`),
    /// or it would act on stale slices and write duplicates.
    written: std::sync::Mutex<HashMap<ObjectKey, WrittenSlices>>,
}

pub(crate) fn start_endpoints(ctx: &Context, tasks: &mut JoinSet<Result<()>>) {
    start(Kind::Endpoints, "endpoint", ctx, tasks);
}

pub(crate) fn start_slices(ctx: &Context, tasks: &mut JoinSet<Result<()>>) {
    start(Kind::Slices, "endpointslice", ctx, tasks);
}

fn start(kind: Kind, name: &'static str, ctx: &Context, tasks: &mut JoinSet<Result<()>>) {
    let slices = (kind == Kind::Slices).then(|| ctx.informers.get::<EndpointSlice>());
    let controller = Arc::new(Controller {
        kind,
        client: ctx.client.clone(),
        services: ctx.informers.get::<Service>(),
        pods: ctx.informers.get::<Pod>(),
        nodes: ctx.informers.get::<Node>(),
        slices,
        queue: WorkQueue::new(),
        written: Default::default(),
    });
    let c = controller.clone();
    controller
        .services
        .add_handler(move |change| c.queue.add(ObjectKey::of(change.object().as_ref())));
    let c = controller.clone();
    controller.pods.add_handler(move |change| {
        let mut pods_seen = vec![change.object().clone()];
        if let Change::Updated { old, .. } = change {
            pods_seen.push((*old).clone());
        }
        for pod in pods_seen {
            for svc in c.services.list_namespace(&pod.namespace().unwrap_or_default()) {
                if selects(&svc, &pod) {
                    c.queue.add(ObjectKey::of(svc.as_ref()));
                }
            }
        }
    });
    let workers = ctx.config.workers;
    let stop = ctx.stop.clone();
    tasks.spawn(async move {
        controller.services.wait_synced().await;
        controller.pods.wait_synced().await;
        controller.nodes.wait_synced().await;
        if let Some(s) = &controller.slices {
            s.wait_synced().await;
        }
        let c = controller.clone();
        crate::run_workers(name, controller.queue.clone(), workers, stop, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        })
        .await
    });
}

fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec.as_ref()?.selector.as_ref().filter(|s| !s.is_empty())
}

fn selects(svc: &Service, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    selector(svc).is_some_and(|s| s.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v)))
}

fn publish_not_ready(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.publish_not_ready_addresses) == Some(true)
}

fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// Upstream's `ShouldPodBeInEndpoints`.
fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let status = pod.status.as_ref();
    let has_ip = status.and_then(|s| s.pod_ip.as_deref()).is_some_and(|ip| !ip.is_empty());
    if !has_ip || (!include_terminating && pod.metadata.deletion_timestamp.is_some()) {
        return false;
    }
    let phase = status.and_then(|s| s.phase.as_deref());
    match pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) {
        Some("Never") => !matches!(phase, Some("Failed" | "Succeeded")),
        Some("OnFailure") => phase != Some("Succeeded"),
        _ => true,
    }
}

/// Upstream's `FindPort`: a service port's target port in this pod.
fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(p)) => Some(*p),
        Some(IntOrString::String(name)) => pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| {
                p.name.as_deref() == Some(name.as_str())
                    && p.protocol.as_deref().unwrap_or("TCP") == protocol
            })
            .map(|p| p.container_port),
    }
}

fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

fn hostname(svc: &Service, pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let host = spec.hostname.clone().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == Some(svc.name_any().as_str())).then_some(host)
}

/// Per slice name: the resourceVersion written (`None`: deleted) and when.
type WrittenSlices = HashMap<String, (Option<u64>, std::time::Instant)>;

/// A resolved port: name, number, protocol, appProtocol.
type ResolvedPort = (String, i32, String, Option<String>);
/// The ports a pod serves a Service on; pods with equal sets share subsets and slices.
type PortSet = Vec<ResolvedPort>;
/// A slice to create (no name) or replace: its ports and endpoints.
type SliceWrite = (Option<String>, Vec<EndpointPort>, Vec<Endpoint>);

fn resolve_ports(pod: &Pod, ports: &[ServicePort]) -> PortSet {
    ports
        .iter()
        .filter_map(|p| {
            find_port(pod, p).map(|n| {
                let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".into());
                (p.name.clone().unwrap_or_default(), n, protocol, p.app_protocol.clone())
            })
        })
        .collect()
}

/// The Endpoints subsets of `svc` over `pods` (upstream's `syncService` + `RepackSubsets`).
fn subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let publish = publish_not_ready(svc);
    let ports: Vec<ServicePort> =
        svc.spec.as_ref().and_then(|s| s.ports.clone()).unwrap_or_default();
    // Pods grouped by their resolved port set.
    let mut groups: BTreeMap<PortSet, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for pod in pods.iter().filter(|p| should_be_in_endpoints(p, publish)) {
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
        let address = EndpointAddress {
            ip,
            hostname: if is_headless(svc) { hostname(svc, pod) } else { None },
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(target_ref(pod)),
        };
        let resolved = resolve_ports(pod, &ports);
        if !ports.is_empty() && resolved.is_empty() {
            continue;
        }
        let entry = groups.entry(resolved).or_default();
        if publish || pods::is_ready(pod) {
            entry.0.push(address);
        } else {
            entry.1.push(address);
        }
    }
    groups
        .into_iter()
        .map(|(ports, (mut ready, mut not_ready))| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then(|| {
                    ports
                        .into_iter()
                        .map(|(name, port, protocol, app_protocol)| CorePort {
                            name: (!name.is_empty()).then_some(name),
                            port,
                            protocol: Some(protocol),
                            app_protocol,
                        })
                        .collect()
                }),
            }
        })
        .collect()
}

/// The slice endpoints of `svc`, grouped by their port set (upstream's `podToEndpoint`).
fn slice_endpoints(
    svc: &Service,
    pods: &[Arc<Pod>],
    nodes: &Informer<Node>,
) -> BTreeMap<PortSet, Vec<Endpoint>> {
    let publish = publish_not_ready(svc);
    let ports: Vec<ServicePort> =
        svc.spec.as_ref().and_then(|s| s.ports.clone()).unwrap_or_default();
    let mut groups: BTreeMap<_, Vec<Endpoint>> = BTreeMap::new();
    for pod in pods.iter().filter(|p| should_be_in_endpoints(p, true)) {
        let serving = pods::is_ready(pod);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let zone = node
            .as_ref()
            .and_then(|n| nodes.get(&ObjectKey::cluster(n)))
            .and_then(|n| n.metadata.labels.as_ref()?.get(ZONE_LABEL).cloned());
        let endpoint = Endpoint {
            addresses: vec![pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default()],
            conditions: Some(EndpointConditions {
                ready: Some(publish || (serving && !terminating)),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname: hostname(svc, pod),
            node_name: node,
            target_ref: Some(target_ref(pod)),
            zone,
            ..Default::default()
        };
        let resolved = resolve_ports(pod, &ports);
        groups.entry(resolved).or_default().push(endpoint);
    }
    for list in groups.values_mut() {
        list.sort_by(|a, b| a.addresses.cmp(&b.addresses));
    }
    groups
}

fn slice_ports(ports: &[ResolvedPort]) -> Vec<EndpointPort> {
    ports
        .iter()
        .map(|(name, port, protocol, app_protocol)| EndpointPort {
            name: Some(name.clone()),
            port: Some(*port),
            protocol: Some(protocol.clone()),
            app_protocol: app_protocol.clone(),
        })
        .collect()
}

fn resource_version(slice: &EndpointSlice) -> Option<u64> {
    slice.metadata.resource_version.as_deref().and_then(|v| v.parse().ok())
}

/// Which slices to write: existing slices keep the endpoints they still have, free room is
/// filled before new slices are made, and slices left empty go (upstream's reconciler, reduced).
/// Returns the slices to create or update (with their names when they exist) and the names to delete.
fn plan_slices(
    existing: &[EndpointSlice],
    desired: BTreeMap<PortSet, Vec<Endpoint>>,
    max: usize,
) -> (Vec<SliceWrite>, Vec<String>) {
    let mut writes = Vec::new();
    let mut used: Vec<String> = Vec::new();
    for (ports, endpoints) in desired {
        let wanted_ports = slice_ports(&ports);
        let mut remaining: BTreeMap<String, Endpoint> =
            endpoints.into_iter().map(|e| (e.addresses.join(","), e)).collect();
        let mut fills: Vec<(String, Vec<Endpoint>, bool)> = Vec::new();
        for slice in existing.iter().filter(|s| s.ports.clone().unwrap_or_default() == wanted_ports)
        {
            let name = slice.name_any();
            if used.contains(&name) {
                continue;
            }
            let kept: Vec<Endpoint> = slice
                .endpoints
                .iter()
                .filter_map(|e| remaining.remove(&e.addresses.join(",")))
                .collect();
            let changed = kept != slice.endpoints;
            used.push(name.clone());
            fills.push((name, kept, changed));
        }
        for (_, kept, changed) in &mut fills {
            while kept.len() < max {
                let Some(key) = remaining.keys().next().cloned() else { break };
                if let Some(e) = remaining.remove(&key) {
                    kept.push(e);
                    *changed = true;
                }
            }
        }
        for (name, kept, changed) in fills {
            if kept.is_empty() {
                used.retain(|n| *n != name);
            } else if changed {
                writes.push((Some(name), wanted_ports.clone(), kept));
            }
        }
        let rest: Vec<Endpoint> = remaining.into_values().collect();
        for chunk in rest.chunks(max) {
            writes.push((None, wanted_ports.clone(), chunk.to_vec()));
        }
    }
    let deletes = existing.iter().map(|s| s.name_any()).filter(|n| !used.contains(n)).collect();
    (writes, deletes)
}

impl Controller {
    async fn sync(&self, key: &ObjectKey) -> Result<()> {
        let svc = self.services.get(key);
        match self.kind {
            Kind::Endpoints => self.sync_endpoints(key, svc).await,
            Kind::Slices => self.sync_slices(key, svc).await,
        }
    }

    fn selected_pods(&self, svc: &Service) -> Vec<Arc<Pod>> {
        self.pods
            .list_namespace(&svc.namespace().unwrap_or_default())
            .into_iter()
            .filter(|p| selects(svc, p))
            .collect()
    }

    async fn sync_endpoints(&self, key: &ObjectKey, svc: Option<Arc<Service>>) -> Result<()> {
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), key.ns());
        let Some(svc) = svc else {
            // The Service is gone: so are its Endpoints (a user's own Endpoints stay: they
            // belong to a Service without a selector, which never gets here while it exists).
            return match api.delete(&key.name, &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(e) if is_status(&e, 404) => Ok(()),
                Err(e) => Err(e.into()),
            };
        };
        if selector(&svc).is_none() {
            return Ok(());
        }
        let subsets = subsets(&svc, &self.selected_pods(&svc));
        let mut labels = svc.metadata.labels.clone().unwrap_or_default();
        if is_headless(&svc) {
            labels.insert("service.kubernetes.io/headless".into(), String::new());
        }
        let existing = api.get_opt(&key.name).await?;
        let wanted_subsets = (!subsets.is_empty()).then_some(subsets);
        match existing {
            Some(current)
                if current.subsets == wanted_subsets
                    && current.metadata.labels.clone().unwrap_or_default() == labels =>
            {
                Ok(())
            }
            Some(mut current) => {
                current.subsets = wanted_subsets;
                current.metadata.labels = Some(labels);
                match api.replace(&key.name, &PostParams::default(), &current).await {
                    Ok(_) => Ok(()),
                    Err(e) if is_status(&e, 409) => {
                        self.queue.add(key.clone());
                        Ok(())
                    }
                    Err(e) => Err(e.into()),
                }
            }
            None => {
                let endpoints = Endpoints {
                    metadata: ObjectMeta {
                        name: Some(key.name.clone()),
                        namespace: Some(key.ns().to_owned()),
                        labels: Some(labels),
                        ..Default::default()
                    },
                    subsets: wanted_subsets,
                };
                match api.create(&PostParams::default(), &endpoints).await {
                    Ok(_) => Ok(()),
                    Err(e) if is_status(&e, 409) => {
                        self.queue.add(key.clone());
                        Ok(())
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    async fn sync_slices(&self, key: &ObjectKey, svc: Option<Arc<Service>>) -> Result<()> {
        let Some(slices) = &self.slices else { return Ok(()) };
        if !self.cache_caught_up(key, slices) {
            self.queue.add_after(key.clone(), std::time::Duration::from_millis(50));
            return Ok(());
        }
        let existing: Vec<EndpointSlice> = slices
            .list_namespace(key.ns())
            .into_iter()
            .filter(|s| {
                let labels = s.metadata.labels.as_ref();
                labels.and_then(|l| l.get(SERVICE_NAME_LABEL)) == Some(&key.name)
                    && labels.and_then(|l| l.get(MANAGED_BY_LABEL)).map(String::as_str)
                        == Some(MANAGED_BY)
            })
            .map(|s| s.as_ref().clone())
            .collect();
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), key.ns());
        let Some(svc) = svc.filter(|s| selector(s).is_some()) else {
            // Owned slices go with the Service (the garbage collector would too).
            for s in existing {
                match api.delete(&s.name_any(), &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(e) if is_status(&e, 404) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(());
        };
        let desired = slice_endpoints(&svc, &self.selected_pods(&svc), &self.nodes);
        let (mut writes, deletes) = plan_slices(&existing, desired, MAX_ENDPOINTS_PER_SLICE);
        if writes.is_empty() && existing.len() == deletes.len() {
            // No endpoints at all: upstream keeps one empty placeholder slice.
            writes.push((None, Vec::new(), Vec::new()));
            if let Some(placeholder) = existing.iter().find(|s| s.endpoints.is_empty()) {
                let name = placeholder.name_any();
                writes.clear();
                for other in existing.iter().map(|s| s.name_any()).filter(|n| *n != name) {
                    self.delete_slice(&api, &other).await?;
                }
                return Ok(());
            }
        }
        let mut labels = svc.metadata.labels.clone().unwrap_or_default();
        labels.insert(SERVICE_NAME_LABEL.into(), svc.name_any());
        labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
        let owner = k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "v1".into(),
            kind: "Service".into(),
            name: svc.name_any(),
            uid: svc.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        for (name, ports, endpoints) in writes {
            let current = name
                .as_ref()
                .and_then(|n| existing.iter().find(|s| s.metadata.name.as_ref() == Some(n)));
            let slice = EndpointSlice {
                metadata: ObjectMeta {
                    name: name.clone(),
                    generate_name: name.is_none().then(|| format!("{}-", svc.name_any())),
                    namespace: Some(key.ns().to_owned()),
                    labels: Some(labels.clone()),
                    owner_references: Some(vec![owner.clone()]),
                    resource_version: current.and_then(|c| c.metadata.resource_version.clone()),
                    ..Default::default()
                },
                address_type: "IPv4".into(),
                endpoints,
                ports: (!ports.is_empty()).then_some(ports),
            };
            let result = match &name {
                Some(n) => api.replace(n, &PostParams::default(), &slice).await,
                None => api.create(&PostParams::default(), &slice).await,
            };
            match result {
                Ok(written) => self.track(key, &written.name_any(), resource_version(&written)),
                Err(e) if is_status(&e, 409) => self.queue.add(key.clone()),
                Err(e) => return Err(e.into()),
            }
        }
        for name in deletes {
            self.delete_slice(&api, &name).await?;
            self.track(key, &name, None);
        }
        Ok(())
    }

    fn track(&self, key: &ObjectKey, name: &str, version: Option<u64>) {
        let mut written = self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        written
            .entry(key.clone())
            .or_default()
            .insert(name.to_owned(), (version, std::time::Instant::now()));
    }

    /// Whether the slice cache shows every write of ours for `key` (and forgets those it does).
    fn cache_caught_up(&self, key: &ObjectKey, slices: &Informer<EndpointSlice>) -> bool {
        let mut written = self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(mine) = written.get_mut(key) else { return true };
        mine.retain(|name, (version, at)| {
            // A write never seen in 10 s was overtaken (e.g. someone deleted the slice).
            if at.elapsed() > std::time::Duration::from_secs(10) {
                return false;
            }
            let cached = slices.get(&ObjectKey::namespaced(key.ns(), name));
            match (version, cached) {
                (None, None) => false,
                (None, Some(_)) => true,
                (Some(v), Some(c)) => resource_version(&c).is_none_or(|have| have < *v),
                (Some(_), None) => true,
            }
        });
        let caught_up = mine.is_empty();
        if caught_up {
            written.remove(key);
        }
        caught_up
    }

    async fn delete_slice(&self, api: &Api<EndpointSlice>, name: &str) -> Result<()> {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServiceSpec,
    };

    fn service(named_port: bool) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some([("app".to_owned(), "web".to_owned())].into()),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    target_port: Some(if named_port {
                        IntOrString::String("web".into())
                    } else {
                        IntOrString::Int(8080)
                    }),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pod(name: &str, ip: &str, ready: bool, port: i32) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("{name}-uid")),
                labels: Some([("app".to_owned(), "web".to_owned())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some("web".into()),
                        container_port: port,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ip: Some(ip.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn endpoints_split_ready_and_not_ready_and_resolve_named_ports() {
        let pods = [pod("a", "10.0.0.2", true, 8080), pod("b", "10.0.0.1", false, 8080)];
        let subsets = subsets(&service(true), &pods);
        assert_eq!(subsets.len(), 1);
        let s = &subsets[0];
        assert_eq!(s.addresses.as_ref().map(|a| a[0].ip.clone()), Some("10.0.0.2".into()));
        assert_eq!(
            s.not_ready_addresses.as_ref().map(|a| a[0].ip.clone()),
            Some("10.0.0.1".into())
        );
        assert_eq!(s.ports.as_ref().map(|p| p[0].port), Some(8080));
        // A pod without an IP is left out.
        assert!(subsets_for_unaddressed().is_empty());
    }

    fn subsets_for_unaddressed() -> Vec<EndpointSubset> {
        let mut p = pod("c", "", true, 8080).as_ref().clone();
        if let Some(s) = p.status.as_mut() {
            s.pod_ip = None;
        }
        subsets(&service(false), &[Arc::new(p)])
    }

    #[tokio::test]
    async fn slices_hold_at_most_100_endpoints_and_are_reused() {
        let pods: Vec<Arc<Pod>> = (0..250)
            .map(|i| {
                pod(&format!("p{i}"), &format!("10.0.{}.{}", i / 200, i % 200 + 1), true, 8080)
            })
            .collect();
        let nodes = Informer::<Node>::new(
            Api::all(
                kube::Client::try_from(kube::Config::new(
                    "http://127.0.0.1:9".parse().expect("uri"),
                ))
                .expect("client"),
            ),
            Default::default(),
        );
        let desired = slice_endpoints(&service(false), &pods, &nodes);
        let (writes, deletes) = plan_slices(&[], desired.clone(), 100);
        let sizes: Vec<usize> = writes.iter().map(|w| w.2.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert!(deletes.is_empty());
        // Existing slices keep their endpoints; one pod gone changes only its slice.
        let existing: Vec<EndpointSlice> = writes
            .into_iter()
            .enumerate()
            .map(|(i, (_, ports, endpoints))| EndpointSlice {
                metadata: ObjectMeta { name: Some(format!("web-{i}")), ..Default::default() },
                address_type: "IPv4".into(),
                endpoints,
                ports: Some(ports),
            })
            .collect();
        let mut fewer = desired;
        if let Some(list) = fewer.values_mut().next() {
            list.remove(0);
        }
        let (writes, deletes) = plan_slices(&existing, fewer, 100);
        assert_eq!(writes.len(), 1, "only the slice that lost an endpoint is written");
        assert_eq!(writes[0].0.as_deref(), Some("web-0"));
        assert!(deletes.is_empty());
    }
}
