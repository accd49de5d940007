//! Node controllers inside `krust server`, driven with real kubectl: every node gets its own
//! pod range; a node whose heartbeats (its Lease in `kube-node-lease`) stop is marked Unknown
//! and tainted unreachable, its pods are evicted once their `tolerationSeconds` pass and the
//! ReplicaSet replaces them on a healthy node; a pod bound to a node that no longer exists is
//! garbage collected. The test plays the kubelets' part by renewing Leases. Every wait polls
//! with a deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use krust_testsupport::KrustServer;
use serde_json::json;

const KUBECTL: &str = "1.33";

fn wait_for<T>(
    server: &KrustServer,
    deadline: Duration,
    what: &str,
    check: impl FnMut() -> Option<T>,
) -> T {
    server.wait_for(deadline, what, check)
}

fn now_micro() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    now.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

fn now_seconds() -> String {
    k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A Ready node with room for pods, and its Lease.
fn create_node(server: &KrustServer, name: &str) {
    let resources = json!({"cpu": "4", "memory": "8Gi", "pods": "110"});
    let now = now_micro();
    server.create(KUBECTL, &json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {
                "capacity": resources, "allocatable": resources,
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                    "message": "kubelet is posting ready status", "lastHeartbeatTime": now_seconds(), "lastTransitionTime": now_seconds()}],
            },
        })).expect("kubectl create");
    server
        .create(
            KUBECTL,
            &json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now},
            }),
        )
        .expect("kubectl create");
}

/// Renews `node`'s Lease every second until `stop`, as a kubelet does (every 10 s upstream).
fn heartbeat(
    server: &KrustServer,
    node: &str,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let kubeconfig = server.kubeconfig().to_owned();
    let bin = krust_testsupport::tool(&format!("kubectl-{KUBECTL}"));
    let node = node.to_owned();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let patch = json!({"spec": {"renewTime": now_micro()}}).to_string();
            let _ = std::process::Command::new(&bin)
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args([
                    "-n",
                    "kube-node-lease",
                    "patch",
                    "lease",
                    &node,
                    "--type=merge",
                    "-p",
                    &patch,
                ])
                .output();
            std::thread::sleep(Duration::from_secs(1));
        }
    })
}

fn taints(server: &KrustServer, node: &str) -> Vec<(String, String)> {
    server.get_json(KUBECTL, &["get", "node", node]).expect("kubectl get")["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| {
            (
                t["key"].as_str().unwrap_or_default().to_owned(),
                t["effect"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
#[ignore = "end-to-end: real krust server and kubectl; waits out a node grace period"]
fn pods_leave_a_silent_node_after_their_toleration_and_come_back_elsewhere() {
    let server =
        KrustServer::start(env!("CARGO_BIN_EXE_krust"), &["--node-monitor-grace-period", "4s"])
            .expect("server starts");
    let stop = Arc::new(AtomicBool::new(false));
    create_node(&server, "n1");
    create_node(&server, "n2");
    let beats = [heartbeat(&server, "n1", stop.clone()), heartbeat(&server, "n2", stop.clone())];

    // Node IPAM: two distinct ranges from the cluster CIDR.
    let cidrs = wait_for(&server, Duration::from_secs(30), "pod CIDRs", || {
        let a = server.get_json(KUBECTL, &["get", "node", "n1"]).expect("kubectl get")["spec"]["podCIDR"]
            .as_str()
            .map(str::to_owned)?;
        let b = server.get_json(KUBECTL, &["get", "node", "n2"]).expect("kubectl get")["spec"]["podCIDR"]
            .as_str()
            .map(str::to_owned)?;
        Some((a, b))
    });
    assert_ne!(cidrs.0, cidrs.1);
    for cidr in [&cidrs.0, &cidrs.1] {
        assert!(cidr.starts_with("10.42.") && cidr.ends_with(".0/24"), "{cidr}");
    }

    // Both pods prefer n1; they tolerate an unreachable node for 3 s only.
    server.create(KUBECTL, &json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
                        "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                            "effect": "NoExecute", "tolerationSeconds": 3}],
                        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                            {"weight": 100, "preference": {"matchExpressions": [
                                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}}]}},
                    },
                },
            },
        })).expect("kubectl create");
    let on_n1 = wait_for(&server, Duration::from_secs(30), "both pods bound to n1", || {
        let pods = server.live_pods(KUBECTL, "app=web");
        (pods.len() == 2 && pods.iter().all(|p| p["spec"]["nodeName"] == "n1")).then_some(pods)
    });
    // The defaulted toleration for not-ready nodes sits beside the pod's own.
    let tolerations = on_n1[0]["spec"]["tolerations"].to_string();
    assert!(tolerations.contains("node.kubernetes.io/not-ready"), "{tolerations}");
    assert!(taints(&server, "n1").is_empty(), "a healthy node has no taints");

    // n1's kubelet goes silent.
    stop.store(true, Ordering::Relaxed);
    for b in beats {
        b.join().expect("heartbeat thread");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let beat = heartbeat(&server, "n2", stop.clone());
    let silent_since = Instant::now();

    wait_for(&server, Duration::from_secs(60), "n1 Unknown and tainted unreachable", || {
        let node = server.get_json(KUBECTL, &["get", "node", "n1"]).expect("kubectl get");
        let ready =
            node["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Ready")?.clone();
        let t = taints(&server, "n1");
        (ready["status"] == "Unknown"
            && ready["reason"] == "NodeStatusUnknown"
            && t.contains(&("node.kubernetes.io/unreachable".into(), "NoExecute".into()))
            && t.contains(&("node.kubernetes.io/unreachable".into(), "NoSchedule".into())))
        .then_some(())
    });
    assert!(taints(&server, "n2").is_empty(), "the healthy node stays untainted");
    let table = server.kubectl(KUBECTL).args(["get", "nodes"]).run().expect("kubectl");
    assert!(table.lines().any(|l| l.starts_with("n1 ") && l.contains("NotReady")), "{table}");

    // Evicted after 3 s and replaced on n2.
    wait_for(&server, Duration::from_secs(60), "two replacement pods on n2", || {
        let pods = server.live_pods(KUBECTL, "app=web");
        (pods.len() == 2 && pods.iter().all(|p| p["spec"]["nodeName"] == "n2")).then_some(())
    });
    assert!(silent_since.elapsed() >= Duration::from_secs(4 + 3), "not before grace + toleration");
    let events = server
        .kubectl(KUBECTL)
        .args(["get", "events", "--field-selector", "reason=TaintManagerEviction"])
        .run()
        .expect("kubectl");
    assert!(events.contains("Marking for deletion Pod default/web-"), "{events}");

    stop.store(true, Ordering::Relaxed);
    beat.join().expect("heartbeat thread");
}

#[test]
#[ignore = "end-to-end: real krust server and kubectl; waits out the pod GC quarantine"]
fn pods_of_deleted_nodes_are_garbage_collected() {
    let server = KrustServer::start(env!("CARGO_BIN_EXE_krust"), &[]).expect("server starts");
    server.create(KUBECTL, &json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "stranded", "namespace": "default"},
            "spec": {"nodeName": "gone", "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
        })).expect("kubectl create");
    // Upstream waits 40 s before it believes a node is gone, then checks every 20 s.
    wait_for(&server, Duration::from_secs(90), "the stranded pod collected", || {
        let out = server
            .kubectl(KUBECTL)
            .args(["get", "pod", "stranded", "--ignore-not-found"])
            .run()
            .ok()?;
        out.trim().is_empty().then_some(())
    });
}
