//! The container runtime as the kubelet sees it: a trait shaped after CRI's RuntimeService and
//! ImageService (sandboxes hold a pod's network and shared namespaces; containers run in a
//! sandbox). containerd over CRI implements it for real nodes; [`crate::fake::FakeRuntime`]
//! implements it for hollow nodes and tests.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

/// Why a runtime call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    /// The sandbox or container does not exist (any more).
    #[error("not found: {0}")]
    NotFound(String),
    /// The image cannot be pulled (`ErrImagePull` in the pod's status).
    #[error("{0}")]
    ImagePull(String),
    /// The runtime refused or failed (`CreateContainerError`, `RunContainerError`, ...).
    #[error("{0}")]
    Failed(String),
}

pub type RuntimeResult<T> = Result<T, RuntimeError>;

/// What a pod sandbox is created from (CRI's `PodSandboxConfig`, reduced).
#[derive(Debug, Clone, Default)]
pub struct SandboxConfig {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub attempt: u32,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The pod uses the node's network (no IP of its own).
    pub host_network: bool,
    /// The containers' `hostPort`s, published on the node.
    pub port_mappings: Vec<PortMapping>,
}

/// A container port published on the node (`hostPort`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortMapping {
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    pub container_port: i32,
    pub host_port: i32,
    pub host_ip: String,
}

/// A container's compute resources, as the runtime enforces them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// `requests.cpu` in millicores (the CPU share).
    pub cpu_request_milli: i64,
    /// `limits.cpu` in millicores (the CFS quota).
    pub cpu_limit_milli: Option<i64>,
    /// `limits.memory` in bytes.
    pub memory_limit_bytes: Option<i64>,
}

/// A sandbox as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxStatus {
    pub id: String,
    /// The pod's IPs (none for host-network pods).
    pub ips: Vec<IpAddr>,
    pub ready: bool,
}

/// A pod's sandbox and containers found in the runtime (after a kubelet restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adopted {
    pub sandbox: SandboxStatus,
    /// Each container's latest instance: name, id, attempt (= restarts).
    pub containers: Vec<(String, String, u32)>,
}

/// What a container is created from (CRI's `ContainerConfig`, reduced).
#[derive(Debug, Clone, Default)]
pub struct ContainerConfig {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    /// How many times this container was started before in this pod.
    pub attempt: u32,
    /// The pod's annotations (the fake runtime reads its script from them).
    pub pod_annotations: BTreeMap<String, String>,
    pub resources: Resources,
    /// The pod's volumes (and its `/etc/hosts`) as this container mounts them.
    pub mounts: Vec<Mount>,
    pub security: Security,
    /// Where the container writes its termination message (a mount of `mounts`).
    pub termination_message_path: Option<String>,
}

/// A container's security settings (its securityContext over the pod's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub supplemental_groups: Vec<i64>,
    pub privileged: bool,
    pub read_only_root_filesystem: bool,
    /// `allowPrivilegeEscalation: false`.
    pub no_new_privileges: bool,
    pub add_capabilities: Vec<String>,
    pub drop_capabilities: Vec<String>,
}

/// A host path bind-mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub container_path: String,
    pub host_path: std::path::PathBuf,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running {
        started_at: Timestamp,
    },
    Exited {
        started_at: Option<Timestamp>,
        finished_at: Timestamp,
        exit_code: i32,
        /// `Completed`, `Error`, `OOMKilled`, ...
        reason: String,
        message: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatus {
    /// `<runtime>://<id>`, as `containerID` in the pod's status shows it.
    pub id: String,
    pub name: String,
    pub image: String,
    pub image_ref: String,
    pub state: ContainerState,
}

/// One probe to run against a running container.
#[derive(Debug, Clone, Copy)]
pub struct ProbeRequest<'a> {
    pub kind: crate::probes::ProbeKind,
    pub container_name: &'a str,
    pub container_id: &'a str,
    /// The action: exec, httpGet, tcpSocket or grpc.
    pub probe: &'a k8s_openapi::api::core::v1::Probe,
    pub pod_ips: &'a [String],
    /// The container's ports (probes may name one).
    pub container_ports: &'a [k8s_openapi::api::core::v1::ContainerPort],
    pub timeout: Duration,
    pub pod_annotations: &'a BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    Success,
    /// Failed, with upstream's kind of message ("HTTP probe failed with statuscode: 500").
    Failure(String),
}

/// A container runtime (CRI's services, the calls the kubelet makes).
#[async_trait::async_trait]
pub trait Runtime: Send + Sync + std::fmt::Debug + 'static {
    /// `<name>://<version>`, as `status.nodeInfo.containerRuntimeVersion` shows it.
    fn version(&self) -> String;

    /// How often a pod's containers are looked at again while they run, to notice exits the
    /// runtime does not announce (upstream's PLEG relist). `None`: the runtime's containers
    /// change only when the kubelet acts.
    fn relist_period(&self) -> Option<Duration> {
        None
    }

    /// The node's pod range changed (CRI's `UpdateRuntimeConfig`): sandboxes take their
    /// addresses from it.
    async fn update_pod_cidr(&self, cidr: &str) -> RuntimeResult<()>;

    /// Finds the running sandbox of the pod `config` describes, with its containers, so that
    /// a restarted kubelet carries on with them instead of starting the pod again.
    async fn adopt(&self, _config: &SandboxConfig) -> RuntimeResult<Option<Adopted>> {
        Ok(None)
    }

    /// Stops and removes the sandboxes (and containers) of pods whose UID is not in `keep`:
    /// pods deleted while the kubelet was down. Returns how many sandboxes went.
    async fn remove_orphans(
        &self,
        _keep: &std::collections::HashSet<String>,
    ) -> RuntimeResult<usize> {
        Ok(0)
    }

    /// The images present, as `status.images` lists them: their names (tags and digests)
    /// and size in bytes.
    async fn list_images(&self) -> RuntimeResult<Vec<(Vec<String>, u64)>> {
        Ok(Vec::new())
    }

    /// Whether `image` is present (for `imagePullPolicy: Never`).
    async fn image_present(&self, _image: &str) -> RuntimeResult<bool> {
        Ok(true)
    }

    /// Makes `image` present; returns the image reference (digest) containers report.
    async fn pull_image(&self, image: &str) -> RuntimeResult<String>;

    async fn run_pod_sandbox(&self, config: &SandboxConfig) -> RuntimeResult<SandboxStatus>;
    async fn stop_pod_sandbox(&self, id: &str) -> RuntimeResult<()>;
    async fn remove_pod_sandbox(&self, id: &str) -> RuntimeResult<()>;

    /// Creates a container in `sandbox`; returns its id.
    async fn create_container(
        &self,
        sandbox: &str,
        config: &ContainerConfig,
    ) -> RuntimeResult<String>;
    async fn start_container(&self, id: &str) -> RuntimeResult<()>;
    /// Stops a container, killing it once `timeout` passed after the polite signal.
    async fn stop_container(&self, id: &str, timeout: Duration) -> RuntimeResult<()>;
    async fn remove_container(&self, id: &str) -> RuntimeResult<()>;
    async fn container_status(&self, id: &str) -> RuntimeResult<ContainerStatus>;

    /// Runs a probe: exec through the runtime (CRI's `ExecSync`), HTTP/TCP/gRPC against the
    /// pod's address from the node.
    async fn probe(&self, request: &ProbeRequest<'_>) -> ProbeResult;
}
