//! Pod workers (upstream's `podWorkers` + `SyncPod` + status manager, reduced): one task per
//! pod bound to the node, fed every new version of the pod, that brings the runtime in line
//! with the pod's spec — sandbox, init containers in order, containers restarted per the
//! restart policy with CrashLoopBackOff — and posts the pod's status when it changes. A pod
//! being deleted is stopped (its grace period passed to the runtime) and then deleted with
//! grace 0, which removes it from the API.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use krust_events::{EventRecorder, EventType};
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::probes::{ProbeKind, Prober, Verdict};
use crate::runtime::{
    ContainerConfig, ContainerState, ContainerStatus, PortMapping, ProbeRequest, ProbeResult,
    Resources, Runtime, RuntimeError, SandboxConfig,
};

/// Upstream's CrashLoopBackOff: 10 s doubling to 5 min, forgotten after 10 min of running.
const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
const BACKOFF_RESET: SignedDuration = SignedDuration::from_secs(600);

/// What a worker needs of its node.
pub struct NodeHandle {
    pub client: kube::Client,
    /// Events from this node's kubelet.
    pub events: EventRecorder,
    pub node_name: String,
    pub host_ip: String,
    /// Where pods' volumes go (real nodes only).
    pub root_dir: Option<PathBuf>,
    pub runtime: Arc<dyn Runtime>,
}

/// What the worker knows of one container.
#[derive(Debug, Clone)]
struct Record {
    id: Option<String>,
    restarts: i32,
    /// No restart before this instant (CrashLoopBackOff).
    backoff_until: Option<Timestamp>,
    backoff: Duration,
    /// The last termination, for `lastState`.
    last_exit: Option<ContainerStatus>,
    /// Why the container is not running, when it is waiting.
    waiting: Option<(String, String)>,
    /// The probes of the current run, and the container id they belong to.
    probers: Vec<Prober>,
    probed: Option<String>,
    /// Started (startup probe passed) and ready (readiness probe passed), while running.
    started: bool,
    ready: bool,
    /// Image pull back-off.
    pull_backoff: Duration,
    pull_backoff_until: Option<Timestamp>,
}

impl Record {
    fn new() -> Self {
        Self {
            id: None,
            restarts: 0,
            backoff_until: None,
            backoff: Duration::ZERO,
            last_exit: None,
            waiting: None,
            probers: Vec::new(),
            probed: None,
            started: false,
            ready: false,
            pull_backoff: Duration::ZERO,
            pull_backoff_until: None,
        }
    }
}

#[derive(Debug, Default)]
struct PodState {
    sandbox: Option<String>,
    ips: Vec<String>,
    sandbox_error: Option<String>,
    containers: HashMap<String, Record>,
    start_time: Option<Timestamp>,
    /// The status last posted, to post only changes.
    posted: Option<Value>,
    /// The pod's volumes on the node, and when they were last refreshed.
    volumes: BTreeMap<String, PathBuf>,
    volumes_at: Option<Timestamp>,
    volume_error: Option<String>,
    /// The pod's UID (its volumes' directory), once synced.
    uid: Option<String>,
    /// The `/etc/hosts` last written for the pod.
    hosts: Option<String>,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle").field("node_name", &self.node_name).finish_non_exhaustive()
    }
}

/// Runs one pod until it is gone. `updates` holds the pod's latest version (`None` once the
/// API no longer has it); intermediate versions may be skipped, as upstream's pod workers do.
pub async fn run(node: Arc<NodeHandle>, mut updates: watch::Receiver<Option<Arc<Pod>>>) {
    let mut state = PodState::default();
    let first = updates.borrow().clone();
    if let Some(pod) = first {
        adopt(&node, &pod, &mut state).await;
    }
    loop {
        let Some(pod) = updates.borrow_and_update().clone() else {
            cleanup(&node, &mut state).await;
            return;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            terminate(&node, &pod, &mut state).await;
            // Wait for the API's word that it is gone.
            let _ = updates.wait_for(Option::is_none).await;
            return;
        }
        let mut wake = sync(&node, &pod, &mut state).await;
        if let Some(period) = node.runtime.relist_period()
            && state.sandbox.is_some()
        {
            wake = Some(wake.map_or(period, |w| w.min(period)));
        }
        let changed = match wake {
            Some(after) => tokio::select! {
                c = updates.changed() => c,
                _ = tokio::time::sleep(after) => Ok(()),
            },
            None => updates.changed().await,
        };
        if changed.is_err() {
            // The dispatcher is gone (shutdown): leave the runtime as it is.
            return;
        }
    }
}

/// The sandbox a pod runs in.
fn sandbox_config(pod: &Pod) -> SandboxConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    SandboxConfig {
        namespace: pod.namespace().unwrap_or_default(),
        name: pod.name_any(),
        uid: pod.uid().unwrap_or_default(),
        attempt: 0,
        hostname: spec.hostname.clone().unwrap_or_else(|| pod.name_any()),
        labels: pod.labels().clone(),
        annotations: pod.annotations().clone(),
        host_network: spec.host_network == Some(true),
        port_mappings: port_mappings(&spec),
    }
}

/// Carries on with what the runtime already runs for the pod (a restarted kubelet): its
/// sandbox and the latest instance of each container, restart counts included.
async fn adopt(node: &NodeHandle, pod: &Pod, state: &mut PodState) {
    let config = sandbox_config(pod);
    match node.runtime.adopt(&config).await {
        Ok(Some(found)) => {
            state.ips = if config.host_network {
                vec![node.host_ip.clone()]
            } else {
                found.sandbox.ips.iter().map(ToString::to_string).collect()
            };
            state.sandbox = Some(found.sandbox.id);
            for (name, id, attempt) in found.containers {
                let mut record = Record::new();
                record.id = Some(id);
                record.restarts = i32::try_from(attempt).unwrap_or(i32::MAX);
                state.containers.insert(name, record);
            }
            tracing::info!(pod = %pod.name_any(), "adopted the pod's running sandbox");
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(pod = %pod.name_any(), error = %e, "cannot look for the pod's sandbox")
        }
    }
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always")
}

/// What the runtime creates the container from: its environment resolved (a reference that
/// cannot be resolved is upstream's `CreateContainerConfigError`), the pod's volumes mounted.
async fn container_config(
    node: &NodeHandle,
    pod: &Pod,
    state: &PodState,
    c: &Container,
    attempt: i32,
) -> Result<ContainerConfig, String> {
    let real = node.root_dir.is_some();
    let service_links =
        real && pod.spec.as_ref().and_then(|s| s.enable_service_links) != Some(false);
    let env =
        if real || c.env.iter().flatten().any(|e| e.value_from.is_some()) || c.env_from.is_some() {
            crate::env::resolve(&node.client, pod, c, &node.host_ip, &state.ips, service_links)
                .await?
        } else {
            c.env
                .iter()
                .flatten()
                .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
                .collect()
        };
    let mut mounts = crate::volumes::mounts(c, &state.volumes)?;
    if let Some(root) = &node.root_dir
        && pod.spec.as_ref().and_then(|s| s.host_network) != Some(true)
        && !mounts.iter().any(|m| m.container_path == "/etc/hosts")
    {
        mounts.push(crate::runtime::Mount {
            container_path: "/etc/hosts".into(),
            host_path: crate::volumes::pod_dir(root, &pod.uid().unwrap_or_default())
                .join("etc-hosts"),
            read_only: false,
        });
    }
    // The termination message file: one per container instance, mounted at its path.
    let mut termination_message_path = None;
    if let Some(root) = &node.root_dir {
        let path =
            c.termination_message_path.clone().unwrap_or_else(|| "/dev/termination-log".into());
        let host = crate::volumes::pod_dir(root, &pod.uid().unwrap_or_default())
            .join("containers")
            .join(&c.name)
            .join(format!("{attempt}-termination-log"));
        let created = host
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&host, b""))
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o666))
            });
        if created.is_ok() && !mounts.iter().any(|m| m.container_path == path) {
            mounts.push(crate::runtime::Mount {
                container_path: path.clone(),
                host_path: host,
                read_only: false,
            });
            termination_message_path = Some(path);
        }
    }
    Ok(ContainerConfig {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        command: c.command.clone().unwrap_or_default(),
        args: c.args.clone().unwrap_or_default(),
        env,
        working_dir: c.working_dir.clone(),
        attempt: u32::try_from(attempt).unwrap_or(0),
        pod_annotations: pod.metadata.annotations.clone().unwrap_or_default(),
        resources: resources(c),
        mounts,
        security: security(pod, c),
        termination_message_path,
    })
}

/// The container's securityContext, with the pod's as the default (upstream's merge).
fn security(pod: &Pod, c: &Container) -> crate::runtime::Security {
    let pod_ctx = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let ctx = c.security_context.as_ref();
    let caps = ctx.and_then(|x| x.capabilities.as_ref());
    crate::runtime::Security {
        run_as_user: ctx
            .and_then(|x| x.run_as_user)
            .or_else(|| pod_ctx.and_then(|p| p.run_as_user)),
        run_as_group: ctx
            .and_then(|x| x.run_as_group)
            .or_else(|| pod_ctx.and_then(|p| p.run_as_group)),
        supplemental_groups: pod_ctx
            .and_then(|p| p.supplemental_groups.clone())
            .unwrap_or_default(),
        privileged: ctx.and_then(|x| x.privileged) == Some(true),
        read_only_root_filesystem: ctx.and_then(|x| x.read_only_root_filesystem) == Some(true),
        no_new_privileges: ctx.and_then(|x| x.allow_privilege_escalation) == Some(false),
        add_capabilities: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
        drop_capabilities: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
    }
}

/// The pod's `/etc/hosts` (upstream's kubelet-managed file): localhost, and the pod's own
/// name at its address.
fn etc_hosts(pod: &Pod, ips: &[String]) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let hostname = spec.hostname.clone().unwrap_or_else(|| pod.name_any());
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let fqdn = spec.subdomain.as_ref().map(|sub| {
        format!("{hostname}.{sub}.{}.svc.cluster.local", pod.namespace().unwrap_or_default())
    });
    for ip in ips {
        match &fqdn {
            Some(f) => out.push_str(&format!("{ip}\t{f}\t{hostname}\n")),
            None => out.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    for alias in spec.host_aliases.iter().flatten() {
        out.push_str(&format!(
            "\n# Entries added by HostAliases.\n{}\t{}\n",
            alias.ip,
            alias.hostnames.clone().unwrap_or_default().join("\t")
        ));
    }
    out
}

/// Sets up the pod's volumes (and `/etc/hosts`) on a real node; refreshed every 10 s so
/// configMap and secret updates reach running containers. Returns whether the pod can go on.
async fn ensure_volumes(
    node: &NodeHandle,
    pod: &Pod,
    state: &mut PodState,
    now: Timestamp,
) -> bool {
    let Some(root) = &node.root_dir else { return true };
    let due =
        state.volumes_at.is_none_or(|at| now.duration_since(at) >= SignedDuration::from_secs(10));
    if due || state.volume_error.is_some() {
        match crate::volumes::setup(&node.client, root, pod, &node.host_ip).await {
            Ok(volumes) => {
                state.volumes = volumes;
                state.volumes_at = Some(now);
                state.volume_error = None;
            }
            Err(e) => {
                let message = format!("MountVolume.SetUp failed: {e}");
                if state.volume_error.as_ref() != Some(&message) {
                    node.events.record(pod, EventType::Warning, "FailedMount", message.clone());
                }
                state.volume_error = Some(message);
                return false;
            }
        }
    }
    if state.sandbox.is_some() {
        let path = crate::volumes::pod_dir(root, &pod.uid().unwrap_or_default()).join("etc-hosts");
        let hosts = etc_hosts(pod, &state.ips);
        // Written when it changes (kept in memory: no file read at every relist).
        if state.hosts.as_deref() != Some(hosts.as_str()) {
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&path, &hosts));
            match written {
                Ok(()) => state.hosts = Some(hosts),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot write the pod's /etc/hosts")
                }
            }
        }
    }
    true
}

/// The container's CPU and memory figures (a quantity that does not parse counts as unset;
/// validation rejects such pods).
fn resources(c: &Container) -> Resources {
    let get = |list: Option<&BTreeMap<String, Quantity>>, name: &str| {
        list.and_then(|l| l.get(name)).and_then(|q| krust_api::quantity::parse(&q.0).ok())
    };
    let r = c.resources.as_ref();
    let requests = r.and_then(|r| r.requests.as_ref());
    let limits = r.and_then(|r| r.limits.as_ref());
    let cpu_limit = get(limits, "cpu").map(|q| q.milli_value());
    Resources {
        // As upstream: a limit without a request requests the limit.
        cpu_request_milli: get(requests, "cpu").map(|q| q.milli_value()).or(cpu_limit).unwrap_or(0),
        cpu_limit_milli: cpu_limit,
        memory_limit_bytes: get(limits, "memory").map(|q| q.value()),
    }
}

/// The pod's `hostPort`s.
fn port_mappings(spec: &k8s_openapi::api::core::v1::PodSpec) -> Vec<PortMapping> {
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = p.host_port.filter(|h| *h > 0)?;
            Some(PortMapping {
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                container_port: p.container_port,
                host_port,
                host_ip: p.host_ip.clone().unwrap_or_default(),
            })
        })
        .collect()
}

/// One pass over the pod; returns when to look again (backoff expiry), if ever on its own.
async fn sync(node: &NodeHandle, pod: &Pod, state: &mut PodState) -> Option<Duration> {
    let now = Timestamp::now();
    state.start_time.get_or_insert(now);
    if state.uid.is_none() {
        state.uid = pod.uid();
    }
    let mut wake: Option<Timestamp> = None;
    let spec = pod.spec.clone().unwrap_or_default();
    let terminal = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );

    if state.sandbox.is_none() && !terminal {
        let config = sandbox_config(pod);
        match node.runtime.run_pod_sandbox(&config).await {
            Ok(sandbox) => {
                state.sandbox = Some(sandbox.id);
                state.ips = sandbox.ips.iter().map(ToString::to_string).collect();
                if config.host_network {
                    state.ips = vec![node.host_ip.clone()];
                }
                state.sandbox_error = None;
            }
            Err(e) => {
                node.events.record(
                    pod,
                    EventType::Warning,
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {e}"),
                );
                state.sandbox_error = Some(e.to_string());
                post_status(node, pod, state, &spec, now).await;
                return Some(BACKOFF_INITIAL);
            }
        }
    }
    let Some(sandbox) = state.sandbox.clone() else {
        post_status(node, pod, state, &spec, now).await;
        return None;
    };
    if !terminal && !ensure_volumes(node, pod, state, now).await {
        post_status(node, pod, state, &spec, now).await;
        return Some(BACKOFF_INITIAL);
    }

    let policy = restart_policy(pod).to_owned();
    // Init containers, in order: each must succeed before the next starts.
    let mut initialized = true;
    for c in spec.init_containers.iter().flatten() {
        let status = ensure(node, pod, state, &sandbox, c, &policy, true, now, &mut wake).await;
        match status.map(|s| s.state) {
            Some(ContainerState::Exited { exit_code: 0, .. }) => continue,
            _ => {
                initialized = false;
                break;
            }
        }
    }
    if initialized {
        for c in &spec.containers {
            ensure(node, pod, state, &sandbox, c, &policy, false, now, &mut wake).await;
            run_probes(node, pod, state, c, now, &mut wake).await;
        }
    }
    post_status(node, pod, state, &spec, now).await;
    wake.map(|t| now.duration_until(t).unsigned_abs().max(Duration::from_millis(50)))
}

/// Brings one container in line with the restart policy; returns its current status.
#[allow(clippy::too_many_arguments)]
async fn ensure(
    node: &NodeHandle,
    pod: &Pod,
    state: &mut PodState,
    sandbox: &str,
    c: &Container,
    policy: &str,
    init: bool,
    now: Timestamp,
    wake: &mut Option<Timestamp>,
) -> Option<ContainerStatus> {
    let record = state.containers.entry(c.name.clone()).or_insert_with(Record::new).clone();
    let current = match &record.id {
        Some(id) => node.runtime.container_status(id).await.ok(),
        None => None,
    };
    let exited = match &current {
        Some(s @ ContainerStatus { state: ContainerState::Exited { .. }, .. }) => Some(s.clone()),
        Some(_) => return current,
        None => None,
    };
    let mut record = record;
    if let Some(exit) = &exited {
        let ContainerState::Exited { exit_code, started_at, finished_at, .. } = &exit.state else {
            return current;
        };
        let restart = match policy {
            "Never" => false,
            "OnFailure" => *exit_code != 0,
            // An init container that succeeded is done even under Always.
            _ => !(init && *exit_code == 0),
        };
        if !restart {
            state.containers.insert(c.name.clone(), record);
            return current;
        }
        if record.last_exit.as_ref().map(|e| &e.id) != Some(&exit.id) {
            // A fresh exit: schedule the restart with backoff.
            let ran_long =
                started_at.is_some_and(|s| finished_at.duration_since(s) >= BACKOFF_RESET);
            record.backoff = if ran_long || record.backoff.is_zero() {
                BACKOFF_INITIAL
            } else {
                (record.backoff * 2).min(BACKOFF_MAX)
            };
            record.backoff_until = now
                .checked_add(
                    SignedDuration::try_from(record.backoff).unwrap_or(SignedDuration::MAX),
                )
                .ok();
            record.last_exit = Some(exit.clone());
        }
        if let Some(until) = record.backoff_until
            && until > now
        {
            if record.waiting.as_ref().is_none_or(|(r, _)| r != "CrashLoopBackOff") {
                node.events.record(
                    pod,
                    EventType::Warning,
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {} in pod {}_{}({})",
                        c.name,
                        pod.name_any(),
                        pod.namespace().unwrap_or_default(),
                        pod.uid().unwrap_or_default()
                    ),
                );
            }
            record.waiting = Some((
                "CrashLoopBackOff".into(),
                format!(
                    "back-off {}s restarting failed container={} pod={}_{}({})",
                    record.backoff.as_secs(),
                    c.name,
                    pod.name_any(),
                    pod.namespace().unwrap_or_default(),
                    pod.uid().unwrap_or_default()
                ),
            ));
            *wake = Some(wake.map_or(until, |w| w.min(until)));
            state.containers.insert(c.name.clone(), record);
            return current;
        }
        if let Some(id) = record.id.take() {
            let _ = node.runtime.remove_container(&id).await;
        }
        record.restarts += 1;
    }
    // Start it (again).
    let image = c.image.clone().unwrap_or_default();
    if c.image_pull_policy.as_deref() == Some("Never")
        && !node.runtime.image_present(&image).await.unwrap_or(false)
    {
        let message =
            format!("Container image \"{image}\" is not present with pull policy of Never");
        if record.waiting.as_ref().is_none_or(|(r, _)| r != "ErrImageNeverPull") {
            node.events.record(pod, EventType::Warning, "ErrImageNeverPull", message.clone());
        }
        record.waiting = Some(("ErrImageNeverPull".into(), message));
        state.containers.insert(c.name.clone(), record);
        *wake = Some(now.checked_add(SignedDuration::from_secs(10)).unwrap_or(now));
        return None;
    }
    // Upstream's image pull back-off: a failed pull is retried after 10 s doubling to 5 min;
    // meanwhile the container waits in ImagePullBackOff.
    if let Some(until) = record.pull_backoff_until
        && until > now
    {
        if record.waiting.as_ref().is_none_or(|(r, _)| r != "ImagePullBackOff") {
            node.events.record(
                pod,
                EventType::Normal,
                "BackOff",
                format!("Back-off pulling image \"{image}\""),
            );
        }
        record.waiting =
            Some(("ImagePullBackOff".into(), format!("Back-off pulling image \"{image}\"")));
        state.containers.insert(c.name.clone(), record);
        *wake = Some(wake.map_or(until, |w| w.min(until)));
        return None;
    }
    if let Err(e) = node.runtime.pull_image(&image).await {
        let message = format!("Failed to pull image \"{image}\": {e}");
        node.events.record(pod, EventType::Warning, "Failed", message.clone());
        node.events.record(pod, EventType::Warning, "Failed", "Error: ErrImagePull".to_owned());
        record.pull_backoff = if record.pull_backoff.is_zero() {
            BACKOFF_INITIAL
        } else {
            (record.pull_backoff * 2).min(BACKOFF_MAX)
        };
        let until = now
            .checked_add(
                SignedDuration::try_from(record.pull_backoff).unwrap_or(SignedDuration::MAX),
            )
            .unwrap_or(now);
        record.pull_backoff_until = Some(until);
        record.waiting = Some(("ErrImagePull".into(), message));
        state.containers.insert(c.name.clone(), record);
        *wake = Some(wake.map_or(until, |w| w.min(until)));
        return None;
    }
    record.pull_backoff = Duration::ZERO;
    record.pull_backoff_until = None;
    let config = match container_config(node, pod, state, c, record.restarts).await {
        Ok(config) => config,
        Err(message) => {
            if record.waiting.as_ref().is_none_or(|(_, m)| m != &message) {
                node.events.record(pod, EventType::Warning, "Failed", format!("Error: {message}"));
            }
            record.waiting = Some(("CreateContainerConfigError".into(), message));
            state.containers.insert(c.name.clone(), record);
            *wake = Some(now.checked_add(SignedDuration::from_secs(10)).unwrap_or(now));
            return None;
        }
    };
    let started = match node.runtime.create_container(sandbox, &config).await {
        Ok(id) => {
            record.id = Some(id.clone());
            node.runtime.start_container(&id).await.map(|()| id)
        }
        Err(e) => Err(e),
    };
    match started {
        Ok(id) => {
            record.waiting = None;
            node.events.record(
                pod,
                EventType::Normal,
                "Created",
                format!("Created container: {}", c.name),
            );
            node.events.record(
                pod,
                EventType::Normal,
                "Started",
                format!("Started container {}", c.name),
            );
            // postStart runs right after the start; if it fails the container is killed
            // (and restarted per the policy), as upstream does.
            if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
                let grace = grace_period(pod);
                if let Err(message) =
                    run_hook(node, c, &id, hook, &state.ips, &pod.annotations().clone(), grace)
                        .await
                {
                    node.events.record(
                        pod,
                        EventType::Warning,
                        "FailedPostStartHook",
                        format!("PostStartHook failed: {message}"),
                    );
                    let _ = node.runtime.stop_container(&id, grace).await;
                }
            }
            let status = node.runtime.container_status(&id).await.ok();
            state.containers.insert(c.name.clone(), record);
            status
        }
        Err(e) => {
            let reason = match e {
                RuntimeError::ImagePull(_) => "ErrImagePull",
                _ => "CreateContainerError",
            };
            record.waiting = Some((reason.into(), e.to_string()));
            state.containers.insert(c.name.clone(), record);
            *wake = Some(now.checked_add(SignedDuration::from_secs(10)).unwrap_or(now));
            None
        }
    }
}

/// Runs the container's due probes; a failed startup or liveness probe kills the container
/// (the next sync restarts it per the restart policy).
async fn run_probes(
    node: &NodeHandle,
    pod: &Pod,
    state: &mut PodState,
    c: &Container,
    now: Timestamp,
    wake: &mut Option<Timestamp>,
) {
    let Some(record) = state.containers.get_mut(&c.name) else { return };
    let Some(id) = record.id.clone() else { return };
    let Ok(status) = node.runtime.container_status(&id).await else { return };
    let ContainerState::Running { started_at } = status.state else {
        record.started = false;
        record.ready = false;
        return;
    };
    if record.probed.as_deref() != Some(id.as_str()) {
        record.probers = Prober::for_container(c, started_at);
        record.probed = Some(id.clone());
    }
    let annotations = pod.annotations().clone();
    let mut kill = None;
    for i in 0..record.probers.len() {
        let startup_done =
            record.probers.iter().all(|p| p.kind != ProbeKind::Startup || p.healthy());
        let prober = &record.probers[i];
        let active = match prober.kind {
            ProbeKind::Startup => !prober.healthy(),
            _ => startup_done,
        };
        if !active {
            continue;
        }
        if prober.due(now) {
            let request = ProbeRequest {
                kind: prober.kind,
                container_name: &c.name,
                container_id: &id,
                probe: &prober.probe,
                pod_ips: &state.ips,
                container_ports: c.ports.as_deref().unwrap_or_default(),
                timeout: prober.timeout(),
                pod_annotations: &annotations,
            };
            let result = node.runtime.probe(&request).await;
            let kind = prober.kind;
            if let ProbeResult::Failure(message) = &result {
                node.events.record(
                    pod,
                    EventType::Warning,
                    "Unhealthy",
                    format!("{} probe failed: {message}", kind.title()),
                );
            }
            let verdict = record.probers[i].record(result == ProbeResult::Success, now);
            if verdict == Verdict::Unhealthy && kind != ProbeKind::Readiness {
                kill = Some(kind);
            }
        }
        let next = record.probers[i].next();
        *wake = Some(wake.map_or(next, |w| w.min(next)));
    }
    let started = record.probers.iter().all(|p| p.kind != ProbeKind::Startup || p.healthy());
    record.started = started;
    record.ready =
        started && record.probers.iter().all(|p| p.kind != ProbeKind::Readiness || p.healthy());
    if let Some(kind) = kill {
        node.events.record(
            pod,
            EventType::Normal,
            "Killing",
            format!("Container {} failed {} probe, will be restarted", c.name, kind.as_str()),
        );
        record.ready = false;
        let grace =
            pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
        let _ = node
            .runtime
            .stop_container(&id, Duration::from_secs(u64::try_from(grace).unwrap_or(0)))
            .await;
        // Restart (or not) at once, per the restart policy.
        *wake = Some(now);
    }
}

fn time(t: Timestamp) -> String {
    t.round(k8s_openapi::jiff::Unit::Second).unwrap_or(t).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn state_json(status: &ContainerStatus) -> Value {
    match &status.state {
        ContainerState::Created => json!({"waiting": {"reason": "ContainerCreating"}}),
        ContainerState::Running { started_at } => {
            json!({"running": {"startedAt": time(*started_at)}})
        }
        ContainerState::Exited { started_at, finished_at, exit_code, reason, message } => {
            let mut t = json!({
                "exitCode": exit_code,
                "reason": reason,
                "finishedAt": time(*finished_at),
                "containerID": status.id,
            });
            if let Some(s) = started_at {
                t["startedAt"] = json!(time(*s));
            }
            if let Some(m) = message {
                t["message"] = json!(m);
            }
            json!({"terminated": t})
        }
    }
}

/// The statuses of `containers` as the API shows them, with counts for the phase.
async fn container_statuses(
    node: &NodeHandle,
    state: &PodState,
    containers: &[Container],
) -> (Vec<Value>, Counts) {
    let mut out = Vec::new();
    let mut counts = Counts::default();
    for c in containers {
        let record = state.containers.get(&c.name);
        let current = match record.and_then(|r| r.id.as_ref()) {
            Some(id) => node.runtime.container_status(id).await.ok(),
            None => None,
        };
        let waiting = record.and_then(|r| r.waiting.clone());
        let mut s = json!({
            "name": c.name,
            "image": c.image,
            "imageID": current.as_ref().map(|s| s.image_ref.clone()).unwrap_or_default(),
            "restartCount": record.map_or(0, |r| r.restarts),
            "ready": false,
            "started": false,
        });
        let last = record.and_then(|r| r.last_exit.as_ref());
        match (&current, &waiting) {
            (_, Some((reason, message))) => {
                s["state"] = json!({"waiting": {"reason": reason, "message": message}});
                if last.is_some() {
                    counts.stopped += 1
                } else {
                    counts.waiting += 1
                }
                if let Some(last) = last {
                    s["lastState"] = state_json(last);
                }
            }
            (Some(cur), None) => {
                s["containerID"] = json!(cur.id);
                s["state"] = state_json(cur);
                match &cur.state {
                    ContainerState::Running { .. } => {
                        counts.running += 1;
                        s["ready"] = json!(record.is_some_and(|r| r.ready));
                        s["started"] = json!(record.is_some_and(|r| r.started));
                    }
                    ContainerState::Exited { exit_code, .. } => {
                        counts.stopped += 1;
                        if *exit_code == 0 {
                            counts.succeeded += 1
                        }
                    }
                    ContainerState::Created => counts.waiting += 1,
                }
                if let Some(last) = last.filter(|l| l.id != cur.id) {
                    s["lastState"] = state_json(last);
                }
            }
            (None, None) => {
                s["state"] = json!({"waiting": {"reason": "ContainerCreating"}});
                counts.waiting += 1;
            }
        }
        if s.get("lastState").is_none() {
            s["lastState"] = json!({});
        }
        out.push(s);
    }
    (out, counts)
}

#[derive(Debug, Default)]
struct Counts {
    running: usize,
    waiting: usize,
    stopped: usize,
    succeeded: usize,
}

/// Upstream's `getPhase` for the regular containers.
fn phase(
    policy: &str,
    initialized: bool,
    init_failed: bool,
    counts: &Counts,
    total: usize,
) -> &'static str {
    if init_failed {
        return "Failed";
    }
    if !initialized || counts.waiting > 0 {
        return "Pending";
    }
    if counts.running > 0 {
        return "Running";
    }
    if counts.stopped == total && total > 0 {
        return match policy {
            "Always" => "Running",
            _ if counts.succeeded == total => "Succeeded",
            "OnFailure" => "Running",
            _ => "Failed",
        };
    }
    "Pending"
}

fn condition(
    pod: &Pod,
    type_: &str,
    status: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: Timestamp,
) -> Value {
    let status = if status { "True" } else { "False" };
    let previous = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == type_));
    let transition = match previous {
        Some(p) if p.status == status => p.last_transition_time.as_ref().map(|t| time(t.0)),
        _ => None,
    }
    .unwrap_or_else(|| time(now));
    let mut c = json!({"type": type_, "status": status, "lastProbeTime": null, "lastTransitionTime": transition});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    c
}

async fn post_status(
    node: &NodeHandle,
    pod: &Pod,
    state: &mut PodState,
    spec: &k8s_openapi::api::core::v1::PodSpec,
    now: Timestamp,
) {
    let status = build_status(node, pod, state, spec, now).await;
    if state.posted.as_ref() == Some(&status) {
        return;
    }
    let patch = json!({"metadata": {"uid": pod.uid()}, "status": status});
    let api: Api<Pod> = Api::namespaced(node.client.clone(), &pod.namespace().unwrap_or_default());
    match api
        .patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(&patch))
        .await
    {
        Ok(_) => state.posted = Some(status),
        Err(e) => tracing::debug!(pod = %pod.name_any(), error = %e, "cannot post pod status"),
    }
}

async fn build_status(
    node: &NodeHandle,
    pod: &Pod,
    state: &PodState,
    spec: &k8s_openapi::api::core::v1::PodSpec,
    now: Timestamp,
) -> Value {
    let policy = restart_policy(pod);
    let init: Vec<Container> = spec.init_containers.clone().unwrap_or_default();
    let (init_statuses, _) = container_statuses(node, state, &init).await;
    let init_done =
        init_statuses.iter().all(|s| s.pointer("/state/terminated/exitCode") == Some(&json!(0)));
    let init_failed = policy == "Never"
        && init_statuses
            .iter()
            .any(|s| s.pointer("/state/terminated/exitCode").is_some_and(|c| c != &json!(0)));
    let (statuses, counts) = container_statuses(node, state, &spec.containers).await;
    let phase = phase(policy, init_done, init_failed, &counts, spec.containers.len());
    let unready: Vec<String> = statuses
        .iter()
        .filter(|s| s["ready"] != true)
        .filter_map(|s| s["name"].as_str().map(str::to_owned))
        .collect();
    let ready = unready.is_empty() && phase == "Running";
    let not_ready_message = format!("containers with unready status: [{}]", unready.join(" "));
    let pending_init: Vec<String> = init_statuses
        .iter()
        .filter(|s| s.pointer("/state/terminated/exitCode") != Some(&json!(0)))
        .filter_map(|s| s["name"].as_str().map(str::to_owned))
        .collect();
    let mut conditions = vec![
        condition(pod, "PodReadyToStartContainers", state.sandbox.is_some(), None, None, now),
        condition(
            pod,
            "Initialized",
            init_done,
            (!init_done).then_some("ContainersNotInitialized"),
            (!init_done).then(|| {
                format!("containers with incomplete status: [{}]", pending_init.join(" "))
            }),
            now,
        ),
        condition(
            pod,
            "Ready",
            ready,
            (!ready).then_some("ContainersNotReady"),
            (!ready).then(|| not_ready_message.clone()),
            now,
        ),
        condition(
            pod,
            "ContainersReady",
            ready,
            (!ready).then_some("ContainersNotReady"),
            (!ready).then(|| not_ready_message.clone()),
            now,
        ),
    ];
    conditions.push(condition(pod, "PodScheduled", true, None, None, now));
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": node.host_ip,
        "hostIPs": [{"ip": node.host_ip}],
        "startTime": state.start_time.map(time),
        "containerStatuses": statuses,
    });
    if !init.is_empty() {
        status["initContainerStatuses"] = json!(init_statuses);
    }
    if let Some(ip) = state.ips.first() {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!(state.ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>());
    }
    // Null clears a message an earlier status posted (the status is a merge patch).
    status["message"] = match &state.sandbox_error {
        Some(e) => json!(format!("Failed to create pod sandbox: {e}")),
        None => Value::Null,
    };
    status
}

fn grace_period(pod: &Pod) -> Duration {
    let seconds = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

/// Runs a lifecycle hook (exec in the container, httpGet or tcpSocket against the pod, or
/// sleep) within `timeout`; the failure message when it fails.
async fn run_hook(
    node: &NodeHandle,
    c: &Container,
    container_id: &str,
    hook: &k8s_openapi::api::core::v1::LifecycleHandler,
    pod_ips: &[String],
    annotations: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(sleep) = &hook.sleep {
        let seconds = u64::try_from(sleep.seconds).unwrap_or(0);
        tokio::time::sleep(Duration::from_secs(seconds).min(timeout)).await;
        return Ok(());
    }
    // A hook is a probe's action run once.
    let probe = k8s_openapi::api::core::v1::Probe {
        exec: hook.exec.clone(),
        http_get: hook.http_get.clone(),
        tcp_socket: hook.tcp_socket.clone(),
        ..Default::default()
    };
    let request = ProbeRequest {
        kind: ProbeKind::Liveness,
        container_name: &c.name,
        container_id,
        probe: &probe,
        pod_ips,
        container_ports: c.ports.as_deref().unwrap_or_default(),
        timeout,
        pod_annotations: annotations,
    };
    match tokio::time::timeout(timeout, node.runtime.probe(&request)).await {
        Ok(ProbeResult::Success) => Ok(()),
        Ok(ProbeResult::Failure(message)) => Err(message),
        Err(_) => Err(format!("the hook did not finish within {}s", timeout.as_secs())),
    }
}

/// Stops the pod (its grace period given to the runtime), posts the final status and deletes it
/// from the API with grace 0.
async fn terminate(node: &NodeHandle, pod: &Pod, state: &mut PodState) {
    tracing::info!(pod = %pod.name_any(), namespace = ?pod.namespace(), "killing the pod");
    let grace = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30);
    let timeout = Duration::from_secs(u64::try_from(grace).unwrap_or(0));
    let deadline = tokio::time::Instant::now() + timeout;
    // preStop hooks first, all at once, within the grace period; the containers get what is
    // left of it.
    let spec = pod.spec.clone().unwrap_or_default();
    let annotations = pod.annotations().clone();
    let hooks = spec.containers.iter().filter_map(|c| {
        let hook = c.lifecycle.as_ref()?.pre_stop.as_ref()?;
        let record = state.containers.get(&c.name)?;
        let id = record.id.clone()?;
        Some((c, id, hook))
    });
    let runs = hooks.map(|(c, id, hook)| {
        let (ips, annotations) = (&state.ips, &annotations);
        async move {
            if let Err(message) = run_hook(node, c, &id, hook, ips, annotations, timeout).await {
                node.events.record(
                    pod,
                    EventType::Warning,
                    "FailedPreStopHook",
                    format!("PreStopHook failed: {message}"),
                );
            }
        }
    });
    let _ = tokio::time::timeout_at(deadline, futures::future::join_all(runs)).await;
    let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
    let ids: Vec<String> = state.containers.values().filter_map(|r| r.id.clone()).collect();
    for (name, record) in &state.containers {
        if record.id.is_some() {
            node.events.record(
                pod,
                EventType::Normal,
                "Killing",
                format!("Stopping container {name}"),
            );
        }
    }
    futures::future::join_all(ids.iter().map(|id| node.runtime.stop_container(id, timeout))).await;
    for record in state.containers.values_mut() {
        record.waiting = None;
        record.backoff_until = None;
    }
    if let Some(sandbox) = &state.sandbox {
        let _ = node.runtime.stop_pod_sandbox(sandbox).await;
    }
    let spec = pod.spec.clone().unwrap_or_default();
    post_status(node, pod, state, &spec, Timestamp::now()).await;
    cleanup(node, state).await;
    let api: Api<Pod> = Api::namespaced(node.client.clone(), &pod.namespace().unwrap_or_default());
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions { uid: pod.uid(), resource_version: None }),
        ..DeleteParams::default()
    };
    match api.delete(&pod.name_any(), &params).await {
        Ok(_) => tracing::info!(pod = %pod.name_any(), "pod killed and removed"),
        Err(e) => {
            tracing::info!(pod = %pod.name_any(), error = %e, "cannot finish the pod's deletion")
        }
    }
}

/// Refuses a pod the node cannot take (upstream's admission failure): the pod fails with the
/// rejection's reason, never starting.
pub async fn reject(node: Arc<NodeHandle>, pod: Arc<Pod>, reason: String, message: String) {
    node.events.record(pod.as_ref(), EventType::Warning, &reason, message.clone());
    let patch = json!({"metadata": {"uid": pod.uid()}, "status": {
        "phase": "Failed",
        "reason": reason,
        "message": format!("Pod was rejected: {message}"),
    }});
    let api: Api<Pod> = Api::namespaced(node.client.clone(), &pod.namespace().unwrap_or_default());
    if let Err(e) =
        api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(&patch)).await
    {
        tracing::debug!(pod = %pod.name_any(), error = %e, "cannot post the rejection");
    }
}

/// Removes the pod's containers and sandbox from the runtime.
async fn cleanup(node: &NodeHandle, state: &mut PodState) {
    for record in state.containers.values_mut() {
        if let Some(id) = record.id.take() {
            let _ = node.runtime.stop_container(&id, Duration::ZERO).await;
            let _ = node.runtime.remove_container(&id).await;
        }
    }
    if let Some(sandbox) = state.sandbox.take() {
        let _ = node.runtime.stop_pod_sandbox(&sandbox).await;
        let _ = node.runtime.remove_pod_sandbox(&sandbox).await;
    }
    if let (Some(root), Some(uid)) = (&node.root_dir, &state.uid) {
        crate::volumes::teardown(root, uid).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_follow_upstream() {
        let c =
            |running, waiting, stopped, succeeded| Counts { running, waiting, stopped, succeeded };
        assert_eq!(phase("Always", true, false, &c(1, 0, 0, 0), 1), "Running");
        assert_eq!(phase("Always", true, false, &c(0, 1, 0, 0), 1), "Pending");
        assert_eq!(phase("Always", false, false, &c(0, 0, 0, 0), 1), "Pending");
        // A crash-looping container under Always keeps the pod Running.
        assert_eq!(phase("Always", true, false, &c(0, 0, 1, 0), 1), "Running");
        assert_eq!(phase("Never", true, false, &c(0, 0, 2, 2), 2), "Succeeded");
        assert_eq!(phase("Never", true, false, &c(0, 0, 2, 1), 2), "Failed");
        assert_eq!(phase("OnFailure", true, false, &c(0, 0, 1, 0), 1), "Running");
        assert_eq!(phase("Never", false, true, &c(0, 0, 0, 0), 1), "Failed");
    }
}
