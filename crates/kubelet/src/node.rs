//! Node registration and heartbeats (upstream's `kubelet_node_status.go` and node lease
//! controller): the Node object with labels, capacity, addresses and nodeInfo; a Lease in
//! `kube-node-lease` renewed every 10 s; the full status posted at registration and then at
//! least every 5 minutes — the split upstream makes so that heartbeats stay cheap.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt as _;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::Result;

pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// Upstream's `nodeLeaseDurationSeconds`.
const LEASE_DURATION_SECONDS: i32 = 40;

/// One node's identity and size.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    /// The node's InternalIP (pods' `hostIP`).
    pub host_ip: String,
    /// cpu, memory, pods, ephemeral-storage (allocatable is the same).
    pub capacity: BTreeMap<String, Quantity>,
    /// Extra labels beside the well-known ones.
    pub labels: BTreeMap<String, String>,
    /// How often the Lease is renewed (upstream: a quarter of its 40 s duration).
    pub lease_renew_interval: Duration,
    /// How often the full status is posted when nothing changed (upstream: 5 min).
    pub status_report_interval: Duration,
    /// `status.nodeInfo.containerRuntimeVersion`.
    pub runtime_version: String,
    /// The kubelet's directory for pods' volumes (`<root>/pods/<uid>`); `None` on hollow
    /// nodes, whose pods get no volumes, `/etc/hosts` or Service variables.
    pub root_dir: Option<std::path::PathBuf>,
    /// The port of the kubelet's HTTPS endpoint (logs), as the API server reaches it.
    pub kubelet_port: u16,
}

impl NodeConfig {
    /// A node named `name` at `host_ip` with upstream's timing and a hollow node's size.
    pub fn new(name: &str, host_ip: &str, runtime_version: &str) -> Self {
        let capacity =
            [("cpu", "4"), ("memory", "16Gi"), ("pods", "110"), ("ephemeral-storage", "100Gi")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Quantity(v.to_owned())))
                .collect();
        Self {
            name: name.to_owned(),
            host_ip: host_ip.to_owned(),
            capacity,
            labels: BTreeMap::new(),
            lease_renew_interval: Duration::from_secs(10),
            status_report_interval: Duration::from_secs(300),
            runtime_version: runtime_version.to_owned(),
            root_dir: None,
            kubelet_port: 10250,
        }
    }

    /// A node the size of this machine: its CPUs, memory and root filesystem.
    pub fn from_machine(name: &str, host_ip: &str, runtime_version: &str) -> Self {
        let mut config = Self::new(name, host_ip, runtime_version);
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        config.capacity.insert("cpu".into(), Quantity(cpus.to_string()));
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        if let Some(kb) = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
        {
            config.capacity.insert("memory".into(), Quantity(format!("{kb}Ki")));
        }
        config
    }

    fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        for (k, v) in [
            ("kubernetes.io/hostname", self.name.as_str()),
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", arch()),
            ("beta.kubernetes.io/os", "linux"),
            ("beta.kubernetes.io/arch", arch()),
        ] {
            labels.entry(k.to_owned()).or_insert_with(|| v.to_owned());
        }
        labels
    }

    /// The full status the kubelet reports (upstream's setters: capacity, conditions,
    /// addresses, nodeInfo, daemon endpoints).
    pub fn status(&self, now: Timestamp, previous: Option<&Node>) -> Value {
        let t = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let transition = |type_: &str, status: &str| {
            previous
                .and_then(|n| {
                    n.status
                        .as_ref()?
                        .conditions
                        .as_ref()?
                        .iter()
                        .find(|c| c.type_ == type_)
                        .cloned()
                })
                .filter(|c| c.status == status)
                .and_then(|c| c.last_transition_time)
                .map_or_else(|| t.clone(), |x| x.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        };
        let condition = |type_: &str, status: &str, reason: &str, message: &str| {
            json!({"type": type_, "status": status, "reason": reason, "message": message,
                   "lastHeartbeatTime": t, "lastTransitionTime": transition(type_, status)})
        };
        json!({
            "capacity": self.capacity,
            "allocatable": self.capacity,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": self.host_ip},
                {"type": "Hostname", "address": self.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            "nodeInfo": {
                "machineID": format!("{:032x}", fnv(&self.name)),
                "systemUUID": format!("{:032x}", fnv(&self.name) ^ 1),
                "bootID": format!("{:032x}", fnv(&self.name) ^ 2),
                "kernelVersion": kernel_version(),
                "osImage": "krust",
                "containerRuntimeVersion": self.runtime_version,
                "kubeletVersion": crate::KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": arch(),
            },
        })
    }
}

/// Go's name for this machine's architecture.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn fnv(s: &str) -> u128 {
    s.bytes().fold(0x6c62_272e_07bb_0142_62b8_2175_6295_c58d_u128, |h, b| {
        (h ^ u128::from(b)).wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013B)
    })
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Creates the Node (or adopts the existing one) and posts its status; returns the node.
pub async fn register(client: &kube::Client, config: &NodeConfig) -> Result<Node> {
    let api: Api<Node> = Api::all(client.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            labels: Some(config.labels()),
            annotations: Some(
                [
                    ("node.alpha.kubernetes.io/ttl".to_owned(), "0".to_owned()),
                    (
                        "volumes.kubernetes.io/controller-managed-attach-detach".to_owned(),
                        "true".to_owned(),
                    ),
                ]
                .into(),
            ),
            ..Default::default()
        },
        ..Default::default()
    };
    let existing = match api.create(&PostParams::default(), &node).await {
        Ok(created) => created,
        Err(kube::Error::Api(s)) if s.code == 409 => {
            // Re-registration: keep the object, make sure our labels are on it.
            let patch = json!({"metadata": {"labels": config.labels()}});
            api.patch(&config.name, &PatchParams::default(), &Patch::Merge(&patch)).await?
        }
        Err(e) => return Err(e.into()),
    };
    post_status(client, config, Some(&existing), None).await
}

/// `status.images` as upstream's kubelet reports them: the 50 largest, largest first.
pub async fn images(runtime: &dyn crate::Runtime) -> Option<Value> {
    let mut images = runtime.list_images().await.ok()?;
    if images.is_empty() {
        return None;
    }
    images.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    images.truncate(50);
    Some(Value::Array(
        images
            .into_iter()
            .map(|(names, size)| json!({"names": names, "sizeBytes": size}))
            .collect(),
    ))
}

/// Posts the full node status.
pub async fn post_status(
    client: &kube::Client,
    config: &NodeConfig,
    previous: Option<&Node>,
    images: Option<&Value>,
) -> Result<Node> {
    let api: Api<Node> = Api::all(client.clone());
    let mut status = config.status(Timestamp::now(), previous);
    if let Some(images) = images {
        status["images"] = images.clone();
    }
    let patch = json!({"status": status});
    Ok(api.patch_status(&config.name, &PatchParams::default(), &Patch::Strategic(&patch)).await?)
}

/// Renews the node's Lease (creating it, owned by the node, when missing).
async fn renew_lease(
    client: &kube::Client,
    config: &NodeConfig,
    node_uid: &str,
    cached: &mut Option<Lease>,
) -> Result<()> {
    let api: Api<Lease> = Api::namespaced(client.clone(), NODE_LEASE_NAMESPACE);
    let now = MicroTime(Timestamp::now());
    if let Some(mut lease) = cached.take() {
        lease.spec.get_or_insert_default().renew_time = Some(now.clone());
        match api.replace(&config.name, &PostParams::default(), &lease).await {
            Ok(renewed) => {
                *cached = Some(renewed);
                return Ok(());
            }
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(mut lease) = api.get_opt(&config.name).await? {
        lease.spec.get_or_insert_default().renew_time = Some(now);
        *cached = Some(api.replace(&config.name, &PostParams::default(), &lease).await?);
        return Ok(());
    }
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            namespace: Some(NODE_LEASE_NAMESPACE.to_owned()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: config.name.clone(),
                uid: node_uid.to_owned(),
                ..Default::default()
            }]),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(config.name.clone()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(now),
            ..Default::default()
        }),
    };
    *cached = Some(api.create(&PostParams::default(), &lease).await?);
    Ok(())
}

/// Keeps the node alive until `stop`: the Lease every `lease_renew_interval`, the full status
/// every `status_report_interval`. Failures are logged and retried on the next tick.
pub async fn heartbeat(
    client: kube::Client,
    config: NodeConfig,
    mut node: Node,
    runtime: std::sync::Arc<dyn crate::Runtime>,
    stop: CancellationToken,
) {
    // What the last posted status listed (the first tick posts the images, if any).
    let mut posted_images: Option<Value> = None;
    let uid = node.uid().unwrap_or_default();
    let mut lease = None;
    let mut last_report = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(config.lease_renew_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = renew_lease(&client, &config, &uid, &mut lease).await {
            tracing::debug!(node = %config.name, error = %e, "cannot renew the node lease");
        }
        // The full status every report interval, and at once when the images changed.
        let current_images = images(runtime.as_ref()).await;
        if last_report.elapsed() >= config.status_report_interval || current_images != posted_images
        {
            match post_status(&client, &config, Some(&node), current_images.as_ref()).await {
                Ok(updated) => {
                    node = updated;
                    last_report = tokio::time::Instant::now();
                    posted_images = current_images;
                }
                Err(e) => {
                    tracing::info!(node = %config.name, error = %e, "cannot post node status; retrying")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_node_reports_ready_with_its_capacity() {
        let config = NodeConfig::new("hollow-0", "10.0.0.1", "fake://0.1.0");
        let status = config.status(Timestamp::now(), None);
        assert_eq!(status["capacity"]["pods"], "110");
        assert_eq!(status["allocatable"], status["capacity"]);
        let ready = status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .cloned();
        assert_eq!(ready.map(|r| r["reason"].clone()), Some(json!("KubeletReady")));
        assert_eq!(status["addresses"][0], json!({"type": "InternalIP", "address": "10.0.0.1"}));
        assert_eq!(status["nodeInfo"]["containerRuntimeVersion"], "fake://0.1.0");
        let labels = config.labels();
        assert_eq!(labels["kubernetes.io/hostname"], "hollow-0");
        assert_eq!(labels["kubernetes.io/os"], "linux");
    }
}
