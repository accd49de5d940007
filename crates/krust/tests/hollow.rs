//! Hollow nodes (`krust hollow`): real kubelets over the fake runtime joining a `krust server`.
//! They register Ready nodes with Leases, run the pods the scheduler binds to them (addresses
//! from their pod CIDR), honour restart policies and scripted exits, finish graceful deletions,
//! and — once their process is killed — stop heartbeating, so the node lifecycle controller
//! marks their nodes Unknown. Every wait polls with a deadline.

use std::time::Duration;

use krust_testsupport::{KrustServer, NodeProcess};
use serde_json::{Value, json};

const KUBECTL: &str = "1.33";
const DEADLINE: Duration = Duration::from_secs(30);

fn get(server: &KrustServer, args: &[&str]) -> Value {
    server.get_json(KUBECTL, args).expect("kubectl get")
}

fn ready_nodes(server: &KrustServer) -> usize {
    let nodes = get(server, &["get", "nodes"]);
    nodes["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|n| {
                    n["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                })
                .count()
        })
        .unwrap_or(0)
}

fn pod(name: &str, restart_policy: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {
            "restartPolicy": restart_policy,
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}],
        },
    })
}

fn pod_status(server: &KrustServer, name: &str) -> Value {
    get(server, &["get", "pod", name])["status"].clone()
}

#[test]
#[ignore = "end-to-end: real krust server, krust hollow and kubectl"]
fn hollow_nodes_run_pods_and_their_loss_is_noticed() {
    let server =
        KrustServer::start(env!("CARGO_BIN_EXE_krust"), &["--node-monitor-grace-period", "5s"])
            .expect("server starts");
    let mut hollow = NodeProcess::hollow(env!("CARGO_BIN_EXE_krust"), &server, 3).expect("hollow");
    server.wait_for(DEADLINE, "3 Ready hollow nodes", || (ready_nodes(&server) == 3).then_some(()));
    let leases = get(&server, &["get", "leases", "-n", "kube-node-lease"]);
    let holders: Vec<&str> = leases["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["spec"]["holderIdentity"].as_str())
        .collect();
    assert_eq!(holders.len(), 3, "{leases}");

    // A ReplicaSet's pods run on the hollow nodes with addresses from their node's range.
    server
        .create(
            KUBECTL,
            &json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {
                    "replicas": 3,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
                    },
                },
            }),
        )
        .expect("create rs");
    server.wait_for(DEADLINE, "3 ready replicas", || {
        (get(&server, &["get", "rs", "web"])["status"]["readyReplicas"] == 3).then_some(())
    });
    for p in server.live_pods(KUBECTL, "app=web") {
        let node = get(&server, &["get", "node", p["spec"]["nodeName"].as_str().expect("bound")]);
        let cidr = node["spec"]["podCIDR"].as_str().expect("podCIDR");
        let ip = p["status"]["podIP"].as_str().expect("podIP");
        let prefix = cidr.trim_end_matches("0/24");
        assert!(ip.starts_with(prefix), "pod IP {ip} in node range {cidr}");
        assert_eq!(p["status"]["hostIP"], node["status"]["addresses"][0]["address"]);
        assert_eq!(p["status"]["phase"], "Running");
        assert_eq!(p["status"]["containerStatuses"][0]["ready"], true);
        assert!(
            p["status"]["containerStatuses"][0]["containerID"]
                .as_str()
                .is_some_and(|id| id.starts_with("fake://"))
        );
    }

    // A pod bound past the scheduler to a node too small for it is rejected by the kubelet.
    server
        .create(
            KUBECTL,
            &json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "huge", "namespace": "default"},
                "spec": {"nodeName": "hollow-0", "containers": [{
                    "name": "c", "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "5"}},
                }]},
            }),
        )
        .expect("create");
    let rejected = server.wait_for(DEADLINE, "huge rejected", || {
        let s = pod_status(&server, "huge");
        (s["phase"] == "Failed").then_some(s)
    });
    assert_eq!(rejected["reason"], "OutOfcpu");
    let message = rejected["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "Pod was rejected: Node didn't have enough resource: cpu, requested: 5000, used: "
        ) && message.ends_with(", capacity: 4000"),
        "{message}"
    );

    // Restart policies with scripted exits.
    server
        .create(KUBECTL, &pod("done", "Never", json!({"fake.krust.dev/exit-c": "0"})))
        .expect("create");
    server
        .create(KUBECTL, &pod("broken", "Never", json!({"fake.krust.dev/exit-c": "2"})))
        .expect("create");
    server
        .create(KUBECTL, &pod("crashing", "Always", json!({"fake.krust.dev/exit-c": "1"})))
        .expect("create");
    server.wait_for(DEADLINE, "done Succeeded", || {
        (pod_status(&server, "done")["phase"] == "Succeeded").then_some(())
    });
    let broken = server.wait_for(DEADLINE, "broken Failed", || {
        let s = pod_status(&server, "broken");
        (s["phase"] == "Failed").then_some(s)
    });
    assert_eq!(broken["containerStatuses"][0]["state"]["terminated"]["exitCode"], 2);
    assert_eq!(broken["containerStatuses"][0]["state"]["terminated"]["reason"], "Error");
    let crashing = server.wait_for(DEADLINE, "crashing in CrashLoopBackOff", || {
        let s = pod_status(&server, "crashing");
        (s["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff").then_some(s)
    });
    assert_eq!(crashing["phase"], "Running", "a crash-looping pod under Always is Running");
    assert_eq!(crashing["containerStatuses"][0]["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(
        crashing["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .map(|c| c["status"].clone()),
        Some(json!("False"))
    );
    // After the 10 s backoff it is started again.
    server.wait_for(Duration::from_secs(40), "a restart", || {
        (pod_status(&server, "crashing")["containerStatuses"][0]["restartCount"].as_i64()
            >= Some(1))
        .then_some(())
    });
    let table = server.kubectl(KUBECTL).args(["get", "pods"]).run().expect("get pods");
    assert!(table.lines().any(|l| l.starts_with("done ") && l.contains("Completed")), "{table}");

    // A graceful delete finishes: the kubelet stops the pod and removes it.
    server
        .kubectl(KUBECTL)
        .args(["delete", "pod", "done", "broken", "crashing", "--timeout=30s"])
        .run()
        .expect("delete");
    let left = get(&server, &["get", "pods", "--field-selector", "metadata.name=crashing"]);
    assert_eq!(left["items"], json!([]));

    // The hollow process dies: its nodes stop heartbeating and become Unknown.
    hollow.kill();
    server.wait_for(Duration::from_secs(60), "the nodes NotReady", || {
        (ready_nodes(&server) == 0).then_some(())
    });
    let node = get(&server, &["get", "node", "hollow-0"]);
    let ready = node["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned();
    assert_eq!(ready.map(|r| r["reason"].clone()), Some(json!("NodeStatusUnknown")));
}

fn probed_pod(name: &str, annotations: Value) -> Value {
    let probe = json!({"exec": {"command": ["true"]}, "periodSeconds": 1, "failureThreshold": 2});
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {"containers": [{
            "name": "c", "image": "registry.k8s.io/pause:3.10",
            "readinessProbe": probe, "livenessProbe": probe,
        }]},
    })
}

fn container(server: &KrustServer, pod: &str) -> Value {
    pod_status(server, pod)["containerStatuses"][0].clone()
}

#[test]
#[ignore = "end-to-end: real krust server, krust hollow and kubectl"]
fn probes_gate_readiness_and_restart_unhealthy_containers() {
    let server = KrustServer::start(env!("CARGO_BIN_EXE_krust"), &[]).expect("server starts");
    let _hollow = NodeProcess::hollow(env!("CARGO_BIN_EXE_krust"), &server, 1).expect("hollow");
    server.wait_for(DEADLINE, "a Ready hollow node", || (ready_nodes(&server) == 1).then_some(()));

    // Readiness follows the probe, and flips back when the probe recovers.
    server
        .create(KUBECTL, &probed_pod("unready", json!({"fake.krust.dev/readiness-c": "fail"})))
        .expect("create");
    server.create(KUBECTL, &probed_pod("healthy", json!({}))).expect("create");
    server.wait_for(DEADLINE, "healthy ready", || {
        (container(&server, "healthy")["ready"] == true).then_some(())
    });
    let unready = container(&server, "unready");
    assert_eq!(unready["ready"], false, "{unready}");
    assert!(unready["state"]["running"].is_object(), "running but not ready: {unready}");
    server
        .kubectl(KUBECTL)
        .args(["annotate", "pod", "unready", "fake.krust.dev/readiness-c-"])
        .run()
        .expect("annotate");
    server.wait_for(DEADLINE, "unready turns ready", || {
        (container(&server, "unready")["ready"] == true).then_some(())
    });

    // A failing liveness probe restarts the container.
    server
        .kubectl(KUBECTL)
        .args(["annotate", "pod", "healthy", "fake.krust.dev/liveness-c=fail"])
        .run()
        .expect("annotate");
    server.wait_for(DEADLINE, "a liveness restart", || {
        (container(&server, "healthy")["restartCount"].as_i64() >= Some(1)).then_some(())
    });
    let described =
        server.kubectl(KUBECTL).args(["describe", "pod", "healthy"]).run().expect("describe");
    for expected in [
        "Liveness probe failed: fake liveness probe failed",
        "failed liveness probe, will be restarted",
        "Started container c",
    ] {
        assert!(described.contains(expected), "describe shows {expected:?}:\n{described}");
    }
}

fn static_manifest(image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    tier: static\nspec:\n  containers:\n  - name: web\n    image: {image}\n"
    )
}

fn mirror(server: &KrustServer) -> Option<Value> {
    let list = get(server, &["get", "pods", "-l", "tier=static"]);
    list["items"].as_array()?.iter().find(|p| p["metadata"]["deletionTimestamp"].is_null()).cloned()
}

#[test]
#[ignore = "end-to-end: real krust server, krust agent and kubectl"]
fn the_agent_runs_static_pods_with_mirror_pods() {
    let server = KrustServer::start(env!("CARGO_BIN_EXE_krust"), &[]).expect("server starts");
    let manifests = server.data_dir().join("manifests");
    std::fs::create_dir_all(&manifests).expect("manifest dir");
    std::fs::write(manifests.join("web.yaml"), static_manifest("nginx:1")).expect("manifest");
    let _agent = NodeProcess::agent(env!("CARGO_BIN_EXE_krust"), &server, "agent-1", &manifests)
        .expect("agent");
    server
        .wait_for(DEADLINE, "the agent's node Ready", || (ready_nodes(&server) == 1).then_some(()));
    let node = get(&server, &["get", "node", "agent-1"]);
    assert_eq!(node["status"]["addresses"][0]["address"], "127.0.0.1");
    assert!(
        node["status"]["capacity"]["memory"].as_str().is_some_and(|m| m.ends_with("Ki")),
        "{node}"
    );

    let first = server.wait_for(DEADLINE, "the mirror pod Running", || {
        mirror(&server).filter(|p| p["status"]["phase"] == "Running")
    });
    assert_eq!(first["metadata"]["name"], "web-agent-1");
    assert_eq!(first["spec"]["nodeName"], "agent-1");
    assert_eq!(first["metadata"]["ownerReferences"][0]["kind"], "Node");
    assert!(first["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string(), "{first}");

    // Deleted in the API: the kubelet puts the mirror back.
    server
        .kubectl(KUBECTL)
        .args(["delete", "pod", "web-agent-1", "--timeout=30s"])
        .run()
        .expect("delete");
    let uid = first["metadata"]["uid"].clone();
    server.wait_for(DEADLINE, "a new mirror pod", || {
        mirror(&server).filter(|p| p["metadata"]["uid"] != uid && p["status"]["phase"] == "Running")
    });

    // A changed manifest replaces the pod; a removed one removes it.
    std::fs::write(manifests.join("web.yaml"), static_manifest("nginx:2")).expect("manifest");
    server.wait_for(DEADLINE, "the new image", || {
        mirror(&server).filter(|p| p["spec"]["containers"][0]["image"] == "nginx:2")
    });
    std::fs::remove_file(manifests.join("web.yaml")).expect("remove manifest");
    server.wait_for(DEADLINE, "no mirror pod", || mirror(&server).is_none().then_some(()));
}
