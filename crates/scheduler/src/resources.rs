//! Resource arithmetic as upstream's scheduler does it: a pod's requests (regular containers
//! summed, init containers as a running maximum with restartable sidecars added, pod-level
//! requests, overhead), and the per-node `Resource` totals the filters and scores compare.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

use krust_api::quantity::{self, Quantity};

pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub const PODS: &str = "pods";

/// Upstream's defaults for containers that request no cpu or memory, used only for scoring.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// A resource list in exact thousandths, the way upstream's `v1.ResourceList` adds quantities.
pub type ResourceList = BTreeMap<String, Quantity>;

/// Parses an API resource list; a malformed quantity counts as zero (the API server validates
/// quantities, so this only guards against a non-conformant server).
pub fn parse_list(list: Option<&BTreeMap<String, ApiQuantity>>) -> ResourceList {
    let mut out = ResourceList::new();
    for (name, value) in list.into_iter().flatten() {
        match quantity::parse(&value.0) {
            Ok(q) => {
                out.insert(name.clone(), q);
            }
            Err(e) => tracing::warn!(resource = %name, error = %e, "ignoring a malformed quantity"),
        }
    }
    out
}

fn add_list(into: &mut ResourceList, other: &ResourceList) {
    for (name, q) in other {
        let entry = into.entry(name.clone()).or_default();
        *entry = entry.saturating_add(*q);
    }
}

fn max_list(into: &mut ResourceList, other: &ResourceList) {
    for (name, q) in other {
        let entry = into.entry(name.clone()).or_default();
        if q > entry {
            *entry = *q;
        }
    }
}

/// Options of [`pod_requests`], as upstream's `PodResourcesOptions`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestOptions {
    /// Give containers without a cpu/memory request upstream's defaults (100m, 200Mi).
    pub non_missing_defaults: bool,
    /// Leave out `spec.overhead`.
    pub exclude_overhead: bool,
}

fn container_requests(c: &Container, opts: RequestOptions) -> ResourceList {
    let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let mut list = parse_list(requests);
    if opts.non_missing_defaults {
        let has = |name: &str| requests.is_some_and(|r| r.contains_key(name));
        if !has(CPU) {
            list.insert(CPU.into(), Quantity::from_milli(DEFAULT_MILLI_CPU_REQUEST));
        }
        if !has(MEMORY) {
            list.insert(MEMORY.into(), Quantity::from_value(DEFAULT_MEMORY_REQUEST));
        }
    }
    list
}

/// Upstream's `resourcehelper.PodRequests` for a pod that is not running yet.
pub fn pod_requests(spec: &PodSpec, opts: RequestOptions) -> ResourceList {
    let mut reqs = ResourceList::new();
    for c in &spec.containers {
        add_list(&mut reqs, &container_requests(c, opts));
    }
    let mut restartable = ResourceList::new();
    let mut init = ResourceList::new();
    for c in spec.init_containers.iter().flatten() {
        let mut creqs = container_requests(c, opts);
        if c.restart_policy.as_deref() == Some("Always") {
            // Sidecars keep running: they add to the regular containers, and every later init
            // container runs next to all the sidecars started before it.
            add_list(&mut reqs, &creqs);
            add_list(&mut restartable, &creqs);
            creqs = restartable.clone();
        } else {
            add_list(&mut creqs, &restartable);
        }
        max_list(&mut init, &creqs);
    }
    max_list(&mut reqs, &init);

    // Pod-level requests (cpu and memory) replace the containers' sum.
    if let Some(pod_level) = spec.resources.as_ref().and_then(|r| r.requests.as_ref()) {
        for (name, q) in parse_list(Some(pod_level)) {
            if name == CPU || name == MEMORY {
                reqs.insert(name, q);
            }
        }
    }
    if !opts.exclude_overhead {
        add_list(&mut reqs, &parse_list(spec.overhead.as_ref()));
    }
    reqs
}

/// Upstream's `IsScalarResourceName`: extended (`example.com/foo`), hugepages, prefixed native
/// (`*kubernetes.io/*`) and attachable-volume resources.
pub fn is_scalar_resource_name(name: &str) -> bool {
    is_extended_resource_name(name)
        || name.starts_with("hugepages-")
        || name.contains("kubernetes.io/")
        || name.starts_with("attachable-volumes-")
}

/// Upstream's `IsExtendedResourceName`: qualified, outside the `kubernetes.io` namespace, not a
/// quota `requests.` name.
pub fn is_extended_resource_name(name: &str) -> bool {
    let native = !name.contains('/') || name.contains("kubernetes.io/");
    if native || name.starts_with("requests.") {
        return false;
    }
    let Some((prefix, rest)) = name.split_once('/') else {
        return false;
    };
    !prefix.is_empty()
        && !rest.is_empty()
        && rest.len() <= 63
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && rest.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && rest.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

/// Upstream's `framework.Resource`: cpu in millicores, the rest in units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub allowed_pod_number: i64,
    pub scalar: BTreeMap<String, i64>,
}

impl Resource {
    /// Upstream's `NewResource` / `Add`: cpu by `MilliValue`, everything else by `Value`,
    /// unknown non-scalar names ignored.
    pub fn from_list(list: &ResourceList) -> Self {
        let mut r = Resource::default();
        for (name, q) in list {
            match name.as_str() {
                CPU => r.milli_cpu = r.milli_cpu.saturating_add(q.milli_value()),
                MEMORY => r.memory = r.memory.saturating_add(q.value()),
                PODS => r.allowed_pod_number = r.allowed_pod_number.saturating_add(q.value()),
                EPHEMERAL_STORAGE => {
                    r.ephemeral_storage = r.ephemeral_storage.saturating_add(q.value())
                }
                other if is_scalar_resource_name(other) => {
                    let v = r.scalar.entry(other.to_owned()).or_default();
                    *v = v.saturating_add(q.value());
                }
                _ => {}
            }
        }
        r
    }

    pub fn add(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_add(other.ephemeral_storage);
        self.allowed_pod_number = self.allowed_pod_number.saturating_add(other.allowed_pod_number);
        for (name, v) in &other.scalar {
            let e = self.scalar.entry(name.clone()).or_default();
            *e = e.saturating_add(*v);
        }
    }

    pub fn sub(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_sub(other.ephemeral_storage);
        self.allowed_pod_number = self.allowed_pod_number.saturating_sub(other.allowed_pod_number);
        for (name, v) in &other.scalar {
            let e = self.scalar.entry(name.clone()).or_default();
            *e = e.saturating_sub(*v);
        }
    }

    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar.get(name).copied().unwrap_or(0)
    }
}

/// What a pod adds to its node: its requests, and the non-zero cpu/memory requests scoring uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodResources {
    pub requests: Resource,
    pub non_zero_milli_cpu: i64,
    pub non_zero_memory: i64,
}

impl PodResources {
    pub fn of(pod: &Pod) -> Self {
        let Some(spec) = pod.spec.as_ref() else {
            return Self::default();
        };
        let requests = Resource::from_list(&pod_requests(spec, RequestOptions::default()));
        let non_zero = pod_requests(
            spec,
            RequestOptions { non_missing_defaults: true, ..RequestOptions::default() },
        );
        Self {
            requests,
            non_zero_milli_cpu: non_zero.get(CPU).map_or(0, |q| q.milli_value()),
            non_zero_memory: non_zero.get(MEMORY).map_or(0, |q| q.value()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    fn list(pairs: &[(&str, &str)]) -> BTreeMap<String, ApiQuantity> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), ApiQuantity((*v).to_owned()))).collect()
    }

    fn container(requests: &[(&str, &str)]) -> Container {
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: (!requests.is_empty()).then(|| list(requests)),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn sidecar(requests: &[(&str, &str)]) -> Container {
        Container { restart_policy: Some("Always".into()), ..container(requests) }
    }

    fn requests(spec: &PodSpec) -> Resource {
        Resource::from_list(&pod_requests(spec, RequestOptions::default()))
    }

    #[test]
    fn upstream_example_init_containers_take_the_max() {
        // The example in upstream's computePodResourceRequest comment: cpu 3, memory 3G.
        let spec = PodSpec {
            init_containers: Some(vec![
                container(&[("cpu", "2"), ("memory", "1G")]),
                container(&[("cpu", "2"), ("memory", "3G")]),
            ]),
            containers: vec![
                container(&[("cpu", "2"), ("memory", "1G")]),
                container(&[("cpu", "1"), ("memory", "1G")]),
            ],
            ..Default::default()
        };
        let r = requests(&spec);
        assert_eq!(r.milli_cpu, 3000);
        assert_eq!(r.memory, 3_000_000_000);
    }

    #[test]
    fn sidecars_add_to_containers_and_to_later_init_containers() {
        // Upstream's sidecar test: sidecar 1 cpu, then an init container of 2 cpu, containers 1.
        // Containers + sidecars = 2; init phase peak = 1 (sidecar) + 2 = 3.
        let spec = PodSpec {
            init_containers: Some(vec![sidecar(&[("cpu", "1")]), container(&[("cpu", "2")])]),
            containers: vec![container(&[("cpu", "1")])],
            ..Default::default()
        };
        assert_eq!(requests(&spec).milli_cpu, 3000);
        let spec = PodSpec {
            init_containers: Some(vec![container(&[("cpu", "1")]), sidecar(&[("cpu", "1")])]),
            containers: vec![container(&[("cpu", "3")])],
            ..Default::default()
        };
        assert_eq!(requests(&spec).milli_cpu, 4000);
    }

    #[test]
    fn overhead_and_pod_level_requests() {
        let spec = PodSpec {
            containers: vec![container(&[("cpu", "1"), ("memory", "1Gi")])],
            overhead: Some(list(&[("cpu", "250m"), ("memory", "120Mi")])),
            ..Default::default()
        };
        let r = requests(&spec);
        assert_eq!(r.milli_cpu, 1250);
        assert_eq!(r.memory, (1024 + 120) * 1024 * 1024);
        let spec = PodSpec {
            resources: Some(ResourceRequirements {
                requests: Some(list(&[("cpu", "4")])),
                ..Default::default()
            }),
            ..spec
        };
        assert_eq!(requests(&spec).milli_cpu, 4250);
    }

    #[test]
    fn non_zero_defaults_only_for_missing_requests() {
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![container(&[]), container(&[("cpu", "0")])],
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = PodResources::of(&pod);
        assert_eq!(r.requests.milli_cpu, 0);
        assert_eq!(r.non_zero_milli_cpu, 100);
        assert_eq!(r.non_zero_memory, 2 * DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn scalar_names() {
        assert!(is_scalar_resource_name("nvidia.com/gpu"));
        assert!(is_scalar_resource_name("hugepages-2Mi"));
        assert!(is_scalar_resource_name("attachable-volumes-aws-ebs"));
        assert!(is_scalar_resource_name("example.kubernetes.io/thing"));
        assert!(!is_scalar_resource_name("cpu"));
        assert!(!is_scalar_resource_name("requests.example.com/foo"));
        assert!(!is_extended_resource_name("kubernetes.io/foo"));
        let r = Resource::from_list(&parse_list(Some(&list(&[
            ("nvidia.com/gpu", "2"),
            ("pods", "110"),
            ("ephemeral-storage", "10Gi"),
            ("unknown", "5"),
        ]))));
        assert_eq!(r.scalar("nvidia.com/gpu"), 2);
        assert_eq!(r.allowed_pod_number, 110);
        assert_eq!(r.ephemeral_storage, 10 << 30);
        assert!(!r.scalar.contains_key("unknown"));
    }
}
