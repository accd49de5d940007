//! The fake runtime behind hollow nodes and tests: sandboxes get IPs from the node's pod CIDR,
//! containers start at once and run until stopped — unless the pod's annotations script
//! otherwise:
//!
//! - `fake.krust.dev/exit-<container>: "<code>"` or `"<code>@<seconds>"`: the container exits
//!   with `<code>` that many seconds after each start (0 when left out);
//! - `fake.krust.dev/pull-error: "<message>"`: every image pull of the pod fails;
//! - `fake.krust.dev/<startup|liveness|readiness>-<container>: "fail"`: that probe fails (the
//!   annotation can be changed on a running pod to flip it).

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::runtime::{
    ContainerConfig, ContainerState, ContainerStatus, ProbeRequest, ProbeResult, Runtime,
    RuntimeError, RuntimeResult, SandboxConfig, SandboxStatus,
};

pub const EXIT_ANNOTATION_PREFIX: &str = "fake.krust.dev/exit-";
pub const PULL_ERROR_ANNOTATION: &str = "fake.krust.dev/pull-error";

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    /// The node's pod range: network address and prefix length.
    cidr: Option<(u32, u8)>,
    used_ips: BTreeSet<u32>,
    sandboxes: HashMap<String, Sandbox>,
    containers: HashMap<String, Container>,
}

#[derive(Debug)]
struct Sandbox {
    ip: Option<u32>,
    ready: bool,
    pull_error: Option<String>,
}

#[derive(Debug)]
struct Container {
    name: String,
    image: String,
    state: ContainerState,
    /// Scripted exit: code and seconds after start.
    exit: Option<(i32, i64)>,
}

/// One node's fake runtime.
#[derive(Debug, Default)]
pub struct FakeRuntime {
    state: Mutex<State>,
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next free address of the node's range (skipping the network address and the
    /// gateway `.1`, as the bridge plugin does).
    fn allocate_ip(state: &mut State) -> Option<u32> {
        let (base, prefix) = state.cidr?;
        let size = 1u64 << (32 - u32::from(prefix.min(31)));
        (2..size.saturating_sub(1))
            .filter_map(|offset| u32::try_from(offset).ok())
            .map(|offset| base + offset)
            .find(|ip| !state.used_ips.contains(ip))
            .inspect(|ip| {
                state.used_ips.insert(*ip);
            })
    }

    fn id(state: &mut State, kind: &str) -> String {
        state.next_id += 1;
        format!("fake-{kind}-{:08x}", state.next_id)
    }

    /// A scripted container's state as of now.
    fn settle(container: &mut Container, now: Timestamp) {
        if let (ContainerState::Running { started_at }, Some((code, after))) =
            (&container.state, container.exit)
        {
            let ends = started_at.checked_add(SignedDuration::from_secs(after)).unwrap_or(now);
            if ends <= now {
                container.state = ContainerState::Exited {
                    started_at: Some(*started_at),
                    finished_at: ends,
                    exit_code: code,
                    reason: if code == 0 { "Completed" } else { "Error" }.into(),
                    message: None,
                };
            }
        }
    }
}

fn parse_exit(script: &str) -> Option<(i32, i64)> {
    let (code, after) = script.split_once('@').unwrap_or((script, "0"));
    Some((code.trim().parse().ok()?, after.trim().parse().ok()?))
}

#[async_trait::async_trait]
impl Runtime for FakeRuntime {
    fn version(&self) -> String {
        format!("fake://{}", env!("CARGO_PKG_VERSION"))
    }

    async fn update_pod_cidr(&self, cidr: &str) -> RuntimeResult<()> {
        let (address, prefix) =
            cidr.split_once('/').ok_or_else(|| RuntimeError::Failed(format!("bad CIDR {cidr}")))?;
        let address: Ipv4Addr =
            address.parse().map_err(|_| RuntimeError::Failed(format!("bad CIDR {cidr}")))?;
        let prefix: u8 =
            prefix.parse().map_err(|_| RuntimeError::Failed(format!("bad CIDR {cidr}")))?;
        self.lock().cidr = Some((u32::from(address), prefix.min(32)));
        Ok(())
    }

    async fn pull_image(&self, image: &str) -> RuntimeResult<String> {
        Ok(format!("{image}@sha256:{:064x}", image.len()))
    }

    async fn run_pod_sandbox(&self, config: &SandboxConfig) -> RuntimeResult<SandboxStatus> {
        let mut state = self.lock();
        let ip = if config.host_network { None } else { Self::allocate_ip(&mut state) };
        if !config.host_network && ip.is_none() {
            return Err(RuntimeError::Failed(
                "failed to set up the pod network: no pod CIDR or no free address".into(),
            ));
        }
        let id = Self::id(&mut state, "sandbox");
        let pull_error = config.annotations.get(PULL_ERROR_ANNOTATION).cloned();
        state.sandboxes.insert(id.clone(), Sandbox { ip, ready: true, pull_error });
        Ok(SandboxStatus {
            id,
            ips: ip.map(|ip| IpAddr::V4(Ipv4Addr::from(ip))).into_iter().collect(),
            ready: true,
        })
    }

    async fn stop_pod_sandbox(&self, id: &str) -> RuntimeResult<()> {
        let mut state = self.lock();
        let sandbox =
            state.sandboxes.get_mut(id).ok_or_else(|| RuntimeError::NotFound(id.to_owned()))?;
        sandbox.ready = false;
        if let Some(ip) = sandbox.ip.take() {
            state.used_ips.remove(&ip);
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> RuntimeResult<()> {
        let mut state = self.lock();
        if let Some(sandbox) = state.sandboxes.remove(id)
            && let Some(ip) = sandbox.ip
        {
            state.used_ips.remove(&ip);
        }
        Ok(())
    }

    async fn create_container(
        &self,
        sandbox: &str,
        config: &ContainerConfig,
    ) -> RuntimeResult<String> {
        let mut state = self.lock();
        let pod = state
            .sandboxes
            .get(sandbox)
            .ok_or_else(|| RuntimeError::NotFound(sandbox.to_owned()))?;
        if let Some(message) = &pod.pull_error {
            return Err(RuntimeError::ImagePull(message.clone()));
        }
        let exit = config
            .pod_annotations
            .get(&format!("{EXIT_ANNOTATION_PREFIX}{}", config.name))
            .and_then(|s| parse_exit(s));
        let id = Self::id(&mut state, "container");
        state.containers.insert(
            id.clone(),
            Container {
                name: config.name.clone(),
                image: config.image.clone(),
                state: ContainerState::Created,
                exit,
            },
        );
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> RuntimeResult<()> {
        let mut state = self.lock();
        let c =
            state.containers.get_mut(id).ok_or_else(|| RuntimeError::NotFound(id.to_owned()))?;
        c.state = ContainerState::Running { started_at: Timestamp::now() };
        Ok(())
    }

    async fn stop_container(&self, id: &str, _timeout: Duration) -> RuntimeResult<()> {
        let now = Timestamp::now();
        let mut state = self.lock();
        let c =
            state.containers.get_mut(id).ok_or_else(|| RuntimeError::NotFound(id.to_owned()))?;
        Self::settle(c, now);
        if let ContainerState::Running { started_at } = c.state {
            // Stopped by the polite signal: exit code 0 for the fake's well-behaved processes.
            c.state = ContainerState::Exited {
                started_at: Some(started_at),
                finished_at: now,
                exit_code: 0,
                reason: "Completed".into(),
                message: None,
            };
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> RuntimeResult<()> {
        self.lock().containers.remove(id);
        Ok(())
    }

    async fn container_status(&self, id: &str) -> RuntimeResult<ContainerStatus> {
        let now = Timestamp::now();
        let mut state = self.lock();
        let c =
            state.containers.get_mut(id).ok_or_else(|| RuntimeError::NotFound(id.to_owned()))?;
        Self::settle(c, now);
        Ok(ContainerStatus {
            id: format!("fake://{id}"),
            name: c.name.clone(),
            image: c.image.clone(),
            image_ref: format!("{}@sha256:{:064x}", c.image, c.image.len()),
            state: c.state.clone(),
        })
    }

    async fn probe(&self, request: &ProbeRequest<'_>) -> ProbeResult {
        let kind = request.kind.as_str();
        let key = format!("fake.krust.dev/{kind}-{}", request.container_name);
        match request.pod_annotations.get(&key).map(String::as_str) {
            Some("fail") => ProbeResult::Failure(format!("fake {kind} probe failed")),
            _ => ProbeResult::Success,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sandboxes_get_distinct_addresses_from_the_node_range() {
        let rt = FakeRuntime::new();
        let config = SandboxConfig::default();
        assert!(rt.run_pod_sandbox(&config).await.is_err(), "no range yet");
        rt.update_pod_cidr("10.42.3.0/30").await.expect("cidr");
        let a = rt.run_pod_sandbox(&config).await.expect("a");
        assert_eq!(a.ips, [IpAddr::V4(Ipv4Addr::new(10, 42, 3, 2))]);
        assert!(rt.run_pod_sandbox(&config).await.is_err(), "a /30 holds one pod");
        rt.stop_pod_sandbox(&a.id).await.expect("stop");
        let b = rt.run_pod_sandbox(&config).await.expect("b");
        assert_eq!(b.ips, a.ips, "freed addresses come back");
    }

    #[tokio::test]
    async fn scripted_containers_exit_with_their_code() {
        let rt = FakeRuntime::new();
        rt.update_pod_cidr("10.42.0.0/24").await.expect("cidr");
        let sandbox = rt.run_pod_sandbox(&SandboxConfig::default()).await.expect("sandbox");
        let mut config =
            ContainerConfig { name: "app".into(), image: "busybox".into(), ..Default::default() };
        config.pod_annotations.insert(format!("{EXIT_ANNOTATION_PREFIX}app"), "3".into());
        let id = rt.create_container(&sandbox.id, &config).await.expect("create");
        rt.start_container(&id).await.expect("start");
        let status = rt.container_status(&id).await.expect("status");
        assert!(
            matches!(status.state, ContainerState::Exited { exit_code: 3, ref reason, .. } if reason == "Error"),
            "{status:?}"
        );
        config.pod_annotations.clear();
        let id = rt.create_container(&sandbox.id, &config).await.expect("create");
        rt.start_container(&id).await.expect("start");
        assert!(matches!(
            rt.container_status(&id).await.expect("status").state,
            ContainerState::Running { .. }
        ));
    }
}
