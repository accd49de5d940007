//! Real nodes in tests: a network namespace of the test's own (so the pod bridge, routes and
//! iptables rules live and die with it) and a `krust agent` on real containerd whose
//! containers, shims and cgroups are all removed when it is dropped — also when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::KrustServer;

pub use krust_kubelet::netns::NetNs;

/// Where `scripts/images.sh` put the node images (busybox, pause).
pub fn images_dir() -> PathBuf {
    crate::tools_bin().join("../images")
}

/// `krust agent` on real containerd (its own, under the server's data dir), its pods' cgroups
/// under a cgroup of the test's own. Dropping it deletes the pods it still runs, stops the
/// agent, then kills and removes whatever is left: container processes, shims, cgroups,
/// mounts.
#[derive(Debug)]
pub struct RealNode {
    child: Option<Child>,
    kubeconfig: PathBuf,
    node: String,
    data_dir: PathBuf,
    cgroup_root: String,
}

impl RealNode {
    /// Starts the agent for node `node`; fails at once unless root with containerd installed.
    pub fn start(
        binary: impl AsRef<Path>,
        server: &KrustServer,
        node: &str,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            rustix::process::geteuid().is_root(),
            "real nodes need root (containerd, runc, CNI)"
        );
        let images = images_dir();
        anyhow::ensure!(
            images.join("busybox.tar").exists() && images.join("pause.tar").exists(),
            "{} has no busybox.tar/pause.tar: run scripts/images.sh",
            images.display()
        );
        let data_dir = server.data_dir().join(format!("agent-{node}"));
        std::fs::create_dir_all(&data_dir)?;
        let cgroup_root = format!("/krust-test-{}-{node}", std::process::id());
        let log = std::fs::File::create(data_dir.join("agent.log"))?;
        let child = Command::new(binary.as_ref())
            .arg("agent")
            .arg("--kubeconfig")
            .arg(server.kubeconfig())
            .args(["--node-name", node, "--node-ip", "127.0.0.1"])
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--images-dir")
            .arg(&images)
            .arg("--pod-logs-dir")
            .arg(data_dir.join("pod-logs"))
            .args(["--cgroup-root", &cgroup_root, "--kubelet-port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        Ok(Self {
            child: Some(child),
            kubeconfig: server.kubeconfig().to_owned(),
            node: node.to_owned(),
            data_dir,
            cgroup_root,
        })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("agent.log")).unwrap_or_default()
    }

    /// containerd's log.
    pub fn runtime_log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("containerd/containerd.log")).unwrap_or_default()
    }

    /// The agent's containerd socket (for `ctr`).
    pub fn runtime_socket(&self) -> PathBuf {
        self.data_dir.join("containerd/containerd.sock")
    }

    /// The processes of the node's pods (containers and sandboxes).
    pub fn pod_processes(&self) -> Vec<u32> {
        cgroup_processes(&self.cgroup_root)
    }

    /// Kills the agent (SIGKILL, as a crash): containerd stays, containers keep running.
    pub fn kill_agent(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends the agent SIGTERM and waits for it to stop.
    pub fn stop_agent(&mut self, timeout: Duration) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = Instant::now() + timeout;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the agent again on the same state (after [`RealNode::kill_agent`]).
    pub fn restart_agent(&mut self, binary: impl AsRef<Path>) -> anyhow::Result<()> {
        self.stop_agent(Duration::from_secs(10));
        let log = std::fs::OpenOptions::new().append(true).open(self.data_dir.join("agent.log"))?;
        self.child = Some(
            Command::new(binary.as_ref())
                .arg("agent")
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(["--node-name", &self.node, "--node-ip", "127.0.0.1"])
                .arg("--data-dir")
                .arg(&self.data_dir)
                .arg("--images-dir")
                .arg(images_dir())
                .arg("--pod-logs-dir")
                .arg(self.data_dir.join("pod-logs"))
                .args(["--cgroup-root", &self.cgroup_root, "--kubelet-port", "0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()?,
        );
        Ok(())
    }

    fn teardown(&mut self) {
        // 1. Let the kubelet remove what it runs: sandboxes torn down through CNI.
        if self.child.is_some() {
            let kubectl = crate::tool("kubectl-1.33");
            let _ = Command::new(kubectl)
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(["delete", "pods", "--all", "--all-namespaces", "--grace-period=1"])
                .args(["--field-selector", &format!("spec.nodeName={}", self.node)])
                .args(["--wait=false"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            // The kubelet deletes a pod from the API once its sandbox is gone.
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                let left = Command::new(crate::tool("kubectl-1.33"))
                    .arg("--kubeconfig")
                    .arg(&self.kubeconfig)
                    .args(["get", "pods", "--all-namespaces", "-o", "name"])
                    .args(["--field-selector", &format!("spec.nodeName={}", self.node)])
                    .output();
                if left.is_ok_and(|o| o.status.success() && o.stdout.is_empty()) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        // 2. Stop the agent (it stops its containerd).
        self.stop_agent(Duration::from_secs(15));
        // 3. Whatever is left: containers, shims, containerd, cgroups, mounts.
        krust_kubelet::cleanup::force(&self.data_dir, &self.cgroup_root);
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn cgroup_processes(cgroup: &str) -> Vec<u32> {
    krust_kubelet::cgroups::processes(cgroup)
}
