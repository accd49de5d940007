//! The real runtime: a CRI v1 client (RuntimeService + ImageService over gRPC on a Unix
//! socket), as upstream's `kuberuntime` drives containerd. Pods get the node's pod network
//! from CNI: [`CriRuntime::update_pod_cidr`] writes the bridge configuration the runtime's CNI
//! plugin reads.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_openapi::jiff::Timestamp;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::runtime::{
    Adopted, ContainerConfig, ContainerState, ContainerStatus, ProbeRequest, ProbeResult, Runtime,
    RuntimeError, RuntimeResult, SandboxConfig, SandboxStatus,
};

/// The labels upstream's kubelet puts on sandboxes and containers (and finds them by).
pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";

/// A pod running on the node, as the summary API reports it.
#[derive(Debug, Clone)]
pub struct RunningPod {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub cgroup: String,
    /// Each running container's name and cgroup.
    pub containers: Vec<(String, String)>,
}

/// Which streams an exec or attach carries.
#[derive(Debug, Clone, Copy, Default)]
pub struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// How the kubelet lays out what the runtime needs from it.
#[derive(Debug, Clone)]
pub struct CriOptions {
    /// Where the CNI network configuration goes (the runtime's CNI `conf_dir`); `None` when
    /// something else configures the pod network.
    pub cni_conf_dir: Option<PathBuf>,
    /// host-local IPAM's state (allocated addresses).
    pub cni_ipam_dir: PathBuf,
    /// Containers' log files: `<dir>/<namespace>_<pod>_<uid>/<container>/<restarts>.log`.
    pub pod_logs_dir: PathBuf,
    /// The cgroup every pod's cgroup is created under (`--cgroup-root`).
    pub cgroup_root: String,
}

/// One node's CRI runtime.
#[derive(Debug)]
pub struct CriRuntime {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    version: String,
    options: CriOptions,
    /// Each sandbox's config: CRI wants it again with every container created in it.
    sandboxes: Mutex<HashMap<String, cri::PodSandboxConfig>>,
}

fn failed(status: tonic::Status) -> RuntimeError {
    if status.code() == tonic::Code::NotFound {
        RuntimeError::NotFound(status.message().to_owned())
    } else {
        RuntimeError::Failed(status.message().to_owned())
    }
}

/// A gRPC channel to the runtime's Unix socket.
async fn channel(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_owned();
    // The URI is required but unused: the connector dials the socket.
    Endpoint::from_static("http://[::]:0")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await
}

fn ns_time(nanos: i64) -> Option<Timestamp> {
    (nanos > 0).then(|| Timestamp::from_nanosecond(i128::from(nanos)).ok()).flatten()
}

impl CriRuntime {
    /// Connects to the runtime at `socket`, waiting up to `wait` for it to answer.
    pub async fn connect(
        socket: &Path,
        options: CriOptions,
        wait: Duration,
    ) -> RuntimeResult<Self> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let last = match Self::try_connect(socket).await {
                Ok((runtime, version)) => {
                    let images = ImageServiceClient::new(runtime.clone());
                    std::fs::create_dir_all(&options.pod_logs_dir).map_err(|e| {
                        RuntimeError::Failed(format!(
                            "cannot create {}: {e}",
                            options.pod_logs_dir.display()
                        ))
                    })?;
                    return Ok(Self {
                        runtime: RuntimeServiceClient::new(runtime),
                        images,
                        version,
                        options,
                        sandboxes: Mutex::default(),
                    });
                }
                Err(e) => e,
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(RuntimeError::Failed(format!(
                    "the container runtime at {} does not answer: {last}",
                    socket.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn try_connect(socket: &Path) -> Result<(Channel, String), String> {
        let channel = channel(socket).await.map_err(|e| format!("{e:?}"))?;
        let version = RuntimeServiceClient::new(channel.clone())
            .version(cri::VersionRequest { version: "v1".into() })
            .await
            .map_err(|e| e.message().to_owned())?
            .into_inner();
        Ok((channel, format!("{}://{}", version.runtime_name, version.runtime_version)))
    }

    /// CRI's sandbox config of a pod (also rebuilt when a sandbox is adopted).
    fn cri_sandbox_config(
        &self,
        config: &SandboxConfig,
        log_directory: &Path,
    ) -> cri::PodSandboxConfig {
        let mut labels = config.labels.clone().into_iter().collect::<HashMap<_, _>>();
        labels.insert(POD_NAME_LABEL.into(), config.name.clone());
        labels.insert(POD_NAMESPACE_LABEL.into(), config.namespace.clone());
        labels.insert(POD_UID_LABEL.into(), config.uid.clone());
        let namespace_mode = |host: bool| {
            if host { cri::NamespaceMode::Node as i32 } else { cri::NamespaceMode::Pod as i32 }
        };
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: config.name.clone(),
                uid: config.uid.clone(),
                namespace: config.namespace.clone(),
                attempt: config.attempt,
            }),
            hostname: if config.host_network { String::new() } else { config.hostname.clone() },
            log_directory: log_directory.to_string_lossy().into_owned(),
            dns_config: None,
            port_mappings: config
                .port_mappings
                .iter()
                .map(|p| cri::PortMapping {
                    protocol: match p.protocol.as_str() {
                        "UDP" => cri::Protocol::Udp as i32,
                        "SCTP" => cri::Protocol::Sctp as i32,
                        _ => cri::Protocol::Tcp as i32,
                    },
                    container_port: p.container_port,
                    host_port: p.host_port,
                    host_ip: p.host_ip.clone(),
                })
                .collect(),
            labels,
            annotations: config.annotations.clone().into_iter().collect(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: self.pod_cgroup(&config.uid),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: namespace_mode(config.host_network),
                        pid: cri::NamespaceMode::Container as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            windows: None,
        }
    }

    /// The sandbox's status: its addresses and readiness.
    async fn sandbox_status(&self, id: &str) -> RuntimeResult<SandboxStatus> {
        let status = self
            .rt()
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.to_owned(),
                verbose: false,
            })
            .await
            .map_err(failed)?
            .into_inner()
            .status
            .ok_or_else(|| RuntimeError::Failed(format!("sandbox {id} has no status")))?;
        let network = status.network.unwrap_or_default();
        let ips = std::iter::once(network.ip)
            .chain(network.additional_ips.into_iter().map(|p| p.ip))
            .filter_map(|ip| ip.parse().ok())
            .collect();
        Ok(SandboxStatus {
            id: id.to_owned(),
            ips,
            ready: status.state == cri::PodSandboxState::SandboxReady as i32,
        })
    }

    /// The ready sandboxes with these labels.
    async fn ready_sandboxes(
        &self,
        label_selector: HashMap<String, String>,
    ) -> RuntimeResult<Vec<cri::PodSandbox>> {
        Ok(self
            .rt()
            .list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    state: Some(cri::PodSandboxStateValue {
                        state: cri::PodSandboxState::SandboxReady as i32,
                    }),
                    label_selector,
                    ..Default::default()
                }),
            })
            .await
            .map_err(failed)?
            .into_inner()
            .items)
    }

    /// The containers of a sandbox.
    async fn containers_of(&self, sandbox: &str) -> RuntimeResult<Vec<cri::Container>> {
        Ok(self
            .rt()
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    pod_sandbox_id: sandbox.to_owned(),
                    ..Default::default()
                }),
            })
            .await
            .map_err(failed)?
            .into_inner()
            .containers)
    }

    /// The ready sandbox of the pod `namespace/name` and the id of its running container
    /// `container` (when one is named).
    pub async fn find_running(
        &self,
        namespace: &str,
        name: &str,
        container: Option<&str>,
    ) -> RuntimeResult<(String, Option<String>)> {
        let sandboxes = self
            .ready_sandboxes(
                [
                    (POD_NAME_LABEL.to_owned(), name.to_owned()),
                    (POD_NAMESPACE_LABEL.to_owned(), namespace.to_owned()),
                ]
                .into(),
            )
            .await?;
        let sandbox = sandboxes.into_iter().max_by_key(|s| s.created_at).ok_or_else(|| {
            RuntimeError::NotFound(format!("pod {namespace}/{name} is not running on this node"))
        })?;
        let Some(container) = container else { return Ok((sandbox.id, None)) };
        let running = self
            .containers_of(&sandbox.id)
            .await?
            .into_iter()
            .filter(|c| {
                c.metadata.as_ref().is_some_and(|m| m.name == container)
                    && c.state == cri::ContainerState::ContainerRunning as i32
            })
            .max_by_key(|c| c.created_at)
            .ok_or_else(|| {
                RuntimeError::NotFound(format!(
                    "container {container} is not running in pod {namespace}/{name}"
                ))
            })?;
        Ok((sandbox.id, Some(running.id)))
    }

    /// The id of `image` when it is present.
    async fn image_id(&self, image: &str) -> RuntimeResult<Option<String>> {
        let spec = cri::ImageSpec { image: image.to_owned(), ..Default::default() };
        Ok(self
            .images
            .clone()
            .image_status(cri::ImageStatusRequest { image: Some(spec), verbose: false })
            .await
            .map_err(failed)?
            .into_inner()
            .image
            .map(|found| found.id))
    }

    /// The runtime's streaming URL for an exec (CRI `Exec`).
    pub async fn exec_url(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        streams: Streams,
    ) -> RuntimeResult<String> {
        Ok(self
            .rt()
            .exec(cri::ExecRequest {
                container_id: container_id.to_owned(),
                cmd,
                tty: streams.tty,
                stdin: streams.stdin,
                stdout: streams.stdout,
                stderr: streams.stderr,
            })
            .await
            .map_err(failed)?
            .into_inner()
            .url)
    }

    /// The runtime's streaming URL for an attach (CRI `Attach`).
    pub async fn attach_url(&self, container_id: &str, streams: Streams) -> RuntimeResult<String> {
        Ok(self
            .rt()
            .attach(cri::AttachRequest {
                container_id: container_id.to_owned(),
                stdin: streams.stdin,
                tty: streams.tty,
                stdout: streams.stdout,
                stderr: streams.stderr,
            })
            .await
            .map_err(failed)?
            .into_inner()
            .url)
    }

    /// The runtime's streaming URL for a port forward into the sandbox (CRI `PortForward`).
    pub async fn port_forward_url(
        &self,
        sandbox_id: &str,
        ports: Vec<i32>,
    ) -> RuntimeResult<String> {
        Ok(self
            .rt()
            .port_forward(cri::PortForwardRequest {
                pod_sandbox_id: sandbox_id.to_owned(),
                port: ports,
            })
            .await
            .map_err(failed)?
            .into_inner()
            .url)
    }

    /// Whether the container `name` of pod `uid`, in its instance `attempt`, is running.
    pub async fn container_running(&self, uid: &str, name: &str, attempt: u32) -> bool {
        let filter = cri::ContainerFilter {
            label_selector: [
                (POD_UID_LABEL.to_owned(), uid.to_owned()),
                (CONTAINER_NAME_LABEL.to_owned(), name.to_owned()),
            ]
            .into(),
            ..Default::default()
        };
        let Ok(list) =
            self.rt().list_containers(cri::ListContainersRequest { filter: Some(filter) }).await
        else {
            return false;
        };
        list.into_inner().containers.iter().any(|c| {
            c.metadata.as_ref().is_some_and(|m| m.attempt == attempt)
                && c.state == cri::ContainerState::ContainerRunning as i32
        })
    }

    /// The running pods (ready sandboxes) with their running containers, for the summary
    /// API: pod name, namespace, UID, and each container's name and cgroup.
    pub async fn running_pods(&self) -> RuntimeResult<Vec<RunningPod>> {
        let sandboxes = self.ready_sandboxes(HashMap::new()).await?;
        let mut pods = Vec::new();
        for sandbox in sandboxes {
            let label = |k: &str| sandbox.labels.get(k).cloned().unwrap_or_default();
            let uid = label(POD_UID_LABEL);
            if uid.is_empty() {
                continue;
            }
            let cgroup = self.pod_cgroup(&uid);
            let containers = self
                .containers_of(&sandbox.id)
                .await?
                .into_iter()
                .filter(|c| c.state == cri::ContainerState::ContainerRunning as i32)
                .filter_map(|c| Some((c.metadata?.name, format!("{cgroup}/{}", c.id))))
                .collect();
            pods.push(RunningPod {
                name: label(POD_NAME_LABEL),
                namespace: label(POD_NAMESPACE_LABEL),
                uid,
                cgroup,
                containers,
            });
        }
        Ok(pods)
    }

    /// The pod's cgroup (cgroupfs driver): `<cgroup-root>/kubepods/pod<uid>`.
    fn pod_cgroup(&self, uid: &str) -> String {
        format!("{}/kubepods/pod{uid}", self.options.cgroup_root.trim_end_matches('/'))
    }

    fn log_directory(&self, config: &SandboxConfig) -> PathBuf {
        self.options
            .pod_logs_dir
            .join(format!("{}_{}_{}", config.namespace, config.name, config.uid))
    }

    fn rt(&self) -> RuntimeServiceClient<Channel> {
        self.runtime.clone()
    }

    fn sandbox_config(&self, id: &str) -> Option<cri::PodSandboxConfig> {
        self.sandboxes.lock().unwrap_or_else(PoisonError::into_inner).get(id).cloned()
    }

    /// The CNI network of the node's pods: a `cni0` bridge with the pod range, masquerading
    /// outbound traffic, `hostPort`s through portmap.
    fn cni_config(&self, cidr: &str) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "krust",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": true,
                    "ipMasq": true,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": cidr}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": self.options.cni_ipam_dir,
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        })
    }
}

/// CRI's form of a container's security settings.
fn container_security(security: &crate::runtime::Security) -> cri::LinuxContainerSecurityContext {
    let capabilities = (!security.add_capabilities.is_empty()
        || !security.drop_capabilities.is_empty())
    .then(|| cri::Capability {
        add_capabilities: security.add_capabilities.clone(),
        drop_capabilities: security.drop_capabilities.clone(),
        ..Default::default()
    });
    cri::LinuxContainerSecurityContext {
        capabilities,
        privileged: security.privileged,
        run_as_user: security.run_as_user.map(|value| cri::Int64Value { value }),
        run_as_group: security.run_as_group.map(|value| cri::Int64Value { value }),
        readonly_rootfs: security.read_only_root_filesystem,
        supplemental_groups: security.supplemental_groups.clone(),
        no_new_privs: security.no_new_privileges,
        ..Default::default()
    }
}

/// The annotation naming a container's termination message path (upstream's kubelet sets it
/// too); the file is the container's mount at that path.
pub const TERMINATION_MESSAGE_PATH_ANNOTATION: &str =
    "io.kubernetes.container.terminationMessagePath";

/// What the container wrote to its termination message file (at most 4 KiB, as upstream).
fn termination_message(s: &cri::ContainerStatus) -> Option<String> {
    let path = s.annotations.get(TERMINATION_MESSAGE_PATH_ANNOTATION)?;
    let mount = s.mounts.iter().find(|m| &m.container_path == path)?;
    let bytes = std::fs::read(&mount.host_path).ok()?;
    let bytes = &bytes[..bytes.len().min(4096)];
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(bytes).into_owned())
}

/// The container's runtime state in CRI's terms, as the kubelet reports it.
fn container_state(s: &cri::ContainerStatus) -> ContainerState {
    match cri::ContainerState::try_from(s.state) {
        Ok(cri::ContainerState::ContainerRunning) => ContainerState::Running {
            started_at: ns_time(s.started_at).unwrap_or_else(Timestamp::now),
        },
        Ok(cri::ContainerState::ContainerExited) => ContainerState::Exited {
            started_at: ns_time(s.started_at),
            finished_at: ns_time(s.finished_at).unwrap_or_else(Timestamp::now),
            exit_code: s.exit_code,
            reason: if s.reason.is_empty() {
                if s.exit_code == 0 { "Completed".into() } else { "Error".into() }
            } else {
                s.reason.clone()
            },
            message: termination_message(s)
                .or_else(|| (!s.message.is_empty()).then(|| s.message.clone())),
        },
        Ok(cri::ContainerState::ContainerUnknown) => ContainerState::Exited {
            started_at: ns_time(s.started_at),
            finished_at: ns_time(s.finished_at).unwrap_or_else(Timestamp::now),
            exit_code: 255,
            reason: "Unknown".into(),
            message: Some("The container's state cannot be determined".into()),
        },
        _ => ContainerState::Created,
    }
}

#[async_trait::async_trait]
impl Runtime for CriRuntime {
    fn version(&self) -> String {
        self.version.clone()
    }

    fn relist_period(&self) -> Option<Duration> {
        Some(Duration::from_secs(1))
    }

    async fn update_pod_cidr(&self, cidr: &str) -> RuntimeResult<()> {
        let _ = self
            .rt()
            .update_runtime_config(cri::UpdateRuntimeConfigRequest {
                runtime_config: Some(cri::RuntimeConfig {
                    network_config: Some(cri::NetworkConfig { pod_cidr: cidr.to_owned() }),
                }),
            })
            .await;
        let Some(dir) = &self.options.cni_conf_dir else { return Ok(()) };
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            std::fs::create_dir_all(&self.options.cni_ipam_dir)?;
            let path = dir.join("10-krust.conflist");
            let tmp = dir.join(".10-krust.conflist.tmp");
            let body =
                serde_json::to_vec_pretty(&self.cni_config(cidr)).map_err(std::io::Error::other)?;
            std::fs::write(&tmp, body)?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            RuntimeError::Failed(format!(
                "cannot write the CNI configuration in {}: {e}",
                dir.display()
            ))
        })
    }

    async fn adopt(&self, config: &SandboxConfig) -> RuntimeResult<Option<Adopted>> {
        let sandboxes =
            self.ready_sandboxes([(POD_UID_LABEL.to_owned(), config.uid.clone())].into()).await?;
        let Some(found) = sandboxes.into_iter().max_by_key(|s| s.created_at) else {
            return Ok(None);
        };
        let sandbox = self.sandbox_status(&found.id).await?;
        let rebuilt = self.cri_sandbox_config(config, &self.log_directory(config));
        self.sandboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(found.id.clone(), rebuilt);
        let mut latest: HashMap<String, (String, u32)> = HashMap::new();
        for c in self.containers_of(&found.id).await? {
            let Some(meta) = c.metadata else { continue };
            if latest.get(&meta.name).is_none_or(|(_, attempt)| meta.attempt >= *attempt) {
                latest.insert(meta.name, (c.id, meta.attempt));
            }
        }
        let containers =
            latest.into_iter().map(|(name, (id, attempt))| (name, id, attempt)).collect();
        Ok(Some(Adopted { sandbox, containers }))
    }

    async fn remove_orphans(&self, keep: &HashSet<String>) -> RuntimeResult<usize> {
        let sandboxes = self
            .rt()
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
            .map_err(failed)?
            .into_inner()
            .items;
        let mut removed = 0;
        for sandbox in sandboxes {
            let Some(uid) = sandbox.labels.get(POD_UID_LABEL) else { continue };
            if keep.contains(uid) {
                continue;
            }
            for c in self.containers_of(&sandbox.id).await.unwrap_or_default() {
                let _ = self.stop_container(&c.id, Duration::ZERO).await;
                let _ = self.remove_container(&c.id).await;
            }
            let _ = self.stop_pod_sandbox(&sandbox.id).await;
            self.rt()
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: sandbox.id.clone(),
                })
                .await
                .map_err(failed)?;
            crate::cgroups::remove(&self.pod_cgroup(uid));
            removed += 1;
        }
        Ok(removed)
    }

    async fn list_images(&self) -> RuntimeResult<Vec<(Vec<String>, u64)>> {
        let images = self
            .images
            .clone()
            .list_images(cri::ListImagesRequest { filter: None })
            .await
            .map_err(failed)?
            .into_inner()
            .images;
        Ok(images
            .into_iter()
            .map(|i| {
                let mut names = i.repo_digests;
                names.extend(i.repo_tags);
                (names, i.size)
            })
            .filter(|(names, _)| !names.is_empty())
            .collect())
    }

    async fn image_present(&self, image: &str) -> RuntimeResult<bool> {
        Ok(self.image_id(image).await?.is_some())
    }

    async fn pull_image(&self, image: &str) -> RuntimeResult<String> {
        if let Some(id) = self.image_id(image).await? {
            return Ok(id);
        }
        let spec = cri::ImageSpec { image: image.to_owned(), ..Default::default() };
        let pulled = self
            .images
            .clone()
            .pull_image(cri::PullImageRequest {
                image: Some(spec),
                auth: None,
                sandbox_config: None,
            })
            .await
            .map_err(|s| RuntimeError::ImagePull(s.message().to_owned()))?;
        Ok(pulled.into_inner().image_ref)
    }

    async fn run_pod_sandbox(&self, config: &SandboxConfig) -> RuntimeResult<SandboxStatus> {
        let log_directory = self.log_directory(config);
        std::fs::create_dir_all(&log_directory).map_err(|e| {
            RuntimeError::Failed(format!("cannot create {}: {e}", log_directory.display()))
        })?;
        let sandbox = self.cri_sandbox_config(config, &log_directory);
        let id = self
            .rt()
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(sandbox.clone()),
                runtime_handler: String::new(),
            })
            .await
            .map_err(failed)?
            .into_inner()
            .pod_sandbox_id;
        self.sandboxes.lock().unwrap_or_else(PoisonError::into_inner).insert(id.clone(), sandbox);
        self.sandbox_status(&id).await
    }

    async fn stop_pod_sandbox(&self, id: &str) -> RuntimeResult<()> {
        self.rt()
            .stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id.to_owned() })
            .await
            .map_err(failed)?;
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> RuntimeResult<()> {
        self.rt()
            .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id.to_owned() })
            .await
            .map_err(failed)?;
        let config = self.sandboxes.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
        if let Some(config) = config {
            // The pod's cgroup, empty now (upstream's pod cgroup manager removes it likewise),
            // and its logs.
            if let Some(linux) = &config.linux {
                crate::cgroups::remove(&linux.cgroup_parent);
            }
            if !config.log_directory.is_empty() {
                let _ = std::fs::remove_dir_all(&config.log_directory);
            }
        }
        Ok(())
    }

    async fn create_container(
        &self,
        sandbox: &str,
        config: &ContainerConfig,
    ) -> RuntimeResult<String> {
        let sandbox_config = self
            .sandbox_config(sandbox)
            .ok_or_else(|| RuntimeError::NotFound(format!("sandbox {sandbox}")))?;
        let pod_labels = sandbox_config.labels.clone();
        let mut labels: HashMap<String, String> =
            [POD_NAME_LABEL, POD_NAMESPACE_LABEL, POD_UID_LABEL]
                .iter()
                .filter_map(|k| pod_labels.get(*k).map(|v| ((*k).to_owned(), v.clone())))
                .collect();
        labels.insert(CONTAINER_NAME_LABEL.into(), config.name.clone());
        // `<container>/<restarts>.log` under the pod's log directory.
        let log_path = format!("{}/{}.log", config.name, config.attempt);
        let container_log_dir = Path::new(&sandbox_config.log_directory).join(&config.name);
        std::fs::create_dir_all(&container_log_dir).map_err(|e| {
            RuntimeError::Failed(format!("cannot create {}: {e}", container_log_dir.display()))
        })?;
        let r = config.resources;
        // Upstream's conversions: shares = milli * 1024 / 1000 (at least 2); the quota per
        // 100 ms period.
        let cpu_shares = (r.cpu_request_milli * 1024 / 1000).max(2);
        let cpu_period = 100_000;
        let cpu_quota = r.cpu_limit_milli.map_or(0, |m| (m * cpu_period / 1000).max(1000));
        let request = cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.to_owned(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: config.name.clone(),
                    attempt: config.attempt,
                }),
                image: Some(cri::ImageSpec {
                    image: config.image.clone(),
                    user_specified_image: config.image.clone(),
                    ..Default::default()
                }),
                command: config.command.clone(),
                args: config.args.clone(),
                working_dir: config.working_dir.clone().unwrap_or_default(),
                envs: config
                    .env
                    .iter()
                    .map(|(key, value)| cri::KeyValue { key: key.clone(), value: value.clone() })
                    .collect(),
                labels,
                annotations: config
                    .termination_message_path
                    .iter()
                    .map(|p| (TERMINATION_MESSAGE_PATH_ANNOTATION.to_owned(), p.clone()))
                    .collect(),
                log_path,
                mounts: config
                    .mounts
                    .iter()
                    .map(|m| cri::Mount {
                        container_path: m.container_path.clone(),
                        host_path: m.host_path.to_string_lossy().into_owned(),
                        readonly: m.read_only,
                        ..Default::default()
                    })
                    .collect(),
                linux: Some(cri::LinuxContainerConfig {
                    resources: Some(cri::LinuxContainerResources {
                        cpu_period: if cpu_quota > 0 { cpu_period } else { 0 },
                        cpu_quota,
                        cpu_shares,
                        memory_limit_in_bytes: r.memory_limit_bytes.unwrap_or(0),
                        ..Default::default()
                    }),
                    security_context: Some(container_security(&config.security)),
                }),
                ..Default::default()
            }),
            sandbox_config: Some(sandbox_config),
        };
        let id = self
            .rt()
            .create_container(request)
            .await
            .map_err(|s| RuntimeError::Failed(s.message().to_owned()))?
            .into_inner()
            .container_id;
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> RuntimeResult<()> {
        self.rt()
            .start_container(cri::StartContainerRequest { container_id: id.to_owned() })
            .await
            .map_err(|s| RuntimeError::Failed(s.message().to_owned()))?;
        Ok(())
    }

    async fn stop_container(&self, id: &str, timeout: Duration) -> RuntimeResult<()> {
        self.rt()
            .stop_container(cri::StopContainerRequest {
                container_id: id.to_owned(),
                timeout: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            })
            .await
            .map_err(failed)?;
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> RuntimeResult<()> {
        self.rt()
            .remove_container(cri::RemoveContainerRequest { container_id: id.to_owned() })
            .await
            .map_err(failed)?;
        Ok(())
    }

    async fn container_status(&self, id: &str) -> RuntimeResult<ContainerStatus> {
        let status = self
            .rt()
            .container_status(cri::ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: false,
            })
            .await
            .map_err(failed)?
            .into_inner()
            .status
            .ok_or_else(|| RuntimeError::NotFound(format!("container {id}")))?;
        Ok(ContainerStatus {
            id: format!("{}://{}", self.version.split("://").next().unwrap_or("cri"), status.id),
            name: status.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default(),
            image: status.image.as_ref().map(|i| i.image.clone()).unwrap_or_default(),
            image_ref: status.image_ref.clone(),
            state: container_state(&status),
        })
    }

    async fn probe(&self, request: &ProbeRequest<'_>) -> ProbeResult {
        let probe = request.probe;
        if let Some(exec) = &probe.exec {
            let timeout = request.timeout.as_secs().max(1);
            let mut client = self.rt();
            let run = client.exec_sync(cri::ExecSyncRequest {
                container_id: request.container_id.to_owned(),
                cmd: exec.command.clone().unwrap_or_default(),
                timeout: i64::try_from(timeout).unwrap_or(1),
            });
            return match tokio::time::timeout(request.timeout + Duration::from_secs(2), run).await {
                Ok(Ok(out)) => {
                    let out = out.into_inner();
                    if out.exit_code == 0 {
                        ProbeResult::Success
                    } else {
                        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
                        output.push_str(&String::from_utf8_lossy(&out.stderr));
                        ProbeResult::Failure(output)
                    }
                }
                Ok(Err(s)) => ProbeResult::Failure(s.message().to_owned()),
                Err(_) => ProbeResult::Failure(format!("command timed out after {timeout}s")),
            };
        }
        if let Some(get) = &probe.http_get {
            return crate::netprobe::http(
                get,
                request.container_ports,
                request.pod_ips,
                request.timeout,
            )
            .await;
        }
        if let Some(tcp) = &probe.tcp_socket {
            return crate::netprobe::tcp(
                tcp,
                request.container_ports,
                request.pod_ips,
                request.timeout,
            )
            .await;
        }
        ProbeResult::Failure("gRPC probes are not supported yet".into())
    }
}
